/* IDX files (the MNIST format), raw or gzipped.
 *
 * Layout: magic 00 00 <type> <ndim>, then ndim big-endian uint32 dimensions, then the payload
 * (prod(dims) elements of <type>, only 0x08 = unsigned byte is supported here).
 *
 * The whole file is mapped (or read) into memory once. A gzip file (magic 1f 8b) is inflated
 * by zlib in two steps: the header into a small buffer, then, once the dimensions are known,
 * the payload straight into its final malloc'd buffer (no intermediate copy). Validation is
 * strict: anything short of the exact expected byte count, or anything after it, is an error.
 *
 * The header's size is never trusted for an allocation: nothing is allocated for a payload the
 * file cannot hold. A raw file holds exactly its remaining bytes, checked before allocating. A
 * gzip file of n bytes inflates to at most FL__DEFLATE_MAX_RATIO * n bytes (see parse_gzip for
 * why that bound, rather than the trailer's ISIZE or a growing buffer).
 *
 * Statuses: FL_ERR_IO when the file cannot be opened/read or ends early (truncated header,
 * truncated payload, gzip stream cut short); FL_ERR_FORMAT when it is there but wrong (magic,
 * element type, dimensions, a header claiming more than a gzip file can hold, trailing bytes,
 * corrupt gzip data); FL_ERR_NOMEM. The reason is one line starting with the path.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "fl/data.h"
#include "data/idx_internal.h"

/* ---- the file's bytes in memory ---- */
typedef struct idx_file {
  const uint8_t *p;
  size_t n;
  void *map;      /* mmap'd region (size n) or NULL */
  void *buf;      /* malloc'd copy (non-regular files) or NULL */
} idx_file;

static void file_close(idx_file *f) {
  if (f->map) munmap(f->map, f->n);
  free(f->buf);
  memset(f, 0, sizeof *f);
}

/* Maps a regular file; reads anything else (a pipe) into a growing buffer. */
static fl_status file_open(const char *path, idx_file *f) {
  memset(f, 0, sizeof *f);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fl_error(FL_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int e = errno;
    close(fd);
    return fl_error(FL_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
  }
  if (S_ISDIR(st.st_mode)) {
    close(fd);
    return fl_error(FL_ERR_IO, "%s: is a directory, not an IDX file", path);
  }
  if (S_ISREG(st.st_mode)) {
    if (st.st_size == 0) { close(fd); return FL_OK; }   /* empty: reported as truncated */
    void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
    if (m != MAP_FAILED) {
      close(fd);
      f->map = m;
      f->p = m;
      f->n = (size_t)st.st_size;
      return FL_OK;
    }
  }
  /* Not mappable: read it. */
  size_t cap = 1 << 20, n = 0;
  uint8_t *b = malloc(cap);
  if (!b) { close(fd); return fl_error(FL_ERR_NOMEM, "%s: out of memory reading the file", path); }
  for (;;) {
    if (n == cap) {
      uint8_t *nb = cap <= SIZE_MAX / 2 ? realloc(b, cap * 2) : NULL;
      if (!nb) {
        free(b);
        close(fd);
        return fl_error(FL_ERR_NOMEM, "%s: out of memory reading the file", path);
      }
      b = nb;
      cap *= 2;
    }
    ssize_t r = read(fd, b + n, cap - n);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      int e = errno;
      free(b);
      close(fd);
      return fl_error(FL_ERR_IO, "%s: read error: %s", path, strerror(e));
    }
    if (r == 0) break;
    n += (size_t)r;
  }
  close(fd);
  f->buf = b;
  f->p = b;
  f->n = n;
  return FL_OK;
}

/* ---- the header ---- */
static uint32_t be32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Checks the 4 magic bytes; sets *ndim. */
static fl_status check_magic(const char *path, const uint8_t m[4], int *ndim) {
  if (m[0] != 0 || m[1] != 0)
    return fl_error(FL_ERR_FORMAT,
                    "%s: not an IDX file (magic bytes %02x %02x %02x %02x, expected 00 00 08 0N)",
                    path, m[0], m[1], m[2], m[3]);
  if (m[2] != 0x08)
    return fl_error(FL_ERR_FORMAT,
                    "%s: unsupported IDX element type 0x%02x (only 0x08, unsigned byte)", path,
                    m[2]);
  if (m[3] < 1 || m[3] > 4)
    return fl_error(FL_ERR_FORMAT, "%s: IDX header has %d dimensions (expected 1 to 4)", path,
                    m[3]);
  *ndim = m[3];
  return FL_OK;
}

/* "5 x 3 x 4": the ndim (<= 4) big-endian dims at d, for messages. */
static const char *dims_str(char buf[64], const uint8_t *d, int ndim) {
  int k = 0;
  buf[0] = 0;
  for (int i = 0; i < ndim && k >= 0 && k < 64; i++)
    k += snprintf(buf + k, 64 - (size_t)k, "%s%u", i ? " x " : "", (unsigned)be32(d + 4 * i));
  return buf;
}

/* Reads the dims that follow the magic; sets out->dims/ndim/n (payload bytes). */
static fl_status check_dims(const char *path, const uint8_t *d, int ndim, fl_idx *out) {
  size_t n = 1;
  char ds[64];
  for (int i = 0; i < ndim; i++) {
    uint32_t v = be32(d + 4 * i);
    if (v == 0)
      return fl_error(FL_ERR_FORMAT, "%s: IDX dimension %d of %d is 0", path, i, ndim);
    if (__builtin_mul_overflow(n, (size_t)v, &n) || n > (size_t)INT64_MAX)
      return fl_error(FL_ERR_FORMAT, "%s: IDX dimensions %s overflow: the payload would be over "
                      "2^63 bytes", path, dims_str(ds, d, ndim));
    out->dims[i] = v;
  }
  out->ndim = ndim;
  out->n = n;
  return FL_OK;
}

/* The payload buffer (free()-able). Big ones are 2 MiB-aligned and asked to be backed by
 * transparent huge pages: on a VM a 4 KiB page fault costs ~3 us, so inflating 47 MB into
 * fresh malloc'd memory spends ~0.15 s in page faults alone (and the DataLoader's random row
 * gathers miss the TLB less). */
static void *alloc_big(size_t n) {
  const size_t huge = (size_t)2 << 20;
  if (n < 2 * huge) return malloc(n);
  size_t rounded = (n + huge - 1) & ~(huge - 1);
  void *p = aligned_alloc(huge, rounded);
  if (p) madvise(p, rounded, MADV_HUGEPAGE);   /* advisory: ignore failure */
  return p;
}

static fl_status alloc_payload(const char *path, fl_idx *out) {
  out->data = alloc_big(out->n);
  if (!out->data)
    return fl_error(FL_ERR_NOMEM, "%s: out of memory for the %zu-byte payload", path, out->n);
  return FL_OK;
}

/* ---- raw ---- */
static fl_status parse_raw(const char *path, const uint8_t *p, size_t n, fl_idx *out) {
  int ndim = 0;
  if (n < 4)
    return fl_error(FL_ERR_IO, "%s: truncated header: expected 4 bytes of magic number, got %zu",
                    path, n);
  fl_status st = check_magic(path, p, &ndim);
  if (st) return st;
  size_t hdr = 4 + 4 * (size_t)ndim;
  if (n < hdr)
    return fl_error(FL_ERR_IO, "%s: truncated header: expected %zu bytes for %d dimensions, got %zu",
                    path, hdr, ndim, n);
  if ((st = check_dims(path, p + 4, ndim, out))) return st;
  /* The file holds exactly `have` bytes of payload: a header claiming more is rejected here,
   * before anything is allocated. (A short raw file reads as truncated, FL_ERR_IO, as always.) */
  size_t have = n - hdr;
  char ds[64];
  if (have < out->n)
    return fl_error(FL_ERR_IO, "%s: truncated: expected %zu bytes of data, got %zu (the header "
                    "claims %s)", path, out->n, have, dims_str(ds, p + 4, ndim));
  if (have > out->n)
    return fl_error(FL_ERR_FORMAT, "%s: %zu unexpected trailing bytes after the %zu bytes of data",
                    path, have - out->n, out->n);
  if ((st = alloc_payload(path, out))) return st;
  memcpy(out->data, p + hdr, out->n);
  return FL_OK;
}

/* ---- gzip ---- */
typedef struct gz {
  z_stream zs;
  const char *path;
  const uint8_t *in;    /* input not yet handed to zlib */
  size_t in_left;
  int ended;            /* the last gzip member ended (Z_STREAM_END, no further member) */
} gz;

/* Hands zlib more input (avail_in is 32-bit: at most 1 GiB at a time). */
static void gz_feed(gz *g) {
  if (g->zs.avail_in == 0 && g->in_left) {
    size_t k = g->in_left < (1u << 30) ? g->in_left : (1u << 30);
    g->zs.next_in = (Bytef *)g->in;
    g->zs.avail_in = (uInt)k;
    g->in += k;
    g->in_left -= k;
  }
}

/* Inflates up to n bytes into dst; *got = bytes produced. Stops early only at the end of the
 * data (g->ended) or on error. Concatenated gzip members are read as one stream, as gunzip
 * does. */
static fl_status gz_read(gz *g, uint8_t *dst, size_t n, size_t *got) {
  *got = 0;
  while (*got < n && !g->ended) {
    gz_feed(g);
    size_t k = n - *got < (1u << 30) ? n - *got : (1u << 30);
    g->zs.next_out = dst + *got;
    g->zs.avail_out = (uInt)k;
    int r = inflate(&g->zs, Z_NO_FLUSH);
    *got += k - g->zs.avail_out;
    if (r == Z_STREAM_END) {
      gz_feed(g);
      size_t rest = g->zs.avail_in + g->in_left;
      if (rest == 0) {
        g->ended = 1;
      } else if (rest >= 2 && g->zs.next_in[0] == 0x1f &&
                 (g->zs.avail_in >= 2 ? g->zs.next_in[1] : g->in[0]) == 0x8b) {
        inflateReset(&g->zs);             /* another member follows */
      } else {
        return fl_error(FL_ERR_FORMAT, "%s: %zu bytes of trailing garbage after the gzip data",
                        g->path, rest);
      }
    } else if (r == Z_BUF_ERROR) {
      /* no progress possible: all input was given, so the gzip stream is cut short */
      return fl_error(FL_ERR_IO, "%s: truncated: the gzip stream ends early (after %lu bytes "
                      "of decompressed data)", g->path, g->zs.total_out);
    } else if (r == Z_MEM_ERROR) {
      return fl_error(FL_ERR_NOMEM, "%s: out of memory in zlib", g->path);
    } else if (r != Z_OK) {
      return fl_error(FL_ERR_FORMAT, "%s: corrupt gzip data: %s", g->path,
                      g->zs.msg ? g->zs.msg : "inflate failed");
    }
  }
  return FL_OK;
}

/* Inflates what is left of the stream into a scratch buffer, to its end (which also checks the
 * CRC) or until about `limit` bytes came out; *extra = the bytes produced. */
static fl_status gz_drain(gz *g, size_t limit, size_t *extra) {
  uint8_t scratch[4096];
  size_t got;
  fl_status st = FL_OK;
  *extra = 0;
  while (!st && !g->ended && *extra < limit) {
    st = gz_read(g, scratch, sizeof scratch, &got);
    *extra += got;
  }
  return st;
}

static fl_status parse_gzip(const char *path, const uint8_t *p, size_t n, fl_idx *out) {
  gz g;
  memset(&g, 0, sizeof g);
  g.path = path;
  g.in = p;
  g.in_left = n;
  if (inflateInit2(&g.zs, 16 + MAX_WBITS) != Z_OK)   /* 16+: gzip wrapper, CRC checked */
    return fl_error(FL_ERR_NOMEM, "%s: cannot initialise zlib", path);

  uint8_t hdr[4 + 16];
  size_t got;
  int ndim = 0;
  fl_status st = gz_read(&g, hdr, 4, &got);
  if (!st && got < 4)
    st = fl_error(FL_ERR_IO, "%s: truncated header: expected 4 bytes of magic number, got %zu "
                  "(after gunzip)", path, got);
  if (!st) st = check_magic(path, hdr, &ndim);
  if (!st) {
    st = gz_read(&g, hdr + 4, 4 * (size_t)ndim, &got);
    if (!st && got < 4 * (size_t)ndim)
      st = fl_error(FL_ERR_IO, "%s: truncated header: expected %d bytes for %d dimensions, got "
                    "%zu (after gunzip)", path, 4 + 4 * ndim, ndim, 4 + got);
  }
  if (!st) st = check_dims(path, hdr + 4, ndim, out);
  /* The header's claim is bounded by what the file can hold before anything is allocated:
   * n compressed bytes inflate to at most FL__DEFLATE_MAX_RATIO * n bytes, whatever they are
   * (every byte of every concatenated member counts towards n, and gzip headers and trailers
   * produce nothing, so the bound also holds across members). This bound cannot lie, so a
   * 30-byte file claiming 2.7e18 bytes, or a 1 KB one claiming a few GB, is rejected at once.
   * Not the trailer's ISIZE: it is mod 2^32, covers only the last member, and is just 4 bytes
   * anyone can set (it is checked only after the whole stream was inflated). Not a buffer grown
   * as data arrives: it would re-copy (or re-fault) the 47 MB of the real train images and slow
   * the load down, for no stronger guarantee than this one. Within the bound, the payload is
   * allocated at once and a stream that ends early is reported as truncated (FL_ERR_IO). */
  char ds[64];
  if (!st) {
    size_t hdr_n = 4 + 4 * (size_t)ndim;
    size_t can = n <= SIZE_MAX / FL__DEFLATE_MAX_RATIO ? n * FL__DEFLATE_MAX_RATIO : SIZE_MAX;
    can = can > hdr_n ? can - hdr_n : 0;
    if (out->n > can) {
      /* Before blaming the header, inflate up to 64 KiB more into scratch (nothing allocated,
       * well under a millisecond): corrupt deflate data often inflates to a garbage header, and
       * then "corrupt gzip data" is the truer reason. Not to the end: that could be 1032 times
       * the file, and a lying header should fail fast. */
      size_t extra;
      st = gz_drain(&g, (size_t)64 << 10, &extra);
      if (st != FL_ERR_FORMAT && st != FL_ERR_NOMEM)
        st = fl_error(FL_ERR_FORMAT, "%s: the IDX header claims %zu bytes of data (%s) but the "
                      "%zu-byte gzip file can hold at most %zu (deflate expands at most %d:1)",
                      path, out->n, dims_str(ds, hdr + 4, ndim), n, can, FL__DEFLATE_MAX_RATIO);
    }
  }
  if (!st) st = alloc_payload(path, out);
  if (!st) {
    st = gz_read(&g, out->data, out->n, &got);
    if (!st && got < out->n)
      st = fl_error(FL_ERR_IO, "%s: truncated: expected %zu bytes of data, got %zu (the header "
                    "claims %s)", path, out->n, got, dims_str(ds, hdr + 4, ndim));
  }
  /* Nothing may follow the payload: drain the stream (this also checks the CRC). */
  size_t extra = 0;
  if (!st) st = gz_drain(&g, SIZE_MAX, &extra);
  if (!st && extra)
    st = fl_error(FL_ERR_FORMAT, "%s: %zu unexpected trailing bytes after the %zu bytes of data",
                  path, extra, out->n);
  inflateEnd(&g.zs);
  return st;
}

fl_status fl__idx_parse_mem(const void *p, size_t n, const char *name, fl_idx *out) {
  FL_CHECK(name != NULL && out != NULL && (p != NULL || n == 0),
           "fl__idx_parse_mem: name and out (and p when n > 0) must not be NULL");
  memset(out, 0, sizeof *out);
  const uint8_t *b = p;
  fl_status st;
  if (n >= 2 && b[0] == 0x1f && b[1] == 0x8b)
    st = parse_gzip(name, b, n, out);
  else
    st = parse_raw(name, b, n, out);
  if (st) fl_idx_free(out);
  return st;
}

fl_status fl_idx_read(const char *path, fl_idx *out) {
  FL_CHECK(path != NULL && out != NULL, "fl_idx_read: path and out must not be NULL");
  memset(out, 0, sizeof *out);
  idx_file f;
  fl_status st = file_open(path, &f);
  if (st) return st;
  st = fl__idx_parse_mem(f.p, f.n, path, out);
  file_close(&f);
  return st;
}

void fl_idx_free(fl_idx *idx) {
  if (!idx) return;
  free(idx->data);
  memset(idx, 0, sizeof *idx);
}
