/* The conv-net ops (issue 7): values and gradients against PyTorch in float64
 * (tools/conv_vs_torch.py, run once for every case), dropout's statistics and mask, the same
 * bits at 1 and 2 threads, oneDNN's kernels against the plain C ones, misuse aborts.
 *
 * Tolerance against PyTorch: |ours - torch| <= TOL * max(1, |torch|) per element, TOL = 1e-5.
 * Budget: our float32 results hold sums of O(1) products, the longest the weight gradients'
 * N*Ho*Wo terms (at most 200 here); oneDNN's blocked kernels add them in float32, whose
 * rounding grows with the length (measured worst element, 1 -> 16 channels 5x5: 1.0e-5
 * relative at 392 terms, 1.3e-5 at 784, 1.8e-5 at 2352; so the cases here stay at or below
 * 200 terms). A wrong index or a missing
 * term gives errors of O(0.1) or more. Longer sums (the full-size ResNet shapes) are compared
 * with the plain C loops, which sum in double, in test_resnet_shapes, against the largest
 * |value|. Skips the PyTorch part cleanly when torch is missing. */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "backend/cpu/cnn.h"
#include "fl/core.h"
#include "fl/tensor.h"
#include "test.h"

#define TOL 1e-5

static int have_torch(void) {
  return access("/usr/bin/python3", X_OK) == 0 &&
         system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") == 0;
}

static fl_rng rng;

static fl_tensor *rnd(int ndim, int64_t a, int64_t b, int64_t c, int64_t d, float scale, int grad) {
  int64_t s[4] = {a, b, c, d};
  fl_tensor *t = fl_tensor_normal(&rng, FL_CPU, ndim, s, 0.0f, scale);
  if (grad) fl_tensor_require_grad(t);
  return t;
}

/* ---------------------------------------------------------------- the cases */

enum { OP_CONV, OP_BN, OP_POOL, OP_GPOOL, OP_GRELU };

typedef struct tcase {
  int op;
  int p[10];          /* conv: N C H W O k stride pad bias ; bn: N C H W affine ; pool: N C H W k ceil ;
                         gpool: N C H W ; grelu: n */
  float f[3];         /* bn: momentum eps ; grelu: leak sub maxv */
  fl_tensor *in[8];
  int n_in;
  char line[160];
} tcase;

#define MAX_CASES 40
static tcase cases[MAX_CASES];
static int n_cases;

static tcase *add_case(int op) {
  tcase *c = &cases[n_cases++];
  memset(c, 0, sizeof *c);
  c->op = op;
  return c;
}

static void make_cases(void) {
  rng = fl_rng_make(11, FL_STREAM_USER);
  static const int ks[3] = {1, 3, 5};
  for (int ki = 0; ki < 3; ki++)
    for (int s = 1; s <= 2; s++)
      for (int bias = 0; bias <= 1; bias++) {
        /* H even, W odd: both parities of the last window at stride 2 */
        tcase *c = add_case(OP_CONV);
        int k = ks[ki], p[9] = {2, 3, 10, 9, 4, k, s, k / 2, bias};
        memcpy(c->p, p, sizeof p);
      }
  { /* no padding, a kernel that just fits one way */
    tcase *c = add_case(OP_CONV);
    int p[9] = {2, 2, 5, 7, 3, 5, 2, 0, 1};
    memcpy(c->p, p, sizeof p);
  }
  { /* the wider stem (ResBlock(1, 16, ks=5)) on one 14x14 image: 196-term weight-gradient sums */
    tcase *c = add_case(OP_CONV);
    int p[9] = {1, 1, 14, 14, 16, 5, 1, 2, 0};
    memcpy(c->p, p, sizeof p);
  }
  for (int v = 0; v < 3; v++) {   /* 2-d, 4-d, 4-d without affine */
    tcase *c = add_case(OP_BN);
    int p4[5] = {3, 4, 5, 3, 1}, p2[5] = {6, 5, 0, 0, 1};
    memcpy(c->p, v == 1 ? p2 : p4, sizeof p4);
    if (v == 2) c->p[4] = 0;
    c->f[0] = 0.1f, c->f[1] = 1e-5f;
  }
  int pools[3][6] = {{2, 3, 7, 5, 2, 1}, {2, 3, 7, 5, 2, 0}, {1, 2, 8, 7, 3, 1}};
  for (int i = 0; i < 3; i++) memcpy(add_case(OP_POOL)->p, pools[i], sizeof pools[i]);
  int gp[4] = {2, 3, 5, 7};
  memcpy(add_case(OP_GPOOL)->p, gp, sizeof gp);
  tcase *c = add_case(OP_GRELU);
  c->p[0] = 400, c->f[0] = 0.1f, c->f[1] = 0.4f, c->f[2] = 6.0f;
  c = add_case(OP_GRELU);
  c->p[0] = 400, c->f[0] = 0.0f, c->f[1] = 0.0f, c->f[2] = INFINITY;

  for (int i = 0; i < n_cases; i++) {
    c = &cases[i];
    const int *p = c->p;
    switch (c->op) {
      case OP_CONV: {
        int Ho = (p[2] + 2 * p[7] - p[5]) / p[6] + 1, Wo = (p[3] + 2 * p[7] - p[5]) / p[6] + 1;
        c->in[c->n_in++] = rnd(4, p[0], p[1], p[2], p[3], 1.0f, 1);
        c->in[c->n_in++] = rnd(4, p[4], p[1], p[5], p[5], 0.5f, 1);
        if (p[8]) c->in[c->n_in++] = rnd(1, p[4], 0, 0, 0, 1.0f, 1);
        c->in[c->n_in++] = rnd(4, p[0], p[4], Ho, Wo, 1.0f, 0);
        snprintf(c->line, sizeof c->line, "conv %d %d %d %d %d %d %d %d %d", p[0], p[1], p[2], p[3],
                 p[4], p[5], p[6], p[7], p[8]);
        break;
      }
      case OP_BN: {
        int nd = p[2] ? 4 : 2;
        c->in[c->n_in++] = rnd(nd, p[0], p[1], p[2], p[3], 2.0f, 1);
        c->in[c->n_in++] = rnd(nd, p[0], p[1], p[2], p[3], 3.0f, 1);
        for (int j = 0; j < 2; j++) {   /* shift each channel's mean: a non-trivial running mean */
          float *x = c->in[j]->data;
          int S = p[2] ? p[2] * p[3] : 1;
          for (int64_t e = 0; e < fl_numel(c->in[j]); e++) x[e] += (float)((e / S) % p[1]) - 1.5f;
        }
        if (p[4]) {
          c->in[c->n_in++] = rnd(1, p[1], 0, 0, 0, 1.0f, 1);
          c->in[c->n_in++] = rnd(1, p[1], 0, 0, 0, 1.0f, 1);
        }
        c->in[c->n_in++] = fl_tensor_new1(FL_F32, FL_CPU, p[1]);
        c->in[c->n_in] = fl_tensor_new1(FL_F32, FL_CPU, p[1]);
        fl_tensor_fill(c->in[c->n_in++], 1.0f);
        c->in[c->n_in++] = rnd(nd, p[0], p[1], p[2], p[3], 1.0f, 0);
        snprintf(c->line, sizeof c->line, "bn %d %d %d %d %d %.9g %.9g", p[0], p[1], p[2], p[3], p[4],
                 (double)c->f[0], (double)c->f[1]);
        break;
      }
      case OP_POOL: {
        int Ho = p[5] ? (p[2] + p[4] - 1) / p[4] : p[2] / p[4], Wo = p[5] ? (p[3] + p[4] - 1) / p[4] : p[3] / p[4];
        c->in[c->n_in++] = rnd(4, p[0], p[1], p[2], p[3], 1.0f, 1);
        c->in[c->n_in++] = rnd(4, p[0], p[1], Ho, Wo, 1.0f, 0);
        snprintf(c->line, sizeof c->line, "pool %d %d %d %d %d %d", p[0], p[1], p[2], p[3], p[4], p[5]);
        break;
      }
      case OP_GPOOL:
        c->in[c->n_in++] = rnd(4, p[0], p[1], p[2], p[3], 1.0f, 1);
        c->in[c->n_in++] = rnd(2, p[0], p[1], 0, 0, 1.0f, 0);
        snprintf(c->line, sizeof c->line, "gpool %d %d %d %d", p[0], p[1], p[2], p[3]);
        break;
      case OP_GRELU:
        c->in[c->n_in++] = rnd(1, p[0], 0, 0, 0, 4.0f, 1);   /* wide: some above maxv + sub */
        c->in[c->n_in++] = rnd(1, p[0], 0, 0, 0, 1.0f, 0);
        snprintf(c->line, sizeof c->line, "grelu %d %.9g %.9g %s", p[0], (double)c->f[0], (double)c->f[1],
                 isinf(c->f[2]) ? "inf" : "6");
        break;
    }
  }
}

static void free_cases(void) {
  for (int i = 0; i < n_cases; i++)
    for (int j = 0; j < cases[i].n_in; j++) fl_tensor_free(cases[i].in[j]);
  n_cases = 0;
}

/* ---------------------------------------------------------------- comparing */

static char dir[64];

static void write_t(int id, int j, const fl_tensor *t) {
  char path[128];
  snprintf(path, sizeof path, "%s/c%d_i%d.bin", dir, id, j);
  FILE *f = fopen(path, "wb");
  fwrite(t->data, sizeof(float), (size_t)fl_numel(t), f);
  fclose(f);
}

static double worst_ratio;
static int worst_case;
static const char *worst_what = "";

/* Compares n floats with torch's output J of case id. */
static void compare(int id, int j, const char *what, const float *ours, int64_t n) {
  char path[128];
  snprintf(path, sizeof path, "%s/c%d_o%d.bin", dir, id, j);
  FILE *f = fopen(path, "rb");
  EXPECTF(f != NULL, "case %d (%s): no %s from PyTorch", id, cases[id].line, path);
  if (!f) return;
  double *ref = malloc((size_t)(n ? n : 1) * sizeof *ref);
  size_t got = fread(ref, sizeof *ref, (size_t)n, f);
  EXPECTF(got == (size_t)n && fgetc(f) == EOF, "case %d (%s) %s: %zu values from PyTorch, expected %lld", id,
          cases[id].line, what, got, (long long)n);
  fclose(f);
  int bad = 0;
  for (int64_t i = 0; i < (int64_t)got; i++) {
    double d = fabs(ours[i] - ref[i]), lim = TOL * fmax(1.0, fabs(ref[i]));
    if (d / lim > worst_ratio) worst_ratio = d / lim, worst_case = id, worst_what = what;
    if (!(d <= lim) && bad++ < 3)
      EXPECTF(0, "case %d (%s) %s[%lld]: %.9g, PyTorch %.9g", id, cases[id].line, what, (long long)i,
              (double)ours[i], ref[i]);
  }
  free(ref);
}

static void cmp_t(int id, int j, const char *what, const fl_tensor *t) {
  compare(id, j, what, t->data, fl_numel(t));
}

static fl_tensor *run_case(fl_graph *g, tcase *c, int bn_training) {
  fl_tensor **in = c->in;
  const int *p = c->p;
  switch (c->op) {
    case OP_CONV: return fl_conv2d(g, in[0], in[1], p[8] ? in[2] : NULL, p[6], p[7]);
    case OP_BN: {
      int a = p[4] ? 2 : 0;
      return fl_batch_norm(g, in[bn_training == 1 ? 0 : bn_training == 2 ? 1 : 0], p[4] ? in[2] : NULL,
                           p[4] ? in[3] : NULL, in[2 + a], in[3 + a], bn_training != 0, c->f[0], c->f[1]);
    }
    case OP_POOL: return fl_avg_pool2d(g, in[0], p[4], p[5]);
    case OP_GPOOL: return fl_global_avg_pool(g, in[0]);
    case OP_GRELU: return fl_general_relu(g, in[0], c->f[0], c->f[1], c->f[2]);
  }
  return NULL;
}

/* y, then L = sum(y * R) backward with every grad zeroed first */
static fl_tensor *fwd_bwd(fl_graph *g, tcase *c, int bn_training, fl_tensor *R) {
  for (int j = 0; j < c->n_in; j++)
    if (c->in[j]->requires_grad) fl_tensor_zero(c->in[j]->grad);
  fl_tensor *y = run_case(g, c, bn_training);
  EXPECT(y != NULL);
  EXPECT(fl_backward(g, fl_sum(g, fl_mul(g, y, R))) == FL_OK);
  return y;
}

static void check_case(int id) {
  tcase *c = &cases[id];
  fl_graph *g = fl_graph_new();
  fl_tensor *R = c->in[c->n_in - 1], **in = c->in;
  int o = 0;
  if (c->op == OP_BN) {
    int a = c->p[4] ? 2 : 0;
    fwd_bwd(g, c, 1, R);
    fl_graph_reset(g);
    fl_tensor *y = fwd_bwd(g, c, 2, R);
    cmp_t(id, o++, "y (train)", y);
    cmp_t(id, o++, "dx (train)", in[1]->grad);
    if (a) { cmp_t(id, o++, "dweight (train)", in[2]->grad); cmp_t(id, o++, "dbias (train)", in[3]->grad); }
    cmp_t(id, o++, "running_mean", in[2 + a]);
    cmp_t(id, o++, "running_var", in[3 + a]);
    fl_graph_reset(g);
    y = fwd_bwd(g, c, 0, R);
    cmp_t(id, o++, "y (eval)", y);
    cmp_t(id, o++, "dx (eval)", in[0]->grad);
    if (a) { cmp_t(id, o++, "dweight (eval)", in[2]->grad); cmp_t(id, o++, "dbias (eval)", in[3]->grad); }
  } else {
    fl_tensor *y = fwd_bwd(g, c, 0, R);
    cmp_t(id, o++, "y", y);
    static const char *names[3] = {"dx", "dweight", "dbias"};
    for (int j = 0; j < c->n_in - 1; j++) cmp_t(id, o++, names[j], in[j]->grad);
  }
  fl_graph_free(g);
}

static void test_vs_pytorch(void) {
  if (!have_torch()) SKIP("no PyTorch at /usr/bin/python3 (apt-get install python3-torch)");
  snprintf(dir, sizeof dir, "/tmp/fl_conv_XXXXXX");
  EXPECT(mkdtemp(dir) != NULL);
  make_cases();
  char path[128], cmd[256];
  snprintf(path, sizeof path, "%s/cases.txt", dir);
  FILE *f = fopen(path, "w");
  for (int i = 0; i < n_cases; i++) {
    fprintf(f, "%d %s\n", i, cases[i].line);
    for (int j = 0; j < cases[i].n_in; j++) write_t(i, j, cases[i].in[j]);
  }
  fclose(f);
  snprintf(cmd, sizeof cmd, "/usr/bin/python3 tools/conv_vs_torch.py %s", dir);
  EXPECTF(system(cmd) == 0, "%s failed", cmd);
  worst_ratio = 0;
  for (int i = 0; i < n_cases; i++) check_case(i);
  if (getenv("FL_TEST_VERBOSE"))
    printf("  worst |ours - torch| / (TOL max(1, |torch|)): %.3f over %d cases (case %d, %s: %s)\n", worst_ratio,
           n_cases, worst_case, cases[worst_case].line, worst_what);
  free_cases();
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  EXPECT(system(cmd) == 0);
}

/* ---------------------------------------------------------------- dropout */

static void test_dropout(void) {
  rng = fl_rng_make(5, FL_STREAM_USER);
  const int64_t n = 100000;
  const float p = 0.3f;
  fl_tensor *x = rnd(2, 100, 1000, 0, 0, 1.0f, 1), *R = rnd(2, 100, 1000, 0, 0, 1.0f, 0);
  float *xs = x->data;
  for (int64_t i = 0; i < n; i++)
    if (xs[i] == 0.0f) xs[i] = 1.0f;   /* a zero output then means a dropped element */
  fl_graph *g = fl_graph_new();
  fl_tensor_zero(x->grad);
  fl_tensor *y = fl_dropout(g, x, p, 1, 42, 7);
  EXPECT(y != NULL && y != x);
  const float *ys = y->data, scale = 1.0f / (1.0f - p);
  int64_t zeros = 0, wrong = 0;
  for (int64_t i = 0; i < n; i++) {
    if (ys[i] == 0.0f) zeros++;
    else if (ys[i] != xs[i] * scale) wrong++;
  }
  /* the dropped fraction: p within 5 standard deviations (sqrt(p(1-p)/n) = 0.00145) */
  double frac = (double)zeros / n;
  EXPECTF(fabs(frac - p) <= 5 * sqrt(p * (1 - p) / n), "dropped fraction %.5f, expected %.2f", frac, p);
  EXPECTF(wrong == 0, "%lld kept elements not x / (1 - p)", (long long)wrong);
  /* the mean is kept: E[y] = E[x]; sum over 1e5 standard normals scaled */
  EXPECT(fl_backward(g, fl_sum(g, fl_mul(g, y, R))) == FL_OK);
  const float *gx = x->grad->data, *r = R->data;
  int64_t bad = 0;
  for (int64_t i = 0; i < n; i++)
    if (gx[i] != (ys[i] != 0.0f ? r[i] * scale : 0.0f)) bad++;
  EXPECTF(bad == 0, "%lld gradient elements disagree with the forward's mask", (long long)bad);
  /* same (seed, counter): the same mask; another counter or seed: another one */
  float *y1 = malloc((size_t)n * sizeof *y1);
  memcpy(y1, ys, (size_t)n * sizeof *y1);
  fl_graph_reset(g);
  const float *y2 = fl_dropout(g, x, p, 1, 42, 7)->data;
  EXPECT(memcmp(y1, y2, (size_t)n * sizeof *y1) == 0);
  const uint64_t other[2][2] = {{42, 8}, {43, 7}};
  for (int k = 0; k < 2; k++) {
    fl_graph_reset(g);
    const float *y3 = fl_dropout(g, x, p, 1, other[k][0], other[k][1])->data;
    int64_t diff = 0;
    for (int64_t i = 0; i < n; i++) diff += (y1[i] == 0.0f) != (y3[i] == 0.0f);
    /* independent masks differ in 2 p (1 - p) = 42 % of the places */
    EXPECTF(fabs((double)diff / n - 2 * p * (1 - p)) < 0.01, "seed %llu counter %llu: masks differ in %.4f",
            (unsigned long long)other[k][0], (unsigned long long)other[k][1], (double)diff / n);
  }
  /* eval, or p = 0: the identity (the same tensor) */
  fl_graph_reset(g);
  EXPECT(fl_dropout(g, x, p, 0, 42, 7) == x);
  EXPECT(fl_dropout(g, x, 0.0f, 1, 42, 7) == x);
  /* the same mask at 1 and 2 threads */
  int t0 = fl_num_threads();
  fl_init(1);
  fl_graph_reset(g);
  memcpy(y1, fl_dropout(g, x, p, 1, 9, 1)->data, (size_t)n * sizeof *y1);
  fl_init(2);
  fl_graph_reset(g);
  EXPECT(memcmp(y1, fl_dropout(g, x, p, 1, 9, 1)->data, (size_t)n * sizeof *y1) == 0);
  fl_init(t0);
  free(y1);
  fl_graph_free(g);
  fl_tensor_free(x);
  fl_tensor_free(R);
}

/* ---------------------------------------------------------------- 1 vs 2 threads */

/* A small ResNet-like step: conv 5x5 -> BN -> GeneralRelu -> conv 3x3 s2 -> BN -> relu ->
 * avgpool ceil -> conv 1x1 (+bias) -> dropout -> global pool -> sum; big enough that every
 * kernel takes its threaded path. Returns every output and gradient, concatenated. */
static float *net_step(fl_tensor **p, int np, fl_tensor *x, size_t *len) {
  fl_graph *g = fl_graph_new();
  for (int i = 0; i < np; i++)
    if (p[i]->requires_grad) fl_tensor_zero(p[i]->grad);
  fl_tensor_zero(x->grad);
  fl_tensor *h = fl_conv2d(g, x, p[0], NULL, 1, 2);
  h = fl_general_relu(g, fl_batch_norm(g, h, p[1], p[2], p[3], p[4], 1, 0.1f, 1e-5f), 0.1f, 0.4f, 6.0f);
  h = fl_conv2d(g, h, p[5], NULL, 2, 1);
  h = fl_general_relu(g, fl_batch_norm(g, h, p[6], p[7], p[8], p[9], 1, 0.1f, 1e-5f), 0.0f, 0.0f, INFINITY);
  h = fl_avg_pool2d(g, h, 2, 1);
  h = fl_conv2d(g, h, p[10], p[11], 1, 0);
  h = fl_dropout(g, h, 0.2f, 1, 3, 4);
  fl_tensor *y = fl_global_avg_pool(g, h);
  EXPECT(fl_backward(g, fl_sum(g, fl_mul(g, y, y))) == FL_OK);
  size_t n = (size_t)fl_numel(y) + (size_t)fl_numel(x);
  for (int i = 0; i < np; i++) n += (size_t)fl_numel(p[i]);
  float *out = malloc(n * sizeof *out), *q = out;
  memcpy(q, y->data, (size_t)fl_numel(y) * sizeof *q), q += fl_numel(y);
  memcpy(q, x->grad->data, (size_t)fl_numel(x) * sizeof *q), q += fl_numel(x);
  for (int i = 0; i < np; i++) {   /* weight grads, and the running stats */
    const fl_tensor *t = p[i]->requires_grad ? p[i]->grad : p[i];
    memcpy(q, t->data, (size_t)fl_numel(t) * sizeof *q), q += fl_numel(t);
  }
  *len = n;
  fl_graph_free(g);
  return out;
}

static void test_threads_same_bits(void) {
  rng = fl_rng_make(3, FL_STREAM_USER);
  const int N = 32, C1 = 8, C2 = 16, C3 = 16;
  fl_tensor *p[12];
  p[0] = rnd(4, C1, 1, 5, 5, 0.3f, 1);
  p[5] = rnd(4, C2, C1, 3, 3, 0.2f, 1);
  p[10] = rnd(4, C3, C2, 1, 1, 0.3f, 1);
  p[11] = rnd(1, C3, 0, 0, 0, 0.1f, 1);
  for (int b = 0; b < 2; b++) {
    int C = b ? C2 : C1, o = b ? 6 : 1;
    p[o] = rnd(1, C, 0, 0, 0, 1.0f, 1);
    p[o + 1] = rnd(1, C, 0, 0, 0, 1.0f, 1);
    p[o + 2] = fl_tensor_new1(FL_F32, FL_CPU, C);
    p[o + 3] = fl_tensor_new1(FL_F32, FL_CPU, C);
    fl_tensor_fill(p[o + 3], 1.0f);
  }
  fl_tensor *x = rnd(4, N, 1, 28, 28, 1.0f, 1);
  float *run_stats0 = malloc(4 * C2 * sizeof(float));
  int t0 = fl_num_threads();
  float *out[2];
  size_t len[2];
  for (int t = 0; t < 2; t++) {
    /* the same running stats before each run */
    if (t == 0) {
      memcpy(run_stats0, p[3]->data, C1 * sizeof(float)); memcpy(run_stats0 + C2, p[4]->data, C1 * sizeof(float));
      memcpy(run_stats0 + 2 * C2, p[8]->data, C2 * sizeof(float)); memcpy(run_stats0 + 3 * C2, p[9]->data, C2 * sizeof(float));
    } else {
      memcpy(p[3]->data, run_stats0, C1 * sizeof(float)); memcpy(p[4]->data, run_stats0 + C2, C1 * sizeof(float));
      memcpy(p[8]->data, run_stats0 + 2 * C2, C2 * sizeof(float)); memcpy(p[9]->data, run_stats0 + 3 * C2, C2 * sizeof(float));
    }
    fl_init(t + 1);
    out[t] = net_step(p, 12, x, &len[t]);
  }
  fl_init(t0);
  EXPECT(len[0] == len[1]);
  size_t diff = 0, first = 0;
  for (size_t i = 0; i < len[0]; i++)
    if (memcmp(&out[0][i], &out[1][i], sizeof(float)) && !diff++) first = i;
  EXPECTF(diff == 0, "%zu of %zu values differ between 1 and 2 threads (first at %zu)", diff, len[0], first);
  if (getenv("FL_TEST_VERBOSE")) {
    size_t off = (size_t)N * C3;
    const char *nm = "x grad";
    size_t seg = (size_t)fl_numel(x);
    for (int i = -1; i < 12; i++) {
      size_t d = 0;
      for (size_t e = off; e < off + seg; e++) d += memcmp(&out[0][e], &out[1][e], 4) != 0;
      printf("  %s: %zu of %zu differ\n", nm, d, seg);
      off += seg;
      if (i + 1 < 12) { seg = (size_t)fl_numel(p[i + 1]); nm = "param/stat"; }
    }
  }
  free(out[0]);
  free(out[1]);
  free(run_stats0);
  for (int i = 0; i < 12; i++) fl_tensor_free(p[i]);
  fl_tensor_free(x);
}

/* The ResNet's convolution shapes (13_resnet at a small batch): oneDNN's weight gradient and
 * the rest at 1 and 2 threads, bit for bit, and against the plain C loops (relative 1e-5 of the
 * largest |value|: the plain loops sum in double). */
static void test_resnet_shapes(void) {
#ifdef FL_NO_DNNL
  SKIP("a DNNL=0 build: the plain loops are the only kernels");
#else
  static const int sh[][6] = {   /* C, H, O, k, stride, pad */
      {1, 28, 8, 5, 1, 2}, {8, 28, 16, 3, 2, 1}, {16, 14, 32, 3, 2, 1}, {32, 7, 64, 3, 2, 1},
      {64, 4, 128, 3, 2, 1}, {128, 2, 256, 3, 2, 1}, {16, 14, 16, 3, 1, 1}, {8, 14, 16, 1, 1, 0}};
  rng = fl_rng_make(8, FL_STREAM_USER);
  const int N = 16;
  int t0 = fl_num_threads();
  for (size_t i = 0; i < sizeof sh / sizeof sh[0]; i++) {
    const int *q = sh[i];
    fl_conv_shape s = {N, q[0], q[1], q[1], q[2], q[3], q[4], q[5], 0, 0};
    s.Ho = s.Wo = (s.H + 2 * s.pad - s.k) / s.stride + 1;
    fl_tensor *x = rnd(4, N, s.C, s.H, s.W, 1.0f, 0), *w = rnd(4, s.O, s.C, s.k, s.k, 0.2f, 0);
    fl_tensor *gy = rnd(4, N, s.O, s.Ho, s.Wo, 1.0f, 0);
    size_t ny = (size_t)fl_numel(gy), nx = (size_t)fl_numel(x), nw = (size_t)fl_numel(w);
    float *r[3][3];
    for (int v = 0; v < 3; v++) {   /* 1 thread, 2 threads, the plain loops (2 threads) */
      fl_init(v ? 2 : 1);
      for (int k = 0; k < 3; k++) r[v][k] = malloc((k == 0 ? ny : k == 1 ? nx : nw) * sizeof(float));
      if (v < 2) {
        fl__cpu_conv2d_fwd(&s, r[v][0], x->data, w->data, NULL);
        fl__cpu_conv2d_bwd_data(&s, r[v][1], gy->data, w->data, 0);
        fl__cpu_conv2d_bwd_weights(&s, r[v][2], NULL, gy->data, x->data, 0, 0);
      } else {
        fl__ref_conv2d_fwd(&s, r[v][0], x->data, w->data, NULL);
        fl__ref_conv2d_bwd_data(&s, r[v][1], gy->data, w->data, 0);
        fl__ref_conv2d_bwd_weights(&s, r[v][2], NULL, gy->data, x->data, 0, 0);
      }
    }
    static const char *what[3] = {"forward", "backward data", "backward weights"};
    for (int k = 0; k < 3; k++) {
      size_t n = k == 0 ? ny : k == 1 ? nx : nw;
      EXPECTF(!memcmp(r[0][k], r[1][k], n * sizeof(float)), "%d->%d k%d s%d %s: 1 and 2 threads differ",
              s.C, s.O, s.k, s.stride, what[k]);
      double big = 0, worst = 0;
      for (size_t e = 0; e < n; e++) big = fmax(big, fabs(r[2][k][e]));
      for (size_t e = 0; e < n; e++) worst = fmax(worst, fabs(r[1][k][e] - r[2][k][e]));
      EXPECTF(worst <= 1e-5 * big, "%d->%d k%d s%d %s: oneDNN vs plain %.3g (largest %.3g)", s.C, s.O, s.k,
              s.stride, what[k], worst, big);
    }
    for (int v = 0; v < 3; v++)
      for (int k = 0; k < 3; k++) free(r[v][k]);
    fl_tensor_free(x);
    fl_tensor_free(w);
    fl_tensor_free(gy);
  }
  fl_init(t0);
#endif
}

/* More shapes than the primitive cache holds (512): it empties and refills, and the results
 * stay right (pooling: the cheapest primitives to create). */
static void test_cache_refills(void) {
#ifdef FL_NO_DNNL
  SKIP("a DNNL=0 build has no primitive cache");
#else
  rng = fl_rng_make(4, FL_STREAM_USER);
  fl_tensor *x = rnd(1, 2 * 700, 0, 0, 0, 1.0f, 0);
  float *y = malloc(700 * sizeof *y), *r = malloc(700 * sizeof *r);
  int bad = 0;
  for (int W = 2; W < 2 + 600; W++) {
    fl__cpu_avg_pool_fwd(y, x->data, 1, 2, W, 2, 1, (W + 1) / 2);
    fl__ref_avg_pool_fwd(r, x->data, 1, 2, W, 2, 1, (W + 1) / 2);
    for (int j = 0; j < (W + 1) / 2; j++) bad += fabsf(y[j] - r[j]) > 1e-6f;
  }
  EXPECTF(bad == 0, "%d pooled values wrong across 600 shapes", bad);
  free(y);
  free(r);
  fl_tensor_free(x);
#endif
}

/* ---------------------------------------------------------------- misuse and CUDA */

typedef void (*misuse_fn)(void);

static void expect_abort(const char *what, misuse_fn fn, const char *needle) {
  int fd[2];
  if (pipe(fd)) { EXPECT(0); return; }
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  if (pid == 0) {
    dup2(fd[1], 2);
    close(fd[0]);
    close(fd[1]);
    fn();
    _exit(0);
  }
  close(fd[1]);
  char buf[4096];
  size_t len = 0;
  ssize_t k;
  while (len < sizeof buf - 1 && (k = read(fd[0], buf + len, sizeof buf - 1 - len)) > 0) len += (size_t)k;
  buf[len] = 0;
  close(fd[0]);
  int st = 0;
  waitpid(pid, &st, 0);
  EXPECTF(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT, "%s: child did not abort (status %#x)", what, st);
  EXPECTF(strstr(buf, "ops_cnn.c:") && strstr(buf, ": flexlearn: "), "%s: no file:line in: %s", what, buf);
  EXPECTF(strstr(buf, needle) != NULL, "%s: no \"%s\" in: %s", what, needle, buf);
}

static fl_tensor *T(int ndim, int64_t a, int64_t b, int64_t c, int64_t d) {
  int64_t s[4] = {a, b, c, d};
  return fl_tensor_new(FL_F32, FL_CPU, ndim, s);
}

static void m_conv_2d(void) { fl_conv2d(fl_graph_new(), T(2, 4, 3, 0, 0), T(4, 2, 3, 3, 3), NULL, 1, 1); }
static void m_conv_ch(void) { fl_conv2d(fl_graph_new(), T(4, 1, 3, 8, 8), T(4, 2, 4, 3, 3), NULL, 1, 1); }
static void m_conv_big(void) { fl_conv2d(fl_graph_new(), T(4, 1, 3, 4, 4), T(4, 2, 3, 7, 7), NULL, 1, 1); }
static void m_conv_bias(void) { fl_conv2d(fl_graph_new(), T(4, 1, 3, 8, 8), T(4, 2, 3, 3, 3), T(1, 3, 0, 0, 0), 1, 1); }
static void m_conv_stride(void) { fl_conv2d(fl_graph_new(), T(4, 1, 3, 8, 8), T(4, 2, 3, 3, 3), NULL, 0, 1); }
static void m_bn_3d(void) { fl_batch_norm(fl_graph_new(), T(3, 2, 3, 4, 0), NULL, NULL, T(1, 3, 0, 0, 0), T(1, 3, 0, 0, 0), 1, 0.1f, 1e-5f); }
static void m_bn_c(void) { fl_batch_norm(fl_graph_new(), T(2, 4, 3, 0, 0), NULL, NULL, T(1, 4, 0, 0, 0), T(1, 3, 0, 0, 0), 1, 0.1f, 1e-5f); }
static void m_bn_one(void) { fl_batch_norm(fl_graph_new(), T(2, 1, 3, 0, 0), NULL, NULL, T(1, 3, 0, 0, 0), T(1, 3, 0, 0, 0), 1, 0.1f, 1e-5f); }
static void m_pool_small(void) { fl_avg_pool2d(fl_graph_new(), T(4, 1, 1, 1, 5), 2, 0); }
static void m_gpool_2d(void) { fl_global_avg_pool(fl_graph_new(), T(2, 3, 4, 0, 0)); }
static void m_dropout_p(void) { fl_dropout(fl_graph_new(), T(2, 3, 4, 0, 0), 1.0f, 1, 1, 1); }

static void test_misuse_aborts(void) {
  expect_abort("conv 2-d", m_conv_2d, "fl_conv2d: input [4, 3] f32 cpu must be 4-d");
  expect_abort("conv channels", m_conv_ch, "fl_conv2d: input [1, 3, 8, 8] f32 cpu has 3 channels, weight [2, 4, 3, 3] f32 cpu expects 4");
  expect_abort("conv kernel", m_conv_big, "fl_conv2d: kernel 7x7 larger than the padded input [1, 3, 4, 4] f32 cpu (pad 1)");
  expect_abort("conv bias", m_conv_bias, "fl_conv2d: bias [3] f32 cpu, expected [2]");
  expect_abort("conv stride", m_conv_stride, "fl_conv2d: stride 0 must be >= 1");
  expect_abort("bn 3-d", m_bn_3d, "fl_batch_norm: input [2, 3, 4] f32 cpu must be (N, C) or (N, C, H, W)");
  expect_abort("bn stats", m_bn_c, "fl_batch_norm: running_mean [4] f32 cpu, expected [3]");
  expect_abort("bn one value", m_bn_one, "training needs more than 1 value per channel");
  expect_abort("pool small", m_pool_small, "fl_avg_pool2d: input [1, 1, 1, 5] f32 cpu smaller than the 2x2 window");
  expect_abort("gpool 2-d", m_gpool_2d, "fl_global_avg_pool: input [3, 4] f32 cpu must be 4-d");
  expect_abort("dropout p", m_dropout_p, "fl_dropout: p = 1 must be in [0, 1)");
}

/* On a GPU (CUDA has none of these kernels yet): the op fails with FL_ERR_DEVICE, the step's
 * loss is NULL and backward reports the reason. */
static void test_cuda_not_implemented(void) {
  if (!fl_cuda_available()) SKIP("no CUDA device");
  int64_t sx[4] = {1, 2, 5, 5}, sw[4] = {3, 2, 3, 3};
  fl_tensor *x = fl_tensor_new(FL_F32, FL_CUDA, 4, sx), *w = fl_tensor_new(FL_F32, FL_CUDA, 4, sw);
  fl_graph *g = fl_graph_new();
  EXPECT(fl_conv2d(g, x, w, NULL, 1, 1) == NULL);
  EXPECT(strstr(fl_last_error(), "fl_conv2d: not implemented on CUDA yet") != NULL);
  fl_graph_free(g);
  fl_tensor_free(x);
  fl_tensor_free(w);
}

int main(void) {
  /* every convolution and pooling multi-threaded, however small (the shapes here are below the
   * size that runs on one thread), so the 1-vs-2-thread checks see oneDNN's threaded kernels */
  setenv("FL_CONV_PAR_MIN", "0", 1);
  fl_init(0);
  RUN(test_vs_pytorch);
  RUN(test_dropout);
  RUN(test_threads_same_bits);
  RUN(test_resnet_shapes);
  RUN(test_cache_refills);
  RUN(test_misuse_aborts);
  RUN(test_cuda_not_implemented);
  return test_summary();
}
