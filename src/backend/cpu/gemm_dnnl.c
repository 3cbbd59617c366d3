/* CPU GEMM through oneDNN (Debian libdnnl-dev, 2.x C API).
 *
 * Measured here for the lesson's thin shapes (../shared/reference/cpu-gemm.md): oneDNN's matmul
 * primitive is fastest for the products with an untransposed A (forward x.W^T, dH = dY.W),
 * dnnl_sgemm for the weight gradients (A transposed, dW = dY^T.X); both give the same bits on
 * 1 and 2 threads. A primitive costs 0.7-2 ms to create, so one is cached per shape (train
 * batch, last partial batch, valid batch...), with its memory objects: a call then only swaps
 * data handles and executes. Single caller thread (the training loop).
 *
 * Threads: a product smaller than FL_GEMM_PAR_MIN multiply-adds (default 4M, from
 * bench/bench_epoch runs at bs 64..1024) runs on one thread. Splitting such small products
 * costs more in wake-ups and in moving cache lines between cores than it saves, and it leaves
 * the other core to the data loader's worker. The primitive is created and run with the same
 * thread count (it is part of the cache key).
 */
#ifndef FL_NO_DNNL
#include <oneapi/dnnl/dnnl.h>
#include <omp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/gemm.h"
#include "fl/core.h"

#define DNNL_OK(call)                                                                   \
  do {                                                                                  \
    dnnl_status_t s__ = (call);                                                         \
    FL_CHECK(s__ == dnnl_success, "oneDNN: %s failed (status %d)", #call, (int)s__);    \
  } while (0)

typedef struct mm_key {
  int ta, tb, M, N, K, lda, ldb, ldc, nthr;
  float alpha, beta;
} mm_key;

typedef struct mm_entry {
  mm_key key;
  dnnl_primitive_t prim;
  dnnl_memory_t a, b, c;
} mm_entry;

#define MM_CACHE 64
static struct {
  dnnl_engine_t engine;
  dnnl_stream_t stream;
  mm_entry e[MM_CACHE];
  int n;
} mm;
static pthread_once_t mm_once = PTHREAD_ONCE_INIT;

static void mm_free_all(void) {
  for (int i = 0; i < mm.n; i++) {
    dnnl_primitive_destroy(mm.e[i].prim);
    dnnl_memory_destroy(mm.e[i].a);
    dnnl_memory_destroy(mm.e[i].b);
    dnnl_memory_destroy(mm.e[i].c);
  }
  mm.n = 0;
  if (mm.stream) dnnl_stream_destroy(mm.stream);
  if (mm.engine) dnnl_engine_destroy(mm.engine);
  mm.stream = NULL;
  mm.engine = NULL;
}

static void mm_init(void) {
  DNNL_OK(dnnl_engine_create(&mm.engine, dnnl_cpu, 0));
  DNNL_OK(dnnl_stream_create(&mm.stream, mm.engine, dnnl_stream_default_flags));
  atexit(mm_free_all);
}

/* A 2-d f32 memory descriptor of logical [rows, cols] stored with row stride ld, transposed
 * storage when `trans` (then element (r, c) is at c*ld + r). */
static void md2(dnnl_memory_desc_t *md, int rows, int cols, int ld, int trans) {
  dnnl_dims_t dims = {rows, cols};
  dnnl_dims_t strides = {trans ? 1 : ld, trans ? ld : 1};
  DNNL_OK(dnnl_memory_desc_init_by_strides(md, 2, dims, dnnl_f32, strides));
}

static mm_entry *mm_get(const mm_key *k) {
  for (int i = 0; i < mm.n; i++)
    if (!memcmp(&mm.e[i].key, k, sizeof *k)) return &mm.e[i];
  if (mm.n == MM_CACHE) return NULL;
  mm_entry *e = &mm.e[mm.n];
  memset(e, 0, sizeof *e);
  e->key = *k;
  dnnl_memory_desc_t a, b, c;
  md2(&a, k->M, k->K, k->lda, k->ta);
  md2(&b, k->K, k->N, k->ldb, k->tb);
  md2(&c, k->M, k->N, k->ldc, 0);
  dnnl_matmul_desc_t desc;
  DNNL_OK(dnnl_matmul_desc_init(&desc, &a, &b, NULL, &c));
  dnnl_primitive_attr_t attr;
  DNNL_OK(dnnl_primitive_attr_create(&attr));
  if (k->alpha != 1.0f) DNNL_OK(dnnl_primitive_attr_set_output_scales(attr, 1, 0, &k->alpha));
  if (k->beta != 0.0f) {
    dnnl_post_ops_t po;
    DNNL_OK(dnnl_post_ops_create(&po));
    DNNL_OK(dnnl_post_ops_append_sum(po, k->beta));
    DNNL_OK(dnnl_primitive_attr_set_post_ops(attr, po));
    dnnl_post_ops_destroy(po);
  }
  dnnl_primitive_desc_t pd;
  DNNL_OK(dnnl_primitive_desc_create(&pd, &desc, attr, mm.engine, NULL));
  DNNL_OK(dnnl_primitive_create(&e->prim, pd));
  dnnl_primitive_desc_destroy(pd);
  dnnl_primitive_attr_destroy(attr);
  DNNL_OK(dnnl_memory_create(&e->a, &a, mm.engine, DNNL_MEMORY_NONE));
  DNNL_OK(dnnl_memory_create(&e->b, &b, mm.engine, DNNL_MEMORY_NONE));
  DNNL_OK(dnnl_memory_create(&e->c, &c, mm.engine, DNNL_MEMORY_NONE));
  mm.n++;
  return e;
}

static long par_min = -1;

static int gemm_threads(int M, int N, int K) {
  if (par_min < 0) {
    const char *e = getenv("FL_GEMM_PAR_MIN");
    par_min = e ? atol(e) : 4L << 20;
  }
  return (long)M * N * K >= par_min ? omp_get_max_threads() : 1;
}

/* ---- weight gradients: the batch (K) summed in two fixed halves ----
 * dW[M,N] = dY^T[M,K] X[K,N]: on 2 threads dnnl_sgemm splits N, so each thread reads half of
 * every row of X, half of which the other core had just written (the batch gather splits rows
 * the same static way). Summing K in two fixed halves instead (h 0: rows [0, K/2), h 1: the rest;
 * thread t does half t) keeps each core on the rows it gathered; the two partial products are
 * then added in a fixed order, C = alpha * (P0 + P1) + beta * C, split by rows of C. The halves
 * do not depend on the thread count, so 1 and 2 threads give the same bits. Only for a
 * transposed A (the weight gradients) and shapes worth it (shape-only rule, never the thread
 * count: KSPLIT_MIN_K rows and KSPLIT_MIN_MN outputs). */
enum { KSPLIT_MIN_K = 512, KSPLIT_MIN_MN = 4096 };

static float *ksplit_buf;      /* 2 * M * N partial sums, grown (never in the steady state) */
static size_t ksplit_cap;

static void ksplit_free(void) { free(ksplit_buf); }

static int gemm_ksplit(int tb, int M, int N, int K, float alpha, const float *A, int lda,
                       const float *B, int ldb, float beta, float *C, int ldc, int nthr) {
  size_t need = 2 * (size_t)M * (size_t)N;
  if (need > ksplit_cap) {
    float *nb = realloc(ksplit_buf, need * sizeof *nb);
    if (!nb) return 0;                          /* the plain path still works */
    if (!ksplit_buf) atexit(ksplit_free);
    ksplit_buf = nb, ksplit_cap = need;
  }
  float *P = ksplit_buf;
  const int k1 = K / 2;
#pragma omp parallel num_threads(nthr)
  {
    int t = omp_get_thread_num(), nt = omp_get_num_threads();
    for (int h = t; h < 2; h += nt) {
      int k0 = h ? k1 : 0, kk = h ? K - k1 : k1;
      const float *Bh = tb ? B + k0 : B + (size_t)k0 * ldb;
      DNNL_OK(dnnl_sgemm('T', tb ? 'T' : 'N', M, N, kk, 1.0f, A + (size_t)k0 * lda, lda, Bh, ldb, 0.0f,
                         P + (size_t)h * M * N, N));
    }
#pragma omp barrier
#pragma omp for schedule(static)
    for (int i = 0; i < M; i++) {
      const float *p0 = P + (size_t)i * N, *p1 = p0 + (size_t)M * N;
      float *c = C + (size_t)i * ldc;
      if (beta == 0.0f)
        for (int j = 0; j < N; j++) c[j] = alpha * (p0[j] + p1[j]);
      else
        for (int j = 0; j < N; j++) c[j] = alpha * (p0[j] + p1[j]) + beta * c[j];
    }
  }
  return 1;
}

void fl__cpu_gemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                  const float *B, int ldb, float beta, float *C, int ldc) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {  /* C = beta * C */
    for (int i = 0; i < M; i++)
      for (int j = 0; j < N; j++) C[(size_t)i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[(size_t)i * ldc + j];
    return;
  }
  pthread_once(&mm_once, mm_init);
  int max = omp_get_max_threads(), nthr = gemm_threads(M, N, K);
  if (nthr != max) omp_set_num_threads(nthr);
  mm_entry *e = NULL;
  if (!ta) {
    mm_key k = {ta, tb, M, N, K, lda, ldb, ldc, nthr, alpha, beta};
    e = mm_get(&k);
  }
  if (ta && K >= KSPLIT_MIN_K && (long)M * N >= KSPLIT_MIN_MN &&
      gemm_ksplit(tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, nthr)) {
    /* done */
  } else if (e) {
    DNNL_OK(dnnl_memory_set_data_handle(e->a, (void *)A));
    DNNL_OK(dnnl_memory_set_data_handle(e->b, (void *)B));
    DNNL_OK(dnnl_memory_set_data_handle(e->c, C));
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, e->a}, {DNNL_ARG_WEIGHTS, e->b}, {DNNL_ARG_DST, e->c}};
    DNNL_OK(dnnl_primitive_execute(e->prim, mm.stream, 3, args));
    DNNL_OK(dnnl_stream_wait(mm.stream));
  } else {
    DNNL_OK(dnnl_sgemm(ta ? 'T' : 'N', tb ? 'T' : 'N', M, N, K, alpha, A, lda, B, ldb, beta, C, ldc));
  }
  if (nthr != max) omp_set_num_threads(max);
}

#endif /* FL_NO_DNNL */

#include <stddef.h>
#include "backend/cpu/gemm.h"

void fl__ref_gemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                  const float *B, int ldb, float beta, float *C, int ldc) {
  for (int i = 0; i < M; i++)
    for (int j = 0; j < N; j++) {
      double s = 0;
      for (int k = 0; k < K; k++) {
        float a = ta ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k];
        float b = tb ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j];
        s += (double)a * b;
      }
      float *c = &C[(size_t)i * ldc + j];
      *c = (float)(alpha * s) + (beta == 0.0f ? 0.0f : beta * *c);
    }
}
