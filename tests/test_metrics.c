/* Metrics: the lesson's demo numbers (Metric / Accuracy, the weighted loss Metric, torcheval's
 * MulticlassAccuracy), the weighted Mean, and a custom metric driven by MetricsCB. */
#include "test.h"
#include "learn_fixture.h"

/* The lesson's Accuracy: add() defaults n to 1, so the value is the mean of the batch values
 * (0.5 and 0.4): 0.45, not 5/11. */
static void test_avg_metric_accuracy(void) {
  fl_avg_metric m;
  fl_avg_metric_init(&m, fl_accuracy_calc);
  EXPECT(isnan(fl_avg_metric_value(&m)));
  const float a1[] = {0, 1, 2, 0, 1, 2}, t1[] = {0, 1, 1, 2, 1, 0};
  const float a2[] = {1, 1, 2, 0, 1}, t2[] = {0, 1, 1, 2, 1};
  fl_avg_metric_add(&m, a1, t1, 6, 1);
  EXPECT_NEAR(m.last, 0.5, 1e-12);
  fl_avg_metric_add(&m, a2, t2, 5, 1);
  EXPECT_NEAR(m.last, 0.4, 1e-12);
  EXPECT_NEAR(fl_avg_metric_value(&m), 0.45, 1e-12);
  EXPECT(fabs(fl_avg_metric_value(&m) - 5.0 / 11.0) > 1e-3);
  char buf[32];
  snprintf(buf, sizeof buf, "%.2f", fl_avg_metric_value(&m));
  EXPECT(!strcmp(buf, "0.45"));
  /* many adds (past the initial capacity) still average correctly */
  fl_avg_metric_reset(&m);
  EXPECT(isnan(fl_avg_metric_value(&m)));
  for (int i = 0; i < 40; i++) fl_avg_metric_add(&m, a1, t1, 6, 1);
  fl_avg_metric_add(&m, a2, t2, 5, 40);
  EXPECT_NEAR(fl_avg_metric_value(&m), 0.45, 1e-12);
  EXPECT_NEAR(m.n, 41, 0);
  fl_avg_metric_free(&m);
  EXPECT(isnan(fl_accuracy_calc(a1, t1, 0)));
}

/* The lesson's loss Metric (calc = identity): (0.6*32 + 0.9*2) / 34 = 0.6176 -> 0.62. */
static void test_avg_metric_loss(void) {
  fl_avg_metric m;
  fl_avg_metric_init(&m, NULL);
  float v1 = 0.6f, v2 = 0.9f;
  fl_avg_metric_add(&m, &v1, NULL, 1, 32);
  fl_avg_metric_add(&m, &v2, NULL, 1, 2);
  EXPECT_NEAR(fl_avg_metric_value(&m), ((double)v1 * 32 + (double)v2 * 2) / 34, 1e-12);
  EXPECT_NEAR(fl_avg_metric_value(&m), 21.0 / 34.0, 1e-7);
  char buf[32];
  snprintf(buf, sizeof buf, "%.2f", fl_avg_metric_value(&m));
  EXPECT(!strcmp(buf, "0.62"));
  EXPECT_NEAR(m.last, 0.9, 1e-7);
  fl_avg_metric_free(&m);
}

/* torcheval: update(preds, targets) with argmax [0,2,1,3] vs [0,1,2,3] -> 0.5; reset -> nan. */
static void test_multiclass_accuracy(void) {
  fl_metric *m = fl_multiclass_accuracy_new();
  EXPECT(!strcmp(m->name, "MulticlassAccuracy"));
  EXPECT(isnan(fl_metric_compute(m)));
  const float p[16] = {0.9f, 0.0f, 0.1f, 0.0f,    /* argmax 0 */
                       0.1f, 0.2f, 0.6f, 0.1f,    /* argmax 2 */
                       -1.f, 3.0f, 2.0f, 0.5f,    /* argmax 1 */
                       0.0f, 0.1f, 0.2f, 0.3f};   /* argmax 3 */
  const int32_t t[4] = {0, 1, 2, 3};
  int64_t ps[2] = {4, 4}, ts[1] = {4};
  fl_tensor *pt = fl_tensor_from_data(FL_F32, FL_CPU, 2, ps, p);
  fl_tensor *tt = fl_tensor_from_data(FL_I32, FL_CPU, 1, ts, t);
  fl_metric_update(m, pt, tt);
  EXPECT_NEAR(fl_metric_compute(m), 0.5, 1e-12);
  /* accumulates over updates: 2/4 then 2/4 more -> 4/8; and a batch of all-correct */
  fl_metric_update(m, pt, tt);
  EXPECT_NEAR(fl_metric_compute(m), 0.5, 1e-12);
  const int32_t t2[4] = {0, 2, 1, 3};
  fl_tensor *tt2 = fl_tensor_from_data(FL_I32, FL_CPU, 1, ts, t2);
  fl_metric_update(m, pt, tt2);
  EXPECT_NEAR(fl_metric_compute(m), 8.0 / 12.0, 1e-12);
  fl_metric_reset(m);
  EXPECT(isnan(fl_metric_compute(m)));
  fl_metric_update(m, pt, tt2);
  EXPECT_NEAR(fl_metric_compute(m), 1.0, 1e-12);
  fl_tensor_free(pt), fl_tensor_free(tt), fl_tensor_free(tt2);
  fl_metric_free(m);
}

/* Mean: every element added with weight w; fl_metric_update adds with weight 1. */
static void test_mean_weighted(void) {
  fl_metric *m = fl_mean_new();
  EXPECT(isnan(fl_metric_compute(m)));
  int64_t one = 1;
  fl_tensor *a = fl_tensor_from_data(FL_F32, FL_CPU, 1, &one, (float[]){0.6f});
  fl_tensor *b = fl_tensor_from_data(FL_F32, FL_CPU, 1, &one, (float[]){0.9f});
  fl_mean_update(m, a, 32);
  fl_mean_update(m, b, 2);
  EXPECT_NEAR(fl_metric_compute(m), (0.6f * 32.0 + 0.9f * 2.0) / 34.0, 1e-9);
  fl_metric_reset(m);
  EXPECT(isnan(fl_metric_compute(m)));
  int64_t three = 3;
  fl_tensor *v = fl_tensor_from_data(FL_F32, FL_CPU, 1, &three, (float[]){1, 2, 3});
  fl_mean_update(m, v, 2);   /* sum 12, weight 6 */
  fl_metric_update(m, b, NULL);   /* + 0.9 with weight 1 */
  EXPECT_NEAR(fl_metric_compute(m), (12.0 + 0.9f) / 7.0, 1e-9);
  fl_tensor_free(a), fl_tensor_free(b), fl_tensor_free(v);
  fl_metric_free(m);
}

/* ---- a custom metric: counts the samples it was given, and how often reset ran ---- */
typedef struct { double seen; int resets; int *freed; } count_state;
static void cnt_reset(fl_metric *m) { count_state *s = m->state; s->seen = 0, s->resets++; }
static void cnt_update(fl_metric *m, const fl_tensor *p, const fl_tensor *t) {
  count_state *s = m->state;
  if (p->shape[0] == t->shape[0]) s->seen += (double)t->shape[0];
}
static double cnt_compute(fl_metric *m) { return ((count_state *)m->state)->seen; }
static void cnt_free(fl_metric *m) {
  count_state *s = m->state;
  (*s->freed)++;
  free(s);
}

#define MAX_LOGS 16
typedef struct { fl_log_entry e[MAX_LOGS]; int n; } log_capture;
static void capture_log(void *ctx, const fl_log_entry *e) {
  log_capture *c = ctx;
  if (c->n < MAX_LOGS) c->e[c->n++] = *e;
}

static void test_custom_metric_in_metrics_cb(void) {
  int freed = 0;
  count_state *st = calloc(1, sizeof *st);
  st->freed = &freed;
  fl_metric *ms[2] = {fl_metric_new("Count", cnt_reset, cnt_update, cnt_compute, cnt_free, st),
                      fl_multiclass_accuracy_new()};
  const char *names[2] = {NULL, "acc"};   /* NULL: named after the metric's type */
  fl_callback *mcb = fl_metrics_cb_new(2, ms, names);
  log_capture cap = {0};
  ((fl_metrics_cb *)mcb)->log = capture_log;
  ((fl_metrics_cb *)mcb)->log_ctx = &cap;

  fl_dataset *tr = fx_dataset(20, 4, 1), *va = fx_dataset(12, 4, 2);
  fl_dataloaders dls;
  EXPECT(fl_get_dls(&dls, tr, va, 8, 1, 0, 1) == FL_OK);
  fl_module *model = fl_get_model(3, 4, 8, 4);
  fl_callback *cbs[1] = {mcb};
  fl_learner *l = fl_learner_new(model, &dls, fl_cross_entropy, 0.1f, cbs, 1, fl_sgd_new, &fl_train_ops);
  EXPECT(fl_fit(l, 2, 1, 1, NULL, 0, 0) == FL_OK);
  EXPECT(l->metrics == (fl_metrics_cb *)mcb);
  EXPECTF(cap.n == 4, "%d log entries", cap.n);
  for (int i = 0; i < cap.n && i < 4; i++) {
    fl_log_entry *e = &cap.e[i];
    EXPECT(e->epoch == i / 2);
    EXPECT(e->train == !(i % 2));
    EXPECT(e->n == 3);
    EXPECT(!strcmp(e->names[0], "Count") && !strcmp(e->names[1], "acc") && !strcmp(e->names[2], "loss"));
    /* reset per epoch: each phase counts only its own samples */
    EXPECT_NEAR(e->values[0], e->train ? 20 : 12, 0);
    EXPECT(e->values[1] >= 0 && e->values[1] <= 1);
    EXPECT(isfinite(e->values[2]) && e->values[2] > 0);
    EXPECT(e->seconds >= 0);
  }
  EXPECT(st->resets == 4);
  /* last holds the final (valid) entry */
  EXPECT(((fl_metrics_cb *)mcb)->last.epoch == 1 && !((fl_metrics_cb *)mcb)->last.train);
  fl_learner_free(l);   /* frees the MetricsCB and its metrics: free_state runs */
  EXPECT(freed == 1);
  fl_module_free(model);
  fl_dataloaders_free(&dls);
  fl_dataset_free(tr), fl_dataset_free(va);
}

int main(void) {
  fl_init(1);
  RUN(test_avg_metric_accuracy);
  RUN(test_avg_metric_loss);
  RUN(test_multiclass_accuracy);
  RUN(test_mean_weighted);
  RUN(test_custom_metric_in_metrics_cb);
  return test_summary();
}
