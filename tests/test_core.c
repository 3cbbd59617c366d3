/* Core: the counter-based RNG, tensors and their shapes, error strings, misuse aborts
 * (file:line and a message, checked in forked children), NULL propagation through ops. */
#include <signal.h>
#include <stdint.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fl/nn.h"
#include "fl/tensor.h"
#include "test.h"

/* ---------------------------------------------------------------- RNG */

static void test_rng_pure(void) {
  fl_rng a = fl_rng_make(5, 7), b = fl_rng_make(5, 7);
  for (int i = 0; i < 100; i++) EXPECT(fl_rng_u64(&a) == fl_rng_u64(&b));
  /* a draw is a function of (seed, stream, counter) only */
  fl_rng c = fl_rng_make(5, 7);
  c.counter = 42;
  EXPECT(fl_rng_u64(&c) == fl_rng_hash(5, 7, 42));
  EXPECT(c.counter == 43);
  /* streams and seeds differ */
  int same_stream = 0, same_seed = 0;
  for (uint64_t i = 0; i < 1000; i++) {
    same_stream += fl_rng_hash(5, 7, i) == fl_rng_hash(5, 8, i);
    same_seed += fl_rng_hash(5, 7, i) == fl_rng_hash(6, 7, i);
  }
  EXPECT(same_stream == 0 && same_seed == 0);
  EXPECT(fl_rng_hash(0, 0, 0) != fl_rng_hash(0, 0, 1));
}

/* n = 100000 draws; tolerances are 5 standard errors. */
static void test_rng_distributions(void) {
  fl_rng r = fl_rng_make(9, FL_STREAM_USER);
  const int n = 100000;
  double s = 0, s2 = 0;
  int out = 0;
  for (int i = 0; i < n; i++) {
    float u = fl_rng_uniform(&r);
    out += !(u >= 0.0f && u < 1.0f);
    s += u;
    s2 += (double)u * u;
  }
  EXPECT(out == 0);
  double m = s / n, v = s2 / n - m * m;
  EXPECTF(fabs(m - 0.5) < 5 * sqrt(1.0 / 12 / n), "uniform mean %g", m);   /* 0.0046 */
  EXPECTF(fabs(v - 1.0 / 12) < 5 * sqrt(1.0 / 180 / n), "uniform var %g", v); /* 0.0012 */
  /* below(n): < n and each value about equally likely (n = 7: p = 1/7, sd of a count 110.7) */
  int cnt[7] = {0};
  for (int i = 0; i < 70000; i++) {
    uint64_t k = fl_rng_below(&r, 7);
    EXPECT(k < 7);
    if (k < 7) cnt[k]++;
  }
  for (int k = 0; k < 7; k++) EXPECTF(abs(cnt[k] - 10000) < 5 * 93, "below(7) = %d: %d times", k, cnt[k]);
  EXPECT(fl_rng_below(&r, 1) == 0);
  /* a huge n where modulo bias would show: n = 3 * 2^62 (a plain % would give the low third
   * twice the weight): fraction of draws below 2^62 should be 1/3 */
  uint64_t big = 3ULL << 62;
  int low = 0;
  for (int i = 0; i < 30000; i++) {
    uint64_t k = fl_rng_below(&r, big);
    EXPECT(k < big);
    low += k < (1ULL << 62);
  }
  EXPECTF(fabs(low / 30000.0 - 1.0 / 3) < 5 * sqrt(2.0 / 9 / 30000), "below(3*2^62): %d low", low);
  /* normal: mean 0, var 1 (sd of var estimate sqrt(2/n)) */
  s = s2 = 0;
  for (int i = 0; i < n; i++) {
    double z = fl_rng_normal(&r);
    EXPECT(isfinite(z));
    s += z;
    s2 += z * z;
  }
  m = s / n;
  v = s2 / n - m * m;
  EXPECTF(fabs(m) < 5 / sqrt((double)n), "normal mean %g", m);
  EXPECTF(fabs(v - 1) < 5 * sqrt(2.0 / n), "normal var %g", v);
}

/* ---------------------------------------------------------------- tensors */

static void test_tensor_basics(void) {
  int64_t s[3] = {2, 3, 4};
  fl_tensor *t = fl_tensor_new(FL_F32, FL_CPU, 3, s);
  EXPECT(t && t->ndim == 3 && fl_numel(t) == 24 && t->owned == t->data);
  EXPECT(t->stride[0] == 12 && t->stride[1] == 4 && t->stride[2] == 1 && fl_is_contiguous(t));
  EXPECT(!t->requires_grad && !t->grad && !t->node);
  const float *p = t->data;
  int nz = 0;
  for (int i = 0; i < 24; i++) nz += p[i] != 0.0f;
  EXPECT(nz == 0);
  fl_tensor_fill(t, 2.5f);
  for (int i = 0; i < 24; i++) EXPECT(p[i] == 2.5f);
  fl_tensor_scale(t, 2.0f);
  EXPECT(p[23] == 5.0f);
  fl_tensor_zero(t);
  EXPECT(p[0] == 0.0f && p[23] == 0.0f);
  char buf[64];
  EXPECT(!strcmp(fl_shape_str(t, buf, sizeof buf), "[2, 3, 4] f32 cpu"));
  char tiny[6];
  fl_shape_str(t, tiny, sizeof tiny);   /* truncates safely */
  EXPECT(strlen(tiny) < sizeof tiny);
  EXPECT(fl_dtype_size(FL_F32) == 4 && fl_dtype_size(FL_I32) == 4);

  float data[6] = {1, 2, 3, 4, 5, 6};
  int64_t s2[2] = {2, 3};
  fl_tensor *a = fl_tensor_from_data(FL_F32, FL_CPU, 2, s2, data);
  data[0] = 100;   /* a copy, not a view */
  EXPECT(((float *)a->data)[0] == 1.0f && ((float *)a->data)[5] == 6.0f);
  fl_tensor *b = fl_tensor_new2(FL_F32, FL_CPU, 3, 2);
  fl_tensor_copy(b, a);   /* same element count, any shape */
  EXPECT(((float *)b->data)[4] == 5.0f);
  float host[6];
  fl_tensor_to_host(b, host);
  EXPECT(host[2] == 3.0f);
  EXPECT(!fl_same_shape(a, b));
  fl_tensor *i32 = fl_tensor_new1(FL_I32, FL_CPU, 5);
  EXPECT(!strcmp(fl_shape_str(i32, buf, sizeof buf), "[5] i32 cpu"));
  EXPECT(fl_tensor_require_grad(a) == FL_OK && a->requires_grad && a->grad && fl_same_shape(a, a->grad));
  EXPECT(fl_tensor_to(a, FL_CPU) == FL_OK);
  fl_tensor_free(a);
  fl_tensor_free(b);
  fl_tensor_free(i32);
  fl_tensor_free(t);
  fl_tensor_free(NULL);
}

static void test_tensor_item_scalar(void) {
  float v = 3.25f;
  fl_tensor *s = fl_tensor_from_data(FL_F32, FL_CPU, 0, NULL, &v);
  EXPECT(s && s->ndim == 0 && fl_numel(s) == 1 && fl_tensor_item(s) == 3.25f);
  char buf[32];
  EXPECT(!strcmp(fl_shape_str(s, buf, sizeof buf), "[] f32 cpu"));
  fl_tensor_free(s);
}

static void test_random_tensors(void) {
  fl_rng r1 = fl_rng_make(3, 4), r2 = fl_rng_make(3, 4);
  int64_t s[2] = {10, 10};
  fl_tensor *a = fl_tensor_uniform(&r1, FL_CPU, 2, s, -2.0f, 3.0f);
  fl_tensor *b = fl_tensor_uniform(&r2, FL_CPU, 2, s, -2.0f, 3.0f);
  EXPECT(!memcmp(a->data, b->data, 100 * sizeof(float)));
  const float *p = a->data;
  for (int i = 0; i < 100; i++) EXPECT(p[i] >= -2.0f && p[i] < 3.0f);
  EXPECT(r1.counter == 100);
  fl_tensor *c = fl_tensor_normal(&r1, FL_CPU, 2, s, 10.0f, 0.001f);
  p = c->data;
  for (int i = 0; i < 100; i++) EXPECT(fabsf(p[i] - 10.0f) < 0.01f);
  fl_tensor_free(a);
  fl_tensor_free(b);
  fl_tensor_free(c);
}

static void test_reshape(void) {
  fl_graph *g = fl_graph_new();
  int64_t s[3] = {2, 3, 4};
  fl_tensor *t = fl_tensor_new(FL_F32, FL_CPU, 3, s);
  int64_t r1[2] = {-1, 6}, r2[3] = {4, -1, 2}, r3[1] = {-1};
  fl_tensor *v = fl_reshape(g, t, 2, r1);
  EXPECT(v && v->shape[0] == 4 && v->shape[1] == 6 && v->data == t->data && !v->owned);
  EXPECT(v->stride[0] == 6 && v->stride[1] == 1 && fl_is_contiguous(v));
  v = fl_reshape(g, t, 3, r2);
  EXPECT(v && v->shape[1] == 3);
  v = fl_reshape(g, v, 1, r3);
  EXPECT(v && v->ndim == 1 && v->shape[0] == 24);
  fl_tensor *f = fl_flatten(g, t);
  EXPECT(f && f->ndim == 2 && f->shape[0] == 2 && f->shape[1] == 12);
  /* a non-contiguous view (a column) is detected */
  fl_tensor col = *t;
  col.ndim = 2;
  col.shape[0] = 6; col.shape[1] = 1;
  col.stride[0] = 4; col.stride[1] = 1;
  EXPECT(!fl_is_contiguous(&col));
  col.shape[0] = 1; col.shape[1] = 4;     /* a single row: contiguous whatever stride[0] */
  EXPECT(fl_is_contiguous(&col));
  EXPECT(fl_reshape(g, NULL, 2, r1) == NULL && fl_flatten(g, NULL) == NULL);
  /* grad off: the view records nothing */
  fl_tensor_free(t);
  fl_graph_free(g);
}

static void test_graph_tensors(void) {
  fl_graph *g = fl_graph_new();
  EXPECT(fl_graph_grad_enabled(g));
  int64_t s[2] = {3, 5};
  fl_tensor *a = fl_graph_tensor(g, FL_F32, FL_CPU, 2, s);
  fl_tensor *b = fl_graph_tensor(g, FL_I32, FL_CPU, 2, s);
  EXPECT(a && b && a->data != b->data && !a->owned && ((uintptr_t)a->data & 63) == 0);
  EXPECT(b->dtype == FL_I32 && fl_numel(b) == 15);
  fl_graph_reset(g);
  fl_graph_free(g);
  fl_graph_free(NULL);
}

/* ---------------------------------------------------------------- errors */

static void test_error_strings(void) {
  EXPECT(fl_error(FL_ERR_IO, "cannot open %s (%d)", "x.idx", 2) == FL_ERR_IO);
  EXPECT(!strcmp(fl_last_error(), "cannot open x.idx (2)"));
  char longmsg[1000];
  memset(longmsg, 'a', sizeof longmsg - 1);
  longmsg[sizeof longmsg - 1] = 0;
  fl_error(FL_ERR, "%s", longmsg);
  EXPECT(strlen(fl_last_error()) == 511);
  fl_status all[] = {FL_OK, FL_CANCEL_BATCH, FL_CANCEL_EPOCH, FL_CANCEL_FIT, FL_ERR, FL_ERR_IO,
                     FL_ERR_FORMAT, FL_ERR_NOMEM, FL_ERR_ARG, FL_ERR_DEVICE, FL_ERR_NAN};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
    const char *s = fl_status_str(all[i]);
    EXPECT(s && *s && strcmp(s, "unknown status"));
    for (size_t j = 0; j < i; j++) EXPECT(strcmp(s, fl_status_str(all[j])));
  }
  EXPECT(!strcmp(fl_status_str(FL_OK), "ok"));
  EXPECT(!strcmp(fl_status_str((fl_status)42), "unknown status"));
  EXPECT(!strcmp(fl_device_name(FL_CPU), "cpu") && !strcmp(fl_device_name(FL_CUDA), "cuda"));
  double t0 = fl_now(), t1 = fl_now();
  EXPECT(t1 >= t0 && t0 > 0);
}

/* ---------------------------------------------------------------- misuse aborts */

typedef void (*misuse_fn)(void);

/* Runs fn in a child with stderr on a pipe; the child must die of SIGABRT and its stderr hold
 * "<file>:<line>: flexlearn: " and `needle`. */
static void expect_abort(const char *what, misuse_fn fn, const char *needle) {
  int fd[2];
  if (pipe(fd)) { EXPECT(0); return; }
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  if (pid == 0) {
    dup2(fd[1], 2);
    close(fd[0]);
    close(fd[1]);
    fn();
    _exit(0);   /* did not abort */
  }
  close(fd[1]);
  char buf[4096];
  size_t len = 0;
  ssize_t k;
  while (len < sizeof buf - 1 && (k = read(fd[0], buf + len, sizeof buf - 1 - len)) > 0) len += (size_t)k;
  buf[len] = 0;
  close(fd[0]);
  int st = 0;
  waitpid(pid, &st, 0);
  EXPECTF(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT, "%s: child did not abort (status %#x)", what, st);
  /* "src/core/ops.c:123: flexlearn: " */
  const char *p = strstr(buf, ": flexlearn: ");
  int ok = 0;
  if (p) {
    const char *q = p;
    while (q > buf && q[-1] >= '0' && q[-1] <= '9') q--;
    ok = q < p && q > buf + 2 && q[-1] == ':' && !strncmp(q - 3, ".c:", 3);
  }
  EXPECTF(ok, "%s: no \"file.c:N: flexlearn:\" in the child's stderr: %s", what, buf);
  EXPECTF(strstr(buf, needle) != NULL, "%s: no \"%s\" in: %s", what, needle, buf);
}

static fl_tensor *mk2(int64_t r, int64_t c) { return fl_tensor_new2(FL_F32, FL_CPU, r, c); }

static void misuse_matmul(void) { fl_matmul(fl_graph_new(), mk2(2, 3), mk2(4, 5)); }
static void misuse_linear_bias(void) {
  fl_linear(fl_graph_new(), mk2(2, 3), mk2(4, 3), fl_tensor_new1(FL_F32, FL_CPU, 3));
}
static void misuse_linear_in(void) { fl_linear(fl_graph_new(), mk2(2, 3), mk2(4, 5), NULL); }
static void misuse_reshape(void) {
  int64_t s[2] = {5, 5};
  fl_reshape(fl_graph_new(), mk2(4, 6), 2, s);
}
static void misuse_reshape_two_infer(void) {
  int64_t s[2] = {-1, -1};
  fl_reshape(fl_graph_new(), mk2(4, 6), 2, s);
}
static void misuse_xent_float_targets(void) {
  fl_cross_entropy(fl_graph_new(), mk2(4, 3), fl_tensor_new1(FL_F32, FL_CPU, 4));
}
static void misuse_xent_target_range(void) {
  int32_t t[2] = {0, 3};
  int64_t s[1] = {2};
  fl_cross_entropy(fl_graph_new(), mk2(2, 3), fl_tensor_from_data(FL_I32, FL_CPU, 1, s, t));
}
static void misuse_backward_nonscalar(void) {
  fl_graph *g = fl_graph_new();
  fl_tensor *x = mk2(3, 3);
  fl_tensor_require_grad(x);
  fl_backward(g, fl_relu(g, x));
}
static void misuse_backward_no_grad(void) {
  fl_graph *g = fl_graph_new();
  fl_backward(g, fl_sum(g, mk2(3, 3)));
}
static void misuse_broadcast(void) { fl_add(fl_graph_new(), mk2(4, 3), mk2(4, 2)); }
static void misuse_mse(void) { fl_mse(fl_graph_new(), mk2(4, 3), mk2(4, 2)); }
static void misuse_log_softmax_3d(void) {
  int64_t s[3] = {2, 2, 2};
  fl_log_softmax(fl_graph_new(), fl_tensor_new(FL_F32, FL_CPU, 3, s));
}
static void misuse_leaf_without_grad(void) {
  fl_graph *g = fl_graph_new();
  fl_tensor *x = mk2(2, 2);
  x->requires_grad = 1;   /* requires grad but no grad tensor (not via fl_tensor_require_grad) */
  fl_backward(g, fl_sum(g, x));
}
static void misuse_too_many_dims(void) {
  int64_t s[5] = {1, 1, 1, 1, 1};
  fl_tensor_new(FL_F32, FL_CPU, 5, s);
}
static void misuse_int_grad(void) { fl_tensor_require_grad(fl_tensor_new1(FL_I32, FL_CPU, 3)); }
static void misuse_rng_below0(void) {
  fl_rng r = fl_rng_make(1, 1);
  fl_rng_below(&r, 0);
}
static void misuse_copy(void) { fl_tensor_copy(mk2(2, 2), mk2(3, 3)); }
static void misuse_linear_new(void) {
  fl_rng r = fl_rng_make(1, 1);
  fl_linear_new(0, 3, 1, &r);
}

static void test_misuse_aborts(void) {
  expect_abort("matmul", misuse_matmul, "fl_matmul: shapes [2, 3] f32 cpu and [4, 5] f32 cpu do not chain");
  expect_abort("linear bias", misuse_linear_bias, "fl_linear: bias [3] f32 cpu, expected [4]");
  expect_abort("linear in", misuse_linear_in, "does not match weight");
  expect_abort("reshape", misuse_reshape, "fl_reshape: [4, 6] f32 cpu into 25 elements");
  expect_abort("reshape -1 -1", misuse_reshape_two_infer, "more than one -1");
  expect_abort("xent float targets", misuse_xent_float_targets, "must be int32");
  expect_abort("xent target range", misuse_xent_target_range, "target 3 of row 1 is outside [0, 3)");
  expect_abort("backward non-scalar", misuse_backward_nonscalar, "1-element");
  expect_abort("backward no grad", misuse_backward_no_grad, "does not require grad");
  expect_abort("broadcast", misuse_broadcast, "fl_add: shapes [4, 3] f32 cpu and [4, 2] f32 cpu do not broadcast");
  expect_abort("mse", misuse_mse, "fl_mse");
  expect_abort("log_softmax 3d", misuse_log_softmax_3d, "expected a contiguous (B, C) tensor");
  expect_abort("leaf without grad", misuse_leaf_without_grad, "fl_tensor_require_grad");
  expect_abort("5 dims", misuse_too_many_dims, "5 dimensions");
  expect_abort("int grad", misuse_int_grad, "only f32");
  expect_abort("rng_below(0)", misuse_rng_below0, "n must be > 0");
  expect_abort("copy", misuse_copy, "fl_tensor_copy");
  expect_abort("linear_new(0)", misuse_linear_new, "must be > 0");
}

/* ---------------------------------------------------------------- NULL propagation */

static void test_null_propagation(void) {
  fl_graph *g = fl_graph_new();
  fl_tensor *x = mk2(2, 3), *w = mk2(4, 3), *t = fl_tensor_new1(FL_I32, FL_CPU, 2);
  EXPECT(fl_matmul(g, NULL, x) == NULL && fl_matmul(g, x, NULL) == NULL);
  EXPECT(fl_linear(g, NULL, w, NULL) == NULL && fl_linear(g, x, NULL, NULL) == NULL);
  EXPECT(fl_add(g, NULL, x) == NULL && fl_sub(g, x, NULL) == NULL && fl_mul(g, NULL, NULL) == NULL);
  EXPECT(fl_relu(g, NULL) == NULL && fl_sum(g, NULL) == NULL && fl_mean(g, NULL) == NULL);
  EXPECT(fl_log_softmax(g, NULL) == NULL);
  EXPECT(fl_cross_entropy(g, NULL, t) == NULL && fl_cross_entropy(g, x, NULL) == NULL);
  EXPECT(fl_mse(g, NULL, x) == NULL && fl_mse(g, x, NULL) == NULL);
  /* a chain: the NULL surfaces once, at the loss, and backward reports it as a status */
  fl_tensor *loss = fl_cross_entropy(g, fl_linear(g, fl_relu(g, NULL), w, NULL), t);
  EXPECT(loss == NULL);
  fl_error(FL_ERR_NOMEM, "out of memory: test");
  EXPECT(fl_backward(g, loss) == FL_ERR);
  EXPECT(strstr(fl_last_error(), "out of memory: test") != NULL);
  fl_tensor_free(x);
  fl_tensor_free(w);
  fl_tensor_free(t);
  fl_graph_free(g);
}

int main(void) {
  RUN(test_rng_pure);
  RUN(test_rng_distributions);
  RUN(test_tensor_basics);
  RUN(test_tensor_item_scalar);
  RUN(test_random_tensors);
  RUN(test_reshape);
  RUN(test_graph_tensors);
  RUN(test_error_strings);
  RUN(test_misuse_aborts);
  RUN(test_null_propagation);
  return test_summary();
}
