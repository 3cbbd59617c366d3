/* flexlearn: the whole public API (one header per layer, see include/fl/). */
#ifndef FLEXLEARN_H
#define FLEXLEARN_H
#include "fl/core.h"
#include "fl/tensor.h"
#include "fl/nn.h"
#include "fl/optim.h"
#include "fl/data.h"
#include "fl/metrics.h"
#include "fl/learner.h"
#include "fl/checkpoint.h"
#include "fl/hooks.h"
#endif
