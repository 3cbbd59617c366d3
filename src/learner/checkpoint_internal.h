/* Checkpoint reader internals shared by CheckpointCB (checkpoint_cb.c) and the fuzz harness
 * (fuzz/fuzz_checkpoint.c): not part of the public API. Needs cJSON (not in CJSON=0 builds). */
#ifndef FL_LEARNER_CHECKPOINT_INTERNAL_H
#define FL_LEARNER_CHECKPOINT_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "nn/safetensors_internal.h"

#define FL__CKPT_VERSION 1
#define FL__CKPT_MAX_GROUPS 16
#define FL__CKPT_MAX_NAME 48

/* The "flexlearn_state" of a checkpoint, validated. */
typedef struct fl__ckpt_meta {
  cJSON *root;                          /* the parsed state object (owned) */
  int epoch, valid;                     /* the position: the next batch to run */
  int64_t iter, n_iter, n_epochs;
  uint64_t loader_epoch[2];             /* train, valid loaders' epoch counters */
  char opt_name[FL__CKPT_MAX_NAME];
  int64_t n_steps;
  int n_bufs;
  char buf_names[4][FL__CKPT_MAX_NAME];
  int n_groups;
  float lr[FL__CKPT_MAX_GROUPS], mom[FL__CKPT_MAX_GROUPS], wd[FL__CKPT_MAX_GROUPS];
  int grad;                             /* a "grad" tensor is in the file */
  int n_params;                         /* entries of grad_none (== the model's parameter count) */
  unsigned char *grad_none;             /* malloc'd */
  int64_t flat_numel;                   /* numel of model->flat: the shape of optim.* and grad */
  int every, keep;
  const cJSON *config, *callbacks;      /* objects inside root */
  /* the data: model[i] at off[i], then optim buffer b at off[n_model + b], then grad */
  size_t *off;
  int n_off;
} fl__ckpt_meta;

/* Validates checkpoint bytes p[0..n): the safetensors layout, __metadata__.flexlearn_state
 * against its schema, and the tensors: exactly the n_model wanted ones (the model's names and
 * shapes), "optim.<name>" per optimiser buffer and "grad" when the state says so, all F32,
 * covering the data once, then the CRC. `name` stands for the file in the one-line messages (FL_ERR_FORMAT,
 * or FL_ERR_NOMEM). On success *out is filled (free with fl__ckpt_meta_free); on error it is
 * zeroed. p is only read, only during the call; nothing is allocated beyond the size of n. */
fl_status fl__ckpt_parse_mem(const void *p, size_t n, const char *name, const fl__st_want *model, int n_model,
                             int check_crc, fl__ckpt_meta *out);

/* The whole file's CRC-32 (zlib's) is in __metadata__ "flexlearn_crc32" as 8 hex digits, computed
 * with those 8 digits as "00000000": any changed byte is caught, in the data too. check_crc 0
 * skips it (the fuzz harness, to reach past it). */
#define FL__CKPT_CRC_KEY "\"flexlearn_crc32\":\""

void fl__ckpt_meta_free(fl__ckpt_meta *m);

/* A callback's state: an object of the checkpoint's "callbacks" (borrowed when loading). */
struct fl_state { cJSON *obj; };

/* A checkpoint read and validated: its path, state, and the file's bytes (mapped). */
struct fl_checkpoint {
  char *path;
  fl__ckpt_meta meta;
  const uint8_t *p;
  size_t n;
};

/* "ckpt-EEEEEE-train-IIIIIIII.safetensors" for a position, into buf. */
const char *fl__ckpt_name(char *buf, size_t n, int epoch, int valid, int64_t iter);
/* The checkpoint files in dir (names that parse back to a position), newest first: *out is
 * malloc'd (free with free()); -1 with errno when dir cannot be read. */
typedef struct fl__ckpt_file { char name[96]; int epoch, valid; int64_t iter; } fl__ckpt_file;
int fl__ckpt_list(const char *dir, fl__ckpt_file **out);

#endif
