// Gram Newton-Schulz: NewtonSchulzPlan's quintic for rectangular matrices, iterated on the
// r x r Gram matrix instead of the r x k matrix (r < k, the wide orientation).
//
// Math. With R = X X^T, one step X' = a X + (b R + c R^2) X is X' = P X with P = a I + Z,
// Z = b R + c R^2, a polynomial in R; then R' = X' X'^T = P R P. So after t steps
// X_t = Q_t X_0 with Q_t = P_{t-1} ... P_0, all polynomials in R_0 (symmetric, commuting),
// and the iteration needs X only to form R_0 and to apply Q at the end:
//   R = X X^T;  per step: P = c R R + b R + a I;  Q = Q P (the first step: Q = P);
//                         W = R P;  R = P W (skipped when R is not needed again)
//   X = Q X.
// P is one GEMM (c R R + b R) and a kernel adding a to its r diagonal elements; the first Q
// is P itself (a pointer swap), so no pass over whole r x r matrices adds an identity, and
// Q P, R P, P W read no C operand.
// In exact arithmetic this is the standard iteration (tests/python/test_gram_newton_schulz.py
// checks it in float64); in half precision the rounding of R and Q compounds, so after
// `restart` steps X is re-formed (X = Q X, R = X X^T, Q restarts), as in Dao-AILab's
// gram-newton-schulz (restart after step 2, fp16 operands). FLOPs for 5 steps with the
// restart after step 2, r x k: 8 r^2 k + 28 r^3 (flops() counts any steps and restart),
// against 5 (4 r^2 k + 2 r^3) for the standard iteration: 60 vs 90 r^3 at k = 4r, equal at
// k = 1.5 r.
//
// Layout as newton_schulz.cu: banks of equal wide shape (r, k) hold X (two buffers); classes
// of equal r hold R, P, Q and a scratch T, so every r x r product of a class is one
// strided-batched GEMM. Operands fp16 or bf16 (NsTuning::gram_half), fp32 accumulation, every
// GEMM output rounded to the operand type.
//
// NsTuning::symmetric_products: every product above except X = Q X has a symmetric r x r
// result (R = X X^T, and the others multiply polynomials in R_0), so each runs as
// SymmetricProduct / SymmetricGemm (ns_common.cuh): the upper part in two GEMMs and a mirror,
// 0.75x the FLOPs.
#include "ns_common.cuh"
#include "symoc/runtime/polar_coefficients.h"

#include <algorithm>
#include <map>

namespace symoc::cuda {
namespace detail {
namespace {

// P_b(i, i) += a for the r x r matrices of a batch (ld ldr, stride sr), in place: one thread
// per diagonal element, matrices b = blockIdx.y, blockIdx.y + gridDim.y, ... < count (a class
// may hold more than CUDA's 65535 grid rows).
template <class T>
__global__ void add_diagonal_kernel(T *P, int64_t count, int64_t r, int64_t ldr, int64_t sr, float a) {
  for (int64_t b = blockIdx.y; b < count; b += gridDim.y)
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < r; i += int64_t(gridDim.x) * blockDim.x) {
      T &d = P[b * sr + i * ldr + i];
      store_half(d, load_half(d) + a);
    }
}

struct GBank {
  int64_t r = 0, k = 0, ldk = 0, sx = 0, count = 0;
  int cls = 0;
  int64_t cls_first = 0;
  void *X[2] = {nullptr, nullptr};
  SymmetricProduct gram; // R = X X^T
  BatchedGemm apply;     // X' = Q X
};
struct GClass {
  int64_t r = 0, ldr = 0, sr = 0, count = 0;
  void *R = nullptr, *P = nullptr, *Q = nullptr, *T = nullptr;
  SymmetricProduct square; // D = alpha A B + beta C, A and B polynomials in R_0
};
struct GGroup {
  Shape shape;
  bool tall = false;
  int bank = -1;
  int64_t first = 0, global = 0;
  // NsTuning::write_through: the last product into the weights, [0] fp32, [1] bf16 weights.
  // Wide (r x k weights, column-major k x r): W = Xcm Q; tall (k x r, column-major r x k):
  // W = Q^T Xcm^T. Operands as pointer arrays in the workspace (A, B, D per matrix; C = D).
  BatchedGemm through[2];
  const void **ptr_a = nullptr, **ptr_b = nullptr;
  void **ptr_d = nullptr;
  float *scalars = nullptr; // alpha = -(lr out_scale), beta = decay
};

// The write-through product's operands for matrix b of a group (bank slot b, caller's matrix
// index[b]): its bank and Q slices, its weights (a skipped matrix: the scratch buffer, shared
// by every skipped one: what they get is never read), and the group's alpha and beta from its
// first target (PolarGroup::targets_uniform: every target has the same lr and decay).
__global__ void write_through_operands_kernel(const PolarTarget *targets, const int32_t *index, int64_t batch,
                                              const char *X, int64_t x_bytes, const char *Q, int64_t q_bytes,
                                              void *scratch, bool tall, float out_scale, const void **A,
                                              const void **B, void **D, float *scalars) {
  const int64_t b = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (b >= batch) return;
  const PolarTarget t = targets[index ? index[b] : b];
  const void *x = X + b * x_bytes, *q = Q + b * q_bytes;
  A[b] = tall ? q : x;
  B[b] = tall ? x : q;
  D[b] = t.skip ? scratch : t.w;
  if (b == 0) scalars[0] = -(t.lr * out_scale), scalars[1] = t.decay;
}

char *at(void *base, int64_t elems) { return static_cast<char *>(base) + elems * 2; } // 16-bit elements

} // namespace
} // namespace detail

using namespace detail;

struct GramNewtonSchulz::Impl {
  Engine::Impl &e;
  PolarIteration iter;
  int steps, restart;
  NsTuning tune;
  cudaDataType_t type;
  std::vector<GGroup> groups;
  std::vector<GBank> banks;
  std::vector<GClass> classes;
  int64_t total = 0;
  size_t bytes = 0;

  Impl(Engine::Impl &e, const std::vector<Shape> &shapes, PolarIteration it, int steps, const NsTuning &t)
      : e(e), iter(it), steps(steps), restart(t.gram_restart), tune(t),
        type(t.gram_half == NsHalf::FP16 ? CUDA_R_16F : CUDA_R_16BF) {
    if (steps < 0) fail("gram_newton_schulz", "steps must be >= 0");
    if (restart < 0) fail("gram_newton_schulz", "restart must be >= 0");
    std::map<std::pair<int64_t, int64_t>, int> bank_of;
    for (const Shape &sh : shapes) {
      if (sh.batch < 1 || sh.rows < 1 || sh.cols < 1) fail("gram_newton_schulz", "invalid group shape");
      if (sh.batch > 65535) fail("gram_newton_schulz", "group batch above 65535");
      GGroup g;
      g.shape = sh, g.global = total, g.tall = sh.rows > sh.cols;
      total += sh.batch;
      std::pair<int64_t, int64_t> key(std::min(sh.rows, sh.cols), std::max(sh.rows, sh.cols));
      if (!tune.banks) key.second = -int64_t(groups.size()) - 1;
      auto bit = bank_of.find(key);
      if (bit == bank_of.end()) {
        bit = bank_of.emplace(key, int(banks.size())).first;
        GBank b;
        b.r = std::min(sh.rows, sh.cols), b.k = std::max(sh.rows, sh.cols);
        banks.push_back(b);
      }
      g.bank = bit->second;
      g.first = banks[size_t(g.bank)].count;
      banks[size_t(g.bank)].count += sh.batch;
      groups.push_back(g);
    }
    std::map<int64_t, int> class_of;
    for (size_t bi = 0; bi < banks.size(); ++bi) {
      GBank &b = banks[bi];
      const int64_t ckey = tune.banks ? b.r : -int64_t(bi) - 1;
      auto cit = class_of.find(ckey);
      if (cit == class_of.end()) {
        cit = class_of.emplace(ckey, int(classes.size())).first;
        GClass c;
        c.r = b.r;
        classes.push_back(c);
      }
      b.cls = cit->second;
      b.cls_first = classes[size_t(b.cls)].count;
      classes[size_t(b.cls)].count += b.count;
      b.ldk = round_up(b.k, kLdAlign);
      b.sx = round_up(b.r * b.ldk, kStrideAlign);
    }
    for (GClass &c : classes) {
      c.ldr = round_up(c.r, kLdAlign);
      c.sr = round_up(c.r * c.ldr, kStrideAlign);
      // Every r x r product D = alpha A B + beta C of the class (symmetric operands: the
      // column-major views need no transposes).
      BatchedGemm sq;
      sq.type = type;
      sq.m = sq.n = sq.k = c.r;
      sq.lda = sq.ldb = sq.ldc = c.ldr;
      sq.sA = sq.sB = sq.sC = c.sr;
      sq.batch = c.count;
      c.square.setup(e, sq, tune.symmetric_for(c.r), tune.lt, tune.tune_gemms);
    }
    for (GBank &b : banks) {
      const GClass &c = classes[size_t(b.cls)];
      // R = X X^T: column-major R = Xcm^T Xcm, Xcm (k x r, ld ldk) the stored X.
      BatchedGemm g;
      g.type = type;
      g.opA = CUBLAS_OP_T, g.opB = CUBLAS_OP_N;
      g.m = b.r, g.n = b.r, g.k = b.k;
      g.lda = b.ldk, g.ldb = b.ldk, g.ldc = c.ldr;
      g.sA = b.sx, g.sB = b.sx, g.sC = c.sr, g.batch = b.count;
      b.gram.setup(e, g, tune.symmetric_for(b.r), tune.lt, tune.tune_gemms);
      // X' = Q X: column-major X'cm (k x r) = Xcm (k x r) Qstored (r x r).
      b.apply.type = type;
      b.apply.m = b.k, b.apply.n = b.r, b.apply.k = b.r;
      b.apply.lda = b.ldk, b.apply.ldb = c.ldr, b.apply.ldc = b.ldk;
      b.apply.sA = b.sx, b.apply.sB = c.sr, b.apply.sC = b.sx, b.apply.batch = b.count;
      b.apply.setup(e, tune.lt, tune.tune_gemms);
    }
    if (tune.write_through && tune.lt)
      for (GGroup &g : groups) {
        const GBank &b = banks[size_t(g.bank)];
        const GClass &c = classes[size_t(b.cls)];
        for (int bf = 0; bf < 2; ++bf) {
          BatchedGemm &t = g.through[bf];
          t.type = type, t.pointers = true, t.cd_type = bf ? CUDA_R_16BF : CUDA_R_32F;
          t.m = g.tall ? b.r : b.k, t.n = g.tall ? b.k : b.r, t.k = b.r;
          t.opA = g.tall ? CUBLAS_OP_T : CUBLAS_OP_N, t.opB = g.tall ? CUBLAS_OP_T : CUBLAS_OP_N;
          t.lda = g.tall ? c.ldr : b.ldk, t.ldb = g.tall ? b.ldk : c.ldr, t.ldc = g.shape.cols;
          t.batch = g.shape.batch;
          t.align_cd = 16;
          t.setup(e, true, false);
        }
      }
    Carver cv;
    layout(cv);
    bytes = cv.used();
  }
  ~Impl() {
    for (GGroup &g : groups) g.through[0].destroy(), g.through[1].destroy();
    for (GBank &b : banks) b.gram.destroy(), b.apply.destroy();
    for (GClass &c : classes) c.square.destroy();
  }
  double *layout(Carver &cv) {
    double *part = cv.take<double>(size_t(std::max<int64_t>(total, 1)) * kPartials);
    for (GBank &b : banks)
      for (void *&x : b.X) x = cv.take<uint16_t>(size_t(b.sx * b.count));
    for (GClass &c : classes)
      for (void **p : {&c.R, &c.P, &c.Q, &c.T}) *p = cv.take<uint16_t>(size_t(c.sr * c.count));
    int64_t most = 0; // the largest weight of a group that may write through (the scratch)
    for (GGroup &g : groups) {
      if (!g.through[0].lt && !g.through[1].lt) continue;
      const size_t nb = size_t(g.shape.batch);
      g.ptr_a = cv.take<const void *>(nb), g.ptr_b = cv.take<const void *>(nb), g.ptr_d = cv.take<void *>(nb);
      g.scalars = cv.take<float>(2);
      most = std::max(most, g.shape.rows * g.shape.cols);
    }
    scratch = most ? cv.take<float>(size_t(most)) : nullptr;
    return part;
  }
  void *scratch = nullptr;
  // Whether group i's last product goes straight into its weights this run (and with which
  // of the two descriptors).
  const BatchedGemm *write_through_of(size_t i, const PolarGroup &pg) const {
    const GGroup &g = groups[i];
    if (!pg.targets || !pg.targets_uniform || pg.out.ld != g.shape.cols) return nullptr;
    const BatchedGemm &t = g.through[pg.targets_bf16 ? 1 : 0];
    return t.lt ? &t : nullptr;
  }
  void write_through(const GGroup &g, const PolarGroup &pg, const BatchedGemm &t, int cur, cudaStream_t s) {
    const GBank &b = banks[size_t(g.bank)];
    const GClass &c = classes[size_t(b.cls)];
    const int64_t nb = g.shape.batch;
    write_through_operands_kernel<<<unsigned((nb + 127) / 128), 128, 0, s>>>(
        pg.targets, pg.index, nb, at(b.X[cur], g.first * b.sx), b.sx * 2, at(c.Q, (b.cls_first + g.first) * c.sr),
        c.sr * 2, scratch, g.tall, pg.out_scale, g.ptr_a, g.ptr_b, g.ptr_d, g.scalars);
    check_launch("gram_newton_schulz write-through operands");
    t.run_pointers(e, g.scalars, g.ptr_a, g.ptr_b, g.scalars + 1, g.ptr_d, g.ptr_d, s);
  }
  void coef(int s, float &a, float &b, float &c) const {
    const rt::OddQuintic q = iter == PolarIteration::NewtonSchulz ? rt::kNewtonSchulz5 : rt::polar_express_step(s);
    a = float(q.a), b = float(q.b), c = float(q.c);
  }
  // Steps at which R is re-formed from X (t == restart), and whether step t updates R.
  bool restarts_at(int t) const { return restart > 0 && t == restart && t < steps; }
  bool updates_r(int t) const { return t + 1 < steps && !restarts_at(t + 1); }
  // The FLOPs that run (SymmetricProduct::flops_each).
  double flops() const {
    double f = 0;
    for (const GBank &b : banks) {
      if (steps == 0) continue;
      const GClass &c = classes[size_t(b.cls)];
      const double r = double(b.r), k = double(b.k), n = double(b.count);
      const double gram = b.gram.flops_each(), sq = c.square.flops_each();
      double per = gram + 2 * r * r * k; // R_0 = X X^T and the final Q X
      for (int t = 0; t < steps; ++t) {
        if (restarts_at(t)) per += 2 * r * r * k + gram; // X = Q X, R = X X^T
        per += sq;                                         // P
        if (t > 0 && !restarts_at(t)) per += sq;           // Q P
        if (updates_r(t)) per += 2 * sq;                   // W, R
      }
      f += n * per;
    }
    return f;
  }

  template <class T> void pack(const GGroup &g, const PolarGroup &pg, int64_t sin, NormSource norms, double mul, cudaStream_t s) {
    const GBank &b = banks[size_t(g.bank)];
    launch_ns_pack<T>(pg, sin, g.tall, norms, mul, reinterpret_cast<T *>(at(b.X[0], g.first * b.sx)), b.ldk, b.sx, s);
  }
  template <class T> void unpack(const GGroup &g, const PolarGroup &pg, int cur, cudaStream_t s) {
    const GBank &b = banks[size_t(g.bank)];
    launch_ns_unpack<T>(reinterpret_cast<const T *>(at(b.X[cur], g.first * b.sx)), b.ldk, b.sx, g.tall, pg.out_scale,
                        pg.out, pg.targets, pg.index, s);
  }
  template <class T> void add_diagonal(const GClass &c, float a, cudaStream_t s) {
    const dim3 grid(unsigned((c.r + 255) / 256), unsigned(std::min<int64_t>(c.count, 65535)));
    add_diagonal_kernel<T><<<grid, 256, 0, s>>>(static_cast<T *>(c.P), c.count, c.r, c.ldr, c.sr, a);
    check_launch("gram_newton_schulz add_diagonal");
  }

  // R = X X^T for every bank, X = X[cur].
  void form_gram(int cur, cudaStream_t s) {
    for (const GBank &b : banks) {
      const GClass &c = classes[size_t(b.cls)];
      void *R = at(c.R, b.cls_first * c.sr);
      b.gram.run(e, 1.f, b.X[cur], b.X[cur], 0.f, R, R, s);
    }
  }
  // X[1 - cur] = Q X[cur] for every bank.
  void apply_q(int cur, cudaStream_t s) {
    for (const GBank &b : banks) {
      const GClass &c = classes[size_t(b.cls)];
      b.apply.run(e, 1.f, b.X[cur], at(c.Q, b.cls_first * c.sr), 0.f, b.X[1 - cur], b.X[1 - cur], s);
    }
  }

  void run(const PolarGroup *gs, size_t n, Workspace ws, cudaStream_t s) {
    if (n != groups.size())
      fail("gram_newton_schulz",
           "run with " + std::to_string(n) + " groups, the plan has " + std::to_string(groups.size()));
    for (size_t i = 0; i < n; ++i) {
      const Shape &sh = groups[i].shape;
      check_batch(gs[i].in, "gram_newton_schulz", "in", gs[i].sources != nullptr);
      check_batch(gs[i].out, "gram_newton_schulz", "out", gs[i].targets != nullptr);
      for (const Batch *x : {&gs[i].in, &gs[i].out})
        if (x->batch != sh.batch || x->rows != sh.rows || x->cols != sh.cols)
          fail("gram_newton_schulz", "group " + std::to_string(i) + " differs from the plan's shape " +
                                         std::to_string(sh.batch) + " x " + std::to_string(sh.rows) + "x" +
                                         std::to_string(sh.cols));
    }
    need_workspace(ws, bytes, "gram_newton_schulz");
    Carver cv(ws.ptr);
    double *part = layout(cv);
    e.bind(s);
    const bool fp16 = type == CUDA_R_16F;
    const double scale_mul = iter == PolarIteration::PolarExpress ? 1.01 : 1.0;
    // 1. Norms and the packed, normalized banks (X[0]).
    for (size_t i = 0; i < n; ++i) {
      const GGroup &g = groups[i];
      const Batch &in = gs[i].in;
      const int64_t sin = in.batch > 1 || gs[i].index ? in.stride : 0;
      const NormSource norms = input_norms(gs[i], sin, part, g.global, s);
      if (fp16) pack<__half>(g, gs[i], sin, norms, scale_mul, s);
      else pack<__nv_bfloat16>(g, gs[i], sin, norms, scale_mul, s);
    }
    // 2. The iteration on R and Q; X is touched at the start, at the restart and at the end.
    int cur = 0;
    if (steps > 0) form_gram(cur, s);
    bool fresh = true;
    for (int t = 0; t < steps; ++t) {
      if (restarts_at(t)) {
        apply_q(cur, s);
        cur = 1 - cur;
        form_gram(cur, s);
        fresh = true;
      }
      float a, b, c;
      coef(t, a, b, c);
      for (GClass &cl : classes) {
        cl.square.run(e, c, cl.R, cl.R, b, cl.R, cl.P, s); // P = c R R + b R
        if (fp16) add_diagonal<__half>(cl, a, s);           //     + a I
        else add_diagonal<__nv_bfloat16>(cl, a, s);
        void *P = cl.P;
        if (fresh) { // Q = P: P's buffer becomes Q's, the old Q's is the next step's P
          std::swap(cl.Q, cl.P);
        } else {
          cl.square.run(e, 1.f, cl.Q, P, 0.f, cl.T, cl.T, s); // T = Q P
          std::swap(cl.Q, cl.T);
        }
        if (updates_r(t)) { // T is free here (the old Q, or unused)
          cl.square.run(e, 1.f, cl.R, P, 0.f, cl.T, cl.T, s); // W = R P (in T)
          cl.square.run(e, 1.f, P, cl.T, 0.f, cl.R, cl.R, s); // R = P W
        }
      }
      fresh = false;
    }
    // 3. The groups that write through take their update from X and Q here; the others
    // get X = Q X and out = out_scale * X in the input's orientation (the unpack).
    std::vector<const BatchedGemm *> through(n, nullptr);
    bool unpacks = steps == 0;
    for (size_t i = 0; i < n; ++i) {
      if (steps > 0) through[i] = write_through_of(i, gs[i]);
      if (through[i]) write_through(groups[i], gs[i], *through[i], cur, s);
      else unpacks = true;
    }
    if (!unpacks) return;
    if (steps > 0) {
      apply_q(cur, s);
      cur = 1 - cur;
    }
    for (size_t i = 0; i < n; ++i) {
      if (through[i]) continue;
      if (fp16) unpack<__half>(groups[i], gs[i], cur, s);
      else unpack<__nv_bfloat16>(groups[i], gs[i], cur, s);
    }
  }
};

GramNewtonSchulz::GramNewtonSchulz(Engine::Impl &e, std::vector<Shape> groups, PolarIteration it, int steps,
                                   const NsTuning &t)
    : impl_(std::make_unique<Impl>(e, groups, it, steps, t)) {}
GramNewtonSchulz::~GramNewtonSchulz() = default;
size_t GramNewtonSchulz::workspace_bytes() const { return impl_->bytes; }
double GramNewtonSchulz::flops() const { return impl_->flops(); }
bool GramNewtonSchulz::uses_lt() const { return all_use_lt(impl_->banks, impl_->classes); }
void GramNewtonSchulz::run(const PolarGroup *groups, size_t n, Workspace ws, cudaStream_t s) {
  impl_->run(groups, n, ws, s);
}

} // namespace symoc::cuda
