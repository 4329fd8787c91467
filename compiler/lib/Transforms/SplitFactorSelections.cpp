//===- SplitFactorSelections.cpp - Selections along one factor of a split axis ===//
//
// A fused projection's output axis is often reshaped into several factors, and
// every consumer then takes constant indices along one of them:
//   timm ViT:          qkv.reshape(B, N, 3, H, d).permute(2, 0, 3, 1, 4); q, k, v = qkv.unbind(0)
//   (H, 3, d) layout:  qkv.reshape(B, N, H, 3, d); q = qkv[..., 0, :]
//   GQA fused layout:  qkv.reshape(B, N, KV, g + 2, d); q = qkv[..., :g, :]; k = qkv[..., -2, :]
// The space analysis follows two-factor splits (H, d) only, so such a reshape
// fixes the whole axis. Let R = Reshape(X) split X's axis a into factors
// (f_0, .., f_{k-1}) (every other axis unchanged), and let every use of R,
// through Transposes, take a constant index or range [s, e) along factor j
// (Slice, Gather with constant indices, Split). Row-major order puts element
// (p, i, q) of the factors (p before j, i at j, q after j) at X's position
// (p * f_j + i) * P + q along a, P = f_{j+1} * .. * f_{k-1}; so a selection
// [s, e) takes, for each p, the contiguous block [(p f_j + s) P, (p f_j + e) P).
// Each selection is rebuilt from X:
//   blocks:  Concat over p of Slice(X, block p) along a, Reshape to the
//            selection's factors (j == 0: one Slice, then the (H, d) split);
//   inner:   when the selection leaves a single axis after the factors before
//            j (the (H, 3, d) layout: (H, d)), Reshape(X, (f_0..f_{j-1},
//            f_j * P)) shared by all selections, then Slice [s P, e P) of its
//            last axis: the heads stay one axis, which keeps head permutations.
// followed by the same Transposes (without the factor axis when a scalar
// Gather removed it). The result replaces the selection, and a Reshape that
// consumes it directly is folded into the rebuilt one (a reshape of a reshape
// is one reshape). Every rewrite computes the same values; anything else (a
// non-constant index, another use, a factor mixed with other axes by a
// Reshape) is left alone and stays a barrier.
//
//===----------------------------------------------------------------------===//

#include "MatchUtils.h"
#include "symoc/Transforms/Passes.h"

#include "mlir/IR/PatternMatch.h"

#include <numeric>

namespace symoc {
#define GEN_PASS_DEF_SPLITFACTORSELECTIONS
#include "symoc/Transforms/Passes.h.inc"
} // namespace symoc

using namespace mlir;
using namespace symoc::graph;
using namespace symoc::transforms;

namespace symoc {
namespace {

using Shape = SmallVector<int64_t>;

int64_t product(ArrayRef<int64_t> v) {
  return std::accumulate(v.begin(), v.end(), int64_t(1), std::multiplies<int64_t>());
}

/// X's axis `axis` is R's axes [first, first + factors.size()).
struct FactorSplit {
  int64_t axis = -1, first = -1;
  Shape factors;
};

/// Every way R's shape splits one axis of X's shape into >= 2 factors with all
/// other axes equal and in order (usually one; several only with unit axes).
SmallVector<FactorSplit> splitsOf(ArrayRef<int64_t> xs, ArrayRef<int64_t> rs) {
  SmallVector<FactorSplit> out;
  int64_t rx = int64_t(xs.size()), ry = int64_t(rs.size()), k = ry - rx + 1;
  if (k < 2)
    return out;
  for (int64_t a = 0; a < rx; ++a) {
    if (!std::equal(xs.begin(), xs.begin() + a, rs.begin()) ||
        !std::equal(xs.begin() + a + 1, xs.end(), rs.begin() + a + k))
      continue;
    Shape f(rs.begin() + a, rs.begin() + a + k);
    if (product(f) == xs[size_t(a)] && llvm::all_of(f, [](int64_t n) { return n > 0; }))
      out.push_back({a, a, f});
  }
  return out;
}

/// One use that takes [start, start + count) along the factor.
struct Selection {
  Operation *op = nullptr;
  unsigned result = 0;
  int64_t start = 0, count = 0;
  bool keep = true;                // false: a scalar Gather removed the factor axis
  SmallVector<Operation *> chain;  // the Transposes from R to op, in order
};

std::optional<std::vector<int64_t>> permOf(Operation *tr, int64_t rank) {
  if (auto p = intsAttr(tr, "perm"))
    return int64_t(p->size()) == rank ? p : std::nullopt;
  std::vector<int64_t> rev;
  for (int64_t a = rank - 1; a >= 0; --a)
    rev.push_back(a);
  return rev;
}

/// Collects the selections along the factor at axis `pos` of `v` (size `n`);
/// false when some use is not one.
bool collect(Value v, int64_t pos, int64_t n, SmallVector<Operation *> &chain,
             SmallVector<Selection> &out) {
  int64_t rank = rankOf(v);
  for (OpOperand &use : v.getUses()) {
    Operation *user = use.getOwner();
    if (use.getOperandNumber() != 0)
      return false; // v is an index or a shape there, not the data
    if (isa<TransposeOp>(user)) {
      auto perm = permOf(user, rank);
      if (!perm || user->getNumResults() != 1)
        return false;
      int64_t next = std::find(perm->begin(), perm->end(), pos) - perm->begin();
      if (next >= rank)
        return false;
      chain.push_back(user);
      bool ok = collect(user->getResult(0), next, n, chain, out);
      chain.pop_back();
      if (!ok)
        return false;
      continue;
    }
    Selection sel;
    sel.op = user;
    sel.chain = chain;
    if (isa<SliceOp>(user)) {
      auto s = sliceOf(user);
      if (!s || s->axis != pos || s->step != 1 || s->count < 1)
        return false;
      sel.start = s->start;
      sel.count = s->count;
      out.push_back(sel);
      continue;
    }
    if (isa<GatherOp>(user)) {
      auto ax = user->getAttrOfType<IntegerAttr>("axis");
      auto idx = constInts(user->getOperand(1));
      int64_t ri = rankOf(user->getOperand(1));
      if (normalizeAxis(ax ? ax.getInt() : 0, rank) != pos || !idx || idx->empty() || ri > 1 ||
          ri < 0)
        return false;
      for (int64_t &i : *idx) {
        if (i < -n || i >= n)
          return false;
        if (i < 0)
          i += n;
      }
      // Contiguous ascending indices are a range; anything else reorders.
      for (size_t t = 1; t < idx->size(); ++t)
        if ((*idx)[t] != (*idx)[0] + int64_t(t))
          return false;
      sel.start = (*idx)[0];
      sel.count = int64_t(idx->size());
      sel.keep = ri == 1;
      out.push_back(sel);
      continue;
    }
    if (isa<SplitOp>(user)) {
      auto ax = user->getAttrOfType<IntegerAttr>("axis");
      if (normalizeAxis(ax ? ax.getInt() : 0, rank) != pos)
        return false;
      int64_t offset = 0;
      for (unsigned r = 0; r < user->getNumResults(); ++r) {
        auto rt = dyn_cast<RankedTensorType>(user->getResult(r).getType());
        if (!rt || rt.getRank() != rank || rt.isDynamicDim(pos))
          return false;
        Selection part = sel;
        part.result = r;
        part.start = offset;
        part.count = rt.getDimSize(pos);
        offset += part.count;
        if (part.count > 0 && !user->getResult(r).use_empty())
          out.push_back(part);
      }
      if (offset != n)
        return false;
      continue;
    }
    return false;
  }
  return true;
}

Shape nonUnit(ArrayRef<int64_t> s) {
  Shape out;
  for (int64_t n : s)
    if (n != 1)
      out.push_back(n);
  return out;
}

/// The rebuilt selection: how to take it from X, then which Transposes.
struct Plan {
  Shape target;                                   // before the Transposes
  bool inner = false;                             // the inner form (else blocks)
  SmallVector<std::vector<int64_t>> perms;        // one per Transpose of the chain
};

/// Plans one selection; nullopt when the rebuilt value would not have the
/// selection's type (then nothing is rewritten).
std::optional<Plan> planOf(const Selection &sel, ArrayRef<int64_t> xs, ArrayRef<int64_t> rs,
                           const FactorSplit &fs, size_t j) {
  Plan plan;
  int64_t fpos = fs.first + int64_t(j);
  int64_t p = product(ArrayRef<int64_t>(fs.factors).drop_front(j + 1));
  plan.target.assign(rs.begin(), rs.end());
  if (sel.keep)
    plan.target[size_t(fpos)] = sel.count;
  else
    plan.target.erase(plan.target.begin() + fpos);
  Shape sliced(xs.begin(), xs.begin() + fs.axis);
  sliced.append(fs.factors.begin(), fs.factors.begin() + j);
  sliced.push_back(sel.count * p);
  sliced.append(xs.begin() + fs.axis + 1, xs.end());
  plan.inner = j > 0 && nonUnit(sliced) == nonUnit(plan.target);
  // The Transposes, with the factor axis dropped from each perm when it is gone.
  Shape dims = plan.target;
  int64_t gone = sel.keep ? -1 : fpos; // the removed axis, in the chain's coordinates
  for (Operation *tr : sel.chain) {
    auto perm = permOf(tr, int64_t(gone < 0 ? dims.size() : dims.size() + 1));
    if (!perm)
      return std::nullopt;
    std::vector<int64_t> np;
    int64_t nextGone = -1;
    for (size_t i = 0; i < perm->size(); ++i) {
      int64_t q = (*perm)[i];
      if (q == gone) {
        nextGone = int64_t(i);
        continue;
      }
      np.push_back(gone >= 0 && q > gone ? q - 1 : q);
    }
    Shape next;
    for (int64_t q : np)
      next.push_back(dims[size_t(q)]);
    dims = next;
    gone = nextGone;
    plan.perms.push_back(np);
  }
  auto want = staticShape(sel.op->getResult(sel.result));
  if (!want || *want != dims)
    return std::nullopt;
  return plan;
}

/// A use of `v` that only reshapes it (Reshape, Flatten, Squeeze, Unsqueeze:
/// row-major order kept) and is its only use.
Operation *onlyReshapeUser(Value v) {
  if (!v.hasOneUse())
    return nullptr;
  OpOperand &use = *v.use_begin();
  Operation *user = use.getOwner();
  if (!isa<ReshapeOp, FlattenOp, SqueezeOp, UnsqueezeOp>(user) || use.getOperandNumber() != 0 ||
      user->getNumResults() != 1 || !staticShape(user->getResult(0)))
    return nullptr;
  return user;
}

bool rewriteAt(ReshapeOp reshape, IRRewriter &rewriter) {
  if (reshape->getNumOperands() < 2 || reshape->getNumResults() != 1 || opsetOf(reshape) < 5)
    return false;
  Value x = reshape->getOperand(0), r = reshape->getResult(0);
  auto xs = staticShape(x), rs = staticShape(r);
  // Float data only: integer reshapes are shape arithmetic, not projections.
  if (!xs || !rs || !isFloatTensor(x))
    return false;
  for (const FactorSplit &fs : splitsOf(*xs, *rs)) {
    // j < k - 1: the last factor's selections are strided in X, no blocks.
    for (size_t j = 0; j + 1 < fs.factors.size(); ++j) {
      SmallVector<Selection> sels;
      SmallVector<Operation *> chain;
      if (!collect(r, fs.first + int64_t(j), fs.factors[j], chain, sels) || sels.empty())
        continue;
      SmallVector<Plan> plans;
      for (const Selection &s : sels) {
        auto plan = planOf(s, *xs, *rs, fs, j);
        if (!plan)
          break;
        plans.push_back(*plan);
      }
      if (plans.size() != sels.size())
        continue;

      int64_t fj = fs.factors[j];
      int64_t p = product(ArrayRef<int64_t>(fs.factors).drop_front(j + 1));
      int64_t q = product(ArrayRef<int64_t>(fs.factors).take_front(j));
      Value prefix; // Reshape(X, (.., f_0..f_{j-1}, f_j * P, ..)), shared
      SmallVector<Operation *> dead{reshape};
      for (auto [sel, plan] : llvm::zip(sels, plans)) {
        Location loc = sel.op->getLoc();
        Value v;
        if (plan.inner) {
          if (!prefix) {
            Shape ps(xs->begin(), xs->begin() + fs.axis);
            ps.append(fs.factors.begin(), fs.factors.begin() + j);
            ps.push_back(fj * p);
            ps.append(xs->begin() + fs.axis + 1, xs->end());
            rewriter.setInsertionPoint(reshape);
            prefix = buildReshape(rewriter, reshape->getLoc(), x, ps);
          }
          rewriter.setInsertionPoint(sel.op);
          v = buildSlice(rewriter, loc, prefix, fs.axis + int64_t(j), sel.start * p,
                         (sel.start + sel.count) * p);
        } else {
          rewriter.setInsertionPoint(sel.op);
          SmallVector<Value> blocks;
          for (int64_t b = 0; b < q; ++b)
            blocks.push_back(buildSlice(rewriter, loc, x, fs.axis, (b * fj + sel.start) * p,
                                        (b * fj + sel.start + sel.count) * p));
          v = blocks.size() == 1 ? blocks[0] : buildConcat(rewriter, loc, blocks, fs.axis);
        }
        Value beforeReshape = v;
        if (*staticShape(v) != plan.target)
          v = buildReshape(rewriter, loc, v, plan.target);
        for (const auto &perm : plan.perms)
          v = buildTranspose(rewriter, loc, v, perm);
        Value old = sel.op->getResult(sel.result);
        // A reshape of the selection (InternLM2's (KV, g, d) -> (KV * g, d)) is
        // one reshape of the rebuilt slices.
        if (plan.perms.empty() && v != beforeReshape) {
          if (Operation *user = onlyReshapeUser(old)) {
            rewriter.setInsertionPoint(user);
            Shape want = *staticShape(user->getResult(0));
            Value folded = *staticShape(beforeReshape) == want
                               ? beforeReshape
                               : buildReshape(rewriter, user->getLoc(), beforeReshape, want);
            rewriter.replaceAllUsesWith(user->getResult(0), folded);
            dead.push_back(user);
            dead.push_back(v.getDefiningOp()); // unused once `user` is gone
          }
        }
        rewriter.replaceAllUsesWith(old, v);
        dead.push_back(sel.op);
        dead.append(sel.chain.begin(), sel.chain.end());
      }
      eraseUnused(rewriter, dead);
      return true;
    }
  }
  return false;
}

struct SplitFactorSelectionsPass
    : public impl::SplitFactorSelectionsBase<SplitFactorSelectionsPass> {
  void runOnOperation() override {
    // A rebuilt selection may itself be a split with selections (qkv[0][1]
    // on a four-factor split): a few rounds, each removing selections.
    for (int round = 0; round < 4; ++round)
      if (!rewriteEach(getOperation(), [](Operation *op, IRRewriter &rewriter) {
            auto reshape = dyn_cast<ReshapeOp>(op);
            return reshape && rewriteAt(reshape, rewriter);
          }))
        break;
  }
};

} // namespace
} // namespace symoc
