/* safetensors reader internals shared with the fuzz harness (fuzz/fuzz_safetensors.c): not part
 * of the public API. */
#ifndef FL_NN_SAFETENSORS_INTERNAL_H
#define FL_NN_SAFETENSORS_INTERNAL_H

#include <stddef.h>

#include "fl/tensor.h"

/* The header (JSON) may be at most this long, as in Hugging Face's reader. */
#define FL__ST_MAX_HEADER ((uint64_t)100 * 1000 * 1000)

/* A tensor the caller expects in the file: its name ("0.weight") and shape. */
typedef struct fl__st_want {
  const char *name;
  int ndim;
  int64_t shape[FL_MAX_DIMS];
} fl__st_want;

/* Validates a safetensors file already in memory, p[0..n), against the n_want tensors expected
 * (names distinct), with exactly fl_load_safetensors's checks, statuses (FL_ERR_FORMAT) and
 * one-line messages; `name` stands for the path in the messages. p is only read, and only during
 * the call (p may be NULL when n is 0). On success data_off[i] is the offset in p of want[i]'s
 * little-endian f32 data (its byte count is 4 * prod(shape)); on error data_off is untouched.
 * Allocates only in proportion to the header, which is bounded by n. fl_load_safetensors maps
 * the file and calls this; so does the fuzz harness, on its input. */
fl_status fl__safetensors_parse_mem(const void *p, size_t n, const char *name,
                                    const fl__st_want *want, int n_want, size_t *data_off);

/* The parameters of a module tree with their state_dict names, in order ("0.weight", ...):
 * *names (each malloc'd) and *ts are new arrays of the returned count; free with
 * fl__st_names_free. Not in FL_SAFETENSORS_PARSE_ONLY builds. */
struct fl_module;
int fl__st_names(struct fl_module *m, char ***names, fl_tensor ***ts);
void fl__st_names_free(char **names, fl_tensor **ts, int n);

#endif
