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
  int64_t n, cap;
} capture_cb;

static fl_status cap_after_batch(fl_callback *cb, fl_learner *l) {
  capture_cb *c = (capture_cb *)cb;
  FL_CHECK(l->preds && l->preds->ndim == 2, "fl_get_preds: the model's output must be (B, C) logits");
  int64_t B = l->preds->shape[0], C = l->preds->shape[1];
  FL_CHECK(c->n + B <= c->cap, "fl_get_preds: more predictions (%lld) than the loader's rows (%lld)",
           (long long)(c->n + B), (long long)c->cap);
  fl_preds_decode(l->preds, c->classes ? c->classes + c->n : NULL, c->p ? c->p + c->n : NULL,
                  c->probs ? c->probs + c->n * C : NULL);
  c->n += B;
  return FL_OK;
}

fl_status fl_get_preds(fl_learner *l, fl_dataloader *dl, int32_t *classes, float *p, float *probs, int64_t *n_out) {
  FL_CHECK(l && dl, "fl_get_preds: learner and loader are required");
  capture_cb c = {.cb = {.name = "CapturePreds", .order = 0}, .classes = classes, .p = p, .probs = probs,
                  .cap = fl_dataloader_dataset(dl)->n};
  c.cb.on[FL_AFTER_BATCH] = cap_after_batch;
  fl_callback *cb = &c.cb;
  fl_dataloaders only_valid = {NULL, dl}, *saved_dls = l->dls;
  fl_opt_fn saved_opt = l->opt_func;   /* no optimiser is made (fit keeps l->opt as it is) */
  uint64_t epoch = fl_dataloader_epoch(dl);
  l->dls = &only_valid;
  l->opt_func = NULL;
  fl_status s = fl_fit(l, 1, 0, 1, &cb, 1, 0);
  l->dls = saved_dls;
  l->opt_func = saved_opt;
  fl_dataloader_set_epoch(dl, epoch);
  if (n_out) *n_out = c.n;
  return s;
}
