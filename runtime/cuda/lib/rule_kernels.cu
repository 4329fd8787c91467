// Kernels of the matrix rules. Built with --fmad=false like kernels.cu: the elementwise
// expressions are the CPU rules' (optim.cpp, symo.cpp, gauge.cpp) in the same order.
#include "rule_kernels.h"
#include "tf32x3_split.h"

#include <cuda_bf16.h>

namespace symoc::rt::cuda::detail {
namespace {

__device__ __forceinline__ float ldv(const void *p, bool bf, int64_t i) {
  return bf ? __uint_as_float(uint32_t(static_cast<const uint16_t *>(p)[i]) << 16) : static_cast<const float *>(p)[i];
}
__device__ __forceinline__ void stv(void *p, bool bf, int64_t i, float v) {
  if (bf) static_cast<uint16_t *>(p)[i] = __bfloat16_as_ushort(__float2bfloat16_rn(v));
  else static_cast<float *>(p)[i] = v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets it.
__device__ double block_sum(double v) {
  __shared__ double part[32];
  for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads();
  if (lane == 0) part[warp] = v;
  __syncthreads();
  double s = 0;
  const int nw = (blockDim.x + 31) >> 5;
  for (int k = 0; k < nw; ++k) s += part[k];
  return s;
}

__global__ void prep_kernel(const __grid_constant__ StepArgs a, const Chunk *chunks, const Slot *slots, Counters c,
                            PrepCfg cfg) {
  const Chunk ch = chunks[blockIdx.x];
  if (!a.active[ch.slot]) return;
  const Slot s = slots[ch.slot];
  const int64_t end = ch.off + ch.len;
  const PrepMode mode = PrepMode(cfg.mode);
  float *out = mode == PrepMode::Adam ? s.d : s.u;
  if (c.flag[s.block]) { // the block is skipped: state untouched, a harmless input
    for (int64_t j = ch.off + threadIdx.x; j < end; j += blockDim.x) {
      out[j] = 0.f;
      if (cfg.stage_g) s.d[j] = 0.f;
      if (mode == PrepMode::CopySplit) s.s0[j] = 0.f;
    }
    return;
  }
  const void *g = a.g[ch.slot];
  const void *w = a.w[ch.slot];
  const bool gb = a.gbf16[ch.slot], wb = a.wbf16[ch.slot];
  float *M = s.s0, *V = s.s1;
  const float beta = cfg.beta;
  const double t = double(c.t[s.block] + 1);
  switch (mode) {
  case PrepMode::Lerp: {
    const float wgt = 1.f - beta;
    for (int64_t j = ch.off + threadIdx.x; j < end; j += blockDim.x) {
      const float gj = ldv(g, gb, j);
      const float m = M[j] + wgt * (gj - M[j]);
      M[j] = m;
      out[j] = cfg.nesterov ? gj + beta * (m - gj) : m;
    }
    break;
  }
  case PrepMode::Ema: {
    for (int64_t j = ch.off + threadIdx.x; j < end; j += blockDim.x) {
      const float gj = ldv(g, gb, j);
      const float m = beta * M[j] + (1.f - beta) * gj;
      M[j] = m;
      out[j] = cfg.nesterov ? gj + beta * (m - gj) : m;
    }
    break;
  }
  case PrepMode::EmaBc: {
    const float bc1 = float(1.0 - pow(double(beta), t));
    for (int64_t j = ch.off + threadIdx.x; j < end; j += blockDim.x) {
      const float gj = ldv(g, gb, j);
      const float m = beta * M[j] + (1.f - beta) * gj;
      M[j] = m;
      out[j] = m / bc1;
      if (cfg.stage_g) s.d[j] = gj;
    }
    break;
  }
  case PrepMode::Copy:
    for (int64_t j = ch.off + threadIdx.x; j < end; j += blockDim.x) out[j] = ldv(g, gb, j);
    break;
  case PrepMode::CopySplit:
    for (int64_t j = ch.off + threadIdx.x; j < end; j += blockDim.x)
      symoc::cuda::detail::tf32_split(ldv(g, gb, j), out[j], M[j]);
    break;
  case PrepMode::Adam: {
    const float inv_bc1 = float(1.0 / (1.0 - pow(double(beta), t)));
    const float inv_sqrt_bc2 = float(1.0 / sqrt(1.0 - pow(double(cfg.b2), t)));
    const float b1 = beta, b2 = cfg.b2, ob1 = 1.f - b1, ob2 = 1.f - b2;
    for (int64_t j = ch.off + threadIdx.x; j < end; j += blockDim.x) {
      const float gj = ldv(g, gb, j) + cfg.l2 * ldv(w, wb, j);
      const float mj = M[j] * b1 + gj * ob1;
      const float vj = V[j] * b2 + gj * gj * ob2;
      M[j] = mj, V[j] = vj;
      out[j] = mj * inv_bc1 / (sqrtf(vj) * inv_sqrt_bc2 + cfg.eps);
    }
    break;
  }
  }
}

__global__ void apply_kernel(const __grid_constant__ StepArgs a, const Chunk *chunks, const Slot *slots, Counters c,
                             float wd) {
  const Chunk ch = chunks[blockIdx.x];
  if (!a.active[ch.slot]) return;
  const Slot s = slots[ch.slot];
  if (c.flag[s.block]) return;
  void *w = a.w[ch.slot];
  const bool wb = a.wbf16[ch.slot];
  const float lr = slot_lr(a, ch.slot), decay = 1.f - lr * wd;
  for (int64_t j = ch.off + threadIdx.x; j < ch.off + ch.len; j += blockDim.x)
    stv(w, wb, j, ldv(w, wb, j) * decay - lr * s.d[j]);
}

// A transposed piece (sr == 1: the piece runs down P's rows) in 32 x 32 tiles through shared
// memory, so that the piece (along r) and P (along j) are both read and written contiguously.
// blockDim.x a multiple of 32: lane tx, warp ty.
__device__ void pack_transposed(const PackEntry &e, int64_t rows, int64_t cols, float *p, int unpack, float s1,
                                float s2) {
  __shared__ float tile[32][33];
  const int tx = int(threadIdx.x & 31), ty = int(threadIdx.x >> 5), nty = int(blockDim.x >> 5);
  const int64_t tr = (rows + 31) / 32, tj = (e.ncols + 31) / 32;
  for (int64_t t = blockIdx.x; t < tr * tj; t += gridDim.x) {
    const int64_t r0 = (t % tr) * 32, j0 = (t / tr) * 32;
    if (!unpack) {
      for (int jj = ty; jj < 32; jj += nty)
        if (r0 + tx < rows && j0 + jj < e.ncols) tile[jj][tx] = e.ptr[(r0 + tx) + (j0 + jj) * e.sc];
      __syncthreads();
      for (int rr = ty; rr < 32; rr += nty)
        if (r0 + rr < rows && j0 + tx < e.ncols) p[(r0 + rr) * cols + j0 + tx] = tile[tx][rr];
    } else {
      for (int rr = ty; rr < 32; rr += nty)
        if (r0 + rr < rows && j0 + tx < e.ncols) tile[tx][rr] = p[(r0 + rr) * cols + j0 + tx];
      __syncthreads();
      for (int jj = ty; jj < 32; jj += nty)
        if (r0 + tx < rows && j0 + jj < e.ncols) e.ptr[(r0 + tx) + (j0 + jj) * e.sc] = (tile[jj][tx] * s1) * s2;
    }
    __syncthreads();
  }
}


// NorMuon's per-line statistics (optim.cpp's neuron_normalize) of slot blockIdx.y's direction
// D = scale * O: per line k, v_k <- lerp(v_k, mean O_k^2, 1 - beta2) into Slot::s1, and into
// sq[slot]: O_k's sum of squares (first max_lines) and 1 / (sqrt(v_k) + eps) (next max_lines).
// Rows: one warp per row (8 per CTA); columns: one thread per column (256 per CTA).
__global__ void line_stats_kernel(const __grid_constant__ StepArgs a, const Slot *slots, Counters c, int axis,
                                  int64_t head_rows, float beta2, float eps, int64_t max_lines, double *sq) {
  const int sl = blockIdx.y;
  if (!a.active[sl]) return;
  const Slot s = slots[sl];
  if (c.flag[s.block]) return;
  const int64_t lines = axis == 0 ? s.rows : s.cols, len = axis == 0 ? s.cols : s.rows;
  const int64_t sub = head_rows > 0 ? head_rows : s.rows;
  const float scale = float(sqrt(fmax(1.0, double(sub) / double(s.cols)))); // Muon's, as the polar group's
  double acc = 0;
  int64_t k;
  if (axis == 0) {
    const int lane = threadIdx.x & 31;
    k = int64_t(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (k < lines)
      for (int64_t j = lane; j < len; j += 32) {
        const double x = s.d[k * s.cols + j];
        acc += x * x;
      }
    for (int o = 16; o > 0; o >>= 1) acc += __shfl_down_sync(0xffffffffu, acc, o);
    if (lane != 0 || k >= lines) return;
  } else {
    k = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (k >= lines) return;
    for (int64_t i = 0; i < len; ++i) {
      const double x = s.d[i * s.cols + k];
      acc += x * x;
    }
  }
  acc /= double(scale) * double(scale);
  float *v = s.s1;
  const float mean = float(acc / double(len));
  const float vk = v[k] + (1.f - beta2) * (mean - v[k]);
  v[k] = vk;
  double *o = sq + int64_t(sl) * 2 * max_lines;
  o[k] = acc;
  o[max_lines + k] = 1.0 / (double(sqrtf(vk)) + double(eps));
}

// D_k *= inv_k * keep, keep = |O|_F / (|O'|_F + eps) from the line statistics (every CTA of a
// slot sums them in the same fixed order).
__global__ void line_scale_kernel(const __grid_constant__ StepArgs a, const Chunk *chunks, const Slot *slots,
                                  Counters c, int axis, float eps, int64_t max_lines, const double *sq) {
  const Chunk ch = chunks[blockIdx.x];
  if (!a.active[ch.slot]) return;
  const Slot s = slots[ch.slot];
  if (c.flag[s.block]) return;
  const int64_t lines = axis == 0 ? s.rows : s.cols;
  const double *q = sq + int64_t(ch.slot) * 2 * max_lines, *inv = q + max_lines;
  double before = 0, after = 0;
  for (int64_t k = threadIdx.x; k < lines; k += blockDim.x) before += q[k], after += q[k] * inv[k] * inv[k];
  before = block_sum(before);
  after = block_sum(after);
  const double keep = sqrt(before) / (sqrt(after) + double(eps));
  for (int64_t j = ch.off + threadIdx.x; j < ch.off + ch.len; j += blockDim.x) {
    const int64_t k = axis == 0 ? j / s.cols : j % s.cols;
    s.d[j] = float(double(s.d[j]) * (inv[k] * keep));
  }
}

// The kernels below take one matrix (entry) per blockIdx.y and loop over the rest: a launch
// covers n of them with gridDim.y = min(n, kMaxGridY) (Symo's Z2 runs give n = blocks x side
// length, which can pass CUDA's 65535 limit on gridDim.y).
__global__ void pack_kernel(const PackEntry *entries, int n, int64_t rows, int64_t cols, float *P, int unpack, float s1,
                            float s2, int legacy) {
  for (int y = blockIdx.y; y < n; y += gridDim.y) { // uniform over the block: __syncthreads inside
    const PackEntry e = entries[y];
    const int64_t total = rows * e.ncols;
    float *p = P + e.e * rows * cols + e.col0;
    if (!legacy && e.sr == 1 && e.sc != 1) {
      pack_transposed(e, rows, cols, p, unpack, s1, s2);
      continue;
    }
    if (!legacy && e.sc == 1) { // a row piece: one warp per row, lanes along it (no index division)
      const int lane = int(threadIdx.x & 31), nw = int(blockDim.x >> 5);
      for (int64_t r = int64_t(blockIdx.x) * nw + (threadIdx.x >> 5); r < rows; r += int64_t(gridDim.x) * nw) {
        float *src = e.ptr + r * e.sr, *dst = p + r * cols;
        for (int64_t j = lane; j < e.ncols; j += 32) {
          if (unpack) src[j] = (dst[j] * s1) * s2;
          else dst[j] = src[j];
        }
      }
      continue;
    }
    // Walk in the source's contiguous order: along rows when sc == 1, else down columns.
    const bool by_row = e.sc == 1;
    for (int64_t k = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; k < total; k += int64_t(gridDim.x) * blockDim.x) {
      const int64_t r = by_row ? k / e.ncols : k % rows, j = by_row ? k % e.ncols : k / rows;
      float *src = e.ptr + r * e.sr + j * e.sc;
      if (unpack) *src = (p[r * cols + j] * s1) * s2;
      else p[r * cols + j] = *src;
    }
  }
}

__global__ void bias_scale_kernel(const Slot *slots, Counters c, const float *C, float *H, int n, int per, int np,
                                  int64_t len, float beta2) {
  for (int i = blockIdx.y; i < n; i += gridDim.y) {
    const double t = double(c.t[slots[(i / per) * np].block] + 1);
    const double bc = 1.0 - pow(double(beta2), t);
    for (int64_t k = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; k < len; k += int64_t(gridDim.x) * blockDim.x)
      H[int64_t(i) * len + k] = float(double(C[int64_t(i) * len + k]) / bc);
  }
}

__global__ void add_rows_kernel(float *Q, const float *v, int n, int64_t rows, int64_t cols) {
  const int64_t total = rows * cols;
  for (int64_t e = blockIdx.y; e < n; e += gridDim.y)
    for (int64_t k = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; k < total; k += int64_t(gridDim.x) * blockDim.x)
      Q[e * total + k] += v[e * cols + k % cols];
}

__global__ void center_keep_kernel(float *P, float *mu, int n, int64_t rows, int64_t cols) {
  const int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= cols) return;
  for (int64_t e = blockIdx.y; e < n; e += gridDim.y) {
    float *p = P + e * rows * cols + j;
    double s = 0;
    for (int64_t i = 0; i < rows; ++i) s += p[i * cols];
    const float m = float(s / double(rows));
    mu[e * cols + j] = m;
    for (int64_t i = 0; i < rows; ++i) p[i * cols] = p[i * cols] - m;
  }
}

__global__ void s_fix_kernel(float *Q, const float *mu, int n, int64_t rows, int64_t cols, float s1, float eps,
                             int zero) {
  const int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  for (int64_t e = blockIdx.y; e < n; e += gridDim.y) { // uniform over the block: block_sum inside
    const float *m = mu + e * cols;
    double acc = 0;
    for (int64_t k = threadIdx.x; k < cols; k += blockDim.x) acc += double(m[k]) * m[k];
    const double m2 = block_sum(acc);
    if (j >= cols) continue;
    const double h = double(rows) * m2, scale = h > 0 ? 1.0 / sqrt(h + double(eps)) : 0.0;
    float *q = Q + e * rows * cols + j;
    double cm = 0;
    for (int64_t i = 0; i < rows; ++i) {
      const float v = zero ? 0.f : q[i * cols] * s1;
      q[i * cols] = v;
      cm += v;
    }
    cm /= double(rows);
    const float add = float(double(m[j]) * scale - cm);
    for (int64_t i = 0; i < rows; ++i) q[i * cols] += add;
  }
}

// The coalesced S-run kernels: a kTile x kLanes block per kTile columns of one matrix,
// threadIdx.x the column, threadIdx.y one of kLanes row lanes (rows y, y + kLanes, ...).
constexpr int kTile = 32, kLanes = 32;

// Per column: the sum of v over the row lanes, in lane order (every thread gets its column's).
__device__ double lane_sum(double v, double (&part)[kLanes][kTile + 1]) {
  part[threadIdx.y][threadIdx.x] = v;
  __syncthreads();
  double s = 0;
  for (int k = 0; k < kLanes; ++k) s += part[k][threadIdx.x];
  __syncthreads();
  return s;
}
// The sum of v over the whole block (xor butterfly per warp: every lane holds the same bits).
__device__ double block_total(double v, double (&part)[kLanes]) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  if (threadIdx.x == 0) part[threadIdx.y] = v;
  __syncthreads();
  double s = 0;
  for (int k = 0; k < kLanes; ++k) s += part[k];
  __syncthreads();
  return s;
}

__global__ void center_keep_tiled(float *P, float *mu, int n, int64_t rows, int64_t cols) {
  __shared__ double part[kLanes][kTile + 1];
  const int64_t j = int64_t(blockIdx.x) * kTile + threadIdx.x;
  const bool in = j < cols;
  for (int64_t e = blockIdx.y; e < n; e += gridDim.y) { // uniform over the block: lane_sum syncs
    float *p = P + e * rows * cols + j;
    double s = 0;
    if (in)
      for (int64_t i = threadIdx.y; i < rows; i += kLanes) s += p[i * cols];
    const float m = float(lane_sum(s, part) / double(rows));
    if (!in) continue;
    if (threadIdx.y == 0) mu[e * cols + j] = m;
    for (int64_t i = threadIdx.y; i < rows; i += kLanes) p[i * cols] = p[i * cols] - m;
  }
}

// s_fix_kernel's arithmetic (v = Q s1 in float, column mean in double, Q = v + add in float)
// with the two write passes fused into one.
__global__ void s_fix_tiled(float *Q, const float *mu, int n, int64_t rows, int64_t cols, float s1, float eps,
                            int zero) {
  __shared__ double part[kLanes][kTile + 1];
  __shared__ double tot[kLanes];
  const int64_t j = int64_t(blockIdx.x) * kTile + threadIdx.x;
  const bool in = j < cols;
  for (int64_t e = blockIdx.y; e < n; e += gridDim.y) { // uniform over the block: the sums sync
    const float *m = mu + e * cols;
    double acc = 0;
    for (int64_t k = int64_t(threadIdx.y) * kTile + threadIdx.x; k < cols; k += kTile * kLanes)
      acc += double(m[k]) * m[k];
    const double m2 = block_total(acc, tot);
    const double h = double(rows) * m2, scale = h > 0 ? 1.0 / sqrt(h + double(eps)) : 0.0;
    float *q = Q + e * rows * cols + j;
    double cm = 0;
    if (in)
      for (int64_t i = threadIdx.y; i < rows; i += kLanes) cm += zero ? 0.f : q[i * cols] * s1;
    cm = lane_sum(cm, part) / double(rows);
    if (!in) continue;
    const float add = float(double(m[j]) * scale - cm);
    for (int64_t i = threadIdx.y; i < rows; i += kLanes) {
      const float v = zero ? 0.f : q[i * cols] * s1;
      q[i * cols] = v + add;
    }
  }
}

__global__ void masked_axpby_kernel(const __grid_constant__ MaskArgs m, const Slot *slots, Counters c, float *dst,
                                    const float *src, int n, int64_t len, float beta, int copy, int per, int np) {
  for (int i = blockIdx.y; i < n; i += gridDim.y) {
    const int sl = (i / per) * np;
    if (!m.on[sl] || c.flag[slots[sl].block]) continue;
    float *d = dst + int64_t(i) * len;
    const float *s = src + int64_t(i) * len;
    for (int64_t k = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; k < len; k += int64_t(gridDim.x) * blockDim.x)
      d[k] = copy ? s[k] : beta * d[k] + s[k];
  }
}

// Tile pairs (ti, tj), ti >= tj, as gram()'s add_transpose: Z_ij + Z_ji summed once per pair.
__global__ void masked_sym_accumulate_kernel(const __grid_constant__ MaskArgs m, const Slot *slots, Counters c,
                                             float *dst, const float *Z, int n, int64_t k, float beta) {
  __shared__ float lower[32][33], upper[32][33];
  const int64_t ti = blockIdx.y, tj = blockIdx.x;
  if (tj > ti) return;
  for (int i = blockIdx.z; i < n; i += gridDim.z) {
    if (!m.on[i] || c.flag[slots[i].block]) continue; // the same for the whole block
    const float *z = Z + int64_t(i) * k * k;
    float *d = dst + int64_t(i) * k * k;
    __syncthreads(); // the previous matrix's tiles are read
    for (int r = threadIdx.y; r < 32; r += blockDim.y) {
      const int64_t li = ti * 32 + r, lj = tj * 32 + threadIdx.x, ui = tj * 32 + r, uj = ti * 32 + threadIdx.x;
      if (li < k && lj < k) lower[r][threadIdx.x] = z[li * k + lj];
      if (ui < k && uj < k) upper[r][threadIdx.x] = z[ui * k + uj];
    }
    __syncthreads();
    for (int r = threadIdx.y; r < 32; r += blockDim.y) {
      const int64_t li = ti * 32 + r, lj = tj * 32 + threadIdx.x, ui = tj * 32 + r, uj = ti * 32 + threadIdx.x;
      if (li < k && lj < k) d[li * k + lj] = beta * d[li * k + lj] + (lower[r][threadIdx.x] + upper[threadIdx.x][r]);
      if (ti != tj && ui < k && uj < k)
        d[ui * k + uj] = beta * d[ui * k + uj] + (upper[r][threadIdx.x] + lower[threadIdx.x][r]);
    }
  }
}

__global__ void masked_split_kernel(const __grid_constant__ MaskArgs m, const Slot *slots, Counters c, float *hi,
                                    float *lo, const float *src, int n, int64_t len) {
  for (int i = blockIdx.y; i < n; i += gridDim.y) {
    if (!m.on[i] || c.flag[slots[i].block]) continue;
    const int64_t o = int64_t(i) * len;
    for (int64_t k = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; k < len; k += int64_t(gridDim.x) * blockDim.x)
      symoc::cuda::detail::tf32_split(src[o + k], hi[o + k], lo[o + k]);
  }
}

__global__ void gauge_rescale_kernel(const __grid_constant__ StepArgs a, const Slot *slots, Counters c, int np,
                                     int ia, int ib, int ic) {
  const int64_t u = blockIdx.x;
  const int blk = blockIdx.y, sa = blk * np + ia;
  if (!a.active[sa] || c.flag[slots[sa].block]) return;
  const Slot in = slots[sa];
  const void *Win = a.w[sa];
  const bool inb = a.wbf16[sa];
  double dot = 0, nn = 0;
  for (int64_t j = threadIdx.x; j < in.cols; j += blockDim.x) {
    const double wv = ldv(Win, inb, u * in.cols + j);
    dot += double(in.d[u * in.cols + j]) * wv, nn += wv * wv;
  }
  if (ib >= 0 && threadIdx.x == 0) {
    const int sb = blk * np + ib;
    const double wv = ldv(a.w[sb], a.wbf16[sb], u);
    dot += double(slots[sb].d[u]) * wv, nn += wv * wv;
  }
  if (ic >= 0) {
    const int sc = blk * np + ic;
    const Slot out = slots[sc];
    for (int64_t k = threadIdx.x; k < out.rows; k += blockDim.x) {
      const double wv = ldv(a.w[sc], a.wbf16[sc], k * out.cols + u);
      dot -= double(out.d[k * out.cols + u]) * wv, nn += wv * wv;
    }
  }
  dot = block_sum(dot);
  nn = block_sum(nn);
  if (!(nn > 0)) return;
  const float f = float(dot / nn);
  for (int64_t j = threadIdx.x; j < in.cols; j += blockDim.x) in.d[u * in.cols + j] -= f * ldv(Win, inb, u * in.cols + j);
  if (ib >= 0 && threadIdx.x == 0) {
    const int sb = blk * np + ib;
    slots[sb].d[u] -= f * ldv(a.w[sb], a.wbf16[sb], u);
  }
  if (ic >= 0) {
    const int sc = blk * np + ic;
    const Slot out = slots[sc];
    for (int64_t k = threadIdx.x; k < out.rows; k += blockDim.x)
      out.d[k * out.cols + u] += f * ldv(a.w[sc], a.wbf16[sc], k * out.cols + u);
  }
}

// piece(X, mu, la, rb, i, j) of symo.cpp: op 0 = identity, 1 = mean line, 2 = centred part.
__device__ __forceinline__ double sym_piece(double x, double rm, double cm, double all, int la, int rb) {
  switch (la * 3 + rb) {
  case 0: return x;
  case 1: return rm;
  case 2: return x - rm;
  case 3: return cm;
  case 4: return all;
  case 5: return cm - all;
  case 6: return x - cm;
  case 7: return rm - all;
  default: return x - rm - cm + all;
  }
}

__global__ void two_sided_kernel(const __grid_constant__ StepArgs a, const Slot *slots, Counters c,
                                 const PairDesc *pairs, int64_t cols, float *s, double *coef, double *means,
                                 int64_t npairs, int64_t nmeans, float beta2, float eps, int stats, int stats_from_d) {
  const int blk = blockIdx.y;
  if (!a.active[blk] || c.flag[slots[blk].block]) return;
  const PairDesc p = pairs[blockIdx.x];
  const Slot sl = slots[blk];
  const float *X = (stats && stats_from_d ? sl.d : sl.u) + p.roff * cols + p.coff;
  double *rm = means + blk * nmeans + p.moff, *cm = rm + p.la;
  // Means of the sub-block (row means over its columns when the right run is S, column means
  // over its rows when the left run is S) and of all of it.
  if (p.csplit)
    for (int64_t i = threadIdx.x; i < p.la; i += blockDim.x) {
      double r = 0;
      for (int64_t j = 0; j < p.lb; ++j) r += X[i * cols + j];
      rm[i] = r / double(p.lb);
    }
  if (p.rsplit)
    for (int64_t j = threadIdx.x; j < p.lb; j += blockDim.x) {
      double r = 0;
      for (int64_t i = 0; i < p.la; ++i) r += X[i * cols + j];
      cm[j] = r / double(p.la);
    }
  double acc = 0;
  for (int64_t e = threadIdx.x; e < p.la * p.lb; e += blockDim.x) acc += X[(e / p.lb) * cols + e % p.lb];
  const double all = block_sum(acc) / double(p.la * p.lb);
  __syncthreads();
  const int nla = p.rsplit ? 2 : 1, nrb = p.csplit ? 2 : 1;
  float *sb = s + blk * npairs;
  double *cb = coef + blk * npairs;
  if (stats) {
    const double bc = 1.0 - pow(double(beta2), double(c.t[sl.block] + 1));
    for (int ka = 0; ka < nla; ++ka)
      for (int kb = 0; kb < nrb; ++kb) {
        const int la = p.rsplit ? 1 + ka : 0, rb = p.csplit ? 1 + kb : 0;
        const int64_t k = p.k0 + ka * p.rcomps + kb;
        const int64_t d = (la == 0 ? p.la : la == 1 ? 1 : p.la - 1) * (rb == 0 ? p.lb : rb == 1 ? 1 : p.lb - 1);
        double n2 = 0;
        for (int64_t e = threadIdx.x; e < p.la * p.lb; e += blockDim.x) {
          const int64_t i = e / p.lb, j = e % p.lb;
          const double v = sym_piece(X[i * cols + j], p.csplit ? rm[i] : 0, p.rsplit ? cm[j] : 0, all, la, rb);
          n2 += v * v;
        }
        n2 = block_sum(n2);
        if (threadIdx.x == 0) {
          if (d == 0) {
            cb[k] = 0;
          } else {
            sb[k] = float(double(beta2) * double(sb[k]) + (1.0 - double(beta2)) * n2 / double(d));
            const double h = double(sb[k]) / bc + double(eps);
            cb[k] = h > 0 ? 1.0 / sqrt(h) : 0.0;
          }
        }
        __syncthreads();
      }
    return;
  }
  float *D = sl.d + p.roff * cols + p.coff;
  for (int64_t e = threadIdx.x; e < p.la * p.lb; e += blockDim.x) {
    const int64_t i = e / p.lb, j = e % p.lb;
    double v = 0;
    for (int ka = 0; ka < nla; ++ka)
      for (int kb = 0; kb < nrb; ++kb) {
        const int la = p.rsplit ? 1 + ka : 0, rb = p.csplit ? 1 + kb : 0;
        const double cf = cb[p.k0 + ka * p.rcomps + kb];
        if (cf != 0) v += cf * sym_piece(X[i * cols + j], p.csplit ? rm[i] : 0, p.rsplit ? cm[j] : 0, all, la, rb);
      }
    D[i * cols + j] = float(v);
  }
}

unsigned grid_for(int64_t n) { return unsigned(std::min<int64_t>((n + 255) / 256, 1024)); }
unsigned gy(int n) { return unsigned(grid_y_for(n)); }

} // namespace

void launch_prep(const StepArgs &a, const Chunk *chunks, int nchunks, const Slot *slots, Counters c, PrepCfg cfg,
                 cudaStream_t s) {
  if (nchunks) prep_kernel<<<nchunks, kThreads, 0, s>>>(a, chunks, slots, c, cfg);
}
void launch_apply(const StepArgs &a, const Chunk *chunks, int nchunks, const Slot *slots, Counters c, float wd,
                  cudaStream_t s) {
  if (nchunks) apply_kernel<<<nchunks, kThreads, 0, s>>>(a, chunks, slots, c, wd);
}
void launch_pack(const PackEntry *entries, int n, int64_t rows, int64_t cols, float *P, int64_t max_cols,
                 cudaStream_t s, bool legacy) {
  if (n && rows > 0 && cols > 0)
    pack_kernel<<<dim3(grid_for(rows * max_cols), gy(n)), 256, 0, s>>>(entries, n, rows, cols, P, 0, 1.f, 1.f,
                                                                       legacy ? 1 : 0);
}
void launch_unpack(const PackEntry *entries, int n, int64_t rows, int64_t cols, const float *P, float s1, float s2,
                   int64_t max_cols, cudaStream_t s, bool legacy) {
  if (n && rows > 0 && cols > 0)
    pack_kernel<<<dim3(grid_for(rows * max_cols), gy(n)), 256, 0, s>>>(entries, n, rows, cols, const_cast<float *>(P), 1,
                                                                       s1, s2, legacy ? 1 : 0);
}
void launch_bias_scale(const Slot *slots, Counters c, const float *C, float *H, int n, int per, int np, int64_t len,
                       float beta2, cudaStream_t s) {
  if (n && len) bias_scale_kernel<<<dim3(grid_for(len), gy(n)), 256, 0, s>>>(slots, c, C, H, n, per, np, len, beta2);
}
void launch_add_rows(float *Q, const float *v, int n, int64_t rows, int64_t cols, cudaStream_t s) {
  if (n && rows > 0 && cols > 0) add_rows_kernel<<<dim3(grid_for(rows * cols), gy(n)), 256, 0, s>>>(Q, v, n, rows, cols);
}
void launch_center_keep(float *P, float *mu, int n, int64_t rows, int64_t cols, cudaStream_t s, bool legacy) {
  if (!n || !cols) return;
  if (legacy) center_keep_kernel<<<dim3(unsigned((cols + 255) / 256), gy(n)), 256, 0, s>>>(P, mu, n, rows, cols);
  else center_keep_tiled<<<dim3(unsigned((cols + kTile - 1) / kTile), gy(n)), dim3(kTile, kLanes), 0, s>>>(P, mu, n, rows, cols);
}
void launch_s_fix(float *Q, const float *mu, int n, int64_t rows, int64_t cols, float s1, float eps, bool zero,
                  cudaStream_t s, bool legacy) {
  if (!n || !cols) return;
  if (legacy)
    s_fix_kernel<<<dim3(unsigned((cols + 255) / 256), gy(n)), 256, 0, s>>>(Q, mu, n, rows, cols, s1, eps, zero ? 1 : 0);
  else
    s_fix_tiled<<<dim3(unsigned((cols + kTile - 1) / kTile), gy(n)), dim3(kTile, kLanes), 0, s>>>(Q, mu, n, rows, cols,
                                                                                                  s1, eps, zero ? 1 : 0);
}
void launch_masked_axpby(const MaskArgs &m, const Slot *slots, Counters c, float *dst, const float *src, int64_t len,
                         float beta, bool copy, cudaStream_t s, int n, int per, int np) {
  if (n < 0) n = m.n;
  if (n && len)
    masked_axpby_kernel<<<dim3(grid_for(len), gy(n)), 256, 0, s>>>(m, slots, c, dst, src, n, len, beta, copy ? 1 : 0,
                                                                         per, np);
}
void launch_masked_sym_accumulate(const MaskArgs &m, const Slot *slots, Counters c, float *dst, const float *Z,
                                  int64_t k, float beta, cudaStream_t s) {
  if (!m.n || !k) return;
  const unsigned t = unsigned((k + 31) / 32);
  masked_sym_accumulate_kernel<<<dim3(t, t, gy(m.n)), dim3(32, 8), 0, s>>>(m, slots, c, dst, Z, m.n, k, beta);
}
void launch_masked_split(const MaskArgs &m, const Slot *slots, Counters c, float *hi, float *lo, const float *src,
                         int64_t len, cudaStream_t s) {
  if (m.n && len) masked_split_kernel<<<dim3(grid_for(len), gy(m.n)), 256, 0, s>>>(m, slots, c, hi, lo, src, m.n, len);
}
void launch_two_sided(const StepArgs &a, const Slot *slots, Counters c, const PairDesc *pairs, int npd, int nblocks,
                      int64_t cols, float *s, double *coef, double *means, int64_t npairs, int64_t nmeans, float beta2,
                      float eps, int stats, int stats_from_d, cudaStream_t st) {
  if (npd && nblocks)
    two_sided_kernel<<<dim3(unsigned(npd), unsigned(nblocks)), 256, 0, st>>>(a, slots, c, pairs, cols, s, coef, means,
                                                                             npairs, nmeans, beta2, eps, stats,
                                                                             stats_from_d);
}
void launch_line_norm(const StepArgs &a, const Chunk *chunks, int nchunks, const Slot *slots, Counters c, int nslots,
                      int axis, int64_t head_rows, float beta2, float eps, int64_t max_lines, double *sq,
                      cudaStream_t s) {
  if (!nslots || !max_lines) return;
  const int per = axis == 0 ? 256 / 32 : 256;
  line_stats_kernel<<<dim3(unsigned((max_lines + per - 1) / per), unsigned(nslots)), 256, 0, s>>>(
      a, slots, c, axis, head_rows, beta2, eps, max_lines, sq);
  if (nchunks) line_scale_kernel<<<unsigned(nchunks), 256, 0, s>>>(a, chunks, slots, c, axis, eps, max_lines, sq);
}
void launch_gauge_rescale(const StepArgs &a, const Slot *slots, Counters c, int nblocks, int np, int ia, int ib,
                          int ic, int64_t units, cudaStream_t s) {
  if (nblocks && units)
    gauge_rescale_kernel<<<dim3(unsigned(units), unsigned(nblocks)), 256, 0, s>>>(a, slots, c, np, ia, ib, ic);
}

} // namespace symoc::rt::cuda::detail
