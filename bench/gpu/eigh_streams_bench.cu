// Does running Shampoo's eigensolves side by side pay? GPT-2 small's banked refresh is three
// XsyevBatched calls one after another (24 x 3072, 12 x 2304, 60 x 768); here they also run on
// three streams at once (one cuSOLVER handle and workspace each), the 3072 bank also as 2 x 12
// and 4 x 6 side by side, and one Xsyevd per matrix spread over 1, 4 or 8 streams. Factors:
// G G^T / k + 1e-6 I with G n x n Gaussian. Medians of 3, CUDA events around the whole case.
//   nvcc -O2 -arch=sm_90 bench/gpu/eigh_streams_bench.cu -lcusolver -lcublas -o /tmp/esb && /tmp/esb out.json
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cusolverDn.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "bench_check.h"

// One batch of n x n factors with its own stream, cuSOLVER handle and workspace.
struct Job {
  int n, batch;
  bool dbl, per_matrix;
  cudaStream_t s;
  cusolverDnHandle_t h;
  cusolverDnParams_t p;
  void *A0, *A, *W, *work, *hwork;
  size_t dbytes = 0, hbytes = 0;
  int *info;
  size_t es() const { return dbl ? 8 : 4; }
  cudaDataType t() const { return dbl ? CUDA_R_64F : CUDA_R_32F; }
  Job(int n, int batch, bool dbl, bool per_matrix, const void *src) : n(n), batch(batch), dbl(dbl), per_matrix(per_matrix) {
    CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    CK(cusolverDnCreate(&h));
    CK(cusolverDnSetStream(h, s));
    CK(cusolverDnCreateParams(&p));
    const size_t nn = size_t(n) * n;
    CK(cudaMalloc(&A0, nn * batch * es()));
    CK(cudaMalloc(&A, nn * batch * es()));
    CK(cudaMalloc(&W, size_t(n) * batch * es()));
    CK(cudaMalloc(&info, sizeof(int) * batch));
    for (int b = 0; b < batch; ++b) CK(cudaMemcpy((char *)A0 + b * nn * es(), src, nn * es(), cudaMemcpyDeviceToDevice));
    if (per_matrix)
      CK(cusolverDnXsyevd_bufferSize(h, p, CUSOLVER_EIG_MODE_VECTOR, CUBLAS_FILL_MODE_UPPER, n, t(), A, n, t(), W,
                                     t(), &dbytes, &hbytes));
    else
      CK(cusolverDnXsyevBatched_bufferSize(h, p, CUSOLVER_EIG_MODE_VECTOR, CUBLAS_FILL_MODE_UPPER, n, t(), A, n, t(),
                                           W, t(), &dbytes, &hbytes, batch));
    CK(cudaMalloc(&work, std::max<size_t>(dbytes, 1)));
    hwork = std::malloc(std::max<size_t>(hbytes, 1));
  }
  ~Job() {
    cudaFree(A0), cudaFree(A), cudaFree(W), cudaFree(work), cudaFree(info), std::free(hwork);
    cusolverDnDestroyParams(p), cusolverDnDestroy(h), cudaStreamDestroy(s);
  }
  void reset() { CK(cudaMemcpyAsync(A, A0, size_t(n) * n * batch * es(), cudaMemcpyDeviceToDevice, s)); }
  void solve() {
    if (!per_matrix) {
      CK(cusolverDnXsyevBatched(h, p, CUSOLVER_EIG_MODE_VECTOR, CUBLAS_FILL_MODE_UPPER, n, t(), A, n, t(), W, t(),
                                work, dbytes, hbytes ? hwork : nullptr, hbytes, info, batch));
      return;
    }
    const size_t nn = size_t(n) * n;
    for (int b = 0; b < batch; ++b)
      CK(cusolverDnXsyevd(h, p, CUSOLVER_EIG_MODE_VECTOR, CUBLAS_FILL_MODE_UPPER, n, t(), (char *)A + b * nn * es(), n,
                          t(), (char *)W + size_t(b) * n * es(), t(), work, dbytes, hbytes ? hwork : nullptr, hbytes,
                          info + b));
  }
};

// Factor G G^T / n + 1e-6 I in T, n x n, on the device.
static void *factor(int n, bool dbl) {
  std::mt19937 rng(7 + n);
  std::normal_distribution<double> N(0.0, 1.0);
  const size_t nn = size_t(n) * n;
  cublasHandle_t b;
  CK(cublasCreate(&b));
  void *G, *A;
  CK(cudaMalloc(&G, nn * 8));
  CK(cudaMalloc(&A, nn * 8));
  std::vector<double> h(nn);
  for (auto &x : h) x = N(rng);
  std::vector<float> hf(h.begin(), h.end());
  if (dbl) CK(cudaMemcpy(G, h.data(), nn * 8, cudaMemcpyHostToDevice));
  else CK(cudaMemcpy(G, hf.data(), nn * 4, cudaMemcpyHostToDevice));
  const double one = 1.0 / n, zero = 0;
  const float onef = 1.0f / n, zerof = 0;
  if (dbl) CK(cublasDgemm(b, CUBLAS_OP_N, CUBLAS_OP_T, n, n, n, &one, (double *)G, n, (double *)G, n, &zero, (double *)A, n));
  else CK(cublasSgemm(b, CUBLAS_OP_N, CUBLAS_OP_T, n, n, n, &onef, (float *)G, n, (float *)G, n, &zerof, (float *)A, n));
  CK(cudaDeviceSynchronize());
  CK(cudaFree(G));
  cublasDestroy(b);
  return A;
}

static std::vector<std::string> rows;

// Times the jobs: all reset, then each solved on its stream; the clock runs from a fork event on
// the main stream to the join of every job's stream. serial = one after another on one stream.
static void time_case(const std::string &name, std::vector<Job *> jobs, bool serial) {
  cudaEvent_t a, b;
  CK(cudaEventCreate(&a));
  CK(cudaEventCreate(&b));
  std::vector<cudaEvent_t> done(jobs.size());
  for (auto &e : done) CK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  std::vector<float> t;
  for (int r = 0; r < 4 && !serial; ++r) {
    for (Job *j : jobs) j->reset();
    CK(cudaDeviceSynchronize());
    CK(cudaEventRecord(a, nullptr));
    for (Job *j : jobs) CK(cudaStreamWaitEvent(j->s, a));
    for (Job *j : jobs) j->solve();
    for (size_t i = 0; i < jobs.size(); ++i) {
      CK(cudaEventRecord(done[i], jobs[i]->s));
      CK(cudaStreamWaitEvent(nullptr, done[i]));
    }
    CK(cudaEventRecord(b, nullptr));
    CK(cudaEventSynchronize(b));
    float ms = 0;
    CK(cudaEventElapsedTime(&ms, a, b));
    t.push_back(ms);
  }
  // Serial: the jobs chained through events, timed on the first job's stream.
  if (serial) {
    t.clear();
    for (int r = 0; r < 4; ++r) {
      for (Job *j : jobs) j->reset();
      CK(cudaDeviceSynchronize());
      cudaEvent_t s0, s1;
      CK(cudaEventCreate(&s0));
      CK(cudaEventCreate(&s1));
      CK(cudaEventRecord(s0, jobs[0]->s));
      for (Job *j : jobs) {
        if (j != jobs[0]) {
          CK(cudaEventRecord(done[0], jobs[0]->s));
          CK(cudaStreamWaitEvent(j->s, done[0]));
        }
        j->solve();
        CK(cudaEventRecord(done[0], j->s));
        CK(cudaStreamWaitEvent(jobs[0]->s, done[0]));
      }
      CK(cudaEventRecord(s1, jobs[0]->s));
      CK(cudaEventSynchronize(s1));
      float ms = 0;
      CK(cudaEventElapsedTime(&ms, s0, s1));
      t.push_back(ms);
    }
  }
  t.erase(t.begin()); // first: warm-up
  std::sort(t.begin(), t.end());
  char line[512];
  std::snprintf(line, sizeof line, "{\"case\": \"%s\", \"mode\": \"%s\", \"ms\": %.1f, \"min_ms\": %.1f, \"max_ms\": %.1f}",
                name.c_str(), serial ? "serial" : "streams", t[t.size() / 2], t.front(), t.back());
  std::printf("%s\n", line);
  std::fflush(stdout);
  rows.push_back(line);
}

int main(int argc, char **argv) {
  for (bool dbl : {false, true}) {
    const char *pr = dbl ? "f64" : "f32";
    void *f768 = factor(768, dbl), *f2304 = factor(2304, dbl), *f3072 = factor(3072, dbl);
    {
      Job j3(3072, 24, dbl, false, f3072), j2(2304, 12, dbl, false, f2304), j7(768, 60, dbl, false, f768);
      time_case(std::string(pr) + " gpt2 banks (24x3072, 12x2304, 60x768)", {&j3, &j2, &j7}, true);
      time_case(std::string(pr) + " gpt2 banks (24x3072, 12x2304, 60x768)", {&j3, &j2, &j7}, false);
      time_case(std::string(pr) + " 24x3072", {&j3}, true);
    }
    {
      Job a(3072, 12, dbl, false, f3072), b(3072, 12, dbl, false, f3072);
      time_case(std::string(pr) + " 3072: 2 x 12", {&a, &b}, false);
    }
    {
      Job a(3072, 6, dbl, false, f3072), b(3072, 6, dbl, false, f3072), c(3072, 6, dbl, false, f3072),
          d(3072, 6, dbl, false, f3072);
      time_case(std::string(pr) + " 3072: 4 x 6", {&a, &b, &c, &d}, false);
    }
    if (!dbl) {
      for (int streams : {1, 4, 8}) {
        std::vector<Job *> js;
        for (int i = 0; i < streams; ++i) js.push_back(new Job(3072, 24 / streams, dbl, true, f3072));
        time_case(std::string(pr) + " 3072: 24 per-matrix over " + std::to_string(streams) + " streams", js, false);
        for (Job *j : js) delete j;
      }
    }
    cudaFree(f768), cudaFree(f2304), cudaFree(f3072);
  }
  if (argc > 1) write_json_rows(argv[1], rows);
  return 0;
}
