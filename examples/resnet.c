/* resnet: the course's path from the plain CNN to the ResNet (miniai's 10_activations and
 * 13_resnet notebooks), in C with the public API only (flexlearn.h). Each section prints a
 * "== ... ==" header and then what the notebook prints.
 *
 *   build/examples/resnet [--data DIR] [--seed N] [--threads N] [--epochs N] [--bs N]
 *
 * --data: the Fashion-MNIST IDX files (default $FLEXLEARN_DATA or /usr/share/datasets/fashion-mnist)
 * --seed: seeds init and shuffling (default 1, the notebooks' set_seed(1)); --threads: CPU
 * threads (default 2); --epochs: the ResNet's epochs (default 1; the notebook trains 5);
 * --bs: batch size (default 1024, the notebooks').
 *
 * 1. The baseline CNN of 10_activations at lr 0.6, plain SGD: training falls apart (the notebook:
 *    train accuracy 0.206, loss 2.226; valid 0.505).
 * 2. The ResNet of 13_resnet: its summary, then training as the notebook does: inputs normalised,
 *    AdamW (torch's defaults) with OneCycleLR (max_lr 2e-2) over every batch (the notebook: 5
 *    epochs, valid accuracy 0.814, 0.887, 0.910, 0.922, 0.928).
 * Exit status: 0 done, 1 a runtime failure (missing data...), 2 bad usage. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flexlearn.h"

typedef struct ctx {
  const fl_dataset *train, *valid;
  uint64_t seed;
  int bs, epochs;
} ctx;

static void header(const char *title) { printf("\n== %s ==\n", title); }
static const char *why(fl_status s) { return fl_last_error()[0] ? fl_last_error() : fl_status_str(s); }

/* metrics = MetricsCB(accuracy=MulticlassAccuracy()) */
static fl_callback *metrics_cb(void) {
  fl_metric *acc = fl_multiclass_accuracy_new();
  const char *name = "accuracy";
  return fl_metrics_cb_new(1, &acc, &name);
}

/* Learner(model, dls, F.cross_entropy, lr, cbs=[TrainCB(), DeviceCB(), metrics, ProgressCB()],
 * opt_func).fit(epochs): the per-epoch lines as the notebook prints them. The conv ops run on the
 * CPU only so far: DeviceCB(cpu). one_cycle: the ResNet's recipe, NormalizeCB (BatchTransformCB
 * with _norm) and BatchSchedCB(OneCycleLR(lr, epochs * len(dls.train))) with AdamW. */
static fl_status fit(const ctx *c, fl_module *model, float lr, int epochs, int one_cycle) {
  fl_dataloaders dls = {0};
  /* DataLoaders.from_dd(tds, bs): images as (N, 1, 28, 28) (flat 0), valid at 2*bs */
  fl_status s = fl_get_dls(&dls, c->train, c->valid, c->bs, c->seed, 1, 0);
  if (s != FL_OK) return s;
  fl_callback *cbs[5] = {fl_device_cb_new(FL_CPU), metrics_cb(), fl_progress_cb_new(0, NULL, stdout, 0)};
  int n = 3;
  fl_schedule sched = {0};
  if (one_cycle) {
    cbs[n++] = fl_normalize_cb_new(0.28f, 0.35f);   /* xmean, xstd = 0.28, 0.35 */
    sched = fl_onecycle(lr, (int64_t)epochs * fl_dataloader_len(dls.train));
    cbs[n++] = fl_batch_sched_cb_new(&sched);
  }
  fl_learner *l = fl_learner_new(model, &dls, fl_cross_entropy, lr, cbs, n, one_cycle ? fl_adamw_new : fl_sgd_new,
                                 &fl_train_ops);
  double t0 = fl_now();
  s = fl_fit(l, epochs, 1, 1, NULL, 0, 0);
  if (s == FL_OK) printf("(%.1f s; weights fnv1a %016llx)\n", fl_now() - t0, (unsigned long long)fl_module_hash(model));
  fl_learner_free(l);
  fl_dataloaders_free(&dls);
  return s;
}

/* ---- 1. 10_activations: the baseline CNN at lr 0.6 ---- */
static fl_status baseline(const ctx *c) {
  header("Baseline CNN (10_activations): lr 0.6, plain SGD");
  /* def cnn_layers(): conv(1,8,ks=5) #14x14, conv(8,16) #7x7, conv(16,32) #4x4, conv(32,64) #2x2,
   *                   conv(64,10,act=False) #1x1, nn.Flatten()   -- each stride 2 */
  fl_module *model = fl_model_new("cnn", c->seed);
  int64_t in[4] = {1, 1, 28, 28};
  fl_status s = fl_module_summary(model, 4, in, stdout);
  /* set_seed(1); learn = fit(nn.Sequential(*cnn_layers())): no input normalisation in that notebook */
  if (s == FL_OK) s = fit(c, model, 0.6f, 1, 0);
  if (s == FL_OK)
    printf("The notebook: train 0.206 / 2.226, valid 0.505 / 1.334: at this lr the training falls apart,\n"
           "which is what the rest of the course (init, normalisation, BatchNorm, ResNets) fixes.\n");
  fl_module_free(model);
  return s;
}

/* ---- 2. 13_resnet: the ResNet ---- */
static fl_status resnet(const ctx *c) {
  header("ResNet (13_resnet)");
  /* model = get_model(act_gr, norm=nn.BatchNorm2d).apply(iw); learn.summary() */
  fl_module *model = fl_model_new("resnet", c->seed);
  int64_t in[4] = {c->bs, 1, 28, 28};
  fl_status s = fl_module_summary(model, 4, in, stdout);
  printf("(the notebook: 1,228,908 params)\n");
  /* lr = 2e-2; learn = TrainLearner(model, dls, F.cross_entropy, lr=lr, cbs=cbs+xtra, opt_func=optim.AdamW)
   * with xtra = [BatchSchedCB(partial(lr_scheduler.OneCycleLR, max_lr=lr, total_steps=tmax))] */
  if (s == FL_OK) s = fit(c, model, 2e-2f, c->epochs, 1);
  fl_module_free(model);
  return s;
}

static int usage(const char *why_) {
  fprintf(stderr, "resnet: %s\nusage: resnet [--data DIR] [--seed N] [--threads N] [--epochs N] [--bs N]\n", why_);
  return 2;
}

int main(int argc, char **argv) {
  const char *data = NULL;
  ctx c = {.seed = 1, .bs = 1024, .epochs = 1};
  int threads = 2;
  for (int i = 1; i < argc; i++) {
    const char *f = argv[i];
    if (i + 1 >= argc) return usage("every flag needs a value");
    const char *v = argv[++i];
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    int num = !errno && end != v && !*end && x >= 0;
    if (!strcmp(f, "--data")) data = v;
    else if (!strcmp(f, "--seed") && num) c.seed = (uint64_t)x;
    else if (!strcmp(f, "--threads") && num && x >= 1 && x <= 1024) threads = (int)x;
    else if (!strcmp(f, "--epochs") && num && x >= 1 && x <= 1000) c.epochs = (int)x;
    else if (!strcmp(f, "--bs") && num && x >= 2 && x <= 1 << 20) c.bs = (int)x;
    else return usage("unknown flag or bad value");
  }
  fl_init(threads);
  fl_dataset *train = NULL, *valid = NULL;
  fl_status s = fl_fashion_mnist(data, &train, &valid);
  if (s != FL_OK) {
    fprintf(stderr, "resnet: %s\n", why(s));
    return 1;
  }
  c.train = train, c.valid = valid;
  s = baseline(&c);
  if (s == FL_OK) s = resnet(&c);
  if (s != FL_OK) fprintf(stderr, "resnet: %s\n", why(s));
  fl_dataset_free(train), fl_dataset_free(valid);
  return s == FL_OK ? 0 : 1;
}
