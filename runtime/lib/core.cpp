#include "symoc/runtime/core.h"
#include "symoc/runtime/blas_core.h"

#include <algorithm>
#include <cblas.h>
#include <cstring>
#ifdef _OPENMP
#include <omp.h>
#endif

extern "C" void openblas_set_num_threads(int);
extern "C" int openblas_get_num_threads(void);

namespace symoc::rt {

namespace {
constexpr size_t kAlign = 64; // cache line; also keeps AVX-512 loads aligned
size_t round_up(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }
} // namespace

void *Workspace::take(size_t bytes) {
  bytes = round_up(std::max<size_t>(bytes, 1));
  if (top_ + bytes <= capacity_) {
    void *p = arena_.get() + top_;
    top_ += bytes;
    peak_ = std::max(peak_, top_ + overflow_bytes_);
    return p;
  }
  // Does not fit: a separate block, kept alive until the outermost frame closes (earlier
  // pointers into the arena stay valid). The arena is regrown then.
  overflow_.emplace_back(new unsigned char[bytes + kAlign]);
  ++allocations_;
  overflow_bytes_ += bytes;
  peak_ = std::max(peak_, top_ + overflow_bytes_);
  auto addr = reinterpret_cast<uintptr_t>(overflow_.back().get());
  return reinterpret_cast<void *>(round_up(addr));
}

Workspace::Frame::Frame(Workspace &ws) : ws_(ws), saved_top_(ws.top_) { ++ws_.depth_; }

Workspace::Frame::~Frame() {
  ws_.top_ = saved_top_;
  if (--ws_.depth_ == 0 && !ws_.overflow_.empty()) {
    ws_.overflow_.clear();
    ws_.overflow_bytes_ = 0;
    ws_.capacity_ = ws_.peak_ + kAlign;
    ws_.arena_.reset(new unsigned char[ws_.capacity_ + kAlign]);
    ++ws_.allocations_;
    // Start the arena on a 64-byte boundary; capacity_ has kAlign bytes of slack for it.
    auto addr = reinterpret_cast<uintptr_t>(ws_.arena_.get());
    size_t shift = round_up(addr) - addr;
    ws_.top_ = shift; // first allocation starts on a 64-byte boundary
  }
}

float *Workspace::Frame::floats(size_t n) { return static_cast<float *>(ws_.take(n * sizeof(float))); }
double *Workspace::Frame::doubles(size_t n) { return static_cast<double *>(ws_.take(n * sizeof(double))); }
int *Workspace::Frame::ints(size_t n) { return static_cast<int *>(ws_.take(n * sizeof(int))); }
float *Workspace::Frame::zeros(size_t n) {
  float *p = floats(n);
  std::memset(p, 0, n * sizeof(float));
  return p;
}

Context::Context(ContextOptions opts) : opts_(opts) {
  ensureBlasCore(); // before any BLAS call: see blas_core.h
  if (opts_.threads > 0) {
    openblas_set_num_threads(opts_.threads);
#ifdef _OPENMP
    omp_set_num_threads(opts_.threads);
#endif
    threads_ = opts_.threads;
  } else {
#ifdef _OPENMP
    threads_ = omp_get_max_threads();
#else
    threads_ = openblas_get_num_threads();
#endif
  }
}

} // namespace symoc::rt
