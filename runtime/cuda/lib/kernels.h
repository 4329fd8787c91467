// Kernels of the CUDA backend (internal to symoc_runtime_cuda). Launch arguments carry the
// per-step data (weight/gradient pointers, dtypes, learning rates, the blocks subset) by
// value, so a step needs no host-to-device copy and a captured graph replays it as is.
#pragma once

#include <cstdint>
#include <cublas_v2.h>
#include <cuda_runtime.h>

namespace symoc::cuda {
struct PolarTarget; // symoc/cuda/matrix.h
struct PolarSource;
}

namespace symoc::rt::cuda::detail {

// Whether work on s is being captured into a CUDA graph; refuse_capture throws the backend's
// error for a step that must allocate (a block's first step) under capture (device_optimizer.cpp).
bool capturing(cudaStream_t s);
void refuse_capture(cudaStream_t s);

constexpr int kBatch = 256;       // blocks per launch (kernel arguments ~6 KB; needs CUDA >= 12.1)
constexpr int kChunk = 16384;     // elements per CTA of the elementwise kernels
constexpr int kThreads = 256;

// CUDA's limit on gridDim.y and gridDim.z. Kernels that take one matrix per blockIdx.y loop
// `for (i = blockIdx.y; i < n; i += gridDim.y)` and launch grid_y_for(n) rows, so any n runs
// (Symo's Z2 runs make n = blocks x side length matrices, which passes 65535 on wide layers).
constexpr int64_t kMaxGridY = 65535;
constexpr int64_t grid_y_for(int64_t n) { return n < 1 ? 1 : n < kMaxGridY ? n : kMaxGridY; }

// Per-step arguments of one launch over up to kBatch blocks ("slots").
struct StepArgs {
  void *w[kBatch];
  const void *g[kBatch];
  float lr[kBatch];       // base lr times the block's multiplier, or (lr_scale set) the multiplier
  // Device scalar holding the base lr, or NULL. Set by a step captured in a CUDA graph
  // (DeviceOptimizer's automatic graphs), so that a replay reads the lr of its own step.
  const float *lr_scale;
  uint8_t wbf16[kBatch];  // 1: weight is bf16
  uint8_t gbf16[kBatch];
  uint8_t active[kBatch]; // stepped this call
  int nslots;
};

// Static description of a slot on the device (built on the first step).
struct Slot {
  int32_t block;  // plan block index (flags, step counters)
  int32_t param;  // plan parameter index (skip counters)
  int64_t n;      // entries
  int64_t rows, cols;
  float *s0, *s1; // state buffers (adam: m, v; sgd: momentum; adam_mini: m, v; muon: momentum)
  float *u, *d;   // matrix rules: the preconditioned input U and the direction D (float32)
  int32_t first;  // 1 on the first slot of its block (the block's step counter advances once)
};

// A CTA's piece of work: slot, first entry, length; `aux` is rule-specific (adam-mini:
// the row group; muon: the sub-matrix index in the batch).
struct Chunk {
  int32_t slot;
  int32_t aux;
  int64_t off;
  int64_t len;
};

#ifdef __CUDACC__
// A slot's learning rate: lr[slot] times the device base lr when there is one. The same
// float product as the host's lr * mult, so both paths step bit for bit alike.
__device__ __forceinline__ float slot_lr(const StepArgs &a, int slot) {
  return a.lr_scale ? a.lr[slot] * *a.lr_scale : a.lr[slot];
}
#endif

struct AdamCfg { float b1, b2, eps, wd; int decoupled; };
struct SgdCfg { float mom, damp, wd; int nesterov; };
struct MiniCfg {
  float b1, b2, eps, wd;
  int64_t group_rows;
  int warp; // one warp per group (every group of the launch <= kMiniWarpMax entries), else one CTA
};
// Adam-mini groups up to this many entries take one warp each (adam_mini_warp_kernel).
constexpr int64_t kMiniWarpMax = 16384;
struct MuonCfg { float beta, wd, scale; int nesterov; int64_t sub_rows, cols; };

// Device-wide counters and flags, indexed by block / parameter.
struct Counters {
  int32_t *flag;   // per block: gradient held NaN/Inf this step
  int64_t *t;      // per block: completed steps
  int64_t *skips;  // per parameter: blocks skipped
  int64_t *total;  // [1] all skips
};

// *dst = v on stream s (the base lr of a graph replay).
void launch_set_scalar(float *dst, float v, cudaStream_t s);
void launch_check(const StepArgs &a, const Chunk *chunks, int nchunks, const Slot *slots, Counters c,
                  cudaStream_t s);
void launch_finalize(const StepArgs &a, const Slot *slots, Counters c, bool count_steps, cudaStream_t s);
void launch_adam(const StepArgs &a, const Chunk *chunks, int nchunks, const Slot *slots, Counters c,
                 AdamCfg cfg, cudaStream_t s);
void launch_sgd(const StepArgs &a, const Chunk *chunks, int nchunks, const Slot *slots, Counters c, SgdCfg cfg,
                cudaStream_t s);
void launch_adam_mini(const StepArgs &a, const Chunk *tasks, int ntasks, const Slot *slots, Counters c,
                      MiniCfg cfg, cudaStream_t s);
// Muon: momentum, U (bf16) into X with per-chunk sums of squares; normalization; update.
void launch_muon_momentum(const StepArgs &a, const Chunk *chunks, int nchunks, const Slot *slots, Counters c,
                          MuonCfg cfg, uint16_t *X, float *partial, cudaStream_t s);
void launch_muon_normalize(const Chunk *chunks, int nchunks, const int32_t *mat_first_chunk, MuonCfg cfg,
                           uint16_t *X, const float *partial, int64_t slot_n, cudaStream_t s);
void launch_muon_apply(const StepArgs &a, const Chunk *chunks, int nchunks, const Slot *slots, Counters c,
                       MuonCfg cfg, const uint16_t *O, cudaStream_t s);

// The same with U in float32 (partial: per-chunk sums of squares, or null) and the update from
// a float32, scaled O (the matrix library's NewtonSchulzPlan path).
void launch_muon_momentum_f32(const StepArgs &a, const Chunk *chunks, int nchunks, const Slot *slots, Counters c,
                              MuonCfg cfg, float *U, float *partial, cudaStream_t s);
// The fused path's per-sub-matrix inputs of that plan: sumsq[m] = ||U_m||_F^2 from the partials
// (first: each sub-matrix's first chunk, + end) and targets[m], the update of its weight rows
// (PolarTarget; NewtonSchulzPlan then applies the step in its unpack, no launch_muon_apply_f32).
// With sources (else null): each sub-matrix's gradient and momentum rows, for the plan's fused
// momentum step (PolarSource; then launch_muon_stats, not launch_muon_momentum_f32, made partial).
void launch_muon_prep(const StepArgs &a, const Chunk *chunks, const Slot *slots, Counters c, MuonCfg cfg,
                      const int32_t *first, int64_t mats, const float *partial, double *sumsq,
                      symoc::cuda::PolarTarget *targets, symoc::cuda::PolarSource *sources, cudaStream_t s);
// The fully fused path's only pass before the plan: the partial sums of squares that
// launch_muon_momentum_f32 writes (bit for bit where that kernel takes the same 4-wide sweep,
// i.e. rows x cols a multiple of 4, so its U slots are 16-byte aligned; otherwise the same
// values summed in another order), and the non-finite flags of the blocks
// (it replaces launch_check); it writes neither the momentum nor U.
void launch_muon_stats(const StepArgs &a, const Chunk *chunks, int nchunks, const Slot *slots, Counters c,
                       MuonCfg cfg, float *partial, cudaStream_t s);
void launch_muon_apply_f32(const StepArgs &a, const Chunk *chunks, int nchunks, const Slot *slots, Counters c,
                           MuonCfg cfg, const float *O, cudaStream_t s);

// Muon's quintic Newton-Schulz (a, b, c) = (3.4445, -4.7750, 2.0315), `steps` iterations, on
// `batch` row-major rows x cols bf16 matrices X (already normalized), fp32 accumulation.
// X and Y ping-pong (*result: the one holding the result); A, B: Gram-sized scratch.
cublasStatus_t newton_schulz_batched(cublasHandle_t h, cudaStream_t s, uint16_t *X, uint16_t *Y, uint16_t *A,
                                     uint16_t *B, int64_t batch, int64_t rows, int64_t cols, int steps,
                                     uint16_t **result);

} // namespace symoc::rt::cuda::detail
