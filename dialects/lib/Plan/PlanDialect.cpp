//===- PlanDialect.cpp - The symoc plan dialect ---------------------------===//

#include "symoc/Dialect/Plan/PlanDialect.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/OpImplementation.h"

using namespace mlir;
using namespace symoc::planir;

#include "symoc/Dialect/Plan/PlanDialect.cpp.inc"

void PlanDialect::initialize() {
  addOperations<
#define GET_OP_LIST
#include "symoc/Dialect/Plan/PlanOps.cpp.inc"
      >();
}

#define GET_OP_CLASSES
#include "symoc/Dialect/Plan/PlanOps.cpp.inc"
