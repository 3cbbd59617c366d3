/* The CUDA backend against the CPU backend, function by function, on the same random inputs
 * (seeded fl_rng). Skips every test where there is no usable GPU (fl_cuda_available() == 0).
 *
 * Tolerances:
 *  - exact (==, so +0 equals -0; NaN equals NaN): memory, fill, binary, bias_add, relu,
 *    sum_bwd, mse_bwd, sgd_step, scale, adam_step, sgd_mom_step, nb_adam_step, gather, argmax_correct. Both backends do the same
 *    IEEE operations in the same order (the CPU is built with -ffp-contract=off, the CUDA
 *    kernels use __fmul_rn / __fadd_rn so nothing is fused into an FMA).
 *  - gemm: max |C_gpu - C_cpu| / max |C_cpu| <= 1e-5 * sqrt(K) (different summation orders,
 *    both FP32; cuBLAS without TF32).
 *  - reductions and exp/log (reduce_to, bias_grad, sum, log_softmax, xent, mse_fwd,
 *    mean_update): max |gpu - cpu| / max |cpu| <= 1e-5 over each output (the GPU sums in a
 *    fixed tree, the CPU in sequence; expf/logf differ by an ulp or two).
 *  - determinism: the same CUDA call twice gives the same bits.
 */
#include <float.h>
#include <stdint.h>

#include "test.h"
#include "backend/backend.h"
#include "fl/core.h"

#define NELEM(a) (sizeof(a) / sizeof *(a))

static const fl_backend *CPU, *GPU;
static fl_rng rng;

static char no_gpu[600];
#define NEED_GPU() do { if (!GPU) SKIP(no_gpu); } while (0)

/* ---- helpers ---- */
static float *hrand(size_t n, float lo, float hi) {
  float *p = malloc((n ? n : 1) * sizeof *p);
  for (size_t i = 0; i < n; i++) p[i] = lo + (hi - lo) * fl_rng_uniform(&rng);
  return p;
}
static int32_t *hlabels(size_t n, int N) {
  int32_t *p = malloc((n ? n : 1) * sizeof *p);
  for (size_t i = 0; i < n; i++) p[i] = (int32_t)fl_rng_below(&rng, (uint64_t)(N > 0 ? N : 1));
  return p;
}
/* A device copy of host memory. */
static void *up(const void *h, size_t bytes) {
  void *d = GPU->alloc(bytes);
  if (d && bytes) GPU->from_host(d, h, bytes);
  return d;
}
static float *down(const void *d, size_t n) {
  float *h = malloc((n ? n : 1) * sizeof *h);
  GPU->to_host(h, d, n * sizeof *h);
  return h;
}

static int same(float a, float b) { return a == b || (isnan(a) && isnan(b)); }

/* Number of mismatches (exact); prints the first. */
static size_t exact_diff(const float *got, const float *ref, size_t n, const char *what) {
  size_t bad = 0;
  for (size_t i = 0; i < n; i++)
    if (!same(got[i], ref[i])) {
      if (!bad) fprintf(stderr, "  %s: [%zu] cuda %.9g, cpu %.9g\n", what, i, got[i], ref[i]);
      bad++;
    }
  return bad;
}

/* max |got - ref| / max |ref| (NaN in one but not the other: infinity). */
static double rel_err(const float *got, const float *ref, size_t n) {
  double e = 0, m = 0;
  for (size_t i = 0; i < n; i++) {
    if (isnan(got[i]) || isnan(ref[i])) {
      if (!(isnan(got[i]) && isnan(ref[i]))) return INFINITY;
      continue;
    }
    e = fmax(e, fabs((double)got[i] - ref[i]));
    m = fmax(m, fabs((double)ref[i]));
  }
  return e == 0 ? 0 : e / fmax(m, FLT_MIN);
}

#define EXPECT_EXACT(got, ref, n, what) do { size_t b__ = exact_diff((got), (ref), (n), (what)); \
  EXPECTF(b__ == 0, "%s: %zu of %zu elements differ", (what), b__, (size_t)(n)); } while (0)
#define EXPECT_REL(got, ref, n, tol, what) do { double e__ = rel_err((got), (ref), (n)); \
  EXPECTF(e__ <= (tol), "%s: relative error %.3g > %.3g", (what), e__, (double)(tol)); } while (0)

/* Strides of a contiguous tensor of shape ash (na dims) mapped onto out's shape (nd dims,
 * right-aligned; 0 where broadcast). */
static void map_strides(int nd, const int64_t *osh, int na, const int64_t *ash, int64_t *s) {
  int64_t st = 1;
  for (int k = nd - 1; k >= 0; k--) {
    int ka = k - (nd - na);
    if (ka < 0) { s[k] = 0; continue; }
    s[k] = (ash[ka] == 1 && osh[k] != 1) ? 0 : st;
    st *= ash[ka];
  }
}
static size_t numel(int nd, const int64_t *sh) {
  size_t n = 1;
  for (int k = 0; k < nd; k++) n *= (size_t)sh[k];
  return n;
}

/* ---- tests ---- */
static void test_available(void) {
  if (!fl_cuda_available()) {
    EXPECT(fl_backend_cuda() == NULL);
    SKIP(no_gpu);
  }
  EXPECT(GPU != NULL && strcmp(GPU->name, "cuda") == 0);
  EXPECT(fl_backend_for(FL_CUDA) == GPU);
  EXPECT(fl_default_device() == FL_CUDA);
  EXPECT(GPU->status() == FL_OK);
}

static void test_memory(void) {
  NEED_GPU();
  const size_t n = 1025;
  float *h = hrand(n, -1, 1);
  float *d = up(h, n * sizeof *h), *d2 = GPU->alloc(n * sizeof *h);
  EXPECT(d && d2);
  GPU->copy(d2, d, n * sizeof *h);
  float *r = down(d2, n);
  EXPECT(memcmp(r, h, n * sizeof *h) == 0);
  free(r);
  GPU->memset0(d2 + 7, 100 * sizeof *h);
  r = down(d2, n);
  for (size_t i = 0; i < n; i++) EXPECT(r[i] == (i >= 7 && i < 107 ? 0.0f : h[i]));
  free(r);
  GPU->fill(d2, 3.5f, n);
  GPU->fill(d2, -1.25f, 0);                     /* n = 0: nothing */
  r = down(d2, n);
  for (size_t i = 0; i < n; i++) EXPECT(r[i] == 3.5f);
  free(r);
  GPU->copy(d2, d, 0);
  GPU->memset0(d2, 0);
  /* uploads from one host buffer rewritten at once after each call (they go through the
   * pinned staging ring, more than its 4 slots), and one larger than a slot (direct) */
  enum { NB = 11 };
  float *bufs[NB], v[64];
  for (int b = 0; b < NB; b++) {
    for (int i = 0; i < 64; i++) v[i] = (float)(b * 100 + i);
    bufs[b] = GPU->alloc(sizeof v);
    GPU->from_host(bufs[b], v, sizeof v);
  }
  for (int b = 0; b < NB; b++) {
    r = down(bufs[b], 64);
    for (int i = 0; i < 64; i++) EXPECTF(r[i] == (float)(b * 100 + i), "upload %d [%d] = %g", b, i, r[i]);
    GPU->free(bufs[b]);
    free(r);
  }
  const size_t big = (size_t)3 << 20;           /* 12 MB */
  float *hb = hrand(big, -1, 1), *db = up(hb, big * 4);
  r = down(db, big);
  EXPECT(memcmp(r, hb, big * 4) == 0);
  GPU->free(db);
  free(hb), free(r);
  GPU->free(d);
  GPU->free(d2);
  GPU->free(NULL);
  free(h);
  EXPECT(GPU->status() == FL_OK);
}

static void gemm_case(int ta, int tb, int M, int N, int K, float alpha, float beta, int pad) {
  int ar = ta ? K : M, ac = ta ? M : K, br = tb ? N : K, bc = tb ? K : N;
  int lda = ac + pad, ldb = bc + pad, ldc = N + pad;
  size_t na = (size_t)ar * lda, nb = (size_t)br * ldb, nc = (size_t)M * ldc;
  float *A = hrand(na, -1, 1), *B = hrand(nb, -1, 1), *C = hrand(nc, -1, 1);
  float *dA = up(A, na * 4), *dB = up(B, nb * 4), *dC = up(C, nc * 4);
  CPU->gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  GPU->gemm(ta, tb, M, N, K, alpha, dA, lda, dB, ldb, beta, dC, ldc);
  float *r = down(dC, nc);
  double e = 0, m = 0;
  for (int i = 0; i < M; i++)
    for (int j = 0; j < ldc; j++) {
      size_t o = (size_t)i * ldc + j;
      if (j >= N) { EXPECT(r[o] == C[o]); continue; }      /* padding untouched */
      e = fmax(e, fabs((double)r[o] - C[o]));
      m = fmax(m, fabs((double)C[o]));
    }
  double rel = e == 0 ? 0 : e / fmax(m, FLT_MIN), tol = 1e-5 * sqrt((double)K);
  EXPECTF(rel <= tol, "gemm ta=%d tb=%d M=%d N=%d K=%d alpha=%g beta=%g pad=%d: rel err %.3g > %.3g",
          ta, tb, M, N, K, alpha, beta, pad, rel, tol);
  GPU->free(dA), GPU->free(dB), GPU->free(dC);
  free(A), free(B), free(C), free(r);
}

static void test_gemm(void) {
  NEED_GPU();
  static const int sz[][3] = {{1, 1, 1}, {7, 5, 3}, {33, 10, 50}, {64, 50, 784},
                              {1025, 7, 13}, {5, 1025, 9}, {256, 10, 50}};
  for (int t = 0; t < 4; t++)
    for (size_t s = 0; s < NELEM(sz); s++) {
      gemm_case(t >> 1, t & 1, sz[s][0], sz[s][1], sz[s][2], 1.0f, 0.0f, 0);
      gemm_case(t >> 1, t & 1, sz[s][0], sz[s][1], sz[s][2], 0.5f, 1.5f, 3);
    }
  for (int t = 0; t < 4; t++) {                 /* K = 0: C = beta * C */
    gemm_case(t >> 1, t & 1, 7, 5, 0, 1.0f, 0.0f, 0);
    gemm_case(t >> 1, t & 1, 7, 5, 0, 0.5f, 1.5f, 3);
  }
  gemm_case(0, 0, 0, 5, 3, 1.0f, 0.0f, 0);      /* M = 0: nothing */
  EXPECT(GPU->status() == FL_OK);
}

typedef struct bcase { int nd; int64_t out[4]; int na; int64_t a[4]; int nb; int64_t b[4]; } bcase;

static void test_binary(void) {
  NEED_GPU();
  static const bcase cs[] = {
      {2, {4, 3}, 2, {4, 3}, 1, {3}},
      {2, {4, 3}, 2, {4, 1}, 2, {1, 3}},
      {3, {2, 3, 4}, 3, {2, 3, 4}, 2, {3, 1}},
      {3, {2, 3, 4}, 2, {3, 1}, 3, {2, 3, 4}},
      {1, {1025}, 1, {1025}, 1, {1025}},
      {1, {7}, 1, {1}, 1, {7}},
      {1, {1}, 1, {1}, 1, {1}},
      {4, {2, 3, 4, 5}, 4, {2, 1, 4, 1}, 3, {3, 1, 5}},
      {4, {3, 1, 7, 2}, 4, {3, 1, 7, 2}, 1, {2}},
      {2, {0, 3}, 2, {0, 3}, 1, {3}},
  };
  for (size_t c = 0; c < NELEM(cs); c++)
    for (int op = 0; op < 3; op++) {
      const bcase *k = &cs[c];
      int64_t sa[4], sb[4];
      map_strides(k->nd, k->out, k->na, k->a, sa);
      map_strides(k->nd, k->out, k->nb, k->b, sb);
      size_t n = numel(k->nd, k->out), na = numel(k->na, k->a), nb = numel(k->nb, k->b);
      float *a = hrand(na, -2, 2), *b = hrand(nb, -2, 2), *o = hrand(n, 0, 1);
      float *da = up(a, na * 4), *db = up(b, nb * 4), *dout = GPU->alloc(n * 4);
      CPU->binary((fl_binop)op, k->nd, k->out, o, a, sa, b, sb);
      GPU->binary((fl_binop)op, k->nd, k->out, dout, da, sa, db, sb);
      float *r = down(dout, n);
      char what[64];
      snprintf(what, sizeof what, "binary case %zu op %d", c, op);
      EXPECT_EXACT(r, o, n, what);
      GPU->free(da), GPU->free(db), GPU->free(dout);
      free(a), free(b), free(o), free(r);
    }
  EXPECT(GPU->status() == FL_OK);
}

typedef struct rcase { int nd; int64_t src[4]; int ndst; int64_t dst[4]; } rcase;

static void test_reduce_to(void) {
  NEED_GPU();
  static const rcase cs[] = {
      {2, {4, 3}, 1, {3}},         {2, {4, 3}, 2, {4, 1}},
      {3, {2, 3, 4}, 2, {3, 1}},   {1, {1025}, 1, {1}},
      {2, {7, 5}, 2, {7, 5}},      {4, {2, 3, 4, 5}, 3, {3, 1, 5}},
      {2, {1025, 50}, 1, {50}},    {2, {3, 1025}, 2, {3, 1}},
      {4, {2, 3, 4, 5}, 1, {1}},   {3, {5, 1, 7}, 2, {1, 7}},
      {2, {0, 3}, 1, {3}},
  };
  for (size_t c = 0; c < NELEM(cs); c++)
    for (int acc = 0; acc < 2; acc++) {
      const rcase *k = &cs[c];
      int64_t ds[4];
      map_strides(k->nd, k->src, k->ndst, k->dst, ds);
      size_t n = numel(k->nd, k->src), dn = numel(k->ndst, k->dst);
      float *s = hrand(n, -1, 1), *d = hrand(dn, -1, 1);
      float *dsrc = up(s, n * 4), *ddst = up(d, dn * 4);
      CPU->reduce_to(d, dn, ds, k->nd, k->src, s, acc);
      GPU->reduce_to(ddst, dn, ds, k->nd, k->src, dsrc, acc);
      float *r = down(ddst, dn);
      char what[64];
      snprintf(what, sizeof what, "reduce_to case %zu acc %d", c, acc);
      EXPECT_REL(r, d, dn, 1e-5, what);
      GPU->free(dsrc), GPU->free(ddst);
      free(s), free(d), free(r);
    }
  EXPECT(GPU->status() == FL_OK);
}

static const int Ms[] = {0, 1, 7, 1025};

static void test_bias(void) {
  NEED_GPU();
  static const int Ns[] = {1, 10, 33, 50};
  for (size_t a = 0; a < NELEM(Ms); a++)
    for (size_t b = 0; b < NELEM(Ns); b++) {
      int M = Ms[a], N = Ns[b];
      size_t n = (size_t)M * N;
      char what[64];
      float *y = hrand(n, -1, 1), *bias = hrand(N, -1, 1);
      float *dy = up(y, n * 4), *db = up(bias, N * 4);
      CPU->bias_add(y, bias, M, N);
      GPU->bias_add(dy, db, M, N);
      float *r = down(dy, n);
      snprintf(what, sizeof what, "bias_add M=%d N=%d", M, N);
      EXPECT_EXACT(r, y, n, what);
      free(r);
      for (int acc = 0; acc < 2; acc++) {
        float *gb = hrand(N, -1, 1);
        float *dgb = up(gb, N * 4);
        CPU->bias_grad(gb, y, M, N, acc);
        GPU->bias_grad(dgb, dy, M, N, acc);
        r = down(dgb, N);
        snprintf(what, sizeof what, "bias_grad M=%d N=%d acc=%d", M, N, acc);
        EXPECT_REL(r, gb, N, 1e-5, what);
        GPU->free(dgb);
        free(gb), free(r);
      }
      GPU->free(dy), GPU->free(db);
      free(y), free(bias);
    }
  EXPECT(GPU->status() == FL_OK);
}

static const size_t ns[] = {0, 1, 7, 1025, 100000};

static void test_relu(void) {
  NEED_GPU();
  for (size_t c = 0; c < NELEM(ns); c++) {
    size_t n = ns[c];
    char what[64];
    float *x = hrand(n, -1, 1), *y = hrand(n, 0, 1);
    for (size_t i = 0; i < n; i += 5) x[i] = 0.0f;         /* the boundary */
    float *dx = up(x, n * 4), *dyv = GPU->alloc(n * 4);
    CPU->relu_fwd(y, x, n);
    GPU->relu_fwd(dyv, dx, n);
    float *r = down(dyv, n);
    snprintf(what, sizeof what, "relu_fwd n=%zu", n);
    EXPECT_EXACT(r, y, n, what);
    free(r);
    for (int acc = 0; acc < 2; acc++) {
      float *gy = hrand(n, -1, 1), *gx = hrand(n, -1, 1);
      float *dgy = up(gy, n * 4), *dgx = up(gx, n * 4);
      CPU->relu_bwd(gx, gy, y, n, acc);
      GPU->relu_bwd(dgx, dgy, dyv, n, acc);
      r = down(dgx, n);
      snprintf(what, sizeof what, "relu_bwd n=%zu acc=%d", n, acc);
      EXPECT_EXACT(r, gx, n, what);
      GPU->free(dgy), GPU->free(dgx);
      free(gy), free(gx), free(r);
    }
    GPU->free(dx), GPU->free(dyv);
    free(x), free(y);
  }
  EXPECT(GPU->status() == FL_OK);
}

static void test_sum(void) {
  NEED_GPU();
  for (size_t c = 0; c < NELEM(ns); c++) {
    size_t n = ns[c];
    char what[64];
    float *x = hrand(n, -1, 1);
    float *dx = up(x, n * 4), *dout = GPU->alloc(4);
    for (int k = 0; k < 2; k++) {
      float scale = k ? 1.0f / (float)(n ? n : 1) : 1.0f, out = 42.0f;
      CPU->sum(&out, x, n, scale);
      GPU->sum(dout, dx, n, scale);
      float *r = down(dout, 1);
      snprintf(what, sizeof what, "sum n=%zu scale=%g", n, scale);
      EXPECT_REL(r, &out, 1, 1e-5, what);
      free(r);
    }
    float gout = 0.37f;
    float *dgout = up(&gout, 4);
    for (int acc = 0; acc < 2; acc++) {
      float *gx = hrand(n, -1, 1);
      float *dgx = up(gx, n * 4);
      CPU->sum_bwd(gx, &gout, 0.01f, n, acc);
      GPU->sum_bwd(dgx, dgout, 0.01f, n, acc);
      float *r = down(dgx, n);
      snprintf(what, sizeof what, "sum_bwd n=%zu acc=%d", n, acc);
      EXPECT_EXACT(r, gx, n, what);
      GPU->free(dgx);
      free(gx), free(r);
    }
    GPU->free(dx), GPU->free(dout), GPU->free(dgout);
    free(x);
  }
  EXPECT(GPU->status() == FL_OK);
}

static const int Cs[] = {1, 10, 33, 100};

static void test_log_softmax(void) {
  NEED_GPU();
  for (size_t a = 0; a < NELEM(Ms); a++)
    for (size_t b = 0; b < NELEM(Cs); b++) {
      int M = Ms[a], N = Cs[b];
      size_t n = (size_t)M * N;
      char what[64];
      float *x = hrand(n, -5, 5), *y = hrand(n, 0, 1);
      float *dx = up(x, n * 4), *dyv = GPU->alloc(n * 4);
      CPU->log_softmax_fwd(y, x, M, N);
      GPU->log_softmax_fwd(dyv, dx, M, N);
      float *r = down(dyv, n);
      snprintf(what, sizeof what, "log_softmax_fwd M=%d N=%d", M, N);
      EXPECT_REL(r, y, n, 1e-5, what);
      free(r);
      for (int acc = 0; acc < 2; acc++) {
        float *gy = hrand(n, -1, 1), *gx = hrand(n, -1, 1);
        float *dgy = up(gy, n * 4), *dgx = up(gx, n * 4);
        CPU->log_softmax_bwd(gx, gy, y, M, N, acc);
        GPU->log_softmax_bwd(dgx, dgy, dyv, M, N, acc);
        r = down(dgx, n);
        snprintf(what, sizeof what, "log_softmax_bwd M=%d N=%d acc=%d", M, N, acc);
        EXPECT_REL(r, gx, n, 1e-5, what);
        GPU->free(dgy), GPU->free(dgx);
        free(gy), free(gx), free(r);
      }
      GPU->free(dx), GPU->free(dyv);
      free(x), free(y);
    }
  EXPECT(GPU->status() == FL_OK);
}

static void test_xent(void) {
  NEED_GPU();
  for (size_t a = 0; a < NELEM(Ms); a++)
    for (size_t b = 0; b < NELEM(Cs); b++) {
      int M = Ms[a], N = Cs[b];
      size_t n = (size_t)M * N;
      char what[64];
      float *x = hrand(n, -5, 5), *lse = hrand(M, 0, 1), loss = 42.0f;
      int32_t *t = hlabels(M, N);
      float *dx = up(x, n * 4), *dlse = GPU->alloc(M * 4), *dloss = GPU->alloc(4);
      int32_t *dt = up(t, M * 4);
      CPU->xent_fwd(&loss, lse, x, t, M, N);
      GPU->xent_fwd(dloss, dlse, dx, dt, M, N);
      float *r = down(dloss, 1), *rl = down(dlse, M);
      snprintf(what, sizeof what, "xent_fwd loss M=%d N=%d", M, N);
      EXPECT_REL(r, &loss, 1, 1e-5, what);
      snprintf(what, sizeof what, "xent_fwd lse M=%d N=%d", M, N);
      EXPECT_REL(rl, lse, M, 1e-5, what);
      free(r), free(rl);
      float gloss = 0.73f;
      float *dgloss = up(&gloss, 4);
      for (int acc = 0; acc < 2; acc++) {
        float *gx = hrand(n, -1, 1);
        float *dgx = up(gx, n * 4);
        /* both from the CPU's lse, so only the kernel is compared */
        float *dl = up(lse, M * 4);
        CPU->xent_bwd(gx, &gloss, x, lse, t, M, N, acc);
        GPU->xent_bwd(dgx, dgloss, dx, dl, dt, M, N, acc);
        r = down(dgx, n);
        snprintf(what, sizeof what, "xent_bwd M=%d N=%d acc=%d", M, N, acc);
        EXPECT_REL(r, gx, n, 1e-5, what);
        GPU->free(dgx), GPU->free(dl);
        free(gx), free(r);
      }
      GPU->free(dx), GPU->free(dlse), GPU->free(dloss), GPU->free(dt), GPU->free(dgloss);
      free(x), free(lse), free(t);
    }
  EXPECT(GPU->status() == FL_OK);
}

static void test_mse(void) {
  NEED_GPU();
  for (size_t c = 0; c < NELEM(ns); c++) {
    size_t n = ns[c];
    char what[64];
    float *p = hrand(n, -1, 1), *t = hrand(n, -1, 1), loss = 42.0f;
    float *dp = up(p, n * 4), *dt = up(t, n * 4), *dloss = GPU->alloc(4);
    CPU->mse_fwd(&loss, p, t, n);
    GPU->mse_fwd(dloss, dp, dt, n);
    float *r = down(dloss, 1);
    snprintf(what, sizeof what, "mse_fwd n=%zu", n);
    EXPECT_REL(r, &loss, 1, 1e-5, what);
    free(r);
    float gloss = 1.0f;
    float *dgloss = up(&gloss, 4);
    for (int acc = 0; acc < 2; acc++) {
      float *gp = hrand(n, -1, 1);
      float *dgp = up(gp, n * 4);
      CPU->mse_bwd(gp, &gloss, p, t, n, acc);
      GPU->mse_bwd(dgp, dgloss, dp, dt, n, acc);
      r = down(dgp, n);
      snprintf(what, sizeof what, "mse_bwd n=%zu acc=%d", n, acc);
      EXPECT_EXACT(r, gp, n, what);
      GPU->free(dgp);
      free(gp), free(r);
    }
    GPU->free(dp), GPU->free(dt), GPU->free(dloss), GPU->free(dgloss);
    free(p), free(t);
  }
  EXPECT(GPU->status() == FL_OK);
}

static void test_sgd_scale(void) {
  NEED_GPU();
  for (size_t c = 0; c < NELEM(ns); c++) {
    size_t n = ns[c];
    char what[64];
    for (int k = 0; k < 2; k++) {
      float wd = k ? 1e-2f : 0.0f;
      float *p = hrand(n, -1, 1), *g = hrand(n, -1, 1);
      float *dp = up(p, n * 4), *dg = up(g, n * 4);
      CPU->sgd_step(p, g, 0.1f, wd, n);
      GPU->sgd_step(dp, dg, 0.1f, wd, n);
      float *r = down(dp, n);
      snprintf(what, sizeof what, "sgd_step n=%zu wd=%g", n, wd);
      EXPECT_EXACT(r, p, n, what);
      free(r);
      CPU->scale(g, 0.85f, n);
      GPU->scale(dg, 0.85f, n);
      r = down(dg, n);
      snprintf(what, sizeof what, "scale n=%zu", n);
      EXPECT_EXACT(r, g, n, what);
      GPU->free(dp), GPU->free(dg);
      free(p), free(g), free(r);
    }
  }
  EXPECT(GPU->status() == FL_OK);
}

/* Adam / AdamW and SGD with momentum: three steps on the same state, every value (weights and
 * the state buffers) exactly the CPU's (sqrt and division are correctly rounded on both). */
static void test_adam_sgd_mom(void) {
  NEED_GPU();
  for (size_t c = 0; c < NELEM(ns); c++) {
    size_t n = ns[c];
    char what[96];
    for (int k = 0; k < 2; k++) {   /* k = 0: AdamW (decoupled decay), 1: Adam (L2) */
      float *p = hrand(n, -1, 1), *g = hrand(n, -1, 1), *m = hrand(n, -1, 1), *v = hrand(n, 0, 1);
      float *dp = up(p, n * 4), *dg = up(g, n * 4), *dm = up(m, n * 4), *dv = up(v, n * 4);
      for (int t = 1; t <= 3; t++) {
        double lr = 1e-2, wd = 0.05, b1 = 0.9 - 0.02 * t, b2 = 0.999;
        fl_adam_hyper h = {k ? (float)wd : 0.0f, k ? 1.0f : (float)(1 - lr * wd), (float)b1, (float)(1 - b1),
                           (float)b2, (float)(1 - b2), (float)sqrt(1 - pow(b2, t)), 1e-8f,
                           (float)-(lr / (1 - pow(b1, t)))};
        CPU->adam_step(p, g, m, v, &h, n);
        GPU->adam_step(dp, dg, dm, dv, &h, n);
      }
      float *r = down(dp, n), *rm = down(dm, n), *rv = down(dv, n);
      snprintf(what, sizeof what, "adam_step n=%zu %s", n, k ? "Adam" : "AdamW");
      EXPECT_EXACT(r, p, n, what);
      EXPECT_EXACT(rm, m, n, what);
      EXPECT_EXACT(rv, v, n, what);
      free(r), free(rm), free(rv);
      /* SGD with momentum on the same buffers: first step, then two more (nesterov when k) */
      for (int t = 0; t < 3; t++) {
        fl_sgd_hyper h = {0.05f, k ? 0.01f : 0.0f, 0.9f, k ? 1.0f : 0.9f, k, t == 0};
        CPU->sgd_mom_step(p, g, m, &h, n);
        GPU->sgd_mom_step(dp, dg, dm, &h, n);
      }
      r = down(dp, n), rm = down(dm, n);
      snprintf(what, sizeof what, "sgd_mom_step n=%zu nesterov=%d", n, k);
      EXPECT_EXACT(r, p, n, what);
      EXPECT_EXACT(rm, m, n, what);
      free(r), free(rm);
      GPU->free(dp), GPU->free(dg), GPU->free(dm), GPU->free(dv);
      free(p), free(g), free(m), free(v);
    }
  }
  EXPECT(GPU->status() == FL_OK);
}

/* 12_accel_sgd's RMSProp (m NULL, first step v = g^2) and Adam (eps inside the sqrt), with and
 * without the decoupled decay: three steps, weights and state exactly the CPU's. */
static void test_nb_adam_step(void) {
  NEED_GPU();
  for (size_t c = 0; c < NELEM(ns); c++) {
    size_t n = ns[c];
    char what[96];
    for (int k = 0; k < 4; k++) {   /* bit 0: Adam (else RMSProp), bit 1: wd */
      int adam = k & 1;
      float *p = hrand(n, -1, 1), *g = hrand(n, -1, 1), *m = hrand(n, -1, 1), *v = hrand(n, 0, 1);
      float *dp = up(p, n * 4), *dg = up(g, n * 4), *dm = up(m, n * 4), *dv = up(v, n * 4);
      for (int t = 1; t <= 3; t++) {
        double lr = 6e-3, wd = k & 2 ? 0.1 : 0, b1 = 0.9, b2 = 0.99;
        fl_nb_hyper h = {(float)(1 - lr * wd), (float)b1, (float)(1 - b1), (float)b2, (float)(1 - b2),
                         adam ? (float)(1 - pow(b1, t)) : 1.0f, adam ? (float)(1 - pow(b2, t)) : 1.0f,
                         adam ? 1e-2f : 1e-5f, (float)lr, adam, !adam && t == 1};
        CPU->nb_adam_step(p, g, adam ? m : NULL, v, &h, n);
        GPU->nb_adam_step(dp, dg, adam ? dm : NULL, dv, &h, n);
      }
      float *r = down(dp, n), *rm = down(dm, n), *rv = down(dv, n);
      snprintf(what, sizeof what, "nb_adam_step n=%zu %s%s", n, adam ? "Adam" : "RMSProp", k & 2 ? " wd" : "");
      EXPECT_EXACT(r, p, n, what);
      EXPECT_EXACT(rm, m, n, what);
      EXPECT_EXACT(rv, v, n, what);
      free(r), free(rm), free(rv);
      GPU->free(dp), GPU->free(dg), GPU->free(dm), GPU->free(dv);
      free(p), free(g), free(m), free(v);
    }
  }
  EXPECT(GPU->status() == FL_OK);
}

static void test_argmax_correct(void) {
  NEED_GPU();
  static const int Ns[] = {1, 10, 33};
  for (size_t a = 0; a < NELEM(Ms); a++)
    for (size_t b = 0; b < NELEM(Ns); b++) {
      int M = Ms[a], N = Ns[b];
      size_t n = (size_t)M * N;
      float *x = hrand(n, 0, 4);
      for (size_t i = 0; i < n; i++) x[i] = floorf(x[i]);  /* many ties: first max wins */
      int32_t *t = hlabels(M, N);
      double acc[2] = {3, 5}, racc[2];
      float *dx = up(x, n * 4);
      int32_t *dt = up(t, M * 4);
      double *dacc = up(acc, sizeof acc);
      for (int rep = 0; rep < 2; rep++) {     /* accumulates */
        CPU->argmax_correct(acc, x, t, M, N);
        GPU->argmax_correct(dacc, dx, dt, M, N);
      }
      GPU->to_host(racc, dacc, sizeof racc);
      EXPECTF(racc[0] == acc[0] && racc[1] == acc[1],
              "argmax_correct M=%d N=%d: cuda {%g, %g}, cpu {%g, %g}", M, N, racc[0], racc[1],
              acc[0], acc[1]);
      GPU->free(dx), GPU->free(dt), GPU->free(dacc);
      free(x), free(t);
    }
  EXPECT(GPU->status() == FL_OK);
}

static void test_mean_update(void) {
  NEED_GPU();
  for (size_t c = 0; c < NELEM(ns); c++) {
    size_t n = ns[c];
    float *x = hrand(n, -1, 2);
    double acc[2] = {1, 2}, racc[2];
    float *dx = up(x, n * 4);
    double *dacc = up(acc, sizeof acc);
    CPU->mean_update(acc, x, n, 0.5);
    GPU->mean_update(dacc, dx, n, 0.5);
    CPU->mean_update(acc, x, n, 64);
    GPU->mean_update(dacc, dx, n, 64);
    GPU->to_host(racc, dacc, sizeof racc);
    EXPECTF(fabs(racc[0] - acc[0]) <= 1e-5 * fmax(fabs(acc[0]), DBL_MIN) && racc[1] == acc[1],
            "mean_update n=%zu: cuda {%.17g, %g}, cpu {%.17g, %g}", n, racc[0], racc[1], acc[0],
            acc[1]);
    GPU->free(dx), GPU->free(dacc);
    free(x);
  }
  EXPECT(GPU->status() == FL_OK);
}

static void test_nonfinite(void) {
  NEED_GPU();
  const size_t n = 100000;
  float *x = hrand(n, -1e30f, 1e30f);
  float *dx = up(x, n * 4);
  EXPECT(GPU->nonfinite(dx, n) == 0);
  EXPECT(GPU->nonfinite(dx, 0) == 0);
  const float bad[3] = {NAN, INFINITY, -INFINITY};
  const size_t at[3] = {n - 1, 0, 4097};
  for (int k = 0; k < 3; k++) {
    GPU->from_host(dx + at[k], &bad[k], 4);
    EXPECTF(GPU->nonfinite(dx, n) == 1, "nonfinite missed %g at %zu", bad[k], at[k]);
    EXPECT(GPU->nonfinite(dx, at[k]) == 0);             /* the elements before it */
    GPU->from_host(dx + at[k], &x[at[k]], 4);
  }
  EXPECT(GPU->nonfinite(dx, n) == 0);
  GPU->free(dx);
  free(x);
  EXPECT(GPU->status() == FL_OK);
}

static void test_gather(void) {
  NEED_GPU();
  const int rows = 300, row = 784;
  static const int Bs[] = {0, 1, 64, 1025};
  uint8_t *src = malloc((size_t)rows * row);
  int32_t *ysrc = malloc(rows * sizeof *ysrc);
  for (size_t i = 0; i < (size_t)rows * row; i++) src[i] = (uint8_t)fl_rng_below(&rng, 256);
  for (int i = 0; i < rows; i++) ysrc[i] = (int32_t)fl_rng_below(&rng, 10);
  uint8_t *dsrc = up(src, (size_t)rows * row);
  int32_t *dysrc = up(ysrc, rows * sizeof *ysrc);
  for (size_t c = 0; c < NELEM(Bs); c++) {
    int B = Bs[c];
    size_t n = (size_t)B * row;
    int32_t *idx = hlabels(B, rows);
    float *out = hrand(n, 0, 1);
    int32_t *y = malloc((B ? B : 1) * sizeof *y), *ry = malloc((B ? B : 1) * sizeof *ry);
    int32_t *didx = up(idx, B * 4), *dy = GPU->alloc(B * 4);
    float *dout = GPU->alloc(n * 4);
    CPU->gather_xy(out, y, src, ysrc, idx, B, row, 255.0f);
    GPU->gather_xy(dout, dy, dsrc, dysrc, didx, B, row, 255.0f);
    float *r = down(dout, n);
    char what[64];
    snprintf(what, sizeof what, "gather_xy B=%d", B);
    EXPECT_EXACT(r, out, n, what);
    GPU->to_host(ry, dy, B * 4);
    EXPECT(B == 0 || memcmp(ry, y, B * 4) == 0);
    GPU->free(didx), GPU->free(dy), GPU->free(dout);
    free(idx), free(out), free(y), free(ry), free(r);
  }
  GPU->free(dsrc), GPU->free(dysrc);
  free(src), free(ysrc);
  EXPECT(GPU->status() == FL_OK);
}

/* Runs `call` (writing n floats at dst) twice and expects the same bits. */
#define TWICE_SAME(dst, n, call) do { \
    call; float *r1__ = down((dst), (n)); \
    call; float *r2__ = down((dst), (n)); \
    EXPECTF(memcmp(r1__, r2__, (n) * sizeof(float)) == 0, "not deterministic: %s", #call); \
    free(r1__), free(r2__); } while (0)

static void test_determinism(void) {
  NEED_GPU();
  const int M = 1025, K = 784, N = 50;
  float *x = hrand((size_t)M * K, -1, 1), *w = hrand((size_t)N * K, -1, 1);
  float *dx = up(x, (size_t)M * K * 4), *dw = up(w, (size_t)N * K * 4);
  float *dy = GPU->alloc((size_t)M * N * 4), *dg = GPU->alloc((size_t)N * K * 4);
  float *db = GPU->alloc(N * 4), *ds = GPU->alloc(4), *dl = GPU->alloc(M * 4);
  int32_t *t = hlabels(M, 10), *dt = up(t, M * 4);
  TWICE_SAME(dy, (size_t)M * N, GPU->gemm(0, 1, M, N, K, 1.0f, dx, K, dw, K, 0.0f, dy, N));
  TWICE_SAME(dg, (size_t)N * K, GPU->gemm(1, 0, N, K, M, 1.0f, dy, N, dx, K, 0.0f, dg, K));
  TWICE_SAME(db, (size_t)N, GPU->bias_grad(db, dy, M, N, 0));
  int64_t shape[2] = {M, N}, rds[2] = {0, 1};
  TWICE_SAME(db, (size_t)N, GPU->reduce_to(db, N, rds, 2, shape, dy, 0));
  TWICE_SAME(ds, 1, GPU->sum(ds, dx, (size_t)M * K, 1.0f / (M * K)));
  TWICE_SAME(ds, 1, GPU->mse_fwd(ds, dx, dx + 1, (size_t)M * K - 1));
  TWICE_SAME(ds, 1, GPU->xent_fwd(ds, dl, dy, dt, M, 10));
  TWICE_SAME(ds, 1, GPU->xent_fwd(ds, dl, dy, dt, M / 10, 100));
  TWICE_SAME(dy, (size_t)M * N, GPU->log_softmax_bwd(dy, dx, dx + 7, M, N, 0));
  GPU->free(dx), GPU->free(dw), GPU->free(dy), GPU->free(dg), GPU->free(db), GPU->free(ds);
  GPU->free(dl), GPU->free(dt);
  free(x), free(w), free(t);
  EXPECT(GPU->status() == FL_OK);
}

static void test_out_of_memory(void) {
  NEED_GPU();
  fl_error(FL_OK, "%s", "");
  void *p = GPU->alloc((size_t)1 << 50);
  EXPECT(p == NULL);
  EXPECTF(strstr(fl_last_error(), "out of device memory") != NULL, "reason: %s", fl_last_error());
  GPU->free(p);
  /* not sticky: the device is still usable */
  EXPECT(GPU->status() == FL_OK);
  float *d = GPU->alloc(64 * 4);
  EXPECT(d != NULL);
  GPU->fill(d, 2.0f, 64);
  float *r = down(d, 64);
  for (int i = 0; i < 64; i++) EXPECT(r[i] == 2.0f);
  GPU->free(d);
  free(r);
  EXPECT(GPU->status() == FL_OK);
}

/* Last: a failing library call is remembered (sticky) and named. */
static void test_sticky_error(void) {
  NEED_GPU();
  float *d = GPU->alloc(64 * 4);
  GPU->sync();
  EXPECT(GPU->status() == FL_OK);
  /* ldb < N for an untransposed B: cuBLAS rejects it (CUBLAS_STATUS_INVALID_VALUE) */
  GPU->gemm(0, 0, 4, 4, 4, 1.0f, d, 4, d, 2, 0.0f, d, 4);
  fl_error(FL_OK, "%s", "");
  EXPECT(GPU->status() == FL_ERR_DEVICE);
  EXPECTF(strstr(fl_last_error(), "cublasSgemm") != NULL, "reason: %s", fl_last_error());
  GPU->fill(d, 1.0f, 64);                        /* later calls do not replace the first error */
  EXPECT(GPU->status() == FL_ERR_DEVICE);
  EXPECTF(strstr(fl_last_error(), "cublasSgemm") != NULL, "reason: %s", fl_last_error());
  GPU->free(d);
}

int main(void) {
  CPU = &fl_backend_cpu;
  GPU = fl_backend_cuda();
  snprintf(no_gpu, sizeof no_gpu, "no usable CUDA device (%s)", fl_backend_cuda_reason());
  rng = fl_rng_make(1234, FL_STREAM_USER);
  RUN(test_available);
  RUN(test_memory);
  RUN(test_gemm);
  RUN(test_binary);
  RUN(test_reduce_to);
  RUN(test_bias);
  RUN(test_relu);
  RUN(test_sum);
  RUN(test_log_softmax);
  RUN(test_xent);
  RUN(test_mse);
  RUN(test_sgd_scale);
  RUN(test_adam_sgd_mom);
  RUN(test_nb_adam_step);
  RUN(test_argmax_correct);
  RUN(test_mean_update);
  RUN(test_nonfinite);
  RUN(test_gather);
  RUN(test_determinism);
  RUN(test_out_of_memory);
  RUN(test_sticky_error);
  return test_summary();
}
