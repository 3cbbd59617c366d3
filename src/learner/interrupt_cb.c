/* InterruptCB: Ctrl-C (SIGINT) stops the fit after the current batch, the way a user expects
 * of a training run: the batch finishes, every cleanup handler runs (logs closed, plots and,
 * later, checkpoints written), and the caller sees fl_interrupted() == 1 (the CLI exits 130).
 *
 * The handler only sets a flag (async-signal-safe); the callback reads it at the next
 * before_batch or before_epoch and cancels the fit there, so the batch in flight completes
 * wholly (its step, after_batch, n_iter) and so does the epoch it ended. A second Ctrl-C
 * while the first is being honoured kills the process the default way, for a stuck cleanup.
 * The previous SIGINT disposition is put back when the fit ends. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "fl/learner.h"

static volatile sig_atomic_t g_pending;    /* set by the handler, read by the callback */
static volatile sig_atomic_t g_stopped;    /* the last fit was stopped by SIGINT */

static void on_sigint(int sig) {
  if (g_pending) {                         /* the second Ctrl-C: die as an unhandled SIGINT */
    signal(sig, SIG_DFL);
    raise(sig);
    return;
  }
  g_pending = 1;
}

typedef struct { fl_callback cb; struct sigaction old; int installed; } interrupt_cb;

static fl_status icb_before_fit(fl_callback *cb, fl_learner *l) {
  (void)l;
  interrupt_cb *ic = (interrupt_cb *)cb;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_sigint;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;                /* reads and writes in flight just carry on */
  g_pending = 0;
  g_stopped = 0;
  ic->installed = sigaction(SIGINT, &sa, &ic->old) == 0;
  return FL_OK;
}

static fl_status icb_check(fl_callback *cb, fl_learner *l) {
  (void)cb, (void)l;
  if (!g_pending) return FL_OK;
  g_stopped = 1;
  return FL_CANCEL_FIT;
}

static fl_status icb_cleanup_fit(fl_callback *cb, fl_learner *l) {
  (void)l;
  interrupt_cb *ic = (interrupt_cb *)cb;
  if (ic->installed) sigaction(SIGINT, &ic->old, NULL);
  ic->installed = 0;
  g_pending = 0;
  return FL_OK;
}

static void icb_free(fl_callback *cb) {
  interrupt_cb *ic = (interrupt_cb *)cb;
  if (ic->installed) sigaction(SIGINT, &ic->old, NULL);
  free(ic);
}

fl_callback *fl_interrupt_cb_new(void) {
  interrupt_cb *ic = fl_xcalloc(1, sizeof *ic);
  ic->cb.name = "InterruptCB";
  ic->cb.order = -1000; /* first: no other callback starts work on a batch that won't run */
  ic->cb.free = icb_free;
  ic->cb.on[FL_BEFORE_FIT] = icb_before_fit;
  ic->cb.on[FL_BEFORE_EPOCH] = icb_check;
  ic->cb.on[FL_BEFORE_BATCH] = icb_check;
  ic->cb.on[FL_CLEANUP_FIT] = icb_cleanup_fit;
  return &ic->cb;
}

int fl_interrupted(void) { return g_stopped; }
