/* File loggers on top of MetricsCB: one record per epoch and phase (epoch, train, each metric,
 * loss, seconds, a hash of the weights), as JSON lines (JsonlCB) or CSV (CsvCB).
 *
 * The file is created at before_fit (truncated before the first record, or, in a resumed fit,
 * cut back to what it held when the checkpoint was taken, then appended to, so it ends up as
 * the uninterrupted run's, seconds aside), at its own path, and each record is one write
 * of a whole line, flushed: a log is read while the run goes on (`tail -f`) and after it dies,
 * so after a kill -9 the file holds every finished phase in whole lines, and a failed or
 * interrupted fit's log says how far it got. A write error (a full disk) stops the fit with
 * FL_ERR_IO naming the path. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fl/checkpoint.h"
#include "fl/learner.h"
#include <sys/stat.h>
#include <unistd.h>

typedef enum { LOG_JSONL, LOG_CSV } log_fmt;

typedef struct {
  fl_callback cb;
  log_fmt fmt;
  const char *flag;      /* how the CLI names it, for messages: "--log", "--csv" */
  char *path;
  FILE *f;
  int rows;              /* records written this fit (CSV: the header goes before the first) */
  long long bytes;       /* the file's length after the last record (checkpoint state) */
  int cut;               /* the file is still to be cut back to `bytes` (before the next write) */
} log_cb;

/* Opened without truncating (a resume's load_state may still keep the start of the file); cut
 * back to `bytes` before the first record or at the end of the fit. */
static fl_status lcb_before_fit(fl_callback *cb, fl_learner *l) {
  (void)l;
  log_cb *g = (log_cb *)cb;
  if (g->f) fclose(g->f);
  g->rows = 0;
  g->bytes = 0;
  g->cut = 1;
  g->f = fopen(g->path, "a");
  if (!g->f) return fl_error(FL_ERR_IO, "%s %s: cannot create the file: %s", g->flag, g->path, strerror(errno));
  return FL_OK;
}

static fl_status cut_back(log_cb *g) {
  if (!g->cut) return FL_OK;
  g->cut = 0;
  struct stat sb;
  if (fstat(fileno(g->f), &sb) == 0 && !S_ISREG(sb.st_mode)) return FL_OK;   /* a pipe, /dev/null: nothing to cut */
  if (fflush(g->f) != 0 || ftruncate(fileno(g->f), (off_t)g->bytes) != 0)
    return fl_error(FL_ERR_IO, "%s %s: cannot truncate the file: %s", g->flag, g->path, strerror(errno));
  return FL_OK;
}

static fl_status lcb_save_state(fl_callback *cb, fl_learner *l, fl_state *st) {
  (void)l;
  log_cb *g = (log_cb *)cb;
  fl_status s = fl_state_set_i64(st, "bytes", g->bytes);
  return s != FL_OK ? s : fl_state_set_i64(st, "rows", g->rows);
}

/* The file must still hold what the checkpointed run had written; the rest is cut off. */
static fl_status lcb_load_state(fl_callback *cb, fl_learner *l, const fl_state *st) {
  (void)l;
  log_cb *g = (log_cb *)cb;
  int64_t bytes, rows;
  fl_status s = fl_state_get_i64(st, "bytes", &bytes);
  if (s == FL_OK) s = fl_state_get_i64(st, "rows", &rows);
  if (s != FL_OK) return s;
  struct stat sb;
  if (!g->f || fstat(fileno(g->f), &sb) != 0 || bytes < 0 || rows < 0 || rows > INT32_MAX)
    return fl_error(FL_ERR_IO, "%s %s: cannot resume the log", g->flag, g->path);
  if ((long long)sb.st_size < bytes)
    return fl_error(FL_ERR_IO, "%s %s: holds %lld bytes, but the run being resumed had written %lld: not its log",
                    g->flag, g->path, (long long)sb.st_size, (long long)bytes);
  g->bytes = bytes;
  g->rows = (int)rows;
  return FL_OK;
}

/* Appends to line[*n] (bounded by cap); the caller checks *n < cap at the end. */
#define ADD(...) (*n < cap ? (*n += (size_t)snprintf(line + *n, cap - *n, __VA_ARGS__)) : 0)

static void format_jsonl(char *line, size_t cap, size_t *n, const fl_log_entry *e, unsigned long long h) {
  ADD("{\"epoch\": %d, \"train\": %s", e->epoch, e->train ? "true" : "false");
  for (int i = 0; i < e->n; i++) {
    if (isfinite(e->values[i])) ADD(", \"%s\": %.6f", e->names[i], e->values[i]);
    else ADD(", \"%s\": null", e->names[i]);
  }
  ADD(", \"seconds\": %.6f, \"weights_fnv1a\": \"%016llx\"}\n", e->seconds, h);
}

/* CSV: a header before the first row; a non-finite value is an empty field. */
static void format_csv(char *line, size_t cap, size_t *n, const fl_log_entry *e, unsigned long long h, int header) {
  if (header) {
    ADD("epoch,train");
    for (int i = 0; i < e->n; i++) ADD(",%s", e->names[i]);
    ADD(",seconds,weights_fnv1a\n");
  }
  ADD("%d,%s", e->epoch, e->train ? "true" : "false");
  for (int i = 0; i < e->n; i++) {
    if (isfinite(e->values[i])) ADD(",%.6f", e->values[i]);
    else ADD(",");
  }
  ADD(",%.6f,%016llx\n", e->seconds, h);
}
#undef ADD

static fl_status lcb_after_epoch(fl_callback *cb, fl_learner *l) {
  log_cb *g = (log_cb *)cb;
  if (!l->metrics || !g->f) return FL_OK;
  const fl_log_entry *e = &l->metrics->last;
  unsigned long long h = (unsigned long long)fl_module_hash(l->model);
  char line[2048];
  size_t n = 0;
  if (g->fmt == LOG_JSONL) format_jsonl(line, sizeof line, &n, e, h);
  else format_csv(line, sizeof line, &n, e, h, g->rows == 0);
  FL_CHECK(n < sizeof line, "%s: a log line is longer than %zu bytes", g->cb.name, sizeof line);
  fl_status s = cut_back(g);
  if (s != FL_OK) return s;
  if (fwrite(line, 1, n, g->f) != n || fflush(g->f) != 0)
    return fl_error(FL_ERR_IO, "%s %s: write failed: %s", g->flag, g->path, strerror(errno));
  g->rows++;
  g->bytes += (long long)n;
  return FL_OK;
}

static fl_status lcb_cleanup_fit(fl_callback *cb, fl_learner *l) {
  (void)l;
  log_cb *g = (log_cb *)cb;
  if (!g->f) return FL_OK;
  fl_status s = cut_back(g);
  int bad = ferror(g->f) | (fclose(g->f) != 0);
  g->f = NULL;
  if (bad) return fl_error(FL_ERR_IO, "%s %s: write failed", g->flag, g->path);
  return s;
}

static void lcb_free(fl_callback *cb) {
  log_cb *g = (log_cb *)cb;
  if (g->f) fclose(g->f);
  free(g->path);
  free(g);
}

static fl_callback *log_cb_new(const char *path, log_fmt fmt) {
  const char *name = fmt == LOG_JSONL ? "JsonlCB" : "CsvCB";
  FL_CHECK(path && *path, "%s: path is empty", name);
  log_cb *g = fl_xcalloc(1, sizeof *g);
  g->cb.name = name;
  g->cb.order = 2;
  g->cb.free = lcb_free;
  g->cb.on[FL_BEFORE_FIT] = lcb_before_fit;
  g->cb.on[FL_AFTER_EPOCH] = lcb_after_epoch;
  g->cb.on[FL_CLEANUP_FIT] = lcb_cleanup_fit;
  g->cb.save_state = lcb_save_state;
  g->cb.load_state = lcb_load_state;
  g->fmt = fmt;
  g->flag = fmt == LOG_JSONL ? "--log" : "--csv";
  g->path = fl_xmalloc(strlen(path) + 1);
  strcpy(g->path, path);
  return &g->cb;
}

fl_callback *fl_jsonl_cb_new(const char *path) { return log_cb_new(path, LOG_JSONL); }
fl_callback *fl_csv_cb_new(const char *path) { return log_cb_new(path, LOG_CSV); }
