//===- Spaces.cpp - Phase 2: the rules' ties, restrictions and flows ------===//
//
// Takes the ops and phase 1's CutTable; gives a SpaceGraph: every piece of
// every axis a node, joined (with parity) where a rule ties axes, restricted
// where it allows fewer generators, and the scale / sign flow relations.
// Lists the barriers: ops that fixed everything they touch.
//
//===----------------------------------------------------------------------===//

#include "symoc/Analysis/Stages.h"

#include <algorithm>

using namespace mlir;
using namespace symoc::graph;

namespace symoc {
namespace analysis {
namespace {

/// Generators that a block node keeps when the coordinates of the blocked axis
/// are restricted to `bits`. The block index moves the axis by A (x) I_d, which
/// is a permutation, sign flip, positive scaling, rotation or invertible map
/// exactly when A is one: the same bits. (Before session 31 every generator was
/// kept when permutations were, so a head axis joined to a plain parameter axis
/// took that axis's GL through a reduction that allows only permutations:
/// fuzz_graphs seed 3123.)
unsigned blockBits(unsigned bits) { return bits & kAll; }

/// True when no reader of `parts` sees coordinate `k` of axis `outer` together with the
/// coordinates [lo, hi) of axis `inner`: every reader is a Slice (constant bounds, step 1)
/// that leaves out k or all of [lo, hi). A graph output is a reader that sees everything.
bool unreadRegion(Value parts, int64_t outer, int64_t k, int64_t inner, int64_t lo, int64_t hi) {
  for (Operation *user : parts.getUsers()) {
    auto slice = dyn_cast<SliceOp>(user);
    if (!slice || slice->getOperand(0) != parts)
      return false;
    auto o = sliceKeeps(slice, outer), i = sliceKeeps(slice, inner);
    if (!o || !i)
      return false;
    const bool missesK = k < o->first || k >= o->second;
    const bool missesRange = hi <= i->first || lo >= i->second;
    if (!missesK && !missesRange)
      return false;
  }
  return true;
}

/// The SpaceBuilder that the rules call; what it records is the SpaceGraph.
class SpaceRules : public SpaceBuilder, public SpaceGraph {
public:
  explicit SpaceRules(CutTable cuts) {
    table = std::move(cuts.table);
    innerHeads = std::move(cuts.innerHeads);
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

  /// A flow relation of the op: which list it goes to (scale, sign, or approximate scale with
  /// its reason), held until the op's end when its terms are heads of axes the op's ties
  /// may pair in another order.
  struct PendingRel {
    int list; // 0 scale, 1 sign, 2 approximate scale
    std::vector<AxisTerm> terms;
    std::string why;
    bool uniform = false;
    int call = 0;
  };
  std::vector<PendingRel> pendingRels;

  void relation(int list, ArrayRef<AxisTerm> terms, StringRef why = "", bool uniform = false) {
    if (terms.empty())
      return;
    for (const AxisTerm &t : terms) {
      touch(t.value, t.axis);
      (list == 1 ? signTouched : scaleTouched).insert({t.value.getAsOpaquePointer(), t.axis});
      axisOf(t.value, t.axis);
    }
    PendingRel rel{list, std::vector<AxisTerm>(terms.begin(), terms.end()), why.str(), uniform,
                   list == 2 ? approxCalls++ : 0};
    int perHeadTerms = 0;
    for (const AxisTerm &t : terms)
      perHeadTerms += table.axes[table.get(t.value, t.axis)].numHeads > 1;
    // Head h of one side is head h of the other only where the op ties the
    // head axes, which may come later in its rule: decided at the op's end.
    if (perHeadTerms > 1)
      pendingRels.push_back(std::move(rel));
    else
      emitRelation(rel, /*headsInOrder=*/true);
  }

  /// Appends the relation, per head where the heads correspond in order;
  /// otherwise every head of each per-head axis gets one exponent (which then
  /// passes whatever the op does to the heads) and the relation is on head 0.
  void emitRelation(const PendingRel &p, bool headsInOrder) {
    const int mod = p.list == 1 ? 2 : 0;
    std::vector<Relation> &out = p.list == 0 ? scaleRels : p.list == 1 ? signRels : approxScaleRels;
    std::vector<AxisInfo *> axes;
    for (const AxisTerm &t : p.terms)
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
    } else {
      if (!headsInOrder) {
        for (AxisInfo *A : axes)
          for (int h = 1; h < A->numHeads; ++h)
            for (int i = 0; i < A->numPieces; ++i)
              out.push_back({{{node(*A, h, i), 1}, {node(*A, 0, i), mod == 2 ? 1 : -1}}});
        heads = 1;
      }
      for (int h = 0; h < heads; ++h)
        for (int i = 0; i < axes[0]->numPieces; ++i) {
          Relation rel;
          for (size_t k = 0; k < p.terms.size(); ++k) {
            int64_t c = p.terms[k].coeff;
            if (mod == 2)
              c = ((c % 2) + 2) % 2;
            if (c != 0)
              rel.terms.push_back({node(*axes[k], h, i), c});
          }
          if (!rel.terms.empty())
            out.push_back(rel);
        }
    }
    if (p.list == 2) {
      approxWhy.resize(approxScaleRels.size(), p.why);
      approxUniform.resize(approxScaleRels.size(), p.uniform);
      approxCall.resize(approxScaleRels.size(), p.call);
    }
  }

  /// True when the op ties the head axes of every per-head term one to one.
  bool headsTied(const PendingRel &p) {
    const AxisInfo *first = nullptr;
    for (const AxisTerm &t : p.terms) {
      const AxisInfo &A = table.axes[table.get(t.value, t.axis)];
      if (A.numHeads <= 1)
        continue;
      if (!first)
        first = &A;
      else if (!opTies({first->value, first->indexAxis}, {A.value, A.indexAxis}))
        return false;
    }
    return true;
  }

  void scaleRelation(ArrayRef<AxisTerm> terms) override { relation(0, terms); }
  void approxScaleRelation(ArrayRef<AxisTerm> terms, StringRef why, bool uniform) override {
    relation(2, terms, why, uniform);
  }
  void signRelation(ArrayRef<AxisTerm> terms) override { relation(1, terms); }
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
    // Giving up also pins the flows: the axes were marked as having a
    // relation, and one never made would leave them free.
    auto giveUp = [&](StringRef why) {
      for (auto [v, a] : {std::pair{whole, axis}, {parts, outer}, {parts, inner}}) {
        fixAxis(v, a, why);
        pinAxis(v, a);
      }
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
    std::set<int> followed(pieceBlocks.begin(), pieceBlocks.end()); // W's blocks the parts account for
    for (size_t g = 0; O.firstBlock >= 0 && g < O.runs.size(); ++g) {
      const Run &og = O.runs[g];
      int target = -1;
      if (r == 1 && !headInner && W.firstBlock >= 0)
        for (size_t q = 0; q < W.runs.size(); ++q)
          if (W.runs[q] == Run{og.start * d, og.count, og.size * d})
            target = W.firstBlock + int(q);
      if (target >= 0) {
        uf.unite(O.firstBlock + int(g), target, 0);
        followed.insert(target);
      } else {
        restrictions.push_back({O.firstBlock + int(g), kNone, "nested head blocks not followed"});
      }
    }
    // Other blocks of the whole axis: those that move whole outer coordinates, or straddle
    // them, permute the outer axis in a way none of its blocks allows (groups of attention
    // heads brought onto a token axis that a reshape merged with TopK's k: fuzz on the zoo's
    // MoE exports found that claimed): fixed. One inside outer coordinate k permutes the
    // inner axis at k alone, which no node of the inner axis expresses. It is left free only
    // where the parts are this op's result and nothing reads them there (a fused QKV split
    // whose query heads are sliced from the unsplit axis, its parts read only for k and v);
    // else fixed. Left free, such blocks claimed a permutation of features a slice cut out of
    // one copy of a fixed row (fuzz_graphs seed 3207) and a swap of heads whose channels a
    // second reshape reads (lit Analysis/slice-inside-head.test).
    for (size_t q = 0; W.firstBlock >= 0 && q < W.runs.size(); ++q) {
      const Run &w = W.runs[q];
      const bool wholeOuter = w.size % d == 0 && w.start % d == 0;
      const bool withinOne = w.start / d == (w.end() - 1) / d;
      const bool unread = r == 1 && withinOne && !wholeOuter && parts.getDefiningOp() == currentOp &&
                          unreadRegion(parts, outer, w.start / d, inner, w.start % d, w.start % d + w.count * w.size);
      if (!followed.count(W.firstBlock + int(q)) && !unread)
        restrictions.push_back({W.firstBlock + int(q), kNone, "head blocks not followed through a reshape"});
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

  /// The whole axis' blocks of r move with the outer axis' coordinates: one
  /// run per piece of the outer axis, its block node joined to that piece.
  /// Inside a block the coordinates are positions (fixed, unless the rule
  /// ties them to an inner axis itself); the outer axis
  /// keeps its permutations only, and no scale or sign flow is followed (both
  /// axes are left to fixUntouched's pin).
  void factorPositions(Value whole, int64_t axis, Value parts, int64_t outer, int64_t r,
                       int64_t innerTied) override {
    touch(whole, axis);
    touch(parts, outer);
    const std::vector<int> wholeNodes = allNodes(whole, axis);
    const std::vector<int> wholeBlocks = blockNodes(whole, axis);
    const std::vector<int> outerNodes = allNodes(parts, outer);
    if (innerTied > 0)
      tiledAxes[table.get(whole, axis)] = innerTied;
    else
      for (int n : wholeNodes)
        restrictions.push_back({n, kNone, "positions merged into this axis"});
    for (int n : outerNodes)
      restrictions.push_back({n, kPerm, "merged with positions: whole blocks permute"});
    for (int n : blockNodes(parts, outer))
      restrictions.push_back({n, kNone, "nested head blocks not followed"});
    const AxisInfo &W = table.axes[table.get(whole, axis)];
    const AxisInfo &O = table.axes[table.get(parts, outer)];
    // The whole axis may be indexed by another axis (its tied runs' inner axis is a per-head
    // one): a block permutation keeps each coordinate's index, so its per-head pieces move
    // alike. An outer axis indexed per head would need one permutation per head: fixed.
    bool ok = r > 0 && O.size > 0 && W.size == O.size * r && O.numHeads <= 1 &&
              W.firstBlock >= 0 && W.blockHeads == 1;
    std::vector<std::pair<int, int>> joins; // (W's block node, O's piece node)
    for (int p = 0; ok && p < O.numPieces; ++p) {
      const Node &op = nodes[O.firstNode + p];
      int target = -1;
      for (size_t q = 0; q < W.runs.size(); ++q)
        if (W.runs[q] == Run{op.start * r, op.len, r})
          target = W.firstBlock + int(q);
      ok = target >= 0;
      joins.push_back({target, O.firstNode + p});
    }
    if (!ok) {
      for (int n : outerNodes)
        restrictions.push_back({n, kNone, "merged with positions: blocks not resolved"});
      for (int n : wholeBlocks)
        restrictions.push_back({n, kNone, "merged with positions: blocks not resolved"});
      return;
    }
    std::set<int> followed;
    for (auto [block, piece] : joins) {
      uf.unite(block, piece, 0);
      followed.insert(block);
    }
    // Other blocks of the whole axis (inside a block, or across blocks) move
    // positions: fixed.
    for (int n : wholeBlocks)
      if (!followed.count(n))
        restrictions.push_back({n, kNone, "blocks across merged positions"});
  }

  /// A digit exchange (see SymmetryRule.h): the whole axis is H heads of r
  /// channels, head k's channels being the r blocks of m positions of the
  /// merged axis at head k. The heads permute whole (the whole axis' block
  /// node joins the head axis' piece, permutations only, as factorPositions'
  /// blocks); head k's channels (the whole axis' piece k) permute with the
  /// merged axis' blocks at head k, permutations only: a channel's scale or
  /// sign would be one factor on m positions of the merged axis, which no
  /// per-coordinate node expresses (both axes' flows are left to the pin).
  /// The positions inside a block are fixed.
  void exchangeDigits(Value whole, int64_t axis, Value parts, int64_t outer, int64_t merged,
                      int64_t r) override {
    touch(whole, axis);
    touch(parts, outer);
    touch(parts, merged);
    axisOf(whole, axis);
    axisOf(parts, outer);
    axisOf(parts, merged);
    const AxisInfo &W = table.axes[table.get(whole, axis)];
    const AxisInfo &O = table.axes[table.get(parts, outer)];
    const AxisInfo &M = table.axes[table.get(parts, merged)];
    const int64_t n = O.size, m = r > 0 ? M.size / r : 0;
    // Only the plain form is followed: one piece of heads, every head one
    // piece of the whole axis, the merged axis one piece with one run of r
    // blocks per head (a cut or another run there, from a slice or another
    // reshape, is not).
    bool heads = n > 1 && r > 1 && m > 0 && W.size == n * r && M.size == r * m &&
                 W.numHeads <= 1 && O.numHeads <= 1 && O.numPieces == 1 &&
                 W.firstBlock >= 0 && W.blockHeads == 1;
    int headBlock = -1;
    for (size_t q = 0; heads && q < W.runs.size(); ++q)
      if (W.runs[q] == Run{0, n, r})
        headBlock = W.firstBlock + int(q);
    heads = heads && headBlock >= 0;
    bool channels = heads && W.numPieces == n && M.indexAxis == outer && !M.indexConflict &&
                    M.numHeads == n && M.blockHeads == n && M.numPieces == 1 &&
                    M.firstBlock >= 0 && M.runs.size() == 1 && M.runs[0] == Run{0, r, m};
    for (int k = 0; channels && k < n; ++k)
      channels = nodes[W.firstNode + k].start == k * r && nodes[W.firstNode + k].len == r;
    if (!heads) {
      for (auto [v, a] : {std::pair{whole, axis}, {parts, outer}, {parts, merged}})
        fixAxis(v, a, "digit exchange not followed");
      return;
    }
    for (int n2 : allNodes(parts, outer))
      restrictions.push_back({n2, kPerm, "merged with positions: whole blocks permute"});
    for (int n2 : blockNodes(parts, outer))
      restrictions.push_back({n2, kNone, "nested head blocks not followed"});
    uf.unite(headBlock, O.firstNode, 0);
    for (int n2 : blockNodes(whole, axis))
      if (n2 != headBlock)
        restrictions.push_back({n2, kNone, "blocks across merged positions"});
    if (!channels) {
      // The heads still permute whole; inside them nothing is followed.
      for (int n2 : allNodes(whole, axis))
        restrictions.push_back({n2, kNone, "positions merged into this axis"});
      fixAxis(parts, merged, "digit exchange: per-head blocks not resolved");
      return;
    }
    for (int n2 : allNodes(parts, merged))
      restrictions.push_back({n2, kNone, "positions merged into this axis"});
    for (int k = 0; k < n; ++k) {
      restrictions.push_back({W.firstNode + k, kPerm,
                              "channels merged with positions: permutations only"});
      uf.unite(W.firstNode + k, blockNode(M, k, 0), 0);
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
    // Through copies of positions (positionSourceOf): each copy becomes positions
    // of the same source (its other uses are checked too) and its use of its
    // operand is accepted.
    std::vector<Value> chain;
    auto it = positionIndex.end();
    PositionRange keep;
    for (Value v = indices.get(); v; v = positionSourceOf(v, keep)) {
      it = positionIndex.find(v.getAsOpaquePointer());
      if (it != positionIndex.end())
        break;
      chain.push_back(v);
    }
    if (it == positionIndex.end())
      return false;
    const AxisRef src = positions[it->second].source;
    // A Clip or narrowing Cast on the way that could change a position: not followed (the
    // source is then fixed by its unaccepted use).
    if (!keep.covers(dimSize(src.value, src.axis)))
      return false;
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
        if (acceptedUses.count({use.getOwner(), use.getOperandNumber()}) || readsOnlyShape(use))
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
      if (A.numHeads > 1 && A.indexAxis == axis) {
        for (int h = 1; h < A.numHeads; ++h)
          for (int i = 0; i < A.numPieces; ++i)
            uf.unite(node(A, h, i), node(A, 0, i), 0);
        for (int h = 1; A.firstBlock >= 0 && h < A.blockHeads; ++h)
          for (int q = 0; q < int(A.runs.size()); ++q)
            uf.unite(blockNode(A, h, q), blockNode(A, 0, q), 0);
      }
    }
  }

  /// Resolves the op's ties and slices.
  void endOp() {
    for (const PendingRel &r : pendingRels)
      emitRelation(r, headsTied(r));
    pendingRels.clear();
    for (const Pending &p : pending)
      resolve(p);
    pending.clear();
    factors.clear();
    tiledAxes.clear();
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
  /// Whole axes of the current op's factorPositions whose runs of this many
  /// coordinates the op ties to an inner axis by slices: those slices select
  /// the same run of every block, so blocks still move whole.
  std::map<int, int64_t> tiledAxes;

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

  /// Tied axes' blocks (head permutations) move together; blocks that do not
  /// line up are fixed. Every tie must come here: a block left out keeps its
  /// head permutation free of whatever restricts the other side.
  /// Per-head blocks (blockHeads > 1) pair head by head where the op ties the
  /// head axes in order (`perHead`) and both sides have them; otherwise every
  /// head's blocks of a run join (one permutation for all heads).
  void tieBlocks(const Pending &p, const AxisInfo &X, const AxisInfo &Y, bool perHead = false) {
    if (X.runs == Y.runs && X.firstBlock >= 0 && Y.firstBlock >= 0) {
      const bool inOrder = perHead && X.blockHeads == Y.blockHeads;
      for (int r = 0; r < int(X.runs.size()); ++r) {
        if (inOrder) {
          for (int h = 0; h < X.blockHeads; ++h)
            uf.unite(blockNode(X, h, r), blockNode(Y, h, r), 0);
          continue;
        }
        for (int h = 0; h < X.blockHeads; ++h)
          uf.unite(blockNode(X, h, r), blockNode(Y, 0, r), 0);
        for (int h = 1; h < Y.blockHeads; ++h)
          uf.unite(blockNode(Y, h, r), blockNode(Y, 0, r), 0);
      }
    } else if (X.firstBlock >= 0 || Y.firstBlock >= 0) {
      for (int n : blockNodes(p.x.value, p.x.axis))
        restrictions.push_back({n, kNone, "head blocks do not line up"});
      for (int n : blockNodes(p.y.value, p.y.axis))
        restrictions.push_back({n, kNone, "head blocks do not line up"});
    }
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
      tieBlocks(p, X, Y);
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
      tieBlocks(p, X, Y, perHead);
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
          // slice() marked both axes as related: pin what it cannot relate.
          for (const AxisRef &r : {p.x, p.y}) {
            fixAxis(r.value, r.axis, "slice boundaries not resolved");
            pinAxis(r.value, r.axis);
          }
          return;
        }
        uf.unite(match, node(Y, h, j), 0);
        // Without a shared head index every head of each side is this piece
        // (mergeHeads joined them): each gets the flow relation, else the
        // heads past the first would keep free scale and sign exponents.
        const int xi = (match - X.firstNode) % X.numPieces;
        for (int hx = 0; hx < (perHead ? 1 : X.numHeads); ++hx)
          for (int hy = 0; hy < (perHead ? 1 : Y.numHeads); ++hy) {
            const int a = perHead ? match : node(X, hx, xi);
            const int c = perHead ? node(Y, h, j) : node(Y, hy, j);
            scaleRels.push_back({{{a, 1}, {c, -1}}});
            signRels.push_back({{{a, 1}, {c, 1}}});
          }
      }
    // Per-head blocks through a slice are not followed: fixed.
    if (X.blockHeads > 1 || Y.blockHeads > 1) {
      for (const AxisRef &r : {p.x, p.y})
        for (int n : blockNodes(r.value, r.axis))
          restrictions.push_back({n, kNone, "a slice of per-head blocks"});
      return;
    }
    // Blocks inside the slice move with it; blocks it cuts through are fixed. A block of the
    // slice's result that no block of the input matches is fixed too: the input axis has no
    // blocks there (runs of the same size that do not line up: Q and K sliced from one
    // projection half a head apart), so nothing else would tie its heads to the other
    // slices' (a session-35 audit: a V/O head swap was claimed with the Q/K heads fixed).
    std::set<int> matched;
    for (size_t r = 0; r < X.runs.size() && X.firstBlock >= 0; ++r) {
      const Run &run = X.runs[r];
      bool inside = run.start >= p.begin && run.end() <= p.begin + p.count;
      bool disjoint = run.end() <= p.begin || run.start >= p.begin + p.count;
      if (disjoint)
        continue;
      auto tiled = tiledAxes.find(table.get(p.x.value, p.x.axis));
      if (tiled != tiledAxes.end() && p.count == tiled->second && p.begin % p.count == 0 &&
          run.start % p.count == 0 && run.size % p.count == 0)
        continue;
      int target = -1;
      if (inside && Y.firstBlock >= 0)
        for (size_t q = 0; q < Y.runs.size(); ++q)
          if (Y.runs[q] == Run{run.start - p.begin, run.count, run.size})
            target = Y.firstBlock + int(q);
      if (target >= 0) {
        uf.unite(X.firstBlock + int(r), target, 0);
        matched.insert(target);
      } else
        restrictions.push_back({X.firstBlock + int(r), kNone, "a slice cuts through head blocks"});
    }
    for (size_t q = 0; q < Y.runs.size() && Y.firstBlock >= 0; ++q)
      if (!matched.count(Y.firstBlock + int(q)))
        restrictions.push_back({Y.firstBlock + int(q), kNone, "a slice of an axis whose head blocks do not line up"});
  }

public:
  Operation *currentOp = nullptr;
  std::set<Operation *> fixedByOp;
  std::set<Operation *> fixedAllByOp; // ops that fixed a whole value (barriers)
  // Per op: why it first fixed a whole value, and how many it fixed. An op
  // that fixed all its operands and results is a barrier.
  std::map<Operation *, std::pair<std::string, unsigned>> fixAllBy;
  std::set<std::pair<Operation *, unsigned>> acceptedUses;
  void addPositions(const Positions &p) {
    if (positionIndex.insert({p.indices.getAsOpaquePointer(), positions.size()}).second)
      positions.push_back(p);
  }
};

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

/// Per axis of a constant: whether the importer found every slice along it the
/// same (attribute uniform_axes: a broadcast folded into the file, an attention
/// mask expanded over the heads, position ids over the batch). A permutation of
/// such an axis leaves the constant as it is. Constants made later (a pass's
/// shape vectors) have none.
std::vector<bool> uniformAxes(ConstantOp c) {
  auto type = dyn_cast<RankedTensorType>(c.getResult().getType());
  std::vector<bool> out(type ? size_t(type.getRank()) : 0, false);
  if (auto axes = c->getAttrOfType<ArrayAttr>("uniform_axes"))
    for (Attribute a : axes)
      if (auto i = dyn_cast<IntegerAttr>(a); i && i.getInt() >= 0 && i.getInt() < int64_t(out.size()))
        out[size_t(i.getInt())] = type.getDimSize(i.getInt()) > 1;
  return out;
}

/// A constant is fixed, except that an axis along which it does not change
/// passes permutations (it does not scale or flip: pinned).
void fixConstant(SpaceRules &b, ConstantOp c) {
  std::vector<bool> uniform = uniformAxes(c);
  if (std::find(uniform.begin(), uniform.end(), true) == uniform.end()) {
    b.fixAll(c.getResult(), "fixed constant");
    return;
  }
  Value v = c.getResult();
  for (int64_t a = 0; a < int64_t(uniform.size()); ++a) {
    if (uniform[size_t(a)])
      b.restrict(v, a, kPerm, "a constant (the same along this axis)");
    else
      b.restrict(v, a, kNone, "fixed constant");
    b.pinAxis(v, a);
    b.touchFlows(v, a);
  }
}

/// Applies each op's rule; an op without a rule, or without ranks, fixes all
/// it touches, and so does a constant (but for the axes it is the same along).
void applyRules(SpaceRules &b, const std::vector<Operation *> &ops) {
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
      fixConstant(b, c);
    }
  }
}

/// Every op that fixed all its operands and results is a barrier, whatever
/// the cause (no rule, no rank, a form its rule does not follow); in graph
/// order, so the report is the same from run to run.
void listBarriers(const SpaceRules &b, const std::vector<Operation *> &ops,
                  std::vector<Barrier> &barriers) {
  for (Operation *op : ops) {
    auto it = b.fixAllBy.find(op);
    if (it == b.fixAllBy.end() || isa<ConstantOp, ShapeOp, SizeOp>(op) ||
        it->second.second < op->getNumOperands() + op->getNumResults())
      continue;
    std::string node, type = op->getName().stripDialect().str();
    if (auto nl = dyn_cast<NameLoc>(op->getLoc())) node = nl.getName().str();
    if (auto g = dyn_cast<GenericOp>(op)) type = g.getOpType().str();
    barriers.push_back({node, type, it->second.first, barrierHint(it->second.first)});
  }
}

} // namespace

SpaceGraph buildSpaces(func::FuncOp fn, const std::vector<Operation *> &ops, CutTable cuts,
                       std::vector<Barrier> &barriers) {
  SpaceRules b(std::move(cuts));
  applyRules(b, ops);
  b.currentOp = nullptr;
  b.checkPositionUses();
  listBarriers(b, ops, barriers);
  // Model inputs and outputs are fixed.
  for (BlockArgument arg : fn.getArguments())
    b.fixAll(arg, "model input");
  fn.walk([&](func::ReturnOp ret) {
    for (Value v : ret.getOperands())
      b.fixAll(v, "model output");
  });
  return SpaceGraph(std::move(static_cast<SpaceGraph &>(b)));
}

} // namespace analysis
} // namespace symoc
