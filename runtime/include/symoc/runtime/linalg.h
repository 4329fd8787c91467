// Dense kernels (OpenBLAS sgemm, LAPACKE syevd) and matrix functions: polar factor and
// inverse p-th roots by eigendecomposition, Newton-Schulz, Polar Express and coupled Newton.
// All scratch memory comes from the Context's workspace.
#pragma once

#include "symoc/runtime/core.h"

namespace symoc::rt {

// C = alpha * op(A) op(B) + beta * C  (row-major, cblas semantics).
void gemm(Context &ctx, bool transA, bool transB, float alpha, const MatView &A,
          const MatView &B, float beta, const MatView &C);
// C = alpha * A A^T (transA=false) or A^T A (transA=true), full symmetric result.
void gram(Context &ctx, bool transA, float alpha, const MatView &A, float beta, const MatView &C);
void transpose(const MatView &src, const MatView &dst);
float frob_norm(const MatView &A);
bool all_finite(const float *x, size_t n);

enum class EigPrecision { Float32, Float64 };

struct MatFnOptions {
  EigPrecision precision = EigPrecision::Float64; // eigendecompositions in double by default
  double rcond = 1e-7;  // eigenvalues <= rcond * max are treated as zero (pseudo-inverse)
};

// Symmetric eigendecomposition of the n x n row-major S: w ascending, V row i = i-th
// eigenvector (V may alias S).
void sym_eig(Context &ctx, const MatView &S, double *w, const MatView &V, EigPrecision p);

// out = (S + eps I)^p for symmetric PSD S via eigh (negative eigenvalues clamped to 0).
// For p < 0, eigenvalues <= rcond * max (after eps) map to 0: the pseudo-inverse.
// out may alias S.
void sym_pow_eig(Context &ctx, const MatView &S, double p, double eps, const MatView &out,
                 const MatFnOptions &o = {});

// Inverse p-th root (S + eps I)^{-1/p} by the coupled Newton iteration (Guo & Higham):
// inv_root_newton_fixed below with max_iters steps and tol (eps must be > 0).
void inv_root_newton(Context &ctx, const MatView &S, int p, double eps, const MatView &out,
                     int max_iters = 100, double tol = 1e-6);

// The coupled Newton inverse root as the CUDA backend runs it (symoc::cuda::InvRootPlan,
// SYMOC_CUDA_ROOT=newton): a fixed budget of steps with a per-matrix freeze, so that a GPU
// batch needs no host synchronization. A = (S + S^T)/2 + eps I (eps > 0: there is no
// pseudo-inverse cut), lambda = power_iters power iterations from a fixed start vector,
// z = (p+1) / (2 min(||A||_F, 1.25 lambda)), M = z A, H = z^(1/p) I, then `iters` times
//   T = ((p+1) I - M) / p,  H <- H T,  M <- T^(p/2) M T^(p/2) (even p) or T^p M (odd p),
// with e = ||M - I||_F / sqrt(n): a step with e >= growth * e_prev is undone and the matrix
// frozen (rounding floor or divergence), a step reaching e <= tol freezes it. out = (H + H^T)/2.
// An eigenvalue that has not converged after `iters` steps keeps its root scaled by
// m^(1/p) < 1 (damped, never amplified).
// scaled (opt-in): before every step but the first and the last kNewtonScaledTail, M <- c M
// and H <- c^(1/p) H with c = (p+1)/2 (M = H^p A is kept). After a step M's spectrum lies in
// (0, 1], so c M stays in (0, p+1), where the iteration converges; the smallest eigenvalues
// then grow ~6x a step instead of (1 + 1/p)^p = 2.44x, while those near 1 drop to 0.38 and
// come back in the unscaled tail (0.38 -> 1 - 6e-11 in 5 steps). A scaled step may raise the
// error by design, so its test is the invariant instead (||M - I||_F / sqrt(n) <= 1 while the
// spectrum is in (0, 1]: undone and frozen above `growth`). An eigenvalue that rounding made
// negative would grow without bound under scaling, so a matrix is scaled only when the
// smallest eigenvalue of the start, z eps, is >= kNewtonScaleFloor = 64 x 2^-24 (the rounding
// of an fp32 factor leaves ~2^-24 lambda_max in a Gram's null space), and only in double
// (the GPU plan refuses scaled fp32: its own products' rounding is of that order).
constexpr int kNewtonScaledTail = 5;
constexpr double kNewtonScaleFloor = 64.0 / 16777216.0;
struct NewtonRootOptions {
  int iters = 16;       // Newton steps (a frozen matrix keeps its iterate)
  int power_iters = 10; // power iterations for the largest eigenvalue (the start's scale)
  double tol = 1e-6;    // freeze once ||M - I||_F / sqrt(n) <= tol
  double growth = 1.2;  // undo and freeze a step that multiplies that error by >= growth
  bool scaled = false;  // the scaled steps above
};
// Step `it`'s (0-based) scale c for a matrix whose start passed the floor (1: unscaled).
inline double newton_step_scale(const NewtonRootOptions &o, int p, int it) {
  return o.scaled && it >= 1 && it < o.iters - kNewtonScaledTail ? (p + 1) / 2.0 : 1.0;
}
// What one matrix's iteration did (the GPU plan reports the same per matrix).
struct NewtonRootInfo {
  int steps = 0;        // accepted steps
  double error = 0;     // ||M - I||_F / sqrt(n) at the kept iterate
  double lambda = 0;    // the power iteration's estimate of the largest eigenvalue of A
};
// The iteration above in double (the CPU reference of the GPU plan). Throws for p < 1 or
// eps <= 0. out may alias S.
void inv_root_newton_fixed(Context &ctx, const MatView &S, int p, double eps, const MatView &out,
                           const NewtonRootOptions &o = {}, NewtonRootInfo *info = nullptr);
// The power iteration's start vector, entry i (shared with the GPU plan): pseudo-random signs
// and magnitudes in [0.5, 1.5), so no structured matrix is orthogonal to it by construction.
inline double newton_root_start(int64_t i) {
  uint32_t h = uint32_t(i + 1) * 2654435761u;
  h ^= h >> 15;
  h *= 2246822519u;
  h ^= h >> 13;
  return ((h >> 16) & 1 ? 1.0 : -1.0) * (0.5 + double(h & 0xffff) / 65536.0);
}

enum class PolarMethod { Auto, Eig, NewtonSchulz, PolarExpress };
const char *to_string(PolarMethod m);

struct PolarOptions {
  PolarMethod method = PolarMethod::Auto;
  int ns_steps = 5;          // Newton-Schulz iterations (Muon: 5)
  int pe_steps = 8;          // Polar Express iterations (its table has 8 entries)
  MatFnOptions fn;           // for the eigen route
  int64_t auto_eig_max = 64; // Auto: eigen route when min(m, n) <= this, else Newton-Schulz
  // Eigen route in double: Gram eigenvalues <= polar_rcond * max are dropped (singular
  // values below ~1e-6 of the largest: fp32 rounding level of the input).
  double polar_rcond = 1e-12;
};

inline PolarOptions polar_options(PolarMethod m) {
  PolarOptions o;
  o.method = m;
  return o;
}

// out = X (X^T X + eps I)^p (right) or (X X^T + eps I)^p X (left), Gram and
// eigendecomposition in double; eigenvalues <= rcond * max dropped for p < 0.
void gram_pow_apply(Context &ctx, const MatView &X, bool right, double p, double eps, double rcond,
                    const MatView &out);

// out = polar factor of X (U V^T), computed on the Gram of the smaller side. The iterative
// methods return an approximation whose singular values are near (not exactly) 1; the
// eigen route is exact up to rounding and zero on X's null space. out may not alias X.
void polar(Context &ctx, const MatView &X, const MatView &out, const PolarOptions &o = {});

// Muon's quintic Newton-Schulz map on X (normalized by ||X||_F + 1e-7, transposed when
// rows > cols), with (a, b, c) = (3.4445, -4.7750, 2.0315).
void newton_schulz5(Context &ctx, const MatView &X, const MatView &out, int steps = 5);
// Polar Express (Amsel et al. 2025): one optimized (a, b, c) per iteration.
void polar_express(Context &ctx, const MatView &X, const MatView &out, int steps = 8);

} // namespace symoc::rt
