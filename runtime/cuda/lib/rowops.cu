// Row / column norms and scalings, mean-row centring, Frobenius norms and inner products per
// matrix (Lau-Su Row / Col / CenteredRow and the nuclear scale; Symo's centred parts).
// Sums in double as in runtime/lib/optim.cpp; fixed reduction order (deterministic).
#include "rowops.cuh"

namespace symoc::cuda {
namespace detail {

namespace {
constexpr int kThreads = 256;

__device__ double block_sum(double v) {
  __shared__ double sh[32];
  for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads(); // sh may still be read by a previous call
  if (lane == 0) sh[warp] = v;
  __syncthreads();
  double t = 0;
  if (threadIdx.x == 0)
    for (int w = 0; w < int(blockDim.x + 31) / 32; ++w) t += sh[w];
  __syncthreads();
  if (threadIdx.x == 0) sh[0] = t;
  __syncthreads();
  return sh[0];
}

// Partial p of matrix b: a fixed share of its elements (so the total is deterministic). The
// share avoids a 64-bit division per element (which made this pass ~4x slower than its bytes
// on the Newton-Schulz inputs): one flat range when the matrix is contiguous, else whole rows
// per block when there are at least as many rows as blocks, else the flat index.
__global__ void partials_kernel(const float *X, const float *Y, int64_t rows, int64_t cols, int64_t ldx, int64_t sx,
                                int64_t ldy, int64_t sy, double *part) {
  const int64_t b = blockIdx.y, total = rows * cols;
  const float *x = X + b * sx;
  const float *y = Y ? Y + b * sy : nullptr;
  auto term = [&](int64_t ox, int64_t oy) {
    const double v = x[ox];
    return v * (y ? double(y[oy]) : v);
  };
  double acc = 0;
  if (ldx == cols && (!y || ldy == cols)) {
    const int64_t step = int64_t(gridDim.x) * blockDim.x;
    int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    double a1 = 0, a2 = 0, a3 = 0; // four chains, so that four loads are in flight
    for (; e + 3 * step < total; e += 4 * step)
      acc += term(e, e), a1 += term(e + step, e + step), a2 += term(e + 2 * step, e + 2 * step),
          a3 += term(e + 3 * step, e + 3 * step);
    for (; e < total; e += step) acc += term(e, e);
    acc += (a1 + a2) + a3;
  } else if (rows >= int64_t(gridDim.x)) {
    for (int64_t i = blockIdx.x; i < rows; i += gridDim.x)
      for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) acc += term(i * ldx + j, i * ldy + j);
  } else {
    for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += int64_t(gridDim.x) * blockDim.x) {
      const int64_t i = e / cols, j = e - i * cols;
      acc += term(i * ldx + j, i * ldy + j);
    }
  }
  acc = block_sum(acc);
  if (threadIdx.x == 0) part[b * kPartials + blockIdx.x] = acc;
}

// One block per row: norm of the row, optionally the scaled row.
__global__ void row_kernel(const float *X, int64_t cols, int64_t ldx, int64_t sx, float eps, float *norm_out,
                           int64_t rows, float *Y, int64_t ldy, int64_t sy) {
  const int64_t i = blockIdx.x, b = blockIdx.y;
  const float *x = X + b * sx + i * ldx;
  double acc = 0;
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) acc += double(x[j]) * x[j];
  const double s = block_sum(acc);
  if (norm_out) {
    if (threadIdx.x == 0) norm_out[b * rows + i] = float(sqrt(s));
    return;
  }
  const float inv = float(1.0 / (sqrt(s) + eps));
  float *y = Y + b * sy + i * ldy;
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) y[j] = x[j] * inv;
}

// One thread per column (consecutive threads read consecutive columns of a row).
// mode 0: norm, 1: divide by (norm + eps), 2: subtract the column mean.
__global__ void col_kernel(const float *X, int64_t rows, int64_t cols, int64_t ldx, int64_t sx, int mode, float eps,
                           float *norm_out, float *Y, int64_t ldy, int64_t sy) {
  const int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x, b = blockIdx.y;
  if (j >= cols) return;
  const float *x = X + b * sx + j;
  double acc = 0;
  for (int64_t i = 0; i < rows; ++i) {
    const double v = x[i * ldx];
    acc += mode == 2 ? v : v * v;
  }
  if (mode == 0) {
    norm_out[b * cols + j] = float(sqrt(acc));
    return;
  }
  float *y = Y + b * sy + j;
  if (mode == 1) {
    const float inv = float(1.0 / (sqrt(acc) + eps));
    for (int64_t i = 0; i < rows; ++i) y[i * ldy] = x[i * ldx] * inv;
  } else {
    const float mu = float(acc / double(rows > 1 ? rows : 1));
    for (int64_t i = 0; i < rows; ++i) y[i * ldy] = x[i * ldx] - mu;
  }
}

__global__ void scale_kernel(float *X, int64_t rows, int64_t cols, int64_t ld, int64_t stride, const float *s) {
  const int64_t b = blockIdx.y, total = rows * cols;
  const float f = s[b];
  float *x = X + b * stride;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = e / cols, j = e - i * cols;
    x[i * ld + j] *= f;
  }
}

unsigned grid_y(int64_t batch, const char *what) {
  if (batch > 65535) fail(what, "batch " + std::to_string(batch) + " above 65535");
  return unsigned(batch);
}
} // namespace

void sum_products_partials(const float *X, const float *Y, int64_t batch, int64_t rows, int64_t cols, int64_t ldx,
                           int64_t sx, int64_t ldy, int64_t sy, double *part, cudaStream_t s) {
  partials_kernel<<<dim3(kPartials, grid_y(batch, "sum of products")), kThreads, 0, s>>>(X, Y, rows, cols, ldx, sx,
                                                                                          ldy, sy, part);
  check_launch("sum of products");
}

} // namespace detail

using namespace detail;

namespace {
void same_shape(const Batch &X, const Batch &Y, const char *what) {
  check_batch(X, what, "X");
  check_batch(Y, what, "Y");
  if (X.batch != Y.batch || X.rows != Y.rows || X.cols != Y.cols) fail(what, "X and Y shapes differ");
}
// The standalone reductions take no workspace: one block of 1024 threads per matrix.
__global__ void whole_kernel(const float *X, const float *Y, int64_t rows, int64_t cols, int64_t ldx, int64_t sx,
                             int64_t ldy, int64_t sy, bool root, float *out) {
  const int64_t b = blockIdx.x, total = rows * cols;
  const float *x = X + b * sx;
  const float *y = Y ? Y + b * sy : nullptr;
  double acc = 0;
  for (int64_t e = threadIdx.x; e < total; e += blockDim.x) {
    const int64_t i = e / cols, j = e - i * cols;
    const double v = x[i * ldx + j];
    acc += v * (y ? double(y[i * ldy + j]) : v);
  }
  acc = block_sum(acc);
  if (threadIdx.x == 0) out[b] = float(root ? sqrt(acc) : acc);
}
} // namespace

void norms(const Batch &X, Axis axis, float *out, cudaStream_t s) {
  check_batch(X, "norms", "X");
  if (X.rows == 0 || X.cols == 0) return;
  const int64_t sx = X.batch > 1 ? X.stride : 0;
  if (axis == Axis::Rows)
    row_kernel<<<dim3(unsigned(X.rows), grid_y(X.batch, "norms")), kThreads, 0, s>>>(X.data, X.cols, X.ld, sx, 0.f,
                                                                                      out, X.rows, nullptr, 0, 0);
  else
    col_kernel<<<dim3(unsigned((X.cols + kThreads - 1) / kThreads), grid_y(X.batch, "norms")), kThreads, 0, s>>>(
        X.data, X.rows, X.cols, X.ld, sx, 0, 0.f, out, nullptr, 0, 0);
  check_launch("norms");
}

void normalize(const Batch &X, Axis axis, float eps, const Batch &Y, cudaStream_t s) {
  same_shape(X, Y, "normalize");
  if (X.rows == 0 || X.cols == 0) return;
  const int64_t sx = X.batch > 1 ? X.stride : 0, sy = Y.batch > 1 ? Y.stride : 0;
  if (axis == Axis::Rows)
    row_kernel<<<dim3(unsigned(X.rows), grid_y(X.batch, "normalize")), kThreads, 0, s>>>(
        X.data, X.cols, X.ld, sx, eps, nullptr, X.rows, Y.data, Y.ld, sy);
  else
    col_kernel<<<dim3(unsigned((X.cols + kThreads - 1) / kThreads), grid_y(X.batch, "normalize")), kThreads, 0, s>>>(
        X.data, X.rows, X.cols, X.ld, sx, 1, eps, nullptr, Y.data, Y.ld, sy);
  check_launch("normalize");
}

void center_rows(const Batch &X, const Batch &Y, cudaStream_t s) {
  same_shape(X, Y, "center_rows");
  if (X.rows == 0 || X.cols == 0) return;
  const int64_t sx = X.batch > 1 ? X.stride : 0, sy = Y.batch > 1 ? Y.stride : 0;
  col_kernel<<<dim3(unsigned((X.cols + kThreads - 1) / kThreads), grid_y(X.batch, "center_rows")), kThreads, 0, s>>>(
      X.data, X.rows, X.cols, X.ld, sx, 2, 0.f, nullptr, Y.data, Y.ld, sy);
  check_launch("center_rows");
}

void frob_norms(const Batch &X, float *out, cudaStream_t s) {
  check_batch(X, "frob_norms", "X");
  const int64_t sx = X.batch > 1 ? X.stride : 0;
  whole_kernel<<<unsigned(X.batch), 1024, 0, s>>>(X.data, nullptr, X.rows, X.cols, X.ld, sx, 0, 0, true, out);
  check_launch("frob_norms");
}

void dots(const Batch &X, const Batch &Y, float *out, cudaStream_t s) {
  same_shape(X, Y, "dots");
  const int64_t sx = X.batch > 1 ? X.stride : 0, sy = Y.batch > 1 ? Y.stride : 0;
  whole_kernel<<<unsigned(X.batch), 1024, 0, s>>>(X.data, Y.data, X.rows, X.cols, X.ld, sx, Y.ld, sy, false, out);
  check_launch("dots");
}

void scale(const Batch &X, const float *sc, cudaStream_t s) {
  check_batch(X, "scale", "X");
  if (X.rows == 0 || X.cols == 0) return;
  const int64_t total = X.rows * X.cols;
  const unsigned bx = unsigned(std::min<int64_t>((total + kThreads - 1) / kThreads, 1024));
  scale_kernel<<<dim3(bx, grid_y(X.batch, "scale")), kThreads, 0, s>>>(X.data, X.rows, X.cols, X.ld,
                                                                       X.batch > 1 ? X.stride : 0, sc);
  check_launch("scale");
}

} // namespace symoc::cuda
