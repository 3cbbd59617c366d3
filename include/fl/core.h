/* flexlearn core: status codes, errors, devices, threads, the counter-based RNG.
 *
 * Two tiers of errors (see STYLE.md):
 *  - misuse of the API (shape mismatch, NULL where not allowed) aborts through FL_CHECK with
 *    file:line and a message;
 *  - what the environment can cause (missing/corrupt file, out of memory, CUDA failure, NaN
 *    loss) returns a negative fl_status, and the reason is kept in fl_last_error().
 * Cancellation (FL_CANCEL_*) is a status, not an error.
 */
#ifndef FL_CORE_H
#define FL_CORE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum fl_status {
  FL_OK = 0,
  FL_CANCEL_BATCH = 1,      /* stop this batch: skip after_batch, run cleanup_batch */
  FL_CANCEL_EPOCH = 2,      /* stop this epoch */
  FL_CANCEL_FIT = 3,        /* stop the whole fit */
  FL_ERR = -1,              /* generic failure; see fl_last_error() */
  FL_ERR_IO = -2,           /* file missing, unreadable, truncated */
  FL_ERR_FORMAT = -3,       /* file present but corrupt / not what was expected */
  FL_ERR_NOMEM = -4,        /* host or device allocation failed */
  FL_ERR_ARG = -5,          /* bad argument value supplied by a user (flag, config) */
  FL_ERR_DEVICE = -6,       /* CUDA / cuBLAS failure or no device */
  FL_ERR_NAN = -7,          /* a loss became NaN / inf */
} fl_status;

/* Records a readable reason for the last failure (printf-style) and returns `code`.
 * Thread-local; the message is at most 511 characters. */
fl_status fl_error(fl_status code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The reason recorded by the last fl_error() on this thread ("" when none). */
const char *fl_last_error(void);
/* A short name for a status ("ok", "cancel_batch", "io error", ...). */
const char *fl_status_str(fl_status s);

/* Misuse of the API: prints "file:line: flexlearn: <message>" to stderr and aborts. */
void fl__die(const char *file, int line, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 3, 4)));
#define FL_CHECK(cond, ...) \
  do { if (!(cond)) fl__die(__FILE__, __LINE__, __VA_ARGS__); } while (0)

/* Allocation wrappers that abort with file:line on failure (for small, bounded structs).
 * Large buffers that a user's data sizes can blow up use plain malloc + FL_ERR_NOMEM. */
void *fl__xmalloc(size_t n, const char *file, int line);
void *fl__xcalloc(size_t n, size_t sz, const char *file, int line);
#define fl_xmalloc(n) fl__xmalloc((n), __FILE__, __LINE__)
#define fl_xcalloc(n, sz) fl__xcalloc((n), (sz), __FILE__, __LINE__)

typedef enum fl_device { FL_CPU = 0, FL_CUDA = 1 } fl_device;
const char *fl_device_name(fl_device d);
/* 1 when this build has the CUDA backend and a usable GPU is present. The first call (of
 * this, fl_backend_cuda_reason or fl_default_device; thread-safe, answered once per process)
 * probes for a CUDA driver with a device and only then loads the CUDA backend, a separate
 * library (libflexlearn_cuda.so: $FLEXLEARN_CUDA_LIB, else beside the program or library or
 * one directory up, else the build directory, else the loader's path). Without a GPU no CUDA
 * runtime or cuBLAS library is mapped. */
int fl_cuda_available(void);
/* Why CUDA is not available, one line in static storage: "this build has no CUDA backend",
 * "no CUDA driver (...)", "a CUDA driver but no CUDA device", "the CUDA backend
 * (libflexlearn_cuda.so) was not found: searched ...", a loader error, a stale backend, or the
 * device's own failure to start. "the CUDA backend is available" when it is. */
const char *fl_backend_cuda_reason(void);
/* The default device: FL_CUDA when fl_cuda_available(), else FL_CPU (miniai's def_device). */
fl_device fl_default_device(void);

/* Process-wide setup: sets the number of CPU threads (OpenMP + the GEMM library, one pool),
 * flushes denormals to zero on this thread. n <= 0 keeps the current count. Call once at start. */
void fl_init(int n_threads);
int fl_num_threads(void);
/* Wall clock in seconds (CLOCK_MONOTONIC). */
double fl_now(void);

/* ---- RNG: counter-based (a keyed hash of (seed, stream, counter)), so every draw is a pure
 * function of its coordinates: the same numbers whatever the number of threads or the order
 * in which streams are consumed. */
typedef struct fl_rng {
  uint64_t seed;
  uint64_t stream;
  uint64_t counter;
} fl_rng;

/* Streams reserved by the library (users may take any other value). */
enum { FL_STREAM_INIT = 1, FL_STREAM_SHUFFLE = 2, FL_STREAM_AUGMENT = 3, FL_STREAM_USER = 100 };

fl_rng fl_rng_make(uint64_t seed, uint64_t stream);
uint64_t fl_rng_hash(uint64_t seed, uint64_t stream, uint64_t counter);
uint64_t fl_rng_u64(fl_rng *r);
/* Uniform in [0, 1) with 24 random bits. */
float fl_rng_uniform(fl_rng *r);
/* Uniform integer in [0, n), n > 0, without modulo bias. */
uint64_t fl_rng_below(fl_rng *r, uint64_t n);
/* Standard normal (Box-Muller). */
float fl_rng_normal(fl_rng *r);

#ifdef __cplusplus
}
#endif
#endif
