// Strided views of Symo's runs inside one member matrix (SymoAux::Direct in matrix_rules.cpp):
// plain integer geometry, no CUDA, so that the host tests (tests/runtime/test_symo_views.cpp)
// check it without a GPU.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace symoc::rt::cuda {

// A strided batch in the member buffer of all blocks (block b's member at b * r * cc, row
// major r x cc): matrix k of the view starts at off + k * stride, rows x cols with leading
// dimension ld.
struct RunView {
  int64_t off, batch, rows, cols, ld, stride;
};

// The runs of one class (length len, offsets offs on the stepped side, the same in each of nb
// blocks) as views: rows = true: the runs are row ranges [off, off + len) of the member (each
// view matrix is the run itself, len x cc); false: column ranges (each view matrix is the
// run's transpose, r x len). One view over all nb * |offs| runs (block-major, as the packed
// batch) when the runs tile the rows contiguously; else one view per block (over its runs)
// when the offsets are contiguous and nb < |offs|; else one per run (over the blocks).
// None for square column runs (len == r): the plan iterates on a matrix as given unless it is
// tall, so it would iterate on the run's transpose there, equal only in exact arithmetic
// (measured on an H200: 0.015 apart in bf16 on LLaMA's 32 x 32 q_proj); a non-square run
// reaches the same wide orientation either way.
inline std::vector<RunView> symo_run_views(bool rows, int64_t r, int64_t cc, int64_t len,
                                           const std::vector<int64_t> &offs, int64_t nb) {
  std::vector<RunView> v;
  const int64_t nq = int64_t(offs.size());
  if (nq == 0 || nb < 1 || len < 1 || (!rows && len == r)) return v;
  const int64_t vr = rows ? len : r, vc = rows ? cc : len, step = rows ? len * cc : len;
  bool contiguous = true;
  for (int64_t q = 0; q < nq; ++q) contiguous = contiguous && offs[std::size_t(q)] == offs[0] + q * len;
  const int64_t at0 = rows ? offs[0] * cc : offs[0];
  if (rows && contiguous && offs[0] == 0 && nq * len == r) {
    v.push_back(RunView{0, nb * nq, vr, vc, cc, step});
  } else if (contiguous && nb < nq) {
    for (int64_t b = 0; b < nb; ++b) v.push_back(RunView{b * r * cc + at0, nq, vr, vc, cc, step});
  } else {
    for (int64_t q = 0; q < nq; ++q)
      v.push_back(RunView{rows ? offs[std::size_t(q)] * cc : offs[std::size_t(q)], nb, vr, vc, cc, r * cc});
  }
  return v;
}

} // namespace symoc::rt::cuda
