/* flexlearn data: IDX files, datasets, DataLoader with prefetching workers, DataLoaders.
 *
 * A dataset keeps images as uint8 (N, C, H, W) and labels as int32 (N). A DataLoader turns
 * them into batches of float tensors (pixels / 255) and int32 labels, shuffled per epoch from
 * the seeded counter-based RNG, the last partial batch kept. Worker threads gather and convert
 * the next batches while the model computes on the current one.
 */
#ifndef FL_DATA_H
#define FL_DATA_H

#include "fl/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- IDX (the MNIST file format): magic 0 0 type ndim, big-endian dims, then data ---- */
typedef struct fl_idx {
  uint8_t *data;        /* malloc'd; the payload (type 0x08 = unsigned byte only) */
  int ndim;
  int64_t dims[4];
  size_t n;             /* bytes of payload */
} fl_idx;

/* Reads `path` (gzip through zlib when it starts with 1f 8b, else raw), validating the magic
 * number, the element type, the dimensions and the size (truncated or trailing data is an
 * error). On error returns, with a one-line reason naming the file (out is left zeroed):
 *   FL_ERR_IO      missing/unreadable file, or it ends early (truncated header or payload,
 *                  gzip stream cut short);
 *   FL_ERR_FORMAT  wrong magic, element type other than 0x08, ndim not 1..4, a zero or
 *                  overflowing dimension, a header claiming more than a gzip file can hold
 *                  (deflate expands at most 1032:1: nothing is allocated for it), trailing
 *                  bytes, corrupt gzip data (bad CRC...);
 *   FL_ERR_NOMEM.
 * On success out->data is malloc'd: free with fl_idx_free. */
fl_status fl_idx_read(const char *path, fl_idx *out);
void fl_idx_free(fl_idx *idx);

/* ---- datasets ---- */
typedef struct fl_dataset {
  uint8_t *x;           /* (n, c, h, w) uint8, owned, host */
  int32_t *y;           /* (n) labels, owned, host */
  fl_device device;     /* where dev_x/dev_y live after fl_dataset_to (FL_CPU: none) */
  void *dev_x, *dev_y;  /* device copies, owned (NULL when device == FL_CPU) */
  int64_t n;
  int c, h, w;
  int n_classes;        /* 1 + max label */
} fl_dataset;

/* Builds a dataset from an images file (N, H, W) or (N, C, H, W) and a labels file (N).
 * Errors (fl_idx_read's, or FL_ERR_FORMAT for wrong ndim / count mismatch) name the file and
 * what is wrong. On success *out is new: free with fl_dataset_free. labels may be NULL (images
 * to predict): then every label is 0 and n_classes is 0. */
fl_status fl_dataset_from_idx(const char *images, const char *labels, fl_dataset **out);
void fl_dataset_free(fl_dataset *ds);   /* accepts NULL */
/* Uploads the dataset (uint8 images, int32 labels) to dev once; DataLoaders over it then
 * gather and convert batches on that device (no per-batch host->device copy of pixels). The
 * host copy is kept. FL_ERR_NOMEM / FL_ERR_DEVICE on failure. */
fl_status fl_dataset_to(fl_dataset *ds, fl_device dev);

/* ---- images from outside: PNG (libpng) and JPEG (libjpeg-turbo), as 8-bit grey ----
 * Decoded as PIL's Image.open(f).convert('L') decodes them: grey stays grey (1/2/4-bit grey
 * scaled to 0..255); colour (RGB, palette, JPEG's YCbCr via libjpeg's RGB output with its
 * default ISLOW DCT and fancy upsampling) becomes L = (19595 R + 38470 G + 7471 B + 0x8000) >> 16;
 * alpha and tRNS are dropped (not composited). 16-bit PNG samples are rounded to 8 bits (PIL
 * differs there). Strict: any libpng error or libjpeg warning (corrupt data, a file that ends
 * early) is an error; CMYK JPEGs are refused. */
typedef struct fl_image {
  uint8_t *data;        /* (h, w) grey, malloc'd: free with fl_image_free */
  int h, w;
} fl_image;
#define FL_IMAGE_MAX_PIXELS (1 << 22)   /* what fl_image_read accepts (4 Mpx) */
/* Decodes n bytes (PNG or JPEG, told by their first bytes) into *out. Errors, one line starting
 * "name: ": FL_ERR_FORMAT (not PNG/JPEG, corrupt, truncated, over max_pixels, CMYK), FL_ERR_ARG
 * (a build without that library: PNG=0 / JPEG=0), FL_ERR_NOMEM; *out is then zeroed. */
fl_status fl_image_decode(const uint8_t *p, size_t n, const char *name, int64_t max_pixels, fl_image *out);
/* Reads and decodes the file at path (at most 64 MB, FL_IMAGE_MAX_PIXELS); FL_ERR_IO when it
 * cannot be opened or read or is not a regular file. */
fl_status fl_image_read(const char *path, fl_image *out);
void fl_image_free(fl_image *img);   /* accepts NULL and a zeroed image */
/* A dataset (n, 1, h, w) of the n image files, each of which must be h x w (else FL_ERR_FORMAT
 * naming the file and its size); labels all 0, n_classes 0. The first failing file's error. */
fl_status fl_dataset_from_images(const char *const *paths, int n, int h, int w, fl_dataset **out);

/* The directory used when none is given: $FLEXLEARN_DATA, else /usr/share/datasets/fashion-mnist */
const char *fl_default_data_dir(void);
/* Loads Fashion-MNIST (train = 60000, valid = the 10000 test images) from dir (NULL: default),
 * where each of train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte,
 * t10k-labels-idx1-ubyte may be raw or .gz (NAME.gz is used when both exist). The files are
 * decompressed in parallel (two threads). On success both datasets are new (free each with
 * fl_dataset_free); on failure both are NULL and the reason names the missing/bad file. */
fl_status fl_fashion_mnist(const char *dir, fl_dataset **train, fl_dataset **valid);
/* One split of it: the training set (train = 1) or the 10000 test images (train = 0), found as
 * fl_fashion_mnist finds them. On success *out is new (free with fl_dataset_free). */
fl_status fl_fashion_mnist_split(const char *dir, int train, fl_dataset **out);

/* ---- batches ---- */
#define FL_BATCH_MAX 4
typedef struct fl_batch {
  fl_tensor *t[FL_BATCH_MAX];   /* t[0] images, t[1] labels */
  int n;                        /* tensors in use */
  int n_inp;                    /* how many of them are model inputs (TrainCB's n_inp) */
  int64_t cap[FL_BATCH_MAX];    /* fl_batch_to's cache only: elements allocated in t[i] */
  /* Set by fl_dataloader_next (NULL / 0 otherwise): row r of the batch is dataset row idx[r]
   * (host array owned by the loader, valid as long as t[]), built in the loader's epoch `epoch`
   * (the permutation number: fl_dataloader_epoch() - 1 when it was handed out). Per-sample
   * randomness keyed by (seed, epoch, idx[r]) is then the same whatever the batch size, the
   * thread count or a resume. */
  const int32_t *idx;
  uint64_t epoch;
} fl_batch;

/* Rows in the batch (t[0]'s first dimension). */
int64_t fl_batch_size(const fl_batch *b);
/* Copies b's tensors that are not on dev into `cache` (tensors on dev, sized by the largest
 * batch seen: reallocated only when a bigger one arrives) and points b at them; tensors
 * already on dev are left alone (on FL_CPU with a CPU batch: a no-op). cache must be zeroed
 * before first use and released with fl_batch_cache_free; b's new tensors belong to cache.
 * FL_ERR_NOMEM when a cache tensor cannot be allocated. */
fl_status fl_batch_to(fl_batch *b, fl_device dev, fl_batch *cache);
void fl_batch_cache_free(fl_batch *cache);    /* frees the cache's tensors, zeroes it */

/* ---- DataLoader ---- */
typedef struct fl_dataloader fl_dataloader;

typedef struct fl_dataloader_cfg {
  int bs;               /* > 0 */
  int shuffle;          /* reshuffle at each epoch (fl_dataloader_begin) */
  uint64_t seed;        /* epoch k's permutation: Fisher-Yates (i = n-1 down to 1, swap i with
                           fl_rng_below(r, i+1)) over 0..n-1, r = {seed, FL_STREAM_SHUFFLE,
                           counter = k << 40}: independent of thread count and workers */
  int n_workers;        /* prefetch threads; 0 = prepare batches in the caller's thread.
                           Ignored (no threads) for a dataset on a GPU: batches are gathered
                           there by the backend. */
  int flat;             /* 1: images as (B, C*H*W); 0: (B, C, H, W) */
} fl_dataloader_cfg;

/* NULL with fl_last_error() set when cfg is invalid (bs <= 0, n_workers < 0...) or memory
 * runs out. ds and cfg are borrowed (cfg is copied); ds must outlive the loader. All batch
 * buffers are allocated here: none per batch. Batches are built on ds->device (after
 * fl_dataset_to: the gather runs there, from a permutation uploaded once per epoch). */
fl_dataloader *fl_dataloader_new(const fl_dataset *ds, const fl_dataloader_cfg *cfg);
void fl_dataloader_free(fl_dataloader *dl);       /* accepts NULL; stops the workers */
int64_t fl_dataloader_len(const fl_dataloader *dl);   /* batches per epoch */
const fl_dataset *fl_dataloader_dataset(const fl_dataloader *dl);
/* After fl_dataset_to moved the loader's dataset: rebuilds the loader's buffers on that device
 * (batches are then gathered there). No-op when nothing moved. On failure (device memory) the
 * loader stays on the host and the error is returned. The epoch counter is kept. */
fl_status fl_dataloader_follow(fl_dataloader *dl);
/* How many epochs were begun (the next begin() uses permutation fl_dataloader_epoch(dl)), and
 * setting it (lr_find puts it back so that it leaves no trace in a later fit's data order). */
uint64_t fl_dataloader_epoch(const fl_dataloader *dl);
void fl_dataloader_set_epoch(fl_dataloader *dl, uint64_t epoch);
int fl_dataloader_bs(const fl_dataloader *dl);
/* Input normalisation fused into the u8 -> f32 conversion (the course's BatchTransformCB with
 * _norm, the conv models' (x - 0.28) / 0.35): from the next epoch begun, every image value is
 * ((float)v / 255.0f - mean) / std, computed in f32 exactly as written (the same bits as a
 * separate pass). mean 0, std 1 turns it off. Abandons an epoch in progress (call it between
 * epochs, then fl_dataloader_begin). FL_ERR_ARG for a non-finite mean/std or std 0, and for a
 * loader that gathers on a GPU (not supported there yet). */
fl_status fl_dataloader_set_norm(fl_dataloader *dl, float mean, float std);
/* Starts an epoch: the k-th call (k = 0, 1, ...) uses permutation k when shuffling. Any epoch
 * in progress is abandoned. */
void fl_dataloader_begin(fl_dataloader *dl);
/* begin() that starts at batch `first` (0..len) of the epoch: the same batches as begin() from
 * there on, none of the earlier ones built (a resume mid-epoch). */
void fl_dataloader_begin_at(fl_dataloader *dl, int64_t first);
/* Next batch of the epoch into *b (1), or 0 at the end (and on every call after it). b gets
 * n = 2, n_inp = 1, t[0] = images f32 (B, C*H*W) if flat else (B, C, H, W), values u8 / 255.0f
 * (a division, bitwise as PyTorch's), t[1] = labels i32 (B); B = bs except for the last,
 * partial batch. The tensors are owned by the loader (never free them) and stay valid until
 * the next call of fl_dataloader_next/begin/free. Call fl_dataloader_begin first. */
int fl_dataloader_next(fl_dataloader *dl, fl_batch *b);

typedef struct fl_dataloaders {
  fl_dataloader *train, *valid;
} fl_dataloaders;
/* miniai's get_dls: train shuffled at bs, valid not shuffled at 2*bs. On failure (FL_ERR_ARG
 * for bs / n_workers, FL_ERR_NOMEM) both are NULL. Free with fl_dataloaders_free. */
fl_status fl_get_dls(fl_dataloaders *dls, const fl_dataset *train, const fl_dataset *valid,
                     int bs, uint64_t seed, int n_workers, int flat);
void fl_dataloaders_free(fl_dataloaders *dls);   /* frees both, sets them NULL; accepts NULL */

#ifdef __cplusplus
}
#endif
#endif
