/* Checkpoint files: the callbacks' state values (fl_state), the strict reader of a checkpoint
 * (its metadata schema, then the safetensors reader's checks on every tensor), picking the
 * newest valid checkpoint of a directory. The writer and the resume are CheckpointCB's
 * (checkpoint_cb.c). The format is described in include/fl/checkpoint.h.
 *
 * FL_CHECKPOINT_PARSE_ONLY (the fuzz harness) compiles only the state values and the
 * validation, which need no module or tensor code. */
#ifdef FL_NO_CJSON
#include "fl/checkpoint.h"

#define NO_CJSON(what) fl_error(FL_ERR_ARG, "%s: this flexlearn was built without cJSON (make CJSON=0): no checkpoints", what)
fl_status fl_state_set_i64(fl_state *s, const char *k, int64_t v) { (void)s, (void)v; return NO_CJSON(k); }
fl_status fl_state_set_f64(fl_state *s, const char *k, double v) { (void)s, (void)v; return NO_CJSON(k); }
fl_status fl_state_set_str(fl_state *s, const char *k, const char *v) { (void)s, (void)v; return NO_CJSON(k); }
fl_status fl_state_set_f64s(fl_state *s, const char *k, const double *v, int64_t n) { (void)s, (void)v, (void)n; return NO_CJSON(k); }
fl_status fl_state_get_i64(const fl_state *s, const char *k, int64_t *v) { (void)s, (void)v; return NO_CJSON(k); }
fl_status fl_state_get_f64(const fl_state *s, const char *k, double *v) { (void)s, (void)v; return NO_CJSON(k); }
const char *fl_state_get_str(const fl_state *s, const char *k) { (void)s; NO_CJSON(k); return NULL; }
fl_status fl_state_get_f64s(const fl_state *s, const char *k, double *v, int64_t c, int64_t *n) {
  (void)s, (void)v, (void)c, (void)n;
  return NO_CJSON(k);
}
fl_status fl_checkpoint_read(const char *path, fl_module *m, fl_checkpoint **out) { (void)m, *out = NULL; return NO_CJSON(path); }
void fl_checkpoint_free(fl_checkpoint *c) { (void)c; }
const char *fl_checkpoint_path(const fl_checkpoint *c) { (void)c; return ""; }
const char *fl_checkpoint_config(const fl_checkpoint *c, const char *key) { (void)c, (void)key; return NULL; }
void fl_checkpoint_position(const fl_checkpoint *c, int *e, int *v, int64_t *i, int64_t *n) { (void)c, *e = *v = 0, *i = *n = 0; }
void fl_checkpoint_settings(const fl_checkpoint *c, int *every, int *keep) { (void)c, *every = 0, *keep = 3; }
fl_status fl_checkpoint_latest(const char *dir, fl_module *m, FILE *w, fl_checkpoint **out) {
  (void)m, (void)w, *out = NULL;
  return NO_CJSON(dir);
}
int fl_checkpoint_dir_has_any(const char *dir) { (void)dir; return 0; }
#else
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "fl/checkpoint.h"
#include "learner/checkpoint_internal.h"

/* ---- fl_state: a cJSON object; doubles as C99 hex floats, integers up to 2^53 as numbers ---- */

#define MAX_EXACT 9007199254740992.0   /* 2^53 */

/* A name from the file, printable in a message. */
static const char *printable(char out[48], const char *s) {
  size_t k = 0;
  for (; *s && k < 40; s++) out[k++] = (*s >= 0x20 && *s < 0x7f && *s != '\'') ? *s : '?';
  out[k] = 0;
  return out;
}

static fl_status nomem(const char *key) { return fl_error(FL_ERR_NOMEM, "checkpoint state '%s': out of memory", key); }

static cJSON *hex(double v) {
  char b[40];
  snprintf(b, sizeof b, "%a", v);
  return cJSON_CreateString(b);
}

/* A hex (or decimal) float string, wholly consumed. */
static int parse_f64(const cJSON *v, double *out) {
  if (!cJSON_IsString(v) || !v->valuestring[0]) return 0;
  char *end;
  errno = 0;
  double d = strtod(v->valuestring, &end);
  if (*end || (errno == ERANGE && isinf(d))) return 0;
  *out = d;
  return 1;
}

static int parse_int(const cJSON *v, int64_t lo, int64_t hi, int64_t *out) {
  if (!cJSON_IsNumber(v)) return 0;
  double d = v->valuedouble;
  if (!(d >= -MAX_EXACT && d <= MAX_EXACT) || d != floor(d)) return 0;
  int64_t x = (int64_t)d;
  if (x < lo || x > hi) return 0;
  *out = x;
  return 1;
}

static fl_status put(fl_state *s, const char *key, cJSON *v) {
  FL_CHECK(s && key && *key, "fl_state: needs a state and a key");
  if (!v) return nomem(key);
  cJSON_DeleteItemFromObjectCaseSensitive(s->obj, key);
  if (!cJSON_AddItemToObject(s->obj, key, v)) return cJSON_Delete(v), nomem(key);
  return FL_OK;
}

fl_status fl_state_set_i64(fl_state *s, const char *key, int64_t v) {
  FL_CHECK(v >= -(int64_t)MAX_EXACT && v <= (int64_t)MAX_EXACT, "fl_state_set_i64: '%s' = %lld is beyond 2^53", key,
           (long long)v);
  return put(s, key, cJSON_CreateNumber((double)v));
}
fl_status fl_state_set_f64(fl_state *s, const char *key, double v) { return put(s, key, hex(v)); }
fl_status fl_state_set_str(fl_state *s, const char *key, const char *v) { return put(s, key, cJSON_CreateString(v)); }
fl_status fl_state_set_f64s(fl_state *s, const char *key, const double *v, int64_t n) {
  cJSON *a = cJSON_CreateArray();
  for (int64_t i = 0; a && i < n; i++) {
    cJSON *x = hex(v[i]);
    if (!x || !cJSON_AddItemToArray(a, x)) cJSON_Delete(x), cJSON_Delete(a), a = NULL;
  }
  return put(s, key, a);
}

static const cJSON *get(const fl_state *s, const char *key) {
  return s && s->obj ? cJSON_GetObjectItemCaseSensitive(s->obj, key) : NULL;
}
static fl_status bad_key(const char *key, const char *what) {
  char pb[48];
  return fl_error(FL_ERR_FORMAT, "checkpoint state '%s': %s", printable(pb, key), what);
}

fl_status fl_state_get_i64(const fl_state *s, const char *key, int64_t *v) {
  const cJSON *x = get(s, key);
  if (!x) return bad_key(key, "missing");
  return parse_int(x, -(int64_t)MAX_EXACT, (int64_t)MAX_EXACT, v) ? FL_OK : bad_key(key, "not an integer");
}
fl_status fl_state_get_f64(const fl_state *s, const char *key, double *v) {
  const cJSON *x = get(s, key);
  if (!x) return bad_key(key, "missing");
  return parse_f64(x, v) ? FL_OK : bad_key(key, "not a number written as a string");
}
const char *fl_state_get_str(const fl_state *s, const char *key) {
  const cJSON *x = get(s, key);
  if (!cJSON_IsString(x)) return bad_key(key, x ? "not a string" : "missing"), NULL;
  return x->valuestring;
}
fl_status fl_state_get_f64s(const fl_state *s, const char *key, double *v, int64_t cap, int64_t *n) {
  const cJSON *x = get(s, key), *e;
  if (!x) return bad_key(key, "missing");
  if (!cJSON_IsArray(x)) return bad_key(key, "not an array");
  int64_t k = 0;
  cJSON_ArrayForEach(e, x) {
    char pb[48];
    if (k >= cap) return fl_error(FL_ERR_FORMAT, "checkpoint state '%s': more than %lld values", printable(pb, key), (long long)cap);
    if (!parse_f64(e, &v[k]))
      return fl_error(FL_ERR_FORMAT, "checkpoint state '%s': value %lld is not a number", printable(pb, key), (long long)k);
    k++;
  }
  *n = k;
  return FL_OK;
}

/* ---- the reader ---- */
static uint64_t le64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
  return v;
}


/* Printable ASCII only (what the messages that quote it may show). */
static int plain(const char *s) {
  for (; *s; s++)
    if (*s < 0x20 || *s >= 0x7f) return 0;
  return 1;
}

/* Reads the fields of the state object into m; the first problem as a message. */
static fl_status parse_state(const char *file, const cJSON *st, int n_model, fl__ckpt_meta *m) {
#define BAD(...) fl_error(FL_ERR_FORMAT, "%s: checkpoint state: " __VA_ARGS__)
#define FIELD(obj, key) cJSON_GetObjectItemCaseSensitive(obj, key)
  char pb[48];
  int64_t x;
  if (!cJSON_IsObject(st)) return BAD("%s", file, "not a JSON object");
  if (!parse_int(FIELD(st, "version"), 0, INT32_MAX, &x)) return BAD("%s", file, "no integer 'version'");
  if (x != FL__CKPT_VERSION) return BAD("version %lld is not supported (this flexlearn reads %d)", file, (long long)x, FL__CKPT_VERSION);
  const cJSON *pos = FIELD(st, "position"), *ph;
  if (!cJSON_IsObject(pos)) return BAD("%s", file, "no 'position' object");
  if (!parse_int(FIELD(pos, "epoch"), 0, INT32_MAX, &x)) return BAD("%s", file, "position.epoch is not an integer in 0..2^31");
  m->epoch = (int)x;
  ph = FIELD(pos, "phase");
  if (!cJSON_IsString(ph) || (strcmp(ph->valuestring, "train") && strcmp(ph->valuestring, "valid")))
    return BAD("%s", file, "position.phase is not \"train\" or \"valid\"");
  m->valid = !strcmp(ph->valuestring, "valid");
  if (!parse_int(FIELD(pos, "iter"), 0, INT64_C(1) << 40, &m->iter)) return BAD("%s", file, "position.iter is not an integer in 0..2^40");
  if (!parse_int(FIELD(st, "n_iter"), 0, INT64_C(1) << 52, &m->n_iter)) return BAD("%s", file, "n_iter is not a non-negative integer");
  if (!parse_int(FIELD(st, "n_epochs"), 0, INT32_MAX, &m->n_epochs)) return BAD("%s", file, "n_epochs is not a non-negative integer");
  const cJSON *le = FIELD(st, "loader_epochs");
  if (!cJSON_IsArray(le) || cJSON_GetArraySize(le) != 2) return BAD("%s", file, "loader_epochs is not an array of 2 integers");
  for (int i = 0; i < 2; i++) {
    if (!parse_int(cJSON_GetArrayItem(le, i), 0, INT64_C(1) << 52, &x)) return BAD("%s", file, "loader_epochs is not an array of 2 integers");
    m->loader_epoch[i] = (uint64_t)x;
  }
  const cJSON *opt = FIELD(st, "optimizer"), *v;
  if (!cJSON_IsObject(opt)) return BAD("%s", file, "no 'optimizer' object");
  v = FIELD(opt, "name");
  if (!cJSON_IsString(v) || !v->valuestring[0] || strlen(v->valuestring) >= FL__CKPT_MAX_NAME || !plain(v->valuestring))
    return BAD("%s", file, "optimizer.name is not a short printable string");
  strcpy(m->opt_name, v->valuestring);
  if (!parse_int(FIELD(opt, "n_steps"), 0, INT64_C(1) << 52, &m->n_steps)) return BAD("%s", file, "optimizer.n_steps is not a non-negative integer");
  const cJSON *bufs = FIELD(opt, "bufs"), *groups = FIELD(opt, "groups");
  if (!cJSON_IsArray(bufs) || cJSON_GetArraySize(bufs) > 4) return BAD("%s", file, "optimizer.bufs is not an array of at most 4 names");
  cJSON_ArrayForEach(v, bufs) {
    size_t k = cJSON_IsString(v) ? strlen(v->valuestring) : 0;
    int ok = k > 0 && k + 7 < FL__CKPT_MAX_NAME;
    for (size_t i = 0; ok && i < k; i++) ok = v->valuestring[i] > 0x20 && v->valuestring[i] < 0x7f;
    for (int j = 0; ok && j < m->n_bufs; j++) ok = strcmp(m->buf_names[j], v->valuestring) != 0;
    if (!ok) return BAD("%s", file, "optimizer.bufs holds an empty, long, odd or repeated name");
    strcpy(m->buf_names[m->n_bufs++], v->valuestring);
  }
  int ng = cJSON_IsArray(groups) ? cJSON_GetArraySize(groups) : 0;
  if (ng < 1 || ng > FL__CKPT_MAX_GROUPS) return BAD("optimizer.groups is not an array of 1..%d groups", file, FL__CKPT_MAX_GROUPS);
  cJSON_ArrayForEach(v, groups) {
    static const char *keys[3] = {"lr", "mom", "wd"};
    float *dst[3] = {&m->lr[m->n_groups], &m->mom[m->n_groups], &m->wd[m->n_groups]};
    for (int k = 0; k < 3; k++) {
      double d;
      if (!cJSON_IsObject(v) || !parse_f64(FIELD(v, keys[k]), &d) || !isfinite(d) || (double)(float)d != d)
        return BAD("optimizer.groups[%d].%s is not a float written as a string", file, m->n_groups, keys[k]);
      *dst[k] = (float)d;
    }
    m->n_groups++;
  }
  v = FIELD(st, "grad");
  if (!cJSON_IsBool(v)) return BAD("%s", file, "grad is not true or false");
  m->grad = cJSON_IsTrue(v);
  const cJSON *gn = FIELD(st, "grad_none");
  if (!cJSON_IsArray(gn) || cJSON_GetArraySize(gn) != n_model)
    return BAD("grad_none is not an array of %d flags (one per parameter)", file, n_model);
  m->grad_none = malloc((size_t)(n_model ? n_model : 1));
  if (!m->grad_none) return fl_error(FL_ERR_NOMEM, "%s: out of memory reading the checkpoint state", file);
  m->n_params = 0;
  cJSON_ArrayForEach(v, gn) {
    if (!parse_int(v, 0, 1, &x)) return BAD("%s", file, "grad_none holds something other than 0 or 1");
    m->grad_none[m->n_params++] = (unsigned char)x;
  }
  if (!parse_int(FIELD(st, "flat_numel"), 0, INT64_C(1) << 40, &m->flat_numel)) return BAD("%s", file, "flat_numel is not an integer in 0..2^40");
  const cJSON *ck = FIELD(st, "checkpoint");
  if (!cJSON_IsObject(ck) || !parse_int(FIELD(ck, "every"), 0, INT32_MAX, &x)) return BAD("%s", file, "checkpoint.every is not a non-negative integer");
  m->every = (int)x;
  if (!parse_int(FIELD(ck, "keep"), 1, INT32_MAX, &x)) return BAD("%s", file, "checkpoint.keep is not a positive integer");
  m->keep = (int)x;
  m->config = FIELD(st, "config");
  if (!cJSON_IsObject(m->config)) return BAD("%s", file, "no 'config' object");
  cJSON_ArrayForEach(v, m->config) if (!cJSON_IsString(v) || strlen(v->valuestring) > 200 || !plain(v->valuestring) || !plain(v->string))
    return BAD("config '%s' is not a short printable string", file, printable(pb, v->string));
  m->callbacks = FIELD(st, "callbacks");
  if (!cJSON_IsObject(m->callbacks)) return BAD("%s", file, "no 'callbacks' object");
  cJSON_ArrayForEach(v, m->callbacks) if (!cJSON_IsObject(v)) return BAD("callback '%s' is not an object", file, printable(pb, v->string));
  return FL_OK;
#undef FIELD
#undef BAD
}

void fl__ckpt_meta_free(fl__ckpt_meta *m) {
  if (!m) return;
  cJSON_Delete(m->root);
  free(m->grad_none);
  free(m->off);
  memset(m, 0, sizeof *m);
}

/* The CRC of the whole file with its own 8 digits read as "00000000", against those digits. */
static fl_status check_crc(const uint8_t *p, size_t n, uint64_t hl, const char *file) {
  const char *key = FL__CKPT_CRC_KEY, *h = (const char *)p + 8;
  size_t kl = strlen(key);
  const char *at = memmem(h, (size_t)hl, key, kl), *again = at ? memmem(at + 1, (size_t)hl - (size_t)(at + 1 - h), key, kl) : NULL;
  if (!at || again) return fl_error(FL_ERR_FORMAT, "%s: %s flexlearn_crc32 in __metadata__", file, at ? "more than one" : "no");
  size_t d = (size_t)(at - h) + kl + 8;   /* offset of the digits in the file */
  unsigned want = 0;
  for (int i = 0; i < 8; i++) {
    char c = d + 8 < 8 + hl ? (char)p[d + i] : 0;
    int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (v < 0) return fl_error(FL_ERR_FORMAT, "%s: flexlearn_crc32 is not 8 hex digits", file);
    want = want << 4 | (unsigned)v;
  }
  uLong crc = crc32(0L, Z_NULL, 0);
  crc = crc32_z(crc, p, d);
  crc = crc32_z(crc, (const Bytef *)"00000000", 8);
  crc = crc32_z(crc, p + d + 8, n - d - 8);
  if ((unsigned)crc != want)
    return fl_error(FL_ERR_FORMAT, "%s: corrupt: the CRC-32 of its bytes is %08x, the file says %08x", file, (unsigned)crc, want);
  return FL_OK;
}

fl_status fl__ckpt_parse_mem(const void *pv, size_t n, const char *file, const fl__st_want *model, int n_model,
                             int crc, fl__ckpt_meta *out) {
  const uint8_t *p = pv;
  memset(out, 0, sizeof *out);
  if (n < 8) return fl_error(FL_ERR_FORMAT, "%s: truncated: %zu bytes (not a checkpoint)", file, n);
  uint64_t hl = le64(p);
  if (hl > FL__ST_MAX_HEADER || hl > n - 8)
    return fl_error(FL_ERR_FORMAT, "%s: the header length %" PRIu64 " is more than the file's %zu bytes hold: truncated or not a checkpoint",
                    file, hl, n);
  /* the metadata first: it says which tensors besides the model's the file must hold */
  cJSON *hdr = cJSON_ParseWithLength((const char *)p + 8, (size_t)hl);
  if (!hdr) return fl_error(FL_ERR_FORMAT, "%s: the header is not valid JSON: corrupt or not a checkpoint", file);
  const cJSON *meta = cJSON_GetObjectItemCaseSensitive(hdr, "__metadata__");
  const cJSON *sv = cJSON_IsObject(meta) ? cJSON_GetObjectItemCaseSensitive(meta, "flexlearn_state") : NULL;
  fl_status st = FL_OK;
  if (!cJSON_IsString(sv))
    st = fl_error(FL_ERR_FORMAT, "%s: no __metadata__ flexlearn_state: a weights file or another program's, not a flexlearn checkpoint", file);
  else if (!(out->root = cJSON_Parse(sv->valuestring)))
    st = fl_error(FL_ERR_FORMAT, "%s: checkpoint state: not valid JSON", file);
  cJSON_Delete(hdr);
  if (st == FL_OK) st = parse_state(file, out->root, n_model, out);
  fl__st_want *want = NULL;
  int nw = n_model + out->n_bufs + out->grad;
  if (st == FL_OK) {
    want = malloc((size_t)nw * sizeof *want + 5 * FL__CKPT_MAX_NAME);
    out->off = malloc((size_t)(nw ? nw : 1) * sizeof *out->off);
    if (!want || !out->off) st = fl_error(FL_ERR_NOMEM, "%s: out of memory reading the checkpoint", file);
  }
  if (st == FL_OK) {
    char *names = (char *)(want + nw);
    if (n_model) memcpy(want, model, (size_t)n_model * sizeof *want);
    for (int b = 0; b < out->n_bufs + out->grad; b++) {
      char *nm = names + b * FL__CKPT_MAX_NAME;
      if (b < out->n_bufs) snprintf(nm, FL__CKPT_MAX_NAME, "optim.%s", out->buf_names[b]);
      else strcpy(nm, "grad");
      want[n_model + b] = (fl__st_want){.name = nm, .ndim = 1, .shape = {out->flat_numel}};
    }
    st = fl__safetensors_parse_mem(p, n, file, want, nw, out->off);
    out->n_off = nw;
  }
  if (st == FL_OK && crc) st = check_crc(p, n, hl, file);
  free(want);
  if (st != FL_OK) fl__ckpt_meta_free(out);
  return st;
}

const char *fl__ckpt_name(char *buf, size_t n, int epoch, int valid, int64_t iter) {
  snprintf(buf, n, "ckpt-%06d-%s-%08lld.safetensors", epoch, valid ? "valid" : "train", (long long)iter);
  return buf;
}

#ifndef FL_CHECKPOINT_PARSE_ONLY
#include "fl/nn.h"

static int newest_first(const void *a, const void *b) {
  const fl__ckpt_file *x = a, *y = b;
  if (x->epoch != y->epoch) return x->epoch > y->epoch ? -1 : 1;
  if (x->valid != y->valid) return x->valid > y->valid ? -1 : 1;
  if (x->iter != y->iter) return x->iter > y->iter ? -1 : 1;
  return 0;
}

int fl__ckpt_list(const char *dir, fl__ckpt_file **out) {
  *out = NULL;
  DIR *d = opendir(dir);
  if (!d) return -1;
  int n = 0, cap = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    int ep, len = 0;
    long long it;
    char ph[8], back[96];
    if (strlen(e->d_name) >= sizeof back || sscanf(e->d_name, "ckpt-%d-%5[a-z]-%lld.safetensors%n", &ep, ph, &it, &len) != 3 ||
        len != (int)strlen(e->d_name) || (strcmp(ph, "train") && strcmp(ph, "valid")) || ep < 0 || it < 0)
      continue;
    if (strcmp(fl__ckpt_name(back, sizeof back, ep, ph[0] == 'v', it), e->d_name)) continue;   /* the canonical name only */
    if (n == cap) {
      cap = cap ? 2 * cap : 16;
      fl__ckpt_file *nv = realloc(*out, (size_t)cap * sizeof *nv);
      if (!nv) break;
      *out = nv;
    }
    fl__ckpt_file *f = &(*out)[n++];
    snprintf(f->name, sizeof f->name, "%.95s", e->d_name);
    f->epoch = ep, f->valid = ph[0] == 'v', f->iter = it;
  }
  closedir(d);
  if (n) qsort(*out, (size_t)n, sizeof **out, newest_first);
  return n;
}

int fl_checkpoint_dir_has_any(const char *dir) {
  fl__ckpt_file *f;
  int n = fl__ckpt_list(dir, &f);
  free(f);
  return n > 0;
}

/* The model's tensors as the reader wants them; names and ts for the caller to free. */
static fl__st_want *model_want(fl_module *m, int *n, char ***names, fl_tensor ***ts) {
  *n = fl__st_names(m, names, ts);
  fl__st_want *w = fl_xmalloc((size_t)(*n ? *n : 1) * sizeof *w);
  for (int i = 0; i < *n; i++) {
    w[i] = (fl__st_want){.name = (*names)[i], .ndim = (*ts)[i]->ndim};
    memcpy(w[i].shape, (*ts)[i]->shape, sizeof w[i].shape);
  }
  return w;
}

fl_status fl_checkpoint_read(const char *path, fl_module *model, fl_checkpoint **out) {
  FL_CHECK(path && model && out, "fl_checkpoint_read: needs a path, a model and out");
  *out = NULL;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fl_error(FL_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
  struct stat sb;
  if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
    close(fd);
    return fl_error(FL_ERR_IO, "%s: not a regular file", path);
  }
  size_t n = (size_t)sb.st_size;
  void *map = n ? mmap(NULL, n, PROT_READ, MAP_PRIVATE, fd, 0) : NULL;
  close(fd);
  if (map == MAP_FAILED) return fl_error(FL_ERR_IO, "%s: cannot map: %s", path, strerror(errno));
  char **names;
  fl_tensor **ts;
  int nm;
  fl__st_want *want = model_want(model, &nm, &names, &ts);
  fl_checkpoint *c = fl_xcalloc(1, sizeof *c);
  fl_status st = fl__ckpt_parse_mem(map, n, path, want, nm, 1, &c->meta);
  free(want), fl__st_names_free(names, ts, nm);
  if (st == FL_OK && c->meta.n_params != nm)
    st = fl_error(FL_ERR_FORMAT, "%s: %d parameters' flags, the model has %d", path, c->meta.n_params, nm);
  int64_t flat = model->flat ? fl_numel(model->flat) : 0;
  if (st == FL_OK && (c->meta.n_bufs || c->meta.grad) && c->meta.flat_numel != flat)
    st = fl_error(FL_ERR_FORMAT, "%s: the optimiser buffers hold %lld values, the model's flat buffer %lld", path,
                  (long long)c->meta.flat_numel, (long long)flat);
  if (st != FL_OK) {
    if (map) munmap(map, n);
    fl__ckpt_meta_free(&c->meta);
    free(c);
    return st;
  }
  c->path = strdup(path);
  c->p = map, c->n = n;
  *out = c;
  return FL_OK;
}

void fl_checkpoint_free(fl_checkpoint *c) {
  if (!c) return;
  if (c->p) munmap((void *)c->p, c->n);
  fl__ckpt_meta_free(&c->meta);
  free(c->path);
  free(c);
}

const char *fl_checkpoint_path(const fl_checkpoint *c) { return c->path; }

const char *fl_checkpoint_config(const fl_checkpoint *c, const char *key) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(c->meta.config, key);
  return cJSON_IsString(v) ? v->valuestring : NULL;
}

void fl_checkpoint_position(const fl_checkpoint *c, int *epoch, int *valid, int64_t *iter, int64_t *n_iter) {
  *epoch = c->meta.epoch, *valid = c->meta.valid, *iter = c->meta.iter, *n_iter = c->meta.n_iter;
}

void fl_checkpoint_settings(const fl_checkpoint *c, int *every, int *keep) {
  *every = c->meta.every, *keep = c->meta.keep;
}

fl_status fl_checkpoint_latest(const char *dir, fl_module *model, FILE *warn, fl_checkpoint **out) {
  FL_CHECK(dir && model && out, "fl_checkpoint_latest: needs a directory, a model and out");
  *out = NULL;
  fl__ckpt_file *f;
  int n = fl__ckpt_list(dir, &f);
  if (n < 0) return fl_error(FL_ERR_IO, "%s: cannot read the directory: %s", dir, strerror(errno));
  if (n == 0) {
    free(f);
    return fl_error(FL_ERR_IO, "%s: no checkpoint in it (ckpt-*.safetensors)", dir);
  }
  fl_status st = FL_ERR;
  char first[512] = "";
  int found = 0;
  for (; found < n; found++) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, f[found].name);
    if ((st = fl_checkpoint_read(path, model, out)) == FL_OK) break;
    if (!first[0]) snprintf(first, sizeof first, "%s", fl_last_error());
  }
  /* A valid one was found: the newer ones that are not go out of the way of the resumed run's
   * own checkpoints (renamed NAME.corrupt), one line each. Nothing is touched when none is valid. */
  for (int i = 0; st == FL_OK && i < found; i++) {
    char path[4096], bad[4200];
    snprintf(path, sizeof path, "%s/%s", dir, f[i].name);
    snprintf(bad, sizeof bad, "%s.corrupt", path);
    fl_checkpoint *c = NULL;
    fl_checkpoint_read(path, model, &c);   /* again, for its message */
    fl_checkpoint_free(c);
    char why[512];
    snprintf(why, sizeof why, "%s", fl_last_error());
    int moved = rename(path, bad) == 0;
    if (warn)
      fprintf(warn, "flexlearn: %s; %s; resuming from %s\n", why, moved ? "renamed to *.corrupt" : "left as it is",
              f[found].name);
  }
  free(f);
  if (st != FL_OK)
    return fl_error(FL_ERR_FORMAT, "%s: no valid checkpoint (%d tried; the newest: %s)", dir, n, first);
  return FL_OK;
}
#endif /* FL_CHECKPOINT_PARSE_ONLY */
#endif /* FL_NO_CJSON */
