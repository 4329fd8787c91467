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

/// Haar-distributed orthogonal: QR of a Gaussian matrix with R's diagonal made positive.
Matrix haarOrthogonal(int64_t n, Rng &rng);
/// The sign of the determinant (+1 or -1; 0 when singular), by LU with partial pivoting.
int determinantSign(const Matrix &x);
/// Identity except, per pair (i, j), the block [[a, -b], [b, a]] on rows/cols
/// i, j: a rotation-scaling, which commutes with any rotation of that pair.
Matrix ropeCommutant(int64_t n, const std::vector<std::pair<int64_t, int64_t>> &pairs,
                     Rng &rng);

/// One of the elements verify draws for a claim over a run: round `index` of
/// `count`, all rounds sharing one plan (drawn from `plan`, the same seed in
/// every round). The plan makes the rounds cover the group's finite part
/// together, where independent draws would each miss a bad coordinate with a
/// fixed probability:
///  - sign slots (every coordinate of Z2 and B, every pair of rope "sign", the
///    determinant's sign of O and GL, and these inside each head) get a code,
///    uniform over the non-zero bit patterns of min(count, 62) bits; round r
///    flips the slot when bit r is set. Every slot is flipped in at least one
///    round, and two slots flip apart in some round except with probability
///    1 / (2^count - 1). (Rounds past the 62nd draw independent coins.)
///  - permutations (S, B's, heads' outer S and inner S) are derangements in
///    round 0: every coordinate (head) is moved; uniform in the other rounds.
/// Without rounds every element is drawn independently (one fair coin per sign).
struct Rounds {
  int index = 0;
  int count = 1;
  uint64_t plan = 0;
};

/// Draws an element of the group a claim names ("S", "B", "O", "GL", "Scale+",
/// "Z2", "1", or "heads" with outer/inner/pairs/heads/head_dim). Throws
/// std::invalid_argument with a message for a malformed group.
Matrix drawElement(const nlohmann::json &group, int64_t n, Rng &rng,
                   const Rounds *rounds = nullptr);

/// drawElement for groups whose elements are all monomial (S, B, Z2, Scale+,
/// 1, and heads of those): the same element from the same random draws, without
/// the dense n x n matrix (S(3072) would be 75 MB per draw). nullopt for the
/// other groups; throws like drawElement for malformed ones.
std::optional<Monomial> drawMonomial(const nlohmann::json &group, int64_t n, Rng &rng,
                                     const Rounds *rounds = nullptr);

/// True when the group has several sign slots (see Rounds): Z2, B, rope with
/// rotation "sign", and heads with an inner group that has sign slots (Z2, B,
/// O, GL). Their codes get one round more than the T trials, so that two slots
/// flip apart in some round except with probability 1 / (2^(T+1) - 1), below
/// the 2^-T of independent coins. O and GL have one slot (the determinant's
/// sign), which T rounds cover.
bool hasSeveralSignSlots(const nlohmann::json &group);

/// A uniformly random derangement of n >= 2 (every i moved), the identity for n < 2.
std::vector<int64_t> randomDerangement(int64_t n, Rng &rng);

/// "S(128)", "heads(S x GL, 12x64)", ...
std::string describeGroup(const nlohmann::json &group, int64_t n);

} // namespace vfy
} // namespace symoc

#endif
