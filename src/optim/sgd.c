/* SGD over parameter groups, and the ExponentialLR scheduler. */
#include <stdlib.h>

#include "backend/backend.h"
#include "fl/optim.h"

/* With one group over a collated model whose every parameter has a gradient, the step is one
 * kernel over the flat buffers (the padding between parameters is zero in both, stays zero). */
static int one_flat_group(const fl_optimizer *o) {
  if (o->n_groups != 1 || !o->model || !o->model->flat ||
      o->groups[0].n_params != fl_module_parameters(o->model, NULL, 0))
    return 0;
  for (int i = 0; i < o->groups[0].n_params; i++)
    if (o->groups[0].params[i]->grad_none) return 0;
  return 1;
}

static fl_status sgd_step(fl_optimizer *o) {
  o->n_steps++;
  if (one_flat_group(o)) {
    fl_tensor *p = o->model->flat;
    fl_backend_for(p->device)->sgd_step(p->data, o->model->flat_grad->data, o->groups[0].lr,
                                        o->groups[0].wd, (size_t)fl_numel(p));
    return FL_OK;
  }
  for (int gi = 0; gi < o->n_groups; gi++) {
    fl_param_group *g = &o->groups[gi];
    for (int i = 0; i < g->n_params; i++) {
      fl_tensor *p = g->params[i];
      if (p->grad_none) continue;   /* no gradient since zero_grad: PyTorch skips it too */
      fl_backend_for(p->device)->sgd_step(p->data, p->grad->data, g->lr, g->wd, (size_t)fl_numel(p));
    }
  }
  return FL_OK;
}

/* PyTorch's zero_grad(set_to_none=True): marks every grad as none instead of clearing it, so
 * the next backward writes the gradients (GEMMs with beta 0) and no memset runs: one launch
 * fewer per step on the GPU (on the CPU no measurable change). */
static void sgd_zero_grad(fl_optimizer *o) {
  for (int gi = 0; gi < o->n_groups; gi++)
    for (int i = 0; i < o->groups[gi].n_params; i++) o->groups[gi].params[i]->grad_none = 1;
}

fl_optimizer *fl_sgd_new(fl_module *model, float lr) {
  FL_CHECK(model, "fl_sgd_new: model is NULL");
  fl_optimizer *o = fl_xcalloc(1, sizeof *o);
  o->name = "SGD";
  o->model = model;
  o->n_groups = 1;
  o->groups = fl_xcalloc(1, sizeof *o->groups);
  int n = fl_module_parameters(model, NULL, 0);
  o->groups[0].params = fl_xcalloc((size_t)(n ? n : 1), sizeof(fl_tensor *));
  o->groups[0].n_params = fl_module_parameters(model, o->groups[0].params, n);
  o->groups[0].lr = lr;
  for (int i = 0; i < n; i++)
    FL_CHECK(o->groups[0].params[i]->grad, "fl_sgd_new: parameter %d has no grad tensor", i);
  o->step = sgd_step;
  o->zero_grad = sgd_zero_grad;
  return o;
}

fl_status fl_opt_step(fl_optimizer *o) { return o->step(o); }
void fl_opt_zero_grad(fl_optimizer *o) { o->zero_grad(o); }

void fl_opt_free(fl_optimizer *o) {
  if (!o) return;
  if (o->free_state) o->free_state(o);
  for (int i = 0; i < o->n_bufs; i++) fl_tensor_free(o->bufs[i]);
  for (int i = 0; i < o->n_groups; i++) free(o->groups[i].params);
  free(o->groups);
  free(o);
}

fl_sched fl_exp_lr(fl_optimizer *opt, float gamma) {
  FL_CHECK(opt && gamma > 0, "fl_exp_lr: needs an optimiser and gamma > 0");
  return (fl_sched){opt, gamma, 0};
}

void fl_sched_step(fl_sched *s) {
  for (int i = 0; i < s->opt->n_groups; i++) s->opt->groups[i].lr *= s->gamma;
  s->last_epoch++;
}
