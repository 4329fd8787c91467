//===- WrittenOutEpsilon.cpp - epsilon of a norm spelled out of pieces ----===//
#include "WrittenOutEpsilon.h"

#include "symoc/ModelIO/ModelIO.h"

#include <algorithm>
#include <cmath>
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
  std::map<std::string, std::string> producer; // value -> op type
  std::map<std::string, std::vector<std::string>> users; // value -> user op types
  for (const auto &n : graph.node()) {
    for (const auto &o : n.output())
      producer[o] = n.op_type();
    for (const auto &i : n.input())
      users[i].push_back(n.op_type());
  }
  for (const auto &o : graph.output())
    users[o.name()].push_back("");
  int zeroed = 0;
  for (auto &n : *graph.mutable_node()) {
    if (n.op_type() != "Add" || n.input_size() != 2 || n.output_size() != 1)
      continue;
    const auto &u = users[n.output(0)];
    if (u.empty() ||
        !std::all_of(u.begin(), u.end(),
                     [](const std::string &t) { return t == "Sqrt" || t == "Pow"; }))
      continue;
    for (int k = 0; k < 2; ++k) {
      if (producer[n.input(k)] != "ReduceMean")
        continue;
      std::optional<double> eps = scalarValue(n.input(1 - k), graph, weights, modelPath);
      if (!eps || !std::isfinite(*eps) || *eps < 0 || *eps > kMaxWrittenOutEpsilon)
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
