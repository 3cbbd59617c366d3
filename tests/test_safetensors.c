/* Weights in safetensors: save -> load round trip, the strict reader on every kind of broken file
 * (each error one line naming the file, the model untouched), failures to save (the previous
 * file intact), and the file loaded by PyTorch's load_state_dict(strict=True) giving the same
 * logits as flexlearn (skips without Debian's python3-torch). */
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "flexlearn.h"
#include "cli_run.h"
#include "test.h"

static char dir[] = "/tmp/fl_st_XXXXXX";

static char *tmp_path(const char *name) {
  static char buf[4][256];
  static int k;
  char *p = buf[k++ % 4];
  snprintf(p, 256, "%s/%s", dir, name);
  return p;
}

#ifdef FL_NO_CJSON
/* CJSON=0: both calls fail with one line that says why, and write nothing. */
static void test_without_cjson(void) {
  fl_module *m = fl_get_model(1, 784, 50, 10);
  const char *p = tmp_path("none.safetensors");
  uint64_t h = fl_module_hash(m);
  EXPECT(fl_save_safetensors(m, p, "x") == FL_ERR_ARG && strstr(fl_last_error(), "CJSON=0"));
  EXPECT(access(p, F_OK) != 0);
  EXPECT(fl_load_safetensors(m, p) == FL_ERR_ARG && fl_module_hash(m) == h);
  fl_module_free(m);
}
#else



/* The small model every reader test loads into: Linear(4,3)-ReLU-Linear(3,2), i.e. 0.weight
 * [3, 4], 0.bias [3], 2.weight [2, 3], 2.bias [2]: 23 floats, 92 bytes. */
static fl_module *small(uint64_t seed) { return fl_get_model(seed, 4, 3, 2); }

/* The load failed with `code` and one line that starts with the path and contains each of the
 * NULL-terminated strings; the model's hash is still h. */
static int failed_properly(fl_status st, fl_status code, const char *path, fl_module *m, uint64_t h, ...) {
  const char *msg = fl_last_error();
  int ok = st == code && strncmp(msg, path, strlen(path)) == 0 && msg[strlen(path)] == ':' &&
           !strchr(msg, '\n') && fl_module_hash(m) == h;
  va_list ap;
  va_start(ap, h);
  for (const char *s; (s = va_arg(ap, const char *));) ok = ok && strstr(msg, s);
  va_end(ap);
  if (!ok) fprintf(stderr, "  status %d, message: %s\n", st, msg);
  return ok;
}
#define FAILS(st, code, path, m, h, ...) EXPECT(failed_properly(st, code, path, m, h, __VA_ARGS__, (char *)NULL))


static void test_round_trip(void) {
  fl_module *a = fl_get_model(1, 784, 50, 10), *b = fl_get_model(2, 784, 50, 10);
  const char *p = tmp_path("rt.safetensors");
  EXPECT(fl_module_hash(a) != fl_module_hash(b));
  EXPECT(fl_save_safetensors(a, p, "lesson") == FL_OK);
  EXPECT(fl_load_safetensors(b, p) == FL_OK);
  EXPECT(fl_module_hash(a) == fl_module_hash(b));
  /* the layout: 8-byte length (a multiple of 8), PyTorch's names and shapes, the metadata */
  size_t n;
  unsigned char *f = read_all(p, &n);
  uint64_t hl = 0;
  for (int i = 7; i >= 0; i--) hl = hl << 8 | f[i];
  EXPECT(hl % 8 == 0 && 8 + hl + (size_t)(50 * 784 + 50 + 10 * 50 + 10) * 4 == n);
  char *h = strndup((char *)f + 8, hl);
  EXPECT(strstr(h, "\"__metadata__\":{\"format\":\"pt\",\"flexlearn_model\":\"lesson\"}"));
  EXPECT(strstr(h, "\"0.weight\":{\"dtype\":\"F32\",\"shape\":[50,784],\"data_offsets\":[0,156800]}"));
  EXPECT(strstr(h, "\"0.bias\":{\"dtype\":\"F32\",\"shape\":[50],"));
  EXPECT(strstr(h, "\"2.weight\":{\"dtype\":\"F32\",\"shape\":[10,50],"));
  EXPECT(strstr(h, "\"2.bias\":{\"dtype\":\"F32\",\"shape\":[10],"));
  EXPECT(access(tmp_path("rt.safetensors.tmp"), F_OK) != 0);
  free(h), free(f);
  /* saving over an existing file replaces it */
  EXPECT(fl_save_safetensors(b, p, NULL) == FL_OK);
  fl_module_free(a), fl_module_free(b);
}

static void test_truncated_at_every_length(void) {
  fl_module *a = small(1), *b = small(2);
  const char *p = tmp_path("small.safetensors"), *q = tmp_path("cut.safetensors");
  EXPECT(fl_save_safetensors(a, p, "small") == FL_OK);
  uint64_t h = fl_module_hash(b);
  size_t n;
  unsigned char *f = read_all(p, &n);
  for (size_t k = 0; k < n; k++) {
    write_file(q, f, k);
    FAILS(fl_load_safetensors(b, q), FL_ERR_FORMAT, q, b, h, "");
  }
  /* and one byte too many */
  unsigned char *g = malloc(n + 1);
  memcpy(g, f, n);
  g[n] = 0;
  write_file(q, g, n + 1);
  FAILS(fl_load_safetensors(b, q), FL_ERR_FORMAT, q, b, h, "belong to no tensor");
  free(g), free(f);
  fl_module_free(a), fl_module_free(b);
}

/* Every byte of the length and the header, replaced by each of a few values: an error (one line,
 * model untouched), or a load that gives exactly the saved weights (a change in a name's or the
 * metadata's spelling that still reads). */
static void test_corrupted_header_bytes(void) {
  fl_module *a = small(1), *b = small(2);
  const char *p = tmp_path("small.safetensors"), *q = tmp_path("bad.safetensors");
  EXPECT(fl_save_safetensors(a, p, "small") == FL_OK);
  size_t n;
  unsigned char *f = read_all(p, &n);
  uint64_t hl = 0;
  for (int i = 7; i >= 0; i--) hl = hl << 8 | f[i];
  const unsigned char vals[] = {0x00, 0xff, '"', '{', '}', ',', '1', 'x', ' ', '\n'};
  int errors = 0;
  for (size_t i = 0; i < 8 + hl; i++)
    for (size_t v = 0; v < sizeof vals; v++) {
      if (f[i] == vals[v]) continue;
      unsigned char old = f[i];
      f[i] = vals[v];
      write_file(q, f, n);
      fl_module *c = small(2);
      uint64_t hc = fl_module_hash(c);
      fl_status st = fl_load_safetensors(c, q);
      if (st == FL_OK) EXPECTF(fl_module_hash(c) == fl_module_hash(a), "byte %zu = 0x%02x", i, vals[v]);
      else { errors++; FAILS(st, FL_ERR_FORMAT, q, c, hc, ""); }
      fl_module_free(c);
      f[i] = old;
    }
  EXPECT(errors > 0);
  free(f);
  fl_module_free(a), fl_module_free(b);
}

/* A file with this header (padded to 8) and `data_n` bytes of data. */
static void make(const char *path, const char *json, size_t data_n) {
  size_t jl = strlen(json), hl = (jl + 7) & ~(size_t)7;
  unsigned char *b = calloc(8 + hl + data_n + 1, 1);
  for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)hl >> (8 * i));
  memset(b + 8, ' ', hl);
  memcpy(b + 8, json, jl);
  for (size_t i = 0; i < data_n; i++) b[8 + hl + i] = (unsigned char)(i * 7);
  write_file(path, b, 8 + hl + data_n);
  free(b);
}

#define W0 "\"0.weight\":{\"dtype\":\"F32\",\"shape\":[3,4],\"data_offsets\":[0,48]}"
#define B0 "\"0.bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[48,60]}"
#define W2 "\"2.weight\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[60,84]}"
#define B2 "\"2.bias\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[84,92]}"

static void test_bad_files(void) {
  const char *q = tmp_path("case.safetensors");
  fl_module *m = small(2);
  uint64_t h = fl_module_hash(m);
  struct { const char *json; size_t data_n; const char *want1, *want2; } cases[] = {
    {"{\"0.weight\":", 92, "not valid JSON", NULL},
    {"{\"0.weight\":{\"dtype\":\"F32\",,}}", 92, "not valid JSON", NULL},
    {"[1,2]", 92, "not a JSON object", NULL},
    {"{" W0 "," B0 "," W2 "," B2 "} x", 92, "unexpected byte 0x78", NULL},
    {"{" W0 ",\"0.bias\":{\"dtype\":\"F16\",\"shape\":[3],\"data_offsets\":[48,54]}," W2 "," B2 "}", 86,
     "tensor '0.bias'", "dtype 'F16' is not supported"},
    {"{" W0 ",\"0.bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[40,52]}," W2 "," B2 "}", 92,
     "'0.bias'", "overlap those of tensor '0.weight'"},
    {"{" W0 "," B0 "," W2 ",\"2.bias\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[84,100]}}", 92,
     "tensor '2.bias'", "out of range"},
    {"{" W0 "," B0 "," W2 ",\"2.bias\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[84,88]}}", 92,
     "tensor '2.bias'", "hold 4 bytes but shape [2] in F32 needs 8"},
    {"{" W0 "," B0 "," W2 ",\"2.bias\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[88,96]}}", 96,
     "tensor '2.bias'", "leave bytes [84, 88) of the data unused"},
    {"{" W0 "," B0 "," W2 "}", 84, "tensor '2.bias' is missing", "[2]"},
    {"{" W0 "," B0 "," W2 "," B2 ",\"3.weight\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[92,96]}}", 96,
     "unexpected tensor '3.weight'", NULL},
    {"{\"0.weight\":{\"dtype\":\"F32\",\"shape\":[4,3],\"data_offsets\":[0,48]}," B0 "," W2 "," B2 "}", 92,
     "tensor '0.weight': shape [4, 3] in the file", "the model's is [3, 4]"},
    {"{\"0.weight\":{\"dtype\":\"F32\",\"shape\":[-3,4],\"data_offsets\":[0,48]}," B0 "," W2 "," B2 "}", 92,
     "tensor '0.weight'", "not a non-negative integer"},
    {"{\"0.weight\":{\"dtype\":\"F32\",\"shape\":[3,4],\"data_offsets\":[0,48],\"x\":1}," B0 "," W2 "," B2 "}", 92,
     "tensor '0.weight'", "unknown field 'x'"},
    {"{\"0.weight\":{\"dtype\":\"F32\",\"shape\":[3,4]}," B0 "," W2 "," B2 "}", 92, "tensor '0.weight'",
     "no 'data_offsets'"},
    {"{" W0 "," B0 "," W2 "," B2 "," B2 "}", 92, "tensor '2.bias' appears twice", NULL},
    {"{\"__metadata__\":{\"format\":1}," W0 "," B0 "," W2 "," B2 "}", 92, "__metadata__ 'format'", NULL},
    {"{\"a\\nb\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[92,96]}," W0 "," B0 "," W2 "," B2 "}", 96,
     "unexpected tensor 'a\\x0ab'", NULL},
    {"{\"0.weight\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],\"data_offsets\":[0,48]}}", 92,
     "tensor '0.weight'", "overflows"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    make(q, cases[i].json, cases[i].data_n);
    fl_status st = fl_load_safetensors(m, q);
    EXPECTF(failed_properly(st, FL_ERR_FORMAT, q, m, h, cases[i].want1, cases[i].want2, (char *)NULL), "case %zu", i);
  }
  /* a header length beyond the file, and one over the 100 MB limit */
  unsigned char b[16] = {8, 0, 0, 0, 0, 0, 0, 0, '{', '}'};
  write_file(q, b, 10);
  FAILS(fl_load_safetensors(m, q), FL_ERR_FORMAT, q, m, h, "truncated", "8 bytes but only 2 follow");
  b[0] = 0, b[4] = 1;
  write_file(q, b, 16);
  FAILS(fl_load_safetensors(m, q), FL_ERR_FORMAT, q, m, h, "over the limit");
  /* and the reference case, which does load */
  make(q, "{\"__metadata__\":{\"format\":\"pt\"}," W0 "," B0 "," W2 "," B2 "}", 92);
  EXPECT(fl_load_safetensors(m, q) == FL_OK && fl_module_hash(m) != h);
  /* files that are not there, or not files */
  FAILS(fl_load_safetensors(m, tmp_path("none.safetensors")), FL_ERR_IO, tmp_path("none.safetensors"), m,
        fl_module_hash(m), "cannot open");
  FAILS(fl_load_safetensors(m, dir), FL_ERR_IO, dir, m, fl_module_hash(m), "is a directory");
  fl_module_free(m);
}

static void test_save_failures(void) {
  fl_module *a = small(1), *big = fl_get_model(1, 784, 50, 10);
  const char *p = tmp_path("keep.safetensors");
  EXPECT(fl_save_safetensors(a, p, "small") == FL_OK);
  size_t n0, n1;
  unsigned char *before = read_all(p, &n0);
  /* a write that fails (the file-size limit: EFBIG; works as root too) */
  struct rlimit old, lim;
  getrlimit(RLIMIT_FSIZE, &old);
  lim = old;
  lim.rlim_cur = 4096;
  void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
  setrlimit(RLIMIT_FSIZE, &lim);
  fl_status st = fl_save_safetensors(big, p, "big");
  setrlimit(RLIMIT_FSIZE, &old);
  signal(SIGXFSZ, prev);
  FAILS(st, FL_ERR_IO, p, a, fl_module_hash(a), "cannot write", "unchanged");
  unsigned char *after = read_all(p, &n1);
  EXPECT(n0 == n1 && after && memcmp(before, after, n0) == 0);
  EXPECT(access(tmp_path("keep.safetensors.tmp"), F_OK) != 0);
  free(after);
  /* /dev/full (and any other non-file) is refused, and left as it is */
  struct stat sb;
  FAILS(fl_save_safetensors(a, "/dev/full", NULL), FL_ERR_IO, "/dev/full", a, fl_module_hash(a), "not a regular file");
  EXPECT(stat("/dev/full", &sb) == 0 && S_ISCHR(sb.st_mode));
  EXPECT(access("/dev/full.tmp", F_OK) != 0);
  FAILS(fl_save_safetensors(a, dir, NULL), FL_ERR_IO, dir, a, fl_module_hash(a), "not a regular file");
  /* a directory that is not there */
  const char *nd = tmp_path("no/such/dir.safetensors");
  FAILS(fl_save_safetensors(a, nd, NULL), FL_ERR_IO, nd, a, fl_module_hash(a), "cannot create");
  /* a read-only directory (root writes anyway: then only checked that it saves) */
  const char *ro = tmp_path("ro");
  char rop[300];
  snprintf(rop, sizeof rop, "%s/m.safetensors", ro);
  mkdir(ro, 0755);
  EXPECT(fl_save_safetensors(a, rop, NULL) == FL_OK);
  chmod(ro, 0555);
  st = fl_save_safetensors(big, rop, NULL);
  if (geteuid() != 0) {
    FAILS(st, FL_ERR_IO, rop, a, fl_module_hash(a), "cannot create");
    after = read_all(rop, &n1);
    EXPECT(n0 == n1 && after && memcmp(before, after, n0) == 0);
    free(after);
  }
  chmod(ro, 0755);
  unlink(rop), rmdir(ro);
  free(before);
  fl_module_free(a), fl_module_free(big);
}

static int have_torch(void) {
  return access("/usr/bin/python3", X_OK) == 0 &&
         system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") == 0;
}

static const char torch_script[] =
    "import json, struct, sys, torch\n"
    "from torch import nn\n"
    "b = open(sys.argv[1], 'rb').read()\n"
    "n = struct.unpack('<Q', b[:8])[0]\n"
    "assert n % 8 == 0\n"
    "h = json.loads(b[8:8 + n])\n"
    "assert h.pop('__metadata__') == {'format': 'pt', 'flexlearn_model': 'lesson'}\n"
    "data = bytearray(b[8 + n:])\n"
    "sd = {}\n"
    "for k, v in h.items():\n"
    "    assert v['dtype'] == 'F32'\n"
    "    s, e = v['data_offsets']\n"
    "    sd[k] = torch.frombuffer(data, dtype=torch.float32, offset=s, count=(e - s) // 4).reshape(v['shape'])\n"
    "m = nn.Sequential(nn.Linear(784, 50), nn.ReLU(), nn.Linear(50, 10))\n"
    "m.load_state_dict(sd, strict=True)\n"
    "x = torch.frombuffer(bytearray(open(sys.argv[2], 'rb').read()), dtype=torch.float32).reshape(-1, 784)\n"
    "with torch.no_grad():\n"
    "    y = m(x)\n"
    "for v in y.flatten().tolist():\n"
    "    print(repr(v))\n";

static void test_pytorch_loads_it(void) {
  if (!have_torch()) SKIP("no PyTorch at /usr/bin/python3 (apt-get install python3-torch)");
  fl_module *m = fl_get_model(3, 784, 50, 10);
  const char *st = tmp_path("torch.safetensors"), *xs = tmp_path("x.bin"), *py = tmp_path("load.py");
  EXPECT(fl_save_safetensors(m, st, "lesson") == FL_OK);
  enum { B = 3 };
  static float x[B * 784];
  for (int i = 0; i < B * 784; i++) x[i] = (float)((i * 37 % 256) / 255.0);
  write_file(xs, x, sizeof x);
  write_file(py, torch_script, strlen(torch_script));
  fl_graph *g = fl_graph_new();
  fl_graph_set_grad(g, 0);
  int64_t shape[2] = {B, 784};
  fl_tensor *xt = fl_tensor_from_data(FL_F32, FL_CPU, 2, shape, x);
  fl_tensor *y = fl_module_forward(m, g, xt);
  float ours[B * 10];
  fl_tensor_to_host(y, ours);
  char cmd[1024];
  snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s %s %s", py, st, xs);
  FILE *p = popen(cmd, "r");
  double d = 0, v;
  int k = 0;
  while (p && fscanf(p, "%lf", &v) == 1) {
    if (k < B * 10) d = fmax(d, fabs(v - ours[k]));
    k++;
  }
  EXPECT(p && pclose(p) == 0);
  EXPECTF(k == B * 10, "PyTorch printed %d logits, expected %d", k, B * 10);
  printf("  max |logit(flexlearn) - logit(torch)| = %.3g over %d logits\n", d, k);
  EXPECTF(d <= 1e-5, "logits differ from PyTorch's by %g", d);
  fl_tensor_free(xt);
  fl_graph_free(g);
  fl_module_free(m);
  unlink(st), unlink(xs), unlink(py);
}
#endif /* FL_NO_CJSON */

int main(void) {
  fl_init(2);
  if (!mkdtemp(dir)) return perror("mkdtemp"), 1;
#ifdef FL_NO_CJSON
  RUN(test_without_cjson);
#else
  RUN(test_round_trip);
  RUN(test_truncated_at_every_length);
  RUN(test_corrupted_header_bytes);
  RUN(test_bad_files);
  RUN(test_save_failures);
  RUN(test_pytorch_loads_it);
#endif
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", dir);
  return test_summary();
}
