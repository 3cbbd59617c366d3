/* Internal: the kernel table every device implements. Ops in src/core/ops.c check shapes,
 * allocate results in the graph and call these with raw pointers on the tensors' device.
 *
 * Conventions: row-major; n/M/N are element counts; `acc` = 0 overwrites the output, 1 adds to
 * it (gradients accumulate). Scalars that come from other kernels (the loss gradient) are
 * passed as device pointers so the GPU never waits for the host. Every reduction runs in a
 * fixed order, so results are bitwise reproducible for a given build and thread count.
 * CUDA kernels run on one stream, in order; none of these synchronise except copy to host.
 */
#ifndef FL_BACKEND_H
#define FL_BACKEND_H

#include "fl/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum fl_binop { FL_OP_ADD = 0, FL_OP_SUB = 1, FL_OP_MUL = 2 } fl_binop;

/* The scalars of one Adam / AdamW step, computed on the host in double (as torch does in
 * Python) and rounded to float (as torch hands Python scalars to float kernels). */
typedef struct fl_adam_hyper {
  float wd;             /* Adam's coupled L2: g += wd * p (0 for AdamW) */
  float decay;          /* AdamW's decoupled decay: p *= decay = 1 - lr * wd (1 for Adam) */
  float beta1, one_minus_beta1, beta2, one_minus_beta2;
  float bc2_sqrt;       /* sqrt(1 - beta2^t) */
  float eps;
  float neg_step_size;  /* -lr / (1 - beta1^t) */
} fl_adam_hyper;

/* The scalars of one SGD-with-momentum step (torch.optim.SGD's rule). */
typedef struct fl_sgd_hyper {
  float lr, wd, mom;
  float one_minus_dampening;
  int nesterov;
  int first;            /* 1: the buffer is set to the gradient (torch's first step) */
} fl_sgd_hyper;

/* The scalars of one step of 12_accel_sgd's RMSProp or Adam (the notebook's own optimisers). */
typedef struct fl_nb_hyper {
  float decay;          /* the notebook's reg_step: p *= decay = 1 - lr * wd (1 without wd) */
  float beta1, one_minus_beta1;   /* Adam's avg (unused when m is NULL: RMSProp) */
  float beta2, one_minus_beta2;   /* sqr_avg's (RMSProp's sqr_mom) */
  float bc1, bc2;       /* Adam's bias corrections 1 - beta^(i+1) (1, 1 for RMSProp) */
  float eps, lr;
  int eps_inside;       /* 1: Adam's sqrt(v / bc2 + eps); 0: RMSProp's sqrt(v) + eps */
  int first_v;          /* 1: v starts as g * g (RMSProp's first step), 0: v as it is */
} fl_nb_hyper;

/* A 2-d convolution's geometry: x (N,C,H,W), w (O,C,k,k), y (N,O,Ho,Wo), NCHW contiguous. */
typedef struct fl_conv_shape {
  int N, C, H, W, O, k, stride, pad, Ho, Wo;
} fl_conv_shape;

typedef struct fl_backend {
  const char *name;
  /* ---- memory ---- */
  void *(*alloc)(size_t bytes);                 /* NULL on out of memory; zero not promised */
  void (*free)(void *p);                        /* accepts NULL */
  void (*memset0)(void *p, size_t bytes);
  /* copies within this device, or between host and this device (`to_host`/`from_host`) */
  void (*copy)(void *dst, const void *src, size_t bytes);
  void (*to_host)(void *host_dst, const void *src, size_t bytes);     /* synchronises */
  void (*from_host)(void *dst, const void *host_src, size_t bytes);
  void (*fill)(float *x, float v, size_t n);

  /* ---- matrix product, row-major:
   * C[M,N] = alpha * op(A) * op(B) + beta * C, op(A) is [M,K] (A stored [K,M] when ta),
   * op(B) is [K,N] (B stored [N,K] when tb); lda/ldb/ldc are row strides as stored. */
  void (*gemm)(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
               const float *B, int ldb, float beta, float *C, int ldc);

  /* ---- elementwise, broadcasting: out is contiguous with shape[ndim]; sa/sb are a's and b's
   * strides mapped onto out's shape (0 on broadcast dims). */
  void (*binary)(fl_binop op, int ndim, const int64_t *shape, float *out, const float *a,
                 const int64_t *sa, const float *b, const int64_t *sb);
  /* dst (+)= src summed onto dst: src contiguous with shape[ndim]; ds = dst's strides mapped
   * onto that shape (0 where dst is broadcast). dst is contiguous with numel dst_n. */
  void (*reduce_to)(float *dst, size_t dst_n, const int64_t *ds, int ndim, const int64_t *shape,
                    const float *src, int acc);
  /* y[M,N] += b[N] (broadcast over rows) */
  void (*bias_add)(float *y, const float *b, int M, int N);
  /* y[M,N] = max(y + b[N], 0): Linear's bias and the ReLU after it in one pass */
  void (*bias_relu)(float *y, const float *b, int M, int N);
  /* gpre = gy * (y > 0) (overwritten), then gb[N] (+)= column sums of gpre (gb may be NULL) */
  void (*relu_bias_grad)(float *gpre, float *gb, const float *gy, const float *y, int M, int N, int acc);
  /* gb[N] (+)= sum over rows of gy[M,N] */
  void (*bias_grad)(float *gb, const float *gy, int M, int N, int acc);
  void (*relu_fwd)(float *y, const float *x, size_t n);
  /* gx (+)= gy * (y > 0) */
  void (*relu_bwd)(float *gx, const float *gy, const float *y, size_t n, int acc);
  /* out[0] = scale * sum(x) */
  void (*sum)(float *out, const float *x, size_t n, float scale);
  /* gx (+)= gout[0] * scale (the backward of sum / mean) */
  void (*sum_bwd)(float *gx, const float *gout, float scale, size_t n, int acc);
  /* y = x - logsumexp(x) per row */
  void (*log_softmax_fwd)(float *y, const float *x, int M, int N);
  /* gx (+)= gy - exp(y) * sum(gy) per row */
  void (*log_softmax_bwd)(float *gx, const float *gy, const float *y, int M, int N, int acc);
  /* loss[0] = mean over rows of (lse - x[t]); lse[M] kept for the backward */
  void (*xent_fwd)(float *loss, float *lse, const float *x, const int32_t *t, int M, int N);
  /* gx (+)= gloss[0] / M * (softmax(x) - onehot(t)) */
  void (*xent_bwd)(float *gx, const float *gloss, const float *x, const float *lse,
                   const int32_t *t, int M, int N, int acc);
  /* loss[0] = mean((p - t)^2) ; gp (+)= gloss[0] * 2 (p - t) / n */
  void (*mse_fwd)(float *loss, const float *p, const float *t, size_t n);
  void (*mse_bwd)(float *gp, const float *gloss, const float *p, const float *t, size_t n, int acc);

  /* ---- optimiser ---- */
  /* p -= lr * (g + wd * p) */
  void (*sgd_step)(float *p, const float *g, float lr, float wd, size_t n);
  /* x *= s */
  void (*scale)(float *x, float s, size_t n);
  /* Adam / AdamW over n elements, in this order, each value rounded to float:
   *   g' = g + wd * p;  p = p * decay;
   *   m = m * beta1 + one_minus_beta1 * g';  v = v * beta2 + (one_minus_beta2 * g') * g';
   *   p = p + neg_step_size * (m / (sqrt(v) / bc2_sqrt + eps))
   * (m: exp_avg, v: exp_avg_sq, same layout as p). */
  void (*adam_step)(float *p, const float *g, float *m, float *v, const fl_adam_hyper *h, size_t n);
  /* SGD with momentum (torch.optim.SGD) over n elements:
   *   d = g + wd * p;  buf = first ? d : buf * mom + one_minus_dampening * d;
   *   d = nesterov ? d + mom * buf : buf;  p = p - lr * d */
  void (*sgd_mom_step)(float *p, const float *g, float *buf, const fl_sgd_hyper *h, size_t n);
  /* 12_accel_sgd's RMSProp (m NULL) and Adam over n elements, each value rounded to float:
   *   p = p * decay;  a = m ? m * beta1 + one_minus_beta1 * g : g;  g2 = g * g;
   *   v = (first_v ? g2 : v) * beta2 + g2 * one_minus_beta2;
   *   p = p - (lr * (a / bc1)) / (eps_inside ? sqrt(v / bc2 + eps) : sqrt(v / bc2) + eps) */
  void (*nb_adam_step)(float *p, const float *g, float *m, float *v, const fl_nb_hyper *h, size_t n);

  /* ---- metrics, accumulated on the device (read back once per epoch) ---- */
  /* acc[0] += count of rows where argmax(x[row]) == t[row]; acc[1] += M */
  void (*argmax_correct)(double *acc, const float *x, const int32_t *t, int M, int N);
  /* acc[0] += w * sum(x[0..n)) ; acc[1] += w * n  (n weighted values) */
  void (*mean_update)(double *acc, const float *x, size_t n, double w);
  /* 1 if any element of x is NaN or inf (a sync on the GPU) */
  int (*nonfinite)(const float *x, size_t n);

  /* ---- data: gather dataset rows into a batch on this device ----
   * out[i, :] = (float)src[idx[i] * row + j] / div  (division, as PyTorch's x / 255.)
   * yout[i] = ysrc[idx[i]]; idx is on this device. */
  void (*gather_xy)(float *out, int32_t *yout, const uint8_t *src, const int32_t *ysrc,
                    const int32_t *idx, int B, int row, float div);

  /* ---- conv-net kernels (issue 7). NCHW contiguous; `acc` as above. A NULL entry: not
   * implemented on that device (the CUDA table has none yet): the op then returns NULL with
   * fl_error(FL_ERR_DEVICE, "fl_conv2d: not implemented on CUDA yet"). ---- */
  /* y = conv(x, w) + b (b may be NULL) */
  void (*conv2d_fwd)(const fl_conv_shape *s, float *y, const float *x, const float *w, const float *b);
  /* gx (+)= conv_transpose(gy, w) */
  void (*conv2d_bwd_data)(const fl_conv_shape *s, float *gx, const float *gy, const float *w, int acc);
  /* gw (+)= d(conv)/dw . gy (gw may be NULL), gb (+)= sums of gy over N, Ho, Wo (gb may be NULL) */
  void (*conv2d_bwd_weights)(const fl_conv_shape *s, float *gw, float *gb, const float *gy,
                             const float *x, int acc_w, int acc_b);
  /* Batch norm of x viewed as (N, C, S). training: mean / biased variance of each channel over
   * N*S, saved to mean[C] and invstd[C] (1/sqrt(var + eps)), and run_mean / run_var updated
   * with the unbiased variance; else normalised with run_mean / run_var (mean, invstd still
   * written, from the running stats, for the backward). w, b may be NULL (1 and 0). */
  void (*bn_fwd)(float *y, float *mean, float *invstd, const float *x, const float *w,
                 const float *b, float *run_mean, float *run_var, int N, int C, int S,
                 int training, float momentum, float eps);
  /* The backward of bn_fwd: gx (training: through the batch statistics), gw = sum gy*xhat,
   * gb = sum gy; any of gx, gw, gb may be NULL; acc_* per output. */
  void (*bn_bwd)(float *gx, float *gw, float *gb, const float *gy, const float *x, const float *w,
                 const float *mean, const float *invstd, int N, int C, int S, int training,
                 int acc_x, int acc_w, int acc_b);
  /* k x k average pooling, stride k, over NC planes of H x W into Ho x Wo (Ho > H/k: ceil mode,
   * the edge windows average only the elements inside). */
  void (*avg_pool_fwd)(float *y, const float *x, int NC, int H, int W, int k, int Ho, int Wo);
  void (*avg_pool_bwd)(float *gx, const float *gy, int NC, int H, int W, int k, int Ho, int Wo, int acc);
  /* y[NC] = mean of each plane of S elements ; gx (+)= gy[plane] / S */
  void (*global_pool_fwd)(float *y, const float *x, int NC, int S);
  void (*global_pool_bwd)(float *gx, const float *gy, int NC, int S, int acc);
  /* y = min(leaky_relu(x, leak) - sub, maxv) ; gx (+)= gy * d/dx (from x) */
  void (*general_relu_fwd)(float *y, const float *x, size_t n, float leak, float sub, float maxv);
  void (*general_relu_bwd)(float *gx, const float *gy, const float *x, size_t n, float leak,
                           float sub, float maxv, int acc);
  /* mask[i] = keep (u_i >= p, u_i from fl_rng_hash(seed, counter, i)); y = keep ? x * scale : 0 ;
   * gx (+)= mask ? gy * scale : 0 */
  void (*dropout_fwd)(float *y, uint8_t *mask, const float *x, size_t n, float p, float scale,
                      uint64_t seed, uint64_t counter);
  void (*dropout_bwd)(float *gx, const float *gy, const uint8_t *mask, size_t n, float scale, int acc);

  /* ---- errors and ordering ----
   * Kernels return nothing; a failing launch or library call is remembered (the first one,
   * naming the call) and reported by status(): FL_OK or FL_ERR_DEVICE / FL_ERR_NOMEM with
   * fl_error's reason set. Cheap (no sync): the learner calls it once per batch. */
  fl_status (*status)(void);
  void (*sync)(void);                           /* waits for queued work */
} fl_backend;

extern const fl_backend fl_backend_cpu;
/* The CUDA table; NULL when there is no usable GPU or the build has no CUDA backend (the
 * reason: fl_backend_cuda_reason()). Loads the CUDA plugin on first use (dispatch.c). */
const fl_backend *fl_backend_cuda(void);
/* The table for a device; aborts if that backend is not built in. */
const fl_backend *fl_backend_for(fl_device d);

/* ---- the CUDA backend as a separately loaded part ----
 * CUDA builds put the CUDA backend (src/backend/cuda/, linked against cudart + cuBLAS) in its
 * own shared library, libflexlearn_cuda.so. The core (dispatch.c) dlopens it only when a CUDA
 * driver with at least one device is present, so CPU-only runs never map the CUDA runtime.
 * The plugin exports one function, FL_CUDA_PLUGIN_ENTRY, returning a static fl_cuda_plugin.
 * `abi` stays the first field forever; the core refuses a plugin whose abi or sizes differ
 * from its own. Bump FL_CUDA_PLUGIN_ABI whenever fl_backend's or fl_cuda_plugin's layout or
 * meaning changes. */
#define FL_CUDA_PLUGIN_ABI 4   /* 2: Adam/SGD-momentum steps; 3: the conv-net kernels (issue 7); 4: nb_adam_step (issue 8) */
#define FL_CUDA_PLUGIN_ENTRY "fl__cuda_plugin"
#define FL_CUDA_PLUGIN_NAME "libflexlearn_cuda.so"

/* The core's fl_error, lent to the plugin (which links nothing of the core). */
typedef fl_status (*fl_error_fn)(fl_status code, const char *fmt, ...);

typedef struct fl_cuda_plugin {
  uint32_t abi;                 /* FL_CUDA_PLUGIN_ABI the plugin was built with */
  uint32_t size;                /* sizeof(fl_cuda_plugin) */
  uint32_t backend_size;        /* sizeof(fl_backend) */
  /* Sets the device up, once (later calls return the first answer; thread-safe): 1 when the
   * backend is usable, 0 with reason() saying why. `error` (the core's fl_error, kept from the
   * first call) is how the plugin records fl_last_error() on the caller's thread. */
  int (*available)(fl_error_fn error);
  const fl_backend *(*backend)(void);   /* the table once available() returned 1, else NULL */
  const char *(*reason)(void);          /* why not available (static storage) */
} fl_cuda_plugin;
typedef const fl_cuda_plugin *(*fl_cuda_plugin_entry)(void);

/* Test-only (tests/test_plugin.c): must be called before the first fl_cuda_available() /
 * fl_backend_cuda() / fl_backend_cuda_reason() of the process, else it aborts.
 * FL__CUDA_NO_DRIVER_PROBE: go straight to loading the plugin, as if a driver with a device
 * were present (exercises the plugin search on a machine without a GPU);
 * FL__CUDA_WRONG_ABI: expect FL_CUDA_PLUGIN_ABI + 1, so any plugin counts as stale.
 * No effect in builds without CUDA. */
enum { FL__CUDA_NO_DRIVER_PROBE = 1, FL__CUDA_WRONG_ABI = 2 };
void fl__cuda_test_flags(unsigned flags);

#ifdef __cplusplus
}
#endif

#endif
