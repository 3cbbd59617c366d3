/* DataLoader: batches of (pixels / 255 as float, int32 labels) from a uint8 dataset, shuffled
 * per epoch, prepared ahead by worker threads; DataLoaders (get_dls); fl_batch helpers.
 *
 * Every batch is a pure function of (the epoch's permutation, its index): batch i gathers
 * rows perm[i*bs .. i*bs + B) into a slot. Three ways to run that same fill():
 *  - inline (n_workers = 0): next() fills the single slot in the caller's thread;
 *  - workers (n_workers > 0, host dataset): a ring of n_workers + 2 slots, batch i in slot
 *    i % n_slots; workers claim batch indices in order and fill ahead of the caller, at most
 *    n_slots - 1 ahead of the batch the caller holds (so its slot is never overwritten while
 *    in use). They block on a condition variable when there is nothing to do;
 *  - device (dataset uploaded with fl_dataset_to): one slot of device tensors; the epoch's
 *    permutation is uploaded once at begin() and the backend's gather_xy builds
 *    each batch on the device. No threads.
 * So the batches are bitwise the same whatever the mode or thread count.
 *
 * Host conversion: (float)v / 255.0f, a division as PyTorch's x / 255. (AVX2 vdivps, or a
 * 256-entry table of the same quotients). With fl_dataloader_set_norm the conv models' input
 * normalisation ((x - mean) / std, the course's BatchTransformCB(_norm)) is fused into that same
 * pass: the same f32 operations, so the same bits as a separate pass, with no second sweep.
 */
#ifdef __AVX2__
#include <immintrin.h>
#endif
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "fl/data.h"

typedef struct dl_slot {
  fl_tensor *x, *y;     /* owning, full size: (bs, row) or (bs, c, h, w) f32 / (bs) i32 */
  fl_tensor vx, vy;     /* handed out: views of x, y with shape[0] = rows in the batch */
  int64_t batch;        /* batch index it holds this epoch; -1: none (workers mode) */
} dl_slot;

struct fl_dataloader {
  const fl_dataset *ds;
  fl_dataloader_cfg cfg;
  int64_t n, nb;        /* rows, batches per epoch */
  int row;              /* c * h * w */
  const fl_backend *be; /* device mode: the backend that gathers; NULL on the host */
  fl_device dev;        /* where the buffers are (the dataset's device at set-up) */
  const uint8_t *src_x; /* rows to gather from (host or device) */
  const int32_t *src_y;
  int32_t *perm;        /* (n) host permutation of the current epoch */
  int32_t *dperm;       /* (n) its device copy (device mode), else == perm */
  float lut[256];       /* host mode: lut[v] = (float)v / 255.0f, normalised when norm is set */
  int norm;             /* fl_dataloader_set_norm: ((float)v / 255.0f - mean) / std */
  float mean, std;
  uint64_t epoch;       /* begin() calls so far */
  int started;          /* begin() was called at least once */

  dl_slot *slots;
  int n_slots;

  /* workers mode: everything below the mutex is guarded by it */
  pthread_t *th;
  int n_th;
  pthread_mutex_t mu;
  pthread_cond_t work_cv;   /* workers wait: something to claim, or stop */
  pthread_cond_t done_cv;   /* the caller waits: a batch is ready, or no worker is busy */
  int stop;
  int active;               /* an epoch is in progress: workers may claim */
  int64_t claim;            /* next batch index a worker will prepare */
  int64_t cur;              /* batches handed out this epoch; the caller holds cur - 1 */
  int busy;                 /* workers filling a slot right now */
};

/* ---- filling a batch ---- */
/* out[b, :] = (float)src[idx[b] * row + j] / 255.0f   out (B, row), src (n, row), idx (B)
 * Vectorised (AVX-512: multiply + FMA correction; AVX2: vdivps), the same bits as the scalar
 * quotient; the table of the 256 quotients, which compilers do not vectorise, does the tail.
 * Rows are scattered through 47 MB, so a later row is prefetched while one is converted. */
static void host_gather_u8(const float *lut, float *out, const uint8_t *src, const int32_t *idx,
                           int B, int row, int par, const int32_t *next, int next_B, int norm, float mean,
                           float std) {
  /* par: the caller's thread may split the rows over the OpenMP pool (never from a worker) */
#pragma omp parallel for schedule(static) if (par && (long)B * row >= (1L << 16))
  for (int b = 0; b < B; b++) {
    const uint8_t *s = src + (size_t)idx[b] * (size_t)row;
    float *o = out + (size_t)b * (size_t)row;
    if (b + 4 < B) {   /* rows are scattered: ask for a later one while converting this one */
      const char *nx = (const char *)(src + (size_t)idx[b + 4] * (size_t)row);
      for (int k = 0; k < row; k += 64) __builtin_prefetch(nx + k);
    }
    /* and for row b of the next batch, which this same thread will convert (static split):
     * it arrives in this core's caches while the step computes, not while the next gather waits.
     * Low locality: it is not needed until then. */
    if (b < next_B) {
      const char *nb = (const char *)(src + (size_t)next[b] * (size_t)row);
      for (int k = 0; k < row; k += 64) __builtin_prefetch(nb + k, 0, 1);
    }
    int j = 0;
#if defined(__AVX512F__)
    /* q = x * (1/255), then one FMA step corrects it to the correctly rounded x / 255: the same
     * bits as the division for all 256 inputs (tests/test_data.c checks every one), at twice
     * the speed of vdivps. */
    const __m512 d16 = _mm512_set1_ps(255.0f), r16 = _mm512_set1_ps(1.0f / 255.0f);
    const __m512 m16 = _mm512_set1_ps(mean), s16 = _mm512_set1_ps(std);
    for (; j + 16 <= row; j += 16) {
      __m128i v = _mm_loadu_si128((const __m128i *)(s + j));
      __m512 f = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(v));
      __m512 q = _mm512_mul_ps(f, r16);
      q = _mm512_fmadd_ps(_mm512_fnmadd_ps(q, d16, f), r16, q);
      if (norm) q = _mm512_div_ps(_mm512_sub_ps(q, m16), s16);   /* (x - mean) / std, fused */
      _mm512_storeu_ps(o + j, q);
    }
#endif
#ifdef __AVX2__
    const __m256 d = _mm256_set1_ps(255.0f), m8 = _mm256_set1_ps(mean), s8 = _mm256_set1_ps(std);
    for (; j + 8 <= row; j += 8) {
      __m128i v = _mm_loadl_epi64((const __m128i *)(s + j));
      __m256 f = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v));
      __m256 q = _mm256_div_ps(f, d);
      if (norm) q = _mm256_div_ps(_mm256_sub_ps(q, m8), s8);
      _mm256_storeu_ps(o + j, q);
    }
#endif
    for (; j < row; j++) o[j] = lut[s[j]];
  }
  (void)norm, (void)mean, (void)std;
}

static void host_gather_i32(int32_t *out, const int32_t *src, const int32_t *idx, int B) {
  for (int b = 0; b < B; b++) out[b] = src[idx[b]];
}

/* Builds batch i of the current epoch into slot s (any thread; touches only s). */
static void fill(fl_dataloader *dl, dl_slot *s, int64_t i) {
  int64_t off = i * dl->cfg.bs;
  int B = (int)(dl->n - off < dl->cfg.bs ? dl->n - off : dl->cfg.bs);
  if (dl->be) {
    FL_CHECK(!dl->norm, "fl_dataloader: input normalisation on a device loader");   /* set_norm refuses it */
    dl->be->gather_xy(s->x->data, s->y->data, dl->src_x, dl->src_y, dl->dperm + off, B, dl->row, 255.0f);
  } else {
    /* inline (no workers): also prefetch the next batch's rows of this epoch */
    int64_t noff = off + dl->cfg.bs;
    int nB = dl->th == NULL && noff < dl->n ? (int)(dl->n - noff < dl->cfg.bs ? dl->n - noff : dl->cfg.bs) : 0;
    host_gather_u8(dl->lut, s->x->data, dl->src_x, dl->perm + off, B, dl->row, dl->th == NULL,
                   nB ? dl->perm + noff : NULL, nB, dl->norm, dl->mean, dl->std);
    host_gather_i32(s->y->data, dl->src_y, dl->perm + off, B);
  }
  s->vx.shape[0] = B;
  s->vy.shape[0] = B;
}

/* ---- workers ---- */
static int can_claim(const fl_dataloader *dl) {
  return dl->active && dl->claim < dl->nb && dl->claim < dl->cur - 1 + dl->n_slots;
}

static void *worker_main(void *arg) {
  fl_dataloader *dl = arg;
  pthread_mutex_lock(&dl->mu);
  for (;;) {
    while (!dl->stop && !can_claim(dl)) pthread_cond_wait(&dl->work_cv, &dl->mu);
    if (dl->stop) break;
    int64_t i = dl->claim++;
    dl_slot *s = &dl->slots[i % dl->n_slots];
    dl->busy++;
    pthread_mutex_unlock(&dl->mu);
    fill(dl, s, i);
    pthread_mutex_lock(&dl->mu);
    s->batch = i;
    dl->busy--;
    pthread_cond_broadcast(&dl->done_cv);
  }
  pthread_mutex_unlock(&dl->mu);
  return NULL;
}

/* Epoch k's permutation: Fisher-Yates over 0..n-1 drawing from (seed, FL_STREAM_SHUFFLE) with
 * the counter starting at k << 40 (2^40 draws per epoch: far more than any n needs). */
static void make_perm(int32_t *p, int64_t n, uint64_t seed, uint64_t k) {
  for (int64_t i = 0; i < n; i++) p[i] = (int32_t)i;
  fl_rng r = fl_rng_make(seed, FL_STREAM_SHUFFLE);
  r.counter = k << 40;
  for (int64_t i = n - 1; i > 0; i--) {
    int64_t j = (int64_t)fl_rng_below(&r, (uint64_t)i + 1);
    int32_t t = p[i];
    p[i] = p[j];
    p[j] = t;
  }
}

/* ---- creation ---- */
static fl_status slot_init(fl_dataloader *dl, dl_slot *s, fl_device dev) {
  const fl_dataset *ds = dl->ds;
  int64_t bs = dl->cfg.bs;
  int64_t xs[4] = {bs, ds->c, ds->h, ds->w};
  if (dl->cfg.flat) xs[1] = dl->row;
  s->x = fl_tensor_new(FL_F32, dev, dl->cfg.flat ? 2 : 4, xs);
  s->y = fl_tensor_new1(FL_I32, dev, bs);
  if (!s->x || !s->y)
    return fl_error(FL_ERR_NOMEM, "fl_dataloader_new: out of %s memory for a batch of %d",
                    fl_device_name(dev), dl->cfg.bs);
  s->vx = *s->x;
  s->vy = *s->y;
  s->vx.owned = s->vy.owned = NULL;   /* views: the loader owns the storage */
  s->vx.grad = s->vy.grad = NULL;
  s->vx.name = "x";
  s->vy.name = "y";
  s->batch = -1;
  return FL_OK;
}

/* Stops the workers and frees every buffer; the struct (and its mutex) stay. */
static void dl_teardown(fl_dataloader *dl) {
  if (dl->th) {
    pthread_mutex_lock(&dl->mu);
    dl->stop = 1;
    pthread_cond_broadcast(&dl->work_cv);
    pthread_mutex_unlock(&dl->mu);
    for (int i = 0; i < dl->n_th; i++) pthread_join(dl->th[i], NULL);
    free(dl->th);
  }
  dl->th = NULL;
  dl->n_th = 0;
  dl->stop = dl->active = dl->busy = 0;
  for (int i = 0; dl->slots && i < dl->n_slots; i++) {
    fl_tensor_free(dl->slots[i].x);
    fl_tensor_free(dl->slots[i].y);
  }
  free(dl->slots);
  dl->slots = NULL;
  dl->n_slots = 0;
  if (dl->be && dl->dperm != dl->perm) dl->be->free(dl->dperm);
  free(dl->perm);
  dl->perm = dl->dperm = NULL;
  dl->be = NULL;
}

static void dl_free(fl_dataloader *dl) {
  dl_teardown(dl);
  pthread_cond_destroy(&dl->work_cv);
  pthread_cond_destroy(&dl->done_cv);
  pthread_mutex_destroy(&dl->mu);
  free(dl);
}

static fl_status dl_setup(fl_dataloader *dl);
static void make_lut(fl_dataloader *dl);

static fl_status dl_new(const fl_dataset *ds, const fl_dataloader_cfg *cfg, fl_dataloader **out) {
  FL_CHECK(ds != NULL && cfg != NULL && out != NULL, "fl_dataloader_new: NULL argument");
  *out = NULL;
  if (cfg->bs <= 0)
    return fl_error(FL_ERR_ARG, "fl_dataloader_new: bs (batch size) must be > 0, got %d", cfg->bs);
  if (cfg->n_workers < 0 || cfg->n_workers > 64)
    return fl_error(FL_ERR_ARG, "fl_dataloader_new: n_workers must be in 0..64, got %d",
                    cfg->n_workers);
  FL_CHECK(ds->n >= 0 && ds->n <= INT32_MAX && ds->c > 0 && ds->h > 0 && ds->w > 0 &&
               (int64_t)ds->c * ds->h * ds->w <= INT32_MAX,
           "fl_dataloader_new: bad dataset dimensions (n %lld, c %d, h %d, w %d)",
           (long long)ds->n, ds->c, ds->h, ds->w);
  FL_CHECK(ds->device == FL_CPU || (ds->dev_x && ds->dev_y),
           "fl_dataloader_new: dataset on %s without device copies", fl_device_name(ds->device));

  fl_dataloader *dl = fl_xcalloc(1, sizeof *dl);
  dl->ds = ds;
  dl->cfg = *cfg;
  dl->n = ds->n;
  dl->nb = (ds->n + cfg->bs - 1) / cfg->bs;
  dl->row = ds->c * ds->h * ds->w;
  pthread_mutex_init(&dl->mu, NULL);
  pthread_cond_init(&dl->work_cv, NULL);
  pthread_cond_init(&dl->done_cv, NULL);
  dl->std = 1.0f;
  make_lut(dl);

  fl_status st = dl_setup(dl);
  if (st) {
    dl_free(dl);
    return st;
  }
  *out = dl;
  return FL_OK;
}

/* Builds the buffers (and workers) for where the dataset lives now. */
static fl_status dl_setup(fl_dataloader *dl) {
  const fl_dataset *ds = dl->ds;
  const fl_dataloader_cfg *cfg = &dl->cfg;
  fl_status st = FL_OK;
  fl_device dev = ds->device;
  dl->dev = dev;
  dl->perm = malloc((size_t)(ds->n ? ds->n : 1) * sizeof(int32_t));
  if (!dl->perm) {
    st = fl_error(FL_ERR_NOMEM, "fl_dataloader_new: out of memory for %lld indices",
                  (long long)ds->n);
    goto fail;
  }
  for (int64_t i = 0; i < dl->n; i++) dl->perm[i] = (int32_t)i;   /* identity until begin() */
  dl->dperm = dl->perm;
  if (dev == FL_CPU) {
    dl->src_x = ds->x;
    dl->src_y = ds->y;
  } else {
    dl->be = fl_backend_for(dev);
    dl->src_x = ds->dev_x;
    dl->src_y = ds->dev_y;
    size_t pb = (size_t)(ds->n ? ds->n : 1) * sizeof(int32_t);
    dl->dperm = dl->be->alloc(pb);
    if (!dl->dperm) {
      st = fl_error(FL_ERR_NOMEM, "fl_dataloader_new: out of %s memory for %lld indices",
                    fl_device_name(dev), (long long)ds->n);
      goto fail;
    }
    dl->be->from_host(dl->dperm, dl->perm, pb);   /* identity: all an unshuffled loader needs */
  }

  int workers = dev == FL_CPU ? cfg->n_workers : 0;
  dl->n_slots = workers ? workers + 2 : 1;
  dl->slots = fl_xcalloc((size_t)dl->n_slots, sizeof *dl->slots);
  for (int i = 0; i < dl->n_slots && !st; i++) st = slot_init(dl, &dl->slots[i], dev);
  if (st) goto fail;

  if (workers) {
    dl->th = fl_xcalloc((size_t)workers, sizeof *dl->th);
    for (; dl->n_th < workers; dl->n_th++)
      if (pthread_create(&dl->th[dl->n_th], NULL, worker_main, dl) != 0) {
        st = fl_error(FL_ERR_NOMEM, "fl_dataloader_new: cannot start worker thread %d of %d",
                      dl->n_th + 1, workers);
        goto fail;
      }
  }
  return FL_OK;
fail:
  dl_teardown(dl);
  return st;
}

fl_status fl_dataloader_follow(fl_dataloader *dl) {
  FL_CHECK(dl != NULL, "fl_dataloader_follow: dl is NULL");
  if (dl->ds->device == dl->dev) return FL_OK;
  dl_teardown(dl);
  dl->started = 0;
  fl_status st = dl_setup(dl);
  if (st != FL_OK) {   /* stay usable on the host: batches are then copied one by one */
    fl_dataset *ds = (fl_dataset *)dl->ds;
    fl_device want = ds->device;
    ds->device = FL_CPU;
    fl_status back = dl_setup(dl);
    ds->device = want;
    FL_CHECK(back == FL_OK, "fl_dataloader_follow: %s", fl_last_error());
  }
  return st;
}

uint64_t fl_dataloader_epoch(const fl_dataloader *dl) {
  FL_CHECK(dl != NULL, "fl_dataloader_epoch: dl is NULL");
  return dl->epoch;
}

void fl_dataloader_set_epoch(fl_dataloader *dl, uint64_t epoch) {
  FL_CHECK(dl != NULL, "fl_dataloader_set_epoch: dl is NULL");
  dl->epoch = epoch;
}

fl_dataloader *fl_dataloader_new(const fl_dataset *ds, const fl_dataloader_cfg *cfg) {
  fl_dataloader *dl;
  return dl_new(ds, cfg, &dl) == FL_OK ? dl : NULL;
}

void fl_dataloader_free(fl_dataloader *dl) {
  if (dl) dl_free(dl);
}

int64_t fl_dataloader_len(const fl_dataloader *dl) {
  FL_CHECK(dl != NULL, "fl_dataloader_len: dl is NULL");
  return dl->nb;
}

const fl_dataset *fl_dataloader_dataset(const fl_dataloader *dl) {
  FL_CHECK(dl != NULL, "fl_dataloader_dataset: dl is NULL");
  return dl->ds;
}

int fl_dataloader_bs(const fl_dataloader *dl) {
  FL_CHECK(dl != NULL, "fl_dataloader_bs: dl is NULL");
  return dl->cfg.bs;
}

static void make_lut(fl_dataloader *dl) {
  for (int v = 0; v < 256; v++) {
    float x = (float)v / 255.0f;
    dl->lut[v] = dl->norm ? (x - dl->mean) / dl->std : x;
  }
}

fl_status fl_dataloader_set_norm(fl_dataloader *dl, float mean, float std) {
  FL_CHECK(dl != NULL, "fl_dataloader_set_norm: dl is NULL");
  if (!isfinite(mean) || !isfinite(std) || std == 0)
    return fl_error(FL_ERR_ARG, "input normalisation: mean %g and std %g must be finite, std non-zero",
                    (double)mean, (double)std);
  int on = !(mean == 0 && std == 1);
  if (on && dl->be)
    return fl_error(FL_ERR_ARG, "input normalisation runs in the host loader; this loader gathers on %s",
                    fl_device_name(dl->dev));
  if (dl->th) {   /* the workers must not read the table while it changes: abandon the epoch */
    pthread_mutex_lock(&dl->mu);
    dl->active = 0;
    while (dl->busy) pthread_cond_wait(&dl->done_cv, &dl->mu);
    for (int i = 0; i < dl->n_slots; i++) dl->slots[i].batch = -1;
    dl->started = 0;
  }
  dl->norm = on;
  dl->mean = mean;
  dl->std = std;
  make_lut(dl);
  if (dl->th) pthread_mutex_unlock(&dl->mu);
  else dl->started = 0;
  return FL_OK;
}

/* ---- iteration ---- */
void fl_dataloader_begin(fl_dataloader *dl) { fl_dataloader_begin_at(dl, 0); }

void fl_dataloader_begin_at(fl_dataloader *dl, int64_t first) {
  FL_CHECK(dl != NULL, "fl_dataloader_begin: dl is NULL");
  FL_CHECK(first >= 0 && first <= dl->nb, "fl_dataloader_begin_at: batch %lld of %lld", (long long)first,
           (long long)dl->nb);
  uint64_t k = dl->epoch++;
  if (!dl->th) {
    if (dl->cfg.shuffle) {
      make_perm(dl->perm, dl->n, dl->cfg.seed, k);
      if (dl->be) dl->be->from_host(dl->dperm, dl->perm, (size_t)dl->n * sizeof(int32_t));
    }
    dl->cur = first;
    dl->started = 1;
    return;
  }
  pthread_mutex_lock(&dl->mu);
  dl->active = 0;                        /* abandon the epoch in progress */
  while (dl->busy) pthread_cond_wait(&dl->done_cv, &dl->mu);
  for (int i = 0; i < dl->n_slots; i++) dl->slots[i].batch = -1;
  if (dl->cfg.shuffle) make_perm(dl->perm, dl->n, dl->cfg.seed, k);  /* workers are idle */
  dl->claim = first;                     /* batch i still goes to slot i % n_slots */
  dl->cur = first;
  dl->active = 1;
  dl->started = 1;
  pthread_cond_broadcast(&dl->work_cv);
  pthread_mutex_unlock(&dl->mu);
}

static void set_batch(fl_dataloader *dl, fl_batch *b, dl_slot *s, int64_t i) {
  memset(b, 0, sizeof *b);
  b->t[0] = &s->vx;
  b->t[1] = &s->vy;
  b->n = 2;
  b->n_inp = 1;
  b->idx = dl->perm + i * dl->cfg.bs;   /* the host permutation: fixed until the next begin() */
  b->epoch = dl->epoch - 1;
}

int fl_dataloader_next(fl_dataloader *dl, fl_batch *b) {
  FL_CHECK(dl != NULL && b != NULL, "fl_dataloader_next: NULL argument");
  FL_CHECK(dl->started, "fl_dataloader_next: call fl_dataloader_begin first");
  if (!dl->th) {
    if (dl->cur >= dl->nb) return 0;
    int64_t i = dl->cur++;
    fill(dl, &dl->slots[0], i);
    set_batch(dl, b, &dl->slots[0], i);
    return 1;
  }
  pthread_mutex_lock(&dl->mu);
  if (dl->cur >= dl->nb) {
    pthread_mutex_unlock(&dl->mu);
    return 0;
  }
  int64_t i = dl->cur++;                 /* releases the slot of batch i - 1 */
  pthread_cond_broadcast(&dl->work_cv);
  dl_slot *s = &dl->slots[i % dl->n_slots];
  while (s->batch != i) pthread_cond_wait(&dl->done_cv, &dl->mu);
  pthread_mutex_unlock(&dl->mu);
  set_batch(dl, b, s, i);
  return 1;
}

/* ---- batches ---- */
int64_t fl_batch_size(const fl_batch *b) {
  FL_CHECK(b != NULL && b->n > 0 && b->t[0] != NULL, "fl_batch_size: empty batch");
  return b->t[0]->shape[0];
}

fl_status fl_batch_to(fl_batch *b, fl_device dev, fl_batch *cache) {
  FL_CHECK(b != NULL && cache != NULL && b != cache, "fl_batch_to: bad arguments");
  FL_CHECK(b->n >= 0 && b->n <= FL_BATCH_MAX, "fl_batch_to: batch has %d tensors", b->n);
  for (int i = 0; i < b->n; i++) {
    fl_tensor *src = b->t[i];
    FL_CHECK(src != NULL, "fl_batch_to: b->t[%d] is NULL", i);
    if (src->device == dev) continue;
    FL_CHECK(fl_is_contiguous(src), "fl_batch_to: b->t[%d] is not contiguous", i);
    int64_t ne = fl_numel(src);
    fl_tensor *c = cache->t[i];
    if (!c || c->dtype != src->dtype || c->device != dev || cache->cap[i] < ne) {
      fl_tensor_free(c);
      cache->t[i] = NULL;
      cache->cap[i] = 0;
      c = fl_tensor_new(src->dtype, dev, src->ndim, src->shape);
      if (!c) return fl_error(FL_ERR_NOMEM, "fl_batch_to: out of %s memory for a batch tensor "
                              "of %lld elements", fl_device_name(dev), (long long)ne);
      cache->t[i] = c;
      cache->cap[i] = ne;
    }
    /* reshape the cache tensor to src's shape, contiguous (its storage holds cap >= ne) */
    c->ndim = src->ndim;
    int64_t st = 1;
    for (int d = src->ndim - 1; d >= 0; d--) {
      c->shape[d] = src->shape[d];
      c->stride[d] = st;
      st *= src->shape[d];
    }
    fl_tensor_copy(c, src);
    b->t[i] = c;
  }
  cache->n = b->n;
  cache->n_inp = b->n_inp;
  return FL_OK;
}

void fl_batch_cache_free(fl_batch *cache) {
  if (!cache) return;
  for (int i = 0; i < FL_BATCH_MAX; i++) fl_tensor_free(cache->t[i]);
  memset(cache, 0, sizeof *cache);
}

/* ---- DataLoaders ---- */
fl_status fl_get_dls(fl_dataloaders *dls, const fl_dataset *train, const fl_dataset *valid,
                     int bs, uint64_t seed, int n_workers, int flat) {
  FL_CHECK(dls != NULL && train != NULL && valid != NULL, "fl_get_dls: NULL argument");
  dls->train = dls->valid = NULL;
  if (bs <= 0 || bs > INT32_MAX / 2)
    return fl_error(FL_ERR_ARG, "fl_get_dls: bs (batch size) must be in 1..%d, got %d",
                    INT32_MAX / 2, bs);
  fl_dataloader_cfg tc = {.bs = bs, .shuffle = 1, .seed = seed, .n_workers = n_workers,
                          .flat = flat};
  fl_dataloader_cfg vc = {.bs = 2 * bs, .shuffle = 0, .seed = seed, .n_workers = n_workers,
                          .flat = flat};
  fl_status st = dl_new(train, &tc, &dls->train);
  if (!st) st = dl_new(valid, &vc, &dls->valid);
  if (st) fl_dataloaders_free(dls);
  return st;
}

void fl_dataloaders_free(fl_dataloaders *dls) {
  if (!dls) return;
  fl_dataloader_free(dls->train);
  fl_dataloader_free(dls->valid);
  dls->train = dls->valid = NULL;
}
