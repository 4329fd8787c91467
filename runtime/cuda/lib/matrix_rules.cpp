// MatrixRules: see matrix_rules.h. The math of each direction is the CPU rule's
// (runtime/lib/{symo,optim,gauge}.cpp), on the matrix library's batched routines.
#include "matrix_rules.h"

#include "env.h"

#include "rule_kernels.h"
#include "symo_views.h"
#include "symoc/runtime/optimizer_api.h"

#include <cmath>
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>

namespace symoc::rt::cuda {

using namespace detail;
namespace mx = symoc::cuda;

namespace {

void check(cudaError_t e, const char *what) {
  if (e != cudaSuccess) {
    cudaGetLastError();
    throw Error(std::string("cuda: ") + what + ": " + cudaGetErrorString(e));
  }
}

enum class RKind { Symo, LauSuRow, LauSuCol, LauSuCentered, LauSuPolar, LauSuLeftCentered, Shampoo, Muon, Adam };

// A run of one side (symo.cpp's Range): `len` coordinates at `off`, split = S (mean line +
// centred part), else one component.
struct Run {
  int64_t off, len;
  bool split;
};

// The side's runs from its pieces (pieces_side) or its group (make_side without heads).
// Returns false when the side is trivial; throws on pieces that do not tile.
bool side_runs(const PieceDesc *pieces, int np, const std::string &group, int64_t n, std::vector<Run> &runs) {
  runs.clear();
  if (np > 0) {
    int64_t at = 0;
    for (int i = 0; i < np; ++i) {
      const PieceDesc &p = pieces[i];
      const std::string g = p.group;
      if (p.offset != at || p.extent <= 0 || p.parts <= 0 || p.extent % p.parts != 0) throw Error("pieces do not tile");
      if (g == "1") return false;
      if (g == "Z2") {
        for (int64_t k = 0; k < p.extent; ++k) runs.push_back(Run{p.offset + k, 1, false});
      } else {
        const int64_t len = p.extent / p.parts;
        for (int64_t k = 0; k < p.parts; ++k) runs.push_back(Run{p.offset + k * len, len, g == "S"});
      }
      at += p.extent;
    }
    if (at != n) throw Error("pieces do not cover the side");
    return true;
  }
  if (group == "1") return false;
  if (group == "Z2") {
    for (int64_t k = 0; k < n; ++k) runs.push_back(Run{k, 1, false});
    return true;
  }
  if (group == "S" || group == "B" || group == "O") {
    runs.push_back(Run{0, n, group == "S"});
    return true;
  }
  throw Error("unknown group '" + group + "'");
}

RKind base_kind(const BlockDesc &b, bool *ok) {
  const std::string k = b.kind ? b.kind : "", v = b.variant ? b.variant : "";
  *ok = true;
  if (k == "symo" || k == "symo_coupled") return RKind::Symo;
  if (k == "shampoo") return RKind::Shampoo;
  if (k == "muon") return RKind::Muon;
  if (k == "adamw" || k == "adam") return RKind::Adam;
  if (k == "lausu") {
    if (v == "row") return RKind::LauSuRow;
    if (v == "col") return RKind::LauSuCol;
    if (v == "centered_row") return RKind::LauSuCentered;
    if (v == "polar") return RKind::LauSuPolar;
    if (v == "left_spectral_centered") return RKind::LauSuLeftCentered;
  }
  *ok = false;
  return RKind::Adam;
}

// Symo's beta2 = 0 runs take their polar factor from Muon's bf16 Newton-Schulz instead of the
// eigendecomposition of their Gram matrix when the plan says so (hyper-parameter ns_steps > 0,
// the CPU rule's SymoConfig::ns_steps) or SYMOC_CUDA_SYMO_POLAR=ns forces it for exact-polar
// plans (faster, approximate: singular values in Newton-Schulz's band, no eps damping).
// Returns the iteration count, 0 for the eigen route.
int symo_ns_steps(const BlockDesc &d) {
  const int planned = int(d.get("ns_steps", 0));
  if (planned > 0) return planned;
  return env_choice("SYMOC_CUDA_SYMO_POLAR", {"eigh", "ns"}) == "ns" ? 5 : 0;
}

// SYMOC_CUDA_EIG=f32|f64 for every rule; unset: fp32 for Symo (its runs are damped by d eps:
// fp32 agrees with the CPU to ~3e-4), the CPU's double for Shampoo (eps 1e-6 is far below
// fp32's eigenvalue resolution n 2^-24 lambda_max: a refresh on a rank-deficient L amplifies
// its null directions differently) and Lau-Su's polar (undamped: a square block's smallest
// singular values are lost in an fp32 Gram). Measured in docs/testing.md.
mx::EigPrecision eig_precision(RKind k) {
  const std::string e = env_choice("SYMOC_CUDA_EIG", {"f32", "f64"});
  if (e == "f64") return mx::EigPrecision::Float64;
  if (e == "f32") return mx::EigPrecision::Float32;
  return k == RKind::Symo ? mx::EigPrecision::Float32 : mx::EigPrecision::Float64;
}

// Shampoo's inverse roots (SYMOC_CUDA_ROOT, read at create_cuda): unset/eigh by the
// eigendecomposition (SymPowPlan, the CPU rule's pseudo-inverse cut); newton by the coupled
// Newton iteration on GEMMs (InvRootPlan, in eig_precision's fp32 / fp64; no cut, so the
// plan's eps must be > 0); newton-tf32 the same on fp32 data with TF32 tensor-core products.
// SYMOC_CUDA_ROOT_ITERS=N sets the Newton step budget (default NewtonRootOptions::iters),
// SYMOC_CUDA_ROOT_SCALED=1 the scaled steps (NewtonRootOptions::scaled, fp64 only: at p = 4,
// 12 steps converge where the plain iteration needs 16-20).
// Only Shampoo: the rules that need eigenvectors or polar factors (Symo, Lau-Su) keep eigh.
enum class RootRoute { Eigh, Newton, NewtonTF32 };
RootRoute root_route() {
  const std::string v = env_choice("SYMOC_CUDA_ROOT", {"eigh", "newton", "newton-tf32"});
  return v == "newton" ? RootRoute::Newton : v == "newton-tf32" ? RootRoute::NewtonTF32 : RootRoute::Eigh;
}
mx::NewtonRootOptions newton_root_options() {
  mx::NewtonRootOptions o;
  o.iters = int(env_whole("SYMOC_CUDA_ROOT_ITERS", o.iters, 1, 1000, "the Newton step budget"));
  o.scaled = env_flag("SYMOC_CUDA_ROOT_SCALED", o.scaled);
  return o;
}

// How Symo's runs reach the Newton-Schulz plan and come back (SYMOC_CUDA_SYMO_AUX):
//   tiled (default): every run packed into a strided batch and back by coalesced kernels
//     (32 x 32 shared-memory tiles for transposed pieces, one warp per row for row pieces,
//     32 row lanes per column for the S runs' means, one write pass in s_fix);
//   legacy: the same packing by the first kernels (one thread per column down every row;
//     transposed pieces stored uncoalesced), kept to time them and as the fallback;
//   direct (opt-in): as tiled, except that a run that is one member's whole rows or columns,
//     not an S run and not a square column run, goes to the plan as a strided view of U and
//     comes back into D (polar(X^T) = polar(X)^T; the plan packs and transposes anyway),
//     scaled by s1 s2 there (symo_views.h).
// The arithmetic is the same: tiled == legacy bitwise on every Symo library of the GPU checks
// (aux.tiled.<lib>, H200, 2026-12-02); direct differs by the order of its norm sums (1.8e-7
// of the update on GPT-2) and stays opt-in until a GPU run has checked its square-run fix.
enum class SymoAux { Legacy, Tiled, Direct };
SymoAux symo_aux() {
  const std::string v = env_choice("SYMOC_CUDA_SYMO_AUX", {"tiled", "legacy", "direct"});
  if (v == "legacy") return SymoAux::Legacy;
  if (v == "direct") return SymoAux::Direct;
  return SymoAux::Tiled;
}
// Each view is a group of the Newton-Schulz plan (its own pack / unpack launches): above this
// many (runs neither tiling the rows nor contiguous), the class is packed instead.
constexpr size_t kMaxDirectViews = 32;

template <class T> T *dmalloc(size_t n, int64_t &bytes) {
  void *p = nullptr;
  check(cudaMalloc(&p, sizeof(T) * std::max<size_t>(n, 1)), "cudaMalloc");
  bytes += int64_t(sizeof(T) * n);
  return static_cast<T *>(p);
}

} // namespace

mx::NsTuning ns_tuning_from_env() {
  mx::NsTuning t;
  // The optimizers' default: the Gram iteration on groups with aspect >= 2 (fp16 operands,
  // restart after step 2). Measured end to end on an H200 (docs/benchmarks.md, "Gram
  // Newton-Schulz"): 7x closer to the fp32 iteration than the standard bf16 path, 45 of 45
  // optimizer checks, the Muon step 0.89x -> 0.72x torch.optim.Muon on LLaMA-1B shapes and
  // 0.23x -> 0.21x on GPT-2 small. SYMOC_CUDA_NS=standard turns it off.
  t.gram_min_aspect = mx::kGramNsMinAspect;
  if (env_ns_path() == "standard") t.gram_min_aspect = 0;
  // SYMOC_CUDA_NS_GRAM_RESTART=N: the Gram path's restart after step N (0: none; default 2).
  t.gram_restart = int(env_whole("SYMOC_CUDA_NS_GRAM_RESTART", t.gram_restart, 0, 64,
                                 "the Newton-Schulz step after which the Gram path restarts (0: never)"));
  t.lt = env_flag("SYMOC_CUDA_NS_LT", t.lt);
  // Symmetric products where they pay (r >= kSymmetricMinSide, measured on an H200:
  // docs/benchmarks.md, "Symmetric products"); SYMOC_CUDA_NS_SYM=1: on every side, 0: off.
  t.symmetric_products = true;
  t.symmetric_min_side = mx::kSymmetricMinSide;
  const std::string sym = env_choice("SYMOC_CUDA_NS_SYM", {"0", "1"});
  if (sym == "1") t.symmetric_min_side = 2;
  if (sym == "0") t.symmetric_products = false;
  // SYMOC_CUDA_GEMM_TUNE=1: time the GEMM algorithms on the first step (NsTuning::tune_gemms).
  t.tune_gemms = env_flag("SYMOC_CUDA_GEMM_TUNE", t.tune_gemms);
  // Standard and Gram groups on two streams (NsTuning::concurrent; SYMOC_CUDA_NS_STREAMS=1: one).
  // The default since session 23: once the Gram groups' last product wrote through into the
  // weights, the square groups' small GEMMs (GPT-2's 12 x 768^2: under two waves of tiles)
  // filled the Gram chain's gaps, 2.88 vs 2.93 ms graph on GPT-2 small (docs/benchmarks.md).
  t.concurrent = env_choice("SYMOC_CUDA_NS_STREAMS", {"1", "2"}) != "1";
  // The Gram path's last product written through into the weights (NsTuning::write_through);
  // SYMOC_CUDA_NS_WRITE_THROUGH=0: the product into the bank and the unpack, as before.
  t.write_through = env_flag("SYMOC_CUDA_NS_WRITE_THROUGH", true);
  return t;
}

// A class of equal runs of a Symo group: every block's runs of this length and kind, as one
// strided batch of K = blocks x runs matrices (len x T, T the stacked width).
struct RunClass {
  int64_t len = 0;
  bool split = false;
  std::vector<int64_t> offs; // the runs' offsets on the shared side (the same in every block)
  int K = 0, nops = 1;
  std::unique_ptr<mx::GramPowPlan> plan; // beta2 = 0
  int ns_index = -1;                     // beta2 = 0 by Newton-Schulz (symo_ns_steps): its group in g.ns
  // SymoAux::Direct: the plan's groups from ns_index on, views of U (in) and D (out) of member
  // position direct_pos (symo_views.h)
  std::vector<RunView> direct;
  int direct_pos = 0;
  std::unique_ptr<mx::SymPowPlan> pow;   // beta2 > 0
  PackEntry *d_u = nullptr, *d_g = nullptr, *d_out = nullptr;
  int nentries = 0;
  int64_t max_cols = 0;
  float *PU = nullptr, *PG = nullptr, *Q = nullptr, *mu = nullptr, *muU = nullptr;
  float *C = nullptr, *H = nullptr, *S = nullptr, *mout = nullptr; // beta2 > 0: [K * nops, T, T]
  float s1 = 1.f, s2 = 1.f;
};
struct MatrixRules::Group {
  RKind kind;
  std::string tag;
  std::vector<int> blocks;
  int np = 1;
  std::vector<int64_t> rows, cols; // per position in the block
  PrepCfg prep{};
  float wd = 0.f;
  std::vector<GaugeDesc> gauges;
  // symo, symo_coupled: Z = the members stacked along the shared side (sdim x tdim)
  struct Member {
    int pos, axis; // axis 0: the member's rows are the shared side; 1: its columns
  };
  std::vector<Member> members;
  int64_t sdim = 0, tdim = 0;
  bool coupled = false, stats_from_g = false;
  // two-sided Symo: one scalar per component pair (symo.cpp's two_sided)
  bool two_sided = false;
  std::vector<PairDesc> pairs;
  PairDesc *d_pairs = nullptr;
  int64_t npairs = 0, nmeans = 0;
  float *s2 = nullptr;        // state: [blocks, npairs]
  double *coef = nullptr, *means = nullptr;
  float beta2 = 0.f;
  std::unique_ptr<mx::NewtonSchulzPlan> ns; // the runs' polar factors by Newton-Schulz (option)
  std::vector<mx::PolarGroup> ns_groups;
  std::vector<Run> runs;
  std::vector<int> run_class, run_index; // per run: its class and position there
  std::vector<RunClass> classes;
  float eps = 1e-8f;
  bool muon_scale = false;
  int ns_steps = 0; // beta2 = 0 runs by Newton-Schulz with this many iterations (0: eigen route)
  SymoAux aux = SymoAux::Tiled; // symo_aux() when the group was made
  // lausu polar
  std::unique_ptr<mx::PolarPlan> polar;
  std::unique_ptr<mx::GramPowPlan> left_pow; // Lau-Su left_spectral_centered: (Mc Mc^T + eps I)^{-1/2} Mc
  float *nu = nullptr;                       // its nuclear scales <Mc, D>, one per block
  // shampoo
  bool useL = true, useR = true;
  float sh_beta2 = 1.f;
  int exponent = 4, freq = 1;
  std::unique_ptr<mx::SymPowPlan> powL, powR;
  std::unique_ptr<mx::InvRootPlan> rootL, rootR; // SYMOC_CUDA_ROOT=newton: instead of powL, powR
  std::vector<int64_t> hcount;
  // Shampoo's refresh schedule: block i (stepped this step) recomputes its roots on every
  // freq-th of its own steps, counted on the host (plan_banks and finish ask the same).
  bool refreshes(int i, bool stepped) const { return stepped && hcount[size_t(i)] % freq == 0; }
  bool refresh = false;
  bool banked = false; // this step's roots come from a RootBank (plan_banks)
  MaskArgs mask{}, refresh_mask{};
  float *L = nullptr, *R = nullptr, *Lr = nullptr, *Rr = nullptr, *S = nullptr, *T = nullptr;
  // Operands split once (mx::split_products): G into U (hi) and Glo by the prep stage
  // (PrepMode::CopySplit, Slot::s0 into Glo), the roots into Lr / Rr (hi) and Lr_lo /
  // Rr_lo when they are made; the state's L_root / R_root are hi + lo (exact).
  bool split = false;
  float *Glo = nullptr, *Lr_lo = nullptr, *Rr_lo = nullptr;
  mx::SplitBatch g_ops(int64_t m, int64_t n) const { return {mx::Batch(U[0], nb(), m, n), Glo}; }
  // muon
  float muon_out_scale = 1.f;
  int64_t head_rows = 0;
  float norm_beta2 = 0.f, norm_eps = 1e-10f; // NorMuon (norm_beta2 > 0): v per line in Slot::s1
  int norm_axis = 0;
  int64_t max_lines = 0;
  double *norm_sq = nullptr; // per slot: the lines' sums of squares and inverse roots
  bool line_norm() const { return kind == RKind::Muon && norm_beta2 > 0.f; }
  int64_t lines(const Slot &s) const { return norm_axis == 0 ? s.rows : s.cols; }
  // device
  std::vector<Slot> slots;
  std::vector<Chunk> chunks;
  Slot *d_slots = nullptr;
  Chunk *d_chunks = nullptr;
  StepArgs args{};
  bool any = false, ready = false;
  std::vector<float *> U, D; // per position: [blocks, rows, cols]
  float *state = nullptr;
  int64_t state_floats = 0;
  size_t ws_bytes = 0; // the group's need of MatrixRules' shared workspace
  std::vector<void *> allocs;
  int nb() const { return int(blocks.size()); }
  // Muon's Newton-Schulz batch of piece k: every block's matrix, or its heads (head_rows).
  mx::Shape muon_shape(int k) const {
    const int64_t r = rows[size_t(k)], sub = head_rows > 0 ? head_rows : r;
    return mx::Shape{nb() * (r / sub), sub, cols[size_t(k)]};
  }
  bool has_momentum() const { return prep.mode != int(PrepMode::Copy) && prep.mode != int(PrepMode::CopySplit); }
};

namespace {
std::pair<std::string, std::string> variant_groups(const BlockDesc &b) {
  const std::string v = b.variant ? b.variant : "";
  const size_t x = v.find(" x ");
  if (x == std::string::npos) return {v.empty() ? "1" : v, "1"};
  return {v.substr(0, x), v.substr(x + 3)};
}

// The side Symo steps (the one non-trivial side; the shared side of coupled members):
// false when both sides of a single block are non-trivial, or the members do not share it.
bool symo_shape(const BlockDesc &b, const ParamDesc *params, int64_t *sdim, int64_t *tdim, bool *two = nullptr) {
  const ParamDesc &p = params[b.params[0]];
  if (two) *two = false;
  if (std::string(b.kind) == "symo_coupled") {
    if (!b.axes || b.nparams < 2) return false;
    *sdim = -1, *tdim = 0;
    for (int i = 0; i < b.nparams; ++i) {
      const ParamDesc &q = params[b.params[i]];
      if (b.axes[i] != 0 && b.axes[i] != 1) return false;
      const int64_t s = b.axes[i] == 0 ? q.rows : q.cols;
      if (*sdim >= 0 && s != *sdim) return false;
      *sdim = s, *tdim += b.axes[i] == 0 ? q.cols : q.rows;
    }
    return true;
  }
  const auto [lg, rg] = variant_groups(b);
  std::vector<Run> l, r;
  bool lt, rt;
  try {
    lt = side_runs(b.left, b.nleft, lg, p.rows, l);
    rt = side_runs(b.right, b.nright, rg, p.cols, r);
  } catch (const Error &) {
    return false;
  }
  if (lt && rt) { // both sides: the pairs' closed form
    if (two) *two = true;
    *sdim = p.rows, *tdim = p.cols;
    return two != nullptr;
  }
  *sdim = rt ? p.cols : p.rows, *tdim = rt ? p.rows : p.cols;
  return true;
}

// The runs of the stepped side; false when it is trivial (a dense 1 x 1 block).
bool symo_runs(const BlockDesc &b, const ParamDesc *params, int64_t sdim, std::vector<Run> &runs) {
  if (std::string(b.kind) == "symo_coupled") return side_runs(nullptr, 0, variant_groups(b).first, sdim, runs);
  const ParamDesc &p = params[b.params[0]];
  const auto [lg, rg] = variant_groups(b);
  if (side_runs(b.left, b.nleft, lg, p.rows, runs)) return true;
  return side_runs(b.right, b.nright, rg, p.cols, runs);
}
} // namespace

bool MatrixRules::supports(const BlockDesc &b, const ParamDesc *params, std::string *why) {
  auto no = [&](const std::string &w) {
    if (why) *why = w;
    return false;
  };
  bool ok = false;
  const RKind k = base_kind(b, &ok);
  if (!ok) return no(std::string("rule '") + b.kind + " " + b.variant + "'");
  const bool coupled = std::string(b.kind) == "symo_coupled";
  if (k == RKind::Symo || k == RKind::Shampoo || (k >= RKind::LauSuRow && k <= RKind::LauSuLeftCentered)) {
    if (b.nparams != 1 && !coupled) return no("joint block");
    if (b.ngauges > 0) return no("gauges over " + std::string(b.kind));
  }
  if (k == RKind::Symo) {
    int64_t sdim = 0, tdim = 0;
    bool two = false;
    if (!symo_shape(b, params, &sdim, &tdim, &two)) return no(coupled ? "coupled members" : "symo sides");
    if (two) return true; // no matrices: the pairs' scalars
    if (coupled && b.get("beta1", 0) > 0) return no("coupled symo with momentum");
    const double beta2 = b.get("beta2", 0.95);
    if (beta2 != 0 && tdim > int64_t(b.get("max_dense", 4096))) return no("above max_dense");
    std::vector<Run> runs;
    bool nontrivial;
    try {
      nontrivial = symo_runs(b, params, sdim, runs);
    } catch (const Error &e) {
      return no(std::string("symo sides: ") + e.what());
    }
    if (!nontrivial) return no("symo 1 x 1 (dense)");
  }
  if (k == RKind::Muon) {
    const int64_t hr = int64_t(b.get("head_rows", 0));
    for (int i = 0; i < b.nparams; ++i) {
      const ParamDesc &p = params[b.params[i]];
      if (p.rows < 1 || p.cols < 1 || (hr > 0 && p.rows % hr != 0)) return no("muon shape");
    }
    const double ax = b.get("norm_axis", 0);
    if (b.get("norm_beta2", 0) > 0 && ax != 0 && ax != 1) return no("muon norm_axis"); // the CPU rule reports it
  }
  for (int gi = 0; gi < b.ngauges; ++gi) {
    const GaugeDesc &g = b.gauges[gi];
    const std::string gk = g.kind;
    auto at = [&](int i) -> const ParamDesc * { return i >= 0 && i < b.nparams ? &params[b.params[i]] : nullptr; };
    const ParamDesc *A = at(g.a), *B = at(g.b), *C = at(g.c);
    if (gk == "logit_shift") {
      if (!A) return no("gauge index");
    } else if (gk == "row_rescale") {
      if (!A || (g.b >= 0 && (!B || B->rows * B->cols != A->rows))) return no("gauge shapes");
    } else if (gk == "relu_rescale" || gk == "swiglu_rescale") {
      const bool relu = gk == "relu_rescale";
      if (!A || !C || C->cols != A->rows || (relu && g.b >= 0 && (!B || B->rows * B->cols != A->rows)))
        return no("gauge shapes");
    } else {
      return no("gauge '" + gk + "'");
    }
  }
  return true;
}

MatrixRules::MatrixRules(const ParamDesc *params, const BlockDesc *blocks, const std::vector<int> &mine,
                         mx::Engine &engine, Counters cnt)
    : params_(params), blocks_(blocks), engine_(engine), cnt_(cnt) {
  ns_tune_ = ns_tuning_from_env(); // once: a group may be planned on a step long after create_cuda
  split_groups_ = env_flag("SYMOC_CUDA_SUBSET_GROUPS", true); // 0: whole groups (before session 15)
  memory_log_ = env_flag("SYMOC_CUDA_MEMORY_LOG", false);      // 1: a stderr line per group made
  banks_on_ = env_flag("SYMOC_CUDA_EIGH_BANKS", true);         // 0: each Shampoo group solves its own roots
  // Shampoo's operands split once (Group::split), the default since session 33 (an H100 run:
  // every Shampoo check passes with it, f = 100 0.62x -> 0.55x of torch's eigh reference);
  // 0 keeps the per-product splits, session 29's path.
  split_operands_ = env_flag("SYMOC_CUDA_SPLIT_OPERANDS", true);
  const int64_t max_mb = env_whole("SYMOC_CUDA_EIGH_BANKS_MAX_MB", -1, 0, int64_t(1) << 40,
                                   "the most MiB of device memory the Shampoo root banks may add");
  if (max_mb >= 0) banks_max_bytes_ = size_t(max_mb) << 20;
  std::map<std::string, int> open;
  for (int b : mine) {
    const BlockDesc &d = blocks[b];
    std::string key = std::string(d.kind) + "|" + d.variant;
    char num[40];
    for (int i = 0; i < d.nhp; ++i) {
      std::snprintf(num, sizeof num, "%.17g", d.hp[i].value);
      key += "|" + std::string(d.hp[i].name) + "=" + num;
    }
    if (d.axes && std::string(d.kind) == "symo_coupled")
      for (int i = 0; i < d.nparams; ++i) key += "|a" + std::to_string(d.axes[i]);
    for (int i = 0; i < d.nparams; ++i)
      key += "|" + std::to_string(params[d.params[i]].rows) + "x" + std::to_string(params[d.params[i]].cols);
    for (int i = 0; i < d.ngauges; ++i)
      key += "|g" + std::string(d.gauges[i].kind) + std::to_string(d.gauges[i].a) + std::to_string(d.gauges[i].b) +
             std::to_string(d.gauges[i].c);
    for (int i = 0; i < d.nleft; ++i)
      key += "|l" + std::to_string(d.left[i].offset) + "," + std::to_string(d.left[i].extent) + d.left[i].group +
             std::to_string(d.left[i].parts);
    for (int i = 0; i < d.nright; ++i)
      key += "|r" + std::to_string(d.right[i].offset) + "," + std::to_string(d.right[i].extent) + d.right[i].group +
             std::to_string(d.right[i].parts);
    auto it = open.find(key);
    if (it != open.end() && (groups_[size_t(it->second)]->blocks.size() + 1) * size_t(d.nparams) <= size_t(kBatch)) {
      groups_[size_t(it->second)]->blocks.push_back(b);
      continue;
    }
    groups_.push_back(new_group(d));
    groups_.back()->blocks.push_back(b);
    open[key] = int(groups_.size()) - 1;
  }
  // Slots, chunks and the plans (no device memory yet: that comes with the first step).
  for (auto &gp : groups_) plan_group(*gp);
}

// A group's configuration from its first block (the blocks are the caller's to add).
std::unique_ptr<MatrixRules::Group> MatrixRules::new_group(const BlockDesc &d) const {
  auto g = std::make_unique<Group>();
  bool ok;
  g->kind = base_kind(d, &ok);
  g->np = d.nparams;
  for (int i = 0; i < d.nparams; ++i) g->rows.push_back(params_[d.params[i]].rows), g->cols.push_back(params_[d.params[i]].cols);
  for (int i = 0; i < d.ngauges; ++i) g->gauges.push_back(d.gauges[i]);
  auto f = [&](const char *n, double dflt) { return float(d.get(n, dflt)); };
  switch (g->kind) {
  case RKind::Symo: {
    g->coupled = std::string(d.kind) == "symo_coupled";
    g->tag = g->coupled ? "symo_coupled" : "symo";
    const float b1 = g->coupled ? 0.f : f("beta1", 0);
    g->beta2 = f("beta2", 0.95);
    if (b1 > 0 && d.get("muon_momentum", 0) != 0)
      g->prep = PrepCfg{int(PrepMode::Lerp), b1, 0, 0, 0, d.get("nesterov", 0) != 0 ? 1 : 0, 0};
    else if (b1 > 0) // the statistics are the gradient's, the preconditioned input the momentum
      g->prep = PrepCfg{int(PrepMode::EmaBc), b1, 0, 0, 0, 0, 1};
    else g->prep = PrepCfg{int(PrepMode::Copy), 0, 0, 0, 0, 0, 0};
    g->stats_from_g = g->prep.stage_g != 0;
    if (g->prep.mode == int(PrepMode::EmaBc) && g->beta2 == 0.f) { // one-sided: beta2 = 0 reads U only
      bool two = false;
      int64_t a, b;
      symo_shape(d, params_, &a, &b, &two);
      g->prep.stage_g = two ? 1 : 0;
      g->stats_from_g = two;
    }
    g->wd = f("weight_decay", 0);
    g->eps = f("eps", 1e-8);
    g->muon_scale = d.get("muon_scale", 0) != 0;
    g->ns_steps = symo_ns_steps(d);
    g->aux = symo_aux();
    symo_shape(d, params_, &g->sdim, &g->tdim, &g->two_sided);
    if (g->two_sided) { // the pairs of runs, in symo.cpp's pair order
      const auto [lg, rg] = variant_groups(d);
      std::vector<Run> L, R;
      side_runs(d.left, d.nleft, lg, g->rows[0], L);
      side_runs(d.right, d.nright, rg, g->cols[0], R);
      int64_t rcomps = 0, first = 0;
      for (const Run &r : R) rcomps += r.split ? 2 : 1;
      for (const Run &l : L) {
        int64_t cb = 0;
        for (const Run &r : R) {
          g->pairs.push_back(PairDesc{l.off, l.len, r.off, r.len, l.split ? 1 : 0, r.split ? 1 : 0, first + cb, rcomps,
                                      g->nmeans});
          g->nmeans += l.len + r.len;
          cb += r.split ? 2 : 1;
        }
        first += (l.split ? 2 : 1) * rcomps;
      }
      g->npairs = first;
      g->members.push_back(Group::Member{0, 0});
      break;
    }
    symo_runs(d, params_, g->sdim, g->runs);
    if (g->coupled) {
      for (int i = 0; i < d.nparams; ++i) g->members.push_back(Group::Member{i, d.axes[i]});
    } else {
      std::vector<Run> tmp;
      const bool lt = side_runs(d.left, d.nleft, variant_groups(d).first, g->rows[0], tmp);
      g->members.push_back(Group::Member{0, lt ? 0 : 1});
    }
    break;
  }
  case RKind::LauSuRow:
  case RKind::LauSuCol:
  case RKind::LauSuCentered:
  case RKind::LauSuPolar:
  case RKind::LauSuLeftCentered:
    g->tag = std::string("lausu_") + d.variant;
    g->prep = PrepCfg{int(PrepMode::Ema), f("beta", 0.95), 0, 0, 0, d.get("nesterov", 0) != 0 ? 1 : 0, 0};
    g->wd = f("weight_decay", 0);
    g->eps = f("eps", 1e-8);
    break;
  case RKind::Shampoo:
    g->tag = "shampoo";
    g->prep = PrepCfg{int(PrepMode::Copy), 0, 0, 0, 0, 0, 0};
    g->wd = f("weight_decay", 0);
    g->eps = f("eps", 1e-6);
    g->sh_beta2 = f("beta2", 1);
    g->exponent = int(d.get("exponent", 4));
    g->freq = std::max(1, int(d.get("precondition_frequency", 1)));
    g->useL = g->rows[0] <= int64_t(d.get("max_precond_dim", 8192));
    g->useR = g->cols[0] <= int64_t(d.get("max_precond_dim", 8192));
    break;
  case RKind::Muon: {
    g->tag = "muon";
    g->prep = PrepCfg{int(PrepMode::Lerp), f("beta", 0.95), 0, 0, 0, d.get("nesterov", 1) != 0 ? 1 : 0, 0};
    g->wd = f("weight_decay", 0);
    g->head_rows = int64_t(d.get("head_rows", 0));
    g->norm_beta2 = f("norm_beta2", 0);
    g->norm_axis = int(d.get("norm_axis", 0));
    g->norm_eps = f("norm_eps", 1e-10);
    break;
  }
  case RKind::Adam: {
    const bool dec = std::string(d.kind) == "adamw";
    g->tag = dec ? "adamw" : "adam";
    const float wd = f("weight_decay", 0);
    g->prep = PrepCfg{int(PrepMode::Adam), f("beta1", 0.9), f("beta2", 0.999), f("eps", 1e-8), dec ? 0.f : wd, 0, 0};
    g->wd = dec ? wd : 0.f;
    break;
  }
  }
  return g;
}

void MatrixRules::plan_group(Group &g) {
  const mx::EigPrecision prec = eig_precision(g.kind);
  for (int i = 0; i < g.nb(); ++i) {
    const BlockDesc &d = blocks_[g.blocks[size_t(i)]];
    for (int k = 0; k < g.np; ++k) {
      Slot s{};
      s.block = g.blocks[size_t(i)], s.param = d.params[k], s.rows = g.rows[size_t(k)], s.cols = g.cols[size_t(k)];
      s.n = s.rows * s.cols, s.first = k == 0 ? 1 : 0;
      const int32_t slot = int32_t(g.slots.size());
      for (int64_t o = 0; o < s.n; o += kChunk) g.chunks.push_back(Chunk{slot, 0, o, std::min<int64_t>(kChunk, s.n - o)});
      g.slots.push_back(s);
    }
  }
  g.hcount.assign(size_t(g.nb()), 0);
  const int64_t m = g.rows[0], n = g.cols[0];
  if (g.kind == RKind::Symo) {
    const int64_t T = g.tdim;
    std::vector<mx::Shape> ns_shapes;
    std::map<std::pair<int64_t, bool>, size_t> cls;
    for (const Run &r : g.runs) {
      auto key = std::make_pair(r.len, r.split);
      if (!cls.count(key)) {
        cls[key] = g.classes.size();
        g.classes.emplace_back();
        g.classes.back().len = r.len, g.classes.back().split = r.split;
      }
      RunClass &c = g.classes[cls[key]];
      g.run_class.push_back(int(cls[key])), g.run_index.push_back(int(c.offs.size()));
      c.offs.push_back(r.off);
    }
    for (RunClass &c : g.classes) {
      c.K = int(c.offs.size()) * g.nb();
      c.nops = c.split ? 2 : 1;
      const int64_t d = c.split ? c.len - 1 : c.len;
      if (g.beta2 == 0.f) {
        if (d > 0 && g.ns_steps > 0) {
          c.ns_index = int(ns_shapes.size());
          if (g.aux == SymoAux::Direct && !c.split && g.members.size() == 1) {
            const int pos = c.direct_pos = g.members[0].pos;
            c.direct = symo_run_views(g.members[0].axis == 0, g.rows[size_t(pos)], g.cols[size_t(pos)], c.len, c.offs,
                                      g.nb());
            if (c.direct.size() > kMaxDirectViews) c.direct.clear(); // scattered runs: one packed batch
          }
          for (const RunView &v : c.direct) ns_shapes.push_back(mx::Shape{v.batch, v.rows, v.cols});
          if (c.direct.empty()) ns_shapes.push_back(mx::Shape{c.K, c.len, T});
        }
        else if (d > 0) c.plan = std::make_unique<mx::GramPowPlan>(engine_, mx::Shape{c.K, c.len, T}, c.len >= T, prec);
        g.ws_bytes = std::max(g.ws_bytes, c.plan ? c.plan->workspace_bytes() : size_t(0));
        c.s1 = c.split ? 1.f : float(std::sqrt(double(c.len)));
        if (g.muon_scale) { // rows / cols of the run as the block has it
          const bool tr = g.members[0].axis == 1;
          const double rr = tr ? double(T) : double(c.len), cc = tr ? double(c.len) : double(T);
          c.s2 = float(std::sqrt(std::max(1.0, rr / cc) / double(c.len)));
        }
      } else {
        MatFnOptions o;
        o.precision = prec;
        c.pow = std::make_unique<mx::SymPowPlan>(engine_, T, int64_t(c.K) * c.nops, o);
        g.ws_bytes = std::max(g.ws_bytes, c.pow->workspace_bytes());
      }
    }
    if (!ns_shapes.empty()) {
      g.ns = std::make_unique<mx::NewtonSchulzPlan>(engine_, ns_shapes, mx::PolarIteration::NewtonSchulz, g.ns_steps,
                                                    ns_tune_);
      g.ws_bytes = std::max(g.ws_bytes, g.ns->workspace_bytes());
      g.ns_groups.resize(ns_shapes.size());
    }
  } else if (g.kind == RKind::Muon) { // Muon's iteration over the group's matrices (or heads)
    std::vector<mx::Shape> shapes;
    for (int k = 0; k < g.np; ++k) shapes.push_back(g.muon_shape(k));
    g.ns = std::make_unique<mx::NewtonSchulzPlan>(engine_, shapes, mx::PolarIteration::NewtonSchulz, 5, ns_tune_);
    g.ws_bytes = g.ns->workspace_bytes();
    g.ns_groups.resize(shapes.size());
  } else if (g.kind == RKind::LauSuLeftCentered) {
    g.left_pow = std::make_unique<mx::GramPowPlan>(engine_, mx::Shape{g.nb(), m, n}, false, prec);
    g.ws_bytes = g.left_pow->workspace_bytes();
  } else if (g.kind == RKind::LauSuPolar) {
    mx::PolarOptions o = polar_options(PolarMethod::Eig);
    o.fn.precision = prec;
    g.polar = std::make_unique<mx::PolarPlan>(engine_, std::vector<mx::Shape>{mx::Shape{g.nb(), m, n}}, o);
    g.ws_bytes = g.polar->workspace_bytes();
  } else if (g.kind == RKind::Shampoo) {
    const RootRoute route = root_route();
    if (route != RootRoute::Eigh) {
      if (!(g.eps > 0.f))
        throw Error(std::string("SYMOC_CUDA_ROOT=newton: the Shampoo block of '") + params_[g.slots[0].param].name +
                    "' has eps " + std::to_string(g.eps) + "; the Newton root needs eps > 0 (no pseudo-inverse cut)");
      const bool tf32 = route == RootRoute::NewtonTF32;
      const mx::EigPrecision rp = tf32 ? mx::EigPrecision::Float32 : prec;
      const mx::NewtonRootOptions no = newton_root_options();
      if (g.useL) g.rootL = std::make_unique<mx::InvRootPlan>(engine_, m, g.nb(), g.exponent, rp, no, tf32);
      if (g.useR) g.rootR = std::make_unique<mx::InvRootPlan>(engine_, n, g.nb(), g.exponent, rp, no, tf32);
      g.ws_bytes = std::max(g.rootL ? g.rootL->workspace_bytes() : 0, g.rootR ? g.rootR->workspace_bytes() : 0);
    } else {
      MatFnOptions o;
      o.precision = prec;
      if (g.useL) g.powL = std::make_unique<mx::SymPowPlan>(engine_, m, g.nb(), o);
      if (g.useR) g.powR = std::make_unique<mx::SymPowPlan>(engine_, n, g.nb(), o);
      g.ws_bytes = std::max(g.powL ? g.powL->workspace_bytes() : 0, g.powR ? g.powR->workspace_bytes() : 0);
    }
  }
}

MatrixRules::~MatrixRules() {
  cudaDeviceSynchronize();
  for (auto &g : groups_) {
    for (void *p : g->allocs) cudaFree(p);
    for (RunClass &c : g->classes) c.plan.reset();
  }
  cudaFree(ws_);
}

// The groups run one after another on the step's stream, so one workspace serves them all:
// the largest need of the groups made (eigh, Newton-Schulz, polar and root plans). Grown on a
// group's first step (before that step's first launch); ws_moved() then tells the caller that
// graphs captured before hold the old one. The new one is made before the old one goes, where
// both fit; out of memory leaves the old one (or, where the old one had to go first, none:
// reserve() makes the made groups' need again before a later step launches anything).
void MatrixRules::ensure_ws(size_t bytes) {
  if (bytes <= ws_bytes_) return;
  check(cudaDeviceSynchronize(), "cudaDeviceSynchronize"); // earlier steps may still use the old one
  void *p = nullptr;
  cudaError_t e = cudaMalloc(&p, bytes);
  if (e == cudaErrorMemoryAllocation && ws_) {
    cudaGetLastError(); // not sticky: clear it
    cudaFree(ws_);
    ws_ = nullptr, ws_bytes_ = 0, ws_moved_ = true;
    e = cudaMalloc(&p, bytes);
  }
  check(e, "cudaMalloc of the matrix rules' workspace");
  cudaFree(ws_);
  ws_ = p, ws_bytes_ = bytes, ws_moved_ = true;
}

bool MatrixRules::ws_moved() {
  const bool m = ws_moved_;
  ws_moved_ = false;
  return m;
}

void MatrixRules::split_unmade(const std::vector<uint8_t> &on) {
  auto is_on = [&](int b) { return size_t(b) < on.size() && on[size_t(b)]; };
  auto partly = [&](const Group &g) {
    if (g.ready) return false;
    const auto k = std::count_if(g.blocks.begin(), g.blocks.end(), is_on);
    return k > 0 && size_t(k) < g.blocks.size();
  };
  if (!split_groups_ || std::none_of(groups_.begin(), groups_.end(), [&](const auto &gp) { return partly(*gp); }))
    return; // the usual step: nothing to split, nothing allocated
  std::vector<std::unique_ptr<Group>> out;
  for (auto &gp : groups_) {
    std::vector<int> in, rest;
    if (partly(*gp))
      for (int b : gp->blocks) (is_on(b) ? in : rest).push_back(b);
    if (in.empty()) {
      out.push_back(std::move(gp));
      continue;
    }
    for (const std::vector<int> *part : {&in, &rest}) {
      out.push_back(new_group(blocks_[(*part)[0]]));
      out.back()->blocks = *part;
      plan_group(*out.back());
    }
  }
  groups_ = std::move(out);
}

void MatrixRules::reserve(const std::vector<uint8_t> &active, cudaStream_t s) {
  ensure_ws(ws_need_); // after an out-of-memory growth that lost the old one
  split_unmade(active);
  for (auto &gp : groups_) {
    Group &g = *gp;
    bool any = false;
    for (int b : g.blocks) any = any || active[size_t(b)];
    if (!any) continue;
    prepare(g, s);
    ensure_slot_state(g, active, s);
  }
  plan_banks(active, s);
}

// One eigensolve for the roots of several Shampoo groups: the factors of one side size (and
// exponent, eps, precision) of every group that refreshes all of its blocks this step, in one
// SymPowPlan call (cuSOLVER's batched solver costs far less than the sum of its parts there:
// docs/benchmarks.md, session 16). The roots land in `out`, then go to each group's L_root /
// R_root through the same masked copy as a group's own (a skipped block keeps its root).
struct MatrixRules::RootBank {
  struct Part {
    Group *g;
    bool left; // L (rows side) or R (columns side)
  };
  std::string key;
  int64_t n = 0, total = 0;
  int exponent = 4;
  float eps = 0.f;
  std::vector<Part> parts;
  std::unique_ptr<mx::SymPowPlan> plan;
  float *out = nullptr;
  size_t out_bytes = 0; // counted in banks_bytes_ while the bank lives
  ~RootBank() { cudaFree(out); }
};

constexpr size_t kMaxBanks = 8;

// The banks of this step, made on first use (before the step's first launch: their plan, the
// roots buffer and the shared workspace's growth).
void MatrixRules::plan_banks(const std::vector<uint8_t> &active, cudaStream_t s) {
  step_banks_.clear();
  if (!banks_on_) return;
  std::map<std::string, std::vector<RootBank::Part>> by_key;
  for (auto &gp : groups_) {
    Group &g = *gp;
    g.banked = false;
    if (g.kind != RKind::Shampoo || !g.ready || !(g.powL || g.powR)) continue;
    bool all = true;
    for (int i = 0; i < g.nb(); ++i)
      all = all && g.refreshes(i, active[size_t(g.blocks[size_t(i)])]);
    if (!all) continue;
    g.banked = true;
    char key[96];
    for (int left = 1; left >= 0; --left) {
      if (!(left ? g.useL : g.useR)) continue;
      std::snprintf(key, sizeof key, "%lld|%d|%.9g", (long long)(left ? g.rows[0] : g.cols[0]), g.exponent,
                    double(g.eps));
      by_key[key].push_back(RootBank::Part{&g, left == 1});
    }
  }
  // A bank is named by its members: groups refreshing on different schedules make other sets.
  std::vector<std::pair<std::string, std::vector<RootBank::Part>>> wanted;
  for (auto &[key, parts] : by_key) {
    std::string full = key;
    char id[48];
    for (const RootBank::Part &pt : parts) {
      std::snprintf(id, sizeof id, "|%p%c", static_cast<void *>(pt.g), pt.left ? 'L' : 'R');
      full += id;
    }
    wanted.emplace_back(full, parts);
  }
  auto made = [&](const std::string &full) -> RootBank * {
    for (auto &b : banks_)
      if (b->key == full) return b.get();
    return nullptr;
  };
  // Nothing may be allocated under capture: a step that needs a bank not made yet solves every
  // group's own roots (the same roots, bitwise), as without banks.
  if (capturing(s) && std::any_of(wanted.begin(), wanted.end(), [&](const auto &w) { return !made(w.first); })) {
    for (auto &gp : groups_) gp->banked = false;
    return;
  }
  for (auto &[full, parts] : wanted) {
    RootBank *bank = made(full);
    if (!bank) {
      if (banks_.size() >= kMaxBanks) { // member sets keep changing: start over
        check(cudaDeviceSynchronize(), "cudaDeviceSynchronize"); // earlier steps may read them
        std::vector<std::unique_ptr<RootBank>> keep; // this step's, found already, stay
        for (auto &b : banks_) {
          if (std::find(step_banks_.begin(), step_banks_.end(), b.get()) != step_banks_.end()) keep.push_back(std::move(b));
          else banks_bytes_ -= b->out_bytes; // freed below (the workspace keeps its size)
        }
        banks_ = std::move(keep);
        ws_moved_ = true; // graphs captured before hold the freed banks: the caller drops them
      }
      auto b = std::make_unique<RootBank>();
      b->key = full, b->parts = parts;
      const Group &g0 = *parts[0].g;
      b->n = parts[0].left ? g0.rows[0] : g0.cols[0], b->exponent = g0.exponent, b->eps = g0.eps;
      for (const RootBank::Part &pt : parts) b->total += pt.g->nb();
      // A bank costs memory (its roots, a larger shared workspace): without it, the groups
      // solve their own roots as before, rather than the step failing.
      bool ok = true;
      try {
        MatFnOptions o;
        o.precision = eig_precision(RKind::Shampoo);
        b->plan = std::make_unique<mx::SymPowPlan>(engine_, b->n, b->total, o);
        const size_t out_bytes = sizeof(float) * size_t(b->total * b->n * b->n);
        const size_t need = std::max(ws_need_, b->plan->workspace_bytes());
        banks_bytes_ += out_bytes + (need > ws_bytes_ ? need - ws_bytes_ : 0);
        ok = banks_bytes_ <= banks_max_bytes_ && cudaMalloc(&b->out, out_bytes) == cudaSuccess;
        if (ok) b->out_bytes = out_bytes;
        if (ok) ensure_ws(need);
      } catch (const std::exception &) {
        ok = false;
      }
      if (!ok) {
        cudaGetLastError(); // an allocation's error is not sticky: clear it
        b.reset();
        banks_off(banks_bytes_ > banks_max_bytes_ ? "SYMOC_CUDA_EIGH_BANKS_MAX_MB" : "out of device memory", s);
        return;
      }
      ws_need_ = std::max(ws_need_, b->plan->workspace_bytes());
      banks_.push_back(std::move(b));
      bank = banks_.back().get();
    }
    step_banks_.push_back(bank);
  }
}

// Out of memory for a bank (the device's, or the cap's): every group solves its own roots
// from now on.
void MatrixRules::banks_off(const char *why, cudaStream_t s) {
  std::fprintf(stderr, "symoc: Shampoo's roots of several groups are no longer solved together (%s, %.0f MiB "
                       "asked); each group solves its own (SYMOC_CUDA_EIGH_BANKS=0 does so from the start)\n",
               why, double(banks_bytes_) / 1048576.0);
  banks_on_ = false;
  step_banks_.clear();
  check(cudaStreamSynchronize(s), "cudaStreamSynchronize"); // earlier steps may read the banks
  banks_.clear();
  ws_moved_ = true; // graphs captured before read the banks' roots: the caller drops them
  for (auto &gp : groups_) gp->banked = false;
  ensure_ws(ws_need_); // the groups' own need, if a failed growth freed the workspace
}

// One Shampoo factor's update, L = beta2 L + G G^T (left) or R = beta2 R + G^T G, on the
// blocks stepped this step (a group's own, or a banked group's before the banks run).
void MatrixRules::shampoo_factor(Group &g, bool left, cudaStream_t s) {
  const int B = g.nb();
  const int64_t m = g.rows[0], n = g.cols[0], k = left ? m : n;
  g.mask.n = B;
  for (int i = 0; i < B; ++i) g.mask.on[i] = g.args.active[i];
  if (g.split) { // the Gram half Z, then L = beta2 L + Z + Z^T in one pass
    mx::gram_half(engine_, !left, 1.f, g.g_ops(m, n), mx::Batch(g.S, B, k, k), s);
    launch_masked_sym_accumulate(g.mask, g.d_slots, cnt_, left ? g.L : g.R, g.S, k, g.sh_beta2, s);
    return;
  }
  mx::gram(engine_, !left, 1.f, mx::Batch(g.U[0], B, m, n), 0.f, mx::Batch(g.S, B, k, k), s,
           mx::Workspace{ws_, ws_bytes_});
  launch_masked_axpby(g.mask, g.d_slots, cnt_, left ? g.L : g.R, g.S, k * k, g.sh_beta2, false, s);
}

// A refreshed root (n x n per block, at src) into the group's Lr / Rr for the blocks that
// refresh this step: split into hi and lo where the group's products take split operands.
void MatrixRules::store_root(Group &g, bool left, const float *src, int64_t n, cudaStream_t s) {
  float *dst = left ? g.Lr : g.Rr;
  if (g.split) launch_masked_split(g.refresh_mask, g.d_slots, cnt_, dst, left ? g.Lr_lo : g.Rr_lo, src, n * n, s);
  else launch_masked_axpby(g.refresh_mask, g.d_slots, cnt_, dst, src, n * n, 0.f, true, s);
}

void MatrixRules::run_banks(cudaStream_t s) {
  const mx::Workspace ws{ws_, ws_bytes_};
  std::vector<mx::Batch> in, out;
  for (RootBank *b : step_banks_) {
    in.clear(), out.clear();
    int64_t at = 0;
    for (const RootBank::Part &pt : b->parts) {
      const int B = pt.g->nb();
      in.emplace_back(pt.left ? pt.g->L : pt.g->R, B, b->n, b->n);
      out.emplace_back(b->out + at * b->n * b->n, B, b->n, b->n);
      at += B;
    }
    b->plan->run(in.data(), out.data(), int(in.size()), -1.0 / b->exponent, double(b->eps), ws, s);
    at = 0;
    for (const RootBank::Part &pt : b->parts) {
      Group &g = *pt.g;
      store_root(g, pt.left, b->out + at * b->n * b->n, b->n, s);
      at += g.nb();
    }
  }
}

void MatrixRules::prepare(Group &g, cudaStream_t s) {
  if (g.ready) return;
  refuse_capture(s);
  // Out of memory part way: everything made here is freed, so that a retry starts clean
  // (nothing of the group ran: the caller reserves before its first launch).
  const int64_t state0 = state_bytes_;
  try {
    make_buffers(g, s);
  } catch (...) {
    cudaDeviceSynchronize(); // the uploads already queued read the group's host tables
    for (void *p : g.allocs) cudaFree(p);
    g.allocs.clear(), g.U.clear(), g.D.clear();
    state_bytes_ = state0;
    throw;
  }
  g.ready = true;
  ws_need_ = std::max(ws_need_, g.ws_bytes);
}

void MatrixRules::make_buffers(Group &g, cudaStream_t s) {
  int64_t scratch = 0;
  const int64_t state0 = state_bytes_;
  auto take = [&](size_t n, bool state) {
    float *p = dmalloc<float>(n, state ? state_bytes_ : scratch);
    g.allocs.push_back(p);
    check(cudaMemset(p, 0, sizeof(float) * std::max<size_t>(n, 1)), "cudaMemset");
    return p;
  };
  const int B = g.nb();
  for (int k = 0; k < g.np; ++k) {
    const size_t n = size_t(B * g.rows[size_t(k)] * g.cols[size_t(k)]);
    g.U.push_back(take(n, false));
    g.D.push_back(take(n, false));
  }
  for (size_t i = 0; i < g.slots.size(); ++i) {
    Slot &sl = g.slots[i];
    const int blk = int(i) / g.np, k = int(i) % g.np;
    sl.u = g.U[size_t(k)] + int64_t(blk) * sl.n;
    sl.d = g.D[size_t(k)] + int64_t(blk) * sl.n;
    if (g.kind == RKind::Muon) continue; // per block, on its first step (ensure_slot_state)
    if (g.has_momentum() && g.kind != RKind::Shampoo) sl.s0 = take(size_t(sl.n), true);
    if (g.kind == RKind::Adam) sl.s1 = take(size_t(sl.n), true);
  }
  if (g.kind == RKind::LauSuLeftCentered) g.nu = take(size_t(B), false);
  if (g.line_norm()) {
    for (const Slot &sl : g.slots) g.max_lines = std::max(g.max_lines, g.lines(sl));
    void *p = nullptr;
    check(cudaMalloc(&p, sizeof(double) * size_t(std::max<int64_t>(2 * g.max_lines * int64_t(g.slots.size()), 1))),
          "cudaMalloc");
    g.allocs.push_back(p);
    g.norm_sq = static_cast<double *>(p);
  }
  const int64_t m = g.rows[0], n = g.cols[0];
  if (g.kind == RKind::Shampoo) {
    // Every product of the group has min(m, n) as its smallest side.
    g.split = split_operands_ && g.np == 1 && (g.useL || g.useR) && mx::split_products(engine_, m, n, std::min(m, n));
    if (g.useL) g.L = take(size_t(B * m * m), true), g.Lr = take(size_t(B * m * m), true);
    if (g.useR) g.R = take(size_t(B * n * n), true), g.Rr = take(size_t(B * n * n), true);
    if (g.split) {
      if (g.useL) g.Lr_lo = take(size_t(B * m * m), true);
      if (g.useR) g.Rr_lo = take(size_t(B * n * n), true);
      g.Glo = take(size_t(B * m * n), false);
      for (int blk = 0; blk < B; ++blk) g.slots[size_t(blk)].s0 = g.Glo + int64_t(blk) * m * n; // np = 1
      g.prep.mode = int(PrepMode::CopySplit);
    }
    // The Gram products of the sides that are preconditioned only (an embedding's 50257-row side
    // above max_precond_dim would make this 10 GB for nothing).
    g.S = take(size_t(B * std::max(g.useL ? m * m : 0, g.useR ? n * n : 0)), false);
    // L_r G, before the right factor (split: D holds it, split back into U and Glo).
    if (g.useL && g.useR && !g.split) g.T = take(size_t(B * m * n), false);
  }
  if (g.two_sided) {
    g.s2 = take(size_t(int64_t(B) * g.npairs), true);
    void *p = nullptr;
    check(cudaMalloc(&p, sizeof(double) * size_t(std::max<int64_t>(int64_t(B) * (g.npairs + g.nmeans), 1))), "cudaMalloc");
    g.allocs.push_back(p);
    g.coef = static_cast<double *>(p), g.means = g.coef + int64_t(B) * g.npairs;
    check(cudaMalloc(&p, sizeof(PairDesc) * std::max<size_t>(g.pairs.size(), 1)), "cudaMalloc");
    g.allocs.push_back(p);
    g.d_pairs = static_cast<PairDesc *>(p);
    check(cudaMemcpy(g.d_pairs, g.pairs.data(), sizeof(PairDesc) * g.pairs.size(), cudaMemcpyHostToDevice), "upload");
  }
  for (RunClass &c : g.classes) {
    if (!c.direct.empty()) continue; // views of U and D: no packed copies, no entries
    const int64_t T = g.tdim, sz = int64_t(c.K) * c.len * T;
    c.PU = take(size_t(sz), false);
    c.PG = g.stats_from_g ? take(size_t(sz), false) : c.PU;
    c.Q = take(size_t(sz), false);
    if (c.split) c.mu = take(size_t(int64_t(c.K) * T), false);
    c.muU = c.split && g.stats_from_g ? take(size_t(int64_t(c.K) * T), false) : c.mu;
    if (g.beta2 != 0.f) {
      const size_t cs = size_t(int64_t(c.K) * c.nops * T * T);
      c.C = take(cs, true), c.H = take(cs, false), c.S = take(cs, false);
      c.mout = take(size_t(int64_t(c.K) * T), false);
    }
    // Entries: for each block and run, each member's piece of the run's rows of Z.
    std::vector<PackEntry> eu, eg;
    for (int blk = 0; blk < B; ++blk)
      for (size_t q = 0; q < c.offs.size(); ++q) {
        const int64_t e = int64_t(blk) * int64_t(c.offs.size()) + int64_t(q), off = c.offs[q];
        int64_t col = 0;
        for (const Group::Member &mb : g.members) {
          const int64_t r = g.rows[size_t(mb.pos)], cc = g.cols[size_t(mb.pos)], base = int64_t(blk) * r * cc;
          const int64_t w = mb.axis == 0 ? cc : r;
          auto entry = [&](float *X) {
            return mb.axis == 0 ? PackEntry{X + base + off * cc, cc, 1, e, col, w} : PackEntry{X + base + off, 1, cc, e, col, w};
          };
          eu.push_back(entry(g.U[size_t(mb.pos)]));
          eg.push_back(entry(g.D[size_t(mb.pos)])); // the staged gradient (stats_from_g), then the direction
          c.max_cols = std::max(c.max_cols, w);
          col += w;
        }
      }
    c.nentries = int(eu.size());
    void *p = nullptr;
    check(cudaMalloc(&p, sizeof(PackEntry) * eu.size() * 2), "cudaMalloc");
    g.allocs.push_back(p);
    c.d_u = static_cast<PackEntry *>(p), c.d_g = c.d_u + eu.size(), c.d_out = c.d_g;
    check(cudaMemcpy(c.d_u, eu.data(), sizeof(PackEntry) * eu.size(), cudaMemcpyHostToDevice), "upload");
    check(cudaMemcpy(c.d_g, eg.data(), sizeof(PackEntry) * eg.size(), cudaMemcpyHostToDevice), "upload");
  }
  ensure_ws(g.ws_bytes);
  void *p = nullptr;
  check(cudaMalloc(&p, sizeof(Slot) * g.slots.size()), "cudaMalloc");
  g.allocs.push_back(p), g.d_slots = static_cast<Slot *>(p);
  check(cudaMalloc(&p, sizeof(Chunk) * std::max<size_t>(g.chunks.size(), 1)), "cudaMalloc");
  g.allocs.push_back(p), g.d_chunks = static_cast<Chunk *>(p);
  check(cudaMemcpy(g.d_slots, g.slots.data(), sizeof(Slot) * g.slots.size(), cudaMemcpyHostToDevice), "upload");
  check(cudaMemcpy(g.d_chunks, g.chunks.data(), sizeof(Chunk) * g.chunks.size(), cudaMemcpyHostToDevice), "upload");
  // The zeroing and uploads above run on the legacy default stream, and a pageable upload may
  // still be in flight when cudaMemcpy returns: neither is ordered before the caller's stream
  // when that stream is non-blocking (torch.cuda.Stream()). Done before the first kernel.
  check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
  if (memory_log_)
    std::fprintf(stderr, "symoc: made %s group of '%s' (%d block%s, %lldx%lld): state %.1f MiB, scratch %.1f MiB, "
                         "workspace %.1f MiB (shared: %.1f MiB)\n",
                 g.tag.c_str(), params_[g.slots[0].param].name, B, B == 1 ? "" : "s", (long long)g.rows[0],
                 (long long)g.cols[0], double(state_bytes_ - state0) / 1048576.0, double(scratch) / 1048576.0,
                 double(g.ws_bytes) / 1048576.0, double(ws_bytes_) / 1048576.0);
}

// A Muon group's state per block, made on the block's first step (zero), as the device
// optimizer's own groups: a group made whole (a full first step, or a DDP rank's first bucket
// of several in one group) holds only its stepped blocks' momentum and NorMuon v. on: the
// blocks stepped.
void MatrixRules::ensure_slot_state(Group &g, const std::vector<uint8_t> &on, cudaStream_t s) {
  if (g.kind != RKind::Muon) return;
  std::vector<Slot *> made;
  const int64_t state0 = state_bytes_;
  try {
    for (Slot &sl : g.slots) {
      if (sl.s0 || size_t(sl.block) >= on.size() || !on[size_t(sl.block)]) continue;
      refuse_capture(s);
      const size_t n = size_t(sl.n), lines = g.line_norm() ? size_t(g.lines(sl)) : 0;
      float *p = dmalloc<float>(n + lines, state_bytes_);
      sl.s0 = p, sl.s1 = lines ? p + n : nullptr;
      made.push_back(&sl);
      check(cudaMemset(p, 0, sizeof(float) * (n + lines)), "cudaMemset");
    }
    if (made.empty()) return;
    check(cudaMemcpy(g.d_slots, g.slots.data(), sizeof(Slot) * g.slots.size(), cudaMemcpyHostToDevice), "upload");
    check(cudaDeviceSynchronize(), "cudaDeviceSynchronize"); // legacy-stream work, as make_buffers
  } catch (...) { // out of memory part way: as before the call, so that a retry starts clean
    cudaDeviceSynchronize();
    for (Slot *sl : made) cudaFree(sl->s0), sl->s0 = sl->s1 = nullptr;
    state_bytes_ = state0;
    throw;
  }
  for (Slot *sl : made) g.allocs.push_back(sl->s0);
}

void MatrixRules::begin(void *const *w, const void *const *g_, const int32_t *dt, float lr, const float *mult,
                        const std::vector<uint8_t> &active, cudaStream_t s, const float *lr_dev) {
  const bool in_capture = capturing(s);
  for (auto &gp : groups_) {
    Group &g = *gp;
    g.any = false;
    for (int b : g.blocks) g.any = g.any || active[size_t(b)];
    if (!g.any) continue;
    if (in_capture && g.kind == RKind::Shampoo && g.freq > 1)
      throw Error(std::string("block of '") + params_[g.slots[0].param].name + "' refreshes its Shampoo roots every " +
                  std::to_string(g.freq) + " steps, so a step with it cannot be captured in a CUDA graph (a replay "
                  "would repeat the captured step's choice)");
    prepare(g, s); // made by reserve(): a no-op
    StepArgs &a = g.args;
    a.nslots = int(g.slots.size());
    a.lr_scale = lr_dev;
    for (size_t i = 0; i < g.slots.size(); ++i) {
      const int p = g.slots[i].param;
      a.w[i] = w[p], a.g[i] = g_[p], a.lr[i] = lr_dev ? mult[p] : lr * mult[p];
      a.wbf16[i] = a.gbf16[i] = dt && dt[p] == SYMOC_BF16;
      a.active[i] = active[size_t(g.slots[i].block)];
    }
    const int nc = int(g.chunks.size());
    launch_check(a, g.d_chunks, nc, g.d_slots, cnt_, s);
    launch_prep(a, g.d_chunks, nc, g.d_slots, cnt_, g.prep, s);
    check(cudaGetLastError(), "kernel launch");
  }
}

// Symo on Z (the block, its transpose, or the coupled members side by side), run class by
// run class: symo.cpp's one_sided_single (beta2 = 0) or one_sided_left (beta2 > 0).
void MatrixRules::symo_direction(Group &g, cudaStream_t s) {
  if (g.two_sided) {
    const int np = int(g.pairs.size());
    for (int stats = 1; stats >= 0; --stats)
      launch_two_sided(g.args, g.d_slots, cnt_, g.d_pairs, np, g.nb(), g.cols[0], g.s2, g.coef, g.means, g.npairs,
                       g.nmeans, g.beta2, g.eps, stats, g.stats_from_g ? 1 : 0, s);
    return;
  }
  const int64_t T = g.tdim, TT = T * T;
  const bool lg = g.aux == SymoAux::Legacy;
  mx::Workspace ws{ws_, ws_bytes_};
  MaskArgs mask{};
  mask.n = int(g.slots.size());
  for (size_t i = 0; i < g.slots.size(); ++i) mask.on[i] = g.args.active[i];
  for (RunClass &c : g.classes) {
    const int64_t d = c.split ? c.len - 1 : c.len;
    if (!c.direct.empty()) { // views of U and D straight into the Newton-Schulz run below
      for (size_t i = 0; i < c.direct.size(); ++i) {
        const RunView &v = c.direct[i];
        float *u = g.U[size_t(c.direct_pos)] + v.off, *dd = g.D[size_t(c.direct_pos)] + v.off;
        g.ns_groups[size_t(c.ns_index) + i] = mx::PolarGroup{mx::Batch(u, v.batch, v.rows, v.cols, v.ld, v.stride),
                                                             mx::Batch(dd, v.batch, v.rows, v.cols, v.ld, v.stride),
                                                             c.s1 * c.s2};
      }
      continue;
    }
    launch_pack(c.d_u, c.nentries, c.len, T, c.PU, c.max_cols, s, lg);
    if (g.beta2 == 0.f) {
      if (c.split) launch_center_keep(c.PU, c.mu, c.K, c.len, T, s, lg);
      if (c.plan)
        c.plan->run(mx::Batch(c.PU, c.K, c.len, T), -0.5, double(d) * double(g.eps), MatFnOptions{}.rcond,
                    mx::Batch(c.Q, c.K, c.len, T), ws, s);
      if (c.ns_index >= 0) { // every class's polar factors in one Newton-Schulz run, below
        g.ns_groups[size_t(c.ns_index)] =
            mx::PolarGroup{mx::Batch(c.PU, c.K, c.len, T), mx::Batch(c.Q, c.K, c.len, T), 1.f};
        continue;
      }
      if (c.split) launch_s_fix(c.Q, c.mu, c.K, c.len, T, float(std::sqrt(double(d))), g.eps, d == 0, s, lg);
      launch_unpack(c.d_out, c.nentries, c.len, T, c.Q, c.s1, c.s2, c.max_cols, s, lg);
      continue;
    }
    if (g.stats_from_g) launch_pack(c.d_g, c.nentries, c.len, T, c.PG, c.max_cols, s, lg);
    if (c.split) {
      launch_center_keep(c.PG, c.mu, c.K, c.len, T, s, lg);
      if (g.stats_from_g) launch_center_keep(c.PU, c.muU, c.K, c.len, T, s, lg);
    }
    const int n = c.K * c.nops, per = int(c.offs.size()) * c.nops;
    const mx::Batch Pg(c.PG, c.K, c.len, T), Pu(c.PU, c.K, c.len, T), Q(c.Q, c.K, c.len, T);
    const int64_t st = c.nops * TT; // stride between the runs' first components
    if (!c.split) {
      mx::gram(engine_, true, float((1.0 - g.beta2) / double(c.len)), Pg, 0.f, mx::Batch(c.S, c.K, T, T, T, st), s);
    } else {
      const float w1 = float(1.0 - g.beta2);
      mx::gram(engine_, true, w1 * float(c.len), mx::Batch(c.mu, c.K, 1, T), 0.f, mx::Batch(c.S, c.K, T, T, T, st), s);
      if (d > 0)
        mx::gram(engine_, true, float((1.0 - g.beta2) / double(d)), Pg, 0.f, mx::Batch(c.S + TT, c.K, T, T, T, st), s);
    }
    launch_masked_axpby(mask, g.d_slots, cnt_, c.C, c.S, TT, g.beta2, false, s, n, per, g.np);
    launch_bias_scale(g.d_slots, cnt_, c.C, c.H, n, per, g.np, TT, g.beta2, s);
    c.pow->run(mx::Batch(c.H, n, T, T), -0.5, double(g.eps), mx::Batch(c.H, n, T, T), ws, s);
    if (!c.split) {
      mx::gemm(engine_, false, false, 1.f, Pu, mx::Batch(c.H, c.K, T, T, T, st), 0.f, Q, s);
    } else {
      mx::gemm(engine_, false, false, 1.f, Pu, mx::Batch(c.H + TT, c.K, T, T, T, st), 0.f, Q, s);
      mx::gemm(engine_, false, false, 1.f, mx::Batch(c.muU, c.K, 1, T), mx::Batch(c.H, c.K, T, T, T, st), 0.f,
               mx::Batch(c.mout, c.K, 1, T), s);
      launch_add_rows(c.Q, c.mout, c.K, c.len, T, s);
    }
    launch_unpack(c.d_out, c.nentries, c.len, T, c.Q, 1.f, 1.f, c.max_cols, s, lg);
  }
  if (!g.ns) return;
  g.ns->run(g.ns_groups.data(), g.ns_groups.size(), ws, s);
  for (RunClass &c : g.classes) {
    if (c.ns_index < 0 || !c.direct.empty()) continue;
    const int64_t d = c.split ? c.len - 1 : c.len;
    if (c.split) launch_s_fix(c.Q, c.mu, c.K, c.len, T, float(std::sqrt(double(d))), g.eps, false, s, lg);
    launch_unpack(c.d_out, c.nentries, c.len, T, c.Q, c.s1, c.s2, c.max_cols, s, lg);
  }
}

void MatrixRules::direction(Group &g, cudaStream_t s) {
  const int B = g.nb();
  const int64_t m = g.rows[0], n = g.cols[0];
  mx::Workspace ws{ws_, ws_bytes_};
  switch (g.kind) {
  case RKind::Symo: symo_direction(g, s); break;
  case RKind::LauSuRow: mx::normalize(mx::Batch(g.U[0], B, m, n), mx::Axis::Rows, g.eps, mx::Batch(g.D[0], B, m, n), s); break;
  case RKind::LauSuCol: mx::normalize(mx::Batch(g.U[0], B, m, n), mx::Axis::Cols, g.eps, mx::Batch(g.D[0], B, m, n), s); break;
  case RKind::LauSuCentered: {
    const mx::Batch U(g.U[0], B, m, n), D(g.D[0], B, m, n);
    mx::center_rows(U, U, s);
    mx::normalize(U, mx::Axis::Rows, g.eps, D, s);
    mx::center_rows(D, D, s);
    break;
  }
  case RKind::LauSuPolar: {
    mx::PolarGroup pg{mx::Batch(g.U[0], B, m, n), mx::Batch(g.D[0], B, m, n), 1.f};
    g.polar->run(&pg, 1, ws, s);
    break;
  }
  case RKind::LauSuLeftCentered: {
    // A MoE router's step (CPU: LauSuKind::LeftSpectralCentered): the rows centred, then
    // (Mc Mc^T + eps I)^{-1/2} Mc with the CPU's pseudo-inverse cut, times the nuclear scale
    // <Mc, D>, centred again. All on the device: no host round trip, capturable.
    const mx::Batch U(g.U[0], B, m, n), D(g.D[0], B, m, n);
    mx::center_rows(U, U, s);
    g.left_pow->run(U, -0.5, double(g.eps), polar_options(PolarMethod::Eig).polar_rcond, D, ws, s);
    mx::dots(U, D, g.nu, s);
    mx::scale(D, g.nu, s);
    mx::center_rows(D, D, s);
    break;
  }
  case RKind::Shampoo: {
    const mx::Batch G(g.U[0], B, m, n), Dd(g.D[0], B, m, n);
    for (int left = 1; left >= 0 && !g.banked; --left) { // banked: finish and run_banks did both sides
      if (!(left ? g.useL : g.useR)) continue;
      shampoo_factor(g, left == 1, s);
      if (!g.refresh) continue;
      const int64_t k = left ? m : n;
      const mx::Batch F(left ? g.L : g.R, B, k, k), root(g.S, B, k, k);
      if (mx::InvRootPlan *newton = (left ? g.rootL : g.rootR).get()) newton->run(F, double(g.eps), root, ws, s);
      else (left ? g.powL : g.powR)->run(F, -1.0 / g.exponent, double(g.eps), root, ws, s);
      store_root(g, left == 1, g.S, k, s);
    }
    const mx::Batch Lr(g.Lr, B, m, m), Rr(g.Rr, B, n, n), T(g.T, B, m, n);
    if (g.split) { // G split by the prep stage, the roots at their refresh
      const mx::SplitBatch Gs = g.g_ops(m, n), Ls{Lr, g.Lr_lo}, Rs{Rr, g.Rr_lo};
      if (g.useL && g.useR) {
        mx::gemm(engine_, false, false, 1.f, Ls, Gs, 0.f, Dd, s);
        mx::split_operand(Dd, Gs, s); // L_r G over G's split, which is done with
        mx::gemm(engine_, false, false, 1.f, Gs, Rs, 0.f, Dd, s);
      } else if (g.useL) {
        mx::gemm(engine_, false, false, 1.f, Ls, Gs, 0.f, Dd, s);
      } else {
        mx::gemm(engine_, false, false, 1.f, Gs, Rs, 0.f, Dd, s);
      }
      break;
    }
    // The shared workspace is free here (the roots are made): the products' TF32 split
    // (unless SYMOC_CUDA_FP32_GEMM=sgemm).
    if (g.useL && g.useR) {
      mx::gemm(engine_, false, false, 1.f, Lr, G, 0.f, T, s, ws);
      mx::gemm(engine_, false, false, 1.f, T, Rr, 0.f, Dd, s, ws);
    } else if (g.useL) {
      mx::gemm(engine_, false, false, 1.f, Lr, G, 0.f, Dd, s, ws);
    } else if (g.useR) {
      mx::gemm(engine_, false, false, 1.f, G, Rr, 0.f, Dd, s, ws);
    } else {
      check(cudaMemcpyAsync(g.D[0], g.U[0], sizeof(float) * size_t(B * m * n), cudaMemcpyDeviceToDevice, s), "copy");
    }
    break;
  }
  case RKind::Muon: // Muon's Newton-Schulz U -> D (per head with head_rows), then NorMuon's normalization
    for (int k = 0; k < g.np; ++k) {
      const mx::Shape sh = g.muon_shape(k);
      const mx::Batch in(g.U[size_t(k)], sh.batch, sh.rows, sh.cols), out(g.D[size_t(k)], sh.batch, sh.rows, sh.cols);
      g.ns_groups[size_t(k)] = mx::PolarGroup{in, out, float(std::sqrt(std::max(1.0, double(sh.rows) / double(sh.cols))))};
    }
    g.ns->run(g.ns_groups.data(), g.ns_groups.size(), ws, s);
    if (g.line_norm())
      launch_line_norm(g.args, g.d_chunks, int(g.chunks.size()), g.d_slots, cnt_, int(g.slots.size()), g.norm_axis,
                       g.head_rows, g.norm_beta2, g.norm_eps, g.max_lines, g.norm_sq, s);
    break;
  case RKind::Adam: break; // the prep stage wrote D
  }
}

void MatrixRules::finish(cudaStream_t s) {
  for (auto &gp : groups_) {
    Group &g = *gp;
    if (!g.any || g.kind != RKind::Shampoo) continue;
    g.refresh = false;
    g.refresh_mask.n = g.nb();
    for (int i = 0; i < g.nb(); ++i) {
      const bool on = g.refreshes(i, g.args.active[i]);
      g.refresh_mask.on[i] = on;
      g.refresh = g.refresh || on;
      if (g.args.active[i]) ++g.hcount[size_t(i)];
    }
  }
  if (!step_banks_.empty()) {
    for (auto &gp : groups_)
      if (gp->any && gp->banked)
        for (int left = 1; left >= 0; --left)
          if (left ? gp->useL : gp->useR) shampoo_factor(*gp, left == 1, s);
    run_banks(s);
  }
  for (auto &gp : groups_) {
    Group &g = *gp;
    if (!g.any) continue;
    direction(g, s);
    for (const GaugeDesc &gd : g.gauges) {
      const std::string k = gd.kind;
      if (k == "logit_shift") {
        const mx::Batch Dd(g.D[size_t(gd.a)], g.nb(), g.rows[size_t(gd.a)], g.cols[size_t(gd.a)]);
        mx::center_rows(Dd, Dd, s);
      } else {
        const bool relu = k == "relu_rescale", swiglu = k == "swiglu_rescale";
        launch_gauge_rescale(g.args, g.d_slots, cnt_, g.nb(), g.np, gd.a, swiglu ? -1 : gd.b, relu || swiglu ? gd.c : -1,
                             g.rows[size_t(gd.a)], s);
      }
    }
    launch_apply(g.args, g.d_chunks, int(g.chunks.size()), g.d_slots, cnt_, g.wd, s);
    launch_finalize(g.args, g.d_slots, cnt_, true, s);
    check(cudaGetLastError(), "kernel launch");
  }
}

// The state buffers of a slot under the CPU rule's names: f(what, device pointer, the
// buffer's shape, offset into it, floats, lo) (Symo's C: one component of {ncomp, T, T}). lo:
// null, or the low part of a buffer held split (a Shampoo root: the state is p + lo, exactly).
template <class F> static void buffers_of(const MatrixRules::Group &g, const Slot &sl, int blk, F f) {
  const int64_t m = sl.rows, n = sl.cols;
  auto whole = [&](const char *what, float *p, int64_t r, int64_t c, float *lo = nullptr) {
    f(what, p, std::vector<int64_t>{r, c}, 0, r * c, lo);
  };
  switch (g.kind) {
  case RKind::Symo:
    if (g.has_momentum()) whole("m", sl.s0, m, n);
    if (g.two_sided) f("s", g.s2 + int64_t(blk) * g.npairs, std::vector<int64_t>{g.npairs}, 0, g.npairs, nullptr);
    if (g.beta2 != 0.f && sl.first && !g.two_sided) {
      const int64_t T = g.tdim;
      int64_t ncomp = 0;
      for (size_t r = 0; r < g.runs.size(); ++r) ncomp += g.runs[r].split ? 2 : 1;
      int64_t comp = 0;
      for (size_t r = 0; r < g.runs.size(); ++r) {
        const RunClass &c = g.classes[size_t(g.run_class[r])];
        const int64_t e = int64_t(blk) * int64_t(c.offs.size()) + g.run_index[r];
        for (int k = 0; k < c.nops; ++k, ++comp)
          f("C", c.C + (e * c.nops + k) * T * T, std::vector<int64_t>{ncomp, T, T}, comp * T * T, T * T, nullptr);
      }
    }
    break;
  case RKind::LauSuRow:
  case RKind::LauSuCol:
  case RKind::LauSuCentered:
  case RKind::LauSuPolar:
  case RKind::LauSuLeftCentered: whole("momentum", sl.s0, m, n); break;
  case RKind::Muon:
    whole("momentum", sl.s0, m, n);
    if (g.line_norm()) f("norm_v", sl.s1, std::vector<int64_t>{g.lines(sl), 1}, 0, g.lines(sl), nullptr);
    break;
  case RKind::Adam: whole("m", sl.s0, m, n), whole("v", sl.s1, m, n); break;
  case RKind::Shampoo:
    if (g.useL)
      whole("L", g.L + int64_t(blk) * m * m, m, m),
          whole("L_root", g.Lr + int64_t(blk) * m * m, m, m, g.Lr_lo ? g.Lr_lo + int64_t(blk) * m * m : nullptr);
    if (g.useR)
      whole("R", g.R + int64_t(blk) * n * n, n, n),
          whole("R_root", g.Rr + int64_t(blk) * n * n, n, n, g.Rr_lo ? g.Rr_lo + int64_t(blk) * n * n : nullptr);
    break;
  }
}

void MatrixRules::export_to(State &st, const int64_t *t, const int64_t *skips) const {
  for (auto &gp : groups_) {
    const Group &g = *gp;
    for (size_t i = 0; i < g.slots.size(); ++i) {
      const Slot &sl = g.slots[i];
      const std::string name = params_[sl.param].name, pre = name + "/" + g.tag + ".";
      if (skips[sl.param] > 0) st.counter(name + "/nonfinite_skips") = skips[sl.param];
      const int64_t tb = t[sl.block];
      if (!g.ready || tb == 0 || (g.coupled && !sl.first)) continue; // coupled: keyed by the first member
      buffers_of(g, sl, int(i) / g.np,
                 [&](const char *what, const float *src, const std::vector<int64_t> &shape, int64_t off, int64_t cnt,
                     const float *lo) {
                   float *dst = st.buffer(pre + what, shape) + off;
                   check(cudaMemcpy(dst, src, sizeof(float) * size_t(cnt), cudaMemcpyDeviceToHost), "download");
                   if (!lo) return;
                   std::vector<float> low(static_cast<size_t>(cnt)); // hi + lo is the root bit for bit (a TF32 split)
                   check(cudaMemcpy(low.data(), lo, sizeof(float) * size_t(cnt), cudaMemcpyDeviceToHost), "download");
                   for (int64_t i = 0; i < cnt; ++i) dst[i] += low[size_t(i)];
                 });
      st.counter(pre + "t") = tb;
    }
  }
}

void MatrixRules::import_from(State &st, int64_t *t) {
  // Blocks with state in st: a group not made yet is made for those only (a rank's checkpoint).
  std::vector<uint8_t> has_state;
  for (auto &gp : groups_)
    for (const Slot &sl : gp->slots) {
      if (!sl.first) continue;
      const std::string pre = std::string(params_[sl.param].name) + "/" + gp->tag + ".";
      if (has_state.size() <= size_t(sl.block)) has_state.resize(size_t(sl.block) + 1, 0);
      has_state[size_t(sl.block)] = st.counter_value(pre + "t") > 0;
    }
  split_unmade(has_state);
  for (auto &gp : groups_) {
    Group &g = *gp;
    bool any = false;
    for (const Slot &sl : g.slots) {
      if (!sl.first) continue;
      const std::string pre = std::string(params_[sl.param].name) + "/" + g.tag + ".";
      t[sl.block] = st.counter_value(pre + "t");
      any = any || t[sl.block] > 0;
    }
    if (!any && !g.ready) continue;
    prepare(g, nullptr);
    ensure_slot_state(g, has_state, nullptr);
    for (size_t i = 0; i < g.slots.size(); ++i) {
      const Slot &sl = g.slots[i];
      const int blk = int(i) / g.np;
      const std::string pre = std::string(params_[sl.param].name) + "/" + g.tag + ".";
      const bool present = t[sl.block] > 0;
      g.hcount[size_t(blk)] = t[sl.block];
      buffers_of(g, sl, blk, [&](const char *what, float *dst, const std::vector<int64_t> &shape, int64_t off, int64_t cnt,
                                 float *lo) {
        if (!dst) return; // a Muon block never stepped: no state yet
        if (present && st.has_buffer(pre + what)) {
          const float *src = st.buffer(pre + what, shape) + off; // throws on a shape mismatch
          check(cudaMemcpy(dst, src, sizeof(float) * size_t(cnt), cudaMemcpyHostToDevice), "upload");
          if (lo) { // the root held split, as store_root leaves it
            mx::split_operand(mx::Batch(dst, 1, 1, cnt), mx::SplitBatch{mx::Batch(dst, 1, 1, cnt), lo}, nullptr);
            check(cudaStreamSynchronize(nullptr), "cudaStreamSynchronize");
          }
        } else {
          check(cudaMemset(dst, 0, sizeof(float) * size_t(cnt)), "cudaMemset");
          if (lo) check(cudaMemset(lo, 0, sizeof(float) * size_t(cnt)), "cudaMemset");
        }
      });
    }
  }
}

void MatrixRules::zero() {
  for (auto &gp : groups_) {
    Group &g = *gp;
    std::fill(g.hcount.begin(), g.hcount.end(), 0);
    if (!g.ready) continue;
    for (size_t i = 0; i < g.slots.size(); ++i)
      buffers_of(g, g.slots[i], int(i) / g.np,
                 [&](const char *, float *dst, const std::vector<int64_t> &, int64_t, int64_t cnt, float *lo) {
                   if (dst) check(cudaMemset(dst, 0, sizeof(float) * size_t(cnt)), "cudaMemset");
                   if (lo) check(cudaMemset(lo, 0, sizeof(float) * size_t(cnt)), "cudaMemset");
                 });
  }
}

int64_t MatrixRules::state_bytes() const { return state_bytes_; }

bool MatrixRules::holds_param(int p) const {
  for (auto &g : groups_)
    for (const Slot &sl : g->slots)
      if (sl.param == p) return true;
  return false;
}

} // namespace symoc::rt::cuda
