/* MetricsCB: the metrics plus a batch-size-weighted Mean of the loss; reset before each epoch,
 * updated after each batch (on the device: nothing is read back per batch), computed and
 * logged after each epoch through a replaceable logger (file loggers on top: log_cb.c). */
#include <stdlib.h>
#include <math.h>
#include <string.h>

#include "fl/checkpoint.h"
#include "fl/learner.h"

const char *fl_log_entry_str(const fl_log_entry *e, char *buf, size_t n) {
  size_t k = (size_t)snprintf(buf, n, "{");
  for (int i = 0; i < e->n && k < n; i++)
    k += (size_t)snprintf(buf + k, n - k, "'%s': '%.3f', ", e->names[i], e->values[i]);
  if (k < n) snprintf(buf + k, n - k, "'epoch': %d, 'train': %s}", e->epoch, e->train ? "True" : "False");
  return buf;
}

static void print_log(void *ctx, const fl_log_entry *e) {
  char buf[512];
  FILE *out = ctx;
  fprintf(out, "%s\n", fl_log_entry_str(e, buf, sizeof buf));
  fflush(out);
}

static fl_status mcb_before_fit(fl_callback *cb, fl_learner *l) {
  l->metrics = (fl_metrics_cb *)cb;
  return FL_OK;
}

static fl_status mcb_before_epoch(fl_callback *cb, fl_learner *l) {
  fl_metrics_cb *m = (fl_metrics_cb *)cb;
  if (l->start_iter == 0) {   /* > 0: a phase resumed mid-way keeps its restored accumulators */
    for (int i = 0; i < m->n; i++) fl_metric_reset(m->metrics[i]);
    fl_metric_reset(m->loss);
  }
  m->t0 = fl_now();
  return FL_OK;
}

static fl_status mcb_after_batch(fl_callback *cb, fl_learner *l) {
  fl_metrics_cb *m = (fl_metrics_cb *)cb;
  const fl_tensor *y = l->batch.t[l->batch.n_inp];
  for (int i = 0; i < m->n; i++) fl_metric_update(m->metrics[i], l->preds, y);
  fl_mean_update(m->loss, l->loss, (double)fl_batch_size(&l->batch));
  return FL_OK;
}

static fl_status mcb_after_epoch(fl_callback *cb, fl_learner *l) {
  fl_metrics_cb *m = (fl_metrics_cb *)cb;
  fl_log_entry *e = &m->last;
  e->n = 0;
  for (int i = 0; i < m->n; i++) {
    e->names[e->n] = m->names[i];
    e->values[e->n++] = fl_metric_compute(m->metrics[i]);
  }
  e->names[e->n] = "loss";
  e->values[e->n++] = fl_metric_compute(m->loss);
  e->epoch = l->epoch;
  e->train = l->training;
  e->seconds = fl_now() - m->t0;
  if (m->log) m->log(m->log_ctx, e);
  return FL_OK;
}

/* Checkpoints: every metric's accumulators then the loss's, (sum, weight) pairs, exactly. */
static fl_status mcb_save_state(fl_callback *cb, fl_learner *l, fl_state *st) {
  (void)l;
  fl_metrics_cb *m = (fl_metrics_cb *)cb;
  double a[16];
  fl_status s = FL_OK;
  for (int i = 0; i <= m->n && s == FL_OK; i++) s = fl_metric_get_acc(i < m->n ? m->metrics[i] : m->loss, a + 2 * i);
  return s != FL_OK ? s : fl_state_set_f64s(st, "acc", a, 2 * (m->n + 1));
}

static fl_status mcb_load_state(fl_callback *cb, fl_learner *l, const fl_state *st) {
  fl_metrics_cb *m = (fl_metrics_cb *)cb;
  double a[16];
  int64_t k = 0;
  fl_status s = fl_state_get_f64s(st, "acc", a, 16, &k);
  if (s != FL_OK) return s;
  if (k != 2 * (m->n + 1))
    return fl_error(FL_ERR_FORMAT, "MetricsCB: the checkpoint has %lld accumulators, %d metrics and the loss need %d",
                    (long long)k, m->n, 2 * (m->n + 1));
  for (int i = 0; i <= m->n && s == FL_OK; i++)
    s = fl_metric_set_acc(i < m->n ? m->metrics[i] : m->loss, a + 2 * i, l->model->device);
  return s;
}

static void mcb_free(fl_callback *cb) {
  fl_metrics_cb *m = (fl_metrics_cb *)cb;
  for (int i = 0; i < m->n; i++) fl_metric_free(m->metrics[i]);
  fl_metric_free(m->loss);
  free(m);
}

/* MetricsCB(*ms, **metrics): a metric given without a name is named after its type. */
fl_callback *fl_metrics_cb_new(int n, fl_metric **metrics, const char **names) {
  FL_CHECK(n >= 0 && n <= 7 && (n == 0 || metrics), "fl_metrics_cb_new: 0 to 7 metrics");
  fl_metrics_cb *m = fl_xcalloc(1, sizeof *m);
  m->cb.name = "MetricsCB";
  m->cb.free = mcb_free;
  m->cb.on[FL_BEFORE_FIT] = mcb_before_fit;
  m->cb.on[FL_BEFORE_EPOCH] = mcb_before_epoch;
  m->cb.on[FL_AFTER_BATCH] = mcb_after_batch;
  m->cb.on[FL_AFTER_EPOCH] = mcb_after_epoch;
  m->cb.save_state = mcb_save_state;
  m->cb.load_state = mcb_load_state;
  for (int i = 0; i < n; i++) {
    FL_CHECK(metrics[i], "fl_metrics_cb_new: metric %d is NULL", i);
    m->metrics[i] = metrics[i];
    m->names[i] = names && names[i] ? names[i] : metrics[i]->name;
  }
  m->n = n;
  m->loss = fl_mean_new();
  m->out = stdout;
  m->log = print_log;
  m->log_ctx = stdout;
  m->last.epoch = -1;
  return &m->cb;
}
