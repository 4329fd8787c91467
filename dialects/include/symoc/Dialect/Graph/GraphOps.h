//===- GraphOps.h - Ops of the symoc graph dialect ---------------*- C++ -*-===//
#ifndef SYMOC_DIALECT_GRAPH_GRAPHOPS_H
#define SYMOC_DIALECT_GRAPH_GRAPHOPS_H

#include "mlir/Bytecode/BytecodeOpInterface.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/OpDefinition.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"

#include "symoc/Dialect/Graph/GraphDialect.h"
#include "symoc/Dialect/Graph/SymmetryRule.h"
#include "symoc/Dialect/Graph/SymmetryRuleInterface.h.inc"

#define GET_OP_CLASSES
#include "symoc/Dialect/Graph/GraphOps.h.inc"

#include <optional>
#include <utility>

namespace symoc::graph {
/// The value of a one-element float or integer constant (graph.constant), if `v` is one.
std::optional<double> constScalar(mlir::Value v);
/// The range [begin, end) of axis `axis` that a Slice keeps (the whole axis where it does
/// not slice it); nullopt where its bounds are not constant, its step is not 1 or the axis'
/// size is unknown.
std::optional<std::pair<int64_t, int64_t>> sliceKeeps(SliceOp op, int64_t axis);
} // namespace symoc::graph

#endif
