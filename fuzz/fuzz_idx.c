/* libFuzzer harness: the IDX reader on a file's bytes (raw; gzip when they start with 1f 8b,
 * which fuzz_idx_gz explores more). Seeds: fuzz/seeds.sh. */
#include "fuzz/fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fl_idx out;
  fl_status st = fl__idx_parse_mem(data, size, "fuzz-input", &out);
  fuzz_check_idx(data, size, "fuzz-input", st, &out);
  return 0;
}
