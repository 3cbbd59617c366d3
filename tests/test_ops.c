/* Values and gradients of every op against PyTorch (fixtures from tools/gen_fixtures.py).
 *
 * Each fixture holds an op's inputs, a random R, PyTorch's float32 output and the gradients
 * of L = sum(out * R) (L = out for scalar outputs) with respect to every input. The test runs
 * the same op on a fl_graph, backpropagates the same L and compares.
 *
 * Tolerance: |ours - torch| <= 1e-5 * max(1, |torch|) for every element of the output and
 * of every gradient (fp32, both sides). Products (matmul, linear, the MLP) are also reported
 * against the bound that suits a dot product: |ours - torch| / sum_k |a_ik * b_kj|, which
 * must stay below a few float32 ulps (1e-6) whatever the summation order.
 *
 * Run from the repository root (fixtures in tests/fixtures), or set FL_FIXTURES to the folder.
 * FL_TEST_VERBOSE=1 prints the largest error of every tensor. */
#include <omp.h>
#include <stdint.h>

#include "backend/cpu/gemm.h"
#include "fl/tensor.h"
#include "test.h"

#define TOL 1e-5

/* ---------------------------------------------------------------- fixture reader */

typedef struct fx_tensor {
  char name[32];
  fl_dtype dtype;
  int ndim;
  int64_t shape[FL_MAX_DIMS];
  int64_t n;
  void *data;   /* float or int32 */
} fx_tensor;

typedef struct fixture {
  int n;
  fx_tensor t[16];
} fixture;

static int rd(FILE *f, void *p, size_t n) { return fread(p, 1, n, f) == n; }

/* Reads tests/fixtures/<name>.bin; 0 on any failure (reported through EXPECT by the caller). */
static int fixture_load(fixture *fx, const char *name) {
  const char *dir = getenv("FL_FIXTURES");
  char path[512];
  snprintf(path, sizeof path, "%s/%s.bin", dir && *dir ? dir : "tests/fixtures", name);
  memset(fx, 0, sizeof *fx);
  FILE *f = fopen(path, "rb");
  if (!f) { fprintf(stderr, "cannot open %s (run from the repo root or set FL_FIXTURES)\n", path); return 0; }
  char magic[4];
  uint32_t ver, count;
  int ok = rd(f, magic, 4) && !memcmp(magic, "FLFX", 4) && rd(f, &ver, 4) && ver == 1 &&
           rd(f, &count, 4) && count <= 16;
  for (uint32_t i = 0; ok && i < count; i++) {
    fx_tensor *t = &fx->t[i];
    uint32_t len, dt, nd;
    ok = rd(f, &len, 4) && len < sizeof t->name && rd(f, t->name, len) && rd(f, &dt, 4) && dt <= 1 &&
         rd(f, &nd, 4) && nd <= FL_MAX_DIMS && rd(f, t->shape, nd * sizeof(int64_t));
    if (!ok) break;
    t->dtype = (fl_dtype)dt;
    t->ndim = (int)nd;
    t->n = 1;
    for (uint32_t d = 0; d < nd; d++) t->n *= t->shape[d];
    t->data = malloc((size_t)(t->n ? t->n : 1) * 4);
    ok = t->data && rd(f, t->data, (size_t)t->n * 4);
    fx->n = (int)i + 1;
  }
  fclose(f);
  if (!ok) fprintf(stderr, "%s: truncated or not a fixture\n", path);
  return ok;
}

static void fixture_free(fixture *fx) {
  for (int i = 0; i < fx->n; i++) free(fx->t[i].data);
}

static fx_tensor *fx_get(fixture *fx, const char *name) {
  for (int i = 0; i < fx->n; i++)
    if (!strcmp(fx->t[i].name, name)) return &fx->t[i];
  return NULL;
}

/* An owning fl_tensor with the fixture's data; f32 inputs get a zeroed grad (requires grad)
 * when `grad` is set. */
static fl_tensor *fx_tensor_new(fixture *fx, const char *name, int grad) {
  fx_tensor *t = fx_get(fx, name);
  if (!t) return NULL;
  fl_tensor *r = fl_tensor_from_data(t->dtype, FL_CPU, t->ndim, t->shape, t->data);
  if (r && grad && t->dtype == FL_F32) fl_tensor_require_grad(r);
  return r;
}

/* ---------------------------------------------------------------- comparison */


/* Max over elements of |got - want| / max(1, |want|); fails the test above TOL. */
static double compare(const char *cas, const char *what, const float *got, const fx_tensor *want) {
  const float *w = want->data;
  double m = 0;
  int64_t at = 0;
  for (int64_t i = 0; i < want->n; i++) {
    double e = fabs((double)got[i] - w[i]) / fmax(1.0, fabs((double)w[i]));
    if (!(e <= m)) { m = e; at = i; }   /* NaN counts as worst */
  }
  EXPECTF(m <= TOL, "%s %s: element %lld = %.9g, torch %.9g (rel err %.3g > %g)", cas, what,
          (long long)at, got[at], w[at], m, TOL);
  if (getenv("FL_TEST_VERBOSE")) printf("  %-16s %-4s max rel err %.3g\n", cas, what, m);
  return m;
}

/* For C = A.B (A (M,K), B (K,N), both as stored in row-major fixtures): the error of got
 * relative to sum_k |a_ik b_kj|, the natural scale of a dot product's rounding error. */
static double dot_rel_err(const float *got, const float *want, const float *A, const float *B,
                          int M, int K, int N) {
  double m = 0;
  for (int i = 0; i < M; i++)
    for (int j = 0; j < N; j++) {
      double s = 0;
      for (int k = 0; k < K; k++) s += fabs((double)A[i * K + k] * B[k * N + j]);
      double e = fabs((double)got[i * N + j] - want[i * N + j]) / (s > 0 ? s : 1);
      if (e > m) m = e;
    }
  return m;
}

/* ---------------------------------------------------------------- the cases */

typedef enum { OP_MATMUL, OP_LINEAR, OP_LINEAR_NB, OP_ADD, OP_SUB, OP_MUL, OP_RELU, OP_SUM,
               OP_MEAN, OP_LOG_SOFTMAX, OP_XENT, OP_MSE, OP_MLP } op_kind;

/* Runs one fixture: builds inputs, runs the op, L = sum(out * R) (or out), backward, compares. */
static void check_case(const char *cas, op_kind op) {
  fixture fx;
  if (!fixture_load(&fx, cas)) { EXPECTF(0, "fixture %s", cas); fixture_free(&fx); return; }
  static const char *names[] = {"a", "b", "c", "w1", "b1", "w2", "b2", "t"};
  fl_tensor *in[8] = {0};
  for (int i = 0; i < 8; i++) {
    char gname[8];
    snprintf(gname, sizeof gname, "g%s", names[i]);
    in[i] = fx_tensor_new(&fx, names[i], fx_get(&fx, gname) != NULL);
  }
  fl_tensor *a = in[0], *b = in[1], *c = in[2];
  fl_graph *g = fl_graph_new();
  fl_tensor *out = NULL;
  switch (op) {
    case OP_MATMUL: out = fl_matmul(g, a, b); break;
    case OP_LINEAR: out = fl_linear(g, a, b, c); break;
    case OP_LINEAR_NB: out = fl_linear(g, a, b, NULL); break;
    case OP_ADD: out = fl_add(g, a, b); break;
    case OP_SUB: out = fl_sub(g, a, b); break;
    case OP_MUL: out = fl_mul(g, a, b); break;
    case OP_RELU: out = fl_relu(g, a); break;
    case OP_SUM: out = fl_sum(g, a); break;
    case OP_MEAN: out = fl_mean(g, a); break;
    case OP_LOG_SOFTMAX: out = fl_log_softmax(g, a); break;
    case OP_XENT: out = fl_cross_entropy(g, a, in[7]); break;
    case OP_MSE: out = fl_mse(g, a, b); break;
    case OP_MLP: {
      fl_tensor *h = fl_relu(g, fl_linear(g, a, in[3], in[4]));
      out = fl_cross_entropy(g, fl_linear(g, h, in[5], in[6]), in[7]);
      break;
    }
  }
  EXPECT(out != NULL);
  fx_tensor *R = fx_get(&fx, "R"), *want = fx_get(&fx, "out");
  if (out && want) {
    EXPECTF(fl_numel(out) == want->n, "%s: %lld elements, torch %lld", cas, (long long)fl_numel(out),
            (long long)want->n);
    if (fl_numel(out) == want->n) compare(cas, "out", out->data, want);
    fl_tensor *L = out;
    if (R) {
      fl_tensor *r = fx_tensor_new(&fx, "R", 0);
      L = fl_sum(g, fl_mul(g, out, r));
      EXPECT(fl_backward(g, L) == FL_OK);
      fl_tensor_free(r);
    } else {
      EXPECT(fl_backward(g, L) == FL_OK);
    }
    for (int i = 0; i < 8; i++) {
      char gname[8];
      snprintf(gname, sizeof gname, "g%s", names[i]);
      fx_tensor *gw = fx_get(&fx, gname);
      if (!gw) continue;
      EXPECTF(in[i] && in[i]->grad && fl_numel(in[i]->grad) == gw->n, "%s: grad %s", cas, gname);
      if (in[i] && in[i]->grad && fl_numel(in[i]->grad) == gw->n) compare(cas, gname, in[i]->grad->data, gw);
    }
    /* Products: also the error on the dot-product scale (documented above). */
    if (op == OP_MATMUL && getenv("FL_TEST_VERBOSE")) {
      fx_tensor *fa = fx_get(&fx, "a"), *fb = fx_get(&fx, "b");
      int M = (int)fa->shape[0], K = (int)fa->shape[1], N = (int)fb->shape[1];
      printf("  %-16s out  max err / sum|a*b| %.3g\n", cas,
             dot_rel_err(out->data, want->data, fa->data, fb->data, M, K, N));
    }
  }
  for (int i = 0; i < 8; i++) fl_tensor_free(in[i]);
  fl_graph_free(g);
  fixture_free(&fx);
}

static void test_matmul(void) { check_case("matmul", OP_MATMUL); }
static void test_matmul_wide(void) { check_case("matmul_wide", OP_MATMUL); }
static void test_linear_bias(void) { check_case("linear_bias", OP_LINEAR); }
static void test_linear_nobias(void) { check_case("linear_nobias", OP_LINEAR_NB); }
static void test_add_row(void) { check_case("add_row", OP_ADD); }
static void test_mul_outer(void) { check_case("mul_outer", OP_MUL); }
static void test_sub_3d(void) { check_case("sub_3d", OP_SUB); }
static void test_add_same(void) { check_case("add_same", OP_ADD); }
static void test_sub_same(void) { check_case("sub_same", OP_SUB); }
static void test_mul_same(void) { check_case("mul_same", OP_MUL); }
static void test_mul_bcast_left(void) { check_case("mul_bcast_left", OP_MUL); }
static void test_relu(void) { check_case("relu", OP_RELU); }
static void test_sum(void) { check_case("sum", OP_SUM); }
static void test_mean(void) { check_case("mean", OP_MEAN); }
static void test_log_softmax(void) { check_case("log_softmax", OP_LOG_SOFTMAX); }
static void test_cross_entropy(void) { check_case("cross_entropy", OP_XENT); }
static void test_log_softmax_offset(void) { check_case("log_softmax_offset", OP_LOG_SOFTMAX); }
static void test_cross_entropy_offset(void) { check_case("cross_entropy_offset", OP_XENT); }
static void test_mse(void) { check_case("mse", OP_MSE); }
static void test_mlp(void) { check_case("mlp", OP_MLP); }

/* The stability cases must stay finite: log_softmax of a row with an 80 logit and a row of
 * -90s (exp overflows / underflows without the max-subtraction). */
static void test_log_softmax_extremes(void) {
  fl_graph *g = fl_graph_new();
  float v[2][4] = {{80, 0, -5, 79}, {-1000, -1001, -1002, -1000}};
  int64_t s[2] = {2, 4};
  fl_tensor *x = fl_tensor_from_data(FL_F32, FL_CPU, 2, s, v);
  fl_tensor *y = fl_log_softmax(g, x);
  const float *p = y->data;
  double want0 = -log1p(exp(-1.0) + exp(-80.0) + exp(-85.0));  /* row 0, element 0 */
  EXPECT_NEAR(p[0], want0, 1e-6);
  for (int i = 0; i < 8; i++) EXPECT(isfinite(p[i]));
  double z = 0;
  for (int j = 0; j < 4; j++) z += exp((double)p[4 + j]);
  EXPECT_NEAR(z, 1.0, 1e-6);
  fl_tensor_free(x);
  fl_graph_free(g);
}

/* The CPU GEMM (oneDNN: matmul primitive or sgemm) against the double-accumulation reference
 * for every transpose combination, alpha/beta and padded leading dimensions. Error bound: a
 * dot product's, |C - ref| <= 1e-6 * (|alpha| sum_k |a_ik b_kj| + |beta c_ij|) (~8 ulps). */
/* The weight gradient of the lesson's first layer at bs 1024 (dW1[50,784] = dH^T X, K = 1024,
 * summed in two fixed halves) and the forward product: the same bits on 1 and 2 threads, with
 * and without accumulation. */
static void test_gemm_threads_same_bits(void) {
  const int M = 50, N = 784, K = 1024;
  fl_rng r = fl_rng_make(9, FL_STREAM_USER);
  float *A = malloc((size_t)K * M * 4), *B = malloc((size_t)K * N * 4), *C[2], *F[2];
  for (size_t i = 0; i < (size_t)K * M; i++) A[i] = fl_rng_normal(&r);
  for (size_t i = 0; i < (size_t)K * N; i++) B[i] = fl_rng_normal(&r);
  int max = omp_get_max_threads();
  for (int t = 0; t < 2; t++) {
    omp_set_num_threads(t + 1);
    C[t] = malloc((size_t)M * N * 4), F[t] = malloc((size_t)K * M * 4);
    fl__cpu_gemm(1, 0, M, N, K, 1.0f, A, M, B, N, 0.0f, C[t], N);          /* dW = dH^T X */
    fl__cpu_gemm(1, 0, M, N, K, 1.0f, A, M, B, N, 1.0f, C[t], N);          /* dW += dH^T X */
    fl__cpu_gemm(0, 1, K, M, N, 1.0f, B, N, C[t], N, 0.0f, F[t], M);       /* X W^T */
  }
  omp_set_num_threads(max);
  EXPECT(!memcmp(C[0], C[1], (size_t)M * N * 4));
  EXPECT(!memcmp(F[0], F[1], (size_t)K * M * 4));
  for (int t = 0; t < 2; t++) free(C[t]), free(F[t]);
  free(A), free(B);
}

static void test_gemm_vs_reference(void) {
  fl_rng r = fl_rng_make(3, FL_STREAM_USER);
  /* {64, 80, 601}: with A transposed, the weight-gradient path that sums K in two halves */
  int shapes[][3] = {{5, 7, 3}, {8, 50, 784}, {64, 10, 50}, {1, 1, 1}, {33, 17, 65}, {64, 80, 601}};
  float ab[][2] = {{1, 0}, {1, 1}, {0.5f, 0.3f}};
  double worst = 0;
  for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
    for (int ta = 0; ta < 2; ta++)
      for (int tb = 0; tb < 2; tb++)
        for (size_t k = 0; k < sizeof ab / sizeof ab[0]; k++) {
          int M = shapes[si][0], N = shapes[si][1], K = shapes[si][2];
          int lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 1, ldc = N + 2;
          size_t na = (size_t)(ta ? K : M) * lda, nb = (size_t)(tb ? N : K) * ldb, nc = (size_t)M * ldc;
          float *A = malloc(na * 4), *B = malloc(nb * 4), *C = malloc(nc * 4), *R = malloc(nc * 4),
                *C0 = malloc(nc * 4);
          for (size_t i = 0; i < na; i++) A[i] = fl_rng_normal(&r);
          for (size_t i = 0; i < nb; i++) B[i] = fl_rng_normal(&r);
          for (size_t i = 0; i < nc; i++) C[i] = R[i] = C0[i] = fl_rng_normal(&r);
          fl__cpu_gemm(ta, tb, M, N, K, ab[k][0], A, lda, B, ldb, ab[k][1], C, ldc);
          fl__ref_gemm(ta, tb, M, N, K, ab[k][0], A, lda, B, ldb, ab[k][1], R, ldc);
          int bad = 0, pad_touched = 0;
          for (int i = 0; i < M; i++) {
            for (int j = 0; j < N; j++) {
              double s = 0;
              for (int q = 0; q < K; q++) {
                float a = ta ? A[(size_t)q * lda + i] : A[(size_t)i * lda + q];
                float b = tb ? B[(size_t)j * ldb + q] : B[(size_t)q * ldb + j];
                s += fabs((double)a * b);
              }
              double c0 = C0[(size_t)i * ldc + j];   /* C before the product */
              double scale = fabs(ab[k][0]) * s + fabs(ab[k][1]) * fabs(c0) + 1e-30;
              double e = fabs((double)C[(size_t)i * ldc + j] - R[(size_t)i * ldc + j]) / scale;
              if (e > worst) worst = e;
              bad += e > 1e-6;
            }
            for (int j = N; j < ldc; j++) pad_touched += C[(size_t)i * ldc + j] != R[(size_t)i * ldc + j];
          }
          EXPECTF(bad == 0 && pad_touched == 0, "gemm ta=%d tb=%d M=%d N=%d K=%d alpha=%g beta=%g: "
                  "%d elements off, %d padding elements written", ta, tb, M, N, K, ab[k][0], ab[k][1],
                  bad, pad_touched);
          free(A); free(B); free(C); free(R); free(C0);
        }
  if (getenv("FL_TEST_VERBOSE")) printf("  gemm vs reference: max err / (|alpha| sum|a*b| + |beta c|) %.3g\n", worst);
}

int main(void) {
  RUN(test_matmul);
  RUN(test_matmul_wide);
  RUN(test_linear_bias);
  RUN(test_linear_nobias);
  RUN(test_add_row);
  RUN(test_mul_outer);
  RUN(test_sub_3d);
  RUN(test_add_same);
  RUN(test_sub_same);
  RUN(test_mul_same);
  RUN(test_mul_bcast_left);
  RUN(test_relu);
  RUN(test_sum);
  RUN(test_mean);
  RUN(test_log_softmax);
  RUN(test_cross_entropy);
  RUN(test_log_softmax_offset);
  RUN(test_cross_entropy_offset);
  RUN(test_mse);
  RUN(test_mlp);
  RUN(test_log_softmax_extremes);
  RUN(test_gemm_vs_reference);
  RUN(test_gemm_threads_same_bits);
  return test_summary();
}
