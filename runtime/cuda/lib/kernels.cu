// Elementwise and Muon kernels of the CUDA backend. Built with --fmad=false: the float
// expressions are those of the CPU runtime (optim.cpp) in the same order, so with IEEE
// division and sqrt (nvcc's defaults) fp32 results match the CPU bit for bit up to the
// bias corrections (pow in double on both sides).
#include "kernels.h"
#include "symoc/cuda/matrix.h"
#include "symoc/runtime/polar_coefficients.h"

#include <cuda_bf16.h>

namespace symoc::rt::cuda::detail {
namespace {

__device__ __forceinline__ float bf2f(uint32_t b) { return __uint_as_float(b << 16); }
__device__ __forceinline__ uint16_t f2bf(float f) {
  return __bfloat16_as_ushort(__float2bfloat16_rn(f));
}

// Four consecutive entries of a float32 or bf16 array (16- or 8-byte accesses).
__device__ __forceinline__ void ld4(const void *p, bool bf, int64_t i, float v[4]) {
  if (bf) {
    const uint2 u = *reinterpret_cast<const uint2 *>(static_cast<const uint16_t *>(p) + i);
    v[0] = bf2f(u.x & 0xffffu), v[1] = bf2f(u.x >> 16), v[2] = bf2f(u.y & 0xffffu), v[3] = bf2f(u.y >> 16);
  } else {
    const float4 f = *reinterpret_cast<const float4 *>(static_cast<const float *>(p) + i);
    v[0] = f.x, v[1] = f.y, v[2] = f.z, v[3] = f.w;
  }
}
__device__ __forceinline__ void st4(void *p, bool bf, int64_t i, const float v[4]) {
  if (bf) {
    uint2 u;
    u.x = uint32_t(f2bf(v[0])) | (uint32_t(f2bf(v[1])) << 16);
    u.y = uint32_t(f2bf(v[2])) | (uint32_t(f2bf(v[3])) << 16);
    *reinterpret_cast<uint2 *>(static_cast<uint16_t *>(p) + i) = u;
  } else {
    *reinterpret_cast<float4 *>(static_cast<float *>(p) + i) = make_float4(v[0], v[1], v[2], v[3]);
  }
}
__device__ __forceinline__ float ld1(const void *p, bool bf, int64_t i) {
  return bf ? bf2f(static_cast<const uint16_t *>(p)[i]) : static_cast<const float *>(p)[i];
}
__device__ __forceinline__ void st1(void *p, bool bf, int64_t i, float v) {
  if (bf) static_cast<uint16_t *>(p)[i] = f2bf(v);
  else static_cast<float *>(p)[i] = v;
}
__device__ __forceinline__ void ld4f(const float *p, int64_t i, float v[4]) { ld4(p, false, i, v); }
__device__ __forceinline__ void st4f(float *p, int64_t i, const float v[4]) { st4(p, false, i, v); }

__device__ __forceinline__ bool aligned(const void *p, int bytes) {
  return (reinterpret_cast<uintptr_t>(p) & uintptr_t(bytes - 1)) == 0;
}

// Calls f(i, k) over [off, off + len): k = 4 for aligned groups of four, 1 for the rest.
template <class F> __device__ __forceinline__ void sweep(int64_t off, int64_t len, bool vec, F f) {
  const int64_t end = off + len;
  int64_t i = off;
  if (vec && (off & 3) == 0) {
    const int64_t vend = off + (len & ~int64_t(3));
    for (int64_t j = off + 4 * int64_t(threadIdx.x); j < vend; j += 4 * int64_t(blockDim.x)) f(j, 4);
    i = vend;
  }
  for (int64_t j = i + threadIdx.x; j < end; j += blockDim.x) f(j, 1);
}

__device__ __forceinline__ bool finite_bits(float x) { return (__float_as_uint(x) & 0x7f800000u) != 0x7f800000u; }

// --------------------------------------------------------------- non-finite check
__global__ void check_kernel(const __grid_constant__ StepArgs a, const Chunk *chunks, const Slot *slots,
                             Counters c) {
  const Chunk ch = chunks[blockIdx.x];
  if (!a.active[ch.slot]) return;
  const bool bf = a.gbf16[ch.slot];
  const void *g = a.g[ch.slot];
  bool bad = false;
  sweep(ch.off, ch.len, aligned(g, bf ? 8 : 16), [&](int64_t j, int k) {
    float v[4];
    if (k == 4) ld4(g, bf, j, v);
    else v[0] = ld1(g, bf, j);
    for (int q = 0; q < k; ++q) bad |= !finite_bits(v[q]);
  });
  if (__syncthreads_or(bad) && threadIdx.x == 0) c.flag[slots[ch.slot].block] = 1;
}

// One thread per slot (one block: a launch holds at most kBatch slots): count skips or advance
// the step counter, then, once every slot has read its block's flag (a coupled block's slots
// all count a skip), clear the flags.
__global__ void finalize_kernel(const __grid_constant__ StepArgs a, const Slot *slots, Counters c, int count_steps) {
  const int i = threadIdx.x;
  const bool mine = i < a.nslots && a.active[i];
  Slot s{};
  if (mine) s = slots[i];
  if (mine) {
    if (c.flag[s.block]) {
      c.skips[s.param] += 1;
      atomicAdd(reinterpret_cast<unsigned long long *>(c.total), 1ull);
    } else if (count_steps && s.first) {
      c.t[s.block] += 1;
    }
  }
  __syncthreads();
  if (mine) c.flag[s.block] = 0;
}

// ------------------------------------------------------------------------- Adam
__global__ void adam_kernel(const __grid_constant__ StepArgs a, const Chunk *chunks, const Slot *slots, Counters c,
                            AdamCfg cfg) {
  const Chunk ch = chunks[blockIdx.x];
  if (!a.active[ch.slot]) return;
  const Slot s = slots[ch.slot];
  if (c.flag[s.block]) return;
  const double t = double(c.t[s.block] + 1);
  const float inv_bc1 = float(1.0 / (1.0 - pow(double(cfg.b1), t)));
  const float inv_sqrt_bc2 = float(1.0 / sqrt(1.0 - pow(double(cfg.b2), t)));
  const float lr = slot_lr(a, ch.slot);
  const float decay = 1.f - lr * (cfg.decoupled ? cfg.wd : 0.f);
  const float l2 = cfg.decoupled ? 0.f : cfg.wd;
  const float b1 = cfg.b1, b2 = cfg.b2, ob1 = 1.f - b1, ob2 = 1.f - b2, eps = cfg.eps;
  void *w = a.w[ch.slot];
  const void *g = a.g[ch.slot];
  const bool wb = a.wbf16[ch.slot], gb = a.gbf16[ch.slot];
  float *m = s.s0, *v = s.s1;
  const bool vec = aligned(w, wb ? 8 : 16) && aligned(g, gb ? 8 : 16);
  sweep(ch.off, ch.len, vec, [&](int64_t j, int k) {
    float W[4], G[4], M[4], V[4];
    if (k == 4) ld4(w, wb, j, W), ld4(g, gb, j, G), ld4f(m, j, M), ld4f(v, j, V);
    else W[0] = ld1(w, wb, j), G[0] = ld1(g, gb, j), M[0] = m[j], V[0] = v[j];
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      if (q >= k) break;
      const float gj = G[q] + l2 * W[q];
      const float mj = M[q] * b1 + gj * ob1;
      const float vj = V[q] * b2 + gj * gj * ob2;
      M[q] = mj, V[q] = vj;
      const float dj = mj * inv_bc1 / (sqrtf(vj) * inv_sqrt_bc2 + eps);
      W[q] = W[q] * decay - lr * dj;
    }
    if (k == 4) st4(w, wb, j, W), st4f(m, j, M), st4f(v, j, V);
    else st1(w, wb, j, W[0]), m[j] = M[0], v[j] = V[0];
  });
}

// -------------------------------------------------------------------------- SGD
__global__ void sgd_kernel(const __grid_constant__ StepArgs a, const Chunk *chunks, const Slot *slots, Counters c,
                           SgdCfg cfg) {
  const Chunk ch = chunks[blockIdx.x];
  if (!a.active[ch.slot]) return;
  const Slot s = slots[ch.slot];
  if (c.flag[s.block]) return;
  const bool first = c.t[s.block] == 0; // torch: the first buffer is d_p itself
  const float lr = slot_lr(a, ch.slot), wd = cfg.wd, mom = cfg.mom, damp = 1.f - cfg.damp;
  const bool has_buf = mom != 0.f, nest = cfg.nesterov;
  void *w = a.w[ch.slot];
  const void *g = a.g[ch.slot];
  const bool wb = a.wbf16[ch.slot], gb = a.gbf16[ch.slot];
  float *buf = s.s0;
  const bool vec = aligned(w, wb ? 8 : 16) && aligned(g, gb ? 8 : 16);
  const float decay = 1.f - lr * 0.f; // SGD's weight decay is L2 (in the direction), as Rule::step
  sweep(ch.off, ch.len, vec, [&](int64_t j, int k) {
    float W[4], G[4], B[4] = {0, 0, 0, 0};
    if (k == 4) {
      ld4(w, wb, j, W), ld4(g, gb, j, G);
      if (has_buf) ld4f(buf, j, B);
    } else {
      W[0] = ld1(w, wb, j), G[0] = ld1(g, gb, j);
      if (has_buf) B[0] = buf[j];
    }
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      if (q >= k) break;
      const float dj = G[q] + wd * W[q];
      float d = dj;
      if (has_buf) {
        const float b = first ? dj : B[q] * mom + damp * dj;
        B[q] = b;
        d = nest ? dj + mom * b : b;
      }
      W[q] = W[q] * decay - lr * d;
    }
    if (k == 4) {
      st4(w, wb, j, W);
      if (has_buf) st4f(buf, j, B);
    } else {
      st1(w, wb, j, W[0]);
      if (has_buf) buf[j] = B[0];
    }
  });
}

// -------------------------------------------------------------------- Adam-mini
// The bias corrections and the group's new second moment: thread 0 writes v (every thread
// computes the same values from `v_old`, read before the caller's last barrier).
struct MiniScale {
  double bc1;
  float denom;
};
__device__ __forceinline__ MiniScale mini_scale(const Counters &c, const Slot &s, const Chunk &ch, const MiniCfg &cfg,
                                                float v_old, double sum_sq, bool writer) {
  const double t = double(c.t[s.block] + 1);
  const double bc1 = 1.0 - pow(double(cfg.b1), t), bc2 = 1.0 - pow(double(cfg.b2), t);
  const float vk = v_old * cfg.b2 + float(sum_sq / double(ch.len)) * (1.f - cfg.b2);
  if (writer) s.s1[ch.aux] = vk;
  return {bc1, float(sqrt(double(vk) / bc2)) + cfg.eps};
}
__device__ __forceinline__ float mini_update(float &mj, float gj, float wj, const MiniScale &k, float lr, float decay,
                                             const MiniCfg &cfg) {
  mj = mj * cfg.b1 + gj * (1.f - cfg.b1);
  const float dj = float(double(mj) / k.bc1) / k.denom;
  return wj * decay - lr * dj;
}

// One CTA per (block, row group): the group's mean g^2 (double), then m and w.
__device__ void adam_mini_two_pass(const StepArgs &a, const Chunk &ch, const Slot &s, const Counters &c,
                                   const MiniCfg &cfg) {
  const void *g = a.g[ch.slot];
  void *w = a.w[ch.slot];
  const bool wb = a.wbf16[ch.slot], gb = a.gbf16[ch.slot];
  __shared__ double red[kThreads];
  __shared__ MiniScale scale_s;
  double acc = 0;
  for (int64_t j = ch.off + threadIdx.x; j < ch.off + ch.len; j += blockDim.x) {
    const float x = ld1(g, gb, j);
    acc += double(x) * x;
  }
  red[threadIdx.x] = acc;
  __syncthreads();
  for (int o = blockDim.x / 2; o > 0; o >>= 1) {
    if (int(threadIdx.x) < o) red[threadIdx.x] += red[threadIdx.x + o];
    __syncthreads();
  }
  if (threadIdx.x == 0) scale_s = mini_scale(c, s, ch, cfg, s.s1[ch.aux], red[0], true);
  __syncthreads();
  const MiniScale k = scale_s;
  const float lr = slot_lr(a, ch.slot), decay = 1.f - lr * cfg.wd;
  float *m = s.s0;
  for (int64_t j = ch.off + threadIdx.x; j < ch.off + ch.len; j += blockDim.x)
    st1(w, wb, j, mini_update(m[j], ld1(g, gb, j), ld1(w, wb, j), k, lr, decay, cfg));
}

__global__ void adam_mini_kernel(const __grid_constant__ StepArgs a, const Chunk *tasks, const Slot *slots,
                                 Counters c, MiniCfg cfg) {
  const Chunk ch = tasks[blockIdx.x];
  if (!a.active[ch.slot]) return;
  const Slot s = slots[ch.slot];
  if (c.flag[s.block]) return;
  adam_mini_two_pass(a, ch, s, c, cfg);
}

// Adam-mini with one warp per group (session 33; every group of the launch <= kMiniWarpMax
// entries): GPT-2's groups are rows of 768 or 3072 entries, for which a CTA per group spent
// more on its barriers and its tree reduction than on memory (38% of copy bandwidth on an
// H100). The warp sums g^2 in double by shuffles, no block barrier, then steps m and w in
// float4s; its second read of g hits L1 (a group is at most 64 KB). The updates are
// adam_mini_two_pass's expressions; the sum's order differs (as between the CPU and a CTA).
// (Holding a group of up to 768 entries in registers, g, m and w loaded at once, was measured
// slower on the H100: 60% of copy bandwidth against 65%, 128 registers a thread.)
__global__ void adam_mini_warp_kernel(const __grid_constant__ StepArgs a, const Chunk *tasks, int ntasks,
                                      const Slot *slots, Counters c, MiniCfg cfg) {
  const int lane = threadIdx.x & 31;
  const int64_t task = int64_t(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5);
  if (task >= ntasks) return;
  const Chunk ch = tasks[task];
  if (!a.active[ch.slot]) return;
  const Slot s = slots[ch.slot];
  if (c.flag[s.block]) return;
  const void *g = a.g[ch.slot];
  void *w = a.w[ch.slot];
  const bool wb = a.wbf16[ch.slot], gb = a.gbf16[ch.slot];
  float *m = s.s0;
  const int64_t end = ch.off + ch.len;
  const bool vec = ch.off % 4 == 0 && ch.len % 4 == 0 && aligned(g, gb ? 8 : 16) && aligned(w, wb ? 8 : 16) &&
                   aligned(m, 16);
  const float v_old = s.s1[ch.aux];
  const float lr = slot_lr(a, ch.slot), decay = 1.f - lr * cfg.wd;
  double acc = 0;
  if (vec) {
#pragma unroll 4
    for (int64_t j = ch.off + 4 * lane; j < end; j += 128) {
      float G[4];
      ld4(g, gb, j, G);
#pragma unroll
      for (int q = 0; q < 4; ++q) acc += double(G[q]) * G[q];
    }
  } else {
    for (int64_t j = ch.off + lane; j < end; j += 32) {
      const float x = ld1(g, gb, j);
      acc += double(x) * x;
    }
  }
  for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
  __syncwarp(); // every lane has read v_old before lane 0 writes the new one
  const MiniScale k = mini_scale(c, s, ch, cfg, v_old, acc, lane == 0);
  if (vec) {
#pragma unroll 2
    for (int64_t j = ch.off + 4 * lane; j < end; j += 128) {
      float G[4], M[4], W[4];
      ld4(g, gb, j, G), ld4f(m, j, M), ld4(w, wb, j, W);
#pragma unroll
      for (int q = 0; q < 4; ++q) W[q] = mini_update(M[q], G[q], W[q], k, lr, decay, cfg);
      st4f(m, j, M), st4(w, wb, j, W);
    }
  } else {
    for (int64_t j = ch.off + lane; j < end; j += 32)
      st1(w, wb, j, mini_update(m[j], ld1(g, gb, j), ld1(w, wb, j), k, lr, decay, cfg));
  }
}

// ------------------------------------------------------------------------- Muon
__device__ __forceinline__ float block_sum(float x) {
  __shared__ float red[kThreads];
  red[threadIdx.x] = x;
  __syncthreads();
  for (int o = blockDim.x / 2; o > 0; o >>= 1) {
    if (int(threadIdx.x) < o) red[threadIdx.x] += red[threadIdx.x + o];
    __syncthreads();
  }
  return red[0];
}

// M <- lerp(M, G, 1 - beta); U = nesterov ? lerp(G, M, beta) : M, by mode:
// kMomentumBf16: U rounded to bf16 into X (slot-major, the block's row-major layout), per-chunk
//   sums of squares of the bf16 values;
// kMomentumF32: U written as float32 (for the matrix library's Newton-Schulz, which normalizes
//   and rounds itself) into Uf, with per-chunk sums of squares of those float32 values where
//   `partial` is given (the plan's norms then come from muon_prep_kernel);
// kMomentumStats: nothing written but those sums of squares (the same values, the same order)
//   and the block's non-finite flag (this pass is the group's check): the plan's pack then
//   makes the momentum step itself (PolarSource) once the norms and the flags are known.
enum MomentumMode { kMomentumBf16, kMomentumF32, kMomentumStats };
template <int Mode>
__global__ void muon_momentum_kernel(const __grid_constant__ StepArgs a, const Chunk *chunks, const Slot *slots,
                                     Counters c, MuonCfg cfg, uint16_t *X, float *partial, float *Uf) {
  constexpr bool F32 = Mode != kMomentumBf16, kStats = Mode == kMomentumStats;
  const Chunk ch = chunks[blockIdx.x];
  const Slot s = slots[ch.slot];
  uint16_t *x = F32 ? nullptr : X + int64_t(ch.slot) * s.n;
  float *uf = Mode == kMomentumF32 ? Uf + int64_t(ch.slot) * s.n : nullptr;
  // Stats: the flag is this pass's own output (cleared by the last step's finalize).
  const bool live = a.active[ch.slot] && (kStats || !c.flag[s.block]);
  float acc = 0.f;
  bool bad = false;
  if (live) {
    const void *g = a.g[ch.slot];
    const bool gb = a.gbf16[ch.slot];
    float *M = s.s0;
    const float w1 = 1.f - cfg.beta, beta = cfg.beta;
    const bool nest = cfg.nesterov;
    const bool vec = aligned(g, gb ? 8 : 16) && (kStats || (F32 ? aligned(uf, 16) : aligned(x, 8)));
    sweep(ch.off, ch.len, vec, [&](int64_t j, int k) {
      float G[4], Mv[4], U[4];
      if (k == 4) ld4(g, gb, j, G), ld4f(M, j, Mv);
      else G[0] = ld1(g, gb, j), Mv[0] = M[j];
#pragma unroll
      for (int q = 0; q < 4; ++q) {
        if (q >= k) break;
        if (kStats) bad |= !finite_bits(G[q]);
        Mv[q] = Mv[q] + w1 * (G[q] - Mv[q]);
        const float u = nest ? G[q] + beta * (Mv[q] - G[q]) : Mv[q];
        U[q] = F32 ? u : bf2f(f2bf(u));
        acc += U[q] * U[q];
      }
      if (kStats) return;
      if (k == 4) st4f(M, j, Mv), F32 ? st4f(uf, j, U) : st4(x, true, j, U);
      else M[j] = Mv[0], F32 ? void(uf[j] = U[0]) : st1(x, true, j, U[0]);
    });
  } else if (!kStats) {
    for (int64_t j = ch.off + threadIdx.x; j < ch.off + ch.len; j += blockDim.x)
      if (F32) uf[j] = 0.f;
      else x[j] = 0;
  }
  if (kStats && __syncthreads_or(bad) && threadIdx.x == 0) c.flag[s.block] = 1;
  if (F32 && !partial) return;
  const float tot = block_sum(acc);
  if (threadIdx.x == 0) partial[blockIdx.x] = tot;
}

// X <- X / (||X||_F + 1e-7) per sub-matrix (the sum of its chunks' partial sums, in order).
__global__ void muon_normalize_kernel(const Chunk *chunks, const int32_t *first, MuonCfg cfg, uint16_t *X,
                                      const float *partial, int64_t slot_n) {
  const Chunk ch = chunks[blockIdx.x];
  __shared__ float inv_s;
  if (threadIdx.x == 0) {
    float sum = 0.f;
    for (int k = first[ch.aux]; k < first[ch.aux + 1]; ++k) sum += partial[k];
    inv_s = float(1.0 / (sqrt(double(sum)) + 1e-7));
  }
  __syncthreads();
  const float inv = inv_s;
  uint16_t *x = X + int64_t(ch.slot) * slot_n;
  for (int64_t j = ch.off + threadIdx.x; j < ch.off + ch.len; j += blockDim.x) x[j] = f2bf(bf2f(x[j]) * inv);
}

// W <- W (1 - lr wd) - lr (scale O).
// O: bf16 (own Newton-Schulz; D = scale O) or float32 (OF32: the matrix library's result,
// already scaled: scale is 1).
template <bool OF32>
__global__ void muon_apply_kernel(const __grid_constant__ StepArgs a, const Chunk *chunks, const Slot *slots,
                                  Counters c, MuonCfg cfg, const void *O) {
  const Chunk ch = chunks[blockIdx.x];
  if (!a.active[ch.slot]) return;
  const Slot s = slots[ch.slot];
  if (c.flag[s.block]) return;
  const void *o = OF32 ? static_cast<const void *>(static_cast<const float *>(O) + int64_t(ch.slot) * s.n)
                       : static_cast<const void *>(static_cast<const uint16_t *>(O) + int64_t(ch.slot) * s.n);
  void *w = a.w[ch.slot];
  const bool wb = a.wbf16[ch.slot];
  const float lr = slot_lr(a, ch.slot), decay = 1.f - lr * cfg.wd, scale = OF32 ? 1.f : cfg.scale;
  sweep(ch.off, ch.len, aligned(w, wb ? 8 : 16) && aligned(o, OF32 ? 16 : 8), [&](int64_t j, int k) {
    float W[4], D[4];
    if (k == 4) ld4(w, wb, j, W), ld4(o, !OF32, j, D);
    else W[0] = ld1(w, wb, j), D[0] = ld1(o, !OF32, j);
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      if (q >= k) break;
      W[q] = OF32 ? W[q] * decay - lr * D[q] : W[q] * decay - lr * (D[q] * scale);
    }
    if (k == 4) st4(w, wb, j, W);
    else st1(w, wb, j, W[0]);
  });
}

// One warp per sub-matrix m of the batch: its squared Frobenius norm (lane l sums chunks
// first[m] + l, + 32, ... in double, then a fixed shuffle tree: the same order every run) and
// its fused-update target (the weight rows it came from, lr, decay, and skip when the block is
// inactive or its gradient was not finite); with sources, its gradient and momentum rows for
// the plan's fused momentum step (the same skip).
__global__ void muon_prep_kernel(const __grid_constant__ StepArgs a, const Chunk *chunks, const Slot *slots,
                                 Counters c, MuonCfg cfg, const int32_t *first, int64_t mats, const float *partial,
                                 double *sumsq, symoc::cuda::PolarTarget *targets, symoc::cuda::PolarSource *sources) {
  const int64_t m = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int lane = threadIdx.x % 32;
  if (m >= mats) return; // whole warps: m is uniform within a warp
  double t = 0;
  for (int k = first[m] + lane; k < first[m + 1]; k += 32) t += partial[k];
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) t += __shfl_down_sync(0xffffffffu, t, o);
  if (lane != 0) return;
  sumsq[m] = t;
  const Chunk ch = chunks[first[m]];
  const Slot s = slots[ch.slot];
  const bool wb = a.wbf16[ch.slot];
  const float lr = slot_lr(a, ch.slot);
  symoc::cuda::PolarTarget tg;
  tg.w = static_cast<char *>(a.w[ch.slot]) + ch.off * (wb ? 2 : 4);
  tg.lr = lr;
  tg.decay = 1.f - lr * cfg.wd; // as muon_apply_kernel (no contraction in this file)
  tg.bf16 = wb;
  tg.skip = !a.active[ch.slot] || c.flag[s.block];
  targets[m] = tg;
  if (!sources) return;
  const bool gb = a.gbf16[ch.slot];
  sources[m] = symoc::cuda::PolarSource{static_cast<const char *>(a.g[ch.slot]) + ch.off * (gb ? 2 : 4),
                                        s.s0 + ch.off, int32_t(gb), tg.skip};
}

__global__ void set_scalar_kernel(float *dst, float v) { *dst = v; }

} // namespace

void launch_set_scalar(float *dst, float v, cudaStream_t s) { set_scalar_kernel<<<1, 1, 0, s>>>(dst, v); }
void launch_check(const StepArgs &a, const Chunk *chunks, int nchunks, const Slot *slots, Counters c,
                  cudaStream_t s) {
  if (nchunks) check_kernel<<<nchunks, kThreads, 0, s>>>(a, chunks, slots, c);
}
void launch_finalize(const StepArgs &a, const Slot *slots, Counters c, bool count_steps, cudaStream_t s) {
  if (!a.nslots) return;
  static_assert(kBatch <= 1024, "finalize_kernel takes one thread per slot in one block");
  finalize_kernel<<<1, kBatch, 0, s>>>(a, slots, c, count_steps ? 1 : 0);
}
void launch_adam(const StepArgs &a, const Chunk *chunks, int nchunks, const Slot *slots, Counters c, AdamCfg cfg,
                 cudaStream_t s) {
  if (nchunks) adam_kernel<<<nchunks, kThreads, 0, s>>>(a, chunks, slots, c, cfg);
}
void launch_sgd(const StepArgs &a, const Chunk *chunks, int nchunks, const Slot *slots, Counters c, SgdCfg cfg,
                cudaStream_t s) {
  if (nchunks) sgd_kernel<<<nchunks, kThreads, 0, s>>>(a, chunks, slots, c, cfg);
}
void launch_adam_mini(const StepArgs &a, const Chunk *tasks, int ntasks, const Slot *slots, Counters c,
                      MiniCfg cfg, cudaStream_t s) {
  if (ntasks == 0) return;
  constexpr int kWarps = kThreads / 32;
  if (cfg.warp) adam_mini_warp_kernel<<<(ntasks + kWarps - 1) / kWarps, kThreads, 0, s>>>(a, tasks, ntasks, slots, c, cfg);
  else adam_mini_kernel<<<ntasks, kThreads, 0, s>>>(a, tasks, slots, c, cfg);
}
void launch_muon_momentum(const StepArgs &a, const Chunk *chunks, int nchunks, const Slot *slots, Counters c,
                          MuonCfg cfg, uint16_t *X, float *partial, cudaStream_t s) {
  if (nchunks)
    muon_momentum_kernel<kMomentumBf16><<<nchunks, kThreads, 0, s>>>(a, chunks, slots, c, cfg, X, partial, nullptr);
}
void launch_muon_momentum_f32(const StepArgs &a, const Chunk *chunks, int nchunks, const Slot *slots, Counters c,
                              MuonCfg cfg, float *U, float *partial, cudaStream_t s) {
  if (nchunks)
    muon_momentum_kernel<kMomentumF32><<<nchunks, kThreads, 0, s>>>(a, chunks, slots, c, cfg, nullptr, partial, U);
}
void launch_muon_stats(const StepArgs &a, const Chunk *chunks, int nchunks, const Slot *slots, Counters c,
                       MuonCfg cfg, float *partial, cudaStream_t s) {
  if (nchunks)
    muon_momentum_kernel<kMomentumStats><<<nchunks, kThreads, 0, s>>>(a, chunks, slots, c, cfg, nullptr, partial,
                                                                      nullptr);
}
void launch_muon_prep(const StepArgs &a, const Chunk *chunks, const Slot *slots, Counters c, MuonCfg cfg,
                      const int32_t *first, int64_t mats, const float *partial, double *sumsq,
                      symoc::cuda::PolarTarget *targets, symoc::cuda::PolarSource *sources, cudaStream_t s) {
  if (mats) muon_prep_kernel<<<unsigned((mats + 3) / 4), 128, 0, s>>>(a, chunks, slots, c, cfg, first, mats, partial,
                                                                      sumsq, targets, sources);
}
void launch_muon_normalize(const Chunk *chunks, int nchunks, const int32_t *first, MuonCfg cfg, uint16_t *X,
                           const float *partial, int64_t slot_n, cudaStream_t s) {
  if (nchunks) muon_normalize_kernel<<<nchunks, kThreads, 0, s>>>(chunks, first, cfg, X, partial, slot_n);
}
void launch_muon_apply(const StepArgs &a, const Chunk *chunks, int nchunks, const Slot *slots, Counters c,
                       MuonCfg cfg, const uint16_t *O, cudaStream_t s) {
  if (nchunks) muon_apply_kernel<false><<<nchunks, kThreads, 0, s>>>(a, chunks, slots, c, cfg, O);
}
void launch_muon_apply_f32(const StepArgs &a, const Chunk *chunks, int nchunks, const Slot *slots, Counters c,
                           MuonCfg cfg, const float *O, cudaStream_t s) {
  if (nchunks) muon_apply_kernel<true><<<nchunks, kThreads, 0, s>>>(a, chunks, slots, c, cfg, O);
}

cublasStatus_t newton_schulz_batched(cublasHandle_t h, cudaStream_t s, uint16_t *X, uint16_t *Y, uint16_t *A,
                                     uint16_t *B, int64_t batch, int64_t rows, int64_t cols, int steps,
                                     uint16_t **result) {
  // Row-major X (rows x cols) is column-major Xc = X^T (cols x rows, ld cols). Iterate on
  // the Gram of the smaller side: wide X: A = X X^T = Xc^T Xc, X' = a X + B X = (a Xc + Xc B)^T;
  // tall X: A = X^T X = Xc Xc^T, X' = a X + X B = (a Xc + B Xc)^T.
  const double a = rt::kNewtonSchulz5.a, b = rt::kNewtonSchulz5.b, c = rt::kNewtonSchulz5.c;
  const bool tall = rows > cols;
  const int r = int(tall ? cols : rows); // Gram side
  const int64_t xs = rows * cols, gs = int64_t(r) * r;
  const int ic = int(cols), ir = int(rows);
  const float one = 1.f, zero = 0.f, fa = float(a), fb = float(b), fc = float(c);
  // The caller binds the stream and its workspace (cublasSetStream resets a handle's workspace
  // to cuBLAS's own pool, which allocates): only a different stream is set here.
  cudaStream_t bound = nullptr;
  cublasStatus_t st = cublasGetStream(h, &bound);
  if (st == CUBLAS_STATUS_SUCCESS && bound != s) st = cublasSetStream(h, s);
  uint16_t *cur = X, *nxt = Y;
  for (int k = 0; k < steps && st == CUBLAS_STATUS_SUCCESS; ++k) {
    if (tall)
      st = cublasGemmStridedBatchedEx(h, CUBLAS_OP_N, CUBLAS_OP_T, r, r, ir, &one, cur, CUDA_R_16BF, ic, xs, cur,
                                      CUDA_R_16BF, ic, xs, &zero, A, CUDA_R_16BF, r, gs, int(batch),
                                      CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    else
      st = cublasGemmStridedBatchedEx(h, CUBLAS_OP_T, CUBLAS_OP_N, r, r, ic, &one, cur, CUDA_R_16BF, ic, xs, cur,
                                      CUDA_R_16BF, ic, xs, &zero, A, CUDA_R_16BF, r, gs, int(batch),
                                      CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    if (st != CUBLAS_STATUS_SUCCESS) break;
    if (cudaMemcpyAsync(B, A, sizeof(uint16_t) * size_t(gs * batch), cudaMemcpyDeviceToDevice, s) != cudaSuccess)
      return CUBLAS_STATUS_EXECUTION_FAILED;
    st = cublasGemmStridedBatchedEx(h, CUBLAS_OP_N, CUBLAS_OP_N, r, r, r, &fc, A, CUDA_R_16BF, r, gs, A,
                                    CUDA_R_16BF, r, gs, &fb, B, CUDA_R_16BF, r, gs, int(batch), CUBLAS_COMPUTE_32F,
                                    CUBLAS_GEMM_DEFAULT);
    if (st != CUBLAS_STATUS_SUCCESS) break;
    if (cudaMemcpyAsync(nxt, cur, sizeof(uint16_t) * size_t(xs * batch), cudaMemcpyDeviceToDevice, s) != cudaSuccess)
      return CUBLAS_STATUS_EXECUTION_FAILED;
    if (tall) // Xc' = a Xc + B Xc: (cols x rows) = (r x r)(cols x rows)
      st = cublasGemmStridedBatchedEx(h, CUBLAS_OP_N, CUBLAS_OP_N, ic, ir, r, &one, B, CUDA_R_16BF, r, gs, cur,
                                      CUDA_R_16BF, ic, xs, &fa, nxt, CUDA_R_16BF, ic, xs, int(batch),
                                      CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    else // Xc' = a Xc + Xc B: (cols x rows) = (cols x rows)(rows x rows)
      st = cublasGemmStridedBatchedEx(h, CUBLAS_OP_N, CUBLAS_OP_N, ic, ir, r, &one, cur, CUDA_R_16BF, ic, xs, B,
                                      CUDA_R_16BF, r, gs, &fa, nxt, CUDA_R_16BF, ic, xs, int(batch),
                                      CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    uint16_t *t = cur;
    cur = nxt, nxt = t;
  }
  *result = cur;
  return st;
}

} // namespace symoc::rt::cuda::detail
