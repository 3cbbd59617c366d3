/* Creating and freeing learners, the callback list, event names, the TrainLearner and
 * MomentumLearner step tables. */
#include <stdlib.h>
#include <string.h>

#include "fl/learner.h"

static const char *event_names[FL_N_EVENTS] = {
    "before_fit", "after_fit", "cleanup_fit", "before_epoch", "after_epoch", "cleanup_epoch",
    "before_batch", "after_batch", "cleanup_batch", "predict", "after_predict", "get_loss",
    "after_loss", "backward", "after_backward", "step", "after_step", "zero_grad"};

const char *fl_event_name(fl_event e) {
  return e >= 0 && e < FL_N_EVENTS ? event_names[e] : "unknown event";
}

void fl_callback_free(fl_callback *cb) {
  if (cb && cb->free) cb->free(cb);
}

fl_learner *fl_learner_new(fl_module *model, fl_dataloaders *dls, fl_loss_fn loss_func, float lr,
                           fl_callback **cbs, int n, fl_opt_fn opt_func, const fl_learner_ops *ops) {
  FL_CHECK(model && n >= 0 && (n == 0 || cbs), "fl_learner_new: needs a model and a valid callback list");
  FL_CHECK(fl_module_collate(model) == FL_OK, "fl_learner_new: %s", fl_last_error());
  fl_learner *l = fl_xcalloc(1, sizeof *l);
  l->model = model;
  l->dls = dls;
  l->loss_func = loss_func ? loss_func : fl_mse;
  l->lr = lr;
  l->opt_func = opt_func;
  l->ops = ops;
  l->mom = 0.85f;
  l->training = model->training;
  l->graph = fl_graph_new();
  for (int i = 0; i < n; i++) fl_learner_add_cb(l, cbs[i]);
  return l;
}

fl_learner *fl_momentum_learner_new(fl_module *model, fl_dataloaders *dls, fl_loss_fn loss_func,
                                    float lr, fl_callback **cbs, int n, fl_opt_fn opt_func, float mom) {
  fl_learner *l = fl_learner_new(model, dls, loss_func, lr, cbs, n, opt_func, &fl_momentum_ops);
  l->mom = mom;
  return l;
}

void fl_learner_free(fl_learner *l) {
  if (!l) return;
  for (int i = 0; i < l->n_cbs; i++) fl_callback_free(l->cbs[i]);
  free(l->cbs);
  fl_opt_free(l->opt);
  fl_graph_free(l->graph);
  free(l);
}

/* Inserted after every callback of the same or a lower order: a stable sort by order. */
void fl_learner_add_cb(fl_learner *l, fl_callback *cb) {
  FL_CHECK(cb, "fl_learner_add_cb: callback is NULL");
  if (l->n_cbs == l->cap_cbs) {
    l->cap_cbs = l->cap_cbs ? 2 * l->cap_cbs : 8;
    l->cbs = realloc(l->cbs, (size_t)l->cap_cbs * sizeof *l->cbs);
    FL_CHECK(l->cbs, "out of memory");
  }
  int k = l->n_cbs;
  while (k > 0 && l->cbs[k - 1]->order > cb->order) k--;
  memmove(&l->cbs[k + 1], &l->cbs[k], (size_t)(l->n_cbs - k) * sizeof *l->cbs);
  l->cbs[k] = cb;
  l->n_cbs++;
}

fl_callback *fl_learner_find_cb(fl_learner *l, const char *name) {
  for (int i = 0; i < l->n_cbs; i++)
    if (l->cbs[i]->name && !strcmp(l->cbs[i]->name, name)) return l->cbs[i];
  return NULL;
}

/* ---- TrainLearner: the five steps as the learner's own ops ---- */
static fl_status no_result(const char *what) {
  return fl_error(FL_ERR, "%s failed: %s", what, fl_last_error());
}

static fl_status train_predict(fl_learner *l) {
  l->preds = fl_module_forward(l->model, l->graph, l->batch.t[0]);
  return l->preds ? FL_OK : no_result("predict");
}
static fl_status train_get_loss(fl_learner *l) {
  l->loss = l->loss_func(l->graph, l->preds, l->batch.t[1]);
  return l->loss ? FL_OK : no_result("get_loss");
}
static fl_status train_backward(fl_learner *l) { return fl_backward(l->graph, l->loss); }
static fl_status train_step(fl_learner *l) { return fl_opt_step(l->opt); }
static fl_status train_zero_grad(fl_learner *l) {
  fl_opt_zero_grad(l->opt);
  return FL_OK;
}
/* MomentumLearner: keep a fraction of the old gradient instead of zeroing it. */
static fl_status momentum_zero_grad(fl_learner *l) {
  fl_tensor_scale(l->model->flat_grad, l->mom);
  return FL_OK;
}

const fl_learner_ops fl_train_ops = {train_predict, train_get_loss, train_backward, train_step, train_zero_grad};
const fl_learner_ops fl_momentum_ops = {train_predict, train_get_loss, train_backward, train_step, momentum_zero_grad};
