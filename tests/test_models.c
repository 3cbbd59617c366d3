/* The conv modules and the named models cnn and resnet: parameter counts (the notebook's
 * 1,228,908), buffers (collated apart from the parameters, hashed, saved), init statistics,
 * determinism, PyTorch's state_dict names (its load_state_dict(strict=True) takes our file), and
 * one training step against PyTorch in float64 (skips without Debian's python3-torch). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "flexlearn.h"
#include "test.h"

static char dir[] = "/tmp/fl_models_XXXXXX";

#ifndef FL_NO_CJSON
static char *tmp_path(const char *name) {
  static char buf[4][256];
  static int k;
  char *p = buf[k++ % 4];
  snprintf(p, 256, "%s/%s", dir, name);
  return p;
}

static int have_torch(void) {
  return access("/usr/bin/python3", X_OK) == 0 &&
         system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") == 0;
}
#endif

static void test_param_counts(void) {
  fl_module *r = fl_model_new("resnet", 1), *c = fl_model_new("cnn", 1), *p = fl_model_new("mlp", 1);
  EXPECTF(fl_module_numel(r) == 1228908, "resnet has %lld params (the notebook: 1,228,908)",
          (long long)fl_module_numel(r));
  /* 1*8*25+8 + 8*16*9+16 + 16*32*9+32 + 32*64*9+64 + 64*10*9+10 */
  EXPECTF(fl_module_numel(c) == 30282, "cnn has %lld params", (long long)fl_module_numel(c));
  EXPECT(fl_module_numel(p) == 39760);
  /* cnn_bn: 4 x (conv w, b + bn w, b) + conv w, b: 1*8*9+8+16 + 8*16*9+16+32 + 16*32*9+32+64 +
   * 32*64*9+64+128 + 64*10*9+10; 4 BatchNorm2d, two buffers each */
  fl_module *cb = fl_model_new("cnn_bn", 1);
  EXPECTF(fl_module_numel(cb) == 30394, "cnn_bn has %lld params", (long long)fl_module_numel(cb));
  EXPECT(fl_module_buffers(cb, NULL, 0) == 8 && fl_model_is_conv("cnn_bn"));
  fl_module_free(cb);
  /* resnet_wide: the notebook's 4,907,588 (its get_model2 has the same blocks) */
  fl_module *w = fl_model_new("resnet_wide", 1);
  EXPECTF(fl_module_numel(w) == 4907588, "resnet_wide has %lld params", (long long)fl_module_numel(w));
  EXPECT(fl_model_is_conv("resnet_wide") && fl_model_has_dropout("resnet_wide") && !fl_model_has_dropout("cnn"));
  fl_module_free(w);
  /* 12 BatchNorm2d + 1 BatchNorm1d, two buffers each; none in cnn or mlp */
  EXPECT(fl_module_buffers(r, NULL, 0) == 26);
  EXPECT(fl_module_buffers(c, NULL, 0) == 0 && c->flat_buf == NULL);
  EXPECT(fl_module_buffers(p, NULL, 0) == 0 && p->flat_buf == NULL);
  /* parameters: 6 blocks x (conv w,b + bn w,b) x 2 + 6 idconv (w, b) + linear w + bn1d w, b */
  EXPECT(fl_module_parameters(r, NULL, 0) == 6 * 8 + 6 * 2 + 3);
  EXPECT(fl_model_new("resnet18", 1) == NULL && strstr(fl_last_error(), "mlp, cnn, cnn_bn, resnet, resnet_wide"));
  EXPECT(fl_model_is_conv("cnn") && fl_model_is_conv("resnet") && !fl_model_is_conv("mlp"));
  fl_module_free(r), fl_module_free(c), fl_module_free(p);
}

/* Buffers: their own flat tensor, 0 (mean) and 1 (var) at first, no grads, not parameters, in
 * the hash. */
static void test_buffers(void) {
  fl_module *r = fl_model_new("resnet", 3);
  int nb = fl_module_buffers(r, NULL, 0), np = fl_module_parameters(r, NULL, 0);
  fl_tensor **b = malloc((size_t)nb * sizeof *b), **p = malloc((size_t)np * sizeof *p);
  fl_module_buffers(r, b, nb);
  fl_module_parameters(r, p, np);
  int ok = r->flat_buf != NULL, in_flat = 1, zero_one = 1, no_grad = 1, disjoint = 1;
  const float *fb = r->flat_buf->data;
  int64_t fbn = fl_numel(r->flat_buf);
  for (int i = 0; i < nb; i++) {
    const float *d = b[i]->data;
    in_flat &= d >= fb && d + fl_numel(b[i]) <= fb + fbn;
    for (int64_t k = 0; k < fl_numel(b[i]); k++) zero_one &= d[k] == (i % 2 ? 1.0f : 0.0f);
    no_grad &= b[i]->grad == NULL && !b[i]->requires_grad;
    for (int j = 0; j < np; j++) disjoint &= p[j] != b[i];
    EXPECT(!strcmp(b[i]->name, i % 2 ? "running_var" : "running_mean"));
  }
  EXPECT(ok && in_flat && zero_one && no_grad && disjoint);
  uint64_t h = fl_module_hash(r);
  ((float *)b[5]->data)[3] = 0.5f;   /* a running statistic moves: the fingerprint does too */
  EXPECT(fl_module_hash(r) != h);
  ((float *)b[5]->data)[3] = 1.0f;
  EXPECT(fl_module_hash(r) == h);
  free(b), free(p);
  fl_module_free(r);
}

static void test_determinism(void) {
  const char *names[4] = {"cnn", "cnn_bn", "resnet", "resnet_wide"};
  for (int i = 0; i < 4; i++) {
    fl_module *a = fl_model_new(names[i], 42), *b = fl_model_new(names[i], 42), *c = fl_model_new(names[i], 43);
    EXPECT(fl_module_hash(a) == fl_module_hash(b));
    EXPECT(fl_module_hash(a) != fl_module_hash(c));
    fl_module_free(a), fl_module_free(b), fl_module_free(c);
  }
}

/* Sample mean and std of a tensor's values. */
static void stats(const fl_tensor *t, double *mean, double *sd, double *maxabs) {
  const float *d = t->data;
  int64_t n = fl_numel(t);
  double s = 0, s2 = 0, mx = 0;
  for (int64_t i = 0; i < n; i++) s += d[i], s2 += (double)d[i] * d[i], mx = fmax(mx, fabs(d[i]));
  *mean = s / n;
  *sd = sqrt(s2 / n - *mean * *mean);
  *maxabs = mx;
}

/* resnet: kaiming_normal_(a=0.1) on every conv and linear weight, std sqrt(2/1.01)/sqrt(fan_in);
 * biases PyTorch's default U(+-1/sqrt(fan_in)); BatchNorm weight 1, bias 0. cnn: PyTorch's
 * default U(+-1/sqrt(fan_in)) everywhere. Tolerances: 4 standard errors of the estimate. */
static void test_init_statistics(void) {
  fl_module *r = fl_model_new("resnet", 7);
  /* the last block's second conv: 256 x 256 x 3 x 3 = 589,824 draws */
  fl_module *blk = r->children[5];
  EXPECT(!strcmp(blk->ops->kind, "ResBlock") && !strcmp(blk->children[0]->name, "convs"));
  fl_module *cv = blk->children[0]->children[1]->children[0];
  EXPECT(!strcmp(cv->ops->kind, "Conv2d"));
  double mean, sd, mx;
  stats(cv->params[0], &mean, &sd, &mx);
  double want = sqrt(2.0 / 1.01) / sqrt(256.0 * 9), n = 589824;
  EXPECTF(fabs(sd - want) <= 4 * want / sqrt(2 * n), "conv std %.6g, want %.6g", sd, want);
  EXPECTF(fabs(mean) <= 4 * want / sqrt(n), "conv mean %.3g", mean);
  stats(cv->params[1], &mean, &sd, &mx);
  EXPECT(mx <= 1 / sqrt(256.0 * 9) && mx > 0.5 / sqrt(256.0 * 9));
  /* the linear (256 -> 10, no bias) */
  fl_module *lin = r->children[7];
  EXPECT(!strcmp(lin->ops->kind, "Linear") && lin->n_params == 1);
  stats(lin->params[0], &mean, &sd, &mx);
  want = sqrt(2.0 / 1.01) / 16;
  EXPECTF(fabs(sd - want) <= 4 * want / sqrt(2 * 2560.0), "linear std %.6g, want %.6g", sd, want);
  fl_module *bn = r->children[8];
  EXPECT(!strcmp(bn->ops->kind, "BatchNorm1d"));
  stats(bn->params[0], &mean, &sd, &mx);
  EXPECT(mean == 1 && sd == 0);
  stats(bn->params[1], &mean, &sd, &mx);
  EXPECT(mean == 0 && mx == 0);
  fl_module_free(r);

  fl_module *c = fl_model_new("cnn", 7);
  fl_module *c4 = c->children[3]->children[0];   /* Conv2d(32, 64): 18,432 draws */
  EXPECT(!strcmp(c4->ops->kind, "Conv2d"));
  stats(c4->params[0], &mean, &sd, &mx);
  double bound = 1 / sqrt(32.0 * 9);
  EXPECT(mx <= bound && mx > 0.99 * bound);
  EXPECTF(fabs(sd - bound / sqrt(3)) <= 4 * bound / sqrt(3) / sqrt(2 * 18432.0) * 1.2, "cnn std %.6g", sd);
  fl_module_free(c);
}

/* The module tree as PyTorch's: the names the safetensors file gets. */
static void test_state_dict_names(void) {
  fl_module *r = fl_model_new("resnet", 1);
  EXPECT(r->n_children == 9);
  EXPECT(!strcmp(r->children[0]->ops->kind, "ResBlock") && r->children[0]->n_children == 3);  /* no pool */
  EXPECT(!strcmp(r->children[1]->children[2]->name, "pool") &&
         !strcmp(r->children[1]->children[2]->ops->kind, "AvgPool2d"));
  EXPECT(!strcmp(r->children[1]->children[3]->name, "act") &&
         !strcmp(r->children[1]->children[3]->ops->kind, "GeneralRelu"));
  EXPECT(!strcmp(r->children[1]->children[1]->name, "idconv") && r->children[1]->children[1]->n_children == 1);
  EXPECT(!strcmp(r->children[6]->ops->kind, "Flatten"));
  fl_module *c = fl_model_new("cnn", 1);
  EXPECT(c->n_children == 6 && !strcmp(c->children[4]->ops->kind, "Conv2d") &&
         !strcmp(c->children[0]->children[1]->ops->kind, "ReLU"));
  fl_module_free(r), fl_module_free(c);
}

#ifndef FL_NO_CJSON
/* Our file, PyTorch's model as the notebooks define it: load_state_dict(strict=True) takes it;
 * and the file round-trips into a model of another seed (buffers included). */
static void test_torch_loads_models(void) {
  const char *names[4] = {"cnn", "cnn_bn", "resnet", "resnet_wide"};
  for (int i = 0; i < 4; i++) {
    fl_module *m = fl_model_new(names[i], 5), *o = fl_model_new(names[i], 6);
    const char *st = tmp_path("m.safetensors");
    if (m->flat_buf) ((float *)m->flat_buf->data)[1] = 0.25f;   /* a buffer that is not its default */
    EXPECT(fl_save_safetensors(m, st, names[i]) == FL_OK);
    EXPECT(fl_load_safetensors(o, st) == FL_OK && fl_module_hash(o) == fl_module_hash(m));
    if (have_torch()) {
      char cmd[512], line[256] = "";
      snprintf(cmd, sizeof cmd, "/usr/bin/python3 tools/models_vs_torch.py load %s %s 2>&1", names[i], st);
      FILE *p = popen(cmd, "r");
      long long np = -1;
      int nb = -1;
      while (p && fgets(line, sizeof line, p))
        if (sscanf(line, "ok %lld %d", &np, &nb) != 2) fprintf(stderr, "  torch: %s", line);
      EXPECT(p && pclose(p) == 0);
      EXPECTF(np == fl_module_numel(m) && nb == fl_module_buffers(m, NULL, 0), "%s: torch %lld params %d buffers",
              names[i], np, nb);
    }
    unlink(st);
    fl_module_free(m), fl_module_free(o);
  }
  if (!have_torch()) SKIP("no PyTorch at /usr/bin/python3 (apt-get install python3-torch): only the round trip ran");
}
#endif

/* The loader's fused normalisation: every one of the 256 pixel values comes out as
 * ((float)v / 255 - 0.28) / 0.35 in f32, bit for bit, inline and with worker threads; and
 * (0, 1) gives plain v / 255 again. */
static void test_loader_normalisation(void) {
  enum { N = 40 };
  fl_dataset *ds = calloc(1, sizeof *ds);
  ds->n = N, ds->c = 1, ds->h = 28, ds->w = 28, ds->n_classes = 10, ds->device = FL_CPU;
  ds->x = malloc((size_t)N * 784);
  ds->y = calloc(N, sizeof *ds->y);
  for (int i = 0; i < N * 784; i++) ds->x[i] = (uint8_t)(i * 7 % 256);
  for (int workers = 0; workers <= 2; workers += 2) {
    fl_dataloader_cfg cfg = {.bs = 16, .shuffle = 1, .seed = 3, .n_workers = workers, .flat = 1};
    fl_dataloader *dl = fl_dataloader_new(ds, &cfg);
    for (int pass = 0; pass < 3; pass++) {
      float mean = pass == 1 ? 0.28f : 0.0f, std = pass == 1 ? 0.35f : 1.0f;
      if (pass) EXPECT(fl_dataloader_set_norm(dl, mean, std) == FL_OK);
      fl_dataloader_begin(dl);
      fl_batch b;
      int bad = 0, rows = 0;
      while (fl_dataloader_next(dl, &b)) {
        const float *x = b.t[0]->data;
        for (int64_t r = 0; r < b.t[0]->shape[0]; r++) {
          /* which source row: match its first value (row r of the dataset starts at (r*784*7)%256) */
          for (int src = 0; src < N; src++) {
            const uint8_t *sx = ds->x + (size_t)src * 784;
            float want0 = (float)sx[0] / 255.0f;
            if (pass == 1) want0 = (want0 - mean) / std;
            if (x[r * 784] != want0 || x[r * 784 + 1] != (pass == 1 ? ((float)sx[1] / 255.0f - mean) / std : (float)sx[1] / 255.0f)) continue;
            for (int k = 0; k < 784; k++) {
              float v = (float)sx[k] / 255.0f;
              if (pass == 1) v = (v - mean) / std;
              bad += x[r * 784 + k] != v;
            }
            rows++;   /* rows whose first two values matched a dataset row's, normalised as asked */
            break;
          }
        }
      }
      EXPECTF(bad == 0 && rows == N, "workers %d pass %d: %d values differ, %d rows", workers, pass, bad, rows);
    }
    EXPECT(fl_dataloader_set_norm(dl, 0.28f, 0.0f) == FL_ERR_ARG);
    EXPECT(fl_dataloader_set_norm(dl, NAN, 1.0f) == FL_ERR_ARG);
    fl_dataloader_free(dl);
  }
  fl_dataset_free(ds);
}

#ifndef FL_NO_CJSON
/* Largest |a - b| over the largest |b| (a normwise relative error: elementwise ones blow up on
 * the entries that are ~0). */
static double rel_err(const float *a, const double *b, int64_t n) {
  double e = 0, m = 0;
  for (int64_t i = 0; i < n; i++) e = fmax(e, fabs(a[i] - b[i])), m = fmax(m, fabs(b[i]));
  return m > 0 ? e / m : e;
}

/* One training step (forward + backward, BatchNorm in training mode) of our model and of
 * PyTorch's, loaded from our file and run in float64: the loss, every gradient and every
 * running statistic after the step. Tolerance: 1e-5 normwise relative (our f32 against the f64
 * reference). */
static void step_vs_torch(const char *name) {
  if (!have_torch()) SKIP("no PyTorch at /usr/bin/python3 (apt-get install python3-torch)");
  enum { N = 8 };
  fl_module *m = fl_model_new(name, 11);
  const char *st = tmp_path("step.safetensors"), *xs = tmp_path("x.bin"), *ys = tmp_path("y.bin"),
             *outp = tmp_path("ref.bin");
  EXPECT(fl_save_safetensors(m, st, name) == FL_OK);
  static float x[N * 784];
  int32_t y[N];
  fl_rng r = fl_rng_make(9, FL_STREAM_USER);
  for (int i = 0; i < N * 784; i++) x[i] = ((float)fl_rng_below(&r, 256) / 255.0f - 0.28f) / 0.35f;
  for (int i = 0; i < N; i++) y[i] = (i * 3) % 10;
  FILE *f = fopen(xs, "wb");
  fwrite(x, sizeof x, 1, f), fclose(f);
  f = fopen(ys, "wb");
  fwrite(y, sizeof y, 1, f), fclose(f);

  fl_graph *g = fl_graph_new();
  int64_t xsh[4] = {N, 1, 28, 28}, ysh[1] = {N};
  fl_tensor *xt = fl_tensor_from_data(FL_F32, FL_CPU, 4, xsh, x), *yt = fl_tensor_from_data(FL_I32, FL_CPU, 1, ysh, y);
  fl_tensor *loss = fl_cross_entropy(g, fl_module_forward(m, g, xt), yt);
  EXPECT(fl_backward(g, loss) == FL_OK);
  double our_loss = fl_tensor_item(loss);

  char cmd[1024];
  snprintf(cmd, sizeof cmd, "/usr/bin/python3 tools/models_vs_torch.py step %s %s %s %s %s", name, st, xs, ys, outp);
  FILE *p = popen(cmd, "r");
  double ref_loss = NAN;
  EXPECT(p && fscanf(p, "%lf", &ref_loss) == 1);
  EXPECT(p && pclose(p) == 0);
  double le = fabs(our_loss - ref_loss) / fabs(ref_loss);
  printf("  %s: loss %.9g (torch f64 %.9g, rel err %.2g)\n", name, our_loss, ref_loss, le);
  EXPECTF(le <= 1e-5, "%s: loss rel err %g", name, le);

  int np = fl_module_parameters(m, NULL, 0), nb = fl_module_buffers(m, NULL, 0);
  fl_tensor **ps = malloc((size_t)(np + nb) * sizeof *ps);
  fl_module_parameters(m, ps, np);
  fl_module_buffers(m, ps + np, nb);
  int64_t total = 0;
  for (int i = 0; i < np + nb; i++) total += fl_numel(ps[i]);
  double *ref = malloc((size_t)total * sizeof *ref);
  f = fopen(outp, "rb");
  EXPECT(f && fread(ref, sizeof *ref, (size_t)total, f) == (size_t)total && fgetc(f) == EOF);
  if (f) fclose(f);
  double worst_g = 0, worst_b = 0, worst_z = 0;
  int zeros = 0;
  int64_t off = 0, prev_off = 0;
  for (int i = 0; i < np + nb; i++) {
    fl_tensor *t = i < np ? ps[i]->grad : ps[i];
    int64_t n = fl_numel(t);
    double e = rel_err(t->data, ref + off, n), rmax = 0, amax = 0, pmax = 0;
    for (int64_t k = 0; k < n; k++) rmax = fmax(rmax, fabs(ref[off + k])), amax = fmax(amax, fabs(((float *)t->data)[k]));
    if (i > 0 && i < np)
      for (int64_t k = 0; k < fl_numel(ps[i - 1]); k++) pmax = fmax(pmax, fabs(ref[prev_off + k]));
    if (i < np && i > 0 && rmax < 1e-9 * pmax) {
      /* The bias of a conv that feeds a training-mode BatchNorm: its gradient is exactly zero (the
       * batch mean is subtracted), the f64 reference's is rounding noise (~1e-17). Ours must be
       * noise too: at most 1e-5 of the largest gradient of that conv's weight (the previous
       * parameter), the scale the rounding comes from. */
      zeros++;
      worst_z = fmax(worst_z, amax / pmax);
      EXPECTF(amax <= 1e-5 * pmax, "%s: gradient of parameter %d should be ~0: %g (weight's %g)", name, i, amax, pmax);
    } else {
      if (i < np) worst_g = fmax(worst_g, e);
      else worst_b = fmax(worst_b, e);
      EXPECTF(e <= 1e-5, "%s: %s %d (%lld values): rel err %g", name, i < np ? "gradient of parameter" : "buffer",
              i < np ? i : i - np, (long long)n, e);
    }
    prev_off = off;
    off += n;
  }
  printf("  %s: %d gradients, worst rel err %.2g (%d conv biases before a BatchNorm: grad ~0, ours <= %.2g of the "
         "weight's)\n", name, np - zeros, worst_g, zeros, worst_z);
  printf("  %s: %d running stats after the step, worst rel err %.2g\n", name, nb, worst_b);
  free(ref), free(ps);
  fl_tensor_free(xt), fl_tensor_free(yt);
  fl_graph_free(g);
  fl_module_free(m);
  unlink(st), unlink(xs), unlink(ys), unlink(outp);
}
static void test_resnet_step_vs_torch(void) { step_vs_torch("resnet"); }
static void test_cnn_step_vs_torch(void) { step_vs_torch("cnn"); }
static void test_cnn_bn_step_vs_torch(void) { step_vs_torch("cnn_bn"); }
static void test_resnet_wide_step_vs_torch(void) { step_vs_torch("resnet_wide"); }
#endif

/* --dropout's models: a Dropout(p) between Flatten and the Linear of the resnets (the rest
 * unchanged, the same parameters), active in training only; refused elsewhere and outside [0, 1). */
static void test_model_dropout(void) {
  fl_module *r = fl_model_new("resnet", 4), *d = fl_model_new_drop("resnet", 4, 0.5f);
  EXPECT(d && d->n_children == 10 && !strcmp(d->children[7]->ops->kind, "Dropout") &&
         !strcmp(d->children[8]->ops->kind, "Linear"));
  EXPECT(d && fl_module_numel(d) == fl_module_numel(r) && fl_module_hash(d) == fl_module_hash(r));
  fl_graph *g = fl_graph_new();
  static float x[4 * 784];
  for (int i = 0; i < 4 * 784; i++) x[i] = (float)((i * 37) % 255) / 255.0f;
  int64_t sh[2] = {4, 784};
  fl_tensor *xt = fl_tensor_from_data(FL_F32, FL_CPU, 2, sh, x);
  fl_module_train(r, 0), fl_module_train(d, 0);
  fl_tensor *a = fl_module_forward(r, g, xt), *b = fl_module_forward(d, g, xt);
  EXPECT(a && b && !memcmp(a->data, b->data, 40 * sizeof(float)));   /* eval: the identity */
  fl_module_train(r, 1), fl_module_train(d, 1);
  a = fl_module_forward(r, g, xt), b = fl_module_forward(d, g, xt);
  EXPECT(a && b && memcmp(a->data, b->data, 40 * sizeof(float)) != 0);   /* training: dropped */
  fl_tensor_free(xt);
  fl_graph_free(g);
  EXPECT(fl_model_new_drop("mlp", 1, 0.1f) == NULL && strstr(fl_last_error(), "no dropout layer"));
  EXPECT(fl_model_new_drop("resnet", 1, 1.0f) == NULL && strstr(fl_last_error(), "outside [0, 1)"));
  EXPECT(fl_model_new_drop("resnet", 1, -0.1f) == NULL);
  fl_module_free(r), fl_module_free(d);
}

/* summary: one row per top-level layer, the totals, and nothing about the model changed. */
static void test_model_summary(void) {
  fl_module *r = fl_model_new("resnet", 2);
  uint64_t h = fl_module_hash(r);
  char *buf = NULL;
  size_t n = 0;
  FILE *f = open_memstream(&buf, &n);
  int64_t in[2] = {3, 784};   /* flat images: viewed as (3, 1, 28, 28) */
  EXPECT(fl_module_summary(r, 2, in, f) == FL_OK);
  fclose(f);
  EXPECTF(strstr(buf, "ResBlock       (3, 1, 28, 28)       (3, 8, 28, 28)") &&
              strstr(buf, "Linear         (3, 256)             (3, 10)                    2560") &&
              strstr(buf, "\ntotal params: 1228908\n") && strstr(buf, "total MFLOPs: "),
          "%s", buf);
  int rows = 0;
  for (char *q = buf; (q = strchr(q, '\n')); q++) rows++;
  EXPECTF(rows == 1 + 9 + 2, "%d lines:\n%s", rows, buf);
  EXPECT(fl_module_hash(r) == h && r->training == 1 && r->children[8]->training == 1);
  free(buf);
  fl_module_free(r);
}

/* Dropout: a new mask each training forward (the counter advances), the identity in eval. */
static void test_dropout_module(void) {
  fl_module *d = fl_dropout_new(0.5f, 1);
  fl_graph *g = fl_graph_new();
  int64_t s[2] = {4, 64};
  fl_tensor *x = fl_tensor_new(FL_F32, FL_CPU, 2, s);
  fl_tensor_fill(x, 1.0f);
  float a[256], b[256];
  fl_tensor_to_host(fl_module_forward(d, g, x), a);
  fl_tensor_to_host(fl_module_forward(d, g, x), b);
  int zeros = 0, differ = 0, scaled = 1;
  for (int i = 0; i < 256; i++) {
    zeros += a[i] == 0;
    differ += a[i] != b[i];
    scaled &= a[i] == 0 || a[i] == 2.0f;
  }
  EXPECTF(zeros > 90 && zeros < 166 && differ > 0 && scaled, "zeros %d, differ %d", zeros, differ);
  EXPECT(fl_dropout_counter(d) == 2);
  fl_module_train(d, 0);
  EXPECT(fl_module_forward(d, g, x) == x && fl_dropout_counter(d) == 2);
  fl_tensor_free(x);
  fl_graph_free(g);
  fl_module_free(d);
}

/* A tiny random Fashion-MNIST-shaped pair of datasets (labels i % 10). */
static void tiny_data(fl_dataset *ds[2], int n) {
  for (int k = 0; k < 2; k++) {
    ds[k] = calloc(1, sizeof *ds[k]);
    ds[k]->n = n, ds[k]->c = 1, ds[k]->h = 28, ds[k]->w = 28, ds[k]->n_classes = 10, ds[k]->device = FL_CPU;
    ds[k]->x = malloc((size_t)n * 784);
    ds[k]->y = malloc((size_t)n * sizeof *ds[k]->y);
    fl_rng r = fl_rng_make(4 + k, FL_STREAM_USER);
    for (int i = 0; i < n * 784; i++) ds[k]->x[i] = (uint8_t)fl_rng_below(&r, 256);
    for (int i = 0; i < n; i++) ds[k]->y[i] = i % 10;
  }
}

static void no_log(void *ctx, const fl_log_entry *e) { (void)ctx, (void)e; }

/* EarlyStoppingCB puts back the best epoch's state, running statistics included: the model after
 * a fit that it stopped equals (hash) a fresh one trained for just the epochs up to the best. */
static void test_early_stopping_restores_buffers(void) {
  fl_dataset *ds[2];
  tiny_data(ds, 48);
  uint64_t h[2];
  int best_epoch = -1;
  for (int run = 0; run < 2; run++) {
    fl_dataloaders dls;
    EXPECT(fl_get_dls(&dls, ds[0], ds[1], 16, 1, 0, 1) == FL_OK);
    fl_module *m = fl_model_new("resnet", 1);
    fl_metric *acc = fl_multiclass_accuracy_new();
    const char *name = "accuracy";
    /* "best" = the highest valid loss: an early epoch, so the restore has something to undo */
    fl_callback *es = run ? NULL : fl_early_stopping_cb_new("loss", FL_MODE_MAX, 100, 0);
    fl_callback *cbs[4] = {fl_device_cb_new(FL_CPU), fl_normalize_cb_new(0.28f, 0.35f), fl_metrics_cb_new(1, &acc, &name),
                           es};
    ((fl_metrics_cb *)cbs[2])->log = no_log;   /* quiet */
    fl_learner *l = fl_learner_new(m, &dls, fl_cross_entropy, 0.3f, cbs, run ? 3 : 4, fl_sgd_new, &fl_train_ops);
    EXPECT(fl_fit(l, run ? best_epoch + 1 : 4, 1, 1, NULL, 0, 0) == FL_OK);
    if (!run) fl_best_cb_info(es, NULL, &best_epoch, NULL);
    h[run] = fl_module_hash(m);
    fl_learner_free(l);
    fl_module_free(m);
    fl_dataloaders_free(&dls);
  }
  printf("  best epoch %d of 4\n", best_epoch);
  EXPECTF(best_epoch >= 0 && best_epoch < 3, "best epoch %d: the test needs an earlier one", best_epoch);
  EXPECTF(h[0] == h[1], "restored %016llx, trained to the best epoch %016llx", (unsigned long long)h[0],
          (unsigned long long)h[1]);
  fl_dataset_free(ds[0]), fl_dataset_free(ds[1]);
}

/* lr_find trains on a few batches and then puts the model back: with BatchNorm that includes the
 * running statistics (the buffers), so the hash after is the hash before. */
static void test_lr_find_restores_buffers(void) {
  enum { N = 64 };
  fl_dataset *ds[2];
  for (int k = 0; k < 2; k++) {
    ds[k] = calloc(1, sizeof *ds[k]);
    ds[k]->n = N, ds[k]->c = 1, ds[k]->h = 28, ds[k]->w = 28, ds[k]->n_classes = 10, ds[k]->device = FL_CPU;
    ds[k]->x = malloc((size_t)N * 784);
    ds[k]->y = malloc(N * sizeof *ds[k]->y);
    fl_rng r = fl_rng_make(4 + k, FL_STREAM_USER);
    for (int i = 0; i < N * 784; i++) ds[k]->x[i] = (uint8_t)fl_rng_below(&r, 256);
    for (int i = 0; i < N; i++) ds[k]->y[i] = i % 10;
  }
  fl_dataloaders dls;
  EXPECT(fl_get_dls(&dls, ds[0], ds[1], 16, 1, 0, 1) == FL_OK);
  fl_module *m = fl_model_new("resnet", 1);
  uint64_t h = fl_module_hash(m);
  fl_callback *cbs[2] = {fl_device_cb_new(FL_CPU), fl_normalize_cb_new(0.28f, 0.35f)};
  fl_learner *l = fl_learner_new(m, &dls, fl_cross_entropy, 0.1f, cbs, 2, fl_sgd_new, &fl_train_ops);
  float sug = 0;
  EXPECT(fl_lr_find(l, 3.0f, 3.0f, 1e-3f, 1, NULL, &sug, NULL, NULL, NULL) == FL_OK);
  EXPECTF(fl_module_hash(m) == h, "lr_find left the model changed");
  /* and a plain fit does move the running statistics */
  EXPECT(fl_fit(l, 1, 1, 0, NULL, 0, 0) == FL_OK);
  float rv[8];
  fl_tensor *bufs[2];
  fl_module_buffers(m, bufs, 2);
  fl_tensor_to_host(bufs[1], rv);
  EXPECT(rv[0] != 1.0f && fl_module_hash(m) != h);
  fl_learner_free(l);
  fl_module_free(m);
  fl_dataloaders_free(&dls);
  fl_dataset_free(ds[0]), fl_dataset_free(ds[1]);
}

/* A process that sees many batch sizes (every partial last batch, summary, predict) keeps
 * working: the conv primitive caches start over when full instead of aborting; results stay the
 * same bits as a fresh run of that size. */
static void test_many_batch_sizes(void) {
  fl_module *m = fl_model_new("cnn", 1);
  fl_graph *g = fl_graph_new();
  static float x[70 * 784];
  for (int i = 0; i < 70 * 784; i++) x[i] = (float)((i * 37) % 256) / 255.0f;
  float first[10] = {0}, again[10] = {0};
  for (int rep = 0; rep < 2; rep++)
    for (int n = 1; n <= 70; n++) {   /* 70 sizes x (5 fwd + 5 bwd-data + 5 weight-grad) shapes */
      int64_t s[2] = {n, 784};
      fl_tensor *xt = fl_tensor_from_data(FL_F32, FL_CPU, 2, s, x);
      fl_tensor_zero(m->flat_grad);
      fl_tensor *y = fl_module_forward(m, g, xt);
      fl_tensor *loss = fl_mean(g, y);
      EXPECT(loss && fl_backward(g, loss) == FL_OK);
      if (n == 3) fl_tensor_to_host(m->children[4]->params[1]->grad, rep ? again : first);   /* the last conv's bias */
      fl_graph_reset(g);
      fl_tensor_free(xt);
    }
  EXPECT(!memcmp(first, again, sizeof first) && first[0] != 0);
  fl_graph_free(g);
  fl_module_free(m);
}

/* The small modules pass their settings to the ops: GlobalAvgPool is the mean over H, W;
 * GeneralRelu(0.1, 0.4, 2) is leaky, shifted and clamped; Flatten and AvgPool2d(2, ceil) shapes. */
static void test_small_modules(void) {
  fl_graph *g = fl_graph_new();
  fl_graph_set_grad(g, 0);
  int64_t s[4] = {2, 3, 5, 5};
  float x[150];
  for (int i = 0; i < 150; i++) x[i] = (float)(i % 7) - 3.0f;
  fl_tensor *xt = fl_tensor_from_data(FL_F32, FL_CPU, 4, s, x);
  fl_module *gap = fl_global_avg_pool_new(), *gr = fl_general_relu_new(0.1f, 0.4f, 2.0f), *fl = fl_flatten_new(),
            *pool = fl_avg_pool2d_new(2, 1);
  fl_tensor *y = fl_module_forward(gap, g, xt);
  float m[6];
  EXPECT(y->ndim == 2 && y->shape[0] == 2 && y->shape[1] == 3);
  fl_tensor_to_host(y, m);
  for (int c = 0; c < 6; c++) {
    double want = 0;
    for (int k = 0; k < 25; k++) want += x[c * 25 + k];
    EXPECT_NEAR(m[c], want / 25, 1e-6);
  }
  float r[150];
  fl_tensor_to_host(fl_module_forward(gr, g, xt), r);
  int ok = 1;
  for (int i = 0; i < 150; i++) {
    float want = (x[i] >= 0 ? x[i] : 0.1f * x[i]) - 0.4f;
    ok &= fabsf(r[i] - (want > 2.0f ? 2.0f : want)) <= 1e-6f;
  }
  EXPECT(ok);
  y = fl_module_forward(pool, g, xt);
  EXPECT(y->ndim == 4 && y->shape[2] == 3 && y->shape[3] == 3);   /* ceil(5 / 2) */
  y = fl_module_forward(fl, g, xt);
  EXPECT(y->ndim == 2 && y->shape[1] == 75);
  fl_module_free(gap), fl_module_free(gr), fl_module_free(fl), fl_module_free(pool);
  fl_tensor_free(xt);
  fl_graph_free(g);
}

int main(void) {
  fl_init(2);
  if (!mkdtemp(dir)) return perror("mkdtemp"), 1;
  RUN(test_param_counts);
  RUN(test_buffers);
  RUN(test_determinism);
  RUN(test_init_statistics);
  RUN(test_state_dict_names);
  RUN(test_loader_normalisation);
#ifndef FL_NO_CJSON
  RUN(test_torch_loads_models);
  RUN(test_resnet_step_vs_torch);
  RUN(test_cnn_step_vs_torch);
  RUN(test_cnn_bn_step_vs_torch);
  RUN(test_resnet_wide_step_vs_torch);
  RUN(test_model_dropout);
#endif
  RUN(test_model_summary);
  RUN(test_dropout_module);
  RUN(test_lr_find_restores_buffers);
  RUN(test_many_batch_sizes);
  RUN(test_small_modules);
  RUN(test_early_stopping_restores_buffers);
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", dir);
  return test_summary();
}
