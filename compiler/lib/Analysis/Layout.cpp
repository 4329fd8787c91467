//===- Layout.cpp - Axes, their pieces and their union-find nodes ---------===//
//
// Takes values and axes; gives the axis table (cuts, runs, head index per
// axis) and the node layout (one node per piece per head, one per run) that
// every stage reads, plus the union-find with parity over the nodes.
//
//===----------------------------------------------------------------------===//

#include "symoc/Analysis/Stages.h"

#include "mlir/IR/BuiltinAttributes.h"

#include <algorithm>
#include <cmath>

using namespace mlir;
using namespace symoc::graph;

namespace symoc {
namespace analysis {

int AxisTable::get(Value v, int64_t a) {
  auto key = std::make_pair(v.getAsOpaquePointer(), a);
  auto it = index.find(key);
  if (it != index.end())
    return it->second;
  int64_t size = -1;
  if (auto t = dyn_cast<RankedTensorType>(v.getType()))
    if (a >= 0 && a < t.getRank())
      size = t.getDimSize(a);
  AxisInfo info;
  info.value = v;
  info.axis = a;
  info.size = size < 0 ? -1 : size;
  if (size >= 0)
    info.cuts = {0, size};
  axes.push_back(info);
  index[key] = int(axes.size() - 1);
  return int(axes.size() - 1);
}

int64_t rankOfValue(Value v) {
  if (auto t = dyn_cast<RankedTensorType>(v.getType()))
    return t.getRank();
  return 0;
}

bool definedByParam(Value v) { return v.getDefiningOp<ParamOp>() != nullptr; }

/// Rules need ranks: an op with an operand or result of unknown rank (shape
/// inference gave up) is a barrier.
bool hasUnrankedTensor(Operation *op) {
  // Hand-written IR may also give a curated op no operands or results at all;
  // the rules index operand 0 and result 0, so such an op is a barrier too.
  if (op->getNumOperands() == 0 || op->getNumResults() == 0)
    return true;
  auto unranked = [](Value v) { return isa<UnrankedTensorType>(v.getType()); };
  return llvm::any_of(op->getOperands(), unranked) ||
         llvm::any_of(op->getResults(), unranked);
}

/// True when the op's ties connect axis a to axis b, directly or through
/// other axes the op ties (a batch axis tied to the result by both operands).
bool connectedByTies(const std::vector<std::pair<AxisRef, AxisRef>> &ties,
                     AxisRef a, AxisRef b) {
  auto same = [](const AxisRef &x, const AxisRef &y) {
    return x.value == y.value && x.axis == y.axis;
  };
  std::vector<AxisRef> seen{a}, frontier{a};
  while (!frontier.empty()) {
    AxisRef cur = frontier.back();
    frontier.pop_back();
    if (same(cur, b))
      return true;
    for (const auto &[p, q] : ties) {
      const AxisRef *next = same(p, cur) ? &q : same(q, cur) ? &p : nullptr;
      if (!next)
        continue;
      bool known = false;
      for (const AxisRef &s : seen)
        known |= same(s, *next);
      if (!known) {
        seen.push_back(*next);
        frontier.push_back(*next);
      }
    }
  }
  return false;
}

/// The operand whose positions `v` holds unchanged, or null: a view (Identity, Reshape,
/// Squeeze, Unsqueeze, Flatten, Expand, Transpose), a Concat of one operand, a Cast to an
/// integer type, or a Clip by constant bounds. The Cast and the Clip keep only positions in
/// a range, which `keep` narrows: the caller checks it covers the source axis
/// (transformers' MoE clamps the TopK positions to [0, E - 1] before indexing the experts).
Value positionSourceOf(Value v, PositionRange &keep) {
  Operation *d = v.getDefiningOp();
  if (!d || d->getNumResults() != 1 || d->getNumOperands() < 1)
    return Value();
  if (isa<IdentityOp, ReshapeOp, SqueezeOp, UnsqueezeOp, FlattenOp, ExpandOp, TransposeOp>(d))
    return d->getOperand(0);
  if (isa<ConcatOp>(d))
    return d->getNumOperands() == 1 ? d->getOperand(0) : Value();
  if (isa<CastOp>(d)) {
    auto to = dyn_cast<IntegerType>(cast<ShapedType>(v.getType()).getElementType());
    if (!to || to.getWidth() < 2 || to.getWidth() > 64)
      return Value();
    if (to.getWidth() < 64)
      keep.hi = std::min(keep.hi, (int64_t(1) << (to.getWidth() - (to.isUnsigned() ? 0 : 1))) - 1);
    if (to.isUnsigned())
      keep.lo = std::max<int64_t>(keep.lo, 0);
    return d->getOperand(0);
  }
  if (isa<ClipOp>(d)) {
    // Bounds are operands 1 and 2 (absent: none), or attributes min / max (opset < 11).
    auto bound = [&](unsigned i, StringRef attr, int64_t &into, bool upper) {
      std::optional<double> c;
      if (d->getNumOperands() > i && !isa<NoneType>(d->getOperand(i).getType()))
        c = constScalar(d->getOperand(i));
      else if (auto f = d->getAttrOfType<FloatAttr>(attr))
        c = f.getValueAsDouble();
      else
        return true; // no bound
      if (!c || std::isnan(*c))
        return false;
      double x = upper ? std::floor(*c) : std::ceil(*c);
      x = std::clamp(x, -9.0e18, 9.0e18);
      into = upper ? std::min(into, int64_t(x)) : std::max(into, int64_t(x));
      return true;
    };
    if (!bound(1, "min", keep.lo, false) || !bound(2, "max", keep.hi, true))
      return Value();
    return d->getOperand(0);
  }
  return Value();
}

bool readsOnlyShape(OpOperand &use, int depth) {
  Operation *u = use.getOwner();
  if (isa<ShapeOp, SizeOp>(u))
    return true;
  // A copy of one operand (a Max or Min of one input, an Identity, a Cast) has its shape:
  // read only by Shape/Size, the values are never read (transformers' MoE feeds
  // Shape(Max(positions)) to the Expand of the positions).
  bool copy = u->getNumOperands() == 1 && u->getNumResults() == 1 &&
              isa<MaxOp, MinOp, SumOp, MeanOp, IdentityOp, CastOp>(u);
  if (!copy || depth <= 0)
    return false;
  for (OpOperand &next : u->getResult(0).getUses())
    if (!readsOnlyShape(next, depth - 1))
      return false;
  return true;
}

//===----------------------------------------------------------------------===//
// The union-find.
//===----------------------------------------------------------------------===//

void ParityUnionFind::grow(size_t n) {
  size_t old = parent.size();
  parent.resize(n);
  parity.resize(n, 0);
  for (size_t i = old; i < n; ++i)
    parent[i] = int(i);
}

std::pair<int, int> ParityUnionFind::find(int x) {
  int p = 0, r = x;
  while (parent[r] != r) {
    p ^= parity[r];
    r = parent[r];
  }
  // Path compression keeping parities right.
  int q = 0, y = x;
  while (parent[y] != y) {
    int next = parent[y], py = parity[y];
    parent[y] = r;
    parity[y] = p ^ q;
    q ^= py;
    y = next;
  }
  return {r, p};
}

bool ParityUnionFind::unite(int x, int y, int rel) {
  auto [rx, px] = find(x);
  auto [ry, py] = find(y);
  if (rx == ry)
    return (px ^ py) == rel;
  parent[rx] = ry;
  parity[rx] = px ^ py ^ rel;
  return true;
}

//===----------------------------------------------------------------------===//
// The node layout.
//===----------------------------------------------------------------------===//

AxisInfo &SpaceGraph::axisOf(Value v, int64_t a) {
  int idx = table.get(v, a);
  ensureNodes(idx);
  return table.axes[idx];
}

std::vector<int> SpaceGraph::allNodes(Value v, int64_t a) {
  AxisInfo &A = axisOf(v, a);
  std::vector<int> out;
  for (int i = 0; i < A.numHeads * A.numPieces; ++i)
    out.push_back(A.firstNode + i);
  return out;
}

std::vector<int> SpaceGraph::blockNodes(Value v, int64_t a) {
  AxisInfo &A = axisOf(v, a);
  std::vector<int> out;
  if (A.firstBlock >= 0)
    for (size_t r = 0; r < A.runs.size() * size_t(A.blockHeads); ++r)
      out.push_back(A.firstBlock + int(r));
  return out;
}

void SpaceGraph::ensureNodes(int idx) {
  if (table.axes[idx].firstNode >= 0)
    return;
  // Heads: the index axis must exist, be static and be a single piece.
  int heads = 1;
  {
    AxisInfo copy = table.axes[idx];
    if (copy.indexAxis >= 0 && !copy.indexConflict) {
      int hi = table.get(copy.value, copy.indexAxis);
      const AxisInfo &Hx = table.axes[hi];
      if (Hx.size > 1)
        heads = int(Hx.size);
    }
  }
  AxisInfo &A = table.axes[idx];
  A.numHeads = heads;
  A.firstNode = int(nodes.size());
  std::vector<int64_t> c(A.cuts.begin(), A.cuts.end());
  std::vector<std::pair<int64_t, int64_t>> pieces;
  if (A.size < 0) {
    pieces.push_back({0, -1});
  } else {
    for (size_t i = 0; i + 1 < c.size(); ++i)
      pieces.push_back({c[i], c[i + 1] - c[i]});
    if (pieces.empty())
      pieces.push_back({0, 0});
  }
  A.numPieces = int(pieces.size());
  for (int h = 0; h < heads; ++h)
    for (auto [st, len] : pieces)
      nodes.push_back({idx, st, len, heads > 1 ? h : -1, -1});
  if (!A.runConflict && !A.runs.empty()) {
    A.firstBlock = int(nodes.size());
    // A parameter's blocks stay one per run: the claims have no member form
    // for per-head blocks (ties to per-head ones then join all heads).
    A.blockHeads = A.perHeadBlocks && heads > 1 && !definedByParam(A.value) ? heads : 1;
    for (int h = 0; h < A.blockHeads; ++h)
      for (size_t r = 0; r < A.runs.size(); ++r)
        nodes.push_back({idx, A.runs[r].start, A.runs[r].count * A.runs[r].size,
                         A.blockHeads > 1 ? h : -1, int(r)});
  }
  uf.grow(nodes.size());
  if (A.size < 0)
    restrictions.push_back({A.firstNode, kNone, "dynamic dimension"});
}

bool SpaceGraph::samePieces(const AxisInfo &X, const AxisInfo &Y) const {
  if (X.numPieces != Y.numPieces)
    return false;
  for (int i = 0; i < X.numPieces; ++i)
    if (nodes[X.firstNode + i].len != nodes[Y.firstNode + i].len)
      return false;
  return true;
}

} // namespace analysis
} // namespace symoc
