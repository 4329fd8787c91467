// Runtime kernel benchmark on GPT-2-small block shapes (768x768, 768x3072, 50257x768).
// Measures, in the same run, the machine's sgemm / dgemm FLOP/s and STREAM-triad memory
// bandwidth, then each kernel's median time and its fraction of the roofline time
// max(flops / peak, bytes / bandwidth). Prints a table and writes JSON (--json FILE).
//
//   symoc_rt_bench [--quick] [--reps N] [--json FILE] [--shapes 768x768,768x3072,50257x768]
#include "symoc/runtime/runtime.h"

#include <algorithm>
#include <cblas.h>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <random>
#include <sstream>
#include <string>
#include <vector>
#ifdef _OPENMP
#include <omp.h>
#endif

using namespace symoc::rt;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

double median_time(int reps, const std::function<void()> &f, bool warm = true) {
  if (warm) f(); // first call sizes the workspace / state
  std::vector<double> t;
  for (int r = 0; r < reps; ++r) {
    auto t0 = Clock::now();
    f();
    t.push_back(seconds_since(t0));
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

std::vector<float> randn(size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d;
  std::vector<float> v(n);
  for (auto &x : v) x = d(rng);
  return v;
}

struct Machine {
  double sgemm_flops = 0, dgemm_flops = 0, triad_bytes = 0;
};

Machine measure_machine(int reps) {
  Machine mc;
  const int n = 2048;
  auto A = randn(size_t(n) * n, 1), B = randn(size_t(n) * n, 2);
  std::vector<float> C(size_t(n) * n);
  double ts = median_time(reps, [&] {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.f, A.data(), n, B.data(), n, 0.f, C.data(), n);
  });
  mc.sgemm_flops = 2.0 * n * n * n / ts;
  std::vector<double> Ad(A.begin(), A.end()), Bd(B.begin(), B.end()), Cd(C.size());
  double td = median_time(reps, [&] {
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0, Ad.data(), n, Bd.data(), n, 0.0, Cd.data(), n);
  });
  mc.dgemm_flops = 2.0 * n * n * n / td;
  // STREAM triad a = b + s c on arrays far larger than the caches (3 x 128 MiB).
  const int64_t N = int64_t(32) << 20;
  std::vector<float> a(static_cast<size_t>(N), 0.f), b(static_cast<size_t>(N), 1.f), c(static_cast<size_t>(N), 2.f);
  float *pa = a.data(), *pb = b.data(), *pc = c.data();
  double tt = median_time(reps + 2, [&] {
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < N; ++i) pa[i] = pb[i] + 3.f * pc[i];
  });
  mc.triad_bytes = 3.0 * sizeof(float) * double(N) / tt; // 2 reads + 1 write (no write-allocate count)
  return mc;
}

struct Result {
  std::string shape, kernel;
  double seconds, flops32, flops64, bytes, roofline_s, fraction;
};

} // namespace

int main(int argc, char **argv) {
  int reps = 5;
  bool quick = false;
  std::string json, shapes_arg = "768x768,768x3072,50257x768";
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--quick") quick = true, reps = 3;
    else if (a == "--reps" && i + 1 < argc) reps = std::stoi(argv[++i]);
    else if (a == "--json" && i + 1 < argc) json = argv[++i];
    else if (a == "--shapes" && i + 1 < argc) shapes_arg = argv[++i];
    else {
      std::fprintf(stderr, "symoc_rt_bench: unknown argument '%s'\nusage: symoc_rt_bench [--quick] [--reps N] [--json FILE] [--shapes MxN,...]\n", argv[i]);
      return 2;
    }
  }
  std::vector<std::pair<int64_t, int64_t>> shapes;
  {
    std::stringstream ss(shapes_arg);
    std::string tok;
    while (std::getline(ss, tok, ',')) {
      auto x = tok.find('x');
      if (x == std::string::npos) {
        std::fprintf(stderr, "symoc_rt_bench: bad shape '%s' (expected MxN)\n", tok.c_str());
        return 2;
      }
      shapes.push_back({std::stoll(tok.substr(0, x)), std::stoll(tok.substr(x + 1))});
    }
  }
  Context ctx;
  Machine mc = measure_machine(reps);
  std::printf("machine: %d threads, sgemm %.1f GFLOP/s, dgemm %.1f GFLOP/s, triad %.1f GB/s\n", ctx.threads(),
              mc.sgemm_flops / 1e9, mc.dgemm_flops / 1e9, mc.triad_bytes / 1e9);

  std::vector<Result> results;
  for (auto [m, n] : shapes) {
    const std::string sh = std::to_string(m) + "x" + std::to_string(n);
    const double mn = double(m) * double(n);
    const double r = double(std::min(m, n)), c = double(std::max(m, n));
    auto W = randn(size_t(m * n), 3), G = randn(size_t(m * n), 4), D(W);
    const bool big = m * n > 10'000'000;
    const int kreps = (big || quick) ? std::max(1, std::min(reps, 3)) : reps;
    // Roofline time: fp32 flops at the sgemm rate plus fp64 flops at the dgemm rate, or the
    // bytes at the triad bandwidth, whichever is larger.
    auto add = [&](const std::string &kernel, double f32, double f64, double bytes, const std::function<void()> &f,
                   int nreps) {
      double s = median_time(nreps, f);
      double roof = std::max(f32 / mc.sgemm_flops + f64 / mc.dgemm_flops, bytes / mc.triad_bytes);
      results.push_back({sh, kernel, s, f32, f64, bytes, roof, roof / s});
      std::printf("  %-11s %-28s %10.3f ms   %8.2f GFLOP/s  %8.2f GB/s   roofline %6.1f%%\n", sh.c_str(),
                  kernel.c_str(), s * 1e3, (f32 + f64) / s / 1e9, bytes / s / 1e9, 100 * roof / s);
      std::fflush(stdout);
    };
    auto step = [&](Rule &rule, State &st) {
      Param p{"w", W.data(), G.data(), m, n};
      rule.step(ctx, st, p, 1e-6f);
    };
    // gemm of the block against its own transpose on the small side (the Gram) as a yardstick
    {
      std::vector<float> C(size_t(r * r));
      MatView X(G.data(), m, n);
      add("sgemm gram (syrk)", r * r * c, 0, 4 * (mn + r * r),
          [&] { gram(ctx, m > n, 1.f, X, 0.f, MatView(C.data(), int64_t(r), int64_t(r))); }, kreps);
    }
    { State st; SGDConfig cf; cf.momentum = 0.9f; SGD rule(cf);
      add("sgd momentum step", 4 * mn, 0, 4 * mn * 7, [&] { step(rule, st); }, kreps); }
    { State st; Adam rule(adamw_config());
      add("adamw step", 16 * mn, 0, 4 * mn * 9, [&] { step(rule, st); }, kreps); }
    { State st; AdamMini rule;
      add("adam-mini step", 12 * mn, 0, 4 * mn * 7, [&] { step(rule, st); }, kreps); }
    { State st; LauSu rule(LauSuKind::Row);
      add("lau-su row step", 8 * mn, 0, 4 * mn * 7, [&] { step(rule, st); }, kreps); }
    { State st; SymoConfig cf; cf.left = Group::Z2; cf.right = Group::B; Symo rule(cf);
      add("symo Z2xB step", 10 * mn, 0, 4 * mn * 8, [&] { step(rule, st); }, kreps); }
    // Newton-Schulz: per iteration syrk r^2 c + A A 2 r^3 + B Y 2 r^2 c
    const double ns_it = r * r * c + 2 * r * r * r + 2 * r * r * c;
    const double ns_bytes_it = 4 * (3 * mn + 3 * r * r);
    { State st; Muon rule;
      add("muon step (NS5)", 5 * ns_it, 0, 5 * ns_bytes_it + 4 * mn * 7, [&] { step(rule, st); }, kreps); }
    {
      MatView X(G.data(), m, n), O(D.data(), m, n);
      add("polar express (8 it)", 8 * ns_it, 0, 8 * ns_bytes_it, [&] { polar_express(ctx, X, O, 8); }, kreps);
      // eigen route: dsyrk r^2 c + dsyevd ~4.3 r^3 (estimate: dsytrd 4/3, D&C ~1, dormtr 2) + V^T f V 2 r^3 + X P 2 r^2 c, in double
      add("polar eig (fp64 gram)", 0, 3 * r * r * c + 6.3 * r * r * r, 8 * (2 * mn + 4 * r * r),
          [&] { polar(ctx, X, O, polar_options(PolarMethod::Eig)); }, kreps);
    }
    // Shampoo: statistics + two applies every step; roots (eigh of each side) on refresh steps.
    {
      ShampooConfig cf;
      cf.eps = 1e-6f;
      cf.precondition_frequency = 1 << 30; // steady state: no root refresh after the first call
      State st;
      Shampoo rule(cf);
      const bool useL = m <= cf.max_precond_dim, useR = n <= cf.max_precond_dim;
      double fl = (useL ? double(m) * m * n + 2.0 * m * m * n : 0) + (useR ? double(n) * n * m + 2.0 * n * n * m : 0);
      add("shampoo step (no refresh)", fl, 0, 4 * (7 * mn + 2 * (useL ? double(m) * m : 0) + 2 * (useR ? double(n) * n : 0)),
          [&] { step(rule, st); }, kreps);
      if (!big) {
        ShampooConfig cr = cf;
        cr.precondition_frequency = 1;
        State st2;
        Shampoo r2(cr);
        double eig = (useL ? 6.3 * m * m * m : 0) + (useR ? 6.3 * n * n * n : 0); // dsyevd + V^T f V
        add("shampoo step (eigh refresh)", fl, eig, 4 * 7 * mn, [&] { step(r2, st2); }, std::min(kreps, 3));
      }
    }
    // Symo one-sided B x 1: EMA of G^T G / m (n x n) + eigh + G C^{-1/2}
    if (n <= 4096) {
      State st;
      SymoConfig cf;
      cf.left = Group::B;
      Symo rule(cf);
      double nn = double(n);
      add("symo Bx1 step (eigh)", 3 * nn * nn * m, 6.3 * nn * nn * nn, 4 * 7 * mn,
          [&] { step(rule, st); }, std::min(kreps, 3));
    }
  }

  std::printf("\n%-11s %-28s %12s %12s %10s\n", "shape", "kernel", "median ms", "roofline ms", "fraction");
  for (auto &r : results)
    std::printf("%-11s %-28s %12.3f %12.3f %9.1f%%\n", r.shape.c_str(), r.kernel.c_str(), r.seconds * 1e3,
                r.roofline_s * 1e3, 100 * r.fraction);

  std::ostringstream js;
  js << "{\n  \"machine\": {\"threads\": " << ctx.threads() << ", \"sgemm_gflops\": " << mc.sgemm_flops / 1e9
     << ", \"dgemm_gflops\": " << mc.dgemm_flops / 1e9 << ", \"triad_gbs\": " << mc.triad_bytes / 1e9 << "},\n"
     << "  \"kernels\": [\n";
  for (size_t i = 0; i < results.size(); ++i) {
    auto &r = results[i];
    js << "    {\"shape\": \"" << r.shape << "\", \"kernel\": \"" << r.kernel << "\", \"median_s\": " << r.seconds
       << ", \"flops_fp32\": " << r.flops32 << ", \"flops_fp64\": " << r.flops64 << ", \"bytes\": " << r.bytes
       << ", \"roofline_s\": " << r.roofline_s << ", \"roofline_fraction\": " << r.fraction << "}"
       << (i + 1 < results.size() ? ",\n" : "\n");
  }
  js << "  ]\n}\n";
  if (!json.empty()) {
    std::ofstream f(json);
    if (!f) {
      std::fprintf(stderr, "symoc_rt_bench: %s: cannot open for writing\n", json.c_str());
      return 1;
    }
    f << js.str();
  } else {
    std::printf("\n%s", js.str().c_str());
  }
  return 0;
}
