// The CUDA backend of a generated optimizer. Generated code describes each block of the
// plan once (BlockDesc: rule kind, hyper-parameters, parameter indices); the CPU path and
// DeviceOptimizer both build from that description. This header needs no CUDA headers
// (streams are void *), so generated code compiles it with the host compiler.
//
// On the device: elementwise rules (adamw, adam, sgd, adam_mini) as one fused multi-tensor
// kernel per rule configuration, muon by one strided-batched Newton-Schulz per shape group
// (bf16 operands, fp32 accumulation), and the matrix rules (matrix_rules.cpp) batched by
// shape group: Symo for every pair of groups L x R of {1, Z2, S, B, O} but 1 x 1 (one side:
// per-head / per-run batches, beta2 = 0 and the EMA statistics; two sides: the pairs' scalar
// closed form), coupled Symo, Lau-Su row,
// col, centered_row and polar, Shampoo (eigen roots every precondition_frequency steps), and
// gauge projections (logit shift, row / ReLU / SwiGLU rescale) over muon, adam(w), symo,
// lausu and shampoo. Eigendecompositions in fp32 unless SYMOC_CUDA_EIG=f64 (the CPU's
// double). What remains (1 x 1 Symo, coupled Symo with momentum, the other
// Lau-Su kinds, other gauges) is stepped by the generated CPU code through a host callback,
// staged through host memory: correct, but it synchronizes and cannot be captured in a CUDA
// graph (step() says so when asked to).
#pragma once

#include "symoc/runtime/state.h"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace symoc::rt::cuda {

struct HyperParam {
  const char *name;
  double value;
};

// A gauge of a block (plan::Gauge): kind logit_shift, relu_rescale, swiglu_rescale or
// row_rescale; a, b, c: positions in the block's parameters (-1: unused).
struct GaugeDesc {
  const char *kind;
  int a, b, c;
};

// A piece of one side of a Symo block (plan::PieceGroup): group on each of `parts` runs.
struct PieceDesc {
  int64_t offset, extent;
  const char *group; // 1, Z2, S, B, O
  int64_t parts;
};

// One block (a unit of the plan: one parameter, or parameters stepped jointly).
struct BlockDesc {
  const char *kind;    // adamw, adam, sgd, adam_mini, muon, shampoo, lausu, symo, symo_coupled
  const char *variant; // lausu kind, "L x R" for symo, "" otherwise
  const HyperParam *hp;
  int nhp;
  const int *params; // plan parameter indices
  int nparams;
  int ngauges; // > 0: gauge-projected
  const GaugeDesc *gauges = nullptr; // ngauges of them
  const PieceDesc *left = nullptr;   // symo: the sides as pieces (nleft / nright > 0 replace variant)
  int nleft = 0;
  const PieceDesc *right = nullptr;
  int nright = 0;
  const int *axes = nullptr; // symo_coupled: per member, 0 = its rows are the shared space, 1 = its columns
  double get(const char *name, double dflt) const;
};

struct ParamDesc {
  const char *name;
  int64_t rows, cols; // the matrix the rule sees
};

// Steps blocks the device does not implement: the generated CPU rules on host copies
// (float32) of the listed blocks' weights and gradients (full-length arrays, others NULL).
using HostStepFn = void (*)(void *ctx, const int32_t *blocks, int nblocks, float *const *w,
                            const float *const *g);

// Whether the device implements block b's rule (false: host path); params: the plan's.
bool on_device(const BlockDesc &b, const ParamDesc *params);

class DeviceOptimizer {
public:
  DeviceOptimizer(const ParamDesc *params, int nparams, const BlockDesc *blocks, int nblocks, int device,
                  HostStepFn host_step, void *host_ctx);
  ~DeviceOptimizer();
  DeviceOptimizer(const DeviceOptimizer &) = delete;
  DeviceOptimizer &operator=(const DeviceOptimizer &) = delete;

  // One step; weights/grads are device pointers (dtypes: 0 = f32, 1 = bf16; NULL = all f32),
  // lr the base rate, mult[param] the multipliers. blocks == NULL: every block. Throws Error.
  void step(void *const *w, const void *const *g, const int32_t *dtypes, float lr, const float *mult,
            const int32_t *blocks, int nblocks, void *stream);

  // Device state <-> the CPU runtime's State (same buffer and counter names as the CPU rules,
  // so the state file is the CPU one). export_to synchronizes the device.
  void export_to(State &st) const;
  void import_from(const State &st);
  void zero();

  int64_t skipped() const; // blocks skipped on the device (reads the device counter)
  int64_t bytes() const;   // device state bytes
  bool holds_param(const char *name) const; // the parameter's state lives on the device
  int host_blocks() const;                  // blocks stepped by the host path
  int device() const { return device_; }

private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  int device_;
};

} // namespace symoc::rt::cuda
