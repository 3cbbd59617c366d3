/* flexlearn terminal progress, after fastprogress (what ProgressCB shows in the lesson):
 * a master bar over epochs and a child bar over the batches of the current phase, drawn on one
 * line; a table of metrics printed above it (mbar.write); a live loss chart (update_graph)
 * drawn in braille characters above the bar.
 *
 *   fl_progress *p = fl_progress_new(stderr, -1);
 *   fl_progress_master(p, n_epochs);
 *   for each epoch e: fl_progress_epoch(p, e);
 *     for each phase: fl_progress_begin(p, "train", n_batches);
 *       for each batch i: fl_progress_update(p, i + 1, "loss 0.812");   (cheap: call every batch)
 *                         fl_progress_chart(p, &losses, 1, 0);           (optional)
 *       fl_progress_end(p);
 *       fl_progress_row(p, names, values, n);
 *   fl_progress_free(p);
 *
 * On a terminal the live part (chart, then bar) is redrawn in place with \r and ANSI cursor
 * moves, at most every 0.1 s for the bar and 0.25 s for the chart (and always when a phase
 * completes). Elsewhere (a file, a pipe, tty = 0, TERM=dumb) bars and charts print nothing and
 * only the table rows and fl_progress_write lines appear, with no \r and no escape codes.
 * Nothing is allocated after fl_progress_new (and fl_progress_chart_size).
 */
#ifndef FL_PROGRESS_H
#define FL_PROGRESS_H

#include <stdio.h>

#include "fl/plot.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct fl_progress fl_progress;

/* Progress display writing to `out` (not owned; must outlive it). tty: 1 = terminal mode,
 * 0 = plain mode, -1 = terminal mode when isatty(fileno(out)) and TERM is not "dumb".
 * Free with fl_progress_free. */
fl_progress *fl_progress_new(FILE *out, int tty);
/* Clears a bar still shown (the chart stays on screen) and frees p. Accepts NULL. */
void fl_progress_free(fl_progress *p);
/* 1 when p draws bars and charts (terminal mode). */
int fl_progress_is_tty(const fl_progress *p);

/* Master bar: the fit has n_epochs epochs (0 = no master bar); fl_progress_epoch sets the
 * current one (0-based, shown as "epoch e+1/n"). */
void fl_progress_master(fl_progress *p, int n_epochs);
void fl_progress_epoch(fl_progress *p, int epoch);

/* Child bar: starts a phase ("train", "valid"; copied, up to 15 characters) of `total` steps. */
void fl_progress_begin(fl_progress *p, const char *phase, int total);
/* `done` of total steps finished; comment (e.g. "loss 0.812", may be NULL; copied when drawn) is
 * shown after the times: "epoch 1/3 train [#####.....] 34/59 00:01<00:02 loss 0.812".
 * Redraws at most every 0.1 s, and when done == total. */
void fl_progress_update(fl_progress *p, int done, const char *comment);
/* Ends the phase: the child bar disappears (fastprogress' leave=False). */
void fl_progress_end(fl_progress *p);

/* One table row (n columns, at most 16; strings are only read). The header line of column
 * names is printed before the first row and again whenever the names change; columns are
 * left-aligned, each as wide as the longer of its name and its first value, two spaces apart:
 *   accuracy  loss   epoch  train  time
 *   0.607     1.182  0      train  00:03
 * On a terminal the row goes above the chart and the bar, which are redrawn below it. */
void fl_progress_row(fl_progress *p, const char *const *cols, const char *const *vals, int n);
/* A plain line of text above the bar (a '\n' is added). */
void fl_progress_write(fl_progress *p, const char *line);

/* Live chart of the series (e.g. train losses, x NULL = batch index) above the bar, in
 * braille (fl_term_chart), coloured per series. Terminal mode only. Renders at most every
 * 0.25 s unless force (use force after the last point, so the final chart is complete). */
void fl_progress_chart(fl_progress *p, const fl_series *s, int n_series, int force);
/* Chart plot area in cells (default: 60 x 10, narrowed to fit the terminal). Reallocates. */
void fl_progress_chart_size(fl_progress *p, int w, int h);

#ifdef __cplusplus
}
#endif
#endif
