// Is a matrix's batched eigendecomposition the same bits whatever batch it is solved in? (A
// distributed rank solves its own blocks' factors, a single process all of them.) For n = 96,
// 768 and 3072, fp32 and fp64: matrix 0 solved by XsyevBatched alone (batch 1), in a batch of
// 3 and in the batch of B, and by one Xsyevd: bitwise equal or the largest difference of
// eigenvectors (sign fixed) and eigenvalues; time of the batch of B both ways (median of 3, 2
// at n = 3072). Factors G G^T / n + 1e-6 I.
//   nvcc -O2 -arch=sm_90 bench/gpu/eigh_alg_bench.cu -lcusolver -lcublas -o /tmp/eab && /tmp/eab out.json
#include "bench_check.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cusolverDn.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

static cusolverDnHandle_t sol;
static std::vector<std::string> rows;

// B different factors of side n (T: float or double), packed.
template <class T> static std::vector<T> factors(int n, int B) {
  std::mt19937 rng(11 + n);
  std::normal_distribution<double> N(0.0, 1.0);
  const size_t nn = size_t(n) * n;
  std::vector<T> out(nn * B);
  cublasHandle_t b;
  CK(cublasCreate(&b));
  double *G, *A;
  CK(cudaMalloc(&G, nn * 8));
  CK(cudaMalloc(&A, nn * 8));
  std::vector<double> h(nn), a(nn);
  for (int k = 0; k < B; ++k) {
    for (auto &x : h) x = N(rng);
    CK(cudaMemcpy(G, h.data(), nn * 8, cudaMemcpyHostToDevice));
    const double alpha = 1.0 / n, zero = 0;
    CK(cublasDgemm(b, CUBLAS_OP_N, CUBLAS_OP_T, n, n, n, &alpha, G, n, G, n, &zero, A, n));
    CK(cudaMemcpy(a.data(), A, nn * 8, cudaMemcpyDeviceToHost));
    for (size_t i = 0; i < nn; ++i) out[k * nn + i] = T(a[i] + (i % (n + 1) == 0 ? 1e-6 : 0.0));
  }
  cudaFree(G), cudaFree(A), cublasDestroy(b);
  return out;
}

template <class T> struct Result {
  std::vector<T> V, W; // matrix 0's eigenvectors (column-major) and eigenvalues
  float ms = 0;
};

// Solves the first `batch` factors; `alg` < 0: one Xsyevd per matrix.
template <class T> static Result<T> solve(const std::vector<T> &F, int n, int batch, int alg, int reps) {
  const cudaDataType t = sizeof(T) == 8 ? CUDA_R_64F : CUDA_R_32F;
  const size_t nn = size_t(n) * n;
  cusolverDnParams_t p;
  CK(cusolverDnCreateParams(&p));
  // (cusolverDnSetAdvOptions(CUSOLVERDN_SYEVBATCHED, CUSOLVER_ALG_0 or _1) is refused with
  // status 3 on an H200 with CUDA 13: only the default algorithm is measured.)
  T *A, *W;
  int *info;
  CK(cudaMalloc(&A, nn * batch * sizeof(T)));
  CK(cudaMalloc(&W, size_t(n) * batch * sizeof(T)));
  CK(cudaMalloc(&info, sizeof(int) * batch));
  size_t db = 0, hb = 0;
  if (alg >= 0)
    CK(cusolverDnXsyevBatched_bufferSize(sol, p, CUSOLVER_EIG_MODE_VECTOR, CUBLAS_FILL_MODE_UPPER, n, t, A, n, t, W,
                                         t, &db, &hb, batch));
  else
    CK(cusolverDnXsyevd_bufferSize(sol, p, CUSOLVER_EIG_MODE_VECTOR, CUBLAS_FILL_MODE_UPPER, n, t, A, n, t, W, t, &db,
                                   &hb));
  void *dw;
  CK(cudaMalloc(&dw, std::max<size_t>(db, 1)));
  std::vector<char> hw(std::max<size_t>(hb, 1));
  cudaEvent_t e0, e1;
  CK(cudaEventCreate(&e0));
  CK(cudaEventCreate(&e1));
  std::vector<float> ts;
  for (int r = 0; r < reps; ++r) {
    CK(cudaMemcpy(A, F.data(), nn * batch * sizeof(T), cudaMemcpyHostToDevice));
    CK(cudaEventRecord(e0));
    if (alg >= 0)
      CK(cusolverDnXsyevBatched(sol, p, CUSOLVER_EIG_MODE_VECTOR, CUBLAS_FILL_MODE_UPPER, n, t, A, n, t, W, t, dw, db,
                                hb ? hw.data() : nullptr, hb, info, batch));
    else
      for (int b = 0; b < batch; ++b)
        CK(cusolverDnXsyevd(sol, p, CUSOLVER_EIG_MODE_VECTOR, CUBLAS_FILL_MODE_UPPER, n, t, A + b * nn, n, t, W + b * n,
                            t, dw, db, hb ? hw.data() : nullptr, hb, info + b));
    CK(cudaEventRecord(e1));
    CK(cudaEventSynchronize(e1));
    float ms;
    CK(cudaEventElapsedTime(&ms, e0, e1));
    ts.push_back(ms);
  }
  std::sort(ts.begin(), ts.end());
  Result<T> r;
  r.ms = ts[ts.size() / 2];
  r.V.resize(nn), r.W.resize(n);
  CK(cudaMemcpy(r.V.data(), A, nn * sizeof(T), cudaMemcpyDeviceToHost));
  CK(cudaMemcpy(r.W.data(), W, n * sizeof(T), cudaMemcpyDeviceToHost));
  cudaFree(A), cudaFree(W), cudaFree(info), cudaFree(dw), cusolverDnDestroyParams(p);
  return r;
}

// "bitwise" or the largest difference (eigenvectors with their sign fixed by the largest entry).
template <class T> static std::string compare(const Result<T> &a, const Result<T> &b, int n) {
  if (std::memcmp(a.V.data(), b.V.data(), a.V.size() * sizeof(T)) == 0 &&
      std::memcmp(a.W.data(), b.W.data(), a.W.size() * sizeof(T)) == 0)
    return "\"bitwise\"";
  double dv = 0, dw = 0;
  for (int j = 0; j < n; ++j) {
    const T *x = &a.V[size_t(j) * n], *y = &b.V[size_t(j) * n];
    int k = 0;
    for (int i = 1; i < n; ++i)
      if (std::fabs(double(x[i])) > std::fabs(double(x[k]))) k = i;
    const double s = (x[k] < 0) == (y[k] < 0) ? 1.0 : -1.0;
    for (int i = 0; i < n; ++i) dv = std::max(dv, std::fabs(double(x[i]) - s * double(y[i])));
    dw = std::max(dw, std::fabs(double(a.W[j]) - double(b.W[j])) / std::max(1e-30, std::fabs(double(b.W[n - 1]))));
  }
  char buf[96];
  std::snprintf(buf, sizeof buf, "{\"vec\": %.3g, \"val\": %.3g}", dv, dw);
  return buf;
}

template <class T> static void run(int n, int B) {
  const char *prec = sizeof(T) == 8 ? "f64" : "f32";
  const std::vector<T> F = factors<T>(n, B);
  const int reps = n > 1024 ? 2 : 3;
  const Result<T> alone = solve<T>(F, n, 1, 0, 1), three = solve<T>(F, n, 3, 0, 1), all = solve<T>(F, n, B, 0, reps);
  const Result<T> per = solve<T>(F, n, B, -1, reps);
  char line[1024];
  std::snprintf(line, sizeof line,
                "{\"n\": %d, \"prec\": \"%s\", \"batch\": %d, \"batched_ms\": %.1f, \"per_matrix_ms\": %.1f, "
                "\"batched: 1 vs B\": %s, \"batched: 3 vs B\": %s, \"per-matrix vs batched (B)\": %s}",
                n, prec, B, all.ms, per.ms, compare(alone, all, n).c_str(), compare(three, all, n).c_str(),
                compare(per, all, n).c_str());
  std::printf("%s\n", line);
  std::fflush(stdout);
  rows.push_back(line);
}

int main(int argc, char **argv) {
  CK(cusolverDnCreate(&sol));
  run<float>(96, 12);
  run<float>(768, 12);
  run<double>(768, 12);
  run<float>(3072, 12);
  run<double>(3072, 12);
  run<float>(768, 60);
  run<float>(3072, 24);
  if (argc > 1) write_json_rows(argv[1], rows);
  return 0;
}
