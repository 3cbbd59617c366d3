/* Checks shared by the libFuzzer harnesses (fuzz/fuzz_*.c). A broken invariant aborts, which
 * libFuzzer reports as a crash with the input saved. */
#ifndef FL_FUZZ_COMMON_H
#define FL_FUZZ_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/idx_internal.h"

/* ASan's default quarantine (256 MB of freed memory held back before reuse) makes every input's
 * allocations (zlib's state and 32 KB window, the payload) land on fresh pages, and a page fault
 * costs microseconds on a VM: measured 83 us per small gzip input, against 2.6 us with 16 MB.
 * 16 MB still holds back everything one input frees, so a use after free within an input is
 * caught as before. (ASAN_OPTIONS still overrides this.) */
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "quarantine_size_mb=16"; }

#define FUZZ_ASSERT(cond) do { if (!(cond)) { \
  fprintf(stderr, "%s:%d: invariant broken: %s\n  last error: %s\n", __FILE__, __LINE__, #cond, \
          fl_last_error()); abort(); } } while (0)

/* An error's reason: one line (STYLE.md) that starts with the file's name. */
static inline void fuzz_check_reason(const char *name) {
  const char *m = fl_last_error();
  size_t k = strlen(name);
  FUZZ_ASSERT(strncmp(m, name, k) == 0 && m[k] == ':');
  FUZZ_ASSERT(strchr(m, '\n') == NULL);
}

/* What fl__idx_parse_mem(p, n, name, out) returned: on success a consistent header and a payload
 * that is all readable (ASan checks every byte) and no larger than deflate's bound; on error
 * FL_ERR_IO or FL_ERR_FORMAT (never FL_ERR_NOMEM: nothing big is asked for), *out zeroed and a
 * one-line reason. Frees out. */
static inline void fuzz_check_idx(const uint8_t *p, size_t n, const char *name, fl_status st,
                           fl_idx *out) {
  if (st != FL_OK) {
    FUZZ_ASSERT(st == FL_ERR_IO || st == FL_ERR_FORMAT);
    FUZZ_ASSERT(out->data == NULL && out->n == 0 && out->ndim == 0);
    fuzz_check_reason(name);
    return;
  }
  int gz = n >= 2 && p[0] == 0x1f && p[1] == 0x8b;
  FUZZ_ASSERT(out->ndim >= 1 && out->ndim <= 4 && out->data != NULL);
  uint64_t prod = 1;
  for (int i = 0; i < out->ndim; i++) {
    FUZZ_ASSERT(out->dims[i] >= 1 && out->dims[i] <= UINT32_MAX);
    prod *= (uint64_t)out->dims[i];   /* cannot wrap: the payload fit in memory */
  }
  FUZZ_ASSERT(prod == out->n);
  size_t hdr = 4 + 4 * (size_t)out->ndim;
  if (gz) {
    FUZZ_ASSERT(out->n + hdr <= n * (size_t)FL__DEFLATE_MAX_RATIO);
  } else {
    FUZZ_ASSERT(n == hdr + out->n);
    FUZZ_ASSERT(memcmp(out->data, p + hdr, out->n) == 0);
  }
  volatile uint8_t sum = 0;
  for (size_t i = 0; i < out->n; i++) sum += out->data[i];
  (void)sum;
  fl_idx_free(out);
  FUZZ_ASSERT(out->data == NULL && out->n == 0);
}

#endif
