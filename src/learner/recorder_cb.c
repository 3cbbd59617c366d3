/* RecorderCB (12_accel_sgd): records, after every training batch, the values that batch used:
 * the lr and momentum of the optimiser's first group (beta1 for the Adam family, else mom: the
 * notebook's pg['betas'][0] / pg['momentum']) and the batch's loss. Plots each as its own PNG.
 * History restarts at each fit (as the notebook's before_fit) and is kept by checkpoints. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fl/checkpoint.h"
#include "fl/learner.h"
#include "fl/plot.h"

static const char *const rec_key[FL_REC_N] = {"lr", "mom", "loss"};

static fl_status rec_before_fit(fl_callback *cb, fl_learner *l) {
  fl_recorder_cb *r = (fl_recorder_cb *)cb;
  int64_t per_epoch = l->dls && l->dls->train ? fl_dataloader_len(l->dls->train) : 0;
  int64_t cap = per_epoch * l->n_epochs + 1;
  if (cap > r->cap) {
    for (int k = 0; k < FL_REC_N; k++) {
      free(r->v[k]);
      r->v[k] = fl_xmalloc((size_t)cap * sizeof(double));
    }
    r->cap = cap;
  }
  r->n = 0;
  return FL_OK;
}

static fl_status rec_after_batch(fl_callback *cb, fl_learner *l) {
  fl_recorder_cb *r = (fl_recorder_cb *)cb;
  if (!l->training || r->n >= r->cap) return FL_OK;
  const fl_optimizer *o = l->opt;
  r->v[FL_REC_LR][r->n] = o ? (double)o->groups[0].lr : NAN;
  r->v[FL_REC_MOM][r->n] = !o ? NAN : o->has_betas ? o->groups[0].beta1 : (double)o->groups[0].mom;
  /* reading the loss is a device sync on a GPU: only when asked for */
  r->v[FL_REC_LOSS][r->n] = (r->what & (1 << FL_REC_LOSS)) && l->loss ? fl_tensor_item(l->loss) : NAN;
  r->n++;
  return FL_OK;
}

static fl_status rec_save_state(fl_callback *cb, fl_learner *l, fl_state *st) {
  (void)l;
  fl_recorder_cb *r = (fl_recorder_cb *)cb;
  fl_status s = FL_OK;
  for (int k = 0; k < FL_REC_N && s == FL_OK; k++) s = fl_state_set_f64s(st, rec_key[k], r->v[k], r->n);
  return s;
}

static fl_status rec_load_state(fl_callback *cb, fl_learner *l, const fl_state *st) {
  (void)l;
  fl_recorder_cb *r = (fl_recorder_cb *)cb;
  int64_t n[FL_REC_N] = {0};
  fl_status s = FL_OK;
  for (int k = 0; k < FL_REC_N && s == FL_OK; k++) s = fl_state_get_f64s(st, rec_key[k], r->v[k], r->cap, &n[k]);
  if (s == FL_OK && (n[1] != n[0] || n[2] != n[0]))
    s = fl_error(FL_ERR_FORMAT, "RecorderCB: %lld lr, %lld mom and %lld loss values", (long long)n[0], (long long)n[1],
                 (long long)n[2]);
  r->n = s == FL_OK ? n[0] : 0;
  return s;
}

static void rec_free(fl_callback *cb) {
  fl_recorder_cb *r = (fl_recorder_cb *)cb;
  for (int k = 0; k < FL_REC_N; k++) free(r->v[k]);
  free(r);
}

fl_callback *fl_recorder_cb_new(int what) {
  FL_CHECK(what > 0 && what < (1 << FL_REC_N), "fl_recorder_cb_new: what must be a set of FL_REC_* bits, not %d", what);
  fl_recorder_cb *r = fl_xcalloc(1, sizeof *r);
  r->cb.name = "RecorderCB";
  r->cb.free = rec_free;
  r->what = what;
  r->cb.on[FL_BEFORE_FIT] = rec_before_fit;
  r->cb.on[FL_AFTER_BATCH] = rec_after_batch;
  r->cb.save_state = rec_save_state;
  r->cb.load_state = rec_load_state;
  return &r->cb;
}

int64_t fl_recorder_values(const fl_callback *cb, fl_rec_value which, const double **v) {
  const fl_recorder_cb *r = (const fl_recorder_cb *)cb;
  FL_CHECK(cb && !strcmp(cb->name, "RecorderCB") && which >= 0 && which < FL_REC_N, "fl_recorder_values: misuse");
  if (v) *v = r->v[which];
  return r->n;
}

/* path with "-NAME" before its ".png" (or at its end) */
static char *suffixed(const char *path, const char *name) {
  size_t n = strlen(path), dot = n >= 4 && !strcmp(path + n - 4, ".png") ? n - 4 : n;
  char *out = fl_xmalloc(n + strlen(name) + 6);
  sprintf(out, "%.*s-%s.png", (int)dot, path, name);
  return out;
}

fl_status fl_recorder_plot(const fl_callback *cb, const char *png) {
  const fl_recorder_cb *r = (const fl_recorder_cb *)cb;
  FL_CHECK(cb && png && !strcmp(cb->name, "RecorderCB"), "fl_recorder_plot: needs a RecorderCB and a path");
  static const char *const title[FL_REC_N] = {"learning rate", "momentum (beta1)", "loss"};
  int n_plots = 0;
  for (int k = 0; k < FL_REC_N; k++) n_plots += (r->what >> k) & 1;
  fl_status s = FL_OK;
  for (int k = 0; k < FL_REC_N && s == FL_OK; k++) {
    if (!((r->what >> k) & 1)) continue;
    fl_series ser = {rec_key[k], NULL, r->v[k], (int)r->n};
    fl_plot_opts o = {.title = title[k], .xlabel = "training batch", .ylabel = rec_key[k]};
    char *path = n_plots > 1 ? suffixed(png, rec_key[k]) : NULL;
    s = fl_plot_png(path ? path : png, &ser, 1, &o);
    free(path);
  }
  return s;
}
