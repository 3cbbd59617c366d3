/* flexlearn nn: modules (Linear, ReLU, Sequential), PyTorch's default init, get_model.
 *
 * A module owns its parameters and children. After fl_module_collate() (get_model does it)
 * all parameters of a model live in ONE contiguous buffer and all their grads in another, so
 * SGD, zeroing, momentum scaling, snapshots and device moves are one call each; each
 * parameter tensor is then a view into those buffers.
 */
#ifndef FL_NN_H
#define FL_NN_H

#include <stdio.h>

#include "fl/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct fl_module fl_module;

typedef struct fl_module_ops {
  const char *kind;                                             /* "Linear", "ReLU", ... */
  /* x -> y; results live in g. */
  fl_tensor *(*forward)(fl_module *m, fl_graph *g, fl_tensor *x);
  void (*free_impl)(fl_module *m);                              /* frees m->impl; may be NULL */
} fl_module_ops;

struct fl_module {
  const fl_module_ops *ops;
  int training;                 /* 1 after fl_module_train(m, 1) (the default) */
  fl_tensor **params;           /* this module's own parameters (not its children's) */
  int n_params;
  fl_module **children;
  int n_children;
  void *impl;                   /* module-specific state */
  /* set on the root by fl_module_collate: */
  fl_tensor *flat;              /* every parameter, contiguous (owned) */
  fl_tensor *flat_grad;         /* every gradient, contiguous, same layout (owned) */
  fl_device device;
  /* Buffers: state that is not a parameter (BatchNorm's running_mean / running_var): never
   * optimised, no grad, but collated, moved, hashed and saved with the model. */
  fl_tensor **buffers;          /* this module's own buffers (each ->name set: "running_mean") */
  int n_buffers;
  fl_tensor *flat_buf;          /* set on the root by fl_module_collate: every buffer, contiguous
                                   (owned; NULL when the model has none) */
  const char *name;             /* the name its parent knows it by in PyTorch's state_dict
                                   ("convs", "idconv"); NULL: its index in the parent */
  /* Post-forward hook (PyTorch's register_forward_hook; HooksCallback in fl/hooks.h sets it):
   * when not NULL, fl_module_forward calls hook(m, x, y, hook_ctx) after the forward made y
   * (not when the forward failed). A non-OK status makes fl_module_forward return NULL with
   * the hook's error set. A Sequential does not fuse a hooked Linear with the next ReLU. */
  fl_status (*hook)(fl_module *m, fl_tensor *in, fl_tensor *out, void *ctx);
  void *hook_ctx;
};

/* y = m(x) */
fl_tensor *fl_module_forward(fl_module *m, fl_graph *g, fl_tensor *x);
/* Sets training mode on m and every child. */
void fl_module_train(fl_module *m, int training);
/* Fills out[] (may be NULL to count) with every parameter, depth-first in registration order
 * (PyTorch's order: 0.weight, 0.bias, 2.weight, 2.bias); returns the count. */
int fl_module_parameters(fl_module *m, fl_tensor **out, int max);
/* Fills out[] (may be NULL to count) with every buffer, depth-first in registration order
 * (PyTorch's: 0.convs.0.1.running_mean, 0.convs.0.1.running_var, ...); returns the count. */
int fl_module_buffers(fl_module *m, fl_tensor **out, int max);
/* Moves all parameters into one buffer and all grads (zeroed) into another, and all buffers
 * (running statistics) into a third, m->flat_buf. Idempotent. */
fl_status fl_module_collate(fl_module *m);
/* Moves the model (its flat buffers) to a device. Requires a collated model. */
fl_status fl_module_to(fl_module *m, fl_device dev);
/* Total parameter count. */
int64_t fl_module_numel(fl_module *m);
/* FNV-1a 64 over the bytes of every parameter then every buffer (host copy): a fingerprint for
 * reproducibility. (A model without buffers hashes as before buffers existed.) */
uint64_t fl_module_hash(fl_module *m);
/* Frees m, its children and parameters. Accepts NULL. */
void fl_module_free(fl_module *m);

/* Linear(in, out): weight [out, in], bias [out], both U(-1/sqrt(in), 1/sqrt(in)) from rng
 * (PyTorch's default: kaiming_uniform(a=sqrt(5)) gives exactly that bound). */
fl_module *fl_linear_new(int in, int out, int bias, fl_rng *rng);
fl_module *fl_relu_new(void);
/* Takes ownership of the n modules. */
fl_module *fl_sequential_new(int n, fl_module **mods);
/* The lesson's model: Linear(784,50)-ReLU-Linear(50,10), initialised from seed, collated. */
fl_module *fl_get_model(uint64_t seed, int in, int hidden, int out);

/* ---- conv-net modules (issue 7). Shapes: x (N, C, H, W). Each constructor returns a new module
 * (free with fl_module_free, or hand it to a Sequential / ResBlock, which then owns it). ---- */
/* Conv2d(ni, nf, kernel ks, stride, padding ks/2, bias): weight (nf, ni, ks, ks), bias (nf), both
 * PyTorch's default U(-1/sqrt(ni*ks*ks), +1/sqrt(ni*ks*ks)) drawn from rng. */
fl_module *fl_conv2d_new(int ni, int nf, int ks, int stride, int bias, fl_rng *rng);
/* BatchNorm1d (x (N, C)) / BatchNorm2d (x (N, C, H, W)) over nf channels: momentum 0.1, eps 1e-5,
 * affine (weight 1, bias 0), buffers running_mean 0 and running_var 1, updated by every training
 * forward (PyTorch's rule); eval mode normalises with them. */
fl_module *fl_batchnorm1d_new(int nf);
fl_module *fl_batchnorm2d_new(int nf);
/* AvgPool2d(k, stride k, ceil_mode), GlobalAvgPool ((N,C,H,W) -> (N,C)), Flatten ((N,...) -> (N,-1)). */
fl_module *fl_avg_pool2d_new(int k, int ceil_mode);
fl_module *fl_global_avg_pool_new(void);
fl_module *fl_flatten_new(void);
/* GeneralRelu: leaky_relu(x, leak), minus sub, clamped above at maxv (INFINITY: no clamp). */
fl_module *fl_general_relu_new(float leak, float sub, float maxv);
/* Dropout(p), 0 <= p < 1: each training forward draws a new mask (a counter advances per
 * forward; the mask is a pure function of (seed, counter, element)); identity in eval mode. */
fl_module *fl_dropout_new(float p, uint64_t seed);
/* The forwards a Dropout has done in training mode (the counter of its next mask). */
uint64_t fl_dropout_counter(const fl_module *m);
/* 13_resnet's ResBlock(ni, nf, stride 1|2, ks) with act = GeneralRelu(leak, sub) (leak = sub = 0:
 * ReLU): act(convs(x) + idconv(pool(x))), children named as PyTorch's attributes:
 *   convs  = Sequential(Sequential(Conv2d(ni,nf,ks,1), BatchNorm2d(nf), act),
 *                       Sequential(Conv2d(nf,nf,ks,stride), BatchNorm2d(nf)))
 *   idconv = Sequential(Conv2d(ni,nf,1,1))   only when ni != nf
 *   pool   = AvgPool2d(2, ceil_mode=1)       only when stride != 1
 *   act. */
fl_module *fl_resblock_new(int ni, int nf, int stride, int ks, float leak, float sub, fl_rng *rng);
/* A Sequential (state_dict names "0", "1", ...) whose input may also be flat images (N, c*h*w):
 * it views them as (N, c, h, w) (no copy) before the first child. Takes ownership of the n modules. */
fl_module *fl_image_sequential_new(int n, fl_module **mods, int c, int h, int w);
/* The course's init_weights(leaky=leak) applied to m and every child: the weight of each Conv2d
 * and Linear drawn again from N(0, gain^2 / fan_in), gain = sqrt(2 / (1 + leak^2)) (PyTorch's
 * kaiming_normal_(w, a=leak)); biases are left alone. Weights must be on the CPU. */
void fl_module_init_kaiming(fl_module *m, float leak, fl_rng *rng);

/* Prints the course's Learner.summary for an input of shape input_shape[ndim] (a zero tensor; the
 * batch dimension included): per layer (the children of a Sequential, else m itself) its kind,
 * input and output shapes, parameter count and MFLOPs per sample (2 x the multiply-adds of its
 * Conv2d and Linear layers; BatchNorm, activations and pools not counted), then
 * "total MFLOPs: X per sample (...)" and, last, "total params: N". Runs one forward in eval mode
 * without a tape: running statistics, dropout counters, grads and training flags are left as
 * they were. FL_ERR_NOMEM if memory runs out. */
fl_status fl_module_summary(fl_module *m, int ndim, const int64_t *input_shape, FILE *out);

/* Named models for 1x28x28 images and 10 classes, initialised from seed and collated:
 *   "mlp"     the lesson's Linear(784,50)-ReLU-Linear(50,10);
 *   "cnn"     10_activations' stride-2 CNN: convs 1->8 (ks 5)->16->32->64->10 with ReLU, Flatten
 *             (PyTorch's default init); 30,362 params (checked in tests/test_models.c);
 *   "resnet"  13_resnet's: ResBlock(1,8), five stride-2 ResBlocks to 256, Flatten,
 *             Linear(256,10,bias=False), BatchNorm1d(10), GeneralRelu(0.1, 0.4), kaiming-normal
 *             init with leak 0.1: 1,228,908 params.
 *   "cnn_bn"  11_initializing's get_model(act_gr, norm=BatchNorm2d), the model of 12_accel_sgd:
 *             four stride-2 conv + BatchNorm2d + GeneralRelu blocks 1 -> 64, a last conv to 10,
 *             Flatten; kaiming-normal (leak 0.1): 30,394 params.
 *   "resnet_wide" 14_augment's: a ResBlock(1,16,ks=5) stem, five stride-2 ResBlocks to 512,
 *             Flatten, Linear(512,10,bias=False), BatchNorm1d(10).
 * The conv models take (N, 1, 28, 28) or flat (N, 784) batches (viewed as images, no copy).
 * NULL with FL_ERR_ARG naming the known models for any other name. */
fl_module *fl_model_new(const char *name, uint64_t seed);
/* The same with a Dropout(drop) layer before the head, for the models that have the place for
 * one (fl_model_has_dropout: resnet, resnet_wide; between Flatten and the Linear, which then
 * moves one index up in the state_dict names). drop 0: fl_model_new's model. FL_ERR_ARG for a
 * drop outside [0, 1) or a model without the place. */
fl_module *fl_model_new_drop(const char *name, uint64_t seed, float drop);
int fl_model_has_dropout(const char *name);
/* The known names, comma-separated ("mlp, cnn, cnn_bn, resnet, resnet_wide"), for messages and --help. */
const char *fl_model_names(void);
/* 1 for the named models that are conv nets (they train on inputs normalised as the course's
 * (x - 0.28) / 0.35), 0 otherwise. */
int fl_model_is_conv(const char *name);

/* ---- weights in safetensors (https://github.com/huggingface/safetensors) ----
 * Tensors are named as PyTorch's state_dict names them for the same module tree (the index of a
 * child in its Sequential or its attribute name (fl_module.name), then "weight"/"bias" and the
 * buffers "running_mean"/"running_var": "0.weight", "0.bias", "2.weight", "2.bias";
 * "0.convs.0.1.running_mean"), stored as F32 with the shapes of the tensors, so torch's
 * load_state_dict(strict=True) takes them. BatchNorm's num_batches_tracked is not stored: torch
 * fills it in when a state_dict has no version metadata, as one read from a file has. Works for
 * a model on any device (copies go through the tensor API). */

/* Writes every parameter and buffer of m to `path`, with __metadata__ {"format": "pt", "flexlearn_model":
 * model_name} (model_name may be NULL: ""). Writes path.tmp, fsyncs it and renames it over
 * path, so a crash or failure leaves the previous file as it was; on failure the .tmp is
 * removed. Returns FL_OK, FL_ERR_IO (cannot create/write/fsync/rename, or path exists and is
 * not a regular file; the reason names the path) or FL_ERR_NOMEM. m is only read; the caller
 * keeps ownership of everything. */
fl_status fl_save_safetensors(fl_module *m, const char *path, const char *model_name);
/* Loads m's parameters and buffers from `path`, which must hold exactly m's tensors (names and shapes), all
 * F32, with offsets that cover the data exactly once. Everything is validated before the first
 * parameter is written: on any error m is untouched. Returns FL_OK, FL_ERR_IO (cannot open or
 * read), FL_ERR_FORMAT (anything wrong in the file: one line naming the file, the tensor if
 * any, and what is wrong; a wrong shape names the file's and the model's) or FL_ERR_NOMEM.
 * Nothing is allocated in proportion to what the header claims, only to the file's size. */
fl_status fl_load_safetensors(fl_module *m, const char *path);

/* A loss: (preds, targets) -> scalar in g. fl_cross_entropy and fl_mse have this type. */
typedef fl_tensor *(*fl_loss_fn)(fl_graph *g, fl_tensor *preds, fl_tensor *targets);

#ifdef __cplusplus
}
#endif
#endif
