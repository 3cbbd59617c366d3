/* The CUDA backend: device setup, memory, the cuBLAS matrix product, errors, and the table.
 * The other kernels are in cuda_kernels.cu. Built as its own shared library,
 * libflexlearn_cuda.so, which the core loads on demand (src/backend/dispatch.c): its one
 * exported symbol is fl__cuda_plugin (the fl_cuda_plugin of backend.h), and it links nothing
 * of the core (errors go through the core's fl_error, passed in by available()).
 *
 * One stream (non-blocking, so it never serialises with the legacy default stream) carries
 * everything, in order; the cuBLAS handle is bound to it. Nothing here synchronises except
 * to_host, nonfinite, free (before releasing memory) and sync. No call allocates or queries
 * the device in the steady state: the state is set up once, on first use.
 */
#include <atomic>
#include <mutex>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda_internal.cuh"

fl__cuda_state fl__cu;

/* FL_CHECK's abort, as the core's (src/core/error.c): the plugin's own copy, hidden. */
void fl__die(const char *file, int line, const char *fmt, ...) {
  va_list ap;
  fprintf(stderr, "%s:%d: flexlearn: ", file, line);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  abort();
}

/* Until the core lends its fl_error (in plugin_available), errors are only kept here. */
static fl_status no_error_fn(fl_status code, const char *, ...) { return code; }
fl_error_fn fl__cuda_error = no_error_fn;

/* ---- sticky errors ---- */
static std::mutex err_mu;
static std::atomic<int> err_code{0};            /* fl_status of the first failure, 0 = none */
static char err_msg[512];

void fl__cuda_fail(fl_status code, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  {
    std::lock_guard<std::mutex> lock(err_mu);
    if (!err_code) {
      snprintf(err_msg, sizeof err_msg, "%s", msg);
      err_code = code;
    }
  }
  fl__cuda_error(code, "%s", msg);
}

/* `call` is the stringified call expression: only its name (up to the '(') is printed. */
static int name_len(const char *call) { return (int)strcspn(call, "("); }

int fl__cuda_ok(cudaError_t e, const char *call, const char *what) {
  if (e == cudaSuccess) return 1;
  fl_status code = e == cudaErrorMemoryAllocation ? FL_ERR_NOMEM : FL_ERR_DEVICE;
  fl__cuda_fail(code, "%.*s: %s: %s (while %s)", name_len(call), call, cudaGetErrorName(e),
                cudaGetErrorString(e), what);
  return 0;
}

int fl__cuda_blas_ok(cublasStatus_t s, const char *call, const char *what) {
  if (s == CUBLAS_STATUS_SUCCESS) return 1;
  fl_status code = s == CUBLAS_STATUS_ALLOC_FAILED ? FL_ERR_NOMEM : FL_ERR_DEVICE;
  fl__cuda_fail(code, "%.*s: %s: %s (while %s)", name_len(call), call, cublasGetStatusName(s),
                cublasGetStatusString(s), what);
  return 0;
}
#define blas_ok(call, what) fl__cuda_blas_ok((call), #call, (what))

static fl_status cuda_status(void) {
  if (!err_code) {
    /* Cheap checks, no sync: an error left by a launch, or one the stream already hit. */
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) fl__cuda_ok(e, "cudaGetLastError", "checking status");
    e = cudaStreamQuery(fl__cu.stream);
    if (e == cudaErrorNotReady) (void)cudaGetLastError();  /* work queued: not an error, and
                                                             must not reach a later check */
    else if (e != cudaSuccess) fl__cuda_ok(e, "cudaStreamQuery", "checking status");
  }
  if (!err_code) return FL_OK;
  std::lock_guard<std::mutex> lock(err_mu);
  return fl__cuda_error((fl_status)err_code.load(), "%s", err_msg);
}

static void cuda_sync(void) {
  cu_ok(cudaStreamSynchronize(fl__cu.stream), "sync");
}

/* ---- memory ---- */
static void *cuda_alloc(size_t bytes) {
  void *p = NULL;
  cudaError_t e = cudaMalloc(&p, bytes ? bytes : 1);
  if (e == cudaSuccess) return p;
  if (e == cudaErrorMemoryAllocation) {
    /* Not sticky: the caller gets NULL and decides; the device stays usable. cudaMalloc left
     * the error as the thread's last error: clear it so status() does not report it. */
    (void)cudaGetLastError();
    fl__cuda_error(FL_ERR_NOMEM, "cudaMalloc(%zu bytes): out of device memory (%s)", bytes,
             cudaGetErrorString(e));
    return NULL;
  }
  fl__cuda_ok(e, "cudaMalloc", "alloc");
  return NULL;
}

static void cuda_free(void *p) {
  if (!p) return;
  /* Queued kernels may still use p: let them finish before the memory goes back. */
  cu_ok(cudaStreamSynchronize(fl__cu.stream), "free");
  cu_ok(cudaFree(p), "free");
}

static void cuda_memset0(void *p, size_t bytes) {
  if (bytes) cu_ok(cudaMemsetAsync(p, 0, bytes, fl__cu.stream), "memset0");
}

static void cuda_copy(void *dst, const void *src, size_t bytes) {
  if (bytes && dst != src)
    cu_ok(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, fl__cu.stream), "copy");
}

static void cuda_to_host(void *host_dst, const void *src, size_t bytes) {
  if (!bytes) return;
  cu_ok(cudaMemcpyAsync(host_dst, src, bytes, cudaMemcpyDeviceToHost, fl__cu.stream), "to_host");
  cu_ok(cudaStreamSynchronize(fl__cu.stream), "to_host");
}

/* Host to device without waiting for the GPU. From pageable memory the driver may wait for
 * the stream before it stages the copy, which would stall the host once per batch. So copies
 * up to STAGE_BYTES go through a small ring of pinned buffers: the host copies into the next
 * buffer (after waiting, on its event, for that buffer's previous upload only), queues the
 * DMA and returns. Either way host_src may be reused as soon as this returns. The buffers are
 * allocated on first use; if pinned memory cannot be had, copies go direct. */
enum { STAGE_SLOTS = 4 };
static const size_t STAGE_BYTES = (size_t)8 << 20;
static struct {
  std::mutex mu;
  void *buf[STAGE_SLOTS];
  cudaEvent_t ev[STAGE_SLOTS];
  int next, disabled;
} stage;

/* Pinned buffer i, allocated on first use; NULL when pinned memory is not available. */
static void *stage_buf(int i) {
  if (stage.buf[i] || stage.disabled) return stage.buf[i];
  void *b = NULL;
  if (cudaHostAlloc(&b, STAGE_BYTES, cudaHostAllocDefault) != cudaSuccess) b = NULL;
  else if (cudaEventCreateWithFlags(&stage.ev[i], cudaEventDisableTiming) != cudaSuccess) {
    cudaFreeHost(b);
    b = NULL;
  }
  if (!b) {                                     /* not an error: fall back to direct copies */
    (void)cudaGetLastError();
    stage.disabled = 1;
  }
  return stage.buf[i] = b;
}

static void cuda_from_host(void *dst, const void *host_src, size_t bytes) {
  if (!bytes) return;
  if (bytes <= STAGE_BYTES) {
    std::lock_guard<std::mutex> lock(stage.mu);
    const int i = stage.next;
    void *b = stage_buf(i);
    if (b) {
      if (!cu_ok(cudaEventSynchronize(stage.ev[i]), "from_host")) return;
      memcpy(b, host_src, bytes);
      cu_ok(cudaMemcpyAsync(dst, b, bytes, cudaMemcpyHostToDevice, fl__cu.stream), "from_host");
      cu_ok(cudaEventRecord(stage.ev[i], fl__cu.stream), "from_host");
      stage.next = (i + 1) % STAGE_SLOTS;
      return;
    }
  }
  cu_ok(cudaMemcpyAsync(dst, host_src, bytes, cudaMemcpyHostToDevice, fl__cu.stream), "from_host");
}

/* ---- matrix product ----
 * cuBLAS is column-major. A row-major matrix R[r, c] with row stride ld is, read column-major
 * with leading dimension ld, the matrix R^T[c, r]. So the row-major C[M, N] (ldc) is the
 * column-major C^T[N, M] (ldc), and we ask cuBLAS for
 *     C^T = alpha * op(B)^T * op(A)^T + beta * C^T        (m = N, n = M, k = K)
 * i.e. cuBLAS's first operand is our B and its second our A:
 *  - B untransposed (tb = 0): B is stored row-major [K, N], read column-major as B^T[N, K]
 *    = op(B)^T already: CUBLAS_OP_N, leading dimension ldb (>= N = m, as cuBLAS requires).
 *  - B transposed (tb = 1): B is stored row-major [N, K] (op(B) = B^T), read column-major as
 *    B^T[K, N]; we need op(B)^T = B[N, K], its transpose: CUBLAS_OP_T, ldb (>= K = k).
 *  - A untransposed (ta = 0): A stored [M, K], read column-major as A^T[K, M] = op(A)^T:
 *    CUBLAS_OP_N, lda (>= K = k).
 *  - A transposed (ta = 1): A stored [K, M] (op(A) = A^T), read column-major as A^T[M, K];
 *    we need op(A)^T = A[K, M], its transpose: CUBLAS_OP_T, lda (>= M = n).
 * The four combinations are then the one call below. */
static void cuda_gemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                      const float *B, int ldb, float beta, float *C, int ldc) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0 || alpha == 0.0f) {                /* C = beta * C; cuBLAS rejects ld = 0 here */
    fl__cuda_gemm_beta(M, N, beta, C, ldc);
    return;
  }
  cublasStatus_t s = cublasSgemm(fl__cu.blas, tb ? CUBLAS_OP_T : CUBLAS_OP_N,
                                 ta ? CUBLAS_OP_T : CUBLAS_OP_N, N, M, K, &alpha, B, ldb, A, lda,
                                 &beta, C, ldc);
  if (s != CUBLAS_STATUS_SUCCESS) {             /* the message is built only on failure */
    char what[128];
    snprintf(what, sizeof what, "gemm ta=%d tb=%d M=%d N=%d K=%d lda=%d ldb=%d ldc=%d", ta, tb,
             M, N, K, lda, ldb, ldc);
    fl__cuda_blas_ok(s, "cublasSgemm", what);
  }
}

/* ---- setup ---- */
static fl_backend table;

static void fill_table(void) {
  table.name = "cuda";
  table.alloc = cuda_alloc;
  table.free = cuda_free;
  table.memset0 = cuda_memset0;
  table.copy = cuda_copy;
  table.to_host = cuda_to_host;
  table.from_host = cuda_from_host;
  table.fill = fl__cuda_fill;
  table.gemm = cuda_gemm;
  table.binary = fl__cuda_binary;
  table.reduce_to = fl__cuda_reduce_to;
  table.bias_add = fl__cuda_bias_add;
  table.bias_grad = fl__cuda_bias_grad;
  table.bias_relu = fl__cuda_bias_relu;
  table.relu_bias_grad = fl__cuda_relu_bias_grad;
  table.relu_fwd = fl__cuda_relu_fwd;
  table.relu_bwd = fl__cuda_relu_bwd;
  table.sum = fl__cuda_sum;
  table.sum_bwd = fl__cuda_sum_bwd;
  table.log_softmax_fwd = fl__cuda_log_softmax_fwd;
  table.log_softmax_bwd = fl__cuda_log_softmax_bwd;
  table.xent_fwd = fl__cuda_xent_fwd;
  table.xent_bwd = fl__cuda_xent_bwd;
  table.mse_fwd = fl__cuda_mse_fwd;
  table.mse_bwd = fl__cuda_mse_bwd;
  table.sgd_step = fl__cuda_sgd_step;
  table.scale = fl__cuda_scale;
  table.adam_step = fl__cuda_adam_step;
  table.sgd_mom_step = fl__cuda_sgd_mom_step;
  table.nb_adam_step = fl__cuda_nb_adam_step;
  table.argmax_correct = fl__cuda_argmax_correct;
  table.mean_update = fl__cuda_mean_update;
  table.nonfinite = fl__cuda_nonfinite;
  table.gather_xy = fl__cuda_gather_xy;
  table.status = cuda_status;
  table.sync = cuda_sync;
}

/* Why there is no CUDA backend (for fl_backend_cuda_reason). */
static char why_not[512] = "the CUDA backend was not set up";

/* Once per process. Quiet (returns 0, the reason in why_not) where there is no driver or no
 * GPU, or where the device fails to set up. */
static int setup(void) {
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess || n < 1) {
    if (e == cudaErrorNoDevice || (e == cudaSuccess && n < 1))
      snprintf(why_not, sizeof why_not, "no CUDA device found");
    else if (e == cudaErrorInsufficientDriver)
      snprintf(why_not, sizeof why_not, "no CUDA driver, or one too old for this build (%s)",
               cudaGetErrorString(e));
    else
      snprintf(why_not, sizeof why_not, "cudaGetDeviceCount: %s: %s", cudaGetErrorName(e),
               cudaGetErrorString(e));
    (void)cudaGetLastError();
    return 0;
  }
  e = cudaFree(0);                              /* creates the context on device 0 */
  if (e != cudaSuccess) {
    snprintf(why_not, sizeof why_not, "cannot create a CUDA context on device 0: %s: %s",
             cudaGetErrorName(e), cudaGetErrorString(e));
    (void)cudaGetLastError();
    return 0;
  }
  const char *what = "setting up the CUDA backend";
  if (!cu_ok(cudaStreamCreateWithFlags(&fl__cu.stream, cudaStreamNonBlocking), what)) goto fail;
  if (!blas_ok(cublasCreate(&fl__cu.blas), what)) goto fail;
  if (!blas_ok(cublasSetStream(fl__cu.blas, fl__cu.stream), what)) goto fail;
  /* Plain FP32 (no TF32 tensor cores), and no atomics: same bits every run. */
  if (!blas_ok(cublasSetMathMode(fl__cu.blas, CUBLAS_DEFAULT_MATH), what)) goto fail;
  if (!blas_ok(cublasSetAtomicsMode(fl__cu.blas, CUBLAS_ATOMICS_NOT_ALLOWED), what)) goto fail;
  if (!blas_ok(cublasSetPointerMode(fl__cu.blas, CUBLAS_POINTER_MODE_HOST), what)) goto fail;
  if (!cu_ok(cudaMalloc((void **)&fl__cu.d_flag, sizeof(int)), what)) goto fail;
  if (!cu_ok(cudaMallocHost((void **)&fl__cu.h_flag, sizeof(int)), what)) goto fail;
  fill_table();
  return 1;
fail:
  /* Leave no sticky error behind: there is no CUDA backend to report it. */
  snprintf(why_not, sizeof why_not, "%s", err_msg);
  err_code = 0;
  (void)cudaGetLastError();
  return 0;
}

static int usable(void) {
  static const int ok = setup();                /* thread-safe, runs once */
  return ok;
}

/* ---- the plugin's entry (the one exported symbol) ---- */
static int plugin_available(fl_error_fn error) {
  static std::once_flag lend;
  std::call_once(lend, [error] { if (error) fl__cuda_error = error; });
  return usable();
}

static const fl_backend *plugin_backend(void) { return usable() ? &table : NULL; }

static const char *plugin_reason(void) {
  return usable() ? "the CUDA backend is available" : why_not;
}

static const fl_cuda_plugin plugin = {FL_CUDA_PLUGIN_ABI, sizeof(fl_cuda_plugin), sizeof(fl_backend),
                                      plugin_available, plugin_backend, plugin_reason};

extern "C" __attribute__((visibility("default"))) const fl_cuda_plugin *fl__cuda_plugin(void) {
  return &plugin;
}
