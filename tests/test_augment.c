/* Augmentation (AugmentCB, 14_augment's crop / flip / RandErase, per sample) and test-time
 * augmentation: each transform does what it says on a known image, a sample's result depends
 * only on (seed, epoch, dataset row) (not on the batch it is in, the batch size, the thread
 * count), another epoch draws differently, only training batches change, and TTA averages the
 * flipped pass. All comparisons are exact (bitwise): nothing here rounds differently by path. */
#include "flexlearn.h"
#include "test.h"

enum { H = 6, W = 5 };

static void ramp(float *x, int n, float base) {
  for (int i = 0; i < n; i++) x[i] = base + (float)i;
}

/* flip applied twice is the identity, and once it reverses each row */
static void test_flip(void) {
  float a[2 * H * W], b[2 * H * W];
  ramp(a, 2 * H * W, 1);
  memcpy(b, a, sizeof a);
  fl_augment_image(b, 2, H, W, FL_AUG_FLIP_ALL, 0, 1, 0, 3);
  for (int r = 0; r < 2 * H; r++)
    for (int x = 0; x < W; x++) EXPECT(b[r * W + x] == a[r * W + W - 1 - x]);
  fl_augment_image(b, 2, H, W, FL_AUG_FLIP_ALL, 0, 1, 0, 3);
  EXPECT(!memcmp(a, b, sizeof a));
  /* the random flip: over many rows about half flip, and twice with the same key is the identity */
  int flipped = 0;
  for (int64_t i = 0; i < 400; i++) {
    memcpy(b, a, sizeof a);
    fl_augment_image(b, 2, H, W, FL_AUG_FLIP, 0, 9, 2, i);
    int f = memcmp(a, b, sizeof a) != 0;
    flipped += f;
    fl_augment_image(b, 2, H, W, FL_AUG_FLIP, 0, 9, 2, i);
    EXPECTF(!memcmp(a, b, sizeof a), "row %lld: flip twice is not the identity", (long long)i);
  }
  EXPECTF(flipped > 150 && flipped < 250, "%d of 400 flipped (p 0.5)", flipped);
}

/* crop with pad 0 is the identity; with pad 2 it is a shift with zero fill, every shift -2..2 seen */
static void test_crop(void) {
  float a[H * W], b[H * W];
  ramp(a, H * W, 1);   /* all non-zero: a 0 can only be fill */
  for (int64_t i = 0; i < 50; i++) {
    memcpy(b, a, sizeof a);
    fl_augment_image(b, 1, H, W, FL_AUG_CROP, 0, 4, 0, i);
    EXPECT(!memcmp(a, b, sizeof a));
  }
  int seen[5][5] = {{0}};
  for (int64_t i = 0; i < 500; i++) {
    memcpy(b, a, sizeof a);
    fl_augment_image(b, 1, H, W, FL_AUG_CROP, 2, 4, 1, i);
    /* find the shift from the value at a surviving pixel: b[y][x] = a[y+dy][x+dx] */
    int dy = 99, dx = 99;
    for (int y = 0; y < H && dy == 99; y++)
      for (int x = 0; x < W; x++)
        if (b[y * W + x] != 0) {
          int k = (int)b[y * W + x] - 1;
          dy = k / W - y, dx = k % W - x;
          break;
        }
    EXPECTF(dy >= -2 && dy <= 2 && dx >= -2 && dx <= 2, "row %lld: shift (%d, %d)", (long long)i, dy, dx);
    if (dy < -2 || dy > 2 || dx < -2 || dx > 2) return;
    seen[dy + 2][dx + 2]++;
    for (int y = 0; y < H; y++)
      for (int x = 0; x < W; x++) {
        int sy = y + dy, sx = x + dx;
        float want = sy >= 0 && sy < H && sx >= 0 && sx < W ? a[sy * W + sx] : 0.0f;
        EXPECTF(b[y * W + x] == want, "row %lld shift (%d,%d) at (%d,%d): %g, want %g", (long long)i, dy, dx, y, x,
                (double)b[y * W + x], (double)want);
      }
  }
  for (int p = 0; p < 5; p++)
    for (int q = 0; q < 5; q++) EXPECTF(seen[p][q] > 0, "shift (%d, %d) never drawn in 500", p - 2, q - 2);
}

/* erase: only whole 5x5 rectangles (int(0.2 * 28)) change, to values within the sample's range;
 * 0..4 of them, each count drawn */
static void test_erase(void) {
  enum { S = 28 };
  static float a[S * S], b[S * S];
  for (int i = 0; i < S * S; i++) a[i] = -1.0f + 3.0f * (float)i / (S * S);   /* range [-1, 2) */
  int changed_any = 0, unchanged = 0;
  for (int64_t i = 0; i < 200; i++) {
    memcpy(b, a, sizeof a);
    fl_augment_image(b, 1, S, S, FL_AUG_ERASE, 0, 11, 0, i);
    int y0 = S, y1 = -1, x0 = S, x1 = -1, n = 0;
    for (int y = 0; y < S; y++)
      for (int x = 0; x < S; x++)
        if (b[y * S + x] != a[y * S + x]) {
          n++;
          EXPECT(b[y * S + x] >= a[0] && b[y * S + x] <= a[S * S - 1]);
          if (y < y0) y0 = y;
          if (y > y1) y1 = y;
          if (x < x0) x0 = x;
          if (x > x1) x1 = x;
        }
    if (!n) {
      unchanged++;
      continue;
    }
    changed_any++;
    /* the changed pixels fit in at most 4 rectangles of 5x5: at most 100 of them, the bounding
     * box at least 5 wide unless noise equalled the original (probability 0) */
    EXPECTF(n <= 100 && y1 - y0 >= 4 && x1 - x0 >= 4 && y1 <= 22 + 4 && x1 <= 22 + 4, "row %lld: %d changed in (%d..%d, %d..%d)",
            (long long)i, n, y0, y1, x0, x1);
  }
  /* randint(0, 4): none about 1 time in 5 */
  EXPECTF(unchanged > 15 && unchanged < 70 && changed_any > 100, "%d of 200 unchanged", unchanged);
  /* one rectangle: exactly a 5x5 block when the count drawn is 1 -- find such a row */
  int found = 0;
  for (int64_t i = 0; i < 200 && !found; i++) {
    memcpy(b, a, sizeof a);
    fl_augment_image(b, 1, S, S, FL_AUG_ERASE, 0, 11, 0, i);
    int n = 0, y0 = S, x0 = S;
    for (int k = 0; k < S * S; k++)
      if (b[k] != a[k]) {
        n++;
        if (k / S < y0) y0 = k / S;
        if (k % S < x0) x0 = k % S;
      }
    if (n != 25) continue;
    found = 1;
    for (int y = y0; y < y0 + 5; y++)
      for (int x = x0; x < x0 + 5; x++) EXPECTF(b[y * S + x] != a[y * S + x], "(%d,%d) inside the rectangle kept", y, x);
  }
  EXPECT(found);
}

/* A dataset of n 28x28 images and a loader over it. */
static fl_dataset *dataset(int64_t n) {
  fl_dataset *ds = calloc(1, sizeof *ds);
  ds->x = malloc((size_t)n * 784);
  ds->y = malloc((size_t)n * sizeof(int32_t));
  fl_rng r = fl_rng_make(3, FL_STREAM_USER);
  for (int64_t i = 0; i < n * 784; i++) ds->x[i] = (uint8_t)fl_rng_below(&r, 256);
  for (int64_t i = 0; i < n; i++) ds->y[i] = (int32_t)(i % 10);
  ds->device = FL_CPU, ds->n = n, ds->c = 1, ds->h = 28, ds->w = 28, ds->n_classes = 10;
  return ds;
}

/* Every epoch's augmented images, by dataset row, through loaders of batch size bs and threads. */
static float *augmented_by_row(const fl_dataset *ds, int bs, int threads, int workers, uint64_t epoch, int flags) {
  fl_init(threads);
  fl_dataloader_cfg cfg = {.bs = bs, .shuffle = 1, .seed = 5, .n_workers = workers, .flat = 1};
  fl_dataloader *dl = fl_dataloader_new(ds, &cfg);
  fl_dataloader_set_epoch(dl, epoch);
  float *out = calloc((size_t)ds->n * 784, sizeof *out);
  fl_batch b;
  fl_dataloader_begin(dl);
  while (fl_dataloader_next(dl, &b)) {
    EXPECT(b.idx && b.epoch == epoch);
    int64_t B = fl_batch_size(&b);
    fl_augment_batch(b.t[0]->data, B, b.idx, 1, 28, 28, flags, 1, 77, b.epoch);
    for (int64_t r = 0; r < B; r++) memcpy(out + (size_t)b.idx[r] * 784, (float *)b.t[0]->data + r * 784, 784 * sizeof *out);
  }
  fl_dataloader_free(dl);
  return out;
}

/* the same (seed, epoch, row): the same bits at any batch size, batch composition, thread count
 * or worker count; another epoch differs */
static void test_keyed_by_sample(void) {
  fl_dataset *ds = dataset(300);
  int all = FL_AUG_CROP | FL_AUG_FLIP | FL_AUG_ERASE;
  float *a = augmented_by_row(ds, 64, 1, 0, 3, all);
  float *b = augmented_by_row(ds, 37, 2, 0, 3, all);
  float *c = augmented_by_row(ds, 300, 2, 2, 3, all);
  float *d = augmented_by_row(ds, 64, 1, 0, 4, all);
  EXPECT(!memcmp(a, b, 300 * 784 * sizeof *a));
  EXPECT(!memcmp(a, c, 300 * 784 * sizeof *a));
  int differ = 0;
  for (int64_t i = 0; i < 300; i++) differ += memcmp(a + i * 784, d + i * 784, 784 * sizeof *a) != 0;
  EXPECTF(differ > 200, "only %d of 300 images differ between epochs 3 and 4", differ);
  /* adding a transform leaves another's draws alone: the flip of "flip" and of "flip,erase" agree */
  float *f1 = augmented_by_row(ds, 64, 1, 0, 3, FL_AUG_FLIP);
  float *f2 = augmented_by_row(ds, 50, 1, 0, 3, FL_AUG_FLIP | FL_AUG_ERASE);
  int same_flip = 0;
  for (int64_t i = 0; i < 300; i++) {   /* row 27 is never erased (rectangles start <= 22, 5 tall) */
    same_flip += !memcmp(f1 + i * 784 + 27 * 28, f2 + i * 784 + 27 * 28, 28 * sizeof *f1);
  }
  EXPECTF(same_flip == 300, "flip draws changed when erase was added (%d of 300 alike)", same_flip);
  free(a), free(b), free(c), free(d), free(f1), free(f2);
  fl_dataset_free(ds);
  fl_init(2);
}

/* ---- the callback in a fit: only training batches change; same seed same weights at 1 and 2 threads ---- */
typedef struct { fl_callback cb; double sum_train, sum_valid; } sum_cb;
static fl_status sum_before_batch(fl_callback *cb, fl_learner *l) {
  sum_cb *s = (sum_cb *)cb;
  const float *x = l->batch.t[0]->data;
  double t = 0;
  for (int64_t i = 0; i < fl_numel(l->batch.t[0]); i++) t += x[i];
  *(l->training ? &s->sum_train : &s->sum_valid) += t;
  return FL_OK;
}

static uint64_t fit_hash(fl_dataset *tr, fl_dataset *va, int threads, int augment, sum_cb *sc) {
  fl_init(threads);
  fl_dataloaders dls;
  EXPECT(fl_get_dls(&dls, tr, va, 32, 9, 0, 1) == FL_OK);
  fl_module *m = fl_model_new("mlp", 9);
  fl_callback *cbs[3] = {fl_device_cb_new(FL_CPU), &sc->cb};
  int n = 2;
  if (augment) cbs[n++] = fl_augment_cb_new(augment, 1, 9);
  fl_learner *l = fl_learner_new(m, &dls, fl_cross_entropy, 0.1f, cbs, n, fl_sgd_new, &fl_train_ops);
  EXPECT(fl_fit(l, 2, 1, 1, NULL, 0, 0) == FL_OK);
  uint64_t h = fl_module_hash(m);
  fl_learner_free(l);
  fl_module_free(m);
  fl_dataloaders_free(&dls);
  return h;
}

static void test_fit_deterministic(void) {
  fl_dataset *tr = dataset(200), *va = dataset(50);
  int all = FL_AUG_CROP | FL_AUG_FLIP | FL_AUG_ERASE;
  sum_cb s0 = {.cb = {.name = "Sum", .order = 0}}, s1 = s0, s2 = s0, s3 = s0;
  s0.cb.on[FL_BEFORE_BATCH] = s1.cb.on[FL_BEFORE_BATCH] = s2.cb.on[FL_BEFORE_BATCH] = s3.cb.on[FL_BEFORE_BATCH] =
      sum_before_batch;
  uint64_t plain = fit_hash(tr, va, 1, 0, &s0);
  uint64_t h1 = fit_hash(tr, va, 1, all, &s1), h1b = fit_hash(tr, va, 1, all, &s3);
  uint64_t h2 = fit_hash(tr, va, 2, all, &s2);
  EXPECTF(h1 == h1b && h1 == h2, "augmented weights %016llx, again %016llx, at 2 threads %016llx", (unsigned long long)h1,
          (unsigned long long)h1b, (unsigned long long)h2);
  EXPECT(h1 != plain);
  EXPECT(s1.sum_valid == s0.sum_valid);   /* validation batches untouched */
  EXPECT(s1.sum_train != s0.sum_train);
  fl_dataset_free(tr), fl_dataset_free(va);
  fl_init(2);
}

/* ---- TTA: a linear model 2 -> 2 with W = I on 1x1x2 images (class = the brighter pixel): the
 * plain pass is right on every image; the flipped pass swaps the logits, so the mean softmax is a
 * tie and the first class wins: TTA accuracy = the share of class 0. On flip-symmetric images
 * TTA equals the plain accuracy. ---- */
static void tta_case(int symmetric, double want_tta, double want_plain) {
  int64_t n = 10;
  fl_dataset *ds = calloc(1, sizeof *ds);
  ds->x = malloc((size_t)n * 2);
  ds->y = malloc((size_t)n * sizeof(int32_t));
  for (int64_t i = 0; i < n; i++) {
    int cls = i < 3 ? 0 : 1;   /* 3 of class 0 */
    ds->y[i] = cls;
    ds->x[i * 2 + cls] = 200;
    ds->x[i * 2 + 1 - cls] = symmetric ? 200 : 10;
  }
  ds->device = FL_CPU, ds->n = n, ds->c = 1, ds->h = 1, ds->w = 2, ds->n_classes = 2;
  fl_rng r = fl_rng_make(1, FL_STREAM_USER);
  fl_module *lin = fl_linear_new(2, 2, 1, &r);
  fl_module *m = fl_sequential_new(1, &lin);
  EXPECT(fl_module_collate(m) == FL_OK);
  float *w = m->flat->data;   /* weight (2, 2) then bias (2) */
  w[0] = 1, w[1] = 0, w[2] = 0, w[3] = 1, w[4] = 0, w[5] = 0;
  fl_dataloaders dls;
  EXPECT(fl_get_dls(&dls, ds, ds, 4, 1, 0, 1) == FL_OK);
  fl_callback *cbs[1] = {fl_device_cb_new(FL_CPU)};
  fl_learner *l = fl_learner_new(m, &dls, fl_cross_entropy, 0.1f, cbs, 1, NULL, &fl_train_ops);
  double tta = -1, plain = -1;
  EXPECT(fl_tta_accuracy(l, dls.valid, &tta, &plain) == FL_OK);
  EXPECTF(tta == want_tta && plain == want_plain, "tta %g (want %g), plain %g (want %g)", tta, want_tta, plain, want_plain);
  /* the model and the loader are as before */
  EXPECT(w[0] == 1 && w[1] == 0 && fl_dataloader_epoch(dls.valid) == 0);
  fl_learner_free(l);
  fl_module_free(m);
  fl_dataloaders_free(&dls);
  fl_dataset_free(ds);
}
static void test_tta(void) {
  tta_case(0, 0.3, 1.0);
  tta_case(1, 0.3, 0.3);   /* symmetric: both logits equal, class 0 wins both passes */
}

static void test_parse(void) {
  int f = -1;
  EXPECT(fl_augment_parse("crop,flip,erase", &f) && f == (FL_AUG_CROP | FL_AUG_FLIP | FL_AUG_ERASE));
  EXPECT(fl_augment_parse("flip", &f) && f == FL_AUG_FLIP);
  EXPECT(fl_augment_parse("erase,crop", &f) && f == (FL_AUG_CROP | FL_AUG_ERASE));
  EXPECT(!fl_augment_parse("rotate", &f));
  EXPECT(!fl_augment_parse("crop,", &f));
  EXPECT(!fl_augment_parse("", &f));
  EXPECT(!fl_augment_parse("crop,flipp", &f));
}

int main(void) {
  fl_init(2);
  RUN(test_flip);
  RUN(test_crop);
  RUN(test_erase);
  RUN(test_keyed_by_sample);
  RUN(test_fit_deterministic);
  RUN(test_tta);
  RUN(test_parse);
  return test_summary();
}
