// The arithmetic of the three-pass TF32 products (runtime/cuda/lib/tf32x3_split.h), host-only:
// the split of a float into its TF32 rounding and the exact rest, the accuracy the three
// passes give under a tensor core that truncates its inputs to TF32 (the worst case; the
// device's own products are checked against fp64 by tests/gpu/matrix_test.cpp), and the plan
// of how much of a batch one pass splits in a given scratch.
#include "tf32x3_split.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

namespace {
using namespace symoc::cuda::detail;

uint32_t bits(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return u;
}
float from_bits(uint32_t u) {
  float x;
  std::memcpy(&x, &u, sizeof x);
  return x;
}
// What a TF32 tensor core may read of x at worst: its low 13 mantissa bits dropped.
float truncate_tf32(float x) { return from_bits(bits(x) & 0xffffe000u); }
// The TF32 value nearest to a normal x, ties away from zero, in double arithmetic.
double nearest_tf32(float x) {
  const double ax = std::fabs(double(x));
  const double q = std::ldexp(1.0, std::ilogb(ax) - 10); // TF32's spacing at x
  return std::copysign(std::floor(ax / q + 0.5) * q, double(x));
}

TEST(Tf32x3Split, HiIsTheNearestTf32AndLoTheExactRest) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> mant(1.f, 2.f);
  std::uniform_int_distribution<int> expo(-120, 120), sign(0, 1);
  for (int t = 0; t < 200000; ++t) {
    const float x = std::ldexp(mant(rng), expo(rng)) * (sign(rng) ? -1.f : 1.f);
    float hi, lo;
    tf32_split(x, hi, lo);
    ASSERT_EQ(bits(hi) & 0x1fffu, 0u) << x;                        // 10 mantissa bits
    ASSERT_EQ(double(hi), nearest_tf32(x)) << x;                   // the nearest one
    ASSERT_EQ(double(hi) + double(lo), double(x)) << x;            // exact in double
    ASSERT_EQ(hi + lo, x) << x;                                    // and in float
    ASSERT_LE(std::fabs(double(lo)), std::ldexp(std::fabs(double(x)), -11)) << x;
  }
}

TEST(Tf32x3Split, TiesRoundAwayFromZero) {
  const float up = from_bits(0x3f801000u); // 1 + 2^-11: halfway between 1 and 1 + 2^-10
  float hi, lo;
  tf32_split(up, hi, lo);
  EXPECT_EQ(hi, 1.f + std::ldexp(1.f, -10));
  tf32_split(-up, hi, lo);
  EXPECT_EQ(hi, -(1.f + std::ldexp(1.f, -10)));
  EXPECT_EQ(hi + lo, -up);
}

TEST(Tf32x3Split, SpecialValues) {
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  float hi, lo;
  for (float z : {0.f, -0.f}) {
    tf32_split(z, hi, lo);
    EXPECT_EQ(bits(hi), bits(z));
    EXPECT_EQ(lo, 0.f);
  }
  tf32_split(inf, hi, lo);
  EXPECT_EQ(hi, inf);
  EXPECT_EQ(lo, 0.f);
  tf32_split(-inf, hi, lo);
  EXPECT_EQ(hi, -inf);
  EXPECT_EQ(lo, 0.f);
  tf32_split(nan, hi, lo);
  EXPECT_TRUE(std::isnan(hi));
  EXPECT_EQ(lo, 0.f);
  tf32_split(FLT_MAX, hi, lo); // rounds up past the largest finite value
  EXPECT_EQ(hi, inf);
  EXPECT_EQ(lo, 0.f);
  // Subnormals and the smallest normals: still hi + lo == x exactly.
  for (uint32_t u : {0x00000001u, 0x00000fffu, 0x00001000u, 0x007fffffu, 0x00800000u, 0x00801000u}) {
    const float x = from_bits(u);
    tf32_split(x, hi, lo);
    EXPECT_EQ(bits(hi) & 0x1fffu, 0u) << u;
    EXPECT_EQ(hi + lo, x) << u;
  }
}

// hi_A hi_B + hi_A lo_B + lo_A hi_B through a tensor core that truncates each input to TF32,
// summed in double: every entry within 2^-19 of sum |a||b| of the exact product (the dropped
// lo lo is 2^-22, lo's truncation 2^-21 a term); one plain TF32 pass is off by ~2^-11.
TEST(Tf32x3Split, ThreePassesAreFp32Accurate) {
  std::mt19937 rng(11);
  std::normal_distribution<float> d(0.f, 1.f);
  std::uniform_int_distribution<int> sc(-20, 20);
  const int m = 24, n = 24, k = 512;
  std::vector<float> A(size_t(m * k)), B(size_t(k * n));
  for (int i = 0; i < m; ++i) {
    const float s = std::ldexp(1.f, sc(rng)); // rows of very different scales
    for (int l = 0; l < k; ++l) A[size_t(i * k + l)] = d(rng) * s;
  }
  for (auto &x : B) x = d(rng);
  double worst3 = 0, worst1 = 0;
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < n; ++j) {
      double exact = 0, mag = 0, three = 0, one = 0;
      for (int l = 0; l < k; ++l) {
        const float a = A[size_t(i * k + l)], b = B[size_t(l * n + j)];
        float ah, al, bh, bl;
        tf32_split(a, ah, al);
        tf32_split(b, bh, bl);
        exact += double(a) * double(b);
        mag += std::fabs(double(a) * double(b));
        three += double(truncate_tf32(ah)) * truncate_tf32(bl) + double(truncate_tf32(al)) * truncate_tf32(bh) +
                 double(truncate_tf32(ah)) * truncate_tf32(bh);
        one += double(truncate_tf32(a)) * truncate_tf32(b);
      }
      worst3 = std::max(worst3, std::fabs(three - exact) / mag);
      worst1 = std::max(worst1, std::fabs(one - exact) / mag);
    }
  EXPECT_LE(worst3, std::ldexp(1.0, -19));
  EXPECT_GE(worst1, 100 * worst3) << "one pass " << worst1 << ", three " << worst3;
}

// The Gram half (gram() with beta 0): Z = hi hi^T / 2 + lo hi^T, then Z + Z^T, is the three
// passes' G G^T (hi lo^T is lo hi^T's transpose), so it is as accurate: within 2^-19 of
// sum |g_il g_jl| per entry under truncating tensor cores with exact sums, exactly symmetric;
// halving hi hi^T is exact. Dropping the transpose (Z alone) or the half would be far off.
TEST(Tf32x3Split, GramHalfPlusItsTransposeIsTheGram) {
  std::mt19937 rng(12);
  std::normal_distribution<float> d(0.f, 1.f);
  std::uniform_int_distribution<int> sc(-20, 20);
  const int n = 20, k = 384;
  std::vector<float> G(size_t(n * k));
  for (int i = 0; i < n; ++i) {
    const float s = std::ldexp(1.f, sc(rng));
    for (int l = 0; l < k; ++l) G[size_t(i * k + l)] = d(rng) * s;
  }
  std::vector<float> hi(G.size()), lo(G.size());
  for (size_t e = 0; e < G.size(); ++e) {
    tf32_split(G[e], hi[e], lo[e]);
    hi[e] = truncate_tf32(hi[e]), lo[e] = truncate_tf32(lo[e]); // what the tensor core reads
  }
  std::vector<double> Z(size_t(n * n));
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j) {
      double hh = 0, lh = 0;
      for (int l = 0; l < k; ++l) {
        hh += double(hi[size_t(i * k + l)]) * hi[size_t(j * k + l)];
        lh += double(lo[size_t(i * k + l)]) * hi[size_t(j * k + l)];
      }
      Z[size_t(i * n + j)] = 0.5 * hh + lh;
    }
  double worst = 0, worst_z = 0, asym = 0;
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j) {
      double exact = 0, mag = 0;
      for (int l = 0; l < k; ++l) {
        const double p = double(G[size_t(i * k + l)]) * G[size_t(j * k + l)];
        exact += p, mag += std::fabs(p);
      }
      const double c = Z[size_t(i * n + j)] + Z[size_t(j * n + i)];
      asym = std::max(asym, std::fabs(c - (Z[size_t(j * n + i)] + Z[size_t(i * n + j)])));
      worst = std::max(worst, std::fabs(c - exact) / mag);
      worst_z = std::max(worst_z, std::fabs(Z[size_t(i * n + j)] - exact) / mag);
    }
  EXPECT_LE(worst, std::ldexp(1.0, -19));
  EXPECT_EQ(asym, 0.0);
  EXPECT_GE(worst_z, 0.1) << "Z alone would pass for the Gram: the test cannot see a missing transpose";
}

int64_t need(const Tf32x3Plan &p) { return p.a_floats + p.b_floats; }

TEST(Tf32x3Split, PlanTakesTheLargestChunkThatFits) {
  const int64_t al = 64;
  std::mt19937 rng(3);
  std::uniform_int_distribution<int64_t> side(1, 700), bt(1, 40);
  for (int t = 0; t < 2000; ++t) {
    const int64_t m = side(rng), n = side(rng), k = side(rng), batch = bt(rng);
    const bool shA = t % 3 == 0, shB = t % 5 == 0, same = t % 7 == 0 && m == n;
    const int64_t whole = tf32x3_whole_floats(m, n, k, shA, shB || same, batch, al);
    std::uniform_int_distribution<int64_t> fl(0, whole + 1000);
    const int64_t floats = fl(rng);
    const Tf32x3Plan p = plan_tf32x3(m, n, k, shA, shB, same, batch, floats, al);
    ASSERT_GE(p.chunk, 0);
    ASSERT_LE(p.chunk, batch);
    if (p.chunk == 0) {
      const Tf32x3Plan one = plan_tf32x3(m, n, k, shA, shB, same, 1, 1 << 30, al);
      ASSERT_GT(need(one) + 2 * al, floats) << "one matrix fits but the plan took none";
      continue;
    }
    ASSERT_LE(need(p) + 2 * al, floats);
    if (same) {
      ASSERT_EQ(p.b_floats, 0);
    }
    ASSERT_EQ(p.a_floats, tf32x3_split_floats(m * k, shA ? 1 : p.chunk, al));
    if (p.chunk < batch) { // one more matrix would not fit
      const Tf32x3Plan more = plan_tf32x3(m, n, k, shA, shB, same, p.chunk + 1, 1 << 30, al);
      ASSERT_GT(need(more) + 2 * al, floats);
    }
  }
}

TEST(Tf32x3Split, WholeBatchFitsItsOwnSize) {
  for (int64_t batch : {1, 3, 24}) {
    const int64_t w = tf32x3_whole_floats(768, 3072, 3072, false, false, batch, 64);
    EXPECT_EQ(plan_tf32x3(768, 3072, 3072, false, false, false, batch, w, 64).chunk, batch);
    EXPECT_LT(plan_tf32x3(768, 3072, 3072, false, false, false, batch, w - 1, 64).chunk, batch);
    // A shared operand is split once: it needs no more room for a larger batch.
    const int64_t ws = tf32x3_whole_floats(768, 3072, 3072, true, false, batch, 64);
    EXPECT_EQ(plan_tf32x3(768, 3072, 3072, true, false, false, batch, ws, 64).a_floats,
              tf32x3_split_floats(768 * 3072, 1, 64));
  }
  EXPECT_EQ(plan_tf32x3(300, 300, 300, false, false, false, 5, 1000, 64).chunk, 0); // not one matrix
}

// The hi hi pass's inner-dimension pieces cover [0, k) in order, none longer than kchunk
// rounded down to a multiple of 8, all but the last multiples of 8, as few as that allows,
// and kchunk 0 or a short k one piece.
TEST(Tf32x3Split, KChunksCoverTheInnerDimension) {
  EXPECT_TRUE(tf32x3_k_chunks(0, 1024).empty());
  for (int64_t k : {1, 7, 768, 1024, 1025, 2304, 3072, 5000, 50257})
    for (int64_t kc : {0, 1, 8, 13, 256, 1000, 1024, 4096}) {
      const std::vector<Tf32x3KChunk> c = tf32x3_k_chunks(k, kc);
      const int64_t cap = std::max<int64_t>(8, kc / 8 * 8);
      ASSERT_FALSE(c.empty());
      int64_t at = 0;
      for (size_t i = 0; i < c.size(); ++i) {
        ASSERT_EQ(c[i].k0, at) << "k " << k << " kchunk " << kc;
        ASSERT_GT(c[i].len, 0);
        if (kc > 0) {
          ASSERT_LE(c[i].len, cap) << "k " << k << " kchunk " << kc;
        }
        if (i + 1 < c.size()) {
          ASSERT_EQ(c[i].len % 8, 0);
        }
        at += c[i].len;
      }
      ASSERT_EQ(at, k);
      const int64_t fewest = kc <= 0 ? 1 : (k + cap - 1) / cap;
      EXPECT_EQ(int64_t(c.size()), fewest) << "k " << k << " kchunk " << kc;
    }
  // Balanced: GPT-2 small's 3072 in three 1024s, 2304 in three 768s.
  EXPECT_EQ(tf32x3_k_chunks(3072, 1024).size(), 3u);
  EXPECT_EQ(tf32x3_k_chunks(2304, 1024)[0].len, 768);
}

} // namespace
