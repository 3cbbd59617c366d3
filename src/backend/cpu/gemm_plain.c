/* CPU GEMM without oneDNN (make DNNL=0): a plain C loop nest, for machines where libdnnl-dev is
 * missing (the GPU machine, whose hot path is cuBLAS). Row-major, as fl_backend.gemm; each
 * C element sums its K products in order (reproducible whatever the thread count). Slower than
 * oneDNN by an order of magnitude: bench/ numbers always come from the oneDNN build. */
#ifdef FL_NO_DNNL
#include <stddef.h>
#include <stdlib.h>

#include "backend/cpu/gemm.h"

void fl__cpu_gemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                  const float *B, int ldb, float beta, float *C, int ldc) {
  /* The products are summed into a row of their own, then C = alpha * row + beta * C, as
   * the BLAS contract reads (so accumulating two products gives exactly their sum). */
#pragma omp parallel if ((long)M * N * K >= (4L << 20))
  {
    float *row = malloc((size_t)(N ? N : 1) * sizeof *row);
#pragma omp for
    for (int i = 0; i < M; i++) {
      float *c = C + (size_t)i * ldc;
      for (int j = 0; j < N; j++) row[j] = 0.0f;
      for (int k = 0; k < K; k++) {
        float a = ta ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k];
        if (tb)
          for (int j = 0; j < N; j++) row[j] += a * B[(size_t)j * ldb + k];
        else
          for (int j = 0; j < N; j++) row[j] += a * B[(size_t)k * ldb + j];
      }
      for (int j = 0; j < N; j++) c[j] = alpha * row[j] + (beta == 0.0f ? 0.0f : beta * c[j]);
    }
    free(row);
  }
}
#endif
