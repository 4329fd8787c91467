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
    int64_t p = c;
    for (int64_t r = c + 1; r < n; ++r)
      if (std::fabs(lu(r, c)) > std::fabs(lu(p, c)))
        p = r;
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

Matrix permutation(int64_t n, Rng &rng, bool nonIdentity) {
  Matrix m(n);
  std::vector<int64_t> p = randomPerm(n, rng, nonIdentity);
  for (int64_t i = 0; i < n; ++i)
    m(i, p[size_t(i)]) = 1;
  return m;
}

Matrix signFlips(int64_t n, Rng &rng) {
  Matrix m(n);
  std::bernoulli_distribution coin(0.5);
  bool any = false;
  for (int64_t i = 0; i < n; ++i) {
    bool neg = coin(rng);
    any |= neg;
    m(i, i) = neg ? -1.0 : 1.0;
  }
  if (!any && n > 0) // a non-trivial element, so that a false claim shows
    m(0, 0) = -1.0;
  return m;
}

Matrix signedPermutation(int64_t n, Rng &rng) {
  // The permutation is drawn first (argument evaluation order is unspecified).
  Matrix p = permutation(n, rng, false);
  return multiply(p, signFlips(n, rng));
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

Matrix positiveDiagonal(int64_t n, Rng &rng) {
  std::normal_distribution<double> g(0.0, 0.5);
  Matrix m(n);
  for (int64_t i = 0; i < n; ++i)
    m(i, i) = std::exp(g(rng));
  return m;
}

Matrix randomGL(int64_t n, Rng &rng) {
  std::normal_distribution<double> g(0.0, 0.3);
  Matrix d(n);
  for (int64_t i = 0; i < n; ++i)
    d(i, i) = std::exp(g(rng));
  return multiply(multiply(haarOrthogonal(n, rng), d), haarOrthogonal(n, rng));
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

static Matrix drawBase(const std::string &name, int64_t n, Rng &rng,
                       const std::vector<std::pair<int64_t, int64_t>> &pairs) {
  if (name == "S") return permutation(n, rng, true);
  if (name == "B") return signedPermutation(n, rng);
  if (name == "O") return haarOrthogonal(n, rng);
  if (name == "GL") return randomGL(n, rng);
  if (name == "Scale+") return positiveDiagonal(n, rng);
  if (name == "Z2") return signFlips(n, rng);
  if (name == "1") return Matrix::identity(n);
  if (name == "rope") return ropeCommutant(n, pairs, rng);
  throw std::invalid_argument("unknown group '" + name + "'");
}

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
/// "sign" (t in {0, pi}), "none" (t = 0); "scale": r = exp(N(0, 0.3)) or 1.
static Matrix drawRope(const nlohmann::json &group, int64_t n, Rng &rng) {
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
  std::bernoulli_distribution flip(0.5);
  Matrix m = Matrix::identity(n);
  for (auto [i, j] : pairs) {
    double r = scale ? std::exp(g(rng)) : 1.0;
    double t = rotation == "SO2" ? u(rng) : rotation == "sign" && flip(rng) ? M_PI : 0.0;
    double a = r * std::cos(t), b = r * std::sin(t);
    m(i, i) = a;
    m(i, j) = -b;
    m(j, i) = b;
    m(j, j) = a;
  }
  return m;
}

Matrix drawElement(const nlohmann::json &group, int64_t n, Rng &rng) {
  if (!group.is_object() || !group.contains("name"))
    throw std::invalid_argument("group must be an object with a \"name\"");
  std::string name = str(group, "name", "");
  if (name == "rope")
    return drawRope(group, n, rng);
  if (name != "heads")
    return drawBase(name, n, rng, {});
  // heads x head_dim (head-major): whole heads permuted by `outer`, an
  // independent `inner` element inside each head.
  int64_t H = group.value("heads", int64_t(0)), d = group.value("head_dim", int64_t(0));
  if (H <= 0 && d > 0 && n % d == 0) H = n / d;
  if (d <= 0 && H > 0 && n % H == 0) d = n / H;
  if (H <= 0 || d <= 0 || H * d != n)
    throw std::invalid_argument("group \"heads\" needs \"heads\" and \"head_dim\" with "
                                "heads * head_dim = n = " + std::to_string(n));
  std::string outer = str(group, "outer", "1"), inner = str(group, "inner", "1");
  if (outer != "S" && outer != "1")
    throw std::invalid_argument("heads outer must be \"S\" or \"1\", not '" + outer + "'");
  std::vector<std::pair<int64_t, int64_t>> pairs;
  if (inner == "rope") {
    if (!group.contains("pairs") || !group["pairs"].is_array())
      throw std::invalid_argument("inner \"rope\" needs \"pairs\"");
    std::vector<int> seen(size_t(d), 0);
    for (const auto &p : group["pairs"]) {
      if (!p.is_array() || p.size() != 2 || !p[0].is_number_integer() ||
          !p[1].is_number_integer())
        throw std::invalid_argument("each rope pair must be [i, j]");
      int64_t i = p[0], j = p[1];
      if (i < 0 || j < 0 || i >= d || j >= d || i == j || seen[size_t(i)]++ || seen[size_t(j)]++)
        throw std::invalid_argument("rope pair [" + std::to_string(i) + ", " +
                                    std::to_string(j) + "] is invalid for head_dim " +
                                    std::to_string(d));
      pairs.emplace_back(i, j);
    }
  }
  Matrix outerP = outer == "S" ? permutation(H, rng, inner == "1") : Matrix::identity(H);
  Matrix m(n);
  for (int64_t h = 0; h < H; ++h) {
    Matrix b = drawBase(inner, d, rng, pairs);
    int64_t src = 0;
    for (int64_t k = 0; k < H; ++k)
      if (outerP(h, k) != 0)
        src = k;
    for (int64_t a = 0; a < d; ++a)
      for (int64_t c = 0; c < d; ++c)
        m(h * d + a, src * d + c) = b(a, c);
  }
  return m;
}

bool Monomial::isIdentity() const {
  for (size_t i = 0; i < col.size(); ++i)
    if (col[i] != int64_t(i) || factor[i] != 1.0)
      return false;
  return true;
}

/// drawBase's monomial groups, with the same draws from rng.
static std::optional<Monomial> drawMonomialBase(const std::string &name, int64_t n, Rng &rng) {
  Monomial m{std::vector<int64_t>(size_t(n)), std::vector<double>(size_t(n), 1.0)};
  std::iota(m.col.begin(), m.col.end(), 0);
  auto flips = [&] { // signFlips
    std::bernoulli_distribution coin(0.5);
    std::vector<double> d(static_cast<size_t>(n));
    bool any = false;
    for (int64_t i = 0; i < n; ++i) {
      bool neg = coin(rng);
      any |= neg;
      d[size_t(i)] = neg ? -1.0 : 1.0;
    }
    if (!any && n > 0)
      d[0] = -1.0;
    return d;
  };
  if (name == "S") {
    m.col = randomPerm(n, rng, true);
  } else if (name == "B") { // permutation(n, false) x signFlips: (i, p(i)) = d[p(i)]
    m.col = randomPerm(n, rng, false);
    std::vector<double> d = flips();
    for (int64_t i = 0; i < n; ++i)
      m.factor[size_t(i)] = d[size_t(m.col[size_t(i)])];
  } else if (name == "Z2") {
    m.factor = flips();
  } else if (name == "Scale+") {
    std::normal_distribution<double> g(0.0, 0.5);
    for (int64_t i = 0; i < n; ++i)
      m.factor[size_t(i)] = std::exp(g(rng));
  } else if (name != "1") {
    return std::nullopt;
  }
  return m;
}

std::optional<Monomial> drawMonomial(const nlohmann::json &group, int64_t n, Rng &rng) {
  if (!group.is_object() || !group.contains("name"))
    throw std::invalid_argument("group must be an object with a \"name\"");
  std::string name = str(group, "name", "");
  if (name != "heads") {
    static const std::set<std::string> monomial{"S", "B", "Z2", "Scale+", "1"};
    return monomial.count(name) ? drawMonomialBase(name, n, rng) : std::nullopt;
  }
  std::string outer = str(group, "outer", "1"), inner = str(group, "inner", "1");
  int64_t H = group.value("heads", int64_t(0)), d = group.value("head_dim", int64_t(0));
  if (H <= 0 && d > 0 && n % d == 0) H = n / d;
  if (d <= 0 && H > 0 && n % H == 0) d = n / H;
  static const std::set<std::string> monomialInner{"S", "B", "Z2", "Scale+", "1"};
  if (H <= 0 || d <= 0 || H * d != n || (outer != "S" && outer != "1") ||
      !monomialInner.count(inner))
    return std::nullopt; // drawElement reports what is malformed
  // As drawElement: the outer permutation, then one inner element per head.
  std::vector<int64_t> src(static_cast<size_t>(H));
  std::iota(src.begin(), src.end(), 0);
  if (outer == "S")
    src = randomPerm(H, rng, inner == "1");
  Monomial m{std::vector<int64_t>(size_t(n)), std::vector<double>(size_t(n))};
  for (int64_t h = 0; h < H; ++h) {
    Monomial b = *drawMonomialBase(inner, d, rng);
    for (int64_t a = 0; a < d; ++a) {
      m.col[size_t(h * d + a)] = src[size_t(h)] * d + b.col[size_t(a)];
      m.factor[size_t(h * d + a)] = b.factor[size_t(a)];
    }
  }
  return m;
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
