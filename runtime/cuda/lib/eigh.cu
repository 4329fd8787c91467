// Batched symmetric eigendecomposition (cuSOLVER): Jacobi batched for small sides,
// XsyevBatched above (one Xsyevd per matrix where that is unavailable). EighPlan of matrix.h.
#include "eigh.cuh"
#include "env.h"
#include "sytrd.cuh"
#include "tridiag_solve.cuh"

#include <algorithm>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace symoc::cuda {
namespace detail {

namespace {
template <class T> __global__ void pack_kernel(const float *S, int64_t n, int64_t ld, int64_t stride, T *dst, bool sym) {
  const int64_t b = blockIdx.y, nn = n * n;
  const float *s = S + b * stride;
  T *d = dst + b * nn;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < nn; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = e / n, j = e - i * n;
    d[e] = sym ? T(0.5) * (T(s[i * ld + j]) + T(s[j * ld + i])) : T(s[i * ld + j]);
  }
}
template <class T>
__global__ void unpack_kernel(const T *src, int64_t rows, int64_t cols, float *out, int64_t ld, int64_t stride) {
  const int64_t b = blockIdx.y, total = rows * cols;
  const T *s = src + b * total;
  float *o = out + b * stride;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = e / cols, j = e - i * cols;
    o[i * ld + j] = float(s[e]);
  }
}
template <class T> __global__ void to_float_kernel(const T *src, float *dst, int64_t n) {
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < n; e += int64_t(gridDim.x) * blockDim.x)
    dst[e] = float(src[e]);
}
// Above n = 32, SYMOC_CUDA_EIGH: batched, per-matrix, or unset / auto (Auto: the rule below).
EigMethod env_method() {
  const char *v = std::getenv("SYMOC_CUDA_EIGH");
  const std::string m = v ? v : "";
  if (m.empty() || m == "auto") return EigMethod::Auto;
  if (m == "batched") return EigMethod::Batched;
  if (m == "per-matrix") return EigMethod::PerMatrix;
  if (m == "tridiagonal") return EigMethod::Tridiagonal;
  fail("eigh", "SYMOC_CUDA_EIGH must be auto, batched, per-matrix or tridiagonal, got '" + m + "'");
}
// XsyevBatched's time hardly grows from a batch of 3 to 12 (H200, fp32, docs/benchmarks.md:
// n = 768 53 / 54 ms, 2304 343 / 329, 3072 443 / 551), one Xsyevd per matrix's grows with the
// batch (7.9, 31, 50 ms a matrix): per matrix wins at batches 3 and 6 at every n measured,
// batched at 12, they are close at 8. Small n (not measured; there the batched solver is
// capturable, Xsyevd is not) stays batched.
constexpr int64_t kPerMatrixMaxBatch = 6, kPerMatrixMinN = 768;
// Auto takes symoc's tridiagonal solver for fp32 batches of 7 or more at n >= 512 (H200,
// docs/benchmarks.md, session 26: 12 x 512 0.70x XsyevBatched's time, 60 x 768 0.61x, 12 x 2304
// 0.58x, 24 x 3072 0.67x, rank-deficient factors alike; below n = 512 cuSOLVER's is faster
// (12 x 128: 4.4 vs 0.7 ms, the per-column launches), and at batches of 2 to 6 one Xsyevd per
// matrix is). fp64 stays on cuSOLVER: its clusters (gaps below 1e-4 relative) were not
// measured on rank-deficient factors.
constexpr int64_t kTridiagonalMinN = 512;
unsigned blocks_for(int64_t n) { return unsigned(std::min<int64_t>((n + 255) / 256, 2048)); }
unsigned batch_dim(int64_t b) {
  if (b > 65535) fail("batched matrix kernel", "batch " + std::to_string(b) + " above 65535");
  return unsigned(b);
}
} // namespace

template <class T> void pack_square(const Batch &S, T *dst, bool sym, cudaStream_t s) {
  if (S.rows == 0) return;
  pack_kernel<T><<<dim3(blocks_for(S.rows * S.rows), batch_dim(S.batch)), 256, 0, s>>>(
      S.data, S.rows, S.ld, S.batch > 1 ? S.stride : 0, dst, sym);
  check_launch("pack");
}
template <class T> void unpack(const T *src, const Batch &out, cudaStream_t s) {
  if (out.rows == 0 || out.cols == 0) return;
  unpack_kernel<T><<<dim3(blocks_for(out.rows * out.cols), batch_dim(out.batch)), 256, 0, s>>>(
      src, out.rows, out.cols, out.data, out.ld, out.batch > 1 ? out.stride : 0);
  check_launch("unpack");
}
template <class T> void to_float(const T *src, float *dst, int64_t n, cudaStream_t s) {
  if (n == 0) return;
  to_float_kernel<T><<<blocks_for(n), 256, 0, s>>>(src, dst, n);
  check_launch("to_float");
}
template void pack_square<float>(const Batch &, float *, bool, cudaStream_t);
template void pack_square<double>(const Batch &, double *, bool, cudaStream_t);
template void unpack<float>(const float *, const Batch &, cudaStream_t);
template void unpack<double>(const double *, const Batch &, cudaStream_t);
template void to_float<float>(const float *, float *, int64_t, cudaStream_t);
template void to_float<double>(const double *, float *, int64_t, cudaStream_t);

// The row-major lower triangle of S is the column-major upper triangle: uplo = UPPER reads
// it, and the column-major eigenvectors (columns) are the rows of the row-major result.
EighCore::EighCore(Engine::Impl &e, int64_t n, int64_t batch, bool dbl, EigMethod m)
    : e_(e), n_(n), batch_(batch), dbl_(dbl), method_(m) {
  if (n < 0 || batch < 1) fail("eigh", "invalid shape");
  if (method_ == EigMethod::Auto) method_ = n <= 32 ? EigMethod::Jacobi : env_method();
  if (method_ == EigMethod::Jacobi && n > 32) fail("eigh", "Jacobi batched needs n <= 32, got " + std::to_string(n));
  if (method_ == EigMethod::Auto && !dbl && n >= kTridiagonalMinN && batch > kPerMatrixMaxBatch)
    method_ = EigMethod::Tridiagonal;
  if (method_ == EigMethod::Tridiagonal && n < 2) method_ = EigMethod::Batched; // nothing to reduce
  if (n == 0) return;
  if (method_ == EigMethod::Tridiagonal) {
    if (n > INT_MAX || batch > INT_MAX) fail("eigh", "tridiagonal: shape too large");
    // Each stage's time on stderr (synchronizes: benchmarks only).
    timing_ = symoc::rt::cuda::detail::env_flag("SYMOC_CUDA_EIGH_TIMING", false);
    dev_bytes_ = dbl_ ? tridiagonal_bytes<double>() : tridiagonal_bytes<float>();
    return;
  }
  const auto jobz = CUSOLVER_EIG_MODE_VECTOR;
  const auto uplo = CUBLAS_FILL_MODE_UPPER;
  float *fd = static_cast<float *>(e_.dummy);
  double *dd = static_cast<double *>(e_.dummy);
  if (method_ == EigMethod::Jacobi) {
    if (batch > INT_MAX) fail("eigh", "batch too large");
    check(cusolverDnCreateSyevjInfo(&jac_), "cusolverDnCreateSyevjInfo");
    check(cusolverDnXsyevjSetSortEig(jac_, 1), "cusolverDnXsyevjSetSortEig");
    int lwork = 0;
    if (dbl_)
      check(cusolverDnDsyevjBatched_bufferSize(e_.solver, jobz, uplo, int(n), dd, int(n), dd, &lwork, jac_,
                                               int(batch)),
            "cusolverDnDsyevjBatched_bufferSize");
    else
      check(cusolverDnSsyevjBatched_bufferSize(e_.solver, jobz, uplo, int(n), fd, int(n), fd, &lwork, jac_,
                                               int(batch)),
            "cusolverDnSsyevjBatched_bufferSize");
    dev_bytes_ = size_t(lwork) * (dbl_ ? sizeof(double) : sizeof(float));
    return;
  }
  check(cusolverDnCreateParams(&params_), "cusolverDnCreateParams");
  const cudaDataType t = dbl_ ? CUDA_R_64F : CUDA_R_32F;
  cusolverStatus_t st = method_ == EigMethod::PerMatrix ? CUSOLVER_STATUS_NOT_SUPPORTED :
                        cusolverDnXsyevBatched_bufferSize(e_.solver, params_, jobz, uplo, n, t, e_.dummy, n, t,
                                                          e_.dummy, t, &dev_bytes_, &host_bytes_, batch);
  if (st == CUSOLVER_STATUS_NOT_SUPPORTED) {
    per_matrix_ = true;
    check(cusolverDnXsyevd_bufferSize(e_.solver, params_, jobz, uplo, n, t, e_.dummy, n, t, e_.dummy, t, &dev_bytes_,
                                      &host_bytes_),
          "cusolverDnXsyevd_bufferSize");
  } else {
    check(st, "cusolverDnXsyevBatched_bufferSize");
    if (method_ == EigMethod::Auto && n >= kPerMatrixMinN && batch >= 2 && batch <= kPerMatrixMaxBatch) {
      per_matrix_ = true;
      check(cusolverDnXsyevd_bufferSize(e_.solver, params_, jobz, uplo, n, t, e_.dummy, n, t, e_.dummy, t, &dev_bytes_,
                                        &host_bytes_),
            "cusolverDnXsyevd_bufferSize");
    }
  }
  host_.resize(host_bytes_ > 0 ? host_bytes_ : 1);
}

EighCore::~EighCore() {
  if (jac_) cusolverDnDestroySyevjInfo(jac_);
  if (params_) cusolverDnDestroyParams(params_);
}

size_t EighCore::workspace_bytes() const { return align_up(dev_bytes_) + align_up(size_t(batch_) * sizeof(int)); }

void EighCore::run(void *A, void *W, void *scratch, int *info, cudaStream_t s) {
  if (n_ == 0) return;
  e_.bind(s);
  char *base = static_cast<char *>(scratch);
  void *work = base;
  if (!info) info = reinterpret_cast<int *>(base + align_up(dev_bytes_));
  const auto jobz = CUSOLVER_EIG_MODE_VECTOR;
  const auto uplo = CUBLAS_FILL_MODE_UPPER;
  if (method_ == EigMethod::Jacobi) {
    const int n = int(n_), lwork = int(dev_bytes_ / (dbl_ ? sizeof(double) : sizeof(float)));
    if (dbl_)
      check(cusolverDnDsyevjBatched(e_.solver, jobz, uplo, n, static_cast<double *>(A), n, static_cast<double *>(W),
                                    static_cast<double *>(work), lwork, info, jac_, int(batch_)),
            "cusolverDnDsyevjBatched");
    else
      check(cusolverDnSsyevjBatched(e_.solver, jobz, uplo, n, static_cast<float *>(A), n, static_cast<float *>(W),
                                    static_cast<float *>(work), lwork, info, jac_, int(batch_)),
            "cusolverDnSsyevjBatched");
    return;
  }
  if (method_ == EigMethod::Tridiagonal) {
    run_tridiagonal(A, W, base, info, s);
    return;
  }
  const cudaDataType t = dbl_ ? CUDA_R_64F : CUDA_R_32F;
  const size_t es = dbl_ ? sizeof(double) : sizeof(float);
  // Seen on an H200: XsyevBatched with host workspace (n = 768) and Xsyevd at any n fail inside
  // a graph capture, leaving an error behind; refused before the call instead.
  if (host_bytes_ > 0 || per_matrix_) {
    cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
    if (cudaStreamIsCapturing(s, &cs) == cudaSuccess && cs != cudaStreamCaptureStatusNone)
      fail("eigh", "cuSOLVER's eigensolver for n = " + std::to_string(n_) +
                       (per_matrix_ ? std::string(" (one Xsyevd per matrix)")
                                    : " needs " + std::to_string(host_bytes_) + " bytes of host workspace and") +
                       " cannot be captured in a CUDA graph; step without capture");
  }
  if (!per_matrix_) {
    check(cusolverDnXsyevBatched(e_.solver, params_, jobz, uplo, n_, t, A, n_, t, W, t, work, dev_bytes_,
                                 host_bytes_ ? host_.data() : nullptr, host_bytes_, info, batch_),
          "cusolverDnXsyevBatched");
    return;
  }
  for (int64_t b = 0; b < batch_; ++b)
    check(cusolverDnXsyevd(e_.solver, params_, jobz, uplo, n_, t, static_cast<char *>(A) + size_t(b * n_ * n_) * es,
                           n_, t, static_cast<char *>(W) + size_t(b * n_) * es, t, work, dev_bytes_,
                           host_bytes_ ? host_.data() : nullptr, host_bytes_, info + b),
          "cusolverDnXsyevd");
}

// Tridiagonal: the pieces of the solver's scratch, in the order tridiagonal() takes them; the
// three stages run one after another and share one work area.
template <class T> size_t EighCore::tridiagonal_stage_bytes() const {
  return std::max({sytrd_workspace<T>(n_, batch_), tridiag_eig_workspace<T>(n_, batch_),
                   sytrd_apply_q_workspace<T>(n_, batch_)});
}
template <class T> size_t EighCore::tridiagonal_bytes() const {
  Carver c;
  c.take<T>(size_t(3 * batch_ * n_));  // d, e, tau
  c.take<T>(size_t(batch_ * n_ * n_)); // Z
  c.take<char>(tridiagonal_stage_bytes<T>());
  return c.used();
}

// A = Q T Q^T (sytrd_batched), T = Z diag(w) Z^T (tridiag_eig), eigenvectors Q Z
// (sytrd_apply_q): every stage batched, nothing synchronizes with the host.
template <class T> void EighCore::tridiagonal(T *A, T *W, char *scratch, int *info, cudaStream_t s) {
  Carver c(scratch);
  T *d = c.take<T>(size_t(3 * batch_ * n_)), *off = d + batch_ * n_, *tau = off + batch_ * n_;
  T *Z = c.take<T>(size_t(batch_ * n_ * n_));
  void *work = c.take<char>(tridiagonal_stage_bytes<T>());
  const bool timing = timing_;
  cudaEvent_t ev[4] = {};
  if (timing)
    for (auto &x : ev) check(cudaEventCreate(&x), "eigh timing"), check(cudaEventRecord(x, s), "eigh timing");
  // The row-major lower triangle is the column-major upper one: sytrd_batched mirrors it and
  // works on the column-major matrix, whose eigenvectors (columns) are the row-major rows.
  // One launch per step over the whole batch. (Measured, not kept: the batch split over 2 or 4
  // streams, so that one part's latency-bound column steps overlap another's products: H200,
  // 24 x 3072 fp32, 487 ms on one stream, 604 on 2, 803 on 4.)
  sytrd_batched<T>(e_, A, n_, batch_, d, off, tau, work, s);
  if (timing) check(cudaEventRecord(ev[1], s), "eigh timing");
  tridiag_eig<T>(d, off, n_, batch_, W, Z, info, work, s);
  if (timing) check(cudaEventRecord(ev[2], s), "eigh timing");
  sytrd_apply_q<T>(e_, A, tau, n_, batch_, Z, work, s);
  check(cudaMemcpyAsync(A, Z, size_t(batch_ * n_ * n_) * sizeof(T), cudaMemcpyDeviceToDevice, s), "eigh copy");
  if (timing) {
    check(cudaEventRecord(ev[3], s), "eigh timing");
    check(cudaEventSynchronize(ev[3]), "eigh timing");
    float t[3];
    for (int k = 0; k < 3; ++k) check(cudaEventElapsedTime(&t[k], ev[k], ev[k + 1]), "eigh timing");
    std::fprintf(stderr, "symoc eigh tridiagonal %lld x %lld^2 %s: sytrd %.2f ms, tridiagonal %.2f ms, back-transform %.2f ms\n",
                 (long long)batch_, (long long)n_, sizeof(T) == 8 ? "fp64" : "fp32", t[0], t[1], t[2]);
    for (auto &x : ev) cudaEventDestroy(x);
  }
}

void EighCore::run_tridiagonal(void *A, void *W, char *scratch, int *info, cudaStream_t s) {
  if (dbl_) tridiagonal<double>(static_cast<double *>(A), static_cast<double *>(W), scratch, info, s);
  else tridiagonal<float>(static_cast<float *>(A), static_cast<float *>(W), scratch, info, s);
}

} // namespace detail

using namespace detail;

struct EighPlan::Impl {
  Impl(Engine::Impl &e, int64_t n, int64_t batch, bool dbl, EigMethod m) : core(e, n, batch, dbl, m), n(n), batch(batch), dbl(dbl) {}
  EighCore core;
  int64_t n, batch;
  bool dbl;
  // Scratch: A (packed, eigen precision), W (eigen precision), solver scratch.
  size_t layout(Carver &c, void **A, void **W, void **solver) const {
    const size_t es = dbl ? sizeof(double) : sizeof(float);
    *A = c.take<char>(size_t(batch * n * n) * es);
    *W = c.take<char>(size_t(batch * n) * es);
    *solver = c.take<char>(core.workspace_bytes());
    return c.used();
  }
};

EighPlan::EighPlan(Engine &e, int64_t n, int64_t batch, EigPrecision p, EigMethod m)
    : impl_(std::make_unique<Impl>(e.impl(), n, batch, p == EigPrecision::Float64, m)) {}
EighPlan::~EighPlan() = default;

size_t EighPlan::workspace_bytes() const {
  Carver c;
  void *a, *w, *s;
  return impl_->layout(c, &a, &w, &s);
}

void EighPlan::run(const Batch &S, float *w, const Batch &V, Workspace ws, cudaStream_t s, int *info) {
  Impl &im = *impl_;
  check_square_batches(S, "S", V, "V", im.n, im.batch, "eigh");
  need_workspace(ws, workspace_bytes(), "eigh");
  if (im.n == 0) return;
  Carver c(ws.ptr);
  void *A, *W, *scr;
  im.layout(c, &A, &W, &scr);
  if (im.dbl) {
    pack_square<double>(S, static_cast<double *>(A), false, s);
    im.core.run(A, W, scr, info, s);
    unpack<double>(static_cast<double *>(A), V, s);
    to_float<double>(static_cast<double *>(W), w, im.batch * im.n, s);
  } else {
    pack_square<float>(S, static_cast<float *>(A), false, s);
    im.core.run(A, W, scr, info, s);
    unpack<float>(static_cast<float *>(A), V, s);
    to_float<float>(static_cast<float *>(W), w, im.batch * im.n, s);
  }
}

} // namespace symoc::cuda
