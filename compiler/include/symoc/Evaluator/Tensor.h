//===- Tensor.h - Dense float64 tensors for the reference evaluator -*- C++ -*-===//
//
// The reference evaluator computes every value in float64, whatever its ONNX
// element type: float32 models are run in double precision so that a symmetry
// check can resolve relative errors far below float32 rounding. The ONNX element
// type is kept as a tag so that integer indices, bool masks and integer
// arithmetic (truncating division, wrap-around) behave as ONNX says.
//
//===----------------------------------------------------------------------===//
#ifndef SYMOC_EVALUATOR_TENSOR_H
#define SYMOC_EVALUATOR_TENSOR_H

#include <onnx/onnx_pb.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace symoc {

/// Failure while evaluating a graph (bad model, shape mismatch, ...). The
/// message is one line and names the node.
struct EvalError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// The evaluator deliberately refuses an op, attribute or element type it does
/// not implement (rather than computing something possibly wrong).
struct UnsupportedError : EvalError {
  using EvalError::EvalError;
};

/// ONNX element types (onnx::TensorProto::DataType values).
using DType = int32_t;

struct Tensor {
  std::vector<int64_t> dims;
  std::vector<double> data;
  DType dtype = onnx::TensorProto::FLOAT;

  Tensor() = default;
  Tensor(std::vector<int64_t> dims, std::vector<double> data,
         DType dtype = onnx::TensorProto::FLOAT);
  /// A zero-filled tensor of the given shape.
  static Tensor zeros(std::vector<int64_t> dims,
                      DType dtype = onnx::TensorProto::FLOAT);
  static Tensor scalar(double v, DType dtype = onnx::TensorProto::FLOAT);

  int64_t rank() const { return int64_t(dims.size()); }
  int64_t size() const { return int64_t(data.size()); }
  bool isFloat() const;
  bool isInteger() const; // signed or unsigned integers, not bool
  bool isBool() const { return dtype == onnx::TensorProto::BOOL; }
  /// The elements as int64 (for shapes, axes, indices); throws on non-integers.
  std::vector<int64_t> toInt64() const;
};

/// Number of elements of a shape (1 for a scalar).
int64_t numElements(const std::vector<int64_t> &dims);
/// Row-major strides of a shape.
std::vector<int64_t> stridesOf(const std::vector<int64_t> &dims);
/// "[2, 3, 4]".
std::string shapeString(const std::vector<int64_t> &dims);

/// Element types the evaluator computes with (float, double, integers, bool).
bool isSupportedDType(DType t);
bool isFloatDType(DType t);
bool isIntegerDType(DType t);
std::string dtypeName(DType t);

/// Rounds/truncates/wraps a double to what an element of type t can hold
/// (integers truncate toward zero and wrap; bool is v != 0; floats unchanged:
/// float32 values are kept in float64 on purpose).
double castValue(double v, DType t);

/// Reads a TensorProto (inline, raw or external data) into a Tensor. Throws
/// symoc::Error naming modelPath for unreadable data, UnsupportedError for
/// element types the evaluator does not compute with.
Tensor tensorFromProto(const onnx::TensorProto &t, const std::string &modelPath);

/// Writes a Tensor as a TensorProto of its dtype (for saving and tests).
onnx::TensorProto tensorToProto(const Tensor &t, const std::string &name = "");

} // namespace symoc

#endif // SYMOC_EVALUATOR_TENSOR_H
