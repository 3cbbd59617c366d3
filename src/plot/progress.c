/* Terminal progress: master/child bars on one line, a metrics table above, a braille loss chart.
 *
 * On a terminal the screen ends with a "live region": the chart's lines (if any), then the bar
 * line (while a phase runs) with the cursor on it. `live_up` counts the lines of the region above
 * the cursor, so "\r\033[<live_up>A\033[J" erases the whole region; every redraw erases it and
 * writes it again in one fwrite (no flicker, no partial frames on an unbuffered stderr). */
#include "fl/progress.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

enum { MAX_COLS = 16, BAR_LINE = 512 };
static const double k_bar_interval = 0.1, k_chart_interval = 0.25;

struct fl_progress {
  FILE *out;
  int tty, cols;           /* terminal mode; terminal width in columns */
  int n_epochs, epoch;
  char phase[16], comment[64];
  int total, done, active; /* child bar; active between begin and end */
  double t_begin, t_draw, t_chart;
  int live_up;             /* lines of the live region above the cursor */
  /* table */
  char header[512];        /* column names of the last header, '\t'-joined */
  int ncols, width[MAX_COLS];
  /* chart */
  int chart_w, chart_h;
  char *chart;             /* rendered chart ("" when none); FL_TERM_CHART_CAP bytes */
  int chart_lines;
  char *frame;             /* one redraw: erase + chart + bar line */
  size_t frame_cap;
};

fl_progress *fl_progress_new(FILE *out, int tty) {
  FL_CHECK(out, "fl_progress_new: out is NULL");
  fl_progress *p = fl_xcalloc(1, sizeof *p);
  p->out = out;
  if (tty < 0) {
    const char *term = getenv("TERM");
    tty = isatty(fileno(out)) && !(term && strcmp(term, "dumb") == 0);
  }
  p->tty = tty != 0;
  p->cols = 80;
  struct winsize ws;
  if (p->tty && ioctl(fileno(out), TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 20) p->cols = ws.ws_col;
  p->t_chart = -INFINITY;
  int w = p->cols - 16;  /* room for the y labels */
  fl_progress_chart_size(p, w > 60 ? 60 : w < 8 ? 8 : w, 10);
  return p;
}

int fl_progress_is_tty(const fl_progress *p) { return p->tty; }

void fl_progress_chart_size(fl_progress *p, int w, int h) {
  FL_CHECK(w >= 8 && w <= 512 && h >= 2 && h <= 256, "fl_progress_chart_size: %dx%d", w, h);
  free(p->chart);
  free(p->frame);
  p->chart_w = w, p->chart_h = h;
  p->frame_cap = FL_TERM_CHART_CAP(w, h) + BAR_LINE + 32;
  p->chart = fl_xcalloc(1, FL_TERM_CHART_CAP(w, h));
  p->frame = fl_xmalloc(p->frame_cap);
  p->chart_lines = 0;  /* the old chart stays on screen until the next redraw erases it */
}

/* "\r" plus the cursor move to the top of the live region and an erase to the end of screen. */
static size_t erase_seq(fl_progress *p, char *buf, size_t cap) {
  size_t n = p->live_up ? (size_t)snprintf(buf, cap, "\r\033[%dA\033[J", p->live_up)
                        : (size_t)snprintf(buf, cap, "\r\033[J");
  p->live_up = 0;
  return n;
}

static void fmt_time(char *buf, size_t cap, double s) {
  if (!(s >= 0 && s < 3.6e6)) { snprintf(buf, cap, "--:--"); return; }  /* NaN, < 0, 1000 h */
  int t = (int)lround(s);
  if (t >= 3600) snprintf(buf, cap, "%d:%02d:%02d", t / 3600, t / 60 % 60, t % 60);
  else snprintf(buf, cap, "%02d:%02d", t / 60, t % 60);
}

/* The bar line, at most cols-1 columns so it never wraps (a wrapped line breaks \r). */
static int bar_line(fl_progress *p, char *buf, size_t cap, double now) {
  char head[64] = "", tail[192], el[32], eta[32];
  if (p->n_epochs > 0) snprintf(head, sizeof head, "epoch %d/%d ", p->epoch + 1, p->n_epochs);
  double dt = now - p->t_begin;
  fmt_time(el, sizeof el, dt);
  fmt_time(eta, sizeof eta, p->done > 0 ? dt / p->done * (p->total - p->done) : NAN);
  snprintf(tail, sizeof tail, "] %d/%d %s<%s%s%s", p->done, p->total, el, eta,
           p->comment[0] ? " " : "", p->comment);
  int fixed = (int)(strlen(head) + strlen(p->phase) + 2 + strlen(tail));
  int bw = p->cols - 1 - fixed;
  bw = bw > 30 ? 30 : bw < 10 ? 10 : bw;
  int fill = p->total > 0 ? (int)((long long)bw * p->done / p->total) : 0;
  fill = fill < 0 ? 0 : fill > bw ? bw : fill;
  char bar[32];
  for (int i = 0; i < bw; i++) bar[i] = i < fill ? '#' : '.';
  bar[bw] = 0;
  int n = snprintf(buf, cap, "%s%s [%s%s", head, p->phase, bar, tail);
  int maxw = p->cols - 1;
  if (n >= (int)cap) n = (int)cap - 1;
  if (n > maxw) n = maxw, buf[n] = 0;
  return n;
}

/* Erases the live region and draws it again: the chart, then the bar while a phase runs. */
static void redraw(fl_progress *p, double now) {
  size_t n = erase_seq(p, p->frame, p->frame_cap);
  size_t cl = strlen(p->chart);
  memcpy(p->frame + n, p->chart, cl);
  n += cl;
  p->live_up = p->chart_lines;
  if (p->active) n += (size_t)bar_line(p, p->frame + n, p->frame_cap - n, now);
  fwrite(p->frame, 1, n, p->out);
  fflush(p->out);
  p->t_draw = now;
}

void fl_progress_free(fl_progress *p) {
  if (!p) return;
  if (p->tty && p->active) {
    p->active = 0;
    redraw(p, fl_now());
  }
  free(p->chart);
  free(p->frame);
  free(p);
}

void fl_progress_master(fl_progress *p, int n_epochs) {
  p->n_epochs = n_epochs > 0 ? n_epochs : 0;
  p->epoch = 0;
}

void fl_progress_epoch(fl_progress *p, int epoch) { p->epoch = epoch; }

void fl_progress_begin(fl_progress *p, const char *phase, int total) {
  snprintf(p->phase, sizeof p->phase, "%s", phase ? phase : "");
  p->total = total, p->done = 0, p->active = 1, p->comment[0] = 0;
  p->t_begin = fl_now();
  if (p->tty) redraw(p, p->t_begin);
}

void fl_progress_update(fl_progress *p, int done, const char *comment) {
  p->done = done;
  if (!p->tty || !p->active) return;
  double now = fl_now();
  int last = p->total > 0 && done >= p->total;
  if (!last && now - p->t_draw < k_bar_interval) return;
  snprintf(p->comment, sizeof p->comment, "%s", comment ? comment : "");
  redraw(p, now);
}

void fl_progress_end(fl_progress *p) {
  if (!p->active) return;
  p->active = 0;
  if (p->tty) redraw(p, fl_now());
}

/* Prints text (plus a '\n' when nl) above the live region, which is then redrawn. */
static void print_above(fl_progress *p, const char *text, int nl) {
  if (p->tty) {
    char e[32];
    fwrite(e, 1, erase_seq(p, e, sizeof e), p->out);
  }
  fputs(text, p->out);
  if (nl) fputc('\n', p->out);
  if (p->tty && (p->active || p->chart_lines)) redraw(p, fl_now());
  fflush(p->out);
}

void fl_progress_write(fl_progress *p, const char *line) { print_above(p, line, 1); }

/* snprintf that appends at *len and stops (keeping *len < cap) when full. */
static void append(char *buf, size_t cap, size_t *len, const char *fmt, int w, const char *s) {
  int k = snprintf(buf + *len, cap - *len, fmt, w, s);
  *len = k < 0 || (size_t)k >= cap - *len ? cap - 1 : *len + (size_t)k;
}

void fl_progress_row(fl_progress *p, const char *const *cols, const char *const *vals, int n) {
  FL_CHECK(n >= 1 && n <= MAX_COLS && cols && vals, "fl_progress_row: n=%d (1..%d)", n, MAX_COLS);
  char hdr[sizeof p->header] = "", line[1024] = "";
  size_t hl = 0, len = 0;
  for (int i = 0; i < n; i++) append(hdr, sizeof hdr, &hl, i ? "\t%.*s" : "%.*s", 256, cols[i]);
  if (p->ncols != n || strcmp(hdr, p->header) != 0) {  /* new columns: widths, then header */
    memcpy(p->header, hdr, sizeof hdr);
    p->ncols = n;
    for (int i = 0; i < n; i++) {
      int a = (int)strlen(cols[i]), b = (int)strlen(vals[i]);
      p->width[i] = a > b ? a : b;
    }
    for (int i = 0; i < n; i++)
      append(line, sizeof line, &len, i < n - 1 ? "%-*s  " : "%-*s\n", i < n - 1 ? p->width[i] : 0,
             cols[i]);
  }
  for (int i = 0; i < n; i++)
    append(line, sizeof line, &len, i < n - 1 ? "%-*s  " : "%-*s\n", i < n - 1 ? p->width[i] : 0,
           vals[i]);
  if (line[len - 1] != '\n') line[len - 1] = '\n';  /* cut: still one line per row */
  print_above(p, line, 0);
}

void fl_progress_chart(fl_progress *p, const fl_series *s, int n_series, int force) {
  if (!p->tty) return;
  double now = fl_now();
  if (!force && now - p->t_chart < k_chart_interval) return;
  p->t_chart = now;
  size_t cap = FL_TERM_CHART_CAP(p->chart_w, p->chart_h);
  fl_term_chart(p->chart, cap, s, n_series, p->chart_w, p->chart_h, FL_CHART_COLOR);
  int lines = 0;
  for (const char *c = p->chart; *c; c++) lines += *c == '\n';
  p->chart_lines = lines;
  redraw(p, now);
}
