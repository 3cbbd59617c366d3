/* flexlearn optimisers and schedulers.
 *
 * An optimiser holds parameter groups whose fields (lr, mom, wd) are public and writable: the
 * LR finder does `for (i..) opt->groups[i].lr *= mult`, as the lesson does with param_groups.
 */
#ifndef FL_OPTIM_H
#define FL_OPTIM_H

#include "fl/nn.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct fl_param_group {
  fl_tensor **params;   /* borrowed from the model */
  int n_params;
  float lr;
  float mom;            /* for optimisers that use it (later issues) */
  float wd;             /* weight decay, applied as p -= lr * wd * p */
} fl_param_group;

typedef struct fl_optimizer fl_optimizer;
struct fl_optimizer {
  const char *name;
  fl_param_group *groups;
  int n_groups;
  fl_module *model;
  fl_status (*step)(fl_optimizer *o);
  void (*zero_grad)(fl_optimizer *o);
  void (*free_state)(fl_optimizer *o);  /* frees o->state; may be NULL */
  void *state;
  /* What a checkpoint must keep besides the parameters: up to 4 flat f32 tensors laid out like
   * model->flat, on the model's device (AdamW: "exp_avg", "exp_avg_sq"), owned by the
   * optimiser, with their names; and the count of steps taken (AdamW's bias correction uses
   * it). SGD has no buffers. */
  fl_tensor *bufs[4];
  const char *buf_names[4];
  int n_bufs;
  int64_t n_steps;
};

/* SGD over every parameter of model, one group with that lr. Free with fl_opt_free. */
fl_optimizer *fl_sgd_new(fl_module *model, float lr);
/* An optimiser factory (the Learner's opt_func). */
typedef fl_optimizer *(*fl_opt_fn)(fl_module *model, float lr);

/* One step over every parameter that has a gradient (grad_none parameters are skipped). */
fl_status fl_opt_step(fl_optimizer *o);
/* Sets every parameter's grad to none (PyTorch's set_to_none=True): the memory is not cleared,
 * the next backward overwrites it. Read a grad only after a backward. */
void fl_opt_zero_grad(fl_optimizer *o);
void fl_opt_free(fl_optimizer *o);      /* accepts NULL */

/* ExponentialLR: every step multiplies each group's lr by gamma. */
typedef struct fl_sched {
  fl_optimizer *opt;
  float gamma;
  int last_epoch;
} fl_sched;
fl_sched fl_exp_lr(fl_optimizer *opt, float gamma);
void fl_sched_step(fl_sched *s);

#ifdef __cplusplus
}
#endif
#endif
