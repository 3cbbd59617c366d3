/* lesson16: fast.ai lesson 16 (miniai's 09_learner notebook) section by section, in C, with the
 * public API only (flexlearn.h). Each section prints a "== ... ==" header and then what the
 * notebook prints.
 *
 *   build/examples/lesson16 [--data DIR] [--out DIR] [--seed N] [--threads N]
 *
 * --data: the Fashion-MNIST IDX files (default $FLEXLEARN_DATA or /usr/share/datasets/fashion-mnist)
 * --out:  where the plots go (progress.png, momentum.png, lr_finder_mult.png, lr_find.png; default .)
 * --seed: seeds every model's init and the shuffling (default 1); --threads: CPU threads (default 2).
 *
 * Every section gets a fresh get_model() and fresh DataLoaders from the same seed, so each one
 * runs the same way whatever runs before it (in the notebook one torch.manual_seed(1) feeds them
 * all, so its numbers move a little from run to run of a cell).
 * Exit status: 0 done, 1 a runtime failure (missing data, unwritable --out...), 2 bad usage. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "flexlearn.h"

#define BS 1024   /* bs = 1024 */
#define LR 0.2f   /* lr=0.2 for every plain run */

typedef struct ctx {
  const fl_dataset *train, *valid;
  uint64_t seed;
  fl_device dev;   /* def_device */
  const char *out;
} ctx;

static void header(const char *title) { printf("\n== %s ==\n", title); }

/* The reason for a failed status, as one line. */
static const char *why(fl_status s) { return fl_last_error()[0] ? fl_last_error() : fl_status_str(s); }

/* dls = DataLoaders.from_dd(tds, bs): train shuffled at bs, valid at 2*bs, images flattened. */
static fl_status get_dls(const ctx *c, fl_dataloaders *dls) {
  return fl_get_dls(dls, c->train, c->valid, BS, c->seed, 1, 1);
}

/* def get_model(): return nn.Sequential(nn.Linear(m,nh), nn.ReLU(), nn.Linear(nh,10)) */
static fl_module *get_model(const ctx *c) { return fl_get_model(c->seed, 28 * 28, 50, 10); }

static void out_path(const ctx *c, const char *name, char *buf, size_t n) { snprintf(buf, n, "%s/%s", c->out, name); }

/* ---- 1. The first Learner: the whole loop written out by hand ---- */

/* acc = (self.preds.argmax(dim=1)==self.yb).float().sum() */
static int n_correct(const fl_tensor *preds, const fl_tensor *y, float *hp, int32_t *hy) {
  int64_t b = preds->shape[0], k = preds->shape[1];
  fl_tensor_to_host(preds, hp);
  fl_tensor_to_host(y, hy);
  int correct = 0;
  for (int64_t i = 0; i < b; i++) {
    int64_t best = 0;
    for (int64_t j = 1; j < k; j++)
      if (hp[i * k + j] > hp[i * k + best]) best = j;
    correct += best == hy[i];
  }
  return correct;
}

static fl_status first_learner(const ctx *c) {
  header("First Learner");
  fl_dataloaders dls = {0};
  fl_status s = get_dls(c, &dls);
  if (s != FL_OK) return s;
  fl_module *model = get_model(c);
  fl_graph *g = fl_graph_new();
  fl_batch cache = {0};                               /* to_device's buffers */
  float *hp = malloc(sizeof(float) * 2 * BS * 10);    /* host copies of preds and labels */
  int32_t *hy = malloc(sizeof(int32_t) * 2 * BS);
  fl_optimizer *opt = NULL;
  if (!hp || !hy) { s = fl_error(FL_ERR_NOMEM, "out of memory"); goto done; }
  /* self.model.to(def_device); self.opt = self.opt_func(self.model.parameters(), self.lr) */
  if ((s = fl_module_to(model, c->dev)) != FL_OK) goto done;
  opt = fl_sgd_new(model, LR);
  /* self.accs,self.losses,self.ns = [],[],[]  (once per fit: the notebook's False line pools
   * train and valid, n = 70000; we print that line and the valid-only one) */
  double all_loss = 0, all_acc = 0, all_n = 0;
  for (int epoch = 0; epoch < 1; epoch++) {           /* learn.fit(1) */
    for (int train = 1; train >= 0; train--) {        /* self.one_epoch(True); self.one_epoch(False) */
      fl_module_train(model, train);
      int grad = fl_graph_set_grad(g, train);
      fl_dataloader *dl = train ? dls.train : dls.valid;
      double loss_sum = 0, acc_sum = 0, n = 0;
      fl_batch b;
      fl_dataloader_begin(dl);
      while (s == FL_OK && fl_dataloader_next(dl, &b)) {   /* for self.num,self.batch in enumerate(dl) */
        fl_graph_reset(g);
        if ((s = fl_batch_to(&b, c->dev, &cache)) != FL_OK) break;   /* to_device(self.batch) */
        fl_tensor *preds = fl_module_forward(model, g, b.t[0]);       /* self.preds = self.model(self.xb) */
        fl_tensor *loss = fl_cross_entropy(g, preds, b.t[1]);         /* self.loss_func(self.preds, self.yb) */
        if (!preds || !loss) { s = fl_error(FL_ERR, "forward failed: %s", fl_last_error()); break; }
        if (train) {   /* self.loss.backward(); self.opt.step(); self.opt.zero_grad() */
          if ((s = fl_backward(g, loss)) != FL_OK || (s = fl_opt_step(opt)) != FL_OK) break;
          fl_opt_zero_grad(opt);
        }
        int64_t bn = fl_batch_size(&b);                 /* calc_stats: losses.append(self.loss*n) */
        loss_sum += fl_tensor_item(loss) * (double)bn;
        acc_sum += n_correct(preds, b.t[1], hp, hy);
        n += (double)bn;
      }
      fl_graph_set_grad(g, grad);
      if (s != FL_OK) goto done;
      all_loss += loss_sum, all_acc += acc_sum, all_n += n;
      /* print(self.epoch, self.model.training, sum(self.losses).item()/n, sum(self.accs).item()/n) */
      printf("%d %s %.6f %.6f\n", epoch, train ? "True" : "False", loss_sum / n, acc_sum / n);
      if (!train)
        printf("%d False %.6f %.6f   (the notebook's line: train+valid pooled, n = %.0f)\n", epoch,
               all_loss / all_n, all_acc / all_n, all_n);
    }
  }
done:
  fl_opt_free(opt);
  free(hp), free(hy);
  fl_batch_cache_free(&cache);
  fl_graph_free(g);
  fl_module_free(model);
  fl_dataloaders_free(&dls);
  return s;
}

/* ---- 2. Basic callbacks Learner ---- */
static fl_status basic_callbacks(const ctx *c) {
  header("Basic callbacks Learner");
  fl_dataloaders dls = {0};
  fl_status s = get_dls(c, &dls);
  if (s != FL_OK) return s;
  fl_module *model = get_model(c);
  /* cbs = [CompletionCB()]; run_cbs(cbs, 'before_fit'); run_cbs(cbs, 'after_batch'); run_cbs(cbs, 'after_fit') */
  fl_callback *cb = fl_completion_cb_new(stdout);
  fl_learner *l = fl_learner_new(model, &dls, fl_cross_entropy, LR, &cb, 1, fl_sgd_new, &fl_train_ops);
  if ((s = fl_learner_callback(l, FL_BEFORE_FIT)) == FL_OK && (s = fl_learner_callback(l, FL_AFTER_BATCH)) == FL_OK)
    s = fl_learner_callback(l, FL_AFTER_FIT);
  /* learn = Learner(model, dls, F.cross_entropy, lr=0.2, cbs=[CompletionCB()]); learn.fit(1) */
  if (s == FL_OK) s = fl_fit(l, 1, 1, 1, NULL, 0, 0);
  fl_learner_free(l);
  fl_module_free(model);
  fl_dataloaders_free(&dls);
  return s;
}

/* ---- 3. SingleBatchCB ---- */

/* A CompletionCB that reports in cleanup_fit, which runs even when the fit is cancelled (the
 * lecture's `finally: self.callback(f'after_{nm}')`). A callback of our own: on[] + ctx. */
static fl_status count_before_fit(fl_callback *cb, fl_learner *l) {
  (void)l;
  *(long *)cb->ctx = 0;
  return FL_OK;
}
static fl_status count_after_batch(fl_callback *cb, fl_learner *l) {
  (void)l;
  ++*(long *)cb->ctx;
  return FL_OK;
}
static fl_status count_cleanup_fit(fl_callback *cb, fl_learner *l) {
  (void)l;
  printf("Completed %ld batches   (reported in cleanup_fit)\n", *(long *)cb->ctx);
  return FL_OK;
}

/* learn = Learner(get_model(), dls, F.cross_entropy, lr=0.2, cbs=[SingleBatchCB(), CompletionCB()]) */
static fl_status single_batch_run(const ctx *c, fl_status cancel, int order) {
  fl_dataloaders dls = {0};
  fl_status s = get_dls(c, &dls);
  if (s != FL_OK) return s;
  fl_module *model = get_model(c);
  fl_callback *cbs[2] = {fl_single_batch_cb_new(cancel), fl_completion_cb_new(stdout)};
  cbs[0]->order = order;   /* callbacks run sorted by order (stable) */
  long count = 0;
  fl_callback counter = {.name = "CountCB", .ctx = &count};   /* not heap-owned: free stays NULL */
  counter.on[FL_BEFORE_FIT] = count_before_fit;
  counter.on[FL_AFTER_BATCH] = count_after_batch;
  counter.on[FL_CLEANUP_FIT] = count_cleanup_fit;
  fl_learner *l = fl_learner_new(model, &dls, fl_cross_entropy, LR, cbs, 2, fl_sgd_new, &fl_train_ops);
  fl_callback *extra = &counter;
  int fit_cancel = cancel == FL_CANCEL_FIT;
  printf("SingleBatchCB(%s), order %d%s\n", fit_cancel ? "CancelFit" : "CancelEpoch", order,
         fit_cancel ? ": CompletionCB prints nothing (CancelFit skips after_fit)" : ":");
  /* learn.fit(1), with the counter for this fit only when after_fit will not run */
  s = fl_fit(l, 1, 1, 1, &extra, fit_cancel, 0);
  fl_learner_free(l);
  fl_module_free(model);
  fl_dataloaders_free(&dls);
  return s;
}

static fl_status single_batch(const ctx *c) {
  header("SingleBatchCB");
  fl_status s;
  /* order = 0: "it ran and nothing happened because this canceled before this ran" */
  if ((s = single_batch_run(c, FL_CANCEL_FIT, 0)) != FL_OK) return s;
  /* order = 1: CompletionCB counts the batch first, but CancelFit skips after_fit: it prints nothing */
  if ((s = single_batch_run(c, FL_CANCEL_FIT, 1)) != FL_OK) return s;
  /* "Let's use CancelEpochException": one train batch, one valid batch, after_fit runs */
  return single_batch_run(c, FL_CANCEL_EPOCH, 1);
}

/* ---- 4. Metrics ---- */
static fl_status metrics_demo(const ctx *c) {
  (void)c;
  header("Metrics");
  /* acc = Accuracy(); acc.add(tensor([0, 1, 2, 0, 1, 2]), tensor([0, 1, 1, 2, 1, 0])) ... acc.value */
  fl_avg_metric acc;
  fl_avg_metric_init(&acc, fl_accuracy_calc);
  const float i1[] = {0, 1, 2, 0, 1, 2}, t1[] = {0, 1, 1, 2, 1, 0};
  const float i2[] = {1, 1, 2, 0, 1}, t2[] = {0, 1, 1, 2, 1};
  fl_avg_metric_add(&acc, i1, t1, 6, 1);
  fl_avg_metric_add(&acc, i2, t2, 5, 1);
  printf("acc.value: %.2f\n", fl_avg_metric_value(&acc));
  fl_avg_metric_free(&acc);

  /* loss = Metric(); loss.add(0.6, n=32); loss.add(0.9, n=2); loss.value, round((0.6*32+0.9*2)/(32+2), 2) */
  fl_avg_metric loss;
  fl_avg_metric_init(&loss, NULL);
  const float a = 0.6f, b = 0.9f;
  fl_avg_metric_add(&loss, &a, NULL, 1, 32);
  fl_avg_metric_add(&loss, &b, NULL, 1, 2);
  printf("loss.value: (%.2f, %.2f)\n", fl_avg_metric_value(&loss), round((0.6 * 32 + 0.9 * 2) / (32 + 2) * 100) / 100);
  fl_avg_metric_free(&loss);

  /* metric = MulticlassAccuracy(); metric.update(tensor([0, 2, 1, 3]), tensor([0, 1, 2, 3])); metric.compute()
   * (torcheval takes class labels; ours takes scores (B, C): one-hot rows with those argmaxes) */
  const float preds[4 * 4] = {1, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 1};
  const int32_t targs[4] = {0, 1, 2, 3};
  fl_tensor *p = fl_tensor_from_data(FL_F32, FL_CPU, 2, (int64_t[]){4, 4}, preds);
  fl_tensor *t = fl_tensor_from_data(FL_I32, FL_CPU, 1, (int64_t[]){4}, targs);
  if (!p || !t) {
    fl_tensor_free(p), fl_tensor_free(t);
    return fl_error(FL_ERR_NOMEM, "out of memory");
  }
  fl_metric *m = fl_multiclass_accuracy_new();
  fl_metric_update(m, p, t);
  printf("MulticlassAccuracy: %.2f\n", fl_metric_compute(m));
  fl_metric_reset(m);   /* metric.reset(); metric.compute() */
  printf("after reset: %.2f\n", fl_metric_compute(m));
  fl_metric_free(m);
  fl_tensor_free(p), fl_tensor_free(t);
  return FL_OK;
}

/* learn = Learner(get_model(), dls, F.cross_entropy, lr=0.2, cbs=cbs) with the learner's steps
 * from ops (NULL: from the callbacks; fl_momentum_ops: MomentumLearner(mom=0.85)); learn.fit(1).
 * Frees it all (the callbacks with the learner); *dev (may be NULL): where the model ended up. */
static fl_status fit_fresh(const ctx *c, fl_callback **cbs, int n, const fl_learner_ops *ops, fl_device *dev) {
  fl_dataloaders dls = {0};
  fl_status s = get_dls(c, &dls);
  if (s != FL_OK) {
    for (int i = 0; i < n; i++) fl_callback_free(cbs[i]);
    return s;
  }
  fl_module *model = get_model(c);
  fl_learner *l = ops == &fl_momentum_ops
                      ? fl_momentum_learner_new(model, &dls, fl_cross_entropy, LR, cbs, n, fl_sgd_new, 0.85f)
                      : fl_learner_new(model, &dls, fl_cross_entropy, LR, cbs, n, fl_sgd_new, ops);
  s = fl_fit(l, 1, 1, 1, NULL, 0, 0);
  if (dev) *dev = model->device;
  fl_learner_free(l);
  fl_module_free(model);
  fl_dataloaders_free(&dls);
  return s;
}

/* ---- 5. DeviceCB ---- */
static fl_status device_cb(const ctx *c) {
  header("DeviceCB");
  /* def_device = 'mps' if ... else 'cuda' if torch.cuda.is_available() else 'cpu' */
  printf("def_device: %s", fl_device_name(c->dev));
  if (c->dev == FL_CPU) printf("   (no GPU: %s)", fl_backend_cuda_reason());
  printf("\n");
  /* learn = Learner(get_model(), dls, F.cross_entropy, lr=0.2, cbs=[DeviceCB(), CompletionCB()]) */
  fl_callback *cbs[2] = {fl_device_cb_new(c->dev), fl_completion_cb_new(stdout)};
  fl_device dev;
  fl_status s = fit_fresh(c, cbs, 2, &fl_train_ops, &dev);
  if (s == FL_OK) printf("the model trained on: %s\n", fl_device_name(dev));
  return s;
}

/* metrics = MetricsCB(accuracy=MulticlassAccuracy()) */
static fl_callback *metrics_cb(void) {
  fl_metric *acc = fl_multiclass_accuracy_new();
  const char *name = "accuracy";
  return fl_metrics_cb_new(1, &acc, &name);
}

/* ---- 6. MetricsCB ---- */
static fl_status metrics_cb_section(const ctx *c) {
  header("MetricsCB");
  /* learn = Learner(model, dls, F.cross_entropy, lr=0.2, cbs=[DeviceCB(), metrics]); learn.fit(1) */
  fl_callback *cbs[2] = {fl_device_cb_new(c->dev), metrics_cb()};
  return fit_fresh(c, cbs, 2, &fl_train_ops, NULL);
}

/* ---- 7. Flexible Learner: the steps as events, handled by TrainCB; ProgressCB ---- */
static fl_status flexible(const ctx *c) {
  header("Flexible Learner: TrainCB + ProgressCB");
  char png[4096];
  out_path(c, "progress.png", png, sizeof png);
  /* cbs = [TrainCB(), DeviceCB(), metrics, ProgressCB(plot=True)]
   * learn = Learner(model, dls, F.cross_entropy, lr=0.2, cbs=cbs)   (no ops: __getattr__ -> callbacks) */
  fl_callback *cbs[4] = {fl_train_cb_new(1), fl_device_cb_new(c->dev), metrics_cb(), fl_progress_cb_new(1, png, stdout, -1)};
  fl_status s = fit_fresh(c, cbs, 4, NULL, NULL);
  if (s == FL_OK) printf("plot: %s\n", png);
  return s;
}

/* ---- 8. MomentumLearner: p.grad *= 0.85 instead of zeroing ---- */
static fl_status momentum(const ctx *c) {
  header("MomentumLearner");
  char png[4096];
  out_path(c, "momentum.png", png, sizeof png);
  /* cbs = [DeviceCB(), metrics, ProgressCB(plot=True)]   # NB: No TrainCB
   * learn = MomentumLearner(get_model(), dls, F.cross_entropy, lr=0.2, cbs=cbs, mom=0.85) */
  fl_callback *cbs[3] = {fl_device_cb_new(c->dev), metrics_cb(), fl_progress_cb_new(1, png, stdout, -1)};
  fl_status s = fit_fresh(c, cbs, 3, &fl_momentum_ops, NULL);
  if (s == FL_OK) printf("plot: %s\n", png);
  return s;
}

/* ---- 9. LR finder ---- */
static int argmin(const double *v, int n) {
  int best = 0;
  for (int i = 1; i < n; i++)
    if (v[i] < v[best]) best = i;
  return best;
}

static fl_status lr_finder(const ctx *c) {
  header("LR finder");
  fl_dataloaders dls = {0};
  fl_status s = get_dls(c, &dls);
  if (s != FL_OK) return s;
  char png[4096];

  /* lrfind = LRFinderCB(lr_mult=1.3); cbs = [DeviceCB(), ProgressCB(), lrfind]
   * learn = MomentumLearner(get_model(), dls, F.cross_entropy, lr=1e-4, cbs=cbs); learn.fit(1) */
  out_path(c, "lr_finder_mult.png", png, sizeof png);
  fl_module *model = get_model(c);
  fl_callback *lrfind = fl_lr_finder_cb_new(1.3f, png);
  fl_callback *cbs[3] = {fl_device_cb_new(c->dev), fl_progress_cb_new(0, NULL, stdout, -1), lrfind};
  fl_learner *l = fl_momentum_learner_new(model, &dls, fl_cross_entropy, 1e-4f, cbs, 3, fl_sgd_new, 0.85f);
  s = fl_fit(l, 1, 1, 1, NULL, 0, 0);
  if (s == FL_OK) {
    /* plt.plot(lrfind.lrs, lrfind.losses); plt.xscale('log')   (written by the callback) */
    const fl_lr_finder_cb *f = (const fl_lr_finder_cb *)lrfind;
    printf("LRFinderCB(lr_mult=1.3), lr=1e-4:\n  lr        loss\n");
    for (int i = 0; i < f->n; i += 4) printf("  %-8.2g  %.3f\n", f->lrs[i], f->losses[i]);
    int best = argmin(f->losses, f->n);
    printf("  stopped after %d of %lld batches at lr %.3g (loss %.3f > 3 x min %.3f)\n", f->n,
           (long long)fl_dataloader_len(dls.train), f->lrs[f->n - 1], f->losses[f->n - 1], f->min);
    printf("  lowest loss at lr %.3g; steepest slope at lr %.3g (the lesson: \"about 0.1\")\n", f->lrs[best],
           fl_lr_steepest(f->lrs, f->losses, f->n));
    printf("  plot: %s\n", png);
  }
  fl_learner_free(l);
  fl_module_free(model);
  if (s != FL_OK) goto done;

  /* MomentumLearner(get_model(), dls, F.cross_entropy, cbs=[DeviceCB()]).lr_find()
   * = fit(max_epochs=10, lr=start_lr=1e-5, cbs=LRFinderCB(gamma=1.3, max_mult=3)) with ExponentialLR */
  out_path(c, "lr_find.png", png, sizeof png);
  model = get_model(c);
  fl_callback *dev = fl_device_cb_new(c->dev);
  l = fl_momentum_learner_new(model, &dls, fl_cross_entropy, 0.1f, &dev, 1, fl_sgd_new, 0.85f);
  uint64_t before = fl_module_hash(model);
  float suggested = NAN;
  double *lrs = NULL, *losses = NULL;
  int n = 0;
  s = fl_lr_find(l, 1.3f, 3.0f, 1e-5f, 10, png, &suggested, &lrs, &losses, &n);
  if (s == FL_OK && n > 0) {
    int best = argmin(losses, n);
    printf("lr_find(gamma=1.3, max_mult=3, start_lr=1e-5, max_epochs=10):\n");
    printf("  ran %d batches (%.1f epochs of %lld), stopped at lr %.3g (loss %.3f)\n", n,
           (double)n / (double)fl_dataloader_len(dls.train), (long long)fl_dataloader_len(dls.train),
           lrs[n - 1], losses[n - 1]);
    printf("  lowest loss %.3f at lr %.3g; suggested lr: %.3g\n", losses[best], lrs[best], (double)suggested);
    printf("  weights restored after the search: %s\n", fl_module_hash(model) == before ? "yes" : "NO");
    printf("  plot: %s\n", png);
  }
  free(lrs), free(losses);
  fl_learner_free(l);
  fl_module_free(model);
done:
  fl_dataloaders_free(&dls);
  return s;
}

/* ---- flags ---- */
static int usage_error(const char *flag, const char *val, const char *msg) {
  fprintf(stderr, "lesson16: %s%s%s: %s\n", flag, val ? " " : "", val ? val : "", msg);
  return 2;
}

static int parse_int(const char *flag, const char *v, long lo, long hi, long *out) {
  char *end;
  errno = 0;
  long x = strtol(v, &end, 10);
  if (errno || end == v || *end || x < lo || x > hi) {
    char msg[80];
    snprintf(msg, sizeof msg, "must be an integer in %ld..%ld", lo, hi);
    return usage_error(flag, v, msg);
  }
  *out = x;
  return 0;
}

int main(int argc, char **argv) {
  const char *data = NULL, *out = ".";
  long seed = 1, threads = 2;
  for (int i = 1; i < argc; i++) {
    const char *f = argv[i];
    if (!strcmp(f, "--help") || !strcmp(f, "-h")) {
      printf("usage: lesson16 [--data DIR] [--out DIR] [--seed N] [--threads N]\n");
      return 0;
    }
    int known = !strcmp(f, "--data") || !strcmp(f, "--out") || !strcmp(f, "--seed") || !strcmp(f, "--threads");
    if (!known) return usage_error(f, NULL, "unknown flag (see --help)");
    if (i + 1 >= argc) return usage_error(f, NULL, "needs a value");
    const char *v = argv[++i];
    int r = 0;
    if (!strcmp(f, "--data")) data = v;
    else if (!strcmp(f, "--out")) out = v;
    else if (!strcmp(f, "--seed")) r = parse_int(f, v, 0, 2147483647L, &seed);
    else r = parse_int(f, v, 1, 1024, &threads);
    if (r) return r;
  }
  struct stat st;
  if (stat(out, &st) != 0 || !S_ISDIR(st.st_mode) || access(out, W_OK) != 0) {
    fprintf(stderr, "lesson16: --out %s: not a writable directory\n", out);
    return 1;
  }

  fl_init((int)threads);
  fl_dataset *train = NULL, *valid = NULL;
  fl_status s = fl_fashion_mnist(data, &train, &valid);   /* dsd = load_dataset("fashion_mnist") */
  if (s != FL_OK) {
    fprintf(stderr, "lesson16: %s\n", why(s));
    return 1;
  }
  ctx c = {train, valid, (uint64_t)seed, fl_default_device(), out};
  printf("Fashion-MNIST: %lld train, %lld valid images from %s; seed %ld, %d threads\n", (long long)train->n,
         (long long)valid->n, data ? data : fl_default_data_dir(), seed, fl_num_threads());

  fl_status (*const sections[])(const ctx *) = {first_learner, basic_callbacks, single_batch, metrics_demo, device_cb,
                                                 metrics_cb_section, flexible, momentum, lr_finder};
  for (size_t i = 0; i < sizeof sections / sizeof *sections && s == FL_OK; i++) {
    s = sections[i](&c);
    fflush(stdout);
  }
  if (s != FL_OK) fprintf(stderr, "lesson16: %s\n", why(s));
  fl_dataset_free(train), fl_dataset_free(valid);
  return s == FL_OK ? 0 : 1;
}
