/* Picks the kernel table for a device. The CUDA table exists only in CUDA builds. */
#include "backend/backend.h"

#ifndef FL_HAVE_CUDA
const fl_backend *fl_backend_cuda(void) { return NULL; }
int fl_cuda_available(void) { return 0; }
const char *fl_backend_cuda_reason(void) { return "this build has no CUDA backend (make CUDA=1)"; }
#endif

const fl_backend *fl_backend_for(fl_device d) {
  if (d == FL_CPU) return &fl_backend_cpu;
  const fl_backend *b = fl_backend_cuda();
  FL_CHECK(b != NULL, "tensor on %s but this build has no CUDA backend (build with make CUDA=1)",
           fl_device_name(d));
  return b;
}
