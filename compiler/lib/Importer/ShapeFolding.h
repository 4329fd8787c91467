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

} // namespace symoc

#endif
