//===- WrittenOutEpsilon.cpp - epsilon of a norm spelled out of pieces ----===//
#include "WrittenOutEpsilon.h"

#include "symoc/ModelIO/ModelIO.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <optional>

namespace symoc::vfy {

namespace {

constexpr double kMaxWrittenOutEpsilon = 1e-3;

/// The value of `name` when it is one float number held by an initializer of
/// `weights` or a Constant node of `graph`.
std::optional<double> scalarValue(const std::string &name, const onnx::GraphProto &graph,
                                  const onnx::GraphProto &weights,
                                  const std::string &modelPath) {
  auto read = [&](const onnx::TensorProto &t) -> std::optional<double> {
    if (t.data_type() != onnx::TensorProto::FLOAT &&
        t.data_type() != onnx::TensorProto::DOUBLE &&
        t.data_type() != onnx::TensorProto::FLOAT16 &&
        t.data_type() != onnx::TensorProto::BFLOAT16)
      return std::nullopt;
    // At most rank 1: the Add then keeps the mean's shape.
    if (numElements(t) != 1 || t.dims_size() > 1)
      return std::nullopt;
    std::vector<double> v = tensorToDouble(t, modelPath);
    if (v.size() != 1)
      return std::nullopt;
    return v[0];
  };
  for (const auto &t : weights.initializer())
    if (t.name() == name)
      return read(t);
  for (const auto &n : graph.node())
    if (n.op_type() == "Constant" && n.output_size() == 1 && n.output(0) == name) {
      for (const auto &a : n.attribute())
        if (a.name() == "value" && a.has_t())
          return read(a.t());
      return std::nullopt;
    }
  return std::nullopt;
}

} // namespace

int zeroWrittenOutEpsilons(onnx::GraphProto &graph, const onnx::GraphProto &weights,
                           const std::string &modelPath) {
  // Identity nodes are looked through on both sides of the Add (the analysis drops them
  // before it recomposes the norm, so it claims through them: an Identity between the
  // ReduceMean and the Add, or between the Add and the Sqrt, must not keep the epsilon).
  std::map<std::string, const onnx::NodeProto *> producer;          // value -> its node
  std::map<std::string, std::vector<const onnx::NodeProto *>> users; // value -> readers
  std::map<std::string, bool> isOutput;
  for (const auto &n : graph.node()) {
    for (const auto &o : n.output())
      producer[o] = &n;
    for (const auto &i : n.input())
      users[i].push_back(&n);
  }
  for (const auto &o : graph.output())
    isOutput[o.name()] = true;
  auto isIdentity = [](const onnx::NodeProto *n) {
    return n && n->op_type() == "Identity" && n->input_size() == 1 && n->output_size() == 1;
  };
  auto sourceOpType = [&](std::string v) {
    for (int hops = 0; hops < 64; ++hops) {
      auto it = producer.find(v);
      if (it == producer.end())
        return std::string();
      if (!isIdentity(it->second))
        return it->second->op_type();
      v = it->second->input(0);
    }
    return std::string();
  };
  // Every reader of v (through Identity nodes) is a Sqrt or a Pow, and v is no output.
  std::function<bool(const std::string &, int)> onlyRoots = [&](const std::string &v, int depth) {
    const auto &u = users[v];
    if (depth > 64 || u.empty() || isOutput[v])
      return false;
    return std::all_of(u.begin(), u.end(), [&](const onnx::NodeProto *r) {
      if (isIdentity(r))
        return onlyRoots(r->output(0), depth + 1);
      return r->op_type() == "Sqrt" || r->op_type() == "Pow";
    });
  };
  int zeroed = 0;
  for (auto &n : *graph.mutable_node()) {
    if (n.op_type() != "Add" || n.input_size() != 2 || n.output_size() != 1)
      continue;
    if (!onlyRoots(n.output(0), 0))
      continue;
    for (int k = 0; k < 2; ++k) {
      if (sourceOpType(n.input(k)) != "ReduceMean")
        continue;
      std::optional<double> eps = scalarValue(n.input(1 - k), graph, weights, modelPath);
      if (!eps || !std::isfinite(*eps) || *eps < 0 || *eps > kMaxWrittenOutEpsilon * (1 + 1e-6)) // float32 1e-3 too
        continue;
      // mean + 0 = mean: one number broadcast onto the mean keeps its shape.
      std::string mean = n.input(k);
      n.set_op_type("Identity");
      n.clear_input();
      n.add_input(mean);
      n.clear_attribute();
      ++zeroed;
      break;
    }
  }
  return zeroed;
}

} // namespace symoc::vfy
