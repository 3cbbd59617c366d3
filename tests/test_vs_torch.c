/* The whole training loop against PyTorch: one epoch of the lesson (bs 1024, lr 0.2, SGD) from
 * flexlearn's initial weights and in flexlearn's sample order, trained by flexlearn's Learner
 * and by PyTorch (tools/epoch_vs_torch.py): the final weights must agree within 1e-5 absolute
 * (fp32 over 59 steps of 784-long sums; measured ~2e-7) and the valid metrics to 3 decimals.
 * The same with the course's recipe, AdamW (weight_decay 0.01) + OneCycleLR(max_lr 1e-2,
 * total_steps 59) stepped per batch (BatchSchedCB): the same tolerances.
 * Skips when Debian's python3-torch or the Fashion-MNIST files are not there. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "flexlearn.h"
#include "test.h"

static int have_torch(void) {
  return access("/usr/bin/python3", X_OK) == 0 &&
         system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") == 0;
}

static void write_floats(const char *path, fl_module *m) {
  fl_tensor *p[8];
  int n = fl_module_parameters(m, p, 8);
  FILE *f = fopen(path, "wb");
  for (int i = 0; i < n; i++) {
    size_t k = (size_t)fl_numel(p[i]);
    float *h = malloc(k * sizeof *h);
    fl_tensor_to_host(p[i], h);
    fwrite(h, sizeof *h, k, f);
    free(h);
  }
  fclose(f);
}

/* The order the loader will use in its first epoch: a copy of the dataset whose first three
 * pixels encode each row's index, run through a loader with the same configuration. */
static void write_order(const char *path, const fl_dataset *tr, int bs, uint64_t seed) {
  fl_dataset id = *tr;
  id.x = calloc((size_t)tr->n * 784, 1);
  for (int64_t i = 0; i < tr->n; i++)
    for (int k = 0; k < 3; k++) id.x[i * 784 + k] = (uint8_t)(i >> (8 * k));
  fl_dataloader_cfg cfg = {bs, 1, seed, 0, 1};
  fl_dataloader *dl = fl_dataloader_new(&id, &cfg);
  fl_dataloader_begin(dl);
  fl_batch b;
  FILE *f = fopen(path, "wb");
  while (fl_dataloader_next(dl, &b)) {
    const float *x = b.t[0]->data;
    for (int64_t r = 0; r < b.t[0]->shape[0]; r++) {
      int32_t i = 0;
      for (int k = 0; k < 3; k++) i |= (int32_t)(x[r * 784 + k] * 255.0f + 0.5f) << (8 * k);
      fwrite(&i, sizeof i, 1, f);
    }
  }
  fclose(f);
  fl_dataloader_free(dl);
  free(id.x);
}

static void epoch_vs_pytorch(int adamw) {
  if (!have_torch()) SKIP("no PyTorch at /usr/bin/python3 (apt-get install python3-torch)");
  fl_dataset *tr, *va;
  if (fl_fashion_mnist(NULL, &tr, &va) != FL_OK) SKIP("Fashion-MNIST not found");
  char dir[] = "/tmp/fl_vs_torch_XXXXXX";
  EXPECT(mkdtemp(dir) != NULL);
  char init[64], order[64], final[64], cmd[512];
  snprintf(init, sizeof init, "%s/init.bin", dir);
  snprintf(order, sizeof order, "%s/order.bin", dir);
  snprintf(final, sizeof final, "%s/final.bin", dir);
  const uint64_t seed = 1;
  fl_module *m = fl_get_model(seed, 784, 50, 10);
  write_floats(init, m);
  write_order(order, tr, 1024, seed);
  fl_dataloaders dls;
  EXPECT(fl_get_dls(&dls, tr, va, 1024, seed, 0, 1) == FL_OK);
  fl_metric *acc = fl_multiclass_accuracy_new();
  const char *name = "accuracy";
  fl_callback *cbs[2] = {fl_train_cb_new(1), fl_metrics_cb_new(1, &acc, &name)};
  fl_metrics_cb *mc = (fl_metrics_cb *)cbs[1];
  mc->log = NULL;
  const float lr = adamw ? 1e-2f : 0.2f;
  fl_learner *l = fl_learner_new(m, &dls, fl_cross_entropy, lr, cbs, 2, adamw ? fl_adamw_new : fl_sgd_new, NULL);
  fl_schedule sc = fl_onecycle(lr, fl_dataloader_len(dls.train));
  if (adamw) fl_learner_add_cb(l, fl_batch_sched_cb_new(&sc));
  EXPECT(fl_fit(l, 1, 1, 1, NULL, 0, 0) == FL_OK);
  write_floats(final, m);
  /* %.17g: Python's max_lr is exactly the float flexlearn's schedule starts from */
  snprintf(cmd, sizeof cmd, "/usr/bin/python3 tools/epoch_vs_torch.py '%s' %s %s %s 1024 %.17g%s",
           fl_default_data_dir(), init, order, final, (double)lr, adamw ? " adamw onecycle" : "");
  FILE *p = popen(cmd, "r");
  char line[256] = "";
  double tacc = -1, tloss = -1, dw = 1;
  while (p && fgets(line, sizeof line, p))
    if (sscanf(line, "torch: acc=%lf loss=%lf max_dw=%lf", &tacc, &tloss, &dw) == 3) break;
  EXPECT(p && pclose(p) == 0);
  printf("  %s: flexlearn: acc=%.4f loss=%.4f | torch: acc=%.4f loss=%.4f | max |dw| %.3g\n",
         adamw ? "AdamW+OneCycle" : "SGD", mc->last.values[0], mc->last.values[1], tacc, tloss, dw);
  EXPECTF(dw <= 1e-5, "weights differ from PyTorch's by %g", dw);
  EXPECT(fabs(mc->last.values[0] - tacc) < 5e-4 && fabs(mc->last.values[1] - tloss) < 5e-4);
  fl_learner_free(l);
  fl_module_free(m);
  fl_dataloaders_free(&dls);
  fl_dataset_free(tr), fl_dataset_free(va);
  unlink(init), unlink(order), unlink(final), rmdir(dir);
}

static void test_epoch_equals_pytorch(void) { epoch_vs_pytorch(0); }
static void test_epoch_adamw_onecycle_equals_pytorch(void) { epoch_vs_pytorch(1); }

int main(void) {
  fl_init(2);
  RUN(test_epoch_equals_pytorch);
  RUN(test_epoch_adamw_onecycle_equals_pytorch);
  return test_summary();
}
