// Batched symmetric tridiagonal eigensolver (eigenvalues by bisection, eigenvectors by twisted
// factorizations, clusters by block inverse iteration + Gram-Schmidt), the middle stage of
// sytrd -> tridiag_eig -> ormtr. Each unreduced block is first shifted to the left end of its
// spectrum, T_b - sigma I = L D L^T positive definite (a relatively robust representation, the
// root of MRRR without its representation tree): its eigenvalues mu are computed to high
// RELATIVE accuracy and clusters are formed by relative gaps of mu, so the eigenvalues near 0
// of a rank-deficient matrix (tiny absolute, large relative gaps) get independent vectors.
// Blocks whose L D L^T is not positive definite keep the absolute-gap path on T itself. This header holds the per-thread pieces in double precision
// (SYMOC_HD: callable from kernels and from plain host code compiled by g++), the phase
// functions both drivers share, and the host driver tridiag_eig_host (tests run it).
//
// Conventions. A matrix is scaled by a power of two (exact) so that max(|d|, |e|) lies in
// [0.5, 1); all work is on the scaled copy. It splits into unreduced blocks [lo, hi] at
// negligible e_i. The block [lo, hi] owns the "slots" lo..hi: slot lo + j is its j-th
// smallest eigenvalue, whose vector is zero outside rows lo..hi. Slots are finally ordered
// by eigenvalue (ties: slot order, i.e. block then index) into w and Z's columns.
#pragma once

#include <cfloat>
#include <cmath>
#include <algorithm>
#include <cstdint>
#include <limits>
#include <vector>

#include "host_device.h"

struct CUstream_st; // cudaStream_t is CUstream_st *; declared so g++ needs no CUDA headers

namespace symoc::cuda::detail {

namespace tridiag {

constexpr double kEps = DBL_EPSILON;
// Sturm-count pivots below this are replaced by -kPivmin (the matrix is scaled so e^2 <= 1,
// so e^2 / kPivmin stays finite).
constexpr double kPivmin = 4 * DBL_MIN;
// Bisection stops at width <= 2 eps |lambda| + kAbsTol * bnorm: eps^2 ||T|| is far below what
// the data determines and costs ~50 halvings more than eps ||T|| only for eigenvalues near 0.
constexpr double kAbsTol = DBL_EPSILON * DBL_EPSILON;
// Zero / tiny pivots of the vector solves become +-kPivFloor * bnorm: a perturbation of one
// diagonal entry far below eps ||T||, while 1 / pivot stays far from overflow.
constexpr double kPivFloor = DBL_EPSILON * DBL_EPSILON;
// Cluster threshold of the absolute path (blocks without a root; relative to the block's norm
// bound bnorm). Two vectors from independent
// twisted solves are orthogonal to about c * eps * bnorm / gap (each is the exact eigenvector
// of a matrix within ~eps ||T|| of T), c measured at 1-2 (test GapsNearTheClusterThreshold:
// 1.8e-12 at gap 2e-4). The targets are 1e-10 for fp64 data and 1e-5 for fp32 data (cuSOLVER's
// fp32 solvers reach ~1e-7 n):
//   fp64: gap < 1e-4 bnorm -> cluster (independent vectors would be orthogonal to ~3e-12)
//   fp32: gap < 1e-10 bnorm -> cluster (~4e-6)
// fp32 data is computed in double all the same, so its clusters are far rarer. The fp32
// threshold is as low as its target allows because a cluster costs O(k^2 m) on one block: the
// zero eigenvalues of a rank-deficient Gram factor (Shampoo's first steps), spread by the fp32
// tridiagonalization's rounding, then stay independent (H200, 60 x 768 fp32 of rank 192: 1770
// ms with clusters at 1e-8, against 45 ms at full rank).
constexpr double kClusterGapDouble = 1e-4;
constexpr double kClusterGapFloat = 1e-10;
template <class T> constexpr double cluster_gap() {
  return sizeof(T) == sizeof(double) ? kClusterGapDouble : kClusterGapFloat;
}
// The same thresholds relative to mu (the eigenvalue of the root L D L^T): a vector of L D L^T
// from a twisted factorization has error ~ c eps / relgap (c small, as above), so the fp64 and
// fp32 targets give the same numbers; mu <= ~2 bnorm, so these never cluster less than the
// absolute thresholds would away from the root.
constexpr double kClusterRelDouble = 1e-4;
constexpr double kClusterRelFloat = 1e-10;
template <class T> constexpr double cluster_rel_gap() {
  return sizeof(T) == sizeof(double) ? kClusterRelDouble : kClusterRelFloat;
}
// Root shift sigma = lambda_min - delta, delta = kRootShift * eps * bnorm, doubled up to
// kRootTries times until L D L^T is positive definite. Small delta keeps the relative gaps of
// the eigenvalues next to the root (mu ~ delta + their spread) large; lambda_min is already
// within a few eps * bnorm, so the first or second try usually succeeds.
constexpr double kRootShift = 4;
constexpr int kRootTries = 16;
// Cluster sweeps: after a solve, Gram-Schmidt keeping less than this fraction of a vector's
// norm means the vector was mostly in the span of earlier members; another sweep is run.
constexpr double kKeepRatio = 1e-2;
constexpr int kMaxSweeps = 5;

SYMOC_HD inline double dmax(double a, double b) { return a > b ? a : b; }
SYMOC_HD inline double dmin(double a, double b) { return a < b ? a : b; }

// Number of eigenvalues < x of the unreduced block with diagonal d[0..m-1] and squared
// off-diagonals e2[0..m-2] (e2[i] couples i and i+1): negative pivots of LDL^T(T - x I).
SYMOC_HD inline int sturm_count(const double *d, const double *e2, int m, double x) {
  int count = 0;
  double q = d[0] - x;
  if (fabs(q) < kPivmin) q = -kPivmin;
  count += q < 0;
  for (int i = 1; i < m; ++i) {
    q = (d[i] - x) - e2[i - 1] / q;
    if (fabs(q) < kPivmin) q = -kPivmin;
    count += q < 0;
  }
  return count;
}

// Gershgorin interval [gl, gu] of the block (e: off-diagonals, e[i] couples i and i+1).
SYMOC_HD inline void gershgorin(const double *d, const double *e, int m, double &gl, double &gu) {
  gl = d[0], gu = d[0];
  for (int i = 0; i < m; ++i) {
    const double r = (i > 0 ? fabs(e[i - 1]) : 0.0) + (i + 1 < m ? fabs(e[i]) : 0.0);
    gl = dmin(gl, d[i] - r), gu = dmax(gu, d[i] + r);
  }
}

// The k-th smallest (0-based) eigenvalue of the block by bisection on [gl, gu] (its
// Gershgorin interval; widened here). Invariant: count(a) <= k < count(b).
SYMOC_HD inline double bisect_eigenvalue(const double *d, const double *e2, int m, int k, double gl, double gu) {
  if (m == 1) return d[0];
  const double bnorm = dmax(fabs(gl), fabs(gu));
  const double atol = dmax(kAbsTol * bnorm, 2 * kPivmin);
  double a = gl - 4 * kEps * bnorm * m - 2 * atol, b = gu + 4 * kEps * bnorm * m + 2 * atol;
  for (int it = 0; it < 2200; ++it) { // 2200 halvings reach any double interval's end
    if (b - a <= 2 * kEps * dmax(fabs(a), fabs(b)) + atol) break;
    const double mid = a + 0.5 * (b - a);
    if (mid <= a || mid >= b) break; // no double strictly inside
    if (sturm_count(d, e2, m, mid) > k) b = mid;
    else a = mid;
  }
  return a + 0.5 * (b - a);
}

// The smallest eigenvalue of a block by multisection: each round counts at kRootLanes points
// spaced evenly inside [a, b] (one lane each on the GPU, a warp; one after the other on the
// host) and keeps the sub-interval where the count first turns positive, ~5 bits a round
// against bisection's one. Its start and stopping rule are bisect_eigenvalue's (k = 0), so the
// result has bisection's accuracy; the block roots cost one Sturm pass a round instead of one
// a halving (Shampoo's rank-deficient factors need ~100 halvings: eps^2 absolute).
constexpr int kRootLanes = 32;
struct Bracket {
  double a, b, atol;
};
SYMOC_HD inline Bracket lowest_bracket(int m, double gl, double gu) {
  const double bnorm = dmax(fabs(gl), fabs(gu));
  const double atol = dmax(kAbsTol * bnorm, 2 * kPivmin);
  return {gl - 4 * kEps * bnorm * m - 2 * atol, gu + 4 * kEps * bnorm * m + 2 * atol, atol};
}
SYMOC_HD inline bool bracket_done(const Bracket &br) {
  return br.b - br.a <= 2 * kEps * dmax(fabs(br.a), fabs(br.b)) + br.atol;
}
// Point j (0 <= j < kRootLanes) of a round: nondecreasing in j, inside [a, b].
SYMOC_HD inline double multisect_point(const Bracket &br, int j) {
  return br.a + (br.b - br.a) * (double(j + 1) / double(kRootLanes + 1));
}
// first: the first point whose count is positive (kRootLanes: none). Points before it count
// 0, so count(a) = 0 < count(b) holds after the update. False when nothing shrank (no double
// strictly inside).
SYMOC_HD inline bool multisect_update(Bracket &br, int first) {
  const double na = first > 0 ? multisect_point(br, first - 1) : br.a;
  const double nb = first < kRootLanes ? multisect_point(br, first) : br.b;
  if (!(na > br.a) && !(nb < br.b)) return false;
  br.a = na, br.b = nb;
  return true;
}
SYMOC_HD inline double bracket_value(const Bracket &br) { return br.a + 0.5 * (br.b - br.a); }

// Host form of the multisection (the lanes in turn; the same rounds as the GPU's warp).
SYMOC_HD inline double lowest_eigenvalue(const double *d, const double *e2, int m, double gl, double gu) {
  if (m == 1) return d[0];
  Bracket br = lowest_bracket(m, gl, gu);
  for (int it = 0; it < 2200 && !bracket_done(br); ++it) {
    int first = kRootLanes;
    for (int j = 0; j < kRootLanes; ++j)
      if (sturm_count(d, e2, m, multisect_point(br, j)) > 0) {
        first = j;
        break;
      }
    if (!multisect_update(br, first)) break;
  }
  return bracket_value(br);
}

SYMOC_HD inline double floor_pivot(double p, double floor) {
  return fabs(p) < floor ? (p < 0 ? -floor : floor) : p;
}

SYMOC_HD inline void twisted_assemble(int m, int r, double *s, int64_t stride);

// Eigenvector of the block for the eigenvalue approximation sigma by a twisted factorization.
// s: caller's scratch, element i at s[i * stride] (i < m); the unit vector is left there.
//   top-down    T - sigma I = L D L^T      (L_i multipliers, D_i pivots)
//   bottom-up   T - sigma I = U Dt U^T     (U_i multipliers, Dt_i pivots)
//   gamma_r = D_r + Dt_r - (d_r - sigma); r = argmin |gamma_r| is where the vector is largest.
//   z_r = 1, z_i = -L_i z_{i+1} (i < r), z_{i+1} = -U_i z_i (i >= r).
// One array serves L and U: pass 1 stores L, pass 2 finds r (recomputing D_i from L_{i-1}),
// pass 3 recomputes U from the bottom and stores U_i at i + 1 >= r + 1, where L is not needed.
SYMOC_HD inline void twisted_vector(const double *d, const double *e, int m, double sigma, double floor, double *s,
                                    int64_t stride) {
  if (m == 1) {
    s[0] = 1;
    return;
  }
  // Pass 1: L.
  double D = floor_pivot(d[0] - sigma, floor);
  for (int i = 0; i + 1 < m; ++i) {
    const double L = e[i] / D;
    s[i * stride] = L;
    D = floor_pivot((d[i + 1] - sigma) - L * e[i], floor);
  }
  // Pass 2: r. At i = m - 1, Dt = d - sigma, so gamma = D_{m-1} (the last D of pass 1).
  int r = m - 1;
  double best = fabs(D);
  double Dt = floor_pivot(d[m - 1] - sigma, floor);
  for (int i = m - 2; i >= 0; --i) {
    const double U = e[i] / Dt;
    Dt = floor_pivot((d[i] - sigma) - U * e[i], floor);
    const double Di = i == 0 ? floor_pivot(d[0] - sigma, floor)
                             : floor_pivot((d[i] - sigma) - s[(i - 1) * stride] * e[i - 1], floor);
    const double g = fabs(Di + Dt - (d[i] - sigma));
    if (g < best) best = g, r = i;
  }
  // Pass 3: U_i for i >= r, stored at i + 1.
  Dt = floor_pivot(d[m - 1] - sigma, floor);
  for (int i = m - 2; i >= r; --i) {
    const double U = e[i] / Dt;
    s[(i + 1) * stride] = U;
    Dt = floor_pivot((d[i] - sigma) - U * e[i], floor);
  }
  twisted_assemble(m, r, s, stride);
}

// Root of an unreduced block (m >= 2): T - sigma I = L D L^T with all D_i > 0 (D[i], l[i] =
// e_i / D_i; l[m-1] = 0), sigma = lmin - delta (see kRootShift). Positive definiteness is
// checked on the computed pivots, so the representation is one whatever lmin's error. Returns
// false when no try succeeded (D, l are then garbage).
SYMOC_HD inline bool root_factor(const double *d, const double *e, int m, double lmin, double bnorm, double &sigma,
                                 double *D, double *l) {
  double delta = kRootShift * kEps * bnorm;
  for (int t = 0; t < kRootTries; ++t, delta *= 2) {
    sigma = lmin - delta;
    double p = d[0] - sigma;
    int i = 0;
    for (;; ++i) {
      if (!(p > 0) || !(p <= DBL_MAX)) break;
      D[i] = p;
      if (i + 1 == m) break;
      l[i] = e[i] / p;
      p = (d[i + 1] - sigma) - l[i] * e[i];
    }
    if (i + 1 == m && p > 0 && p <= DBL_MAX) {
      l[m - 1] = 0;
      return true;
    }
  }
  return false;
}

// Number of eigenvalues < x of L D L^T: negative pivots D+ of L+ D+ L+^T = L D L^T - x I by
// the differential stationary qd transform (each D+ from D, l and the auxiliary s to high
// relative accuracy):  s_0 = -x,  D+_i = D_i + s_i,  s_{i+1} = (s_i / D+_i) D_i l_i^2 - x.
// A zero D+ makes the next s infinite and the one after it inf / inf: taking that ratio as 1
// is the limit (s_{i+2} = D_{i+1} l_{i+1}^2 - x), as in LAPACK's dlaneg.
SYMOC_HD inline int ldl_count(const double *D, const double *l, int m, double x) {
  int count = 0;
  double s = -x;
  for (int i = 0; i + 1 < m; ++i) {
    const double dp = D[i] + s;
    count += dp < 0;
    double t = s / dp;
    if (t != t) t = 1;
    s = t * (D[i] * l[i] * l[i]) - x;
  }
  count += D[m - 1] + s < 0;
  return count;
}

// The k-th smallest eigenvalue mu of the positive definite L D L^T to high relative accuracy:
// bisection on [0, top] (count(0) = 0 exactly) until width <= 2 eps |mu| (+ a floor far below
// any mu, which is >= ~delta). top: an upper bound estimate, doubled until it is one.
SYMOC_HD inline double ldl_top(double top, int m) { return dmax(top, kPivmin) * (1 + 16 * kEps * m); }
// The halvings of bisect_ldl from a bracket with count(a) <= k < count(b).
SYMOC_HD inline double bisect_ldl_from(const double *D, const double *l, int m, int k, double a, double b) {
  for (int it = 0; it < 2200; ++it) {
    if (b - a <= 2 * kEps * b + kPivmin) break;
    const double mid = a + 0.5 * (b - a);
    if (mid <= a || mid >= b) break;
    if (ldl_count(D, l, m, mid) > k) b = mid;
    else a = mid;
  }
  return a + 0.5 * (b - a);
}
SYMOC_HD inline double bisect_ldl(const double *D, const double *l, int m, int k, double top) {
  double b = ldl_top(top, m);
  for (int it = 0; it < 64 && ldl_count(D, l, m, b) <= k; ++it) b *= 2;
  return bisect_ldl_from(D, l, m, k, 0, b);
}

// Opt-in (SYMOC_CUDA_BISECT_GRID=1; written in session 34, not yet run on a GPU): a shared
// start for the slots of one root block. A bisection from [0, b0] spends log2(b0 / mu)
// halvings reaching mu's binade before the ~50 that fix it to 2 eps relative: ~25 of ~75 for
// the near-zero eigenvalues of a rank-deficient factor. kGridPoints counts at the geometric
// points b0 2^(-j/2) (one a thread of the bisection kernel's block, shared by its slots) give
// each slot a bracket within a factor sqrt 2 at once.
constexpr int kGridPoints = 128;
constexpr double kInvSqrt2 = 0.70710678118654752440;
SYMOC_HD inline double grid_point(double b0, int j) { return ldexp((j & 1) ? b0 * kInvSqrt2 : b0, -(j >> 1)); }
// The bracket of the k-th eigenvalue from counts[j] = ldl_count(grid_point(b0, j)): b the last
// point of the leading run with count > k, a the next (count <= k) or 0; false when b0 itself
// counts <= k (the plain bisection's doubling then). Valid whatever the counts' monotonicity.
SYMOC_HD inline bool grid_bracket(const int *counts, double b0, int k, double &a, double &b) {
  if (counts[0] <= k) return false;
  int j = 0;
  while (j + 1 < kGridPoints && counts[j + 1] > k) ++j;
  b = grid_point(b0, j), a = j + 1 < kGridPoints ? grid_point(b0, j + 1) : 0.0;
  return true;
}

// The top-down (stationary qd) pass of L D L^T - mu I = L+ D+ L+^T: s_i at s[i * stride],
// i = 0 .. m-1 (below).
SYMOC_HD inline void stationary_qd(const double *D, const double *l, int m, double mu, double floor, double *s,
                                   int64_t stride) {
  double t = -mu;
  for (int i = 0; i + 1 < m; ++i) {
    s[i * stride] = t;
    const double dp = floor_pivot(D[i] + t, floor);
    t = (D[i] * l[i] / dp) * l[i] * t - mu;
  }
  s[(m - 1) * stride] = t;
}

// Eigenvector of L D L^T for mu (accurate to high relative accuracy) by its twisted
// factorization, all from D and l by differential transforms (no L D L^T entry is formed):
//   top-down (dstqds)  L D L^T - mu I = L+ D+ L+^T: s_0 = -mu, D+_i = D_i + s_i,
//                      L+_i = D_i l_i / D+_i, s_{i+1} = L+_i l_i s_i - mu
//   bottom-up (dqds)   L D L^T - mu I = U- D- U-^T: p_{m-1} = D_{m-1} - mu,
//                      D-_{i+1} = D_i l_i^2 + p_{i+1}, t = D_i / D-_{i+1}, U-_i = l_i t,
//                      p_i = p_{i+1} t - mu
//   gamma_k = s_k + p_k + mu (the twist's pivot), r = argmin |gamma_k|,
//   z_r = 1, z_i = -L+_i z_{i+1} (i < r), z_{i+1} = -U-_i z_i (i >= r).
// s: scratch and output as in twisted_vector. Pass 1 stores s_i at i; pass 2 (bottom-up)
// reads s_i and stores U-_i at i + 1 (s_{i+1} is used by then); pass 3 recomputes L+_i at i < r.
SYMOC_HD inline void twisted_vector_ldl(const double *D, const double *l, int m, double mu, double floor, double *s,
                                        int64_t stride) {
  if (m == 1) {
    s[0] = 1;
    return;
  }
  stationary_qd(D, l, m, mu, floor, s, stride);
  double p = D[m - 1] - mu;
  int r = m - 1;
  double best = fabs(s[(m - 1) * stride] + p + mu);
  for (int i = m - 2; i >= 0; --i) {
    const double dm = floor_pivot(D[i] * l[i] * l[i] + p, floor), q = D[i] / dm;
    s[(i + 1) * stride] = l[i] * q;
    p = p * q - mu;
    const double g = fabs(s[i * stride] + p + mu);
    if (g < best) best = g, r = i;
  }
  double t = -mu;
  for (int i = 0; i < r; ++i) {
    const double Lp = D[i] * l[i] / floor_pivot(D[i] + t, floor);
    s[i * stride] = Lp;
    t = Lp * l[i] * t - mu;
  }
  twisted_assemble(m, r, s, stride);
}

// Solves (L D L^T - mu I) x = x in place with the twisted factorization N Delta N^T (N: L+
// above the twist r, U- below; Delta: D+_i, gamma_r, D-_i; zero pivots become floor), for
// inverse iteration in clusters of root blocks. u1 holds s_i, then L+_i (i < r); u2 holds
// U-_i (i >= r); element i at [i * us].
//   N w = x:       w_i = x_i - L+_{i-1} w_{i-1} (i < r), w_i = x_i - U-_i w_{i+1} (i > r),
//                  w_r = x_r - L+_{r-1} w_{r-1} - U-_r w_{r+1};  v = w / Delta
//   N^T x = v:     x_r = v_r, x_i = v_i - L+_i x_{i+1} (i < r), x_i = v_i - U-_{i-1} x_{i-1} (i > r)
SYMOC_HD inline void twisted_solve_ldl(const double *D, const double *l, int m, double mu, double floor, double *x,
                                       int64_t xs, double *u1, double *u2, int64_t us) {
  if (m == 1) {
    x[0] /= floor_pivot(D[0] - mu, floor);
    return;
  }
  stationary_qd(D, l, m, mu, floor, u1, us);
  double p = D[m - 1] - mu;
  int r = m - 1;
  double gr = u1[(m - 1) * us] + p + mu;
  for (int i = m - 2; i >= 0; --i) {
    const double dm = floor_pivot(D[i] * l[i] * l[i] + p, floor);
    p = p * (D[i] / dm) - mu;
    const double g = u1[i * us] + p + mu;
    if (fabs(g) < fabs(gr)) gr = g, r = i;
  }
  // Top part: L+, forward substitution and division by D+.
  double t = -mu;
  double wprev = 0, Lprev = 0;
  for (int i = 0; i < r; ++i) {
    const double dp = floor_pivot(D[i] + t, floor), Lp = D[i] * l[i] / dp;
    const double w = x[i * xs] - Lprev * wprev;
    x[i * xs] = w / dp;
    u1[i * us] = Lp, wprev = w, Lprev = Lp;
    t = Lp * l[i] * t - mu;
  }
  const double wtop = Lprev * wprev; // L+_{r-1} w_{r-1} (0 when r = 0)
  // Bottom part: U-, backward substitution and division by D-.
  p = D[m - 1] - mu;
  double wnext = 0, Unext = 0;
  for (int i = m - 2; i >= r; --i) { // row i + 1 > r
    const double dm = floor_pivot(D[i] * l[i] * l[i] + p, floor), q = D[i] / dm;
    const double w = x[(i + 1) * xs] - Unext * wnext;
    x[(i + 1) * xs] = w / dm;
    wnext = w, Unext = l[i] * q;
    u2[i * us] = Unext;
    p = p * q - mu;
  }
  x[r * xs] = (x[r * xs] - wtop - Unext * wnext) / floor_pivot(gr, floor);
  for (int i = r - 1; i >= 0; --i) x[i * xs] -= u1[i * us] * x[(i + 1) * xs];
  for (int i = r + 1; i < m; ++i) x[i * xs] -= u2[(i - 1) * us] * x[(i - 1) * xs];
}

// Writes the twisted vector in place: s[i] holds L_i for i < r and U_{i-1} for i > r on entry;
// z_r = 1, z_i = -L_i z_{i+1} above, z_{i+1} = -U_i z_i below, then normalized (scaled by its
// largest entry first: no overflow).
SYMOC_HD inline void twisted_assemble(int m, int r, double *s, int64_t stride) {
  s[r * stride] = 1;
  double zmax = 1;
  for (int i = r - 1; i >= 0; --i) {
    const double z = -s[i * stride] * s[(i + 1) * stride];
    s[i * stride] = z, zmax = dmax(zmax, fabs(z));
  }
  for (int i = r; i + 1 < m; ++i) {
    const double z = -s[(i + 1) * stride] * s[i * stride];
    s[(i + 1) * stride] = z, zmax = dmax(zmax, fabs(z));
  }
  double ss = 0;
  for (int i = 0; i < m; ++i) {
    const double z = s[i * stride] / zmax;
    ss += z * z;
  }
  const double inv = 1 / (zmax * sqrt(ss));
  for (int i = 0; i < m; ++i) s[i * stride] *= inv;
}

// Solves (T - sigma I) y = x in place (x[i * xs], i < m) by Gaussian elimination with partial
// pivoting (rows i and i+1 swap when |e_i| beats the pivot); zero pivots become floor.
// u1, u2 (element i at [i * us]): the eliminated rows' superdiagonals over their pivots.
// Step i holds the partly eliminated row (c0 at column i, c1 at i+1) and right side cy.
SYMOC_HD inline void pivoted_solve(const double *d, const double *e, int m, double sigma, double floor, double *x,
                                   int64_t xs, double *u1, double *u2, int64_t us) {
  double c0 = d[0] - sigma, c1 = m > 1 ? e[0] : 0.0, cy = x[0];
  for (int i = 0; i + 1 < m; ++i) {
    const double b = e[i], a1 = d[i + 1] - sigma, b1 = i + 2 < m ? e[i + 1] : 0.0, y1 = x[(i + 1) * xs];
    if (fabs(b) > fabs(c0)) { // pivot row: original row i + 1 = (b, a1, b1)
      const double l = c0 / b;
      u1[i * us] = a1 / b, u2[i * us] = b1 / b, x[i * xs] = y1 / b;
      c0 = c1 - l * a1, c1 = -l * b1, cy = cy - l * y1;
    } else { // pivot row: the current (c0, c1, 0)
      const double p = floor_pivot(c0, floor), l = b / p;
      u1[i * us] = c1 / p, u2[i * us] = 0, x[i * xs] = cy / p;
      c0 = a1 - l * c1, c1 = b1, cy = y1 - l * cy;
    }
  }
  x[(m - 1) * xs] = cy / floor_pivot(c0, floor);
  if (m > 1) x[(m - 2) * xs] -= u1[(m - 2) * us] * x[(m - 1) * xs];
  for (int i = m - 3; i >= 0; --i) x[i * xs] -= u1[i * us] * x[(i + 1) * xs] + u2[i * us] * x[(i + 2) * xs];
}

// Deterministic pseudo-random start in [-1, 1) for vector `member` (its slot), row i.
SYMOC_HD inline double start_value(int member, int i, int round) {
  uint64_t z = (uint64_t(uint32_t(member)) << 32 | uint32_t(i)) + 0x9E3779B97F4A7C15ull * uint64_t(round + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return double(z >> 11) * (2.0 / 9007199254740992.0) - 1.0;
}

// ---- Phases shared by the drivers. Arrays are one matrix's (offset by b * n). ----

// Scales one matrix and splits it. ds, es: scaled d and e (es[n-1] = 0), e2 = es^2 (0 across
// a split); lo/hi: the block of each row; gl/gu: the block's Gershgorin interval per row.
// Returns false (and touches nothing else) when an input is NaN/inf; exp: the scale, values
// are x * 2^-exp.
template <class T>
SYMOC_HD inline bool prepare_matrix(const T *d, const T *e, int n, double *ds, double *es, double *e2, int *lo,
                                    int *hi, double *gl, double *gu, int &exp) {
  double tmax = 0;
  for (int i = 0; i < n; ++i) {
    const double a = fabs(double(d[i])), b = i + 1 < n ? fabs(double(e[i])) : 0.0;
    if (!(a <= DBL_MAX) || !(b <= DBL_MAX)) return false; // NaN or inf
    tmax = dmax(tmax, dmax(a, b));
  }
  exp = 0;
  if (tmax > 0) frexp(tmax, &exp);
  int start = 0;
  for (int i = 0; i < n; ++i) {
    ds[i] = ldexp(double(d[i]), -exp);
    es[i] = i + 1 < n ? ldexp(double(e[i]), -exp) : 0.0;
  }
  for (int i = 0; i < n; ++i) {
    // e_i is negligible when it is below eps * sqrt(|d_i d_{i+1}|) (a relative perturbation
    // LAPACK's splitting also allows) or below eps^2 * max|T| (absolute).
    const bool split = i + 1 == n || fabs(es[i]) <= kEps * sqrt(fabs(ds[i])) * sqrt(fabs(ds[i + 1])) ||
                       fabs(es[i]) <= kEps * kEps;
    if (split) es[i] = 0;
    e2[i] = es[i] * es[i];
    if (split) {
      double a, b;
      gershgorin(ds + start, es + start, i - start + 1, a, b);
      for (int j = start; j <= i; ++j) lo[j] = start, hi[j] = i, gl[j] = a, gu[j] = b;
      start = i + 1;
    }
  }
  return true;
}

SYMOC_HD inline double block_norm(const double *gl, const double *gu, int s) {
  return dmax(fabs(gl[s]), fabs(gu[s]));
}

// The eigenvalue of slot s (scaled).
SYMOC_HD inline double slot_eigenvalue(const double *ds, const double *e2, const int *lo, const int *hi,
                                       const double *gl, const double *gu, int s) {
  const int l = lo[s];
  return bisect_eigenvalue(ds + l, e2 + l, hi[s] - l + 1, s - l, gl[s], gu[s]);
}

// Rank of slot s in ascending order, ties by slot.
SYMOC_HD inline int slot_rank(const double *lam, int n, int s) {
  const double v = lam[s];
  int r = 0;
  for (int t = 0; t < n; ++t) r += lam[t] < v || (lam[t] == v && t < s);
  return r;
}

// The root of slot s's block when s is the block's first slot (else nothing): lam[s] (its
// smallest eigenvalue, absolute accuracy), then rrr[s] = 1 and sig[s], rD/rl over the block's
// rows when L D L^T is positive definite; rrr[s] = 0 for the absolute path (and m = 1).
// lmin: the block's smallest eigenvalue (lowest_eigenvalue, or the GPU's warp form of it).
SYMOC_HD inline void block_root_at(const double *ds, const double *es, const int *hi, const double *gl,
                                   const double *gu, int s, double lmin, double *lam, double *sig, double *rD,
                                   double *rl, int *rrr) {
  const int m = hi[s] - s + 1;
  lam[s] = lmin;
  sig[s] = 0;
  rrr[s] = m >= 2 && root_factor(ds + s, es + s, m, lmin, block_norm(gl, gu, s), sig[s], rD + s, rl + s);
}
SYMOC_HD inline void block_root(const double *ds, const double *es, const double *e2, const int *lo, const int *hi,
                                const double *gl, const double *gu, int s, double *lam, double *sig, double *rD,
                                double *rl, int *rrr) {
  if (s != lo[s]) return;
  block_root_at(ds, es, hi, gl, gu, s, lowest_eigenvalue(ds + s, e2 + s, hi[s] - s + 1, gl[s], gu[s]), lam, sig, rD,
                rl, rrr);
}

// The eigenvalue of slot s after block_root: for a root block mu[s] (of L D L^T, relative
// accuracy) and lam[s] = sigma + mu; otherwise lam[s] by the absolute bisection, mu[s] = lam[s].
// counts: the grid's counts for slot s's root block (bisection's shared start), or null.
SYMOC_HD inline void slot_values(const double *ds, const double *e2, const int *lo, const int *hi, const double *gl,
                                 const double *gu, const double *sig, const double *rD, const double *rl,
                                 const int *rrr, int s, double *lam, double *mu, const int *counts = nullptr) {
  const int l = lo[s];
  if (rrr[l]) {
    const int m = hi[s] - l + 1;
    double a = 0, b = 0, v;
    if (counts && grid_bracket(counts, ldl_top(gu[s] - sig[l], m), s - l, a, b))
      v = bisect_ldl_from(rD + l, rl + l, m, s - l, a, b);
    else v = bisect_ldl(rD + l, rl + l, m, s - l, gu[s] - sig[l]);
    mu[s] = v, lam[s] = sig[l] + v;
  } else {
    if (s != l) lam[s] = slot_eigenvalue(ds, e2, lo, hi, gl, gu, s);
    mu[s] = lam[s];
  }
}

// The slots s0 .. s0 + kGridPoints - 1 (one bisection block; clipped at n) share a grid when
// they lie in one root block (its first slot lo[s0]).
SYMOC_HD inline bool grid_shared(const int *lo, const int *hi, const int *rrr, int n, int s0) {
  const int last = s0 + kGridPoints - 1 < n ? s0 + kGridPoints - 1 : n - 1;
  return rrr[lo[s0]] && hi[s0] >= last;
}

// Slots s and s + 1 belong to one cluster: same block and, in a root block, a gap below
// rel * mu (mu > 0: the larger one, the one whose vector the gap bounds less), else a gap
// below gap * bnorm.
SYMOC_HD inline bool linked(const double *lam, const double *mu, const int *lo, const int *hi, const int *rrr,
                            const double *gl, const double *gu, int n, int s, double gap, double rel) {
  if (s < 0 || s + 1 >= n || hi[s] != hi[s + 1]) return false;
  if (rrr[lo[s]]) return fabs(mu[s + 1] - mu[s]) < rel * dmax(fabs(mu[s]), fabs(mu[s + 1]));
  return fabs(lam[s + 1] - lam[s]) < gap * block_norm(gl, gu, s);
}

// Cluster [c0, c1] solves with the root (twisted_solve_ldl on L D L^T - mu I) only when it is
// in a root block and some neighbour outside it is within the absolute threshold (vectors of T
// would then mix with that neighbour's); else with T (pivoted_solve at lam) as the absolute
// path does. The twisted solves do not pivot: in a cluster of nearly decoupled copies (glued
// matrices) every copy has a tiny pivot, the growth compounds and the solve can overflow.
SYMOC_HD inline bool cluster_uses_root(const double *lam, const int *lo, const int *hi, const int *rrr,
                                       const double *gl, const double *gu, int c0, int c1, double gap) {
  if (!rrr[lo[c0]]) return false;
  const double g = gap * block_norm(gl, gu, c0);
  return (c0 > lo[c0] && fabs(lam[c0] - lam[c0 - 1]) < g) || (c1 < hi[c0] && fabs(lam[c1 + 1] - lam[c1]) < g);
}

} // namespace tridiag

// fp32 data: how many matrices' double vectors one launch of the vector phase builds. A
// chunk's vectors may take as much as the fp32 output of the whole batch (half of it a chunk),
// at most kVectorCap, or kVectorBudget, whichever is more; the launches get balanced chunks.
// Each thread's twisted solve is a chain of dependent loads, so a launch takes about as long
// for one matrix as for a dozen (H100, 24 x 3072: one matrix a launch, as the 128 MB budget
// alone gave, spent 136 ms in the vectors; 12 a launch 37 ms, session 34); the cap keeps large
// sides (8192: 512 MB a matrix) from doubling the solver's memory.
constexpr size_t kVectorBudget = size_t(128) << 20;
constexpr size_t kVectorCap = size_t(1) << 30;
inline int64_t tridiag_vector_chunk(int64_t n, int64_t batch) {
  if (n <= 0 || batch <= 0) return 1;
  const size_t per = size_t(n) * size_t(n) * sizeof(double);
  const size_t budget = std::max(kVectorBudget, std::min(kVectorCap, size_t(batch) * size_t(n) * size_t(n) * sizeof(float)));
  const int64_t most = std::clamp<int64_t>(int64_t(budget / per), 1, batch), calls = (batch + most - 1) / most;
  return (batch + calls - 1) / calls;
}

// ---- Drivers (d, e, w, Z, info as documented in tridiag_solve.cu). ----
template <class T> size_t tridiag_eig_workspace(int64_t n, int64_t batch);
template <class T>
void tridiag_eig(const T *d, const T *e, int64_t n, int64_t batch, T *w, T *Z, int *info, void *work,
                 CUstream_st *s);

// The host driver: the same phases with the same per-thread functions, one after the other.
// The clusters run the GPU's sweeps sequentially (sums in another order). max_cluster (a test
// hook, optional): the most members of one cluster over the batch (1: none; 0: nothing solved).
// bisect_grid: the eigenvalues from the grid's shared start (the GPU's SYMOC_CUDA_BISECT_GRID).
template <class T>
void tridiag_eig_host(const T *d, const T *e, int64_t n64, int64_t batch, T *w, T *Z, int *info,
                      int *max_cluster = nullptr, bool bisect_grid = false) {
  using namespace tridiag;
  const int n = int(n64);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double gap = cluster_gap<T>(), rel = cluster_rel_gap<T>();
  std::vector<double> ds(n), es(n), e2(n), gl(n), gu(n), lam(n), mu(n), sig(n), rD(n), rl(n), V(size_t(n) * n),
      u1(n), u2(n), coef(n);
  std::vector<int> lo(n), hi(n), rank(n), rrr(n);
  if (max_cluster) *max_cluster = 0;
  for (int64_t b = 0; b < batch; ++b) {
    const T *db = d + b * n, *eb = e + b * n;
    T *wb = w + b * n, *Zb = Z + b * n64 * n64;
    int exp = 0;
    info[b] = prepare_matrix(db, eb, n, ds.data(), es.data(), e2.data(), lo.data(), hi.data(), gl.data(), gu.data(),
                             exp)
                  ? 0
                  : 1;
    if (info[b]) {
      for (int64_t i = 0; i < n64 * n64; ++i) Zb[i] = T(nan);
      for (int i = 0; i < n; ++i) wb[i] = T(nan);
      continue;
    }
    for (int s = 0; s < n; ++s)
      block_root(ds.data(), es.data(), e2.data(), lo.data(), hi.data(), gl.data(), gu.data(), s, lam.data(),
                 sig.data(), rD.data(), rl.data(), rrr.data());
    for (int s0 = 0; s0 < n; s0 += kGridPoints) { // the GPU's bisection blocks
      int counts[kGridPoints];
      const bool grid = bisect_grid && grid_shared(lo.data(), hi.data(), rrr.data(), n, s0);
      if (grid) {
        const int l = lo[s0];
        const int m = hi[l] - l + 1;
        const double b0 = ldl_top(gu[l] - sig[l], m);
        for (int j = 0; j < kGridPoints; ++j) counts[j] = ldl_count(rD.data() + l, rl.data() + l, m, grid_point(b0, j));
      }
      for (int s = s0; s < n && s < s0 + kGridPoints; ++s)
        slot_values(ds.data(), e2.data(), lo.data(), hi.data(), gl.data(), gu.data(), sig.data(), rD.data(), rl.data(),
                    rrr.data(), s, lam.data(), mu.data(), grid ? counts : nullptr);
    }
    for (int s = 0; s < n; ++s) rank[s] = slot_rank(lam.data(), n, s), wb[rank[s]] = T(ldexp(lam[s], exp));
    std::fill(V.begin(), V.end(), 0.0);
    auto col = [&](int s) { return V.data() + size_t(rank[s]) * n + lo[s]; };
    auto link = [&](int s) {
      return linked(lam.data(), mu.data(), lo.data(), hi.data(), rrr.data(), gl.data(), gu.data(), n, s, gap, rel);
    };
    if (max_cluster && n > 0) *max_cluster = std::max(*max_cluster, 1);
    // Isolated eigenvalues: twisted solves.
    for (int s = 0; s < n; ++s) {
      if (link(s - 1) || link(s)) continue;
      const int l = lo[s], m = hi[s] - l + 1;
      const double floor = kPivFloor * block_norm(gl.data(), gu.data(), s);
      if (rrr[l]) twisted_vector_ldl(rD.data() + l, rl.data() + l, m, mu[s], floor, col(s), 1);
      else twisted_vector(ds.data() + l, es.data() + l, m, lam[s], floor, col(s), 1);
    }
    // Clusters: block inverse iteration (all members solve, then Gram-Schmidt in order).
    for (int c0 = 0; c0 < n; ++c0) {
      if (!link(c0) || link(c0 - 1)) continue;
      int c1 = c0 + 1;
      while (link(c1)) ++c1;
      const int l = lo[c0], m = hi[c0] - l + 1, k = c1 - c0 + 1;
      if (max_cluster) *max_cluster = std::max(*max_cluster, k);
      const double floor = kPivFloor * block_norm(gl.data(), gu.data(), c0);
      const bool root = cluster_uses_root(lam.data(), lo.data(), hi.data(), rrr.data(), gl.data(), gu.data(), c0, c1, gap);
      for (int j = 0; j < k; ++j)
        for (int i = 0; i < m; ++i) col(c0 + j)[i] = start_value(c0 + j, i, 0);
      for (int sweep = 0;; ++sweep) {
        for (int j = 0; j < k; ++j) {
          double *x = col(c0 + j);
          if (root) twisted_solve_ldl(rD.data() + l, rl.data() + l, m, mu[c0 + j], floor, x, 1, u1.data(), u2.data(), 1);
          else pivoted_solve(ds.data() + l, es.data() + l, m, lam[c0 + j], floor, x, 1, u1.data(), u2.data(), 1);
          double mx = 0;
          for (int i = 0; i < m; ++i) mx = dmax(mx, fabs(x[i]));
          if (!(mx > 0) || !(mx <= DBL_MAX)) {
            for (int i = 0; i < m; ++i) x[i] = start_value(c0 + j, i, sweep + 1);
            mx = 1;
          }
          for (int i = 0; i < m; ++i) x[i] /= mx;
        }
        bool bad = false;
        for (int j = 0; j < k; ++j) {
          double *x = col(c0 + j);
          double after = 0;
          for (int attempt = 0; attempt < 2; ++attempt) {
            double before = 0;
            for (int i = 0; i < m; ++i) before += x[i] * x[i];
            for (int pass = 0; pass < 2; ++pass) { // classical Gram-Schmidt, twice
              for (int a = 0; a < j; ++a) {
                const double *y = col(c0 + a);
                double dot = 0;
                for (int i = 0; i < m; ++i) dot += y[i] * x[i];
                coef[a] = dot;
              }
              for (int i = 0; i < m; ++i) {
                double acc = 0;
                for (int a = 0; a < j; ++a) acc += coef[a] * col(c0 + a)[i];
                x[i] -= acc;
              }
            }
            after = 0;
            for (int i = 0; i < m; ++i) after += x[i] * x[i];
            if (!(after >= kKeepRatio * kKeepRatio * before)) bad = true;
            if (after > 0) break;
            // Exactly in the span: a fresh start (orthogonalized now, solved next sweep).
            for (int i = 0; i < m; ++i) x[i] = start_value(c0 + j, i, sweep + 1);
          }
          const double inv = 1 / sqrt(after);
          for (int i = 0; i < m; ++i) x[i] *= inv;
        }
        if ((sweep >= 1 && !bad) || sweep + 1 >= kMaxSweeps) break;
      }
    }
    for (int64_t i = 0; i < n64 * n64; ++i) Zb[i] = T(V[size_t(i)]);
  }
}

} // namespace symoc::cuda::detail
