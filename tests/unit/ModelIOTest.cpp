//===- ModelIOTest.cpp - Unit tests of symoc/ModelIO ----------------------===//
//
// Loading models (binary and text), the checks loadModel makes, external data
// validation and tensor decoding. Expected values come from the ONNX and IEEE
// definitions (e.g. float16 0x3C00 is 1.0), not from running the code.
//
//===----------------------------------------------------------------------===//

#include "symoc/ModelIO/ModelIO.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

namespace fs = std::filesystem;
using symoc::Error;

namespace {

/// A fresh directory per test, removed afterwards.
class TempDir {
public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "symoc-unit-XXXXXX").string();
    if (!mkdtemp(tmpl.data()))
      throw std::runtime_error("mkdtemp failed");
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string file(const std::string &name) const { return (path / name).string(); }
  void write(const std::string &name, const std::string &bytes) const {
    std::ofstream(file(name), std::ios::binary) << bytes;
  }
  fs::path path;
};

const char *kGemmText = R"(<ir_version: 8, opset_import: ["" : 17]>
g (float[2, 4] X, float[3, 4] W = {1., 2., 3., 4., 5., 6., 7., 8., 9., 10., 11., 12.}) => (float[2, 3] Y) {
  Y = Gemm <transB = 1> (X, W)
}
)";

/// The message of the symoc::Error that `f` throws ("" when it throws none).
template <typename F> std::string errorOf(F &&f) {
  try {
    f();
  } catch (const Error &e) {
    return e.what();
  }
  return "";
}

bool startsWith(const std::string &s, const std::string &prefix) {
  return s.compare(0, prefix.size(), prefix) == 0;
}

onnx::TensorProto externalTensor(const std::string &location, int64_t offset,
                                 int64_t length) {
  onnx::TensorProto t;
  t.set_name("W");
  t.set_data_type(onnx::TensorProto::FLOAT);
  t.add_dims(2);
  t.set_data_location(onnx::TensorProto::EXTERNAL);
  auto add = [&](const char *k, const std::string &v) {
    auto *e = t.add_external_data();
    e->set_key(k);
    e->set_value(v);
  };
  add("location", location);
  add("offset", std::to_string(offset));
  if (length >= 0)
    add("length", std::to_string(length));
  return t;
}

} // namespace

TEST(ModelIO, ParsesTextModel) {
  onnx::ModelProto m = symoc::parseTextModel(kGemmText, "g.onnxtxt");
  ASSERT_EQ(m.graph().node_size(), 1);
  EXPECT_EQ(m.graph().node(0).op_type(), "Gemm");
  ASSERT_EQ(m.graph().initializer_size(), 1);
  EXPECT_EQ(m.graph().initializer(0).name(), "W");
  EXPECT_EQ(symoc::opsetVersion(m, ""), 17);
}

TEST(ModelIO, TextParseErrorIsOneLineNamingTheFile) {
  std::string msg = errorOf([] { symoc::parseTextModel("<ir_version: 8>\ng (", "bad.onnxtxt"); });
  EXPECT_TRUE(startsWith(msg, "bad.onnxtxt: cannot parse ONNX text")) << msg;
  EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
}

TEST(ModelIO, LoadsBinaryAndTextAndAgrees) {
  TempDir dir;
  onnx::ModelProto text = symoc::parseTextModel(kGemmText, "g");
  dir.write("g.onnx", text.SerializeAsString());
  dir.write("g.onnxtxt", kGemmText);
  // Text detected by content, whatever the extension.
  dir.write("text-named.onnx", std::string("\n  ") + kGemmText);
  for (const char *name : {"g.onnx", "g.onnxtxt", "text-named.onnx"}) {
    onnx::ModelProto m = symoc::loadModel(dir.file(name));
    EXPECT_EQ(m.SerializeAsString(), text.SerializeAsString()) << name;
  }
}

TEST(ModelIO, RejectsFilesThatAreNotModels) {
  TempDir dir;
  dir.write("empty.onnx", "");
  dir.write("junk.onnx", std::string("\x8a\x01\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 12));
  fs::create_directory(dir.path / "d.onnx");
  onnx::ModelProto m = symoc::parseTextModel(kGemmText, "g");
  std::string bytes = m.SerializeAsString();
  dir.write("cut.onnx", bytes.substr(0, bytes.size() / 2));

  struct Case {
    const char *file, *problem;
  } cases[] = {
      {"empty.onnx", "empty file, not an ONNX model"},
      {"junk.onnx", "not a valid ONNX protobuf (malformed or truncated)"},
      {"d.onnx", "is a directory, not an ONNX model file"},
      {"cut.onnx", "not a valid ONNX protobuf (malformed or truncated)"},
      {"absent.onnx", "no such file"},
  };
  for (const auto &c : cases) {
    std::string path = dir.file(c.file);
    EXPECT_EQ(errorOf([&] { symoc::loadModel(path); }), path + ": " + c.problem);
  }
}

TEST(ModelIO, RejectsModelsOverTwoGigabytesBySize) {
  TempDir dir;
  std::string path = dir.file("huge.onnx");
  { std::ofstream(path) << ""; }
  fs::resize_file(path, uint64_t(3) << 30); // sparse: no disk used
  std::string msg = errorOf([&] { symoc::loadModel(path); });
  EXPECT_TRUE(startsWith(msg, path + ": model is 3072 MiB, over protobuf's 2 GB limit")) << msg;
}

TEST(ModelIO, ChecksGraphStructure) {
  TempDir dir;
  auto load = [&](const std::string &text) {
    dir.write("m.onnxtxt", text);
    return errorOf([&] { symoc::loadModel(dir.file("m.onnxtxt")); });
  };
  std::string p = dir.file("m.onnxtxt") + ": ";
  EXPECT_EQ(load(R"(<ir_version: 8, opset_import: ["" : 17]>
g (float[2] X) => (float[2] Y) { Y = Add (X, Z) })"),
            p + "node 'Add #0' (Add) uses undefined value 'Z'");
  EXPECT_EQ(load(R"(<ir_version: 8, opset_import: ["" : 17]>
g (float[2] X) => (float[2] Y) { Z = Relu (X) })"),
            p + "graph output 'Y' is never defined");
  EXPECT_EQ(load(R"(<ir_version: 8, opset_import: ["" : 17, "org.example" : 1]>
g (float[2] X) => (float[2] Y) { Y = Relu (X) })"),
            p + "unsupported opset domain 'org.example'");
  // A value used before the node that defines it is also undefined (ONNX graphs are
  // topologically sorted).
  EXPECT_EQ(load(R"(<ir_version: 8, opset_import: ["" : 17]>
g (float[2] X) => (float[2] Y) {
  Y = Relu (Z)
  Z = Relu (X)
})"),
            p + "node 'Relu #0' (Relu) uses undefined value 'Z'");
  // A graph without outputs computes nothing (claims on it held vacuously).
  EXPECT_EQ(load(R"(<ir_version: 8, opset_import: ["" : 17]>
g (float[2] X) => () { Y = Relu (X) })"),
            p + "the graph has no outputs");
  // A negative input size is refused (it had been taken as symbolic).
  EXPECT_EQ(load(R"(<ir_version: 8, opset_import: ["" : 17]>
g (float[-4, 2] X) => (float[-4, 2] Y) { Y = Relu (X) })"),
            p + "graph input 'X' has size -4 in dimension 0");
  // Known extra domains are accepted.
  EXPECT_EQ(load(R"(<ir_version: 8, opset_import: ["" : 17, "com.microsoft" : 1]>
g (float[2] X) => (float[2] Y) { Y = Relu (X) })"),
            "");
}

TEST(ModelIO, ExternalDataMustStayInTheModelFolder) {
  TempDir dir;
  fs::create_directory(dir.path / "m");
  std::string model = (dir.path / "m" / "model.onnx").string();
  dir.write("m/w.bin", std::string(8, '\0'));
  dir.write("outside.bin", std::string(8, '\0'));
  fs::create_symlink(dir.path / "outside.bin", dir.path / "m" / "link.bin");
  std::string what = model + ": initializer 'W': external data ";

  EXPECT_EQ(symoc::externalDataPath(model, externalTensor("w.bin", 0, 8)),
            fs::weakly_canonical(dir.path / "m" / "w.bin").string());
  EXPECT_EQ(errorOf([&] { symoc::externalDataPath(model, externalTensor("/etc/passwd", 0, 8)); }),
            what + "location '/etc/passwd' is an absolute path; only paths inside the "
                   "model's folder are allowed");
  EXPECT_EQ(errorOf([&] { symoc::externalDataPath(model, externalTensor("../outside.bin", 0, 8)); }),
            what + "location '../outside.bin' leaves the model's folder ('..')");
  EXPECT_EQ(errorOf([&] { symoc::externalDataPath(model, externalTensor("sub/../../outside.bin", 0, 8)); }),
            what + "location 'sub/../../outside.bin' leaves the model's folder ('..')");
  EXPECT_EQ(errorOf([&] { symoc::externalDataPath(model, externalTensor("link.bin", 0, 8)); }),
            what + "file 'link.bin' resolves outside the model's folder");
  EXPECT_EQ(errorOf([&] { symoc::externalDataPath(model, externalTensor("nope.bin", 0, 8)); }),
            what + "file 'nope.bin' not found next to the model");
  EXPECT_EQ(errorOf([&] { symoc::externalDataPath(model, externalTensor("w.bin", 4, 8)); }),
            what + "range [4, 12) is past the end of 'w.bin' (8 bytes)");
  EXPECT_EQ(errorOf([&] { symoc::externalDataPath(model, externalTensor("w.bin", -1, 8)); }),
            what + "has an invalid offset or length");
}

TEST(ModelIO, ExternalDataRange) {
  using Range = std::pair<int64_t, int64_t>;
  EXPECT_EQ(symoc::externalDataRange(externalTensor("w", 16, 8)), Range(16, 8));
  EXPECT_EQ(symoc::externalDataRange(externalTensor("w", 0, -1)), Range(0, -1));
  onnx::TensorProto t = externalTensor("w", 0, 8);
  t.mutable_external_data(1)->set_value("twelve");
  EXPECT_EQ(symoc::externalDataRange(t).first, -2); // unparsable: invalid
}

TEST(ModelIO, ReadsExternalTensorData) {
  TempDir dir;
  std::string model = dir.file("model.onnx");
  float values[2] = {1.5f, -2.25f};
  std::string bytes(4, 'x'); // 4 bytes of padding before the tensor
  bytes.append(reinterpret_cast<const char *>(values), sizeof(values));
  dir.write("w.bin", bytes);
  onnx::TensorProto t = externalTensor("w.bin", 4, 8);
  EXPECT_TRUE(symoc::isExternal(t));
  EXPECT_EQ(symoc::tensorToDouble(t, model), (std::vector<double>{1.5, -2.25}));
  // A length that does not match the shape is an error, not a silent misread.
  onnx::TensorProto wrong = externalTensor("w.bin", 0, 12);
  EXPECT_EQ(errorOf([&] { symoc::tensorToDouble(wrong, model); }),
            model + ": initializer 'W': external length 12 does not match its shape (8 bytes)");
}

TEST(ModelIO, ExternalDataMustHoldTheWholeTensorWhenLoaded) {
  // W is [2] float: 8 bytes. Without a length, a file too short passed loading (analyze and
  // compile never read the values) and failed later with std::bad_alloc or a short read.
  TempDir dir;
  std::string model = dir.file("model.onnx");
  auto write = [&](const onnx::TensorProto &w) {
    onnx::ModelProto m;
    m.set_ir_version(8);
    m.add_opset_import()->set_version(17);
    auto *g = m.mutable_graph();
    g->set_name("g");
    *g->add_initializer() = w;
    auto *n = g->add_node();
    n->set_op_type("Identity");
    n->add_input("W");
    n->add_output("Y");
    g->add_output()->set_name("Y");
    std::ofstream out(model, std::ios::binary);
    m.SerializeToOstream(&out);
  };
  dir.write("w.bin", std::string(4, '\0'));
  write(externalTensor("w.bin", 0, -1));
  EXPECT_EQ(errorOf([&] { symoc::loadModel(model); }),
            model + ": initializer 'W': external data needs bytes [0, 8) of a file of 4 bytes");
  dir.write("w.bin", std::string(8, '\0'));
  write(externalTensor("w.bin", 0, 6));
  EXPECT_EQ(errorOf([&] { symoc::loadModel(model); }),
            model + ": initializer 'W': external length 6 does not match its shape (8 bytes)");
  write(externalTensor("w.bin", 0, -1));
  EXPECT_EQ(errorOf([&] { symoc::loadModel(model); }), "");
}

TEST(ModelIO, NumElements) {
  onnx::TensorProto t;
  EXPECT_EQ(symoc::numElements(t), 1); // a scalar
  t.add_dims(2);
  t.add_dims(3);
  t.add_dims(4);
  EXPECT_EQ(symoc::numElements(t), 24);
  t.add_dims(0);
  EXPECT_EQ(symoc::numElements(t), 0);
}

TEST(ModelIO, DecodesEveryStorageForm) {
  onnx::TensorProto f;
  f.set_name("f");
  f.set_data_type(onnx::TensorProto::FLOAT);
  f.add_dims(3);
  for (float v : {0.5f, -1.0f, 3.0f})
    f.add_float_data(v);
  EXPECT_EQ(symoc::tensorToDouble(f, "m"), (std::vector<double>{0.5, -1.0, 3.0}));

  onnx::TensorProto raw = f;
  raw.clear_float_data();
  float rv[3] = {0.25f, 8.0f, -0.125f};
  raw.set_raw_data(std::string(reinterpret_cast<const char *>(rv), sizeof(rv)));
  EXPECT_EQ(symoc::tensorToDouble(raw, "m"), (std::vector<double>{0.25, 8.0, -0.125}));

  // IEEE half: 0x3C00 = 1, 0xC000 = -2, 0x0001 = 2^-24 (smallest subnormal), 0x7C00 = inf.
  onnx::TensorProto h;
  h.set_name("h");
  h.set_data_type(onnx::TensorProto::FLOAT16);
  h.add_dims(4);
  for (int v : {0x3C00, 0xC000, 0x0001, 0x7C00})
    h.add_int32_data(v);
  auto hv = symoc::tensorToDouble(h, "m");
  ASSERT_EQ(hv.size(), 4u);
  EXPECT_EQ(hv[0], 1.0);
  EXPECT_EQ(hv[1], -2.0);
  EXPECT_EQ(hv[2], std::ldexp(1.0, -24));
  EXPECT_TRUE(std::isinf(hv[3]) && hv[3] > 0);

  // bfloat16 is the top half of a float: 0x3F80 = 1, 0x4049 = 3.140625.
  onnx::TensorProto bf;
  bf.set_name("bf");
  bf.set_data_type(onnx::TensorProto::BFLOAT16);
  bf.add_dims(2);
  uint16_t bfv[2] = {0x3F80, 0x4049};
  bf.set_raw_data(std::string(reinterpret_cast<const char *>(bfv), sizeof(bfv)));
  EXPECT_EQ(symoc::tensorToDouble(bf, "m"), (std::vector<double>{1.0, 3.140625}));

  // Sizes that do not match the shape are errors.
  onnx::TensorProto shortRaw = raw;
  shortRaw.set_raw_data(shortRaw.raw_data().substr(0, 5));
  EXPECT_EQ(errorOf([&] { symoc::tensorToDouble(shortRaw, "m"); }),
            "m: tensor 'f': raw_data has 5 bytes, its shape needs 12");
  onnx::TensorProto fewer = f;
  fewer.add_dims(2); // now [3, 2] with 3 values
  EXPECT_EQ(errorOf([&] { symoc::tensorToDouble(fewer, "m"); }),
            "m: tensor 'f' holds 3 values, its shape needs 6");
}

TEST(ModelIO, ReadsIntegersExactly) {
  onnx::TensorProto t;
  t.set_name("s");
  t.set_data_type(onnx::TensorProto::INT64);
  t.add_dims(3);
  // Values a double cannot hold exactly must survive.
  const int64_t big = (int64_t(1) << 62) + 1;
  for (int64_t v : {int64_t(-1), big, int64_t(7)})
    t.add_int64_data(v);
  EXPECT_EQ(symoc::tensorToInt64(t, "m"), (std::vector<int64_t>{-1, big, 7}));

  onnx::TensorProto raw = t;
  raw.clear_int64_data();
  int64_t rv[3] = {big, -5, 0};
  raw.set_raw_data(std::string(reinterpret_cast<const char *>(rv), sizeof(rv)));
  EXPECT_EQ(symoc::tensorToInt64(raw, "m"), (std::vector<int64_t>{big, -5, 0}));

  onnx::TensorProto i32;
  i32.set_name("i");
  i32.set_data_type(onnx::TensorProto::INT32);
  i32.add_dims(2);
  i32.add_int32_data(-3);
  i32.add_int32_data(40000);
  EXPECT_EQ(symoc::tensorToInt64(i32, "m"), (std::vector<int64_t>{-3, 40000}));

  onnx::TensorProto b;
  b.set_name("b");
  b.set_data_type(onnx::TensorProto::BOOL);
  b.add_dims(3);
  b.set_raw_data(std::string("\x01\x00\x01", 3));
  EXPECT_EQ(symoc::tensorToInt64(b, "m"), (std::vector<int64_t>{1, 0, 1}));

  onnx::TensorProto f;
  f.set_name("f");
  f.set_data_type(onnx::TensorProto::FLOAT);
  f.add_float_data(1.0f);
  EXPECT_EQ(errorOf([&] { symoc::tensorToInt64(f, "m"); }),
            "m: tensor 'f' is float, expected an integer tensor");

  onnx::TensorProto mismatch = t;
  mismatch.add_int64_data(9); // 4 values for shape [3]
  EXPECT_EQ(errorOf([&] { symoc::tensorToInt64(mismatch, "m"); }),
            "m: tensor 's' size does not match its shape");
}

TEST(ModelIO, DataTypeNamesAndOpsets) {
  EXPECT_EQ(symoc::dataTypeName(onnx::TensorProto::FLOAT), "float");
  EXPECT_EQ(symoc::dataTypeName(onnx::TensorProto::INT64), "int64");
  EXPECT_EQ(symoc::dataTypeName(onnx::TensorProto::BFLOAT16), "bfloat16");
  EXPECT_EQ(symoc::dataTypeName(99), "type#99");

  onnx::ModelProto m;
  auto *op = m.add_opset_import();
  op->set_domain("ai.onnx"); // same as ""
  op->set_version(13);
  op = m.add_opset_import();
  op->set_domain("com.microsoft");
  op->set_version(1);
  EXPECT_EQ(symoc::opsetVersion(m, ""), 13);
  EXPECT_EQ(symoc::opsetVersion(m, "ai.onnx"), 13);
  EXPECT_EQ(symoc::opsetVersion(m, "com.microsoft"), 1);
  EXPECT_EQ(symoc::opsetVersion(m, "ai.onnx.ml"), -1);
}

TEST(ModelIO, FailKeepsMessagesOnOneLine) {
  std::string msg = errorOf([] { symoc::fail("f.onnx", "first\nsecond\nthird"); });
  EXPECT_EQ(msg, "f.onnx: first second third");
}
