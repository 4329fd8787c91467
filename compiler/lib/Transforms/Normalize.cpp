//===- Normalize.cpp - All recomposition passes in the analysis' order ----===//

#include "symoc/Transforms/Passes.h"

namespace symoc {
#define GEN_PASS_DEF_NORMALIZE
#include "symoc/Transforms/Passes.h.inc"
} // namespace symoc

using namespace mlir;

namespace symoc {

void addNormalizationPasses(OpPassManager &pm, ConstantReader reader) {
  // No-op Casts first: they sit inside the patterns the others match.
  pm.addPass(createFoldNoOpCasts());
  // Spellings of ops the analysis has a rule for: selections along one
  // factor of a fused projection's split axis become slices of the unsplit
  // axis (two-factor head splits), and rotary on sliced halves becomes the
  // rotate-half form that the rotary pass below recomposes.
  pm.addPass(createSplitFactorSelections());
  pm.addPass(createCanonicalizeSlicedRotaryPass(reader));
  // LayerNorm first: its second half, d / sqrt(mean(d^2) + eps), is also an
  // RMSNorm of the centred value d, and the LayerNorm is the op that says
  // more (its gain and bias, and that the centring is part of it).
  pm.addPass(createRecomposeLayerNorm());
  pm.addPass(createRecomposeRMSNorm());
  pm.addPass(createRecomposeActivations());
  pm.addPass(createRecomposeRotaryPass(std::move(reader)));
}

namespace {
struct NormalizePass : public impl::NormalizeBase<NormalizePass> {
  void runOnOperation() override {
    OpPassManager pm(ModuleOp::getOperationName());
    addNormalizationPasses(pm);
    if (failed(runPipeline(pm, getOperation())))
      signalPassFailure();
  }
};
} // namespace

} // namespace symoc
