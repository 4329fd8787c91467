// Engine: cuBLAS, cuBLASLt and cuSOLVER handles and the library workspace, created once.
#include "common.cuh"
#include "env.h"

namespace symoc::cuda {
namespace detail {

void fail(const char *what, const std::string &status) { throw Error(std::string("cuda ") + what + ": " + status); }

void check(cusolverStatus_t s, const char *what) {
  if (s == CUSOLVER_STATUS_SUCCESS) return;
  const char *name = "unknown status";
  switch (s) {
  case CUSOLVER_STATUS_NOT_INITIALIZED: name = "CUSOLVER_STATUS_NOT_INITIALIZED"; break;
  case CUSOLVER_STATUS_ALLOC_FAILED: name = "CUSOLVER_STATUS_ALLOC_FAILED"; break;
  case CUSOLVER_STATUS_INVALID_VALUE: name = "CUSOLVER_STATUS_INVALID_VALUE"; break;
  case CUSOLVER_STATUS_ARCH_MISMATCH: name = "CUSOLVER_STATUS_ARCH_MISMATCH"; break;
  case CUSOLVER_STATUS_EXECUTION_FAILED: name = "CUSOLVER_STATUS_EXECUTION_FAILED"; break;
  case CUSOLVER_STATUS_INTERNAL_ERROR: name = "CUSOLVER_STATUS_INTERNAL_ERROR"; break;
  case CUSOLVER_STATUS_NOT_SUPPORTED: name = "CUSOLVER_STATUS_NOT_SUPPORTED"; break;
  default: break;
  }
  fail(what, std::string(name) + " (" + std::to_string(int(s)) + ")");
}

void check_batch(const Batch &X, const char *what, const char *name, bool unused) {
  if (X.batch < 1 || X.rows < 0 || X.cols < 0 || X.ld < X.cols || (X.batch > 1 && X.stride < 1))
    fail(what, std::string(name) + " has an invalid shape (batch " + std::to_string(X.batch) + ", " +
                   std::to_string(X.rows) + "x" + std::to_string(X.cols) + ", ld " + std::to_string(X.ld) +
                   ", stride " + std::to_string(X.stride) + ")");
  if (!unused && X.rows > 0 && X.cols > 0 && X.data == nullptr) fail(what, std::string(name) + " is null");
}

void check_square_batches(const Batch &in, const char *in_name, const Batch &out, const char *out_name, int64_t n,
                          int64_t batch, const char *what) {
  check_batch(in, what, in_name);
  check_batch(out, what, out_name);
  if (in.rows != n || in.cols != n || in.batch != batch || out.rows != n || out.cols != n || out.batch != batch)
    fail(what, "shape differs from the plan's (" + std::to_string(batch) + " x " + std::to_string(n) + "x" +
                   std::to_string(n) + ")");
}

} // namespace detail

using namespace detail;

void Engine::Impl::bind(cudaStream_t s) {
  check(cublasSetStream(blas, s), "cublasSetStream");
  check(cublasSetWorkspace(blas, lib_ws, lib_ws_bytes), "cublasSetWorkspace");
  check(cusolverDnSetStream(solver, s), "cusolverDnSetStream");
}

Engine::Engine(int device) : impl_(std::make_unique<Impl>()) {
  // The environment first: a malformed value is refused before any handle exists.
  impl_->syrk_min = symoc::rt::cuda::detail::env_whole("SYMOC_CUDA_SYRK_MIN", impl_->syrk_min, 0, int64_t(1) << 31,
                                                       "the smallest Gram side formed by syrk (0: never)");
  const std::string fp32_gemm = symoc::rt::cuda::detail::env_choice("SYMOC_CUDA_FP32_GEMM", {"tf32x3", "sgemm"});
  impl_->tf32x3_min = symoc::rt::cuda::detail::env_whole("SYMOC_CUDA_TF32X3_MIN", impl_->tf32x3_min, 1,
                                                         int64_t(1) << 31, "the smallest side of a tf32x3 product");
  impl_->tf32x3_kchunk = symoc::rt::cuda::detail::env_whole(
      "SYMOC_CUDA_TF32X3_KCHUNK", impl_->tf32x3_kchunk, 0, int64_t(1) << 31,
      "the longest inner-dimension chunk of a tf32x3 product's hi hi pass (0: whole)");
  if (device < 0) check(cudaGetDevice(&device), "cudaGetDevice");
  else check(cudaSetDevice(device), "cudaSetDevice");
  impl_->device = device;
  int major = 0;
  check(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device), "cudaDeviceGetAttribute");
  impl_->tf32x3 = fp32_gemm != "sgemm" && major >= 8; // TF32 tensor cores from Ampere on
  check(cublasCreate(&impl_->blas), "cublasCreate");
  check(cublasLtCreate(&impl_->lt), "cublasLtCreate");
  check(cusolverDnCreate(&impl_->solver), "cusolverDnCreate");
  // No single-pass TF32 in any fp32 product (the CPU runtime's sgemm is plain fp32); the
  // three-pass products (tf32x3) are the default where a workspace is given (session 29:
  // K-chunked, 5.2e-7 of fp64 at K = 3072 against SGEMM's 4.9e-7), SYMOC_CUDA_FP32_GEMM=sgemm
  // keeps SGEMM.
  check(cublasSetMathMode(impl_->blas, CUBLAS_DEFAULT_MATH), "cublasSetMathMode");
  check(cudaMalloc(&impl_->lib_ws, impl_->lib_ws_bytes), "cudaMalloc (library workspace)");
  check(cudaMalloc(&impl_->dummy, 256), "cudaMalloc");
}

Engine::~Engine() {
  if (!impl_) return;
  if (impl_->solver) cusolverDnDestroy(impl_->solver);
  if (impl_->lt) cublasLtDestroy(impl_->lt);
  if (impl_->blas) cublasDestroy(impl_->blas);
  if (impl_->lib_ws) cudaFree(impl_->lib_ws);
  if (impl_->dummy) cudaFree(impl_->dummy);
}

} // namespace symoc::cuda
