// Can Shampoo's per-step fp32 products run on the tensor cores at fp32 accuracy? GPT-2 small's
// Shampoo blocks (12 each of 768 x 2304, 768 x 768, 768 x 3072, 3072 x 768) need per step
// L = G G^T, R = G^T G and D = Lr G Rr. Timed four ways over all four groups, CUDA events
// around the whole set, medians of 7 (each product alone: of 5):
//   sgemm  cublasSgemmStridedBatched (what the runtime runs now: SIMT fp32);
//   3xtf32 each operand split X = hi + lo (hi rounded to TF32's 10 mantissa bits, lo = X - hi
//          exact), A B ~ hi hi + hi lo + lo hi on TF32 tensor cores (three GEMMs accumulating
//          into C; the Gram in two: hi hi^T and M = hi lo^T, S = C + M + M^T);
//   tf32   one TF32 GEMM (the accuracy 3xtf32 repairs);
//   syrk   the Grams as cublasSsyrk per matrix (upper triangle, half the FLOPs) and a mirror,
//          the other products as sgemm.
// Errors: relative Frobenius distance to a DGEMM of the same fp32 inputs, per product.
//   nvcc -O2 -arch=sm_90 bench/gpu/f32_products_bench.cu -lcublas -o /tmp/fpb && /tmp/fpb out.json
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "bench_check.h"

__global__ void split_kernel(const float *x, float *hi, float *lo, size_t n) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    const float a = x[i];
    float h = __uint_as_float((__float_as_uint(a) + 0x1000u) & 0xffffe000u);
    if (!isfinite(h)) h = __uint_as_float(__float_as_uint(a) & 0xffffe000u);
    hi[i] = h, lo[i] = a - h;
  }
}
// S = C + M + M^T for column-major n x n matrices (batch via blockIdx.z).
__global__ void sym_kernel(float *C, const float *M, int n, size_t stride) {
  const size_t b = blockIdx.z;
  const int i = blockIdx.y * 32 + threadIdx.y, j = blockIdx.x * 32 + threadIdx.x;
  if (i >= n || j >= n) return;
  C[b * stride + size_t(j) * n + i] += M[b * stride + size_t(j) * n + i] + M[b * stride + size_t(i) * n + j];
}
__global__ void to_double(const float *x, double *y, size_t n) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) y[i] = x[i];
}

struct Prod { // column-major C (m x n) = op(A) op(B), batch, strides
  cublasOperation_t ta, tb;
  int m, n, k, lda, ldb, ldc;
  long long sa, sb, sc;
  int batch;
  const float *A, *B;
  float *C;
  bool gram; // B is A (op swapped): the symmetric two-GEMM form
};

static cublasHandle_t h;
static float *ws_a_hi, *ws_a_lo, *ws_b_hi, *ws_b_lo, *ws_m;

static void split(const float *x, size_t n, float *hi, float *lo) {
  split_kernel<<<1024, 256>>>(x, hi, lo, n);
}
static size_t elems(int rows, int cols, int batch) { return size_t(rows) * cols * batch; }

// Lower triangle of each column-major n x n C := its upper triangle, transposed.
__global__ void mirror_kernel(float *C, int n, size_t stride) {
  const size_t b = blockIdx.z;
  const int i = blockIdx.y * 32 + threadIdx.y, j = blockIdx.x * 32 + threadIdx.x;
  if (i >= n || j >= n || i <= j) return;
  C[b * stride + size_t(j) * n + i] = C[b * stride + size_t(i) * n + j];
}

static void run(const Prod &p, int mode) {
  const float one = 1.f, zero = 0.f;
  if (mode == 3 && p.gram) {
    for (int b = 0; b < p.batch; ++b)
      CK(cublasSsyrk(h, CUBLAS_FILL_MODE_UPPER, p.ta, p.m, p.k, &one, p.A + b * p.sa, p.lda, &zero, p.C + b * p.sc,
                     p.ldc));
    mirror_kernel<<<dim3((p.m + 31) / 32, (p.m + 31) / 32, p.batch), dim3(32, 32)>>>(p.C, p.m, size_t(p.sc));
    return;
  }
  if (mode == 0 || mode == 3) {
    CK(cublasSgemmStridedBatched(h, p.ta, p.tb, p.m, p.n, p.k, &one, p.A, p.lda, p.sa, p.B, p.ldb, p.sb, &zero, p.C,
                                 p.ldc, p.sc, p.batch));
    return;
  }
  auto tgemm = [&](const float *A, const float *B, float beta, float *C) {
    CK(cublasGemmStridedBatchedEx(h, p.ta, p.tb, p.m, p.n, p.k, &one, A, CUDA_R_32F, p.lda, p.sa, B, CUDA_R_32F,
                                  p.ldb, p.sb, &beta, C, CUDA_R_32F, p.ldc, p.sc, p.batch,
                                  CUBLAS_COMPUTE_32F_FAST_TF32, CUBLAS_GEMM_DEFAULT));
  };
  if (mode == 2) {
    tgemm(p.A, p.B, 0.f, p.C);
    return;
  }
  const size_t na = size_t(p.sa) * p.batch, nb = size_t(p.sb) * p.batch;
  split(p.A, na, ws_a_hi, ws_a_lo);
  if (p.gram) {
    tgemm(ws_a_hi, ws_a_hi, 0.f, p.C);
    tgemm(ws_a_hi, ws_a_lo, 0.f, ws_m);
    sym_kernel<<<dim3((p.m + 31) / 32, (p.m + 31) / 32, p.batch), dim3(32, 32)>>>(p.C, ws_m, p.m, size_t(p.sc));
    return;
  }
  split(p.B, nb, ws_b_hi, ws_b_lo);
  tgemm(ws_a_lo, ws_b_hi, 0.f, p.C);
  tgemm(ws_a_hi, ws_b_lo, 1.f, p.C);
  tgemm(ws_a_hi, ws_b_hi, 1.f, p.C);
}

// Relative Frobenius error of C against a DGEMM of A, B (as doubles).
static double error(const Prod &p, double *dA, double *dB, double *dC) {
  const size_t na = size_t(p.sa) * p.batch, nb = size_t(p.sb) * p.batch, nc = size_t(p.sc) * p.batch;
  to_double<<<1024, 256>>>(p.A, dA, na);
  to_double<<<1024, 256>>>(p.B, dB, nb);
  const double one = 1, zero = 0;
  CK(cublasDgemmStridedBatched(h, p.ta, p.tb, p.m, p.n, p.k, &one, dA, p.lda, p.sa, dB, p.ldb, p.sb, &zero, dC, p.ldc,
                               p.sc, p.batch));
  std::vector<double> ref(nc);
  std::vector<float> got(nc);
  CK(cudaMemcpy(ref.data(), dC, nc * 8, cudaMemcpyDeviceToHost));
  CK(cudaMemcpy(got.data(), p.C, nc * 4, cudaMemcpyDeviceToHost));
  double num = 0, den = 0;
  for (size_t i = 0; i < nc; ++i) num += (got[i] - ref[i]) * (got[i] - ref[i]), den += ref[i] * ref[i];
  return std::sqrt(num / den);
}

int main(int argc, char **argv) {
  CK(cublasCreate(&h));
  struct Shape { int batch, m, n; };
  const Shape shapes[] = {{12, 768, 2304}, {12, 768, 768}, {12, 768, 3072}, {12, 3072, 768}};
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<Prod> prods;
  std::vector<std::string> kinds;
  std::vector<void *> owned;
  size_t maxe = 0;
  auto dev = [&](size_t n, bool fill) {
    float *p;
    CK(cudaMalloc(&p, n * 4));
    owned.push_back(p);
    if (fill) {
      std::vector<float> v(n);
      for (auto &x : v) x = nd(rng);
      CK(cudaMemcpy(p, v.data(), n * 4, cudaMemcpyHostToDevice));
    }
    maxe = std::max(maxe, n);
    return p;
  };
  for (const Shape &s : shapes) {
    // Row-major G (m x n) is column-major G^T (n x m, ld n).
    const int m = s.m, n = s.n, B = s.batch;
    float *G = dev(elems(m, n, B), true), *L = dev(elems(m, m, B), false), *R = dev(elems(n, n, B), false);
    float *Lr = dev(elems(m, m, B), true), *Rr = dev(elems(n, n, B), true), *T = dev(elems(m, n, B), false),
          *D = dev(elems(m, n, B), false);
    const long long smn = (long long)m * n, smm = (long long)m * m, snn = (long long)n * n;
    // Row-major L = G G^T: column-major L = (G^T)^T (G^T) with G^T n x m: op(A) = T, op(B) = N.
    prods.push_back({CUBLAS_OP_T, CUBLAS_OP_N, m, m, n, n, n, m, smn, smn, smm, B, G, G, L, true});
    kinds.push_back("gram L");
    // Row-major R = G^T G: column-major R = G^T (G^T)^T: op(A) = N, op(B) = T.
    prods.push_back({CUBLAS_OP_N, CUBLAS_OP_T, n, n, m, n, n, n, smn, smn, snn, B, G, G, R, true});
    kinds.push_back("gram R");
    // Row-major T = Lr G: column-major T^T = G^T Lr^T.
    prods.push_back({CUBLAS_OP_N, CUBLAS_OP_N, n, m, m, n, m, n, smn, smm, smn, B, G, Lr, T, false});
    kinds.push_back("apply L");
    // Row-major D = T Rr: column-major D^T = Rr^T T^T.
    prods.push_back({CUBLAS_OP_N, CUBLAS_OP_N, n, m, n, n, n, n, snn, smn, smn, B, Rr, T, D, false});
    kinds.push_back("apply R");
  }
  CK(cudaMalloc(&ws_a_hi, maxe * 4));
  CK(cudaMalloc(&ws_a_lo, maxe * 4));
  CK(cudaMalloc(&ws_b_hi, maxe * 4));
  CK(cudaMalloc(&ws_b_lo, maxe * 4));
  CK(cudaMalloc(&ws_m, maxe * 4));
  double *dA, *dB, *dC;
  CK(cudaMalloc(&dA, maxe * 8));
  CK(cudaMalloc(&dB, maxe * 8));
  CK(cudaMalloc(&dC, maxe * 8));
  const char *names[] = {"sgemm", "3xtf32", "tf32", "syrk"};
  std::vector<std::string> rows;
  cudaEvent_t e0, e1;
  CK(cudaEventCreate(&e0));
  CK(cudaEventCreate(&e1));
  // Median over `reps` of CUDA-event timings of fn() (after one warm-up call).
  auto median_ms = [&](int reps, const auto &fn) {
    fn();
    CK(cudaDeviceSynchronize());
    std::vector<float> t;
    for (int r = 0; r < reps; ++r) {
      CK(cudaEventRecord(e0));
      fn();
      CK(cudaEventRecord(e1));
      CK(cudaEventSynchronize(e1));
      float ms;
      CK(cudaEventElapsedTime(&ms, e0, e1));
      t.push_back(ms);
    }
    std::sort(t.begin(), t.end());
    return double(t[t.size() / 2]);
  };
  double base = 0;
  for (int mode : {0, 3, 1, 2}) {
    const double med = median_ms(7, [&] {
      for (auto &p : prods) run(p, mode);
    });
    if (mode == 0) base = med;
    // Per-product time (median of 5) and error.
    for (size_t i = 0; i < prods.size(); ++i) {
      const double ms_i = median_ms(5, [&] { run(prods[i], mode); });
      const double err = error(prods[i], dA, dB, dC);
      const Prod &p = prods[i];
      const double tflops = 2.0 * p.m * p.n * double(p.k) * p.batch / (ms_i * 1e-3) / 1e12;
      std::printf("%-7s %-8s %dx%dx%d b%d: %.3f ms (%.1f TFLOP/s dense-equivalent), rel err %.2e\n", names[mode],
                  kinds[i].c_str(), p.m, p.n, p.k, p.batch, ms_i, tflops, err);
      char buf[400];
      std::snprintf(buf, sizeof buf,
                    "{\"mode\": \"%s\", \"kind\": \"%s\", \"m\": %d, \"n\": %d, \"k\": %d, \"batch\": %d, \"ms\": %.4f, "
                    "\"rel_err\": %.3e}",
                    names[mode], kinds[i].c_str(), p.m, p.n, p.k, p.batch, ms_i, err);
      rows.push_back(buf);
    }
    std::printf("== %s: all four groups' per-step products %.3f ms (%.2fx sgemm)\n", names[mode], med, med / base);
    char buf[200];
    std::snprintf(buf, sizeof buf, "{\"mode\": \"%s\", \"kind\": \"total\", \"ms\": %.4f}", names[mode], med);
    rows.push_back(buf);
  }
  if (argc > 1) write_json_rows(argv[1], rows);
  return 0;
}
