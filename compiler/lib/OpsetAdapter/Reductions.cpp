//===- Reductions.cpp - Reduce*-18/20: axes input -> attribute ------------===//
//
// Opset 18 moved `axes` of every reduction but ReduceSum from an attribute to
// an optional input and added noop_with_empty_axes. The opset-13 form takes
// the constant axes as an attribute; absent or empty axes reduce everything
// (noop = 0) or nothing (noop = 1: only the elementwise part remains).
//
//===----------------------------------------------------------------------===//

#include "Rewrite.h"

namespace symoc {
namespace adapter {
namespace {

/// What Reduce<op> computes over an empty set of axes with noop = 1.
void elementwisePart(Context &ctx, const onnx::NodeProto &n, std::vector<onnx::NodeProto> &out) {
  const std::string &op = n.op_type();
  const std::string &x = n.input(0), &y = n.output(0);
  if (op == "ReduceL1" || op == "ReduceL2")
    ctx.node(out, "Abs", {x}, {y}, nodeName(n));
  else if (op == "ReduceLogSum")
    ctx.node(out, "Log", {x}, {y}, nodeName(n));
  else if (op == "ReduceSumSquare")
    ctx.node(out, "Mul", {x, x}, {y}, nodeName(n));
  else // Max, Min, Mean, Prod, LogSumExp of one element
    ctx.node(out, "Identity", {x}, {y}, nodeName(n));
}

void reduce(Context &ctx, const onnx::NodeProto &node, int64_t v,
            std::vector<onnx::NodeProto> &out) {
  onnx::NodeProto n = node;
  bool noop = attrInt(n, "noop_with_empty_axes", 0) != 0;
  eraseAttr(n, "noop_with_empty_axes");
  std::vector<int64_t> axes;
  if (hasInput(n, 1)) {
    auto a = ctx.ints(n.input(1));
    if (!a)
      ctx.fail(n, v, "its axes '" + n.input(1) + "' are computed at run time; symoc needs "
                     "constant axes (export with optimize=True or fixed reduction dims)");
    axes = *a;
  }
  n.mutable_input()->DeleteSubrange(1, n.input_size() - 1);
  if (axes.empty() && noop)
    return elementwisePart(ctx, n, out);
  if (!axes.empty())
    setInts(n, "axes", axes);
  out.push_back(std::move(n));
}

} // namespace

void addReductions(Table &t) {
  for (const char *op : {"ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp",
                         "ReduceMax", "ReduceMean", "ReduceMin", "ReduceProd",
                         "ReduceSumSquare"})
    t[{op, 18}] = reduce;
  t[{"ReduceMax", 20}] = t[{"ReduceMin", 20}] = reduce;
}

} // namespace adapter
} // namespace symoc
