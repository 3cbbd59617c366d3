/* fl_module_summary: the course's Learner.summary (13_resnet, with 14_augment's MFLOPS) as a
 * table: per top-level layer its kind, input and output shapes, parameters and MFLOPs. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fl/nn.h"
#include "nn/nn_internal.h"

static const char *shape(const fl_tensor *t, char *buf, size_t n) {
  int k = snprintf(buf, n, "(");
  for (int i = 0; i < t->ndim && k < (int)n; i++)
    k += snprintf(buf + k, n - (size_t)k, "%s%" PRId64, i ? ", " : "", t->shape[i]);
  if (k < (int)n) snprintf(buf + k, n - (size_t)k, ")");
  return buf;
}

static void training_save(fl_module *m, int *flags, int *k) {
  flags[(*k)++] = m->training;
  for (int i = 0; i < m->n_children; i++) training_save(m->children[i], flags, k);
}
static void training_restore(fl_module *m, const int *flags, int *k) {
  m->training = flags[(*k)++];
  for (int i = 0; i < m->n_children; i++) training_restore(m->children[i], flags, k);
}
static int count_modules(const fl_module *m) {
  int n = 1;
  for (int i = 0; i < m->n_children; i++) n += count_modules(m->children[i]);
  return n;
}

fl_status fl_module_summary(fl_module *m, int ndim, const int64_t *input_shape, FILE *out) {
  FL_CHECK(m && input_shape && out && ndim > 0 && ndim <= FL_MAX_DIMS, "fl_module_summary: bad arguments");
  fl_graph *g = fl_graph_new();
  fl_tensor *x = fl_tensor_new(FL_F32, m->flat ? m->device : FL_CPU, ndim, input_shape);
  if (!g || !x) {
    fl_graph_free(g), fl_tensor_free(x);
    return fl_error(FL_ERR_NOMEM, "summary: out of memory for an input of this shape");
  }
  /* eval mode and no tape: the running statistics, dropout counters and grads stay as they were */
  int nm = count_modules(m), k = 0;
  int *flags = fl_xmalloc((size_t)nm * sizeof *flags);
  training_save(m, flags, &k);
  fl_module_train(m, 0);
  fl_graph_set_grad(g, 0);

  /* a Sequential shows its children, any other module itself */
  int rows = m->n_children && m->ops && (!strcmp(m->ops->kind, "Sequential")) ? m->n_children : 0;
  fprintf(out, "%-14s %-20s %-20s %10s %9s\n", "Module", "Input", "Output", "Params", "MFLOPs");
  char a[96], b[96];
  int64_t tot_p = 0, tot_f = 0;
  fl_tensor *h = fl__model_input(m, g, x);
  fl_status st = FL_OK;
  for (int i = 0; i < (rows ? rows : 1) && h; i++) {
    fl_module *c = rows ? m->children[i] : m;
    fl_tensor *y = fl_module_forward(c, g, h);
    if (!y) {
      st = fl_error(FL_ERR_NOMEM, "summary: the forward of layer %d (%s) failed: %s", i, c->ops->kind,
                    fl_last_error());
      break;
    }
    int64_t p = fl_module_numel(c), f = fl__module_flops(c);
    tot_p += p, tot_f += f;
    fprintf(out, "%-14s %-20s %-20s %10" PRId64 " %9.3f\n", c->ops->kind, shape(h, a, sizeof a),
            shape(y, b, sizeof b), p, (double)f / 1e6);
    h = y;
  }
  if (!h && st == FL_OK) st = fl_error(FL_ERR_NOMEM, "summary: the input view failed: %s", fl_last_error());
  k = 0;
  training_restore(m, flags, &k);
  free(flags);
  fl_tensor_free(x);
  fl_graph_free(g);
  if (st != FL_OK) return st;
  fprintf(out, "total MFLOPs: %.3f per sample (2 x the multiply-adds of the conv and linear layers)\n",
          (double)tot_f / 1e6);
  fprintf(out, "total params: %" PRId64 "\n", tot_p);
  return FL_OK;
}
