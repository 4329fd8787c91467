#include "symoc/runtime/blas_core.h"

#include <cstdlib>
#include <cstring>
#include <mutex>

// OpenBLAS entry points, weak so that another BLAS (no DYNAMIC_ARCH) links too.
// gotoblas_dynamic_init() reads OPENBLAS_CORETYPE and fills the kernel table;
// gotoblas_dynamic_quit() clears it (both exported by every DYNAMIC_ARCH build).
extern "C" {
char *openblas_get_corename(void) __attribute__((weak));
void gotoblas_dynamic_init(void) __attribute__((weak));
void gotoblas_dynamic_quit(void) __attribute__((weak));
}

namespace symoc::rt {

namespace {

const char *bestCore() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
    return "SkylakeX";
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    return "Haswell";
#endif
  return nullptr;
}

bool isGenericFallback(const char *name) {
  return name && (strcasecmp(name, "Prescott") == 0 || strcasecmp(name, "Core2") == 0 ||
                  strcasecmp(name, "Nehalem") == 0);
}

BlasCore select() {
  BlasCore r;
  if (!openblas_get_corename)
    return r;
  r.before = r.after = openblas_get_corename();
  if (std::getenv("OPENBLAS_CORETYPE") || std::getenv("SYMOC_KEEP_BLAS_CORE"))
    return r;
  const char *best = bestCore();
  if (!best || !isGenericFallback(r.before.c_str()) || !gotoblas_dynamic_init ||
      !gotoblas_dynamic_quit)
    return r;
  // The table is re-read from OPENBLAS_CORETYPE; the variable is removed again so
  // that child processes make their own choice.
  setenv("OPENBLAS_CORETYPE", best, 1);
  gotoblas_dynamic_quit();
  gotoblas_dynamic_init();
  unsetenv("OPENBLAS_CORETYPE");
  r.after = openblas_get_corename();
  r.changed = r.after != r.before;
  return r;
}

} // namespace

BlasCore ensureBlasCore() {
  static std::once_flag once;
  static BlasCore result;
  std::call_once(once, [] { result = select(); });
  return result;
}

} // namespace symoc::rt
