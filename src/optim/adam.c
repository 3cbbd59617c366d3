/* Adam and AdamW (torch.optim.Adam / torch.optim.AdamW, torch's single-tensor update): the
 * moments in two flat buffers laid out like model->flat, the step's scalars computed here in
 * double as torch computes them in Python, the elementwise update in the backend (adam_step). */
#include <math.h>
#include <stdlib.h>

#include "backend/backend.h"
#include "fl/optim.h"
#include "optim/optim_internal.h"

/* Step t's scalars for group g (t = the optimiser's step count, >= 1). */
static fl_adam_hyper adam_hyper(const fl_param_group *g, int64_t t, int decoupled) {
  const double lr = g->lr, wd = g->wd, b1 = g->beta1, b2 = g->beta2;
  const double bc1 = 1.0 - pow(b1, (double)t), bc2 = 1.0 - pow(b2, (double)t);
  return (fl_adam_hyper){
      .wd = decoupled ? 0.0f : (float)wd,
      .decay = decoupled ? (float)(1.0 - lr * wd) : 1.0f,
      .beta1 = (float)b1,
      .one_minus_beta1 = (float)(1.0 - b1),
      .beta2 = (float)b2,
      .one_minus_beta2 = (float)(1.0 - b2),
      .bc2_sqrt = (float)sqrt(bc2),
      .eps = (float)g->eps,
      .neg_step_size = (float)-(lr / bc1),
  };
}

static fl_status adam_any_step(fl_optimizer *o, int decoupled) {
  fl_status s = fl__opt_bufs_follow(o);
  if (s != FL_OK) return s;
  o->n_steps++;
  float *m = o->bufs[0]->data, *v = o->bufs[1]->data;
  if (fl__opt_one_flat_group(o)) {
    fl_tensor *p = o->model->flat;
    fl_adam_hyper h = adam_hyper(&o->groups[0], o->n_steps, decoupled);
    fl_backend_for(p->device)->adam_step(p->data, o->model->flat_grad->data, m, v, &h, (size_t)fl_numel(p));
    return FL_OK;
  }
  for (int gi = 0; gi < o->n_groups; gi++) {
    fl_param_group *g = &o->groups[gi];
    fl_adam_hyper h = adam_hyper(g, o->n_steps, decoupled);
    for (int i = 0; i < g->n_params; i++) {
      fl_tensor *p = g->params[i];
      if (p->grad_none) continue;   /* no gradient since zero_grad: torch skips it too */
      size_t off = fl__opt_offset(o, p);
      fl_backend_for(p->device)->adam_step(p->data, p->grad->data, m + off, v + off, &h, (size_t)fl_numel(p));
    }
  }
  return FL_OK;
}

static fl_status adam_step(fl_optimizer *o) { return adam_any_step(o, 0); }
static fl_status adamw_step(fl_optimizer *o) { return adam_any_step(o, 1); }

/* Made as SGD is (one group, every parameter), then given betas, eps and the two moments. */
static fl_optimizer *adam_make(fl_module *model, float lr, int decoupled) {
  FL_CHECK(model, "fl_adam%s_new: model is NULL", decoupled ? "w" : "");
  FL_CHECK(fl_module_collate(model) == FL_OK, "fl_adam%s_new: %s", decoupled ? "w" : "", fl_last_error());
  fl_optimizer *o = fl_sgd_new(model, lr);
  o->name = decoupled ? "AdamW" : "Adam";
  o->step = decoupled ? adamw_step : adam_step;
  o->has_betas = 1;
  fl_param_group *g = &o->groups[0];
  g->beta1 = 0.9, g->beta2 = 0.999, g->eps = 1e-8;
  g->wd = decoupled ? 0.01f : 0.0f;
  FL_CHECK(fl__opt_add_buf(o, "exp_avg") && fl__opt_add_buf(o, "exp_avg_sq"),
           "fl_adam%s_new: out of memory for the moments: %s", decoupled ? "w" : "", fl_last_error());
  return o;
}

fl_optimizer *fl_adam_new(fl_module *model, float lr) { return adam_make(model, lr, 0); }
fl_optimizer *fl_adamw_new(fl_module *model, float lr) { return adam_make(model, lr, 1); }
