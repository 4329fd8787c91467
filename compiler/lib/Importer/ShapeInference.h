//===- ShapeInference.h - ONNX shape inference, crash-proof ---------------===//
#ifndef SYMOC_COMPILER_LIB_IMPORTER_SHAPEINFERENCE_H
#define SYMOC_COMPILER_LIB_IMPORTER_SHAPEINFERENCE_H

#include <onnx/onnx_pb.h>

#include <string>

namespace symoc {

/// Runs ONNX shape inference with data propagation; failures of individual
/// nodes leave their outputs unknown. Returns an error text or "".
///
/// ONNX 1.12's inference can crash on a malformed graph (a segfault inside
/// ShapeInferenceImplBase::process). It therefore runs in a child process
/// that sends back the inferred value_info and outputs; when the child dies,
/// the node it died on is found by inferring prefixes of the graph, and a
/// one-line symoc::Error("<path>: ...") names it.
std::string inferShapes(onnx::ModelProto &model, const std::string &path);

} // namespace symoc

#endif
