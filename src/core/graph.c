/* The per-step graph: a bump arena per device for activations and gradients, a host arena for
 * tensor structs and tape nodes, and the tape itself.
 *
 * An arena is one block. When a step needs more than the block holds, extra blocks are taken
 * for the rest of that step; at the next reset they are freed and the block is replaced by one
 * big enough for the whole step. After the first step or two a step therefore allocates
 * nothing (fl_graph_growths() stops moving; the tests check it). */
#include <string.h>

#include "backend/backend.h"
#include "core/internal.h"

#define ALIGN 64
#define N_DEV 2

typedef struct arena {
  char *base;
  size_t cap, used;
  void **extra;          /* blocks taken during this step */
  int n_extra, cap_extra;
  size_t extra_bytes;    /* bytes handed out from extra blocks this step */
  int growths;
} arena;

struct fl_graph {
  arena host;            /* structs + CPU data */
  arena dev[N_DEV];      /* dev[FL_CUDA] for device data (dev[FL_CPU] unused) */
  fl_node *tape;
  int grad_enabled;
  float *one[N_DEV];     /* a persistent 1.0f per device: the seed of every backward */
};

static void *arena_alloc(arena *a, fl_device d, size_t n) {
  n = (n + ALIGN - 1) & ~(size_t)(ALIGN - 1);
  if (a->used + n <= a->cap) {
    void *p = a->base + a->used;
    a->used += n;
    return p;
  }
  /* overflow: an extra block just for this request, remembered until the next reset */
  if (a->n_extra == a->cap_extra) {
    int c = a->cap_extra ? 2 * a->cap_extra : 16;
    void **e = realloc(a->extra, (size_t)c * sizeof *e);
    if (!e) { fl_error(FL_ERR_NOMEM, "out of memory growing the graph arena"); return NULL; }
    a->extra = e;
    a->cap_extra = c;
  }
  void *p = fl_backend_for(d)->alloc(n);
  if (!p) {
    if (d == FL_CPU) fl_error(FL_ERR_NOMEM, "out of memory: the graph arena needs %zu more bytes", n);
    return NULL;
  }
  a->extra[a->n_extra++] = p;
  a->extra_bytes += n;
  return p;
}

static void arena_reset(arena *a, fl_device d) {
  const fl_backend *be = fl_backend_for(d);
  if (a->n_extra) {
    size_t need = a->used + a->extra_bytes;
    for (int i = 0; i < a->n_extra; i++) be->free(a->extra[i]);
    a->n_extra = 0;
    a->extra_bytes = 0;
    be->free(a->base);
    a->cap = need + need / 4;
    a->base = be->alloc(a->cap);
    if (!a->base) a->cap = 0;   /* the next alloc falls back to extra blocks and reports */
    a->growths++;
  }
  a->used = 0;
}

static void arena_free(arena *a, fl_device d) {
  if (!a->base && !a->n_extra) { free(a->extra); return; }
  const fl_backend *be = fl_backend_for(d);
  for (int i = 0; i < a->n_extra; i++) be->free(a->extra[i]);
  be->free(a->base);
  free(a->extra);
}

fl_graph *fl_graph_new(void) {
  fl_graph *g = fl_xcalloc(1, sizeof *g);
  g->grad_enabled = 1;
  return g;
}

void fl_graph_free(fl_graph *g) {
  if (!g) return;
  arena_free(&g->host, FL_CPU);
  for (int d = 1; d < N_DEV; d++) arena_free(&g->dev[d], (fl_device)d);
  for (int d = 0; d < N_DEV; d++)
    if (g->one[d]) fl_backend_for((fl_device)d)->free(g->one[d]);
  free(g);
}

void fl_graph_reset(fl_graph *g) {
  arena_reset(&g->host, FL_CPU);
  for (int d = 1; d < N_DEV; d++)
    if (g->dev[d].base || g->dev[d].n_extra) arena_reset(&g->dev[d], (fl_device)d);
  g->tape = NULL;
}

int fl_graph_set_grad(fl_graph *g, int enabled) {
  int old = g->grad_enabled;
  g->grad_enabled = enabled;
  return old;
}

int fl_graph_grad_enabled(const fl_graph *g) { return g->grad_enabled; }

size_t fl_graph_capacity(const fl_graph *g) {
  size_t c = g->host.cap;
  for (int d = 1; d < N_DEV; d++) c += g->dev[d].cap;
  return c;
}

int fl_graph_growths(const fl_graph *g) {
  int n = g->host.growths;
  for (int d = 1; d < N_DEV; d++) n += g->dev[d].growths;
  return n;
}

void *fl__graph_alloc(fl_graph *g, fl_device dev, size_t bytes) {
  return dev == FL_CPU ? arena_alloc(&g->host, FL_CPU, bytes) : arena_alloc(&g->dev[dev], dev, bytes);
}

fl_tensor *fl_graph_tensor(fl_graph *g, fl_dtype dt, fl_device dev, int ndim, const int64_t *shape) {
  fl_tensor *t = fl__graph_alloc(g, FL_CPU, sizeof *t);
  if (!t) return NULL;
  memset(t, 0, sizeof *t);
  t->dtype = dt;
  t->device = dev;
  fl__set_shape(t, ndim, shape);
  t->data = fl__graph_alloc(g, dev, (size_t)fl_numel(t) * fl_dtype_size(dt));
  return t->data ? t : NULL;
}

fl_node *fl__graph_record(fl_graph *g, fl_tensor *out, void (*bw)(fl_graph *, fl_node *),
                          fl_tensor *a, fl_tensor *b, fl_tensor *c) {
  int req = (a && a->requires_grad) || (b && b->requires_grad) || (c && c->requires_grad);
  if (!g->grad_enabled || !req) return NULL;
  fl_node *n = fl__graph_alloc(g, FL_CPU, sizeof *n);
  if (!n) return NULL;
  *n = (fl_node){.backward = bw, .out = out, .in = {a, b, c}, .prev = g->tape};
  g->tape = n;
  out->requires_grad = 1;
  out->node = n;
  return n;
}

const float *fl__graph_one(fl_graph *g, fl_device dev) {
  if (!g->one[dev]) {
    const fl_backend *be = fl_backend_for(dev);
    float *p = be->alloc(sizeof(float));
    if (!p) return NULL;
    be->fill(p, 1.0f, 1);
    g->one[dev] = p;
  }
  return g->one[dev];
}

fl_node *fl__graph_tape(fl_graph *g) { return g->tape; }
void fl__graph_clear_tape(fl_graph *g) { g->tape = NULL; }
