/* Line charts to PNG through cairo: autoscaled axes (linear or log10), ticks, labels, legend.
 * The PNG is written to a temporary file beside the target and renamed into place. */
#include "fl/plot.h"

#ifdef FL_NO_CAIRO
int fl_plot_available(void) { return 0; }
fl_status fl_plot_png(const char *path, const fl_series *s, int n_series, const fl_plot_opts *o) {
  (void)s, (void)n_series, (void)o;
  return fl_error(FL_ERR_IO, "%s: this build has no PNG plots (built with CAIRO=0)", path);
}
#else
int fl_plot_available(void) { return 1; }
#include <cairo.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* matplotlib's tab10 colours. */
static const double k_colors[10][3] = {
    {0.122, 0.467, 0.706}, {1.000, 0.498, 0.055}, {0.173, 0.627, 0.173}, {0.839, 0.153, 0.157},
    {0.580, 0.404, 0.741}, {0.549, 0.337, 0.294}, {0.890, 0.467, 0.761}, {0.498, 0.498, 0.498},
    {0.737, 0.741, 0.133}, {0.090, 0.745, 0.812}};

/* One axis: data range in the axis' own space (log10 of the value when log), pixel range. */
typedef struct axis {
  int log;
  double lo, hi;   /* transformed data range, lo < hi */
  double p0, p1;   /* pixel positions of lo and hi */
} axis;

static double ax_pos(const axis *a, double v) {
  double t = a->log ? log10(v) : v;
  return a->p0 + (t - a->lo) / (a->hi - a->lo) * (a->p1 - a->p0);
}

static double pt_x(const fl_series *s, int i) { return s->x ? s->x[i] : (double)i; }

/* Transformed min/max of the finite values on one axis over all series; FL_ERR_ARG when a log
 * axis meets a value <= 0. Sets *any = 0 when there is no finite point. */
static fl_status data_range(const fl_series *s, int ns, int which_x, int log, double *lo,
                            double *hi, int *any, const char *path) {
  *lo = INFINITY, *hi = -INFINITY, *any = 0;
  for (int k = 0; k < ns; k++)
    for (int i = 0; i < s[k].n; i++) {
      double v = which_x ? pt_x(&s[k], i) : s[k].y[i];
      if (!isfinite(v)) continue;
      if (log && v <= 0)
        return fl_error(FL_ERR_ARG, "plot %s: log %s axis needs values > 0, series %d point %d is %g",
                        path, which_x ? "x" : "y", k, i, v);
      double t = log ? log10(v) : v;
      if (t < *lo) *lo = t;
      if (t > *hi) *hi = t;
      *any = 1;
    }
  return FL_OK;
}

/* Widens a degenerate range, then adds a 5% margin on each side. */
static void pad_range(axis *a, int any) {
  if (!any) a->lo = 0, a->hi = 1;
  if (a->hi - a->lo <= 1e-12 * fmax(1.0, fabs(a->lo))) {
    double d = a->log ? 0.5 : (a->lo != 0 ? fabs(a->lo) * 0.1 : 0.5);
    a->lo -= d, a->hi += d;
  }
  double m = 0.05 * (a->hi - a->lo);
  a->lo -= m, a->hi += m;
}

/* A "nice" tick step (1, 2 or 5 times a power of 10) for about `target` ticks over span. */
static double nice_step(double span, int target) {
  double raw = span / target, p = pow(10, floor(log10(raw))), f = raw / p;
  return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * p;
}

/* Tick label for a linear axis: as many decimals as the step needs. */
static void lin_label(char *buf, size_t cap, double v, double step) {
  if (fabs(v) < step * 1e-6) v = 0;
  double a = fmax(fabs(v), step);
  if (a >= 1e6 || a < 1e-4) snprintf(buf, cap, "%.2g", v);
  else {
    int dec = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
    snprintf(buf, cap, "%.*f", dec, v);
  }
}

static void text_at(cairo_t *cr, const char *s, double x, double y, double ax, double ay) {
  cairo_text_extents_t e;
  cairo_text_extents(cr, s, &e);
  cairo_move_to(cr, x - e.x_bearing - ax * e.width, y - e.y_bearing - ay * e.height);
  cairo_show_text(cr, s);
}

/* Where the ticks go: ax/ay geometry plus the pass (0: grid lines, 1: tick marks and labels). */
typedef struct tick_ctx {
  cairo_t *cr;
  const axis *a;
  int horiz, pass;
  double ox, oy, g0, g1;  /* axis origin (left, bottom) and grid extent across the plot */
} tick_ctx;

/* One tick at transformed position t; label NULL for an unlabelled (minor) tick. */
static void tick(const tick_ctx *c, double t, int grid, double len, const char *label) {
  cairo_t *cr = c->cr;
  double p = c->a->p0 + (t - c->a->lo) / (c->a->hi - c->a->lo) * (c->a->p1 - c->a->p0);
  if (c->pass == 0) {
    if (!grid) return;
    if (c->horiz) cairo_move_to(cr, p, c->g0), cairo_line_to(cr, p, c->g1);
    else cairo_move_to(cr, c->g0, p), cairo_line_to(cr, c->g1, p);
    return;
  }
  if (c->horiz) cairo_move_to(cr, p, c->oy), cairo_line_to(cr, p, c->oy + len);
  else cairo_move_to(cr, c->ox, p), cairo_line_to(cr, c->ox - len, p);
  cairo_stroke(cr);
  if (!label) return;
  if (c->horiz) text_at(cr, label, p, c->oy + 8, 0.5, 0);
  else text_at(cr, label, c->ox - 8, p, 1, 0.5);
}

/* Linear ticks at nice values; on a log axis (less than a decade shown) the values are placed
 * at their log10. */
static void lin_ticks(const tick_ctx *c, double lo, double hi) {
  char lab[32];
  double st = nice_step(hi - lo, c->horiz ? 7 : 6);
  for (double v = ceil(lo / st) * st; v <= hi + st * 1e-9; v += st) {
    if (c->a->log && v <= 0) continue;
    lin_label(lab, sizeof lab, v, st);
    tick(c, c->a->log ? log10(v) : v, 1, 5, lab);
  }
}

/* Log ticks: majors at 10^k (every `every` decades when there are many), minors at m * 10^k.
 * With less than two majors in view the minors are labelled too (all of them when there are
 * few, else 2 and 5), and with hardly any ticks in view nice linear values are used. Labels
 * are "1e-05" style, or "%g" when the whole axis lies within [1e-3, 1e4]. */
static void log_ticks(const tick_ctx *c) {
  const axis *a = c->a;
  char lab[32];
  int k0 = (int)floor(a->lo), k1 = (int)ceil(a->hi), majors = 0, minors = 0;
  for (int k = k0; k <= k1; k++)
    for (int m = 1; m <= 9; m++) {
      double t = k + log10((double)m);
      if (t >= a->lo && t <= a->hi) *(m == 1 ? &majors : &minors) += 1;
    }
  if (majors + minors < 3) {
    lin_ticks(c, pow(10, a->lo), pow(10, a->hi));
    return;
  }
  int every = (k1 - k0) > 10 ? (k1 - k0 + 9) / 10 : 1;
  int label_minor = majors < 2 ? (majors + minors <= 8 ? 2 : 1) : 0;  /* 2: all, 1: 2 and 5 */
  const char *fmt = a->lo >= -3 && a->hi <= 4 ? "%g" : "%.0e";
  for (int k = k0; k <= k1; k++)
    for (int m = 1; m <= 9; m++) {
      double t = k + log10((double)m);
      if (t < a->lo - 1e-9 || t > a->hi + 1e-9) continue;
      int major = m == 1 && k % every == 0;
      if (m == 1 && !major) continue;    /* a skipped decade */
      if (every > 1 && !major) continue; /* too dense for minors */
      int labelled = major || label_minor == 2 || (label_minor && (m == 2 || m == 5));
      if (labelled) snprintf(lab, sizeof lab, fmt, m * pow(10, k));
      tick(c, t, labelled, major ? 5 : 3, labelled ? lab : NULL);
    }
}

/* Grid lines, then tick marks and labels, along one axis. horiz: the x axis. */
static void draw_ticks(cairo_t *cr, const axis *a, int horiz, double ox, double oy, double g0,
                       double g1) {
  for (int pass = 0; pass < 2; pass++) {
    tick_ctx c = {cr, a, horiz, pass, ox, oy, g0, g1};
    if (a->log) log_ticks(&c);
    else lin_ticks(&c, a->lo, a->hi);
    if (pass == 0) {
      cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
      cairo_stroke(cr);
      cairo_set_source_rgb(cr, 0, 0, 0);
    }
  }
}

static void draw_series(cairo_t *cr, const fl_series *s, const axis *ax, const axis *ay) {
  int run = 0;  /* points in the current unbroken run */
  double px = 0, py = 0;
  for (int i = 0; i <= s->n; i++) {
    double x = i < s->n ? pt_x(s, i) : NAN, y = i < s->n ? s->y[i] : NAN;
    if (!isfinite(x) || !isfinite(y)) {
      if (run == 1) {  /* an isolated point: a dot, since a 0-length line shows nothing */
        cairo_new_sub_path(cr);
        cairo_arc(cr, px, py, 2.5, 0, 2 * M_PI);
        cairo_fill(cr);
      } else if (run > 1) cairo_stroke(cr);
      run = 0;
      continue;
    }
    px = ax_pos(ax, x), py = ax_pos(ay, y);
    if (run++ == 0) cairo_move_to(cr, px, py);
    else cairo_line_to(cr, px, py);
  }
}

static void render(cairo_t *cr, const fl_series *s, int ns, const fl_plot_opts *o, axis *ax,
                   axis *ay, int W, int H) {
  cairo_set_source_rgb(cr, 1, 1, 1);
  cairo_paint(cr);
  cairo_select_font_face(cr, "sans", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size(cr, 12);
  cairo_set_line_width(cr, 1);
  cairo_set_source_rgb(cr, 0, 0, 0);

  /* Plot area: room for the title, tick labels and axis labels. */
  double L = o->ylabel ? 88 : 70, R = W - 20, T = o->title ? 36 : 16, B = H - (o->xlabel ? 50 : 32);
  ax->p0 = L, ax->p1 = R, ay->p0 = B, ay->p1 = T;

  draw_ticks(cr, ax, 1, L, B, T, B);
  draw_ticks(cr, ay, 0, L, B, L, R);
  cairo_rectangle(cr, L + 0.5, T + 0.5, R - L, B - T);
  cairo_stroke(cr);

  if (o->title) {
    cairo_set_font_size(cr, 15);
    text_at(cr, o->title, (L + R) / 2, (T - 15) / 2, 0.5, 0.5);
    cairo_set_font_size(cr, 12);
  }
  if (o->xlabel) text_at(cr, o->xlabel, (L + R) / 2, H - 8, 0.5, 1);
  if (o->ylabel) {
    cairo_save(cr);
    cairo_translate(cr, 14, (T + B) / 2);
    cairo_rotate(cr, -M_PI / 2);
    text_at(cr, o->ylabel, 0, 0, 0.5, 0.5);
    cairo_restore(cr);
  }

  cairo_save(cr);
  cairo_rectangle(cr, L, T, R - L, B - T);
  cairo_clip(cr);
  cairo_set_line_width(cr, 1.6);
  cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
  for (int k = 0; k < ns; k++) {
    const double *c = k_colors[k % 10];
    cairo_set_source_rgb(cr, c[0], c[1], c[2]);
    draw_series(cr, &s[k], ax, ay);
  }
  cairo_restore(cr);

  if (ns > 1) {  /* legend, top right inside the plot area */
    double wmax = 0, lh = 18;
    cairo_text_extents_t e;
    for (int k = 0; k < ns; k++) {
      cairo_text_extents(cr, s[k].label ? s[k].label : "", &e);
      wmax = fmax(wmax, e.x_advance);
    }
    double bw = wmax + 44, bh = ns * lh + 8, bx = R - bw - 8, by = T + 8;
    cairo_rectangle(cr, bx, by, bw, bh);
    cairo_set_source_rgba(cr, 1, 1, 1, 0.85);
    cairo_fill_preserve(cr);
    cairo_set_source_rgb(cr, 0.7, 0.7, 0.7);
    cairo_stroke(cr);
    for (int k = 0; k < ns; k++) {
      const double *c = k_colors[k % 10];
      double y = by + 4 + lh * (k + 0.5);
      cairo_set_source_rgb(cr, c[0], c[1], c[2]);
      cairo_set_line_width(cr, 2);
      cairo_move_to(cr, bx + 8, y), cairo_line_to(cr, bx + 30, y);
      cairo_stroke(cr);
      cairo_set_source_rgb(cr, 0, 0, 0);
      text_at(cr, s[k].label ? s[k].label : "", bx + 36, y, 0, 0.5);
    }
  }
}

static cairo_status_t write_cb(void *closure, const unsigned char *data, unsigned int len) {
  return fwrite(data, 1, len, (FILE *)closure) == len ? CAIRO_STATUS_SUCCESS
                                                      : CAIRO_STATUS_WRITE_ERROR;
}

fl_status fl_plot_png(const char *path, const fl_series *s, int n_series, const fl_plot_opts *o) {
  FL_CHECK(path && (s || n_series == 0) && n_series >= 0, "fl_plot_png: bad arguments");
  for (int k = 0; k < n_series; k++)
    FL_CHECK(s[k].n >= 0 && (s[k].y || s[k].n == 0), "fl_plot_png: series %d has n=%d, y=%p", k,
             s[k].n, (const void *)s[k].y);
  static const fl_plot_opts defaults;
  if (!o) o = &defaults;
  int W = o->width ? o->width : 640, H = o->height ? o->height : 440;
  if (W < 160 || H < 120 || W > 16384 || H > 16384)
    return fl_error(FL_ERR_ARG, "plot %s: size %dx%d out of range (160x120 .. 16384x16384)", path,
                    W, H);

  axis ax = {.log = o->log_x}, ay = {.log = o->log_y};
  int anyx, anyy;
  fl_status st;
  if ((st = data_range(s, n_series, 1, ax.log, &ax.lo, &ax.hi, &anyx, path)) != FL_OK ||
      (st = data_range(s, n_series, 0, ay.log, &ay.lo, &ay.hi, &anyy, path)) != FL_OK)
    return st;
  pad_range(&ax, anyx && anyy);
  pad_range(&ay, anyx && anyy);

  cairo_surface_t *sf = cairo_image_surface_create(CAIRO_FORMAT_RGB24, W, H);
  cairo_t *cr = cairo_create(sf);
  render(cr, s, n_series, o, &ax, &ay, W, H);
  cairo_status_t cs = cairo_status(cr);
  cairo_destroy(cr);
  if (cs != CAIRO_STATUS_SUCCESS) {
    cairo_surface_destroy(sf);
    return fl_error(FL_ERR_IO, "plot %s: cairo: %s", path, cairo_status_to_string(cs));
  }

  /* Atomic write: temp file in the same directory, then rename. */
  size_t len = strlen(path);
  char *tmp = malloc(len + 16);
  if (!tmp) {
    cairo_surface_destroy(sf);
    return fl_error(FL_ERR_NOMEM, "plot %s: out of memory", path);
  }
  snprintf(tmp, len + 16, "%s.tmp-XXXXXX", path);
  int fd = mkstemp(tmp);
  FILE *f = fd >= 0 ? fdopen(fd, "wb") : NULL;
  if (!f) {
    int e = errno;
    if (fd >= 0) close(fd), unlink(tmp);
    free(tmp);
    cairo_surface_destroy(sf);
    return fl_error(FL_ERR_IO, "plot %s: cannot create: %s", path, strerror(e));
  }
  fchmod(fd, 0644);  /* mkstemp makes 0600; a plot is an ordinary file */
  cs = cairo_surface_write_to_png_stream(sf, write_cb, f);
  cairo_surface_destroy(sf);
  int werr = ferror(f) ? errno : 0;
  if (fclose(f) != 0 && !werr) werr = errno;
  if (cs == CAIRO_STATUS_SUCCESS && !werr && rename(tmp, path) == 0) {
    free(tmp);
    return FL_OK;
  }
  if (!werr) werr = errno;
  unlink(tmp);
  free(tmp);
  return fl_error(FL_ERR_IO, "plot %s: cannot write: %s", path,
                  cs != CAIRO_STATUS_SUCCESS ? cairo_status_to_string(cs) : strerror(werr));
}
#endif /* FL_NO_CAIRO */
