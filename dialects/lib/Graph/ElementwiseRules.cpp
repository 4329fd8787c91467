//===- ElementwiseRules.cpp - Symmetry rules of elementwise ops -----------===//
//
// An elementwise op commutes with permutations of any axis. Whether it also
// commutes with sign flips or positive scalings of a coordinate depends on the
// scalar function (odd, even, positively homogeneous of some degree); only
// linear ops commute with rotations. Those facts are stated once per op here
// and turned into constraints by one shared rule.
//
//===----------------------------------------------------------------------===//

#include "RuleHelpers.h"

using namespace mlir;

namespace symoc::graph {
namespace {

enum class Parity { Odd, Even, None };

struct ScalarFn {
  Parity parity;
  std::optional<int64_t> degree; // f(d x) = d^degree f(x) for d > 0
  bool linear;                   // f(x) = c x: commutes with every linear map
};

void unaryRule(SpaceBuilder &b, Operation *op, ScalarFn fn) {
  if (barrierIfExtraResultsUsed(b, op, "the mask output"))
    return;
  Value x = op->getOperand(0), y = op->getResult(0);
  int64_t r = rankOf(y);
  if (rankOf(x) != r) {
    barrier(b, op, "rank changes through an elementwise op");
    return;
  }
  StringRef name = op->getName().stripDialect();
  for (int64_t a = 0; a < r; ++a) {
    b.tie(x, a, y, a);
    if (!fn.linear)
      b.restrict(x, a, kNoMixing, name);
    if (fn.degree)
      b.scaleRelation({{y, a, 1}, {x, a, -*fn.degree}});
    else {
      b.scaleRelation({{x, a, 1}});
      b.scaleRelation({{y, a, 1}});
    }
    switch (fn.parity) {
    case Parity::Odd:
      b.signRelation({{y, a, 1}, {x, a, 1}});
      break;
    case Parity::Even:
      b.signRelation({{y, a, 1}});
      b.absorbs(x, a, /*scale=*/false, /*sign=*/true);
      break;
    case Parity::None:
      b.signRelation({{x, a, 1}});
      b.signRelation({{y, a, 1}});
      break;
    }
  }
  // Extra results (Dropout's mask) follow the same axes but carry no scale.
  for (Value extra : op->getResults().drop_front())
    for (int64_t a = 0, er = rankOf(extra); a < er && a < r; ++a)
      b.fixAll(extra, "mask output");
}

const ScalarFn kNonlinear{Parity::None, std::nullopt, false};
const ScalarFn kOdd{Parity::Odd, std::nullopt, false};
const ScalarFn kLinear{Parity::Odd, 1, true};
const ScalarFn kPositivelyHomogeneous{Parity::None, 1, false};

} // namespace

#define UNARY_RULE(OP, FN)                                                     \
  void OP::applySymmetryRule(SpaceBuilder &b) { unaryRule(b, *this, FN); }

UNARY_RULE(ReluOp, kPositivelyHomogeneous)
UNARY_RULE(LeakyReluOp, kPositivelyHomogeneous)
UNARY_RULE(AbsOp, (ScalarFn{Parity::Even, 1, false}))
UNARY_RULE(TanhOp, kOdd)
UNARY_RULE(ErfOp, kOdd)
UNARY_RULE(SinOp, kOdd)
UNARY_RULE(AtanOp, kOdd)
UNARY_RULE(AsinOp, kOdd)
UNARY_RULE(SinhOp, kOdd)
UNARY_RULE(TanOp, kOdd)
UNARY_RULE(SoftsignOp, kOdd)
UNARY_RULE(SignOp, (ScalarFn{Parity::Odd, 0, false}))
UNARY_RULE(ReciprocalOp, (ScalarFn{Parity::Odd, -1, false}))
UNARY_RULE(NegOp, kLinear)
UNARY_RULE(IdentityOp, kLinear)
UNARY_RULE(SigmoidOp, kNonlinear)
UNARY_RULE(SoftplusOp, kNonlinear)
UNARY_RULE(ExpOp, kNonlinear)
UNARY_RULE(LogOp, kNonlinear)
UNARY_RULE(CosOp, (ScalarFn{Parity::Even, std::nullopt, false}))
UNARY_RULE(SqrtOp, kNonlinear)
UNARY_RULE(GeluOp, kNonlinear)
UNARY_RULE(SiluOp, kNonlinear)
UNARY_RULE(EluOp, kNonlinear)
UNARY_RULE(SeluOp, kNonlinear)
UNARY_RULE(CeluOp, kNonlinear)
UNARY_RULE(MishOp, kNonlinear)
UNARY_RULE(HardSwishOp, kNonlinear)
UNARY_RULE(HardSigmoidOp, kNonlinear)
UNARY_RULE(FloorOp, kNonlinear)
UNARY_RULE(CeilOp, kNonlinear)
UNARY_RULE(RoundOp, kNonlinear)
UNARY_RULE(NotOp, kNonlinear)
UNARY_RULE(IsNaNOp, kNonlinear)
#undef UNARY_RULE

void ClipOp::applySymmetryRule(SpaceBuilder &b) {
  // Bounds are scalars (or absent); clipping commutes with permutations only.
  unaryRule(b, *this, kNonlinear);
}

void DropoutOp::applySymmetryRule(SpaceBuilder &b) {
  // In an exported training graph the mask is random per element: the output
  // distribution is equivariant under permutations, signs and scalings, not
  // under rotations.
  unaryRule(b, *this, ScalarFn{Parity::Odd, 1, false});
}

void CastOp::applySymmetryRule(SpaceBuilder &b) {
  // A cast that keeps every value is linear. One that narrows (f32 -> f16 or bf16) rounds to
  // a coarser grid: round-to-nearest-even commutes with permutations and sign flips, not with
  // scalings or mixing (GL across an f32 -> f16 cast is off by ~1e-3; a session-35 audit).
  // Any other cast (to or from integers, booleans) is a plain nonlinearity.
  auto in = dyn_cast<ShapedType>(getOperand(0).getType());
  auto out = dyn_cast<ShapedType>(getResult(0).getType());
  const bool floats = in && out && isa<FloatType>(in.getElementType()) && isa<FloatType>(out.getElementType());
  unaryRule(b, *this, exactFloatCast(*this) ? kLinear : floats ? kOdd : kNonlinear);
}

void PowOp::applySymmetryRule(SpaceBuilder &b) {
  Value x = getOperand(0), e = getOperand(1), y = getResult(0);
  if (rankOf(x) < 0 || rankOf(e) < 0 || rankOf(y) < 0) {
    barrier(b, *this, "Pow with unknown ranks");
    return;
  }
  // x^p with a known integer p is homogeneous of degree p and odd or even with
  // p.
  std::optional<double> p = constScalar(e);
  if (p && *p == double(int64_t(*p)) && *p != 0 && rankOf(x) == rankOf(y)) {
    int64_t k = int64_t(*p);
    unaryRule(b, *this,
              ScalarFn{k % 2 ? Parity::Odd : Parity::Even, k, k == 1});
    return;
  }
  // Any other power is a plain nonlinearity of both operands, broadcast against each other
  // (a tensor exponent; BLOOM's and MPT's ALiBi slopes, 2^(-8 k / H) from a scalar base):
  // their axes move with the result's, permutations only, no scale or sign. An operand
  // that is one constant value has nothing to move.
  forBroadcastAxes(
      *this, y,
      [&](Value in, int64_t i, int64_t r) {
        b.restrict(y, r, kNoMixing, "Pow");
        pinFlows(b, y, r);
        if (constScalar(in))
          return;
        b.tie(in, i, y, r);
        pinFlows(b, in, i);
      },
      [&](Value, int64_t r) {
        b.restrict(y, r, kNoMixing, "Pow");
        pinFlows(b, y, r);
      });
}

void PReluOp::applySymmetryRule(SpaceBuilder &b) {
  // The slope broadcasts against x; a trainable slope moves with x's axis.
  unaryRule(b, *this, kPositivelyHomogeneous);
  Value slope = getOperand(1), x = getOperand(0);
  int64_t rs = rankOf(slope), rx = rankOf(x);
  auto st = cast<RankedTensorType>(slope.getType());
  for (int64_t i = 0; i < rs; ++i) {
    int64_t a = i + (rx - rs);
    if (a < 0 || st.getDimSize(i) == 1)
      continue;
    b.tie(slope, i, x, a);
    // The slope is dimensionless: it permutes with x but never scales.
    b.scaleRelation({{slope, i, 1}});
    b.signRelation({{slope, i, 1}});
  }
}

//===----------------------------------------------------------------------===//
// Broadcasting binary and n-ary ops.
//===----------------------------------------------------------------------===//

namespace {

/// Add, Sub, Sum, Mean, Min, Max, Where: every matched operand transforms like
/// the result. A value broadcast along an axis (the same for every coordinate)
/// pins that axis against scaling and sign flips and forbids mixing.
void sameTransformRule(SpaceBuilder &b, Operation *op, bool linear,
                       bool signs, unsigned firstData = 0) {
  Value y = op->getResult(0);
  StringRef name = op->getName().stripDialect();
  unsigned idx = 0;
  llvm::DenseMap<Value, unsigned> index;
  for (Value v : op->getOperands())
    index[v] = idx++;
  forBroadcastAxes(
      op, y,
      [&](Value in, int64_t i, int64_t r) {
        if (index[in] < firstData) { // Where's condition: moves, never scales
          b.tie(in, i, y, r);
          b.restrict(y, r, kNoMixing, name);
          return;
        }
        tieSame(b, in, i, y, r);
        if (!linear)
          b.restrict(y, r, kNoMixing, name);
        if (!signs)
          b.signRelation({{y, r, 1}});
      },
      [&](Value in, int64_t r) {
        if (index[in] < firstData)
          return;
        b.restrict(y, r, kNoMixing, name);
        pinFlows(b, y, r);
      });
}

/// Mul and Div: exponents add (or subtract); products of two varying operands
/// are not linear.
void productRule(SpaceBuilder &b, Operation *op, bool divide) {
  Value y = op->getResult(0);
  int64_t rr = rankOf(y);
  StringRef name = op->getName().stripDialect();
  std::vector<std::vector<AxisTerm>> scale(rr), sign(rr);
  std::vector<int> varying(rr, 0);
  std::vector<bool> divisorVaries(rr, false);
  for (int64_t r = 0; r < rr; ++r) {
    scale[r].push_back({y, r, -1});
    sign[r].push_back({y, r, 1});
  }
  Value divisor = divide ? op->getOperand(1) : Value();
  forBroadcastAxes(
      op, y,
      [&](Value in, int64_t i, int64_t r) {
        b.tie(in, i, y, r);
        bool isDivisor = in == divisor && in != op->getOperand(0);
        scale[r].push_back({in, i, isDivisor ? -1 : 1});
        sign[r].push_back({in, i, 1});
        ++varying[r];
        if (isDivisor)
          divisorVaries[r] = true;
      },
      [&](Value, int64_t) {});
  for (int64_t r = 0; r < rr; ++r) {
    b.scaleRelation(scale[r]);
    b.signRelation(sign[r]);
    if (varying[r] > 1 || divisorVaries[r])
      b.restrict(y, r, kNoMixing, name);
  }
}

/// Comparisons and logic: the output is boolean; comparing two operands is
/// invariant under a common positive scaling.
void predicateRule(SpaceBuilder &b, Operation *op) {
  Value y = op->getResult(0);
  StringRef name = op->getName().stripDialect();
  std::optional<std::pair<Value, int64_t>> first;
  forBroadcastAxes(
      op, y,
      [&](Value in, int64_t i, int64_t r) {
        b.tie(in, i, y, r);
        b.restrict(y, r, kNoMixing, name);
        b.signRelation({{in, i, 1}});
      },
      [&](Value, int64_t r) { pinFlows(b, y, r); });
  for (int64_t r = 0, rr = rankOf(y); r < rr; ++r) {
    b.scaleRelation({{y, r, 1}});
    b.signRelation({{y, r, 1}});
  }
  // Operands must scale together: pin them (comparisons with constants are
  // common and a free common scale is rarely useful).
  for (Value in : op->getOperands())
    for (int64_t a = 0, ir = rankOf(in); a < ir; ++a)
      b.scaleRelation({{in, a, 1}});
}

} // namespace

void AddOp::applySymmetryRule(SpaceBuilder &b) { sameTransformRule(b, *this, true, true); }
void SubOp::applySymmetryRule(SpaceBuilder &b) { sameTransformRule(b, *this, true, true); }
void SumOp::applySymmetryRule(SpaceBuilder &b) { sameTransformRule(b, *this, true, true); }
void MeanOp::applySymmetryRule(SpaceBuilder &b) { sameTransformRule(b, *this, true, true); }
void MinOp::applySymmetryRule(SpaceBuilder &b) { sameTransformRule(b, *this, false, false); }
void MaxOp::applySymmetryRule(SpaceBuilder &b) { sameTransformRule(b, *this, false, false); }
void WhereOp::applySymmetryRule(SpaceBuilder &b) {
  sameTransformRule(b, *this, false, true, /*firstData=*/1);
}
void MulOp::applySymmetryRule(SpaceBuilder &b) { productRule(b, *this, false); }
void DivOp::applySymmetryRule(SpaceBuilder &b) { productRule(b, *this, true); }
void EqualOp::applySymmetryRule(SpaceBuilder &b) {
  if (!equalAsOneHot(b, *this))
    predicateRule(b, *this);
}
void LessOp::applySymmetryRule(SpaceBuilder &b) { predicateRule(b, *this); }
void GreaterOp::applySymmetryRule(SpaceBuilder &b) { predicateRule(b, *this); }
void LessOrEqualOp::applySymmetryRule(SpaceBuilder &b) { predicateRule(b, *this); }
void GreaterOrEqualOp::applySymmetryRule(SpaceBuilder &b) { predicateRule(b, *this); }
void AndOp::applySymmetryRule(SpaceBuilder &b) { predicateRule(b, *this); }
void OrOp::applySymmetryRule(SpaceBuilder &b) { predicateRule(b, *this); }
void ModOp::applySymmetryRule(SpaceBuilder &b) { predicateRule(b, *this); }

} // namespace symoc::graph
