/* flexlearn Learner: the flexible, callback-driven training loop of fast.ai lesson 16.
 *
 * Events. Callbacks have a handler per event (NULL = not interested) and run sorted by `order`
 * (stable: equal orders keep the order they were added in). A handler returns a status:
 *   FL_OK            carry on;
 *   FL_CANCEL_BATCH  stop this batch,  FL_CANCEL_EPOCH stop this epoch,  FL_CANCEL_FIT stop fit;
 *   < 0              an error.
 * The cancel contract (the lesson's final with_cbs): for each level X in fit > epoch > batch,
 * before_X runs, then the body, then after_X only when nothing was cancelled or failed;
 * cleanup_X ALWAYS runs; FL_CANCEL_X is swallowed at level X (so a cancelled batch goes on
 * to the next batch); a higher cancel passes through the lower levels (running their
 * cleanup_ handlers, skipping their after_ ones); an error unwinds every level, still running
 * each cleanup_X (which can read learn->status to tell how the level ended), and fl_fit returns it (a cancel code of a level below the one it was
 * returned at, e.g. FL_CANCEL_BATCH from before_epoch, is turned into an FL_ERR).
 *
 * Steps. The five training steps (predict, get_loss, backward, step, zero_grad) come from the
 * learner's ops table (its "subclass": fl_train_ops, fl_momentum_ops) or, where that has no
 * entry, are sent to the callbacks as events (the lesson's __getattr__): TrainCB handles them.
 * After each of the first four, after_predict / after_loss / after_backward / after_step run.
 *
 * State. Every field of fl_learner is public: callbacks read and change it.
 */
#ifndef FL_LEARNER_H
#define FL_LEARNER_H

#include <stdio.h>

#include "fl/data.h"
#include "fl/metrics.h"
#include "fl/optim.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum fl_event {
  FL_BEFORE_FIT, FL_AFTER_FIT, FL_CLEANUP_FIT,
  FL_BEFORE_EPOCH, FL_AFTER_EPOCH, FL_CLEANUP_EPOCH,
  FL_BEFORE_BATCH, FL_AFTER_BATCH, FL_CLEANUP_BATCH,
  FL_PREDICT, FL_AFTER_PREDICT, FL_GET_LOSS, FL_AFTER_LOSS, FL_BACKWARD, FL_AFTER_BACKWARD,
  FL_STEP, FL_AFTER_STEP, FL_ZERO_GRAD,
  FL_N_EVENTS
} fl_event;
const char *fl_event_name(fl_event e);   /* "before_fit", ... */

typedef struct fl_learner fl_learner;
typedef struct fl_callback fl_callback;
typedef fl_status (*fl_cb_fn)(fl_callback *cb, fl_learner *learn);
typedef struct fl_state fl_state;   /* a callback's state in a checkpoint: include/fl/checkpoint.h */

/* A callback. Built-in ones embed it as their first member (cast the pointer back). */
struct fl_callback {
  const char *name;
  int order;
  fl_cb_fn on[FL_N_EVENTS];
  void (*free)(fl_callback *cb);   /* releases the callback; NULL when it is not heap-owned */
  void *ctx;                       /* for your own callbacks */
  /* Checkpoints (optional, both or neither; include/fl/checkpoint.h): save_state puts into st
   * what the callback needs to go on exactly where the fit is (accumulators mid-epoch, history,
   * best value so far...); load_state puts it back, in before_fit of a resumed fit, after every
   * callback's own before_fit handler, with learn->start_* telling where the fit resumes. A
   * callback keyed by its name (a second one of the same name: "name#2"). */
  fl_status (*save_state)(fl_callback *cb, fl_learner *l, fl_state *st);
  fl_status (*load_state)(fl_callback *cb, fl_learner *l, const fl_state *st);
};
void fl_callback_free(fl_callback *cb);   /* calls cb->free; accepts NULL */

/* The learner's "subclass": any NULL step is dispatched to the callbacks as an event. */
typedef struct fl_learner_ops {
  fl_status (*predict)(fl_learner *l);
  fl_status (*get_loss)(fl_learner *l);
  fl_status (*backward)(fl_learner *l);
  fl_status (*step)(fl_learner *l);
  fl_status (*zero_grad)(fl_learner *l);
} fl_learner_ops;

struct fl_metrics_cb;

struct fl_learner {
  /* set up by fl_learner_new */
  fl_module *model;             /* borrowed */
  fl_dataloaders *dls;          /* borrowed */
  fl_loss_fn loss_func;
  float lr;
  fl_opt_fn opt_func;           /* NULL: fit creates no optimiser */
  fl_callback **cbs;            /* sorted by order */
  int n_cbs, cap_cbs;
  const fl_learner_ops *ops;    /* NULL: all five steps come from callbacks */
  float mom;                    /* MomentumLearner's momentum */
  /* state during fit (all writable by callbacks) */
  fl_optimizer *opt;            /* owned; made by fit from opt_func */
  fl_dataloader *dl;            /* the loader of the current phase */
  int epoch, n_epochs;
  int fit_train, fit_valid;     /* fit's train / valid arguments */
  int64_t iter;                 /* batch index within the epoch */
  int64_t n_iter;               /* training batches done in this fit */
  fl_batch batch;
  fl_tensor *preds, *loss;      /* valid until the next batch starts */
  int training;                 /* == model->training */
  fl_status status;             /* in cleanup_X: how level X ended (FL_OK, its cancel, an error) */
  fl_graph *graph;              /* per-step arena + tape (owned) */
  struct fl_metrics_cb *metrics;/* set by MetricsCB in before_fit (learn.metrics = self) */
  void *user;                   /* yours */
  /* Where fit starts: fl_fit sets all three to 0, a resume (CheckpointCB's before_fit) to the
   * checkpoint's position: the epoch, its validation phase (skipping training) and the batch
   * of that phase; start_iter is reset to 0 once that phase's loop starts, so before_epoch
   * handlers can tell a phase resumed mid-way (start_iter > 0: MetricsCB keeps its restored
   * accumulators). */
  int start_epoch, start_valid;
  int64_t start_iter;
};

/* Learner(model, dls, loss_func, lr, cbs, opt_func). Takes ownership of the n callbacks
 * (freed by fl_learner_free). ops NULL = the plain Learner whose steps come from callbacks. */
fl_learner *fl_learner_new(fl_module *model, fl_dataloaders *dls, fl_loss_fn loss_func, float lr,
                           fl_callback **cbs, int n, fl_opt_fn opt_func, const fl_learner_ops *ops);
void fl_learner_free(fl_learner *l);        /* accepts NULL */
/* Adds a callback the learner will own (freed by fl_learner_free). */
void fl_learner_add_cb(fl_learner *l, fl_callback *cb);
/* fit(n_epochs, train, valid, cbs, lr): extra callbacks live for this fit only and stay the
 * caller's; lr <= 0 means learn->lr. Returns FL_OK (also when cancelled) or an error. */
fl_status fl_fit(fl_learner *l, int n_epochs, int train, int valid, fl_callback **cbs, int n, float lr);
/* Runs an event on every callback in order; stops at the first non-OK status and returns it. */
fl_status fl_learner_callback(fl_learner *l, fl_event e);
/* The first callback with that name, or NULL. */
fl_callback *fl_learner_find_cb(fl_learner *l, const char *name);

/* TrainLearner's steps (model(batch[0]), loss_func(preds, batch[1]), backward, opt step, zero_grad). */
extern const fl_learner_ops fl_train_ops;
/* MomentumLearner: TrainLearner whose zero_grad multiplies the grads by learn->mom. */
extern const fl_learner_ops fl_momentum_ops;
fl_learner *fl_momentum_learner_new(fl_module *model, fl_dataloaders *dls, fl_loss_fn loss_func,
                                    float lr, fl_callback **cbs, int n, fl_opt_fn opt_func, float mom);

/* ---- callbacks of the lesson (each returns a heap callback; free with fl_callback_free,
 * or hand it to a learner) ---- */
fl_callback *fl_train_cb_new(int n_inp);
fl_callback *fl_completion_cb_new(FILE *out);     /* prints "Completed N batches" after fit */
/* Cancels after the first batch: cancel == FL_CANCEL_FIT or FL_CANCEL_EPOCH. Order 1. */
fl_callback *fl_single_batch_cb_new(fl_status cancel);
/* Moves the model (before_fit; also uploads the datasets once so batches are gathered on the
 * device) and each batch (before_batch) to dev. */
fl_callback *fl_device_cb_new(fl_device dev);
/* Stops the fit with FL_ERR_NAN naming the epoch and batch when the loss is NaN or inf,
 * checking every `every` batches (1 = each batch). Order -10 (after_loss, before others). */
fl_callback *fl_nan_cb_new(int every);

/* NormalizeCB(mean, std): the course's BatchTransformCB(_norm) for the conv models (they train on
 * (x - 0.28) / 0.35): from before_fit every batch's images are (x - mean) / std, fused into the
 * host loaders' u8 -> f32 conversion (fl_dataloader_set_norm); cleanup_fit puts the loaders
 * back to x / 255. A loader that gathers on a GPU refuses it: the fit stops with FL_ERR_ARG.
 * Order 1 (after DeviceCB). */
fl_callback *fl_normalize_cb_new(float mean, float std);

/* InterruptCB: Ctrl-C (SIGINT) during the fit stops it after the current batch: that batch
 * (and an epoch it ends) completes, the fit is cancelled at the next before_batch/before_epoch,
 * every cleanup handler runs, and fl_fit returns FL_OK; a second Ctrl-C kills the process. The
 * SIGINT handler is installed at before_fit, the previous one restored at cleanup_fit. Order -1000. */
fl_callback *fl_interrupt_cb_new(void);
/* 1 when the last fit run with an InterruptCB was stopped by SIGINT (the CLI then exits 130). */
int fl_interrupted(void);

/* MetricsCB: the metrics (owned) with names (NULL name: the metric's type name), plus 'loss',
 * a Mean weighted by batch size. Resets in before_epoch (not in a phase resumed mid-way from a
 * checkpoint: learn->start_iter > 0), logs in after_epoch. Its state for checkpoints: the
 * accumulators (built-in metrics only). */
typedef struct fl_log_entry {
  const char *names[8];
  double values[8];             /* metrics then loss */
  int n;
  int epoch;
  int train;
  double seconds;               /* wall time of the phase */
} fl_log_entry;
typedef void (*fl_log_fn)(void *ctx, const fl_log_entry *e);
typedef struct fl_metrics_cb {
  fl_callback cb;
  fl_metric *metrics[7];
  const char *names[7];
  int n;
  fl_metric *loss;
  fl_log_fn log;                /* replaceable logger (default: prints the lesson's line) */
  void *log_ctx;
  FILE *out;                    /* where the default logger prints (stdout) */
  fl_log_entry last;            /* the last epoch's values, for other callbacks */
  double t0;
} fl_metrics_cb;
fl_callback *fl_metrics_cb_new(int n, fl_metric **metrics, const char **names);
/* "{'accuracy': '0.602', 'loss': '1.190', 'epoch': 0, 'train': True}" into buf. */
const char *fl_log_entry_str(const fl_log_entry *e, char *buf, size_t n);
/* Writes one JSON object per epoch and phase (epoch, train, loss, each metric, seconds, weights
 * hash) to path, created at before_fit and truncated before the first record (in a fit resumed
 * from a checkpoint: cut back to what it held then, and appended to); each line is flushed as
 * the phase ends, so after a crash or a kill the file holds every finished phase. A write error
 * stops the fit with FL_ERR_IO naming the path. Order 2. */
fl_callback *fl_jsonl_cb_new(const char *path);
/* The same records as CSV: a header (epoch,train,<metrics>,loss,seconds,weights_fnv1a) before
 * the first row, a non-finite value as an empty field; flushed row by row. Order 2. */
fl_callback *fl_csv_cb_new(const char *path);

/* ProgressCB(plot): bars and the metrics table on a terminal, the lesson's plain metric lines
 * otherwise (bars: 1 always, 0 never, -1 when `out` is a terminal); with plot, a live loss
 * chart (with bars) and `png` (may be NULL) with train and valid loss written after fit. Order 1. */
fl_callback *fl_progress_cb_new(int plot, const char *png, FILE *out, int bars);

/* BaseSchedCB (12_accel_sgd) with a schedule that is a pure function of the step index
 * (fl_schedule): the schedule's values are written into every group of learn->opt (lr, and
 * beta1 or mom when it cycles momentum), in training only.
 * BatchSchedCB: before each training batch, the values of step opt->n_steps, the optimiser's
 * count of steps taken, so step k uses the schedule's value k: exactly the lr sequence of
 * torch's scheduler stepped after each batch (BatchSchedCB's after_batch), and resuming with a
 * restored n_steps continues the schedule where it stopped. Also in before_fit, so the
 * optimiser shows the first step's values from the start.
 * EpochSchedCB: before each training epoch, the values of index learn->epoch (torch's
 * scheduler stepped after each training epoch).
 * Past the schedule's end the last values are kept, and one line says so on stderr (once per
 * callback). Order 0. */
typedef struct fl_sched_cb {
  fl_callback cb;
  fl_schedule sched;
  int per_batch;                /* 1: BatchSchedCB, 0: EpochSchedCB */
  int warned;                   /* the past-the-end line was printed */
} fl_sched_cb;
fl_callback *fl_batch_sched_cb_new(const fl_schedule *sched);
fl_callback *fl_epoch_sched_cb_new(const fl_schedule *sched);

/* RecorderCB (12_accel_sgd): after every training batch, the lr and momentum that batch used
 * (the optimiser's first group: beta1 for the Adam family, else mom) and its loss. `what` is a
 * set of (1 << FL_REC_*) bits: the values to plot (the loss is read, a device sync on a GPU,
 * only when asked for; lr and mom are always kept). The history restarts at each fit, is saved
 * and restored by checkpoints (a resumed fit gives the same plot), and is read with
 * fl_recorder_values. fl_recorder_plot writes one PNG chart per asked-for value against the
 * training batch: to png itself when there is one, else to png with "-lr", "-mom", "-loss"
 * before its ".png" (rec.png: rec-lr.png, rec-loss.png). FL_OK or fl_plot_png's error. */
typedef enum fl_rec_value { FL_REC_LR = 0, FL_REC_MOM = 1, FL_REC_LOSS = 2, FL_REC_N = 3 } fl_rec_value;
typedef struct fl_recorder_cb {
  fl_callback cb;
  int what;
  double *v[FL_REC_N];          /* cap values each, n recorded */
  int64_t n, cap;
} fl_recorder_cb;
fl_callback *fl_recorder_cb_new(int what);
int64_t fl_recorder_values(const fl_callback *cb, fl_rec_value which, const double **v);
fl_status fl_recorder_plot(const fl_callback *cb, const char *png);

/* LRFinderCB. The lesson's first version: lr *= lr_mult after each training batch, stops when
 * loss > 3 x min. The second: an ExponentialLR(gamma) scheduler, stops when the loss is NaN or
 * > max_mult x min. Both cancel validation epochs and plot loss against lr (log x) into png. */
typedef struct fl_lr_finder_cb {
  fl_callback cb;
  int use_sched;
  float lr_mult, max_mult;
  fl_sched sched;
  double *lrs, *losses;
  int n, cap;
  double min;
  const char *png;
} fl_lr_finder_cb;
fl_callback *fl_lr_finder_cb_new(float lr_mult, const char *png);
fl_callback *fl_lr_finder_sched_cb_new(float gamma, float max_mult, const char *png);
/* Where the (smoothed) loss falls fastest per log(lr), before its minimum: the lesson's "roughly
 * where the steepest slope is". NaN for an empty curve. */
double fl_lr_steepest(const double *lrs, const double *losses, int n);
/* learn.lr_find: fit(max_epochs, lr=start_lr, cbs=[LRFinderCB(gamma, max_mult)]), then
 * restores the model's weights, grads, the optimiser and the loaders' epoch counters exactly.
 * Writes the curve to png (may be NULL), returns the suggested lr (fl_lr_steepest of the curve) in *suggested and,
 * when lrs/losses/n are not NULL, copies of the curve (free them). */
fl_status fl_lr_find(fl_learner *l, float gamma, float max_mult, float start_lr, int max_epochs,
                     const char *png, float *suggested, double **lrs, double **losses, int *n);

/* ---- watching a metric across epochs: SaveModelCB, EarlyStoppingCB ----
 * Both monitor one value of MetricsCB's log entry (`monitor`: a metric's name, e.g. "accuracy",
 * or "loss") of the valid phase (of the train phase when the fit has no valid phase), after
 * MetricsCB computed it (their orders are above MetricsCB's and the loggers'). mode: FL_MODE_MIN,
 * FL_MODE_MAX, or FL_MODE_AUTO (min when the name contains "loss", else max). The first finite
 * value is always an improvement; a NaN never is. At before_fit the name must be one of
 * MetricsCB's (else the fit fails with FL_ERR_ARG naming the known ones). */
enum { FL_MODE_AUTO = 0, FL_MODE_MIN = 1, FL_MODE_MAX = 2 };
enum { FL_ORDER_SAVE_MODEL = 8, FL_ORDER_EARLY_STOPPING = 10 };
/* SaveModelCB: whenever the monitored value improves, writes the model's weights to `path` with
 * fl_save_safetensors (atomic: a crash leaves the previous best), model_name into the metadata
 * (may be NULL). A failed write stops the fit with its error. Strings are copied. */
fl_callback *fl_save_model_cb_new(const char *path, const char *monitor, int mode, const char *model_name);
/* EarlyStoppingCB: after `patience` (>= 1) watched epochs in a row without an improvement of more
 * than min_delta (>= 0) over the best, cancels the fit (FL_CANCEL_FIT from after_epoch: the
 * callbacks of higher order skip that after_epoch). At cleanup_fit, whether it fired or not (or
 * the fit failed), the weights of the best epoch are copied back into the model (a copy of its
 * flat parameters and flat buffers, e.g. BatchNorm's running statistics, kept on the model's
 * device; no file). */
fl_callback *fl_early_stopping_cb_new(const char *monitor, int mode, int patience, double min_delta);
/* For a SaveModelCB or EarlyStoppingCB after a fit: the best value (NaN when none), its epoch
 * (-1 when none), and *count = the number of files written (SaveModelCB) or the epoch it stopped
 * the fit at (EarlyStoppingCB; -1 when it did not). Any pointer may be NULL. 0 for any other
 * callback. */
int fl_best_cb_info(const fl_callback *cb, double *best, int *best_epoch, int *count);

/* ---- inference ----
 * fl_predict: one batch through the model in eval mode under no-grad: x as the model takes it
 * (e.g. (B, 784) for "mlp"), on the model's device; the results live in g (reset by the caller
 * between batches). For each of the B rows writes, to host arrays the caller owns: classes[i] =
 * the argmax of the logits (the first one on ties, as MulticlassAccuracy), p[i] = its softmax
 * probability; probs (may be NULL) gets the whole softmax (B, C). The model's training flag is
 * restored. FL_OK, or an error from the forward. */
fl_status fl_predict(fl_module *model, fl_graph *g, fl_tensor *x, int32_t *classes, float *p, float *probs);
/* The same from logits (B, C) already computed (e.g. learn->preds), on any device. */
void fl_preds_decode(const fl_tensor *logits, int32_t *classes, float *p, float *probs);
/* The Learner's validation loop over `dl` (fastai's get_preds, miniai's capture_preds): fit(1,
 * train=False) with dl as the valid loader and a callback capturing each batch's predictions, so
 * the batches take the path validation takes (DeviceCB, any batch transform, the model in eval
 * mode, no grad, get_loss against dl's labels). Writes for the dl's n rows, in order, classes[n]
 * and p[n] (and probs[n*C] when not NULL; C = the model's outputs); *n_out = n. Every callback
 * of the learner runs, as in fastai (a MetricsCB logs a valid line, a JsonlCB writes it: build
 * the learner for prediction with the ones wanted). The learner's dls, optimiser, dl's epoch
 * counter and callbacks are as before. */
fl_status fl_get_preds(fl_learner *l, fl_dataloader *dl, int32_t *classes, float *p, float *probs, int64_t *n_out);

/* ---- augmentation (14_augment), per sample ----
 * AugmentCB: before each TRAINING batch (the notebook's on_val=False), transforms each sample of
 * the images (after NormalizeCB's normalisation, fused in the loader) in place, in this order:
 *   FL_AUG_CROP   RandomCrop(h, padding=pad) with zero fill: a shift by (dy, dx), each uniform
 *                 in -pad..pad, pixels shifted in from outside are 0;
 *   FL_AUG_FLIP   RandomHorizontalFlip (p 0.5);
 *   FL_AUG_ERASE  rand_erase(pct=0.2, max_num=4): randint(0, 4) (inclusive) rectangles of
 *                 int(0.2 h) x int(0.2 w) at (int(u 0.8 h), int(u 0.8 w)), filled with N(0, 1)
 *                 noise (the normalised inputs' mean and std) clamped to the sample's own min and
 *                 max (the notebook: the batch's mean, std, min, max, one draw for the batch).
 * Sample r of a batch draws from fl_rng keyed by (seed, the batch's loader epoch b->epoch, its
 * dataset row b->idx[r]), each transform from its own counter range: the same result at any
 * batch size, batch composition, thread count, and on resume. FL_AUG_FLIP_ALL flips every sample
 * in every phase (test-time augmentation). A batch on a device is copied to the host and back.
 * The fit fails with FL_ERR_ARG when pad is not smaller than the images. Order FL_ORDER_AUGMENT
 * (before DeviceCB: a host batch is augmented before it is copied to the device). */
enum { FL_AUG_CROP = 1, FL_AUG_FLIP = 2, FL_AUG_ERASE = 4, FL_AUG_FLIP_ALL = 8 };
enum { FL_ORDER_AUGMENT = -5 };
fl_callback *fl_augment_cb_new(int flags, int pad, uint64_t seed);
/* The transform of one sample (c, h, w) f32 in place, and of a batch (B rows, row b being dataset
 * row idx[b]) split over the OpenMP threads (the same bits at any count). */
void fl_augment_image(float *img, int c, int h, int w, int flags, int pad, uint64_t seed, uint64_t epoch,
                      int64_t index);
void fl_augment_batch(float *x, int64_t B, const int32_t *idx, int c, int h, int w, int flags, int pad,
                      uint64_t seed, uint64_t epoch);
/* "crop,flip,erase" (any non-empty subset, comma-separated) into *flags: 1, or 0 for an unknown name. */
int fl_augment_parse(const char *list, int *flags);

/* Test-time augmentation (14_augment): two validation passes over dl through fl_get_preds' path,
 * the images as they are and horizontally flipped; the two SOFTMAX outputs are averaged (the
 * notebook averages capture_preds' outputs) and the argmax compared with the batches' labels.
 * *acc = TTA accuracy; *acc_plain (may be NULL) = the first pass's alone. FL_ERR_NOMEM, or the
 * passes' errors. */
fl_status fl_tta_accuracy(fl_learner *l, fl_dataloader *dl, double *acc, double *acc_plain);

#ifdef __cplusplus
}
#endif
#endif
