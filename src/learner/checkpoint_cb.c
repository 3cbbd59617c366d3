/* CheckpointCB: writes checkpoints (every N training batches, at each epoch's end, at a Ctrl-C
 * stop) and resumes a fit from one, exactly: the same weights, log lines and metrics as the run
 * that was never stopped. The format and the reader: include/fl/checkpoint.h, checkpoint.c.
 *
 * Where a fit is. The callback follows the position after the last whole batch or phase: the
 * next batch to run (epoch, phase, iter), the training batches done, and each loader's epoch
 * counter as it must be before that phase's begin() (shuffles are functions of (seed, epoch),
 * so nothing is replayed). It runs last (order 1000) in after_batch and after_epoch, so every
 * other callback's state is that of the finished batch; a batch that did not finish (an error,
 * a cancelled batch) leaves the position unknown and no Ctrl-C checkpoint is written.
 *
 * Writing: the header (JSON, with the state in __metadata__) then each tensor straight from the
 * model's memory (CPU) or through one host buffer; NAME.tmp, fsync, rename, fsync of the
 * directory; then all but the newest `keep` are removed. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "fl/checkpoint.h"

#ifdef FL_NO_CJSON
static fl_status nocj_before_fit(fl_callback *cb, fl_learner *l) {
  (void)cb, (void)l;
  return fl_error(FL_ERR_ARG, "CheckpointCB: this flexlearn was built without cJSON (make CJSON=0): no checkpoints");
}
static void nocj_free(fl_callback *cb) { free(cb); }
fl_callback *fl_checkpoint_cb_new(const fl_checkpoint_cfg *cfg) {
  (void)cfg;
  fl_callback *cb = fl_xcalloc(1, sizeof *cb);
  cb->name = "CheckpointCB";
  cb->order = 1000;
  cb->free = nocj_free;
  cb->on[FL_BEFORE_FIT] = nocj_before_fit;
  return cb;
}
const char *fl_checkpoint_cb_last(fl_callback *cb) { (void)cb; return ""; }
double fl_checkpoint_cb_last_seconds(fl_callback *cb) { (void)cb; return 0; }
#else
#include "learner/checkpoint_internal.h"

typedef struct pos { int epoch, valid; int64_t iter, n_iter; uint64_t dl_epoch[2]; } pos;

typedef struct {
  fl_callback cb;
  char *dir, *model_name;
  int every, keep, save_grad;
  char **config;          /* n_config key, value pairs (copies) */
  int n_config;
  fl_checkpoint *resume;
  pos at;                 /* after the last whole batch or phase */
  int clean;              /* `at` is exact (no batch half done since) */
  uint64_t phase_perm;    /* the current phase's loader epoch (its counter before begin) */
  pos saved;              /* the last one written */
  int any_saved;
  char last[4096];
  double last_seconds;
} ckpt_cb;

static uint64_t dl_epoch(fl_dataloader *dl) { return dl ? fl_dataloader_epoch(dl) : 0; }

/* The key of callback i in "callbacks": its name, "name#2" for the second of that name. */
static const char *cb_key(fl_learner *l, int i, char *buf, size_t n) {
  const char *name = l->cbs[i]->name ? l->cbs[i]->name : "callback";
  int k = 1;
  for (int j = 0; j < i; j++) k += l->cbs[j]->name && !strcmp(l->cbs[j]->name, name);
  if (k == 1) snprintf(buf, n, "%s", name);
  else snprintf(buf, n, "%s#%d", name, k);
  return buf;
}

static int grads_are_state(const ckpt_cb *c, const fl_learner *l) {
  return c->save_grad >= 0 ? c->save_grad : l->ops == &fl_momentum_ops;
}

/* ---- writing ---- */
static int write_all(int fd, const void *buf, size_t n) {
  const char *p = buf;
  while (n) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      if (w == 0) errno = EIO;
      return -1;
    }
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

/* The flexlearn_state object for position `at` (NULL with the error set). */
static cJSON *state_json(ckpt_cb *c, fl_learner *l, const pos *at, fl_tensor **ps, int np) {
  cJSON *s = cJSON_CreateObject(), *o, *a;
  fl_status st = FL_OK;
  int ok = s != NULL;
#define ADDN(obj, k, v) (ok = ok && cJSON_AddNumberToObject(obj, k, (double)(v)) != NULL)
  ADDN(s, "version", FL__CKPT_VERSION);
  ok = ok && (o = cJSON_AddObjectToObject(s, "position")) != NULL;
  ADDN(o, "epoch", at->epoch);
  ok = ok && cJSON_AddStringToObject(o, "phase", at->valid ? "valid" : "train");
  ADDN(o, "iter", at->iter);
  ADDN(s, "n_iter", at->n_iter);
  ADDN(s, "n_epochs", l->n_epochs);
  double le[2] = {(double)at->dl_epoch[0], (double)at->dl_epoch[1]};
  ok = ok && (a = cJSON_CreateDoubleArray(le, 2)) && cJSON_AddItemToObject(s, "loader_epochs", a);
  ok = ok && (o = cJSON_AddObjectToObject(s, "optimizer")) != NULL;
  fl_optimizer *opt = l->opt;
  ok = ok && cJSON_AddStringToObject(o, "name", opt ? opt->name : "none");
  ADDN(o, "n_steps", opt ? opt->n_steps : 0);
  ok = ok && (a = cJSON_AddArrayToObject(o, "bufs")) != NULL;
  for (int b = 0; ok && opt && b < opt->n_bufs; b++) ok = cJSON_AddItemToArray(a, cJSON_CreateString(opt->buf_names[b]));
  ok = ok && (a = cJSON_AddArrayToObject(o, "groups")) != NULL;
  FL_CHECK(!opt || (opt->n_groups >= 1 && opt->n_groups <= FL__CKPT_MAX_GROUPS), "CheckpointCB: %d parameter groups (1..%d)",
           opt->n_groups, FL__CKPT_MAX_GROUPS);
  for (int g = 0; ok && g < (opt ? opt->n_groups : 1); g++) {
    fl_param_group z = {0}, *pg = opt ? &opt->groups[g] : &z;
    cJSON *go = cJSON_CreateObject();
    char b[3][40];
    snprintf(b[0], 40, "%a", (double)pg->lr), snprintf(b[1], 40, "%a", (double)pg->mom), snprintf(b[2], 40, "%a", (double)pg->wd);
    ok = go && cJSON_AddItemToArray(a, go) && cJSON_AddStringToObject(go, "lr", b[0]) && cJSON_AddStringToObject(go, "mom", b[1]) &&
         cJSON_AddStringToObject(go, "wd", b[2]);
  }
  ok = ok && cJSON_AddBoolToObject(s, "grad", grads_are_state(c, l));
  ok = ok && (a = cJSON_AddArrayToObject(s, "grad_none")) != NULL;
  for (int i = 0; ok && i < np; i++) ok = cJSON_AddItemToArray(a, cJSON_CreateNumber(ps[i]->grad_none != 0));
  ADDN(s, "flat_numel", l->model->flat ? fl_numel(l->model->flat) : 0);
  ok = ok && (o = cJSON_AddObjectToObject(s, "checkpoint")) != NULL;
  ADDN(o, "every", c->every);
  ADDN(o, "keep", c->keep);
  ok = ok && (o = cJSON_AddObjectToObject(s, "config")) != NULL;
  for (int i = 0; ok && i < c->n_config; i++) ok = cJSON_AddStringToObject(o, c->config[2 * i], c->config[2 * i + 1]) != NULL;
  ok = ok && (o = cJSON_AddObjectToObject(s, "callbacks")) != NULL;
  for (int i = 0; ok && i < l->n_cbs; i++) {
    if (!l->cbs[i]->save_state) continue;
    char key[96];
    fl_state cs = {cJSON_CreateObject()};
    ok = cs.obj && cJSON_AddItemToObject(o, cb_key(l, i, key, sizeof key), cs.obj);
    if (!ok) cJSON_Delete(cs.obj);
    else if ((st = l->cbs[i]->save_state(l->cbs[i], l, &cs)) != FL_OK) ok = 0;
  }
#undef ADDN
  if (!ok) {
    cJSON_Delete(s);
    if (st == FL_OK) fl_error(FL_ERR_NOMEM, "CheckpointCB: out of memory building the checkpoint's state");
    return NULL;
  }
  return s;
}

/* Removes all but the newest keep checkpoints of dir, and the .tmp files of writes a crash cut
 * short (failures are ignored: the next save tries again). */
static void prune(const char *dir, int keep) {
  fl__ckpt_file *f;
  int n = fl__ckpt_list(dir, &f);
  char p[4096];
  for (int i = keep; i < n; i++) {
    snprintf(p, sizeof p, "%s/%s", dir, f[i].name);
    unlink(p);
  }
  free(f);
  DIR *d = opendir(dir);
  struct dirent *e;
  while (d && (e = readdir(d))) {
    size_t k = strlen(e->d_name);
    if (!strncmp(e->d_name, "ckpt-", 5) && k > 16 && !strcmp(e->d_name + k - 16, ".safetensors.tmp")) {
      snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
      unlink(p);
    }
  }
  if (d) closedir(d);
}

static fl_status save(ckpt_cb *c, fl_learner *l, const pos *at) {
  double t0 = fl_now();
  char name[96], path[4096], tmp[4200];
  snprintf(path, sizeof path, "%s/%s", c->dir, fl__ckpt_name(name, sizeof name, at->epoch, at->valid, at->iter));
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  char **names;
  fl_tensor **ps;
  int np = fl__st_names(l->model, &names, &ps);
  fl_optimizer *opt = l->opt;
  int nb = opt ? opt->n_bufs : 0, grad = grads_are_state(c, l), nt = np + nb + grad;
  /* every tensor to write, in order: parameters, optimiser buffers, grad */
  const fl_tensor **ts = fl_xmalloc((size_t)nt * sizeof *ts);
  char (*tn)[FL__CKPT_MAX_NAME + 8] = fl_xmalloc((size_t)(nb + 1) * sizeof *tn);
  for (int i = 0; i < np; i++) ts[i] = ps[i];
  for (int b = 0; b < nb; b++) {
    ts[np + b] = opt->bufs[b];
    snprintf(tn[b], sizeof tn[b], "optim.%s", opt->buf_names[b]);
  }
  if (grad) ts[np + nb] = l->model->flat_grad;
  cJSON *state = state_json(c, l, at, ps, np);
  cJSON *root = state ? cJSON_CreateObject() : NULL, *meta = NULL;
  char *state_s = state ? cJSON_PrintUnformatted(state) : NULL;
  int ok = root && state_s && (meta = cJSON_AddObjectToObject(root, "__metadata__")) && cJSON_AddStringToObject(meta, "format", "pt") &&
           cJSON_AddStringToObject(meta, "flexlearn_model", c->model_name ? c->model_name : "") &&
           cJSON_AddStringToObject(meta, "flexlearn_state", state_s) && cJSON_AddStringToObject(meta, "flexlearn_crc32", "00000000");
  uint64_t off = 0;
  size_t maxb = 1;
  for (int i = 0; ok && i < nt; i++) {
    const fl_tensor *t = ts[i];
    FL_CHECK(t && t->dtype == FL_F32 && fl_is_contiguous(t), "CheckpointCB: tensor %d is not a contiguous f32 tensor", i);
    size_t bytes = (size_t)fl_numel(t) * sizeof(float);
    if (bytes > maxb) maxb = bytes;
    double dims[FL_MAX_DIMS], offs[2] = {(double)off, (double)(off + bytes)};
    int nd = i < np ? t->ndim : 1;
    if (i < np) for (int d = 0; d < nd; d++) dims[d] = (double)t->shape[d];
    else dims[0] = (double)fl_numel(t);
    off += bytes;
    cJSON *e = cJSON_AddObjectToObject(root, i < np ? names[i] : i < np + nb ? tn[i - np] : "grad");
    cJSON *sh = cJSON_CreateDoubleArray(dims, nd), *of = cJSON_CreateDoubleArray(offs, 2);
    ok = e && sh && of && cJSON_AddStringToObject(e, "dtype", "F32");
    if (ok && (ok = cJSON_AddItemToObject(e, "shape", sh))) sh = NULL;
    if (ok && (ok = cJSON_AddItemToObject(e, "data_offsets", of))) of = NULL;
    cJSON_Delete(sh), cJSON_Delete(of);
  }
  char *json = ok ? cJSON_PrintUnformatted(root) : NULL;
  cJSON_Delete(root), cJSON_Delete(state), cJSON_free(state_s);
  fl_status st = FL_OK;
  if (!json) {
    st = state ? fl_error(FL_ERR_NOMEM, "%s: out of memory preparing the checkpoint", path) : FL_ERR;
    if (!state) st = fl_error(FL_ERR, "%s: %s", path, fl_last_error());
  }
  void *buf = NULL;
  const char *what = "create";
  int fd = -1;
  if (st == FL_OK) {
    unlink(tmp);   /* a leftover of a crash */
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
    ok = fd >= 0;
  }
  if (st == FL_OK && ok) {
    what = "write";
    size_t jl = strlen(json), hl = (jl + 7) & ~(size_t)7;
    uint8_t len[8];
    for (int i = 0; i < 8; i++) len[i] = (uint8_t)((uint64_t)hl >> (8 * i));
    static const char spaces[8] = "        ";
    /* the CRC of every byte in file order, its own digits as zeros, written in place at the end */
    const char *digits = strstr(json, FL__CKPT_CRC_KEY);
    FL_CHECK(digits, "CheckpointCB: no CRC placeholder in the header");
    off_t crc_at = 8 + (digits - json) + (off_t)strlen(FL__CKPT_CRC_KEY);
    uLong crc = crc32(0L, Z_NULL, 0);
    crc = crc32_z(crc, len, 8), crc = crc32_z(crc, (const Bytef *)json, jl), crc = crc32_z(crc, (const Bytef *)spaces, hl - jl);
    ok = write_all(fd, len, 8) == 0 && write_all(fd, json, jl) == 0 && write_all(fd, spaces, hl - jl) == 0;
    for (int i = 0; ok && i < nt; i++) {
      size_t bytes = (size_t)fl_numel(ts[i]) * sizeof(float);
      const void *src = ts[i]->data;
      if (ts[i]->device != FL_CPU) {   /* through one host buffer */
        if (!buf && !(buf = malloc(maxb))) {
          errno = ENOMEM;
          ok = 0;
          break;
        }
        fl_tensor_to_host(ts[i], buf);
        src = buf;
      }
      crc = crc32_z(crc, src, bytes);
      ok = write_all(fd, src, bytes) == 0;
    }
    char hx[9];
    snprintf(hx, sizeof hx, "%08x", (unsigned)crc);
    if (ok) ok = pwrite(fd, hx, 8, crc_at) == 8;
    if (ok) what = "fsync", ok = fsync(fd) == 0;
    int e = errno;
    if (close(fd) != 0 && ok) what = "close", ok = 0, e = errno;
    errno = e;
    if (ok) what = "rename", ok = rename(tmp, path) == 0;
    if (ok) {   /* the rename is durable only once the directory is */
      int dfd = open(c->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      what = "fsync the directory of";
      ok = dfd >= 0 && fsync(dfd) == 0;
      e = errno;
      if (dfd >= 0) close(dfd);
      errno = e;
    }
  }
  if (st == FL_OK && !ok) {
    int e = errno;
    if (fd >= 0) unlink(tmp);
    st = fl_error(FL_ERR_IO, "%s: cannot %s %s: %s (the previous checkpoints are unchanged)", path, what,
                  !strcmp(what, "rename") || !strncmp(what, "fsync the", 9) ? "it" : tmp, strerror(e));
  }
  free(buf), cJSON_free(json), free(ts), free(tn), fl__st_names_free(names, ps, np);
  if (st != FL_OK) return st;
  prune(c->dir, c->keep);
  c->saved = *at;
  c->any_saved = 1;
  snprintf(c->last, sizeof c->last, "%s", path);
  c->last_seconds = fl_now() - t0;
  return FL_OK;
}

/* ---- resuming ---- */
static fl_status restore(ckpt_cb *c, fl_learner *l) {
  fl_checkpoint *k = c->resume;
  const char *file = k->path;
  /* validated against the model it was read for: again against this learner's */
  char **names;
  fl_tensor **ps;
  int np = fl__st_names(l->model, &names, &ps);
  fl__st_want *want = fl_xmalloc((size_t)(np ? np : 1) * sizeof *want);
  for (int i = 0; i < np; i++) {
    want[i] = (fl__st_want){.name = names[i], .ndim = ps[i]->ndim};
    memcpy(want[i].shape, ps[i]->shape, sizeof want[i].shape);
  }
  fl__ckpt_meta m2;
  fl_status st = fl__ckpt_parse_mem(k->p, k->n, file, want, np, 0, &m2);   /* its CRC was checked by the read */
  free(want);
  if (st != FL_OK) return fl__st_names_free(names, ps, np), st;
  fl__ckpt_meta_free(&k->meta);
  k->meta = m2;
  const fl__ckpt_meta *m = &k->meta;
  fl_optimizer *opt = l->opt;
  int64_t flat = l->model->flat ? fl_numel(l->model->flat) : 0;
  /* buffers the optimiser makes only at a later step (SGD's momentum, once OneCycle sets a
   * momentum): made now, so they can be restored */
  for (int b = opt ? opt->n_bufs : 0; opt && b < m->n_bufs && !strcmp(m->opt_name, opt->name); b++)
    if (fl_opt_make_buf(opt, m->buf_names[b]) != FL_OK) break;
  if (strcmp(m->opt_name, opt ? opt->name : "none"))
    st = fl_error(FL_ERR_ARG, "%s: written with optimiser %s, this fit uses %s", file, m->opt_name, opt ? opt->name : "none");
  else if (m->n_bufs != (opt ? opt->n_bufs : 0) || m->n_groups != (opt ? opt->n_groups : 1))
    st = fl_error(FL_ERR_ARG, "%s: %d optimiser buffers and %d groups, this fit's %s has %d and %d", file, m->n_bufs, m->n_groups,
                  m->opt_name, opt ? opt->n_bufs : 0, opt ? opt->n_groups : 1);
  for (int b = 0; st == FL_OK && b < m->n_bufs; b++)
    if (strcmp(m->buf_names[b], opt->buf_names[b]) || fl_numel(opt->bufs[b]) != m->flat_numel)
      st = fl_error(FL_ERR_ARG, "%s: optimiser buffer '%s' does not match this fit's '%s'", file, m->buf_names[b], opt->buf_names[b]);
  if (st == FL_OK && m->grad != grads_are_state(c, l))
    st = fl_error(FL_ERR_ARG, "%s: %s; this fit's learner %s", file,
                  m->grad ? "written by a learner whose gradients carry over (MomentumLearner)" : "written by a learner that clears its gradients",
                  m->grad ? "clears them" : "keeps them (MomentumLearner)");
  if (st == FL_OK && (m->n_bufs || m->grad) && m->flat_numel != flat)
    st = fl_error(FL_ERR_FORMAT, "%s: buffers of %lld values, the model's are %lld", file, (long long)m->flat_numel, (long long)flat);
  /* the callbacks' states (before any tensor is written) */
  for (int i = 0; st == FL_OK && i < l->n_cbs; i++) {
    if (!l->cbs[i]->load_state) continue;
    char key[96];
    fl_state cs = {cJSON_GetObjectItemCaseSensitive(m->callbacks, cb_key(l, i, key, sizeof key))};
    if (!cs.obj) {
      st = fl_error(FL_ERR_ARG, "%s: no state for callback %s (the checkpointed fit did not have it)", file, key);
      break;
    }
    if ((st = l->cbs[i]->load_state(l->cbs[i], l, &cs)) != FL_OK)
      st = fl_error(st, "%s: callback %s: %s", file, key, fl_last_error());
  }
  if (st == FL_OK) {
    for (int i = 0; i < m->n_off; i++) {
      fl_tensor *t = i < np ? ps[i] : i < np + m->n_bufs ? opt->bufs[i - np] : l->model->flat_grad;
      if (t->device == FL_CPU) {
        memcpy(t->data, k->p + m->off[i], (size_t)fl_numel(t) * sizeof(float));
      } else {
        fl_tensor src = *t;
        src.data = (void *)(k->p + m->off[i]), src.device = FL_CPU, src.owned = NULL, src.grad = NULL, src.node = NULL;
        fl_tensor_copy(t, &src);
      }
    }
    for (int i = 0; i < np; i++) ps[i]->grad_none = m->grad_none[i];
    if (opt) {
      opt->n_steps = m->n_steps;
      for (int g = 0; g < opt->n_groups; g++) opt->groups[g].lr = m->lr[g], opt->groups[g].mom = m->mom[g], opt->groups[g].wd = m->wd[g];
    }
    l->n_iter = m->n_iter;
    l->start_epoch = m->epoch, l->start_valid = m->valid, l->start_iter = m->iter;
    if (l->dls && l->dls->train) fl_dataloader_set_epoch(l->dls->train, m->loader_epoch[0]);
    if (l->dls && l->dls->valid) fl_dataloader_set_epoch(l->dls->valid, m->loader_epoch[1]);
    c->saved = (pos){m->epoch, m->valid, m->iter, m->n_iter, {m->loader_epoch[0], m->loader_epoch[1]}};
    c->any_saved = 1;
  }
  fl__st_names_free(names, ps, np);
  return st;
}

/* ---- events ---- */
static void at_counters(ckpt_cb *c, fl_learner *l, int epoch, int valid, int64_t iter) {
  c->at = (pos){epoch, valid, iter, l->n_iter, {dl_epoch(l->dls ? l->dls->train : NULL), dl_epoch(l->dls ? l->dls->valid : NULL)}};
  c->clean = 1;
}

static fl_status kcb_before_fit(fl_callback *cb, fl_learner *l) {
  ckpt_cb *c = (ckpt_cb *)cb;
  c->any_saved = 0;
  if (mkdir(c->dir, 0777) != 0 && errno != EEXIST)
    return fl_error(FL_ERR_IO, "%s: cannot create the checkpoint directory: %s", c->dir, strerror(errno));
  if (c->resume) {
    fl_status st = restore(c, l);
    fl_checkpoint_free(c->resume);
    c->resume = NULL;
    if (st != FL_OK) return st;
  }
  at_counters(c, l, l->start_epoch, l->start_valid, l->start_iter);
  return FL_OK;
}

static fl_status kcb_before_epoch(fl_callback *cb, fl_learner *l) {
  ckpt_cb *c = (ckpt_cb *)cb;
  c->phase_perm = dl_epoch(l->dl);
  at_counters(c, l, l->epoch, !l->training, l->start_iter);
  return FL_OK;
}

static fl_status kcb_before_batch(fl_callback *cb, fl_learner *l) {
  (void)l;
  ((ckpt_cb *)cb)->clean = 0;
  return FL_OK;
}

static fl_status kcb_after_batch(fl_callback *cb, fl_learner *l) {
  ckpt_cb *c = (ckpt_cb *)cb;
  at_counters(c, l, l->epoch, !l->training, l->iter + 1);
  c->at.n_iter += l->training;              /* the loop counts this batch after after_batch */
  c->at.dl_epoch[!l->training] = c->phase_perm;
  if (l->training && c->every > 0 && c->at.n_iter % c->every == 0) return save(c, l, &c->at);
  return FL_OK;
}

static fl_status kcb_after_epoch(fl_callback *cb, fl_learner *l) {
  ckpt_cb *c = (ckpt_cb *)cb;
  int last = !l->training || !l->fit_valid;   /* the epoch ends with this phase */
  at_counters(c, l, last ? l->epoch + 1 : l->epoch, !last, 0);
  return last ? save(c, l, &c->at) : FL_OK;
}

static int same_pos(const pos *a, const pos *b) { return a->epoch == b->epoch && a->valid == b->valid && a->iter == b->iter; }

/* Ctrl-C (InterruptCB cancelled the fit between batches): a checkpoint of exactly there. */
static fl_status kcb_cleanup_fit(fl_callback *cb, fl_learner *l) {
  ckpt_cb *c = (ckpt_cb *)cb;
  fl_checkpoint_free(c->resume);   /* a fit that failed before it was applied */
  c->resume = NULL;
  if (l->status != FL_CANCEL_FIT || !fl_interrupted() || !c->clean) return FL_OK;
  if (c->any_saved && same_pos(&c->at, &c->saved)) return FL_OK;
  return save(c, l, &c->at);
}

static void kcb_free(fl_callback *cb) {
  ckpt_cb *c = (ckpt_cb *)cb;
  fl_checkpoint_free(c->resume);
  for (int i = 0; i < 2 * c->n_config; i++) free(c->config[i]);
  free(c->config), free(c->dir), free(c->model_name);
  free(c);
}

fl_callback *fl_checkpoint_cb_new(const fl_checkpoint_cfg *cfg) {
  FL_CHECK(cfg && cfg->dir && *cfg->dir && cfg->every >= 0 && cfg->n_config >= 0 && (!cfg->n_config || cfg->config),
           "fl_checkpoint_cb_new: needs a directory, every >= 0 and a valid config list");
  ckpt_cb *c = fl_xcalloc(1, sizeof *c);
  c->cb.name = "CheckpointCB";
  c->cb.order = 1000;   /* last: every other callback's state is that of the finished batch */
  c->cb.free = kcb_free;
  c->cb.on[FL_BEFORE_FIT] = kcb_before_fit;
  c->cb.on[FL_BEFORE_EPOCH] = kcb_before_epoch;
  c->cb.on[FL_BEFORE_BATCH] = kcb_before_batch;
  c->cb.on[FL_AFTER_BATCH] = kcb_after_batch;
  c->cb.on[FL_AFTER_EPOCH] = kcb_after_epoch;
  c->cb.on[FL_CLEANUP_FIT] = kcb_cleanup_fit;
  c->dir = strdup(cfg->dir);
  size_t dl = strlen(c->dir);
  while (dl > 1 && c->dir[dl - 1] == '/') c->dir[--dl] = 0;
  c->model_name = cfg->model_name ? strdup(cfg->model_name) : NULL;
  c->every = cfg->every;
  c->keep = cfg->keep > 0 ? cfg->keep : 3;
  c->save_grad = cfg->save_grad;
  c->n_config = cfg->n_config;
  c->config = fl_xcalloc((size_t)(2 * cfg->n_config + 1), sizeof *c->config);
  for (int i = 0; i < 2 * cfg->n_config; i++) c->config[i] = strdup(cfg->config[i]);
  c->resume = cfg->resume;
  return &c->cb;
}

const char *fl_checkpoint_cb_last(fl_callback *cb) { return ((ckpt_cb *)cb)->last; }
double fl_checkpoint_cb_last_seconds(fl_callback *cb) { return ((ckpt_cb *)cb)->last_seconds; }
#endif /* FL_NO_CJSON */
