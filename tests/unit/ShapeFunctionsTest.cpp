//===- ShapeFunctionsTest.cpp - Unit tests of symoc's own shape functions -===//
//
// Every op with a shape function gets three cases on a one-node model written
// in ONNX's text syntax (shapes worked out by hand from the op's definition):
//   known:    the output already has the right shape: nothing changes, no error;
//   filled:   the output has no rank (no value_info): completeShapes fills it;
//   conflict: the output is recorded with one dim (or the rank) wrong:
//             completeShapes throws an error naming the node.
// ONNX's own inference never runs here, so the shapes are the functions' alone.
//
//===----------------------------------------------------------------------===//

#include "symoc/Importer/ShapeFunctions.h"
#include "symoc/ModelIO/ModelIO.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

using symoc::ShapeInfo;

namespace {

struct Case {
  const char *op;
  const char *graph;    // inputs => outputs { nodes }, opset 17
  const char *output;   // the value checked
  const char *expected; // its shape, as ShapeInfo::str prints it
  int32_t elemType = 0; // checked when nonzero
};

// One node per case; the checked output is declared without a shape.
const Case kCases[] = {
    {"Add", "(float[2,1,4] a, float[3,1] b) => (float y) { y = Add(a, b) }", "y", "[2,3,4]", 1},
    {"Mod", "(int64[4] a, int64 b) => (int64 y) { y = Mod(a, b) }", "y", "[4]", 7},
    {"Equal", "(float[2,3] a, float[3] b) => (bool y) { y = Equal(a, b) }", "y", "[2,3]", 9},
    {"Where", "(bool[2,1] c, float[1,3] a, float[2,3] b) => (float y) { y = Where(c, a, b) }",
     "y", "[2,3]", 1},
    {"Not", "(bool[2,3] a) => (bool y) { y = Not(a) }", "y", "[2,3]", 9},
    {"Relu", "(float[2,3] a) => (float y) { y = Relu(a) }", "y", "[2,3]", 1},
    {"Softmax", "(float[2,3] a) => (float y) { y = Softmax<axis = -1>(a) }", "y", "[2,3]", 1},
    {"Cast", "(int64[2,3] a) => (float y) { y = Cast<to = 1>(a) }", "y", "[2,3]", 1},
    {"Dropout", "(float[2,3] a) => (float y, bool m) { y, m = Dropout(a) }", "m", "[2,3]", 9},
    {"LayerNormalization",
     "(float[2,3,4] a, float[4] g) => (float y) { y = LayerNormalization<axis = -1>(a, g) }",
     "y", "[2,3,4]", 1},
    {"MatMul", "(float[2,5,3,4] a, float[4,6] b) => (float y) { y = MatMul(a, b) }", "y",
     "[2,5,3,6]", 1},
    {"MatMul", "(float[4] a, float[3,4,6] b) => (float y) { y = MatMul(a, b) }", "y", "[3,6]"},
    {"Gemm", "(float[2,3] a, float[5,3] b) => (float y) { y = Gemm<transB = 1>(a, b) }", "y",
     "[2,5]"},
    {"Einsum",
     "(float[2,3,4,5] a, float[2,3,6,5] b) => (float y) { y = Einsum<equation = \"bhid,bhjd->bhij\">(a, b) }",
     "y", "[2,3,4,6]"},
    {"Transpose", "(float[2,3,4] a) => (float y) { y = Transpose<perm = [2,0,1]>(a) }", "y",
     "[4,2,3]"},
    {"Transpose", "(float[2,3,4] a) => (float y) { y = Transpose(a) }", "y", "[4,3,2]"},
    {"Reshape", "(float[2,3,4] a, int64[2] s = {0, -1}) => (float y) { y = Reshape(a, s) }",
     "y", "[2,12]"},
    {"Flatten", "(float[2,3,4,5] a) => (float y) { y = Flatten<axis = 2>(a) }", "y", "[6,20]"},
    {"Unsqueeze", "(float[2,3] a, int64[2] ax = {0, 3}) => (float y) { y = Unsqueeze(a, ax) }",
     "y", "[1,2,3,1]"},
    {"Squeeze", "(float[2,1,3] a, int64[1] ax = {1}) => (float y) { y = Squeeze(a, ax) }", "y",
     "[2,3]"},
    {"Concat", "(float[2,3] a, float[2,5] b) => (float y) { y = Concat<axis = 1>(a, b) }", "y",
     "[2,8]"},
    {"Split",
     "(float[6,4] a, int64[2] s = {2, 4}) => (float y, float z) { y, z = Split<axis = 0>(a, s) }",
     "z", "[4,4]"},
    // torch's F.pad spelling: x[2,8] sliced on axis 1 only (ONNX 1.12 got [1,8] when the
    // axes' value_info had no shape).
    {"Slice",
     "(int64[2,8] a, int64[1] s = {0}, int64[1] e = {1}, int64[1] ax = {1}, int64[1] st = {1}) => (int64 y) { y = Slice(a, s, e, ax, st) }",
     "y", "[2,1]", 7},
    {"Slice",
     "(float[5,3] a, int64[1] s = {-1}, int64[1] e = {-9223372036854775807}, int64[1] ax = {0}, int64[1] st = {-2}) => (float y) { y = Slice(a, s, e, ax, st) }",
     "y", "[3,3]"},
    {"Gather", "(float[5,3] a, int64[2,4] i) => (float y) { y = Gather<axis = 0>(a, i) }", "y",
     "[2,4,3]"},
    {"GatherElements",
     "(float[5,3] a, int64[2,3] i) => (float y) { y = GatherElements<axis = 0>(a, i) }", "y",
     "[2,3]"},
    {"Expand", "(float[3,1] a, int64[3] s = {2, 1, 4}) => (float y) { y = Expand(a, s) }", "y",
     "[2,3,4]"},
    {"Tile", "(float[2,3] a, int64[2] r = {2, 2}) => (float y) { y = Tile(a, r) }", "y",
     "[4,6]"},
    {"Pad",
     "(float[1,5,5,4] a, int64[8] p = {0, 1, 0, 0, 0, 2, 3, 0}) => (float y) { y = Pad(a, p) }",
     "y", "[1,8,8,4]"},
    {"Shape", "(float[2,3,4] a) => (int64 y) { y = Shape<start = 1>(a) }", "y", "[2]", 7},
    {"Size", "(float[2,3,4] a) => (int64 y) { y = Size(a) }", "y", "[]", 7},
    {"ConstantOfShape", "(int64[2] s = {2, 3}) => (float y) { y = ConstantOfShape(s) }", "y",
     "[2,3]", 1},
    {"Range",
     "(int64 s = {0}, int64 l = {10}, int64 d = {3}) => (int64 y) { y = Range(s, l, d) }", "y",
     "[4]", 7},
    {"ReduceMean",
     "(float[2,3,4] a) => (float y) { y = ReduceMean<axes = [-1], keepdims = 1>(a) }", "y",
     "[2,3,1]"},
    {"ReduceSum",
     "(float[2,3,4] a, int64[1] ax = {1}) => (float y) { y = ReduceSum<keepdims = 0>(a, ax) }",
     "y", "[2,4]"},
    {"ArgMax", "(float[2,3,4] a) => (int64 y) { y = ArgMax<axis = 1, keepdims = 0>(a) }", "y",
     "[2,4]", 7},
    {"GlobalAveragePool", "(float[2,3,5,5] a) => (float y) { y = GlobalAveragePool(a) }", "y",
     "[2,3,1,1]"},
    {"ScatterND",
     "(float[4,4] a, int64[2,2] i, float[2] u) => (float y) { y = ScatterND(a, i, u) }", "y",
     "[4,4]"},
    {"NonZero", "(float[2,3] a) => (int64 y) { y = NonZero(a) }", "y", "[2,?]", 7},
};

/// The text syntax gives `float y` the scalar shape: outputs start rank-less here.
onnx::ModelProto parseRankless(const std::string &text) {
  onnx::ModelProto m = symoc::parseTextModel(text, "t.onnxtxt");
  for (auto &vi : *m.mutable_graph()->mutable_output())
    vi.mutable_type()->mutable_tensor_type()->clear_shape();
  return m;
}

onnx::ModelProto parse(const Case &c) {
  return parseRankless(std::string("<ir_version: 8, opset_import: [\"\" : 17]>\nt ") + c.graph);
}

/// The recorded type of a value: graph output or value_info.
onnx::ValueInfoProto *entry(onnx::ModelProto &m, const std::string &name) {
  for (auto &vi : *m.mutable_graph()->mutable_output())
    if (vi.name() == name)
      return &vi;
  for (auto &vi : *m.mutable_graph()->mutable_value_info())
    if (vi.name() == name)
      return &vi;
  return nullptr;
}

ShapeInfo shapeOf(onnx::ModelProto &m, const std::string &name) {
  onnx::ValueInfoProto *vi = entry(m, name);
  if (!vi || !vi->type().has_tensor_type())
    return ShapeInfo();
  const auto &tt = vi->type().tensor_type();
  ShapeInfo s;
  s.elemType = tt.elem_type();
  if (tt.has_shape()) {
    s.ranked = true;
    for (const auto &d : tt.shape().dim())
      s.dims.push_back(d.has_dim_value() ? d.dim_value() : symoc::kUnknownDim);
  }
  return s;
}

void setShape(onnx::ModelProto &m, const std::string &name, const std::vector<int64_t> &dims) {
  onnx::ValueInfoProto *vi = entry(m, name);
  if (!vi) {
    vi = m.mutable_graph()->add_value_info();
    vi->set_name(name);
  }
  auto *shape = vi->mutable_type()->mutable_tensor_type()->mutable_shape();
  shape->clear_dim();
  for (int64_t d : dims) {
    auto *dim = shape->add_dim();
    if (d >= 0)
      dim->set_dim_value(d);
  }
}

class ShapeFunctionCase : public ::testing::TestWithParam<Case> {};

TEST_P(ShapeFunctionCase, FillsAnUnknownRank) {
  const Case &c = GetParam();
  onnx::ModelProto m = parse(c);
  ASSERT_FALSE(shapeOf(m, c.output).ranked) << "the fixture must start without a rank";
  EXPECT_GT(symoc::completeShapes(m, "t.onnxtxt"), 0);
  ShapeInfo s = shapeOf(m, c.output);
  EXPECT_EQ(s.str(), c.expected);
  if (c.elemType)
    EXPECT_EQ(s.elemType, c.elemType);
}

TEST_P(ShapeFunctionCase, KeepsAKnownShape) {
  const Case &c = GetParam();
  onnx::ModelProto m = parse(c);
  symoc::completeShapes(m, "t.onnxtxt");
  ShapeInfo first = shapeOf(m, c.output);
  // A second run over the completed model adds nothing and does not complain.
  EXPECT_EQ(symoc::completeShapes(m, "t.onnxtxt"), 0);
  EXPECT_EQ(shapeOf(m, c.output), first);
}

TEST_P(ShapeFunctionCase, DisagreementIsAnErrorNamingTheNode) {
  const Case &c = GetParam();
  onnx::ModelProto m = parse(c);
  onnx::ModelProto filled = m;
  symoc::completeShapes(filled, "t.onnxtxt");
  std::vector<int64_t> wrong = shapeOf(filled, c.output).dims;
  bool changed = false;
  for (int64_t &d : wrong)
    if (d >= 0 && !changed)
      d += 1, changed = true;
  if (!changed)
    wrong.push_back(1); // no static dim to change: a wrong rank
  setShape(m, c.output, wrong);
  try {
    symoc::completeShapes(m, "t.onnxtxt");
    FAIL() << c.op << ": no error for a recorded shape that disagrees";
  } catch (const symoc::Error &e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("t.onnxtxt: node '"), std::string::npos) << msg;
    EXPECT_NE(msg.find(std::string("(") + c.op + "): output '" + c.output + "'"),
              std::string::npos)
        << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << "one line: " << msg;
  }
}

INSTANTIATE_TEST_SUITE_P(Ops, ShapeFunctionCase, ::testing::ValuesIn(kCases),
                         [](const ::testing::TestParamInfo<Case> &info) {
                           return std::string(info.param.op) + "_" +
                                  std::to_string(info.index);
                         });

TEST(ShapeFunctions, EveryCaseOpHasAFunction) {
  for (const Case &c : kCases)
    EXPECT_NE(symoc::findShapeFunction(c.op), nullptr) << c.op;
}

TEST(ShapeFunctions, MergeFillsButNeverOverrides) {
  std::string why;
  auto m = symoc::mergeShapes(ShapeInfo::of({2, -1}), ShapeInfo::of({-1, 5}, 1), why);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->str(), "[2,5]");
  EXPECT_EQ(m->elemType, 1);
  m = symoc::mergeShapes(ShapeInfo::unranked(), ShapeInfo::of({3}), why);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->str(), "[3]");
  m = symoc::mergeShapes(ShapeInfo::of({3}), ShapeInfo::unranked(), why);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->str(), "[3]");
  EXPECT_FALSE(symoc::mergeShapes(ShapeInfo::of({2, 4}), ShapeInfo::of({2, 5}), why));
  EXPECT_NE(why.find("[2,5] where the graph says [2,4]"), std::string::npos) << why;
  EXPECT_FALSE(symoc::mergeShapes(ShapeInfo::of({2}), ShapeInfo::of({2, 1}), why));
  EXPECT_FALSE(symoc::mergeShapes(ShapeInfo::of({2}, 1), ShapeInfo::of({2}, 7), why));
}

TEST(ShapeFunctions, SliceAxisFollowsOnnxClamping) {
  auto s = symoc::sliceAxis(8, 0, 1, 1);
  EXPECT_EQ(s.count, 1);
  s = symoc::sliceAxis(5, -1, INT64_MIN, -1); // torch.flip
  EXPECT_EQ(s.first, 4);
  EXPECT_EQ(s.count, 5);
  s = symoc::sliceAxis(5, 1, INT64_MAX, 2);
  EXPECT_EQ(s.count, 2);
  s = symoc::sliceAxis(5, 4, 2, 1);
  EXPECT_EQ(s.count, 0);
}

// Unknown inputs: a dynamic pad width keeps the rank; a computed Reshape target
// keeps its length as the rank; an op whose output is data-dependent stays
// partly unknown. Nothing is guessed.
TEST(ShapeFunctions, DynamicInputsStayUnknown) {
  onnx::ModelProto m = parseRankless(R"(<ir_version: 8, opset_import: ["" : 17]>
t (float[1,N,N,4] x, int64[8] p, int64[3] s) => (float y, float r, float z) {
  y = Pad(x, p)
  r = Reshape(x, s)
  q = Squeeze(x, s)
  z = Relu(q)
})");
  symoc::completeShapes(m, "t.onnxtxt");
  EXPECT_EQ(shapeOf(m, "y").str(), "[?,?,?,?]");
  EXPECT_EQ(shapeOf(m, "r").str(), "[?,?,?]");
  EXPECT_FALSE(shapeOf(m, "z").ranked); // Squeeze with computed axes: no rank
}

// Every function on random, often malformed, queries (ranks 0-4, dims -1..5,
// values of any length, attributes with absurd axes): no crash, no exception,
// and never a negative dim other than kUnknownDim.
TEST(ShapeFunctions, RandomQueriesNeverCrash) {
  std::mt19937 rng(14);
  auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  for (const std::string &op : symoc::shapeFunctionOpTypes()) {
    symoc::ShapeFunction f = symoc::findShapeFunction(op);
    for (int trial = 0; trial < 200; ++trial) {
      onnx::NodeProto n;
      n.set_op_type(op);
      int inputs = pick(0, 5);
      for (int k = 0; k < inputs; ++k)
        n.add_input(pick(0, 5) ? "i" + std::to_string(k) : "");
      for (int k = pick(0, 3); k >= 0; --k)
        n.add_output("o" + std::to_string(k));
      for (const char *name : {"axis", "axes", "perm", "keepdims", "to", "transA", "start"}) {
        if (pick(0, 2))
          continue;
        auto *a = n.add_attribute();
        a->set_name(name);
        a->set_i(pick(-6, 6));
        for (int k = pick(0, 4); k > 0; --k)
          a->add_ints(pick(-6, 6));
      }
      if (op == "Einsum") {
        auto *a = n.add_attribute();
        a->set_name("equation");
        a->set_s(pick(0, 1) ? "ij,jk->ik" : "i,->");
      }
      symoc::ShapeQuery q{n, pick(0, 1) ? 17 : 9, {}, {}};
      for (int k = 0; k < inputs; ++k) {
        ShapeInfo s;
        if (pick(0, 4)) {
          s.ranked = true;
          for (int r = pick(0, 4); r > 0; --r)
            s.dims.push_back(pick(-1, 5));
        }
        q.inputs.push_back(s);
        if (pick(0, 1)) {
          std::vector<int64_t> v;
          for (int len = pick(0, 9); len > 0; --len)
            v.push_back(pick(-10, 10));
          q.values.push_back(v);
        } else {
          q.values.push_back(std::nullopt);
        }
      }
      std::vector<ShapeInfo> out;
      ASSERT_NO_THROW(out = f(q)) << op;
      for (const ShapeInfo &s : out)
        for (int64_t d : s.dims)
          EXPECT_GE(d, symoc::kUnknownDim) << op << " " << s.str();
    }
  }
}

} // namespace
