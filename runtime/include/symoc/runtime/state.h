// Optimizer state: named float32 buffers and int64 counters, saved to a versioned,
// checksummed file (format in runtime/README.md). Buffers are created zero-filled on first
// use and never move afterwards, so a step can hold raw pointers across calls.
#pragma once

#include "symoc/runtime/core.h"

#include <map>

namespace symoc::rt {

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
  float *buffer(const std::string &name, const std::vector<int64_t> &shape);
  bool has_buffer(const std::string &name) const { return buffers_.count(name) != 0; }
  const std::vector<int64_t> &shape(const std::string &name) const;
  // Read-only access for tests and tools; throws if absent.
  const float *data(const std::string &name) const;

  // Named int64 counters (step counts, skip counts), created at 0.
  int64_t &counter(const std::string &name);
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
  std::map<std::string, Buffer> buffers_;
  std::map<std::string, int64_t> counters_;
  size_t allocations_ = 0;
};

// State-file constants (documented in runtime/README.md).
constexpr char kStateMagic[8] = {'S', 'Y', 'M', 'O', 'C', 'S', 'T', '\0'};
constexpr uint32_t kStateVersion = 1;

// CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320) as used by zlib; exposed for tests.
uint32_t crc32(const void *data, size_t n, uint32_t crc = 0);

} // namespace symoc::rt
