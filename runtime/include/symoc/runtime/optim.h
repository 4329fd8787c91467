// Optimizer steps. Generated code makes one call per parameter block, or per batch of
// same-shape blocks:  rule.step(ctx, state, params, n, lr).  A Param is a pointer/shape
// descriptor; the same descriptors will describe device buffers for a CUDA backend.
#pragma once

#include "symoc/runtime/core.h"
#include "symoc/runtime/linalg.h"
#include "symoc/runtime/state.h"

#include <memory>

namespace symoc::rt {

// One trainable block viewed as a matrix (rows = output space, cols = input space;
// a bias or gain of length n is rows = n, cols = 1). `name` keys its optimizer state.
struct Param {
  const char *name = ""; // a plain pointer keeps Param trivially copyable (no allocation)
  float *w = nullptr;
  const float *g = nullptr;
  int64_t rows = 0, cols = 0;
  int64_t size() const { return rows * cols; }
};

// What to do with a gradient containing NaN/Inf.
enum class NonFinitePolicy {
  Skip,  // leave weights and state of that block untouched, count it (default)
  Zero,  // replace the non-finite entries by 0 and step
  Throw, // throw an Error naming the block
};

class Rule {
public:
  virtual ~Rule() = default;
  // Short name used in state keys: "<param>/<tag>.<buffer>".
  virtual std::string tag() const = 0;

  // W <- W - lr * (direction + decoupled decay) for every param, after the non-finite filter.
  void step(Context &ctx, State &st, const Param *ps, size_t n, float lr);
  void step(Context &ctx, State &st, const Param &p, float lr) { step(ctx, st, &p, 1, lr); }
  void step(Context &ctx, State &st, std::vector<Param> &ps, float lr) { step(ctx, st, ps.data(), ps.size(), lr); }

  // The update direction D_i (row-major, shape of param i) for each param; advances the
  // optimizer state. The params' g pointers are finite here.
  virtual void directions(Context &ctx, State &st, const Param *ps, size_t n, float *const *D) = 0;
  // Decoupled weight decay applied by step(): W <- W (1 - lr wd) - lr D.
  virtual float decoupled_weight_decay() const { return 0.f; }
  // True when the params of one call are coupled (a joint step, a gauge across blocks):
  // a non-finite gradient in any of them then skips all of them.
  virtual bool coupled() const { return false; }

  NonFinitePolicy nonfinite = NonFinitePolicy::Skip;

protected:
  // "<param>/<tag>.<what>" without building a string (tag() cached on first use).
  Key key(const Param &p, const char *what) const;
  // Optional single pass for elementwise rules: advance the state and apply
  // W <- W (1 - lr wd) - lr D in one sweep over memory, with exactly the arithmetic of
  // directions() followed by step()'s update (bit-identical results), without the D buffer.
  // Called by step() on the filtered (finite) params; false = not provided.
  virtual bool fused_step(Context &, State &, const Param *, size_t, float) { return false; }

private:
  mutable std::string tag_cache_;
};

// ----------------------------------------------------------------- reference steps
struct SGDConfig {
  float momentum = 0.f, dampening = 0.f, weight_decay = 0.f; // torch.optim.SGD semantics
  bool nesterov = false;
};
class SGD : public Rule {
public:
  explicit SGD(SGDConfig c = {}) : c_(c) {}
  std::string tag() const override { return "sgd"; }
  void directions(Context &, State &, const Param *, size_t, float *const *) override;
private:
  SGDConfig c_;
};

struct AdamConfig {
  float beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f, weight_decay = 0.f;
  bool decoupled = false; // false: torch.optim.Adam (L2 in the gradient); true: AdamW
};
class Adam : public Rule {
public:
  explicit Adam(AdamConfig c = {}) : c_(c) {}
  std::string tag() const override { return c_.decoupled ? "adamw" : "adam"; }
  void directions(Context &, State &, const Param *, size_t, float *const *) override;
  float decoupled_weight_decay() const override { return c_.decoupled ? c_.weight_decay : 0.f; }
protected:
  bool fused_step(Context &, State &, const Param *, size_t, float lr) override;
private:
  AdamConfig c_;
};
inline AdamConfig adamw_config(float wd = 1e-2f) { AdamConfig c; c.weight_decay = wd; c.decoupled = true; return c; }

// Adam-mini: per-coordinate first moment, one second moment per group of `group_rows`
// consecutive rows (1: per output neuron / per token row; head_dim: per head), the mean
// of g^2 over the group. Decoupled weight decay.
struct AdamMiniConfig {
  float beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f, weight_decay = 0.f;
  int64_t group_rows = 1;
};
class AdamMini : public Rule {
public:
  explicit AdamMini(AdamMiniConfig c = {}) : c_(c) {}
  std::string tag() const override { return "adam_mini"; }
  void directions(Context &, State &, const Param *, size_t, float *const *) override;
  float decoupled_weight_decay() const override { return c_.weight_decay; }
protected:
  bool fused_step(Context &, State &, const Param *, size_t, float lr) override;
private:
  AdamMiniConfig c_;
};

// Muon (Keller Jordan's muon.py): M <- lerp(M, G, 1 - beta); U = nesterov ? lerp(G, M, beta)
// : M; D = polar(U) * max(1, rows/cols)^{1/2}. Decoupled weight decay.
// Neuron-wise normalization (NorMuon, Li et al. 2025; norm_beta2 > 0): with O = polar(U),
// v <- lerp(v, mean of O^2 along each line, 1 - norm_beta2) per line (norm_axis 0: per row,
// 1: per column; state "norm_v", lines x 1), O' = O / (sqrt(v) + norm_eps) per line, then
// O' *= |O|_F / (|O'|_F + norm_eps) (the update keeps O's norm), then Muon's scale.
// A per-line diagonal rescaling: equivariant under permutations and sign flips of the
// lines, not under rotations of them (the plan picks the axis from the claims).
enum class MuonScale {
  MaxRatio,  // max(1, rows/cols)^{1/2} (muon.py)
  Moonlight, // 0.2 * max(rows, cols)^{1/2} (matches AdamW's update RMS; Liu et al. 2025)
  None,
};
struct MuonConfig {
  float beta = 0.95f, weight_decay = 0.f;
  bool nesterov = true;
  MuonScale scale = MuonScale::MaxRatio;
  PolarOptions polar = polar_options(PolarMethod::NewtonSchulz);
  // Optional per-head orthogonalization: rows split into heads of head_rows rows each.
  int64_t head_rows = 0;
  float norm_beta2 = 0.f; // 0: off (plain Muon, bit for bit)
  int norm_axis = 0;      // 0: normalize rows (output neurons), 1: columns
  float norm_eps = 1e-10f;
};
class Muon : public Rule {
public:
  explicit Muon(MuonConfig c = {}) : c_(c) {}
  std::string tag() const override { return "muon"; }
  void directions(Context &, State &, const Param *, size_t, float *const *) override;
  float decoupled_weight_decay() const override { return c_.weight_decay; }
private:
  MuonConfig c_;
};

// Shampoo (Gupta et al. 2018): L <- beta2 L + G G^T, R <- beta2 R + G^T G (beta2 = 1: the
// paper's sums), D = (L + eps I)^{-1/p} G (R + eps I)^{-1/p}, roots recomputed every
// `precondition_frequency` steps (cached in state between). A side longer than
// max_precond_dim is not preconditioned (identity), as in distributed Shampoo.
enum class RootMethod { Eig, CoupledNewton };
struct ShampooConfig {
  float eps = 1e-12f, beta2 = 1.f, weight_decay = 0.f;
  int exponent = 4;
  int precondition_frequency = 1;
  int64_t max_precond_dim = 8192;
  RootMethod root = RootMethod::Eig;
  MatFnOptions fn;
};
class Shampoo : public Rule {
public:
  explicit Shampoo(ShampooConfig c = {}) : c_(c) {}
  std::string tag() const override { return "shampoo"; }
  void directions(Context &, State &, const Param *, size_t, float *const *) override;
  float decoupled_weight_decay() const override { return c_.weight_decay; }
private:
  ShampooConfig c_;
};

// --------------------------------------------------- Lau & Su role-based steps
// Momentum M <- beta M + (1 - beta) G (optionally Nesterov: G + beta M ... see README),
// then a direction from M. Decoupled weight decay.
enum class LauSuKind {
  Polar,               // hidden matrices: polar(M) (optionally per head of head_rows rows)
  Row,                 // embedding, SwiGLU gate/up: rows of M normalized
  Col,                 // SwiGLU down: columns normalized
  CenteredRow,         // untied LM head: Pi rowscale(Pi M), Pi = subtract the mean row
  Hybrid,              // nu * polar(rowscale(M))
  OneSidedSpectral,    // nu * M (M^T M)^{-1/2}
  LeftSpectralCentered // MoE router: Pi (nu * (M_c M_c^T + eps I)^{-1/2} M_c)
};
const char *to_string(LauSuKind k);
struct LauSuConfig {
  float beta = 0.95f, eps = 1e-8f, weight_decay = 0.f;
  bool nesterov = false;
  bool nuclear_scale = true; // spectral kinds scale by nu = <X, polar(X)> (as the reference)
  int64_t head_rows = 0;     // Polar only
  PolarOptions polar = polar_options(PolarMethod::Eig);
};
class LauSu : public Rule {
public:
  LauSu(LauSuKind k, LauSuConfig c = {}) : k_(k), c_(c) {}
  std::string tag() const override { return std::string("lausu_") + to_string(k_); }
  void directions(Context &, State &, const Param *, size_t, float *const *) override;
  float decoupled_weight_decay() const override { return c_.weight_decay; }
  // The stateless direction for a given momentum matrix (exposed for tests).
  static void direction_of(Context &ctx, LauSuKind k, const LauSuConfig &c, const MatView &M, const MatView &D);
private:
  LauSuKind k_;
  LauSuConfig c_;
};

} // namespace symoc::rt
