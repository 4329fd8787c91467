// The batched tridiagonal eigensolver (runtime/cuda/lib/tridiag_solve.cuh), host-only: the
// host driver runs the GPU's phases with the same per-thread functions (CI has no GPU).
// Checked against LAPACKE_dstevd: eigenvalues, residuals ||T Z - Z diag(w)|| / ||T||, and
// orthogonality max |Z^T Z - I|, on random and adversarial matrices.
#include "tridiag_solve.cuh"

#include <gtest/gtest.h>
#include <lapacke.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <random>
#include <vector>

using symoc::cuda::detail::tridiag_eig_host;

namespace {

struct Tri {
  std::vector<double> d, e; // e[i] couples i and i+1; e.size() == d.size() (last ignored)
};

Tri random_tri(int n, std::mt19937_64 &g, double scale = 1) {
  std::uniform_real_distribution<double> u(-1, 1);
  Tri t{std::vector<double>(n), std::vector<double>(n, 0.0)};
  for (int i = 0; i < n; ++i) t.d[i] = scale * u(g);
  for (int i = 0; i + 1 < n; ++i) t.e[i] = scale * u(g);
  return t;
}

// Wilkinson W_{2h+1}^+: d_i = |h - i|, e = 1.
Tri wilkinson(int h) {
  const int n = 2 * h + 1;
  Tri t{std::vector<double>(n), std::vector<double>(n, 1.0)};
  for (int i = 0; i < n; ++i) t.d[i] = std::abs(h - i);
  t.e[n - 1] = 0;
  return t;
}

// Copies of `b` glued by off-diagonals `glue`.
Tri glued(const Tri &b, int copies, double glue) {
  Tri t;
  const int m = int(b.d.size());
  for (int c = 0; c < copies; ++c) {
    t.d.insert(t.d.end(), b.d.begin(), b.d.end());
    t.e.insert(t.e.end(), b.e.begin(), b.e.begin() + m - 1);
    t.e.push_back(glue);
  }
  t.e.back() = 0;
  return t;
}

// The tridiagonal of G G^T + shift I (G: rows x cols, rank-deficient when rows > cols).
Tri gram_tri(int rows, int cols, double shift, std::mt19937_64 &g) {
  std::normal_distribution<double> nd;
  std::vector<double> G(size_t(rows) * cols), A(size_t(rows) * rows);
  for (double &x : G) x = nd(g);
  for (int i = 0; i < rows; ++i)
    for (int j = 0; j < rows; ++j) {
      double s = 0;
      for (int k = 0; k < cols; ++k) s += G[size_t(i) * cols + k] * G[size_t(j) * cols + k];
      A[size_t(i) * rows + j] = s + (i == j ? shift : 0);
    }
  Tri t{std::vector<double>(rows), std::vector<double>(rows, 0.0)};
  std::vector<double> tau(rows);
  EXPECT_EQ(LAPACKE_dsytrd(LAPACK_COL_MAJOR, 'L', rows, A.data(), rows, t.d.data(), t.e.data(), tau.data()), 0);
  t.e[rows - 1] = 0;
  return t;
}

// The tridiagonal of Q diag(lambda) Q^T, Q random orthogonal: the spectrum given, vectors spread.
Tri spectrum_tri(const std::vector<double> &lambda, std::mt19937_64 &g) {
  const int n = int(lambda.size());
  std::normal_distribution<double> nd;
  std::vector<double> Q(size_t(n) * n), A(size_t(n) * n, 0.0), tau(n);
  for (double &x : Q) x = nd(g);
  EXPECT_EQ(LAPACKE_dgeqrf(LAPACK_COL_MAJOR, n, n, Q.data(), n, tau.data()), 0);
  EXPECT_EQ(LAPACKE_dorgqr(LAPACK_COL_MAJOR, n, n, n, Q.data(), n, tau.data()), 0);
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j)
      for (int k = 0; k < n; ++k) A[size_t(j) * n + i] += Q[size_t(k) * n + i] * lambda[k] * Q[size_t(k) * n + j];
  Tri t{std::vector<double>(n), std::vector<double>(n, 0.0)};
  EXPECT_EQ(LAPACKE_dsytrd(LAPACK_COL_MAJOR, 'L', n, A.data(), n, t.d.data(), t.e.data(), tau.data()), 0);
  t.e[n - 1] = 0;
  return t;
}

double tnorm(const Tri &t) { // max row sum, a bound on ||T||_2 within a factor 3
  const int n = int(t.d.size());
  double r = 0;
  for (int i = 0; i < n; ++i)
    r = std::max(r, std::abs(t.d[i]) + (i > 0 ? std::abs(t.e[i - 1]) : 0.0) + (i + 1 < n ? std::abs(t.e[i]) : 0.0));
  return r;
}

struct Limits {
  double value, residual, orth; // |dw| / ||T||, ||T z - w z||_max / ||T||, max |Z^T Z - I|
};
constexpr Limits kDouble{1e-12, 1e-12, 1e-10};
// fp32 outputs: w and Z are rounded to float (half an ulp: 6e-8).
constexpr Limits kFloat{3e-7, 3e-6, 1e-5};

struct Errors {
  double value = 0, residual = 0, orth = 0;
};

// The host driver's bisect_grid for the calls below (BisectionGrid sets it).
bool g_bisect_grid = false;

// Runs the solver on the matrices (as T) and measures against dstevd.
// max_cluster: the host driver's largest cluster over the batch.
template <class T>
std::vector<Errors> solve_and_measure(const std::vector<Tri> &ms, std::vector<int> *infos = nullptr,
                                      int *max_cluster = nullptr) {
  const int batch = int(ms.size()), n = batch ? int(ms[0].d.size()) : 0;
  std::vector<T> d(size_t(batch) * n), e(size_t(batch) * n), w(size_t(batch) * n), Z(size_t(batch) * n * n);
  std::vector<int> info(batch, -1);
  for (int b = 0; b < batch; ++b)
    for (int i = 0; i < n; ++i) d[size_t(b) * n + i] = T(ms[b].d[i]), e[size_t(b) * n + i] = T(ms[b].e[i]);
  tridiag_eig_host<T>(d.data(), e.data(), n, batch, w.data(), Z.data(), info.data(), max_cluster, g_bisect_grid);
  if (infos) *infos = info;
  std::vector<Errors> out(batch);
  for (int b = 0; b < batch; ++b) {
    EXPECT_EQ(info[b], 0) << "matrix " << b;
    // The reference on the values the solver saw (rounded to T).
    Tri t;
    for (int i = 0; i < n; ++i) t.d.push_back(double(d[size_t(b) * n + i])), t.e.push_back(double(e[size_t(b) * n + i]));
    const double nrm = std::max(tnorm(t), std::numeric_limits<double>::min());
    std::vector<double> rd = t.d, re = t.e, rz(size_t(n) * n);
    if (n > 0) {
      EXPECT_EQ(LAPACKE_dstevd(LAPACK_COL_MAJOR, 'V', n, rd.data(), re.data(), rz.data(), n), 0);
    }
    Errors &er = out[b];
    const T *wb = w.data() + size_t(b) * n, *Zb = Z.data() + size_t(b) * n * n;
    for (int k = 0; k < n; ++k) {
      er.value = std::max(er.value, std::abs(double(wb[k]) - rd[k]) / nrm);
      if (!(wb[k] == wb[k])) er.value = INFINITY;
      if (k > 0 && !(wb[k] >= wb[k - 1])) er.value = INFINITY; // ascending
      const T *z = Zb + size_t(k) * n;
      for (int i = 0; i < n; ++i) {
        double tz = t.d[i] * double(z[i]);
        if (i > 0) tz += t.e[i - 1] * double(z[i - 1]);
        if (i + 1 < n) tz += t.e[i] * double(z[i + 1]);
        const double r = std::abs(tz - double(wb[k]) * double(z[i])) / nrm;
        er.residual = std::max(er.residual, r == r ? r : INFINITY);
      }
    }
    for (int a = 0; a < n; ++a)
      for (int c = a; c < n; ++c) {
        double s = 0;
        for (int i = 0; i < n; ++i) s += double(Zb[size_t(a) * n + i]) * double(Zb[size_t(c) * n + i]);
        const double o = std::abs(s - (a == c ? 1 : 0));
        er.orth = std::max(er.orth, o == o ? o : INFINITY);
      }
  }
  return out;
}

template <class T>
void expect_accurate(const std::vector<Tri> &ms, const Limits &lim, const char *what, int *max_cluster = nullptr) {
  const auto errs = solve_and_measure<T>(ms, nullptr, max_cluster);
  for (size_t b = 0; b < errs.size(); ++b) {
    EXPECT_LE(errs[b].value, lim.value) << what << " matrix " << b;
    EXPECT_LE(errs[b].residual, lim.residual) << what << " matrix " << b;
    EXPECT_LE(errs[b].orth, lim.orth) << what << " matrix " << b;
  }
}

void expect_both(const std::vector<Tri> &ms, const char *what) {
  expect_accurate<double>(ms, kDouble, what);
  expect_accurate<float>(ms, kFloat, what);
}

} // namespace

TEST(TridiagSolve, RandomBatch) {
  std::mt19937_64 g(1);
  std::vector<Tri> ms;
  for (int b = 0; b < 4; ++b) ms.push_back(random_tri(157, g));
  expect_both(ms, "random");
}

TEST(TridiagSolve, TinySizes) {
  std::mt19937_64 g(2);
  for (int n : {1, 2, 3}) {
    std::vector<Tri> ms;
    for (int b = 0; b < 5; ++b) ms.push_back(random_tri(n, g));
    expect_both(ms, "tiny");
  }
  // n = 2 with a zero and with equal diagonals (eigenvalues d +- e).
  expect_both({Tri{{0, 0}, {1, 0}}, Tri{{2, 2}, {1e-3, 0}}, Tri{{1, 1}, {0, 0}}}, "2x2");
  // n = 0 and batch 0: nothing to do, nothing touched.
  std::vector<double> w(1, 7.0), Z(1, 7.0);
  std::vector<int> info(1, 7);
  tridiag_eig_host<double>(nullptr, nullptr, 0, 1, w.data(), Z.data(), info.data());
  EXPECT_EQ(info[0], 0);
  EXPECT_EQ(w[0], 7.0);
  tridiag_eig_host<double>(nullptr, nullptr, 5, 0, nullptr, nullptr, nullptr);
}

TEST(TridiagSolve, DiagonalIdentityZeros) {
  const int n = 40;
  Tri diag{std::vector<double>(n), std::vector<double>(n, 0.0)};
  for (int i = 0; i < n; ++i) diag.d[i] = double((i * 7) % 5) - 2; // each value 8 times
  Tri ident{std::vector<double>(n, 1.0), std::vector<double>(n, 0.0)};
  Tri zeros{std::vector<double>(n, 0.0), std::vector<double>(n, 0.0)};
  expect_both({diag, ident, zeros}, "diagonal");
  // Z of a diagonal matrix is a permutation: the vectors of equal values keep row order.
  std::vector<double> w(n), Z(size_t(n) * n);
  std::vector<int> info(1);
  tridiag_eig_host<double>(diag.d.data(), diag.e.data(), n, 1, w.data(), Z.data(), info.data());
  int last_row = -1;
  for (int k = 0; k < n; ++k) {
    int row = -1;
    for (int i = 0; i < n; ++i)
      if (Z[size_t(k) * n + i] != 0) {
        EXPECT_EQ(row, -1);
        EXPECT_EQ(std::abs(Z[size_t(k) * n + i]), 1.0);
        row = i;
      }
    ASSERT_GE(row, 0);
    EXPECT_EQ(w[k], diag.d[row]);
    if (k > 0 && w[k] == w[k - 1]) {
      EXPECT_GT(row, last_row) << "ties by row";
    }
    last_row = row;
  }
}

TEST(TridiagSolve, SplitBlocksWithRepeatedEigenvalues) {
  std::mt19937_64 g(3);
  const Tri b = random_tri(30, g);
  const double big = tnorm(b);
  // Identical blocks: every eigenvalue exactly repeated across blocks.
  expect_both({glued(b, 4, 0.0), glued(b, 4, 1e-300), glued(b, 4, 1e-20 * big)}, "split");
  // The split vectors vanish outside their block.
  const Tri t = glued(b, 3, 1e-20 * big);
  const int n = int(t.d.size());
  std::vector<double> w(n), Z(size_t(n) * n);
  std::vector<int> info(1);
  tridiag_eig_host<double>(t.d.data(), t.e.data(), n, 1, w.data(), Z.data(), info.data());
  for (int k = 0; k < n; ++k) {
    int blocks = 0;
    for (int c = 0; c < 3; ++c) {
      double s = 0;
      for (int i = 30 * c; i < 30 * c + 30; ++i) s += std::abs(Z[size_t(k) * n + i]);
      blocks += s > 0;
    }
    EXPECT_EQ(blocks, 1) << "column " << k;
  }
}

TEST(TridiagSolve, WilkinsonAndGlued) {
  // W21+ has pairs of eigenvalues closer than 1e-14 relative; glued copies make clusters
  // of such pairs with gaps ~ glue.
  const Tri w21 = wilkinson(10);
  std::vector<double> rd = w21.d, re = w21.e;
  ASSERT_EQ(LAPACKE_dsterf(21, rd.data(), re.data()), 0);
  EXPECT_LT((rd[20] - rd[19]) / rd[20], 1e-14); // the adversarial property itself
  expect_both({w21}, "W21+");
  expect_both({glued(w21, 10, 1e-14), glued(w21, 10, 1e-10), glued(w21, 10, 1e-6)}, "glued W21+");
  expect_both({glued(wilkinson(50), 4, 1e-12)}, "glued W101+");
}

TEST(TridiagSolve, RankDeficientGram) {
  // 240 eigenvalues at 1e-6 (up to rounding of ||T|| ~ 1e3): one large cluster.
  std::mt19937_64 g(4);
  expect_both({gram_tri(300, 60, 1e-6, g)}, "gram");
  expect_both({gram_tri(120, 30, 0.0, g), gram_tri(120, 30, 1e-6, g)}, "gram 120");
}

TEST(TridiagSolve, GapsNearTheClusterThreshold) {
  // Eigenvalues 1 - i * f * threshold with delocalized vectors (the tridiagonal of
  // Q diag(lambda) Q^T): at f = 2 and 20 solved independently, at f = 0.5 as one cluster.
  using symoc::cuda::detail::tridiag::cluster_gap;
  std::mt19937_64 g(5);
  for (double f : {0.5, 2.0, 20.0}) {
    std::vector<double> ld(60), lf(60);
    for (int i = 0; i < 60; ++i) ld[i] = 1 - i * f * cluster_gap<double>(), lf[i] = 1 - i * f * 1e5 * cluster_gap<float>();
    ld.push_back(-1), lf.push_back(-1);
    expect_accurate<double>({spectrum_tri(ld, g)}, kDouble, "near threshold");
    // fp32 inputs cannot hold gaps of 1e-10; gaps of 1e-5 with the vectors computed in double.
    expect_accurate<float>({spectrum_tri(lf, g)}, kFloat, "near threshold");
  }
}

TEST(TridiagSolve, ScalesAndSigns) {
  std::mt19937_64 g(6);
  // Mixed signs at 1e30 and 1e-30 (float can hold both).
  expect_both({random_tri(64, g, 1e30), random_tri(64, g, 1e-30), random_tri(64, g, 1.0)}, "scaled");
  // Graded: entries from 1e-12 to 1e12 within one matrix, alternating signs.
  Tri gr{std::vector<double>(48), std::vector<double>(48, 0.0)};
  for (int i = 0; i < 48; ++i) gr.d[i] = (i % 2 ? -1 : 1) * std::pow(10.0, -12 + i / 2.0);
  for (int i = 0; i + 1 < 48; ++i) gr.e[i] = std::pow(10.0, -12.25 + i / 2.0);
  expect_both({gr}, "graded");
  // Double only: 1e300 and 1e-300 (squares are outside double's range without the scaling).
  expect_accurate<double>({random_tri(50, g, 1e300), random_tri(50, g, 1e-300)}, kDouble, "extreme");
}

TEST(TridiagSolve, NanInputGivesInfoAndNanOutputs) {
  std::mt19937_64 g(7);
  std::vector<Tri> ms{random_tri(20, g), random_tri(20, g), random_tri(20, g)};
  ms[1].e[5] = std::numeric_limits<double>::quiet_NaN();
  ms[2].d[19] = std::numeric_limits<double>::infinity();
  ms[0].e[19] = std::numeric_limits<double>::quiet_NaN(); // e[n-1] is ignored
  const int n = 20;
  std::vector<double> d, e, w(3 * n), Z(3 * n * n);
  for (auto &t : ms) d.insert(d.end(), t.d.begin(), t.d.end()), e.insert(e.end(), t.e.begin(), t.e.end());
  std::vector<int> info(3, -1);
  tridiag_eig_host<double>(d.data(), e.data(), n, 3, w.data(), Z.data(), info.data());
  EXPECT_EQ(info[0], 0);
  EXPECT_EQ(info[1], 1);
  EXPECT_EQ(info[2], 1);
  for (int b = 1; b < 3; ++b) {
    for (int i = 0; i < n; ++i) EXPECT_TRUE(std::isnan(w[b * n + i]));
    for (int i = 0; i < n * n; ++i) EXPECT_TRUE(std::isnan(Z[size_t(b) * n * n + i]));
  }
  for (int i = 0; i < n; ++i) EXPECT_FALSE(std::isnan(w[i]));
  ms[0].e[19] = 0;
  expect_both({ms[0]}, "nan neighbour");
}

TEST(TridiagSolve, RankDeficientGramHasNoLargeClusters) {
  // Eigenvalues near 0 (or 1e-6) have absolute gaps far below the fp32 threshold but large
  // relative gaps: the root L D L^T separates them; only chance close pairs may cluster.
  std::mt19937_64 g(8);
  const std::vector<Tri> ms{gram_tri(512, 128, 1e-6, g), gram_tri(400, 100, 0.0, g)};
  const char *names[] = {"512x128 + 1e-6 I", "400x100"};
  for (size_t i = 0; i < ms.size(); ++i) {
    int kd = -1, kf = -1;
    expect_accurate<double>({ms[i]}, kDouble, names[i], &kd);
    expect_accurate<float>({ms[i]}, kFloat, names[i], &kf);
    std::printf("  %s: largest cluster fp64 %d, fp32 %d\n", names[i], kd, kf);
    // Chance close pairs depend on the compiler's rounding (fp32: 3 with g++ -O2, 7 in the
    // CMake build); the absolute-gap clusters these factors formed were 296-384 members.
    EXPECT_LE(kd, 16) << names[i];
    EXPECT_LE(kf, 16) << names[i];
  }
}

TEST(TridiagSolve, TightClusterInTheMiddle) {
  // 12 eigenvalues 0.3 + i * 1e-13 (and 8 exactly 0.7) among spread ones: relative gaps tiny
  // there too, so they must go through the cluster path.
  std::mt19937_64 g(9);
  std::vector<double> lambda;
  for (int i = 0; i < 40; ++i) lambda.push_back(-1 + 2.0 * i / 39);
  for (int i = 0; i < 12; ++i) lambda.push_back(0.3 + i * 1e-13);
  for (int i = 0; i < 8; ++i) lambda.push_back(0.7);
  const Tri t = spectrum_tri(lambda, g);
  int kd = -1, kf = -1;
  expect_accurate<double>({t}, kDouble, "middle cluster", &kd);
  expect_accurate<float>({t}, kFloat, "middle cluster", &kf);
  std::printf("  middle cluster: largest cluster fp64 %d, fp32 %d\n", kd, kf);
  EXPECT_GE(kd, 8);
  // The same shifted to be positive definite with the cluster near the root's other end, and
  // a cluster at the bottom (next to the root shift).
  std::vector<double> l2;
  for (int i = 0; i < 30; ++i) l2.push_back(1 + i);
  for (int i = 0; i < 10; ++i) l2.push_back(1e-3 * (1 + i * 1e-12));
  expect_both({spectrum_tri(l2, g)}, "bottom cluster");
  // A tight cluster next to the root among eigenvalues with tiny absolute but large relative
  // gaps: fp64 solves it on L D L^T (T's vectors would mix with the neighbours').
  std::vector<double> l3;
  for (int i = 0; i < 30; ++i) l3.push_back(1 + i);
  for (int i = 1; i <= 6; ++i) l3.push_back(1e-9 * i);
  for (int i = 0; i < 4; ++i) l3.push_back(1e-9 * 7.5 * (1 + i * 1e-13));
  int k3 = -1;
  expect_accurate<double>({spectrum_tri(l3, g)}, kDouble, "root cluster", &k3);
  EXPECT_EQ(k3, 4);
}

// The roots' smallest eigenvalue by multisection (32 points a round; the GPU's root kernel
// runs the same rounds on a warp) lands where bisection does, within both stopping widths, and
// on LAPACK's value within eps ||T||: random, rank-deficient (lambda_min ~ 0, the eps^2 floor),
// Wilkinson, glued copies, graded, negative, scaled, and 1 and 2 rows.
TEST(TridiagSolve, LowestEigenvalueByMultisectionMatchesBisection) {
  using namespace symoc::cuda::detail::tridiag;
  std::mt19937_64 g(12);
  std::vector<Tri> ms = {random_tri(1, g), random_tri(2, g), random_tri(200, g), random_tri(64, g, 1e-30),
                         random_tri(64, g, 1e30), gram_tri(120, 30, 0.0, g), gram_tri(90, 90, 0.0, g),
                         wilkinson(10), glued(wilkinson(10), 6, 1e-14), spectrum_tri({-3, -2, -2 + 1e-13, -1}, g)};
  Tri gr{std::vector<double>(48), std::vector<double>(48, 0.0)};
  for (int i = 0; i < 48; ++i) gr.d[i] = (i % 2 ? -1 : 1) * std::pow(10.0, -12 + i / 2.0);
  for (int i = 0; i + 1 < 48; ++i) gr.e[i] = std::pow(10.0, -12.25 + i / 2.0);
  ms.push_back(gr);
  for (size_t c = 0; c < ms.size(); ++c) {
    const Tri &t = ms[c];
    const int m = int(t.d.size());
    std::vector<double> e2(m);
    for (int i = 0; i < m; ++i) e2[i] = t.e[i] * t.e[i];
    double gl, gu;
    gershgorin(t.d.data(), t.e.data(), m, gl, gu);
    const double multi = lowest_eigenvalue(t.d.data(), e2.data(), m, gl, gu);
    const double bis = bisect_eigenvalue(t.d.data(), e2.data(), m, 0, gl, gu);
    const Bracket br = lowest_bracket(m, gl, gu);
    const double width = 2 * kEps * std::max(std::abs(multi), std::abs(bis)) + br.atol;
    EXPECT_LE(std::abs(multi - bis), 2 * width) << "matrix " << c << " (n = " << m << "): " << multi << " vs " << bis;
    std::vector<double> rd = t.d, re = t.e;
    ASSERT_EQ(LAPACKE_dsterf(m, rd.data(), re.data()), 0);
    EXPECT_LE(std::abs(multi - rd[0]), 8 * kEps * m * tnorm(t)) << "matrix " << c << ": " << multi << " vs LAPACK "
                                                                   << rd[0];
    // Nothing below the value: the count just under it is 0 (as the bracket's invariant keeps).
    EXPECT_EQ(sturm_count(t.d.data(), e2.data(), m, multi - 2 * width), 0) << "matrix " << c;
  }
}

// The vector phase's chunks (fp32 data): GPT-2 small's banks in 2, 2 and 3 balanced launches;
// never more double vectors a launch than max(128 MB, min(1 GiB, the batch's fp32 output)),
// unless one matrix alone is more; at least one matrix, at most the batch.
TEST(TridiagSolve, VectorChunksAreBalancedAndBounded) {
  using symoc::cuda::detail::tridiag_vector_chunk;
  EXPECT_EQ(tridiag_vector_chunk(3072, 24), 12);
  EXPECT_EQ(tridiag_vector_chunk(2304, 12), 6);
  EXPECT_EQ(tridiag_vector_chunk(768, 61), 21);
  EXPECT_EQ(tridiag_vector_chunk(8192, 16), 2);   // the 1 GiB cap: 512 MB a matrix
  EXPECT_EQ(tridiag_vector_chunk(16384, 4), 1);   // 2 GiB a matrix: one a launch
  EXPECT_EQ(tridiag_vector_chunk(128, 5), 5);     // small: the whole batch
  for (int64_t n : {1, 7, 300, 1000, 3072, 5000})
    for (int64_t batch : {1, 2, 3, 24, 61, 200}) {
      const int64_t c = tridiag_vector_chunk(n, batch);
      ASSERT_GE(c, 1);
      ASSERT_LE(c, batch);
      const double per = double(n) * n * 8, out = double(batch) * n * n * 4;
      const double budget = std::max(128.0 * (1 << 20), std::min(double(1 << 30), out));
      if (c > 1) EXPECT_LE(c * per, budget) << n << " x " << batch;
      const int64_t calls = (batch + c - 1) / c, last = batch - (calls - 1) * c;
      EXPECT_GE(last, c - calls) << "unbalanced: " << n << " x " << batch; // sizes differ by < calls
    }
}

// The opt-in shared start of the bisection (SYMOC_CUDA_BISECT_GRID): every bracket it gives
// holds (count(a) <= k < count(b)); the solver keeps its accuracy with it on random, rank-
// deficient, Wilkinson, glued, scaled and graded matrices, sides past one bisection block
// (300, 200) and with splits (blocks not shared); its eigenvalues are bisection's within both
// stopping widths.
TEST(TridiagSolve, BisectionGrid) {
  using namespace symoc::cuda::detail::tridiag;
  std::mt19937_64 g(13);
  {
    const Tri t = gram_tri(300, 60, 0.0, g); // 240 eigenvalues near 0: deep in the grid
    const int m = int(t.d.size());
    double gl, gu;
    gershgorin(t.d.data(), t.e.data(), m, gl, gu);
    const double bnorm = std::max(std::abs(gl), std::abs(gu));
    double sigma = 0;
    std::vector<double> e2(m), D(m), l(m);
    for (int i = 0; i < m; ++i) e2[i] = t.e[i] * t.e[i];
    ASSERT_TRUE(root_factor(t.d.data(), t.e.data(), m, lowest_eigenvalue(t.d.data(), e2.data(), m, gl, gu), bnorm,
                            sigma, D.data(), l.data()));
    const double b0 = ldl_top(gu - sigma, m);
    int counts[kGridPoints];
    for (int j = 0; j < kGridPoints; ++j) counts[j] = ldl_count(D.data(), l.data(), m, grid_point(b0, j));
    int bracketed = 0;
    for (int k = 0; k < m; ++k) {
      double a = 0, b = 0;
      if (!grid_bracket(counts, b0, k, a, b)) continue;
      ++bracketed;
      EXPECT_LE(ldl_count(D.data(), l.data(), m, a), k) << "k " << k;
      EXPECT_GT(ldl_count(D.data(), l.data(), m, b), k) << "k " << k;
      EXPECT_LE(b, a * 1.5 + 1e-300) << "k " << k << ": wider than a factor sqrt 2";
      EXPECT_EQ(bisect_ldl_from(D.data(), l.data(), m, k, a, b) > 0, true);
    }
    EXPECT_EQ(bracketed, m); // b0 bounds the spectrum: every slot starts from the grid
  }
  g_bisect_grid = true;
  expect_both({random_tri(300, g), random_tri(300, g)}, "grid random");
  expect_both({gram_tri(300, 60, 1e-6, g)}, "grid gram");
  expect_both({gram_tri(200, 50, 0.0, g), gram_tri(200, 200, 0.0, g)}, "grid gram 200");
  expect_both({glued(wilkinson(10), 10, 1e-10)}, "grid glued W21+");
  expect_both({random_tri(150, g, 1e30), random_tri(150, g, 1e-30)}, "grid scaled");
  Tri split = random_tri(260, g);
  split.e[70] = 0, split.e[190] = 0; // three blocks: bisection blocks 0 and 1 are not shared
  expect_both({split}, "grid split");
  // Eigenvalues with and without the grid: mu (of the root L D L^T) within both stopping
  // widths (2 eps relative each), lam = sigma + mu within one rounding of sigma ~ ||T|| more.
  std::vector<Tri> ms = {gram_tri(260, 40, 0.0, g), random_tri(260, g), split};
  for (const Tri &t : ms) {
    const int n = int(t.d.size());
    std::vector<double> w0(n), w1(n), Z(size_t(n) * n);
    int info = 0;
    tridiag_eig_host<double>(t.d.data(), t.e.data(), n, 1, w0.data(), Z.data(), &info, nullptr, false);
    tridiag_eig_host<double>(t.d.data(), t.e.data(), n, 1, w1.data(), Z.data(), &info, nullptr, true);
    const double nrm = tnorm(t);
    for (int k = 0; k < n; ++k)
      EXPECT_LE(std::abs(w0[k] - w1[k]), 8 * kEps * (std::abs(w0[k]) + nrm)) << "k " << k << " of " << n;
  }
  g_bisect_grid = false;
}

TEST(TridiagSolve, TwistedSolveOfRoot) {
  // (L D L^T - mu I) x = y through the twisted factorization, against the formed tridiagonal.
  using namespace symoc::cuda::detail::tridiag;
  std::mt19937_64 g(10);
  std::uniform_real_distribution<double> u(0.1, 1);
  const int m = 50;
  std::vector<double> D(m), l(m, 0.0), y(m), x(m), u1(m), u2(m);
  for (int i = 0; i < m; ++i) D[i] = u(g), l[i] = i + 1 < m ? u(g) : 0.0, y[i] = u(g) - 0.5;
  for (double mu : {0.0, 0.37, 1.1}) {
    x = y;
    twisted_solve_ldl(D.data(), l.data(), m, mu, 1e-300, x.data(), 1, u1.data(), u2.data(), 1);
    double err = 0, xn = 0;
    for (int i = 0; i < m; ++i) {
      const double di = D[i] + (i > 0 ? l[i - 1] * l[i - 1] * D[i - 1] : 0.0) - mu;
      double r = di * x[i] - y[i];
      if (i > 0) r += l[i - 1] * D[i - 1] * x[i - 1];
      if (i + 1 < m) r += l[i] * D[i] * x[i + 1];
      err = std::max(err, std::abs(r)), xn = std::max(xn, std::abs(x[i]));
    }
    EXPECT_LT(err / (xn + 1), 1e-10) << "mu " << mu;
  }
}
