//===- ShapeCompletion.h - Filling what ONNX shape inference left open ----===//
#ifndef SYMOC_COMPILER_LIB_IMPORTER_SHAPECOMPLETION_H
#define SYMOC_COMPILER_LIB_IMPORTER_SHAPECOMPLETION_H

#include "symoc/Importer/ShapeFunctions.h"

#include <map>
#include <set>
#include <string>
#include <vector>

namespace symoc {

/// The walk of completeShapes, one node at a time, so that the shape folder
/// can interleave it with its own evaluation in a single pass: a shape found
/// here makes a Shape node foldable, whose value makes the next Reshape's
/// shape known, and so on down a chain that alternating whole-graph passes
/// would cross one link per pass.
class ShapeCompleter {
public:
  ShapeCompleter(onnx::ModelProto &model, const std::string &path);

  /// Applies the node's shape function and writes what it adds to value_info;
  /// returns how many outputs gained information. Throws symoc::Error naming
  /// the node when the function contradicts a recorded shape.
  int visit(const onnx::NodeProto &n);

  /// What is known of a value (no rank if nothing).
  ShapeInfo shape(const std::string &name) const;

  /// A value the caller computed (a folded node's output).
  void setValue(const std::string &name, const std::vector<int64_t> &dims,
                const std::vector<int64_t> &data, int32_t elemType);

private:
  void checkTypes(const onnx::NodeProto &n) const;
  /// MatMul and Gemm with known contracted sizes that differ: an error naming the node.
  void checkInnerDims(const onnx::NodeProto &n) const;
  void record(onnx::ValueInfoProto &vi, bool writable);
  void readValue(const std::string &name, const onnx::TensorProto &t);
  int refine(const onnx::NodeProto &n, const std::string &name, const ShapeInfo &inferred);
  void write(const std::string &name, const ShapeInfo &cur, const ShapeInfo &merged);

  onnx::ModelProto &model;
  std::string path;
  int64_t opset;
  std::map<std::string, ShapeInfo> known;
  std::map<std::string, std::vector<int64_t>> values;
  std::map<std::string, onnx::ValueInfoProto *> entries;
  std::set<std::string> fixed; // graph inputs, initializers, folded values, non-tensors
};

} // namespace symoc

#endif
