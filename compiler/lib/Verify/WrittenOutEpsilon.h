//===- WrittenOutEpsilon.h - epsilon of a norm spelled out of pieces ------===//
#ifndef SYMOC_COMPILER_LIB_VERIFY_WRITTENOUTEPSILON_H
#define SYMOC_COMPILER_LIB_VERIFY_WRITTENOUTEPSILON_H

#include <onnx/onnx_pb.h>

#include <string>

namespace symoc::vfy {

/// The epsilon of a normalization written out of pieces (exporters before
/// opset 23 spell RMSNorm as x / Sqrt(ReduceMean(x^2) + eps)) is a constant
/// operand of an Add, not an attribute. In `graph`, each
///   Add(ReduceMean(...), c) used only by Sqrt or Pow
/// (Identity nodes looked through on both sides) with c one finite number in
/// [0, kMaxWrittenOutEpsilon] becomes Identity(ReduceMean(...)), i.e. epsilon 0.
/// The bound is the analysis's (an epsilon it claims a uniform rescale absorbed
/// by): a larger constant is part of the function, not an epsilon, and stays.
/// Constants are read from `weights` (initializers) and Constant nodes.
/// Returns how many were zeroed.
int zeroWrittenOutEpsilons(onnx::GraphProto &graph, const onnx::GraphProto &weights,
                           const std::string &modelPath);

} // namespace symoc::vfy

#endif
