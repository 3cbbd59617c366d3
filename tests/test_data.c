/* Data layer: IDX parsing (raw and gzip) and its errors, datasets, Fashion-MNIST loading, the
 * DataLoader (batching, shuffling, workers == inline bit for bit, abandoned epochs), batches. */
#include <stdint.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include "backend/backend.h"
#include "data/idx_internal.h"
#include "fl/data.h"
#include "test.h"

/* ---- a temp dir with small files, removed at exit ---- */
static char tmpdir[64];
static char tmpfiles[64][256];
static int n_tmpfiles;

static const char *tpath(const char *name) {
  static char buf[8][300];
  static int k;
  char *p = buf[k++ % 8];
  snprintf(p, 300, "%s/%s", tmpdir, name);
  return p;
}

static void write_bytes(const char *name, const void *p, size_t n) {
  const char *path = tpath(name);
  FILE *f = fopen(path, "wb");
  if (!f) { perror(path); exit(2); }
  if (n && fwrite(p, 1, n, f) != n) { perror(path); exit(2); }
  fclose(f);
  for (int i = 0; i < n_tmpfiles; i++) if (!strcmp(tmpfiles[i], path)) return;
  snprintf(tmpfiles[n_tmpfiles++], 256, "%s", path);
}

static void remove_tmp(void) {
  for (int i = 0; i < n_tmpfiles; i++) unlink(tmpfiles[i]);
  n_tmpfiles = 0;
}

/* gzip of p[0..n) in memory (malloc'd), *out_n its size */
static uint8_t *gzip_mem(const void *p, size_t n, size_t *out_n) {
  z_stream zs;
  memset(&zs, 0, sizeof zs);
  if (deflateInit2(&zs, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK) exit(2);
  size_t cap = deflateBound(&zs, n) + 64;
  uint8_t *o = malloc(cap);
  zs.next_in = (Bytef *)p;
  zs.avail_in = (uInt)n;
  zs.next_out = o;
  zs.avail_out = (uInt)cap;
  if (deflate(&zs, Z_FINISH) != Z_STREAM_END) exit(2);
  *out_n = zs.total_out;
  deflateEnd(&zs);
  return o;
}

static void write_gz(const char *name, const void *p, size_t n) {
  size_t gn;
  uint8_t *g = gzip_mem(p, n, &gn);
  write_bytes(name, g, gn);
  free(g);
}

/* An IDX image: header for dims + payload of pixel(i) = (i * 37 + 11) % 256 (or given bytes).
 * *n gets its size. Caller frees. */
static uint8_t *make_idx(int type, int ndim, const uint32_t *dims, const uint8_t *payload,
                         size_t *n) {
  size_t pn = 1;
  for (int i = 0; i < ndim; i++) pn *= dims[i];
  size_t hn = 4 + 4 * (size_t)ndim;
  uint8_t *b = malloc(hn + pn);
  b[0] = 0; b[1] = 0; b[2] = (uint8_t)type; b[3] = (uint8_t)ndim;
  for (int i = 0; i < ndim; i++) {
    b[4 + 4 * i] = (uint8_t)(dims[i] >> 24);
    b[5 + 4 * i] = (uint8_t)(dims[i] >> 16);
    b[6 + 4 * i] = (uint8_t)(dims[i] >> 8);
    b[7 + 4 * i] = (uint8_t)dims[i];
  }
  for (size_t i = 0; i < pn; i++) b[hn + i] = payload ? payload[i] : (uint8_t)((i * 37 + 11) % 256);
  *n = hn + pn;
  return b;
}

/* The message names the file and contains `what`. */
static int msg_has(const char *path, const char *what) {
  const char *m = fl_last_error();
  int ok = strstr(m, path) != NULL && strstr(m, what) != NULL;
  if (!ok) fprintf(stderr, "  message was: %s\n", m);
  return ok;
}

/* Reads `name` expecting status st and a message naming the file and containing `what`. */
static void expect_bad(const char *name, fl_status st, const char *what) {
  fl_idx idx;
  const char *path = tpath(name);
  fl_status got = fl_idx_read(path, &idx);
  EXPECTF(got == st, "%s: status %d (%s), expected %d", name, got, fl_last_error(), st);
  EXPECTF(msg_has(path, what), "%s: message lacks '%s'", name, what);
  EXPECT(idx.data == NULL && idx.n == 0);
}

/* ---- IDX ---- */
static void test_idx_parse(void) {
  uint32_t d[3] = {5, 3, 4};
  size_t n;
  uint8_t *b = make_idx(8, 3, d, NULL, &n);
  write_bytes("ok-raw", b, n);
  write_gz("ok.gz", b, n);
  /* two concatenated gzip members read as one stream (as gunzip does) */
  size_t g1n, g2n;
  uint8_t *g1 = gzip_mem(b, 30, &g1n), *g2 = gzip_mem(b + 30, n - 30, &g2n);
  uint8_t *cat = malloc(g1n + g2n);
  memcpy(cat, g1, g1n);
  memcpy(cat + g1n, g2, g2n);
  write_bytes("ok-members.gz", cat, g1n + g2n);
  free(g1); free(g2); free(cat);
  const char *names[3] = {"ok-raw", "ok.gz", "ok-members.gz"};
  for (int k = 0; k < 3; k++) {
    fl_idx idx;
    fl_status st = fl_idx_read(tpath(names[k]), &idx);
    EXPECTF(st == FL_OK, "%s: %s", names[k], fl_last_error());
    if (st) continue;
    EXPECT(idx.ndim == 3 && idx.dims[0] == 5 && idx.dims[1] == 3 && idx.dims[2] == 4);
    EXPECT(idx.n == 60);
    EXPECT(memcmp(idx.data, b + 16, 60) == 0);
    fl_idx_free(&idx);
    EXPECT(idx.data == NULL);
  }
  fl_idx_free(NULL);
  free(b);
}

static void test_idx_errors(void) {
  uint32_t d[3] = {5, 3, 4};
  size_t n, gn;
  uint8_t *b = make_idx(8, 3, d, NULL, &n);     /* 16-byte header + 60 bytes */

  expect_bad("does-not-exist", FL_ERR_IO, "cannot open");
  if (mkdir(tpath("a-dir"), 0700) == 0) {
    expect_bad("a-dir", FL_ERR_IO, "directory");
    rmdir(tpath("a-dir"));
  }
  write_bytes("empty", b, 0);
  expect_bad("empty", FL_ERR_IO, "truncated header");
  write_bytes("hdr-short", b, 2);
  expect_bad("hdr-short", FL_ERR_IO, "truncated header");
  write_bytes("hdr-dims-short", b, 10);
  expect_bad("hdr-dims-short", FL_ERR_IO, "truncated header: expected 16 bytes for 3 dimensions");
  write_gz("hdr-dims-short.gz", b, 10);
  expect_bad("hdr-dims-short.gz", FL_ERR_IO, "truncated header");

  write_bytes("short-payload", b, n - 1);
  expect_bad("short-payload", FL_ERR_IO, "truncated: expected 60 bytes of data, got 59");
  write_gz("short-payload.gz", b, n - 7);
  expect_bad("short-payload.gz", FL_ERR_IO, "truncated: expected 60 bytes of data, got 53");

  uint8_t *t = malloc(n + 3);
  memcpy(t, b, n);
  memset(t + n, 0, 3);
  write_bytes("trailing", t, n + 3);
  expect_bad("trailing", FL_ERR_FORMAT, "3 unexpected trailing bytes");
  write_gz("trailing.gz", t, n + 3);
  expect_bad("trailing.gz", FL_ERR_FORMAT, "3 unexpected trailing bytes");
  free(t);

  /* gzip container problems: cut stream, garbage after it, corrupt data, bad CRC */
  uint8_t rnd[4000];
  for (size_t i = 0; i < sizeof rnd; i++) rnd[i] = (uint8_t)(fl_rng_hash(1, 2, i) & 0xff);
  uint32_t d1[1] = {sizeof rnd};
  size_t rn;
  uint8_t *r = make_idx(8, 1, d1, rnd, &rn);
  uint8_t *g = gzip_mem(r, rn, &gn);
  write_bytes("cut.gz", g, gn - 4);             /* trailer cut: the payload is all there */
  expect_bad("cut.gz", FL_ERR_IO, "gzip stream ends early");
  write_bytes("cut-mid.gz", g, gn / 2);
  expect_bad("cut-mid.gz", FL_ERR_IO, "truncated");
  uint8_t *gg = malloc(gn + 5);
  memcpy(gg, g, gn);
  memcpy(gg + gn, "junk!", 5);
  write_bytes("garbage-after.gz", gg, gn + 5);
  expect_bad("garbage-after.gz", FL_ERR_FORMAT, "5 bytes of trailing garbage after the gzip data");
  memcpy(gg, g, gn);
  gg[gn - 6] ^= 0x55;                           /* the CRC32 */
  write_bytes("bad-crc.gz", gg, gn);
  expect_bad("bad-crc.gz", FL_ERR_FORMAT, "corrupt gzip data");
  memcpy(gg, g, gn);
  for (size_t i = 20; i < 60; i++) gg[i] = 0xff;   /* the deflate stream */
  write_bytes("corrupt.gz", gg, gn);
  expect_bad("corrupt.gz", FL_ERR_FORMAT, "corrupt gzip data");
  free(gg); free(g); free(r);

  /* header contents */
  uint8_t *h = malloc(n);
  memcpy(h, b, n); h[0] = 1;
  write_bytes("bad-magic", h, n);
  expect_bad("bad-magic", FL_ERR_FORMAT, "not an IDX file");
  memcpy(h, b, n); h[2] = 0x0d;
  write_bytes("bad-type", h, n);
  expect_bad("bad-type", FL_ERR_FORMAT, "element type 0x0d");
  write_gz("bad-type.gz", h, n);
  expect_bad("bad-type.gz", FL_ERR_FORMAT, "element type 0x0d");
  memcpy(h, b, n); h[3] = 0;
  write_bytes("ndim0", h, n);
  expect_bad("ndim0", FL_ERR_FORMAT, "has 0 dimensions");
  memcpy(h, b, n); h[3] = 5;
  write_bytes("ndim5", h, n);
  expect_bad("ndim5", FL_ERR_FORMAT, "has 5 dimensions");
  memcpy(h, b, n); memset(h + 8, 0, 4);
  write_bytes("zero-dim", h, n);
  expect_bad("zero-dim", FL_ERR_FORMAT, "dimension 1 of 3 is 0");
  uint8_t ov[20] = {0, 0, 8, 4};
  memset(ov + 4, 0xff, 16);
  write_bytes("overflow", ov, sizeof ov);
  expect_bad("overflow", FL_ERR_FORMAT, "overflow");
  free(h);
  free(b);
}

/* ---- headers that claim more than the file holds: rejected before allocating ---- */
/* The sanitizers' malloc hook (present under SAN=1, weak otherwise): sees every allocation. */
extern int __sanitizer_install_malloc_and_free_hooks(
    void (*malloc_hook)(const volatile void *, size_t),
    void (*free_hook)(const volatile void *)) __attribute__((weak));
static volatile size_t alloc_peak;   /* the largest allocation while alloc_track is set */
static volatile int alloc_track;
static void on_malloc(const volatile void *p, size_t n) {
  (void)p;
  if (alloc_track && n > alloc_peak) alloc_peak = n;
}
static void on_free(const volatile void *p) { (void)p; }

/* expect_bad, and reading the file allocated nothing big (<= 1 MiB at once). Under ASan the
 * malloc hook measures it; otherwise the read runs in a forked child whose address space is
 * capped 256 MiB above what it has mapped (RLIMIT_AS), where a multi-GB allocation fails and
 * would show as FL_ERR_NOMEM instead of the expected status. */
static void expect_bad_small(const char *name, fl_status st, const char *what) {
  static int hooked = -1;
  if (hooked < 0)
    hooked = __sanitizer_install_malloc_and_free_hooks &&
             __sanitizer_install_malloc_and_free_hooks(on_malloc, on_free) != 0;
  if (hooked) {
    alloc_peak = 0;
    alloc_track = 1;
    expect_bad(name, st, what);
    alloc_track = 0;
    EXPECTF(alloc_peak <= (1 << 20), "%s: the reader allocated %zu bytes at once", name,
            (size_t)alloc_peak);
    return;
  }
  fflush(NULL);
  pid_t pid = fork();
  if (pid == 0) {
    long pages = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f || fscanf(f, "%ld", &pages) != 1) _exit(3);
    fclose(f);
    rlim_t cap = (rlim_t)pages * (rlim_t)sysconf(_SC_PAGESIZE) + ((rlim_t)256 << 20);
    struct rlimit rl = {cap, cap};
    if (setrlimit(RLIMIT_AS, &rl) != 0) _exit(3);
    fl_idx idx;
    const char *path = tpath(name);
    fl_status got = fl_idx_read(path, &idx);
    int ok = got == st && strstr(fl_last_error(), path) && strstr(fl_last_error(), what);
    if (!ok) fprintf(stderr, "  %s: status %d, message: %s\n", name, got, fl_last_error());
    _exit(ok ? 0 : 1);
  }
  int ws = 0;
  EXPECT(pid > 0 && waitpid(pid, &ws, 0) == pid);
  EXPECTF(WIFEXITED(ws) && WEXITSTATUS(ws) == 0, "%s: wrong status or message under a 256 MiB "
          "address-space cap (exit %d)", name, WIFEXITED(ws) ? WEXITSTATUS(ws) : -1);
}

static void test_idx_lying_header(void) {
  char what[256];
  /* The file: 30 bytes of gzip whose header claims 60218219 x 339808 x 134831 =
   * 2,758,997,210,960,550,112 bytes (the gzip of the 16-byte header, cut after 30 bytes: the
   * header still inflates). 30 bytes inflate to at most 30 * 1032 = 30960 bytes. */
  uint32_t dl[3] = {60218219, 339808, 134831};
  uint8_t h[16];
  size_t hn, gn;
  uint8_t *hb = make_idx(8, 3, (uint32_t[3]){1, 1, 1}, NULL, &hn);
  memcpy(h, hb, 4);
  free(hb);
  for (int i = 0; i < 3; i++)
    for (int k = 0; k < 4; k++) h[4 + 4 * i + k] = (uint8_t)(dl[i] >> (24 - 8 * k));
  uint8_t *g = gzip_mem(h, sizeof h, &gn);
  EXPECT(gn > 30);
  write_bytes("lie-2.7e18.gz", g, 30);
  free(g);
  expect_bad_small("lie-2.7e18.gz", FL_ERR_FORMAT,
                   "the IDX header claims 2758997210960550112 bytes of data (60218219 x 339808 x "
                   "134831) but the 30-byte gzip file can hold at most 30944 (deflate expands at "
                   "most 1032:1)");

  /* A few GB claimed by a small file: 60000 x 280 x 280 = 4,704,000,000 bytes, 100 present. */
  uint32_t dg[3] = {60000, 280, 280}, ds[3] = {1, 10, 10};
  uint8_t *b = make_idx(8, 3, ds, NULL, &hn);   /* 16 + 100 bytes, then the header lies */
  for (int i = 0; i < 3; i++)
    for (int k = 0; k < 4; k++) b[4 + 4 * i + k] = (uint8_t)(dg[i] >> (24 - 8 * k));
  write_bytes("lie-4gb-raw", b, hn);           /* raw: short of the claim = truncated */
  expect_bad_small("lie-4gb-raw", FL_ERR_IO,
                   "truncated: expected 4704000000 bytes of data, got 100 (the header claims "
                   "60000 x 280 x 280)");
  g = gzip_mem(b, hn, &gn);                     /* a complete, valid gzip stream */
  write_bytes("lie-4gb.gz", g, gn);
  snprintf(what, sizeof what, "the IDX header claims 4704000000 bytes of data (60000 x 280 x 280) "
           "but the %zu-byte gzip file can hold at most %zu", gn, gn * 1032 - 16);
  expect_bad_small("lie-4gb.gz", FL_ERR_FORMAT, what);
  /* the same lie spread over concatenated members: the bound counts every byte */
  uint8_t *cat = malloc(3 * gn);
  for (int k = 0; k < 3; k++) memcpy(cat + k * gn, g, gn);
  write_bytes("lie-4gb-members.gz", cat, 3 * gn);
  snprintf(what, sizeof what, "the %zu-byte gzip file can hold at most %zu", 3 * gn,
           3 * gn * 1032 - 16);
  expect_bad_small("lie-4gb-members.gz", FL_ERR_FORMAT, what);
  free(cat);
  free(g);
  free(b);

  /* A claim the file could hold but does not: still truncated (FL_ERR_IO), as before. */
  uint32_t d1[1] = {20000};
  uint8_t *z = make_idx(8, 1, (uint32_t[1]){10000}, NULL, &hn);
  for (int k = 0; k < 4; k++) z[4 + k] = (uint8_t)(d1[0] >> (24 - 8 * k));
  for (size_t i = 0; i < 10000; i++) z[8 + i] = (uint8_t)(fl_rng_hash(3, 4, i) & 0xff);
  write_gz("short-random.gz", z, hn);
  expect_bad_small("short-random.gz", FL_ERR_IO, "truncated: expected 20000 bytes of data, got "
                   "10000");
  free(z);

  /* The bound is not tighter than deflate: 1 MB of zeros (~1000:1) reads fine. */
  uint32_t dz[1] = {1000000};
  z = make_idx(8, 1, dz, NULL, &hn);
  memset(z + 8, 0, 1000000);
  g = gzip_mem(z, hn, &gn);
  EXPECTF(gn * 1032 >= hn && gn * 900 < hn, "1 MB of zeros compressed to %zu bytes", gn);
  write_bytes("zeros.gz", g, gn);
  fl_idx idx;
  fl_status st = fl_idx_read(tpath("zeros.gz"), &idx);
  EXPECTF(st == FL_OK && idx.n == 1000000 && idx.data[999999] == 0, "%s", fl_last_error());
  fl_idx_free(&idx);
  free(g);
  free(z);

  /* dims products that overflow 2^63 (size_t, or only int64_t), raw and gzip, named */
  uint8_t ov[20] = {0, 0, 8, 4};
  memset(ov + 4, 0xff, 16);
  write_bytes("overflow-4", ov, sizeof ov);
  expect_bad_small("overflow-4", FL_ERR_FORMAT, "IDX dimensions 4294967295 x 4294967295 x "
                   "4294967295 x 4294967295 overflow: the payload would be over 2^63 bytes");
  write_gz("overflow-4.gz", ov, sizeof ov);
  expect_bad_small("overflow-4.gz", FL_ERR_FORMAT, "IDX dimensions 4294967295 x 4294967295 x "
                   "4294967295 x 4294967295 overflow");
  uint8_t ov2[12] = {0, 0, 8, 2, 0xff, 0xff, 0xff, 0xff, 0x80, 0, 0, 1};  /* ~2^63.0000, < 2^64 */
  write_bytes("overflow-int64", ov2, sizeof ov2);
  expect_bad_small("overflow-int64", FL_ERR_FORMAT, "IDX dimensions 4294967295 x 2147483649 "
                   "overflow");
}

/* The in-memory entry (fl_idx_read and the fuzz harnesses use it) reads bytes as the file. */
static void test_idx_parse_mem(void) {
  uint32_t d[2] = {7, 9};
  size_t n, gn;
  uint8_t *b = make_idx(8, 2, d, NULL, &n);
  uint8_t *g = gzip_mem(b, n, &gn);
  fl_idx a, z;
  EXPECT(fl__idx_parse_mem(b, n, "mem-raw", &a) == FL_OK);
  EXPECT(fl__idx_parse_mem(g, gn, "mem-gz", &z) == FL_OK);
  EXPECT(a.n == 63 && z.n == 63 && a.ndim == 2 && z.dims[1] == 9);
  EXPECT(a.data && z.data && memcmp(a.data, b + 12, 63) == 0 && memcmp(z.data, b + 12, 63) == 0);
  fl_idx_free(&a);
  fl_idx_free(&z);
  EXPECT(fl__idx_parse_mem(NULL, 0, "mem-empty", &a) == FL_ERR_IO);
  EXPECT(msg_has("mem-empty", "truncated header") && a.data == NULL);
  EXPECT(fl__idx_parse_mem(g, gn - 1, "mem-cut", &a) == FL_ERR_IO && msg_has("mem-cut", "ends early"));
  free(g);
  free(b);
}

/* ---- datasets ---- */
static void write_pair(const char *im, const char *lb, int n, int c, int hh, int ww, int gz) {
  uint32_t d4[4] = {(uint32_t)n, (uint32_t)c, (uint32_t)hh, (uint32_t)ww};
  uint32_t d3[3] = {(uint32_t)n, (uint32_t)hh, (uint32_t)ww};
  uint32_t d1[1] = {(uint32_t)n};
  size_t in, ln;
  uint8_t *ib = c == 1 ? make_idx(8, 3, d3, NULL, &in) : make_idx(8, 4, d4, NULL, &in);
  uint8_t *labels = malloc((size_t)n);
  for (int i = 0; i < n; i++) labels[i] = (uint8_t)((i * 7) % 10);
  uint8_t *lbb = make_idx(8, 1, d1, labels, &ln);
  if (gz) { write_gz(im, ib, in); write_gz(lb, lbb, ln); }
  else { write_bytes(im, ib, in); write_bytes(lb, lbb, ln); }
  free(ib); free(lbb); free(labels);
}

static void test_dataset_from_idx(void) {
  fl_dataset *ds = NULL;
  write_pair("im3", "lb3", 20, 1, 4, 5, 0);
  fl_status st = fl_dataset_from_idx(tpath("im3"), tpath("lb3"), &ds);
  EXPECTF(st == FL_OK, "%s", fl_last_error());
  if (ds) {
    EXPECT(ds->n == 20 && ds->c == 1 && ds->h == 4 && ds->w == 5);
    EXPECT(ds->device == FL_CPU && ds->dev_x == NULL);
    EXPECT(ds->n_classes == 10);
    EXPECT(ds->y[3] == 1 && ds->y[19] == (19 * 7) % 10);
    EXPECT(ds->x[0] == 11 && ds->x[21] == (uint8_t)((21 * 37 + 11) % 256));
    EXPECT(fl_dataset_to(ds, FL_CPU) == FL_OK && ds->dev_x == NULL);
    if (!fl_cuda_available()) {   /* no GPU: a status, the dataset untouched */
      EXPECT(fl_dataset_to(ds, FL_CUDA) == FL_ERR_DEVICE && ds->device == FL_CPU);
      EXPECT(strstr(fl_last_error(), "CUDA") != NULL);
    }
  }
  fl_dataset_free(ds);
  fl_dataset_free(NULL);

  write_pair("im4.gz", "lb4.gz", 6, 3, 2, 2, 1);
  st = fl_dataset_from_idx(tpath("im4.gz"), tpath("lb4.gz"), &ds);
  EXPECTF(st == FL_OK, "%s", fl_last_error());
  if (ds) EXPECT(ds->n == 6 && ds->c == 3 && ds->h == 2 && ds->w == 2);
  fl_dataset_free(ds);

  /* count mismatch names both files and both counts */
  write_pair("im-other", "lb-other", 21, 1, 4, 5, 0);
  st = fl_dataset_from_idx(tpath("im3"), tpath("lb-other"), &ds);
  EXPECT(st == FL_ERR_FORMAT && ds == NULL);
  EXPECT(msg_has(tpath("im3"), "has 20 images"));
  EXPECT(msg_has(tpath("lb-other"), "has 21 labels"));
  /* labels that are not 1-D, images that are 1-D */
  st = fl_dataset_from_idx(tpath("im3"), tpath("im3"), &ds);
  EXPECT(st == FL_ERR_FORMAT && msg_has(tpath("im3"), "labels must have 1 dimension"));
  st = fl_dataset_from_idx(tpath("lb3"), tpath("lb3"), &ds);
  EXPECT(st == FL_ERR_FORMAT && msg_has(tpath("lb3"), "images must have 3"));
  /* a missing labels file */
  st = fl_dataset_from_idx(tpath("im3"), tpath("no-labels"), &ds);
  EXPECT(st == FL_ERR_IO && msg_has(tpath("no-labels"), "cannot open") && ds == NULL);
}

static void test_fashion_mnist_dir(void) {
  /* a miniature Fashion-MNIST: a mix of raw and .gz files */
  write_pair("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte", 30, 1, 3, 3, 1);
  write_pair("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte.gz", 8, 1, 3, 3, 0);
  write_pair("x-im", "t10k-labels-idx1-ubyte.gz", 8, 1, 3, 3, 1);
  fl_dataset *tr = NULL, *va = NULL;
  fl_status st = fl_fashion_mnist(tmpdir, &tr, &va);
  EXPECTF(st == FL_OK, "%s", fl_last_error());
  if (!st) {
    EXPECT(tr->n == 30 && va->n == 8 && tr->h == 3 && va->w == 3);
    EXPECT(tr->y[1] == 7 && va->y[2] == 4);
  }
  fl_dataset_free(tr);
  fl_dataset_free(va);

  /* a bad file is reported (from the worker thread, too) */
  write_bytes("train-images-idx3-ubyte.gz", "\x1f\x8b", 2);
  st = fl_fashion_mnist(tmpdir, &tr, &va);
  EXPECT(st == FL_ERR_IO && tr == NULL && va == NULL);
  EXPECT(msg_has(tpath("train-images-idx3-ubyte.gz"), "truncated"));
  unlink(tpath("train-images-idx3-ubyte.gz"));
  st = fl_fashion_mnist(tmpdir, &tr, &va);
  EXPECT(st == FL_ERR_IO && msg_has(tpath("train-images-idx3-ubyte"), "not found"));
  st = fl_fashion_mnist("/nonexistent/fl-data", &tr, &va);
  EXPECT(st == FL_ERR_IO && msg_has("/nonexistent/fl-data", "No such file"));

  /* the default directory */
  const char *old = getenv("FLEXLEARN_DATA");
  char *saved = old ? strdup(old) : NULL;
  setenv("FLEXLEARN_DATA", "/some/where", 1);
  EXPECT(strcmp(fl_default_data_dir(), "/some/where") == 0);
  unsetenv("FLEXLEARN_DATA");
  EXPECT(strcmp(fl_default_data_dir(), "/usr/share/datasets/fashion-mnist") == 0);
  if (saved) { setenv("FLEXLEARN_DATA", saved, 1); free(saved); }
}

/* ---- DataLoader ---- */
/* n rows of c*h*w pixels, pixel j of row i = (i * 31 + j * 7) % 256, label y[i] = i (the row's
 * identity). Free with fl_dataset_free. */
static fl_dataset *make_ds(int64_t n, int c, int h, int w) {
  fl_dataset *ds = calloc(1, sizeof *ds);
  int row = c * h * w;
  ds->x = malloc((size_t)(n * row) + 1);
  ds->y = malloc((size_t)n * sizeof(int32_t) + 1);
  for (int64_t i = 0; i < n; i++) {
    for (int j = 0; j < row; j++) ds->x[i * row + j] = (uint8_t)((i * 31 + j * 7) % 256);
    ds->y[i] = (int32_t)i;
  }
  ds->n = n; ds->c = c; ds->h = h; ds->w = w;
  ds->n_classes = (int)n;
  ds->device = FL_CPU;
  return ds;
}

/* Every pixel value 0..255 through the loader's fast conversion (vector lanes and the scalar
 * tail, inline and in a worker) equals (float)v / 255.0f bit for bit. */
static void test_all_pixel_values(void) {
  fl_dataset *ds = make_ds(2, 1, 17, 17);   /* 289 pixels a row: 18 vectors of 16 and a tail */
  for (int64_t i = 0; i < 2 * 289; i++) ds->x[i] = (uint8_t)((i * 7 + i / 289) % 256);
  for (int workers = 0; workers <= 1; workers++) {
    fl_dataloader_cfg cfg = {2, 0, 1, workers, 1};
    fl_dataloader *dl = fl_dataloader_new(ds, &cfg);
    fl_dataloader_begin(dl);
    fl_batch b;
    EXPECT(fl_dataloader_next(dl, &b) == 1);
    const float *x = b.t[0]->data;
    int bad = 0, seen[256] = {0};
    for (int i = 0; i < 2 * 289; i++) {
      volatile float want = (float)ds->x[i] / 255.0f;
      bad += memcmp(&x[i], (const void *)&want, sizeof want) != 0;
      seen[ds->x[i]] = 1;
    }
    int all = 0;
    for (int v = 0; v < 256; v++) all += seen[v];
    EXPECT(all == 256);
    EXPECTF(bad == 0, "%d pixels differ from v / 255.0f (workers %d)", bad, workers);
    fl_dataloader_free(dl);
  }
  fl_dataset_free(ds);
}

static void test_loader_args(void) {
  fl_dataset *ds = make_ds(10, 1, 2, 2);
  fl_dataloader_cfg cfg = {.bs = 0};
  EXPECT(fl_dataloader_new(ds, &cfg) == NULL && strstr(fl_last_error(), "bs") != NULL);
  cfg.bs = -5;
  EXPECT(fl_dataloader_new(ds, &cfg) == NULL && strstr(fl_last_error(), "bs") != NULL);
  cfg.bs = 4;
  cfg.n_workers = -1;
  EXPECT(fl_dataloader_new(ds, &cfg) == NULL && strstr(fl_last_error(), "n_workers") != NULL);
  fl_dataloaders dls = {0};
  EXPECT(fl_get_dls(&dls, ds, ds, 0, 1, 0, 1) == FL_ERR_ARG && !dls.train && !dls.valid);
  EXPECT(fl_get_dls(&dls, ds, ds, 4, 1, -2, 1) == FL_ERR_ARG && !dls.train && !dls.valid);
  fl_dataloaders_free(&dls);
  fl_dataloaders_free(NULL);
  fl_dataloader_free(NULL);
  fl_dataset_free(ds);
}

/* Checks batch b holds rows ids[0..B) of ds, converted exactly. */
static int batch_matches(const fl_dataset *ds, const fl_batch *b, const int32_t *ids, int64_t B,
                         int flat) {
  int row = ds->c * ds->h * ds->w;
  const fl_tensor *x = b->t[0], *y = b->t[1];
  if (b->n != 2 || b->n_inp != 1 || x->dtype != FL_F32 || y->dtype != FL_I32) return 0;
  if (x->shape[0] != B || y->shape[0] != B || y->ndim != 1 || fl_batch_size(b) != B) return 0;
  if (flat ? (x->ndim != 2 || x->shape[1] != row)
           : (x->ndim != 4 || x->shape[1] != ds->c || x->shape[2] != ds->h || x->shape[3] != ds->w))
    return 0;
  const float *xf = x->data;
  const int32_t *yi = y->data;
  for (int64_t i = 0; i < B; i++) {
    if (yi[i] != ds->y[ids[i]]) return 0;
    for (int j = 0; j < row; j++) {
      volatile float q = (float)ds->x[(int64_t)ids[i] * row + j] / 255.0f;
      if (memcmp(&xf[i * row + j], (const void *)&q, 4) != 0) return 0;
    }
  }
  return 1;
}

static void test_loader_unshuffled(void) {
  fl_dataset *ds = make_ds(10, 1, 3, 2);
  for (int flat = 0; flat < 2; flat++)
    for (int nw = 0; nw < 3; nw += 2) {
      fl_dataloader_cfg cfg = {.bs = 4, .shuffle = 0, .seed = 5, .n_workers = nw, .flat = flat};
      fl_dataloader *dl = fl_dataloader_new(ds, &cfg);
      EXPECT(dl != NULL);
      if (!dl) continue;
      EXPECT(fl_dataloader_len(dl) == 3 && fl_dataloader_bs(dl) == 4);
      EXPECT(fl_dataloader_dataset(dl) == ds);
      for (int ep = 0; ep < 2; ep++) {
        fl_dataloader_begin(dl);
        fl_batch b;
        int64_t k = 0, nb = 0;
        const int64_t sizes[3] = {4, 4, 2};
        while (fl_dataloader_next(dl, &b)) {
          int32_t ids[4];
          for (int i = 0; i < 4; i++) ids[i] = (int32_t)(k + i);
          EXPECTF(nb < 3 && fl_batch_size(&b) == sizes[nb], "batch %lld", (long long)nb);
          if (nb < 3) EXPECTF(batch_matches(ds, &b, ids, sizes[nb], flat),
                              "flat %d workers %d batch %lld", flat, nw, (long long)nb);
          k += fl_batch_size(&b);
          nb++;
        }
        EXPECT(nb == 3 && k == 10);
        EXPECT(fl_dataloader_next(dl, &b) == 0);   /* stays at the end */
      }
      fl_dataloader_free(dl);
    }
  fl_dataset_free(ds);
}

/* Runs one epoch, writing the labels (= row ids) into order[0..n). Returns batches seen. */
static int64_t epoch_order(fl_dataloader *dl, int32_t *order) {
  fl_batch b;
  int64_t k = 0, nb = 0;
  fl_dataloader_begin(dl);
  while (fl_dataloader_next(dl, &b)) {
    memcpy(order + k, b.t[1]->data, (size_t)fl_batch_size(&b) * sizeof(int32_t));
    k += fl_batch_size(&b);
    nb++;
  }
  return nb;
}

static void test_loader_shuffle(void) {
  const int64_t n = 1000;
  fl_dataset *ds = make_ds(n, 1, 1, 3);
  fl_dataloader_cfg cfg = {.bs = 64, .shuffle = 1, .seed = 42, .n_workers = 0, .flat = 1};
  fl_dataloader *a = fl_dataloader_new(ds, &cfg), *b = fl_dataloader_new(ds, &cfg);
  cfg.seed = 43;
  fl_dataloader *c = fl_dataloader_new(ds, &cfg);
  int32_t *o[3][2], *seen = calloc((size_t)n, sizeof(int32_t));
  for (int e = 0; e < 2; e++)
    for (int l = 0; l < 3; l++) o[l][e] = malloc((size_t)n * sizeof(int32_t));
  for (int e = 0; e < 2; e++) {
    EXPECT(epoch_order(a, o[0][e]) == 16);
    epoch_order(b, o[1][e]);
    epoch_order(c, o[2][e]);
    memset(seen, 0, (size_t)n * sizeof(int32_t));
    int ok = 1;
    for (int64_t i = 0; i < n; i++) {
      if (o[0][e][i] < 0 || o[0][e][i] >= n) ok = 0;
      else seen[o[0][e][i]]++;
    }
    for (int64_t i = 0; i < n; i++) ok &= seen[i] == 1;
    EXPECTF(ok, "epoch %d is not a permutation", e);
    EXPECT(memcmp(o[0][e], o[1][e], (size_t)n * 4) == 0);  /* same seed, same order */
    EXPECT(memcmp(o[0][e], o[2][e], (size_t)n * 4) != 0);  /* other seed, other order */
  }
  EXPECT(memcmp(o[0][0], o[0][1], (size_t)n * 4) != 0);    /* reshuffled each epoch */
  /* the documented scheme: Fisher-Yates from (seed, FL_STREAM_SHUFFLE, counter = k << 40) */
  for (int e = 0; e < 2; e++) {
    int32_t *p = malloc((size_t)n * sizeof(int32_t));
    for (int64_t i = 0; i < n; i++) p[i] = (int32_t)i;
    fl_rng r = fl_rng_make(42, FL_STREAM_SHUFFLE);
    r.counter = (uint64_t)e << 40;
    for (int64_t i = n - 1; i > 0; i--) {
      int64_t j = (int64_t)fl_rng_below(&r, (uint64_t)i + 1);
      int32_t t = p[i]; p[i] = p[j]; p[j] = t;
    }
    EXPECTF(memcmp(p, o[0][e], (size_t)n * 4) == 0, "epoch %d: not the documented permutation", e);
    free(p);
  }
  for (int e = 0; e < 2; e++)
    for (int l = 0; l < 3; l++) free(o[l][e]);
  free(seen);
  fl_dataloader_free(a); fl_dataloader_free(b); fl_dataloader_free(c);
  fl_dataset_free(ds);
}

/* Every batch of `epochs` epochs, concatenated (x bits then y), for comparisons. */
typedef struct run_log { float *x; int32_t *y; int64_t nx, ny, nbatch; } run_log;

static run_log log_run(const fl_dataset *ds, int bs, int nw, int flat, int epochs) {
  fl_dataloader_cfg cfg = {.bs = bs, .shuffle = 1, .seed = 7, .n_workers = nw, .flat = flat};
  fl_dataloader *dl = fl_dataloader_new(ds, &cfg);
  int row = ds->c * ds->h * ds->w;
  run_log L = {malloc((size_t)(ds->n * row * epochs) * 4), malloc((size_t)(ds->n * epochs) * 4),
               0, 0, 0};
  for (int e = 0; e < epochs && dl; e++) {
    fl_batch b;
    fl_dataloader_begin(dl);
    while (fl_dataloader_next(dl, &b)) {
      int64_t B = fl_batch_size(&b);
      memcpy(L.x + L.nx, b.t[0]->data, (size_t)(B * row) * 4);
      memcpy(L.y + L.ny, b.t[1]->data, (size_t)B * 4);
      L.nx += B * row;
      L.ny += B;
      L.nbatch++;
    }
  }
  fl_dataloader_free(dl);
  return L;
}

static void test_workers_identical(void) {
  fl_dataset *ds = make_ds(1037, 1, 5, 7);
  run_log ref = log_run(ds, 100, 0, 1, 2);
  EXPECT(ref.nbatch == 22 && ref.ny == 2 * 1037);
  /* rows are right: labels are row ids, pixels the exact quotients */
  int ok = 1;
  for (int64_t i = 0; i < ref.ny; i++)
    for (int j = 0; j < 35; j++) {
      volatile float q = (float)ds->x[(int64_t)ref.y[i] * 35 + j] / 255.0f;
      ok &= memcmp(&ref.x[i * 35 + j], (const void *)&q, 4) == 0;
    }
  EXPECT(ok);
  for (int nw = 1; nw <= 3; nw++)
    for (int flat = 0; flat < 2; flat++) {
      run_log L = log_run(ds, 100, nw, flat, 2);
      EXPECTF(L.nbatch == ref.nbatch && L.nx == ref.nx &&
                  memcmp(L.x, ref.x, (size_t)ref.nx * 4) == 0 &&
                  memcmp(L.y, ref.y, (size_t)ref.ny * 4) == 0,
              "workers %d flat %d differ from inline", nw, flat);
      free(L.x); free(L.y);
    }
  /* the CPU backend's gather (the device path's kernel) gives the same bits */
  int32_t idx[100];
  memcpy(idx, ref.y, sizeof idx);
  float *out = malloc(100 * 35 * 4);
  int32_t yo[100];
  fl_backend_cpu.gather_xy(out, yo, ds->x, ds->y, idx, 100, 35, 255.0f);
  EXPECT(memcmp(out, ref.x, 100 * 35 * 4) == 0 && memcmp(yo, ref.y, sizeof yo) == 0);
  free(out);
  free(ref.x); free(ref.y);
  fl_dataset_free(ds);
}

static void test_loader_abandon(void) {
  const int64_t n = 500;
  fl_dataset *ds = make_ds(n, 1, 4, 4);
  int32_t *ref1 = malloc((size_t)n * 4), *got = malloc((size_t)n * 4);
  fl_dataloader_cfg cfg = {.bs = 32, .shuffle = 1, .seed = 3, .n_workers = 0, .flat = 1};
  fl_dataloader *ref = fl_dataloader_new(ds, &cfg);
  epoch_order(ref, ref1);
  epoch_order(ref, ref1);        /* the second epoch's order */
  for (int nw = 0; nw <= 2; nw++) {
    cfg.n_workers = nw;
    fl_dataloader *dl = fl_dataloader_new(ds, &cfg);
    fl_batch b;
    fl_dataloader_begin(dl);     /* epoch 0: abandoned after 2 batches */
    EXPECT(fl_dataloader_next(dl, &b) && fl_dataloader_next(dl, &b));
    EXPECT(epoch_order(dl, got) == 16);   /* epoch 1, complete */
    EXPECTF(memcmp(got, ref1, (size_t)n * 4) == 0, "workers %d", nw);
    fl_dataloader_begin(dl);     /* begin twice in a row, then free mid-epoch */
    fl_dataloader_begin(dl);
    EXPECT(fl_dataloader_next(dl, &b));
    fl_dataloader_free(dl);
  }
  /* a loader freed without ever starting (workers idle) */
  cfg.n_workers = 2;
  fl_dataloader_free(fl_dataloader_new(ds, &cfg));
  fl_dataloader_free(ref);
  free(ref1); free(got);
  fl_dataset_free(ds);
}

static void test_batch_to(void) {
  fl_dataset *ds = make_ds(10, 1, 2, 2);
  fl_dataloader_cfg cfg = {.bs = 4, .flat = 1};
  fl_dataloader *dl = fl_dataloader_new(ds, &cfg);
  fl_batch b, cache;
  memset(&cache, 0, sizeof cache);
  fl_dataloader_begin(dl);
  EXPECT(fl_dataloader_next(dl, &b));
  fl_tensor *x = b.t[0], *y = b.t[1];
  EXPECT(fl_batch_to(&b, FL_CPU, &cache) == FL_OK);
  EXPECT(b.t[0] == x && b.t[1] == y && cache.t[0] == NULL && cache.t[1] == NULL);
  if (fl_cuda_available()) {
    /* host batches copied to the GPU; the cache grows only for a bigger batch */
    EXPECT(fl_batch_to(&b, FL_CUDA, &cache) == FL_OK);
    EXPECT(b.t[0] == cache.t[0] && b.t[0]->device == FL_CUDA && b.t[0]->shape[0] == 4);
    fl_tensor *c0 = cache.t[0];
    EXPECT(fl_dataloader_next(dl, &b) && fl_dataloader_next(dl, &b) && fl_batch_size(&b) == 2);
    EXPECT(fl_batch_to(&b, FL_CUDA, &cache) == FL_OK);
    EXPECT(cache.t[0] == c0 && fl_batch_size(&b) == 2 && cache.cap[0] == 16);
    float h[8];
    fl_tensor_to_host(b.t[0], h);
    EXPECT(h[0] == (float)ds->x[32] / 255.0f);
  }
  fl_batch_cache_free(&cache);
  fl_batch_cache_free(NULL);
  fl_dataloader_free(dl);
  fl_dataset_free(ds);
}

/* With a GPU: the dataset uploaded once, batches gathered there equal the host ones. */
static void test_device_loader(void) {
  if (!fl_cuda_available()) SKIP("no CUDA device");
  fl_dataset *ds = make_ds(1037, 1, 5, 7);
  run_log ref = log_run(ds, 100, 0, 1, 2);
  EXPECT(fl_dataset_to(ds, FL_CUDA) == FL_OK && ds->dev_x != NULL);
  fl_dataloader_cfg cfg = {.bs = 100, .shuffle = 1, .seed = 7, .n_workers = 2, .flat = 1};
  fl_dataloader *dl = fl_dataloader_new(ds, &cfg);
  float *hx = malloc(100 * 35 * 4);
  int32_t hy[100];
  int64_t ox = 0, oy = 0;
  int ok = 1;
  for (int e = 0; e < 2; e++) {
    fl_batch b;
    fl_dataloader_begin(dl);
    while (fl_dataloader_next(dl, &b)) {
      int64_t B = fl_batch_size(&b);
      ok &= b.t[0]->device == FL_CUDA;
      fl_tensor_to_host(b.t[0], hx);
      fl_tensor_to_host(b.t[1], hy);
      ok &= memcmp(hx, ref.x + ox, (size_t)(B * 35) * 4) == 0;
      ok &= memcmp(hy, ref.y + oy, (size_t)B * 4) == 0;
      ox += B * 35;
      oy += B;
    }
  }
  EXPECT(ok && oy == ref.ny);
  free(hx);
  fl_dataloader_free(dl);
  EXPECT(fl_dataset_to(ds, FL_CPU) == FL_OK && ds->dev_x == NULL);
  free(ref.x); free(ref.y);
  fl_dataset_free(ds);
}

static void test_get_dls(void) {
  fl_dataset *tr = make_ds(100, 1, 2, 2), *va = make_ds(30, 1, 2, 2);
  fl_dataloaders dls;
  EXPECT(fl_get_dls(&dls, tr, va, 16, 1, 1, 1) == FL_OK);
  EXPECT(fl_dataloader_len(dls.train) == 7 && fl_dataloader_bs(dls.train) == 16);
  EXPECT(fl_dataloader_len(dls.valid) == 1 && fl_dataloader_bs(dls.valid) == 32);
  int32_t o[30];
  epoch_order(dls.valid, o);
  int ok = 1;
  for (int i = 0; i < 30; i++) ok &= o[i] == i;
  EXPECT(ok);
  fl_dataloaders_free(&dls);
  EXPECT(dls.train == NULL && dls.valid == NULL);
  fl_dataset_free(tr);
  fl_dataset_free(va);
}

static void test_fashion_mnist_real(void) {
  const char *dir = fl_default_data_dir();
  struct stat st;
  if (stat(dir, &st) != 0) SKIP("Fashion-MNIST not installed (set FLEXLEARN_DATA)");
  fl_dataset *tr = NULL, *va = NULL;
  double t0 = fl_now();
  fl_status s = fl_fashion_mnist(NULL, &tr, &va);
  double dt = fl_now() - t0;
  EXPECTF(s == FL_OK, "%s", fl_last_error());
  if (s) return;
  printf("  Fashion-MNIST loaded from %s in %.3f s\n", dir, dt);
  EXPECT(tr->n == 60000 && va->n == 10000);
  EXPECT(tr->c == 1 && tr->h == 28 && tr->w == 28 && va->h == 28 && va->w == 28);
  EXPECT(tr->n_classes == 10 && va->n_classes == 10);
  const int32_t first[10] = {9, 0, 0, 3, 0, 2, 7, 2, 5, 5};
  EXPECT(memcmp(tr->y, first, sizeof first) == 0);
  /* a full pass of the real loader */
  fl_dataloaders dls;
  EXPECT(fl_get_dls(&dls, tr, va, 1024, 1, 2, 1) == FL_OK);
  EXPECT(fl_dataloader_len(dls.train) == 59 && fl_dataloader_len(dls.valid) == 5);
  int32_t *o = malloc(60000 * 4);
  EXPECT(epoch_order(dls.train, o) == 59);
  free(o);
  fl_dataloaders_free(&dls);
  fl_dataset_free(tr);
  fl_dataset_free(va);
}

int main(void) {
  snprintf(tmpdir, sizeof tmpdir, "/tmp/fl_test_data_XXXXXX");
  if (!mkdtemp(tmpdir)) { perror("mkdtemp"); return 2; }
  RUN(test_idx_parse);
  RUN(test_idx_errors);
  RUN(test_idx_lying_header);
  RUN(test_idx_parse_mem);
  RUN(test_dataset_from_idx);
  RUN(test_fashion_mnist_dir);
  RUN(test_all_pixel_values);
  RUN(test_loader_args);
  RUN(test_loader_unshuffled);
  RUN(test_loader_shuffle);
  RUN(test_workers_identical);
  RUN(test_loader_abandon);
  RUN(test_batch_to);
  RUN(test_device_loader);
  RUN(test_get_dls);
  RUN(test_fashion_mnist_real);
  remove_tmp();
  rmdir(tmpdir);
  return test_summary();
}
