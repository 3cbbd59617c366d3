/* Ops with their backward passes. Each op checks shapes (misuse aborts), allocates its result
 * in the graph, calls the kernel table of the tensors' device and records a tape node.
 *
 * Failure rule: an op returns NULL when the arena runs out of memory (fl_last_error says so),
 * and an op given a NULL input returns NULL, so a failure surfaces once, at the loss. */
#include <string.h>

#include "backend/backend.h"
#include "core/internal.h"

#define BE(t) fl_backend_for((t)->device)
#define F(t) ((float *)(t)->data)
#define SHAPE(t, buf) fl_shape_str((t), (buf), sizeof (buf))


static void same_device(const char *op, const fl_tensor *a, const fl_tensor *b) {
  FL_CHECK(a->device == b->device, "%s: tensors on different devices (%s and %s)", op,
           fl_device_name(a->device), fl_device_name(b->device));
}

static void need_f32(const char *op, const fl_tensor *t) {
  FL_CHECK(t->dtype == FL_F32, "%s: expected an f32 tensor", op);
}

/* Records a node for out (keeping `saved` for the backward) when grad mode is on and an input
 * requires grad; returns 0 only when a node was needed but could not be stored (no memory). */
static int record(fl_graph *g, fl_tensor *out, void (*bw)(fl_graph *, fl_node *), fl_tensor *a,
                  fl_tensor *b, fl_tensor *c, void *saved) {
  fl_node *n = fl__graph_record(g, out, bw, a, b, c);
  if (n) {
    n->saved = saved;
    return 1;
  }
  return !(fl_graph_grad_enabled(g) && ((a && a->requires_grad) || (b && b->requires_grad) ||
                                        (c && c->requires_grad)));
}

/* The grad buffer of an input during backward: allocated (and to be overwritten, *acc = 0) on
 * first use for intermediates; a leaf must already have one (*acc = 1: accumulate). */
static float *grad_of(fl_graph *g, fl_tensor *t, int *acc) {
  if (t->grad) {   /* a leaf: accumulate, unless zero_grad left it "none" */
    *acc = !t->grad_none;
    t->grad_none = 0;
    return F(t->grad);
  }
  FL_CHECK(t->node != NULL, "backward: a leaf tensor (%s) requires grad but has no grad tensor "
           "(use fl_tensor_require_grad)", t->name ? t->name : "unnamed");
  t->grad = fl_graph_tensor(g, FL_F32, t->device, t->ndim, t->shape);
  FL_CHECK(t->grad != NULL, "backward: %s", fl_last_error());
  *acc = 0;
  return F(t->grad);
}

/* ---------------------------------------------------------------- views */

static void view_bw(fl_graph *g, fl_node *n) {
  fl_tensor *x = n->in[0], *y = n->out;
  if (!x->requires_grad) return;
  if (!x->grad && x->node) {   /* share the buffer: the view's grad is x's grad */
    x->grad = fl__graph_alloc(g, FL_CPU, sizeof *x->grad);
    FL_CHECK(x->grad != NULL, "backward: %s", fl_last_error());
    *x->grad = *y->grad;
    fl__set_shape(x->grad, x->ndim, x->shape);
    return;
  }
  int acc;
  float *gx = grad_of(g, x, &acc);
  size_t n_el = (size_t)fl_numel(x);
  int64_t shape[1] = {(int64_t)n_el}, s1[1] = {1};
  if (acc) BE(x)->binary(FL_OP_ADD, 1, shape, gx, gx, s1, F(y->grad), s1);
  else BE(x)->copy(gx, F(y->grad), n_el * sizeof(float));
}

fl_tensor *fl_reshape(fl_graph *g, fl_tensor *t, int ndim, const int64_t *shape) {
  if (!t) return NULL;
  FL_CHECK(fl_is_contiguous(t), "fl_reshape: the tensor must be contiguous");
  int64_t s[FL_MAX_DIMS], known = 1;
  int infer = -1;
  FL_CHECK(ndim >= 0 && ndim <= FL_MAX_DIMS, "fl_reshape: %d dimensions", ndim);
  for (int i = 0; i < ndim; i++) {
    s[i] = shape[i];
    if (s[i] == -1) { FL_CHECK(infer < 0, "fl_reshape: more than one -1"); infer = i; }
    else known *= s[i];
  }
  int64_t n = fl_numel(t);
  if (infer >= 0) {
    FL_CHECK(known > 0 && n % known == 0, "fl_reshape: cannot infer -1 for %lld elements", (long long)n);
    s[infer] = n / known;
    known *= s[infer];
  }
  char b[64];
  FL_CHECK(known == n, "fl_reshape: %s into %lld elements", SHAPE(t, b), (long long)known);
  fl_tensor *v = fl__graph_alloc(g, FL_CPU, sizeof *v);
  if (!v) return NULL;
  *v = *t;
  v->grad = NULL;
  v->node = NULL;
  v->owned = NULL;
  v->requires_grad = 0;
  fl__set_shape(v, ndim, s);
  return record(g, v, view_bw, t, NULL, NULL, NULL) ? v : NULL;
}

fl_tensor *fl_flatten(fl_graph *g, fl_tensor *t) {
  if (!t) return NULL;
  int64_t s[2] = {t->ndim ? t->shape[0] : 1, -1};
  if (t->ndim && t->shape[0] == 0) s[1] = 0;
  return fl_reshape(g, t, 2, s);
}

/* ---------------------------------------------------------------- matmul, linear */

static void matmul_bw(fl_graph *g, fl_node *n) {
  fl_tensor *a = n->in[0], *b = n->in[1], *y = n->out;
  int M = (int)a->shape[0], K = (int)a->shape[1], N = (int)b->shape[1], acc;
  const float *gy = F(y->grad);
  if (a->requires_grad) {  /* ga (M,K) (+)= gy (M,N) . b^T */
    float *ga = grad_of(g, a, &acc);
    BE(a)->gemm(0, 1, M, K, N, 1.0f, gy, N, F(b), (int)b->stride[0], acc ? 1.0f : 0.0f, ga, K);
  }
  if (b->requires_grad) {  /* gb (K,N) (+)= a^T . gy */
    float *gb = grad_of(g, b, &acc);
    BE(b)->gemm(1, 0, K, N, M, 1.0f, F(a), (int)a->stride[0], gy, N, acc ? 1.0f : 0.0f, gb, N);
  }
}

static void need_rows(const char *op, const fl_tensor *t) {
  char b[64];
  FL_CHECK(t->ndim == 2 && t->stride[1] == 1 && t->stride[0] >= t->shape[1],
           "%s: expected a 2-d tensor with contiguous rows, got %s", op, SHAPE(t, b));
}

fl_tensor *fl_matmul(fl_graph *g, fl_tensor *a, fl_tensor *b) {
  if (!a || !b) return NULL;
  char s1[64], s2[64];
  need_f32("fl_matmul", a); need_f32("fl_matmul", b); same_device("fl_matmul", a, b);
  need_rows("fl_matmul", a); need_rows("fl_matmul", b);
  FL_CHECK(a->shape[1] == b->shape[0], "fl_matmul: shapes %s and %s do not chain", SHAPE(a, s1), SHAPE(b, s2));
  int M = (int)a->shape[0], K = (int)a->shape[1], N = (int)b->shape[1];
  int64_t sh[2] = {M, N};
  fl_tensor *y = fl_graph_tensor(g, FL_F32, a->device, 2, sh);
  if (!y) return NULL;
  BE(a)->gemm(0, 0, M, N, K, 1.0f, F(a), (int)a->stride[0], F(b), (int)b->stride[0], 0.0f, F(y), N);
  return record(g, y, matmul_bw, a, b, NULL, NULL) ? y : NULL;
}

/* The gradient at Linear's output (B,O), then what linear_bw does with it. */
static void linear_grads(fl_graph *g, fl_tensor *x, fl_tensor *w, const float *gy) {
  int B = (int)x->shape[0], I = (int)x->shape[1], O = (int)w->shape[0], acc;
  if (x->requires_grad) {  /* gx (B,I) (+)= gy (B,O) . w (O,I) */
    float *gx = grad_of(g, x, &acc);
    BE(x)->gemm(0, 0, B, I, O, 1.0f, gy, O, F(w), (int)w->stride[0], acc ? 1.0f : 0.0f, gx, I);
  }
  if (w->requires_grad) {  /* gw (O,I) (+)= gy^T (O,B) . x (B,I) */
    float *gw = grad_of(g, w, &acc);
    BE(w)->gemm(1, 0, O, I, B, 1.0f, gy, O, F(x), (int)x->stride[0], acc ? 1.0f : 0.0f, gw, I);
  }
}

static void linear_bw(fl_graph *g, fl_node *n) {
  fl_tensor *x = n->in[0], *w = n->in[1], *bias = n->in[2], *y = n->out;
  linear_grads(g, x, w, F(y->grad));
  if (bias && bias->requires_grad) {  /* gb (O) (+)= column sums of gy */
    int acc;
    float *gb = grad_of(g, bias, &acc);
    BE(bias)->bias_grad(gb, F(y->grad), (int)y->shape[0], (int)y->shape[1], acc);
  }
}

static void linear_relu_bw(fl_graph *g, fl_node *n) {
  fl_tensor *x = n->in[0], *w = n->in[1], *bias = n->in[2], *y = n->out;
  int B = (int)y->shape[0], O = (int)y->shape[1], acc = 0;
  float *gpre = fl__graph_alloc(g, y->device, (size_t)B * O * sizeof(float));
  FL_CHECK(gpre != NULL, "backward: %s", fl_last_error());
  float *gb = bias && bias->requires_grad ? grad_of(g, bias, &acc) : NULL;
  BE(y)->relu_bias_grad(gpre, gb, F(y->grad), F(y), B, O, acc);
  linear_grads(g, x, w, gpre);
}

static fl_tensor *linear_fwd(fl_graph *g, fl_tensor *x, fl_tensor *w, fl_tensor *b, int relu);

fl_tensor *fl_linear_relu(fl_graph *g, fl_tensor *x, fl_tensor *w, fl_tensor *b) {
  FL_CHECK(!x || !w || b, "fl_linear_relu: needs a bias");
  return linear_fwd(g, x, w, b, 1);
}

fl_tensor *fl_linear(fl_graph *g, fl_tensor *x, fl_tensor *w, fl_tensor *b) { return linear_fwd(g, x, w, b, 0); }


static fl_tensor *linear_fwd(fl_graph *g, fl_tensor *x, fl_tensor *w, fl_tensor *b, int relu) {
  if (!x || !w) return NULL;
  char s1[64], s2[64];
  need_f32("fl_linear", x); need_f32("fl_linear", w);
  same_device("fl_linear", x, w);
  need_rows("fl_linear x", x); need_rows("fl_linear weight", w);
  FL_CHECK(x->shape[1] == w->shape[1], "fl_linear: input %s does not match weight %s (out, in)",
           SHAPE(x, s1), SHAPE(w, s2));
  int B = (int)x->shape[0], I = (int)x->shape[1], O = (int)w->shape[0];
  if (b) {
    need_f32("fl_linear", b); same_device("fl_linear", x, b);
    FL_CHECK(b->ndim == 1 && b->shape[0] == O && fl_is_contiguous(b),
             "fl_linear: bias %s, expected [%d]", SHAPE(b, s1), O);
  }
  int64_t sh[2] = {B, O};
  fl_tensor *y = fl_graph_tensor(g, FL_F32, x->device, 2, sh);
  if (!y) return NULL;
  BE(x)->gemm(0, 1, B, O, I, 1.0f, F(x), (int)x->stride[0], F(w), (int)w->stride[0], 0.0f, F(y), O);
  if (relu) BE(x)->bias_relu(F(y), F(b), B, O);
  else if (b) BE(x)->bias_add(F(y), F(b), B, O);
  return record(g, y, relu ? linear_relu_bw : linear_bw, x, w, b, NULL) ? y : NULL;
}

/* ---------------------------------------------------------------- broadcasting add/sub/mul */

/* out shape of a (op) b, and a's / b's strides mapped onto it (0 where broadcast). */
static int broadcast(const char *op, const fl_tensor *a, const fl_tensor *b, int64_t *shape,
                     int64_t *sa, int64_t *sb) {
  int nd = a->ndim > b->ndim ? a->ndim : b->ndim;
  char s1[64], s2[64];
  for (int i = 0; i < nd; i++) {
    int ia = i - (nd - a->ndim), ib = i - (nd - b->ndim);
    int64_t da = ia >= 0 ? a->shape[ia] : 1, db = ib >= 0 ? b->shape[ib] : 1;
    FL_CHECK(da == db || da == 1 || db == 1, "%s: shapes %s and %s do not broadcast", op,
             SHAPE(a, s1), SHAPE(b, s2));
    shape[i] = da == 1 ? db : da;
    sa[i] = (ia >= 0 && da != 1) ? a->stride[ia] : 0;
    sb[i] = (ib >= 0 && db != 1) ? b->stride[ib] : 0;
  }
  return nd;
}

/* Strides of a contiguous tensor of t's shape mapped onto out's shape (0 where broadcast). */
static void mapped_contig(const fl_tensor *t, int nd, const int64_t *shape, int64_t *s) {
  int64_t st = 1;
  for (int i = nd - 1; i >= 0; i--) {
    int it = i - (nd - t->ndim);
    int64_t d = it >= 0 ? t->shape[it] : 1;
    s[i] = (d == 1 && shape[i] != 1) ? 0 : (d == 1 ? 0 : st);
    st *= d;
  }
}

static void binary_bw(fl_graph *g, fl_node *n) {
  fl_tensor *a = n->in[0], *b = n->in[1], *y = n->out;
  fl_binop op = (fl_binop)(intptr_t)n->saved;
  int nd = y->ndim, acc;
  int64_t sa[FL_MAX_DIMS], sb[FL_MAX_DIMS], shape[FL_MAX_DIMS], cy[FL_MAX_DIMS];
  broadcast("backward", a, b, shape, sa, sb);
  for (int i = 0; i < nd; i++) cy[i] = y->stride[i];
  const fl_backend *be = BE(y);
  fl_tensor *side[2] = {a, b};
  for (int k = 0; k < 2; k++) {
    fl_tensor *t = side[k];
    if (!t->requires_grad) continue;
    const float *src = F(y->grad);
    if (op == FL_OP_MUL || (op == FL_OP_SUB && k == 1)) {
      fl_tensor *tmp = fl_graph_tensor(g, FL_F32, y->device, nd, shape);
      FL_CHECK(tmp != NULL, "backward: %s", fl_last_error());
      if (op == FL_OP_MUL)  /* d(a*b)/da = b, d/db = a */
        be->binary(FL_OP_MUL, nd, shape, F(tmp), F(y->grad), cy, F(side[1 - k]), k ? sa : sb);
      else {
        be->copy(F(tmp), F(y->grad), (size_t)fl_numel(y) * sizeof(float));
        be->scale(F(tmp), -1.0f, (size_t)fl_numel(y));
      }
      src = F(tmp);
    }
    int64_t ds[FL_MAX_DIMS];
    mapped_contig(t, nd, shape, ds);
    float *gt = grad_of(g, t, &acc);
    be->reduce_to(gt, (size_t)fl_numel(t), ds, nd, shape, src, acc);
  }
}

static fl_tensor *binary(fl_graph *g, fl_binop op, const char *name, fl_tensor *a, fl_tensor *b) {
  if (!a || !b) return NULL;
  need_f32(name, a); need_f32(name, b); same_device(name, a, b);
  int64_t shape[FL_MAX_DIMS], sa[FL_MAX_DIMS], sb[FL_MAX_DIMS];
  int nd = broadcast(name, a, b, shape, sa, sb);
  fl_tensor *y = fl_graph_tensor(g, FL_F32, a->device, nd, shape);
  if (!y) return NULL;
  BE(a)->binary(op, nd, shape, F(y), F(a), sa, F(b), sb);
  return record(g, y, binary_bw, a, b, NULL, (void *)(intptr_t)op) ? y : NULL;
}

fl_tensor *fl_add(fl_graph *g, fl_tensor *a, fl_tensor *b) { return binary(g, FL_OP_ADD, "fl_add", a, b); }
fl_tensor *fl_sub(fl_graph *g, fl_tensor *a, fl_tensor *b) { return binary(g, FL_OP_SUB, "fl_sub", a, b); }
fl_tensor *fl_mul(fl_graph *g, fl_tensor *a, fl_tensor *b) { return binary(g, FL_OP_MUL, "fl_mul", a, b); }

/* ---------------------------------------------------------------- relu, sum, mean */

static void need_contig(const char *op, const fl_tensor *t) {
  FL_CHECK(fl_is_contiguous(t), "%s: the input must be contiguous", op);
}

static void relu_bw(fl_graph *g, fl_node *n) {
  fl_tensor *x = n->in[0], *y = n->out;
  int acc;
  float *gx = grad_of(g, x, &acc);
  BE(x)->relu_bwd(gx, F(y->grad), F(y), (size_t)fl_numel(y), acc);
}

fl_tensor *fl_relu(fl_graph *g, fl_tensor *x) {
  if (!x) return NULL;
  need_f32("fl_relu", x); need_contig("fl_relu", x);
  fl_tensor *y = fl_graph_tensor(g, FL_F32, x->device, x->ndim, x->shape);
  if (!y) return NULL;
  BE(x)->relu_fwd(F(y), F(x), (size_t)fl_numel(x));
  return record(g, y, relu_bw, x, NULL, NULL, NULL) ? y : NULL;
}

static void sum_bw(fl_graph *g, fl_node *n) {
  fl_tensor *x = n->in[0];
  int acc;
  float scale = n->saved ? 1.0f / (float)fl_numel(x) : 1.0f;
  float *gx = grad_of(g, x, &acc);
  BE(x)->sum_bwd(gx, F(n->out->grad), scale, (size_t)fl_numel(x), acc);
}

static fl_tensor *reduce_all(fl_graph *g, fl_tensor *x, int mean) {
  if (!x) return NULL;
  need_f32(mean ? "fl_mean" : "fl_sum", x); need_contig(mean ? "fl_mean" : "fl_sum", x);
  fl_tensor *y = fl_graph_tensor(g, FL_F32, x->device, 0, NULL);
  if (!y) return NULL;
  size_t n = (size_t)fl_numel(x);
  BE(x)->sum(F(y), F(x), n, mean ? 1.0f / (float)n : 1.0f);
  return record(g, y, sum_bw, x, NULL, NULL, (void *)(intptr_t)mean) ? y : NULL;
}

fl_tensor *fl_sum(fl_graph *g, fl_tensor *x) { return reduce_all(g, x, 0); }
fl_tensor *fl_mean(fl_graph *g, fl_tensor *x) { return reduce_all(g, x, 1); }

/* ---------------------------------------------------------------- log_softmax, losses */

static void need_2d(const char *op, const fl_tensor *t) {
  char b[64];
  FL_CHECK(t->ndim == 2 && fl_is_contiguous(t), "%s: expected a contiguous (B, C) tensor, got %s", op,
           SHAPE(t, b));
}

static void log_softmax_bw(fl_graph *g, fl_node *n) {
  fl_tensor *x = n->in[0], *y = n->out;
  int acc;
  float *gx = grad_of(g, x, &acc);
  BE(x)->log_softmax_bwd(gx, F(y->grad), F(y), (int)y->shape[0], (int)y->shape[1], acc);
}

fl_tensor *fl_log_softmax(fl_graph *g, fl_tensor *x) {
  if (!x) return NULL;
  need_f32("fl_log_softmax", x); need_2d("fl_log_softmax", x);
  fl_tensor *y = fl_graph_tensor(g, FL_F32, x->device, 2, x->shape);
  if (!y) return NULL;
  BE(x)->log_softmax_fwd(F(y), F(x), (int)x->shape[0], (int)x->shape[1]);
  return record(g, y, log_softmax_bw, x, NULL, NULL, NULL) ? y : NULL;
}

static void xent_bw(fl_graph *g, fl_node *n) {
  fl_tensor *x = n->in[0], *t = n->in[1];
  int acc;
  float *gx = grad_of(g, x, &acc);
  BE(x)->xent_bwd(gx, F(n->out->grad), F(x), n->saved, t->data, (int)x->shape[0], (int)x->shape[1], acc);
}

fl_tensor *fl_cross_entropy(fl_graph *g, fl_tensor *logits, fl_tensor *targets) {
  if (!logits || !targets) return NULL;
  char s1[64], s2[64];
  need_f32("fl_cross_entropy", logits); need_2d("fl_cross_entropy", logits);
  same_device("fl_cross_entropy", logits, targets);
  FL_CHECK(targets->dtype == FL_I32 && targets->ndim == 1 && targets->shape[0] == logits->shape[0] &&
               fl_is_contiguous(targets),
           "fl_cross_entropy: targets %s must be int32 [%lld] for logits %s", SHAPE(targets, s1),
           (long long)logits->shape[0], SHAPE(logits, s2));
  int M = (int)logits->shape[0], N = (int)logits->shape[1];
  fl_tensor *y = fl_graph_tensor(g, FL_F32, logits->device, 0, NULL);
  float *lse = y ? fl__graph_alloc(g, logits->device, (size_t)(M ? M : 1) * sizeof(float)) : NULL;
  if (!lse) return NULL;
  BE(logits)->xent_fwd(F(y), lse, F(logits), targets->data, M, N);
  return record(g, y, xent_bw, logits, targets, NULL, lse) ? y : NULL;
}

static void mse_bw(fl_graph *g, fl_node *n) {
  fl_tensor *p = n->in[0], *t = n->saved;   /* the target: saved, it gets no grad */
  if (!p->requires_grad) return;
  int acc;
  float *gp = grad_of(g, p, &acc);
  BE(p)->mse_bwd(gp, F(n->out->grad), F(p), F(t), (size_t)fl_numel(p), acc);
}

fl_tensor *fl_mse(fl_graph *g, fl_tensor *pred, fl_tensor *target) {
  if (!pred || !target) return NULL;
  char s1[64], s2[64];
  need_f32("fl_mse", pred); need_f32("fl_mse", target); same_device("fl_mse", pred, target);
  FL_CHECK(fl_numel(pred) == fl_numel(target) && fl_is_contiguous(pred) && fl_is_contiguous(target),
           "fl_mse: pred %s and target %s must be contiguous with the same number of elements",
           SHAPE(pred, s1), SHAPE(target, s2));
  fl_tensor *y = fl_graph_tensor(g, FL_F32, pred->device, 0, NULL);
  if (!y) return NULL;
  BE(pred)->mse_fwd(F(y), F(pred), F(target), (size_t)fl_numel(pred));
  return record(g, y, mse_bw, pred, NULL, NULL, target) ? y : NULL;
}

/* ---------------------------------------------------------------- backward */

fl_status fl_backward(fl_graph *g, fl_tensor *loss) {
  if (!loss) return fl_error(FL_ERR, "backward: no loss (an op before it failed: %s)", fl_last_error());
  FL_CHECK(fl_numel(loss) == 1 && loss->dtype == FL_F32, "fl_backward: the loss must be a 1-element f32 tensor");
  FL_CHECK(loss->requires_grad && loss->node, "fl_backward: the loss does not require grad "
           "(no parameter took part, grad mode was off, or backward already ran)");
  /* d(loss)/d(loss) = 1: a view of the graph's persistent one (backward only reads it) */
  const float *one = fl__graph_one(g, loss->device);
  loss->grad = one ? fl__graph_alloc(g, FL_CPU, sizeof *loss->grad) : NULL;
  if (!loss->grad) return FL_ERR_NOMEM;
  *loss->grad = (fl_tensor){.data = (void *)one, .dtype = FL_F32, .device = loss->device};
  fl__set_shape(loss->grad, loss->ndim, loss->shape);
  for (fl_node *n = loss->node; n; n = n->prev)
    if (n->out->grad) n->backward(g, n);
  loss->node = NULL;
  fl__graph_clear_tape(g);
  return BE(loss)->status();
}

/* ---------------------------------------------------------------- for the other op files */

int fl__op_record(fl_graph *g, fl_tensor *out, void (*bw)(fl_graph *, fl_node *), fl_tensor *a,
                  fl_tensor *b, fl_tensor *c, void *saved) {
  return record(g, out, bw, a, b, c, saved);
}

float *fl__op_grad_of(fl_graph *g, fl_tensor *t, int *acc) { return grad_of(g, t, acc); }
