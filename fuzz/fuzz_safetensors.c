/* libFuzzer harness: the safetensors reader (fl_load_safetensors's validation) on a file's bytes,
 * against the small fixed model Linear(4,3)-ReLU-Linear(3,2) given as names and shapes (the
 * harness links no module code: src/nn/safetensors.c is built with FL_SAFETENSORS_PARSE_ONLY).
 * Seeds: fuzz/seeds.sh. */
#include "fuzz/fuzz_common.h"
#include "nn/safetensors_internal.h"

static const fl__st_want want[] = {
  {"0.weight", 2, {3, 4}}, {"0.bias", 1, {3}}, {"2.weight", 2, {2, 3}}, {"2.bias", 1, {2}},
};
enum { N_WANT = sizeof want / sizeof *want };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  size_t off[N_WANT];
  for (int i = 0; i < N_WANT; i++) off[i] = (size_t)-1;
  fl_status st = fl__safetensors_parse_mem(data, size, "fuzz-input", want, N_WANT, off);
  if (st != FL_OK) {
    FUZZ_ASSERT(st == FL_ERR_FORMAT);
    fuzz_check_reason("fuzz-input");
    for (int i = 0; i < N_WANT; i++) FUZZ_ASSERT(off[i] == (size_t)-1);   /* untouched */
    return 0;
  }
  /* Every tensor's data lies inside the input, after the header, and no two overlap; read it
   * all (ASan checks every byte). */
  uint64_t hl = 0;
  for (int i = 7; i >= 0; i--) hl = hl << 8 | data[i];
  size_t total = 0;
  volatile uint8_t sum = 0;
  for (int i = 0; i < N_WANT; i++) {
    size_t bytes = 4;
    for (int d = 0; d < want[i].ndim; d++) bytes *= (size_t)want[i].shape[d];
    FUZZ_ASSERT(off[i] >= 8 + hl && off[i] <= size && bytes <= size - off[i]);
    for (int j = 0; j < i; j++) FUZZ_ASSERT(off[j] != off[i]);
    for (size_t k = 0; k < bytes; k++) sum += data[off[i] + k];
    total += bytes;
  }
  FUZZ_ASSERT(8 + hl + total == size);   /* the data is covered exactly */
  (void)sum;
  return 0;
}
