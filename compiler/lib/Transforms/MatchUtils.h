//===- MatchUtils.h - Small matchers shared by the recomposition passes ---===//
//
// The recomposition passes match short chains of graph ops by hand: each
// pattern states its conditions explicitly, and these helpers keep the
// conditions readable (a scalar constant with a known value, a reduction over
// the last axis only, a value with one use, the other operand of a binary op).
//
//===----------------------------------------------------------------------===//
#ifndef SYMOC_LIB_TRANSFORMS_MATCHUTILS_H
#define SYMOC_LIB_TRANSFORMS_MATCHUTILS_H

#include "symoc/Dialect/Graph/GraphOps.h"
#include "symoc/Transforms/Passes.h"

#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/PatternMatch.h"
#include "llvm/ADT/SmallVector.h"

#include <optional>
#include <vector>

namespace symoc::transforms {

/// The value of a constant that holds one number (a scalar, or a tensor with
/// one element), read from graph.constant. Parameters never qualify: their
/// bytes are not in the IR and they may be trained.
std::optional<double> scalarConstant(mlir::Value v);

/// True when `v` is a one-number constant equal to `expected` within a
/// relative tolerance `rtol` (absolute for expected == 0).
bool isConstant(mlir::Value v, double expected, double rtol = 0.0);

/// A floating-point ranked tensor of rank >= 1.
bool isFloatTensor(mlir::Value v);
int64_t rankOf(mlir::Value v);
/// Static size of the last axis, or -1.
int64_t lastDim(mlir::Value v);

/// `v` has exactly one use (one operand slot of one op).
bool hasOneUse(mlir::Value v);

/// The only op using `v` through exactly one operand slot, when it has exactly
/// one result; null otherwise.
mlir::Operation *singleUser(mlir::Value v);

/// A ReduceMean of `x` over the last axis only, with keepdims = 1 (axes from
/// the attribute before opset 18 or from the constant second input after).
bool isMeanOverLastAxis(mlir::Operation *op, mlir::Value x);

/// For a binary op with operands (a, b): if one of them is `known`, the other
/// one; null otherwise. Handles both orders (use only for commutative ops).
mlir::Value otherOperand(mlir::Operation *op, mlir::Value known);

/// `v` is x^2, written Pow(x, 2) or Mul(x, x); returns x (or null).
mlir::Value squaredValue(mlir::Value v, mlir::Operation **squareOp);

/// A 1-D vector that broadcasts along the last axis of a value whose last
/// axis has static size `dim` (the shape a norm's gain or bias has).
bool isLastAxisVector(mlir::Value v, int64_t dim);

/// The result of 1 / sqrt(mean(...) + eps) as it appears in an exported graph:
/// the pieces a norm pattern needs to rebuild and to erase.
struct InverseRms {
  mlir::Value meanInput;            // what the ReduceMean reduces (x^2 or d^2)
  double epsilon = 0.0;             // 0 when there is no Add
  llvm::SmallVector<mlir::Operation *> ops; // the ops to erase, uses first
};

/// Matches the normalized value `n` = x / sqrt(m + eps) in the forms
///   Div(x, Sqrt(m + eps)),  Mul(x, Reciprocal(Sqrt(m + eps))),
///   Mul(x, Div(1, Sqrt(m + eps))),  Mul(x, Pow(m + eps, -0.5)),
/// where m = ReduceMean(_) over the last axis of x with keepdims = 1 and eps is
/// a one-number constant (the Add may be absent). Every value between the
/// ReduceMean and `n` must have one use. Returns x (null when no match) and
/// fills `info`.
mlir::Value matchNormalized(mlir::Operation *root, InverseRms &info);

/// Erases `ops` (given uses first) when they have no uses left, then any
/// graph.constant operand left without uses.
void eraseDead(mlir::RewriterBase &rewriter,
               llvm::ArrayRef<mlir::Operation *> ops);

/// The integers of a graph.constant with a value (not booleans).
std::optional<std::vector<int64_t>> constInts(mlir::Value v);
/// An ONNX INTS attribute as stored by the importer.
std::optional<std::vector<int64_t>> intsAttr(mlir::Operation *op, llvm::StringRef name);
/// The opset the module was imported under (graph.opset; 17 when absent).
int64_t opsetOf(mlir::Operation *op);
/// `a` in [-r, r) as an axis in [0, r), or -1.
int64_t normalizeAxis(int64_t a, int64_t r);

/// A Slice along one axis: (axis, start, step, count), normalized.
struct SliceInfo {
  int64_t axis = -1, start = 0, step = 1, count = 0;
};
/// The one axis a graph.Slice cuts, with constant bounds (attributes before
/// opset 10, inputs after) and static shapes; the count must match the
/// result's size and every other axis must be unchanged. Positive steps only.
std::optional<SliceInfo> sliceOf(mlir::Operation *slice);

/// The values of a float graph.constant (row-major): from its `value` in the
/// IR or, for a large one the importer kept shape-only, through `reader`.
std::optional<std::vector<double>> constantValues(symoc::graph::ConstantOp c,
                                                  const ConstantReader &reader);

/// `a` and `b` hold the same tensor for every model input: the same value;
/// two constants of one type with equal entries (torch exports each use of a
/// tensor attribute as its own Constant node); or the same deterministic op
/// (a curated graph op, same attributes and result) of operands that are the
/// same in this sense.
bool sameTensor(mlir::Value a, mlir::Value b, const ConstantReader &reader, int depth = 0);

/// Builders for the data-movement ops that canonicalizations emit, in the
/// form of the module's opset (Slice bounds as attributes before opset 10, as
/// constant inputs after). Types are static and computed by the caller.
mlir::Value buildI64Constant(mlir::OpBuilder &b, mlir::Location loc,
                             llvm::ArrayRef<int64_t> values);
mlir::Value buildReshape(mlir::OpBuilder &b, mlir::Location loc, mlir::Value x,
                         llvm::ArrayRef<int64_t> shape);
/// x[start:end] along `axis` (step 1).
mlir::Value buildSlice(mlir::OpBuilder &b, mlir::Location loc, mlir::Value x, int64_t axis,
                       int64_t start, int64_t end);
mlir::Value buildConcat(mlir::OpBuilder &b, mlir::Location loc, mlir::ValueRange parts,
                        int64_t axis);
mlir::Value buildTranspose(mlir::OpBuilder &b, mlir::Location loc, mlir::Value x,
                           llvm::ArrayRef<int64_t> perm);
/// The static shape of a ranked tensor value (empty optional otherwise).
std::optional<llvm::SmallVector<int64_t>> staticShape(mlir::Value v);

/// Erases the candidates that have no uses, repeatedly (a user before its
/// operands or after), then the graph.constant operands left unused. A
/// candidate may be named more than once.
void eraseUnused(mlir::RewriterBase &rewriter, llvm::SmallVector<mlir::Operation *> cand);

/// The driver of every recomposition pass: calls `tryAt` on each op nested
/// under `root`, in program order, skipping ops that an earlier rewrite
/// erased. `tryAt` returns true when it rewrote. Returns the rewrite count.
unsigned rewriteEach(mlir::Operation *root,
                     llvm::function_ref<bool(mlir::Operation *, mlir::IRRewriter &)> tryAt);

} // namespace symoc::transforms

#endif // SYMOC_LIB_TRANSFORMS_MATCHUTILS_H
