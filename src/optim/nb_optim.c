/* 12_accel_sgd's own optimisers (the notebook's formulas, not torch.optim's): SGD with
 * decoupled weight decay, Momentum, RMSProp and Adam (eps inside the square root). Each step
 * first runs the notebook's reg_step, p *= 1 - lr * wd (when wd != 0), then its opt_step.
 * State lives in flat buffers laid out like model->flat, made with the optimiser (so a
 * checkpoint restores into them); the elementwise work is the backend's (scale, sgd_step,
 * sgd_mom_step, nb_adam_step). Checked against the formulas run in PyTorch in tests/test_optim.c. */
#include <math.h>

#include "backend/backend.h"
#include "fl/optim.h"
#include "optim/optim_internal.h"

enum { NB_SGD, NB_MOMENTUM, NB_RMSPROP, NB_ADAM };

static int nb_kind(const fl_optimizer *o) {
  return o->name[0] == 'M' ? NB_MOMENTUM : o->name[0] == 'R' ? NB_RMSPROP : o->name[2] == 'A' ? NB_ADAM : NB_SGD;
}

/* One parameter range (or the whole flat buffer): off is its offset in the state buffers. */
static void nb_update(const fl_optimizer *o, int kind, const fl_param_group *g, int first, float *p, const float *gr,
                      size_t off, size_t n, int device) {
  const fl_backend *be = fl_backend_for(device);
  if (kind == NB_SGD || kind == NB_MOMENTUM) {
    /* reg_step: p *= 1 - lr*wd (Python's double, then the tensor's float) */
    if (g->wd != 0.0f) be->scale(p, (float)(1.0 - (double)g->lr * (double)g->wd), n);
    if (kind == NB_SGD) be->sgd_step(p, gr, g->lr, 0.0f, n);   /* p -= grad * lr */
    else {   /* grad_avg = grad_avg*mom + grad*(1-mom); p -= lr*grad_avg */
      fl_sgd_hyper h = {g->lr, 0.0f, g->mom, (float)(1.0 - (double)g->mom), 0, 0};
      be->sgd_mom_step(p, gr, (float *)o->bufs[0]->data + off, &h, n);
    }
    return;
  }
  const int adam = kind == NB_ADAM;
  const double t = (double)o->n_steps;   /* the notebook's i + 1 */
  fl_nb_hyper h = {
      .decay = g->wd != 0.0f ? (float)(1.0 - (double)g->lr * (double)g->wd) : 1.0f,
      .beta1 = (float)g->beta1,
      .one_minus_beta1 = (float)(1.0 - g->beta1),
      .beta2 = (float)g->beta2,
      .one_minus_beta2 = (float)(1.0 - g->beta2),
      .bc1 = adam ? (float)(1.0 - pow(g->beta1, t)) : 1.0f,
      .bc2 = adam ? (float)(1.0 - pow(g->beta2, t)) : 1.0f,
      .eps = (float)g->eps,
      .lr = g->lr,
      .eps_inside = adam,
      .first_v = !adam && first,
  };
  float *m = adam ? (float *)o->bufs[0]->data + off : NULL;
  float *v = (float *)o->bufs[adam ? 1 : 0]->data + off;
  be->nb_adam_step(p, gr, m, v, &h, n);
}

static fl_status nb_step(fl_optimizer *o) {
  fl_status s = fl__opt_bufs_follow(o);
  if (s != FL_OK) return s;
  const int kind = nb_kind(o), first = o->n_steps == 0;
  o->n_steps++;
  if (fl__opt_one_flat_group(o)) {
    fl_tensor *p = o->model->flat;
    nb_update(o, kind, &o->groups[0], first, p->data, o->model->flat_grad->data, 0, (size_t)fl_numel(p), p->device);
    return FL_OK;
  }
  for (int gi = 0; gi < o->n_groups; gi++)
    for (int i = 0; i < o->groups[gi].n_params; i++) {
      fl_tensor *p = o->groups[gi].params[i];
      if (p->grad_none) continue;   /* no gradient since zero_grad: skipped, as the notebook can't */
      nb_update(o, kind, &o->groups[gi], first, p->data, p->grad->data, fl__opt_offset(o, p), (size_t)fl_numel(p),
                p->device);
    }
  return FL_OK;
}

static fl_optimizer *nb_make(fl_module *model, float lr, const char *name, const char *buf0, const char *buf1) {
  FL_CHECK(model, "fl_nb_*_new: model is NULL");
  FL_CHECK(fl_module_collate(model) == FL_OK, "%s: %s", name, fl_last_error());
  fl_optimizer *o = fl_sgd_new(model, lr);
  o->name = name;
  o->step = nb_step;
  FL_CHECK((!buf0 || fl__opt_add_buf(o, buf0)) && (!buf1 || fl__opt_add_buf(o, buf1)),
           "%s: out of memory for the optimiser state: %s", name, fl_last_error());
  return o;
}

fl_optimizer *fl_nb_sgd_new(fl_module *model, float lr) { return nb_make(model, lr, "NbSGD", NULL, NULL); }

fl_optimizer *fl_nb_momentum_new(fl_module *model, float lr) {
  fl_optimizer *o = nb_make(model, lr, "Momentum", "grad_avg", NULL);
  o->groups[0].mom = 0.9f;
  return o;
}

fl_optimizer *fl_nb_rmsprop_new(fl_module *model, float lr) {
  fl_optimizer *o = nb_make(model, lr, "RMSProp", "sqr_avg", NULL);
  o->groups[0].beta2 = 0.99, o->groups[0].eps = 1e-5;
  return o;
}

fl_optimizer *fl_nb_adam_new(fl_module *model, float lr) {
  fl_optimizer *o = nb_make(model, lr, "NbAdam", "avg", "sqr_avg");
  o->has_betas = 1;
  o->groups[0].beta1 = 0.9, o->groups[0].beta2 = 0.99, o->groups[0].eps = 1e-5;
  return o;
}
