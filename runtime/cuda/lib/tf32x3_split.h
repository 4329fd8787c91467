// Internal: the pieces of gemm_tf32x3.cu that are plain arithmetic, shared by its kernels and
// host code (SYMOC_HD) so that CI tests them without a GPU (tests/gpu/test_tf32x3_split.cpp):
// the TF32 split of one float and the plan of how many of a batch's matrices one pass splits.
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

#include "host_device.h"

namespace symoc::cuda::detail {

// x rounded to the nearest TF32 value (10 explicit mantissa bits; ties away from zero); inf
// and NaN pass unchanged, a finite x near FLT_MAX may round to inf.
SYMOC_HD inline float tf32_round(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  if ((u & 0x7f800000u) == 0x7f800000u) return x;
  u = (u + 0x1000u) & 0xffffe000u;
  float r;
  std::memcpy(&r, &u, sizeof r);
  return r;
}

// x = hi + lo exactly (Sterbenz: hi is within a factor 2 of x), hi a TF32 value, |lo| <=
// 2^-11 |x|. A non-finite hi gets lo = 0.
SYMOC_HD inline void tf32_split(float x, float &hi, float &lo) {
  hi = tf32_round(x);
  lo = (hi - hi == 0.f) ? x - hi : 0.f; // hi - hi is NaN exactly when hi is inf or NaN
}

// Floats of the aligned hi and lo copies of `count` matrices of `elems` entries (align: the
// allocator's alignment in floats).
inline int64_t tf32x3_split_floats(int64_t elems, int64_t count, int64_t align) {
  const int64_t n = elems * count;
  return 2 * ((n + align - 1) / align * align);
}

// Floats that hold a whole batch's split operands in one chunk (what plan_tf32x3 needs for
// chunk == batch, with the carving margin).
inline int64_t tf32x3_whole_floats(int64_t m, int64_t n, int64_t k, bool sharedA, bool sharedB, int64_t batch,
                                   int64_t align) {
  return tf32x3_split_floats(m * k, sharedA ? 1 : batch, align) + tf32x3_split_floats(k * n, sharedB ? 1 : batch, align) +
         2 * align;
}

// How a product C = op(A) op(B) (m x n x k over `batch` matrices) splits its operands in
// `floats` of scratch: the shared operands (stride 0) once, a Gram product's one operand
// (same) once, then `chunk` matrices of the batch at a time; chunk 0: not even one fits.
struct Tf32x3Plan {
  int64_t chunk = 0;
  int64_t a_floats = 0, b_floats = 0; // the two buffers (b_floats 0 for a Gram product)
};
inline Tf32x3Plan plan_tf32x3(int64_t m, int64_t n, int64_t k, bool sharedA, bool sharedB, bool same,
                              int64_t batch, int64_t floats, int64_t align) {
  const bool shB = sharedB || same;
  const auto a = [&](int64_t c) { return tf32x3_split_floats(m * k, sharedA ? 1 : c, align); };
  const auto b = [&](int64_t c) { return same ? 0 : tf32x3_split_floats(k * n, shB ? 1 : c, align); };
  // Each buffer is carved at an aligned offset: at most `align` floats lost per buffer.
  const int64_t room = floats - 2 * align;
  const auto fits = [&](int64_t c) { return a(c) + b(c) <= room; };
  Tf32x3Plan p;
  if (batch < 1 || !fits(1)) return p;
  int64_t lo = 1, hi = batch; // the need grows with the chunk: the largest that fits
  while (lo < hi) {
    const int64_t mid = hi - (hi - lo) / 2;
    if (fits(mid)) lo = mid;
    else hi = mid - 1;
  }
  p.chunk = lo, p.a_floats = a(lo), p.b_floats = b(lo);
  return p;
}

// The inner dimension of the hi hi pass in pieces [k0, k0 + len) of at most `kchunk` rounded
// down to a multiple of 8 (at least 8; kchunk 0: one piece), balanced, each but the last a
// multiple of 8 long (the offsets stay 32-byte aligned where the leading dimension is a
// multiple of 4 floats).
struct Tf32x3KChunk {
  int64_t k0 = 0, len = 0;
};
inline std::vector<Tf32x3KChunk> tf32x3_k_chunks(int64_t k, int64_t kchunk) {
  std::vector<Tf32x3KChunk> out;
  if (k <= 0) return out;
  const int64_t cap = kchunk / 8 * 8 > 8 ? kchunk / 8 * 8 : 8;
  if (kchunk <= 0 || k <= cap) return {{0, k}};
  const int64_t pieces = (k + cap - 1) / cap;
  const int64_t len = ((k + pieces - 1) / pieces + 7) / 8 * 8; // <= cap: cap is a multiple of 8
  for (int64_t k0 = 0; k0 < k; k0 += len) out.push_back({k0, k - k0 < len ? k - k0 : len});
  return out;
}

} // namespace symoc::cuda::detail
