//===- Evaluator.cpp - Graph execution and shared kernel helpers ----------===//
#include "symoc/Evaluator/Evaluator.h"
#include "symoc/ModelIO/Attributes.h"
#include "symoc/ModelIO/ModelIO.h"

#include "Ops.h"

#include <algorithm>
#include <cmath>

namespace symoc {

// ---------------------------------------------------------------- OpContext

OpContext::OpContext(const onnx::NodeProto &n, int64_t o,
                     const std::vector<const Tensor *> &inputs,
                     const std::string &path)
    : node(n), opset(o), modelPath(path), inputs_(inputs) {}

const Tensor &OpContext::in(size_t i) const {
  if (!hasInput(i))
    fail("missing required input #" + std::to_string(i));
  return *inputs_[i];
}

double OpContext::scalar(size_t i, const char *what) const {
  const Tensor &t = in(i);
  if (t.data.size() != 1)
    fail(std::string(what) + " must have one element, got shape " + shapeString(t.dims));
  return t.data[0];
}

const onnx::AttributeProto *OpContext::attr(const std::string &name) const { return symoc::attr(node, name); }

int64_t OpContext::attrInt(const std::string &name, int64_t dflt) const { return symoc::attrInt(node, name, dflt); }

double OpContext::attrFloat(const std::string &name, double dflt) const {
  const auto *a = attr(name);
  return a ? double(a->f()) : dflt;
}

std::string OpContext::attrString(const std::string &name,
                                  const std::string &dflt) const {
  return symoc::attrString(node, name, dflt);
}

std::vector<int64_t> OpContext::attrInts(const std::string &name) const {
  return symoc::attrInts(node, name).value_or(std::vector<int64_t>{});
}

std::vector<double> OpContext::attrFloats(const std::string &name) const {
  const auto *a = attr(name);
  if (!a)
    return {};
  return {a->floats().begin(), a->floats().end()};
}

static std::string nodeLabel(const onnx::NodeProto &n) {
  std::string name = n.name();
  if (name.empty() && n.output_size())
    name = n.output(0);
  return "node '" + name + "' (" + n.op_type() + ")";
}

void OpContext::fail(const std::string &msg) const {
  throw EvalError(nodeLabel(node) + ": " + msg);
}

void OpContext::unsupported(const std::string &msg) const {
  throw UnsupportedError(nodeLabel(node) + ": not supported by the reference evaluator: " +
                         msg);
}

int64_t OpContext::axis(int64_t a, int64_t rank) const {
  int64_t r = a < 0 ? a + rank : a;
  if (r < 0 || r >= rank)
    fail("axis " + std::to_string(a) + " out of range for rank " + std::to_string(rank));
  return r;
}

// ---------------------------------------------------------------- helpers

std::vector<int64_t>
broadcastShapes(const OpContext &ctx, const std::vector<std::vector<int64_t>> &shapes) {
  size_t rank = 0;
  for (const auto &s : shapes)
    rank = std::max(rank, s.size());
  std::vector<int64_t> out(rank, 1);
  for (const auto &s : shapes) {
    size_t off = rank - s.size();
    for (size_t i = 0; i < s.size(); ++i) {
      int64_t d = s[i], &o = out[off + i];
      if (d == o || d == 1)
        continue;
      if (o == 1) {
        o = d;
        continue;
      }
      std::string all;
      for (const auto &x : shapes)
        all += (all.empty() ? "" : " and ") + shapeString(x);
      ctx.fail("shapes " + all + " do not broadcast");
    }
  }
  return out;
}

std::vector<int64_t> broadcastStrides(const std::vector<int64_t> &in,
                                      const std::vector<int64_t> &out) {
  std::vector<int64_t> s(out.size(), 0);
  std::vector<int64_t> inStrides = stridesOf(in);
  size_t off = out.size() - in.size();
  for (size_t i = 0; i < in.size(); ++i)
    s[off + i] = in[i] == 1 ? 0 : inStrides[i];
  return s;
}

Tensor broadcastMap(const OpContext &ctx, const std::vector<const Tensor *> &ins,
                    DType outType, const std::function<double(const double *)> &f) {
  return broadcastApply(ctx, ins, outType, f);
}

void castInPlace(Tensor &t, DType to) {
  for (double &v : t.data)
    v = castValue(v, to);
  t.dtype = to;
}

std::map<std::string, OpInfo> &opRegistry() {
  static std::map<std::string, OpInfo> r = [] {
    std::map<std::string, OpInfo> m;
    registerElementwiseOps(m);
    registerShapeOps(m);
    registerNNOps(m);
    registerReduceOps(m);
    registerExtraOps(m);
    return m;
  }();
  return r;
}

const std::set<std::string> &Evaluator::supportedOps() {
  static std::set<std::string> s = [] {
    std::set<std::string> out;
    for (const auto &kv : opRegistry())
      out.insert(kv.first);
    return out;
  }();
  return s;
}

std::vector<Tensor> runNode(const onnx::NodeProto &node, int64_t opset,
                            const std::vector<const Tensor *> &inputs,
                            const std::string &modelPath) {
  OpContext ctx(node, opset, inputs, modelPath);
  if (!node.domain().empty() && node.domain() != "ai.onnx")
    ctx.unsupported("op domain '" + node.domain() + "'");
  auto &reg = opRegistry();
  auto it = reg.find(node.op_type());
  if (it == reg.end())
    ctx.unsupported("op type " + node.op_type());
  const OpInfo &info = it->second;
  // An attribute the kernel does not know could change the meaning: refuse.
  for (const auto &a : node.attribute())
    if (!info.attrs.count(a.name()))
      ctx.unsupported("attribute '" + a.name() + "'");
  for (size_t i = 0; i < inputs.size(); ++i)
    if (inputs[i] && !isSupportedDType(inputs[i]->dtype))
      ctx.unsupported("input element type " + dtypeName(inputs[i]->dtype));
  if (info.floatOnly && ctx.hasInput(0) && !ctx.in(0).isFloat())
    ctx.unsupported("input element type " + dtypeName(ctx.in(0).dtype) +
                    " (only float/double)");
  std::vector<Tensor> outs = info.kernel(ctx);
  if (outs.size() < size_t(node.output_size())) {
    // Optional trailing outputs that the kernel does not produce must be unnamed.
    for (int i = int(outs.size()); i < node.output_size(); ++i)
      if (!node.output(i).empty())
        ctx.unsupported("output #" + std::to_string(i));
  }
  return outs;
}

// ---------------------------------------------------------------- Evaluator

Evaluator::Evaluator(const onnx::ModelProto &model, std::string modelPath)
    : model_(model), path_(std::move(modelPath)) {
  opset_ = opsetVersion(model, "");
  if (opset_ < 0)
    fail(path_, "model does not import the default ONNX opset");
  const auto &g = model.graph();
  for (const auto &t : g.initializer())
    ownInits_[t.name()] = tensorFromProto(t, path_);
  for (const auto &vi : g.input())
    if (!ownInits_.count(vi.name()))
      inputs_.push_back(&vi);
  // Constant nodes hold weights too in some exports; evaluate them once here
  // so that verify can override them like initializers.
  for (const auto &n : g.node()) {
    if (!Evaluator::supportedOps().count(n.op_type()) ||
        (!n.domain().empty() && n.domain() != "ai.onnx"))
      throw UnsupportedError(path_ + ": " + nodeLabel(n) +
                             ": op not supported by the reference evaluator");
    if (n.op_type() == "Constant" && n.output_size() == 1) {
      std::vector<const Tensor *> none;
      std::vector<Tensor> v = runNode(n, opset_, none, path_);
      ownInits_[n.output(0)] = std::move(v[0]);
      constantOutputs_.insert(n.output(0));
    }
  }
}

Evaluator::Evaluator(const onnx::ModelProto &model, std::string modelPath,
                     const Evaluator &weights)
    : model_(model), path_(std::move(modelPath)), inits_(weights.inits_) {
  opset_ = opsetVersion(model, "");
  if (opset_ < 0)
    fail(path_, "model does not import the default ONNX opset");
  for (const auto &vi : model.graph().input())
    if (!inits_->count(vi.name()))
      inputs_.push_back(&vi);
  for (const auto &n : model.graph().node()) {
    if (!Evaluator::supportedOps().count(n.op_type()) ||
        (!n.domain().empty() && n.domain() != "ai.onnx"))
      throw UnsupportedError(path_ + ": " + nodeLabel(n) +
                             ": op not supported by the reference evaluator");
    if (n.op_type() == "Constant" && n.output_size() == 1) {
      if (!inits_->count(n.output(0)))
        throw EvalError(path_ + ": " + nodeLabel(n) + ": not a Constant of the shared weights");
      constantOutputs_.insert(n.output(0));
    }
  }
}

std::map<std::string, Tensor>
Evaluator::run(const std::map<std::string, Tensor> &inputs,
               const std::map<std::string, Tensor> &overrides) const {
  return execute(inputs, overrides, nullptr, nullptr);
}

size_t EvalCache::bytes() const {
  size_t b = 0;
  for (const auto &kv : values)
    b += kv.second.data.size() * sizeof(double);
  return b;
}

EvalCache Evaluator::runAndKeep(const std::map<std::string, Tensor> &inputs) const {
  EvalCache c;
  c.inputs = inputs;
  execute(c.inputs, {}, nullptr, &c);
  return c;
}

std::map<std::string, Tensor>
Evaluator::rerun(const EvalCache &base, const std::map<std::string, Tensor> &overrides) const {
  return execute(base.inputs, overrides, &base, nullptr);
}

std::map<std::string, Tensor>
Evaluator::execute(const std::map<std::string, Tensor> &inputs,
                   const std::map<std::string, Tensor> &overrides, const EvalCache *base,
                   EvalCache *keep) const {
  const auto &g = model_.graph();
  std::map<std::string, const Tensor *> env;
  // With a base run, only nodes downstream of an override are recomputed.
  std::set<std::string> dirty;
  for (const auto &kv : overrides)
    dirty.insert(kv.first);
  auto lookup = [&](const std::string &x) -> const Tensor * {
    auto it = env.find(x);
    if (it != env.end())
      return it->second;
    if (base) {
      auto bt = base->values.find(x);
      if (bt != base->values.end())
        return &bt->second;
    }
    return nullptr;
  };
  std::map<std::string, Tensor> owned; // values computed by nodes
  for (const auto &kv : *inits_)
    env[kv.first] = &kv.second;
  for (const auto &kv : overrides) {
    auto it = inits_->find(kv.first);
    if (it == inits_->end())
      throw EvalError(path_ + ": override '" + kv.first +
                      "' is not an initializer or Constant of the model");
    if (it->second.dims != kv.second.dims)
      throw EvalError(path_ + ": override '" + kv.first + "' has shape " +
                      shapeString(kv.second.dims) + ", the initializer has " +
                      shapeString(it->second.dims));
    env[kv.first] = &kv.second;
  }
  for (const auto &vi : g.input()) {
    auto it = inputs.find(vi.name());
    if (it != inputs.end()) {
      // The declared element type must match what is fed (test data sometimes
      // stores bfloat16 as uint16, for example).
      if (vi.type().has_tensor_type() && vi.type().tensor_type().elem_type() != 0) {
        DType declared = vi.type().tensor_type().elem_type();
        if (!isSupportedDType(declared))
          throw UnsupportedError(path_ + ": graph input '" + vi.name() + "' has element type " +
                                 dtypeName(declared) +
                                 ", which the reference evaluator does not compute with");
        if (declared != it->second.dtype)
          throw EvalError(path_ + ": graph input '" + vi.name() + "' is declared " +
                          dtypeName(declared) + " but given " + dtypeName(it->second.dtype));
      }
      env[vi.name()] = &it->second;
      continue;
    }
    if (!inits_->count(vi.name()))
      throw EvalError(path_ + ": no value given for graph input '" + vi.name() + "'");
  }
  for (const auto &kv : inputs) {
    bool known = false;
    for (const auto &vi : g.input())
      known |= vi.name() == kv.first;
    if (!known)
      throw EvalError(path_ + ": '" + kv.first + "' is not a graph input");
  }

  // Last use of every value, so that intermediates can be freed early.
  std::map<std::string, int> lastUse;
  for (int i = 0; i < g.node_size(); ++i)
    for (const auto &x : g.node(i).input())
      lastUse[x] = i;
  std::set<std::string> outputs;
  for (const auto &o : g.output())
    outputs.insert(o.name());

  for (int i = 0; i < g.node_size(); ++i) {
    const auto &n = g.node(i);
    if (n.op_type() == "Constant" && n.output_size() == 1 &&
        constantOutputs_.count(n.output(0)))
      continue; // already in env (or overridden)
    if (base) {
      bool touched = false;
      for (const auto &x : n.input())
        touched |= dirty.count(x) > 0;
      if (!touched)
        continue; // its outputs are in the base run
      for (const auto &o : n.output())
        dirty.insert(o);
    }
    std::vector<const Tensor *> ins;
    for (const auto &x : n.input()) {
      if (x.empty()) {
        ins.push_back(nullptr);
        continue;
      }
      const Tensor *t = lookup(x);
      if (!t)
        throw EvalError(path_ + ": " + nodeLabel(n) + ": input '" + x +
                        "' is not computed before use");
      ins.push_back(t);
    }
    std::vector<Tensor> outs;
    try {
      outs = runNode(n, opset_, ins, path_);
    } catch (const UnsupportedError &e) {
      throw UnsupportedError(path_ + ": " + e.what());
    } catch (const Error &) {
      throw;
    } catch (const EvalError &e) {
      throw EvalError(path_ + ": " + e.what());
    }
    for (int j = 0; j < n.output_size() && j < int(outs.size()); ++j) {
      if (n.output(j).empty())
        continue;
      owned[n.output(j)] = std::move(outs[size_t(j)]);
      env[n.output(j)] = &owned[n.output(j)];
    }
    for (const auto &x : n.input()) {
      auto lu = lastUse.find(x);
      if (!keep && lu != lastUse.end() && lu->second == i && !outputs.count(x) &&
          owned.count(x)) {
        env.erase(x);
        owned.erase(x);
      }
    }
  }
  std::map<std::string, Tensor> result;
  for (const auto &o : g.output()) {
    const Tensor *t = lookup(o.name());
    if (!t)
      throw EvalError(path_ + ": graph output '" + o.name() + "' was not computed");
    result[o.name()] = *t;
  }
  if (keep)
    keep->values = std::move(owned);
  return result;
}

} // namespace symoc
