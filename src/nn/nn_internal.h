/* Internal pieces of nn shared by its files (not public API). */
#ifndef FL_NN_INTERNAL_H
#define FL_NN_INTERNAL_H

#include "fl/nn.h"

/* What a model's forward does to its input before the first layer: a Sequential made by
 * fl_image_sequential_new views (N, c*h*w) as (N, c, h, w); any other module takes x as it is. */
fl_tensor *fl__model_input(fl_module *m, fl_graph *g, fl_tensor *x);
/* Per-sample FLOPs of m and its children: 2 x the multiply-adds of every Conv2d (at the output
 * size of its last forward) and Linear. */
int64_t fl__module_flops(const fl_module *m);

#endif
