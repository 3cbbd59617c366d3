/* Internal: the one small GEMM interface the CPU backend uses, so another library can stand
 * behind it. Row-major, as fl_backend.gemm. */
#ifndef FL_CPU_GEMM_H
#define FL_CPU_GEMM_H

void fl__cpu_gemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                  const float *B, int ldb, float beta, float *C, int ldc);
/* Plain triple loop in double accumulation: the readable reference the tests compare with. */
void fl__ref_gemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                  const float *B, int ldb, float beta, float *C, int ldc);

#endif
