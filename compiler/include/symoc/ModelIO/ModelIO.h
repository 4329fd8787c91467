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
#include <utility>
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

/// Floating point tensor payloads of at least this many bytes are not read by
/// loadModel (see "Deferred tensors" below).
constexpr uint64_t kDeferBytes = 4096;

/// Keys of the marker of a deferred tensor. Models that use a key starting with
/// "symoc_" in external_data are refused, so the marker cannot be forged.
inline constexpr const char *kDeferredKey = "symoc_self";
inline constexpr const char *kDeferredFileKey = "symoc_file";
/// Added by the opset adapter to a deferred or external 2-D tensor whose bytes
/// hold its transpose (a torch weight the exporter stored transposed):
/// tensorToDouble transposes them back on reading.
inline constexpr const char *kTransposedKey = "symoc_transposed";

/// Loads a binary .onnx model, or ONNX's textual syntax (files ending in .onnxtxt
/// or .txt, or whose first non-blank character is '<'). Checks that the graph is
/// well formed: every node input is defined before use, opset domains are known,
/// external data locations are safe, inline data sizes match shapes. Does not
/// read weight bytes.
///
/// Deferred tensors: a binary model is not parsed whole. A scan of its protobuf
/// wire format (the file is memory-mapped; only the pages holding graph
/// structure are touched) finds floating point tensors (float, double, float16,
/// bfloat16) of graph initializers and node tensor attributes, subgraphs
/// included, whose payload is one raw_data field, or one packed float_data /
/// double_data field of a float / double tensor, of at least kDeferBytes bytes.
/// Such a tensor comes back without its payload, marked as
///   data_location: EXTERNAL
///   external_data: location = "", offset = O, length = L,
///                  symoc_self = FIELD, symoc_file = F
/// where [O, O+L) is the payload's byte range in model file F (canonical path)
/// and FIELD the field it came from ("raw_data", "float_data" or
/// "double_data"; the bytes of packed float_data / double_data are the same
/// little-endian layout as raw_data). isExternal() is false for it:
/// logically the data is inline, and tensorToDouble() reads it on demand with
/// pread. Integer tensors are never deferred (shapes, axes and indices are
/// read during import and by ONNX shape inference).
onnx::ModelProto loadModel(const std::string &path);

/// True when the tensor is a deferred inline tensor (see loadModel).
bool isDeferred(const onnx::TensorProto &t);

/// Number of deferred tensors and their payload bytes in a loaded model.
std::pair<int64_t, uint64_t> deferredStats(const onnx::ModelProto &model);

/// Parses a model in ONNX's textual syntax. `path` is used in error messages.
onnx::ModelProto parseTextModel(const std::string &text, const std::string &path);

/// True when the tensor's bytes live in an external file (not for deferred
/// tensors, whose bytes are in the model file).
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
/// fields, raw_data, deferred or external data; files are read with pread,
/// never whole).
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
