// fp32 / fp64 batched products: gemm() and gram() of matrix.h and the row-major GEMM
// wrapper the matrix functions build on.
#include "blas.cuh"
#include "tf32x3_split.h"

#include <climits>
#include <type_traits>

namespace symoc::cuda {
namespace detail {

namespace {
void need_int(int64_t v, const char *what) {
  if (v > INT_MAX) fail(what, "dimension " + std::to_string(v) + " exceeds cuBLAS's int range");
}
// Matrices blockIdx.z, blockIdx.z + gridDim.z, ... < batch (gridDim.z is at most 65535).
template <class T> __global__ void mirror_kernel(T *C, int64_t n, int64_t ld, int64_t stride, int64_t batch) {
  __shared__ T tile[32][33];
  const int64_t ti = blockIdx.y, tj = blockIdx.x; // destination tile (ti >= tj: lower part)
  if (tj > ti) return;
  for (int64_t b = blockIdx.z; b < batch; b += gridDim.z) {
    T *c = C + b * stride;
    __syncthreads(); // the tile of the previous matrix is read
    // Load the mirrored source tile (tj, ti) of the upper part.
    for (int r = threadIdx.y; r < 32; r += blockDim.y) {
      const int64_t i = tj * 32 + r, j = ti * 32 + threadIdx.x;
      if (i < n && j < n) tile[r][threadIdx.x] = c[i * ld + j];
    }
    __syncthreads();
    for (int r = threadIdx.y; r < 32; r += blockDim.y) {
      const int64_t i = ti * 32 + r, j = tj * 32 + threadIdx.x;
      if (i < n && j < n && i > j) c[i * ld + j] = tile[threadIdx.x][r];
    }
  }
}
// C = C + C^T in place (n x n, both triangles): tile pairs (ti, tj), ti >= tj, each summed
// once, so C_ij and C_ji get the same bits (fp addition commutes). The Gram half's second step.
__global__ void add_transpose_kernel(float *C, int64_t n, int64_t ld, int64_t stride, int64_t batch) {
  __shared__ float lower[32][33], upper[32][33];
  const int64_t ti = blockIdx.y, tj = blockIdx.x;
  if (tj > ti) return;
  for (int64_t b = blockIdx.z; b < batch; b += gridDim.z) {
    float *c = C + b * stride;
    __syncthreads(); // the previous matrix's tiles are read
    for (int r = threadIdx.y; r < 32; r += blockDim.y) {
      const int64_t li = ti * 32 + r, lj = tj * 32 + threadIdx.x, ui = tj * 32 + r, uj = ti * 32 + threadIdx.x;
      if (li < n && lj < n) lower[r][threadIdx.x] = c[li * ld + lj];
      if (ui < n && uj < n) upper[r][threadIdx.x] = c[ui * ld + uj];
    }
    __syncthreads();
    for (int r = threadIdx.y; r < 32; r += blockDim.y) {
      const int64_t li = ti * 32 + r, lj = tj * 32 + threadIdx.x, ui = tj * 32 + r, uj = ti * 32 + threadIdx.x;
      // lower (r, x) pairs with upper (x, r); on a diagonal tile both name the same tile.
      if (li < n && lj < n) c[li * ld + lj] = lower[r][threadIdx.x] + upper[threadIdx.x][r];
      if (ti != tj && ui < n && uj < n) c[ui * ld + uj] = upper[r][threadIdx.x] + lower[threadIdx.x][r];
    }
  }
}
} // namespace

template <class T>
void gemm_rm(Engine::Impl &e, bool tA, bool tB, int64_t M, int64_t N, int64_t K, T alpha, const T *A, int64_t lda,
             int64_t sA, const T *B, int64_t ldb, int64_t sB, T beta, T *C, int64_t ldc, int64_t sC, int64_t batch,
             const char *what, Scratch sc) {
  if (M == 0 || N == 0 || batch == 0) return;
  for (int64_t v : {M, N, K, lda, ldb, ldc, batch}) need_int(v, what);
  if constexpr (std::is_same_v<T, float>)
    if (K > 0 && gemm_rm_tf32x3(e, tA, tB, M, N, K, alpha, A, lda, sA, B, ldb, sB, beta, C, ldc, sC, batch, sc, what))
      return;
  // Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: B first.
  const int kk = int(K > 0 ? K : 0);
  check(cublas_gemm_sb(e.blas, tB ? CUBLAS_OP_T : CUBLAS_OP_N, tA ? CUBLAS_OP_T : CUBLAS_OP_N, int(N), int(M), kk, &alpha,
                  B, int(std::max<int64_t>(ldb, 1)), sB, A, int(std::max<int64_t>(lda, 1)), sA, &beta, C, int(ldc), sC,
                  int(batch)),
        what);
}
template void gemm_rm<float>(Engine::Impl &, bool, bool, int64_t, int64_t, int64_t, float, const float *, int64_t,
                             int64_t, const float *, int64_t, int64_t, float, float *, int64_t, int64_t, int64_t,
                             const char *, Scratch);
template void gemm_rm<double>(Engine::Impl &, bool, bool, int64_t, int64_t, int64_t, double, const double *, int64_t,
                              int64_t, const double *, int64_t, int64_t, double, double *, int64_t, int64_t, int64_t,
                              const char *, Scratch);

template <class T> void mirror_upper(T *C, int64_t n, int64_t ld, int64_t stride, int64_t batch, cudaStream_t s) {
  if (n <= 1 || batch == 0) return;
  const unsigned t = unsigned((n + 31) / 32);
  mirror_kernel<T><<<dim3(t, t, unsigned(std::min<int64_t>(batch, 65535))), dim3(32, 8), 0, s>>>(C, n, ld, stride, batch);
  check_launch("mirror");
}
template void mirror_upper<float>(float *, int64_t, int64_t, int64_t, int64_t, cudaStream_t);
template void mirror_upper<double>(double *, int64_t, int64_t, int64_t, int64_t, cudaStream_t);

} // namespace detail

using namespace detail;

namespace {
int64_t shared_stride(const Batch &X, int64_t batch, const char *what, const char *name) {
  if (X.batch == batch) return batch > 1 ? X.stride : 0;
  if (X.batch == 1) return 0;
  fail(what, std::string(name) + " has batch " + std::to_string(X.batch) + ", expected 1 or " + std::to_string(batch));
}
} // namespace

void gemm(Engine &eng, bool tA, bool tB, float alpha, const Batch &A, const Batch &B, float beta, const Batch &C,
          cudaStream_t s, Workspace ws) {
  const char *what = "gemm";
  check_batch(A, what, "A");
  check_batch(B, what, "B");
  check_batch(C, what, "C");
  const int64_t m = tA ? A.cols : A.rows, k = tA ? A.rows : A.cols;
  const int64_t kb = tB ? B.cols : B.rows, n = tB ? B.rows : B.cols;
  if (k != kb || C.rows != m || C.cols != n)
    fail(what, "shape mismatch (" + std::to_string(m) + "x" + std::to_string(k) + ") * (" + std::to_string(kb) + "x" +
                   std::to_string(n) + ") -> " + std::to_string(C.rows) + "x" + std::to_string(C.cols));
  const int64_t sA = shared_stride(A, C.batch, what, "A"), sB = shared_stride(B, C.batch, what, "B");
  Engine::Impl &e = eng.impl();
  e.bind(s);
  gemm_rm<float>(e, tA, tB, m, n, k, alpha, A.data, A.ld, sA, B.data, B.ld, sB, beta, C.data, C.ld,
                 C.batch > 1 ? C.stride : 0, C.batch, what, Scratch{ws.ptr, ws.bytes});
}

size_t gemm_workspace_bytes(int64_t m, int64_t n, int64_t k, int64_t batch) {
  return size_t(tf32x3_whole_floats(m, n, k, false, false, batch, int64_t(kAlign / sizeof(float)))) * sizeof(float);
}

bool split_products(Engine &eng, int64_t m, int64_t n, int64_t k) { return tf32x3_takes(eng.impl(), m, n, k); }

namespace {
void check_packed(const Batch &X, const char *what, const char *name) {
  check_batch(X, what, name);
  if (X.ld != X.cols || (X.batch > 1 && X.stride != X.rows * X.cols))
    fail(what, std::string(name) + " is not packed (ld " + std::to_string(X.ld) + ", stride " +
                   std::to_string(X.stride) + ")");
}
void check_split(const SplitBatch &X, const char *what, const char *name) {
  check_packed(X.hi, what, name);
  if (X.lo == nullptr && X.hi.rows > 0 && X.hi.cols > 0) fail(what, std::string(name) + "'s low part is null");
}
Tf32x3Operand operand(const SplitBatch &X) { return {X.hi.data, X.lo, X.hi.ld, X.hi.stride}; }
} // namespace

void split_operand(const Batch &X, const SplitBatch &out, cudaStream_t s) {
  const char *what = "split_operand";
  check_packed(X, what, "X");
  check_split(out, what, "out");
  if (X.batch != out.hi.batch || X.rows != out.hi.rows || X.cols != out.hi.cols) fail(what, "X and out differ in shape");
  tf32x3_split_batch(X.data, X.rows, X.cols, X.batch, out.hi.data, out.lo, s);
}

void gemm(Engine &eng, bool tA, bool tB, float alpha, const SplitBatch &A, const SplitBatch &B, float beta,
          const Batch &C, cudaStream_t s) {
  const char *what = "gemm (split operands)";
  check_split(A, what, "A");
  check_split(B, what, "B");
  check_batch(C, what, "C");
  const int64_t m = tA ? A.hi.cols : A.hi.rows, k = tA ? A.hi.rows : A.hi.cols;
  const int64_t kb = tB ? B.hi.cols : B.hi.rows, n = tB ? B.hi.rows : B.hi.cols;
  if (k != kb || C.rows != m || C.cols != n)
    fail(what, "shape mismatch (" + std::to_string(m) + "x" + std::to_string(k) + ") * (" + std::to_string(kb) + "x" +
                   std::to_string(n) + ") -> " + std::to_string(C.rows) + "x" + std::to_string(C.cols));
  const int64_t sA = shared_stride(A.hi, C.batch, what, "A"), sB = shared_stride(B.hi, C.batch, what, "B");
  for (int64_t v : {m, n, k, A.hi.ld, B.hi.ld, C.ld, C.batch}) need_int(v, what);
  Tf32x3Operand a = operand(A), b = operand(B);
  a.stride = sA, b.stride = sB;
  Engine::Impl &e = eng.impl();
  e.bind(s);
  gemm_rm_tf32x3_split(e, tA, tB, m, n, k, alpha, a, b, beta, C.data, C.ld, C.batch > 1 ? C.stride : 0, C.batch, what);
}

void gram_half(Engine &eng, bool tA, float alpha, const SplitBatch &A, const Batch &Z, cudaStream_t s) {
  const char *what = "gram_half";
  check_split(A, what, "A");
  check_batch(Z, what, "Z");
  const int64_t n = tA ? A.hi.cols : A.hi.rows, k = tA ? A.hi.rows : A.hi.cols;
  if (Z.rows != n || Z.cols != n) fail(what, "output must be " + std::to_string(n) + "x" + std::to_string(n));
  if (A.hi.batch != Z.batch) fail(what, "A and Z batches differ");
  for (int64_t v : {n, k, A.hi.ld, Z.ld, Z.batch}) need_int(v, what);
  Tf32x3Operand a = operand(A);
  a.stride = A.hi.batch > 1 ? A.hi.stride : 0;
  Engine::Impl &e = eng.impl();
  e.bind(s);
  gemm_rm_tf32x3_split(e, tA, !tA, n, n, k, alpha, a, a, 0.f, Z.data, Z.ld, Z.batch > 1 ? Z.stride : 0, Z.batch, what,
                       Tf32x3Form::GramHalf);
}

void gram(Engine &eng, bool tA, float alpha, const Batch &A, float beta, const Batch &C, cudaStream_t s,
          Workspace ws) {
  const char *what = "gram";
  check_batch(A, what, "A");
  check_batch(C, what, "C");
  const int64_t n = tA ? A.cols : A.rows, k = tA ? A.rows : A.cols;
  if (C.rows != n || C.cols != n) fail(what, "output must be " + std::to_string(n) + "x" + std::to_string(n));
  if (A.batch != C.batch) fail(what, "A and C batches differ");
  Engine::Impl &e = eng.impl();
  e.bind(s);
  const int64_t sA = A.batch > 1 ? A.stride : 0, sC = C.batch > 1 ? C.stride : 0;
  for (int64_t v : {n, k, A.ld, C.ld, C.batch}) need_int(v, what);
  // With beta 0 the three-pass form needs only two: Z = alpha (hi hi^T / 2 + lo hi^T).
  const Tf32x3Form form = beta == 0.f ? Tf32x3Form::GramHalf : Tf32x3Form::Full;
  if (k > 0 && gemm_rm_tf32x3(e, tA, !tA, n, n, k, alpha, A.data, A.ld, sA, A.data, A.ld, sA, beta, C.data, C.ld, sC,
                              C.batch, Scratch{ws.ptr, ws.bytes}, what, form)) {
    if (form == Tf32x3Form::GramHalf) { // Z + Z^T is the product, exactly symmetric
      const unsigned t = unsigned((n + 31) / 32);
      add_transpose_kernel<<<dim3(t, t, unsigned(std::min<int64_t>(C.batch, 65535))), dim3(32, 8), 0, s>>>(
          C.data, n, C.ld, sC, C.batch);
      check_launch("gram add transpose");
      return;
    }
    // both triangles formed; the mirror below makes them agree bit for bit
  } else if (e.syrk_min > 0 && n >= e.syrk_min && k > 0) {
    // Row-major A is column-major A^T: C = A A^T is (A^T)^T (A^T) (op T), C = A^T A is
    // (A^T)(A^T)^T (op N). cuBLAS's lower triangle (column-major) is the row-major upper one,
    // which the mirror copies down.
    for (int64_t b = 0; b < C.batch; ++b)
      check(cublasSsyrk(e.blas, CUBLAS_FILL_MODE_LOWER, tA ? CUBLAS_OP_N : CUBLAS_OP_T, int(n), int(k), &alpha,
                        A.data + b * sA, int(A.ld), &beta, C.data + b * sC, int(C.ld)),
            what);
  } else {
    gemm_rm<float>(e, tA, !tA, n, n, k, alpha, A.data, A.ld, sA, A.data, A.ld, sA, beta, C.data, C.ld, sC, C.batch,
                   what);
  }
  mirror_upper<float>(C.data, n, C.ld, sC, C.batch, s);
}

} // namespace symoc::cuda
