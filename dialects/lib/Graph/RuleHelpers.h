//===- RuleHelpers.h - Shared pieces of the per-op symmetry rules ---------===//
#ifndef SYMOC_DIALECTS_LIB_GRAPH_RULEHELPERS_H
#define SYMOC_DIALECTS_LIB_GRAPH_RULEHELPERS_H

#include "symoc/Dialect/Graph/GraphOps.h"

#include <optional>
#include <vector>

namespace symoc::graph {

/// Rank of a ranked tensor value, -1 otherwise.
/// What an op that acts coordinate by coordinate allows: permutations, sign
/// flips and positive scalings, no mixing of coordinates.
constexpr unsigned kNoMixing = kPerm | kSign | kScale;

int64_t rankOf(mlir::Value v);

/// Static size of axis `a`; -1 when dynamic, unranked, or an axis the value does not have.
int64_t dimOf(mlir::Value v, int64_t a);
/// Normalizes a possibly negative axis; -1 when out of range.
int64_t normAxis(int64_t axis, int64_t rank);

/// Same space, same transform: tie + equal scale and sign exponents.
void tieSame(SpaceBuilder &b, mlir::Value x, int64_t a, mlir::Value y, int64_t c);
/// The two sides of a contraction: tie(dual) + opposite scale exponents and
/// equal signs.
void tieDual(SpaceBuilder &b, mlir::Value x, int64_t a, mlir::Value y, int64_t c);
/// The axis is pinned against scaling and sign flips (a nonlinear function).
void pinFlows(SpaceBuilder &b, mlir::Value x, int64_t a);
/// Axis by axis for x and y of one rank: an axis for which `why(a)` names a reason is fixed
/// on both sides with it, one whose sizes differ with "axis sizes differ"; every other axis
/// is tied with equal scale and sign (a fixed linear map along the fixed axes, applied alike
/// at every index of the others: Resize, DFT, CumSum).
void tieAxesUnlessFixed(SpaceBuilder &b, mlir::Value x, mlir::Value y,
                        llvm::function_ref<const char *(int64_t)> why);
/// restrict() for every axis of v.
void restrictAll(SpaceBuilder &b, mlir::Value v, unsigned bits, llvm::StringRef why);
/// Fixes every operand and result of an op: a barrier.
void barrier(SpaceBuilder &b, mlir::Operation *op, llvm::StringRef why);
/// For ops whose rule covers their first result only (BatchNormalization's running
/// statistics, LayerNormalization's mean and inverse deviation, pooling indices, Dropout's
/// mask): a barrier when any other result is read (by a node or as a graph output), since
/// those results depend on the inputs in ways the rule does not describe. True when it was one.
bool barrierIfExtraResultsUsed(SpaceBuilder &b, mlir::Operation *op, llvm::StringRef what);

/// The integer values of a constant operand (graph.constant with a value), if known.
std::optional<std::vector<int64_t>> constInts(mlir::Value v);
/// The floating-point values of a constant operand, if known.
std::optional<std::vector<double>> constFloats(mlir::Value v);
/// A string attribute with a default.
std::string strAttr(mlir::Operation *op, llvm::StringRef name, llvm::StringRef dflt);
/// An integer-list attribute, if present.
std::optional<std::vector<int64_t>> intsAttr(mlir::Operation *op, llvm::StringRef name);
/// An integer attribute with a default.
int64_t intAttr(mlir::Operation *op, llvm::StringRef name, int64_t dflt);
/// The opset version the op was imported under (attribute graph.opset).
int64_t opsetOf(mlir::Operation *op);
/// True for the placeholder of an absent optional input.
bool isNone(mlir::Value v);

/// Equal(positions, table) as a OneHot (PositionRules.cpp): where one operand holds positions
/// along a known axis and the other is the constant table 0, 1, ..., n - 1 along one axis (size
/// 1 on every other), the result is that axis' one-hot encoding. Returns false, having said
/// nothing, when the op is not of that form.
bool equalAsOneHot(SpaceBuilder &b, mlir::Operation *op);

/// A Cast between float types that keeps every value of the source up to float32's
/// rounding (f16 -> f32, f32 -> f64, f64 -> f32): the identity on values, as every rule
/// treats float32 arithmetic. False for a cast to a coarser format (f32 -> f16 or bf16,
/// f16 <-> bf16), which rounds visibly, and for any cast from or to a non-float type.
bool exactFloatCast(mlir::Operation *cast);

/// True when every element of `v` is the same constant (a splat graph.constant,
/// or ConstantOfShape): unchanged by any permutation of its axes.
bool isUniformConstant(mlir::Value v);

/// Aligns operands to the result by numpy broadcasting: for every operand axis
/// whose size equals the result's, calls `matched(operand, axis, resultAxis)`;
/// for operand axes of size 1 against a larger result axis, calls
/// `broadcast(operand, resultAxis)`. Result axes missing from an operand
/// count as broadcast too.
void forBroadcastAxes(
    mlir::Operation *op, mlir::Value result,
    llvm::function_ref<void(mlir::Value, int64_t, int64_t)> matched,
    llvm::function_ref<void(mlir::Value, int64_t)> broadcast);

} // namespace symoc::graph

#endif
