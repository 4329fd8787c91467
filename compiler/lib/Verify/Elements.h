//===- Elements.h - Random group elements for verify (private) -----------===//
#ifndef SYMOC_LIB_VERIFY_ELEMENTS_H
#define SYMOC_LIB_VERIFY_ELEMENTS_H

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <vector>

namespace symoc {
namespace vfy {

using Rng = std::mt19937_64;

/// Dense n x n matrix, row-major.
struct Matrix {
  int64_t n = 0;
  std::vector<double> a;
  explicit Matrix(int64_t n_ = 0) : n(n_), a(size_t(n_ * n_), 0.0) {}
  double &operator()(int64_t i, int64_t j) { return a[size_t(i * n + j)]; }
  double operator()(int64_t i, int64_t j) const { return a[size_t(i * n + j)]; }
  static Matrix identity(int64_t n);
  /// True when every row and column has exactly one non-zero (permutation
  /// times diagonal): applied in O(size) instead of O(n^2 size).
  bool isMonomial() const;
  bool isIdentity() const;
};

/// A monomial matrix (permutation times diagonal) kept sparse: row i has its
/// one non-zero `factor[i]` in column `col[i]`.
struct Monomial {
  std::vector<int64_t> col;
  std::vector<double> factor;
  bool isIdentity() const;
};

Matrix multiply(const Matrix &x, const Matrix &y);
Matrix transposed(const Matrix &x);
/// Inverse by LU with partial pivoting; throws std::runtime_error if singular.
Matrix inverse(const Matrix &x);
Matrix absolute(const Matrix &x);

Matrix permutation(int64_t n, Rng &rng, bool nonIdentity);
Matrix signedPermutation(int64_t n, Rng &rng);
Matrix signFlips(int64_t n, Rng &rng);
/// Haar-distributed orthogonal: QR of a Gaussian matrix with R's diagonal made positive.
Matrix haarOrthogonal(int64_t n, Rng &rng);
/// Well-conditioned invertible: O1 diag(exp(N(0, 0.3))) O2.
Matrix randomGL(int64_t n, Rng &rng);
/// Positive diagonal exp(N(0, 0.5)).
Matrix positiveDiagonal(int64_t n, Rng &rng);
/// Identity except, per pair (i, j), the block [[a, -b], [b, a]] on rows/cols
/// i, j: a rotation-scaling, which commutes with any rotation of that pair.
Matrix ropeCommutant(int64_t n, const std::vector<std::pair<int64_t, int64_t>> &pairs,
                     Rng &rng);

/// Draws an element of the group a claim names ("S", "B", "O", "GL", "Scale+",
/// "Z2", "1", or "heads" with outer/inner/pairs/heads/head_dim). Throws
/// std::invalid_argument with a message for a malformed group.
Matrix drawElement(const nlohmann::json &group, int64_t n, Rng &rng);

/// drawElement for groups whose elements are all monomial (S, B, Z2, Scale+,
/// 1, and heads of those): the same element from the same random draws, without
/// the dense n x n matrix (S(3072) would be 75 MB per draw). nullopt for the
/// other groups; throws like drawElement for malformed ones.
std::optional<Monomial> drawMonomial(const nlohmann::json &group, int64_t n, Rng &rng);

/// "S(128)", "heads(S x GL, 12x64)", ...
std::string describeGroup(const nlohmann::json &group, int64_t n);

} // namespace vfy
} // namespace symoc

#endif
