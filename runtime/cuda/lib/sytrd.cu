// Batched blocked Householder tridiagonalization (sytrd.cuh). Per panel of kNb columns, for
// each column i (LAPACK ?latrd, lower):
//   1. column_step: A(i:, i) -= V W(i,:)^T + W V(i,:)^T (the panel's earlier reflectors),
//      the reflector of A(i+1:, i), and s1 = W^T v, s2 = V^T v;
//   2. symv_tiles_kernel: A(i+1:, i+1:) v (the trailing matrix as it was when the panel began)
//      from its lower triangle in tiles, each tile read once and used for both of its halves,
//      the whole batch in one launch;
//   3. finish_w_step: y = A v - V s1 - W s2, w = tau y - tau^2 / 2 (y . v) v into W(:, k);
//      it runs in the same launch as the next column's step 1 (finish_and_column_kernel),
//      and alone after a panel's last column (finish_w_kernel); steps 1 and 3 run on a CTA
//      cluster of up to kMaxCta blocks per matrix (rows dealt to the blocks, the sums over rows
//      through distributed shared memory);
// then the trailing matrix A(p+kb:, p+kb:) -= V W^T + W V^T = [V W] [W V]^T, one strided-
// batched GEMM (one pass over the trailing matrix: the update is memory-bound at kb = 32). Sums
// of squares, dot products and the GEMV accumulate in double for both precisions (memory-bound
// passes: the wider arithmetic is free, and the norms cannot underflow).
#include "sytrd.cuh"
#include "blas.cuh"
#include "env.h"

#include <algorithm>
#include <climits>
#include <string>

namespace symoc::cuda::detail {
namespace {

constexpr int kNb = 32;         // panel width
constexpr int kSmallThreads = 1024;
constexpr int kBt = 128;        // reflectors per panel of the back-transformation

__device__ double block_sum(double v, double *red) {
  for (int o = 16; o > 0; o /= 2) v += __shfl_down_sync(0xffffffffu, v, o);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
  __syncthreads(); // red is free
  if (lane == 0) red[warp] = v;
  __syncthreads();
  double t = 0;
  for (int w = 0; w < nw; ++w) t += red[w];
  return t;
}

// Row-major lower triangle (column-major upper) copied onto the other half: the batch becomes
// fully symmetric. 32 x 32 tiles through shared memory.
template <class T> __global__ void symmetrize_kernel(T *A, int64_t n, int64_t batch) {
  __shared__ T tile[32][33];
  const int64_t ti = blockIdx.y, tj = blockIdx.x; // destination tile, row-major upper (ti <= tj)
  if (ti > tj) return;
  for (int64_t b = blockIdx.z; b < batch; b += gridDim.z) {
    T *a = A + b * n * n;
    __syncthreads();
    for (int r = threadIdx.y; r < 32; r += blockDim.y) { // source tile (tj, ti): row-major lower
      const int64_t i = tj * 32 + r, j = ti * 32 + threadIdx.x;
      if (i < n && j < n) tile[r][threadIdx.x] = a[i * n + j];
    }
    __syncthreads();
    for (int r = threadIdx.y; r < 32; r += blockDim.y) {
      const int64_t i = ti * 32 + r, j = tj * 32 + threadIdx.x;
      if (i < n && j < n && i < j) a[i * n + j] = tile[threadIdx.x][r];
    }
  }
}

// Steps 1 and 3 run on a CTA cluster of C blocks per matrix (C <= kMaxCta; 1: a plain
// launch): on one block per matrix they took 164 of the 844 ms of GPT-2 small's Shampoo
// refresh (H100). Spreading the rows over 8 blocks gained nothing alone (each row's sums are
// chains of load latencies); with the loads in flight (panel_dot, partial_sum) the reduction
// is 11-12% faster than on one block (docs/benchmarks.md, session 34). Rows are
// dealt to the blocks in units of 32 (unit u to block u % C), the same way in every loop, so a
// block reads back only rows it wrote; sums over rows go through each block's shared memory,
// read by all blocks of the cluster in rank order after a cluster barrier (deterministic, the
// same value everywhere).
constexpr int kMaxCta = 8;

struct Cta {
  int C, rank;
  int64_t b; // the matrix
};
__device__ Cta this_cta() { return {int(gridDim.x), int(blockIdx.x), int64_t(blockIdx.y)}; }

// Barrier over the cluster (release / acquire: the blocks' earlier global and shared writes are
// seen after it); split into arrive and wait where work can go between.
// Clusters exist from sm_90 on; builds for older GPUs (CMAKE_CUDA_ARCHITECTURES=80) keep C = 1
// (sytrd_cta_blocks asks the device), and the cluster instructions are not compiled there.
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 900
#define SYMOC_NO_CLUSTERS 1
#endif
__device__ void cta_arrive(const Cta &c) {
  if (c.C == 1) __syncthreads();
#ifndef SYMOC_NO_CLUSTERS
  else asm volatile("barrier.cluster.arrive.release.aligned;\n" ::: "memory");
#endif
}
__device__ void cta_wait(const Cta &c) {
#ifndef SYMOC_NO_CLUSTERS
  if (c.C > 1) asm volatile("barrier.cluster.wait.acquire.aligned;\n" ::: "memory");
#endif
}
__device__ void cta_sync(const Cta &c) { cta_arrive(c), cta_wait(c); }

// A double of block `rank`'s shared memory (DSMEM), at the address x has in this block.
__device__ double cta_read(const Cta &c, const double *x, int rank) {
#ifdef SYMOC_NO_CLUSTERS
  return *x;
#else
  if (c.C == 1) return *x;
  uint32_t local = uint32_t(__cvta_generic_to_shared(x)), remote;
  asm volatile("mapa.shared::cluster.u32 %0, %1, %2;\n" : "=r"(remote) : "r"(local), "r"(rank));
  double v;
  asm volatile("ld.shared::cluster.f64 %0, [%1];\n" : "=d"(v) : "r"(remote) : "memory");
  return v;
#endif
}
// The cluster's sum of `part` (this block's share, the same in all its threads) in rank order;
// slot: this block's shared double for it (not reused before the kernel's last barrier).
__device__ double cta_sum(const Cta &c, double part, double *slot) {
  if (threadIdx.x == 0) *slot = part;
  cta_sync(c);
  double t = 0;
  for (int r = 0; r < c.C; ++r) t += cta_read(c, slot, r);
  return t;
}

// This block's first unit of 32 rows at or after row r0 (units are dealt round-robin to the
// blocks; 32-bit: n < 2^31). Loops then take every C-th unit, dealt to the warps in turn.
__device__ int cta_first_unit(const Cta &c, int64_t r0) {
  const int u0 = int(r0 >> 5);
  return u0 + (c.rank - u0 % c.C + c.C) % c.C;
}
// The rows r0 <= r < n of this block, one a thread a round (the unit arithmetic once a loop).
#define SYMOC_CTA_ROWS(c, r0, n, r)                                                                         \
  for (int64_t u_ = cta_first_unit(c, r0) + int64_t(c.C) * (threadIdx.x >> 5), r = u_ * 32 + (threadIdx.x & 31); \
       u_ * 32 < (n); u_ += int64_t(c.C) * (blockDim.x >> 5), r = u_ * 32 + (threadIdx.x & 31))                \
    if (r >= (r0) && r < (n))

// Shared scalars of one launch, each written once (cta_read reads them from other blocks).
struct CtaShared {
  double dot, ss, alpha, ai;
  double s1[kNb], s2[kNb]; // the summed s1, s2 of the column being finished
  double wi[kNb], vi[kNb]; // row i of the panel's W and V
  double red[32];
};

// Sum over the panel's first k columns of V(r, q) a[q] + W(r, q) b[q]. Each thread's row is a
// chain of dependent adds fed by loads: eight loads are issued before their adds, so a row waits
// on a load latency every four columns instead of every column (the column steps are bound by
// these latencies, not by bandwidth).
template <class T>
__device__ double panel_dot(const T *v, const T *w, int64_t r, int64_t n, int64_t k, const double *a, const double *b) {
  double acc[4] = {0, 0, 0, 0};
  int64_t q = 0;
  for (; q + 4 <= k; q += 4) {
    T x[4], y[4];
#pragma unroll
    for (int u = 0; u < 4; ++u) x[u] = v[r + (q + u) * n], y[u] = w[r + (q + u) * n];
#pragma unroll
    for (int u = 0; u < 4; ++u) acc[u] += double(x[u]) * a[q + u] + double(y[u]) * b[q + u];
  }
  for (; q < k; ++q) acc[0] += double(v[r + q * n]) * a[q] + double(w[r + q * n]) * b[q];
  return (acc[0] + acc[1]) + (acc[2] + acc[3]);
}
// Sum of row r's tile partials (pr[q * n], q < tiles), eight loads in flight.
__device__ double partial_sum(const double *pr, int64_t n, int64_t tiles) {
  double acc[4] = {0, 0, 0, 0};
  int64_t q = 0;
  for (; q + 8 <= tiles; q += 8) {
    double x[8];
#pragma unroll
    for (int u = 0; u < 8; ++u) x[u] = pr[(q + u) * n];
#pragma unroll
    for (int u = 0; u < 8; ++u) acc[u & 3] += x[u];
  }
  for (; q < tiles; ++q) acc[0] += pr[q * n];
  return (acc[0] + acc[1]) + (acc[2] + acc[3]);
}

// Step 1 for column i (k = i - p within the panel).
template <class T>
__device__ void column_step(const Cta &c, CtaShared &sh, T *A, int64_t n, int64_t i, int64_t p, T *V, T *W, double *S,
                            T *d, T *off, T *tau) {
  const int64_t b = c.b, k = i - p;
  T *a = A + b * n * n + i * n; // column i
  T *v = V + b * n * kNb, *w = W + b * n * kNb;
  // Row i of W and V: other blocks wrote W(i, k-1) before the barrier; not from L1.
  if (threadIdx.x < k) sh.wi[threadIdx.x] = double(__ldcg(w + i + threadIdx.x * n)),
                           sh.vi[threadIdx.x] = double(__ldcg(v + i + threadIdx.x * n));
  __syncthreads();
  double ss = 0;
  SYMOC_CTA_ROWS(c, i, n, r) {
    const double x = double(a[r]) - panel_dot(v, w, r, n, k, sh.wi, sh.vi);
    a[r] = T(x);
    if (r >= i + 2) ss += double(T(x)) * double(T(x));
    if (r == i + 1) sh.alpha = double(T(x));
    if (r == i) sh.ai = double(T(x));
  }
  ss = cta_sum(c, block_sum(ss, sh.red), &sh.ss); // also the barrier after which alpha, ai are read
  const int own1 = int(((i + 1) / 32) % c.C), own0 = int((i / 32) % c.C);
  const double alpha = cta_read(c, &sh.alpha, own1), ai = cta_read(c, &sh.ai, own0);
  double beta = alpha, t = 0, scale = 0;
  if (ss > 0) {
    const double nrm = sqrt(alpha * alpha + ss);
    beta = alpha >= 0 ? -nrm : nrm;
    t = (beta - alpha) / beta;
    scale = 1.0 / (alpha - beta);
  }
  if (c.rank == 0 && threadIdx.x == 0) d[b * n + i] = T(ai), off[b * n + i] = T(beta), tau[b * n + i] = T(t);
  cta_arrive(c); // every block has read the others' shared scalars; waited for before exit
  T *vk = v + k * n;
  SYMOC_CTA_ROWS(c, p, n, r) {
    if (r <= i) vk[r] = T(0);
    else if (r == i + 1) vk[r] = T(1), a[r] = T(beta);
    else {
      const T x = T(double(a[r]) * scale);
      a[r] = x;
      vk[r] = x;
    }
  }
  __syncthreads();
  // This block's share of s1 = W(i+1:, :k)^T v, s2 = V(i+1:, :k)^T v: a warp per column over
  // the block's rows (the next launch's finish_w_step sums the blocks' shares).
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  const int64_t first = cta_first_unit(c, i + 1);
  double *Sb = S + (b * kMaxCta + c.rank) * 2 * kNb;
  for (int64_t q = warp; q < k; q += nw) {
    const T *wc = w + q * n, *vc = v + q * n;
    double s1q[4] = {0, 0, 0, 0}, s2q[4] = {0, 0, 0, 0}; // four units' loads in flight
    for (int64_t u = first; u * 32 < n; u += 4 * c.C) {
      T x[4], y[4], z[4];
#pragma unroll
      for (int h = 0; h < 4; ++h) {
        const int64_t r = (u + h * c.C) * 32 + lane;
        const bool in = r > i && r < n;
        x[h] = in ? vk[r] : T(0), y[h] = in ? wc[r] : T(0), z[h] = in ? vc[r] : T(0);
      }
#pragma unroll
      for (int h = 0; h < 4; ++h) s1q[h] += double(y[h]) * double(x[h]), s2q[h] += double(z[h]) * double(x[h]);
    }
    double s1 = (s1q[0] + s1q[1]) + (s1q[2] + s1q[3]), s2 = (s2q[0] + s2q[1]) + (s2q[2] + s2q[3]);
    for (int o = 16; o > 0; o /= 2) s1 += __shfl_down_sync(0xffffffffu, s1, o), s2 += __shfl_down_sync(0xffffffffu, s2, o);
    if (lane == 0) Sb[q] = s1, Sb[kNb + q] = s2;
  }
  cta_wait(c);
}

// Step 2: y = A(i+1:, i+1:) v from the lower triangle only, in kTile x kTile tiles: a tile
// (X, Y) below the diagonal adds A_XY v_Y to the rows of X and A_XY^T v_X to the rows of Y, a
// diagonal tile A_XX v_X. partial[b][Y][r] is the sum tile pair {X, Y} gives row r of X (each
// written once: deterministic sums). Blocks over the tile pairs t = X (X + 1) / 2 + Y.
constexpr int kTile = 64, kSymvThreads = 256;
template <class T>
__global__ void __launch_bounds__(kSymvThreads, 4)
    symv_tiles_kernel(const T *A, int64_t n, int64_t i, int64_t k, const T *V, double *partial, int64_t tiles,
                      int64_t batch) {
  constexpr int kQ = 4, kSeg = kTile / kQ; // every thread sums a quarter of a tile row or column
  __shared__ T tile[kTile][kTile + 1];
  __shared__ double vx[kTile], vy[kTile];
  __shared__ double red[2][kQ][kTile];
  const int64_t first = i + 1, m = n - first, t = blockIdx.x;
  int64_t X = int64_t((sqrt(8.0 * double(t) + 1.0) - 1.0) / 2.0);
  while (X * (X + 1) / 2 > t) --X;
  while ((X + 1) * (X + 2) / 2 <= t) ++X;
  const int64_t Y = t - X * (X + 1) / 2;
  const int64_t rx = X * kTile, ry = Y * kTile;
  const int lane = threadIdx.x % kTile, q = threadIdx.x / kTile;
  for (int64_t b = blockIdx.y; b < batch; b += gridDim.y) {
    const T *a = A + b * n * n + first * n + first; // trailing matrix, column-major, ld n
    const T *v = V + b * n * kNb + k * n + first;
    __syncthreads();
    if (threadIdx.x < kTile) {
      const int64_t r = rx + threadIdx.x, c = ry + threadIdx.x;
      vx[threadIdx.x] = r < m ? double(v[r]) : 0.0;
      vy[threadIdx.x] = c < m ? double(v[c]) : 0.0;
    }
    // Every load of the tile issued before the first is stored: sixteen in flight per thread
    // (a load-store loop waits on each load in turn, and the kernel would run at a quarter of
    // the memory bandwidth).
    // Thread (lane, q) reads row rx + lane of the columns ry + q + kStep u.
    constexpr int kPer = kTile * kTile / kSymvThreads, kStep = kSymvThreads / kTile;
    T x[kPer];
    const bool row_in = rx + lane < m;
    const T *col = a + (ry + q) * n + rx + lane;
    const int64_t cols_left = m - ry - q; // columns of this thread inside the matrix: u * kStep < cols_left
#pragma unroll
    for (int u = 0; u < kPer; ++u) x[u] = row_in && u * kStep < cols_left ? col[u * kStep * n] : T(0);
#pragma unroll
    for (int u = 0; u < kPer; ++u) tile[q + u * kStep][lane] = x[u];
    __syncthreads();
    // Rows of X: A_XY v_Y, row `lane` over columns q*kSeg ..; rows of Y: A_XY^T v_X, column
    // `lane` over rows q*kSeg .. (the padded row length keeps both conflict-free).
    double acc = 0, acc2 = 0;
#pragma unroll
    for (int j = 0; j < kSeg; ++j) acc += double(tile[q * kSeg + j][lane]) * vy[q * kSeg + j];
    red[0][q][lane] = acc;
    if (X != Y) {
#pragma unroll
      for (int j = 0; j < kSeg; ++j) acc2 += double(tile[lane][q * kSeg + j]) * vx[q * kSeg + j];
      red[1][q][lane] = acc2;
    }
    __syncthreads();
    if (threadIdx.x < kTile) {
      const int rr = threadIdx.x;
      const double y = (red[0][0][rr] + red[0][1][rr]) + (red[0][2][rr] + red[0][3][rr]);
      if (rx + rr < m) partial[(b * tiles + Y) * n + first + rx + rr] = y;
    } else if (threadIdx.x < 2 * kTile && X != Y) {
      const int cc = threadIdx.x - kTile;
      const double y = (red[1][0][cc] + red[1][1][cc]) + (red[1][2][cc] + red[1][3][cc]);
      if (ry + cc < m) partial[(b * tiles + X) * n + first + ry + cc] = y;
    }
  }
}

// Step 3 for column i: the blocks' shares of s1, s2 summed (rank order), then per row.
template <class T>
__device__ void finish_w_step(const Cta &c, CtaShared &sh, int64_t n, int64_t i, int64_t p, const T *V, T *W,
                              const double *S, const double *partial, int64_t tiles, const T *tau) {
  const int64_t b = c.b, k = i - p;
  const T *v = V + b * n * kNb;
  T *w = W + b * n * kNb;
  if (threadIdx.x < 2 * k) {
    const int64_t q = threadIdx.x < k ? threadIdx.x : kNb + threadIdx.x - k;
    double t = 0;
    for (int r = 0; r < c.C; ++r) t += S[(b * kMaxCta + r) * 2 * kNb + q];
    (threadIdx.x < k ? sh.s1[q] : sh.s2[q - kNb]) = t;
  }
  __syncthreads();
  const double t = double(tau[b * n + i]);
  double dot = 0;
  SYMOC_CTA_ROWS(c, i + 1, n, r) {
    const double y = partial_sum(partial + b * tiles * n + r, n, tiles) - panel_dot(v, w, r, n, k, sh.s1, sh.s2);
    const double wr = t * y;
    w[r + k * n] = T(wr);
    dot += wr * double(v[r + k * n]);
  }
  dot = cta_sum(c, block_sum(dot, sh.red), &sh.dot);
  const double a2 = -0.5 * t * dot;
  SYMOC_CTA_ROWS(c, p, n, r) {
    if (r <= i) w[r + k * n] = T(0);
    else w[r + k * n] = T(double(w[r + k * n]) + a2 * double(v[r + k * n]));
  }
}

// Steps 3 of column i - 1 (when it is in this panel) and 1 of column i in one launch: the W
// column the update of column i needs is finished first (a cluster barrier between: row i of
// it comes from another block).
template <class T>
__global__ void __launch_bounds__(kSmallThreads)
    finish_and_column_kernel(T *A, int64_t n, int64_t i, int64_t p, T *V, T *W, double *S, const double *partial,
                             int64_t tiles, T *d, T *off, T *tau) {
  __shared__ CtaShared sh;
  const Cta c = this_cta();
  if (i > p) {
    finish_w_step<T>(c, sh, n, i - 1, p, V, W, S, partial, tiles, tau);
    cta_sync(c);
  }
  column_step<T>(c, sh, A, n, i, p, V, W, S, d, off, tau);
}
// Step 3 of a panel's last column.
template <class T>
__global__ void __launch_bounds__(kSmallThreads)
    finish_w_kernel(int64_t n, int64_t i, int64_t p, const T *V, T *W, const double *S, const double *partial,
                    int64_t tiles, const T *tau) {
  __shared__ CtaShared sh;
  const Cta c = this_cta();
  finish_w_step<T>(c, sh, n, i, p, V, W, S, partial, tiles, tau);
  cta_sync(c); // no block leaves while others may read its shared sum
}

// Launches a step kernel on C blocks per matrix (a CTA cluster when C > 1).
template <class... P, class... A>
void launch_cta(void (*kernel)(P...), int C, int64_t batch, int threads, cudaStream_t s, const char *what, A... args) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(unsigned(C), unsigned(batch));
  cfg.blockDim = dim3(unsigned(threads));
  cfg.stream = s;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeClusterDimension;
  attr[0].val.clusterDim.x = unsigned(C), attr[0].val.clusterDim.y = 1, attr[0].val.clusterDim.z = 1;
  cfg.attrs = attr, cfg.numAttrs = C > 1 ? 1 : 0;
  check(cudaLaunchKernelEx(&cfg, kernel, P(args)...), what);
}

// The trailing update's operands in one product: P = [V W], Q = [W V] (rows q.. of the panel's
// kb columns each, ld n, 2 kNb columns a matrix), so A -= V W^T + W V^T is A -= P Q^T, one pass
// over the trailing matrix instead of two.
template <class T>
__global__ void pack_vw_kernel(const T *V, const T *W, int64_t n, int64_t q, int64_t kb, T *P, T *Q, int64_t batch) {
  const int64_t r = q + int64_t(blockIdx.x) * blockDim.x + threadIdx.x, c = blockIdx.y;
  if (r >= n) return;
  for (int64_t b = blockIdx.z; b < batch; b += gridDim.z) {
    const T v = V[b * n * kNb + c * n + r], w = W[b * n * kNb + c * n + r];
    T *p = P + b * n * 2 * kNb, *qq = Q + b * n * 2 * kNb;
    p[c * n + r] = v, p[(kb + c) * n + r] = w;
    qq[c * n + r] = w, qq[(kb + c) * n + r] = v;
  }
}

template <class T> __global__ void last_diagonal_kernel(const T *A, int64_t n, T *d, int64_t batch) {
  const int64_t b = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (b < batch) d[b * n + n - 1] = A[b * n * n + (n - 1) * n + (n - 1)];
}

// Back-transformation, panel of kb reflectors p .. p+kb-1: Y (m x kb, m = n - p, ld n) holds
// their vectors from row p on (explicit unit, zeros above it). The reflectors act on rows
// p + 1 on; Y's zero row p adds nothing to the products but starts them at row p, a multiple
// of kBt: from row p + 1, Z was misaligned and cuBLAS took its align-1 SIMT kernels.
template <class T> __global__ void build_y_kernel(const T *A, int64_t n, int64_t p, int64_t kb, T *Y, int64_t batch) {
  const int64_t m = n - p, rr = int64_t(blockIdx.x) * blockDim.x + threadIdx.x, c = blockIdx.y;
  if (rr >= m) return;
  const int64_t r = p + rr, j = p + c; // row of the matrix, reflector index
  for (int64_t b = blockIdx.z; b < batch; b += gridDim.z) {
    const T x = r < j + 1 ? T(0) : r == j + 1 ? T(1) : A[b * n * n + j * n + r];
    Y[b * n * kBt + c * n + rr] = x;
  }
}

// The panel's T (kb x kb upper triangular, ld kBt) with H_p ... H_{p+kb-1} = I - Y T Y^T from
// G = Y^T Y: T(c, c) = tau_c, T(0:c, c) = -tau_c T(0:c, 0:c) G(0:c, c) (LAPACK ?larft, forward,
// columnwise). One block per matrix, a thread per row; in double.
template <class T> __global__ void build_t_kernel(const T *G, const T *tau, int64_t n, int64_t p, int64_t kb, T *Tm) {
  const int64_t b = blockIdx.x;
  const T *g = G + b * kBt * kBt;
  T *t = Tm + b * kBt * kBt; // column-major, ld kBt; its finished columns are read back
  const int r = threadIdx.x;
  for (int c = 0; c < kBt; ++c) {
    if (c >= kb) { // outside the panel: zero
      t[c * kBt + r] = T(0);
      continue;
    }
    const double tc = double(tau[b * n + p + c]);
    double acc = 0;
    if (r < c)
      for (int j = r; j < c; ++j) acc += double(t[j * kBt + r]) * double(g[c * kBt + j]);
    t[c * kBt + r] = r < c ? T(-tc * acc) : r == c ? T(tc) : T(0);
    __syncthreads(); // column c is read by the next columns' sums
  }
}

int64_t tiles_for(int64_t m) { return std::max<int64_t>(1, (m + kTile - 1) / kTile); }

// Blocks per matrix of the column steps: kMaxCta from n = 1024 on, else one (H100, session 34:
// 24 x 3072 sytrd 414 ms on one block, 343 on 8; 12 x 2304 152 / 118; 60 x 768 30.3 on one,
// 32.0 on two: the cluster barriers cost more than the rows save); SYMOC_CUDA_SYTRD_CTA=C
// forces C (1: one block a matrix).
// One block whatever is asked where clusters cannot run: a device without cluster launch
// (before sm_90), or kernels compiled from PTX older than sm_90 (their cluster instructions are
// compiled out, SYMOC_NO_CLUSTERS; a compute_80 PTX JIT-compiled on an H100 is such a case).
template <class T> int sytrd_cta_blocks(int64_t n) {
  const int64_t forced = symoc::rt::cuda::detail::env_whole("SYMOC_CUDA_SYTRD_CTA", 0, 0, kMaxCta,
                                                           "blocks per matrix of the tridiagonal reduction's column steps (0: by size)");
  int dev = 0, clusters = 0;
  check(cudaGetDevice(&dev), "cudaGetDevice");
  check(cudaDeviceGetAttribute(&clusters, cudaDevAttrClusterLaunch, dev), "cudaDeviceGetAttribute");
  static const int ptx = [] { // the kernels' PTX architecture, one query a process
    cudaFuncAttributes fa{};
    check(cudaFuncGetAttributes(&fa, finish_and_column_kernel<T>), "cudaFuncGetAttributes");
    return fa.ptxVersion;
  }();
  if (!clusters || ptx < 90) return 1;
  if (forced > 0) return int(forced);
  return n >= 1024 ? kMaxCta : 1;
}
// Threads of those blocks: a row each (at least 64: s1 and s2 take 2 kNb threads).
int sytrd_cta_threads(int64_t n, int C) {
  const int64_t rows = (n + C - 1) / C;
  return int(std::clamp<int64_t>((rows + 31) / 32 * 32, 64, kSmallThreads));
}
unsigned grid_z(int64_t batch) { return unsigned(std::min<int64_t>(batch, 65535)); }

} // namespace

template <class T> size_t sytrd_workspace(int64_t n, int64_t batch) {
  Carver c;
  c.take<T>(size_t(batch * n * kNb)); // V
  c.take<T>(size_t(batch * n * kNb)); // W
  c.take<double>(size_t(batch * kMaxCta * 2 * kNb));
  c.take<double>(size_t(batch * tiles_for(n) * n));
  c.take<T>(size_t(batch * n * 2 * kNb) * 2); // P, Q
  return c.used();
}

template <class T>
void sytrd_batched(Engine::Impl &e, T *A, int64_t n, int64_t batch, T *d, T *off, T *tau, void *work, cudaStream_t s) {
  if (n == 0 || batch == 0) return;
  if (n > INT_MAX / 2) fail("sytrd", "n " + std::to_string(n) + " too large");
  if (batch > 65535) fail("sytrd", "batch " + std::to_string(batch) + " above 65535 (the column steps' grid rows)");
  Carver c(work);
  T *V = c.take<T>(size_t(batch * n * kNb)), *W = c.take<T>(size_t(batch * n * kNb));
  double *S = c.take<double>(size_t(batch * kMaxCta * 2 * kNb));
  double *partial = c.take<double>(size_t(batch * tiles_for(n) * n));
  T *P = c.take<T>(size_t(batch * n * 2 * kNb) * 2), *Q = P + batch * n * 2 * kNb;
  const unsigned tiles = unsigned((n + 31) / 32);
  symmetrize_kernel<T><<<dim3(tiles, tiles, grid_z(batch)), dim3(32, 8), 0, s>>>(A, n, batch);
  check_launch("sytrd symmetrize");
  e.bind(s);
  const int C = sytrd_cta_blocks<T>(n), threads = sytrd_cta_threads(n, C);
  for (int64_t p = 0; p < n - 1; p += kNb) {
    const int64_t kb = std::min<int64_t>(kNb, n - 1 - p);
    for (int64_t k = 0; k < kb; ++k) {
      const int64_t i = p + k, m = n - i - 1, tiles = tiles_for(m), prev_tiles = tiles_for(m + 1);
      launch_cta(finish_and_column_kernel<T>, C, batch, threads, s, "sytrd column", A, n, i, p, V, W, S,
                 (const double *)partial, prev_tiles, d, off, tau);
      const dim3 pairs(unsigned(tiles * (tiles + 1) / 2), grid_z(batch));
      symv_tiles_kernel<T><<<pairs, kSymvThreads, 0, s>>>(A, n, i, k, V, partial, tiles, batch);
      check_launch("sytrd symv");
    }
    {
      const int64_t i = p + kb - 1;
      launch_cta(finish_w_kernel<T>, C, batch, threads, s, "sytrd w", n, i, p, (const T *)V, W, (const double *)S,
                 (const double *)partial, tiles_for(n - i - 1), (const T *)tau);
    }
    const int64_t q = p + kb, m = n - q;
    if (m <= 0) continue;
    const T minus = T(-1), one = T(1);
    // A(q:, q:) -= V W^T + W V^T = [V W] [W V]^T (rows q..), one product with 2 kb terms.
    pack_vw_kernel<T><<<dim3(unsigned((m + 255) / 256), unsigned(kb), grid_z(batch)), 256, 0, s>>>(V, W, n, q, kb, P, Q,
                                                                                                  batch);
    check_launch("sytrd pack V W");
    check(cublas_gemm_sb(e.blas, CUBLAS_OP_N, CUBLAS_OP_T, int(m), int(m), int(2 * kb), &minus, P + q, int(n), n * 2 * kNb,
                  Q + q, int(n), n * 2 * kNb, &one, A + q * n + q, int(n), n * n, int(batch)),
          "sytrd trailing update");
  }
  last_diagonal_kernel<T><<<unsigned((batch + 255) / 256), 256, 0, s>>>(A, n, d, batch);
  check_launch("sytrd last diagonal");
}

template <class T> size_t sytrd_apply_q_workspace(int64_t n, int64_t batch) {
  Carver c;
  c.take<T>(size_t(batch * n * kBt));       // Y
  c.take<T>(size_t(batch * kBt * kBt) * 2); // G, T
  c.take<T>(size_t(batch * kBt * n) * 2);   // Y^T Z, T Y^T Z
  return c.used();
}

// Z <- Q Z = H_0 (H_1 (... Z)): panels of kBt reflectors from the last, each
// Z(p:, :) -= Y (T (Y^T Z(p:, :))) in three strided-batched GEMMs (Y's row p is zero).
template <class T>
void sytrd_apply_q(Engine::Impl &e, const T *A, const T *tau, int64_t n, int64_t batch, T *Z, void *work, cudaStream_t s) {
  if (n < 2 || batch == 0) return;
  Carver c(work);
  T *Y = c.take<T>(size_t(batch * n * kBt)), *G = c.take<T>(size_t(batch * kBt * kBt) * 2), *Tm = G + batch * kBt * kBt;
  T *X = c.take<T>(size_t(batch * kBt * n) * 2), *X2 = X + batch * kBt * n;
  e.bind(s);
  const T one = T(1), zero = T(0), minus = T(-1);
  const int N = int(n), B = int(batch);
  const int64_t last = n - 2; // reflectors 0 .. n-2
  for (int64_t p = (last / kBt) * kBt; p >= 0; p -= kBt) {
    const int64_t kb = std::min<int64_t>(kBt, last + 1 - p), m = n - p;
    build_y_kernel<T><<<dim3(unsigned((m + 255) / 256), unsigned(kb), grid_z(batch)), 256, 0, s>>>(A, n, p, kb, Y, batch);
    check_launch("sytrd apply_q Y");
    check(cublas_gemm_sb(e.blas, CUBLAS_OP_T, CUBLAS_OP_N, int(kb), int(kb), int(m), &one, Y, N, n * kBt, Y, N, n * kBt, &zero, G,
                  kBt, kBt * kBt, B),
          "sytrd apply_q Y^T Y");
    build_t_kernel<T><<<unsigned(batch), kBt, 0, s>>>(G, tau, n, p, kb, Tm);
    check_launch("sytrd apply_q T");
    check(cublas_gemm_sb(e.blas, CUBLAS_OP_T, CUBLAS_OP_N, int(kb), N, int(m), &one, Y, N, n * kBt, Z + p, N, n * n, &zero, X,
                  kBt, kBt * n, B),
          "sytrd apply_q Y^T Z");
    check(cublas_gemm_sb(e.blas, CUBLAS_OP_N, CUBLAS_OP_N, int(kb), N, int(kb), &one, Tm, kBt, kBt * kBt, X, kBt, kBt * n, &zero,
                  X2, kBt, kBt * n, B),
          "sytrd apply_q T X");
    check(cublas_gemm_sb(e.blas, CUBLAS_OP_N, CUBLAS_OP_N, int(m), N, int(kb), &minus, Y, N, n * kBt, X2, kBt, kBt * n, &one,
                  Z + p, N, n * n, B),
          "sytrd apply_q Z update");
  }
}

template size_t sytrd_apply_q_workspace<float>(int64_t, int64_t);
template size_t sytrd_apply_q_workspace<double>(int64_t, int64_t);
template void sytrd_apply_q<float>(Engine::Impl &, const float *, const float *, int64_t, int64_t, float *, void *,
                                   cudaStream_t);
template void sytrd_apply_q<double>(Engine::Impl &, const double *, const double *, int64_t, int64_t, double *, void *,
                                    cudaStream_t);
template size_t sytrd_workspace<float>(int64_t, int64_t);
template size_t sytrd_workspace<double>(int64_t, int64_t);
template void sytrd_batched<float>(Engine::Impl &, float *, int64_t, int64_t, float *, float *, float *, void *, cudaStream_t);
template void sytrd_batched<double>(Engine::Impl &, double *, int64_t, int64_t, double *, double *, double *, void *,
                                    cudaStream_t);

} // namespace symoc::cuda::detail
