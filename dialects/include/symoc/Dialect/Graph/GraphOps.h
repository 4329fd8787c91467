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

namespace symoc::graph {
/// The value of a one-element float or integer constant (graph.constant), if `v` is one.
std::optional<double> constScalar(mlir::Value v);
} // namespace symoc::graph

#endif
