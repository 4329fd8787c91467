// Internal: the pieces the two Newton-Schulz plans share (newton_schulz.cu, the standard
// iteration on X; gram_newton_schulz.cu, the Gram iteration on X X^T): one strided-batched
// half-precision GEMM with its cuBLASLt descriptors chosen once, and the kernels that pack a
// group of fp32 matrices, normalized and in their wide orientation, into a half-precision bank
// and unpack the result.
#pragma once

#include "rowops.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <climits>
#include <cstdio>
#include <cstdlib>

namespace symoc::cuda::detail {

constexpr int64_t kLdAlign = 8;        // 16-bit leading dimensions: multiples of 16 bytes
constexpr int64_t kStrideAlign = 128;  // matrix strides: multiples of 256 bytes
inline int64_t round_up(int64_t v, int64_t a) { return (v + a - 1) / a * a; }

// One column-major strided-batched GEMM D = alpha op(A) op(B) + beta C, every operand of one
// 16-bit type (bf16 or fp16), fp32 compute, descriptors and algorithm chosen once.
struct BatchedGemm {
  cublasOperation_t opA = CUBLAS_OP_N, opB = CUBLAS_OP_N;
  int64_t m = 0, n = 0, k = 0, lda = 0, ldb = 0, ldc = 0, sA = 0, sB = 0, sC = 0, batch = 0;
  cudaDataType_t type = CUDA_R_16BF;
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t la = nullptr, lb = nullptr, lc = nullptr;
  cublasLtMatmulAlgo_t algo{};
  bool lt = false;

  void setup(Engine::Impl &e, bool try_lt) {
    if (m > INT_MAX || n > INT_MAX || k > INT_MAX || batch > INT_MAX) fail("newton_schulz", "dimensions too large");
    if (!try_lt) return;
    check(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F), "cublasLtMatmulDescCreate");
    int32_t ta = opA, tb = opB;
    check(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)), "cublasLt TRANSA");
    check(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)), "cublasLt TRANSB");
    auto layout = [&](cublasLtMatrixLayout_t &l, int64_t rows, int64_t cols, int64_t ld, int64_t stride) {
      check(cublasLtMatrixLayoutCreate(&l, type, uint64_t(rows), uint64_t(cols), ld), "cublasLtMatrixLayoutCreate");
      int32_t bc = int32_t(batch);
      check(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &bc, sizeof(bc)), "cublasLt batch");
      check(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof(stride)),
            "cublasLt stride");
    };
    // Stored shapes (column-major) before op.
    layout(la, opA == CUBLAS_OP_N ? m : k, opA == CUBLAS_OP_N ? k : m, lda, sA);
    layout(lb, opB == CUBLAS_OP_N ? k : n, opB == CUBLAS_OP_N ? n : k, ldb, sB);
    layout(lc, m, n, ldc, sC);
    cublasLtMatmulPreference_t pref;
    check(cublasLtMatmulPreferenceCreate(&pref), "cublasLtMatmulPreferenceCreate");
    uint64_t wsb = e.lib_ws_bytes;
    check(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &wsb, sizeof(wsb)),
          "cublasLt workspace preference");
    cublasLtMatmulHeuristicResult_t res{};
    int found = 0;
    cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(e.lt, desc, la, lb, lc, lc, pref, 1, &res, &found);
    cublasLtMatmulPreferenceDestroy(pref);
    if (st == CUBLAS_STATUS_SUCCESS && found > 0 && res.state == CUBLAS_STATUS_SUCCESS) {
      algo = res.algo;
      lt = true;
    }
    // SYMOC_CUDA_NS_REPORT=1: which path each GEMM takes (issue 12's fault hunt, docs/testing.md).
    if (const char *r = std::getenv("SYMOC_CUDA_NS_REPORT"); r && r[0] == '1')
      std::fprintf(stderr, "symoc ns gemm %lldx%lldx%lld batch %lld: %s\n", (long long)m, (long long)n, (long long)k,
                   (long long)batch, lt ? "cuBLASLt" : "cublasGemmStridedBatchedEx");
  }
  void destroy() {
    if (la) cublasLtMatrixLayoutDestroy(la);
    if (lb) cublasLtMatrixLayoutDestroy(lb);
    if (lc) cublasLtMatrixLayoutDestroy(lc);
    if (desc) cublasLtMatmulDescDestroy(desc);
    la = lb = lc = nullptr;
    desc = nullptr;
  }
  // A, B, C, D: device pointers to `type` elements (2 bytes each).
  void run(Engine::Impl &e, float alpha, const void *A, const void *B, float beta, const void *C, void *D,
           cudaStream_t s) const {
    if (lt) {
      check(cublasLtMatmul(e.lt, desc, &alpha, A, la, B, lb, &beta, C, lc, D, lc, &algo, e.lib_ws, e.lib_ws_bytes, s),
            "cublasLtMatmul (newton_schulz)");
      return;
    }
    if (beta != 0.f && C != D)
      check(cudaMemcpyAsync(D, C, size_t(sC * batch) * 2, cudaMemcpyDeviceToDevice, s), "cudaMemcpyAsync");
    check(cublasGemmStridedBatchedEx(e.blas, opA, opB, int(m), int(n), int(k), &alpha, A, type, int(lda), sA, B, type,
                                     int(ldb), sB, &beta, D, type, int(ldc), sC, int(batch), CUBLAS_COMPUTE_32F,
                                     CUBLAS_GEMM_DEFAULT),
          "cublasGemmStridedBatchedEx (newton_schulz)");
  }
};

__device__ inline void store_half(__nv_bfloat16 &d, float v) { d = __float2bfloat16(v); }
__device__ inline void store_half(__half &d, float v) { d = __float2half(v); }
__device__ inline float load_half(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ inline float load_half(__half v) { return __half2float(v); }

// X_b = in_b / (||in_b||_F * scale_mul + 1e-7) in T, transposed when `tall`; the squared norm
// is the fixed-order total of the matrix's kPartials partials. Grid (cols/32, rows/32, batch),
// blocks of 32 x 8.
template <class T>
__global__ void ns_pack_kernel(const float *in, int64_t R, int64_t C, int64_t ld, int64_t stride, bool tall,
                               const double *part, int64_t part_first, double scale_mul, T *X, int64_t ldk,
                               int64_t sx) {
  __shared__ float tile[32][33];
  const int64_t b = blockIdx.z;
  const float inv = float(1.0 / (sqrt(partial_total(part, part_first + b)) * scale_mul + 1e-7));
  const float *src = in + b * stride;
  T *dst = X + b * sx;
  const int64_t i0 = int64_t(blockIdx.y) * 32, j0 = int64_t(blockIdx.x) * 32;
  for (int t = threadIdx.y; t < 32; t += blockDim.y) {
    const int64_t i = i0 + t, j = j0 + threadIdx.x;
    if (i < R && j < C) tile[t][threadIdx.x] = src[i * ld + j];
  }
  __syncthreads();
  for (int t = threadIdx.y; t < 32; t += blockDim.y) {
    if (!tall) {
      const int64_t i = i0 + t, j = j0 + threadIdx.x;
      if (i < R && j < C) store_half(dst[i * ldk + j], tile[t][threadIdx.x] * inv);
    } else { // element (i, j) of the input goes to (j, i)
      const int64_t j = j0 + t, i = i0 + threadIdx.x;
      if (i < R && j < C) store_half(dst[j * ldk + i], tile[threadIdx.x][t] * inv);
    }
  }
}

// out_b = scale * X_b (fp32), transposed back when `tall`. Grid over the output as above.
template <class T>
__global__ void ns_unpack_kernel(const T *X, int64_t ldk, int64_t sx, bool tall, float scale, float *out, int64_t R,
                                 int64_t C, int64_t ld, int64_t stride) {
  __shared__ float tile[32][33];
  const int64_t b = blockIdx.z;
  const T *src = X + b * sx;
  float *dst = out + b * stride;
  const int64_t i0 = int64_t(blockIdx.y) * 32, j0 = int64_t(blockIdx.x) * 32; // tile of the output
  if (!tall) {
    for (int t = threadIdx.y; t < 32; t += blockDim.y) {
      const int64_t i = i0 + t, j = j0 + threadIdx.x;
      if (i < R && j < C) dst[i * ld + j] = scale * load_half(src[i * ldk + j]);
    }
    return;
  }
  // out(i, j) = X(j, i): read rows j of X coalesced along i.
  for (int t = threadIdx.y; t < 32; t += blockDim.y) {
    const int64_t j = j0 + t, i = i0 + threadIdx.x;
    if (i < R && j < C) tile[t][threadIdx.x] = load_half(src[j * ldk + i]);
  }
  __syncthreads();
  for (int t = threadIdx.y; t < 32; t += blockDim.y) {
    const int64_t i = i0 + t, j = j0 + threadIdx.x;
    if (i < R && j < C) dst[i * ld + j] = scale * tile[threadIdx.x][t];
  }
}

} // namespace symoc::cuda::detail

namespace symoc::cuda {
// Gram Newton-Schulz (gram_newton_schulz.cu) over groups whose wide orientation is r x k:
// the same polynomial iteration as NewtonSchulzPlan, run on the r x r Gram matrix. Used by
// NewtonSchulzPlan for the groups NsTuning::gram_min_aspect selects.
class GramNewtonSchulz {
public:
  GramNewtonSchulz(Engine::Impl &, std::vector<Shape> groups, PolarIteration, int steps, const NsTuning &);
  ~GramNewtonSchulz();
  size_t workspace_bytes() const;
  double flops() const;
  bool uses_lt() const;
  void run(const PolarGroup *groups, size_t n, Workspace, cudaStream_t);
  struct Impl;

private:
  std::unique_ptr<Impl> impl_;
};
} // namespace symoc::cuda
