/* flexlearn hooks (10_activations): Hook/Hooks as a HooksCallback, and ActivationStats with
 * its three plots (color_dim, dead_chart, plot_stats).
 *
 *   fl_module *convs[8];
 *   int n = fl_modules_of_kind(model, (const char *[]){"Conv2d"}, 1, convs, 8);
 *   fl_callback *st = fl_activation_stats_new(convs, n);
 *   fl_fit(l, 1, 1, 1, &st, 1, 0);
 *   fl_act_stats_png(st, "run");          run_color_dim.png, run_dead_chart.png, run_plot_stats.png
 *   fl_callback_free(st);
 */
#ifndef FL_HOOKS_H
#define FL_HOOKS_H

#include "fl/learner.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Called after a hooked module's forward: idx is the module's place in the list given to
 * fl_hooks_cb_new, in/out its input and output (in the step's graph: read them, don't keep
 * them). A non-OK status fails that forward (and so the fit) with it. */
typedef fl_status (*fl_hook_fn)(void *ctx, int idx, fl_module *m, fl_tensor *in, fl_tensor *out);

/* HooksCallback(hookfunc, mods, on_train, on_valid): from before_fit to cleanup_fit (however the
 * fit ends) fn runs after every forward of each of the n modules (borrowed; copied list) during
 * training batches (on_train) and/or validation batches (on_valid). A module can carry one hook
 * at a time: a module already hooked (by another HooksCallback) fails the fit with FL_ERR_ARG.
 * Order 0. The callback owns nothing of ctx. */
fl_callback *fl_hooks_cb_new(fl_module **mods, int n, fl_hook_fn fn, void *ctx, int on_train, int on_valid);

/* Fills out[] (may be NULL to count) with root and its descendants, depth-first, whose kind
 * (ops->kind: "Conv2d", "ResBlock", "ReLU", ...) is one of the n_kinds; returns the count. */
int fl_modules_of_kind(fl_module *root, const char *const *kinds, int n_kinds, fl_module **out, int max);

/* The statistics of one activation tensor, as 10_activations' append_stats: mean, std (unbiased,
 * torch's .std(); NaN for fewer than 2 elements) and hist = torch's abs().histc(40, 0, 10)
 * (40 bins of width 0.25; |x| > 10 and NaN not counted; |x| == 10 in the last bin). One pass in
 * fixed chunks summed in order: the same bits at any thread count. t: f32, contiguous, CPU (on
 * CUDA: FL_ERR_DEVICE, "not on CUDA yet"). */
enum { FL_ACT_BINS = 40 };
fl_status fl_act_stats_compute(const fl_tensor *t, double *mean, double *std, int64_t hist[FL_ACT_BINS]);

/* ActivationStats(mods): a HooksCallback (training batches only) that records, per module and
 * per training batch, fl_act_stats_compute of its output. Cleared at before_fit. */
fl_callback *fl_activation_stats_new(fl_module **mods, int n);
/* Reading the record (cb from fl_activation_stats_new; layer in [0, layers)). */
int fl_act_stats_layers(const fl_callback *cb);
int64_t fl_act_stats_batches(const fl_callback *cb);
const double *fl_act_stats_means(const fl_callback *cb, int layer);   /* [batches] */
const double *fl_act_stats_stds(const fl_callback *cb, int layer);    /* [batches] */
const int64_t *fl_act_stats_hist(const fl_callback *cb, int layer);   /* [batches][FL_ACT_BINS] */
/* dead_chart's value: the share of |activations| in the first bin ([0, 0.25)) of that batch
 * (hist[0] / sum of the hist; NaN when the hist is empty). */
double fl_act_stats_dead(const fl_callback *cb, int layer, int64_t batch);

/* Writes PREFIX_color_dim.png (per layer, log(1+hist) as a heat map: batches on x, bins on y,
 * bin 0 at the bottom), PREFIX_dead_chart.png (per layer, the dead share over batches, y in
 * [0, 1]) and PREFIX_plot_stats.png (means and stds over batches, one line per layer), each
 * atomically (a temporary file renamed into place). FL_ERR_IO naming the file on failure (and
 * always in a CAIRO=0 build). */
fl_status fl_act_stats_png(const fl_callback *cb, const char *prefix);

/* 11_initializing's lsuv_init for n pairs in turn: acts[i] an activation module of model and
 * ins[i] the layer whose weight (params[0]) and bias (params[1], if any) feed it. Repeatedly
 * forwards xb through model (no grad, in the model's current mode: BatchNorm in training mode
 * updates its running statistics, as in the notebook) and, while the output of acts[i] has
 * |std - 1| > 1e-3 or |mean| > 1e-3 (the mean only when there is a bias), does bias -= mean then
 * weight /= std. FL_ERR_ARG naming the pair when it has not converged after max_iter updates
 * (the weights keep what was done; a plain ReLU never reaches mean 0), FL_ERR_DEVICE for weights
 * on CUDA (not on CUDA yet), or the forward's error. The weights must be collated or owned. */
fl_status fl_lsuv_init(fl_module *model, fl_tensor *xb, fl_module **acts, fl_module **ins, int n, int max_iter);

#ifdef __cplusplus
}
#endif
#endif
