/* flexlearn nn: modules (Linear, ReLU, Sequential), PyTorch's default init, get_model.
 *
 * A module owns its parameters and children. After fl_module_collate() (get_model does it)
 * all parameters of a model live in ONE contiguous buffer and all their grads in another, so
 * SGD, zeroing, momentum scaling, snapshots and device moves are one call each; each
 * parameter tensor is then a view into those buffers.
 */
#ifndef FL_NN_H
#define FL_NN_H

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
};

/* y = m(x) */
fl_tensor *fl_module_forward(fl_module *m, fl_graph *g, fl_tensor *x);
/* Sets training mode on m and every child. */
void fl_module_train(fl_module *m, int training);
/* Fills out[] (may be NULL to count) with every parameter, depth-first in registration order
 * (PyTorch's order: 0.weight, 0.bias, 2.weight, 2.bias); returns the count. */
int fl_module_parameters(fl_module *m, fl_tensor **out, int max);
/* Moves all parameters into one buffer and all grads (zeroed) into another. Idempotent. */
fl_status fl_module_collate(fl_module *m);
/* Moves the model (its flat buffers) to a device. Requires a collated model. */
fl_status fl_module_to(fl_module *m, fl_device dev);
/* Total parameter count. */
int64_t fl_module_numel(fl_module *m);
/* FNV-1a 64 over the bytes of every parameter (host copy): a fingerprint for reproducibility. */
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

/* Named models for 1x28x28 images and 10 classes, initialised from seed and collated: "mlp"
 * (the lesson's 784-50-10). NULL with FL_ERR_ARG naming the known models for any other name. */
fl_module *fl_model_new(const char *name, uint64_t seed);
/* The known names, comma-separated ("mlp"), for messages and --help. */
const char *fl_model_names(void);

/* ---- weights in safetensors (https://github.com/huggingface/safetensors) ----
 * Tensors are named as PyTorch's state_dict names them for the same module tree (the index of a
 * child in its Sequential, then "weight"/"bias": "0.weight", "0.bias", "2.weight", "2.bias"),
 * stored as F32 with the shapes of the parameters, so torch's load_state_dict(strict=True)
 * takes them. Works for a model on any device (copies go through the tensor API). */

/* Writes every parameter of m to `path`, with __metadata__ {"format": "pt", "flexlearn_model":
 * model_name} (model_name may be NULL: ""). Writes path.tmp, fsyncs it and renames it over
 * path, so a crash or failure leaves the previous file as it was; on failure the .tmp is
 * removed. Returns FL_OK, FL_ERR_IO (cannot create/write/fsync/rename, or path exists and is
 * not a regular file; the reason names the path) or FL_ERR_NOMEM. m is only read; the caller
 * keeps ownership of everything. */
fl_status fl_save_safetensors(fl_module *m, const char *path, const char *model_name);
/* Loads m's parameters from `path`, which must hold exactly m's tensors (names and shapes), all
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
