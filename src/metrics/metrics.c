/* Metrics: update / compute / reset, accumulated on the device of the tensors given (two
 * doubles there), read back by compute() only. And the lesson's hand-made Metric. */
#include <stdlib.h>
#include <math.h>
#include <string.h>

#include "backend/backend.h"
#include "fl/metrics.h"

fl_metric *fl_metric_new(const char *name, void (*reset)(fl_metric *),
                         void (*update)(fl_metric *, const fl_tensor *, const fl_tensor *),
                         double (*compute)(fl_metric *), void (*free_state)(fl_metric *), void *state) {
  FL_CHECK(reset && update && compute, "fl_metric_new: reset, update and compute are required");
  fl_metric *m = fl_xcalloc(1, sizeof *m);
  *m = (fl_metric){.name = name, .reset = reset, .update = update, .compute = compute,
                   .free_state = free_state, .state = state};
  return m;
}

void fl_metric_free(fl_metric *m) {
  if (!m) return;
  if (m->free_state) m->free_state(m);
  if (m->acc) fl_backend_for(m->acc_device)->free(m->acc);
  free(m);
}

void fl_metric_reset(fl_metric *m) { m->reset(m); }
void fl_metric_update(fl_metric *m, const fl_tensor *p, const fl_tensor *t) { m->update(m, p, t); }
double fl_metric_compute(fl_metric *m) { return m->compute(m); }

/* ---- built-ins: two device-side doubles (sum, count) ---- */
static void acc_reset(fl_metric *m) {
  if (m->acc) fl_backend_for(m->acc_device)->memset0(m->acc, 2 * sizeof(double));
}

/* The accumulators on dev, (re)made zeroed on first use or when the device changes. */
static double *acc_on(fl_metric *m, fl_device dev) {
  if (m->acc && m->acc_device == dev) return m->acc;
  double host[2] = {0, 0};
  if (m->acc) {
    fl_backend_for(m->acc_device)->to_host(host, m->acc, sizeof host);
    fl_backend_for(m->acc_device)->free(m->acc);
  }
  const fl_backend *be = fl_backend_for(dev);
  m->acc = be->alloc(sizeof host);
  FL_CHECK(m->acc, "metric: cannot allocate its accumulators on %s: %s", fl_device_name(dev), fl_last_error());
  be->from_host(m->acc, host, sizeof host);
  m->acc_device = dev;
  return m->acc;
}

static double acc_compute(fl_metric *m) {
  double h[2] = {0, 0};
  if (m->acc) fl_backend_for(m->acc_device)->to_host(h, m->acc, sizeof h);
  return h[1] > 0 ? h[0] / h[1] : NAN;
}

static void accuracy_update(fl_metric *m, const fl_tensor *p, const fl_tensor *t) {
  FL_CHECK(p && t && p->ndim == 2 && p->dtype == FL_F32 && t->dtype == FL_I32 && t->ndim == 1 &&
               t->shape[0] == p->shape[0] && p->device == t->device && fl_is_contiguous(p),
           "MulticlassAccuracy: expected preds (B, C) f32 and targets (B) int32 on one device");
  fl_backend_for(p->device)->argmax_correct(acc_on(m, p->device), p->data, t->data,
                                             (int)p->shape[0], (int)p->shape[1]);
}

static void mean_update_any(fl_metric *m, const fl_tensor *x, const fl_tensor *unused) {
  (void)unused;
  fl_mean_update(m, x, 1.0);
}

void fl_mean_update(fl_metric *m, const fl_tensor *x, double w) {
  FL_CHECK(x && x->dtype == FL_F32 && fl_is_contiguous(x), "Mean: expected a contiguous f32 tensor");
  fl_backend_for(x->device)->mean_update(acc_on(m, x->device), x->data, (size_t)fl_numel(x), w);
}

static int builtin(const fl_metric *m) { return m->reset == acc_reset && m->compute == acc_compute; }

fl_status fl_metric_get_acc(fl_metric *m, double out[2]) {
  if (!builtin(m)) return fl_error(FL_ERR_ARG, "metric %s keeps its own state: a checkpoint cannot save it", m->name);
  out[0] = out[1] = 0;
  if (m->acc) fl_backend_for(m->acc_device)->to_host(out, m->acc, 2 * sizeof(double));
  return FL_OK;
}

fl_status fl_metric_set_acc(fl_metric *m, const double v[2], fl_device dev) {
  if (!builtin(m)) return fl_error(FL_ERR_ARG, "metric %s keeps its own state: a checkpoint cannot restore it", m->name);
  fl_backend_for(dev)->from_host(acc_on(m, dev), v, 2 * sizeof(double));
  return FL_OK;
}

fl_metric *fl_multiclass_accuracy_new(void) {
  return fl_metric_new("MulticlassAccuracy", acc_reset, accuracy_update, acc_compute, NULL, NULL);
}

fl_metric *fl_mean_new(void) {
  return fl_metric_new("Mean", acc_reset, mean_update_any, acc_compute, NULL, NULL);
}

/* ---- the lesson's Metric: value = sum(vals * ns) / sum(ns) ---- */
double fl_accuracy_calc(const float *inp, const float *targ, int len) {
  int c = 0;
  for (int i = 0; i < len; i++) c += inp[i] == targ[i];
  return len ? (double)c / len : NAN;
}

void fl_avg_metric_init(fl_avg_metric *m, double (*calc)(const float *, const float *, int)) {
  memset(m, 0, sizeof *m);
  m->calc = calc;
}

void fl_avg_metric_reset(fl_avg_metric *m) { m->n = 0; }

void fl_avg_metric_add(fl_avg_metric *m, const float *inp, const float *targ, int len, double n) {
  if (m->n == m->cap) {
    m->cap = m->cap ? 2 * m->cap : 16;
    m->vals = realloc(m->vals, (size_t)m->cap * sizeof *m->vals);
    m->ns = realloc(m->ns, (size_t)m->cap * sizeof *m->ns);
    FL_CHECK(m->vals && m->ns, "out of memory");
  }
  m->last = m->calc ? m->calc(inp, targ, len) : (double)inp[0];
  m->vals[m->n] = m->last;
  m->ns[m->n++] = n;
}

double fl_avg_metric_value(const fl_avg_metric *m) {
  double s = 0, w = 0;
  for (int i = 0; i < m->n; i++) s += m->vals[i] * m->ns[i], w += m->ns[i];
  return w > 0 ? s / w : NAN;
}

void fl_avg_metric_free(fl_avg_metric *m) {
  free(m->vals);
  free(m->ns);
  memset(m, 0, sizeof *m);
}
