/* The lesson's small callbacks: TrainCB, CompletionCB, SingleBatchCB, DeviceCB, and a NaN
 * guard. Each embeds fl_callback first and is freed with fl_callback_free. */
#include <stdlib.h>
#include <math.h>
#include <string.h>

#include "fl/checkpoint.h"
#include "fl/learner.h"

static void plain_free(fl_callback *cb) { free(cb); }

static fl_callback *cb_alloc(size_t size, const char *name, int order) {
  fl_callback *cb = fl_xcalloc(1, size);
  cb->name = name;
  cb->order = order;
  cb->free = plain_free;
  return cb;
}

/* ---- TrainCB(n_inp): the five steps as events ---- */
typedef struct { fl_callback cb; int n_inp; } train_cb;

static fl_status tcb_predict(fl_callback *cb, fl_learner *l) {
  int n_inp = ((train_cb *)cb)->n_inp;
  FL_CHECK(n_inp == 1, "TrainCB: modules take one input (n_inp = %d)", n_inp);
  l->preds = fl_module_forward(l->model, l->graph, l->batch.t[0]);
  return l->preds ? FL_OK : fl_error(FL_ERR, "predict failed: %s", fl_last_error());
}
static fl_status tcb_get_loss(fl_callback *cb, fl_learner *l) {
  int n_inp = ((train_cb *)cb)->n_inp;
  FL_CHECK(n_inp < l->batch.n, "TrainCB: n_inp = %d leaves no target in a batch of %d tensors", n_inp, l->batch.n);
  l->loss = l->loss_func(l->graph, l->preds, l->batch.t[n_inp]);
  return l->loss ? FL_OK : fl_error(FL_ERR, "get_loss failed: %s", fl_last_error());
}
static fl_status tcb_backward(fl_callback *cb, fl_learner *l) { (void)cb; return fl_backward(l->graph, l->loss); }
static fl_status tcb_step(fl_callback *cb, fl_learner *l) { (void)cb; return fl_opt_step(l->opt); }
static fl_status tcb_zero_grad(fl_callback *cb, fl_learner *l) {
  (void)cb;
  fl_opt_zero_grad(l->opt);
  return FL_OK;
}

fl_callback *fl_train_cb_new(int n_inp) {
  FL_CHECK(n_inp >= 1, "fl_train_cb_new: n_inp must be >= 1");
  train_cb *t = (train_cb *)cb_alloc(sizeof *t, "TrainCB", 0);
  t->n_inp = n_inp;
  t->cb.on[FL_PREDICT] = tcb_predict;
  t->cb.on[FL_GET_LOSS] = tcb_get_loss;
  t->cb.on[FL_BACKWARD] = tcb_backward;
  t->cb.on[FL_STEP] = tcb_step;
  t->cb.on[FL_ZERO_GRAD] = tcb_zero_grad;
  return &t->cb;
}

/* ---- CompletionCB ---- */
typedef struct { fl_callback cb; int64_t count; FILE *out; } completion_cb;

static fl_status ccb_before_fit(fl_callback *cb, fl_learner *l) {
  (void)l;
  ((completion_cb *)cb)->count = 0;
  return FL_OK;
}
static fl_status ccb_after_batch(fl_callback *cb, fl_learner *l) {
  (void)l;
  ((completion_cb *)cb)->count++;
  return FL_OK;
}
static fl_status ccb_after_fit(fl_callback *cb, fl_learner *l) {
  (void)l;
  completion_cb *c = (completion_cb *)cb;
  fprintf(c->out, "Completed %lld batches\n", (long long)c->count);
  return FL_OK;
}

static fl_status ccb_save_state(fl_callback *cb, fl_learner *l, fl_state *st) {
  (void)l;
  return fl_state_set_i64(st, "count", ((completion_cb *)cb)->count);
}
static fl_status ccb_load_state(fl_callback *cb, fl_learner *l, const fl_state *st) {
  (void)l;
  return fl_state_get_i64(st, "count", &((completion_cb *)cb)->count);
}

fl_callback *fl_completion_cb_new(FILE *out) {
  completion_cb *c = (completion_cb *)cb_alloc(sizeof *c, "CompletionCB", 0);
  c->out = out ? out : stdout;
  c->cb.on[FL_BEFORE_FIT] = ccb_before_fit;
  c->cb.on[FL_AFTER_BATCH] = ccb_after_batch;
  c->cb.on[FL_AFTER_FIT] = ccb_after_fit;
  c->cb.save_state = ccb_save_state;
  c->cb.load_state = ccb_load_state;
  return &c->cb;
}

/* ---- SingleBatchCB (order 1): cancel after the first batch ---- */
typedef struct { fl_callback cb; fl_status cancel; } single_batch_cb;

static fl_status sbcb_after_batch(fl_callback *cb, fl_learner *l) {
  (void)l;
  return ((single_batch_cb *)cb)->cancel;
}

fl_callback *fl_single_batch_cb_new(fl_status cancel) {
  FL_CHECK(cancel == FL_CANCEL_FIT || cancel == FL_CANCEL_EPOCH,
           "fl_single_batch_cb_new: cancel must be FL_CANCEL_FIT or FL_CANCEL_EPOCH");
  single_batch_cb *c = (single_batch_cb *)cb_alloc(sizeof *c, "SingleBatchCB", 1);
  c->cancel = cancel;
  c->cb.on[FL_AFTER_BATCH] = sbcb_after_batch;
  return &c->cb;
}

/* ---- DeviceCB ---- */
typedef struct { fl_callback cb; fl_device dev; fl_batch cache; } device_cb;

static fl_status dcb_before_fit(fl_callback *cb, fl_learner *l) {
  device_cb *d = (device_cb *)cb;
  fl_status s = fl_module_to(l->model, d->dev);
  if (s != FL_OK) return s;
  if (!l->dls) return FL_OK;
  /* Put the datasets on the device once: batches are then gathered there. */
  fl_dataloader *dl[2] = {l->dls->train, l->dls->valid};
  for (int i = 0; i < 2 && s == FL_OK; i++)
    if (dl[i]) {
      s = fl_dataset_to((fl_dataset *)fl_dataloader_dataset(dl[i]), d->dev);
      if (s == FL_OK) s = fl_dataloader_follow(dl[i]);
    }
  return s;
}

static fl_status dcb_before_batch(fl_callback *cb, fl_learner *l) {
  device_cb *d = (device_cb *)cb;
  return fl_batch_to(&l->batch, d->dev, &d->cache);
}

static void dcb_free(fl_callback *cb) {
  fl_batch_cache_free(&((device_cb *)cb)->cache);
  free(cb);
}

fl_callback *fl_device_cb_new(fl_device dev) {
  device_cb *d = (device_cb *)cb_alloc(sizeof *d, "DeviceCB", 0);
  d->dev = dev;
  d->cb.free = dcb_free;
  d->cb.on[FL_BEFORE_FIT] = dcb_before_fit;
  d->cb.on[FL_BEFORE_BATCH] = dcb_before_batch;
  return &d->cb;
}

/* ---- NaNCB: a non-finite loss stops the fit with an error naming where ---- */
typedef struct { fl_callback cb; int every; } nan_cb;

static fl_status ncb_after_loss(fl_callback *cb, fl_learner *l) {
  nan_cb *n = (nan_cb *)cb;
  if (!l->loss || l->iter % n->every) return FL_OK;
  float v = fl_tensor_item(l->loss);
  if (isfinite(v)) return FL_OK;
  return fl_error(FL_ERR_NAN, "loss is %s at epoch %d, %s batch %lld", isnan(v) ? "NaN" : "infinite",
                  l->epoch, l->training ? "training" : "validation", (long long)l->iter);
}

fl_callback *fl_nan_cb_new(int every) {
  nan_cb *n = (nan_cb *)cb_alloc(sizeof *n, "NaNCB", -10);
  n->every = every > 0 ? every : 1;
  n->cb.on[FL_AFTER_LOSS] = ncb_after_loss;
  return &n->cb;
}
