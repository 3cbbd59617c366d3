/* Minimal test harness: each test binary has `int main` calling RUN(fn) for each test and
 * ending with `return test_summary();`. The last line printed is
 * "tests: P passed, F failed, S skipped", which tools/run_tests.sh adds up. */
#ifndef FL_TEST_H
#define FL_TEST_H
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int t__pass, t__fail, t__skip, t__cur_fail, t__cur_skip;
static const char *t__name;

#define EXPECT(cond) do { if (!(cond)) { \
  fprintf(stderr, "%s:%d: %s: expected %s\n", __FILE__, __LINE__, t__name, #cond); \
  t__cur_fail = 1; } } while (0)
#define EXPECTF(cond, ...) do { if (!(cond)) { \
  fprintf(stderr, "%s:%d: %s: expected %s: ", __FILE__, __LINE__, t__name, #cond); \
  fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); t__cur_fail = 1; } } while (0)
/* |a-b| <= tol * max(1, |b|) */
#define EXPECT_NEAR(a, b, tol) do { double t__a = (a), t__b = (b); \
  if (!(fabs(t__a - t__b) <= (tol) * fmax(1.0, fabs(t__b)))) { \
  fprintf(stderr, "%s:%d: %s: %s = %.9g, expected %.9g (tol %g)\n", __FILE__, __LINE__, \
          t__name, #a, t__a, t__b, (double)(tol)); t__cur_fail = 1; } } while (0)
#define SKIP(why) do { printf("skip %s: %s\n", t__name, why); t__cur_skip = 1; return; } while (0)

#define RUN(fn) do { t__name = #fn; t__cur_fail = 0; t__cur_skip = 0; fn(); \
  if (t__cur_skip) t__skip++; \
  else if (t__cur_fail) { t__fail++; printf("FAIL %s\n", #fn); } \
  else { t__pass++; printf("ok %s\n", #fn); } } while (0)

static int test_summary(void) {
  printf("tests: %d passed, %d failed, %d skipped\n", t__pass, t__fail, t__skip);
  return t__fail ? 1 : 0;
}
#endif
