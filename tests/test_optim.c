/* Optimisers and schedules against torch.optim (tools/optim_vs_torch.py, Debian's
 * /usr/bin/python3 with torch; those tests skip without it), and their own properties.
 *
 * Tolerances (float32 on both sides; torch's CPU kernels fuse some multiply-adds, ours round
 * each operation, so the bits differ by an ulp here and there):
 *  - Adam / AdamW / SGD steps: each parameter tensor within 1e-6 relative of torch's,
 *    max |a - b| / max |b| over the tensor (per element it would be meaningless for weights
 *    that pass near zero: torch's p + (-lr) * g is one fused multiply-add, ours two roundings,
 *    an ulp of the update apart); the largest error seen is printed.
 *  - schedules: our double values against torch's Python floats within 1e-12 relative (the
 *    same formulas in the same order; CosineAnnealingLR is torch's recursive form, ours the
 *    closed one), and the float written into the groups within 1e-6 relative (one rounding).
 * Without torch: the flat (one kernel) and per-parameter paths give the same bits; padding
 * stays zero; 1 and 2 threads and two runs give the same weights hash; past the end keeps the
 * last values with one line on stderr. */
#include <signal.h>
#include <stdarg.h>
#include <sys/wait.h>
#include <unistd.h>

#include "flexlearn.h"
#include "fl/plot.h"
#include "learn_fixture.h"
#include "test.h"

static int have_torch(void) {
  static int h = -1;
  if (h < 0)
    h = access("/usr/bin/python3", X_OK) == 0 && system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") == 0;
  return h;
}

/* One Python process for every case (importing torch takes seconds): tools/optim_vs_torch.py
 * serve, fed a command a line, answering "ok" or "error: ..." to each. */
static FILE *g_py_in, *g_py_out;
static pid_t g_py_pid;

static int torch_cmd(const char *fmt, ...) {
  if (!g_py_pid) {
    signal(SIGPIPE, SIG_IGN);   /* a Python that died: a failed write, not a killed test */
    int to[2], from[2];
    if (pipe(to) || pipe(from)) return -1;
    g_py_pid = fork();
    if (g_py_pid == 0) {
      dup2(to[0], 0), dup2(from[1], 1);
      close(to[0]), close(to[1]), close(from[0]), close(from[1]);
      execl("/usr/bin/python3", "python3", "tools/optim_vs_torch.py", "serve", (char *)NULL);
      _exit(127);
    }
    close(to[0]), close(from[1]);
    g_py_in = fdopen(to[1], "w");
    g_py_out = fdopen(from[0], "r");
  }
  va_list ap;
  va_start(ap, fmt);
  vfprintf(g_py_in, fmt, ap);
  va_end(ap);
  fputc('\n', g_py_in);
  fflush(g_py_in);
  char line[512] = "";
  if (!fgets(line, sizeof line, g_py_out)) return -1;
  if (strcmp(line, "ok\n")) return fprintf(stderr, "optim_vs_torch.py: %s", line), -1;
  return 0;
}

static void torch_close(void) {
  if (!g_py_pid) return;
  fclose(g_py_in), fclose(g_py_out);
  waitpid(g_py_pid, NULL, 0);
}
#define NEED_TORCH() do { if (!have_torch()) SKIP("no PyTorch at /usr/bin/python3 (apt-get install python3-torch)"); } while (0)

static char g_dir[] = "/tmp/fl_test_optim_XXXXXX";
static char *tmp(const char *name) {
  static char buf[4][128];
  static int k;
  k = (k + 1) % 4;
  snprintf(buf[k], sizeof buf[k], "%s/%s", g_dir, name);
  return buf[k];
}

/* ---- the test model: 4 parameters (7x12, 7, 3x7, 3), collated with padding ---- */
enum { NP = 4, NSTEPS = 6 };
static fl_module *test_model(void) { return fl_get_model(3, 12, 7, 3); }

static int params_of(fl_module *m, fl_tensor **p) { return fl_module_parameters(m, p, NP); }

/* step t's gradient for parameter i, element k (deterministic, both signs, ~|1e-2..1|) */
static float grad_at(int t, int i, int64_t k) {
  fl_rng r = fl_rng_make(1000 + (uint64_t)t * 16 + (uint64_t)i, FL_STREAM_USER);
  float v = 0;
  for (int64_t j = 0; j <= k; j++) v = fl_rng_uniform(&r) * 2 - 1;
  return v * (1 + t);
}

typedef struct grp {
  float lr, wd;
  double h[3];          /* adam: beta1 beta2 eps; sgd: mom dampening nesterov */
  int n, idx[NP];
} grp;

/* Builds the optimiser `name` over m with the groups gs (one group: the optimiser's own). */
static fl_optimizer *make_opt(const char *name, fl_module *m, int ng, const grp *gs) {
  fl_optimizer *o = !strcmp(name, "sgd") ? fl_sgd_new(m, gs[0].lr)
                    : !strcmp(name, "adam") ? fl_adam_new(m, gs[0].lr)
                    : !strcmp(name, "nb_sgd") ? fl_nb_sgd_new(m, gs[0].lr)
                    : !strcmp(name, "nb_momentum") ? fl_nb_momentum_new(m, gs[0].lr)
                    : !strcmp(name, "nb_rmsprop") ? fl_nb_rmsprop_new(m, gs[0].lr)
                    : !strcmp(name, "nb_adam") ? fl_nb_adam_new(m, gs[0].lr) : fl_adamw_new(m, gs[0].lr);
  fl_tensor *p[NP];
  params_of(m, p);
  fl_param_group proto = o->groups[0];
  free(o->groups[0].params);
  free(o->groups);
  o->groups = calloc((size_t)ng, sizeof *o->groups);
  o->n_groups = ng;
  for (int g = 0; g < ng; g++) {
    fl_param_group *G = &o->groups[g];
    *G = proto;
    G->params = calloc(NP, sizeof *G->params);
    G->n_params = gs[g].n;
    for (int i = 0; i < gs[g].n; i++) G->params[i] = p[gs[g].idx[i]];
    G->lr = gs[g].lr, G->wd = gs[g].wd;
    if (!strcmp(name, "nb_momentum")) G->mom = (float)gs[g].h[0];
    else if (!strcmp(name, "nb_rmsprop")) G->beta2 = gs[g].h[0], G->eps = gs[g].h[1];
    else if (!strncmp(name, "nb_", 3)) G->beta1 = gs[g].h[0], G->beta2 = gs[g].h[1], G->eps = gs[g].h[2];
    else if (o->has_betas) G->beta1 = gs[g].h[0], G->beta2 = gs[g].h[1], G->eps = gs[g].h[2];
    else G->mom = (float)gs[g].h[0], G->dampening = (float)gs[g].h[1], G->nesterov = (int)gs[g].h[2];
  }
  return o;
}

/* Runs NSTEPS steps; none[t] = the parameter without a gradient at step t (-1: none). */
static void run_steps(fl_optimizer *o, fl_module *m, const int *none) {
  fl_tensor *p[NP];
  params_of(m, p);
  for (int t = 0; t < NSTEPS; t++) {
    for (int i = 0; i < NP; i++) {
      float *g = p[i]->grad->data;
      for (int64_t k = 0; k < fl_numel(p[i]); k++) g[k] = grad_at(t, i, k);
      p[i]->grad_none = none && none[t] == i;
    }
    EXPECT(fl_opt_step(o) == FL_OK);
  }
  EXPECT(o->n_steps == NSTEPS);
}

static void write_params(FILE *f, fl_module *m) {
  fl_tensor *p[NP];
  params_of(m, p);
  for (int i = 0; i < NP; i++) fwrite(p[i]->data, sizeof(float), (size_t)fl_numel(p[i]), f);
}

/* The same case in torch; returns the largest max|a - b| / max|b| of a parameter tensor (inf
 * on failure). */
static double vs_torch(const char *name, int ng, const grp *gs, const int *none) {
  fl_module *m = test_model();
  fl_tensor *p[NP];
  params_of(m, p);
  FILE *f = fopen(tmp("init.bin"), "wb");
  write_params(f, m);
  fclose(f);
  f = fopen(tmp("grads.bin"), "wb");
  for (int t = 0; t < NSTEPS; t++)
    for (int i = 0; i < NP; i++)
      for (int64_t k = 0; k < fl_numel(p[i]); k++) {
        float v = grad_at(t, i, k);
        fwrite(&v, sizeof v, 1, f);
      }
  fclose(f);
  f = fopen(tmp("spec.txt"), "w");
  fprintf(f, "shapes 7x12 7 3x7 3\nsteps %d\n", NSTEPS);
  for (int g = 0; g < ng; g++) {
    /* %.17g of the floats: Python gets exactly the values flexlearn holds */
    fprintf(f, "group %.17g %.17g %.17g %.17g %.17g :", (double)gs[g].lr, (double)gs[g].wd, gs[g].h[0], gs[g].h[1],
            gs[g].h[2]);
    for (int i = 0; i < gs[g].n; i++) fprintf(f, " %d", gs[g].idx[i]);
    fputc('\n', f);
  }
  for (int t = 0; none && t < NSTEPS; t++)
    if (none[t] >= 0) fprintf(f, "none %d %d\n", t, none[t]);
  fclose(f);
  EXPECT(torch_cmd("steps %s %s %s %s %s", name, tmp("spec.txt"), tmp("init.bin"), tmp("grads.bin"), tmp("out.bin")) == 0);
  fl_optimizer *o = make_opt(name, m, ng, gs);
  run_steps(o, m, none);
  double worst = INFINITY;
  f = fopen(tmp("out.bin"), "rb");
  if (f) {
    worst = 0;
    for (int i = 0; i < NP; i++) {
      const float *a = p[i]->data;
      double d = 0, big = 0;
      for (int64_t k = 0; k < fl_numel(p[i]); k++) {
        float b;
        if (fread(&b, sizeof b, 1, f) != 1) b = NAN;
        double e = fabs((double)a[k] - b);
        d = e <= d ? d : e;   /* NaN too */
        big = fmax(big, fabs((double)b));
      }
      double e = d / big;
      if (!(e <= worst)) worst = e;
    }
    fclose(f);
  }
  fl_opt_free(o);
  fl_module_free(m);
  unlink(tmp("init.bin")), unlink(tmp("grads.bin")), unlink(tmp("spec.txt")), unlink(tmp("out.bin"));
  return worst;
}

static const grp ALL_ADAM = {2e-2f, 0.05f, {0.9, 0.999, 1e-8}, NP, {0, 1, 2, 3}};

static void test_adamw_vs_torch(void) {
  NEED_TORCH();
  double e = vs_torch("adamw", 1, &ALL_ADAM, NULL);   /* the flat path */
  printf("  AdamW, 1 group, %d steps: max rel err %.3g\n", NSTEPS, e);
  EXPECTF(e <= 1e-6, "AdamW differs from torch by %g relative", e);
  /* two groups with their own lr, wd, betas, eps, and a parameter without a gradient at the
   * last step: the per-parameter path */
  grp gs[2] = {{1e-2f, 0.1f, {0.85, 0.99, 1e-6}, 2, {0, 3}}, {3e-2f, 0.0f, {0.95, 0.999, 1e-8}, 2, {1, 2}}};
  int none[NSTEPS] = {-1, -1, -1, -1, -1, 2};
  e = vs_torch("adamw", 2, gs, none);
  printf("  AdamW, 2 groups, a missing grad: max rel err %.3g\n", e);
  EXPECTF(e <= 1e-6, "AdamW (groups) differs from torch by %g relative", e);
}

static void test_adam_vs_torch(void) {
  NEED_TORCH();
  double e = vs_torch("adam", 1, &ALL_ADAM, NULL);
  printf("  Adam (L2 wd 0.05), %d steps: max rel err %.3g\n", NSTEPS, e);
  EXPECTF(e <= 1e-6, "Adam differs from torch by %g relative", e);
  grp gs[2] = {{1e-2f, 0.1f, {0.85, 0.99, 1e-6}, 2, {0, 3}}, {3e-2f, 0.0f, {0.95, 0.999, 1e-8}, 2, {1, 2}}};
  e = vs_torch("adam", 2, gs, NULL);
  printf("  Adam, 2 groups: max rel err %.3g\n", e);
  EXPECTF(e <= 1e-6, "Adam (groups) differs from torch by %g relative", e);
}

static void test_sgd_vs_torch(void) {
  NEED_TORCH();
  struct { const char *what; grp g; } cases[] = {
      {"plain", {0.1f, 0.0f, {0, 0, 0}, NP, {0, 1, 2, 3}}},
      {"wd", {0.1f, 0.01f, {0, 0, 0}, NP, {0, 1, 2, 3}}},
      {"momentum 0.9 + wd", {0.05f, 0.01f, {0.9, 0, 0}, NP, {0, 1, 2, 3}}},
      {"momentum, dampening 0.1", {0.05f, 0.0f, {0.9, 0.1, 0}, NP, {0, 1, 2, 3}}},
      {"nesterov + wd", {0.05f, 0.01f, {0.85, 0, 1}, NP, {0, 1, 2, 3}}},
  };
  for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
    double e = vs_torch("sgd", 1, &cases[c].g, NULL);
    printf("  SGD %s: max rel err %.3g\n", cases[c].what, e);
    EXPECTF(e <= 1e-6, "SGD %s differs from torch by %g relative", cases[c].what, e);
  }
  grp gs[2] = {{0.05f, 0.01f, {0.9, 0, 1}, 2, {0, 3}}, {0.1f, 0.0f, {0, 0, 0}, 2, {1, 2}}};
  double e = vs_torch("sgd", 2, gs, NULL);
  printf("  SGD, 2 groups (nesterov; plain): max rel err %.3g\n", e);
  EXPECTF(e <= 1e-6, "SGD (groups) differs from torch by %g relative", e);
}

/* 12_accel_sgd's SGD (decoupled wd), Momentum, RMSProp and Adam (eps inside the sqrt) against
 * the notebook's classes run in PyTorch (tools/optim_vs_torch.py), NSTEPS steps, each parameter
 * tensor within 1e-6 relative; one group (the flat kernel) and two (per parameter). */
static void test_notebook_opts_vs_torch(void) {
  NEED_TORCH();
  const double m9 = (double)0.9f, m8 = (double)0.8f;   /* mom is a float in the groups */
  struct { const char *name, *what; grp g; } cases[] = {
      {"nb_sgd", "SGD", {0.1f, 0.0f, {0, 0, 0}, NP, {0, 1, 2, 3}}},
      {"nb_sgd", "SGD, wd 0.1", {0.1f, 0.1f, {0, 0, 0}, NP, {0, 1, 2, 3}}},
      {"nb_momentum", "Momentum 0.9", {0.05f, 0.0f, {m9, 0, 0}, NP, {0, 1, 2, 3}}},
      {"nb_momentum", "Momentum 0.8, wd 0.05", {0.05f, 0.05f, {m8, 0, 0}, NP, {0, 1, 2, 3}}},
      {"nb_rmsprop", "RMSProp", {3e-3f, 0.0f, {0.99, 1e-5, 0}, NP, {0, 1, 2, 3}}},
      {"nb_rmsprop", "RMSProp sqr_mom 0.9, eps 1e-3, wd 0.1", {3e-3f, 0.1f, {0.9, 1e-3, 0}, NP, {0, 1, 2, 3}}},
      {"nb_adam", "Adam", {6e-3f, 0.0f, {0.9, 0.99, 1e-5}, NP, {0, 1, 2, 3}}},
      /* a large eps: inside the sqrt it changes the step a lot, outside it would not match */
      {"nb_adam", "Adam eps 1e-2, wd 0.1", {6e-3f, 0.1f, {0.85, 0.95, 1e-2}, NP, {0, 1, 2, 3}}},
  };
  for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
    double e = vs_torch(cases[c].name, 1, &cases[c].g, NULL);
    printf("  notebook %s: max rel err %.3g\n", cases[c].what, e);
    EXPECTF(e <= 1e-6, "notebook %s differs from its formulas in torch by %g relative", cases[c].what, e);
  }
  const char *names[4] = {"nb_sgd", "nb_momentum", "nb_rmsprop", "nb_adam"};
  grp two[4][2] = {
      {{0.1f, 0.1f, {0, 0, 0}, 2, {0, 3}}, {0.05f, 0.0f, {0, 0, 0}, 2, {1, 2}}},
      {{0.05f, 0.05f, {m9, 0, 0}, 2, {0, 3}}, {0.1f, 0.0f, {m8, 0, 0}, 2, {1, 2}}},
      {{3e-3f, 0.1f, {0.99, 1e-5, 0}, 2, {0, 3}}, {1e-2f, 0.0f, {0.9, 1e-3, 0}, 2, {1, 2}}},
      {{6e-3f, 0.1f, {0.9, 0.99, 1e-5}, 2, {0, 3}}, {1e-2f, 0.0f, {0.8, 0.9, 1e-3}, 2, {1, 2}}},
  };
  for (int c = 0; c < 4; c++) {
    double e = vs_torch(names[c], 2, two[c], NULL);
    printf("  notebook %s, 2 groups: max rel err %.3g\n", names[c], e);
    EXPECTF(e <= 1e-6, "%s (groups) differs by %g relative", names[c], e);
  }
}

/* Without torch: one kernel over the flat buffers == one per parameter, bit for bit; the
 * padding of the weights and of both moments stays zero; buffers are named as agreed. */
static void test_flat_equals_per_param(void) {
  const char *names[3] = {"adamw", "adam", "sgd"};
  for (int n = 0; n < 3; n++) {
    fl_module *a = test_model(), *b = test_model();
    grp g = ALL_ADAM;
    if (n == 2) g.h[0] = 0.9, g.h[1] = 0, g.h[2] = 1;   /* nesterov momentum */
    fl_optimizer *oa = make_opt(names[n], a, 1, &g);
    /* b: the same hyperparameters in two groups, parameters in another order: per parameter */
    grp gb[2] = {g, g};
    gb[0].n = gb[1].n = 2;
    gb[0].idx[0] = 3, gb[0].idx[1] = 0, gb[1].idx[0] = 1, gb[1].idx[1] = 2;
    fl_optimizer *ob = make_opt(names[n], b, 2, gb);
    run_steps(oa, a, NULL);
    run_steps(ob, b, NULL);
    EXPECTF(fl_module_hash(a) == fl_module_hash(b), "%s: flat and per-parameter steps differ", names[n]);
    EXPECT(oa->n_bufs == ob->n_bufs && oa->n_bufs == (n == 2 ? 1 : 2));
    for (int k = 0; k < oa->n_bufs; k++) {
      EXPECT(!memcmp(oa->bufs[k]->data, ob->bufs[k]->data, (size_t)fl_numel(oa->bufs[k]) * 4));
      EXPECT(!strcmp(oa->buf_names[k], n == 2 ? "momentum_buffer" : k ? "exp_avg_sq" : "exp_avg"));
      EXPECT(fl_numel(oa->bufs[k]) == fl_numel(a->flat) && oa->bufs[k]->device == a->device);
    }
    /* padding: whatever lies in flat outside the parameters is zero in weights and state */
    fl_tensor *pa[NP];
    params_of(a, pa);
    int64_t N = fl_numel(a->flat);
    char *used = calloc((size_t)N, 1);
    for (int i = 0; i < NP; i++)
      memset(used + ((float *)pa[i]->data - (float *)a->flat->data), 1, (size_t)fl_numel(pa[i]));
    int bad = 0, holes = 0;
    for (int64_t k = 0; k < N; k++) {
      if (used[k]) continue;
      holes++;
      bad |= ((float *)a->flat->data)[k] != 0;
      for (int j = 0; j < oa->n_bufs; j++) bad |= ((float *)oa->bufs[j]->data)[k] != 0;
    }
    EXPECTF(!bad, "%s: padding is not zero", names[n]);
    EXPECTF(holes > 0, "the test model has no padding to check (%lld elements)", (long long)N);
    free(used);
    fl_opt_free(oa), fl_opt_free(ob);
    fl_module_free(a), fl_module_free(b);
  }
}

/* torch's defaults; AdamW's decoupled decay alone (zero gradients: exp_avg stays 0, so the
 * weights only decay): p * (1 - lr * wd) per step, exactly. */
static void test_defaults_and_decay(void) {
  fl_module *m = test_model();
  fl_optimizer *o = fl_adamw_new(m, 1e-2f);
  EXPECT(!strcmp(o->name, "AdamW") && o->has_betas && o->n_groups == 1);
  EXPECT(o->groups[0].beta1 == 0.9 && o->groups[0].beta2 == 0.999 && o->groups[0].eps == 1e-8);
  EXPECT(o->groups[0].wd == 0.01f);
  fl_optimizer *a = fl_adam_new(m, 1e-2f);
  EXPECT(!strcmp(a->name, "Adam") && a->groups[0].wd == 0.0f);
  fl_opt_free(a);
  fl_optimizer *s = fl_sgd_new(m, 0.1f);
  EXPECT(!s->has_betas && s->n_bufs == 0 && s->groups[0].mom == 0);
  fl_opt_free(s);
  fl_tensor *p[NP];
  params_of(m, p);
  float w0 = ((float *)p[0]->data)[5];
  fl_tensor_zero(m->flat_grad);
  for (int i = 0; i < NP; i++) p[i]->grad_none = 0;
  float want = w0;
  for (int t = 0; t < 3; t++) {
    EXPECT(fl_opt_step(o) == FL_OK);
    want *= (float)(1.0 - (double)1e-2f * (double)0.01f);
  }
  EXPECTF(((float *)p[0]->data)[5] == want, "decay only: %.9g, want %.9g", ((float *)p[0]->data)[5], want);
  fl_opt_free(o);
  fl_module_free(m);
}

/* Plain SGD (mom 0) still runs the old kernel: the same bits as p -= lr * g by hand. */
static void test_sgd_plain_unchanged(void) {
  fl_module *m = test_model();
  fl_optimizer *o = fl_sgd_new(m, 0.1f);
  int64_t N = fl_numel(m->flat);
  float *w = malloc((size_t)N * 4);
  float *g = m->flat_grad->data;
  fl_tensor *p[NP];
  params_of(m, p);
  for (int64_t k = 0; k < N; k++) g[k] = (float)((k % 17) - 8) / 7.0f;
  for (int i = 0; i < NP; i++) p[i]->grad_none = 0;
  memcpy(w, m->flat->data, (size_t)N * 4);
  for (int64_t k = 0; k < N; k++) w[k] -= 0.1f * g[k];
  EXPECT(fl_opt_step(o) == FL_OK);
  EXPECT(!memcmp(w, m->flat->data, (size_t)N * 4) && o->n_bufs == 0 && o->n_steps == 1);
  free(w);
  fl_opt_free(o);
  fl_module_free(m);
}

/* ---- schedules ---- */
/* Reads "lr mom" lines from the torch script into lr[], mom[] (n of them); returns the count. */
static int torch_schedule(const char *args, double *lr, double *mom, int n) {
  EXPECT(torch_cmd("%s %s", args, tmp("sched.txt")) == 0);
  FILE *p = fopen(tmp("sched.txt"), "r");
  int k = 0;
  while (p && k < n && fscanf(p, "%lf %lf", &lr[k], &mom[k]) == 2) k++;
  if (p) fclose(p);
  unlink(tmp("sched.txt"));
  return k;
}

static int count_lines_(const char *s) {
  int n = 0;
  for (; *s; s++) n += *s == '\n';
  return n;
}

static double rel(double a, double b) { return a == b ? 0 : fabs(a - b) / fabs(b); }

static void test_onecycle_vs_torch(void) {
  NEED_TORCH();
  enum { T = 5 * 59 };
  static double lr[T], mom[T];
  const char *opts[2] = {"adamw", "sgd"};
  for (int c = 0; c < 2; c++) {
    char args[128];
    snprintf(args, sizeof args, "onecycle 0.06 %d %s", T, opts[c]);
    int n = torch_schedule(args, lr, mom, T);
    EXPECTF(n == T, "torch gave %d values", n);
    fl_schedule s = fl_onecycle(0.06, T);
    fl_module *m = test_model();
    fl_optimizer *o = c ? fl_sgd_new(m, 0.06f) : fl_adamw_new(m, 0.06f);
    double e_lr = 0, e_mom = 0, e_glr = 0, e_gmom = 0;
    for (int i = 0; i < n; i++) {
      double l, mo;
      EXPECT(fl_schedule_at(&s, i, &l, &mo) == 0);
      e_lr = fmax(e_lr, rel(l, lr[i])), e_mom = fmax(e_mom, rel(mo, mom[i]));
      EXPECT(fl_schedule_apply(&s, o, i) == 0);
      e_glr = fmax(e_glr, rel(o->groups[0].lr, lr[i]));
      e_gmom = fmax(e_gmom, rel(c ? o->groups[0].mom : o->groups[0].beta1, mom[i]));
    }
    printf("  OneCycleLR(0.06, %d) with %s: lr rel err %.3g, %s %.3g; in the groups (float) %.3g, %.3g\n", T,
           opts[c], e_lr, c ? "momentum" : "beta1", e_mom, e_glr, e_gmom);
    EXPECTF(e_lr <= 1e-12 && e_mom <= 1e-12, "schedule differs from torch: %g %g", e_lr, e_mom);
    EXPECTF(e_glr <= 1e-6 && e_gmom <= 1e-6, "group values differ from torch: %g %g", e_glr, e_gmom);
    /* the shape: starts at max_lr/25 and beta1 0.95, peaks at step 0.3*T-1, ends at min */
    EXPECT(fabs(lr[0] - 0.06 / 25) < 1e-15 && mom[0] == 0.95);
    fl_opt_free(o);
    fl_module_free(m);
  }
}

static void test_cosine_vs_torch(void) {
  NEED_TORCH();
  enum { T = 3 * 59 };
  static double lr[T], mom[T];
  int n = torch_schedule("cosine 0.02 177 0.0", lr, mom, T);
  EXPECT(n == T);
  fl_schedule s = fl_cosine(0.02, T, 0.0);
  double e = 0;
  for (int i = 0; i < n; i++) {
    double l, mo;
    EXPECT(fl_schedule_at(&s, i, &l, &mo) == 0 && isnan(mo));
    e = fmax(e, rel(l, lr[i]));
  }
  printf("  CosineAnnealingLR(T_max %d): lr rel err %.3g (torch's recursive form)\n", T, e);
  EXPECTF(e <= 1e-6, "cosine differs from torch by %g", e);
}

/* ExponentialLR, StepLR and LinearLR (the warm-up) over a whole schedule: our closed forms
 * against torch's chained (recursive) ones within 1e-6 relative, in double and in the groups'
 * floats; no momentum. */
static void test_exp_step_warmup_vs_torch(void) {
  NEED_TORCH();
  enum { T = 4 * 59 };
  static double lr[T], mom[T];
  double gamma = pow(0.01, 1.0 / (T - 1));   /* the CLI's: lr falls 100x over the fit */
  struct { char args[160]; fl_schedule s; } cases[4];
  snprintf(cases[0].args, 160, "exp 0.05 %.17g %d", gamma, T);
  cases[0].s = fl_exponential(0.05, gamma, T);
  snprintf(cases[1].args, 160, "step 0.05 59 0.5 %d", T);
  cases[1].s = fl_step_schedule(0.05, 59, 0.5, T);
  snprintf(cases[2].args, 160, "warmup 0.05 0.01 23 %d", T);
  cases[2].s = fl_linear_warmup(0.05, 0.01, 23, T);
  snprintf(cases[3].args, 160, "warmup 0.3 0.3333333333333333 %d %d", T, T);   /* torch's defaults, all warm-up */
  cases[3].s = fl_linear_warmup(0.3, 1.0 / 3, T, T);
  fl_module *m = test_model();
  fl_optimizer *o = fl_sgd_new(m, 0.05f);
  for (int c = 0; c < 4; c++) {
    int n = torch_schedule(cases[c].args, lr, mom, T);
    EXPECTF(n == T, "torch gave %d values for %s", n, cases[c].args);
    double e = 0, eg = 0;
    o->groups[0].mom = 0.25f;
    for (int i = 0; i < n; i++) {
      double l, mo;
      EXPECT(fl_schedule_at(&cases[c].s, i, &l, &mo) == 0 && isnan(mo));
      e = fmax(e, rel(l, lr[i]));
      EXPECT(fl_schedule_apply(&cases[c].s, o, i) == 0);
      eg = fmax(eg, rel(o->groups[0].lr, lr[i]));
    }
    EXPECT(o->groups[0].mom == 0.25f);   /* not touched */
    printf("  %s: lr rel err %.3g, in the group (float) %.3g\n", cases[c].args, e, eg);
    EXPECTF(e <= 1e-6 && eg <= 1e-6, "%s differs from torch by %g (group %g)", cases[c].args, e, eg);
    double l, mo, l2;
    fl_schedule_at(&cases[c].s, T - 1, &l, &mo);
    EXPECT(fl_schedule_at(&cases[c].s, T + 5, &l2, &mo) == 1 && l2 == l);   /* past the end: the last value */
  }
  /* the shapes: exp ends 100x down, step halves each 59, warm-up reaches the base lr at 23 */
  double l, mo;
  fl_schedule_at(&cases[0].s, T - 1, &l, &mo);
  EXPECTF(fabs(l - 0.05 / 100) <= 1e-12, "exp ends at %g", l);
  fl_schedule_at(&cases[1].s, 118, &l, &mo);
  EXPECT(l == 0.05 * 0.25);
  fl_schedule_at(&cases[2].s, 0, &l, &mo);
  EXPECT(fabs(l - 0.05 * 0.01) <= 1e-15);
  fl_schedule_at(&cases[2].s, 23, &l, &mo);
  EXPECT(l == 0.05);
  fl_opt_free(o);
  fl_module_free(m);
}

/* Past the end: the last values, flagged; a pure function (the same answer twice). */
static void test_schedule_past_end(void) {
  fl_schedule s = fl_onecycle(0.1, 10);
  double a, am, b, bm, c, cm;
  EXPECT(fl_schedule_at(&s, 9, &a, &am) == 0);
  EXPECT(fl_schedule_at(&s, 10, &b, &bm) == 1 && b == a && bm == am);
  EXPECT(fl_schedule_at(&s, 1000, &c, &cm) == 1 && c == a && cm == am);
  EXPECT(fl_schedule_at(&s, 9, &b, &bm) == 0 && b == a);
  EXPECT(fabs(a - 0.1 / 25 / 1e4) < 1e-12 * a && am == 0.95);   /* min lr, max momentum */
  fl_schedule_at(&s, 2, &a, &am);                             /* the peak: 0.3 * 10 - 1 */
  EXPECT(a == 0.1 && am == 0.85);
}

/* ---- through the Learner ---- */
typedef struct rec_lr { fl_callback cb; double lr[64]; double b1[64]; int n; } rec_lr;
static fl_status rec_step(fl_callback *cb, fl_learner *l) {   /* what each step uses */
  rec_lr *r = (rec_lr *)cb;
  if (r->n < 64) r->lr[r->n] = l->opt->groups[0].lr, r->b1[r->n++] = l->opt->groups[0].beta1;
  return FL_OK;
}

/* fit(epochs) of a small model on the fixture data with AdamW + BatchSchedCB(OneCycle): the
 * weights hash, and the lr / beta1 each step used. */
static uint64_t fit_onecycle(int threads, int epochs, int total, rec_lr *rec, char *err, size_t errn) {
  fl_init(threads);
  fl_dataset *tr = fx_dataset(96, 4, 1), *va = fx_dataset(32, 4, 2);
  fl_dataloaders dls;
  EXPECT(fl_get_dls(&dls, tr, va, 16, 5, 0, 1) == FL_OK);
  fl_module *m = fl_get_model(9, 4, 8, 4);
  fl_schedule s = fl_onecycle(0.05, total);
  fl_callback *cbs[2] = {fl_train_cb_new(1), fl_batch_sched_cb_new(&s)};
  rec->cb = (fl_callback){.name = "rec", .order = 5};
  rec->cb.on[FL_STEP] = rec_step;   /* runs after TrainCB's step: fine, it reads the groups */
  rec->n = 0;
  fl_learner *l = fl_learner_new(m, &dls, fl_cross_entropy, 0.05f, cbs, 2, fl_adamw_new, NULL);
  /* stderr to a file for the past-the-end line */
  fflush(stderr);
  int saved = dup(2);
  FILE *ef = fopen(tmp("stderr.txt"), "w+");
  dup2(fileno(ef), 2);
  EXPECT(fl_fit(l, epochs, 1, 1, (fl_callback *[]){&rec->cb}, 1, 0) == FL_OK);
  fflush(stderr);
  dup2(saved, 2);
  close(saved);
  rewind(ef);
  size_t k = fread(err, 1, errn - 1, ef);
  err[k] = 0;
  fclose(ef);
  unlink(tmp("stderr.txt"));
  EXPECT(l->opt->n_steps == epochs * 6);
  uint64_t h = fl_module_hash(m);
  fl_learner_free(l);
  fl_module_free(m);
  fl_dataloaders_free(&dls);
  fl_dataset_free(tr), fl_dataset_free(va);
  return h;
}

static void test_learner_onecycle(void) {
  static rec_lr r1, r2, r3;
  char e1[512], e2[512], e3[512];
  uint64_t h1 = fit_onecycle(1, 2, 12, &r1, e1, sizeof e1);
  uint64_t h2 = fit_onecycle(2, 2, 12, &r2, e2, sizeof e2);
  uint64_t h3 = fit_onecycle(2, 2, 12, &r3, e3, sizeof e3);
  EXPECTF(h1 == h2 && h2 == h3, "hashes %016llx %016llx %016llx", (unsigned long long)h1, (unsigned long long)h2,
          (unsigned long long)h3);
  EXPECT(e1[0] == 0 && e2[0] == 0);
  /* step k used the schedule's value k (training batches only: 12 steps, 2 x 6) */
  fl_schedule s = fl_onecycle(0.05, 12);
  EXPECT(r1.n == 12);
  for (int i = 0; i < r1.n; i++) {
    double lr, mom;
    fl_schedule_at(&s, i, &lr, &mom);
    EXPECTF(r1.lr[i] == (float)lr && r1.b1[i] == mom, "step %d: lr %g beta1 %g, want %g %g", i, r1.lr[i], r1.b1[i],
            lr, mom);
  }
  /* a schedule shorter than the fit: the last values are kept, one line on stderr */
  static rec_lr r4;
  char e4[512];
  fit_onecycle(2, 2, 8, &r4, e4, sizeof e4);
  EXPECTF(count_lines_(e4) == 1 && strstr(e4, "BatchSchedCB") && strstr(e4, "past the end") && strstr(e4, "step 8"),
          "stderr: %s", e4);
  EXPECT(r4.n == 12 && r4.lr[11] == r4.lr[7] && r4.b1[11] == r4.b1[7] && r4.lr[7] != r4.lr[6]);
  fl_init(2);
}

/* RecorderCB with SGD (mom cycled) under BatchSchedCB(OneCycle), 2 epochs of 6 batches: 12
 * records (training batches only), each batch's lr and momentum the schedule's value for that
 * step (as floats in the group), losses finite and positive; a second fit starts afresh;
 * the plot writes one PNG per asked-for value. */
static void test_recorder_cb(void) {
  fl_dataset *tr = fx_dataset(96, 4, 1), *va = fx_dataset(32, 4, 2);
  fl_dataloaders dls;
  EXPECT(fl_get_dls(&dls, tr, va, 16, 5, 0, 1) == FL_OK);
  fl_module *m = fl_get_model(9, 4, 8, 4);
  fl_schedule s = fl_onecycle(0.05, 12);
  fl_callback *rec = fl_recorder_cb_new(1 << FL_REC_LR | 1 << FL_REC_MOM | 1 << FL_REC_LOSS);
  fl_callback *cbs[3] = {fl_train_cb_new(1), fl_batch_sched_cb_new(&s), rec};
  fl_learner *l = fl_learner_new(m, &dls, fl_cross_entropy, 0.05f, cbs, 3, fl_sgd_new, NULL);
  EXPECT(fl_fit(l, 2, 1, 1, NULL, 0, 0) == FL_OK);
  const double *lr, *mom, *loss;
  EXPECT(fl_recorder_values(rec, FL_REC_LR, &lr) == 12);
  EXPECT(fl_recorder_values(rec, FL_REC_MOM, &mom) == 12 && fl_recorder_values(rec, FL_REC_LOSS, &loss) == 12);
  for (int i = 0; i < 12; i++) {
    double want_lr, want_mom;
    fl_schedule_at(&s, i, &want_lr, &want_mom);
    EXPECTF(lr[i] == (double)(float)want_lr && mom[i] == (double)(float)want_mom && isfinite(loss[i]) && loss[i] > 0,
            "batch %d: lr %g mom %g loss %g, want %g %g", i, lr[i], mom[i], loss[i], want_lr, want_mom);
  }
  EXPECT(fl_fit(l, 1, 1, 1, NULL, 0, 0) == FL_OK);   /* a new fit: a new history */
  EXPECT(fl_recorder_values(rec, FL_REC_LR, &lr) == 6);
  if (fl_plot_available()) {
    EXPECT(fl_recorder_plot(rec, tmp("rec.png")) == FL_OK);
    const char *names[3] = {"rec-lr.png", "rec-mom.png", "rec-loss.png"};
    for (int k = 0; k < 3; k++) {
      FILE *f = fopen(tmp(names[k]), "rb");
      unsigned char sig[8] = {0};
      EXPECTF(f && fread(sig, 1, 8, f) == 8 && !memcmp(sig, "\x89PNG\r\n\x1a\n", 8), "%s is not a PNG", names[k]);
      if (f) fclose(f);
      unlink(tmp(names[k]));
    }
    EXPECT(access(tmp("rec.png"), F_OK) != 0);   /* three values: three suffixed files, not rec.png */
  }
  fl_learner_free(l);
  fl_module_free(m);
  fl_dataloaders_free(&dls);
  fl_dataset_free(tr), fl_dataset_free(va);
}

/* EpochSchedCB(CosineAnnealingLR(T_max 3)) over 3 epochs of 6 batches: every step of epoch e
 * uses the schedule's value e; SGD (no betas, and cosine cycles no momentum) keeps mom 0. */
static void test_epoch_sched_cb(void) {
  static rec_lr r;
  fl_dataset *tr = fx_dataset(96, 4, 1), *va = fx_dataset(32, 4, 2);
  fl_dataloaders dls;
  EXPECT(fl_get_dls(&dls, tr, va, 16, 5, 0, 1) == FL_OK);
  fl_module *m = fl_get_model(9, 4, 8, 4);
  fl_schedule s = fl_cosine(0.1, 3, 0.0);
  fl_callback *cbs[2] = {fl_train_cb_new(1), fl_epoch_sched_cb_new(&s)};
  r.cb = (fl_callback){.name = "rec", .order = 5};
  r.cb.on[FL_STEP] = rec_step;
  r.n = 0;
  fl_learner *l = fl_learner_new(m, &dls, fl_cross_entropy, 0.1f, cbs, 2, fl_sgd_new, NULL);
  EXPECT(fl_fit(l, 3, 1, 1, (fl_callback *[]){&r.cb}, 1, 0) == FL_OK);
  EXPECT(r.n == 18 && l->opt->groups[0].mom == 0 && l->opt->n_bufs == 0);
  for (int i = 0; i < r.n; i++) {
    double lr, mom;
    fl_schedule_at(&s, i / 6, &lr, &mom);
    EXPECTF(r.lr[i] == (float)lr, "step %d: lr %g, want %g", i, r.lr[i], lr);
  }
  EXPECT(r.lr[0] == 0.1f && r.lr[6] == (float)(0.1 * (1 + cos(M_PI / 3)) / 2));
  fl_learner_free(l);
  fl_module_free(m);
  fl_dataloaders_free(&dls);
  fl_dataset_free(tr), fl_dataset_free(va);
}

int main(void) {
  fl_init(2);
  if (!mkdtemp(g_dir)) return perror("mkdtemp"), 2;
  RUN(test_adamw_vs_torch);
  RUN(test_adam_vs_torch);
  RUN(test_sgd_vs_torch);
  RUN(test_notebook_opts_vs_torch);
  RUN(test_flat_equals_per_param);
  RUN(test_defaults_and_decay);
  RUN(test_sgd_plain_unchanged);
  RUN(test_onecycle_vs_torch);
  RUN(test_cosine_vs_torch);
  RUN(test_exp_step_warmup_vs_torch);
  RUN(test_schedule_past_end);
  RUN(test_learner_onecycle);
  RUN(test_epoch_sched_cb);
  RUN(test_recorder_cb);
  torch_close();
  rmdir(g_dir);
  return test_summary();
}
