/* LRFinderCB, both versions of the lesson, and lr_find. */
#include <stdlib.h>
#include <math.h>
#include <string.h>

#include "fl/learner.h"
#include "fl/plot.h"

static fl_status lrf_before_fit(fl_callback *cb, fl_learner *l) {
  fl_lr_finder_cb *f = (fl_lr_finder_cb *)cb;
  FL_CHECK(l->opt, "LRFinderCB: the learner has no optimiser");
  if (f->use_sched) f->sched = fl_exp_lr(l->opt, f->lr_mult);
  int64_t per_epoch = l->dls && l->dls->train ? fl_dataloader_len(l->dls->train) : 0;
  int cap = (int)(per_epoch * (l->n_epochs > 0 ? l->n_epochs : 1)) + 1;
  if (cap > f->cap) {
    free(f->lrs), free(f->losses);
    f->lrs = fl_xmalloc((size_t)cap * sizeof(double));
    f->losses = fl_xmalloc((size_t)cap * sizeof(double));
    f->cap = cap;
  }
  f->n = 0;
  f->min = INFINITY;
  return FL_OK;
}

static fl_status lrf_after_batch(fl_callback *cb, fl_learner *l) {
  fl_lr_finder_cb *f = (fl_lr_finder_cb *)cb;
  if (!l->training) return FL_CANCEL_EPOCH;
  double loss = fl_tensor_item(l->loss);
  if (f->n < f->cap) {
    f->lrs[f->n] = l->opt->groups[0].lr;
    f->losses[f->n++] = loss;
  }
  if (loss < f->min) f->min = loss;
  if (isnan(loss) || loss > f->min * f->max_mult) return FL_CANCEL_FIT;
  if (f->use_sched) fl_sched_step(&f->sched);
  else
    for (int i = 0; i < l->opt->n_groups; i++) l->opt->groups[i].lr *= f->lr_mult;
  return FL_OK;
}

static fl_status lrf_cleanup_fit(fl_callback *cb, fl_learner *l) {
  (void)l;
  fl_lr_finder_cb *f = (fl_lr_finder_cb *)cb;
  if (!f->png || f->n == 0) return FL_OK;
  fl_series s = {"loss", f->lrs, f->losses, f->n};
  fl_plot_opts o = {.title = "LR finder", .xlabel = "learning rate (log scale)", .ylabel = "loss", .log_x = 1};
  return fl_plot_png(f->png, &s, 1, &o);
}

static void lrf_free(fl_callback *cb) {
  fl_lr_finder_cb *f = (fl_lr_finder_cb *)cb;
  free(f->lrs), free(f->losses);
  free((char *)f->png);
  free(f);
}

static fl_callback *lrf_new(int use_sched, float mult, float max_mult, const char *png) {
  FL_CHECK(mult > 1.0f && max_mult > 1.0f, "LRFinderCB: the multiplier (%g) and max_mult (%g) must be > 1",
           (double)mult, (double)max_mult);
  fl_lr_finder_cb *f = fl_xcalloc(1, sizeof *f);
  f->cb.name = "LRFinderCB";
  f->cb.free = lrf_free;
  f->cb.on[FL_BEFORE_FIT] = lrf_before_fit;
  f->cb.on[FL_AFTER_BATCH] = lrf_after_batch;
  f->cb.on[FL_CLEANUP_FIT] = lrf_cleanup_fit;
  f->use_sched = use_sched;
  f->lr_mult = mult;
  f->max_mult = max_mult;
  f->png = png ? strdup(png) : NULL;
  return &f->cb;
}

fl_callback *fl_lr_finder_cb_new(float lr_mult, const char *png) { return lrf_new(0, lr_mult, 3.0f, png); }
fl_callback *fl_lr_finder_sched_cb_new(float gamma, float max_mult, const char *png) {
  return lrf_new(1, gamma, max_mult, png);
}

/* The lesson's reading of the curve: "roughly where the steepest slope is". The losses are
 * smoothed (a debiased exponential average, beta 0.8, as fastai smooths its recorder) and the
 * suggestion is the lr where the smoothed loss falls fastest per log(lr), before its minimum. */
double fl_lr_steepest(const double *lrs, const double *losses, int n) {
  if (n < 3) return n ? lrs[0] : NAN;
  double *sm = fl_xmalloc((size_t)n * sizeof *sm), avg = 0, w = 0;
  int lo = 0;
  for (int i = 0; i < n; i++) {
    avg = 0.8 * avg + 0.2 * losses[i];
    w = 0.8 * w + 0.2;
    sm[i] = avg / w;
    if (sm[i] < sm[lo]) lo = i;
  }
  int best = 0;
  double slope = INFINITY;
  for (int i = 0; i + 1 <= lo; i++) {
    double s = (sm[i + 1] - sm[i]) / (log(lrs[i + 1]) - log(lrs[i]));
    if (s < slope) slope = s, best = i;
  }
  double lr = lo > 0 ? sqrt(lrs[best] * lrs[best + 1]) : lrs[0];
  free(sm);
  return lr;
}

/* Saves the weights, grads and buffers (on their device), runs the finder, puts everything back. */
fl_status fl_lr_find(fl_learner *l, float gamma, float max_mult, float start_lr, int max_epochs,
                     const char *png, float *suggested, double **lrs, double **losses, int *n) {
  FL_CHECK(start_lr > 0 && max_epochs > 0, "fl_lr_find: start_lr and max_epochs must be > 0");
  fl_module *m = l->model;
  /* snapshots on the model's device: weights, grads, and which grads are none */
  fl_tensor *w = fl_tensor_new1(FL_F32, m->device, fl_numel(m->flat));
  fl_tensor *g = w ? fl_tensor_new1(FL_F32, m->device, fl_numel(m->flat_grad)) : NULL;
  /* and the buffers (BatchNorm's running statistics, which the finder's batches move) */
  fl_tensor *bf = g && m->flat_buf ? fl_tensor_new1(FL_F32, m->device, fl_numel(m->flat_buf)) : NULL;
  if (!g || (m->flat_buf && !bf)) {
    fl_tensor_free(w), fl_tensor_free(g);
    return fl_error(FL_ERR_NOMEM, "lr_find: out of memory saving the model (%s)", fl_last_error());
  }
  fl_tensor_copy(w, m->flat);
  fl_tensor_copy(g, m->flat_grad);
  if (bf) fl_tensor_copy(bf, m->flat_buf);
  int np = fl_module_parameters(m, NULL, 0);
  fl_tensor **ps = fl_xmalloc((size_t)(np ? np : 1) * sizeof *ps);
  int *none = fl_xmalloc((size_t)(np ? np : 1) * sizeof *none);
  fl_module_parameters(m, ps, np);
  for (int i = 0; i < np; i++) none[i] = ps[i]->grad_none;
  fl_optimizer *saved_opt = l->opt;
  fl_dataloader *dl[2] = {l->dls ? l->dls->train : NULL, l->dls ? l->dls->valid : NULL};
  uint64_t epochs[2] = {dl[0] ? fl_dataloader_epoch(dl[0]) : 0, dl[1] ? fl_dataloader_epoch(dl[1]) : 0};
  l->opt = NULL;
  fl_callback *cb = fl_lr_finder_sched_cb_new(gamma, max_mult, png);
  fl_status s = fl_fit(l, max_epochs, 1, 1, &cb, 1, start_lr);
  fl_opt_free(l->opt);
  l->opt = saved_opt;
  fl_tensor_copy(m->flat, w);
  fl_tensor_copy(m->flat_grad, g);
  if (bf) fl_tensor_copy(m->flat_buf, bf);
  fl_tensor_free(w), fl_tensor_free(g), fl_tensor_free(bf);
  for (int i = 0; i < np; i++) ps[i]->grad_none = none[i];
  free(ps), free(none);
  for (int i = 0; i < 2; i++)   /* the data order of a later fit is as if lr_find never ran */
    if (dl[i]) fl_dataloader_set_epoch(dl[i], epochs[i]);
  fl_lr_finder_cb *f = (fl_lr_finder_cb *)cb;
  if (suggested) *suggested = (float)fl_lr_steepest(f->lrs, f->losses, f->n);
  if (lrs && losses && n) {
    *n = f->n;
    *lrs = fl_xmalloc((size_t)(f->n ? f->n : 1) * sizeof(double));
    *losses = fl_xmalloc((size_t)(f->n ? f->n : 1) * sizeof(double));
    memcpy(*lrs, f->lrs, (size_t)f->n * sizeof(double));
    memcpy(*losses, f->losses, (size_t)f->n * sizeof(double));
  }
  fl_callback_free(cb);
  return s;
}
