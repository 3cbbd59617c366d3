/* SGD over parameter groups (torch.optim.SGD: momentum, dampening, nesterov, weight decay),
 * the flat-state helpers the optimisers share, and the ExponentialLR scheduler. */
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "fl/optim.h"
#include "optim/optim_internal.h"

int fl__opt_one_flat_group(const fl_optimizer *o) {
  if (o->n_groups != 1 || !o->model || !o->model->flat ||
      o->groups[0].n_params != fl_module_parameters(o->model, NULL, 0))
    return 0;
  for (int i = 0; i < o->groups[0].n_params; i++)
    if (o->groups[0].params[i]->grad_none) return 0;
  return 1;
}

fl_tensor *fl__opt_add_buf(fl_optimizer *o, const char *name) {
  FL_CHECK(o->model && o->model->flat && o->n_bufs < 4, "optimiser state needs a collated model");
  fl_tensor *t = fl_tensor_new1(FL_F32, o->model->device, fl_numel(o->model->flat));
  if (!t) return NULL;
  o->bufs[o->n_bufs] = t;
  o->buf_names[o->n_bufs++] = name;
  return t;
}

fl_status fl_opt_make_buf(fl_optimizer *o, const char *name) {
  for (int i = 0; i < o->n_bufs; i++)
    if (!strcmp(o->buf_names[i], name)) return FL_OK;
  /* Adam/AdamW make theirs with the optimiser; only SGD's appears later */
  if (strcmp(o->name, "SGD") || strcmp(name, "momentum_buffer") || o->n_bufs)
    return fl_error(FL_ERR_ARG, "%s keeps no optimiser buffer '%s'", o->name, name);
  if (!fl__opt_add_buf(o, "momentum_buffer"))
    return fl_error(FL_ERR_NOMEM, "SGD: out of memory for the momentum buffer (%s)", fl_last_error());
  return FL_OK;
}

fl_status fl__opt_bufs_follow(fl_optimizer *o) {
  for (int i = 0; i < o->n_bufs; i++)
    if (o->bufs[i]->device != o->model->device) {
      fl_status s = fl_tensor_to(o->bufs[i], o->model->device);
      if (s != FL_OK) return s;
    }
  return FL_OK;
}

size_t fl__opt_offset(const fl_optimizer *o, const fl_tensor *p) {
  const float *base = o->model->flat->data, *at = p->data;
  FL_CHECK(at >= base && at + fl_numel(p) <= base + fl_numel(o->model->flat),
           "optimiser: a parameter is not in the model's flat buffer");
  return (size_t)(at - base);
}

static fl_sgd_hyper sgd_hyper(const fl_param_group *g, int first) {
  return (fl_sgd_hyper){g->lr, g->wd, g->mom, (float)(1.0 - (double)g->dampening), g->nesterov, first};
}

/* torch.optim.SGD: plain (mom == 0: p -= lr * (g + wd * p), the kernel and bits of before
 * momentum existed) or with momentum, whose buffer ("momentum_buffer", laid out like
 * model->flat) is made at the first step any group has mom != 0 and set to that step's
 * gradients (torch's first step; a parameter without a gradient then gets its first update
 * later from a zero buffer, as if its first gradient had been scaled by 1 - dampening). */
static fl_status sgd_step(fl_optimizer *o) {
  int any_mom = 0, first = 0;
  for (int gi = 0; gi < o->n_groups; gi++) any_mom |= o->groups[gi].mom != 0.0f;
  if (any_mom) {
    FL_CHECK(o->model->flat, "SGD with momentum needs a collated model (fl_module_collate)");
    fl_status s = fl__opt_bufs_follow(o);
    if (s != FL_OK) return s;
    if (!o->n_bufs) {
      if (!fl__opt_add_buf(o, "momentum_buffer"))
        return fl_error(FL_ERR_NOMEM, "SGD: out of memory for the momentum buffer (%s)", fl_last_error());
      first = 1;
    }
  }
  o->n_steps++;
  if (fl__opt_one_flat_group(o)) {
    fl_tensor *p = o->model->flat;
    const fl_backend *be = fl_backend_for(p->device);
    const fl_param_group *g = &o->groups[0];
    if (g->mom == 0.0f) be->sgd_step(p->data, o->model->flat_grad->data, g->lr, g->wd, (size_t)fl_numel(p));
    else {
      fl_sgd_hyper h = sgd_hyper(g, first);
      be->sgd_mom_step(p->data, o->model->flat_grad->data, o->bufs[0]->data, &h, (size_t)fl_numel(p));
    }
    return FL_OK;
  }
  for (int gi = 0; gi < o->n_groups; gi++) {
    fl_param_group *g = &o->groups[gi];
    fl_sgd_hyper h = sgd_hyper(g, first);
    for (int i = 0; i < g->n_params; i++) {
      fl_tensor *p = g->params[i];
      if (p->grad_none) continue;   /* no gradient since zero_grad: PyTorch skips it too */
      const fl_backend *be = fl_backend_for(p->device);
      if (g->mom == 0.0f) be->sgd_step(p->data, p->grad->data, g->lr, g->wd, (size_t)fl_numel(p));
      else be->sgd_mom_step(p->data, p->grad->data, (float *)o->bufs[0]->data + fl__opt_offset(o, p), &h,
                            (size_t)fl_numel(p));
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
