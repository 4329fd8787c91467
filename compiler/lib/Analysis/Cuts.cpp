//===- Cuts.cpp - Phase 1: pieces, head runs and head indexing ------------===//
//
// Takes the ops (their SymmetryRules); gives a CutTable: every axis cut where
// a Split/Slice/Concat or a head boundary cuts any axis tied to it, the runs of
// head blocks of factored axes, and which head axis indexes each axis.
//
//===----------------------------------------------------------------------===//

#include "symoc/Analysis/Stages.h"

#include <algorithm>
#include <map>
#include <set>
#include <tuple>

using namespace mlir;
using namespace symoc::graph;

namespace symoc {
namespace analysis {
namespace {

class CutBuilder : public SpaceBuilder {
public:
  CutBuilder(AxisTable &t, const InnerHeadSet &innerHeads)
      : table(t), innerHeads(innerHeads) {}
  bool changed = false;
  /// Every plain factor seen: (parts, outer, inner).
  std::vector<std::tuple<Value, int64_t, int64_t>> plainFactors;
  /// Every tie and slice, and every factor's whole axis with its inner part
  /// (the whole axis' coordinates are the inner part's, per block): what
  /// connects an axis to a parameter's axis (`reachParameters`).
  std::vector<std::pair<AxisRef, AxisRef>> links;

  void tie(Value x, int64_t a, Value y, int64_t b, bool) override {
    int xi = table.get(x, a), yi = table.get(y, b);
    opTies.push_back({{x, a}, {y, b}});
    links.push_back({{x, a}, {y, b}});
    AxisInfo &X = table.axes[xi];
    AxisInfo &Y = table.axes[yi];
    if (X.size < 0 || X.size != Y.size)
      return;
    merge(X.cuts, Y.cuts);
    merge(Y.cuts, X.cuts);
    if (X.perHeadBlocks != Y.perHeadBlocks) {
      X.perHeadBlocks = Y.perHeadBlocks = true;
      changed = true;
    }
    for (const Run &r : std::vector<Run>(Y.runs)) addRun(X, r);
    for (const Run &r : std::vector<Run>(X.runs)) addRun(Y, r);
  }
  void slice(Value in, int64_t axis, int64_t begin, int64_t count, Value out,
             int64_t outAxis) override {
    int ii = table.get(in, axis), oi = table.get(out, outAxis);
    opTies.push_back({{in, axis}, {out, outAxis}});
    links.push_back({{in, axis}, {out, outAxis}});
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
    links.push_back({{whole, axis}, {parts, inner}});
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
  /// Blocks of r positions, one per coordinate of the outer axis: the whole
  /// axis is cut where the outer one is (scaled by r), the outer one where the
  /// whole one is cut between blocks, and each piece of the outer axis is a
  /// run of blocks.
  void factorPositions(Value whole, int64_t axis, Value parts, int64_t outer, int64_t r,
                       int64_t innerTied) override {
    int wi = table.get(whole, axis), oi = table.get(parts, outer);
    AxisInfo &W = table.axes[wi];
    AxisInfo &O = table.axes[oi];
    const int64_t n = O.size;
    if (n <= 0 || r <= 0 || W.size != n * r)
      return;
    for (int64_t c : std::vector<int64_t>(O.cuts.begin(), O.cuts.end()))
      add(W.cuts, c * r);
    // (With runs tied to an inner axis the whole axis is cut at each of them:
    // those cuts are not the outer axis', so none is carried back. A cut of
    // the whole axis between blocks then leaves its run straddling it, and
    // the slice that made it fixes the blocks.)
    if (innerTied <= 0)
      for (int64_t c : std::vector<int64_t>(W.cuts.begin(), W.cuts.end()))
        if (c % r == 0)
          add(O.cuts, c / r);
    std::vector<int64_t> oc(O.cuts.begin(), O.cuts.end());
    for (size_t p = 0; p + 1 < oc.size(); ++p)
      addRun(W, {oc[p] * r, oc[p + 1] - oc[p], r});
  }
  /// A digit exchange: the whole axis is cut and blocked as a head split
  /// (heads of r, one run per piece of the head axis; the head axis is not
  /// cut at every head: heads permute); the merged axis is indexed by the
  /// head axis and carries one run of r blocks of m, per head.
  void exchangeDigits(Value whole, int64_t axis, Value parts, int64_t outer, int64_t merged,
                      int64_t r) override {
    int wi = table.get(whole, axis), oi = table.get(parts, outer), mi = table.get(parts, merged);
    const int64_t n = table.axes[oi].size, msize = table.axes[mi].size;
    if (n <= 0 || r <= 0 || table.axes[wi].size != n * r || msize <= 0 || msize % r != 0)
      return;
    AxisInfo &W = table.axes[wi];
    for (int64_t k = 0; k <= n; ++k)
      add(W.cuts, k * r);
    std::vector<int64_t> oc(table.axes[oi].cuts.begin(), table.axes[oi].cuts.end());
    for (size_t p = 0; p + 1 < oc.size(); ++p)
      addRun(W, {oc[p] * r, oc[p + 1] - oc[p], r});
    AxisInfo &M = table.axes[mi];
    addRun(M, {0, r, msize / r});
    if (!M.perHeadBlocks) {
      M.perHeadBlocks = true;
      changed = true;
    }
    setIndex(M, outer);
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
    PositionRange keep;
    for (Value v = indices.get(); v; v = positionSourceOf(v, keep)) {
      auto it = positions.find(v.getAsOpaquePointer());
      if (it == positions.end())
        continue;
      if (!keep.covers(dimSize(it->second.value, it->second.axis)))
        return false;
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

/// Runs the rules until no cut, run or index changes, for one set of factors
/// whose head axis is inner. Returns every plain factor (parts, outer, inner)
/// and, in `links`, the axis links of the last pass.
std::vector<std::tuple<Value, int64_t, int64_t>>
cutToFixedPoint(const std::vector<Operation *> &ops, AxisTable &table,
                const InnerHeadSet &innerHeads,
                std::vector<std::pair<AxisRef, AxisRef>> &links) {
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
    links = std::move(cuts.links);
    if (!cuts.changed)
      break;
  }
  return plainFactors;
}

/// The axes connected to an axis of a parameter through ties, slices and
/// factors (a factor's whole axis with its inner part). An axis outside this
/// set never holds a parameter's coordinates (a batch or sequence axis), so
/// whatever indexes it cannot carry a head of weights.
std::set<AxisKey> reachParameters(const std::vector<std::pair<AxisRef, AxisRef>> &links) {
  std::map<AxisKey, std::vector<AxisRef>> next;
  std::vector<AxisRef> work;
  std::set<AxisKey> seen;
  auto visit = [&](const AxisRef &r) {
    if (seen.insert(keyOf(r.value, r.axis)).second)
      work.push_back(r);
  };
  for (auto &[a, b] : links) {
    next[keyOf(a.value, a.axis)].push_back(b);
    next[keyOf(b.value, b.axis)].push_back(a);
    for (const AxisRef &r : {a, b})
      if (definedByParam(r.value))
        visit(r);
  }
  while (!work.empty()) {
    AxisRef r = work.back();
    work.pop_back();
    for (const AxisRef &n : next[keyOf(r.value, r.axis)])
      visit(n);
  }
  return seen;
}

/// Factors whose inner part indexes other axes (a head axis) while the outer
/// part does not: the outer part is a batch axis merged with the heads. When
/// both parts index other axes, the inner part is the head axis when it
/// indexes an axis connected to a parameter and the outer part indexes none
/// (the outer part is a batch axis that an earlier flatten such as HF Conv1D's
/// [B, T, D] -> [B*T, D] made index the sequence axis).
std::vector<AxisKey>
innerHeadFactors(AxisTable &table, const InnerHeadSet &innerHeads,
                 const std::vector<std::tuple<Value, int64_t, int64_t>> &plainFactors,
                 const std::set<AxisKey> &reached) {
  auto indexes = [&](Value v, int64_t head, int64_t except, bool weightsOnly) {
    for (int64_t k = 0, r = rankOfValue(v); k < r; ++k) {
      if (k == head || k == except)
        continue;
      const AxisInfo &A = table.axes[table.get(v, k)];
      if (A.indexAxis == head && !A.indexConflict &&
          (!weightsOnly || reached.count(keyOf(v, k))))
        return true;
    }
    return false;
  };
  std::vector<AxisKey> found;
  for (auto &[parts, outer, inner] : plainFactors) {
    if (innerHeads.count(keyOf(parts, inner)))
      continue;
    bool onlyInner = indexes(parts, inner, outer, false) && !indexes(parts, outer, inner, false);
    bool onlyInnerWeights =
        indexes(parts, inner, outer, true) && !indexes(parts, outer, inner, true);
    if (onlyInner || onlyInnerWeights)
      found.push_back(keyOf(parts, inner));
  }
  return found;
}

} // namespace

CutTable propagateCuts(const std::vector<Operation *> &ops) {
  // A factor (outer, inner) takes the outer part as its head axis, unless the
  // inner part turns out to index other axes (it is a head axis) and the outer
  // one does not: then the outer part is a batch axis merged with the heads,
  // and phase 1 is run again knowing it.
  CutTable out;
  for (int round = 0;; ++round) {
    out.table = AxisTable();
    std::vector<std::pair<AxisRef, AxisRef>> links;
    auto plainFactors = cutToFixedPoint(ops, out.table, out.innerHeads, links);
    std::vector<AxisKey> found =
        innerHeadFactors(out.table, out.innerHeads, plainFactors, reachParameters(links));
    // The table must be the one phase 1 computed with this very set: stop
    // without adding what the last allowed round found.
    if (found.empty() || round == 7)
      break;
    out.innerHeads.insert(found.begin(), found.end());
  }
  return out;
}

} // namespace analysis
} // namespace symoc
