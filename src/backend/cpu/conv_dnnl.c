/* CPU convolution and average pooling through oneDNN's primitives (Debian libdnnl-dev, 2.x C API).
 *
 * The library's tensors are NCHW / OIHW. A convolution primitive is created with "any" layouts,
 * so oneDNN picks its fast blocked kernels (jit:avx512_core with nChw16c here: 1.5-4x faster than
 * its gemm-based kernels on plain NCHW for the ResNet's shapes, reorders included); each
 * argument whose chosen layout is not the plain one goes through a reorder primitive into (or
 * out of) a shared workspace on every call. Pooling runs on the plain layout.
 *
 * Everything (primitive, reorders, memory objects) is created once per (kind, shape, thread
 * count) and cached, as gemm_dnnl.c does: in the steady state a call swaps data handles and
 * executes. Single caller thread (the training loop).
 *
 * `acc` (add into the gradient instead of overwriting it): the backward primitives have no sum
 * post-op, so they write into a scratch buffer that is then added. The convolution's bias
 * gradient is the fixed-order C sum in cnn_cpu.c.
 *
 * Determinism: forward and backward-data give the same bits at 1 and 2 threads (tested); the
 * weight gradient does not (oneDNN splits its reduction over the batch by thread), so it runs
 * over a fixed split of the batch (see wg_get below).
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

/* ---------------------------------------------------------------- engine, workspace */

static struct {
  dnnl_engine_t engine;
  dnnl_stream_t stream;
  char *ws;              /* blocked copies of the arguments (grown, never in the steady state) */
  size_t ws_cap;
  float *scratch;        /* a gradient to add (acc) */
  size_t scratch_cap;
  float *part;           /* the weight gradient's partial sums */
  size_t part_cap;
} cv;
static pthread_once_t cv_once = PTHREAD_ONCE_INIT;

static void cv_free_all(void);

static void cv_init(void) {
  DNNL_OK(dnnl_engine_create(&cv.engine, dnnl_cpu, 0));
  DNNL_OK(dnnl_stream_create(&cv.stream, cv.engine, dnnl_stream_default_flags));
  atexit(cv_free_all);
}

static void *grow(void *p, size_t *cap, size_t need, const char *what) {
  if (need <= *cap) return p;
  free(p);
  void *q = NULL;
  FL_CHECK(!posix_memalign(&q, 64, need), "out of memory for the %s (%zu bytes)", what, need);
  *cap = need;
  return q;
}

static char *workspace(size_t bytes) {
  cv.ws = grow(cv.ws, &cv.ws_cap, bytes ? bytes : 64, "oneDNN layout workspace");
  return cv.ws;
}

static float *scratch(size_t n) {
  cv.scratch = grow(cv.scratch, &cv.scratch_cap, n * sizeof(float), "convolution scratch buffer");
  return cv.scratch;
}

static void add_into(float *dst, const float *src, size_t n) {
#pragma omp parallel for schedule(static) if (n >= 65536)
  for (size_t i = 0; i < n; i++) dst[i] += src[i];
}

static void md4(dnnl_memory_desc_t *md, int a, int b, int c, int d, dnnl_format_tag_t tag) {
  dnnl_dims_t dims = {a, b, c, d};
  DNNL_OK(dnnl_memory_desc_init_by_tag(md, 4, dims, dnnl_f32, tag));
}

/* ---------------------------------------------------------------- a primitive with reorders */

/* One argument: `user` has the caller's plain layout; when the primitive wants another layout,
 * `prim` is that layout in the workspace at `off`, and `rd` reorders between the two (before
 * the primitive for an input, after it for an output). */
typedef struct slot {
  int arg, out;
  dnnl_memory_t user, prim;
  dnnl_primitive_t rd;
  size_t off;
} slot;

typedef struct prun {
  dnnl_primitive_t prim;
  int n;
  slot sl[4];
  dnnl_memory_t pad;         /* user scratchpad (the weight-gradient runs), else NULL */
  size_t ws_bytes;           /* workspace this run needs from its base */
} prun;

static void prun_free(prun *r) {
  if (r->prim) dnnl_primitive_destroy(r->prim);
  for (int i = 0; i < r->n; i++) {
    dnnl_memory_destroy(r->sl[i].user);
    if (r->sl[i].rd) {
      dnnl_primitive_destroy(r->sl[i].rd);
      dnnl_memory_destroy(r->sl[i].prim);
    }
  }
  if (r->pad) dnnl_memory_destroy(r->pad);
  memset(r, 0, sizeof *r);
}

static dnnl_primitive_t make_reorder(const dnnl_memory_desc_t *from, const dnnl_memory_desc_t *to, int user_pad) {
  dnnl_primitive_attr_t attr;
  DNNL_OK(dnnl_primitive_attr_create(&attr));
  if (user_pad) DNNL_OK(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user));
  dnnl_primitive_desc_t pd;
  DNNL_OK(dnnl_reorder_primitive_desc_create(&pd, from, cv.engine, to, cv.engine, attr));
  /* concurrent runs (user_pad) cannot share a library scratchpad: a plain <-> blocked f32
   * reorder needs none */
  FL_CHECK(!user_pad || dnnl_memory_desc_get_size(dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0)) == 0,
           "oneDNN: a layout reorder that needs a scratchpad");
  dnnl_primitive_t p;
  DNNL_OK(dnnl_primitive_create(&p, pd));
  dnnl_primitive_desc_destroy(pd);
  dnnl_primitive_attr_destroy(attr);
  return p;
}

/* Adds an argument whose plain layout is `user` and whose layout in pd is queried by q. */
static void prun_arg(prun *r, dnnl_primitive_desc_t pd, int arg, int out, const dnnl_memory_desc_t *user,
                     dnnl_query_t q, int user_pad) {
  slot *s = &r->sl[r->n++];
  s->arg = arg, s->out = out;
  /* the bias is the weights' second descriptor */
  const dnnl_memory_desc_t *pm = dnnl_primitive_desc_query_md(pd, q, arg == DNNL_ARG_BIAS);
  DNNL_OK(dnnl_memory_create(&s->user, user, cv.engine, DNNL_MEMORY_NONE));
  if (dnnl_memory_desc_equal(pm, user)) {
    s->prim = s->user;
    return;
  }
  DNNL_OK(dnnl_memory_create(&s->prim, pm, cv.engine, DNNL_MEMORY_NONE));
  s->rd = out ? make_reorder(pm, user, user_pad) : make_reorder(user, pm, user_pad);
  s->off = r->ws_bytes;
  r->ws_bytes += (dnnl_memory_desc_get_size(pm) + 63) & ~(size_t)63;
}

/* The scratchpad of pd in its own buffer (for runs that execute concurrently). */
static void prun_user_pad(prun *r, dnnl_primitive_desc_t pd, void **buf) {
  const dnnl_memory_desc_t *m = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
  size_t b = dnnl_memory_desc_get_size(m);
  *buf = NULL;
  FL_CHECK(!posix_memalign(buf, 64, b ? b : 64), "out of memory for a oneDNN scratchpad (%zu bytes)", b);
  DNNL_OK(dnnl_memory_create(&r->pad, m, cv.engine, *buf));
}

static void exec2(dnnl_primitive_t p, dnnl_stream_t st, dnnl_memory_t from, dnnl_memory_t to) {
  dnnl_exec_arg_t a[2] = {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}};
  DNNL_OK(dnnl_primitive_execute(p, st, 2, a));
}

/* Runs r on the caller's buffers ptr[] (in the order the arguments were added), with its
 * blocked copies in ws. */
static void prun_exec(prun *r, void *const *ptr, char *ws, dnnl_stream_t st) {
  dnnl_exec_arg_t args[5];
  for (int i = 0; i < r->n; i++) {
    slot *s = &r->sl[i];
    DNNL_OK(dnnl_memory_set_data_handle(s->user, ptr[i]));
    if (s->rd) DNNL_OK(dnnl_memory_set_data_handle(s->prim, ws + s->off));
    if (s->rd && !s->out) exec2(s->rd, st, s->user, s->prim);
    args[i] = (dnnl_exec_arg_t){s->arg, s->prim};
  }
  int n = r->n;
  if (r->pad) args[n++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, r->pad};
  DNNL_OK(dnnl_primitive_execute(r->prim, st, n, args));
  for (int i = 0; i < r->n; i++)
    if (r->sl[i].rd && r->sl[i].out) exec2(r->sl[i].rd, st, r->sl[i].prim, r->sl[i].user);
  DNNL_OK(dnnl_stream_wait(st));
}

/* ---------------------------------------------------------------- descriptors */

/* padding on the bottom / right that makes oneDNN's output size equal Ho / Wo (negative when
 * the last rows of the input are not reached; oneDNN accepts that) */
static void conv_geometry(const fl_conv_shape *s, dnnl_dims_t st, dnnl_dims_t pl, dnnl_dims_t pr) {
  st[0] = st[1] = s->stride;
  pl[0] = pl[1] = s->pad;
  pr[0] = (dnnl_dim_t)(s->Ho - 1) * s->stride + s->k - s->H - s->pad;
  pr[1] = (dnnl_dim_t)(s->Wo - 1) * s->stride + s->k - s->W - s->pad;
}

typedef struct conv_mds {
  dnnl_memory_desc_t x, w, b, y;          /* plain */
  dnnl_memory_desc_t xa, wa, ya;          /* any */
  dnnl_dims_t st, pl, pr;
} conv_mds;

/* Backward passes of convolutions with fewer than 16 channels on a side (the ResNet's first
 * blocks, 8 channels) get NHWC activations: oneDNN's blocked layout pads those channels to 16,
 * and its NHWC kernels were measured 2x faster there for backward-data (8->8 at 28x28, bs
 * 1024: 22-29 ms against 50-70) and 1.5x for backward-weights (8->16: 24-35 ms against 40-64).
 * Forward keeps "any" (no better in NHWC). A rule on the shape alone, so the same run always
 * picks the same kernels. The stem (1 input channel) keeps "any" (plain NCHW there). */
static int use_nhwc(const fl_conv_shape *s) { return s->C > 1 && (s->C % 16 || s->O % 16); }

static void conv_mds_init(conv_mds *m, const fl_conv_shape *s, int nhwc) {
  md4(&m->x, s->N, s->C, s->H, s->W, dnnl_nchw);
  md4(&m->w, s->O, s->C, s->k, s->k, dnnl_oihw);
  md4(&m->y, s->N, s->O, s->Ho, s->Wo, dnnl_nchw);
  md4(&m->xa, s->N, s->C, s->H, s->W, nhwc ? dnnl_nhwc : dnnl_format_tag_any);
  md4(&m->wa, s->O, s->C, s->k, s->k, dnnl_format_tag_any);
  md4(&m->ya, s->N, s->O, s->Ho, s->Wo, nhwc ? dnnl_nhwc : dnnl_format_tag_any);
  dnnl_dims_t bd = {s->O};
  DNNL_OK(dnnl_memory_desc_init_by_tag(&m->b, 1, bd, dnnl_f32, dnnl_a));
  conv_geometry(s, m->st, m->pl, m->pr);
}

static dnnl_primitive_desc_t conv_fwd_pd(const conv_mds *m, int bias) {
  dnnl_convolution_desc_t d;
  DNNL_OK(dnnl_convolution_forward_desc_init(&d, dnnl_forward_training, dnnl_convolution_direct, &m->xa, &m->wa,
                                             bias ? &m->b : NULL, &m->ya, m->st, m->pl, m->pr));
  dnnl_primitive_desc_t pd;
  DNNL_OK(dnnl_primitive_desc_create(&pd, &d, NULL, cv.engine, NULL));
  return pd;
}

/* ---------------------------------------------------------------- the cache */

enum { K_FWD, K_FWD_BIAS, K_BWD_DATA, K_POOL_FWD, K_POOL_BWD };

typedef struct cv_key {
  int kind, nthr;
  fl_conv_shape s;
} cv_key;

typedef struct cv_entry {
  cv_key key;
  prun r;
} cv_entry;

/* Room for a ResNet's shapes at three or four batch sizes (train, last train batch, valid...);
 * when full (a process running many models) the cache is emptied and refilled. */
#define CV_CACHE 512
static cv_entry cv_e[CV_CACHE];
static int cv_n;

static void pool_descs(const fl_conv_shape *s, dnnl_pooling_desc_t *fwd, dnnl_pooling_desc_t *bwd,
                       dnnl_memory_desc_t *x, dnnl_memory_desc_t *y) {
  md4(x, 1, s->C, s->H, s->W, dnnl_nchw);
  md4(y, 1, s->C, s->Ho, s->Wo, dnnl_nchw);
  dnnl_dims_t st = {s->k, s->k}, ker = {s->k, s->k}, pl = {0, 0};
  /* ceil mode: the partial windows at the edges as padding that the average excludes */
  dnnl_dims_t pr = {(dnnl_dim_t)s->Ho * s->k - s->H, (dnnl_dim_t)s->Wo * s->k - s->W};
  DNNL_OK(dnnl_pooling_forward_desc_init(fwd, dnnl_forward_training, dnnl_pooling_avg_exclude_padding,
                                         x, y, st, ker, pl, pr));
  DNNL_OK(dnnl_pooling_backward_desc_init(bwd, dnnl_pooling_avg_exclude_padding, x, y, st, ker, pl, pr));
}

static prun *cv_get(int kind, const fl_conv_shape *s) {
  cv_key k;
  memset(&k, 0, sizeof k);
  k.kind = kind;
  k.nthr = omp_get_max_threads();
  k.s = *s;
  for (int i = 0; i < cv_n; i++)
    if (!memcmp(&cv_e[i].key, &k, sizeof k)) return &cv_e[i].r;
  if (cv_n == CV_CACHE) {
    for (int i = 0; i < cv_n; i++) prun_free(&cv_e[i].r);
    cv_n = 0;
  }
  cv_entry *e = &cv_e[cv_n];
  memset(e, 0, sizeof *e);
  e->key = k;
  prun *r = &e->r;
  dnnl_primitive_desc_t pd = NULL, hint = NULL;
  if (kind <= K_BWD_DATA) {
    conv_mds m;
    conv_mds_init(&m, s, kind == K_BWD_DATA && use_nhwc(s));
    if (kind == K_BWD_DATA) {
      hint = conv_fwd_pd(&m, 0);
      dnnl_convolution_desc_t d;
      DNNL_OK(dnnl_convolution_backward_data_desc_init(&d, dnnl_convolution_direct, &m.xa, &m.wa, &m.ya, m.st,
                                                       m.pl, m.pr));
      DNNL_OK(dnnl_primitive_desc_create(&pd, &d, NULL, cv.engine, hint));
      prun_arg(r, pd, DNNL_ARG_DIFF_SRC, 1, &m.x, dnnl_query_diff_src_md, 0);
      prun_arg(r, pd, DNNL_ARG_WEIGHTS, 0, &m.w, dnnl_query_weights_md, 0);
      prun_arg(r, pd, DNNL_ARG_DIFF_DST, 0, &m.y, dnnl_query_diff_dst_md, 0);
    } else {
      pd = conv_fwd_pd(&m, kind == K_FWD_BIAS);
      prun_arg(r, pd, DNNL_ARG_SRC, 0, &m.x, dnnl_query_src_md, 0);
      prun_arg(r, pd, DNNL_ARG_WEIGHTS, 0, &m.w, dnnl_query_weights_md, 0);
      prun_arg(r, pd, DNNL_ARG_DST, 1, &m.y, dnnl_query_dst_md, 0);
      if (kind == K_FWD_BIAS) prun_arg(r, pd, DNNL_ARG_BIAS, 0, &m.b, dnnl_query_weights_md, 0);
    }
  } else {
    dnnl_pooling_desc_t fd, bd;
    dnnl_memory_desc_t x, y;
    pool_descs(s, &fd, &bd, &x, &y);
    DNNL_OK(dnnl_primitive_desc_create(kind == K_POOL_FWD ? &pd : &hint, &fd, NULL, cv.engine, NULL));
    if (kind == K_POOL_BWD) {
      DNNL_OK(dnnl_primitive_desc_create(&pd, &bd, NULL, cv.engine, hint));
      prun_arg(r, pd, DNNL_ARG_DIFF_SRC, 1, &x, dnnl_query_diff_src_md, 0);
      prun_arg(r, pd, DNNL_ARG_DIFF_DST, 0, &y, dnnl_query_diff_dst_md, 0);
    } else {
      prun_arg(r, pd, DNNL_ARG_SRC, 0, &x, dnnl_query_src_md, 0);
      prun_arg(r, pd, DNNL_ARG_DST, 1, &y, dnnl_query_dst_md, 0);
    }
  }
  DNNL_OK(dnnl_primitive_create(&r->prim, pd));
  dnnl_primitive_desc_destroy(pd);
  if (hint) dnnl_primitive_desc_destroy(hint);
  cv_n++;
  return r;
}

/* Threads: as for the GEMMs (gemm_dnnl.c), a call smaller than FL_CONV_PAR_MIN multiply-adds
 * (default 16M, about 0.3 ms on one core here: the ResNet's 1x1 convolutions past 7x7 and its
 * pooling) runs on one thread: waking the other costs more than it saves. A rule on the shape
 * alone; forward, backward-data and pooling give the same bits at any thread count anyway. */
static long conv_par_min = -1;

static int conv_threads(int kind, const fl_conv_shape *s) {
  if (conv_par_min < 0) {
    const char *e = getenv("FL_CONV_PAR_MIN");
    conv_par_min = e ? atol(e) : 16L << 20;
  }
  /* pooling (N = 1, C = O = the planes): one add per input element */
  double macs = kind >= K_POOL_FWD ? (double)s->C * s->H * s->W
                                   : (double)s->N * s->O * s->Ho * s->Wo * s->C * s->k * s->k;
  return macs >= (double)conv_par_min ? omp_get_max_threads() : 1;
}

static void run_cached(int kind, const fl_conv_shape *s, void *p0, void *p1, void *p2, void *p3) {
  pthread_once(&cv_once, cv_init);
  const int max = omp_get_max_threads(), nthr = conv_threads(kind, s);
  if (nthr != max) omp_set_num_threads(nthr);   /* the cache key holds the thread count */
  prun *r = cv_get(kind, s);
  void *ptr[4] = {p0, p1, p2, p3};
  prun_exec(r, ptr, workspace(r->ws_bytes), cv.stream);
  if (nthr != max) omp_set_num_threads(max);
}

/* ---------------------------------------------------------------- forward, backward-data */

void fl__cpu_conv2d_fwd(const fl_conv_shape *s, float *y, const float *x, const float *w, const float *b) {
  if (!s->N) return;
  run_cached(b ? K_FWD_BIAS : K_FWD, s, (void *)x, (void *)w, y, (void *)b);
}

void fl__cpu_conv2d_bwd_data(const fl_conv_shape *s, float *gx, const float *gy, const float *w, int acc) {
  if (!s->N) return;
  size_t n = (size_t)s->N * s->C * s->H * s->W;
  float *dst = acc ? scratch(n) : gx;
  run_cached(K_BWD_DATA, s, dst, (void *)w, (void *)gy, NULL);
  if (acc) add_into(gx, dst, n);
}

/* ---- the weight gradient: the batch split in WCHUNKS fixed parts ----
 * oneDNN's backward-weights primitive reduces over the batch in an order that depends on the
 * thread count (measured: 1 and 2 threads differ in most elements for every ResNet shape, with
 * plain and with blocked layouts; forward and backward-data agree bit for bit). So the batch
 * is cut into min(N, WCHUNKS) fixed runs of consecutive images; each is a single-threaded
 * primitive run (oneDNN called with one OpenMP thread, inside our parallel loop over the runs)
 * into its own partial buffer, and the partials are added in run order. The split depends on
 * N only, never on the thread count, so any thread count gives the same bits. Each run has its
 * own memory objects, stream, scratchpad and slice of the workspace, so runs can execute
 * concurrently. */
enum { WCHUNKS = 8 };

typedef struct wg_entry {
  fl_conv_shape s;
  int nch;
  prun r[WCHUNKS];
  void *pad[WCHUNKS];
  dnnl_stream_t stream[WCHUNKS];
  size_t ws_off[WCHUNKS + 1];
} wg_entry;

#define WG_CACHE 256
static wg_entry wg_e[WG_CACHE];
static int wg_n;

static void wg_free(wg_entry *e) {
  for (int c = 0; c < e->nch; c++) {
    prun_free(&e->r[c]);
    free(e->pad[c]);
    dnnl_stream_destroy(e->stream[c]);
  }
  memset(e, 0, sizeof *e);
}

static int chunk_begin(int N, int nch, int c) { return (int)((long)N * c / nch); }

/* Run c: a single-threaded primitive (created while OpenMP is set to one thread) on nb images. */
static void wg_run_init(wg_entry *e, int c, int nb) {
  fl_conv_shape s = e->s;
  s.N = nb;
  conv_mds m;
  conv_mds_init(&m, &s, use_nhwc(&s));
  dnnl_primitive_desc_t hint = conv_fwd_pd(&m, 0), pd;
  dnnl_convolution_desc_t d;
  DNNL_OK(dnnl_convolution_backward_weights_desc_init(&d, dnnl_convolution_direct, &m.xa, &m.wa, NULL, &m.ya,
                                                      m.st, m.pl, m.pr));
  dnnl_primitive_attr_t attr;
  DNNL_OK(dnnl_primitive_attr_create(&attr));
  DNNL_OK(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user));
  DNNL_OK(dnnl_primitive_desc_create(&pd, &d, attr, cv.engine, hint));
  prun *r = &e->r[c];
  prun_arg(r, pd, DNNL_ARG_SRC, 0, &m.x, dnnl_query_src_md, 1);
  prun_arg(r, pd, DNNL_ARG_DIFF_WEIGHTS, 1, &m.w, dnnl_query_diff_weights_md, 1);
  prun_arg(r, pd, DNNL_ARG_DIFF_DST, 0, &m.y, dnnl_query_diff_dst_md, 1);
  prun_user_pad(r, pd, &e->pad[c]);
  DNNL_OK(dnnl_primitive_create(&r->prim, pd));
  dnnl_primitive_desc_destroy(pd);
  dnnl_primitive_desc_destroy(hint);
  dnnl_primitive_attr_destroy(attr);
  DNNL_OK(dnnl_stream_create(&e->stream[c], cv.engine, dnnl_stream_default_flags));
}

static wg_entry *wg_get(const fl_conv_shape *s) {
  for (int i = 0; i < wg_n; i++)
    if (!memcmp(&wg_e[i].s, s, sizeof *s)) return &wg_e[i];
  if (wg_n == WG_CACHE) {   /* full: emptied and refilled, as the other cache */
    for (int i = 0; i < wg_n; i++) wg_free(&wg_e[i]);
    wg_n = 0;
  }
  wg_entry *e = &wg_e[wg_n];
  memset(e, 0, sizeof *e);
  e->s = *s;
  e->nch = s->N < WCHUNKS ? s->N : WCHUNKS;
  for (int c = 0; c < e->nch; c++) {
    wg_run_init(e, c, chunk_begin(s->N, e->nch, c + 1) - chunk_begin(s->N, e->nch, c));
    e->ws_off[c + 1] = e->ws_off[c] + e->r[c].ws_bytes;
  }
  wg_n++;
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
  char *ws = workspace(e->ws_off[e->nch]);
  /* the nch partial weight gradients (shared by every shape: one call at a time) */
  float *part = cv.part = grow(cv.part, &cv.part_cap, (size_t)e->nch * nw * sizeof(float), "weight-gradient partial sums");
  const size_t xs = (size_t)s->C * s->H * s->W, ys = (size_t)s->O * s->Ho * s->Wo;
#pragma omp parallel for schedule(static) num_threads(conv_threads(K_FWD, s))
  for (int c = 0; c < e->nch; c++) {
    int b0 = chunk_begin(s->N, e->nch, c);
    void *ptr[3] = {(void *)(x + b0 * xs), part + c * nw, (void *)(gy + b0 * ys)};
    prun_exec(&e->r[c], ptr, ws + e->ws_off[c], e->stream[c]);
  }
  omp_set_num_threads(max);
  const int nch = e->nch;
  const float *P = part;
#pragma omp parallel for schedule(static) if (nw * nch >= 65536)
  for (size_t i = 0; i < nw; i++) {
    float t = acc_w ? gw[i] : 0.0f;
    for (int c = 0; c < nch; c++) t += P[c * nw + i];
    gw[i] = t;
  }
}

/* ---------------------------------------------------------------- pooling */

static fl_conv_shape pool_shape(int NC, int H, int W, int k, int Ho, int Wo) {
  fl_conv_shape s = {1, NC, H, W, NC, k, k, 0, Ho, Wo};
  return s;
}

void fl__cpu_avg_pool_fwd(float *y, const float *x, int NC, int H, int W, int k, int Ho, int Wo) {
  if (!NC) return;
  fl_conv_shape s = pool_shape(NC, H, W, k, Ho, Wo);
  run_cached(K_POOL_FWD, &s, (void *)x, y, NULL, NULL);
}

void fl__cpu_avg_pool_bwd(float *gx, const float *gy, int NC, int H, int W, int k, int Ho, int Wo, int acc) {
  if (!NC) return;
  fl_conv_shape s = pool_shape(NC, H, W, k, Ho, Wo);
  size_t n = (size_t)NC * H * W;
  float *dst = acc ? scratch(n) : gx;
  run_cached(K_POOL_BWD, &s, dst, (void *)gy, NULL, NULL);
  if (acc) add_into(gx, dst, n);
}

static void cv_free_all(void) {
  for (int i = 0; i < cv_n; i++) prun_free(&cv_e[i].r);
  cv_n = 0;
  for (int i = 0; i < wg_n; i++) wg_free(&wg_e[i]);
  wg_n = 0;
  free(cv.ws);
  free(cv.scratch);
  free(cv.part);
  cv.ws = NULL;
  cv.scratch = NULL;
  cv.part = NULL;
  cv.ws_cap = cv.scratch_cap = cv.part_cap = 0;
  if (cv.stream) dnnl_stream_destroy(cv.stream);
  if (cv.engine) dnnl_engine_destroy(cv.engine);
  cv.stream = NULL;
  cv.engine = NULL;
}

#endif /* FL_NO_DNNL */
