//===- Stages.h - The space analysis' stages and what they pass -*- C++ -*-===//
//
// analyzeSpaces (lib/Analysis/SpaceAnalysis.cpp) runs these stages in order,
// one file each under lib/Analysis/:
//   Cuts.cpp           ops -> CutTable: axes cut into pieces, head runs, head
//                      indexing (phase 1, to a fixed point);
//   Spaces.cpp         ops + CutTable -> SpaceGraph: union-find with parity over
//                      the pieces, restrictions, flow relations, barriers;
//   Classes.cpp        SpaceGraph -> Classes: the group each class allows;
//   ScaleSignFlows.cpp SpaceGraph -> Flows: kernels of the scale / sign flows;
//   SpaceClaims.cpp    Classes + Flows -> spaces and their claims, through
//                      Heads.cpp (head blocks), Rotary.cpp (channel pairs) and
//                      Gauges.cpp (sign / scale gauges, whole-tensor scales);
//   Shifts.cpp         the loss and Softmaxes -> logit shift claims;
//   Roles.cpp          parameters -> blocks with their roles and spaces.
// Layout.cpp holds the axis table and node layout that every stage reads.
// Only what crosses a file is declared here.
//
//===----------------------------------------------------------------------===//
#ifndef SYMOC_ANALYSIS_STAGES_H
#define SYMOC_ANALYSIS_STAGES_H

#include "symoc/Analysis/SpaceAnalysis.h"
#include "symoc/Dialect/Graph/GraphOps.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"

#include <map>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

namespace symoc {

//===----------------------------------------------------------------------===//
// Roles.cpp: what a parameter does, read from the graph.
//===----------------------------------------------------------------------===//

/// The roles of a parameter, from how the graph uses it (never from its name):
/// embedding, positional_embedding, linear, lm_head, attn_q/k/v/o (attn_qkv for
/// a fused projection), mlp_in/mlp_out, swiglu_gate/up/down, conv,
/// conv_depthwise, norm_gain, norm_bias, norm_statistics, gain, bias,
/// prelu_slope, other. `outputs` are the graph's returned values.
std::set<std::string> inferRoles(graph::ParamOp param,
                                 const std::set<const void *> &outputs);

/// Mixture of experts: after the spaces are known, every parameter whose
/// leading axis is the space of a router's rows (the axis its in-graph logit
/// shift acts on), when that space is one that positions select from
/// (`selected`: the sources of TopK indices), is a stacked expert tensor: adds
/// role `moe_experts` (and drops `other`, `embedding`). The router's own
/// weight and bias are left alone.
void addExpertRoles(std::vector<Block> &blocks, const std::vector<Claim> &claims,
                    const std::set<std::string> &selected);

namespace analysis {

//===----------------------------------------------------------------------===//
// Layout.cpp: axes, their pieces, their heads and their blocks.
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
  mlir::Value value;
  int64_t axis;
  int64_t size; // -1 when dynamic
  std::set<int64_t> cuts;
  std::vector<Run> runs;
  bool runConflict = false;
  int64_t indexAxis = -1; // the head axis (of the same value) indexing this one
  bool indexConflict = false;
  // The runs' blocks may permute differently per head (a digit exchange's
  // merged axis, and axes tied to it): one block node per run per head.
  bool perHeadBlocks = false;
  // Phase 2 layout. Block node of run q, head h: firstBlock + h * runs.size()
  // + q, for h < blockHeads (numHeads when perHeadBlocks, on a value that is
  // not a parameter; else 1: one permutation of the blocks for every head).
  int firstNode = -1, numPieces = 0, numHeads = 1;
  int firstBlock = -1, blockHeads = 1;
};

class AxisTable {
public:
  /// The axis' index, created (with cuts at its ends) on first use.
  int get(mlir::Value v, int64_t a);
  std::vector<AxisInfo> axes;

private:
  std::map<std::pair<const void *, int64_t>, int> index;
};

struct AxisRef {
  mlir::Value value;
  int64_t axis;
};

using AxisKey = std::pair<const void *, int64_t>;
inline AxisKey keyOf(mlir::Value v, int64_t a) { return {v.getAsOpaquePointer(), a}; }

/// A factor whose head axis is the inner part (a batch axis merged with
/// heads: [B, H, T, d] -> [B*H, T, d]); keyed by (parts, inner).
using InnerHeadSet = std::set<AxisKey>;

int64_t rankOfValue(mlir::Value v);
bool definedByParam(mlir::Value v);

/// Rules need ranks: an op with an operand or result of unknown rank (shape
/// inference gave up) is a barrier.
bool hasUnrankedTensor(mlir::Operation *op);

/// True when the op's ties connect axis a to axis b, directly or through
/// other axes the op ties (a batch axis tied to the result by both operands).
bool connectedByTies(const std::vector<std::pair<AxisRef, AxisRef>> &ties,
                     AxisRef a, AxisRef b);

/// The positions [lo, hi] a chain of position copies keeps unchanged.
struct PositionRange {
  int64_t lo = INT64_MIN, hi = INT64_MAX;
  /// Every position along an axis of `size` passes (size unknown: no).
  bool covers(int64_t size) const { return size > 0 && lo <= 0 && hi >= size - 1; }
};

/// The operand whose positions `v` holds unchanged: a view (Identity, Reshape, Squeeze,
/// Unsqueeze, Flatten, Expand, Transpose), a Concat of one operand, a Cast to an integer
/// type or a Clip by constant bounds (these two narrow `keep`). Null for any other op.
mlir::Value positionSourceOf(mlir::Value v, PositionRange &keep);

/// True when the use reads only the operand's shape: a Shape or Size, or a one-operand
/// copy (Max, Min, Sum, Mean, Identity, Cast) whose result only such uses read.
bool readsOnlyShape(mlir::OpOperand &use, int depth = 4);

//===----------------------------------------------------------------------===//
// Cuts.cpp: phase 1.
//===----------------------------------------------------------------------===//

/// What phase 1 gives: every axis' cuts, runs and head index, and the factors
/// whose head axis is the inner part.
struct CutTable {
  AxisTable table;
  InnerHeadSet innerHeads;
};

/// Propagates cuts, runs and head indexing through the ops' rules until
/// nothing changes.
CutTable propagateCuts(const std::vector<mlir::Operation *> &ops);

//===----------------------------------------------------------------------===//
// Spaces.cpp: phase 2, the nodes and what the rules say about them.
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
  void grow(size_t n);
  std::pair<int, int> find(int x);
  /// Returns false when x and y are already joined with the other parity.
  bool unite(int x, int y, int rel);
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

/// Indices that are positions along an axis (TopK's, ArgMax's), and the op
/// that made them.
struct Positions {
  mlir::Value indices;
  AxisRef source;
  mlir::Operation *op;
};

/// What phase 2 gives. The node layout grows on first use of an axis, also
/// in later stages (a parameter that no rule touched).
struct SpaceGraph {
  AxisTable table;
  InnerHeadSet innerHeads;
  std::vector<Node> nodes;
  ParityUnionFind uf;
  std::vector<Restriction> restrictions;
  std::vector<Relation> scaleRels, signRels;
  // Scale relations that hold up to a normalization's epsilon, and why.
  std::vector<Relation> approxScaleRels;
  std::vector<std::string> approxWhy;
  std::vector<bool> approxUniform; // absorbs only a scale uniform along the axis
  std::vector<int> approxCall;      // the approxScaleRelation call of each relation
  int approxCalls = 0;
  std::vector<std::pair<mlir::Value, int64_t>> softmaxes;
  std::vector<Positions> positions; // in the order they were recorded
  std::map<const void *, size_t> positionIndex;

  /// The laid-out axis (nodes created on first use).
  AxisInfo &axisOf(mlir::Value v, int64_t a);
  int node(const AxisInfo &A, int head, int piece) const {
    return A.firstNode + (A.numHeads > 1 ? head : 0) * A.numPieces + piece;
  }
  /// Every node of an axis: all heads, all pieces.
  std::vector<int> allNodes(mlir::Value v, int64_t a);
  /// The block nodes of an axis: one per run (per head when blockHeads > 1).
  std::vector<int> blockNodes(mlir::Value v, int64_t a);
  int blockNode(const AxisInfo &A, int head, int run) const {
    return A.firstBlock + (A.blockHeads > 1 ? head : 0) * int(A.runs.size()) + run;
  }
  void ensureNodes(int idx);
  bool samePieces(const AxisInfo &X, const AxisInfo &Y) const;
};

/// Applies every op's rule to the nodes (an op without a rule, or without
/// ranks, fixes all it touches), then fixes the model's inputs and outputs.
/// Appends every barrier to `barriers`, in graph order.
SpaceGraph buildSpaces(mlir::func::FuncOp fn, const std::vector<mlir::Operation *> &ops,
                       CutTable cuts, std::vector<Barrier> &barriers);

//===----------------------------------------------------------------------===//
// Classes.cpp: the group of each class of the union-find.
//===----------------------------------------------------------------------===//

using Pairing = std::set<std::pair<int64_t, int64_t>>;

struct Classes {
  std::map<int, unsigned> mask;     // root -> the generators every op allows
  std::map<int, std::string> why;   // root -> what fixed it
  std::map<int, Pairing> pairing;   // root -> channel pairs (rotary classes)
  std::map<int, std::vector<int>> paramNodes; // root -> parameter nodes
};

/// Meets the restrictions per class and lists the parameter nodes of each
/// (laying out the parameters' axes that no rule touched).
Classes classify(SpaceGraph &g, const std::vector<graph::ParamOp> &params);

//===----------------------------------------------------------------------===//
// ScaleSignFlows.cpp: the kernels of the scale and sign flows.
//===----------------------------------------------------------------------===//

using FlowVector = std::map<int, int64_t>; // node -> exponent

struct Flows {
  std::vector<FlowVector> scale, sign;
  // Vectors that need an approximate relation dropped (why it holds), and
  // those that need a uniform-only one (a LayerNorm, RMSNorm).
  std::vector<std::pair<FlowVector, std::string>> approxScale, uniformScale;
};

Flows solveFlows(const SpaceGraph &g);

//===----------------------------------------------------------------------===//
// SpaceClaims.cpp, Heads.cpp, Rotary.cpp, Gauges.cpp, Shifts.cpp: claims.
//===----------------------------------------------------------------------===//

/// What the claim stages share: the result they add to, and claim ids.
struct ClaimContext {
  AnalysisResult &result;
  SpaceGraph &g;
  const Classes &classes;
  const Flows &flows;
  std::map<int, std::string> spaceOfRoot;
  int claimCounter = 0;

  std::string newClaimId() { return "c" + std::to_string(++claimCounter); }
  /// The member that a parameter node is (`in`: transforms by A^{-T}).
  Member memberOf(int node, bool in) const;
  /// Adds a linear claim of `group` on space `s`.
  void addLinear(Space &s, const std::string &group, std::vector<Member> members,
                 const std::string &note);
};

/// Every space with parameter members, in parameter order, and its claims.
void claimSpaces(ClaimContext &cx, const std::vector<graph::ParamOp> &params);

/// A space of head blocks (`blocks`: its block nodes, `plain`: its other
/// parameter nodes): head or head-group permutations.
void claimHeadSpace(ClaimContext &cx, int root, const std::vector<int> &blocks,
                    const std::vector<int> &plain, Space &s);

/// A space with a channel pairing (a rotary map's channels).
void claimRotarySpace(ClaimContext &cx, int root, unsigned bits, const Pairing &pairing,
                      Space &s, const std::set<int> &pset);

/// Sign and scale gauges whose support is inside the space; updates the
/// space's group summary.
void claimGaugesInSpace(ClaimContext &cx, int root, unsigned bits, Space &s,
                        const std::set<int> &pset);

/// One positive factor on whole tensors, absorbed by a LayerNorm / RMSNorm.
void claimUniformScales(ClaimContext &cx, const std::vector<graph::ParamOp> &params);

/// A model output and its name.
using Output = std::pair<mlir::Value, std::string>;

/// The loss as the analysis assumes it.
std::string describeLoss(LossKind loss, const std::vector<Output> &outputs);

/// Logit shifts: a Softmax (or, under cross-entropy, an output) over the last
/// axis of a trainable linear map or bias.
void claimShifts(ClaimContext &cx, const std::vector<Output> &outputs, LossKind loss);

/// Roles.cpp: every parameter's block (shape, roles, spaces per axis).
void buildBlocks(ClaimContext &cx, const std::vector<graph::ParamOp> &params,
                 const std::vector<Output> &outputs);

} // namespace analysis
} // namespace symoc

#endif
