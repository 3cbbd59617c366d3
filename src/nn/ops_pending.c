/* TEMPORARY (models branch): weak stand-ins for the conv-net ops declared in fl/tensor.h until
 * the ops branch's implementations are merged; each aborts if called. The ops branch's strong
 * definitions replace them at link time; this file is deleted at that merge. */
#include "fl/tensor.h"

#define PENDING(name) FL_CHECK(0, "%s: not implemented in this build yet (the ops branch)", name)

__attribute__((weak)) fl_tensor *fl_conv2d(fl_graph *g, fl_tensor *x, fl_tensor *w, fl_tensor *b, int stride, int pad) {
  (void)g, (void)x, (void)w, (void)b, (void)stride, (void)pad;
  PENDING("fl_conv2d");
  return NULL;
}
__attribute__((weak)) fl_tensor *fl_batch_norm(fl_graph *g, fl_tensor *x, fl_tensor *weight, fl_tensor *bias,
                                               fl_tensor *rm, fl_tensor *rv, int training, float momentum, float eps) {
  (void)g, (void)x, (void)weight, (void)bias, (void)rm, (void)rv, (void)training, (void)momentum, (void)eps;
  PENDING("fl_batch_norm");
  return NULL;
}
__attribute__((weak)) fl_tensor *fl_avg_pool2d(fl_graph *g, fl_tensor *x, int k, int ceil_mode) {
  (void)g, (void)x, (void)k, (void)ceil_mode;
  PENDING("fl_avg_pool2d");
  return NULL;
}
__attribute__((weak)) fl_tensor *fl_global_avg_pool(fl_graph *g, fl_tensor *x) {
  (void)g, (void)x;
  PENDING("fl_global_avg_pool");
  return NULL;
}
__attribute__((weak)) fl_tensor *fl_general_relu(fl_graph *g, fl_tensor *x, float leak, float sub, float maxv) {
  (void)g, (void)x, (void)leak, (void)sub, (void)maxv;
  PENDING("fl_general_relu");
  return NULL;
}
__attribute__((weak)) fl_tensor *fl_dropout(fl_graph *g, fl_tensor *x, float p, int training, uint64_t seed,
                                            uint64_t counter) {
  (void)g, (void)x, (void)p, (void)training, (void)seed, (void)counter;
  PENDING("fl_dropout");
  return NULL;
}
