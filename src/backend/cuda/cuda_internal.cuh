/* Internal to the CUDA backend: the module state (one stream, one cuBLAS handle), error
 * recording, launch helpers, and the deterministic reductions the kernels share.
 *
 * Errors: every CUDA / cuBLAS call goes through cu_ok / blas_ok, and every launch through
 * cu_launched. The FIRST failure is kept (sticky) with the call's name, the library's reason
 * and what the backend was doing; status() returns it (FL_ERR_DEVICE, or FL_ERR_NOMEM for
 * an allocation failure inside a library call) and sets fl_last_error() on the caller's thread.
 *
 * Determinism: no float atomics anywhere. Every reduction is a fixed split of the input over
 * threads (thread t takes elements t, t + T, t + 2T, ... in order), then a fixed shuffle /
 * shared-memory tree, so the same inputs and launch shape give the same bits every run.
 * Launch shapes depend only on the sizes of the arguments.
 */
#ifndef FL_CUDA_INTERNAL_CUH
#define FL_CUDA_INTERNAL_CUH

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <stddef.h>
#include <stdint.h>

#include "backend/backend.h"

/* ---- module state (cuda_backend.cu) ---- */
struct fl__cuda_state {
  cudaStream_t stream;      /* every kernel, copy and cuBLAS call runs here, in order */
  cublasHandle_t blas;      /* bound to `stream`, pure FP32 (no TF32) */
  int *d_flag;              /* device scratch: nonfinite's flag */
  int *h_flag;              /* pinned host copy of it */
};
extern fl__cuda_state fl__cu;

/* The core's fl_error (lent by fl_cuda_plugin.available; the plugin links nothing of the
 * core). Sets fl_last_error() on the calling thread. */
extern fl_error_fn fl__cuda_error;
/* Records a failure (the first one is kept) and sets fl_error on this thread. */
void fl__cuda_fail(fl_status code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* 1 when e is cudaSuccess; otherwise records "<call>: <reason> (while <what>)" and returns 0. */
int fl__cuda_ok(cudaError_t e, const char *call, const char *what);
int fl__cuda_blas_ok(cublasStatus_t s, const char *call, const char *what);

#define cu_ok(call, what) fl__cuda_ok((call), #call, (what))
/* After a <<<>>> launch: catches a bad configuration or a missing kernel image (no sync). */
#define cu_launched(what) fl__cuda_ok(cudaGetLastError(), "kernel launch", (what))

/* ---- launch shapes ---- */
enum { CU_THREADS = 256, CU_MAX_BLOCKS = 8192, CU_RED_THREADS = 1024 };

/* Blocks for a grid-stride loop over n items with `per_block` items per block per pass. */
static inline unsigned cu_blocks(size_t n, size_t per_block) {
  size_t b = (n + per_block - 1) / per_block;
  if (b < 1) b = 1;
  return (unsigned)(b > CU_MAX_BLOCKS ? CU_MAX_BLOCKS : b);
}

#ifdef __CUDACC__
#define CU_FULL_MASK 0xffffffffu

/* Grid-stride loop over [0, n) with a size_t index. */
#define CU_FOR(i, n)                                                                     \
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (size_t)(n);        \
       i += (size_t)gridDim.x * blockDim.x)

/* a / b and a % b in 32-bit arithmetic when both fit (64-bit division is slow on the GPU). */
static __device__ __forceinline__ void cu_divmod(size_t a, size_t b, size_t *q, size_t *r) {
  if (((a | b) >> 32) == 0) {
    unsigned qa = (unsigned)a / (unsigned)b;
    *q = qa;
    *r = (unsigned)a - qa * (unsigned)b;
  } else {
    *q = a / b;
    *r = a - *q * b;
  }
}

/* Sum over a warp by shuffles in a fixed order; the total is in lane 0. */
template <typename T>
static __device__ __forceinline__ T cu_warp_sum(T v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(CU_FULL_MASK, v, o);
  return v;
}

/* Sum over the block (blockDim.x a multiple of 32, at most 1024) in a fixed order: each warp
 * by shuffles, then warp 0 over the warps' totals. The total is valid in thread 0 only.
 * Every thread of the block must call it (it has a __syncthreads). */
template <typename T>
static __device__ __forceinline__ T cu_block_sum(T v) {
  __shared__ T part[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = cu_warp_sum(v);
  if (lane == 0) part[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < (int)(blockDim.x >> 5) ? part[lane] : T(0);
    v = cu_warp_sum(v);
  }
  return v;
}

/* Sum / max over a group of G lanes (G = 1: a thread, G = 32: a warp) by an xor butterfly:
 * every lane of the group ends with the same bits (a + b == b + a exactly in IEEE). */
template <int G>
static __device__ __forceinline__ float cu_group_sum(float v) {
#pragma unroll
  for (int o = G / 2; o > 0; o >>= 1) v += __shfl_xor_sync(CU_FULL_MASK, v, o);
  return v;
}
template <int G>
static __device__ __forceinline__ float cu_group_max(float v) {
#pragma unroll
  for (int o = G / 2; o > 0; o >>= 1) {
    float w = __shfl_xor_sync(CU_FULL_MASK, v, o);
    v = w > v ? w : v;
  }
  return v;
}
#endif /* __CUDACC__ */

/* ---- host wrappers of the kernels (cuda_kernels.cu), in fl_backend's order ---- */
void fl__cuda_fill(float *x, float v, size_t n);
void fl__cuda_gemm_beta(int M, int N, float beta, float *C, int ldc);
void fl__cuda_binary(fl_binop op, int ndim, const int64_t *shape, float *out, const float *a,
                     const int64_t *sa, const float *b, const int64_t *sb);
void fl__cuda_reduce_to(float *dst, size_t dst_n, const int64_t *ds, int ndim,
                        const int64_t *shape, const float *src, int acc);
void fl__cuda_bias_add(float *y, const float *b, int M, int N);
void fl__cuda_bias_grad(float *gb, const float *gy, int M, int N, int acc);
void fl__cuda_bias_relu(float *y, const float *b, int M, int N);
void fl__cuda_relu_bias_grad(float *gpre, float *gb, const float *gy, const float *y, int M, int N,
                             int acc);
void fl__cuda_relu_fwd(float *y, const float *x, size_t n);
void fl__cuda_relu_bwd(float *gx, const float *gy, const float *y, size_t n, int acc);
void fl__cuda_sum(float *out, const float *x, size_t n, float scale);
void fl__cuda_sum_bwd(float *gx, const float *gout, float scale, size_t n, int acc);
void fl__cuda_log_softmax_fwd(float *y, const float *x, int M, int N);
void fl__cuda_log_softmax_bwd(float *gx, const float *gy, const float *y, int M, int N, int acc);
void fl__cuda_xent_fwd(float *loss, float *lse, const float *x, const int32_t *t, int M, int N);
void fl__cuda_xent_bwd(float *gx, const float *gloss, const float *x, const float *lse,
                       const int32_t *t, int M, int N, int acc);
void fl__cuda_mse_fwd(float *loss, const float *p, const float *t, size_t n);
void fl__cuda_mse_bwd(float *gp, const float *gloss, const float *p, const float *t, size_t n,
                      int acc);
void fl__cuda_sgd_step(float *p, const float *g, float lr, float wd, size_t n);
void fl__cuda_scale(float *x, float s, size_t n);
void fl__cuda_adam_step(float *p, const float *g, float *m, float *v, const fl_adam_hyper *h,
                        size_t n);
void fl__cuda_sgd_mom_step(float *p, const float *g, float *buf, const fl_sgd_hyper *h, size_t n);
void fl__cuda_nb_adam_step(float *p, const float *g, float *m, float *v, const fl_nb_hyper *h, size_t n);
void fl__cuda_argmax_correct(double *acc, const float *x, const int32_t *t, int M, int N);
void fl__cuda_mean_update(double *acc, const float *x, size_t n, double w);
int fl__cuda_nonfinite(const float *x, size_t n);
void fl__cuda_gather_xy(float *out, int32_t *yout, const uint8_t *src, const int32_t *ysrc,
                        const int32_t *idx, int B, int row, float div);

#endif
