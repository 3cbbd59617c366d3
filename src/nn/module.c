/* Modules: the generic part (forward dispatch, parameters, train mode, collating parameters into
 * one buffer, device moves, hashing, freeing). */
#include <string.h>

#include "backend/backend.h"
#include "core/internal.h"
#include "fl/nn.h"

fl_tensor *fl_module_forward(fl_module *m, fl_graph *g, fl_tensor *x) {
  FL_CHECK(m && m->ops && m->ops->forward, "fl_module_forward: module has no forward");
  fl_tensor *y = m->ops->forward(m, g, x);
  if (m->hook && y && m->hook(m, x, y, m->hook_ctx) != FL_OK) return NULL;
  return y;
}

void fl_module_train(fl_module *m, int training) {
  m->training = training;
  for (int i = 0; i < m->n_children; i++) fl_module_train(m->children[i], training);
}

int fl_module_parameters(fl_module *m, fl_tensor **out, int max) {
  int n = 0;
  for (int i = 0; i < m->n_params; i++) {
    if (out && n < max) out[n] = m->params[i];
    n++;
  }
  for (int i = 0; i < m->n_children; i++)
    n += fl_module_parameters(m->children[i], out ? out + (n < max ? n : max) : NULL, n < max ? max - n : 0);
  return n;
}

int fl_module_buffers(fl_module *m, fl_tensor **out, int max) {
  int n = 0;
  for (int i = 0; i < m->n_buffers; i++) {
    if (out && n < max) out[n] = m->buffers[i];
    n++;
  }
  for (int i = 0; i < m->n_children; i++)
    n += fl_module_buffers(m->children[i], out ? out + (n < max ? n : max) : NULL, n < max ? max - n : 0);
  return n;
}

/* Every parameter (bufs 0) or every buffer (bufs 1) of m, malloc'd (free it); count in *n. */
static fl_tensor **all_tensors(fl_module *m, int bufs, int *n) {
  *n = bufs ? fl_module_buffers(m, NULL, 0) : fl_module_parameters(m, NULL, 0);
  fl_tensor **p = fl_xmalloc((size_t)(*n ? *n : 1) * sizeof *p);
  if (bufs) fl_module_buffers(m, p, *n);
  else fl_module_parameters(m, p, *n);
  return p;
}

int64_t fl_module_numel(fl_module *m) {
  int n = fl_module_parameters(m, NULL, 0);
  fl_tensor **p = fl_xmalloc((size_t)(n ? n : 1) * sizeof *p);
  fl_module_parameters(m, p, n);
  int64_t s = 0;
  for (int i = 0; i < n; i++) s += fl_numel(p[i]);
  free(p);
  return s;
}

/* Offsets are rounded up to 16 floats (64 bytes) so every parameter starts aligned. */
static int64_t padded(int64_t n) { return (n + 15) & ~(int64_t)15; }

fl_status fl_module_collate(fl_module *m) {
  if (m->flat) return FL_OK;
  int n, nb;
  fl_tensor **p = all_tensors(m, 0, &n), **b = all_tensors(m, 1, &nb);
  int64_t total = 0, btotal = 0;
  for (int i = 0; i < n; i++) {
    FL_CHECK(p[i]->device == FL_CPU && p[i]->owned == p[i]->data,
             "fl_module_collate: parameters must be owning CPU tensors before collating");
    total += padded(fl_numel(p[i]));
  }
  for (int i = 0; i < nb; i++) {
    FL_CHECK(b[i]->device == FL_CPU && b[i]->owned == b[i]->data && b[i]->dtype == FL_F32,
             "fl_module_collate: buffers must be owning f32 CPU tensors before collating");
    btotal += padded(fl_numel(b[i]));
  }
  /* everything allocated before anything moves: a failure leaves the model as it was */
  fl_tensor *flat = fl_tensor_new1(FL_F32, FL_CPU, total ? total : 1);
  fl_tensor *grad = flat ? fl_tensor_new1(FL_F32, FL_CPU, total ? total : 1) : NULL;
  fl_tensor *fb = grad && nb ? fl_tensor_new1(FL_F32, FL_CPU, btotal ? btotal : 1) : NULL;
  if (!grad || (nb && !fb)) {
    fl_tensor_free(flat), fl_tensor_free(grad);
    free(p), free(b);
    return FL_ERR_NOMEM;
  }
  int64_t off = 0;
  for (int i = 0; i < n; i++) {
    fl_tensor *t = p[i];
    size_t bytes = (size_t)fl_numel(t) * sizeof(float);
    float *dst = (float *)flat->data + off;
    memcpy(dst, t->data, bytes);
    free(t->owned);
    t->data = dst;
    t->owned = NULL;
    fl_tensor_free(t->grad);
    t->grad = fl_xcalloc(1, sizeof *t->grad);
    *t->grad = (fl_tensor){.data = (float *)grad->data + off, .dtype = FL_F32, .device = FL_CPU};
    fl__set_shape(t->grad, t->ndim, t->shape);
    t->requires_grad = 1;
    off += padded(fl_numel(t));
  }
  /* the buffers: their own flat tensor, no grads (the optimiser never sees them) */
  off = 0;
  for (int i = 0; i < nb; i++) {
    fl_tensor *t = b[i];
    float *dst = (float *)fb->data + off;
    memcpy(dst, t->data, (size_t)fl_numel(t) * sizeof(float));
    free(t->owned);
    t->data = dst;
    t->owned = NULL;
    off += padded(fl_numel(t));
  }
  free(p), free(b);
  m->flat = flat;
  m->flat_grad = grad;
  m->flat_buf = fb;
  m->device = FL_CPU;
  return FL_OK;
}

fl_status fl_module_to(fl_module *m, fl_device dev) {
  FL_CHECK(m->flat, "fl_module_to: collate the model first (fl_module_collate)");
  if (m->device == dev) return FL_OK;
  float *old = m->flat->data, *old_g = m->flat_grad->data;
  float *old_b = m->flat_buf ? m->flat_buf->data : NULL;
  fl_status s = fl_tensor_to(m->flat, dev);
  if (s == FL_OK) s = fl_tensor_to(m->flat_grad, dev);
  if (s == FL_OK && m->flat_buf && (s = fl_tensor_to(m->flat_buf, dev)) != FL_OK)
    fl_tensor_to(m->flat_grad, m->device);   /* undo the grads' move */
  if (s != FL_OK) {
    fl_tensor_to(m->flat, m->device);   /* undo (only the first ones can have moved) */
    return s;
  }
  int nb;
  fl_tensor **b = all_tensors(m, 1, &nb);
  for (int i = 0; i < nb; i++) {
    b[i]->data = (float *)m->flat_buf->data + ((float *)b[i]->data - old_b);
    b[i]->device = dev;
  }
  free(b);
  int n = fl_module_parameters(m, NULL, 0);
  fl_tensor **p = fl_xmalloc((size_t)(n ? n : 1) * sizeof *p);
  fl_module_parameters(m, p, n);
  for (int i = 0; i < n; i++) {
    ptrdiff_t off = (float *)p[i]->data - old;
    ptrdiff_t goff = (float *)p[i]->grad->data - old_g;
    p[i]->data = (float *)m->flat->data + off;
    p[i]->grad->data = (float *)m->flat_grad->data + goff;
    p[i]->device = p[i]->grad->device = dev;
  }
  free(p);
  m->device = dev;
  return FL_OK;
}

uint64_t fl_module_hash(fl_module *m) {
  uint64_t h = 0xcbf29ce484222325ULL;
  int np, nb;
  fl_tensor **ps = all_tensors(m, 0, &np), **bs = all_tensors(m, 1, &nb);
  int n = np + nb;
  fl_tensor **p = fl_xmalloc((size_t)(n ? n : 1) * sizeof *p);
  if (np) memcpy(p, ps, (size_t)np * sizeof *p);
  if (nb) memcpy(p + np, bs, (size_t)nb * sizeof *p);
  free(ps), free(bs);
  for (int i = 0; i < n; i++) {
    size_t bytes = (size_t)fl_numel(p[i]) * sizeof(float);
    unsigned char *buf = fl_xmalloc(bytes ? bytes : 1);
    fl_tensor_to_host(p[i], buf);
    for (size_t k = 0; k < bytes; k++) h = (h ^ buf[k]) * 0x100000001b3ULL;
    free(buf);
  }
  free(p);
  return h;
}

void fl_module_free(fl_module *m) {
  if (!m) return;
  for (int i = 0; i < m->n_children; i++) fl_module_free(m->children[i]);
  free(m->children);
  for (int i = 0; i < m->n_params; i++) fl_tensor_free(m->params[i]);
  free(m->params);
  for (int i = 0; i < m->n_buffers; i++) fl_tensor_free(m->buffers[i]);
  free(m->buffers);
  if (m->ops && m->ops->free_impl) m->ops->free_impl(m);
  fl_tensor_free(m->flat);
  fl_tensor_free(m->flat_grad);
  fl_tensor_free(m->flat_buf);
  free(m);
}
