/* libFuzzer harness, differential: raw IDX bytes against their gzip, made here with zlib (so
 * the CRC and sizes are right and the fuzzer's mutations reach the payload checks). Input:
 * 3 option bytes (b0: level 0-9 and strategy; b1: window bits 9-15 and memLevel 1-9; b2: 1 to 3
 * concatenated members), then the raw file. The two reads must agree: both succeed with the
 * same dims and bytes, or both fail; a raw FL_ERR_FORMAT is one for the gzip too, and a short
 * raw file (FL_ERR_IO) is a truncated gzip or, past deflate's bound, a header claiming more
 * than the gzip can hold (FL_ERR_FORMAT). Seeds: fuzz/seeds.sh. */
#include <zlib.h>

#include "fuzz/fuzz_common.h"

/* One deflate stream per (window bits, memLevel), made once and reset for each use: making one
 * (up to 256 KB of tables, zeroed) for every input would cost more than the reads it feeds. */
static z_stream streams[7][9];
static int made[7][9];

/* Appends the gzip of p[0..n) to *o (capacity *cap, length *on). */
static void gzip_member(const uint8_t *p, size_t n, int level, int wbits, int mem, int strat,
                        uint8_t **o, size_t *on, size_t *cap) {
  z_stream *s = &streams[wbits - 9][mem - 1];
  if (!made[wbits - 9][mem - 1]) {
    FUZZ_ASSERT(deflateInit2(s, level, Z_DEFLATED, 16 + wbits, mem, strat) == Z_OK);
    made[wbits - 9][mem - 1] = 1;
  } else {
    FUZZ_ASSERT(deflateReset(s) == Z_OK && deflateParams(s, level, strat) == Z_OK);
  }
  size_t need = *on + deflateBound(s, n) + 64;
  if (need > *cap) {
    *o = realloc(*o, need);
    FUZZ_ASSERT(*o != NULL);
    *cap = need;
  }
  s->next_in = (Bytef *)p;
  s->avail_in = (uInt)n;
  s->next_out = *o + *on;
  s->avail_out = (uInt)(*cap - *on);
  FUZZ_ASSERT(deflate(s, Z_FINISH) == Z_STREAM_END);
  *on += s->total_out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 3 || size > (1 << 20)) return -1;
  int level = data[0] % 10, strat = data[0] / 10 % 5;     /* Z_DEFAULT_STRATEGY .. Z_FIXED */
  int wbits = 9 + data[1] % 7, mem = 1 + data[1] / 7 % 9;
  int members = 1 + data[2] % 3;
  const uint8_t *raw = data + 3;
  size_t n = size - 3;
  if (n >= 2 && raw[0] == 0x1f && raw[1] == 0x8b) return -1;   /* would be read as gzip */

  uint8_t *gz = NULL;
  size_t gn = 0, cap = 0;
  for (int k = 0; k < members; k++) {
    size_t a = n * (size_t)k / (size_t)members, b = n * (size_t)(k + 1) / (size_t)members;
    gzip_member(raw + a, b - a, level, wbits, mem, strat, &gz, &gn, &cap);
  }

  fl_idx r, z;
  fl_status sr = fl__idx_parse_mem(raw, n, "raw", &r);
  if (sr != FL_OK) fuzz_check_idx(raw, n, "raw", sr, &r);   /* its reason, before the next read */
  fl_status sz = fl__idx_parse_mem(gz, gn, "gz", &z);
  if (sr == FL_OK) {
    FUZZ_ASSERT(sz == FL_OK);
    FUZZ_ASSERT(r.ndim == z.ndim && r.n == z.n);
    FUZZ_ASSERT(memcmp(r.dims, z.dims, sizeof r.dims) == 0);
    FUZZ_ASSERT(memcmp(r.data, z.data, r.n) == 0);
  } else if (sr == FL_ERR_FORMAT) {
    FUZZ_ASSERT(sz == FL_ERR_FORMAT);
  } else {
    FUZZ_ASSERT(sr == FL_ERR_IO);
    FUZZ_ASSERT(sz == FL_ERR_IO ||
                (sz == FL_ERR_FORMAT && strstr(fl_last_error(), "can hold at most") != NULL));
  }
  fuzz_check_idx(gz, gn, "gz", sz, &z);
  if (sr == FL_OK) fuzz_check_idx(raw, n, "raw", sr, &r);
  free(gz);
  return 0;
}
