/* The conv-net ops (issue 7): conv2d, batch_norm, avg_pool2d, global_avg_pool, general_relu,
 * dropout, with their backward passes. Same rules as ops.c: misuse aborts (FL_CHECK) naming
 * the op and the shapes; a NULL input gives NULL; out of arena memory gives NULL with
 * fl_last_error. Tensors are NCHW and contiguous.
 *
 * A device whose kernel table lacks an op's kernels (the CUDA backend, for now) makes the op
 * fail like an out-of-memory one: it returns NULL with fl_error(FL_ERR_DEVICE, "fl_conv2d: not
 * implemented on CUDA yet"), so the step's loss is NULL and fl_backward / the Learner report
 * that line. */
#include <math.h>
#include <string.h>

#include "backend/backend.h"
#include "core/internal.h"

#define BE(t) fl_backend_for((t)->device)
#define F(t) ((float *)(t)->data)
#define SHAPE(t, buf) fl_shape_str((t), (buf), sizeof (buf))

static void check_input(const char *op, const fl_tensor *t, const char *what) {
  char b[64];
  FL_CHECK(t->dtype == FL_F32, "%s: %s %s must be f32", op, what, SHAPE(t, b));
  FL_CHECK(fl_is_contiguous(t), "%s: %s %s must be contiguous", op, what, SHAPE(t, b));
}

static void check_same_device(const char *op, const fl_tensor *a, const fl_tensor *b) {
  FL_CHECK(a->device == b->device, "%s: tensors on different devices (%s and %s)", op,
           fl_device_name(a->device), fl_device_name(b->device));
}

/* 0 (with fl_error) when the device has no kernel for the op */
static int have_kernel(const char *op, const void *fn, const fl_tensor *x) {
  if (fn) return 1;
  fl_error(FL_ERR_DEVICE, "%s: not implemented on %s yet", op, x->device == FL_CUDA ? "CUDA" : "this device");
  return 0;
}

static void check_vec(const char *op, const fl_tensor *t, const fl_tensor *x, int64_t C, const char *what) {
  char b[64];
  check_input(op, t, what);
  check_same_device(op, x, t);
  FL_CHECK(t->ndim == 1 && t->shape[0] == C, "%s: %s %s, expected [%lld]", op, what, SHAPE(t, b),
           (long long)C);
}

/* ---------------------------------------------------------------- conv2d */

static void conv_bw(fl_graph *g, fl_node *n) {
  fl_tensor *x = n->in[0], *w = n->in[1], *b = n->in[2], *y = n->out;
  const fl_conv_shape *s = n->saved;
  const fl_backend *be = BE(y);
  int acc, acc_w = 0, acc_b = 0;
  if (x->requires_grad) {
    float *gx = fl__op_grad_of(g, x, &acc);
    be->conv2d_bwd_data(s, gx, F(y->grad), F(w), acc);
  }
  float *gw = w->requires_grad ? fl__op_grad_of(g, w, &acc_w) : NULL;
  float *gb = b && b->requires_grad ? fl__op_grad_of(g, b, &acc_b) : NULL;
  if (gw || gb) be->conv2d_bwd_weights(s, gw, gb, F(y->grad), F(x), acc_w, acc_b);
}

fl_tensor *fl_conv2d(fl_graph *g, fl_tensor *x, fl_tensor *w, fl_tensor *b, int stride, int pad) {
  if (!x || !w) return NULL;
  const char *op = "fl_conv2d";
  char s1[64], s2[64];
  check_input(op, x, "input");
  check_input(op, w, "weight");
  check_same_device(op, x, w);
  FL_CHECK(x->ndim == 4, "fl_conv2d: input %s must be 4-d (N, C, H, W)", SHAPE(x, s1));
  FL_CHECK(w->ndim == 4 && w->shape[2] == w->shape[3] && w->shape[2] >= 1,
           "fl_conv2d: weight %s must be (out, in, k, k)", SHAPE(w, s1));
  FL_CHECK(w->shape[1] == x->shape[1], "fl_conv2d: input %s has %lld channels, weight %s expects %lld",
           SHAPE(x, s1), (long long)x->shape[1], SHAPE(w, s2), (long long)w->shape[1]);
  FL_CHECK(stride >= 1 && pad >= 0, "fl_conv2d: stride %d must be >= 1 and pad %d >= 0", stride, pad);
  const int64_t k = w->shape[2];
  FL_CHECK(x->shape[2] + 2 * pad >= k && x->shape[3] + 2 * pad >= k,
           "fl_conv2d: kernel %lldx%lld larger than the padded input %s (pad %d)", (long long)k,
           (long long)k, SHAPE(x, s1), pad);
  if (b) check_vec(op, b, x, w->shape[0], "bias");
  if (!have_kernel(op, (const void *)BE(x)->conv2d_fwd, x)) return NULL;
  fl_conv_shape *s = fl__graph_alloc(g, FL_CPU, sizeof *s);
  if (!s) return NULL;
  *s = (fl_conv_shape){.N = (int)x->shape[0], .C = (int)x->shape[1], .H = (int)x->shape[2],
                       .W = (int)x->shape[3], .O = (int)w->shape[0], .k = (int)k, .stride = stride,
                       .pad = pad};
  s->Ho = (s->H + 2 * pad - s->k) / stride + 1;
  s->Wo = (s->W + 2 * pad - s->k) / stride + 1;
  int64_t sh[4] = {s->N, s->O, s->Ho, s->Wo};
  fl_tensor *y = fl_graph_tensor(g, FL_F32, x->device, 4, sh);
  if (!y) return NULL;
  BE(x)->conv2d_fwd(s, F(y), F(x), F(w), b ? F(b) : NULL);
  return fl__op_record(g, y, conv_bw, x, w, b, s) ? y : NULL;
}

/* ---------------------------------------------------------------- batch norm */

typedef struct bn_saved {
  float *mean, *invstd;   /* per channel, on the device */
  int N, C, S, training;
} bn_saved;

static void bn_bw(fl_graph *g, fl_node *n) {
  fl_tensor *x = n->in[0], *w = n->in[1], *b = n->in[2], *y = n->out;
  const bn_saved *s = n->saved;
  int acc_x = 0, acc_w = 0, acc_b = 0;
  float *gx = x->requires_grad ? fl__op_grad_of(g, x, &acc_x) : NULL;
  float *gw = w && w->requires_grad ? fl__op_grad_of(g, w, &acc_w) : NULL;
  float *gb = b && b->requires_grad ? fl__op_grad_of(g, b, &acc_b) : NULL;
  BE(y)->bn_bwd(gx, gw, gb, F(y->grad), F(x), w ? F(w) : NULL, s->mean, s->invstd, s->N, s->C, s->S,
                s->training, acc_x, acc_w, acc_b);
}

fl_tensor *fl_batch_norm(fl_graph *g, fl_tensor *x, fl_tensor *weight, fl_tensor *bias,
                         fl_tensor *running_mean, fl_tensor *running_var, int training,
                         float momentum, float eps) {
  if (!x) return NULL;
  const char *op = "fl_batch_norm";
  char s1[64];
  check_input(op, x, "input");
  FL_CHECK(x->ndim == 2 || x->ndim == 4, "fl_batch_norm: input %s must be (N, C) or (N, C, H, W)",
           SHAPE(x, s1));
  const int64_t C = x->shape[1];
  if (weight) check_vec(op, weight, x, C, "weight");
  if (bias) check_vec(op, bias, x, C, "bias");
  FL_CHECK(running_mean && running_var, "fl_batch_norm: running_mean and running_var are required");
  check_vec(op, running_mean, x, C, "running_mean");
  check_vec(op, running_var, x, C, "running_var");
  FL_CHECK(!running_mean->requires_grad && !running_var->requires_grad,
           "fl_batch_norm: the running statistics are buffers and must not require grad");
  FL_CHECK(momentum >= 0.0f && momentum <= 1.0f && eps > 0.0f,
           "fl_batch_norm: momentum %g must be in [0, 1] and eps %g > 0", momentum, eps);
  const int64_t S = x->ndim == 4 ? x->shape[2] * x->shape[3] : 1;
  FL_CHECK(!training || x->shape[0] * S > 1,
           "fl_batch_norm: training needs more than 1 value per channel, input %s", SHAPE(x, s1));
  if (!have_kernel(op, (const void *)BE(x)->bn_fwd, x)) return NULL;
  bn_saved *s = fl__graph_alloc(g, FL_CPU, sizeof *s);
  if (!s) return NULL;
  *s = (bn_saved){.N = (int)x->shape[0], .C = (int)C, .S = (int)S, .training = !!training};
  s->mean = fl__graph_alloc(g, x->device, 2 * (size_t)(C ? C : 1) * sizeof(float));
  if (!s->mean) return NULL;
  s->invstd = s->mean + C;
  fl_tensor *y = fl_graph_tensor(g, FL_F32, x->device, x->ndim, x->shape);
  if (!y) return NULL;
  BE(x)->bn_fwd(F(y), s->mean, s->invstd, F(x), weight ? F(weight) : NULL, bias ? F(bias) : NULL,
                F(running_mean), F(running_var), s->N, s->C, s->S, s->training, momentum, eps);
  return fl__op_record(g, y, bn_bw, x, weight, bias, s) ? y : NULL;
}

/* ---------------------------------------------------------------- pooling */

static void avg_pool_bw(fl_graph *g, fl_node *n) {
  fl_tensor *x = n->in[0], *y = n->out;
  int acc, k = (int)(intptr_t)n->saved;
  float *gx = fl__op_grad_of(g, x, &acc);
  BE(y)->avg_pool_bwd(gx, F(y->grad), (int)(x->shape[0] * x->shape[1]), (int)x->shape[2],
                      (int)x->shape[3], k, (int)y->shape[2], (int)y->shape[3], acc);
}

fl_tensor *fl_avg_pool2d(fl_graph *g, fl_tensor *x, int k, int ceil_mode) {
  if (!x) return NULL;
  char s1[64];
  check_input("fl_avg_pool2d", x, "input");
  FL_CHECK(x->ndim == 4, "fl_avg_pool2d: input %s must be 4-d (N, C, H, W)", SHAPE(x, s1));
  FL_CHECK(k >= 1, "fl_avg_pool2d: kernel size %d must be >= 1", k);
  const int64_t H = x->shape[2], W = x->shape[3];
  const int64_t Ho = ceil_mode ? (H + k - 1) / k : H / k, Wo = ceil_mode ? (W + k - 1) / k : W / k;
  FL_CHECK(Ho >= 1 && Wo >= 1, "fl_avg_pool2d: input %s smaller than the %dx%d window", SHAPE(x, s1), k, k);
  if (!have_kernel("fl_avg_pool2d", (const void *)BE(x)->avg_pool_fwd, x)) return NULL;
  int64_t sh[4] = {x->shape[0], x->shape[1], Ho, Wo};
  fl_tensor *y = fl_graph_tensor(g, FL_F32, x->device, 4, sh);
  if (!y) return NULL;
  BE(x)->avg_pool_fwd(F(y), F(x), (int)(sh[0] * sh[1]), (int)H, (int)W, k, (int)Ho, (int)Wo);
  return fl__op_record(g, y, avg_pool_bw, x, NULL, NULL, (void *)(intptr_t)k) ? y : NULL;
}

static void global_pool_bw(fl_graph *g, fl_node *n) {
  fl_tensor *x = n->in[0], *y = n->out;
  int acc;
  float *gx = fl__op_grad_of(g, x, &acc);
  BE(y)->global_pool_bwd(gx, F(y->grad), (int)fl_numel(y), (int)(x->shape[2] * x->shape[3]), acc);
}

fl_tensor *fl_global_avg_pool(fl_graph *g, fl_tensor *x) {
  if (!x) return NULL;
  char s1[64];
  check_input("fl_global_avg_pool", x, "input");
  FL_CHECK(x->ndim == 4 && x->shape[2] * x->shape[3] >= 1,
           "fl_global_avg_pool: input %s must be 4-d (N, C, H, W) with H, W >= 1", SHAPE(x, s1));
  if (!have_kernel("fl_global_avg_pool", (const void *)BE(x)->global_pool_fwd, x)) return NULL;
  fl_tensor *y = fl_graph_tensor(g, FL_F32, x->device, 2, x->shape);
  if (!y) return NULL;
  BE(x)->global_pool_fwd(F(y), F(x), (int)fl_numel(y), (int)(x->shape[2] * x->shape[3]));
  return fl__op_record(g, y, global_pool_bw, x, NULL, NULL, NULL) ? y : NULL;
}

/* ---------------------------------------------------------------- activations */

typedef struct act_saved {
  float leak, sub, maxv;
} act_saved;

static void general_relu_bw(fl_graph *g, fl_node *n) {
  fl_tensor *x = n->in[0], *y = n->out;
  const act_saved *a = n->saved;
  int acc;
  float *gx = fl__op_grad_of(g, x, &acc);
  BE(y)->general_relu_bwd(gx, F(y->grad), F(x), (size_t)fl_numel(x), a->leak, a->sub, a->maxv, acc);
}

fl_tensor *fl_general_relu(fl_graph *g, fl_tensor *x, float leak, float sub, float maxv) {
  if (!x) return NULL;
  check_input("fl_general_relu", x, "input");
  FL_CHECK(isfinite(leak) && isfinite(sub) && !isnan(maxv),
           "fl_general_relu: leak %g and sub %g must be finite, maxv %g a number", leak, sub, maxv);
  if (!have_kernel("fl_general_relu", (const void *)BE(x)->general_relu_fwd, x)) return NULL;
  act_saved *a = fl__graph_alloc(g, FL_CPU, sizeof *a);
  if (!a) return NULL;
  *a = (act_saved){leak, sub, maxv};
  fl_tensor *y = fl_graph_tensor(g, FL_F32, x->device, x->ndim, x->shape);
  if (!y) return NULL;
  BE(x)->general_relu_fwd(F(y), F(x), (size_t)fl_numel(x), leak, sub, maxv);
  return fl__op_record(g, y, general_relu_bw, x, NULL, NULL, a) ? y : NULL;
}

typedef struct drop_saved {
  uint8_t *mask;
  float scale;
} drop_saved;

static void dropout_bw(fl_graph *g, fl_node *n) {
  fl_tensor *x = n->in[0], *y = n->out;
  const drop_saved *d = n->saved;
  int acc;
  float *gx = fl__op_grad_of(g, x, &acc);
  BE(y)->dropout_bwd(gx, F(y->grad), d->mask, (size_t)fl_numel(x), d->scale, acc);
}

fl_tensor *fl_dropout(fl_graph *g, fl_tensor *x, float p, int training, uint64_t seed, uint64_t counter) {
  if (!x) return NULL;
  check_input("fl_dropout", x, "input");
  FL_CHECK(p >= 0.0f && p < 1.0f, "fl_dropout: p = %g must be in [0, 1)", p);
  if (!training || p == 0.0f) return x;   /* the identity, as PyTorch's Dropout in eval */
  if (!have_kernel("fl_dropout", (const void *)BE(x)->dropout_fwd, x)) return NULL;
  size_t n = (size_t)fl_numel(x);
  drop_saved *d = fl__graph_alloc(g, FL_CPU, sizeof *d);
  if (!d) return NULL;
  d->mask = fl__graph_alloc(g, x->device, n ? n : 1);
  d->scale = 1.0f / (1.0f - p);
  fl_tensor *y = d->mask ? fl_graph_tensor(g, FL_F32, x->device, x->ndim, x->shape) : NULL;
  if (!y) return NULL;
  BE(x)->dropout_fwd(F(y), d->mask, F(x), n, p, d->scale, seed, counter);
  return fl__op_record(g, y, dropout_bw, x, NULL, NULL, d) ? y : NULL;
}
