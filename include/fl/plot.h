/* flexlearn plots: line charts written as PNG through cairo (what matplotlib does in the
 * lesson: the loss curve of ProgressCB(plot=True), LRFinderCB's loss vs learning rate).
 *
 *   double lrs[N], losses[N];            ... filled by the LR finder
 *   fl_series s = {"loss", lrs, losses, N};
 *   fl_plot_opts o = {.title = "LR finder", .xlabel = "learning rate", .ylabel = "loss",
 *                     .log_x = 1};
 *   if (fl_plot_png("lr_find.png", &s, 1, &o) != FL_OK) puts(fl_last_error());
 */
#ifndef FL_PLOT_H
#define FL_PLOT_H

#include "fl/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One line: n points (x[i], y[i]). x == NULL means x[i] = i. Non-finite points (NaN, inf) are
 * skipped and break the line. The arrays are only read, never kept. */
typedef struct fl_series {
  const char *label;  /* legend text (shown when there is more than one series); may be NULL */
  const double *x;    /* (n) or NULL */
  const double *y;    /* (n) */
  int n;
} fl_series;

/* Options; zero-initialise and set what you need. NULL opts = all defaults. */
typedef struct fl_plot_opts {
  const char *title, *xlabel, *ylabel; /* may be NULL */
  int log_x, log_y;   /* log10 axis: ticks at powers of 10 ("1e-05") plus minor ticks; every
                         finite value on that axis must be > 0 (else FL_ERR_ARG) */
  int width, height;  /* pixels; 0 = 640 x 440 */
} fl_plot_opts;

/* Draws the series (each in its own colour, with axes, ticks, labels, title and a legend when
 * n_series > 1; ranges autoscaled with a small margin) and writes a PNG to `path`, atomically:
 * it renders to "path.tmp-XXXXXX" beside it and rename()s, so `path` is never half-written.
 * Returns FL_OK, FL_ERR_IO (cannot create/write the file, cairo failure) or FL_ERR_ARG (log axis
 * with a value <= 0, size out of range); fl_last_error() then names the path.
 * Misuse (path or s NULL, n_series < 0, a series with n < 0 or y NULL) aborts. */
fl_status fl_plot_png(const char *path, const fl_series *s, int n_series, const fl_plot_opts *o);
/* 0 in builds without cairo (make CAIRO=0), where fl_plot_png always fails. */
int fl_plot_available(void);

/* ---- Terminal charts (Unicode braille: 2 x 4 dots per character cell). */

enum { FL_CHART_COLOR = 1 };  /* flags: colour each series with ANSI codes (+ legend line) */

/* Bytes that fl_term_chart may need for a w x h chart (an upper bound, including the NUL). */
#define FL_TERM_CHART_CAP(w, h) ((size_t)((h) + 4) * (size_t)(64 + 16 * (size_t)(w)))

/* Renders the series into a chart of h rows by w character cells of plot area, as UTF-8 text,
 * every line ending in '\n':
 *   h rows:     "<label> ┤" or "<blank> │" then w braille cells; the first row is labelled with
 *               the y maximum, the last row with the y minimum (printf "%.4g");
 *   1 line:     "<blank> └" then w "─";
 *   1 line:     x minimum under the axis start and x maximum right-aligned at its end;
 *   1 line:     legend ("━ label" for the first 6 series, labels cut at 20 bytes), only with
 *               FL_CHART_COLOR and n_series > 1.
 * Every line is the same width in columns (label width + 2 + w) except the legend. Lines between
 * consecutive finite points are drawn, non-finite points skipped. Needs w >= 8, h >= 2.
 * Writes into buf (NUL-terminated) when it fits in cap and returns the length; returns the
 * length it needs (>= cap) and writes "" (when cap > 0) otherwise, like snprintf.
 * Allocates nothing. */
size_t fl_term_chart(char *buf, size_t cap, const fl_series *s, int n_series, int w, int h,
                     int flags);

#ifdef __cplusplus
}
#endif
#endif
