//===- RecomposeRotary.cpp - x * cos + g(x) * sin -> graph.Rotary ---------===//
//
// Exporters write the rotary position embedding out as
//   y = Add(Mul(x, cos), Mul(g(x), sin))
// where g is a signed permutation of the channel axis:
//   rotate-half (LLaMA, GPT-NeoX): g(x) = Concat(Neg(x[.., d/2:]), x[.., :d/2])
//   interleaved (GPT-J):           g(x) = Reshape(Concat(Unsqueeze(Neg(x[.., 1::2]), -1),
//                                                        Unsqueeze(x[.., 0::2], -1), -1))
// This pass reads g off the Slice/Neg/Concat(/Unsqueeze/Reshape) ops, pairs each
// channel k with source[k] (pairs must be 2-cycles with opposite signs), reads
// proves, for every pair (i, j), every index along the other axes and every
// model input, cos[i] == cos[j] and sin[i] == sin[j] (pairEqual: constants are
// read, from the IR or through the reader `symoc analyze` passes in, and
// compared; elementwise ops, selections and Concat/Slice along the channels
// are followed, so tables computed in the graph as cos(cat(freqs, freqs))
// qualify): then the map on the pair is [[c, -s], [s, c]] at every position. Only then is the Add replaced by
// graph.Rotary (same function; verify checks claims on the original graph).
// Anything else (tables that are not rotations, trainable tables, a g that is
// not a pairing) is left alone, and the plain Mul rule fixes the channels.
//
//===----------------------------------------------------------------------===//

#include "MatchUtils.h"
#include "symoc/Transforms/Passes.h"

#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/PatternMatch.h"

#include <cmath>
#include <map>
#include <set>
#include <numeric>

namespace symoc {
#define GEN_PASS_DEF_RECOMPOSEROTARY
#include "symoc/Transforms/Passes.h.inc"
} // namespace symoc

using namespace mlir;
using namespace symoc::graph;
using namespace symoc::transforms;

namespace symoc {
namespace {

/// g(x)[k] = sign[k] * x[source[k]] along the channel axis.
struct SignedPerm {
  int64_t axis = -1;
  std::vector<int64_t> source, sign;
};

/// One concatenated piece: [Neg](Slice(x)) along `axis`; its coordinates as
/// (source channel, sign).
bool pieceOf(Value v, Value x, int64_t axis, std::vector<std::pair<int64_t, int64_t>> &out) {
  int64_t sign = 1;
  while (auto neg = v.getDefiningOp<NegOp>()) {
    sign = -sign;
    v = neg->getOperand(0);
  }
  if (v == x) {
    int64_t n = cast<RankedTensorType>(x.getType()).getDimSize(axis);
    for (int64_t k = 0; k < n; ++k) out.push_back({k, sign});
    return true;
  }
  auto slice = v.getDefiningOp<SliceOp>();
  if (!slice || slice->getOperand(0) != x) return false;
  auto s = sliceOf(slice);
  if (!s || s->axis != axis) return false;
  for (int64_t k = 0; k < s->count; ++k) out.push_back({s->start + k * s->step, sign});
  return true;
}

/// Rotate-half: Concat along the channel axis of [Neg](Slice(x)) pieces. The channel axis
/// is the last one, as in every exporter's rotary (and the interleaved form): a rotation
/// along another axis (a head axis of [b, h, d]) pairs whole heads, which the Rotary rule's
/// per-channel pairing does not describe (a session-35 audit: per-head GL and a head swap
/// were claimed across such a map). It stays decomposed, under the generic rules.
std::optional<SignedPerm> concatForm(Value g, Value x) {
  auto cat = g.getDefiningOp<ConcatOp>();
  auto xt = dyn_cast<RankedTensorType>(x.getType());
  if (!cat || !xt || !xt.hasStaticShape() || g.getType() != x.getType()) return std::nullopt;
  auto axisAttr = cat->getAttrOfType<IntegerAttr>("axis");
  if (!axisAttr) return std::nullopt;
  int64_t axis = normalizeAxis(axisAttr.getInt(), xt.getRank());
  if (axis < 0 || axis != xt.getRank() - 1) return std::nullopt;
  std::vector<std::pair<int64_t, int64_t>> coords;
  for (Value in : cat->getOperands())
    if (!pieceOf(in, x, axis, coords)) return std::nullopt;
  if (int64_t(coords.size()) != xt.getDimSize(axis)) return std::nullopt;
  SignedPerm p;
  p.axis = axis;
  for (auto [s, sg] : coords) {
    p.source.push_back(s);
    p.sign.push_back(sg);
  }
  return p;
}

/// Interleaved: Reshape(Concat(Unsqueeze(a, -1), Unsqueeze(b, -1), axis -1))
/// whose result has x's type; a, b are [Neg](Slice(x)) along x's last axis:
/// output channel 2m + t is piece t's coordinate m.
std::optional<SignedPerm> interleavedForm(Value g, Value x) {
  auto xt = dyn_cast<RankedTensorType>(x.getType());
  if (!xt || !xt.hasStaticShape() || g.getType() != x.getType() || xt.getRank() < 1)
    return std::nullopt;
  Operation *reshape = g.getDefiningOp();
  if (!isa_and_nonnull<ReshapeOp, FlattenOp>(reshape)) return std::nullopt;
  auto cat = reshape->getOperand(0).getDefiningOp<ConcatOp>();
  if (!cat || cat->getNumOperands() != 2) return std::nullopt;
  auto ct = dyn_cast<RankedTensorType>(cat->getResult(0).getType());
  int64_t r = xt.getRank(), d = xt.getDimSize(r - 1);
  // Concat result: x's shape with the last axis d/2 followed by a new axis 2.
  if (!ct || ct.getRank() != r + 1 || ct.getDimSize(r) != 2 || 2 * ct.getDimSize(r - 1) != d)
    return std::nullopt;
  for (int64_t a = 0; a + 1 < r; ++a)
    if (ct.getDimSize(a) != xt.getDimSize(a)) return std::nullopt;
  auto axisAttr = cat->getAttrOfType<IntegerAttr>("axis");
  if (!axisAttr || normalizeAxis(axisAttr.getInt(), r + 1) != r) return std::nullopt;
  std::vector<std::vector<std::pair<int64_t, int64_t>>> parts(2);
  for (int t = 0; t < 2; ++t) {
    auto un = cat->getOperand(t).getDefiningOp<UnsqueezeOp>();
    if (!un) return std::nullopt;
    std::optional<std::vector<int64_t>> axes =
        un->getNumOperands() > 1 ? constInts(un->getOperand(1)) : intsAttr(un, "axes");
    if (!axes || axes->size() != 1 || normalizeAxis((*axes)[0], r + 1) != r) return std::nullopt;
    if (!pieceOf(un->getOperand(0), x, r - 1, parts[t]) || int64_t(parts[t].size()) != d / 2)
      return std::nullopt;
  }
  SignedPerm p;
  p.axis = r - 1;
  for (int64_t m = 0; m < d / 2; ++m)
    for (int t = 0; t < 2; ++t) {
      p.source.push_back(parts[t][m].first);
      p.sign.push_back(parts[t][m].second);
    }
  return p;
}

/// Channel pairs of g: every channel k with source[source[k]] == k,
/// source[k] != k and opposite signs. Empty when g is not such a pairing.
std::vector<std::pair<int64_t, int64_t>> pairsOf(const SignedPerm &g) {
  int64_t d = int64_t(g.source.size());
  std::vector<std::pair<int64_t, int64_t>> pairs;
  for (int64_t k = 0; k < d; ++k) {
    int64_t j = g.source[k];
    if (j < 0 || j >= d || j == k || g.source[j] != k || g.sign[k] * g.sign[j] != -1)
      return {};
    if (k < j) pairs.push_back({k, j});
  }
  return pairs;
}

using Pairs = std::vector<std::pair<int64_t, int64_t>>;

/// Every entry of `v` is a finite number > 0, for every model input: a constant of such
/// values, Exp of anything (finite tables: overflow aside), a power of such a base, and
/// products, quotients, sums, square roots, reciprocals and casts of such values. What a
/// table divides by, takes the root of or raises must be so: a rotation's sine computed as
/// 1 / angle is infinite at position 0, and [[c, -s], [s, c]] with s infinite does not
/// commute with rotations in floating point (fuzz seed 2120 on Qwen2-MoE).
bool provablyPositive(Value v, const ConstantReader &reader, int depth = 0) {
  Operation *d = v.getDefiningOp();
  if (!d || depth > 24) return false;
  auto rec = [&](Value x) { return provablyPositive(x, reader, depth + 1); };
  if (auto c = dyn_cast<ConstantOp>(d)) {
    auto values = constantValues(c, reader);
    if (!values || values->empty()) return false;
    for (double x : *values)
      if (!(x > 0) || !std::isfinite(x)) return false;
    return true;
  }
  if (isa<ExpOp>(d)) return true;
  if (isa<PowOp>(d)) return rec(d->getOperand(0));
  if (isa<MulOp, DivOp, AddOp>(d)) return rec(d->getOperand(0)) && rec(d->getOperand(1));
  if (isa<SqrtOp, ReciprocalOp, CastOp, IdentityOp, ExpandOp, UnsqueezeOp, SqueezeOp, ReshapeOp, TransposeOp,
          SliceOp, GatherOp>(d))
    return rec(d->getOperand(0));
  if (isa<ConcatOp>(d)) return llvm::all_of(d->getOperands(), rec);
  return false;
}

/// v[.., i, ..] == v[.., j, ..] along `axis` for every pair (i, j) and every
/// index along the other axes, for every value of the model's inputs. Proven
/// from the ops that build v: a constant is read and compared; an elementwise
/// function of pair-equal operands (or of operands broadcast along the axis)
/// is pair-equal; ops that only select, copy or move entries along other
/// axes (Unsqueeze, Squeeze, Slice, Gather, Transpose, Expand, Concat) keep it; a Slice
/// or Concat along the axis maps the pairs onto its operands (HF's
/// cat(freqs, freqs): channel i and i + d/2 are the same entry of freqs).
/// `axis` -1: v is broadcast along the channels (trivially equal).
bool pairEqual(Value v, int64_t axis, const Pairs &pairs, const ConstantReader &reader,
               int depth = 0) {
  if (axis < 0 || pairs.empty()) return true;
  auto vt = dyn_cast<RankedTensorType>(v.getType());
  if (!vt || axis >= vt.getRank() || vt.isDynamicDim(axis) || depth > 24) return false;
  int64_t n = vt.getDimSize(axis), r = vt.getRank();
  for (auto [i, j] : pairs)
    if (i < 0 || j < 0 || i >= n || j >= n) return false;
  Operation *d = v.getDefiningOp();
  if (!d) return false; // a model input: its values are not known
  auto recurse = [&](Value in, int64_t a, const Pairs &p) {
    return pairEqual(in, a, p, reader, depth + 1);
  };
  if (auto c = dyn_cast<ConstantOp>(d)) {
    auto values = constantValues(c, reader);
    if (!values) return false;
    int64_t inner = 1, outer = 1;
    for (int64_t a = 0; a < r; ++a) {
      if (a < axis) outer *= vt.getDimSize(a);
      if (a > axis) inner *= vt.getDimSize(a);
    }
    for (int64_t o = 0; o < outer; ++o)
      for (int64_t in = 0; in < inner; ++in)
        for (auto [i, j] : pairs)
          if ((*values)[size_t((o * n + i) * inner + in)] != (*values)[size_t((o * n + j) * inner + in)])
            return false;
    return true;
  }
  // Elementwise ops: every operand, aligned from the right, is pair-equal or
  // broadcast (size 1 or absent) along the axis.
  // A root, a reciprocal, a quotient or a power can leave the finite numbers: their operand
  // (divisor, base) must be provably positive.
  if (isa<SqrtOp, ReciprocalOp>(d) && !provablyPositive(d->getOperand(0), reader)) return false;
  if (isa<DivOp>(d) && !provablyPositive(d->getOperand(1), reader)) return false;
  if (isa<PowOp>(d) && !provablyPositive(d->getOperand(0), reader)) return false;
  if (isa<CastOp, CosOp, SinOp, NegOp, ExpOp, SqrtOp, ReciprocalOp, IdentityOp, MulOp, DivOp,
          AddOp, SubOp, PowOp>(d)) {
    for (Value in : d->getOperands()) {
      auto it = dyn_cast<RankedTensorType>(in.getType());
      if (!it) return false;
      int64_t a = axis - (r - it.getRank());
      if (a < 0 || (!it.isDynamicDim(a) && it.getDimSize(a) == 1)) continue;
      if (!recurse(in, a, pairs)) return false;
    }
    return true;
  }
  if (auto un = dyn_cast<UnsqueezeOp>(d)) {
    std::optional<std::vector<int64_t>> axes =
        un->getNumOperands() > 1 ? constInts(un->getOperand(1)) : intsAttr(un, "axes");
    if (!axes) return false;
    int64_t before = 0;
    for (int64_t a : *axes) {
      int64_t na = normalizeAxis(a, r);
      if (na < 0 || na == axis) return false;
      before += na < axis;
    }
    return recurse(d->getOperand(0), axis - before, pairs);
  }
  if (auto sq = dyn_cast<SqueezeOp>(d)) {
    // Output axis k is the k-th input axis that is not removed.
    auto it = dyn_cast<RankedTensorType>(d->getOperand(0).getType());
    if (!it) return false;
    std::optional<std::vector<int64_t>> axes;
    if (sq->getNumOperands() > 1) axes = constInts(sq->getOperand(1));
    else if (sq->getAttr("axes")) axes = intsAttr(sq, "axes");
    else {
      axes.emplace();
      for (int64_t a = 0; a < it.getRank(); ++a)
        if (!it.isDynamicDim(a) && it.getDimSize(a) == 1) axes->push_back(a);
    }
    if (!axes) return false;
    std::set<int64_t> removed;
    for (int64_t a : *axes) {
      int64_t na = normalizeAxis(a, it.getRank());
      if (na < 0) return false;
      removed.insert(na);
    }
    for (int64_t a = 0, k = 0; a < it.getRank(); ++a) {
      if (removed.count(a)) continue;
      if (k++ == axis) return recurse(d->getOperand(0), a, pairs);
    }
    return false;
  }
  if (auto sl = dyn_cast<SliceOp>(d)) {
    auto info = sliceOf(sl);
    if (!info) return false;
    if (info->axis != axis) return recurse(d->getOperand(0), axis, pairs);
    Pairs mapped;
    for (auto [i, j] : pairs)
      mapped.push_back({info->start + i * info->step, info->start + j * info->step});
    return recurse(d->getOperand(0), axis, mapped);
  }
  if (auto g = dyn_cast<GatherOp>(d)) {
    // out = data[.., idx, ..] at `ga`: data's axes before ga keep their
    // place, idx's axes replace ga, the rest shift by rank(idx) - 1.
    Value data = d->getOperand(0);
    auto dt = dyn_cast<RankedTensorType>(data.getType());
    auto it = dyn_cast<RankedTensorType>(d->getOperand(1).getType());
    if (!dt || !it) return false;
    auto ga0 = d->getAttrOfType<IntegerAttr>("axis");
    int64_t ga = normalizeAxis(ga0 ? ga0.getInt() : 0, dt.getRank()), q = it.getRank();
    if (ga < 0) return false;
    if (axis < ga) return recurse(data, axis, pairs);
    if (axis >= ga + q) return recurse(data, axis - q + 1, pairs);
    return false; // the channels come from the indices
  }
  if (auto tr = dyn_cast<TransposeOp>(d)) {
    std::optional<std::vector<int64_t>> perm = intsAttr(tr, "perm");
    if (!perm || int64_t(perm->size()) != r) return false;
    return recurse(d->getOperand(0), (*perm)[size_t(axis)], pairs);
  }
  if (isa<ExpandOp>(d)) {
    auto it = dyn_cast<RankedTensorType>(d->getOperand(0).getType());
    if (!it) return false;
    int64_t a = axis - (r - it.getRank());
    if (a < 0 || (!it.isDynamicDim(a) && it.getDimSize(a) == 1)) return true;
    return recurse(d->getOperand(0), a, pairs);
  }
  if (auto cat = dyn_cast<ConcatOp>(d)) {
    auto ax = cat->getAttrOfType<IntegerAttr>("axis");
    if (!ax) return false;
    int64_t ca = normalizeAxis(ax.getInt(), r);
    if (ca < 0) return false;
    if (ca != axis) {
      for (Value in : d->getOperands())
        if (!recurse(in, axis, pairs)) return false;
      return true;
    }
    // Channel k of the result is channel k - offset of one operand.
    std::vector<std::pair<unsigned, int64_t>> where;
    for (unsigned o = 0; o < d->getNumOperands(); ++o) {
      auto it = dyn_cast<RankedTensorType>(d->getOperand(o).getType());
      if (!it || it.getRank() != r || it.isDynamicDim(axis)) return false;
      for (int64_t k = 0; k < it.getDimSize(axis); ++k) where.push_back({o, k});
    }
    if (int64_t(where.size()) != n) return false;
    std::map<unsigned, Pairs> inside;
    for (auto [i, j] : pairs) {
      auto [oi, li] = where[size_t(i)];
      auto [oj, lj] = where[size_t(j)];
      if (d->getOperand(oi) == d->getOperand(oj) && li == lj) continue; // the same entry
      if (oi != oj) return false;
      inside[oi].push_back({li, lj});
    }
    for (auto &[o, p] : inside)
      if (!recurse(d->getOperand(o), axis, p)) return false;
    return true;
  }
  return false;
}

/// The table operand of Mul(a, b) other than `data`, when the product has
/// data's type (the table broadcasts into it).
Value tableOf(Operation *mul, Value data) {
  if (!isa_and_nonnull<MulOp>(mul) || mul->getResult(0).getType() != data.getType())
    return {};
  if (mul->getOperand(0) == data) return mul->getOperand(1);
  if (mul->getOperand(1) == data) return mul->getOperand(0);
  return {};
}

/// The channel axis of a table broadcast into a value of rank r with the
/// channels at axis c: -1 when the table's size there is 1 or it is absent;
/// -2 when the table does not broadcast.
int64_t tableChannelAxis(Value t, RankedTensorType yt, int64_t c) {
  auto tt = dyn_cast<RankedTensorType>(t.getType());
  if (!tt || tt.getRank() > yt.getRank()) return -2;
  int64_t shift = yt.getRank() - tt.getRank();
  for (int64_t i = 0; i < tt.getRank(); ++i)
    if (tt.getDimSize(i) != 1 && tt.getDimSize(i) != yt.getDimSize(i + shift)) return -2;
  int64_t i = c - shift;
  if (i < 0 || tt.getDimSize(i) == 1) return -1;
  return i;
}

bool recomposeAt(AddOp add, const ConstantReader &reader, IRRewriter &rewriter) {
  for (int first = 0; first < 2; ++first) {
    Operation *m1 = add->getOperand(first).getDefiningOp();
    Operation *m2 = add->getOperand(1 - first).getDefiningOp();
    if (!isa_and_nonnull<MulOp>(m1) || !isa_and_nonnull<MulOp>(m2)) continue;
    for (int xi = 0; xi < 2; ++xi) {
      Value x = m1->getOperand(xi), cosv = m1->getOperand(1 - xi);
      auto xt = dyn_cast<RankedTensorType>(x.getType());
      if (!xt || !xt.hasStaticShape() || add->getResult(0).getType() != x.getType() ||
          !tableOf(m1, x))
        continue;
      for (int gi = 0; gi < 2; ++gi) {
        Value g = m2->getOperand(gi), sinv = m2->getOperand(1 - gi);
        if (tableOf(m2, g) != sinv) continue;
        std::optional<SignedPerm> perm = concatForm(g, x);
        if (!perm) perm = interleavedForm(g, x);
        if (!perm) continue;
        auto pairs = pairsOf(*perm);
        if (pairs.empty()) continue;
        int64_t ca = tableChannelAxis(cosv, xt, perm->axis);
        int64_t sa = tableChannelAxis(sinv, xt, perm->axis);
        if (ca == -2 || sa == -2) continue;
        if (!pairEqual(cosv, ca, pairs, reader) || !pairEqual(sinv, sa, pairs, reader)) continue;
        std::vector<int64_t> flat;
        for (auto [i, j] : pairs) {
          flat.push_back(i);
          flat.push_back(j);
        }
        rewriter.setInsertionPoint(add);
        auto rot = rewriter.create<RotaryOp>(
            add->getLoc(), TypeRange{x.getType()}, x, cosv, sinv,
            rewriter.getI64IntegerAttr(perm->axis), rewriter.getDenseI64ArrayAttr(perm->source),
            rewriter.getDenseI64ArrayAttr(perm->sign), rewriter.getDenseI64ArrayAttr(flat));
        rewriter.replaceOp(add, rot->getResults());
        // The two products and the pieces of g, erased once unused.
        SmallVector<Operation *> cand{m1, m2};
        SmallVector<Operation *> stack{g.getDefiningOp()};
        while (!stack.empty()) {
          Operation *op = stack.pop_back_val();
          if (!op || op == x.getDefiningOp() || llvm::is_contained(cand, op) ||
              !isa<ConcatOp, NegOp, SliceOp, UnsqueezeOp, ReshapeOp, FlattenOp>(op))
            continue;
          cand.push_back(op);
          for (Value v : op->getOperands())
            if (v != x) stack.push_back(v.getDefiningOp());
        }
        eraseUnused(rewriter, cand);
        return true;
      }
    }
  }
  return false;
}

struct RecomposeRotaryPass : public impl::RecomposeRotaryBase<RecomposeRotaryPass> {
  RecomposeRotaryPass() = default;
  explicit RecomposeRotaryPass(ConstantReader r) : reader(std::move(r)) {}
  void runOnOperation() override {
    rewriteEach(getOperation(), [&](Operation *op, IRRewriter &rewriter) {
      auto add = dyn_cast<AddOp>(op);
      return add && add->getNumOperands() == 2 && recomposeAt(add, reader, rewriter);
    });
  }
  ConstantReader reader;
};

} // namespace

std::unique_ptr<Pass> createRecomposeRotaryPass(ConstantReader reader) {
  return std::make_unique<RecomposeRotaryPass>(std::move(reader));
}

} // namespace symoc
