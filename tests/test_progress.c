/* Terminal progress: plain mode prints only rows, terminal mode draws rate-limited bars, the
 * braille chart renderer's layout. Output goes to an open_memstream FILE*. */
#include <time.h>

#include "fl/progress.h"
#include "test.h"

typedef struct mem {
  char *buf;
  size_t len;
  FILE *f;
} mem;

static void mem_open(mem *m) { m->buf = NULL, m->len = 0, m->f = open_memstream(&m->buf, &m->len); }
static void mem_close(mem *m) { fclose(m->f); }

static int count_char(const char *s, char c) {
  int n = 0;
  for (; *s; s++) n += *s == c;
  return n;
}

static void sleep_s(double s) {
  struct timespec ts = {(time_t)s, (long)((s - (time_t)s) * 1e9)};
  nanosleep(&ts, NULL);
}

/* Display width of a line of UTF-8: one column per code point, ANSI "ESC [ ... letter"
 * sequences skipped. */
static int columns(const char *s, size_t n) {
  int c = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] == '\033') {
      while (i < n && !(s[i] >= 'A' && s[i] <= 'z' && s[i] != '[')) i++;
      continue;
    }
    c += ((unsigned char)s[i] & 0xC0) != 0x80;
  }
  return c;
}

/* One fit as ProgressCB drives it: bars, chart, rows. */
static void fake_fit(fl_progress *p, int epochs, int batches) {
  static const char *cols[5] = {"accuracy", "loss", "epoch", "train", "time"};
  double losses[64];
  fl_series s = {"train", NULL, losses, 0};
  fl_progress_master(p, epochs);
  for (int e = 0; e < epochs; e++) {
    fl_progress_epoch(p, e);
    for (int train = 1; train >= 0; train--) {
      fl_progress_begin(p, train ? "train" : "valid", batches);
      for (int i = 0; i < batches; i++) {
        if (train && s.n < 64) losses[s.n] = 2.0 / (2 + s.n), s.n++;
        fl_progress_update(p, i + 1, "loss 0.812");
        fl_progress_chart(p, &s, 1, 0);
      }
      fl_progress_end(p);
      char ep[16];
      snprintf(ep, sizeof ep, "%d", e);
      const char *vals[5] = {train ? "0.607" : "0.695", train ? "1.182" : "0.823", ep,
                             train ? "train" : "eval", "00:03"};
      fl_progress_row(p, cols, vals, 5);
    }
  }
}

static void test_plain_rows_only(void) {
  mem m;
  mem_open(&m);
  fl_progress *p = fl_progress_new(m.f, 0);
  EXPECT(!fl_progress_is_tty(p));
  fake_fit(p, 2, 20);
  fl_progress_write(p, "done");
  fl_progress_free(p);
  mem_close(&m);
  const char *want =
      "accuracy  loss   epoch  train  time\n"
      "0.607     1.182  0      train  00:03\n"
      "0.695     0.823  0      eval   00:03\n"
      "0.607     1.182  1      train  00:03\n"
      "0.695     0.823  1      eval   00:03\n"
      "done\n";
  EXPECTF(strcmp(m.buf, want) == 0, "got:\n%s", m.buf);
  EXPECT(!strchr(m.buf, '\r') && !strchr(m.buf, '\033'));
  free(m.buf);

  /* The header is printed again when the columns change. */
  mem_open(&m);
  p = fl_progress_new(m.f, 0);
  const char *c1[2] = {"a", "b"}, *v1[2] = {"1", "2"}, *c2[1] = {"lr"}, *v2[1] = {"0.001"};
  fl_progress_row(p, c1, v1, 2);
  fl_progress_row(p, c1, v1, 2);
  fl_progress_row(p, c2, v2, 1);
  fl_progress_free(p);
  mem_close(&m);
  EXPECTF(strcmp(m.buf, "a  b\n1  2\n1  2\nlr\n0.001\n") == 0, "got:\n%s", m.buf);
  free(m.buf);
}

static void test_tty_bar(void) {
  mem m;
  mem_open(&m);
  fl_progress *p = fl_progress_new(m.f, 1);
  EXPECT(fl_progress_is_tty(p));
  fl_progress_master(p, 3);
  fl_progress_begin(p, "train", 59);
  sleep_s(0.12);  /* past the rate limit, so this update draws */
  fl_progress_update(p, 34, "loss 0.812");
  fflush(m.f);
  /* 80 columns: 30-wide bar, 34/59 of it filled. */
  EXPECTF(strstr(m.buf, "\r\033[Jepoch 1/3 train [#################.............] 34/59 00:00<00:00 "
                        "loss 0.812"), "got: %s", m.buf);
  fl_progress_update(p, 59, "loss 0.700");  /* the last step always draws */
  fflush(m.f);
  EXPECTF(strstr(m.buf, "[##############################] 59/59"), "got: %s", m.buf);
  fl_progress_end(p);
  const char *cols[2] = {"loss", "epoch"}, *vals[2] = {"0.700", "0"};
  fl_progress_row(p, cols, vals, 2);
  fl_progress_free(p);
  mem_close(&m);
  EXPECT(strchr(m.buf, '\033') != NULL);
  const char *row = strstr(m.buf, "loss   epoch\n0.700  0\n");
  EXPECTF(row != NULL, "got: %s", m.buf);
  /* The row is printed after erasing the line: preceded by "\r\033[J". */
  EXPECT(row && row - m.buf >= 4 && memcmp(row - 4, "\r\033[J", 4) == 0);
  /* Every line stays within 79 columns, so \r redraws never wrap. */
  for (char *s = m.buf, *e; *s; s = *e ? e + 1 : e) {
    e = s + strcspn(s, "\r\n");
    EXPECT(columns(s, (size_t)(e - s)) <= 79);
  }
  free(m.buf);
}

static void test_rate_limit(void) {
  mem m;
  mem_open(&m);
  fl_progress *p = fl_progress_new(m.f, 1);
  fl_progress_begin(p, "train", 1000);
  for (int i = 1; i <= 1000; i++) fl_progress_update(p, i, "loss 1.000");
  fl_progress_end(p);
  fl_progress_free(p);
  mem_close(&m);
  int redraws = count_char(m.buf, '\r');
  EXPECTF(redraws >= 2 && redraws <= 12, "%d redraws", redraws);
  EXPECT(strstr(m.buf, "1000/1000") != NULL);
  EXPECTF(m.len < 2000, "%zu bytes", m.len);
  free(m.buf);
}

static void test_tty_chart(void) {
  mem m;
  mem_open(&m);
  fl_progress *p = fl_progress_new(m.f, 1);
  fl_progress_chart_size(p, 20, 4);
  fake_fit(p, 1, 10);
  double y[3] = {3, 2, 1};
  fl_series s = {"train", NULL, y, 3};
  fl_progress_chart(p, &s, 1, 1);  /* forced: draws even right after another chart */
  fl_progress_chart(p, &s, 1, 0);  /* rate-limited: does not */
  fl_progress_free(p);
  mem_close(&m);
  /* The final chart: 4 rows + axis + x labels = 6 lines, erased with "\033[6A" next time. */
  EXPECT(strstr(m.buf, "3 \u2524") != NULL && strstr(m.buf, "1 \u2524") != NULL);
  EXPECT(strstr(m.buf, "\u2514") != NULL);
  EXPECT(strstr(m.buf, "\033[6A") != NULL);  /* a row printed above a 6-line chart */
  /* The chart stays after the last row: the output ends with it. */
  const char *last = strstr(m.buf, "3 \u2524");
  EXPECT(last && !strstr(last, "accuracy"));
  free(m.buf);

  /* Plain mode: charts print nothing. */
  mem_open(&m);
  p = fl_progress_new(m.f, 0);
  fl_progress_chart(p, &s, 1, 1);
  fl_progress_free(p);
  mem_close(&m);
  EXPECT(m.len == 0);
  free(m.buf);
}

/* Splits buf into lines; returns the count (each line ends in '\n'). */
static int split_lines(char *buf, char **lines, int max) {
  int n = 0;
  for (char *s = buf, *e; *s && n < max; s = e + 1) {
    e = strchr(s, '\n');
    if (!e) break;
    *e = 0;
    lines[n++] = s;
  }
  return n;
}

static void test_term_chart(void) {
  enum { N = 100, W = 40, H = 8 };
  double y[N];
  for (int i = 0; i < N; i++) y[i] = 40.0 - 0.4 * i;  /* 40 .. 0.4, decreasing */
  y[10] = 42.25, y[80] = -3.5, y[50] = NAN;
  fl_series s = {"train", NULL, y, N};
  char buf[FL_TERM_CHART_CAP(W, H)], *lines[32];
  size_t n = fl_term_chart(buf, sizeof buf, &s, 1, W, H, 0);
  EXPECT(n == strlen(buf) && n > 0);
  EXPECT(!strchr(buf, '\033'));
  int nl = split_lines(buf, lines, 32);
  EXPECTF(nl == H + 2, "%d lines", nl);
  int L = 5;  /* strlen("42.25") */
  for (int i = 0; i < nl; i++)
    EXPECTF(columns(lines[i], strlen(lines[i])) == L + 2 + W, "line %d: '%s' has %d columns", i,
            lines[i], columns(lines[i], strlen(lines[i])));
  EXPECTF(strncmp(lines[0], "42.25 \u2524", 9) == 0, "'%s'", lines[0]);
  EXPECTF(strncmp(lines[H - 1], " -3.5 \u2524", 9) == 0, "'%s'", lines[H - 1]);
  EXPECT(strncmp(lines[1], "      \u2502", 9) == 0);
  EXPECT(strstr(lines[H], "\u2514\u2500\u2500"));
  EXPECTF(strncmp(lines[H + 1], "       0", 8) == 0 && strstr(lines[H + 1], "99"), "'%s'",
          lines[H + 1]);
  /* The max (x=10 of 99, top dot row) lands in the first row near the left; the min (x=80,
   * bottom dot row) in the last row: cell 80*79/99/2 = 31 holds a braille char with a
   * bottom dot (U+2840.. has bit 0x40 or 0x80 set). */
  const char *r0 = lines[0] + 9, *rl = lines[H - 1] + 9;  /* after "label ┤" */
  int cells_top = 0, cells_bottom = 0, bottom_dot = 0;
  for (const char *c = r0; *c;) {
    if (*c == ' ') { c++; continue; }
    cells_top++, c += 3;
  }
  for (const char *c = rl; *c;) {
    if (*c == ' ') { c++; continue; }
    unsigned cp = ((unsigned)(c[0] & 0x0F) << 12) | ((unsigned)(c[1] & 0x3F) << 6) | (c[2] & 0x3F);
    EXPECT(cp >= 0x2800 && cp <= 0x28FF);
    bottom_dot |= (cp - 0x2800) & 0xC0;
    cells_bottom++, c += 3;
  }
  EXPECT(cells_top >= 1 && cells_bottom >= 1 && bottom_dot);

  /* Too small a buffer: "" and the length it needs. */
  char small[16];
  size_t need = fl_term_chart(small, sizeof small, &s, 1, W, H, 0);
  EXPECT(need == n && small[0] == 0);
  EXPECT(fl_term_chart(NULL, 0, &s, 1, W, H, 0) == n);

  /* Two series in colour: escape codes and a legend line. */
  double v[3] = {30, 20, 25}, vx[3] = {33, 66, 99};
  fl_series two[2] = {{"train", NULL, y, N}, {"valid", vx, v, 3}};
  n = fl_term_chart(buf, sizeof buf, two, 2, W, H, FL_CHART_COLOR);
  EXPECT(n < sizeof buf && strchr(buf, '\033'));
  EXPECT(strstr(buf, "train") && strstr(buf, "valid"));
  EXPECT(count_char(buf, '\n') == H + 3);

  /* Empty and flat series still lay out. */
  fl_series none = {NULL, NULL, NULL, 0};
  n = fl_term_chart(buf, sizeof buf, &none, 1, 8, 2, 0);
  EXPECT(count_char(buf, '\n') == 4);
  double flat[4] = {1, 1, 1, 1};
  fl_series fs = {NULL, NULL, flat, 4};
  fl_term_chart(buf, sizeof buf, &fs, 1, 8, 2, 0);
  EXPECT(count_char(buf, '\n') == 4 && strstr(buf, "1 \u2524") && strstr(buf, "\xe2\xa0"));
}

int main(void) {
  RUN(test_plain_rows_only);
  RUN(test_tty_bar);
  RUN(test_rate_limit);
  RUN(test_tty_chart);
  RUN(test_term_chart);
  return test_summary();
}
