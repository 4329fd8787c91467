//===- env.h - The CUDA backend's environment switches ---------------------===//
//
// Every SYMOC_CUDA_* variable the backend reads goes through these: a value it does not know
// is an error naming the variable and what it accepts (a typo must not silently pick the
// default). Unset or empty means the default.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "symoc/runtime/core.h"

#include <cstdint>
#include <cstdlib>
#include <initializer_list>
#include <string>

namespace symoc::rt::cuda::detail {

/// The variable's value, "" when unset.
inline std::string env_value(const char *name) {
  const char *v = std::getenv(name);
  return v ? v : "";
}

/// The variable's value when it is one of `choices`, "" when unset or empty; throws otherwise.
inline std::string env_choice(const char *name, std::initializer_list<const char *> choices) {
  const std::string v = env_value(name);
  if (v.empty()) return v;
  std::string list;
  for (const char *c : choices) {
    if (v == c) return v;
    list += list.empty() ? c : std::string(", ") + c;
  }
  throw Error(std::string(name) + "='" + v + "': expected one of " + list + " (or unset)");
}

/// A 0/1 switch: `fallback` when unset.
inline bool env_flag(const char *name, bool fallback) {
  const std::string v = env_choice(name, {"0", "1"});
  return v.empty() ? fallback : v == "1";
}

/// A whole number in [lo, hi] (`what` says what it counts), `fallback` when unset.
inline int64_t env_whole(const char *name, int64_t fallback, int64_t lo, int64_t hi, const char *what) {
  const std::string v = env_value(name);
  if (v.empty()) return fallback;
  char *end = nullptr;
  const long long x = std::strtoll(v.c_str(), &end, 10);
  const bool digits = v.find_first_not_of("-0123456789") == std::string::npos; // no spaces, no '+'
  if (!digits || *end || x < lo || x > hi)
    throw Error(std::string(name) + "='" + v + "': expected " + what + ", a whole number in " + std::to_string(lo) +
                " .. " + std::to_string(hi));
  return x;
}

/// SYMOC_CUDA_NS, read by the optimizer (own: its own cuBLAS loop for Muon groups) and by
/// every Newton-Schulz plan's tuning (standard: no Gram iteration); "" when unset (gram).
inline std::string env_ns_path() { return env_choice("SYMOC_CUDA_NS", {"gram", "standard", "own"}); }

} // namespace symoc::rt::cuda::detail
