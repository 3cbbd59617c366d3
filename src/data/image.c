/* Images from outside: PNG (libpng) and JPEG (libjpeg-turbo) decoded to 8-bit grey the way
 * PIL's Image.convert('L') does it, and datasets made of them. Everything here reads bytes a
 * user hands over, so it is strict (any libpng/libjpeg warning is an error), bounded (pixels,
 * file size, JPEG scans and memory) and fuzzed (fuzz/fuzz_image.c). */
#include <errno.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fl/data.h"

#ifndef FL_NO_PNG
#include <png.h>
#endif
#ifndef FL_NO_JPEG
#include <jpeglib.h>
#endif

#define FL_IMAGE_MAX_FILE (64u << 20)   /* bytes: a file over this is refused before reading */
#define FL_JPEG_MAX_SCANS 64            /* progressive JPEGs: more scans than any encoder writes */

void fl_image_free(fl_image *img) {
  if (!img) return;
  free(img->data);
  memset(img, 0, sizeof *img);
}

/* PIL's RGB -> L (Pillow's Convert.c, L24): ITU-R 601-2 luma in 16-bit fixed point, rounded. */
static inline uint8_t luma(unsigned r, unsigned g, unsigned b) {
  return (uint8_t)((r * 19595u + g * 38470u + b * 7471u + 0x8000u) >> 16);
}

/* Rows of `ch` interleaved 8-bit channels (1 grey, 2 grey+alpha, 3 RGB, 4 RGBA) -> grey; alpha
 * is dropped, as PIL's convert('L') drops it (no compositing). */
__attribute__((unused)) static void to_grey(uint8_t *dst, const uint8_t *src, size_t npx, int ch) {
  if (ch <= 2) {
    for (size_t i = 0; i < npx; i++) dst[i] = src[i * (size_t)ch];
  } else {
    for (size_t i = 0; i < npx; i++, src += ch) dst[i] = luma(src[0], src[1], src[2]);
  }
}

/* A library's message, made one printable line. */
__attribute__((unused)) static const char *clean(char *s) {
  for (char *p = s; *p; p++)
    if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e) *p = '?';
  return s;
}

__attribute__((unused)) static fl_status too_big(const char *name, const char *kind, uint64_t w, uint64_t h, int64_t max_px) {
  return fl_error(FL_ERR_FORMAT, "%s: %s image of %llux%llu pixels is over the limit of %lld pixels", name, kind,
                  (unsigned long long)w, (unsigned long long)h, (long long)max_px);
}

/* ---- PNG ---- */
#ifndef FL_NO_PNG
typedef struct png_src {
  const uint8_t *p;
  size_t n, off;
  char msg[256];
} png_src;

static void png_read_cb(png_structp png, png_bytep out, size_t len) {
  png_src *s = png_get_io_ptr(png);
  if (len > s->n - s->off) png_error(png, "truncated: the file ends before the image does");
  memcpy(out, s->p + s->off, len);
  s->off += len;
}
static void png_error_cb(png_structp png, png_const_charp msg) {
  png_src *s = png_get_error_ptr(png);
  snprintf(s->msg, sizeof s->msg, "%s", msg ? msg : "unknown error");
  png_longjmp(png, 1);
}
/* libpng's warnings are about ancillary chunks it skips (bad CRC, bad gAMA...): ignored, as
 * PIL ignores them; what would change the pixels is an error. */
static void png_warning_cb(png_structp png, png_const_charp msg) { (void)png, (void)msg; }

static fl_status decode_png(const uint8_t *p, size_t n, const char *name, int64_t max_px, fl_image *out) {
  png_src src = {p, n, 0, ""};
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &src, png_error_cb, png_warning_cb);
  png_infop info = png ? png_create_info_struct(png) : NULL;
  if (!info) {
    png_destroy_read_struct(png ? &png : NULL, NULL, NULL);
    return fl_error(FL_ERR_NOMEM, "%s: out of memory starting the PNG decoder", name);
  }
  uint8_t *volatile pix = NULL, *volatile grey = NULL;
  png_bytep *volatile rows = NULL;
  volatile int too_large = 0;
  png_uint_32 w = 0, h = 0;
  if (setjmp(png_jmpbuf(png))) {
    free(pix), free(grey), free(rows);
    png_destroy_read_struct(&png, &info, NULL);
    if (too_large) return too_big(name, "PNG", w, h, max_px);
    return fl_error(FL_ERR_FORMAT, "%s: bad PNG: %s", name, clean(src.msg));
  }
  png_set_read_fn(png, &src, png_read_cb);
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
  png_set_crc_action(png, PNG_CRC_QUIET_USE, PNG_CRC_QUIET_USE);   /* let the fuzzer past the CRCs */
#endif
  png_set_user_limits(png, 1u << 20, 1u << 20);
  png_set_chunk_malloc_max(png, 4u << 20);      /* text, ICC profiles...: 4 MB each at most */
  png_read_info(png, info);
  int depth, ctype, interlace;
  png_get_IHDR(png, info, &w, &h, &depth, &ctype, &interlace, NULL, NULL);
  if ((uint64_t)w * h > (uint64_t)max_px) {
    too_large = 1;
    png_error(png, "too large");
  }
  /* palette -> RGB, grey of 1/2/4 bits -> 8 (0..255 as PIL scales them), tRNS -> an alpha that
   * to_grey drops; 16-bit samples rounded to 8 (PIL reads 16-bit grey as 'I;16', not 'L') */
  png_set_expand(png);
  png_set_scale_16(png);
  int passes = png_set_interlace_handling(png);
  (void)passes;
  png_read_update_info(png, info);
  int ch = png_get_channels(png, info);
  size_t rb = png_get_rowbytes(png, info);
  if (ch < 1 || ch > 4 || rb != (size_t)w * (size_t)ch) png_error(png, "unexpected row layout after expansion");
  pix = malloc((size_t)h * rb);
  rows = malloc((size_t)h * sizeof *rows);
  grey = malloc((size_t)w * h);
  if (!pix || !rows || !grey) png_error(png, "out of memory for the pixels");
  for (png_uint_32 y = 0; y < h; y++) rows[y] = pix + (size_t)y * rb;
  png_read_image(png, rows);
  png_read_end(png, NULL);                      /* the chunks after the pixels, up to IEND */
  to_grey(grey, pix, (size_t)w * h, ch);
  free(pix), free(rows);
  png_destroy_read_struct(&png, &info, NULL);
  out->data = grey;
  out->w = (int)w, out->h = (int)h;
  return FL_OK;
}
#endif

/* ---- JPEG ---- */
#ifndef FL_NO_JPEG
typedef struct jpeg_err {
  struct jpeg_error_mgr pub;
  jmp_buf jb;
  char msg[JMSG_LENGTH_MAX + 64];
} jpeg_err;

static void jpeg_error_exit_cb(j_common_ptr c) {
  jpeg_err *e = (jpeg_err *)c->err;
  c->err->format_message(c, e->msg);
  longjmp(e->jb, 1);
}
/* Warnings (level -1: corrupt data, a file that ends early and would be padded with grey) are
 * errors here; trace messages (level >= 0) are ignored. */
static void jpeg_emit_cb(j_common_ptr c, int level) {
  if (level < 0) jpeg_error_exit_cb(c);
}
static void jpeg_progress_cb(j_common_ptr c) {
  j_decompress_ptr d = (j_decompress_ptr)c;
  if (d->input_scan_number > FL_JPEG_MAX_SCANS) {
    jpeg_err *e = (jpeg_err *)c->err;
    snprintf(e->msg, sizeof e->msg, "more than %d scans", FL_JPEG_MAX_SCANS);
    longjmp(e->jb, 1);
  }
}

static fl_status decode_jpeg(const uint8_t *p, size_t n, const char *name, int64_t max_px, fl_image *out) {
  struct jpeg_decompress_struct d;
  jpeg_err e;
  struct jpeg_progress_mgr prog = {.progress_monitor = jpeg_progress_cb};
  memset(&d, 0, sizeof d);
  d.err = jpeg_std_error(&e.pub);
  e.pub.error_exit = jpeg_error_exit_cb;
  e.pub.emit_message = jpeg_emit_cb;
  e.msg[0] = 0;
  uint8_t *volatile grey = NULL, *volatile row = NULL;
  volatile int stage = 0;   /* 1: too large, 2: CMYK */
  if (setjmp(e.jb)) {
    free(grey), free(row);
    jpeg_destroy_decompress(&d);
    if (stage == 1) return too_big(name, "JPEG", d.image_width, d.image_height, max_px);
    if (stage == 2)
      return fl_error(FL_ERR_FORMAT, "%s: CMYK/YCCK JPEG is not supported (convert it to RGB or grey)", name);
    return fl_error(FL_ERR_FORMAT, "%s: bad JPEG: %s", name, clean(e.msg));
  }
  jpeg_create_decompress(&d);
  d.mem->max_memory_to_use = 256L << 20;
  d.progress = &prog;
  jpeg_mem_src(&d, p, (unsigned long)n);
  jpeg_read_header(&d, TRUE);
  if ((uint64_t)d.image_width * d.image_height > (uint64_t)max_px) stage = 1, longjmp(e.jb, 1);
  if (d.jpeg_color_space == JCS_CMYK || d.jpeg_color_space == JCS_YCCK) stage = 2, longjmp(e.jb, 1);
  /* as PIL: grey stays grey; colour is decoded to RGB (libjpeg's ISLOW DCT and fancy upsampling,
   * its defaults and PIL's), then made grey by PIL's formula */
  d.out_color_space = d.jpeg_color_space == JCS_GRAYSCALE ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_start_decompress(&d);
  int ch = d.output_components;
  size_t w = d.output_width, h = d.output_height;
  if ((ch != 1 && ch != 3) || (uint64_t)w * h > (uint64_t)max_px) {
    snprintf(e.msg, sizeof e.msg, "unexpected output (%d components, %zux%zu)", ch, w, h);
    longjmp(e.jb, 1);
  }
  grey = malloc(w * h > 0 ? w * h : 1);
  row = malloc(w * (size_t)ch);
  if (!grey || !row) {
    snprintf(e.msg, sizeof e.msg, "out of memory for the pixels");
    longjmp(e.jb, 1);
  }
  while (d.output_scanline < d.output_height) {
    JSAMPROW r = row;
    size_t y = d.output_scanline;
    if (jpeg_read_scanlines(&d, &r, 1) != 1) {
      snprintf(e.msg, sizeof e.msg, "no progress at row %zu", y);
      longjmp(e.jb, 1);
    }
    to_grey(grey + y * w, row, w, ch);
  }
  jpeg_finish_decompress(&d);
  jpeg_destroy_decompress(&d);
  free(row);
  out->data = grey;
  out->w = (int)w, out->h = (int)h;
  return FL_OK;
}
#endif

fl_status fl_image_decode(const uint8_t *p, size_t n, const char *name, int64_t max_pixels, fl_image *out) {
  FL_CHECK((p || !n) && name && out && max_pixels > 0, "fl_image_decode: bad arguments");
  memset(out, 0, sizeof *out);
  static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (n >= 8 && !memcmp(p, png_sig, 8)) {
#ifdef FL_NO_PNG
    return fl_error(FL_ERR_ARG, "%s: a PNG image, but this flexlearn was built without libpng (make PNG=0)", name);
#else
    return decode_png(p, n, name, max_pixels, out);
#endif
  }
  if (n >= 3 && p[0] == 0xff && p[1] == 0xd8 && p[2] == 0xff) {
#ifdef FL_NO_JPEG
    return fl_error(FL_ERR_ARG, "%s: a JPEG image, but this flexlearn was built without libjpeg (make JPEG=0)", name);
#else
    return decode_jpeg(p, n, name, max_pixels, out);
#endif
  }
  if (!n) return fl_error(FL_ERR_FORMAT, "%s: empty file, not a PNG or JPEG image", name);
  char hex[32] = "";
  for (size_t i = 0; i < n && i < 4; i++) snprintf(hex + 3 * i, sizeof hex - 3 * i, " %02x", p[i]);
  return fl_error(FL_ERR_FORMAT, "%s: not a PNG or JPEG image (it starts with%s)", name, hex);
}

fl_status fl_image_read(const char *path, fl_image *out) {
  FL_CHECK(path && out, "fl_image_read: NULL argument");
  memset(out, 0, sizeof *out);
  /* O_NONBLOCK: a FIFO is refused below instead of blocking the open until a writer comes */
  int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return fl_error(FL_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    int dir = S_ISDIR(st.st_mode);
    close(fd);
    return fl_error(FL_ERR_IO, "%s: %s", path, dir ? "is a directory, not an image" : "not a regular file");
  }
  if ((uint64_t)st.st_size > FL_IMAGE_MAX_FILE) {
    close(fd);
    return fl_error(FL_ERR_FORMAT, "%s: %lld bytes, over the limit of %u for an image file", path,
                    (long long)st.st_size, FL_IMAGE_MAX_FILE);
  }
  size_t n = (size_t)st.st_size, got = 0;
  uint8_t *buf = malloc(n ? n : 1);
  if (!buf) {
    close(fd);
    return fl_error(FL_ERR_NOMEM, "%s: out of memory reading %zu bytes", path, n);
  }
  while (got < n) {
    ssize_t k = read(fd, buf + got, n - got);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) break;
    got += (size_t)k;
  }
  int err = errno;
  close(fd);
  if (got != n) {
    free(buf);
    return fl_error(FL_ERR_IO, "%s: read error after %zu of %zu bytes%s%s", path, got, n, got < n ? ": " : "",
                    strerror(err));
  }
  fl_status s = fl_image_decode(buf, n, path, FL_IMAGE_MAX_PIXELS, out);
  free(buf);
  return s;
}

fl_status fl_dataset_from_images(const char *const *paths, int n, int h, int w, fl_dataset **out) {
  FL_CHECK(paths && n > 0 && h > 0 && w > 0 && out, "fl_dataset_from_images: bad arguments");
  *out = NULL;
  size_t px = (size_t)h * (size_t)w;
  uint8_t *x = malloc((size_t)n * px);
  int32_t *y = calloc((size_t)n, sizeof *y);
  if (!x || !y) {
    free(x), free(y);
    return fl_error(FL_ERR_NOMEM, "out of memory for %d images of %dx%d", n, h, w);
  }
  for (int i = 0; i < n; i++) {
    fl_image img;
    fl_status s = fl_image_read(paths[i], &img);
    if (s == FL_OK && (img.h != h || img.w != w))
      s = fl_error(FL_ERR_FORMAT, "%s: image is %dx%d (width x height); expected %dx%d (resize it first)", paths[i],
                   img.w, img.h, w, h);
    if (s != FL_OK) {
      fl_image_free(&img);
      free(x), free(y);
      return s;
    }
    memcpy(x + (size_t)i * px, img.data, px);
    fl_image_free(&img);
  }
  fl_dataset *ds = fl_xcalloc(1, sizeof *ds);
  ds->x = x, ds->y = y, ds->n = n;
  ds->c = 1, ds->h = h, ds->w = w;
  ds->device = FL_CPU;
  ds->n_classes = 0;   /* no labels */
  *out = ds;
  return FL_OK;
}
