/* nn and optim: PyTorch's default init, get_model's layout, the collated buffers, SGD,
 * parameter groups, ExponentialLR, the MomentumLearner grad scaling, a small training run,
 * bitwise reproducibility (same seed; 1 vs 2 threads) and the arena's steady state. */
#include <omp.h>
#include <stdint.h>
#include <sys/wait.h>
#include <unistd.h>

#include "backend/backend.h"
#include "fl/optim.h"
#include "test.h"

/* ---------------------------------------------------------------- init */

/* W (50, 784) of Linear(784, 50): 39200 draws of U(-b, b), b = 1/sqrt(784).
 * Statistical tolerances, 5 standard errors (a false failure about once in 2 million runs):
 *   mean: sd = b / sqrt(3 n) = 0.0029 b           -> |mean| < 0.015 b
 *   var:  sd(x^2) = b^2 sqrt(4/45), / sqrt(n)     -> |var - b^2/3| < 0.0076 b^2
 *   10-bin histogram, each bin p = 0.1: sd = sqrt(n p (1-p)) = 59.4 -> |count - 3920| < 297 */
static void test_linear_init(void) {
  fl_rng rng = fl_rng_make(1, FL_STREAM_INIT);
  fl_module *m = fl_linear_new(784, 50, 1, &rng);
  EXPECT(m->n_params == 2);
  fl_tensor *w = m->params[0], *b = m->params[1];
  EXPECT(w->ndim == 2 && w->shape[0] == 50 && w->shape[1] == 784);
  EXPECT(b->ndim == 1 && b->shape[0] == 50);
  EXPECT(w->requires_grad && w->grad && b->requires_grad && b->grad);
  const double bound = 1.0 / sqrt(784.0);
  const float *p = w->data;
  int64_t n = fl_numel(w);
  double s = 0, s2 = 0;
  int hist[10] = {0}, outside = 0;
  for (int64_t i = 0; i < n; i++) {
    if (!(p[i] >= -bound && p[i] < bound)) outside++;
    s += p[i];
    s2 += (double)p[i] * p[i];
    int k = (int)((p[i] + bound) / (2 * bound) * 10);
    hist[k < 0 ? 0 : k > 9 ? 9 : k]++;
  }
  EXPECT(outside == 0);
  double mean = s / (double)n, var = s2 / (double)n - mean * mean;
  EXPECTF(fabs(mean) < 0.015 * bound, "mean %g (bound %g)", mean, bound);
  EXPECTF(fabs(var - bound * bound / 3) < 0.0076 * bound * bound, "var %g, expected %g", var,
          bound * bound / 3);
  for (int k = 0; k < 10; k++) EXPECTF(abs(hist[k] - 3920) < 297, "bin %d: %d", k, hist[k]);
  const float *pb = b->data;
  for (int i = 0; i < 50; i++) EXPECT(pb[i] >= -bound && pb[i] < bound);
  fl_module *nb = fl_linear_new(3, 2, 0, &rng);
  EXPECT(nb->n_params == 1);
  fl_module_free(nb);
  fl_module_free(m);
}

/* ---------------------------------------------------------------- get_model, collate */

static void test_get_model_layout(void) {
  fl_module *m = fl_get_model(42, 784, 50, 10);
  EXPECT(m->n_children == 3);
  EXPECT(!strcmp(m->children[0]->ops->kind, "Linear"));
  EXPECT(!strcmp(m->children[1]->ops->kind, "ReLU"));
  EXPECT(!strcmp(m->children[2]->ops->kind, "Linear"));
  fl_tensor *p[8];
  EXPECT(fl_module_parameters(m, NULL, 0) == 4);
  EXPECT(fl_module_parameters(m, p, 8) == 4);
  /* PyTorch's order: 0.weight [50,784], 0.bias [50], 2.weight [10,50], 2.bias [10] */
  int64_t want[4][2] = {{50, 784}, {50, 0}, {10, 50}, {10, 0}};
  for (int i = 0; i < 4; i++) {
    EXPECT(p[i]->ndim == (want[i][1] ? 2 : 1));
    EXPECT(p[i]->shape[0] == want[i][0]);
    if (want[i][1]) EXPECT(p[i]->shape[1] == want[i][1]);
  }
  EXPECT(p[0] == m->children[0]->params[0] && p[3] == m->children[2]->params[1]);
  EXPECT(fl_module_numel(m) == 784 * 50 + 50 + 50 * 10 + 10);
  /* collated: each parameter inside flat, each grad inside flat_grad, same offsets, in order,
   * no overlap, 64-byte aligned */
  EXPECT(m->flat && m->flat_grad && fl_numel(m->flat) == fl_numel(m->flat_grad));
  const float *f0 = m->flat->data, *g0 = m->flat_grad->data;
  int64_t total = fl_numel(m->flat), prev_end = 0;
  for (int i = 0; i < 4; i++) {
    int64_t off = (const float *)p[i]->data - f0, goff = (const float *)p[i]->grad->data - g0;
    EXPECT(off >= prev_end && off + fl_numel(p[i]) <= total);
    EXPECT(goff == off);
    EXPECT(((uintptr_t)p[i]->data & 63) == 0);
    EXPECT(fl_same_shape(p[i], p[i]->grad) && p[i]->owned == NULL);
    prev_end = off + fl_numel(p[i]);
  }
  /* the grads start at zero; collate is idempotent */
  const float *g = m->flat_grad->data;
  int nz = 0;
  for (int64_t i = 0; i < total; i++) nz += g[i] != 0.0f;
  EXPECT(nz == 0);
  fl_tensor *flat = m->flat;
  EXPECT(fl_module_collate(m) == FL_OK && m->flat == flat);
  fl_module_free(m);
}

static void test_seed_hash(void) {
  fl_module *a = fl_get_model(7, 784, 50, 10), *b = fl_get_model(7, 784, 50, 10),
            *c = fl_get_model(8, 784, 50, 10);
  EXPECT(fl_module_hash(a) == fl_module_hash(b));
  EXPECT(!memcmp(a->flat->data, b->flat->data, (size_t)fl_numel(a->flat) * sizeof(float)));
  EXPECT(fl_module_hash(a) != fl_module_hash(c));
  /* one changed bit changes the hash */
  float *p = a->children[2]->params[1]->data;
  uint32_t u;
  memcpy(&u, p, 4);
  u ^= 1;
  memcpy(p, &u, 4);
  EXPECT(fl_module_hash(a) != fl_module_hash(b));
  fl_module_free(a);
  fl_module_free(b);
  fl_module_free(c);
}

/* ---------------------------------------------------------------- data + a step */

/* A separable toy problem: C Gaussian blobs in I dims (centres 3 apart), n points. */
typedef struct toy {
  fl_tensor *x, *y;
} toy;

static toy toy_new(uint64_t seed, int n, int I, int C) {
  fl_rng r = fl_rng_make(seed, FL_STREAM_USER);
  float *centres = malloc(sizeof(float) * (size_t)(C * I)), *x = malloc(sizeof(float) * (size_t)(n * I));
  int32_t *y = malloc(sizeof(int32_t) * (size_t)n);
  for (int i = 0; i < C * I; i++) centres[i] = 1.5f * fl_rng_normal(&r);
  for (int i = 0; i < n; i++) {
    y[i] = (int32_t)fl_rng_below(&r, (uint64_t)C);
    for (int j = 0; j < I; j++) x[i * I + j] = centres[y[i] * I + j] + 0.5f * fl_rng_normal(&r);
  }
  int64_t xs[2] = {n, I}, ys[1] = {n};
  toy t = {fl_tensor_from_data(FL_F32, FL_CPU, 2, xs, x), fl_tensor_from_data(FL_I32, FL_CPU, 1, ys, y)};
  free(centres);
  free(x);
  free(y);
  return t;
}

static void toy_free(toy t) {
  fl_tensor_free(t.x);
  fl_tensor_free(t.y);
}

static float forward_backward(fl_module *m, fl_graph *g, toy d) {
  fl_graph_reset(g);
  fl_tensor *loss = fl_cross_entropy(g, fl_module_forward(m, g, d.x), d.y);
  float l = fl_tensor_item(loss);
  EXPECT(fl_backward(g, loss) == FL_OK);
  return l;
}

/* SGD: p -= lr * g, exactly (the same float expression by hand); zero_grad sets grads to none. */
static void test_sgd_step(void) {
  fl_module *m = fl_get_model(3, 20, 8, 4);
  toy d = toy_new(1, 16, 20, 4);
  fl_graph *g = fl_graph_new();
  fl_optimizer *o = fl_sgd_new(m, 0.1f);
  EXPECT(o->n_groups == 1 && o->groups[0].n_params == 4 && o->groups[0].lr == 0.1f);
  forward_backward(m, g, d);
  size_t n = (size_t)fl_numel(m->flat);
  float *p0 = malloc(n * sizeof(float)), *gr = malloc(n * sizeof(float));
  memcpy(p0, m->flat->data, n * sizeof(float));
  memcpy(gr, m->flat_grad->data, n * sizeof(float));
  int nonzero = 0;
  for (size_t i = 0; i < n; i++) nonzero += gr[i] != 0.0f;
  EXPECT(nonzero > 100);
  EXPECT(fl_opt_step(o) == FL_OK);
  const float *p = m->flat->data;
  int bad = 0;
  for (size_t i = 0; i < n; i++) {
    float lr = 0.1f, want = p0[i] - lr * gr[i];
    bad += memcmp(&p[i], &want, sizeof want) != 0;
  }
  EXPECTF(bad == 0, "%d parameters differ from p - lr * g", bad);
  /* the group's lr is writable and used: lr * 2 moves twice as far */
  memcpy(m->flat->data, p0, n * sizeof(float));
  o->groups[0].lr *= 2.0f;
  EXPECT(fl_opt_step(o) == FL_OK);
  bad = 0;
  for (size_t i = 0; i < n; i++) {
    float lr2 = 0.2f, want = p0[i] - lr2 * gr[i];
    bad += memcmp(&p[i], &want, sizeof want) != 0;
  }
  EXPECTF(bad == 0, "%d parameters differ from p - 2 lr * g", bad);
  /* zero_grad sets every grad to none (PyTorch's set_to_none): the next backward writes the
   * gradient afresh, the same bits as the first backward of that batch; a step in between
   * changes nothing (no gradient, nothing to apply) */
  fl_opt_zero_grad(o);
  fl_tensor *ps[8];
  int np = fl_module_parameters(m, ps, 8);
  for (int i = 0; i < np; i++) EXPECT(ps[i]->grad_none == 1);
  memcpy(p0, p, n * sizeof(float));
  fl_opt_step(o);
  EXPECT(!memcmp(p0, p, n * sizeof(float)));
  float *ga = malloc(n * sizeof(float));
  forward_backward(m, g, d);
  for (int i = 0; i < np; i++) EXPECT(ps[i]->grad_none == 0);
  memcpy(ga, m->flat_grad->data, n * sizeof(float));
  fl_opt_zero_grad(o);
  forward_backward(m, g, d);
  EXPECT(!memcmp(ga, m->flat_grad->data, n * sizeof(float)));
  free(ga);
  free(p0);
  free(gr);
  fl_opt_free(o);
  fl_graph_free(g);
  toy_free(d);
  fl_module_free(m);
}

static void test_exp_lr(void) {
  fl_module *m = fl_get_model(3, 4, 3, 2);
  fl_optimizer *o = fl_sgd_new(m, 0.5f);
  fl_sched s = fl_exp_lr(o, 0.9f);
  float want = 0.5f;
  for (int i = 0; i < 5; i++) {
    fl_sched_step(&s);
    want *= 0.9f;
    EXPECT(o->groups[0].lr == want);
  }
  EXPECT(s.last_epoch == 5);
  fl_opt_free(o);
  fl_module_free(m);
}

/* The MomentumLearner trick: instead of zeroing, scale the grad buffer by 0.85 with the
 * backend's scale; the next backward accumulates on top: grad = 0.85 g1 + g2. */
static void test_momentum_scaling(void) {
  fl_module *m = fl_get_model(4, 20, 8, 4);
  toy d1 = toy_new(2, 16, 20, 4), d2 = toy_new(3, 16, 20, 4);
  fl_graph *g = fl_graph_new();
  fl_optimizer *o = fl_sgd_new(m, 0.1f);
  size_t n = (size_t)fl_numel(m->flat_grad);
  float *g1 = malloc(n * sizeof(float)), *g2 = malloc(n * sizeof(float));
  forward_backward(m, g, d1);
  memcpy(g1, m->flat_grad->data, n * sizeof(float));
  fl_opt_zero_grad(o);
  forward_backward(m, g, d2);
  memcpy(g2, m->flat_grad->data, n * sizeof(float));
  fl_opt_zero_grad(o);
  forward_backward(m, g, d1);
  fl_backend_for(m->device)->scale(m->flat_grad->data, 0.85f, n);
  forward_backward(m, g, d2);
  const float *gg = m->flat_grad->data;
  double worst = 0;
  for (size_t i = 0; i < n; i++) {
    double want = 0.85 * g1[i] + g2[i];
    double e = fabs(gg[i] - want) / fmax(1e-3, fabs(want));
    if (e > worst) worst = e;
  }
  EXPECTF(worst < 1e-5, "grad != 0.85 g1 + g2 (worst rel err %g)", worst);
  free(g1);
  free(g2);
  fl_opt_free(o);
  fl_graph_free(g);
  toy_free(d1);
  toy_free(d2);
  fl_module_free(m);
}

/* ---------------------------------------------------------------- training */

/* Full-batch SGD on a toy problem; returns the final loss and the model's hash. */
static float train(uint64_t seed, int steps, int n, int I, int H, int C, float lr, float *first,
                   uint64_t *hash, int *growths_stable) {
  fl_module *m = fl_get_model(seed, I, H, C);
  toy d = toy_new(seed + 100, n, I, C);
  fl_graph *g = fl_graph_new();
  fl_optimizer *o = fl_sgd_new(m, lr);
  float l = 0;
  int gr = -1;
  size_t cap = 0;
  if (growths_stable) *growths_stable = 1;
  for (int s = 0; s < steps; s++) {
    l = forward_backward(m, g, d);
    if (s == 0 && first) *first = l;
    fl_opt_step(o);
    fl_opt_zero_grad(o);
    if (s == 3) { gr = fl_graph_growths(g); cap = fl_graph_capacity(g); }
    if (s > 3 && growths_stable && (fl_graph_growths(g) != gr || fl_graph_capacity(g) != cap))
      *growths_stable = 0;
  }
  if (hash) *hash = fl_module_hash(m);
  fl_opt_free(o);
  fl_graph_free(g);
  toy_free(d);
  fl_module_free(m);
  return l;
}

static void test_training_reduces_loss(void) {
  float first = 0;
  float last = train(11, 200, 200, 10, 16, 4, 0.2f, &first, NULL, NULL);
  EXPECTF(last < 0.2f * first && last < 0.1f, "loss %g -> %g", first, last);
  if (getenv("FL_TEST_VERBOSE")) printf("  toy problem: loss %.4f -> %.4f in 200 steps\n", first, last);
}

/* The arena sizes itself in the first steps, then a step allocates nothing. */
static void test_arena_steady_state(void) {
  int stable = 0;
  train(12, 20, 64, 784, 50, 10, 0.1f, NULL, NULL, &stable);
  EXPECT(stable);
  fl_graph *g = fl_graph_new();
  EXPECT(fl_graph_growths(g) == 0 && fl_graph_capacity(g) == 0);
  fl_graph_free(g);
}

static void test_same_seed_same_bits(void) {
  uint64_t h1, h2, h3;
  train(21, 30, 64, 784, 50, 10, 0.1f, NULL, &h1, NULL);
  train(21, 30, 64, 784, 50, 10, 0.1f, NULL, &h2, NULL);
  train(22, 30, 64, 784, 50, 10, 0.1f, NULL, &h3, NULL);
  EXPECT(h1 == h2);
  EXPECT(h1 != h3);
}

/* 1 vs 2 threads. Each count runs in a fresh process (this binary re-executed with
 * --train-hash N): oneDNN primitives are created for the thread count of the moment, and the
 * GEMM cache keeps them, so switching counts inside one process would not test a real run.
 * oneDNN is documented (and was measured, ../shared/reference/cpu-gemm.md) to give the same
 * bits on 1 and 2 threads; the rest of the library is single-threaded. */
static const char *self_path;

static int hash_in_child(int threads, uint64_t *hash) {
  int fd[2];
  if (pipe(fd)) return 0;
  pid_t pid = fork();
  if (pid == 0) {
    char arg[16];
    snprintf(arg, sizeof arg, "%d", threads);
    dup2(fd[1], 1);
    close(fd[0]);
    execl(self_path, self_path, "--train-hash", arg, (char *)NULL);
    _exit(127);
  }
  close(fd[1]);
  char buf[64] = {0};
  ssize_t k = read(fd[0], buf, sizeof buf - 1);
  close(fd[0]);
  int st;
  waitpid(pid, &st, 0);
  return k > 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0 && sscanf(buf, "%lx", (unsigned long *)hash) == 1;
}

static void test_threads_same_bits(void) {
  if (!self_path) SKIP("no path to re-execute this binary");
  uint64_t h1 = 0, h2 = 0;
  EXPECT(hash_in_child(1, &h1));
  EXPECT(hash_in_child(2, &h2));
  printf("  1 thread %016lx, 2 threads %016lx: %s\n", (unsigned long)h1, (unsigned long)h2,
         h1 == h2 ? "bitwise identical" : "DIFFERENT");
  EXPECT(h1 == h2);
}

int main(int argc, char **argv) {
  if (argc == 3 && !strcmp(argv[1], "--train-hash")) {   /* child of test_threads_same_bits */
    fl_init(atoi(argv[2]));
    uint64_t h;
    train(31, 30, 256, 784, 50, 10, 0.1f, NULL, &h, NULL);
    printf("%016lx\n", (unsigned long)h);
    return omp_get_max_threads() == atoi(argv[2]) ? 0 : 1;
  }
  self_path = "/proc/self/exe";
  if (access(self_path, X_OK)) self_path = argv[0];
  RUN(test_linear_init);
  RUN(test_get_model_layout);
  RUN(test_seed_hash);
  RUN(test_sgd_step);
  RUN(test_exp_lr);
  RUN(test_momentum_scaling);
  RUN(test_training_reduces_loss);
  RUN(test_arena_steady_state);
  RUN(test_same_seed_same_bits);
  RUN(test_threads_same_bits);
  return test_summary();
}
