// The CUDA backend's launch arithmetic (runtime/cuda/lib/kernels.h), host-only (CI has no GPU):
// a grid of grid_y_for(n) rows whose kernels loop `i = blockIdx.y; i < n; i += gridDim.y`
// stays within CUDA's gridDim.y limit and visits each of the n matrices exactly once.
#include "kernels.h"

#include <gtest/gtest.h>

#include <vector>

using symoc::rt::cuda::detail::grid_y_for;
using symoc::rt::cuda::detail::kMaxGridY;

TEST(CudaLaunchDims, GridYCoversEveryMatrixOnceWithinTheLimit) {
  for (int64_t n : {int64_t(1), int64_t(7), kMaxGridY - 1, kMaxGridY, kMaxGridY + 1, int64_t(3) * kMaxGridY + 5,
                    int64_t(200000)}) {
    const int64_t gy = grid_y_for(n);
    ASSERT_GE(gy, 1) << n;
    ASSERT_LE(gy, kMaxGridY) << n; // a larger gridDim.y is an invalid launch configuration
    std::vector<int> seen(size_t(n), 0);
    for (int64_t y = 0; y < gy; ++y)
      for (int64_t i = y; i < n; i += gy) ++seen[size_t(i)];
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(seen[size_t(i)], 1) << "n " << n << ", matrix " << i;
  }
  EXPECT_EQ(grid_y_for(0), 1); // an empty launch is skipped by the callers; never a zero grid
}
