// Batched symmetric tridiagonal eigensolver on the GPU (tridiag_solve.cuh has the algorithm
// and the per-thread pieces). d: batch x n diagonals, e: batch x n off-diagonals (e[b*n+i]
// couples i and i+1; e[b*n+n-1] ignored), device pointers of T (float or double). Outputs:
// w batch x n ascending eigenvalues, Z batch x n x n column-major (column k of matrix b, at
// Z + b*n*n + k*n, is the unit eigenvector of w[b*n+k]), info batch ints (0, or 1 when that
// matrix's input had a NaN/inf; then its w and Z are NaN). No host synchronization, no
// allocation: work is device scratch of tridiag_eig_workspace<T>(n, batch) bytes.
//
// Phases (kernels on the stream):
//   prep     one thread a matrix: finite check, power-of-two scaling, split into blocks
//   root     one warp a block (its first slot): smallest eigenvalue by multisection, root L D L^T
//   bisect   one thread a slot: its eigenvalue (of L D L^T, relative accuracy, in root blocks;
//            opt-in SYMOC_CUDA_BISECT_GRID=1: from a bracket the block's shared grid gives)
//   rank     one block a matrix: the slots' order, w, and the list of clusters
//   vectors  one thread a slot outside clusters: twisted factorization, into its Z column
//   clusters persistent worker blocks taking clusters from a queue: block inverse iteration
//            with Gram-Schmidt, the members' columns in place
// Vectors are computed in double: in Z itself for fp64; for fp32 in a double buffer of a chunk
// of matrices (vectors of at most the batch's fp32 output capped at 1 GiB, or kVectorBudget
// bytes, whichever is more), converted into Z per chunk.
#include "tridiag_solve.cuh"

#include "common.cuh"
#include "env.h"

#include <math_constants.h>

#include <algorithm>
#include <climits>
#include <string>
#include <type_traits>

namespace symoc::cuda::detail {

namespace {
using namespace tridiag;

constexpr int kThreads = 128;
constexpr int kWarps = kThreads / 32;
constexpr int kSolveLanes = 32; // a cluster's solves run on its worker's first warp
constexpr size_t kPoolBudget = size_t(128) << 20;
constexpr int kMaxWorkers = 64;

struct Work {
  double *ds, *es, *e2, *gl, *gu, *lam, *mu, *sig, *rD, *rl;
  int *lo, *hi, *rank, *rrr, *cl_start, *cl_end, *cl_count, *exps, *queue;
  double *pool, *V;
  int64_t chunk, pool_stride;
  int workers;
};

// The workspace's pieces; with base null only the sizes (Carver).
template <class T> Work carve(void *base, int64_t n, int64_t batch, Carver &c) {
  Work w{};
  const size_t bn = size_t(n) * size_t(batch);
  w.ds = c.take<double>(bn), w.es = c.take<double>(bn), w.e2 = c.take<double>(bn);
  w.gl = c.take<double>(bn), w.gu = c.take<double>(bn), w.lam = c.take<double>(bn);
  w.mu = c.take<double>(bn), w.sig = c.take<double>(bn), w.rD = c.take<double>(bn), w.rl = c.take<double>(bn);
  w.lo = c.take<int>(bn), w.hi = c.take<int>(bn), w.rank = c.take<int>(bn), w.rrr = c.take<int>(bn);
  w.cl_start = c.take<int>(bn), w.cl_end = c.take<int>(bn);
  w.cl_count = c.take<int>(batch), w.exps = c.take<int>(batch), w.queue = c.take<int>(1);
  // A worker: u1, u2 of its solve lanes (interleaved) and the Gram-Schmidt coefficients.
  w.pool_stride = (2 * kSolveLanes + 1) * n;
  w.workers = int(std::clamp<int64_t>(int64_t(kPoolBudget / (size_t(w.pool_stride) * sizeof(double))), 1, kMaxWorkers));
  w.pool = c.take<double>(size_t(w.workers) * w.pool_stride);
  if (std::is_same_v<T, double>) {
    w.chunk = batch, w.V = nullptr; // the vectors are built in Z
  } else {
    w.chunk = tridiag_vector_chunk(n, batch);
    w.V = c.take<double>(size_t(w.chunk) * n * n);
  }
  (void)base;
  return w;
}

__device__ double block_sum(double v, double *sh) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  __syncthreads(); // earlier readers of sh are done
  if ((threadIdx.x & 31) == 0) sh[threadIdx.x >> 5] = v;
  __syncthreads();
  double t = 0;
  for (int i = 0; i < kWarps; ++i) t += sh[i];
  return t;
}

template <class T>
__global__ void prep_kernel(const T *d, const T *e, int n, int batch, double *ds, double *es, double *e2, int *lo,
                            int *hi, double *gl, double *gu, int *exps, int *info) {
  const int b = blockIdx.x * blockDim.x + threadIdx.x;
  if (b >= batch) return;
  const size_t o = size_t(b) * n;
  int ex = 0;
  const bool ok =
      prepare_matrix(d + o, e + o, n, ds + o, es + o, e2 + o, lo + o, hi + o, gl + o, gu + o, ex);
  exps[b] = ex, info[b] = ok ? 0 : 1;
}

// One warp a slot; the warps of blocks' first slots find the block's smallest eigenvalue by
// lowest_eigenvalue's multisection (a lane a point: the same rounds, so the same value as the
// host driver), then lane 0 factors the root.
static_assert(kRootLanes == 32, "one warp a multisection round");
__global__ void root_kernel(const double *ds, const double *es, const double *e2, const int *lo, const int *hi,
                            const double *gl, const double *gu, const int *info, int n, double *lam, double *sig,
                            double *rD, double *rl, int *rrr) {
  const int b = blockIdx.y, s = blockIdx.x * kWarps + (threadIdx.x >> 5), lane = threadIdx.x & 31;
  if (s >= n || info[b]) return;
  const size_t o = size_t(b) * n;
  if (lo[o + s] != s) return; // uniform in the warp
  const int m = hi[o + s] - s + 1;
  const double *d = ds + o + s, *q = e2 + o + s;
  double lmin = d[0];
  if (m > 1) {
    Bracket br = lowest_bracket(m, gl[o + s], gu[o + s]);
    for (int it = 0; it < 2200 && !bracket_done(br); ++it) {
      const unsigned pos = __ballot_sync(0xffffffffu, sturm_count(d, q, m, multisect_point(br, lane)) > 0);
      if (!multisect_update(br, pos ? __ffs(pos) - 1 : kRootLanes)) break;
    }
    lmin = bracket_value(br);
  }
  if (lane == 0) block_root_at(ds + o, es + o, hi + o, gl + o, gu + o, s, lmin, lam + o, sig + o, rD + o, rl + o, rrr + o);
}

// grid (SYMOC_CUDA_BISECT_GRID=1): where the block's slots lie in one root block, its threads
// first count at the grid's points (one each), and every slot starts from its bracket there
// (grid_bracket; the host driver's bisect_grid does the same).
static_assert(kGridPoints == kThreads, "one grid point a thread of the bisection block");
__global__ void bisect_kernel(const double *ds, const double *e2, const int *lo, const int *hi, const double *gl,
                              const double *gu, const double *sig, const double *rD, const double *rl, const int *rrr,
                              const int *info, int n, int grid, double *lam, double *mu) {
  __shared__ int counts[kGridPoints];
  __shared__ int shared;
  const int b = blockIdx.y, s = blockIdx.x * blockDim.x + threadIdx.x;
  const size_t o = size_t(b) * n;
  if (grid) { // uniform in the block: every thread reaches both barriers
    const int s0 = blockIdx.x * blockDim.x;
    if (threadIdx.x == 0) shared = !info[b] && grid_shared(lo + o, hi + o, rrr + o, n, s0);
    __syncthreads();
    if (shared) {
      const int l = lo[o + s0];
      const int m = hi[o + l] - l + 1;
      counts[threadIdx.x] =
          ldl_count(rD + o + l, rl + o + l, m, grid_point(ldl_top(gu[o + l] - sig[o + l], m), threadIdx.x));
    }
    __syncthreads();
  }
  if (s >= n || info[b]) return;
  slot_values(ds + o, e2 + o, lo + o, hi + o, gl + o, gu + o, sig + o, rD + o, rl + o, rrr + o, s, lam + o, mu + o,
              grid && shared ? counts : nullptr);
}

template <class T>
__global__ void rank_kernel(const double *lam, const double *mu, const int *lo, const int *hi, const int *rrr,
                            const double *gl, const double *gu, const int *exps, const int *info, int n, double gap,
                            double rel, int *rank, T *w, int *cl_start, int *cl_end, int *cl_count) {
  __shared__ int count;
  const int b = blockIdx.x;
  const size_t o = size_t(b) * n;
  if (threadIdx.x == 0) count = 0;
  __syncthreads();
  if (info[b]) {
    for (int s = threadIdx.x; s < n; s += blockDim.x) w[o + s] = T(CUDART_NAN);
    if (threadIdx.x == 0) cl_count[b] = 0;
    return;
  }
  const double *l = lam + o;
  auto link = [&](int s) { return linked(l, mu + o, lo + o, hi + o, rrr + o, gl + o, gu + o, n, s, gap, rel); };
  for (int s = threadIdx.x; s < n; s += blockDim.x) {
    const int r = slot_rank(l, n, s);
    rank[o + s] = r;
    w[o + r] = T(ldexp(l[s], exps[b]));
    if (link(s) && !link(s - 1)) {
      int c1 = s + 1;
      while (link(c1)) ++c1;
      const int k = atomicAdd(&count, 1); // list order does not matter: clusters are independent
      cl_start[o + k] = s, cl_end[o + k] = c1;
    }
  }
  __syncthreads();
  if (threadIdx.x == 0) cl_count[b] = count;
}

// Vectors of the slots outside clusters; NaN columns for matrices with info set.
// V: matrix b0's double vectors (column-major, n x n a matrix), zero on entry.
__global__ void vector_kernel(const double *ds, const double *es, const double *lam, const double *mu,
                              const double *rD, const double *rl, const int *rrr, const int *lo, const int *hi,
                              const double *gl, const double *gu, const int *rank, const int *info, int n, double gap,
                              double rel, int b0, double *V) {
  const int b = b0 + blockIdx.y, s = blockIdx.x * blockDim.x + threadIdx.x;
  if (s >= n) return;
  const size_t o = size_t(b) * n;
  double *Vb = V + size_t(blockIdx.y) * n * n;
  if (info[b]) {
    for (int i = 0; i < n; ++i) Vb[size_t(s) * n + i] = CUDART_NAN;
    return;
  }
  if (linked(lam + o, mu + o, lo + o, hi + o, rrr + o, gl + o, gu + o, n, s - 1, gap, rel) ||
      linked(lam + o, mu + o, lo + o, hi + o, rrr + o, gl + o, gu + o, n, s, gap, rel))
    return;
  const int l = lo[o + s], m = hi[o + s] - l + 1;
  const double floor = kPivFloor * block_norm(gl + o, gu + o, s);
  double *z = Vb + size_t(rank[o + s]) * n + l;
  if (rrr[o + l]) twisted_vector_ldl(rD + o + l, rl + o + l, m, mu[o + s], floor, z, 1);
  else twisted_vector(ds + o + l, es + o + l, m, lam[o + s], floor, z, 1);
}

// One cluster on one block: all members solve (T - lambda_j I) x_j = x_j (first warp, one
// member a lane), then classical Gram-Schmidt twice, member by member in slot order (warps
// take the dot products, threads the rows). The first sweep starts from pseudo-random vectors;
// sweeps repeat (at least 2) while Gram-Schmidt removed almost all of some member.
// root: solve with L D L^T - mu I (rD, rl, mu; see cluster_uses_root), else T - lam I.
__device__ void solve_cluster(const double *ds, const double *es, const double *lam, const double *mu,
                              const double *rD, const double *rl, bool root, int l, int m, int c0, int k,
                              double floor, const int *rank, double *Vb, int n, double *u1, double *u2, double *coef,
                              double *sh, int *bad) {
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  auto X = [&](int j) { return Vb + size_t(rank[c0 + j]) * n + l; };
  for (int j = warp; j < k; j += kWarps)
    for (int i = lane; i < m; i += 32) X(j)[i] = start_value(c0 + j, i, 0);
  __syncthreads();
  for (int sweep = 0;; ++sweep) {
    if (tid < kSolveLanes)
      for (int j = tid; j < k; j += kSolveLanes) {
        double *x = X(j);
        if (root) twisted_solve_ldl(rD + l, rl + l, m, mu[c0 + j], floor, x, 1, u1 + tid, u2 + tid, kSolveLanes);
        else pivoted_solve(ds + l, es + l, m, lam[c0 + j], floor, x, 1, u1 + tid, u2 + tid, kSolveLanes);
        double mx = 0;
        for (int i = 0; i < m; ++i) mx = dmax(mx, fabs(x[i]));
        if (!(mx > 0) || !(mx <= DBL_MAX)) {
          for (int i = 0; i < m; ++i) x[i] = start_value(c0 + j, i, sweep + 1);
          mx = 1;
        }
        const double inv = 1 / mx;
        for (int i = 0; i < m; ++i) x[i] *= inv;
      }
    if (tid == 0) *bad = 0;
    __syncthreads();
    for (int j = 0; j < k; ++j) {
      double *x = X(j);
      double after = 0;
      for (int attempt = 0; attempt < 2; ++attempt) {
        double part = 0;
        for (int i = tid; i < m; i += kThreads) part += x[i] * x[i];
        const double before = block_sum(part, sh);
        for (int pass = 0; pass < 2; ++pass) {
          for (int a = warp; a < j; a += kWarps) {
            const double *y = X(a);
            double dot = 0;
            for (int i = lane; i < m; i += 32) dot += y[i] * x[i];
            for (int o = 16; o > 0; o >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, o);
            if (lane == 0) coef[a] = dot;
          }
          __syncthreads();
          for (int i = tid; i < m; i += kThreads) {
            double acc = 0;
            for (int a = 0; a < j; ++a) acc += coef[a] * X(a)[i];
            x[i] -= acc;
          }
          __syncthreads();
        }
        part = 0;
        for (int i = tid; i < m; i += kThreads) part += x[i] * x[i];
        after = block_sum(part, sh); // the same value in every thread: uniform branches
        if (!(after >= kKeepRatio * kKeepRatio * before) && tid == 0) *bad = 1;
        if (after > 0) break;
        for (int i = tid; i < m; i += kThreads) x[i] = start_value(c0 + j, i, sweep + 1);
        __syncthreads();
      }
      const double inv = 1 / sqrt(after);
      for (int i = tid; i < m; i += kThreads) x[i] *= inv;
      __syncthreads();
    }
    const bool again = *bad != 0;
    __syncthreads(); // all read *bad before the next sweep resets it
    if ((sweep >= 1 && !again) || sweep + 1 >= kMaxSweeps) break;
  }
}

// Persistent workers: each takes the next cluster of matrices b0 .. b0+nb-1 from the queue.
__global__ void __launch_bounds__(kThreads)
    cluster_kernel(const double *ds, const double *es, const double *lam, const double *mu, const double *rD,
                   const double *rl, const int *rrr, const int *lo, const int *hi, const double *gl,
                   const double *gu, const int *rank, const int *cl_start, const int *cl_end, const int *cl_count,
                   int n, double gap, int b0, int nb, double *V, double *pool, int64_t pool_stride, int *queue) {
  __shared__ int item_b, item_c, bad;
  __shared__ double sh[kWarps];
  double *u1 = pool + size_t(blockIdx.x) * pool_stride, *u2 = u1 + size_t(kSolveLanes) * n,
         *coef = u2 + size_t(kSolveLanes) * n;
  for (;;) {
    if (threadIdx.x == 0) {
      int item = atomicAdd(queue, 1), b = -1;
      for (int i = 0; i < nb; ++i) {
        const int c = cl_count[b0 + i];
        if (item < c) {
          b = b0 + i;
          break;
        }
        item -= c;
      }
      item_b = b, item_c = item;
    }
    __syncthreads();
    const int b = item_b, c = item_c;
    __syncthreads(); // all read the item before thread 0 takes the next
    if (b < 0) return;
    const size_t o = size_t(b) * n;
    const int c0 = cl_start[o + c], c1 = cl_end[o + c], l = lo[o + c0];
    const bool root = cluster_uses_root(lam + o, lo + o, hi + o, rrr + o, gl + o, gu + o, c0, c1, gap);
    solve_cluster(ds + o, es + o, lam + o, mu + o, rD + o, rl + o, root, l, hi[o + c0] - l + 1, c0, c1 - c0 + 1,
                  kPivFloor * block_norm(gl + o, gu + o, c0), rank + o, V + size_t(b - b0) * n * n, n, u1, u2, coef,
                  sh, &bad);
  }
}

__global__ void to_output_kernel(const double *V, int64_t count, float *Z) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < count; i += int64_t(gridDim.x) * blockDim.x)
    Z[i] = float(V[i]);
}

unsigned grid_for(int64_t count, int threads) { return unsigned(std::min<int64_t>((count + threads - 1) / threads, 65535)); }

} // namespace

template <class T> size_t tridiag_eig_workspace(int64_t n, int64_t batch) {
  if (n <= 0 || batch <= 0) return 0;
  Carver c;
  carve<T>(nullptr, n, batch, c);
  return c.used();
}

template <class T>
void tridiag_eig(const T *d, const T *e, int64_t n, int64_t batch, T *w, T *Z, int *info, void *work,
                 cudaStream_t s) {
  if (n < 0 || batch < 0) fail("tridiag_eig", "invalid shape");
  if (batch == 0) return;
  if (batch > 65535) fail("tridiag_eig", "batch " + std::to_string(batch) + " above 65535");
  if (n > 46340) fail("tridiag_eig", "n " + std::to_string(n) + " too large"); // n * n within int
  if (n == 0) {
    check(cudaMemsetAsync(info, 0, size_t(batch) * sizeof(int), s), "tridiag_eig memset");
    return;
  }
  Carver c(work);
  const Work wk = carve<T>(work, n, batch, c);
  const int ni = int(n), bi = int(batch);
  const double gap = cluster_gap<T>(), rel = cluster_rel_gap<T>();
  prep_kernel<T><<<unsigned((batch + 63) / 64), 64, 0, s>>>(d, e, ni, bi, wk.ds, wk.es, wk.e2, wk.lo, wk.hi, wk.gl,
                                                           wk.gu, wk.exps, info);
  check_launch("tridiag_eig prep");
  const dim3 slots(unsigned((n + kThreads - 1) / kThreads), unsigned(batch));
  root_kernel<<<dim3(unsigned((n + kWarps - 1) / kWarps), unsigned(batch)), kThreads, 0, s>>>(wk.ds, wk.es, wk.e2, wk.lo, wk.hi, wk.gl, wk.gu, info, ni, wk.lam, wk.sig,
                                         wk.rD, wk.rl, wk.rrr);
  check_launch("tridiag_eig root");
  const int grid = symoc::rt::cuda::detail::env_flag("SYMOC_CUDA_BISECT_GRID", false) ? 1 : 0;
  bisect_kernel<<<slots, kThreads, 0, s>>>(wk.ds, wk.e2, wk.lo, wk.hi, wk.gl, wk.gu, wk.sig, wk.rD, wk.rl, wk.rrr, info,
                                           ni, grid, wk.lam, wk.mu);
  check_launch("tridiag_eig bisect");
  rank_kernel<T><<<unsigned(batch), 256, 0, s>>>(wk.lam, wk.mu, wk.lo, wk.hi, wk.rrr, wk.gl, wk.gu, wk.exps, info, ni,
                                                 gap, rel, wk.rank, w, wk.cl_start, wk.cl_end, wk.cl_count);
  check_launch("tridiag_eig rank");
  for (int64_t b0 = 0; b0 < batch; b0 += wk.chunk) {
    const int64_t nb = std::min(wk.chunk, batch - b0);
    double *V;
    if constexpr (std::is_same_v<T, double>) V = Z + b0 * n * n;
    else V = wk.V;
    check(cudaMemsetAsync(V, 0, size_t(nb) * n * n * sizeof(double), s), "tridiag_eig memset");
    vector_kernel<<<dim3(slots.x, unsigned(nb)), kThreads, 0, s>>>(wk.ds, wk.es, wk.lam, wk.mu, wk.rD, wk.rl, wk.rrr,
                                                                    wk.lo, wk.hi, wk.gl, wk.gu, wk.rank, info, ni, gap,
                                                                    rel, int(b0), V);
    check_launch("tridiag_eig vectors");
    check(cudaMemsetAsync(wk.queue, 0, sizeof(int), s), "tridiag_eig memset");
    cluster_kernel<<<unsigned(wk.workers), kThreads, 0, s>>>(wk.ds, wk.es, wk.lam, wk.mu, wk.rD, wk.rl, wk.rrr, wk.lo,
                                                             wk.hi, wk.gl, wk.gu, wk.rank, wk.cl_start, wk.cl_end,
                                                             wk.cl_count, ni, gap, int(b0), int(nb), V, wk.pool,
                                                             wk.pool_stride, wk.queue);
    check_launch("tridiag_eig clusters");
    if constexpr (!std::is_same_v<T, double>) {
      const int64_t count = nb * n * n;
      to_output_kernel<<<grid_for(count, 256), 256, 0, s>>>(V, count, Z + b0 * n * n);
      check_launch("tridiag_eig output");
    }
  }
}

template size_t tridiag_eig_workspace<float>(int64_t, int64_t);
template size_t tridiag_eig_workspace<double>(int64_t, int64_t);
template void tridiag_eig<float>(const float *, const float *, int64_t, int64_t, float *, float *, int *, void *,
                                 cudaStream_t);
template void tridiag_eig<double>(const double *, const double *, int64_t, int64_t, double *, double *, int *, void *,
                                  cudaStream_t);

} // namespace symoc::cuda::detail
