// Internal: row-major strided-batched GEMM over cuBLAS (fp32 / fp64) and the triangle mirror.
#pragma once

#include "common.cuh"
#include "gemm_tf32x3.cuh"

namespace symoc::cuda::detail {

// cuBLAS's column-major strided-batched GEMM for either precision.
inline cublasStatus_t cublas_gemm_sb(cublasHandle_t h, cublasOperation_t a, cublasOperation_t b, int m, int n, int k,
                                     const float *al, const float *A, int lda, long long sA, const float *B, int ldb,
                                     long long sB, const float *be, float *C, int ldc, long long sC, int batch) {
  return cublasSgemmStridedBatched(h, a, b, m, n, k, al, A, lda, sA, B, ldb, sB, be, C, ldc, sC, batch);
}
inline cublasStatus_t cublas_gemm_sb(cublasHandle_t h, cublasOperation_t a, cublasOperation_t b, int m, int n, int k,
                                     const double *al, const double *A, int lda, long long sA, const double *B,
                                     int ldb, long long sB, const double *be, double *C, int ldc, long long sC,
                                     int batch) {
  return cublasDgemmStridedBatched(h, a, b, m, n, k, al, A, lda, sA, B, ldb, sB, be, C, ldc, sC, batch);
}

// C_b = alpha op(A_b) op(B_b) + beta C_b, row-major, C is M x N, op(A) M x K, op(B) K x N.
// A stride of 0 shares one matrix over the batch. Engine::Impl::bind must have been called.
// fp32 with scratch: three TF32 passes where the engine takes them (opt-in, gemm_tf32x3.cuh), else
// SGEMM; the scratch is free for the product's time (it is not read after).
template <class T>
void gemm_rm(Engine::Impl &e, bool tA, bool tB, int64_t M, int64_t N, int64_t K, T alpha, const T *A, int64_t lda,
             int64_t sA, const T *B, int64_t ldb, int64_t sB, T beta, T *C, int64_t ldc, int64_t sC, int64_t batch,
             const char *what, Scratch sc = {});

// Lower triangle of each row-major n x n C_b := transpose of its upper triangle.
template <class T> void mirror_upper(T *C, int64_t n, int64_t ld, int64_t stride, int64_t batch, cudaStream_t s);

} // namespace symoc::cuda::detail
