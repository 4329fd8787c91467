//===- blas_core.h - Make OpenBLAS use the kernels this CPU can run ---------===//
//
// Debian bookworm's OpenBLAS (0.3.21, DYNAMIC_ARCH) picks its kernels from a table
// of CPU models. A CPU newer than the table (e.g. Intel family 6 model 207, the
// Xeons of current cloud machines) gets the *Prescott* (SSE3) kernels: dgemm runs
// about 5x slower than with the AVX-512 ones. ensureBlasCore() re-selects the
// kernels from the CPU's features when that happened.
//
//===----------------------------------------------------------------------===//
#ifndef SYMOC_RUNTIME_BLAS_CORE_H
#define SYMOC_RUNTIME_BLAS_CORE_H

#include <string>

namespace symoc::rt {

struct BlasCore {
  std::string before; // OpenBLAS's own choice ("" when the BLAS is not OpenBLAS)
  std::string after;  // what it runs now
  bool changed = false;
};

/// When OpenBLAS fell back to its generic Prescott kernels on a CPU with
/// AVX-512 (F, BW, DQ, VL) or AVX2 + FMA, switches it to the SkylakeX or
/// Haswell kernels. Does nothing when OPENBLAS_CORETYPE is set (the user chose)
/// or SYMOC_KEEP_BLAS_CORE is set, or when the BLAS is not a DYNAMIC_ARCH
/// OpenBLAS. Runs once per process; later calls return the first result. Call it
/// before any BLAS work is in flight (the runtime's Context does).
BlasCore ensureBlasCore();

} // namespace symoc::rt

#endif // SYMOC_RUNTIME_BLAS_CORE_H
