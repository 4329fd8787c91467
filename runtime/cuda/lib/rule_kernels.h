// Kernels of the matrix rules (matrix_rules.cpp): the momentum / input stage, the packing of
// Symo's runs into strided batches, Symo's S-component parts, Shampoo's masked state
// updates, the gauge projections and the final update. Internal to symoc_runtime_cuda.
#pragma once

#include "kernels.h"

namespace symoc::rt::cuda::detail {

// How a rule turns the gradient into its input U (into Slot::u), as the CPU rules do:
enum class PrepMode : int {
  Lerp = 0,   // Muon / Symo muon_momentum: M <- lerp(M, G, 1 - beta); U = nesterov ? lerp(G, M, beta) : M
  Ema = 1,    // Lau-Su: M <- beta M + (1 - beta) G; U = nesterov ? G + beta (M - G) : M
  EmaBc = 2,  // Symo beta1 > 0: M <- beta M + (1 - beta) G; U = M / (1 - beta^t)
  Copy = 3,   // U = G (Shampoo, Symo without momentum)
  Adam = 4,   // Adam(W)'s direction straight into Slot::d (m, v in s0, s1)
  CopySplit = 5, // U = G split for three-pass products: U its TF32 hi, Slot::s0 the exact lo (Shampoo)
};
struct PrepCfg {
  int mode;
  float beta, b2, eps, l2; // Adam: beta = beta1, b2 = beta2, l2 = coupled weight decay
  int nesterov;
  int stage_g; // EmaBc: also copy the gradient into Slot::d (Symo's statistics are the gradient's)
};
// Blocks flagged non-finite get U = 0 (D = 0 for Adam) and keep their state.
void launch_prep(const StepArgs &a, const Chunk *chunks, int nchunks, const Slot *slots, Counters c, PrepCfg cfg,
                 cudaStream_t s);
// W <- W (1 - lr wd) - lr D for active, finite blocks.
void launch_apply(const StepArgs &a, const Chunk *chunks, int nchunks, const Slot *slots, Counters c, float wd,
                  cudaStream_t s);

// One piece of a pack / unpack: columns [col0, col0 + ncols) of packed matrix e, element
// (r, j) of the piece at ptr[r * sr + j * sc] (a member's rows or, transposed, its columns).
struct PackEntry {
  float *ptr;
  int64_t sr, sc;
  int64_t e, col0, ncols;
};
// P[e] (rows x cols, packed) <- its entries; with unpack, the entries <- (P[e] * s1) * s2.
// legacy = false (the default): coalesced on both sides, a transposed piece through a 32 x 32
// shared-memory tile, a row piece one warp per row; true (SYMOC_CUDA_SYMO_AUX=legacy): the
// first version's element walk (uncoalesced stores for a transposed piece).
void launch_pack(const PackEntry *entries, int n, int64_t rows, int64_t cols, float *P, int64_t max_cols,
                 cudaStream_t s, bool legacy);
void launch_unpack(const PackEntry *entries, int n, int64_t rows, int64_t cols, const float *P, float s1, float s2,
                   int64_t max_cols, cudaStream_t s, bool legacy);
// Symo S runs: mu = column means of each P[e] (fp64 sums), P[e] -= mu (rows x cols, n of them).
// legacy: one thread per column walks every row; else a 32 x 32 thread block per 32 columns:
// 32 row lanes sum, then combine in a fixed order (deterministic).
void launch_center_keep(float *P, float *mu, int n, int64_t rows, int64_t cols, cudaStream_t s, bool legacy);
// Symo S runs after the centred part's polar Q[e] (unscaled; zero = true: Q is zero, the
// run has one row): Q *= s1, then the mean line: Q += 1 (mu / sqrt(rows |mu|^2 + eps) -
// colmean(Q)) (one_run in runtime/lib/symo.cpp).
void launch_s_fix(float *Q, const float *mu, int n, int64_t rows, int64_t cols, float s1, float eps, bool zero,
                  cudaStream_t s, bool legacy);

// Two-sided Symo (symo.cpp's two_sided): one sub-block per pair of runs (left run x right
// run) of a block; `rsplit` / `csplit`: the left / right run is an S run (mean line +
// centred part). k0: the pair index of the sub-block's first component pair; rcomps: the
// components of the right side (pair index = k0 + ka * rcomps + kb); moff: its means in the
// scratch (row means, then column means).
struct PairDesc {
  int64_t roff, la, coff, lb;
  int32_t rsplit, csplit;
  int64_t k0, rcomps, moff;
};
// Statistics pass (stats = 1): from the block's statistics matrix (slot.d when staged, else
// slot.u), s <- beta2 s + (1 - beta2) |piece|^2 / d and coef = (s / bc + eps)^-1/2 per pair
// (s, coef: npairs floats / doubles per block); apply pass: D = sum coef * piece(U).
void launch_two_sided(const StepArgs &a, const Slot *slots, Counters c, const PairDesc *pairs, int npd, int nblocks,
                      int64_t cols, float *s, double *coef, double *means, int64_t npairs, int64_t nmeans, float beta2,
                      float eps, int stats, int stats_from_d, cudaStream_t st);

// For each matrix i of n (slot (i / per) * np) whose slot is on and finite: dst_i = beta dst_i +
// src_i (axpby) or dst_i = src_i (copy); matrices of `len` floats at i * len. Shampoo's and
// Symo's statistics (masked: a skipped block keeps its state).
struct MaskArgs {
  uint8_t on[kBatch]; // per slot: do it
  int n;
};
void launch_masked_axpby(const MaskArgs &m, const Slot *slots, Counters c, float *dst, const float *src, int64_t len,
                         float beta, bool copy, cudaStream_t s, int n = -1, int per = 1, int np = 1);
// Shampoo's factor update from a Gram half Z (mx::gram_half): dst_i = beta dst_i + (Z_i + Z_i^T)
// for the slots i on in m and not flagged (k x k per slot; both triangles get the same bits,
// as gram()'s Z + Z^T then launch_masked_axpby would give).
void launch_masked_sym_accumulate(const MaskArgs &m, const Slot *slots, Counters c, float *dst, const float *Z,
                                  int64_t k, float beta, cudaStream_t s);
// hi_i, lo_i = the TF32 split of src_i (mx::split_operand's) for the slots on in m and not
// flagged: a refreshed Shampoo root stored split.
void launch_masked_split(const MaskArgs &m, const Slot *slots, Counters c, float *hi, float *lo, const float *src,
                         int64_t len, cudaStream_t s);
// H_i = float(double(C_i) / (1 - beta2^t)) with t the step of the block of slot
// (i / per) * np (bias_correction; t counts this step).
void launch_bias_scale(const Slot *slots, Counters c, const float *C, float *H, int n, int per, int np, int64_t len,
                       float beta2, cudaStream_t s);
// Q[e] row i += v[e] for every row (Symo's mean line added to each row of the run).
void launch_add_rows(float *Q, const float *v, int n, int64_t rows, int64_t cols, cudaStream_t s);

// NorMuon's neuron-wise normalization of Muon's scaled polar factor D = scale * O in Slot::d
// (optim.cpp's neuron_normalize): per line (axis 0: rows, 1: columns) v in Slot::s1 (lines
// floats) advances, D's lines are divided by sqrt(v) + eps and D keeps its norm. scale: Muon's
// max(1, sub/cols)^1/2 (sub = head_rows or rows). sq: 2 * max_lines doubles per slot.
void launch_line_norm(const StepArgs &a, const Chunk *chunks, int nchunks, const Slot *slots, Counters c, int nslots,
                      int axis, int64_t head_rows, float beta2, float eps, int64_t max_lines, double *sq,
                      cudaStream_t s);

// Unit rescale gauges (ReluRescale, SwiGLURescale, RowScale): for each block of the group
// (slots blk * np + k) and unit u, remove from the directions the component along
// (row u of W_in, b_u, -column u of W_out) (GaugeProjected::project). ia / ib / ic: the
// positions of W_in, the bias and W_out in the block (-1: absent).
void launch_gauge_rescale(const StepArgs &a, const Slot *slots, Counters c, int nblocks, int np, int ia, int ib,
                          int ic, int64_t units, cudaStream_t s);

} // namespace symoc::rt::cuda::detail
