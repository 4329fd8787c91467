// Core types of the symoc runtime: errors, matrix views, the execution context and its
// workspace. No MLIR, no CUDA: a CUDA backend adds a Device value and a second
// implementation of the kernels behind the same Context, so generated code (which only
// passes a Context, a State, Param descriptors and hyper-parameters) does not change.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace symoc::rt {

// Every runtime failure (bad shape, corrupt state file, unsupported configuration) is an
// Error with a one-line message naming the buffer/file and the problem.
class Error : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

// Row-major float32 matrix view over caller-owned memory. `ld` is the row stride.
struct MatView {
  float *data = nullptr;
  int64_t rows = 0, cols = 0, ld = 0;
  MatView() = default;
  MatView(float *d, int64_t r, int64_t c) : data(d), rows(r), cols(c), ld(c) {}
  MatView(float *d, int64_t r, int64_t c, int64_t l) : data(d), rows(r), cols(c), ld(l) {}
  float &operator()(int64_t i, int64_t j) const { return data[i * ld + j]; }
  int64_t size() const { return rows * cols; }
};

enum class Device { CPU /* CUDA: a later backend */ };

// Scratch memory owned by the Context. Allocation happens in frames (RAII, nestable). The
// first call of a step may overflow the arena; when the outermost frame closes, the arena
// is regrown once to the peak seen, so every later call with the same shapes allocates
// nothing. allocation_count() makes that checkable.
class Workspace {
public:
  Workspace() = default;
  Workspace(const Workspace &) = delete;
  Workspace &operator=(const Workspace &) = delete;

  class Frame {
  public:
    explicit Frame(Workspace &ws);
    ~Frame();
    Frame(const Frame &) = delete;
    Frame &operator=(const Frame &) = delete;
    float *floats(size_t n);                 // uninitialised
    double *doubles(size_t n);
    int *ints(size_t n);
    float *zeros(size_t n);
    MatView mat(int64_t rows, int64_t cols) { return MatView(floats(size_t(rows * cols)), rows, cols); }
    // Uninitialised storage for n trivially copyable objects (pointer tables, descriptors).
    template <class T> T *array(size_t n) { return static_cast<T *>(ws_.take(n * sizeof(T))); }

  private:
    Workspace &ws_;
    size_t saved_top_;
  };

  size_t allocation_count() const { return allocations_; }
  size_t capacity_bytes() const { return capacity_; }

private:
  void *take(size_t bytes);
  std::unique_ptr<unsigned char[]> arena_;
  size_t capacity_ = 0, top_ = 0, peak_ = 0, overflow_bytes_ = 0;
  int depth_ = 0;
  std::vector<std::unique_ptr<unsigned char[]>> overflow_;
  size_t allocations_ = 0;
};

struct ContextOptions {
  Device device = Device::CPU;
  int threads = 0; // 0: leave OpenBLAS / OpenMP defaults; otherwise set both
};

// Counters a training loop may want to log.
struct Stats {
  int64_t steps = 0;             // step() calls
  int64_t skipped_nonfinite = 0; // blocks whose step was skipped for a NaN/Inf gradient
  int64_t zeroed_nonfinite = 0;  // blocks whose non-finite entries were replaced by 0
};

class Context {
public:
  explicit Context(ContextOptions opts = {});
  Device device() const { return opts_.device; }
  int threads() const { return threads_; }
  Workspace &workspace() { return ws_; }
  Stats &stats() { return stats_; }
  const Stats &stats() const { return stats_; }

private:
  ContextOptions opts_;
  int threads_ = 1;
  Workspace ws_;
  Stats stats_;
};

} // namespace symoc::rt
