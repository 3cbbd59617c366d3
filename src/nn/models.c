/* Named models: what `--model NAME` builds (the CLI's fit, summary and predict share it).
 * Each takes 1x28x28 images, as (N, 1, 28, 28) or flat (N, 784), and gives 10 logits. */
#include <math.h>
#include <string.h>

#include "fl/nn.h"

const char *fl_model_names(void) { return "mlp, cnn, resnet"; }

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

/* 13_resnet's get_model(act_gr, norm=nn.BatchNorm2d).apply(iw): ResBlock(1, 8) then five stride-2
 * ResBlocks to 256 (28 -> 14 -> 7 -> 4 -> 2 -> 1), Flatten, Linear(256, 10, bias=False),
 * BatchNorm1d(10); act_gr = GeneralRelu(leak 0.1, sub 0.4); init_weights(leaky=0.1) draws every
 * conv and linear weight kaiming-normal (the biases keep PyTorch's default). 1,228,908 params. */
static fl_module *resnet_new(uint64_t seed) {
  fl_rng rng = fl_rng_make(seed, FL_STREAM_INIT);
  static const int nfs[6] = {8, 16, 32, 64, 128, 256};
  fl_module *mods[9];
  mods[0] = fl_resblock_new(1, 8, 1, 3, 0.1f, 0.4f, &rng);
  for (int i = 0; i < 5; i++) mods[i + 1] = fl_resblock_new(nfs[i], nfs[i + 1], 2, 3, 0.1f, 0.4f, &rng);
  mods[6] = fl_flatten_new();
  mods[7] = fl_linear_new(256, 10, 0, &rng);
  mods[8] = fl_batchnorm1d_new(10);
  fl_module *m = fl_image_sequential_new(9, mods, 1, 28, 28);
  fl_module_init_kaiming(m, 0.1f, &rng);
  return m;
}

fl_module *fl_model_new(const char *name, uint64_t seed) {
  if (name && !strcmp(name, "mlp")) return fl_get_model(seed, 28 * 28, 50, 10);
  fl_module *m = NULL;
  if (name && !strcmp(name, "cnn")) m = cnn_new(seed);
  else if (name && !strcmp(name, "resnet")) m = resnet_new(seed);
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

int fl_model_is_conv(const char *name) { return name && (!strcmp(name, "cnn") || !strcmp(name, "resnet")); }
