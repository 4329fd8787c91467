//===- SymmetryRule.h - What op rules tell the space analysis ---*- C++ -*-===//
//
// The contract between the per-op symmetry rules (in the dialect) and the
// space analysis (in compiler/lib/Analysis). Rules talk about axes of values;
// the analysis groups axes into spaces and intersects the groups.
//
//===----------------------------------------------------------------------===//
#ifndef SYMOC_DIALECT_GRAPH_SYMMETRYRULE_H
#define SYMOC_DIALECT_GRAPH_SYMMETRYRULE_H

#include "mlir/IR/Value.h"
#include "mlir/IR/Operation.h"
#include "llvm/ADT/ArrayRef.h"
#include "llvm/ADT/StringRef.h"

#include <cstdint>
#include <utility>

namespace symoc::graph {

/// Generators a space's group may contain. A group is a set of these bits:
/// S = Perm, B = Perm|Sign, O = B|Rotation, Scale+ x S = Perm|Scale,
/// GL = all of them. Intersection of groups is bitwise and (see normalize()).
enum GroupBits : unsigned {
  kNone = 0,
  kPerm = 1u << 0,     // permutations
  kSign = 1u << 1,     // sign flips
  kRotation = 1u << 2, // orthogonal maps beyond signed permutations
  kScale = 1u << 3,    // positive diagonal scaling (a gauge)
  kShear = 1u << 4,    // the rest of GL(n)
  kAll = kPerm | kSign | kRotation | kScale | kShear,
  kSymPerm = kPerm,
  kSignedPerm = kPerm | kSign,
  kOrthogonal = kPerm | kSign | kRotation,
  kMonomialPos = kPerm | kScale,
  // Generators inside fixed channel pairs (a rotary map's commutant). They
  // only mean something on a space that a pair restriction (restrictToPairs)
  // gave a pairing; elsewhere the analysis drops them. O contains the pair
  // rotations (and -I on a pair), GL contains all three; a pair restriction
  // allows nothing else, so its meet with S (or B: signs are only a flow) is
  // the identity, with O the pair rotations, with GL itself.
  kPairRotation = 1u << 5, // SO(2) on each pair
  kPairScale = 1u << 6,    // one positive factor per pair (a gauge)
  kPairSign = 1u << 7,     // -I on a pair (inside SO(2))
  kPairs = kPairRotation | kPairScale | kPairSign,
};

/// The pair generators a restriction with the ordinary generators `bits`
/// allows: rotations of a pair are orthogonal maps, pair scalings and
/// rotations are invertible maps. Signs and positive scalings alone are
/// conditional on the sign/scale flows, so they allow no pair generator.
inline unsigned pairBitsOf(unsigned bits) {
  unsigned out = 0;
  if ((bits & kAll) == kAll)
    out |= kPairs;
  else if ((bits & kOrthogonal) == kOrthogonal)
    out |= kPairRotation | kPairSign;
  return out;
}

/// Drops generators that cannot appear without the ones they need (a rotation
/// group always contains the sign flips; GL contains everything).
inline unsigned normalizeGroup(unsigned bits) {
  if (!(bits & kPerm))
    return kNone; // every group we name contains the permutations
  if ((bits & kRotation) && !(bits & kSign))
    bits &= ~kRotation;
  if ((bits & kShear) != 0 && (bits & kAll) != kAll)
    bits &= ~kShear;
  return bits;
}

/// One term of a linear relation between axis exponents: coeff * e(value, axis).
struct AxisTerm {
  mlir::Value value;
  int64_t axis;
  int64_t coeff;
};

/// Filled in by the space analysis; called by each op's SymmetryRule.
class SpaceBuilder {
public:
  virtual ~SpaceBuilder() = default;

  /// Axis `a` of `x` and axis `b` of `y` are the same space. `dual` when one
  /// transforms by A and the other by A^{-T} (the two sides of a contraction).
  virtual void tie(mlir::Value x, int64_t a, mlir::Value y, int64_t b,
                   bool dual = false) = 0;

  /// The op is equivariant on this axis only under the generators in `bits`.
  virtual void restrict(mlir::Value x, int64_t a, unsigned bits,
                        llvm::StringRef why) = 0;

  /// The op is equivariant on this axis only under maps that act inside the
  /// given channel pairs (indices along the axis; every channel in at most one
  /// pair) as rotation-scalings [[a, -b], [b, a]] and as the identity on
  /// channels in no pair: the commutant of a rotary map. `bits` is a subset of
  /// kPairs. The default fixes the axis (a builder that does not know pairs
  /// stays sound).
  virtual void restrictToPairs(mlir::Value x, int64_t a,
                               llvm::ArrayRef<std::pair<int64_t, int64_t>> pairs,
                               unsigned bits, llvm::StringRef why) {
    (void)pairs;
    (void)bits;
    restrict(x, a, kNone, why);
  }

  /// Fixes every axis of `v` (group 1): what an op without a rule does.
  virtual void fixAll(mlir::Value v, llvm::StringRef why) = 0;

  /// Positive-scaling flow: sum coeff * e = 0, where e(v, a) is the exponent of
  /// a per-coordinate scale d on that axis (the coordinate is multiplied by d^e).
  virtual void scaleRelation(llvm::ArrayRef<AxisTerm> terms) = 0;

  /// A scale relation that holds only approximately: a normalization with an
  /// epsilon absorbs a rescaling of its input up to O(eps / variance). The
  /// exact flow keeps it; the analysis also solves the flow without it and
  /// claims what that adds with "exact": false, naming `why`. `uniform`: only a
  /// scale that is the same for every coordinate of the axis is absorbed (a
  /// LayerNorm or RMSNorm over it); such gauges are claimed as whole-tensor
  /// `scale` claims.
  virtual void approxScaleRelation(llvm::ArrayRef<AxisTerm> terms, llvm::StringRef why,
                                   bool uniform = false) = 0;

  /// Sign-flip flow: the same relation over Z/2.
  virtual void signRelation(llvm::ArrayRef<AxisTerm> terms) = 0;

  /// The op's results do not depend on a rescaling (`scale`) or a sign flip
  /// (`sign`) of this axis: it is absorbed, and the exponent stays free. An
  /// axis that a rule gives neither a relation nor this is pinned (a rule that
  /// forgets an axis must not let a gauge through).
  virtual void absorbs(mlir::Value x, int64_t a, bool scale, bool sign) {
    (void)x;
    (void)a;
    (void)scale;
    (void)sign;
  }

  /// Axis `outAxis` of `out` is elements [begin, begin + count) of axis `axis`
  /// of `in` (a Slice with step 1, one piece of a Split, one operand of a
  /// Concat). Splits the input's space at the boundaries.
  virtual void slice(mlir::Value in, int64_t axis, int64_t begin,
                     int64_t count, mlir::Value out, int64_t outAxis) = 0;

  /// Axis `axis` of `whole` (size H*d) is axes (`outer` of size H, `inner` of
  /// size d) of `parts`, row-major: a Reshape that splits heads off a model
  /// dimension, or merges them back. Coordinate k*d + c of the whole axis is
  /// (k, c). The inner axis becomes indexed by the outer one, so per-head
  /// spaces stay apart; permuting the outer axis permutes blocks of d.
  ///
  /// With `outerHeads` = H > 0 the outer axis is a product (r, H) of another
  /// factor r (a batch axis merged with the heads, nn.MultiheadAttention's
  /// [S, B*H, d]) and the head factor, inner: its coordinate q*H + k is head
  /// k for every q. Coordinate k*d + c of the whole axis is then (q*H + k, c)
  /// where q is the position along axes that the caller fixes: permuting the
  /// heads acts as I_r (x) P_H on the outer axis.
  virtual void factor(mlir::Value whole, int64_t axis, mlir::Value parts,
                      int64_t outer, int64_t inner, int64_t outerHeads = 0) = 0;

  /// Axis `axis` of `whole` (size n*r) is axis `outer` of `parts` (size n)
  /// merged with r positions along axes that the caller fixes, the outer part
  /// outermost: coordinate k*r + j is (k, j). A Reshape that flattens a
  /// convolution's channels with its spatial axes ([N, C, H, W] -> [N, C*H*W]
  /// before a linear layer), or GroupNorm's [N, C, H, W] -> [N, G, C/G*H*W]
  /// (whole: C, outer: G). A permutation of the outer axis permutes whole
  /// blocks of r; nothing else passes (no mixing, no scale or sign flow).
  /// Inside a block the coordinates are fixed, unless `innerTied` > 0: the
  /// caller ties every run of `innerTied` coordinates of the whole axis to an
  /// inner axis of `parts` by `slice` in the same rule (those slices move
  /// with the blocks). The default fixes both axes (a builder that does not
  /// know blocks stays sound).
  virtual void factorPositions(mlir::Value whole, int64_t axis, mlir::Value parts,
                               int64_t outer, int64_t r, int64_t innerTied = 0) {
    (void)r;
    (void)innerTied;
    restrict(whole, axis, kNone, "positions merged into this axis");
    restrict(parts, outer, kNone, "merged with positions");
  }

  /// A digit exchange: axis `axis` of `whole` (size H*r) is axis `outer` of
  /// `parts` (size H) split off as the head axis, and its r inner coordinates
  /// are the outermost part of axis `merged` of `parts` (size r*m), merged
  /// there with m positions along axes that the caller fixes: coordinate
  /// k*r + j of the whole axis is, at head k of `outer`, every coordinate
  /// j*m + p of the merged axis. GroupNorm's [N, G*r, H, W] <-> [N, G, r*H*W]:
  /// a head split [N, G, r, H, W] followed by a merge of r with the pixels,
  /// without the middle value. The merged axis becomes indexed by `outer`;
  /// each head's r coordinates permute (as blocks of m of the merged axis,
  /// one permutation per head), the heads permute whole; nothing else passes
  /// (no mixing, no scale or sign flow). The default fixes the three axes (a
  /// builder that does not know per-head blocks stays sound).
  virtual void exchangeDigits(mlir::Value whole, int64_t axis, mlir::Value parts,
                              int64_t outer, int64_t merged, int64_t r) {
    (void)r;
    restrict(whole, axis, kNone, "positions merged into this axis");
    restrict(parts, outer, kNone, "merged with positions");
    restrict(parts, merged, kNone, "positions merged into this axis");
  }

  /// The op combines the entries of `v` along `axis` (a Softmax or a
  /// normalization over it) while keeping the axis: per-head spaces indexed
  /// by that axis are no longer independent.
  virtual void couple(mlir::Value v, int64_t axis) = 0;

  /// Softmax/LogSoftmax over `axis` of `logits`: the producer of the logits
  /// may get a shift gauge when the loss allows it.
  virtual void softmaxOver(mlir::Value logits, int64_t axis) = 0;

  /// Position provenance (TopK's indices): every entry of `indices` is a
  /// position along axis `axis` of `source`, so permuting that axis of
  /// `source` (and nothing more: no sign flip, no scaling) relabels the entries
  /// by the same permutation. The axes of `indices` are not touched: the rule
  /// still says what they are. Uses of `indices` that no consumer accepts with
  /// takePositions() fix the source axis (arithmetic on positions, a model
  /// output, an op without a rule).
  virtual void positionsOf(mlir::Value indices, mlir::Value source,
                           int64_t axis) = 0;

  /// A consumer of positions: operand `indices` of the current op holds
  /// positions that index axis `outAxis` of `out` (ScatterElements writes
  /// there, Gather/GatherElements read there). When the positions have a known
  /// source, ties that axis to the source axis under permutations only and
  /// returns true; otherwise returns false and ties nothing (the caller fixes
  /// the axis).
  virtual bool takePositions(mlir::OpOperand &indices, mlir::Value out,
                             int64_t outAxis) = 0;

  /// Static size of an axis, or -1.
  virtual int64_t dimSize(mlir::Value v, int64_t axis) = 0;

  /// True when `v` is a trainable parameter, possibly through a view
  /// (Identity, Transpose, Reshape of a parameter).
  virtual bool isParameter(mlir::Value v) = 0;
};

} // namespace symoc::graph

#endif // SYMOC_DIALECT_GRAPH_SYMMETRYRULE_H
