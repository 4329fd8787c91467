//===- GraphDialect.cpp - The symoc graph dialect -------------------------===//

#include "symoc/Dialect/Graph/GraphDialect.h"
#include "symoc/Dialect/Graph/GraphOps.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/OpImplementation.h"

using namespace mlir;
using namespace symoc::graph;

#include "symoc/Dialect/Graph/GraphDialect.cpp.inc"
#include "symoc/Dialect/Graph/SymmetryRuleInterface.cpp.inc"

void GraphDialect::initialize() {
  addOperations<
#define GET_OP_LIST
#include "symoc/Dialect/Graph/GraphOps.cpp.inc"
      >();
}

#define GET_OP_CLASSES
#include "symoc/Dialect/Graph/GraphOps.cpp.inc"
