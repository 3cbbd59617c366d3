/* Named models: what `--model NAME` builds (the CLI's fit, summary and predict share it). */
#include <string.h>

#include "fl/nn.h"

const char *fl_model_names(void) { return "mlp"; }

fl_module *fl_model_new(const char *name, uint64_t seed) {
  if (name && !strcmp(name, "mlp")) return fl_get_model(seed, 28 * 28, 50, 10);
  fl_error(FL_ERR_ARG, "unknown model '%s' (known: %s)", name ? name : "(null)", fl_model_names());
  return NULL;
}
