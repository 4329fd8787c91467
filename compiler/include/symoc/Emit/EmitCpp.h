//===- EmitCpp.h - C++ optimizer source from a plan -----------------------===//
//
// Writes, into one folder:
//   <model>_optimizer.h     the parameter enum and the exported API functions
//   <model>_optimizer.cpp   rule objects and one runtime call per block or batch of
//                           same-shape blocks with the same rule; the C ABI of
//                           runtime/include/symoc/runtime/optimizer_api.h
//   CMakeLists.txt          target <model>_optimizer (shared library), finds the runtime
//                           through SYMOC_RUNTIME_DIR (symoc's runtime/ source folder)
//   plan.json               the plan (Plan.h toJson)
//
//===----------------------------------------------------------------------===//
#ifndef SYMOC_EMIT_EMITCPP_H
#define SYMOC_EMIT_EMITCPP_H

#include "symoc/Plan/Plan.h"

#include <string>
#include <vector>

namespace symoc::emit {

struct EmittedFiles {
  std::string header, source, cmake, planJson; // contents
  std::vector<std::string> written;             // paths written by writeOptimizer
};

/// The four files' contents.
EmittedFiles emitOptimizer(const plan::Plan &plan);

/// Writes them into `dir` (created when missing). `runtimeDir`, when non-empty, becomes
/// the default SYMOC_RUNTIME_DIR of the generated CMakeLists.txt. Throws symoc::Error.
EmittedFiles writeOptimizer(const plan::Plan &plan, const std::string &dir, const std::string &runtimeDir);

} // namespace symoc::emit

#endif
