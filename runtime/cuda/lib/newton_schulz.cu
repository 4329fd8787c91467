// Batched polar factor by the quintic Newton-Schulz / Polar Express iteration in bf16 with
// fp32 accumulation (NewtonSchulzPlan of matrix.h; CPU: rt::newton_schulz5, rt::polar_express
// in runtime/lib/linalg.cpp).
//
// Layout: every matrix is packed, normalized and in its wide orientation (r = min side rows,
// k = max side columns, a tall input transposed), into a bank of all matrices with the same
// (r, k); the r x r products A and B of all banks with the same r live in one class buffer.
// Per step: one GEMM per bank for A = X X^T, one per class for B = b A + c A A, one per bank
// for X' = a X + B X. cuBLASLt takes C != D (no copies); where it offers no algorithm, a
// strided-batched cublasGemmEx runs after a copy of C into D.
// NsTuning::symmetric_products: A = X X^T and B = b A + c A A are symmetric, so each runs as
// SymmetricProduct / SymmetricGemm (ns_common.cuh): the upper part in two GEMMs and a mirror,
// 0.75x their FLOPs
// (X' = a X + B X stays dense).
#include "ns_common.cuh"
#include "symoc/runtime/polar_coefficients.h"

#include <algorithm>
#include <map>

namespace symoc::cuda {
namespace detail {
namespace {

using bf16 = __nv_bfloat16;

struct BankInfo {
  int64_t r = 0, k = 0, ldk = 0, sx = 0, count = 0;
  int cls = 0;
  int64_t cls_first = 0; // index of the bank's first matrix in its class
  bf16 *X0 = nullptr, *X1 = nullptr;
  SymmetricProduct gram; // A = X X^T
  BatchedGemm apply;     // X' = a X + B X
};
struct ClassInfo {
  int64_t r = 0, ldr = 0, sr = 0, count = 0;
  bf16 *A = nullptr, *B = nullptr;
  SymmetricProduct square; // B = c A A + b A
};
struct GroupInfo {
  Shape shape;
  bool tall = false;
  int bank = -1;
  int64_t first = 0;   // index in its bank
  int64_t global = 0;  // index over all matrices (norm partials)
};

} // namespace
} // namespace detail

using namespace detail;

struct NewtonSchulzPlan::Impl {
  Engine::Impl &e;
  PolarIteration iter;
  int steps;
  NsTuning tune;
  std::vector<GroupInfo> groups;
  std::vector<BankInfo> banks;
  std::vector<ClassInfo> classes;
  int64_t total = 0;
  size_t bytes = 0;
  // Groups that tune.gram_min_aspect sends to the Gram iteration (gram_newton_schulz.cu):
  // route[i] >= 0 indexes this plan's groups, -1 - route[i] the Gram plan's.
  std::vector<int> route;
  std::unique_ptr<GramNewtonSchulz> gram;
  Engine::Impl::AlgoMap algos; // every product's algorithm (NsTuning::algorithms_from)
  size_t own_bytes = 0;
  std::vector<PolarGroup> own_args, gram_args; // per run, sized here
  // NsTuning::concurrent: the standard groups on a side stream beside the Gram ones, their
  // GEMMs on a copy of the engine with its own cuBLASLt workspace (carved from the plan's).
  cudaStream_t side = nullptr;
  cudaEvent_t fork = nullptr, join = nullptr;
  size_t side_ws_offset = 0;

  Impl(Engine::Impl &e, std::vector<Shape> all, PolarIteration it, int steps, NsTuning t)
      : e(e), iter(it), steps(steps), tune(t) {
    if (steps < 0) fail("newton_schulz", "steps must be >= 0");
    // Every product set up below, the Gram plan's too, records its algorithm here (and takes
    // algorithms_from's where that has the same product).
    const AlgoScope scope(e, &algos, t.algorithms_from ? &t.algorithms_from->impl_->algos : nullptr);
    std::vector<Shape> shapes, gram_shapes;
    for (const Shape &sh : all) {
      const int64_t r = std::min(sh.rows, sh.cols), k = std::max(sh.rows, sh.cols);
      // Newton-Schulz only: Polar Express's first steps (a = 8.3, 4.1) multiply the rounding
      // of a half-precision R in an ill-conditioned input beyond repair, restart or not ("gram
      // stress" in tests/gpu/matrix_test.cpp: 3 to 59 relative error where the standard path
      // has 0.14 to 0.53, non-finite in bf16), so its groups keep the standard iteration.
      const bool g = it == PolarIteration::NewtonSchulz && t.gram_min_aspect > 0 && r > 0 && k > r &&
                     double(k) >= t.gram_min_aspect * double(r);
      route.push_back(g ? -1 - int(gram_shapes.size()) : int(shapes.size()));
      (g ? gram_shapes : shapes).push_back(sh);
    }
    std::map<std::pair<int64_t, int64_t>, int> bank_of;
    std::map<int64_t, int> class_of;
    for (const Shape &sh : shapes) {
      if (sh.batch < 1 || sh.rows < 0 || sh.cols < 0) fail("newton_schulz", "invalid group shape");
      GroupInfo g;
      g.shape = sh;
      g.global = total;
      total += sh.batch;
      if (sh.batch > 65535) fail("newton_schulz", "group batch above 65535");
      g.tall = sh.rows > sh.cols;
      const int64_t r = std::min(sh.rows, sh.cols), k = std::max(sh.rows, sh.cols);
      if (r > 0) {
        auto key = std::make_pair(r, k);
        if (!tune.banks) key.second = -int64_t(groups.size()) - 1; // one bank per group
        auto it = bank_of.find(key);
        if (it == bank_of.end()) {
          it = bank_of.emplace(key, int(banks.size())).first;
          BankInfo b;
          b.r = r, b.k = k;
          banks.push_back(b);
        }
        g.bank = it->second;
        g.first = banks[size_t(g.bank)].count;
        banks[size_t(g.bank)].count += sh.batch;
      }
      groups.push_back(g);
    }
    for (size_t bi = 0; bi < banks.size(); ++bi) {
      BankInfo &b = banks[bi];
      const int64_t ckey = tune.banks ? b.r : -int64_t(bi) - 1;
      auto it = class_of.find(ckey);
      if (it == class_of.end()) {
        it = class_of.emplace(ckey, int(classes.size())).first;
        ClassInfo c;
        c.r = b.r;
        classes.push_back(c);
      }
      b.cls = it->second;
      b.cls_first = classes[size_t(b.cls)].count;
      classes[size_t(b.cls)].count += b.count;
      b.ldk = round_up(b.k, kLdAlign);
      b.sx = round_up(b.r * b.ldk, kStrideAlign);
    }
    for (ClassInfo &c : classes) {
      c.ldr = round_up(c.r, kLdAlign);
      c.sr = round_up(c.r * c.ldr, kStrideAlign);
    }
    for (BankInfo &b : banks) {
      const ClassInfo &c = classes[size_t(b.cls)];
      // A = X X^T: column-major A = Xcm^T Xcm, Xcm (k x r, ld ldk) the stored X.
      BatchedGemm g;
      g.opA = CUBLAS_OP_T, g.opB = CUBLAS_OP_N;
      g.m = b.r, g.n = b.r, g.k = b.k;
      g.lda = b.ldk, g.ldb = b.ldk, g.ldc = c.ldr;
      g.sA = b.sx, g.sB = b.sx, g.sC = c.sr, g.batch = b.count;
      b.gram.setup(e, g, tune.symmetric_for(b.r), tune.lt, tune.tune_gemms);
      // X' = a X + B X: column-major X'cm (k x r) = Xcm (k x r) Bstored (r x r).
      b.apply.opA = CUBLAS_OP_N, b.apply.opB = CUBLAS_OP_N;
      b.apply.m = b.k, b.apply.n = b.r, b.apply.k = b.r;
      b.apply.lda = b.ldk, b.apply.ldb = c.ldr, b.apply.ldc = b.ldk;
      b.apply.sA = b.sx, b.apply.sB = c.sr, b.apply.sC = b.sx, b.apply.batch = b.count;
      b.apply.setup(e, tune.lt, tune.tune_gemms);
    }
    for (ClassInfo &c : classes) {
      // B = c A A + b A (A symmetric: the column-major view needs no transposes).
      BatchedGemm sq;
      sq.m = sq.n = sq.k = c.r;
      sq.lda = sq.ldb = sq.ldc = c.ldr;
      sq.sA = sq.sB = sq.sC = c.sr;
      sq.batch = c.count;
      c.square.setup(e, sq, tune.symmetric_for(c.r), tune.lt, tune.tune_gemms);
    }
    Carver cv;
    layout(cv);
    bytes = own_bytes = cv.used();
    if (!gram_shapes.empty()) {
      gram = std::make_unique<GramNewtonSchulz>(e, gram_shapes, it, steps, t);
      bytes = align_up(own_bytes) + gram->workspace_bytes();
      own_args.resize(shapes.size());
      gram_args.resize(gram_shapes.size());
      // Concurrent only where every standard GEMM is cuBLASLt's: the fallback binds the shared
      // cuBLAS handle to a stream.
      if (t.concurrent && !shapes.empty() && all_use_lt(banks, classes)) {
        side_ws_offset = align_up(bytes);
        bytes = side_ws_offset + e.lib_ws_bytes;
        check(cudaStreamCreateWithFlags(&side, cudaStreamNonBlocking), "cudaStreamCreate");
        check(cudaEventCreateWithFlags(&fork, cudaEventDisableTiming), "cudaEventCreate");
        check(cudaEventCreateWithFlags(&join, cudaEventDisableTiming), "cudaEventCreate");
      }
    }
  }
  ~Impl() {
    for (BankInfo &b : banks) b.gram.destroy(), b.apply.destroy();
    for (ClassInfo &c : classes) c.square.destroy();
    if (fork) cudaEventDestroy(fork);
    if (join) cudaEventDestroy(join);
    if (side) cudaStreamDestroy(side);
  }
  double *layout(Carver &cv) {
    double *part = cv.take<double>(size_t(std::max<int64_t>(total, 1)) * kPartials);
    for (BankInfo &b : banks) {
      b.X0 = cv.take<bf16>(size_t(b.sx * b.count));
      b.X1 = cv.take<bf16>(size_t(b.sx * b.count));
    }
    for (ClassInfo &c : classes) {
      c.A = cv.take<bf16>(size_t(c.sr * c.count));
      c.B = cv.take<bf16>(size_t(c.sr * c.count));
    }
    return part;
  }
  void coef(int s, double &a, double &b, double &c) const {
    const rt::OddQuintic q = iter == PolarIteration::NewtonSchulz ? rt::kNewtonSchulz5 : rt::polar_express_step(s);
    a = q.a, b = q.b, c = q.c;
  }
  // The FLOPs that run (SymmetricProduct::flops_each).
  double flops() const {
    double f = 0;
    for (const BankInfo &b : banks) {
      const ClassInfo &c = classes[size_t(b.cls)];
      const double r = double(b.r), k = double(b.k);
      f += double(steps) * double(b.count) * (b.gram.flops_each() + 2.0 * r * r * k + c.square.flops_each());
    }
    return f + (gram ? gram->flops() : 0.0);
  }

  void run(const PolarGroup *gs, size_t n, Workspace ws, cudaStream_t s) {
    if (!gram) return run_own(gs, n, ws, s, e);
    if (n != route.size())
      fail("newton_schulz", "run with " + std::to_string(n) + " groups, the plan has " + std::to_string(route.size()));
    need_workspace(ws, bytes, "newton_schulz");
    for (size_t i = 0; i < n; ++i) (route[i] >= 0 ? own_args[size_t(route[i])] : gram_args[size_t(-1 - route[i])]) = gs[i];
    const Workspace gram_ws{static_cast<char *>(ws.ptr) + align_up(own_bytes), ws.bytes - align_up(own_bytes)};
    // NsTuning::concurrent (side set at construction). With tune_gemms the first run times the
    // standard GEMMs while the Gram ones run: correct, the timings noisier.
    if (side) {
      Engine::Impl side_e = e; // the same handles, its own cuBLASLt workspace
      side_e.lib_ws = static_cast<char *>(ws.ptr) + side_ws_offset;
      check(cudaEventRecord(fork, s), "cudaEventRecord");
      check(cudaStreamWaitEvent(side, fork, 0), "cudaStreamWaitEvent");
      run_own(own_args.data(), own_args.size(), Workspace{ws.ptr, own_bytes}, side, side_e);
      gram->run(gram_args.data(), gram_args.size(), gram_ws, s);
      check(cudaEventRecord(join, side), "cudaEventRecord");
      check(cudaStreamWaitEvent(s, join, 0), "cudaStreamWaitEvent");
      return;
    }
    run_own(own_args.data(), own_args.size(), Workspace{ws.ptr, own_bytes}, s, e);
    gram->run(gram_args.data(), gram_args.size(), gram_ws, s);
  }
  void run_own(const PolarGroup *gs, size_t n, Workspace ws, cudaStream_t s, Engine::Impl &eng) {
    if (n != groups.size())
      fail("newton_schulz", "run with " + std::to_string(n) + " groups, the plan has " + std::to_string(groups.size()));
    for (size_t i = 0; i < n; ++i) {
      const Shape &sh = groups[i].shape;
      check_batch(gs[i].in, "newton_schulz", "in", gs[i].sources != nullptr);
      check_batch(gs[i].out, "newton_schulz", "out", gs[i].targets != nullptr);
      for (const Batch *x : {&gs[i].in, &gs[i].out})
        if (x->batch != sh.batch || x->rows != sh.rows || x->cols != sh.cols)
          fail("newton_schulz", "group " + std::to_string(i) + " differs from the plan's shape " +
                                    std::to_string(sh.batch) + " x " + std::to_string(sh.rows) + "x" +
                                    std::to_string(sh.cols));
    }
    need_workspace(ws, own_bytes, "newton_schulz");
    Carver cv(ws.ptr);
    double *part = layout(cv);
    eng.bind(s);
    const double scale_mul = iter == PolarIteration::PolarExpress ? 1.01 : 1.0;
    // 1. Frobenius norms (fp32 input, double sums) and the packed, normalized bf16 banks.
    for (size_t i = 0; i < n; ++i) {
      const GroupInfo &g = groups[i];
      if (g.bank < 0) continue;
      const Batch &in = gs[i].in;
      const int64_t sin = in.batch > 1 || gs[i].index ? in.stride : 0;
      const NormSource norms = input_norms(gs[i], sin, part, g.global, s);
      const BankInfo &b = banks[size_t(g.bank)];
      launch_ns_pack<bf16>(gs[i], sin, g.tall, norms, scale_mul, b.X0 + g.first * b.sx, b.ldk, b.sx, s);
    }
    // 2. The iteration, ping-ponging X0 / X1 of every bank.
    bool flip = false;
    for (int st = 0; st < steps; ++st) {
      double a, bb, c;
      coef(st, a, bb, c);
      for (const BankInfo &b : banks) {
        const ClassInfo &cl = classes[size_t(b.cls)];
        const bf16 *X = flip ? b.X1 : b.X0;
        bf16 *A = cl.A + b.cls_first * cl.sr;
        b.gram.run(eng, 1.f, X, X, 0.f, A, A, s);
      }
      for (const ClassInfo &cl : classes) cl.square.run(eng, float(c), cl.A, cl.A, float(bb), cl.A, cl.B, s);
      for (const BankInfo &b : banks) {
        const ClassInfo &cl = classes[size_t(b.cls)];
        const bf16 *X = flip ? b.X1 : b.X0;
        bf16 *Xn = flip ? b.X0 : b.X1;
        b.apply.run(eng, 1.f, X, cl.B + b.cls_first * cl.sr, float(a), X, Xn, s);
      }
      flip = !flip;
    }
    // 3. out = out_scale * X in the input's orientation.
    for (size_t i = 0; i < n; ++i) {
      const GroupInfo &g = groups[i];
      if (g.bank < 0) continue;
      const BankInfo &b = banks[size_t(g.bank)];
      launch_ns_unpack<bf16>((flip ? b.X1 : b.X0) + g.first * b.sx, b.ldk, b.sx, g.tall, gs[i].out_scale, gs[i].out,
                             gs[i].targets, gs[i].index, s);
    }
  }
};

NewtonSchulzPlan::NewtonSchulzPlan(Engine &e, std::vector<Shape> groups, PolarIteration it, int steps, NsTuning t)
    : impl_(std::make_unique<Impl>(e.impl(), std::move(groups), it, steps, t)) {}
NewtonSchulzPlan::~NewtonSchulzPlan() = default;
size_t NewtonSchulzPlan::workspace_bytes() const { return impl_->bytes; }
double NewtonSchulzPlan::flops() const { return impl_->flops(); }
bool NewtonSchulzPlan::uses_lt() const {
  return all_use_lt(impl_->banks, impl_->classes) && (!impl_->gram || impl_->gram->uses_lt());
}
void NewtonSchulzPlan::run(const PolarGroup *groups, size_t n, Workspace ws, cudaStream_t s) {
  impl_->run(groups, n, ws, s);
}

} // namespace symoc::cuda
