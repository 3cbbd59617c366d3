/* libFuzzer harness: building a dataset from two IDX files (fl_dataset_from_idx: ndim, the
 * image/label counts, sizes, labels -> n_classes), through the path reader. Input: 2 bytes
 * (little-endian) giving the images file's length, then the images file, then the labels file.
 * The files are memfds named by /proc/self/fd/N (fl_dataset_from_idx takes paths), so this also
 * runs fl_idx_read's open/stat/mmap. Seeds: fuzz/seeds.sh. */
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "backend/backend.h"
#include "fuzz/fuzz_common.h"

/* dataset.c reaches the backends only for fl_dataset_to and device copies, which this harness
 * never makes: these stand-ins keep the rest of the library (oneDNN, CUDA) out of the build.
 * (A new backend call in dataset.c shows up here as an undefined reference: add it.) */
const fl_backend *fl_backend_for(fl_device d) { (void)d; abort(); }
const fl_backend *fl_backend_cuda(void) { return NULL; }
const char *fl_backend_cuda_reason(void) { return "not in the fuzz build"; }
int fl_cuda_available(void) { return 0; }
const char *fl_device_name(fl_device d) { return d == FL_CPU ? "cpu" : "cuda"; }

/* A memfd holding p[0..n), its path in *path. */
static void put(int *fd, char path[64], const char *name, const uint8_t *p, size_t n) {
  if (*fd < 0) {
    *fd = memfd_create(name, MFD_CLOEXEC);
    FUZZ_ASSERT(*fd >= 0);
    snprintf(path, 64, "/proc/self/fd/%d", *fd);
  }
  FUZZ_ASSERT(ftruncate(*fd, 0) == 0);
  for (size_t k = 0; k < n;) {
    ssize_t w = pwrite(*fd, p + k, n - k, (off_t)k);
    FUZZ_ASSERT(w > 0);
    k += (size_t)w;
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static int fi = -1, fl = -1;
  static char pi[64], pl[64];
  if (size < 2) return -1;
  size_t k = (size_t)(data[0] | data[1] << 8) % (size - 1);
  put(&fi, pi, "images", data + 2, k);
  put(&fl, pl, "labels", data + 2 + k, size - 2 - k);
  fl_dataset *ds = (fl_dataset *)1;
  fl_status st = fl_dataset_from_idx(pi, pl, &ds);
  if (st != FL_OK) {
    FUZZ_ASSERT(ds == NULL);
    FUZZ_ASSERT(st == FL_ERR_IO || st == FL_ERR_FORMAT);
    const char *m = fl_last_error();
    FUZZ_ASSERT(strstr(m, pi) || strstr(m, pl));
    FUZZ_ASSERT(strchr(m, '\n') == NULL);
    return 0;
  }
  FUZZ_ASSERT(ds && ds->n >= 1 && ds->c >= 1 && ds->h >= 1 && ds->w >= 1);
  FUZZ_ASSERT(ds->device == FL_CPU && ds->dev_x == NULL);
  FUZZ_ASSERT(ds->n_classes >= 1 && ds->n_classes <= 256);
  size_t row = (size_t)ds->c * (size_t)ds->h * (size_t)ds->w;
  volatile uint8_t sum = 0;
  for (size_t i = 0; i < (size_t)ds->n * row; i++) sum += ds->x[i];   /* all there (ASan) */
  (void)sum;
  for (int64_t i = 0; i < ds->n; i++) FUZZ_ASSERT(ds->y[i] >= 0 && ds->y[i] < ds->n_classes);
  fl_dataset_free(ds);
  return 0;
}
