/* NormalizeCB: the course's BatchTransformCB(_norm) for the conv models, (x - mean) / std on
 * every batch's images, fused into the loaders' u8 -> f32 conversion (fl_dataloader_set_norm)
 * instead of a second pass over each batch. */
#include <stdlib.h>

#include "fl/learner.h"

typedef struct { fl_callback cb; float mean, std; } norm_cb;

static fl_status set_all(fl_learner *l, float mean, float std) {
  fl_status s = FL_OK;
  if (l->dls && l->dls->train) s = fl_dataloader_set_norm(l->dls->train, mean, std);
  if (s == FL_OK && l->dls && l->dls->valid) s = fl_dataloader_set_norm(l->dls->valid, mean, std);
  return s;
}

static fl_status before_fit(fl_callback *cb, fl_learner *l) {
  norm_cb *n = (norm_cb *)cb;
  return set_all(l, n->mean, n->std);
}

/* The loaders go back to plain x / 255 whatever way the fit ended. */
static fl_status cleanup_fit(fl_callback *cb, fl_learner *l) {
  (void)cb;
  set_all(l, 0.0f, 1.0f);
  return FL_OK;
}

static void norm_free(fl_callback *cb) { free(cb); }

fl_callback *fl_normalize_cb_new(float mean, float std) {
  norm_cb *n = fl_xcalloc(1, sizeof *n);
  n->cb.name = "NormalizeCB";
  n->cb.order = 1;   /* after DeviceCB (0), which decides where the loaders gather */
  n->cb.free = norm_free;
  n->mean = mean;
  n->std = std;
  n->cb.on[FL_BEFORE_FIT] = before_fit;
  n->cb.on[FL_CLEANUP_FIT] = cleanup_fit;
  return &n->cb;
}
