/* Process setup: one OpenMP pool shared with oneDNN, flush-to-zero, the clock, devices. */
#include <omp.h>
#include <time.h>
#include <xmmintrin.h>
#include <pmmintrin.h>

#include "fl/core.h"

void fl_init(int n_threads) {
  if (n_threads > 0) omp_set_num_threads(n_threads);
  /* Denormals slow momentum runs by ~40 %: flush them, on this thread and in the pool. */
  _MM_SET_FLUSH_ZERO_MODE(_MM_FLUSH_ZERO_ON);
  _MM_SET_DENORMALS_ZERO_MODE(_MM_DENORMALS_ZERO_ON);
#pragma omp parallel
  {
    _MM_SET_FLUSH_ZERO_MODE(_MM_FLUSH_ZERO_ON);
    _MM_SET_DENORMALS_ZERO_MODE(_MM_DENORMALS_ZERO_ON);
  }
}

int fl_num_threads(void) { return omp_get_max_threads(); }

double fl_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

const char *fl_device_name(fl_device d) { return d == FL_CUDA ? "cuda" : "cpu"; }

fl_device fl_default_device(void) { return fl_cuda_available() ? FL_CUDA : FL_CPU; }
