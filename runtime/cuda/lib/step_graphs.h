// Internal: DeviceOptimizer's automatic CUDA graphs. A training loop steps the same tensors
// every iteration, so the host's launch sequence (hundreds of kernels and GEMMs for a model
// with many matrices) is the same too; on a small model that host time is the step. A step
// whose weights, gradients, dtypes, multipliers and blocks subset (a distributed rank's
// blocks) equal one of the last few steps' is captured once, on a private stream, and every
// later step with that key replays it: one graph launch after a one-thread kernel that writes
// the step's base lr into a device scalar (the captured kernels read the lr from there,
// StepArgs::lr_scale, so schedules work).
//
// SYMOC_CUDA_GRAPH: unset or 1: on; 0: off; log: on, and one stderr line per capture or
// refusal. A capture that fails (a host-path block, Shampoo roots refreshed every f > 1
// steps, anything the stream capture rejects) turns the graphs off for the optimizer; the
// step then runs eagerly, as without graphs.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace symoc::rt::cuda::detail {

class StepGraphs {
public:
  // What a captured step depends on besides the lr: the tensors, their dtypes, the
  // multipliers and the blocks stepped.
  struct Key {
    std::vector<const void *> ptrs; // weights then gradients
    std::vector<int32_t> dtypes;
    std::vector<float> mult;
    std::vector<int32_t> subset; // the listed blocks, in call order; {-1} for a full step
    bool operator==(const Key &o) const { // the subset first: a DDP rank's keys differ there only
      return subset == o.subset && ptrs == o.ptrs && dtypes == o.dtypes && mult == o.mult;
    }
  };
  // body(stream, lr_dev): issues one whole step on `stream`; lr_dev is the device scalar to
  // read the base lr from (NULL: the lr is the host value, as in an eager step).
  using Body = std::function<void(cudaStream_t, const float *)>;

  StepGraphs();
  ~StepGraphs();
  StepGraphs(const StepGraphs &) = delete;
  StepGraphs &operator=(const StepGraphs &) = delete;

  // Runs the step through a graph when it can (replay, or capture then replay) and returns
  // true; false: the caller runs the step eagerly (and calls remember(k) after it).
  bool step(const Key &k, float lr, cudaStream_t s, const Body &body);
  // The key of an eager step that just ran (a repeat of any of the last few is captured:
  // gradients freed by zero_grad(set_to_none=True) may come back in two alternating sets of
  // blocks).
  void remember(Key k);
  // Drops every graph (the state was reloaded or zeroed; the next repeat captures again).
  void clear();
  bool enabled() const { return mode_ != Mode::Off && refused_.empty(); }

private:
  enum class Mode { Off, On, Log };
  struct Entry {
    Key key;
    cudaGraphExec_t exec = nullptr;
    uint64_t used = 0;
  };
  bool capture(const Key &k, const Body &body);
  void refuse(const std::string &why);

  Mode mode_ = Mode::On;
  std::string refused_;
  std::vector<Entry> graphs_; // at most kMaxGraphs, least recently used replaced
  std::vector<Key> seen_; // keys of the last kMaxGraphs eager steps, newest last
  cudaStream_t capture_stream_ = nullptr;
  float *lr_dev_ = nullptr;
  uint64_t clock_ = 0;
  // 16: a DDP rank steps one key per bucket it is home of (symoc.distributed), each replayed
  // from its own graph once seen twice; a plain loop needs one or two.
  static constexpr size_t kMaxGraphs = 16;
};

} // namespace symoc::rt::cuda::detail
