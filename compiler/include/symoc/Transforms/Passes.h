//===- Passes.h - symoc's transformation passes -----------------*- C++ -*-===//
#ifndef SYMOC_TRANSFORMS_PASSES_H
#define SYMOC_TRANSFORMS_PASSES_H

#include "symoc/Dialect/Graph/GraphDialect.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/Pass/Pass.h"
#include "mlir/Pass/PassManager.h"

#include <functional>
#include <memory>
#include <optional>
#include <vector>

namespace symoc {

#define GEN_PASS_DECL
#include "symoc/Transforms/Passes.h.inc"

/// Reads a fixed tensor's values (row-major, as doubles) by the name a
/// graph.constant carries: the importer keeps only the shape of large float
/// constants (rotary tables), `symoc analyze` reads them from the model.
using ConstantReader = std::function<std::optional<std::vector<double>>(llvm::StringRef)>;

/// symoc-recompose-rotary with a reader for constants without a value in the IR.
std::unique_ptr<mlir::Pass> createRecomposeRotaryPass(ConstantReader reader);
/// symoc-canonicalize-sliced-rotary with the same reader (tables that torch
/// exported as two equal Constant nodes are compared by value).
std::unique_ptr<mlir::Pass> createCanonicalizeSlicedRotaryPass(ConstantReader reader);

/// Adds the canonicalization and recomposition passes in the order the
/// analysis wants them: no-op Casts, then the spellings that map onto
/// existing rules (selections along one factor of a split axis, rotary on
/// sliced halves), then the recompositions (LayerNorm before RMSNorm: a LayerNorm's second half is an RMSNorm of the
/// centred input, and the LayerNorm is the more informative op; activations
/// last). `pm` must be anchored on builtin.module (a PassManager for a
/// ModuleOp binds here).
/// The rotary pass runs last, with `reader` (may be empty: then only tables
/// with a value in the IR are read).
void addNormalizationPasses(mlir::OpPassManager &pm, ConstantReader reader = {});

#define GEN_PASS_REGISTRATION
#include "symoc/Transforms/Passes.h.inc"

} // namespace symoc

#endif // SYMOC_TRANSFORMS_PASSES_H
