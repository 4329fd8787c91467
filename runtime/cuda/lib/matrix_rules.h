// The matrix rules of the CUDA backend: Symo (beta2 = 0, one non-trivial side), Lau-Su
// (row, col, centered_row, polar), Shampoo, and gauge projections over those, Muon and
// Adam(W). Blocks of one configuration and shape form a group; each step of a group is
//   prep (momentum -> U) | direction (batched over the group) -> D | gauges | apply
// with the state on the device under the CPU rules' buffer names. Internal.
#pragma once

#include "kernels.h"
#include "symoc/cuda/device_optimizer.h"
#include "symoc/cuda/matrix.h"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace symoc::rt::cuda {

// The Newton-Schulz plans' tuning from the environment, one place for every plan of the
// backend (Muon groups and Symo's runs): SYMOC_CUDA_NS=gram (Gram Newton-Schulz for rectangular
// groups) or standard (none); SYMOC_CUDA_NS_LT=0 runs every GEMM as cublasGemmStridedBatchedEx
// after a copy instead of cuBLASLt (a diagnostic for issue 12's concurrent faults);
// SYMOC_CUDA_NS_SYM=1 computes only the upper half of the symmetric r x r products
// (NsTuning::symmetric_products); SYMOC_CUDA_GEMM_TUNE=1 times the GEMM algorithms on the first
// step (NsTuning::tune_gemms); SYMOC_CUDA_NS_STREAMS=1 runs the standard and Gram groups on one
// stream (default: two, NsTuning::concurrent); SYMOC_CUDA_NS_WRITE_THROUGH=0 keeps the Gram
// path's unpack (NsTuning::write_through); SYMOC_CUDA_NS_GRAM_RESTART=N moves the Gram path's restart
// (NsTuning::gram_restart; 0: none; a malformed value throws rt::Error naming the variable).
symoc::cuda::NsTuning ns_tuning_from_env();

class MatrixRules {
public:
  // Whether the device implements block b as a matrix rule (why: the reason it does not).
  static bool supports(const BlockDesc &b, const ParamDesc *params, std::string *why = nullptr);

  MatrixRules(const ParamDesc *params, const BlockDesc *blocks, const std::vector<int> &mine,
              symoc::cuda::Engine &engine, detail::Counters cnt);
  ~MatrixRules();

  // Stage 0: makes what the groups this step touches need (their state on a first step), before
  // the caller's first launch, so that an out-of-memory error leaves nothing stepped.
  void reserve(const std::vector<uint8_t> &active, cudaStream_t s);
  // Stage 1: checks and inputs (momentum -> U).
  // lr_dev: NULL, or the device scalar the kernels read the base lr from (StepArgs::lr_scale).
  void begin(void *const *w, const void *const *g, const int32_t *dt, float lr, const float *mult,
             const std::vector<uint8_t> &active, cudaStream_t s, const float *lr_dev = nullptr);
  // Stage 2: directions (a Muon group's by its own Newton-Schulz plan), gauges, updates, counters.
  void finish(cudaStream_t s);

  void export_to(State &st, const int64_t *t, const int64_t *skips) const;
  // Returns the step count of each of its blocks found in st (t[block]).
  void import_from(State &st, int64_t *t);
  void zero();
  int64_t state_bytes() const;
  // Whether the shared workspace was reallocated since the last call (graphs captured before
  // hold the old one: the caller drops them).
  bool ws_moved();
  bool holds_param(int p) const;

  struct Group;
  struct RootBank;

private:
  const ParamDesc *params_;
  const BlockDesc *blocks_;
  symoc::cuda::Engine &engine_;
  detail::Counters cnt_;
  std::vector<std::unique_ptr<Group>> groups_;
  int64_t state_bytes_ = 0;
  bool split_groups_ = true; // SYMOC_CUDA_SUBSET_GROUPS=0: split_unmade does nothing
  bool memory_log_ = false;  // SYMOC_CUDA_MEMORY_LOG=1
  symoc::cuda::NsTuning ns_tune_; // the Newton-Schulz plans' tuning, read at construction
  void *ws_ = nullptr;       // one workspace for every group (they run one after another)
  size_t ws_bytes_ = 0;
  size_t ws_need_ = 0;       // the largest ws_bytes of the groups made
  bool ws_moved_ = false;
  // The Shampoo groups that refresh every block this step solve their roots together, one
  // eigensolve per side size (and exponent, eps, precision) across groups (plan_banks,
  // run_banks); SYMOC_CUDA_EIGH_BANKS=0 (read at construction) keeps each group's own.
  bool banks_on_ = true;
  bool split_operands_ = true;               // SYMOC_CUDA_SPLIT_OPERANDS (Group::split)
  size_t banks_bytes_ = 0;                   // device memory the banks added (roots, workspace growth)
  size_t banks_max_bytes_ = SIZE_MAX;        // SYMOC_CUDA_EIGH_BANKS_MAX_MB
  std::vector<std::unique_ptr<RootBank>> banks_; // made on first use, by their members
  std::vector<RootBank *> step_banks_;            // this step's (reserve -> finish)
  void plan_banks(const std::vector<uint8_t> &active, cudaStream_t s);
  void banks_off(const char *why, cudaStream_t s);
  void run_banks(cudaStream_t s);
  void shampoo_factor(Group &g, bool left, cudaStream_t s);
  void store_root(Group &g, bool left, const float *src, int64_t n, cudaStream_t s);
  void ensure_ws(size_t bytes);
  std::unique_ptr<Group> new_group(const BlockDesc &d) const;
  void plan_group(Group &g);
  // Splits every group with no device memory yet whose blocks are partly in `on` into the
  // blocks in it and the rest, so that a distributed rank makes (and computes) only its own
  // blocks' state.
  void split_unmade(const std::vector<uint8_t> &on);
  void prepare(Group &g, cudaStream_t s);
  void ensure_slot_state(Group &g, const std::vector<uint8_t> &on, cudaStream_t s);
  void make_buffers(Group &g, cudaStream_t s);
  void direction(Group &g, cudaStream_t s);
  void symo_direction(Group &g, cudaStream_t s);
};

} // namespace symoc::rt::cuda
