/* Line charts as text: Unicode braille cells (2 x 4 dots each), y labels at the max and min
 * rows, an x axis with its range. Rendered one cell row at a time, so no allocation. */
#include "fl/plot.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

enum { MAX_W = 512, MAX_H = 256 };

/* Bounded writer: counts everything, stores what fits. */
typedef struct sbuf {
  char *buf;
  size_t cap, len;
} sbuf;

static void put(sbuf *b, const char *s, size_t n) {
  if (b->len + n < b->cap) memcpy(b->buf + b->len, s, n);
  b->len += n;
}
static void puts_(sbuf *b, const char *s) { put(b, s, strlen(s)); }
static void spaces(sbuf *b, int n) {
  for (int i = 0; i < n; i++) put(b, " ", 1);
}

static const char *k_ansi[6] = {"\033[34m", "\033[33m", "\033[32m", "\033[31m", "\033[35m",
                                "\033[36m"};
/* Braille dot bit for dot (column dx in 0..1, row dy in 0..3) of a cell. */
static const uint8_t k_dot[4][2] = {{0x01, 0x08}, {0x02, 0x10}, {0x04, 0x20}, {0x40, 0x80}};

static double sx(const fl_series *s, int i) { return s->x ? s->x[i] : (double)i; }

/* Sets the dots of the segment (x0,y0)-(x1,y1) (dot coordinates, y down) that fall in dot rows
 * [r0, r0+4) into bits[]/own[]. */
static void segment(uint8_t *bits, uint8_t *own, int k, int r0, int dw, double x0, double y0,
                    double x1, double y1) {
  if ((y0 < r0 - 0.5 && y1 < r0 - 0.5) || (y0 > r0 + 3.5 && y1 > r0 + 3.5)) return;
  int steps = (int)ceil(fmax(fabs(x1 - x0), fabs(y1 - y0)));
  for (int i = 0; i <= steps; i++) {
    double t = steps ? (double)i / steps : 0;
    int x = (int)lround(x0 + t * (x1 - x0)), y = (int)lround(y0 + t * (y1 - y0)) - r0;
    if (y < 0 || y > 3 || x < 0 || x >= dw) continue;
    bits[x / 2] |= k_dot[y][x % 2];
    own[x / 2] = (uint8_t)k;
  }
}

size_t fl_term_chart(char *buf, size_t cap, const fl_series *s, int n_series, int w, int h,
                     int flags) {
  FL_CHECK((buf || cap == 0) && (s || n_series == 0) && n_series >= 0,
           "fl_term_chart: bad arguments");
  FL_CHECK(w >= 8 && w <= MAX_W && h >= 2 && h <= MAX_H,
           "fl_term_chart: size %dx%d out of range (8x2 .. %dx%d)", w, h, MAX_W, MAX_H);
  int color = flags & FL_CHART_COLOR;

  /* Data range over the finite points. */
  double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
  for (int k = 0; k < n_series; k++)
    for (int i = 0; i < s[k].n; i++) {
      double x = sx(&s[k], i), y = s[k].y[i];
      if (!isfinite(x) || !isfinite(y)) continue;
      xlo = fmin(xlo, x), xhi = fmax(xhi, x), ylo = fmin(ylo, y), yhi = fmax(yhi, y);
    }
  if (xlo > xhi) xlo = 0, xhi = 1, ylo = 0, yhi = 1;  /* nothing to draw */
  int dw = 2 * w, dh = 4 * h;
  /* Data -> dot coordinates (y down); a degenerate range maps to the middle. */
  double xs = xhi > xlo ? (dw - 1) / (xhi - xlo) : 0, ys = yhi > ylo ? (dh - 1) / (yhi - ylo) : 0;
  double xm = xhi > xlo ? 0 : (dw - 1) / 2.0, ym = yhi > ylo ? 0 : (dh - 1) / 2.0;

  char top[32], bot[32], xl[32], xr[32];
  snprintf(top, sizeof top, "%.4g", yhi);
  snprintf(bot, sizeof bot, "%.4g", ylo);
  snprintf(xl, sizeof xl, "%.4g", xlo);
  snprintf(xr, sizeof xr, "%.4g", xhi);
  int L = (int)fmax(strlen(top), strlen(bot));

  sbuf b = {buf, cap, 0};
  uint8_t bits[MAX_W], own[MAX_W];
  for (int r = 0; r < h; r++) {
    memset(bits, 0, (size_t)w), memset(own, 0, (size_t)w);
    for (int k = 0; k < n_series; k++) {
      int have = 0;
      double px = 0, py = 0;
      for (int i = 0; i < s[k].n; i++) {
        double x = sx(&s[k], i), y = s[k].y[i];
        if (!isfinite(x) || !isfinite(y)) { have = 0; continue; }
        double cx = xm + (x - xlo) * xs, cy = ym + (yhi - y) * ys;
        segment(bits, own, k, 4 * r, dw, have ? px : cx, have ? py : cy, cx, cy);
        px = cx, py = cy, have = 1;
      }
    }
    const char *lab = r == 0 ? top : r == h - 1 ? bot : "";
    spaces(&b, L - (int)strlen(lab));
    puts_(&b, lab);
    puts_(&b, *lab ? " \u2524" : " \u2502");
    int cur = -1;  /* colour in effect */
    for (int c = 0; c < w; c++) {
      if (!bits[c]) { put(&b, " ", 1); continue; }
      if (color && own[c] != cur) cur = own[c], puts_(&b, k_ansi[cur % 6]);
      unsigned cp = 0x2800u + bits[c];  /* U+2800..U+28FF: 3 bytes of UTF-8 */
      char u[3] = {(char)(0xE0 | (cp >> 12)), (char)(0x80 | ((cp >> 6) & 0x3F)),
                   (char)(0x80 | (cp & 0x3F))};
      put(&b, u, 3);
    }
    if (cur >= 0) puts_(&b, "\033[0m");
    put(&b, "\n", 1);
  }
  spaces(&b, L);
  puts_(&b, " \u2514");
  for (int c = 0; c < w; c++) puts_(&b, "\u2500");
  put(&b, "\n", 1);
  spaces(&b, L + 2);
  int nl = (int)strlen(xl), nr = (int)strlen(xr);
  if (nl + 1 + nr <= w) {
    puts_(&b, xl), spaces(&b, w - nl - nr), puts_(&b, xr);
  } else {
    puts_(&b, nl <= w ? xl : ""), spaces(&b, nl <= w ? w - nl : w);
  }
  put(&b, "\n", 1);
  if (color && n_series > 1) {
    spaces(&b, L + 2);
    for (int k = 0; k < n_series && k < 6; k++) {  /* bounded, so FL_TERM_CHART_CAP holds */
      const char *l = s[k].label ? s[k].label : "";
      puts_(&b, k_ansi[k]);
      puts_(&b, "\u2501\033[0m ");
      put(&b, l, strnlen(l, 20));
      puts_(&b, "  ");
    }
    put(&b, "\n", 1);
  }
  if (b.len < cap) buf[b.len] = 0;
  else if (cap) buf[0] = 0;
  return b.len;
}
