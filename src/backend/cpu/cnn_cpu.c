/* The CPU conv-net kernels that are plain C (both builds): batch norm, global average pooling,
 * GeneralRelu, dropout, the convolution's bias gradient; and the plain convolution and average
 * pooling (fl__ref_*), which the DNNL=0 build runs and the tests compare oneDNN with.
 *
 * Determinism: every sum runs in a fixed order that does not depend on the thread count. The
 * threads split independent outputs only (channels for batch norm, planes for pooling,
 * elements for the activations); a channel's statistics are summed by one thread, each
 * contiguous run of S elements in 8 fixed lanes (vectorisable) added into a double total. */
#include <math.h>
#include <string.h>

#include "backend/cpu/cnn.h"

#define PAR_MIN 65536   /* elementwise work below this runs on one thread */

/* sum of x[0..n) in 8 fixed lanes, in double */
static double seg_sum(const float *x, int n) {
  double l[8] = {0};
  int i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; j++) l[j] += x[i + j];
  double s = 0;
  for (; i < n; i++) s += x[i];
  return s + ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]));
}

/* the sum of x and of x^2 over x[0..n), each in 8 fixed lanes, in double, in one pass */
static void seg_sum_sq(const float *x, int n, double *sum, double *sq) {
  double l[8] = {0}, q[8] = {0};
  int i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; j++) {
      double v = x[i + j];
      l[j] += v;
      q[j] += v * v;
    }
  double s = 0, t = 0;
  for (; i < n; i++) s += x[i], t += (double)x[i] * x[i];
  *sum += s + ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]));
  *sq += t + ((q[0] + q[1]) + (q[2] + q[3])) + ((q[4] + q[5]) + (q[6] + q[7]));
}

static double seg_dot_dev(const float *g, const float *x, int n, double m) {
  double l[8] = {0};
  int i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; j++) l[j] += (double)g[i + j] * (x[i + j] - m);
  double s = 0;
  for (; i < n; i++) s += (double)g[i] * (x[i] - m);
  return s + ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]));
}

/* ---------------------------------------------------------------- batch norm */

void fl__cpu_bn_fwd(float *y, float *mean, float *invstd, const float *x, const float *w,
                    const float *b, float *run_mean, float *run_var, int N, int C, int S,
                    int training, float momentum, float eps) {
  const double M = (double)N * S;
#pragma omp parallel for schedule(static) if ((size_t)N * C * S >= PAR_MIN)
  for (int c = 0; c < C; c++) {
    double m, var;
    if (training) {
      /* one pass: sum and sum of squares in double. var = (sum x^2 - M mean^2) / M loses
       * about log2(mean^2 / var) of double's 53 bits: exact to float precision unless
       * |mean| > 1e4 std, which a network's activations are not. */
      double s = 0, sq = 0;
      for (int n = 0; n < N; n++) seg_sum_sq(x + ((size_t)n * C + c) * S, S, &s, &sq);
      m = s / M;
      double q = sq - s * m;   /* the sum of squared deviations */
      if (q < 0) q = 0;
      var = q / M;
      run_mean[c] = (float)((1.0 - momentum) * run_mean[c] + momentum * m);
      run_var[c] = (float)((1.0 - momentum) * run_var[c] + momentum * (M > 1 ? q / (M - 1) : var));
    } else {
      m = run_mean[c];
      var = run_var[c];
    }
    float is = (float)(1.0 / sqrt(var + eps)), mf = (float)m;
    mean[c] = mf;
    invstd[c] = is;
    float a = w ? w[c] : 1.0f, bb = b ? b[c] : 0.0f;
    for (int n = 0; n < N; n++) {
      const float *xs = x + ((size_t)n * C + c) * S;
      float *ys = y + ((size_t)n * C + c) * S;
      for (int i = 0; i < S; i++) ys[i] = (xs[i] - mf) * is * a + bb;
    }
  }
}

void fl__cpu_bn_bwd(float *gx, float *gw, float *gb, const float *gy, const float *x, const float *w,
                    const float *mean, const float *invstd, int N, int C, int S, int training,
                    int acc_x, int acc_w, int acc_b) {
  const double M = (double)N * S;
#pragma omp parallel for schedule(static) if ((size_t)N * C * S >= PAR_MIN)
  for (int c = 0; c < C; c++) {
    double sg = 0, sgx = 0;   /* sum gy, sum gy * (x - mean) */
    for (int n = 0; n < N; n++) {
      const size_t o = ((size_t)n * C + c) * S;
      sg += seg_sum(gy + o, S);
      sgx += seg_dot_dev(gy + o, x + o, S, mean[c]);
    }
    const double is = invstd[c];
    if (gw) gw[c] = (float)(sgx * is) + (acc_w ? gw[c] : 0.0f);
    if (gb) gb[c] = (float)sg + (acc_b ? gb[c] : 0.0f);
    if (!gx) continue;
    const float a = (float)((w ? w[c] : 1.0f) * is), mf = mean[c];
    /* training: gx = a * (gy - mean(gy) - xhat * mean(gy * xhat)) ; eval: gx = a * gy */
    const float k1 = training ? (float)(sg / M) : 0.0f;
    const float k2 = training ? (float)(sgx * is * is / M) : 0.0f;
    for (int n = 0; n < N; n++) {
      const size_t o = ((size_t)n * C + c) * S;
      for (int i = 0; i < S; i++) {
        float v = a * (gy[o + i] - k1 - (x[o + i] - mf) * k2);
        gx[o + i] = acc_x ? gx[o + i] + v : v;
      }
    }
  }
}

/* ---------------------------------------------------------------- pooling */

void fl__cpu_global_pool_fwd(float *y, const float *x, int NC, int S) {
#pragma omp parallel for schedule(static) if ((size_t)NC * S >= PAR_MIN)
  for (int p = 0; p < NC; p++) y[p] = (float)(seg_sum(x + (size_t)p * S, S) / S);
}

void fl__cpu_global_pool_bwd(float *gx, const float *gy, int NC, int S, int acc) {
#pragma omp parallel for schedule(static) if ((size_t)NC * S >= PAR_MIN)
  for (int p = 0; p < NC; p++) {
    float v = gy[p] / (float)S, *g = gx + (size_t)p * S;
    if (acc)
      for (int i = 0; i < S; i++) g[i] += v;
    else
      for (int i = 0; i < S; i++) g[i] = v;
  }
}

void fl__ref_avg_pool_fwd(float *y, const float *x, int NC, int H, int W, int k, int Ho, int Wo) {
#pragma omp parallel for schedule(static) if ((size_t)NC * H * W >= PAR_MIN)
  for (int p = 0; p < NC; p++) {
    const float *xp = x + (size_t)p * H * W;
    for (int i = 0; i < Ho; i++)
      for (int j = 0; j < Wo; j++) {
        int h1 = (i + 1) * k < H ? (i + 1) * k : H, w1 = (j + 1) * k < W ? (j + 1) * k : W;
        float s = 0;
        for (int h = i * k; h < h1; h++)
          for (int w = j * k; w < w1; w++) s += xp[(size_t)h * W + w];
        y[((size_t)p * Ho + i) * Wo + j] = s / (float)((h1 - i * k) * (w1 - j * k));
      }
  }
}

void fl__ref_avg_pool_bwd(float *gx, const float *gy, int NC, int H, int W, int k, int Ho, int Wo, int acc) {
#pragma omp parallel for schedule(static) if ((size_t)NC * H * W >= PAR_MIN)
  for (int p = 0; p < NC; p++) {
    float *gp = gx + (size_t)p * H * W;
    for (int h = 0; h < H; h++)
      for (int w = 0; w < W; w++) {
        int i = h / k, j = w / k;
        float v = 0.0f;
        if (i < Ho && j < Wo) {   /* rows / columns past the last window get nothing */
          int h1 = (i + 1) * k < H ? (i + 1) * k : H, w1 = (j + 1) * k < W ? (j + 1) * k : W;
          v = gy[((size_t)p * Ho + i) * Wo + j] / (float)((h1 - i * k) * (w1 - j * k));
        }
        gp[(size_t)h * W + w] = acc ? gp[(size_t)h * W + w] + v : v;
      }
  }
}

/* ---------------------------------------------------------------- convolution (plain) */

void fl__ref_conv2d_fwd(const fl_conv_shape *s, float *y, const float *x, const float *w, const float *b) {
  const int C = s->C, H = s->H, W = s->W, O = s->O, k = s->k, st = s->stride, pd = s->pad;
  const int Ho = s->Ho, Wo = s->Wo;
#pragma omp parallel for schedule(static) collapse(2)
  for (int n = 0; n < s->N; n++)
    for (int o = 0; o < O; o++) {
      float *yp = y + ((size_t)n * O + o) * Ho * Wo;
      for (int i = 0; i < Ho; i++)
        for (int j = 0; j < Wo; j++) {
          double acc = b ? b[o] : 0.0;
          for (int c = 0; c < C; c++) {
            const float *xp = x + ((size_t)n * C + c) * H * W, *wp = w + ((size_t)o * C + c) * k * k;
            for (int u = 0; u < k; u++) {
              int h = i * st - pd + u;
              if (h < 0 || h >= H) continue;
              for (int v = 0; v < k; v++) {
                int ww = j * st - pd + v;
                if (ww >= 0 && ww < W) acc += (double)xp[(size_t)h * W + ww] * wp[u * k + v];
              }
            }
          }
          yp[(size_t)i * Wo + j] = (float)acc;
        }
    }
}

void fl__ref_conv2d_bwd_data(const fl_conv_shape *s, float *gx, const float *gy, const float *w, int acc) {
  const int C = s->C, H = s->H, W = s->W, O = s->O, k = s->k, st = s->stride, pd = s->pad;
  const int Ho = s->Ho, Wo = s->Wo;
#pragma omp parallel for schedule(static) collapse(2)
  for (int n = 0; n < s->N; n++)
    for (int c = 0; c < C; c++) {
      float *gp = gx + ((size_t)n * C + c) * H * W;
      for (int h = 0; h < H; h++)
        for (int ww = 0; ww < W; ww++) {
          double a = 0;
          for (int o = 0; o < O; o++) {
            const float *gyp = gy + ((size_t)n * O + o) * Ho * Wo, *wp = w + ((size_t)o * C + c) * k * k;
            for (int u = 0; u < k; u++) {
              int t = h + pd - u;   /* = i * st */
              if (t < 0 || t % st || t / st >= Ho) continue;
              for (int v = 0; v < k; v++) {
                int q = ww + pd - v;
                if (q < 0 || q % st || q / st >= Wo) continue;
                a += (double)gyp[(size_t)(t / st) * Wo + q / st] * wp[u * k + v];
              }
            }
          }
          gp[(size_t)h * W + ww] = acc ? gp[(size_t)h * W + ww] + (float)a : (float)a;
        }
    }
}

void fl__cpu_conv_bias_grad(const fl_conv_shape *s, float *gb, const float *gy, int acc) {
  const int O = s->O, S = s->Ho * s->Wo;
#pragma omp parallel for schedule(static) if ((size_t)s->N * O * S >= PAR_MIN)
  for (int o = 0; o < O; o++) {
    double t = 0;
    for (int n = 0; n < s->N; n++) t += seg_sum(gy + ((size_t)n * O + o) * S, S);
    gb[o] = (float)t + (acc ? gb[o] : 0.0f);
  }
}

void fl__ref_conv2d_bwd_weights(const fl_conv_shape *s, float *gw, float *gb, const float *gy,
                                const float *x, int acc_w, int acc_b) {
  const int C = s->C, H = s->H, W = s->W, O = s->O, k = s->k, st = s->stride, pd = s->pad;
  const int Ho = s->Ho, Wo = s->Wo;
  if (gw) {
#pragma omp parallel for schedule(static) collapse(2)
    for (int o = 0; o < O; o++)
      for (int c = 0; c < C; c++)
        for (int u = 0; u < k; u++)
          for (int v = 0; v < k; v++) {
            double a = 0;
            for (int n = 0; n < s->N; n++) {
              const float *gyp = gy + ((size_t)n * O + o) * Ho * Wo, *xp = x + ((size_t)n * C + c) * H * W;
              for (int i = 0; i < Ho; i++) {
                int h = i * st - pd + u;
                if (h < 0 || h >= H) continue;
                for (int j = 0; j < Wo; j++) {
                  int ww = j * st - pd + v;
                  if (ww >= 0 && ww < W) a += (double)gyp[(size_t)i * Wo + j] * xp[(size_t)h * W + ww];
                }
              }
            }
            float *g = gw + (((size_t)o * C + c) * k + u) * k + v;
            *g = acc_w ? *g + (float)a : (float)a;
          }
  }
  if (gb) fl__cpu_conv_bias_grad(s, gb, gy, acc_b);
}

/* ---------------------------------------------------------------- activations */

void fl__cpu_general_relu_fwd(float *y, const float *x, size_t n, float leak, float sub, float maxv) {
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
  for (size_t i = 0; i < n; i++) {
    float v = x[i] > 0.0f ? x[i] : x[i] * leak;
    v -= sub;
    y[i] = v > maxv ? maxv : v;
  }
}

void fl__cpu_general_relu_bwd(float *gx, const float *gy, const float *x, size_t n, float leak,
                              float sub, float maxv, int acc) {
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
  for (size_t i = 0; i < n; i++) {
    float pos = x[i] > 0.0f, v = (pos ? x[i] : x[i] * leak) - sub;
    /* PyTorch: leaky_relu passes gy (x > 0) or gy * leak; clamp_max passes where v <= maxv */
    float g = v <= maxv ? (pos ? gy[i] : gy[i] * leak) : 0.0f;
    gx[i] = acc ? gx[i] + g : g;
  }
}

void fl__cpu_dropout_fwd(float *y, uint8_t *mask, const float *x, size_t n, float p, float scale,
                         uint64_t seed, uint64_t counter) {
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
  for (size_t i = 0; i < n; i++) {
    float u = (float)(fl_rng_hash(seed, counter, i) >> 40) * 0x1.0p-24f;
    uint8_t keep = u >= p;
    mask[i] = keep;
    y[i] = keep ? x[i] * scale : 0.0f;
  }
}

void fl__cpu_dropout_bwd(float *gx, const float *gy, const uint8_t *mask, size_t n, float scale, int acc) {
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
  for (size_t i = 0; i < n; i++) {
    float g = mask[i] ? gy[i] * scale : 0.0f;
    gx[i] = acc ? gx[i] + g : g;
  }
}
