/* Counter-based RNG: every draw is a keyed hash of (seed, stream, counter), so a stream gives
 * the same numbers whatever the thread count or the order streams are consumed in. The mixer
 * is two rounds of the splitmix64 / murmur3 finaliser over the combined key (it passes
 * BigCrush as a counter-mode generator). */
#include <math.h>

#include "fl/core.h"

static inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

uint64_t fl_rng_hash(uint64_t seed, uint64_t stream, uint64_t counter) {
  uint64_t k = mix64(seed + 0x9e3779b97f4a7c15ULL);
  k = mix64(k ^ (stream * 0xd1b54a32d192ed03ULL + 0x632be59bd9b4e019ULL));
  return mix64(k + counter * 0x9e3779b97f4a7c15ULL);
}

fl_rng fl_rng_make(uint64_t seed, uint64_t stream) {
  fl_rng r = {seed, stream, 0};
  return r;
}

uint64_t fl_rng_u64(fl_rng *r) { return fl_rng_hash(r->seed, r->stream, r->counter++); }

float fl_rng_uniform(fl_rng *r) { return (float)(fl_rng_u64(r) >> 40) * 0x1.0p-24f; }

uint64_t fl_rng_below(fl_rng *r, uint64_t n) {
  FL_CHECK(n > 0, "fl_rng_below: n must be > 0");
  uint64_t lim = UINT64_MAX - UINT64_MAX % n;   /* reject the biased tail */
  uint64_t x;
  do x = fl_rng_u64(r); while (x >= lim);
  return x % n;
}

float fl_rng_normal(fl_rng *r) {
  double u1 = ((double)(fl_rng_u64(r) >> 11) + 1.0) * 0x1.0p-53;  /* (0, 1] */
  double u2 = (double)(fl_rng_u64(r) >> 11) * 0x1.0p-53;
  return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}
