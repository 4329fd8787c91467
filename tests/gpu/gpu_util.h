// Helpers of the GPU matrix tests and benchmark: device buffers, poisoned outputs, error
// measures, a result table.
#pragma once

#include "symoc/cuda/matrix.h"
#include "symoc/runtime/runtime.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace gputest {

inline void ck(cudaError_t e, const char *what) {
  if (e != cudaSuccess) throw symoc::rt::Error(std::string(what) + ": " + cudaGetErrorString(e));
}

template <class T> struct Dev {
  T *p = nullptr;
  size_t n = 0;
  Dev() = default;
  explicit Dev(size_t n) : n(n) { ck(cudaMalloc(&p, std::max<size_t>(n, 1) * sizeof(T)), "cudaMalloc"); }
  ~Dev() { if (p) cudaFree(p); }
  Dev(const Dev &) = delete;
  Dev &operator=(const Dev &) = delete;
  Dev(Dev &&o) noexcept : p(o.p), n(o.n) { o.p = nullptr, o.n = 0; }
  void up(const std::vector<T> &h) { ck(cudaMemcpy(p, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice), "upload"); }
  std::vector<T> down() const {
    std::vector<T> h(n);
    ck(cudaMemcpy(h.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost), "download");
    return h;
  }
  void poison() { ck(cudaMemset(p, 0xff, n * sizeof(T)), "poison"); } // NaN pattern
};

inline std::vector<float> randn(std::mt19937 &rng, size_t n, float scale = 1.f) {
  std::normal_distribution<float> d(0.f, scale);
  std::vector<float> v(n);
  for (auto &x : v) x = d(rng);
  return v;
}

// A strided host/device batch with padding (ld > cols, stride > rows * ld) to catch writes
// outside the matrices and unwritten elements (the padding keeps the NaN poison).
struct HostBatch {
  int64_t batch, rows, cols, ld, stride;
  std::vector<float> h;
  HostBatch(int64_t b, int64_t r, int64_t c, int64_t pad = 3)
      : batch(b), rows(r), cols(c), ld(c + pad), stride(r * (c + pad) + pad), h(size_t(b * (r * (c + pad) + pad))) {
    std::fill(h.begin(), h.end(), std::nanf(""));
  }
  float &at(int64_t b, int64_t i, int64_t j) { return h[size_t(b * stride + i * ld + j)]; }
  float at(int64_t b, int64_t i, int64_t j) const { return h[size_t(b * stride + i * ld + j)]; }
  symoc::rt::MatView view(int64_t b) { return symoc::rt::MatView(h.data() + b * stride, rows, cols, ld); }
  symoc::cuda::Batch dev(float *p) const { return symoc::cuda::Batch(p, batch, rows, cols, ld, stride); }
  void fill_randn(std::mt19937 &rng, float scale = 1.f) {
    std::normal_distribution<float> d(0.f, scale);
    for (int64_t b = 0; b < batch; ++b)
      for (int64_t i = 0; i < rows; ++i)
        for (int64_t j = 0; j < cols; ++j) at(b, i, j) = d(rng);
  }
  // Interior all finite, padding all NaN (never written).
  bool written_exactly(std::string &why) const {
    for (int64_t e = 0; e < int64_t(h.size()); ++e) {
      const int64_t b = e / stride, r = e % stride, i = r / ld, j = r % ld;
      const bool inside = i < rows && j < cols;
      if (inside && !std::isfinite(h[size_t(e)])) {
        why = "unwritten or non-finite element (" + std::to_string(b) + "," + std::to_string(i) + "," + std::to_string(j) + ")";
        return false;
      }
      if (!inside && !std::isnan(h[size_t(e)])) {
        why = "write outside the matrix at offset " + std::to_string(e);
        return false;
      }
    }
    return true;
  }
};

// ||a - b||_F / ||b||_F over one matrix.
inline double rel_err(const symoc::rt::MatView &a, const symoc::rt::MatView &b) {
  double num = 0, den = 0;
  for (int64_t i = 0; i < a.rows; ++i)
    for (int64_t j = 0; j < a.cols; ++j) {
      const double d = double(a(i, j)) - b(i, j);
      num += d * d;
      den += double(b(i, j)) * b(i, j);
    }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

struct Table {
  struct Row {
    std::string name;
    double value, limit;
    bool pass;
    std::string note;
  };
  std::vector<Row> rows;
  void add(const std::string &name, double value, double limit, const std::string &note = "") {
    const bool pass = std::isfinite(value) && value <= limit;
    rows.push_back({name, value, limit, pass, note});
    std::printf("%-58s %10.3e  <= %9.2e  %s %s\n", name.c_str(), value, limit, pass ? "PASS" : "FAIL", note.c_str());
    std::fflush(stdout);
  }
  void fail(const std::string &name, const std::string &why) {
    rows.push_back({name, NAN, 0, false, why});
    std::printf("%-58s %10s  %11s  FAIL %s\n", name.c_str(), "-", "-", why.c_str());
    std::fflush(stdout);
  }
  int failures() const {
    int f = 0;
    for (auto &r : rows) f += !r.pass;
    return f;
  }
};

} // namespace gputest
