//===- ShapeFolding.h - Folding shape arithmetic in an ONNX graph ---------===//
#ifndef SYMOC_COMPILER_LIB_IMPORTER_SHAPEFOLDING_H
#define SYMOC_COMPILER_LIB_IMPORTER_SHAPEFOLDING_H

#include <onnx/onnx_pb.h>

#include <string>

namespace symoc {

/// Evaluates the small integer computations that produce shapes, axes and
/// split sizes (Shape -> Gather -> Unsqueeze -> Concat -> Reshape chains,
/// ConstantOfShape, Range, ...) from static shapes and integer constants,
/// replaces the folded nodes by int64 initializers, and re-runs shape
/// inference so that Reshape targets become static. Returns the number of
/// folded nodes.
int foldShapeArithmetic(onnx::ModelProto &model, const std::string &path);

/// One pass in node order that folds what it can and runs symoc's shape
/// functions (ShapeCompleter) on the rest, each feeding the other: a shape
/// completed makes a Shape node foldable, a folded target makes the next
/// Reshape's shape known. No ONNX inference. Returns the folded nodes and sets
/// `completed` to the values that gained shape.
int foldAndCompleteShapes(onnx::ModelProto &model, const std::string &path, int &completed);

} // namespace symoc

#endif
