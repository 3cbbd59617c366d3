/* flexlearn optimisers and schedulers.
 *
 * An optimiser holds parameter groups whose fields (lr, mom, wd, beta1, ...) are public and
 * writable: the LR finder does `for (i..) opt->groups[i].lr *= mult`, as the lesson does with
 * param_groups, and a schedule (fl_schedule) writes lr and beta1 / mom before each step.
 *
 * The optimisers follow torch.optim's update rules (SGD, Adam, AdamW; float32 throughout, the
 * scalars of a step computed in double as Python does), checked against PyTorch in
 * tests/test_optim.c.
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
  float mom;            /* SGD's momentum (torch's `momentum`; 0: plain SGD) */
  float wd;             /* weight decay: SGD and Adam add wd * p to the gradient (L2); AdamW
                           decays the weights, p *= 1 - lr * wd, before its update */
  /* Adam / AdamW (torch's betas and eps); a schedule that cycles momentum writes beta1.
   * Doubles, as Python's floats: 1 - beta1 and the bias corrections come out as torch's. */
  double beta1, beta2, eps;
  /* SGD (torch's dampening and nesterov; used only when mom != 0) */
  float dampening;
  int nesterov;
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
  /* 1 for the Adam family: a schedule that cycles momentum writes groups[].beta1; 0 (SGD): it
   * writes groups[].mom (torch's OneCycleLR: "betas" in the optimiser's defaults or not). */
  int has_betas;
};

/* SGD over every parameter of model, one group with that lr and torch.optim.SGD's defaults
 * (mom, dampening, wd 0, nesterov off): p -= lr * (g + wd * p). With mom != 0 in a group it is
 * torch's SGD with momentum: bufs[0] "momentum_buffer" (laid out like model->flat, so the model
 * must be collated) is made at the first such step and set to that step's gradients. A step
 * with mom == 0 runs the plain kernel (the bits of before momentum existed). Free with
 * fl_opt_free. */
fl_optimizer *fl_sgd_new(fl_module *model, float lr);
/* Adam (torch.optim.Adam, coupled L2: g += wd * p) and AdamW (torch.optim.AdamW, decoupled:
 * p *= 1 - lr * wd) over every parameter of a collated model (fl_module_collate; the model is
 * collated if it is not yet), one group with that lr and torch's defaults: betas (0.9, 0.999),
 * eps 1e-8, weight_decay 0 (Adam) / 0.01 (AdamW); change them in groups[]. The moments live in
 * bufs[0] "exp_avg" and bufs[1] "exp_avg_sq", flat f32 tensors laid out like model->flat (the
 * padding between parameters stays 0), zero at first, on the model's device (moved there at
 * the next step when the model moved). The bias corrections use n_steps, the optimiser's
 * count of steps: a parameter without a gradient at a step is skipped (as in torch), but still
 * counts that step (torch counts per parameter; the two agree whenever every parameter has a
 * gradient at every step). With one group covering the whole model and every gradient
 * present, a step is one kernel over the flat buffers; otherwise one per parameter. Free
 * with fl_opt_free. */
fl_optimizer *fl_adam_new(fl_module *model, float lr);
fl_optimizer *fl_adamw_new(fl_module *model, float lr);
/* 12_accel_sgd's own optimisers (the notebook's formulas; float32, the step's scalars in double
 * as Python computes them), over every parameter of a collated model, one group with that lr and
 * the notebook's defaults, wd 0. Every step first decays the weights, p *= 1 - lr * wd (the
 * notebook's reg_step, decoupled, when groups[].wd != 0), then:
 *  - fl_nb_sgd_new (name "NbSGD"):  p -= lr * g. No buffers.
 *  - fl_nb_momentum_new ("Momentum", groups[].mom 0.9): grad_avg = grad_avg * mom + g * (1 - mom),
 *    p -= lr * grad_avg; bufs[0] "grad_avg", zero at first. (The notebook's Momentum damps the
 *    gradient by 1 - mom; torch's SGD momentum does not.) A schedule that cycles momentum writes mom.
 *  - fl_nb_rmsprop_new ("RMSProp", sqr_mom in groups[].beta2 0.99, eps 1e-5): sqr_avg starts as
 *    g^2 at the first step, sqr_avg = sqr_avg * sqr_mom + g^2 * (1 - sqr_mom),
 *    p -= lr * g / (sqrt(sqr_avg) + eps); bufs[0] "sqr_avg".
 *  - fl_nb_adam_new ("NbAdam", beta1 0.9, beta2 0.99, eps 1e-5; has_betas): avg = beta1 * avg +
 *    (1 - beta1) * g, sqr_avg = beta2 * sqr_avg + (1 - beta2) * g^2, with t = n_steps (the
 *    notebook's i + 1) p -= lr * (avg / (1 - beta1^t)) / sqrt(sqr_avg / (1 - beta2^t) + eps):
 *    eps INSIDE the square root, as the notebook writes it; bufs[0] "avg", bufs[1] "sqr_avg".
 * A parameter without a gradient at a step is skipped (the notebook has no such case). */
fl_optimizer *fl_nb_sgd_new(fl_module *model, float lr);
fl_optimizer *fl_nb_momentum_new(fl_module *model, float lr);
fl_optimizer *fl_nb_rmsprop_new(fl_module *model, float lr);
fl_optimizer *fl_nb_adam_new(fl_module *model, float lr);
/* An optimiser factory (the Learner's opt_func). */
typedef fl_optimizer *(*fl_opt_fn)(fl_module *model, float lr);

/* Makes the state buffer `name` now rather than at the step that would first need it (SGD's
 * "momentum_buffer", made at its first step with momentum), so a checkpoint restores into it.
 * FL_OK (also when it exists already), FL_ERR_ARG when this optimiser keeps no such buffer,
 * FL_ERR_NOMEM. */
fl_status fl_opt_make_buf(fl_optimizer *o, const char *name);
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

/* ---- schedules: pure functions of the step index ----
 * A schedule gives the lr (and the momentum, for schedules that cycle it) that optimiser step i
 * (0-based) uses; it holds no state, so resuming needs only the step count (fl_optimizer's
 * n_steps). Values are computed in double as PyTorch's schedulers do in Python, then stored in
 * the groups' float fields. Every group gets the same values. Past the end (i >= total_steps)
 * the last step's values are kept. */
typedef enum fl_schedule_kind {
  FL_SCHED_ONECYCLE = 1,
  FL_SCHED_COSINE = 2,
  FL_SCHED_EXP = 3,     /* ExponentialLR(gamma): base_lr * gamma^i */
  FL_SCHED_STEP = 4,    /* StepLR(step_size, gamma): base_lr * gamma^(i / step_size) */
  FL_SCHED_WARMUP = 5   /* LinearLR(start_factor, 1.0, total_iters): a linear warm-up, then constant */
} fl_schedule_kind;
typedef struct fl_schedule {
  fl_schedule_kind kind;
  int64_t total_steps;      /* OneCycle's total_steps, CosineAnnealing's T_max (>= 1) */
  double max_lr;            /* OneCycle: the peak lr; Cosine: the starting (base) lr */
  /* OneCycle (torch.optim.lr_scheduler.OneCycleLR) */
  double pct_start;         /* share of the steps spent warming up (torch: 0.3) */
  double div_factor;        /* initial lr = max_lr / div_factor (25) */
  double final_div_factor;  /* min lr = initial lr / final_div_factor (1e4) */
  int anneal_linear;        /* 0: cosine annealing (torch's 'cos'), 1: 'linear' */
  int three_phase;          /* torch's three_phase (False) */
  int cycle_momentum;       /* 1: beta1 (Adam family) or mom (SGD) cycles max_mom -> base_mom -> max_mom */
  double base_mom, max_mom; /* 0.85, 0.95 */
  /* Cosine (torch.optim.lr_scheduler.CosineAnnealingLR, its closed form) */
  double eta_min;           /* the lr the cosine reaches at step T_max (0) */
  /* Exp, Step: torch's gamma; Step: its step_size (>= 1) */
  double gamma;
  int64_t step_size;
  /* Warmup (LinearLR with end_factor 1): the factor at step 0 (0 < start_factor <= 1) and
   * total_iters, the steps it takes to reach max_lr (then max_lr until total_steps) */
  double start_factor;
  int64_t warmup_steps;
} fl_schedule;
/* OneCycleLR(max_lr, total_steps) with PyTorch's defaults (listed above). */
fl_schedule fl_onecycle(double max_lr, int64_t total_steps);
/* CosineAnnealingLR(T_max, eta_min) from base_lr: eta_min + (base_lr - eta_min) * (1 +
 * cos(pi * i / T_max)) / 2. Does not cycle momentum. */
fl_schedule fl_cosine(double base_lr, int64_t t_max, double eta_min);
/* ExponentialLR(gamma) from base_lr for total_steps steps: base_lr * gamma^i (torch multiplies
 * by gamma at each step; the closed form agrees within a few ulps per step). No momentum. */
fl_schedule fl_exponential(double base_lr, double gamma, int64_t total_steps);
/* StepLR(step_size, gamma) from base_lr for total_steps steps: base_lr * gamma^floor(i / step_size). */
fl_schedule fl_step_schedule(double base_lr, int64_t step_size, double gamma, int64_t total_steps);
/* A linear warm-up then constant: torch's LinearLR(start_factor, end_factor=1.0,
 * total_iters=warmup_steps) from base_lr, base_lr * (start_factor + (1 - start_factor) *
 * min(i, warmup_steps) / warmup_steps), for total_steps steps (warmup_steps <= total_steps). */
fl_schedule fl_linear_warmup(double base_lr, double start_factor, int64_t warmup_steps, int64_t total_steps);
/* The lr and momentum (NaN when the schedule does not cycle it) for step i >= 0. Returns 0, or
 * 1 when i is past the end (the values are then those of step total_steps - 1). */
int fl_schedule_at(const fl_schedule *s, int64_t i, double *lr, double *mom);
/* Writes step i's lr (and beta1 or mom, see has_betas) into every group of o. Returns what
 * fl_schedule_at returned. */
int fl_schedule_apply(const fl_schedule *s, fl_optimizer *o, int64_t i);

#ifdef __cplusplus
}
#endif
#endif
