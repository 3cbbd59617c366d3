/* Internal to src/optim/: what the optimisers share about flat state buffers. */
#ifndef FL_OPTIM_INTERNAL_H
#define FL_OPTIM_INTERNAL_H

#include "fl/optim.h"

/* 1 when one group covers every parameter of a collated model and every parameter has a
 * gradient: a step is then one kernel over the flat buffers (the padding between parameters
 * is zero in all of them and stays zero). */
int fl__opt_one_flat_group(const fl_optimizer *o);
/* Adds a state buffer named `name` (a static string): zeros laid out like model->flat, on the
 * model's device. Returns it, or NULL with fl_last_error set (out of memory). */
fl_tensor *fl__opt_add_buf(fl_optimizer *o, const char *name);
/* Moves every state buffer to the model's device (DeviceCB moves the model after fit made the
 * optimiser). FL_OK or the error of the move. */
fl_status fl__opt_bufs_follow(fl_optimizer *o);
/* Where parameter p starts in model->flat (and so in every state buffer), in elements. */
size_t fl__opt_offset(const fl_optimizer *o, const fl_tensor *p);

#endif
