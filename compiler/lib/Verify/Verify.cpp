//===- Verify.cpp - Numerical check of claimed weight-space symmetries ----===//
#include "symoc/Verify/Verify.h"
#include "symoc/Evaluator/Evaluator.h"
#include "symoc/ModelIO/ModelIO.h"

#include "Elements.h"
#include "WrittenOutEpsilon.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
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
      int64_t off = m.value("offset", int64_t(0)), ext = m.value("extent", int64_t(-1)),
              st = m.value("stride", int64_t(1));
      if (ext < 0)
        bad(where, "needs \"extent\"");
      if (st <= 0)
        bad(where, "stride must be positive");
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

/// T[.., idx[i], ..] = sum_k M[i,k] T[.., idx[k], ..] along `axis`.
void applyAlongAxis(Tensor &t, int64_t axis, const std::vector<int64_t> &idx, const Matrix &m) {
  int64_t outer = 1, inner = 1, dim = t.dims[size_t(axis)], n = m.n;
  for (int64_t i = 0; i < axis; ++i)
    outer *= t.dims[size_t(i)];
  for (size_t i = size_t(axis) + 1; i < t.dims.size(); ++i)
    inner *= t.dims[i];
  bool mono = m.isMonomial();
  std::vector<int64_t> col(size_t(n), 0);
  if (mono)
    for (int64_t i = 0; i < n; ++i)
      for (int64_t k = 0; k < n; ++k)
        if (m(i, k) != 0)
          col[size_t(i)] = k;
  std::vector<double> v(size_t(n * inner)), r(size_t(n * inner));
  for (int64_t o = 0; o < outer; ++o) {
    double *base = t.data.data() + o * dim * inner;
    for (int64_t k = 0; k < n; ++k)
      std::copy_n(base + idx[size_t(k)] * inner, inner, v.begin() + k * inner);
    std::fill(r.begin(), r.end(), 0.0);
    for (int64_t i = 0; i < n; ++i) {
      double *ri = r.data() + i * inner;
      if (mono) {
        double a = m(i, col[size_t(i)]);
        const double *vk = v.data() + col[size_t(i)] * inner;
        for (int64_t j = 0; j < inner; ++j)
          ri[j] = a * vk[j];
        continue;
      }
      for (int64_t k = 0; k < n; ++k) {
        double a = m(i, k);
        if (a == 0)
          continue;
        const double *vk = v.data() + k * inner;
        for (int64_t j = 0; j < inner; ++j)
          ri[j] += a * vk[j];
      }
    }
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
void applyLinear(Overrides &ov, const std::map<std::string, Tensor> &inits,
                 const std::vector<Member> &members, const Matrix &a) {
  Matrix invT(0);
  bool haveInvT = false;
  for (const Member &m : members) {
    const Matrix *use = &a;
    Matrix tmp(0);
    if (m.variance == "in") {
      if (!haveInvT) {
        invT = transposed(inverse(a));
        haveInvT = true;
      }
      use = &invT;
    } else if (m.variance == "abs") {
      tmp = absolute(a);
      use = &tmp;
    }
    applyAlongAxis(overrideOf(ov, inits, m.init), m.axis, m.index, *use);
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

std::vector<InputSpec> inputSpecs(const Evaluator &ev, const VerifyOptions &opt) {
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

std::map<std::string, Tensor> drawInputs(const std::vector<InputSpec> &specs, Rng &rng) {
  std::map<std::string, Tensor> ins;
  std::normal_distribution<double> g;
  for (const auto &s : specs) {
    Tensor t = Tensor::zeros(s.dims, s.dtype);
    for (double &v : t.data) {
      if (isFloatDType(s.dtype))
        v = g(rng);
      else if (s.indexBound > 0)
        v = double(std::uniform_int_distribution<int64_t>(0, s.indexBound - 1)(rng));
      else
        v = 1; // masks and flags: all set
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

/// ||y' - y|| / ||y|| over the compared outputs; integer outputs must match
/// exactly (a mismatch counts as relative error 1).
double relError(const std::map<std::string, Tensor> &y, const std::map<std::string, Tensor> &yt,
                const Claim *shift, const std::string &path) {
  double num = 0, den = 0;
  bool intMismatch = false;
  for (const auto &kv : y) {
    if (shift && !shift->output.empty() && kv.first != shift->output)
      continue;
    Tensor a = kv.second, b = yt.at(kv.first);
    if (a.dims != b.dims)
      return std::numeric_limits<double>::infinity();
    if (!a.isFloat()) {
      intMismatch |= a.data != b.data;
      continue;
    }
    if (shift) {
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
    for (size_t i = 0; i < a.data.size(); ++i) {
      if (!std::isfinite(a.data[i]) || !std::isfinite(b.data[i]))
        return std::numeric_limits<double>::infinity();
      num += (b.data[i] - a.data[i]) * (b.data[i] - a.data[i]);
      den += a.data[i] * a.data[i];
    }
  }
  double rel = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
  return intMismatch ? std::max(rel, 1.0) : rel;
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

bool VerifyReport::ok() const {
  for (const auto &c : claims)
    if (!c.pass)
      return false;
  return !(controlRan && control.pass);
}

/// The model with epsilon = 0 on every normalization node that has one and
/// in every written-out one.
static onnx::ModelProto withoutEpsilon(const onnx::ModelProto &model,
                                       const std::string &modelPath) {
  onnx::ModelProto m = model;
  for (auto &node : *m.mutable_graph()->mutable_node()) {
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
    }
    eps->set_f(0.0f);
  }
  zeroWrittenOutEpsilons(*m.mutable_graph(), model.graph(), modelPath);
  return m;
}

static std::map<std::string, Tensor> runWith(const Evaluator &ev,
                                      const std::map<std::string, Tensor> &inputs,
                                      const Overrides &ov) {
  try {
    return ev.run(inputs, ov);
  } catch (const Error &) {
    throw;
  } catch (const std::exception &e) {
    throw Error(e.what());
  }
}

VerifyReport verify(const onnx::ModelProto &model, const std::string &modelPath,
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

  Parser parser(docName, inits);
  std::vector<Claim> claims;
  for (size_t i = 0; i < doc["claims"].size(); ++i)
    claims.push_back(parser.claim(doc["claims"][i], i));
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
  // second evaluator reads the weights again: only when such a claim exists.
  onnx::ModelProto noEps; // the evaluator keeps pointers into its model
  std::unique_ptr<Evaluator> evNoEpsP;
  if (std::any_of(claims.begin(), claims.end(), [](const Claim &c) { return !c.exact; }))
    evNoEpsP = std::make_unique<Evaluator>(noEps = withoutEpsilon(model, modelPath), modelPath);

  std::vector<InputSpec> specs = inputSpecs(ev, opt);

  // A job is a claim (or the control) with the transform it applies; trials
  // are the outer loop so that one base run per trial (all intermediate
  // values kept) serves every job: a job recomputes only what its weights reach.
  struct Job {
    Claim claim;
    uint64_t stream;
    std::function<void(Overrides &, Rng &)> transform;
    ClaimResult result;
  };
  std::vector<Job> jobs;
  auto addJob = [&](const Claim &c, uint64_t stream,
                    std::function<void(Overrides &, Rng &)> transform) {
    Job j{c, stream, std::move(transform), {}};
    if (!c.exact)
      j.result.relErrAtEpsilon = 0;
    j.result.id = c.id;
    j.result.kind = c.kind;
    j.result.description = describe(c);
    j.result.note = c.note;
    j.result.exact = c.exact;
    j.result.tol = c.exact || evNoEpsP ? opt.exactTol : opt.approxTol;
    j.result.trials = opt.trials;
    jobs.push_back(std::move(j));
  };

  for (size_t i = 0; i < claims.size(); ++i) {
    const Claim &c = claims[i];
    addJob(c, i, [&, c](Overrides &ov, Rng &rng) {
      if (c.kind == "linear") {
        Matrix a(0);
        try {
          a = drawElement(c.group, c.n, rng);
        } catch (const std::exception &e) {
          fail(docName, "claim " + c.id + ": " + e.what());
        }
        applyLinear(ov, inits, c.members, a);
      } else if (c.kind == "shift") {
        applyShift(ov, inits, c, rng, docName);
      } else {
        applyScale(ov, inits, c, rng);
      }
    });
  }
  // Draw every element once up front so that malformed groups are reported
  // before any model run.
  for (const auto &c : claims)
    if (c.kind == "linear") {
      Rng probe(0);
      try {
        (void)drawElement(c.group, c.n, probe);
      } catch (const std::exception &e) {
        fail(docName, "claim " + c.id + ": " + e.what());
      }
    }

  // Negative controls (must FAIL): (1) the largest linear claim with several
  // members, its element applied to one member only (the one with the most
  // weight mass, so that the change is visible); (2) a random perturbation of
  // the largest initializer. The first that fails is reported; if both pass
  // (e.g. the weights never reach the outputs), verify itself fails.
  size_t firstControl = jobs.size();
  const Claim *pick = nullptr;
  for (const auto &c : claims)
    if (c.kind == "linear" && c.members.size() >= 2 && (!pick || c.n > pick->n))
      pick = &c;
  if (pick) {
    Claim ctl;
    ctl.id = "control";
    ctl.exact = true;
    ctl.kind = "linear";
    ctl.group = pick->group;
    ctl.n = pick->n;
    double best = -1;
    for (const auto &m : pick->members) {
      const Tensor &t = inits.at(m.init);
      if (rms(t) * double(t.size()) > best) {
        best = rms(t) * double(t.size());
        ctl.members = {m};
      }
    }
    ctl.note = "claim " + pick->id + "'s element applied to " + ctl.members[0].init +
               " only (must FAIL)";
    addJob(ctl, 0xc0c0, [&, ctl](Overrides &ov, Rng &rng) {
      // Redraw until the element is not the identity (e.g. "1" groups).
      for (int k = 0; k < 8; ++k) {
        Matrix a = drawElement(ctl.group, ctl.n, rng);
        if (!a.isIdentity() || k == 7) {
          applyLinear(ov, inits, ctl.members, a);
          return;
        }
      }
    });
  }
  std::string biggest;
  for (const auto &kv : inits)
    if (kv.second.isFloat() && (biggest.empty() || kv.second.size() > inits.at(biggest).size()))
      biggest = kv.first;
  if (!biggest.empty()) {
    Claim ctl;
    ctl.id = "control";
    ctl.exact = true;
    ctl.kind = "perturb";
    ctl.note = "random perturbation of " + biggest + " (must FAIL)";
    addJob(ctl, 0xc0c1, [&, biggest](Overrides &ov, Rng &rng) {
      Tensor &t = overrideOf(ov, inits, biggest);
      std::normal_distribution<double> g;
      double s = 0.1 * (rms(t) > 0 ? rms(t) : 1.0);
      for (double &v : t.data)
        v += s * g(rng);
    });
    jobs.back().result.description = "perturbation";
  }

  for (int t = 0; t < opt.trials; ++t) {
    Rng irng(mix(opt.seed, 0xffff, uint64_t(t)));
    std::map<std::string, Tensor> inputs = drawInputs(specs, irng);
    EvalCache cache;
    std::map<std::string, Tensor> base;
    bool cached = opt.cacheLimitBytes > 0;
    try {
      if (cached) {
        cache = ev.runAndKeep(inputs);
        if (cache.bytes() > opt.cacheLimitBytes) { // too big to keep: full runs
          cached = false;
          cache.values.clear();
        }
      }
      base = cached ? ev.rerun(cache, {}) : ev.run(inputs);
    } catch (const Error &) {
      throw;
    } catch (const std::exception &e) {
      throw Error(e.what());
    }
    double norm = 0;
    for (const auto &kv : base)
      for (double v : kv.second.data) {
        if (!std::isfinite(v))
          fail(modelPath, "output '" + kv.first + "' is not finite on random inputs");
        norm += v * v;
      }
    // Constant-zero outputs (e.g. a zero-initialized classifier) make every
    // comparison vacuous.
    if (norm == 0)
      fail(modelPath, "every output is zero on random inputs, so no claim can be checked "
                      "(zero-initialized output layer?)");
    std::map<std::string, Tensor> baseNoEps;
    if (evNoEpsP) {
      baseNoEps = runWith(*evNoEpsP, inputs, {});
      for (const auto &kv : baseNoEps)
        for (double v : kv.second.data)
          if (!std::isfinite(v))
            fail(modelPath, "output '" + kv.first + "' is not finite with the normalizations' "
                            "epsilon set to 0 (a constant channel?): cannot check approximate claims");
    }
    for (Job &j : jobs) {
      Rng rng(mix(opt.seed, j.stream, uint64_t(t)));
      Overrides ov;
      j.transform(ov, rng);
      std::map<std::string, Tensor> out;
      try {
        out = cached ? ev.rerun(cache, ov) : ev.run(inputs, ov);
      } catch (const Error &) {
        throw;
      } catch (const std::exception &e) {
        throw Error(e.what());
      }
      const Claim &c = j.claim;
      if (c.kind == "shift" && !c.output.empty() && !out.count(c.output))
        fail(docName, "claim " + c.id + ": \"output\" '" + c.output + "' is not a graph output");
      double e = relError(base, out, c.kind == "shift" ? &c : nullptr, modelPath);
      if (!c.exact && evNoEpsP) {
        j.result.relErrAtEpsilon = std::max(j.result.relErrAtEpsilon, e);
        e = relError(baseNoEps, runWith(*evNoEpsP, inputs, ov),
                     c.kind == "shift" ? &c : nullptr, modelPath);
      }
      j.result.maxRelErr = std::max(j.result.maxRelErr, e);
    }
  }

  VerifyReport rep;
  rep.model = modelPath;
  rep.seed = opt.seed;
  rep.trials = opt.trials;
  for (size_t k = 0; k < jobs.size(); ++k) {
    Job &j = jobs[k];
    j.result.pass = j.result.maxRelErr <= j.result.tol;
    // An approximate claim that is not exact at epsilon 0 (the epsilon of a
    // normalization written out as Add(mean, eps) stays) is judged as before:
    // at the model's epsilon, to the approximate tolerance.
    if (!j.result.pass && j.result.relErrAtEpsilon >= 0 &&
        j.result.relErrAtEpsilon <= opt.approxTol) {
      j.result.maxRelErr = j.result.relErrAtEpsilon;
      j.result.tol = opt.approxTol;
      j.result.relErrAtEpsilon = -1;
      j.result.pass = true;
    }
    if (k < firstControl) {
      rep.claims.push_back(j.result);
    } else if (!rep.controlRan || (rep.control.pass && !j.result.pass)) {
      rep.controlRan = true;
      rep.control = j.result;
    }
  }
  return rep;
}

json toJson(const VerifyReport &r) {
  auto one = [](const ClaimResult &c) {
    json o{{"id", c.id},         {"kind", c.kind},     {"group", c.description},
                {"note", c.note},     {"exact", c.exact},   {"pass", c.pass},
                {"max_rel_err", c.maxRelErr}, {"tol", c.tol}, {"trials", c.trials}};
    if (c.relErrAtEpsilon >= 0) {
      o["checked_with_epsilon_0"] = true;
      o["rel_err_at_model_epsilon"] = c.relErrAtEpsilon;
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
  }
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
    line(c.pass ? "PASS" : "FAIL", c);
    pass += c.pass;
  }
  if (r.controlRan)
    line(r.control.pass ? "CONTROL-PASSED(bad)" : "CONTROL-FAILED(good)", r.control);
  os << fmt::format("verify: {}/{} claims pass, {} trials, seed {}{}: {}\n", pass,
                    r.claims.size(), r.trials, r.seed,
                    r.controlRan ? (r.control.pass ? ", negative control PASSED (verify is broken)"
                                                   : ", negative control fails as it must")
                                 : ", no negative control (no weights)",
                    r.ok() ? "OK" : "FAILED");
}

} // namespace symoc
