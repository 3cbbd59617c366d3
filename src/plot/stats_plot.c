/* ActivationStats' three plots (10_activations' color_dim, dead_chart and plot_stats) as PNGs
 * through cairo: a grid of panels, one per layer (color_dim, dead_chart), or two panels with one
 * line per layer (plot_stats). Each file is rendered to a temporary name beside it and renamed. */
#include <stdio.h>

#include "fl/hooks.h"

#ifdef FL_NO_CAIRO
fl_status fl_act_stats_png(const fl_callback *cb, const char *prefix) {
  (void)cb;
  return fl_error(FL_ERR_IO, "%s_color_dim.png: this build has no PNG plots (built with CAIRO=0)", prefix);
}
#else
#include <cairo.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const double k_colors[10][3] = {
    {0.122, 0.467, 0.706}, {1.000, 0.498, 0.055}, {0.173, 0.627, 0.173}, {0.839, 0.153, 0.157},
    {0.580, 0.404, 0.741}, {0.549, 0.337, 0.294}, {0.890, 0.467, 0.761}, {0.498, 0.498, 0.498},
    {0.737, 0.741, 0.133}, {0.090, 0.745, 0.812}};

/* viridis, by linear interpolation between 5 of its colours; t in [0, 1] */
static void viridis(double t, double rgb[3]) {
  static const double v[5][3] = {{0.267, 0.005, 0.329}, {0.231, 0.322, 0.545}, {0.129, 0.569, 0.549},
                                 {0.369, 0.788, 0.384}, {0.993, 0.906, 0.144}};
  t = t < 0 ? 0 : t > 1 ? 1 : t;
  double p = t * 4;
  int i = p >= 4 ? 3 : (int)p;
  double f = p - i;
  for (int k = 0; k < 3; k++) rgb[k] = v[i][k] + f * (v[i + 1][k] - v[i][k]);
}

static void text_at(cairo_t *cr, const char *s, double x, double y, double ax, double ay) {
  cairo_text_extents_t e;
  cairo_text_extents(cr, s, &e);
  cairo_move_to(cr, x - e.x_bearing - ax * e.width, y - e.y_bearing - ay * e.height);
  cairo_show_text(cr, s);
}

/* A panel: frame at (x, y, w, h), title above, y range labels at the left, x range below. */
typedef struct panel { double x, y, w, h, lo, hi; int64_t nx; } panel;

static void frame(cairo_t *cr, const panel *p, const char *title, int labels) {
  char b[32];
  cairo_set_source_rgb(cr, 0, 0, 0);
  cairo_set_line_width(cr, 1);
  cairo_rectangle(cr, p->x, p->y, p->w, p->h);
  cairo_stroke(cr);
  cairo_set_font_size(cr, 12);
  text_at(cr, title, p->x + p->w / 2, p->y - 6, 0.5, 1);
  cairo_set_font_size(cr, 10);
  if (labels) {
    snprintf(b, sizeof b, "%.3g", p->hi);
    text_at(cr, b, p->x - 4, p->y, 1, 0);
    snprintf(b, sizeof b, "%.3g", p->lo);
    text_at(cr, b, p->x - 4, p->y + p->h, 1, 1);
  }
  text_at(cr, "0", p->x, p->y + p->h + 4, 0, 0);
  snprintf(b, sizeof b, "%lld", (long long)(p->nx > 0 ? p->nx - 1 : 0));
  text_at(cr, b, p->x + p->w, p->y + p->h + 4, 1, 0);
}

/* y[0..n) as a line in the panel; non-finite points break it. */
static void line(cairo_t *cr, const panel *p, const double *y, int64_t n, int color) {
  cairo_set_source_rgb(cr, k_colors[color % 10][0], k_colors[color % 10][1], k_colors[color % 10][2]);
  cairo_set_line_width(cr, 1.5);
  int pen = 0;
  for (int64_t i = 0; i < n; i++) {
    if (!isfinite(y[i])) { pen = 0; continue; }
    double px = p->x + (n > 1 ? (double)i / (double)(n - 1) : 0.5) * p->w;
    double py = p->y + p->h - (y[i] - p->lo) / (p->hi - p->lo) * p->h;
    if (pen) cairo_line_to(cr, px, py);
    else cairo_move_to(cr, px, py), pen = 1;
  }
  if (n == 1 && pen) cairo_rel_line_to(cr, 0.5, 0);
  cairo_stroke(cr);
}

static void range(const double *y, int64_t n, double *lo, double *hi) {
  for (int64_t i = 0; i < n; i++)
    if (isfinite(y[i])) *lo = fmin(*lo, y[i]), *hi = fmax(*hi, y[i]);
}

static void fix_range(double *lo, double *hi) {
  if (!(*lo <= *hi)) *lo = 0, *hi = 1;
  if (*hi - *lo < 1e-12) *lo -= 0.5, *hi += 0.5;
  double m = 0.05 * (*hi - *lo);
  *lo -= m, *hi += m;
}

/* Renders to PREFIX_name.png through a temporary file. kind: 0 color_dim, 1 dead_chart, 2 plot_stats. */
static fl_status one_png(const fl_callback *cb, const char *prefix, const char *name, int kind) {
  int L = fl_act_stats_layers(cb);
  int64_t B = fl_act_stats_batches(cb);
  int cols = kind == 2 ? 2 : L < 2 ? 1 : 2, rows = kind == 2 ? 1 : (L + cols - 1) / cols;
  if (rows < 1) rows = 1;
  const double pw = 380, ph = 220, ml = 60, mt = 36, mb = 30, mr = 20;
  int W = (int)(cols * (ml + pw + mr)), H = (int)(rows * (mt + ph + mb));
  size_t n = strlen(prefix) + strlen(name) + 32;
  char *path = malloc(n), *tmp = malloc(n);
  if (!path || !tmp) return free(path), free(tmp), fl_error(FL_ERR_NOMEM, "%s_%s.png: out of memory", prefix, name);
  snprintf(path, n, "%s_%s.png", prefix, name);
  snprintf(tmp, n, "%s.tmp-%ld", path, (long)getpid());
  cairo_surface_t *sf = cairo_image_surface_create(CAIRO_FORMAT_RGB24, W, H);
  cairo_t *cr = cairo_create(sf);
  cairo_set_source_rgb(cr, 1, 1, 1);
  cairo_paint(cr);
  char title[96];
  if (kind == 2) {
    for (int which = 0; which < 2; which++) {
      panel p = {ml + which * (ml + pw + mr), mt, pw, ph, INFINITY, -INFINITY, B};
      for (int l = 0; l < L; l++)
        range(which ? fl_act_stats_stds(cb, l) : fl_act_stats_means(cb, l), B, &p.lo, &p.hi);
      fix_range(&p.lo, &p.hi);
      for (int l = 0; l < L; l++)
        line(cr, &p, which ? fl_act_stats_stds(cb, l) : fl_act_stats_means(cb, l), B, l);
      frame(cr, &p, which ? "stds (one line per layer)" : "means (one line per layer)", 1);
      for (int l = 0; l < L && l < 12; l++) {   /* legend, top right */
        char lab[24];
        snprintf(lab, sizeof lab, "layer %d", l);
        cairo_set_source_rgb(cr, k_colors[l % 10][0], k_colors[l % 10][1], k_colors[l % 10][2]);
        text_at(cr, lab, p.x + p.w - 6, p.y + 6 + 13 * l, 1, 0);
      }
    }
  } else {
    double *dead = kind == 1 ? malloc((size_t)(B ? B : 1) * sizeof *dead) : NULL;
    for (int l = 0; l < L && !(kind == 1 && !dead); l++) {
      panel p = {ml + (l % cols) * (ml + pw + mr), mt + (l / cols) * (mt + ph + mb), pw, ph, 0, 1, B};
      if (kind == 1) {
        for (int64_t b = 0; b < B; b++) dead[b] = fl_act_stats_dead(cb, l, b);
        line(cr, &p, dead, B, 0);
        snprintf(title, sizeof title, "layer %d: share of |act| < 0.25", l);
        frame(cr, &p, title, 1);
      } else {
        const int64_t *h = fl_act_stats_hist(cb, l);
        double mx = 0;
        for (int64_t i = 0; i < B * FL_ACT_BINS; i++) mx = fmax(mx, log1p((double)h[i]));
        for (int64_t b = 0; b < B; b++)
          for (int k = 0; k < FL_ACT_BINS; k++) {
            double rgb[3];
            viridis(mx > 0 ? log1p((double)h[b * FL_ACT_BINS + k]) / mx : 0, rgb);
            cairo_set_source_rgb(cr, rgb[0], rgb[1], rgb[2]);
            double x0 = p.x + p.w * (double)b / (double)B, x1 = p.x + p.w * (double)(b + 1) / (double)B;
            double y1 = p.y + p.h - p.h * k / FL_ACT_BINS, y0 = p.y + p.h - p.h * (k + 1) / FL_ACT_BINS;
            cairo_rectangle(cr, x0, y0, x1 - x0 + 0.5, y1 - y0 + 0.5);
            cairo_fill(cr);
          }
        p.lo = 0, p.hi = 10;
        snprintf(title, sizeof title, "layer %d: log(1+hist) of |act| (0..10)", l);
        frame(cr, &p, title, 1);
      }
    }
    if (kind == 1 && !dead) {
      cairo_destroy(cr), cairo_surface_destroy(sf), free(tmp);
      fl_status s = fl_error(FL_ERR_NOMEM, "%s: out of memory", path);
      free(path);
      return s;
    }
    free(dead);
  }
  cairo_destroy(cr);
  cairo_status_t cs = cairo_surface_write_to_png(sf, tmp);
  cairo_surface_destroy(sf);
  fl_status s = FL_OK;
  if (cs != CAIRO_STATUS_SUCCESS || rename(tmp, path) != 0) {
    unlink(tmp);
    s = fl_error(FL_ERR_IO, "%s: cannot write the PNG (%s)", path,
                 cs != CAIRO_STATUS_SUCCESS ? cairo_status_to_string(cs) : "rename failed");
  }
  free(path), free(tmp);
  return s;
}

fl_status fl_act_stats_png(const fl_callback *cb, const char *prefix) {
  static const char *const names[3] = {"color_dim", "dead_chart", "plot_stats"};
  for (int k = 0; k < 3; k++) {
    fl_status s = one_png(cb, prefix, names[k], k);
    if (s != FL_OK) return s;
  }
  return FL_OK;
}
#endif
