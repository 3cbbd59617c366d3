/* ProgressCB(plot): fastprogress's master bar over epochs and a bar over the batches with the
 * loss as comment; the metrics as table rows (or, when the output is not a terminal, the
 * lesson's plain metric lines and no bars); with plot, a live loss chart and a PNG of the train
 * and valid losses written after fit. */
#include <stdlib.h>
#include <math.h>
#include <string.h>

#include "fl/checkpoint.h"
#include "fl/learner.h"
#include "fl/progress.h"

typedef struct {
  fl_callback cb;
  int plot;
  char *png;
  FILE *out;
  fl_progress *p;
  double *losses, *val_x, *val_losses;   /* preallocated in before_fit */
  int n_losses, n_val, cap;
  int bars;                              /* 1, 0, -1: as fl_progress_new's tty */
  fl_log_fn prev_log;                    /* MetricsCB's logger, given back after fit */
  void *prev_ctx;
} progress_cb;

static void pcb_log(void *ctx, const fl_log_entry *e) {
  progress_cb *c = ctx;
  if (!fl_progress_is_tty(c->p)) {   /* the lesson's form: one line per epoch and phase */
    char buf[512];
    fl_progress_write(c->p, fl_log_entry_str(e, buf, sizeof buf));
    return;
  }
  const char *cols[12], *vals[12];
  char v[12][24];
  int n = 0;
  for (int i = 0; i < e->n && n < 9; i++, n++) {
    cols[n] = e->names[i];
    snprintf(v[n], sizeof v[n], "%.3f", e->values[i]);
    vals[n] = v[n];
  }
  cols[n] = "epoch", snprintf(v[n], sizeof v[n], "%d", e->epoch), vals[n] = v[n], n++;
  cols[n] = "train", vals[n++] = e->train ? "train" : "eval";
  int s = (int)lround(e->seconds);
  cols[n] = "time", snprintf(v[n], sizeof v[n], "%02d:%02d", s / 60, s % 60), vals[n] = v[n], n++;
  fl_progress_row(c->p, cols, vals, n);
}

static fl_status pcb_before_fit(fl_callback *cb, fl_learner *l) {
  progress_cb *c = (progress_cb *)cb;
  fl_progress_free(c->p);
  c->p = fl_progress_new(c->out, c->bars);
  fl_progress_master(c->p, l->n_epochs);
  if (l->metrics) {   /* take over MetricsCB's logger, as the lesson does */
    c->prev_log = l->metrics->log;
    c->prev_ctx = l->metrics->log_ctx;
    l->metrics->log = pcb_log;
    l->metrics->log_ctx = c;
  }
  int64_t per_epoch = l->dls && l->dls->train ? fl_dataloader_len(l->dls->train) : 0;
  int cap = (int)(per_epoch * l->n_epochs) + l->n_epochs + 1;
  if (cap > c->cap) {
    free(c->losses), free(c->val_x), free(c->val_losses);
    c->losses = fl_xmalloc((size_t)cap * sizeof(double));
    c->val_x = fl_xmalloc((size_t)cap * sizeof(double));
    c->val_losses = fl_xmalloc((size_t)cap * sizeof(double));
    c->cap = cap;
  }
  c->n_losses = c->n_val = 0;
  return FL_OK;
}

static fl_status pcb_before_epoch(fl_callback *cb, fl_learner *l) {
  progress_cb *c = (progress_cb *)cb;
  fl_progress_epoch(c->p, l->epoch);
  fl_progress_begin(c->p, l->training ? "train" : "valid", (int)fl_dataloader_len(l->dl));
  return FL_OK;
}

static void draw_chart(progress_cb *c, int force) {
  fl_series s[2] = {{"train", NULL, c->losses, c->n_losses}, {"valid", c->val_x, c->val_losses, c->n_val}};
  fl_progress_chart(c->p, s, c->n_val ? 2 : 1, force);
}

static fl_status pcb_after_batch(fl_callback *cb, fl_learner *l) {
  progress_cb *c = (progress_cb *)cb;
  /* Reading the loss is a device sync on a GPU: there the comment is refreshed every 8 batches. */
  int on_gpu = l->loss && l->loss->device != FL_CPU;
  int record = c->plot && l->training && l->loss && c->n_losses < c->cap;
  char comment[32] = "";
  if (l->loss && (record || !on_gpu || (l->iter + 1) % 8 == 0)) {
    double v = fl_tensor_item(l->loss);
    snprintf(comment, sizeof comment, "%.3f", v);
    if (record) c->losses[c->n_losses++] = v;
    if (record && fl_progress_is_tty(c->p)) draw_chart(c, 0);
  }
  fl_progress_update(c->p, (int)l->iter + 1, comment[0] ? comment : NULL);
  return FL_OK;
}

static fl_status pcb_after_epoch(fl_callback *cb, fl_learner *l) {
  progress_cb *c = (progress_cb *)cb;
  if (!l->training && c->plot && l->metrics && c->n_val < c->cap) {
    c->val_x[c->n_val] = (double)(l->epoch + 1) * (double)fl_dataloader_len(l->dls->train);
    c->val_losses[c->n_val++] = l->metrics->last.values[l->metrics->last.n - 1];
    if (fl_progress_is_tty(c->p)) draw_chart(c, 1);
  }
  return FL_OK;
}

static fl_status pcb_cleanup_epoch(fl_callback *cb, fl_learner *l) {
  (void)l;
  fl_progress_end(((progress_cb *)cb)->p);
  return FL_OK;
}

static fl_status pcb_cleanup_fit(fl_callback *cb, fl_learner *l) {
  progress_cb *c = (progress_cb *)cb;
  if (l->metrics && l->metrics->log == pcb_log) {   /* give the logger back */
    l->metrics->log = c->prev_log;
    l->metrics->log_ctx = c->prev_ctx;
  }
  fl_progress_free(c->p);
  c->p = NULL;
  if (!c->plot || !c->png || !c->n_losses) return FL_OK;
  fl_series s[2] = {{"train", NULL, c->losses, c->n_losses}, {"valid", c->val_x, c->val_losses, c->n_val}};
  fl_plot_opts o = {.title = "loss", .xlabel = "batch", .ylabel = "loss"};
  return fl_plot_png(c->png, s, c->n_val ? 2 : 1, &o);
}

/* Checkpoints: the losses recorded for the plot. */
static fl_status pcb_save_state(fl_callback *cb, fl_learner *l, fl_state *st) {
  (void)l;
  progress_cb *c = (progress_cb *)cb;
  fl_status s = fl_state_set_f64s(st, "losses", c->losses, c->n_losses);
  if (s == FL_OK) s = fl_state_set_f64s(st, "val_x", c->val_x, c->n_val);
  if (s == FL_OK) s = fl_state_set_f64s(st, "val_losses", c->val_losses, c->n_val);
  return s;
}

static fl_status pcb_load_state(fl_callback *cb, fl_learner *l, const fl_state *st) {
  (void)l;
  progress_cb *c = (progress_cb *)cb;
  int64_t n = 0, nv = 0, nv2 = 0;
  fl_status s = fl_state_get_f64s(st, "losses", c->losses, c->cap, &n);
  if (s == FL_OK) s = fl_state_get_f64s(st, "val_x", c->val_x, c->cap, &nv);
  if (s == FL_OK) s = fl_state_get_f64s(st, "val_losses", c->val_losses, c->cap, &nv2);
  if (s == FL_OK && nv != nv2)
    s = fl_error(FL_ERR_FORMAT, "ProgressCB: %lld valid steps but %lld valid losses", (long long)nv, (long long)nv2);
  if (s != FL_OK) {
    c->n_losses = c->n_val = 0;
    return s;
  }
  c->n_losses = (int)n, c->n_val = (int)nv;
  return FL_OK;
}

static void pcb_free(fl_callback *cb) {
  progress_cb *c = (progress_cb *)cb;
  fl_progress_free(c->p);
  free(c->losses), free(c->val_x), free(c->val_losses);
  free(c->png);
  free(c);
}

fl_callback *fl_progress_cb_new(int plot, const char *png, FILE *out, int bars) {
  progress_cb *c = fl_xcalloc(1, sizeof *c);
  c->cb.name = "ProgressCB";
  c->cb.order = 1;   /* MetricsCB.order + 1 */
  c->cb.free = pcb_free;
  c->cb.on[FL_BEFORE_FIT] = pcb_before_fit;
  c->cb.on[FL_BEFORE_EPOCH] = pcb_before_epoch;
  c->cb.on[FL_AFTER_BATCH] = pcb_after_batch;
  c->cb.on[FL_AFTER_EPOCH] = pcb_after_epoch;
  c->cb.on[FL_CLEANUP_EPOCH] = pcb_cleanup_epoch;
  c->cb.on[FL_CLEANUP_FIT] = pcb_cleanup_fit;
  c->cb.save_state = pcb_save_state;
  c->cb.load_state = pcb_load_state;
  c->plot = plot;
  c->png = png ? strdup(png) : NULL;
  c->out = out ? out : stdout;
  c->bars = bars;
  return &c->cb;
}
