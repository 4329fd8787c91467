//===- PlanDialect.h - The symoc plan dialect --------------------*- C++ -*-===//
#ifndef SYMOC_DIALECT_PLAN_PLANDIALECT_H
#define SYMOC_DIALECT_PLAN_PLANDIALECT_H

#include "mlir/Bytecode/BytecodeOpInterface.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/Dialect.h"
#include "mlir/IR/OpDefinition.h"
#include "mlir/IR/RegionKindInterface.h"
#include "mlir/IR/SymbolTable.h"

#include "symoc/Dialect/Plan/PlanDialect.h.inc"

#define GET_OP_CLASSES
#include "symoc/Dialect/Plan/PlanOps.h.inc"

#endif
