/* Internal pieces of the tensor core shared by tensor.c, graph.c and ops.c. */
#ifndef FL_CORE_INTERNAL_H
#define FL_CORE_INTERNAL_H

#include <stdlib.h>

#include "fl/tensor.h"

/* Sets ndim, shape and contiguous strides. */
void fl__set_shape(fl_tensor *t, int ndim, const int64_t *shape);

/* A tape node: how to push out->grad back into the inputs' grads. */
struct fl_node {
  void (*backward)(fl_graph *g, fl_node *n);
  fl_tensor *out;
  fl_tensor *in[3];
  void *saved;                  /* op-specific saved buffer (e.g. row logsumexp) */
  fl_node *prev;                /* the tape runs from the last node back through prev */
};

/* Arena allocation (aligned 64) on a device; NULL with fl_last_error when memory runs out. */
void *fl__graph_alloc(fl_graph *g, fl_device dev, size_t bytes);
/* Appends a node (host arena) for `out` when grad mode is on and an input requires grad;
 * sets out->requires_grad and out->node. Returns NULL when nothing is recorded. */
fl_node *fl__graph_record(fl_graph *g, fl_tensor *out, void (*bw)(fl_graph *, fl_node *),
                          fl_tensor *a, fl_tensor *b, fl_tensor *c);
/* A persistent 1.0f on dev (the backward seed: no fill kernel per step); NULL when out of memory. */
const float *fl__graph_one(fl_graph *g, fl_device dev);
/* The tape's last node (NULL when empty); cleared by fl_backward. */
fl_node *fl__graph_tape(fl_graph *g);
void fl__graph_clear_tape(fl_graph *g);

/* For op files beside ops.c (ops_cnn.c): ops.c's record() and grad_of(). fl__op_record records
 * a node for out keeping `saved` when grad mode is on and an input requires grad (0 only when a
 * needed node could not be stored); fl__op_grad_of gives t's grad buffer in the backward, with
 * *acc = 1 when the kernel must add to it. */
int fl__op_record(fl_graph *g, fl_tensor *out, void (*bw)(fl_graph *, fl_node *), fl_tensor *a,
                  fl_tensor *b, fl_tensor *c, void *saved);
float *fl__op_grad_of(fl_graph *g, fl_tensor *t, int *acc);

#endif
