/* Hooks and ActivationStats (10_activations): the statistics of a tensor against hand values and
 * torch (mean, std, abs().histc(40, 0, 10)), the same bits at 1 and 2 threads; hooks called once
 * per forward per module in the phases asked for, removed after the fit, without changing the
 * trained weights; the three PNGs; the CLI's --stats on a tiny synthetic data set. */
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "flexlearn.h"
#include "fl/plot.h"
#include "learn_fixture.h"
#include "cli_run.h"
#include "test.h"

static char g_dir[64] = "/tmp/fl_test_hooks_XXXXXX";

static int is_png(const char *path) {
  unsigned char b[8] = {0};
  FILE *f = fopen(path, "rb");
  if (!f) return 0;
  size_t k = fread(b, 1, 8, f);
  fclose(f);
  return k == 8 && !memcmp(b, "\x89PNG\r\n\x1a\n", 8);
}

/* ---- the statistics of one tensor ---- */
static void test_compute_hand(void) {
  float v[10] = {-12.0f, -10.0f, -0.1f, 0.0f, 0.3f, 2.6f, 9.99f, 10.0f, 11.0f, 1.0f};
  int64_t shape[2] = {2, 5};
  fl_tensor *t = fl_tensor_from_data(FL_F32, FL_CPU, 2, shape, v);
  double mean, std;
  int64_t h[FL_ACT_BINS];
  EXPECT(fl_act_stats_compute(t, &mean, &std, h) == FL_OK);
  double s = 0, ss = 0;
  for (int i = 0; i < 10; i++) s += v[i];
  double m = s / 10;
  for (int i = 0; i < 10; i++) ss += (v[i] - m) * (v[i] - m);
  /* sums in f32 lanes (then f64): 1e-6 relative */
  EXPECT_NEAR(mean, m, 1e-6);
  EXPECT_NEAR(std, sqrt(ss / 9), 1e-6);
  /* |x|: 12 and 11 out of range; 0.1, 0 -> bin 0; 0.3 -> 1; 1 -> 4; 2.6 -> 10; 9.99 and 10 -> 39 */
  int64_t want[FL_ACT_BINS] = {0};
  want[0] = 2, want[1] = 1, want[4] = 1, want[10] = 1, want[39] = 3;   /* -10 too: |x| = 10 */
  for (int k = 0; k < FL_ACT_BINS; k++) EXPECTF(h[k] == want[k], "bin %d: %lld, want %lld", k, (long long)h[k], (long long)want[k]);
  /* a tensor on the GPU (never read): the clear "not on CUDA yet" */
  fl_tensor gpu = *t;
  gpu.device = FL_CUDA;
  EXPECT(fl_act_stats_compute(&gpu, &mean, &std, h) == FL_ERR_DEVICE && strstr(fl_last_error(), "not on CUDA yet"));
  fl_tensor_free(t);
}

static int have_torch(void) {
  return access("/usr/bin/python3", X_OK) == 0 && system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") == 0;
}

/* 200,003 values: normal * 3 plus every bin edge k/4 (and its negative) and 10 exactly; torch
 * computes mean, std and abs().histc(40, 0, 10) of the same f32 values. Tolerances: the hist
 * exact, mean and std 1e-5 relative (torch sums in f32, pairwise; we sum in f64). */
static void test_compute_vs_torch(void) {
  if (!have_torch()) SKIP("no PyTorch at /usr/bin/python3 (apt-get install python3-torch)");
  enum { N = 200003 };
  float *x = malloc(N * sizeof *x);
  fl_rng r = fl_rng_make(7, FL_STREAM_USER);
  fl_tensor *nt = fl_tensor_normal(&r, FL_CPU, 1, (int64_t[]){N}, 0.5f, 3.0f);
  fl_tensor_to_host(nt, x);
  fl_tensor_free(nt);
  for (int k = 0; k <= 40; k++) x[2 * k] = k * 0.25f, x[2 * k + 1] = -k * 0.25f;
  x[100] = 10.0f, x[101] = 10.000001f, x[102] = 1e-30f;
  char bin[128], cmd[512];
  snprintf(bin, sizeof bin, "%s/x.f32", g_dir);
  FILE *f = fopen(bin, "wb");
  fwrite(x, sizeof *x, N, f);
  fclose(f);
  snprintf(cmd, sizeof cmd,
           "/usr/bin/python3 -c \"import torch,numpy as np; x=torch.from_numpy(np.fromfile('%s',dtype=np.float32)); "
           "print(repr(x.double().mean().item()), repr(x.std().item())); print(' '.join(str(int(v)) for v in x.abs().histc(40,0,10)))\"",
           bin);
  FILE *p = popen(cmd, "r");
  double tm = NAN, ts = NAN;
  long long th[FL_ACT_BINS];
  int ok = p && fscanf(p, "%lf %lf", &tm, &ts) == 2;
  for (int k = 0; ok && k < FL_ACT_BINS; k++) ok = fscanf(p, "%lld", &th[k]) == 1;
  if (p) pclose(p);
  EXPECT(ok);
  fl_tensor *t = fl_tensor_from_data(FL_F32, FL_CPU, 1, (int64_t[]){N}, x);
  double mean, std;
  int64_t h[FL_ACT_BINS];
  EXPECT(fl_act_stats_compute(t, &mean, &std, h) == FL_OK);
  if (ok) {
    EXPECT_NEAR(mean, tm, 1e-5);
    EXPECT_NEAR(std, ts, 1e-5);
    for (int k = 0; k < FL_ACT_BINS; k++) EXPECTF(h[k] == th[k], "bin %d: %lld, torch %lld", k, (long long)h[k], th[k]);
  }
  /* the same bits at 1 and 2 threads */
  double m1, s1;
  int64_t h1[FL_ACT_BINS];
  fl_init(1);
  fl_act_stats_compute(t, &m1, &s1, h1);
  fl_init(2);
  EXPECT(!memcmp(&m1, &mean, sizeof m1) && !memcmp(&s1, &std, sizeof s1) && !memcmp(h1, h, sizeof h));
  fl_tensor_free(t);
  unlink(bin);
  free(x);
}

/* ---- hooks ---- */
typedef struct counts { int calls[3]; int bad_shape; fl_module *mods[3]; } counts;
static fl_status count_hook(void *ctx, int idx, fl_module *m, fl_tensor *in, fl_tensor *out) {
  counts *c = ctx;
  c->calls[idx]++;
  if (m != c->mods[idx] || in->shape[0] != out->shape[0] || out->ndim != 2) c->bad_shape++;
  return FL_OK;
}

typedef struct fx { fl_dataset *tr, *va; fl_dataloaders dls; fl_module *model; } fx;
static void fx_init(fx *f, uint64_t seed) {   /* 64 train (8 batches of 8), 32 valid (2 of 16) */
  f->tr = fx_dataset(64, 4, seed * 2 + 1);
  f->va = fx_dataset(32, 4, seed * 2 + 2);
  FL_CHECK(fl_get_dls(&f->dls, f->tr, f->va, 8, seed, 0, 1) == FL_OK, "fl_get_dls");
  f->model = fl_get_model(seed, 4, 8, 4);   /* Linear, ReLU, Linear */
}
static void fx_free(fx *f) {
  fl_module_free(f->model);
  fl_dataloaders_free(&f->dls);
  fl_dataset_free(f->tr), fl_dataset_free(f->va);
}

static void test_hooks_phases(void) {
  fx f;
  fx_init(&f, 3);
  fl_learner *l = fl_learner_new(f.model, &f.dls, fl_cross_entropy, 0.1f, NULL, 0, fl_sgd_new, &fl_train_ops);
  counts tr = {0}, va = {0};
  for (int i = 0; i < 3; i++) tr.mods[i] = va.mods[i] = f.model->children[i];
  fl_module *ms[3] = {f.model->children[0], f.model->children[1], f.model->children[2]};
  fl_callback *ht = fl_hooks_cb_new(ms, 3, count_hook, &tr, 1, 0);
  EXPECT(fl_fit(l, 2, 1, 1, &ht, 1, 0) == FL_OK);
  for (int i = 0; i < 3; i++) EXPECTF(tr.calls[i] == 16, "train-only hook %d: %d calls, want 2 x 8", i, tr.calls[i]);
  EXPECT(tr.bad_shape == 0);
  for (int i = 0; i < 3; i++) EXPECT(ms[i]->hook == NULL && ms[i]->hook_ctx == NULL);
  /* a fit without the callback: no calls */
  EXPECT(fl_fit(l, 1, 1, 1, NULL, 0, 0) == FL_OK);
  for (int i = 0; i < 3; i++) EXPECT(tr.calls[i] == 16);
  /* validation only */
  fl_callback *hv = fl_hooks_cb_new(ms, 3, count_hook, &va, 0, 1);
  EXPECT(fl_fit(l, 1, 1, 1, &hv, 1, 0) == FL_OK);
  for (int i = 0; i < 3; i++) EXPECTF(va.calls[i] == 2, "valid-only hook %d: %d calls, want 2", i, va.calls[i]);
  /* a module hooked twice: the fit fails with FL_ERR_ARG and leaves no hook behind */
  fl_callback *two[2] = {ht, hv};
  EXPECT(fl_fit(l, 1, 1, 1, two, 2, 0) == FL_ERR_ARG);
  EXPECT(strstr(fl_last_error(), "already has a forward hook") != NULL);
  for (int i = 0; i < 3; i++) EXPECT(ms[i]->hook == NULL);
  fl_callback_free(ht), fl_callback_free(hv);
  fl_learner_free(l);
  fx_free(&f);
}

static void test_modules_of_kind(void) {
  fl_module *m = fl_model_new("resnet", 1);
  fl_module *out[64];
  EXPECT(fl_modules_of_kind(m, (const char *[]){"ResBlock"}, 1, out, 64) == 6);
  EXPECT(fl_modules_of_kind(m, (const char *[]){"Conv2d", "Linear"}, 2, NULL, 0) == 6 * 2 + 5 + 1 + 1);
  EXPECT(fl_modules_of_kind(m, (const char *[]){"ResBlock"}, 1, out, 2) == 6 && out[0] == m->children[0] &&
         out[1] == m->children[1]);
  fl_module_free(m);
}

/* ActivationStats on the mlp: one row per training batch, the stats of the hooked outputs; the
 * trained weights the same as without it (hooks also turn off the Linear+ReLU fusion). */
static void test_activation_stats(void) {
  fx f, g;
  fx_init(&f, 4), fx_init(&g, 4);
  fl_learner *l = fl_learner_new(f.model, &f.dls, fl_cross_entropy, 0.1f, NULL, 0, fl_sgd_new, &fl_train_ops);
  fl_learner *l2 = fl_learner_new(g.model, &g.dls, fl_cross_entropy, 0.1f, NULL, 0, fl_sgd_new, &fl_train_ops);
  fl_module *ms[3] = {f.model->children[0], f.model->children[1], f.model->children[2]};
  fl_callback *st = fl_activation_stats_new(ms, 3);
  EXPECT(fl_fit(l, 2, 1, 1, &st, 1, 0) == FL_OK);
  EXPECT(fl_fit(l2, 2, 1, 1, NULL, 0, 0) == FL_OK);
  EXPECTF(fl_module_hash(f.model) == fl_module_hash(g.model), "weights differ with ActivationStats");
  EXPECT(fl_act_stats_layers(st) == 3);
  EXPECT(fl_act_stats_batches(st) == 16);
  for (int b = 0; b < 16 && fl_act_stats_batches(st) == 16; b++) {
    const int64_t *h = fl_act_stats_hist(st, 1) + b * FL_ACT_BINS;   /* ReLU: 8 x 8 values >= 0 */
    int64_t tot = 0;
    for (int k = 0; k < FL_ACT_BINS; k++) tot += h[k];
    EXPECT(tot <= 64 && tot > 0);
    EXPECT(fl_act_stats_means(st, 1)[b] >= 0 && isfinite(fl_act_stats_stds(st, 1)[b]));
    double d = fl_act_stats_dead(st, 1, b);
    EXPECT(d >= 0 && d <= 1 && d == (double)h[0] / (double)tot);
  }
  char pre[128], p[192];
  snprintf(pre, sizeof pre, "%s/act", g_dir);
  if (!fl_plot_available()) {
    EXPECT(fl_act_stats_png(st, pre) == FL_ERR_IO);
  } else {
    EXPECT(fl_act_stats_png(st, pre) == FL_OK);
    static const char *const names[3] = {"color_dim", "dead_chart", "plot_stats"};
    for (int k = 0; k < 3; k++) {
      snprintf(p, sizeof p, "%s_%s.png", pre, names[k]);
      EXPECTF(is_png(p), "%s is not a PNG", p);
      unlink(p);
    }
    snprintf(pre, sizeof pre, "%s/no/such/dir/act", g_dir);
    EXPECT(fl_act_stats_png(st, pre) == FL_ERR_IO && strstr(fl_last_error(), "no/such/dir") != NULL);
  }
  /* a second fit starts a new record */
  EXPECT(fl_fit(l, 1, 1, 0, &st, 1, 0) == FL_OK);
  EXPECT(fl_act_stats_batches(st) == 8);
  fl_callback_free(st);
  fl_learner_free(l), fl_learner_free(l2);
  fx_free(&f), fx_free(&g);
}

/* ---- the CLI ---- */
static void write_be32(FILE *f, uint32_t v) {
  unsigned char b[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16), (unsigned char)(v >> 8), (unsigned char)v};
  fwrite(b, 1, 4, f);
}
static void write_idx(const char *dir, const char *name, int ndim, const uint32_t *dims, const uint8_t *data) {
  char p[256];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  FILE *f = fopen(p, "wb");
  FL_CHECK(f, "cannot write %s", p);
  fputc(0, f), fputc(0, f), fputc(8, f), fputc(ndim, f);
  size_t n = 1;
  for (int i = 0; i < ndim; i++) write_be32(f, dims[i]), n *= dims[i];
  fwrite(data, 1, n, f);
  fclose(f);
}
/* test_cli.c's make_data: Fashion-MNIST-shaped, one bright block per class */
static void make_data(const char *dir, uint32_t n_train, uint32_t n_test) {
  mkdir(dir, 0700);
  fl_rng r = fl_rng_make(5, FL_STREAM_USER);
  for (int split = 0; split < 2; split++) {
    uint32_t n = split ? n_test : n_train, px = 28 * 28;
    uint8_t *x = malloc((size_t)n * px), *y = malloc(n);
    for (uint32_t i = 0; i < n; i++) {
      y[i] = (uint8_t)(i % 10);
      for (uint32_t k = 0; k < px; k++)
        x[(size_t)i * px + k] = (uint8_t)(k / 64 == y[i] ? 200 + fl_rng_below(&r, 56) : fl_rng_below(&r, 60));
    }
    uint32_t idims[3] = {n, 28, 28}, ldims[1] = {n};
    write_idx(dir, split ? "t10k-images-idx3-ubyte" : "train-images-idx3-ubyte", 3, idims, x);
    write_idx(dir, split ? "t10k-labels-idx1-ubyte" : "train-labels-idx1-ubyte", 1, ldims, y);
    free(x), free(y);
  }
}

static char g_out[1 << 15], g_err[1 << 14];
/* Runs the CLI (FLEXLEARN_CLI, default build/flexlearn) with args (NULL-terminated): stdout then
 * stderr into g_out; the exit code. */
static int run_cli(const char *const *args) {
  const char *cli = getenv("FLEXLEARN_CLI");
  if (!cli || !*cli) cli = "build/flexlearn";
  int rc = cli_finish(cli_spawn(cli, g_dir, NULL, args), cli, g_dir, 300, g_out, sizeof g_out, g_err, sizeof g_err);
  size_t k = strlen(g_out);
  snprintf(g_out + k, sizeof g_out - k, "%s", g_err);
  return rc;
}

static const char *hash_line(char *buf, size_t n) {
  const char *h = strstr(g_out, "weights fnv1a ");
  snprintf(buf, n, "%.30s", h ? h : "none");
  return buf;
}

static void test_cli_stats(void) {
  char data[128], pre[128], p[192], bad[128], h1[64], h2[64];
  snprintf(data, sizeof data, "%s/data", g_dir);
  snprintf(pre, sizeof pre, "%s/run", g_dir);
  snprintf(bad, sizeof bad, "%s/missing/run", g_dir);
  make_data(data, 256, 64);
  if (!fl_plot_available()) {
    EXPECT(run_cli((const char *[]){"fit", "--data", data, "--stats", pre, NULL}) == 2);
    EXPECT(strstr(g_out, "--stats") && strstr(g_out, "CAIRO=0"));
    return;
  }
  EXPECT(run_cli((const char *[]){"fit", "--data", data, "--stats", bad, NULL}) == 2);
  EXPECT(strstr(g_out, "flexlearn: --stats") && strstr(g_out, "not writable"));
  EXPECT(run_cli((const char *[]){"lr_find", "--data", data, "--stats", pre, NULL}) == 2);
  EXPECT(strstr(g_out, "fit only") != NULL);
  const char *base[] = {"fit", "--data", data, "--model", "cnn", "--bs", "64", "--lr", "0.1", "--device", "cpu",
                        "--no-progress", "--stats", pre, NULL};
  EXPECT(run_cli(base) == 0);
  EXPECTF(strstr(g_out, "activation stats of 5 layers over 4 batches") != NULL, "%s", g_out);
  hash_line(h1, sizeof h1);
  static const char *const names[3] = {"color_dim", "dead_chart", "plot_stats"};
  for (int k = 0; k < 3; k++) {
    snprintf(p, sizeof p, "%s_%s.png", pre, names[k]);
    EXPECTF(is_png(p), "%s is not a PNG", p);
    unlink(p);
  }
  base[12] = NULL;   /* the same run without --stats: the same weights */
  EXPECT(run_cli(base) == 0);
  EXPECTF(!strcmp(hash_line(h2, sizeof h2), h1) && strcmp(h1, "none"), "%s vs %s", h1, h2);
  static const char *const f[4] = {"train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                                   "t10k-labels-idx1-ubyte"};
  for (int i = 0; i < 4; i++) snprintf(p, sizeof p, "%s/%s", data, f[i]), unlink(p);
  rmdir(data);
}

/* ---- LSUV ---- */
/* 11_initializing's model with GeneralRelu(0.1, 0.4): Sequential(conv, act) x 4 on one batch of
 * inputs normalised-like N(0, 1); after fl_lsuv_init every act's output on that batch has mean
 * within 1e-3 of 0 and std within 1e-3 of 1 (checked again from outside with a HooksCallback-free
 * recomputation), and a plain ReLU (mean never 0) fails with FL_ERR_ARG naming its pair. */
static fl_status keep_stats(fl_module *m, fl_tensor *in, fl_tensor *out, void *ctx) {
  (void)m, (void)in;
  double *ms = ctx;
  int64_t h[FL_ACT_BINS];
  return fl_act_stats_compute(out, &ms[0], &ms[1], h);
}

static void test_lsuv(void) {
  fl_rng r = fl_rng_make(11, FL_STREAM_INIT);
  static const int nfs[5] = {1, 8, 16, 32, 64};
  fl_module *mods[4], *acts[4], *ins[4];
  for (int i = 0; i < 4; i++) {
    fl_module *ca[2] = {fl_conv2d_new(nfs[i], nfs[i + 1], i == 0 ? 5 : 3, 2, 1, &r), fl_general_relu_new(0.1f, 0.4f, INFINITY)};
    ins[i] = ca[0], acts[i] = ca[1];
    mods[i] = fl_sequential_new(2, ca);
  }
  fl_module *model = fl_sequential_new(4, mods);
  FL_CHECK(fl_module_collate(model) == FL_OK, "collate");
  fl_tensor *xb = fl_tensor_normal(&r, FL_CPU, 4, (int64_t[]){64, 1, 28, 28}, 0, 1);
  EXPECTF(fl_lsuv_init(model, xb, acts, ins, 4, 50) == FL_OK, "%s", fl_last_error());
  fl_graph *g = fl_graph_new();
  fl_graph_set_grad(g, 0);
  for (int i = 0; i < 4; i++) {
    double ms[2] = {NAN, NAN};
    EXPECT(acts[i]->hook == NULL);
    acts[i]->hook = keep_stats, acts[i]->hook_ctx = ms;
    fl_graph_reset(g);
    EXPECT(fl_module_forward(model, g, xb) != NULL);
    acts[i]->hook = NULL, acts[i]->hook_ctx = NULL;
    EXPECTF(fabs(ms[0]) <= 1e-3 && fabs(ms[1] - 1) <= 1e-3, "layer %d: mean %g std %g", i, ms[0], ms[1]);
  }
  fl_graph_free(g);
  fl_module_free(model);
  /* a plain ReLU: the mean stays > 0 */
  fl_module *cr[2] = {fl_conv2d_new(1, 8, 3, 2, 1, &r), fl_relu_new()};
  fl_module *act = cr[1], *in = cr[0];
  fl_module *m2 = fl_sequential_new(2, cr);
  EXPECT(fl_lsuv_init(m2, xb, &act, &in, 1, 20) == FL_ERR_ARG);
  EXPECT(strstr(fl_last_error(), "pair 0 (ReLU after Conv2d)") != NULL && act->hook == NULL);
  fl_module_free(m2);
  fl_tensor_free(xb);
}

int main(void) {
  fl_init(2);
  FL_CHECK(mkdtemp(g_dir), "mkdtemp");
  RUN(test_compute_hand);
  RUN(test_compute_vs_torch);
  RUN(test_hooks_phases);
  RUN(test_modules_of_kind);
  RUN(test_activation_stats);
  RUN(test_cli_stats);
  RUN(test_lsuv);
  rmdir(g_dir);
  return test_summary();
}
