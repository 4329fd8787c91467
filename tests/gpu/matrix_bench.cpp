// Microbenchmark of the batched matrix kernels on one GPU: the bf16 GEMM rate (8192^3), batched
// Newton-Schulz over GPT-2-small's 48 hidden matrices (variants and CUDA-graph replay) against
// the NS FLOP bound at that rate, standard vs Gram Newton-Schulz on the GPT-2 and LLaMA-1B
// sets (dense and symmetric products, with and without timing the GEMM algorithms on the first
// run) and an aspect-ratio sweep, and batched inverse roots (Shampoo) by eigendecomposition.
// Medians of event-timed runs after warm-up; random data. Usage: symoc_gpu_matrix_bench [out.json]
// [--only eigh-methods] (that section alone: batched against per-matrix eigensolves), [--only
// eigh-tridiagonal] (symoc's tridiagonal eigensolver against the batched one).
#include "gpu_util.h"

#include "../../runtime/cuda/lib/ns_common.cuh"

#include <cublas_v2.h>
#include <cuda_bf16.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <cmath>
#include <random>
#include <memory>
#include <chrono>
#include <thread>

using namespace gputest;
namespace cu = symoc::cuda;

namespace {

__global__ void fill_kernel(float *x, size_t n, uint32_t seed, float scale) {
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    uint32_t h = uint32_t(i) * 2654435761u ^ seed;
    h ^= h >> 16, h *= 0x7feb352du, h ^= h >> 15, h *= 0x846ca68bu, h ^= h >> 16;
    x[i] = scale * (float(h) * (2.f / 4294967296.f) - 1.f);
  }
}
__global__ void fill_bf16_kernel(__nv_bfloat16 *x, size_t n, uint32_t seed) {
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    uint32_t h = uint32_t(i) * 2654435761u ^ seed;
    h ^= h >> 16, h *= 0x7feb352du, h ^= h >> 15, h *= 0x846ca68bu, h ^= h >> 16;
    x[i] = __float2bfloat16(float(h) * (2.f / 4294967296.f) - 1.f);
  }
}
void fill(float *x, size_t n, uint32_t seed, float scale = 1.f) {
  fill_kernel<<<1024, 256>>>(x, n, seed, scale);
  ck(cudaGetLastError(), "fill");
}

struct Timing {
  double median, min;
};
Timing time_it(cudaStream_t s, int warm, int reps, const std::function<void()> &f) {
  cudaEvent_t a, b;
  ck(cudaEventCreate(&a), "event");
  ck(cudaEventCreate(&b), "event");
  for (int i = 0; i < warm; ++i) f();
  std::vector<double> ms;
  for (int i = 0; i < reps; ++i) {
    ck(cudaEventRecord(a, s), "record");
    f();
    ck(cudaEventRecord(b, s), "record");
    ck(cudaEventSynchronize(b), "sync");
    float t;
    ck(cudaEventElapsedTime(&t, a, b), "elapsed");
    ms.push_back(t);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  std::sort(ms.begin(), ms.end());
  return {ms[ms.size() / 2], ms.front()};
}

std::vector<std::pair<std::string, double>> results;
void report(const std::string &k, double v, const char *unit) {
  results.push_back({k, v});
  std::printf("BENCH %-52s %12.6g %s\n", k.c_str(), v, unit);
  std::fflush(stdout);
}

// Batched against per-matrix eigensolves (EigMethod::Batched, one XsyevBatched call over the
// batch, vs PerMatrix, one Xsyevd per matrix, vs Auto, the rule between them; SYMOC_CUDA_EIGH
// forces one for the optimizers), at GPT-2 small's Shampoo sides and at the batches a
// distributed rank (3, 6), a full step (12: every layer's copy) and groups merged across shapes
// (24: c_fc's and mlp.c_proj's 3072 sides; 60: every 768 side) give them, on full-rank factors
// (a Gram of a random n x 2n); fp32, and fp64 (Shampoo's default) at 768 and 3072.
void eigh_methods(cu::Engine &e, cudaStream_t s) {
  struct Case {
    int64_t n;
    std::vector<int64_t> batches;
    bool dbl;
  };
  const std::vector<Case> cases = {{768, {3, 6, 12, 60}, false}, {2304, {3, 6, 12}, false},
                                   {3072, {3, 6, 12, 24}, false}, {768, {3, 12}, true}, {3072, {3, 12}, true}};
  for (const Case &c : cases)
    for (int64_t batch : c.batches) try {
      const int64_t n = c.n, k = 2 * n, nn = n * n;
      Dev<float> G{size_t(batch * n * k)}, S{size_t(batch * nn)}, V{size_t(batch * nn)}, w{size_t(batch * n)};
      fill(G.p, G.n, 11u);
      cu::gram(e, false, 1.f / float(k), cu::Batch(G.p, batch, n, k), 0.f, cu::Batch(S.p, batch, n, n), s);
      ck(cudaStreamSynchronize(s), "sync");
      const std::string tag = std::string("eigh ") + (c.dbl ? "fp64 " : "fp32 ") + std::to_string(batch) + "x" +
                              std::to_string(n) + "^2";
      for (auto [m, name] : {std::pair<cu::EigMethod, const char *>{cu::EigMethod::Batched, "batched"},
                             {cu::EigMethod::PerMatrix, "per-matrix"}, {cu::EigMethod::Auto, "auto"}}) {
        cu::EighPlan plan(e, n, batch, c.dbl ? symoc::rt::EigPrecision::Float64 : symoc::rt::EigPrecision::Float32, m);
        Dev<char> ws{plan.workspace_bytes()};
        Timing t = time_it(s, 1, 3, [&] {
          plan.run(cu::Batch(S.p, batch, n, n), w.p, cu::Batch(V.p, batch, n, n), cu::Workspace{ws.p, ws.n}, s);
        });
        report(tag + ", " + name + " ms", t.median, "ms");
      }
    } catch (const std::exception &ex) {
      std::printf("BENCH eigh methods %lld x %lld FAILED: %s\n", (long long)batch, (long long)c.n, ex.what());
    }
}

// symoc's tridiagonal eigensolver (EigMethod::Tridiagonal) against cuSOLVER's batched one on
// GPT-2 small's Shampoo banks (60 x 768, 12 x 2304, 24 x 3072; fp32 and fp64), smaller sides
// and a distributed rank's batch of 3, on full-rank factors (Gram of n x 2n) and, for some, on
// rank n / 4 ones (a cluster of zero eigenvalues, Shampoo's factors in their first steps), with
// each one's reconstruction error and orthogonality on 48 rows of matrix 0.
void eigh_tridiagonal(cu::Engine &e, cudaStream_t s) {
  struct Case {
    int64_t n, batch;
    bool dbl, low_rank_too;
  };
  for (Case c : {Case{768, 3, false, false}, Case{3072, 3, false, false}, Case{128, 12, false, false},
                 Case{256, 12, false, false}, Case{512, 12, false, false}, Case{768, 60, false, true},
                 Case{2304, 12, false, true}, Case{3072, 24, false, true}, Case{3072, 24, true, false}})
    for (int64_t k : {2 * c.n, c.n / 4}) try {
      if (k < c.n && !c.low_rank_too) continue;
      // SYMOC_BENCH_EIGH_CASES: a comma list of BATCHxN[f64] cases to run (default all).
      const char *only = std::getenv("SYMOC_BENCH_EIGH_CASES");
      const std::string key = std::to_string(c.batch) + "x" + std::to_string(c.n) + (c.dbl ? "f64" : "");
      if (only && ("," + std::string(only) + ",").find("," + key + ",") == std::string::npos) continue;
      const int64_t n = c.n, batch = c.batch, nn = n * n;
      Dev<float> G{size_t(batch * n * k)}, S{size_t(batch * nn)}, V{size_t(batch * nn)}, w{size_t(batch * n)};
      fill(G.p, G.n, 11u);
      cu::gram(e, false, 1.f / float(k), cu::Batch(G.p, batch, n, k), 0.f, cu::Batch(S.p, batch, n, n), s);
      ck(cudaStreamSynchronize(s), "sync");
      const std::string tag = std::string("eigh ") + (c.dbl ? "fp64 " : "fp32 ") + std::to_string(batch) + "x" +
                              std::to_string(n) + "^2 rank " + std::to_string(std::min(n, k));
      std::vector<float> s0(static_cast<size_t>(nn));
      ck(cudaMemcpy(s0.data(), S.p, nn * 4, cudaMemcpyDeviceToHost), "down");
      for (auto [m, name] : {std::pair<cu::EigMethod, const char *>{cu::EigMethod::Batched, "batched"},
                             {cu::EigMethod::Tridiagonal, "tridiagonal"}}) {
        cu::EighPlan plan(e, n, batch, c.dbl ? symoc::rt::EigPrecision::Float64 : symoc::rt::EigPrecision::Float32, m);
        Dev<char> ws{plan.workspace_bytes()};
        Timing t = time_it(s, 1, 3, [&] {
          plan.run(cu::Batch(S.p, batch, n, n), w.p, cu::Batch(V.p, batch, n, n), cu::Workspace{ws.p, ws.n}, s);
        });
        report(tag + ", " + name + " ms", t.median, "ms");
        // ||V^T diag(w) V - S|| / ||S|| and max |V V^T - I| of matrix 0 on the host (double),
        // over 48 rows i spread over the matrix (every column j).
        std::vector<float> v(static_cast<size_t>(nn)), wv(static_cast<size_t>(n));
        ck(cudaMemcpy(v.data(), V.p, nn * 4, cudaMemcpyDeviceToHost), "down");
        ck(cudaMemcpy(wv.data(), w.p, n * 4, cudaMemcpyDeviceToHost), "down");
        double num = 0, den = 0, orth = 0;
        for (int64_t i = 0; i < n; i += std::max<int64_t>(1, n / 48)) {
          std::vector<double> r(static_cast<size_t>(n), 0.0);
          for (int64_t q = 0; q < n; ++q) {
            const double aw = double(v[size_t(q * n + i)]) * wv[size_t(q)];
            const float *vq = &v[size_t(q * n)];
            for (int64_t j = 0; j < n; ++j) r[size_t(j)] += aw * vq[j];
          }
          for (int64_t j = 0; j < n; ++j) {
            double dot = 0;
            for (int64_t q = 0; q < n; ++q) dot += double(v[size_t(i * n + q)]) * v[size_t(j * n + q)];
            orth = std::max(orth, std::fabs(dot - (i == j ? 1.0 : 0.0)));
            const double sv = s0[size_t(std::max(i, j) * n + std::min(i, j))], d = r[size_t(j)] - sv;
            num += d * d, den += sv * sv;
          }
        }
        report(tag + ", " + name + " reconstruction", std::sqrt(num / den), "rel");
        report(tag + ", " + name + " orthogonality", orth, "max");
      }
    } catch (const std::exception &ex) {
      std::printf("BENCH eigh tridiagonal %lld x %lld FAILED: %s\n", (long long)c.batch, (long long)c.n, ex.what());
    }
}

void write_json(const char *path) {
  std::ofstream f(path);
  f << "{\n";
  for (size_t i = 0; i < results.size(); ++i)
    f << "  \"" << results[i].first << "\": " << results[i].second << (i + 1 < results.size() ? ",\n" : "\n");
  f << "}\n";
}

} // namespace

// symoc_gpu_matrix_bench [out.json] [--only eigh-methods|eigh-tridiagonal]
int main(int argc, char **argv) {
  try {
    cudaStream_t s;
    ck(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "stream");
    cudaDeviceProp prop;
    ck(cudaGetDeviceProperties(&prop, 0), "props");
    std::printf("# device %s, %d SMs\n", prop.name, prop.multiProcessorCount);
    cu::Engine e;
    if (argc > 3 && std::string(argv[2]) == "--only") {
      const std::string only = argv[3];
      if (only == "eigh-methods") eigh_methods(e, s);
      else if (only == "eigh-tridiagonal") eigh_tridiagonal(e, s);
      else throw symoc::rt::Error("unknown section " + only);
      write_json(argv[1]);
      return 0;
    }

    // 1. bf16 GEMM rate, 8192^3, random data.
    double rate = 0;
    {
      const int N = 8192;
      Dev<__nv_bfloat16> A{size_t(N) * N}, B{size_t(N) * N}, C{size_t(N) * N};
      fill_bf16_kernel<<<1024, 256>>>(A.p, A.n, 1u);
      fill_bf16_kernel<<<1024, 256>>>(B.p, B.n, 2u);
      cublasHandle_t h;
      if (cublasCreate(&h) != CUBLAS_STATUS_SUCCESS) throw symoc::rt::Error("cublasCreate");
      cublasSetStream(h, s);
      const float one = 1.f, zero = 0.f;
      Timing t = time_it(s, 3, 10, [&] {
        if (cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, N, N, N, &one, A.p, CUDA_R_16BF, N, B.p, CUDA_R_16BF, N, &zero, C.p,
                         CUDA_R_16BF, N, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT) != CUBLAS_STATUS_SUCCESS)
          throw symoc::rt::Error("cublasGemmEx");
      });
      rate = 2.0 * N * N * double(N) / (t.median * 1e-3);
      report("bf16 gemm 8192^3 TFLOP/s", rate / 1e12, "TFLOP/s");
      cublasDestroy(h);
    }

    // 2. GPT-2-small hidden matrices, torch layouts (Conv1D weights are in x out).
    const std::vector<cu::Shape> gpt2 = {{12, 768, 2304}, {12, 768, 768}, {12, 768, 3072}, {12, 3072, 768}};
    std::vector<Dev<float>> in, out;
    std::vector<cu::PolarGroup> groups;
    in.reserve(4), out.reserve(4);
    for (size_t g = 0; g < gpt2.size(); ++g) {
      const auto &sh = gpt2[g];
      const size_t n = size_t(sh.batch * sh.rows * sh.cols);
      in.emplace_back(n);
      out.emplace_back(n);
      fill(in.back().p, n, uint32_t(17 + g), 0.01f);
      const float scale = float(std::sqrt(std::max(1.0, double(sh.rows) / double(sh.cols))));
      groups.push_back({cu::Batch(in.back().p, sh.batch, sh.rows, sh.cols), cu::Batch(out.back().p, sh.batch, sh.rows, sh.cols), scale});
    }
    ck(cudaDeviceSynchronize(), "sync");
    struct Variant {
      const char *name;
      cu::NsTuning t;
      cu::PolarIteration it;
      int steps;
    };
    double ns_flops = 0;
    const std::vector<Variant> variants = {{"ns5 banks+lt", {true, true}, cu::PolarIteration::NewtonSchulz, 5},
                                           {"ns5 per-group+lt", {false, true}, cu::PolarIteration::NewtonSchulz, 5},
                                           {"ns5 banks+gemmEx", {true, false}, cu::PolarIteration::NewtonSchulz, 5},
                                           {"polar_express8 banks+lt", {true, true}, cu::PolarIteration::PolarExpress, 8}};
    double best_ms = 0;
    for (const Variant &v : variants) {
      cu::NewtonSchulzPlan plan(e, gpt2, v.it, v.steps, v.t);
      Dev<char> ws{plan.workspace_bytes()};
      cu::Workspace w{ws.p, ws.n};
      Timing t = time_it(s, 5, 50, [&] { plan.run(groups.data(), groups.size(), w, s); });
      report(std::string("gpt2 ") + v.name + " ms", t.median, "ms");
      if (v.steps == 5 && v.t.banks && v.t.lt) {
        ns_flops = plan.flops();
        best_ms = t.median;
        std::printf("# plan uses cuBLASLt everywhere: %s; workspace %.1f MiB\n", plan.uses_lt() ? "yes" : "no",
                    double(plan.workspace_bytes()) / (1 << 20));
        // CUDA graph of the same run.
        cudaGraph_t graph;
        cudaGraphExec_t exec;
        ck(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal), "begin capture");
        plan.run(groups.data(), groups.size(), w, s);
        ck(cudaStreamEndCapture(s, &graph), "end capture");
        ck(cudaGraphInstantiate(&exec, graph, 0), "instantiate");
        Timing tg = time_it(s, 5, 50, [&] { ck(cudaGraphLaunch(exec, s), "graph launch"); });
        report("gpt2 ns5 banks+lt cuda-graph ms", tg.median, "ms");
        best_ms = std::min(best_ms, tg.median);
        cudaGraphExecDestroy(exec);
        cudaGraphDestroy(graph);
      }
    }
    const double bound_ms = ns_flops / rate * 1e3;
    report("gpt2 ns5 FLOPs (TFLOP)", ns_flops / 1e12, "TFLOP");
    report("gpt2 ns5 FLOP bound at measured rate ms", bound_ms, "ms");
    report("gpt2 ns5 best / FLOP bound", best_ms / bound_ms, "x");

    // 2b. Muon's Newton-Schulz over whole parameter sets, standard vs Gram Newton-Schulz
    // (rectangular groups with k >= gram_min_aspect * r), eager and CUDA graph; the bound is
    // the standard NS5 FLOPs at the measured rate (the bound), as in section 2.
    struct GramVariant {
      const char *name;
      double aspect;
      cu::NsHalf half;
      int restart;
      bool sym = false;  // NsTuning::symmetric_products
      bool tune = false; // NsTuning::tune_gemms (timed on the first, warm-up, run)
    };
    const std::vector<GramVariant> gvars = {{"standard", 0, cu::NsHalf::FP16, 2},
                                            {"standard sym", 0, cu::NsHalf::FP16, 2, true},
                                            {"gram fp16 restart2", cu::kGramNsMinAspect, cu::NsHalf::FP16, 2},
                                            {"gram fp16 restart2 sym", cu::kGramNsMinAspect, cu::NsHalf::FP16, 2, true},
                                            {"gram bf16 restart2", cu::kGramNsMinAspect, cu::NsHalf::BF16, 2},
                                            {"gram fp16 no-restart", cu::kGramNsMinAspect, cu::NsHalf::FP16, 0},
                                            {"standard tuned", 0, cu::NsHalf::FP16, 2, false, true},
                                            {"gram fp16 restart2 tuned", cu::kGramNsMinAspect, cu::NsHalf::FP16, 2, false, true},
                                            {"gram fp16 restart2 sym tuned", cu::kGramNsMinAspect, cu::NsHalf::FP16, 2, true, true}};
    auto bench_set = [&](const std::string &set, const std::vector<cu::Shape> &shapes, int reps) {
      std::vector<Dev<float>> bin, bout;
      std::vector<cu::PolarGroup> gs;
      bin.reserve(shapes.size()), bout.reserve(shapes.size());
      for (size_t g = 0; g < shapes.size(); ++g) {
        const auto &sh = shapes[g];
        const size_t n = size_t(sh.batch * sh.rows * sh.cols);
        bin.emplace_back(n);
        bout.emplace_back(n);
        fill(bin.back().p, n, uint32_t(101 + g), 0.01f);
        const float scale = float(std::sqrt(std::max(1.0, double(sh.rows) / double(sh.cols))));
        gs.push_back({cu::Batch(bin.back().p, sh.batch, sh.rows, sh.cols),
                      cu::Batch(bout.back().p, sh.batch, sh.rows, sh.cols), scale});
      }
      ck(cudaDeviceSynchronize(), "sync");
      double std_flops = 0, std_best = 0;
      for (const GramVariant &v : gvars) {
        cu::NsTuning t;
        t.gram_min_aspect = v.aspect;
        t.gram_half = v.half;
        t.gram_restart = v.restart;
        t.symmetric_products = v.sym;
        t.tune_gemms = v.tune;
        cu::NewtonSchulzPlan plan(e, shapes, cu::PolarIteration::NewtonSchulz, 5, t);
        Dev<char> ws{plan.workspace_bytes()};
        cu::Workspace w{ws.p, ws.n};
        Timing te = time_it(s, 3, reps, [&] { plan.run(gs.data(), gs.size(), w, s); });
        cudaGraph_t graph;
        cudaGraphExec_t exec;
        ck(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal), "begin capture");
        plan.run(gs.data(), gs.size(), w, s);
        ck(cudaStreamEndCapture(s, &graph), "end capture");
        ck(cudaGraphInstantiate(&exec, graph, 0), "instantiate");
        Timing tg = time_it(s, 3, reps, [&] { ck(cudaGraphLaunch(exec, s), "graph launch"); });
        cudaGraphExecDestroy(exec);
        cudaGraphDestroy(graph);
        if (v.aspect == 0 && !v.sym) std_flops = plan.flops(), std_best = std::min(te.median, tg.median);
        const double best = std::min(te.median, tg.median);
        report(set + " " + v.name + " ms", te.median, "ms");
        report(set + " " + v.name + " cuda-graph ms", tg.median, "ms");
        report(set + " " + v.name + " plan TFLOP", plan.flops() / 1e12, "TFLOP");
        report(set + " " + v.name + " best / NS5 bound", best / (std_flops / rate * 1e3), "x");
        report(set + " " + v.name + " best / standard best", best / std_best, "x");
        std::printf("# %s %s: workspace %.1f MiB, cuBLASLt everywhere: %s\n", set.c_str(), v.name,
                    double(plan.workspace_bytes()) / (1 << 20), plan.uses_lt() ? "yes" : "no");
      }
      report(set + " NS5 FLOP bound at measured rate ms", std_flops / rate * 1e3, "ms");
      report(set + " NS5 FLOP bound at 790 TFLOP/s ms", std_flops / 790e12 * 1e3, "ms");
    };
    bench_set("set gpt2", gpt2, 30);
    // LLaMA-1B-shaped set (bench/analyze/make_llama7b.py: d 2048, 16 layers, 8 KV heads of 64,
    // FFN 8192), torch layouts (out x in): q, o, k, v, gate, up, down.
    bench_set("set llama1b", {{16, 2048, 2048}, {16, 2048, 2048}, {16, 512, 2048}, {16, 512, 2048}, {16, 8192, 2048},
                              {16, 8192, 2048}, {16, 2048, 8192}}, 10);
    // Aspect-ratio sweep for the threshold: 12 matrices 768 x k, standard vs Gram (fp16, restart 2), graph.
    for (int64_t k : {768 + 384, 1536, 1920, 2304, 3072, 4608}) {
      const std::vector<cu::Shape> sh = {{12, 768, k}};
      Dev<float> sin_{size_t(12 * 768 * k)}, sout{size_t(12 * 768 * k)};
      fill(sin_.p, sin_.n, 7u, 0.01f);
      cu::PolarGroup g{cu::Batch(sin_.p, 12, 768, k), cu::Batch(sout.p, 12, 768, k), 1.f};
      double t_std = 0;
      for (double aspect : {0.0, 1.01}) {
        cu::NsTuning t;
        t.gram_min_aspect = aspect;
        cu::NewtonSchulzPlan plan(e, sh, cu::PolarIteration::NewtonSchulz, 5, t);
        Dev<char> ws{plan.workspace_bytes()};
        cu::Workspace w{ws.p, ws.n};
        plan.run(&g, 1, w, s);
        cudaGraph_t graph;
        cudaGraphExec_t exec;
        ck(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal), "begin capture");
        plan.run(&g, 1, w, s);
        ck(cudaStreamEndCapture(s, &graph), "end capture");
        ck(cudaGraphInstantiate(&exec, graph, 0), "instantiate");
        Timing tg = time_it(s, 3, 30, [&] { ck(cudaGraphLaunch(exec, s), "graph launch"); });
        cudaGraphExecDestroy(exec);
        cudaGraphDestroy(graph);
        char key[96];
        std::snprintf(key, sizeof key, "sweep 12x768x%lld %s cuda-graph ms", (long long)k, aspect == 0 ? "standard" : "gram");
        report(key, tg.median, "ms");
        if (aspect == 0) t_std = tg.median;
        else {
          std::snprintf(key, sizeof key, "sweep 12x768x%lld gram / standard", (long long)k);
          report(key, tg.median / t_std, "x");
        }
      }
    }

    // 2c. The symmetric products' mirror (SymmetricGemm's lower triangle from the upper) on
    // the LLaMA-1B Gram class (48 fp16 matrices of 2048^2), against a device copy of the same
    // bytes (r^2 / 2 read + r^2 / 2 written per matrix), with the grid's z extent (matrices per
    // block: 1, 2, 4, 8) varied on the square grid and the triangular one (no blocks below the
    // diagonal): session 10's profile put the mirror at ~1.75 TB/s; session 11's run of this
    // bench 1.91 TB/s with 1 per block, 2.43 with 4 (copy 3.91), hence kMirrorPerBlock = 4.
    {
      namespace d = symoc::cuda::detail;
      const int64_t r = 2048, batch = 48, ld = d::round_up(r, d::kLdAlign), sd = d::round_up(r * ld, d::kStrideAlign);
      Dev<uint16_t> D{size_t(batch * sd)}, C2{size_t(batch * sd)};
      ck(cudaMemsetAsync(D.p, 0, D.n * 2, s), "memset");
      const double bytes = double(batch) * double(r) * double(r) * 2.0; // read + write
      Timing tc = time_it(s, 3, 20, [&] {
        ck(cudaMemcpyAsync(C2.p, D.p, size_t(batch * r * r / 2) * 2, cudaMemcpyDeviceToDevice, s), "copy");
      });
      report("mirror 48x2048^2 fp16: copy of the same bytes GB/s", bytes / (tc.median * 1e-3) / 1e9, "GB/s");
      for (int tri = 0; tri < 2; ++tri)
        for (int per : {1, 2, 4, 8}) {
          const dim3 grid = d::mirror_grid(r, batch, tri != 0, per);
          Timing tm = time_it(s, 3, 20, [&] {
            d::mirror_upper_kernel<uint16_t><<<grid, dim3(32, d::kRows), 0, s>>>(D.p, batch, r, ld, sd, tri != 0);
            ck(cudaGetLastError(), "mirror");
          });
          const std::string what = std::string("mirror 48x2048^2 fp16, ") + (tri ? "triangular" : "square") + " grid, " +
                                   std::to_string(per) + " matrices per block";
          report(what + " GB/s", bytes / (tm.median * 1e-3) / 1e9, "GB/s");
          report(what + " / copy", tm.median / tc.median, "x");
        }
    }

    // 3. Shampoo-style inverse 4th roots by eigendecomposition.
    struct E {
      int64_t n, batch;
      symoc::rt::EigPrecision p;
      const char *name;
    };
    for (E c : {E{32, 1024, symoc::rt::EigPrecision::Float32, "sym_pow -1/4 1024x32x32 fp32"},
                E{768, 24, symoc::rt::EigPrecision::Float32, "sym_pow -1/4 24x768x768 fp32"},
                E{768, 24, symoc::rt::EigPrecision::Float64, "sym_pow -1/4 24x768x768 fp64"}}) try {
      const size_t n = size_t(c.batch * c.n * c.n);
      Dev<float> G{size_t(c.batch * c.n * 2 * c.n)}, S{n}, O{n};
      fill(G.p, G.n, 99u);
      // S = G G^T / (2n): PSD, well conditioned.
      cu::gram(e, false, 1.f / float(2 * c.n), cu::Batch(G.p, c.batch, c.n, 2 * c.n), 0.f, cu::Batch(S.p, c.batch, c.n, c.n), s);
      symoc::rt::MatFnOptions o;
      o.precision = c.p;
      cu::SymPowPlan plan(e, c.n, c.batch, o);
      Dev<char> ws{plan.workspace_bytes()};
      Timing t = time_it(s, 2, 10, [&] {
        plan.run(cu::Batch(S.p, c.batch, c.n, c.n), -0.25, 1e-6, cu::Batch(O.p, c.batch, c.n, c.n), cu::Workspace{ws.p, ws.n}, s);
      });
      report(std::string(c.name) + " ms", t.median, "ms");
    } catch (const std::exception &ex) {
      std::printf("BENCH %s FAILED: %s\n", c.name, ex.what());
    }
    // 3b. Shampoo's eigensolves (issue 12: Shampoo-class <= 0.5x batched torch eigh), fp32: one
    // XsyevBatched over the batch on one stream, against the batch split over K engines (own
    // cuSOLVER handle, stream and workspace) driven by K host threads: does cuSOLVER's
    // eigensolver leave the GPU idle (host phases, one matrix at a time) so that concurrent
    // solves pay? Wall time from the first launch to every stream's end.
    for (auto nb : {std::pair<int64_t, int64_t>{768, 24}, {2304, 8}, {3072, 8}}) try {
      const int64_t n = nb.first, batch = nb.second; // plain names: the lambdas below capture n (C++17)
      const size_t nn = size_t(n * n);
      Dev<float> G{size_t(batch) * nn * 2}, S{size_t(batch) * nn}, V{size_t(batch) * nn}, w{size_t(batch * n)};
      fill(G.p, G.n, 7u);
      cu::gram(e, false, 1.f / float(2 * n), cu::Batch(G.p, batch, n, 2 * n), 0.f, cu::Batch(S.p, batch, n, n), s);
      ck(cudaStreamSynchronize(s), "sync");
      const std::string tag = "eigh fp32 " + std::to_string(batch) + "x" + std::to_string(n) + "^2";
      for (int K : {1, 2, 4, 8}) {
        if (batch % K) continue;
        const int64_t per = batch / K;
        std::vector<std::unique_ptr<cu::Engine>> engines;
        std::vector<std::unique_ptr<cu::EighPlan>> plans;
        std::vector<std::unique_ptr<Dev<char>>> wss;
        std::vector<cudaStream_t> streams(static_cast<size_t>(K));
        for (int k = 0; k < K; ++k) {
          engines.push_back(std::make_unique<cu::Engine>());
          plans.push_back(std::make_unique<cu::EighPlan>(*engines.back(), n, per, symoc::rt::EigPrecision::Float32,
                                                         cu::EigMethod::Batched));
          wss.push_back(std::make_unique<Dev<char>>(plans.back()->workspace_bytes()));
          ck(cudaStreamCreateWithFlags(&streams[size_t(k)], cudaStreamNonBlocking), "stream");
        }
        auto one = [&](int k) {
          const size_t off = size_t(k * per) * nn;
          plans[size_t(k)]->run(cu::Batch(S.p + off, per, n, n), w.p + k * per * n, cu::Batch(V.p + off, per, n, n),
                                cu::Workspace{wss[size_t(k)]->p, wss[size_t(k)]->n}, streams[size_t(k)]);
        };
        auto all = [&] {
          if (K == 1) {
            one(0);
          } else {
            std::vector<std::thread> th;
            for (int k = 0; k < K; ++k) th.emplace_back(one, k);
            for (auto &t : th) t.join();
          }
          for (auto st : streams) ck(cudaStreamSynchronize(st), "sync");
        };
        all(); // warm-up
        std::vector<double> ms;
        for (int rep = 0; rep < 3; ++rep) {
          const auto t0 = std::chrono::steady_clock::now();
          all();
          ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
        }
        std::sort(ms.begin(), ms.end());
        report(tag + ", " + std::to_string(K) + " streams/threads ms", ms[1], "ms");
        for (auto st : streams) cudaStreamDestroy(st);
      }
    } catch (const std::exception &ex) {
      std::printf("BENCH eigh %lld FAILED: %s\n", (long long)nb.first, ex.what());
    }
    // 3c. Warm-started eigensolves: Jacobi (cusolverDnSsyevj, tol 1e-6) on A = diag(w) + eps
    // max|w| N (N symmetric Gaussian / sqrt(n)): the basis of the last refresh applied to a
    // factor that changed by ~eps, against the same solver on the cold matrix and syevd. If Jacobi
    // from a near-diagonal start takes a few sweeps, Shampoo's refresh can be Q^T L Q (two
    // GEMMs), Jacobi, Q V: the same eigendecomposition to tol.
    for (int64_t n : {768, 3072}) try {
      auto &ei = e.impl();
      ei.bind(s);
      const size_t nn = size_t(n * n);
      std::mt19937 g(5);
      std::normal_distribution<float> nd(0.f, 1.f);
      std::vector<float> w(static_cast<size_t>(n)), N(nn);
      for (int64_t i = 0; i < n; ++i) w[size_t(i)] = std::pow(10.f, -4.f * float(i) / float(n)); // kappa 1e4
      for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j <= i; ++j) N[size_t(i * n + j)] = N[size_t(j * n + i)] = nd(g) / std::sqrt(float(n));
      Dev<float> A{nn}, W{size_t(n)};
      Dev<int> info{1};
      syevjInfo_t ji;
      ck(cusolverDnCreateSyevjInfo(&ji) == CUSOLVER_STATUS_SUCCESS ? cudaSuccess : cudaErrorUnknown, "syevj info");
      cusolverDnXsyevjSetTolerance(ji, 1e-6);
      cusolverDnXsyevjSetMaxSweeps(ji, 100);
      int lwork = 0;
      cusolverDnSsyevj_bufferSize(ei.solver, CUSOLVER_EIG_MODE_VECTOR, CUBLAS_FILL_MODE_UPPER, int(n), A.p, int(n), W.p,
                                  &lwork, ji);
      Dev<float> work{size_t(std::max(lwork, 1))};
      for (double eps : {0.0, 1e-3, 1e-2, 1e-1, -1.0}) { // -1: cold (the random N + diag(w) itself, eps 1)
        std::vector<float> h(nn);
        const double ep = eps < 0 ? 1.0 : eps;
        for (size_t k = 0; k < nn; ++k) h[k] = float(ep) * N[k];
        for (int64_t i = 0; i < n; ++i) h[size_t(i * n + i)] += w[size_t(i)];
        std::vector<double> ms;
        int sweeps = 0;
        for (int rep = 0; rep < 3; ++rep) {
          A.up(h);
          ck(cudaStreamSynchronize(s), "sync");
          const auto t0 = std::chrono::steady_clock::now();
          cusolverDnSsyevj(ei.solver, CUSOLVER_EIG_MODE_VECTOR, CUBLAS_FILL_MODE_UPPER, int(n), A.p, int(n), W.p,
                           work.p, lwork, info.p, ji);
          ck(cudaStreamSynchronize(s), "sync");
          ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
          cusolverDnXsyevjGetSweeps(ei.solver, ji, &sweeps);
        }
        std::sort(ms.begin(), ms.end());
        const std::string what = "syevj n " + std::to_string(n) + (eps < 0 ? std::string(", cold") : ", eps " + std::to_string(eps));
        report(what + " ms", ms[1], "ms");
        report(what + " sweeps", double(sweeps), "");
      }
      cusolverDnDestroySyevjInfo(ji);
      // syevd (EighPlan, batch 1) on the cold matrix, same process.
      {
        std::vector<float> h(nn);
        for (size_t k = 0; k < nn; ++k) h[k] = N[k];
        for (int64_t i = 0; i < n; ++i) h[size_t(i * n + i)] += w[size_t(i)];
        Dev<float> S{nn}, V{nn};
        S.up(h);
        cu::EighPlan plan(e, n, 1, symoc::rt::EigPrecision::Float32, cu::EigMethod::Batched);
        Dev<char> ws{plan.workspace_bytes()};
        Timing t = time_it(s, 1, 3, [&] { plan.run(cu::Batch(S.p, 1, n, n), W.p, cu::Batch(V.p, 1, n, n), cu::Workspace{ws.p, ws.n}, s); });
        report("syevd (XsyevBatched) n " + std::to_string(n) + " ms", t.median, "ms");
      }
    } catch (const std::exception &ex) {
      std::printf("BENCH syevj %lld FAILED: %s\n", (long long)n, ex.what());
    }
    if (argc > 1) write_json(argv[1]);
  } catch (const std::exception &ex) {
    std::printf("BENCH FAILED: %s\n", ex.what());
    return 1;
  }
  return 0;
}
