// Helpers shared by the runtime tests: random matrices, group elements, dense double
// linear algebra written independently of the runtime's code paths.
#pragma once

#include "symoc/runtime/runtime.h"

#include <algorithm>
#include <cmath>
#include <lapacke.h>
#include <numeric>
#include <random>
#include <vector>

namespace symoc::rt::test {

using Mat = std::vector<double>; // row-major, dims carried separately

inline std::vector<float> randn(std::mt19937 &rng, size_t n, float scale = 1.f) {
  std::normal_distribution<float> d(0.f, scale);
  std::vector<float> v(n);
  for (auto &x : v) x = d(rng);
  return v;
}

inline Mat eye(int64_t n) {
  Mat I(size_t(n * n), 0.0);
  for (int64_t i = 0; i < n; ++i) I[size_t(i * n + i)] = 1.0;
  return I;
}

inline Mat matmul(const Mat &A, const Mat &B, int64_t m, int64_t k, int64_t n) {
  Mat C(size_t(m * n), 0.0);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t p = 0; p < k; ++p) {
      const double a = A[size_t(i * k + p)];
      for (int64_t j = 0; j < n; ++j) C[size_t(i * n + j)] += a * B[size_t(p * n + j)];
    }
  return C;
}

inline Mat transposed(const Mat &A, int64_t m, int64_t n) {
  Mat T(size_t(m * n));
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) T[size_t(j * m + i)] = A[size_t(i * n + j)];
  return T;
}

// S^{+p} for symmetric PSD S (double, LAPACK dsyev; eigenvalues <= rcond*max dropped).
inline Mat sym_pow_ref(const Mat &S, int64_t n, double p, double rcond = 1e-10) {
  Mat A = S;
  std::vector<double> w{};
  w.resize(size_t(n));
  LAPACKE_dsyev(LAPACK_ROW_MAJOR, 'V', 'U', int(n), A.data(), int(n), w.data());
  const double wmax = n ? std::max(w.back(), 0.0) : 0.0;
  Mat out(size_t(n * n), 0.0);
  for (int64_t k = 0; k < n; ++k) {
    if (!(w[size_t(k)] > rcond * wmax) || w[size_t(k)] <= 0) continue;
    const double f = std::pow(w[size_t(k)], p);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j) out[size_t(i * n + j)] += f * A[size_t(i * n + k)] * A[size_t(j * n + k)];
  }
  return out;
}

// Group elements as dense n x n matrices.
inline Mat perm_matrix(const std::vector<int> &p) {
  const int64_t n = int64_t(p.size());
  Mat P(size_t(n * n), 0.0);
  for (int64_t i = 0; i < n; ++i) P[size_t(i * n + p[size_t(i)])] = 1.0;
  return P;
}

inline Mat haar_orthogonal(std::mt19937 &rng, int64_t n) {
  // Gram-Schmidt on Gaussian columns: Q with positive-diagonal R, Haar distributed.
  std::normal_distribution<double> d;
  Mat A(size_t(n * n));
  for (auto &x : A) x = d(rng);
  for (int64_t j = 0; j < n; ++j) {
    for (int64_t k = 0; k < j; ++k) {
      double dot = 0;
      for (int64_t i = 0; i < n; ++i) dot += A[size_t(i * n + j)] * A[size_t(i * n + k)];
      for (int64_t i = 0; i < n; ++i) A[size_t(i * n + j)] -= dot * A[size_t(i * n + k)];
    }
    double nn = 0;
    for (int64_t i = 0; i < n; ++i) nn += A[size_t(i * n + j)] * A[size_t(i * n + j)];
    nn = std::sqrt(nn);
    for (int64_t i = 0; i < n; ++i) A[size_t(i * n + j)] /= nn;
  }
  return A;
}

// A random element of group g on R^n (heads: block structure of `heads` equal blocks).
inline Mat random_element(std::mt19937 &rng, Group g, int64_t n, const HeadSpec &h = {}) {
  if (h.heads > 0) {
    const int64_t dh = n / h.heads;
    Mat inner(size_t(n * n), 0.0);
    for (int64_t b = 0; b < h.heads; ++b) {
      Mat e = random_element(rng, h.inner, dh);
      for (int64_t i = 0; i < dh; ++i)
        for (int64_t j = 0; j < dh; ++j) inner[size_t((b * dh + i) * n + b * dh + j)] = e[size_t(i * dh + j)];
    }
    if (h.outer != Group::S) return inner;
    std::vector<int> hp(static_cast<size_t>(h.heads));
    std::iota(hp.begin(), hp.end(), 0);
    std::shuffle(hp.begin(), hp.end(), rng);
    std::vector<int> p(static_cast<size_t>(n));
    for (int64_t b = 0; b < h.heads; ++b)
      for (int64_t i = 0; i < dh; ++i) p[size_t(b * dh + i)] = int(hp[size_t(b)] * dh + i);
    return matmul(perm_matrix(p), inner, n, n, n);
  }
  std::uniform_int_distribution<int> coin(0, 1);
  std::vector<int> p(static_cast<size_t>(n));
  std::iota(p.begin(), p.end(), 0);
  switch (g) {
  case Group::Trivial: return eye(n);
  case Group::O: return haar_orthogonal(rng, n);
  case Group::S: std::shuffle(p.begin(), p.end(), rng); return perm_matrix(p);
  case Group::Z2:
  case Group::B: {
    if (g == Group::B) std::shuffle(p.begin(), p.end(), rng);
    Mat P = perm_matrix(p);
    for (int64_t i = 0; i < n; ++i)
      if (coin(rng))
        for (int64_t j = 0; j < n; ++j) P[size_t(i * n + j)] = -P[size_t(i * n + j)];
    return P;
  }
  }
  return eye(n);
}

// Every element of a small finite group (Trivial, Z2, S, B) on R^n.
inline std::vector<Mat> all_elements(Group g, int64_t n) {
  std::vector<Mat> out;
  std::vector<int> p(static_cast<size_t>(n));
  std::iota(p.begin(), p.end(), 0);
  std::vector<std::vector<int>> perms;
  if (g == Group::S || g == Group::B) {
    do perms.push_back(p);
    while (std::next_permutation(p.begin(), p.end()));
  } else {
    perms.push_back(p);
  }
  const int nsigns = (g == Group::Z2 || g == Group::B) ? (1 << n) : 1;
  for (auto &q : perms)
    for (int s = 0; s < nsigns; ++s) {
      Mat P = perm_matrix(q);
      for (int64_t i = 0; i < n; ++i)
        if (s >> i & 1)
          for (int64_t j = 0; j < n; ++j) P[size_t(i * n + j)] = -P[size_t(i * n + j)];
      out.push_back(P);
    }
  return out;
}

// P X Q^T for float X (m x n), P, Q double.
inline std::vector<float> act(const Mat &P, const Mat &Q, const std::vector<float> &X, int64_t m, int64_t n) {
  Mat Xd(X.begin(), X.end());
  Mat Y = matmul(matmul(P, Xd, m, m, n), transposed(Q, n, n), m, n, n);
  return std::vector<float>(Y.begin(), Y.end());
}

inline double rel_err(const std::vector<float> &a, const std::vector<double> &b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) num += (a[i] - b[i]) * (a[i] - b[i]), den += b[i] * b[i];
  return std::sqrt(num / std::max(den, 1e-300));
}
inline double rel_err(const std::vector<float> &a, const std::vector<float> &b) {
  return rel_err(a, std::vector<double>(b.begin(), b.end()));
}
inline bool finite(const std::vector<float> &v) {
  return std::all_of(v.begin(), v.end(), [](float x) { return std::isfinite(x); });
}

// Equivariance of a rule under (P, Q): two fresh copies step W, G and P W Q^T, P G Q^T for
// `steps` steps (random W and G, the rule's state carried); returns the relative distance of
// P W' Q^T from the transported run's W' (rounding only when the rule is equivariant).
inline double transport_error(std::mt19937 &rng, Rule &r1, Rule &r2, const Mat &P, const Mat &Q, int64_t m,
                              int64_t n, float lr, int steps = 3) {
  Context ctx;
  State s1, s2;
  auto W = randn(rng, size_t(m * n));
  auto Wg = act(P, Q, W, m, n);
  for (int t = 0; t < steps; ++t) {
    auto G = randn(rng, size_t(m * n));
    auto Gg = act(P, Q, G, m, n);
    r1.step(ctx, s1, Param{"w", W.data(), G.data(), m, n}, lr);
    r2.step(ctx, s2, Param{"w", Wg.data(), Gg.data(), m, n}, lr);
  }
  return rel_err(act(P, Q, W, m, n), Wg);
}

// The direction a rule produces for one block (advancing st).
inline std::vector<float> direction(Context &ctx, State &st, Rule &r, const char *name, std::vector<float> &W,
                                    const std::vector<float> &G, int64_t m, int64_t n) {
  Param p{name, W.data(), G.data(), m, n};
  std::vector<float> D(size_t(m * n));
  float *dp = D.data();
  r.directions(ctx, st, &p, 1, &dp);
  return D;
}

} // namespace symoc::rt::test
