//===- Tensor.cpp - Dense float64 tensors ---------------------------------===//
#include "symoc/Evaluator/Tensor.h"
#include "symoc/ModelIO/ModelIO.h"

#include <cmath>
#include <cstring>

namespace symoc {

using TP = onnx::TensorProto;

Tensor::Tensor(std::vector<int64_t> d, std::vector<double> v, DType t)
    : dims(std::move(d)), data(std::move(v)), dtype(t) {
  if (int64_t(data.size()) != numElements(dims))
    throw EvalError("internal: tensor of shape " + shapeString(dims) + " given " +
                    std::to_string(data.size()) + " elements");
}

Tensor Tensor::zeros(std::vector<int64_t> dims, DType dtype) {
  // Shapes computed from bad attributes or inputs end here: refuse them
  // before they become allocation sizes.
  for (int64_t d : dims)
    if (d < 0)
      throw EvalError("negative dimension in result shape " + shapeString(dims));
  if (numElements(dims) > (int64_t(1) << 34))
    throw EvalError("result shape " + shapeString(dims) + " is too large to evaluate");
  std::vector<double> v(size_t(numElements(dims)), 0.0);
  return Tensor(std::move(dims), std::move(v), dtype);
}

Tensor Tensor::scalar(double v, DType dtype) { return Tensor({}, {v}, dtype); }

bool Tensor::isFloat() const { return isFloatDType(dtype); }
bool Tensor::isInteger() const { return isIntegerDType(dtype); }

std::vector<int64_t> Tensor::toInt64() const {
  std::vector<int64_t> out(data.size());
  for (size_t i = 0; i < data.size(); ++i) {
    double v = data[i];
    if (std::isnan(v) || v != std::floor(v))
      throw EvalError("expected integer values, found " + std::to_string(v));
    // Clamp the int64 sentinels (INT64_MAX as "to the end" in Slice) that do
    // not round-trip through double.
    if (v >= 9.2e18)
      out[i] = INT64_MAX;
    else if (v <= -9.2e18)
      out[i] = INT64_MIN;
    else
      out[i] = int64_t(v);
  }
  return out;
}

int64_t numElements(const std::vector<int64_t> &dims) {
  int64_t n = 1;
  for (int64_t d : dims)
    n *= d;
  return n;
}

std::vector<int64_t> stridesOf(const std::vector<int64_t> &dims) {
  std::vector<int64_t> s(dims.size(), 1);
  for (int64_t i = int64_t(dims.size()) - 2; i >= 0; --i)
    s[size_t(i)] = s[size_t(i) + 1] * dims[size_t(i) + 1];
  return s;
}

std::string shapeString(const std::vector<int64_t> &dims) {
  std::string s = "[";
  for (size_t i = 0; i < dims.size(); ++i)
    s += (i ? ", " : "") + std::to_string(dims[i]);
  return s + "]";
}

bool isFloatDType(DType t) { return t == TP::FLOAT || t == TP::DOUBLE; }

bool isIntegerDType(DType t) {
  switch (t) {
  case TP::INT8: case TP::INT16: case TP::INT32: case TP::INT64:
  case TP::UINT8: case TP::UINT16: case TP::UINT32: case TP::UINT64:
    return true;
  default:
    return false;
  }
}

bool isSupportedDType(DType t) {
  return isFloatDType(t) || isIntegerDType(t) || t == TP::BOOL;
}

std::string dtypeName(DType t) { return dataTypeName(t); }

// Wraps an integer into the range of a narrow type (two's complement).
template <typename T> static double wrap(double v) {
  // Go through int64 / uint64 so that the narrowing wraps as in C.
  if (v < 0)
    return double(T(int64_t(v)));
  return double(T(uint64_t(v)));
}

double castValue(double v, DType t) {
  switch (t) {
  case TP::FLOAT: case TP::DOUBLE:
    return v;
  case TP::BOOL:
    return v != 0 ? 1.0 : 0.0;
  default:
    break;
  }
  if (std::isnan(v) || std::isinf(v))
    return 0.0; // undefined in ONNX; pick something deterministic
  v = std::trunc(v);
  switch (t) {
  case TP::INT8: return wrap<int8_t>(v);
  case TP::INT16: return wrap<int16_t>(v);
  case TP::INT32: return wrap<int32_t>(v);
  case TP::UINT8: return wrap<uint8_t>(v);
  case TP::UINT16: return wrap<uint16_t>(v);
  case TP::UINT32: return wrap<uint32_t>(v);
  default: return v; // int64 / uint64 beyond 2^53 are not exact in double anyway
  }
}

Tensor tensorFromProto(const onnx::TensorProto &t, const std::string &modelPath) {
  if (!isSupportedDType(t.data_type()))
    throw UnsupportedError(modelPath + ": tensor '" + t.name() + "' has element type " +
                           dataTypeName(t.data_type()) +
                           ", which the reference evaluator does not compute with");
  std::vector<int64_t> dims(t.dims().begin(), t.dims().end());
  for (int64_t d : dims)
    if (d < 0)
      fail(modelPath, "tensor '" + t.name() + "' has a negative dimension");
  std::vector<double> data = tensorToDouble(t, modelPath);
  if (int64_t(data.size()) != numElements(dims))
    fail(modelPath, "tensor '" + t.name() + "' has " + std::to_string(data.size()) +
                        " elements, its shape " + shapeString(dims) + " needs " +
                        std::to_string(numElements(dims)));
  return Tensor(std::move(dims), std::move(data), t.data_type());
}

onnx::TensorProto tensorToProto(const Tensor &t, const std::string &name) {
  onnx::TensorProto p;
  p.set_name(name);
  p.set_data_type(t.dtype);
  for (int64_t d : t.dims)
    p.add_dims(d);
  for (double v : t.data) {
    switch (t.dtype) {
    case TP::FLOAT: p.add_float_data(float(v)); break;
    case TP::DOUBLE: p.add_double_data(v); break;
    case TP::INT64: p.add_int64_data(int64_t(v)); break;
    case TP::UINT32: case TP::UINT64: p.add_uint64_data(uint64_t(v)); break;
    default: p.add_int32_data(int32_t(v)); break; // int8..int32, uint8, uint16, bool
    }
  }
  return p;
}

} // namespace symoc
