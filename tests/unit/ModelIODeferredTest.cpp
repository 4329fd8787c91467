//===- ModelIODeferredTest.cpp - Deferred (lazily read) tensor payloads ---===//
//
// loadModel leaves large floating point payloads in the file and marks the
// tensors (see ModelIO.h); tensorToDouble reads them back. Expected values are
// the ones written into the models here, not outputs of the code under test.
//
//===----------------------------------------------------------------------===//

#include "symoc/ModelIO/ModelIO.h"

#include <gtest/gtest.h>

#include <sys/resource.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

namespace fs = std::filesystem;

namespace {

class TempDir {
public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "symoc-deferred-XXXXXX").string();
    if (!mkdtemp(tmpl.data()))
      throw std::runtime_error("mkdtemp failed");
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string file(const std::string &name) const { return (path / name).string(); }
  fs::path path;
};

template <typename F> std::string errorOf(F &&f) {
  try {
    f();
  } catch (const symoc::Error &e) {
    return e.what();
  }
  return "";
}

std::vector<float> ramp(size_t n, float scale) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i)
    v[i] = scale * float(int(i % 97) - 48);
  return v;
}

std::vector<double> asDoubles(const std::vector<float> &v) { return {v.begin(), v.end()}; }

void setRaw(onnx::TensorProto &t, const void *p, size_t bytes) {
  t.set_raw_data(std::string(static_cast<const char *>(p), bytes));
}

onnx::TensorProto floatTensor(const std::string &name, const std::vector<float> &v,
                              bool raw) {
  onnx::TensorProto t;
  t.set_name(name);
  t.set_data_type(onnx::TensorProto::FLOAT);
  t.add_dims(int64_t(v.size()));
  if (raw)
    setRaw(t, v.data(), v.size() * 4);
  else
    for (float x : v)
      t.add_float_data(x);
  return t;
}

/// y = x + Big + Packed + C, with more initializers (Small, Dbl, Ints) beside.
onnx::ModelProto model() {
  onnx::ModelProto m;
  m.set_ir_version(8);
  auto *op = m.add_opset_import();
  op->set_domain("");
  op->set_version(17);
  auto *g = m.mutable_graph();
  g->set_name("g");
  auto *x = g->add_input();
  x->set_name("x");
  x->mutable_type()->mutable_tensor_type()->set_elem_type(onnx::TensorProto::FLOAT);
  x->mutable_type()->mutable_tensor_type()->mutable_shape()->add_dim()->set_dim_value(2048);
  *g->add_initializer() = floatTensor("Big", ramp(2048, 0.5f), /*raw=*/true);      // 8 KiB
  *g->add_initializer() = floatTensor("Packed", ramp(2048, 0.25f), /*raw=*/false); // 8 KiB
  *g->add_initializer() = floatTensor("Small", ramp(16, 1.0f), /*raw=*/true);      // 64 B
  onnx::TensorProto dbl;
  dbl.set_name("Dbl");
  dbl.set_data_type(onnx::TensorProto::DOUBLE);
  dbl.add_dims(1024);
  for (int i = 0; i < 1024; ++i)
    dbl.add_double_data(1.0 / (i + 1));
  *g->add_initializer() = dbl;
  onnx::TensorProto ints;
  ints.set_name("Ints");
  ints.set_data_type(onnx::TensorProto::INT64);
  ints.add_dims(2048);
  std::vector<int64_t> iv(2048);
  for (int i = 0; i < 2048; ++i)
    iv[i] = i * 3 - 7;
  setRaw(ints, iv.data(), iv.size() * 8);
  *g->add_initializer() = ints;
  auto node = [&](const char *type, std::vector<std::string> in, const std::string &out) {
    auto *n = g->add_node();
    n->set_op_type(type);
    for (auto &i : in)
      n->add_input(i);
    n->add_output(out);
    return n;
  };
  auto *c = node("Constant", {}, "C");
  c->set_name("const");
  auto *a = c->add_attribute();
  a->set_name("value");
  a->set_type(onnx::AttributeProto::TENSOR);
  *a->mutable_t() = floatTensor("Cval", ramp(2048, -1.0f), /*raw=*/true);
  node("Add", {"x", "Big"}, "s1");
  node("Add", {"s1", "Packed"}, "s2");
  node("Add", {"s2", "C"}, "y");
  g->add_output()->set_name("y");
  return m;
}

std::string write(const TempDir &dir, const std::string &name, const onnx::ModelProto &m) {
  std::string path = dir.file(name);
  std::ofstream(path, std::ios::binary) << m.SerializeAsString();
  return path;
}

const onnx::TensorProto &init(const onnx::ModelProto &m, const std::string &name) {
  for (const auto &t : m.graph().initializer())
    if (t.name() == name)
      return t;
  throw std::runtime_error("no initializer " + name);
}

} // namespace

TEST(ModelIODeferred, LargeFloatPayloadsAreDeferredAndReadBack) {
  TempDir dir;
  onnx::ModelProto orig = model();
  std::string path = write(dir, "m.onnx", orig);
  onnx::ModelProto m = symoc::loadModel(path);

  for (const char *name : {"Big", "Packed", "Dbl"}) {
    SCOPED_TRACE(name);
    const auto &t = init(m, name);
    EXPECT_TRUE(symoc::isDeferred(t));
    EXPECT_FALSE(symoc::isExternal(t)); // logically inline
    EXPECT_FALSE(t.has_raw_data());
    EXPECT_EQ(t.float_data_size() + t.double_data_size(), 0);
    EXPECT_EQ(symoc::externalDataPath(path, t), fs::canonical(path).string());
  }
  // Small tensors and integer tensors stay inline.
  EXPECT_FALSE(symoc::isDeferred(init(m, "Small")));
  EXPECT_TRUE(init(m, "Small").has_raw_data());
  EXPECT_FALSE(symoc::isDeferred(init(m, "Ints")));
  const auto &ct = m.graph().node(0).attribute(0).t();
  EXPECT_TRUE(symoc::isDeferred(ct));

  EXPECT_EQ(symoc::tensorToDouble(init(m, "Big"), path), asDoubles(ramp(2048, 0.5f)));
  EXPECT_EQ(symoc::tensorToDouble(init(m, "Packed"), path), asDoubles(ramp(2048, 0.25f)));
  EXPECT_EQ(symoc::tensorToDouble(init(m, "Small"), path), asDoubles(ramp(16, 1.0f)));
  EXPECT_EQ(symoc::tensorToDouble(ct, path), asDoubles(ramp(2048, -1.0f)));
  std::vector<double> dv = symoc::tensorToDouble(init(m, "Dbl"), path);
  ASSERT_EQ(dv.size(), 1024u);
  for (int i = 0; i < 1024; ++i)
    ASSERT_EQ(dv[i], 1.0 / (i + 1)) << i;
  std::vector<int64_t> iv = symoc::tensorToInt64(init(m, "Ints"), path);
  ASSERT_EQ(iv.size(), 2048u);
  EXPECT_EQ(iv[0], -7);
  EXPECT_EQ(iv[2047], 2047 * 3 - 7);

  auto [count, bytes] = symoc::deferredStats(m);
  EXPECT_EQ(count, 4);
  EXPECT_EQ(bytes, uint64_t(3 * 2048 * 4 + 1024 * 8));

  // Everything but the payloads is what protobuf parses from the file.
  onnx::ModelProto stripped = orig;
  for (auto *t : {stripped.mutable_graph()->mutable_initializer(0),
                  stripped.mutable_graph()->mutable_initializer(1),
                  stripped.mutable_graph()->mutable_initializer(3),
                  stripped.mutable_graph()->mutable_node(0)->mutable_attribute(0)->mutable_t()}) {
    t->clear_raw_data();
    t->clear_float_data();
    t->clear_double_data();
  }
  onnx::ModelProto loaded = m;
  for (auto *t : {loaded.mutable_graph()->mutable_initializer(0),
                  loaded.mutable_graph()->mutable_initializer(1),
                  loaded.mutable_graph()->mutable_initializer(3),
                  loaded.mutable_graph()->mutable_node(0)->mutable_attribute(0)->mutable_t()}) {
    t->clear_data_location();
    t->clear_external_data();
  }
  EXPECT_EQ(loaded.SerializeAsString(), stripped.SerializeAsString());
}

TEST(ModelIODeferred, SizeMismatchesAreRefusedAsForInlineData) {
  TempDir dir;
  onnx::ModelProto m = model();
  auto *big = m.mutable_graph()->mutable_initializer(0);
  big->mutable_raw_data()->append(4, '\0'); // 8196 bytes for 2048 floats
  std::string path = write(dir, "raw.onnx", m);
  EXPECT_EQ(errorOf([&] { symoc::loadModel(path); }),
            path + ": initializer 'Big' has 8196 bytes of raw_data, its shape needs 8192");

  m = model();
  m.mutable_graph()->mutable_initializer(1)->add_float_data(1.0f); // 2049 values
  path = write(dir, "packed.onnx", m);
  EXPECT_EQ(errorOf([&] { symoc::loadModel(path); }),
            path + ": initializer 'Packed' holds 2049 values, its shape needs 2048");

  // A node's tensor attribute too.
  m = model();
  m.mutable_graph()->mutable_node(0)->mutable_attribute(0)->mutable_t()->set_dims(0, 2049);
  path = write(dir, "attr.onnx", m);
  EXPECT_EQ(errorOf([&] { symoc::loadModel(path); }),
            path + ": tensor attribute of node 'const' 'Cval' has 8192 bytes of raw_data, its "
                   "shape needs 8196");
}

TEST(ModelIODeferred, ReservedMarkerKeysAreRefused) {
  TempDir dir;
  onnx::ModelProto m = model();
  auto *t = m.mutable_graph()->mutable_initializer(0);
  auto *e = t->add_external_data();
  e->set_key("symoc_self");
  e->set_value("raw_data");
  std::string path = write(dir, "forged.onnx", m);
  EXPECT_EQ(errorOf([&] { symoc::loadModel(path); }),
            path + ": tensor 'Big' has an external_data key starting with 'symoc_', "
                   "which symoc reserves");
}

TEST(ModelIODeferred, TruncatedModelIsStillMalformed) {
  TempDir dir;
  std::string bytes = model().SerializeAsString();
  std::string path = dir.file("cut.onnx");
  // Cut inside the first large payload.
  std::ofstream(path, std::ios::binary) << bytes.substr(0, bytes.size() - 9000);
  EXPECT_EQ(errorOf([&] { symoc::loadModel(path); }),
            path + ": not a valid ONNX protobuf (malformed or truncated)");
}

TEST(ModelIODeferred, ModelChangedOnDiskAfterLoadIsAnError) {
  TempDir dir;
  std::string path = write(dir, "m.onnx", model());
  onnx::ModelProto m = symoc::loadModel(path);
  fs::resize_file(path, 100);
  std::string msg = errorOf([&] { symoc::tensorToDouble(init(m, "Big"), path); });
  EXPECT_NE(msg.find("is too short"), std::string::npos) << msg;
  EXPECT_EQ(msg.rfind(path + ": tensor 'Big'", 0), 0u) << msg;
}

// A 1.5 GB model whose weight is the last field of the file: written as a
// sparse file (no disk used), so the payload is zeros. Loading must not read
// it: peak resident memory may grow by far less than the payload.
TEST(ModelIODeferred, LoadingDoesNotReadThePayload) {
  TempDir dir;
  const int64_t n = int64_t(3) << 27; // 402,653,184 floats = 1.5 GiB
  onnx::ModelProto m;
  m.set_ir_version(8);
  auto *op = m.add_opset_import();
  op->set_version(17);
  auto *g = m.mutable_graph();
  auto *node = g->add_node();
  node->set_op_type("Identity");
  node->add_input("W");
  node->add_output("y");
  g->add_output()->set_name("y");
  // The model with W's payload left off; then W's header, whose raw_data
  // length prefix says n*4 bytes follow.
  onnx::TensorProto w;
  w.set_name("W");
  w.set_data_type(onnx::TensorProto::FLOAT);
  w.add_dims(n);
  std::string wHeader = w.SerializeAsString();
  auto varint = [](uint64_t v) {
    std::string s;
    for (; v >= 0x80; v >>= 7)
      s.push_back(char(uint8_t(v) | 0x80));
    s.push_back(char(v));
    return s;
  };
  std::string tensorPrefix = wHeader + "\x4a" + varint(uint64_t(n) * 4); // field 9, bytes
  uint64_t tensorSize = tensorPrefix.size() + uint64_t(n) * 4;
  std::string graphBody = g->SerializeAsString() + "\x2a" + varint(tensorSize); // field 5
  uint64_t graphSize = graphBody.size() + tensorSize;
  m.clear_graph();
  std::string head = m.SerializeAsString() + "\x3a" + varint(graphSize) + graphBody +
                     tensorPrefix; // field 7
  std::string path = dir.file("huge.onnx");
  std::ofstream(path, std::ios::binary) << head;
  fs::resize_file(path, head.size() + uint64_t(n) * 4);

  rusage before{}, after{};
  getrusage(RUSAGE_SELF, &before);
  onnx::ModelProto loaded = symoc::loadModel(path);
  getrusage(RUSAGE_SELF, &after);
  ASSERT_EQ(loaded.graph().initializer_size(), 1);
  const auto &t = loaded.graph().initializer(0);
  EXPECT_TRUE(symoc::isDeferred(t));
  EXPECT_EQ(symoc::externalDataRange(t), std::make_pair(int64_t(head.size()), n * 4));
  long grownMiB = (after.ru_maxrss - before.ru_maxrss) / 1024;
  EXPECT_LT(grownMiB, 64) << "peak RSS grew by " << grownMiB << " MiB";
}

// The scan drops mapped pages behind its cursor every 8 MiB: a graph whose
// nodes come after 24 MiB of initializers (fields in any order are valid
// protobuf) must load whole, and every payload must read back.
TEST(ModelIODeferred, NodesAfterLargeInitializersSurviveReleasedPages) {
  TempDir dir;
  const int kTensors = 6, kFloats = 1 << 20; // 4 MiB each
  onnx::ModelProto head;
  head.set_ir_version(8);
  head.add_opset_import()->set_version(17);
  onnx::GraphProto inits, nodes;
  for (int i = 0; i < kTensors; ++i)
    *inits.add_initializer() = floatTensor("W" + std::to_string(i), ramp(kFloats, float(i + 1)),
                                           /*raw=*/true);
  std::string prev = "W0";
  for (int i = 1; i < kTensors; ++i) {
    auto *n = nodes.add_node();
    n->set_op_type("Add");
    n->add_input(prev);
    n->add_input("W" + std::to_string(i));
    prev = "s" + std::to_string(i);
    n->add_output(prev);
  }
  nodes.add_output()->set_name(prev);
  std::string graph = inits.SerializeAsString() + nodes.SerializeAsString(); // merged
  std::string len;
  for (uint64_t v = graph.size(); ; v >>= 7) {
    if (v < 0x80) { len.push_back(char(v)); break; }
    len.push_back(char(uint8_t(v) | 0x80));
  }
  std::string path = dir.file("order.onnx");
  std::ofstream(path, std::ios::binary) << head.SerializeAsString() << '\x3a' << len << graph;

  onnx::ModelProto m = symoc::loadModel(path);
  ASSERT_EQ(m.graph().node_size(), kTensors - 1);
  EXPECT_EQ(m.graph().node(kTensors - 2).output(0), prev);
  ASSERT_EQ(m.graph().initializer_size(), kTensors);
  for (int i = 0; i < kTensors; ++i) {
    SCOPED_TRACE(i);
    const auto &t = m.graph().initializer(i);
    EXPECT_TRUE(symoc::isDeferred(t));
    std::vector<double> v = symoc::tensorToDouble(t, path);
    ASSERT_EQ(v.size(), size_t(kFloats));
    EXPECT_EQ(v, asDoubles(ramp(kFloats, float(i + 1))));
  }
}

// Differential check of the wire scan against protobuf on corrupted files:
// 1500 copies of the test model with 1 to 3 random bytes changed (fixed seed).
// loadModel must call a file malformed exactly when protobuf cannot parse it,
// and every initializer it loads must read back the values protobuf's own
// parse of the same bytes holds.
TEST(ModelIODeferred, AgreesWithProtobufOnCorruptedModels) {
  TempDir dir;
  const std::string bytes = model().SerializeAsString();
  const std::string malformed = "not a valid ONNX protobuf (malformed or truncated)";
  std::string path = dir.file("mut.onnx");
  uint64_t state = 12345;
  auto next = [&] { // xorshift64
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
  };
  int loaded = 0, refused = 0;
  for (int iter = 0; iter < 1500; ++iter) {
    std::string b = bytes;
    int changes = 1 + int(next() % 3);
    for (int k = 0; k < changes; ++k)
      b[next() % b.size()] = char(next() & 0xff);
    std::ofstream(path, std::ios::binary | std::ios::trunc) << b;
    onnx::ModelProto full;
    bool parses = full.ParseFromString(b);
    onnx::ModelProto m;
    std::string err = errorOf([&] { m = symoc::loadModel(path); });
    SCOPED_TRACE("iteration " + std::to_string(iter) + ": " + err);
    if (!parses) {
      EXPECT_EQ(err, path + ": " + malformed);
      ++refused;
      continue;
    }
    EXPECT_NE(err, path + ": " + malformed);
    if (!err.empty())
      continue; // refused by a graph check, as the inline model would be
    ++loaded;
    ASSERT_EQ(m.graph().initializer_size(), full.graph().initializer_size());
    for (int i = 0; i < full.graph().initializer_size(); ++i) {
      std::vector<double> want, got;
      std::string e1 = errorOf([&] { want = symoc::tensorToDouble(full.graph().initializer(i), path); });
      std::string e2 = errorOf([&] { got = symoc::tensorToDouble(m.graph().initializer(i), path); });
      EXPECT_EQ(e1.empty(), e2.empty()) << e1 << " / " << e2;
      // Bitwise: a corrupted payload may hold NaNs.
      if (e1.empty() && e2.empty())
        EXPECT_TRUE(got.size() == want.size() &&
                    std::memcmp(got.data(), want.data(), got.size() * sizeof(double)) == 0)
            << m.graph().initializer(i).name();
    }
  }
  // Both outcomes occur, so the comparison covered both.
  EXPECT_GT(loaded, 100);
  EXPECT_GT(refused, 0);
}
