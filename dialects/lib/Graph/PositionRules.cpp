//===- PositionRules.cpp - Rules of ops that make or take positions -------===//
//
// TopK returns positions along an axis; Gather, GatherND, GatherElements and
// ScatterElements index an axis by positions. When the positions come from a
// TopK over axis `a` of X (the builder records that provenance), permuting
// axis `a` of X relabels every position by the same permutation, so the axis
// they index can be tied to X's axis under permutations only. Positions of
// unknown origin (model inputs, constants, arithmetic) keep that axis fixed,
// and positions used in any other way fix their source (checked by the
// builder after the last op).
//
// Ties between equal elements (TopK returns the lower position first) break
// the relabelling: no permutation commutes with "the lower position first".
// They are ignored where they have measure zero: TopK's input must be made by
// ops without flat pieces from linear maps, parameters or model inputs
// (TieWalk::distinct). A Relu, a clamp, a Max or Min against a constant, a
// rounding or a product with zero before the TopK makes ties with positive
// probability (fuzz_semantic --mutations insert found it on the MoE routers),
// and then the axis is fixed.
//
//===----------------------------------------------------------------------===//

#include "RuleHelpers.h"

#include "mlir/IR/BuiltinAttributes.h"
#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/SmallPtrSet.h"

#include <cmath>

using namespace mlir;

namespace symoc::graph {
namespace {

/// A float constant with every value known and none of them zero.
bool nonzeroConstant(Value v) {
  auto c = v.getDefiningOp<ConstantOp>();
  if (!c || !c.getValue())
    return false;
  auto dense = dyn_cast<DenseElementsAttr>(*c.getValue());
  if (!dense || !isa<FloatType>(dense.getElementType()))
    return false;
  for (const APFloat &x : dense.getValues<APFloat>())
    if (x.isZero() || x.isNaN())
      return false;
  return true;
}

/// True when `v` has the full shape of `of` (no broadcast axis): the same rank and
/// dimensions, a dynamic one matching a dynamic one (an exported batch or sequence axis).
bool fullShape(Value v, Value of) {
  auto a = dyn_cast<RankedTensorType>(v.getType()), b = dyn_cast<RankedTensorType>(of.getType());
  return a && b && a.getShape() == b.getShape();
}

/// `v` with exact signed copies stripped (Identity, Neg, a product or quotient by a scalar
/// constant +-1): the value it copies and whether the copy is negated.
std::pair<Value, bool> signedRoot(Value v) {
  bool neg = false;
  auto unit = [](Value c) -> std::optional<bool> {
    std::optional<double> s = constScalar(c);
    if (s && (*s == 1.0 || *s == -1.0))
      return *s < 0;
    return std::nullopt;
  };
  for (int depth = 0; depth < 64; ++depth) {
    Operation *op = v.getDefiningOp();
    if (!op)
      break;
    if (isa<IdentityOp, NegOp>(op)) {
      neg ^= isa<NegOp>(op);
      v = op->getOperand(0);
      continue;
    }
    if (isa<MulOp, DivOp>(op) && op->getNumOperands() == 2) {
      if (std::optional<bool> u = unit(op->getOperand(1))) {
        neg ^= *u;
        v = op->getOperand(0);
        continue;
      }
      if (isa<MulOp>(op))
        if (std::optional<bool> u = unit(op->getOperand(0))) {
          neg ^= *u;
          v = op->getOperand(1);
          continue;
        }
    }
    break;
  }
  return {v, neg};
}

/// a + c (add) or a - c is exactly zero by construction: the same value, up to a sign that
/// cancels (x + (-x), x - x, x + x * -1, x - Identity(x)). Cancellation between separately
/// computed equal values (W x - W x) is not seen: the measure-zero convention assumes none.
bool cancels(Value a, Value c, bool add) {
  auto [ra, na] = signedRoot(a);
  auto [rc, nc] = signedRoot(c);
  return ra == rc && (add ? na != nc : na == nc);
}

/// The walk behind TopK's tie condition, over the ops that make its input. Binary ops
/// look at both operands, so a shared subgraph could be visited many times: the walk has
/// a budget of visits, and past it answers conservatively (may tie, may be zero).
struct TieWalk {
  int budget = 1024;

  /// Every entry is exactly zero: a zero constant, or a product / linear map with such a
  /// factor, or a sum that cancels (x - x, x + (-x): `cancels`).
  bool knownZero(Value v) {
    if (--budget < 0)
      return true;
    if (std::optional<double> c = constScalar(v); c && *c == 0.0)
      return true;
    if (auto c = v.getDefiningOp<ConstantOp>(); c && c.getValue())
      if (auto dense = dyn_cast<DenseElementsAttr>(*c.getValue());
          dense && dense.isSplat() && isa<FloatType>(dense.getElementType()))
        return dense.getSplatValue<APFloat>().isZero();
    Operation *op = v.getDefiningOp();
    if (!op)
      return false;
    if (isa<MulOp, MatMulOp, EinsumOp>(op))
      return llvm::any_of(op->getOperands(), [&](Value x) { return knownZero(x); });
    if (isa<GemmOp, ConvOp>(op)) { // the bias (operand 2) is added, not a factor
      auto zero = [&](unsigned i) { return knownZero(op->getOperand(i)); };
      // Gemm's alpha scales the product and beta the bias: a zero one drops its term (fuzz
      // seed 2130: a router Gemm with alpha 0 gave all-zero logits).
      auto scalar = [&](const char *name) {
        auto a = op->getAttrOfType<FloatAttr>(name);
        return isa<GemmOp>(op) && a ? a.getValueAsDouble() : 1.0;
      };
      const bool noBias = op->getNumOperands() < 3 || isNone(op->getOperand(2)) || scalar("beta") == 0.0 || zero(2);
      return op->getNumOperands() >= 2 && (scalar("alpha") == 0.0 || zero(0) || zero(1)) && noBias;
    }
    if (isa<AddOp, SubOp>(op) && cancels(op->getOperand(0), op->getOperand(1), isa<AddOp>(op)))
      return true;
    if (isa<ReshapeOp, TransposeOp, SqueezeOp, UnsqueezeOp, FlattenOp, IdentityOp, NegOp, SliceOp, ExpandOp, TileOp,
            ReluOp, AbsOp>(op))
      return knownZero(op->getOperand(0));
    return false;
  }

  /// Some entries of `v` are a constant written in by the graph (a Pad in constant mode, a
  /// Concat or Where with a constant part, a product with a constant that has zeros), seen
  /// through views and entrywise ops: a linear
  /// map of it has constant rows, all of whose entries tie (fuzz: router inputs shifted by one
  /// token, zero filled, made token 0's logits all zero). Bounded by `depth`; past it, no.
  bool constantFilled(Value v, int depth) {
    if (--budget < 0)
      return true;
    Operation *op = v.getDefiningOp();
    if (!op || depth <= 0 || isa<ParamOp, ConstantOp>(op))
      return false;
    if (isa<PadOp>(op)) {
      auto mode = op->getAttrOfType<StringAttr>("mode");
      if (!mode || mode.getValue() == "constant")
        return true;
    }
    auto isConst = [](Value x) { return x.getDefiningOp<ConstantOp>() || x.getDefiningOp<ConstantOfShapeOp>(); };
    // Where's condition picks entries; its branches are what is written.
    auto data = isa<WhereOp>(op) ? op->getOperands().drop_front() : op->getOperands();
    if (isa<ConcatOp, WhereOp>(op) && llvm::any_of(data, isConst))
      return true;
    // A product with a constant that has zeros (a mask) writes exact zeros.
    if (isa<MulOp>(op) && llvm::any_of(op->getOperands(), [&](Value x) { return isConst(x) && !nonzeroConstant(x); }))
      return true;
    if (isa<ReshapeOp, TransposeOp, SqueezeOp, UnsqueezeOp, FlattenOp, SliceOp, IdentityOp, CastOp, NegOp, PadOp,
            ConcatOp, WhereOp, AddOp, SubOp, MulOp, DivOp, ExpandOp>(op))
      return llvm::any_of(op->getOperands(), [&](Value x) { return !isConst(x) && constantFilled(x, depth - 1); });
    return false;
  }

  /// `v` may hold a slice that is exactly zero with positive probability: an op with a flat
  /// piece at zero (Relu, Clip, a rounding, HardSigmoid, HardSwish, a zero slope, max(x, 0)),
  /// a value that is not a float (a comparison, a logic op, IsNaN, a Cast to an integer, an
  /// integer model input: each is 0 with positive probability), seen through views, products
  /// of it (a zero row stays zero) and sums whose every term may vanish there. Parameters,
  /// float model inputs and the ops known to make generic values from generic ones
  /// (`generic` below) do not; any other op may keep a zero row of an operand (a
  /// LayerNormalization without a bias maps a zero row to zero). Memoized, so a deep
  /// residual stream is walked once; past a recursion depth of 2048, yes.
  llvm::DenseMap<Value, bool> zeroRowMemo;
  bool zeroRowsPossible(Value v, int depth) {
    if (auto it = zeroRowMemo.find(v); it != zeroRowMemo.end())
      return it->second;
    const bool out = depth <= 0 || computeZeroRows(v, depth);
    zeroRowMemo[v] = out;
    return out;
  }
  static bool floatValued(Value v) {
    auto t = dyn_cast<ShapedType>(v.getType());
    return t && isa<FloatType>(t.getElementType());
  }
  /// A constant with a zero entry (max(x, zeros) is a Relu): ConstantOfShape without a value
  /// or with a zero one, a Constant whose values are known and include 0.
  static bool constantWithZero(Value x) {
    if (auto c = x.getDefiningOp<ConstantOfShapeOp>()) {
      auto value = c->getAttrOfType<DenseElementsAttr>("value");
      return !value || !nonzeroConstant(x);
    }
    if (!x.getDefiningOp<ConstantOp>())
      return false;
    std::optional<std::vector<double>> vals = constFloats(x);
    return !vals || llvm::any_of(*vals, [](double d) { return d == 0.0; });
  }
  bool computeZeroRows(Value v, int depth) {
    // Each node asks a fresh walker (its own budget), so a long walk here cannot exhaust it.
    if (TieWalk().knownZero(v))
      return true;
    Operation *op = v.getDefiningOp();
    if (!op)
      return !floatValued(v); // an integer or boolean model input may be 0
    if (isa<ParamOp, ConstantOp, ConstantOfShapeOp>(op))
      return false;
    if (!floatValued(v)) // comparisons, logic, IsNaN, ArgMax, a Cast to an integer, ...
      return true;
    if (isa<ReluOp, ClipOp, FloorOp, CeilOp, RoundOp, SignOp, HardSigmoidOp, HardSwishOp>(op))
      return true;
    if (isa<LeakyReluOp>(op)) {
      auto alpha = op->getAttrOfType<FloatAttr>("alpha");
      if (alpha && alpha.getValueAsDouble() == 0.0)
        return true;
    }
    // A slope that may be zero (a zero-initialized trainable one included) is a Relu.
    if (isa<PReluOp>(op) && !nonzeroConstant(op->getOperand(1)))
      return true;
    // Dropout in training mode (a training_mode input that is not a constant false) writes zeros.
    if (isa<DropoutOp>(op) && op->getNumOperands() > 2 && !isNone(op->getOperand(2))) {
      std::optional<std::vector<double>> t = constFloats(op->getOperand(2));
      if (!t || llvm::any_of(*t, [](double d) { return d != 0.0; }))
        return true;
    }
    if (isa<CastOp>(op) && !floatValued(op->getOperand(0))) // from an integer or boolean
      return true;
    if (isa<MaxOp, MinOp>(op) && llvm::any_of(op->getOperands(), constantWithZero))
      return true; // max(x, 0): a Relu
    if (TieWalk().constantFilled(v, 4)) // a Pad in constant mode, a mask, a constant part
      return true;
    auto data = [&](Value x) { return !x.getDefiningOp<ConstantOp>() && !x.getDefiningOp<ParamOp>(); };
    // A product or quotient is zero where a factor is.
    if (isa<MulOp, MatMulOp, GemmOp, EinsumOp, ConvOp, ConvTransposeOp>(op)) {
      if (isa<GemmOp, ConvOp, ConvTransposeOp>(op) && op->getNumOperands() > 2 && !isNone(op->getOperand(2)))
        return false; // a bias is added
      return llvm::any_of(op->getOperands(), [&](Value x) { return data(x) && zeroRowsPossible(x, depth - 1); });
    }
    if (isa<DivOp>(op))
      return zeroRowsPossible(op->getOperand(0), depth - 1);
    // A sum vanishes where every term may (a constant or parameter term does not); a Concat
    // or Where where any part may.
    if (isa<AddOp, SubOp, MaxOp, MinOp, SumOp, MeanOp>(op))
      return llvm::all_of(op->getOperands(), [&](Value x) { return data(x) && zeroRowsPossible(x, depth - 1); });
    // Ops that make generic values from generic ones whatever their operands' zero rows (a
    // zero row becomes a constant one: exp(0) = 1, a softmax's 1/n; a product of such a row
    // is generic).
    if (isa<ExpOp, SigmoidOp, SoftplusOp, CosOp, SoftmaxOp, LogSoftmaxOp>(op))
      return false;
    // Views, entrywise maps that keep zero at zero, Concat, Where and every other op: a zero
    // row of a float operand may survive (indices, shapes and conditions select or place
    // values; they write none).
    return llvm::any_of(op->getOperands(), [&](Value x) {
      return !isNone(x) && floatValued(x) && zeroRowsPossible(x, depth - 1);
    });
  }

  /// Whether the entries of `v` along `axis` tie with positive probability because a
  /// product (a linear map) of a row that may be exactly zero lies between the model's
  /// inputs and `v`: such a row maps to a zero row, whose entries tie along any axis, and
  /// every entrywise function and view keeps equal entries equal (a Relu of width w is all
  /// zero with probability 2^-w; lit Analysis/argmax-zero-rows.test, and
  /// argmax-zero-rows-through.test for the ops after the product). What breaks the tie: a
  /// bias with distinct entries along `axis` (the last one), which the zero row then
  /// equals, and a sum with a term that does not tie. Asked only where `distinct(v)` holds,
  /// so `v` is made by the ops `distinct` follows; any other op met on the way answers
  /// `zeroRowsPossible` (may tie).
  bool zeroRowTie(Value v, int64_t axis, int depth = 0) {
    if (depth > 64 || --budget < 0)
      return true;
    Operation *op = v.getDefiningOp();
    if (!op || isa<ParamOp, ConstantOp, ConstantOfShapeOp>(op))
      return false;
    // axis < 0: lost through a reshape (only the bias test needs it).
    auto breaks = [&](Value b) {
      auto p = b.getDefiningOp<ParamOp>();
      const int64_t r = rankOf(v), rb = rankOf(b);
      if (axis < 0 || !p || p->hasAttr("repeated_axes") || rb < 1 || axis != r - 1 ||
          dimOf(b, rb - 1) != dimOf(v, axis))
        return false;
      for (int64_t a = 0; a + 1 < rb; ++a)
        if (dimOf(b, a) != 1)
          return false;
      return true;
    };
    auto data = [&](Value x) {
      return !isNone(x) && !x.getDefiningOp<ParamOp>() && !x.getDefiningOp<ConstantOp>() &&
             !x.getDefiningOp<ConstantOfShapeOp>();
    };
    if (isa<MatMulOp, GemmOp, EinsumOp, ConvOp, ConvTransposeOp>(op)) {
      const bool zeroRow = llvm::any_of(op->getOperands(), [&](Value x) {
        return data(x) && !(isa<GemmOp, ConvOp, ConvTransposeOp>(op) && x == op->getOperand(2)) &&
               zeroRowsPossible(x, 2048);
      });
      if (!zeroRow || !isa<GemmOp>(op) || op->getNumOperands() < 3 || isNone(op->getOperand(2)))
        return zeroRow; // a Conv's bias is per output channel, not along a selected axis here
      auto beta = op->getAttrOfType<FloatAttr>("beta");
      return !((!beta || beta.getValueAsDouble() != 0.0) && breaks(op->getOperand(2)));
    }
    // Equal entries stay equal through an entrywise function (exp, sin, abs, a cast, a
    // softmax along the axis; one along another axis is followed too, which may only say
    // "tie" where there is none) and through a slice.
    if (op->getNumOperands() >= 1 &&
        (isa<IdentityOp, NegOp, TanhOp, ExpOp, SoftplusOp, SigmoidOp, AtanOp, SoftsignOp, CastOp, SoftmaxOp,
             LogSoftmaxOp, CosOp, SinOp, ReciprocalOp, AbsOp, DropoutOp, SinhOp, TanOp, MishOp, SiluOp, SqrtOp,
             LogOp, LeakyReluOp, SliceOp, SplitOp>(op) ||
         (isa<PowOp>(op) && constScalar(op->getOperand(1)))))
      return zeroRowTie(op->getOperand(0), axis, depth + 1);
    if (auto t = dyn_cast<TransposeOp>(op)) {
      std::optional<std::vector<int64_t>> perm = intsAttr(op, "perm");
      const int64_t r = rankOf(v);
      int64_t from = -1;
      if (axis >= 0 && axis < r)
        from = perm && int64_t(perm->size()) == r ? (*perm)[size_t(axis)] : r - 1 - axis;
      return zeroRowTie(op->getOperand(0), from, depth + 1);
    }
    if (isa<ReshapeOp, FlattenOp, SqueezeOp, UnsqueezeOp>(op))
      return zeroRowTie(op->getOperand(0), -1, depth + 1);
    // A sum ties where every term that is not a constant or parameter does, unless a bias
    // with distinct entries along the axis is added; a product, quotient, max or min where
    // any operand does (a zero row times anything is zero; max(0, q) ties where q < 0).
    if (isa<AddOp, SubOp>(op)) {
      if (llvm::any_of(op->getOperands(), breaks))
        return false;
      // A term that does not vary along the axis (broadcast there: a zero row plus it is
      // constant along the axis) cannot break the tie; with the axis lost, no term can.
      const int64_t r = rankOf(v);
      auto varies = [&](Value x) {
        const int64_t xa = axis - (r - rankOf(x));
        return axis >= 0 && xa >= 0 && dimOf(x, xa) == dimOf(v, axis) && dimOf(v, axis) != 1;
      };
      bool tieTerm = false, freeTerm = false;
      for (Value x : op->getOperands())
        if (data(x)) {
          const bool ties = zeroRowTie(x, axis, depth + 1);
          tieTerm |= ties;
          freeTerm |= !ties && varies(x);
        }
      return tieTerm && !freeTerm;
    }
    if (isa<MulOp, DivOp, MaxOp, MinOp, PowOp>(op))
      return llvm::any_of(op->getOperands(), [&](Value x) { return data(x) && zeroRowTie(x, axis, depth + 1); });
    return zeroRowsPossible(v, 2048);
  }

  /// Every entry of `v` is >= 0 by construction (Exp, Softmax, Softplus, Abs, Sqrt, seen
  /// through views): the domain of Sqrt, Log and a fractional Pow. Bounded by `depth`.
  bool nonnegative(Value v, int depth = 16) {
    Operation *op = v.getDefiningOp();
    if (!op || depth <= 0)
      return false;
    if (isa<ExpOp, SoftmaxOp, SoftplusOp, AbsOp, SqrtOp>(op))
      return true;
    if (isa<ReshapeOp, TransposeOp, SqueezeOp, UnsqueezeOp, FlattenOp, SliceOp, IdentityOp, DropoutOp>(op))
      return nonnegative(op->getOperand(0), depth - 1);
    return false;
  }

  /// The entries of float `v` differ from each other but on a set of measure zero (the
  /// convention of every rule for float models): true for model inputs and parameters,
  /// linear maps (unless a factor is exactly zero), and what ops without flat pieces make
  /// of such values. Conservative: any other op (a Relu, Clip, Floor, Sign, Max or Min
  /// against a constant, Expand, a reduction, ...) may make ties with positive probability.
  bool distinct(Value v) {
    if (--budget < 0)
      return false;
    Operation *op = v.getDefiningOp();
    // A model input or a parameter. A parameter's repeated slices (the importer's
    // `repeated_axes`) tie along their axis only: CopiedAxes, which selectionTies asks about
    // the selected axis, follows them through products and sums (a weight with two equal
    // columns ties two logits unless a bias with distinct entries breaks it; fuzz_graphs seed
    // 3205's repeated router columns and all-zero Einsum weight made ArgMax's one-hot pick
    // the first of the tied experts).
    if (!op || isa<ParamOp>(op))
      return true;
    if (isa<MatMulOp, GemmOp, EinsumOp, ConvOp, ConvTransposeOp>(op))
      return !knownZero(v) && llvm::none_of(op->getOperands(), [&](Value x) { return constantFilled(x, 16); });
    // One-to-one (or without flat pieces) coordinate by coordinate, and not saturating to
    // an exact constant at moderate inputs in float32: erf and tanh round to +-1 past |x| ~ 4
    // and ~ 9, the sigmoid to 1 past ~ 17, elu / selu / celu to their floor below ~ -17, gelu
    // to 0 below ~ -14, which are ties with positive probability (fuzz seed 1807: an Erf on
    // router logits pushed up by an inserted Max); those are not listed. Exp, Softplus, Silu,
    // Mish and Softmax saturate only some 88 units out (float32's exponent range).
    if (isa<SoftplusOp, ExpOp, CosOp, SinOp, ReciprocalOp, NegOp, AbsOp, IdentityOp, DropoutOp, SoftsignOp, AtanOp,
            SinhOp, TanOp, MishOp, SiluOp, SoftmaxOp, LogSoftmaxOp, ReshapeOp, TransposeOp, SqueezeOp, UnsqueezeOp,
            FlattenOp, SliceOp, SplitOp>(op))
      return distinct(op->getOperand(0));
    // Outside their domain Sqrt and Log give NaN with positive probability, and NaNs tie (an
    // ArgMax of all-NaN logits is 0 whatever the order; fuzz seed 3102: a Sqrt of logits
    // shifted below zero claimed the experts' S(3)). Asin's domain [-1, 1] is not tracked.
    if (isa<SqrtOp, LogOp>(op))
      return nonnegative(op->getOperand(0)) && distinct(op->getOperand(0));
    if (isa<LeakyReluOp>(op)) {
      auto alpha = op->getAttrOfType<FloatAttr>("alpha");
      return (!alpha || alpha.getValueAsDouble() != 0.0) && distinct(op->getOperand(0));
    }
    // A narrowing float cast rounds: distinct values may round to one (bf16 router logits).
    if (isa<CastOp>(op))
      return exactFloatCast(op) && distinct(op->getOperand(0));
    if (isa<PowOp>(op)) {
      // A fractional power of a negative base is NaN (as Sqrt's).
      std::optional<double> e = constScalar(op->getOperand(1));
      return e && *e != 0.0 && (*e == std::floor(*e) || nonnegative(op->getOperand(0))) &&
             distinct(op->getOperand(0));
    }
    if (op->getNumOperands() != 2)
      return false;
    Value a = op->getOperand(0), c = op->getOperand(1);
    if (a == c)
      return false; // x - x, x / x, max(x, x), x + x are ties or fine, not worth telling apart
    if (isa<AddOp, SubOp>(op) && cancels(a, c, isa<AddOp>(op)))
      return false; // exactly zero: every entry ties
    // One operand spreads the entries apart over the whole result; the other shifts (Add,
    // Sub) or scales (Mul, Div: by a nonzero factor) them.
    auto spreads = [&](Value x) { return fullShape(x, v) && distinct(x); };
    // A factor: a constant without zeros, or distinct entries (inputs and parameters are).
    auto nonzero = [&](Value x) { return nonzeroConstant(x) || distinct(x); };
    if (isa<AddOp, SubOp>(op))
      return spreads(a) || spreads(c);
    if (isa<MulOp>(op))
      return (spreads(a) && nonzero(c)) || (spreads(c) && nonzero(a));
    if (isa<DivOp>(op))
      return spreads(a) && nonzero(c);
    if (isa<MaxOp, MinOp>(op)) // against a constant: flat below (above) it
      return spreads(a) && spreads(c);
    return false;
  }
};

/// Axes along which `v` may hold two equal slices for every input (copies): an Expand or a
/// Tile that repeats an axis, a Concat of one value with itself, a parameter's
/// `repeated_axes`, a constant the same along an axis, carried through the ops between.
/// An ArgMax or TopK along such an axis ties for certain: the first (last) of the copies is
/// picked, whatever their order (fuzz_graphs seed 3207 case 196: an input row expanded to
/// three copies, through linear maps into an ArgMax along the copies, claimed their
/// permutation; verify refuted it). Axis masks of up to 64 axes; where an op is not followed
/// axis by axis, every axis of its result may copy as soon as one operand's may.
class CopiedAxes {
public:
  bool along(Value v, int64_t axis) { return axis >= 0 && axis < 64 && (of(v, 0) >> axis & 1); }

private:
  llvm::DenseMap<Value, uint64_t> memo;

  static uint64_t all(Value v) {
    int64_t r = rankOf(v);
    return r < 0 || r >= 64 ? ~uint64_t(0) : (uint64_t(1) << r) - 1;
  }
  static uint64_t bit(int64_t a) { return a >= 0 && a < 64 ? uint64_t(1) << a : 0; }

  uint64_t of(Value v, int depth) {
    if (auto it = memo.find(v); it != memo.end())
      return it->second;
    uint64_t m = depth > 2048 ? all(v) : compute(v, depth + 1);
    memo[v] = m;
    return m;
  }

  uint64_t compute(Value v, int depth) {
    Operation *op = v.getDefiningOp();
    if (!op)
      return 0; // a model input: generic
    const int64_t R = rankOf(v);
    if (R < 0 || R >= 64)
      return ~uint64_t(0);
    if (auto p = dyn_cast<ParamOp>(op)) {
      uint64_t m = 0;
      if (auto axes = op->getAttrOfType<ArrayAttr>("repeated_axes"))
        for (Attribute a : axes)
          if (auto i = dyn_cast<IntegerAttr>(a))
            m |= bit(i.getInt());
      return m;
    }
    if (isa<ConstantOp, ConstantOfShapeOp>(op)) {
      if (isUniformConstant(v))
        return all(v);
      uint64_t m = 0;
      if (auto axes = op->getAttrOfType<ArrayAttr>("uniform_axes"))
        for (Attribute a : axes)
          if (auto i = dyn_cast<IntegerAttr>(a); i && dimOf(v, i.getInt()) != 1)
            m |= bit(i.getInt());
      return m;
    }
    // Operands aligned to the result from the right (numpy broadcasting).
    auto aligned = [&](Value x, int64_t a) { return a - (R - rankOf(x)); };
    if (isa<ExpandOp>(op)) {
      Value x = op->getOperand(0);
      uint64_t in = of(x, depth), m = 0;
      for (int64_t a = 0; a < R; ++a) {
        int64_t xa = aligned(x, a);
        if (xa < 0 ? dimOf(v, a) != 1 : (in >> xa & 1) || (dimOf(x, xa) == 1 && dimOf(v, a) != 1))
          m |= bit(a);
      }
      return m;
    }
    if (isa<TileOp>(op)) {
      Value x = op->getOperand(0);
      std::optional<std::vector<int64_t>> reps = constInts(op->getOperand(1));
      uint64_t m = of(x, depth);
      for (int64_t a = 0; a < R; ++a)
        if (!reps || int64_t(reps->size()) != R || (*reps)[size_t(a)] != 1)
          m |= bit(a);
      return m & all(v);
    }
    if (isa<TransposeOp>(op)) {
      std::optional<std::vector<int64_t>> perm = intsAttr(op, "perm");
      uint64_t in = of(op->getOperand(0), depth), m = 0;
      for (int64_t a = 0; a < R; ++a) {
        int64_t from = perm && int64_t(perm->size()) == R ? (*perm)[size_t(a)] : R - 1 - a;
        if (in >> from & 1)
          m |= bit(a);
      }
      return m;
    }
    if (isa<ConcatOp>(op)) {
      const int64_t axis = normAxis(intAttr(op, "axis", 0), R);
      uint64_t m = 0;
      llvm::SmallPtrSet<void *, 8> seen;
      for (Value x : op->getOperands()) {
        m |= of(x, depth);
        if (!seen.insert(x.getAsOpaquePointer()).second)
          m |= bit(axis); // the same value twice along the axis
      }
      return m & all(v);
    }
    if (isa<SliceOp, IdentityOp>(op) && rankOf(op->getOperand(0)) == R)
      return of(op->getOperand(0), depth);
    // Entrywise with broadcasting: an axis copies where every operand copies along it or is
    // broadcast along it (a generic operand varying along the axis breaks the copies).
    if (isa<AddOp, SubOp, MulOp, DivOp, PowOp, MaxOp, MinOp, WhereOp, PReluOp>(op)) {
      uint64_t m = all(v);
      bool any = false;
      for (Value x : op->getOperands()) {
        uint64_t in = of(x, depth), keep = 0;
        for (int64_t a = 0; a < R; ++a) {
          int64_t xa = aligned(x, a);
          if (xa < 0 || dimOf(x, xa) == 1 || (in >> xa & 1))
            keep |= bit(a);
          any |= xa >= 0 && (in >> xa & 1);
        }
        m &= keep;
      }
      return any ? m : 0;
    }
    // A product's rows are the left operand's, its columns the right one's; batch axes
    // as entrywise ops.
    if (isa<MatMulOp>(op) && R >= 2 && rankOf(op->getOperand(0)) >= 2 && rankOf(op->getOperand(1)) >= 2) {
      Value x = op->getOperand(0), y = op->getOperand(1);
      uint64_t mx = of(x, depth), my = of(y, depth), m = 0;
      if (mx >> (rankOf(x) - 2) & 1)
        m |= bit(R - 2);
      if (my >> (rankOf(y) - 1) & 1)
        m |= bit(R - 1);
      for (int64_t a = 0; a < R - 2; ++a) {
        bool any = false, every = true;
        for (Value z : {x, y}) {
          int64_t za = a - (R - rankOf(z));
          uint64_t mz = z == x ? mx : my;
          any |= za >= 0 && (mz >> za & 1);
          every &= za < 0 || dimOf(z, za) == 1 || (mz >> za & 1);
        }
        if (any && every)
          m |= bit(a);
      }
      return m;
    }
    uint64_t any = 0;
    for (Value x : op->getOperands())
      if (!isNone(x))
        any |= of(x, depth);
    return any ? all(v) : 0;
  }
};

/// True unless the entries of `x` along `axis` tie with probability zero (TopK's and
/// ArgMax's condition for following their positions): ops without flat pieces from
/// generic values (TieWalk::distinct), no copies along the axis (CopiedAxes) and no product
/// of a row that may be exactly zero (TieWalk::zeroRowTie).
bool selectionTies(Value x, int64_t axis) {
  return !TieWalk().distinct(x) || CopiedAxes().along(x, axis) || TieWalk().zeroRowTie(x, axis);
}

} // namespace

void TopKOp::applySymmetryRule(SpaceBuilder &b) {
  // values, indices = TopK(X, K) along `axis`. The values do not depend on the
  // order of X along `axis` (their axis k is a new axis, fixed); the indices
  // are positions along (X, axis). Other axes are batched: permutations only
  // (a sign flip of a row changes which entries are largest).
  Operation *op = getOperation();
  if (op->getNumResults() != 2) {
    barrier(b, op, "TopK without its two outputs");
    return;
  }
  Value x = getOperand(0), vals = getResult(0), idx = getResult(1);
  int64_t r = rankOf(x);
  int64_t axis = normAxis(intAttr(op, "axis", -1), r);
  if (axis < 0 || rankOf(vals) != r || rankOf(idx) != r) {
    barrier(b, op, "TopK axis out of range");
    return;
  }
  // sorted=0: the k selected entries come out in an order the implementation chooses; one
  // that lists them by position (a legal choice, and the numpy checker's) reorders the
  // outputs when X is permuted along `axis`, so no permutation of that axis commutes with
  // the op: the axis is fixed, and the indices are not followed as positions (their order
  // is not a function of the selected set alone). Each slice along the other axes is
  // still processed alike, so those axes pass as with sorted=1.
  const bool sorted = intAttr(op, "sorted", 1) != 0;
  // Positions are followed only where ties have measure zero (file comment).
  const bool distinct = sorted && !selectionTies(x, axis);
  for (int64_t a = 0; a < r; ++a) {
    pinFlows(b, x, a);
    pinFlows(b, vals, a);
    pinFlows(b, idx, a);
    if (a == axis) {
      b.restrict(x, a, distinct ? kPerm : kNone,
                 distinct  ? "TopK selects along this axis"
                 : !sorted ? "TopK with sorted=0 selects along this axis (the order of the selected entries is "
                             "unspecified)"
                           : "TopK selects among values that may tie (ties go to the lower position)");
      b.restrict(vals, a, kNone, "the k entries TopK selected");
      b.restrict(idx, a, kNone, "the k entries TopK selected");
      continue;
    }
    b.tie(x, a, vals, a);
    b.tie(x, a, idx, a);
    b.restrict(vals, a, kPerm, "TopK");
  }
  for (Value k : op->getOperands().drop_front())
    if (!isNone(k))
      restrictAll(b, k, kNone, "TopK's k");
  if (distinct)
    b.positionsOf(idx, x, axis);
}

/// ArgMax / ArgMin: y = the position of the largest (smallest) entry of x along `axis`, an
/// int64 tensor with that axis kept as size 1 (keepdims=1) or removed. As TopK with k = 1
/// that returns its indices only: where ties have measure zero (TieWalk::distinct, and x
/// a float tensor) permuting x's axis relabels y's entries by the same permutation, so y
/// holds positions along (x, axis) and the axis is a permutation; select_last_index decides
/// only among ties. Where values may tie the first (last) of the tied entries is taken,
/// which no permutation commutes with: the axis is fixed. Every other axis is batched:
/// tied to y's matching axis (renumbered past `axis` when keepdims=0), permutations only:
/// a sign flip of a slice turns its largest entry into its smallest; a positive scale of
/// a slice would keep y, but y is an index tensor with no scale of its own, so flows are
/// pinned as TopK pins them.
static void argExtremeRule(SpaceBuilder &b, Operation *op, StringRef name) {
  Value x = op->getOperand(0), y = op->getResult(0);
  const int64_t r = rankOf(x);
  const int64_t axis = normAxis(intAttr(op, "axis", 0), r);
  const bool keep = intAttr(op, "keepdims", 1) != 0;
  if (r < 1 || axis < 0 || rankOf(y) != (keep ? r : r - 1)) {
    barrier(b, op, (name + " with unknown ranks or an axis out of range").str());
    return;
  }
  auto xt = dyn_cast<RankedTensorType>(x.getType());
  const bool distinct = xt && isa<FloatType>(xt.getElementType()) && !selectionTies(x, axis);
  for (int64_t a = 0, ya = 0; a < r; ++a) {
    pinFlows(b, x, a);
    if (a == axis) {
      b.restrict(x, a, distinct ? kPerm : kNone,
                 distinct ? (name + " selects along this axis").str()
                          : (name + " selects among values that may tie").str());
      if (keep) {
        pinFlows(b, y, ya);
        b.restrict(y, ya++, kNone, (name + "'s kept axis").str());
      }
      continue;
    }
    pinFlows(b, y, ya);
    b.tie(x, a, y, ya);
    b.restrict(x, a, kPerm, name);
    b.restrict(y, ya++, kPerm, name);
  }
  if (distinct)
    b.positionsOf(y, x, axis);
}

void ArgMaxOp::applySymmetryRule(SpaceBuilder &b) { argExtremeRule(b, *this, "ArgMax"); }
void ArgMinOp::applySymmetryRule(SpaceBuilder &b) { argExtremeRule(b, *this, "ArgMin"); }

void GatherOp::applySymmetryRule(SpaceBuilder &b) {
  // y = data[..., indices, ...] along `axis`: the indexed axis is positions
  // (fixed, unless the indices are positions along a known axis: then it is
  // tied to that axis); the others move through; index axes become output
  // axes.
  Operation *op = getOperation();
  Value data = getOperand(0), idx = getOperand(1), y = getResult(0);
  int64_t r = rankOf(data), ri = rankOf(idx);
  int64_t axis = normAxis(intAttr(op, "axis", 0), r);
  if (axis < 0 || ri < 0 || rankOf(y) != r - 1 + ri) {
    barrier(b, op, "Gather with unknown ranks");
    return;
  }
  if (!b.takePositions(op->getOpOperand(1), data, axis))
    b.restrict(data, axis, kNone, "Gather indexes this axis");
  for (int64_t a = 0; a < axis; ++a)
    tieSame(b, data, a, y, a);
  for (int64_t k = 0; k < ri; ++k) {
    b.tie(idx, k, y, axis + k);
    b.restrict(y, axis + k, kNoMixing, "Gather index axis");
    pinFlows(b, y, axis + k);
  }
  for (int64_t a = axis + 1; a < r; ++a)
    tieSame(b, data, a, y, a - 1 + ri);
}

void GatherElementsOp::applySymmetryRule(SpaceBuilder &b) {
  // y[.., j, ..] = data[.., indices[.., j, ..], ..] along `axis`; y has the
  // shape of the indices. Only positions along a known axis are followed.
  Operation *op = getOperation();
  Value data = getOperand(0), idx = getOperand(1), y = getResult(0);
  int64_t r = rankOf(data);
  int64_t axis = normAxis(intAttr(op, "axis", 0), r);
  if (axis < 0 || rankOf(idx) != r || rankOf(y) != r) {
    barrier(b, op, "GatherElements with unknown ranks");
    return;
  }
  // Indices that are not positions (a constant table, position ids made from a mask) name
  // coordinates of data's axis: that axis is fixed. The other axes still pair data's, the
  // indices' and y's coordinates one to one, so they pass as below where the indices allow
  // (a constant index tensor is fixed on every axis, so it pins them all).
  if (!b.takePositions(op->getOpOperand(1), data, axis)) {
    b.restrict(data, axis, kNone, "GatherElements indices name its coordinates");
    pinFlows(b, data, axis);
  }
  for (int64_t a = 0; a < r; ++a) {
    b.tie(idx, a, y, a);
    pinFlows(b, idx, a);
    if (a == axis) {
      b.restrict(y, a, kPerm, "GatherElements");
      pinFlows(b, y, a);
      continue;
    }
    // Entries are copied: the same coordinate of data and y, but a different
    // entry per coordinate, so no mixing along the axis.
    int64_t n = dimOf(y, a);
    if (n < 0 || dimOf(data, a) != n) {
      b.restrict(data, a, kNone, "GatherElements from a larger axis");
      b.restrict(y, a, kNone, "GatherElements from a larger axis");
      continue;
    }
    tieSame(b, data, a, y, a);
    b.restrict(y, a, kNoMixing, "GatherElements");
  }
}

void GatherNDOp::applySymmetryRule(SpaceBuilder &b) {
  // y[i..., :] = data[i[..b], indices[i..., 0..k), :]: the last axis of the indices (k)
  // addresses k axes of data after the first `batch_dims` (b); y has the indices' other
  // axes, then data's remaining (slice) axes. With k = 1 and b = 0 this is Gather along
  // axis 0 by indices[..., 0] (transformers' batched_mm MoE reads its experts so), and the
  // addressed axis follows positions as Gather's does. Other addressed axes are fixed; the
  // batch axes are fixed too (rare in exports, not worth a rule).
  Operation *op = getOperation();
  Value data = getOperand(0), idx = getOperand(1), y = getResult(0);
  int64_t r = rankOf(data), q = rankOf(idx), nb = intAttr(op, "batch_dims", 0);
  int64_t k = q > 0 ? dimOf(idx, q - 1) : -1;
  if (r < 1 || q < 1 || k < 1 || nb < 0 || nb > q - 1 || nb + k > r || rankOf(y) != q - 1 + r - k - nb) {
    barrier(b, op, "GatherND with unknown or inconsistent ranks");
    return;
  }
  for (int64_t a = 0; a < nb; ++a) {
    b.restrict(data, a, kNone, "GatherND batch axis");
    b.restrict(idx, a, kNone, "GatherND batch axis");
    b.restrict(y, a, kNone, "GatherND batch axis");
  }
  if (k == 1 && nb == 0) {
    if (!b.takePositions(op->getOpOperand(1), data, 0))
      b.restrict(data, 0, kNone, "GatherND indexes this axis");
  } else {
    for (int64_t a = nb; a < nb + k; ++a)
      b.restrict(data, a, kNone, "GatherND indexes this axis");
  }
  b.restrict(idx, q - 1, kNone, "GatherND index tuple");
  for (int64_t j = nb; j < q - 1; ++j) {
    b.tie(idx, j, y, j);
    b.restrict(y, j, kNoMixing, "GatherND index axis");
    pinFlows(b, y, j);
  }
  for (int64_t a = nb + k; a < r; ++a)
    tieSame(b, data, a, y, q - 1 + a - nb - k);
}

/// Every entry is a float zero: a splat constant of 0, or a ConstantOfShape of 0 (its
/// default value).
static bool zeroFill(Value v) {
  auto isZero = [](DenseElementsAttr d) {
    return d && d.isSplat() && isa<FloatType>(d.getElementType()) && d.getSplatValue<APFloat>().isZero();
  };
  if (Operation *cs = v.getDefiningOp<ConstantOfShapeOp>()) {
    Attribute val = cs->getAttr("value");
    auto t = dyn_cast<ShapedType>(v.getType());
    return val ? isZero(dyn_cast<DenseElementsAttr>(val)) : t && isa<FloatType>(t.getElementType());
  }
  if (auto c = v.getDefiningOp<ConstantOp>(); c && c.getValue())
    return isZero(dyn_cast<DenseElementsAttr>(*c.getValue()));
  return false;
}

void ScatterElementsOp::applySymmetryRule(SpaceBuilder &b) {
  // y = data with y[.., indices[.., j, ..], ..] = updates[.., j, ..] along
  // `axis` (or combined with data's entry by the reduction). With positions
  // along a known axis, y's axis is that axis when the data does not depend on
  // the order: a uniform constant (zeros), or data whose axis is the same
  // space. Indices that are not positions (an input, made from a mask, TopK of
  // something else) name coordinates of data's axis: that axis is fixed on data
  // and y. The updates' axis `axis` (the selected entries, whose order decides
  // among duplicates under "none") stays fixed either way.
  Operation *op = getOperation();
  if (op->getNumOperands() != 3) {
    barrier(b, op, "ScatterElements without its three inputs");
    return;
  }
  Value data = getOperand(0), idx = getOperand(1), upd = getOperand(2), y = getResult(0);
  int64_t r = rankOf(data);
  int64_t axis = normAxis(intAttr(op, "axis", 0), r);
  if (axis < 0 || rankOf(idx) != r || rankOf(upd) != r || rankOf(y) != r) {
    barrier(b, op, "ScatterElements with unknown ranks");
    return;
  }
  std::string red = strAttr(op, "reduction", "none");
  if (!llvm::is_contained({"none", "add", "mul", "max", "min"}, red)) {
    barrier(b, op, "ScatterElements with an unknown reduction");
    return;
  }
  bool uniform = isUniformConstant(data);
  bool zeroData = uniform && zeroFill(data);
  bool positions = b.takePositions(op->getOpOperand(1), y, axis);
  if (!positions) {
    b.restrict(data, axis, kNone, "ScatterElements indices name its coordinates");
    b.restrict(y, axis, kNone, "ScatterElements indices name its coordinates");
  }
  // Along every other axis, entry j of y is made from entry j of data and of the
  // updates alone. "none" and "add" are linear in (data, updates) jointly, so a
  // common per-coordinate scale or sign passes; max and min commute with a
  // positive scale but turn into each other under a sign flip; "mul" raises the
  // updates' scale to a power that depends on the indices, so only permutations.
  bool linear = red == "none" || red == "add", monotone = red == "max" || red == "min";
  unsigned bits = linear ? kNoMixing : monotone ? kMonomialPos : kPerm;
  for (int64_t a = 0; a < r; ++a) {
    pinFlows(b, idx, a);
    if (uniform) {
      // A constant neither moves nor scales; y's flows, related to data's below, follow.
      b.restrict(data, a, kNone, "ScatterElements into a constant");
      pinFlows(b, data, a);
    }
    if (a == axis) {
      for (Value v : {data, upd, y})
        pinFlows(b, v, a);
      if (!uniform)
        b.tie(data, a, y, a);
      b.restrict(idx, a, kNone, "the entries ScatterElements writes");
      b.restrict(upd, a, kNone, "the entries ScatterElements writes");
      continue;
    }
    int64_t n = dimOf(y, a);
    if (n < 0 || dimOf(idx, a) != n || dimOf(upd, a) != n) {
      for (Value v : {data, idx, upd, y}) {
        pinFlows(b, v, a);
        b.restrict(v, a, kNone, "ScatterElements into a larger axis");
      }
      continue;
    }
    if (!uniform)
      b.tie(data, a, y, a);
    b.tie(idx, a, y, a);
    b.tie(upd, a, y, a);
    b.restrict(y, a, bits, "ScatterElements");
    // Entry j of y, data and the updates scale (and flip) alike; a flow the
    // reduction does not pass is pinned on all three.
    for (Value v : {data, upd}) {
      if (v == data && zeroData)
        continue; // zeros scale and flip into themselves: y's entries follow the updates alone
      if (bits & kScale)
        b.scaleRelation({{v, a, 1}, {y, a, -1}});
      else
        b.scaleRelation({{v, a, 1}});
      if (bits & kSign)
        b.signRelation({{v, a, 1}, {y, a, 1}});
      else
        b.signRelation({{v, a, 1}});
    }
    if (!(bits & kScale))
      b.scaleRelation({{y, a, 1}});
    if (!(bits & kSign))
      b.signRelation({{y, a, 1}});
  }
}

namespace {
/// A one-hot's batched axis: axis `xa` of the positions is axis `ya` of the result,
/// permutations only; the flows are pinned (the result holds two fixed values).
void tieOneHotAxis(SpaceBuilder &b, Value x, int64_t xa, Value y, int64_t ya, StringRef why) {
  b.tie(x, xa, y, ya);
  b.restrict(y, ya, kPerm, why);
  pinFlows(b, x, xa);
  pinFlows(b, y, ya);
}
} // namespace

void OneHotOp::applySymmetryRule(SpaceBuilder &b) {
  // y = OneHot(indices, depth, values): a new axis `axis` of size depth, with
  // y[.., j, ..] = on where the index is j and off elsewhere. With positions
  // along a known axis, the new axis is that axis (permutations only); the
  // other axes are the indices' axes.
  Operation *op = getOperation();
  if (op->getNumOperands() != 3) {
    barrier(b, op, "OneHot without its three inputs");
    return;
  }
  Value idx = getOperand(0), y = getResult(0);
  int64_t r = rankOf(idx), ry = rankOf(y);
  int64_t axis = normAxis(intAttr(op, "axis", -1), ry);
  if (r < 0 || ry != r + 1 || axis < 0) {
    barrier(b, op, "OneHot with unknown ranks");
    return;
  }
  if (!b.takePositions(op->getOpOperand(0), y, axis)) {
    barrier(b, op, "OneHot of indices that are not positions along a known axis");
    return;
  }
  for (int64_t a = 0, k = 0; a < ry; ++a)
    if (a != axis)
      tieOneHotAxis(b, idx, k++, y, a, "OneHot");
  restrictAll(b, getOperand(1), kNone, "OneHot depth");
  restrictAll(b, getOperand(2), kNone, "OneHot values");
}

// torch's decomposition of one_hot (today's exporter: `indices.unsqueeze(-1) == arange(n)`):
// y[.., j, ..] = (x[.., 0, ..] == t[j]) with t[j] = j is OneHot(x) along y's axis `a`, so it
// follows OneHotOp's rule. Only the table 0, 1, ..., n - 1 in order: a permuted or repeating
// table relabels the axis in a way no permutation of the positions' source matches.
bool equalAsOneHot(SpaceBuilder &b, Operation *op) {
  Value y = op->getResult(0);
  const int64_t ry = rankOf(y);
  if (op->getNumOperands() != 2 || ry < 1)
    return false;
  for (unsigned k = 0; k < 2; ++k) {
    Value x = op->getOperand(k), t = op->getOperand(1 - k);
    const int64_t rt = rankOf(t);
    auto table = constInts(t);
    if (rankOf(x) != ry || rt < 1 || rt > ry || !table)
      continue;
    int64_t ta = -1; // t's one axis of size > 1
    bool shapeOk = true;
    for (int64_t i = 0; i < rt; ++i) {
      const int64_t d = dimOf(t, i);
      if (d == 1)
        continue;
      shapeOk = shapeOk && ta < 0 && d > 1;
      ta = i;
    }
    if (!shapeOk || ta < 0 || int64_t(table->size()) != dimOf(t, ta))
      continue;
    bool arange = true;
    for (size_t j = 0; j < table->size(); ++j)
      arange = arange && (*table)[j] == int64_t(j);
    const int64_t a = ry - rt + ta;
    bool xOk = arange && dimOf(x, a) == 1 && dimOf(y, a) == dimOf(t, ta);
    for (int64_t i = 0; xOk && i < ry; ++i)
      xOk = i == a || (dimOf(x, i) == dimOf(y, i) && dimOf(x, i) > 0);
    if (!xOk || !b.takePositions(op->getOpOperand(k), y, a))
      continue;
    for (int64_t i = 0; i < ry; ++i)
      if (i != a)
        tieOneHotAxis(b, x, i, y, i, "one-hot by Equal");
    pinFlows(b, x, a);
    restrictAll(b, t, kNone, "one-hot table");
    return true;
  }
  return false;
}

void ScatterNDOp::applySymmetryRule(SpaceBuilder &b) {
  // indices [..., k] address the first k axes of data; updates carry the
  // slices over the remaining axes. Those slice axes pass through (data's,
  // updates' and y's are one space); the addressed axes are positions and
  // fixed, and so are the batch axes of indices and updates. swin_t builds its
  // shifted-window mask this way (attn_mask[h0:h1, w0:w1] = count).
  Operation *op = getOperation();
  if (op->getNumOperands() != 3) {
    barrier(b, op, "ScatterND without its three inputs");
    return;
  }
  Value data = getOperand(0), idx = getOperand(1), upd = getOperand(2), y = getResult(0);
  int64_t r = rankOf(data), q = rankOf(idx), k = q > 0 ? dimOf(idx, q - 1) : -1;
  if (r < 1 || q < 1 || k < 1 || k > r || rankOf(upd) != q - 1 + r - k || rankOf(y) != r) {
    barrier(b, op, "ScatterND with unknown or inconsistent ranks");
    return;
  }
  if (auto red = op->getAttrOfType<StringAttr>("reduction"))
    if (red.getValue() != "none" && red.getValue() != "add") {
      barrier(b, op, "ScatterND with a multiplicative or max/min reduction");
      return;
    }
  for (int64_t a = 0; a < r; ++a) {
    if (a < k) {
      b.restrict(data, a, kNone, "ScatterND addresses this axis");
      b.restrict(y, a, kNone, "ScatterND addresses this axis");
      continue;
    }
    int64_t u = q - 1 + a - k;
    if (dimOf(data, a) != dimOf(y, a) || dimOf(upd, u) != dimOf(y, a)) {
      barrier(b, op, "ScatterND slice sizes differ");
      return;
    }
    tieSame(b, data, a, y, a);
    tieSame(b, upd, u, y, a);
  }
  for (int64_t a = 0; a < q - 1; ++a)
    b.restrict(upd, a, kNone, "ScatterND batch of updates");
  restrictAll(b, idx, kNone, "ScatterND indices");
}

} // namespace symoc::graph
