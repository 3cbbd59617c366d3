/* flexlearn predict and the fit flags around it (--save-best, --early-stop), through the CLI
 * ($FLEXLEARN_CLI, default build/flexlearn):
 *  - the test set's accuracy equals the fit's final valid accuracy for the same weights;
 *  - IDX images with and without labels; PNG and JPEG files (written here with libpng/libjpeg)
 *    give the classes and probabilities of the same pixels given as IDX;
 *  - images are made grey exactly as PIL's convert('L') (skips without python3-pil);
 *  - bad files: one line naming the file, exit 1; bad flags: exit 2;
 *  - weights written by fit on real Fashion-MNIST load into PyTorch's nn.Sequential and give the
 *    accuracy predict prints, to 4 decimals (skips without the data or python3-torch). */
#include <errno.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "flexlearn.h"
#include "cli_run.h"
#include "test.h"

#ifndef FL_NO_PNG
#include <png.h>
#endif
#ifndef FL_NO_JPEG
#include <jpeglib.h>
#endif

static char g_dir[64] = "/tmp/fl_test_predict_XXXXXX";
static const char *g_cli;
static char g_out[1 << 20], g_err[1 << 16];

static char *path(const char *name) {
  static char buf[32][256];
  static int k;
  char *p = buf[k++ % 32];
  snprintf(p, 256, "%s/%s", g_dir, name);
  return p;
}



/* ---- a Fashion-MNIST-shaped directory of 28x28 images, one bright block per class ---- */
static void write_be32(FILE *f, uint32_t v) {
  unsigned char b[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16), (unsigned char)(v >> 8), (unsigned char)v};
  fwrite(b, 1, 4, f);
}
static void write_idx(const char *p, int ndim, const uint32_t *dims, const uint8_t *data) {
  FILE *f = fopen(p, "wb");
  FL_CHECK(f, "cannot write %s", p);
  fputc(0, f), fputc(0, f), fputc(8, f), fputc(ndim, f);
  size_t n = 1;
  for (int i = 0; i < ndim; i++) write_be32(f, dims[i]), n *= dims[i];
  fwrite(data, 1, n, f);
  fclose(f);
}

enum { N_TRAIN = 512, N_TEST = 100, PX = 784 };
static uint8_t g_test_x[N_TEST * PX], g_test_y[N_TEST];

static void make_data(void) {
  mkdir(path("data"), 0700);
  fl_rng r = fl_rng_make(11, FL_STREAM_USER);
  for (int split = 0; split < 2; split++) {
    uint32_t n = split ? N_TEST : N_TRAIN;
    uint8_t *x = split ? g_test_x : malloc((size_t)n * PX), *y = split ? g_test_y : malloc(n);
    for (uint32_t i = 0; i < n; i++) {
      uint32_t c = i % 10;   /* a noisy block per class, and a quarter of the labels random: */
      y[i] = (uint8_t)(fl_rng_below(&r, 4) ? c : fl_rng_below(&r, 10));   /* learnable, not perfectly */
      for (uint32_t k = 0; k < PX; k++)
        x[(size_t)i * PX + k] = (uint8_t)(k / 78 == c ? 90 + fl_rng_below(&r, 166) : fl_rng_below(&r, 140));
    }
    uint32_t idims[3] = {n, 28, 28}, ldims[1] = {n};
    write_idx(path(split ? "data/t10k-images-idx3-ubyte" : "data/train-images-idx3-ubyte"), 3, idims, x);
    write_idx(path(split ? "data/t10k-labels-idx1-ubyte" : "data/train-labels-idx1-ubyte"), 1, ldims, y);
    if (!split) free(x), free(y);
  }
}

/* ---- running the CLI: argv NULL-terminated; stdout / stderr into g_out / g_err ---- */
/* 300 s at most (a real epoch under ASan) */
static int run_cli_v(const char *const *args) {
  return cli_finish(cli_spawn(g_cli, g_dir, NULL, args), g_cli, g_dir, 300, g_out, sizeof g_out, g_err, sizeof g_err);
}
#define CLI(...) run_cli_v((const char *const[]){__VA_ARGS__, NULL})

static int count_lines(const char *s) {
  int n = 0;
  for (; *s; s++) n += *s == '\n';
  return n;
}

static int one_line_naming(const char *s, const char *needle) {
  size_t n = strlen(s);
  return n > 12 && count_lines(s) == 1 && s[n - 1] == '\n' && !strncmp(s, "flexlearn: ", 11) && strstr(s, needle);
}

/* rc, one stderr line naming `needle`, nothing on stdout */
static void expect_bad(int want_rc, const char *needle, const char *const *args) {
  int rc = run_cli_v(args);
  char cmd[1024] = "";
  for (int i = 0; args[i] && strlen(cmd) + strlen(args[i]) + 2 < sizeof cmd; i++) strcat(cmd, args[i]), strcat(cmd, " ");
  EXPECTF(rc == want_rc, "`%s`: exit %d, want %d (stderr: %s)", cmd, rc, want_rc, g_err);
  EXPECTF(one_line_naming(g_err, needle), "`%s`: stderr should be one line naming '%s':\n%s", cmd, needle, g_err);
  EXPECTF(g_out[0] == 0, "`%s`: stdout: %.300s", cmd, g_out);
}
#define BAD(rc, needle, ...) expect_bad(rc, needle, (const char *const[]){__VA_ARGS__, NULL})

/* The value of `accuracy: X` on the last line of out (NAN when it is not that). */
static double last_accuracy(const char *out) {
  size_t n = strlen(out);
  if (!n || out[n - 1] != '\n') return NAN;
  const char *p = out + n - 1;
  while (p > out && p[-1] != '\n') p--;
  double a;
  char nl;
  return sscanf(p, "accuracy: %lf%c", &a, &nl) == 2 && nl == '\n' && strlen(p) == 17 ? a : NAN;
}

/* The last "accuracy" of the jsonl log (the final valid phase). */
static double log_accuracy(const char *log) {
  static char buf[1 << 16];
  read_file(log, buf, sizeof buf);
  const char *p = buf, *last = NULL;
  while ((p = strstr(p, "\"accuracy\": "))) last = p, p++;
  return last ? atof(last + 12) : NAN;
}

static char g_w[256];   /* weights of a 3-epoch fit on the synthetic data */
static double g_fit_acc;

static void test_fit_then_predict(void) {
#ifdef FL_NO_CJSON
  SKIP("built without cJSON (CJSON=0): no safetensors weights");
#endif
  snprintf(g_w, sizeof g_w, "%s", path("w.safetensors"));
  char *log = path("fit.jsonl");
  int rc = CLI("fit", "--data", path("data"), "--epochs", "3", "--bs", "64", "--lr", "0.1", "--no-progress", "--device",
               "cpu", "--save", g_w, "--log", log);
  EXPECTF(rc == 0 && strstr(g_out, "weights saved to"), "rc %d: %s %s", rc, g_out, g_err);
  g_fit_acc = log_accuracy(log);
  EXPECTF(g_fit_acc > 0.3 && g_fit_acc < 1, "the fit learnt something, not everything: %g", g_fit_acc);
  /* the test set (the fit's valid set): at the fit's valid batch (2 x 64), at 1024, at 7 */
  const char *bss[3] = {"128", "1024", "7"};
  for (int i = 0; i < 3; i++) {
    rc = CLI("predict", "--weights", g_w, "--data", path("data"), "--bs", bss[i], "--device", "cpu");
    double a = last_accuracy(g_out);
    EXPECTF(rc == 0 && g_err[0] == 0, "rc %d: %s", rc, g_err);
    EXPECTF(fabs(a - g_fit_acc) < 5e-5, "bs %s: predict says %.4f, the fit's valid accuracy %.6f\n%s", bss[i], a, g_fit_acc,
            g_out);
    EXPECTF(count_lines(g_out) == 2 && !strncmp(g_out, "predicted 100 images in ", 24), "%s", g_out);
  }
  /* the same through --images/--labels; with --verbose a line per image first */
  rc = CLI("predict", "--weights", g_w, "--images", path("data/t10k-images-idx3-ubyte"), "--labels",
           path("data/t10k-labels-idx1-ubyte"));
  EXPECTF(rc == 0 && fabs(last_accuracy(g_out) - g_fit_acc) < 5e-5, "rc %d: %s %s", rc, g_out, g_err);
  rc = CLI("predict", "--weights", g_w, "--images", path("data/t10k-images-idx3-ubyte"), "--labels",
           path("data/t10k-labels-idx1-ubyte"), "--verbose");
  EXPECTF(rc == 0 && count_lines(g_out) == N_TEST + 2, "rc %d, %d lines", rc, count_lines(g_out));
  int correct = 0;
  const char *p = g_out;
  for (int i = 0; i < N_TEST; i++) {
    char want[300];
    int k = snprintf(want, sizeof want, "%s[%d]: class ", path("data/t10k-images-idx3-ubyte"), i);
    EXPECTF(!strncmp(p, want, (size_t)k), "line %d: %.80s", i, p);
    int c = -1, lab = -1;
    float pr = -1;
    const char *q = strstr(p, ": class ");
    EXPECT(q && sscanf(q, ": class %d", &c) == 1);
    q = q ? strstr(q, " p=") : NULL;
    EXPECT(q && sscanf(q, " p=%f", &pr) == 1 && pr >= 0.1f && pr <= 1.0f);
    q = q ? strstr(q, " label ") : NULL;
    EXPECT(q && sscanf(q, " label %d", &lab) == 1 && lab == g_test_y[i]);
    correct += c == lab;
    p = strchr(p, '\n') + 1;
  }
  EXPECTF(fabs(correct / (double)N_TEST - g_fit_acc) < 1e-9, "%d correct of %d", correct, N_TEST);
  /* no labels: a line per image, no accuracy */
  rc = CLI("predict", "--weights", g_w, "--images", path("data/t10k-images-idx3-ubyte"));
  EXPECTF(rc == 0 && count_lines(g_out) == N_TEST + 1 && !strstr(g_out, "accuracy") && !strstr(g_out, " label "),
          "rc %d: %.200s", rc, g_out);
  char want0[300];
  snprintf(want0, sizeof want0, "%s[0]: class ", path("data/t10k-images-idx3-ubyte"));
  EXPECT(!strncmp(g_out, want0, strlen(want0)));
}

/* ---- image files written here ---- */
#ifndef FL_NO_PNG
/* format: PNG_FORMAT_GRAY, _RGB, _RGBA...; pixels per that format */
static int write_png(const char *p, int w, int h, png_uint_32 format, const uint8_t *px) {
  png_image im;
  memset(&im, 0, sizeof im);
  im.version = PNG_IMAGE_VERSION;
  im.width = (png_uint_32)w, im.height = (png_uint_32)h, im.format = format;
  return png_image_write_to_file(&im, p, 0, px, 0, NULL);
}
#endif
#ifndef FL_NO_JPEG
static void write_jpeg(const char *p, int w, int h, int comps, const uint8_t *px, int quality) {
  struct jpeg_compress_struct c;
  struct jpeg_error_mgr e;
  c.err = jpeg_std_error(&e);
  jpeg_create_compress(&c);
  FILE *f = fopen(p, "wb");
  FL_CHECK(f, "cannot write %s", p);
  jpeg_stdio_dest(&c, f);
  c.image_width = (JDIMENSION)w, c.image_height = (JDIMENSION)h;
  c.input_components = comps;
  c.in_color_space = comps == 1 ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_set_defaults(&c);
  jpeg_set_quality(&c, quality, TRUE);
  jpeg_start_compress(&c, TRUE);
  while (c.next_scanline < c.image_height) {
    JSAMPROW row = (JSAMPROW)(px + (size_t)c.next_scanline * (size_t)w * (size_t)comps);
    jpeg_write_scanlines(&c, &row, 1);
  }
  jpeg_finish_compress(&c);
  jpeg_destroy_compress(&c);
  fclose(f);
}
#endif

/* PNG files of test images 0..4 (grey, and RGB with R = G = B) give exactly the lines of the
 * same pixels through IDX; JPEGs give well-formed lines. */
static void test_image_files(void) {
#if defined(FL_NO_PNG) || defined(FL_NO_JPEG)
  SKIP("built without libpng or libjpeg (PNG=0 / JPEG=0)");
#else
  if (!g_w[0]) SKIP("no weights (test_fit_then_predict failed)");
  enum { K = 5 };
  char names[3 * K][256];
  const char *args[64] = {"predict", "--weights", g_w};
  int na = 3;
  static uint8_t rgb[PX * 3];
  for (int i = 0; i < K; i++) {
    const uint8_t *x = g_test_x + (size_t)i * PX;
    snprintf(names[i], 256, "%s", path("")), snprintf(names[i] + strlen(names[i]), 40, "g%d.png", i);
    snprintf(names[K + i], 256, "%s", path("")), snprintf(names[K + i] + strlen(names[K + i]), 40, "c%d.png", i);
    snprintf(names[2 * K + i], 256, "%s", path("")), snprintf(names[2 * K + i] + strlen(names[2 * K + i]), 40, "j%d.jpg", i);
    EXPECT(write_png(names[i], 28, 28, PNG_FORMAT_GRAY, x));
    for (int k = 0; k < PX; k++) rgb[3 * k] = rgb[3 * k + 1] = rgb[3 * k + 2] = x[k];
    EXPECT(write_png(names[K + i], 28, 28, PNG_FORMAT_RGB, rgb));
    write_jpeg(names[2 * K + i], 28, 28, i % 2 ? 3 : 1, i % 2 ? rgb : x, 95);
  }
  for (int i = 0; i < 3 * K; i++) args[na++] = names[i];
  args[na++] = "--bs";
  args[na++] = "4";   /* several batches, the last one partial */
  args[na] = NULL;
  int rc = run_cli_v(args);
  EXPECTF(rc == 0 && g_err[0] == 0 && count_lines(g_out) == 3 * K, "rc %d: %s\n%s", rc, g_err, g_out);
  static char files_out[1 << 14];
  memcpy(files_out, g_out, sizeof files_out - 1);
  /* the reference: the same pixels through IDX */
  rc = CLI("predict", "--weights", g_w, "--images", path("data/t10k-images-idx3-ubyte"));
  EXPECT(rc == 0);
  const char *p = files_out;
  for (int i = 0; i < 3 * K; i++) {
    size_t k = strlen(names[i]);
    EXPECTF(!strncmp(p, names[i], k) && !strncmp(p + k, ": class ", 8), "line %d: %.120s", i, p);
    const char *tail = p + k;   /* ": class N (name) p=0.xxxx\n" */
    const char *nl = strchr(p, '\n');
    if (i < 2 * K) {
      char ref[300];
      snprintf(ref, sizeof ref, "%s[%d]", path("data/t10k-images-idx3-ubyte"), i % K);
      const char *r = strstr(g_out, ref);
      size_t tl = nl ? (size_t)(nl - tail + 1) : 0;
      EXPECTF(r && !strncmp(r + strlen(ref), tail, tl), "%s differs from %s:\n%.100s\n%.100s", names[i], ref, tail,
              r ? r + strlen(ref) : "(none)");
    } else {
      int c;
      float pr;
      char name[40];
      EXPECTF(sscanf(tail, ": class %d (%39[^)]) p=%f", &c, name, &pr) == 3 && c >= 0 && c < 10 && pr > 0 && pr <= 1,
              "%.100s", tail);
    }
    p = nl ? nl + 1 : p;
  }
#endif
}

/* Every mode PIL writes, made grey by PIL's convert('L') and by fl_image_read: the same bytes. */
__attribute__((unused)) static const char pil_script[] =
    "import sys, os\n"
    "import numpy as np\n"
    "from PIL import Image\n"
    "d = sys.argv[1]\n"
    "rng = np.random.default_rng(5)\n"
    "def save(name, im, **kw):\n"
    "    p = os.path.join(d, name)\n"
    "    im.save(p, **kw)\n"
    "    g = Image.open(p).convert('L')\n"
    "    open(p + '.L', 'wb').write(g.tobytes())\n"
    "    print(p, g.size[0], g.size[1])\n"
    "for (w, h) in [(28, 28), (13, 7)]:\n"
    "    rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)\n"
    "    rgb[:, : w // 2] = rgb[:, : w // 2] // 64 * 64  # flat areas as well as noise\n"
    "    s = f'{w}x{h}'\n"
    "    save(f'L-{s}.png', Image.fromarray(rgb[:, :, 0], 'L'))\n"
    "    save(f'RGB-{s}.png', Image.fromarray(rgb, 'RGB'))\n"
    "    a = np.dstack([rgb, rng.integers(0, 256, (h, w), dtype=np.uint8)])\n"
    "    save(f'RGBA-{s}.png', Image.fromarray(a, 'RGBA'))\n"
    "    save(f'LA-{s}.png', Image.fromarray(a[:, :, [0, 3]], 'LA'))\n"
    "    save(f'P-{s}.png', Image.fromarray(rgb, 'RGB').quantize(37))\n"
    "    save(f'1-{s}.png', Image.fromarray(rgb[:, :, 0], 'L').convert('1'))\n"
    "    save(f'L-{s}.jpg', Image.fromarray(rgb[:, :, 0], 'L'), quality=90)\n"
    "    save(f'RGB-{s}.jpg', Image.fromarray(rgb, 'RGB'), quality=85)\n"
    "    save(f'RGB444-{s}.jpg', Image.fromarray(rgb, 'RGB'), quality=95, subsampling=0)\n"
    "    save(f'RGBprog-{s}.jpg', Image.fromarray(rgb, 'RGB'), quality=75, progressive=True)\n"
    "    c = os.path.join(d, f'CMYK-{s}.jpg')  # refused: a line naming it, no pixels\n"
    "    Image.fromarray(rgb, 'RGB').convert('CMYK').save(c, quality=90)\n"
    "    print(c, -1, -1)\n";

__attribute__((unused)) static int have_pil(void) {
  return system("/usr/bin/python3 -c 'import PIL, numpy' >/dev/null 2>&1") == 0;
}

static void test_grey_as_pil(void) {
#if defined(FL_NO_PNG) || defined(FL_NO_JPEG)
  SKIP("built without libpng or libjpeg (PNG=0 / JPEG=0)");
#else
  if (!have_pil()) SKIP("no PIL at /usr/bin/python3 (apt-get install python3-pil)");
  char *py = path("pil.py"), *dir = path("pil");
  mkdir(dir, 0700);
  write_file(py, pil_script, strlen(pil_script));
  char cmd[600];
  snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s %s", py, dir);
  FILE *f = popen(cmd, "r");
  char p[300];
  int w, h, n = 0;
  while (f && fscanf(f, "%299s %d %d", p, &w, &h) == 3) {
    fl_image img;
    fl_status s = fl_image_read(p, &img);
    if (w < 0) {
      EXPECTF(s == FL_ERR_FORMAT && strstr(fl_last_error(), p) && strstr(fl_last_error(), "CMYK") && !img.data,
              "%s: %s", p, fl_last_error());
      unlink(p);
      continue;
    }
    EXPECTF(s == FL_OK, "%s: %s", p, fl_last_error());
    if (s == FL_OK) {
      char lp[320];
      snprintf(lp, sizeof lp, "%s.L", p);
      static char ref[4096];
      size_t k = read_file(lp, ref, sizeof ref);
      int diff = 0, maxd = 0;
      for (size_t i = 0; i < k && (int)k == w * h; i++) {
        int d = abs((int)img.data[i] - (uint8_t)ref[i]);
        diff += d != 0, maxd = d > maxd ? d : maxd;
      }
      EXPECTF(img.w == w && img.h == h && (int)k == w * h && diff == 0, "%s: %dx%d (PIL %dx%d), %d pixels differ (max %d)",
              p, img.w, img.h, w, h, diff, maxd);
      fl_image_free(&img);
      unlink(lp);
    }
    unlink(p);
    n++;
  }
  EXPECT(f && pclose(f) == 0);
  EXPECTF(n == 20, "PIL wrote %d images, expected 20", n);
  printf("  %d images (PNG: L, RGB, RGBA, LA, P, 1; JPEG: L, RGB 4:2:0, 4:4:4, progressive) equal to PIL's convert('L')\n", n);
  rmdir(dir);
  unlink(py);
#endif
}

static void test_bad_files(void) {
  if (!g_w[0]) SKIP("no weights (test_fit_then_predict failed)");
  /* missing files and directories */
  BAD(1, path("none.png"), "predict", "--weights", g_w, path("none.png"));
  BAD(1, path("none.safetensors"), "predict", "--weights", path("none.safetensors"), "--data", path("data"));
  BAD(1, path("."), "predict", "--weights", g_w, path("."));
  BAD(1, path("nodata"), "predict", "--weights", g_w, "--data", path("nodata"));
  BAD(1, path("none.idx"), "predict", "--weights", g_w, "--images", path("none.idx"));
  /* a FIFO (refused, not waited on), /dev/null */
  char *fifo = path("fifo.png");
  EXPECT(mkfifo(fifo, 0600) == 0);
  BAD(1, fifo, "predict", "--weights", g_w, fifo);
  EXPECT(strstr(g_err, "not a regular file") != NULL);
  unlink(fifo);
  BAD(1, "/dev/null", "predict", "--weights", g_w, "/dev/null");
  /* not an image; empty */
  char *txt = path("notes.png"), *empty = path("empty.jpg");
  write_file(txt, "hello, world\n", 13);
  write_file(empty, "", 0);
  BAD(1, txt, "predict", "--weights", g_w, txt);
  EXPECT(strstr(g_err, "not a PNG or JPEG") != NULL);
  BAD(1, empty, "predict", "--weights", g_w, empty);
#ifndef FL_NO_CJSON
  /* weights of another shape (a model of 4 inputs saved as safetensors) */
  fl_module *small = fl_get_model(1, 4, 3, 2);
  char *sw = path("small.safetensors");
  EXPECT(fl_save_safetensors(small, sw, "small") == FL_OK);
  fl_module_free(small);
  BAD(1, sw, "predict", "--weights", sw, "--data", path("data"));
  EXPECT(strstr(g_err, "shape") != NULL);
#endif
#if !defined(FL_NO_PNG) && !defined(FL_NO_JPEG)
  /* truncated PNG and JPEG (good files cut in half, or cut by one byte), a 32x32 PNG, a 28x29 JPEG */
  static uint8_t px[32 * 32];
  for (int i = 0; i < 32 * 32; i++) px[i] = (uint8_t)(i * 7);
  char *png = path("t.png"), *jpg = path("t.jpg"), *big = path("big.png"), *tall = path("tall.jpg");
  EXPECT(write_png(png, 28, 28, PNG_FORMAT_GRAY, px));
  write_jpeg(jpg, 28, 28, 1, px, 90);
  EXPECT(write_png(big, 32, 32, PNG_FORMAT_GRAY, px));
  write_jpeg(tall, 28, 29, 1, px, 90);
  static char buf[1 << 16];
  const char *goods[2] = {png, jpg};
  for (int g = 0; g < 2; g++) {
    size_t n = read_file(goods[g], buf, sizeof buf);
    size_t cuts[3] = {n / 2, n - 1, 20};
    for (int c = 0; c < 3; c++) {
      char *cut = path(g ? "cut.jpg" : "cut.png");
      write_file(cut, buf, cuts[c]);
      BAD(1, cut, "predict", "--weights", g_w, goods[g], cut);
      EXPECTF(strstr(g_err, g ? "bad JPEG" : "bad PNG") != NULL, "cut at %zu of %zu: %s", cuts[c], n, g_err);
    }
  }
  BAD(1, big, "predict", "--weights", g_w, png, big);
  EXPECT(strstr(g_err, "32x32") && strstr(g_err, "28x28"));
  BAD(1, tall, "predict", "--weights", g_w, tall);
  EXPECT(strstr(g_err, "28x29"));
  /* a corrupt byte in the PNG's pixel data: its CRC */
  size_t n = read_file(png, buf, sizeof buf);
  buf[n - 20] ^= 0x55;
  write_file(path("crc.png"), buf, n);
  BAD(1, path("crc.png"), "predict", "--weights", g_w, path("crc.png"));
#endif
  /* IDX sets the model cannot take: 5x5 images, a label 12, a count mismatch */
  static uint8_t x[10 * 25], y[10];
  for (int i = 0; i < 10; i++) y[i] = (uint8_t)(i + 3);
  uint32_t d5[3] = {10, 5, 5}, dl[1] = {10}, dl9[1] = {9}, d28[3] = {10, 28, 28};
  write_idx(path("small-images"), 3, d5, x);
  write_idx(path("labels12"), 1, dl, y);
  write_idx(path("labels9"), 1, dl9, y);
  write_idx(path("images28"), 3, d28, g_test_x);
  BAD(1, "784", "predict", "--weights", g_w, "--images", path("small-images"));
  BAD(1, path("labels12"), "predict", "--weights", g_w, "--images", path("images28"), "--labels", path("labels12"));
  EXPECT(strstr(g_err, "label 12") != NULL);
  BAD(1, path("labels9"), "predict", "--weights", g_w, "--images", path("images28"), "--labels", path("labels9"));
}

static void test_bad_flags(void) {
  const char *w = g_w[0] ? g_w : "w.safetensors";
  BAD(2, "--weights", "predict", "--data", path("data"));
  BAD(2, "--weights", "predict", "--weights");
  BAD(2, "--labels", "predict", "--weights", w, "--labels", path("data/t10k-labels-idx1-ubyte"));
  BAD(2, "--images", "predict", "--weights", w, "--images", path("images28"), "a.png");
  BAD(2, "--data", "predict", "--weights", w, "--data", path("data"), "a.png");
  BAD(2, "--bs", "predict", "--weights", w, "--bs", "0");
  BAD(2, "--device", "predict", "--weights", w, "--device", "tpu");
  BAD(2, "--model", "predict", "--weights", w, "--model", "vgg");
  BAD(2, "--epochs", "predict", "--weights", w, "--epochs", "2");
  BAD(2, "--save", "predict", "--weights", w, "--save", "x.safetensors");
  BAD(2, "--bogus", "predict", "--weights", w, "--bogus");
  BAD(2, "--weights", "fit", "--weights", w);
  BAD(2, "--verbose", "fit", "--verbose");
  BAD(2, "a.png", "fit", "a.png");
  BAD(2, "--save-best", "fit", "--save-best", "accuracy");
  BAD(2, "--save-best", "fit", "--save-best", "f1", "--save", "x.safetensors");
  BAD(2, "--save-best", "lr_find", "--save-best", "loss", "--save", "x.safetensors");
  BAD(2, "--early-stop", "fit", "--early-stop", "0");
  BAD(2, "--early-stop", "fit", "--early-stop", "x");
  BAD(2, "--min-delta", "fit", "--early-stop", "2", "--min-delta", "-1");
  BAD(2, "--min-delta", "fit", "--min-delta", "0.1");
  int rc = CLI("predict", "--help");
  EXPECT(rc == 0 && strstr(g_out, "--weights") && strstr(g_out, "--save-best") && strstr(g_out, "--early-stop"));
}

/* fit --save-best / --early-stop through the CLI: the file holds the best epoch, whose accuracy
 * predict gives back; early stopping puts the best weights back before --save writes them. */
static void test_fit_best_and_early_stop(void) {
#ifdef FL_NO_CJSON
  SKIP("built without cJSON (CJSON=0): no safetensors weights");
#endif
  char *best = path("best.safetensors"), *log = path("best.jsonl");
  int rc = CLI("fit", "--data", path("data"), "--epochs", "6", "--bs", "64", "--lr", "0.6", "--no-progress", "--save",
               best, "--save-best", "accuracy", "--log", log, "--device", "cpu");
  EXPECTF(rc == 0, "rc %d: %s", rc, g_err);
  int be = -1;
  double ba = NAN;
  const char *l = strstr(g_out, "best weights (epoch ");
  EXPECTF(l && sscanf(l, "best weights (epoch %d, valid accuracy %lf)", &be, &ba) == 2, "%s", g_out);
  /* the log's best valid accuracy, first epoch reaching it */
  static char buf[1 << 16];
  read_file(log, buf, sizeof buf);
  double mx = -1;
  int mxe = -1;
  for (const char *p = buf; (p = strstr(p, "\"train\": false, \"accuracy\": ")); p++) {
    double a = atof(p + 29);
    const char *e = p;
    while (e > buf && strncmp(e, "{\"epoch\": ", 10)) e--;
    if (a > mx) mx = a, mxe = atoi(e + 10);
  }
  EXPECTF(be == mxe && fabs(ba - mx) < 5e-5, "saved epoch %d (%.4f); the log's best: epoch %d (%.6f)", be, ba, mxe, mx);
  rc = CLI("predict", "--weights", best, "--data", path("data"), "--bs", "128");
  EXPECTF(rc == 0 && fabs(last_accuracy(g_out) - mx) < 5e-5, "predict: %s, best valid accuracy %.6f", g_out, mx);
  /* early stopping on the valid loss with patience 1 and a huge min_delta: stops after epoch 1,
   * puts epoch 0's weights back, and --save writes those */
  char *es = path("es.safetensors");
  rc = CLI("fit", "--data", path("data"), "--epochs", "5", "--bs", "64", "--no-progress", "--save", es, "--early-stop",
           "1", "--min-delta", "100", "--log", log, "--device", "cpu");
  EXPECTF(rc == 0 && strstr(g_out, "early stop: no better valid loss for 1 epochs, stopped after epoch 1; weights of epoch 0"),
          "rc %d: %s", rc, g_out);
  read_file(log, buf, sizeof buf);
  EXPECTF(count_lines(buf) == 4, "4 phases logged (2 epochs):\n%s", buf);
  const char *v0 = strstr(buf, "\"train\": false, \"accuracy\": ");
  double a0 = v0 ? atof(v0 + 29) : NAN;
  rc = CLI("predict", "--weights", es, "--data", path("data"), "--bs", "128");
  EXPECTF(rc == 0 && fabs(last_accuracy(g_out) - a0) < 5e-5, "predict %s; epoch 0's valid accuracy %.6f", g_out, a0);
}

/* On a GPU: the CPU's classes for every image, probabilities within 1.5e-4 (printed to 4
 * decimals; cuBLAS and oneDNN round differently, ~1e-7), the same accuracy; batches full and
 * partial. */
static void test_predict_gpu(void) {
  if (!fl_cuda_available()) SKIP("no CUDA device (or a build without the CUDA backend)");
  if (!g_w[0]) SKIP("no weights (test_fit_then_predict failed)");
  int cls[2][N_TEST];
  float pr[2][N_TEST];
  double acc[2];
  const char *devs[2] = {"cpu", "cuda"};
  for (int d = 0; d < 2; d++) {
    int rc = CLI("predict", "--weights", g_w, "--images", path("data/t10k-images-idx3-ubyte"), "--labels",
                 path("data/t10k-labels-idx1-ubyte"), "--verbose", "--bs", "32", "--device", devs[d]);
    EXPECTF(rc == 0 && count_lines(g_out) == N_TEST + 2, "%s: rc %d: %s", devs[d], rc, g_err);
    acc[d] = last_accuracy(g_out);
    const char *p = g_out;
    for (int i = 0; i < N_TEST && p; i++) {
      const char *q = strstr(p, ": class ");
      EXPECT(q && sscanf(q, ": class %d", &cls[d][i]) == 1);
      q = q ? strstr(q, " p=") : NULL;
      EXPECT(q && sscanf(q, " p=%f", &pr[d][i]) == 1);
      p = strchr(p, '\n');
      p = p ? p + 1 : NULL;
    }
  }
  int diff = 0;
  float dp = 0;
  for (int i = 0; i < N_TEST; i++) diff += cls[0][i] != cls[1][i], dp = fmaxf(dp, fabsf(pr[0][i] - pr[1][i]));
  EXPECTF(diff == 0 && dp <= 1.5e-4f && acc[0] == acc[1], "%d classes differ, max |dp| %g, accuracy %g / %g", diff, dp,
          acc[0], acc[1]);
  int rc = CLI("predict", "--weights", g_w, "--data", path("data"), "--device", "cuda");
  EXPECTF(rc == 0 && fabs(last_accuracy(g_out) - g_fit_acc) < 5e-5 && strstr(g_out, "on cuda"), "rc %d: %s %s", rc, g_out,
          g_err);
}

/* ---- PyTorch loads what fit wrote and gets predict's accuracy on the real test set ---- */
static const char torch_script[] =
    "import gzip, json, os, struct, sys, torch\n"
    "from torch import nn\n"
    "b = open(sys.argv[1], 'rb').read()\n"
    "n = struct.unpack('<Q', b[:8])[0]\n"
    "h = json.loads(b[8:8 + n]); h.pop('__metadata__', None)\n"
    "data = bytearray(b[8 + n:])\n"
    "sd = {k: torch.frombuffer(data, dtype=torch.float32, offset=v['data_offsets'][0],\n"
    "                          count=(v['data_offsets'][1] - v['data_offsets'][0]) // 4).reshape(v['shape'])\n"
    "      for k, v in h.items()}\n"
    "m = nn.Sequential(nn.Linear(784, 50), nn.ReLU(), nn.Linear(50, 10))\n"
    "m.load_state_dict(sd, strict=True)\n"
    "def idx(name):\n"
    "    p = os.path.join(sys.argv[2], name)\n"
    "    raw = gzip.open(p + '.gz').read() if os.path.exists(p + '.gz') else open(p, 'rb').read()\n"
    "    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], 'big') for i in range(raw[3])]\n"
    "    return torch.frombuffer(bytearray(raw[4 + 4 * raw[3]:]), dtype=torch.uint8).reshape(dims)\n"
    "x = idx('t10k-images-idx3-ubyte').reshape(-1, 784).float() / 255\n"
    "y = idx('t10k-labels-idx1-ubyte').long()\n"
    "with torch.no_grad():\n"
    "    acc = (m(x).argmax(1) == y).float().mean().item()\n"
    "print(f'accuracy: {acc:.4f}')\n";

static void test_pytorch_same_accuracy(void) {
#ifdef FL_NO_CJSON
  SKIP("built without cJSON (CJSON=0): no safetensors weights");
#endif
  const char *dir = "/usr/share/datasets/fashion-mnist";
  struct stat st;
  if (stat(dir, &st) != 0) SKIP("no Fashion-MNIST at /usr/share/datasets/fashion-mnist (dataset-fashion-mnist)");
  if (system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") != 0)
    SKIP("no PyTorch at /usr/bin/python3 (apt-get install python3-torch)");
  char *w = path("fmnist.safetensors"), *log = path("fmnist.jsonl"), *py = path("torch_acc.py");
  int rc = CLI("fit", "--data", dir, "--epochs", "1", "--no-progress", "--save", w, "--log", log, "--device", "cpu");
  EXPECTF(rc == 0, "fit: rc %d: %s", rc, g_err);
  double fit_acc = log_accuracy(log);
  rc = CLI("predict", "--weights", w, "--data", dir, "--device", "cpu");
  double ours = last_accuracy(g_out);
  EXPECTF(rc == 0 && isfinite(ours), "predict: rc %d: %s %s", rc, g_out, g_err);
  EXPECTF(fabs(ours - fit_acc) < 5e-5, "predict %.4f, the fit's valid accuracy %.6f", ours, fit_acc);
  write_file(py, torch_script, strlen(torch_script));
  char cmd[800];
  snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s %s %s 2>&1", py, w, dir);
  FILE *f = popen(cmd, "r");
  char line[256] = "";
  double theirs = NAN;
  if (f && fgets(line, sizeof line, f)) sscanf(line, "accuracy: %lf", &theirs);
  EXPECT(f && pclose(f) == 0);
  char a[16], b[16];
  snprintf(a, sizeof a, "%.4f", ours), snprintf(b, sizeof b, "%.4f", theirs);
  printf("  Fashion-MNIST test set, 1 epoch: flexlearn predict %s, PyTorch %s, fit's valid %.6f\n", a, b, fit_acc);
  EXPECTF(!strcmp(a, b), "flexlearn %s, PyTorch %s (%s)", a, b, line);
  unlink(w), unlink(log), unlink(py);
}

#ifdef FL_NO_CJSON
/* CJSON=0: no safetensors, so no weights to predict with: one line saying why, exit 1 */
static void test_without_cjson(void) {
  char *w = path("w.safetensors");
  write_file(w, "", 0);
  BAD(1, "CJSON=0", "predict", "--weights", w, "--data", path("data"));
}
#endif

int main(void) {
  g_cli = getenv("FLEXLEARN_CLI");
  if (!g_cli || !*g_cli) g_cli = "build/flexlearn";
  if (access(g_cli, X_OK) != 0) {
    printf("skip all: %s not found (set FLEXLEARN_CLI)\ntests: 0 passed, 0 failed, 1 skipped\n", g_cli);
    return 0;
  }
  fl_init(1);
  if (!mkdtemp(g_dir)) return perror("mkdtemp"), 2;
  make_data();
#ifdef FL_NO_CJSON
  RUN(test_without_cjson);
#endif
  RUN(test_fit_then_predict);
  RUN(test_image_files);
  RUN(test_grey_as_pil);
  RUN(test_bad_files);
  RUN(test_bad_flags);
  RUN(test_fit_best_and_early_stop);
  RUN(test_predict_gpu);
  RUN(test_pytorch_same_accuracy);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
  if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", g_dir);
  return test_summary();
}
