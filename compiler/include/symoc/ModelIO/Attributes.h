//===- Attributes.h - Reading an ONNX node's attributes ---------*- C++ -*-===//
//
// One reader of NodeProto attributes for the importer, the opset adapter and
// the evaluator (each had its own copy): look up by name, a default when absent.
//
//===----------------------------------------------------------------------===//
#pragma once

#include <onnx/onnx_pb.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace symoc {

inline const onnx::AttributeProto *attr(const onnx::NodeProto &n, const std::string &name) {
  for (const auto &a : n.attribute())
    if (a.name() == name)
      return &a;
  return nullptr;
}

inline int64_t attrInt(const onnx::NodeProto &n, const std::string &name, int64_t dflt) {
  const auto *a = attr(n, name);
  return a ? a->i() : dflt;
}

inline float attrFloat(const onnx::NodeProto &n, const std::string &name, float dflt) {
  const auto *a = attr(n, name);
  return a ? a->f() : dflt;
}

inline std::string attrString(const onnx::NodeProto &n, const std::string &name, const std::string &dflt) {
  const auto *a = attr(n, name);
  return a ? a->s() : dflt;
}

/// The INTS attribute, or nullopt when the node does not have it.
inline std::optional<std::vector<int64_t>> attrInts(const onnx::NodeProto &n, const std::string &name) {
  const auto *a = attr(n, name);
  if (!a)
    return std::nullopt;
  return std::vector<int64_t>(a->ints().begin(), a->ints().end());
}

} // namespace symoc
