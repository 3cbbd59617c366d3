/* The CPU kernel table: oneDNN for matrix products (gemm_dnnl.c), plain C loops for the rest.
 *
 * The tails of the lesson's model are small (B x 50, B x 10), so these loops are single
 * threaded and written so that the compiler vectorises them; every reduction runs in a fixed
 * order (bitwise reproducible whatever the thread count). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "backend/cpu/gemm.h"
#include "backend/cpu/cnn.h"

static void *cpu_alloc(size_t bytes) {
  void *p = NULL;
  if (posix_memalign(&p, 64, bytes ? (bytes + 63) & ~(size_t)63 : 64)) return NULL;
  return p;
}
static void cpu_free(void *p) { free(p); }
static void cpu_memset0(void *p, size_t n) { if (n) memset(p, 0, n); }
static void cpu_copy(void *d, const void *s, size_t n) { if (n && d != s) memmove(d, s, n); }

static void cpu_fill(float *x, float v, size_t n) {
  for (size_t i = 0; i < n; i++) x[i] = v;
}

/* Walks the multi-index of a contiguous `shape` and calls body with the two mapped offsets. */
#define FOR_INDEX(ndim, shape, sa, sb, body)                                            \
  do {                                                                                  \
    int64_t ix__[FL_MAX_DIMS] = {0};                                                    \
    int64_t n__ = 1;                                                                    \
    for (int d__ = 0; d__ < (ndim); d__++) n__ *= (shape)[d__];                         \
    int64_t oa = 0, ob = 0;                                                             \
    for (int64_t i = 0; i < n__; i++) {                                                 \
      body;                                                                             \
      for (int d__ = (ndim)-1; d__ >= 0; d__--) {                                       \
        ix__[d__]++; oa += (sa)[d__]; ob += (sb)[d__];                                  \
        if (ix__[d__] < (shape)[d__]) break;                                            \
        oa -= (sa)[d__] * ix__[d__]; ob -= (sb)[d__] * ix__[d__]; ix__[d__] = 0;        \
      }                                                                                 \
    }                                                                                   \
  } while (0)

static void cpu_binary(fl_binop op, int ndim, const int64_t *shape, float *out, const float *a,
                       const int64_t *sa, const float *b, const int64_t *sb) {
  switch (op) {
    case FL_OP_ADD: FOR_INDEX(ndim, shape, sa, sb, out[i] = a[oa] + b[ob]); break;
    case FL_OP_SUB: FOR_INDEX(ndim, shape, sa, sb, out[i] = a[oa] - b[ob]); break;
    case FL_OP_MUL: FOR_INDEX(ndim, shape, sa, sb, out[i] = a[oa] * b[ob]); break;
  }
}

static void cpu_reduce_to(float *dst, size_t dst_n, const int64_t *ds, int ndim,
                          const int64_t *shape, const float *src, int acc) {
  if (!acc) memset(dst, 0, dst_n * sizeof *dst);
  int64_t zero[FL_MAX_DIMS] = {0};
  FOR_INDEX(ndim, shape, ds, zero, dst[oa] += src[i]; (void)ob);
}

static void cpu_bias_add(float *restrict y, const float *restrict b, int M, int N) {
  for (int i = 0; i < M; i++)
    for (int j = 0; j < N; j++) y[(size_t)i * N + j] += b[j];
}

static void cpu_bias_grad(float *restrict gb, const float *restrict gy, int M, int N, int acc) {
  if (!acc) memset(gb, 0, (size_t)N * sizeof *gb);
  for (int i = 0; i < M; i++)   /* rows in order: a fixed summation order */
    for (int j = 0; j < N; j++) gb[j] += gy[(size_t)i * N + j];
}

static void cpu_bias_relu(float *restrict y, const float *restrict b, int M, int N) {
  for (int i = 0; i < M; i++)
    for (int j = 0; j < N; j++) {
      float v = y[(size_t)i * N + j] + b[j];
      y[(size_t)i * N + j] = v > 0.0f ? v : 0.0f;
    }
}

static void cpu_relu_bias_grad(float *restrict gpre, float *gb, const float *restrict gy,
                               const float *restrict y, int M, int N,
                               int acc) {
  for (size_t i = 0; i < (size_t)M * N; i++) gpre[i] = y[i] > 0.0f ? gy[i] : 0.0f;
  if (gb) cpu_bias_grad(gb, gpre, M, N, acc);
}

static void cpu_relu_fwd(float *y, const float *x, size_t n) {
  for (size_t i = 0; i < n; i++) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

static void cpu_relu_bwd(float *restrict gx, const float *restrict gy, const float *restrict y,
                         size_t n, int acc) {
  if (acc)
    for (size_t i = 0; i < n; i++) gx[i] += y[i] > 0.0f ? gy[i] : 0.0f;
  else
    for (size_t i = 0; i < n; i++) gx[i] = y[i] > 0.0f ? gy[i] : 0.0f;
}

static void cpu_sum(float *out, const float *x, size_t n, float scale) {
  double s = 0;
  for (size_t i = 0; i < n; i++) s += x[i];
  out[0] = (float)(s * scale);
}

static void cpu_sum_bwd(float *gx, const float *gout, float scale, size_t n, int acc) {
  float v = gout[0] * scale;
  if (acc)
    for (size_t i = 0; i < n; i++) gx[i] += v;
  else
    for (size_t i = 0; i < n; i++) gx[i] = v;
}

/* logsumexp of a row as max + log(sum exp(x - max)): returns log(sum), the max in *m.
 * Callers form (x - m) - log(sum), not x - (m + log(sum)): with logits far from 0 the
 * rounding of m + log(sum) would cost up to ulp(|m|)/2 in every log-probability. */
static float row_lse(const float *x, int N, float *m_out) {
  float m = -INFINITY;
  for (int j = 0; j < N; j++) m = x[j] > m ? x[j] : m;
  *m_out = m;
  if (m == -INFINITY) return 0.0f;
  float s = 0;
  for (int j = 0; j < N; j++) s += expf(x[j] - m);
  return logf(s);
}

static void cpu_log_softmax_fwd(float *y, const float *x, int M, int N) {
  for (int i = 0; i < M; i++) {
    const float *xr = x + (size_t)i * N;
    float m, l = row_lse(xr, N, &m);
    for (int j = 0; j < N; j++) y[(size_t)i * N + j] = (xr[j] - m) - l;
  }
}

static void cpu_log_softmax_bwd(float *gx, const float *gy, const float *y, int M, int N, int acc) {
  for (int i = 0; i < M; i++) {
    const float *g = gy + (size_t)i * N, *yr = y + (size_t)i * N;
    float *o = gx + (size_t)i * N;
    float s = 0;
    for (int j = 0; j < N; j++) s += g[j];
    for (int j = 0; j < N; j++) {
      float v = g[j] - expf(yr[j]) * s;
      o[j] = acc ? o[j] + v : v;
    }
  }
}

static void cpu_xent_fwd(float *loss, float *lse, const float *x, const int32_t *t, int M, int N) {
  double s = 0;
  for (int i = 0; i < M; i++) {
    FL_CHECK(t[i] >= 0 && t[i] < N, "cross_entropy: target %d of row %d is outside [0, %d)", t[i], i, N);
    const float *xr = x + (size_t)i * N;
    float m, l = row_lse(xr, N, &m);
    lse[i] = m + l;
    s += (double)(l - (xr[t[i]] - m));
  }
  loss[0] = M ? (float)(s / M) : NAN;
}

static void cpu_xent_bwd(float *gx, const float *gloss, const float *x, const float *lse,
                         const int32_t *t, int M, int N, int acc) {
  float k = gloss[0] / (float)M;
  for (int i = 0; i < M; i++) {
    const float *xr = x + (size_t)i * N;
    float *o = gx + (size_t)i * N;
    for (int j = 0; j < N; j++) {
      float v = (expf(xr[j] - lse[i]) - (j == t[i] ? 1.0f : 0.0f)) * k;
      o[j] = acc ? o[j] + v : v;
    }
  }
}

static void cpu_mse_fwd(float *loss, const float *p, const float *t, size_t n) {
  double s = 0;
  for (size_t i = 0; i < n; i++) {
    float d = p[i] - t[i];
    s += (double)(d * d);
  }
  loss[0] = n ? (float)(s / (double)n) : NAN;
}

static void cpu_mse_bwd(float *gp, const float *gloss, const float *p, const float *t, size_t n, int acc) {
  float k = 2.0f * gloss[0] / (float)n;
  for (size_t i = 0; i < n; i++) {
    float v = (p[i] - t[i]) * k;
    gp[i] = acc ? gp[i] + v : v;
  }
}

static void cpu_sgd_step(float *restrict p, const float *restrict g, float lr, float wd, size_t n) {
  if (wd != 0.0f)
    for (size_t i = 0; i < n; i++) p[i] -= lr * (g[i] + wd * p[i]);
  else
    for (size_t i = 0; i < n; i++) p[i] -= lr * g[i];
}

static void cpu_scale(float *x, float s, size_t n) {
  for (size_t i = 0; i < n; i++) x[i] *= s;
}

/* torch.optim.Adam / AdamW's single-tensor update, one element at a time (backend.h) */
static void cpu_adam_step(float *restrict p, const float *restrict g, float *restrict m,
                          float *restrict v, const fl_adam_hyper *h, size_t n) {
  const fl_adam_hyper k = *h;
  for (size_t i = 0; i < n; i++) {
    float gi = k.wd != 0.0f ? g[i] + k.wd * p[i] : g[i];
    float pi = p[i] * k.decay;
    float mi = m[i] * k.beta1 + k.one_minus_beta1 * gi;
    float vi = v[i] * k.beta2 + (k.one_minus_beta2 * gi) * gi;
    float denom = sqrtf(vi) / k.bc2_sqrt + k.eps;
    p[i] = pi + k.neg_step_size * (mi / denom);
    m[i] = mi;
    v[i] = vi;
  }
}

/* torch.optim.SGD with momentum (backend.h) */
static void cpu_sgd_mom_step(float *restrict p, const float *restrict g, float *restrict buf,
                             const fl_sgd_hyper *h, size_t n) {
  const fl_sgd_hyper k = *h;
  for (size_t i = 0; i < n; i++) {
    float d = k.wd != 0.0f ? g[i] + k.wd * p[i] : g[i];
    float b = k.first ? d : buf[i] * k.mom + k.one_minus_dampening * d;
    buf[i] = b;
    d = k.nesterov ? d + k.mom * b : b;
    p[i] -= k.lr * d;
  }
}

/* 12_accel_sgd's RMSProp / Adam (backend.h) */
static void cpu_nb_adam_step(float *restrict p, const float *restrict g, float *restrict m, float *restrict v,
                             const fl_nb_hyper *h, size_t n) {
  const fl_nb_hyper k = *h;
  for (size_t i = 0; i < n; i++) {
    const float pi = p[i] * k.decay;
    const float a = m ? m[i] * k.beta1 + k.one_minus_beta1 * g[i] : g[i];
    const float g2 = g[i] * g[i];
    const float vi = (k.first_v ? g2 : v[i]) * k.beta2 + g2 * k.one_minus_beta2;
    const float uv = vi / k.bc2;
    const float den = k.eps_inside ? sqrtf(uv + k.eps) : sqrtf(uv) + k.eps;
    p[i] = pi - (k.lr * (a / k.bc1)) / den;
    if (m) m[i] = a;
    v[i] = vi;
  }
}

static void cpu_argmax_correct(double *acc, const float *x, const int32_t *t, int M, int N) {
  int64_t c = 0;
  for (int i = 0; i < M; i++) {
    const float *xr = x + (size_t)i * N;
    int best = 0;
    for (int j = 1; j < N; j++) if (xr[j] > xr[best]) best = j;
    c += best == t[i];
  }
  acc[0] += (double)c;
  acc[1] += M;
}

static void cpu_mean_update(double *acc, const float *x, size_t n, double w) {
  double s = 0;
  for (size_t i = 0; i < n; i++) s += x[i];
  acc[0] += w * s;
  acc[1] += w * (double)n;
}

static int cpu_nonfinite(const float *x, size_t n) {
  for (size_t i = 0; i < n; i++) if (!isfinite(x[i])) return 1;
  return 0;
}

/* The plain reference gather (a table of the 256 quotients). The host DataLoader has its own
 * vectorised, prefetching copy that splits rows over the pool (src/data/dataloader.c); the
 * tests hold the two to the same bits. */
static void cpu_gather_xy(float *out, int32_t *yout, const uint8_t *src, const int32_t *ysrc,
                          const int32_t *idx, int B, int row, float div) {
  float lut[256];
  for (int v = 0; v < 256; v++) lut[v] = (float)v / div;
  for (int i = 0; i < B; i++) {
    const uint8_t *s = src + (size_t)idx[i] * row;
    float *o = out + (size_t)i * row;
    for (int j = 0; j < row; j++) o[j] = lut[s[j]];
    yout[i] = ysrc[idx[i]];
  }
}

static fl_status cpu_status(void) { return FL_OK; }
static void cpu_sync(void) {}

const fl_backend fl_backend_cpu = {
    .name = "cpu",
    .alloc = cpu_alloc,
    .free = cpu_free,
    .memset0 = cpu_memset0,
    .copy = cpu_copy,
    .to_host = cpu_copy,
    .from_host = cpu_copy,
    .fill = cpu_fill,
    .gemm = fl__cpu_gemm,
    .binary = cpu_binary,
    .reduce_to = cpu_reduce_to,
    .bias_add = cpu_bias_add,
    .bias_grad = cpu_bias_grad,
    .bias_relu = cpu_bias_relu,
    .relu_bias_grad = cpu_relu_bias_grad,
    .relu_fwd = cpu_relu_fwd,
    .relu_bwd = cpu_relu_bwd,
    .sum = cpu_sum,
    .sum_bwd = cpu_sum_bwd,
    .log_softmax_fwd = cpu_log_softmax_fwd,
    .log_softmax_bwd = cpu_log_softmax_bwd,
    .xent_fwd = cpu_xent_fwd,
    .xent_bwd = cpu_xent_bwd,
    .mse_fwd = cpu_mse_fwd,
    .mse_bwd = cpu_mse_bwd,
    .sgd_step = cpu_sgd_step,
    .scale = cpu_scale,
    .adam_step = cpu_adam_step,
    .sgd_mom_step = cpu_sgd_mom_step,
    .nb_adam_step = cpu_nb_adam_step,
    .argmax_correct = cpu_argmax_correct,
    .mean_update = cpu_mean_update,
    .nonfinite = cpu_nonfinite,
    .gather_xy = cpu_gather_xy,
#ifdef FL_NO_DNNL   /* the plain C loops */
    .conv2d_fwd = fl__ref_conv2d_fwd,
    .conv2d_bwd_data = fl__ref_conv2d_bwd_data,
    .conv2d_bwd_weights = fl__ref_conv2d_bwd_weights,
    .avg_pool_fwd = fl__ref_avg_pool_fwd,
    .avg_pool_bwd = fl__ref_avg_pool_bwd,
#else               /* oneDNN's primitives (conv_dnnl.c) */
    .conv2d_fwd = fl__cpu_conv2d_fwd,
    .conv2d_bwd_data = fl__cpu_conv2d_bwd_data,
    .conv2d_bwd_weights = fl__cpu_conv2d_bwd_weights,
    .avg_pool_fwd = fl__cpu_avg_pool_fwd,
    .avg_pool_bwd = fl__cpu_avg_pool_bwd,
#endif
    .bn_fwd = fl__cpu_bn_fwd,
    .bn_bwd = fl__cpu_bn_bwd,
    .global_pool_fwd = fl__cpu_global_pool_fwd,
    .global_pool_bwd = fl__cpu_global_pool_bwd,
    .general_relu_fwd = fl__cpu_general_relu_fwd,
    .general_relu_bwd = fl__cpu_general_relu_bwd,
    .dropout_fwd = fl__cpu_dropout_fwd,
    .dropout_bwd = fl__cpu_dropout_bwd,
    .status = cpu_status,
    .sync = cpu_sync,
};
