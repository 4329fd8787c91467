//===- Context.cpp - Constants, shapes and node building for rewrites -----===//

#include "Rewrite.h"

#include "symoc/ModelIO/ModelIO.h"

#include <algorithm>
#include <cstring>

namespace symoc {
namespace adapter {

Context::Context(onnx::ModelProto &model, const std::string &path)
    : model_(model), graph_(*model.mutable_graph()), path_(path) {
  index();
}

void Context::index() {
  inits_.clear();
  constNodes_.clear();
  infos_.clear();
  for (const auto &t : graph_.initializer()) {
    inits_[t.name()] = &t;
    names_.insert(t.name());
  }
  for (const auto &vi : graph_.input()) {
    infos_[vi.name()] = &vi;
    names_.insert(vi.name());
  }
  for (const auto &vi : graph_.value_info())
    infos_[vi.name()] = &vi;
  for (const auto &vi : graph_.output())
    infos_[vi.name()] = &vi;
  for (const auto &n : graph_.node()) {
    for (const auto &o : n.output())
      names_.insert(o);
    if (n.op_type() == "Constant" && (n.domain().empty() || n.domain() == "ai.onnx") &&
        n.output_size() == 1)
      constNodes_[n.output(0)] = &n;
  }
}

void Context::fail(const onnx::NodeProto &n, int64_t version,
                   const std::string &problem) const {
  symoc::fail(path_, "node '" + nodeName(n) + "' (" + n.op_type() + "-" +
                         std::to_string(version) + "): " + problem);
}

static bool isInt(int32_t dt) {
  return dt == onnx::TensorProto::INT64 || dt == onnx::TensorProto::INT32 ||
         dt == onnx::TensorProto::INT16 || dt == onnx::TensorProto::INT8 ||
         dt == onnx::TensorProto::UINT8 || dt == onnx::TensorProto::UINT16 ||
         dt == onnx::TensorProto::UINT32 || dt == onnx::TensorProto::UINT64;
}

std::optional<std::vector<int64_t>> Context::ints(const std::string &name) const {
  if (auto it = inits_.find(name); it != inits_.end()) {
    if (!isInt(it->second->data_type()) || numElements(*it->second) > 4096)
      return std::nullopt;
    return tensorToInt64(*it->second, path_);
  }
  if (auto it = constNodes_.find(name); it != constNodes_.end()) {
    for (const auto &a : it->second->attribute()) {
      if (a.name() == "value" && isInt(a.t().data_type()) && numElements(a.t()) <= 4096)
        return tensorToInt64(a.t(), path_);
      if (a.name() == "value_int")
        return std::vector<int64_t>{a.i()};
      if (a.name() == "value_ints")
        return std::vector<int64_t>(a.ints().begin(), a.ints().end());
    }
  }
  return std::nullopt;
}

const onnx::TensorProto *Context::constTensor(const std::string &name,
                                              std::optional<std::vector<double>> &list) const {
  const onnx::TensorProto *t = nullptr;
  if (auto it = inits_.find(name); it != inits_.end())
    t = it->second;
  if (auto it = constNodes_.find(name); it != constNodes_.end())
    for (const auto &a : it->second->attribute()) {
      if (a.name() == "value")
        t = &a.t();
      if (a.name() == "value_float")
        list = std::vector<double>{a.f()};
      if (a.name() == "value_floats")
        list = std::vector<double>(a.floats().begin(), a.floats().end());
    }
  return t;
}

std::optional<std::vector<double>> Context::floats(const std::string &name) const {
  std::optional<std::vector<double>> list;
  const onnx::TensorProto *t = constTensor(name, list);
  if (list)
    return list;
  if (!t || isInt(t->data_type()) || t->data_type() == onnx::TensorProto::BOOL)
    return std::nullopt;
  return tensorToDouble(*t, path_);
}

std::optional<double> Context::scalar(const std::string &name) const {
  std::optional<std::vector<double>> list;
  const onnx::TensorProto *t = constTensor(name, list);
  if (list)
    return list->size() == 1 ? std::optional<double>(list->front()) : std::nullopt;
  if (!t || numElements(*t) != 1)
    return std::nullopt;
  return tensorToDouble(*t, path_).at(0);
}

std::optional<std::vector<int64_t>> Context::shape(const std::string &name) const {
  if (auto it = inits_.find(name); it != inits_.end())
    return std::vector<int64_t>(it->second->dims().begin(), it->second->dims().end());
  if (auto it = constNodes_.find(name); it != constNodes_.end())
    for (const auto &a : it->second->attribute())
      if (a.name() == "value")
        return std::vector<int64_t>(a.t().dims().begin(), a.t().dims().end());
  auto it = infos_.find(name);
  if (it == infos_.end() || !it->second->type().has_tensor_type() ||
      !it->second->type().tensor_type().has_shape())
    return std::nullopt;
  std::vector<int64_t> dims;
  for (const auto &d : it->second->type().tensor_type().shape().dim()) {
    if (!d.has_dim_value())
      return std::nullopt;
    dims.push_back(d.dim_value());
  }
  return dims;
}

std::optional<std::vector<int64_t>> Context::partialShape(const std::string &name) const {
  if (auto s = shape(name))
    return s;
  auto it = infos_.find(name);
  if (it == infos_.end() || !it->second->type().has_tensor_type() ||
      !it->second->type().tensor_type().has_shape())
    return std::nullopt;
  std::vector<int64_t> dims;
  for (const auto &d : it->second->type().tensor_type().shape().dim())
    dims.push_back(d.has_dim_value() ? d.dim_value() : -1);
  return dims;
}

std::optional<std::vector<int64_t>> Context::shapeButBatch(const std::string &name) const {
  auto dims = partialShape(name);
  if (!dims || dims->empty() || std::any_of(dims->begin() + 1, dims->end(), [](int64_t d) { return d < 0; }))
    return std::nullopt;
  return dims;
}

std::optional<int64_t> Context::rank(const std::string &name) const {
  if (auto s = shape(name))
    return int64_t(s->size());
  auto it = infos_.find(name);
  if (it == infos_.end() || !it->second->type().has_tensor_type() ||
      !it->second->type().tensor_type().has_shape())
    return std::nullopt;
  return it->second->type().tensor_type().shape().dim_size();
}

int32_t Context::elemType(const std::string &name) const {
  return knownElemType(name).value_or(onnx::TensorProto::FLOAT);
}

std::optional<int32_t> Context::knownElemType(const std::string &name) const {
  if (auto it = inits_.find(name); it != inits_.end())
    return it->second->data_type();
  if (auto it = constNodes_.find(name); it != constNodes_.end())
    for (const auto &a : it->second->attribute())
      if (a.name() == "value")
        return a.t().data_type();
  auto it = infos_.find(name);
  if (it != infos_.end() && it->second->type().has_tensor_type() &&
      it->second->type().tensor_type().elem_type())
    return it->second->type().tensor_type().elem_type();
  return std::nullopt;
}

std::string Context::fresh(const std::string &hint) {
  std::string base = "symoc_" + hint;
  for (;;) {
    std::string n = base + "_" + std::to_string(counter_++);
    if (names_.insert(n).second)
      return n;
  }
}

std::string Context::addInts(const std::vector<int64_t> &v, const std::vector<int64_t> &dims,
                             const std::string &hint) {
  onnx::TensorProto *t = graph_.add_initializer();
  t->set_name(fresh(hint));
  t->set_data_type(onnx::TensorProto::INT64);
  for (auto d : dims)
    t->add_dims(d);
  for (auto x : v)
    t->add_int64_data(x);
  return t->name();
}

/// IEEE half bits of f, rounded to nearest even (inf and NaN kept).
static uint16_t toHalf(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  uint32_t sign = (x >> 16) & 0x8000, exp = (x >> 23) & 0xff, mant = x & 0x7fffff;
  if (exp == 0xff)
    return uint16_t(sign | 0x7c00 | (mant ? 0x200 : 0));
  int e = int(exp) - 127 + 15;
  if (e >= 31)
    return uint16_t(sign | 0x7c00);
  if (e <= 0) {
    if (e < -10)
      return uint16_t(sign);
    mant |= 0x800000;
    uint32_t shift = uint32_t(14 - e), half = mant >> shift, rest = mant & ((1u << shift) - 1);
    uint32_t mid = 1u << (shift - 1);
    if (rest > mid || (rest == mid && (half & 1)))
      ++half;
    return uint16_t(sign | half);
  }
  uint32_t half = (uint32_t(e) << 10) | (mant >> 13), rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest == 0x1000 && (half & 1)))
    ++half;
  return uint16_t(sign | half);
}

/// bfloat16 bits of f, rounded to nearest even.
static uint16_t toBFloat16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  if ((x & 0x7fffffff) > 0x7f800000)
    return uint16_t((x >> 16) | 0x40);
  return uint16_t((x + 0x7fff + ((x >> 16) & 1)) >> 16);
}

std::string Context::addFloat(const std::vector<float> &v, const std::vector<int64_t> &dims,
                              const std::string &hint, int32_t dtype, bool constant) {
  onnx::TensorProto *t = graph_.add_initializer();
  t->set_name(fresh(hint));
  for (auto d : dims)
    t->add_dims(d);
  switch (dtype) {
  case onnx::TensorProto::DOUBLE:
    t->set_data_type(dtype);
    for (auto x : v)
      t->add_double_data(x);
    break;
  case onnx::TensorProto::FLOAT16: case onnx::TensorProto::BFLOAT16:
    t->set_data_type(dtype);
    for (auto x : v)
      t->add_int32_data(dtype == onnx::TensorProto::FLOAT16 ? toHalf(x) : toBFloat16(x));
    break;
  default: // float, and anything else the caller did not check
    t->set_data_type(onnx::TensorProto::FLOAT);
    for (auto x : v)
      t->add_float_data(x);
  }
  if (constant)
    constants.insert(t->name());
  return t->name();
}

onnx::NodeProto &Context::node(std::vector<onnx::NodeProto> &out, const std::string &op,
                               const std::vector<std::string> &inputs,
                               const std::vector<std::string> &outputs,
                               const std::string &name) {
  out.emplace_back();
  onnx::NodeProto &n = out.back();
  n.set_op_type(op);
  n.set_name(name + "/" + op + "_" + std::to_string(out.size()));
  for (const auto &i : inputs)
    n.add_input(i);
  for (const auto &o : outputs)
    n.add_output(o);
  return n;
}

std::string Context::op1(std::vector<onnx::NodeProto> &out, const std::string &op,
                         const std::vector<std::string> &inputs, const std::string &name) {
  std::string o = fresh(op);
  node(out, op, inputs, {o}, name);
  return o;
}

void eraseAttr(onnx::NodeProto &n, const std::string &name) {
  auto *attrs = n.mutable_attribute();
  for (int i = 0; i < attrs->size(); ++i)
    if (attrs->Get(i).name() == name) {
      attrs->erase(attrs->begin() + i);
      return;
    }
}

static onnx::AttributeProto &fresh(onnx::NodeProto &n, const std::string &name) {
  eraseAttr(n, name);
  onnx::AttributeProto *a = n.add_attribute();
  a->set_name(name);
  return *a;
}

void setInt(onnx::NodeProto &n, const std::string &name, int64_t v) {
  auto &a = fresh(n, name);
  a.set_type(onnx::AttributeProto::INT);
  a.set_i(v);
}

void setInts(onnx::NodeProto &n, const std::string &name, const std::vector<int64_t> &v) {
  auto &a = fresh(n, name);
  a.set_type(onnx::AttributeProto::INTS);
  for (auto x : v)
    a.add_ints(x);
}

void setFloat(onnx::NodeProto &n, const std::string &name, float v) {
  auto &a = fresh(n, name);
  a.set_type(onnx::AttributeProto::FLOAT);
  a.set_f(v);
}

void setString(onnx::NodeProto &n, const std::string &name, const std::string &v) {
  auto &a = fresh(n, name);
  a.set_type(onnx::AttributeProto::STRING);
  a.set_s(v);
}

std::string nodeName(const onnx::NodeProto &n) {
  if (!n.name().empty())
    return n.name();
  return n.output_size() ? n.op_type() + " -> " + n.output(0) : n.op_type();
}

bool hasInput(const onnx::NodeProto &n, int k) {
  return k < n.input_size() && !n.input(k).empty();
}

} // namespace adapter
} // namespace symoc
