/* The flexlearn command line: bad input gives one clear line on stderr naming the flag (or file)
 * and a non-zero exit, and writes no output file; a small run on a synthetic Fashion-MNIST-shaped
 * data directory prints the lesson's lines, writes the jsonl log and the PNG, and is
 * deterministic for a seed; lr_find suggests an lr. The binary is $FLEXLEARN_CLI
 * (default build/flexlearn). */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "flexlearn.h"
#include "cli_run.h"
#include "test.h"

static char g_dir[64] = "/tmp/fl_test_cli_XXXXXX";
static const char *g_cli;
static char g_out[1 << 16], g_err[1 << 16];

/* ---- files ---- */
static char *path_in(char *buf, size_t n, const char *name) {
  snprintf(buf, n, "%s/%s", g_dir, name);
  return buf;
}

static int exists(const char *p) {
  struct stat st;
  return stat(p, &st) == 0;
}


static void write_be32(FILE *f, uint32_t v) {
  unsigned char b[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16), (unsigned char)(v >> 8), (unsigned char)v};
  fwrite(b, 1, 4, f);
}

/* An IDX file of unsigned bytes; `cut` bytes of payload left off (a truncated file). */
static void write_idx(const char *dir, const char *name, int ndim, const uint32_t *dims, const uint8_t *data, size_t cut) {
  char p[256];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  FILE *f = fopen(p, "wb");
  FL_CHECK(f, "cannot write %s", p);
  fputc(0, f), fputc(0, f), fputc(8, f), fputc(ndim, f);
  size_t n = 1;
  for (int i = 0; i < ndim; i++) write_be32(f, dims[i]), n *= dims[i];
  fwrite(data, 1, n - cut, f);
  fclose(f);
}

/* A Fashion-MNIST-shaped directory: n_train / n_test images of side x side, labels i % n_classes
 * (one bright block per class, so there is something to learn). */
static void make_data(const char *sub, uint32_t n_train, uint32_t n_test, uint32_t side, int n_classes,
                      uint32_t n_train_labels, size_t cut_train_images) {
  char dir[192];
  path_in(dir, sizeof dir, sub);
  mkdir(dir, 0700);
  fl_rng r = fl_rng_make(5, FL_STREAM_USER);
  for (int split = 0; split < 2; split++) {
    uint32_t n = split ? n_test : n_train, px = side * side;
    uint8_t *x = malloc((size_t)n * px), *y = malloc(n);
    for (uint32_t i = 0; i < n; i++) {
      y[i] = (uint8_t)(i % (uint32_t)n_classes);
      for (uint32_t k = 0; k < px; k++)
        x[(size_t)i * px + k] = (uint8_t)(k / 64 == (uint32_t)y[i] % 12 ? 200 + fl_rng_below(&r, 56) : fl_rng_below(&r, 60));
    }
    uint32_t idims[3] = {n, side, side}, ldims[1] = {split ? n : n_train_labels};
    write_idx(dir, split ? "t10k-images-idx3-ubyte" : "train-images-idx3-ubyte", 3, idims, x, split ? 0 : cut_train_images);
    write_idx(dir, split ? "t10k-labels-idx1-ubyte" : "train-labels-idx1-ubyte", 1, ldims, y, 0);
    free(x), free(y);
  }
}

static void rm_data(const char *sub) {
  static const char *names[4] = {"train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                                 "t10k-labels-idx1-ubyte"};
  char p[256];
  for (int i = 0; i < 4; i++) {
    snprintf(p, sizeof p, "%s/%s/%s", g_dir, sub, names[i]);
    unlink(p);
  }
  snprintf(p, sizeof p, "%s/%s", g_dir, sub);
  rmdir(p);
}

/* ---- running the CLI: argv NULL-terminated; stdout / stderr into g_out / g_err ---- */
/* Starts it in the background, stdout / stderr into files that finish_cli reads. */
static pid_t spawn_cli_v(const char *const *args) { return cli_spawn(g_cli, g_dir, NULL, args); }

/* Waits for it (120 s at most), reads its output; the exit code, or 128 + the signal. */
static int finish_cli(pid_t pid) { return cli_finish(pid, g_cli, g_dir, 120, g_out, sizeof g_out, g_err, sizeof g_err); }
static int run_cli_v(const char *const *args) { return finish_cli(spawn_cli_v(args)); }
#define CLI(...) run_cli_v((const char *const[]){__VA_ARGS__, NULL})

static int count_lines(const char *s) {
  int n = 0;
  for (; *s; s++) n += *s == '\n';
  return n;
}

/* One line, "flexlearn: ...", ending in '\n', containing `needle`. */
static int one_line_naming(const char *s, const char *needle) {
  size_t n = strlen(s);
  return n > 12 && count_lines(s) == 1 && s[n - 1] == '\n' && !strncmp(s, "flexlearn: ", 11) && strstr(s, needle);
}

static char g_log[192], g_png[192];

/* A usage / data error: rc, one stderr line naming `needle`, nothing on stdout, no files. */
static void expect_bad(int want_rc, const char *needle, const char *const *args) {
  char tmp[220];
  snprintf(tmp, sizeof tmp, "%s.tmp", g_log);
  unlink(g_log), unlink(g_png), unlink(tmp);
  int rc = run_cli_v(args);
  char cmd[512] = "";
  for (int i = 0; args[i]; i++) strcat(cmd, args[i]), strcat(cmd, " ");
  EXPECTF(rc == want_rc, "`%s`: exit %d, want %d (stderr: %s)", cmd, rc, want_rc, g_err);
  EXPECTF(one_line_naming(g_err, needle), "`%s`: stderr should be one line naming '%s':\n%s", cmd, needle, g_err);
  EXPECTF(g_out[0] == 0, "`%s`: stdout: %s", cmd, g_out);
  EXPECTF(!exists(g_log) && !exists(g_png) && !exists(tmp), "`%s` left an output file", cmd);
}
#define BAD(rc, needle, ...) expect_bad(rc, needle, (const char *const[]){__VA_ARGS__, NULL})

static char g_good[192];
static char g_conv[192];

static void test_help(void) {
  EXPECT(CLI("--help") == 0);
  EXPECT(strstr(g_out, "usage: flexlearn") && strstr(g_out, "--lr") && g_err[0] == 0);
  EXPECT(CLI("fit", "--help") == 0);
  EXPECT(strstr(g_out, "usage: flexlearn") && g_err[0] == 0);
  EXPECT(CLI("lr_find", "-h") == 0);
  EXPECT(strstr(g_out, "usage: flexlearn"));
  int rc = CLI("fit", "--epochs");   /* no value */
  EXPECT(rc == 2);
  rc = run_cli_v((const char *const[]){NULL});   /* no command: usage on stderr */
  EXPECT(rc == 2 && strstr(g_err, "usage:") && g_out[0] == 0);
}

static void test_bad_flags(void) {
  BAD(2, "--bogus", "fit", "--bogus", "--log", g_log, "--plot", g_png);
  BAD(2, "--lr", "fit", "--log", g_log, "--plot", g_png, "--lr");
  BAD(2, "--lr", "fit", "--lr", "abc", "--log", g_log, "--plot", g_png);
  BAD(2, "--lr", "fit", "--lr", "0.1x", "--log", g_log, "--plot", g_png);
  BAD(2, "--lr", "fit", "--lr", "-1", "--log", g_log, "--plot", g_png);
  BAD(2, "--lr", "fit", "--lr", "0", "--log", g_log, "--plot", g_png);
  BAD(2, "--lr", "fit", "--lr", "nan", "--log", g_log, "--plot", g_png);
  BAD(2, "--lr", "fit", "--lr", "inf", "--log", g_log, "--plot", g_png);
  BAD(2, "--bs", "fit", "--bs", "0", "--log", g_log, "--plot", g_png);
  BAD(2, "--bs", "fit", "--bs", "", "--log", g_log, "--plot", g_png);
  BAD(2, "--epochs", "fit", "--epochs", "-1", "--log", g_log, "--plot", g_png);
  BAD(2, "--epochs", "fit", "--epochs", "2.5", "--log", g_log, "--plot", g_png);
  BAD(2, "--mom", "fit", "--mom", "1.5", "--log", g_log, "--plot", g_png);
  BAD(2, "--mom", "fit", "--mom", "1", "--log", g_log, "--plot", g_png);
  BAD(2, "--threads", "fit", "--threads", "0", "--log", g_log, "--plot", g_png);
  BAD(2, "--workers", "fit", "--workers", "-1", "--log", g_log, "--plot", g_png);
  BAD(2, "--seed", "fit", "--seed", "-3", "--log", g_log, "--plot", g_png);
  BAD(2, "--seed", "fit", "--seed", "99999999999999999999999", "--log", g_log, "--plot", g_png);
  BAD(2, "--device", "fit", "--device", "gpu", "--log", g_log, "--plot", g_png);
  BAD(2, "--model", "fit", "--model", "vgg", "--log", g_log, "--plot", g_png);
  BAD(2, "--opt", "fit", "--opt", "lamb", "--log", g_log, "--plot", g_png);
  EXPECTF(strstr(g_err, "sgd") && strstr(g_err, "momentum") && strstr(g_err, "rmsprop") && strstr(g_err, "adam or") &&
              strstr(g_err, "adamw"),
          "should name the allowed values: %s", g_err);
  BAD(2, "--opt", "fit", "--opt", "", "--log", g_log, "--plot", g_png);
  BAD(2, "--sched", "fit", "--sched", "linear", "--log", g_log, "--plot", g_png);
  EXPECTF(strstr(g_err, "none") && strstr(g_err, "onecycle") && strstr(g_err, "cosine") && strstr(g_err, "exp") &&
              strstr(g_err, "step") && strstr(g_err, "warmup"),
          "should name the allowed values: %s", g_err);
  BAD(2, "--sched-steps", "fit", "--sched-steps", "0", "--sched", "cosine", "--log", g_log, "--plot", g_png);
  BAD(2, "--sched-steps", "fit", "--sched-steps", "100", "--log", g_log, "--plot", g_png);   /* no --sched */
  BAD(2, "--record", "fit", "--record", "rec.txt", "--log", g_log, "--plot", g_png);
  BAD(2, "--record", "lr_find", "--record", "rec.png", "--data", g_good, "--plot", g_png);
  BAD(2, "--sched", "lr_find", "--sched", "onecycle", "--data", g_good, "--plot", g_png);
  BAD(2, "--wd", "fit", "--wd", "-0.1", "--log", g_log, "--plot", g_png);
  BAD(2, "--wd", "fit", "--wd", "x", "--log", g_log, "--plot", g_png);
  BAD(2, "--wd", "fit", "--wd", "nan", "--log", g_log, "--plot", g_png);
  BAD(2, "--dropout", "fit", "--dropout", "1", "--model", "resnet", "--log", g_log, "--plot", g_png);
  BAD(2, "--dropout", "fit", "--dropout", "-0.5", "--model", "resnet", "--log", g_log, "--plot", g_png);
  BAD(2, "--dropout", "fit", "--dropout", "0.1", "--log", g_log, "--plot", g_png);   /* the mlp has no place for one */
  BAD(2, "--dropout", "predict", "--weights", g_log, "--model", "cnn", "--dropout", "0.2");
  BAD(2, "--plot", "fit", "--plot", "x.txt", "--log", g_log);
  BAD(2, "--plot", "lr_find", "--plot", "png", "--data", g_good);
  char missing_log[256], missing_png[256];
  snprintf(missing_log, sizeof missing_log, "%s/no/such/dir/x.jsonl", g_dir);
  snprintf(missing_png, sizeof missing_png, "%s/no/such/dir/x.png", g_dir);
  BAD(2, "--log", "fit", "--data", g_good, "--log", missing_log, "--plot", g_png);
  BAD(2, "--csv", "fit", "--data", g_good, "--csv", missing_log, "--log", g_log, "--plot", g_png);
  BAD(2, "--plot", "fit", "--data", g_good, "--log", g_log, "--plot", missing_png);
  BAD(2, "--plot", "lr_find", "--data", g_good, "--plot", missing_png);
  char missing_st[256];
  snprintf(missing_st, sizeof missing_st, "%s/no/such/dir/w.safetensors", g_dir);
  BAD(2, "--save", "fit", "--data", g_good, "--save", "w.bin", "--log", g_log, "--plot", g_png);
  BAD(2, "--save", "fit", "--data", g_good, "--save", missing_st, "--log", g_log, "--plot", g_png);
  BAD(2, "train", "train", "--data", g_good);
  BAD(2, "--epochs", "--epochs", "1");
}

static void test_bad_data(void) {
  char d[192];
  path_in(d, sizeof d, "no_such_dir");
  BAD(1, d, "fit", "--data", d, "--device", "cpu", "--log", g_log, "--plot", g_png);
  path_in(d, sizeof d, "trunc");
  BAD(1, "train-images-idx3-ubyte", "fit", "--data", d, "--device", "cpu", "--log", g_log, "--plot", g_png);
  path_in(d, sizeof d, "mism");
  BAD(1, "train-labels-idx1-ubyte", "fit", "--data", d, "--device", "cpu", "--log", g_log, "--plot", g_png);
  EXPECT(strstr(g_err, "mismatch") != NULL);
  path_in(d, sizeof d, "small");   /* 5x5 images: the model needs 28x28 */
  BAD(1, "784", "fit", "--data", d, "--device", "cpu", "--log", g_log, "--plot", g_png);
  BAD(1, "784", "lr_find", "--data", d, "--device", "cpu", "--plot", g_png);
  path_in(d, sizeof d, "badlab");  /* a label 11: the model has 10 outputs */
  BAD(1, "label", "fit", "--data", d, "--device", "cpu", "--log", g_log, "--plot", g_png);
  path_in(d, sizeof d, "empty");   /* a directory without the files */
  mkdir(d, 0700);
  BAD(1, "train-images-idx3-ubyte", "fit", "--data", d, "--device", "cpu", "--log", g_log, "--plot", g_png);
  rmdir(d);
}

static void test_device(void) {
  if (fl_cuda_available()) SKIP("a GPU is present: the no-GPU paths cannot be checked");
  /* --device cuda without a GPU: exit 1, one line naming why (no driver, no device, no plugin,
   * or a build without CUDA) */
  BAD(1, "--device", "fit", "--device", "cuda", "--data", g_good, "--log", g_log, "--plot", g_png);
  EXPECTF(strstr(g_err, "CUDA") != NULL, "stderr: %s", g_err);
  unlink(g_log);
  /* --device auto (the default) without a GPU: the CPU, silently */
  int rc = CLI("fit", "--device", "auto", "--data", g_good, "--epochs", "1", "--bs", "64", "--no-progress");
  EXPECTF(rc == 0, "rc %d: %s", rc, g_err);
  EXPECTF(g_err[0] == 0, "stderr should be empty: %s", g_err);
  EXPECT(strstr(g_out, "'train': False}") != NULL);
  rc = CLI("fit", "--data", g_good, "--epochs", "1", "--bs", "64", "--no-progress");
  EXPECTF(rc == 0 && g_err[0] == 0, "rc %d, stderr: %s", rc, g_err);
}

/* "{'accuracy': '0.xxx', 'loss': 'x.xxx', 'epoch': E, 'train': True|False}" */
static int lit(const char **p, const char *s) {
  size_t n = strlen(s);
  if (strncmp(*p, s, n)) return 0;
  *p += n;
  return 1;
}
static int num3(const char **p) {
  const char *s = *p;
  int d = 0;
  while (*s >= '0' && *s <= '9') s++, d++;
  if (!d || *s != '.') return 0;
  s++;
  for (int i = 0; i < 3; i++, s++)
    if (*s < '0' || *s > '9') return 0;
  *p = s;
  return 1;
}
static int lesson_line(const char *s, int epoch, int train) {
  char tail[64];
  snprintf(tail, sizeof tail, "', 'epoch': %d, 'train': %s}\n", epoch, train ? "True" : "False");
  const char *p = s;
  return lit(&p, "{'accuracy': '") && num3(&p) && lit(&p, "', 'loss': '") && num3(&p) && lit(&p, tail);
}

/* The "seconds" values blanked (the only part of the log that is not deterministic). */
static void strip_seconds(char *s) {
  for (char *p = s; (p = strstr(p, "\"seconds\": "));) {
    p += 11;
    char *q = p;
    while ((*q >= '0' && *q <= '9') || *q == '.' || *q == 'e' || *q == '-' || *q == '+') q++;
    memmove(p, q, strlen(q) + 1);
  }
}

static void test_fit_run(void) {
#ifdef FL_NO_CAIRO
  SKIP("built without cairo (CAIRO=0): the run writes plots");
#endif
  char log2[192], png2[192], tmp[220];
  path_in(log2, sizeof log2, "y.jsonl");
  path_in(png2, sizeof png2, "y.png");
  unlink(g_log), unlink(g_png);
  int rc = CLI("fit", "--data", g_good, "--epochs", "1", "--bs", "32", "--no-progress", "--device", "cpu",
               "--seed", "7", "--log", g_log, "--plot", g_png);
  EXPECTF(rc == 0, "rc %d: %s", rc, g_err);
  EXPECTF(g_err[0] == 0, "stderr: %s", g_err);
  char out1[4096];
  memcpy(out1, g_out, sizeof out1 - 1);
  out1[sizeof out1 - 1] = 0;
  /* exactly: the train line, the valid line, the weights hash */
  EXPECTF(count_lines(out1) == 3, "stdout:\n%s", out1);
  EXPECTF(lesson_line(out1, 0, 1), "line 1: %s", out1);
  const char *l2 = strchr(out1, '\n');
  EXPECTF(l2 && lesson_line(l2 + 1, 0, 0), "line 2: %s", l2 ? l2 + 1 : "");
  const char *l3 = l2 ? strchr(l2 + 1, '\n') : NULL;
  unsigned long long h = 0;
  char nl = 0;
  EXPECTF(l3 && sscanf(l3 + 1, "weights fnv1a %16llx%c", &h, &nl) == 2 && nl == '\n' && strlen(l3 + 1) == 31,
          "line 3: %s", l3 ? l3 + 1 : "");
  /* the log: 2 lines with the fields; the png */
  char j1[4096];
  read_file(g_log, j1, sizeof j1);
  EXPECTF(count_lines(j1) == 2, "jsonl:\n%s", j1);
  EXPECT(!strncmp(j1, "{\"epoch\": 0, \"train\": true, ", 28));
  const char *j2 = strchr(j1, '\n');
  EXPECT(j2 && !strncmp(j2 + 1, "{\"epoch\": 0, \"train\": false, ", 29));
  for (const char *k = j1; k && *k; k = strchr(k, '\n'), k = k ? k + 1 : NULL)
    if (*k) EXPECTF(strstr(k, "\"loss\": ") && strstr(k, "\"accuracy\": ") && strstr(k, "\"seconds\": "), "%s", k);
  snprintf(tmp, sizeof tmp, "%s.tmp", g_log);
  EXPECT(!exists(tmp));
  char pngh[16] = {0};
  FILE *pf = fopen(g_png, "rb");
  EXPECTF(pf != NULL, "no %s", g_png);
  if (pf) {
    EXPECT(fread(pngh, 1, 8, pf) == 8 && !memcmp(pngh, "\x89PNG\r\n\x1a\n", 8));
    fclose(pf);
  }

  /* --csv: a header and the same two records */
  char csv[192], cs[4096];
  path_in(csv, sizeof csv, "x.csv");
  rc = CLI("fit", "--data", g_good, "--epochs", "1", "--bs", "32", "--no-progress", "--device", "cpu", "--seed", "7",
           "--csv", csv);
  EXPECTF(rc == 0 && !strcmp(g_out, out1), "rc %d: %s", rc, g_err);
  read_file(csv, cs, sizeof cs);
  EXPECTF(count_lines(cs) == 3 && !strncmp(cs, "epoch,train,accuracy,loss,seconds,weights_fnv1a\n0,true,", 55) &&
              strstr(cs, "\n0,false,"),
          "csv:\n%s", cs);
  unlink(csv);

#ifndef FL_NO_CJSON
  /* --save: the same run, then the weights in a safetensors file (the 8-byte header length, the
   * JSON naming the four tensors, 4 bytes per parameter) whose reload gives the printed hash */
  char st[192], msg[4400];
  path_in(st, sizeof st, "w.safetensors");
  rc = CLI("fit", "--data", g_good, "--epochs", "1", "--bs", "32", "--no-progress", "--device", "cpu", "--seed", "7",
           "--save", st);
  snprintf(msg, sizeof msg, "%sweights saved to %s\n", out1, st);
  EXPECTF(rc == 0 && !strcmp(g_out, msg), "rc %d: %s%s", rc, g_out, g_err);
  struct stat sb;
  EXPECT(stat(st, &sb) == 0);
  fl_module *m = fl_get_model(1, 784, 50, 10);
  EXPECT(fl_load_safetensors(m, st) == FL_OK);
  EXPECTF(h && fl_module_hash(m) == h, "reloaded %016llx, printed %016llx", (unsigned long long)fl_module_hash(m), h);
  fl_module_free(m);
  unlink(st);
#endif

  /* the same seed: identical stdout and log (but the seconds); another loader thread count too */
  rc = CLI("fit", "--data", g_good, "--epochs", "1", "--bs", "32", "--no-progress", "--device", "cpu", "--seed",
           "7", "--log", log2, "--plot", png2, "--workers", "0");
  EXPECTF(rc == 0, "rc %d: %s", rc, g_err);
  EXPECTF(!strcmp(g_out, out1), "second run:\n%s\nfirst:\n%s", g_out, out1);
  char jj[4096];
  read_file(log2, jj, sizeof jj);
  strip_seconds(j1), strip_seconds(jj);
  EXPECTF(!strcmp(j1, jj), "logs differ:\n%s\n%s", j1, jj);
  EXPECT(exists(png2));
  unlink(log2), unlink(png2);

  /* another seed: other weights */
  rc = CLI("fit", "--data", g_good, "--epochs", "1", "--bs", "32", "--no-progress", "--device", "cpu", "--seed", "8");
  EXPECT(rc == 0);
  EXPECT(count_lines(g_out) == 3 && strcmp(g_out, out1) && !strstr(g_out, l3 ? l3 + 1 : "x"));

  /* with the progress callback (stdout is not a terminal): the same lesson lines, then the hash;
   * and MomentumLearner runs */
  rc = CLI("fit", "--data", g_good, "--epochs", "2", "--bs", "64", "--device", "cpu", "--mom", "0.5");
  EXPECTF(rc == 0, "rc %d: %s", rc, g_err);
  EXPECTF(count_lines(g_out) == 5 && lesson_line(g_out, 0, 1) && strstr(g_out, "'epoch': 1, 'train': False}\n") &&
              strstr(g_out, "weights fnv1a "),
          "stdout:\n%s", g_out);
  EXPECT(!strchr(g_out, '\r') && !strchr(g_out, '\033'));
  /* --epochs 0 trains nothing and succeeds */
  rc = CLI("fit", "--data", g_good, "--epochs", "0", "--device", "cpu", "--no-progress");
  EXPECT(rc == 0 && count_lines(g_out) == 1 && !strncmp(g_out, "weights fnv1a ", 14));
  unlink(g_log), unlink(g_png);
}

/* --opt adamw --sched onecycle: runs, prints the lesson lines and a hash, the same hash twice
 * (and at 1 thread), another than plain SGD's; --wd changes it; the explicit defaults
 * (--opt sgd --sched none --wd 0) give plain SGD's hash exactly. */
static void test_fit_adamw_onecycle(void) {
  static char out1[sizeof g_out], sgd[sizeof g_out];
  int rc = CLI("fit", "--data", g_good, "--epochs", "2", "--bs", "32", "--no-progress", "--device", "cpu", "--seed",
               "7", "--opt", "adamw", "--sched", "onecycle", "--lr", "1e-2");
  EXPECTF(rc == 0 && g_err[0] == 0, "rc %d: %s", rc, g_err);
  EXPECTF(count_lines(g_out) == 5 && lesson_line(g_out, 0, 1) && strstr(g_out, "'epoch': 1, 'train': False}\n") &&
              strstr(g_out, "weights fnv1a "),
          "stdout:\n%s", g_out);
  snprintf(out1, sizeof out1, "%s", g_out);
  rc = CLI("fit", "--data", g_good, "--epochs", "2", "--bs", "32", "--no-progress", "--device", "cpu", "--seed", "7",
           "--opt", "adamw", "--sched", "onecycle", "--lr", "1e-2");
  EXPECTF(rc == 0 && !strcmp(g_out, out1), "second run differs:\n%s\nfirst:\n%s", g_out, out1);
  rc = CLI("fit", "--data", g_good, "--epochs", "2", "--bs", "32", "--no-progress", "--device", "cpu", "--seed", "7",
           "--opt", "adamw", "--sched", "onecycle", "--lr", "1e-2", "--threads", "1");
  EXPECTF(rc == 0 && !strcmp(g_out, out1), "1 thread differs:\n%s\n2 threads:\n%s", g_out, out1);
  rc = CLI("fit", "--data", g_good, "--epochs", "2", "--bs", "32", "--no-progress", "--device", "cpu", "--seed", "7",
           "--opt", "adamw", "--sched", "onecycle", "--lr", "1e-2", "--wd", "0.1");
  EXPECTF(rc == 0 && strcmp(g_out, out1), "--wd 0.1 changed nothing (rc %d)", rc);
  rc = CLI("fit", "--data", g_good, "--epochs", "2", "--bs", "32", "--no-progress", "--device", "cpu", "--seed", "7",
           "--lr", "1e-2");
  snprintf(sgd, sizeof sgd, "%s", g_out);
  EXPECTF(rc == 0 && strcmp(sgd, out1), "adamw + onecycle gave plain SGD's output (rc %d)", rc);
  rc = CLI("fit", "--data", g_good, "--epochs", "2", "--bs", "32", "--no-progress", "--device", "cpu", "--seed", "7",
           "--lr", "1e-2", "--opt", "sgd", "--sched", "none", "--wd", "0");
  EXPECTF(rc == 0 && !strcmp(g_out, sgd), "explicit defaults differ from plain SGD:\n%s\n%s", g_out, sgd);
  /* sgd + onecycle (momentum cycled, as torch does) and adamw without a schedule run too */
  rc = CLI("fit", "--data", g_good, "--epochs", "1", "--bs", "32", "--no-progress", "--device", "cpu", "--opt", "sgd",
           "--sched", "onecycle");
  EXPECTF(rc == 0 && g_err[0] == 0 && count_lines(g_out) == 3, "rc %d: %s", rc, g_err);
  rc = CLI("fit", "--data", g_good, "--epochs", "1", "--bs", "32", "--no-progress", "--device", "cpu", "--opt", "adamw",
           "--lr", "1e-3");
  EXPECTF(rc == 0 && g_err[0] == 0 && count_lines(g_out) == 3, "rc %d: %s", rc, g_err);
}

/* --opt momentum|rmsprop|adam (12_accel_sgd's): each runs, gives the same output twice,
 * differs from the others and from sgd; --wd changes it. */
static void test_fit_notebook_opts(void) {
  static char outs[4][sizeof g_out];
  const char *names[4] = {"sgd", "momentum", "rmsprop", "adam"};
  const char *lrs[4] = {"0.1", "0.1", "3e-3", "6e-3"};
  for (int k = 0; k < 4; k++) {
    int rc = CLI("fit", "--data", g_good, "--epochs", "2", "--bs", "32", "--no-progress", "--device", "cpu", "--seed",
                 "7", "--opt", names[k], "--lr", lrs[k]);
    EXPECTF(rc == 0 && g_err[0] == 0 && count_lines(g_out) == 5 && strstr(g_out, "weights fnv1a "), "%s: rc %d: %s",
            names[k], rc, g_err);
    snprintf(outs[k], sizeof outs[k], "%s", g_out);
    rc = CLI("fit", "--data", g_good, "--epochs", "2", "--bs", "32", "--no-progress", "--device", "cpu", "--seed", "7",
             "--opt", names[k], "--lr", lrs[k]);
    EXPECTF(rc == 0 && !strcmp(g_out, outs[k]), "--opt %s: second run differs:\n%s\nfirst:\n%s", names[k], g_out,
            outs[k]);
    for (int j = 0; j < k; j++) EXPECTF(strcmp(outs[j], outs[k]), "--opt %s gave --opt %s's output", names[k], names[j]);
    if (k) {
      rc = CLI("fit", "--data", g_good, "--epochs", "2", "--bs", "32", "--no-progress", "--device", "cpu", "--seed", "7",
               "--opt", names[k], "--lr", lrs[k], "--wd", "0.5");
      EXPECTF(rc == 0 && strcmp(g_out, outs[k]), "--opt %s --wd 0.5 changed nothing (rc %d)", names[k], rc);
    }
  }
}

/* --sched cosine|exp|step|warmup: each runs, gives the same output twice, differs from the
 * others and from no schedule; --sched-steps shorter than the fit is refused (exit 2, one line
 * naming the flag), a longer one runs and differs from the whole-fit schedule. */
static void test_fit_schedules(void) {
  static char outs[5][sizeof g_out];
  const char *names[5] = {"none", "cosine", "exp", "step", "warmup"};
  for (int k = 0; k < 5; k++) {
    int rc = CLI("fit", "--data", g_good, "--epochs", "2", "--bs", "32", "--no-progress", "--device", "cpu", "--seed",
                 "7", "--sched", names[k], "--lr", "0.1");
    EXPECTF(rc == 0 && g_err[0] == 0 && count_lines(g_out) == 5 && strstr(g_out, "weights fnv1a "), "%s: rc %d: %s",
            names[k], rc, g_err);
    snprintf(outs[k], sizeof outs[k], "%s", g_out);
    rc = CLI("fit", "--data", g_good, "--epochs", "2", "--bs", "32", "--no-progress", "--device", "cpu", "--seed", "7",
             "--sched", names[k], "--lr", "0.1");
    EXPECTF(rc == 0 && !strcmp(g_out, outs[k]), "--sched %s: second run differs:\n%s\nfirst:\n%s", names[k], g_out,
            outs[k]);
    for (int j = 0; j < k; j++)
      EXPECTF(strcmp(outs[j], outs[k]), "--sched %s gave --sched %s's output", names[k], names[j]);
  }
  int rc = CLI("fit", "--data", g_good, "--epochs", "2", "--bs", "32", "--no-progress", "--device", "cpu", "--seed", "7",
               "--sched", "cosine", "--lr", "0.1", "--sched-steps", "1");
  EXPECTF(rc == 2 && count_lines(g_err) == 1 && strstr(g_err, "--sched-steps 1") && strstr(g_err, "shorter than the fit"),
          "rc %d: %s", rc, g_err);
  EXPECT(g_out[0] == 0);
  rc = CLI("fit", "--data", g_good, "--epochs", "2", "--bs", "32", "--no-progress", "--device", "cpu", "--seed", "7",
           "--sched", "cosine", "--lr", "0.1", "--sched-steps", "100000");
  EXPECTF(rc == 0 && g_err[0] == 0 && strcmp(g_out, outs[1]) && strcmp(g_out, outs[0]), "rc %d: %s", rc, g_err);
}

/* Every line of a JSON-lines log is whole ({"epoch": ... }\n); returns how many (-1: a broken one). */
static int whole_log_lines(const char *path) {
  static char buf[1 << 16];
  size_t n = read_file(path, buf, sizeof buf);
  if (n == 0) return 0;
  if (buf[n - 1] != '\n') return -1;
  int k = 0;
  for (char *line = buf; *line; k++) {
    char *end = strchr(line, '\n');
    if (strncmp(line, "{\"epoch\": ", 10) || end[-1] != '}' || !strstr(line, "\"weights_fnv1a\": \"")) return -1;
    line = end + 1;
  }
  return k;
}

/* Starts a long fit with --log and returns once the log holds `lines` whole lines (pid 0: it
 * never got there in 60 s, or the CLI ended first). */
static pid_t long_fit_until(const char *log, const char *png, int lines) {
  unlink(log), unlink(png);
#ifdef FL_NO_CAIRO
  (void)png;   /* a CAIRO=0 build has no --plot */
  pid_t pid = spawn_cli_v((const char *const[]){"fit", "--data", g_good, "--epochs", "100000", "--bs", "32",
                                                "--no-progress", "--device", "cpu", "--log", log, NULL});
#else
  pid_t pid = spawn_cli_v((const char *const[]){"fit", "--data", g_good, "--epochs", "100000", "--bs", "32",
                                                "--no-progress", "--device", "cpu", "--log", log, "--plot", png, NULL});
#endif
  for (int waited = 0; waited < 6000; waited++) {
    if (whole_log_lines(log) >= lines) return pid;
    if (waitpid(pid, NULL, WNOHANG) == pid) return 0;
    nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
  }
  kill(pid, SIGKILL), waitpid(pid, NULL, 0);
  return 0;
}

/* kill -9 mid-fit: the log named by --log holds every finished phase, in whole lines. */
static void test_killed_run_keeps_log(void) {
  pid_t pid = long_fit_until(g_log, g_png, 4);
  EXPECT(pid > 0);
  if (pid <= 0) return;
  kill(pid, SIGKILL);
  int rc = finish_cli(pid);
  EXPECTF(rc == 128 + SIGKILL, "rc %d", rc);
  int k = whole_log_lines(g_log);
  EXPECTF(k >= 4, "%d whole lines in the log of a killed run", k);
  char tmp[220];
  snprintf(tmp, sizeof tmp, "%s.tmp", g_log);
  EXPECT(!exists(tmp));
  unlink(g_log), unlink(g_png);
}

/* Ctrl-C: stops after the batch, cleanup runs (log closed whole, plot written), exit 130, one
 * line on stderr; stdout ends with the weights hash. */
static void test_sigint_run(void) {
  pid_t pid = long_fit_until(g_log, g_png, 2);
  EXPECT(pid > 0);
  if (pid <= 0) return;
  kill(pid, SIGINT);
  int rc = finish_cli(pid);
  EXPECTF(rc == 130, "rc %d, stderr: %s", rc, g_err);
  EXPECTF(one_line_naming(g_err, "interrupted"), "stderr: %s", g_err);
  EXPECTF(whole_log_lines(g_log) >= 2, "log of an interrupted run: %d whole lines", whole_log_lines(g_log));
  size_t n = strlen(g_out);
  const char *last = n >= 31 ? g_out + n - 31 : g_out;
  EXPECTF(!strncmp(last, "weights fnv1a ", 14) && lesson_line(g_out, 0, 1), "stdout:\n%s", g_out);
#ifndef FL_NO_CAIRO
  EXPECT(exists(g_png));
#endif
  unlink(g_log), unlink(g_png);
}

static void test_lr_find_run(void) {
#ifdef FL_NO_CAIRO
  SKIP("built without cairo (CAIRO=0): the run writes plots");
#endif
  char png[192];
  path_in(png, sizeof png, "lr.png");
  int rc = CLI("lr_find", "--data", g_good, "--plot", png, "--device", "cpu", "--bs", "32");
  EXPECTF(rc == 0, "rc %d: %s", rc, g_err);
  EXPECTF(g_err[0] == 0, "stderr: %s", g_err);
  EXPECTF(strstr(g_out, "suggested lr") != NULL, "stdout:\n%s", g_out);
  float sug = 0;
  const char *p = strstr(g_out, "suggested lr: ");
  EXPECTF(p && sscanf(p, "suggested lr: %f", &sug) == 1 && sug > 0 && isfinite(sug), "stdout:\n%s", g_out);
  EXPECT(strstr(g_out, "lr          loss\n1e-05 ") == g_out && strstr(g_out, "stopped after "));
  EXPECT(exists(png));
  unlink(png);
}

/* The conv models (issue 7): summary ends with the parameter count (the notebook's 1,228,908 for
 * resnet); one epoch of resnet on a tiny synthetic directory gives the lesson's lines and the same
 * weights hash at 1 and 2 threads; the conv models refuse --device cuda (CPU kernels only). */
/* --augment / --tta: bad names and pads refused with one line naming the flag and the allowed
 * values; an augmented cnn run is the same twice and at 1 and 2 threads, differs from the plain
 * run, and prints the TTA accuracy */
static void test_augment_run(void) {
  BAD(2, "--augment rotate: unknown augmentation (allowed: crop, flip, erase)", "fit", "--augment", "rotate", "--data", g_conv);
  BAD(2, "--augment crop,,flip", "fit", "--augment", "crop,,flip", "--data", g_conv);
  BAD(2, "--pad 28: out of range (must be 0..27)", "fit", "--augment", "crop", "--pad", "28", "--data", g_conv);
  BAD(2, "--pad", "fit", "--augment", "flip", "--pad", "2", "--data", g_conv);
  BAD(2, "--tta", "lr_find", "--tta", "--data", g_conv);
  BAD(2, "--augment", "predict", "--weights", "x.safetensors", "--augment", "flip");
  char out1[4096], plain[4096];
  int rc = CLI("fit", "--model", "cnn", "--data", g_conv, "--epochs", "2", "--bs", "16", "--no-progress", "--device",
               "cpu", "--seed", "7", "--threads", "1", "--lr", "0.05");
  EXPECTF(rc == 0, "rc %d: %s", rc, g_err);
  const char *ph = strstr(g_out, "weights fnv1a ");
  snprintf(plain, sizeof plain, "%.31s", ph ? ph : "");
  rc = CLI("fit", "--model", "cnn", "--data", g_conv, "--epochs", "2", "--bs", "16", "--no-progress", "--device", "cpu",
           "--seed", "7", "--threads", "1", "--lr", "0.05", "--augment", "crop,flip", "--tta");
  EXPECTF(rc == 0 && g_err[0] == 0, "rc %d: %s", rc, g_err);
  const char *t = strstr(g_out, "\ntta accuracy: 0.");
  EXPECTF(count_lines(g_out) == 6 && t && strstr(g_out, "weights fnv1a "), "%s", g_out);
  memcpy(out1, g_out, sizeof out1 - 1);
  out1[sizeof out1 - 1] = 0;
  const char *ah = strstr(out1, "weights fnv1a ");
  EXPECTF(ah && strncmp(ah, plain, 31) != 0, "augmented and plain runs ended alike: %s", plain);
  rc = CLI("fit", "--model", "cnn", "--data", g_conv, "--epochs", "2", "--bs", "16", "--no-progress", "--device", "cpu",
           "--seed", "7", "--threads", "1", "--lr", "0.05", "--augment", "crop,flip", "--tta");
  EXPECTF(rc == 0 && !strcmp(g_out, out1), "run 1:\n%srun 2:\n%s%s", out1, g_out, g_err);
  rc = CLI("fit", "--model", "cnn", "--data", g_conv, "--epochs", "2", "--bs", "16", "--no-progress", "--device", "cpu",
           "--seed", "7", "--threads", "2", "--lr", "0.05", "--augment", "crop,flip", "--tta");
  EXPECTF(rc == 0 && !strcmp(g_out, out1), "threads 1:\n%sthreads 2:\n%s%s", out1, g_out, g_err);
#ifndef FL_NO_CJSON
  /* resumed mid-epoch from the first checkpoint of an augmented run: the same final weights */
  char ck[192], full_hash[64] = "", *hp, p2[512];
  path_in(ck, sizeof ck, "aug_ck");
  rc = CLI("fit", "--model", "cnn", "--data", g_conv, "--epochs", "2", "--bs", "16", "--no-progress", "--device", "cpu",
           "--seed", "7", "--lr", "0.05", "--augment", "crop,flip,erase", "--checkpoint", ck, "--every", "2", "--keep", "10");
  if ((hp = strstr(g_out, "weights fnv1a "))) snprintf(full_hash, sizeof full_hash, "%.30s", hp);
  EXPECTF(rc == 0 && full_hash[0], "rc %d: %s%s", rc, g_out, g_err);
  DIR *d = opendir(ck);
  char first[256] = "", names[16][256];
  int nn = 0;
  for (struct dirent *e; d && (e = readdir(d));)
    if (!strncmp(e->d_name, "ckpt-", 5) && nn < 16) snprintf(names[nn++], 256, "%s", e->d_name);
  if (d) closedir(d);
  for (int i = 0; i < nn; i++)
    if (!first[0] || strcmp(names[i], first) < 0) snprintf(first, sizeof first, "%.200s", names[i]);
  for (int i = 0; i < nn; i++)
    if (strcmp(names[i], first)) snprintf(p2, sizeof p2, "%s/%.200s", ck, names[i]), unlink(p2);
  EXPECTF(nn >= 3 && !strncmp(first, "ckpt-000000-train-", 18), "%d checkpoints, first %s", nn, first);
  rc = CLI("fit", "--model", "cnn", "--data", g_conv, "--epochs", "2", "--bs", "16", "--no-progress", "--device", "cpu",
           "--seed", "7", "--lr", "0.05", "--augment", "crop,flip,erase", "--resume", ck, "--threads", "1");
  EXPECTF(rc == 0 && strstr(g_out, full_hash), "resumed from %s: rc %d: %s%s (want %s)", first, rc, g_out, g_err, full_hash);
  /* other augmentation than the checkpoint's: refused, naming it */
  rc = CLI("fit", "--model", "cnn", "--data", g_conv, "--epochs", "2", "--bs", "16", "--no-progress", "--device", "cpu",
           "--seed", "7", "--lr", "0.05", "--augment", "crop,flip", "--resume", ck);
  EXPECTF(rc == 2 && one_line_naming(g_err, "--augment crop,flip pad 1 (checkpoint: crop,flip,erase pad 1)"), "rc %d: %s", rc, g_err);
  d = opendir(ck);
  for (struct dirent *e; d && (e = readdir(d));)
    if (e->d_name[0] != '.') snprintf(p2, sizeof p2, "%s/%.200s", ck, e->d_name), unlink(p2);
  if (d) closedir(d);
  rmdir(ck);
#endif
  /* mlp: the same images, flattened; erase and --pad too */
  rc = CLI("fit", "--data", g_good, "--epochs", "1", "--bs", "32", "--no-progress", "--device", "cpu", "--seed", "7",
           "--augment", "erase,crop", "--pad", "3");
  EXPECTF(rc == 0 && g_err[0] == 0 && count_lines(g_out) == 3, "rc %d: %s%s", rc, g_out, g_err);
}

static void test_conv_models(void) {
  int rc = CLI("summary", "--model", "resnet");
  const char *last = strstr(g_out, "total params: ");
  EXPECTF(rc == 0 && last && !strcmp(last, "total params: 1228908\n") && strstr(g_out, "ResBlock ") &&
              strstr(g_out, "BatchNorm1d "), "rc %d: %s%s", rc, g_out, g_err);
  rc = CLI("summary", "--model", "cnn");
  last = strstr(g_out, "total params: ");
  EXPECTF(rc == 0 && last && !strcmp(last, "total params: 30282\n"), "rc %d: %s%s", rc, g_out, g_err);
  rc = CLI("fit", "--model", "cnn", "--device", "cuda", "--data", g_conv);
  EXPECTF(rc == 2 && one_line_naming(g_err, "--device cuda"), "rc %d: %s", rc, g_err);
  char out1[4096];
  rc = CLI("fit", "--model", "resnet", "--data", g_conv, "--epochs", "1", "--bs", "16", "--no-progress", "--device",
           "cpu", "--seed", "7", "--threads", "1", "--lr", "0.05");
  EXPECTF(rc == 0 && g_err[0] == 0, "rc %d: %s", rc, g_err);
  EXPECTF(count_lines(g_out) == 3 && lesson_line(g_out, 0, 1) && strstr(g_out, "weights fnv1a "), "%s", g_out);
  memcpy(out1, g_out, sizeof out1 - 1);
  out1[sizeof out1 - 1] = 0;
  rc = CLI("fit", "--model", "resnet", "--data", g_conv, "--epochs", "1", "--bs", "16", "--no-progress", "--device",
           "cpu", "--seed", "7", "--threads", "2", "--lr", "0.05");
  EXPECTF(rc == 0 && !strcmp(g_out, out1), "threads 1:\n%sthreads 2:\n%s%s", out1, g_out, g_err);
#ifndef FL_NO_CJSON
  /* predict with the saved weights (buffers included) and the same input normalisation gives
   * fit's valid accuracy */
  char st[192], acc[16] = "";
  path_in(st, sizeof st, "rn.safetensors");
  rc = CLI("fit", "--model", "resnet", "--data", g_conv, "--epochs", "1", "--bs", "16", "--no-progress", "--device",
           "cpu", "--seed", "7", "--lr", "0.05", "--save", st);
  const char *v = strstr(g_out, "'train': True}\n{'accuracy': '");
  if (v) snprintf(acc, sizeof acc, "%.5s", v + strlen("'train': True}\n{'accuracy': '"));
  EXPECTF(rc == 0 && acc[0], "rc %d: %s%s", rc, g_out, g_err);
  rc = CLI("predict", "--model", "resnet", "--weights", st, "--data", g_conv, "--device", "cpu");
  const char *pa = strstr(g_out, "accuracy: ");
  double pv = pa ? atof(pa + 10) : -1;
  char pr[16];
  snprintf(pr, sizeof pr, "%.3f", pv);
  EXPECTF(rc == 0 && !strcmp(pr, acc), "fit's valid accuracy %s, predict's: rc %d: %s%s", acc, rc, g_out, g_err);
  unlink(st);
  /* resume (BatchNorm's running statistics are in the checkpoint): from the first checkpoint of a
   * 2-epoch run, the same final weights as the run never stopped */
  char ck[192], full_hash[64] = "", *hp;
  path_in(ck, sizeof ck, "rn_ck");
  rc = CLI("fit", "--model", "resnet", "--data", g_conv, "--epochs", "2", "--bs", "16", "--no-progress", "--device",
           "cpu", "--seed", "7", "--lr", "0.05");
  if ((hp = strstr(g_out, "weights fnv1a "))) snprintf(full_hash, sizeof full_hash, "%.30s", hp);
  EXPECTF(rc == 0 && full_hash[0], "rc %d: %s%s", rc, g_out, g_err);
  rc = CLI("fit", "--model", "resnet", "--data", g_conv, "--epochs", "2", "--bs", "16", "--no-progress", "--device",
           "cpu", "--seed", "7", "--lr", "0.05", "--checkpoint", ck, "--every", "2", "--keep", "10");
  EXPECTF(rc == 0 && strstr(g_out, full_hash), "rc %d: %s%s", rc, g_out, g_err);
  DIR *d = opendir(ck);
  char first[256] = "", names[16][256];
  int nn = 0;
  for (struct dirent *e; d && (e = readdir(d));)
    if (!strncmp(e->d_name, "ckpt-", 5) && nn < 16) snprintf(names[nn++], 256, "%s", e->d_name);
  if (d) closedir(d);
  for (int i = 0; i < nn; i++)
    if (!first[0] || strcmp(names[i], first) < 0) snprintf(first, sizeof first, "%.200s", names[i]);
  char p2[512];
  for (int i = 0; i < nn; i++)
    if (strcmp(names[i], first)) snprintf(p2, sizeof p2, "%s/%.200s", ck, names[i]), unlink(p2);
  EXPECTF(nn >= 3 && !strncmp(first, "ckpt-000000-train-", 18), "%d checkpoints, first %s", nn, first);
  rc = CLI("fit", "--model", "resnet", "--data", g_conv, "--epochs", "2", "--bs", "16", "--no-progress", "--device",
           "cpu", "--seed", "7", "--lr", "0.05", "--resume", ck);
  EXPECTF(rc == 0 && strstr(g_out, full_hash), "resumed from %s: rc %d: %s%s (want %s)", first, rc, g_out, g_err,
          full_hash);
  d = opendir(ck);
  for (struct dirent *e; d && (e = readdir(d));)
    if (e->d_name[0] != '.') snprintf(p2, sizeof p2, "%s/%.200s", ck, e->d_name), unlink(p2);
  if (d) closedir(d);
  rmdir(ck);
#endif
}

int main(void) {
  g_cli = getenv("FLEXLEARN_CLI");
  if (!g_cli || !*g_cli) g_cli = "build/flexlearn";
  if (access(g_cli, X_OK) != 0) {
    fprintf(stderr, "test_cli: %s: not an executable (set FLEXLEARN_CLI)\n", g_cli);
    printf("tests: 0 passed, 1 failed, 0 skipped\n");
    return 1;
  }
  if (!mkdtemp(g_dir)) return perror("mkdtemp"), 2;
  path_in(g_log, sizeof g_log, "x.jsonl");
  path_in(g_png, sizeof g_png, "x.png");
  path_in(g_good, sizeof g_good, "good");
  path_in(g_conv, sizeof g_conv, "conv");
  make_data("good", 256, 64, 28, 10, 256, 0);
  make_data("trunc", 256, 64, 28, 10, 256, 1000);
  make_data("mism", 256, 64, 28, 10, 255, 0);
  make_data("small", 64, 16, 5, 10, 64, 0);
  make_data("badlab", 64, 16, 28, 12, 64, 0);
  make_data("conv", 48, 24, 28, 10, 48, 0);
  RUN(test_help);
  RUN(test_bad_flags);
  RUN(test_bad_data);
  RUN(test_device);
  RUN(test_fit_run);
  RUN(test_fit_adamw_onecycle);
  RUN(test_fit_schedules);
  RUN(test_fit_notebook_opts);
  RUN(test_lr_find_run);
  RUN(test_killed_run_keeps_log);
  RUN(test_sigint_run);
  RUN(test_conv_models);
  RUN(test_augment_run);
  static const char *subs[6] = {"good", "trunc", "mism", "small", "badlab", "conv"};
  for (int i = 0; i < 6; i++) rm_data(subs[i]);
  unlink(g_log), unlink(g_png);
  if (rmdir(g_dir) != 0) fprintf(stderr, "test_cli: %s not empty: %s\n", g_dir, strerror(errno));
  return test_summary();
}
