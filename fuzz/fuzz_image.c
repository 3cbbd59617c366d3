/* libFuzzer harness: the PNG / JPEG decoders of flexlearn predict (fl_image_decode, the core of
 * fl_image_read) on a file's bytes, with a pixel limit of 2^16 (the fuzzer's inputs are small;
 * the limit itself is checked before anything is allocated for the pixels). On success: a
 * grey image of the size decoded, every byte readable; on error: FL_ERR_FORMAT (never NOMEM,
 * nothing big is asked for) and one line starting with the name. Seeds: fuzz/seeds.sh. */
#include "fuzz/fuzz_common.h"

#define MAX_PX (1 << 16)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fl_image img;
  fl_status st = fl_image_decode(data, size, "fuzz-input", MAX_PX, &img);
  if (st != FL_OK) {
    FUZZ_ASSERT(st == FL_ERR_FORMAT);
    FUZZ_ASSERT(img.data == NULL && img.w == 0 && img.h == 0);
    fuzz_check_reason("fuzz-input");
    return 0;
  }
  FUZZ_ASSERT(img.data && img.w > 0 && img.h > 0 && (int64_t)img.w * img.h <= MAX_PX);
  volatile uint8_t sum = 0;
  for (int64_t i = 0; i < (int64_t)img.w * img.h; i++) sum += img.data[i];
  (void)sum;
  fl_image_free(&img);
  FUZZ_ASSERT(img.data == NULL);
  return 0;
}
