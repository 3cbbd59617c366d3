/* Named models: what `--model NAME` builds (the CLI's fit, summary and predict share it).
 * Each takes 1x28x28 images, as (N, 1, 28, 28) or flat (N, 784), and gives 10 logits. */
#include <math.h>
#include <string.h>

#include "fl/nn.h"

const char *fl_model_names(void) { return "mlp, cnn, cnn_bn, resnet, resnet_wide"; }

/* 10_activations' baseline: conv(ni, nf, ks=3, act=True) = Sequential(Conv2d(stride 2, padding
 * ks//2), ReLU), the last conv bare; 28 -> 14 -> 7 -> 4 -> 2 -> 1; PyTorch's default init. */
static fl_module *cnn_new(uint64_t seed) {
  fl_rng rng = fl_rng_make(seed, FL_STREAM_INIT);
  static const int nfs[6] = {1, 8, 16, 32, 64, 10};
  fl_module *mods[6];
  for (int i = 0; i < 4; i++) {
    fl_module *cr[2] = {fl_conv2d_new(nfs[i], nfs[i + 1], i == 0 ? 5 : 3, 2, 1, &rng), fl_relu_new()};
    mods[i] = fl_sequential_new(2, cr);
  }
  mods[4] = fl_conv2d_new(64, 10, 3, 2, 1, &rng);
  mods[5] = fl_flatten_new();
  return fl_image_sequential_new(6, mods, 1, 28, 28);
}

/* 11_initializing's get_model(act_gr, norm=nn.BatchNorm2d).apply(iw), the model 12_accel_sgd
 * trains: conv(ni, nf) = Sequential(Conv2d(ks 3, stride 2, padding 1), BatchNorm2d(nf),
 * GeneralRelu(0.1, 0.4)) (with a bias: the notebook's `isinstance(norm, BatchNorm2d)` is given the
 * class, not an instance) for 1 -> 8 -> 16 -> 32 -> 64, then Sequential(Conv2d(64, 10, bias=True)) and
 * Flatten; 28 -> 14 -> 7 -> 4 -> 2 -> 1; every conv weight kaiming-normal (leak 0.1). 30,394 params. */
static fl_module *cnn_bn_new(uint64_t seed) {
  fl_rng rng = fl_rng_make(seed, FL_STREAM_INIT);
  static const int nfs[5] = {1, 8, 16, 32, 64};
  fl_module *mods[6];
  for (int i = 0; i < 4; i++) {
    fl_module *c[3] = {fl_conv2d_new(nfs[i], nfs[i + 1], 3, 2, 1, &rng), fl_batchnorm2d_new(nfs[i + 1]),
                       fl_general_relu_new(0.1f, 0.4f, INFINITY)};
    mods[i] = fl_sequential_new(3, c);
  }
  fl_module *last[1] = {fl_conv2d_new(64, 10, 3, 2, 1, &rng)};
  mods[4] = fl_sequential_new(1, last);
  mods[5] = fl_flatten_new();
  fl_module *m = fl_image_sequential_new(6, mods, 1, 28, 28);
  fl_module_init_kaiming(m, 0.1f, &rng);
  return m;
}

/* 13_resnet's get_model(act_gr, norm=nn.BatchNorm2d).apply(iw): ResBlock(1, 8) then five stride-2
 * ResBlocks to 256 (28 -> 14 -> 7 -> 4 -> 2 -> 1), Flatten, Linear(256, 10, bias=False),
 * BatchNorm1d(10); act_gr = GeneralRelu(leak 0.1, sub 0.4); init_weights(leaky=0.1) draws every
 * conv and linear weight kaiming-normal (the biases keep PyTorch's default). 1,228,908 params.
 * 14_augment's wider one ("resnet_wide"): a ResBlock(1, 16, ks=5) stem and 16 -> 32 -> ... -> 512,
 * Linear(512, 10, bias=False). drop > 0 puts a Dropout(drop) between Flatten and the Linear (as
 * 14_augment's get_dropmodel has; its Dropout2d after the stem is not built). */
static fl_module *resnet_new(uint64_t seed, int wide, float drop) {
  fl_rng rng = fl_rng_make(seed, FL_STREAM_INIT);
  static const int nfs8[6] = {8, 16, 32, 64, 128, 256}, nfs16[6] = {16, 32, 64, 128, 256, 512};
  const int *nfs = wide ? nfs16 : nfs8;
  fl_module *mods[10];
  int n = 0;
  mods[n++] = fl_resblock_new(1, nfs[0], 1, wide ? 5 : 3, 0.1f, 0.4f, &rng);
  for (int i = 0; i < 5; i++) mods[n++] = fl_resblock_new(nfs[i], nfs[i + 1], 2, 3, 0.1f, 0.4f, &rng);
  mods[n++] = fl_flatten_new();
  if (drop > 0) mods[n++] = fl_dropout_new(drop, seed);
  mods[n++] = fl_linear_new(nfs[5], 10, 0, &rng);
  mods[n++] = fl_batchnorm1d_new(10);
  fl_module *m = fl_image_sequential_new(n, mods, 1, 28, 28);
  fl_module_init_kaiming(m, 0.1f, &rng);
  return m;
}

int fl_model_has_dropout(const char *name) {
  return name && (!strcmp(name, "resnet") || !strcmp(name, "resnet_wide"));
}

fl_module *fl_model_new(const char *name, uint64_t seed) { return fl_model_new_drop(name, seed, 0.0f); }

fl_module *fl_model_new_drop(const char *name, uint64_t seed, float drop) {
  if (!(drop >= 0.0f && drop < 1.0f)) {
    fl_error(FL_ERR_ARG, "dropout %g is outside [0, 1)", (double)drop);
    return NULL;
  }
  if (drop > 0 && !fl_model_has_dropout(name)) {
    fl_error(FL_ERR_ARG, "model '%s' has no dropout layer (resnet and resnet_wide have one)", name ? name : "(null)");
    return NULL;
  }
  if (name && !strcmp(name, "mlp")) return fl_get_model(seed, 28 * 28, 50, 10);
  fl_module *m = NULL;
  if (name && !strcmp(name, "cnn")) m = cnn_new(seed);
  else if (name && !strcmp(name, "cnn_bn")) m = cnn_bn_new(seed);
  else if (name && !strcmp(name, "resnet")) m = resnet_new(seed, 0, drop);
  else if (name && !strcmp(name, "resnet_wide")) m = resnet_new(seed, 1, drop);
  if (!m) {
    fl_error(FL_ERR_ARG, "unknown model '%s' (known: %s)", name ? name : "(null)", fl_model_names());
    return NULL;
  }
  if (fl_module_collate(m) != FL_OK) {
    fl_module_free(m);
    fl_error(FL_ERR_NOMEM, "model '%s': out of memory for its parameters", name);
    return NULL;
  }
  return m;
}

int fl_model_is_conv(const char *name) {
  return name && (!strcmp(name, "cnn") || !strcmp(name, "cnn_bn") || !strcmp(name, "resnet") ||
                  !strcmp(name, "resnet_wide"));
}
