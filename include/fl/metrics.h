/* flexlearn metrics: update / compute / reset (torcheval's interface), accumulated on the
 * device of the tensors they are given and read back only by compute().
 *
 * Built-ins: MulticlassAccuracy (argmax of preds == targets) and Mean (weighted). Write your
 * own by filling a fl_metric with your three functions (see fl_metric_new).
 * Also the lesson's hand-made Metric / Accuracy (add / value), kept for the walk-through.
 */
#ifndef FL_METRICS_H
#define FL_METRICS_H

#include "fl/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct fl_metric fl_metric;
struct fl_metric {
  const char *name;          /* type name, e.g. "MulticlassAccuracy" */
  void (*reset)(fl_metric *m);
  /* preds/targets of one batch (for Mean: values and ignored targets; see fl_mean_update) */
  void (*update)(fl_metric *m, const fl_tensor *preds, const fl_tensor *targets);
  double (*compute)(fl_metric *m);    /* NaN when nothing was added since reset */
  void (*free_state)(fl_metric *m);   /* frees m->state; may be NULL */
  void *state;
  /* device-side accumulators (acc[0], acc[1]) for the built-ins, allocated on first update */
  double *acc;
  fl_device acc_device;
};

/* A metric with your own functions (state is yours; free_state frees it). Free with fl_metric_free. */
fl_metric *fl_metric_new(const char *name, void (*reset)(fl_metric *),
                         void (*update)(fl_metric *, const fl_tensor *, const fl_tensor *),
                         double (*compute)(fl_metric *), void (*free_state)(fl_metric *), void *state);
fl_metric *fl_multiclass_accuracy_new(void);
fl_metric *fl_mean_new(void);
void fl_metric_reset(fl_metric *m);
void fl_metric_update(fl_metric *m, const fl_tensor *preds, const fl_tensor *targets);
/* Mean: adds every element of x with weight w (the loss, weighted by the batch size). */
void fl_mean_update(fl_metric *m, const fl_tensor *x, double w);
double fl_metric_compute(fl_metric *m);
void fl_metric_free(fl_metric *m);    /* accepts NULL */
/* Checkpoints: a built-in's two accumulators (sum, weight) read back exactly ({0, 0} before the
 * first update), and written back on dev. FL_ERR_ARG for a metric of your own (fl_metric_new):
 * its state is yours to save. */
fl_status fl_metric_get_acc(fl_metric *m, double out[2]);
fl_status fl_metric_set_acc(fl_metric *m, const double v[2], fl_device dev);

/* ---- the lesson's first Metric: add(inp, targ, n) keeps a batch value and its weight n;
 * value is the n-weighted average of the batch values. calc == NULL: the value is inp[0]
 * (the lesson's loss Metric); fl_accuracy_calc gives the mean of inp == targ. */
typedef struct fl_avg_metric {
  double (*calc)(const float *inp, const float *targ, int len);
  double *vals, *ns;
  int n, cap;
  double last;
} fl_avg_metric;
double fl_accuracy_calc(const float *inp, const float *targ, int len);
void fl_avg_metric_init(fl_avg_metric *m, double (*calc)(const float *, const float *, int));
void fl_avg_metric_reset(fl_avg_metric *m);
void fl_avg_metric_add(fl_avg_metric *m, const float *inp, const float *targ, int len, double n);
double fl_avg_metric_value(const fl_avg_metric *m);   /* NaN when empty */
void fl_avg_metric_free(fl_avg_metric *m);

#ifdef __cplusplus
}
#endif
#endif
