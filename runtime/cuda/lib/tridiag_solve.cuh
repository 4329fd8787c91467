// Batched symmetric tridiagonal eigensolver (eigenvalues by bisection, eigenvectors by twisted
// factorizations, clusters by block inverse iteration + Gram-Schmidt), the middle stage of
// sytrd -> tridiag_eig -> ormtr. This header holds the per-thread pieces in double precision
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
#include <cstdint>
#include <limits>
#include <vector>

#ifdef __CUDACC__
#define SYMOC_HD __host__ __device__
#else
#define SYMOC_HD
#endif

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
// Cluster threshold (relative to the block's norm bound bnorm). Two vectors from independent
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

SYMOC_HD inline double floor_pivot(double p, double floor) {
  return fabs(p) < floor ? (p < 0 ? -floor : floor) : p;
}

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
  // The vector, in place, then normalized (scaled by its largest entry first: no overflow).
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

// Slots s and s + 1 belong to one cluster: same block and a gap below gap_rel * bnorm.
SYMOC_HD inline bool linked(const double *lam, const int *hi, const double *gl, const double *gu, int n, int s,
                            double gap_rel) {
  if (s < 0 || s + 1 >= n || hi[s] != hi[s + 1]) return false;
  return fabs(lam[s + 1] - lam[s]) < gap_rel * block_norm(gl, gu, s);
}

} // namespace tridiag

// ---- Drivers (d, e, w, Z, info as documented in tridiag_solve.cu). ----
template <class T> size_t tridiag_eig_workspace(int64_t n, int64_t batch);
template <class T>
void tridiag_eig(const T *d, const T *e, int64_t n, int64_t batch, T *w, T *Z, int *info, void *work,
                 CUstream_st *s);

// The host driver: the same phases with the same per-thread functions, one after the other.
// The clusters run the GPU's sweeps sequentially (sums in another order).
template <class T> void tridiag_eig_host(const T *d, const T *e, int64_t n64, int64_t batch, T *w, T *Z, int *info) {
  using namespace tridiag;
  const int n = int(n64);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double gap = cluster_gap<T>();
  std::vector<double> ds(n), es(n), e2(n), gl(n), gu(n), lam(n), V(size_t(n) * n), u1(n), u2(n), coef(n);
  std::vector<int> lo(n), hi(n), rank(n);
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
    for (int s = 0; s < n; ++s) lam[s] = slot_eigenvalue(ds.data(), e2.data(), lo.data(), hi.data(), gl.data(), gu.data(), s);
    for (int s = 0; s < n; ++s) rank[s] = slot_rank(lam.data(), n, s), wb[rank[s]] = T(ldexp(lam[s], exp));
    std::fill(V.begin(), V.end(), 0.0);
    auto col = [&](int s) { return V.data() + size_t(rank[s]) * n + lo[s]; };
    // Isolated eigenvalues: twisted solves.
    for (int s = 0; s < n; ++s) {
      if (linked(lam.data(), hi.data(), gl.data(), gu.data(), n, s - 1, gap) ||
          linked(lam.data(), hi.data(), gl.data(), gu.data(), n, s, gap))
        continue;
      const int l = lo[s];
      twisted_vector(ds.data() + l, es.data() + l, hi[s] - l + 1, lam[s], kPivFloor * block_norm(gl.data(), gu.data(), s),
                     col(s), 1);
    }
    // Clusters: block inverse iteration (all members solve, then Gram-Schmidt in order).
    for (int c0 = 0; c0 < n; ++c0) {
      if (!linked(lam.data(), hi.data(), gl.data(), gu.data(), n, c0, gap) ||
          linked(lam.data(), hi.data(), gl.data(), gu.data(), n, c0 - 1, gap))
        continue;
      int c1 = c0 + 1;
      while (linked(lam.data(), hi.data(), gl.data(), gu.data(), n, c1, gap)) ++c1;
      const int l = lo[c0], m = hi[c0] - l + 1, k = c1 - c0 + 1;
      const double floor = kPivFloor * block_norm(gl.data(), gu.data(), c0);
      for (int j = 0; j < k; ++j)
        for (int i = 0; i < m; ++i) col(c0 + j)[i] = start_value(c0 + j, i, 0);
      for (int sweep = 0;; ++sweep) {
        for (int j = 0; j < k; ++j) {
          double *x = col(c0 + j);
          pivoted_solve(ds.data() + l, es.data() + l, m, lam[c0 + j], floor, x, 1, u1.data(), u2.data(), 1);
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
