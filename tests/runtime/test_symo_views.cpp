// symo_run_views (runtime/cuda/lib/symo_views.h): the CUDA backend hands Symo's runs to the
// Newton-Schulz plan as strided views of the member matrix instead of packed copies. Each view
// matrix must be exactly one run (rows) or its transpose (columns), and every run must appear
// once: checked element by element against the packing's address map (PackEntry in
// matrix_rules.cpp), on row and column runs, tiling and partial, contiguous and scattered.
#include "symo_views.h"

#include <gtest/gtest.h>

#include <map>
#include <random>
#include <set>

using symoc::rt::cuda::RunView;
using symoc::rt::cuda::symo_run_views;

namespace {

struct Case {
  bool rows;
  int64_t r, cc, len;
  std::vector<int64_t> offs;
  int64_t nb;
};

// Address of element (i, j) of run q of block b (the run as Z has it: len x T).
int64_t run_addr(const Case &c, int64_t b, int64_t q, int64_t i, int64_t j) {
  const int64_t off = c.offs[size_t(q)];
  return b * c.r * c.cc + (c.rows ? (off + i) * c.cc + j : j * c.cc + off + i);
}

void check_case(const Case &c) {
  SCOPED_TRACE(::testing::Message() << (c.rows ? "rows" : "cols") << " r=" << c.r << " cc=" << c.cc << " len=" << c.len
                                    << " runs=" << c.offs.size() << " nb=" << c.nb);
  const int64_t T = c.rows ? c.cc : c.r;
  const std::vector<RunView> views = symo_run_views(c.rows, c.r, c.cc, c.len, c.offs, c.nb);
  if (!c.rows && c.len == c.r) { // square column runs are packed (SquareColumnRunsArePacked)
    EXPECT_TRUE(views.empty());
    return;
  }
  ASSERT_FALSE(views.empty());
  // The run whose (0, 0) element lies at an address.
  std::map<int64_t, std::pair<int64_t, int64_t>> first;
  for (int64_t b = 0; b < c.nb; ++b)
    for (int64_t q = 0; q < int64_t(c.offs.size()); ++q) first[run_addr(c, b, q, 0, 0)] = {b, q};
  std::set<std::pair<int64_t, int64_t>> seen;
  int64_t total = 0;
  for (const RunView &v : views) {
    EXPECT_EQ(v.rows, c.rows ? c.len : T);
    EXPECT_EQ(v.cols, c.rows ? T : c.len);
    EXPECT_GE(v.ld, v.cols);
    EXPECT_GE(v.batch, 1);
    for (int64_t k = 0; k < v.batch; ++k) {
      const int64_t base = v.off + k * v.stride;
      auto it = first.find(base);
      ASSERT_NE(it, first.end()) << "view matrix " << k << " starts at no run";
      const auto [b, q] = it->second;
      EXPECT_TRUE(seen.insert({b, q}).second) << "run " << q << " of block " << b << " twice";
      for (int64_t a = 0; a < v.rows; ++a)
        for (int64_t e = 0; e < v.cols; ++e) {
          const int64_t i = c.rows ? a : e, j = c.rows ? e : a; // the run's element
          ASSERT_EQ(base + a * v.ld + e, run_addr(c, b, q, i, j)) << "element (" << a << ", " << e << ")";
        }
      ++total;
    }
  }
  EXPECT_EQ(total, c.nb * int64_t(c.offs.size()));
}

std::vector<int64_t> range_offs(int64_t from, int64_t n, int64_t len) {
  std::vector<int64_t> o;
  for (int64_t q = 0; q < n; ++q) o.push_back(from + q * len);
  return o;
}

} // namespace

TEST(SymoRunViews, RowRunsTilingIsOneView) { // GPT-2's c_attn: 18 heads of 128 rows of 2304 x 768
  const Case c{true, 24, 5, 4, range_offs(0, 6, 4), 3};
  check_case(c);
  EXPECT_EQ(symo_run_views(c.rows, c.r, c.cc, c.len, c.offs, c.nb).size(), 1u);
}

TEST(SymoRunViews, ColumnRunsOnePerRunOrBlock) { // c_proj: 6 column runs of 128 (12 blocks); c_fc: one run
  check_case(Case{false, 6, 12, 2, range_offs(0, 6, 2), 12});
  check_case(Case{false, 6, 12, 2, range_offs(0, 6, 2), 2}); // fewer blocks than runs: per block
  check_case(Case{false, 7, 3, 3, {0}, 4});
  EXPECT_EQ(symo_run_views(false, 6, 12, 2, range_offs(0, 6, 2), 2).size(), 2u);
  EXPECT_EQ(symo_run_views(false, 6, 12, 2, range_offs(0, 6, 2), 12).size(), 6u);
}

TEST(SymoRunViews, PartialAndScatteredRuns) { // a class holds the runs of one length among other pieces
  check_case(Case{true, 20, 3, 4, range_offs(4, 3, 4), 2});  // contiguous, not from 0
  check_case(Case{true, 20, 3, 4, range_offs(4, 3, 4), 5});
  check_case(Case{true, 20, 3, 3, {0, 7, 15}, 2});           // scattered
  check_case(Case{false, 5, 20, 3, {1, 9, 17}, 1});
  check_case(Case{false, 5, 20, 1, range_offs(0, 20, 1), 3}); // Z2-like runs of one
}

TEST(SymoRunViews, RandomLayouts) {
  std::mt19937 rng(7);
  auto pick = [&](int lo, int hi) { return int64_t(std::uniform_int_distribution<int>(lo, hi)(rng)); };
  for (int t = 0; t < 200; ++t) {
    Case c;
    c.rows = pick(0, 1) == 1;
    c.len = pick(1, 5);
    const int64_t side = c.len * pick(1, 6) + pick(0, 4), other = pick(1, 7);
    c.r = c.rows ? side : other, c.cc = c.rows ? other : side;
    for (int64_t at = pick(0, 2); at + c.len <= side; at += c.len + (pick(0, 2) == 0 ? pick(1, 3) : 0))
      c.offs.push_back(at);
    if (c.offs.empty()) continue;
    c.nb = pick(1, 4);
    check_case(c);
  }
}

TEST(SymoRunViews, NothingToView) {
  EXPECT_TRUE(symo_run_views(true, 4, 4, 2, {}, 3).empty());
  EXPECT_TRUE(symo_run_views(true, 4, 4, 2, {0, 2}, 0).empty());
}

// A square column run would reach the Newton-Schulz plan as its transpose (iterated as given,
// not re-oriented), so it is packed instead; square row runs are the run itself.
TEST(SymoRunViews, SquareColumnRunsArePacked) {
  EXPECT_TRUE(symo_run_views(false, 32, 32, 32, {0}, 2).empty());     // LLaMA fixture's q_proj
  EXPECT_TRUE(symo_run_views(false, 8, 16, 8, {0, 8}, 3).empty());     // two 8 x 8 column runs
  check_case(Case{true, 8, 8, 8, {0}, 2});                            // a square row run: viewed
  check_case(Case{false, 8, 16, 4, {0, 4, 8, 12}, 3});                // 8 x 4: viewed
}
