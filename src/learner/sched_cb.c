/* BaseSchedCB / BatchSchedCB / EpochSchedCB: a schedule (a pure function of the step index)
 * written into the optimiser's groups before each training batch or epoch. */
#include <stdio.h>
#include <stdlib.h>

#include "fl/learner.h"

static const char *sched_name(const fl_schedule *s) {
  switch (s->kind) {
  case FL_SCHED_ONECYCLE: return "OneCycleLR";
  case FL_SCHED_COSINE: return "CosineAnnealingLR";
  case FL_SCHED_EXP: return "ExponentialLR";
  case FL_SCHED_STEP: return "StepLR";
  case FL_SCHED_WARMUP: return "LinearLR";
  }
  return "schedule";
}

static fl_status apply(fl_sched_cb *c, fl_learner *l, int64_t i) {
  if (!l->opt) return fl_error(FL_ERR, "%s: the learner has no optimiser", c->cb.name);
  if (fl_schedule_apply(&c->sched, l->opt, i) && !c->warned) {
    c->warned = 1;
    fprintf(stderr, "flexlearn: %s: %s %lld is past the end of %s's %lld %s; keeping its last values\n",
            c->cb.name, c->per_batch ? "step" : "epoch", (long long)i, sched_name(&c->sched),
            (long long)c->sched.total_steps, c->per_batch ? "steps" : "epochs");
  }
  return FL_OK;
}

static fl_status before_fit(fl_callback *cb, fl_learner *l) {
  fl_sched_cb *c = (fl_sched_cb *)cb;
  if (!l->fit_train) return FL_OK;   /* validation only: nothing is trained */
  int64_t i = c->per_batch ? (l->opt ? l->opt->n_steps : 0) : 0;
  return i < c->sched.total_steps ? apply(c, l, i) : FL_OK;   /* a warning waits for a real step */
}

static fl_status before_batch(fl_callback *cb, fl_learner *l) {
  return l->training ? apply((fl_sched_cb *)cb, l, l->opt ? l->opt->n_steps : 0) : FL_OK;
}

static fl_status before_epoch(fl_callback *cb, fl_learner *l) {
  return l->training ? apply((fl_sched_cb *)cb, l, l->epoch) : FL_OK;
}

static void sched_free(fl_callback *cb) { free(cb); }

static fl_callback *sched_cb_new(const fl_schedule *s, int per_batch) {
  FL_CHECK(s && s->total_steps >= 1, "fl_%s_sched_cb_new: needs a schedule", per_batch ? "batch" : "epoch");
  fl_sched_cb *c = fl_xcalloc(1, sizeof *c);
  c->cb.name = per_batch ? "BatchSchedCB" : "EpochSchedCB";
  c->cb.free = sched_free;
  c->sched = *s;
  c->per_batch = per_batch;
  c->cb.on[FL_BEFORE_FIT] = before_fit;
  if (per_batch) c->cb.on[FL_BEFORE_BATCH] = before_batch;
  else c->cb.on[FL_BEFORE_EPOCH] = before_epoch;
  return &c->cb;
}

fl_callback *fl_batch_sched_cb_new(const fl_schedule *s) { return sched_cb_new(s, 1); }
fl_callback *fl_epoch_sched_cb_new(const fl_schedule *s) { return sched_cb_new(s, 0); }
