/* libFuzzer harness: the IDX reader on gzip bytes (the gzip container, deflate data, several
 * members, CRC and ISIZE, the header's claim against deflate's bound). Inputs that do not start
 * with the gzip magic 1f 8b are rejected (-1: not kept in the corpus). Seeds: fuzz/seeds.sh. */
#include "fuzz/fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2 || data[0] != 0x1f || data[1] != 0x8b) return -1;
  fl_idx out;
  fl_status st = fl__idx_parse_mem(data, size, "fuzz-input.gz", &out);
  fuzz_check_idx(data, size, "fuzz-input.gz", st, &out);
  return 0;
}
