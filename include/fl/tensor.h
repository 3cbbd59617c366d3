/* flexlearn tensors and reverse-mode autograd.
 *
 * A tensor is a view (shape + strides) over storage on one device. float32 (FL_F32) for values,
 * int32 (FL_I32) for class labels. At most FL_MAX_DIMS dimensions.
 *
 * Ownership:
 *  - fl_tensor_new*() tensors own their storage: free them with fl_tensor_free().
 *  - tensors returned by ops live in a fl_graph (the per-step arena + tape): they stay valid
 *    until the next fl_graph_reset() and must not be freed.
 *  - views (fl_view, fl_reshape) share storage and never free it.
 *
 * Autograd: an op whose inputs require grad records a node on the graph's tape (unless the
 * graph is in no-grad mode). fl_backward(g, loss) runs the tape in reverse from a scalar and
 * ACCUMULATES (+=) into each leaf's grad, as PyTorch does; intermediate grads come from the
 * arena. Leaves that require grad must have a grad tensor (parameters get one from nn).
 * A leaf whose grad_none is set (zero_grad's set-to-none) gets its grad written, not added to.
 */
#ifndef FL_TENSOR_H
#define FL_TENSOR_H

#include "fl/core.h"

#ifdef __cplusplus
extern "C" {
#endif

#define FL_MAX_DIMS 4

typedef enum fl_dtype { FL_F32 = 0, FL_I32 = 1 } fl_dtype;

typedef struct fl_node fl_node;

typedef struct fl_tensor {
  void *data;                      /* first element, on `device` */
  int ndim;
  int64_t shape[FL_MAX_DIMS];
  int64_t stride[FL_MAX_DIMS];     /* in elements */
  fl_dtype dtype;
  fl_device device;
  int requires_grad;
  struct fl_tensor *grad;          /* same shape, contiguous; NULL until needed */
  int grad_none;                   /* 1 after zero_grad: grad holds no value (PyTorch's None);
                                      the next backward writes it instead of adding to it */
  fl_node *node;                   /* tape node that produced it (NULL for leaves) */
  void *owned;                     /* storage to free with the tensor (NULL: not owner) */
  const char *name;                /* optional, for messages ("0.weight") */
} fl_tensor;

/* ---- creation (owning; free with fl_tensor_free) ---- */
/* Zero-filled contiguous tensor on `dev`; NULL (with fl_last_error) if memory runs out. */
fl_tensor *fl_tensor_new(fl_dtype dt, fl_device dev, int ndim, const int64_t *shape);
/* Convenience shapes: fl_tensor_new2(FL_F32, FL_CPU, rows, cols). */
fl_tensor *fl_tensor_new1(fl_dtype dt, fl_device dev, int64_t d0);
fl_tensor *fl_tensor_new2(fl_dtype dt, fl_device dev, int64_t d0, int64_t d1);
/* Copy of host data (n elements of dt, C order) into a new tensor of that shape on `dev`. */
fl_tensor *fl_tensor_from_data(fl_dtype dt, fl_device dev, int ndim, const int64_t *shape,
                               const void *host_data);
/* New tensor uniform in [lo, hi) / normal(mean, std) drawn from rng (CPU draws, then copied). */
fl_tensor *fl_tensor_uniform(fl_rng *rng, fl_device dev, int ndim, const int64_t *shape,
                             float lo, float hi);
fl_tensor *fl_tensor_normal(fl_rng *rng, fl_device dev, int ndim, const int64_t *shape,
                            float mean, float std);
/* Frees storage if owned, its grad if owned, and the struct. Accepts NULL. */
void fl_tensor_free(fl_tensor *t);

/* ---- shape helpers ---- */
int64_t fl_numel(const fl_tensor *t);
size_t fl_dtype_size(fl_dtype dt);
int fl_is_contiguous(const fl_tensor *t);
int fl_same_shape(const fl_tensor *a, const fl_tensor *b);
/* "[1024, 784] f32 cpu" into buf. */
const char *fl_shape_str(const fl_tensor *t, char *buf, size_t n);

/* ---- copies (any device to any device; shapes must match, both contiguous) ---- */
void fl_tensor_copy(fl_tensor *dst, const fl_tensor *src);
/* Copies the tensor's contents to host memory (numel elements). */
void fl_tensor_to_host(const fl_tensor *t, void *host);
/* The value of a 1-element f32 tensor (a device->host copy when on the GPU: a sync). */
float fl_tensor_item(const fl_tensor *t);
/* Moves an owning tensor's storage (and its grad) to `dev` in place. */
fl_status fl_tensor_to(fl_tensor *t, fl_device dev);
/* Fills an f32 tensor with zeros / a value. */
void fl_tensor_zero(fl_tensor *t);
void fl_tensor_fill(fl_tensor *t, float v);
/* t *= s, in place (no autograd): MomentumLearner scales the grad buffer with it. */
void fl_tensor_scale(fl_tensor *t, float s);
/* Gives an owning tensor a zeroed grad tensor of its shape and sets requires_grad. */
fl_status fl_tensor_require_grad(fl_tensor *t);

/* ---- the per-step graph: arena for tensors + the autograd tape ---- */
typedef struct fl_graph fl_graph;

fl_graph *fl_graph_new(void);
void fl_graph_free(fl_graph *g);        /* accepts NULL */
/* Forgets every tensor and node made since the last reset. Memory is kept: after the first
 * steps (which size the arena) a step allocates nothing. */
void fl_graph_reset(fl_graph *g);
/* no-grad mode (validation): ops record nothing. Returns the previous setting. */
int fl_graph_set_grad(fl_graph *g, int enabled);
int fl_graph_grad_enabled(const fl_graph *g);
/* Bytes the arena holds (all devices) and the count of growths so far (for tests). */
size_t fl_graph_capacity(const fl_graph *g);
int fl_graph_growths(const fl_graph *g);
/* An uninitialised arena tensor (valid until reset). */
fl_tensor *fl_graph_tensor(fl_graph *g, fl_dtype dt, fl_device dev, int ndim, const int64_t *shape);
/* A view of t (shares storage; no copy) with a new shape; t must be contiguous and the element
 * counts equal. One dimension may be -1 (inferred). The view's grad flows back to t. */
fl_tensor *fl_reshape(fl_graph *g, fl_tensor *t, int ndim, const int64_t *shape);
/* [N, ...] -> [N, prod(...)] */
fl_tensor *fl_flatten(fl_graph *g, fl_tensor *t);

/* ---- ops (results live in g; shapes in comments: B batch, I in, O out, C classes) ---- */
fl_tensor *fl_matmul(fl_graph *g, fl_tensor *a, fl_tensor *b);            /* (M,K)x(K,N) -> (M,N) */
fl_tensor *fl_linear(fl_graph *g, fl_tensor *x, fl_tensor *w, fl_tensor *b); /* (B,I),(O,I),(O)|NULL -> (B,O) */
/* relu(linear(x, w, b)) fused: one pass for bias + ReLU, and in the backward one for the ReLU
 * mask + bias gradient. Same values and gradients, bit for bit, as fl_relu(fl_linear(...)). */
fl_tensor *fl_linear_relu(fl_graph *g, fl_tensor *x, fl_tensor *w, fl_tensor *b);
/* Elementwise with broadcasting (numpy rules, right-aligned, up to FL_MAX_DIMS). */
fl_tensor *fl_add(fl_graph *g, fl_tensor *a, fl_tensor *b);
fl_tensor *fl_sub(fl_graph *g, fl_tensor *a, fl_tensor *b);
fl_tensor *fl_mul(fl_graph *g, fl_tensor *a, fl_tensor *b);
fl_tensor *fl_relu(fl_graph *g, fl_tensor *x);
fl_tensor *fl_sum(fl_graph *g, fl_tensor *x);                              /* -> scalar (1) */
fl_tensor *fl_mean(fl_graph *g, fl_tensor *x);                             /* -> scalar (1) */
fl_tensor *fl_log_softmax(fl_graph *g, fl_tensor *x);                      /* (B,C), over C */
/* Mean cross-entropy of logits (B,C) against int32 targets (B); fused and stable. */
fl_tensor *fl_cross_entropy(fl_graph *g, fl_tensor *logits, fl_tensor *targets);
/* Mean squared error, same shapes; grad flows to pred only. */
fl_tensor *fl_mse(fl_graph *g, fl_tensor *pred, fl_tensor *target);

/* ---- conv-net ops (issue 7). Inputs f32, contiguous, NCHW. CPU: oneDNN primitives (plain C
 * loops in the DNNL=0 build), every result the same bits at any thread count. Misuse (shapes,
 * dtypes, devices) aborts with file:line (FL_CHECK). On a CUDA tensor, until the CUDA kernels
 * exist, an op returns NULL with fl_error(FL_ERR_DEVICE, "fl_conv2d: not implemented on CUDA
 * yet"), so the loss is NULL and fl_backward / the Learner report that line. */
/* Conv2d: x (N,C,H,W), w (O,C,k,k), b (O) or NULL -> (N,O,Ho,Wo), Ho = (H + 2*pad - k)/stride + 1.
 * k 1/3/5, stride 1/2, pad k/2 (any pad >= 0, stride >= 1 accepted). */
fl_tensor *fl_conv2d(fl_graph *g, fl_tensor *x, fl_tensor *w, fl_tensor *b, int stride, int pad);
/* Batch norm over every dim but 1: x (N,C) or (N,C,H,W); weight, bias (C) or NULL (affine off);
 * running_mean, running_var (C) buffers (no grad). training: normalise with the batch mean and the
 * biased variance, then running = (1-momentum)*running + momentum*batch_stat, with the UNBIASED
 * batch variance (PyTorch's rule), updated in the forward; eval: normalise with the running stats. */
fl_tensor *fl_batch_norm(fl_graph *g, fl_tensor *x, fl_tensor *weight, fl_tensor *bias,
                         fl_tensor *running_mean, fl_tensor *running_var, int training,
                         float momentum, float eps);
/* Average pooling k x k, stride k, no padding; ceil_mode 1 keeps the partial windows at the
 * edges (averaging only the elements inside, as PyTorch's AvgPool2d(2, ceil_mode=True) does). */
fl_tensor *fl_avg_pool2d(fl_graph *g, fl_tensor *x, int k, int ceil_mode);
/* (N,C,H,W) -> (N,C): the mean over H and W. */
fl_tensor *fl_global_avg_pool(fl_graph *g, fl_tensor *x);
/* The course's GeneralRelu: leaky_relu(x, leak) (leak 0: relu), then minus sub, then clamped
 * above at maxv when maxv is finite (pass INFINITY for none). Any shape. */
fl_tensor *fl_general_relu(fl_graph *g, fl_tensor *x, float leak, float sub, float maxv);
/* Dropout with probability p (0 <= p < 1): zeroes each element with probability p and scales the
 * rest by 1/(1-p). The mask is a pure function of (seed, counter, element index) through the
 * counter-based RNG (fl_rng_hash in fl/core.h), so it is the same at any thread count. The caller
 * (the Dropout module) passes training==0 for the identity. */
fl_tensor *fl_dropout(fl_graph *g, fl_tensor *x, float p, int training, uint64_t seed, uint64_t counter);

/* Reverse-mode from a 1-element tensor: seeds d(loss)=1 and accumulates into leaf grads. */
fl_status fl_backward(fl_graph *g, fl_tensor *loss);

#ifdef __cplusplus
}
#endif
#endif
