/* Checkpoints and exact resume (issue 9).
 *
 * Library: a fit that checkpoints after every batch, resumed from EVERY checkpoint it wrote
 * (mid-epoch, end of the training phase, epoch ends), ends with the same weights hash, the same
 * JSON-lines and CSV logs (seconds aside), the same callback states (a test callback's double
 * accumulator, CompletionCB's count) as the uninterrupted fit, with SGD and MomentumLearner;
 * Ctrl-C at several points writes a checkpoint there that resumes the same way; the loader's
 * begin_at gives the same batches as a full epoch from there; a checkpoint truncated at every
 * offset or with any one byte changed is refused with one line naming the file; foreign files
 * too; mismatched optimiser / learner / callbacks are refused naming what; a full disk (RLIMIT_FSIZE)
 * or a directory gone mid-fit stops the fit with an error naming the path, leaving the previous
 * checkpoint valid.
 * CLI (the binary in $FLEXLEARN_CLI, default build/flexlearn), on a synthetic Fashion-MNIST-shaped
 * directory: kill -9 (a test hook, FLEXLEARN_TEST_KILL_AT) at 5 points (mid-epoch, mid-validation,
 * epoch starts) then --resume, and a real kill -9 at a random moment: the same final hash, stdout's
 * hash line and logs as the uninterrupted run, at --threads 1 and 2, with plain SGD and --mom;
 * Ctrl-C then --resume the same; flags that differ: exit 2 naming each; missing / empty / corrupt
 * directories: exit 1, one line; a corrupt newest checkpoint falls back to the previous one. */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "flexlearn.h"
#include "fl/plot.h"
#include "cli_run.h"
#include "learn_fixture.h"
#include "test.h"

static char g_dir[64] = "/tmp/fl_test_ckpt_XXXXXX";

static char *path_in(char *buf, size_t n, const char *name) {
  snprintf(buf, n, "%s/%s", g_dir, name);
  return buf;
}



static void write_all(const char *path, const void *p, size_t n) {
  FILE *f = fopen(path, "wb");
  if (n) fwrite(p, 1, n, f);
  fclose(f);
}

static void copy_file(const char *from, const char *to) {
  size_t n;
  unsigned char *b = read_all(from, &n);
  write_all(to, b, n);
  free(b);
}

static void rm_rf(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *e;
  char p[1024];
  while ((e = readdir(d)))
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
      snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
      if (unlink(p) != 0) rm_rf(p);
    }
  closedir(d);
  rmdir(dir);
}

/* The checkpoint files of dir, oldest first (names into names[], at most max). */
static int list_ckpts(const char *dir, char names[][96], int max) {
  DIR *d = opendir(dir);
  int n = 0;
  struct dirent *e;
  while (d && (e = readdir(d)))
    if (!strncmp(e->d_name, "ckpt-", 5) && strlen(e->d_name) > 12 && !strcmp(e->d_name + strlen(e->d_name) - 12, ".safetensors") &&
        n < max)
      snprintf(names[n++], 96, "%.95s", e->d_name);
  if (d) closedir(d);
  for (int i = 1; i < n; i++)   /* the names sort by position */
    for (int j = i; j > 0 && strcmp(names[j - 1], names[j]) > 0; j--) {
      char t[96];
      memcpy(t, names[j], 96), memcpy(names[j], names[j - 1], 96), memcpy(names[j - 1], t, 96);
    }
  return n;
}

/* The "seconds" values blanked: in JSON lines ("seconds": X) and CSV (the field before the hash). */
static void strip_seconds(char *s) {
  for (char *p = s; (p = strstr(p, "\"seconds\": "));) {
    p += 11;
    char *q = p;
    while ((*q >= '0' && *q <= '9') || *q == '.') q++;
    memmove(p, q, strlen(q) + 1);
  }
  for (char *line = s; line && *line; line = strchr(line, '\n'), line = line ? line + 1 : NULL) {
    char *end = strchr(line, '\n'), *c2 = NULL, *c1 = NULL;
    if (!end || *line == '{') continue;
    for (char *q = line; q < end; q++)
      if (*q == ',') c1 = c2, c2 = q;
    if (c1 && c2) memmove(c1 + 1, c2, strlen(c2) + 1);
  }
}

static int one_line(const char *s) { return s[0] && !strchr(s, '\n'); }

/* ---- the library-level fit ---- */
/* A callback with state: the sum of every training loss so far (a double that changes every
 * batch) and fixed odd doubles whose bits must come back exactly. */
static const double odd[5] = {0.1, -0.0, 0x1p-1074, 1e308, -2.5e-300};
typedef struct { fl_callback cb; double sum; int64_t batches; int loaded_ok; } sum_cb;
static fl_status sum_after_batch(fl_callback *cb, fl_learner *l) {
  sum_cb *s = (sum_cb *)cb;
  if (l->training) s->sum += fl_tensor_item(l->loss), s->batches++;
  return FL_OK;
}
static fl_status sum_save(fl_callback *cb, fl_learner *l, fl_state *st) {
  (void)l;
  sum_cb *s = (sum_cb *)cb;
  fl_status r = fl_state_set_f64(st, "sum", s->sum);
  if (!r) r = fl_state_set_i64(st, "batches", s->batches);
  if (!r) r = fl_state_set_f64s(st, "odd", odd, 5);
  if (!r) r = fl_state_set_str(st, "tag", "sum\"cb\\");
  return r;
}
static fl_status sum_load(fl_callback *cb, fl_learner *l, const fl_state *st) {
  (void)l;
  sum_cb *s = (sum_cb *)cb;
  double o[8];
  int64_t n = 0;
  fl_status r = fl_state_get_f64(st, "sum", &s->sum);
  if (!r) r = fl_state_get_i64(st, "batches", &s->batches);
  if (!r) r = fl_state_get_f64s(st, "odd", o, 8, &n);
  if (r) return r;
  const char *tag = fl_state_get_str(st, "tag");
  s->loaded_ok = n == 5 && !memcmp(o, odd, sizeof odd) && tag && !strcmp(tag, "sum\"cb\\") &&
                 fl_state_get_i64(st, "nope", &n) == FL_ERR_FORMAT && strstr(fl_last_error(), "'nope'") &&
                 fl_state_get_i64(st, "sum", &n) == FL_ERR_FORMAT && fl_state_get_f64s(st, "odd", o, 4, &n) == FL_ERR_FORMAT;
  return FL_OK;
}
static void plain_free(fl_callback *cb) { free(cb); }

/* The hook: at global batch `at` (train and valid, from 0 in this fit), SIGINT or a file size
 * limit of `fsize` bytes (SIGXFSZ ignored) or the checkpoint directory replaced by a file. */
typedef struct { fl_callback cb; int64_t n, at; int what; const char *dir; } hook_cb;
enum { HOOK_SIGINT = 1, HOOK_FSIZE, HOOK_DIR_GONE, HOOK_READ_ONLY };
static fl_status hook_before_batch(fl_callback *cb, fl_learner *l) {
  (void)l;
  hook_cb *h = (hook_cb *)cb;
  if (h->n++ != h->at) return FL_OK;
  if (h->what == HOOK_SIGINT) raise(SIGINT);
  if (h->what == HOOK_FSIZE) {
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit r;
    getrlimit(RLIMIT_FSIZE, &r);
    r.rlim_cur = 700;
    setrlimit(RLIMIT_FSIZE, &r);
  }
  if (h->what == HOOK_READ_ONLY) chmod(h->dir, 0555);   /* not for root, who ignores permissions */
  if (h->what == HOOK_DIR_GONE) {   /* root ignores permissions: a directory that became a file */
    char moved[512];
    snprintf(moved, sizeof moved, "%s.moved", h->dir);
    rename(h->dir, moved);
    write_all(h->dir, "x", 1);
  }
  return FL_OK;
}

typedef struct fit_opts {
  int mom, every, keep, epochs;
  const char *dir;               /* NULL: no CheckpointCB */
  const char *resume;            /* a checkpoint file, or NULL */
  const char *log, *csv, *done;  /* file paths */
  int hook, hook_at;
  const char *drop_cb;           /* leave out the callback of that name */
  int sgd_mom_opt;               /* use a second, different optimiser name */
  int cuda;                      /* train on the GPU (DeviceCB) */
} fit_opts;

typedef struct fit_out { fl_status st; uint64_t hash; double sum; int loaded_ok; char err[512]; char last[512]; } fit_out;

static fl_optimizer *other_opt(fl_module *m, float lr) {
  fl_optimizer *o = fl_sgd_new(m, lr);
  o->name = "OtherSGD";
  return o;
}

static fit_out fit(const fit_opts *o) {
  fit_out r = {0};
  fl_dataset *tr = fx_dataset(200, 4, 3), *va = fx_dataset(60, 4, 4);
  fl_dataloaders dls;
  EXPECT(fl_get_dls(&dls, tr, va, 16, 11, 0, 1) == FL_OK);
  fl_rng rng = fl_rng_make(9, FL_STREAM_USER);
  fl_module *mods[3] = {fl_linear_new(4, 8, 1, &rng), fl_relu_new(), fl_linear_new(8, 4, 1, &rng)};
  fl_module *model = fl_sequential_new(3, mods);
  EXPECT(fl_module_collate(model) == FL_OK);
  FILE *devnull = fopen("/dev/null", "w"), *done = o->done ? fopen(o->done, "w") : NULL;
  fl_callback *cbs[12];
  int n = 0;
  fl_metric *acc = fl_multiclass_accuracy_new();
  const char *name = "accuracy";
  fl_callback *mcb = fl_metrics_cb_new(1, &acc, &name);
  ((fl_metrics_cb *)mcb)->log = NULL;   /* quiet: the files log */
  cbs[n++] = mcb;
  cbs[n++] = fl_interrupt_cb_new();
  cbs[n++] = fl_progress_cb_new(1, NULL, devnull, 0);
  cbs[n++] = fl_completion_cb_new(done ? done : devnull);
  sum_cb *s = calloc(1, sizeof *s);
  s->cb.name = "SumCB", s->cb.free = plain_free, s->cb.on[FL_AFTER_BATCH] = sum_after_batch;
  s->cb.save_state = sum_save, s->cb.load_state = sum_load;
  cbs[n++] = &s->cb;
  if (o->log) cbs[n++] = fl_jsonl_cb_new(o->log);
  if (o->csv) cbs[n++] = fl_csv_cb_new(o->csv);
  if (o->cuda) cbs[n++] = fl_device_cb_new(FL_CUDA);
  fl_callback *kcb = NULL;
  if (o->dir) {
    fl_checkpoint *ck = NULL;
    if (o->resume) {
      fl_status rs = fl_checkpoint_read(o->resume, model, &ck);
      EXPECTF(rs == FL_OK, "%s", fl_last_error());
    }
    static const char *cfg[2] = {"--what", "test"};
    fl_checkpoint_cfg cc = {.dir = o->dir, .every = o->every, .keep = o->keep, .save_grad = -1, .model_name = "t",
                            .config = cfg, .n_config = 1, .resume = ck};
    cbs[n++] = kcb = fl_checkpoint_cb_new(&cc);
  }
  if (o->hook) {
    hook_cb *h = calloc(1, sizeof *h);
    h->cb.name = "HookCB", h->cb.order = -2000, h->cb.free = plain_free, h->cb.on[FL_BEFORE_BATCH] = hook_before_batch;
    h->at = o->hook_at, h->what = o->hook, h->dir = o->dir;
    cbs[n++] = &h->cb;
  }
  if (o->drop_cb)
    for (int i = 0; i < n; i++)
      if (!strcmp(cbs[i]->name, o->drop_cb)) {
        if (cbs[i] == &s->cb) s = NULL;
        fl_callback_free(cbs[i]), cbs[i--] = cbs[--n];
      }
  fl_opt_fn of = o->sgd_mom_opt ? other_opt : fl_sgd_new;
  fl_learner *l = o->mom ? fl_momentum_learner_new(model, &dls, fl_cross_entropy, 0.3f, cbs, n, of, 0.6f)
                         : fl_learner_new(model, &dls, fl_cross_entropy, 0.3f, cbs, n, of, &fl_train_ops);
  r.st = fl_fit(l, o->epochs ? o->epochs : 3, 1, 1, NULL, 0, 0);
  snprintf(r.err, sizeof r.err, "%s", r.st ? fl_last_error() : "");
  if (o->hook == HOOK_FSIZE) {
    struct rlimit rl;
    getrlimit(RLIMIT_FSIZE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_FSIZE, &rl);
  }
  r.hash = fl_module_hash(model);
  r.sum = s ? s->sum : 0;
  r.loaded_ok = s ? s->loaded_ok : 0;
  if (kcb) snprintf(r.last, sizeof r.last, "%s", fl_checkpoint_cb_last(kcb));
  fl_learner_free(l);
  fl_module_free(model);
  fl_dataloaders_free(&dls);
  fl_dataset_free(tr), fl_dataset_free(va);
  fclose(devnull);
  if (done) fclose(done);
  return r;
}

/* begin_at(k) gives batches k.. of the same epoch as begin(), inline and with workers. */
static void test_loader_begin_at(void) {
  fl_dataset *ds = fx_dataset(100, 4, 1);
  for (int w = 0; w <= 2; w += 2) {
    fl_dataloader_cfg cfg = {.bs = 8, .shuffle = 1, .seed = 5, .n_workers = w, .flat = 1};
    fl_dataloader *a = fl_dataloader_new(ds, &cfg), *b = fl_dataloader_new(ds, &cfg);
    fl_batch ba, bb;
    for (int64_t first = 0; first <= fl_dataloader_len(a); first += 3) {
      fl_dataloader_set_epoch(a, 2), fl_dataloader_set_epoch(b, 2);
      fl_dataloader_begin(a);
      fl_dataloader_begin_at(b, first);
      int64_t i = 0, same = 1, nb = 0;
      while (fl_dataloader_next(a, &ba)) {
        if (i++ < first) continue;
        same &= fl_dataloader_next(b, &bb) && ba.t[0]->shape[0] == bb.t[0]->shape[0] &&
                !memcmp(ba.t[0]->data, bb.t[0]->data, (size_t)fl_numel(ba.t[0]) * 4) &&
                !memcmp(ba.t[1]->data, bb.t[1]->data, (size_t)fl_numel(ba.t[1]) * 4);
        nb++;
      }
      EXPECTF(same && !fl_dataloader_next(b, &bb) && nb == fl_dataloader_len(a) - first, "workers %d, first %lld", w,
              (long long)first);
      EXPECT(fl_dataloader_epoch(b) == 3);
    }
    fl_dataloader_free(a), fl_dataloader_free(b);
  }
  fl_dataset_free(ds);
}

/* The uninterrupted fit (every batch checkpointed, all kept), then a resume from each checkpoint
 * (every `stride`-th one). */
static void resume_from_each(int mom, int cuda, int stride) {
  char dir[256], log[256], csv[256], done[256], rlog[256], rcsv[256], rdone[256], rdir[256];
  path_in(dir, sizeof dir, "all"), path_in(log, sizeof log, "ref.jsonl"), path_in(csv, sizeof csv, "ref.csv");
  path_in(done, sizeof done, "ref.done"), path_in(rlog, sizeof rlog, "r.jsonl"), path_in(rcsv, sizeof rcsv, "r.csv");
  path_in(rdone, sizeof rdone, "r.done"), path_in(rdir, sizeof rdir, "resumed");
  rm_rf(dir);
  fit_out plain = fit(&(fit_opts){.mom = mom, .log = log, .cuda = cuda});
  fit_out ref = fit(&(fit_opts){.mom = mom, .every = 1, .keep = 1000, .dir = dir, .log = log, .csv = csv, .done = done, .cuda = cuda});
  EXPECTF(ref.st == FL_OK, "%s", ref.err);
  EXPECTF(ref.hash == plain.hash && ref.sum == plain.sum, "checkpointing changed the fit: %016llx %016llx",
          (unsigned long long)ref.hash, (unsigned long long)plain.hash);
  static char ref_log[1 << 14], ref_csv[1 << 14], ref_done[256], got[1 << 14];
  read_file(log, ref_log, sizeof ref_log), read_file(csv, ref_csv, sizeof ref_csv), read_file(done, ref_done, sizeof ref_done);
  strip_seconds(ref_log), strip_seconds(ref_csv);
  EXPECTF(strstr(ref_done, "Completed 45 batches"), "%s", ref_done);   /* 3 x (13 + 2) */
  static char names[200][96];
  int n = list_ckpts(dir, names, 200);
  EXPECTF(n == 3 * 13 + 3, "%d checkpoints", n);   /* one per training batch (the last of an epoch twice: its end) */
  int bad = 0;
  for (int i = 0; i < n; i += stride) {
    char ck[512];
    snprintf(ck, sizeof ck, "%.200s/%.95s", dir, names[i]);
    copy_file(log, rlog), copy_file(csv, rcsv);   /* the logs as they were after the kill: longer */
    rm_rf(rdir);
    fit_out r = fit(&(fit_opts){.mom = mom, .dir = rdir, .resume = ck, .log = rlog, .csv = rcsv, .done = rdone, .cuda = cuda});
    int ok = r.st == FL_OK && r.hash == ref.hash && r.sum == ref.sum && r.loaded_ok;
    read_file(rlog, got, sizeof got), strip_seconds(got);
    ok &= !strcmp(got, ref_log);
    read_file(rcsv, got, sizeof got), strip_seconds(got);
    ok &= !strcmp(got, ref_csv);
    read_file(rdone, got, sizeof got);
    ok &= !strcmp(got, ref_done);
    if (!ok && bad++ < 3)
      EXPECTF(0, "resumed from %s: status %d (%s), hash %016llx (want %016llx), sum %a (want %a), state %d, log:\n%s",
              names[i], r.st, r.err, (unsigned long long)r.hash, (unsigned long long)ref.hash, r.sum, ref.sum, r.loaded_ok,
              got);
  }
  EXPECTF(bad == 0, "%d of %d resumes differ", bad, n);
  rm_rf(dir), rm_rf(rdir);
  unlink(log), unlink(csv), unlink(done), unlink(rlog), unlink(rcsv), unlink(rdone);
}
static void test_resume_each_sgd(void) { resume_from_each(0, 0, 1); }
static void test_resume_each_momentum(void) { resume_from_each(1, 0, 1); }
/* On the GPU (weights, grads and the metrics' accumulators on the device): every 3rd checkpoint. */
static void test_resume_gpu(void) {
  if (!fl_cuda_available()) SKIP("no CUDA device");
  resume_from_each(0, 1, 3);
  resume_from_each(1, 1, 3);
}

/* Ctrl-C at batch k: a checkpoint of exactly there, which resumes to the uninterrupted result. */
static void test_sigint_checkpoint(void) {
  char dir[256], log[256];
  path_in(dir, sizeof dir, "int"), path_in(log, sizeof log, "int.jsonl");
  fit_out ref = fit(&(fit_opts){.mom = 1, .log = log});
  static char ref_log[1 << 14], got[1 << 14];
  read_file(log, ref_log, sizeof ref_log), strip_seconds(ref_log);
  const int at[] = {0, 5, 13, 15, 17, 40};   /* first batch; mid-epoch; first valid; mid-valid; epoch 1 start; late */
  for (int i = 0; i < 6; i++) {
    rm_rf(dir);
    unlink(log);
    fit_out a = fit(&(fit_opts){.mom = 1, .every = 4, .dir = dir, .log = log, .hook = HOOK_SIGINT, .hook_at = at[i]});
    EXPECTF(a.st == FL_OK && fl_interrupted() && a.last[0], "at %d: %d %s", at[i], a.st, a.err);
    fit_out b = fit(&(fit_opts){.mom = 1, .every = 4, .dir = dir, .log = log, .resume = a.last});
    read_file(log, got, sizeof got), strip_seconds(got);
    EXPECTF(b.st == FL_OK && b.hash == ref.hash && !strcmp(got, ref_log), "Ctrl-C at batch %d, resumed from %s: %s", at[i],
            a.last, b.err);
  }
  rm_rf(dir), unlink(log);
}

/* A truncated or changed checkpoint at every offset, and foreign files: one line naming the file. */
static void test_corrupt_every_offset(void) {
  char dir[256], p[512], bad[512];
  path_in(dir, sizeof dir, "corrupt");
  rm_rf(dir);
  fit(&(fit_opts){.mom = 1, .epochs = 1, .dir = dir});
  static char names[8][96];
  EXPECT(list_ckpts(dir, names, 8) == 1);
  snprintf(p, sizeof p, "%s/%s", dir, names[0]);
  snprintf(bad, sizeof bad, "%s/bad.safetensors", dir);
  size_t n;
  unsigned char *b = read_all(p, &n);
  EXPECT(b && n > 500);
  fl_rng rng = fl_rng_make(9, FL_STREAM_USER);
  fl_module *mods[3] = {fl_linear_new(4, 8, 1, &rng), fl_relu_new(), fl_linear_new(8, 4, 1, &rng)};
  fl_module *m = fl_sequential_new(3, mods);
  fl_module_collate(m);
  uint64_t h = fl_module_hash(m);
  fl_checkpoint *c = NULL;
  EXPECTF(fl_checkpoint_read(p, m, &c) == FL_OK, "%s", fl_last_error());
  fl_checkpoint_free(c);
  int fails = 0;
  for (size_t k = 0; k < 2 * n; k++) {
    int trunc = k < n;
    if (trunc) write_all(bad, b, k);
    else {
      b[k - n] ^= 0x5a;
      write_all(bad, b, n);
      b[k - n] ^= 0x5a;
    }
    c = NULL;
    fl_status st = fl_checkpoint_read(bad, m, &c);
    const char *e = fl_last_error();
    int ok = (st == FL_ERR_FORMAT || st == FL_ERR_IO) && c == NULL && !strncmp(e, bad, strlen(bad)) && one_line(e);
    if (!ok && fails++ < 3)
      EXPECTF(0, "%s at byte %zu: status %d, %s", trunc ? "truncated" : "changed", k % n, st, e);
    fl_checkpoint_free(c);
  }
  EXPECTF(fails == 0, "%d of %zu broken files accepted or badly reported", fails, 2 * n);
  EXPECT(fl_module_hash(m) == h);
  /* foreign: a weights file, an empty file, text, a directory */
  char wp[512];
  snprintf(wp, sizeof wp, "%s/w.safetensors", dir);
  EXPECT(fl_save_safetensors(m, wp, "t") == FL_OK);
  EXPECT(fl_checkpoint_read(wp, m, &c) == FL_ERR_FORMAT && strstr(fl_last_error(), "not a flexlearn checkpoint"));
  write_all(bad, "", 0);
  EXPECT(fl_checkpoint_read(bad, m, &c) == FL_ERR_FORMAT && strstr(fl_last_error(), "truncated"));
  write_all(bad, "hello world, this is text", 25);
  EXPECT(fl_checkpoint_read(bad, m, &c) == FL_ERR_FORMAT && one_line(fl_last_error()));
  EXPECT(fl_checkpoint_read(dir, m, &c) == FL_ERR_IO && strstr(fl_last_error(), dir));
  /* another model: the shapes are named */
  fl_module *mods2[3] = {fl_linear_new(4, 5, 1, &rng), fl_relu_new(), fl_linear_new(5, 4, 1, &rng)};
  fl_module *m2 = fl_sequential_new(3, mods2);
  fl_module_collate(m2);
  EXPECT(fl_checkpoint_read(p, m2, &c) == FL_ERR_FORMAT && strstr(fl_last_error(), "shape"));
  /* a directory whose only checkpoint is corrupt: one line naming it, nothing renamed */
  b[n / 2] ^= 1;
  write_all(p, b, n);
  unlink(bad), unlink(wp);
  EXPECT(fl_checkpoint_latest(dir, m, stderr, &c) == FL_ERR_FORMAT && strstr(fl_last_error(), names[0]) &&
         strstr(fl_last_error(), "CRC") && one_line(fl_last_error()) && access(p, F_OK) == 0);
  EXPECT(fl_module_hash(m) == h);
  fl_module_free(m), fl_module_free(m2);
  free(b);
  rm_rf(dir);
}

/* Resuming into another optimiser, another learner, without a callback that has state. */
static void test_resume_mismatch(void) {
  char dir[256], p[512], rdir[256];
  path_in(dir, sizeof dir, "mis"), path_in(rdir, sizeof rdir, "mis2");
  rm_rf(dir);
  fit_out a = fit(&(fit_opts){.mom = 1, .epochs = 1, .dir = dir});
  snprintf(p, sizeof p, "%s", a.last);
  fit_out r = fit(&(fit_opts){.mom = 0, .dir = rdir, .resume = p});
  EXPECTF(r.st == FL_ERR_ARG && strstr(r.err, p) && strstr(r.err, "MomentumLearner"), "%s", r.err);
  r = fit(&(fit_opts){.mom = 1, .dir = rdir, .resume = p, .sgd_mom_opt = 1});
  EXPECTF(r.st == FL_ERR_ARG && strstr(r.err, "OtherSGD"), "%s", r.err);
  rm_rf(dir);
  a = fit(&(fit_opts){.mom = 1, .epochs = 1, .dir = dir, .drop_cb = "SumCB"});
  snprintf(p, sizeof p, "%s", a.last);
  r = fit(&(fit_opts){.mom = 1, .dir = rdir, .resume = p});
  EXPECTF(r.st == FL_ERR_ARG && strstr(r.err, "SumCB"), "%s", r.err);
  rm_rf(dir), rm_rf(rdir);
}

/* A full disk (RLIMIT_FSIZE) or a directory gone while checkpointing: the fit stops with an error
 * naming the path, nothing half-written, and the previous checkpoint resumes to the right result. */
static void test_write_failures(void) {
  char dir[256], moved[300];
  path_in(dir, sizeof dir, "full");
  snprintf(moved, sizeof moved, "%s.moved", dir);
  fit_out ref = fit(&(fit_opts){0});
  for (int what = HOOK_FSIZE; what <= HOOK_READ_ONLY; what++) {
    if (what == HOOK_READ_ONLY && geteuid() == 0) {
      printf("note: running as root, which writes into read-only directories: that case is not run\n");
      break;
    }
    rm_rf(dir), unlink(dir), rm_rf(moved);
    /* global batch 20 = training batch 5 of epoch 1 (15 a epoch): its checkpoint (position 6) fails */
    fit_out a = fit(&(fit_opts){.every = 1, .dir = dir, .hook = what, .hook_at = 20});
    EXPECTF(a.st == FL_ERR_IO && strstr(a.err, dir) && strstr(a.err, "ckpt-000001-train-00000006.safetensors") &&
                strstr(a.err, what == HOOK_FSIZE ? "File too large" : what == HOOK_DIR_GONE ? "Not a directory" : "Permission denied") &&
                one_line(a.err),
            "%s", a.err);
    const char *d = what == HOOK_DIR_GONE ? moved : dir;
    if (what == HOOK_READ_ONLY) chmod(dir, 0700);
    static char names[8][96];
    int n = list_ckpts(d, names, 8);
    EXPECTF(n == 3 && !strcmp(names[2], "ckpt-000001-train-00000005.safetensors"), "%d: %s", n, n ? names[n - 1] : "");
    char tmp[512], p[512];
    snprintf(tmp, sizeof tmp, "%s/ckpt-000001-train-00000006.safetensors.tmp", d);
    EXPECT(access(tmp, F_OK) != 0);
    snprintf(p, sizeof p, "%s/%s", d, names[2]);
    if (what == HOOK_DIR_GONE) unlink(dir);
    fit_out b = fit(&(fit_opts){.every = 1, .dir = dir, .resume = p});
    EXPECTF(b.st == FL_OK && b.hash == ref.hash, "resumed from %s: %s", p, b.err);
    rm_rf(dir), rm_rf(moved);
  }
}

/* ---- the CLI ---- */
static const char *g_cli;
static char g_out[1 << 16], g_err[1 << 16], g_data[256];

static void write_be32(FILE *f, uint32_t v) {
  unsigned char b[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16), (unsigned char)(v >> 8), (unsigned char)v};
  fwrite(b, 1, 4, f);
}

static void write_idx(const char *dir, const char *name, int ndim, const uint32_t *dims, const uint8_t *data) {
  char p[512];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  FILE *f = fopen(p, "wb");
  fputc(0, f), fputc(0, f), fputc(8, f), fputc(ndim, f);
  size_t n = 1;
  for (int i = 0; i < ndim; i++) write_be32(f, dims[i]), n *= dims[i];
  fwrite(data, 1, n, f);
  fclose(f);
}

/* Fashion-MNIST-shaped: n_train / n_test 28x28 images, a noisy bright block per class. */
static void make_data(const char *dir, uint32_t n_train, uint32_t n_test) {
  mkdir(dir, 0700);
  fl_rng r = fl_rng_make(5, FL_STREAM_USER);
  for (int split = 0; split < 2; split++) {
    uint32_t n = split ? n_test : n_train, px = 784;
    uint8_t *x = malloc((size_t)n * px), *y = malloc(n);
    for (uint32_t i = 0; i < n; i++) {
      y[i] = (uint8_t)(i % 10);
      for (uint32_t k = 0; k < px; k++)
        x[(size_t)i * px + k] = (uint8_t)(k / 64 == y[i] ? 60 + fl_rng_below(&r, 196) : fl_rng_below(&r, 160));
    }
    uint32_t idims[3] = {n, 28, 28}, ldims[1] = {n};
    write_idx(dir, split ? "t10k-images-idx3-ubyte" : "train-images-idx3-ubyte", 3, idims, x);
    write_idx(dir, split ? "t10k-labels-idx1-ubyte" : "train-labels-idx1-ubyte", 1, ldims, y);
    free(x), free(y);
  }
}

/* Runs the CLI (argv NULL-terminated) with env "NAME=VALUE" (or NULL) set; output in g_out/g_err. */
static pid_t spawn(const char *env, const char *const *args) { return cli_spawn(g_cli, g_dir, env, args); }
static int finish(pid_t pid) { return cli_finish(pid, g_cli, g_dir, 120, g_out, sizeof g_out, g_err, sizeof g_err); }

#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})
static int cli(const char *env, const char *const *args) { return finish(spawn(env, args)); }

/* One line "flexlearn: ..." naming `needle`. */
static int one_err_line(const char *needle) {
  size_t n = strlen(g_err);
  return n > 12 && g_err[n - 1] == '\n' && !strchr(g_err, '\n')[1] && !strncmp(g_err, "flexlearn: ", 11) && strstr(g_err, needle);
}

/* The base run's flags (after "fit") for threads t, then two more flag pairs (the optimiser, the
 * learner, the schedule), then extra flags. */
#define FIT2(t, k1, v1, k2, v2, ...)                                                                                   \
  ARGS("fit", "--data", g_data, "--epochs", "2", "--bs", "32", "--no-progress", "--device", "cpu", "--threads", t, \
       "--lr", "0.1", k1, v1, k2, v2, __VA_ARGS__)
/* MomentumLearner (--mom 0.6) or plain SGD (the default seed given instead, to keep the count) */
#define FIT(t, mom, ...) FIT2(t, mom ? "--mom" : "--seed", mom ? "0.6" : "42", "--seed", "42", __VA_ARGS__)

/* k1 v1 k2 v2: the flags that choose the optimiser, learner and schedule */
static void cli_kill_resume_with(const char *threads, const char *k1, const char *v1, const char *k2, const char *v2) {
  char ck[256], log[256], csv[256], ref_log[8192], ref_csv[8192], ref_out[4096], got[8192];
  path_in(ck, sizeof ck, "ck"), path_in(log, sizeof log, "c.jsonl"), path_in(csv, sizeof csv, "c.csv");
  rm_rf(ck);
  int rc = cli(NULL, FIT2(threads, k1, v1, k2, v2, "--log", log, "--csv", csv));
  EXPECTF(rc == 0, "rc %d: %s", rc, g_err);
  snprintf(ref_out, sizeof ref_out, "%.4000s", g_out);
  read_file(log, ref_log, sizeof ref_log), strip_seconds(ref_log);
  read_file(csv, ref_csv, sizeof ref_csv), strip_seconds(ref_csv);
  /* 320 train images at bs 32: 10 batches; 100 valid at 64: 2. Kills at: the first batch, mid-epoch,
   * the first validation batch, mid-epoch 1 (two before the next checkpoint), the last batch */
  static const char *at[5] = {"FLEXLEARN_TEST_KILL_AT=0", "FLEXLEARN_TEST_KILL_AT=5", "FLEXLEARN_TEST_KILL_AT=10",
                              "FLEXLEARN_TEST_KILL_AT=17", "FLEXLEARN_TEST_KILL_AT=23"};
  for (int i = 0; i < 5; i++) {
    rm_rf(ck), unlink(log), unlink(csv);
    rc = cli(at[i], FIT2(threads, k1, v1, k2, v2, "--log", log, "--csv", csv, "--checkpoint", ck, "--every", "3"));
    EXPECTF(rc == 128 + SIGKILL, "%s: rc %d: %s", at[i], rc, g_err);
    rc = cli(NULL, FIT2(threads, k1, v1, k2, v2, "--log", log, "--csv", csv, "--resume", ck));
    if (i == 0) {   /* killed before any checkpoint: nothing to resume, one line, exit 1 */
      EXPECTF(rc == 1 && one_err_line(ck) && strstr(g_err, "no checkpoint"), "rc %d: %s", rc, g_err);
      continue;
    }
    const char *last = strrchr(ref_out, 'w');   /* "weights fnv1a ...": the resumed run ends the same */
    EXPECTF(rc == 0 && last && strstr(g_out, last) && strstr(g_err, "resuming from"), "%s: rc %d: %s\n%s", at[i], rc, g_err, g_out);
    read_file(log, got, sizeof got), strip_seconds(got);
    EXPECTF(!strcmp(got, ref_log), "%s: logs differ:\n%s\nwant:\n%s", at[i], got, ref_log);
    read_file(csv, got, sizeof got), strip_seconds(got);
    EXPECTF(!strcmp(got, ref_csv), "%s: csv differs:\n%s\nwant:\n%s", at[i], got, ref_csv);
  }
  rm_rf(ck), unlink(log), unlink(csv);
}
static void cli_kill_resume(const char *threads, int mom) {
  cli_kill_resume_with(threads, mom ? "--mom" : "--seed", mom ? "0.6" : "42", "--seed", "42");
}
static void test_cli_kill_sgd_1(void) { cli_kill_resume("1", 0); }
static void test_cli_kill_sgd_2(void) { cli_kill_resume("2", 0); }
static void test_cli_kill_mom_1(void) { cli_kill_resume("1", 1); }
static void test_cli_kill_mom_2(void) { cli_kill_resume("2", 1); }
/* AdamW's moments and step count; OneCycle's position (a function of the step count); SGD whose
 * momentum buffer OneCycle brings into being at the first step (the resumed fit must make it
 * before restoring it) */
static void test_cli_kill_adamw_onecycle(void) { cli_kill_resume_with("2", "--opt", "adamw", "--sched", "onecycle"); }
static void test_cli_kill_sgd_onecycle(void) { cli_kill_resume_with("1", "--sched", "onecycle", "--seed", "42"); }
/* 12_accel_sgd's optimisers (their flat state: grad_avg; sqr_avg, whose first step starts it at
 * g^2; avg and sqr_avg with the step count) under the new schedules (functions of the step) */
static void test_cli_kill_nb_momentum_step(void) { cli_kill_resume_with("2", "--opt", "momentum", "--sched", "step"); }
static void test_cli_kill_nb_rmsprop_cosine(void) { cli_kill_resume_with("1", "--opt", "rmsprop", "--sched", "cosine"); }
static void test_cli_kill_nb_adam_exp(void) { cli_kill_resume_with("2", "--opt", "adam", "--sched", "exp"); }
/* RecorderCB (--record): killed mid-epoch 1 and resumed, the charts are the uninterrupted
 * run's, byte for byte (its history comes back from the checkpoint). */
static void test_cli_kill_record(void) {
  if (!fl_plot_available()) SKIP("no PNG plots in this build");
  char ck[256], a[256], b[256], pa[256], pb[256];
  static char fa[1 << 17], fb[1 << 17];
  path_in(ck, sizeof ck, "ckr"), path_in(a, sizeof a, "a.png"), path_in(b, sizeof b, "b.png");
  rm_rf(ck);
  int rc = cli(NULL, FIT2("2", "--opt", "adam", "--sched", "warmup", "--record", a));
  EXPECTF(rc == 0 && strstr(g_out, "recorded lr and loss of 20 training batches"), "rc %d: %s\n%s", rc, g_err, g_out);
  rc = cli("FLEXLEARN_TEST_KILL_AT=17", FIT2("2", "--opt", "adam", "--sched", "warmup", "--record", b, "--checkpoint", ck,
                                              "--every", "3"));
  EXPECTF(rc == 128 + SIGKILL, "rc %d: %s", rc, g_err);
  rc = cli(NULL, FIT2("2", "--opt", "adam", "--sched", "warmup", "--record", b, "--resume", ck));
  EXPECTF(rc == 0 && strstr(g_out, "recorded lr and loss of 20 training batches"), "rc %d: %s\n%s", rc, g_err, g_out);
  const char *sfx[2] = {"-lr.png", "-loss.png"};
  for (int k = 0; k < 2; k++) {
    snprintf(pa, sizeof pa, "%.*s%s", (int)strlen(a) - 4, a, sfx[k]);
    snprintf(pb, sizeof pb, "%.*s%s", (int)strlen(b) - 4, b, sfx[k]);
    size_t na = read_file(pa, fa, sizeof fa), nb = read_file(pb, fb, sizeof fb);
    EXPECTF(na > 100 && na == nb && !memcmp(fa, fb, na), "%s (%zu bytes) differs from %s (%zu)", pb, nb, pa, na);
    unlink(pa), unlink(pb);
  }
  rm_rf(ck);
}

/* EarlyStoppingCB: its best value, wait count and best weights come back, so the fit it stops
 * (no gain above 0.5 in epoch 1) ends with epoch 0's weights after any resume */
/* The ResNet: BatchNorm's running stats (buffers) and AdamW's moments come back too */
static void test_cli_kill_resnet_1(void) { cli_kill_resume_with("1", "--model", "resnet", "--opt", "adamw"); }
static void test_cli_kill_resnet_2(void) { cli_kill_resume_with("2", "--model", "resnet", "--opt", "adamw"); }
static void test_cli_kill_early_stop(void) { cli_kill_resume_with("2", "--early-stop", "1", "--min-delta", "0.5"); }

/* A real kill -9 at a moment the test does not choose (once 2+ checkpoints exist), then resume;
 * and Ctrl-C (exit 130, the checkpoint named) then resume. */
static void test_cli_external_kill_and_sigint(void) {
  char ck[256], ref_out[4096];
  path_in(ck, sizeof ck, "ext");
  int rc = cli(NULL, FIT("2", 1, "--epochs", "6"));
  snprintf(ref_out, sizeof ref_out, "%s", strrchr(g_out, 'w') ? strrchr(g_out, 'w') : "none");
  rm_rf(ck);
  pid_t pid = spawn(NULL, FIT("2", 1, "--epochs", "6", "--checkpoint", ck, "--every", "1", "--keep", "2"));
  static char names[8][96];
  for (int w = 0; w < 3000 && list_ckpts(ck, names, 8) < 2; w++) nanosleep(&(struct timespec){0, 1000 * 1000}, NULL);
  kill(pid, SIGKILL);
  rc = finish(pid);
  if (rc == 0) {
    printf("note: the run ended before the kill\n");
  } else {
    EXPECTF(rc == 128 + SIGKILL, "rc %d", rc);
    rc = cli(NULL, FIT("2", 1, "--epochs", "6", "--resume", ck));
    EXPECTF(rc == 0 && strstr(g_out, ref_out), "rc %d: %s\n%s", rc, g_err, g_out);
  }
  /* Ctrl-C mid-epoch and mid-validation */
  static const char *at[2] = {"FLEXLEARN_TEST_SIGINT_AT=7", "FLEXLEARN_TEST_SIGINT_AT=23"};
  for (int i = 0; i < 2; i++) {
    rm_rf(ck);
    rc = cli(at[i], FIT("2", 1, "--epochs", "6", "--checkpoint", ck));
    EXPECTF(rc == 130 && one_err_line("interrupted") && strstr(g_err, "; checkpoint ") && strstr(g_err, ck), "rc %d: %s", rc, g_err);
    rc = cli(NULL, FIT("2", 1, "--epochs", "6", "--resume", ck));
    EXPECTF(rc == 0 && strstr(g_out, ref_out), "%s: rc %d: %s\n%s", at[i], rc, g_err, g_out);
  }
  rm_rf(ck);
}

static void test_cli_bad_resume(void) {
  char ck[256], p[600], none[256], empty[256];
  path_in(ck, sizeof ck, "bad"), path_in(none, sizeof none, "none"), path_in(empty, sizeof empty, "empty");
  rm_rf(ck);
  int rc = cli(NULL, FIT("2", 0, "--checkpoint", ck, "--every", "4"));
  EXPECTF(rc == 0, "%s", g_err);
  /* flags that shape the run differ: each named, exit 2 */
  rc = cli(NULL, ARGS("fit", "--data", g_data, "--epochs", "3", "--bs", "16", "--no-progress", "--device", "cpu", "--lr", "0.1",
                      "--seed", "7", "--resume", ck));
  EXPECTF(rc == 2 && one_err_line("--epochs 3 (checkpoint: 2)") && strstr(g_err, "--bs 16 (checkpoint: 32)") &&
              strstr(g_err, "--seed 7 (checkpoint: 42)") && !strstr(g_err, "--lr"),
          "rc %d: %s", rc, g_err);
  rc = cli(NULL, FIT("1", 1, "--resume", ck));
  EXPECTF(rc == 2 && one_err_line("--mom 0.6 (checkpoint: none)"), "rc %d: %s", rc, g_err);
  /* --checkpoint into a directory with another run's checkpoints; --every alone */
  rc = cli(NULL, FIT("2", 0, "--checkpoint", ck));
  EXPECTF(rc == 2 && one_err_line("another run"), "rc %d: %s", rc, g_err);
  rc = cli(NULL, FIT("2", 0, "--every", "3"));
  EXPECTF(rc == 2 && one_err_line("--every"), "rc %d: %s", rc, g_err);
  /* a missing or empty directory: exit 1, one line */
  rc = cli(NULL, FIT("2", 0, "--resume", none));
  EXPECTF(rc == 1 && one_err_line(none), "rc %d: %s", rc, g_err);
  mkdir(empty, 0700);
  rc = cli(NULL, FIT("2", 0, "--resume", empty));
  EXPECTF(rc == 1 && one_err_line("no checkpoint"), "rc %d: %s", rc, g_err);
  rmdir(empty);
  /* a write a crash cut short leaves a .tmp: ignored by --resume, removed by the next save */
  char tmp[700];
  snprintf(tmp, sizeof tmp, "%s/ckpt-000009-train-00000001.safetensors.tmp", ck);
  write_all(tmp, "partial", 7);
  /* the newest checkpoint truncated: the one before, with one line saying so; the result the same */
  static char names[8][96];
  int n = list_ckpts(ck, names, 8);
  EXPECT(n == 3);
  snprintf(p, sizeof p, "%s/%s", ck, names[n - 1]);
  EXPECT(truncate(p, 1000) == 0);
  rc = cli(NULL, FIT("2", 0, "--resume", ck));
  EXPECTF(rc == 0 && strstr(g_err, names[n - 1]) && strstr(g_err, "renamed to *.corrupt") && strstr(g_err, names[n - 2]),
          "rc %d: %s", rc, g_err);
  EXPECT(access(tmp, F_OK) != 0);
  /* every checkpoint corrupt: exit 1, one line naming the newest */
  n = list_ckpts(ck, names, 8);
  for (int i = 0; i < n; i++) {
    snprintf(p, sizeof p, "%.250s/%.95s", ck, names[i]);
    EXPECT(truncate(p, 4000) == 0);
  }
  rc = cli(NULL, FIT("2", 0, "--resume", ck));
  EXPECTF(rc == 1 && one_err_line(names[n - 1]) && strstr(g_err, "no valid checkpoint"), "rc %d: %s", rc, g_err);
  rm_rf(ck);
}

/* ---- timing (printed for the README): a checkpoint of a 1.2M-parameter MLP ---- */
static void test_write_time(void) {
  char dir[256];
  path_in(dir, sizeof dir, "time");
  rm_rf(dir);
  fl_dataset *tr = fx_dataset(64, 4, 3), *va = fx_dataset(32, 4, 4);
  fl_dataloaders dls;
  fl_get_dls(&dls, tr, va, 32, 1, 0, 1);
  fl_rng rng = fl_rng_make(1, FL_STREAM_USER);
  /* 4-1500-800-10: 4*1500+1500 + 1500*800+800 + 800*10+10 = 1,216,310 parameters */
  fl_module *mods[5] = {fl_linear_new(4, 1500, 1, &rng), fl_relu_new(), fl_linear_new(1500, 800, 1, &rng), fl_relu_new(),
                        fl_linear_new(800, 10, 1, &rng)};
  fl_module *big = fl_sequential_new(5, mods), *mlp = fl_get_model(1, 784, 50, 10);
  fl_module_collate(big);
  fl_module *resnet = fl_model_new("resnet", 1);
  /* weights (4.9 MB), weights + grads (MomentumLearner), the lesson's MLP, the ResNet with AdamW
   * (weights, BatchNorm's buffers, both moments: 14.7 MB) */
  for (int run = 0; run < 4; run++) {
    int grads = run == 1;
    fl_module *m = run < 2 ? big : run == 2 ? mlp : resnet;
    fl_dataset *dtr = run < 2 ? tr : fx_dataset(64, 4, 3), *dva = run < 3 ? va : fx_dataset(32, 4, 4);
    if (run >= 2) dtr->h = dtr->w = 28, dtr->x = realloc(dtr->x, 64 * 784), memset(dtr->x, 7, 64 * 784);
    if (run == 3) dva->h = dva->w = 28, dva->x = realloc(dva->x, 32 * 784), memset(dva->x, 7, 32 * 784);
    fl_dataloaders mdls;
    fl_get_dls(&mdls, dtr, dva, 32, 1, 0, 1);
    rm_rf(dir);
    fl_checkpoint_cfg cc = {.dir = dir, .every = 1, .keep = 2, .save_grad = grads};
    fl_callback *k = fl_checkpoint_cb_new(&cc);
    fl_callback *cbs[1] = {k};
    fl_learner *l = fl_learner_new(m, &mdls, fl_cross_entropy, 0.01f, cbs, 1, run == 3 ? fl_adamw_new : fl_sgd_new,
                                   &fl_train_ops);
    double t[5], sum = 0;
    for (int i = 0; i < 5; i++) {
      EXPECT(fl_fit(l, 1, 1, 0, NULL, 0, 0) == FL_OK);   /* 2 batches + the epoch end: 3 saves, the last timed */
      t[i] = fl_checkpoint_cb_last_seconds(k), sum += t[i];
    }
    for (int i = 1; i < 5; i++)
      for (int j = i; j > 0 && t[j - 1] > t[j]; j--) { double x = t[j]; t[j] = t[j - 1], t[j - 1] = x; }
    struct stat sb;
    stat(fl_checkpoint_cb_last(k), &sb);
    printf("checkpoint of %s%lld parameters%s, %lld bytes: min %.1f ms, median %.1f ms, max %.1f ms (write, fsync, rename, fsync dir)\n",
           run == 3 ? "the ResNet + AdamW, " : "", (long long)fl_module_numel(m), grads ? " + grads" : "", (long long)sb.st_size, 1e3 * t[0], 1e3 * t[2], 1e3 * t[4]);
    fl_learner_free(l);
    fl_dataloaders_free(&mdls);
    if (run >= 2) fl_dataset_free(dtr);
    if (run == 3) fl_dataset_free(dva);
  }
  fl_module_free(big), fl_module_free(mlp), fl_module_free(resnet);
  fl_dataloaders_free(&dls);
  fl_dataset_free(tr), fl_dataset_free(va);
  rm_rf(dir);
}

int main(void) {
  if (!mkdtemp(g_dir)) return perror("mkdtemp"), 2;
#ifdef FL_NO_CJSON
  printf("skip test_checkpoint: built without cJSON (CJSON=0): no checkpoints\n");
  t__skip++;
  rmdir(g_dir);
  return test_summary();
#endif
  RUN(test_loader_begin_at);
  RUN(test_resume_each_sgd);
  RUN(test_resume_each_momentum);
  RUN(test_resume_gpu);
  RUN(test_sigint_checkpoint);
  RUN(test_corrupt_every_offset);
  RUN(test_resume_mismatch);
  RUN(test_write_failures);
  RUN(test_write_time);
  g_cli = getenv("FLEXLEARN_CLI");
  if (!g_cli || !*g_cli) g_cli = "build/flexlearn";
  if (access(g_cli, X_OK) != 0) {
    fprintf(stderr, "test_checkpoint: %s: not an executable (set FLEXLEARN_CLI)\n", g_cli);
    t__fail++;
  } else {
    path_in(g_data, sizeof g_data, "data");
    make_data(g_data, 320, 100);
    RUN(test_cli_kill_sgd_1);
    RUN(test_cli_kill_sgd_2);
    RUN(test_cli_kill_mom_1);
    RUN(test_cli_kill_mom_2);
    RUN(test_cli_kill_adamw_onecycle);
    RUN(test_cli_kill_sgd_onecycle);
  RUN(test_cli_kill_nb_momentum_step);
  RUN(test_cli_kill_nb_rmsprop_cosine);
  RUN(test_cli_kill_nb_adam_exp);
  RUN(test_cli_kill_record);
    RUN(test_cli_kill_early_stop);
    RUN(test_cli_kill_resnet_1);
    RUN(test_cli_kill_resnet_2);
    RUN(test_cli_external_kill_and_sigint);
    RUN(test_cli_bad_resume);
  }
  rm_rf(g_dir);
  return test_summary();
}
