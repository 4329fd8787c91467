//===- AttributeChanges.cpp - New attributes and inputs with a default ----===//
//
// Versions after 17 that added an attribute or input whose default (or the
// value torch writes) means the old behaviour: the node is kept with those
// removed. Any other value has no opset-17 form and is an error, except
// Resize's antialias and half_pixel_symmetric and the scatters' max and min
// reductions, which stay on the node (the evaluator and the rules read them),
// and Pad's wrap, spelled as Slices and Concats.
//
//===----------------------------------------------------------------------===//

#include "Rewrite.h"

namespace symoc {
namespace adapter {
namespace {

/// Drops `name` when absent or equal to `dflt`; otherwise fails (keepOther: keeps
/// it, for an attribute the opset-17 form carries as an extension).
void dropIfDefault(Context &ctx, onnx::NodeProto &n, int64_t v, const std::string &name,
                   int64_t dflt, bool keepOther = false) {
  if (auto *a = attr(n, name)) {
    if (a->i() == dflt)
      eraseAttr(n, name);
    else if (!keepOther)
      ctx.fail(n, v, "attribute " + name + "=" + std::to_string(a->i()) +
                         " has no opset-17 form");
  }
}

void dropIfDefaultString(Context &ctx, onnx::NodeProto &n, int64_t v, const std::string &name,
                         const std::string &dflt) {
  if (auto *a = attr(n, name)) {
    if (a->s() != dflt)
      ctx.fail(n, v, "attribute " + name + "='" + a->s() + "' has no opset-17 form");
    eraseAttr(n, name);
  }
}

void dropOnes(Context &ctx, onnx::NodeProto &n, int64_t v, const std::string &name) {
  if (auto *a = attr(n, name)) {
    for (auto d : a->ints())
      if (d != 1)
        ctx.fail(n, v, "attribute " + name + " other than 1 has no opset-17 form");
    eraseAttr(n, name);
  }
}

void cast(Context &ctx, const onnx::NodeProto &node, int64_t v,
          std::vector<onnx::NodeProto> &out) {
  onnx::NodeProto n = node;
  // saturate only affects float8 targets; round_mode only float8e8m0.
  eraseAttr(n, "saturate");
  eraseAttr(n, "round_mode");
  // CastLike with a known target type is a Cast (which has a rule).
  if (n.op_type() == "CastLike" && n.input_size() == 2)
    if (auto to = ctx.knownElemType(n.input(1))) {
      n.set_op_type("Cast");
      n.mutable_input()->RemoveLast();
      setInt(n, "to", *to);
    }
  if (attrInt(n, "to", 1) > onnx::TensorProto::BFLOAT16)
    ctx.fail(n, v, "cast to data type " + std::to_string(attrInt(n, "to", 1)) +
                       " (float8/int4/float4), which symoc cannot read");
  out.push_back(std::move(n));
}

void quantize(Context &ctx, const onnx::NodeProto &node, int64_t v,
              std::vector<onnx::NodeProto> &out) {
  onnx::NodeProto n = node;
  eraseAttr(n, "saturate");
  dropIfDefault(ctx, n, v, "block_size", 0);
  dropIfDefault(ctx, n, v, "output_dtype", 0);
  dropIfDefault(ctx, n, v, "precision", 0);
  out.push_back(std::move(n));
}

/// Resize-18's `axes` (roi, scales or sizes for a subset of the axes) as Resize-13's
/// full-rank inputs: the other axes keep their size (scale 1, roi [0, 1], size = the input's).
void resizeAxes(Context &ctx, onnx::NodeProto &n, int64_t v) {
  const std::vector<int64_t> given = *attrInts(n, "axes");
  auto rank = ctx.rank(n.input(0));
  if (!rank)
    ctx.fail(n, v, "attribute axes needs the input's rank");
  const int64_t r = *rank, k = int64_t(given.size());
  std::vector<int64_t> axes;
  for (int64_t a : given) {
    const int64_t b = a < 0 ? a + r : a;
    if (b < 0 || b >= r)
      ctx.fail(n, v, "axis " + std::to_string(a) + " is out of range for rank " + std::to_string(r));
    for (int64_t c : axes)
      if (c == b)
        ctx.fail(n, v, "axis " + std::to_string(a) + " is listed twice");
    axes.push_back(b);
  }
  const auto floatsOf = [&](int i, const char *what, int64_t count) {
    auto vals = ctx.floats(n.input(i));
    if (!vals || int64_t(vals->size()) != count)
      ctx.fail(n, v, std::string("with attribute axes, ") + what + " must be a constant of " +
                         std::to_string(count) + " value(s), one per listed axis");
    ctx.constants.insert(n.input(i)); // copied into the full-rank constant: never trained
    return *vals;
  };
  if (hasInput(n, 1)) { // roi: starts then ends
    const std::vector<double> roi = floatsOf(1, "roi", 2 * k);
    std::vector<float> full(size_t(2 * r));
    for (int64_t a = 0; a < r; ++a)
      full[size_t(a)] = 0.f, full[size_t(a + r)] = 1.f;
    for (int64_t i = 0; i < k; ++i)
      full[size_t(axes[size_t(i)])] = float(roi[size_t(i)]),
                            full[size_t(axes[size_t(i)] + r)] = float(roi[size_t(i + k)]);
    n.set_input(1, ctx.addFloat(full, {2 * r}, "roi", ctx.elemType(n.input(1)), true));
  }
  if (hasInput(n, 2)) {
    const std::vector<double> sc = floatsOf(2, "scales", k);
    std::vector<float> full(size_t(r), 1.f);
    for (int64_t i = 0; i < k; ++i)
      full[size_t(axes[size_t(i)])] = float(sc[size_t(i)]);
    n.set_input(2, ctx.addFloat(full, {r}, "scales", onnx::TensorProto::FLOAT, true));
  }
  if (hasInput(n, 3)) {
    auto sizes = ctx.ints(n.input(3));
    auto shape = ctx.partialShape(n.input(0));
    if (!shape)
      ctx.fail(n, v, "attribute axes with sizes needs the input's shape");
    if (!sizes || int64_t(sizes->size()) != k)
      ctx.fail(n, v, "with attribute axes, sizes must be a constant of " + std::to_string(k) +
                         " value(s), one per listed axis");
    std::vector<int64_t> full(shape->begin(), shape->end());
    for (int64_t i = 0; i < k; ++i)
      full[size_t(axes[size_t(i)])] = (*sizes)[size_t(i)];
    for (int64_t a = 0; a < r; ++a)
      if (full[size_t(a)] < 0)
        ctx.fail(n, v, "with attribute axes, sizes needs the input's static size on axis " +
                           std::to_string(a) + ", which it does not list");
    n.set_input(3, ctx.addInts(full, {r}, "sizes"));
  }
  eraseAttr(n, "axes");
}

void resize(Context &ctx, const onnx::NodeProto &node, int64_t v,
            std::vector<onnx::NodeProto> &out) {
  onnx::NodeProto n = node;
  // antialias (any non-zero value: on, as ONNX's reference reads it) and
  // coordinate_transformation_mode half_pixel_symmetric stay on the node: the
  // evaluator implements both and Resize's rule holds for them (an axis kept at
  // scale 1 maps to itself); ONNX 1.12's shape inference ignores the attribute.
  dropIfDefault(ctx, n, v, "antialias", 0, /*keepOther=*/true);
  dropIfDefaultString(ctx, n, v, "keep_aspect_ratio_policy", "stretch");
  if (attr(n, "axes"))
    resizeAxes(ctx, n, v);
  out.push_back(std::move(n));
}

void averagePool(Context &ctx, const onnx::NodeProto &node, int64_t v,
                 std::vector<onnx::NodeProto> &out) {
  onnx::NodeProto n = node;
  dropOnes(ctx, n, v, "dilations");
  out.push_back(std::move(n));
}

void lpPool(Context &ctx, const onnx::NodeProto &node, int64_t v,
            std::vector<onnx::NodeProto> &out) {
  onnx::NodeProto n = node;
  dropOnes(ctx, n, v, "dilations");
  dropIfDefault(ctx, n, v, "ceil_mode", 0);
  out.push_back(std::move(n));
}

/// ScatterElements/ScatterND-18's reductions max and min stay on the node, as an
/// extension of the opset-16 form: the evaluator computes them, ScatterElements' rule
/// passes permutations and positive scalings (which commute with max and min, sign flips
/// do not) and ScatterND's rule makes them a barrier.
void scatter(Context &, const onnx::NodeProto &n, int64_t, std::vector<onnx::NodeProto> &out) {
  out.push_back(n);
}

void gridSample(Context &ctx, const onnx::NodeProto &node, int64_t v,
                std::vector<onnx::NodeProto> &out) {
  onnx::NodeProto n = node;
  if (auto r = ctx.rank(n.input(0)); !r || *r != 4)
    ctx.fail(n, v, "only 4-D inputs of known rank have an opset-17 form (GridSample-16)");
  std::string mode = attrString(n, "mode", "linear");
  setString(n, "mode", mode == "linear" ? "bilinear" : mode == "cubic" ? "bicubic" : mode);
  out.push_back(std::move(n));
}

/// Pad-19's mode 'wrap' (the input as a torus) in opset-17 ops: per padded axis,
/// Concat(Slice(x, [n - b, n)), x, Slice(x, [0, e))) along it, axis after axis (the corners
/// come out wrapped in both), so the Slice and Concat rules apply. Needs constant pads
/// within the axis's static size n (0 <= b, e <= n).
void padWrap(Context &ctx, const onnx::NodeProto &n, int64_t v, const std::vector<int64_t> &pads,
             std::vector<onnx::NodeProto> &out) {
  const std::string name = nodeName(n);
  auto shape = ctx.shape(n.input(0));
  if (!shape || pads.size() != 2 * shape->size())
    ctx.fail(n, v, "mode 'wrap' needs the input's static shape and constant pads");
  const int64_t r = int64_t(shape->size());
  std::string cur = n.input(0);
  std::vector<int64_t> todo;
  for (int64_t a = 0; a < r; ++a) {
    const int64_t b = pads[size_t(a)], e = pads[size_t(a + r)], len = (*shape)[size_t(a)];
    if (b < 0 || e < 0 || b > len || e > len)
      ctx.fail(n, v, "mode 'wrap' with pads " + std::to_string(b) + ", " + std::to_string(e) +
                         " on axis " + std::to_string(a) + " of size " + std::to_string(len) +
                         " (symoc wraps at most once, without cropping)");
    if (b || e)
      todo.push_back(a);
  }
  if (todo.empty()) {
    ctx.node(out, "Identity", {cur}, {n.output(0)}, name);
    return;
  }
  for (size_t t = 0; t < todo.size(); ++t) {
    const int64_t a = todo[t], b = pads[size_t(a)], e = pads[size_t(a + r)], len = (*shape)[size_t(a)];
    const std::string ax = ctx.addInts({a}, {1}, "axes");
    std::vector<std::string> parts;
    if (b)
      parts.push_back(ctx.op1(out, "Slice",
                              {cur, ctx.addInts({len - b}, {1}, "starts"), ctx.addInts({len}, {1}, "ends"), ax},
                              name));
    parts.push_back(cur);
    if (e)
      parts.push_back(ctx.op1(out, "Slice",
                              {cur, ctx.addInts({0}, {1}, "starts"), ctx.addInts({e}, {1}, "ends"), ax}, name));
    if (t + 1 == todo.size()) {
      setInt(ctx.node(out, "Concat", parts, {n.output(0)}, name), "axis", a);
    } else {
      onnx::NodeProto &c = ctx.node(out, "Concat", parts, {ctx.fresh(name + "_wrap")}, name);
      setInt(c, "axis", a);
      cur = c.output(0);
    }
  }
}

/// Pad: the `axes` input (18) becomes full-rank pads; mode 'wrap' (19) becomes Slices and
/// Concats (padWrap).
void pad(Context &ctx, const onnx::NodeProto &node, int64_t v,
         std::vector<onnx::NodeProto> &out) {
  onnx::NodeProto n = node;
  const bool wrap = attrString(n, "mode", "constant") == "wrap";
  if (!hasInput(n, 3)) {
    if (n.input_size() > 3)
      n.mutable_input()->DeleteSubrange(3, n.input_size() - 3);
    if (wrap) {
      auto pads = hasInput(n, 1) ? ctx.ints(n.input(1)) : std::nullopt;
      if (!pads)
        ctx.fail(n, v, "mode 'wrap' needs constant pads");
      padWrap(ctx, n, v, *pads, out);
      return;
    }
    out.push_back(std::move(n));
    return;
  }
  auto axes = ctx.ints(n.input(3));
  auto pads = hasInput(n, 1) ? ctx.ints(n.input(1)) : std::nullopt;
  auto rank = ctx.rank(n.input(0));
  if (!axes || !pads || !rank)
    ctx.fail(n, v, "the axes input needs constant axes and pads and a known input rank");
  size_t k = axes->size();
  if (pads->size() != 2 * k)
    ctx.fail(n, v, "pads has " + std::to_string(pads->size()) + " values for " +
                       std::to_string(k) + " axes");
  std::vector<int64_t> full(size_t(2 * *rank), 0);
  for (size_t i = 0; i < k; ++i) {
    int64_t a = (*axes)[i] < 0 ? (*axes)[i] + *rank : (*axes)[i];
    if (a < 0 || a >= *rank)
      ctx.fail(n, v, "axis " + std::to_string((*axes)[i]) + " is out of range");
    full[size_t(a)] = (*pads)[i];
    full[size_t(a + *rank)] = (*pads)[i + k];
  }
  if (wrap) {
    padWrap(ctx, n, v, full, out);
    return;
  }
  n.set_input(1, ctx.addInts(full, {int64_t(full.size())}, "pads"));
  n.mutable_input()->DeleteSubrange(3, n.input_size() - 3);
  out.push_back(std::move(n));
}

/// DFT-20: the axis input (default -2) becomes DFT-17's attribute.
void dft(Context &ctx, const onnx::NodeProto &node, int64_t v,
         std::vector<onnx::NodeProto> &out) {
  onnx::NodeProto n = node;
  int64_t axis = -2;
  if (hasInput(n, 2)) {
    auto a = ctx.ints(n.input(2));
    if (!a || a->size() != 1)
      ctx.fail(n, v, "the axis input is not a constant");
    axis = (*a)[0];
  }
  if (axis < 0) {
    auto r = ctx.rank(n.input(0));
    if (!r)
      ctx.fail(n, v, "a negative axis needs the input's rank");
    axis += *r;
  }
  setInt(n, "axis", axis);
  if (n.input_size() > 2)
    n.mutable_input()->DeleteSubrange(2, n.input_size() - 2);
  out.push_back(std::move(n));
}

} // namespace

void addAttributeChanges(Table &t) {
  for (int64_t v : {19, 21, 23, 24}) {
    t[{"Cast", v}] = cast;
    t[{"CastLike", v}] = cast;
  }
  for (int64_t v : {19, 21, 23, 24}) {
    t[{"QuantizeLinear", v}] = quantize;
    t[{"DequantizeLinear", v}] = quantize;
  }
  t[{"Resize", 18}] = t[{"Resize", 19}] = resize;
  t[{"AveragePool", 19}] = t[{"AveragePool", 22}] = averagePool;
  t[{"LpPool", 18}] = t[{"LpPool", 22}] = lpPool;
  t[{"ScatterElements", 18}] = t[{"ScatterND", 18}] = scatter;
  t[{"GridSample", 20}] = t[{"GridSample", 22}] = gridSample;
  for (int64_t v : {18, 19, 21, 23, 24})
    t[{"Pad", v}] = pad;
  t[{"DFT", 20}] = dft;
}

} // namespace adapter
} // namespace symoc
