/* Schedules as pure functions of the step index: OneCycleLR and CosineAnnealingLR with
 * PyTorch's formulas, evaluated in double in the same order as torch's Python. */
#include <math.h>

#include "fl/optim.h"

fl_schedule fl_onecycle(double max_lr, int64_t total_steps) {
  FL_CHECK(max_lr > 0 && total_steps >= 1, "fl_onecycle: needs max_lr > 0 and total_steps >= 1");
  return (fl_schedule){.kind = FL_SCHED_ONECYCLE, .total_steps = total_steps, .max_lr = max_lr,
                       .pct_start = 0.3, .div_factor = 25.0, .final_div_factor = 1e4,
                       .cycle_momentum = 1, .base_mom = 0.85, .max_mom = 0.95};
}

fl_schedule fl_cosine(double base_lr, int64_t t_max, double eta_min) {
  FL_CHECK(base_lr > 0 && t_max >= 1, "fl_cosine: needs base_lr > 0 and T_max >= 1");
  return (fl_schedule){.kind = FL_SCHED_COSINE, .total_steps = t_max, .max_lr = base_lr, .eta_min = eta_min};
}

fl_schedule fl_exponential(double base_lr, double gamma, int64_t total_steps) {
  FL_CHECK(base_lr > 0 && gamma > 0 && total_steps >= 1, "fl_exponential: needs base_lr > 0, gamma > 0, total_steps >= 1");
  return (fl_schedule){.kind = FL_SCHED_EXP, .total_steps = total_steps, .max_lr = base_lr, .gamma = gamma};
}

fl_schedule fl_step_schedule(double base_lr, int64_t step_size, double gamma, int64_t total_steps) {
  FL_CHECK(base_lr > 0 && gamma > 0 && step_size >= 1 && total_steps >= 1,
           "fl_step_schedule: needs base_lr > 0, step_size >= 1, gamma > 0, total_steps >= 1");
  return (fl_schedule){.kind = FL_SCHED_STEP, .total_steps = total_steps, .max_lr = base_lr, .gamma = gamma,
                       .step_size = step_size};
}

fl_schedule fl_linear_warmup(double base_lr, double start_factor, int64_t warmup_steps, int64_t total_steps) {
  FL_CHECK(base_lr > 0 && start_factor > 0 && start_factor <= 1 && warmup_steps >= 1 && total_steps >= warmup_steps,
           "fl_linear_warmup: needs base_lr > 0, 0 < start_factor <= 1, 1 <= warmup_steps <= total_steps");
  return (fl_schedule){.kind = FL_SCHED_WARMUP, .total_steps = total_steps, .max_lr = base_lr,
                       .start_factor = start_factor, .warmup_steps = warmup_steps};
}

/* torch's _annealing_cos / _annealing_linear */
static double anneal(int linear, double start, double end, double pct) {
  if (linear) return (end - start) * pct + start;
  double cos_out = cos(M_PI * pct) + 1;
  return end + (start - end) / 2.0 * cos_out;
}

/* OneCycleLR.get_lr at step_num: the phase holding the step, then the anneal within it. */
static void onecycle_at(const fl_schedule *s, double step_num, double *lr, double *mom) {
  const double total = (double)s->total_steps;
  const double initial_lr = s->max_lr / s->div_factor, min_lr = initial_lr / s->final_div_factor;
  struct phase { double end_step, start_lr, end_lr, start_mom, end_mom; } ph[3];
  int n;
  if (s->three_phase) {
    ph[0] = (struct phase){s->pct_start * total - 1, initial_lr, s->max_lr, s->max_mom, s->base_mom};
    ph[1] = (struct phase){2 * s->pct_start * total - 2, s->max_lr, initial_lr, s->base_mom, s->max_mom};
    ph[2] = (struct phase){total - 1, initial_lr, min_lr, s->max_mom, s->max_mom};
    n = 3;
  } else {
    ph[0] = (struct phase){s->pct_start * total - 1, initial_lr, s->max_lr, s->max_mom, s->base_mom};
    ph[1] = (struct phase){total - 1, s->max_lr, min_lr, s->base_mom, s->max_mom};
    n = 2;
  }
  double start_step = 0;
  for (int i = 0; i < n; i++) {
    if (step_num <= ph[i].end_step || i == n - 1) {
      /* a phase of no length (torch divides by zero there) gives its end values */
      double len = ph[i].end_step - start_step;
      double pct = len != 0 ? (step_num - start_step) / len : 1.0;
      *lr = anneal(s->anneal_linear, ph[i].start_lr, ph[i].end_lr, pct);
      *mom = s->cycle_momentum ? anneal(s->anneal_linear, ph[i].start_mom, ph[i].end_mom, pct) : NAN;
      return;
    }
    start_step = ph[i].end_step;
  }
}

int fl_schedule_at(const fl_schedule *s, int64_t i, double *lr, double *mom) {
  FL_CHECK(s && i >= 0 && s->total_steps >= 1 && lr && mom, "fl_schedule_at: bad schedule or step %lld",
           (long long)i);
  int past = i >= s->total_steps;
  if (past) i = s->total_steps - 1;
  switch (s->kind) {
  case FL_SCHED_ONECYCLE:
    onecycle_at(s, (double)i, lr, mom);
    break;
  case FL_SCHED_COSINE:
    *lr = s->eta_min + (s->max_lr - s->eta_min) * (1 + cos(M_PI * (double)i / (double)s->total_steps)) / 2;
    *mom = NAN;
    break;
  case FL_SCHED_EXP:
    *lr = s->max_lr * pow(s->gamma, (double)i);
    *mom = NAN;
    break;
  case FL_SCHED_STEP:
    *lr = s->max_lr * pow(s->gamma, (double)(i / s->step_size));
    *mom = NAN;
    break;
  case FL_SCHED_WARMUP: {
    int64_t k = i < s->warmup_steps ? i : s->warmup_steps;
    *lr = s->max_lr * (s->start_factor + (1.0 - s->start_factor) * (double)k / (double)s->warmup_steps);
    *mom = NAN;
    break;
  }
  default:
    FL_CHECK(0, "fl_schedule_at: unknown schedule kind %d", (int)s->kind);
  }
  return past;
}

int fl_schedule_apply(const fl_schedule *s, fl_optimizer *o, int64_t i) {
  double lr, mom;
  int past = fl_schedule_at(s, i, &lr, &mom);
  for (int g = 0; g < o->n_groups; g++) {
    o->groups[g].lr = (float)lr;
    if (!isnan(mom)) {
      if (o->has_betas) o->groups[g].beta1 = mom;
      else o->groups[g].mom = (float)mom;
    }
  }
  return past;
}
