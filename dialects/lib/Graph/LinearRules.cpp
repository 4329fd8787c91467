//===- LinearRules.cpp - Symmetry rules of contractions -------------------===//
//
// A contraction ties the two contracted axes as dual sides of one space
// (W -> W A^{-1} where x -> A x). It constrains no group on them: whatever
// acts on the space is absorbed by the weight. Batch axes of a product of two
// activations only admit permutations.
//
//===----------------------------------------------------------------------===//

#include "RuleHelpers.h"

#include <algorithm>
#include <set>

using namespace mlir;

namespace symoc::graph {
namespace {

/// y[..., i, j] = sum_k a[..., i, k] b[..., k, j] with numpy batch broadcasting.
/// aRow/aCol/bRow/bCol name the axes of a and b playing i, k (a) and k, j (b).
void contraction(SpaceBuilder &b, Operation *op, Value a, int64_t aRow,
                 int64_t aK, Value w, int64_t bK, int64_t bCol, Value y,
                 int64_t yRow, int64_t yCol, int64_t batchA, int64_t batchB) {
  StringRef name = op->getName().stripDialect();
  tieDual(b, a, aK, w, bK);
  if (aRow >= 0)
    tieSame(b, a, aRow, y, yRow);
  if (bCol >= 0)
    tieSame(b, w, bCol, y, yCol);
  // Batch axes, aligned from the right of the batch dims.
  int64_t batchY = yRow >= 0 ? yRow : yCol; // number of batch axes of y
  auto yt = cast<RankedTensorType>(y.getType());
  auto bt = cast<RankedTensorType>(w.getType());
  auto at = cast<RankedTensorType>(a.getType());
  bool bilinear = batchA > 0 && batchB > 0;
  for (int64_t r = 0; r < batchY; ++r) {
    std::vector<AxisTerm> scale{{y, r, -1}}, sign{{y, r, 1}};
    int64_t ia = r - (batchY - batchA), ib = r - (batchY - batchB);
    // An operand's batch axis either matches the result's (it moves with
    // it), or has size 1 (broadcast: the same operand for every coordinate,
    // unchanged by a permutation of the result's axis). Any other size (a
    // dynamic one in particular: it may be the result's size or 1) cannot be
    // followed, and a permutation of the result's axis that leaves that
    // operand alone is not a symmetry: the axis is fixed.
    bool followed = true;
    auto batchOf = [&](Value v, RankedTensorType t, int64_t i) {
      if (i < 0)
        return;
      int64_t n = t.getDimSize(i), m = yt.getDimSize(r);
      if (n == m && n >= 0) {
        b.tie(v, i, y, r);
        scale.push_back({v, i, 1});
        sign.push_back({v, i, 1});
      } else if (n != 1 || m < 0) {
        followed = false;
        b.restrict(v, i, kNone, "MatMul batch axis of unknown or mismatched size");
        pinFlows(b, v, i);
      }
    };
    batchOf(a, at, ia);
    batchOf(w, bt, ib);
    if (!followed) {
      b.restrict(y, r, kNone, "MatMul batch axis of unknown or mismatched size");
      pinFlows(b, y, r);
      continue;
    }
    b.scaleRelation(scale);
    b.signRelation(sign);
    if (bilinear)
      b.restrict(y, r, kNoMixing, name);
  }
}

} // namespace

void MatMulOp::applySymmetryRule(SpaceBuilder &b) {
  Value a = getOperand(0), w = getOperand(1), y = getResult(0);
  int64_t ra = rankOf(a), rb = rankOf(w), ry = rankOf(y);
  if (ra < 1 || rb < 1 || ry < 0) {
    barrier(b, *this, "MatMul with unknown ranks");
    return;
  }
  // numpy semantics: a 1-D operand has no row (a) or column (b) axis.
  int64_t aRow = ra >= 2 ? ra - 2 : -1, aK = ra - 1;
  int64_t bK = rb >= 2 ? rb - 2 : 0, bCol = rb >= 2 ? rb - 1 : -1;
  // numpy: the result keeps the broadcast batch axes and the row / column that exist.
  const int64_t batch = std::max<int64_t>(std::max<int64_t>(ra - 2, 0), std::max<int64_t>(rb - 2, 0));
  if (ry != batch + (aRow >= 0) + (bCol >= 0)) {
    barrier(b, *this, "MatMul result rank does not match its operands");
    return;
  }
  int64_t yRow = -1, yCol = -1;
  if (aRow >= 0 && bCol >= 0) {
    yRow = ry - 2;
    yCol = ry - 1;
  } else if (aRow >= 0) {
    yRow = ry - 1;
  } else if (bCol >= 0) {
    yCol = ry - 1;
  }
  contraction(b, *this, a, aRow, aK, w, bK, bCol, y, yRow, yCol,
              std::max<int64_t>(ra - 2, 0), std::max<int64_t>(rb - 2, 0));
}

void GemmOp::applySymmetryRule(SpaceBuilder &b) {
  Value a = getOperand(0), w = getOperand(1), y = getResult(0);
  if (rankOf(a) != 2 || rankOf(w) != 2 || rankOf(y) != 2) {
    barrier(b, *this, "Gemm operands must be 2-D");
    return;
  }
  bool ta = intAttr(*this, "transA", 0), tb = intAttr(*this, "transB", 0);
  contraction(b, *this, a, ta ? 1 : 0, ta ? 0 : 1, w, tb ? 1 : 0, tb ? 0 : 1, y,
              0, 1, 0, 0);
  // C is added with broadcasting, like Add.
  if (getNumOperands() > 2 && !isNone(getOperand(2))) {
    Value c = getOperand(2);
    int64_t rc = rankOf(c);
    auto ct = cast<RankedTensorType>(c.getType());
    auto yt = cast<RankedTensorType>(y.getType());
    for (int64_t r = 0; r < 2; ++r) {
      int64_t i = r - (2 - rc);
      if (i >= 0 && ct.getDimSize(i) == yt.getDimSize(r)) {
        tieSame(b, c, i, y, r);
      } else {
        b.restrict(y, r, kNoMixing, "Gemm bias broadcast");
        pinFlows(b, y, r);
      }
    }
  }
}

void ConvOp::applySymmetryRule(SpaceBuilder &b) {
  // X [N, Cin, spatial...], W [Cout, Cin/group, k...], B [Cout].
  Value x = getOperand(0), w = getOperand(1), y = getResult(0);
  int64_t r = rankOf(x);
  if (r < 3 || rankOf(w) != r || rankOf(y) != r) {
    barrier(b, *this, "Conv with unknown ranks");
    return;
  }
  int64_t group = intAttr(*this, "group", 1);
  auto xt = cast<RankedTensorType>(x.getType());
  auto wt = cast<RankedTensorType>(w.getType());
  tieSame(b, x, 0, y, 0);
  // Spatial axes are positions, not spaces.
  for (int64_t a = 2; a < r; ++a) {
    b.restrict(x, a, kNone, "Conv spatial axis");
    b.restrict(y, a, kNone, "Conv spatial axis");
    b.restrict(w, a, kNone, "Conv kernel axis");
  }
  if (group == 1) {
    tieSame(b, w, 0, y, 1);
    tieDual(b, x, 1, w, 1);
  } else if (group == xt.getDimSize(1) && wt.getDimSize(1) == 1 &&
             wt.getDimSize(0) == group) {
    // Depthwise: channel c only feeds channel c. Input and output channel
    // spaces coincide; the per-channel kernel scales like a gain.
    b.tie(x, 1, y, 1);
    b.tie(w, 0, y, 1);
    b.restrict(y, 1, kNoMixing, "depthwise Conv");
    b.scaleRelation({{y, 1, -1}, {x, 1, 1}, {w, 0, 1}});
    b.signRelation({{y, 1, 1}, {x, 1, 1}, {w, 0, 1}});
  } else {
    b.restrict(w, 0, kNone, "grouped Conv");
    b.restrict(x, 1, kNone, "grouped Conv");
    b.restrict(y, 1, kNone, "grouped Conv");
    // No flow through it: W's and X's channel exponents are pinned (no relation
    // here), so the only relation on Y's channels, the bias tie below, would let
    // a rescaling of Y and B pass with W untouched (timm's PiT pooling, a Conv
    // with 2 outputs per group, read by a LayerNorm: "scale B alone").
    pinFlows(b, y, 1);
  }
  if (getNumOperands() > 2 && !isNone(getOperand(2)))
    tieSame(b, getOperand(2), 0, y, 1);
}

void EinsumOp::applySymmetryRule(SpaceBuilder &b) {
  // Explicit equations ("ab,bc->ac") with one or two operands and no
  // ellipsis. Per letter: in both operands but not the output, a contraction;
  // in both and the output, a batch axis of a bilinear product; in one operand
  // and the output, a free axis; in one operand only, a sum over it.
  auto eq = getOperation()->getAttrOfType<StringAttr>("equation");
  if (!eq) {
    barrier(b, *this, "Einsum without an equation");
    return;
  }
  std::string e;
  for (char c : eq.getValue().str())
    if (c != ' ')
      e += c;
  size_t arrow = e.find("->");
  if (arrow == std::string::npos || e.find("...") != std::string::npos ||
      getNumOperands() > 2) {
    barrier(b, *this, "Einsum form not followed (implicit output, ellipsis or > 2 operands)");
    return;
  }
  std::string lhs = e.substr(0, arrow), out = e.substr(arrow + 2);
  std::vector<std::string> ins;
  for (size_t start = 0;;) {
    size_t comma = lhs.find(',', start);
    ins.push_back(lhs.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
    if (comma == std::string::npos)
      break;
    start = comma + 1;
  }
  Value y = getResult(0);
  if (ins.size() != getNumOperands() || int64_t(out.size()) != rankOf(y)) {
    barrier(b, *this, "Einsum equation does not match the operands");
    return;
  }
  for (size_t k = 0; k < ins.size(); ++k)
    if (int64_t(ins[k].size()) != rankOf(getOperand(k))) {
      barrier(b, *this, "Einsum equation does not match the operands");
      return;
    }
  auto count = [](const std::string &str, char c) {
    return std::count(str.begin(), str.end(), c);
  };
  for (const std::string &t : ins)
    for (char c : t)
      if (count(t, c) > 1) {
        barrier(b, *this, "Einsum with a repeated index (diagonal)");
        return;
      }
  std::set<char> letters;
  for (const std::string &t : ins)
    letters.insert(t.begin(), t.end());
  for (char c : out)
    if (!letters.count(c) || count(out, c) > 1) {
      barrier(b, *this, "Einsum output index not in the operands");
      return;
    }
  StringRef name = "Einsum";
  bool two = ins.size() == 2;
  for (char c : letters) {
    int64_t a0 = int64_t(ins[0].find(c));
    int64_t a1 = two ? int64_t(ins[1].find(c)) : -1;
    int64_t o = int64_t(out.find(c));
    if (ins[0].find(c) == std::string::npos) a0 = -1;
    if (two && ins[1].find(c) == std::string::npos) a1 = -1;
    if (out.find(c) == std::string::npos) o = -1;
    Value x0 = getOperand(0), x1 = two ? getOperand(1) : Value();
    if (a0 >= 0 && a1 >= 0 && o < 0) {
      tieDual(b, x0, a0, x1, a1);
    } else if (a0 >= 0 && a1 >= 0) {
      b.tie(x0, a0, y, o);
      b.tie(x1, a1, y, o);
      b.restrict(y, o, kNoMixing, name);
      b.scaleRelation({{y, o, -1}, {x0, a0, 1}, {x1, a1, 1}});
      b.signRelation({{y, o, 1}, {x0, a0, 1}, {x1, a1, 1}});
    } else if (o >= 0) {
      Value x = a0 >= 0 ? x0 : x1;
      tieSame(b, x, a0 >= 0 ? a0 : a1, y, o);
    } else {
      Value x = a0 >= 0 ? x0 : x1;
      int64_t a = a0 >= 0 ? a0 : a1;
      b.restrict(x, a, kPerm, "Einsum sums over this axis");
      pinFlows(b, x, a);
    }
  }
}

void ConvTransposeOp::applySymmetryRule(SpaceBuilder &b) {
  barrier(b, *this, "ConvTranspose has no rule yet");
}

} // namespace symoc::graph
