//===- ImporterTest.cpp - Unit tests of symoc/Importer --------------------===//
//
// importModel on small models written in ONNX's text syntax: which values become
// parameters or constants, what curated and generic ops carry, the options
// (--dim, --frozen, --constant-params) and the notes. Each expectation follows
// from the model text (shapes worked out by hand from ONNX's op definitions).
//
//===----------------------------------------------------------------------===//

#include "symoc/Importer/Importer.h"
#include "symoc/ModelIO/ModelIO.h"

#include "symoc/Dialect/Graph/GraphOps.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/BuiltinTypes.h"

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

using namespace mlir;
using symoc::ImportOptions;

namespace {

struct Imported {
  MLIRContext ctx;
  OwningOpRef<ModuleOp> module;
  symoc::ImportNotes notes;

  func::FuncOp main() { return module->lookupSymbol<func::FuncOp>("main"); }

  /// Op names in order of the body, e.g. {"graph.param", "graph.Gemm", "func.return"}.
  std::vector<std::string> opNames() {
    std::vector<std::string> names;
    for (Operation &op : main().getBody().front())
      names.push_back(op.getName().getStringRef().str());
    return names;
  }

  /// graph.param name -> shape.
  std::map<std::string, std::vector<int64_t>> params() {
    std::map<std::string, std::vector<int64_t>> out;
    main().walk([&](symoc::graph::ParamOp p) {
      auto t = cast<RankedTensorType>(p.getType());
      out[p.getName().str()] = std::vector<int64_t>(t.getShape().begin(), t.getShape().end());
    });
    return out;
  }

  std::string shapeOf(Value v) {
    std::string s;
    llvm::raw_string_ostream os(s);
    v.getType().print(os);
    return os.str();
  }
};

std::unique_ptr<Imported> importText(const std::string &text,
                                     const ImportOptions &opts = {}) {
  auto r = std::make_unique<Imported>();
  onnx::ModelProto m = symoc::parseTextModel(text, "test.onnxtxt");
  r->module = symoc::importModel(r->ctx, m, "test.onnxtxt", opts, r->notes);
  return r;
}

template <typename F> std::string errorOf(F &&f) {
  try {
    f();
  } catch (const symoc::Error &e) {
    return e.what();
  }
  return "";
}

const char *kMlp = R"(<ir_version: 8, opset_import: ["" : 14]>
mlp (float[N, 4] x, float[3, 4] w1 = {1., 2., 3., 4., 5., 6., 7., 8., 9., 10., 11., 12.},
     float[3] b1 = {1., 2., 3.}, float[2, 3] w2 = {1., 2., 3., 4., 5., 6.}) => (float[N, 2] y) {
  h = Gemm <transB = 1> (x, w1, b1)
  r = Relu (h)
  w2_t = Transpose (w2)
  y = MatMul (r, w2_t)
}
)";

std::string mlpText() { return kMlp; }

} // namespace

TEST(Importer, ParametersAreShapeOnlyAndNamed) {
  auto r = importText(mlpText());
  EXPECT_EQ(r->params(), (std::map<std::string, std::vector<int64_t>>{
                             {"w1", {3, 4}}, {"b1", {3}}, {"w2", {2, 3}}}));
  EXPECT_EQ(r->opNames(),
            (std::vector<std::string>{"graph.param", "graph.param", "graph.param", "graph.Gemm",
                                      "graph.Relu", "graph.Transpose", "graph.MatMul",
                                      "func.return"}));
  // The input keeps its symbolic batch dimension.
  func::FuncOp fn = r->main();
  ASSERT_EQ(fn.getNumArguments(), 1u);
  EXPECT_EQ(r->shapeOf(fn.getArgument(0)), "tensor<?x4xf32>");
  EXPECT_EQ(fn.getArgAttrOfType<StringAttr>(0, "graph.name").getValue(), "x");
  EXPECT_TRUE(r->notes.lines.empty());
  EXPECT_TRUE(r->notes.genericOps.empty());
}

TEST(Importer, DimOptionBindsSymbolicDims) {
  ImportOptions opts;
  opts.dims["N"] = 5;
  auto r = importText(mlpText(), opts);
  EXPECT_EQ(r->shapeOf(r->main().getArgument(0)), "tensor<5x4xf32>");
  // Inference carries it through: Gemm [5,4]x[3,4]^T -> [5,3]; MatMul [5,3]x[3,2] -> [5,2].
  std::vector<std::string> shapes;
  r->main().walk([&](Operation *op) {
    if (isa<symoc::graph::GemmOp, symoc::graph::MatMulOp>(op))
      shapes.push_back(r->shapeOf(op->getResult(0)));
  });
  EXPECT_EQ(shapes, (std::vector<std::string>{"tensor<5x3xf32>", "tensor<5x2xf32>"}));
}

TEST(Importer, FrozenInitializersAreConstants) {
  ImportOptions opts;
  opts.frozen = {"b1"};
  auto r = importText(mlpText(), opts);
  EXPECT_EQ(r->params().count("b1"), 0u);
  EXPECT_EQ(r->params().size(), 2u);
  int frozen = 0;
  r->main().walk([&](symoc::graph::ConstantOp c) {
    if (c->hasAttr("frozen") && c.getNameAttr() && c.getNameAttr().getValue() == "b1")
      ++frozen;
  });
  EXPECT_EQ(frozen, 1);
}

TEST(Importer, SmallIntegerTensorsAreReadFloatWeightsAreNot) {
  auto r = importText(R"(<ir_version: 8, opset_import: ["" : 14]>
g (float[2, 6] x, int64[2] shape = {3, 4}, float[6] w = {1., 2., 3., 4., 5., 6.}, float s = {2.5}) => (float[3, 4] y) {
  a = Mul (x, w)
  b = Mul (a, s)
  y = Reshape (b, shape)
})");
  std::map<std::string, std::string> values;
  r->main().walk([&](symoc::graph::ConstantOp c) {
    std::string text;
    llvm::raw_string_ostream os(text);
    if (c.getValueAttr())
      c.getValueAttr().print(os);
    values[c.getNameAttr().getValue().str()] = os.str();
  });
  EXPECT_EQ(values, (std::map<std::string, std::string>{
                        {"shape", "dense<[3, 4]> : tensor<2xi64>"},
                        {"s", "dense<2.500000e+00> : tensor<f32>"}}));
  EXPECT_EQ(r->params().count("w"), 1u);
}

TEST(Importer, UnknownOpsAreGenericAndNoted) {
  auto r = importText(R"(<ir_version: 8, opset_import: ["" : 17, "com.microsoft" : 1]>
g (float[2, 4] x) => (float[2, 4] y) {
  a = Hardmax <axis = 1> (x)
  y = com.microsoft.Gelu (a)
})");
  std::vector<std::string> seen;
  r->main().walk([&](symoc::graph::GenericOp g) {
    seen.push_back(g.getOpType().str() + "@" + g.getDomain().str() + ":" +
                   std::to_string(g.getVersion()));
  });
  EXPECT_EQ(seen, (std::vector<std::string>{"Hardmax@:17", "Gelu@com.microsoft:1"}));
  EXPECT_EQ(r->notes.genericOps, (std::vector<std::string>{"Gelu", "Hardmax"}));
  ASSERT_EQ(r->notes.lines.size(), 1u);
  EXPECT_EQ(r->notes.lines[0], "ops without a symmetry rule (barriers): Gelu, Hardmax");
  EXPECT_TRUE(symoc::isCuratedOp("Gemm"));
  EXPECT_TRUE(symoc::isCuratedOp("LayerNormalization"));
  EXPECT_FALSE(symoc::isCuratedOp("Hardmax"));
}

namespace {
// Weights as float Constant nodes and no initializer (like mlp_tanh_constants).
const char *kConstantWeights = R"(<ir_version: 8, opset_import: ["" : 14]>
g (float[2, 4] x) => (float[2, 3] y) {
  w = Constant <value = float[3, 4] {1., 2., 3., 4., 5., 6., 7., 8., 9., 10., 11., 12.}> ()
  b = Constant <value_floats = [0.5, 0.25, 0.125]> ()
  k = Constant <value = float {2.0}> ()
  h = Gemm <transB = 1> (x, w, b)
  y = Mul (h, k)
})";
} // namespace

TEST(Importer, ConstantParamsAutoYesNo) {
  auto autoR = importText(kConstantWeights);
  // auto: no float initializer at all, so multi-element float Constants are the weights;
  // the scalar k stays a constant.
  EXPECT_EQ(autoR->params(),
            (std::map<std::string, std::vector<int64_t>>{{"w", {3, 4}}, {"b", {3}}}));
  ASSERT_EQ(autoR->notes.lines.size(), 1u);
  EXPECT_EQ(autoR->notes.lines[0],
            "2 weights were stored as float Constant nodes; imported as parameters");
  int fromConstant = 0;
  autoR->main().walk([&](symoc::graph::ParamOp p) { fromConstant += p.getFromConstant(); });
  EXPECT_EQ(fromConstant, 2);

  ImportOptions no;
  no.constantParams = ImportOptions::ConstantParams::No;
  EXPECT_TRUE(importText(kConstantWeights, no)->params().empty());

  // auto with a float initializer present: Constants are fixed tensors; yes forces them.
  std::string withInit = kConstantWeights;
  withInit.replace(withInit.find("float[2, 4] x)"), 14,
                   "float[2, 4] x, float[3] extra = {1., 2., 3.})");
  EXPECT_EQ(importText(withInit)->params(),
            (std::map<std::string, std::vector<int64_t>>{{"extra", {3}}}));
  ImportOptions yes;
  yes.constantParams = ImportOptions::ConstantParams::Yes;
  EXPECT_EQ(importText(withInit, yes)->params().size(), 3u);
}

TEST(Importer, ShapeChainsFoldToStaticReshapes) {
  auto r = importText(R"(<ir_version: 8, opset_import: ["" : 14]>
g (float[2, 8, 6] x) => (float[2, 8, 2, 3] y) {
  s = Shape (x)
  i = Constant <value = int64[2] {0, 1}> ()
  d = Gather <axis = 0> (s, i)
  tail = Constant <value = int64[2] {2, 3}> ()
  shape = Concat <axis = 0> (d, tail)
  y = Reshape (x, shape)
})");
  EXPECT_EQ(r->opNames(), (std::vector<std::string>{"graph.constant", "graph.Reshape",
                                                    "func.return"}));
  std::string value;
  r->main().walk([&](symoc::graph::ConstantOp c) {
    llvm::raw_string_ostream os(value);
    c.getValueAttr().print(os);
  });
  EXPECT_EQ(value, "dense<[2, 8, 2, 3]> : tensor<4xi64>");
  ASSERT_FALSE(r->notes.lines.empty());
  EXPECT_EQ(r->notes.lines.back(), "folded 5 shape-arithmetic nodes into constants");
}

// torch's F.pad(x, (0, 0, 0, pad_r, 0, pad_b)) with pad_r = (4 - W % 4) % 4, as in
// Swin: Mod, then a [4, 2] table reversed by a step -1 Slice and transposed. All of
// it folds, so the Pad's output is static (ONNX 1.12 alone gives ?x?x?x?).
TEST(Importer, TorchPadWidthsFoldToAStaticPad) {
  auto r = importText(R"(<ir_version: 8, opset_import: ["" : 14]>
g (float[1, 6, 6, 4] x) => (float[1, H, W, 4] y) {
  s = Shape (x)
  one = Constant <value = int64 {1}> ()
  four = Constant <value = int64 {4}> ()
  h = Gather <axis = 0> (s, one)
  rem = Mod (h, four)
  d = Sub (four, rem)
  m = Mod (d, four)
  ax0 = Constant <value = int64[1] {0}> ()
  mu = Unsqueeze (m, ax0)
  z1 = Constant <value = int64[1] {0}> ()
  z2 = Constant <value = int64[2] {0, 0}> ()
  p = Concat <axis = 0> (z2, z1, mu, z1, mu, z2)
  s42 = Constant <value = int64[2] {4, 2}> ()
  p42 = Reshape (p, s42)
  sm1 = Constant <value = int64[1] {-1}> ()
  big = Constant <value = int64[1] {-9223372036854775807}> ()
  rev = Slice (p42, sm1, big, ax0, sm1)
  tr = Transpose <perm = [1, 0]> (rev)
  pads = Reshape (tr, sm1)
  y = Pad (x, pads)
})");
  std::string padType, pads;
  r->main().walk([&](mlir::Operation *op) {
    if (op->getName().getStringRef() == "graph.Pad") {
      padType = r->shapeOf(op->getResult(0));
      if (auto c = op->getOperand(1).getDefiningOp<symoc::graph::ConstantOp>()) {
        llvm::raw_string_ostream os(pads);
        c.getValueAttr().print(os);
      }
    }
  });
  EXPECT_EQ(pads, "dense<[0, 0, 0, 0, 0, 2, 2, 0]> : tensor<8xi64>");
  EXPECT_EQ(padType, "tensor<1x8x8x4xf32>");
}

TEST(Importer, RejectsOpsetsOutsideSeventoSeventeen) {
  auto opsetModel = [](int v) {
    return "<ir_version: 8, opset_import: [\"\" : " + std::to_string(v) +
           "]>\ng (float[2] x) => (float[2] y) { y = Relu (x) }";
  };
  EXPECT_EQ(errorOf([&] { importText(opsetModel(25)); }),
            "test.onnxtxt: opset 25 is newer than symoc reads (opsets 7 to 24)");
  EXPECT_EQ(errorOf([&] { importText(opsetModel(6)); }),
            "test.onnxtxt: opset 6 is too old (symoc reads opsets 7 to 24)");
  EXPECT_EQ(errorOf([&] { importText(opsetModel(18)); }), "");
  EXPECT_EQ(errorOf([&] { importText(opsetModel(24)); }), "");
  EXPECT_EQ(errorOf([&] { importText(opsetModel(7)); }), "");
  EXPECT_EQ(errorOf([&] { importText(opsetModel(17)); }), "");
}

TEST(Importer, ImportModelFileReadsFixtures) {
  // The committed fixture, when the source tree is there.
  std::string path = std::string(SYMOC_MODELS_DIR) + "/mlp_relu.onnx";
  MLIRContext ctx;
  symoc::ImportNotes notes;
  auto module = symoc::importModelFile(ctx, path, {}, notes);
  std::map<std::string, std::vector<int64_t>> params;
  module->walk([&](symoc::graph::ParamOp p) {
    auto t = cast<RankedTensorType>(p.getType());
    params[p.getName().str()] = {t.getShape().begin(), t.getShape().end()};
  });
  // models/README.md: fc1(16->32) fc2(32->32) fc3(32->10), torch Linear weights [out, in].
  EXPECT_EQ(params, (std::map<std::string, std::vector<int64_t>>{
                        {"fc1.weight", {32, 16}}, {"fc1.bias", {32}},
                        {"fc2.weight", {32, 32}}, {"fc2.bias", {32}},
                        {"fc3.weight", {10, 32}}, {"fc3.bias", {10}}}));
}
