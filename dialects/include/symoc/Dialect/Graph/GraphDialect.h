//===- GraphDialect.h - The symoc graph dialect ------------------*- C++ -*-===//
#ifndef SYMOC_DIALECT_GRAPH_GRAPHDIALECT_H
#define SYMOC_DIALECT_GRAPH_GRAPHDIALECT_H

#include "mlir/IR/Dialect.h"

#include "symoc/Dialect/Graph/GraphDialect.h.inc"

#endif
