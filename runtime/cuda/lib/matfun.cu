// Matrix functions from the batched eigendecomposition: SymPowPlan ((S + eps I)^p) and
// GramPowPlan (X (X^T X + eps I)^p, (X X^T + eps I)^p X), the GPU forms of rt::sym_pow_eig
// and rt::gram_pow_apply with the same clamping and pseudo-inverse cut.
#include "blas.cuh"
#include "eigh.cuh"

namespace symoc::cuda {
namespace detail {

namespace {
// f_k = (max(w_k, 0) + eps)^p, 0 for p < 0 where w_k <= rcond * max (as sym_pow_double).
template <class T> __global__ void spectrum_kernel(T *W, int64_t n, double p, double eps, double rcond) {
  __shared__ double sh[256];
  T *w = W + int64_t(blockIdx.x) * n;
  double m = 0;
  for (int64_t k = threadIdx.x; k < n; k += blockDim.x) m = fmax(m, fmax(double(w[k]), 0.0) + eps);
  sh[threadIdx.x] = m;
  __syncthreads();
  for (int o = blockDim.x / 2; o > 0; o >>= 1) {
    if (int(threadIdx.x) < o) sh[threadIdx.x] = fmax(sh[threadIdx.x], sh[threadIdx.x + o]);
    __syncthreads();
  }
  const double wmax = sh[0];
  for (int64_t k = threadIdx.x; k < n; k += blockDim.x) {
    const double v = fmax(double(w[k]), 0.0) + eps;
    w[k] = T((p < 0 && !(v > rcond * wmax && v > 0)) ? 0.0 : pow(v, p));
  }
}
// B_b(k, j) = f_b(k) V_b(k, j).
template <class T> __global__ void scale_rows_kernel(const T *V, const T *f, T *B, int64_t n) {
  const int64_t b = blockIdx.y, nn = n * n;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < nn; e += int64_t(gridDim.x) * blockDim.x)
    B[b * nn + e] = f[b * n + e / n] * V[b * nn + e];
}
template <class T> __global__ void convert_kernel(const float *X, int64_t rows, int64_t cols, int64_t ld,
                                                  int64_t stride, T *dst) {
  const int64_t b = blockIdx.y, total = rows * cols;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = e / cols, j = e - i * cols;
    dst[b * total + e] = T(X[b * stride + i * ld + j]);
  }
}
unsigned blocks_for(int64_t n) { return unsigned(std::min<int64_t>((n + 255) / 256, 2048)); }

// Scratch of the spectral map on packed T buffers.
template <class T> struct PowBuffers {
  T *A, *W, *B, *C;
  void *solver;
  void take(Carver &c, int64_t n, int64_t batch, size_t solver_bytes) {
    A = c.take<T>(size_t(batch * n * n));
    W = c.take<T>(size_t(batch * n));
    B = c.take<T>(size_t(batch * n * n));
    C = c.take<T>(size_t(batch * n * n));
    solver = c.take<char>(solver_bytes);
  }
};

// C = V^T diag(f(w)) V for the symmetric packed A (destroyed).
template <class T>
void spectral_map(Engine::Impl &e, EighCore &eig, int64_t n, int64_t batch, double p, double eps, double rcond,
                  const PowBuffers<T> &q, cudaStream_t s) {
  eig.run(q.A, q.W, q.solver, nullptr, s);
  spectrum_kernel<T><<<unsigned(batch), 256, 0, s>>>(q.W, n, p, eps, rcond);
  check_launch("sym_pow spectrum");
  scale_rows_kernel<T><<<dim3(blocks_for(n * n), unsigned(batch)), 256, 0, s>>>(q.A, q.W, q.B, n);
  check_launch("sym_pow scale");
  // The solver's scratch is free once the eigenvectors are made: the product's TF32 split
  // (unless SYMOC_CUDA_FP32_GEMM=sgemm).
  gemm_rm<T>(e, true, false, n, n, n, T(1), q.A, n, n * n, q.B, n, n * n, T(0), q.C, n, n * n, batch, "sym_pow product",
             Scratch{q.solver, eig.workspace_bytes()});
}
} // namespace

} // namespace detail

using namespace detail;

// ------------------------------------------------------------------------- SymPowPlan
struct SymPowPlan::Impl {
  Impl(Engine::Impl &e, int64_t n, int64_t batch, const MatFnOptions &o)
      : e(e), n(n), batch(batch), o(o), dbl(o.precision == EigPrecision::Float64),
        eig(e, n, batch, dbl, EigMethod::Auto) {}
  Engine::Impl &e;
  int64_t n, batch;
  MatFnOptions o;
  bool dbl;
  EighCore eig;
  template <class T> size_t layout(Carver &c, PowBuffers<T> &q) const {
    q.take(c, n, batch, eig.workspace_bytes());
    return c.used();
  }
  template <class T>
  void run(const Batch *S, const Batch *out, int count, double p, double eps, void *ws, cudaStream_t s) {
    Carver c(ws);
    PowBuffers<T> q;
    layout(c, q);
    for (int64_t i = 0, at = 0; i < count; at += S[i].batch, ++i) pack_square<T>(S[i], q.A + at * n * n, true, s);
    spectral_map<T>(e, eig, n, batch, p, eps, o.rcond, q, s);
    for (int64_t i = 0, at = 0; i < count; at += out[i].batch, ++i) unpack<T>(q.C + at * n * n, out[i], s);
  }
};

SymPowPlan::SymPowPlan(Engine &e, int64_t n, int64_t batch, const MatFnOptions &o)
    : impl_(std::make_unique<Impl>(e.impl(), n, batch, o)) {}
SymPowPlan::~SymPowPlan() = default;

size_t SymPowPlan::workspace_bytes() const {
  Carver c;
  if (impl_->dbl) {
    PowBuffers<double> q;
    return impl_->layout(c, q);
  }
  PowBuffers<float> q;
  return impl_->layout(c, q);
}

void SymPowPlan::run(const Batch &S, double p, double eps, const Batch &out, Workspace ws, cudaStream_t s) {
  run(&S, &out, 1, p, eps, ws, s);
}

void SymPowPlan::run(const Batch *S, const Batch *out, int count, double p, double eps, Workspace ws,
                     cudaStream_t s) {
  Impl &im = *impl_;
  int64_t total = 0;
  for (int i = 0; i < count; ++i) {
    check_square_batches(S[i], "S", out[i], "out", im.n, S[i].batch, "sym_pow");
    total += S[i].batch;
  }
  if (total != im.batch)
    fail("sym_pow", "parts of " + std::to_string(total) + " matrices for a plan of " + std::to_string(im.batch));
  need_workspace(ws, workspace_bytes(), "sym_pow");
  if (im.n == 0) return;
  if (im.dbl) im.run<double>(S, out, count, p, eps, ws.ptr, s);
  else im.run<float>(S, out, count, p, eps, ws.ptr, s);
}

// ------------------------------------------------------------------------ GramPowPlan
struct GramPowPlan::Impl {
  Impl(Engine::Impl &e, Shape sh, bool right, EigPrecision prec)
      : e(e), sh(sh), right(right), dbl(prec == EigPrecision::Float64), k(right ? sh.cols : sh.rows),
        eig(e, k, sh.batch, dbl, EigMethod::Auto) {}
  Engine::Impl &e;
  Shape sh;
  bool right, dbl;
  int64_t k;
  EighCore eig;
  template <class T> size_t layout(Carver &c, PowBuffers<T> &q, T **X, T **O) const {
    q.take(c, k, sh.batch, eig.workspace_bytes());
    *X = c.take<T>(size_t(sh.batch * sh.rows * sh.cols));
    *O = c.take<T>(size_t(sh.batch * sh.rows * sh.cols));
    return c.used();
  }
  template <class T>
  void run(const Batch &X, double p, double eps, double rcond, const Batch &out, void *ws, cudaStream_t s) {
    Carver c(ws);
    PowBuffers<T> q;
    T *Xp, *Op;
    layout(c, q, &Xp, &Op);
    const int64_t m = sh.rows, n = sh.cols, b = sh.batch, mn = m * n;
    convert_kernel<T><<<dim3(blocks_for(mn), unsigned(b)), 256, 0, s>>>(X.data, m, n, X.ld, b > 1 ? X.stride : 0, Xp);
    check_launch("gram_pow convert");
    e.bind(s);
    // Gram of the chosen side, upper triangle mirrored (rt::gram_pow_apply's dsyrk + mirror).
    if (right) gemm_rm<T>(e, true, false, n, n, m, T(1), Xp, n, mn, Xp, n, mn, T(0), q.A, n, n * n, b, "gram_pow gram");
    else gemm_rm<T>(e, false, true, m, m, n, T(1), Xp, n, mn, Xp, n, mn, T(0), q.A, m, m * m, b, "gram_pow gram");
    mirror_upper<T>(q.A, k, k, k * k, b, s);
    spectral_map<T>(e, eig, k, b, p, eps, rcond, q, s);
    if (right) gemm_rm<T>(e, false, false, m, n, n, T(1), Xp, n, mn, q.C, n, n * n, T(0), Op, n, mn, b, "gram_pow apply");
    else gemm_rm<T>(e, false, false, m, n, m, T(1), q.C, m, m * m, Xp, n, mn, T(0), Op, n, mn, b, "gram_pow apply");
    unpack<T>(Op, out, s);
  }
};

GramPowPlan::GramPowPlan(Engine &e, Shape sh, bool right, EigPrecision prec)
    : impl_(std::make_unique<Impl>(e.impl(), sh, right, prec)) {}
GramPowPlan::~GramPowPlan() = default;

size_t GramPowPlan::workspace_bytes() const {
  Carver c;
  if (impl_->dbl) {
    PowBuffers<double> q;
    double *x, *o;
    return impl_->layout(c, q, &x, &o);
  }
  PowBuffers<float> q;
  float *x, *o;
  return impl_->layout(c, q, &x, &o);
}

void GramPowPlan::run(const Batch &X, double p, double eps, double rcond, const Batch &out, Workspace ws,
                      cudaStream_t s) {
  Impl &im = *impl_;
  check_batch(X, "gram_pow", "X");
  check_batch(out, "gram_pow", "out");
  if (X.rows != im.sh.rows || X.cols != im.sh.cols || X.batch != im.sh.batch || out.rows != X.rows ||
      out.cols != X.cols || out.batch != X.batch)
    fail("gram_pow", "shape differs from the plan's");
  need_workspace(ws, workspace_bytes(), "gram_pow");
  if (X.rows == 0 || X.cols == 0) return;
  if (im.dbl) im.run<double>(X, p, eps, rcond, out, ws.ptr, s);
  else im.run<float>(X, p, eps, rcond, out, ws.ptr, s);
}

} // namespace symoc::cuda
