/* Callbacks that watch a metric of MetricsCB across epochs: SaveModelCB (the best weights to a
 * safetensors file whenever the monitored value improves) and EarlyStoppingCB (stop after
 * `patience` epochs without improvement; the best weights put back at the end of the fit).
 * Both read learn->metrics->last after MetricsCB's after_epoch, so their order is above it. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fl/checkpoint.h"
#include "fl/learner.h"

/* ---- what both share: which value, which direction, the best so far ---- */
typedef struct watch {
  char *monitor;       /* a name in MetricsCB's log entry: "accuracy", "loss", ... */
  int mode;            /* FL_MODE_MIN or FL_MODE_MAX */
  double min_delta;    /* an improvement must beat the best by more than this */
  double best;         /* NaN before the first finite value */
  int best_epoch;
} watch;

static int resolve_mode(const char *monitor, int mode) {
  if (mode == FL_MODE_MIN || mode == FL_MODE_MAX) return mode;
  return strstr(monitor, "loss") ? FL_MODE_MIN : FL_MODE_MAX;   /* FL_MODE_AUTO */
}

static void watch_init(watch *w, const char *monitor, int mode, double min_delta) {
  FL_CHECK(monitor && *monitor, "a monitored metric name is required");
  FL_CHECK(mode == FL_MODE_AUTO || mode == FL_MODE_MIN || mode == FL_MODE_MAX, "mode must be FL_MODE_AUTO/MIN/MAX");
  FL_CHECK(min_delta >= 0 && isfinite(min_delta), "min_delta must be finite and >= 0");
  w->monitor = strdup(monitor);
  FL_CHECK(w->monitor, "out of memory");
  w->mode = resolve_mode(monitor, mode);
  w->min_delta = min_delta;
}

/* before_fit: MetricsCB (order 0) has set learn->metrics; the monitored name must be one of its. */
static fl_status watch_begin(watch *w, fl_learner *l, const char *who) {
  w->best = NAN;
  w->best_epoch = -1;
  fl_metrics_cb *m = l->metrics;
  if (!m) return fl_error(FL_ERR_ARG, "%s: monitors '%s' but the learner has no MetricsCB", who, w->monitor);
  for (int i = 0; i < m->n; i++)
    if (!strcmp(m->names[i], w->monitor)) return FL_OK;
  if (!strcmp(w->monitor, "loss")) return FL_OK;
  char names[256] = "";
  size_t k = 0;
  for (int i = 0; i < m->n && k < sizeof names; i++) k += (size_t)snprintf(names + k, sizeof names - k, "%s, ", m->names[i]);
  return fl_error(FL_ERR_ARG, "%s: no metric '%s' (MetricsCB has: %sloss)", who, w->monitor, names);
}

/* after_epoch: 1 when the phase watched (valid; train when the fit has no valid phase) just gave
 * a better value than the best, which it then becomes; 0 otherwise (*seen = 1 when it was the
 * watched phase at all). */
static int watch_epoch(watch *w, fl_learner *l, int *seen) {
  *seen = 0;
  if (!l->metrics || (l->training && l->fit_valid)) return 0;
  const fl_log_entry *e = &l->metrics->last;
  double v = NAN;
  for (int i = 0; i < e->n; i++)
    if (!strcmp(e->names[i], w->monitor)) v = e->values[i];
  *seen = 1;
  if (!isfinite(v)) return 0;   /* a NaN is never an improvement */
  int better = isnan(w->best) ||
               (w->mode == FL_MODE_MIN ? v < w->best - w->min_delta : v > w->best + w->min_delta);
  if (better) w->best = v, w->best_epoch = l->epoch;
  return better;
}

/* ---- SaveModelCB ---- */
/* Checkpoints: the best value (when there is one) and its epoch, exactly. */
static fl_status watch_save(const watch *w, fl_state *st) {
  fl_status s = fl_state_set_i64(st, "best_epoch", w->best_epoch);
  return s == FL_OK && w->best_epoch >= 0 ? fl_state_set_f64(st, "best", w->best) : s;
}
static fl_status watch_load(watch *w, const fl_state *st) {
  int64_t e;
  fl_status s = fl_state_get_i64(st, "best_epoch", &e);
  if (s != FL_OK) return s;
  w->best_epoch = (int)e, w->best = NAN;
  return e >= 0 ? fl_state_get_f64(st, "best", &w->best) : FL_OK;
}

typedef struct save_model_cb {
  fl_callback cb;
  watch w;
  char *path, *model_name;
  int saves;
} save_model_cb;

static fl_status smcb_before_fit(fl_callback *cb, fl_learner *l) {
  save_model_cb *s = (save_model_cb *)cb;
  s->saves = 0;
  return watch_begin(&s->w, l, "SaveModelCB");
}

static fl_status smcb_after_epoch(fl_callback *cb, fl_learner *l) {
  save_model_cb *s = (save_model_cb *)cb;
  int seen;
  if (!watch_epoch(&s->w, l, &seen)) return FL_OK;
  fl_status st = fl_save_safetensors(l->model, s->path, s->model_name);   /* atomic: tmp + rename */
  if (st == FL_OK) s->saves++;
  return st;
}

static fl_status smcb_save_state(fl_callback *cb, fl_learner *l, fl_state *st) {
  (void)l;
  save_model_cb *s = (save_model_cb *)cb;
  fl_status r = watch_save(&s->w, st);
  return r == FL_OK ? fl_state_set_i64(st, "saves", s->saves) : r;
}
static fl_status smcb_load_state(fl_callback *cb, fl_learner *l, const fl_state *st) {
  (void)l;
  save_model_cb *s = (save_model_cb *)cb;
  int64_t n;
  fl_status r = watch_load(&s->w, st);
  if (r == FL_OK && (r = fl_state_get_i64(st, "saves", &n)) == FL_OK) s->saves = (int)n;
  return r;
}

static void smcb_free(fl_callback *cb) {
  save_model_cb *s = (save_model_cb *)cb;
  free(s->w.monitor), free(s->path), free(s->model_name);
  free(s);
}

fl_callback *fl_save_model_cb_new(const char *path, const char *monitor, int mode, const char *model_name) {
  FL_CHECK(path && *path, "fl_save_model_cb_new: path is required");
  save_model_cb *s = fl_xcalloc(1, sizeof *s);
  watch_init(&s->w, monitor, mode, 0);
  s->path = strdup(path);
  s->model_name = model_name ? strdup(model_name) : NULL;
  FL_CHECK(s->path && (!model_name || s->model_name), "out of memory");
  s->cb.name = "SaveModelCB";
  s->cb.order = FL_ORDER_SAVE_MODEL;
  s->cb.free = smcb_free;
  s->cb.on[FL_BEFORE_FIT] = smcb_before_fit;
  s->cb.on[FL_AFTER_EPOCH] = smcb_after_epoch;
  s->cb.save_state = smcb_save_state;
  s->cb.load_state = smcb_load_state;
  return &s->cb;
}

/* ---- EarlyStoppingCB ---- */
typedef struct early_stopping_cb {
  fl_callback cb;
  watch w;
  int patience, wait, stopped_epoch;
  fl_tensor *snap;     /* the best epoch's flat parameters then flat buffers, on the model's device */
} early_stopping_cb;

static fl_status escb_before_fit(fl_callback *cb, fl_learner *l) {
  early_stopping_cb *e = (early_stopping_cb *)cb;
  e->wait = 0;
  e->stopped_epoch = -1;
  fl_tensor_free(e->snap);
  e->snap = NULL;
  return watch_begin(&e->w, l, "EarlyStoppingCB");
}

/* The model's state a snapshot holds: its flat parameters, then its flat buffers (BatchNorm's
 * running statistics, which must go back with the weights they were computed with). */
static int64_t state_numel(const fl_module *m) {
  return fl_numel(m->flat) + (m->flat_buf ? fl_numel(m->flat_buf) : 0);
}

/* part 0 (the parameters) or 1 (the buffers) of a snapshot, as a 1-d view */
static fl_tensor part(const fl_tensor *snap, const fl_module *m, int which) {
  fl_tensor v = *snap;
  int64_t n0 = fl_numel(m->flat);
  v.owned = NULL, v.grad = NULL, v.ndim = 1, v.stride[0] = 1;
  v.shape[0] = which ? state_numel(m) - n0 : n0;
  if (which) v.data = (float *)snap->data + n0;
  return v;
}

/* A copy of every parameter and buffer, on the model's device. */
static fl_status snapshot(early_stopping_cb *e, fl_module *m) {
  if (!e->snap || e->snap->device != m->device || fl_numel(e->snap) != state_numel(m)) {
    fl_tensor_free(e->snap);
    e->snap = fl_tensor_new1(FL_F32, m->device, state_numel(m));
    if (!e->snap)
      return fl_error(FL_ERR_NOMEM, "EarlyStoppingCB: out of %s memory for a copy of the weights",
                      fl_device_name(m->device));
  }
  fl_tensor a = part(e->snap, m, 0), b = part(e->snap, m, 1);
  fl_tensor_copy(&a, m->flat);
  if (m->flat_buf) fl_tensor_copy(&b, m->flat_buf);
  return FL_OK;
}

static fl_status escb_after_epoch(fl_callback *cb, fl_learner *l) {
  early_stopping_cb *e = (early_stopping_cb *)cb;
  int seen;
  if (watch_epoch(&e->w, l, &seen)) {
    e->wait = 0;
    return snapshot(e, l->model);
  }
  if (seen && ++e->wait >= e->patience) {
    e->stopped_epoch = l->epoch;
    return FL_CANCEL_FIT;
  }
  return FL_OK;
}

/* Whether the fit ended, stopped early or failed: the best weights seen go back into the model. */
static fl_status escb_cleanup_fit(fl_callback *cb, fl_learner *l) {
  early_stopping_cb *e = (early_stopping_cb *)cb;
  if (e->snap) {   /* across devices if the model moved */
    fl_tensor a = part(e->snap, l->model, 0), b = part(e->snap, l->model, 1);
    fl_tensor_copy(l->model->flat, &a);
    if (l->model->flat_buf) fl_tensor_copy(l->model->flat_buf, &b);
  }
  return FL_OK;
}

/* Checkpoints: the watch, the epochs waited, and the best weights themselves (their float bytes
 * in base64: the state is JSON), so a resumed fit puts back the same weights at its end. */
static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static char *b64_encode(const unsigned char *p, size_t n) {
  char *out = malloc(4 * ((n + 2) / 3) + 1), *o = out;
  if (!out) return NULL;
  for (size_t i = 0; i < n; i += 3) {
    uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) | (i + 2 < n ? p[i + 2] : 0);
    *o++ = b64[v >> 18], *o++ = b64[v >> 12 & 63];
    *o++ = i + 1 < n ? b64[v >> 6 & 63] : '=';
    *o++ = i + 2 < n ? b64[v & 63] : '=';
  }
  *o = 0;
  return out;
}

/* Decodes exactly n bytes into out; 0 when s is not the base64 of n bytes. */
static int b64_decode(const char *s, unsigned char *out, size_t n) {
  if (strlen(s) != 4 * ((n + 2) / 3)) return 0;
  for (size_t i = 0, j = 0; i < n; j += 4) {
    uint32_t v = 0;
    for (int k = 0; k < 4; k++) {
      const char *c = s[j + k] ? strchr(b64, s[j + k]) : NULL;
      int pad = k >= 2 && s[j + k] == '=' && i + (size_t)k - 1 >= n;   /* only the last 1-2 */
      if (!c && !pad) return 0;
      v = v << 6 | (c ? (uint32_t)(c - b64) : 0);
    }
    for (int k = 0; k < 3 && i < n; k++) out[i++] = (unsigned char)(v >> (16 - 8 * k));
  }
  return 1;
}

static fl_status escb_save_state(fl_callback *cb, fl_learner *l, fl_state *st) {
  (void)l;
  early_stopping_cb *e = (early_stopping_cb *)cb;
  fl_status s = watch_save(&e->w, st);
  if (s == FL_OK) s = fl_state_set_i64(st, "wait", e->wait);
  if (s != FL_OK || !e->snap) return s;
  size_t n = (size_t)fl_numel(e->snap) * sizeof(float);
  float *host = malloc(n ? n : 1);
  if (!host) return fl_error(FL_ERR_NOMEM, "EarlyStoppingCB: out of memory for its checkpoint state");
  fl_tensor_to_host(e->snap, host);
  char *txt = b64_encode((const unsigned char *)host, n);
  free(host);
  if (!txt) return fl_error(FL_ERR_NOMEM, "EarlyStoppingCB: out of memory for its checkpoint state");
  s = fl_state_set_str(st, "best_weights", txt);
  free(txt);
  return s;
}

static fl_status escb_load_state(fl_callback *cb, fl_learner *l, const fl_state *st) {
  early_stopping_cb *e = (early_stopping_cb *)cb;
  int64_t wait;
  fl_status s = watch_load(&e->w, st);
  if (s == FL_OK) s = fl_state_get_i64(st, "wait", &wait);
  if (s != FL_OK) return s;
  e->wait = (int)wait;
  if (e->w.best_epoch < 0) return FL_OK;   /* no best epoch yet: no weights kept */
  const char *txt = fl_state_get_str(st, "best_weights");
  if (!txt) return FL_ERR_FORMAT;
  fl_module *m = l->model;
  size_t n = (size_t)state_numel(m) * sizeof(float);
  unsigned char *host = malloc(n ? n : 1);
  if (!host) return fl_error(FL_ERR_NOMEM, "EarlyStoppingCB: out of memory for its checkpoint state");
  if (!b64_decode(txt, host, n)) {
    free(host);
    return fl_error(FL_ERR_FORMAT, "EarlyStoppingCB: best_weights is not the base64 of the model's %zu weight bytes", n);
  }
  if ((s = snapshot(e, m)) == FL_OK) {   /* a tensor of the right size on the model's device */
    fl_tensor src = *e->snap;
    src.data = host, src.device = FL_CPU, src.owned = NULL, src.grad = NULL;
    fl_tensor_copy(e->snap, &src);
  }
  free(host);
  return s;
}

static void escb_free(fl_callback *cb) {
  early_stopping_cb *e = (early_stopping_cb *)cb;
  fl_tensor_free(e->snap);
  free(e->w.monitor);
  free(e);
}

fl_callback *fl_early_stopping_cb_new(const char *monitor, int mode, int patience, double min_delta) {
  FL_CHECK(patience >= 1, "fl_early_stopping_cb_new: patience must be >= 1 (got %d)", patience);
  early_stopping_cb *e = fl_xcalloc(1, sizeof *e);
  watch_init(&e->w, monitor, mode, min_delta);
  e->patience = patience;
  e->stopped_epoch = -1;
  e->cb.name = "EarlyStoppingCB";
  e->cb.order = FL_ORDER_EARLY_STOPPING;
  e->cb.free = escb_free;
  e->cb.on[FL_BEFORE_FIT] = escb_before_fit;
  e->cb.on[FL_AFTER_EPOCH] = escb_after_epoch;
  e->cb.on[FL_CLEANUP_FIT] = escb_cleanup_fit;
  e->cb.save_state = escb_save_state;
  e->cb.load_state = escb_load_state;
  return &e->cb;
}

/* ---- what they found (for the CLI's messages and tests) ---- */
int fl_best_cb_info(const fl_callback *cb, double *best, int *best_epoch, int *count) {
  if (!cb) return 0;
  const watch *w;
  int n;
  if (cb->free == smcb_free) w = &((const save_model_cb *)cb)->w, n = ((const save_model_cb *)cb)->saves;
  else if (cb->free == escb_free) w = &((const early_stopping_cb *)cb)->w, n = ((const early_stopping_cb *)cb)->stopped_epoch;
  else return 0;
  if (best) *best = w->best;
  if (best_epoch) *best_epoch = w->best_epoch;
  if (count) *count = n;
  return 1;
}
