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

// Inverse p-th root (S + eps I)^{-1/p} by the coupled Newton iteration (Guo & Higham);
// stops when ||M - I||_max < tol or after max_iters.
void inv_root_newton(Context &ctx, const MatView &S, int p, double eps, const MatView &out,
                     int max_iters = 100, double tol = 1e-6);

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
