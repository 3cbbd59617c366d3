/* PNG line plots: file format and size, drawn pixels, log axes, atomic writes and errors. */
#ifndef FL_NO_CAIRO
#include <cairo.h>
#endif
#include <dirent.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fl/plot.h"
#include "test.h"
#ifndef FL_NO_CAIRO

static char g_dir[256];  /* scratch directory, removed at the end unless FL_TEST_PLOT_DIR is set */

static const char *path_in(char *buf, size_t cap, const char *name) {
  snprintf(buf, cap, "%s/%s", g_dir, name);
  return buf;
}

static int file_exists(const char *p) {
  struct stat st;
  return stat(p, &st) == 0;
}

/* Entries in a directory other than . and .. (only the names containing `sub` when not NULL). */
static int count_entries(const char *dir, const char *sub) {
  DIR *d = opendir(dir);
  if (!d) return -1;
  int n = 0;
  for (struct dirent *e; (e = readdir(d));)
    n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && (!sub || strstr(e->d_name, sub));
  closedir(d);
  return n;
}

/* Checks the PNG signature and IHDR size; returns 1 when they are as expected. */
static int png_header_ok(const char *path, int w, int h) {
  unsigned char b[24];
  FILE *f = fopen(path, "rb");
  if (!f) return 0;
  size_t n = fread(b, 1, sizeof b, f);
  fclose(f);
  static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (n != sizeof b || memcmp(b, sig, 8) || memcmp(b + 12, "IHDR", 4)) return 0;
  uint32_t pw = (uint32_t)b[16] << 24 | b[17] << 16 | b[18] << 8 | b[19];
  uint32_t ph = (uint32_t)b[20] << 24 | b[21] << 16 | b[22] << 8 | b[23];
  return (int)pw == w && (int)ph == h;
}

/* Pixels near colour (r, g, b) (0..255): within 24 per channel, or, for the two line colours
 * (antialiased lines blend them with white), of their hue: blue (b - r > 60) and orange
 * (r - b > 100). */
static int count_color(const char *path, int r, int g, int b) {
  cairo_surface_t *s = cairo_image_surface_create_from_png(path);
  if (cairo_surface_status(s) != CAIRO_STATUS_SUCCESS) {
    cairo_surface_destroy(s);
    return -1;
  }
  int w = cairo_image_surface_get_width(s), h = cairo_image_surface_get_height(s);
  int stride = cairo_image_surface_get_stride(s), n = 0;
  const unsigned char *d = cairo_image_surface_get_data(s);
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      uint32_t px;
      memcpy(&px, d + (size_t)y * stride + 4 * x, 4);
      int pr = px >> 16 & 255, pg = px >> 8 & 255, pb = px & 255;
      if (r == 31 && g == 119 && b == 180) n += pb - pr > 60;
      else if (r == 255 && g == 127 && b == 14) n += pr - pb > 100;
      else n += abs(pr - r) < 24 && abs(pg - g) < 24 && abs(pb - b) < 24;
    }
  cairo_surface_destroy(s);
  return n;
}

static void test_png_two_series(void) {
  enum { N = 200 };
  double y0[N], y1[N], x[N];
  for (int i = 0; i < N; i++) {
    x[i] = i * 4.7;
    y0[i] = 2.3 * exp(-i / 40.0) + 0.1 * sin(i * 0.7);
    y1[i] = 2.0 * exp(-i / 60.0) + 0.2;
  }
  y0[90] = NAN, y0[91] = INFINITY;  /* a break in the line */
  fl_series s[2] = {{"train", x, y0, N}, {"valid", x, y1, N}};
  fl_plot_opts o = {.title = "loss", .xlabel = "samples", .ylabel = "loss", .width = 500,
                    .height = 300};
  char p[512];
  path_in(p, sizeof p, "two.png");
  EXPECTF(fl_plot_png(p, s, 2, &o) == FL_OK, "%s", fl_last_error());
  EXPECT(png_header_ok(p, 500, 300));
  int blue = count_color(p, 31, 119, 180), orange = count_color(p, 255, 127, 14);
  EXPECTF(blue > 200, "blue pixels %d", blue);
  EXPECTF(orange > 200, "orange pixels %d", orange);
  EXPECT(count_color(p, 0, 0, 0) > 100);  /* axes, ticks, text */
  EXPECT(count_entries(g_dir, ".tmp-") == 0);  /* no temporary left */
}

static void test_png_log_x(void) {
  enum { N = 60 };
  double lr[N], loss[N];
  for (int i = 0; i < N; i++) {
    lr[i] = 1e-5 * pow(1.3, i);  /* 1e-5 .. ~5 */
    loss[i] = 2.3 - 0.3 * log10(lr[i] / 1e-5) + (i > 50 ? (i - 50) * 0.6 : 0);
  }
  fl_series s = {"loss", lr, loss, N};
  fl_plot_opts o = {.title = "LR finder", .xlabel = "learning rate", .ylabel = "loss",
                    .log_x = 1};
  char p[512];
  path_in(p, sizeof p, "lr_find.png");
  EXPECTF(fl_plot_png(p, &s, 1, &o) == FL_OK, "%s", fl_last_error());
  EXPECT(png_header_ok(p, 640, 440));
  EXPECT(count_color(p, 31, 119, 180) > 200);
  /* Less than a decade, and log y: still fine. */
  double x2[3] = {2e-3, 3e-3, 4e-3}, y2[3] = {1, 2, 4};
  fl_series s2 = {NULL, x2, y2, 3};
  fl_plot_opts o2 = {.log_x = 1, .log_y = 1};
  path_in(p, sizeof p, "narrow_log.png");
  EXPECTF(fl_plot_png(p, &s2, 1, &o2) == FL_OK, "%s", fl_last_error());
  EXPECT(count_color(p, 31, 119, 180) > 50);
}

static void test_png_degenerate(void) {
  char p[512];
  double one = 3.0, same[5] = {1, 1, 1, 1, 1}, nan[2] = {NAN, NAN};
  fl_series cases[4] = {{"empty", NULL, NULL, 0}, {"one", NULL, &one, 1},
                        {"flat", NULL, same, 5}, {"nan", NULL, nan, 2}};
  for (int k = 0; k < 4; k++) {
    char name[32];
    snprintf(name, sizeof name, "deg%d.png", k);
    path_in(p, sizeof p, name);
    EXPECTF(fl_plot_png(p, &cases[k], 1, NULL) == FL_OK, "case %d: %s", k, fl_last_error());
    EXPECT(png_header_ok(p, 640, 440));
  }
  EXPECT(count_color(p, 255, 255, 255) > 0);
  path_in(p, sizeof p, "deg1.png");
  EXPECT(count_color(p, 31, 119, 180) > 5);  /* a lone point is drawn as a dot */
  path_in(p, sizeof p, "deg2.png");
  EXPECT(count_color(p, 31, 119, 180) > 200);  /* a flat line in the middle */
  path_in(p, sizeof p, "none.png");
  EXPECTF(fl_plot_png(p, NULL, 0, NULL) == FL_OK, "%s", fl_last_error());
}

static void test_png_errors(void) {
  double x[3] = {0, 1, 2}, y[3] = {1, 2, 3};
  fl_series s = {"a", x, y, 3};
  char p[512];

  /* Missing directory: an I/O error naming the path, no file. */
  snprintf(p, sizeof p, "%s/no-such-dir/plot.png", g_dir);
  EXPECT(fl_plot_png(p, &s, 1, NULL) == FL_ERR_IO);
  EXPECTF(strstr(fl_last_error(), p) != NULL, "%s", fl_last_error());
  EXPECT(!file_exists(p));

  /* Log x with x <= 0: rejected before anything is written. */
  fl_plot_opts lo = {.log_x = 1};
  path_in(p, sizeof p, "logzero.png");
  EXPECT(fl_plot_png(p, &s, 1, &lo) == FL_ERR_ARG);
  EXPECTF(strstr(fl_last_error(), p) != NULL, "%s", fl_last_error());
  EXPECT(!file_exists(p));
  double neg[3] = {-1, 1, 2};
  fl_series sn = {"a", neg, y, 3};
  EXPECT(fl_plot_png(p, &sn, 1, &lo) == FL_ERR_ARG);

  /* Bad size. */
  fl_plot_opts tiny = {.width = 10, .height = 10};
  EXPECT(fl_plot_png(p, &s, 1, &tiny) == FL_ERR_ARG);

  /* The target is a directory: the temporary is written, the rename fails, and the
   * temporary is removed again. */
  char sub[512];
  path_in(sub, sizeof sub, "adir");
  EXPECT(mkdir(sub, 0755) == 0);
  EXPECT(fl_plot_png(sub, &s, 1, NULL) == FL_ERR_IO);
  EXPECTF(strstr(fl_last_error(), sub) != NULL, "%s", fl_last_error());
  EXPECT(count_entries(g_dir, ".tmp-") == 0);
  EXPECT(count_entries(g_dir, "logzero") == 0);
  EXPECT(count_entries(sub, NULL) == 0);
  rmdir(sub);
}

#endif /* FL_NO_CAIRO */

#ifdef FL_NO_CAIRO
static void test_no_cairo(void) { SKIP("built without cairo (CAIRO=0)"); }
int main(void) {
  RUN(test_no_cairo);
  return test_summary();
}
#else
int main(void) {
  const char *keep = getenv("FL_TEST_PLOT_DIR");
  if (keep) snprintf(g_dir, sizeof g_dir, "%s", keep), mkdir(g_dir, 0755);
  else {
    snprintf(g_dir, sizeof g_dir, "/tmp/fl_test_plot_XXXXXX");
    if (!mkdtemp(g_dir)) return perror("mkdtemp"), 1;
  }
  RUN(test_png_two_series);
  RUN(test_png_log_x);
  RUN(test_png_degenerate);
  RUN(test_png_errors);
  if (!keep) {
    DIR *d = opendir(g_dir);
    for (struct dirent *e; d && (e = readdir(d));) {
      char p[600];
      snprintf(p, sizeof p, "%s/%s", g_dir, e->d_name);
      if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) unlink(p);
    }
    if (d) closedir(d);
    rmdir(g_dir);
  }
  cairo_debug_reset_static_data();
  return test_summary();
}
#endif
