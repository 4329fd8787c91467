// Batched matrix kernels of the CUDA backend: the GPU counterparts of the dense parts of
// runtime/lib/linalg.cpp (polar factor, eigendecomposition, inverse roots, Gram products)
// and of the row/column reductions the Lau-Su and Symo steps use.
//
// Conventions (one for every function here):
//  - Matrices are row-major fp32 in device memory, `batch` of them at `data + b * stride`,
//    element (i, j) of one at [i * ld + j] (torch's layout for a contiguous [B, rows, cols]
//    tensor: ld = cols, stride = rows * cols). A batch of 1 may use any stride.
//  - Every call is ordered on the caller's `cudaStream_t`; nothing synchronizes the host,
//    and nothing allocates after setup: handles and a small library workspace live in an
//    Engine (created once), per-shape descriptors in a Plan (created once per shape set),
//    scratch in a caller-owned device buffer of plan.workspace_bytes(). The calls are
//    therefore capturable in a CUDA graph (the captured scalars are those of the capture).
//  - One Engine must not be used from two streams at the same time (its library workspace
//    is shared).
//  - Failures (bad shapes, a CUDA / cuBLAS / cuSOLVER error, too small a workspace) throw
//    symoc::rt::Error with a one-line message naming the call and the library status.
//    Numerical failures of an eigensolver are left in a device `info` array (see EighPlan).
//  - Unless noted, `out` may alias the input.
#pragma once

#include "symoc/runtime/core.h"
#include "symoc/runtime/linalg.h"

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace symoc::cuda {

using rt::EigPrecision;
using rt::Error;
using rt::MatFnOptions;
using rt::NewtonRootOptions;
using rt::PolarMethod;
using rt::PolarOptions;

// A strided batch of row-major fp32 matrices in device memory.
struct Batch {
  float *data = nullptr;
  int64_t batch = 1, rows = 0, cols = 0, ld = 0, stride = 0;
  Batch() = default;
  // Packed: ld = cols, stride = rows * cols.
  Batch(float *d, int64_t b, int64_t r, int64_t c) : data(d), batch(b), rows(r), cols(c), ld(c), stride(r * c) {}
  Batch(float *d, int64_t b, int64_t r, int64_t c, int64_t l, int64_t s)
      : data(d), batch(b), rows(r), cols(c), ld(l), stride(s) {}
  float *matrix(int64_t b) const { return data + b * stride; }
};

struct Shape {
  int64_t batch = 1, rows = 0, cols = 0;
};

// Caller-owned device scratch for one plan call (256-byte aligned base recommended).
struct Workspace {
  void *ptr = nullptr;
  size_t bytes = 0;
};

// Library handles (cuBLAS, cuBLASLt, cuSOLVER) on one device plus a 32 MiB library
// workspace, created once; destroyed with the Engine.
class Engine {
public:
  explicit Engine(int device = -1); // -1: the current device
  ~Engine();
  Engine(const Engine &) = delete;
  Engine &operator=(const Engine &) = delete;
  struct Impl;
  Impl &impl() { return *impl_; }

private:
  std::unique_ptr<Impl> impl_;
};

// ------------------------------------------------------------------ products (fp32)
// C = alpha op(A) op(B) + beta C for every matrix of the batch (C.batch of them; A or B
// may have batch 1 and are then shared). SGEMM, never single-pass TF32. CPU: rt::gemm.
// Default (SYMOC_CUDA_FP32_GEMM=sgemm: off): given a workspace, on devices with TF32 tensor cores
// and for products whose sides are all at least 256 (SYMOC_CUDA_TF32X3_MIN), the product
// runs in three TF32 passes over the operands split into TF32 high and low parts, in chunks
// of the batch that fit the workspace (without one, or where not one matrix fits, SGEMM):
// faster on tensor cores; the hi hi pass runs in inner-dimension chunks of at most
// SYMOC_CUDA_TF32X3_KCHUNK = 1024, each added in IEEE fp32, which holds the error near
// SGEMM's (session 29, H200: 5.2e-7 of fp64 at K = 3072, SGEMM 4.9e-7; gemm_tf32x3.cuh). Non-finite
// inputs give non-finite outputs in the same places, but an inf may come out as NaN.
// gemm_workspace_bytes: the workspace that holds the whole batch in one chunk.
void gemm(Engine &, bool transA, bool transB, float alpha, const Batch &A, const Batch &B, float beta,
          const Batch &C, cudaStream_t, Workspace ws = {});
size_t gemm_workspace_bytes(int64_t m, int64_t n, int64_t k, int64_t batch);

// C = alpha A A^T + beta C (transA = false) or alpha A^T A + beta C (transA = true), full
// symmetric result, fp32. Shampoo's L += G G^T, R += G^T G and Symo's one-sided statistics.
// Sides below 1024 (SYMOC_CUDA_SYRK_MIN): one batched GEMM, both triangles; larger sides the
// upper part only, by cublasSsyrk per matrix (syrk is not batched in cuBLAS). The result is
// mirrored from the upper triangle, so it is exactly symmetric as on the CPU. CPU: rt::gram.
// Unless SYMOC_CUDA_FP32_GEMM=sgemm, a workspace lets it take gemm's three TF32 passes (both
// triangles, batched) instead; with beta 0, two: Z = alpha (hi hi^T / 2 + lo hi^T), then
// C = Z + Z^T in place (exactly symmetric; lo hi^T is hi lo^T's transpose).
void gram(Engine &, bool transA, float alpha, const Batch &A, float beta, const Batch &C, cudaStream_t,
          Workspace ws = {});

// Operands split once for several products (the three TF32 passes of gemm and gram). A
// batch held as hi (its TF32 rounding) and lo (the exact rest, hi + lo == X bit for bit), both
// packed, for an operand that feeds several products: Shampoo's gradient (both Grams and the
// preconditioning) and its roots (every step until the next refresh).
struct SplitBatch {
  Batch hi;             // packed
  float *lo = nullptr;  // packed, hi's shape
};
// Whether products of sides m x n and inner dimension k take the three passes on this engine
// (SYMOC_CUDA_FP32_GEMM unset, a TF32 device, every side >= SYMOC_CUDA_TF32X3_MIN); where not,
// callers keep gemm()/gram() on the unsplit operands.
bool split_products(Engine &, int64_t m, int64_t n, int64_t k);
// X -> out.hi, out.lo (packed, X's shape; out.hi.data may be X.data: in place).
void split_operand(const Batch &X, const SplitBatch &out, cudaStream_t);
// gemm() over split operands: the same three passes without a workspace. Throws where
// split_products does not hold.
void gemm(Engine &, bool transA, bool transB, float alpha, const SplitBatch &A, const SplitBatch &B, float beta,
          const Batch &C, cudaStream_t);
// The half Z of alpha A A^T (transA false) or alpha A^T A: Z = alpha (hi hi^T / 2 + lo hi^T),
// two passes; Z + Z^T is gram()'s product bit for bit (the caller adds it, e.g. fused into its
// accumulation). Throws where split_products does not hold.
void gram_half(Engine &, bool transA, float alpha, const SplitBatch &A, const Batch &Z, cudaStream_t);

// ------------------------------------------------------------ row / column reductions
// All per matrix of the batch, fp32 data, sums in fp64.
enum class Axis { Rows, Cols };
// out[b * n + i] = ||row i|| (Rows, n = rows) or ||column i|| (Cols, n = cols).
void norms(const Batch &X, Axis, float *out, cudaStream_t);
// Y = X with each row (Rows) or column (Cols) divided by (its norm + eps): Lau-Su Row / Col
// (CPU: rowscale in runtime/lib/optim.cpp).
void normalize(const Batch &X, Axis, float eps, const Batch &Y, cudaStream_t);
// Y = X minus its mean row (each column centred): Lau-Su CenteredRow, Symo's S components.
void center_rows(const Batch &X, const Batch &Y, cudaStream_t);
// out[b] = ||X_b||_F (CPU: rt::frob_norm); out[b] = <X_b, Y_b> (the Lau-Su nuclear scale).
void frob_norms(const Batch &X, float *out, cudaStream_t);
void dots(const Batch &X, const Batch &Y, float *out, cudaStream_t);
// X_b *= s[b] (s on the device: no host round trip for data-dependent scales).
void scale(const Batch &X, const float *s, cudaStream_t);

// ------------------------------------------------------------------ eigendecomposition
// Symmetric eigendecomposition of each n x n S_b (read from its row-major lower triangle,
// as LAPACK's 'U' on the column-major view, like rt::sym_eig): w ascending, row k of V_b the
// k-th eigenvector. Method: Jacobi batched (cusolverDn{S,D}syevjBatched) for n <= 32,
// cusolverDnXsyevBatched (one call for the whole batch; one cusolverDnXsyevd per matrix
// where the library reports it unsupported) above, or PerMatrix: one cusolverDnXsyevd per
// matrix. Auto: Jacobi for n <= 32; PerMatrix for a batch of 2 to 6 at n >= 768 (the batched
// solver costs about as much for 3 matrices as for 12 there); Tridiagonal (below) for Float32
// batches of 7 or more at n >= 512; else Batched;
// SYMOC_CUDA_EIGH=batched|per-matrix|tridiagonal (read at the plan's construction) forces one.
// Tridiagonal: symoc's own solver (n >= 2): a batched Householder tridiagonalization
// (sytrd.cu), a batched tridiagonal eigensolver (bisection and twisted factorizations in
// double, tridiag_solve.cu) and a blocked back-transformation, every stage one launch or
// GEMM over the batch (capturable). Per-matrix runs are not capturable (refused under a
// capture). Float64
// converts in and out of double. info (device, batch ints, or null: kept in the workspace)
// receives cuSOLVER's per-matrix status. CPU: rt::sym_eig.
enum class EigMethod { Auto, Jacobi, Batched, PerMatrix, Tridiagonal };
class EighPlan {
public:
  EighPlan(Engine &, int64_t n, int64_t batch, EigPrecision, EigMethod = EigMethod::Auto);
  ~EighPlan();
  size_t workspace_bytes() const;
  void run(const Batch &S, float *w, const Batch &V, Workspace, cudaStream_t, int *info = nullptr);
  struct Impl;

private:
  std::unique_ptr<Impl> impl_;
};

// out_b = (S_b + eps I)^p for symmetric PSD S_b via the eigendecomposition: S symmetrized
// ((S + S^T) / 2), eigenvalues clamped at 0, then + eps; for p < 0 eigenvalues <=
// o.rcond * max map to 0 (pseudo-inverse). In o.precision (double by default, as the CPU).
// Shampoo's inverse p-th roots (p = -1/exponent) and Symo's (C + eps I)^{-1/2}.
// CPU: rt::sym_pow_eig.
class SymPowPlan {
public:
  SymPowPlan(Engine &, int64_t n, int64_t batch, const MatFnOptions & = {});
  ~SymPowPlan();
  size_t workspace_bytes() const;
  void run(const Batch &S, double p, double eps, const Batch &out, Workspace, cudaStream_t);
  // The same over count parts whose batches add up to the plan's: S[i] -> out[i], one
  // eigensolve over all of them (matrices of several owners in one call).
  void run(const Batch *S, const Batch *out, int count, double p, double eps, Workspace, cudaStream_t);
  struct Impl;

private:
  std::unique_ptr<Impl> impl_;
};

// out_b = (S_b + eps I)^(-1/p) for symmetric PSD S_b by the coupled Newton iteration, no
// eigendecomposition: rt::inv_root_newton_fixed's algorithm and options on the device (its
// CPU reference). (S + S^T)/2 + eps I with eps > 0 (no clamp of negative eigenvalues, no
// pseudo-inverse cut: an eigenvalue <= rcond * max that sym_pow maps to 0 gets its root
// here), the start scaled by a power-iteration bound of the largest eigenvalue (batched
// GEMVs), then o.iters steps of strided-batched GEMMs over the whole batch (p/2 + 2 products
// a step for even p, 4 for Shampoo's p = 4; p + 1 for odd p) and elementwise kernels. The
// stopping rule is per matrix on the device (a step that fails the growth test is undone
// and the matrix frozen; one reaching tol is frozen): every step is launched, nothing waits
// for the host, so a run is capturable. Float32: fp32 GEMMs (tf32 = true: TF32 tensor-core
// GEMMs on fp32 data, ~1e-3 relative per product); Float64: DGEMM. o.scaled (Float64 only,
// refused otherwise): the early steps scaled by (p+1)/2 for the matrices above the floor of
// rt::NewtonRootOptions. err / steps (device arrays of batch, optional): each matrix's kept
// ||M - I||_F / sqrt(n) and accepted steps.
class InvRootPlan {
public:
  InvRootPlan(Engine &, int64_t n, int64_t batch, int p, EigPrecision = EigPrecision::Float32,
              const NewtonRootOptions & = {}, bool tf32 = false);
  ~InvRootPlan();
  size_t workspace_bytes() const;
  void run(const Batch &S, double eps, const Batch &out, Workspace, cudaStream_t, float *err = nullptr,
           int *steps = nullptr);
  // Products of n^3 multiply-adds per matrix in one run (the cost model: 2 n^3 FLOPs each).
  int64_t gemms_per_matrix() const;
  struct Impl;

private:
  std::unique_ptr<Impl> impl_;
};

// out_b = X_b (X_b^T X_b + eps I)^p (right) or (X_b X_b^T + eps I)^p X_b (left), with the
// eigenvalue cut rcond for p < 0. Float64: Gram, eigh and both products in double
// (CPU: rt::gram_pow_apply; the eigen route of rt::polar, and Lau-Su's left spectral step).
// Float32: fp32 Gram, sym_pow in fp32, fp32 product (the CPU polar's Float32 eigen route).
class GramPowPlan {
public:
  GramPowPlan(Engine &, Shape, bool right, EigPrecision = EigPrecision::Float64);
  ~GramPowPlan();
  size_t workspace_bytes() const;
  void run(const Batch &X, double p, double eps, double rcond, const Batch &out, Workspace, cudaStream_t);
  struct Impl;

private:
  std::unique_ptr<Impl> impl_;
};

// ------------------------------------------------------------------ polar factor
// Polar factor U V^T of each matrix by an odd quintic iteration in bf16 operands with fp32
// accumulation (Muon): X <- X / (||X||_F * s + 1e-7) (||X|| from the fp32 input, s = 1 for
// Newton-Schulz, 1.01 for Polar Express), then `steps` times
//   A = X X^T,  B = b A + c A A,  X <- a X + B X
// with (a, b, c) = (3.4445, -4.7750, 2.0315) (Newton-Schulz) or the per-step Polar Express
// table, on the wide orientation (a tall matrix, rows > cols, is iterated as its transpose,
// like rt::newton_schulz5 / rt::polar_express and muon.py's X.mT). Every GEMM output is
// rounded to bf16 as torch's bf16 Muon does. out = out_scale * X (fp32).
// Groups of one plan are packed into shape banks: matrices whose wide orientation has the
// same (r, k) share one strided-batched GEMM per product (768x3072 and 3072x768 together),
// and every B = bA + cA^2 of the same r is one GEMM. `out` may alias `in`.
// CPU: rt::newton_schulz5, rt::polar_express.
// Fused epilogue (NewtonSchulzPlan only): instead of writing out, update matrix b of the
// caller's in place, w <- w * decay - lr * (out_scale * X_b), the optimizer's apply step read
// straight from the half-precision bank (the fp32 out round trip and a second pass saved). w is
// row-major with out's rows, cols and ld, float32 or bf16 (bf16 = 1); skip != 0 leaves it
// untouched. Written on the device by the caller before the run (its lr may live on the device).
struct PolarTarget {
  void *w;
  float lr, decay;
  int32_t bf16, skip;
};
// Fused prologue (NewtonSchulzPlan only): instead of reading in, the pack forms matrix b of it
// from the caller's gradient and momentum buffer, Muon's momentum step
//   m <- m + (1 - beta) (g - m);  in_b = nesterov ? g + beta (m - g) : m
// (each operation rounded on its own, as the device optimizer's momentum kernel does), and
// writes m back. g is float32 or bf16 (g_bf16 = 1), m float32, both row-major with in's rows,
// cols and ld. skip != 0: neither is read nor written and the matrix enters the iteration as
// zeros. The norms must come with it (in_sumsq: the caller computes them from the same g and m
// beforehand, e.g. in the pass that checks g for NaN/inf); in.data is not read (may be null).
struct PolarSource {
  const void *g;
  float *m;
  int32_t g_bf16, skip;
};
struct PolarGroup {
  Batch in, out;
  float out_scale = 1.f; // Muon's max(1, rows/cols)^{1/2}, Moonlight's 0.2 max(rows, cols)^{1/2}
  // Optional (NewtonSchulzPlan only), device arrays of in.batch entries:
  // in_sumsq: ||in_b||_F^2 computed by the caller (e.g. while forming in), so the plan skips its
  //   own norm pass over in;
  // targets: the fused update above; out then only gives the shape (its data is not written,
  //   may be null);
  // sources: the fused prologue above (needs in_sumsq), with its beta and nesterov.
  const double *in_sumsq = nullptr;
  const PolarTarget *targets = nullptr;
  const PolarSource *sources = nullptr;
  float beta = 0.f;
  bool nesterov = true;
  // Optional (NewtonSchulzPlan only, needs in_sumsq): a gather. Matrix b of the group (b <
  // in.batch, the plan's batch) is the caller's matrix index[b] (device array): in at
  // in.data + index[b] * in.stride, out likewise, and entry index[b] of in_sumsq, targets and
  // sources. So a subset of the caller's matrices (a distributed rank's blocks) runs as a
  // smaller batch without copies.
  const int32_t *index = nullptr;
  // Optional, with targets (NsTuning::write_through, Gram groups only): the caller's promise
  // that every target of the group has the same lr, decay and dtype (bf16 when targets_bf16,
  // else fp32), rows of out.ld == cols elements, and 16-byte aligned pointers and rows. The
  // plan may then write its last product straight into the weights, one GEMM per group:
  //   W <- decay W - (lr out_scale) (Q X),
  // Q X accumulated in fp32 and never rounded to 16 bits (the unpack rounds it first), a
  // skipped matrix's product sent to a scratch buffer.
  bool targets_uniform = false;
  bool targets_bf16 = false;
};
enum class PolarIteration { NewtonSchulz, PolarExpress };
// Switches for benchmarks and fallbacks; the defaults are the fast path.
enum class NsHalf { BF16, FP16 }; // operand type of the Gram path (fp32 accumulation either way)
// The aspect ratio from which the Gram path pays (FLOPs 44 vs 50 r^3 at k = 2r, 60 vs 90 at
// k = 4r): the value to set in NsTuning::gram_min_aspect to turn it on. Off in the library's
// NsTuning (callers choose); on in the optimizers' (ns_tuning_from_env, matrix_rules.cpp) since
// its accuracy and speed were measured end to end (docs/benchmarks.md, "Gram Newton-Schulz").
constexpr double kGramNsMinAspect = 2.0;
class NewtonSchulzPlan;
struct NsTuning {
  bool banks = true; // merge groups into shape banks and r-classes (false: one bank per group)
  bool lt = true;    // cuBLASLt with C != D (false: cublasGemmStridedBatchedEx after a copy)
  // Gram Newton-Schulz for the groups whose wide orientation r x k has k >= gram_min_aspect * r
  // and k > r (0: never): the same quintic on R = X X^T (r x r), X_t = Q_t X with Q_t a
  // polynomial in R, so X is multiplied only to form R and to apply Q (8 r^2 k + 28 r^3 FLOPs
  // for 5 steps with one restart, against 20 r^2 k + 10 r^3; break-even k = 1.5 r). The
  // restart re-forms X = Q X and R = X X^T after gram_restart steps (0: never), as published
  // for half precision. Equal to the standard iteration in exact arithmetic
  // (tests/python/test_gram_newton_schulz.py); rounding measured in tests/gpu/matrix_test.cpp,
  // on random and on ill-conditioned inputs ("gram stress": fp16 with the restart is closer
  // to fp32 than the standard bf16 path on every spectrum; without it up to 5x further).
  // PolarIteration::NewtonSchulz only: Polar Express groups keep the standard iteration (its
  // Gram form fails the stress spectra, restart or not).
  double gram_min_aspect = 0;
  NsHalf gram_half = NsHalf::FP16;
  int gram_restart = 2;
  // Symmetric products (docs/benchmarks.md, "Symmetric products"): every r x r product known
  // to be symmetric (A = X X^T and A A of the standard iteration; R = X X^T, R R, Q Z, R Z,
  // Z W of the Gram path) with r >= symmetric_min_side computes only its upper part, as two
  // GEMMs (rows [0, h) x all columns, and the trailing (r - h) x (r - h) block, h ~ r / 2) plus
  // a kernel mirroring the upper triangle: 0.75x the FLOPs, each element the same
  // full-length fp32-accumulated dot product, the result exactly symmetric. Off in the
  // library's NsTuning; the optimizers' (ns_tuning_from_env) use it from kSymmetricMinSide.
  bool symmetric_products = false;
  int64_t symmetric_min_side = 2;
  bool symmetric_for(int64_t r) const { return symmetric_products && r >= 2 && r >= symmetric_min_side; }
  // Time cuBLASLt's first few heuristic algorithms for every GEMM on the plan's first eager run
  // and keep the fastest (a one-time host synchronization; a captured first run keeps the
  // heuristic's choice). Like cudnn.benchmark: the algorithm, and so the rounding, may differ
  // between processes. Off in the library's NsTuning.
  bool tune_gemms = false;
  // Run the standard groups on a side stream (forked and joined by events: capturable) beside
  // the Gram groups, their GEMMs with a cuBLASLt workspace of their own (the plan's workspace
  // grows by the engine's 32 MiB), so that the two chains fill each other's partial waves.
  // Only where both kinds of group exist and every standard GEMM is cuBLASLt's. Off in the
  // library's NsTuning; on in the optimizers' since session 23 (SYMOC_CUDA_NS_STREAMS=1: off).
  bool concurrent = false;
  // Take for every product the cuBLASLt algorithm this plan (same Engine, still alive) chose
  // for the same product (shapes, layouts, strides; any batch count), where it runs: a plan over
  // a subset of its matrices (PolarGroup::index) then multiplies each of them as it does, bit
  // for bit (the heuristic may pick another algorithm for another batch count). Products it
  // does not have take the heuristic's; its choices are its heuristic's, not the ones
  // tune_gemms may replace them with on its first run.
  const NewtonSchulzPlan *algorithms_from = nullptr;
  // The Gram path's last product X = Q X written through into the weights of groups whose
  // targets allow it (PolarGroup::targets_uniform): one cuBLASLt GEMM per group with the
  // weights as C and D (pointer arrays, device alpha and beta), instead of the product into
  // the bank and the unpack's read of it (4 bytes per element less, and one pass fewer). Where
  // cuBLASLt has no algorithm for it (e.g. fp16 operands into bf16 weights) the unpack stays.
  // Off in the library's NsTuning; on in the optimizers' (SYMOC_CUDA_NS_WRITE_THROUGH=0: off).
  bool write_through = false;
};
// The side from which symmetric products pay on an H200 (measured, session 9: the half-size
// GEMMs and the mirror run below the dense rate, 1.18x the Newton-Schulz time on GPT-2 small's
// r = 768, 0.97x on LLaMA-1B's r = 2048).
constexpr int64_t kSymmetricMinSide = 2048;
class NewtonSchulzPlan {
public:
  NewtonSchulzPlan(Engine &, std::vector<Shape> groups, PolarIteration = PolarIteration::NewtonSchulz, int steps = 5,
                   NsTuning = {});
  ~NewtonSchulzPlan();
  size_t workspace_bytes() const;
  // groups[i] must have the shape given at construction.
  void run(const PolarGroup *groups, size_t n, Workspace, cudaStream_t);
  // Floating-point operations of one run (4 r^2 k + 2 r^3 per matrix and step, less with
  // symmetric_products; the Gram path's own count for its groups).
  double flops() const;
  bool uses_lt() const; // every GEMM found a cuBLASLt algorithm
  struct Impl;

private:
  std::unique_ptr<Impl> impl_;
};

// rt::polar's dispatcher over the routes above, with rt::PolarOptions: Auto takes the eigen
// route when min(rows, cols) <= auto_eig_max (GramPowPlan, in fn.precision; rcond =
// polar_rcond in double, fn.rcond in float as on the CPU), else Newton-Schulz; NewtonSchulz
// uses ns_steps, PolarExpress pe_steps. out_scale as above.
class PolarPlan {
public:
  PolarPlan(Engine &, std::vector<Shape> groups, const PolarOptions & = {});
  ~PolarPlan();
  size_t workspace_bytes() const;
  void run(const PolarGroup *groups, size_t n, Workspace, cudaStream_t);
  struct Impl;

private:
  std::unique_ptr<Impl> impl_;
};

} // namespace symoc::cuda
