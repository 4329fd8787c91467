// The Newton-Schulz tuning the CUDA backend reads from the environment at create_cuda
// (runtime/cuda/lib/matrix_rules.h, ns_tuning_from_env), host-only (CI has no GPU): the
// defaults, SYMOC_CUDA_NS and SYMOC_CUDA_NS_GRAM_RESTART, and a malformed restart refused with
// an error naming the variable; and the readers every switch goes through (env.h).
#include "env.h"
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
  EXPECT_TRUE(t.concurrent); // standard and Gram groups on two streams (session 23)
}

TEST(CudaNsEnv, OneStreamOnRequest) {
  {
    Env e("SYMOC_CUDA_NS_STREAMS", "1");
    EXPECT_FALSE(ns_tuning_from_env().concurrent);
  }
  Env e("SYMOC_CUDA_NS_STREAMS", "3");
  EXPECT_THROW((void)ns_tuning_from_env(), symoc::rt::Error);
}

TEST(CudaNsEnv, WriteThroughIsOnUnlessTurnedOff) {
  unsetenv("SYMOC_CUDA_NS_WRITE_THROUGH");
  EXPECT_TRUE(ns_tuning_from_env().write_through);
  EXPECT_FALSE(symoc::cuda::NsTuning{}.write_through); // the library's default: off
  {
    Env e("SYMOC_CUDA_NS_WRITE_THROUGH", "0");
    EXPECT_FALSE(ns_tuning_from_env().write_through);
  }
  Env e("SYMOC_CUDA_NS_WRITE_THROUGH", "maybe");
  try {
    (void)ns_tuning_from_env();
    ADD_FAILURE() << "accepted 'maybe'";
  } catch (const symoc::rt::Error &err) {
    EXPECT_NE(std::string(err.what()).find("SYMOC_CUDA_NS_WRITE_THROUGH"), std::string::npos) << err.what();
  }
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
  for (const char *v : {"x", "-1", "2x", "1.5", "65", " 1"}) {
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

TEST(CudaNsEnv, EmptyIsTheDefault) { // `VAR= cmd` in a shell: unset
  Env e("SYMOC_CUDA_NS_GRAM_RESTART", "");
  EXPECT_EQ(ns_tuning_from_env().gram_restart, 2);
}

TEST(CudaNsEnv, AnUnknownNsPathIsRefused) { // was: the default, silently
  Env e("SYMOC_CUDA_NS", "gram-all");
  try {
    (void)ns_tuning_from_env();
    ADD_FAILURE() << "accepted SYMOC_CUDA_NS=gram-all";
  } catch (const symoc::rt::Error &err) {
    EXPECT_NE(std::string(err.what()).find("SYMOC_CUDA_NS='gram-all': expected one of gram, standard, own"),
              std::string::npos)
        << err.what();
  }
}

namespace env = symoc::rt::cuda::detail;

TEST(CudaEnv, ChoiceFlagAndWhole) {
  unsetenv("SYMOC_TEST_SWITCH");
  EXPECT_EQ(env::env_choice("SYMOC_TEST_SWITCH", {"a", "b"}), "");
  EXPECT_TRUE(env::env_flag("SYMOC_TEST_SWITCH", true));
  EXPECT_EQ(env::env_whole("SYMOC_TEST_SWITCH", 7, 0, 9, "a digit"), 7);
  {
    Env e("SYMOC_TEST_SWITCH", "b");
    EXPECT_EQ(env::env_choice("SYMOC_TEST_SWITCH", {"a", "b"}), "b");
  }
  {
    Env e("SYMOC_TEST_SWITCH", "0");
    EXPECT_FALSE(env::env_flag("SYMOC_TEST_SWITCH", true));
    EXPECT_EQ(env::env_whole("SYMOC_TEST_SWITCH", 7, 0, 9, "a digit"), 0);
  }
  {
    Env e("SYMOC_TEST_SWITCH", "1");
    EXPECT_TRUE(env::env_flag("SYMOC_TEST_SWITCH", false));
  }
}

TEST(CudaEnv, WhatItDoesNotKnowIsAnErrorNamingTheVariable) {
  auto message = [](auto read) -> std::string {
    try {
      read();
    } catch (const symoc::rt::Error &err) {
      return err.what();
    }
    return "accepted";
  };
  {
    Env e("SYMOC_TEST_SWITCH", "c");
    EXPECT_EQ(message([] { env::env_choice("SYMOC_TEST_SWITCH", {"a", "b"}); }),
              "SYMOC_TEST_SWITCH='c': expected one of a, b (or unset)");
  }
  for (const char *v : {"yes", "2", "true"}) {
    Env e("SYMOC_TEST_SWITCH", v);
    EXPECT_NE(message([] { env::env_flag("SYMOC_TEST_SWITCH", false); }).find("expected one of 0, 1"), std::string::npos)
        << v;
  }
  for (const char *v : {"10", "-1", "3x", "0x1", "1e2"}) {
    Env e("SYMOC_TEST_SWITCH", v);
    EXPECT_NE(message([] { env::env_whole("SYMOC_TEST_SWITCH", 7, 0, 9, "a digit"); })
                  .find("SYMOC_TEST_SWITCH='" + std::string(v) + "': expected a digit, a whole number in 0 .. 9"),
              std::string::npos)
        << v;
  }
}
