/* 11_initializing's lsuv_init (layer-sequential unit-variance init): for each (activation,
 * layer-before-it) pair, forward one batch and shift the layer's bias by the activation's mean
 * and divide its weight by the activation's std until the activation has mean ~0 and std ~1. */
#include <math.h>

#include "core/internal.h"
#include "fl/hooks.h"

typedef struct lsuv_stat { double mean, std; int seen; fl_status st; } lsuv_stat;

static fl_status lsuv_hook(fl_module *m, fl_tensor *in, fl_tensor *out, void *ctx) {
  (void)m, (void)in;
  lsuv_stat *s = ctx;
  int64_t h[FL_ACT_BINS];
  s->seen = 1;
  return s->st = fl_act_stats_compute(out, &s->mean, &s->std, h);
}

fl_status fl_lsuv_init(fl_module *model, fl_tensor *xb, fl_module **acts, fl_module **ins, int n, int max_iter) {
  FL_CHECK(model && xb && n >= 0 && (n == 0 || (acts && ins)) && max_iter >= 1, "fl_lsuv_init: bad arguments");
  for (int i = 0; i < n; i++) {
    FL_CHECK(acts[i] && ins[i] && ins[i]->n_params >= 1, "fl_lsuv_init: pair %d: no module or no weight", i);
    for (int p = 0; p < ins[i]->n_params && p < 2; p++)
      if (ins[i]->params[p]->device != FL_CPU)
        return fl_error(FL_ERR_DEVICE, "fl_lsuv_init: not on CUDA yet (run it before moving the model)");
    if (acts[i]->hook) return fl_error(FL_ERR_ARG, "fl_lsuv_init: module %d (%s) already has a forward hook", i, acts[i]->ops->kind);
  }
  fl_graph *g = fl_graph_new();
  if (!g) return fl_error(FL_ERR_NOMEM, "fl_lsuv_init: out of memory");
  fl_graph_set_grad(g, 0);
  fl_status st = FL_OK;
  for (int i = 0; i < n && st == FL_OK; i++) {
    lsuv_stat s = {0};
    acts[i]->hook = lsuv_hook, acts[i]->hook_ctx = &s;
    fl_tensor *w = ins[i]->params[0], *b = ins[i]->n_params > 1 ? ins[i]->params[1] : NULL;
    float *wd = w->data, *bd = b ? b->data : NULL;
    int it = 0;
    for (;; it++) {
      fl_graph_reset(g);
      s.seen = 0;
      fl_tensor *y = fl_module_forward(model, g, xb);
      if (!y) { st = s.st != FL_OK ? s.st : fl_error(FL_ERR_ARG, "fl_lsuv_init: the forward failed: %s", fl_last_error()); break; }
      if (!s.seen) { st = fl_error(FL_ERR_ARG, "fl_lsuv_init: pair %d: its activation module is not run by the model's forward", i); break; }
      if (fabs(s.std - 1) <= 1e-3 && (!b || fabs(s.mean) <= 1e-3)) break;
      if (it == max_iter || !(s.std > 0) || !isfinite(s.mean)) {
        st = fl_error(FL_ERR_ARG, "fl_lsuv_init: pair %d (%s after %s): mean %.4g, std %.4g after %d iterations", i,
                      acts[i]->ops->kind, ins[i]->ops->kind, s.mean, s.std, it);
        break;
      }
      if (bd) for (int64_t k = 0; k < fl_numel(b); k++) bd[k] -= (float)s.mean;
      for (int64_t k = 0; k < fl_numel(w); k++) wd[k] /= (float)s.std;
    }
    acts[i]->hook = NULL, acts[i]->hook_ctx = NULL;
  }
  fl_graph_free(g);
  return st;
}
