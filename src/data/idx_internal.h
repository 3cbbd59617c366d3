/* IDX reader internals shared with the fuzz harnesses (fuzz/): not part of the public API. */
#ifndef FL_DATA_IDX_INTERNAL_H
#define FL_DATA_IDX_INTERNAL_H

#include <stddef.h>

#include "fl/data.h"

/* Deflate's largest expansion: a 258-byte match coded in 2 bits (1-bit length code, 1-bit
 * distance code) gives 258 bytes per 2 bits = 1032 bytes of output per byte of input. */
#define FL__DEFLATE_MAX_RATIO 1032

/* Parses an IDX file that is already in memory, p[0..n) (gzip when it starts with 1f 8b, else
 * raw), with exactly fl_idx_read's checks, statuses and messages; `name` stands for the path
 * in the messages. p is only read, and only during the call (p may be NULL when n is 0). On
 * success out->data is malloc'd (free with fl_idx_free); on error *out is left zeroed.
 * fl_idx_read maps the file and calls this; so do the fuzz harnesses, on their input. */
fl_status fl__idx_parse_mem(const void *p, size_t n, const char *name, fl_idx *out);

#endif
