//===- Elements.cpp - Random group elements for verify --------------------===//
#include "Elements.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <set>
#include <stdexcept>

namespace symoc {
namespace vfy {

Matrix Matrix::identity(int64_t n) {
  Matrix m(n);
  for (int64_t i = 0; i < n; ++i)
    m(i, i) = 1;
  return m;
}

bool Matrix::isMonomial() const {
  std::vector<int> col(size_t(n), 0);
  for (int64_t i = 0; i < n; ++i) {
    int cnt = 0;
    for (int64_t j = 0; j < n; ++j)
      if ((*this)(i, j) != 0) {
        ++cnt;
        ++col[size_t(j)];
      }
    if (cnt != 1)
      return false;
  }
  return std::all_of(col.begin(), col.end(), [](int c) { return c == 1; });
}

bool Matrix::isIdentity() const {
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j)
      if ((*this)(i, j) != (i == j ? 1.0 : 0.0))
        return false;
  return true;
}

Matrix multiply(const Matrix &x, const Matrix &y) {
  Matrix z(x.n);
  for (int64_t i = 0; i < x.n; ++i)
    for (int64_t k = 0; k < x.n; ++k) {
      double v = x(i, k);
      if (v == 0)
        continue;
      for (int64_t j = 0; j < x.n; ++j)
        z(i, j) += v * y(k, j);
    }
  return z;
}

Matrix transposed(const Matrix &x) {
  Matrix t(x.n);
  for (int64_t i = 0; i < x.n; ++i)
    for (int64_t j = 0; j < x.n; ++j)
      t(j, i) = x(i, j);
  return t;
}

Matrix absolute(const Matrix &x) {
  Matrix t = x;
  for (double &v : t.a)
    v = std::fabs(v);
  return t;
}

/// Partial pivoting: the row at or below c with the largest |entry| in column c.
static int64_t pivotRow(const Matrix &lu, int64_t c) {
  int64_t p = c;
  for (int64_t r = c + 1; r < lu.n; ++r)
    if (std::fabs(lu(r, c)) > std::fabs(lu(p, c)))
      p = r;
  return p;
}

Matrix inverse(const Matrix &x) {
  int64_t n = x.n;
  if (x.isMonomial()) { // exact: A[i, p(i)] = d  ->  A^{-1}[p(i), i] = 1/d
    Matrix r(n);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j)
        if (x(i, j) != 0)
          r(j, i) = 1.0 / x(i, j);
    return r;
  }
  Matrix lu = x, inv = Matrix::identity(n);
  for (int64_t c = 0; c < n; ++c) {
    const int64_t p = pivotRow(lu, c);
    if (lu(p, c) == 0)
      throw std::runtime_error("singular group element");
    if (p != c)
      for (int64_t j = 0; j < n; ++j) {
        std::swap(lu(p, j), lu(c, j));
        std::swap(inv(p, j), inv(c, j));
      }
    double d = lu(c, c);
    for (int64_t j = 0; j < n; ++j) {
      lu(c, j) /= d;
      inv(c, j) /= d;
    }
    for (int64_t r = 0; r < n; ++r) {
      if (r == c || lu(r, c) == 0)
        continue;
      double f = lu(r, c);
      for (int64_t j = 0; j < n; ++j) {
        lu(r, j) -= f * lu(c, j);
        inv(r, j) -= f * inv(c, j);
      }
    }
  }
  return inv;
}

static std::vector<int64_t> randomPerm(int64_t n, Rng &rng, bool nonIdentity) {
  std::vector<int64_t> p(static_cast<size_t>(n));
  std::iota(p.begin(), p.end(), 0);
  do {
    std::shuffle(p.begin(), p.end(), rng);
  } while (nonIdentity && n > 1 && std::is_sorted(p.begin(), p.end()));
  return p;
}

std::vector<int64_t> randomDerangement(int64_t n, Rng &rng) {
  std::vector<int64_t> p(static_cast<size_t>(std::max<int64_t>(n, 0)));
  std::iota(p.begin(), p.end(), 0);
  if (n < 2)
    return p;
  auto fixesOne = [&] {
    for (int64_t i = 0; i < n; ++i)
      if (p[size_t(i)] == i)
        return true;
    return false;
  };
  // Rejection: a uniform permutation is a derangement with probability ~1/e.
  do {
    std::shuffle(p.begin(), p.end(), rng);
  } while (fixesOne());
  return p;
}

int determinantSign(const Matrix &x) {
  int64_t n = x.n;
  Matrix lu = x;
  int sign = 1;
  for (int64_t c = 0; c < n; ++c) {
    const int64_t p = pivotRow(lu, c);
    if (lu(p, c) == 0)
      return 0;
    if (p != c) {
      sign = -sign;
      for (int64_t j = c; j < n; ++j)
        std::swap(lu(p, j), lu(c, j));
    }
    if (lu(c, c) < 0)
      sign = -sign;
    for (int64_t r = c + 1; r < n; ++r) {
      double f = lu(r, c) / lu(c, c);
      if (f == 0)
        continue;
      for (int64_t j = c; j < n; ++j)
        lu(r, j) -= f * lu(c, j);
    }
  }
  return sign;
}

Matrix haarOrthogonal(int64_t n, Rng &rng) {
  std::normal_distribution<double> g;
  // Modified Gram-Schmidt on the columns of a Gaussian matrix gives Q with
  // R's diagonal positive, which is Haar-distributed.
  Matrix q(n);
  for (double &v : q.a)
    v = g(rng);
  for (int64_t j = 0; j < n; ++j) {
    for (int pass = 0; pass < 2; ++pass) // re-orthogonalize once for accuracy
      for (int64_t k = 0; k < j; ++k) {
        double dot = 0;
        for (int64_t i = 0; i < n; ++i)
          dot += q(i, k) * q(i, j);
        for (int64_t i = 0; i < n; ++i)
          q(i, j) -= dot * q(i, k);
      }
    double nrm = 0;
    for (int64_t i = 0; i < n; ++i)
      nrm += q(i, j) * q(i, j);
    nrm = std::sqrt(nrm);
    for (int64_t i = 0; i < n; ++i)
      q(i, j) /= nrm;
  }
  return q;
}

Matrix ropeCommutant(int64_t n, const std::vector<std::pair<int64_t, int64_t>> &pairs,
                     Rng &rng) {
  std::normal_distribution<double> g(0.0, 0.3);
  std::uniform_real_distribution<double> u(0.0, 2.0 * M_PI);
  Matrix m = Matrix::identity(n);
  for (auto [i, j] : pairs) {
    double r = std::exp(g(rng)), t = u(rng);
    double a = r * std::cos(t), b = r * std::sin(t);
    m(i, i) = a;
    m(i, j) = -b;
    m(j, i) = b;
    m(j, j) = a;
  }
  return m;
}


namespace {

/// The plan of one draw (see Rounds). Sign slots read their codes from the
/// plan's stream in slot order, which is the same in every round, so a slot
/// has the same code in every round of a claim.
class Cover {
public:
  explicit Cover(const Rounds *r) : r_(r), plan_(r ? r->plan : 0) {}
  /// True when this round's sign slots follow the plan.
  bool planned() const { return r_ && r_->index < bits(); }
  /// Whether the next sign slot is flipped in this round.
  bool flip(Rng &rng) {
    if (!planned())
      return std::bernoulli_distribution(0.5)(rng);
    uint64_t code =
        std::uniform_int_distribution<uint64_t>(1, (uint64_t(1) << bits()) - 1)(plan_);
    return (code >> r_->index) & 1;
  }
  /// Whether this round's permutations are derangements.
  bool derange() const { return r_ && r_->index == 0; }

private:
  static constexpr int kPlannedBits = 62;
  int bits() const { return std::clamp(r_->count, 1, kPlannedBits); }
  const Rounds *r_;
  Rng plan_;
};

std::vector<int64_t> drawPermutation(int64_t n, Rng &rng, bool nonIdentity, const Cover &cover) {
  return cover.derange() ? randomDerangement(n, rng) : randomPerm(n, rng, nonIdentity);
}

std::vector<double> drawSigns(int64_t n, Rng &rng, Cover &cover) {
  std::vector<double> d(static_cast<size_t>(n));
  bool any = false;
  for (int64_t i = 0; i < n; ++i) {
    bool neg = cover.flip(rng);
    any |= neg;
    d[size_t(i)] = neg ? -1.0 : 1.0;
  }
  if (!any && n > 0) // a non-trivial element, so that a false claim shows
    d[0] = -1.0;
  return d;
}

/// Haar on O(n); with a planned round, on the coset of the determinant's sign
/// the plan gives (Q diag(-1, 1, ..., 1) is Haar on the other coset).
Matrix drawOrthogonal(int64_t n, Rng &rng, Cover &cover, bool positive = false) {
  Matrix q = haarOrthogonal(n, rng);
  if (!cover.planned() || n == 0)
    return q;
  bool negative = !positive && cover.flip(rng);
  if ((determinantSign(q) < 0) != negative)
    for (int64_t i = 0; i < n; ++i)
      q(i, 0) = -q(i, 0);
  return q;
}

/// O1 diag(exp(N(0, 0.3))) O2; with a planned round, det O2 > 0 and O1 carries
/// the determinant's sign.
Matrix drawGL(int64_t n, Rng &rng, Cover &cover) {
  std::normal_distribution<double> g(0.0, 0.3);
  Matrix d(n);
  for (int64_t i = 0; i < n; ++i)
    d(i, i) = std::exp(g(rng));
  Matrix o1 = drawOrthogonal(n, rng, cover);
  Matrix o2 = drawOrthogonal(n, rng, cover, /*positive=*/true);
  return multiply(multiply(o1, d), o2);
}

/// The monomial base groups (S, B, Z2, Scale+, 1); nullopt for the others.
std::optional<Monomial> drawMonomialBase(const std::string &name, int64_t n, Rng &rng,
                                         Cover &cover) {
  Monomial m{std::vector<int64_t>(size_t(n)), std::vector<double>(size_t(n), 1.0)};
  std::iota(m.col.begin(), m.col.end(), 0);
  if (name == "S") {
    m.col = drawPermutation(n, rng, true, cover);
  } else if (name == "B") { // permutation x sign flips: (i, p(i)) = d[p(i)]
    m.col = drawPermutation(n, rng, false, cover);
    std::vector<double> d = drawSigns(n, rng, cover);
    for (int64_t i = 0; i < n; ++i)
      m.factor[size_t(i)] = d[size_t(m.col[size_t(i)])];
  } else if (name == "Z2") {
    m.factor = drawSigns(n, rng, cover);
  } else if (name == "Scale+") {
    std::normal_distribution<double> g(0.0, 0.5);
    for (int64_t i = 0; i < n; ++i)
      m.factor[size_t(i)] = std::exp(g(rng));
  } else if (name != "1") {
    return std::nullopt;
  }
  return m;
}

Matrix dense(const Monomial &m) {
  Matrix r(int64_t(m.col.size()));
  for (size_t i = 0; i < m.col.size(); ++i)
    r(int64_t(i), m.col[i]) = m.factor[i];
  return r;
}

Matrix drawBase(const std::string &name, int64_t n, Rng &rng,
                const std::vector<std::pair<int64_t, int64_t>> &pairs, Cover &cover) {
  if (std::optional<Monomial> m = drawMonomialBase(name, n, rng, cover))
    return dense(*m);
  if (name == "O") return drawOrthogonal(n, rng, cover);
  if (name == "GL") return drawGL(n, rng, cover);
  if (name == "rope") return ropeCommutant(n, pairs, rng);
  throw std::invalid_argument("unknown group '" + name + "'");
}

} // namespace

static std::string str(const nlohmann::json &j, const char *key, const std::string &dflt) {
  if (!j.contains(key))
    return dflt;
  if (!j[key].is_string())
    throw std::invalid_argument(std::string("group field '") + key + "' must be a string");
  return j[key].get<std::string>();
}

/// Validated "pairs": [[i, j], ...], every index in [0, d) at most once.
static std::vector<std::pair<int64_t, int64_t>> readPairs(const nlohmann::json &group,
                                                          int64_t d, const char *what) {
  if (!group.contains("pairs") || !group["pairs"].is_array())
    throw std::invalid_argument(std::string(what) + " needs \"pairs\"");
  std::vector<std::pair<int64_t, int64_t>> pairs;
  std::vector<int> seen(size_t(d), 0);
  for (const auto &p : group["pairs"]) {
    if (!p.is_array() || p.size() != 2 || !p[0].is_number_integer() ||
        !p[1].is_number_integer())
      throw std::invalid_argument("each rope pair must be [i, j]");
    int64_t i = p[0], j = p[1];
    if (i < 0 || j < 0 || i >= d || j >= d || i == j || seen[size_t(i)]++ || seen[size_t(j)]++)
      throw std::invalid_argument("rope pair [" + std::to_string(i) + ", " +
                                  std::to_string(j) + "] is invalid for size " +
                                  std::to_string(d));
    pairs.emplace_back(i, j);
  }
  return pairs;
}

/// Group "rope": per pair (i, j) the block r [[cos t, -sin t], [sin t, cos t]]
/// on rows/cols i, j, identity elsewhere. "rotation": "SO2" (t uniform),
/// "sign" (t in {0, pi}: a sign slot per pair), "none" (t = 0); "scale":
/// r = exp(N(0, 0.3)) or 1.
static Matrix drawRope(const nlohmann::json &group, int64_t n, Rng &rng, Cover &cover) {
  auto pairs = readPairs(group, n, "group \"rope\"");
  std::string rotation = str(group, "rotation", "SO2");
  if (rotation != "SO2" && rotation != "sign" && rotation != "none")
    throw std::invalid_argument("rope rotation must be \"SO2\", \"sign\" or \"none\", not '" +
                                rotation + "'");
  if (group.contains("scale") && !group["scale"].is_boolean())
    throw std::invalid_argument("rope scale must be true or false");
  bool scale = group.value("scale", true);
  std::normal_distribution<double> g(0.0, 0.3);
  std::uniform_real_distribution<double> u(0.0, 2.0 * M_PI);
  Matrix m = Matrix::identity(n);
  for (auto [i, j] : pairs) {
    double r = scale ? std::exp(g(rng)) : 1.0;
    double t = rotation == "SO2" ? u(rng) : rotation == "sign" && cover.flip(rng) ? M_PI : 0.0;
    double a = r * std::cos(t), b = r * std::sin(t);
    m(i, i) = a;
    m(i, j) = -b;
    m(j, i) = b;
    m(j, j) = a;
  }
  return m;
}

namespace {

/// A validated "heads" group: H heads of d coordinates (head-major), whole
/// heads permuted by `outer`, an independent `inner` element inside each head.
struct HeadsGroup {
  int64_t H = 0, d = 0;
  std::string outer, inner;
  std::vector<std::pair<int64_t, int64_t>> pairs; // inner "rope"
};

HeadsGroup readHeads(const nlohmann::json &group, int64_t n) {
  HeadsGroup h;
  h.H = group.value("heads", int64_t(0));
  h.d = group.value("head_dim", int64_t(0));
  if (h.H <= 0 && h.d > 0 && n % h.d == 0) h.H = n / h.d;
  if (h.d <= 0 && h.H > 0 && n % h.H == 0) h.d = n / h.H;
  if (h.H <= 0 || h.d <= 0 || h.H * h.d != n)
    throw std::invalid_argument("group \"heads\" needs \"heads\" and \"head_dim\" with "
                                "heads * head_dim = n = " + std::to_string(n));
  h.outer = str(group, "outer", "1");
  h.inner = str(group, "inner", "1");
  if (h.outer != "S" && h.outer != "1")
    throw std::invalid_argument("heads outer must be \"S\" or \"1\", not '" + h.outer + "'");
  if (h.inner == "rope")
    h.pairs = readPairs(group, h.d, "inner \"rope\"");
  return h;
}

/// src[h]: the head whose coordinates head h takes.
std::vector<int64_t> drawOuter(const HeadsGroup &h, Rng &rng, const Cover &cover) {
  std::vector<int64_t> src(static_cast<size_t>(h.H));
  std::iota(src.begin(), src.end(), 0);
  if (h.outer == "S")
    src = drawPermutation(h.H, rng, h.inner == "1", cover);
  return src;
}

const std::set<std::string> &monomialNames() {
  static const std::set<std::string> names{"S", "B", "Z2", "Scale+", "1"};
  return names;
}

} // namespace

Matrix drawElement(const nlohmann::json &group, int64_t n, Rng &rng, const Rounds *rounds) {
  if (!group.is_object() || !group.contains("name"))
    throw std::invalid_argument("group must be an object with a \"name\"");
  std::string name = str(group, "name", "");
  Cover cover(rounds);
  if (name == "rope")
    return drawRope(group, n, rng, cover);
  if (name != "heads")
    return drawBase(name, n, rng, {}, cover);
  HeadsGroup h = readHeads(group, n);
  std::vector<int64_t> src = drawOuter(h, rng, cover);
  // Inner elements per source head: head h's sign slots stay head h's in every
  // round, wherever the outer permutation takes it.
  std::vector<Matrix> inner;
  for (int64_t k = 0; k < h.H; ++k)
    inner.push_back(drawBase(h.inner, h.d, rng, h.pairs, cover));
  Matrix m(n);
  for (int64_t k = 0; k < h.H; ++k) {
    const Matrix &b = inner[size_t(src[size_t(k)])];
    for (int64_t a = 0; a < h.d; ++a)
      for (int64_t c = 0; c < h.d; ++c)
        m(k * h.d + a, src[size_t(k)] * h.d + c) = b(a, c);
  }
  return m;
}

bool Monomial::isIdentity() const {
  for (size_t i = 0; i < col.size(); ++i)
    if (col[i] != int64_t(i) || factor[i] != 1.0)
      return false;
  return true;
}

std::optional<Monomial> drawMonomial(const nlohmann::json &group, int64_t n, Rng &rng,
                                     const Rounds *rounds) {
  if (!group.is_object() || !group.contains("name"))
    throw std::invalid_argument("group must be an object with a \"name\"");
  std::string name = str(group, "name", "");
  Cover cover(rounds);
  if (name != "heads")
    return monomialNames().count(name) ? drawMonomialBase(name, n, rng, cover) : std::nullopt;
  HeadsGroup h;
  try {
    h = readHeads(group, n);
  } catch (const std::invalid_argument &) {
    return std::nullopt; // drawElement reports what is malformed
  }
  if (!monomialNames().count(h.inner))
    return std::nullopt;
  // As drawElement: the outer permutation, then one inner element per head.
  std::vector<int64_t> src = drawOuter(h, rng, cover);
  std::vector<Monomial> inner;
  for (int64_t k = 0; k < h.H; ++k)
    inner.push_back(*drawMonomialBase(h.inner, h.d, rng, cover));
  Monomial m{std::vector<int64_t>(size_t(n)), std::vector<double>(size_t(n))};
  for (int64_t k = 0; k < h.H; ++k) {
    const Monomial &b = inner[size_t(src[size_t(k)])];
    for (int64_t a = 0; a < h.d; ++a) {
      m.col[size_t(k * h.d + a)] = src[size_t(k)] * h.d + b.col[size_t(a)];
      m.factor[size_t(k * h.d + a)] = b.factor[size_t(a)];
    }
  }
  return m;
}

bool hasSeveralSignSlots(const nlohmann::json &group) {
  if (!group.is_object() || !group.contains("name") || !group["name"].is_string())
    return false;
  std::string name = group["name"].get<std::string>();
  if (name == "rope")
    return group.contains("rotation") && group["rotation"] == "sign";
  if (name == "heads") {
    std::string inner = group.contains("inner") && group["inner"].is_string()
                            ? group["inner"].get<std::string>()
                            : "1";
    return inner == "Z2" || inner == "B" || inner == "O" || inner == "GL";
  }
  return name == "Z2" || name == "B";
}

std::string describeGroup(const nlohmann::json &group, int64_t n) {
  if (!group.is_object())
    return "?";
  std::string name = group.value("name", std::string("?"));
  if (name == "rope") {
    std::string rot = group.value("rotation", std::string("SO2"));
    bool scale = group.contains("scale") && group["scale"].is_boolean() ? group["scale"].get<bool>()
                                                                         : true;
    size_t k = group.contains("pairs") && group["pairs"].is_array() ? group["pairs"].size() : 0;
    std::string s = rot == "SO2" ? "SO(2)^" + std::to_string(k)
                    : rot == "sign" ? "Z2^" + std::to_string(k) : "";
    if (scale) s += (s.empty() ? "" : " x ") + std::string("Scale+^") + std::to_string(k);
    return "rope(" + (s.empty() ? std::string("1") : s) + ", n=" + std::to_string(n) + ")";
  }
  if (name != "heads")
    return name + "(" + std::to_string(n) + ")";
  std::string s = "heads(" + group.value("outer", std::string("1")) + " x " +
                  group.value("inner", std::string("1"));
  int64_t H = group.value("heads", int64_t(0)), d = group.value("head_dim", int64_t(0));
  if (H > 0 && d > 0)
    s += ", " + std::to_string(H) + "x" + std::to_string(d);
  return s + ")";
}

} // namespace vfy
} // namespace symoc
