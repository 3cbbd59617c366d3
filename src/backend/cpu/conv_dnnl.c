/* CPU convolution and average pooling through oneDNN's primitives (Debian libdnnl-dev, 2.x C API).
 *
 * Tensors are NCHW / OIHW (plain layouts) on both sides of every primitive. A primitive is
 * created once per (kind, shape, thread count) and cached with its memory objects, as
 * gemm_dnnl.c does: in the steady state a call swaps data handles and executes.
 * Single caller thread (the training loop).
 *
 * `acc` (add into the gradient instead of overwriting it): the backward primitives have no sum
 * post-op, so they write into a scratch buffer that is then added, in a fixed order.
 * The convolution's bias gradient is the fixed-order C sum in cnn_cpu.c (oneDNN's diff_bias
 * reduction order depends on the thread count).
 */
#ifndef FL_NO_DNNL
#include <oneapi/dnnl/dnnl.h>
#include <omp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cnn.h"
#include "fl/core.h"

#define DNNL_OK(call)                                                                   \
  do {                                                                                  \
    dnnl_status_t s__ = (call);                                                         \
    FL_CHECK(s__ == dnnl_success, "oneDNN: %s failed (status %d)", #call, (int)s__);    \
  } while (0)

enum { K_FWD, K_FWD_BIAS, K_BWD_DATA, K_POOL_FWD, K_POOL_BWD };

typedef struct cv_key {
  int kind, nthr;
  fl_conv_shape s;
} cv_key;

typedef struct cv_entry {
  cv_key key;
  dnnl_primitive_t prim;
  int nargs;
  int arg[4];
  dnnl_memory_t mem[4];
} cv_entry;

#define CV_CACHE 256   /* a resnet epoch (4 batch sizes: train, its last, valid, its last) needs ~140 */
static struct {
  dnnl_engine_t engine;
  dnnl_stream_t stream;
  cv_entry e[CV_CACHE];
  int n;
  float *scratch;
  size_t scratch_cap;
} cv;
static pthread_once_t cv_once = PTHREAD_ONCE_INIT;

/* Destroys the cached primitives (entries are only used within the call that got them). */
static void cv_flush(void) {
  for (int i = 0; i < cv.n; i++) {
    dnnl_primitive_destroy(cv.e[i].prim);
    for (int j = 0; j < cv.e[i].nargs; j++) dnnl_memory_destroy(cv.e[i].mem[j]);
  }
  cv.n = 0;
}

static void cv_free_all(void) {
  cv_flush();
  free(cv.scratch);
  cv.scratch = NULL;
  if (cv.stream) dnnl_stream_destroy(cv.stream);
  if (cv.engine) dnnl_engine_destroy(cv.engine);
  cv.stream = NULL;
  cv.engine = NULL;
}

static void cv_init(void) {
  DNNL_OK(dnnl_engine_create(&cv.engine, dnnl_cpu, 0));
  DNNL_OK(dnnl_stream_create(&cv.stream, cv.engine, dnnl_stream_default_flags));
  atexit(cv_free_all);
}

static void md4(dnnl_memory_desc_t *md, int a, int b, int c, int d, dnnl_format_tag_t tag) {
  dnnl_dims_t dims = {a, b, c, d};
  DNNL_OK(dnnl_memory_desc_init_by_tag(md, 4, dims, dnnl_f32, tag));
}

static void add_mem(cv_entry *e, int arg, const dnnl_memory_desc_t *md) {
  e->arg[e->nargs] = arg;
  DNNL_OK(dnnl_memory_create(&e->mem[e->nargs], md, cv.engine, DNNL_MEMORY_NONE));
  e->nargs++;
}

/* padding on the bottom / right that makes oneDNN's output size equal Ho / Wo */
static void conv_geometry(const fl_conv_shape *s, dnnl_dims_t st, dnnl_dims_t pl, dnnl_dims_t pr) {
  st[0] = st[1] = s->stride;
  pl[0] = pl[1] = s->pad;
  pr[0] = (dnnl_dim_t)(s->Ho - 1) * s->stride + s->k - s->H - s->pad;
  pr[1] = (dnnl_dim_t)(s->Wo - 1) * s->stride + s->k - s->W - s->pad;
}

static void conv_fwd_desc(const fl_conv_shape *s, int bias, dnnl_convolution_desc_t *d) {
  dnnl_memory_desc_t x, w, b, y;
  dnnl_dims_t st, pl, pr;
  md4(&x, s->N, s->C, s->H, s->W, dnnl_nchw);
  md4(&w, s->O, s->C, s->k, s->k, dnnl_oihw);
  md4(&y, s->N, s->O, s->Ho, s->Wo, dnnl_nchw);
  dnnl_dims_t bd = {s->O};
  DNNL_OK(dnnl_memory_desc_init_by_tag(&b, 1, bd, dnnl_f32, dnnl_a));
  conv_geometry(s, st, pl, pr);
  DNNL_OK(dnnl_convolution_forward_desc_init(d, dnnl_forward_training, dnnl_convolution_direct, &x, &w,
                                             bias ? &b : NULL, &y, st, pl, pr));
}

static void pool_descs(const fl_conv_shape *s, dnnl_pooling_desc_t *fwd, dnnl_pooling_desc_t *bwd) {
  dnnl_memory_desc_t x, y;
  md4(&x, 1, s->C, s->H, s->W, dnnl_nchw);
  md4(&y, 1, s->C, s->Ho, s->Wo, dnnl_nchw);
  dnnl_dims_t st = {s->k, s->k}, ker = {s->k, s->k}, pl = {0, 0};
  dnnl_dims_t pr = {(dnnl_dim_t)s->Ho * s->k - s->H, (dnnl_dim_t)s->Wo * s->k - s->W};
  DNNL_OK(dnnl_pooling_forward_desc_init(fwd, dnnl_forward_training, dnnl_pooling_avg_exclude_padding,
                                         &x, &y, st, ker, pl, pr));
  if (bwd)
    DNNL_OK(dnnl_pooling_backward_desc_init(bwd, dnnl_pooling_avg_exclude_padding, &x, &y, st, ker, pl, pr));
}

static cv_entry *cv_get(int kind, const fl_conv_shape *s) {
  cv_key k;
  memset(&k, 0, sizeof k);
  k.kind = kind;
  k.nthr = omp_get_max_threads();
  k.s = *s;
  for (int i = 0; i < cv.n; i++)
    if (!memcmp(&cv.e[i].key, &k, sizeof k)) return &cv.e[i];
  if (cv.n == CV_CACHE) cv_flush();   /* full (many batch sizes in one process): start over, not abort */
  cv_entry *e = &cv.e[cv.n];
  memset(e, 0, sizeof *e);
  e->key = k;
  dnnl_primitive_desc_t pd = NULL, hint = NULL;
  dnnl_memory_desc_t x, w, b, y;
  md4(&x, s->N, s->C, s->H, s->W, dnnl_nchw);
  md4(&w, s->O, s->C, s->k, s->k, dnnl_oihw);
  md4(&y, s->N, s->O, s->Ho, s->Wo, dnnl_nchw);
  dnnl_dims_t bd = {s->O};
  DNNL_OK(dnnl_memory_desc_init_by_tag(&b, 1, bd, dnnl_f32, dnnl_a));
  if (kind <= K_BWD_DATA) {
    dnnl_convolution_desc_t fd;
    conv_fwd_desc(s, kind == K_FWD_BIAS, &fd);
    DNNL_OK(dnnl_primitive_desc_create(kind <= K_FWD_BIAS ? &pd : &hint, &fd, NULL, cv.engine, NULL));
    if (kind == K_BWD_DATA) {
      dnnl_convolution_desc_t bd2;
      dnnl_dims_t st, pl, pr;
      conv_geometry(s, st, pl, pr);
      DNNL_OK(dnnl_convolution_backward_data_desc_init(&bd2, dnnl_convolution_direct, &x, &w, &y, st, pl, pr));
      DNNL_OK(dnnl_primitive_desc_create(&pd, &bd2, NULL, cv.engine, hint));
    }
  } else {
    dnnl_pooling_desc_t fd, bd2;
    pool_descs(s, &fd, &bd2);
    DNNL_OK(dnnl_primitive_desc_create(kind == K_POOL_FWD ? &pd : &hint, &fd, NULL, cv.engine, NULL));
    if (kind == K_POOL_BWD) DNNL_OK(dnnl_primitive_desc_create(&pd, &bd2, NULL, cv.engine, hint));
    md4(&x, 1, s->C, s->H, s->W, dnnl_nchw);
    md4(&y, 1, s->C, s->Ho, s->Wo, dnnl_nchw);
  }
  DNNL_OK(dnnl_primitive_create(&e->prim, pd));
  dnnl_primitive_desc_destroy(pd);
  if (hint) dnnl_primitive_desc_destroy(hint);
  switch (kind) {
    case K_FWD: case K_FWD_BIAS:
      add_mem(e, DNNL_ARG_SRC, &x); add_mem(e, DNNL_ARG_WEIGHTS, &w); add_mem(e, DNNL_ARG_DST, &y);
      if (kind == K_FWD_BIAS) add_mem(e, DNNL_ARG_BIAS, &b);
      break;
    case K_BWD_DATA:
      add_mem(e, DNNL_ARG_DIFF_SRC, &x); add_mem(e, DNNL_ARG_WEIGHTS, &w); add_mem(e, DNNL_ARG_DIFF_DST, &y);
      break;
    case K_POOL_FWD:
      add_mem(e, DNNL_ARG_SRC, &x); add_mem(e, DNNL_ARG_DST, &y);
      break;
    case K_POOL_BWD:
      add_mem(e, DNNL_ARG_DIFF_SRC, &x); add_mem(e, DNNL_ARG_DIFF_DST, &y);
      break;
  }
  cv.n++;
  return e;
}

/* Runs e with the data pointers in the order its memory objects were added. */
static void cv_run(cv_entry *e, void *p0, void *p1, void *p2, void *p3) {
  void *p[4] = {p0, p1, p2, p3};
  dnnl_exec_arg_t args[4];
  for (int i = 0; i < e->nargs; i++) {
    DNNL_OK(dnnl_memory_set_data_handle(e->mem[i], p[i]));
    args[i] = (dnnl_exec_arg_t){e->arg[i], e->mem[i]};
  }
  DNNL_OK(dnnl_primitive_execute(e->prim, cv.stream, e->nargs, args));
  DNNL_OK(dnnl_stream_wait(cv.stream));
}

/* A scratch buffer of n floats (grown, never in the steady state). */
static float *scratch(size_t n) {
  if (n > cv.scratch_cap) {
    float *p = realloc(cv.scratch, n * sizeof *p);
    FL_CHECK(p != NULL, "out of memory for a %zu-float convolution scratch buffer", n);
    cv.scratch = p;
    cv.scratch_cap = n;
  }
  return cv.scratch;
}

static void add_into(float *dst, const float *src, size_t n) {
#pragma omp parallel for schedule(static) if (n >= 65536)
  for (size_t i = 0; i < n; i++) dst[i] += src[i];
}

void fl__cpu_conv2d_fwd(const fl_conv_shape *s, float *y, const float *x, const float *w, const float *b) {
  if (!s->N) return;
  pthread_once(&cv_once, cv_init);
  cv_run(cv_get(b ? K_FWD_BIAS : K_FWD, s), (void *)x, (void *)w, y, (void *)b);
}

void fl__cpu_conv2d_bwd_data(const fl_conv_shape *s, float *gx, const float *gy, const float *w, int acc) {
  if (!s->N) return;
  pthread_once(&cv_once, cv_init);
  size_t n = (size_t)s->N * s->C * s->H * s->W;
  float *dst = acc ? scratch(n) : gx;
  cv_run(cv_get(K_BWD_DATA, s), dst, (void *)w, (void *)gy, NULL);
  if (acc) add_into(gx, dst, n);
}

/* ---- the weight gradient: the batch split in WCHUNKS fixed parts ----
 * oneDNN's backward-weights primitive reduces over the batch in an order that depends on the
 * thread count (measured: 1 and 2 threads differ in most elements for every ResNet shape;
 * forward and backward-data agree bit for bit). So the batch is cut into min(N, WCHUNKS) fixed
 * runs of consecutive images; each is a single-threaded primitive run (oneDNN called with
 * one OpenMP thread, inside our parallel loop over the runs) into its own partial buffer, and
 * the partials are added in run order. The split depends on N only, never on the thread
 * count, so any thread count gives the same bits. Each run has its own memory objects,
 * stream and (user-managed) scratchpad, so the runs can execute concurrently. */
enum { WCHUNKS = 8 };

typedef struct wg_entry {
  fl_conv_shape s;
  int nch;
  dnnl_primitive_t prim[2];          /* batch q = N / nch and q + 1 */
  dnnl_memory_t mem[WCHUNKS][4];     /* src, diff_weights, diff_dst, scratchpad */
  void *pad[WCHUNKS];                /* the scratchpads */
  dnnl_stream_t stream[WCHUNKS];
  float *part;                       /* nch partial weight gradients */
} wg_entry;

#define WG_CACHE 64
static struct {
  wg_entry e[WG_CACHE];
  int n;
} wg;

static void wg_free_all(void) {
  for (int i = 0; i < wg.n; i++) {
    wg_entry *e = &wg.e[i];
    for (int j = 0; j < 2; j++)
      if (e->prim[j]) dnnl_primitive_destroy(e->prim[j]);
    for (int c = 0; c < e->nch; c++) {
      for (int j = 0; j < 4; j++) dnnl_memory_destroy(e->mem[c][j]);
      free(e->pad[c]);
      dnnl_stream_destroy(e->stream[c]);
    }
    free(e->part);
  }
  wg.n = 0;
}

static int chunk_begin(int N, int nch, int c) { return (int)((long)N * c / nch); }

/* The primitive for a batch of nb images, single-threaded (created while OpenMP is set to one
 * thread), with a user scratchpad; *pad_md receives its scratchpad's descriptor. */
static dnnl_primitive_t wg_prim(const fl_conv_shape *s0, int nb, dnnl_memory_desc_t *pad_md) {
  fl_conv_shape s = *s0;
  s.N = nb;
  dnnl_convolution_desc_t fd, bd;
  conv_fwd_desc(&s, 0, &fd);
  dnnl_primitive_desc_t hint, pd;
  DNNL_OK(dnnl_primitive_desc_create(&hint, &fd, NULL, cv.engine, NULL));
  dnnl_memory_desc_t x, w, y;
  md4(&x, s.N, s.C, s.H, s.W, dnnl_nchw);
  md4(&w, s.O, s.C, s.k, s.k, dnnl_oihw);
  md4(&y, s.N, s.O, s.Ho, s.Wo, dnnl_nchw);
  dnnl_dims_t st, pl, pr;
  conv_geometry(&s, st, pl, pr);
  DNNL_OK(dnnl_convolution_backward_weights_desc_init(&bd, dnnl_convolution_direct, &x, &w, NULL, &y, st, pl, pr));
  dnnl_primitive_attr_t attr;
  DNNL_OK(dnnl_primitive_attr_create(&attr));
  DNNL_OK(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user));
  DNNL_OK(dnnl_primitive_desc_create(&pd, &bd, attr, cv.engine, hint));
  *pad_md = *dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
  dnnl_primitive_t p;
  DNNL_OK(dnnl_primitive_create(&p, pd));
  dnnl_primitive_desc_destroy(pd);
  dnnl_primitive_desc_destroy(hint);
  dnnl_primitive_attr_destroy(attr);
  return p;
}

static wg_entry *wg_get(const fl_conv_shape *s) {
  for (int i = 0; i < wg.n; i++)
    if (!memcmp(&wg.e[i].s, s, sizeof *s)) return &wg.e[i];
  static int registered;
  if (!registered) registered = 1, atexit(wg_free_all);
  if (wg.n == WG_CACHE) wg_free_all();   /* full: start over, not abort (entries live within one call) */
  wg_entry *e = &wg.e[wg.n];
  memset(e, 0, sizeof *e);
  e->s = *s;
  e->nch = s->N < WCHUNKS ? s->N : WCHUNKS;
  const int q = s->N / e->nch;
  dnnl_memory_desc_t pad_md[2];
  e->prim[0] = wg_prim(s, q, &pad_md[0]);
  if (s->N % e->nch) e->prim[1] = wg_prim(s, q + 1, &pad_md[1]);
  const size_t nw = (size_t)s->O * s->C * s->k * s->k;
  e->part = malloc((size_t)e->nch * nw * sizeof(float));
  FL_CHECK(e->part != NULL, "out of memory for the convolution weight-gradient partial sums");
  for (int c = 0; c < e->nch; c++) {
    int nb = chunk_begin(s->N, e->nch, c + 1) - chunk_begin(s->N, e->nch, c), j = nb != q;
    dnnl_memory_desc_t x, w, y;
    md4(&x, nb, s->C, s->H, s->W, dnnl_nchw);
    md4(&w, s->O, s->C, s->k, s->k, dnnl_oihw);
    md4(&y, nb, s->O, s->Ho, s->Wo, dnnl_nchw);
    size_t pad_bytes = dnnl_memory_desc_get_size(&pad_md[j]);
    e->pad[c] = malloc(pad_bytes ? pad_bytes : 1);
    FL_CHECK(e->pad[c] != NULL, "out of memory for a oneDNN scratchpad of %zu bytes", pad_bytes);
    DNNL_OK(dnnl_memory_create(&e->mem[c][0], &x, cv.engine, DNNL_MEMORY_NONE));
    DNNL_OK(dnnl_memory_create(&e->mem[c][1], &w, cv.engine, DNNL_MEMORY_NONE));
    DNNL_OK(dnnl_memory_create(&e->mem[c][2], &y, cv.engine, DNNL_MEMORY_NONE));
    DNNL_OK(dnnl_memory_create(&e->mem[c][3], &pad_md[j], cv.engine, e->pad[c]));
    DNNL_OK(dnnl_stream_create(&e->stream[c], cv.engine, dnnl_stream_default_flags));
  }
  wg.n++;
  return e;
}

void fl__cpu_conv2d_bwd_weights(const fl_conv_shape *s, float *gw, float *gb, const float *gy,
                                const float *x, int acc_w, int acc_b) {
  if (gb) fl__cpu_conv_bias_grad(s, gb, gy, acc_b);
  if (!gw) return;
  const size_t nw = (size_t)s->O * s->C * s->k * s->k;
  if (!s->N) {
    if (!acc_w) memset(gw, 0, nw * sizeof *gw);
    return;
  }
  pthread_once(&cv_once, cv_init);
  const int max = omp_get_max_threads();
  omp_set_num_threads(1);   /* oneDNN, inside the loop below, runs single-threaded */
  wg_entry *e = wg_get(s);
  const int q = s->N / e->nch;
  const size_t xs = (size_t)s->C * s->H * s->W, ys = (size_t)s->O * s->Ho * s->Wo;
#pragma omp parallel for schedule(static) num_threads(max)
  for (int c = 0; c < e->nch; c++) {
    int b0 = chunk_begin(s->N, e->nch, c), nb = chunk_begin(s->N, e->nch, c + 1) - b0;
    DNNL_OK(dnnl_memory_set_data_handle(e->mem[c][0], (void *)(x + b0 * xs)));
    DNNL_OK(dnnl_memory_set_data_handle(e->mem[c][1], e->part + c * nw));
    DNNL_OK(dnnl_memory_set_data_handle(e->mem[c][2], (void *)(gy + b0 * ys)));
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, e->mem[c][0]}, {DNNL_ARG_DIFF_WEIGHTS, e->mem[c][1]},
                               {DNNL_ARG_DIFF_DST, e->mem[c][2]}, {DNNL_ARG_SCRATCHPAD, e->mem[c][3]}};
    DNNL_OK(dnnl_primitive_execute(e->prim[nb != q], e->stream[c], 4, args));
    DNNL_OK(dnnl_stream_wait(e->stream[c]));
  }
  omp_set_num_threads(max);
  const int nch = e->nch;
  const float *P = e->part;
#pragma omp parallel for schedule(static) if (nw * nch >= 65536)
  for (size_t i = 0; i < nw; i++) {
    float t = acc_w ? gw[i] : 0.0f;
    for (int c = 0; c < nch; c++) t += P[c * nw + i];
    gw[i] = t;
  }
}

static fl_conv_shape pool_shape(int NC, int H, int W, int k, int Ho, int Wo) {
  fl_conv_shape s = {1, NC, H, W, NC, k, k, 0, Ho, Wo};
  return s;
}

void fl__cpu_avg_pool_fwd(float *y, const float *x, int NC, int H, int W, int k, int Ho, int Wo) {
  if (!NC) return;
  pthread_once(&cv_once, cv_init);
  fl_conv_shape s = pool_shape(NC, H, W, k, Ho, Wo);
  cv_run(cv_get(K_POOL_FWD, &s), (void *)x, y, NULL, NULL);
}

void fl__cpu_avg_pool_bwd(float *gx, const float *gy, int NC, int H, int W, int k, int Ho, int Wo, int acc) {
  if (!NC) return;
  pthread_once(&cv_once, cv_init);
  fl_conv_shape s = pool_shape(NC, H, W, k, Ho, Wo);
  size_t n = (size_t)NC * H * W;
  float *dst = acc ? scratch(n) : gx;
  cv_run(cv_get(K_POOL_BWD, &s), dst, (void *)gy, NULL, NULL);
  if (acc) add_into(gx, dst, n);
}

#endif /* FL_NO_DNNL */
