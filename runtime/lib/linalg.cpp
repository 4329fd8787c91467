#include "symoc/runtime/linalg.h"
#include "symoc/runtime/polar_coefficients.h"

#include <algorithm>
#include <cblas.h>
#include <cmath>
#include <cstring>
#include <lapacke.h>

namespace symoc::rt {

void gemm(Context &, bool tA, bool tB, float alpha, const MatView &A, const MatView &B,
          float beta, const MatView &C) {
  int64_t m = tA ? A.cols : A.rows, k = tA ? A.rows : A.cols;
  int64_t kb = tB ? B.cols : B.rows, n = tB ? B.rows : B.cols;
  if (k != kb || C.rows != m || C.cols != n)
    throw Error("gemm: shape mismatch (" + std::to_string(m) + "x" + std::to_string(k) + ") * (" +
                std::to_string(kb) + "x" + std::to_string(n) + ") -> " + std::to_string(C.rows) +
                "x" + std::to_string(C.cols));
  if (m == 0 || n == 0) return;
  if (k == 0) {
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) C(i, j) = beta == 0.f ? 0.f : beta * C(i, j);
    return;
  }
  cblas_sgemm(CblasRowMajor, tA ? CblasTrans : CblasNoTrans, tB ? CblasTrans : CblasNoTrans, int(m),
              int(n), int(k), alpha, A.data, int(A.ld), B.data, int(B.ld), beta, C.data, int(C.ld));
}

void gram(Context &ctx, bool tA, float alpha, const MatView &A, float beta, const MatView &C) {
  int64_t n = tA ? A.cols : A.rows, k = tA ? A.rows : A.cols;
  if (C.rows != n || C.cols != n) throw Error("gram: output must be " + std::to_string(n) + "x" + std::to_string(n));
  if (n == 0) return;
  if (k == 0) {
    gemm(ctx, tA, !tA, alpha, A, A, beta, C);
    return;
  }
  // syrk does half the flops of a gemm; it fills the upper triangle, mirrored below.
  cblas_ssyrk(CblasRowMajor, CblasUpper, tA ? CblasTrans : CblasNoTrans, int(n), int(k), alpha,
              A.data, int(A.ld), beta, C.data, int(C.ld));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < i; ++j) C(i, j) = C(j, i);
}

void transpose(const MatView &s, const MatView &d) {
  if (d.rows != s.cols || d.cols != s.rows) throw Error("transpose: shape mismatch");
  constexpr int64_t T = 32; // blocked for cache reuse on large embeddings
  for (int64_t i0 = 0; i0 < s.rows; i0 += T)
    for (int64_t j0 = 0; j0 < s.cols; j0 += T)
      for (int64_t i = i0; i < std::min(s.rows, i0 + T); ++i)
        for (int64_t j = j0; j < std::min(s.cols, j0 + T); ++j) d(j, i) = s(i, j);
}

float frob_norm(const MatView &A) {
  double s = 0;
  for (int64_t i = 0; i < A.rows; ++i)
    for (int64_t j = 0; j < A.cols; ++j) s += double(A(i, j)) * A(i, j);
  return float(std::sqrt(s));
}

bool all_finite(const float *x, size_t n) {
  // NaN and Inf are the floats whose exponent bits are all ones. An integer OR-reduction
  // vectorizes (a float sum would be a serial dependency chain without -ffast-math).
  typedef uint32_t __attribute__((may_alias)) u32_alias;
  const auto *u = reinterpret_cast<const u32_alias *>(x);
  uint32_t bad = 0;
  const int64_t N = int64_t(n);
#pragma omp parallel for simd reduction(| : bad) if (N > (1 << 18))
  for (int64_t i = 0; i < N; ++i) bad |= uint32_t((u[i] & 0x7f800000u) == 0x7f800000u);
  return bad == 0;
}

void sym_eig(Context &ctx, const MatView &S, double *w, const MatView &V, EigPrecision prec) {
  const int64_t n = S.rows;
  if (S.cols != n || V.rows != n || V.cols != n) throw Error("sym_eig: matrix must be square");
  if (n == 0) return;
  Workspace::Frame f(ctx.workspace());
  // LAPACK is column-major; a symmetric matrix reads the same, and the eigenvectors it
  // returns as columns are rows of the row-major result.
  const lapack_int N = lapack_int(n), lwork = lapack_int(1 + 6 * n + 2 * n * n), liwork = lapack_int(3 + 5 * n);
  lapack_int *iwork = reinterpret_cast<lapack_int *>(f.ints(size_t(liwork) * sizeof(lapack_int) / sizeof(int) + 1));
  lapack_int info;
  if (prec == EigPrecision::Float64) {
    double *a = f.doubles(size_t(n * n)), *work = f.doubles(size_t(lwork));
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j) a[i * n + j] = S(i, j);
    info = LAPACKE_dsyevd_work(LAPACK_COL_MAJOR, 'V', 'U', N, a, N, w, work, lwork, iwork, liwork);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j) V(i, j) = float(a[i * n + j]);
  } else {
    float *a = f.floats(size_t(n * n)), *work = f.floats(size_t(lwork)), *wf = f.floats(size_t(n));
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j) a[i * n + j] = S(i, j);
    info = LAPACKE_ssyevd_work(LAPACK_COL_MAJOR, 'V', 'U', N, a, N, wf, work, lwork, iwork, liwork);
    for (int64_t i = 0; i < n; ++i) w[i] = wf[i];
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j) V(i, j) = a[i * n + j];
  }
  if (info != 0) throw Error("sym_eig: LAPACK syevd failed (info " + std::to_string(info) + ")");
}

namespace {
// out = f(S) for symmetric S (n x n, row-major doubles), f(w) = (max(w,0) + eps)^p with the
// pseudo-inverse cut for p < 0. a may alias nothing; all in double.
void sym_pow_double(Context &ctx, const double *S, int64_t n, double p, double eps, double rcond, double *out) {
  Workspace::Frame f(ctx.workspace());
  double *a = f.doubles(size_t(n * n)), *b = f.doubles(size_t(n * n)), *w = f.doubles(size_t(n));
  const lapack_int N = lapack_int(n), lwork = lapack_int(1 + 6 * n + 2 * n * n), liwork = lapack_int(3 + 5 * n);
  double *work = f.doubles(size_t(lwork));
  lapack_int *iwork = reinterpret_cast<lapack_int *>(f.ints(size_t(liwork) + 1));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) a[i * n + j] = 0.5 * (S[i * n + j] + S[j * n + i]);
  lapack_int info = LAPACKE_dsyevd_work(LAPACK_COL_MAJOR, 'V', 'U', N, a, N, w, work, lwork, iwork, liwork);
  if (info != 0) throw Error("sym_pow: LAPACK dsyevd failed (info " + std::to_string(info) + ")");
  double wmax = 0;
  for (int64_t k = 0; k < n; ++k) {
    w[k] = std::max(w[k], 0.0) + eps;
    wmax = std::max(wmax, w[k]);
  }
  for (int64_t k = 0; k < n; ++k) {
    double fk = (p < 0 && !(w[k] > rcond * wmax && w[k] > 0)) ? 0.0 : std::pow(w[k], p);
    for (int64_t j = 0; j < n; ++j) b[k * n + j] = fk * a[k * n + j];
  }
  // out = V^T diag(f) V with V rows = eigenvectors (a, row-major view).
  cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, int(n), int(n), int(n), 1.0, a, int(n), b, int(n), 0.0, out,
              int(n));
}

void spectral_map(Context &ctx, const MatView &S, const MatView &out, const MatFnOptions &o, double eps, double p) {
  const int64_t n = S.rows;
  Workspace::Frame f(ctx.workspace());
  if (o.precision == EigPrecision::Float64) {
    double *a = f.doubles(size_t(n * n)), *c = f.doubles(size_t(n * n));
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j) a[i * n + j] = S(i, j);
    sym_pow_double(ctx, a, n, p, eps, o.rcond, c);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j) out(i, j) = float(c[i * n + j]);
  } else {
    double *w = f.doubles(size_t(n));
    MatView V = f.mat(n, n), B = f.mat(n, n);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j) V(i, j) = 0.5f * (S(i, j) + S(j, i));
    sym_eig(ctx, V, w, V, EigPrecision::Float32);
    double wmax = 0;
    for (int64_t k = 0; k < n; ++k) {
      w[k] = std::max(w[k], 0.0) + eps;
      wmax = std::max(wmax, w[k]);
    }
    for (int64_t k = 0; k < n; ++k) {
      double fk = (p < 0 && !(w[k] > o.rcond * wmax && w[k] > 0)) ? 0.0 : std::pow(w[k], p);
      for (int64_t j = 0; j < n; ++j) B(k, j) = float(fk) * V(k, j);
    }
    gemm(ctx, true, false, 1.f, V, B, 0.f, out);
  }
}
} // namespace

void sym_pow_eig(Context &ctx, const MatView &S, double p, double eps, const MatView &out,
                 const MatFnOptions &o) {
  if (S.rows != S.cols || out.rows != S.rows || out.cols != S.cols) throw Error("sym_pow: matrix must be square");
  if (S.rows == 0) return;
  spectral_map(ctx, S, out, o, eps, p);
}

// The CPU Shampoo's coupled-Newton root is the GPU plan's iteration (inv_root_newton_fixed)
// with its own step budget and tolerance.
void inv_root_newton(Context &ctx, const MatView &S, int p, double eps, const MatView &out,
                     int max_iters, double tol) {
  NewtonRootOptions o;
  o.iters = max_iters;
  o.tol = tol;
  inv_root_newton_fixed(ctx, S, p, eps, out, o);
}

namespace {
// C = A B for n x n row-major doubles.
void dmul(const double *A, const double *B, double *C, int64_t n) {
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(n), int(n), int(n), 1.0, A, int(n), B, int(n), 0.0, C,
              int(n));
}
double dev_from_identity(const double *M, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) {
      const double d = M[i * n + j] - (i == j ? 1.0 : 0.0);
      s += d * d;
    }
  return std::sqrt(s / double(n));
}
} // namespace

void inv_root_newton_fixed(Context &ctx, const MatView &S, int p, double eps, const MatView &out,
                           const NewtonRootOptions &o, NewtonRootInfo *info) {
  const int64_t n = S.rows, nn = n * n;
  if (S.cols != n || out.rows != n || out.cols != n) throw Error("inv_root_newton_fixed: matrix must be square");
  if (p < 1) throw Error("inv_root_newton_fixed: p must be >= 1");
  if (!(eps > 0)) throw Error("inv_root_newton_fixed: eps must be > 0 (no pseudo-inverse cut)");
  if (n == 0) return;
  Workspace::Frame f(ctx.workspace());
  double *A = f.doubles(size_t(nn)), *H = f.doubles(size_t(nn)), *M = f.doubles(size_t(nn)),
         *Hn = f.doubles(size_t(nn)), *Mn = f.doubles(size_t(nn)), *T = f.doubles(size_t(nn)),
         *P = f.doubles(size_t(nn)), *W = f.doubles(size_t(nn)), *X = f.doubles(size_t(nn)),
         *v = f.doubles(size_t(n)), *y = f.doubles(size_t(n));
  double fro = 0;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) {
      A[i * n + j] = 0.5 * (double(S(i, j)) + double(S(j, i))) + (i == j ? eps : 0.0);
      fro += A[i * n + j] * A[i * n + j];
    }
  fro = std::sqrt(fro);
  // Largest eigenvalue from below: v <- A v / ||A v||, lambda = ||A v|| at the last step.
  double lambda = 0, vn = 0;
  for (int64_t i = 0; i < n; ++i) v[i] = newton_root_start(i), vn += v[i] * v[i];
  for (int64_t i = 0; i < n; ++i) v[i] /= std::sqrt(vn);
  for (int k = 0; k < o.power_iters; ++k) {
    cblas_dgemv(CblasRowMajor, CblasNoTrans, int(n), int(n), 1.0, A, int(n), v, 1, 0.0, y, 1);
    double s = 0;
    for (int64_t i = 0; i < n; ++i) s += y[i] * y[i];
    lambda = std::sqrt(s);
    for (int64_t i = 0; i < n; ++i) v[i] = y[i] / lambda;
  }
  // 1.25 lambda >= lambda_max unless the estimate is 20% short (then M's spectrum still lies
  // in (0, p+1), where the iteration converges, down to lambda = 0.4 lambda_max).
  const double bound = o.power_iters > 0 ? (1.25 * lambda < fro ? 1.25 * lambda : fro) : fro;
  // A non-finite A (or lambda) makes every output entry NaN, never a finite wrong root.
  const double z = std::isfinite(bound) && bound > 0 && std::isfinite(lambda) ? (p + 1.0) / (2.0 * bound) : NAN;
  const double hz = std::pow(z, 1.0 / p);
  for (int64_t e = 0; e < nn; ++e) M[e] = z * A[e], H[e] = 0 * hz; // NaN everywhere for a NaN z
  for (int64_t i = 0; i < n; ++i) H[i * n + i] = hz;
  double err = dev_from_identity(M, n);
  bool frozen = !(err > o.tol);
  int steps = 0;
  const int half = p % 2 == 0 ? p / 2 : p; // T's power applied on each side (even) or once (odd)
  const bool may_scale = z * eps >= kNewtonScaleFloor; // NewtonRootOptions::scaled's floor
  for (int it = 0; it < o.iters && !frozen; ++it) {
    const double c = may_scale ? newton_step_scale(o, p, it) : 1.0, hc = std::pow(c, 1.0 / p); // M <- c M, H <- c^(1/p) H
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j) T[i * n + j] = ((i == j ? p + 1.0 : 0.0) - c * M[i * n + j]) / p;
    dmul(H, T, Hn, n);
    if (c != 1.0)
      for (int64_t e = 0; e < nn; ++e) Hn[e] *= hc;
    const double *Q = T; // Q = T^half by repeated products (p is small)
    for (int k = 1; k < half; ++k) {
      double *dst = Q == P ? W : P;
      dmul(Q, T, dst, n);
      Q = dst;
    }
    if (p % 2 == 0) {
      dmul(M, Q, X, n);
      dmul(Q, X, Mn, n);
    } else {
      dmul(Q, M, Mn, n);
    }
    if (c != 1.0)
      for (int64_t e = 0; e < nn; ++e) Mn[e] *= c;
    const double e = dev_from_identity(Mn, n);
    // rounding floor or divergence: keep the last iterate (a scaled step: the invariant e <= 1)
    if (c != 1.0 ? !(e <= o.growth) : !(e < o.growth * err)) break;
    std::swap(H, Hn), std::swap(M, Mn);
    err = e, ++steps;
    frozen = e <= o.tol;
  }
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) out(i, j) = float(0.5 * (H[i * n + j] + H[j * n + i]));
  if (info) *info = NewtonRootInfo{steps, err, lambda};
}

const char *to_string(PolarMethod m) {
  switch (m) {
  case PolarMethod::Auto: return "auto";
  case PolarMethod::Eig: return "eig";
  case PolarMethod::NewtonSchulz: return "newton-schulz";
  case PolarMethod::PolarExpress: return "polar-express";
  }
  return "?";
}

namespace {
// Shared driver of the odd-polynomial iterations X <- a X + (b A + c A^2) X, A = X X^T,
// on the Gram of the smaller side. A tall X (rows > cols) is iterated as its transpose
// without copying it: A = X^T X and X <- a X + X B (the same products, as muon.py's X.mT
// view). No OpenMP region sits between the BLAS calls: a variant with OpenMP copies and
// mirrors there (and A^2 by syrk) ran 2.5x (768 x 768) to 12x (256 x 1024) slower
// (OpenMP's and OpenBLAS's thread pools spin against each other).
template <class Coef>
void odd_poly_iteration(Context &ctx, const MatView &X, const MatView &out, int steps, double scale_mul,
                        Coef coef) {
  const bool tr = X.rows > X.cols;
  const int64_t R = X.rows, C = X.cols, r = tr ? C : R;
  Workspace::Frame f(ctx.workspace());
  MatView Y = f.mat(R, C), Yn = f.mat(R, C), A = f.mat(r, r), B = f.mat(r, r);
  for (int64_t i = 0; i < R; ++i) std::memcpy(&Y(i, 0), &X(i, 0), sizeof(float) * size_t(C));
  const float inv = float(1.0 / (double(frob_norm(Y)) * scale_mul + 1e-7));
  for (int64_t i = 0; i < R * C; ++i) Y.data[i] *= inv;
  for (int s = 0; s < steps; ++s) {
    double a, b, cc;
    coef(s, a, b, cc);
    gram(ctx, tr, 1.f, Y, 0.f, A); // Y Y^T, or Y^T Y for a tall Y
    std::memcpy(B.data, A.data, sizeof(float) * size_t(r * r));
    gemm(ctx, false, false, float(cc), A, A, float(b), B); // B = b A + c A A
    std::memcpy(Yn.data, Y.data, sizeof(float) * size_t(R * C));
    if (tr) gemm(ctx, false, false, 1.f, Y, B, float(a), Yn); // Yn = a Y + Y B
    else gemm(ctx, false, false, 1.f, B, Y, float(a), Yn);    // Yn = a Y + B Y
    std::swap(Y.data, Yn.data);
  }
  for (int64_t i = 0; i < R; ++i) std::memcpy(&out(i, 0), &Y(i, 0), sizeof(float) * size_t(C));
}
} // namespace

void newton_schulz5(Context &ctx, const MatView &X, const MatView &out, int steps) {
  if (out.rows != X.rows || out.cols != X.cols) throw Error("newton_schulz5: output shape mismatch");
  if (X.size() == 0) return;
  odd_poly_iteration(ctx, X, out, steps, 1.0, [](int, double &a, double &b, double &c) {
    a = kNewtonSchulz5.a, b = kNewtonSchulz5.b, c = kNewtonSchulz5.c;
  });
}

void polar_express(Context &ctx, const MatView &X, const MatView &out, int steps) {
  if (out.rows != X.rows || out.cols != X.cols) throw Error("polar_express: output shape mismatch");
  if (X.size() == 0) return;
  odd_poly_iteration(ctx, X, out, steps, 1.01, [](int s, double &a, double &b, double &c) {
    const OddQuintic q = polar_express_step(s);
    a = q.a, b = q.b, c = q.c;
  });
}

void gram_pow_apply(Context &ctx, const MatView &X, bool right, double p, double eps, double rcond,
                    const MatView &out) {
  if (out.rows != X.rows || out.cols != X.cols) throw Error("gram_pow_apply: output shape mismatch");
  const int64_t m = X.rows, n = X.cols, k = right ? n : m;
  if (m == 0 || n == 0) return;
  Workspace::Frame f(ctx.workspace());
  double *xd = f.doubles(size_t(m * n)), *C = f.doubles(size_t(k * k)), *P = f.doubles(size_t(k * k)),
         *od = f.doubles(size_t(m * n));
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) xd[i * n + j] = X(i, j);
  cblas_dsyrk(CblasRowMajor, CblasUpper, right ? CblasTrans : CblasNoTrans, int(k), int(right ? m : n), 1.0, xd,
              int(n), 0.0, C, int(k));
  for (int64_t i = 0; i < k; ++i)
    for (int64_t j = 0; j < i; ++j) C[i * k + j] = C[j * k + i];
  sym_pow_double(ctx, C, k, p, eps, rcond, P);
  if (right)
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(m), int(n), int(n), 1.0, xd, int(n), P, int(n), 0.0, od, int(n));
  else
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(m), int(n), int(m), 1.0, P, int(m), xd, int(n), 0.0, od, int(n));
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) out(i, j) = float(od[i * n + j]);
}

void polar(Context &ctx, const MatView &X, const MatView &out, const PolarOptions &o) {
  if (out.rows != X.rows || out.cols != X.cols) throw Error("polar: output shape mismatch");
  if (X.size() == 0) return;
  PolarMethod m = o.method;
  if (m == PolarMethod::Auto) m = std::min(X.rows, X.cols) <= o.auto_eig_max ? PolarMethod::Eig : PolarMethod::NewtonSchulz;
  if (m == PolarMethod::NewtonSchulz) return newton_schulz5(ctx, X, out, o.ns_steps);
  if (m == PolarMethod::PolarExpress) return polar_express(ctx, X, out, o.pe_steps);
  // Eigen route on the smaller Gram: polar(X) = X (X^T X)^{+1/2} or (X X^T)^{+1/2} X.
  Workspace::Frame f(ctx.workspace());
  const bool right = X.rows >= X.cols;
  const int64_t k = right ? X.cols : X.rows;
  if (o.fn.precision == EigPrecision::Float64) {
    // In double throughout: the Gram squares the condition number, which fp32 cannot hold.
    gram_pow_apply(ctx, X, right, -0.5, 0.0, o.polar_rcond, out);
    return;
  }
  MatView C = f.mat(k, k);
  gram(ctx, right, 1.f, X, 0.f, C);
  sym_pow_eig(ctx, C, -0.5, 0.0, C, o.fn);
  if (right) gemm(ctx, false, false, 1.f, X, C, 0.f, out);
  else gemm(ctx, false, false, 1.f, C, X, 0.f, out);
}

} // namespace symoc::rt
