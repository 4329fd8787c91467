// Internal: fp32 products on tensor cores in three TF32 passes (fp32-class accuracy).
//
// Each fp32 operand X is split into hi = X rounded to TF32 (10-bit mantissa) and lo = X - hi
// (exact, |lo| <= 2^-11 |X|); A B = hi_A hi_B + hi_A lo_B + lo_A hi_B + lo_A lo_B, and the last
// term (<= 2^-22 relative) is dropped. hi is exact in TF32; lo loses at most 2^-10 of itself in
// the tensor core, 2^-21 of X: the product carries fp32-class error (the fp32 accumulation of K
// terms dominates), at three TF32 GEMMs' cost instead of one SIMT SGEMM's (H200: TF32 ~8x the
// fp32 FMA rate). The CPU runtime's plain fp32 sgemm stays the reference of every test.
#pragma once

#include "common.cuh"

namespace symoc::cuda::detail {

// Device scratch for the split operands: a product runs in chunks of the batch that fit, and
// falls back to SGEMM where not one matrix fits.
struct Scratch {
  void *p = nullptr;
  size_t bytes = 0;
};

// Scratch that holds the whole batch's split operands (a stride of 0 shares one matrix).
size_t tf32x3_bytes(int64_t M, int64_t N, int64_t K, bool sharedA, bool sharedB, int64_t batch);

// cuBLAS's column-major strided-batched product C_b = alpha op(A_b) op(B_b) + beta C_b (C m x n)
// in three TF32 passes when the engine has them on and the product is large enough
// (Engine::Impl::tf32x3_min); false (nothing launched) otherwise. The stream is the handle's.
bool gemm_cm_tf32x3(Engine::Impl &e, bool tA, bool tB, int64_t m, int64_t n, int64_t k, float alpha, const float *A,
                    int64_t lda, int64_t sA, const float *B, int64_t ldb, int64_t sB, float beta, float *C,
                    int64_t ldc, int64_t sC, int64_t batch, Scratch sc, const char *what);
// gemm_rm's product (row-major, C_b = alpha op(A_b) op(B_b) + beta C_b) in three TF32 passes
// when the engine has them on and the product is large enough (Engine::Impl::tf32x3_min);
// false (nothing launched) otherwise.
bool gemm_rm_tf32x3(Engine::Impl &e, bool tA, bool tB, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                    int64_t lda, int64_t sA, const float *B, int64_t ldb, int64_t sB, float beta, float *C,
                    int64_t ldc, int64_t sC, int64_t batch, Scratch sc, const char *what);

} // namespace symoc::cuda::detail
