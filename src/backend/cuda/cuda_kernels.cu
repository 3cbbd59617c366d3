/* The CUDA kernels behind fl_backend (all but the matrix product and memory).
 *
 * One kernel per op, on the backend's stream, no host sync (except nonfinite) and no
 * allocation. Rounding follows the CPU backend (src/backend/cpu/cpu_backend.c, compiled with
 * -ffp-contract=off): products and sums are written with __fmul_rn / __fadd_rn where nvcc
 * would otherwise fuse them into an FMA, so the elementwise ops give the CPU's bits exactly;
 * reductions keep the CPU's accumulator types (double where the CPU uses double) and differ
 * from it only in the order of the additions, which is fixed (see cuda_internal.cuh).
 *
 * Shapes in comments: M rows, N columns, n elements, B batch rows.
 */
#include <math.h>

#include "backend/cuda/cuda_internal.cuh"

#define STREAM fl__cu.stream

/* ---- fill, and C = beta * C for a gemm with K = 0 ---- */
__global__ void k_fill(float *x, float v, size_t n) {
  CU_FOR(i, n) x[i] = v;
}

void fl__cuda_fill(float *x, float v, size_t n) {
  if (!n) return;
  k_fill<<<cu_blocks(n, CU_THREADS), CU_THREADS, 0, STREAM>>>(x, v, n);
  cu_launched("fill");
}

/* C[M, N] (row stride ldc) = beta * C; beta == 0 writes zeros without reading C (BLAS rule) */
__global__ void k_gemm_beta(int M, int N, float beta, float *C, int ldc) {
  CU_FOR(e, (size_t)M * N) {
    size_t i, j;
    cu_divmod(e, (size_t)N, &i, &j);
    float *c = C + i * (size_t)ldc + j;
    *c = beta == 0.0f ? 0.0f : __fmul_rn(beta, *c);
  }
}

void fl__cuda_gemm_beta(int M, int N, float beta, float *C, int ldc) {
  if (M <= 0 || N <= 0 || beta == 1.0f) return;
  k_gemm_beta<<<cu_blocks((size_t)M * N, CU_THREADS), CU_THREADS, 0, STREAM>>>(M, N, beta, C, ldc);
  cu_launched("gemm (K = 0)");
}

/* ---- broadcasting elementwise ----
 * The host first simplifies the iteration: drops dimensions of size 1 and merges a dimension
 * into the next inner one when every operand is laid out contiguously across the two
 * (stride_outer == stride_inner * size_inner for each). The common cases become 1 or 2
 * dimensions, and the kernel is instantiated for that count so the index arithmetic is
 * unrolled (kernel parameters indexed with constants, no local memory). */
struct cu_dims {
  int64_t shape[FL_MAX_DIMS];
  int64_t s0[FL_MAX_DIMS];      /* first operand's strides */
  int64_t s1[FL_MAX_DIMS];      /* second operand's strides */
};

/* Returns the simplified number of dimensions (>= 1) written to d; 0 when there are no
 * elements. */
static int cu_simplify(int ndim, const int64_t *shape, const int64_t *s0, const int64_t *s1,
                       cu_dims *d) {
  int m = 0;
  for (int k = 0; k < ndim; k++) {
    if (shape[k] == 0) return 0;
    if (shape[k] == 1) continue;
    if (m > 0 && d->s0[m - 1] == s0[k] * shape[k] && d->s1[m - 1] == s1[k] * shape[k]) {
      d->shape[m - 1] *= shape[k];              /* outer dim m-1 and dim k form one run */
      d->s0[m - 1] = s0[k];
      d->s1[m - 1] = s1[k];
    } else {
      d->shape[m] = shape[k];
      d->s0[m] = s0[k];
      d->s1[m] = s1[k];
      m++;
    }
  }
  if (m == 0) {                                 /* a single element */
    d->shape[0] = 1;
    d->s0[0] = 0;
    d->s1[0] = 0;
    m = 1;
  }
  for (int k = m; k < FL_MAX_DIMS; k++) d->shape[k] = 1, d->s0[k] = 0, d->s1[k] = 0;
  return m;
}

/* Offsets of linear element e (row-major over d.shape[0..ND)) in both operands. */
template <int ND>
static __device__ __forceinline__ void cu_offsets(size_t e, const cu_dims &d, int64_t *o0,
                                                  int64_t *o1) {
  int64_t a = 0, b = 0;
#pragma unroll
  for (int k = ND - 1; k >= 0; k--) {
    size_t q, r;
    if (k > 0) cu_divmod(e, (size_t)d.shape[k], &q, &r);
    else q = 0, r = e;                          /* the outermost index is what is left */
    a += (int64_t)r * d.s0[k];
    b += (int64_t)r * d.s1[k];
    e = q;
  }
  *o0 = a;
  *o1 = b;
}

template <int OP>
static __device__ __forceinline__ float cu_binop(float x, float y) {
  if (OP == FL_OP_ADD) return __fadd_rn(x, y);
  if (OP == FL_OP_SUB) return __fsub_rn(x, y);
  return __fmul_rn(x, y);
}

template <int OP, int ND>
__global__ void k_binary(float *out, const float *a, const float *b, cu_dims d, size_t n) {
  CU_FOR(e, n) {
    int64_t oa, ob;
    cu_offsets<ND>(e, d, &oa, &ob);
    out[e] = cu_binop<OP>(a[oa], b[ob]);
  }
}

/* Both operands contiguous and of out's shape. */
template <int OP>
__global__ void k_binary_flat(float *out, const float *a, const float *b, size_t n) {
  CU_FOR(e, n) out[e] = cu_binop<OP>(a[e], b[e]);
}

template <int OP>
static void cu_binary_launch(int nd, const cu_dims &d, float *out, const float *a,
                             const float *b, size_t n) {
  unsigned g = cu_blocks(n, CU_THREADS);
  if (nd == 1 && d.s0[0] == 1 && d.s1[0] == 1)
    k_binary_flat<OP><<<g, CU_THREADS, 0, STREAM>>>(out, a, b, n);
  else if (nd == 1) k_binary<OP, 1><<<g, CU_THREADS, 0, STREAM>>>(out, a, b, d, n);
  else if (nd == 2) k_binary<OP, 2><<<g, CU_THREADS, 0, STREAM>>>(out, a, b, d, n);
  else if (nd == 3) k_binary<OP, 3><<<g, CU_THREADS, 0, STREAM>>>(out, a, b, d, n);
  else k_binary<OP, 4><<<g, CU_THREADS, 0, STREAM>>>(out, a, b, d, n);
}

void fl__cuda_binary(fl_binop op, int ndim, const int64_t *shape, float *out, const float *a,
                     const int64_t *sa, const float *b, const int64_t *sb) {
  FL_CHECK(ndim >= 0 && ndim <= FL_MAX_DIMS, "binary: %d dimensions (at most %d)", ndim,
           FL_MAX_DIMS);
  cu_dims d;
  int nd = cu_simplify(ndim, shape, sa, sb, &d);
  if (!nd) return;
  size_t n = 1;
  for (int k = 0; k < nd; k++) n *= (size_t)d.shape[k];
  switch (op) {
    case FL_OP_ADD: cu_binary_launch<FL_OP_ADD>(nd, d, out, a, b, n); break;
    case FL_OP_SUB: cu_binary_launch<FL_OP_SUB>(nd, d, out, a, b, n); break;
    case FL_OP_MUL: cu_binary_launch<FL_OP_MUL>(nd, d, out, a, b, n); break;
  }
  cu_launched("binary");
}

/* ---- reduce_to: dst (+)= src summed over the dimensions where dst is broadcast ----
 * After simplification (s0 = src's contiguous strides, s1 = ds), each remaining dimension is
 * either kept (ds != 0: a dimension of dst) or reduced (ds == 0). dst is contiguous and its
 * dimensions of size > 1 are exactly the kept ones, in order, so dst's linear index e splits
 * into kept indices by mixed radix over their sizes. One warp per dst element: lane l sums
 * the reduced elements l, l + 32, ... (row-major order over the reduced dimensions), then
 * the warp's shuffle tree. */
struct cu_red {
  int nk, nr;                   /* kept, reduced dimension counts */
  int64_t kshape[FL_MAX_DIMS], kstride[FL_MAX_DIMS];   /* kept: sizes, src strides */
  int64_t rshape[FL_MAX_DIMS], rstride[FL_MAX_DIMS];   /* reduced: sizes, src strides */
  size_t R;                     /* reduced elements per dst element */
};

/* Offset of index e over `cnt` dims (row-major) with the given sizes/strides; unrolled so
 * the parameter arrays are indexed with constants. */
static __device__ __forceinline__ int64_t cu_offset(size_t e, int cnt, const int64_t *shape,
                                                    const int64_t *stride) {
  int64_t o = 0;
#pragma unroll
  for (int k = FL_MAX_DIMS - 1; k >= 0; k--) {
    if (k < cnt) {
      size_t q, r;
      cu_divmod(e, (size_t)shape[k], &q, &r);
      o += (int64_t)r * stride[k];
      e = q;
    }
  }
  return o;
}

__global__ void k_reduce_to(float *dst, size_t dst_n, const float *src, cu_red d, int acc) {
  const int lane = threadIdx.x & 31;
  const size_t warp0 = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
  const size_t nwarps = ((size_t)gridDim.x * blockDim.x) >> 5;
  for (size_t e = warp0; e < dst_n; e += nwarps) {       /* warp-uniform loop */
    const int64_t base = cu_offset(e, d.nk, d.kshape, d.kstride);
    float s = 0.0f;
    for (size_t r = lane; r < d.R; r += 32) s += src[base + cu_offset(r, d.nr, d.rshape, d.rstride)];
    s = cu_warp_sum(s);
    if (lane == 0) dst[e] = acc ? __fadd_rn(dst[e], s) : s;
  }
}

void fl__cuda_reduce_to(float *dst, size_t dst_n, const int64_t *ds, int ndim,
                        const int64_t *shape, const float *src, int acc) {
  FL_CHECK(ndim >= 0 && ndim <= FL_MAX_DIMS, "reduce_to: %d dimensions (at most %d)", ndim,
           FL_MAX_DIMS);
  if (!dst_n) return;
  int64_t ss[FL_MAX_DIMS];
  int64_t st = 1;
  for (int k = ndim - 1; k >= 0; k--) ss[k] = st, st *= shape[k];
  cu_dims d;
  int nd = cu_simplify(ndim, shape, ss, ds, &d);
  if (!nd) {                                    /* empty src: the sums are 0 */
    if (!acc) cu_ok(cudaMemsetAsync(dst, 0, dst_n * sizeof(float), STREAM), "reduce_to");
    return;
  }
  cu_red r;
  r.nk = r.nr = 0;
  r.R = 1;
  size_t kept = 1;
  for (int k = 0; k < nd; k++) {
    if (d.shape[k] == 1) continue;              /* only the single-element case */
    if (d.s1[k] != 0) {
      r.kshape[r.nk] = d.shape[k], r.kstride[r.nk] = d.s0[k], r.nk++;
      kept *= (size_t)d.shape[k];
    } else {
      r.rshape[r.nr] = d.shape[k], r.rstride[r.nr] = d.s0[k], r.nr++;
      r.R *= (size_t)d.shape[k];
    }
  }
  FL_CHECK(kept == dst_n, "reduce_to: dst has %zu elements but its strides map %zu", dst_n, kept);
  /* dst contiguous: each kept dimension's dst stride is the product of the kept sizes inside */
  int64_t inner = 1;
  for (int k = nd - 1; k >= 0; k--) {
    if (d.shape[k] == 1 || d.s1[k] == 0) continue;
    FL_CHECK(d.s1[k] == inner, "reduce_to: dst strides are not those of a contiguous tensor");
    inner *= d.shape[k];
  }
  for (int k = r.nk; k < FL_MAX_DIMS; k++) r.kshape[k] = 1, r.kstride[k] = 0;
  for (int k = r.nr; k < FL_MAX_DIMS; k++) r.rshape[k] = 1, r.rstride[k] = 0;
  k_reduce_to<<<cu_blocks(dst_n, CU_THREADS / 32), CU_THREADS, 0, STREAM>>>(dst, dst_n, src, r, acc);
  cu_launched("reduce_to");
}

/* ---- bias ---- */
/* y[M, N] += b[N] */
__global__ void k_bias_add(float *y, const float *b, size_t n, size_t N) {
  CU_FOR(e, n) {
    size_t i, j;
    cu_divmod(e, N, &i, &j);
    y[e] = __fadd_rn(y[e], b[j]);
  }
}

void fl__cuda_bias_add(float *y, const float *b, int M, int N) {
  if (M <= 0 || N <= 0) return;
  size_t n = (size_t)M * N;
  k_bias_add<<<cu_blocks(n, CU_THREADS), CU_THREADS, 0, STREAM>>>(y, b, n, (size_t)N);
  cu_launched("bias_add");
}

/* gb[N] (+)= sum over rows of gy[M, N]. Block (32, 32) per 32 columns: thread (x, y) sums
 * rows y, y + 32, ... of column 32 * block + x (reads coalesced along x), then a fixed
 * shared-memory tree over y. */
__global__ void k_bias_grad(float *gb, const float *gy, int M, int N, int acc) {
  __shared__ float part[32][33];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int j = blockIdx.x * 32 + tx;
  float s = 0.0f;
  if (j < N)
    for (int i = ty; i < M; i += 32) s += gy[(size_t)i * N + j];
  part[ty][tx] = s;
  __syncthreads();
  for (int h = 16; h > 0; h >>= 1) {
    if (ty < h) part[ty][tx] += part[ty + h][tx];
    __syncthreads();
  }
  if (ty == 0 && j < N) gb[j] = acc ? __fadd_rn(gb[j], part[0][tx]) : part[0][tx];
}

void fl__cuda_bias_grad(float *gb, const float *gy, int M, int N, int acc) {
  if (N <= 0) return;
  if (M < 0) M = 0;
  k_bias_grad<<<(N + 31) / 32, dim3(32, 32), 0, STREAM>>>(gb, gy, M, N, acc);
  cu_launched("bias_grad");
}

/* y = max(y + b, 0) (Linear + ReLU fused) */
__global__ void k_bias_relu(float *y, const float *b, size_t n, size_t N) {
  CU_FOR(i, n) {
    float v = __fadd_rn(y[i], b[i % N]);
    y[i] = v > 0.0f ? v : 0.0f;
  }
}

void fl__cuda_bias_relu(float *y, const float *b, int M, int N) {
  const size_t n = (size_t)(M > 0 ? M : 0) * (size_t)(N > 0 ? N : 0);
  if (!n) return;
  k_bias_relu<<<cu_blocks(n, CU_THREADS), CU_THREADS, 0, STREAM>>>(y, b, n, (size_t)N);
  cu_launched("bias_relu");
}

/* gpre = gy * (y > 0); gb (+)= column sums of gpre: the layout and order of k_bias_grad, so the
 * same bits as relu_bwd followed by bias_grad. */
__global__ void k_relu_bias_grad(float *gpre, float *gb, const float *gy, const float *y, int M,
                                 int N, int acc) {
  __shared__ float part[32][33];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int j = blockIdx.x * 32 + tx;
  float s = 0.0f;
  if (j < N)
    for (int i = ty; i < M; i += 32) {
      const size_t k = (size_t)i * N + j;
      const float v = y[k] > 0.0f ? gy[k] : 0.0f;
      gpre[k] = v;
      s += v;
    }
  part[ty][tx] = s;
  __syncthreads();
  for (int h = 16; h > 0; h >>= 1) {
    if (ty < h) part[ty][tx] += part[ty + h][tx];
    __syncthreads();
  }
  if (gb && ty == 0 && j < N) gb[j] = acc ? __fadd_rn(gb[j], part[0][tx]) : part[0][tx];
}

void fl__cuda_relu_bias_grad(float *gpre, float *gb, const float *gy, const float *y, int M, int N,
                             int acc) {
  if (N <= 0) return;
  if (M < 0) M = 0;
  k_relu_bias_grad<<<(N + 31) / 32, dim3(32, 32), 0, STREAM>>>(gpre, gb, gy, y, M, N, acc);
  cu_launched("relu_bias_grad");
}

/* ---- relu ---- */
__global__ void k_relu_fwd(float *y, const float *x, size_t n) {
  CU_FOR(i, n) {
    float v = x[i];
    y[i] = v > 0.0f ? v : 0.0f;
  }
}

void fl__cuda_relu_fwd(float *y, const float *x, size_t n) {
  if (!n) return;
  k_relu_fwd<<<cu_blocks(n, CU_THREADS), CU_THREADS, 0, STREAM>>>(y, x, n);
  cu_launched("relu_fwd");
}

/* gx (+)= y > 0 ? gy : 0 */
__global__ void k_relu_bwd(float *gx, const float *gy, const float *y, size_t n, int acc) {
  CU_FOR(i, n) {
    float v = y[i] > 0.0f ? gy[i] : 0.0f;
    gx[i] = acc ? __fadd_rn(gx[i], v) : v;
  }
}

void fl__cuda_relu_bwd(float *gx, const float *gy, const float *y, size_t n, int acc) {
  if (!n) return;
  k_relu_bwd<<<cu_blocks(n, CU_THREADS), CU_THREADS, 0, STREAM>>>(gx, gy, y, n, acc);
  cu_launched("relu_bwd");
}

/* ---- sum, sum_bwd ---- */
/* out[0] = scale * sum(x[n]): one block, double accumulators (as the CPU). */
__global__ void k_sum(float *out, const float *x, size_t n, float scale) {
  double s = 0.0;
  for (size_t i = threadIdx.x; i < n; i += blockDim.x) s += (double)x[i];
  s = cu_block_sum(s);
  if (threadIdx.x == 0) out[0] = (float)(s * (double)scale);
}

void fl__cuda_sum(float *out, const float *x, size_t n, float scale) {
  k_sum<<<1, CU_RED_THREADS, 0, STREAM>>>(out, x, n, scale);   /* n = 0 writes 0 */
  cu_launched("sum");
}

/* gx (+)= gout[0] * scale */
__global__ void k_sum_bwd(float *gx, const float *gout, float scale, size_t n, int acc) {
  const float v = __fmul_rn(gout[0], scale);
  CU_FOR(i, n) gx[i] = acc ? __fadd_rn(gx[i], v) : v;
}

void fl__cuda_sum_bwd(float *gx, const float *gout, float scale, size_t n, int acc) {
  if (!n) return;
  k_sum_bwd<<<cu_blocks(n, CU_THREADS), CU_THREADS, 0, STREAM>>>(gx, gout, scale, n, acc);
  cu_launched("sum_bwd");
}

/* ---- row-wise softmax family ----
 * A row is handled by a group of G lanes: G = 1 (a thread per row) when rows are short,
 * G = 32 (a warp per row) otherwise. Lane l of the group takes columns l, l + G, ...; the
 * group's sums and maxima are xor butterflies, so every lane holds the same bits. With G = 1
 * the order of the additions is the CPU's. Groups loop over rows group, group + ngroups, ...;
 * with G = 32 the loop is warp-uniform, as the shuffles need. */
#define CU_ROW_G(N) ((N) <= 32 ? 1 : 32)

/* Row max m and log(sum(exp(x - m))), so that callers compute (x - m) - log s as PyTorch and
 * the CPU do (x - (m + log s) loses up to half an ulp of m); m = -inf for a row of -inf. */
template <int G>
static __device__ __forceinline__ float cu_row_logsum(const float *xr, int N, int l, float *m_out) {
  float m = -INFINITY;
  for (int j = l; j < N; j += G) m = xr[j] > m ? xr[j] : m;
  m = cu_group_max<G>(m);
  *m_out = m;
  if (m == -INFINITY) return 0.0f;
  float s = 0.0f;
  for (int j = l; j < N; j += G) s += expf(__fsub_rn(xr[j], m));
  s = cu_group_sum<G>(s);
  return logf(s);
}

/* y[M, N] = (x - max) - log(sum(exp(x - max))) per row */
template <int G>
__global__ void k_log_softmax_fwd(float *y, const float *x, int M, int N) {
  const size_t t = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  const int l = (int)(t % G);
  for (size_t i = t / G; i < (size_t)M; i += ((size_t)gridDim.x * blockDim.x) / G) {
    const float *xr = x + i * N;
    float *yr = y + i * N;
    float m;
    const float ls = cu_row_logsum<G>(xr, N, l, &m);
    for (int j = l; j < N; j += G) yr[j] = __fsub_rn(__fsub_rn(xr[j], m), ls);
  }
}

/* Blocks for a row kernel: CU_THREADS / G rows per block per pass. */
static unsigned cu_row_blocks(int M, int G) { return cu_blocks((size_t)M, CU_THREADS / G); }

void fl__cuda_log_softmax_fwd(float *y, const float *x, int M, int N) {
  if (M <= 0 || N <= 0) return;
  if (CU_ROW_G(N) == 1)
    k_log_softmax_fwd<1><<<cu_row_blocks(M, 1), CU_THREADS, 0, STREAM>>>(y, x, M, N);
  else
    k_log_softmax_fwd<32><<<cu_row_blocks(M, 32), CU_THREADS, 0, STREAM>>>(y, x, M, N);
  cu_launched("log_softmax_fwd");
}

/* gx (+)= gy - exp(y) * sum(gy) per row */
template <int G>
__global__ void k_log_softmax_bwd(float *gx, const float *gy, const float *y, int M, int N,
                                  int acc) {
  const size_t t = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  const int l = (int)(t % G);
  for (size_t i = t / G; i < (size_t)M; i += ((size_t)gridDim.x * blockDim.x) / G) {
    const float *g = gy + i * N, *yr = y + i * N;
    float *o = gx + i * N;
    float s = 0.0f;
    for (int j = l; j < N; j += G) s += g[j];
    s = cu_group_sum<G>(s);
    for (int j = l; j < N; j += G) {
      float v = __fsub_rn(g[j], __fmul_rn(expf(yr[j]), s));
      o[j] = acc ? __fadd_rn(o[j], v) : v;
    }
  }
}

void fl__cuda_log_softmax_bwd(float *gx, const float *gy, const float *y, int M, int N, int acc) {
  if (M <= 0 || N <= 0) return;
  if (CU_ROW_G(N) == 1)
    k_log_softmax_bwd<1><<<cu_row_blocks(M, 1), CU_THREADS, 0, STREAM>>>(gx, gy, y, M, N, acc);
  else
    k_log_softmax_bwd<32><<<cu_row_blocks(M, 32), CU_THREADS, 0, STREAM>>>(gx, gy, y, M, N, acc);
  cu_launched("log_softmax_bwd");
}

/* ---- cross-entropy ----
 * Forward in one block (the mean needs every row): groups take rows in a fixed pattern,
 * write lse[i] and add (lse - x[t]) in double (as the CPU) to the group's partial; then the
 * block tree. loss = mean; NaN for M = 0 (as the CPU). A target outside [0, N) (which the
 * CPU rejects with an abort) makes that row's term, so the loss, NaN. */
template <int G>
__global__ void k_xent_fwd(float *loss, float *lse, const float *x, const int32_t *t, int M,
                           int N) {
  const int l = threadIdx.x % G;
  const int ngroups = blockDim.x / G;
  double part = 0.0;
  for (int i = threadIdx.x / G; i < M; i += ngroups) {
    const float *xr = x + (size_t)i * N;
    float m;
    const float ls = cu_row_logsum<G>(xr, N, l, &m);
    if (l == 0) {
      lse[i] = __fadd_rn(m, ls);
      const int ti = t[i];
      const float xt = ti >= 0 && ti < N ? xr[ti] : NAN;
      part += (double)__fsub_rn(ls, __fsub_rn(xt, m));   /* as the CPU: l - (x[t] - m) */
    }
  }
  part = cu_block_sum(part);
  if (threadIdx.x == 0) loss[0] = M > 0 ? (float)(part / (double)M) : NAN;
}

void fl__cuda_xent_fwd(float *loss, float *lse, const float *x, const int32_t *t, int M, int N) {
  if (M < 0) M = 0;
  if (N <= 0 && M > 0) {                        /* no classes: nothing sensible; as CPU, NaN-ish */
    fl__cuda_fill(loss, NAN, 1);
    return;
  }
  if (CU_ROW_G(N) == 1) k_xent_fwd<1><<<1, CU_RED_THREADS, 0, STREAM>>>(loss, lse, x, t, M, N);
  else k_xent_fwd<32><<<1, CU_RED_THREADS, 0, STREAM>>>(loss, lse, x, t, M, N);
  cu_launched("xent_fwd");
}

/* gx[M, N] (+)= (softmax(x) - onehot(t)) * (gloss[0] / M), element by element, with the
 * saved lse: softmax = exp(x - lse). */
__global__ void k_xent_bwd(float *gx, const float *gloss, const float *x, const float *lse,
                           const int32_t *t, int M, int N, int acc) {
  const float k = __fdiv_rn(gloss[0], (float)M);
  CU_FOR(e, (size_t)M * N) {
    size_t i, j;
    cu_divmod(e, (size_t)N, &i, &j);
    const float oh = (int)j == t[i] ? 1.0f : 0.0f;
    const float v = __fmul_rn(__fsub_rn(expf(__fsub_rn(x[e], lse[i])), oh), k);
    gx[e] = acc ? __fadd_rn(gx[e], v) : v;
  }
}

void fl__cuda_xent_bwd(float *gx, const float *gloss, const float *x, const float *lse,
                       const int32_t *t, int M, int N, int acc) {
  if (M <= 0 || N <= 0) return;
  size_t n = (size_t)M * N;
  k_xent_bwd<<<cu_blocks(n, CU_THREADS), CU_THREADS, 0, STREAM>>>(gx, gloss, x, lse, t, M, N, acc);
  cu_launched("xent_bwd");
}

/* ---- mean squared error ---- */
/* loss[0] = mean((p - t)^2), the squares summed in double (as the CPU); NaN for n = 0 */
__global__ void k_mse_fwd(float *loss, const float *p, const float *t, size_t n) {
  double s = 0.0;
  for (size_t i = threadIdx.x; i < n; i += blockDim.x) {
    const float d = __fsub_rn(p[i], t[i]);
    s += (double)__fmul_rn(d, d);
  }
  s = cu_block_sum(s);
  if (threadIdx.x == 0) loss[0] = n ? (float)(s / (double)n) : NAN;
}

void fl__cuda_mse_fwd(float *loss, const float *p, const float *t, size_t n) {
  k_mse_fwd<<<1, CU_RED_THREADS, 0, STREAM>>>(loss, p, t, n);
  cu_launched("mse_fwd");
}

/* gp (+)= (p - t) * (2 * gloss[0] / n) */
__global__ void k_mse_bwd(float *gp, const float *gloss, const float *p, const float *t,
                          size_t n, int acc) {
  const float k = __fdiv_rn(__fmul_rn(2.0f, gloss[0]), (float)n);
  CU_FOR(i, n) {
    const float v = __fmul_rn(__fsub_rn(p[i], t[i]), k);
    gp[i] = acc ? __fadd_rn(gp[i], v) : v;
  }
}

void fl__cuda_mse_bwd(float *gp, const float *gloss, const float *p, const float *t, size_t n,
                      int acc) {
  if (!n) return;
  k_mse_bwd<<<cu_blocks(n, CU_THREADS), CU_THREADS, 0, STREAM>>>(gp, gloss, p, t, n, acc);
  cu_launched("mse_bwd");
}

/* ---- optimiser ---- */
/* p -= lr * (g + wd * p); the wd = 0 form is p -= lr * g (as the CPU) */
template <int WD>
__global__ void k_sgd_step(float *p, const float *g, float lr, float wd, size_t n) {
  CU_FOR(i, n) {
    const float gi = WD ? __fadd_rn(g[i], __fmul_rn(wd, p[i])) : g[i];
    p[i] = __fsub_rn(p[i], __fmul_rn(lr, gi));
  }
}

void fl__cuda_sgd_step(float *p, const float *g, float lr, float wd, size_t n) {
  if (!n) return;
  if (wd != 0.0f) k_sgd_step<1><<<cu_blocks(n, CU_THREADS), CU_THREADS, 0, STREAM>>>(p, g, lr, wd, n);
  else k_sgd_step<0><<<cu_blocks(n, CU_THREADS), CU_THREADS, 0, STREAM>>>(p, g, lr, wd, n);
  cu_launched("sgd_step");
}

__global__ void k_scale(float *x, float s, size_t n) {
  CU_FOR(i, n) x[i] = __fmul_rn(x[i], s);
}

void fl__cuda_scale(float *x, float s, size_t n) {
  if (!n) return;
  k_scale<<<cu_blocks(n, CU_THREADS), CU_THREADS, 0, STREAM>>>(x, s, n);
  cu_launched("scale");
}

/* Adam / AdamW (backend.h): the CPU's operations in its order, each rounded (no FMA), so the
 * bits are the CPU's. The scalars come by value. */
__global__ void k_adam_step(float *p, const float *g, float *m, float *v, fl_adam_hyper k,
                            size_t n) {
  CU_FOR(i, n) {
    const float gi = k.wd != 0.0f ? __fadd_rn(g[i], __fmul_rn(k.wd, p[i])) : g[i];
    const float pi = __fmul_rn(p[i], k.decay);
    const float mi = __fadd_rn(__fmul_rn(m[i], k.beta1), __fmul_rn(k.one_minus_beta1, gi));
    const float vi = __fadd_rn(__fmul_rn(v[i], k.beta2), __fmul_rn(__fmul_rn(k.one_minus_beta2, gi), gi));
    const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), k.bc2_sqrt), k.eps);
    p[i] = __fadd_rn(pi, __fmul_rn(k.neg_step_size, __fdiv_rn(mi, denom)));
    m[i] = mi;
    v[i] = vi;
  }
}

void fl__cuda_adam_step(float *p, const float *g, float *m, float *v, const fl_adam_hyper *h,
                        size_t n) {
  if (!n) return;
  k_adam_step<<<cu_blocks(n, CU_THREADS), CU_THREADS, 0, STREAM>>>(p, g, m, v, *h, n);
  cu_launched("adam_step");
}

/* SGD with momentum (backend.h), rounded as the CPU. */
__global__ void k_sgd_mom_step(float *p, const float *g, float *buf, fl_sgd_hyper k, size_t n) {
  CU_FOR(i, n) {
    float d = k.wd != 0.0f ? __fadd_rn(g[i], __fmul_rn(k.wd, p[i])) : g[i];
    const float b = k.first ? d : __fadd_rn(__fmul_rn(buf[i], k.mom), __fmul_rn(k.one_minus_dampening, d));
    buf[i] = b;
    d = k.nesterov ? __fadd_rn(d, __fmul_rn(k.mom, b)) : b;
    p[i] = __fsub_rn(p[i], __fmul_rn(k.lr, d));
  }
}

void fl__cuda_sgd_mom_step(float *p, const float *g, float *buf, const fl_sgd_hyper *h, size_t n) {
  if (!n) return;
  k_sgd_mom_step<<<cu_blocks(n, CU_THREADS), CU_THREADS, 0, STREAM>>>(p, g, buf, *h, n);
  cu_launched("sgd_mom_step");
}

/* 12_accel_sgd's RMSProp / Adam (backend.h), rounded as the CPU. */
__global__ void k_nb_adam_step(float *p, const float *g, float *m, float *v, fl_nb_hyper k, size_t n) {
  CU_FOR(i, n) {
    const float pi = __fmul_rn(p[i], k.decay);
    const float a = m ? __fadd_rn(__fmul_rn(m[i], k.beta1), __fmul_rn(k.one_minus_beta1, g[i])) : g[i];
    const float g2 = __fmul_rn(g[i], g[i]);
    const float vi = __fadd_rn(__fmul_rn(k.first_v ? g2 : v[i], k.beta2), __fmul_rn(g2, k.one_minus_beta2));
    const float uv = __fdiv_rn(vi, k.bc2);
    const float den = k.eps_inside ? __fsqrt_rn(__fadd_rn(uv, k.eps)) : __fadd_rn(__fsqrt_rn(uv), k.eps);
    p[i] = __fsub_rn(pi, __fdiv_rn(__fmul_rn(k.lr, __fdiv_rn(a, k.bc1)), den));
    if (m) m[i] = a;
    v[i] = vi;
  }
}

void fl__cuda_nb_adam_step(float *p, const float *g, float *m, float *v, const fl_nb_hyper *h, size_t n) {
  if (!n) return;
  k_nb_adam_step<<<cu_blocks(n, CU_THREADS), CU_THREADS, 0, STREAM>>>(p, g, m, v, *h, n);
  cu_launched("nb_adam_step");
}

/* ---- metrics ---- */
/* acc[0] += rows whose first maximum is at t[row]; acc[1] += M. One block (a thread per row,
 * integer counts), so the update of acc is a single ordered write. */
__global__ void k_argmax_correct(double *acc, const float *x, const int32_t *t, int M, int N) {
  int c = 0;
  for (int i = threadIdx.x; i < M; i += blockDim.x) {
    const float *xr = x + (size_t)i * N;
    int best = 0;
    float bv = xr[0];
    for (int j = 1; j < N; j++) {
      const float v = xr[j];
      if (v > bv) bv = v, best = j;
    }
    c += best == t[i];
  }
  c = cu_block_sum(c);
  if (threadIdx.x == 0) {
    acc[0] += (double)c;
    acc[1] += (double)M;
  }
}

void fl__cuda_argmax_correct(double *acc, const float *x, const int32_t *t, int M, int N) {
  if (M <= 0 || N <= 0) return;
  k_argmax_correct<<<1, CU_RED_THREADS, 0, STREAM>>>(acc, x, t, M, N);
  cu_launched("argmax_correct");
}

/* acc[0] += w * sum(x[n]) (double); acc[1] += w */
__global__ void k_mean_update(double *acc, const float *x, size_t n, double w) {
  double s = 0.0;
  for (size_t i = threadIdx.x; i < n; i += blockDim.x) s += (double)x[i];
  s = cu_block_sum(s);
  if (threadIdx.x == 0) {
    acc[0] += w * s;
    acc[1] += w * (double)n;
  }
}

void fl__cuda_mean_update(double *acc, const float *x, size_t n, double w) {
  k_mean_update<<<1, CU_RED_THREADS, 0, STREAM>>>(acc, x, n, w);
  cu_launched("mean_update");
}

/* *flag = 1 if any element is NaN or inf (exponent all ones; immune to fast-math). Every
 * writer stores the same value, so the race is benign. */
__global__ void k_nonfinite(int *flag, const float *x, size_t n) {
  CU_FOR(i, n) if ((__float_as_uint(x[i]) & 0x7f800000u) == 0x7f800000u) *flag = 1;
}

int fl__cuda_nonfinite(const float *x, size_t n) {
  if (!n) return 0;
  *fl__cu.h_flag = 0;
  if (!cu_ok(cudaMemsetAsync(fl__cu.d_flag, 0, sizeof(int), STREAM), "nonfinite")) return 0;
  k_nonfinite<<<cu_blocks(n, CU_THREADS), CU_THREADS, 0, STREAM>>>(fl__cu.d_flag, x, n);
  if (!cu_launched("nonfinite")) return 0;
  if (!cu_ok(cudaMemcpyAsync(fl__cu.h_flag, fl__cu.d_flag, sizeof(int), cudaMemcpyDeviceToHost,
                             STREAM), "nonfinite"))
    return 0;
  if (!cu_ok(cudaStreamSynchronize(STREAM), "nonfinite")) return 0;
  return *fl__cu.h_flag != 0;
}

/* ---- data ---- */
/* out[B, row] = (float)src[idx[i] * row + j] / div: a block per batch row (no division in
 * the index), threads along the row (coalesced). */
/* batch gather: block i converts row idx[i] (out = (float)u8 / div, true division) and copies
 * its label */
__global__ void k_gather_xy(float *out, int32_t *yout, const uint8_t *src, const int32_t *ysrc,
                            const int32_t *idx, int B, int row, float div) {
  for (int i = blockIdx.x; i < B; i += gridDim.x) {
    const int32_t r = idx[i];
    const uint8_t *s = src + (size_t)r * row;
    float *o = out + (size_t)i * row;
    for (int j = threadIdx.x; j < row; j += blockDim.x) o[j] = __fdiv_rn((float)s[j], div);
    if (threadIdx.x == 0) yout[i] = ysrc[r];
  }
}

void fl__cuda_gather_xy(float *out, int32_t *yout, const uint8_t *src, const int32_t *ysrc,
                        const int32_t *idx, int B, int row, float div) {
  if (B <= 0) return;
  k_gather_xy<<<B < 65535 ? B : 65535, CU_THREADS, 0, STREAM>>>(out, yout, src, ysrc, idx, B, row, div);
  cu_launched("gather_xy");
}

