/* Tensors: creation, shapes, copies across devices. Storage comes from the device's backend. */
#include <stdio.h>
#include <string.h>

#include "backend/backend.h"
#include "core/internal.h"

size_t fl_dtype_size(fl_dtype dt) { return dt == FL_I32 ? sizeof(int32_t) : sizeof(float); }

int64_t fl_numel(const fl_tensor *t) {
  int64_t n = 1;
  for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
  return n;
}

void fl__set_shape(fl_tensor *t, int ndim, const int64_t *shape) {
  FL_CHECK(ndim >= 0 && ndim <= FL_MAX_DIMS, "tensor: %d dimensions (at most %d)", ndim, FL_MAX_DIMS);
  t->ndim = ndim;
  int64_t s = 1;
  for (int i = ndim - 1; i >= 0; i--) {
    FL_CHECK(shape[i] >= 0, "tensor: negative dimension %lld", (long long)shape[i]);
    t->shape[i] = shape[i];
    t->stride[i] = s;
    s *= shape[i];
  }
}

int fl_is_contiguous(const fl_tensor *t) {
  int64_t s = 1;
  for (int i = t->ndim - 1; i >= 0; i--) {
    if (t->shape[i] != 1 && t->stride[i] != s) return 0;
    s *= t->shape[i];
  }
  return 1;
}

int fl_same_shape(const fl_tensor *a, const fl_tensor *b) {
  if (a->ndim != b->ndim) return 0;
  for (int i = 0; i < a->ndim; i++)
    if (a->shape[i] != b->shape[i]) return 0;
  return 1;
}

const char *fl_shape_str(const fl_tensor *t, char *buf, size_t n) {
  size_t k = (size_t)snprintf(buf, n, "[");
  for (int i = 0; i < t->ndim && k < n; i++)
    k += (size_t)snprintf(buf + k, n - k, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
  if (k < n)
    snprintf(buf + k, n - k, "] %s %s", t->dtype == FL_I32 ? "i32" : "f32", fl_device_name(t->device));
  return buf;
}

fl_tensor *fl_tensor_new(fl_dtype dt, fl_device dev, int ndim, const int64_t *shape) {
  fl_tensor *t = fl_xcalloc(1, sizeof *t);
  t->dtype = dt;
  t->device = dev;
  fl__set_shape(t, ndim, shape);
  size_t bytes = (size_t)fl_numel(t) * fl_dtype_size(dt);
  const fl_backend *be = fl_backend_for(dev);
  t->data = t->owned = be->alloc(bytes);
  if (!t->data) {
    free(t);
    if (dev == FL_CPU) fl_error(FL_ERR_NOMEM, "out of memory allocating a tensor of %zu bytes", bytes);
    return NULL;
  }
  be->memset0(t->data, bytes);
  return t;
}

fl_tensor *fl_tensor_new1(fl_dtype dt, fl_device dev, int64_t d0) {
  return fl_tensor_new(dt, dev, 1, &d0);
}

fl_tensor *fl_tensor_new2(fl_dtype dt, fl_device dev, int64_t d0, int64_t d1) {
  int64_t s[2] = {d0, d1};
  return fl_tensor_new(dt, dev, 2, s);
}

fl_tensor *fl_tensor_from_data(fl_dtype dt, fl_device dev, int ndim, const int64_t *shape,
                               const void *host_data) {
  fl_tensor *t = fl_tensor_new(dt, dev, ndim, shape);
  if (t) fl_backend_for(dev)->from_host(t->data, host_data, (size_t)fl_numel(t) * fl_dtype_size(dt));
  return t;
}

static fl_tensor *random_tensor(fl_rng *rng, fl_device dev, int ndim, const int64_t *shape,
                                float a, float b, int normal) {
  fl_tensor *h = fl_tensor_new(FL_F32, FL_CPU, ndim, shape);
  if (!h) return NULL;
  float *x = h->data;
  for (int64_t i = 0, n = fl_numel(h); i < n; i++)
    x[i] = normal ? a + b * fl_rng_normal(rng) : a + (b - a) * fl_rng_uniform(rng);
  if (dev != FL_CPU && fl_tensor_to(h, dev) != FL_OK) {
    fl_tensor_free(h);
    return NULL;
  }
  return h;
}

fl_tensor *fl_tensor_uniform(fl_rng *rng, fl_device dev, int ndim, const int64_t *shape,
                             float lo, float hi) {
  return random_tensor(rng, dev, ndim, shape, lo, hi, 0);
}

fl_tensor *fl_tensor_normal(fl_rng *rng, fl_device dev, int ndim, const int64_t *shape,
                            float mean, float std) {
  return random_tensor(rng, dev, ndim, shape, mean, std, 1);
}

void fl_tensor_free(fl_tensor *t) {
  if (!t) return;
  if (t->owned) fl_backend_for(t->device)->free(t->owned);
  fl_tensor_free(t->grad);
  free(t);
}

static size_t nbytes(const fl_tensor *t) { return (size_t)fl_numel(t) * fl_dtype_size(t->dtype); }

void fl_tensor_copy(fl_tensor *dst, const fl_tensor *src) {
  FL_CHECK(fl_numel(dst) == fl_numel(src) && dst->dtype == src->dtype,
           "fl_tensor_copy: %lld elements into %lld, or dtypes differ",
           (long long)fl_numel(src), (long long)fl_numel(dst));
  FL_CHECK(fl_is_contiguous(dst) && fl_is_contiguous(src), "fl_tensor_copy: tensors must be contiguous");
  size_t n = nbytes(src);
  if (dst->device == src->device) fl_backend_for(dst->device)->copy(dst->data, src->data, n);
  else if (src->device == FL_CPU) fl_backend_for(dst->device)->from_host(dst->data, src->data, n);
  else if (dst->device == FL_CPU) fl_backend_for(src->device)->to_host(dst->data, src->data, n);
  else FL_CHECK(0, "fl_tensor_copy: between two accelerators is not supported");
}

void fl_tensor_to_host(const fl_tensor *t, void *host) {
  FL_CHECK(fl_is_contiguous(t), "fl_tensor_to_host: tensor must be contiguous");
  fl_backend_for(t->device)->to_host(host, t->data, nbytes(t));
}

float fl_tensor_item(const fl_tensor *t) {
  FL_CHECK(t && t->dtype == FL_F32 && fl_numel(t) == 1, "fl_tensor_item: needs a 1-element f32 tensor");
  float v;
  fl_backend_for(t->device)->to_host(&v, t->data, sizeof v);
  return v;
}

fl_status fl_tensor_to(fl_tensor *t, fl_device dev) {
  if (t->device == dev) return FL_OK;
  FL_CHECK(t->owned == t->data, "fl_tensor_to: only an owning tensor can move (not a view)");
  size_t n = nbytes(t);
  const fl_backend *to = fl_backend_for(dev);
  void *p = to->alloc(n);
  if (!p) return dev == FL_CPU ? fl_error(FL_ERR_NOMEM, "out of memory moving a tensor of %zu bytes", n)
                               : FL_ERR_NOMEM;
  if (dev == FL_CPU) fl_backend_for(t->device)->to_host(p, t->data, n);
  else if (t->device == FL_CPU) to->from_host(p, t->data, n);
  else FL_CHECK(0, "fl_tensor_to: between two accelerators is not supported");
  if (t->grad) {
    fl_status s = fl_tensor_to(t->grad, dev);
    if (s != FL_OK) { to->free(p); return s; }
  }
  fl_backend_for(t->device)->free(t->owned);
  t->data = t->owned = p;
  t->device = dev;
  return FL_OK;
}

void fl_tensor_zero(fl_tensor *t) {
  FL_CHECK(fl_is_contiguous(t), "fl_tensor_zero: tensor must be contiguous");
  fl_backend_for(t->device)->memset0(t->data, nbytes(t));
}

void fl_tensor_fill(fl_tensor *t, float v) {
  FL_CHECK(t->dtype == FL_F32 && fl_is_contiguous(t), "fl_tensor_fill: needs a contiguous f32 tensor");
  fl_backend_for(t->device)->fill(t->data, v, (size_t)fl_numel(t));
}

void fl_tensor_scale(fl_tensor *t, float s) {
  FL_CHECK(t->dtype == FL_F32 && fl_is_contiguous(t), "fl_tensor_scale: needs a contiguous f32 tensor");
  fl_backend_for(t->device)->scale(t->data, s, (size_t)fl_numel(t));
}

fl_status fl_tensor_require_grad(fl_tensor *t) {
  FL_CHECK(t->dtype == FL_F32, "fl_tensor_require_grad: only f32 tensors have gradients");
  if (!t->grad) {
    t->grad = fl_tensor_new(FL_F32, t->device, t->ndim, t->shape);
    if (!t->grad) return FL_ERR_NOMEM;
  }
  t->requires_grad = 1;
  return FL_OK;
}
