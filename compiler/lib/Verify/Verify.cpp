//===- Verify.cpp - Numerical check of claimed weight-space symmetries ----===//
#include "symoc/Verify/Verify.h"
#include "symoc/Evaluator/Evaluator.h"
#include "symoc/ModelIO/ModelIO.h"

#include "Elements.h"
#include "WrittenOutEpsilon.h"

#include <cblas.h>

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <optional>
#include <set>

namespace symoc {

using json = nlohmann::json;
using namespace vfy;

namespace {

// ------------------------------------------------------------- claim parsing

/// Where a space's coordinates sit in one initializer.
struct Member {
  std::string init;
  int64_t axis = 0;
  std::vector<int64_t> index; // coordinate k -> index[k] along axis
  std::string variance;       // out | in | abs   (linear)
  std::string role;           // weight | bias    (shift)
};

struct Claim {
  std::string id, kind, note;
  json group;
  int64_t n = 0;
  bool exact = true;
  std::vector<Member> members;
  // shift claims: which output is compared after a softmax over which axis
  std::string output;
  int64_t outputAxis = -1;
};

class Parser {
public:
  Parser(const std::string &doc, const std::map<std::string, Tensor> &inits)
      : doc_(doc), inits_(inits) {}

  [[noreturn]] void bad(const std::string &where, const std::string &msg) const {
    fail(doc_, where + ": " + msg);
  }

  Claim claim(const json &j, size_t pos) const {
    std::string where = "claim #" + std::to_string(pos);
    if (!j.is_object())
      bad(where, "is not an object");
    Claim c;
    if (j.contains("id") && j["id"].is_string())
      c.id = j["id"].get<std::string>();
    else
      c.id = "#" + std::to_string(pos);
    where = "claim " + c.id;
    if (!j.contains("kind") || !j["kind"].is_string())
      bad(where, "has no \"kind\"");
    c.kind = j["kind"].get<std::string>();
    if (c.kind != "linear" && c.kind != "shift" && c.kind != "scale")
      bad(where, "unknown kind '" + c.kind + "' (linear, shift or scale)");
    c.note = j.contains("note") && j["note"].is_string() ? j["note"].get<std::string>() : "";
    if (j.contains("exact")) {
      if (!j["exact"].is_boolean())
        bad(where, "\"exact\" must be true or false");
      c.exact = j["exact"].get<bool>();
    }
    if (!j.contains("members") || !j["members"].is_array() || j["members"].empty())
      bad(where, "has no members");
    if (c.kind == "linear") {
      if (!j.contains("n") || !j["n"].is_number_integer() || j["n"].get<int64_t>() <= 0)
        bad(where, "needs a positive integer \"n\"");
      c.n = j["n"].get<int64_t>();
      if (!j.contains("group"))
        bad(where, "has no \"group\"");
      c.group = j["group"];
    }
    if (c.kind == "shift") {
      if (j.contains("output")) {
        if (!j["output"].is_string())
          bad(where, "\"output\" must be a graph output name");
        c.output = j["output"].get<std::string>();
      }
      if (j.contains("output_axis")) {
        if (!j["output_axis"].is_number_integer())
          bad(where, "\"output_axis\" must be an integer");
        c.outputAxis = j["output_axis"].get<int64_t>();
      }
    }
    size_t k = 0;
    for (const auto &m : j["members"])
      c.members.push_back(member(m, c, where + " member " + std::to_string(k++)));
    return c;
  }

private:
  Member member(const json &m, const Claim &c, std::string where) const {
    if (!m.is_object() || !m.contains("initializer") || !m["initializer"].is_string())
      bad(where, "needs an \"initializer\" name");
    Member r;
    r.init = m["initializer"].get<std::string>();
    where += " (" + r.init + ")";
    auto it = inits_.find(r.init);
    if (it == inits_.end())
      bad(where, "no initializer or Constant of that name in the model");
    const Tensor &t = it->second;
    if (!t.isFloat())
      bad(where, "initializer is " + dtypeName(t.dtype) + ", not floating point");
    if (c.kind == "scale")
      return r;
    if (!m.contains("axis") || !m["axis"].is_number_integer())
      bad(where, "needs an integer \"axis\"");
    r.axis = m["axis"].get<int64_t>();
    if (r.axis < 0 || r.axis >= t.rank())
      bad(where, "axis " + std::to_string(r.axis) + " out of range for shape " +
                     shapeString(t.dims));
    if (c.kind == "shift") {
      r.role = m.value("role", std::string("weight"));
      if (r.role != "weight" && r.role != "bias")
        bad(where, "role must be \"weight\" or \"bias\"");
      if (r.role == "weight" && t.rank() != 2)
        bad(where, "a shift weight must be 2-D, shape is " + shapeString(t.dims));
      return r;
    }
    r.variance = m.value("variance", std::string(""));
    if (r.variance != "out" && r.variance != "in" && r.variance != "abs")
      bad(where, "variance must be \"out\", \"in\" or \"abs\"");
    int64_t dim = t.dims[size_t(r.axis)];
    if (m.contains("index")) {
      if (!m["index"].is_array())
        bad(where, "\"index\" must be a list of integers");
      for (const auto &v : m["index"]) {
        if (!v.is_number_integer())
          bad(where, "\"index\" must be a list of integers");
        r.index.push_back(v.get<int64_t>());
      }
    } else {
      auto integer = [&](const char *key, int64_t dflt) {
        if (!m.contains(key))
          return dflt;
        if (!m[key].is_number_integer())
          bad(where, std::string("\"") + key + "\" must be an integer");
        return m[key].get<int64_t>();
      };
      int64_t off = integer("offset", 0), ext = integer("extent", -1), st = integer("stride", 1);
      if (ext < 0)
        bad(where, "needs \"extent\"");
      if (st <= 0)
        bad(where, "stride must be positive");
      // Checked before any index is made: an extent of 2^40 allocated 16 GB (a session-35 audit).
      if (ext != c.n)
        bad(where, "covers " + std::to_string(ext) + " coordinates, the claim has n = " + std::to_string(c.n));
      if (off < 0 || (ext > 0 && (off >= dim || (ext - 1) > (dim - 1 - off) / st)))
        bad(where, "offset " + std::to_string(off) + ", extent " + std::to_string(ext) + ", stride " +
                       std::to_string(st) + " run outside axis " + std::to_string(r.axis) + " of size " +
                       std::to_string(dim) + " (shape " + shapeString(t.dims) + ")");
      for (int64_t k = 0; k < ext; ++k)
        r.index.push_back(off + k * st);
    }
    if (int64_t(r.index.size()) != c.n)
      bad(where, "covers " + std::to_string(r.index.size()) + " coordinates, the claim has n = " +
                     std::to_string(c.n));
    std::vector<bool> seen(size_t(std::max<int64_t>(dim, 0)), false);
    for (int64_t i : r.index) {
      if (i < 0 || i >= dim)
        bad(where, "index " + std::to_string(i) + " outside axis " + std::to_string(r.axis) +
                       " of size " + std::to_string(dim) + " (shape " + shapeString(t.dims) + ")");
      if (seen[size_t(i)])
        bad(where, "index " + std::to_string(i) + " listed twice");
      seen[size_t(i)] = true;
    }
    return r;
  }

  const std::string &doc_;
  const std::map<std::string, Tensor> &inits_;
};

// ------------------------------------------------------------- transforms

std::optional<Monomial> monomialOf(const Matrix &m) {
  if (!m.isMonomial())
    return std::nullopt;
  Monomial r{std::vector<int64_t>(size_t(m.n)), std::vector<double>(size_t(m.n))};
  for (int64_t i = 0; i < m.n; ++i)
    for (int64_t k = 0; k < m.n; ++k)
      if (m(i, k) != 0) {
        r.col[size_t(i)] = k;
        r.factor[size_t(i)] = m(i, k);
      }
  return r;
}

/// T[.., idx[i], ..] = sum_k M[i,k] T[.., idx[k], ..] along `axis`: a
/// monomial M in O(size), a dense one by dgemm. The gathers and scatters are
/// element loops when `axis` is the last one (inner = 1: a weight's input
/// axis), where a copy call per element cost more than the arithmetic; a dense
/// M there is one dgemm over every outer slice (R = V M^T).
void applyAlongAxis(Tensor &t, int64_t axis, const std::vector<int64_t> &idx, const Matrix *m,
                    const Monomial *mono) {
  int64_t outer = 1, inner = 1, dim = t.dims[size_t(axis)], n = mono ? int64_t(mono->col.size()) : m->n;
  for (int64_t i = 0; i < axis; ++i)
    outer *= t.dims[size_t(i)];
  for (size_t i = size_t(axis) + 1; i < t.dims.size(); ++i)
    inner *= t.dims[i];
  if (inner == 1 && !mono) {
    std::vector<double> v(size_t(outer * n)), r(size_t(outer * n));
    for (int64_t o = 0; o < outer; ++o) {
      const double *base = t.data.data() + o * dim;
      for (int64_t k = 0; k < n; ++k)
        v[size_t(o * n + k)] = base[idx[size_t(k)]];
    }
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, blasint(outer), blasint(n), blasint(n),
                1.0, v.data(), blasint(n), m->a.data(), blasint(n), 0.0, r.data(), blasint(n));
    for (int64_t o = 0; o < outer; ++o) {
      double *base = t.data.data() + o * dim;
      for (int64_t i = 0; i < n; ++i)
        base[idx[size_t(i)]] = r[size_t(o * n + i)];
    }
    return;
  }
  std::vector<double> v(size_t(n * inner)), r(size_t(n * inner));
  for (int64_t o = 0; o < outer; ++o) {
    double *base = t.data.data() + o * dim * inner;
    if (inner == 1)
      for (int64_t k = 0; k < n; ++k)
        v[size_t(k)] = base[idx[size_t(k)]];
    else
      for (int64_t k = 0; k < n; ++k)
        std::copy_n(base + idx[size_t(k)] * inner, inner, v.begin() + k * inner);
    if (mono) {
      for (int64_t i = 0; i < n; ++i) {
        double a = mono->factor[size_t(i)];
        const double *vk = v.data() + mono->col[size_t(i)] * inner;
        double *ri = r.data() + i * inner;
        for (int64_t j = 0; j < inner; ++j)
          ri[j] = a * vk[j];
      }
    } else {
      cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, blasint(n), blasint(inner),
                  blasint(n), 1.0, m->a.data(), blasint(n), v.data(), blasint(inner), 0.0,
                  r.data(), blasint(inner));
    }
    if (inner == 1)
      for (int64_t i = 0; i < n; ++i)
        base[idx[size_t(i)]] = r[size_t(i)];
    else
      for (int64_t i = 0; i < n; ++i)
        std::copy_n(r.begin() + i * inner, inner, base + idx[size_t(i)] * inner);
  }
}

using Overrides = std::map<std::string, Tensor>;

Tensor &overrideOf(Overrides &ov, const std::map<std::string, Tensor> &inits,
                   const std::string &name) {
  auto it = ov.find(name);
  if (it == ov.end())
    it = ov.emplace(name, inits.at(name)).first;
  return it->second;
}

/// Applies a linear element A to the given members ("out": A, "in": A^{-T}, "abs": |A|).
/// A monomial A (permutations, sign flips, scales) never becomes a dense n x n
/// matrix: A^{-T} has the same pattern with reciprocal factors, |A| with absolute ones.
void applyLinear(Overrides &ov, const std::map<std::string, Tensor> &inits,
                 const std::vector<Member> &members, const Monomial &mono) {
  Monomial inv = mono, abs = mono;
  for (double &f : inv.factor)
    f = 1.0 / f;
  for (double &f : abs.factor)
    f = std::fabs(f);
  for (const Member &m : members) {
    const Monomial *use = m.variance == "in" ? &inv : m.variance == "abs" ? &abs : &mono;
    applyAlongAxis(overrideOf(ov, inits, m.init), m.axis, m.index, nullptr, use);
  }
}

void applyLinear(Overrides &ov, const std::map<std::string, Tensor> &inits,
                 const std::vector<Member> &members, const Matrix &a) {
  if (std::optional<Monomial> mono = monomialOf(a))
    return applyLinear(ov, inits, members, *mono);
  Matrix invT(0), absA(0);
  bool haveInvT = false, haveAbs = false;
  for (const Member &m : members) {
    const Matrix *use = &a;
    if (m.variance == "in") {
      if (!haveInvT) {
        invT = transposed(inverse(a));
        haveInvT = true;
      }
      use = &invT;
    } else if (m.variance == "abs") {
      if (!haveAbs) {
        absA = absolute(a);
        haveAbs = true;
      }
      use = &absA;
    }
    applyAlongAxis(overrideOf(ov, inits, m.init), m.axis, m.index, use, nullptr);
  }
}

double rms(const Tensor &t) {
  double s = 0;
  for (double v : t.data)
    s += v * v;
  return t.size() ? std::sqrt(s / double(t.size())) : 0.0;
}

void applyShift(Overrides &ov, const std::map<std::string, Tensor> &inits, const Claim &c,
                Rng &rng, const std::string &doc) {
  std::normal_distribution<double> g;
  // One gauge: every member shares v (weights) and the constant (biases).
  int64_t vlen = -1;
  double scale = 0;
  for (const Member &m : c.members) {
    const Tensor &t = inits.at(m.init);
    scale = std::max(scale, rms(t));
    if (m.role != "weight")
      continue;
    int64_t len = t.dims[size_t(1 - m.axis)];
    if (vlen >= 0 && len != vlen)
      fail(doc, "claim " + c.id + ": shift weights have different lengths (" +
                    std::to_string(vlen) + " and " + std::to_string(len) + ")");
    vlen = len;
  }
  if (scale == 0)
    scale = 1;
  std::vector<double> v(size_t(std::max<int64_t>(vlen, 0)));
  for (double &x : v)
    x = scale * g(rng);
  double cst = scale * g(rng);
  for (const Member &m : c.members) {
    Tensor &t = overrideOf(ov, inits, m.init);
    if (m.role == "bias") {
      for (double &x : t.data)
        x += cst;
      continue;
    }
    int64_t R = t.dims[0], C = t.dims[1];
    for (int64_t i = 0; i < R; ++i)
      for (int64_t j = 0; j < C; ++j)
        t.data[size_t(i * C + j)] += v[size_t(m.axis == 0 ? j : i)];
  }
}

void applyScale(Overrides &ov, const std::map<std::string, Tensor> &inits, const Claim &c,
                Rng &rng) {
  // A scalar clearly away from 1, either side.
  std::uniform_real_distribution<double> u(0.4, 1.0);
  std::bernoulli_distribution coin(0.5);
  double s = std::exp(coin(rng) ? u(rng) : -u(rng));
  std::set<std::string> done;
  for (const Member &m : c.members) {
    if (!done.insert(m.init).second)
      continue;
    for (double &x : overrideOf(ov, inits, m.init).data)
      x *= s;
  }
}

// ------------------------------------------------------------- inputs

struct InputSpec {
  std::string name;
  std::vector<int64_t> dims;
  DType dtype;
  int64_t indexBound = -1; // integer input used as Gather indices: [0, bound)
};

std::vector<InputSpec> inputSpecs(const Evaluator &ev, const VerifyOptions &opt,
                                  std::vector<std::string> &assumed) {
  const auto &path = ev.modelPath();
  const auto &g = ev.model().graph();
  std::vector<InputSpec> specs;
  for (const auto *vi : ev.graphInputs()) {
    InputSpec s;
    s.name = vi->name();
    if (!vi->type().has_tensor_type())
      fail(path, "graph input '" + s.name + "' is not a tensor");
    const auto &tt = vi->type().tensor_type();
    s.dtype = tt.elem_type();
    if (!isSupportedDType(s.dtype))
      fail(path, "graph input '" + s.name + "' has element type " + dtypeName(s.dtype) +
                     ", which verify cannot feed");
    if (!tt.has_shape())
      fail(path, "graph input '" + s.name + "' has no shape");
    for (int i = 0; i < tt.shape().dim_size(); ++i) {
      const auto &d = tt.shape().dim(i);
      if (d.has_dim_value() && d.dim_value() > 0) {
        s.dims.push_back(d.dim_value());
        continue;
      }
      std::string p = d.has_dim_param() ? d.dim_param() : "";
      auto it = p.empty() ? opt.dims.end() : opt.dims.find(p);
      if (it == opt.dims.end() && opt.defaultDim > 0) {
        std::string a = (p.empty() ? s.name + "[" + std::to_string(i) + "]" : p) + "=" +
                        std::to_string(opt.defaultDim);
        if (std::find(assumed.begin(), assumed.end(), a) == assumed.end())
          assumed.push_back(a);
        s.dims.push_back(opt.defaultDim);
        continue;
      }
      if (it == opt.dims.end())
        fail(path, "graph input '" + s.name + "' dimension " + std::to_string(i) +
                       (p.empty() ? " has no size" : " ('" + p + "') is symbolic") +
                       ": give its size with --dim " + (p.empty() ? "NAME" : p) + "=N");
      if (it->second <= 0)
        fail(path, "dimension '" + p + "' must be given a positive size");
      s.dims.push_back(it->second);
    }
    if (isIntegerDType(s.dtype)) {
      for (const auto &n : g.node()) {
        if (n.op_type() != "Gather" || n.input_size() < 2 || n.input(1) != s.name)
          continue;
        auto it = ev.initializers().find(n.input(0));
        if (it == ev.initializers().end())
          continue;
        int64_t axis = 0;
        for (const auto &a : n.attribute())
          if (a.name() == "axis")
            axis = a.i();
        if (axis < 0)
          axis += it->second.rank();
        if (axis < 0 || axis >= it->second.rank())
          continue;
        int64_t rows = it->second.dims[size_t(axis)];
        s.indexBound = s.indexBound < 0 ? rows : std::min(s.indexBound, rows);
      }
    }
    specs.push_back(std::move(s));
  }
  return specs;
}

std::map<std::string, Tensor> drawInputs(const std::vector<InputSpec> &specs, Rng &rng, bool masksAllSet) {
  std::map<std::string, Tensor> ins;
  std::normal_distribution<double> g;
  std::bernoulli_distribution set(0.75);
  for (const auto &s : specs) {
    Tensor t = Tensor::zeros(s.dims, s.dtype);
    const int64_t last = s.dims.empty() ? 1 : std::max<int64_t>(s.dims.back(), 1);
    for (size_t i = 0; i < t.data.size(); ++i) {
      double &v = t.data[i];
      if (isFloatDType(s.dtype))
        v = g(rng);
      else if (s.indexBound > 0)
        v = double(std::uniform_int_distribution<int64_t>(0, s.indexBound - 1)(rng));
      else
        // Masks and flags: 0 or 1 (all 1 never showed a weight that only the unset value
        // reaches: a Where's other branch; a session-35 audit), the first entry of every
        // row set (an attention mask keeps a key for every query) and scalars 1 (sizes).
        v = masksAllSet || s.dims.empty() || int64_t(i) % last == 0 || set(rng) ? 1 : 0;
    }
    ins[s.name] = std::move(t);
  }
  return ins;
}

// ------------------------------------------------------------- comparison

void softmaxAxis(Tensor &t, int64_t axis) {
  int64_t r = t.rank();
  if (r == 0)
    return;
  if (axis < 0)
    axis += r;
  int64_t outer = 1, n = t.dims[size_t(axis)], inner = 1;
  for (int64_t i = 0; i < axis; ++i) outer *= t.dims[size_t(i)];
  for (int64_t i = axis + 1; i < r; ++i) inner *= t.dims[size_t(i)];
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t j = 0; j < inner; ++j) {
      auto at = [&](int64_t k) -> double & { return t.data[size_t((o * n + k) * inner + j)]; };
      double m = -std::numeric_limits<double>::infinity(), s = 0;
      for (int64_t k = 0; k < n; ++k) m = std::max(m, at(k));
      for (int64_t k = 0; k < n; ++k) s += std::exp(at(k) - m);
      for (int64_t k = 0; k < n; ++k) at(k) = std::exp(at(k) - m) / s;
    }
}

/// The largest ||y' - y|| / ||y|| over the compared outputs, each output judged on its own
/// (pooled, an output 1e-9 the size of another was never seen: a wrong permutation of a
/// small head beside a large regression output passed; a session-35 audit); an all-zero
/// output by ||y' - y||. Integer outputs must match exactly (a mismatch counts as relative
/// error 1).
double relError(const std::map<std::string, Tensor> &y, const std::map<std::string, Tensor> &yt,
                const Claim *shift, const std::string &path) {
  double worst = 0;
  bool intMismatch = false;
  for (const auto &kv : y) {
    Tensor a = kv.second, b = yt.at(kv.first);
    if (a.dims != b.dims)
      return std::numeric_limits<double>::infinity();
    if (!a.isFloat()) {
      intMismatch |= a.data != b.data;
      continue;
    }
    // A shift claim that names an output judges that output after a softmax over its axis
    // (the cross-entropy loss sees no more); every other output, and every output for a
    // claim that names none (a Softmax inside the graph), must stay as it is: compared raw
    // (docs/symmetry-schema.md).
    if (shift && !shift->output.empty() && kv.first == shift->output) {
      if (a.rank() == 0)
        fail(path, "output '" + kv.first + "' is a scalar: no axis for the shift comparison");
      int64_t ax = shift->outputAxis < 0 ? shift->outputAxis + a.rank() : shift->outputAxis;
      if (ax < 0 || ax >= a.rank())
        fail(path, "shift claim " + shift->id + ": output_axis " +
                       std::to_string(shift->outputAxis) + " out of range for output '" +
                       kv.first + "' " + shapeString(a.dims));
      softmaxAxis(a, ax);
      softmaxAxis(b, ax);
    }
    double num = 0, den = 0;
    for (size_t i = 0; i < a.data.size(); ++i) {
      if (!std::isfinite(a.data[i]) || !std::isfinite(b.data[i]))
        return std::numeric_limits<double>::infinity();
      num += (b.data[i] - a.data[i]) * (b.data[i] - a.data[i]);
      den += a.data[i] * a.data[i];
    }
    worst = std::max(worst, den > 0 ? std::sqrt(num / den) : std::sqrt(num));
  }
  return intMismatch ? std::max(worst, 1.0) : worst;
}

std::string describe(const Claim &c) {
  if (c.kind == "linear")
    return "linear " + describeGroup(c.group, c.n);
  return c.kind;
}

uint64_t mix(uint64_t seed, uint64_t a, uint64_t b) {
  // splitmix64-style combination: independent streams per (claim, trial).
  uint64_t z = seed + 0x9e3779b97f4a7c15ULL * (a + 1) + 0xbf58476d1ce4e5b9ULL * (b + 1);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

} // namespace

std::vector<std::string> VerifyReport::failedIds() const {
  std::vector<std::string> ids;
  for (const auto &c : claims)
    if (!c.pass && !c.unresolved)
      ids.push_back(c.id);
  return ids;
}

std::vector<std::string> VerifyReport::unresolvedIds() const {
  std::vector<std::string> ids;
  for (const auto &c : claims)
    if (!c.pass && c.unresolved)
      ids.push_back(c.id);
  return ids;
}

bool VerifyReport::ok() const {
  for (const auto &c : claims)
    if (!c.pass)
      return false;
  return !(controlRan && control.pass && controlInconclusive.empty());
}

/// The graph with epsilon = 0 on every normalization node that has one and in every
/// written-out one, without the initializers (its evaluator shares the model's weights).
static onnx::ModelProto withoutEpsilon(const onnx::ModelProto &model, const std::string &modelPath,
                                       bool &changed) {
  changed = false;
  onnx::ModelProto m;
  *m.mutable_opset_import() = model.opset_import();
  m.set_ir_version(model.ir_version());
  const onnx::GraphProto &g = model.graph();
  onnx::GraphProto *h = m.mutable_graph();
  *h->mutable_node() = g.node();
  *h->mutable_input() = g.input();
  *h->mutable_output() = g.output();
  for (auto &node : *h->mutable_node()) {
    const std::string &t = node.op_type();
    if (t != "BatchNormalization" && t != "LayerNormalization" &&
        t != "InstanceNormalization" && t != "GroupNormalization")
      continue;
    onnx::AttributeProto *eps = nullptr;
    for (auto &a : *node.mutable_attribute())
      if (a.name() == "epsilon")
        eps = &a;
    if (!eps) {
      eps = node.add_attribute();
      eps->set_name("epsilon");
      eps->set_type(onnx::AttributeProto::FLOAT);
      changed = true; // the default epsilon is not 0
    }
    changed |= eps->f() != 0.0f;
    eps->set_f(0.0f);
  }
  changed |= zeroWrittenOutEpsilons(*h, g, modelPath) > 0;
  return m;
}

namespace {

const char *const kZeroOutputs =
    "every output is zero on random inputs, so no claim can be checked "
    "(zero-initialized output layer?)";

/// The base run's outputs are all zero: nothing can be compared.
struct ZeroOutputs : Error {
  using Error::Error;
};

/// The parameters of a claims document: its blocks (every parameter, in symoc's own
/// documents) and every claim's members.
std::set<std::string> parametersOf(const json &doc) {
  std::set<std::string> params;
  if (doc.contains("blocks") && doc["blocks"].is_array())
    for (const auto &b : doc["blocks"])
      if (b.is_object() && b.contains("name") && b["name"].is_string())
        params.insert(b["name"].get<std::string>());
  for (const auto &c : doc["claims"])
    if (c.is_object() && c.contains("members") && c["members"].is_array())
      for (const auto &m : c["members"])
        if (m.is_object() && m.contains("initializer") && m["initializer"].is_string())
          params.insert(m["initializer"].get<std::string>());
  return params;
}

/// The model with every floating parameter whose entries are all zero set to random values
/// (N(0, 0.05^2), seeded), and with `allEqualToo` every one whose entries are one constant c
/// set to c exp(0.1 N(0, 1)) entry by entry (the sign kept: a variance stays positive).
/// Claims hold for every value of the parameters, so they may be checked at any; at equal
/// entries a permutation or a sign flip of them changes nothing, so a claim that leaves
/// them out, or that moves only them, is not seen there (a zero bias, LayerNorm's gain 1 and
/// bias 0 of a freshly initialized model; a session-35 audit). timm's MLP-Mixer and ResMLP
/// zero their classifier, which zeroes every output. `changed` names what was set.
onnx::ModelProto withGenericParameters(const onnx::ModelProto &model, const std::string &modelPath,
                                       const json &doc, uint64_t seed, bool allEqualToo,
                                       std::vector<std::string> &changed) {
  std::set<std::string> params = parametersOf(doc);
  onnx::ModelProto out = model;
  Rng rng(seed ^ 0x7a65726fULL);
  std::normal_distribution<double> normal(0.0, 0.05), unit(0.0, 1.0);
  for (auto &t : *out.mutable_graph()->mutable_initializer()) {
    if (!params.count(t.name()) || (t.data_type() != onnx::TensorProto::FLOAT &&
                                    t.data_type() != onnx::TensorProto::DOUBLE))
      continue;
    Tensor v = tensorFromProto(t, modelPath);
    if (v.data.empty())
      continue;
    // All zero (any size), or with allEqualToo one finite constant over two entries or more.
    const double c = v.data[0];
    const bool uniform = std::all_of(v.data.begin(), v.data.end(), [&](double x) { return x == c; });
    if (!uniform || (c != 0 && (!allEqualToo || v.data.size() < 2 || !std::isfinite(c))))
      continue;
    for (double &x : v.data)
      x = c == 0 ? normal(rng) : c * std::exp(0.1 * unit(rng));
    v.dtype = t.data_type();
    t = tensorToProto(v, t.name());
    changed.push_back(t.name());
  }
  return out;
}

/// The first `limit` names, comma-separated, then ", ..." if there are more.
std::string nameList(const std::vector<std::string> &names, size_t limit = 4) {
  std::string out;
  for (size_t i = 0; i < names.size() && i < limit; ++i)
    out += (i ? ", " : "") + names[i];
  if (names.size() > limit)
    out += ", ...";
  return out;
}

VerifyReport verifyOnce(const onnx::ModelProto &model, const std::string &modelPath,
                        const json &doc, const VerifyOptions &opt);

} // namespace

namespace {
/// The file's weights first; where outputs are all zero, at random values of the all-zero
/// parameters instead (what the file's weights cannot show).
VerifyReport verifyAtFileWeights(const onnx::ModelProto &model, const std::string &modelPath,
                                 const json &doc, const VerifyOptions &opt) {
  try {
    return verifyOnce(model, modelPath, doc, opt);
  } catch (const ZeroOutputs &) {
    std::vector<std::string> changed;
    onnx::ModelProto randomized = withGenericParameters(model, modelPath, doc, opt.seed, false, changed);
    if (changed.empty())
      throw Error(modelPath + ": " + kZeroOutputs);
    VerifyReport rep;
    try {
      rep = verifyOnce(randomized, modelPath, doc, opt);
    } catch (const ZeroOutputs &) {
      throw Error(modelPath + ": " + kZeroOutputs + "; still with its " +
                  std::to_string(changed.size()) + " all-zero parameter(s) at random values");
    }
    rep.notes.push_back("every output is zero with the file's weights (a zero-initialized "
                        "output layer): checked at random values of its " +
                        std::to_string(changed.size()) + " all-zero parameter(s) (" +
                        nameList(changed) + ") instead; claims hold for any parameter values");
    return rep;
  }
}

/// True when a graph input is an integer or boolean tensor (a mask, a flag, an index).
bool hasIntegerInputs(const onnx::ModelProto &model) {
  std::set<std::string> inits;
  for (const auto &t : model.graph().initializer())
    inits.insert(t.name());
  for (const auto &in : model.graph().input())
    if (!inits.count(in.name()) && in.type().has_tensor_type() &&
        !isFloatDType(int(in.type().tensor_type().elem_type())))
      return true;
  return false;
}
} // namespace

VerifyReport verify(const onnx::ModelProto &model, const std::string &modelPath,
                    const json &doc, const VerifyOptions &opt) {
  VerifyReport rep;
  VerifyOptions used = opt; // as the first pass ran (masks all set after a fallback)
  try {
    rep = verifyAtFileWeights(model, modelPath, doc, opt);
  } catch (const Error &e) {
    // Integer inputs that are sizes or shapes, not masks, may not run at 0: all set, as before.
    if (opt.masksAllSet || !hasIntegerInputs(model))
      throw;
    used.masksAllSet = true;
    rep = verifyAtFileWeights(model, modelPath, doc, used);
    rep.notes.push_back(std::string("integer inputs all 1: with 0/1 entries the model does not run (") +
                        e.what() + ")");
  }
  // Then one trial where every parameter of equal entries (zeros, ones) is generic: what
  // a claim does to such a parameter, or leaves out of it, shows only there.
  std::vector<std::string> changed;
  onnx::ModelProto generic = withGenericParameters(model, modelPath, doc, opt.seed, true, changed);
  if (changed.empty())
    return rep;
  VerifyOptions once = used;
  once.trials = 1;
  once.seed = opt.seed ^ 0x67656e65ULL;
  VerifyReport at;
  try {
    at = verifyAtFileWeights(generic, modelPath, doc, once);
  } catch (const Error &e) {
    rep.notes.push_back("not checked again at generic values of the " + std::to_string(changed.size()) +
                        " parameter(s) of equal entries (" + nameList(changed) + "): " + e.what());
    return rep;
  }
  rep.forwards += at.forwards;
  std::vector<std::string> refuted;
  for (ClaimResult &c : rep.claims)
    for (const ClaimResult &g : at.claims)
      if (g.id == c.id && c.pass && !g.pass) {
        c.pass = false;
        c.unresolved = g.unresolved;
        c.maxRelErr = g.maxRelErr;
        c.roundingRelErr = g.roundingRelErr;
        refuted.push_back(c.id);
      }
  rep.notes.push_back("checked again (one trial) at generic values of the " + std::to_string(changed.size()) +
                      " parameter(s) of equal entries (" + nameList(changed) + ")" +
                      (refuted.empty() ? std::string(": every claim that passed still holds")
                                       : ": " + nameList(refuted) + " fail there"));
  return rep;
}

namespace {
/// Every claim of `doc` read against `inits` (names, axes, ranges, n), each linear claim's
/// group drawn once so that a malformed group is reported before any model run.
std::vector<Claim> parseClaims(const std::string &docName, const json &doc,
                               const std::map<std::string, Tensor> &inits) {
  Parser parser(docName, inits);
  std::vector<Claim> claims;
  for (size_t i = 0; i < doc["claims"].size(); ++i) {
    claims.push_back(parser.claim(doc["claims"][i], i));
    const Claim &c = claims.back();
    if (c.kind != "linear")
      continue;
    Rng probe(0);
    try {
      (void)drawElement(c.group, c.n, probe);
    } catch (const std::exception &e) {
      fail(docName, "claim " + c.id + ": " + e.what());
    }
  }
  return claims;
}
} // namespace

void checkClaimsFit(const onnx::ModelProto &model, const std::string &docName, const json &doc) {
  if (!doc.is_object() || !doc.contains("claims") || !doc["claims"].is_array())
    fail(docName, "no \"claims\" list");
  // Shapes only: the Parser reads dims, and a model verify cannot run may still be compiled.
  std::map<std::string, Tensor> shapes;
  auto add = [&](const onnx::TensorProto &t, const std::string &name) {
    Tensor v;
    v.dims.assign(t.dims().begin(), t.dims().end());
    shapes[name] = std::move(v);
  };
  for (const auto &t : model.graph().initializer())
    add(t, t.name());
  for (const auto &n : model.graph().node())
    if (n.op_type() == "Constant" && n.output_size() == 1)
      for (const auto &a : n.attribute())
        if (a.name() == "value" && a.has_t())
          add(a.t(), n.output(0));
  (void)parseClaims(docName, doc, shapes);
}

namespace {

VerifyReport verifyOnce(const onnx::ModelProto &model, const std::string &modelPath,
                        const json &doc, const VerifyOptions &opt) {
  const std::string &docName = opt.claimsName;
  if (opt.trials <= 0)
    fail(docName, "trials must be positive");
  if (!doc.is_object())
    fail(docName, "claims document is not a JSON object");
  if (doc.contains("schema") && doc["schema"] != "symoc.symmetry/1" &&
      doc["schema"] != "symoc.symmetry/2")
    fail(docName, "unknown schema " + doc["schema"].dump() +
                      " (expected symoc.symmetry/2 or /1)");
  if (!doc.contains("claims") || !doc["claims"].is_array())
    fail(docName, "no \"claims\" list");

  std::unique_ptr<Evaluator> evp;
  try {
    evp = std::make_unique<Evaluator>(model, modelPath);
  } catch (const Error &) {
    throw;
  } catch (const std::exception &e) {
    throw Error(e.what());
  }
  const Evaluator &ev = *evp;
  const auto &inits = ev.initializers();
  for (const auto &kv : inits)
    for (double v : kv.second.data)
      if (std::isnan(v))
        fail(modelPath, "initializer '" + kv.first + "' contains NaN: cannot verify");

  std::vector<Claim> claims = parseClaims(docName, doc, inits);
  // Infinite entries are legitimate in fixed tensors (attention masks), but a
  // transformed weight would turn them into NaN.
  for (const auto &c : claims)
    for (const auto &m : c.members)
      for (double v : inits.at(m.init).data)
        if (std::isinf(v))
          fail(modelPath, "initializer '" + m.init + "' (member of claim " + c.id +
                              ") contains Inf: cannot verify");

  // Approximate claims are exact when the normalizations' epsilon is 0 (the
  // scale a normalization absorbs): they are checked on that model, to the
  // exact tolerance. A model's epsilon against tiny variances would otherwise
  // decide the verdict (a deep CNN on a 64 x 64 image reaches 1e-1). The
  // second evaluator shares the first one's weights.
  onnx::ModelProto noEps; // the evaluator keeps pointers into its model
  std::unique_ptr<Evaluator> evNoEpsP;
  // A graph with no epsilon to set to 0 (none, or a written-out one whose constant is
  // not small) has its approximate claims judged at its epsilon.
  bool epsilonZeroed = false;
  if (std::any_of(claims.begin(), claims.end(), [](const Claim &c) { return !c.exact; })) {
    noEps = withoutEpsilon(model, modelPath, epsilonZeroed);
    if (epsilonZeroed)
      evNoEpsP = std::make_unique<Evaluator>(noEps, modelPath, ev);
  }

  std::vector<std::string> assumedDims;
  std::vector<InputSpec> specs = inputSpecs(ev, opt, assumedDims);
  std::set<std::string> outputNames;
  for (const auto &o : model.graph().output())
    outputNames.insert(o.name());
  for (const auto &c : claims)
    if (c.kind == "shift" && !c.output.empty() && !outputNames.count(c.output))
      fail(docName, "claim " + c.id + ": \"output\" '" + c.output + "' is not a graph output");

  // A job is a claim with the transform it applies. Each job draws its element
  // from its own stream per trial, so it draws the same element alone and in
  // any batch: a batch that fails is bisected on the very same elements.
  struct Job {
    Claim claim;
    uint64_t stream;
    std::function<void(Overrides &, Rng &, const Rounds &)> transform;
    ClaimResult result;
    bool failed = false;
    /// The group has several sign slots: the claim is checked on one round more.
    bool extraRound = false;
    /// An approximate claim that is not exact at epsilon 0 (the epsilon of a
    /// normalization written out as Add(var, eps) stays) is judged at the
    /// model's epsilon, to the approximate tolerance.
    bool atModelEpsilon = false;
  };
  std::vector<Job> jobs;
  // Weights the outputs read through the graph that the control moved without any effect.
  std::set<std::string> deadWeights;
  auto transformOf = [&](const Claim &c) {
    return [&, c](Overrides &ov, Rng &rng, const Rounds &rounds) {
      if (c.kind == "linear") {
        Matrix a(0);
        std::optional<Monomial> mono;
        try {
          mono = drawMonomial(c.group, c.n, rng, &rounds);
          if (!mono)
            a = drawElement(c.group, c.n, rng, &rounds);
        } catch (const std::exception &e) {
          fail(docName, "claim " + c.id + ": " + e.what());
        }
        if (mono)
          applyLinear(ov, inits, c.members, *mono);
        else
          applyLinear(ov, inits, c.members, a);
      } else if (c.kind == "shift") {
        applyShift(ov, inits, c, rng, docName);
      } else {
        applyScale(ov, inits, c, rng);
      }
    };
  };
  for (size_t i = 0; i < claims.size(); ++i) {
    const Claim &c = claims[i];
    Job j{c, i, transformOf(c), {}};
    j.extraRound = c.kind == "linear" && hasSeveralSignSlots(c.group);
    if (!c.exact && evNoEpsP)
      j.result.relErrAtEpsilon = 0;
    j.atModelEpsilon = !c.exact && !evNoEpsP;
    j.result.id = c.id;
    j.result.kind = c.kind;
    j.result.description = describe(c);
    j.result.note = c.note;
    j.result.exact = c.exact;
    j.result.tol = c.exact || evNoEpsP ? opt.exactTol : opt.approxTol;
    j.result.trials = opt.trials;
    jobs.push_back(std::move(j));
  }
  VerifyReport rep;
  rep.model = modelPath;
  rep.seed = opt.seed;
  rep.trials = opt.trials;
  rep.composed = opt.compose;
  rep.assumedDims = assumedDims;

  /// One evaluator with its base run on one trial's inputs; the intermediate
  /// values are kept (when they fit) only once a batch must be bisected, or
  /// from the start when claims are checked one by one.
  struct Runner {
    const Evaluator *ev = nullptr;
    const std::map<std::string, Tensor> *inputs = nullptr;
    std::map<std::string, Tensor> base;
    EvalCache cache;
    bool cached = false, triedCache = false;
  };
  int forwards = 0;
  auto guarded = [&](auto &&f) {
    try {
      ++forwards;
      return f();
    } catch (const Error &) {
      throw;
    } catch (const std::exception &e) {
      throw Error(e.what());
    }
  };
  auto keepValues = [&](Runner &r) {
    if (r.triedCache || opt.cacheLimitBytes == 0)
      return;
    r.triedCache = true;
    r.cache = guarded([&] { return r.ev->runAndKeep(*r.inputs); });
    r.cached = r.cache.bytes() <= opt.cacheLimitBytes;
    if (!r.cached) // too big to keep: full runs
      r.cache.values.clear();
  };
  auto runOn = [&](Runner &r, const Overrides &ov) {
    return guarded([&] { return r.cached ? r.ev->rerun(r.cache, ov) : r.ev->run(*r.inputs, ov); });
  };
  auto startRunner = [&](const Evaluator &e, const std::map<std::string, Tensor> &inputs,
                         const char *what) {
    Runner r;
    r.ev = &e;
    r.inputs = &inputs;
    if (!opt.compose)
      keepValues(r);
    r.base = r.cached ? r.ev->rerun(r.cache, {}) : runOn(r, {});
    double norm = 0;
    for (const auto &kv : r.base)
      for (double v : kv.second.data) {
        if (!std::isfinite(v))
          fail(modelPath, "output '" + kv.first + "' is not finite " + what);
        norm += v * v;
      }
    // Constant-zero outputs (e.g. a zero-initialized classifier) make every
    // comparison vacuous (verify() retries at random values of the all-zero
    // parameters).
    if (norm == 0)
      throw ZeroOutputs(modelPath + ": " + kZeroOutputs);
    return r;
  };

  // Batches: claims compared the same way are checked together with one
  // forward run of the product of their elements. Exact claims on the model;
  // approximate ones on the model with epsilon 0 (exact there), or at the
  // model's epsilon when they are not exact at 0; shift claims after a softmax
  // over their output axis, one batch per output and axis.
  // A group with one element besides the identity (Z2 or B of one coordinate, S of two)
  // draws it in every round, so two such false claims whose product is a symmetry (the two
  // halves of a true swap) cancel in every composed batch (a session-35 audit): in round 0
  // each is checked alone.
  auto singleElement = [](const Claim &c) {
    if (c.kind != "linear" || !c.group.is_object() || !c.group.contains("name"))
      return false;
    const std::string name = c.group["name"].is_string() ? c.group["name"].get<std::string>() : "";
    return ((name == "Z2" || name == "B") && c.n == 1) || (name == "S" && c.n == 2);
  };
  auto batchKey = [&](const Job &j) {
    std::string k = j.atModelEpsilon ? "eps" : !j.claim.exact && evNoEpsP ? "eps0" : "model";
    if (j.claim.kind == "shift")
      k += "|shift|" + j.claim.output + "|" + std::to_string(j.claim.outputAxis);
    return k;
  };

  // Element rounds (Rounds in Elements.h): round t on trial t's inputs, and
  // round T (one more than the trials) on the first trial's inputs for the
  // claims whose group has several sign slots. A claim's rounds share its plan,
  // so that together they flip every sign slot and move every coordinate.
  const uint64_t kPlanStream = 0x706c616eULL;
  auto roundsOf = [&](const Job &j) { return opt.trials + (j.extraRound ? 1 : 0); };

  // The weights the claims move: what the rounding-noise check perturbs (roundingNoise).
  std::set<std::string> moved;
  for (const auto &c : claims)
    for (const auto &m : c.members)
      moved.insert(m.init);

  for (int t = 0; t < opt.trials; ++t) {
    Rng irng(mix(opt.seed, 0xffff, uint64_t(t)));
    std::map<std::string, Tensor> inputs = drawInputs(specs, irng, opt.masksAllSet);
    Runner asIs = startRunner(ev, inputs, "on random inputs");
    std::unique_ptr<Runner> noEpsRun;
    auto runnerFor = [&](const std::string &key) -> Runner & {
      if (key.rfind("eps0", 0) != 0)
        return asIs;
      if (!noEpsRun)
        noEpsRun = std::make_unique<Runner>(
            startRunner(*evNoEpsP, inputs, "with the normalizations' epsilon set to 0 (a "
                                           "constant channel?): cannot check approximate claims"));
      return *noEpsRun;
    };
    // How far rounding alone moves the outputs of runner r on this trial's inputs: every
    // weight a claim moves times (1 +- 2^-52), signs at random (ClaimResult::roundingRelErr;
    // not the other constants: an exponent of 3 moved off its integer makes Pow NaN).
    std::map<const Runner *, double> noise;
    auto roundingNoise = [&](Runner &r) {
      auto it = noise.find(&r);
      if (it != noise.end())
        return it->second;
      Overrides ov;
      Rng rng(mix(opt.seed, 0x726f756eULL, uint64_t(t)));
      for (const std::string &name : moved) {
        if (!inits.at(name).isFloat())
          continue;
        Tensor &w = overrideOf(ov, inits, name);
        for (double &v : w.data)
          v *= (rng() & 1) ? 1 + 0x1p-52 : 1 - 0x1p-52;
      }
      double e = relError(r.base, runOn(r, ov), nullptr, modelPath);
      return noise[&r] = e;
    };
    // rel err of the product of the elements of `set` (job indices) in `round`.
    auto errorOf = [&](const std::vector<size_t> &set, Runner &r, const Claim *shift,
                       int round) {
      Overrides ov;
      for (size_t k : set) {
        Rng rng(mix(opt.seed, jobs[k].stream, uint64_t(round)));
        Rounds rounds{round, roundsOf(jobs[k]), mix(opt.seed, jobs[k].stream, kPlanStream)};
        jobs[k].transform(ov, rng, rounds);
      }
      // Under a loss that reads the raw outputs (mse, none) a shifted output must stay as
      // it is: no softmax before the comparison.
      return relError(r.base, runOn(r, ov), opt.outputsSeeSoftmax ? shift : nullptr, modelPath);
    };

    std::vector<int> trialRounds{t};
    if (t == 0)
      trialRounds.push_back(opt.trials);
    for (int round : trialRounds) {
      // Batches are formed per round: a claim moved to the model's epsilon in one
      // round is in that batch in the next.
      std::map<std::string, std::vector<size_t>> batches;
      // The extra round only for the claims that have one.
      for (size_t k = 0; k < jobs.size(); ++k)
        if (!jobs[k].failed && (round < opt.trials || jobs[k].extraRound))
          batches[batchKey(jobs[k]) + (round == 0 && singleElement(jobs[k].claim) ? "|alone|" + std::to_string(k) : "")]
              .push_back(k);
      for (auto &[key, all] : batches) {
        Runner &r = runnerFor(key);
        const Claim *shift = jobs[all[0]].claim.kind == "shift" ? &jobs[all[0]].claim : nullptr;
        double tol = key.rfind("eps|", 0) == 0 || key == "eps" ? opt.approxTol : opt.exactTol;
        bool eps0 = key.rfind("eps0", 0) == 0;
        auto failOne = [&](size_t k, double e) {
          Job &j = jobs[k];
          if (eps0) {
            // Not exact at epsilon 0: judged at the model's epsilon instead.
            double em = errorOf({k}, asIs, shift, round);
            if (em <= opt.approxTol) {
              j.atModelEpsilon = true;
              j.result.maxRelErr = em;
              j.result.tol = opt.approxTol;
              j.result.relErrAtEpsilon = -1;
              return true;
            }
            j.result.relErrAtEpsilon = std::max(j.result.relErrAtEpsilon, em);
          }
          j.failed = true;
          j.result.maxRelErr = std::max(j.result.maxRelErr, e);
          // Refuted, or only as far off as rounding noise takes this model here?
          double s = roundingNoise(r);
          j.result.roundingRelErr = std::max(j.result.roundingRelErr, s);
          j.result.unresolved = e <= kRoundingMargin * s;
          return false;
        };
        // True when every claim of `set` holds; a failing set is split in halves.
        std::function<bool(const std::vector<size_t> &)> check =
            [&](const std::vector<size_t> &set) -> bool {
          double e = errorOf(set, r, shift, round);
          if (e <= tol) {
            for (size_t k : set)
              jobs[k].result.maxRelErr = std::max(jobs[k].result.maxRelErr, e);
            return true;
          }
          if (set.size() == 1)
            return failOne(set[0], e);
          keepValues(r);
          std::vector<size_t> a(set.begin(), set.begin() + long(set.size() / 2)),
              b(set.begin() + long(set.size() / 2), set.end());
          bool okA = check(a), okB = check(b);
          // Claims moved to the model's epsilon explain the failure at epsilon 0.
          bool moved = std::any_of(set.begin(), set.end(),
                                   [&](size_t k) { return jobs[k].atModelEpsilon; });
          if (okA && okB && !moved) {
            // Each half holds, their product does not: no claim of the set is
            // trusted (never observed with true claims; a claim that holds at
            // these weights but not at its partners' images would do this).
            std::string ids;
            for (size_t k : set)
              ids += (ids.empty() ? "" : ", ") + jobs[k].claim.id;
            for (size_t k : set) {
              jobs[k].failed = true;
              jobs[k].result.maxRelErr = std::max(jobs[k].result.maxRelErr, e);
              jobs[k].result.note += " [holds alone, fails combined with " + ids + "]";
            }
          }
          return false;
        };
        if (opt.compose) {
          check(all);
        } else {
          for (size_t k : all)
            check({k});
        }
        // Approximate claims: their error at the model's epsilon, for
        // information (first round, the batch's product).
        if (eps0 && round == 0) {
          std::vector<size_t> held;
          for (size_t k : all)
            if (!jobs[k].failed && !jobs[k].atModelEpsilon)
              held.push_back(k);
          std::vector<std::vector<size_t>> sets;
          if (opt.compose && !held.empty())
            sets.push_back(held);
          else
            for (size_t k : held)
              sets.push_back({k});
          for (const auto &set : sets) {
            double em = errorOf(set, asIs, shift, round);
            for (size_t k : set)
              jobs[k].result.relErrAtEpsilon = std::max(jobs[k].result.relErrAtEpsilon, em);
          }
        }
      }
    }

    if (t != 0)
      continue;
    // Negative controls (must FAIL), on the first trial: (1) the largest linear
    // claim with several members, its element applied to one member only (the
    // one with the most weight mass, so that the change is visible); (2) a
    // random perturbation of the largest initializers the outputs depend on,
    // until one changes the outputs. A control that changes nothing is
    // inconclusive (the outputs do not depend on that weight); one that changes
    // the outputs by less than the tolerance means verify cannot be trusted.
    auto result = [&](const std::string &kind, const std::string &desc,
                      const std::string &note) {
      ClaimResult c;
      c.id = "control";
      c.kind = kind;
      c.description = desc;
      c.note = note;
      c.tol = opt.exactTol;
      c.trials = 1;
      return c;
    };
    const Claim *pick = nullptr;
    for (const auto &c : claims)
      if (c.kind == "linear" && c.members.size() >= 2 && (!pick || c.n > pick->n))
        pick = &c;
    if (pick) {
      Member target;
      double best = -1;
      for (const auto &m : pick->members) {
        const Tensor &w = inits.at(m.init);
        if (rms(w) * double(w.size()) > best) {
          best = rms(w) * double(w.size());
          target = m;
        }
      }
      ClaimResult c = result("linear", describe(*pick),
                             "claim " + pick->id + "'s element applied to " + target.init +
                                 " only (must FAIL)");
      Overrides ov;
      Rng rng(mix(opt.seed, 0xc0c0, 0));
      // Redraw until the element is not the identity (e.g. "1" groups).
      for (int k = 0; k < 8; ++k) {
        Matrix a = drawElement(pick->group, pick->n, rng);
        if (!a.isIdentity() || k == 7) {
          applyLinear(ov, inits, {target}, a);
          break;
        }
      }
      c.maxRelErr = relError(asIs.base, runOn(asIs, ov), nullptr, modelPath);
      c.pass = c.maxRelErr <= c.tol;
      rep.controlRan = true;
      rep.control = c;
    }
    if (!rep.controlRan || rep.control.pass) {
      // Weights the outputs depend on through the graph, largest first.
      std::set<std::string> needed(outputNames);
      const auto &nodes = model.graph().node();
      for (int i = nodes.size() - 1; i >= 0; --i) {
        bool used = false;
        for (const auto &o : nodes[i].output())
          used |= needed.count(o) > 0;
        if (used)
          for (const auto &x : nodes[i].input())
            needed.insert(x);
      }
      std::vector<std::string> order;
      for (const auto &kv : inits)
        if (kv.second.isFloat() && kv.second.size() > 0)
          order.push_back(kv.first);
      std::stable_sort(order.begin(), order.end(), [&](const auto &x, const auto &y) {
        bool nx = needed.count(x), ny = needed.count(y);
        if (nx != ny)
          return nx;
        return inits.at(x).size() > inits.at(y).size();
      });
      std::vector<std::string> unmoved;
      for (size_t i = 0; i < order.size() && i < 3; ++i) {
        const std::string &name = order[i];
        ClaimResult c = result("perturb", "perturbation",
                               "random perturbation of " + name + " (must FAIL)");
        Overrides ov;
        Rng rng(mix(opt.seed, 0xc0c1, i));
        Tensor &w = overrideOf(ov, inits, name);
        std::normal_distribution<double> g;
        double s = 0.1 * (rms(w) > 0 ? rms(w) : 1.0);
        for (double &v : w.data)
          v += s * g(rng);
        c.maxRelErr = relError(asIs.base, runOn(asIs, ov), nullptr, modelPath);
        c.pass = c.maxRelErr <= c.tol;
        bool first = !rep.controlRan || rep.control.kind != "perturb";
        if (first || !c.pass || rep.control.maxRelErr == 0) {
          rep.controlRan = true;
          rep.control = c;
        }
        if (!c.pass)
          break;
        if (c.maxRelErr > 0)
          continue; // moved, but too little to see: keep looking, report it if none fails
        unmoved.push_back(name);
      }
      // A weight the outputs depend on through the graph that moved them not at all is dead
      // at the sampled inputs (a Relu that never opens, a branch a mask never takes): claims
      // on it are not seen, not trivially true (a session-35 audit: GL on one side of a dead
      // layer passed as OK). Only weights no output reads make the control inconclusive.
      // A weight read only through a discrete choice (a router before an ArgMax) may not move
      // the outputs under a 10% perturbation; redrawn whole it does. Dead is what stays unmoved
      // even then.
      auto movesWhenRedrawn = [&](const std::string &name) {
        for (uint64_t k = 0; k < 3; ++k) { // three draws: one may keep every choice as it was
          Overrides ov;
          Rng rng(mix(opt.seed, 0xdead + k, std::hash<std::string>()(name)));
          Tensor &w = overrideOf(ov, inits, name);
          std::normal_distribution<double> g;
          const double s = rms(w) > 0 ? rms(w) : 1.0;
          for (double &v : w.data)
            v = s * g(rng);
          if (relError(asIs.base, runOn(asIs, ov), nullptr, modelPath) > 0)
            return true;
        }
        return false;
      };
      std::string dead;
      for (const std::string &name : unmoved)
        if (needed.count(name) && !movesWhenRedrawn(name)) {
          deadWeights.insert(name);
          if (dead.empty())
            dead = name;
        }
      const bool deadButRead = !dead.empty();
      if (deadButRead)
        rep.notes.push_back("the outputs did not move when " + dead +
                            " changed, though they read it through the graph: it is dead at the "
                            "sampled inputs, so claims on it cannot be checked here");
      if (!deadButRead && rep.control.pass && rep.control.maxRelErr == 0 && !unmoved.empty() &&
          (rep.control.kind == "perturb")) {
        std::string list;
        for (size_t i = 0; i < unmoved.size(); ++i)
          list += (i == 0 ? "" : i + 1 == unmoved.size() ? " or " : ", ") + unmoved[i];
        rep.controlInconclusive = "the output does not depend on " + list;
      }
    }
  }

  for (Job &j : jobs) {
    j.result.pass = !j.failed;
    // A claim on a weight the control found dead at the sampled inputs was not seen: it
    // does not pass (as an unresolved one: not refuted either).
    for (const Member &m : j.claim.members)
      if (j.result.pass && deadWeights.count(m.init)) {
        j.result.pass = false;
        j.result.unresolved = true;
        j.result.blindOn = m.init;
      }
    rep.claims.push_back(j.result);
  }
  rep.forwards = forwards;
  return rep;
}

} // namespace

json toJson(const VerifyReport &r) {
  auto one = [](const ClaimResult &c) {
    json o{{"id", c.id},         {"kind", c.kind},     {"group", c.description},
                {"note", c.note},     {"exact", c.exact},   {"pass", c.pass},
                {"max_rel_err", c.maxRelErr}, {"tol", c.tol}, {"trials", c.trials}};
    if (c.relErrAtEpsilon >= 0) {
      o["checked_with_epsilon_0"] = true;
      o["rel_err_at_model_epsilon"] = c.relErrAtEpsilon;
    }
    if (c.roundingRelErr >= 0) {
      o["rounding_rel_err"] = c.roundingRelErr;
      o["unresolved"] = c.unresolved;
    }
    if (!c.blindOn.empty()) {
      o["unresolved"] = true;
      o["not_seen_through"] = c.blindOn;
    }
    return o;
  };
  json j;
  j["schema"] = "symoc.verify/1";
  j["model"] = r.model;
  j["seed"] = r.seed;
  j["trials"] = r.trials;
  j["claims"] = json::array();
  for (const auto &c : r.claims)
    j["claims"].push_back(one(c));
  if (r.controlRan) {
    j["control"] = one(r.control);
    j["control"]["must_fail"] = true;
    if (!r.controlInconclusive.empty())
      j["control"]["inconclusive"] = r.controlInconclusive;
  }
  j["composed"] = r.composed;
  j["forward_runs"] = r.forwards;
  if (!r.notes.empty())
    j["notes"] = r.notes;
  j["ok"] = r.ok();
  return j;
}

void printReport(const VerifyReport &r, std::ostream &os) {
  // "3.1e-16", "1e-9": exponents without padding zeros.
  auto sci = [](double v, int digits) {
    if (std::isinf(v))
      return std::string("inf");
    if (v == 0)
      return std::string("0");
    std::string s = fmt::format("{:.{}e}", v, digits);
    size_t e = s.find('e');
    if (e != std::string::npos && e + 2 < s.size() && s[e + 2] == '0' && e + 3 < s.size())
      s.erase(e + 2, 1);
    if (e != std::string::npos && s[e + 1] == '+')
      s.erase(e + 1, 1);
    return s;
  };
  auto line = [&](const char *verdict, const ClaimResult &c) {
    os << fmt::format("{} {} {}{}{}  rel err {} {} {}{}\n", verdict, c.id, c.description,
                      c.note.empty() ? "" : " ", c.note, sci(c.maxRelErr, 1),
                      c.pass ? "<=" : ">", sci(c.tol, 0),
                      c.relErrAtEpsilon >= 0
                          ? " with epsilon 0 (at the model's epsilon: " +
                                sci(c.relErrAtEpsilon, 1) + ")"
                          : "");
  };
  int pass = 0;
  for (const auto &c : r.claims) {
    line(c.pass ? "PASS" : c.unresolved ? "UNRESOLVED" : "FAIL", c);
    if (!c.blindOn.empty())
      os << "  (not seen: the outputs do not move with " << c.blindOn
         << " at the sampled inputs, though they read it; the claim is not used)\n";
    else if (c.unresolved)
      os << fmt::format("  (rounding-level noise in the weights moves the outputs by {} here: "
                        "this model amplifies rounding past the tolerance, so the check cannot "
                        "tell; the claim is not used)\n",
                        sci(c.roundingRelErr, 1));
    pass += c.pass;
  }
  bool inconclusive = r.controlRan && !r.controlInconclusive.empty();
  if (r.controlRan)
    line(inconclusive ? "CONTROL-INCONCLUSIVE"
         : r.control.pass ? "CONTROL-PASSED(bad)" : "CONTROL-FAILED(good)",
         r.control);
  for (const auto &n : r.notes)
    os << "verify: note: " << n << "\n";
  os << fmt::format("verify: {} forward runs for {} claims ({})\n", r.forwards, r.claims.size(),
                    r.composed ? "composed: one run per batch of claims, bisected on failure"
                               : "one claim at a time");
  // The control's outcome and the verdict are separate clauses, so that a
  // failing claim never reads as a failing control.
  std::string control =
      !r.controlRan ? "no negative control (no weights)"
      : inconclusive
          ? "negative control inconclusive: " + r.controlInconclusive +
                " (claims on it hold trivially)"
      : r.control.pass ? "negative control PASSED, so verify cannot see a wrong transform here"
                       : "negative control fails as it must";
  std::string verdict;
  std::vector<std::string> failed = r.failedIds(), unresolved = r.unresolvedIds();
  auto idList = [](const std::vector<std::string> &v) { return nameList(v, 12); };
  if (r.ok()) {
    verdict = ": OK";
  } else if (!failed.empty() || !unresolved.empty()) {
    if (!failed.empty())
      verdict = fmt::format("; FAILED: {} of {} claims do not hold ({})", failed.size(),
                            r.claims.size(), idList(failed));
    std::vector<std::string> noise, unseen;
    for (const auto &c : r.claims)
      if (!c.pass && c.unresolved)
        (c.blindOn.empty() ? noise : unseen).push_back(c.id);
    if (!noise.empty())
      verdict += fmt::format("; UNRESOLVED: {} of {} claims fail within rounding noise ({})",
                             noise.size(), r.claims.size(), idList(noise));
    if (!unseen.empty())
      verdict += fmt::format("; UNRESOLVED: {} of {} claims are not seen at the sampled inputs ({})",
                             unseen.size(), r.claims.size(), idList(unseen));
    if (r.controlRan && r.control.pass && !inconclusive)
      verdict += " and the control passed";
  } else {
    verdict = ": FAILED";
  }
  os << fmt::format("verify: {}/{} claims pass, {} trials, seed {}, {}{}\n", pass,
                    r.claims.size(), r.trials, r.seed, control, verdict);
}

} // namespace symoc
