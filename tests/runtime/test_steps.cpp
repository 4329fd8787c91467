// Matrix functions, equivariance of every rule under its block group, Lau-Su and
// Adam-mini rules against direct formulas, gauge projections, degenerate shapes.
#include "test_util.h"

#include <gtest/gtest.h>

#include <cstring>
#include <functional>
#include <memory>

using namespace symoc::rt;
using namespace symoc::rt::test;

namespace {

// Exact polar factor U V^T by a double-precision SVD (LAPACK dgesvd): a route the runtime
// does not use.
std::vector<double> svd_polar(const std::vector<float> &X, int64_t m, int64_t n, std::vector<double> *sv = nullptr) {
  std::vector<double> A(X.begin(), X.end()), s(size_t(std::min(m, n))), U(size_t(m * std::min(m, n))),
      Vt(size_t(std::min(m, n) * n)), sup(size_t(std::min(m, n)));
  const int64_t k = std::min(m, n);
  LAPACKE_dgesvd(LAPACK_ROW_MAJOR, 'S', 'S', int(m), int(n), A.data(), int(n), s.data(), U.data(), int(k), Vt.data(),
                 int(n), sup.data());
  if (sv) *sv = s;
  return matmul(U, Vt, m, k, n);
}

// X = U diag(s) V^T with given singular values (random orthogonal U, V).
std::vector<float> with_singular_values(std::mt19937 &rng, int64_t m, int64_t n, const std::vector<double> &s) {
  Mat U = haar_orthogonal(rng, m), V = haar_orthogonal(rng, n);
  Mat X(size_t(m * n), 0.0);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j)
      for (size_t k = 0; k < s.size(); ++k) X[size_t(i * n + j)] += U[size_t(i * m + int64_t(k))] * s[k] * V[size_t(j * n + int64_t(k))];
  return std::vector<float>(X.begin(), X.end());
}

std::vector<float> run_polar(const std::vector<float> &X, int64_t m, int64_t n, PolarMethod meth) {
  Context ctx;
  std::vector<float> P(X.size());
  std::vector<float> Xc = X;
  polar(ctx, MatView(Xc.data(), m, n), MatView(P.data(), m, n), polar_options(meth));
  return P;
}

} // namespace

TEST(MatFn, EigenPolarMatchesSvdIncludingGramShapes) {
  std::mt19937 rng(10);
  struct S { int64_t m, n; };
  for (S s : {S{20, 12}, S{12, 20}, S{4, 300}, S{300, 4}, S{16, 16}}) {
    auto X = randn(rng, size_t(s.m * s.n));
    EXPECT_LT(rel_err(run_polar(X, s.m, s.n, PolarMethod::Eig), svd_polar(X, s.m, s.n)), 2e-4) << s.m << "x" << s.n;
  }
}

TEST(MatFn, NewtonSchulzMatchesADoubleImplementationOfMuonsIteration) {
  std::mt19937 rng(11);
  for (auto sh : {std::pair<int64_t, int64_t>{24, 40}, {40, 24}, {4, 300}}) {
    const int64_t m = sh.first, n = sh.second;
    auto X = randn(rng, size_t(m * n));
    // the same polynomial map, written directly in double on the un-transposed matrix:
    // a X + b (X X^T) X + c (X X^T)^2 X commutes with transposition.
    Mat Y(X.begin(), X.end());
    double nn = 0;
    for (double v : Y) nn += v * v;
    for (auto &v : Y) v /= std::sqrt(nn) + 1e-7;
    for (int it = 0; it < 5; ++it) {
      Mat A = matmul(Y, transposed(Y, m, n), m, n, m);
      Mat AY = matmul(A, Y, m, m, n), AAY = matmul(A, AY, m, m, n);
      for (size_t k = 0; k < Y.size(); ++k) Y[k] = 3.4445 * Y[k] - 4.7750 * AY[k] + 2.0315 * AAY[k];
    }
    auto got = run_polar(X, m, n, PolarMethod::NewtonSchulz);
    EXPECT_LT(rel_err(got, Y), 1e-4) << m << "x" << n;
  }
}

TEST(MatFn, PolarExpressConvergesAndBeatsNewtonSchulz) {
  std::mt19937 rng(12);
  const int64_t m = 32, n = 48;
  std::vector<double> s(32);
  for (size_t k = 0; k < s.size(); ++k) s[k] = std::pow(10.0, -3.0 * double(k) / 31.0); // 1 .. 1e-3
  auto X = with_singular_values(rng, m, n, s);
  auto exact = svd_polar(X, m, n);
  const double pe = rel_err(run_polar(X, m, n, PolarMethod::PolarExpress), exact);
  const double ns = rel_err(run_polar(X, m, n, PolarMethod::NewtonSchulz), exact);
  EXPECT_LT(pe, 0.05);
  EXPECT_LT(pe, ns);
  // singular values of the Polar Express output are all near 1
  std::vector<double> sv;
  auto P = run_polar(X, m, n, PolarMethod::PolarExpress);
  svd_polar(P, m, n, &sv);
  for (double v : sv) EXPECT_NEAR(v, 1.0, 0.1);
}

TEST(MatFn, SymmetricPowersAndCoupledNewton) {
  std::mt19937 rng(13);
  const int64_t n = 24;
  auto A = randn(rng, size_t(n * 40));
  Context ctx;
  std::vector<float> S(size_t(n * n));
  gram(ctx, false, 1.f / 40, MatView(A.data(), n, 40), 0.f, MatView(S.data(), n, n));
  Mat Sd(S.begin(), S.end());
  for (EigPrecision prec : {EigPrecision::Float64, EigPrecision::Float32})
    for (double p : {-0.5, -0.25, 0.5}) {
      MatFnOptions o;
      o.precision = prec;
      std::vector<float> out(S.size());
      sym_pow_eig(ctx, MatView(S.data(), n, n), p, 0.0, MatView(out.data(), n, n), o);
      EXPECT_LT(rel_err(out, sym_pow_ref(Sd, n, p)), prec == EigPrecision::Float64 ? 1e-5 : 1e-3) << p;
    }
  for (int p : {2, 4}) {
    std::vector<float> out(S.size());
    inv_root_newton(ctx, MatView(S.data(), n, n), p, 1e-6, MatView(out.data(), n, n));
    Mat Se = Sd;
    for (int64_t i = 0; i < n; ++i) Se[size_t(i * n + i)] += 1e-6;
    EXPECT_LT(rel_err(out, sym_pow_ref(Se, n, -1.0 / p)), 2e-3) << "p = " << p;
  }
}

// The CUDA backend's coupled Newton root (SYMOC_CUDA_ROOT=newton) through its CPU reference,
// on A = Q diag(w) Q^T with w log-spaced over a condition number kappa, against the double
// eigendecomposition's (A + eps I)^(-1/p) (no cut: every eigenvalue is >= eps > 0).
TEST(MatFn, NewtonRootFixedBudget) {
  std::mt19937 rng(29);
  const int64_t n = 64;
  const double eps = 1e-9;
  Context ctx;
  auto spd = [&](double kappa) {
    Mat Q = haar_orthogonal(rng, n);
    std::vector<double> w(static_cast<size_t>(n));
    for (int64_t k = 0; k < n; ++k) w[size_t(k)] = std::pow(kappa, -double(k) / double(n - 1)); // 1 .. 1/kappa
    std::vector<float> S(size_t(n * n));
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j <= i; ++j) {
        double v = 0;
        for (int64_t k = 0; k < n; ++k) v += Q[size_t(i * n + k)] * w[size_t(k)] * Q[size_t(j * n + k)];
        S[size_t(i * n + j)] = S[size_t(j * n + i)] = float(v);
      }
    return S;
  };
  auto exact = [&](const std::vector<float> &S, double p) {
    Mat Se(S.begin(), S.end());
    for (int64_t i = 0; i < n; ++i) Se[size_t(i * n + i)] += eps;
    return sym_pow_ref(Se, n, -1.0 / p, 0.0);
  };
  auto newton = [&](const std::vector<float> &S, int p, const NewtonRootOptions &o, NewtonRootInfo *info) {
    std::vector<float> out(S.size());
    inv_root_newton_fixed(ctx, MatView(const_cast<float *>(S.data()), n, n), p, eps, MatView(out.data(), n, n), o, info);
    return out;
  };
  // kappa <= 1e6: S is stored in float (entry rounding ~6e-8 of |S_ij|, eigenvalue shifts
  // ~1.5e-7 here), so a smaller eigenvalue could turn negative: not an SPD test any more.
  for (double kappa : {1e1, 1e3, 1e5, 1e6}) {
    const auto S = spd(kappa);
    for (int p : {2, 4}) {
      const Mat ref = exact(S, p);
      // Enough steps for every kappa here (the smallest scaled eigenvalue grows by
      // ((p+1)/p)^p >= 2.25 a step until it nears 1, then quadratic convergence): the float
      // output's rounding (6e-8) and an error floor of a few ulp of double times kappa^(1/p).
      NewtonRootOptions many;
      many.iters = 60, many.tol = 1e-13;
      NewtonRootInfo info;
      const double e_many = rel_err(newton(S, p, many, &info), ref);
      std::printf("newton root kappa %.0e p %d: %d steps -> rel err %.2e (||M - I|| %.1e, lambda %.4f)\n", kappa, p,
                  info.steps, e_many, info.error, info.lambda);
      EXPECT_LT(e_many, 1e-6) << "kappa " << kappa << " p " << p;
      // The power iteration approaches lambda_max = 1 from below (slowly here: the next
      // eigenvalue is kappa^(-1/63), 0.80 .. 0.96); the iteration converges for lambda > 0.4.
      EXPECT_LE(info.lambda, 1.0 + 1e-9);
      EXPECT_GT(info.lambda, 0.4);
      // The default budget (16 steps, tol 1e-6): converged up to kappa 1e3. X = A^(-1/p) M^(1/p)
      // (all iterates commute), so ||M - I||_F / sqrt(n) <= tol bounds every direction's error
      // by sqrt(n) tol / p. Beyond, the directions that have not converged are damped, never
      // amplified: v^T X v <= (w + eps)^(-1/p) on every eigenvector.
      NewtonRootOptions dflt;
      const auto X = newton(S, p, dflt, &info);
      const double e_dflt = rel_err(X, ref);
      std::printf("  default budget: %d steps -> rel err %.2e (||M - I|| %.1e)\n", info.steps, e_dflt, info.error);
      if (kappa <= 1e3) EXPECT_LT(e_dflt, std::sqrt(double(n)) * dflt.tol / p) << "kappa " << kappa << " p " << p;
      Mat A(S.begin(), S.end()), V = A;
      std::vector<double> w(static_cast<size_t>(n));
      LAPACKE_dsyev(LAPACK_ROW_MAJOR, 'V', 'U', int(n), V.data(), int(n), w.data());
      double worst = 0;
      for (int64_t k = 0; k < n; ++k) {
        double q = 0;
        for (int64_t i = 0; i < n; ++i)
          for (int64_t j = 0; j < n; ++j) q += V[size_t(i * n + k)] * double(X[size_t(i * n + j)]) * V[size_t(j * n + k)];
        worst = std::max(worst, q * std::pow(std::max(w[size_t(k)], 0.0) + eps, 1.0 / p) - 1.0);
      }
      EXPECT_LT(worst, 1e-5) << "an unconverged direction amplified, kappa " << kappa << " p " << p;
      // The scaled steps (opt-in) leave this start alone: z eps = 2e-9 is below the floor
      // (kNewtonScaleFloor), where rounding could have made an eigenvalue negative.
      NewtonRootOptions sc;
      sc.scaled = true, sc.iters = 12;
      NewtonRootOptions pl = sc;
      pl.scaled = false;
      EXPECT_EQ(rel_err(newton(S, p, sc, nullptr), newton(S, p, pl, nullptr)), 0.0);
      // Above the floor (eps 1e-5: kappa of A up to 9e4), 12 scaled steps converge at p = 4
      // where 12 plain steps do not (the small eigenvalues grow ~6x a step instead of 2.44x);
      // p = 2 (c = 1.5: 3.4x instead of 2.25x) up to kappa 1e3. Damped, never amplified.
      {
        const double eps_s = 1e-5;
        std::vector<float> out(S.size());
        NewtonRootInfo si;
        inv_root_newton_fixed(ctx, MatView(const_cast<float *>(S.data()), n, n), p, eps_s, MatView(out.data(), n, n), sc,
                              &si);
        Mat Se(S.begin(), S.end());
        for (int64_t d = 0; d < n; ++d) Se[size_t(d * n + d)] += eps_s;
        const Mat ref_s = sym_pow_ref(Se, n, -1.0 / p, 0.0);
        const double e_sc = rel_err(out, ref_s);
        std::vector<float> outp(S.size());
        inv_root_newton_fixed(ctx, MatView(const_cast<float *>(S.data()), n, n), p, eps_s, MatView(outp.data(), n, n), pl);
        std::printf("  eps 1e-5, 12 steps: scaled %d accepted -> rel err %.2e; plain %.2e\n", si.steps, e_sc,
                    rel_err(outp, ref_s));
        if (p == 4 || kappa <= 1e3) EXPECT_LT(e_sc, std::sqrt(double(n)) * sc.tol / p) << "kappa " << kappa << " p " << p;
        for (int64_t k = 0; k < n; ++k) {
          double q = 0;
          for (int64_t a = 0; a < n; ++a)
            for (int64_t b = 0; b < n; ++b) q += V[size_t(a * n + k)] * double(out[size_t(a * n + b)]) * V[size_t(b * n + k)];
          EXPECT_LT(q * std::pow(std::max(w[size_t(k)], 0.0) + eps_s, 1.0 / p) - 1.0, 1e-5) << "scaled, kappa " << kappa;
        }
      }
      // Mutation: the iteration for the wrong root is far outside the limits above.
      if (kappa == 1e1) {
        EXPECT_GT(rel_err(newton(S, p == 4 ? 2 : 4, many, nullptr), ref), 0.1);
      }
    }
  }
  std::vector<float> S = spd(10), out(S.size());
  EXPECT_THROW(inv_root_newton_fixed(ctx, MatView(S.data(), n, n), 4, 0.0, MatView(out.data(), n, n)), Error);
  EXPECT_THROW(inv_root_newton_fixed(ctx, MatView(S.data(), n, n), 0, 1e-6, MatView(out.data(), n, n)), Error);
}

// --------------------------------------------------------------- equivariance
namespace {
struct RuleCase {
  std::string name;
  std::function<std::shared_ptr<Rule>()> make;
  Group left, right;
};
std::vector<RuleCase> rule_cases() {
  std::vector<RuleCase> r;
  r.push_back({"sgd", [] { SGDConfig c; c.momentum = 0.9f; c.nesterov = true; c.weight_decay = 0.01f; return std::make_shared<SGD>(c); }, Group::O, Group::O});
  r.push_back({"adam", [] { AdamConfig c; c.weight_decay = 0.01f; return std::make_shared<Adam>(c); }, Group::B, Group::B});
  r.push_back({"adamw", [] { return std::make_shared<Adam>(adamw_config(0.1f)); }, Group::B, Group::B});
  r.push_back({"adam_mini", [] { return std::make_shared<AdamMini>(); }, Group::B, Group::O});
  r.push_back({"muon", [] { MuonConfig c; c.weight_decay = 0.01f; return std::make_shared<Muon>(c); }, Group::O, Group::O});
  // NorMuon's per-line normalization: rows (columns) only under B there, O on the other side
  r.push_back({"muon_norm_rows", [] { MuonConfig c; c.norm_beta2 = 0.9f; c.norm_axis = 0; c.weight_decay = 0.01f; return std::make_shared<Muon>(c); }, Group::B, Group::O});
  r.push_back({"muon_norm_cols", [] { MuonConfig c; c.norm_beta2 = 0.9f; c.norm_axis = 1; return std::make_shared<Muon>(c); }, Group::O, Group::B});
  r.push_back({"muon_pe", [] { MuonConfig c; c.polar = polar_options(PolarMethod::PolarExpress); return std::make_shared<Muon>(c); }, Group::O, Group::O});
  r.push_back({"shampoo", [] { ShampooConfig c; c.eps = 1e-3f; return std::make_shared<Shampoo>(c); }, Group::O, Group::O});
  r.push_back({"lausu_polar", [] { return std::make_shared<LauSu>(LauSuKind::Polar); }, Group::O, Group::O});
  r.push_back({"lausu_row", [] { return std::make_shared<LauSu>(LauSuKind::Row); }, Group::B, Group::O});
  r.push_back({"lausu_col", [] { return std::make_shared<LauSu>(LauSuKind::Col); }, Group::O, Group::B});
  r.push_back({"lausu_centered_row", [] { return std::make_shared<LauSu>(LauSuKind::CenteredRow); }, Group::S, Group::O});
  r.push_back({"lausu_hybrid", [] { return std::make_shared<LauSu>(LauSuKind::Hybrid); }, Group::B, Group::O});
  r.push_back({"lausu_spectral", [] { return std::make_shared<LauSu>(LauSuKind::OneSidedSpectral); }, Group::O, Group::O});
  r.push_back({"lausu_router", [] { return std::make_shared<LauSu>(LauSuKind::LeftSpectralCentered); }, Group::S, Group::O});
  return r;
}
} // namespace

TEST(Equivariance, EveryRuleUnderItsBlockGroup) {
  std::mt19937 rng(14);
  for (auto &rc : rule_cases())
    for (auto sh : {std::pair<int64_t, int64_t>{6, 4}, {4, 6}}) {
      const int64_t m = sh.first, n = sh.second;
      Mat P = random_element(rng, rc.left, m), Q = random_element(rng, rc.right, n);
      auto r1 = rc.make(), r2 = rc.make();
      EXPECT_LT(transport_error(rng, *r1, *r2, P, Q, m, n, 0.05f), 2e-5) << rc.name << " " << m << "x" << n;
    }
}

// The reason the plan refuses NorMuon's normalization on a side with an O/GL claim: rotating
// the lines changes the step by far more than rounding (the test above would catch a rule
// that silently ignored norm_axis; this one a normalization that were rotation-equivariant).
TEST(Equivariance, LineNormalizationIsNotRotationEquivariantOnItsAxis) {
  std::mt19937 rng(17);
  for (int axis : {0, 1}) {
    const int64_t m = 6, n = 4;
    Mat P = random_element(rng, axis == 0 ? Group::O : Group::Trivial, m);
    Mat Q = random_element(rng, axis == 1 ? Group::O : Group::Trivial, n);
    MuonConfig c;
    c.norm_beta2 = 0.9f, c.norm_axis = axis;
    Muon r1(c), r2(c);
    EXPECT_GT(transport_error(rng, r1, r2, P, Q, m, n, 0.05f), 1e-3) << "axis " << axis;
  }
}

TEST(Degenerate, EveryRuleGivesFiniteStepsOnDegenerateShapes) {
  std::mt19937 rng(15);
  for (auto &rc : rule_cases())
    for (auto sh : {std::pair<int64_t, int64_t>{1, 7}, {7, 1}, {1, 1}, {5, 8}})
      for (int kind = 0; kind < 3; ++kind) {
        const int64_t m = sh.first, n = sh.second;
        auto G = randn(rng, size_t(m * n));
        if (kind == 1) { // rank one
          auto u = randn(rng, size_t(m)), v = randn(rng, size_t(n));
          for (int64_t i = 0; i < m; ++i)
            for (int64_t j = 0; j < n; ++j) G[size_t(i * n + j)] = u[size_t(i)] * v[size_t(j)];
        }
        if (kind == 2) std::fill(G.begin(), G.end(), 0.f);
        Context ctx;
        State st;
        auto r = rc.make();
        auto W = randn(rng, size_t(m * n));
        for (int t = 0; t < 2; ++t) r->step(ctx, st, Param{"w", W.data(), G.data(), m, n}, 0.1f);
        EXPECT_TRUE(finite(W)) << rc.name << " " << m << "x" << n << " kind " << kind;
        for (auto &name : st.buffer_names()) {
          int64_t sz = 1;
          for (auto d : st.shape(name)) sz *= d;
          std::vector<float> b(st.data(name), st.data(name) + sz);
          EXPECT_TRUE(finite(b)) << rc.name << " state " << name;
        }
      }
}

// --------------------------------------------------------------- Lau & Su
TEST(LauSu, DirectionsHaveTheirDefiningProperties) {
  std::mt19937 rng(16);
  const int64_t m = 7, n = 5;
  auto M = randn(rng, size_t(m * n));
  Context ctx;
  LauSuConfig c;
  c.eps = 0.f;
  auto dir = [&](LauSuKind k) {
    std::vector<float> D(M.size());
    LauSu::direction_of(ctx, k, c, MatView(M.data(), m, n), MatView(D.data(), m, n));
    return D;
  };
  auto row_norm = [&](const std::vector<float> &D, int64_t i) {
    double s = 0;
    for (int64_t j = 0; j < n; ++j) s += double(D[size_t(i * n + j)]) * D[size_t(i * n + j)];
    return std::sqrt(s);
  };
  auto D = dir(LauSuKind::Row);
  for (int64_t i = 0; i < m; ++i) EXPECT_NEAR(row_norm(D, i), 1.0, 1e-6);
  D = dir(LauSuKind::Col);
  for (int64_t j = 0; j < n; ++j) {
    double s = 0;
    for (int64_t i = 0; i < m; ++i) s += double(D[size_t(i * n + j)]) * D[size_t(i * n + j)];
    EXPECT_NEAR(s, 1.0, 1e-5);
  }
  D = dir(LauSuKind::CenteredRow); // centred rows of a row-normalized centred matrix
  for (int64_t j = 0; j < n; ++j) {
    double s = 0;
    for (int64_t i = 0; i < m; ++i) s += D[size_t(i * n + j)];
    EXPECT_NEAR(s, 0.0, 1e-5);
  }
  // One-sided spectral: nu * polar(M), nu = nuclear norm = sum of singular values
  std::vector<double> sv;
  auto P = svd_polar(M, m, n, &sv);
  double nu = 0;
  for (double v : sv) nu += v;
  for (auto &x : P) x *= nu;
  EXPECT_LT(rel_err(dir(LauSuKind::OneSidedSpectral), P), 1e-4);
  // Router: rows centred, and equal to nu_c (Mc Mc^T)^{+1/2} Mc with nu_c Mc's nuclear norm
  D = dir(LauSuKind::LeftSpectralCentered);
  std::vector<float> Mc = M;
  for (int64_t j = 0; j < n; ++j) {
    double s = 0;
    for (int64_t i = 0; i < m; ++i) s += Mc[size_t(i * n + j)];
    for (int64_t i = 0; i < m; ++i) Mc[size_t(i * n + j)] -= float(s / double(m));
  }
  auto Pc = svd_polar(Mc, m, n, &sv);
  nu = 0;
  for (double v : sv) nu += v;
  for (auto &x : Pc) x *= nu;
  EXPECT_LT(rel_err(D, Pc), 1e-3);
}

// --------------------------------------------------------------- Adam-mini
TEST(AdamMini, MatchesADirectDoubleImplementation) {
  std::mt19937 rng(17);
  const int64_t m = 6, n = 4;
  for (int64_t gr : {1, 3}) {
    AdamMiniConfig c;
    c.group_rows = gr;
    c.weight_decay = 0.1f;
    AdamMini rule(c);
    Context ctx;
    State st;
    auto W = randn(rng, size_t(m * n));
    Mat Wd(W.begin(), W.end()), mm(size_t(m * n), 0.0), v(size_t(m / gr), 0.0);
    const double lr = 0.01;
    for (int t = 1; t <= 4; ++t) {
      auto G = randn(rng, size_t(m * n));
      rule.step(ctx, st, Param{"w", W.data(), G.data(), m, n}, float(lr));
      for (int64_t k = 0; k < m / gr; ++k) {
        double s = 0;
        for (int64_t j = k * gr * n; j < (k + 1) * gr * n; ++j) s += double(G[size_t(j)]) * G[size_t(j)];
        v[size_t(k)] = 0.999 * v[size_t(k)] + 0.001 * s / double(gr * n);
      }
      for (int64_t j = 0; j < m * n; ++j) {
        mm[size_t(j)] = 0.9 * mm[size_t(j)] + 0.1 * G[size_t(j)];
        const double vh = v[size_t(j / (gr * n))] / (1 - std::pow(0.999, t));
        Wd[size_t(j)] = Wd[size_t(j)] * (1 - lr * 0.1) - lr * (mm[size_t(j)] / (1 - std::pow(0.9, t))) / (std::sqrt(vh) + 1e-8);
      }
    }
    EXPECT_LT(rel_err(W, Wd), 1e-6) << "group_rows " << gr;
  }
}

// --------------------------------------------------------------- gauges
namespace {
double dot(const std::vector<float> &a, const std::vector<double> &b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}
} // namespace

TEST(Gauge, ProjectedDirectionsAreOrthogonalToEveryTangent) {
  std::mt19937 rng(18);
  Context ctx;
  const int64_t din = 5, h = 6, dout = 4;
  // ReLU: W_in (h x din), b (h), W_out (dout x h)
  auto Wi = randn(rng, size_t(h * din)), b = randn(rng, size_t(h)), Wo = randn(rng, size_t(dout * h));
  auto Di = randn(rng, Wi.size()), Db = randn(rng, b.size()), Do = randn(rng, Wo.size());
  std::vector<float> z1(Wi.size()), z2(b.size()), z3(Wo.size());
  Param ps[3] = {{"in", Wi.data(), z1.data(), h, din}, {"b", b.data(), z2.data(), h, 1}, {"out", Wo.data(), z3.data(), dout, h}};
  float *D[3] = {Di.data(), Db.data(), Do.data()};
  GaugeProjected::project(ctx, {GaugeKind::ReluRescale, 0, 1, 2}, ps, 3, D);
  for (int64_t u = 0; u < h; ++u) { // xi_u = (row u of W_in, b_u, -column u of W_out)
    std::vector<double> xi_in(Wi.size(), 0.0), xi_b(b.size(), 0.0), xi_out(Wo.size(), 0.0);
    for (int64_t j = 0; j < din; ++j) xi_in[size_t(u * din + j)] = Wi[size_t(u * din + j)];
    xi_b[size_t(u)] = b[size_t(u)];
    for (int64_t k = 0; k < dout; ++k) xi_out[size_t(k * h + u)] = -Wo[size_t(k * h + u)];
    EXPECT_NEAR(dot(Di, xi_in) + dot(Db, xi_b) + dot(Do, xi_out), 0.0, 1e-5) << "unit " << u;
  }
  // Row scale (a conv kernel 6 x (5*3*3) feeding a BatchNorm, with its bias): per row,
  // orthogonal to (row u of W, b_u); other directions keep their size.
  {
    const int64_t rows = 6, cols = 45;
    auto W = randn(rng, size_t(rows * cols)), bw = randn(rng, size_t(rows));
    auto DW = randn(rng, W.size()), DB = randn(rng, bw.size());
    auto DW0 = DW;
    std::vector<float> zw(W.size()), zb(bw.size());
    Param pr[2] = {{"conv", W.data(), zw.data(), rows, cols}, {"bias", bw.data(), zb.data(), rows, 1}};
    float *Dr[2] = {DW.data(), DB.data()};
    GaugeProjected::project(ctx, {GaugeKind::RowScale, 0, 1}, pr, 2, Dr);
    double moved = 0;
    for (int64_t u = 0; u < rows; ++u) {
      double s = DB[size_t(u)] * bw[size_t(u)];
      for (int64_t j = 0; j < cols; ++j) s += double(DW[size_t(u * cols + j)]) * W[size_t(u * cols + j)];
      EXPECT_NEAR(s, 0.0, 1e-5) << "row " << u;
      for (int64_t j = 0; j < cols; ++j) moved += std::fabs(DW[size_t(u * cols + j)] - DW0[size_t(u * cols + j)]);
    }
    EXPECT_GT(moved, 0.0); // the random direction had a vertical part to remove
  }
  // Logit shift and norm scale
  auto Wl = randn(rng, 20), Dl = randn(rng, 20);
  Param pl{"head", Wl.data(), z1.data(), 5, 4};
  float *dl = Dl.data();
  GaugeProjected::project(ctx, {GaugeKind::LogitShift, 0}, &pl, 1, &dl);
  for (int64_t j = 0; j < 4; ++j) {
    std::vector<double> xi(20, 0.0);
    for (int64_t i = 0; i < 5; ++i) xi[size_t(i * 4 + j)] = 1.0;
    EXPECT_NEAR(dot(Dl, xi), 0.0, 1e-5);
  }
  Dl = randn(rng, 20);
  dl = Dl.data();
  GaugeProjected::project(ctx, {GaugeKind::NormScale, 0}, &pl, 1, &dl);
  EXPECT_NEAR(dot(Dl, std::vector<double>(Wl.begin(), Wl.end())), 0.0, 1e-5);
  // Head rotations: Q/K and V/O, 2 heads of 3 channels, model width 5
  const int64_t H = 2, dh = 3, d = 5;
  for (bool qk : {true, false}) {
    auto A = randn(rng, size_t(H * dh * d));
    auto B = randn(rng, size_t(H * dh * d)); // K: (H dh) x d ; O: d x (H dh)
    auto DA = randn(rng, A.size()), DB = randn(rng, B.size());
    std::vector<float> zz(A.size());
    Param pp[2] = {{"a", A.data(), zz.data(), H * dh, d},
                   {"b", B.data(), zz.data(), qk ? H * dh : d, qk ? d : H * dh}};
    float *DD[2] = {DA.data(), DB.data()};
    GaugeSpec g{qk ? GaugeKind::HeadRotationQK : GaugeKind::HeadRotationVO, 0, qk ? 1 : -1, qk ? -1 : 1};
    g.heads = H;
    GaugeProjected::project(ctx, g, pp, 2, DD);
    for (int trial = 0; trial < 3; ++trial)
      for (int64_t hh = 0; hh < H; ++hh) {
        auto r = randn(rng, size_t(dh * dh));
        Mat X(size_t(dh * dh));
        for (int64_t i = 0; i < dh; ++i)
          for (int64_t j = 0; j < dh; ++j) X[size_t(i * dh + j)] = r[size_t(i * dh + j)] - r[size_t(j * dh + i)];
        std::vector<double> xa(A.size(), 0.0), xb(B.size(), 0.0);
        for (int64_t i = 0; i < dh; ++i)
          for (int64_t j = 0; j < d; ++j)
            for (int64_t k = 0; k < dh; ++k) {
              xa[size_t((hh * dh + i) * d + j)] += X[size_t(i * dh + k)] * A[size_t((hh * dh + k) * d + j)];
              if (qk) xb[size_t((hh * dh + i) * d + j)] += X[size_t(i * dh + k)] * B[size_t((hh * dh + k) * d + j)];
              else // -W_O^h X : (d x dh) columns of head hh
                xb[size_t(j * H * dh + hh * dh + i)] -= B[size_t(j * H * dh + hh * dh + k)] * X[size_t(k * dh + i)];
            }
        EXPECT_NEAR(dot(DA, xa) + dot(DB, xb), 0.0, 1e-4) << (qk ? "QK" : "VO") << " head " << hh;
      }
  }
}

TEST(Gauge, WrapperKeepsBaseStepHorizontalAndIsIdempotent) {
  std::mt19937 rng(19);
  const int64_t V = 6, d = 4;
  auto W = randn(rng, size_t(V * d));
  auto W0 = W;
  GaugeProjected rule(std::make_shared<Adam>(), {{GaugeKind::LogitShift, 0}});
  Context ctx;
  State st;
  auto G = randn(rng, size_t(V * d));
  rule.step(ctx, st, Param{"head", W.data(), G.data(), V, d}, 0.1f);
  for (int64_t j = 0; j < d; ++j) { // the update has zero column sums: no logit-shift component
    double s = 0;
    for (int64_t i = 0; i < V; ++i) s += double(W[size_t(i * d + j)]) - W0[size_t(i * d + j)];
    EXPECT_NEAR(s, 0.0, 1e-5);
  }
  // projecting twice changes nothing
  auto D = randn(rng, size_t(V * d));
  float *dp = D.data();
  Param p{"head", W.data(), G.data(), V, d};
  GaugeProjected::project(ctx, {GaugeKind::LogitShift, 0}, &p, 1, &dp);
  auto once = D;
  GaugeProjected::project(ctx, {GaugeKind::LogitShift, 0}, &p, 1, &dp);
  EXPECT_LT(rel_err(D, once), 1e-6);
  EXPECT_GT(rel_err(once, randn(rng, once.size())), 0.1); // and it is not trivially zero
}

// Large blocks take the OpenMP paths (thresholds at 2^16 / 2^18 entries).
TEST(Parallel, LargeBlocksMatchTheClosedFormAndDetectNonFinite) {
  std::mt19937 rng(20);
  const int64_t m = 700, n = 400;
  auto G = randn(rng, size_t(m * n));
  SymoConfig c;
  c.left = Group::Z2, c.right = Group::B, c.eps = 0.f;
  Context ctx;
  State st;
  Symo rule(c);
  std::vector<float> W(G.size());
  auto D = direction(ctx, st, rule, "w", W, G, m, n);
  std::vector<double> ref(G.size());
  for (int64_t i = 0; i < m; ++i) {
    double s = 0;
    for (int64_t j = 0; j < n; ++j) s += double(G[size_t(i * n + j)]) * G[size_t(i * n + j)];
    for (int64_t j = 0; j < n; ++j) ref[size_t(i * n + j)] = G[size_t(i * n + j)] * std::sqrt(double(n) / s);
  }
  EXPECT_LT(rel_err(D, ref), 1e-5);
  EXPECT_TRUE(all_finite(G.data(), G.size()));
  G.back() = std::numeric_limits<float>::infinity();
  EXPECT_FALSE(all_finite(G.data(), G.size()));
  G.back() = 0.f;
  G[G.size() / 2] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_FALSE(all_finite(G.data(), G.size()));
}

// Adam and Adam-mini step in one fused pass (Rule::fused_step); it must give exactly what
// directions() followed by W <- W (1 - lr wd) - lr D gives, state included, over several
// steps, on a small block and one above the parallel threshold.
TEST(Fused, ElementwiseStepEqualsDirectionsPlusUpdateBitForBit) {
  struct Case {
    const char *name;
    std::function<std::shared_ptr<Rule>()> make;
    float wd;
  };
  AdamConfig adam_l2;
  adam_l2.weight_decay = 0.05f; // coupled L2 (torch Adam)
  AdamMiniConfig mini;
  mini.weight_decay = 0.1f;
  mini.group_rows = 2;
  std::vector<Case> cases = {
      {"adamw", [] { return std::make_shared<Adam>(adamw_config(0.1f)); }, 0.1f},
      {"adam", [=] { return std::make_shared<Adam>(adam_l2); }, 0.f},
      {"adam_mini", [=] { return std::make_shared<AdamMini>(mini); }, 0.1f}};
  std::mt19937 rng(31);
  for (auto shape : {std::pair<int64_t, int64_t>{6, 5}, {512, 300}})
    for (const auto &c : cases) {
      const int64_t m = shape.first, n = shape.second;
      auto W0 = randn(rng, size_t(m * n));
      std::vector<float> Wf = W0, Wd = W0;
      Context ctx;
      State sf, sd;
      auto fused = c.make(), split = c.make();
      const float lr = 0.03f;
      for (int s = 0; s < 3; ++s) {
        auto G = randn(rng, size_t(m * n));
        fused->step(ctx, sf, Param{"w", Wf.data(), G.data(), m, n}, lr);
        std::vector<float> D(G.size());
        float *Dp = D.data();
        Param p{"w", Wd.data(), G.data(), m, n};
        split->directions(ctx, sd, &p, 1, &Dp);
        for (size_t j = 0; j < D.size(); ++j) Wd[j] = Wd[j] * (1.f - lr * c.wd) - lr * D[j];
        ASSERT_EQ(0, std::memcmp(Wf.data(), Wd.data(), sizeof(float) * Wf.size()))
            << c.name << " " << m << "x" << n << " step " << s;
      }
    }
}
