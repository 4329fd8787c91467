//===- SpaceAnalysis.cpp - Spaces, groups and gauges of a graph -----------===//
//
// Two phases over the same per-op rules (the SymmetryRule interface):
//  1. segmentation: Split/Slice/Concat cut an axis into pieces; the cuts are
//     propagated through every tie until nothing changes;
//  2. spaces: union-find with parity over (value, axis, piece), the meet of
//     the groups each op allows, and the scale / sign flows, solved for their
//     kernels (the gauges).
// Anything not understood fixes the axes it touches: a claim is only made when
// every op on the space allows it.
//
//===----------------------------------------------------------------------===//

#include "symoc/Analysis/SpaceAnalysis.h"

#include "Roles.h"

#include "symoc/Dialect/Graph/GraphOps.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "llvm/ADT/DenseMap.h"

#include <fmt/core.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <map>
#include <set>
#include <tuple>

using namespace mlir;
using namespace symoc::graph;

namespace symoc {
namespace {

//===----------------------------------------------------------------------===//
// Axes, their pieces, their heads and their blocks.
//
// An axis is cut into pieces (by slices, and at head boundaries of a factored
// axis). An axis that a Reshape split off a model dimension is *indexed* by the
// head axis next to it: it has one set of pieces per head, so each head's
// channels form spaces of their own. A factored model axis carries *runs*
// (start, H, d): H blocks of d coordinates whose permutations are a head
// permutation; each run has a block node in the union-find.
//===----------------------------------------------------------------------===//

struct Run {
  int64_t start, count, size;
  bool operator==(const Run &o) const {
    return start == o.start && count == o.count && size == o.size;
  }
  bool operator<(const Run &o) const {
    return std::tie(start, count, size) < std::tie(o.start, o.count, o.size);
  }
  int64_t end() const { return start + count * size; }
};

struct AxisInfo {
  Value value;
  int64_t axis;
  int64_t size; // -1 when dynamic
  std::set<int64_t> cuts;
  std::vector<Run> runs;
  bool runConflict = false;
  int64_t indexAxis = -1; // the head axis (of the same value) indexing this one
  bool indexConflict = false;
  // Phase 2 layout.
  int firstNode = -1, numPieces = 0, numHeads = 1;
  int firstBlock = -1;
};

class AxisTable {
public:
  int get(Value v, int64_t a) {
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
  std::vector<AxisInfo> axes;

private:
  std::map<std::pair<const void *, int64_t>, int> index;
};

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

struct AxisRef {
  Value value;
  int64_t axis;
};

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

/// The operand whose entries a view op's result holds, rearranged or copied
/// (Identity, Reshape, Squeeze, Unsqueeze, Flatten, Expand, Transpose): positions
/// stay positions through it. Null for any other op.
Value viewSourceOf(Value v) {
  Operation *d = v.getDefiningOp();
  if (!d || d->getNumResults() != 1 || d->getNumOperands() < 1)
    return Value();
  if (isa<IdentityOp, ReshapeOp, SqueezeOp, UnsqueezeOp, FlattenOp, ExpandOp, TransposeOp>(d))
    return d->getOperand(0);
  return Value();
}

//===----------------------------------------------------------------------===//
// Phase 1: propagate cuts, runs and head indexing.
//===----------------------------------------------------------------------===//

using AxisKey = std::pair<const void *, int64_t>;
AxisKey keyOf(Value v, int64_t a) { return {v.getAsOpaquePointer(), a}; }

/// A factor whose head axis is the inner part (a batch axis merged with
/// heads: [B, H, T, d] -> [B*H, T, d]); keyed by (parts, inner).
using InnerHeadSet = std::set<AxisKey>;

class CutBuilder : public SpaceBuilder {
public:
  CutBuilder(AxisTable &t, const InnerHeadSet &innerHeads)
      : table(t), innerHeads(innerHeads) {}
  bool changed = false;
  /// Every plain factor seen: (parts, outer, inner).
  std::vector<std::tuple<Value, int64_t, int64_t>> plainFactors;

  void tie(Value x, int64_t a, Value y, int64_t b, bool) override {
    int xi = table.get(x, a), yi = table.get(y, b);
    opTies.push_back({{x, a}, {y, b}});
    AxisInfo &X = table.axes[xi];
    AxisInfo &Y = table.axes[yi];
    if (X.size < 0 || X.size != Y.size)
      return;
    merge(X.cuts, Y.cuts);
    merge(Y.cuts, X.cuts);
    for (const Run &r : std::vector<Run>(Y.runs)) addRun(X, r);
    for (const Run &r : std::vector<Run>(X.runs)) addRun(Y, r);
  }
  void slice(Value in, int64_t axis, int64_t begin, int64_t count, Value out,
             int64_t outAxis) override {
    int ii = table.get(in, axis), oi = table.get(out, outAxis);
    opTies.push_back({{in, axis}, {out, outAxis}});
    AxisInfo &I = table.axes[ii];
    AxisInfo &O = table.axes[oi];
    if (I.size < 0 || O.size != count || begin < 0 || begin + count > I.size)
      return;
    add(I.cuts, begin);
    add(I.cuts, begin + count);
    for (int64_t c : std::vector<int64_t>(O.cuts.begin(), O.cuts.end()))
      add(I.cuts, begin + c);
    for (int64_t c : std::vector<int64_t>(I.cuts.begin(), I.cuts.end()))
      if (c >= begin && c <= begin + count)
        add(O.cuts, c - begin);
    for (const Run &r : std::vector<Run>(I.runs))
      if (r.start >= begin && r.end() <= begin + count)
        addRun(O, {r.start - begin, r.count, r.size});
    for (const Run &r : std::vector<Run>(O.runs))
      addRun(I, {r.start + begin, r.count, r.size});
  }
  void factor(Value whole, int64_t axis, Value parts, int64_t outer,
              int64_t inner, int64_t outerHeads) override {
    int wi = table.get(whole, axis), oi = table.get(parts, outer),
        ii = table.get(parts, inner);
    bool headInner = outerHeads <= 0 && innerHeads.count(keyOf(parts, inner));
    if (outerHeads <= 0) {
      plainFactors.push_back({parts, outer, inner});
      opFactors.push_back({{whole, axis}, {parts, headInner ? inner : outer}});
    }
    AxisInfo &W = table.axes[wi];
    int64_t H = outerHeads > 0 ? outerHeads : table.axes[oi].size,
            d = table.axes[ii].size;
    if (H <= 0 || d <= 0 || W.size != H * d || table.axes[oi].size % H != 0)
      return;
    AxisInfo &In = table.axes[ii];
    for (int64_t k = 0; k <= H; ++k)
      add(W.cuts, k * d);
    for (int64_t c : std::vector<int64_t>(W.cuts.begin(), W.cuts.end()))
      add(In.cuts, c % d == 0 && c != 0 ? d : c % d);
    for (int64_t c : std::vector<int64_t>(In.cuts.begin(), In.cuts.end()))
      for (int64_t k = 0; k < H; ++k)
        add(W.cuts, k * d + c);
    // Heads in blocks of d. When the head axis is itself cut into pieces
    // (query heads grouped under shared key/value heads), each piece is a
    // run of its own: heads permute within their group.
    const AxisInfo &O = table.axes[oi];
    if (outerHeads <= 0 && O.cuts.size() > 2 && *O.cuts.begin() == 0 &&
        *O.cuts.rbegin() == H) {
      std::vector<int64_t> oc(O.cuts.begin(), O.cuts.end());
      for (size_t p = 0; p + 1 < oc.size(); ++p)
        addRun(table.axes[wi], {oc[p] * d, oc[p + 1] - oc[p], d});
    } else {
      addRun(table.axes[wi], {0, H, d});
    }
    // Groups of heads on the head axis (query heads under a shared key/value
    // head) are groups of blocks of the whole axis.
    if (outerHeads <= 0 && !headInner)
      for (const Run &g : std::vector<Run>(table.axes[oi].runs))
        addRun(table.axes[wi], {g.start * d, g.count, g.size * d});
    // The inner axis is indexed by the heads, unless it is the head axis
    // itself (the outer part is then a batch axis merged with the heads).
    if (!headInner)
      setIndex(table.axes[ii], outer);
  }
  void restrict(Value, int64_t, unsigned, StringRef) override {}
  void fixAll(Value, StringRef) override {}
  void couple(Value, int64_t) override {}
  void scaleRelation(ArrayRef<AxisTerm>) override {}
  void approxScaleRelation(ArrayRef<AxisTerm>, StringRef, bool) override {}
  void signRelation(ArrayRef<AxisTerm>) override {}
  void softmaxOver(Value, int64_t) override {}
  int64_t dimSize(Value v, int64_t a) override {
    return table.axes[table.get(v, a)].size;
  }
  bool isParameter(Value v) override { return definedByParam(v); }
  void positionsOf(Value indices, Value source, int64_t axis) override {
    positions[indices.getAsOpaquePointer()] = {source, axis};
  }
  bool takePositions(OpOperand &indices, Value out, int64_t outAxis) override {
    for (Value v = indices.get(); v; v = viewSourceOf(v)) {
      auto it = positions.find(v.getAsOpaquePointer());
      if (it == positions.end())
        continue;
      tie(it->second.value, it->second.axis, out, outAxis, false);
      return true;
    }
    return false;
  }

  /// Carries head indexing across the op's ties: when axis a of x is indexed
  /// by axis c of x, and the op ties c to axis e of y, then the axis tied to a
  /// is indexed by e.
  void endOp() {
    for (auto &[X, Y] : opTies) {
      carryIndex(X, Y);
      carryIndex(Y, X);
    }
    opTies.clear();
    opFactors.clear();
  }

private:
  void carryIndex(const AxisRef &from, const AxisRef &to) {
    const AxisInfo &F = table.axes[table.get(from.value, from.axis)];
    if (F.indexAxis < 0 || F.indexConflict)
      return;
    int64_t c = F.indexAxis;
    for (int64_t e = 0, r = rankOfValue(to.value); e < r; ++e)
      if (e != to.axis && connectedByTies(opTies, {from.value, c}, {to.value, e})) {
        setIndex(table.axes[table.get(to.value, to.axis)], e);
        return;
      }
    // Repeated heads (grouped-query attention): the op merges the head axis
    // with a copy axis; the merged axis indexes the other side.
    for (auto &[whole, outer] : opFactors)
      if (outer.value == from.value && outer.axis == c && whole.value == to.value &&
          whole.axis != to.axis) {
        setIndex(table.axes[table.get(to.value, to.axis)], whole.axis);
        return;
      }
  }
  void setIndex(AxisInfo &A, int64_t idx) {
    if (A.indexAxis < 0) {
      A.indexAxis = idx;
      changed = true;
    } else if (A.indexAxis != idx && !A.indexConflict) {
      A.indexConflict = true;
      changed = true;
    }
  }
  /// Adds a run of blocks and refines the axis' runs until any two that
  /// overlap nest: runs of one block size, aligned, are split at each other's
  /// ends; a run of smaller blocks is split where a run of larger blocks has a
  /// block boundary (query heads inside key/value groups). Splitting a run
  /// keeps a subgroup of its permutations, so refining is always sound.
  /// Misaligned overlaps conflict: the axis then has no blocks.
  void addRun(AxisInfo &A, const Run &r) {
    if (A.runConflict || r.count < 1 || r.size < 1)
      return;
    for (const Run &o : A.runs)
      if (o == r)
        return;
    std::vector<Run> runs = A.runs;
    runs.push_back(r);
    if (!refineRuns(runs)) {
      A.runConflict = true;
      changed = true;
      return;
    }
    if (runs != A.runs) {
      A.runs = runs;
      changed = true;
    }
  }
  static bool refineRuns(std::vector<Run> &runs) {
    auto overlap = [](const Run &a, const Run &b) {
      return a.start < b.end() && b.start < a.end();
    };
    // Pieces of [bounds.front(), bounds.back()) between consecutive bounds.
    auto pieces = [](std::set<int64_t> bounds, int64_t size, std::vector<Run> &out) {
      std::vector<int64_t> bv(bounds.begin(), bounds.end());
      for (size_t k = 0; k + 1 < bv.size(); ++k)
        out.push_back({bv[k], (bv[k + 1] - bv[k]) / size, size});
    };
    for (int guard = 0; guard < 100000; ++guard) {
      bool again = false;
      for (size_t i = 0; i < runs.size() && !again; ++i)
        for (size_t j = 0; j < runs.size() && !again; ++j) {
          if (i == j || !overlap(runs[i], runs[j]))
            continue;
          Run a = runs[i], b = runs[j];
          std::vector<Run> add;
          if (a.size == b.size) {
            if ((a.start - b.start) % a.size != 0)
              return false;
            pieces({a.start, a.end(), b.start, b.end()}, a.size, add);
            runs.erase(runs.begin() + std::max(i, j));
            runs.erase(runs.begin() + std::min(i, j));
          } else if (a.size < b.size) {
            std::set<int64_t> bounds{a.start, a.end()};
            for (int64_t k = 0; k <= b.count; ++k) {
              int64_t x = b.start + k * b.size;
              if (x > a.start && x < a.end()) {
                if ((x - a.start) % a.size != 0)
                  return false;
                bounds.insert(x);
              }
            }
            if (bounds.size() == 2)
              continue;
            pieces(bounds, a.size, add);
            runs.erase(runs.begin() + i);
          } else {
            continue;
          }
          for (const Run &n : add)
            if (std::find(runs.begin(), runs.end(), n) == runs.end())
              runs.push_back(n);
          again = true;
        }
      if (!again) {
        std::sort(runs.begin(), runs.end());
        return true;
      }
    }
    return false;
  }
  void add(std::set<int64_t> &s, int64_t c) { changed |= s.insert(c).second; }
  void merge(std::set<int64_t> &dst, const std::set<int64_t> &src) {
    for (int64_t c : src)
      add(dst, c);
  }
  AxisTable &table;
  const InnerHeadSet &innerHeads;
  std::map<const void *, AxisRef> positions; // indices -> their source axis
  std::vector<std::pair<AxisRef, AxisRef>> opTies;
  std::vector<std::pair<AxisRef, AxisRef>> opFactors; // (whole, head axis)
};

//===----------------------------------------------------------------------===//
// Phase 2: spaces.
//===----------------------------------------------------------------------===//

struct Node {
  int axisIdx;
  int64_t start, len;
  int head = -1;  // head index for indexed axes
  int run = -1;   // >= 0: the block node of that run
};

/// Union-find with a Z/2 parity (dual or not) to the parent.
class ParityUnionFind {
public:
  void grow(size_t n) {
    size_t old = parent.size();
    parent.resize(n);
    parity.resize(n, 0);
    for (size_t i = old; i < n; ++i)
      parent[i] = int(i);
  }
  std::pair<int, int> find(int x) {
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
  /// Returns false when x and y are already joined with the other parity.
  bool unite(int x, int y, int rel) {
    auto [rx, px] = find(x);
    auto [ry, py] = find(y);
    if (rx == ry)
      return (px ^ py) == rel;
    parent[rx] = ry;
    parity[rx] = px ^ py ^ rel;
    return true;
  }
  std::vector<int> parent, parity;
};

struct Restriction {
  int node;
  unsigned bits;
  std::string why;
  // A pair restriction (restrictToPairs): bits within kPairs, the channel
  // pairs relative to the node's start.
  bool hasPairs = false;
  std::vector<std::pair<int64_t, int64_t>> pairs;
};

struct Relation {
  std::vector<std::pair<int, int64_t>> terms; // node, coefficient
};

/// Generators that a block (head) permutation keeps when the coordinates of
/// the blocked axis are restricted to `bits`.
unsigned blockBits(unsigned bits) { return (bits & kPerm) ? kAll : kNone; }

class SpaceBuilderImpl : public SpaceBuilder {
public:
  SpaceBuilderImpl(AxisTable &t, std::vector<Node> &nodes, const InnerHeadSet &innerHeads)
      : table(t), nodes(nodes), innerHeads(innerHeads) {}

  /// The laid-out axis (nodes created on first use).
  AxisInfo &axisOf(Value v, int64_t a) {
    int idx = table.get(v, a);
    ensureNodes(idx);
    return table.axes[idx];
  }
  int node(const AxisInfo &A, int head, int piece) const {
    return A.firstNode + (A.numHeads > 1 ? head : 0) * A.numPieces + piece;
  }
  /// Every node of an axis: all heads, all pieces.
  std::vector<int> allNodes(Value v, int64_t a) {
    AxisInfo &A = axisOf(v, a);
    std::vector<int> out;
    for (int i = 0; i < A.numHeads * A.numPieces; ++i)
      out.push_back(A.firstNode + i);
    return out;
  }
  std::vector<int> blockNodes(Value v, int64_t a) {
    AxisInfo &A = axisOf(v, a);
    std::vector<int> out;
    if (A.firstBlock >= 0)
      for (size_t r = 0; r < A.runs.size(); ++r)
        out.push_back(A.firstBlock + int(r));
    return out;
  }

  void ensureNodes(int idx) {
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
      for (size_t r = 0; r < A.runs.size(); ++r)
        nodes.push_back({idx, A.runs[r].start, A.runs[r].count * A.runs[r].size, -1, int(r)});
    }
    uf.grow(nodes.size());
    if (A.size < 0)
      restrictions.push_back({A.firstNode, kNone, "dynamic dimension"});
  }

  bool samePieces(const AxisInfo &X, const AxisInfo &Y) {
    if (X.numPieces != Y.numPieces)
      return false;
    for (int i = 0; i < X.numPieces; ++i)
      if (nodes[X.firstNode + i].len != nodes[Y.firstNode + i].len)
        return false;
    return true;
  }

  void fixAxis(Value v, int64_t a, StringRef why) {
    for (int n : allNodes(v, a))
      restrictions.push_back({n, kNone, why.str()});
    for (int n : blockNodes(v, a))
      restrictions.push_back({n, kNone, why.str()});
  }

  // Ties and slices are resolved at the end of the op, when it is known
  // whether the op also ties the head axes that index them.
  void tie(Value x, int64_t a, Value y, int64_t b, bool dual) override {
    touch(x, a);
    touch(y, b);
    pending.push_back({{x, a}, {y, b}, dual, -1, 0});
  }
  void slice(Value in, int64_t axis, int64_t begin, int64_t count, Value out,
             int64_t outAxis) override {
    touch(in, axis);
    touch(out, outAxis);
    touchFlows(in, axis);
    touchFlows(out, outAxis);
    pending.push_back({{in, axis}, {out, outAxis}, false, begin, count});
  }

  /// Axes the current op's rule has said something about, and those it gave a
  /// scale or a sign relation.
  std::set<std::pair<const void *, int64_t>> touched, scaleTouched, signTouched;
  void touch(Value v, int64_t a) { touched.insert({v.getAsOpaquePointer(), a}); }
  void touchFlows(Value v, int64_t a) {
    scaleTouched.insert({v.getAsOpaquePointer(), a});
    signTouched.insert({v.getAsOpaquePointer(), a});
  }

  /// Pins the scale and sign exponents of every node of an axis to 0: nothing
  /// is known about how a rescaling or a sign flip passes there.
  void pinAxis(Value v, int64_t a, bool scale = true, bool sign = true) {
    for (int n : allNodes(v, a)) {
      if (scale)
        scaleRels.push_back({{{n, 1}}});
      if (sign)
        signRels.push_back({{{n, 1}}});
    }
  }

  /// An op's rule must account for every axis of its operands and results
  /// that can carry a symmetry; an axis it did not mention is fixed rather
  /// than left free (a rule that forgets an axis must not create a claim).
  /// Likewise for the flows: an axis the rule gave no scale (sign) relation
  /// has its exponent pinned, so a rescaling never passes through an op
  /// without the rule saying how.
  void fixUntouched(Operation *op) {
    auto check = [&](Value v) {
      for (int64_t a = 0, r = rankOfValue(v); a < r; ++a) {
        auto key = std::make_pair(v.getAsOpaquePointer(), a);
        if (!touched.count(key))
          for (int n : allNodes(v, a))
            restrictions.push_back({n, kNone, "axis not covered by the rule of " +
                                                  op->getName().getStringRef().str()});
        pinAxis(v, a, !scaleTouched.count(key), !signTouched.count(key));
      }
    };
    if (!isa<ShapeOp, SizeOp>(op))
      for (Value v : op->getOperands())
        check(v);
    for (Value v : op->getResults())
      check(v);
    touched.clear();
    scaleTouched.clear();
    signTouched.clear();
  }

  void restrict(Value x, int64_t a, unsigned bits, StringRef why) override {
    touch(x, a);
    for (int n : allNodes(x, a))
      restrictions.push_back({n, bits, why.str()});
    for (int n : blockNodes(x, a))
      restrictions.push_back({n, blockBits(bits), why.str()});
    if (bits == kNone && currentOp)
      fixedByOp.insert(currentOp);
  }

  void fixAll(Value v, StringRef why) override {
    if (currentOp) {
      auto &rec = fixAllBy[currentOp];
      if (rec.second++ == 0)
        rec.first = why.str();
    }
    // A barrier: fixed, and no rescaling or sign flip passes through it.
    for (int64_t a = 0, r = rankOfValue(v); a < r; ++a) {
      restrict(v, a, kNone, why);
      pinAxis(v, a);
      touchFlows(v, a);
    }
    if (currentOp)
      fixedAllByOp.insert(currentOp);
  }

  /// A pair restriction on every node of the axis, with the pairs that lie
  /// inside the node's piece; a piece that a pair straddles is fixed.
  void restrictToPairs(Value x, int64_t a, ArrayRef<std::pair<int64_t, int64_t>> pairs,
                       unsigned bits, StringRef why) override {
    touch(x, a);
    AxisInfo &A = axisOf(x, a);
    int first = A.firstNode, count = A.numHeads * A.numPieces;
    for (int n = first; n < first + count; ++n) {
      const Node nd = nodes[n];
      Restriction r{n, bits & kPairs, why.str()};
      r.hasPairs = true;
      bool straddles = nd.len < 0;
      for (auto [p, q] : pairs) {
        bool pin = p >= nd.start && p < nd.start + nd.len;
        bool qin = q >= nd.start && q < nd.start + nd.len;
        if (pin != qin)
          straddles = true;
        else if (pin)
          r.pairs.push_back({std::min(p, q) - nd.start, std::max(p, q) - nd.start});
      }
      if (straddles) {
        r = Restriction{n, kNone, why.str() + " (a pair crosses a piece boundary)"};
      }
      restrictions.push_back(r);
    }
    for (int n : blockNodes(x, a))
      restrictions.push_back({n, kNone, why.str()});
  }

  void relation(std::vector<Relation> &out, ArrayRef<AxisTerm> terms, int mod) {
    if (terms.empty())
      return;
    for (const AxisTerm &t : terms) {
      touch(t.value, t.axis);
      (mod == 2 ? signTouched : scaleTouched).insert({t.value.getAsOpaquePointer(), t.axis});
    }
    std::vector<AxisInfo *> axes;
    for (const AxisTerm &t : terms)
      axes.push_back(&axisOf(t.value, t.axis));
    // axisOf may have grown the table: take the pointers again.
    axes.clear();
    for (const AxisTerm &t : terms)
      axes.push_back(&table.axes[table.get(t.value, t.axis)]);
    bool aligned = true;
    int heads = 1;
    for (AxisInfo *A : axes) {
      aligned &= samePieces(*A, *axes[0]);
      if (A->numHeads > 1) {
        if (heads > 1 && heads != A->numHeads)
          aligned = false;
        heads = A->numHeads;
      }
    }
    if (!aligned) {
      for (AxisInfo *A : axes)
        for (int i = 0; i < A->numHeads * A->numPieces; ++i)
          out.push_back({{{A->firstNode + i, 1}}});
      return;
    }
    for (int h = 0; h < heads; ++h)
      for (int i = 0; i < axes[0]->numPieces; ++i) {
        Relation rel;
        for (size_t k = 0; k < terms.size(); ++k) {
          int64_t c = terms[k].coeff;
          if (mod == 2)
            c = ((c % 2) + 2) % 2;
          if (c != 0)
            rel.terms.push_back({node(*axes[k], h, i), c});
        }
        if (!rel.terms.empty())
          out.push_back(rel);
      }
  }

  void scaleRelation(ArrayRef<AxisTerm> terms) override { relation(scaleRels, terms, 0); }
  void approxScaleRelation(ArrayRef<AxisTerm> terms, StringRef why, bool uniform) override {
    relation(approxScaleRels, terms, 0);
    approxWhy.resize(approxScaleRels.size(), why.str());
    approxUniform.resize(approxScaleRels.size(), uniform);
    approxCall.resize(approxScaleRels.size(), approxCalls++);
  }
  void signRelation(ArrayRef<AxisTerm> terms) override { relation(signRels, terms, 2); }
  void absorbs(Value x, int64_t a, bool scale, bool sign) override {
    touch(x, a);
    if (scale)
      scaleTouched.insert({x.getAsOpaquePointer(), a});
    if (sign)
      signTouched.insert({x.getAsOpaquePointer(), a});
  }

  void factor(Value whole, int64_t axis, Value parts, int64_t outer,
              int64_t inner, int64_t outerHeads) override {
    touch(whole, axis);
    touch(parts, outer);
    touch(parts, inner);
    // The whole axis' scale and sign are the inner axis' (per head); the
    // outer axis carries none (left to the flow guard: pinned).
    touchFlows(whole, axis);
    touchFlows(parts, inner);
    axisOf(whole, axis);
    axisOf(parts, outer);
    axisOf(parts, inner);
    AxisInfo &W = table.axes[table.get(whole, axis)];
    AxisInfo &O = table.axes[table.get(parts, outer)];
    AxisInfo &I = table.axes[table.get(parts, inner)];
    // The outer axis is (r, H) with the head digit inner: r = 1 for a plain
    // head split, r > 1 when another axis (a batch axis) is merged with the
    // heads; its coordinate q*H + k is head k for every q.
    int64_t H = outerHeads > 0 ? outerHeads : O.size, d = I.size;
    int64_t r = H > 0 && O.size > 0 && O.size % H == 0 ? O.size / H : 0;
    auto giveUp = [&](StringRef why) {
      fixAxis(whole, axis, why);
      fixAxis(parts, outer, why);
      fixAxis(parts, inner, why);
    };
    if (H <= 0 || d <= 0 || r <= 0 || W.size != H * d || W.numHeads > 1 ||
        O.numHeads > 1) {
      giveUp("reshape of heads not followed");
      return;
    }
    // The head axis is the block structure of the whole axis: one run per
    // piece of the head axis (heads permute within a piece).
    std::vector<int> pieceBlocks;
    if (W.firstBlock >= 0 && (r == 1 || O.numPieces == 1))
      for (int p = 0; p < O.numPieces; ++p) {
        const Node &op = nodes[O.firstNode + p];
        Run want{op.start * d, r == 1 ? op.len : H, d};
        for (size_t q = 0; q < W.runs.size(); ++q)
          if (W.runs[q] == want)
            pieceBlocks.push_back(W.firstBlock + int(q));
      }
    bool blocksResolved = int(pieceBlocks.size()) == O.numPieces;
    if (r == 1) {
      if (innerHeads.count(keyOf(parts, inner)))
        factors.push_back({{whole, axis}, {parts, inner}, H, true});
      else
        factors.push_back({{whole, axis}, {parts, outer}, d, false});
    }
    // Groups of heads on the head axis (query heads grouped under shared
    // key/value heads) move groups of blocks of the whole axis; other block
    // structure on the head axis or inside a head is fixed.
    bool headInner = innerHeads.count(keyOf(parts, inner));
    for (size_t g = 0; O.firstBlock >= 0 && g < O.runs.size(); ++g) {
      const Run &og = O.runs[g];
      int target = -1;
      if (r == 1 && !headInner && W.firstBlock >= 0)
        for (size_t q = 0; q < W.runs.size(); ++q)
          if (W.runs[q] == Run{og.start * d, og.count, og.size * d})
            target = W.firstBlock + int(q);
      if (target >= 0)
        uf.unite(O.firstBlock + int(g), target, 0);
      else
        restrictions.push_back({O.firstBlock + int(g), kNone, "nested head blocks not followed"});
    }
    for (int n : blockNodes(parts, inner))
      restrictions.push_back({n, kNone, "nested head blocks not followed"});
    if (blocksResolved) {
      for (int p = 0; p < O.numPieces; ++p)
        uf.unite(pieceBlocks[p], O.firstNode + p, 0);
    } else {
      // Head blocks that do not map onto the head axis' pieces: no head
      // permutation here, but each head keeps its own channels.
      for (int n : blockNodes(whole, axis))
        restrictions.push_back({n, kNone, "head blocks not resolved"});
      for (int n : allNodes(parts, outer))
        restrictions.push_back({n, kNone, "head blocks not resolved"});
    }
    // Coordinate k*d + c of the whole axis is channel c of head k (of the
    // outer coordinate q*H + k, for every q).
    bool perHead = I.numHeads == O.size && I.indexAxis == outer;
    for (int64_t q = 0; q < (perHead ? r : 1); ++q)
      for (int64_t k = 0; k < H; ++k)
        for (int j = 0; j < I.numPieces; ++j) {
          int inNode = node(I, perHead ? int(q * H + k) : 0, j);
          const Node &in = nodes[inNode];
          int match = -1;
          for (int p = 0; p < W.numPieces; ++p)
            if (nodes[W.firstNode + p].start == k * d + in.start &&
                nodes[W.firstNode + p].len == in.len)
              match = W.firstNode + p;
          if (match < 0) {
            giveUp("head pieces not resolved");
            return;
          }
          uf.unite(match, inNode, 0);
          scaleRels.push_back({{{match, 1}, {inNode, -1}}});
          signRels.push_back({{{match, 1}, {inNode, 1}}});
        }
  }

  void softmaxOver(Value logits, int64_t axis) override {
    softmaxes.push_back({logits, axis});
  }
  int64_t dimSize(Value v, int64_t a) override {
    return table.axes[table.get(v, a)].size;
  }
  bool isParameter(Value v) override { return definedByParam(v); }

  void positionsOf(Value indices, Value source, int64_t axis) override {
    addPositions({indices, {source, axis}, currentOp});
  }

  bool takePositions(OpOperand &indices, Value out, int64_t outAxis) override {
    // Through views of positions: each view's result becomes positions of the
    // same source (its other uses are checked too) and the view's use of its
    // operand is accepted.
    std::vector<Value> chain;
    auto it = positionIndex.end();
    for (Value v = indices.get(); v; v = viewSourceOf(v)) {
      it = positionIndex.find(v.getAsOpaquePointer());
      if (it != positionIndex.end())
        break;
      chain.push_back(v);
    }
    if (it == positionIndex.end())
      return false;
    const AxisRef src = positions[it->second].source;
    Operation *maker = positions[it->second].op;
    for (Value v : chain) {
      addPositions({v, src, maker});
      acceptedUses.insert({v.getDefiningOp(), 0});
    }
    acceptedUses.insert({indices.getOwner(), indices.getOperandNumber()});
    restrict(out, outAxis, kPerm, "indexed by positions");
    scaleRelation({{out, outAxis, 1}});
    signRelation({{out, outAxis, 1}});
    // A permutation that differs per head would relabel the positions per
    // head: not followed.
    if (axisOf(src.value, src.axis).numHeads > 1 || axisOf(out, outAxis).numHeads > 1) {
      fixAxis(src.value, src.axis, "positions along a per-head axis");
      fixAxis(out, outAxis, "positions along a per-head axis");
      return true;
    }
    tie(src.value, src.axis, out, outAxis, false);
    return true;
  }

  /// Positions may only reach consumers that accepted them (takePositions);
  /// any other use (arithmetic, a model output, an op without a rule, a
  /// consumer that did not recognise them) fixes their source axis.
  void checkPositionUses() {
    for (const Positions &rec : positions)
      for (OpOperand &use : rec.indices.getUses()) {
        if (acceptedUses.count({use.getOwner(), use.getOperandNumber()}))
          continue;
        std::string by = isa<func::ReturnOp>(use.getOwner())
                             ? std::string("a model output")
                             : use.getOwner()->getName().stripDialect().str();
        if (auto g = dyn_cast<GenericOp>(use.getOwner()))
          by = g.getOpType().str();
        std::string what = rec.op ? rec.op->getName().stripDialect().str() : "op";
        fixAxis(rec.source.value, rec.source.axis,
                what + " positions used by " + by);
      }
  }

  void couple(Value v, int64_t axis) override {
    touch(v, axis);
    // Every axis of v indexed by `axis` shares one space across heads.
    for (int64_t k = 0, r = rankOfValue(v); k < r; ++k) {
      if (k == axis)
        continue;
      AxisInfo &A = axisOf(v, k);
      if (A.numHeads > 1 && A.indexAxis == axis)
        for (int h = 1; h < A.numHeads; ++h)
          for (int i = 0; i < A.numPieces; ++i)
            uf.unite(node(A, h, i), node(A, 0, i), 0);
    }
  }

  /// Resolves the op's ties and slices.
  void endOp() {
    for (const Pending &p : pending)
      resolve(p);
    pending.clear();
    factors.clear();
  }

private:
  struct Pending {
    AxisRef x, y;
    bool dual;
    int64_t begin, count; // begin >= 0: y is [begin, begin+count) of x
  };
  std::vector<Pending> pending;
  struct Factor {
    AxisRef whole, head; // the head axis: the outer part, or the inner one
    int64_t other;       // size of the other part
    bool headInner;
  };
  std::vector<Factor> factors;

  /// Head h of `y` is head h / ratio of `x` when the op merges x's head axis
  /// with a copy axis of size `ratio` into y's head axis (head outer), or head
  /// h % (x's heads) when the head axis is the inner part (`headInner`).
  /// 0 when not so.
  int64_t repeatRatio(const AxisInfo &X, const AxisInfo &Y, bool &headInner) {
    for (const Factor &f : factors)
      if (f.head.value == X.value && f.head.axis == X.indexAxis &&
          f.whole.value == Y.value && f.whole.axis == Y.indexAxis &&
          int64_t(X.numHeads) * f.other == Y.numHeads) {
        headInner = f.headInner;
        return f.other;
      }
    return 0;
  }

  bool opTies(AxisRef a, AxisRef b) {
    std::vector<std::pair<AxisRef, AxisRef>> ties;
    for (const Pending &p : pending)
      if (p.begin < 0)
        ties.push_back({p.x, p.y});
    return connectedByTies(ties, a, b);
  }

  void resolve(const Pending &p) {
    axisOf(p.x.value, p.x.axis);
    axisOf(p.y.value, p.y.axis);
    AxisInfo &X = table.axes[table.get(p.x.value, p.x.axis)];
    AxisInfo &Y = table.axes[table.get(p.y.value, p.y.axis)];
    int rel = p.dual ? 1 : 0;
    bool perHead = X.numHeads > 1 && X.numHeads == Y.numHeads &&
                   opTies({X.value, X.indexAxis}, {Y.value, Y.indexAxis});
    bool innerXY = false, innerYX = false;
    int64_t ratioXY = p.begin < 0 && X.numHeads > 1 ? repeatRatio(X, Y, innerXY) : 0;
    int64_t ratioYX = p.begin < 0 && Y.numHeads > 1 ? repeatRatio(Y, X, innerYX) : 0;
    if ((ratioXY || ratioYX) && samePieces(X, Y)) {
      // Repeated heads: each head of the merged side is one head of the
      // other side (a copy, or the same head for another batch entry).
      AxisInfo &Small = ratioXY ? X : Y, &Big = ratioXY ? Y : X;
      int64_t ratio = ratioXY ? ratioXY : ratioYX;
      bool headInner = ratioXY ? innerXY : innerYX;
      for (int h = 0; h < Big.numHeads; ++h)
        for (int i = 0; i < Big.numPieces; ++i)
          uf.unite(node(Big, h, i),
                   node(Small, headInner ? h % Small.numHeads : int(h / ratio), i), rel);
      return;
    }
    // Without a shared head index, every head of one side meets every head
    // of the other: all heads share one space (sound, less precise).
    auto mergeHeads = [&](AxisInfo &A) {
      for (int h = 1; h < A.numHeads; ++h)
        for (int i = 0; i < A.numPieces; ++i)
          uf.unite(node(A, h, i), node(A, 0, i), 0);
    };
    if (!perHead) {
      mergeHeads(X);
      mergeHeads(Y);
    }
    int heads = perHead ? X.numHeads : 1;
    if (p.begin < 0) {
      if (!samePieces(X, Y)) {
        fixAxis(p.x.value, p.x.axis, "tied to an axis of another size");
        fixAxis(p.y.value, p.y.axis, "tied to an axis of another size");
        return;
      }
      for (int h = 0; h < heads; ++h)
        for (int i = 0; i < X.numPieces; ++i)
          if (!uf.unite(node(X, h, i), node(Y, h, i), rel))
            restrictions.push_back({node(X, h, i), kPerm | kSign | kScale,
                                    "space is tied to its own dual"});
      // Blocks move together.
      if (X.runs == Y.runs && X.firstBlock >= 0 && Y.firstBlock >= 0) {
        for (size_t r = 0; r < X.runs.size(); ++r)
          uf.unite(X.firstBlock + int(r), Y.firstBlock + int(r), 0);
      } else if (X.firstBlock >= 0 || Y.firstBlock >= 0) {
        for (int n : blockNodes(p.x.value, p.x.axis))
          restrictions.push_back({n, kNone, "head blocks do not line up"});
        for (int n : blockNodes(p.y.value, p.y.axis))
          restrictions.push_back({n, kNone, "head blocks do not line up"});
      }
      return;
    }
    // A slice: y's pieces are x's pieces in [begin, begin + count).
    for (int h = 0; h < heads; ++h)
      for (int j = 0; j < Y.numPieces; ++j) {
        const Node &o = nodes[node(Y, h, j)];
        int match = -1;
        for (int i = 0; i < X.numPieces; ++i)
          if (nodes[node(X, h, i)].start == p.begin + o.start &&
              nodes[node(X, h, i)].len == o.len)
            match = node(X, h, i);
        if (match < 0 || o.len < 0) {
          fixAxis(p.x.value, p.x.axis, "slice boundaries not resolved");
          fixAxis(p.y.value, p.y.axis, "slice boundaries not resolved");
          return;
        }
        uf.unite(match, node(Y, h, j), 0);
        scaleRels.push_back({{{match, 1}, {node(Y, h, j), -1}}});
        signRels.push_back({{{match, 1}, {node(Y, h, j), 1}}});
      }
    // Blocks inside the slice move with it; blocks it cuts through are fixed.
    for (size_t r = 0; r < X.runs.size() && X.firstBlock >= 0; ++r) {
      const Run &run = X.runs[r];
      bool inside = run.start >= p.begin && run.end() <= p.begin + p.count;
      bool disjoint = run.end() <= p.begin || run.start >= p.begin + p.count;
      if (disjoint)
        continue;
      int target = -1;
      if (inside && Y.firstBlock >= 0)
        for (size_t q = 0; q < Y.runs.size(); ++q)
          if (Y.runs[q] == Run{run.start - p.begin, run.count, run.size})
            target = Y.firstBlock + int(q);
      if (target >= 0)
        uf.unite(X.firstBlock + int(r), target, 0);
      else
        restrictions.push_back({X.firstBlock + int(r), kNone, "a slice cuts through head blocks"});
    }
  }

public:
  AxisTable &table;
  std::vector<Node> &nodes;
  const InnerHeadSet &innerHeads;
  ParityUnionFind uf;
  std::vector<Restriction> restrictions;
  std::vector<Relation> scaleRels, signRels;
  // Scale relations that hold up to a normalization's epsilon, and why.
  std::vector<Relation> approxScaleRels;
  std::vector<std::string> approxWhy;
  std::vector<bool> approxUniform; // absorbs only a scale uniform along the axis
  std::vector<int> approxCall;      // the approxScaleRelation call of each relation
  int approxCalls = 0;
  std::vector<std::pair<Value, int64_t>> softmaxes;
  Operation *currentOp = nullptr;
  std::set<Operation *> fixedByOp;
  std::set<Operation *> fixedAllByOp; // ops that fixed a whole value (barriers)
  // Per op: why it first fixed a whole value, and how many it fixed. An op
  // that fixed all its operands and results is a barrier.
  std::map<Operation *, std::pair<std::string, unsigned>> fixAllBy;
  struct Positions {
    Value indices;
    AxisRef source;
    Operation *op;
  };
  std::vector<Positions> positions; // in the order they were recorded
  std::map<const void *, size_t> positionIndex;
  std::set<std::pair<Operation *, unsigned>> acceptedUses;
  void addPositions(const Positions &p) {
    if (positionIndex.insert({p.indices.getAsOpaquePointer(), positions.size()}).second)
      positions.push_back(p);
  }
};

//===----------------------------------------------------------------------===//
// Kernels of the flows.
//===----------------------------------------------------------------------===//

/// Null space of a sparse integer matrix over the rationals (doubles; the
/// entries are small integers) or over Z/2: sparse Gauss-Jordan elimination in
/// column order, so the pivots are the leftmost independent columns and the
/// result is the reduced row echelon form's basis (unique: the same claims
/// whatever order the relations came in). The flow systems are chains (one
/// relation per op), so rows stay short. Returns one basis vector per free
/// column, that column set to 1.
std::vector<std::map<int, double>>
sparseNullSpace(const std::vector<std::map<int, double>> &input, int cols, bool mod2) {
  auto reduce = [&](double x) {
    if (!mod2)
      return x;
    int64_t v = int64_t(std::llround(x)) % 2;
    return double(v < 0 ? v + 2 : v);
  };
  auto isZero = [&](double x) { return mod2 ? reduce(x) == 0 : std::fabs(x) < 1e-9; };
  std::vector<std::map<int, double>> rows;
  std::map<int, std::set<int>> rowsWith; // column -> rows holding it
  for (const auto &in : input) {
    std::map<int, double> r;
    for (auto [v, c] : in)
      if (!isZero(c))
        r[v] = reduce(c);
    for (auto &[v, c] : r)
      rowsWith[v].insert(int(rows.size()));
    rows.push_back(std::move(r));
  }
  std::vector<bool> used(rows.size(), false);
  std::map<int, int> pivotRow; // column -> row
  for (int c = 0; c < cols; ++c) {
    auto it = rowsWith.find(c);
    if (it == rowsWith.end())
      continue;
    int p = -1;
    for (int r : it->second)
      if (!used[size_t(r)]) { p = r; break; }
    if (p < 0)
      continue;
    used[size_t(p)] = true;
    pivotRow[c] = p;
    auto &pr = rows[size_t(p)];
    if (!mod2) {
      double inv = 1.0 / pr[c];
      for (auto &[v, x] : pr) x *= inv;
    }
    std::vector<int> others(it->second.begin(), it->second.end());
    for (int r : others) {
      if (r == p)
        continue;
      auto &row = rows[size_t(r)];
      double f = row[c];
      for (auto [v, x] : pr) {
        double y = reduce((row.count(v) ? row[v] : 0.0) - f * x);
        if (isZero(y)) {
          row.erase(v);
          rowsWith[v].erase(r);
        } else {
          if (!row.count(v))
            rowsWith[v].insert(r);
          row[v] = y;
        }
      }
    }
  }
  std::vector<std::map<int, double>> basis;
  for (int f = 0; f < cols; ++f) {
    if (pivotRow.count(f))
      continue;
    std::map<int, double> x{{f, 1.0}};
    // In reduced form a pivot row holds its pivot and free columns only.
    auto it = rowsWith.find(f);
    if (it != rowsWith.end())
      for (int r : it->second) {
        const auto &row = rows[size_t(r)];
        for (auto [v, c] : row)
          if (pivotRow.count(v) && pivotRow[v] == r) {
            double val = reduce(-row.at(f) / (mod2 ? 1.0 : c));
            if (!isZero(val))
              x[v] = val;
          }
      }
    basis.push_back(std::move(x));
  }
  return basis;
}

/// Solves one flow (scale over Q, sign over Z/2): returns, for each kernel
/// basis vector, the exponent of every node it touches.
std::vector<std::map<int, int64_t>> solveFlow(const std::vector<Relation> &rels,
                                              size_t numNodes, bool mod2) {
  // Two-term relations with unit coefficients are equalities up to sign:
  // e_x = w * e_y. Fold them with a weighted union-find.
  std::vector<int> parent(numNodes);
  std::vector<int> weight(numNodes, 1); // e_node = weight * e_parent
  std::vector<bool> pinned(numNodes, false);
  for (size_t i = 0; i < numNodes; ++i) parent[i] = int(i);
  std::function<std::pair<int, int>(int)> find = [&](int x) -> std::pair<int, int> {
    if (parent[x] == x)
      return {x, 1};
    auto [r, w] = find(parent[x]);
    parent[x] = r;
    weight[x] *= w;
    return {r, weight[x]};
  };
  std::vector<const Relation *> rest;
  for (const Relation &rel : rels) {
    if (rel.terms.size() == 1) {
      pinned[find(rel.terms[0].first).first] = true;
      continue;
    }
    if (rel.terms.size() == 2 && std::llabs(rel.terms[0].second) == std::llabs(rel.terms[1].second)) {
      // a e_x + b e_y = 0 -> e_x = -(b/a) e_y
      int w = mod2 ? 1 : -int(rel.terms[1].second / rel.terms[0].second);
      auto [rx, wx] = find(rel.terms[0].first);
      auto [ry, wy] = find(rel.terms[1].first);
      if (rx == ry) {
        // wx e_r = w wy e_r: a contradiction forces e_r = 0.
        if (!mod2 && wx != w * wy)
          pinned[rx] = true;
        continue;
      }
      parent[rx] = ry;
      weight[rx] = wx * w * wy; // e_rx = (1/wx) e_x = (w/wx) e_y = (w wy / wx) e_ry
      if (pinned[rx]) pinned[ry] = true;
      continue;
    }
    rest.push_back(&rel);
  }
  // Variables: unpinned roots. Components linked by the remaining relations.
  std::map<int, int> var;
  std::vector<int> roots;
  for (size_t i = 0; i < numNodes; ++i) {
    auto [r, w] = find(int(i));
    (void)w;
    if (!pinned[r] && !var.count(r)) {
      var[r] = int(roots.size());
      roots.push_back(r);
    }
  }
  // Component of each variable through the multi-term relations.
  std::vector<int> comp(roots.size());
  for (size_t i = 0; i < roots.size(); ++i) comp[i] = int(i);
  std::function<int(int)> cfind = [&](int x) { return comp[x] == x ? x : comp[x] = cfind(comp[x]); };
  std::vector<std::vector<std::pair<int, double>>> rows;
  for (const Relation *rel : rest) {
    std::map<int, double> row;
    for (auto [node, c] : rel->terms) {
      auto [r, w] = find(node);
      if (pinned[r]) continue;
      row[var[r]] += double(c * w);
    }
    std::vector<std::pair<int, double>> entries;
    for (auto [v, c] : row)
      if (mod2 ? (int64_t(std::llround(c)) % 2 != 0) : std::fabs(c) > 1e-12)
        entries.push_back({v, c});
    for (size_t k = 1; k < entries.size(); ++k)
      comp[cfind(entries[k].first)] = cfind(entries[0].first);
    if (!entries.empty())
      rows.push_back(entries);
  }
  std::map<int, std::vector<int>> byComp;
  for (size_t i = 0; i < roots.size(); ++i)
    byComp[cfind(int(i))].push_back(int(i));
  std::map<int, std::vector<size_t>> rowsByComp;
  for (size_t k = 0; k < rows.size(); ++k)
    rowsByComp[cfind(rows[k][0].first)].push_back(k);
  // Nodes under each root.
  std::map<int, std::vector<std::pair<int, int>>> under;
  for (size_t i = 0; i < numNodes; ++i) {
    auto [r, w] = find(int(i));
    if (!pinned[r])
      under[r].push_back({int(i), w});
  }
  std::vector<std::map<int, int64_t>> out;
  for (auto &[c, vars] : byComp) {
    std::map<int, int> local;
    for (size_t i = 0; i < vars.size(); ++i) local[vars[i]] = int(i);
    std::vector<std::map<int, double>> m;
    for (size_t k : rowsByComp[c]) {
      std::map<int, double> row;
      for (auto [v, coef] : rows[k]) row[local[v]] = coef;
      m.push_back(std::move(row));
    }
    for (auto &vec : sparseNullSpace(m, int(vars.size()), mod2)) {
      std::map<int, int64_t> e;
      bool ok = true;
      for (auto [i, x] : vec) {
        if (std::fabs(x) < 1e-9) continue;
        if (std::fabs(x - std::round(x)) > 1e-9) { ok = false; break; }
        for (auto [node, w] : under[roots[vars[size_t(i)]]]) {
          int64_t val = int64_t(std::llround(x)) * w;
          if (mod2) val = ((val % 2) + 2) % 2;
          if (val) e[node] = val;
        }
      }
      if (!ok) continue; // a gauge with exponents beyond +-1: not expressible, not claimed
      if (!e.empty()) out.push_back(e);
    }
  }
  return out;
}

/// "pairs i, i+4" (rotate-half), "pairs 2i, 2i+1" (interleaved) or the list.
std::string pairText(const std::vector<std::pair<int64_t, int64_t>> &pairs, int64_t n) {
  bool half = int64_t(pairs.size()) * 2 == n, adjacent = half;
  for (size_t k = 0; k < pairs.size(); ++k) {
    half &= pairs[k] == std::make_pair(int64_t(k), int64_t(k) + n / 2);
    adjacent &= pairs[k] == std::make_pair(2 * int64_t(k), 2 * int64_t(k) + 1);
  }
  if (half) return fmt::format("pairs i, i+{}", n / 2);
  if (adjacent) return "pairs 2i, 2i+1";
  std::string s = "pairs";
  for (size_t k = 0; k < pairs.size() && k < 6; ++k)
    s += fmt::format(" ({},{})", pairs[k].first, pairs[k].second);
  if (pairs.size() > 6) s += fmt::format(" ... ({} pairs)", pairs.size());
  return s;
}

std::string groupName(unsigned bits) {
  if (bits == kNone) return "1";
  if ((bits & kAll) == kAll) return "GL";
  if (bits & kRotation) return "O";
  return "S";
}

//===----------------------------------------------------------------------===//
// The analysis.
//===----------------------------------------------------------------------===//

/// What a user can do about a barrier, from its reason.
std::string barrierHint(const std::string &why) {
  auto has = [&](const char *s) { return why.find(s) != std::string::npos; };
  if (has("rank") || has("dynamic") || has("not constant") || has("unknown"))
    return "shapes unknown here: give symbolic input dims with --dim NAME=N or export "
           "with static shapes";
  if (has("without a rule"))
    return "no rule for this op type yet: nothing passes through it";
  return "its rule does not follow this form of the op";
}

} // namespace

AnalysisResult analyzeSpaces(ModuleOp module, const AnalysisOptions &opts) {
  AnalysisResult result;
  if (auto loc = dyn_cast<FileLineColLoc>(module.getLoc()))
    result.model = loc.getFilename().str();
  func::FuncOp fn;
  module.walk([&](func::FuncOp f) { if (!fn) fn = f; });
  if (!fn)
    return result;

  std::vector<Operation *> ops;
  fn.walk([&](Operation *op) { ops.push_back(op); });

  AxisTable table;
  // Phase 1: cuts. A factor (outer, inner) takes the outer part as its head
  // axis, unless the inner part turns out to index other axes (it is a head
  // axis) and the outer one does not: then the outer part is a batch axis
  // merged with the heads, and phase 1 is run again knowing it.
  InnerHeadSet innerHeads;
  for (int round = 0;; ++round) {
    table = AxisTable();
    std::vector<std::tuple<Value, int64_t, int64_t>> plainFactors;
    for (int iter = 0; iter < 32; ++iter) {
      CutBuilder cuts(table, innerHeads);
      for (Operation *op : ops)
        if (auto rule = dyn_cast<SymmetryRule>(op))
          if (!hasUnrankedTensor(op)) {
            rule.applySymmetryRule(cuts);
            cuts.endOp();
          }
      plainFactors = cuts.plainFactors;
      if (!cuts.changed)
        break;
    }
    auto indexes = [&](Value v, int64_t head, int64_t except) {
      for (int64_t k = 0, r = rankOfValue(v); k < r; ++k) {
        if (k == head || k == except)
          continue;
        const AxisInfo &A = table.axes[table.get(v, k)];
        if (A.indexAxis == head && !A.indexConflict)
          return true;
      }
      return false;
    };
    std::vector<AxisKey> found;
    for (auto &[parts, outer, inner] : plainFactors)
      if (!innerHeads.count(keyOf(parts, inner)) && indexes(parts, inner, outer) &&
          !indexes(parts, outer, inner))
        found.push_back(keyOf(parts, inner));
    // The table must be the one phase 1 computed with this very set: stop
    // without adding what the last allowed round found.
    if (found.empty() || round == 7)
      break;
    innerHeads.insert(found.begin(), found.end());
  }

  // Phase 2: spaces.
  std::vector<Node> nodes;
  SpaceBuilderImpl b(table, nodes, innerHeads);
  for (Operation *op : ops) {
    b.currentOp = op;
    b.touched.clear();
    if (isa<SymmetryRule>(op) && hasUnrankedTensor(op)) {
      for (Value v : op->getOperands()) b.fixAll(v, "shape inference gave no rank");
      for (Value v : op->getResults()) b.fixAll(v, "shape inference gave no rank");
    } else if (auto rule = dyn_cast<SymmetryRule>(op)) {
      rule.applySymmetryRule(b);
      b.endOp();
      b.fixUntouched(op);
    } else if (auto g = dyn_cast<GenericOp>(op)) {
      std::string why = "op without a rule: " + g.getOpType().str();
      for (Value v : op->getOperands()) b.fixAll(v, why);
      for (Value v : op->getResults()) b.fixAll(v, why);
    } else if (auto c = dyn_cast<ConstantOp>(op)) {
      b.fixAll(c.getResult(), "fixed constant");
    }
  }
  b.currentOp = nullptr;
  b.checkPositionUses();
  // Every op that fixed all its operands and results is a barrier, whatever
  // the cause (no rule, no rank, a form its rule does not follow); in graph
  // order, so the report is the same from run to run.
  for (Operation *op : ops) {
    auto it = b.fixAllBy.find(op);
    if (it == b.fixAllBy.end() || isa<ConstantOp, ShapeOp, SizeOp>(op) ||
        it->second.second < op->getNumOperands() + op->getNumResults())
      continue;
    std::string node, type = op->getName().stripDialect().str();
    if (auto nl = dyn_cast<NameLoc>(op->getLoc())) node = nl.getName().str();
    if (auto g = dyn_cast<GenericOp>(op)) type = g.getOpType().str();
    result.barriers.push_back({node, type, it->second.first, barrierHint(it->second.first)});
  }
  // Model inputs and outputs are fixed.
  for (BlockArgument arg : fn.getArguments())
    b.fixAll(arg, "model input");
  fn.walk([&](func::ReturnOp ret) {
    for (Value v : ret.getOperands())
      b.fixAll(v, "model output");
  });

  // Loss-dependent output symmetries.
  LossKind loss = opts.loss;
  bool endsInSoftmax = false;
  std::vector<std::pair<Value, std::string>> outputs;
  fn.walk([&](func::ReturnOp ret) {
    for (unsigned i = 0; i < ret.getNumOperands(); ++i) {
      Value v = ret.getOperand(i);
      auto name = fn.getResultAttrOfType<StringAttr>(i, "graph.name");
      outputs.push_back({v, name ? name.str() : ""});
      if (v.getDefiningOp<SoftmaxOp>() || v.getDefiningOp<LogSoftmaxOp>())
        endsInSoftmax = true;
    }
  });
  switch (loss) {
  case LossKind::Auto:
    result.lossAssumed = endsInSoftmax ? "graph ends in Softmax/LogSoftmax"
                                       : "none (outputs fixed)";
    break;
  case LossKind::CrossEntropy:
    result.lossAssumed = "cross-entropy over the last axis of each output";
    break;
  case LossKind::MSE: result.lossAssumed = "mse (outputs fixed)"; break;
  case LossKind::None: result.lossAssumed = "none (outputs fixed)"; break;
  }

  // Classes. A class that a pair restriction reached (a rotary map's
  // channels) has a pairing: the meet of two pairings keeps the common pairs
  // (channels in differing pairs get the identity, a subgroup), and its group
  // is the pair generators that every restriction allows (pairBitsOf).
  std::map<int, unsigned> mask;
  std::map<int, std::string> why;
  std::map<int, std::set<std::pair<int64_t, int64_t>>> pairing;
  auto effective = [&](int root) -> unsigned {
    if (pairing.count(root))
      return pairing[root].empty() ? kNone : (mask[root] & kPairs);
    return normalizeGroup(mask[root] & kAll);
  };
  for (size_t i = 0; i < nodes.size(); ++i)
    mask[b.uf.find(int(i)).first] = kAll | kPairs;
  for (const Restriction &r : b.restrictions) {
    int root = b.uf.find(r.node).first;
    unsigned before = effective(root);
    if (r.hasPairs) {
      std::set<std::pair<int64_t, int64_t>> p(r.pairs.begin(), r.pairs.end());
      if (!pairing.count(root)) {
        pairing[root] = p;
      } else {
        std::set<std::pair<int64_t, int64_t>> common;
        for (const auto &q : pairing[root])
          if (p.count(q)) common.insert(q);
        pairing[root] = common;
      }
      mask[root] &= r.bits & kPairs;
    } else {
      mask[root] &= r.bits | pairBitsOf(r.bits);
    }
    if (effective(root) == kNone && before != kNone)
      why[root] = r.why;
  }
  for (auto &[root, bits] : mask)
    bits = effective(root);

  // Parameter nodes per class.
  std::map<int, std::vector<int>> paramNodes;
  std::map<std::string, ParamOp> params;
  std::vector<ParamOp> paramOrder;
  fn.walk([&](ParamOp p) {
    params[p.getName().str()] = p;
    paramOrder.push_back(p);
    for (int64_t a = 0, r = rankOfValue(p.getResult()); a < r; ++a) {
      for (int n : b.allNodes(p.getResult(), a))
        paramNodes[b.uf.find(n).first].push_back(n);
      for (int n : b.blockNodes(p.getResult(), a))
        paramNodes[b.uf.find(n).first].push_back(n);
    }
  });
  // Nodes created late (params never touched) need masks too.
  for (size_t i = 0; i < nodes.size(); ++i) {
    int root = b.uf.find(int(i)).first;
    if (!mask.count(root)) mask[root] = normalizeGroup(kAll);
  }

  // The exact scale flow includes the approximate relations. Solved without
  // them, the flow has more kernel: the vectors that need a dropped relation
  // (they move a node it pinned) hold up to the normalization's epsilon.
  std::vector<Relation> exactScaleRels = b.scaleRels;
  exactScaleRels.insert(exactScaleRels.end(), b.approxScaleRels.begin(), b.approxScaleRels.end());
  auto scaleKernel = solveFlow(exactScaleRels, nodes.size(), false);
  // A vector that needs a uniform-only relaxation (LayerNorm, RMSNorm) holds
  // only for one factor shared by every coordinate: `uniformScaleKernel`.
  std::vector<std::pair<std::map<int, int64_t>, std::string>> approxScaleKernel,
      uniformScaleKernel;
  if (!b.approxScaleRels.empty()) {
    std::map<int, std::pair<std::string, bool>> relaxed;
    for (size_t k = 0; k < b.approxScaleRels.size(); ++k)
      for (auto [n, c] : b.approxScaleRels[k].terms) {
        auto &slot = relaxed[n];
        if (slot.first.empty() || b.approxUniform[k])
          slot = {b.approxWhy[k], b.approxUniform[k]};
      }
    // A uniform-only relaxation frees one factor for its whole axis: the
    // pieces of that axis (a Concat with a constant, heads) move together,
    // so a constant piece (a class token concatenated along the normalized
    // axis) pins the others.
    std::vector<Relation> relaxedRels = b.scaleRels;
    std::map<int, int> firstOfCall;
    for (size_t k = 0; k < b.approxScaleRels.size(); ++k) {
      if (!b.approxUniform[k])
        continue;
      for (auto [n, c] : b.approxScaleRels[k].terms) {
        auto [it, first] = firstOfCall.insert({b.approxCall[k], n});
        if (!first && it->second != n)
          relaxedRels.push_back({{{it->second, 1}, {n, -1}}});
      }
    }
    for (auto &vec : solveFlow(relaxedRels, nodes.size(), false)) {
      std::string why;
      bool uniform = false;
      for (auto [n, v] : vec)
        if (auto it = relaxed.find(n); it != relaxed.end()) {
          if (why.empty() || it->second.second) why = it->second.first;
          uniform = uniform || it->second.second;
        }
      if (!why.empty())
        (uniform ? uniformScaleKernel : approxScaleKernel).push_back({vec, why});
    }
  }
  auto signKernel = solveFlow(b.signRels, nodes.size(), true);

  auto memberOf = [&](int node, bool in) {
    const Node &n = nodes[node];
    const AxisInfo &A = table.axes[n.axisIdx];
    Member m;
    m.initializer = A.value.getDefiningOp<ParamOp>().getName().str();
    m.axis = A.axis;
    m.offset = n.start; // a block node's start/len span its whole run
    m.extent = n.len;
    m.in = in;
    return m;
  };

  std::map<int, std::string> spaceOfRoot;
  int claimCounter = 0;
  auto newClaimId = [&]() { return "c" + std::to_string(++claimCounter); };

  // Claims on a rotary space (a class with a pairing): the pair group its
  // bits give (rotations and/or positive scalings inside each pair, the
  // identity on channels in no pair), and from the flows, when the bits do
  // not already give them, pair sign flips or pair scalings on the members
  // of a kernel vector inside the space: a kernel vector allows any diagonal
  // sign (scale) that every other op passes; the rotary map needs the same
  // one on both channels of a pair, which is such a diagonal.
  auto emitPairClaims = [&](int root, unsigned bits,
                            const std::set<std::pair<int64_t, int64_t>> &pairSet, Space &s,
                            const std::set<int> &pset) {
    std::vector<std::pair<int64_t, int64_t>> pairs(pairSet.begin(), pairSet.end());
    std::string desc = pairText(pairs, s.size);
    auto add = [&](const std::string &rotation, bool scale, std::vector<Member> members,
                   const std::string &note) {
      Claim c;
      c.id = newClaimId();
      c.kind = "linear";
      c.group = "rope";
      c.n = s.size;
      c.space = s.id;
      c.members = std::move(members);
      c.pairs = pairs;
      c.rotation = rotation;
      c.pairScale = scale;
      c.note = note;
      s.claimIds.push_back(c.id);
      result.claims.push_back(std::move(c));
    };
    bool rot = bits & kPairRotation, scale = bits & kPairScale;
    bool flowSign = false, flowScale = false;
    if (rot || scale)
      add(rot ? "SO2" : "none", scale, s.members,
          std::string(rot && scale ? "rotation-scaling" : rot ? "rotation" : "positive scaling") +
              " of each channel pair (" + desc + ") commutes with the rotary map");
    auto inside = [&](const std::map<int, int64_t> &vec) {
      for (auto [n, v] : vec)
        if (b.uf.find(n).first != root) return false;
      return b.uf.find(vec.begin()->first).first == root;
    };
    if (!rot)
      for (auto &vec : signKernel) {
        if (vec.empty() || !inside(vec)) continue;
        std::vector<Member> members;
        for (auto [n, v] : vec)
          if (pset.count(n)) members.push_back(memberOf(n, false));
        if (members.empty()) continue;
        flowSign = true;
        add("sign", false, members, "sign flip of whole channel pairs (" + desc + ")");
      }
    if (!scale)
      for (auto &vec : scaleKernel) {
        if (vec.empty() || !inside(vec)) continue;
        bool unit = true;
        std::vector<Member> members;
        for (auto [n, v] : vec) {
          if (std::llabs(v) != 1) unit = false;
          if (pset.count(n)) members.push_back(memberOf(n, v < 0));
        }
        if (!unit || members.empty()) continue;
        flowScale = true;
        add("none", true, members, "one positive factor per channel pair (" + desc + "), a gauge");
      }
    std::string k = std::to_string(pairs.size());
    std::vector<std::string> parts;
    if (rot) parts.push_back("SO(2)^" + k);
    else if (flowSign) parts.push_back("Z2^" + k);
    if (scale || flowScale) parts.push_back("Scale+^" + k);
    if (parts.empty()) {
      s.fixed = true;
      s.group = "1";
      if (s.fixedBy.empty()) s.fixedBy = "rotary map: no pair generator survives";
      return;
    }
    s.group.clear();
    for (const auto &p : parts) s.group += (s.group.empty() ? "" : " x ") + p;
    s.group += " (" + desc + ")";
  };

  // Spaces with parameter members, in parameter order.
  std::vector<int> rootsInOrder;
  std::set<int> seenRoots;
  for (ParamOp p : paramOrder)
    for (int64_t a = 0, r = rankOfValue(p.getResult()); a < r; ++a) {
      std::vector<int> ns = b.allNodes(p.getResult(), a);
      for (int n : b.blockNodes(p.getResult(), a))
        ns.push_back(n);
      for (int n : ns) {
        int root = b.uf.find(n).first;
        if (seenRoots.insert(root).second)
          rootsInOrder.push_back(root);
      }
    }

  for (int root : rootsInOrder) {
    Space s;
    s.id = "s" + std::to_string(result.spaces.size() + 1);
    spaceOfRoot[root] = s.id;
    const std::vector<int> &allPn = paramNodes[root];
    std::vector<int> pn, blocks;
    bool indexed = false;
    for (int n : allPn) {
      if (nodes[n].run >= 0) blocks.push_back(n);
      else pn.push_back(n);
      indexed |= nodes[n].head >= 0;
    }
    if (!blocks.empty()) {
      // A head axis: permuting it permutes blocks of every member.
      const AxisInfo &A0 = table.axes[nodes[blocks[0]].axisIdx];
      Run r0 = A0.runs[nodes[blocks[0]].run];
      bool uniform = pn.empty();
      for (int n : blocks) {
        const AxisInfo &A = table.axes[nodes[n].axisIdx];
        const Run &r = A.runs[nodes[n].run];
        uniform &= r.count == r0.count && r.size == r0.size;
        s.members.push_back(memberOf(n, false));
      }
      s.size = r0.count;
      unsigned bits = mask[root];
      // Blocks of different sizes, as many in every member, permuted together
      // (a key/value head with the query heads that read it): a permutation
      // of the block index, one strided member per coordinate of a block.
      bool sameCount = pn.empty();
      for (int n : blocks)
        sameCount &= table.axes[nodes[n].axisIdx].runs[nodes[n].run].count == r0.count;
      if (!uniform && sameCount && bits != kNone && r0.count >= 2) {
        s.fixed = false;
        s.group = fmt::format("S groups ({})", r0.count);
        Claim c;
        c.id = newClaimId();
        c.kind = "linear";
        c.group = "S";
        c.n = r0.count;
        c.space = s.id;
        for (int n : blocks) {
          const Run &r = table.axes[nodes[n].axisIdx].runs[nodes[n].run];
          for (int64_t k = 0; k < r.size; ++k) {
            Member m = memberOf(n, false);
            m.offset = r.start + k;
            m.extent = r.count;
            m.stride = r.size;
            c.members.push_back(m);
          }
        }
        c.note = "permutation of head groups (blocks of different sizes), one member per "
                 "coordinate of a block";
        // The space is the block index (n = count): its members are the strided
        // ones, not the runs (a run spans a whole axis that is not the space).
        s.members = c.members;
        s.claimIds.push_back(c.id);
        result.claims.push_back(std::move(c));
        result.spaces.push_back(s);
        continue;
      }
      s.fixed = bits == kNone || !uniform || r0.count < 2;
      s.fixedBy = why.count(root) ? why[root]
                  : uniform ? "" : "head blocks of different sizes";
      s.group = s.fixed ? "1" : fmt::format("S heads ({}x{})", r0.count, r0.size);
      if (!s.fixed) {
        Claim c;
        c.id = newClaimId();
        c.kind = "linear";
        c.group = "heads";
        c.heads = r0.count;
        c.headDim = r0.size;
        c.n = r0.count * r0.size;
        c.space = s.id;
        c.members = s.members;
        c.note = "permutation of attention heads";
        s.claimIds.push_back(c.id);
        result.claims.push_back(std::move(c));
      }
      result.spaces.push_back(s);
      continue;
    }
    s.size = nodes[pn.front()].len;
    unsigned bits = mask[root];
    // A rotary space without pair generators may still get pair sign flips
    // or scalings from the flows (emitPairClaims decides).
    bool paired = pairing.count(root) && !pairing[root].empty();
    s.fixed = (bits == kNone && !paired) || s.size < 1;
    s.fixedBy = why.count(root) ? why[root] : "";
    // Orientation: most members are "out".
    int outs = 0;
    for (int n : pn) outs += b.uf.find(n).second == 0;
    int flip = outs * 2 >= int(pn.size()) ? 0 : 1;
    for (int n : pn)
      s.members.push_back(memberOf(n, (b.uf.find(n).second ^ flip) == 1));
    if (indexed && !s.fixed) {
      // Per-head pieces of a parameter with its own head axis: the schema has
      // no member form for them yet, so nothing is claimed.
      s.fixed = true;
      s.fixedBy = "per-head parameter layout not expressible";
    }
    if (s.fixed || s.size < 2) {
      s.group = "1";
      result.spaces.push_back(s);
      continue;
    }
    std::set<int> pset(pn.begin(), pn.end());
    if (pairing.count(root)) {
      emitPairClaims(root, bits, pairing[root], s, pset);
      result.spaces.push_back(s);
      continue;
    }
    std::string summary = groupName(bits);
    auto addLinear = [&](const std::string &group, std::vector<Member> members,
                         const std::string &note) {
      Claim c;
      c.id = newClaimId();
      c.kind = "linear";
      c.group = group;
      c.n = s.size;
      c.space = s.id;
      c.members = std::move(members);
      c.note = note;
      s.claimIds.push_back(c.id);
      result.claims.push_back(std::move(c));
    };
    if (bits & kShear) {
      addLinear("GL", s.members, "every op on this space is linear");
    } else if (bits & kRotation) {
      addLinear("O", s.members, "every op on this space is orthogonally equivariant");
    } else {
      addLinear("S", s.members, "permutation of the space's coordinates");
    }
    // Sign and scale gauges whose support is inside this space.
    bool fullSign = false, hasScale = false;
    int signClaims = 0;
    if (!(bits & kRotation)) {
      for (auto &vec : signKernel) {
        int r0 = b.uf.find(vec.begin()->first).first;
        if (r0 != root) continue;
        bool inside = true;
        std::vector<Member> members;
        for (auto [n, v] : vec) {
          if (b.uf.find(n).first != root) { inside = false; break; }
          if (pset.count(n)) members.push_back(memberOf(n, false));
        }
        if (!inside || members.empty()) continue;
        if (members.size() == s.members.size()) fullSign = true;
        ++signClaims;
        addLinear("Z2", members, "sign flips of the space's coordinates");
      }
    }
    if (!(bits & kShear)) {
      // A kernel vector inside this space with unit exponents: its parameter
      // members (empty when it is not one).
      auto scaleMembers = [&](const std::map<int, int64_t> &vec) {
        std::vector<Member> members;
        if (b.uf.find(vec.begin()->first).first != root) return members;
        for (auto [n, v] : vec) {
          if (b.uf.find(n).first != root || std::llabs(v) != 1) return std::vector<Member>{};
          if (pset.count(n)) members.push_back(memberOf(n, v < 0));
        }
        return members;
      };
      for (auto &vec : scaleKernel) {
        std::vector<Member> members = scaleMembers(vec);
        if (members.empty()) continue;
        hasScale = true;
        addLinear("Scale+", members, "positive rescaling (a gauge)");
      }
      for (auto &[vec, why] : approxScaleKernel) {
        std::vector<Member> members = scaleMembers(vec);
        if (members.empty()) continue;
        addLinear("Scale+", members, "positive rescaling absorbed by " + why +
                                         " (approximate: exact only without epsilon)");
        result.claims.back().exact = false;
      }
    }
    if (summary == "S") {
      if (fullSign) summary = "B";
      else if (signClaims) summary = "S x Z2";
    }
    if (hasScale) summary += " x Scale+";
    s.group = summary;
    result.spaces.push_back(s);
  }

  // Uniform scale gauges (a LayerNorm/RMSNorm absorbs one factor shared by its
  // whole input): whole tensors times c^{+-1}. Claimed only when every node of
  // the vector is a whole parameter axis piece (no heads, no blocks) and each
  // tensor's exponents add up to the same sign.
  for (auto &[vec, why] : uniformScaleKernel) {
    std::map<std::string, std::map<int64_t, std::pair<int64_t, int64_t>>> cover; // init -> axis -> (exp, length)
    std::map<std::string, int64_t> power;
    bool ok = true;
    for (auto [n, v] : vec) {
      const Node &nd = nodes[n];
      const AxisInfo &A = table.axes[nd.axisIdx];
      if (!definedByParam(A.value)) continue; // an intermediate value
      if (nd.head >= 0 || nd.run >= 0) { ok = false; break; }
      std::string name = A.value.getDefiningOp<ParamOp>().getName().str();
      auto &slot = cover[name][A.axis];
      if (slot.second > 0 && slot.first != v) { ok = false; break; }
      slot.first = v;
      slot.second += nd.len;
    }
    int sign = 0;
    std::vector<Member> members;
    for (auto &[name, axes] : cover) {
      if (!ok) break;
      int64_t sum = 0;
      for (auto &[axis, ec] : axes) {
        if (ec.second != cast<RankedTensorType>(params[name].getType()).getDimSize(axis)) {
          ok = false;
          break;
        }
        sum += ec.first;
      }
      if (!ok || sum == 0) continue;
      if (std::llabs(sum) != 1 || (sign && sign != int(sum))) { ok = false; break; }
      sign = int(sum);
      Member m;
      m.initializer = name;
      members.push_back(m);
    }
    if (!ok || members.empty()) continue;
    Claim c;
    c.id = newClaimId();
    c.kind = "scale";
    c.group = "scale";
    c.exact = false;
    c.members = std::move(members);
    c.roles.assign(c.members.size(), "tensor");
    c.note = "one positive factor on these whole tensors, absorbed by " + why +
             " (approximate: exact only without epsilon)";
    result.claims.push_back(std::move(c));
  }

  // Shift gauges: a Softmax over the output axis of a trainable linear map.
  std::vector<std::pair<Value, int64_t>> softmaxes = b.softmaxes;
  std::map<const void *, std::string> outputName;
  for (auto &[v, name] : outputs) outputName[v.getAsOpaquePointer()] = name;
  if (loss == LossKind::CrossEntropy)
    for (auto &[v, name] : outputs)
      if (rankOfValue(v) >= 1) softmaxes.push_back({v, -1});
  auto singleUse = [](Value v) { return v.hasOneUse(); };
  // Ops whose result does not change when a constant is added along the last
  // axis of operand 0: Softmax/LogSoftmax over that axis, and TopK over it
  // (same positions, values shifted) when its values only reach such ops.
  auto overLastAxis = [&](Operation *op, int64_t dflt) {
    int64_t r = rankOfValue(op->getOperand(0));
    auto a = op->getAttrOfType<IntegerAttr>("axis");
    int64_t ax = a ? a.getInt() : dflt;
    return (ax < 0 ? ax + r : ax) == r - 1;
  };
  std::function<bool(Value)> shiftInvariantUses = [&](Value v) {
    if (v.use_empty()) return false;
    for (OpOperand &u : v.getUses()) {
      Operation *o = u.getOwner();
      if (u.getOperandNumber() != 0) return false;
      if (isa<SoftmaxOp, LogSoftmaxOp>(o)) {
        int64_t opset = 17;
        for (Operation *p = o; p; p = p->getParentOp())
          if (auto i = p->getAttrOfType<IntegerAttr>("graph.opset")) { opset = i.getInt(); break; }
        if (!overLastAxis(o, opset < 13 ? 1 : -1)) return false;
      } else if (isa<TopKOp>(o)) {
        auto sorted = o->getAttrOfType<IntegerAttr>("sorted");
        if (!overLastAxis(o, -1) || (sorted && sorted.getInt() == 0) ||
            !shiftInvariantUses(o->getResult(0)))
          return false;
      } else {
        return false;
      }
    }
    return true;
  };
  std::set<const void *> shiftedLogits;
  for (auto [logits, axisIn] : softmaxes) {
    int64_t r = rankOfValue(logits);
    int64_t axis = axisIn < 0 ? axisIn + r : axisIn;
    if (axis != r - 1) continue;
    bool isOutput = outputName.count(logits.getAsOpaquePointer());
    Value v = logits;
    std::vector<std::string> names, roles;
    std::vector<Member> members;
    bool throughTopK = false;
    if (!isOutput) {
      // Top-k before the Softmax (Mixtral order): the logits are TopK's input.
      if (auto tk = v.getDefiningOp<TopKOp>())
        if (tk->getNumResults() == 2 && v == tk->getResult(0)) {
          v = tk->getOperand(0);
          throughTopK = true;
        }
      if (!shiftInvariantUses(v) || !shiftedLogits.insert(v.getAsOpaquePointer()).second)
        continue;
    }
    // A bias added along the last axis (rank 1, no other use) shifts every
    // logit by the same constant: a shift on its own, whatever produced the
    // other addend (a tied head's matmul, BERT's decoder bias). The weight of
    // the linear map before it shifts too when nothing else reads the map's
    // output or the weight.
    Value bias;
    bool preShared = false;
    if (auto add = v.getDefiningOp<AddOp>()) {
      Value a = add.getOperand(0), c = add.getOperand(1);
      if (definedByParam(a)) std::swap(a, c);
      if (!definedByParam(c) || rankOfValue(c) != 1 || !singleUse(c)) continue;
      bias = c;
      v = a;
      preShared = !singleUse(a);
    }
    Value w;
    int64_t wAxis = -1;
    if (auto mm = v.getDefiningOp<MatMulOp>()) {
      if (rankOfValue(mm.getOperand(1)) == 2) {
        w = mm.getOperand(1);
        wAxis = 1;
      }
    } else if (auto gemm = v.getDefiningOp<GemmOp>()) {
      // A Gemm whose B is not 2-D is malformed (a barrier): no weight to shift.
      if (rankOfValue(gemm.getOperand(1)) == 2)
        w = gemm.getOperand(1);
      wAxis = gemm->getAttrOfType<IntegerAttr>("transB") &&
                      gemm->getAttrOfType<IntegerAttr>("transB").getInt()
                  ? 0 : 1;
      if (gemm.getNumOperands() > 2 && !isa<NoneType>(gemm.getOperand(2).getType())) {
        Value c = gemm.getOperand(2);
        if (bias || !definedByParam(c) || rankOfValue(c) != 1 || !singleUse(c))
          w = Value(); // C is not a shiftable bias: the weight alone would not do
        else
          bias = c;
      }
    }
    if (w)
      if (auto tr = w.getDefiningOp<TransposeOp>()) {
        // A transposed weight (torch exports nn.Linear on 3-D input this way).
        auto perm = tr->getAttrOfType<ArrayAttr>("perm");
        bool swap = !perm || (perm.size() == 2 && cast<IntegerAttr>(perm[0]).getInt() == 1 &&
                              cast<IntegerAttr>(perm[1]).getInt() == 0);
        if (swap && singleUse(w) && rankOfValue(tr->getOperand(0)) == 2) {
          w = tr->getOperand(0);
          wAxis = 1 - wAxis;
        } else {
          w = Value();
        }
      }
    if (w && (preShared || !definedByParam(w) || !singleUse(w)))
      w = Value();
    if (!w && !bias)
      continue;
    Claim c;
    c.id = newClaimId();
    c.kind = "shift";
    c.group = "shift";
    if (w) {
      Member mw;
      mw.initializer = w.getDefiningOp<ParamOp>().getName().str();
      mw.axis = wAxis;
      c.members.push_back(mw);
      c.roles.push_back("weight");
    }
    if (bias) {
      Member mb;
      mb.initializer = bias.getDefiningOp<ParamOp>().getName().str();
      mb.axis = 0;
      c.members.push_back(mb);
      c.roles.push_back("bias");
    }
    if (isOutput && loss == LossKind::CrossEntropy) {
      c.output = outputName[logits.getAsOpaquePointer()];
      c.outputAxis = -1;
      c.note = "logit shift under the cross-entropy loss";
    } else {
      c.note = throughTopK ? "shift of the logits of a TopK, then Softmax in the graph"
                           : "shift of the logits of a Softmax in the graph";
    }
    result.claims.push_back(c);
  }

  // Blocks and roles.
  for (ParamOp p : paramOrder) {
    Block blk;
    blk.name = p.getName().str();
    auto t = cast<RankedTensorType>(p.getType());
    blk.shape.assign(t.getShape().begin(), t.getShape().end());
    blk.fromConstant = p.getFromConstant();
    std::set<Operation *> users(p->getUsers().begin(), p->getUsers().end());
    blk.tied = users.size() > 1;
    std::set<const void *> outputPtrs;
    for (auto &[v, name] : outputs)
      outputPtrs.insert(v.getAsOpaquePointer());
    std::set<std::string> roles = inferRoles(p, outputPtrs);
    for (const Claim &c : result.claims)
      if (c.kind == "shift" && c.note.find("Softmax in the graph") != std::string::npos &&
          c.roles[0] == "weight" && c.members[0].initializer == blk.name)
        roles.insert("router");
    for (const auto &r : roles)
      blk.role += (blk.role.empty() ? "" : "+") + r;
    for (int64_t a = 0; a < int64_t(blk.shape.size()); ++a) {
      std::vector<std::string> sp;
      for (int n : b.allNodes(p.getResult(), a)) {
        std::string id = spaceOfRoot[b.uf.find(n).first];
        if (sp.empty() || sp.back() != id)
          sp.push_back(id);
      }
      for (int n : b.blockNodes(p.getResult(), a))
        sp.push_back("heads:" + spaceOfRoot[b.uf.find(n).first]);
      blk.axisSpaces.push_back(sp);
    }
    result.blocks.push_back(blk);
  }
  // Spaces whose coordinates are selected by position (the source of TopK
  // indices): only a router of such a space has experts.
  std::set<std::string> selected;
  for (const auto &rec : b.positions)
    for (int n : b.allNodes(rec.source.value, rec.source.axis)) {
      auto it = spaceOfRoot.find(b.uf.find(n).first);
      if (it != spaceOfRoot.end())
        selected.insert(it->second);
    }
  addExpertRoles(result.blocks, result.claims, selected);
  return result;
}

} // namespace symoc
