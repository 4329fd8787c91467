// InvRootPlan (matrix.h): (S + eps I)^(-1/p) by the coupled Newton iteration (Guo & Higham
// 2006; the scaling and growth test of Anil et al. 2020), batched over equal shapes, in T =
// float or double. The same steps as rt::inv_root_newton_fixed (runtime/lib/linalg.cpp), with
// the per-matrix stopping decisions kept on the device so that no launch depends on the host.
#include "blas.cuh"
#include "eigh.cuh"

#include <cmath>
#include <type_traits>

namespace symoc::cuda {
namespace detail {

namespace {
constexpr int kThreads = 256;
constexpr int64_t kMaxParts = 64; // partial sums per matrix (fixed order: deterministic)

unsigned grid_x(int64_t n) { return unsigned(std::min<int64_t>((n + kThreads - 1) / kThreads, 2048)); }
int64_t parts_for(int64_t nn) { return std::min<int64_t>(kMaxParts, (nn + kThreads - 1) / kThreads); }

// The per-matrix state of a run.
struct RootState {
  double *part;   // [batch * kMaxParts] partial sums of squares
  double *z, *hz; // the start's scale z and z^(1/p)
  double *err;    // ||M - I||_F / sqrt(n) at the kept iterate
  double *lambda; // the power iteration's estimate
  int *frozen, *keep, *steps;
  int *scal;      // NewtonRootOptions::scaled applies (the start passed kNewtonScaleFloor)
};

__device__ double block_sum(double v) {
  __shared__ double sh[kThreads];
  sh[threadIdx.x] = v;
  __syncthreads();
  for (int o = kThreads / 2; o > 0; o >>= 1) {
    if (int(threadIdx.x) < o) sh[threadIdx.x] += sh[threadIdx.x + o];
    __syncthreads();
  }
  const double r = sh[0];
  __syncthreads();
  return r;
}

// part[b * kMaxParts + blockIdx.x] = sum over this block's share of (X_ij - shift [i == j])^2.
template <class T> __global__ void sumsq_kernel(const T *X, int64_t n, double shift, double *part) {
  const int64_t b = blockIdx.y, nn = n * n;
  const T *x = X + b * nn;
  double s = 0;
  for (int64_t e = int64_t(blockIdx.x) * kThreads + threadIdx.x; e < nn; e += int64_t(gridDim.x) * kThreads) {
    const double d = double(x[e]) - (e % (n + 1) == 0 ? shift : 0.0);
    s += d * d;
  }
  s = block_sum(s);
  if (threadIdx.x == 0) part[b * kMaxParts + blockIdx.x] = s;
}

template <class T> __global__ void add_diag_kernel(T *A, int64_t n, double eps) {
  const int64_t b = blockIdx.y;
  for (int64_t i = int64_t(blockIdx.x) * kThreads + threadIdx.x; i < n; i += int64_t(gridDim.x) * kThreads)
    A[b * n * n + i * n + i] += T(eps);
}

// rt::newton_root_start (linalg.h), normalized: one block per matrix.
template <class T> __global__ void start_kernel(T *v, int64_t n) {
  double s = 0;
  for (int64_t i = threadIdx.x; i < n; i += kThreads) {
    uint32_t h = uint32_t(i + 1) * 2654435761u;
    h ^= h >> 15;
    h *= 2246822519u;
    h ^= h >> 13;
    const double x = ((h >> 16) & 1 ? 1.0 : -1.0) * (0.5 + double(h & 0xffff) / 65536.0);
    v[blockIdx.x * n + i] = T(x);
    s += x * x;
  }
  const double inv = 1.0 / sqrt(block_sum(s));
  for (int64_t i = threadIdx.x; i < n; i += kThreads) v[blockIdx.x * n + i] = T(double(v[blockIdx.x * n + i]) * inv);
}

// v = y / ||y||, lambda = ||y||: one block per matrix.
template <class T> __global__ void power_norm_kernel(const T *y, T *v, int64_t n, double *lambda) {
  const T *yy = y + blockIdx.x * n;
  double s = 0;
  for (int64_t i = threadIdx.x; i < n; i += kThreads) s += double(yy[i]) * double(yy[i]);
  const double l = sqrt(block_sum(s));
  for (int64_t i = threadIdx.x; i < n; i += kThreads) v[blockIdx.x * n + i] = T(double(yy[i]) / l);
  if (threadIdx.x == 0) lambda[blockIdx.x] = l;
}

// z = (p+1) / (2 min(||A||_F, 1.25 lambda)) (rt::inv_root_newton_fixed's bound): one thread a matrix.
__global__ void scale_kernel(RootState st, int64_t batch, int64_t parts, int p, int power_iters, double eps,
                             double floor) {
  const int64_t b = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (b >= batch) return;
  double s = 0;
  for (int64_t k = 0; k < parts; ++k) s += st.part[b * kMaxParts + k];
  const double fro = sqrt(s), lam = st.lambda[b];
  const double bound = power_iters > 0 ? (lam * 1.25 < fro ? lam * 1.25 : fro) : fro;
  // A non-finite A (or lambda) makes every output entry NaN, never a finite wrong root.
  st.z[b] = isfinite(bound) && bound > 0 && isfinite(lam) ? (p + 1.0) / (2.0 * bound) : nan("");
  st.hz[b] = pow(st.z[b], 1.0 / p);
  st.scal[b] = st.z[b] * eps >= floor;
}

// M = z A, H = z^(1/p) I.
template <class T> __global__ void init_kernel(const T *A, T *M, T *H, int64_t n, RootState st) {
  const int64_t b = blockIdx.y, nn = n * n;
  const double z = st.z[b], hz = st.hz[b];
  for (int64_t e = int64_t(blockIdx.x) * kThreads + threadIdx.x; e < nn; e += int64_t(gridDim.x) * kThreads) {
    M[b * nn + e] = T(z * double(A[b * nn + e]));
    H[b * nn + e] = e % (n + 1) == 0 ? T(hz) : T(0 * hz); // NaN everywhere for a NaN z
  }
}

// The start's error; a matrix already within tol starts frozen. One thread a matrix.
__global__ void first_kernel(RootState st, int64_t batch, int64_t parts, int64_t n, double tol) {
  const int64_t b = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (b >= batch) return;
  double s = 0;
  for (int64_t k = 0; k < parts; ++k) s += st.part[b * kMaxParts + k];
  st.err[b] = sqrt(s / double(n));
  st.frozen[b] = !(st.err[b] > tol);
  st.steps[b] = 0;
}

// T = ((p+1) I - c M) / p (c: the step's scale, 1 unless NewtonRootOptions::scaled); I for a
// frozen matrix (select_kernel restores its iterate exactly whatever the products did).
template <class T>
__global__ void step_matrix_kernel(const T *M, T *Tm, int64_t n, int p, double cs, const int *frozen, const int *scal) {
  const int64_t b = blockIdx.y, nn = n * n;
  const bool fr = frozen[b] != 0;
  const double c = scal[b] ? cs : 1.0;
  for (int64_t e = int64_t(blockIdx.x) * kThreads + threadIdx.x; e < nn; e += int64_t(gridDim.x) * kThreads) {
    const bool d = e % (n + 1) == 0;
    Tm[b * nn + e] = fr ? T(d ? 1 : 0) : T(((d ? p + 1.0 : 0.0) - c * double(M[b * nn + e])) / p);
  }
}

// The scaled step's M <- c M, H <- c^(1/p) H, applied after the products (they are linear).
template <class T> __global__ void rescale_kernel(T *H, T *M, int64_t n, double c, double hc, const int *scal) {
  const int64_t b = blockIdx.y, nn = n * n;
  if (!scal[b]) return;
  for (int64_t e = int64_t(blockIdx.x) * kThreads + threadIdx.x; e < nn; e += int64_t(gridDim.x) * kThreads) {
    H[b * nn + e] = T(hc * double(H[b * nn + e]));
    M[b * nn + e] = T(c * double(M[b * nn + e]));
  }
}

// Accept or undo the step just taken (rt::inv_root_newton_fixed's rule). One thread a matrix.
__global__ void decide_kernel(RootState st, int64_t batch, int64_t parts, int64_t n, double tol, double growth,
                              bool scaled_step) {
  const int64_t b = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (b >= batch) return;
  if (st.frozen[b]) {
    st.keep[b] = 1;
    return;
  }
  double s = 0;
  for (int64_t k = 0; k < parts; ++k) s += st.part[b * kMaxParts + k];
  const double e = sqrt(s / double(n));
  // rounding floor, divergence or a non-finite input (a scaled step: the invariant e <= 1)
  if (scaled_step && st.scal[b] ? !(e <= growth) : !(e < growth * st.err[b])) {
    st.keep[b] = 1;
    st.frozen[b] = 1;
    return;
  }
  st.keep[b] = 0;
  st.err[b] = e;
  st.steps[b] += 1;
  st.frozen[b] = e <= tol;
}

// Matrices that keep their iterate: next := current.
template <class T>
__global__ void select_kernel(const T *H, const T *M, T *Hn, T *Mn, int64_t n, const int *keep) {
  const int64_t b = blockIdx.y, nn = n * n;
  if (!keep[b]) return;
  for (int64_t e = int64_t(blockIdx.x) * kThreads + threadIdx.x; e < nn; e += int64_t(gridDim.x) * kThreads) {
    Hn[b * nn + e] = H[b * nn + e];
    Mn[b * nn + e] = M[b * nn + e];
  }
}

// out = (H + H^T) / 2 in fp32 (strided), and the optional per-matrix reports.
template <class T>
__global__ void finish_kernel(const T *H, int64_t n, float *out, int64_t ld, int64_t stride) {
  const int64_t b = blockIdx.y, nn = n * n;
  for (int64_t e = int64_t(blockIdx.x) * kThreads + threadIdx.x; e < nn; e += int64_t(gridDim.x) * kThreads) {
    const int64_t i = e / n, j = e - i * n;
    out[b * stride + i * ld + j] = float(0.5 * (double(H[b * nn + e]) + double(H[b * nn + j * n + i])));
  }
}
__global__ void report_kernel(RootState st, int64_t batch, float *err, int *steps) {
  const int64_t b = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (b >= batch) return;
  if (err) err[b] = float(st.err[b]);
  if (steps) steps[b] = st.steps[b];
}

// Square row-major C = alpha A B over the batch; TF32 tensor cores when asked (fp32 data).
template <class T>
void square_mul(Engine::Impl &e, bool tf32, int64_t n, int64_t batch, const T *A, const T *B, T *C, const char *what,
                double alpha = 1.0) {
  if constexpr (std::is_same_v<T, float>) {
    if (tf32) {
      const float al = float(alpha), zero = 0.f;
      // Row-major C = A B is column-major C^T = B^T A^T: B first.
      check(cublasGemmStridedBatchedEx(e.blas, CUBLAS_OP_N, CUBLAS_OP_N, int(n), int(n), int(n), &al, B, CUDA_R_32F,
                                       int(n), n * n, A, CUDA_R_32F, int(n), n * n, &zero, C, CUDA_R_32F, int(n),
                                       n * n, int(batch), CUBLAS_COMPUTE_32F_FAST_TF32, CUBLAS_GEMM_DEFAULT),
            what);
      return;
    }
  }
  gemm_rm<T>(e, false, false, n, n, n, T(alpha), A, n, n * n, B, n, n * n, T(0), C, n, n * n, batch, what);
}
} // namespace

} // namespace detail

using namespace detail;

struct InvRootPlan::Impl {
  Engine::Impl &e;
  int64_t n, batch;
  int p;
  bool dbl, tf32;
  NewtonRootOptions o;
  int half() const { return p % 2 == 0 ? p / 2 : p; } // T's power per side (even p) or once
  // Buffers of batch n x n: H[2], M[2] (ping-pong), Tm (A first), P and X (T's powers by
  // repeated products, and M T^(p/2) in Tm or X); then v, y and the per-matrix state.
  bool needs(int k) const {
    if (k == 5) return half() >= 2;
    if (k == 6) return half() >= 3 || p == 2;
    return true;
  }
  template <class U> size_t layout(Carver &c, U **buf, U **v, U **y, RootState *st) const {
    const size_t nn = size_t(batch * n * n);
    for (int k = 0; k < 7; ++k) buf[k] = needs(k) ? c.take<U>(nn) : nullptr;
    *v = c.take<U>(size_t(batch * n));
    *y = c.take<U>(size_t(batch * n));
    st->part = c.take<double>(size_t(batch * kMaxParts));
    st->z = c.take<double>(size_t(batch));
    st->hz = c.take<double>(size_t(batch));
    st->err = c.take<double>(size_t(batch));
    st->lambda = c.take<double>(size_t(batch));
    st->frozen = c.take<int>(size_t(batch));
    st->keep = c.take<int>(size_t(batch));
    st->steps = c.take<int>(size_t(batch));
    st->scal = c.take<int>(size_t(batch));
    return c.used();
  }
  template <class U> void run(const Batch &S, double eps, const Batch &out, void *ws, cudaStream_t s, float *err,
                              int *steps) {
    Carver c(ws);
    U *buf[7], *v, *y;
    RootState st;
    layout(c, buf, &v, &y, &st);
    U *H[2] = {buf[0], buf[1]}, *M[2] = {buf[2], buf[3]}, *Tm = buf[4], *P = buf[5], *X = buf[6];
    if (S.data == nullptr && S.rows > 0) fail("inv_root", "S is null");
    const int64_t nn = n * n, parts = parts_for(nn);
    const dim3 g{grid_x(nn), unsigned(batch)}, gp{unsigned(parts), unsigned(batch)};
    const unsigned per = unsigned((batch + 127) / 128);
    e.bind(s);
    // A = (S + S^T)/2 + eps I in Tm, its Frobenius norm, its largest eigenvalue from below.
    pack_square<U>(S, Tm, true, s);
    add_diag_kernel<U><<<dim3(grid_x(n), unsigned(batch)), kThreads, 0, s>>>(Tm, n, eps);
    sumsq_kernel<U><<<gp, kThreads, 0, s>>>(Tm, n, 0.0, st.part);
    check_launch("inv_root norm");
    start_kernel<U><<<unsigned(batch), kThreads, 0, s>>>(v, n);
    check(cudaMemsetAsync(st.lambda, 0, sizeof(double) * size_t(batch), s), "inv_root memset");
    for (int k = 0; k < o.power_iters; ++k) {
      gemm_rm<U>(e, false, false, n, 1, n, U(1), Tm, n, nn, v, 1, n, U(0), y, 1, n, batch, "inv_root power");
      power_norm_kernel<U><<<unsigned(batch), kThreads, 0, s>>>(y, v, n, st.lambda);
    }
    scale_kernel<<<per, 128, 0, s>>>(st, batch, parts, p, o.power_iters, eps,
                                     o.scaled ? rt::kNewtonScaleFloor : INFINITY);
    init_kernel<U><<<g, kThreads, 0, s>>>(Tm, M[0], H[0], n, st);
    sumsq_kernel<U><<<gp, kThreads, 0, s>>>(M[0], n, 1.0, st.part);
    first_kernel<<<per, 128, 0, s>>>(st, batch, parts, n, o.tol);
    check_launch("inv_root start");
    for (int it = 0; it < o.iters; ++it) {
      const int cur = it % 2, nxt = 1 - cur;
      // M <- c M, H <- c^(1/p) H before the step, for the matrices whose start allows it
      const double c = rt::newton_step_scale(o, p, it);
      step_matrix_kernel<U><<<g, kThreads, 0, s>>>(M[cur], Tm, n, p, c, st.frozen, st.scal);
      check_launch("inv_root T");
      square_mul<U>(e, tf32, n, batch, H[cur], Tm, H[nxt], "inv_root H T");
      const U *Q = Tm; // T^half by repeated products into P / X (X is free until M T^(p/2))
      for (int k = 1; k < half(); ++k) {
        U *dst = Q == P ? X : P;
        square_mul<U>(e, tf32, n, batch, Q, Tm, dst, "inv_root T power");
        Q = dst;
      }
      if (p % 2 == 0) { // M <- Q M Q: symmetric in exact arithmetic and in its rounding pattern
        U *tmp = Q == Tm ? X : Tm; // Tm is free once Q = T^half is formed (half > 1)
        square_mul<U>(e, tf32, n, batch, M[cur], Q, tmp, "inv_root M Q");
        square_mul<U>(e, tf32, n, batch, Q, tmp, M[nxt], "inv_root Q M Q");
      } else {
        square_mul<U>(e, tf32, n, batch, Q, M[cur], M[nxt], "inv_root T^p M");
      }
      if (c != 1.0) rescale_kernel<U><<<g, kThreads, 0, s>>>(H[nxt], M[nxt], n, c, std::pow(c, 1.0 / p), st.scal);
      sumsq_kernel<U><<<gp, kThreads, 0, s>>>(M[nxt], n, 1.0, st.part);
      decide_kernel<<<per, 128, 0, s>>>(st, batch, parts, n, o.tol, o.growth, c != 1.0);
      select_kernel<U><<<g, kThreads, 0, s>>>(H[cur], M[cur], H[nxt], M[nxt], n, st.keep);
      check_launch("inv_root step");
    }
    finish_kernel<U><<<g, kThreads, 0, s>>>(H[o.iters % 2], n, out.data, out.ld, batch > 1 ? out.stride : 0);
    if (err || steps) report_kernel<<<per, 128, 0, s>>>(st, batch, err, steps);
    check_launch("inv_root finish");
  }
};

InvRootPlan::InvRootPlan(Engine &e, int64_t n, int64_t batch, int p, EigPrecision prec, const NewtonRootOptions &o,
                         bool tf32)
    : impl_(std::make_unique<Impl>(Impl{e.impl(), n, batch, p, prec == EigPrecision::Float64, tf32, o})) {
  if (n < 0 || batch < 1 || batch > 65535) fail("inv_root", "invalid shape (batch 1 .. 65535)");
  if (p < 1) fail("inv_root", "p must be >= 1, got " + std::to_string(p));
  if (o.iters < 0 || o.power_iters < 0 || !(o.growth > 1)) fail("inv_root", "invalid options");
  if (tf32 && impl_->dbl) fail("inv_root", "TF32 products need Float32");
  if (o.scaled && !impl_->dbl)
    fail("inv_root", "scaled steps need Float64 (fp32 products could turn a small eigenvalue negative, which scaling "
                     "amplifies)");
}
InvRootPlan::~InvRootPlan() = default;

size_t InvRootPlan::workspace_bytes() const {
  Carver c;
  RootState st;
  if (impl_->dbl) {
    double *b[7], *v, *y;
    return impl_->layout(c, b, &v, &y, &st);
  }
  float *b[7], *v, *y;
  return impl_->layout(c, b, &v, &y, &st);
}

int64_t InvRootPlan::gemms_per_matrix() const {
  const Impl &im = *impl_;
  const int per_step = im.p % 2 == 0 ? 1 + (im.half() - 1) + 2 : 1 + (im.half() - 1) + 1;
  return int64_t(im.o.iters) * per_step;
}

void InvRootPlan::run(const Batch &S, double eps, const Batch &out, Workspace ws, cudaStream_t s, float *err,
                      int *steps) {
  Impl &im = *impl_;
  check_square_batches(S, "S", out, "out", im.n, im.batch, "inv_root");
  if (!(eps > 0)) fail("inv_root", "eps must be > 0 (the Newton root has no pseudo-inverse cut)");
  need_workspace(ws, workspace_bytes(), "inv_root");
  if (im.n == 0) return;
  if (im.dbl) im.run<double>(S, eps, out, ws.ptr, s, err, steps);
  else im.run<float>(S, eps, out, ws.ptr, s, err, steps);
}

} // namespace symoc::cuda
