/* One forward + backward of the 13_resnet ResNet's convolutions (bs 1024 by default), each
 * conv timed alone through the CPU kernel table: forward, backward-data (not for the stem,
 * whose input needs no grad) and backward-weights. Prints a table and the total in ms; the
 * PyTorch peer is bench/conv_torch.py (same shapes, channels_last, oneDNN).
 *
 * usage: bench_conv [BS] [THREADS] [REPS]   (the median of REPS runs after one warm-up) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "fl/core.h"
#include "fl/tensor.h"

typedef struct { const char *name; int C, H, O, k, stride; } conv_spec;

/* ResBlock(ni, nf, stride): conv(ni, nf, s1), conv(nf, nf, stride), idconv 1x1 (after pool) */
static const conv_spec resnet[] = {
    {"b1 conv1 1->8", 1, 28, 8, 3, 1},      {"b1 conv2 8->8", 8, 28, 8, 3, 1},
    {"b1 id 1->8", 1, 28, 8, 1, 1},
    {"b2 conv1 8->16", 8, 28, 16, 3, 1},    {"b2 conv2 16->16 s2", 16, 28, 16, 3, 2},
    {"b2 id 8->16", 8, 14, 16, 1, 1},
    {"b3 conv1 16->32", 16, 14, 32, 3, 1},  {"b3 conv2 32->32 s2", 32, 14, 32, 3, 2},
    {"b3 id 16->32", 16, 7, 32, 1, 1},
    {"b4 conv1 32->64", 32, 7, 64, 3, 1},   {"b4 conv2 64->64 s2", 64, 7, 64, 3, 2},
    {"b4 id 32->64", 32, 4, 64, 1, 1},
    {"b5 conv1 64->128", 64, 4, 128, 3, 1}, {"b5 conv2 128->128 s2", 128, 4, 128, 3, 2},
    {"b5 id 64->128", 64, 2, 128, 1, 1},
    {"b6 conv1 128->256", 128, 2, 256, 3, 1}, {"b6 conv2 256->256 s2", 256, 2, 256, 3, 2},
    {"b6 id 128->256", 128, 1, 256, 1, 1},
};

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  int bs = argc > 1 ? atoi(argv[1]) : 1024, threads = argc > 2 ? atoi(argv[2]) : 0;
  int reps = argc > 3 ? atoi(argv[3]) : 5;
  fl_init(threads);
  const fl_backend *be = &fl_backend_cpu;
  fl_rng rng = fl_rng_make(1, FL_STREAM_USER);
  double tot[3] = {0};
  printf("%-22s %9s %9s %9s   (ms, bs %d, %d threads, median of %d)\n", "conv", "fwd", "bwd_data",
         "bwd_w", bs, fl_num_threads(), reps);
  for (size_t i = 0; i < sizeof resnet / sizeof resnet[0]; i++) {
    const conv_spec *c = &resnet[i];
    fl_conv_shape s = {bs, c->C, c->H, c->H, c->O, c->k, c->stride, c->k / 2, 0, 0};
    s.Ho = s.Wo = (s.H + 2 * s.pad - s.k) / s.stride + 1;
    int64_t sx[4] = {bs, s.C, s.H, s.W}, sw[4] = {s.O, s.C, s.k, s.k}, sy[4] = {bs, s.O, s.Ho, s.Wo};
    fl_tensor *x = fl_tensor_normal(&rng, FL_CPU, 4, sx, 0, 1), *w = fl_tensor_normal(&rng, FL_CPU, 4, sw, 0, 0.1f);
    fl_tensor *y = fl_tensor_new(FL_F32, FL_CPU, 4, sy), *gy = fl_tensor_normal(&rng, FL_CPU, 4, sy, 0, 1);
    fl_tensor *gx = fl_tensor_new(FL_F32, FL_CPU, 4, sx), *gw = fl_tensor_new(FL_F32, FL_CPU, 4, sw);
    double med[3];
    for (int part = 0; part < 3; part++) {
      if (part == 1 && s.C == 1) { med[1] = 0; continue; }   /* the stem's input needs no grad */
      double t[64];
      for (int r = 0; r <= reps && r < 64; r++) {
        double t0 = fl_now();
        if (part == 0) be->conv2d_fwd(&s, y->data, x->data, w->data, NULL);
        else if (part == 1) be->conv2d_bwd_data(&s, gx->data, gy->data, w->data, 0);
        else be->conv2d_bwd_weights(&s, gw->data, NULL, gy->data, x->data, 0, 0);
        t[r] = 1e3 * (fl_now() - t0);
      }
      qsort(t + 1, (size_t)reps, sizeof t[0], cmp_d);
      med[part] = t[1 + reps / 2];
      tot[part] += med[part];
    }
    printf("%-22s %9.2f %9.2f %9.2f\n", c->name, med[0], med[1], med[2]);
    fl_tensor_free(x); fl_tensor_free(w); fl_tensor_free(y); fl_tensor_free(gy);
    fl_tensor_free(gx); fl_tensor_free(gw);
  }
  printf("%-22s %9.2f %9.2f %9.2f   total %.1f ms\n", "sum", tot[0], tot[1], tot[2], tot[0] + tot[1] + tot[2]);

  /* the other kernels at the widest activation (bs x 16 x 28 x 28): forward / backward */
  {
    const int C = 16, S = 28 * 28;
    int64_t sh[4] = {bs, C, 28, 28};
    fl_tensor *x = fl_tensor_normal(&rng, FL_CPU, 4, sh, 0, 1), *y = fl_tensor_new(FL_F32, FL_CPU, 4, sh);
    fl_tensor *gy = fl_tensor_normal(&rng, FL_CPU, 4, sh, 0, 1), *gx = fl_tensor_new(FL_F32, FL_CPU, 4, sh);
    float w[16], b[16], rm[16], rv[16], mean[16], is[16], gw[16], gb[16];
    for (int c = 0; c < C; c++) w[c] = 1, b[c] = 0, rm[c] = 0, rv[c] = 1;
    size_t n = (size_t)fl_numel(x);
    const char *names[4] = {"batch_norm", "general_relu", "avg_pool2d k2", "global_avg_pool"};
    for (int op = 0; op < 4; op++) {
      double med[2];
      for (int part = 0; part < 2; part++) {
        double t[64];
        for (int r = 0; r <= reps && r < 64; r++) {
          double t0 = fl_now();
          switch (op * 2 + part) {
            case 0: be->bn_fwd(y->data, mean, is, x->data, w, b, rm, rv, bs, C, S, 1, 0.1f, 1e-5f); break;
            case 1: be->bn_bwd(gx->data, gw, gb, gy->data, x->data, w, mean, is, bs, C, S, 1, 0, 0, 0); break;
            case 2: be->general_relu_fwd(y->data, x->data, n, 0.1f, 0.4f, 1e30f); break;
            case 3: be->general_relu_bwd(gx->data, gy->data, x->data, n, 0.1f, 0.4f, 1e30f, 0); break;
            case 4: be->avg_pool_fwd(y->data, x->data, bs * C, 28, 28, 2, 14, 14); break;
            case 5: be->avg_pool_bwd(gx->data, gy->data, bs * C, 28, 28, 2, 14, 14, 0); break;
            case 6: be->global_pool_fwd(y->data, x->data, bs * C, S); break;
            case 7: be->global_pool_bwd(gx->data, gy->data, bs * C, S, 0); break;
          }
          t[r] = 1e3 * (fl_now() - t0);
        }
        qsort(t + 1, (size_t)reps, sizeof t[0], cmp_d);
        med[part] = t[1 + reps / 2];
      }
      printf("%-22s %9.2f %9.2f            (bs x 16 x 28 x 28)\n", names[op], med[0], med[1]);
    }
    fl_tensor_free(x); fl_tensor_free(y); fl_tensor_free(gy); fl_tensor_free(gx);
  }
  return 0;
}
