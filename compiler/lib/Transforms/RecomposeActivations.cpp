//===- RecomposeActivations.cpp - GELU and SiLU from their pieces ---------===//
//
// torch.onnx before opset 20 writes GELU out:
//   erf form:  x * 0.5 * (1 + Erf(x / sqrt(2)))          (nn.GELU())
//   tanh form: 0.5 * x * (1 + Tanh(sqrt(2/pi) * (x + 0.044715 x^3)))
//              (nn.GELU(approximate="tanh"), HF "gelu_new")
// and SiLU as x * Sigmoid(x). Each becomes one op (graph.Gelu with
// approximate = "none" / "tanh", graph.Silu). The constants must match within a
// relative 1e-6 (a float32 rounding of the exact value is ~1e-8 away); a
// pattern with other constants is another function and is left alone.
//
//===----------------------------------------------------------------------===//

#include "MatchUtils.h"
#include "symoc/Transforms/Passes.h"

#include <cmath>

namespace symoc {
#define GEN_PASS_DEF_RECOMPOSEACTIVATIONS
#include "symoc/Transforms/Passes.h.inc"
} // namespace symoc

using namespace mlir;
using namespace symoc::graph;
using namespace symoc::transforms;

namespace symoc {
namespace {

constexpr double kRtol = 1e-6;
const double kSqrt2 = std::sqrt(2.0);
const double kSqrt2OverPi = std::sqrt(2.0 / M_PI);
constexpr double kTanhCubic = 0.044715;

/// A single-use elementwise op on x-shaped values.
bool sameShapeSingleUse(Value v, Value x) {
  return hasOneUse(v) && v.getType() == x.getType();
}

/// `v` = x * c (Mul, either order) or x / (1/c) (Div), with the constant one
/// number; returns x.
Value scaledBy(Value v, double c, Operation **op) {
  Operation *def = v.getDefiningOp();
  if (isa_and_nonnull<MulOp>(def) && def->getNumOperands() == 2) {
    for (int k = 0; k < 2; ++k)
      if (isConstant(def->getOperand(1 - k), c, kRtol) &&
          def->getOperand(k).getType() == v.getType()) {
        *op = def;
        return def->getOperand(k);
      }
  }
  if (isa_and_nonnull<DivOp>(def) && def->getNumOperands() == 2 &&
      isConstant(def->getOperand(1), 1.0 / c, kRtol) &&
      def->getOperand(0).getType() == v.getType()) {
    *op = def;
    return def->getOperand(0);
  }
  return Value();
}

/// `a` = 1 + t (Add, either order); the user of t. Returns the Add or null.
Operation *onePlus(Value t) {
  Operation *add = singleUser(t);
  if (!isa_and_nonnull<AddOp>(add))
    return nullptr;
  Value one = otherOperand(add, t);
  if (!one || one == t || !isConstant(one, 1.0) ||
      add->getResult(0).getType() != t.getType())
    return nullptr;
  return add;
}

/// The product x * 0.5 * A in any of the orders exporters write:
///   (x * A) * 0.5,  (x * A) / 2,  (A * 0.5) * x,  (0.5 * x) * A,  (x / 2) * A.
/// Returns the op producing the product (null when no match) and appends the
/// ops in between to `dead`, uses first.
Operation *halfProduct(Value a, Value x, SmallVector<Operation *> &dead) {
  Operation *m1 = singleUser(a);
  if (!isa_and_nonnull<MulOp>(m1) || m1->getResult(0).getType() != x.getType())
    return nullptr;
  Value o = otherOperand(m1, a);
  if (!o || o == a)
    return nullptr;
  if (o == x) {
    // (x * A) then * 0.5 or / 2.
    Operation *m2 = singleUser(m1->getResult(0));
    Operation *scaleOp = nullptr;
    // (m2 may be func.return, which has no result.)
    if (m2 && m2->getNumResults() == 1 &&
        scaledBy(m2->getResult(0), 0.5, &scaleOp) == m1->getResult(0) &&
        scaleOp == m2 && m2->getResult(0).getType() == x.getType()) {
      dead.push_back(m1);
      return m2;
    }
    return nullptr;
  }
  if (isConstant(o, 0.5)) {
    // (A * 0.5) then * x.
    Operation *m2 = singleUser(m1->getResult(0));
    if (isa_and_nonnull<MulOp>(m2) && otherOperand(m2, m1->getResult(0)) == x &&
        m2->getResult(0).getType() == x.getType()) {
      dead.push_back(m1);
      return m2;
    }
    return nullptr;
  }
  // (0.5 * x) or (x / 2) times A.
  Operation *half = nullptr;
  if (hasOneUse(o) && scaledBy(o, 0.5, &half) == x) {
    dead.push_back(half);
    return m1;
  }
  return nullptr;
}

/// Replaces `last` by `newOp`'s result and erases the matched pieces.
void finish(IRRewriter &rewriter, Operation *last, Operation *newOp,
            ArrayRef<Operation *> dead) {
  rewriter.replaceOp(last, newOp->getResults());
  eraseDead(rewriter, dead);
}

/// Erf anchor: Erf(x / sqrt2) (or x * (1/sqrt2)), then 1 + _, then x * 0.5 * _.
bool geluErfAt(ErfOp erf, IRRewriter &rewriter) {
  if (erf->getNumOperands() != 1)
    return false;
  Value t = erf->getOperand(0);
  Operation *scale = nullptr;
  Value x = scaledBy(t, 1.0 / kSqrt2, &scale);
  if (!x || !isFloatTensor(x) || !sameShapeSingleUse(t, x) ||
      !sameShapeSingleUse(erf->getResult(0), x))
    return false;
  Operation *add = onePlus(erf->getResult(0));
  if (!add)
    return false;
  SmallVector<Operation *> dead;
  Operation *last = halfProduct(add->getResult(0), x, dead);
  if (!last)
    return false;
  dead.append({add, erf, scale});
  rewriter.setInsertionPoint(last);
  auto gelu = rewriter.create<GeluOp>(last->getLoc(), TypeRange{x.getType()}, ValueRange{x});
  gelu->setAttr("approximate", rewriter.getStringAttr("none"));
  finish(rewriter, last, gelu, dead);
  return true;
}

/// x^3 as Pow(x, 3), Mul(Mul(x, x), x) or Mul(x, Mul(x, x)); returns x and
/// appends the ops to `dead`, uses first.
Value cubed(Value v, SmallVector<Operation *> &dead) {
  Operation *def = v.getDefiningOp();
  if (isa_and_nonnull<PowOp>(def) && def->getNumOperands() == 2 &&
      isConstant(def->getOperand(1), 3.0)) {
    dead.push_back(def);
    return def->getOperand(0);
  }
  if (isa_and_nonnull<MulOp>(def) && def->getNumOperands() == 2) {
    for (int k = 0; k < 2; ++k) {
      Operation *sq = nullptr;
      Value x = squaredValue(def->getOperand(k), &sq);
      if (x && x == def->getOperand(1 - k) && hasOneUse(def->getOperand(k))) {
        dead.append({def, sq});
        return x;
      }
    }
  }
  return Value();
}

/// Tanh anchor: Tanh(sqrt(2/pi) * (x + 0.044715 * x^3)), then 1 + _, then
/// x * 0.5 * _.
bool geluTanhAt(TanhOp tanh, IRRewriter &rewriter) {
  if (tanh->getNumOperands() != 1)
    return false;
  SmallVector<Operation *> inner;
  Value u = tanh->getOperand(0);
  Operation *outerScale = nullptr;
  Value sum = scaledBy(u, kSqrt2OverPi, &outerScale);
  if (!sum || !hasOneUse(u) || !hasOneUse(sum))
    return false;
  auto add = sum.getDefiningOp<AddOp>();
  if (!add || add->getNumOperands() != 2)
    return false;
  // x + 0.044715 * x^3, either order, the same x in both terms.
  Value x;
  for (int k = 0; k < 2 && !x; ++k) {
    SmallVector<Operation *> pieces;
    Operation *cubicScale = nullptr;
    Value cube = scaledBy(add->getOperand(k), kTanhCubic, &cubicScale);
    if (!cube || !hasOneUse(add->getOperand(k)) || !hasOneUse(cube))
      continue;
    Value c = cubed(cube, pieces);
    if (c && c == add->getOperand(1 - k)) {
      x = c;
      inner.push_back(cubicScale);
      inner.append(pieces.begin(), pieces.end());
    }
  }
  if (!x || !isFloatTensor(x) || sum.getType() != x.getType() ||
      u.getType() != x.getType() || !sameShapeSingleUse(tanh->getResult(0), x))
    return false;
  Operation *plus = onePlus(tanh->getResult(0));
  if (!plus)
    return false;
  SmallVector<Operation *> dead;
  Operation *last = halfProduct(plus->getResult(0), x, dead);
  if (!last)
    return false;
  dead.append({plus, tanh, outerScale, add});
  dead.append(inner.begin(), inner.end());
  rewriter.setInsertionPoint(last);
  auto gelu = rewriter.create<GeluOp>(last->getLoc(), TypeRange{x.getType()}, ValueRange{x});
  gelu->setAttr("approximate", rewriter.getStringAttr("tanh"));
  finish(rewriter, last, gelu, dead);
  return true;
}

/// Sigmoid anchor: x * Sigmoid(x) (either order), the sigmoid used once.
bool siluAt(SigmoidOp sigmoid, IRRewriter &rewriter) {
  if (sigmoid->getNumOperands() != 1)
    return false;
  Value x = sigmoid->getOperand(0), s = sigmoid->getResult(0);
  Operation *mul = singleUser(s);
  if (!isFloatTensor(x) || s.getType() != x.getType() || !isa_and_nonnull<MulOp>(mul) ||
      otherOperand(mul, s) != x || mul->getResult(0).getType() != x.getType())
    return false;
  rewriter.setInsertionPoint(mul);
  auto silu = rewriter.create<SiluOp>(mul->getLoc(), TypeRange{x.getType()}, ValueRange{x});
  finish(rewriter, mul, silu, {sigmoid});
  return true;
}

struct RecomposeActivationsPass
    : public impl::RecomposeActivationsBase<RecomposeActivationsPass> {
  void runOnOperation() override {
    rewriteEach(getOperation(), [](Operation *op, IRRewriter &rewriter) {
      if (auto erf = dyn_cast<ErfOp>(op))
        return geluErfAt(erf, rewriter);
      if (auto tanh = dyn_cast<TanhOp>(op))
        return geluTanhAt(tanh, rewriter);
      if (auto sigmoid = dyn_cast<SigmoidOp>(op))
        return siluAt(sigmoid, rewriter);
      return false;
    });
  }
};

} // namespace
} // namespace symoc
