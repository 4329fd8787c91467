//===- PlanIR.h - The plan as `plan` dialect IR ---------------------------===//
#ifndef SYMOC_PLAN_PLANIR_H
#define SYMOC_PLAN_PLANIR_H

#include "symoc/Plan/Plan.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/IR/OwningOpRef.h"

#include <string>

namespace symoc::plan {

/// A module holding one plan.optimizer op (loads the plan dialect into ctx).
mlir::OwningOpRef<mlir::ModuleOp> toPlanIR(mlir::MLIRContext &ctx, const Plan &plan);

/// `symoc compile --emit mlir`: the IR as text. The text is parsed back and verified
/// before it is returned (throws symoc::Error when it does not round-trip).
std::string formatPlanIR(const Plan &plan);

} // namespace symoc::plan

#endif
