// Gauge projections (dead directions, SYMMETRY.md section 5): a wrapper over any base
// rule that removes, from the base step's direction, its component along the gauge
// tangents xi at the current weights (Euclidean metric), so the update is horizontal.
// The gradient of a gauge-invariant loss is already horizontal; the base rule's
// preconditioning is what re-introduces vertical components.
#pragma once

#include "symoc/runtime/optim.h"

namespace symoc::rt {

enum class GaugeKind {
  LogitShift,   // head W (V x d) before a softmax: xi = 1 v^T; horizontal = centre the rows
  NormScale,    // W feeding a normalization alone: xi = W (radial)
  ReluRescale,  // hidden unit i: xi_i = (row i of W_in, b_i, -column i of W_out)
  RowScale,     // row i of W (any rank: axis 0) feeding a per-channel normalization
                // (BatchNorm with batch statistics): xi_i = (row i of W, b_i)
  SwiGLURescale,// unit i: xi_i = (row i of W_up, -column i of W_down)
  HeadRotationQK, // per head skew A: xi_A = (A W_Q^h, A W_K^h), rows of W_Q/W_K = head channels
  HeadRotationVO, // per head skew A: xi_A = (A W_V^h, -W_O^h A), rows of W_V, columns of W_O
};

// Indices refer to the params of each step call. Unused ones are -1.
struct GaugeSpec {
  GaugeKind kind;
  int a = -1, b = -1, c = -1; // LogitShift/NormScale: a. Relu: a = W_in, b = bias (or -1), c = W_out.
                              // RowScale: a = W, b = bias (or -1).
                              // SwiGLU: a = up, c = down. QK: a = Q, b = K. VO: a = V, c = O.
  int64_t heads = 0;          // head rotations: number of heads (rows of Q/K/V split evenly)
};

class GaugeProjected : public Rule {
public:
  GaugeProjected(std::shared_ptr<Rule> base, std::vector<GaugeSpec> gauges);
  std::string tag() const override { return base_->tag(); }
  void directions(Context &, State &, const Param *, size_t, float *const *) override;
  float decoupled_weight_decay() const override { return base_->decoupled_weight_decay(); }
  bool coupled() const override { return true; }

  // Projects the directions D (shapes of ps) in place; exposed for tests.
  static void project(Context &ctx, const GaugeSpec &g, const Param *ps, size_t n, float *const *D);

private:
  std::shared_ptr<Rule> base_;
  std::vector<GaugeSpec> gauges_;
};

} // namespace symoc::rt
