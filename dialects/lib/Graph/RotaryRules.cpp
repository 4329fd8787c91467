//===- RotaryRules.cpp - The rule of graph.Rotary -------------------------===//
//
// y = x * cos + g(x) * sin along the channel axis, with g a signed
// permutation and per position a rotation-scaling [[c, -s], [s, c]] on each
// channel pair (checked on the tables by symoc-recompose-rotary). A map A on
// the channels commutes with every such map (for all positions) when A acts
// on each pair as a rotation-scaling and as nothing else: the commutant of
// the rotary maps. Scores q^T k with q and k both rotary-mapped are then
// invariant under q -> A q, k -> A^-T k (A^-T is again a rotation-scaling per
// pair). Along every other axis the tables are constants: a position axis they
// vary along is tied to them (fixed), an axis they broadcast along is batched.
//
//===----------------------------------------------------------------------===//

#include "RuleHelpers.h"

#include <set>

using namespace mlir;

namespace symoc::graph {

/// True when a parameter (a trained value) feeds `v`: a trained table need
/// not stay a rotation, so such a Rotary is a barrier.
static bool dependsOnParameter(Value v) {
  std::vector<Value> stack{v};
  std::set<const void *> seen;
  while (!stack.empty()) {
    Value cur = stack.back();
    stack.pop_back();
    if (!seen.insert(cur.getAsOpaquePointer()).second) continue;
    Operation *d = cur.getDefiningOp();
    if (!d) continue; // a model input (positions): not trained
    if (isa<ParamOp>(d)) return true;
    for (Value o : d->getOperands()) stack.push_back(o);
  }
  return false;
}

void RotaryOp::applySymmetryRule(SpaceBuilder &b) {
  Value x = getInput(), y = getOutput();
  int64_t r = rankOf(y);
  int64_t c = normAxis(getAxis(), r);
  auto flat = getPairs();
  auto yt = dyn_cast<RankedTensorType>(y.getType());
  if (c < 0 || !yt || x.getType() != y.getType() || flat.size() % 2 != 0 ||
      yt.isDynamicDim(c)) {
    barrier(b, *this, "malformed Rotary");
    return;
  }
  int64_t d = yt.getDimSize(c);
  // Every channel in exactly one pair, the tables constants (a trained table
  // need not stay a rotation) of rank at most y's.
  std::vector<std::pair<int64_t, int64_t>> pairs;
  std::set<int64_t> seen;
  bool ok = true;
  for (size_t k = 0; k + 1 < flat.size(); k += 2) {
    int64_t i = flat[k], j = flat[k + 1];
    ok &= i >= 0 && j >= 0 && i < d && j < d && i != j && seen.insert(i).second &&
          seen.insert(j).second;
    pairs.push_back({i, j});
  }
  ok &= int64_t(seen.size()) == d;
  for (Value t : {getCos(), getSin()}) {
    ok &= !dependsOnParameter(t) && rankOf(t) >= 0 && rankOf(t) <= r;
    if (auto tt = dyn_cast<RankedTensorType>(t.getType()))
      for (int64_t i = 0; ok && i < tt.getRank(); ++i) {
        int64_t a = i + (r - tt.getRank());
        ok &= tt.getDimSize(i) == 1 || tt.getDimSize(i) == yt.getDimSize(a);
      }
  }
  if (!ok) {
    barrier(b, *this, "Rotary without a complete pairing or with non-constant tables");
    return;
  }
  for (int64_t a = 0; a < r; ++a)
    tieSame(b, x, a, y, a);
  b.restrictToPairs(y, c, pairs, kPairs, "rotary map");
  for (Value t : {getCos(), getSin()}) {
    auto tt = cast<RankedTensorType>(t.getType());
    int64_t rt = tt.getRank();
    for (int64_t i = 0; i < rt; ++i) {
      int64_t a = i + (r - rt);
      if (a == c || tt.getDimSize(i) == 1)
        b.restrict(t, i, kNone, "rotary table");
      else
        b.tie(t, i, y, a); // a constant: fixes the axis it varies along
    }
  }
}

/// Shapes and attributes agree: same type in and out, `source`/`sign` one entry
/// per channel (a permutation with signs +-1), `pairs` an even-length list.
LogicalResult RotaryOp::verify() {
  auto xt = dyn_cast<RankedTensorType>(getInput().getType());
  if (!xt)
    return emitOpError("needs a ranked input");
  if (getOutput().getType() != getInput().getType())
    return emitOpError("result type must equal the input type");
  int64_t c = normAxis(getAxis(), xt.getRank());
  if (c < 0)
    return emitOpError("axis out of range");
  auto source = getSource(), sign = getSign();
  if (source.size() != sign.size() || getPairs().size() % 2 != 0)
    return emitOpError("source and sign must have one entry per channel, pairs an even length");
  if (!xt.isDynamicDim(c) && int64_t(source.size()) != xt.getDimSize(c))
    return emitOpError("source must have one entry per channel of the axis");
  std::set<int64_t> seen;
  for (size_t k = 0; k < source.size(); ++k)
    if (source[k] < 0 || source[k] >= int64_t(source.size()) || !seen.insert(source[k]).second ||
        (sign[k] != 1 && sign[k] != -1))
      return emitOpError("source must be a permutation and sign entries +-1");
  return success();
}

} // namespace symoc::graph
