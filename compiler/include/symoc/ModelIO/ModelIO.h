//===- ModelIO.h - Loading ONNX models and tensors safely ------*- C++ -*-===//
//
// One place that reads ONNX files: binary or textual models, initializer data
// (inline or external), with the checks every reader needs (size limits,
// external paths confined to the model's folder). Every failure is a
// symoc::Error whose message is one line "FILE: problem".
//
//===----------------------------------------------------------------------===//
#ifndef SYMOC_MODELIO_MODELIO_H
#define SYMOC_MODELIO_MODELIO_H

#include <onnx/onnx_pb.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace symoc {

/// A user-facing error. The message is a single line that names the file.
struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// Throws Error("<path>: <message>").
[[noreturn]] void fail(const std::string &path, const std::string &message);

/// Protobuf's hard limit for one message: larger models must keep weights as
/// external data.
constexpr uint64_t kMaxModelBytes = (uint64_t(1) << 31) - 1;

/// Loads a binary .onnx model, or ONNX's textual syntax (files ending in .onnxtxt
/// or .txt, or whose first non-blank character is '<'). Checks that the graph is
/// well formed: every node input is defined before use, opset domains are known,
/// external data locations are safe. Does not read weight bytes.
onnx::ModelProto loadModel(const std::string &path);

/// Parses a model in ONNX's textual syntax. `path` is used in error messages.
onnx::ModelProto parseTextModel(const std::string &text, const std::string &path);

/// True when the tensor's bytes live in an external file.
bool isExternal(const onnx::TensorProto &t);

/// Where an external tensor's data lives: validated to be a relative path inside
/// the model's folder (no absolute path, no "..", no symlink escaping it) that
/// exists and is large enough for offset + length.
std::string externalDataPath(const std::string &modelPath,
                             const onnx::TensorProto &t);

/// The (offset, length) of an external tensor, length -1 when absent.
std::pair<int64_t, int64_t> externalDataRange(const onnx::TensorProto &t);

/// Number of elements from dims (1 for a scalar).
int64_t numElements(const onnx::TensorProto &t);

/// Reads a tensor of any numeric or bool type into doubles (inline typed
/// fields, raw_data, or external data).
std::vector<double> tensorToDouble(const onnx::TensorProto &t,
                                   const std::string &modelPath);

/// Reads an integer tensor (int8..int64, uint8..uint64, bool) exactly.
std::vector<int64_t> tensorToInt64(const onnx::TensorProto &t,
                                   const std::string &modelPath);

/// Name of an ONNX TensorProto data type ("float", "int64", ...).
std::string dataTypeName(int32_t dataType);

/// The model's opset version for a domain ("" and "ai.onnx" are the same);
/// -1 when the model does not import it.
int64_t opsetVersion(const onnx::ModelProto &model, const std::string &domain);

} // namespace symoc

#endif // SYMOC_MODELIO_MODELIO_H
