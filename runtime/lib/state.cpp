#include "symoc/runtime/state.h"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <iterator>

namespace symoc::rt {

uint32_t crc32(const void *data, size_t n, uint32_t crc) {
  static uint32_t table[256];
  static bool init = [] {
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      table[i] = c;
    }
    return true;
  }();
  (void)init;
  const auto *p = static_cast<const unsigned char *>(data);
  crc = ~crc;
  for (size_t i = 0; i < n; ++i) crc = table[(crc ^ p[i]) & 0xFF] ^ (crc >> 8);
  return ~crc;
}

std::string Key::str() const {
  std::string s;
  for (size_t i = 0; i < n; ++i) s.append(part[i].data(), part[i].size());
  return s;
}

int KeyLess::compare(const std::string &s, const Key &k) {
  size_t pos = 0;
  for (size_t i = 0; i < k.n; ++i)
    for (char c : k.part[i]) {
      if (pos == s.size()) return -1;
      const auto a = static_cast<unsigned char>(s[pos]), b = static_cast<unsigned char>(c);
      if (a != b) return a < b ? -1 : 1;
      ++pos;
    }
  return pos == s.size() ? 0 : 1;
}

State::State(std::string fingerprint) : fingerprint_(std::move(fingerprint)) {}

namespace {
std::string shape_str(const std::vector<int64_t> &s) {
  std::string r;
  for (size_t i = 0; i < s.size(); ++i) r += (i ? "x" : "") + std::to_string(s[i]);
  return r.empty() ? "scalar" : r;
}
} // namespace

float *State::buffer(const Key &key, const int64_t *dims, size_t ndim) {
  auto it = buffers_.find(key);
  if (it != buffers_.end()) {
    const std::string &name = it->first;
    const auto &have = it->second.shape;
    if (have.size() != ndim || !std::equal(have.begin(), have.end(), dims))
      throw Error("state buffer '" + name + "' has shape " + shape_str(have) + " but the step needs " +
                  shape_str(std::vector<int64_t>(dims, dims + ndim)) + " (state from a different model or plan?)");
    return it->second.data.data();
  }
  const std::string name = key.str();
  int64_t n = 1;
  for (size_t k = 0; k < ndim; ++k) {
    if (dims[k] < 0) throw Error("state buffer '" + name + "': negative dimension");
    n *= dims[k];
  }
  Buffer b;
  b.shape.assign(dims, dims + ndim);
  b.data.assign(size_t(n), 0.f);
  ++allocations_;
  return buffers_.emplace(name, std::move(b)).first->second.data.data();
}

const std::vector<int64_t> &State::shape(const std::string &name) const {
  auto it = buffers_.find(name);
  if (it == buffers_.end()) throw Error("state has no buffer '" + name + "'");
  return it->second.shape;
}

const float *State::data(const std::string &name) const {
  auto it = buffers_.find(name);
  if (it == buffers_.end()) throw Error("state has no buffer '" + name + "'");
  return it->second.data.data();
}

int64_t &State::counter(const Key &name) {
  auto it = counters_.find(name);
  if (it != counters_.end()) return it->second;
  ++allocations_;
  return counters_.emplace(name.str(), 0).first->second;
}

int64_t State::counter_value(const std::string &name) const {
  auto it = counters_.find(name);
  return it == counters_.end() ? 0 : it->second;
}

std::vector<std::string> State::buffer_names() const {
  std::vector<std::string> r;
  for (auto &kv : buffers_) r.push_back(kv.first);
  return r;
}

size_t State::bytes() const {
  size_t b = 0;
  for (auto &kv : buffers_) b += kv.second.data.size() * sizeof(float);
  return b;
}

// ---------------------------------------------------------------- serialization
namespace {
struct Writer {
  std::vector<unsigned char> out;
  void raw(const void *p, size_t n) {
    auto *c = static_cast<const unsigned char *>(p);
    out.insert(out.end(), c, c + n);
  }
  template <class T> void pod(T v) { raw(&v, sizeof v); } // little-endian hosts only (x86, arm64)
  void str(const std::string &s) {
    pod<uint32_t>(uint32_t(s.size()));
    raw(s.data(), s.size());
  }
};

struct Reader {
  const std::vector<unsigned char> &in;
  size_t pos, end;
  const std::string &path;
  void need(size_t n) {
    if (n > end - pos) throw Error(path + ": truncated state file (record at byte " + std::to_string(pos) + ")");
  }
  void raw(void *p, size_t n) {
    need(n);
    std::memcpy(p, in.data() + pos, n);
    pos += n;
  }
  template <class T> T pod() {
    T v;
    raw(&v, sizeof v);
    return v;
  }
  std::string str() {
    uint32_t n = pod<uint32_t>();
    need(n);
    std::string s(reinterpret_cast<const char *>(in.data() + pos), n);
    pos += n;
    return s;
  }
};
} // namespace

void State::save(const std::string &path) const {
  Writer w;
  w.raw(kStateMagic, sizeof kStateMagic);
  w.pod<uint32_t>(kStateVersion);
  w.pod<uint32_t>(0); // flags, reserved
  w.str(fingerprint_);
  w.pod<uint64_t>(buffers_.size());
  w.pod<uint64_t>(counters_.size());
  for (auto &kv : buffers_) {
    w.str(kv.first);
    w.pod<uint32_t>(uint32_t(kv.second.shape.size()));
    for (int64_t d : kv.second.shape) w.pod<int64_t>(d);
    w.pod<uint64_t>(kv.second.data.size());
    w.raw(kv.second.data.data(), kv.second.data.size() * sizeof(float));
  }
  for (auto &kv : counters_) {
    w.str(kv.first);
    w.pod<int64_t>(kv.second);
  }
  w.pod<uint32_t>(crc32(w.out.data(), w.out.size()));
  // Write to a temporary name, then rename: a crash mid-save leaves the old file intact.
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) throw Error(path + ": cannot open for writing");
    f.write(reinterpret_cast<const char *>(w.out.data()), std::streamsize(w.out.size()));
    if (!f) throw Error(path + ": write failed");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) throw Error(path + ": cannot rename " + tmp + " into place");
}

State State::load(const std::string &path, const std::string &expected_fingerprint) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error(path + ": cannot open state file");
  std::vector<unsigned char> in((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  const size_t min_size = sizeof kStateMagic + 4 + 4 + 4 + 8 + 8 + 4;
  if (in.size() < min_size) throw Error(path + ": not a symoc state file (too short)");
  if (std::memcmp(in.data(), kStateMagic, sizeof kStateMagic) != 0) throw Error(path + ": not a symoc state file (bad magic)");
  Reader r{in, sizeof kStateMagic, in.size() - 4, path};
  const uint32_t version = r.pod<uint32_t>();
  if (version != kStateVersion)
    throw Error(path + ": state file version " + std::to_string(version) + ", this runtime reads version " +
                std::to_string(kStateVersion));
  uint32_t stored;
  std::memcpy(&stored, in.data() + in.size() - 4, 4);
  if (crc32(in.data(), in.size() - 4) != stored) throw Error(path + ": checksum mismatch (file corrupt)");
  r.pod<uint32_t>(); // flags
  State s(r.str());
  if (!expected_fingerprint.empty() && s.fingerprint_ != expected_fingerprint)
    throw Error(path + ": state was written for model/plan '" + s.fingerprint_ + "', not '" + expected_fingerprint + "'");
  const uint64_t nb = r.pod<uint64_t>(), nc = r.pod<uint64_t>();
  for (uint64_t i = 0; i < nb; ++i) {
    std::string name = r.str();
    uint32_t nd = r.pod<uint32_t>();
    if (nd > 8) throw Error(path + ": buffer '" + name + "' has " + std::to_string(nd) + " dimensions");
    Buffer b;
    uint64_t count = 1;
    for (uint32_t k = 0; k < nd; ++k) {
      int64_t d = r.pod<int64_t>();
      if (d < 0) throw Error(path + ": buffer '" + name + "' has a negative dimension");
      b.shape.push_back(d);
      count *= uint64_t(d);
    }
    uint64_t n = r.pod<uint64_t>();
    if (n != count) throw Error(path + ": buffer '" + name + "' size does not match its shape");
    r.need(n * sizeof(float));
    b.data.resize(n);
    r.raw(b.data.data(), n * sizeof(float));
    s.buffers_.emplace(std::move(name), std::move(b));
  }
  for (uint64_t i = 0; i < nc; ++i) {
    std::string name = r.str();
    s.counters_[name] = r.pod<int64_t>();
  }
  if (r.pos != r.end) throw Error(path + ": trailing bytes after the last record");
  return s;
}

} // namespace symoc::rt
