/* The conv-net modules of the course (10_activations .. 14_augment): Conv2d, BatchNorm1d/2d,
 * AvgPool2d, GlobalAvgPool, GeneralRelu, Dropout, Flatten, ResBlock, a Sequential that takes
 * flat images, and init_weights (kaiming normal with a leak).
 *
 * Each module keeps PyTorch's structure so state_dict names and parameter counts match: a
 * ResBlock's children are named convs / idconv / pool / act as the attributes of miniai's
 * ResBlock, and a BatchNorm's running statistics are buffers (fl_module.buffers). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fl/nn.h"
#include "nn/nn_internal.h"

static fl_module *module_new(const fl_module_ops *ops, void *impl) {
  fl_module *m = fl_xcalloc(1, sizeof *m);
  m->ops = ops;
  m->training = 1;
  m->impl = impl;
  return m;
}

static void free_impl(fl_module *m) { free(m->impl); }

static fl_tensor *param(fl_tensor *t, const char *name) {
  FL_CHECK(t, "out of memory creating %s: %s", name, fl_last_error());
  t->name = name;
  FL_CHECK(fl_tensor_require_grad(t) == FL_OK, "out of memory creating %s", name);
  return t;
}

/* ---- Conv2d(ni, nf, ks, stride, padding ks//2, bias): w (nf, ni, ks, ks), b (nf) ---- */
typedef struct conv_impl {
  int ks, stride, pad;
  int64_t out_hw;       /* Ho * Wo of the last forward (for the summary's FLOPs) */
} conv_impl;

static fl_tensor *conv_forward(fl_module *m, fl_graph *g, fl_tensor *x) {
  conv_impl *c = m->impl;
  fl_tensor *y = fl_conv2d(g, x, m->params[0], m->n_params > 1 ? m->params[1] : NULL, c->stride, c->pad);
  if (y) c->out_hw = y->shape[2] * y->shape[3];
  return y;
}
static const fl_module_ops conv_ops = {"Conv2d", conv_forward, free_impl};

fl_module *fl_conv2d_new(int ni, int nf, int ks, int stride, int bias, fl_rng *rng) {
  FL_CHECK(ni > 0 && nf > 0 && ks > 0 && stride > 0, "fl_conv2d_new: ni %d, nf %d, ks %d, stride %d must be > 0",
           ni, nf, ks, stride);
  conv_impl *c = fl_xcalloc(1, sizeof *c);
  *c = (conv_impl){ks, stride, ks / 2, 0};
  fl_module *m = module_new(&conv_ops, c);
  /* PyTorch's default: kaiming_uniform_(a=sqrt(5)) = U(+-1/sqrt(fan_in)), the bias the same */
  float bound = 1.0f / sqrtf((float)ni * ks * ks);
  int64_t ws[4] = {nf, ni, ks, ks}, bs[1] = {nf};
  m->n_params = bias ? 2 : 1;
  m->params = fl_xcalloc((size_t)m->n_params, sizeof *m->params);
  m->params[0] = param(fl_tensor_uniform(rng, FL_CPU, 4, ws, -bound, bound), "weight");
  if (bias) m->params[1] = param(fl_tensor_uniform(rng, FL_CPU, 1, bs, -bound, bound), "bias");
  return m;
}

/* ---- BatchNorm1d / BatchNorm2d(nf): weight 1, bias 0, running_mean 0, running_var 1 ---- */
static fl_tensor *bn_forward(fl_module *m, fl_graph *g, fl_tensor *x) {
  return fl_batch_norm(g, x, m->params[0], m->params[1], m->buffers[0], m->buffers[1], m->training,
                       0.1f, 1e-5f);
}
static const fl_module_ops bn1_ops = {"BatchNorm1d", bn_forward, NULL};
static const fl_module_ops bn2_ops = {"BatchNorm2d", bn_forward, NULL};

static fl_module *batchnorm_new(const fl_module_ops *ops, int nf) {
  FL_CHECK(nf > 0, "fl_batchnorm_new: nf %d must be > 0", nf);
  fl_module *m = module_new(ops, NULL);
  int64_t s[1] = {nf};
  m->n_params = 2;
  m->params = fl_xcalloc(2, sizeof *m->params);
  m->params[0] = param(fl_tensor_new(FL_F32, FL_CPU, 1, s), "weight");
  fl_tensor_fill(m->params[0], 1.0f);
  m->params[1] = param(fl_tensor_new(FL_F32, FL_CPU, 1, s), "bias");
  m->n_buffers = 2;
  m->buffers = fl_xcalloc(2, sizeof *m->buffers);
  m->buffers[0] = fl_tensor_new(FL_F32, FL_CPU, 1, s);
  m->buffers[1] = fl_tensor_new(FL_F32, FL_CPU, 1, s);
  FL_CHECK(m->buffers[0] && m->buffers[1], "fl_batchnorm_new: out of memory");
  fl_tensor_fill(m->buffers[1], 1.0f);
  m->buffers[0]->name = "running_mean";
  m->buffers[1]->name = "running_var";
  return m;
}
fl_module *fl_batchnorm1d_new(int nf) { return batchnorm_new(&bn1_ops, nf); }
fl_module *fl_batchnorm2d_new(int nf) { return batchnorm_new(&bn2_ops, nf); }

/* ---- AvgPool2d(k, ceil_mode), GlobalAvgPool, Flatten ---- */
typedef struct pool_impl { int k, ceil_mode; } pool_impl;
static fl_tensor *avgpool_forward(fl_module *m, fl_graph *g, fl_tensor *x) {
  pool_impl *p = m->impl;
  return fl_avg_pool2d(g, x, p->k, p->ceil_mode);
}
static const fl_module_ops avgpool_ops = {"AvgPool2d", avgpool_forward, free_impl};
fl_module *fl_avg_pool2d_new(int k, int ceil_mode) {
  FL_CHECK(k > 0, "fl_avg_pool2d_new: k %d must be > 0", k);
  pool_impl *p = fl_xcalloc(1, sizeof *p);
  *p = (pool_impl){k, ceil_mode};
  return module_new(&avgpool_ops, p);
}

static fl_tensor *gap_forward(fl_module *m, fl_graph *g, fl_tensor *x) {
  (void)m;
  return fl_global_avg_pool(g, x);
}
static const fl_module_ops gap_ops = {"GlobalAvgPool", gap_forward, NULL};
fl_module *fl_global_avg_pool_new(void) { return module_new(&gap_ops, NULL); }

static fl_tensor *flatten_forward(fl_module *m, fl_graph *g, fl_tensor *x) {
  (void)m;
  return fl_flatten(g, x);
}
static const fl_module_ops flatten_ops = {"Flatten", flatten_forward, NULL};
fl_module *fl_flatten_new(void) { return module_new(&flatten_ops, NULL); }

/* ---- GeneralRelu(leak, sub, maxv) ---- */
typedef struct grelu_impl { float leak, sub, maxv; } grelu_impl;
static fl_tensor *grelu_forward(fl_module *m, fl_graph *g, fl_tensor *x) {
  grelu_impl *a = m->impl;
  return fl_general_relu(g, x, a->leak, a->sub, a->maxv);
}
static const fl_module_ops grelu_ops = {"GeneralRelu", grelu_forward, free_impl};
fl_module *fl_general_relu_new(float leak, float sub, float maxv) {
  FL_CHECK(leak >= 0 && !isnan(sub) && !isnan(maxv), "fl_general_relu_new: leak %g, sub %g, maxv %g", (double)leak,
           (double)sub, (double)maxv);
  grelu_impl *a = fl_xcalloc(1, sizeof *a);
  *a = (grelu_impl){leak, sub, maxv};
  return module_new(&grelu_ops, a);
}

/* ---- Dropout(p): a new mask every training forward (counter), none in eval ---- */
typedef struct dropout_impl { float p; uint64_t seed, counter; } dropout_impl;
static fl_tensor *dropout_forward(fl_module *m, fl_graph *g, fl_tensor *x) {
  dropout_impl *d = m->impl;
  if (!m->training || d->p == 0) return x;
  return fl_dropout(g, x, d->p, 1, d->seed, d->counter++);
}
static const fl_module_ops dropout_ops = {"Dropout", dropout_forward, free_impl};
fl_module *fl_dropout_new(float p, uint64_t seed) {
  FL_CHECK(p >= 0 && p < 1, "fl_dropout_new: p %g must be in [0, 1)", (double)p);
  dropout_impl *d = fl_xcalloc(1, sizeof *d);
  /* its own stream of the seed, so a model's dropouts and its init never share numbers */
  *d = (dropout_impl){p, fl_rng_hash(seed, FL_STREAM_AUGMENT, 0x64726f70 /* "drop" */), 0};
  return module_new(&dropout_ops, d);
}
uint64_t fl_dropout_counter(const fl_module *m) {
  FL_CHECK(m && m->ops == &dropout_ops, "fl_dropout_counter: not a Dropout module");
  return ((const dropout_impl *)m->impl)->counter;
}

/* ---- plain Sequential without fusions, reshaping flat images at its input ---- */
typedef struct img_impl { int64_t c, h, w; } img_impl;
static fl_tensor *img_seq_forward(fl_module *m, fl_graph *g, fl_tensor *x);
static const fl_module_ops img_seq_ops = {"Sequential", img_seq_forward, free_impl};

fl_tensor *fl__model_input(fl_module *m, fl_graph *g, fl_tensor *x) {
  if (!x || m->ops != &img_seq_ops) return x;
  img_impl *im = m->impl;
  if (x->ndim == 2 && x->shape[1] == im->c * im->h * im->w) {   /* (N, c*h*w) -> (N, c, h, w): a view */
    int64_t s[4] = {x->shape[0], im->c, im->h, im->w};
    return fl_reshape(g, x, 4, s);
  }
  return x;
}

static fl_tensor *img_seq_forward(fl_module *m, fl_graph *g, fl_tensor *x) {
  x = fl__model_input(m, g, x);
  for (int i = 0; i < m->n_children && x; i++) x = fl_module_forward(m->children[i], g, x);
  return x;
}

fl_module *fl_image_sequential_new(int n, fl_module **mods, int c, int h, int w) {
  FL_CHECK(n >= 0 && (n == 0 || mods) && c > 0 && h > 0 && w > 0, "fl_image_sequential_new: bad arguments");
  img_impl *im = fl_xcalloc(1, sizeof *im);
  *im = (img_impl){c, h, w};
  fl_module *m = module_new(&img_seq_ops, im);
  m->children = fl_xcalloc((size_t)(n ? n : 1), sizeof *m->children);
  for (int i = 0; i < n; i++) {
    FL_CHECK(mods[i], "fl_image_sequential_new: module %d is NULL", i);
    m->children[i] = mods[i];
  }
  m->n_children = n;
  return m;
}

/* ---- ResBlock (13_resnet, as taught): act(convs(x) + idconv(pool(x))) ----
 * conv(ni, nf, ks, stride, act, norm) is miniai's: Sequential(Conv2d(bias=True), [norm], [act]);
 * miniai's bias test (isinstance(norm, BatchNorm*), given the class) is false, so every conv
 * keeps its bias. idconv is conv(ni, nf, ks=1, stride=1, act=None) without the norm (the lesson's
 * version, whose "norm=norm" was added after it): Sequential(Conv2d) alone. That is what the
 * notebook's 1,228,908 parameters count (with a BatchNorm in idconv it would be 1,229,916). */
typedef struct res_impl { int idconv, pool, act; } res_impl;   /* child indices, -1: none */

static fl_module *act_new(float leak, float sub) {
  return leak == 0 && sub == 0 ? fl_relu_new() : fl_general_relu_new(leak, sub, INFINITY);
}

static fl_module *conv_block(int ni, int nf, int ks, int stride, int norm, int act, float leak, float sub,
                             fl_rng *rng) {
  fl_module *mods[3];
  int n = 0;
  mods[n++] = fl_conv2d_new(ni, nf, ks, stride, 1, rng);
  if (norm) mods[n++] = fl_batchnorm2d_new(nf);
  if (act) mods[n++] = act_new(leak, sub);
  return fl_sequential_new(n, mods);
}

static fl_tensor *res_forward(fl_module *m, fl_graph *g, fl_tensor *x) {
  res_impl *r = m->impl;
  fl_tensor *a = fl_module_forward(m->children[0], g, x);
  fl_tensor *b = x;
  if (r->pool >= 0) b = fl_module_forward(m->children[r->pool], g, b);
  if (r->idconv >= 0) b = fl_module_forward(m->children[r->idconv], g, b);
  if (!a || !b) return NULL;
  return fl_module_forward(m->children[r->act], g, fl_add(g, a, b));
}
static const fl_module_ops res_ops = {"ResBlock", res_forward, free_impl};

fl_module *fl_resblock_new(int ni, int nf, int stride, int ks, float leak, float sub, fl_rng *rng) {
  FL_CHECK(stride == 1 || stride == 2, "fl_resblock_new: stride %d (1 or 2)", stride);
  res_impl *r = fl_xcalloc(1, sizeof *r);
  fl_module *m = module_new(&res_ops, r);
  m->children = fl_xcalloc(4, sizeof *m->children);
  /* convs = Sequential(conv(ni, nf, stride 1), conv(nf, nf, stride, act=None)) */
  fl_module *convs[2] = {conv_block(ni, nf, ks, 1, 1, 1, leak, sub, rng),
                         conv_block(nf, nf, ks, stride, 1, 0, 0, 0, rng)};
  int n = 0;
  m->children[n] = fl_sequential_new(2, convs);
  m->children[n++]->name = "convs";
  r->idconv = r->pool = -1;
  if (ni != nf) {   /* conv(ni, nf, ks=1, stride=1, act=None): no norm */
    r->idconv = n;
    m->children[n] = conv_block(ni, nf, 1, 1, 0, 0, 0, 0, rng);
    m->children[n++]->name = "idconv";
  }
  if (stride != 1) {
    r->pool = n;
    m->children[n] = fl_avg_pool2d_new(2, 1);
    m->children[n++]->name = "pool";
  }
  r->act = n;
  m->children[n] = act_new(leak, sub);
  m->children[n++]->name = "act";
  m->n_children = n;
  return m;
}

/* ---- init_weights: kaiming_normal_(w, a=leak) on every Conv2d and Linear weight ---- */
void fl_module_init_kaiming(fl_module *m, float leak, fl_rng *rng) {
  const char *k = m->ops ? m->ops->kind : "";
  if ((!strcmp(k, "Conv2d") || !strcmp(k, "Linear")) && m->n_params > 0) {
    fl_tensor *w = m->params[0];
    FL_CHECK(w->device == FL_CPU && fl_is_contiguous(w), "fl_module_init_kaiming: weights must be on the CPU");
    int64_t fan_in = fl_numel(w) / w->shape[0];
    /* gain sqrt(2 / (1 + a^2)) for leaky_relu(a), std = gain / sqrt(fan_in) */
    double std = sqrt(2.0 / (1.0 + (double)leak * leak)) / sqrt((double)fan_in);
    float *d = w->data;
    for (int64_t i = 0; i < fl_numel(w); i++) d[i] = (float)(std * fl_rng_normal(rng));
  }
  for (int i = 0; i < m->n_children; i++) fl_module_init_kaiming(m->children[i], leak, rng);
}

/* ---- per-sample FLOPs of a subtree (2 x the multiply-adds of its Conv2d and Linear layers),
 * from the sizes of its last forward ---- */
int64_t fl__module_flops(const fl_module *m) {
  int64_t f = 0;
  if (m->ops == &conv_ops) f += 2 * fl_numel(m->params[0]) * ((const conv_impl *)m->impl)->out_hw;
  else if (m->ops && !strcmp(m->ops->kind, "Linear")) f += 2 * fl_numel(m->params[0]);
  for (int i = 0; i < m->n_children; i++) f += fl__module_flops(m->children[i]);
  return f;
}
