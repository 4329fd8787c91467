//===- RecomposeLayerNorm.cpp - decomposed LayerNorm -> LayerNormalization ===//
//
// torch.onnx before opset 17 writes nn.LayerNorm as
//   mu = ReduceMean(x, axes=[-1], keepdims=1)
//   d  = Sub(x, mu)
//   v  = ReduceMean(Pow(d, 2) or Mul(d, d), axes=[-1], keepdims=1)
//   n  = Div(d, Sqrt(Add(v, eps)))            (or the other 1/sqrt forms)
//   y  = Add(Mul(n, gain), bias)              (gain and bias optional)
// graph.LayerNormalization(x, gain, bias) {axis = -1, epsilon} computes the same
// function. An absent gain with a present bias becomes graph.none.
//
//===----------------------------------------------------------------------===//

#include "MatchUtils.h"
#include "symoc/Transforms/Passes.h"

namespace symoc {
#define GEN_PASS_DEF_RECOMPOSELAYERNORM
#include "symoc/Transforms/Passes.h.inc"
} // namespace symoc

using namespace mlir;
using namespace symoc::graph;
using namespace symoc::transforms;

namespace symoc {
namespace {

/// `op` is Mul(v, w) or Add(v, w) (either order) with w a vector along the
/// last axis that keeps v's type; returns w.
Value affineVector(Operation *op, Value v, int64_t dim) {
  Value w = otherOperand(op, v);
  if (!w || w == v || !isLastAxisVector(w, dim) ||
      op->getResult(0).getType() != v.getType())
    return Value();
  return w;
}

bool recomposeAt(Operation *root, IRRewriter &rewriter) {
  // n = d / sqrt(mean(q) + eps) with d the divided value.
  InverseRms info;
  Value d = matchNormalized(root, info);
  if (!d)
    return false;
  // q = d^2 for the same d.
  Operation *square = nullptr;
  if (squaredValue(info.meanInput, &square) != d || !hasOneUse(info.meanInput))
    return false;
  // d = x - mean(x) over the last axis, keepdims.
  auto sub = d.getDefiningOp<SubOp>();
  if (!sub || sub->getNumOperands() != 2)
    return false;
  Value x = sub->getOperand(0), mu = sub->getOperand(1);
  if (x.getType() != d.getType() || !hasOneUse(mu) ||
      !isMeanOverLastAxis(mu.getDefiningOp(), x))
    return false;
  // d feeds only the square and the division: nothing else sees the centred
  // value that disappears.
  for (OpOperand &use : d.getUses())
    if (use.getOwner() != square && use.getOwner() != root)
      return false;

  // Optional gain then optional bias (a bias alone is allowed too).
  int64_t dim = lastDim(x);
  Value y = root->getResult(0);
  Operation *last = root;
  Value gain, bias;
  SmallVector<Operation *> affine;
  if (Operation *user = singleUser(y); isa_and_nonnull<MulOp>(user)) {
    if ((gain = affineVector(user, y, dim))) {
      affine.push_back(user);
      y = user->getResult(0);
      last = user;
    }
  }
  if (Operation *user = singleUser(y); isa_and_nonnull<AddOp>(user)) {
    if ((bias = affineVector(user, y, dim))) {
      affine.push_back(user);
      last = user;
    }
  }

  rewriter.setInsertionPoint(last);
  SmallVector<Value> operands{x};
  if (gain || bias)
    operands.push_back(gain ? gain
                            : rewriter.create<NoneOp>(last->getLoc(),
                                                      rewriter.getType<NoneType>())
                                  .getResult());
  if (bias)
    operands.push_back(bias);
  auto norm = rewriter.create<LayerNormalizationOp>(last->getLoc(),
                                                    TypeRange{x.getType()}, operands);
  norm->setAttr("axis", rewriter.getI64IntegerAttr(-1));
  norm->setAttr("epsilon", rewriter.getF32FloatAttr(float(info.epsilon)));
  rewriter.replaceOp(last, norm->getResults());

  // Erase from the last use backwards (`last` is gone already): the gain Mul
  // when a bias followed it, the root, the inverse-RMS chain, the square, d,
  // and the mean of x.
  SmallVector<Operation *> dead;
  for (Operation *op : llvm::reverse(affine))
    if (op != last)
      dead.push_back(op);
  if (last != root)
    dead.push_back(root);
  dead.append(info.ops.begin(), info.ops.end());
  dead.push_back(square);
  dead.push_back(sub);
  dead.push_back(mu.getDefiningOp());
  eraseDead(rewriter, dead);
  return true;
}

struct RecomposeLayerNormPass
    : public impl::RecomposeLayerNormBase<RecomposeLayerNormPass> {
  void runOnOperation() override {
    rewriteEach(getOperation(), [](Operation *op, IRRewriter &rewriter) {
      return isa<MulOp, DivOp>(op) && recomposeAt(op, rewriter);
    });
  }
};

} // namespace
} // namespace symoc
