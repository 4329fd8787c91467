// Internal: the pieces the two Newton-Schulz plans share (newton_schulz.cu, the standard
// iteration on X; gram_newton_schulz.cu, the Gram iteration on X X^T): one strided-batched
// half-precision GEMM with its cuBLASLt descriptors chosen once, and the kernels that pack a
// group of fp32 matrices, normalized and in their wide orientation, into a half-precision bank
// and unpack the result.
#pragma once

#include "rowops.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <climits>
#include <utility>
#include <cstdio>
#include <cstdlib>
#include <vector>

namespace symoc::cuda::detail {

constexpr int64_t kLdAlign = 8;        // 16-bit leading dimensions: multiples of 16 bytes
constexpr int64_t kStrideAlign = 128;  // matrix strides: multiples of 256 bytes
inline int64_t round_up(int64_t v, int64_t a) { return (v + a - 1) / a * a; }

// SYMOC_CUDA_NS_REPORT=1: the plans print which path each GEMM takes and, with tuning, each
// candidate's time (issue 12's fault hunt, docs/testing.md).
inline bool ns_report() {
  const char *r = std::getenv("SYMOC_CUDA_NS_REPORT");
  return r && r[0] == '1';
}

// One column-major strided-batched GEMM D = alpha op(A) op(B) + beta C, every operand of one
// 16-bit type (bf16 or fp16), fp32 compute, descriptors and algorithm chosen once.
// A write-through product (`pointers`, cuBLASLt only) differs in three ways: C and D may have
// a type of their own (cd_type: the weights', fp32 or bf16), every operand is a device array
// of `batch` pointers (the weights are separate tensors), and alpha, beta are device scalars
// (the lr may live on the device); run_pointers runs it.
struct BatchedGemm {
  cublasOperation_t opA = CUBLAS_OP_N, opB = CUBLAS_OP_N;
  int64_t m = 0, n = 0, k = 0, lda = 0, ldb = 0, ldc = 0, sA = 0, sB = 0, sC = 0, batch = 0;
  cudaDataType_t type = CUDA_R_16BF;
  bool pointers = false;
  cudaDataType_t cd_type = CUDA_R_32F; // with pointers only
  cudaDataType_t c_type() const { return pointers ? cd_type : type; }
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t la = nullptr, lb = nullptr, lc = nullptr;
  // The algorithm that runs. With setup's tune_algos, the heuristic's first kTuneCandidates
  // are kept and the first eager run times them on its own operands (tune_on_first_run):
  // mutable because that first run may replace the heuristic's choice.
  mutable cublasLtMatmulAlgo_t algo{};
  std::vector<cublasLtMatmulAlgo_t> candidates;
  mutable bool tune_pending = false;
  bool lt = false;
  // Alignment in bytes that A, B and C/D pointers are promised to cuBLASLt's heuristic (its
  // default, 256, unless set lower: the symmetric products' second halves start at offsets).
  int64_t align_a = 256, align_b = 256, align_cd = 256;

  static constexpr int kTuneCandidates = 8;

  void setup(Engine::Impl &e, bool try_lt, bool tune_algos = false) {
    if (m > INT_MAX || n > INT_MAX || k > INT_MAX || batch > INT_MAX) fail("newton_schulz", "dimensions too large");
    if (!try_lt) return;
    check(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F), "cublasLtMatmulDescCreate");
    int32_t ta = opA, tb = opB;
    check(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)), "cublasLt TRANSA");
    check(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)), "cublasLt TRANSB");
    if (pointers) {
      const int32_t pm = CUBLASLT_POINTER_MODE_DEVICE;
      check(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_POINTER_MODE, &pm, sizeof(pm)),
            "cublasLt POINTER_MODE");
    }
    auto layout = [&](cublasLtMatrixLayout_t &l, cudaDataType_t t, int64_t rows, int64_t cols, int64_t ld,
                      int64_t stride) {
      check(cublasLtMatrixLayoutCreate(&l, t, uint64_t(rows), uint64_t(cols), ld), "cublasLtMatrixLayoutCreate");
      int32_t bc = int32_t(batch);
      check(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &bc, sizeof(bc)), "cublasLt batch");
      if (pointers) {
        const int32_t mode = CUBLASLT_BATCH_MODE_POINTER_ARRAY;
        check(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_BATCH_MODE, &mode, sizeof(mode)),
              "cublasLt batch mode");
      } else {
        check(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof(stride)),
              "cublasLt stride");
      }
    };
    // Stored shapes (column-major) before op.
    layout(la, type, opA == CUBLAS_OP_N ? m : k, opA == CUBLAS_OP_N ? k : m, lda, sA);
    layout(lb, type, opB == CUBLAS_OP_N ? k : n, opB == CUBLAS_OP_N ? n : k, ldb, sB);
    layout(lc, c_type(), m, n, ldc, sC);
    cublasLtMatmulPreference_t pref;
    check(cublasLtMatmulPreferenceCreate(&pref), "cublasLtMatmulPreferenceCreate");
    uint64_t wsb = e.lib_ws_bytes;
    check(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &wsb, sizeof(wsb)),
          "cublasLt workspace preference");
    const std::pair<cublasLtMatmulPreferenceAttributes_t, int64_t> aligns[] = {
        {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, align_a},
        {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, align_b},
        {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, align_cd},
        {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, align_cd}};
    for (const auto &[attr, bytes] : aligns)
      if (bytes < 256) { // only where lower, so the dense products' heuristic query is unchanged
        const uint32_t v = uint32_t(bytes);
        check(cublasLtMatmulPreferenceSetAttribute(pref, attr, &v, sizeof(v)), "cublasLt alignment preference");
      }
    const int64_t types = int64_t(type) | int64_t(c_type()) << 8 | int64_t(pointers) << 16;
    const Engine::Impl::AlgoKey key = {int64_t(opA), int64_t(opB), m, n, k, lda, ldb, ldc, sA, sB, sC, types,
                                       align_a, align_b, align_cd};
    candidates.clear();
    if (e.pin_algos) { // the algorithm another plan chose for this product, if it runs here
      auto it = e.pin_algos->find(key);
      cublasLtMatmulHeuristicResult_t chk{};
      if (it != e.pin_algos->end() &&
          cublasLtMatmulAlgoCheck(e.lt, desc, la, lb, lc, lc, &it->second, &chk) == CUBLAS_STATUS_SUCCESS &&
          chk.workspaceSize <= e.lib_ws_bytes) {
        cublasLtMatmulPreferenceDestroy(pref);
        algo = it->second, lt = true, tune_pending = false;
        if (e.record_algos) e.record_algos->emplace(key, algo);
        if (ns_report())
          std::fprintf(stderr, "symoc ns gemm %lldx%lldx%lld batch %lld: cuBLASLt, pinned\n", (long long)m,
                       (long long)n, (long long)k, (long long)batch);
        return;
      }
    }
    cublasLtMatmulHeuristicResult_t res[kTuneCandidates] = {};
    int found = 0;
    cublasStatus_t st =
        cublasLtMatmulAlgoGetHeuristic(e.lt, desc, la, lb, lc, lc, pref, tune_algos ? kTuneCandidates : 1, res, &found);
    cublasLtMatmulPreferenceDestroy(pref);
    if (st == CUBLAS_STATUS_SUCCESS)
      for (int i = 0; i < found; ++i)
        if (res[i].state == CUBLAS_STATUS_SUCCESS) candidates.push_back(res[i].algo);
    if (!candidates.empty()) {
      algo = candidates.front();
      lt = true;
      if (e.record_algos) e.record_algos->emplace(key, algo);
    }
    tune_pending = tune_algos && candidates.size() > 1;
    if (!tune_pending) candidates.clear();
    if (ns_report())
      std::fprintf(stderr, "symoc ns gemm %lldx%lldx%lld batch %lld%s: %s\n", (long long)m, (long long)n, (long long)k,
                   (long long)batch, pointers ? (cd_type == CUDA_R_32F ? " write-through fp32" : " write-through bf16") : "",
                   lt ? "cuBLASLt" : pointers ? "none (unpack instead)" : "cublasGemmStridedBatchedEx");
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
      if (tune_pending) tune_on_first_run(e, alpha, A, B, beta, C, D, s);
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
  // The write-through product (pointers; lt only): A, B, C, D device arrays of batch pointers,
  // alpha and beta device floats.
  void run_pointers(Engine::Impl &e, const float *alpha, const void *A, const void *B, const float *beta,
                    const void *C, void *D, cudaStream_t s) const {
    check(cublasLtMatmul(e.lt, desc, alpha, A, la, B, lb, beta, C, lc, D, lc, &algo, e.lib_ws, e.lib_ws_bytes, s),
          "cublasLtMatmul (newton_schulz write-through)");
  }
  double flops_each() const { return 2.0 * double(m) * double(n) * double(k); }
  double flops() const { return flops_each() * double(batch); }

  // NsTuning::tune_gemms: on the first run, times each candidate (one warm-up, then the median
  // of kTuneReps) on this run's operands and keeps the fastest if it beats the heuristic's
  // first by more than kTuneMargin (so that close calls keep the heuristic's choice and the
  // algorithm, and with it the rounding, changes only for a real gain). Never while the stream
  // is capturing (the heuristic's choice then stays, for this run and every later one, so a
  // captured step and its eager repeats run the same algorithm), nor when D aliases an operand
  // (the repeats must not change their inputs). A one-time host synchronization, in the first
  // step only. SYMOC_CUDA_NS_REPORT=1 prints each candidate's time.
  static constexpr int kTuneReps = 3;
  static constexpr double kTuneMargin = 0.03;
  void tune_on_first_run(Engine::Impl &e, float alpha, const void *A, const void *B, float beta, const void *C,
                         void *D, cudaStream_t s) const {
    tune_pending = false;
    cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
    if (cudaStreamIsCapturing(s, &cs) != cudaSuccess || cs != cudaStreamCaptureStatusNone) return;
    if (D == A || D == B || (beta != 0.f && D == C)) return;
    const bool report = ns_report();
    cudaEvent_t t0, t1;
    check(cudaEventCreate(&t0), "cudaEventCreate");
    check(cudaEventCreate(&t1), "cudaEventCreate");
    std::vector<double> ms(candidates.size(), -1.0);
    for (size_t i = 0; i < candidates.size(); ++i) {
      auto launch = [&] {
        return cublasLtMatmul(e.lt, desc, &alpha, A, la, B, lb, &beta, C, lc, D, lc, &candidates[i], e.lib_ws,
                              e.lib_ws_bytes, s);
      };
      if (launch() != CUBLAS_STATUS_SUCCESS) continue; // warm-up; an algorithm that refuses is skipped
      std::vector<float> reps;
      for (int r = 0; r < kTuneReps; ++r) {
        check(cudaEventRecord(t0, s), "cudaEventRecord");
        check(launch(), "cublasLtMatmul (newton_schulz tuning)");
        check(cudaEventRecord(t1, s), "cudaEventRecord");
        check(cudaEventSynchronize(t1), "cudaEventSynchronize");
        float t = 0;
        check(cudaEventElapsedTime(&t, t0, t1), "cudaEventElapsedTime");
        reps.push_back(t);
      }
      std::sort(reps.begin(), reps.end());
      ms[i] = reps[reps.size() / 2];
    }
    cudaEventDestroy(t0);
    cudaEventDestroy(t1);
    size_t best = 0;
    for (size_t i = 1; i < ms.size(); ++i)
      if (ms[i] > 0 && (ms[best] <= 0 || ms[i] < ms[best])) best = i;
    if (ms[0] > 0 && ms[best] > ms[0] * (1.0 - kTuneMargin)) best = 0;
    if (ms[best] > 0) algo = candidates[best];
    if (report)
      for (size_t i = 0; i < ms.size(); ++i)
        std::fprintf(stderr, "symoc ns gemm %lldx%lldx%lld batch %lld candidate %zu: %.4f ms, %.1f TFLOP/s%s\n",
                     (long long)m, (long long)n, (long long)k, (long long)batch, i, ms[i],
                     ms[i] > 0 ? flops() / (ms[i] * 1e9) : 0.0, i == best ? " (kept)" : "");
  }
};

__device__ inline void store_half(__nv_bfloat16 &d, float v) { d = __float2bfloat16(v); }
__device__ inline void store_half(__half &d, float v) { d = __float2half(v); }
__device__ inline float load_half(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ inline float load_half(__half v) { return __half2float(v); }
// Two consecutive 16-bit elements as one 32-bit access (p 4-byte aligned); each element rounds
// as store_half does.
__device__ inline void store_pair(__nv_bfloat16 *p, float a, float b) {
  *reinterpret_cast<__nv_bfloat162 *>(p) = __floats2bfloat162_rn(a, b);
}
__device__ inline void store_pair(__half *p, float a, float b) { *reinterpret_cast<__half2 *>(p) = __floats2half2_rn(a, b); }
__device__ inline void load_pair(const __nv_bfloat16 *p, float &a, float &b) {
  const __nv_bfloat162 v = *reinterpret_cast<const __nv_bfloat162 *>(p);
  a = __low2float(v), b = __high2float(v);
}
__device__ inline void load_pair(const __half *p, float &a, float &b) {
  const __half2 v = *reinterpret_cast<const __half2 *>(p);
  a = __low2float(v), b = __high2float(v);
}

// Pack and unpack move every element of the Muon matrices once each way, so they are tiled for
// full 128-byte rows per warp on both sides: the 16-bit side of a row is accessed in pairs
// (store_pair / load_pair; the banks' ld and strides are multiples of 8 and 128 elements, so
// an even column is 4-byte aligned), and a transpose goes through a 64 x 32 shared tile. Each
// thread issues all of its global loads before it uses any (register arrays over the
// unrolled rows), so a block waits for one memory latency per phase, not one per row.
// Blocks of 32 x kRows threads; grids from ns_tile_grid.
constexpr int kTileLong = 64, kTileShort = 32, kRows = 8;
inline dim3 ns_tile_grid(int64_t rows, int64_t cols, int64_t batch, bool tall) {
  // tall: tiles of 64 input rows x 32 input columns; wide: 32 rows x 64 columns
  const int64_t tr = tall ? kTileLong : kTileShort, tc = tall ? kTileShort : kTileLong;
  return dim3(unsigned((cols + tc - 1) / tc), unsigned((rows + tr - 1) / tr), unsigned(batch));
}

// 1 / (||X||_F * scale_mul + 1e-7) of matrix b, its squared norm the total of its n partials.
__device__ inline float ns_inv_norm(const double *part, int64_t b, int n, double scale_mul) {
  return float(1.0 / (sqrt(partial_total(part, b, n)) * scale_mul + 1e-7));
}

// Muon's momentum step for one element (PolarSource): m updated in place, the input returned;
// each operation rounded on its own (the device optimizer's momentum kernel is compiled with
// --fmad=false), so both give the same bits.
struct PackMomentum {
  float w1, beta; // w1 = 1 - beta
  bool nesterov;
  __device__ float step(float g, float &m) const {
    m = __fadd_rn(m, __fmul_rn(w1, __fsub_rn(g, m)));
    return nesterov ? __fadd_rn(g, __fmul_rn(beta, __fsub_rn(m, g))) : m;
  }
};
__device__ inline float source_g(const PolarSource &p, int64_t i) {
  return p.g_bf16 ? __bfloat162float(static_cast<const __nv_bfloat16 *>(p.g)[i]) : static_cast<const float *>(p.g)[i];
}

// X_b = in_b / (||in_b||_F * scale_mul + 1e-7) in T, transposed when `tall`; the squared norm
// is the fixed-order total of the matrix's nparts partials (kPartials from the plan's own norm
// pass, 1 from PolarGroup::in_sumsq; read once per block, by one thread, while the others load).
// With sources, in_b is formed from srcs[b]'s g and m (PolarSource; m written back where it was
// read), and a skipped matrix is packed as zeros without a read.
template <class T>
__global__ void ns_pack_kernel(const float *in, int64_t R, int64_t C, int64_t ld, int64_t stride, bool tall,
                               const double *part, int64_t part_first, int nparts, double scale_mul, T *X,
                               int64_t ldk, int64_t sx, const PolarSource *srcs, PackMomentum mom,
                               const int32_t *index) {
  __shared__ float tile[kTileLong][kTileShort + 1];
  __shared__ float s_inv;
  const int64_t b = blockIdx.z, cb = index ? index[b] : b; // bank slot, caller's matrix
  const int tx = threadIdx.x, ty = threadIdx.y;
  const float *src = in + cb * stride;
  T *dst = X + b * sx;
  PolarSource ps{};
  if (srcs) ps = srcs[cb];
  const bool zero = srcs && ps.skip;
  // Element (i, j) of in_b; every load of a thread is issued before any is used.
  auto load = [&](int64_t i, int64_t j, float &g, float &m) {
    if (srcs) g = source_g(ps, i * ld + j), m = ps.m[i * ld + j];
    else g = src[i * ld + j];
  };
  auto form = [&](int64_t i, int64_t j, float g, float m) {
    if (!srcs) return g;
    const float u = mom.step(g, m);
    ps.m[i * ld + j] = m;
    return u;
  };
  if (!tall) { // X(i, j) = in(i, j): rows of 64 columns, two per thread
    constexpr int n = kTileShort / kRows;
    const int64_t i0 = int64_t(blockIdx.y) * kTileShort, j = int64_t(blockIdx.x) * kTileLong + 2 * tx;
    float v[n][2], m[n][2];
#pragma unroll
    for (int k = 0; k < n; ++k) {
      const int64_t i = i0 + ty + k * kRows;
      v[k][0] = v[k][1] = m[k][0] = m[k][1] = 0.f;
      if (zero) continue;
      if (i < R && j < C) load(i, j, v[k][0], m[k][0]);
      if (i < R && j + 1 < C) load(i, j + 1, v[k][1], m[k][1]);
    }
    if (tx == 0 && ty == 0) s_inv = zero ? 0.f : ns_inv_norm(part, part_first + cb, nparts, scale_mul);
    if (srcs && !zero)
#pragma unroll
      for (int k = 0; k < n; ++k) {
        const int64_t i = i0 + ty + k * kRows;
        if (i < R && j < C) v[k][0] = form(i, j, v[k][0], m[k][0]);
        if (i < R && j + 1 < C) v[k][1] = form(i, j + 1, v[k][1], m[k][1]);
      }
    __syncthreads();
    const float inv = s_inv;
#pragma unroll
    for (int k = 0; k < n; ++k) {
      const int64_t i = i0 + ty + k * kRows;
      if (i >= R || j >= C) continue;
      if (j + 1 < C) store_pair(dst + i * ldk + j, v[k][0] * inv, v[k][1] * inv);
      else store_half(dst[i * ldk + j], v[k][0] * inv);
    }
    return;
  }
  // X(j, i) = in(i, j): a tile of 64 input rows x 32 columns; X's rows written in pairs along i.
  const int64_t i0 = int64_t(blockIdx.y) * kTileLong, j0 = int64_t(blockIdx.x) * kTileShort;
  {
    constexpr int n = kTileLong / kRows;
    float v[n], m[n];
    const int64_t j = j0 + tx;
#pragma unroll
    for (int k = 0; k < n; ++k) {
      const int64_t i = i0 + ty + k * kRows;
      v[k] = m[k] = 0.f;
      if (!zero && i < R && j < C) load(i, j, v[k], m[k]);
    }
    if (srcs && !zero)
#pragma unroll
      for (int k = 0; k < n; ++k) {
        const int64_t i = i0 + ty + k * kRows;
        if (i < R && j < C) v[k] = form(i, j, v[k], m[k]);
      }
#pragma unroll
    for (int k = 0; k < n; ++k) tile[ty + k * kRows][tx] = v[k];
  }
  if (tx == 0 && ty == 0) s_inv = zero ? 0.f : ns_inv_norm(part, part_first + cb, nparts, scale_mul);
  __syncthreads();
  const float inv = s_inv;
#pragma unroll
  for (int k = 0; k < kTileShort / kRows; ++k) {
    const int t = ty + k * kRows;
    const int64_t j = j0 + t, i = i0 + 2 * tx;
    if (j >= C || i >= R) continue;
    if (i + 1 < R) store_pair(dst + j * ldk + i, tile[2 * tx][t] * inv, tile[2 * tx + 1][t] * inv);
    else store_half(dst[j * ldk + i], tile[2 * tx][t] * inv);
  }
}

// The fused update of a PolarTarget, one element: w <- w * decay - lr * d, d = scale * X (each
// operation rounded on its own, as muon_apply_kernel does, so fused and unfused agree bitwise).
__device__ inline float target_update(float w, float d, const PolarTarget &t) {
  return __fsub_rn(__fmul_rn(w, t.decay), __fmul_rn(t.lr, d));
}
__device__ inline float target_load(const PolarTarget &t, int64_t i) {
  return t.bf16 ? __bfloat162float(static_cast<const __nv_bfloat16 *>(t.w)[i]) : static_cast<const float *>(t.w)[i];
}
__device__ inline void target_store(const PolarTarget &t, int64_t i, float v) {
  if (t.bf16) static_cast<__nv_bfloat16 *>(t.w)[i] = __float2bfloat16_rn(v);
  else static_cast<float *>(t.w)[i] = v;
}

__device__ inline void target_load_pair(const PolarTarget &t, int64_t i, float &a, float &b) {
  if (t.bf16) {
    const __nv_bfloat162 v = *reinterpret_cast<const __nv_bfloat162 *>(static_cast<const __nv_bfloat16 *>(t.w) + i);
    a = __low2float(v), b = __high2float(v);
  } else {
    const float2 v = *reinterpret_cast<const float2 *>(static_cast<const float *>(t.w) + i);
    a = v.x, b = v.y;
  }
}
__device__ inline void target_store_pair(const PolarTarget &t, int64_t i, float a, float b) {
  if (t.bf16) *reinterpret_cast<__nv_bfloat162 *>(static_cast<__nv_bfloat16 *>(t.w) + i) = __floats2bfloat162_rn(a, b);
  else *reinterpret_cast<float2 *>(static_cast<float *>(t.w) + i) = make_float2(a, b);
}

// out_b = scale * X_b (fp32), transposed back when `tall`; with targets, the fused update of
// targets[b] instead (out's layout; its loads issued with X's).
template <class T>
__global__ void ns_unpack_kernel(const T *X, int64_t ldk, int64_t sx, bool tall, float scale, float *out, int64_t R,
                                 int64_t C, int64_t ld, int64_t stride, const PolarTarget *targets,
                                 const int32_t *index) {
  __shared__ float tile[kTileLong][kTileShort + 1];
  const int64_t b = blockIdx.z, cb = index ? index[b] : b; // bank slot, caller's matrix
  PolarTarget t{};
  if (targets) {
    t = targets[cb];
    if (t.skip) return; // the whole block: no barrier is left waiting
  }
  const int tx = threadIdx.x, ty = threadIdx.y;
  const T *src = X + b * sx;
  float *dst = targets ? nullptr : out + cb * stride;
  constexpr int n = kTileShort / kRows;
  if (!tall) { // out(i, j) = X(i, j): rows of 64 columns, two per thread
    const int64_t i0 = int64_t(blockIdx.y) * kTileShort, j = int64_t(blockIdx.x) * kTileLong + 2 * tx;
    // The weight's pairs (i, j), (i, j + 1) as one 8- or 4-byte access where every row's are
    // aligned (j is even).
    const bool pairs = targets && ld % 2 == 0 &&
                       reinterpret_cast<uintptr_t>(t.w) % (t.bf16 ? 4 : 8) == 0;
    float v[n][2], w[n][2];
#pragma unroll
    for (int k = 0; k < n; ++k) {
      const int64_t i = i0 + ty + k * kRows;
      v[k][0] = v[k][1] = w[k][0] = w[k][1] = 0.f;
      if (i >= R || j >= C) continue;
      if (j + 1 < C) load_pair(src + i * ldk + j, v[k][0], v[k][1]);
      else v[k][0] = load_half(src[i * ldk + j]);
      if (targets) {
        if (j + 1 < C && pairs) target_load_pair(t, i * ld + j, w[k][0], w[k][1]);
        else {
          w[k][0] = target_load(t, i * ld + j);
          if (j + 1 < C) w[k][1] = target_load(t, i * ld + j + 1);
        }
      }
    }
#pragma unroll
    for (int k = 0; k < n; ++k) {
      const int64_t i = i0 + ty + k * kRows;
      if (i >= R || j >= C) continue;
      if (targets && j + 1 < C && pairs) {
        target_store_pair(t, i * ld + j, target_update(w[k][0], scale * v[k][0], t),
                          target_update(w[k][1], scale * v[k][1], t));
        continue;
      }
      for (int q = 0; q < 2 && j + q < C; ++q) {
        const float d = scale * v[k][q];
        if (targets) target_store(t, i * ld + j + q, target_update(w[k][q], d, t));
        else dst[i * ld + j + q] = d;
      }
    }
    return;
  }
  // out(i, j) = X(j, i): X's rows read in pairs along i into a 64 x 32 tile of the output.
  const int64_t i0 = int64_t(blockIdx.y) * kTileLong, j0 = int64_t(blockIdx.x) * kTileShort;
  constexpr int m = kTileLong / kRows;
  float w[m];
  if (targets) {
#pragma unroll
    for (int k = 0; k < m; ++k) {
      const int64_t i = i0 + ty + k * kRows, j = j0 + tx;
      w[k] = i < R && j < C ? target_load(t, i * ld + j) : 0.f;
    }
  }
  {
    float v[n][2];
    const int64_t i = i0 + 2 * tx;
#pragma unroll
    for (int k = 0; k < n; ++k) {
      const int64_t j = j0 + ty + k * kRows;
      v[k][0] = v[k][1] = 0.f;
      if (j >= C || i >= R) continue;
      if (i + 1 < R) load_pair(src + j * ldk + i, v[k][0], v[k][1]);
      else v[k][0] = load_half(src[j * ldk + i]);
    }
#pragma unroll
    for (int k = 0; k < n; ++k) tile[2 * tx][ty + k * kRows] = v[k][0], tile[2 * tx + 1][ty + k * kRows] = v[k][1];
  }
  __syncthreads();
#pragma unroll
  for (int k = 0; k < m; ++k) {
    const int64_t i = i0 + ty + k * kRows, j = j0 + tx;
    if (i >= R || j >= C) continue;
    const float d = scale * tile[ty + k * kRows][tx];
    if (targets) target_store(t, i * ld + j, target_update(w[k], d, t));
    else dst[i * ld + j] = d;
  }
}

// Where the pack reads a group's squared norms: matrix b's are part[(first + b) * n, + n).
struct NormSource {
  const double *part;
  int64_t first;
  int n;
};
// The caller's (PolarGroup::in_sumsq, one per matrix), or the plan's own pass over the input
// into its partials (kPartials per matrix, from global).
inline NormSource input_norms(const PolarGroup &pg, int64_t sin, double *part, int64_t global, cudaStream_t s) {
  if (pg.in_sumsq) return NormSource{pg.in_sumsq, 0, 1};
  if (pg.sources) fail("newton_schulz", "PolarGroup::sources needs in_sumsq (the plan cannot read the input first)");
  if (pg.index) fail("newton_schulz", "PolarGroup::index needs in_sumsq (the plan's own norms are not gathered)");
  const Batch &in = pg.in;
  sum_products_partials(in.data, nullptr, in.batch, in.rows, in.cols, in.ld, sin, 0, 0, part + global * kPartials, s);
  return NormSource{part, global, kPartials};
}

// Host side of the two kernels (blocks of 32 x kRows). The pack reads pg.in, or pg.sources.
template <class T>
void launch_ns_pack(const PolarGroup &pg, int64_t sin, bool tall, NormSource norms, double scale_mul, T *X,
                    int64_t ldk, int64_t sx, cudaStream_t s) {
  const Batch &in = pg.in;
  const PackMomentum mom{1.f - pg.beta, pg.beta, pg.nesterov};
  ns_pack_kernel<T><<<ns_tile_grid(in.rows, in.cols, in.batch, tall), dim3(32, kRows), 0, s>>>(
      in.data, in.rows, in.cols, in.ld, sin, tall, norms.part, norms.first, norms.n, scale_mul, X, ldk, sx,
      pg.sources, mom, pg.index);
  check_launch("newton_schulz pack");
}
template <class T>
void launch_ns_unpack(const T *X, int64_t ldk, int64_t sx, bool tall, float scale, const Batch &out,
                      const PolarTarget *targets, const int32_t *index, cudaStream_t s) {
  ns_unpack_kernel<T><<<ns_tile_grid(out.rows, out.cols, out.batch, tall), dim3(32, kRows), 0, s>>>(
      X, ldk, sx, tall, scale, out.data, out.rows, out.cols, out.ld, out.batch > 1 || index ? out.stride : 0, targets,
      index);
  check_launch("newton_schulz unpack");
}

// D_b(j, i) = D_b(i, j) for 0 <= i < j < r: the lower triangle of each r x r matrix
// (column-major, ld ldd, stride sd; ldd even and the matrices 4-byte aligned) from its strict
// upper triangle, through a 64 x 64 tile whose columns are read and written as 32-bit pairs of
// 16-bit elements (128 bytes per warp both ways). Square grid (tri = false): (T, T, z), T =
// ceil(r / 64), tile (blockIdx.y, blockIdx.x), the blocks below the diagonal return; triangular
// grid (tri): (T (T + 1) / 2, 1, z), blockIdx.x the upper tiles column by column. Matrices b =
// blockIdx.z, + gridDim.z, ... < count (mirror_grid: kMirrorPerBlock matrices per block, which
// measured 1.27x faster than one on LLaMA-1B's 48 x 2048^2, matrix_bench). A block reads only
// its own tile and writes only the transposed tile (or, on the diagonal, that tile's strict lower triangle after reading it), so
// blocks never touch each other's data. A bit copy: serves fp16 and bf16 (a template for the
// header's two translation units).
template <class W>
__global__ void mirror_upper_kernel(W *D, int64_t count, int64_t r, int64_t ldd, int64_t sd, bool tri) {
  static_assert(sizeof(W) == 2, "16-bit elements");
  __shared__ uint32_t tile[64][33]; // tile[c][w]: column j0 + c, rows i0 + 2w, i0 + 2w + 1
  int64_t ti = blockIdx.y, tj = blockIdx.x;
  if (tri) { // blockIdx.x = tj (tj + 1) / 2 + ti, 0 <= ti <= tj
    const int64_t t = blockIdx.x;
    tj = int64_t((sqrt(8.0 * double(t) + 1.0) - 1.0) / 2.0);
    while (tj * (tj + 1) / 2 > t) --tj;
    while ((tj + 1) * (tj + 2) / 2 <= t) ++tj;
    ti = t - tj * (tj + 1) / 2;
  }
  if (ti > tj) return; // the whole block: no __syncthreads skipped by some threads
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t i0 = ti * 64, j0 = tj * 64;
  for (int64_t b = blockIdx.z; b < count; b += gridDim.z) {
    uint16_t *m = reinterpret_cast<uint16_t *>(D + b * sd);
    // Read D(i, j), i = i0 + 2 tx (+1), column j (column-major: contiguous along i); every
    // load of the thread before its first shared store.
    constexpr int n = 64 / kRows;
    uint32_t v[n];
    const int64_t ir = i0 + 2 * tx;
#pragma unroll
    for (int k = 0; k < n; ++k) {
      const int64_t j = j0 + ty + k * kRows;
      const uint16_t *p = m + ir + j * ldd;
      v[k] = j >= r || ir >= r ? 0u : ir + 1 < r ? *reinterpret_cast<const uint32_t *>(p) : uint32_t(p[0]);
    }
#pragma unroll
    for (int k = 0; k < n; ++k) tile[ty + k * kRows][tx] = v[k];
    __syncthreads();
    // Write D(j, i) and D(j + 1, i), j = j0 + 2 tx, column i: tile(i, j) and tile(i, j + 1).
#pragma unroll
    for (int k = 0; k < n; ++k) {
      const int t = ty + k * kRows;
      const int64_t i = i0 + t, j = j0 + 2 * tx;
      const bool w0 = i < j && j < r, w1 = i < j + 1 && j + 1 < r;
      if (!w0 && !w1) continue;
      const uint16_t lo = uint16_t(tile[2 * tx][t / 2] >> (16 * (t & 1)));
      const uint16_t hi = uint16_t(tile[2 * tx + 1][t / 2] >> (16 * (t & 1)));
      uint16_t *p = m + j + i * ldd;
      if (w0 && w1) *reinterpret_cast<uint32_t *>(p) = uint32_t(lo) | (uint32_t(hi) << 16);
      else if (w0) p[0] = lo;
      else p[1] = hi;
    }
    __syncthreads();
  }
}

constexpr int kMirrorPerBlock = 4;
inline dim3 mirror_grid(int64_t r, int64_t batch, bool tri, int per_block = kMirrorPerBlock) {
  const int64_t t = (r + 63) / 64;
  const unsigned z = unsigned(std::min<int64_t>((batch + per_block - 1) / per_block, 65535));
  return tri ? dim3(unsigned(t * (t + 1) / 2), 1, z) : dim3(unsigned(t), unsigned(t), z);
}
constexpr bool kMirrorTriangular = true; // 2.55 vs 2.44 TB/s square (matrix_bench, session 11)

inline int64_t pow2_alignment(int64_t bytes) { // largest power of two dividing `bytes`, at most 256
  int64_t a = 256;
  while (a > 1 && bytes % a != 0) a /= 2;
  return a;
}

// D = alpha op(A) B + beta C for an r x r output known to be symmetric (NsTuning::
// symmetric_products): R = X X^T, and products of symmetric commuting matrices (polynomials in one
// symmetric matrix). Only the upper part is multiplied, in two GEMMs, and mirrored:
//   top:    D[0:h, 0:r] = alpha op(A)[0:h, :] B[:, 0:r] + beta C[0:h, 0:r]
//   bottom: D[h:r, h:r] = alpha op(A)[h:r, :] B[:, h:r] + beta C[h:r, h:r]
//   mirror: D(j, i) = D(i, j) for i < j: the block D[h:r, 0:h] = D[0:h, h:r]^T, which no GEMM
//           wrote, and the diagonal blocks' lower triangles, so that D is exactly symmetric
//           whatever order each GEMM kernel sums in (the dense product is not, in general)
// with op(A)[rows, :] = (stored A[:, rows])^T read with opA = T: for the Gram product the stored
// (column-major, k x r) X, whose op was T anyway; for a symmetric r x r A, its columns, equal to
// its rows. Every submatrix is the base pointer plus an offset with the same ld and stride.
// Every computed element is the dense product's full-length dot product with fp32
// accumulation, rounded once; only the GEMM kernel (and so its summation order) may differ
// from the dense one. 2 (h r + (r - h)^2) k FLOPs instead of 2 r^2 k (0.75x at h = r / 2).
struct SymmetricGemm {
  BatchedGemm top, bottom;
  int64_t r = 0, h = 0, ldd = 0, sd = 0, batch = 0;
  int64_t off_a = 0, off_b = 0, off_cd = 0; // the bottom GEMM's element offsets

  // From the dense product `d` (m = n = r, any k, opB = N; d.opA = T, or N with A symmetric).
  void setup(Engine::Impl &e, const BatchedGemm &d, bool try_lt, bool tune_algos = false) {
    if (d.m != d.n || d.opB != CUBLAS_OP_N || d.m < 2) fail("newton_schulz", "symmetric product needs r x r, r >= 2");
    r = d.m, ldd = d.ldc, sd = d.sC, batch = d.batch;
    // h near r / 2 (the FLOP minimum), a multiple of 8 where r allows so the bottom operands
    // keep 16-byte alignment (256 bytes at the benchmark sizes, e.g. r = 768, 2048).
    h = r / 2 >= 8 ? r / 2 / 8 * 8 : r / 2;
    top = d, bottom = d;
    top.opA = bottom.opA = CUBLAS_OP_T;
    top.m = h;
    bottom.m = bottom.n = r - h;
    off_a = h * d.lda, off_b = h * d.ldb, off_cd = h + h * d.ldc;
    bottom.align_a = pow2_alignment(off_a * 2), bottom.align_b = pow2_alignment(off_b * 2);
    bottom.align_cd = pow2_alignment(off_cd * 2);
    top.desc = bottom.desc = nullptr, top.la = top.lb = top.lc = bottom.la = bottom.lb = bottom.lc = nullptr;
    top.lt = bottom.lt = false;
    top.setup(e, try_lt, tune_algos);
    bottom.setup(e, try_lt, tune_algos);
  }
  void destroy() { top.destroy(), bottom.destroy(); }
  bool lt() const { return top.lt && bottom.lt; }
  // FLOPs of one batch entry.
  double flops_each() const { return 2.0 * (double(h) * double(r) + double(r - h) * double(r - h)) * double(top.k); }
  void run(Engine::Impl &e, float alpha, const void *A, const void *B, float beta, const void *C, void *D,
           cudaStream_t s) const {
    auto at = [](const void *p, int64_t el) { return static_cast<const char *>(p) + el * 2; };
    // cublasGemmStridedBatchedEx computes in place: copy C into D once, whole matrices
    // (BatchedGemm::run's own copy would run over the end from the bottom's offset).
    if ((!top.lt || !bottom.lt) && beta != 0.f && C != D) {
      check(cudaMemcpyAsync(D, C, size_t(sd * batch) * 2, cudaMemcpyDeviceToDevice, s), "cudaMemcpyAsync");
      C = D;
    }
    top.run(e, alpha, A, B, beta, C, D, s);
    bottom.run(e, alpha, at(A, off_a), at(B, off_b), beta, at(C, off_cd), const_cast<char *>(at(D, off_cd)), s);
    mirror_upper_kernel<uint16_t><<<mirror_grid(r, batch, kMirrorTriangular), dim3(32, kRows), 0, s>>>(
        static_cast<uint16_t *>(D), batch, r, ldd, sd, kMirrorTriangular);
    check_launch("newton_schulz symmetric mirror");
  }
};

// An r x r product known to be symmetric (the Gram product, and products of polynomials in one
// symmetric matrix), run as the dense BatchedGemm or as SymmetricGemm: one place for the choice
// NsTuning::symmetric_for makes, so the product sites of both Newton-Schulz plans do not spell
// it out.
struct SymmetricProduct {
  BatchedGemm dense;
  SymmetricGemm half; // set up instead of `dense` when `sym`
  bool sym = false;

  // `d`: the dense product's shape and layout (m = n = r).
  void setup(Engine::Impl &e, const BatchedGemm &d, bool symmetric, bool try_lt, bool tune_algos = false) {
    dense = d, sym = symmetric;
    if (sym) half.setup(e, dense, try_lt, tune_algos);
    else dense.setup(e, try_lt, tune_algos);
  }
  void destroy() { dense.destroy(), half.destroy(); }
  bool lt() const { return sym ? half.lt() : dense.lt; }
  // FLOPs of one batch entry: what runs (a symmetric product counts its two GEMMs).
  double flops_each() const { return sym ? half.flops_each() : dense.flops_each(); }
  void run(Engine::Impl &e, float alpha, const void *A, const void *B, float beta, const void *C, void *D,
           cudaStream_t s) const {
    if (sym) half.run(e, alpha, A, B, beta, C, D, s);
    else dense.run(e, alpha, A, B, beta, C, D, s);
  }
};

// Every GEMM of a plan's banks (gram, apply) and classes (square) found a cuBLASLt algorithm.
template <class Banks, class Classes> bool all_use_lt(const Banks &banks, const Classes &classes) {
  for (const auto &b : banks)
    if (!b.gram.lt() || !b.apply.lt) return false;
  for (const auto &c : classes)
    if (!c.square.lt()) return false;
  return true;
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
