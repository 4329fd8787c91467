//===- Passes.h - symoc's transformation passes -----------------*- C++ -*-===//
#ifndef SYMOC_TRANSFORMS_PASSES_H
#define SYMOC_TRANSFORMS_PASSES_H

#include "symoc/Dialect/Graph/GraphDialect.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/Pass/Pass.h"
#include "mlir/Pass/PassManager.h"

#include <memory>

namespace symoc {

#define GEN_PASS_DECL
#include "symoc/Transforms/Passes.h.inc"

/// Adds the recomposition passes in the order the analysis wants them
/// (LayerNorm before RMSNorm: a LayerNorm's second half is an RMSNorm of the
/// centred input, and the LayerNorm is the more informative op; activations
/// last). `pm` must be anchored on builtin.module (a PassManager for a
/// ModuleOp binds here).
void addNormalizationPasses(mlir::OpPassManager &pm);

#define GEN_PASS_REGISTRATION
#include "symoc/Transforms/Passes.h.inc"

} // namespace symoc

#endif // SYMOC_TRANSFORMS_PASSES_H
