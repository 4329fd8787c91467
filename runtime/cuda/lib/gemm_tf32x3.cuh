// Internal: fp32 products on tensor cores in three TF32 passes (the default since session 29;
// SYMOC_CUDA_FP32_GEMM=sgemm keeps SGEMM).
//
// Each fp32 operand X is split into hi = X rounded to TF32 (10-bit mantissa) and lo = X - hi
// (exact, |lo| <= 2^-11 |X|); A B = hi_A hi_B + hi_A lo_B + lo_A hi_B + lo_A lo_B, and the last
// term (<= 2^-22 relative) is dropped. hi is exact in TF32; lo loses at most 2^-10 of itself in
// the tensor core, 2^-21 of X (tests/gpu/test_tf32x3_split.cpp). What the split cannot repair is
// the tensor cores' fp32 accumulation, which is not IEEE-rounded: the error grows with the
// inner dimension past SGEMM's (H200: 2x SGEMM's at K = 1024, matrix_test; up to 1.8e-5
// relative against 1e-6 at GPT-2 small's K = 3072, session 19's f32_products_bench), beyond
// the runtime's 1e-5 agreement with the CPU; it was opt-in. Since session 27 the hi hi pass,
// which carries the product, runs in inner-dimension chunks of at most
// Engine::Impl::tf32x3_kchunk (1024), each added in IEEE fp32 through the epilogue, so the
// accumulation error stays at one chunk's (the lo passes keep the whole K). Measured in
// session 29 on the H200: 5.2e-7 of fp64 at K = 3072 (whole K 7.5e-7, SGEMM 4.9e-7); the
// default since.
// It costs three TF32 GEMMs (a Gram half two) instead of one SIMT SGEMM (H200: GPT-2 small's Shampoo step without a refresh 20.8 against 27.2 ms).
// The roots' V^T diag(f) V came out closer to the fp64 root with it (3072: 2.4e-5 against
// SGEMM's 2.6e-4, docs/benchmarks.md session 26).
#pragma once

#include "common.cuh"

namespace symoc::cuda::detail {

// Device scratch for the split operands: a product runs in chunks of the batch that fit, and
// falls back to SGEMM where not one matrix fits.
struct Scratch {
  void *p = nullptr;
  size_t bytes = 0;
};

// gemm_rm's product (row-major, C_b = alpha op(A_b) op(B_b) + beta C_b) in three TF32 passes
// when the engine has them on and the product is large enough (Engine::Impl::tf32x3_min);
// false (nothing launched) otherwise.
// Full: the product. GramHalf (C = A A^T or A^T A, beta 0): Z = alpha (hi hi^T / 2 + lo hi^T),
// two passes instead of three; Z + Z^T is the Gram product (gram() adds the transpose).
enum class Tf32x3Form { Full, GramHalf };
bool gemm_rm_tf32x3(Engine::Impl &e, bool tA, bool tB, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                    int64_t lda, int64_t sA, const float *B, int64_t ldb, int64_t sB, float beta, float *C,
                    int64_t ldc, int64_t sC, int64_t batch, Scratch sc, const char *what,
                    Tf32x3Form form = Tf32x3Form::Full);

// Whether a product of sides m x n and inner dimension k takes the three passes on this engine.
bool tf32x3_takes(const Engine::Impl &e, int64_t m, int64_t n, int64_t k);

// An operand split ahead of its products (tf32x3_split_batch), for callers that use one
// operand in several products (Shampoo's G in both Grams and the preconditioning, its roots
// from one refresh to the next): row-major hi and lo in the same layout.
struct Tf32x3Operand {
  const float *hi = nullptr, *lo = nullptr;
  int64_t ld = 0, stride = 0;
};
// hi/lo of `batch` compact matrices of runs x len floats (hi may be X itself: in place).
void tf32x3_split_batch(const float *X, int64_t runs, int64_t len, int64_t batch, float *hi, float *lo,
                        cudaStream_t s);
// gemm_rm_tf32x3's passes over split operands (no scratch, the whole batch at once); fails
// where tf32x3_takes does not hold.
void gemm_rm_tf32x3_split(Engine::Impl &e, bool tA, bool tB, int64_t M, int64_t N, int64_t K, float alpha,
                          const Tf32x3Operand &A, const Tf32x3Operand &B, float beta, float *C, int64_t ldc, int64_t sC,
                          int64_t batch, const char *what, Tf32x3Form form = Tf32x3Form::Full);

} // namespace symoc::cuda::detail
