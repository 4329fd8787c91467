// fp32 products in three TF32 passes (gemm_tf32x3.cuh says why and how accurate).
#include "gemm_tf32x3.cuh"
#include "tf32x3_split.h"

#include <algorithm>
#include <climits>
#include <cstdint>

namespace symoc::cuda::detail {

namespace {
// hi/lo of `runs` runs of `len` contiguous floats (run r at X + r * ld, matrix b at
// X + b * stride) into compact copies (run length len). A non-finite hi gets lo = 0.
// Non-finite entries keep their rows and columns of the product non-finite, but an inf may
// come out NaN: hi_A lo_B adds inf * lo_B of either sign (matrix.h's gemm says so). VEC: four
// floats at a time (len, ld, stride and the pointers multiples of 4 floats).
template <bool VEC>
__global__ void split_kernel(const float *X, int64_t runs, int64_t len, int64_t ld, int64_t stride, int64_t batch,
                             float *hi, float *lo) {
  const int64_t rl = runs * len;
  for (int64_t b = blockIdx.z; b < batch; b += gridDim.z)
    for (int64_t r = blockIdx.y; r < runs; r += gridDim.y) {
      const float *x = X + b * stride + r * ld;
      float *h = hi + b * rl + r * len, *l = lo + b * rl + r * len;
      if constexpr (VEC) {
        const int64_t step = int64_t(gridDim.x) * blockDim.x * 4;
        for (int64_t j = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) * 4; j < len; j += step) {
          const float4 v = *reinterpret_cast<const float4 *>(x + j);
          float4 vh, vl;
          tf32_split(v.x, vh.x, vl.x), tf32_split(v.y, vh.y, vl.y);
          tf32_split(v.z, vh.z, vl.z), tf32_split(v.w, vh.w, vl.w);
          *reinterpret_cast<float4 *>(h + j) = vh;
          *reinterpret_cast<float4 *>(l + j) = vl;
        }
      } else {
        for (int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; j < len; j += int64_t(gridDim.x) * blockDim.x)
          tf32_split(x[j], h[j], l[j]);
      }
    }
}

struct Split {
  const float *hi = nullptr, *lo = nullptr;
  int64_t ld = 0, stride = 0;
};

Split split(const float *X, int64_t runs, int64_t len, int64_t ld, int64_t stride, int64_t batch, float *buf,
            cudaStream_t s) {
  const int64_t rl = runs * len;
  float *hi = buf, *lo = buf + align_up(size_t(rl * batch) * sizeof(float)) / sizeof(float);
  const bool vec = len % 4 == 0 && ld % 4 == 0 && (batch == 1 || stride % 4 == 0) &&
                   reinterpret_cast<uintptr_t>(X) % 16 == 0 && reinterpret_cast<uintptr_t>(lo) % 16 == 0;
  const int64_t per_thread = vec ? 4 : 1;
  const unsigned gx = unsigned(std::min<int64_t>((len + 256 * per_thread - 1) / (256 * per_thread), 64));
  const dim3 grid(gx, unsigned(std::min<int64_t>(runs, 65535)), unsigned(std::min<int64_t>(batch, 65535)));
  if (vec) split_kernel<true><<<grid, 256, 0, s>>>(X, runs, len, ld, stride, batch, hi, lo);
  else split_kernel<false><<<grid, 256, 0, s>>>(X, runs, len, ld, stride, batch, hi, lo);
  check_launch("tf32x3 split");
  return {hi, lo, len, batch > 1 ? rl : 0};
}
constexpr int64_t kAlignFloats = int64_t(kAlign / sizeof(float));

cublasStatus_t tf32_gemm(cublasHandle_t h, cublasOperation_t a, cublasOperation_t b, int m, int n, int k,
                         const float *al, const float *A, int lda, long long sA, const float *B, int ldb, long long sB,
                         const float *be, float *C, int ldc, long long sC, int batch) {
  return cublasGemmStridedBatchedEx(h, a, b, m, n, k, al, A, CUDA_R_32F, lda, sA, B, CUDA_R_32F, ldb, sB, be, C,
                                    CUDA_R_32F, ldc, sC, batch, CUBLAS_COMPUTE_32F_FAST_TF32, CUBLAS_GEMM_DEFAULT);
}
} // namespace

namespace {
// The passes of one product over split operands (column-major C_b = alpha op(A_b) op(B_b) +
// beta C_b, nb matrices; a Split's stride 0: one matrix shared by the batch).
void run_passes(Engine::Impl &e, cublasOperation_t opA, cublasOperation_t opB, int64_t m, int64_t n, int64_t k,
                float alpha, const Split &xa, const Split &xb, float beta, float *c, int64_t ldc, long long sc_b,
                int64_t nb, Tf32x3Form form, const char *what) {
  const bool tA = opA == CUBLAS_OP_T, tB = opB == CUBLAS_OP_T;
  const float one = 1.f;
  // The small terms first, at the whole inner dimension: they are 2^-11 of the product, so
  // the tensor cores' accumulation error in them is far below fp32's rounding. A Gram half
  // takes one of the two (lo hi^T; the caller adds the transpose).
  const float *parts[2][2] = {{xa.hi, xb.lo}, {xa.lo, xb.hi}};
  for (int t = form == Tf32x3Form::GramHalf ? 1 : 0; t < 2; ++t) {
    const bool first = form == Tf32x3Form::GramHalf || t == 0;
    check(tf32_gemm(e.blas, opA, opB, int(m), int(n), int(k), &alpha, parts[t][0], int(xa.ld), xa.stride, parts[t][1],
                    int(xb.ld), xb.stride, first ? &beta : &one, c, int(ldc), sc_b, int(nb)),
          what);
  }
  // hi hi carries the product: its inner dimension in chunks of at most kchunk, each added
  // through the epilogue (IEEE fp32), so the accumulation error stays at one chunk's.
  const float hh = form == Tf32x3Form::GramHalf ? 0.5f * alpha : alpha; // exact: a power of two
  for (const Tf32x3KChunk &kc : tf32x3_k_chunks(k, e.tf32x3_kchunk)) {
    // Column-major op(A) is m x k: column k0 at + k0 * ld (not transposed) or row k0 at + k0.
    const float *a = xa.hi + (tA ? kc.k0 : kc.k0 * xa.ld), *b = xb.hi + (tB ? kc.k0 * xb.ld : kc.k0);
    check(tf32_gemm(e.blas, opA, opB, int(m), int(n), int(kc.len), &hh, a, int(xa.ld), xa.stride, b, int(xb.ld),
                    xb.stride, &one, c, int(ldc), sc_b, int(nb)),
          what);
  }
}

// cuBLAS's column-major strided-batched product C_b = alpha op(A_b) op(B_b) + beta C_b (C m x n)
// in three TF32 passes; gemm_rm_tf32x3 says when.
bool gemm_cm_tf32x3(Engine::Impl &e, bool tA, bool tB, int64_t m, int64_t n, int64_t k, float alpha, const float *A,
                    int64_t lda, int64_t sA, const float *B, int64_t ldb, int64_t sB, float beta, float *C,
                    int64_t ldc, int64_t sC, int64_t batch, Scratch sc, Tf32x3Form form, const char *what) {
  if (!tf32x3_takes(e, m, n, k) || sc.p == nullptr) return false;
  // Column-major operands in memory: runs (columns) of contiguous floats.
  const int64_t a_runs = tA ? m : k, a_len = tA ? k : m, b_runs = tB ? k : n, b_len = tB ? n : k;
  // A Gram product (B is A's own memory, read the other way): one split serves both.
  const bool same = A == B && lda == ldb && sA == sB && a_runs == b_runs && a_len == b_len;
  const bool shA = sA == 0, shB = sB == 0 || same;
  const Tf32x3Plan plan =
      plan_tf32x3(m, n, k, shA, sB == 0, same, batch, int64_t(sc.bytes / sizeof(float)), kAlignFloats);
  if (plan.chunk == 0) return false;
  const int64_t chunk = plan.chunk;
  cudaStream_t s = nullptr;
  check(cublasGetStream(e.blas, &s), what);
  Carver cv(sc.p);
  float *bufA = cv.take<float>(size_t(plan.a_floats));
  float *bufB = same ? nullptr : cv.take<float>(size_t(plan.b_floats));
  Split xa, xb;
  if (shA) xa = split(A, a_runs, a_len, lda, 0, 1, bufA, s);
  if (shB && !same) xb = split(B, b_runs, b_len, ldb, 0, 1, bufB, s);
  const cublasOperation_t opA = tA ? CUBLAS_OP_T : CUBLAS_OP_N, opB = tB ? CUBLAS_OP_T : CUBLAS_OP_N;
  for (int64_t b0 = 0; b0 < batch; b0 += chunk) {
    const int64_t nb = std::min(chunk, batch - b0);
    if (!shA) xa = split(A + b0 * sA, a_runs, a_len, lda, sA, nb, bufA, s);
    if (!shB) xb = split(B + b0 * sB, b_runs, b_len, ldb, sB, nb, bufB, s);
    if (same) xb = xa;
    run_passes(e, opA, opB, m, n, k, alpha, xa, xb, beta, C + b0 * sC, ldc, nb > 1 ? sC : 0, nb, form, what);
  }
  return true;
}
} // namespace

bool tf32x3_takes(const Engine::Impl &e, int64_t m, int64_t n, int64_t k) {
  return e.tf32x3 && std::min({m, n, k}) >= e.tf32x3_min;
}

void tf32x3_split_batch(const float *X, int64_t runs, int64_t len, int64_t batch, float *hi, float *lo,
                        cudaStream_t s) {
  if (runs * len * batch == 0) return;
  // Compact (ld = len, stride = runs * len): hi and lo in X's layout, hi may be X itself.
  const int64_t rl = runs * len;
  const bool vec = rl % 4 == 0 && reinterpret_cast<uintptr_t>(X) % 16 == 0 &&
                   reinterpret_cast<uintptr_t>(hi) % 16 == 0 && reinterpret_cast<uintptr_t>(lo) % 16 == 0;
  const int64_t per_thread = vec ? 4 : 1;
  const unsigned gx = unsigned(std::min<int64_t>((rl + 256 * per_thread - 1) / (256 * per_thread), 1024));
  const dim3 grid(gx, 1, unsigned(std::min<int64_t>(batch, 65535)));
  // split_kernel with one run of rl floats per matrix (an elementwise pass: in place is fine).
  if (vec) split_kernel<true><<<grid, 256, 0, s>>>(X, 1, rl, rl, rl, batch, hi, lo);
  else split_kernel<false><<<grid, 256, 0, s>>>(X, 1, rl, rl, rl, batch, hi, lo);
  check_launch("tf32x3 split");
}

void gemm_rm_tf32x3_split(Engine::Impl &e, bool tA, bool tB, int64_t M, int64_t N, int64_t K, float alpha,
                          const Tf32x3Operand &A, const Tf32x3Operand &B, float beta, float *C, int64_t ldc, int64_t sC,
                          int64_t batch, const char *what, Tf32x3Form form) {
  if (!tf32x3_takes(e, M, N, K)) fail(what, "split operands where the engine does not take three TF32 passes");
  if (form == Tf32x3Form::GramHalf && (A.hi != B.hi || tA == tB || M != N || beta != 0.f))
    fail(what, "a Gram half needs C = A A^T or A^T A with beta 0");
  if (M == 0 || N == 0 || batch == 0) return;
  // Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: B first.
  const Split xb{B.hi, B.lo, B.ld, batch > 1 ? B.stride : 0}, xa{A.hi, A.lo, A.ld, batch > 1 ? A.stride : 0};
  run_passes(e, tB ? CUBLAS_OP_T : CUBLAS_OP_N, tA ? CUBLAS_OP_T : CUBLAS_OP_N, N, M, K, alpha, xb, xa, beta, C, ldc,
             batch > 1 ? sC : 0, batch, form, what);
}

bool gemm_rm_tf32x3(Engine::Impl &e, bool tA, bool tB, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                    int64_t lda, int64_t sA, const float *B, int64_t ldb, int64_t sB, float beta, float *C,
                    int64_t ldc, int64_t sC, int64_t batch, Scratch sc, const char *what, Tf32x3Form form) {
  if (form == Tf32x3Form::GramHalf && (A != B || lda != ldb || sA != sB || tA == tB || M != N || beta != 0.f))
    fail(what, "a Gram half needs C = A A^T or A^T A with beta 0");
  // Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T (gemm_rm): B first.
  return gemm_cm_tf32x3(e, tB, tA, N, M, K, alpha, B, ldb, sB, A, lda, sA, beta, C, ldc, sC, batch, sc, form, what);
}

} // namespace symoc::cuda::detail
