// ensureBlasCore(): OpenBLAS's generic fallback is replaced by the kernels the CPU can run,
// and those kernels compute the same products as a plain loop.
#include "symoc/runtime/blas_core.h"

#include <cblas.h>
#include <cmath>
#include <cstdlib>
#include <gtest/gtest.h>
#include <random>
#include <vector>

using symoc::rt::BlasCore;
using symoc::rt::ensureBlasCore;

namespace {

bool generic(const std::string &core) {
  return core == "Prescott" || core == "Core2" || core == "Nehalem";
}

TEST(BlasCore, GenericFallbackIsReplacedOnCapableCpus) {
  BlasCore r = ensureBlasCore();
  if (r.before.empty())
    GTEST_SKIP() << "the BLAS is not a DYNAMIC_ARCH OpenBLAS";
  if (std::getenv("OPENBLAS_CORETYPE") || std::getenv("SYMOC_KEEP_BLAS_CORE"))
    GTEST_SKIP() << "the environment chose the kernels";
  __builtin_cpu_init();
  bool capable = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  std::printf("OpenBLAS core: %s -> %s\n", r.before.c_str(), r.after.c_str());
  if (capable)
    EXPECT_FALSE(generic(r.after)) << "OpenBLAS still on " << r.after;
  else
    EXPECT_EQ(r.before, r.after);
  EXPECT_EQ(r.changed, r.before != r.after);
  // A second call changes nothing.
  BlasCore again = ensureBlasCore();
  EXPECT_EQ(again.after, r.after);
  EXPECT_EQ(again.changed, r.changed);
}

template <typename T, typename Gemm>
double gemmError(Gemm gemm, int M, int N, int K) {
  std::mt19937 g(7);
  std::normal_distribution<double> nd;
  std::vector<T> A(size_t(M) * K), B(size_t(K) * N), C(size_t(M) * N, T(0.5));
  for (T &v : A) v = T(nd(g));
  for (T &v : B) v = T(nd(g));
  std::vector<double> ref(C.begin(), C.end());
  for (int i = 0; i < M; ++i)
    for (int k = 0; k < K; ++k)
      for (int j = 0; j < N; ++j)
        ref[size_t(i) * N + j] += double(A[size_t(i) * K + k]) * double(B[size_t(k) * N + j]);
  gemm(M, N, K, A.data(), B.data(), C.data());
  double err = 0, norm = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    err = std::max(err, std::fabs(double(C[i]) - ref[i]));
    norm = std::max(norm, std::fabs(ref[i]));
  }
  return err / norm;
}

TEST(BlasCore, SelectedKernelsComputeTheProduct) {
  ensureBlasCore();
  // Odd sizes reach the kernels' edge cases.
  for (auto [M, N, K] : {std::tuple{97, 131, 67}, std::tuple{1, 300, 257}, std::tuple{513, 3, 9}}) {
    double ed = gemmError<double>(
        [](int m, int n, int k, const double *a, const double *b, double *c) {
          cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1.0, a, k, b, n, 1.0,
                      c, n);
        },
        M, N, K);
    double es = gemmError<float>(
        [](int m, int n, int k, const float *a, const float *b, float *c) {
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1.0f, a, k, b, n,
                      1.0f, c, n);
        },
        M, N, K);
    EXPECT_LT(ed, 1e-13) << M << "x" << N << "x" << K;
    EXPECT_LT(es, 1e-5) << M << "x" << N << "x" << K;
  }
}

} // namespace
