// The Newton-Schulz tuning the CUDA backend reads from the environment at create_cuda
// (runtime/cuda/lib/matrix_rules.h, ns_tuning_from_env), host-only (CI has no GPU): the
// defaults, SYMOC_CUDA_NS and SYMOC_CUDA_NS_GRAM_RESTART, and a malformed restart refused with
// an error naming the variable.
#include "matrix_rules.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

using symoc::rt::cuda::ns_tuning_from_env;

namespace {
struct Env {
  const char *name;
  explicit Env(const char *n, const char *v) : name(n) { setenv(n, v, 1); }
  ~Env() { unsetenv(name); }
};
} // namespace

TEST(CudaNsEnv, DefaultsAreTheMeasuredOnes) {
  unsetenv("SYMOC_CUDA_NS"), unsetenv("SYMOC_CUDA_NS_GRAM_RESTART");
  const symoc::cuda::NsTuning t = ns_tuning_from_env();
  EXPECT_EQ(t.gram_min_aspect, symoc::cuda::kGramNsMinAspect); // the Gram path from aspect 2
  EXPECT_EQ(t.gram_restart, 2);                                 // with its restart after step 2
  EXPECT_TRUE(t.symmetric_products);
}

TEST(CudaNsEnv, StandardTurnsTheGramPathOff) {
  Env e("SYMOC_CUDA_NS", "standard");
  EXPECT_EQ(ns_tuning_from_env().gram_min_aspect, 0.0);
}

TEST(CudaNsEnv, GramRestartIsRead) {
  for (const char *v : {"0", "1", "3"}) {
    Env e("SYMOC_CUDA_NS_GRAM_RESTART", v);
    EXPECT_EQ(ns_tuning_from_env().gram_restart, std::atoi(v)) << v;
  }
}

TEST(CudaNsEnv, MalformedGramRestartIsRefusedNamingTheVariable) {
  for (const char *v : {"", "x", "-1", "2x", "1.5", "65"}) {
    Env e("SYMOC_CUDA_NS_GRAM_RESTART", v);
    try {
      (void)ns_tuning_from_env();
      ADD_FAILURE() << "accepted '" << v << "'";
    } catch (const symoc::rt::Error &err) {
      EXPECT_NE(std::string(err.what()).find("SYMOC_CUDA_NS_GRAM_RESTART='" + std::string(v) + "'"), std::string::npos)
          << err.what();
    }
  }
}
