//===- ModelIO.cpp - Loading ONNX models and tensors safely ---------------===//

#include "symoc/ModelIO/ModelIO.h"

#include "WireScan.h"

#include <onnx/defs/parser.h>

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl.h>

#include <algorithm>
#include <cmath>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <unordered_set>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

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
  for (const auto &i : g.input()) {
    defined.insert(i.name());
    // A negative size is no size (it was taken as symbolic and given 2).
    if (i.type().has_tensor_type() && i.type().tensor_type().has_shape())
      for (int k = 0; k < i.type().tensor_type().shape().dim_size(); ++k) {
        const auto &d = i.type().tensor_type().shape().dim(k);
        if (d.has_dim_value() && d.dim_value() < 0)
          fail(path, where + "graph input '" + i.name() + "' has size " + std::to_string(d.dim_value()) +
                         " in dimension " + std::to_string(k));
      }
  }
  std::unordered_set<std::string> initializers;
  for (const auto &t : g.initializer()) {
    // Two tensors of one name: which one a node reads is undefined (the plan listed it twice).
    if (!initializers.insert(t.name()).second)
      fail(path, where + "initializer '" + t.name() + "' is defined twice");
    defined.insert(t.name());
  }
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
      if (!out.empty() && !defined.insert(out).second)
        fail(path, where + "value '" + out + "' is defined twice (node '" +
                       nodeName + "'); ONNX graphs are in SSA form");
    ++idx;
  }
  for (const auto &o : g.output())
    if (!defined.count(o.name()))
      fail(path, where + "graph output '" + o.name() + "' is never defined");
}

static size_t elementBytes(int32_t dt);
static void checkExternalSize(const onnx::TensorProto &t, const std::string &file,
                              const std::string &path);
static std::string externalField(const onnx::TensorProto &t, const std::string &key);

// The size check of a deferred tensor, with the message its inline form gets.
static void checkDeferredSize(const onnx::TensorProto &t, uint64_t n,
                              const std::string &path, const std::string &what) {
  int64_t length = externalDataRange(t).second;
  std::string field = externalField(t, kDeferredKey);
  size_t eb = elementBytes(t.data_type());
  if (field == "raw_data") {
    if (eb && uint64_t(length) != n * eb)
      fail(path, what + " '" + t.name() + "' has " + std::to_string(length) +
                     " bytes of raw_data, its shape needs " + std::to_string(n * eb));
    return;
  }
  uint64_t count = uint64_t(length) / (field == "double_data" ? 8 : 4);
  if (count != n)
    fail(path, what + " '" + t.name() + "' holds " + std::to_string(count) +
                   " values, its shape needs " + std::to_string(n));
}

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
  if (isDeferred(t))
    return checkDeferredSize(t, uint64_t(n), path, what);
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
  // The parser throws on numbers out of range (std::stoll's "stoll"): one line naming the file.
  onnx::Common::Status status;
  try {
    status = onnx::OnnxParser::Parse(model, text.c_str());
  } catch (const std::exception &e) {
    fail(path, std::string("cannot parse ONNX text: a number out of range or malformed (") + e.what() + ")");
  }
  if (!status.IsOK())
    fail(path, "cannot parse ONNX text: " + status.ErrorMessage());
  return model;
}

namespace {
/// A read-only memory map of a whole file; pages are only read when touched.
class MappedFile {
public:
  MappedFile(const std::string &path, uint64_t size) : size(size) {
    fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
      fail(path, std::string("cannot open file: ") + std::strerror(errno));
    void *p = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED)
      fail(path, std::string("cannot map file: ") + std::strerror(errno));
    data = static_cast<const uint8_t *>(p);
  }
  ~MappedFile() {
    if (data)
      ::munmap(const_cast<uint8_t *>(data), size);
    if (fd >= 0)
      ::close(fd);
  }
  MappedFile(const MappedFile &) = delete;
  MappedFile &operator=(const MappedFile &) = delete;

  const uint8_t *data = nullptr;
  uint64_t size;

private:
  int fd = -1;
};

bool parseBinary(const void *data, uint64_t size, onnx::ModelProto &model) {
  google::protobuf::io::ArrayInputStream zin(data, int(size));
  google::protobuf::io::CodedInputStream coded(&zin);
  coded.SetTotalBytesLimit(static_cast<int>(kMaxModelBytes));
  return model.ParseFromCodedStream(&coded) && coded.ConsumedEntireMessage();
}
} // namespace

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

  MappedFile file(path, size);
  std::string headStr(reinterpret_cast<const char *>(file.data),
                      std::min<uint64_t>(size, 63));

  onnx::ModelProto model;
  if (looksTextual(path, headStr)) {
    model = parseTextModel(
        std::string(reinterpret_cast<const char *>(file.data), size), path);
  } else {
    // Parse a copy without the large payloads; protobuf sees everything else
    // (and validates it as before). When the scan finds the bytes malformed,
    // protobuf parses the file itself and reports the problem as it always did.
    std::string canonical = fs::canonical(path, ec).string();
    if (ec)
      canonical = fs::absolute(path).string();
    wire::ScanResult scan = wire::stripPayloads(file.data, size, kDeferBytes, canonical,
                                                /*releaseBehind=*/true);
    if (!scan.error.empty())
      fail(path, scan.error);
    bool ok = scan.ok ? parseBinary(scan.stripped.data(), scan.stripped.size(), model)
                      : parseBinary(file.data, size, model);
    if (!ok)
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
  // Nothing to compute: every claim would hold vacuously (GL(10) was claimed on such a graph).
  if (model.graph().output_size() == 0)
    fail(path, "the graph has no outputs");
  checkGraph(model.graph(), path, {}, "");
  for (const auto &t : model.graph().initializer()) {
    validateTensor(t, path, "initializer");
    if (isExternal(t))
      checkExternalSize(t, externalDataPath(path, t), path);
  }
  for (const auto &n : model.graph().node())
    for (const auto &a : n.attribute())
      if (a.has_t())
        validateTensor(a.t(), path, "tensor attribute of node '" + n.name() + "'");
  return model;
}

bool isDeferred(const onnx::TensorProto &t) {
  if (t.data_location() != onnx::TensorProto::EXTERNAL)
    return false;
  for (const auto &kv : t.external_data())
    if (kv.key() == kDeferredKey)
      return true;
  return false;
}

bool isExternal(const onnx::TensorProto &t) {
  return t.data_location() == onnx::TensorProto::EXTERNAL && !isDeferred(t);
}

static void countDeferred(const onnx::GraphProto &g, std::pair<int64_t, uint64_t> &acc) {
  auto add = [&](const onnx::TensorProto &t) {
    if (isDeferred(t)) {
      ++acc.first;
      acc.second += uint64_t(externalDataRange(t).second);
    }
  };
  for (const auto &t : g.initializer())
    add(t);
  for (const auto &n : g.node())
    for (const auto &a : n.attribute()) {
      if (a.has_t())
        add(a.t());
      for (const auto &t : a.tensors())
        add(t);
      if (a.has_g())
        countDeferred(a.g(), acc);
      for (const auto &sg : a.graphs())
        countDeferred(sg, acc);
    }
}

std::pair<int64_t, uint64_t> deferredStats(const onnx::ModelProto &model) {
  std::pair<int64_t, uint64_t> acc{0, 0};
  countDeferred(model.graph(), acc);
  return acc;
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
  if (isDeferred(t))
    return externalField(t, kDeferredFileKey); // the model file, canonical
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
  if (length >= 0 && (uint64_t(offset) > size || uint64_t(length) > size - uint64_t(offset)))
    fail(modelPath, what + "range [" + std::to_string(offset) + ", " +
                        std::to_string(uint64_t(offset) + uint64_t(length)) + ") is past the end of '" +
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

/// An external tensor's bytes must be in its file when the model is loaded, not only when
/// its values are read: with no `length`, a file too short (or a [2^20, 2^20] shape backed by
/// 2 KB) passed analyze and compile and failed later with std::bad_alloc (a session-35 audit).
static void checkExternalSize(const onnx::TensorProto &t, const std::string &file,
                              const std::string &path) {
  const size_t eb = elementBytes(t.data_type());
  if (!eb)
    return; // strings and packed types: read as they are
  uint64_t n = 1;
  for (int64_t d : t.dims()) {
    if (d < 0 || (d && n > UINT64_MAX / uint64_t(d)))
      fail(path, "initializer '" + t.name() + "': its shape does not fit in 64 bits");
    n *= uint64_t(d);
  }
  if (n > UINT64_MAX / eb)
    fail(path, "initializer '" + t.name() + "': its shape does not fit in 64 bits");
  const uint64_t bytes = n * eb;
  auto [offset, length] = externalDataRange(t);
  if (length >= 0 && uint64_t(length) != bytes)
    fail(path, "initializer '" + t.name() + "': external length " + std::to_string(length) +
                   " does not match its shape (" + std::to_string(bytes) + " bytes)");
  std::error_code ec;
  const uint64_t size = fs::file_size(file, ec);
  if (!ec && (uint64_t(offset) > size || bytes > size - uint64_t(offset)))
    fail(path, "initializer '" + t.name() + "': external data needs bytes [" + std::to_string(offset) +
                   ", " + std::to_string(uint64_t(offset) + bytes) + ") of a file of " + std::to_string(size) +
                   " bytes");
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

template <typename T> static void decodeAs(const char *p, size_t n, double *out) {
  for (size_t i = 0; i < n; ++i) {
    T v;
    std::memcpy(&v, p + i * sizeof(T), sizeof(T));
    out[i] = double(v);
  }
}

// Decodes little-endian raw bytes of data type dt into doubles (one loop per
// type: the switch is outside the element loop).
static void decodeRawInto(const char *p, size_t n, int32_t dt, double *out) {
  switch (dt) {
  case onnx::TensorProto::FLOAT: return decodeAs<float>(p, n, out);
  case onnx::TensorProto::DOUBLE: return decodeAs<double>(p, n, out);
  case onnx::TensorProto::INT32: return decodeAs<int32_t>(p, n, out);
  case onnx::TensorProto::INT64: return decodeAs<int64_t>(p, n, out);
  case onnx::TensorProto::UINT32: return decodeAs<uint32_t>(p, n, out);
  case onnx::TensorProto::UINT64: return decodeAs<uint64_t>(p, n, out);
  case onnx::TensorProto::INT16: return decodeAs<int16_t>(p, n, out);
  case onnx::TensorProto::UINT16: return decodeAs<uint16_t>(p, n, out);
  case onnx::TensorProto::INT8: return decodeAs<int8_t>(p, n, out);
  case onnx::TensorProto::UINT8: return decodeAs<uint8_t>(p, n, out);
  case onnx::TensorProto::BOOL:
    for (size_t i = 0; i < n; ++i)
      out[i] = p[i] ? 1.0 : 0.0;
    return;
  case onnx::TensorProto::FLOAT16:
    for (size_t i = 0; i < n; ++i) {
      uint16_t h;
      std::memcpy(&h, p + 2 * i, 2);
      out[i] = halfToDouble(h);
    }
    return;
  case onnx::TensorProto::BFLOAT16:
    for (size_t i = 0; i < n; ++i) {
      uint16_t h;
      std::memcpy(&h, p + 2 * i, 2);
      out[i] = bf16ToDouble(h);
    }
    return;
  default:
    std::fill(out, out + n, 0.0);
  }
}

// Reads n elements of type dt at `offset` of `file` with pread, a chunk at a
// time, decoding into doubles: the file is never read whole and the bytes are
// never all held at once.
static std::vector<double> readRange(const std::string &file, uint64_t offset,
                                     size_t n, int32_t dt, const std::string &modelPath,
                                     const std::string &what) {
  size_t eb = elementBytes(dt);
  std::vector<double> out(n);
  int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    fail(modelPath, what + "cannot open '" + file + "': " + std::strerror(errno));
  constexpr size_t kChunkElements = size_t(1) << 16;
  std::vector<char> buf(std::min(n, kChunkElements) * eb);
  size_t done = 0;
  while (done < n) {
    size_t count = std::min(n - done, kChunkElements), want = count * eb, got = 0;
    while (got < want) {
      ssize_t r = ::pread(fd, buf.data() + got, want - got, off_t(offset + done * eb + got));
      if (r < 0 && errno == EINTR)
        continue;
      if (r <= 0) {
        int err = errno;
        ::close(fd);
        fail(modelPath, what + "file '" + file + "' is too short" +
                            (r < 0 ? std::string(" (") + std::strerror(err) + ")" : ""));
      }
      got += size_t(r);
    }
    decodeRawInto(buf.data(), count, dt, out.data() + done);
    done += count;
  }
  ::close(fd);
  return out;
}

static std::vector<double> readExternal(const onnx::TensorProto &t,
                                        const std::string &modelPath, size_t n,
                                        int32_t dt) {
  size_t bytes = n * elementBytes(dt);
  std::string file = externalDataPath(modelPath, t);
  auto [offset, length] = externalDataRange(t);
  if (length >= 0 && size_t(length) != bytes)
    fail(modelPath, "initializer '" + t.name() + "': external length " +
                        std::to_string(length) + " does not match its shape (" +
                        std::to_string(bytes) + " bytes)");
  return readRange(file, uint64_t(offset), n, dt, modelPath,
                   "initializer '" + t.name() + "': external ");
}

// A deferred tensor: same checks and messages as its inline form had.
static std::vector<double> readDeferred(const onnx::TensorProto &t,
                                        const std::string &modelPath, size_t n,
                                        int32_t dt) {
  size_t eb = elementBytes(dt);
  auto [offset, length] = externalDataRange(t);
  std::string field = externalField(t, kDeferredKey);
  if (field == "raw_data" && size_t(length) != n * eb)
    fail(modelPath, "tensor '" + t.name() + "': raw_data has " + std::to_string(length) +
                        " bytes, its shape needs " + std::to_string(n * eb));
  if (field != "raw_data" && size_t(length) != n * eb)
    fail(modelPath, "tensor '" + t.name() + "' holds " + std::to_string(length / eb) +
                        " values, its shape needs " + std::to_string(n));
  return readRange(externalField(t, kDeferredFileKey), uint64_t(offset), n, dt, modelPath,
                   "tensor '" + t.name() + "': model ");
}

// A tensor marked kTransposedKey has dims [b, a] and bytes of its [a, b]
// transpose in the file.
static std::vector<double> untranspose(const onnx::TensorProto &t, std::vector<double> v) {
  if (externalField(t, kTransposedKey) != "1" || t.dims_size() != 2)
    return v;
  int64_t b = t.dims(0), a = t.dims(1);
  std::vector<double> out(v.size());
  for (int64_t i = 0; i < a; ++i)
    for (int64_t j = 0; j < b; ++j)
      out[size_t(j * a + i)] = v[size_t(i * b + j)];
  return out;
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
  if (isDeferred(t))
    return untranspose(t, readDeferred(t, modelPath, size_t(n), dt));
  if (isExternal(t))
    return untranspose(t, readExternal(t, modelPath, size_t(n), dt));
  if (t.has_raw_data()) {
    if (t.raw_data().size() != size_t(n) * eb)
      fail(modelPath, "tensor '" + t.name() + "': raw_data has " +
                          std::to_string(t.raw_data().size()) +
                          " bytes, its shape needs " +
                          std::to_string(size_t(n) * eb));
    out.resize(size_t(n));
    decodeRawInto(t.raw_data().data(), size_t(n), dt, out.data());
    return out;
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
