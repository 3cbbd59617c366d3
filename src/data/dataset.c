/* Datasets: images (n, c, h, w) uint8 + labels (n) int32 built from IDX files; Fashion-MNIST
 * with its four files decompressed in two threads; the one-time upload to a device. */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "backend/backend.h"
#include "fl/data.h"

/* Builds a dataset from two parsed IDX files, taking ownership of im->data (on success and on
 * failure both idx are freed). The paths are for messages. */
static fl_status dataset_from_parts(fl_idx *im, const char *impath, fl_idx *lb,
                                    const char *lbpath, fl_dataset **out) {
  fl_status st = FL_OK;
  int64_t n = im->dims[0];
  if (im->ndim != 3 && im->ndim != 4)
    st = fl_error(FL_ERR_FORMAT, "%s: images must have 3 (N, H, W) or 4 (N, C, H, W) dimensions, "
                  "this file has %d", impath, im->ndim);
  else if (lb->ndim != 1)
    st = fl_error(FL_ERR_FORMAT, "%s: labels must have 1 dimension (N), this file has %d", lbpath,
                  lb->ndim);
  else if (lb->dims[0] != n)
    st = fl_error(FL_ERR_FORMAT, "count mismatch: %s has %lld images but %s has %lld labels",
                  impath, (long long)n, lbpath, (long long)lb->dims[0]);
  else if (n > INT32_MAX || im->n / (size_t)n > INT32_MAX)
    st = fl_error(FL_ERR_FORMAT, "%s: too large (%lld images of %zu bytes; the limit is 2^31-1 "
                  "of each)", impath, (long long)n, im->n / (size_t)n);
  if (st) {
    fl_idx_free(im);
    fl_idx_free(lb);
    return st;
  }
  int32_t *y = malloc((size_t)n * sizeof *y);
  if (!y) {
    fl_idx_free(im);
    fl_idx_free(lb);
    return fl_error(FL_ERR_NOMEM, "%s: out of memory for %lld labels", lbpath, (long long)n);
  }
  int maxl = 0;
  for (int64_t i = 0; i < n; i++) {
    y[i] = lb->data[i];
    if (y[i] > maxl) maxl = y[i];
  }
  fl_dataset *ds = fl_xcalloc(1, sizeof *ds);
  ds->x = im->data;           /* taken over, no copy */
  im->data = NULL;
  ds->y = y;
  ds->n = n;
  ds->device = FL_CPU;
  if (im->ndim == 3) {
    ds->c = 1;
    ds->h = (int)im->dims[1];
    ds->w = (int)im->dims[2];
  } else {
    ds->c = (int)im->dims[1];
    ds->h = (int)im->dims[2];
    ds->w = (int)im->dims[3];
  }
  ds->n_classes = maxl + 1;   /* uint8 labels: 1..256 */
  fl_idx_free(im);
  fl_idx_free(lb);
  *out = ds;
  return FL_OK;
}

fl_status fl_dataset_from_idx(const char *images, const char *labels, fl_dataset **out) {
  FL_CHECK(images && out, "fl_dataset_from_idx: NULL argument");
  *out = NULL;
  fl_idx im, lb;
  fl_status st = fl_idx_read(images, &im);
  if (st) return st;
  if (!labels) {   /* images to predict: labels all 0, n_classes 0 */
    lb = (fl_idx){.data = calloc(im.dims[0] > 0 ? (size_t)im.dims[0] : 1, 1), .ndim = 1, .dims = {im.dims[0]},
                  .n = (size_t)im.dims[0]};
    if (!lb.data) {
      fl_idx_free(&im);
      return fl_error(FL_ERR_NOMEM, "%s: out of memory", images);
    }
    st = dataset_from_parts(&im, images, &lb, "(no labels)", out);
    if (st == FL_OK) (*out)->n_classes = 0;
    return st;
  }
  if ((st = fl_idx_read(labels, &lb))) {
    fl_idx_free(&im);
    return st;
  }
  return dataset_from_parts(&im, images, &lb, labels, out);
}

static void free_device_copies(fl_dataset *ds) {
  if (ds->device != FL_CPU) {
    const fl_backend *be = fl_backend_for(ds->device);
    be->free(ds->dev_x);
    be->free(ds->dev_y);
  }
  ds->dev_x = ds->dev_y = NULL;
  ds->device = FL_CPU;
}

void fl_dataset_free(fl_dataset *ds) {
  if (!ds) return;
  free_device_copies(ds);
  free(ds->x);
  free(ds->y);
  free(ds);
}

fl_status fl_dataset_to(fl_dataset *ds, fl_device dev) {
  FL_CHECK(ds != NULL, "fl_dataset_to: ds is NULL");
  if (ds->device == dev) return FL_OK;
  free_device_copies(ds);                       /* now on FL_CPU only */
  if (dev == FL_CPU) return FL_OK;
  if (dev == FL_CUDA && !fl_cuda_available())
    return fl_error(FL_ERR_DEVICE, "fl_dataset_to: no usable CUDA device (%s)", fl_backend_cuda_reason());
  const fl_backend *be = fl_backend_for(dev);
  size_t xb = (size_t)ds->n * (size_t)ds->c * (size_t)ds->h * (size_t)ds->w;
  size_t yb = (size_t)ds->n * sizeof(int32_t);
  void *dx = be->alloc(xb ? xb : 1), *dy = be->alloc(yb ? yb : 1);
  if (!dx || !dy) {
    be->free(dx);
    be->free(dy);
    return fl_error(FL_ERR_NOMEM, "fl_dataset_to: out of %s memory for the dataset (%zu bytes)",
                    fl_device_name(dev), xb + yb);
  }
  be->from_host(dx, ds->x, xb);
  be->from_host(dy, ds->y, yb);
  fl_status st = be->status();
  if (st) {
    be->free(dx);
    be->free(dy);
    return st;
  }
  ds->dev_x = dx;
  ds->dev_y = dy;
  ds->device = dev;
  return FL_OK;
}

const char *fl_default_data_dir(void) {
  const char *e = getenv("FLEXLEARN_DATA");
  return e && *e ? e : "/usr/share/datasets/fashion-mnist";
}

/* ---- Fashion-MNIST ---- */
static int is_file(const char *p) {
  struct stat st;
  return stat(p, &st) == 0 && !S_ISDIR(st.st_mode);
}

/* dir/name.gz when it exists (preferred: it is what the dataset ships as), else dir/name. */
static fl_status find_file(const char *dir, const char *name, char *path, size_t n) {
  int k = snprintf(path, n, "%s/%s.gz", dir, name);
  if (k < 0 || (size_t)k >= n) return fl_error(FL_ERR_ARG, "data directory name too long: %s", dir);
  if (is_file(path)) return FL_OK;
  snprintf(path, n, "%s/%s", dir, name);
  if (is_file(path)) return FL_OK;
  struct stat st;
  if (stat(dir, &st) != 0)
    return fl_error(FL_ERR_IO, "data directory %s: %s (set FLEXLEARN_DATA or pass a directory)",
                    dir, strerror(errno));
  if (!S_ISDIR(st.st_mode))
    return fl_error(FL_ERR_IO, "data directory %s: not a directory", dir);
  return fl_error(FL_ERR_IO, "%s/%s(.gz): not found (Fashion-MNIST needs train-images-idx3-ubyte, "
                  "train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte)",
                  dir, name);
}

typedef struct read_job {
  const char *path;
  fl_idx idx;
  fl_status st;
  char err[512];      /* fl_last_error() is per thread: carried back here */
} read_job;

static void job_run(read_job *j) {
  j->st = fl_idx_read(j->path, &j->idx);
  if (j->st) snprintf(j->err, sizeof j->err, "%s", fl_last_error());
}

static void *job_thread(void *arg) {
  job_run(arg);
  return NULL;
}

fl_status fl_fashion_mnist(const char *dir, fl_dataset **train, fl_dataset **valid) {
  FL_CHECK(train && valid, "fl_fashion_mnist: train and valid must not be NULL");
  *train = *valid = NULL;
  if (!dir) dir = fl_default_data_dir();
  static const char *names[4] = {"train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                 "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"};
  char paths[4][4096];
  read_job jobs[4];
  memset(jobs, 0, sizeof jobs);
  for (int i = 0; i < 4; i++) {
    fl_status st = find_file(dir, names[i], paths[i], sizeof paths[i]);
    if (st) return st;
    jobs[i].path = paths[i];
  }
  /* The train images are ~85 % of the work: one thread for them, this thread for the rest. */
  pthread_t th;
  int threaded = pthread_create(&th, NULL, job_thread, &jobs[0]) == 0;
  if (!threaded) job_run(&jobs[0]);
  for (int i = 1; i < 4; i++) job_run(&jobs[i]);
  if (threaded) pthread_join(th, NULL);

  fl_status st = FL_OK;
  for (int i = 0; i < 4 && !st; i++)
    if (jobs[i].st) st = fl_error(jobs[i].st, "%s", jobs[i].err);
  if (st) {
    for (int i = 0; i < 4; i++) fl_idx_free(&jobs[i].idx);
    return st;
  }
  st = dataset_from_parts(&jobs[0].idx, paths[0], &jobs[1].idx, paths[1], train);
  if (st) {
    fl_idx_free(&jobs[2].idx);
    fl_idx_free(&jobs[3].idx);
    return st;
  }
  st = dataset_from_parts(&jobs[2].idx, paths[2], &jobs[3].idx, paths[3], valid);
  if (st) {
    fl_dataset_free(*train);
    *train = NULL;
  }
  return st;
}

fl_status fl_fashion_mnist_split(const char *dir, int train, fl_dataset **out) {
  FL_CHECK(out, "fl_fashion_mnist_split: out must not be NULL");
  *out = NULL;
  if (!dir) dir = fl_default_data_dir();
  char im[4096], lb[4096];
  fl_status st = find_file(dir, train ? "train-images-idx3-ubyte" : "t10k-images-idx3-ubyte", im, sizeof im);
  if (!st) st = find_file(dir, train ? "train-labels-idx1-ubyte" : "t10k-labels-idx1-ubyte", lb, sizeof lb);
  return st ? st : fl_dataset_from_idx(im, lb, out);
}
