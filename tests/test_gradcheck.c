/* Gradients of every op against central finite differences, and gradient accumulation.
 *
 * Method: for an op y = f(inputs), L = sum(y * R) with a fixed random R. The analytic gradient
 * comes from fl_backward; the numeric one is (L(x + eps) - L(x - eps)) / (2 eps) per input
 * element, where the two forward passes run in no-grad mode and L is accumulated in DOUBLE in
 * the test from the float32 y (so the only noise is y's own rounding, ~6e-8 relative).
 * Inputs are O(1), eps = 1e-2; relu inputs are kept at least 0.05 away from its kink.
 *
 * Tolerance (stated, from the error budget): |analytic - numeric| <= RTOL * max(|a|, |n|) + ATOL
 * with RTOL = 1e-3 (central-difference truncation, eps^2/6 * f''' for smooth ops) and
 * ATOL = 1e-4 (float32 rounding of y: ~1e-6 in L, divided by 2 eps = 2e-2 gives ~5e-5).
 * FL_TEST_VERBOSE=1 prints the largest |a - n| / (RTOL max(|a|,|n|) + ATOL) ratio per op
 * (pass when <= 1) and the largest absolute difference. */
#include <stdint.h>

#include "fl/nn.h"
#include "fl/tensor.h"
#include "test.h"

#define EPS 1e-2f
#define RTOL 1e-3
#define ATOL 1e-4

typedef fl_tensor *(*fwd_fn)(fl_graph *g, fl_tensor **in);

/* Kinks: a forward function with a relu inside sets kink_probe to the relu's input. When the
 * sign pattern of that input differs between x - eps and x + eps, the central difference
 * straddles a kink and says nothing about the derivative: that element is skipped (and
 * counted; a check that skips more than a quarter of its elements fails). */
static fl_tensor *kink_probe;

static uint64_t sign_signature(void) {
  if (!kink_probe) return 0;
  const float *p = kink_probe->data;
  uint64_t h = 0xcbf29ce484222325ULL;
  for (int64_t i = 0, n = fl_numel(kink_probe); i < n; i++) h = (h ^ (uint64_t)(p[i] > 0.0f)) * 0x100000001b3ULL;
  return h;
}

static double loss_of(const fl_tensor *y, const float *R) {
  const float *p = y->data;
  double s = 0;
  for (int64_t i = 0, n = fl_numel(y); i < n; i++) s += (double)p[i] * R[i];
  return s;
}

/* Checks d(sum(f(in) * R))/d(in[k]) for every input that requires grad, on at most max_el
 * elements per input (spread over the tensor; 0 = all). */
static void gradcheck(const char *name, fwd_fn f, fl_tensor **in, int n_in, int max_el) {
  fl_graph *g = fl_graph_new();
  kink_probe = NULL;
  fl_rng rng = fl_rng_make(77, FL_STREAM_USER);
  /* analytic */
  for (int k = 0; k < n_in; k++)
    if (in[k]->requires_grad) fl_tensor_zero(in[k]->grad);
  fl_tensor *y = f(g, in);
  EXPECTF(y != NULL, "%s: forward failed", name);
  if (!y) { fl_graph_free(g); return; }
  fl_tensor *R = fl_tensor_normal(&rng, FL_CPU, y->ndim, y->shape, 0.0f, 1.0f);
  EXPECT(fl_backward(g, fl_sum(g, fl_mul(g, y, R))) == FL_OK);
  double worst = 0, worst_abs = 0;
  int checked = 0, skipped = 0;
  fl_graph_set_grad(g, 0);
  for (int k = 0; k < n_in; k++) {
    if (!in[k]->requires_grad) continue;
    float *x = in[k]->data;
    const float *an = in[k]->grad->data;
    int64_t n = fl_numel(in[k]), step = max_el && n > max_el ? n / max_el : 1;
    for (int64_t i = 0; i < n; i += step) {
      float x0 = x[i];
      x[i] = x0 + EPS;
      fl_graph_reset(g);
      double lp = loss_of(f(g, in), R->data);
      uint64_t sp = sign_signature();
      x[i] = x0 - EPS;
      fl_graph_reset(g);
      double lm = loss_of(f(g, in), R->data);
      uint64_t sm = sign_signature();
      x[i] = x0;
      checked++;
      if (sp != sm) { skipped++; continue; }
      double num = (lp - lm) / (2.0 * (double)EPS), a = an[i], d = fabs(a - num);
      double r = d / (RTOL * fmax(fabs(a), fabs(num)) + ATOL);
      if (r > worst) worst = r;
      if (d > worst_abs) worst_abs = d;
      EXPECTF(r <= 1.0, "%s: input %d element %lld: analytic %.7g, numeric %.7g", name, k,
              (long long)i, a, num);
    }
  }
  EXPECTF(4 * skipped <= checked, "%s: %d of %d elements straddle a relu kink", name, skipped, checked);
  if (getenv("FL_TEST_VERBOSE"))
    printf("  %-18s worst ratio %.3f  max |a-n| %.3g  (%d elements, %d skipped at kinks)\n", name,
           worst, worst_abs, checked, skipped);
  fl_tensor_free(R);
  fl_graph_free(g);
}

/* ---------------------------------------------------------------- inputs */

static fl_rng rng;

static fl_tensor *randn(int ndim, int64_t d0, int64_t d1, int64_t d2, int grad) {
  int64_t s[3] = {d0, d1, d2};
  fl_tensor *t = fl_tensor_normal(&rng, FL_CPU, ndim, s, 0.0f, 1.0f);
  if (grad) fl_tensor_require_grad(t);
  return t;
}

/* Moves entries closer than 0.05 to 0 out to +-0.05..0.1: relu's kink stays > eps away. */
static void away_from_zero(fl_tensor *t) {
  float *p = t->data;
  for (int64_t i = 0, n = fl_numel(t); i < n; i++)
    if (fabsf(p[i]) < 0.05f) p[i] = p[i] >= 0 ? 0.05f + p[i] : -0.05f + p[i];
}

static void free_all(fl_tensor **in, int n) {
  for (int i = 0; i < n; i++) fl_tensor_free(in[i]);
}

/* ---------------------------------------------------------------- forward functions */

static fl_tensor *f_matmul(fl_graph *g, fl_tensor **in) { return fl_matmul(g, in[0], in[1]); }
static fl_tensor *f_linear(fl_graph *g, fl_tensor **in) { return fl_linear(g, in[0], in[1], in[2]); }
static fl_tensor *f_linear_nb(fl_graph *g, fl_tensor **in) { return fl_linear(g, in[0], in[1], NULL); }
static fl_tensor *f_add(fl_graph *g, fl_tensor **in) { return fl_add(g, in[0], in[1]); }
static fl_tensor *f_sub(fl_graph *g, fl_tensor **in) { return fl_sub(g, in[0], in[1]); }
static fl_tensor *f_mul(fl_graph *g, fl_tensor **in) { return fl_mul(g, in[0], in[1]); }
static fl_tensor *f_relu(fl_graph *g, fl_tensor **in) { return fl_relu(g, in[0]); }
static fl_tensor *f_sum(fl_graph *g, fl_tensor **in) { return fl_sum(g, in[0]); }
static fl_tensor *f_mean(fl_graph *g, fl_tensor **in) { return fl_mean(g, in[0]); }
static fl_tensor *f_log_softmax(fl_graph *g, fl_tensor **in) { return fl_log_softmax(g, in[0]); }
static fl_tensor *f_xent(fl_graph *g, fl_tensor **in) { return fl_cross_entropy(g, in[0], in[1]); }
static fl_tensor *f_mse(fl_graph *g, fl_tensor **in) { return fl_mse(g, in[0], in[1]); }
static fl_tensor *f_flatten(fl_graph *g, fl_tensor **in) {
  /* a view of a leaf and a view of an intermediate */
  fl_tensor *a = fl_flatten(g, in[0]);
  int64_t s[1] = {-1};
  fl_tensor *b = fl_reshape(g, fl_mul(g, in[0], in[0]), 1, s);
  return fl_add(g, fl_reshape(g, a, 1, s), b);
}
/* x (B,I) -> relu(x W1^T + b1) W2^T + b2 -> cross-entropy against t */
static fl_tensor *f_mlp(fl_graph *g, fl_tensor **in) {
  kink_probe = fl_linear(g, in[0], in[1], in[2]);
  fl_tensor *h = fl_relu(g, kink_probe);
  return fl_cross_entropy(g, fl_linear(g, h, in[3], in[4]), in[5]);
}
/* y (intermediate) used three times: relu(x) * relu(x) + relu(x) */
static fl_tensor *f_diamond(fl_graph *g, fl_tensor **in) {
  fl_tensor *y = fl_relu(g, in[0]);
  return fl_add(g, fl_mul(g, y, y), y);
}

/* ---------------------------------------------------------------- finite-difference tests */

static void test_fd_matmul(void) {
  fl_tensor *in[2] = {randn(2, 5, 7, 0, 1), randn(2, 7, 3, 0, 1)};
  gradcheck("matmul", f_matmul, in, 2, 0);
  free_all(in, 2);
}

static void test_fd_linear(void) {
  fl_tensor *in[3] = {randn(2, 6, 9, 0, 1), randn(2, 4, 9, 0, 1), randn(1, 4, 0, 0, 1)};
  gradcheck("linear", f_linear, in, 3, 0);
  gradcheck("linear_nobias", f_linear_nb, in, 2, 0);
  free_all(in, 3);
}

static void test_fd_broadcast(void) {
  struct { const char *name; fwd_fn f; int na, nb; int64_t a[3], b[3]; } c[] = {
      {"add (4,3)+(3)", f_add, 2, 1, {4, 3}, {3}},
      {"mul (4,1)*(1,3)", f_mul, 2, 2, {4, 1}, {1, 3}},
      {"sub (2,3,4)-(3,1)", f_sub, 3, 2, {2, 3, 4}, {3, 1}},
      {"sub (3)-(2,3)", f_sub, 1, 2, {3}, {2, 3}},
      {"add same", f_add, 2, 2, {3, 5}, {3, 5}},
      {"sub same", f_sub, 2, 2, {3, 5}, {3, 5}},
      {"mul same", f_mul, 2, 2, {3, 5}, {3, 5}},
      {"mul (2,3,4)*(2,1,4)", f_mul, 3, 3, {2, 3, 4}, {2, 1, 4}},
  };
  for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
    fl_tensor *in[2] = {randn(c[i].na, c[i].a[0], c[i].a[1], c[i].a[2], 1),
                        randn(c[i].nb, c[i].b[0], c[i].b[1], c[i].b[2], 1)};
    gradcheck(c[i].name, c[i].f, in, 2, 0);
    free_all(in, 2);
  }
}

static void test_fd_relu(void) {
  fl_tensor *in[1] = {randn(2, 4, 6, 0, 1)};
  away_from_zero(in[0]);
  gradcheck("relu", f_relu, in, 1, 0);
  free_all(in, 1);
}

static void test_fd_sum_mean(void) {
  fl_tensor *in[1] = {randn(3, 3, 4, 5, 1)};
  gradcheck("sum", f_sum, in, 1, 0);
  gradcheck("mean", f_mean, in, 1, 0);
  free_all(in, 1);
}

static void test_fd_log_softmax(void) {
  fl_tensor *in[1] = {randn(2, 5, 7, 0, 1)};
  gradcheck("log_softmax", f_log_softmax, in, 1, 0);
  free_all(in, 1);
}

static void test_fd_cross_entropy(void) {
  int32_t t[6] = {0, 6, 3, 3, 1, 5};
  int64_t ts[1] = {6};
  fl_tensor *in[2] = {randn(2, 6, 7, 0, 1), fl_tensor_from_data(FL_I32, FL_CPU, 1, ts, t)};
  fl_tensor_scale(in[0], 2.0f);
  gradcheck("cross_entropy", f_xent, in, 2, 0);
  free_all(in, 2);
}

static void test_fd_mse(void) {
  fl_tensor *in[2] = {randn(2, 7, 3, 0, 1), randn(2, 7, 3, 0, 0)};
  gradcheck("mse", f_mse, in, 2, 0);
  free_all(in, 2);
}

static void test_fd_views(void) {
  fl_tensor *in[1] = {randn(3, 2, 3, 4, 1)};
  gradcheck("flatten/reshape", f_flatten, in, 1, 0);
  free_all(in, 1);
}

static void test_fd_diamond(void) {
  fl_tensor *in[1] = {randn(2, 3, 4, 0, 1)};
  away_from_zero(in[0]);
  gradcheck("diamond", f_diamond, in, 1, 0);
  free_all(in, 1);
}

/* The two-layer MLP: a small one fully, the lesson's 784-50-10 on a sample of elements. */
static void mlp_case(const char *name, int B, int I, int H, int C, int max_el) {
  fl_module *m = fl_get_model(5, I, H, C);   /* PyTorch's init, collated */
  fl_tensor *p[4];
  fl_module_parameters(m, p, 4);
  int64_t xs[2] = {B, I}, ts[1] = {B};
  int32_t t[64];
  for (int i = 0; i < B; i++) t[i] = (int32_t)fl_rng_below(&rng, (uint64_t)C);
  fl_tensor *in[6] = {fl_tensor_uniform(&rng, FL_CPU, 2, xs, 0.0f, 1.0f), p[0], p[1], p[2], p[3],
                      fl_tensor_from_data(FL_I32, FL_CPU, 1, ts, t)};
  fl_tensor_require_grad(in[0]);
  gradcheck(name, f_mlp, in, 6, max_el);
  fl_tensor_free(in[0]);
  fl_tensor_free(in[5]);
  fl_module_free(m);
}

static void test_fd_mlp_small(void) { mlp_case("mlp 12-6-3", 5, 12, 6, 3, 0); }
static void test_fd_mlp_lesson(void) { mlp_case("mlp 784-50-10", 8, 784, 50, 10, 200); }

/* ---------------------------------------------------------------- conv-net ops (issue 7) */

static fl_tensor *randn4(int64_t a, int64_t b, int64_t c, int64_t d, float scale, int grad) {
  int64_t s[4] = {a, b, c, d};
  fl_tensor *t = fl_tensor_normal(&rng, FL_CPU, 4, s, 0.0f, scale);
  if (grad) fl_tensor_require_grad(t);
  return t;
}

static int conv_stride, conv_pad;
static fl_tensor *f_conv(fl_graph *g, fl_tensor **in) { return fl_conv2d(g, in[0], in[1], in[2], conv_stride, conv_pad); }
static fl_tensor *f_conv_nb(fl_graph *g, fl_tensor **in) { return fl_conv2d(g, in[0], in[1], NULL, conv_stride, conv_pad); }
static int bn_training;
static fl_tensor *f_bn(fl_graph *g, fl_tensor **in) {
  return fl_batch_norm(g, in[0], in[1], in[2], in[3], in[4], bn_training, 0.1f, 1e-5f);
}
static fl_tensor *f_bn_noaffine(fl_graph *g, fl_tensor **in) {
  return fl_batch_norm(g, in[0], NULL, NULL, in[3], in[4], bn_training, 0.1f, 1e-5f);
}
static fl_tensor *f_pool_ceil(fl_graph *g, fl_tensor **in) { return fl_avg_pool2d(g, in[0], 2, 1); }
static fl_tensor *f_pool3(fl_graph *g, fl_tensor **in) { return fl_avg_pool2d(g, in[0], 3, 0); }
static fl_tensor *f_gpool(fl_graph *g, fl_tensor **in) { return fl_global_avg_pool(g, in[0]); }
static fl_tensor *f_grelu(fl_graph *g, fl_tensor **in) { return fl_general_relu(g, in[0], 0.1f, 0.4f, 6.0f); }
static fl_tensor *f_grelu_plain(fl_graph *g, fl_tensor **in) { return fl_general_relu(g, in[0], 0.0f, 0.0f, INFINITY); }
static fl_tensor *f_dropout(fl_graph *g, fl_tensor **in) { return fl_dropout(g, in[0], 0.3f, 1, 17, 2); }
/* a residual block with its intermediate `a` used three times (accumulating backward passes):
 * a = GeneralRelu(x); h = conv(GeneralRelu(BN(conv(a)))); y = pool(h + a) + pool(h + a) */
static fl_tensor *f_resblock(fl_graph *g, fl_tensor **in) {
  fl_tensor *a = fl_general_relu(g, in[0], 0.1f, 0.0f, INFINITY);
  kink_probe = fl_batch_norm(g, fl_conv2d(g, a, in[1], NULL, 1, 1), in[2], in[3], in[4], in[5], 1, 0.1f, 1e-5f);
  fl_tensor *h = fl_conv2d(g, fl_general_relu(g, kink_probe, 0.1f, 0.0f, INFINITY), in[6], in[7], 1, 0);
  fl_tensor *r = fl_add(g, h, a);
  return fl_add(g, fl_avg_pool2d(g, r, 2, 1), fl_avg_pool2d(g, r, 2, 1));
}

static void test_fd_conv(void) {
  static const int k[3] = {1, 3, 5};
  char name[64];
  for (int ki = 0; ki < 3; ki++)
    for (int st = 1; st <= 2; st++) {
      /* weights ~ 1/sqrt(fan-in): outputs O(1), so their float32 rounding stays inside ATOL */
      fl_tensor *in[3] = {randn4(2, 3, 7, 6, 1.0f, 1), randn4(4, 3, k[ki], k[ki], 1.0f / k[ki], 1), randn(1, 4, 0, 0, 1)};
      conv_stride = st, conv_pad = k[ki] / 2;
      snprintf(name, sizeof name, "conv k%d s%d", k[ki], st);
      gradcheck(name, f_conv, in, 3, 0);
      snprintf(name, sizeof name, "conv k%d s%d nobias", k[ki], st);
      gradcheck(name, f_conv_nb, in, 2, 0);
      free_all(in, 3);
    }
}

static void test_fd_batch_norm(void) {
  for (int nd = 2; nd <= 4; nd += 2)
    for (int tr = 0; tr <= 1; tr++) {
      fl_tensor *in[5] = {nd == 4 ? randn4(3, 4, 3, 2, 1.5f, 1) : randn(2, 8, 5, 0, 1), randn(1, nd == 4 ? 4 : 5, 0, 0, 1),
                          randn(1, nd == 4 ? 4 : 5, 0, 0, 1), randn(1, nd == 4 ? 4 : 5, 0, 0, 0),
                          fl_tensor_new1(FL_F32, FL_CPU, nd == 4 ? 4 : 5)};
      fl_tensor_fill(in[4], 0.7f);
      bn_training = tr;
      char name[64];
      snprintf(name, sizeof name, "batch_norm %dd %s", nd, tr ? "train" : "eval");
      gradcheck(name, f_bn, in, 5, 0);
      snprintf(name, sizeof name, "batch_norm %dd %s noaffine", nd, tr ? "train" : "eval");
      gradcheck(name, f_bn_noaffine, in, 5, 0);
      free_all(in, 5);
    }
}

static void test_fd_pools(void) {
  fl_tensor *in[1] = {randn4(2, 3, 7, 5, 1.0f, 1)};
  gradcheck("avg_pool2d k2 ceil", f_pool_ceil, in, 1, 0);
  gradcheck("avg_pool2d k3", f_pool3, in, 1, 0);
  gradcheck("global_avg_pool", f_gpool, in, 1, 0);
  free_all(in, 1);
}

/* inputs kept 0.05 away from GeneralRelu's kinks: x = 0, and x = maxv + sub = 6.4 */
static void test_fd_general_relu(void) {
  fl_tensor *in[1] = {randn(2, 10, 12, 0, 1)};
  fl_tensor_scale(in[0], 4.0f);
  away_from_zero(in[0]);
  float *p = in[0]->data;
  for (int i = 0; i < 120; i++)
    if (fabsf(p[i] - 6.4f) < 0.05f) p[i] = 6.3f;
  gradcheck("general_relu", f_grelu, in, 1, 0);
  gradcheck("general_relu plain", f_grelu_plain, in, 1, 0);
  free_all(in, 1);
}

static void test_fd_dropout(void) {
  fl_tensor *in[1] = {randn(2, 6, 9, 0, 1)};
  gradcheck("dropout", f_dropout, in, 1, 0);
  free_all(in, 1);
}

static void test_fd_resblock(void) {
  fl_tensor *in[8] = {randn4(2, 3, 5, 5, 1.0f, 1), randn4(4, 3, 3, 3, 0.2f, 1), randn(1, 4, 0, 0, 1),
                      randn(1, 4, 0, 0, 1), fl_tensor_new1(FL_F32, FL_CPU, 4), fl_tensor_new1(FL_F32, FL_CPU, 4),
                      randn4(3, 4, 1, 1, 0.3f, 1), randn(1, 3, 0, 0, 1)};
  away_from_zero(in[0]);
  fl_tensor_fill(in[5], 1.0f);
  gradcheck("resblock", f_resblock, in, 8, 0);
  free_all(in, 8);
}

/* ---------------------------------------------------------------- accumulation */

/* Two steps (graph reset between, no zeroing) leave twice the grad of one. */
static void test_accumulate_two_steps(void) {
  fl_tensor *x = randn(2, 4, 5, 0, 1), *w = randn(2, 3, 5, 0, 1);
  fl_graph *g = fl_graph_new();
  float once[15];
  for (int step = 0; step < 2; step++) {
    fl_graph_reset(g);
    fl_tensor *l = fl_mean(g, fl_relu(g, fl_linear(g, x, w, NULL)));
    EXPECT(fl_backward(g, l) == FL_OK);
    if (step == 0) memcpy(once, w->grad->data, sizeof once);
  }
  const float *gw = w->grad->data;
  for (int i = 0; i < 15; i++) EXPECT(gw[i] == 2.0f * once[i]);   /* exact: a + a = 2a */
  fl_tensor_free(x);
  fl_tensor_free(w);
  fl_graph_free(g);
}

/* x used twice by one op: add(x, x) -> 2 R, mul(x, x) -> 2 x R; a leaf used by two ops sums. */
static void test_accumulate_same_input(void) {
  fl_tensor *x = randn(2, 3, 4, 0, 1), *R = randn(2, 3, 4, 0, 0);
  fl_graph *g = fl_graph_new();
  const float *px = x->data, *pr = R->data, *gx = x->grad->data;
  EXPECT(fl_backward(g, fl_sum(g, fl_mul(g, fl_add(g, x, x), R))) == FL_OK);
  for (int i = 0; i < 12; i++) EXPECT(gx[i] == 2.0f * pr[i]);
  fl_tensor_zero(x->grad);
  fl_graph_reset(g);
  EXPECT(fl_backward(g, fl_sum(g, fl_mul(g, fl_mul(g, x, x), R))) == FL_OK);
  for (int i = 0; i < 12; i++) EXPECT_NEAR(gx[i], 2.0 * px[i] * pr[i], 1e-6);
  fl_tensor_zero(x->grad);
  fl_graph_reset(g);
  /* L = sum(x * R) + sum(x): grad R + 1 */
  EXPECT(fl_backward(g, fl_add(g, fl_sum(g, fl_mul(g, x, R)), fl_sum(g, x))) == FL_OK);
  for (int i = 0; i < 12; i++) EXPECT_NEAR(gx[i], pr[i] + 1.0, 1e-6);
  fl_tensor_free(x);
  fl_tensor_free(R);
  fl_graph_free(g);
}

/* An intermediate seen through a view AND directly, in both tape orders: the view's
 * backward shares or accumulates, never overwrites. d/dx of sum(v(2x) * R1) + sum(2x * R2). */
static void test_accumulate_view_and_direct(void) {
  fl_tensor *x = randn(2, 3, 4, 0, 1), *R1 = randn(1, 12, 0, 0, 0), *R2 = randn(2, 3, 4, 0, 0);
  fl_tensor *two = fl_tensor_new1(FL_F32, FL_CPU, 1);
  fl_tensor_fill(two, 2.0f);
  fl_graph *g = fl_graph_new();
  const float *r1 = R1->data, *r2 = R2->data, *gx = x->grad->data;
  int64_t s[1] = {-1};
  for (int order = 0; order < 2; order++) {
    fl_graph_reset(g);
    fl_tensor_zero(x->grad);
    fl_tensor *t = fl_mul(g, x, two), *l1, *l2;
    if (order == 0) {
      l1 = fl_sum(g, fl_mul(g, fl_reshape(g, t, 1, s), R1));
      l2 = fl_sum(g, fl_mul(g, t, R2));
    } else {
      l2 = fl_sum(g, fl_mul(g, t, R2));
      l1 = fl_sum(g, fl_mul(g, fl_reshape(g, t, 1, s), R1));
    }
    EXPECT(fl_backward(g, fl_add(g, l1, l2)) == FL_OK);
    for (int i = 0; i < 12; i++) EXPECT_NEAR(gx[i], 2.0 * (r1[i] + r2[i]), 1e-6);
  }
  fl_tensor_free(x);
  fl_tensor_free(R1);
  fl_tensor_free(R2);
  fl_tensor_free(two);
  fl_graph_free(g);
}

/* A leaf seen through flatten passes its grad straight through (and accumulates into the
 * leaf's existing grad). */
static void test_flatten_leaf(void) {
  fl_tensor *x = randn(3, 2, 3, 4, 1), *R = randn(2, 2, 12, 0, 0);
  fl_tensor_fill(x->grad, 1.0f);
  fl_graph *g = fl_graph_new();
  fl_tensor *v = fl_flatten(g, x);
  EXPECT(v->ndim == 2 && v->shape[0] == 2 && v->shape[1] == 12 && v->data == x->data);
  EXPECT(fl_backward(g, fl_sum(g, fl_mul(g, v, R))) == FL_OK);
  const float *gx = x->grad->data, *pr = R->data;
  for (int i = 0; i < 24; i++) EXPECT(gx[i] == 1.0f + pr[i]);
  fl_tensor_free(x);
  fl_tensor_free(R);
  fl_graph_free(g);
}

/* No-grad mode records nothing: the result does not require grad and grads stay untouched. */
static void test_no_grad_mode(void) {
  fl_tensor *x = randn(2, 3, 4, 0, 1);
  fl_graph *g = fl_graph_new();
  EXPECT(fl_graph_set_grad(g, 0) == 1);
  fl_tensor *y = fl_sum(g, fl_relu(g, x));
  EXPECT(y && !y->requires_grad && !y->node);
  EXPECT(fl_graph_set_grad(g, 1) == 0);
  fl_tensor_free(x);
  fl_graph_free(g);
}

int main(void) {
  rng = fl_rng_make(2024, FL_STREAM_USER);
  RUN(test_fd_matmul);
  RUN(test_fd_linear);
  RUN(test_fd_broadcast);
  RUN(test_fd_relu);
  RUN(test_fd_sum_mean);
  RUN(test_fd_log_softmax);
  RUN(test_fd_cross_entropy);
  RUN(test_fd_mse);
  RUN(test_fd_views);
  RUN(test_fd_diamond);
  RUN(test_fd_mlp_small);
  RUN(test_fd_mlp_lesson);
  RUN(test_fd_conv);
  RUN(test_fd_batch_norm);
  RUN(test_fd_pools);
  RUN(test_fd_general_relu);
  RUN(test_fd_dropout);
  RUN(test_fd_resblock);
  RUN(test_accumulate_two_steps);
  RUN(test_accumulate_same_input);
  RUN(test_accumulate_view_and_direct);
  RUN(test_flatten_leaf);
  RUN(test_no_grad_mode);
  return test_summary();
}
