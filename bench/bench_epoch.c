/* The epoch benchmark behind `make bench` (see bench/bench.sh).
 *
 * Times, in one process, the lesson's epoch (train 60000: fwd + bwd + SGD; valid 10000: fwd;
 * accuracy and weighted loss accumulated) three ways:
 *   bare     the loop written directly on the core API (DataLoader, ops, SGD, metrics);
 *   learner  the Learner with TrainCB, MetricsCB and ProgressCB (output to /dev/null), i.e.
 *            what `flexlearn fit` runs;
 *   gemm     the epoch's matrix products only, on real buffers (the floor of the CPU path).
 * Prints one line per measurement: `bench-epoch: bs=... threads=... mode=... ms=... `
 * (median of the epochs after a warm-up epoch), the data loading time and peak memory.
 *
 *   bench_epoch --bs 1024 --threads 2 --epochs 5 [--data DIR] [--device cpu|cuda] [--workers N]
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "backend/backend.h"
#include "flexlearn.h"

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* One epoch written directly on the core API: what the Learner adds is measured against it. */
static double bare_epoch(fl_module *m, fl_optimizer *opt, fl_dataloaders *dls, fl_graph *g,
                         fl_metric *acc, fl_metric *loss, fl_batch *cache, fl_device dev) {
  double t0 = fl_now();
  fl_batch b;
  for (int train = 1; train >= 0; train--) {
    fl_dataloader *dl = train ? dls->train : dls->valid;
    fl_metric_reset(acc), fl_metric_reset(loss);
    fl_graph_set_grad(g, train);
    fl_dataloader_begin(dl);
    while (fl_dataloader_next(dl, &b)) {
      fl_graph_reset(g);
      if (fl_batch_to(&b, dev, cache) != FL_OK) return NAN;
      fl_tensor *preds = fl_module_forward(m, g, b.t[0]);
      fl_tensor *l = fl_cross_entropy(g, preds, b.t[1]);
      if (train) {
        fl_backward(g, l);
        fl_opt_step(opt);
        fl_opt_zero_grad(opt);
      }
      fl_metric_update(acc, preds, b.t[1]);
      fl_mean_update(loss, l, (double)fl_batch_size(&b));
    }
    volatile double sink = fl_metric_compute(acc) + fl_metric_compute(loss);
    (void)sink;
  }
  fl_graph_set_grad(g, 1);
  return fl_now() - t0;
}

/* The epoch's GEMMs only (the five of a training step, the two of validation at 2B). */
static double gemm_epoch(int bs, fl_device dev) {
  const fl_backend *be = fl_backend_for(dev);
  int B2 = 2 * bs;
  size_t n = (size_t)B2 * 784 + 784 * 50 * 2 + (size_t)B2 * 50 * 3 + (size_t)B2 * 10 * 3 + 500 + 50;
  float *buf = be->alloc(n * sizeof(float));
  be->memset0(buf, n * sizeof(float));
  float *X = buf, *W1 = X + (size_t)B2 * 784, *dW1 = W1 + 784 * 50, *H = dW1 + 784 * 50,
        *dH = H + (size_t)B2 * 50, *Y = dH + (size_t)B2 * 50, *dY = Y + (size_t)B2 * 10, *W2 = dY + (size_t)B2 * 10,
        *dW2 = W2 + 500;
  double t0 = fl_now();
  for (int done = 0; done < 60000; done += bs) {
    int B = 60000 - done < bs ? 60000 - done : bs;
    be->gemm(0, 1, B, 50, 784, 1, X, 784, W1, 784, 0, H, 50);
    be->gemm(0, 1, B, 10, 50, 1, H, 50, W2, 50, 0, Y, 10);
    be->gemm(0, 0, B, 50, 10, 1, dY, 10, W2, 50, 0, dH, 50);
    be->gemm(1, 0, 10, 50, B, 1, dY, 10, H, 50, 1, dW2, 50);
    be->gemm(1, 0, 50, 784, B, 1, dH, 50, X, 784, 1, dW1, 784);
  }
  for (int done = 0; done < 10000; done += B2) {
    int B = 10000 - done < B2 ? 10000 - done : B2;
    be->gemm(0, 1, B, 50, 784, 1, X, 784, W1, 784, 0, H, 50);
    be->gemm(0, 1, B, 10, 50, 1, H, 50, W2, 50, 0, Y, 10);
  }
  be->sync();
  double t = fl_now() - t0;
  be->free(buf);
  return t;
}

int main(int argc, char **argv) {
  int bs = 1024, threads = 2, epochs = 5, workers = 0;
  const char *data = NULL, *device = "cpu";
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--bs")) bs = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--epochs")) epochs = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--workers")) workers = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--data")) data = argv[i + 1];
    else if (!strcmp(argv[i], "--device")) device = argv[i + 1];
    else { fprintf(stderr, "bench_epoch: unknown flag %s\n", argv[i]); return 2; }
  }
  if (bs <= 0 || threads <= 0 || epochs < 2) { fprintf(stderr, "bench_epoch: bad --bs/--threads/--epochs\n"); return 2; }
  fl_device dev = !strcmp(device, "cuda") ? FL_CUDA : FL_CPU;
  if (dev == FL_CUDA && !fl_cuda_available()) { fprintf(stderr, "bench_epoch: %s\n", fl_backend_cuda_reason()); return 1; }
  fl_init(threads);

  double t0 = fl_now();
  fl_dataset *train, *valid;
  if (fl_fashion_mnist(data, &train, &valid) != FL_OK) { fprintf(stderr, "bench_epoch: %s\n", fl_last_error()); return 1; }
  double t_data = fl_now() - t0;
  if (dev != FL_CPU && (fl_dataset_to(train, dev) != FL_OK || fl_dataset_to(valid, dev) != FL_OK)) {
    fprintf(stderr, "bench_epoch: %s\n", fl_last_error());
    return 1;
  }
  fl_dataloaders dls;
  if (fl_get_dls(&dls, train, valid, bs, 42, dev == FL_CPU ? workers : 0, 1) != FL_OK) {
    fprintf(stderr, "bench_epoch: %s\n", fl_last_error());
    return 1;
  }
  double *t = malloc((size_t)epochs * sizeof *t);

  /* bare loop */
  fl_module *m = fl_get_model(42, 784, 50, 10);
  if (fl_module_to(m, dev) != FL_OK) { fprintf(stderr, "bench_epoch: %s\n", fl_last_error()); return 1; }
  fl_optimizer *opt = fl_sgd_new(m, 0.2f);
  fl_graph *g = fl_graph_new();
  fl_metric *acc = fl_multiclass_accuracy_new(), *loss = fl_mean_new();
  fl_batch cache = {0};
  for (int e = 0; e < epochs; e++) t[e] = bare_epoch(m, opt, &dls, g, acc, loss, &cache, dev);
  double bare = median(t + 1, epochs - 1);
  double acc_bare = fl_metric_compute(acc);
  fl_metric_free(acc), fl_metric_free(loss), fl_graph_free(g), fl_opt_free(opt), fl_module_free(m);
  fl_batch_cache_free(&cache);

  /* the Learner as the CLI runs it (metrics, NaN guard, progress to /dev/null) */
  FILE *null = fopen("/dev/null", "w");
  m = fl_get_model(42, 784, 50, 10);
  fl_metric *a = fl_multiclass_accuracy_new();
  const char *name = "accuracy";
  fl_callback *cbs[5] = {fl_train_cb_new(1), fl_device_cb_new(dev), fl_metrics_cb_new(1, &a, &name),
                         fl_nan_cb_new(dev == FL_CPU ? 1 : 8), fl_progress_cb_new(0, NULL, null, 0)};
  fl_learner *l = fl_learner_new(m, &dls, fl_cross_entropy, 0.2f, cbs, 5, fl_sgd_new, NULL);
  ((fl_metrics_cb *)cbs[2])->log_ctx = null;
  for (int e = 0; e < epochs; e++) {
    double s = fl_now();
    if (fl_fit(l, 1, 1, 1, NULL, 0, 0) != FL_OK) { fprintf(stderr, "bench_epoch: %s\n", fl_last_error()); return 1; }
    t[e] = fl_now() - s;
  }
  double learner = median(t + 1, epochs - 1);
  double acc_learner = ((fl_metrics_cb *)cbs[2])->last.values[0];
  fl_learner_free(l), fl_module_free(m);
  fclose(null);

  for (int e = 0; e < epochs; e++) t[e] = gemm_epoch(bs, dev);
  double gemm = median(t + 1, epochs - 1);

  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  printf("bench-epoch: device=%s bs=%d threads=%d data_s=%.3f bare_ms=%.1f learner_ms=%.1f gemm_ms=%.1f "
         "peak_rss_mb=%.1f acc_bare=%.3f acc_learner=%.3f\n",
         fl_device_name(dev), bs, threads, t_data, 1e3 * bare, 1e3 * learner, 1e3 * gemm,
         ru.ru_maxrss / 1024.0, acc_bare, acc_learner);
  free(t);
  fl_dataloaders_free(&dls);
  fl_dataset_free(train), fl_dataset_free(valid);
  return 0;
}
