//===- Activations.cpp - Gelu-20, Mish-18, Swish-24 in opset-17 ops -------===//
//
// Spelled as the recomposition passes expect (compiler/lib/Transforms:
// RecomposeActivations), so Gelu and x * Sigmoid(x) come back as graph.Gelu
// and graph.Silu with their rules.
//
//===----------------------------------------------------------------------===//

#include "Rewrite.h"

#include <cmath>

namespace symoc {
namespace adapter {
namespace {

/// A scalar constant of x's element type.
std::string constant(Context &ctx, std::vector<onnx::NodeProto> &, double value,
                     const std::string &x, const std::string &) {
  return ctx.addFloat({float(value)}, {}, "c", ctx.elemType(x), true);
}

void gelu(Context &ctx, const onnx::NodeProto &n, int64_t v, std::vector<onnx::NodeProto> &out) {
  const std::string &x = n.input(0), name = nodeName(n);
  std::string approx = attrString(n, "approximate", "none");
  std::string inner;
  if (approx == "none") {
    // x * 0.5 * (1 + Erf(x / sqrt2))
    std::string t = ctx.op1(out, "Div", {x, constant(ctx, out, std::sqrt(2.0), x, name)}, name);
    inner = ctx.op1(out, "Erf", {t}, name);
  } else if (approx == "tanh") {
    // x * 0.5 * (1 + Tanh(sqrt(2/pi) * (x + 0.044715 x^3)))
    std::string cube = ctx.op1(out, "Pow", {x, constant(ctx, out, 3.0, x, name)}, name);
    std::string sc = ctx.op1(out, "Mul", {cube, constant(ctx, out, 0.044715, x, name)}, name);
    std::string sum = ctx.op1(out, "Add", {x, sc}, name);
    std::string u =
        ctx.op1(out, "Mul", {sum, constant(ctx, out, std::sqrt(2.0 / M_PI), x, name)}, name);
    inner = ctx.op1(out, "Tanh", {u}, name);
  } else {
    ctx.fail(n, v, "unknown approximate='" + approx + "'");
  }
  std::string a = ctx.op1(out, "Add", {inner, constant(ctx, out, 1.0, x, name)}, name);
  std::string m = ctx.op1(out, "Mul", {x, a}, name);
  ctx.node(out, "Mul", {m, constant(ctx, out, 0.5, x, name)}, {n.output(0)}, name);
}

/// x * Tanh(Softplus(x))
void mish(Context &ctx, const onnx::NodeProto &n, int64_t, std::vector<onnx::NodeProto> &out) {
  const std::string &x = n.input(0), name = nodeName(n);
  std::string sp = ctx.op1(out, "Softplus", {x}, name);
  std::string th = ctx.op1(out, "Tanh", {sp}, name);
  ctx.node(out, "Mul", {x, th}, {n.output(0)}, name);
}

/// x * Sigmoid(alpha x)
void swish(Context &ctx, const onnx::NodeProto &n, int64_t, std::vector<onnx::NodeProto> &out) {
  const std::string &x = n.input(0), name = nodeName(n);
  float alpha = attrFloat(n, "alpha", 1.0f);
  std::string arg = x;
  if (alpha != 1.0f)
    arg = ctx.op1(out, "Mul", {x, constant(ctx, out, alpha, x, name)}, name);
  std::string s = ctx.op1(out, "Sigmoid", {arg}, name);
  ctx.node(out, "Mul", {x, s}, {n.output(0)}, name);
}

} // namespace

void addActivations(Table &t) {
  t[{"Gelu", 20}] = gelu;
  t[{"Mish", 18}] = t[{"Mish", 22}] = mish;
  t[{"Swish", 24}] = swish;
}

} // namespace adapter
} // namespace symoc
