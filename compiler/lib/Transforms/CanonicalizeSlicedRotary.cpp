//===- CanonicalizeSlicedRotary.cpp - RoPE on sliced halves -> rotate-half ===//
//
// Rotary embeddings are also written on the two halves of the channel axis:
//   x1, x2 = x[..., :h], x[..., h:]            (or x.chunk(2, -1): an even Split)
//   y = cat(x1 * cos - x2 * sin, x2 * cos + x1 * sin)      (cos, sin: h channels)
// Channel k < h of y is x_k c_k - x_{k+h} s_k and channel k + h is
// x_{k+h} c_k + x_k s_k: the rotate-half map with the tables cat(c, c) and
// cat(s, s). This pass rewrites the Concat into that spelling,
//   y = x * cat(c, c) + Concat(s1 * x2, s2 * x1) * cat(s, s),
// which symoc-recompose-rotary (run after it) turns into graph.Rotary. It is
// exact when (checked here): x1 and x2 are exactly [0, h) and [h, 2h) of the
// axis of x that the Concat joins, x has 2h channels there; each half of the
// Concat is a signed sum of two products, one of each half; the first half's
// x1 term and the second half's x2 term have sign +1 and the same table c; the
// other two terms the same table s and opposite signs s1 = -s2 ("the same":
// one value, or equal constants read from the model, as torch exports each
// use of a tensor attribute as its own Constant node) (either
// rotation sense, terms in any order, Sub or Add, Neg on either factor); and
// every product keeps the half's type (the tables broadcast into it). A table
// with h channels is doubled by a Concat along its channel axis; one that is
// broadcast along the channels (size 1 or no such axis) is used as it is.
// Anything else (halves that do not cover the axis, cos and sin swapped in one
// half, equal signs, halves swapped in the Concat) is left alone.
//
//===----------------------------------------------------------------------===//

#include "MatchUtils.h"
#include "symoc/Transforms/Passes.h"

#include "mlir/IR/PatternMatch.h"

namespace symoc {
#define GEN_PASS_DEF_CANONICALIZESLICEDROTARY
#include "symoc/Transforms/Passes.h.inc"
} // namespace symoc

using namespace mlir;
using namespace symoc::graph;
using namespace symoc::transforms;

namespace symoc {
namespace {

/// sign * half * table, read off [Neg] Mul([Neg] a, [Neg] b).
struct Term {
  int sign = 1;
  Value half, table;
  SmallVector<Operation *> ops; // the Mul and Negs, for erasing
};

Value stripNeg(Value v, int &sign, SmallVector<Operation *> &ops) {
  while (auto neg = v.getDefiningOp<NegOp>()) {
    if (neg->getNumOperands() != 1)
      break;
    sign = -sign;
    ops.push_back(neg);
    v = neg->getOperand(0);
  }
  return v;
}

/// A product of one of the halves (x1 or x2) with a table whose result has the
/// half's type (the table broadcasts into the half).
std::optional<Term> termOf(Value v, Value x1, Value x2) {
  Term t;
  v = stripNeg(v, t.sign, t.ops);
  Operation *mul = v.getDefiningOp();
  if (!isa_and_nonnull<MulOp>(mul) || mul->getNumOperands() != 2)
    return std::nullopt;
  t.ops.push_back(mul);
  for (int k = 0; k < 2; ++k) {
    Term c = t;
    Value a = stripNeg(mul->getOperand(k), c.sign, c.ops);
    Value b = stripNeg(mul->getOperand(1 - k), c.sign, c.ops);
    bool aHalf = a == x1 || a == x2, bHalf = b == x1 || b == x2;
    if (!aHalf || bHalf || mul->getResult(0).getType() != a.getType())
      continue;
    c.half = a;
    c.table = b;
    return c;
  }
  return std::nullopt;
}

/// v = t1 + t2 (Add either order, Sub, negations inside the terms).
std::optional<std::pair<Term, Term>> sumOf(Value v, Value x1, Value x2) {
  Operation *op = v.getDefiningOp();
  if (!isa_and_nonnull<AddOp, SubOp>(op) || op->getNumOperands() != 2 ||
      op->getResult(0).getType() != x1.getType())
    return std::nullopt;
  auto a = termOf(op->getOperand(0), x1, x2), b = termOf(op->getOperand(1), x1, x2);
  if (!a || !b)
    return std::nullopt;
  if (isa<SubOp>(op))
    b->sign = -b->sign;
  a->ops.push_back(op);
  return std::make_pair(*a, *b);
}

/// The two halves of `x` along `axis`: x1 = [0, h), x2 = [h, 2h) with 2h the
/// axis' size, as Slices of one x or the two results of one Split.
std::optional<std::pair<Value, Value>> halvesOf(Value first, Value second, int64_t axis) {
  if (auto s1 = sliceOf(first.getDefiningOp()), s2 = sliceOf(second.getDefiningOp());
      s1 && s2) {
    Value x = first.getDefiningOp()->getOperand(0);
    auto shape = staticShape(x);
    if (x != second.getDefiningOp()->getOperand(0) || !shape || s1->axis != axis ||
        s2->axis != axis || s1->step != 1 || s2->step != 1)
      return std::nullopt;
    int64_t n = (*shape)[size_t(axis)], h = s1->count;
    if (2 * h != n || s1->start != 0 || s2->start != h || s2->count != h)
      return std::nullopt;
    return std::make_pair(first, second);
  }
  Operation *split = first.getDefiningOp();
  if (!isa_and_nonnull<SplitOp>(split) || second.getDefiningOp() != split ||
      split->getNumResults() != 2 || split->getResult(0) != first ||
      split->getResult(1) != second)
    return std::nullopt;
  auto shape = staticShape(split->getOperand(0)), s1 = staticShape(first),
       s2 = staticShape(second);
  auto ax = split->getAttrOfType<IntegerAttr>("axis");
  if (!shape || !s1 || !s2 || normalizeAxis(ax ? ax.getInt() : 0, int64_t(shape->size())) != axis)
    return std::nullopt;
  int64_t n = (*shape)[size_t(axis)];
  if (2 * (*s1)[size_t(axis)] != n || (*s2)[size_t(axis)] != n / 2)
    return std::nullopt;
  return std::make_pair(first, second);
}

/// The table for the whole axis: cat(t, t) along t's channel axis, or t when
/// it is broadcast along the channels. Null when t does not broadcast into a
/// half of rank r with h channels at `axis`.
Value wholeTable(IRRewriter &rewriter, Location loc, Value t, int64_t r, int64_t axis, int64_t h) {
  auto ts = staticShape(t);
  if (!ts || int64_t(ts->size()) > r)
    return {};
  int64_t i = axis - (r - int64_t(ts->size()));
  if (i < 0 || (*ts)[size_t(i)] == 1)
    return t;
  if ((*ts)[size_t(i)] != h)
    return {};
  return buildConcat(rewriter, loc, ValueRange{t, t}, i);
}

Value negated(IRRewriter &rewriter, Location loc, Value v, int sign) {
  if (sign > 0)
    return v;
  return rewriter.create<NegOp>(loc, TypeRange{v.getType()}, ValueRange{v})->getResult(0);
}

bool rewriteAt(ConcatOp cat, const ConstantReader &reader, IRRewriter &rewriter) {
  if (cat->getNumOperands() != 2 || cat->getNumResults() != 1)
    return false;
  auto ys = staticShape(cat->getResult(0));
  auto ax = cat->getAttrOfType<IntegerAttr>("axis");
  if (!ys || !ax)
    return false;
  int64_t r = int64_t(ys->size()), axis = normalizeAxis(ax.getInt(), r);
  if (axis < 0)
    return false;
  // The halves are the operands of the terms: find them from the first
  // Concat operand's products, then check they are x's two halves.
  Operation *first = cat->getOperand(0).getDefiningOp();
  if (!isa_and_nonnull<AddOp, SubOp>(first) || first->getNumOperands() != 2)
    return false;
  SmallVector<Value> cands;
  for (Value term : first->getOperands()) {
    SmallVector<Operation *> ignored;
    int sign = 1;
    Operation *mul = stripNeg(term, sign, ignored).getDefiningOp();
    if (!isa_and_nonnull<MulOp>(mul))
      return false;
    for (Value f : mul->getOperands())
      cands.push_back(stripNeg(f, sign, ignored));
  }
  for (Value x1 : cands)
    for (Value x2 : cands) {
      if (x1 == x2 || !halvesOf(x1, x2, axis))
        continue;
      Value x = x1.getDefiningOp()->getOperand(0);
      if (x.getType() != cat->getResult(0).getType())
        continue;
      auto out1 = sumOf(cat->getOperand(0), x1, x2), out2 = sumOf(cat->getOperand(1), x1, x2);
      if (!out1 || !out2)
        continue;
      // out1 = x1 c + s1 x2 s;  out2 = x2 c + s2 x1 s.
      auto [c1, s1] = out1->first.half == x1 ? *out1 : std::make_pair(out1->second, out1->first);
      auto [c2, s2] = out2->first.half == x2 ? *out2 : std::make_pair(out2->second, out2->first);
      if (c1.half != x1 || s1.half != x2 || c2.half != x2 || s2.half != x1 || c1.sign != 1 ||
          c2.sign != 1 || !sameTensor(c1.table, c2.table, reader) ||
          !sameTensor(s1.table, s2.table, reader) ||
          s1.sign != -s2.sign)
        continue;
      int64_t h = (*ys)[size_t(axis)] / 2;
      Location loc = cat->getLoc();
      rewriter.setInsertionPoint(cat);
      Value cosAll = wholeTable(rewriter, loc, c1.table, r, axis, h);
      Value sinAll = cosAll ? wholeTable(rewriter, loc, s1.table, r, axis, h) : Value();
      if (!cosAll || !sinAll) {
        // Nothing used yet: the built Concats go again.
        SmallVector<Operation *> built;
        for (Value v : {cosAll, sinAll})
          if (v && v != c1.table && v != s1.table)
            built.push_back(v.getDefiningOp());
        eraseUnused(rewriter, built);
        continue;
      }
      // Fresh Slices of x: the rotary pass reads g off Slice/Neg/Concat.
      Value lo = buildSlice(rewriter, loc, x, axis, 0, h);
      Value hi = buildSlice(rewriter, loc, x, axis, h, 2 * h);
      Value g = buildConcat(rewriter, loc,
                            ValueRange{negated(rewriter, loc, hi, s1.sign),
                                       negated(rewriter, loc, lo, s2.sign)},
                            axis);
      Type yt = x.getType();
      Value xc = rewriter.create<MulOp>(loc, TypeRange{yt}, ValueRange{x, cosAll})->getResult(0);
      Value gs = rewriter.create<MulOp>(loc, TypeRange{yt}, ValueRange{g, sinAll})->getResult(0);
      Value y = rewriter.create<AddOp>(loc, TypeRange{yt}, ValueRange{xc, gs})->getResult(0);
      rewriter.replaceAllUsesWith(cat->getResult(0), y);
      SmallVector<Operation *> dead{cat, x1.getDefiningOp(), x2.getDefiningOp()};
      for (const Term *t : {&out1->first, &out1->second, &out2->first, &out2->second})
        dead.append(t->ops.begin(), t->ops.end());
      eraseUnused(rewriter, dead);
      return true;
    }
  return false;
}

struct CanonicalizeSlicedRotaryPass
    : public impl::CanonicalizeSlicedRotaryBase<CanonicalizeSlicedRotaryPass> {
  CanonicalizeSlicedRotaryPass() = default;
  explicit CanonicalizeSlicedRotaryPass(ConstantReader r) : reader(std::move(r)) {}
  void runOnOperation() override {
    rewriteEach(getOperation(), [&](Operation *op, IRRewriter &rewriter) {
      auto cat = dyn_cast<ConcatOp>(op);
      return cat && rewriteAt(cat, reader, rewriter);
    });
  }
  ConstantReader reader;
};

} // namespace

std::unique_ptr<Pass> createCanonicalizeSlicedRotaryPass(ConstantReader reader) {
  return std::make_unique<CanonicalizeSlicedRotaryPass>(std::move(reader));
}
} // namespace symoc
