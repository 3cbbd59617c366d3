/* libFuzzer harness: the checkpoint reader (fl_checkpoint_read's validation) on a file's bytes:
 * the safetensors layout, the __metadata__ flexlearn_state against its schema, then every tensor
 * (the model's, "optim.<name>" per optimiser buffer, "grad") against the small fixed model
 * Linear(4,3)-ReLU-Linear(3,2) given as names and shapes. Links no module code
 * (src/learner/checkpoint.c with FL_CHECKPOINT_PARSE_ONLY, src/nn/safetensors.c with
 * FL_SAFETENSORS_PARSE_ONLY). Also reads the callbacks' states back through the fl_state getters.
 * Seeds: fuzz/seeds.sh. */
#include "fuzz/fuzz_common.h"
#include "fl/checkpoint.h"
#include "learner/checkpoint_internal.h"

static const fl__st_want want[] = {
  {"0.weight", 2, {3, 4}}, {"0.bias", 1, {3}}, {"2.weight", 2, {2, 3}}, {"2.bias", 1, {2}},
};
enum { N_WANT = sizeof want / sizeof *want };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fl__ckpt_meta m;
  /* the CRC (checked last) only when the last byte (tensor data, in a valid file) is even: the
   * rest reach the code behind it */
  fl_status st = fl__ckpt_parse_mem(data, size, "fuzz-input", want, N_WANT, size && !(data[size - 1] & 1), &m);
  if (st != FL_OK) {
    FUZZ_ASSERT(st == FL_ERR_FORMAT);
    fuzz_check_reason("fuzz-input");
    FUZZ_ASSERT(m.root == NULL && m.off == NULL && m.grad_none == NULL);   /* nothing kept */
    return 0;
  }
  /* a consistent state */
  FUZZ_ASSERT(m.n_params == N_WANT && m.n_bufs >= 0 && m.n_bufs <= 4 && m.n_groups >= 1 &&
              m.n_groups <= FL__CKPT_MAX_GROUPS && m.keep >= 1 && m.every >= 0);
  FUZZ_ASSERT(m.n_off == N_WANT + m.n_bufs + m.grad);
  for (int i = 0; i < m.n_params; i++) FUZZ_ASSERT(m.grad_none[i] <= 1);
  /* every tensor inside the data section, covering it once; read it all (ASan checks each byte) */
  uint64_t hl = 0;
  for (int i = 7; i >= 0; i--) hl = hl << 8 | data[i];
  size_t total = 0;
  volatile uint8_t sum = 0;
  for (int i = 0; i < m.n_off; i++) {
    size_t bytes = 4;
    if (i < N_WANT) for (int d = 0; d < want[i].ndim; d++) bytes *= (size_t)want[i].shape[d];
    else bytes *= (size_t)m.flat_numel;
    FUZZ_ASSERT(m.off[i] >= 8 + hl && m.off[i] <= size && bytes <= size - m.off[i]);
    for (size_t k = 0; k < bytes; k++) sum += data[m.off[i] + k];
    total += bytes;
  }
  FUZZ_ASSERT(8 + hl + total == size);
  /* the callbacks' states through the getters: each either reads or says why not, in one line */
  const cJSON *cb;
  cJSON_ArrayForEach(cb, m.callbacks) {
    fl_state s = {(cJSON *)cb};
    const cJSON *v;
    cJSON_ArrayForEach(v, cb) {
      int64_t i, n;
      double d, arr[8];
      if (fl_state_get_i64(&s, v->string, &i) != FL_OK) FUZZ_ASSERT(!strchr(fl_last_error(), '\n'));
      if (fl_state_get_f64(&s, v->string, &d) != FL_OK) FUZZ_ASSERT(!strchr(fl_last_error(), '\n'));
      if (fl_state_get_f64s(&s, v->string, arr, 8, &n) == FL_OK) FUZZ_ASSERT(n >= 0 && n <= 8);
      (void)fl_state_get_str(&s, v->string);
    }
  }
  (void)sum;
  fl__ckpt_meta_free(&m);
  return 0;
}
