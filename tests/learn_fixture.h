/* Small fixtures shared by test_learner.c and test_metrics.c: a hand-built synthetic dataset of
 * 1x2x2 uint8 "images" whose class is the brightest pixel (learnable by a linear model), and a
 * recording callback that appends every event's name to a string. */
#ifndef FL_LEARN_FIXTURE_H
#define FL_LEARN_FIXTURE_H
#include <stdlib.h>
#include <string.h>

#include "flexlearn.h"

/* n samples of 1x2x2, n_classes <= 4: pixel (label) is bright (150..255), the others dim (0..99).
 * Malloc'd x and y, as fl_dataset_free expects. */
static inline fl_dataset *fx_dataset(int64_t n, int n_classes, uint64_t seed) {
  fl_dataset *ds = calloc(1, sizeof *ds);
  ds->x = malloc((size_t)n * 4);
  ds->y = malloc((size_t)n * sizeof(int32_t));
  fl_rng r = fl_rng_make(seed, FL_STREAM_USER);
  for (int64_t i = 0; i < n; i++) {
    int label = (int)(i % n_classes);
    ds->y[i] = label;
    for (int p = 0; p < 4; p++)
      ds->x[i * 4 + p] = (uint8_t)(p == label ? 150 + fl_rng_below(&r, 106) : fl_rng_below(&r, 100));
  }
  ds->device = FL_CPU;
  ds->n = n;
  ds->c = 1, ds->h = 2, ds->w = 2;
  ds->n_classes = n_classes;
  return ds;
}

/* ---- recorder: a callback with a handler for every event, appending "name " to log ---- */
typedef struct fx_rec {
  fl_callback cb;
  char log[16384];
  size_t len;
} fx_rec;

static inline fl_status fx_rec_on(fl_callback *cb, fl_learner *l, fl_event e) {
  (void)l;
  fx_rec *r = (fx_rec *)cb;
  const char *name = fl_event_name(e);
  size_t k = strlen(name);
  if (r->len + k + 2 < sizeof r->log) {
    memcpy(r->log + r->len, name, k);
    r->log[r->len + k] = ' ';
    r->len += k + 1;
    r->log[r->len] = 0;
  }
  return FL_OK;
}
#define FX_REC_FN(E) static inline fl_status fx_rec_##E(fl_callback *cb, fl_learner *l) { return fx_rec_on(cb, l, E); }
FX_REC_FN(FL_BEFORE_FIT) FX_REC_FN(FL_AFTER_FIT) FX_REC_FN(FL_CLEANUP_FIT)
FX_REC_FN(FL_BEFORE_EPOCH) FX_REC_FN(FL_AFTER_EPOCH) FX_REC_FN(FL_CLEANUP_EPOCH)
FX_REC_FN(FL_BEFORE_BATCH) FX_REC_FN(FL_AFTER_BATCH) FX_REC_FN(FL_CLEANUP_BATCH)
FX_REC_FN(FL_PREDICT) FX_REC_FN(FL_AFTER_PREDICT) FX_REC_FN(FL_GET_LOSS) FX_REC_FN(FL_AFTER_LOSS)
FX_REC_FN(FL_BACKWARD) FX_REC_FN(FL_AFTER_BACKWARD) FX_REC_FN(FL_STEP) FX_REC_FN(FL_AFTER_STEP)
FX_REC_FN(FL_ZERO_GRAD)
#undef FX_REC_FN

static inline void fx_rec_free(fl_callback *cb) { free(cb); }

/* A heap recorder (freed by the learner that owns it, or with fl_callback_free). */
static inline fx_rec *fx_rec_new(int order) {
  fx_rec *r = calloc(1, sizeof *r);
  r->cb.name = "Recorder";
  r->cb.order = order;
  r->cb.free = fx_rec_free;
  fl_cb_fn fns[FL_N_EVENTS] = {
      fx_rec_FL_BEFORE_FIT, fx_rec_FL_AFTER_FIT, fx_rec_FL_CLEANUP_FIT,
      fx_rec_FL_BEFORE_EPOCH, fx_rec_FL_AFTER_EPOCH, fx_rec_FL_CLEANUP_EPOCH,
      fx_rec_FL_BEFORE_BATCH, fx_rec_FL_AFTER_BATCH, fx_rec_FL_CLEANUP_BATCH,
      fx_rec_FL_PREDICT, fx_rec_FL_AFTER_PREDICT, fx_rec_FL_GET_LOSS, fx_rec_FL_AFTER_LOSS,
      fx_rec_FL_BACKWARD, fx_rec_FL_AFTER_BACKWARD, fx_rec_FL_STEP, fx_rec_FL_AFTER_STEP,
      fx_rec_FL_ZERO_GRAD};
  memcpy(r->cb.on, fns, sizeof fns);
  return r;
}

static inline void fx_rec_clear(fx_rec *r) { r->len = 0, r->log[0] = 0; }

/* Counts occurrences of word (followed by a space) in the recorder's log. */
static inline int fx_count(const char *log, const char *word) {
  int c = 0;
  size_t k = strlen(word);
  for (const char *p = log; (p = strstr(p, word)); p += k)
    if ((p == log || p[-1] == ' ') && p[k] == ' ') c++;
  return c;
}
#endif
