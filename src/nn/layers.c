/* Linear, ReLU, Sequential and the lesson's get_model. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "fl/nn.h"

static fl_module *module_new(const fl_module_ops *ops) {
  fl_module *m = fl_xcalloc(1, sizeof *m);
  m->ops = ops;
  m->training = 1;
  return m;
}

/* ---- Linear: y (B, O) = x (B, I) . W^T + b, W (O, I) ---- */
static fl_tensor *linear_forward(fl_module *m, fl_graph *g, fl_tensor *x) {
  return fl_linear(g, x, m->params[0], m->n_params > 1 ? m->params[1] : NULL);
}
static const fl_module_ops linear_ops = {"Linear", linear_forward, NULL};

fl_module *fl_linear_new(int in, int out, int bias, fl_rng *rng) {
  FL_CHECK(in > 0 && out > 0, "fl_linear_new: in (%d) and out (%d) must be > 0", in, out);
  fl_module *m = module_new(&linear_ops);
  /* PyTorch: kaiming_uniform_(W, a=sqrt(5)) gives bound = gain*sqrt(3/fan_in) with
   * gain = sqrt(2/(1+5)), i.e. 1/sqrt(fan_in); the bias uses the same bound. */
  float bound = 1.0f / sqrtf((float)in);
  int64_t ws[2] = {out, in}, bs[1] = {out};
  m->n_params = bias ? 2 : 1;
  m->params = fl_xcalloc((size_t)m->n_params, sizeof *m->params);
  m->params[0] = fl_tensor_uniform(rng, FL_CPU, 2, ws, -bound, bound);
  FL_CHECK(m->params[0], "fl_linear_new: %s", fl_last_error());
  m->params[0]->name = "weight";
  if (bias) {
    m->params[1] = fl_tensor_uniform(rng, FL_CPU, 1, bs, -bound, bound);
    FL_CHECK(m->params[1], "fl_linear_new: %s", fl_last_error());
    m->params[1]->name = "bias";
  }
  for (int i = 0; i < m->n_params; i++) FL_CHECK(fl_tensor_require_grad(m->params[i]) == FL_OK, "out of memory");
  return m;
}

/* ---- ReLU ---- */
static fl_tensor *relu_forward(fl_module *m, fl_graph *g, fl_tensor *x) {
  (void)m;
  return fl_relu(g, x);
}
static const fl_module_ops relu_ops = {"ReLU", relu_forward, NULL};
fl_module *fl_relu_new(void) { return module_new(&relu_ops); }

/* ---- Sequential ---- */
/* A Linear (with bias) followed by a ReLU runs as one fused op (same bits, fewer passes). */
static fl_tensor *seq_forward(fl_module *m, fl_graph *g, fl_tensor *x) {
  for (int i = 0; i < m->n_children && x; i++) {
    fl_module *c = m->children[i];
    if (c->ops == &linear_ops && c->n_params == 2 && i + 1 < m->n_children &&
        m->children[i + 1]->ops == &relu_ops && !c->hook && !m->children[i + 1]->hook) {
      x = fl_linear_relu(g, x, c->params[0], c->params[1]);
      i++;
    } else {
      x = fl_module_forward(c, g, x);
    }
  }
  return x;
}
static const fl_module_ops seq_ops = {"Sequential", seq_forward, NULL};

fl_module *fl_sequential_new(int n, fl_module **mods) {
  FL_CHECK(n >= 0 && (n == 0 || mods), "fl_sequential_new: bad module list");
  fl_module *m = module_new(&seq_ops);
  m->children = fl_xcalloc((size_t)(n ? n : 1), sizeof *m->children);
  for (int i = 0; i < n; i++) {
    FL_CHECK(mods[i], "fl_sequential_new: module %d is NULL", i);
    m->children[i] = mods[i];
  }
  m->n_children = n;
  return m;
}

fl_module *fl_get_model(uint64_t seed, int in, int hidden, int out) {
  fl_rng rng = fl_rng_make(seed, FL_STREAM_INIT);
  fl_module *mods[3] = {fl_linear_new(in, hidden, 1, &rng), fl_relu_new(), fl_linear_new(hidden, out, 1, &rng)};
  fl_module *m = fl_sequential_new(3, mods);
  FL_CHECK(fl_module_collate(m) == FL_OK, "fl_get_model: %s", fl_last_error());
  return m;
}
