//===- ModelIO.cpp - Loading ONNX models and tensors safely ---------------===//

#include "symoc/ModelIO/ModelIO.h"

#include <onnx/defs/parser.h>

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <unordered_set>

namespace fs = std::filesystem;

namespace symoc {

void fail(const std::string &path, const std::string &message) {
  // Keep the message on one line whatever a library handed us.
  std::string m = message;
  std::replace(m.begin(), m.end(), '\n', ' ');
  throw Error(path + ": " + m);
}

static bool looksTextual(const std::string &path, const std::string &head) {
  auto ext = fs::path(path).extension().string();
  if (ext == ".onnxtxt" || ext == ".txt")
    return true;
  for (char c : head) {
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n')
      continue;
    return c == '<';
  }
  return false;
}

// Domains whose ops symoc knows; nodes of other domains are imported generically
// only when the model imports the domain explicitly and it is one of these.
static bool knownDomain(const std::string &d) {
  static const std::set<std::string> known = {"", "ai.onnx", "ai.onnx.ml",
                                              "ai.onnx.preview.training",
                                              "com.microsoft"};
  return known.count(d) != 0;
}

static void checkGraph(const onnx::GraphProto &g, const std::string &path,
                       std::unordered_set<std::string> defined,
                       const std::string &where) {
  for (const auto &i : g.input())
    defined.insert(i.name());
  for (const auto &t : g.initializer())
    defined.insert(t.name());
  for (const auto &t : g.sparse_initializer())
    defined.insert(t.values().name());
  int idx = 0;
  for (const auto &n : g.node()) {
    std::string nodeName =
        n.name().empty() ? n.op_type() + " #" + std::to_string(idx) : n.name();
    if (n.op_type().empty())
      fail(path, where + "node " + nodeName + " has no op_type");
    for (const auto &in : n.input()) {
      if (!in.empty() && !defined.count(in))
        fail(path, where + "node '" + nodeName + "' (" + n.op_type() +
                       ") uses undefined value '" + in + "'");
    }
    for (const auto &a : n.attribute()) {
      // Subgraphs (If/Loop/Scan) see the enclosing scope.
      if (a.has_g())
        checkGraph(a.g(), path, defined, where + nodeName + "/");
      for (const auto &sg : a.graphs())
        checkGraph(sg, path, defined, where + nodeName + "/");
    }
    for (const auto &out : n.output())
      if (!out.empty())
        defined.insert(out);
    ++idx;
  }
  for (const auto &o : g.output())
    if (!defined.count(o.name()))
      fail(path, where + "graph output '" + o.name() + "' is never defined");
}

static size_t elementBytes(int32_t dt);

// Checks what later readers (ONNX shape inference among them) trust: dims are
// non-negative, their product fits, and inline data has exactly that size.
static void validateTensor(const onnx::TensorProto &t, const std::string &path,
                           const std::string &what) {
  unsigned __int128 n = 1;
  for (auto d : t.dims()) {
    if (d < 0)
      fail(path, what + " '" + t.name() + "' has a negative dimension");
    n *= (unsigned __int128)d;
    if (n > ((unsigned __int128)1 << 48))
      fail(path, what + " '" + t.name() + "' has too many elements (dims overflow)");
  }
  if (t.data_location() == onnx::TensorProto::EXTERNAL)
    return;
  size_t eb = elementBytes(t.data_type());
  if (t.has_raw_data()) {
    if (eb && t.raw_data().size() != size_t(n) * eb)
      fail(path, what + " '" + t.name() + "' has " + std::to_string(t.raw_data().size()) +
                     " bytes of raw_data, its shape needs " + std::to_string(size_t(n) * eb));
    return;
  }
  size_t count = size_t(t.float_data_size()) + t.int32_data_size() + t.int64_data_size() +
                 t.double_data_size() + t.uint64_data_size() + t.string_data_size();
  if (count != size_t(n))
    fail(path, what + " '" + t.name() + "' holds " + std::to_string(count) +
                   " values, its shape needs " + std::to_string(size_t(n)));
}

onnx::ModelProto parseTextModel(const std::string &text,
                                const std::string &path) {
  onnx::ModelProto model;
  auto status = onnx::OnnxParser::Parse(model, text.c_str());
  if (!status.IsOK())
    fail(path, "cannot parse ONNX text: " + status.ErrorMessage());
  return model;
}

onnx::ModelProto loadModel(const std::string &path) {
  std::error_code ec;
  auto st = fs::status(path, ec);
  if (ec || !fs::exists(st))
    fail(path, "no such file");
  if (fs::is_directory(st))
    fail(path, "is a directory, not an ONNX model file");
  uint64_t size = fs::file_size(path, ec);
  if (ec)
    fail(path, "cannot read file size: " + ec.message());
  if (size == 0)
    fail(path, "empty file, not an ONNX model");
  if (size > kMaxModelBytes)
    fail(path, "model is " + std::to_string(size >> 20) +
                   " MiB, over protobuf's 2 GB limit: save it with external "
                   "data (onnx.save_model(..., save_as_external_data=True))");

  std::ifstream in(path, std::ios::binary);
  if (!in)
    fail(path, "cannot open file");
  char head[64] = {0};
  in.read(head, sizeof(head) - 1);
  std::string headStr(head, in.gcount());
  in.clear();
  in.seekg(0);

  onnx::ModelProto model;
  if (looksTextual(path, headStr)) {
    std::stringstream ss;
    ss << in.rdbuf();
    model = parseTextModel(ss.str(), path);
  } else {
    google::protobuf::io::IstreamInputStream zin(&in);
    google::protobuf::io::CodedInputStream coded(&zin);
    coded.SetTotalBytesLimit(static_cast<int>(kMaxModelBytes));
    if (!model.ParseFromCodedStream(&coded) || !coded.ConsumedEntireMessage())
      fail(path, "not a valid ONNX protobuf (malformed or truncated)");
  }

  if (!model.has_graph() || model.graph().node_size() == 0)
    fail(path, "not an ONNX model: no graph or no nodes");
  if (model.opset_import_size() == 0 && model.ir_version() >= 3)
    fail(path, "model imports no opset");
  for (const auto &op : model.opset_import())
    if (!knownDomain(op.domain()))
      fail(path, "unsupported opset domain '" + op.domain() + "'");
  for (const auto &n : model.graph().node()) {
    if (!knownDomain(n.domain()))
      fail(path, "node '" + n.name() + "' (" + n.op_type() +
                     ") is in unsupported domain '" + n.domain() + "'");
  }
  checkGraph(model.graph(), path, {}, "");
  for (const auto &t : model.graph().initializer()) {
    validateTensor(t, path, "initializer");
    if (isExternal(t))
      (void)externalDataPath(path, t);
  }
  for (const auto &n : model.graph().node())
    for (const auto &a : n.attribute())
      if (a.has_t())
        validateTensor(a.t(), path, "tensor attribute of node '" + n.name() + "'");
  return model;
}

bool isExternal(const onnx::TensorProto &t) {
  return t.data_location() == onnx::TensorProto::EXTERNAL;
}

static std::string externalField(const onnx::TensorProto &t,
                                 const std::string &key) {
  for (const auto &kv : t.external_data())
    if (kv.key() == key)
      return kv.value();
  return "";
}

std::pair<int64_t, int64_t> externalDataRange(const onnx::TensorProto &t) {
  auto parse = [&](const std::string &key, int64_t dflt) -> int64_t {
    std::string v = externalField(t, key);
    if (v.empty())
      return dflt;
    try {
      return std::stoll(v);
    } catch (...) {
      return -2;
    }
  };
  return {parse("offset", 0), parse("length", -1)};
}

std::string externalDataPath(const std::string &modelPath,
                             const onnx::TensorProto &t) {
  std::string loc = externalField(t, "location");
  std::string what = "initializer '" + t.name() + "': external data ";
  if (loc.empty())
    fail(modelPath, what + "has no location");
  fs::path p(loc);
  if (p.is_absolute())
    fail(modelPath, what + "location '" + loc +
                        "' is an absolute path; only paths inside the model's "
                        "folder are allowed");
  for (const auto &part : p)
    if (part == "..")
      fail(modelPath, what + "location '" + loc +
                          "' leaves the model's folder ('..')");
  fs::path dir = fs::path(modelPath).parent_path();
  if (dir.empty())
    dir = ".";
  fs::path full = dir / p;
  std::error_code ec;
  if (!fs::exists(full, ec))
    fail(modelPath, what + "file '" + loc + "' not found next to the model");
  auto canonDir = fs::weakly_canonical(dir, ec);
  auto canonFile = fs::weakly_canonical(full, ec);
  auto rel = canonFile.lexically_relative(canonDir);
  if (rel.empty() || *rel.begin() == "..")
    fail(modelPath, what + "file '" + loc +
                        "' resolves outside the model's folder");
  if (!fs::is_regular_file(canonFile, ec))
    fail(modelPath, what + "'" + loc + "' is not a regular file");
  auto [offset, length] = externalDataRange(t);
  if (offset < 0 || length < -1)
    fail(modelPath, what + "has an invalid offset or length");
  uint64_t size = fs::file_size(canonFile, ec);
  if (length >= 0 && uint64_t(offset + length) > size)
    fail(modelPath, what + "range [" + std::to_string(offset) + ", " +
                        std::to_string(offset + length) + ") is past the end of '" +
                        loc + "' (" + std::to_string(size) + " bytes)");
  return canonFile.string();
}

int64_t numElements(const onnx::TensorProto &t) {
  int64_t n = 1;
  for (auto d : t.dims())
    n *= d;
  return n;
}

static size_t elementBytes(int32_t dt) {
  switch (dt) {
  case onnx::TensorProto::FLOAT: case onnx::TensorProto::INT32:
  case onnx::TensorProto::UINT32: return 4;
  case onnx::TensorProto::DOUBLE: case onnx::TensorProto::INT64:
  case onnx::TensorProto::UINT64: return 8;
  case onnx::TensorProto::FLOAT16: case onnx::TensorProto::BFLOAT16:
  case onnx::TensorProto::INT16: case onnx::TensorProto::UINT16: return 2;
  case onnx::TensorProto::INT8: case onnx::TensorProto::UINT8:
  case onnx::TensorProto::BOOL: return 1;
  default: return 0;
  }
}

static double halfToDouble(uint16_t h) {
  uint32_t sign = (h >> 15) & 1, exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
  double v;
  if (exp == 0)
    v = std::ldexp(double(mant), -24);
  else if (exp == 31)
    v = mant ? NAN : INFINITY;
  else
    v = std::ldexp(double(mant | 0x400), int(exp) - 25);
  return sign ? -v : v;
}

static double bf16ToDouble(uint16_t h) {
  uint32_t bits = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// Decodes little-endian raw bytes of data type dt into doubles.
static std::vector<double> decodeRaw(const char *p, size_t n, int32_t dt) {
  std::vector<double> out(n);
  for (size_t i = 0; i < n; ++i) {
    switch (dt) {
#define CASE(TY, CT)                                                            \
  case onnx::TensorProto::TY: {                                                 \
    CT v;                                                                       \
    std::memcpy(&v, p + i * sizeof(CT), sizeof(CT));                            \
    out[i] = double(v);                                                         \
    break;                                                                      \
  }
      CASE(FLOAT, float) CASE(DOUBLE, double) CASE(INT32, int32_t)
      CASE(INT64, int64_t) CASE(UINT32, uint32_t) CASE(UINT64, uint64_t)
      CASE(INT16, int16_t) CASE(UINT16, uint16_t) CASE(INT8, int8_t)
      CASE(UINT8, uint8_t)
#undef CASE
    case onnx::TensorProto::BOOL: out[i] = p[i] ? 1.0 : 0.0; break;
    case onnx::TensorProto::FLOAT16: {
      uint16_t h; std::memcpy(&h, p + 2 * i, 2); out[i] = halfToDouble(h); break;
    }
    case onnx::TensorProto::BFLOAT16: {
      uint16_t h; std::memcpy(&h, p + 2 * i, 2); out[i] = bf16ToDouble(h); break;
    }
    default: break;
    }
  }
  return out;
}

static std::string readExternal(const onnx::TensorProto &t,
                                const std::string &modelPath, size_t bytes) {
  std::string file = externalDataPath(modelPath, t);
  auto [offset, length] = externalDataRange(t);
  if (length >= 0 && size_t(length) != bytes)
    fail(modelPath, "initializer '" + t.name() + "': external length " +
                        std::to_string(length) + " does not match its shape (" +
                        std::to_string(bytes) + " bytes)");
  std::ifstream in(file, std::ios::binary);
  in.seekg(offset);
  std::string buf(bytes, '\0');
  in.read(buf.data(), bytes);
  if (size_t(in.gcount()) != bytes)
    fail(modelPath, "initializer '" + t.name() + "': external file '" + file +
                        "' is too short");
  return buf;
}

std::vector<double> tensorToDouble(const onnx::TensorProto &t,
                                   const std::string &modelPath) {
  int32_t dt = t.data_type();
  size_t eb = elementBytes(dt);
  if (eb == 0)
    fail(modelPath, "tensor '" + t.name() + "' has unsupported data type " +
                        dataTypeName(dt));
  int64_t n = numElements(t);
  if (n < 0)
    fail(modelPath, "tensor '" + t.name() + "' has negative dims");
  std::vector<double> out;
  if (isExternal(t)) {
    std::string buf = readExternal(t, modelPath, size_t(n) * eb);
    return decodeRaw(buf.data(), size_t(n), dt);
  }
  if (t.has_raw_data()) {
    if (t.raw_data().size() != size_t(n) * eb)
      fail(modelPath, "tensor '" + t.name() + "': raw_data has " +
                          std::to_string(t.raw_data().size()) +
                          " bytes, its shape needs " +
                          std::to_string(size_t(n) * eb));
    return decodeRaw(t.raw_data().data(), size_t(n), dt);
  }
  switch (dt) {
  case onnx::TensorProto::FLOAT:
    out.assign(t.float_data().begin(), t.float_data().end());
    break;
  case onnx::TensorProto::DOUBLE:
    out.assign(t.double_data().begin(), t.double_data().end());
    break;
  case onnx::TensorProto::INT64:
    out.assign(t.int64_data().begin(), t.int64_data().end());
    break;
  case onnx::TensorProto::UINT32: case onnx::TensorProto::UINT64:
    out.assign(t.uint64_data().begin(), t.uint64_data().end());
    break;
  case onnx::TensorProto::FLOAT16:
    for (auto v : t.int32_data()) out.push_back(halfToDouble(uint16_t(v)));
    break;
  case onnx::TensorProto::BFLOAT16:
    for (auto v : t.int32_data()) out.push_back(bf16ToDouble(uint16_t(v)));
    break;
  default: // int32, int16, int8, uint16, uint8, bool are stored in int32_data
    out.assign(t.int32_data().begin(), t.int32_data().end());
    break;
  }
  if (out.size() != size_t(n))
    fail(modelPath, "tensor '" + t.name() + "' holds " +
                        std::to_string(out.size()) + " values, its shape needs " +
                        std::to_string(n));
  return out;
}

std::vector<int64_t> tensorToInt64(const onnx::TensorProto &t,
                                   const std::string &modelPath) {
  int32_t dt = t.data_type();
  if (dt == onnx::TensorProto::INT64 && !isExternal(t) && !t.has_raw_data()) {
    if (t.int64_data_size() != numElements(t))
      fail(modelPath, "tensor '" + t.name() + "' size does not match its shape");
    return {t.int64_data().begin(), t.int64_data().end()};
  }
  if (dt == onnx::TensorProto::FLOAT || dt == onnx::TensorProto::DOUBLE ||
      dt == onnx::TensorProto::FLOAT16 || dt == onnx::TensorProto::BFLOAT16)
    fail(modelPath, "tensor '" + t.name() + "' is " + dataTypeName(dt) +
                        ", expected an integer tensor");
  if (dt == onnx::TensorProto::INT64 && t.has_raw_data()) {
    int64_t n = numElements(t);
    if (t.raw_data().size() != size_t(n) * 8)
      fail(modelPath, "tensor '" + t.name() + "': raw_data size does not match its shape");
    std::vector<int64_t> out(n);
    std::memcpy(out.data(), t.raw_data().data(), size_t(n) * 8);
    return out;
  }
  auto d = tensorToDouble(t, modelPath);
  return {d.begin(), d.end()};
}

std::string dataTypeName(int32_t dt) {
  switch (dt) {
  case onnx::TensorProto::FLOAT: return "float";
  case onnx::TensorProto::UINT8: return "uint8";
  case onnx::TensorProto::INT8: return "int8";
  case onnx::TensorProto::UINT16: return "uint16";
  case onnx::TensorProto::INT16: return "int16";
  case onnx::TensorProto::INT32: return "int32";
  case onnx::TensorProto::INT64: return "int64";
  case onnx::TensorProto::STRING: return "string";
  case onnx::TensorProto::BOOL: return "bool";
  case onnx::TensorProto::FLOAT16: return "float16";
  case onnx::TensorProto::DOUBLE: return "double";
  case onnx::TensorProto::UINT32: return "uint32";
  case onnx::TensorProto::UINT64: return "uint64";
  case onnx::TensorProto::COMPLEX64: return "complex64";
  case onnx::TensorProto::COMPLEX128: return "complex128";
  case onnx::TensorProto::BFLOAT16: return "bfloat16";
  default: return "type#" + std::to_string(dt);
  }
}

int64_t opsetVersion(const onnx::ModelProto &model, const std::string &domain) {
  std::string d = domain == "ai.onnx" ? "" : domain;
  for (const auto &op : model.opset_import()) {
    std::string od = op.domain() == "ai.onnx" ? "" : op.domain();
    if (od == d)
      return op.version();
  }
  return -1;
}

} // namespace symoc
