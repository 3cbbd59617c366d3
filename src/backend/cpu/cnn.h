/* Internal: the CPU conv-net kernels (issue 7). conv_dnnl.c has the oneDNN convolution and
 * pooling (fl__cpu_*); cnn_cpu.c the fixed-order C kernels: batch norm, global pooling,
 * GeneralRelu, dropout, and the plain convolution / pooling (fl__ref_*) that the DNNL=0 build
 * uses and the tests compare with. */
#ifndef FL_CPU_CNN_H
#define FL_CPU_CNN_H

#include "backend/backend.h"

void fl__cpu_conv2d_fwd(const fl_conv_shape *s, float *y, const float *x, const float *w, const float *b);
void fl__cpu_conv2d_bwd_data(const fl_conv_shape *s, float *gx, const float *gy, const float *w, int acc);
void fl__cpu_conv2d_bwd_weights(const fl_conv_shape *s, float *gw, float *gb, const float *gy,
                                const float *x, int acc_w, int acc_b);
void fl__cpu_avg_pool_fwd(float *y, const float *x, int NC, int H, int W, int k, int Ho, int Wo);
void fl__cpu_avg_pool_bwd(float *gx, const float *gy, int NC, int H, int W, int k, int Ho, int Wo, int acc);

void fl__ref_conv2d_fwd(const fl_conv_shape *s, float *y, const float *x, const float *w, const float *b);
void fl__ref_conv2d_bwd_data(const fl_conv_shape *s, float *gx, const float *gy, const float *w, int acc);
void fl__ref_conv2d_bwd_weights(const fl_conv_shape *s, float *gw, float *gb, const float *gy,
                                const float *x, int acc_w, int acc_b);
/* gb (+)= sums of gy (N, O, Ho*Wo) over N and Ho*Wo, fixed order (both builds) */
void fl__cpu_conv_bias_grad(const fl_conv_shape *s, float *gb, const float *gy, int acc);
void fl__ref_avg_pool_fwd(float *y, const float *x, int NC, int H, int W, int k, int Ho, int Wo);
void fl__ref_avg_pool_bwd(float *gx, const float *gy, int NC, int H, int W, int k, int Ho, int Wo, int acc);

void fl__cpu_bn_fwd(float *y, float *mean, float *invstd, const float *x, const float *w,
                    const float *b, float *run_mean, float *run_var, int N, int C, int S,
                    int training, float momentum, float eps);
void fl__cpu_bn_bwd(float *gx, float *gw, float *gb, const float *gy, const float *x, const float *w,
                    const float *mean, const float *invstd, int N, int C, int S, int training,
                    int acc_x, int acc_w, int acc_b);
void fl__cpu_global_pool_fwd(float *y, const float *x, int NC, int S);
void fl__cpu_global_pool_bwd(float *gx, const float *gy, int NC, int S, int acc);
void fl__cpu_general_relu_fwd(float *y, const float *x, size_t n, float leak, float sub, float maxv);
void fl__cpu_general_relu_bwd(float *gx, const float *gy, const float *x, size_t n, float leak,
                              float sub, float maxv, int acc);
void fl__cpu_dropout_fwd(float *y, uint8_t *mask, const float *x, size_t n, float p, float scale,
                         uint64_t seed, uint64_t counter);
void fl__cpu_dropout_bwd(float *gx, const float *gy, const uint8_t *mask, size_t n, float scale, int acc);

#endif
