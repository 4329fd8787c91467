// Measures whether a warm start makes Shampoo's eigensolves cheaper: cuSOLVER's Jacobi
// (Xsyevj, one matrix) on B = Q0^T A1 Q0, Q0 the eigenbasis of an earlier factor A0, against a
// cold Xsyevd / Xsyevj on A1. Factors are Shampoo's: A = sum_t G_t G_t^T (+ eps in the root),
// G_t n x k Gaussian, in three drifts: "fixed" (G_t = G), "corr" (G_t = G + N_t), "indep"
// (G_t = N_t); A0 after 10 steps, A1 after 1 or 10 more. Prints one JSON line per row and
// writes them all to OUT.json. Standalone (cuSOLVER + cuBLAS only):
//   nvcc -O2 -arch=sm_90 bench/gpu/eigh_warm_bench.cu -lcusolver -lcublas -o /tmp/ewb && /tmp/ewb out.json
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cusolverDn.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "bench_check.h"

static cublasHandle_t blas;
static cusolverDnHandle_t sol;

template <class T> struct Tr;
template <> struct Tr<float> {
  static constexpr cudaDataType t = CUDA_R_32F;
  static const char *name() { return "f32"; }
};
template <> struct Tr<double> {
  static constexpr cudaDataType t = CUDA_R_64F;
  static const char *name() { return "f64"; }
};

// C = alpha op(A) op(B) + beta C, column-major n x n (k inner).
template <class T>
void gemm(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, const T *A, int lda, const T *B, int ldb,
          T beta, T *C, int ldc) {
  const T one = 1;
  if constexpr (sizeof(T) == 4)
    CK(cublasSgemm(blas, ta, tb, m, n, k, &one, A, lda, B, ldb, &beta, C, ldc));
  else
    CK(cublasDgemm(blas, ta, tb, m, n, k, &one, A, lda, B, ldb, &beta, C, ldc));
}

template <class T> __global__ void scale_cols(const T *V, const T *w, T eps, int n, T *out) {
  for (long e = blockIdx.x * long(blockDim.x) + threadIdx.x; e < long(n) * n; e += long(gridDim.x) * blockDim.x) {
    const int c = int(e / n);
    const T x = w[c] > T(0) ? w[c] : T(0);
    out[e] = V[e] * pow(x + eps, T(-0.125)); // (w + eps)^(-1/8) on both sides: the -1/4 root
  }
}
// root = V diag((w + eps)^(-1/4)) V^T
template <class T> void root(const T *V, const T *w, T eps, int n, T *tmp, T *out) {
  scale_cols<T><<<1024, 256>>>(V, w, eps, n, tmp);
  gemm<T>(CUBLAS_OP_N, CUBLAS_OP_T, n, n, n, tmp, n, tmp, n, T(0), out, n);
}

template <class T> double rel_diff(const T *a, const T *b, long n) {
  std::vector<T> x(n), y(n);
  CK(cudaMemcpy(x.data(), a, n * sizeof(T), cudaMemcpyDeviceToHost));
  CK(cudaMemcpy(y.data(), b, n * sizeof(T), cudaMemcpyDeviceToHost));
  double d = 0, s = 0;
  for (long i = 0; i < n; ++i) {
    d += (double(x[i]) - double(y[i])) * (double(x[i]) - double(y[i]));
    s += double(y[i]) * double(y[i]);
  }
  return std::sqrt(d / std::max(s, 1e-300));
}

struct Timer {
  cudaEvent_t a, b;
  Timer() {
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
  }
  void start() { CK(cudaEventRecord(a)); }
  float stop() {
    CK(cudaEventRecord(b));
    CK(cudaEventSynchronize(b));
    float ms = 0;
    CK(cudaEventElapsedTime(&ms, a, b));
    return ms;
  }
};

template <class T> struct Solver {
  int n;
  cusolverDnParams_t p;
  syevjInfo_t jac;
  size_t dbytes = 0, hbytes = 0;
  int jbytes = 0;
  void *dwork = nullptr, *hwork = nullptr;
  T *jwork = nullptr;
  int *info;
  Solver(int n, double tol, int max_sweeps) : n(n) {
    CK(cusolverDnCreateParams(&p));
    CK(cusolverDnCreateSyevjInfo(&jac));
    if (tol > 0) CK(cusolverDnXsyevjSetTolerance(jac, tol));
    CK(cusolverDnXsyevjSetMaxSweeps(jac, max_sweeps));
    CK(cusolverDnXsyevjSetSortEig(jac, 1));
    T *d;
    CK(cudaMalloc(&d, sizeof(T) * (size_t(n) * n + n)));
    CK(cusolverDnXsyevd_bufferSize(sol, p, CUSOLVER_EIG_MODE_VECTOR, CUBLAS_FILL_MODE_UPPER, n, Tr<T>::t, d, n,
                                   Tr<T>::t, d + size_t(n) * n, Tr<T>::t, &dbytes, &hbytes));
    if constexpr (sizeof(T) == 4)
      CK(cusolverDnSsyevj_bufferSize(sol, CUSOLVER_EIG_MODE_VECTOR, CUBLAS_FILL_MODE_UPPER, n, d, n,
                                     d + size_t(n) * n, &jbytes, jac));
    else
      CK(cusolverDnDsyevj_bufferSize(sol, CUSOLVER_EIG_MODE_VECTOR, CUBLAS_FILL_MODE_UPPER, n, d, n,
                                     d + size_t(n) * n, &jbytes, jac));
    CK(cudaFree(d));
    CK(cudaMalloc(&dwork, std::max<size_t>(dbytes, 1)));
    hwork = std::malloc(std::max<size_t>(hbytes, 1));
    CK(cudaMalloc(&jwork, sizeof(T) * std::max(jbytes, 1)));
    CK(cudaMalloc(&info, sizeof(int)));
  }
  void syevd(T *A, T *w) {
    CK(cusolverDnXsyevd(sol, p, CUSOLVER_EIG_MODE_VECTOR, CUBLAS_FILL_MODE_UPPER, n, Tr<T>::t, A, n, Tr<T>::t, w,
                        Tr<T>::t, dwork, dbytes, hwork, hbytes, info));
  }
  int syevj(T *A, T *w, double *residual) {
    if constexpr (sizeof(T) == 4)
      CK(cusolverDnSsyevj(sol, CUSOLVER_EIG_MODE_VECTOR, CUBLAS_FILL_MODE_UPPER, n, A, n, w, jwork, jbytes, info,
                          jac));
    else
      CK(cusolverDnDsyevj(sol, CUSOLVER_EIG_MODE_VECTOR, CUBLAS_FILL_MODE_UPPER, n, A, n, w, jwork, jbytes, info,
                          jac));
    int sweeps = 0;
    CK(cusolverDnXsyevjGetSweeps(sol, jac, &sweeps));
    CK(cusolverDnXsyevjGetResidual(sol, jac, residual));
    return sweeps;
  }
};

static std::vector<std::string> rows;

template <class T> void run_case(int n, int k, const char *drift, int later, double tol, int max_sweeps) {
  const size_t nn = size_t(n) * n;
  std::mt19937 rng(1234 + n + k);
  std::normal_distribution<double> N(0.0, 1.0);
  std::vector<T> h(size_t(n) * k), base(size_t(n) * k);
  for (auto &x : base) x = T(N(rng));
  T *G, *A0, *A1, *Q0, *B, *V, *tmp, *w0, *w1, *wj, *R1, *R2;
  CK(cudaMalloc(&G, sizeof(T) * size_t(n) * k));
  for (T **p : {&A0, &A1, &Q0, &B, &V, &tmp, &R1, &R2}) CK(cudaMalloc(p, sizeof(T) * nn));
  for (T **p : {&w0, &w1, &wj}) CK(cudaMalloc(p, sizeof(T) * n));
  CK(cudaMemset(A0, 0, sizeof(T) * nn));
  const std::string d = drift;
  auto add_step = [&](T *A) {
    for (size_t i = 0; i < h.size(); ++i)
      h[i] = d == "fixed" ? base[i] : d == "corr" ? T(base[i] + N(rng)) : T(N(rng));
    CK(cudaMemcpy(G, h.data(), sizeof(T) * h.size(), cudaMemcpyHostToDevice));
    gemm<T>(CUBLAS_OP_N, CUBLAS_OP_T, n, n, k, G, n, G, n, T(1), A, n);
  };
  for (int t = 0; t < 10; ++t) add_step(A0);
  CK(cudaMemcpy(A1, A0, sizeof(T) * nn, cudaMemcpyDeviceToDevice));
  for (int t = 0; t < later; ++t) add_step(A1);
  Solver<T> S(n, tol, max_sweeps);
  Timer tm;
  // Q0: A0's eigenbasis (what the previous refresh kept).
  CK(cudaMemcpy(Q0, A0, sizeof(T) * nn, cudaMemcpyDeviceToDevice));
  S.syevd(Q0, w0);
  // eps as Shampoo's default relative to the largest eigenvalue: 1e-6 * lambda_max(A1) (approx. by A0's).
  T wmax;
  CK(cudaMemcpy(&wmax, w0 + n - 1, sizeof(T), cudaMemcpyDeviceToHost));
  const T eps = T(1e-6) * wmax * T(later + 10) / T(10);
  // Reference: cold Xsyevd on A1 (median of 3).
  std::vector<float> td, tj, tw;
  for (int r = 0; r < 3; ++r) {
    CK(cudaMemcpy(V, A1, sizeof(T) * nn, cudaMemcpyDeviceToDevice));
    tm.start();
    S.syevd(V, w1);
    td.push_back(tm.stop());
  }
  root<T>(V, w1, eps, n, tmp, R1);
  // Cold Jacobi on A1.
  double res_cold = 0, res_warm = 0;
  int sw_cold = 0, sw_warm = 0;
  for (int r = 0; r < (n > 1024 ? 1 : 2); ++r) {
    CK(cudaMemcpy(B, A1, sizeof(T) * nn, cudaMemcpyDeviceToDevice));
    tm.start();
    sw_cold = S.syevj(B, wj, &res_cold);
    tj.push_back(tm.stop());
  }
  root<T>(B, wj, eps, n, tmp, R2);
  const double err_cold = rel_diff(R2, R1, long(nn));
  // Warm Jacobi: B = Q0^T A1 Q0, eigh(B) = U, V = Q0 U.
  for (int r = 0; r < 3; ++r) {
    tm.start();
    gemm<T>(CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, A1, n, Q0, n, T(0), tmp, n);
    gemm<T>(CUBLAS_OP_T, CUBLAS_OP_N, n, n, n, Q0, n, tmp, n, T(0), B, n);
    sw_warm = S.syevj(B, wj, &res_warm);
    gemm<T>(CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, Q0, n, B, n, T(0), V, n);
    tw.push_back(tm.stop());
  }
  root<T>(V, wj, eps, n, tmp, R2);
  const double err_warm = rel_diff(R2, R1, long(nn));
  const double ew = rel_diff(wj, w1, n);
  std::sort(td.begin(), td.end());
  std::sort(tj.begin(), tj.end());
  std::sort(tw.begin(), tw.end());
  char line[1024];
  std::snprintf(line, sizeof line,
                "{\"n\": %d, \"k\": %d, \"prec\": \"%s\", \"drift\": \"%s\", \"later\": %d, \"tol\": %g, "
                "\"syevd_ms\": %.2f, \"jacobi_cold_ms\": %.2f, \"sweeps_cold\": %d, \"root_err_cold\": %.3g, "
                "\"jacobi_warm_ms\": %.2f, \"sweeps_warm\": %d, \"residual_warm\": %.3g, \"root_err_warm\": %.3g, "
                "\"eig_err_warm\": %.3g}",
                n, k, Tr<T>::name(), drift, later, tol, td[td.size() / 2], tj[tj.size() / 2], sw_cold, err_cold,
                tw[tw.size() / 2], sw_warm, res_warm, err_warm, ew);
  std::printf("%s\n", line);
  std::fflush(stdout);
  rows.push_back(line);
  for (T *p : {G, A0, A1, Q0, B, V, tmp, R1, R2, w0, w1, wj}) CK(cudaFree(p));
}

int main(int argc, char **argv) {
  CK(cublasCreate(&blas));
  CK(cusolverDnCreate(&sol));
  CK(cublasSetMathMode(blas, CUBLAS_DEFAULT_MATH)); // no TF32: the factors need fp32 products
  const int ns[] = {768, 2304, 3072};
  for (int n : ns)
    for (const char *drift : {"fixed", "corr", "indep"})
      for (int later : {1, 10}) {
        if (std::string(drift) == "fixed" && later == 10) continue;
        run_case<float>(n, 768, drift, later, 0.0 /* default: machine eps */, 100);
      }
  // Looser tolerances and fp64 at one size.
  for (double tol : {1e-6, 1e-4}) run_case<float>(3072, 768, "corr", 1, tol, 100);
  run_case<double>(3072, 768, "corr", 1, 0.0, 100);
  run_case<double>(768, 768, "corr", 1, 0.0, 100);
  if (argc > 1) write_json_rows(argv[1], rows);
  return 0;
}
