/* The fused Linear+ReLU (what Sequential runs for Linear followed by ReLU) against the unfused
 * ops: values and every gradient must be bitwise equal, on the CPU and, with a GPU, on CUDA
 * (where the fused kernels are also compared with the CPU's, exactly). */
#include <string.h>

#include "backend/backend.h"
#include "core/internal.h"
#include "flexlearn.h"
#include "test.h"

/* Runs loss = sum(relu(x W^T + b) * r) fused or not; copies out y and the three grads. */
static void run(fl_device dev, int fused, float *out_y, float *out_g) {
  fl_rng r = fl_rng_make(11, 5);
  int64_t xs[2] = {37, 23}, ws[2] = {19, 23}, bs[1] = {19}, ys[2] = {37, 19};
  fl_tensor *x = fl_tensor_uniform(&r, dev, 2, xs, -1, 1);
  fl_tensor *w = fl_tensor_uniform(&r, dev, 2, ws, -1, 1);
  fl_tensor *b = fl_tensor_uniform(&r, dev, 1, bs, -1, 1);
  fl_tensor *rr = fl_tensor_uniform(&r, dev, 2, ys, -1, 1);
  fl_tensor_require_grad(x), fl_tensor_require_grad(w), fl_tensor_require_grad(b);
  fl_graph *g = fl_graph_new();
  for (int step = 0; step < 2; step++) {   /* twice: the grads accumulate */
    fl_graph_reset(g);
    fl_tensor *y = fused ? fl_linear_relu(g, x, w, b) : fl_relu(g, fl_linear(g, x, w, b));
    fl_tensor *l = fl_sum(g, fl_mul(g, y, rr));
    EXPECT(fl_backward(g, l) == FL_OK);
    if (step == 1) fl_tensor_to_host(y, out_y);
  }
  fl_tensor_to_host(x->grad, out_g);
  fl_tensor_to_host(w->grad, out_g + 37 * 23);
  fl_tensor_to_host(b->grad, out_g + 37 * 23 + 19 * 23);
  fl_graph_free(g);
  fl_tensor_free(x), fl_tensor_free(w), fl_tensor_free(b), fl_tensor_free(rr);
}

enum { NY = 37 * 19, NG = 37 * 23 + 19 * 23 + 19 };

static void compare(fl_device dev) {
  static float y0[NY], g0[NG], y1[NY], g1[NG];
  run(dev, 0, y0, g0);
  run(dev, 1, y1, g1);
  EXPECT(!memcmp(y0, y1, sizeof y0));
  EXPECT(!memcmp(g0, g1, sizeof g0));
  int pos = 0, zero = 0;
  for (int i = 0; i < NY; i++) pos += y1[i] > 0, zero += y1[i] == 0;
  EXPECT(pos > 0 && zero > 0);   /* both sides of the ReLU are exercised */
}

static void test_fused_equals_unfused_cpu(void) { compare(FL_CPU); }

static void test_fused_equals_unfused_cuda(void) {
  if (!fl_cuda_available()) SKIP(fl_backend_cuda_reason());
  compare(FL_CUDA);
  static float yc[NY], gc[NG], yg[NY], gg[NG];
  run(FL_CPU, 1, yc, gc);
  run(FL_CUDA, 1, yg, gg);
  /* elementwise parts are exact; the GEMMs sum in cuBLAS's order: 1e-5 relative to max |v| */
  double my = 0, mg = 0, dy = 0, dg = 0;
  for (int i = 0; i < NY; i++) my = fmax(my, fabs(yc[i])), dy = fmax(dy, fabs(yc[i] - yg[i]));
  for (int i = 0; i < NG; i++) mg = fmax(mg, fabs(gc[i])), dg = fmax(dg, fabs(gc[i] - gg[i]));
  EXPECTF(dy <= 1e-5 * my && dg <= 1e-5 * mg, "cuda vs cpu: |dy| %g of %g, |dg| %g of %g", dy, my, dg, mg);
}

/* The Lesson's model through Sequential takes the fused path and still matches op by op. */
static void test_sequential_uses_fused_path(void) {
  fl_module *m = fl_get_model(3, 12, 8, 4);
  fl_graph *g = fl_graph_new();
  fl_rng r = fl_rng_make(1, 2);
  int64_t xs[2] = {5, 12};
  fl_tensor *x = fl_tensor_uniform(&r, FL_CPU, 2, xs, 0, 1);
  fl_tensor *y = fl_module_forward(m, g, x);
  fl_tensor *p[4];
  fl_module_parameters(m, p, 4);
  fl_graph *g2 = fl_graph_new();
  fl_tensor *y2 = fl_linear(g2, fl_relu(g2, fl_linear(g2, x, p[0], p[1])), p[2], p[3]);
  EXPECT(!memcmp(y->data, y2->data, 5 * 4 * sizeof(float)));
  /* one node fewer on the tape than the unfused chain: the first node's input is x itself */
  EXPECT(y->node && y->node->in[0]->node && y->node->in[0]->node->in[0] == x);
  fl_graph_free(g), fl_graph_free(g2);
  fl_tensor_free(x);
  fl_module_free(m);
}

int main(void) {
  fl_init(2);
  RUN(test_fused_equals_unfused_cpu);
  RUN(test_fused_equals_unfused_cuda);
  RUN(test_sequential_uses_fused_path);
  return test_summary();
}
