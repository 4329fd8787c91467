//===- Normalizations.cpp - GroupNormalization-18/21, RMSNormalization-23 -===//
//
// GroupNormalization: Reshape to [N, G, -1], InstanceNormalization with unit
// scale and zero bias, Reshape back, then the per-channel scale and bias (what
// torch's exporter writes below opset 21). Opset 18 had one scale and bias per
// group: they are repeated over the group's channels.
// RMSNormalization: x * Reciprocal(Sqrt(ReduceMean(x^2) + eps)) * scale, the
// pattern symoc-recompose-rmsnorm turns back into graph.RMSNormalization.
//
//===----------------------------------------------------------------------===//

#include "Rewrite.h"

namespace symoc {
namespace adapter {
namespace {

void groupNorm(Context &ctx, const onnx::NodeProto &n, int64_t v,
               std::vector<onnx::NodeProto> &out) {
  const std::string &x = n.input(0), name = nodeName(n);
  if (!hasInput(n, 1) || !hasInput(n, 2))
    ctx.fail(n, v, "scale and bias are required");
  auto shape = ctx.partialShape(x); // the batch and spatial sizes may stay symbolic
  auto rank = ctx.rank(x);
  int64_t groups = attrInt(n, "num_groups", 0);
  if (!rank || *rank < 2 || groups <= 0)
    ctx.fail(n, v, "needs an input of known rank >= 2 and num_groups > 0");
  float eps = attrFloat(n, "epsilon", 1e-5f);
  std::vector<float> ones(size_t(groups), 1.0f), zeros(size_t(groups), 0.0f);
  std::string grouped = ctx.op1(out, "Reshape", {x, ctx.addInts({0, groups, -1}, {3}, "shape")},
                                name);
  std::string normed = ctx.op1(
      out, "InstanceNormalization",
      {grouped, ctx.addFloat(ones, {groups}, "ones", ctx.elemType(x), true),
       ctx.addFloat(zeros, {groups}, "zeros", ctx.elemType(x), true)},
      name);
  setFloat(out.back(), "epsilon", eps);
  std::string back = ctx.op1(out, "Reshape", {normed, ctx.op1(out, "Shape", {x}, name)}, name);
  std::vector<int64_t> trailing;
  for (int64_t a = 1; a + 1 < *rank; ++a)
    trailing.push_back(a);
  auto perChannel = [&](const std::string &p) -> std::string {
    std::string c = p;
    if (v < 21) {
      // One value per group: repeat each over its C / G channels.
      if (!shape || shape->size() < 2 || (*shape)[1] <= 0)
        ctx.fail(n, v, "per-group scale and bias need the input's channel count");
      int64_t channels = (*shape)[1];
      if (channels % groups)
        ctx.fail(n, v, "channels are not divisible by num_groups");
      std::string col = ctx.op1(out, "Reshape", {p, ctx.addInts({groups, 1}, {2}, "shape")},
                                name);
      std::string rep = ctx.op1(
          out, "Expand", {col, ctx.addInts({groups, channels / groups}, {2}, "shape")}, name);
      c = ctx.op1(out, "Reshape", {rep, ctx.addInts({channels}, {1}, "shape")}, name);
    }
    if (trailing.empty())
      return c;
    return ctx.op1(out, "Unsqueeze",
                   {c, ctx.addInts(trailing, {int64_t(trailing.size())}, "axes")}, name);
  };
  std::string scaled = ctx.op1(out, "Mul", {back, perChannel(n.input(1))}, name);
  ctx.node(out, "Add", {scaled, perChannel(n.input(2))}, {n.output(0)}, name);
}

void rmsNorm(Context &ctx, const onnx::NodeProto &n, int64_t v,
             std::vector<onnx::NodeProto> &out) {
  const std::string &x = n.input(0), name = nodeName(n);
  int64_t axis = attrInt(n, "axis", -1);
  std::vector<int64_t> axes{-1};
  if (axis != -1) {
    auto rank = ctx.rank(x);
    if (!rank)
      ctx.fail(n, v, "axis " + std::to_string(axis) + " needs the input's rank");
    int64_t a = axis < 0 ? axis + *rank : axis;
    axes.clear();
    for (; a < *rank; ++a)
      axes.push_back(a);
  }
  float eps = attrFloat(n, "epsilon", 1e-5f);
  auto scalar = [&](float c) {
    return ctx.addFloat({c}, {}, "c", ctx.elemType(x), true);
  };
  std::string sq = ctx.op1(out, "Pow", {x, scalar(2.0f)}, name);
  std::string mean = ctx.op1(out, "ReduceMean", {sq}, name);
  setInts(out.back(), "axes", axes);
  setInt(out.back(), "keepdims", 1);
  std::string var = ctx.op1(out, "Add", {mean, scalar(eps)}, name);
  std::string rms = ctx.op1(out, "Sqrt", {var}, name);
  std::string inv = ctx.op1(out, "Reciprocal", {rms}, name);
  if (!hasInput(n, 1)) {
    ctx.node(out, "Mul", {x, inv}, {n.output(0)}, name);
    return;
  }
  std::string normed = ctx.op1(out, "Mul", {x, inv}, name);
  ctx.node(out, "Mul", {normed, n.input(1)}, {n.output(0)}, name);
}

} // namespace

void addNormalizations(Table &t) {
  t[{"GroupNormalization", 18}] = t[{"GroupNormalization", 21}] = groupNorm;
  t[{"RMSNormalization", 23}] = rmsNorm;
}

} // namespace adapter
} // namespace symoc
