// Symo steps: H^+ g with H = (S_hat + eps I)^{1/2}, S_hat the bias-corrected EMA of the
// orbit-averaged second moment E_{(P,Q)}[vec(P G Q^T) vec(P G Q^T)^T] of the gradient over
// a group acting on the block's left (rows) and right (columns) spaces. The closed forms
// (SYMMETRY.md section 3) are evaluated from the isotypic decomposition of each side:
//   B/O:  one component, the whole space (dimension n)
//   S:    the mean line (dimension 1) and its complement (dimension n - 1)
//   Z2:   every coordinate on its own (dimension 1 each)
//   1:    no decomposition (the space is a multiplicity space)
// With both sides non-trivial every component pair is irreducible and distinct, so S_hat is
// one scalar per pair; with one side trivial it is C_a (x) P_a with an n x n matrix C_a per
// component; 1 x 1 keeps the full (mn x mn) matrix (small blocks only).
#pragma once

#include "symoc/runtime/optim.h"

#include <vector>

namespace symoc::rt {

enum class Group { Trivial, Z2, S, B, O };
const char *to_string(Group g);
Group parse_group(const std::string &s); // "1", "Z2", "S", "B", "O"; throws on others

// A factored space heads x head_dim (head-major). outer acts on whole heads (Trivial or S),
// inner independently inside each head (Trivial, Z2, S, B or O). S(H) with inner B/O is
// irreducible on the whole space and has the same closed form as B(H * head_dim).
struct HeadSpec {
  int64_t heads = 0; // 0: the side is not factored
  Group outer = Group::Trivial;
  Group inner = Group::O;
};

// One piece of a side (a range of its coordinates: one of Q, K, V in a fused QKV weight,
// or a whole axis) with its own group: `group` on each of `parts` equal consecutive runs
// (heads, head pairs, KV groups). B/O make each run one component, S gives each run its
// mean line and centred part, Z2 one component per coordinate. A side described by pieces
// is stepped block-diagonally over the pieces (and the runs): every run is its own
// component, so the cross terms between runs are dropped (the block-diagonal H_g).
struct SidePiece {
  int64_t offset = 0, extent = 0;
  Group group = Group::O;
  int64_t parts = 1;
};

struct SymoConfig {
  Group left = Group::Trivial, right = Group::Trivial;
  HeadSpec left_heads, right_heads; // when heads > 0 they replace left / right
  // When non-empty they replace left / left_heads (right / right_heads); the pieces must
  // tile the side (checked at the first step).
  std::vector<SidePiece> left_pieces, right_pieces;
  float beta2 = 0.95f;      // EMA of the structured second moment
  bool bias_correction = true;
  float eps = 1e-8f;        // damping: H = (S_hat + eps I)^{1/2}
  float beta1 = 0.f;        // optional momentum on the gradient that is preconditioned
  // Muon-style momentum (the Symo paper's nanoGPT setup): M <- lerp(M, G, 1 - beta1),
  // U = nesterov ? lerp(G, M, beta1) : M, no bias correction, and the statistics are taken
  // from U (the structured H_g of the momentum), not from G.
  bool muon_momentum = false;
  bool nesterov = false;
  // With beta2 = 0 and one side trivial: each run's direction rescaled from the Symo scale
  // (sqrt(d) polar) to muon.py's (polar * max(1, rows/cols)^{1/2} of the run in the block's
  // orientation), so learning rates transfer from Muon and mix with Muon blocks.
  bool muon_scale = false;
  // beta2 = 0 with one side trivial: ns_steps > 0 replaces each B/O run's (and each S run's
  // centred part's) exact polar factor by muon.py's quintic Newton-Schulz map with that many
  // iterations (the input normalized by its Frobenius norm, as Muon does), times sqrt(d):
  // D_run = sqrt(d) NS(U_run). With muon_scale the run's direction is then exactly Muon's
  // on that run. 0: the exact eigen route (small singular directions lifted to full size).
  int ns_steps = 0;
  // beta2 = 0: no EMA, H_g from one matrix. One-sided components are then evaluated on the
  // smaller side of each run: (X X^T / d + eps)^{-1/2} X = X (X^T X / d + eps)^{-1/2}
  // (sqrt(d) times the polar factor of the run), keeping no n x n state.
  float weight_decay = 0.f; // decoupled
  MatFnOptions fn;          // eigen-decompositions for the matrix components
  int64_t max_dense = 4096; // largest matrix (n x n) the step may eigendecompose
};

class Symo : public Rule {
public:
  explicit Symo(SymoConfig c) : c_(c) {}
  std::string tag() const override { return "symo"; }
  void directions(Context &, State &, const Param *, size_t, float *const *) override;
  float decoupled_weight_decay() const override { return c_.weight_decay; }
  const SymoConfig &config() const { return c_; }
private:
  SymoConfig c_;
};

// Blocks coupled through one shared space (e.g. W1 rows and W2 columns around a hidden
// layer): the joint orbit average over the shared space's group. Each member says which
// axis of its block is the shared space; the members' gradients are stacked into
// Z = [G_i or G_i^T] (shared x sum of other dims), a one-sided step is taken on Z and
// split back. With B/O this is sqrt(n) polar(Z) for a single gradient.
struct CoupledMember {
  size_t index; // position in the params of each step call
  int axis;     // 0: rows of the block are the shared space; 1: columns are
};
class SymoCoupled : public Rule {
public:
  SymoCoupled(Group shared, std::vector<CoupledMember> members, SymoConfig c);
  std::string tag() const override { return "symo_coupled"; }
  void directions(Context &, State &, const Param *, size_t, float *const *) override;
  float decoupled_weight_decay() const override { return c_.weight_decay; }
  bool coupled() const override { return true; }
private:
  Group shared_;
  std::vector<CoupledMember> members_;
  SymoConfig c_;
};

} // namespace symoc::rt
