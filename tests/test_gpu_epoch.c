/* A full epoch on the GPU against the same epoch on the CPU (same seed, same batches): the
 * metrics must agree within tolerance; with SGD, and with AdamW + OneCycle stepped per batch
 * (whose moments must then live on the GPU with the model). Skips without a GPU. Uses Fashion-MNIST when it is
 * present ($FLEXLEARN_DATA or the default directory), else skips too.
 *
 * Tolerances: the GPU sums in other orders (cuBLAS, tree reductions), so weights drift apart
 * by float rounding over 59 steps; valid accuracy within 0.01 absolute and valid loss within
 * 2 % relative, and train loss/accuracy likewise. */
#include <math.h>

#include "flexlearn.h"
#include "test.h"

static fl_log_entry g_log[2][4];   /* [device][phase entries] */
static int g_n[2];
static int g_adamw;                /* run_epoch trains with AdamW + BatchSchedCB(OneCycle) */

static void capture(void *ctx, const fl_log_entry *e) {
  int d = (int)(intptr_t)ctx;
  if (g_n[d] < 4) g_log[d][g_n[d]++] = *e;
}

static fl_status run_epoch(fl_device dev, fl_dataset *train, fl_dataset *valid) {
  fl_dataloaders dls;
  fl_status s = fl_get_dls(&dls, train, valid, 1024, 7, 0, 1);
  if (s != FL_OK) return s;
  fl_module *m = fl_get_model(7, 784, 50, 10);
  fl_metric *acc = fl_multiclass_accuracy_new();
  const char *name = "accuracy";
  fl_callback *cbs[3] = {fl_train_cb_new(1), fl_device_cb_new(dev), fl_metrics_cb_new(1, &acc, &name)};
  fl_metrics_cb *mc = (fl_metrics_cb *)cbs[2];
  mc->log = capture;
  mc->log_ctx = (void *)(intptr_t)(dev == FL_CUDA);
  fl_learner *l = fl_learner_new(m, &dls, fl_cross_entropy, g_adamw ? 1e-2f : 0.2f, cbs, 3,
                                 g_adamw ? fl_adamw_new : fl_sgd_new, NULL);
  fl_schedule sc = fl_onecycle(1e-2, fl_dataloader_len(dls.train));
  if (g_adamw) fl_learner_add_cb(l, fl_batch_sched_cb_new(&sc));
  s = fl_fit(l, 1, 1, 1, NULL, 0, 0);
  if (g_adamw && s == FL_OK) {
    EXPECT(l->opt->n_bufs == 2 && l->opt->n_steps == fl_dataloader_len(dls.train));
    for (int i = 0; i < l->opt->n_bufs; i++) EXPECT(l->opt->bufs[i]->device == dev);
  }
  fl_learner_free(l);
  fl_module_free(m);
  fl_dataloaders_free(&dls);
  return s;
}

static void test_epoch_gpu_vs_cpu(void) {
  if (!fl_cuda_available()) SKIP(fl_backend_cuda_reason());
  fl_dataset *tr, *va;
  if (fl_fashion_mnist(NULL, &tr, &va) != FL_OK) SKIP("Fashion-MNIST not found");
  fl_dataset *tr2, *va2;   /* separate copies: DeviceCB uploads the GPU run's datasets */
  EXPECT(fl_fashion_mnist(NULL, &tr2, &va2) == FL_OK);
  EXPECTF(run_epoch(FL_CPU, tr, va) == FL_OK, "%s", fl_last_error());
  EXPECTF(run_epoch(FL_CUDA, tr2, va2) == FL_OK, "%s", fl_last_error());
  EXPECT(g_n[0] == 2 && g_n[1] == 2);
  for (int p = 0; p < 2 && g_n[0] == 2 && g_n[1] == 2; p++) {
    printf("phase %s: cpu acc %.4f loss %.4f | cuda acc %.4f loss %.4f\n", p ? "valid" : "train",
           g_log[0][p].values[0], g_log[0][p].values[1], g_log[1][p].values[0], g_log[1][p].values[1]);
    EXPECT(fabs(g_log[0][p].values[0] - g_log[1][p].values[0]) <= 0.01);
    EXPECT_NEAR(g_log[1][p].values[1], g_log[0][p].values[1], 0.02);
  }
  fl_dataset_free(tr), fl_dataset_free(va), fl_dataset_free(tr2), fl_dataset_free(va2);
}

static void test_epoch_adamw_onecycle_gpu_vs_cpu(void) {
  g_adamw = 1;
  g_n[0] = g_n[1] = 0;
  test_epoch_gpu_vs_cpu();
  g_adamw = 0;
}

int main(void) {
  fl_init(2);
  RUN(test_epoch_gpu_vs_cpu);
  RUN(test_epoch_adamw_onecycle_gpu_vs_cpu);
  return test_summary();
}
