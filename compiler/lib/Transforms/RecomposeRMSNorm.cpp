//===- RecomposeRMSNorm.cpp - x / rms(x) [* gain] -> graph.RMSNormalization ===//
//
// Exporters before ONNX opset 23 spell RMSNorm out:
//   n = x * Reciprocal(Sqrt(ReduceMean(x^2, axes=[-1], keepdims=1) + eps))
// (or Div(x, Sqrt(...)), Mul(x, Div(1, Sqrt(...))), Mul(x, Pow(... , -0.5))),
// usually followed by Mul(n, gain). The recomposed op computes the same
// function, so the analysis can apply the RMSNorm rule (signed permutations,
// rotations without a gain) instead of the rules of the pieces.
//
//===----------------------------------------------------------------------===//

#include "MatchUtils.h"
#include "symoc/Transforms/Passes.h"

#include "mlir/IR/PatternMatch.h"

namespace symoc {
#define GEN_PASS_DEF_RECOMPOSERMSNORM
#include "symoc/Transforms/Passes.h.inc"
} // namespace symoc

using namespace mlir;
using namespace symoc::graph;
using namespace symoc::transforms;

namespace symoc {
namespace {

/// Tries to recompose an RMSNorm whose normalized value is `root`'s result.
bool recomposeAt(Operation *root, IRRewriter &rewriter) {
  InverseRms info;
  Value x = matchNormalized(root, info);
  if (!x)
    return false;
  // The mean must be of x^2 for the same x that is divided: Pow(x, 2) or
  // Mul(x, x), used only by the ReduceMean.
  Operation *square = nullptr;
  if (squaredValue(info.meanInput, &square) != x || !hasOneUse(info.meanInput))
    return false;
  info.ops.push_back(square);

  // Optional gain: the normalized value's only use is Mul(n, g) (either
  // order) with g a vector along the last axis, so the product keeps x's
  // shape and scales each normalized coordinate by its own factor.
  Value normalized = root->getResult(0);
  Operation *last = root;
  Value gain;
  if (Operation *user = singleUser(normalized); isa_and_nonnull<MulOp>(user)) {
    Value g = otherOperand(user, normalized);
    if (g && g != normalized && isLastAxisVector(g, lastDim(x)) &&
        user->getResult(0).getType() == x.getType()) {
      gain = g;
      last = user;
    }
  }

  rewriter.setInsertionPoint(last);
  SmallVector<Value> operands{x};
  if (gain)
    operands.push_back(gain);
  auto norm = rewriter.create<RMSNormalizationOp>(last->getLoc(), TypeRange{x.getType()},
                                                  operands);
  norm->setAttr("axis", rewriter.getI64IntegerAttr(-1));
  norm->setAttr("epsilon", rewriter.getF32FloatAttr(float(info.epsilon)));
  rewriter.replaceOp(last, norm->getResults());
  SmallVector<Operation *> dead;
  if (last != root)
    dead.push_back(root);
  dead.append(info.ops.begin(), info.ops.end());
  eraseDead(rewriter, dead);
  return true;
}

struct RecomposeRMSNormPass
    : public impl::RecomposeRMSNormBase<RecomposeRMSNormPass> {
  void runOnOperation() override {
    rewriteEach(getOperation(), [](Operation *op, IRRewriter &rewriter) {
      return isa<MulOp, DivOp>(op) && recomposeAt(op, rewriter);
    });
  }
};

} // namespace
} // namespace symoc
