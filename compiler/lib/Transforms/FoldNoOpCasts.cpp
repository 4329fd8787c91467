//===- FoldNoOpCasts.cpp - Cast to the type a value already has -> the value ===//
//
// Code written for mixed precision casts around every normalization
// (Hugging Face's RMSNorm: x.to(float32) ... .to(input_dtype)); exported in
// float32 these are Casts from f32 to f32, the identity. They sit inside the
// patterns the recompose passes look for, so they go first. Identity nodes go
// with them. Exact: the value is unchanged, NaNs included.
//
//===----------------------------------------------------------------------===//

#include "symoc/Transforms/Passes.h"

#include "symoc/Dialect/Graph/GraphOps.h"

namespace symoc {
#define GEN_PASS_DEF_FOLDNOOPCASTS
#include "symoc/Transforms/Passes.h.inc"
} // namespace symoc

using namespace mlir;
using namespace symoc::graph;

namespace symoc {
namespace {

struct FoldNoOpCastsPass : public impl::FoldNoOpCastsBase<FoldNoOpCastsPass> {
  void runOnOperation() override {
    SmallVector<Operation *> dead;
    getOperation()->walk([&](Operation *op) {
      if (!isa<CastOp, IdentityOp>(op) || op->getNumOperands() != 1 ||
          op->getNumResults() != 1)
        return;
      Value in = op->getOperand(0), out = op->getResult(0);
      // Same element type and same shape: nothing to convert. A Cast that
      // changes the type (f32 -> f16 -> f32 rounds) is kept, and so is every
      // integer Cast: the IR's signless integers do not tell int8 from uint8
      // (Cast(-1, uint8) is 255; a session-35 audit).
      if (in.getType() != out.getType())
        return;
      auto t = dyn_cast<ShapedType>(in.getType());
      if (isa<CastOp>(op) && (!t || !isa<FloatType>(t.getElementType())))
        return;
      out.replaceAllUsesWith(in);
      dead.push_back(op);
    });
    for (Operation *op : dead)
      op->erase();
  }
};

} // namespace
} // namespace symoc
