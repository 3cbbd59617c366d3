/* AugmentCB: the course's augmentation batch transforms (14_augment: RandomCrop(28, padding=1),
 * RandomHorizontalFlip, RandErase), applied per sample rather than once for the whole batch, to
 * the training batches' images after normalisation. Each sample's draws come from the
 * counter-based RNG keyed by (seed, the loader's epoch, the sample's dataset row), each transform
 * from its own counter range, so a sample is augmented the same way whatever the batch size,
 * the batch composition, the thread count or a resume, and adding one transform does not change
 * another's draws. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fl/learner.h"

/* counter layout: row << 16 | transform << 12 | draw (4096 draws each: a 5x5 rectangle's noise
 * takes 13 per channel) */
enum { OP_CROP = 0, OP_FLIP = 1, OP_ERASE = 2, OP_NOISE = 3 /* + rectangle 0..3 */ };

static fl_rng sample_rng(uint64_t seed, uint64_t epoch, int64_t index, int op) {
  fl_rng r = fl_rng_make(fl_rng_hash(seed, FL_STREAM_AUGMENT, epoch), FL_STREAM_AUGMENT);
  r.counter = ((uint64_t)index << 16) | ((uint64_t)op << 12);
  return r;
}

/* out[y][x] = in[y + dy][x + dx], 0 outside: in place, rows and columns walked so that a source
 * is read before it is overwritten. */
static void shift(float *img, int h, int w, int dy, int dx) {
  int adx = dx < 0 ? -dx : dx;
  for (int k = 0; k < h; k++) {
    int y = dy >= 0 ? k : h - 1 - k;
    float *o = img + (size_t)y * w;
    int sy = y + dy;
    if (sy < 0 || sy >= h || adx >= w) {
      memset(o, 0, (size_t)w * sizeof *o);
      continue;
    }
    const float *s = img + (size_t)sy * w;
    int n = w - adx;
    if (dx >= 0) {
      memmove(o, s + dx, (size_t)n * sizeof *o);
      memset(o + n, 0, (size_t)adx * sizeof *o);
    } else {
      memmove(o + adx, s, (size_t)n * sizeof *o);
      memset(o, 0, (size_t)adx * sizeof *o);
    }
  }
}

/* Standard normals two at a time: both outputs of one Box-Muller draw, in float (erase draws
 * ~50 a sample; fl_rng_normal's one double log and cos per value cost 2-3x more). */
typedef struct { fl_rng r; float spare; int has; } normals;
static float next_normal(normals *g) {
  if (g->has) return g->has = 0, g->spare;
  float u1 = ((float)(fl_rng_u64(&g->r) >> 40) + 1.0f) * 0x1.0p-24f;   /* (0, 1] */
  float u2 = (float)(fl_rng_u64(&g->r) >> 40) * 0x1.0p-24f;
  float rad = sqrtf(-2.0f * logf(u1)), a = 6.2831853f * u2;
  g->spare = rad * sinf(a);
  g->has = 1;
  return rad * cosf(a);
}

void fl_augment_image(float *img, int c, int h, int w, int flags, int pad, uint64_t seed, uint64_t epoch,
                      int64_t index) {
  FL_CHECK(img && c > 0 && h > 0 && w > 0 && pad >= 0 && index >= 0, "fl_augment_image: bad arguments");
  size_t plane = (size_t)h * w;
  if ((flags & FL_AUG_CROP) && pad > 0) {
    fl_rng r = sample_rng(seed, epoch, index, OP_CROP);
    int dy = (int)fl_rng_below(&r, 2 * (uint64_t)pad + 1) - pad;
    int dx = (int)fl_rng_below(&r, 2 * (uint64_t)pad + 1) - pad;
    for (int ch = 0; ch < c; ch++) shift(img + ch * plane, h, w, dy, dx);
  }
  if (flags & (FL_AUG_FLIP | FL_AUG_FLIP_ALL)) {
    fl_rng r = sample_rng(seed, epoch, index, OP_FLIP);
    if ((flags & FL_AUG_FLIP_ALL) || fl_rng_uniform(&r) < 0.5f)
      for (size_t row = 0; row < (size_t)c * h; row++) {
        float *o = img + row * w;
        for (int a = 0, b = w - 1; a < b; a++, b--) {
          float t = o[a];
          o[a] = o[b];
          o[b] = t;
        }
      }
  }
  if (flags & FL_AUG_ERASE) {
    /* rand_erase(x, pct=0.2, max_num=4): randint(0, 4) rectangles of int(0.2 h) x int(0.2 w) at
     * int(u * 0.8 * h), int(u * 0.8 * w), filled with N(0, 1) (the normalised inputs' mean and std),
     * clamped to the sample's own min and max before erasing (the notebook: the batch's) */
    fl_rng r = sample_rng(seed, epoch, index, OP_ERASE);
    const float pct = 0.2f;
    int num = (int)fl_rng_below(&r, 5);
    if (num == 0) return;
    size_t n = (size_t)c * plane;
    float mn = img[0], mx = img[0];
    for (size_t i = 1; i < n; i++) {
      if (img[i] < mn) mn = img[i];
      if (img[i] > mx) mx = img[i];
    }
    int szy = (int)(pct * (float)h), szx = (int)(pct * (float)w);
    for (int k = 0; k < num; k++) {
      int sty = (int)(fl_rng_uniform(&r) * (1 - pct) * (float)h);
      int stx = (int)(fl_rng_uniform(&r) * (1 - pct) * (float)w);
      normals g = {.r = sample_rng(seed, epoch, index, OP_NOISE + k)};   /* rectangle k's noise */
      for (int ch = 0; ch < c; ch++)
        for (int y = sty; y < sty + szy && y < h; y++)
          for (int x = stx; x < stx + szx && x < w; x++) {
            float v = next_normal(&g);
            img[ch * plane + (size_t)y * w + x] = v < mn ? mn : v > mx ? mx : v;
          }
    }
  }
}

void fl_augment_batch(float *x, int64_t B, const int32_t *idx, int c, int h, int w, int flags, int pad,
                      uint64_t seed, uint64_t epoch) {
  FL_CHECK(x && idx && B >= 0, "fl_augment_batch: bad arguments");
  size_t row = (size_t)c * h * w;
  /* samples are independent and each is a pure function of its key: any split gives the same bits.
   * Only erase (normal draws) is worth the threads: crop and flip are a memmove per row, ~0.3 ms
   * a 60000-image epoch, less than waking the pool costs on a busy machine */
#pragma omp parallel for schedule(static) if ((flags & FL_AUG_ERASE) && B * (int64_t)row >= (1 << 16))
  for (int64_t b = 0; b < B; b++) fl_augment_image(x + (size_t)b * row, c, h, w, flags, pad, seed, epoch, idx[b]);
}

/* ---- the callback ---- */
typedef struct aug_cb {
  fl_callback cb;
  int flags, pad;
  uint64_t seed;
  fl_tensor *host;      /* a device batch's images copied here and back (no device kernels yet) */
} aug_cb;

static fl_status aug_before_batch(fl_callback *cb, fl_learner *l) {
  aug_cb *a = (aug_cb *)cb;
  if (!(a->flags & FL_AUG_FLIP_ALL) && !l->training) return FL_OK;   /* on_val=False */
  fl_tensor *x = l->batch.t[0];
  if (!x || !l->batch.idx || !l->dl) return fl_error(FL_ERR_ARG, "AugmentCB: the batch does not come from a DataLoader");
  const fl_dataset *ds = fl_dataloader_dataset(l->dl);
  int64_t B = fl_batch_size(&l->batch), row = (int64_t)ds->c * ds->h * ds->w;
  FL_CHECK(x->dtype == FL_F32 && fl_is_contiguous(x) && fl_numel(x) == B * row,
           "AugmentCB: images must be contiguous f32 (B, %lld)", (long long)row);
  if (a->pad >= ds->h || a->pad >= ds->w)
    return fl_error(FL_ERR_ARG, "AugmentCB: crop padding %d is not smaller than the %dx%d image", a->pad, ds->h, ds->w);
  if (x->device == FL_CPU) {
    fl_augment_batch(x->data, B, l->batch.idx, ds->c, ds->h, ds->w, a->flags, a->pad, a->seed, l->batch.epoch);
    return FL_OK;
  }
  if (!a->host || fl_numel(a->host) < fl_numel(x)) {
    fl_tensor_free(a->host);
    a->host = fl_tensor_new(FL_F32, FL_CPU, x->ndim, x->shape);
    if (!a->host) return fl_error(FL_ERR_NOMEM, "AugmentCB: out of memory for a batch");
  }
  fl_tensor h = *a->host;   /* a view shaped as x */
  h.ndim = x->ndim;
  memcpy(h.shape, x->shape, sizeof h.shape);
  memcpy(h.stride, x->stride, sizeof h.stride);
  h.owned = NULL;
  h.grad = NULL;
  fl_tensor_copy(&h, x);
  fl_augment_batch(h.data, B, l->batch.idx, ds->c, ds->h, ds->w, a->flags, a->pad, a->seed, l->batch.epoch);
  fl_tensor_copy(x, &h);
  return FL_OK;
}

static void aug_free(fl_callback *cb) {
  fl_tensor_free(((aug_cb *)cb)->host);
  free(cb);
}

fl_callback *fl_augment_cb_new(int flags, int pad, uint64_t seed) {
  FL_CHECK(pad >= 0 && !(flags & ~(FL_AUG_CROP | FL_AUG_FLIP | FL_AUG_ERASE | FL_AUG_FLIP_ALL)),
           "fl_augment_cb_new: flags 0x%x, pad %d", flags, pad);
  aug_cb *a = fl_xcalloc(1, sizeof *a);
  a->cb.name = flags & FL_AUG_FLIP_ALL ? "FlipCB" : "AugmentCB";
  a->cb.order = FL_ORDER_AUGMENT;
  a->cb.free = aug_free;
  a->flags = flags;
  a->pad = pad;
  a->seed = seed;
  a->cb.on[FL_BEFORE_BATCH] = aug_before_batch;
  return &a->cb;
}

int fl_augment_parse(const char *list, int *flags) {
  FL_CHECK(list && flags, "fl_augment_parse: NULL argument");
  static const struct { const char *name; int flag; } names[] = {
      {"crop", FL_AUG_CROP}, {"flip", FL_AUG_FLIP}, {"erase", FL_AUG_ERASE}};
  *flags = 0;
  const char *p = list;
  for (;;) {
    const char *e = strchr(p, ',');
    size_t n = e ? (size_t)(e - p) : strlen(p);
    int found = 0;
    for (size_t k = 0; k < sizeof names / sizeof *names; k++)
      if (strlen(names[k].name) == n && !strncmp(p, names[k].name, n)) *flags |= names[k].flag, found = 1;
    if (!found) return 0;
    if (!e) return 1;
    p = e + 1;
  }
}
