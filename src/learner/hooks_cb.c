/* HooksCallback and ActivationStats (10_activations): forward hooks on chosen modules for the
 * duration of a fit, and the per-batch activation statistics recorded through them. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "fl/hooks.h"

/* ---- HooksCallback ---- */
typedef struct hooks_cb hooks_cb;
typedef struct hook_slot { hooks_cb *h; int idx; } hook_slot;
struct hooks_cb {
  fl_callback cb;
  fl_module **mods;
  hook_slot *slots;
  int n, on_train, on_valid;
  int n_set;                    /* modules hooked by this fit (the first n_set) */
  fl_hook_fn fn;
  void *ctx;
  fl_learner *learn;            /* during a fit */
};

static fl_status run_hook(fl_module *m, fl_tensor *in, fl_tensor *out, void *ctx) {
  hook_slot *s = ctx;
  hooks_cb *h = s->h;
  if (!(h->learn->training ? h->on_train : h->on_valid)) return FL_OK;
  return h->fn(h->ctx, s->idx, m, in, out);
}

static void remove_hooks(hooks_cb *h) {
  for (int i = 0; i < h->n_set; i++) h->mods[i]->hook = NULL, h->mods[i]->hook_ctx = NULL;
  h->n_set = 0;
  h->learn = NULL;
}

static fl_status hooks_before_fit(fl_callback *cb, fl_learner *l) {
  hooks_cb *h = (hooks_cb *)cb;
  h->learn = l;
  for (int i = 0; i < h->n; i++) {
    if (h->mods[i]->hook) {
      remove_hooks(h);
      return fl_error(FL_ERR_ARG, "%s: module %d (%s) already has a forward hook", cb->name, i,
                      h->mods[i]->ops->kind);
    }
    h->slots[i] = (hook_slot){h, i};
    h->mods[i]->hook = run_hook;
    h->mods[i]->hook_ctx = &h->slots[i];
    h->n_set = i + 1;
  }
  return FL_OK;
}

static fl_status hooks_cleanup_fit(fl_callback *cb, fl_learner *l) {
  (void)l;
  remove_hooks((hooks_cb *)cb);
  return FL_OK;
}

static void hooks_init(hooks_cb *h, const char *name, fl_module **mods, int n, fl_hook_fn fn, void *ctx,
                       int on_train, int on_valid) {
  FL_CHECK(n >= 0 && (n == 0 || mods) && fn, "fl_hooks_cb_new: bad module list or hook");
  for (int i = 0; i < n; i++) FL_CHECK(mods[i] && mods[i]->ops, "fl_hooks_cb_new: module %d is NULL", i);
  h->cb.name = name;
  h->cb.order = 0;
  h->mods = fl_xmalloc((size_t)(n ? n : 1) * sizeof *h->mods);
  if (n) memcpy(h->mods, mods, (size_t)n * sizeof *mods);
  h->slots = fl_xcalloc((size_t)(n ? n : 1), sizeof *h->slots);
  h->n = n, h->fn = fn, h->ctx = ctx, h->on_train = on_train, h->on_valid = on_valid;
  h->cb.on[FL_BEFORE_FIT] = hooks_before_fit;
  h->cb.on[FL_CLEANUP_FIT] = hooks_cleanup_fit;
}

static void hooks_fini(hooks_cb *h) {
  remove_hooks(h);
  free(h->mods), free(h->slots);
}

static void hooks_free(fl_callback *cb) {
  hooks_fini((hooks_cb *)cb);
  free(cb);
}

fl_callback *fl_hooks_cb_new(fl_module **mods, int n, fl_hook_fn fn, void *ctx, int on_train, int on_valid) {
  hooks_cb *h = fl_xcalloc(1, sizeof *h);
  hooks_init(h, "HooksCallback", mods, n, fn, ctx, on_train, on_valid);
  h->cb.free = hooks_free;
  return &h->cb;
}

int fl_modules_of_kind(fl_module *root, const char *const *kinds, int n_kinds, fl_module **out, int max) {
  int n = 0;
  for (int k = 0; k < n_kinds; k++)
    if (root->ops && !strcmp(root->ops->kind, kinds[k])) {
      if (out && n < max) out[n] = root;
      n++;
      break;
    }
  for (int i = 0; i < root->n_children; i++)
    n += fl_modules_of_kind(root->children[i], kinds, n_kinds, out ? out + (n < max ? n : max) : NULL,
                            n < max ? max - n : 0);
  return n;
}

/* ---- the statistics of one tensor ---- */
enum { CHUNKS = 64, BLOCK = 1024, LANES = 16 };           /* fixed: the sums are always added in one order */

fl_status fl_act_stats_compute(const fl_tensor *t, double *mean, double *std, int64_t hist[FL_ACT_BINS]) {
  if (t->device != FL_CPU)
    return fl_error(FL_ERR_DEVICE, "ActivationStats: not on CUDA yet (activation statistics are computed on the CPU)");
  FL_CHECK(t->dtype == FL_F32 && fl_is_contiguous(t), "fl_act_stats_compute: needs a contiguous f32 tensor");
  const float *x = t->data;
  int64_t n = fl_numel(t);
  FL_CHECK(n / CHUNKS < INT32_MAX, "fl_act_stats_compute: tensor too large");
  double s[CHUNKS], ss[CHUNKS];
  int64_t h[CHUNKS][FL_ACT_BINS];
  /* one thread: on the shared 2-core machine an OpenMP region per layer cost 4x more at 2 threads
   * (waiting on a descheduled thread) than the whole pass at 1; the chunks keep the order fixed */
  for (int c = 0; c < CHUNKS; c++) {
    int64_t lo = n * c / CHUNKS, hi = n * (c + 1) / CHUNKS;
    double a = 0, b = 0;
    int64_t hc[FL_ACT_BINS + 2];   /* + |x| == 10 (q == 40, the last bin) + not counted */
    int32_t h4[4][FL_ACT_BINS + 2] = {{0}};   /* a chunk is at most 2^31 values (FL_CHECK'd) */
    for (int64_t i0 = lo; i0 < hi; i0 += BLOCK) {
      int m = (int)(hi - i0 < BLOCK ? hi - i0 : BLOCK);
      /* lanes of float sums (vectorisable without reassociation), added to the double totals per block */
      float la[LANES] = {0}, lb[LANES] = {0};
      int idx[BLOCK];
      int j = 0;
      for (; j + LANES <= m; j += LANES)
        for (int k = 0; k < LANES; k++) {
          float v = x[i0 + j + k];
          la[k] += v;
          lb[k] += v * v;
        }
      for (; j < m; j++) la[0] += x[i0 + j], lb[0] += x[i0 + j] * x[i0 + j];
      for (int k = 0; k < LANES; k++) a += la[k], b += lb[k];
      /* torch's histc: (elt - min) * nbins / (max - min) in the element type; max in the last bin */
      for (j = 0; j < m; j++) {
        float av = fabsf(x[i0 + j]), q = av * (float)FL_ACT_BINS / 10.0f;
        idx[j] = (int)(av >= 0.0f && av <= 10.0f ? q : (float)(FL_ACT_BINS + 1));
      }
      /* four partial histograms: runs of one bin do not wait on one counter */
      for (j = 0; j + 4 <= m; j += 4) h4[0][idx[j]]++, h4[1][idx[j + 1]]++, h4[2][idx[j + 2]]++, h4[3][idx[j + 3]]++;
      for (; j < m; j++) h4[0][idx[j]]++;
    }
    for (int k = 0; k < FL_ACT_BINS + 2; k++) hc[k] = h4[0][k] + h4[1][k] + h4[2][k] + h4[3][k];
    hc[FL_ACT_BINS - 1] += hc[FL_ACT_BINS];
    s[c] = a, ss[c] = b;
    memcpy(h[c], hc, sizeof h[c]);
  }
  double a = 0, b = 0;
  memset(hist, 0, FL_ACT_BINS * sizeof *hist);
  for (int c = 0; c < CHUNKS; c++) {
    a += s[c], b += ss[c];
    for (int k = 0; k < FL_ACT_BINS; k++) hist[k] += h[c][k];
  }
  *mean = n ? a / (double)n : NAN;
  double var = n > 1 ? (b - a * a / (double)n) / (double)(n - 1) : NAN;
  *std = n > 1 ? sqrt(var > 0 ? var : 0) : NAN;
  return FL_OK;
}

/* ---- ActivationStats ---- */
typedef struct act_layer { double *means, *stds; int64_t *hist; } act_layer;
typedef struct act_stats {
  hooks_cb h;
  act_layer *layers;
  int64_t n_batches, cap;       /* batches recorded (every layer has the same count) */
  int64_t cur;                  /* the learner's n_iter the current row belongs to */
} act_stats;

static fl_status grow(act_stats *a) {
  int64_t cap = a->cap ? 2 * a->cap : 64;
  for (int i = 0; i < a->h.n; i++) {
    act_layer *L = &a->layers[i];
    double *m = realloc(L->means, (size_t)cap * sizeof *m);
    if (m) L->means = m;
    double *s = m ? realloc(L->stds, (size_t)cap * sizeof *s) : NULL;
    if (s) L->stds = s;
    int64_t *h = s ? realloc(L->hist, (size_t)cap * FL_ACT_BINS * sizeof *h) : NULL;
    if (!h) return fl_error(FL_ERR_NOMEM, "ActivationStats: out of memory after %lld batches", (long long)a->n_batches);
    L->hist = h;
  }
  a->cap = cap;
  return FL_OK;
}

/* A new row when the first hooked layer of a batch reports; each layer fills its column. */
static fl_status append_stats(void *ctx, int idx, fl_module *m, fl_tensor *in, fl_tensor *out) {
  (void)m, (void)in;
  act_stats *a = ctx;
  int64_t row = a->n_batches - 1;
  if (a->n_batches == 0 || a->cur != a->h.learn->n_iter) {
    if (a->n_batches == a->cap) {
      fl_status s = grow(a);
      if (s != FL_OK) return s;
    }
    row = a->n_batches++;
    a->cur = a->h.learn->n_iter;
    for (int i = 0; i < a->h.n; i++) {   /* a layer that did not run this batch: NaN, empty hist */
      a->layers[i].means[row] = a->layers[i].stds[row] = NAN;
      memset(a->layers[i].hist + row * FL_ACT_BINS, 0, FL_ACT_BINS * sizeof(int64_t));
    }
  }
  act_layer *L = &a->layers[idx];
  return fl_act_stats_compute(out, &L->means[row], &L->stds[row], L->hist + row * FL_ACT_BINS);
}

static fl_status stats_before_fit(fl_callback *cb, fl_learner *l) {
  act_stats *a = (act_stats *)cb;
  a->n_batches = 0;
  return hooks_before_fit(cb, l);
}

static void stats_free(fl_callback *cb) {
  act_stats *a = (act_stats *)cb;
  for (int i = 0; i < a->h.n; i++) free(a->layers[i].means), free(a->layers[i].stds), free(a->layers[i].hist);
  free(a->layers);
  hooks_fini(&a->h);
  free(a);
}

fl_callback *fl_activation_stats_new(fl_module **mods, int n) {
  act_stats *a = fl_xcalloc(1, sizeof *a);
  hooks_init(&a->h, "ActivationStats", mods, n, append_stats, a, 1, 0);
  a->h.cb.on[FL_BEFORE_FIT] = stats_before_fit;
  a->h.cb.free = stats_free;
  a->layers = fl_xcalloc((size_t)(n ? n : 1), sizeof *a->layers);
  return &a->h.cb;
}

static const act_stats *as(const fl_callback *cb) {
  FL_CHECK(cb && cb->free == stats_free, "ActivationStats API: not an ActivationStats callback");
  return (const act_stats *)cb;
}
static const act_layer *layer(const fl_callback *cb, int i) {
  const act_stats *a = as(cb);
  FL_CHECK(i >= 0 && i < a->h.n, "ActivationStats: layer %d out of range (%d layers)", i, a->h.n);
  return &a->layers[i];
}
int fl_act_stats_layers(const fl_callback *cb) { return as(cb)->h.n; }
int64_t fl_act_stats_batches(const fl_callback *cb) { return as(cb)->n_batches; }
const double *fl_act_stats_means(const fl_callback *cb, int i) { return layer(cb, i)->means; }
const double *fl_act_stats_stds(const fl_callback *cb, int i) { return layer(cb, i)->stds; }
const int64_t *fl_act_stats_hist(const fl_callback *cb, int i) { return layer(cb, i)->hist; }
double fl_act_stats_dead(const fl_callback *cb, int i, int64_t b) {
  const act_layer *L = layer(cb, i);
  FL_CHECK(b >= 0 && b < as(cb)->n_batches, "fl_act_stats_dead: batch %lld out of range", (long long)b);
  const int64_t *h = L->hist + b * FL_ACT_BINS;
  int64_t tot = 0;
  for (int k = 0; k < FL_ACT_BINS; k++) tot += h[k];
  return tot ? (double)h[0] / (double)tot : NAN;
}
