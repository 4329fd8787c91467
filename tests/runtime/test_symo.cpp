// Symo closed forms against orbit averages computed by brute force: exact enumeration of
// every element of small finite groups (Z2, S, B, heads with finite inner groups) and
// Monte-Carlo averages over Haar-random elements for O(n). Plus equivariance and
// degenerate shapes.
#include "test_util.h"

#include <gtest/gtest.h>

using namespace symoc::rt;
using namespace symoc::rt::test;

namespace {

// S^{+1/2} g for S = E[vec(P G Q^T) vec(P G Q^T)^T] over the listed elements.
std::vector<double> brute_direction(const std::vector<Mat> &Ls, const std::vector<Mat> &Rs,
                                    const std::vector<float> &G, int64_t m, int64_t n, bool pairs = false) {
  const int64_t N = m * n;
  Mat S(size_t(N * N), 0.0);
  size_t count = 0;
  auto add = [&](const Mat &P, const Mat &Q) {
    auto h = act(P, Q, G, m, n);
    for (int64_t i = 0; i < N; ++i)
      for (int64_t j = 0; j < N; ++j) S[size_t(i * N + j)] += double(h[size_t(i)]) * h[size_t(j)];
    ++count;
  };
  if (pairs) // Ls[k] pairs with Rs[k] (Monte-Carlo draws)
    for (size_t k = 0; k < Ls.size(); ++k) add(Ls[k], Rs[k]);
  else
    for (auto &P : Ls)
      for (auto &Q : Rs) add(P, Q);
  for (auto &x : S) x /= double(count);
  Mat H = sym_pow_ref(S, N, -0.5, 1e-9);
  Mat g(G.begin(), G.end());
  return matmul(H, g, N, N, 1);
}

std::vector<float> symo_direction(const SymoConfig &c, const std::vector<float> &G, int64_t m, int64_t n) {
  Context ctx;
  State st;
  Symo rule(c);
  std::vector<float> W(G.size(), 0.f);
  return direction(ctx, st, rule, "w", W, G, m, n);
}

SymoConfig cfg(Group l, Group r) {
  SymoConfig c;
  c.left = l, c.right = r, c.eps = 0.f;
  return c;
}

const Group kFinite[] = {Group::Trivial, Group::Z2, Group::S, Group::B};

} // namespace

// Every pair of finite groups {1, Z2, S, B}^2, exact average over all group elements.
TEST(SymoClosedForm, MatchesExactEnumerationForAllFinitePairs) {
  std::mt19937 rng(1);
  const int64_t m = 4, n = 3;
  for (Group l : kFinite)
    for (Group r : kFinite) {
      auto G = randn(rng, size_t(m * n));
      auto ref = brute_direction(all_elements(l, m), all_elements(r, n), G, m, n);
      auto got = symo_direction(cfg(l, r), G, m, n);
      EXPECT_LT(rel_err(got, ref), 2e-4) << to_string(l) << " x " << to_string(r);
    }
}

// O(n) has the second moment of B(n): checked against Monte-Carlo Haar averages.
TEST(SymoClosedForm, OrthogonalMatchesMonteCarlo) {
  std::mt19937 rng(2);
  struct Case { Group l, r; int64_t m, n; };
  const Case cases[] = {{Group::O, Group::Trivial, 3, 2}, {Group::Trivial, Group::O, 2, 3},
                        {Group::O, Group::O, 3, 2},       {Group::Z2, Group::O, 3, 2},
                        {Group::S, Group::O, 3, 2},       {Group::O, Group::S, 2, 3}};
  for (auto &cs : cases) {
    auto G = randn(rng, size_t(cs.m * cs.n));
    std::vector<Mat> Ls, Rs;
    const int N = 40000;
    for (int k = 0; k < N; ++k) {
      Ls.push_back(random_element(rng, cs.l, cs.m));
      Rs.push_back(random_element(rng, cs.r, cs.n));
    }
    auto ref = brute_direction(Ls, Rs, G, cs.m, cs.n, /*pairs=*/true);
    auto got = symo_direction(cfg(cs.l, cs.r), G, cs.m, cs.n);
    EXPECT_LT(rel_err(got, ref), 3e-2) << to_string(cs.l) << " x " << to_string(cs.r);
    // and the closed form treats O exactly like B
    auto viaB = symo_direction(cfg(cs.l == Group::O ? Group::B : cs.l, cs.r == Group::O ? Group::B : cs.r), G, cs.m, cs.n);
    EXPECT_LT(rel_err(got, viaB), 1e-6);
  }
}

// The documented special cases, computed directly (not through the component code).
TEST(SymoClosedForm, SpecialCasesOfTheTable) {
  std::mt19937 rng(3);
  const int64_t m = 6, n = 4;
  auto G = randn(rng, size_t(m * n));
  Context ctx;
  // B x 1 = sqrt(m) polar(G)
  std::vector<float> P(G.size());
  polar(ctx, MatView(G.data(), m, n), MatView(P.data(), m, n), polar_options(PolarMethod::Eig));
  std::vector<double> ref(P.begin(), P.end());
  for (auto &x : ref) x *= std::sqrt(double(m));
  EXPECT_LT(rel_err(symo_direction(cfg(Group::B, Group::Trivial), G, m, n), ref), 1e-4);
  // Z2 x B: sqrt(n) g_i / ||g_i|| (Adam-mini's one scalar per row)
  for (int64_t i = 0; i < m; ++i) {
    double s = 0;
    for (int64_t j = 0; j < n; ++j) s += double(G[size_t(i * n + j)]) * G[size_t(i * n + j)];
    for (int64_t j = 0; j < n; ++j) ref[size_t(i * n + j)] = G[size_t(i * n + j)] * std::sqrt(double(n) / s);
  }
  EXPECT_LT(rel_err(symo_direction(cfg(Group::Z2, Group::B), G, m, n), ref), 1e-5);
  // B x B: sqrt(mn) G / ||G||
  double s = 0;
  for (float x : G) s += double(x) * x;
  for (size_t k = 0; k < G.size(); ++k) ref[k] = G[k] * std::sqrt(double(m * n) / s);
  EXPECT_LT(rel_err(symo_direction(cfg(Group::B, Group::B), G, m, n), ref), 1e-5);
}

// Factored head spaces: per-head blocks and head permutations.
TEST(SymoClosedForm, HeadGroupsMatchBruteForce) {
  std::mt19937 rng(4);
  const int64_t H = 2, dh = 2, m = H * dh, n = 2;
  struct Case { Group outer, inner; bool exact; };
  const Case cases[] = {{Group::Trivial, Group::B, true},
                        {Group::S, Group::B, true},       {Group::Trivial, Group::Z2, true},
                        {Group::Trivial, Group::O, false}, {Group::S, Group::O, false}};
  for (auto &cs : cases) {
    HeadSpec h{H, cs.outer, cs.inner};
    auto G = randn(rng, size_t(m * n));
    std::vector<Mat> Ls;
    if (cs.exact) { // all (head permutation) x (per-head element) combinations
      auto inner = all_elements(cs.inner, dh);
      std::vector<std::vector<int>> hperms = {{0, 1}};
      if (cs.outer == Group::S) hperms.push_back({1, 0});
      for (auto &hp : hperms)
        for (auto &a : inner)
          for (auto &b : inner) {
            Mat E(size_t(m * m), 0.0);
            const Mat *blk[2] = {&a, &b};
            for (int64_t k = 0; k < H; ++k)
              for (int64_t i = 0; i < dh; ++i)
                for (int64_t j = 0; j < dh; ++j)
                  E[size_t((hp[size_t(k)] * dh + i) * m + k * dh + j)] = (*blk[k])[size_t(i * dh + j)];
            Ls.push_back(E);
          }
      auto ref = brute_direction(Ls, {eye(n)}, G, m, n);
      SymoConfig c = cfg(Group::Trivial, Group::Trivial);
      c.left_heads = h;
      EXPECT_LT(rel_err(symo_direction(c, G, m, n), ref), 2e-4)
          << "heads outer " << to_string(cs.outer) << " inner " << to_string(cs.inner);
    } else {
      std::vector<Mat> Rs;
      for (int k = 0; k < 40000; ++k) Ls.push_back(random_element(rng, Group::Trivial, m, h)), Rs.push_back(eye(n));
      auto ref = brute_direction(Ls, Rs, G, m, n, true);
      SymoConfig c = cfg(Group::Trivial, Group::Trivial);
      c.left_heads = h;
      EXPECT_LT(rel_err(symo_direction(c, G, m, n), ref), 3e-2)
          << "heads outer " << to_string(cs.outer) << " inner " << to_string(cs.inner);
    }
  }
}

// Two blocks around one B(n1) hidden space: joint average over the shared group.
TEST(SymoClosedForm, CoupledBlocksMatchJointEnumeration) {
  std::mt19937 rng(5);
  const int64_t n0 = 2, n1 = 3, n2 = 2;
  auto G1 = randn(rng, size_t(n1 * n0)), G2 = randn(rng, size_t(n2 * n1));
  const int64_t N = n1 * n0 + n2 * n1;
  for (Group g : {Group::B, Group::S, Group::Z2}) {
    Mat S(size_t(N * N), 0.0);
    auto els = all_elements(g, n1);
    for (auto &P : els) {
      auto h1 = act(P, eye(n0), G1, n1, n0);   // W1 -> P W1
      auto h2 = act(eye(n2), P, G2, n2, n1);   // W2 -> W2 P^T
      std::vector<double> v(h1.begin(), h1.end());
      v.insert(v.end(), h2.begin(), h2.end());
      for (int64_t i = 0; i < N; ++i)
        for (int64_t j = 0; j < N; ++j) S[size_t(i * N + j)] += v[size_t(i)] * v[size_t(j)] / double(els.size());
    }
    Mat gv(G1.begin(), G1.end());
    gv.insert(gv.end(), G2.begin(), G2.end());
    auto ref = matmul(sym_pow_ref(S, N, -0.5, 1e-9), gv, N, N, 1);

    Context ctx;
    State st;
    SymoCoupled rule(g, {{0, 0}, {1, 1}}, cfg(Group::Trivial, Group::Trivial));
    std::vector<float> W1(G1.size()), W2(G2.size()), D1(G1.size()), D2(G2.size());
    Param ps[2] = {{"w1", W1.data(), G1.data(), n1, n0}, {"w2", W2.data(), G2.data(), n2, n1}};
    float *D[2] = {D1.data(), D2.data()};
    rule.directions(ctx, st, ps, 2, D);
    std::vector<float> got(D1);
    got.insert(got.end(), D2.begin(), D2.end());
    EXPECT_LT(rel_err(got, ref), 2e-4) << "shared group " << to_string(g);
  }
}

// With an EMA over several gradients, the structured estimate still equals the exact
// orbit average of the EMA of vec(G) vec(G)^T (the average is linear).
TEST(SymoClosedForm, EmaOfSeveralGradientsMatchesEnumeration) {
  std::mt19937 rng(6);
  const int64_t m = 3, n = 3;
  for (Group l : {Group::S, Group::B, Group::Z2})
    for (Group r : {Group::Trivial, Group::S}) {
      SymoConfig c = cfg(l, r);
      c.beta2 = 0.8f;
      Context ctx;
      State st;
      Symo rule(c);
      std::vector<float> W(size_t(m * n)), G, D;
      Mat S(size_t(81), 0.0);
      auto Ls = all_elements(l, m), Rs = all_elements(r, n);
      const int T = 3;
      for (int t = 1; t <= T; ++t) {
        G = randn(rng, size_t(m * n));
        Mat St(size_t(81), 0.0);
        for (auto &P : Ls)
          for (auto &Q : Rs) {
            auto h = act(P, Q, G, m, n);
            for (int i = 0; i < 9; ++i)
              for (int j = 0; j < 9; ++j) St[size_t(i * 9 + j)] += double(h[size_t(i)]) * h[size_t(j)];
          }
        for (size_t k = 0; k < S.size(); ++k) S[k] = 0.8 * S[k] + 0.2 * St[k] / double(Ls.size() * Rs.size());
        D = direction(ctx, st, rule, "w", W, G, m, n);
      }
      Mat Sh = S;
      for (auto &x : Sh) x /= (1.0 - std::pow(0.8, T));
      Mat g(G.begin(), G.end());
      auto ref = matmul(sym_pow_ref(Sh, 9, -0.5, 1e-9), g, 9, 9, 1);
      EXPECT_LT(rel_err(D, ref), 2e-4) << to_string(l) << " x " << to_string(r);
    }
}

// step(P W Q^T, P G Q^T) = P step(W, G) Q^T for random elements of the block's group,
// over several steps (EMA state, momentum, weight decay).
TEST(SymoEquivariance, AllGroupPairsAndHeads) {
  std::mt19937 rng(7);
  const Group all[] = {Group::Trivial, Group::Z2, Group::S, Group::B, Group::O};
  const int64_t m = 4, n = 3;
  auto run = [&](SymoConfig c, const Mat &P, const Mat &Q, const std::string &what) {
    Symo r1(c), r2(c);
    EXPECT_LT(transport_error(rng, r1, r2, P, Q, m, n, 0.1f), 1e-5) << what;
  };
  for (Group l : all)
    for (Group r : all) {
      SymoConfig c;
      c.left = l, c.right = r, c.beta1 = 0.9f, c.weight_decay = 0.01f;
      run(c, random_element(rng, l, m), random_element(rng, r, n), std::string(to_string(l)) + " x " + to_string(r));
    }
  for (Group inner : {Group::O, Group::Z2, Group::B})
    for (Group outer : {Group::Trivial, Group::S}) {
      if (outer == Group::S && inner == Group::Z2) continue; // not supported (documented)
      SymoConfig c;
      c.left_heads = HeadSpec{2, outer, inner};
      c.right = Group::O;
      run(c, random_element(rng, Group::Trivial, m, c.left_heads), random_element(rng, Group::O, n),
          std::string("heads ") + to_string(outer) + "/" + to_string(inner));
    }
}

TEST(SymoDegenerate, FiniteStepsOnDegenerateShapesAndGradients) {
  std::mt19937 rng(8);
  const Group all[] = {Group::Trivial, Group::Z2, Group::S, Group::B, Group::O};
  struct Shape { int64_t m, n; };
  for (Shape s : {Shape{1, 5}, Shape{5, 1}, Shape{1, 1}, Shape{4, 6}})
    for (int kind = 0; kind < 3; ++kind) // 0: random, 1: rank one, 2: zero
      for (Group l : all)
        for (Group r : all) {
          std::vector<float> G = randn(rng, size_t(s.m * s.n));
          if (kind == 1) {
            auto u = randn(rng, size_t(s.m)), v = randn(rng, size_t(s.n));
            for (int64_t i = 0; i < s.m; ++i)
              for (int64_t j = 0; j < s.n; ++j) G[size_t(i * s.n + j)] = u[size_t(i)] * v[size_t(j)];
          }
          if (kind == 2) std::fill(G.begin(), G.end(), 0.f);
          for (float eps : {0.f, 1e-8f}) {
            SymoConfig c;
            c.left = l, c.right = r, c.eps = eps;
            auto D = symo_direction(c, G, s.m, s.n);
            EXPECT_TRUE(finite(D)) << s.m << "x" << s.n << " kind " << kind << " " << to_string(l) << " x "
                                   << to_string(r);
            if (kind == 2)
              for (float x : D) EXPECT_EQ(x, 0.f);
          }
        }
}

TEST(SymoErrors, ClearErrorsForUnsupportedConfigurations) {
  std::vector<float> G(12, 1.f);
  SymoConfig c;
  c.left_heads = HeadSpec{5, Group::Trivial, Group::O}; // 4 rows do not split into 5 heads
  EXPECT_THROW(symo_direction(c, G, 4, 3), Error);
  SymoConfig d;
  d.max_dense = 8; // 1 x 1 on 12 entries needs a 12 x 12 matrix
  try {
    symo_direction(d, G, 4, 3);
    FAIL() << "expected an error";
  } catch (const Error &e) {
    EXPECT_NE(std::string(e.what()).find("max_dense"), std::string::npos) << e.what();
  }
  EXPECT_THROW(parse_group("GL"), Error);
  SymoConfig h; // per-head S: the heads' mean lines form one multiplicity space
  h.left_heads = HeadSpec{2, Group::Trivial, Group::S};
  EXPECT_THROW(symo_direction(h, G, 4, 3), Error);
}

namespace {

// Rows [r0, r0 + len) of an m x n row-major matrix.
std::vector<float> rows_of(const std::vector<float> &X, int64_t r0, int64_t len, int64_t n) {
  return std::vector<float>(X.begin() + r0 * n, X.begin() + (r0 + len) * n);
}

double max_rel(const std::vector<float> &a, const std::vector<float> &b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]), den += double(b[i]) * b[i];
  return std::sqrt(num / std::max(den, 1e-300));
}

} // namespace

// Pieces with beta2 = 0 (the compiler's transformer recipe): every run is its own component
// (block-diagonal), and each run's step is the one-sided closed form of its group for one
// matrix, here the first EMA step of an independent Symo on that run alone (bias
// correction makes it exactly H_g of one gradient; a different code path: n x n matrices).
TEST(SymoPieces, RunsAreIndependentOneSidedSteps) {
  std::mt19937 rng(11);
  const int64_t m = 9, n = 5;
  auto G = randn(rng, size_t(m * n));
  SymoConfig c;
  c.beta2 = 0.f, c.eps = 0.f;
  c.left_pieces = {{0, 4, Group::O, 2}, {4, 3, Group::S, 1}, {7, 2, Group::Z2, 1}};
  auto D = symo_direction(c, G, m, n);
  struct Run { int64_t r0, len; Group g; };
  for (Run r : {Run{0, 2, Group::O}, Run{2, 2, Group::O}, Run{4, 3, Group::S}, Run{7, 2, Group::Z2}}) {
    SymoConfig one = cfg(r.g, Group::Trivial); // beta2 = 0.95, first step
    auto want = symo_direction(one, rows_of(G, r.r0, r.len, n), r.len, n);
    EXPECT_LT(max_rel(rows_of(D, r.r0, r.len, n), want), 1e-5) << "run at " << r.r0;
  }
  // The same pieces on the columns: the mirror.
  std::vector<float> Gt(size_t(m * n));
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) Gt[size_t(j * m + i)] = G[size_t(i * n + j)];
  SymoConfig t;
  t.beta2 = 0.f, t.eps = 0.f, t.right_pieces = c.left_pieces;
  auto Dt = symo_direction(t, Gt, n, m);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) EXPECT_NEAR(Dt[size_t(j * m + i)], D[size_t(i * n + j)], 1e-5);
  // No state beyond the step counter: nothing n x n is kept.
  Context ctx;
  State st;
  Symo rule(c);
  std::vector<float> W(G.size(), 0.f);
  direction(ctx, st, rule, "w", W, G, m, n);
  EXPECT_EQ(st.bytes(), 0u);
}

// muon.py's momentum: after two gradients the step is the pieces' step of
// lerp(G2, M2, beta1) with M2 = lerp(lerp(0, G1, 1 - beta1), G2, 1 - beta1).
TEST(SymoPieces, MuonMomentumFeedsTheStatistics) {
  std::mt19937 rng(12);
  const int64_t m = 6, n = 4;
  auto G1 = randn(rng, size_t(m * n)), G2 = randn(rng, size_t(m * n));
  SymoConfig c;
  c.beta2 = 0.f, c.eps = 0.f, c.beta1 = 0.9f, c.muon_momentum = true, c.nesterov = true;
  c.left_pieces = {{0, 6, Group::O, 3}};
  Context ctx;
  State st;
  Symo rule(c);
  std::vector<float> W(G1.size(), 0.f);
  direction(ctx, st, rule, "w", W, G1, m, n);
  auto D = direction(ctx, st, rule, "w", W, G2, m, n);
  EXPECT_EQ(st.bytes(), size_t(m * n) * sizeof(float)); // the momentum only
  std::vector<float> U(G1.size());
  for (size_t i = 0; i < U.size(); ++i) {
    const float M1 = 0.1f * G1[i], M2 = M1 + 0.1f * (G2[i] - M1);
    U[i] = G2[i] + 0.9f * (M2 - G2[i]);
  }
  SymoConfig plain;
  plain.beta2 = 0.f, plain.eps = 0.f, plain.left_pieces = c.left_pieces;
  EXPECT_LT(max_rel(D, symo_direction(plain, U, m, n)), 1e-5);
}

TEST(SymoPieces, ClearErrorsAndTrivialPieces) {
  std::vector<float> G(12, 1.f);
  SymoConfig gap; // [0, 2) and [3, 4): not a tiling
  gap.left_pieces = {{0, 2, Group::O, 1}, {3, 1, Group::O, 1}};
  EXPECT_THROW(symo_direction(gap, G, 4, 3), Error);
  SymoConfig parts; // 3 rows in 2 runs
  parts.left_pieces = {{0, 3, Group::O, 2}, {3, 1, Group::O, 1}};
  EXPECT_THROW(symo_direction(parts, G, 4, 3), Error);
  SymoConfig shortp; // covers 3 of 4 rows
  shortp.left_pieces = {{0, 3, Group::O, 1}};
  EXPECT_THROW(symo_direction(shortp, G, 4, 3), Error);
  // A trivial piece makes the side trivial: the same as no group at all (here 1 x 1).
  std::mt19937 rng(13);
  auto H = randn(rng, 12);
  SymoConfig triv;
  triv.left_pieces = {{0, 2, Group::O, 1}, {2, 2, Group::Trivial, 1}};
  auto a = symo_direction(triv, H, 4, 3), b = symo_direction(SymoConfig{}, H, 4, 3);
  EXPECT_LT(max_rel(a, b), 1e-6);
}
