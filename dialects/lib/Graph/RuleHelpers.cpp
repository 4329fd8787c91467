//===- RuleHelpers.cpp - Shared pieces of the per-op symmetry rules -------===//

#include "RuleHelpers.h"

#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/BuiltinOps.h"

using namespace mlir;

namespace symoc::graph {

int64_t rankOf(Value v) {
  if (auto t = dyn_cast<RankedTensorType>(v.getType()))
    return t.getRank();
  return -1;
}

int64_t normAxis(int64_t axis, int64_t rank) {
  if (axis < 0)
    axis += rank;
  return (axis >= 0 && axis < rank) ? axis : -1;
}

void tieSame(SpaceBuilder &b, Value x, int64_t a, Value y, int64_t c) {
  b.tie(x, a, y, c, /*dual=*/false);
  b.scaleRelation({{x, a, 1}, {y, c, -1}});
  b.signRelation({{x, a, 1}, {y, c, 1}});
}

void tieDual(SpaceBuilder &b, Value x, int64_t a, Value y, int64_t c) {
  b.tie(x, a, y, c, /*dual=*/true);
  b.scaleRelation({{x, a, 1}, {y, c, 1}});
  b.signRelation({{x, a, 1}, {y, c, 1}});
}

void tieAxesUnlessFixed(SpaceBuilder &b, Value x, Value y, function_ref<const char *(int64_t)> why) {
  for (int64_t a = 0, r = rankOf(x); a < r; ++a) {
    const char *fixed = why(a);
    if (fixed || dimOf(x, a) != dimOf(y, a)) {
      b.restrict(x, a, kNone, fixed ? fixed : "axis sizes differ");
      b.restrict(y, a, kNone, fixed ? fixed : "axis sizes differ");
      continue;
    }
    tieSame(b, x, a, y, a);
  }
}

void pinFlows(SpaceBuilder &b, Value x, int64_t a) {
  b.scaleRelation({{x, a, 1}});
  b.signRelation({{x, a, 1}});
}

void restrictAll(SpaceBuilder &b, Value v, unsigned bits, StringRef why) {
  for (int64_t a = 0, r = rankOf(v); a < r; ++a)
    b.restrict(v, a, bits, why);
}

void barrier(SpaceBuilder &b, Operation *op, StringRef why) {
  for (Value v : op->getOperands())
    b.fixAll(v, why);
  for (Value v : op->getResults())
    b.fixAll(v, why);
}

bool barrierIfExtraResultsUsed(SpaceBuilder &b, Operation *op, StringRef what) {
  for (Value extra : op->getResults().drop_front())
    if (!extra.use_empty()) {
      barrier(b, op, (what + " read downstream: the rule covers the first output only").str());
      return true;
    }
  return false;
}

bool isNone(Value v) { return isa<NoneType>(v.getType()); }

std::optional<std::vector<int64_t>> constInts(Value v) {
  auto c = v.getDefiningOp<ConstantOp>();
  if (!c || !c.getValue())
    return std::nullopt;
  auto dense = dyn_cast<DenseElementsAttr>(*c.getValue());
  if (!dense)
    return std::nullopt;
  std::vector<int64_t> out;
  if (isa<IntegerType>(dense.getElementType())) {
    for (const APInt &x : dense.getValues<APInt>())
      out.push_back(x.getSExtValue());
    return out;
  }
  return std::nullopt;
}

std::optional<double> constScalar(Value v) {
  auto c = v.getDefiningOp<ConstantOp>();
  if (!c || !c.getValue())
    return std::nullopt;
  auto dense = dyn_cast<DenseElementsAttr>(*c.getValue());
  if (!dense || dense.getNumElements() != 1)
    return std::nullopt;
  if (isa<FloatType>(dense.getElementType()))
    return (*dense.getValues<APFloat>().begin()).convertToDouble();
  if (isa<IntegerType>(dense.getElementType()))
    return double((*dense.getValues<APInt>().begin()).getSExtValue());
  return std::nullopt;
}

std::optional<std::vector<double>> constFloats(Value v) {
  auto c = v.getDefiningOp<ConstantOp>();
  if (!c || !c.getValue())
    return std::nullopt;
  auto dense = dyn_cast<DenseElementsAttr>(*c.getValue());
  if (!dense || !isa<FloatType>(dense.getElementType()))
    return std::nullopt;
  std::vector<double> out;
  for (const APFloat &x : dense.getValues<APFloat>())
    out.push_back(x.convertToDouble());
  return out;
}

std::string strAttr(Operation *op, StringRef name, StringRef dflt) {
  auto s = op->getAttrOfType<StringAttr>(name);
  return (s ? s.getValue() : dflt).str();
}

std::optional<std::vector<int64_t>> intsAttr(Operation *op, StringRef name) {
  auto arr = op->getAttrOfType<ArrayAttr>(name);
  if (!arr)
    return std::nullopt;
  std::vector<int64_t> out;
  for (Attribute a : arr) {
    auto i = dyn_cast<IntegerAttr>(a);
    if (!i)
      return std::nullopt;
    out.push_back(i.getInt());
  }
  return out;
}

int64_t intAttr(Operation *op, StringRef name, int64_t dflt) {
  if (auto i = op->getAttrOfType<IntegerAttr>(name))
    return i.getInt();
  return dflt;
}

int64_t opsetOf(Operation *op) {
  for (Operation *p = op; p; p = p->getParentOp())
    if (auto i = p->getAttrOfType<IntegerAttr>("graph.opset"))
      return i.getInt();
  return 17;
}

void forBroadcastAxes(Operation *op, Value result,
                      function_ref<void(Value, int64_t, int64_t)> matched,
                      function_ref<void(Value, int64_t)> broadcast) {
  int64_t rr = rankOf(result);
  auto rt = cast<RankedTensorType>(result.getType());
  for (Value in : op->getOperands()) {
    if (isNone(in))
      continue;
    int64_t ir = rankOf(in);
    if (ir < 0)
      continue;
    auto it = cast<RankedTensorType>(in.getType());
    for (int64_t r = 0; r < rr; ++r) {
      int64_t i = r - (rr - ir);
      if (i < 0) {
        broadcast(in, r);
        continue;
      }
      int64_t is = it.getDimSize(i), rs = rt.getDimSize(r);
      if (is == 1 && rs != 1)
        broadcast(in, r);
      else
        matched(in, i, r);
    }
  }
}

int64_t dimOf(Value v, int64_t a) {
  // An axis the value does not have (a rewired operand of another rank) reads as dynamic, so
  // the rule's dynamic-shape path fixes it rather than reading past the shape.
  auto t = dyn_cast<RankedTensorType>(v.getType());
  if (!t || a < 0 || a >= t.getRank())
    return -1;
  return t.getDimSize(a);
}

bool exactFloatCast(Operation *cast) {
  auto in = dyn_cast<ShapedType>(cast->getOperand(0).getType());
  auto out = dyn_cast<ShapedType>(cast->getResult(0).getType());
  auto from = in ? dyn_cast<FloatType>(in.getElementType()) : FloatType();
  auto to = out ? dyn_cast<FloatType>(out.getElementType()) : FloatType();
  // float32's own rounding is the convention's (every rule treats float32 arithmetic as
  // exact; verify's tolerance covers it), so f64 -> f32 counts as exact; a format with fewer
  // mantissa bits than both the source and float32 rounds visibly.
  return from && to &&
         (from == to || to.getFPMantissaWidth() >= std::min(from.getFPMantissaWidth(), 24u));
}

bool isUniformConstant(Value v) {
  if (v.getDefiningOp<ConstantOfShapeOp>())
    return true;
  auto c = v.getDefiningOp<ConstantOp>();
  if (!c || !c.getValue())
    return false;
  auto dense = dyn_cast<DenseElementsAttr>(*c.getValue());
  return dense && dense.isSplat();
}

} // namespace symoc::graph
