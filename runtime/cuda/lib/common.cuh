// Internal helpers of the CUDA matrix kernels: status checks that throw rt::Error, the
// Engine's handles, and a bump allocator over the caller's workspace.
#pragma once

#include "symoc/cuda/matrix.h"

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cusolverDn.h>

#include <array>
#include <map>
#include <memory>
#include <string>

namespace symoc::cuda::detail {

[[noreturn]] void fail(const char *what, const std::string &status);
inline void check(cudaError_t e, const char *what) {
  if (e != cudaSuccess) fail(what, std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e));
}
inline void check(cublasStatus_t s, const char *what) {
  if (s != CUBLAS_STATUS_SUCCESS) fail(what, cublasGetStatusName(s));
}
void check(cusolverStatus_t s, const char *what);
// After a kernel launch: a launch error (bad configuration) is reported at once.
inline void check_launch(const char *what) { check(cudaGetLastError(), what); }

constexpr size_t kAlign = 256;
inline size_t align_up(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

// Carves aligned pieces out of a workspace; the same sequence of take() calls sizes the
// workspace (base null) and uses it.
class Carver {
public:
  explicit Carver(void *base = nullptr) : base_(static_cast<char *>(base)) {}
  template <class T> T *take(size_t n) {
    T *p = base_ ? reinterpret_cast<T *>(base_ + used_) : nullptr;
    used_ += align_up(n * sizeof(T));
    return p;
  }
  size_t used() const { return used_; }

private:
  char *base_;
  size_t used_ = 0;
};

inline void need_workspace(const Workspace &ws, size_t bytes, const char *what) {
  if (bytes > 0 && (ws.ptr == nullptr || ws.bytes < bytes))
    fail(what, "workspace of " + std::to_string(ws.bytes) + " bytes, needs " + std::to_string(bytes));
  if (reinterpret_cast<uintptr_t>(ws.ptr) % 16 != 0) fail(what, "workspace not 16-byte aligned");
}

// unused: the caller does not touch X's data this time (only its shape), so it may be null.
void check_batch(const Batch &X, const char *what, const char *name, bool unused = false);
// check_batch of an input and an output of a plan over `batch` n x n matrices, and their shapes
// against the plan's.
void check_square_batches(const Batch &in, const char *in_name, const Batch &out, const char *out_name, int64_t n,
                          int64_t batch, const char *what);

} // namespace symoc::cuda::detail

namespace symoc::cuda {
struct Engine::Impl {
  int device = 0;
  cublasHandle_t blas = nullptr;
  cublasLtHandle_t lt = nullptr;
  cusolverDnHandle_t solver = nullptr;
  void *lib_ws = nullptr; // cuBLAS / cuBLASLt workspace
  size_t lib_ws_bytes = size_t(32) << 20;
  void *dummy = nullptr; // a valid device pointer for cuSOLVER's buffer-size queries
  // gram(): matrices with at least this many rows and columns are formed by cublasSsyrk, one
  // matrix at a time (the upper triangle only: half the FLOPs; cuBLAS has no batched syrk, so
  // small sides keep the one batched GEMM of both triangles). 0: never. SYMOC_CUDA_SYRK_MIN.
  // (Measured on GPT-2 small's Shampoo, session 19: a step without a refresh 41.9 ms with
  // GEMMs, 38.8 with syrk; three batched GEMMs on the upper blocks of a 2 x 2 split, 40.0.)
  int64_t syrk_min = 1024;
  // The default since session 29 (SYMOC_CUDA_FP32_GEMM=sgemm: off): fp32 products given
  // scratch (gemm_tf32x3.cuh) in three TF32 passes on tensor cores, on devices of compute
  // capability 8.0 and up, for products whose sides are all at least tf32x3_min
  // (SYMOC_CUDA_TF32X3_MIN; smaller ones stay SGEMM: the split and three launches cost more
  // than they save).
  bool tf32x3 = false;
  int64_t tf32x3_min = 256;
  // The hi hi pass's inner dimension in chunks of at most this (SYMOC_CUDA_TF32X3_KCHUNK; 0:
  // whole), each added in IEEE fp32 through the GEMM epilogue (gemm_tf32x3.cuh).
  int64_t tf32x3_kchunk = 1024;
  // While a Newton-Schulz plan is built: where its products record the cuBLASLt algorithm each
  // descriptor (without its batch count) got, and the map of the plan named by
  // NsTuning::algorithms_from, whose choice a product with the same descriptor takes.
  using AlgoKey = std::array<int64_t, 15>;
  using AlgoMap = std::map<AlgoKey, cublasLtMatmulAlgo_t>;
  AlgoMap *record_algos = nullptr;
  const AlgoMap *pin_algos = nullptr;
  // Binds the handles to the stream (cheap; called at the start of every entry point).
  void bind(cudaStream_t s);
};
namespace detail {
// Engine::Impl::record_algos and pin_algos set for a scope (a plan's construction), restored after.
struct AlgoScope {
  Engine::Impl &e;
  Engine::Impl::AlgoMap *old_record;
  const Engine::Impl::AlgoMap *old_pin;
  AlgoScope(Engine::Impl &e, Engine::Impl::AlgoMap *record, const Engine::Impl::AlgoMap *pin)
      : e(e), old_record(e.record_algos), old_pin(e.pin_algos) {
    e.record_algos = record, e.pin_algos = pin;
  }
  ~AlgoScope() { e.record_algos = old_record, e.pin_algos = old_pin; }
  AlgoScope(const AlgoScope &) = delete;
  AlgoScope &operator=(const AlgoScope &) = delete;
};
} // namespace detail
} // namespace symoc::cuda
