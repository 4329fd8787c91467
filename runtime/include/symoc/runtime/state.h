// Optimizer state: named float32 buffers and int64 counters, saved to a versioned,
// checksummed file (format in runtime/README.md). Buffers are created zero-filled on first
// use and never move afterwards, so a step can hold raw pointers across calls.
#pragma once

#include "symoc/runtime/core.h"

#include <initializer_list>
#include <map>
#include <string_view>

namespace symoc::rt {

// A state key given as parts ("fc1.weight", "/adam.", "m") whose concatenation is the
// name: looking it up builds no string, so steady-state steps allocate nothing.
struct Key {
  std::string_view part[4];
  size_t n = 0;
  Key(std::string_view a) : part{a}, n(1) {}
  Key(const std::string &a) : part{a}, n(1) {}
  Key(const char *a) : part{a}, n(1) {}
  Key(std::string_view a, std::string_view b, std::string_view c = {}, std::string_view d = {})
      : part{a, b, c, d}, n(4) {}
  std::string str() const;
};

// Orders std::string and Key by their concatenated text (for heterogeneous map lookup).
struct KeyLess {
  using is_transparent = void;
  static int compare(const std::string &s, const Key &k);
  bool operator()(const std::string &a, const std::string &b) const { return a < b; }
  bool operator()(const std::string &a, const Key &b) const { return compare(a, b) < 0; }
  bool operator()(const Key &a, const std::string &b) const { return compare(b, a) > 0; }
};

class State {
public:
  // `fingerprint` identifies the model + plan that owns this state (generated code passes
  // a hash of both). load() refuses a file written for another fingerprint.
  explicit State(std::string fingerprint = "");
  State(State &&) = default;
  State &operator=(State &&) = default;

  const std::string &fingerprint() const { return fingerprint_; }

  // The named buffer, zero-filled on first use; a later request with another shape throws
  // an Error naming the buffer (typically: state loaded for a different model or plan).
  float *buffer(const Key &name, std::initializer_list<int64_t> shape) {
    return buffer(name, shape.begin(), shape.size());
  }
  float *buffer(const Key &name, const std::vector<int64_t> &shape) {
    return buffer(name, shape.data(), shape.size());
  }
  // Looking up an existing buffer allocates nothing (steps after the first stay allocation-free).
  float *buffer(const Key &name, const int64_t *dims, size_t ndim);
  bool has_buffer(const std::string &name) const { return buffers_.count(name) != 0; }
  const std::vector<int64_t> &shape(const std::string &name) const;
  // Read-only access for tests and tools; throws if absent.
  const float *data(const std::string &name) const;

  // Named int64 counters (step counts, skip counts), created at 0.
  int64_t &counter(const Key &name);
  int64_t counter_value(const std::string &name) const; // 0 when absent

  std::vector<std::string> buffer_names() const;
  size_t allocation_count() const { return allocations_; }
  size_t bytes() const;

  void save(const std::string &path) const;
  // Throws Error("<path>: ...") on a missing/truncated/corrupt file, a version this runtime
  // cannot read, or (when expected_fingerprint is non-empty) a fingerprint mismatch.
  static State load(const std::string &path, const std::string &expected_fingerprint);

private:
  struct Buffer {
    std::vector<int64_t> shape;
    std::vector<float> data;
  };
  std::string fingerprint_;
  std::map<std::string, Buffer, KeyLess> buffers_;
  std::map<std::string, int64_t, KeyLess> counters_;
  size_t allocations_ = 0;
};

// State-file constants (documented in runtime/README.md).
constexpr char kStateMagic[8] = {'S', 'Y', 'M', 'O', 'C', 'S', 'T', '\0'};
constexpr uint32_t kStateVersion = 1;

// CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320) as used by zlib; exposed for tests.
uint32_t crc32(const void *data, size_t n, uint32_t crc = 0);

} // namespace symoc::rt
