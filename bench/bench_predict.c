/* The predict benchmark behind bench/predict.sh: what `flexlearn predict --data DIR` runs, timed
 * in one process. Loads the weights and the 10000 test images once, then runs fl_get_preds (the
 * Learner's validation loop with DeviceCB: gather u8 -> f32 / 255, the model in eval mode under
 * no-grad, the class and its softmax probability per image) `--reps` times after a warm-up run.
 * Prints `bench-predict: bs=.. threads=.. images=10000 ms=<median> images_per_s=.. best_ms=..
 * accuracy=..`. Also times fl_predict on whole batches already in memory (the model alone).
 *
 *   bench_predict --weights FILE.safetensors [--data DIR] [--bs 1024] [--threads 2] [--reps 20]
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flexlearn.h"

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  const char *weights = NULL, *data = NULL;
  int bs = 1024, threads = 2, reps = 20;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--weights")) weights = argv[i + 1];
    else if (!strcmp(argv[i], "--data")) data = argv[i + 1];
    else if (!strcmp(argv[i], "--bs")) bs = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--reps")) reps = atoi(argv[i + 1]);
    else return fprintf(stderr, "bench_predict: unknown flag %s\n", argv[i]), 2;
  }
  if (!weights || bs < 1 || reps < 1 || reps > 1000) return fprintf(stderr, "usage: bench_predict --weights FILE [--data DIR] [--bs N] [--threads N] [--reps N]\n"), 2;
  fl_init(threads);
  fl_module *model = fl_model_new("mlp", 0);
  fl_dataset *ds = NULL;
  if (fl_load_safetensors(model, weights) != FL_OK || fl_fashion_mnist_split(data, 0, &ds) != FL_OK)
    return fprintf(stderr, "bench_predict: %s\n", fl_last_error()), 1;
  fl_dataloader_cfg cfg = {.bs = bs, .flat = 1};
  fl_dataloader *dl = fl_dataloader_new(ds, &cfg);
  fl_callback *cbs[1] = {fl_device_cb_new(FL_CPU)};
  fl_learner *l = fl_learner_new(model, NULL, fl_cross_entropy, 0.1f, cbs, 1, NULL, &fl_train_ops);
  int32_t *cls = malloc((size_t)ds->n * sizeof *cls);
  float *p = malloc((size_t)ds->n * sizeof *p);
  double *t = malloc((size_t)reps * sizeof *t);
  int64_t n = 0;
  for (int r = -1; r < reps; r++) {   /* r = -1: warm-up */
    double t0 = fl_now();
    if (fl_get_preds(l, dl, cls, p, NULL, &n) != FL_OK || n != ds->n)
      return fprintf(stderr, "bench_predict: %s\n", fl_last_error()), 1;
    if (r >= 0) t[r] = fl_now() - t0;
  }
  int64_t correct = 0;
  for (int64_t i = 0; i < n; i++) correct += cls[i] == ds->y[i];
  qsort(t, (size_t)reps, sizeof *t, cmp_double);
  double med = reps % 2 ? t[reps / 2] : 0.5 * (t[reps / 2 - 1] + t[reps / 2]);
  printf("bench-predict: bs=%d threads=%d images=%lld ms=%.3f images_per_s=%.0f best_ms=%.3f accuracy=%.4f\n", bs,
         threads, (long long)n, 1e3 * med, (double)n / med, 1e3 * t[0], (double)correct / (double)n);

  /* the model alone: fl_predict on the test set's batches, converted to f32 once beforehand */
  int64_t nb = (ds->n + bs - 1) / bs;
  fl_tensor **xs = calloc((size_t)nb, sizeof *xs);
  float *buf = malloc((size_t)bs * 784 * sizeof *buf);
  for (int64_t b = 0; b < nb; b++) {
    int64_t rows = b == nb - 1 ? ds->n - b * bs : bs;
    for (int64_t i = 0; i < rows * 784; i++) buf[i] = ds->x[b * bs * 784 + i] / 255.0f;
    int64_t shape[2] = {rows, 784};
    xs[b] = fl_tensor_from_data(FL_F32, FL_CPU, 2, shape, buf);
  }
  fl_graph *g = fl_graph_new();
  for (int r = -1; r < reps; r++) {
    double t0 = fl_now();
    for (int64_t b = 0; b < nb; b++) {
      fl_graph_reset(g);
      if (fl_predict(model, g, xs[b], cls + b * bs, p + b * bs, NULL) != FL_OK) return 1;
    }
    if (r >= 0) t[r] = fl_now() - t0;
  }
  qsort(t, (size_t)reps, sizeof *t, cmp_double);
  med = reps % 2 ? t[reps / 2] : 0.5 * (t[reps / 2 - 1] + t[reps / 2]);
  printf("bench-predict-model: bs=%d threads=%d ms=%.3f images_per_s=%.0f\n", bs, threads, 1e3 * med, (double)n / med);
  for (int64_t b = 0; b < nb; b++) fl_tensor_free(xs[b]);
  free(xs), free(buf);
  fl_graph_free(g);
  free(cls), free(p), free(t);
  fl_learner_free(l);
  fl_dataloader_free(dl);
  fl_dataset_free(ds);
  fl_module_free(model);
  return 0;
}
