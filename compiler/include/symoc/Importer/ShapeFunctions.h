//===- ShapeFunctions.h - symoc's own per-op static shape functions --*- C++ -*-===//
//
// ONNX 1.12's shape inference loses a rank wherever an input it needs is not a
// literal initializer (a Pad whose pads are computed, a Slice of a computed
// tensor) and everything downstream then has no rank. symoc keeps its own
// table of shape functions, one per op type, and runs it after ONNX's
// inference: a rule fills ranks and dims that are unknown and never overrides
// a known one; a rule that contradicts a known shape is an error naming the
// node.
//
//===----------------------------------------------------------------------===//
#ifndef SYMOC_IMPORTER_SHAPEFUNCTIONS_H
#define SYMOC_IMPORTER_SHAPEFUNCTIONS_H

#include <onnx/onnx_pb.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace symoc {

constexpr int64_t kUnknownDim = -1;

/// What is known of one tensor: its element type (0: unknown) and its shape,
/// either no rank or a rank with each dim static (>= 0) or kUnknownDim.
struct ShapeInfo {
  int32_t elemType = 0;
  bool ranked = false;
  std::vector<int64_t> dims;

  static ShapeInfo unranked(int32_t elemType = 0) { return {elemType, false, {}}; }
  static ShapeInfo of(std::vector<int64_t> dims, int32_t elemType = 0) {
    return {elemType, true, std::move(dims)};
  }
  int64_t rank() const { return ranked ? int64_t(dims.size()) : -1; }
  bool isStatic() const;
  bool operator==(const ShapeInfo &o) const {
    return elemType == o.elemType && ranked == o.ranked && dims == o.dims;
  }
  std::string str() const; // "[2,?,4]", "[*]"
};

/// One node as its shape rule sees it: the shapes of its inputs and the
/// values of its small integer inputs known at import time (initializers and
/// Constant nodes up to 4096 elements, flattened).
struct ShapeQuery {
  const onnx::NodeProto &node;
  int64_t opset = 17;
  std::vector<ShapeInfo> inputs;                           // absent input: unranked
  std::vector<std::optional<std::vector<int64_t>>> values; // per input

  bool has(int k) const { return k < node.input_size() && !node.input(k).empty(); }
  const ShapeInfo &input(int k) const;
  const std::vector<int64_t> *value(int k) const;
  const onnx::AttributeProto *attr(const std::string &name) const;
  int64_t attrInt(const std::string &name, int64_t dflt) const;
  std::optional<std::vector<int64_t>> attrInts(const std::string &name) const;
};

/// A shape function: one ShapeInfo per output of the node (parts it cannot
/// work out stay unknown; fewer entries leave the remaining outputs alone).
using ShapeFunction = std::vector<ShapeInfo> (*)(const ShapeQuery &);

/// The rule of a default-domain op type, or nullptr.
ShapeFunction findShapeFunction(const std::string &opType);

/// The op types that have a rule (for documentation and tests).
std::vector<std::string> shapeFunctionOpTypes();

/// Refines `known` by `inferred`: unknown rank, dims and element type are
/// filled, known ones kept. nullopt, with `conflict` set, when they disagree
/// (another rank, another static dim, another element type).
std::optional<ShapeInfo> mergeShapes(const ShapeInfo &known, const ShapeInfo &inferred,
                                     std::string &conflict);

/// One axis of a Slice: first index, step and number of elements taken.
struct SliceAxis {
  int64_t first = 0, step = 1, count = 0;
};

/// ONNX Slice semantics on an axis of size `dim` (negative start/end count
/// from the end, then clamp; step != 0).
SliceAxis sliceAxis(int64_t dim, int64_t start, int64_t end, int64_t step);

/// The slice of every axis of a tensor of static `dims` (axes not named are
/// taken whole). nullopt when starts/ends/axes/steps are inconsistent.
std::optional<std::vector<SliceAxis>>
resolveSlice(const std::vector<int64_t> &dims, const std::vector<int64_t> &starts,
             const std::vector<int64_t> &ends, const std::vector<int64_t> *axes,
             const std::vector<int64_t> *steps);

/// Runs the rules over the graph in node order and writes what they add to
/// value_info (or the graph outputs). Throws symoc::Error("<path>: node 'N'
/// (Op): ...") when a rule contradicts a known shape. Returns how many values
/// gained a rank, a dim or an element type.
int completeShapes(onnx::ModelProto &model, const std::string &path);

} // namespace symoc

#endif
