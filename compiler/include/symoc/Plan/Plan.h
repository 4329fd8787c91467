//===- Plan.h - The optimizer plan: one step rule per parameter block -----===//
//
// A plan says, for every trained initializer of a model, how the generated optimizer
// steps it: the runtime rule (symoc::rt), the group pair it averages over (Symo), its
// hyper-parameters, and what that costs (state bytes, FLOPs per step). Policies
// (Policy.h) build plans from the analysis; the emitter (Emit/EmitCpp.h) turns a plan into
// C++. The plan is plain data: no MLIR.
//
//===----------------------------------------------------------------------===//
#ifndef SYMOC_PLAN_PLAN_H
#define SYMOC_PLAN_PLAN_H

#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace symoc::plan {

/// A piece of one axis (one of Q, K, V in a fused weight, or the whole axis) with the
/// compact group its claims generate on it alone: `group` on each of `parts` equal
/// consecutive runs (heads). Pieces and runs are stepped block-diagonally (the Symo
/// paper's block-diagonal H_g): each run is one component of its own.
struct PieceGroup {
  int64_t offset = 0, extent = 0;
  std::string group = "1"; // 1, Z2, S, B, O
  int64_t parts = 1;
  std::vector<std::string> claims; // the claims that give it (per-head groups, head permutations)
  /// "O", "O/12" (12 runs), "S".
  std::string text() const;
};

/// "O|O|O", "3*O/12", "S": the pieces of one side ("1" when empty).
std::string piecesText(const std::vector<PieceGroup> &pieces);

/// One trained initializer, seen as a matrix rows x cols (rows = axis 0, cols = the
/// product of the other axes; a vector of length n is n x 1).
struct Param {
  std::string name;
  std::vector<int64_t> shape;
  int64_t rows = 1, cols = 1;
  std::string role;  // the analysis' role string ("embedding+other", "gain", ...)
  bool tied = false;
  /// What the policies see: embedding, lm_head, router, hidden, conv, swiglu_gate,
  /// swiglu_up, swiglu_down, stack, expert_vectors, vector, scalar.
  std::string cls;
  /// Compact groups the analysis' claims generate on the rows / columns ("1", "Z2", "S",
  /// "B", "O") and the claims they come from.
  std::string left = "1", right = "1";
  std::vector<std::string> leftClaims, rightClaims;
  /// The claimed structure of each axis as pieces (per-head groups merged by the claimed
  /// head permutations; empty when some piece has no compact group): what granularity
  /// `matrix` uses. tiles: the same before merging (one piece per claimed range).
  std::vector<PieceGroup> leftPieces, rightPieces, leftTiles, rightTiles;
  /// Head permutations (claims of group "heads") on each axis: {offset, extent, heads, id}.
  struct HeadPerm {
    int64_t offset, extent, heads;
    std::string claim;
  };
  std::vector<HeadPerm> leftPerms, rightPerms;
  /// Space ids of axis 0 and axis 1 (empty when the axis is cut into pieces or absent).
  std::string leftSpace, rightSpace;
  /// A stack of `stack` matrices (a rank-3 parameter E x m x n that the graph reads as E
  /// matrices: MoE experts): seen as the (E m) x n matrix, each matrix a run of m rows.
  int64_t stack = 0;
  int64_t numel() const { return rows * cols; }
  bool isMatrix() const { return shape.size() >= 2 && rows > 1 && cols > 1; }
};

/// A gauge projected out by a ddc-* step (runtime GaugeKind); indices are positions in
/// the unit's param list.
struct Gauge {
  std::string kind; // logit_shift, relu_rescale, swiglu_rescale, row_rescale
  int a = -1, b = -1, c = -1;
  std::string claim; // the claim id it comes from
};

/// A step rule with its hyper-parameters.
struct Step {
  /// adamw, adam, sgd, adam_mini, muon, shampoo, lausu, symo, symo_coupled.
  std::string kind = "adamw";
  std::string lausu;               // lausu: polar, row, col, centered_row, left_spectral_centered, ...
  std::string left = "1", right = "1"; // symo: groups on rows / columns; symo_coupled: left = shared group
  std::map<std::string, double> hp;    // hyper-parameters (names as in docs/compile.md)
  std::vector<Gauge> gauges;           // non-empty: GaugeProjected over this rule
  /// symo: the sides as pieces (non-empty: they replace `left` / `right`, which then hold
  /// piecesText for reading).
  std::vector<PieceGroup> leftPieces, rightPieces;
  /// "symo B x B", "muon", "lausu row", "adamw + gauges"...
  std::string describe() const;
  /// Everything that distinguishes two rule objects (kind, groups, hyper-parameters).
  std::string configKey() const;
  double get(const std::string &k, double dflt) const {
    auto it = hp.find(k);
    return it == hp.end() ? dflt : it->second;
  }
};

/// One call of the runtime: a single block, or several blocks stepped jointly (coupled
/// Symo, gauge projections). Single-block units with the same rule and shape are batched
/// into one call by the emitter.
struct Unit {
  std::vector<int> params;     // indices into Plan::params
  std::vector<int> axes;       // symo_coupled: which axis of each member is the shared space
  Step step;
  std::string source;          // "policy symo", "override *.bias=adamw", "config FILE"...
  std::string note;            // why this choice (fallbacks, skipped gauges)
  /// The claims the rule relies on (groups it averages over, the shift a centred rule
  /// removes, gauges it projects) and why the rule fits them; empty claims: the rule
  /// assumes no symmetry.
  std::vector<std::string> claims;
  std::string why;
  int64_t stateBytes = 0;      // optimizer state after the first step (float32 buffers)
  double flops = 0;            // estimate per step
};

struct Plan {
  std::string model;     // C identifier used for file and target names ("llama")
  std::string modelPath; // the ONNX file
  std::string policy;
  std::vector<Param> params; // the ABI order (the analysis' block order)
  std::vector<Unit> units;
  std::vector<std::string> notes; // plan-wide remarks (budget, skipped features)
  std::string fingerprint;        // filled by finalize()

  int64_t stateBytes() const;
  double flops() const;
  /// AdamW's state for the same parameters (2 floats per entry).
  int64_t adamwBytes() const;
  /// Unit index of each parameter.
  std::vector<int> unitOf() const;
  /// Computes state bytes / FLOPs of every unit and the fingerprint.
  void finalize();
};

/// State bytes and FLOPs of one unit (estimates documented in docs/compile.md).
void estimateCost(const Plan &plan, Unit &u);

/// plan.json: per parameter its block (unit), groups and step; per unit the rule.
nlohmann::json toJson(const Plan &plan);
/// `--emit=plan`: the plan as text.
std::string formatPlan(const Plan &plan);
/// `--dry-run`: per-block table with state bytes (and total vs AdamW) and FLOPs.
std::string formatDryRun(const Plan &plan);

/// "12.3 KiB", "4.0 MiB".
std::string formatBytes(int64_t bytes);
/// Sanitizes any string into a C identifier ("layers.0.q.weight" -> "layers_0_q_weight").
std::string cIdentifier(const std::string &s);

} // namespace symoc::plan

#endif
