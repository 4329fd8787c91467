//===- NormalizationRules.cpp - Rules of ops that act along an axis -------===//
//
// Softmax, normalizations, reductions, pooling and resampling. Along the axis
// they act on, they commute with permutations only (plus sign flips for
// RMS-type norms, rotations for a gain-free RMS norm); the other axes are
// batched.
//
//===----------------------------------------------------------------------===//

#include "RuleHelpers.h"

using namespace mlir;

namespace symoc::graph {
namespace {

/// Axes that a row-wise nonlinear op leaves alone: they move with the result
/// but do not scale or flip through it.
void batchedNonlinear(SpaceBuilder &b, Value x, int64_t a, Value y,
                      StringRef name) {
  b.tie(x, a, y, a);
  b.restrict(y, a, kNoMixing, name);
  pinFlows(b, x, a);
  pinFlows(b, y, a);
}

/// A LayerNorm or RMSNorm absorbs a uniform rescaling of its input up to
/// O(eps / variance). That is claimed (as an approximate gauge) only for an
/// epsilon of the usual sizes: verify zeroes a written-out norm's epsilon
/// only up to the same bound (compiler/lib/Verify/WrittenOutEpsilon.h), and a
/// large one (a constant rewired into the Add) is no epsilon.
constexpr double kMaxUniformEpsilon = 1e-3;
/// An epsilon attribute within that bound (attributes are float32: 1e-3 reads 1.00000005e-3).
bool usualEpsilon(double e) { return e >= 0 && e <= kMaxUniformEpsilon * (1 + 1e-6); }

void uniformScaleAbsorbed(SpaceBuilder &b, Operation *op, Value x, int64_t a,
                          StringRef name) {
  auto eps = op->getAttrOfType<FloatAttr>("epsilon");
  double e = eps ? eps.getValueAsDouble() : 1e-5;
  if (usualEpsilon(e))
    b.approxScaleRelation({{x, a, 1}}, name, /*uniform=*/true);
  else
    b.scaleRelation({{x, a, 1}});
}

/// A per-channel vector (gain, bias) bound to axis `a` of `y`.
void bindVector(SpaceBuilder &b, Value v, Value y, int64_t a) {
  // A uniform constant (GroupNorm's exported ones / zeros) does not move.
  if (isNone(v) || rankOf(v) < 1 || isUniformConstant(v))
    return;
  int64_t rv = rankOf(v);
  auto vt = cast<RankedTensorType>(v.getType());
  if (vt.getDimSize(rv - 1) == 1)
    return;
  b.tie(v, rv - 1, y, a);
}

void softmaxRule(SpaceBuilder &b, Operation *op) {
  Value x = op->getOperand(0), y = op->getResult(0);
  int64_t r = rankOf(x);
  int64_t axis = normAxis(intAttr(op, "axis", opsetOf(op) < 13 ? 1 : -1), r);
  if (axis < 0) {
    barrier(b, op, "Softmax axis out of range");
    return;
  }
  StringRef name = op->getName().stripDialect();
  // Before opset 13 the input is flattened to 2-D at `axis`: only a last-axis
  // softmax acts on one axis alone.
  if (opsetOf(op) < 13 && axis != r - 1) {
    for (int64_t a = axis; a < r; ++a) {
      b.restrict(x, a, kNone, "Softmax over flattened axes (opset < 13)");
      b.restrict(y, a, kNone, "Softmax over flattened axes (opset < 13)");
    }
  }
  for (int64_t a = 0; a < r; ++a)
    batchedNonlinear(b, x, a, y, name);
  // Before opset 13 the softmax runs over all axes from `axis` on.
  for (int64_t a = axis; a < (opsetOf(op) < 13 ? r : axis + 1); ++a)
    b.couple(x, a);
  b.softmaxOver(x, axis);
}

/// Reductions: reduced axes are invariant under permutations (and more for
/// norms); kept axes pass through.
void reduceRule(SpaceBuilder &b, Operation *op, unsigned reducedBits,
                bool linearKept, bool keptHomogeneous) {
  Value x = op->getOperand(0), y = op->getResult(0);
  int64_t r = rankOf(x);
  std::optional<std::vector<int64_t>> axes = intsAttr(op, "axes");
  if (!axes && op->getNumOperands() > 1 && !isNone(op->getOperand(1))) {
    axes = constInts(op->getOperand(1));
    if (!axes) {
      barrier(b, op, "reduction axes are not constant");
      return;
    }
  }
  std::vector<bool> reduced(r, !axes || axes->empty());
  // No axes (absent or empty) with noop_with_empty_axes=1 is the identity (ReduceSum-13, and
  // every reduction from opset 18), not a reduction over every axis.
  if ((!axes || axes->empty()) && intAttr(op, "noop_with_empty_axes", 0))
    std::fill(reduced.begin(), reduced.end(), false);
  if (axes)
    for (int64_t a : *axes) {
      int64_t n = normAxis(a, r);
      if (n < 0) {
        barrier(b, op, "reduction axis out of range");
        return;
      }
      reduced[n] = true;
    }
  bool keep = intAttr(op, "keepdims", 1);
  StringRef name = op->getName().stripDialect();
  int64_t out = 0;
  for (int64_t a = 0; a < r; ++a) {
    if (reduced[a]) {
      b.restrict(x, a, reducedBits, name);
      b.scaleRelation({{x, a, 1}});
      if (!(reducedBits & kSign))
        b.signRelation({{x, a, 1}});
      else
        b.absorbs(x, a, /*scale=*/false, /*sign=*/true); // a norm of the axis
      continue;
    }
    int64_t ya = keep ? a : out++;
    b.tie(x, a, y, ya);
    if (!linearKept)
      b.restrict(y, ya, kNoMixing, name);
    if (keptHomogeneous) {
      b.scaleRelation({{x, a, 1}, {y, ya, -1}});
      b.signRelation({{x, a, 1}, {y, ya, 1}});
    } else {
      pinFlows(b, x, a);
      pinFlows(b, y, ya);
    }
  }
}

} // namespace

void SoftmaxOp::applySymmetryRule(SpaceBuilder &b) { softmaxRule(b, *this); }
void LogSoftmaxOp::applySymmetryRule(SpaceBuilder &b) { softmaxRule(b, *this); }

void LayerNormalizationOp::applySymmetryRule(SpaceBuilder &b) {
  if (barrierIfExtraResultsUsed(b, *this, "LayerNormalization's mean / inverse deviation"))
    return;
  Value x = getOperand(0), y = getResult(0);
  int64_t r = rankOf(x);
  int64_t axis = normAxis(intAttr(*this, "axis", -1), r);
  if (axis < 0) {
    barrier(b, *this, "LayerNormalization axis out of range");
    return;
  }
  for (int64_t a = 0; a < r; ++a) {
    if (a >= axis)
      b.couple(x, a);
    if (a >= axis && axis != r - 1) {
      // Normalizing several axes at once: keep them fixed.
      b.restrict(x, a, kNone, "LayerNormalization over several axes");
    }
    b.tie(x, a, y, a);
    b.restrict(y, a, kNoMixing, "LayerNormalization");
    if (a == r - 1 && axis == r - 1) {
      // One factor on the whole normalized axis cancels up to epsilon.
      b.signRelation({{x, a, 1}});
      uniformScaleAbsorbed(b, *this, x, a, "LayerNormalization");
    } else {
      pinFlows(b, x, a);
    }
    if (a != r - 1)
      pinFlows(b, y, a);
  }
  // y = normalized * scale + bias along the last axis.
  Value scale = getNumOperands() > 1 ? getOperand(1) : Value();
  Value bias = getNumOperands() > 2 ? getOperand(2) : Value();
  std::vector<AxisTerm> sc{{y, r - 1, 1}}, sg{{y, r - 1, 1}};
  if (scale && !isNone(scale) && rankOf(scale) >= 1) {
    bindVector(b, scale, y, r - 1);
    sc.push_back({scale, rankOf(scale) - 1, -1});
    sg.push_back({scale, rankOf(scale) - 1, 1});
  }
  b.scaleRelation(sc);
  b.signRelation(sg);
  if (bias && !isNone(bias) && rankOf(bias) >= 1) {
    bindVector(b, bias, y, r - 1);
    b.scaleRelation({{bias, rankOf(bias) - 1, 1}, {y, r - 1, -1}});
    b.signRelation({{bias, rankOf(bias) - 1, 1}, {y, r - 1, 1}});
  }
  for (Value extra : getResults().drop_front())
    b.fixAll(extra, "LayerNormalization statistics output");
}

void RMSNormalizationOp::applySymmetryRule(SpaceBuilder &b) {
  // Recomposed x / rms(x) * gain: rms is invariant under signed permutations
  // (and rotations when there is no gain).
  Value x = getOperand(0), y = getResult(0);
  int64_t r = rankOf(x);
  Value gain = getNumOperands() > 1 ? getOperand(1) : Value();
  bool hasGain = gain && !isNone(gain);
  b.couple(x, r - 1);
  for (int64_t a = 0; a < r; ++a) {
    b.tie(x, a, y, a);
    if (a != r - 1) {
      b.restrict(y, a, kNoMixing, "RMSNormalization");
      pinFlows(b, x, a);
      pinFlows(b, y, a);
    }
  }
  // One factor on the whole normalized axis cancels up to epsilon.
  uniformScaleAbsorbed(b, *this, x, r - 1, "RMSNormalization");
  if (hasGain) {
    b.restrict(y, r - 1, kNoMixing, "RMSNormalization with gain");
    bindVector(b, gain, y, r - 1);
    b.scaleRelation({{y, r - 1, 1}, {gain, rankOf(gain) - 1, -1}});
    b.signRelation({{y, r - 1, 1}, {x, r - 1, 1}, {gain, rankOf(gain) - 1, 1}});
  } else {
    b.restrict(y, r - 1, kOrthogonal, "RMSNormalization");
    b.scaleRelation({{y, r - 1, 1}});
    b.signRelation({{y, r - 1, 1}, {x, r - 1, 1}});
  }
}

namespace {
/// Per-channel normalization of X [N, C, ...] over `statAxes` (BatchNorm: the
/// batch and spatial axes; InstanceNorm: the spatial axes of each instance),
/// then y = scale_c * n + bias_c. Channels permute and flip with their scale
/// and bias; a per-channel rescale of X cancels up to epsilon (exact in the
/// approximate flow, `rescaleAbsorbed`), else it is pinned.
void perChannelNormRule(SpaceBuilder &b, Operation *op, Value x, Value y, Value scale,
                        Value bias, bool batchStats, bool rescaleAbsorbed, StringRef name) {
  int64_t r = rankOf(x);
  // One scale and bias per channel: vectors of X's channel count. Any other shape (a
  // [C, H, W] scale of BatchNormalization-7's spatial = 0) scales each position on its own,
  // which the relations below (on the vectors' axis 0) do not describe (a session-35 audit:
  // GL claimed on such a scale's rows).
  for (Value v : {scale, bias})
    if (rankOf(v) != 1 || dimOf(v, 0) != dimOf(x, 1)) {
      barrier(b, op, (name + " with a scale or bias that is not one value per channel").str());
      return;
    }
  for (int64_t a = 0; a < r; ++a)
    if (a != 1 && (a != 0 || batchStats))
      b.couple(x, a); // the statistics combine these axes
  // The statistics are sums over the batch and spatial positions: a
  // permutation of a spatial axis (the same for every channel) permutes the
  // output alike. Nothing else passes there (GroupNorm(1, C) exports as an
  // InstanceNormalization over [N, 1, C*H*W]: whole channel blocks permute).
  for (int64_t a = 0; a < r; ++a) {
    b.tie(x, a, y, a);
    if (a != 1) {
      b.restrict(y, a, a == 0 ? kNoMixing : kPerm, name);
      pinFlows(b, x, a);
      pinFlows(b, y, a);
    }
  }
  b.restrict(y, 1, kNoMixing, name);
  // A sign flip of a channel flips its normalized value exactly.
  // Absorbed up to O(eps / variance): claimed, as for LayerNorm and RMSNorm, only for an
  // epsilon of the usual sizes (at epsilon 10 the claim is off by 1.8e-1 at the model's
  // epsilon; a session-35 audit).
  auto eps = op->getAttrOfType<FloatAttr>("epsilon");
  const double e = eps ? eps.getValueAsDouble() : 1e-5;
  if (rescaleAbsorbed && usualEpsilon(e))
    b.approxScaleRelation({{x, 1, 1}}, (name + (batchStats ? " (batch statistics)"
                                                            : " (instance statistics)")).str());
  else
    b.scaleRelation({{x, 1, 1}});
  bindVector(b, scale, y, 1);
  bindVector(b, bias, y, 1);
  b.scaleRelation({{y, 1, 1}, {scale, 0, -1}});
  b.signRelation({{y, 1, 1}, {x, 1, 1}, {scale, 0, 1}});
  b.scaleRelation({{bias, 0, 1}, {y, 1, -1}});
  b.signRelation({{bias, 0, 1}, {y, 1, 1}});
}
} // namespace

void BatchNormalizationOp::applySymmetryRule(SpaceBuilder &b) {
  // X [N, C, ...]: per-channel normalization with batch statistics in a
  // training graph. The running statistics (inputs 3, 4) are state, not
  // parameters; in an inference graph they fix the channel axis.
  Value x = getOperand(0), y = getResult(0);
  if (rankOf(x) < 2) {
    barrier(b, *this, "BatchNormalization of a rank < 2 tensor");
    return;
  }
  // The running statistics it outputs in training move with X's channels and scale (a
  // permutation or rescale of X's channels against the fixed state inputs changes them).
  if (barrierIfExtraResultsUsed(b, *this, "BatchNormalization's running statistics"))
    return;
  // spatial = 0 (opset < 9): statistics and parameters per position, not per channel.
  if (opsetOf(*this) < 9 && intAttr(*this, "spatial", 1) == 0 && rankOf(x) > 2) {
    barrier(b, *this, "BatchNormalization with spatial = 0 (per-position statistics)");
    return;
  }
  bool training = intAttr(*this, "training_mode", 0) || getNumResults() > 1;
  perChannelNormRule(b, *this, x, y, getOperand(1), getOperand(2), /*batchStats=*/true,
                     /*rescaleAbsorbed=*/training, "BatchNormalization");
  if (!training)
    b.restrict(y, 1, kNone, "BatchNormalization in inference mode");
  // Running statistics are optimizer-free state: never transformed.
  for (unsigned k = 3; k < 5 && k < getNumOperands(); ++k)
    b.fixAll(getOperand(k), "BatchNormalization running statistics (state)");
  for (Value extra : getResults().drop_front())
    b.fixAll(extra, "BatchNormalization running statistics");
}

void InstanceNormalizationOp::applySymmetryRule(SpaceBuilder &b) {
  // X [N, C, ...]: each instance's channel normalized over its spatial axes.
  Value x = getOperand(0), y = getResult(0);
  if (rankOf(x) < 3) {
    barrier(b, *this, "InstanceNormalization of a rank < 3 tensor");
    return;
  }
  perChannelNormRule(b, *this, x, y, getOperand(1), getOperand(2), /*batchStats=*/false,
                     /*rescaleAbsorbed=*/true, "InstanceNormalization");
}
void GroupNormalizationOp::applySymmetryRule(SpaceBuilder &b) {
  barrier(b, *this, "GroupNormalization has no rule yet");
}

void ReduceMeanOp::applySymmetryRule(SpaceBuilder &b) { reduceRule(b, *this, kPerm, true, true); }
void ReduceSumOp::applySymmetryRule(SpaceBuilder &b) { reduceRule(b, *this, kPerm, true, true); }
void ReduceMaxOp::applySymmetryRule(SpaceBuilder &b) { reduceRule(b, *this, kPerm, false, false); }
void ReduceMinOp::applySymmetryRule(SpaceBuilder &b) { reduceRule(b, *this, kPerm, false, false); }
void ReduceProdOp::applySymmetryRule(SpaceBuilder &b) { reduceRule(b, *this, kPerm, false, false); }
void ReduceL2Op::applySymmetryRule(SpaceBuilder &b) { reduceRule(b, *this, kOrthogonal, false, false); }
void ReduceSumSquareOp::applySymmetryRule(SpaceBuilder &b) { reduceRule(b, *this, kOrthogonal, false, false); }

// ArgMax / ArgMin: PositionRules.cpp (they return positions, as TopK does).
// CumSum: along `axis` prefix sums (exclusive, reverse: other fixed triangular matrices), a
// fixed linear map applied alike at every index of the other axes, so those pass any linear
// map (as DFT's); the summed axis is fixed (its order is the point) with its scale and sign.
void CumSumOp::applySymmetryRule(SpaceBuilder &b) {
  Operation *op = *this;
  Value x = getOperand(0), y = getResult(0);
  const int64_t r = rankOf(x);
  if (r < 1 || rankOf(y) != r) {
    barrier(b, op, "CumSum with unknown ranks");
    return;
  }
  const auto axes = getNumOperands() > 1 ? constInts(getOperand(1)) : std::nullopt;
  if (!axes || axes->size() != 1) {
    barrier(b, op, "CumSum's axis is not a constant");
    return;
  }
  const int64_t axis = normAxis((*axes)[0], r);
  if (axis < 0) {
    barrier(b, op, "CumSum axis out of range");
    return;
  }
  tieAxesUnlessFixed(b, x, y, [&](int64_t a) { return a == axis ? "CumSum's summed axis" : nullptr; });
}

namespace {
void poolRule(SpaceBuilder &b, Operation *op, bool linear) {
  // MaxPool's indices are flat positions in X (its channel and batch among them).
  if (barrierIfExtraResultsUsed(b, op, "pooling indices"))
    return;
  Value x = op->getOperand(0), y = op->getResult(0);
  int64_t r = rankOf(x);
  if (r < 3 || rankOf(y) != r) {
    barrier(b, op, "pooling with unknown ranks");
    return;
  }
  StringRef name = op->getName().stripDialect();
  for (int64_t a = 0; a < 2; ++a) {
    b.tie(x, a, y, a);
    if (!linear)
      b.restrict(y, a, kNoMixing, name);
    b.scaleRelation({{x, a, 1}, {y, a, -1}});
    if (linear)
      b.signRelation({{x, a, 1}, {y, a, 1}});
    else {
      b.signRelation({{x, a, 1}});
      b.signRelation({{y, a, 1}});
    }
  }
  for (int64_t a = 2; a < r; ++a) {
    b.restrict(x, a, kNone, "pooling window axis");
    b.restrict(y, a, kNone, "pooling window axis");
  }
  for (Value extra : op->getResults().drop_front())
    b.fixAll(extra, "pooling indices");
}

/// Which axes of a Resize keep their coordinates: scale exactly 1, from the
/// `scales` constant or from `sizes` equal to the input's. A size kept by a
/// scale other than 1 (floor(8 x 1.05) = 8) still resamples; unknown scales
/// keep nothing.
std::vector<bool> resizeKeptAxes(Operation *op, Value x, int64_t r) {
  std::vector<bool> kept(size_t(r), false);
  const bool v10 = opsetOf(op) < 11; // X, scales; later X, roi, scales, sizes
  auto operand = [&](unsigned i) -> Value {
    return i < op->getNumOperands() && !isNone(op->getOperand(i)) ? op->getOperand(i) : Value();
  };
  Value scales = operand(v10 ? 1 : 2), sizes = v10 ? Value() : operand(3);
  if (v10 && !scales) { // Upsample-7 (imported as Resize): scales in an attribute
    auto a = op->getAttrOfType<ArrayAttr>("scales");
    if (!a || int64_t(a.size()) != r)
      return kept;
    for (int64_t i = 0; i < r; ++i) {
      auto f = dyn_cast<FloatAttr>(a[size_t(i)]);
      kept[size_t(i)] = f && f.getValueAsDouble() == 1.0;
    }
    return kept;
  }
  if (sizes) {
    auto s = constInts(sizes);
    if (!s || int64_t(s->size()) != r)
      return kept;
    for (int64_t a = 0; a < r; ++a)
      kept[size_t(a)] = dimOf(x, a) > 0 && (*s)[size_t(a)] == dimOf(x, a);
  } else if (scales) {
    auto s = constFloats(scales);
    if (!s || int64_t(s->size()) != r)
      return kept;
    for (int64_t a = 0; a < r; ++a)
      kept[size_t(a)] = (*s)[size_t(a)] == 1.0;
  }
  return kept;
}
} // namespace

// Resize interpolates (nearest, linear, cubic: each output a fixed linear
// combination of inputs along the resized axes) with the same weights at every
// index of an axis it keeps, so along such an axis it passes any linear map
// (permutations, sign flips, scales, mixing), as AveragePool does on channels.
// Not where coordinates shift or crop (tf_crop_and_resize fills outside the
// crop with a constant, tf_half_pixel_for_nn moves indices by half a pixel).
// Resize-18's antialias and Resize-19's half_pixel_symmetric keep a scale-1 axis
// as it is (the stretched kernel has one tap there; the symmetric offset is 0).
void ResizeOp::applySymmetryRule(SpaceBuilder &b) {
  Operation *op = *this;
  Value x = getOperand(0), y = getResult(0);
  int64_t r = rankOf(x);
  if (r < 1 || rankOf(y) != r) {
    barrier(b, op, "Resize with unknown ranks");
    return;
  }
  std::string coord = strAttr(op, "coordinate_transformation_mode", "half_pixel");
  if (coord == "tf_crop_and_resize" || coord == "tf_half_pixel_for_nn") {
    barrier(b, op, "Resize coordinates that crop or shift");
    return;
  }
  // Opset 18's axes and keep_aspect_ratio_policy (the opset adapter refuses the first
  // today): not read here, so not trusted.
  if (op->hasAttr("axes") || strAttr(op, "keep_aspect_ratio_policy", "stretch") != "stretch") {
    barrier(b, op, "Resize with axes or an aspect-ratio policy");
    return;
  }
  std::vector<bool> kept = resizeKeptAxes(op, x, r);
  tieAxesUnlessFixed(b, x, y, [&](int64_t a) { return kept[size_t(a)] ? nullptr : "resized axis"; });
}

// DFT (opset 17; DFT-20 is read as DFT-17 by the opset adapter): along `axis` a fixed
// complex-linear transform, applied alike at every index of the other axes, so those pass
// any linear map (as Resize passes its kept axes); the transformed axis and the last axis
// (real [, imaginary]) are fixed.
void DFTOp::applySymmetryRule(SpaceBuilder &b) {
  Operation *op = *this;
  Value x = getOperand(0), y = getResult(0);
  int64_t r = rankOf(x);
  if (r < 3 || rankOf(y) != r) {
    barrier(b, op, "DFT with unknown or too small ranks");
    return;
  }
  int64_t axis = intAttr(op, "axis", 1);
  if (axis < 0)
    axis += r;
  if (axis < 0 || axis > r - 2) {
    barrier(b, op, "DFT axis out of range");
    return;
  }
  tieAxesUnlessFixed(b, x, y, [&](int64_t a) -> const char * {
    return a == r - 1 ? "DFT real/imaginary axis" : a == axis ? "DFT transformed axis" : nullptr;
  });
}

void MaxPoolOp::applySymmetryRule(SpaceBuilder &b) { poolRule(b, *this, false); }
void GlobalMaxPoolOp::applySymmetryRule(SpaceBuilder &b) { poolRule(b, *this, false); }
void AveragePoolOp::applySymmetryRule(SpaceBuilder &b) { poolRule(b, *this, true); }
void GlobalAveragePoolOp::applySymmetryRule(SpaceBuilder &b) { poolRule(b, *this, true); }

} // namespace symoc::graph
