// Internal: per-matrix sums of products in two deterministic passes (used by the row ops and
// by the Newton-Schulz normalization).
#pragma once

#include "common.cuh"

namespace symoc::cuda::detail {

constexpr int kPartials = 64; // blocks per matrix in the first pass

// part[b * kPartials + p] = partial sum over matrix b of X*Y (Y null: X*X), in double.
void sum_products_partials(const float *X, const float *Y, int64_t batch, int64_t rows, int64_t cols, int64_t ldx,
                           int64_t sx, int64_t ldy, int64_t sy, double *part, cudaStream_t s);

// Fixed-order total of the n partials of matrix b (n = kPartials: sum_products_partials'
// layout; n = 1: one total per matrix given by the caller).
__device__ inline double partial_total(const double *part, int64_t b, int n = kPartials) {
  double t = 0;
  for (int p = 0; p < n; ++p) t += part[b * n + p];
  return t;
}

} // namespace symoc::cuda::detail
