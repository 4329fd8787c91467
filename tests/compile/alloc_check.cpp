// alloc_check LIB.so [STEPS [FIRST]]: loads a generated optimizer library through its C ABI, steps
// it with random gradients and counts every operator new of the process (the library's
// calls resolve to the replacements below) during steps FIRST..STEPS (default 3..5; FIRST=1
// shows that the counter sees the first step's allocations). Prints the count and
// exits 1 when it is not zero, 2 on any other failure.
#include "symoc/runtime/optimizer_api.h"

#include <cstdio>
#include <cstdlib>
#include <dlfcn.h>
#include <new>
#include <random>
#include <vector>

static long g_news = 0;
static bool g_counting = false;

void *operator new(std::size_t n) {
  if (g_counting) ++g_news;
  if (void *p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void *operator new[](std::size_t n) { return operator new(n); }
void *operator new(std::size_t n, const std::nothrow_t &) noexcept {
  if (g_counting) ++g_news;
  return std::malloc(n ? n : 1);
}
void *operator new[](std::size_t n, const std::nothrow_t &t) noexcept { return operator new(n, t); }
void operator delete(void *p) noexcept { std::free(p); }
void operator delete[](void *p) noexcept { std::free(p); }
void operator delete(void *p, std::size_t) noexcept { std::free(p); }
void operator delete[](void *p, std::size_t) noexcept { std::free(p); }

int main(int argc, char **argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: alloc_check LIB.so [STEPS]\n");
    return 2;
  }
  const int steps = argc > 2 ? std::atoi(argv[2]) : 5;
  const int first = argc > 3 ? std::atoi(argv[3]) : 3;
  void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    std::fprintf(stderr, "alloc_check: %s\n", dlerror());
    return 2;
  }
  using ApiFn = const SymocOptimizerApi *(*)(void);
  auto fn = reinterpret_cast<ApiFn>(dlsym(h, "symoc_optimizer_api"));
  if (!fn) {
    std::fprintf(stderr, "alloc_check: %s has no symoc_optimizer_api\n", argv[1]);
    return 2;
  }
  const SymocOptimizerApi *api = fn();
  const int n = api->num_params();
  std::mt19937 rng(7);
  std::normal_distribution<float> nd;
  const size_t count = static_cast<size_t>(n);
  std::vector<std::vector<float>> w(count), g(count);
  std::vector<float *> wp(count);
  std::vector<const float *> gp(count);
  for (int i = 0; i < n; ++i) {
    int64_t dims[SYMOC_OPTIMIZER_MAX_RANK];
    int rank = 0;
    if (api->param_shape(i, dims, &rank) != SYMOC_OK) return 2;
    int64_t size = 1;
    for (int k = 0; k < rank; ++k) size *= dims[k];
    w[size_t(i)].resize(size_t(size));
    g[size_t(i)].resize(size_t(size));
    for (auto &x : w[size_t(i)]) x = nd(rng);
    wp[size_t(i)] = w[size_t(i)].data();
    gp[size_t(i)] = g[size_t(i)].data();
  }
  SymocOptimizer *opt = api->create(1e-3f);
  if (!opt) return 2;
  for (int t = 1; t <= steps; ++t) {
    for (auto &v : g)
      for (auto &x : v) x = nd(rng);
    g_counting = t >= first;
    int rc = api->step(opt, wp.data(), gp.data(), n);
    g_counting = false;
    if (rc != SYMOC_OK) {
      std::fprintf(stderr, "alloc_check: step %d failed: %s\n", t, api->last_error(opt));
      return 2;
    }
  }
  std::printf("allocations in steps %d..%d: %ld\n", first, steps, g_news);
  api->destroy(opt);
  return g_news == 0 ? 0 : 1;
}
