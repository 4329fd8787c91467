// Can Shampoo's eigensolves be split into cuSOLVER's tridiagonalization (sytrd), a tridiagonal
// solver of our own and cuSOLVER's back-transformation (ormtr), with the two cuSOLVER stages
// running one matrix per stream side by side? Times, for GPT-2 small's banks (24 x 3072,
// 12 x 2304, 60 x 768), XsyevBatched (today's path) against sytrd and ormtr alone, one matrix
// per call spread over 1, 4, 8 or `batch` streams (a handle and workspace each), and the host
// time of enqueuing them (a stage that blocks the host cannot overlap). Factors
// G G^T / n + 1e-6 I. Medians of 3 after a warm-up, CUDA events around the whole case.
//   nvcc -O2 -arch=sm_90 bench/gpu/sytrd_bench.cu -lcusolver -lcublas -o /tmp/stb && /tmp/stb out.json
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cusolverDn.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "bench_check.h"

static std::vector<std::string> rows;

template <class T> static T *factor(int n) {
  std::mt19937 rng(7 + n);
  std::normal_distribution<double> N(0.0, 1.0);
  const size_t nn = size_t(n) * n;
  std::vector<double> g(nn), a(nn, 0.0);
  for (auto &x : g) x = N(rng);
  // A = G G^T / n + 1e-6 I on the host in double (n <= 3072: a few seconds at -O2).
  cublasHandle_t h;
  CK(cublasCreate(&h));
  double *dg, *da;
  CK(cudaMalloc(&dg, nn * 8));
  CK(cudaMalloc(&da, nn * 8));
  CK(cudaMemcpy(dg, g.data(), nn * 8, cudaMemcpyHostToDevice));
  const double alpha = 1.0 / n, beta = 0;
  CK(cublasDgemm(h, CUBLAS_OP_N, CUBLAS_OP_T, n, n, n, &alpha, dg, n, dg, n, &beta, da, n));
  CK(cudaMemcpy(a.data(), da, nn * 8, cudaMemcpyDeviceToHost));
  for (int i = 0; i < n; ++i) a[size_t(i) * n + i] += 1e-6;
  std::vector<T> t(a.begin(), a.end());
  T *out;
  CK(cudaMalloc(&out, nn * sizeof(T)));
  CK(cudaMemcpy(out, t.data(), nn * sizeof(T), cudaMemcpyHostToDevice));
  cudaFree(dg), cudaFree(da), cublasDestroy(h);
  return out;
}

template <class T> struct Lane {
  cudaStream_t s;
  cusolverDnHandle_t h;
  T *work;
  int lwork = 0;
};

template <class T> static cusolverStatus_t sytrd(cusolverDnHandle_t h, int n, T *A, T *d, T *e, T *tau, T *w, int lw, int *info) {
  if constexpr (sizeof(T) == 4) return cusolverDnSsytrd(h, CUBLAS_FILL_MODE_LOWER, n, A, n, d, e, tau, w, lw, info);
  else return cusolverDnDsytrd(h, CUBLAS_FILL_MODE_LOWER, n, A, n, d, e, tau, w, lw, info);
}
template <class T> static cusolverStatus_t ormtr(cusolverDnHandle_t h, int n, const T *A, const T *tau, T *C, T *w, int lw, int *info) {
  if constexpr (sizeof(T) == 4)
    return cusolverDnSormtr(h, CUBLAS_SIDE_LEFT, CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_N, n, n, (T *)A, n, (T *)tau, C, n, w, lw, info);
  else
    return cusolverDnDormtr(h, CUBLAS_SIDE_LEFT, CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_N, n, n, (T *)A, n, (T *)tau, C, n, w, lw, info);
}

template <class T> static void run_bank(int n, int batch) {
  const char *pr = sizeof(T) == 4 ? "f32" : "f64";
  const size_t nn = size_t(n) * n;
  T *f = factor<T>(n);
  T *A0, *A, *C, *d, *e, *tau, *W;
  int *info;
  CK(cudaMalloc(&A0, nn * batch * sizeof(T)));
  CK(cudaMalloc(&A, nn * batch * sizeof(T)));
  CK(cudaMalloc(&C, nn * batch * sizeof(T)));
  CK(cudaMalloc(&d, size_t(n) * batch * sizeof(T)));
  CK(cudaMalloc(&e, size_t(n) * batch * sizeof(T)));
  CK(cudaMalloc(&tau, size_t(n) * batch * sizeof(T)));
  CK(cudaMalloc(&W, size_t(n) * batch * sizeof(T)));
  CK(cudaMalloc(&info, sizeof(int) * batch));
  for (int b = 0; b < batch; ++b) CK(cudaMemcpy(A0 + b * nn, f, nn * sizeof(T), cudaMemcpyDeviceToDevice));
  cudaEvent_t t0, t1;
  CK(cudaEventCreate(&t0));
  CK(cudaEventCreate(&t1));
  auto record = [&](const std::string &stage, int streams, std::vector<float> gpu, std::vector<double> host) {
    gpu.erase(gpu.begin()), host.erase(host.begin());
    std::sort(gpu.begin(), gpu.end()), std::sort(host.begin(), host.end());
    char line[512];
    std::snprintf(line, sizeof line,
                  "{\"precision\": \"%s\", \"n\": %d, \"batch\": %d, \"stage\": \"%s\", \"streams\": %d, \"ms\": %.2f, "
                  "\"min_ms\": %.2f, \"max_ms\": %.2f, \"host_enqueue_ms\": %.2f}",
                  pr, n, batch, stage.c_str(), streams, gpu[gpu.size() / 2], gpu.front(), gpu.back(), host[host.size() / 2]);
    std::printf("%s\n", line);
    std::fflush(stdout);
    rows.push_back(line);
  };
  // Ends a timed run begun at host time c0 with event t0 on the legacy stream: the host's
  // enqueue time and the GPU time (t0 to t1) appended.
  auto stop = [&](std::chrono::steady_clock::time_point c0, std::vector<float> &g, std::vector<double> &hs) {
    CK(cudaEventRecord(t1, nullptr));
    hs.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - c0).count());
    CK(cudaEventSynchronize(t1));
    float ms;
    CK(cudaEventElapsedTime(&ms, t0, t1));
    g.push_back(ms);
  };
  // Today's path: one XsyevBatched call.
  {
    cusolverDnHandle_t h;
    cusolverDnParams_t p;
    CK(cusolverDnCreate(&h));
    CK(cusolverDnCreateParams(&p));
    const cudaDataType t = sizeof(T) == 4 ? CUDA_R_32F : CUDA_R_64F;
    size_t db = 0, hb = 0;
    CK(cusolverDnXsyevBatched_bufferSize(h, p, CUSOLVER_EIG_MODE_VECTOR, CUBLAS_FILL_MODE_LOWER, n, t, A, n, t, W, t, &db, &hb, batch));
    void *dw;
    CK(cudaMalloc(&dw, std::max<size_t>(db, 1)));
    std::vector<char> hw(std::max<size_t>(hb, 1));
    std::vector<float> g;
    std::vector<double> hs;
    for (int r = 0; r < 4; ++r) {
      CK(cudaMemcpy(A, A0, nn * batch * sizeof(T), cudaMemcpyDeviceToDevice));
      CK(cudaDeviceSynchronize());
      const auto c0 = std::chrono::steady_clock::now();
      CK(cudaEventRecord(t0, nullptr));
      CK(cusolverDnXsyevBatched(h, p, CUSOLVER_EIG_MODE_VECTOR, CUBLAS_FILL_MODE_LOWER, n, t, A, n, t, W, t, dw, db,
                                hb ? hw.data() : nullptr, hb, info, batch));
      stop(c0, g, hs);
    }
    record("xsyevbatched", 1, g, hs);
    cudaFree(dw), cusolverDnDestroyParams(p), cusolverDnDestroy(h);
  }
  std::vector<int> counts = {1, 4, 8};
  if (batch > 8) counts.push_back(batch);
  for (int S : counts) {
    std::vector<Lane<T>> lanes(S);
    std::vector<cudaEvent_t> done(S);
    for (int i = 0; i < S; ++i) {
      auto &l = lanes[i];
      CK(cudaStreamCreateWithFlags(&l.s, cudaStreamNonBlocking));
      CK(cusolverDnCreate(&l.h));
      CK(cusolverDnSetStream(l.h, l.s));
      int a = 0, b = 0;
      if constexpr (sizeof(T) == 4) {
        CK(cusolverDnSsytrd_bufferSize(l.h, CUBLAS_FILL_MODE_LOWER, n, A, n, d, e, tau, &a));
        CK(cusolverDnSormtr_bufferSize(l.h, CUBLAS_SIDE_LEFT, CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_N, n, n, A, n, tau, C, n, &b));
      } else {
        CK(cusolverDnDsytrd_bufferSize(l.h, CUBLAS_FILL_MODE_LOWER, n, A, n, d, e, tau, &a));
        CK(cusolverDnDormtr_bufferSize(l.h, CUBLAS_SIDE_LEFT, CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_N, n, n, A, n, tau, C, n, &b));
      }
      l.lwork = std::max(a, b);
      CK(cudaMalloc(&l.work, size_t(std::max(l.lwork, 1)) * sizeof(T)));
      CK(cudaEventCreateWithFlags(&done[i], cudaEventDisableTiming));
    }
    for (int stage = 0; stage < 2; ++stage) {
      std::vector<float> g;
      std::vector<double> hs;
      for (int r = 0; r < 4; ++r) {
        if (stage == 0) CK(cudaMemcpy(A, A0, nn * batch * sizeof(T), cudaMemcpyDeviceToDevice));
        else CK(cudaMemcpy(C, A0, nn * batch * sizeof(T), cudaMemcpyDeviceToDevice));
        CK(cudaDeviceSynchronize());
        const auto c0 = std::chrono::steady_clock::now();
        CK(cudaEventRecord(t0, nullptr));
        for (auto &l : lanes) CK(cudaStreamWaitEvent(l.s, t0));
        for (int b = 0; b < batch; ++b) {
          auto &l = lanes[b % S];
          if (stage == 0) CK(sytrd<T>(l.h, n, A + b * nn, d + b * n, e + b * n, tau + b * n, l.work, l.lwork, info + b));
          else CK(ormtr<T>(l.h, n, A + b * nn, tau + b * n, C + b * nn, l.work, l.lwork, info + b));
        }
        for (int i = 0; i < S; ++i) {
          CK(cudaEventRecord(done[i], lanes[i].s));
          CK(cudaStreamWaitEvent(nullptr, done[i]));
        }
        stop(c0, g, hs);
      }
      record(stage == 0 ? "sytrd" : "ormtr", S, g, hs);
    }
    for (auto &l : lanes) cudaFree(l.work), cusolverDnDestroy(l.h), cudaStreamDestroy(l.s);
    for (auto &ev : done) cudaEventDestroy(ev);
  }
  cudaFree(f), cudaFree(A0), cudaFree(A), cudaFree(C), cudaFree(d), cudaFree(e), cudaFree(tau), cudaFree(W), cudaFree(info);
}

int main(int argc, char **argv) {
  run_bank<float>(768, 60);
  run_bank<float>(2304, 12);
  run_bank<float>(3072, 24);
  run_bank<double>(3072, 24);
  if (argc > 1) write_json_rows(argv[1], rows);
  return 0;
}
