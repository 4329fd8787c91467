// Does cuBLAS's symmetric rank-k update run on tensor cores in TF32 mode, and at what rate?
// Shampoo's Grams G G^T (sides 768 .. 3072) take two full TF32 GEMM passes today (hi hi^T / 2 +
// lo hi^T, then Z + Z^T); syrk(hi) + syr2k(hi, lo) would do the same arithmetic on one triangle
// (0.75x the FLOPs) if cuBLAS keeps the tensor-core rate there.
//   nvcc -O2 -arch=sm_90 -o /tmp/syrk_bench bench/gpu/syrk_tf32_bench.cu -lcublas && /tmp/syrk_bench
// Prints per shape (batch 12): ms of a full TF32 GEMM (strided batch), of 12 cublasSsyrk and 12
// cublasSsyr2k calls with CUBLAS_TF32_TENSOR_OP_MATH and with the default math, and syrk's
// relative error against fp64 on an input that is not TF32-exact (TF32: ~1e-3, fp32: ~1e-6).
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#define CK(x)                                                                  \
  do {                                                                         \
    auto e_ = (x);                                                             \
    if (e_ != 0) {                                                             \
      std::printf("error %d at %s:%d\n", int(e_), __FILE__, __LINE__);         \
      std::exit(1);                                                            \
    }                                                                          \
  } while (0)

template <class F> float time_ms(F f, int reps = 10) {
  cudaEvent_t a, b;
  cudaEventCreate(&a), cudaEventCreate(&b);
  f(), f();
  std::vector<float> t;
  for (int r = 0; r < reps; ++r) {
    cudaEventRecord(a);
    f();
    cudaEventRecord(b);
    cudaEventSynchronize(b);
    float ms;
    cudaEventElapsedTime(&ms, a, b);
    t.push_back(ms);
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

int main() {
  cublasHandle_t h;
  CK(cublasCreate(&h));
  const int B = 12;
  struct S { int m, k; };
  for (S s : {S{3072, 768}, S{768, 3072}, S{2304, 768}, S{768, 2304}, S{768, 768}}) {
    const int m = s.m, k = s.k;
    std::vector<float> hA(size_t(B) * m * k);
    std::mt19937 g(1);
    std::normal_distribution<float> nd;
    for (auto &x : hA) x = nd(g);
    float *A, *C, *A2;
    CK(cudaMalloc(&A, hA.size() * 4));
    CK(cudaMalloc(&A2, hA.size() * 4));
    CK(cudaMalloc(&C, size_t(B) * m * m * 4));
    CK(cudaMemcpy(A, hA.data(), hA.size() * 4, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(A2, hA.data(), hA.size() * 4, cudaMemcpyHostToDevice));
    const float one = 1, zero = 0;
    const double flop = 2.0 * m * m * k * B;
    CK(cublasSetMathMode(h, CUBLAS_TF32_TENSOR_OP_MATH));
    // C = A A^T, A column-major m x k (lda m).
    float gemm = time_ms([&] {
      CK(cublasGemmStridedBatchedEx(h, CUBLAS_OP_N, CUBLAS_OP_T, m, m, k, &one, A, CUDA_R_32F, m, size_t(m) * k, A,
                                    CUDA_R_32F, m, size_t(m) * k, &zero, C, CUDA_R_32F, m, size_t(m) * m, B,
                                    CUBLAS_COMPUTE_32F_FAST_TF32, CUBLAS_GEMM_DEFAULT));
    });
    float syrk_tf = time_ms([&] {
      for (int b = 0; b < B; ++b)
        CK(cublasSsyrk(h, CUBLAS_FILL_MODE_UPPER, CUBLAS_OP_N, m, k, &one, A + size_t(b) * m * k, m, &zero,
                       C + size_t(b) * m * m, m));
    });
    float syr2k_tf = time_ms([&] {
      for (int b = 0; b < B; ++b)
        CK(cublasSsyr2k(h, CUBLAS_FILL_MODE_UPPER, CUBLAS_OP_N, m, k, &one, A + size_t(b) * m * k, m,
                        A2 + size_t(b) * m * k, m, &zero, C + size_t(b) * m * m, m));
    });
    // syrk's error (matrix 0, TF32 mode) against fp64 on 64 entries of the upper triangle.
    std::vector<float> hC(size_t(m) * m);
    CK(cublasSsyrk(h, CUBLAS_FILL_MODE_UPPER, CUBLAS_OP_N, m, k, &one, A, m, &zero, C, m));
    CK(cudaMemcpy(hC.data(), C, hC.size() * 4, cudaMemcpyDeviceToHost));
    double err_tf = 0;
    auto ref = [&](int i, int j) {
      double s = 0, a = 0;
      for (int q = 0; q < k; ++q) s += double(hA[size_t(q) * m + i]) * hA[size_t(q) * m + j], a += std::fabs(double(hA[size_t(q) * m + i]) * hA[size_t(q) * m + j]);
      return std::pair<double, double>(s, a);
    };
    for (int t = 0; t < 64; ++t) {
      const int i = (t * 97) % m, j = std::min(m - 1, i + (t * 31) % m);
      auto [s, a] = ref(i, j);
      err_tf = std::max(err_tf, std::fabs(hC[size_t(j) * m + i] - s) / a);
    }
    CK(cublasSetMathMode(h, CUBLAS_DEFAULT_MATH));
    float syrk_f32 = time_ms([&] {
      for (int b = 0; b < B; ++b)
        CK(cublasSsyrk(h, CUBLAS_FILL_MODE_UPPER, CUBLAS_OP_N, m, k, &one, A + size_t(b) * m * k, m, &zero,
                       C + size_t(b) * m * m, m));
    });
    CK(cublasSsyrk(h, CUBLAS_FILL_MODE_UPPER, CUBLAS_OP_N, m, k, &one, A, m, &zero, C, m));
    CK(cudaMemcpy(hC.data(), C, hC.size() * 4, cudaMemcpyDeviceToHost));
    double err_f32 = 0;
    for (int t = 0; t < 64; ++t) {
      const int i = (t * 97) % m, j = std::min(m - 1, i + (t * 31) % m);
      auto [s, a] = ref(i, j);
      err_f32 = std::max(err_f32, std::fabs(hC[size_t(j) * m + i] - s) / a);
    }
    std::printf("m %d k %d batch %d | tf32 gemm %.3f ms (%.0f TFLOP/s) | syrk tf32-mode %.3f ms (%.0f TFLOP/s of the "
                "full product, %.2fx gemm) err %.1e | syr2k tf32-mode %.3f ms (%.2fx 2 gemms) | syrk default math "
                "%.3f ms err %.1e\n",
                m, k, B, gemm, flop / gemm / 1e9, syrk_tf, flop / syrk_tf / 1e9, syrk_tf / gemm, err_tf, syr2k_tf,
                syr2k_tf / (2 * gemm), syrk_f32, err_f32);
    cudaFree(A), cudaFree(A2), cudaFree(C);
  }
  return 0;
}
