/* Inference: one batch (fl_predict), logits to classes and probabilities (fl_preds_decode), and
 * the Learner's validation loop over any loader capturing the predictions (fl_get_preds, the
 * get_preds of fastai / capture_preds of miniai), so predictions take the path validation takes. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fl/learner.h"

/* Per row of logits (B, C): the first argmax (as MulticlassAccuracy counts it), its softmax
 * probability 1 / sum_j exp(l_j - l_max), and when asked the whole softmax. Host floats. */
static void decode_rows(const float *x, int64_t B, int64_t C, int32_t *classes, float *p, float *probs) {
  for (int64_t i = 0; i < B; i++) {
    const float *r = x + i * C;
    int best = 0;
    for (int64_t j = 1; j < C; j++)
      if (r[j] > r[best]) best = (int)j;
    if (classes) classes[i] = best;
    if (!p && !probs) continue;
    float m = r[best], s = 0;
    for (int64_t j = 0; j < C; j++) s += expf(r[j] - m);
    if (p) p[i] = 1.0f / s;
    if (probs)
      for (int64_t j = 0; j < C; j++) probs[i * C + j] = expf(r[j] - m) / s;
  }
}

void fl_preds_decode(const fl_tensor *logits, int32_t *classes, float *p, float *probs) {
  FL_CHECK(logits && logits->ndim == 2 && logits->dtype == FL_F32 && fl_is_contiguous(logits),
           "fl_preds_decode: logits must be contiguous f32 (B, C)");
  int64_t B = logits->shape[0], C = logits->shape[1];
  if (logits->device == FL_CPU) {
    decode_rows(logits->data, B, C, classes, p, probs);
    return;
  }
  float *h = fl_xmalloc((size_t)(B * C > 0 ? B * C : 1) * sizeof *h);
  fl_tensor_to_host(logits, h);
  decode_rows(h, B, C, classes, p, probs);
  free(h);
}

fl_status fl_predict(fl_module *model, fl_graph *g, fl_tensor *x, int32_t *classes, float *p, float *probs) {
  FL_CHECK(model && g && x, "fl_predict: model, graph and input are required");
  FL_CHECK(x->device == model->device, "fl_predict: the input is on %s, the model on %s", fl_device_name(x->device),
           fl_device_name(model->device));
  int was = model->training;
  fl_module_train(model, 0);
  int grad = fl_graph_set_grad(g, 0);
  fl_tensor *y = fl_module_forward(model, g, x);
  fl_graph_set_grad(g, grad);
  fl_module_train(model, was);
  if (!y) return fl_error(FL_ERR, "predict failed: %s", fl_last_error());
  fl_preds_decode(y, classes, p, probs);
  return FL_OK;
}

/* ---- the capturing callback of fl_get_preds ---- */
typedef struct capture_cb {
  fl_callback cb;
  int32_t *classes;
  float *p, *probs;
  float **probs_new;    /* fl_tta_accuracy: probs allocated at the first batch, C known then */
  int32_t *targs;       /* when not NULL: the batches' labels */
  int64_t n, cap, C;
} capture_cb;

static fl_status cap_after_batch(fl_callback *cb, fl_learner *l) {
  capture_cb *c = (capture_cb *)cb;
  FL_CHECK(l->preds && l->preds->ndim == 2, "fl_get_preds: the model's output must be (B, C) logits");
  int64_t B = l->preds->shape[0], C = l->preds->shape[1];
  FL_CHECK(c->n + B <= c->cap, "fl_get_preds: more predictions (%lld) than the loader's rows (%lld)",
           (long long)(c->n + B), (long long)c->cap);
  if (c->probs_new && !c->probs) {
    c->probs = malloc((size_t)(c->cap * C > 0 ? c->cap * C : 1) * sizeof *c->probs);
    if (!c->probs) return fl_error(FL_ERR_NOMEM, "predictions: out of memory for %lld x %lld probabilities",
                                   (long long)c->cap, (long long)C);
    *c->probs_new = c->probs;
    c->C = C;
  }
  FL_CHECK(!c->probs_new || c->C == C, "fl_get_preds: the model's outputs changed from %lld to %lld",
           (long long)c->C, (long long)C);
  fl_preds_decode(l->preds, c->classes ? c->classes + c->n : NULL, c->p ? c->p + c->n : NULL,
                  c->probs ? c->probs + c->n * C : NULL);
  if (c->targs) {
    fl_tensor *y = l->batch.t[1];
    FL_CHECK(y && y->dtype == FL_I32 && fl_numel(y) == B, "fl_get_preds: the batch's labels must be i32 (B)");
    if (y->device == FL_CPU) memcpy(c->targs + c->n, y->data, (size_t)B * sizeof *c->targs);
    else fl_tensor_to_host(y, c->targs + c->n);
  }
  c->n += B;
  return FL_OK;
}

/* fl_get_preds with extra callbacks for this pass (a TTA flip) and the capture's options. */
static fl_status get_preds(fl_learner *l, fl_dataloader *dl, fl_callback **extra, int n_extra, capture_cb *c,
                           int64_t *n_out) {
  FL_CHECK(l && dl && n_extra >= 0 && n_extra < 4, "fl_get_preds: learner and loader are required");
  c->cb = (fl_callback){.name = "CapturePreds", .order = 0};
  c->cb.on[FL_AFTER_BATCH] = cap_after_batch;
  c->cap = fl_dataloader_dataset(dl)->n;
  fl_callback *cbs[5] = {&c->cb};
  for (int i = 0; i < n_extra; i++) cbs[1 + i] = extra[i];
  fl_dataloaders only_valid = {NULL, dl}, *saved_dls = l->dls;
  fl_opt_fn saved_opt = l->opt_func;   /* no optimiser is made (fit keeps l->opt as it is) */
  uint64_t epoch = fl_dataloader_epoch(dl);
  l->dls = &only_valid;
  l->opt_func = NULL;
  fl_status s = fl_fit(l, 1, 0, 1, cbs, 1 + n_extra, 0);
  l->dls = saved_dls;
  l->opt_func = saved_opt;
  fl_dataloader_set_epoch(dl, epoch);
  if (n_out) *n_out = c->n;
  return s;
}

fl_status fl_get_preds(fl_learner *l, fl_dataloader *dl, int32_t *classes, float *p, float *probs, int64_t *n_out) {
  capture_cb c = {.classes = classes, .p = p, .probs = probs};
  return get_preds(l, dl, NULL, 0, &c, n_out);
}

fl_status fl_tta_accuracy(fl_learner *l, fl_dataloader *dl, double *acc, double *acc_plain) {
  FL_CHECK(l && dl && acc, "fl_tta_accuracy: learner, loader and acc are required");
  int64_t n = fl_dataloader_dataset(dl)->n, n1 = 0, n2 = 0;
  float *p1 = NULL, *p2 = NULL;
  int32_t *t1 = malloc((size_t)(n ? n : 1) * sizeof *t1), *t2 = malloc((size_t)(n ? n : 1) * sizeof *t2);
  fl_status s = t1 && t2 ? FL_OK : fl_error(FL_ERR_NOMEM, "tta: out of memory for %lld labels", (long long)n);
  capture_cb c1 = {.probs_new = &p1, .targs = t1}, c2 = {.probs_new = &p2, .targs = t2};
  if (s == FL_OK) s = get_preds(l, dl, NULL, 0, &c1, &n1);
  fl_callback *flip = fl_augment_cb_new(FL_AUG_FLIP_ALL, 0, 0);
  if (s == FL_OK) s = get_preds(l, dl, &flip, 1, &c2, &n2);
  fl_callback_free(flip);
  if (s == FL_OK && (n1 != n || n2 != n || c1.C != c2.C || (n && (!p1 || !p2))))
    s = fl_error(FL_ERR, "tta: the passes predicted %lld and %lld of %lld rows", (long long)n1, (long long)n2,
                 (long long)n);
  if (s == FL_OK) {
    int64_t C = c1.C, right = 0, right1 = 0;
    for (int64_t i = 0; i < n; i++) {
      FL_CHECK(t1[i] == t2[i], "tta: the two passes saw different labels at row %lld", (long long)i);
      const float *a = p1 + i * C, *b = p2 + i * C;
      int best = 0, best1 = 0;
      for (int64_t j = 1; j < C; j++) {
        if ((a[j] + b[j]) * 0.5f > (a[best] + b[best]) * 0.5f) best = (int)j;
        if (a[j] > a[best1]) best1 = (int)j;
      }
      right += best == t1[i];
      right1 += best1 == t1[i];
    }
    *acc = n ? (double)right / (double)n : 0;
    if (acc_plain) *acc_plain = n ? (double)right1 / (double)n : 0;
  }
  free(p1), free(p2), free(t1), free(t2);
  return s;
}
