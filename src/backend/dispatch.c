/* Picks the kernel table for a device, and finds the CUDA one.
 *
 * CUDA builds put the CUDA backend in its own library, libflexlearn_cuda.so (see backend.h),
 * so that nothing here links the CUDA runtime or cuBLAS. On the first question about CUDA
 * (fl_cuda_available, fl_backend_cuda, fl_backend_cuda_reason: once per process, thread-safe):
 *  1. probe for a driver, cheaply: dlopen libcuda.so.1, cuInit, cuDeviceGetCount. No driver,
 *     or no device: CUDA is unavailable, and no CUDA runtime / cuBLAS library is ever mapped;
 *  2. load the plugin from the first of: $FLEXLEARN_CUDA_LIB (a path, and then only that);
 *     the directory of the program or library holding this code, and its parent (tests and
 *     examples live one level below the build directory); the build directory compiled in
 *     (FL_CUDA_PLUGIN_DIR); the loader's search path;
 *  3. check its ABI, then ask it to set the device up.
 * Each failure leaves a one-line reason for fl_backend_cuda_reason().
 */
#include "backend/backend.h"

#ifndef FL_HAVE_CUDA
const fl_backend *fl_backend_cuda(void) { return NULL; }
int fl_cuda_available(void) { return 0; }
const char *fl_backend_cuda_reason(void) { return "this build has no CUDA backend (make CUDA=1)"; }
void fl__cuda_test_flags(unsigned flags) { (void)flags; }
#else

#include <dlfcn.h>
#include <link.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef FL_CUDA_PLUGIN_DIR
#define FL_CUDA_PLUGIN_DIR ""
#endif

static pthread_once_t cuda_once = PTHREAD_ONCE_INIT;
static int cuda_probed;                         /* set inside cuda_once (test flags check) */
static unsigned test_flags;
static const fl_backend *cuda_table;            /* NULL unless usable */
static char why_not[1536] = "the CUDA backend was not set up";

void fl__cuda_test_flags(unsigned flags) {
  FL_CHECK(!cuda_probed, "fl__cuda_test_flags(%u) after CUDA was already probed", flags);
  test_flags = flags;
}

/* ---- 1. the driver ---- */
typedef int (*cu_init_fn)(unsigned flags);
typedef int (*cu_count_fn)(int *count);
typedef int (*cu_errstr_fn)(int err, const char **s);

enum { CU_SUCCESS = 0, CU_ERROR_NO_DEVICE = 100 };

/* "NAME: text" for a driver error code, as well as the driver can say it. */
static void cu_err_text(void *drv, int e, char *buf, size_t n) {
  cu_errstr_fn name = (cu_errstr_fn)dlsym(drv, "cuGetErrorName");
  cu_errstr_fn text = (cu_errstr_fn)dlsym(drv, "cuGetErrorString");
  const char *a = NULL, *b = NULL;
  if (name) name(e, &a);
  if (text) text(e, &b);
  snprintf(buf, n, "%s: %s", a ? a : "error", b ? b : "(no description)");
  if (!a && !b) snprintf(buf, n, "error %d", e);
}

/* 1 when a driver with at least one device is present; else 0 with why_not set. The driver
 * stays loaded when usable (the runtime will use it). When cuInit was never called (no
 * driver, or a library without cuInit) it is unloaded; once cuInit has run it is left mapped
 * (unloading an initialised driver has crashed other programs at exit) -- only the driver,
 * never the CUDA runtime or cuBLAS. */
static int driver_present(void) {
  dlerror();
  void *drv = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_LOCAL);
  if (!drv) {
    const char *e = dlerror();
    snprintf(why_not, sizeof why_not, "no CUDA driver (%s)", e ? e : "libcuda.so.1 not found");
    return 0;
  }
  cu_init_fn init = (cu_init_fn)dlsym(drv, "cuInit");
  cu_count_fn count = (cu_count_fn)dlsym(drv, "cuDeviceGetCount");
  if (!init || !count) {
    snprintf(why_not, sizeof why_not, "libcuda.so.1 lacks cuInit/cuDeviceGetCount: not a usable CUDA driver");
    dlclose(drv);
    return 0;
  }
  char t[256];
  int e = init(0), n = 0;
  if (e == CU_ERROR_NO_DEVICE) {
    cu_err_text(drv, e, t, sizeof t);
    snprintf(why_not, sizeof why_not, "a CUDA driver but no CUDA device (cuInit: %s)", t);
    return 0;
  }
  if (e != CU_SUCCESS) {
    cu_err_text(drv, e, t, sizeof t);
    snprintf(why_not, sizeof why_not, "the CUDA driver failed to start (cuInit: %s)", t);
    return 0;
  }
  if ((e = count(&n)) != CU_SUCCESS) {
    cu_err_text(drv, e, t, sizeof t);
    snprintf(why_not, sizeof why_not, "the CUDA driver cannot count devices (cuDeviceGetCount: %s)", t);
    return 0;
  }
  if (n < 1) {
    snprintf(why_not, sizeof why_not, "a CUDA driver but no CUDA device");
    return 0;
  }
  return 1;                                     /* drv stays open */
}

/* ---- 2. the plugin ---- */
/* The directory of the program or shared library holding this code, into dir ("" if unknown). */
static void own_dir(char *dir, size_t n) {
  static const char anchor = 0;
  Dl_info info;
  struct link_map *lm = NULL;
  char path[PATH_MAX];
  dir[0] = 0;
  if (!dladdr1(&anchor, &info, (void **)&lm, RTLD_DL_LINKMAP) || !lm) return;
  if (lm->l_name && lm->l_name[0]) {
    if (!realpath(lm->l_name, path)) return;
  } else {                                      /* the main program */
    ssize_t k = readlink("/proc/self/exe", path, sizeof path - 1);
    if (k <= 0) return;
    path[k] = 0;
  }
  char *slash = strrchr(path, '/');
  if (!slash) return;
  *slash = 0;
  snprintf(dir, n, "%s", path[0] ? path : "/");
}

/* Tries one path (or a bare name for the loader's search). 1 when loaded and of our ABI, with
 * *out set; 0 when it does not exist (only named in `searched`); -1 when it exists but cannot
 * be used, with `first_err` set (if still empty) to why. */
static int try_plugin(const char *path, const fl_cuda_plugin **out, char *searched, size_t sn,
                      char *first_err, size_t en) {
  const int bare = strchr(path, '/') == NULL;
  if (!bare && access(path, F_OK) != 0) {
    size_t k = strlen(searched);
    snprintf(searched + k, sn - k, "%s%s", k ? ", " : "", path);
    return 0;
  }
  dlerror();
  void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    const char *e = dlerror();
    if (bare) {                                 /* not on the loader's path: "not found" */
      size_t k = strlen(searched);
      snprintf(searched + k, sn - k, "%sthe loader's path", k ? ", " : "");
      if (e && !strstr(e, "No such file")) {
        if (!first_err[0]) snprintf(first_err, en, "cannot load the CUDA backend: %s", e);
        return -1;
      }
      return 0;
    }
    if (!first_err[0]) snprintf(first_err, en, "cannot load the CUDA backend: %s", e ? e : path);
    return -1;
  }
  fl_cuda_plugin_entry entry = (fl_cuda_plugin_entry)dlsym(h, FL_CUDA_PLUGIN_ENTRY);
  const fl_cuda_plugin *p = entry ? entry() : NULL;
  const uint32_t want = FL_CUDA_PLUGIN_ABI + ((test_flags & FL__CUDA_WRONG_ABI) ? 1u : 0u);
  if (!p) {
    if (!first_err[0])
      snprintf(first_err, en, "%s is not a flexlearn CUDA backend (no %s)", path, FL_CUDA_PLUGIN_ENTRY);
  } else if (p->abi != want) {               /* only `abi` may be read from another ABI */
    if (!first_err[0])
      snprintf(first_err, en, "%s is a stale CUDA backend (plugin ABI %u, this library expects %u): "
               "rebuild both together (make CUDA=1)", path, (unsigned)p->abi, (unsigned)want);
  } else if (p->size != sizeof(fl_cuda_plugin) || p->backend_size != sizeof(fl_backend)) {
    if (!first_err[0])
      snprintf(first_err, en, "%s is a stale CUDA backend (ABI %u but a %u-byte kernel table, this "
               "library's has %zu): rebuild both together (make CUDA=1)", path, (unsigned)want,
               (unsigned)p->backend_size, sizeof(fl_backend));
  } else {
    *out = p;                                   /* h stays open for the process's life */
    return 1;
  }
  /* A stale plugin stays mapped, unused: unloading it would unload the CUDA runtime and C++
   * library it pulled in, which do not expect that (libstdc++'s emergency pool, for one, is
   * then reported as leaked). Only a library that is no plugin at all is closed. */
  if (!p) dlclose(h);
  return -1;
}

/* Finds and loads the plugin: 1 with *out set, else 0 with why_not set. */
static int load_plugin(const fl_cuda_plugin **out) {
  char searched[1024] = "", err[1024] = "", path[PATH_MAX + 32];
  const char *env = getenv("FLEXLEARN_CUDA_LIB");
  if (env && env[0]) {
    int r = try_plugin(env, out, searched, sizeof searched, err, sizeof err);
    if (r == 1) return 1;
    if (r == 0) snprintf(why_not, sizeof why_not, "FLEXLEARN_CUDA_LIB=%s: no such file", env);
    else snprintf(why_not, sizeof why_not, "FLEXLEARN_CUDA_LIB=%s: %s", env, err);
    return 0;
  }
  char dirs[3][PATH_MAX];
  own_dir(dirs[0], sizeof dirs[0]);
  snprintf(dirs[1], sizeof dirs[1], "%s", dirs[0]);
  char *slash = strrchr(dirs[1], '/');
  if (slash && slash != dirs[1]) *slash = 0;
  else dirs[1][0] = 0;
  snprintf(dirs[2], sizeof dirs[2], "%s", FL_CUDA_PLUGIN_DIR);
  for (int i = 0; i < 3; i++) {
    if (!dirs[i][0]) continue;
    int dup = 0;
    for (int j = 0; j < i; j++) dup |= !strcmp(dirs[i], dirs[j]);
    if (dup) continue;
    snprintf(path, sizeof path, "%s/%s", dirs[i], FL_CUDA_PLUGIN_NAME);
    if (try_plugin(path, out, searched, sizeof searched, err, sizeof err) == 1) return 1;
  }
  if (try_plugin(FL_CUDA_PLUGIN_NAME, out, searched, sizeof searched, err, sizeof err) == 1) return 1;
  if (err[0]) snprintf(why_not, sizeof why_not, "%s", err);
  else
    snprintf(why_not, sizeof why_not, "the CUDA backend (%s) was not found: searched %s (or set FLEXLEARN_CUDA_LIB)",
             FL_CUDA_PLUGIN_NAME, searched);
  return 0;
}

/* ---- 3. once per process ---- */
static void cuda_probe(void) {
  cuda_probed = 1;
  if (!(test_flags & FL__CUDA_NO_DRIVER_PROBE) && !driver_present()) return;
  const fl_cuda_plugin *p = NULL;
  if (!load_plugin(&p)) return;
  if (!p->available(fl_error)) {
    const char *r = p->reason();
    snprintf(why_not, sizeof why_not, "%s", r && r[0] ? r : "the CUDA backend did not start (no reason given)");
    return;
  }
  cuda_table = p->backend();
  if (!cuda_table) snprintf(why_not, sizeof why_not, "the CUDA backend gave no kernel table");
}

const fl_backend *fl_backend_cuda(void) {
  pthread_once(&cuda_once, cuda_probe);
  return cuda_table;
}

int fl_cuda_available(void) { return fl_backend_cuda() != NULL; }

const char *fl_backend_cuda_reason(void) {
  return fl_backend_cuda() ? "the CUDA backend is available" : why_not;
}
#endif

const fl_backend *fl_backend_for(fl_device d) {
  if (d == FL_CPU) return &fl_backend_cpu;
  const fl_backend *b = fl_backend_cuda();
  FL_CHECK(b != NULL, "tensor on %s but there is no CUDA backend (%s)", fl_device_name(d),
           fl_backend_cuda_reason());
  return b;
}
