/* Weights in the safetensors format (https://github.com/huggingface/safetensors), the one
 * PyTorch and Hugging Face load without pickle.
 *
 * Layout: an 8-byte little-endian u64 N, then N bytes of JSON (padded with spaces), then the
 * tensors' raw bytes. The JSON maps each tensor's name to {"dtype", "shape", "data_offsets":
 * [begin, end]} (offsets relative to the start of the data) and "__metadata__" to strings.
 * Names are PyTorch's state_dict names for the same module tree: the index of a child in its
 * Sequential, then the parameter's name ("0.weight", "0.bias", "2.weight", "2.bias").
 *
 * Writing goes to PATH.tmp, is fsync'd and renamed over PATH: a crash leaves the previous file.
 * Reading maps the file once and validates everything (header, every entry, the offsets covering
 * the data exactly once, the model's names and shapes) before the first parameter is written,
 * so a bad file leaves the model untouched. Nothing is allocated for what a header claims: the
 * header's length is checked against the file's size first, and the data is copied straight
 * from the mapping into the parameters.
 *
 * FL_SAFETENSORS_PARSE_ONLY (the fuzz harness) compiles only the validation, which needs no
 * module or tensor code. */
#ifdef FL_NO_CJSON
/* Built with CJSON=0 (a machine without libcjson-dev): no safetensors, said plainly. */
#include "core/internal.h"
#include "fl/nn.h"

fl_status fl_save_safetensors(fl_module *m, const char *path, const char *model_name) {
  (void)m, (void)model_name;
  return fl_error(FL_ERR_ARG, "%s: this flexlearn was built without cJSON (make CJSON=0): no safetensors", path);
}
fl_status fl_load_safetensors(fl_module *m, const char *path) {
  (void)m;
  return fl_error(FL_ERR_ARG, "%s: this flexlearn was built without cJSON (make CJSON=0): no safetensors", path);
}
#else
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "nn/safetensors_internal.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c assumes a little-endian host (the format's byte order)"
#endif

#define ST_MAX_DIMS 8   /* the most dimensions an entry may have (the model's tensors have <= 4) */

/* ---- messages: names and dtypes from a file, made printable and short (one line) ---- */
typedef struct esc_buf { char s[96]; } esc_buf;

static const char *esc(esc_buf *b, const char *s) {
  size_t k = 0;
  for (; *s && k + 8 < sizeof b->s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c >= 0x20 && c < 0x7f && c != '\'' && c != '\\') b->s[k++] = (char)c;
    else k += (size_t)snprintf(b->s + k, sizeof b->s - k, "\\x%02x", c);
  }
  if (*s) memcpy(b->s + k, "...", 4);
  else b->s[k] = 0;
  return b->s;
}

/* "[50, 784]" */
static const char *shape_str(char buf[128], const int64_t *d, int nd) {
  int k = snprintf(buf, 128, "[");
  for (int i = 0; i < nd && k < 100; i++) k += snprintf(buf + k, 128 - (size_t)k, "%s%" PRId64, i ? ", " : "", d[i]);
  snprintf(buf + k, 128 - (size_t)k, "]");
  return buf;
}

/* ---- validation ---- */
typedef struct st_entry {
  const char *name;
  int ndim;
  int64_t shape[ST_MAX_DIMS];
  uint64_t begin, end;      /* in the data section */
  int used;                 /* matched to a wanted tensor */
} st_entry;

static uint64_t le64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
  return v;
}

/* A JSON number that is a non-negative integer no larger than 2^53 (exact in a double). */
static int json_uint(const cJSON *v, uint64_t *out) {
  if (!cJSON_IsNumber(v)) return 0;
  double d = v->valuedouble;
  if (!(d >= 0 && d <= 9007199254740992.0) || d != (double)(uint64_t)d) return 0;
  *out = (uint64_t)d;
  return 1;
}

static int by_name(const void *a, const void *b) {
  return strcmp(((const st_entry *)a)->name, ((const st_entry *)b)->name);
}
static int by_offset(const void *a, const void *b) {
  const st_entry *x = *(const st_entry *const *)a, *y = *(const st_entry *const *)b;
  if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
  if (x->end != y->end) return x->end < y->end ? -1 : 1;
  return 0;
}

/* One tensor entry {"dtype": "F32", "shape": [..], "data_offsets": [b, e]} into *e. */
static fl_status parse_entry(const char *file, const cJSON *v, uint64_t data_n, st_entry *e) {
  esc_buf nb, xb;
  const char *tn = esc(&nb, e->name);
  if (!cJSON_IsObject(v))
    return fl_error(FL_ERR_FORMAT, "%s: tensor '%s': the entry is not a JSON object", file, tn);
  const cJSON *dtype = NULL, *shape = NULL, *offs = NULL, *f;
  cJSON_ArrayForEach(f, v) {
    const cJSON **slot = !strcmp(f->string, "dtype") ? &dtype : !strcmp(f->string, "shape") ? &shape
                       : !strcmp(f->string, "data_offsets") ? &offs : NULL;
    if (!slot)
      return fl_error(FL_ERR_FORMAT, "%s: tensor '%s': unknown field '%s' (expected dtype, shape, data_offsets)",
                      file, tn, esc(&xb, f->string));
    if (*slot) return fl_error(FL_ERR_FORMAT, "%s: tensor '%s': field '%s' appears twice", file, tn, f->string);
    *slot = f;
  }
  if (!dtype || !shape || !offs)
    return fl_error(FL_ERR_FORMAT, "%s: tensor '%s': no '%s' field", file, tn,
                    !dtype ? "dtype" : !shape ? "shape" : "data_offsets");
  if (!cJSON_IsString(dtype))
    return fl_error(FL_ERR_FORMAT, "%s: tensor '%s': dtype is not a string", file, tn);
  if (strcmp(dtype->valuestring, "F32"))
    return fl_error(FL_ERR_FORMAT, "%s: tensor '%s': dtype '%s' is not supported (only F32)", file, tn,
                    esc(&xb, dtype->valuestring));
  if (!cJSON_IsArray(shape))
    return fl_error(FL_ERR_FORMAT, "%s: tensor '%s': shape is not an array", file, tn);
  int nd = cJSON_GetArraySize(shape);
  if (nd > ST_MAX_DIMS)
    return fl_error(FL_ERR_FORMAT, "%s: tensor '%s': shape has %d dimensions (at most %d)", file, tn, nd,
                    ST_MAX_DIMS);
  uint64_t prod = 1, bytes;
  int i = 0;
  cJSON_ArrayForEach(f, shape) {
    uint64_t d;
    if (!json_uint(f, &d))
      return fl_error(FL_ERR_FORMAT, "%s: tensor '%s': shape dimension %d is not a non-negative integer "
                      "(at most 2^53)", file, tn, i);
    e->shape[i++] = (int64_t)d;
    if (__builtin_mul_overflow(prod, d, &prod))
      return fl_error(FL_ERR_FORMAT, "%s: tensor '%s': the shape's element count overflows 64 bits", file, tn);
  }
  e->ndim = nd;
  if (__builtin_mul_overflow(prod, (uint64_t)sizeof(float), &bytes))
    return fl_error(FL_ERR_FORMAT, "%s: tensor '%s': the shape's byte count overflows 64 bits", file, tn);
  uint64_t b, en;
  if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2 || !json_uint(offs->child, &b) ||
      !json_uint(offs->child->next, &en))
    return fl_error(FL_ERR_FORMAT, "%s: tensor '%s': data_offsets is not [begin, end] of two non-negative "
                    "integers", file, tn);
  if (b > en || en > data_n)
    return fl_error(FL_ERR_FORMAT, "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] out of range "
                    "(the data is %" PRIu64 " bytes)", file, tn, b, en, data_n);
  char sb[128];
  if (en - b != bytes)
    return fl_error(FL_ERR_FORMAT, "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] hold %" PRIu64
                    " bytes but shape %s in F32 needs %" PRIu64, file, tn, b, en, en - b,
                    shape_str(sb, e->shape, nd), bytes);
  e->begin = b;
  e->end = en;
  return FL_OK;
}

/* Everything after the parse: duplicates, the model's tensors, extras, and the offsets covering
 * the data exactly once. Fills off[] (n_want) on success. */
static fl_status check_entries(const char *file, st_entry *es, int ne, uint64_t data_n,
                               const fl__st_want *want, int n_want, uint64_t *off) {
  esc_buf nb, xb;
  char sa[128], sb[128];
  qsort(es, (size_t)ne, sizeof *es, by_name);
  for (int i = 1; i < ne; i++)
    if (!strcmp(es[i].name, es[i - 1].name))
      return fl_error(FL_ERR_FORMAT, "%s: tensor '%s' appears twice in the header", file, esc(&nb, es[i].name));
  for (int w = 0; w < n_want; w++) {
    st_entry key = {.name = want[w].name};
    st_entry *e = ne ? bsearch(&key, es, (size_t)ne, sizeof *es, by_name) : NULL;
    if (!e)
      return fl_error(FL_ERR_FORMAT, "%s: tensor '%s' is missing (the model needs it, shape %s)", file,
                      esc(&nb, want[w].name), shape_str(sa, want[w].shape, want[w].ndim));
    int same = e->ndim == want[w].ndim;
    for (int d = 0; same && d < e->ndim; d++) same = e->shape[d] == want[w].shape[d];
    if (!same)
      return fl_error(FL_ERR_FORMAT, "%s: tensor '%s': shape %s in the file, but the model's is %s", file,
                      esc(&nb, want[w].name), shape_str(sa, e->shape, e->ndim),
                      shape_str(sb, want[w].shape, want[w].ndim));
    e->used = 1;
    off[w] = e->begin;
  }
  int extra = 0;
  const char *first = NULL;
  for (int i = 0; i < ne; i++)
    if (!es[i].used) extra++, first = first ? first : es[i].name;
  if (extra)
    return fl_error(FL_ERR_FORMAT, "%s: unexpected tensor '%s' (the model has no such parameter)%s", file,
                    esc(&nb, first), extra > 1 ? " and others" : "");
  /* The data: each byte belongs to exactly one tensor (as the reference reader demands). */
  st_entry **ord = malloc((size_t)(ne ? ne : 1) * sizeof *ord);
  if (!ord) return fl_error(FL_ERR_NOMEM, "%s: out of memory checking the header", file);
  for (int i = 0; i < ne; i++) ord[i] = &es[i];
  qsort(ord, (size_t)ne, sizeof *ord, by_offset);
  uint64_t pos = 0;
  const st_entry *last = NULL;
  fl_status st = FL_OK;
  for (int i = 0; i < ne && st == FL_OK; i++) {
    const st_entry *e = ord[i];
    if (e->begin < pos)
      st = fl_error(FL_ERR_FORMAT, "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] overlap those "
                    "of tensor '%s', [%" PRIu64 ", %" PRIu64 "]", file, esc(&nb, e->name), e->begin, e->end,
                    esc(&xb, last->name), last->begin, last->end);
    else if (e->begin > pos)
      st = fl_error(FL_ERR_FORMAT, "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] leave bytes "
                    "[%" PRIu64 ", %" PRIu64 ") of the data unused", file, esc(&nb, e->name), e->begin, e->end,
                    pos, e->begin);
    if (e->end > pos) pos = e->end, last = e;
  }
  free(ord);
  if (st == FL_OK && pos != data_n)
    st = fl_error(FL_ERR_FORMAT, "%s: %" PRIu64 " bytes after the last tensor's data belong to no tensor", file,
                  data_n - pos);
  return st;
}

fl_status fl__safetensors_parse_mem(const void *pv, size_t n, const char *file, const fl__st_want *want,
                                    int n_want, size_t *data_off) {
  const uint8_t *p = pv;
  if (n < 8)
    return fl_error(FL_ERR_FORMAT, "%s: truncated: %zu bytes (a safetensors file starts with an 8-byte "
                    "header length)", file, n);
  uint64_t hl = le64(p);
  if (hl > FL__ST_MAX_HEADER)
    return fl_error(FL_ERR_FORMAT, "%s: header length %" PRIu64 " is over the limit of %" PRIu64 " bytes", file,
                    hl, FL__ST_MAX_HEADER);
  if (hl > n - 8)
    return fl_error(FL_ERR_FORMAT, "%s: truncated: the header length is %" PRIu64 " bytes but only %zu follow",
                    file, hl, n - 8);
  const char *h = (const char *)p + 8;
  if (hl == 0 || h[0] != '{')
    return fl_error(FL_ERR_FORMAT, "%s: the header is not a JSON object (it must start with '{')", file);
  const char *end = NULL;
  cJSON *root = cJSON_ParseWithLengthOpts(h, (size_t)hl, &end, 0);
  if (!root) {
    size_t at = end && end >= h && end <= h + hl ? (size_t)(end - h) : 0;
    return fl_error(FL_ERR_FORMAT, "%s: the header is not valid JSON (error at byte %zu of %" PRIu64 ")", file,
                    at, hl);
  }
  fl_status st = FL_OK;
  for (const char *q = end; q < h + hl && st == FL_OK; q++)
    if (*q != ' ' && *q != '\t' && *q != '\n' && *q != '\r')
      st = fl_error(FL_ERR_FORMAT, "%s: unexpected byte 0x%02x after the header's JSON (at byte %zu of %" PRIu64
                    "; only spaces may pad it)", file, (unsigned char)*q, (size_t)(q - h), hl);
  if (st == FL_OK && !cJSON_IsObject(root))
    st = fl_error(FL_ERR_FORMAT, "%s: the header is not a JSON object", file);
  int nk = st == FL_OK ? cJSON_GetArraySize(root) : 0;
  st_entry *es = NULL;
  uint64_t *off = NULL;
  if (st == FL_OK) {
    es = calloc((size_t)(nk ? nk : 1), sizeof *es);
    off = calloc((size_t)(n_want ? n_want : 1), sizeof *off);
    if (!es || !off) st = fl_error(FL_ERR_NOMEM, "%s: out of memory reading the header", file);
  }
  int ne = 0, meta = 0;
  const uint64_t data_n = n - 8 - hl;
  const cJSON *v;
  if (st == FL_OK) cJSON_ArrayForEach(v, root) {
    if (!strcmp(v->string, "__metadata__")) {
      const cJSON *kv;
      if (meta++) { st = fl_error(FL_ERR_FORMAT, "%s: __metadata__ appears twice in the header", file); break; }
      if (!cJSON_IsObject(v)) { st = fl_error(FL_ERR_FORMAT, "%s: __metadata__ is not a JSON object", file); break; }
      cJSON_ArrayForEach(kv, v) if (!cJSON_IsString(kv)) {
        esc_buf kb;
        st = fl_error(FL_ERR_FORMAT, "%s: __metadata__ '%s' is not a string", file, esc(&kb, kv->string));
        break;
      }
      if (st != FL_OK) break;
      continue;
    }
    es[ne].name = v->string;
    if ((st = parse_entry(file, v, data_n, &es[ne])) != FL_OK) break;
    ne++;
  }
  if (st == FL_OK) st = check_entries(file, es, ne, data_n, want, n_want, off);
  if (st == FL_OK)
    for (int w = 0; w < n_want; w++) data_off[w] = (size_t)(8 + hl + off[w]);
  free(es);
  free(off);
  cJSON_Delete(root);
  return st;
}

#ifndef FL_SAFETENSORS_PARSE_ONLY
#include "core/internal.h"
#include "fl/nn.h"

/* ---- the model's tensors and their state_dict names ---- */
typedef struct named { char *name; fl_tensor *t; } named;
typedef struct named_list { named *v; int n, cap; } named_list;

static char *join(const char *prefix, const char *leaf) {
  size_t k = strlen(prefix) + strlen(leaf) + 2;
  char *full = fl_xmalloc(k);
  snprintf(full, k, "%s%s%s", prefix, *prefix ? "." : "", leaf);
  return full;
}

static void add(named_list *l, char *name, fl_tensor *t) {
  if (l->n == l->cap) {
    l->cap = l->cap ? 2 * l->cap : 8;
    named *nv = fl_xmalloc((size_t)l->cap * sizeof *nv);
    if (l->n) memcpy(nv, l->v, (size_t)l->n * sizeof *nv);
    free(l->v);
    l->v = nv;
  }
  l->v[l->n++] = (named){name, t};
}

/* PyTorch's state_dict order: a module's own parameters, then its own buffers (BatchNorm's
 * running_mean, running_var), then each child's under its name (m->name, else its index).
 * BatchNorm's num_batches_tracked is not written: torch's load_state_dict(strict=True) fills it
 * in itself for a state_dict without version metadata, as a file's is (checked with Debian's
 * torch 1.13; tests/test_models.c loads a resnet file that way). */
static void collect(fl_module *m, const char *prefix, named_list *l) {
  char idx[24];
  for (int i = 0; i < m->n_params; i++) {
    if (m->params[i]->name) add(l, join(prefix, m->params[i]->name), m->params[i]);
    else snprintf(idx, sizeof idx, "%d", i), add(l, join(prefix, idx), m->params[i]);
  }
  for (int i = 0; i < m->n_buffers; i++) {
    FL_CHECK(m->buffers[i]->name, "safetensors: a buffer without a name");
    add(l, join(prefix, m->buffers[i]->name), m->buffers[i]);
  }
  for (int i = 0; i < m->n_children; i++) {
    snprintf(idx, sizeof idx, "%d", i);
    char *full = join(prefix, m->children[i]->name ? m->children[i]->name : idx);
    collect(m->children[i], full, l);
    free(full);
  }
}

static void named_free(named_list *l) {
  for (int i = 0; i < l->n; i++) free(l->v[i].name);
  free(l->v);
}

int fl__st_names(fl_module *m, char ***names, fl_tensor ***ts) {
  named_list l = {0};
  collect(m, "", &l);
  *names = fl_xmalloc((size_t)(l.n ? l.n : 1) * sizeof **names);
  *ts = fl_xmalloc((size_t)(l.n ? l.n : 1) * sizeof **ts);
  for (int i = 0; i < l.n; i++) (*names)[i] = l.v[i].name, (*ts)[i] = l.v[i].t;
  free(l.v);
  return l.n;
}

void fl__st_names_free(char **names, fl_tensor **ts, int n) {
  for (int i = 0; names && i < n; i++) free(names[i]);
  free(names), free(ts);
}

/* ---- writing ---- */
static int write_all(int fd, const void *buf, size_t n) {
  const char *p = buf;
  while (n) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) { if (w == 0) errno = EIO; return -1; }
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

/* The JSON header (unpadded; free with cJSON_free), or NULL when out of memory. */
static char *header_json(const named_list *l, const char *model_name) {
  cJSON *root = cJSON_CreateObject(), *meta = cJSON_CreateObject();
  int ok = root && meta && cJSON_AddItemToObject(root, "__metadata__", meta);
  if (!ok) cJSON_Delete(meta);
  ok = ok && cJSON_AddStringToObject(meta, "format", "pt") &&
       cJSON_AddStringToObject(meta, "flexlearn_model", model_name ? model_name : "");
  uint64_t pos = 0;
  for (int i = 0; ok && i < l->n; i++) {
    const fl_tensor *t = l->v[i].t;
    double dims[FL_MAX_DIMS];
    for (int d = 0; d < t->ndim; d++) dims[d] = (double)t->shape[d];
    uint64_t bytes = (uint64_t)fl_numel(t) * sizeof(float);
    double offs[2] = {(double)pos, (double)(pos + bytes)};
    pos += bytes;
    cJSON *e = cJSON_AddObjectToObject(root, l->v[i].name);
    cJSON *sh = cJSON_CreateDoubleArray(dims, t->ndim), *of = cJSON_CreateDoubleArray(offs, 2);
    ok = e && sh && of && cJSON_AddStringToObject(e, "dtype", "F32");
    if (ok && (ok = cJSON_AddItemToObject(e, "shape", sh))) sh = NULL;   /* now owned by e */
    if (ok && (ok = cJSON_AddItemToObject(e, "data_offsets", of))) of = NULL;
    cJSON_Delete(sh), cJSON_Delete(of);
  }
  char *s = ok ? cJSON_PrintUnformatted(root) : NULL;
  cJSON_Delete(root);
  return s;
}

fl_status fl_save_safetensors(fl_module *m, const char *path, const char *model_name) {
  FL_CHECK(m && path && *path, "fl_save_safetensors: needs a model and a path");
  struct stat sb;
  if (stat(path, &sb) == 0 && !S_ISREG(sb.st_mode))
    return fl_error(FL_ERR_IO, "%s: exists and is not a regular file; not replacing it", path);
  named_list l = {0};
  collect(m, "", &l);
  for (int i = 0; i < l.n; i++)
    FL_CHECK(l.v[i].t->dtype == FL_F32 && fl_is_contiguous(l.v[i].t),
             "fl_save_safetensors: parameter %s must be a contiguous f32 tensor", l.v[i].name);
  char *json = header_json(&l, model_name);
  size_t tmp_n = strlen(path) + 5, maxb = 1;
  for (int i = 0; i < l.n; i++)
    if ((size_t)fl_numel(l.v[i].t) * sizeof(float) > maxb) maxb = (size_t)fl_numel(l.v[i].t) * sizeof(float);
  char *tmp = fl_xmalloc(tmp_n);
  snprintf(tmp, tmp_n, "%s.tmp", path);
  void *buf = json ? malloc(maxb) : NULL;
  if (!buf) {
    cJSON_free(json), free(tmp), named_free(&l);
    return fl_error(FL_ERR_NOMEM, "%s: out of memory preparing the file", path);
  }
  fl_status st = FL_OK;
  const char *what = "create";
  unlink(tmp);   /* a leftover from a crash */
  int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
  int ok = fd >= 0;
  if (ok) {
    what = "write";
    size_t jl = strlen(json), hl = (jl + 7) & ~(size_t)7;
    uint8_t len[8];
    for (int i = 0; i < 8; i++) len[i] = (uint8_t)((uint64_t)hl >> (8 * i));
    static const char spaces[8] = "        ";
    ok = write_all(fd, len, 8) == 0 && write_all(fd, json, jl) == 0 && write_all(fd, spaces, hl - jl) == 0;
    for (int i = 0; ok && i < l.n; i++) {
      fl_tensor_to_host(l.v[i].t, buf);
      ok = write_all(fd, buf, (size_t)fl_numel(l.v[i].t) * sizeof(float)) == 0;
    }
    if (ok) what = "fsync", ok = fsync(fd) == 0;
    int e = errno;
    if (close(fd) != 0 && ok) what = "close", ok = 0, e = errno;
    errno = e;
  }
  if (ok) what = "rename", ok = rename(tmp, path) == 0;
  if (!ok) {
    int e = errno;
    if (fd >= 0) unlink(tmp);
    st = fl_error(FL_ERR_IO, "%s: cannot %s %s: %s (the previous file, if any, is unchanged)", path, what,
                  !strcmp(what, "rename") ? "it into place" : tmp, strerror(e));
  } else {
    /* make the rename itself durable: best effort */
    char *dir = fl_xmalloc(strlen(path) + 2);
    strcpy(dir, path);
    char *slash = strrchr(dir, '/');
    if (slash) slash[slash == dir] = 0; else strcpy(dir, ".");
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) fsync(dfd), close(dfd);
    free(dir);
  }
  free(buf), cJSON_free(json), free(tmp), named_free(&l);
  return st;
}

/* ---- reading ---- */
/* The file's bytes: mapped when it is a regular file, else read into *buf. */
static fl_status read_file(const char *path, const uint8_t **p, size_t *n, void **map, void **buf) {
  *p = NULL, *n = 0, *map = *buf = NULL;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fl_error(FL_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
  struct stat sb;
  if (fstat(fd, &sb) != 0) {
    int e = errno;
    close(fd);
    return fl_error(FL_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
  }
  if (S_ISDIR(sb.st_mode)) return close(fd), fl_error(FL_ERR_IO, "%s: is a directory", path);
  if (S_ISREG(sb.st_mode)) {
    if (sb.st_size == 0) return close(fd), FL_OK;
    void *mp = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (mp != MAP_FAILED) {
      close(fd);
      *map = mp, *p = mp, *n = (size_t)sb.st_size;
      return FL_OK;
    }
  }
  size_t cap = 1 << 16, k = 0;
  uint8_t *b = malloc(cap);
  for (;;) {
    if (b && k == cap) {
      uint8_t *nb = cap <= SIZE_MAX / 2 ? realloc(b, cap * 2) : NULL;
      if (!nb) free(b);
      b = nb, cap *= 2;
    }
    if (!b) { close(fd); return fl_error(FL_ERR_NOMEM, "%s: out of memory reading the file", path); }
    ssize_t r = read(fd, b + k, cap - k);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      int e = errno;
      free(b), close(fd);
      return fl_error(FL_ERR_IO, "%s: read error: %s", path, strerror(e));
    }
    if (r == 0) break;
    k += (size_t)r;
  }
  close(fd);
  *buf = b, *p = b, *n = k;
  return FL_OK;
}

fl_status fl_load_safetensors(fl_module *m, const char *path) {
  FL_CHECK(m && path, "fl_load_safetensors: needs a model and a path");
  named_list l = {0};
  collect(m, "", &l);
  fl__st_want *want = fl_xmalloc((size_t)(l.n ? l.n : 1) * sizeof *want);
  size_t *off = fl_xmalloc((size_t)(l.n ? l.n : 1) * sizeof *off);
  for (int i = 0; i < l.n; i++) {
    const fl_tensor *t = l.v[i].t;
    FL_CHECK(t->dtype == FL_F32 && fl_is_contiguous(t),
             "fl_load_safetensors: parameter %s must be a contiguous f32 tensor", l.v[i].name);
    want[i] = (fl__st_want){.name = l.v[i].name, .ndim = t->ndim};
    memcpy(want[i].shape, t->shape, sizeof t->shape);
  }
  const uint8_t *p;
  size_t n;
  void *map, *buf;
  fl_status st = read_file(path, &p, &n, &map, &buf);
  if (st == FL_OK) st = fl__safetensors_parse_mem(p, n, path, want, l.n, off);
  /* everything is checked: now copy (nothing below can fail short of a device fault, which aborts) */
  for (int i = 0; st == FL_OK && i < l.n; i++) {
    fl_tensor *t = l.v[i].t;
    if (t->device == FL_CPU) {
      memcpy(t->data, p + off[i], (size_t)fl_numel(t) * sizeof(float));
    } else {
      fl_tensor src = {.data = (void *)(p + off[i]), .dtype = FL_F32, .device = FL_CPU};
      fl__set_shape(&src, t->ndim, t->shape);
      fl_tensor_copy(t, &src);
    }
  }
  if (map) munmap(map, n);
  free(buf), free(want), free(off), named_free(&l);
  return st;
}
#endif
#endif /* FL_NO_CJSON */
