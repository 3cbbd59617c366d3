/* The Learner: event order, callback ordering, the cancel contract, steps from ops or from
 * callbacks, MomentumLearner, NaNCB, MetricsCB's log, lr_find and the LR finders,
 * reproducibility, the arena's steady state, JsonlCB. All on a tiny synthetic dataset. */
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test.h"
#include "learn_fixture.h"
#include "fl/plot.h"

static char g_dir[64] = "/tmp/fl_test_learner_XXXXXX";

/* ---- a fixture: datasets, loaders, model ---- */
typedef struct fx {
  fl_dataset *tr, *va;
  fl_dataloaders dls;
  fl_module *model;
} fx;

static void fx_init(fx *f, int64_t n_train, int64_t n_valid, int n_classes, int bs, int workers, uint64_t seed) {
  f->tr = fx_dataset(n_train, n_classes, seed * 2 + 1);
  f->va = fx_dataset(n_valid, n_classes, seed * 2 + 2);
  fl_status s = fl_get_dls(&f->dls, f->tr, f->va, bs, seed, workers, 1);
  FL_CHECK(s == FL_OK, "fl_get_dls: %s", fl_last_error());
  f->model = fl_get_model(seed, 4, 8, n_classes);
}

static void fx_free(fx *f) {
  fl_module_free(f->model);
  fl_dataloaders_free(&f->dls);
  fl_dataset_free(f->tr), fl_dataset_free(f->va);
}

static float *host_copy(const fl_tensor *t) {
  float *p = malloc((size_t)fl_numel(t) * sizeof(float));
  fl_tensor_to_host(t, p);
  return p;
}

/* ---- canceller: returns `ret` at its event when epoch / training / iter match (-1 = any) ---- */
typedef struct canceller {
  fl_callback cb;
  fl_status ret;
  int epoch, train;
  int64_t iter;
  int fired;
} canceller;

static fl_status canc_fn(fl_callback *cb, fl_learner *l) {
  canceller *c = (canceller *)cb;
  if (c->ret == FL_OK) return FL_OK;
  if (c->epoch >= 0 && l->epoch != c->epoch) return FL_OK;
  if (c->train >= 0 && l->training != c->train) return FL_OK;
  if (c->iter >= 0 && l->iter != c->iter) return FL_OK;
  c->fired++;
  if (c->ret < 0) return fl_error(c->ret, "test error at epoch %d", l->epoch);
  return c->ret;
}

static void plain_free(fl_callback *cb) { free(cb); }

static canceller *canceller_new(fl_event at, fl_status ret, int epoch, int train, int64_t iter) {
  canceller *c = calloc(1, sizeof *c);
  c->cb.name = "Canceller";
  c->cb.free = plain_free;
  c->cb.on[at] = canc_fn;
  c->ret = ret, c->epoch = epoch, c->train = train, c->iter = iter;
  return c;
}

/* ---- expected event sequences: 2 training batches (16 samples, bs 8), 1 valid batch (8, bs 16) ---- */
#define TB "before_batch predict after_predict get_loss after_loss backward after_backward step after_step zero_grad after_batch cleanup_batch "
#define VB "before_batch predict after_predict get_loss after_loss after_batch cleanup_batch "
#define TE "before_epoch " TB TB "after_epoch cleanup_epoch "
#define VE "before_epoch " VB "after_epoch cleanup_epoch "

/* The lesson's plain Learner + TrainCB, a recorder (order -5, so it sees every event that runs)
 * and a canceller (order 0). */
typedef struct run {
  fx f;
  fl_learner *l;
  fx_rec *rec;
  canceller *c;
} run;

static void run_init(run *r, fl_event at, fl_status ret, int epoch, int train, int64_t iter) {
  fx_init(&r->f, 16, 8, 4, 8, 0, 7);
  r->rec = fx_rec_new(-5);
  r->c = canceller_new(at, ret, epoch, train, iter);
  fl_callback *cbs[3] = {fl_train_cb_new(1), &r->rec->cb, &r->c->cb};
  r->l = fl_learner_new(r->f.model, &r->f.dls, fl_cross_entropy, 0.1f, cbs, 3, fl_sgd_new, NULL);
}

static void run_free(run *r) {
  fl_learner_free(r->l);
  fx_free(&r->f);
}

static void check_run(fl_event at, fl_status ret, int epoch, int train, int64_t iter, int n_epochs,
                      fl_status want, const char *want_log, const char *what) {
  run r;
  run_init(&r, at, ret, epoch, train, iter);
  fl_error(FL_OK, "%s", "");
  fl_status s = fl_fit(r.l, n_epochs, 1, 1, NULL, 0, 0);
  EXPECTF(s == want, "%s: fit returned %d (%s), want %d", what, s, fl_last_error(), want);
  EXPECTF(!strcmp(r.rec->log, want_log), "%s:\n   got  %s\n   want %s", what, r.rec->log, want_log);
  EXPECTF(ret == FL_OK || r.c->fired >= 1, "%s: the canceller never fired", what);
  run_free(&r);
}

/* At after_predict: the phase as the learner, the model and the graph see it. */
typedef struct { fl_callback cb; int bad, seen[2]; } mode_probe;
static fl_status mp_after_predict(fl_callback *cb, fl_learner *l) {
  mode_probe *m = (mode_probe *)cb;
  int t = l->training;
  m->seen[t]++;
  m->bad += l->model->training != t || fl_graph_grad_enabled(l->graph) != t || l->preds->requires_grad != t ||
            l->dl != (t ? l->dls->train : l->dls->valid) || l->batch.n != 2 || l->batch.n_inp != 1;
  return FL_OK;
}

/* fit(1) with TrainCB: every event, in the lesson's order; validation has no backward/step/zero_grad. */
static void test_event_order(void) {
  {   /* validation runs in eval mode under no_grad; the graph's grad mode is restored after */
    run r;
    run_init(&r, FL_BEFORE_FIT, FL_OK, -1, -1, -1);
    mode_probe *m = calloc(1, sizeof *m);
    m->cb.name = "ModeProbe", m->cb.free = plain_free, m->cb.on[FL_AFTER_PREDICT] = mp_after_predict;
    fl_learner_add_cb(r.l, &m->cb);
    EXPECT(fl_fit(r.l, 2, 1, 1, NULL, 0, 0) == FL_OK);
    EXPECT(m->bad == 0 && m->seen[1] == 4 && m->seen[0] == 2);
    EXPECT(fl_graph_grad_enabled(r.l->graph) == 1);
    EXPECT(r.l->epoch == 2 && r.l->n_epochs == 2 && r.l->n_iter == 4);
    run_free(&r);
  }
  check_run(FL_BEFORE_FIT, FL_OK, -1, -1, -1, 1, FL_OK, "before_fit " TE VE "after_fit cleanup_fit ", "fit(1)");
  run r;
  run_init(&r, FL_BEFORE_FIT, FL_OK, -1, -1, -1);
  EXPECT(fl_fit(r.l, 2, 1, 1, NULL, 0, 0) == FL_OK);
  EXPECT(!strcmp(r.rec->log, "before_fit " TE VE TE VE "after_fit cleanup_fit "));
  fx_rec_clear(r.rec);
  EXPECT(fl_fit(r.l, 1, 1, 0, NULL, 0, 0) == FL_OK);   /* train only */
  EXPECT(!strcmp(r.rec->log, "before_fit " TE "after_fit cleanup_fit "));
  fx_rec_clear(r.rec);
  EXPECT(fl_fit(r.l, 1, 0, 1, NULL, 0, 0) == FL_OK);   /* valid only */
  EXPECT(!strcmp(r.rec->log, "before_fit " VE "after_fit cleanup_fit "));
  fx_rec_clear(r.rec);
  EXPECT(fl_fit(r.l, 0, 1, 1, NULL, 0, 0) == FL_OK);   /* no epochs */
  EXPECT(!strcmp(r.rec->log, "before_fit after_fit cleanup_fit "));
  run_free(&r);
  EXPECT(!strcmp(fl_event_name(FL_BEFORE_FIT), "before_fit"));
  EXPECT(!strcmp(fl_event_name(FL_ZERO_GRAD), "zero_grad"));
  EXPECT(!strcmp(fl_event_name(FL_N_EVENTS), "unknown event"));
}

/* ---- ordering: by order, stable; fit's extra callbacks only during that fit ---- */
static char g_order_log[256];
static int g_frees;
static fl_status name_logger(fl_callback *cb, fl_learner *l) {
  (void)l;
  strcat(g_order_log, cb->name);
  strcat(g_order_log, " ");
  return FL_OK;
}
static void counting_free(fl_callback *cb) {
  g_frees++;
  free(cb);
}
static fl_callback *named_cb(const char *name, int order) {
  fl_callback *cb = calloc(1, sizeof *cb);
  cb->name = name, cb->order = order, cb->free = counting_free;
  cb->on[FL_BEFORE_FIT] = name_logger;
  return cb;
}

static void test_callback_order(void) {
  g_frees = 0;
  fl_module *m = fl_get_model(1, 4, 8, 4);
  fl_callback *cbs[4] = {named_cb("a", 3), named_cb("b", 0), named_cb("c", 1), named_cb("d", 0)};
  fl_learner *l = fl_learner_new(m, NULL, fl_cross_entropy, 0.1f, cbs, 4, NULL, &fl_train_ops);
  fl_learner_add_cb(l, named_cb("e", -2));
  fl_learner_add_cb(l, named_cb("f", 1));
  const char *want = "e b d c f a";
  char got[64] = "";
  for (int i = 0; i < l->n_cbs; i++) strcat(got, l->cbs[i]->name), strcat(got, i + 1 < l->n_cbs ? " " : "");
  EXPECTF(!strcmp(got, want), "order %s", got);
  g_order_log[0] = 0;
  EXPECT(fl_learner_callback(l, FL_BEFORE_FIT) == FL_OK);
  EXPECT(!strcmp(g_order_log, "e b d c f a "));
  EXPECT(fl_learner_find_cb(l, "c") == l->cbs[3]);
  EXPECT(fl_learner_find_cb(l, "zz") == NULL);

  /* extras: present (sorted in) only during the fit, removed after, not freed by the learner */
  fl_callback *extra[2] = {named_cb("x", 0), named_cb("y", -3)};
  g_order_log[0] = 0;
  EXPECT(fl_fit(l, 0, 1, 1, extra, 2, 0) == FL_OK);
  EXPECTF(!strcmp(g_order_log, "y e b d x c f a "), "during fit: %s", g_order_log);
  EXPECT(l->n_cbs == 6);
  got[0] = 0;
  for (int i = 0; i < l->n_cbs; i++) strcat(got, l->cbs[i]->name), strcat(got, i + 1 < l->n_cbs ? " " : "");
  EXPECTF(!strcmp(got, want), "after fit: %s", got);
  g_order_log[0] = 0;
  EXPECT(fl_fit(l, 0, 1, 1, NULL, 0, 0) == FL_OK);
  EXPECT(!strcmp(g_order_log, "e b d c f a "));
  /* a callback that stops a fit (here: an error from before_fit) is still removed */
  canceller *bad = canceller_new(FL_BEFORE_FIT, FL_ERR, -1, -1, -1);
  fl_callback *one = &bad->cb;
  EXPECT(fl_fit(l, 1, 1, 1, &one, 1, 0) == FL_ERR);
  EXPECT(l->n_cbs == 6 && fl_learner_find_cb(l, "Canceller") == NULL);
  fl_learner_free(l);
  EXPECT(g_frees == 6);   /* its own six, not the extras */
  fl_callback_free(extra[0]), fl_callback_free(extra[1]), fl_callback_free(one);
  EXPECT(g_frees == 8);
  fl_module_free(m);
}

/* ---- the cancel contract ---- */
static void test_cancel_batch(void) {
  check_run(FL_AFTER_PREDICT, FL_CANCEL_BATCH, 0, 1, 0, 1, FL_OK,
            "before_fit before_epoch before_batch predict after_predict cleanup_batch " TB
            "after_epoch cleanup_epoch " VE "after_fit cleanup_fit ",
            "cancel_batch from after_predict");
  check_run(FL_BEFORE_BATCH, FL_CANCEL_BATCH, 0, 1, 1, 1, FL_OK,
            "before_fit before_epoch " TB "before_batch cleanup_batch after_epoch cleanup_epoch " VE
            "after_fit cleanup_fit ",
            "cancel_batch from before_batch");
  check_run(FL_AFTER_BATCH, FL_CANCEL_BATCH, 0, 0, 0, 1, FL_OK,   /* after after_batch: nothing skipped */
            "before_fit " TE VE "after_fit cleanup_fit ", "cancel_batch from after_batch");
}

static void test_cancel_epoch(void) {
  check_run(FL_AFTER_LOSS, FL_CANCEL_EPOCH, 0, 1, 0, 2, FL_OK,
            "before_fit before_epoch before_batch predict after_predict get_loss after_loss cleanup_batch "
            "cleanup_epoch " VE TE VE "after_fit cleanup_fit ",
            "cancel_epoch from after_loss");
  check_run(FL_BEFORE_EPOCH, FL_CANCEL_EPOCH, 0, 1, -1, 1, FL_OK,
            "before_fit before_epoch cleanup_epoch " VE "after_fit cleanup_fit ", "cancel_epoch from before_epoch");
  check_run(FL_AFTER_PREDICT, FL_CANCEL_EPOCH, 0, 0, 0, 1, FL_OK,   /* in validation */
            "before_fit " TE "before_epoch before_batch predict after_predict cleanup_batch cleanup_epoch "
            "after_fit cleanup_fit ",
            "cancel_epoch in validation");
}

static void test_cancel_fit(void) {
  check_run(FL_AFTER_STEP, FL_CANCEL_FIT, 0, 1, 1, 2, FL_OK,
            "before_fit before_epoch " TB
            "before_batch predict after_predict get_loss after_loss backward after_backward step after_step "
            "cleanup_batch cleanup_epoch cleanup_fit ",
            "cancel_fit from after_step");
  check_run(FL_BEFORE_FIT, FL_CANCEL_FIT, -1, -1, -1, 1, FL_OK, "before_fit cleanup_fit ", "cancel_fit from before_fit");
  check_run(FL_AFTER_BATCH, FL_CANCEL_FIT, 0, 0, 0, 3, FL_OK,
            "before_fit " TE "before_epoch " VB "cleanup_epoch cleanup_fit ", "cancel_fit in validation");
  check_run(FL_AFTER_EPOCH, FL_CANCEL_FIT, 0, 1, -1, 2, FL_OK,
            "before_fit " TE "cleanup_fit ", "cancel_fit from after_epoch");
}

/* An error unwinds every level (cleanup_ only), fit returns it, and the learner fits again. */
static void test_error_unwinds(void) {
  run r;
  run_init(&r, FL_AFTER_BACKWARD, FL_ERR_FORMAT, 0, 1, 0);
  fl_status s = fl_fit(r.l, 2, 1, 1, NULL, 0, 0);
  EXPECT(s == FL_ERR_FORMAT);
  EXPECT(!strcmp(fl_last_error(), "test error at epoch 0"));
  EXPECTF(!strcmp(r.rec->log, "before_fit before_epoch before_batch predict after_predict get_loss after_loss "
                              "backward after_backward cleanup_batch cleanup_epoch cleanup_fit "),
          "%s", r.rec->log);
  r.c->ret = FL_OK;   /* disarmed: the same learner fits normally */
  fx_rec_clear(r.rec);
  EXPECT(fl_fit(r.l, 1, 1, 1, NULL, 0, 0) == FL_OK);
  EXPECTF(!strcmp(r.rec->log, "before_fit " TE VE "after_fit cleanup_fit "), "%s", r.rec->log);
  run_free(&r);
  /* from a step dispatched as an event (predict) and from cleanup_epoch */
  check_run(FL_PREDICT, FL_ERR, 0, 1, 1, 1, FL_ERR,
            "before_fit before_epoch " TB "before_batch predict cleanup_batch cleanup_epoch cleanup_fit ",
            "error from predict");
  check_run(FL_CLEANUP_EPOCH, FL_ERR_IO, 0, 1, -1, 2, FL_ERR_IO,
            "before_fit " TE "cleanup_fit ", "error from cleanup_epoch");
  check_run(FL_AFTER_FIT, FL_ERR_IO, -1, -1, -1, 1, FL_ERR_IO,
            "before_fit " TE VE "after_fit cleanup_fit ", "error from after_fit");
}

/* A cancel below the level it is returned at is a callback bug: an error naming the event. */
static void test_lower_cancel_is_error(void) {
  check_run(FL_BEFORE_EPOCH, FL_CANCEL_BATCH, 0, 1, -1, 1, FL_ERR,
            "before_fit before_epoch cleanup_epoch cleanup_fit ", "cancel_batch from before_epoch");
  EXPECTF(strstr(fl_last_error(), "before_epoch") != NULL, "%s", fl_last_error());
  check_run(FL_BEFORE_FIT, FL_CANCEL_EPOCH, -1, -1, -1, 1, FL_ERR, "before_fit cleanup_fit ",
            "cancel_epoch from before_fit");
  EXPECTF(strstr(fl_last_error(), "before_fit") != NULL, "%s", fl_last_error());
  check_run(FL_AFTER_EPOCH, FL_CANCEL_BATCH, 0, 1, -1, 1, FL_ERR,
            "before_fit " TE "cleanup_fit ", "cancel_batch from after_epoch");
  EXPECTF(strstr(fl_last_error(), "after_epoch") != NULL, "%s", fl_last_error());
  check_run(FL_CLEANUP_FIT, FL_CANCEL_EPOCH, -1, -1, -1, 1, FL_ERR,
            "before_fit " TE VE "after_fit cleanup_fit ", "cancel_epoch from cleanup_fit");
  EXPECTF(strstr(fl_last_error(), "cleanup_fit") != NULL, "%s", fl_last_error());
}

/* SingleBatchCB + CompletionCB: CancelFit skips after_fit (nothing printed; the lesson's HEAD),
 * CancelEpoch gives one train + one valid batch per epoch ("Completed 2 batches"). */
static void completion_run(fl_status cancel, int n_epochs, const char *want, int want_batches) {
  fx f;
  fx_init(&f, 16, 8, 4, 8, 0, 3);
  char *buf = NULL;
  size_t len = 0;
  FILE *out = open_memstream(&buf, &len);
  fx_rec *rec = fx_rec_new(-5);
  fl_callback *cbs[4] = {fl_train_cb_new(1), &rec->cb, fl_completion_cb_new(out), NULL};
  int n = 3;
  if (cancel != FL_OK) cbs[n++] = fl_single_batch_cb_new(cancel);
  fl_learner *l = fl_learner_new(f.model, &f.dls, fl_cross_entropy, 0.1f, cbs, n, fl_sgd_new, NULL);
  EXPECT(fl_fit(l, n_epochs, 1, 1, NULL, 0, 0) == FL_OK);
  fflush(out);
  EXPECTF(!strcmp(buf, want), "cancel %d, %d epochs: printed '%s', want '%s'", cancel, n_epochs, buf, want);
  EXPECTF(fx_count(rec->log, "before_batch") == want_batches, "%d batches", fx_count(rec->log, "before_batch"));
  fl_learner_free(l);
  fclose(out);
  free(buf);
  fx_free(&f);
}

static void test_single_batch_and_completion(void) {
  completion_run(FL_OK, 1, "Completed 3 batches\n", 3);
  completion_run(FL_CANCEL_FIT, 1, "", 1);
  completion_run(FL_CANCEL_EPOCH, 1, "Completed 2 batches\n", 2);
  completion_run(FL_CANCEL_EPOCH, 3, "Completed 6 batches\n", 6);
}

/* ---- log capture for MetricsCB ---- */
#define MAX_LOGS 32
typedef struct { fl_log_entry e[MAX_LOGS]; int n; } log_capture;
static void capture_log(void *ctx, const fl_log_entry *e) {
  log_capture *c = ctx;
  if (c->n < MAX_LOGS) c->e[c->n++] = *e;
}
static fl_callback *metrics_cb(log_capture *cap) {
  fl_metric *acc = fl_multiclass_accuracy_new();
  const char *name = "accuracy";
  fl_callback *cb = fl_metrics_cb_new(1, &acc, &name);
  ((fl_metrics_cb *)cb)->log = capture_log;
  ((fl_metrics_cb *)cb)->log_ctx = cap;
  return cb;
}
static double logged_loss(const fl_log_entry *e) { return e->values[e->n - 1]; }

/* ---- steps from the learner's ops, or from callbacks ---- */
typedef struct { fl_callback cb; int calls[FL_N_EVENTS]; } my_train;
#define MY(E) static fl_status my_##E(fl_callback *cb, fl_learner *l)
static fl_status my_count(fl_callback *cb, fl_event e) { ((my_train *)cb)->calls[e]++; return FL_OK; }
MY(predict) {
  my_count(cb, FL_PREDICT);
  l->preds = fl_module_forward(l->model, l->graph, l->batch.t[0]);
  return l->preds ? FL_OK : FL_ERR;
}
MY(get_loss) {
  my_count(cb, FL_GET_LOSS);
  l->loss = fl_cross_entropy(l->graph, l->preds, l->batch.t[1]);
  return l->loss ? FL_OK : FL_ERR;
}
MY(backward) { my_count(cb, FL_BACKWARD); return fl_backward(l->graph, l->loss); }
MY(step) { my_count(cb, FL_STEP); return fl_opt_step(l->opt); }
MY(zero_grad) { my_count(cb, FL_ZERO_GRAD); fl_opt_zero_grad(l->opt); return FL_OK; }
static my_train *my_train_new(void) {
  my_train *t = calloc(1, sizeof *t);
  t->cb.name = "MyTrain";
  t->cb.free = plain_free;
  t->cb.on[FL_PREDICT] = my_predict, t->cb.on[FL_GET_LOSS] = my_get_loss, t->cb.on[FL_BACKWARD] = my_backward;
  t->cb.on[FL_STEP] = my_step, t->cb.on[FL_ZERO_GRAD] = my_zero_grad;
  return t;
}

static void test_steps_from_ops(void) {
  /* TrainLearner (fl_train_ops), no TrainCB: it trains */
  fx f;
  fx_init(&f, 64, 32, 4, 8, 0, 5);
  log_capture cap = {0};
  fl_callback *cbs[1] = {metrics_cb(&cap)};
  fl_learner *l = fl_learner_new(f.model, &f.dls, fl_cross_entropy, 0.5f, cbs, 1, fl_sgd_new, &fl_train_ops);
  EXPECT(fl_fit(l, 6, 1, 1, NULL, 0, 0) == FL_OK);
  EXPECT(cap.n == 12);
  if (cap.n == 12) {
    double first = logged_loss(&cap.e[1]), last = logged_loss(&cap.e[11]);
    EXPECTF(last < 0.8 * first, "valid loss %g -> %g", first, last);
    EXPECTF(logged_loss(&cap.e[10]) < logged_loss(&cap.e[0]), "train loss %g -> %g", logged_loss(&cap.e[0]),
            logged_loss(&cap.e[10]));
    EXPECTF(cap.e[11].values[0] > 0.6, "valid accuracy %g", cap.e[11].values[0]);
  }
  /* with ops, a callback's step handlers are never called */
  my_train *t = my_train_new();
  fl_callback *one = &t->cb;
  EXPECT(fl_fit(l, 1, 1, 1, &one, 1, 0) == FL_OK);
  for (int e = 0; e < FL_N_EVENTS; e++) EXPECT(t->calls[e] == 0);
  fl_learner_free(l);
  fx_free(&f);

  /* ops NULL, no TrainCB: the five steps are events that a custom callback handles */
  fx_init(&f, 64, 32, 4, 8, 0, 5);
  uint64_t h0 = fl_module_hash(f.model);
  fl_learner *l2 = fl_learner_new(f.model, &f.dls, fl_cross_entropy, 0.5f, &one, 1, fl_sgd_new, NULL);
  EXPECT(fl_fit(l2, 2, 1, 1, NULL, 0, 0) == FL_OK);
  EXPECT(t->calls[FL_PREDICT] == 2 * (8 + 2));   /* 8 train + 2 valid batches per epoch */
  EXPECT(t->calls[FL_GET_LOSS] == 2 * (8 + 2));
  EXPECT(t->calls[FL_BACKWARD] == 2 * 8);
  EXPECT(t->calls[FL_STEP] == 2 * 8);
  EXPECT(t->calls[FL_ZERO_GRAD] == 2 * 8);
  EXPECT(fl_module_hash(f.model) != h0);
  /* a partial ops table: the missing predict comes from the callback, the rest from ops */
  fl_learner_ops part = fl_train_ops;
  part.predict = NULL;
  l2->ops = &part;
  memset(t->calls, 0, sizeof t->calls);
  EXPECT(fl_fit(l2, 1, 1, 1, NULL, 0, 0) == FL_OK);
  EXPECT(t->calls[FL_PREDICT] == 10);
  EXPECT(t->calls[FL_GET_LOSS] == 0 && t->calls[FL_BACKWARD] == 0 && t->calls[FL_STEP] == 0 &&
         t->calls[FL_ZERO_GRAD] == 0);
  fl_learner_free(l2);   /* frees the callback: it now belongs to l2 */
  fx_free(&f);
}

/* ---- MomentumLearner: zero_grad scales the grads by mom ---- */
typedef struct {
  fl_callback cb;
  int n;                 /* floats in the grad buffer */
  float *bw[8], *end[8]; /* flat_grad after backward / after the batch, per training batch */
  int none[8];           /* parameters whose grad is none after the batch */
  int nb;
} grad_probe;
static fl_status gp_after_backward(fl_callback *cb, fl_learner *l) {
  grad_probe *g = (grad_probe *)cb;
  if (l->epoch == 0 && l->iter < 8) g->bw[l->iter] = host_copy(l->model->flat_grad);
  return FL_OK;
}
static fl_status gp_after_batch(fl_callback *cb, fl_learner *l) {
  grad_probe *g = (grad_probe *)cb;
  if (l->training && l->epoch == 0 && l->iter < 8) {
    g->end[l->iter] = host_copy(l->model->flat_grad), g->nb++;
    fl_tensor *ps[8];
    int np = fl_module_parameters(l->model, ps, 8);
    for (int i = 0; i < np; i++) g->none[l->iter] += ps[i]->grad_none;
  }
  return FL_OK;
}
static void gp_free(fl_callback *cb) {
  grad_probe *g = (grad_probe *)cb;
  for (int i = 0; i < 8; i++) free(g->bw[i]), free(g->end[i]);
  free(g);
}
static grad_probe *grad_probe_new(void) {
  grad_probe *g = calloc(1, sizeof *g);
  g->cb.name = "GradProbe";
  g->cb.free = gp_free;
  g->cb.on[FL_AFTER_BACKWARD] = gp_after_backward;
  g->cb.on[FL_AFTER_BATCH] = gp_after_batch;
  return g;
}

static void test_momentum_learner(void) {
  const float mom = 0.5f;
  fx a, b;
  fx_init(&a, 32, 16, 4, 8, 0, 11);
  fx_init(&b, 32, 16, 4, 8, 0, 11);
  int n = (int)fl_numel(a.model->flat_grad);
  grad_probe *ga = grad_probe_new(), *gb = grad_probe_new();
  fl_callback *ca = &ga->cb, *cbb = &gb->cb;
  fl_learner *lm = fl_momentum_learner_new(a.model, &a.dls, fl_cross_entropy, 0.3f, &ca, 1, fl_sgd_new, mom);
  fl_learner *lt = fl_learner_new(b.model, &b.dls, fl_cross_entropy, 0.3f, &cbb, 1, fl_sgd_new, &fl_train_ops);
  EXPECT(lm->ops == &fl_momentum_ops && lm->mom == mom);
  EXPECT(fl_fit(lm, 1, 1, 0, NULL, 0, 0) == FL_OK);
  EXPECT(fl_fit(lt, 1, 1, 0, NULL, 0, 0) == FL_OK);
  EXPECT(ga->nb == 4 && gb->nb == 4);
  if (ga->nb == 4 && gb->nb == 4) {
    int bad_end = 0, bad_first = 0, bad_acc = 0, zero_plain = 0, nonzero = 0;
    for (int i = 0; i < n; i++) {
      /* batch 0: the same weights and batch, grads zero before: the same gradient g0 */
      bad_first += ga->bw[0][i] != gb->bw[0][i];
      nonzero += ga->bw[0][i] != 0;
      /* after every batch: the grad buffer is mom * (the grad after backward), exactly */
      for (int k = 0; k < 4; k++) bad_end += ga->end[k][i] != ga->bw[k][i] * mom;
      /* batch 1: the weights after one identical step are the same, so the momentum run's grad
       * after backward is mom * g0 + g1, g1 being the plain run's */
      bad_acc += fabsf(ga->bw[1][i] - (mom * gb->bw[0][i] + gb->bw[1][i])) > 1e-6f * (1 + fabsf(ga->bw[1][i]));
    }
    EXPECT(nonzero > n / 2);
    EXPECTF(bad_first == 0, "%d of %d first-batch grads differ", bad_first, n);
    EXPECTF(bad_end == 0, "%d grads are not mom * grad", bad_end);
    /* plain SGD's zero_grad sets every grad to none; the momentum learner keeps them all */
    for (int k = 0; k < 4; k++) zero_plain += gb->none[k] == 4 && ga->none[k] == 0;
    EXPECT(zero_plain == 4);
    EXPECTF(bad_acc == 0, "%d grads did not accumulate mom * old + new", bad_acc);
  }
  fl_learner_free(lm), fl_learner_free(lt);
  fx_free(&a), fx_free(&b);

  /* and it trains */
  fx f;
  fx_init(&f, 64, 32, 4, 8, 0, 5);
  log_capture cap = {0};
  fl_callback *cbs[1] = {metrics_cb(&cap)};
  fl_learner *l = fl_momentum_learner_new(f.model, &f.dls, fl_cross_entropy, 0.1f, cbs, 1, fl_sgd_new, 0.85f);
  EXPECT(fl_fit(l, 5, 1, 1, NULL, 0, 0) == FL_OK);
  EXPECT(cap.n == 10);
  if (cap.n == 10)
    EXPECTF(logged_loss(&cap.e[9]) < 0.8 * logged_loss(&cap.e[1]), "valid loss %g -> %g", logged_loss(&cap.e[1]),
            logged_loss(&cap.e[9]));
  fl_learner_free(l);
  fx_free(&f);
}

/* ---- NaNCB ---- */
/* After the training step of batch *(int *)ctx of epoch 0, the weights become NaN. */
static fl_status poison_after_step(fl_callback *cb, fl_learner *l) {
  if (l->epoch == 0 && l->iter == *(int *)cb->ctx) fl_tensor_fill(l->model->flat, NAN);
  return FL_OK;
}
static fl_callback *poison_new(int *at) {
  fl_callback *p = calloc(1, sizeof *p);
  p->name = "Poison", p->free = plain_free, p->on[FL_AFTER_STEP] = poison_after_step, p->ctx = at;
  return p;
}

static void test_nan_cb(void) {
  fx f;
  fx_init(&f, 32, 16, 4, 8, 0, 5);
  int at1 = 1;
  fl_callback *poison = poison_new(&at1);
  fx_rec *rec = fx_rec_new(-5);
  log_capture cap = {0};
  fl_callback *cbs[4] = {fl_nan_cb_new(1), &rec->cb, poison, metrics_cb(&cap)};
  fl_learner *l = fl_learner_new(f.model, &f.dls, fl_cross_entropy, 0.1f, cbs, 4, fl_sgd_new, &fl_train_ops);
  EXPECT(l->cbs[0] == cbs[0]);   /* order -10: first */
  fl_status s = fl_fit(l, 2, 1, 1, NULL, 0, 0);
  EXPECT(s == FL_ERR_NAN);
  EXPECTF(strstr(fl_last_error(), "epoch 0") && strstr(fl_last_error(), "batch 2") &&
              strstr(fl_last_error(), "NaN"),
          "message: %s", fl_last_error());
  /* batches 0 and 1 complete, batch 2 stops at after_loss (NaNCB runs before the recorder) */
  const char *tb = "before_batch after_predict after_loss after_backward after_step after_batch cleanup_batch ";
  char want[1024];
  snprintf(want, sizeof want, "before_fit before_epoch %s%sbefore_batch after_predict cleanup_batch cleanup_epoch cleanup_fit ",
           tb, tb);
  EXPECTF(!strcmp(rec->log, want), "\n   got  %s\n   want %s", rec->log, want);
  EXPECT(cap.n == 0);   /* no epoch was logged */
  fl_learner_free(l);
  fx_free(&f);

  /* every = 2 checks batches 0, 2, ...: a NaN from batch 1 on is caught at batch 2 */
  fx_init(&f, 32, 16, 4, 8, 0, 5);
  int at0 = 0;
  fl_callback *cbs2[2] = {fl_nan_cb_new(2), poison_new(&at0)};
  fl_learner *l2 = fl_learner_new(f.model, &f.dls, fl_cross_entropy, 0.1f, cbs2, 2, fl_sgd_new, &fl_train_ops);
  EXPECT(fl_fit(l2, 1, 1, 1, NULL, 0, 0) == FL_ERR_NAN);
  EXPECTF(strstr(fl_last_error(), "batch 2") != NULL, "%s", fl_last_error());
  fl_learner_free(l2);
  fx_free(&f);

  /* non-finite weights from the start: caught at batch 0 */
  fx_init(&f, 32, 16, 4, 8, 0, 5);
  fl_tensor_fill(f.model->flat, INFINITY);
  fl_callback *nc = fl_nan_cb_new(1);
  fl_learner *l3 = fl_learner_new(f.model, &f.dls, fl_cross_entropy, 0.1f, &nc, 1, fl_sgd_new, &fl_train_ops);
  EXPECT(fl_fit(l3, 1, 1, 1, NULL, 0, 0) == FL_ERR_NAN);
  EXPECTF(strstr(fl_last_error(), "epoch 0") && strstr(fl_last_error(), "batch 0"), "%s", fl_last_error());
  fl_learner_free(l3);
  fx_free(&f);
}

/* ---- MetricsCB's log ---- */
static void test_log_entry_str(void) {
  fl_log_entry e = {.names = {"accuracy", "loss"}, .values = {0.5, 0.6931}, .n = 2, .epoch = 0, .train = 1};
  char buf[256];
  EXPECT(!strcmp(fl_log_entry_str(&e, buf, sizeof buf),
                 "{'accuracy': '0.500', 'loss': '0.693', 'epoch': 0, 'train': True}"));
  e.values[0] = 0.6025, e.values[1] = 1.18249, e.epoch = 3, e.train = 0;
  EXPECT(!strcmp(fl_log_entry_str(&e, buf, sizeof buf),
                 "{'accuracy': '0.603', 'loss': '1.182', 'epoch': 3, 'train': False}"));
  fl_log_entry one = {.names = {"loss"}, .values = {1}, .n = 1, .epoch = 12, .train = 1};
  EXPECT(!strcmp(fl_log_entry_str(&one, buf, sizeof buf), "{'loss': '1.000', 'epoch': 12, 'train': True}"));
  /* a short buffer is cut, NUL-terminated, not overrun */
  char small[10];
  fl_log_entry_str(&e, small, sizeof small);
  EXPECT(!strcmp(small, "{'accurac"));
  char tiny[30];
  fl_log_entry_str(&e, tiny, sizeof tiny);
  EXPECT(strlen(tiny) == 29 && !strncmp(tiny, "{'accuracy': '0.603', 'loss':", 29));
}

/* The loss is a Mean weighted by batch size: batches 8, 8, 4; and accuracy is right. */
typedef struct { fl_callback cb; double loss[8], bs[8]; int n; int correct, total; } loss_probe;
static fl_status lp_after_loss(fl_callback *cb, fl_learner *l) {
  loss_probe *p = (loss_probe *)cb;
  if (l->epoch == 0 && l->training && p->n < 8) {
    p->loss[p->n] = fl_tensor_item(l->loss);
    p->bs[p->n++] = (double)fl_batch_size(&l->batch);
  }
  if (l->epoch == 0 && !l->training) {   /* argmax of preds vs targets, by hand */
    int64_t B = l->preds->shape[0], C = l->preds->shape[1];
    float *pr = host_copy(l->preds);
    int32_t *y = malloc((size_t)B * sizeof *y);
    fl_tensor_to_host(l->batch.t[1], y);
    for (int64_t i = 0; i < B; i++) {
      int64_t am = 0;
      for (int64_t c = 1; c < C; c++) if (pr[i * C + c] > pr[i * C + am]) am = c;
      p->correct += am == y[i];
      p->total++;
    }
    free(pr), free(y);
  }
  return FL_OK;
}

static void test_metrics_cb_weighted(void) {
  fx f;
  fx_init(&f, 20, 12, 4, 8, 0, 9);
  log_capture cap = {0};
  loss_probe *p = calloc(1, sizeof *p);
  p->cb.name = "LossProbe", p->cb.free = plain_free, p->cb.on[FL_AFTER_LOSS] = lp_after_loss;
  fl_callback *cbs[2] = {metrics_cb(&cap), &p->cb};
  fl_learner *l = fl_learner_new(f.model, &f.dls, fl_cross_entropy, 0.5f, cbs, 2, fl_sgd_new, &fl_train_ops);
  EXPECT(fl_fit(l, 1, 1, 1, NULL, 0, 0) == FL_OK);
  EXPECT(cap.n == 2 && p->n == 3);
  if (cap.n == 2 && p->n == 3) {
    EXPECT(p->bs[0] == 8 && p->bs[1] == 8 && p->bs[2] == 4);
    double sw = 0, s = 0, su = 0;
    for (int i = 0; i < 3; i++) s += p->loss[i] * p->bs[i], sw += p->bs[i], su += p->loss[i];
    EXPECT_NEAR(logged_loss(&cap.e[0]), s / sw, 1e-6);
    EXPECT(fabs(su / 3 - s / sw) > 1e-4);   /* the data tells weighted from unweighted apart */
    EXPECT(cap.e[0].train == 1 && cap.e[0].epoch == 0 && cap.e[1].train == 0 && cap.e[1].epoch == 0);
    EXPECT(!strcmp(cap.e[0].names[0], "accuracy") && !strcmp(cap.e[0].names[1], "loss") && cap.e[0].n == 2);
    EXPECT(p->total == 12);
    EXPECT_NEAR(cap.e[1].values[0], (double)p->correct / p->total, 1e-12);
  }
  /* no logger: nothing is called, the values are still kept in `last` for other callbacks */
  fl_metrics_cb *m = (fl_metrics_cb *)cbs[0];
  m->log = NULL;
  EXPECT(fl_fit(l, 1, 0, 1, NULL, 0, 0) == FL_OK);
  EXPECT(cap.n == 2 && m->last.train == 0 && m->last.epoch == 0 && isfinite(m->last.values[1]));
  fl_learner_free(l);
  fx_free(&f);

  /* the default logger prints the lesson's line for each phase to log_ctx */
  fx_init(&f, 20, 12, 4, 8, 0, 9);
  char *buf = NULL;
  size_t len = 0;
  FILE *out = open_memstream(&buf, &len);
  fl_metric *acc = fl_multiclass_accuracy_new();
  const char *name = "accuracy";
  fl_callback *mc = fl_metrics_cb_new(1, &acc, &name);
  ((fl_metrics_cb *)mc)->log_ctx = out;
  fl_learner *l3 = fl_learner_new(f.model, &f.dls, fl_cross_entropy, 0.5f, &mc, 1, fl_sgd_new, &fl_train_ops);
  EXPECT(fl_fit(l3, 1, 1, 1, NULL, 0, 0) == FL_OK);
  fflush(out);
  char last[128], want_tail[160];
  snprintf(want_tail, sizeof want_tail, "'epoch': 0, 'train': True}\n%s\n",
           fl_log_entry_str(&((fl_metrics_cb *)mc)->last, last, sizeof last));
  EXPECTF(!strncmp(buf, "{'accuracy': '", 14) && strlen(buf) == 2 * strlen(last) + 1 &&
              !strcmp(buf + strlen(buf) - strlen(want_tail), want_tail) && strstr(last, "'train': False}"),
          "printed:\n%s", buf);
  fl_learner_free(l3);
  fclose(out);
  free(buf);
  fx_free(&f);
}

/* ---- lr_find and the LR finders ---- */
static int png_ok(const char *path) {
  FILE *fp = fopen(path, "rb");
  if (!fp) return 0;
  unsigned char h[8] = {0};
  size_t k = fread(h, 1, 8, fp);
  fclose(fp);
  return k == 8 && !memcmp(h, "\x89PNG\r\n\x1a\n", 8);
}

static void test_lr_find(void) {
  fx f;
  fx_init(&f, 512, 16, 4, 8, 0, 13);
  fl_learner *l = fl_learner_new(f.model, &f.dls, fl_cross_entropy, 0.1f, NULL, 0, fl_sgd_new, &fl_train_ops);
  EXPECT(fl_fit(l, 1, 0, 1, NULL, 0, 0) == FL_OK);   /* leaves an optimiser in learn->opt */
  fl_optimizer *opt = l->opt;
  EXPECT(opt != NULL);
  int n = (int)fl_numel(f.model->flat_grad);
  float *g = malloc((size_t)n * sizeof *g);
  for (int i = 0; i < n; i++) g[i] = 0.01f * (float)(i % 17) - 0.05f;   /* non-zero grads to keep */
  fl_tensor *gt = fl_tensor_from_data(FL_F32, FL_CPU, 1, f.model->flat_grad->shape, g);
  fl_tensor_copy(f.model->flat_grad, gt);
  fl_tensor_free(gt);
  uint64_t h0 = fl_module_hash(f.model);
  uint64_t e_train = fl_dataloader_epoch(f.dls.train), e_valid = fl_dataloader_epoch(f.dls.valid);
  char png[128];
  snprintf(png, sizeof png, "%s/lr.png", g_dir);
  float sug = 0;
  double *lrs = NULL, *losses = NULL;
  int np = 0;
  const float gamma = 1.5f, start = 1e-3f;
  fl_status s = fl_lr_find(l, gamma, 3.0f, start, 10, fl_plot_available() ? png : NULL, &sug, &lrs, &losses, &np);
  EXPECTF(s == FL_OK, "%s", fl_last_error());
  /* weights, grads and the optimiser are as they were */
  EXPECT(fl_module_hash(f.model) == h0);
  float *g2 = host_copy(f.model->flat_grad);
  EXPECT(!memcmp(g, g2, (size_t)n * sizeof *g));
  EXPECT(l->opt == opt && opt->groups[0].lr == 0.1f);
  /* and the loaders' epochs: a later fit sees the data order it would have seen without lr_find */
  EXPECT(fl_dataloader_epoch(f.dls.train) == e_train && fl_dataloader_epoch(f.dls.valid) == e_valid);
  /* lrs grow by gamma per batch from start_lr; it stops at the first loss > 3 x min (or NaN) */
  EXPECT(np >= 3 && np < 64 * 10);
  if (np >= 3) {
    EXPECT(lrs[0] == (double)start);
    int bad_lr = 0, early = 0;
    double mn = INFINITY;
    for (int i = 0; i < np; i++) {
      if (i) bad_lr += lrs[i] != (double)((float)lrs[i - 1] * gamma);
      if (losses[i] < mn) mn = losses[i];
      if (i < np - 1) early += isnan(losses[i]) || losses[i] > 3 * mn;
    }
    EXPECT(bad_lr == 0);
    EXPECT(early == 0);
    EXPECTF(isnan(losses[np - 1]) || losses[np - 1] > 3 * mn, "last %g, min %g", losses[np - 1], mn);
    EXPECT(sug == (float)fl_lr_steepest(lrs, losses, np));
  }
  if (fl_plot_available()) EXPECT(png_ok(png));
  unlink(png);
  free(lrs), free(losses), free(g), free(g2);
  /* the learner still trains normally with its optimiser afterwards */
  EXPECT(fl_fit(l, 1, 1, 1, NULL, 0, 0) == FL_OK);
  fl_learner_free(l);
  fx_free(&f);
}

/* The lesson's first LRFinderCB: lr *= lr_mult after each training batch; stops at 3 x min;
 * validation epochs cancelled after their first batch. */
static void test_lr_finder_hand(void) {
  fx f;
  fx_init(&f, 64, 32, 4, 8, 0, 13);
  fx_rec *rec = fx_rec_new(-5);
  fl_callback *rcb = &rec->cb;
  fl_learner *l = fl_learner_new(f.model, &f.dls, fl_cross_entropy, 1e-4f, &rcb, 1, fl_sgd_new, &fl_train_ops);
  fl_callback *cb = fl_lr_finder_cb_new(1.3f, NULL);
  fl_lr_finder_cb *lf = (fl_lr_finder_cb *)cb;
  EXPECT(fl_fit(l, 20, 1, 1, &cb, 1, 0) == FL_OK);
  EXPECT(lf->n >= 3 && lf->n < 8 * 20);
  if (lf->n >= 3) {
    EXPECT(lf->lrs[0] == (double)1e-4f);
    int bad = 0, early = 0;
    double mn = INFINITY;
    for (int i = 0; i < lf->n; i++) {
      if (i) bad += lf->lrs[i] != (double)((float)lf->lrs[i - 1] * 1.3f);
      if (lf->losses[i] < mn) mn = lf->losses[i];
      if (i < lf->n - 1) early += lf->losses[i] > 3 * mn;
    }
    EXPECT(bad == 0 && early == 0);
    EXPECT(isnan(lf->losses[lf->n - 1]) || lf->losses[lf->n - 1] > 3 * mn);
    EXPECT(lf->min == mn);
  }
  /* finished validation epochs: none has after_epoch, each ran exactly one batch */
  int a = fx_count(rec->log, "after_epoch"), b = fx_count(rec->log, "before_epoch");
  int batches = fx_count(rec->log, "before_batch");
  EXPECTF(a >= 1 && b == 2 * a + 1, "after_epoch %d, before_epoch %d", a, b);
  EXPECTF(batches == lf->n + a, "%d batches, %d points, %d valid", batches, lf->n, a);
  EXPECT(fx_count(rec->log, "after_fit") == 0 && fx_count(rec->log, "cleanup_fit") == 1);
  EXPECT(l->n_cbs == 1);   /* the finder was this fit's only */
  fl_callback_free(cb);
  fl_learner_free(l);
  fx_free(&f);
}

/* ---- reproducibility ---- */
static uint64_t train_hash(uint64_t seed, int workers, int mom) {
  fx f;
  fx_init(&f, 40, 16, 4, 8, workers, seed);
  fl_learner *l = mom ? fl_momentum_learner_new(f.model, &f.dls, fl_cross_entropy, 0.2f, NULL, 0, fl_sgd_new, 0.85f)
                      : fl_learner_new(f.model, &f.dls, fl_cross_entropy, 0.2f, NULL, 0, fl_sgd_new, &fl_train_ops);
  EXPECT(fl_fit(l, 3, 1, 1, NULL, 0, 0) == FL_OK);
  uint64_t h = fl_module_hash(f.model);
  fl_learner_free(l);
  fx_free(&f);
  return h;
}

static void test_reproducible(void) {
  uint64_t a = train_hash(21, 0, 0), b = train_hash(21, 0, 0), c = train_hash(21, 2, 0), d = train_hash(22, 0, 0);
  EXPECT(a == b);
  EXPECTF(a == c, "workers 2: %016llx vs %016llx", (unsigned long long)c, (unsigned long long)a);
  EXPECT(a != d);
  EXPECT(train_hash(21, 2, 1) == train_hash(21, 0, 1));
  /* the shuffle matters: the same model and data with another loader seed trains differently */
  fx f;
  fx_init(&f, 40, 16, 4, 8, 0, 21);
  fl_dataloaders_free(&f.dls);
  EXPECT(fl_get_dls(&f.dls, f.tr, f.va, 8, 99, 0, 1) == FL_OK);
  fl_learner *l = fl_learner_new(f.model, &f.dls, fl_cross_entropy, 0.2f, NULL, 0, fl_sgd_new, &fl_train_ops);
  EXPECT(fl_fit(l, 3, 1, 1, NULL, 0, 0) == FL_OK);
  EXPECT(fl_module_hash(f.model) != a);
  fl_learner_free(l);
  fx_free(&f);
}

/* ---- the arena: no growth once the first epoch (both phases, partial batches) has run ---- */
typedef struct { fl_callback cb; int growths[16]; size_t cap[16]; int n; } arena_probe;
static fl_status ap_cleanup_epoch(fl_callback *cb, fl_learner *l) {
  arena_probe *a = (arena_probe *)cb;
  if (a->n < 16) a->growths[a->n] = fl_graph_growths(l->graph), a->cap[a->n++] = fl_graph_capacity(l->graph);
  return FL_OK;
}

static void test_arena_steady(void) {
  fx f;
  fx_init(&f, 20, 20, 4, 8, 0, 3);   /* train 8, 8, 4; valid 16, 4 */
  arena_probe *a = calloc(1, sizeof *a);
  a->cb.name = "ArenaProbe", a->cb.free = plain_free, a->cb.on[FL_CLEANUP_EPOCH] = ap_cleanup_epoch;
  log_capture cap = {0};
  fl_callback *cbs[3] = {&a->cb, metrics_cb(&cap), fl_nan_cb_new(1)};
  fl_learner *l = fl_learner_new(f.model, &f.dls, fl_cross_entropy, 0.2f, cbs, 3, fl_sgd_new, &fl_train_ops);
  EXPECT(fl_fit(l, 4, 1, 1, NULL, 0, 0) == FL_OK);
  EXPECT(a->n == 8);
  EXPECT(a->growths[0] >= 1);
  for (int i = 2; i < a->n; i++) {
    EXPECTF(a->growths[i] == a->growths[1], "epoch %d %s: %d growths, %d after epoch 0", i / 2,
            i % 2 ? "valid" : "train", a->growths[i], a->growths[1]);
    EXPECT(a->cap[i] == a->cap[1]);
  }
  fl_learner_free(l);
  fx_free(&f);
}

/* ---- JsonlCB ---- */
static char *slurp(const char *path) {
  FILE *fp = fopen(path, "rb");
  if (!fp) return NULL;
  fseek(fp, 0, SEEK_END);
  long n = ftell(fp);
  fseek(fp, 0, SEEK_SET);
  char *s = calloc(1, (size_t)n + 1);
  if (fread(s, 1, (size_t)n, fp) != (size_t)n) n = 0;
  fclose(fp);
  return s;
}

static double json_num(const char *line, const char *key) {
  char k[64];
  snprintf(k, sizeof k, "\"%s\": ", key);
  const char *p = strstr(line, k);
  return p ? strtod(p + strlen(k), NULL) : NAN;
}

static int exists(const char *p) {
  struct stat st;
  return stat(p, &st) == 0;
}

static void test_jsonl_cb(void) {
  char path[128], tmp[160];
  snprintf(path, sizeof path, "%s/log.jsonl", g_dir);
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  fx f;
  fx_init(&f, 20, 12, 4, 8, 0, 4);
  log_capture cap = {0};
  fl_callback *cbs[2] = {fl_jsonl_cb_new(path), metrics_cb(&cap)};
  fl_learner *l = fl_learner_new(f.model, &f.dls, fl_cross_entropy, 0.2f, cbs, 2, fl_sgd_new, &fl_train_ops);
  EXPECT(fl_fit(l, 2, 1, 1, NULL, 0, 0) == FL_OK);
  EXPECT(!exists(tmp));
  char *s = slurp(path);
  EXPECT(s != NULL);
  if (s) {
    int lines = 0;
    for (char *p = s; *p; p++) lines += *p == '\n';
    EXPECTF(lines == 4, "%d lines:\n%s", lines, s);
    char *save = NULL;
    int i = 0;
    for (char *ln = strtok_r(s, "\n", &save); ln && i < 4 && cap.n == 4; ln = strtok_r(NULL, "\n", &save), i++) {
      char want[64];
      snprintf(want, sizeof want, "{\"epoch\": %d, \"train\": %s, ", i / 2, i % 2 ? "false" : "true");
      EXPECTF(!strncmp(ln, want, strlen(want)), "line %d: %s", i, ln);
      EXPECT(ln[strlen(ln) - 1] == '}');
      EXPECT_NEAR(json_num(ln, "loss"), logged_loss(&cap.e[i]), 1e-5);
      EXPECT_NEAR(json_num(ln, "accuracy"), cap.e[i].values[0], 1e-5);
      double sec = json_num(ln, "seconds");
      EXPECT(sec >= 0 && sec < 60);
    }
    free(s);
  }
  unlink(path);
  fl_learner_free(l);
  fx_free(&f);

  /* an unwritable path: FL_ERR_IO naming it, no file (nor .tmp), the cleanups ran */
  char bad[160], badtmp[200], baddir[140];
  snprintf(baddir, sizeof baddir, "%s/missing", g_dir);
  snprintf(bad, sizeof bad, "%s/log.jsonl", baddir);
  snprintf(badtmp, sizeof badtmp, "%s.tmp", bad);
  fx_init(&f, 20, 12, 4, 8, 0, 4);
  fx_rec *rec = fx_rec_new(-5);
  fl_callback *cbs2[3] = {fl_jsonl_cb_new(bad), metrics_cb(&cap), &rec->cb};
  fl_learner *l2 = fl_learner_new(f.model, &f.dls, fl_cross_entropy, 0.2f, cbs2, 3, fl_sgd_new, &fl_train_ops);
  EXPECT(fl_fit(l2, 1, 1, 1, NULL, 0, 0) == FL_ERR_IO);
  EXPECTF(strstr(fl_last_error(), bad) != NULL, "%s", fl_last_error());
  EXPECT(!exists(bad) && !exists(badtmp) && !exists(baddir));
  EXPECTF(!strcmp(rec->log, "before_fit cleanup_fit "), "%s", rec->log);
  fl_learner_free(l2);
  fx_free(&f);

  /* a full disk: the first line's write fails, the fit stops with FL_ERR_IO naming the path */
  if (exists("/dev/full")) {
    fx_init(&f, 20, 12, 4, 8, 0, 4);
    fl_callback *cbs3[2] = {fl_jsonl_cb_new("/dev/full"), metrics_cb(&cap)};
    fl_learner *l3 = fl_learner_new(f.model, &f.dls, fl_cross_entropy, 0.2f, cbs3, 2, fl_sgd_new, &fl_train_ops);
    EXPECT(fl_fit(l3, 2, 1, 1, NULL, 0, 0) == FL_ERR_IO);
    EXPECTF(strstr(fl_last_error(), "/dev/full: write failed") != NULL, "%s", fl_last_error());
    EXPECT(l3->epoch == 0);
    fl_learner_free(l3);
    fx_free(&f);
  }
}

/* CsvCB: a header, then one row per epoch and phase with the values MetricsCB logged. */
static void test_csv_cb(void) {
  char path[128];
  snprintf(path, sizeof path, "%s/log.csv", g_dir);
  fx f;
  fx_init(&f, 20, 12, 4, 8, 0, 4);
  log_capture cap = {0};
  fl_callback *cbs[2] = {fl_csv_cb_new(path), metrics_cb(&cap)};
  fl_learner *l = fl_learner_new(f.model, &f.dls, fl_cross_entropy, 0.2f, cbs, 2, fl_sgd_new, &fl_train_ops);
  EXPECT(fl_fit(l, 2, 1, 1, NULL, 0, 0) == FL_OK);
  char *s = slurp(path);
  EXPECT(s != NULL);
  if (s) {
    int lines = 0;
    for (char *p = s; *p; p++) lines += *p == '\n';
    EXPECTF(lines == 5, "%d lines:\n%s", lines, s);
    char *save = NULL, *ln = strtok_r(s, "\n", &save);
    EXPECTF(ln && !strcmp(ln, "epoch,train,accuracy,loss,seconds,weights_fnv1a"), "header: %s", ln ? ln : "");
    for (int i = 0; i < 4 && cap.n == 4 && (ln = strtok_r(NULL, "\n", &save)); i++) {
      int ep = -1;
      char tr[8] = "";
      double acc = -1, loss = -1, sec = -1;
      unsigned long long h = 0;
      int k = sscanf(ln, "%d,%7[a-z],%lf,%lf,%lf,%16llx", &ep, tr, &acc, &loss, &sec, &h);
      EXPECTF(k == 6 && ep == i / 2 && !strcmp(tr, i % 2 ? "false" : "true"), "row %d: %s", i, ln);
      EXPECT_NEAR(acc, cap.e[i].values[0], 1e-5);
      EXPECT_NEAR(loss, logged_loss(&cap.e[i]), 1e-5);
      EXPECT(sec >= 0 && sec < 60);
    }
    free(s);
  }
  unlink(path);
  fl_learner_free(l);
  fx_free(&f);
}

/* The suggestion is where the smoothed loss falls fastest per log(lr), before the minimum: on a
 * synthetic curve that drops around lr 0.1 and blows up past 1, it lands near 0.1. */
static void test_lr_steepest(void) {
  double lrs[60], losses[60];
  int n = 0;
  for (double lr = 1e-5; lr < 3 && n < 60; lr *= 1.3, n++) {
    lrs[n] = lr;
    double t = log10(lr / 0.1);   /* a sigmoid drop centred on 0.1, a rise after 1 */
    losses[n] = 1.0 + 1.3 / (1.0 + exp(4.0 * t)) + (lr > 1 ? 3 * (lr - 1) : 0);
  }
  double s = fl_lr_steepest(lrs, losses, n);
  EXPECTF(s > 0.05 && s < 0.2, "suggested %g", s);
  EXPECT(isnan(fl_lr_steepest(lrs, losses, 0)));
  EXPECT(fl_lr_steepest(lrs, losses, 2) == lrs[0]);
}

/* A fit that fails (a NaN loss in epoch 1) keeps the log of what finished: epoch 0's two lines,
 * whole; cleanup_fit saw how the fit ended. */
static fl_status status_in_cleanup(fl_callback *cb, fl_learner *l) {
  *(fl_status *)cb->ctx = l->status;
  return FL_OK;
}

static fl_status poison_epoch1(fl_callback *cb, fl_learner *l) {
  (void)cb;
  if (l->epoch == 1 && l->iter == 1) fl_tensor_fill(l->model->flat, NAN);
  return FL_OK;
}

static void test_jsonl_failed_fit(void) {
  char path[128], tmp[160];
  snprintf(path, sizeof path, "%s/failed.jsonl", g_dir);
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  fx f;
  fx_init(&f, 32, 16, 4, 8, 0, 5);
  fl_status seen = FL_OK;
  log_capture cap = {0};
  fl_callback *watch = calloc(1, sizeof *watch), *poison = calloc(1, sizeof *poison);
  watch->name = "Watch", watch->free = plain_free, watch->on[FL_CLEANUP_FIT] = status_in_cleanup, watch->ctx = &seen;
  poison->name = "Poison", poison->free = plain_free, poison->on[FL_AFTER_STEP] = poison_epoch1;
  fl_callback *cbs[5] = {fl_nan_cb_new(1), poison, fl_jsonl_cb_new(path), watch, metrics_cb(&cap)};
  fl_learner *l = fl_learner_new(f.model, &f.dls, fl_cross_entropy, 0.1f, cbs, 5, fl_sgd_new, &fl_train_ops);
  EXPECT(fl_fit(l, 3, 1, 1, NULL, 0, 0) == FL_ERR_NAN);
  EXPECT(seen == FL_ERR_NAN);
  EXPECT(!exists(tmp));
  char *s = slurp(path);
  EXPECT(s != NULL);
  if (s) {
    EXPECTF(!strncmp(s, "{\"epoch\": 0, \"train\": true, ", 28) && strstr(s, "}\n{\"epoch\": 0, \"train\": false, ") &&
                !strstr(s, "\"epoch\": 1") && s[strlen(s) - 1] == '\n',
            "log of a failed fit:\n%s", s);
    free(s);
  }
  unlink(path);
  fl_learner_free(l);
  fx_free(&f);
}

/* InterruptCB: a SIGINT arriving mid-batch lets that batch finish (after_batch runs), then
 * cancels the fit at the next before_batch (cleanups run), fit returns FL_OK with fl_interrupted() == 1, and the
 * previous SIGINT disposition is back. */
static fl_status raise_sigint(fl_callback *cb, fl_learner *l) {
  (void)cb;
  if (l->training && l->epoch == 0 && l->iter == 1) raise(SIGINT);
  return FL_OK;
}

static void test_interrupt_cb(void) {
  fx f;
  fx_init(&f, 32, 16, 4, 8, 0, 6);
  fl_callback *ri = calloc(1, sizeof *ri);
  ri->name = "RaiseInt", ri->free = plain_free, ri->on[FL_AFTER_PREDICT] = raise_sigint;
  fx_rec *rec = fx_rec_new(0);
  fl_callback *cbs[3] = {fl_interrupt_cb_new(), ri, &rec->cb};
  fl_learner *l = fl_learner_new(f.model, &f.dls, fl_cross_entropy, 0.1f, cbs, 3, fl_sgd_new, &fl_train_ops);
  EXPECT(fl_fit(l, 2, 1, 1, NULL, 0, 0) == FL_OK);
  EXPECT(fl_interrupted() == 1);
  EXPECTF(l->n_iter == 2 && l->epoch == 0 && l->iter == 2, "n_iter %lld epoch %d iter %lld", (long long)l->n_iter,
          l->epoch, (long long)l->iter);
  /* batch 1 whole; batch 2 cancelled in before_batch (before the recorder's, order 0) */
  const char *tail = "after_step after_batch cleanup_batch cleanup_batch cleanup_epoch cleanup_fit ";
  size_t n = strlen(rec->log), k = strlen(tail);
  EXPECTF(n > k && !strcmp(rec->log + n - k, tail), "%s", rec->log);
  EXPECT(fx_count(rec->log, "after_epoch") == 0 && fx_count(rec->log, "after_fit") == 0);
  struct sigaction now;
  EXPECT(sigaction(SIGINT, NULL, &now) == 0 && now.sa_handler == SIG_DFL);
  /* the next fit without a SIGINT runs to the end and says it was not interrupted */
  ri->on[FL_AFTER_PREDICT] = NULL;
  EXPECT(fl_fit(l, 1, 1, 1, NULL, 0, 0) == FL_OK && fl_interrupted() == 0 && l->n_iter == 4);
  fl_learner_free(l);
  fx_free(&f);
}

int main(void) {
  fl_init(1);
  if (!mkdtemp(g_dir)) return perror("mkdtemp"), 2;
  RUN(test_event_order);
  RUN(test_callback_order);
  RUN(test_cancel_batch);
  RUN(test_cancel_epoch);
  RUN(test_cancel_fit);
  RUN(test_error_unwinds);
  RUN(test_lower_cancel_is_error);
  RUN(test_single_batch_and_completion);
  RUN(test_steps_from_ops);
  RUN(test_momentum_learner);
  RUN(test_nan_cb);
  RUN(test_log_entry_str);
  RUN(test_metrics_cb_weighted);
  RUN(test_lr_find);
  RUN(test_lr_finder_hand);
  RUN(test_reproducible);
  RUN(test_arena_steady);
  RUN(test_jsonl_cb);
  RUN(test_csv_cb);
  RUN(test_jsonl_failed_fit);
  RUN(test_interrupt_cb);
  RUN(test_lr_steepest);
  rmdir(g_dir);
  return test_summary();
}
