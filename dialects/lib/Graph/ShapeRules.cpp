//===- ShapeRules.cpp - Rules of data movement and shape ops --------------===//
//
// These ops move axes around without computing on them: they tie axes of the
// input to axes of the output. Anything they cannot express as such a map
// (merging two non-trivial axes, strided slices, gathers along an axis) fixes
// the axes involved.
//
//===----------------------------------------------------------------------===//

#include "RuleHelpers.h"

#include <algorithm>

using namespace mlir;

namespace symoc::graph {
namespace {

/// A group of axes of x and of y with the same product, several on each side
/// (a batch axis merged with the heads: [S, B, H*d] <-> [S, B*H, d], or
/// [S, B*H, d] -> [S*B, H*d]). When the two row-major layouts refine into
/// common digits (every axis is a run of digits), an axis W made of two digits
/// (H, d) is factored when d is one axis I of the other side and H is the
/// innermost digit of an axis M there: M is H itself (a plain head split) or a
/// product (r, H) whose other digits belong to axes that are fixed. Every axis
/// of the group not in such a factor is fixed. Returns false (nothing said)
/// when the layouts do not refine.
bool factorDigits(SpaceBuilder &b, Value x, std::vector<int64_t> xa, Value y,
                  std::vector<int64_t> ya) {
  // Boundaries as strides from the inner end: axis k (inner-first) spans
  // strides [s[k], s[k+1]).
  auto strides = [](Value v, const std::vector<int64_t> &axes) {
    std::vector<int64_t> s{1};
    for (size_t k = axes.size(); k-- > 0;)
      s.push_back(s.back() * dimOf(v, axes[k]));
    return s;
  };
  std::vector<int64_t> sx = strides(x, xa), sy = strides(y, ya);
  std::vector<int64_t> all(sx);
  all.insert(all.end(), sy.begin(), sy.end());
  std::sort(all.begin(), all.end());
  all.erase(std::unique(all.begin(), all.end()), all.end());
  for (size_t t = 0; t + 1 < all.size(); ++t)
    if (all[t] <= 0 || all[t + 1] % all[t] != 0)
      return false;
  auto digit = [&](int64_t stride) {
    return int64_t(std::lower_bound(all.begin(), all.end(), stride) - all.begin());
  };
  struct Span {
    Value v;
    int64_t axis, lo, hi; // digits [lo, hi), inner-first
    bool used = false;
  };
  auto spans = [&](Value v, const std::vector<int64_t> &axes, const std::vector<int64_t> &s) {
    std::vector<Span> out;
    for (size_t k = 0; k < axes.size(); ++k)
      out.push_back({v, axes[axes.size() - 1 - k], digit(s[k]), digit(s[k + 1])});
    return out;
  };
  std::vector<Span> X = spans(x, xa, sx), Y = spans(y, ya, sy);
  auto match = [&](std::vector<Span> &whole, std::vector<Span> &parts) {
    for (Span &w : whole) {
      if (w.used || w.hi - w.lo != 2)
        continue;
      Span *inner = nullptr, *outer = nullptr;
      for (Span &p : parts) {
        if (p.lo == w.lo && p.hi == w.lo + 1)
          inner = &p;
        if (p.lo == w.lo + 1 && p.hi >= w.lo + 2)
          outer = &p;
      }
      if (!inner || !outer || inner->used || outer->used)
        continue;
      w.used = inner->used = outer->used = true;
      int64_t heads = all[w.lo + 2] / all[w.lo + 1];
      b.factor(w.v, w.axis, outer->v, outer->axis, inner->axis,
               outer->hi == w.lo + 2 ? 0 : heads);
    }
  };
  match(X, Y);
  match(Y, X);
  // A digit exchange: an axis W whose outermost digits are one axis O of the
  // other side and whose remaining (inner) digits are the outermost digits of
  // an axis M there, M going on inward (GroupNorm's [N, G*r, H, W] <->
  // [N, G, r*H*W]: W the channels, O the groups, M the groups' channels with
  // the pixels). Read as a head split of W into (O, r) whose inner part r is
  // merged with positions into M: M is indexed by O, and each head's r
  // coordinates are r blocks of M (exchangeDigits). Looked for before the
  // merges with positions, which would take M's innermost digits first.
  auto exchange = [&](std::vector<Span> &whole, std::vector<Span> &parts) {
    for (Span &w : whole) {
      if (w.used || w.hi - w.lo < 2)
        continue;
      Span *outer = nullptr, *merged = nullptr;
      for (Span &p : parts)
        if (!p.used && p.hi == w.hi && p.lo > w.lo)
          outer = &p;
      if (!outer)
        continue;
      for (Span &p : parts)
        if (!p.used && p.hi == outer->lo && p.lo < w.lo)
          merged = &p;
      if (!merged)
        continue;
      w.used = outer->used = merged->used = true;
      b.exchangeDigits(w.v, w.axis, outer->v, outer->axis, merged->axis,
                       all[outer->lo] / all[w.lo]);
    }
  };
  exchange(X, Y);
  exchange(Y, X);
  // A merged axis (three digits or more, or two whose parts are not both its
  // own) with positions along axes that stay fixed:
  // - its innermost digits one axis I of the other side (timm's Swin patch
  //   merging, [.., 2, 2, C] -> [.., 4C]): coordinate k*|I| + c is
  //   coordinate c of I at position k, so each run of |I| coordinates is I;
  // - its outermost digits one axis O of the other side (a convolution's
  //   channels flattened with the spatial axes before a linear layer,
  //   GroupNorm's channels as [groups, channels per group] merged with the
  //   spatial axes): coordinate k*r + j is position j of block k, and O
  //   permutes whole blocks.
  // Both at once when both exist; every other axis of the group is fixed.
  auto mergedWithPositions = [&](std::vector<Span> &whole, std::vector<Span> &parts) {
    for (Span &w : whole) {
      if (w.used || w.hi - w.lo < 2)
        continue;
      Span *inner = nullptr, *outer = nullptr;
      for (Span &p : parts) {
        if (!p.used && p.lo == w.lo && p.hi < w.hi)
          inner = &p;
        if (!p.used && p.hi == w.hi && p.lo > w.lo)
          outer = &p;
      }
      if (!inner && !outer)
        continue;
      w.used = true;
      if (inner) {
        inner->used = true;
        const int64_t n = all[inner->hi] / all[inner->lo], copies = all[w.hi] / all[inner->hi];
        for (int64_t k = 0; k < copies; ++k)
          b.slice(w.v, w.axis, k * n, n, inner->v, inner->axis);
      }
      if (outer) {
        outer->used = true;
        b.factorPositions(w.v, w.axis, outer->v, outer->axis, all[outer->lo] / all[w.lo],
                          /*innerTied=*/inner ? all[inner->hi] / all[inner->lo] : 0);
      }
    }
  };
  mergedWithPositions(X, Y);
  mergedWithPositions(Y, X);
  for (auto *side : {&X, &Y})
    for (Span &sp : *side)
      if (!sp.used)
        b.restrict(sp.v, sp.axis, kNone, "reshape merges or splits this axis");
  return true;
}

/// Ties the non-unit axes of x and y when they correspond one to one (sizes
/// match in order once size-1 axes are dropped); otherwise groups axes by
/// equal products and fixes every group that is not one-to-one.
void reshapeLike(SpaceBuilder &b, Operation *op, Value x, Value y) {
  auto xt = dyn_cast<RankedTensorType>(x.getType());
  auto yt = dyn_cast<RankedTensorType>(y.getType());
  if (!xt || !yt || !xt.hasStaticShape() || !yt.hasStaticShape()) {
    // Dynamic shapes: only a reshape that keeps the trailing axis intact can
    // be followed; everything else is fixed.
    barrier(b, op, "reshape with dynamic shape");
    return;
  }
  std::vector<int64_t> xs, ys;
  for (int64_t a = 0; a < xt.getRank(); ++a)
    if (xt.getDimSize(a) != 1)
      xs.push_back(a);
  for (int64_t a = 0; a < yt.getRank(); ++a)
    if (yt.getDimSize(a) != 1)
      ys.push_back(a);
  size_t i = 0, j = 0;
  while (i < xs.size() && j < ys.size()) {
    size_t i0 = i, j0 = j;
    int64_t px = xt.getDimSize(xs[i++]), py = yt.getDimSize(ys[j++]);
    while (px != py) {
      if (px < py && i < xs.size())
        px *= xt.getDimSize(xs[i++]);
      else if (py < px && j < ys.size())
        py *= yt.getDimSize(ys[j++]);
      else
        break;
    }
    if (i - i0 == 1 && j - j0 == 1 && px == py) {
      tieSame(b, x, xs[i0], y, ys[j0]);
      continue;
    }
    // One axis split in two (D -> H x d_h) or two merged into one: a factored
    // space, followed per head.
    if (px == py && i - i0 == 1 && j - j0 == 2) {
      b.factor(x, xs[i0], y, ys[j0], ys[j0 + 1]);
      continue;
    }
    if (px == py && i - i0 == 2 && j - j0 == 1) {
      b.factor(y, ys[j0], x, xs[i0], xs[i0 + 1]);
      continue;
    }
    if (px == py &&
        factorDigits(b, x, {xs.begin() + i0, xs.begin() + i}, y, {ys.begin() + j0, ys.begin() + j}))
      continue;
    // Anything else is not followed: the axes are fixed (sound, possibly
    // missing symmetries).
    for (size_t k = i0; k < i; ++k)
      b.restrict(x, xs[k], kNone, "reshape merges or splits this axis");
    for (size_t k = j0; k < j; ++k)
      b.restrict(y, ys[k], kNone, "reshape merges or splits this axis");
  }
  for (; i < xs.size(); ++i)
    b.restrict(x, xs[i], kNone, "reshape");
  for (; j < ys.size(); ++j)
    b.restrict(y, ys[j], kNone, "reshape");
}

/// Split and Concat: `part` is [offset, offset + its size) of `whole` along
/// `axis`; every other axis moves unchanged. `offset` < 0: an earlier piece
/// was dynamic. Returns the next offset: -1 once a size along the axis is
/// dynamic (torch.split by data-dependent sizes, e.g. tokens per expert): then
/// the axis is fixed on both sides, since no position can be followed, and the
/// other axes still move unchanged; -2 (the op made a barrier) when the piece
/// does not fit.
int64_t tiePiece(SpaceBuilder &b, Operation *op, Value whole, Value part,
                 int64_t axis, int64_t offset) {
  const int64_t n = dimOf(part, axis), size = dimOf(whole, axis);
  if (rankOf(part) != rankOf(whole) ||
      (offset >= 0 && n >= 0 && size >= 0 && offset + n > size)) {
    barrier(b, op, "split or concatenation pieces do not fit the whole");
    return -2;
  }
  const bool dynamic = offset < 0 || n < 0 || size < 0;
  if (dynamic) {
    b.restrict(whole, axis, kNone, "split or concatenation along a dynamic axis");
    b.restrict(part, axis, kNone, "split or concatenation along a dynamic axis");
  } else {
    b.slice(whole, axis, offset, n, part, axis);
  }
  for (int64_t a = 0, r = rankOf(whole); a < r; ++a)
    if (a != axis)
      tieSame(b, part, a, whole, a);
  return dynamic ? -1 : offset + n;
}

} // namespace

void ReshapeOp::applySymmetryRule(SpaceBuilder &b) {
  reshapeLike(b, *this, getOperand(0), getResult(0));
}
void SqueezeOp::applySymmetryRule(SpaceBuilder &b) {
  reshapeLike(b, *this, getOperand(0), getResult(0));
}
void UnsqueezeOp::applySymmetryRule(SpaceBuilder &b) {
  reshapeLike(b, *this, getOperand(0), getResult(0));
}
void FlattenOp::applySymmetryRule(SpaceBuilder &b) {
  reshapeLike(b, *this, getOperand(0), getResult(0));
}

void TransposeOp::applySymmetryRule(SpaceBuilder &b) {
  Value x = getOperand(0), y = getResult(0);
  int64_t r = rankOf(x);
  std::vector<int64_t> perm;
  if (auto p = intsAttr(*this, "perm"))
    perm = *p;
  else
    for (int64_t a = r - 1; a >= 0; --a)
      perm.push_back(a);
  if (int64_t(perm.size()) != r) {
    barrier(b, *this, "Transpose perm does not match the rank");
    return;
  }
  std::vector<bool> seen(size_t(r), false);
  for (int64_t p : perm) {
    if (p < 0 || p >= r || seen[size_t(p)]) {
      barrier(b, *this, "Transpose perm is not a permutation of the axes");
      return;
    }
    seen[size_t(p)] = true;
  }
  for (int64_t a = 0; a < r; ++a)
    tieSame(b, x, perm[a], y, a);
}

void SplitOp::applySymmetryRule(SpaceBuilder &b) {
  Value x = getOperand(0);
  int64_t r = rankOf(x);
  int64_t axis = normAxis(intAttr(*this, "axis", 0), r);
  if (axis < 0) {
    barrier(b, *this, "Split along an invalid axis");
    return;
  }
  int64_t offset = 0;
  for (Value y : getResults())
    if ((offset = tiePiece(b, *this, x, y, axis, offset)) == -2)
      return;
}

namespace {
/// A Slice's starts, ends, axes and steps as written (attributes before opset 10, constant
/// operands after); absent ones are nullopt.
struct SliceBounds {
  std::optional<std::vector<int64_t>> starts, ends, axes, steps;
};
SliceBounds sliceBounds(SliceOp op) {
  SliceBounds s;
  if (opsetOf(op) < 10) {
    s.starts = intsAttr(op, "starts");
    s.ends = intsAttr(op, "ends");
    s.axes = intsAttr(op, "axes");
  } else {
    s.starts = constInts(op->getOperand(1));
    s.ends = constInts(op->getOperand(2));
    if (op->getNumOperands() > 3 && !isNone(op->getOperand(3)))
      s.axes = constInts(op->getOperand(3));
    if (op->getNumOperands() > 4 && !isNone(op->getOperand(4)))
      s.steps = constInts(op->getOperand(4));
  }
  return s;
}
} // namespace

std::optional<std::pair<int64_t, int64_t>> sliceKeeps(SliceOp op, int64_t axis) {
  const int64_t r = rankOf(op->getOperand(0)), n = dimOf(op->getOperand(0), axis);
  SliceBounds sb = sliceBounds(op);
  if (!sb.starts || !sb.ends || sb.ends->size() != sb.starts->size() || n < 0 ||
      (sb.axes && sb.axes->size() != sb.starts->size()) || (sb.steps && sb.steps->size() != sb.starts->size()))
    return std::nullopt;
  std::pair<int64_t, int64_t> keep{0, n};
  for (size_t k = 0; k < sb.starts->size(); ++k) {
    const int64_t a = normAxis(sb.axes ? (*sb.axes)[k] : int64_t(k), r);
    if (a < 0 || (sb.steps && (*sb.steps)[k] != 1))
      return std::nullopt;
    if (a != axis)
      continue;
    int64_t s = (*sb.starts)[k], e = (*sb.ends)[k];
    s = std::clamp<int64_t>(s < 0 ? s + n : s, 0, n);
    e = std::clamp<int64_t>(e < 0 ? e + n : e, 0, n);
    keep = {s, std::max(s, e)};
  }
  return keep;
}

void SliceOp::applySymmetryRule(SpaceBuilder &b) {
  Value x = getOperand(0), y = getResult(0);
  int64_t r = rankOf(x);
  auto [starts, ends, axes, steps] = sliceBounds(*this);
  if (!starts || !ends) {
    barrier(b, *this, "Slice bounds are not constant");
    return;
  }
  std::vector<int64_t> ax = axes ? *axes : std::vector<int64_t>();
  if (!axes)
    for (size_t k = 0; k < starts->size(); ++k)
      ax.push_back(int64_t(k));
  // One start, end (and step) per axis, by the spec; a malformed Slice is not followed.
  if (ends->size() != starts->size() || ax.size() != starts->size() || (steps && steps->size() != starts->size())) {
    barrier(b, *this, "Slice starts, ends, axes and steps differ in length");
    return;
  }
  std::vector<bool> sliced(r, false);
  for (size_t k = 0; k < ax.size(); ++k) {
    int64_t a = normAxis(ax[k], r);
    if (a < 0) {
      barrier(b, *this, "Slice axis out of range");
      return;
    }
    sliced[a] = true;
    int64_t n = dimOf(x, a), step = steps ? (*steps)[k] : 1;
    if (n < 0 || step != 1) {
      b.restrict(x, a, kNone, "strided or dynamic Slice");
      b.restrict(y, a, kNone, "strided or dynamic Slice");
      continue;
    }
    int64_t s = (*starts)[k], e = (*ends)[k];
    if (s < 0) s += n;
    if (e < 0) e += n;
    s = std::clamp<int64_t>(s, 0, n);
    e = std::clamp<int64_t>(e, 0, n);
    if (e - s != dimOf(y, a)) {
      b.restrict(x, a, kNone, "Slice size mismatch");
      b.restrict(y, a, kNone, "Slice size mismatch");
      continue;
    }
    b.slice(x, a, s, e - s, y, a);
  }
  for (int64_t a = 0; a < r; ++a)
    if (!sliced[a])
      tieSame(b, x, a, y, a);
}

void ConcatOp::applySymmetryRule(SpaceBuilder &b) {
  Value y = getResult(0);
  int64_t r = rankOf(y);
  int64_t axis = normAxis(intAttr(*this, "axis", 0), r);
  if (axis < 0) {
    barrier(b, *this, "Concat axis out of range");
    return;
  }
  int64_t offset = 0;
  for (Value x : getOperands())
    if ((offset = tiePiece(b, *this, y, x, axis, offset)) == -2)
      return;
}

void ExpandOp::applySymmetryRule(SpaceBuilder &b) {
  // Broadcast copies: a copied axis holds the same value in every coordinate.
  Value x = getOperand(0), y = getResult(0);
  forBroadcastAxes(
      *this, y,
      [&](Value in, int64_t i, int64_t r) {
        if (in == x)
          tieSame(b, x, i, y, r);
      },
      [&](Value in, int64_t r) {
        if (in != x)
          return;
        b.restrict(y, r, kNoMixing, "Expand copies along this axis");
        pinFlows(b, y, r);
      });
}


void TileOp::applySymmetryRule(SpaceBuilder &b) {
  // Tile along an axis is a Concat of copies of the input (torch's x.repeat: JetMoE's
  // key/value heads, one copy per selected expert): each copy of the output axis is the
  // input axis, as a Concat(x, ..., x) ties it; an axis repeated once passes.
  Value x = getOperand(0), y = getResult(0);
  const int64_t r = rankOf(x);
  auto reps = constInts(getOperand(1));
  if (!reps || int64_t(reps->size()) != r || rankOf(y) != r) {
    barrier(b, *this, "Tile repeats are not constant");
    return;
  }
  for (int64_t a = 0; a < r; ++a) {
    const int64_t k = (*reps)[size_t(a)], n = dimOf(x, a);
    if (k == 1) {
      tieSame(b, x, a, y, a);
      continue;
    }
    if (k < 1 || n < 1 || dimOf(y, a) != k * n) {
      b.restrict(x, a, kNone, "Tile repeats along an empty or dynamic axis");
      b.restrict(y, a, kNone, "Tile repeats along an empty or dynamic axis");
      continue;
    }
    for (int64_t c = 0; c < k; ++c)
      b.slice(y, a, c * n, n, x, a);
  }
}

namespace {
/// DepthToSpace / SpaceToDepth: the channel axis of the `deep` side (C*s*s) is the `shallow`
/// side's channels merged with the s*s offsets of a block of pixels. Channels innermost
/// (DepthToSpace DCR, every SpaceToDepth): each run of C channels is the shallow channel axis
/// at one offset (tied by slices). Channels outermost (DepthToSpace CRD): blocks of s*s
/// permute with the shallow channels. The spatial axes are positions: fixed.
void depthSpaceRule(SpaceBuilder &b, Operation *op, Value deep, Value shallow, bool crd) {
  const int64_t s = intAttr(op, "blocksize", 0);
  if (rankOf(deep) != 4 || rankOf(shallow) != 4 || s <= 0) {
    barrier(b, op, "DepthToSpace / SpaceToDepth of a rank other than 4");
    return;
  }
  const int64_t c = dimOf(shallow, 1);
  if (c <= 0 || dimOf(deep, 1) != c * s * s) {
    barrier(b, op, "DepthToSpace / SpaceToDepth channels unknown or not C * blocksize^2");
    return;
  }
  tieSame(b, deep, 0, shallow, 0);
  for (int64_t a = 2; a < 4; ++a) {
    b.restrict(deep, a, kNone, "pixels moved between the channel and spatial axes");
    b.restrict(shallow, a, kNone, "pixels moved between the channel and spatial axes");
  }
  if (crd) {
    b.factorPositions(deep, 1, shallow, 1, s * s);
    return;
  }
  for (int64_t k = 0; k < s * s; ++k)
    b.slice(deep, 1, k * c, c, shallow, 1);
}
} // namespace

void DepthToSpaceOp::applySymmetryRule(SpaceBuilder &b) {
  depthSpaceRule(b, *this, getOperand(0), getResult(0), strAttr(*this, "mode", "DCR") == "CRD");
}
void SpaceToDepthOp::applySymmetryRule(SpaceBuilder &b) {
  depthSpaceRule(b, *this, getResult(0), getOperand(0), /*crd=*/false);
}

void PadOp::applySymmetryRule(SpaceBuilder &b) {
  // An axis with nothing padded passes through coordinate by coordinate
  // (torch pads only spatial axes: swin_t pads H and W to a window multiple,
  // often by 0). A padded axis is fixed: its new coordinates are positions.
  // Every linear map passes only when the padding follows the values: a zero
  // constant, or edge/reflect/wrap copies. Another constant c fills a slice
  // along the kept axes with c * 1, which only permutations keep (a sign flip,
  // a scaling or a rotation of those axes moves the original entries, not the
  // padded ones): fuzz_graphs found GL claimed through a Pad of 0.5.
  Operation *op = getOperation();
  Value x = getOperand(0), y = getResult(0);
  int64_t r = rankOf(x), opset = opsetOf(op);
  std::optional<std::vector<int64_t>> pads =
      opset < 11 ? intsAttr(op, opset < 2 ? "paddings" : "pads")
                 : (op->getNumOperands() > 1 ? constInts(getOperand(1)) : std::nullopt);
  if (!pads || r < 0 || int64_t(pads->size()) != 2 * r || rankOf(y) != r) {
    barrier(b, op, "Pad widths are not constant");
    return;
  }
  auto mode = op->getAttrOfType<StringAttr>("mode");
  bool homogeneous = true;
  if (!mode || mode.getValue() == "constant") {
    std::optional<double> value = 0.0;
    if (opset < 11) {
      if (auto v = op->getAttrOfType<FloatAttr>("value"))
        value = v.getValueAsDouble();
    } else if (op->getNumOperands() > 2 && !isNone(getOperand(2))) {
      value = constScalar(getOperand(2));
    }
    // Nothing padded writes no constant (swin's pads are often all 0).
    homogeneous = (value && *value == 0.0) || llvm::all_of(*pads, [](int64_t p) { return p == 0; });
  } else if (!llvm::is_contained({"edge", "reflect", "wrap"}, mode.getValue())) {
    barrier(b, op, "Pad with an unknown mode");
    return;
  }
  for (int64_t a = 0; a < r; ++a) {
    if ((*pads)[a] == 0 && (*pads)[a + r] == 0 && dimOf(x, a) == dimOf(y, a)) {
      tieSame(b, x, a, y, a);
      if (!homogeneous) {
        b.restrict(x, a, kPerm, "Pad writes a constant other than 0 across this axis");
        b.restrict(y, a, kPerm, "Pad writes a constant other than 0 across this axis");
        pinFlows(b, x, a);
        pinFlows(b, y, a);
      }
      continue;
    }
    b.restrict(x, a, kNone, "Pad pads this axis");
    b.restrict(y, a, kNone, "Pad pads this axis");
  }
}

void TriluOp::applySymmetryRule(SpaceBuilder &b) {
  // Masks by position on the last two axes; leading axes are batched.
  Value x = getOperand(0), y = getResult(0);
  int64_t r = rankOf(x);
  for (int64_t a = 0; a < r; ++a) {
    if (a >= r - 2) {
      b.restrict(x, a, kNone, "Trilu masks positions");
      b.restrict(y, a, kNone, "Trilu masks positions");
    } else {
      tieSame(b, x, a, y, a);
    }
  }
}

// Shape arithmetic: outputs are small integer tensors that do not depend on
// the values of their inputs, so they constrain nothing about the inputs.
#define SHAPE_RULE(OP)                                                         \
  void OP::applySymmetryRule(SpaceBuilder &b) {                                \
    for (Value v : getOperation()->getResults())                               \
      b.fixAll(v, "shape value");                                              \
  }
SHAPE_RULE(ShapeOp)
SHAPE_RULE(SizeOp)
SHAPE_RULE(ConstantOfShapeOp)
SHAPE_RULE(RangeOp)
#undef SHAPE_RULE

} // namespace symoc::graph
