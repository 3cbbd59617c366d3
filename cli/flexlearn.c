/* flexlearn: the command-line tool. Trains the lesson's model (Linear(784,50)-ReLU-Linear(50,10))
 * on Fashion-MNIST with the lesson's defaults, or runs the LR finder.
 *
 *   flexlearn fit      [flags]     train and show progress and metrics
 *   flexlearn lr_find  [flags]     the LR finder: prints the lr/loss curve, a suggestion, a plot
 *   flexlearn summary  [--model N] the model's layers: shapes, parameters, MFLOPs (no data read)
 *   flexlearn predict  --weights FILE.safetensors [flags] [IMAGE...]   classify images
 *
 * Exit status: 0 done, 1 a runtime failure (data, device, NaN loss...), 2 bad usage, 130
 * stopped by Ctrl-C (after the current batch, with logs and plots closed properly). Every
 * failure prints one line on stderr naming the file or flag and what is wrong. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "flexlearn.h"
#include "fl/plot.h"

static const char usage[] =
    "usage: flexlearn fit|lr_find|summary [flags]\n"
    "       flexlearn predict --weights FILE.safetensors [--model NAME] [--data DIR | --images FILE\n"
    "                         [--labels FILE] | IMAGE.png|IMAGE.jpg...] [--bs N] [--device D] [--verbose]\n"
    "  --epochs N        epochs to train (default 1; 0 trains nothing)\n"
    "  --lr X            learning rate (default 0.2; must be > 0)\n"
    "  --bs N            batch size (default 1024; valid batches are 2*bs)\n"
    "  --mom M           use MomentumLearner with momentum M in [0, 1) (default: plain SGD)\n"
    "  --opt NAME        optimiser: sgd (default, torch's SGD), adamw (torch's AdamW: betas 0.9, 0.999,\n"
    "                    eps 1e-8), or 12_accel_sgd's own: momentum (grad_avg = grad_avg*0.9 + g*0.1,\n"
    "                    p -= lr*grad_avg), rmsprop (sqr_mom 0.99, eps 1e-5 outside the sqrt), adam\n"
    "                    (beta1 0.9, beta2 0.99, eps 1e-5 inside the sqrt, as the notebook writes it)\n"
    "  --sched NAME      fit's lr schedule, stepped per training batch over the whole fit (or --sched-steps):\n"
    "                    none (default: --lr throughout);\n"
    "                    onecycle (torch's OneCycleLR: --lr is the peak, warm-up 30 %, cosine, from lr/25\n"
    "                    down to lr/25e4; cycles adamw's beta1 or sgd's momentum 0.95-0.85);\n"
    "                    cosine (CosineAnnealingLR: from --lr down to 0 at the end, eta_min 0);\n"
    "                    exp (ExponentialLR: gamma such that the lr falls 100x, from --lr to lr/100);\n"
    "                    step (StepLR: halved at each epoch's end, step_size an epoch's batches, gamma 0.5);\n"
    "                    warmup (LinearLR(start_factor 0.01, end_factor 1): from lr/100 up to --lr over\n"
    "                    the first 10 % of the steps (at least 1), then constant)\n"
    "  --sched-steps N   the schedule's length in training batches (default: the fit's epochs x batches;\n"
    "                    may not be shorter than the fit)\n"
    "  --wd X            weight decay >= 0 (default 0 for sgd, 0.01 for adamw, 0 for momentum, rmsprop,\n"
    "                    adam; decoupled, p *= 1 - lr*wd, in all but sgd)\n"
    "  --seed N          seed for init and shuffling (default 42)\n"
    "  --threads N       CPU threads (default 2)\n"
    "  --workers N       data loader threads (default 0: batches are built by the training threads)\n"
    "  --data DIR        directory with the four Fashion-MNIST IDX files, raw or .gz\n"
    "                    (default $FLEXLEARN_DATA or /usr/share/datasets/fashion-mnist)\n"
    "  --device D        cpu, cuda or auto (default auto: the GPU when there is one)\n"
    "  --model NAME      the model to train (default mlp, the lesson's 784-50-10; cnn: 10_activations'\n"
    "                    stride-2 CNN; cnn_bn: 11_initializing's, with BatchNorm and GeneralRelu, that\n"
    "                    12_accel_sgd trains; resnet: 13_resnet's ResNet). The conv models train on inputs\n"
    "                    normalised as (x - 0.28) / 0.35, on the CPU (no CUDA conv kernels yet)\n"
    "  --dropout P       a Dropout(P) before the head of resnet or resnet_wide (14_augment's dropmodel;\n"
    "                    predict needs it too, to build the same layers)\n"
    "  --plot FILE.png   fit: plot train/valid loss; lr_find: loss against lr (default lr_find.png)\n"
    "  --record FILE.png fit: RecorderCB's lr and loss of every training batch, as two charts,\n"
    "                    FILE-lr.png and FILE-loss.png (kept by checkpoints: a resumed fit plots the same)\n"
    "  --log FILE.jsonl  fit: one JSON object per epoch and phase (epoch, train, loss, accuracy, seconds)\n"
    "  --csv FILE.csv    fit: the same records as CSV, with a header line\n"
    "  --stats PREFIX    fit: activation statistics of the model's top-level layers (cnn: the convs,\n"
    "                    resnet: the ResBlocks) per training batch, plotted into PREFIX_color_dim.png,\n"
    "                    PREFIX_dead_chart.png and PREFIX_plot_stats.png after the fit\n"
    "  --save FILE.safetensors  fit: save the weights at the end (also after Ctrl-C), as\n"
    "                    safetensors with PyTorch's names (0.weight, 0.bias, 2.weight, 2.bias)\n"
    "  --save-best METRIC  fit: with --save, FILE holds the weights of the best epoch by the valid\n"
    "                    METRIC (accuracy: highest, loss: lowest), written whenever it improves,\n"
    "                    instead of the last epoch's\n"
    "  --early-stop N    fit: stop after N epochs without improvement of the valid --save-best\n"
    "                    metric (default loss), then put the best epoch's weights back\n"
    "  --min-delta X     fit: with --early-stop, an improvement must exceed X (default 0)\n"
    "  --checkpoint DIR  fit: write checkpoints into DIR (created if missing) at each epoch's end, every\n"
    "                    --every N training batches, and at a Ctrl-C stop; the newest --keep K (3) are kept.\n"
    "                    DIR must not hold another run's checkpoints\n"
    "  --resume DIR      fit: continue from DIR's newest valid checkpoint, exactly as if never stopped;\n"
    "                    the flags that shape the run (--model --bs --lr --mom --seed --epochs, the data)\n"
    "                    must be the checkpoint's. Goes on writing checkpoints into DIR (or --checkpoint),\n"
    "                    with the checkpointed run's --every and --keep unless given\n"
    "  --every N         with --checkpoint/--resume: also every N training batches (default 0: epoch ends)\n"
    "  --keep K          with --checkpoint/--resume: keep the newest K checkpoints (default 3)\n"
    "  --augment LIST    fit, lr_find: augment each training sample (14_augment, per sample, keyed by\n"
    "                    --seed, epoch and image): any of crop (a shift by up to --pad pixels, zero fill),\n"
    "                    flip (horizontal, p 0.5), erase (RandErase: 0-4 rectangles of N(0,1) noise),\n"
    "                    comma-separated, e.g. crop,flip\n"
    "  --pad N           with --augment crop: the crop's padding, 0..27 (default 1)\n"
    "  --tta             fit: after the fit, the valid accuracy of test-time augmentation (the mean\n"
    "                    softmax of each image and its horizontal flip): tta accuracy: 0.xxxx\n"
    "  --no-progress     no bars: the lesson's metric lines only\n"
    "predict (inference in eval mode, no grad, through the validation batch path):\n"
    "  --weights FILE    the safetensors weights of --model (from fit --save); required\n"
    "  --data DIR        with no images named: the 10000 test images of DIR; prints the accuracy\n"
    "  --images FILE     an IDX images file (raw or .gz), (N, 28, 28) or (N, 1, 28, 28)\n"
    "  --labels FILE     its IDX labels: prints the accuracy\n"
    "  IMAGE...          PNG or JPEG files, 28x28 (colour is made grey as PIL's convert('L');\n"
    "                    other sizes are refused): one line each, FILE: class N (name) p=0.xxxx\n"
    "  --bs N            batch size (default 1024)\n"
    "  --verbose         IDX sets: a line per image too\n"
    "  --help            this text\n";

typedef struct opts {
  const char *cmd, *data, *plot, *log, *csv, *save, *model, *ckpt, *resume;
  const char *opt, *sched;
  const char *record;           /* --record FILE.png */
  int sched_steps;              /* --sched-steps; 0: the whole fit */
  const char *stats;            /* fit: --stats PREFIX */
  double wd;                    /* < 0: the optimiser's default */
  double dropout;               /* --dropout P: a Dropout(P) before the head (resnet, resnet_wide) */
  const char *save_best, *weights, *images, *labels;   /* fit: --save-best; predict: the rest */
  int early_stop, verbose, n_files;
  double min_delta;
  const char **files;                                  /* predict: the image files named */
  int epochs, bs, threads, workers, progress, every, keep;   /* every, keep: -1 when not given */
  double lr, mom;
  unsigned long long seed;
  int use_mom;
  const char *device;
  int augment, pad, tta;        /* --augment flags (FL_AUG_*), --pad, --tta */
} opts;

static int bad(const char *flag, const char *val, const char *why) {
  fprintf(stderr, "flexlearn: %s%s%s: %s\n", flag, val ? " " : "", val ? val : "", why);
  return 2;
}

static int parse_int(const char *flag, const char *v, long lo, long hi, int *out) {
  char *end;
  errno = 0;
  long x = strtol(v, &end, 10);
  if (errno || end == v || *end) return bad(flag, v, "not an integer");
  if (x < lo || x > hi) {
    char why[96];
    snprintf(why, sizeof why, "out of range (must be %ld..%ld)", lo, hi);
    return bad(flag, v, why);
  }
  *out = (int)x;
  return 0;
}

static int parse_double(const char *flag, const char *v, double *out) {
  char *end;
  errno = 0;
  double x = strtod(v, &end);
  if (errno || end == v || *end || !isfinite(x)) return bad(flag, v, "not a finite number");
  *out = x;
  return 0;
}

/* Which command takes which of the newer flags (the older ones are taken by fit and lr_find,
 * and --bs/--threads/--workers/--data/--device/--model by predict too). */
static int flag_for_cmd(const char *f, const char *cmd) {
  static const char *const fit_only[] = {"--save-best", "--early-stop", "--min-delta", "--tta", "--stats"};
  static const char *const predict_only[] = {"--weights", "--images", "--labels"};
  static const char *const not_predict[] = {"--epochs", "--lr", "--mom", "--seed", "--plot", "--log", "--csv", "--save",
                                           "--augment", "--pad"};
  for (size_t k = 0; k < sizeof fit_only / sizeof *fit_only; k++)
    if (!strcmp(f, fit_only[k]) && strcmp(cmd, "fit")) return bad(f, NULL, "is a flag of fit only");
  for (size_t k = 0; k < sizeof predict_only / sizeof *predict_only; k++)
    if (!strcmp(f, predict_only[k]) && strcmp(cmd, "predict")) return bad(f, NULL, "is a flag of predict only");
  for (size_t k = 0; k < sizeof not_predict / sizeof *not_predict; k++)
    if (!strcmp(f, not_predict[k]) && !strcmp(cmd, "predict")) return bad(f, NULL, "is not a flag of predict");
  return 0;
}

static int parse(int argc, char **argv, opts *o) {
  int r0;
  *o = (opts){.model = "mlp", .epochs = 1, .bs = 1024, .threads = 2, .workers = 0, .progress = 1, .lr = 0.2,
              .mom = 0.85, .seed = 42, .device = "auto", .opt = "sgd", .sched = "none", .wd = -1, .every = -1, .keep = -1, .pad = -1};
  if (argc < 2) return fprintf(stderr, "%s", usage), 2;
  if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) return fputs(usage, stdout), -1;
  o->cmd = argv[1];
  if (strcmp(o->cmd, "fit") && strcmp(o->cmd, "lr_find") && strcmp(o->cmd, "predict") && strcmp(o->cmd, "summary"))
    return bad("command", o->cmd, "unknown (expected fit, lr_find, predict or summary; see --help)");
  int predict = !strcmp(o->cmd, "predict");
  o->files = calloc((size_t)argc, sizeof *o->files);
  for (int i = 2; i < argc; i++) {
    const char *f = argv[i];
    if (!strcmp(f, "--help") || !strcmp(f, "-h")) return fputs(usage, stdout), -1;
    if (predict && f[0] != '-') { o->files[o->n_files++] = f; continue; }   /* an image file */
    if (!strcmp(f, "--no-progress")) { o->progress = 0; continue; }
    if (!strcmp(f, "--tta")) {
      if ((r0 = flag_for_cmd(f, o->cmd))) return r0;
      o->tta = 1;
      continue;
    }
    if (!strcmp(f, "--verbose") && predict) { o->verbose = 1; continue; }
    static const char *with_value[] = {"--epochs", "--lr", "--bs", "--mom", "--seed", "--threads", "--workers",
                                       "--data", "--device", "--plot", "--log", "--csv", "--save", "--model",
                                       "--opt", "--sched", "--wd", "--sched-steps", "--record",
                                       "--save-best", "--early-stop", "--min-delta", "--weights", "--images", "--labels",
                                       "--checkpoint", "--resume", "--every", "--keep", "--augment", "--pad", "--stats", "--dropout"};
    int known = 0;
    for (size_t k = 0; k < sizeof with_value / sizeof *with_value; k++) known |= !strcmp(f, with_value[k]);
    if (!known) return bad(f, NULL, "unknown flag (see --help)");
    if ((r0 = flag_for_cmd(f, o->cmd))) return r0;
    if (i + 1 >= argc) return bad(f, NULL, "needs a value");
    const char *v = argv[++i];
    int r = 0;
    if (!strcmp(f, "--epochs")) r = parse_int(f, v, 0, 100000, &o->epochs);
    else if (!strcmp(f, "--bs")) r = parse_int(f, v, 1, 1 << 20, &o->bs);
    else if (!strcmp(f, "--threads")) r = parse_int(f, v, 1, 1024, &o->threads);
    else if (!strcmp(f, "--workers")) r = parse_int(f, v, 0, 64, &o->workers);
    else if (!strcmp(f, "--every")) r = parse_int(f, v, 0, INT_MAX, &o->every);
    else if (!strcmp(f, "--pad")) r = parse_int(f, v, 0, 27, &o->pad);   /* smaller than the 28x28 images */
    else if (!strcmp(f, "--augment")) {
      if (!fl_augment_parse(v, &o->augment)) return bad(f, v, "unknown augmentation (allowed: crop, flip, erase)");
    }
    else if (!strcmp(f, "--keep")) r = parse_int(f, v, 1, 1000000, &o->keep);
    else if (!strcmp(f, "--sched-steps")) r = parse_int(f, v, 1, INT_MAX, &o->sched_steps);
    else if (!strcmp(f, "--checkpoint") || !strcmp(f, "--resume")) {
      if (!*v) return bad(f, v, "needs a directory");
#ifdef FL_NO_CJSON
      return bad(f, v, "this flexlearn was built without cJSON (make CJSON=0): no checkpoints");
#endif
      *(f[2] == 'c' ? &o->ckpt : &o->resume) = v;
    }
    else if (!strcmp(f, "--seed")) {
      char *end;
      errno = 0;
      if (*v == '-') return bad(f, v, "must be a non-negative integer");
      o->seed = strtoull(v, &end, 10);
      if (errno || end == v || *end) return bad(f, v, "not a non-negative integer");
    } else if (!strcmp(f, "--lr")) {
      if ((r = parse_double(f, v, &o->lr))) return r;
      if (o->lr <= 0) return bad(f, v, "must be > 0");
    } else if (!strcmp(f, "--mom")) {
      if ((r = parse_double(f, v, &o->mom))) return r;
      if (o->mom < 0 || o->mom >= 1) return bad(f, v, "must be in [0, 1)");
      o->use_mom = 1;
    } else if (!strcmp(f, "--opt")) {
      static const char *const opts_[] = {"sgd", "momentum", "rmsprop", "adam", "adamw"};
      int ok = 0;
      for (size_t k = 0; k < sizeof opts_ / sizeof *opts_; k++) ok |= !strcmp(v, opts_[k]);
      if (!ok) return bad(f, v, "unknown optimiser (must be sgd, momentum, rmsprop, adam or adamw)");
      o->opt = v;
    } else if (!strcmp(f, "--sched")) {
      static const char *const scheds[] = {"none", "onecycle", "cosine", "exp", "step", "warmup"};
      int ok = 0;
      for (size_t k = 0; k < sizeof scheds / sizeof *scheds; k++) ok |= !strcmp(v, scheds[k]);
      if (!ok) return bad(f, v, "unknown schedule (must be none, onecycle, cosine, exp, step or warmup)");
      o->sched = v;
    } else if (!strcmp(f, "--wd")) {
      if ((r = parse_double(f, v, &o->wd))) return r;
      if (o->wd < 0) return bad(f, v, "must be >= 0");
    } else if (!strcmp(f, "--dropout")) {
      if ((r = parse_double(f, v, &o->dropout))) return r;
      if (!(o->dropout >= 0 && o->dropout < 1)) return bad(f, v, "must be in [0, 1)");
    } else if (!strcmp(f, "--device")) {
      if (strcmp(v, "cpu") && strcmp(v, "cuda") && strcmp(v, "auto")) return bad(f, v, "must be cpu, cuda or auto");
      o->device = v;
    } else if (!strcmp(f, "--data")) o->data = v;
    else if (!strcmp(f, "--plot")) {
      size_t n = strlen(v);
      if (n < 5 || strcmp(v + n - 4, ".png")) return bad(f, v, "must name a .png file");
      o->plot = v;
    } else if (!strcmp(f, "--record")) {
      size_t n = strlen(v);
      if (n < 5 || strcmp(v + n - 4, ".png")) return bad(f, v, "must name a .png file");
      o->record = v;
    } else if (!strcmp(f, "--stats")) {
      if (!*v || v[strlen(v) - 1] == '/') return bad(f, v, "needs a file name prefix (PREFIX_color_dim.png ...)");
      if (!fl_plot_available()) return bad(f, v, "this flexlearn was built without cairo (make CAIRO=0): no PNG plots");
      o->stats = v;
    } else if (!strcmp(f, "--log")) o->log = v;
    else if (!strcmp(f, "--csv")) o->csv = v;
    else if (!strcmp(f, "--model")) {
      fl_module *m = fl_model_new(v, 0);
      if (!m) return bad(f, v, fl_last_error());
      fl_module_free(m);
      o->model = v;
    }
    else if (!strcmp(f, "--save")) {
      size_t n = strlen(v);
      if (n < 13 || strcmp(v + n - 12, ".safetensors")) return bad(f, v, "must name a .safetensors file");
#ifdef FL_NO_CJSON
      return bad(f, v, "this flexlearn was built without cJSON (make CJSON=0): no safetensors");
#endif
      o->save = v;
    } else if (!strcmp(f, "--save-best")) {
      if (strcmp(v, "accuracy") && strcmp(v, "loss")) return bad(f, v, "must be accuracy or loss (a metric of fit)");
      o->save_best = v;
    } else if (!strcmp(f, "--early-stop")) r = parse_int(f, v, 1, 100000, &o->early_stop);
    else if (!strcmp(f, "--min-delta")) {
      if ((r = parse_double(f, v, &o->min_delta))) return r;
      if (o->min_delta < 0) return bad(f, v, "must be >= 0");
    } else if (!strcmp(f, "--weights")) o->weights = v;
    else if (!strcmp(f, "--images")) o->images = v;
    else if (!strcmp(f, "--labels")) o->labels = v;
    if (r) return r;
  }
  if (o->pad >= 0 && !(o->augment & FL_AUG_CROP)) return bad("--pad", NULL, "needs --augment with crop");
  if (o->pad < 0) o->pad = 1;
  if (strcmp(o->cmd, "fit") && strcmp(o->sched, "none")) return bad("--sched", o->sched, "applies to fit only");
  if (o->record && strcmp(o->cmd, "fit")) return bad("--record", o->record, "is a flag of fit only");
  if (o->sched_steps && !strcmp(o->sched, "none")) return bad("--sched-steps", NULL, "needs --sched NAME (not none)");
  if (o->save_best && !o->save) return bad("--save-best", o->save_best, "needs --save FILE.safetensors (where the best weights go)");
  if (o->min_delta > 0 && !o->early_stop) return bad("--min-delta", NULL, "needs --early-stop N");
  if (predict) {
    if (!o->weights) return bad("--weights", NULL, "is required: predict needs FILE.safetensors (from fit --save)");
    if (o->labels && !o->images) return bad("--labels", o->labels, "needs --images FILE");
    if (o->images && o->n_files) return bad("--images", o->images, "give either --images or image files, not both");
    if (o->data && (o->images || o->n_files))
      return bad("--data", o->data, "the test set of --data is predicted only when no images are given");
  } else if (o->n_files) return bad(o->files[0], NULL, "unexpected argument (see --help)");
  if (o->dropout > 0 && !fl_model_has_dropout(o->model)) {
    char why[160];
    snprintf(why, sizeof why, "model '%s' has no dropout layer (--model resnet or resnet_wide has one)", o->model);
    return bad("--dropout", NULL, why);
  }
  if ((o->every >= 0 || o->keep >= 0) && !o->ckpt && !o->resume)
    return bad(o->every >= 0 ? "--every" : "--keep", NULL, "needs --checkpoint DIR or --resume DIR");
  if ((o->ckpt || o->resume) && strcmp(o->cmd, "fit"))
    return bad(o->ckpt ? "--checkpoint" : "--resume", NULL, "only fit writes or resumes checkpoints");
  return 0;
}

/* ---- checkpoints ---- */
/* The shortest decimal that reads back as x. */
static const char *num(char *buf, size_t n, double x) {
  for (int p = 6; p <= 17; p++) {
    snprintf(buf, n, "%.*g", p, x);
    if (strtod(buf, NULL) == x) break;
  }
  return buf;
}

/* The flags that shape the run, as (flag, value) pairs a resume must match. */
enum { N_CONFIG = 11 };
static void run_config(const opts *o, const fl_dataset *train, const fl_dataset *valid, char v[N_CONFIG][64],
                       const char *kv[2 * N_CONFIG]) {
  static const char *keys[N_CONFIG] = {"--model", "--opt", "--bs", "--lr", "--mom", "--seed", "--epochs", "--data",
                                       "--sched", "--wd", "--augment"};
  char d[32];   /* "resnet dropout 0.1"; without --dropout the bare name, as older checkpoints have */
  snprintf(v[0], 64, "%s%s%s", o->model, o->dropout > 0 ? " dropout " : "", o->dropout > 0 ? num(d, sizeof d, o->dropout) : "");
  snprintf(v[1], 64, "%s", o->opt);
  snprintf(v[2], 64, "%d", o->bs);
  num(v[3], 64, o->lr);
  if (o->use_mom) num(v[4], 64, o->mom);
  else snprintf(v[4], 64, "none");
  snprintf(v[5], 64, "%llu", o->seed);
  snprintf(v[6], 64, "%d", o->epochs);
  snprintf(v[7], 64, "%lld+%lld images", (long long)train->n, (long long)valid->n);
  if (o->sched_steps) snprintf(v[8], 64, "%s:%d", o->sched, o->sched_steps);   /* older checkpoints still match */
  else snprintf(v[8], 64, "%s", o->sched);
  if (o->wd >= 0) num(v[9], 64, o->wd);
  else snprintf(v[9], 64, "default");
  /* the augmentation draws are part of the run: "none", or e.g. "crop,flip pad 1" */
  snprintf(v[10], 64, "%s%s%s%s", o->augment ? "" : "none", o->augment & FL_AUG_CROP ? "crop," : "",
           o->augment & FL_AUG_FLIP ? "flip," : "", o->augment & FL_AUG_ERASE ? "erase," : "");
  size_t al = strlen(v[10]);
  if (o->augment) v[10][al - 1] = 0;
  if (o->augment & FL_AUG_CROP) snprintf(v[10] + al - 1, 64 - (al - 1), " pad %d", o->pad);
  for (int i = 0; i < N_CONFIG; i++) kv[2 * i] = keys[i], kv[2 * i + 1] = v[i];
}

/* One line naming every flag whose value differs from the checkpoint's (exit 2), or 0. */
static int config_differs(const fl_checkpoint *ck, const char *const *kv, const char *dir) {
  char msg[1024] = "";
  size_t k = 0;
  for (int i = 0; i < N_CONFIG; i++) {
    const char *theirs = fl_checkpoint_config(ck, kv[2 * i]);
    if (theirs && !strcmp(theirs, kv[2 * i + 1])) continue;
    if (!theirs && !strcmp(kv[2 * i], "--augment") && !strcmp(kv[2 * i + 1], "none")) continue;   /* older checkpoints */
    if (k < sizeof msg)
      k += (size_t)snprintf(msg + k, sizeof msg - k, "%s%s %s (checkpoint: %s)", k ? ", " : "", kv[2 * i], kv[2 * i + 1],
                            theirs ? theirs : "none");
  }
  if (!k) return 0;
  fprintf(stderr, "flexlearn: --resume %s: the flags differ from %s's: %s\n", dir, fl_checkpoint_path(ck), msg);
  return 2;
}

/* Test hooks: FLEXLEARN_TEST_KILL_AT=k kills the process (SIGKILL) at the start of the k-th batch
 * (training and validation batches, counted from 0 in this process): a crash at a known point;
 * FLEXLEARN_TEST_SIGINT_AT=k sends it a SIGINT there instead (a Ctrl-C at a known point). */
static long long g_kill_at = -1, g_batches;
static int g_kill_sig;
static fl_status kill_before_batch(fl_callback *cb, fl_learner *l) {
  (void)cb, (void)l;
  if (g_batches++ == g_kill_at) raise(g_kill_sig);
  return FL_OK;
}
static void kill_free(fl_callback *cb) { free(cb); }
static fl_callback *kill_cb_new(void) {
  const char *e = getenv("FLEXLEARN_TEST_KILL_AT"), *i = getenv("FLEXLEARN_TEST_SIGINT_AT");
  g_kill_sig = e && *e ? SIGKILL : SIGINT;
  if (!(e && *e) && (e = i) == NULL) return NULL;
  if (!*e) return NULL;
  g_kill_at = atoll(e);
  fl_callback *cb = fl_xcalloc(1, sizeof *cb);
  cb->name = "TestKillCB";
  cb->order = -2000;
  cb->free = kill_free;
  cb->on[FL_BEFORE_BATCH] = kill_before_batch;
  return cb;
}

/* The Learner's opt_func: the optimiser --opt names, with --wd on every group (an opt_func takes
 * only (model, lr), so the choice and the decay travel in these two). sgd and adamw are torch's;
 * momentum, rmsprop and adam are 12_accel_sgd's own (its defaults; --wd decoupled, its reg_step). */
static double g_wd = -1;
static fl_opt_fn g_opt_new = fl_sgd_new;
static fl_optimizer *opt_with_wd(fl_module *m, float lr) {
  fl_optimizer *o = g_opt_new(m, lr);
  for (int i = 0; g_wd >= 0 && i < o->n_groups; i++) o->groups[i].wd = (float)g_wd;
  return o;
}

/* --stats: ActivationStats on the model's top-level layers: for the conv nets the convs (cnn's
 * Sequential(conv, ReLU) blocks and last conv) or the ResBlocks (resnet), not the Flatten and
 * head; for the mlp every layer. */
static fl_callback *stats_cb_new(fl_module *model, const char *name) {
  fl_module *mods[32];
  int n = 0, conv = fl_model_is_conv(name);
  for (int i = 0; i < model->n_children && n < 32; i++) {
    const char *k = model->children[i]->ops->kind;
    if (!conv || !strcmp(k, "Sequential") || !strcmp(k, "Conv2d") || !strcmp(k, "ResBlock")) mods[n++] = model->children[i];
  }
  return fl_activation_stats_new(mods, n);
}

/* The directory a new file would go into must exist (checked before any work is done). */
static int check_out_dir(const char *flag, const char *path) {
  if (!path) return 0;
  char dir[PATH_MAX];
  snprintf(dir, sizeof dir, "%s", path);
  char *slash = strrchr(dir, '/');
  if (!slash) return 0;
  *slash = 0;
  if (access(dir[0] ? dir : "/", W_OK) != 0) return bad(flag, path, "its directory does not exist or is not writable");
  return 0;
}

static int resolve_device(const char *want, const char *model, fl_device *dev) {
  if (!strcmp(want, "cpu")) return *dev = FL_CPU, 0;
  /* The conv ops have CPU kernels only so far (remove this when the CUDA ones land). */
  if (fl_model_is_conv(model)) {
    if (!strcmp(want, "cuda")) return bad("--device", want, "the conv models (cnn, resnet) run on the CPU only so far");
    return *dev = FL_CPU, 0;
  }
  int gpu = fl_cuda_available();
  if (!strcmp(want, "cuda")) {
    if (!gpu) return bad("--device", want, fl_backend_cuda_reason()), 1;  /* the machine, not the usage */
    return *dev = FL_CUDA, 0;
  }
  *dev = gpu ? FL_CUDA : FL_CPU;                /* auto: the CPU without a word when no GPU */
  return 0;
}

/* The lesson's model takes 28x28 images and has 10 outputs: other data is the user's mistake. */
static int check_data(const char *dir, const fl_dataset *ds, const char *split) {
  if ((int64_t)ds->c * ds->h * ds->w != 28 * 28) {
    fprintf(stderr, "flexlearn: %s/%s-images-idx3-ubyte: images are %dx%dx%d; the model needs 784 pixels (1x28x28)\n",
            dir, split, ds->c, ds->h, ds->w);
    return 1;
  }
  if (ds->n_classes > 10) {
    fprintf(stderr, "flexlearn: %s/%s-labels-idx1-ubyte: label %d; the model has 10 classes (labels 0..9)\n", dir,
            split, ds->n_classes - 1);
    return 1;
  }
  return 0;
}

/* ---- what fit's valid batches and predict's batches share (the hook for models that want
 * other inputs, e.g. conv nets: (B, 1, 28, 28), normalised) ---- */
/* 1: batches of (B, 784) pixels / 255; 0: (B, 1, 28, 28). Every model of today takes flat rows. */
static int model_flat_input(const char *model) { (void)model; return 1; }
/* Callbacks a model needs on every batch it sees (a batch transform...), after DeviceCB; fit and
 * predict both add them. The conv nets: the course's BatchTransformCB(_norm), (x - 0.28) / 0.35,
 * fused into the loaders' conversion. Returns the new count. */
static int add_model_cbs(const char *model, fl_callback **cbs, int n) {
  if (fl_model_is_conv(model)) cbs[n++] = fl_normalize_cb_new(0.28f, 0.35f);
  return n;
}

/* ---- predict ---- */
static const char *const fashion_names[10] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                              "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"};

/* Images the model can take (784 pixels) and labels it can have (0..9), else one line naming the file. */
static int check_predict_data(const fl_dataset *ds, const char *images, const char *labels) {
  if ((int64_t)ds->c * ds->h * ds->w != 28 * 28) {
    fprintf(stderr, "flexlearn: %s: images are %dx%dx%d; the model needs 784 pixels (1x28x28)\n", images, ds->c,
            ds->h, ds->w);
    return 1;
  }
  if (ds->n_classes > 10) {
    fprintf(stderr, "flexlearn: %s: label %d; the model has 10 classes (labels 0..9)\n", labels, ds->n_classes - 1);
    return 1;
  }
  return 0;
}

static int predict_main(const opts *o) {
  fl_init(o->threads);
  fl_device dev = FL_CPU;
  int r = resolve_device(o->device, o->model, &dev);
  if (r) return r;
  fl_module *model = fl_model_new_drop(o->model, 0, (float)o->dropout);
  fl_status s = fl_load_safetensors(model, o->weights);
  if (s != FL_OK) {
    fprintf(stderr, "flexlearn: %s\n", fl_last_error());
    fl_module_free(model);
    return 1;
  }
  /* what to predict: image files, an IDX file (with labels or not), or the test set */
  fl_dataset *ds = NULL;
  const char *dir = o->data ? o->data : fl_default_data_dir();
  char images[4200], labels[4200];
  if (o->n_files) s = fl_dataset_from_images(o->files, o->n_files, 28, 28, &ds);
  else if (o->images) s = fl_dataset_from_idx(o->images, o->labels, &ds);
  else s = fl_fashion_mnist_split(dir, 0, &ds);
  snprintf(images, sizeof images, "%s", o->images ? o->images : o->n_files ? "" : dir);
  snprintf(labels, sizeof labels, "%s", o->labels ? o->labels : images);
  if (s != FL_OK || check_predict_data(ds, images, labels)) {
    if (s != FL_OK) fprintf(stderr, "flexlearn: %s\n", fl_last_error());
    fl_dataset_free(ds), fl_module_free(model);
    return 1;
  }
  int has_labels = ds->n_classes > 0;
  /* the loader and learner of validation: same batches (flat pixels / 255), DeviceCB, eval, no grad */
  fl_dataloader_cfg cfg = {.bs = o->bs, .shuffle = 0, .seed = 0, .n_workers = o->workers,
                           .flat = model_flat_input(o->model)};
  fl_dataloader *dl = fl_dataloader_new(ds, &cfg);
  int32_t *cls = malloc((size_t)ds->n * sizeof *cls);
  float *p = malloc((size_t)ds->n * sizeof *p);
  if (!dl || !cls || !p) {
    fprintf(stderr, "flexlearn: %s\n", dl ? "out of memory for the predictions" : fl_last_error());
    fl_dataloader_free(dl), free(cls), free(p), fl_dataset_free(ds), fl_module_free(model);
    return 1;
  }
  fl_callback *cbs[8] = {fl_device_cb_new(dev)};
  int ncb = add_model_cbs(o->model, cbs, 1);
  fl_learner *l = fl_learner_new(model, NULL, fl_cross_entropy, 0.1f, cbs, ncb, NULL, &fl_train_ops);
  int64_t got = 0;
  double t0 = fl_now();
  s = fl_get_preds(l, dl, cls, p, NULL, &got);
  double dt = fl_now() - t0;
  if (s == FL_OK && got != ds->n) s = fl_error(FL_ERR, "predicted %lld of %lld images", (long long)got, (long long)ds->n);
  if (s != FL_OK) fprintf(stderr, "flexlearn: %s\n", fl_last_error()[0] ? fl_last_error() : fl_status_str(s));
  else {
    int64_t correct = 0;
    for (int64_t i = 0; i < ds->n; i++) correct += has_labels && cls[i] == ds->y[i];
    for (int64_t i = 0; i < ds->n; i++) {
      if (o->n_files)
        printf("%s: class %d (%s) p=%.4f\n", o->files[i], cls[i], fashion_names[cls[i] % 10], (double)p[i]);
      else if (o->verbose || !has_labels) {
        printf("%s[%lld]: class %d (%s) p=%.4f", images, (long long)i, cls[i], fashion_names[cls[i] % 10], (double)p[i]);
        if (has_labels) printf(" label %d (%s)", ds->y[i], fashion_names[ds->y[i] % 10]);
        putchar('\n');
      }
    }
    if (!o->n_files)
      printf("predicted %lld images in %.1f ms (%.0f images/s) on %s, bs %d\n", (long long)ds->n, 1e3 * dt,
             dt > 0 ? (double)ds->n / dt : 0.0, fl_device_name(dev), o->bs);
    if (has_labels) printf("accuracy: %.4f\n", (double)correct / (double)ds->n);
  }
  fl_learner_free(l);
  fl_dataloader_free(dl);
  free(cls), free(p);
  fl_dataset_free(ds);
  fl_module_free(model);
  return s == FL_OK ? 0 : 1;
}

int main(int argc, char **argv) {
  opts o;
  int r = parse(argc, argv, &o);
  if (r) return free(o.files), r < 0 ? 0 : r;
  if (!strcmp(o.cmd, "predict")) {
    r = predict_main(&o);
    free(o.files);
    return r;
  }
  free(o.files);
  if (!strcmp(o.cmd, "summary")) {   /* the model's table: no data, no device */
    fl_init(o.threads);
    fl_module *m = fl_model_new_drop(o.model, o.seed, (float)o.dropout);
    int64_t img[4] = {1, 1, 28, 28}, flat[2] = {1, 28 * 28};
    int conv = fl_model_is_conv(o.model);
    printf("model %s, input %s\n", o.model, conv ? "(1, 1, 28, 28)" : "(1, 784)");
    fl_status st = fl_module_summary(m, conv ? 4 : 2, conv ? img : flat, stdout);
    if (st != FL_OK) fprintf(stderr, "flexlearn: %s\n", fl_last_error());
    fl_module_free(m);
    return st == FL_OK ? 0 : 1;
  }
  if ((r = check_out_dir("--plot", o.plot)) || (r = check_out_dir("--record", o.record)) || (r = check_out_dir("--log", o.log)) || (r = check_out_dir("--csv", o.csv)) ||
      (r = check_out_dir("--stats", o.stats)) ||
      (r = check_out_dir("--save", o.save)) || (r = check_out_dir("--checkpoint", o.ckpt)))
    return r;
  if (o.ckpt && (!o.resume || strcmp(o.ckpt, o.resume)) && fl_checkpoint_dir_has_any(o.ckpt))
    return bad("--checkpoint", o.ckpt, o.resume ? "holds checkpoints of another run (choose an empty directory)"
                                               : "holds checkpoints of another run (--resume DIR continues it; or choose another directory)");
  fl_init(o.threads);
  fl_device dev = FL_CPU;
  if ((r = resolve_device(o.device, o.model, &dev))) return r;
  if (o.stats && dev != FL_CPU)
    return bad("--stats", o.stats, "activation statistics are not on CUDA yet (add --device cpu)");

  fl_dataset *train = NULL, *valid = NULL;
  fl_status s = fl_fashion_mnist(o.data, &train, &valid);
  if (s != FL_OK) {
    fprintf(stderr, "flexlearn: %s\n", fl_last_error());
    return 1;
  }
  const char *dir = o.data ? o.data : fl_default_data_dir();
  if (check_data(dir, train, "train") || check_data(dir, valid, "t10k")) {
    fl_dataset_free(train), fl_dataset_free(valid);
    return 1;
  }
  fl_dataloaders dls = {0};
  s = fl_get_dls(&dls, train, valid, o.bs, o.seed, o.workers, model_flat_input(o.model));
  if (s != FL_OK) {
    fprintf(stderr, "flexlearn: %s\n", fl_last_error());
    fl_dataset_free(train), fl_dataset_free(valid);
    return 1;
  }
  int is_fit = !strcmp(o.cmd, "fit");
  /* the schedule's length: the whole fit, or --sched-steps (never shorter than the fit) */
  int64_t fit_steps = (int64_t)o.epochs * fl_dataloader_len(dls.train);
  if (is_fit && o.sched_steps && o.sched_steps < fit_steps) {
    char why[160];
    snprintf(why, sizeof why, "the schedule is shorter than the fit's %lld training batches (must be >= %lld)",
             (long long)fit_steps, (long long)fit_steps);
    char val[32];
    snprintf(val, sizeof val, "%d", o.sched_steps);
    bad("--sched-steps", val, why);
    fl_dataloaders_free(&dls);
    fl_dataset_free(train), fl_dataset_free(valid);
    return 2;
  }
  fl_module *model = fl_model_new_drop(o.model, o.seed, (float)o.dropout);
  fl_callback *cbs[24], *save_cb = NULL, *stop_cb = NULL, *rec_cb = NULL, *stats_cb = NULL;
  int n = 0;
  /* --resume: the newest valid checkpoint, made by a run with the same flags */
  fl_checkpoint *ck = NULL;
  char cfg_v[N_CONFIG][64];
  const char *cfg_kv[2 * N_CONFIG];
  run_config(&o, train, valid, cfg_v, cfg_kv);
  if (o.resume) {
    s = fl_checkpoint_latest(o.resume, model, stderr, &ck);
    r = s != FL_OK ? (fprintf(stderr, "flexlearn: --resume %s\n", fl_last_error()), 1) : config_differs(ck, cfg_kv, o.resume);
    if (r) {
      fl_checkpoint_free(ck);
      fl_module_free(model);
      fl_dataloaders_free(&dls);
      fl_dataset_free(train), fl_dataset_free(valid);
      return r;
    }
    int ep, va, every, keep;
    int64_t it, ni;
    fl_checkpoint_position(ck, &ep, &va, &it, &ni);
    fl_checkpoint_settings(ck, &every, &keep);
    if (o.every < 0) o.every = every;
    if (o.keep < 0) o.keep = keep;
    fprintf(stderr, "flexlearn: resuming from %s: epoch %d, %s batch %lld (%lld training batches done)\n",
            fl_checkpoint_path(ck), ep, va ? "validation" : "training", (long long)it, (long long)ni);
  }
  fl_callback *ckpt_cb = NULL;
  if (o.ckpt || o.resume) {
    fl_checkpoint_cfg cc = {.dir = o.ckpt ? o.ckpt : o.resume, .every = o.every > 0 ? o.every : 0, .keep = o.keep,
                            .save_grad = -1, .model_name = o.model, .config = cfg_kv, .n_config = N_CONFIG, .resume = ck};
    cbs[n++] = ckpt_cb = fl_checkpoint_cb_new(&cc);
  }
  fl_callback *kill_cb = kill_cb_new();
  if (kill_cb) cbs[n++] = kill_cb;
  cbs[n++] = fl_device_cb_new(dev);
  n = add_model_cbs(o.model, cbs, n);
  if (o.augment) cbs[n++] = fl_augment_cb_new(o.augment, o.pad, o.seed);   /* training batches only */
  cbs[n++] = fl_interrupt_cb_new();   /* Ctrl-C: stop after this batch, clean up, exit 130 */
  if (is_fit) {
    fl_metric *acc = fl_multiclass_accuracy_new();
    const char *name = "accuracy";
    cbs[n++] = fl_metrics_cb_new(1, &acc, &name);
    cbs[n++] = fl_nan_cb_new(dev == FL_CPU ? 1 : 8);
    /* --no-progress: the same callback without bars (it still records the plot) */
    cbs[n++] = fl_progress_cb_new(o.plot != NULL, o.plot, stdout, o.progress ? -1 : 0);
    if (o.record) cbs[n++] = rec_cb = fl_recorder_cb_new(1 << FL_REC_LR | 1 << FL_REC_LOSS);
    if (o.log) cbs[n++] = fl_jsonl_cb_new(o.log);
    if (o.csv) cbs[n++] = fl_csv_cb_new(o.csv);
    if (o.stats) cbs[n++] = stats_cb = stats_cb_new(model, o.model);
    if (o.save_best) cbs[n++] = save_cb = fl_save_model_cb_new(o.save, o.save_best, FL_MODE_AUTO, o.model);
    if (o.early_stop)   /* watches the --save-best metric, else the valid loss */
      cbs[n++] = stop_cb = fl_early_stopping_cb_new(o.save_best ? o.save_best : "loss", FL_MODE_AUTO, o.early_stop,
                                                    o.min_delta);
  }
  g_wd = o.wd;
  g_opt_new = !strcmp(o.opt, "adamw")      ? fl_adamw_new
              : !strcmp(o.opt, "momentum") ? fl_nb_momentum_new
              : !strcmp(o.opt, "rmsprop")  ? fl_nb_rmsprop_new
              : !strcmp(o.opt, "adam")     ? fl_nb_adam_new
                                           : fl_sgd_new;
  fl_opt_fn opt_fn = opt_with_wd;
  /* --sched: a schedule over every training batch of the fit (or --sched-steps), stepped per batch */
  fl_schedule sched = {0};
  if (is_fit && strcmp(o.sched, "none") && fit_steps > 0) {
    int64_t total = o.sched_steps ? o.sched_steps : fit_steps;
    if (!strcmp(o.sched, "onecycle")) sched = fl_onecycle(o.lr, total);
    else if (!strcmp(o.sched, "cosine")) sched = fl_cosine(o.lr, total, 0.0);
    else if (!strcmp(o.sched, "exp")) sched = fl_exponential(o.lr, total > 1 ? pow(0.01, 1.0 / (double)(total - 1)) : 1.0, total);
    else if (!strcmp(o.sched, "step")) sched = fl_step_schedule(o.lr, fl_dataloader_len(dls.train), 0.5, total);
    else sched = fl_linear_warmup(o.lr, 0.01, total / 10 > 1 ? total / 10 : 1, total);
    cbs[n++] = fl_batch_sched_cb_new(&sched);
  }
  fl_learner *l = o.use_mom ? fl_momentum_learner_new(model, &dls, fl_cross_entropy, (float)o.lr, cbs, n, opt_fn, (float)o.mom)
                            : fl_learner_new(model, &dls, fl_cross_entropy, (float)o.lr, cbs, n, opt_fn, &fl_train_ops);
  if (is_fit) {
    s = fl_fit(l, o.epochs, 1, 1, NULL, 0, 0);
    double best;
    int best_epoch, count;
    if (s == FL_OK && stop_cb && fl_best_cb_info(stop_cb, &best, &best_epoch, &count) && best_epoch >= 0) {
      const char *m = o.save_best ? o.save_best : "loss";
      if (count >= 0)
        printf("early stop: no better valid %s for %d epochs, stopped after epoch %d; ", m, o.early_stop, count);
      printf("weights of epoch %d (valid %s %.4f) restored\n", best_epoch, m, best);
    }
    if (s == FL_OK) printf("weights fnv1a %016llx\n", (unsigned long long)fl_module_hash(model));
    if (s == FL_OK && o.tta && !fl_interrupted()) {   /* 14_augment's TTA: mean softmax with the flipped image */
      /* a learner for prediction (the valid batch path: DeviceCB, the model's batch transforms),
       * so the fit's loggers record no extra validation passes */
      fl_callback *pcbs[4] = {fl_device_cb_new(dev)};
      int np = add_model_cbs(o.model, pcbs, 1);
      fl_learner *pl = fl_learner_new(model, NULL, fl_cross_entropy, (float)o.lr, pcbs, np, NULL, &fl_train_ops);
      double tta = 0, plain = 0;
      if ((s = fl_tta_accuracy(pl, dls.valid, &tta, &plain)) == FL_OK)
        printf("tta accuracy: %.4f (without: %.4f)\n", tta, plain);
      fl_learner_free(pl);
    }
    if (s == FL_OK && rec_cb && fl_recorder_values(rec_cb, FL_REC_LR, NULL) > 0 &&
        (s = fl_recorder_plot(rec_cb, o.record)) == FL_OK)
      printf("recorded lr and loss of %lld training batches: %.*s-lr.png, %.*s-loss.png\n",
             (long long)fl_recorder_values(rec_cb, FL_REC_LR, NULL), (int)strlen(o.record) - 4, o.record,
             (int)strlen(o.record) - 4, o.record);
    if (s == FL_OK && stats_cb && (s = fl_act_stats_png(stats_cb, o.stats)) == FL_OK)
      printf("activation stats of %d layers over %lld batches: %s_color_dim.png, %s_dead_chart.png, %s_plot_stats.png\n",
             fl_act_stats_layers(stats_cb), (long long)fl_act_stats_batches(stats_cb), o.stats, o.stats, o.stats);
    /* after a whole fit, or one stopped by Ctrl-C (also FL_OK): keep what was trained */
    if (s == FL_OK && save_cb && fl_best_cb_info(save_cb, &best, &best_epoch, &count)) {
      if (count > 0)
        printf("best weights (epoch %d, valid %s %.4f) saved to %s\n", best_epoch, o.save_best, best, o.save);
      else
        printf("no weights saved to %s: no epoch gave a finite valid %s\n", o.save, o.save_best);
    } else if (s == FL_OK && o.save && (s = fl_save_safetensors(model, o.save, o.model)) == FL_OK)
      printf("weights saved to %s\n", o.save);
  } else {
    float sug;
    double *lrs = NULL, *losses = NULL;
    int npts = 0;
    const char *png = o.plot ? o.plot : fl_plot_available() ? "lr_find.png" : NULL;
    s = fl_lr_find(l, 1.3f, 3.0f, 1e-5f, 10, png, &sug, &lrs, &losses, &npts);
    if (s == FL_OK) {
      printf("lr          loss\n");
      for (int i = 0; i < npts; i++) printf("%-10.4g  %.4f\n", lrs[i], losses[i]);
      int lo = 0;
      for (int i = 1; i < npts; i++) if (losses[i] < losses[lo]) lo = i;
      printf("stopped after %d batches at lr %.4g; minimum loss %.4f at lr %.4g\n", npts,
             npts ? lrs[npts - 1] : 0.0, npts ? losses[lo] : NAN, npts ? lrs[lo] : NAN);
      printf("suggested lr: %.3g (where the loss falls fastest); plot: %s\n", (double)sug,
             png ? png : "none (this build has no PNG plots)");
    }
    free(lrs), free(losses);
  }
  if (s != FL_OK) fprintf(stderr, "flexlearn: %s\n", fl_last_error()[0] ? fl_last_error() : fl_status_str(s));
  int stopped = s == FL_OK && fl_interrupted();
  if (stopped)
    fprintf(stderr, "flexlearn: interrupted (SIGINT): stopped in epoch %d after %lld training batches%s%s\n", l->epoch,
            (long long)l->n_iter, ckpt_cb && *fl_checkpoint_cb_last(ckpt_cb) ? "; checkpoint " : "",
            ckpt_cb ? fl_checkpoint_cb_last(ckpt_cb) : "");
  fl_learner_free(l);
  fl_module_free(model);
  fl_dataloaders_free(&dls);
  fl_dataset_free(train), fl_dataset_free(valid);
  return stopped ? 130 : s == FL_OK ? 0 : 1;
}
