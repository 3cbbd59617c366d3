/* SaveModelCB and EarlyStoppingCB on a tiny real fit whose monitored metric follows a scripted
 * sequence (a callback between MetricsCB and them overwrites the valid value), so which epoch is
 * "best" is known; the weights of every epoch are hashed to check what was saved / restored.
 * Also fl_predict and fl_get_preds against the validation loop's own numbers. */
#include <sys/stat.h>
#include <unistd.h>

#include "test.h"
#include "learn_fixture.h"

static char g_dir[64] = "/tmp/fl_test_best_XXXXXX";

typedef struct fx {
  fl_dataset *tr, *va;
  fl_dataloaders dls;
  fl_module *model;
} fx;

static void fx_init(fx *f, uint64_t seed) {
  f->tr = fx_dataset(32, 4, seed * 2 + 1);
  f->va = fx_dataset(20, 4, seed * 2 + 2);
  fl_status s = fl_get_dls(&f->dls, f->tr, f->va, 8, seed, 0, 1);
  FL_CHECK(s == FL_OK, "fl_get_dls: %s", fl_last_error());
  f->model = fl_get_model(seed, 4, 8, 4);
}

static void fx_free(fx *f) {
  fl_module_free(f->model);
  fl_dataloaders_free(&f->dls);
  fl_dataset_free(f->tr), fl_dataset_free(f->va);
}

/* ---- the script: order 5 (after MetricsCB's after_epoch, before SaveModelCB / EarlyStoppingCB):
 * sets the valid value of `name` to seq[epoch] and records the model's hash at each epoch ---- */
typedef struct script {
  fl_callback cb;
  const char *name;
  const double *seq;
  int n_seq;
  uint64_t hash[32];
  int epochs_seen;
} script;

static fl_status script_after_epoch(fl_callback *cb, fl_learner *l) {
  script *s = (script *)cb;
  if (l->training) return FL_OK;
  fl_log_entry *e = &l->metrics->last;
  for (int i = 0; i < e->n; i++)
    if (!strcmp(e->names[i], s->name)) e->values[i] = l->epoch < s->n_seq ? s->seq[l->epoch] : NAN;
  if (l->epoch < 32) s->hash[l->epoch] = fl_module_hash(l->model);
  s->epochs_seen++;
  return FL_OK;
}

static script *script_new(const char *name, const double *seq, int n) {
  script *s = calloc(1, sizeof *s);
  s->cb.name = "Script";
  s->cb.order = 5;
  s->cb.on[FL_AFTER_EPOCH] = script_after_epoch;
  s->name = name, s->seq = seq, s->n_seq = n;
  return s;
}

static void quiet_log(void *ctx, const fl_log_entry *e) { (void)ctx, (void)e; }

/* A learner with MetricsCB(accuracy) + loss, the script, and `extra` (owned by the learner). */
static fl_learner *learner(fx *f, script *s, fl_callback *extra) {
  fl_metric *acc = fl_multiclass_accuracy_new();
  const char *name = "accuracy";
  fl_callback *m = fl_metrics_cb_new(1, &acc, &name);
  ((fl_metrics_cb *)m)->log = quiet_log;
  fl_callback *cbs[2] = {m, extra};
  fl_learner *l = fl_learner_new(f->model, &f->dls, fl_cross_entropy, 0.3f, cbs, extra ? 2 : 1, fl_sgd_new, &fl_train_ops);
  fl_learner_add_cb(l, &s->cb);
  return l;
}

static char *path(const char *name) {
  static char buf[2][192];
  static int k;
  char *p = buf[k++ % 2];
  snprintf(p, 192, "%s/%s", g_dir, name);
  return p;
}

static uint64_t file_hash(const char *p) {
  fl_module *m = fl_get_model(999, 4, 8, 4);
  uint64_t h = fl_load_safetensors(m, p) == FL_OK ? fl_module_hash(m) : 0;
  fl_module_free(m);
  return h;
}

/* SaveModelCB: saves at each improvement; the file holds the best epoch's weights. */
static void save_run(const char *monitor, int mode, const double *seq, int n, int want_epoch, int want_saves) {
  fx f;
  fx_init(&f, 3);
  script *s = script_new(monitor, seq, n);
  const char *p = path("best.safetensors");
  unlink(p);
  fl_callback *save = fl_save_model_cb_new(p, monitor, mode, "tiny");
  fl_learner *l = learner(&f, s, save);
  EXPECT(fl_fit(l, n, 1, 1, NULL, 0, 0) == FL_OK);
  double best;
  int be, saves;
  EXPECT(fl_best_cb_info(save, &best, &be, &saves));
  EXPECTF(be == want_epoch && saves == want_saves, "%s: best epoch %d (want %d), %d saves (want %d)", monitor, be,
          want_epoch, saves, want_saves);
  if (want_epoch >= 0) {
    EXPECT(best == seq[want_epoch]);
    EXPECTF(file_hash(p) == s->hash[want_epoch], "the file holds epoch %d's weights", want_epoch);
    EXPECT(file_hash(p) != fl_module_hash(f.model) || want_epoch == n - 1);
  } else {
    EXPECT(access(p, F_OK) != 0);
  }
  EXPECT(access(path("best.safetensors.tmp"), F_OK) != 0);
  fl_learner_free(l);
  free(s);
  fx_free(&f);
}

static void test_save_model_cb(void) {
#ifdef FL_NO_CJSON
  SKIP("built without cJSON (CJSON=0): SaveModelCB writes safetensors");
#endif
  /* accuracy: max by default; a tie is no improvement; NaN never is */
  const double acc[] = {0.5, 0.7, 0.6, 0.7, 0.8, NAN};
  save_run("accuracy", FL_MODE_AUTO, acc, 6, 4, 3);
  /* loss: min by default */
  const double loss[] = {1.0, 0.9, 0.95, 0.5, 0.7};
  save_run("loss", FL_MODE_AUTO, loss, 5, 3, 3);
  /* mode forced: min of accuracy */
  save_run("accuracy", FL_MODE_MIN, acc, 5, 0, 1);
  /* nothing finite: nothing written */
  const double nans[] = {NAN, NAN};
  save_run("loss", FL_MODE_AUTO, nans, 2, -1, 0);
}

static void test_save_model_cb_errors(void) {
#ifdef FL_NO_CJSON
  SKIP("built without cJSON (CJSON=0): SaveModelCB writes safetensors");
#endif
  fx f;
  fx_init(&f, 4);
  const double seq[] = {0.5};
  /* an unknown metric: the fit fails before any batch, naming the known ones */
  script *s = script_new("accuracy", seq, 1);
  fl_learner *l = learner(&f, s, fl_save_model_cb_new(path("x.safetensors"), "f1", FL_MODE_AUTO, NULL));
  uint64_t h = fl_module_hash(f.model);
  EXPECT(fl_fit(l, 1, 1, 1, NULL, 0, 0) == FL_ERR_ARG);
  EXPECTF(strstr(fl_last_error(), "'f1'") && strstr(fl_last_error(), "accuracy, loss"), "%s", fl_last_error());
  EXPECT(fl_module_hash(f.model) == h && s->epochs_seen == 0);
  fl_learner_free(l);
  free(s);
  /* a file that cannot be written stops the fit with the I/O error */
  s = script_new("accuracy", seq, 1);
  l = learner(&f, s, fl_save_model_cb_new(path("no/such/dir/x.safetensors"), "accuracy", FL_MODE_AUTO, NULL));
  EXPECT(fl_fit(l, 1, 1, 1, NULL, 0, 0) == FL_ERR_IO);
  EXPECT(strstr(fl_last_error(), "no/such/dir/x.safetensors") != NULL);
  fl_learner_free(l);
  free(s);
  /* no MetricsCB at all */
  fl_learner *bare = fl_learner_new(f.model, &f.dls, fl_cross_entropy, 0.3f, NULL, 0, fl_sgd_new, &fl_train_ops);
  fl_callback *cb = fl_early_stopping_cb_new("loss", FL_MODE_AUTO, 1, 0);
  EXPECT(fl_fit(bare, 1, 1, 1, &cb, 1, 0) == FL_ERR_ARG && strstr(fl_last_error(), "no MetricsCB"));
  fl_callback_free(cb);
  fl_learner_free(bare);
  fx_free(&f);
}

/* EarlyStoppingCB: stops after `patience` epochs without improvement; the best weights are back
 * in the model at the end whether it fired or not. */
static void stop_run(const double *seq, int n_epochs, int patience, double min_delta, int want_best, int want_stop,
                     int want_epochs) {
  fx f;
  fx_init(&f, 5);
  script *s = script_new("loss", seq, n_epochs);
  fl_callback *es = fl_early_stopping_cb_new("loss", FL_MODE_AUTO, patience, min_delta);
  fl_learner *l = learner(&f, s, es);
  EXPECT(fl_fit(l, n_epochs, 1, 1, NULL, 0, 0) == FL_OK);
  double best;
  int be, stopped;
  EXPECT(fl_best_cb_info(es, &best, &be, &stopped));
  EXPECTF(be == want_best && stopped == want_stop && s->epochs_seen == want_epochs,
          "best epoch %d (want %d), stopped at %d (want %d), %d epochs ran (want %d)", be, want_best, stopped,
          want_stop, s->epochs_seen, want_epochs);
  EXPECTF(fl_module_hash(f.model) == s->hash[want_best], "the model holds epoch %d's weights", want_best);
  /* the learner can fit again: the callback starts afresh */
  EXPECT(fl_fit(l, 1, 1, 1, NULL, 0, 0) == FL_OK);
  EXPECT(fl_best_cb_info(es, &best, &be, &stopped) && be == 0 && stopped == -1);
  fl_learner_free(l);
  free(s);
  fx_free(&f);
}

static void test_early_stopping_cb(void) {
  const double a[] = {1.0, 0.8, 0.85, 0.81, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2};
  stop_run(a, 10, 2, 0, 1, 3, 4);           /* fires after epochs 2, 3: epoch 1 restored */
  stop_run(a, 10, 3, 0, 9, -1, 10);         /* patience 3 rides over the bump: never fires */
  const double b[] = {1.0, 0.95, 0.93, 0.92, 0.5};
  stop_run(b, 5, 2, 0.1, 0, 2, 3);          /* min_delta 0.1: 0.95 and 0.93 are no improvement */
  stop_run(b, 5, 2, 0.0, 4, -1, 5);
  const double c[] = {0.5, 0.9, 0.8};
  stop_run(c, 3, 5, 0, 0, -1, 3);           /* did not fire, still restores epoch 0 */
}

/* ---- inference: fl_get_preds runs the validation loop: the same argmax MetricsCB counts ---- */
static void test_get_preds(void) {
  fx f;
  fx_init(&f, 7);
  const double seq[] = {NAN};
  script *s = script_new("none", seq, 0);
  fl_learner *l = learner(&f, s, NULL);
  EXPECT(fl_fit(l, 2, 1, 1, NULL, 0, 0) == FL_OK);
  double valid_acc = l->metrics->last.values[0];
  uint64_t h = fl_module_hash(f.model), ep = fl_dataloader_epoch(f.dls.train);
  int32_t cls[20], cls2[20];
  float p[20], p2[20], probs[20 * 4];
  int64_t n = 0;
  EXPECT(fl_get_preds(l, f.dls.valid, cls, p, probs, &n) == FL_OK && n == 20);
  int correct = 0;
  for (int i = 0; i < 20; i++) {
    correct += cls[i] == f.va->y[i];
    float sum = 0, mx = 0;
    for (int j = 0; j < 4; j++) sum += probs[i * 4 + j], mx = fmaxf(mx, probs[i * 4 + j]);
    EXPECT_NEAR(sum, 1.0, 1e-6);
    EXPECT(mx == probs[i * 4 + cls[i]] && fabsf(p[i] - mx) <= 1e-6f);
  }
  EXPECTF(correct / 20.0 == valid_acc, "get_preds accuracy %g, the fit's valid accuracy %g", correct / 20.0, valid_acc);
  EXPECT(fl_module_hash(f.model) == h && fl_dataloader_epoch(f.dls.train) == ep && l->dls == &f.dls);
  /* fl_predict on one batch of the same rows gives the same classes and probabilities */
  fl_graph *g = fl_graph_new();
  float x[20 * 4];
  for (int i = 0; i < 20 * 4; i++) x[i] = f.va->x[i] / 255.0f;
  int64_t shape[2] = {20, 4};
  fl_tensor *xt = fl_tensor_from_data(FL_F32, FL_CPU, 2, shape, x);
  fl_module_train(f.model, 1);
  EXPECT(fl_predict(f.model, g, xt, cls2, p2, NULL) == FL_OK);
  EXPECT(f.model->training == 1);
  EXPECT(memcmp(cls, cls2, sizeof cls) == 0 && memcmp(p, p2, sizeof p) == 0);
  /* probabilities against a hand softmax of the logits, in double */
  fl_graph_reset(g);
  fl_tensor *y = fl_module_forward(f.model, g, xt);
  float lg[20 * 4];
  fl_tensor_to_host(y, lg);
  for (int i = 0; i < 20; i++) {
    double s2 = 0;
    for (int j = 0; j < 4; j++) s2 += exp((double)lg[i * 4 + j] - lg[i * 4 + cls[i]]);
    EXPECT_NEAR(p[i], 1.0 / s2, 1e-6);
  }
  fl_tensor_free(xt);
  fl_graph_free(g);
  fl_learner_free(l);
  free(s);
  fx_free(&f);
}

int main(void) {
  fl_init(1);
  if (!mkdtemp(g_dir)) return perror("mkdtemp"), 2;
  RUN(test_save_model_cb);
  RUN(test_save_model_cb_errors);
  RUN(test_early_stopping_cb);
  RUN(test_get_preds);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
  if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", g_dir);
  return test_summary();
}
