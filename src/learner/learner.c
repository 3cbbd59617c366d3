/* The Learner of lesson 16: events, the cancel contract written once (with_cbs), one batch,
 * one epoch, fit. Everything else arrives as callbacks (src/learner/, one file per kind of callback). */
#include <stdlib.h>
#include <string.h>

#include "fl/learner.h"

typedef fl_status (*body_fn)(fl_learner *l);
enum { FIT = 0, EPOCH = 1, BATCH = 2 };
static const fl_status cancel_of[3] = {FL_CANCEL_FIT, FL_CANCEL_EPOCH, FL_CANCEL_BATCH};

fl_status fl_learner_callback(fl_learner *l, fl_event e) {
  for (int i = 0; i < l->n_cbs; i++) {
    fl_cb_fn f = l->cbs[i]->on[e];
    fl_status s = f ? f(l->cbs[i], l) : FL_OK;
    if (s != FL_OK) return s;
  }
  return FL_OK;
}

/* A cancel of this level is swallowed; one of a lower level escaped it: a callback bug. */
static fl_status settle(int level, fl_status s, fl_event at) {
  if (s == cancel_of[level]) return FL_OK;
  if (s > 0 && s < cancel_of[level])
    return fl_error(FL_ERR, "a callback returned '%s' in %s", fl_status_str(s), fl_event_name(at));
  return s;
}

/* before_X; body; after_X unless cancelled or failed; cleanup_X always (the lesson's with_cbs). */
static fl_status with_cbs(fl_learner *l, int level, body_fn body) {
  fl_event before = (fl_event)(FL_BEFORE_FIT + 3 * level);
  fl_event at = before;   /* where s came from, for the message of a misplaced cancel */
  fl_status s = fl_learner_callback(l, before);
  if (s == FL_OK) s = body(l);
  if (s == FL_OK) s = fl_learner_callback(l, at = before + 1);
  l->status = s;          /* cleanup_X handlers see how level X ended */
  s = settle(level, s, at);
  fl_status c = settle(level, fl_learner_callback(l, before + 2), before + 2);
  return s != FL_OK ? s : c;
}

/* A step from the learner's ops ("subclass") or, when it has none, from the callbacks. */
static fl_status step(fl_learner *l, fl_status (*op)(fl_learner *), fl_event e) {
  return op ? op(l) : fl_learner_callback(l, e);
}

static fl_status one_batch(fl_learner *l) {
  const fl_learner_ops *o = l->ops ? l->ops : &(fl_learner_ops){0};
  fl_status s;
  if ((s = step(l, o->predict, FL_PREDICT)) || (s = fl_learner_callback(l, FL_AFTER_PREDICT)) ||
      (s = step(l, o->get_loss, FL_GET_LOSS)) || (s = fl_learner_callback(l, FL_AFTER_LOSS)))
    return s;
  if (!l->training) return FL_OK;
  if ((s = step(l, o->backward, FL_BACKWARD)) || (s = fl_learner_callback(l, FL_AFTER_BACKWARD)) ||
      (s = step(l, o->step, FL_STEP)) || (s = fl_learner_callback(l, FL_AFTER_STEP)))
    return s;
  return step(l, o->zero_grad, FL_ZERO_GRAD);
}

static fl_status one_epoch_body(fl_learner *l) {
  int64_t first = l->start_iter;   /* > 0 only in a phase resumed mid-way */
  l->start_iter = 0;
  fl_dataloader_begin_at(l->dl, first);
  for (l->iter = first; fl_dataloader_next(l->dl, &l->batch); l->iter++) {
    fl_graph_reset(l->graph);
    l->preds = l->loss = NULL;
    fl_status s = with_cbs(l, BATCH, one_batch);
    if (s != FL_OK) return s;
    l->n_iter += l->training;
  }
  return FL_OK;
}

static fl_status one_epoch(fl_learner *l, int training) {
  fl_module_train(l->model, training);
  l->training = training;
  l->dl = training ? l->dls->train : l->dls->valid;
  int grad = fl_graph_set_grad(l->graph, training);   /* validation runs under no_grad */
  fl_status s = with_cbs(l, EPOCH, one_epoch_body);
  fl_graph_set_grad(l->graph, grad);
  return s;
}

static fl_status fit_body(fl_learner *l) {
  for (l->epoch = l->start_epoch; l->epoch < l->n_epochs; l->epoch++) {
    fl_status s = l->fit_train && !l->start_valid ? one_epoch(l, 1) : FL_OK;
    l->start_valid = 0;
    if (s == FL_OK && l->fit_valid) s = one_epoch(l, 0);
    if (s != FL_OK) return s;
  }
  return FL_OK;
}

fl_status fl_fit(fl_learner *l, int n_epochs, int train, int valid, fl_callback **cbs, int n, float lr) {
  FL_CHECK(n_epochs >= 0 && n >= 0 && (n == 0 || cbs), "fl_fit: bad n_epochs (%d) or callbacks", n_epochs);
  for (int i = 0; i < n; i++) fl_learner_add_cb(l, cbs[i]);
  l->n_epochs = n_epochs;
  l->n_iter = 0;
  l->start_epoch = l->start_valid = 0, l->start_iter = 0;   /* a resume sets them in before_fit */
  if (l->opt_func) {
    fl_opt_free(l->opt);
    l->opt = l->opt_func(l->model, lr > 0 ? lr : l->lr);
  }
  l->fit_train = train, l->fit_valid = valid;
  fl_status s = with_cbs(l, FIT, fit_body);
  for (int i = 0; i < n; i++) {   /* remove this fit's callbacks (they stay the caller's) */
    int k = 0;
    while (k < l->n_cbs && l->cbs[k] != cbs[i]) k++;
    if (k < l->n_cbs) memmove(&l->cbs[k], &l->cbs[k + 1], (size_t)(--l->n_cbs - k) * sizeof *l->cbs);
  }
  return s;
}
