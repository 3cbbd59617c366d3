/* flexlearn checkpoints: everything a fit needs to continue exactly where it stopped.
 *
 * Format: one safetensors file per checkpoint, DIR/ckpt-EEEEEE-PHASE-IIIIIIII.safetensors
 * (epoch, "train"/"valid", the next batch of that phase). It holds
 *   - the parameters under their state_dict names ("0.weight", ...), F32 with their shapes,
 *     so PyTorch's safetensors loader reads them (load_state_dict(strict=False), or drop the
 *     other tensors);
 *   - "optim.<name>" for each optimiser buffer (fl_optimizer.bufs: AdamW's exp_avg, ...), and
 *     "grad" (model->flat_grad) when the gradients are state (MomentumLearner), each as flat
 *     F32 [numel of model->flat];
 *   - in __metadata__ (strings only): "format": "pt", "flexlearn_model", and "flexlearn_state",
 *     one JSON object: version, the position (epoch, phase, iter: the next batch to run),
 *     n_iter, n_epochs, the loaders' epoch counters (their shuffles are functions of (seed,
 *     epoch): no replay), the optimiser (name, n_steps, buffer names, every group's lr/mom/wd),
 *     the grads' set-to-none flags, the caller's config (flags that must match on resume), the
 *     checkpointing settings (every, keep), and each callback's state (fl_callback.save_state).
 *     Doubles are written as C99 hex floats ("0x1.99999ap-3"): they read back bit for bit.
 * Written to NAME.tmp, fsynced, renamed over NAME, then the directory fsynced: a crash at any
 * point leaves the previous checkpoints whole. The newest `keep` are kept.
 *
 * Reading validates the whole file (the metadata against its schema, every tensor's entry, the
 * data covered exactly once, the model's names and shapes) before anything is changed.
 * CJSON=0 builds have no checkpoints (every call returns FL_ERR_ARG saying so). */
#ifndef FL_CHECKPOINT_H
#define FL_CHECKPOINT_H

#include <stdio.h>

#include "fl/learner.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- a callback's state: named values (fl_callback.save_state / load_state) ----
 * Keys are the callback's own. Setters copy; an f64 is kept exactly. Getters return FL_OK or
 * FL_ERR_FORMAT naming the key when it is missing or of another type. */
fl_status fl_state_set_i64(fl_state *s, const char *key, int64_t v);
fl_status fl_state_set_f64(fl_state *s, const char *key, double v);
fl_status fl_state_set_str(fl_state *s, const char *key, const char *v);
fl_status fl_state_set_f64s(fl_state *s, const char *key, const double *v, int64_t n);
fl_status fl_state_get_i64(const fl_state *s, const char *key, int64_t *v);
fl_status fl_state_get_f64(const fl_state *s, const char *key, double *v);
/* The string (owned by s, valid while s is), or NULL with FL_ERR_FORMAT's reason. */
const char *fl_state_get_str(const fl_state *s, const char *key);
/* An array of at most cap doubles into v[0..*n); more than cap is FL_ERR_FORMAT. */
fl_status fl_state_get_f64s(const fl_state *s, const char *key, double *v, int64_t cap, int64_t *n);

/* ---- reading ---- */
typedef struct fl_checkpoint fl_checkpoint;
/* Reads `path` and validates it fully against model's parameters (names, shapes); nothing is
 * changed. FL_ERR_IO (cannot open/read), FL_ERR_FORMAT (one line naming the file and what is
 * wrong), FL_ERR_NOMEM. On success *out is new (free with fl_checkpoint_free). */
fl_status fl_checkpoint_read(const char *path, fl_module *model, fl_checkpoint **out);
void fl_checkpoint_free(fl_checkpoint *c);   /* accepts NULL */
const char *fl_checkpoint_path(const fl_checkpoint *c);
/* The value the checkpointed run gave a config key (fl_checkpoint_cfg.config), or NULL. */
const char *fl_checkpoint_config(const fl_checkpoint *c, const char *key);
/* Where it continues: the epoch, the phase (0 train, 1 valid), the next batch; training batches done. */
void fl_checkpoint_position(const fl_checkpoint *c, int *epoch, int *valid, int64_t *iter, int64_t *n_iter);
/* The checkpointed run's `every` and `keep` (fl_checkpoint_cfg). */
void fl_checkpoint_settings(const fl_checkpoint *c, int *every, int *keep);
/* The newest checkpoint in dir that validates fully. A newer one that does not is renamed to
 * NAME.corrupt, with one line on `warn` (may be NULL) naming it and why. FL_ERR_IO when dir is
 * missing or unreadable or holds no checkpoint, FL_ERR_FORMAT when none of them validates (the
 * reason is the newest one's); the reason names dir. */
fl_status fl_checkpoint_latest(const char *dir, fl_module *model, FILE *warn, fl_checkpoint **out);
/* 1 when dir holds at least one checkpoint file (ckpt-*.safetensors), 0 when not or missing. */
int fl_checkpoint_dir_has_any(const char *dir);

/* ---- CheckpointCB ----
 * Saves every `every` training batches (0: never mid-epoch) and at the end of every epoch
 * (after validation), at the end of after_batch / after_epoch (order 1000: after every other
 * callback). With an InterruptCB, a fit stopped by Ctrl-C saves one at the stop point in
 * cleanup_fit. A failed save (full disk, read-only directory) stops the fit with FL_ERR_IO
 * naming the path; the checkpoints written before stay valid.
 * Resume: give it the checkpoint (fl_checkpoint_read/latest); in before_fit, after every other
 * callback's before_fit, it checks the optimiser and callbacks against it, then restores the
 * weights, optimiser buffers and step count, group hyper-parameters, grads (when saved), n_iter,
 * the loaders' epoch counters, each callback's state (load_state), and sets the learner's start
 * position: the fit goes on from that batch. Callbacks with state that the checkpoint lacks are
 * an error; states for callbacks not present are ignored. */
typedef struct fl_checkpoint_cfg {
  const char *dir;            /* where to write (created if missing, one level) */
  int every;                  /* save every N training batches; 0: at epoch ends only */
  int keep;                   /* keep the newest K (<= 0: 3) */
  int save_grad;              /* -1: when the learner is a MomentumLearner; 0 never; 1 always */
  const char *model_name;     /* written as __metadata__ flexlearn_model (may be NULL) */
  const char *const *config;  /* n_config key, value pairs stored for fl_checkpoint_config */
  int n_config;
  fl_checkpoint *resume;      /* owned from here on (freed after before_fit); NULL: fresh fit */
} fl_checkpoint_cfg;
fl_callback *fl_checkpoint_cb_new(const fl_checkpoint_cfg *cfg);
/* The last checkpoint this callback wrote ("" when none). */
const char *fl_checkpoint_cb_last(fl_callback *cb);
/* Timing for the README: seconds the last save took. */
double fl_checkpoint_cb_last_seconds(fl_callback *cb);

#ifdef __cplusplus
}
#endif
#endif
