/* Status codes, the thread-local error reason, misuse aborts, checked allocation. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fl/core.h"

static _Thread_local char fl__errbuf[512];

fl_status fl_error(fl_status code, const char *fmt, ...) {
  /* Formats into a local buffer first: callers may pass fl_last_error() as an argument
   * ("...: %s", fl_last_error()) to wrap the previous reason. */
  char tmp[sizeof fl__errbuf];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  memcpy(fl__errbuf, tmp, sizeof tmp);
  return code;
}

const char *fl_last_error(void) { return fl__errbuf; }

const char *fl_status_str(fl_status s) {
  switch (s) {
    case FL_OK: return "ok";
    case FL_CANCEL_BATCH: return "cancel batch";
    case FL_CANCEL_EPOCH: return "cancel epoch";
    case FL_CANCEL_FIT: return "cancel fit";
    case FL_ERR: return "error";
    case FL_ERR_IO: return "i/o error";
    case FL_ERR_FORMAT: return "format error";
    case FL_ERR_NOMEM: return "out of memory";
    case FL_ERR_ARG: return "bad argument";
    case FL_ERR_DEVICE: return "device error";
    case FL_ERR_NAN: return "loss is not finite";
  }
  return "unknown status";
}

void fl__die(const char *file, int line, const char *fmt, ...) {
  va_list ap;
  fprintf(stderr, "%s:%d: flexlearn: ", file, line);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  abort();
}

void *fl__xmalloc(size_t n, const char *file, int line) {
  void *p = malloc(n ? n : 1);
  if (!p) fl__die(file, line, "out of memory allocating %zu bytes", n);
  return p;
}

void *fl__xcalloc(size_t n, size_t sz, const char *file, int line) {
  void *p = calloc(n ? n : 1, sz ? sz : 1);
  if (!p) fl__die(file, line, "out of memory allocating %zu x %zu bytes", n, sz);
  return p;
}
