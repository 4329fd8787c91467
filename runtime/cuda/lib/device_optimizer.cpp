// DeviceOptimizer: groups the plan's blocks into launch groups (one per elementwise rule
// configuration, one per Muon configuration and shape), keeps their state on the device and
// runs a step as a fixed sequence of launches on the caller's stream.
#include "symoc/cuda/device_optimizer.h"

#include "env.h"
#include "kernels.h"
#include "matrix_rules.h"
#include "step_graphs.h"
#include "symoc/cuda/matrix.h"
#include "symoc/runtime/optimizer_api.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <stdexcept>
#include <string>

namespace symoc::rt::cuda {

using namespace detail;

namespace {

void check(cudaError_t e, const char *what) {
  if (e != cudaSuccess) {
    cudaGetLastError(); // clear a sticky launch error so the next call reports its own
    throw Error(std::string("cuda: ") + what + ": " + cudaGetErrorString(e));
  }
}
void check(cublasStatus_t e, const char *what) {
  if (e != CUBLAS_STATUS_SUCCESS) throw Error(std::string("cublas: ") + what + ": status " + std::to_string(int(e)));
}

// Makes `dev` current for the scope (torch may have another device current).
struct DeviceGuard {
  int prev = -1;
  explicit DeviceGuard(int dev) {
    cudaGetDevice(&prev);
    if (prev != dev) check(cudaSetDevice(dev), "cudaSetDevice");
  }
  ~DeviceGuard() {
    int cur = -1;
    cudaGetDevice(&cur);
    if (prev >= 0 && cur != prev) cudaSetDevice(prev);
  }
};

enum class Kind { Adam, Sgd, AdamMini, Muon, Matrix, Host };

// The elementwise and plain Muon kinds (the fused kernels of this file).
Kind fused_kind(const BlockDesc &b) {
  if (b.nparams != 1 || b.ngauges > 0) return Kind::Host;
  const std::string k = b.kind ? b.kind : "";
  if (k == "adamw" || k == "adam") return Kind::Adam;
  if (k == "sgd") return Kind::Sgd;
  if (k == "adam_mini") return Kind::AdamMini;
  if (k == "muon") return b.get("norm_beta2", 0) > 0 ? Kind::Host : Kind::Muon; // NorMuon: the matrix rules
  return Kind::Host;
}

template <class T> T *dalloc(size_t n, size_t &bytes) {
  void *p = nullptr;
  check(cudaMalloc(&p, sizeof(T) * std::max<size_t>(n, 1)), "cudaMalloc");
  bytes += sizeof(T) * n;
  return static_cast<T *>(p);
}

} // namespace

bool detail::capturing(cudaStream_t s) {
  cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
  if (s) check(cudaStreamIsCapturing(s, &cs), "cudaStreamIsCapturing");
  return cs != cudaStreamCaptureStatusNone;
}

void detail::refuse_capture(cudaStream_t s) {
  if (capturing(s))
    throw Error("step_cuda: the first step of a block allocates its state; run one step before capturing a graph");
}

double BlockDesc::get(const char *name, double dflt) const {
  for (int i = 0; i < nhp; ++i)
    if (std::strcmp(hp[i].name, name) == 0) return hp[i].value;
  return dflt;
}

bool on_device(const BlockDesc &b, const ParamDesc *params) {
  return fused_kind(b) != Kind::Host || MatrixRules::supports(b, params);
}

// A launch group: up to kBatch blocks with one rule configuration (Muon: and one shape).
struct Group {
  Kind kind;
  AdamCfg adam{};
  SgdCfg sgd{};
  MiniCfg mini{};
  MuonCfg muon{};
  std::string tag;             // state key tag ("adamw", "sgd", ...)
  std::vector<int> blocks;     // plan blocks, slot order
  std::vector<Slot> slots;     // host copy (state pointers once allocated)
  std::vector<Chunk> chunks;   // work list (host copy)
  std::vector<int32_t> first;  // Muon: first chunk of each sub-matrix (+ end)
  int64_t sub_rows = 0;        // Muon: rows of each orthogonalized sub-matrix
  int64_t mats = 0;            // Muon: sub-matrices in the batch
  // device
  bool ready = false;
  // Per slot: its state (s0 then s1, one allocation), made on the first step that steps its
  // block, so a distributed rank holds the state of its own blocks only.
  std::vector<float *> slot_state;
  std::vector<int64_t> slot_floats, slot_s1; // floats; offset of s1 (-1: none)
  Slot *d_slots = nullptr;
  Chunk *d_chunks = nullptr;
  int32_t *d_first = nullptr;
  uint16_t *X = nullptr, *Y = nullptr, *A = nullptr, *B = nullptr;
  float *partial = nullptr;
  float *U = nullptr; // matrix-library path: U in, the scaled polar factor out (float32)
  double *sumsq = nullptr;                     // fused path: ||U_m||_F^2 per sub-matrix
  symoc::cuda::PolarTarget *targets = nullptr; // fused path: the update of each sub-matrix
  symoc::cuda::PolarSource *sources = nullptr; // fused path, level 2: its gradient and momentum rows

  // Some block of the group is stepped this call (active: per plan block).
  bool any_active(const std::vector<uint8_t> &active) const {
    for (int b : blocks)
      if (active[size_t(b)]) return true;
    return false;
  }
};

struct DeviceOptimizer::Impl {
  std::vector<ParamDesc> params;
  std::vector<BlockDesc> blocks;
  std::vector<int> group_of;  // per block: its group, -1 for host blocks
  std::vector<Group> groups;
  std::vector<int> host_blocks;
  std::vector<int> matrix_blocks; // stepped by `rules`
  std::unique_ptr<MatrixRules> rules;
  HostStepFn host_step = nullptr;
  void *host_ctx = nullptr;
  Counters cnt{};
  cublasHandle_t blas = nullptr;
  void *blas_ws = nullptr;
  size_t blas_ws_bytes = size_t(32) << 20; // a fixed workspace keeps cuBLAS allocation-free (graph capture)
  // Muon's Newton-Schulz: gpumatrix's NewtonSchulzPlan over every Muon group at once (shape
  // banks across groups; default), or this library's own cuBLAS loop (SYMOC_CUDA_NS=own).
  bool ns_matrix = true;
  // SYMOC_CUDA_FUSE, how much of Muon's step the plan does (every level steps bit for bit
  // alike but for the norms' rounding at 0):
  // 2 (default): a stats pass (launch_muon_stats: the norms' partial sums and the NaN/inf check)
  //   reads g and the momentum, then the plan's pack makes the momentum step itself
  //   (PolarGroup::sources), writing the momentum and its 16-bit bank, no float32 U: 22 bytes
  //   per element before the iteration instead of level 1's 26;
  // 1: the momentum kernel writes U (float32) and the norms' partial sums (session 11), the
  //   plan packs U (PolarGroup::in_sumsq);
  // 0: the plan's own norm pass, unpack to U and launch_muon_apply_f32.
  // Levels 1 and 2 apply the update in the plan's unpack (PolarGroup::targets).
  int fuse = 2;
  // SYMOC_CUDA_OVERLAP=1: the elementwise groups (Adam, SGD, Adam-mini) run on a side stream
  // forked from the step's stream and joined before the step ends (events: capturable), so
  // their memory-bound passes can fill the Newton-Schulz GEMMs' gaps.
  bool overlap = false;
  cudaStream_t side = nullptr;
  cudaEvent_t fork = nullptr, join = nullptr;
  std::unique_ptr<symoc::cuda::Engine> engine;
  std::unique_ptr<symoc::cuda::NewtonSchulzPlan> ns_plan;
  symoc::cuda::NsTuning ns_tune; // the environment's (SYMOC_CUDA_NS...) at create_cuda, for every plan
  std::vector<int> muon_groups;
  // A distributed rank steps the same subsets of the blocks every iteration (symoc.distributed:
  // FSDP2 its home blocks in one call, DDP one call per bucket): a plan over just the active
  // Muon matrices (PolarGroup::index into the groups' per-matrix arrays;
  // NsTuning::algorithms_from, so each matrix is multiplied bit for bit as in a full step),
  // cached by the active pattern, made on the first step with it (which allocates and must not
  // be captured, as a group's first step). Levels 1 and 2 of `fuse` (the gather needs
  // in_sumsq); up to kMaxSubsetPlans patterns (a DDP rank has one per bucket), further ones run
  // the full plan (in the full workspace, whatever the cap below; so does fuse level 0).
  // The same gather runs a step in slices when its plan's workspace would exceed ns_ws_cap
  // (SYMOC_CUDA_NS_WORKSPACE_MB, or half the free device memory when the full workspace does
  // not fit): slice j takes the j-th part of every group's active matrices, and the slices run
  // one after another in one workspace. (The matrix rules' Muon groups run plans of their own.)
  // Each matrix is still multiplied on the full plan's algorithms: a sliced step is bit for
  // bit the unsliced one.
  struct NsSlice {
    std::unique_ptr<symoc::cuda::NewtonSchulzPlan> plan;
    std::vector<std::pair<size_t, int32_t *>> members; // (index into muon_groups, device index array)
    std::vector<int64_t> counts;
  };
  struct SubsetNs {
    std::vector<uint8_t> key; // per Muon group, per sub-matrix: stepped
    std::vector<NsSlice> slices;
  };
  static constexpr size_t kMaxSubsetPlans = 256;
  bool subset_plans = true; // SYMOC_CUDA_SUBSET_PLANS=0: every step runs the full plan (before session 12)
  std::vector<SubsetNs> subset_ns;
  std::vector<uint8_t> subset_key_scratch;
  // The Newton-Schulz workspace, one for every plan, allocated on the first step that needs it
  // and grown (graphs dropped) when a later pattern needs more: a distributed rank pays for its
  // own matrices only. Capped at kDefaultNsWorkspaceCap unless SYMOC_CUDA_NS_WORKSPACE_MB says
  // otherwise (0: no cap, unless the full workspace does not fit).
  // Measured (session 13, H200, bench/gpu/ns_workspace.py): LLaMA-1B's 5.7 GB workspace at
  // 2 GiB costs 1.01-1.04x the step for 4.3 GB less; GPT-2 small's (~0.6 GB) is not sliced.
  static constexpr size_t kDefaultNsWorkspaceCap = size_t(2048) << 20;
  size_t ns_ws_cap = kDefaultNsWorkspaceCap;
  bool ns_ws_cap_auto = true; // no SYMOC_CUDA_NS_WORKSPACE_MB: an out-of-memory sets the cap
  std::vector<symoc::cuda::PolarGroup> polar_groups;
  void *ns_ws = nullptr;
  size_t ns_ws_bytes = 0;
  size_t tables_bytes = 0, state_bytes = 0;
  // host staging (host-path blocks)
  std::vector<void *> pin_raw;   // per param: pinned copy of the device bytes
  std::vector<float *> pin_f32;  // per param: float32 view (== pin_raw for f32)
  std::vector<uint8_t> pin_bf16; // dtype the pinned buffers were made for
  // Recorded after the last step's uploads from the pinned buffers, which run on that step's
  // stream after step() returns: the next host step waits on it before it rewrites them (its
  // own stream may be another, where stream order would not protect them).
  cudaEvent_t pin_uploaded = nullptr;
  std::vector<int32_t> subset_scratch;
  std::vector<StepArgs> args; // per group, this step's launch arguments
  StepArgs &args_of(const Group &gr) { return args[size_t(&gr - groups.data())]; }
  static bool uniform_targets(const Group &gr, const StepArgs &a, bool &bf16);
  std::vector<uint8_t> active_scratch;
  StepGraphs graphs; // automatic CUDA graphs of repeated steps

  ~Impl();
  void build();
  void prepare(Group &gr, cudaStream_t s);
  void make_tables(Group &gr, cudaStream_t s);
  void ensure_state(Group &gr, const std::vector<uint8_t> *active, cudaStream_t s);
  void fill_args(const Group &gr, StepArgs &a, void *const *w, const void *const *g, const int32_t *dt, float lr,
                 const float *mult, const std::vector<uint8_t> &active, const float *lr_dev) const;
  void run(void *const *w, const void *const *g, const int32_t *dt, float lr, const float *mult,
           const std::vector<uint8_t> &active, cudaStream_t s, const float *lr_dev);
  void run_group(Group &gr, const StepArgs &a, cudaStream_t s);
  void muon_finish(Group &gr, const StepArgs &a, cudaStream_t s);
  SubsetNs *subset_plan(const std::vector<uint8_t> &active);
  static void free_slices(SubsetNs &p);
  void find_slices(SubsetNs &p, const std::vector<std::vector<int32_t>> &act, size_t most, size_t k);
  NsSlice make_slice(const std::vector<std::vector<int32_t>> &parts);
  bool ensure_ns_ws(size_t bytes, bool may_fail);
  void cap_to_free_memory(size_t bytes);
  void run_full_ns(void *const *w, const void *const *g, const int32_t *dtypes, float lr, const float *mult,
                   const std::vector<uint8_t> &active, cudaStream_t s, const float *lr_dev);
  void run_subset_ns(SubsetNs &sub, cudaStream_t s);
  void pin(size_t slot, int p, bool bf);
  void reserve_host(const int32_t *dt, const std::vector<uint8_t> &active, cudaStream_t s);
  void host_path(void *const *w, const void *const *g, const int32_t *dt, const std::vector<uint8_t> &active,
                 cudaStream_t s);
};

// The device tables prepare() makes (not the state), freed and cleared.
static void free_tables(Group &gr) {
  for (void *p : {static_cast<void *>(gr.d_slots), static_cast<void *>(gr.d_chunks), static_cast<void *>(gr.d_first),
                  static_cast<void *>(gr.X), static_cast<void *>(gr.Y), static_cast<void *>(gr.A),
                  static_cast<void *>(gr.B), static_cast<void *>(gr.partial), static_cast<void *>(gr.U),
                  static_cast<void *>(gr.sumsq), static_cast<void *>(gr.targets), static_cast<void *>(gr.sources)})
    cudaFree(p);
  gr.d_slots = nullptr, gr.d_chunks = nullptr, gr.d_first = nullptr;
  gr.X = gr.Y = gr.A = gr.B = nullptr;
  gr.partial = nullptr, gr.U = nullptr, gr.sumsq = nullptr, gr.targets = nullptr, gr.sources = nullptr;
}

// A subset pattern's slices: their plans and device index arrays.
void DeviceOptimizer::Impl::free_slices(SubsetNs &p) {
  for (NsSlice &sl : p.slices) {
    sl.plan.reset();
    for (auto &mi : sl.members) cudaFree(mi.second);
  }
  p.slices.clear();
}

DeviceOptimizer::Impl::~Impl() {
  cudaDeviceSynchronize();
  for (Group &gr : groups) {
    for (float *p : gr.slot_state) cudaFree(p);
    free_tables(gr);
  }
  rules.reset();
  for (SubsetNs &p : subset_ns) free_slices(p);
  ns_plan.reset();
  engine.reset();
  cudaFree(ns_ws);
  cudaFree(cnt.flag), cudaFree(cnt.t), cudaFree(cnt.skips), cudaFree(cnt.total);
  if (pin_uploaded) cudaEventDestroy(pin_uploaded);
  if (fork) cudaEventDestroy(fork);
  if (join) cudaEventDestroy(join);
  if (side) cudaStreamDestroy(side);
  for (size_t i = 0; i < pin_raw.size(); ++i) {
    if (pin_raw[i]) cudaFreeHost(pin_raw[i]);
    if (pin_f32[i] && pin_f32[i] != pin_raw[i]) cudaFreeHost(pin_f32[i]);
  }
  if (blas) cublasDestroy(blas);
  cudaFree(blas_ws);
}

// Groups and work lists (host side); device tables come with the group's first step.
void DeviceOptimizer::Impl::build() {
  group_of.assign(blocks.size(), -1);
  std::map<std::string, std::vector<int>> open; // config key -> groups with that key
  for (size_t b = 0; b < blocks.size(); ++b) {
    const BlockDesc &d = blocks[b];
    const Kind k = fused_kind(d);
    if (k == Kind::Host) {
      if (MatrixRules::supports(d, params.data())) matrix_blocks.push_back(int(b));
      else host_blocks.push_back(int(b));
      continue;
    }
    const ParamDesc &p = params[size_t(d.params[0])];
    Group g;
    g.kind = k;
    auto f = [&](const char *n, double dflt) { return float(d.get(n, dflt)); };
    std::string key = d.kind;
    if (k == Kind::Adam) {
      const bool dec = std::string(d.kind) == "adamw";
      g.adam = AdamCfg{f("beta1", 0.9), f("beta2", 0.999), f("eps", 1e-8), f("weight_decay", 0), dec ? 1 : 0};
      g.tag = dec ? "adamw" : "adam";
      key += "|" + std::to_string(g.adam.b1) + "|" + std::to_string(g.adam.b2) + "|" + std::to_string(g.adam.eps) +
             "|" + std::to_string(g.adam.wd);
    } else if (k == Kind::Sgd) {
      g.sgd = SgdCfg{f("momentum", 0.9), f("dampening", 0), f("weight_decay", 0), d.get("nesterov", 0) != 0 ? 1 : 0};
      g.tag = "sgd";
      key += "|" + std::to_string(g.sgd.mom) + "|" + std::to_string(g.sgd.damp) + "|" + std::to_string(g.sgd.wd) +
             "|" + std::to_string(g.sgd.nesterov);
    } else if (k == Kind::AdamMini) {
      g.mini = MiniCfg{f("beta1", 0.9), f("beta2", 0.999), f("eps", 1e-8), f("weight_decay", 0),
                       int64_t(d.get("group_rows", 1)), env_flag("SYMOC_CUDA_MINI_CTA", false) ? 0 : 1};
      g.tag = "adam_mini";
      if (g.mini.group_rows <= 0 || p.rows % g.mini.group_rows != 0) { // the CPU rule reports it
        host_blocks.push_back(int(b));
        continue;
      }
      key += "|" + std::to_string(g.mini.b1) + "|" + std::to_string(g.mini.b2) + "|" + std::to_string(g.mini.eps) +
             "|" + std::to_string(g.mini.wd) + "|" + std::to_string(g.mini.group_rows);
    } else {
      const int64_t hr = int64_t(d.get("head_rows", 0));
      if ((hr > 0 && p.rows % hr != 0) || p.rows < 1 || p.cols < 1) {
        host_blocks.push_back(int(b));
        continue;
      }
      g.sub_rows = hr > 0 ? hr : p.rows;
      const double r = double(g.sub_rows), c = double(p.cols);
      g.muon = MuonCfg{f("beta", 0.95), f("weight_decay", 0), float(std::sqrt(std::max(1.0, r / c))),
                       d.get("nesterov", 1) != 0 ? 1 : 0, g.sub_rows, p.cols};
      g.tag = "muon";
      key += "|" + std::to_string(g.muon.beta) + "|" + std::to_string(g.muon.wd) + "|" +
             std::to_string(g.muon.nesterov) + "|" + std::to_string(p.rows) + "x" + std::to_string(p.cols) + "|" +
             std::to_string(g.sub_rows);
    }
    auto &cands = open[key];
    if (cands.empty() || groups[size_t(cands.back())].blocks.size() >= size_t(kBatch)) {
      cands.push_back(int(groups.size()));
      groups.push_back(g);
    }
    Group &gr = groups[size_t(cands.back())];
    group_of[b] = cands.back();
    gr.blocks.push_back(int(b));
  }
  for (Group &gr : groups) {
    for (size_t i = 0; i < gr.blocks.size(); ++i) {
      const int pi = blocks[size_t(gr.blocks[i])].params[0];
      const ParamDesc &p = params[size_t(pi)];
      Slot s{};
      s.block = gr.blocks[i], s.param = pi, s.n = p.rows * p.cols, s.rows = p.rows, s.cols = p.cols, s.first = 1;
      gr.slots.push_back(s);
      const int32_t slot = int32_t(i);
      if (gr.kind == Kind::AdamMini) {
        const int64_t glen = gr.mini.group_rows * p.cols;
        for (int64_t k = 0; k < p.rows / gr.mini.group_rows; ++k) gr.chunks.push_back(Chunk{slot, int32_t(k), k * glen, glen});
        if (glen > kMiniWarpMax) gr.mini.warp = 0; // large groups keep a CTA each
      } else if (gr.kind == Kind::Muon) {
        const int64_t sub = gr.sub_rows * p.cols;
        for (int64_t h = 0; h < p.rows / gr.sub_rows; ++h) {
          gr.first.push_back(int32_t(gr.chunks.size()));
          for (int64_t o = 0; o < sub; o += kChunk)
            gr.chunks.push_back(Chunk{slot, int32_t(gr.mats), h * sub + o, std::min<int64_t>(kChunk, sub - o)});
          ++gr.mats;
        }
      } else {
        for (int64_t o = 0; o < s.n; o += kChunk) gr.chunks.push_back(Chunk{slot, 0, o, std::min<int64_t>(kChunk, s.n - o)});
      }
    }
    gr.first.push_back(int32_t(gr.chunks.size()));
  }
}

// Device state and tables of a group, zero state (first step that touches the group).
void DeviceOptimizer::Impl::prepare(Group &gr, cudaStream_t s) {
  if (gr.ready) return;
  refuse_capture(s);
  // Out of memory part way: what was made is freed, so that a retry starts clean (nothing was
  // launched yet: run() allocates before its first kernel).
  const size_t tables0 = tables_bytes;
  try {
    make_tables(gr, s);
  } catch (...) {
    cudaStreamSynchronize(s); // the uploads already queued read the group's host tables
    free_tables(gr);
    tables_bytes = tables0;
    throw;
  }
  gr.ready = true;
}

void DeviceOptimizer::Impl::make_tables(Group &gr, cudaStream_t s) {
  gr.slot_state.assign(gr.slots.size(), nullptr);
  gr.slot_floats.assign(gr.slots.size(), 0);
  gr.slot_s1.assign(gr.slots.size(), -1);
  for (size_t i = 0; i < gr.slots.size(); ++i) {
    const Slot &sl = gr.slots[i];
    int64_t floats = 0;
    const bool has0 = gr.kind != Kind::Sgd || gr.sgd.mom != 0.f;
    if (has0) floats += (sl.n + 3) & ~int64_t(3); // keep every buffer 16-byte aligned
    if (gr.kind == Kind::Adam) gr.slot_s1[i] = floats, floats += (sl.n + 3) & ~int64_t(3);
    if (gr.kind == Kind::AdamMini) gr.slot_s1[i] = floats, floats += ((sl.rows / gr.mini.group_rows) + 3) & ~int64_t(3);
    gr.slot_floats[i] = floats;
    gr.slots[i].s0 = gr.slots[i].s1 = nullptr; // ensure_state
  }
  gr.d_slots = dalloc<Slot>(gr.slots.size(), tables_bytes);
  gr.d_chunks = dalloc<Chunk>(gr.chunks.size(), tables_bytes);
  check(cudaMemcpyAsync(gr.d_slots, gr.slots.data(), sizeof(Slot) * gr.slots.size(), cudaMemcpyHostToDevice, s), "upload");
  check(cudaMemcpyAsync(gr.d_chunks, gr.chunks.data(), sizeof(Chunk) * gr.chunks.size(), cudaMemcpyHostToDevice, s),
        "upload");
  if (gr.kind == Kind::Muon && ns_matrix) {
    const int64_t nall = gr.slots[0].n * int64_t(gr.slots.size());
    if (fuse < 2) { // level 2 forms the plan's input in its pack and updates in its unpack: no U
      gr.U = dalloc<float>(size_t(nall), tables_bytes);
      check(cudaMemsetAsync(gr.U, 0, sizeof(float) * size_t(nall), s), "cudaMemsetAsync");
    }
    if (fuse >= 1) {
      gr.d_first = dalloc<int32_t>(gr.first.size(), tables_bytes);
      check(cudaMemcpyAsync(gr.d_first, gr.first.data(), sizeof(int32_t) * gr.first.size(), cudaMemcpyHostToDevice, s),
            "upload");
      gr.partial = dalloc<float>(gr.chunks.size(), tables_bytes);
      gr.sumsq = dalloc<double>(size_t(gr.mats), tables_bytes);
      gr.targets = dalloc<symoc::cuda::PolarTarget>(size_t(gr.mats), tables_bytes);
      if (fuse == 2) gr.sources = dalloc<symoc::cuda::PolarSource>(size_t(gr.mats), tables_bytes);
    }
  } else if (gr.kind == Kind::Muon) {
    const int64_t n = gr.slots[0].n, nall = n * int64_t(gr.slots.size());
    const int64_t side = std::min(gr.sub_rows, gr.muon.cols), gram = side * side * gr.mats;
    gr.d_first = dalloc<int32_t>(gr.first.size(), tables_bytes);
    check(cudaMemcpyAsync(gr.d_first, gr.first.data(), sizeof(int32_t) * gr.first.size(), cudaMemcpyHostToDevice, s),
          "upload");
    gr.X = dalloc<uint16_t>(size_t(nall), tables_bytes);
    gr.Y = dalloc<uint16_t>(size_t(nall), tables_bytes);
    gr.A = dalloc<uint16_t>(size_t(gram), tables_bytes);
    gr.B = dalloc<uint16_t>(size_t(gram), tables_bytes);
    gr.partial = dalloc<float>(gr.chunks.size(), tables_bytes);
  }
  // The uploads read pageable host memory that lives as long as the group.
  check(cudaStreamSynchronize(s), "cudaStreamSynchronize");
}

// The state of the group's slots that are stepped (active; null: every slot), zero, made on
// their blocks' first step. The kernels touch only active slots' state.
void DeviceOptimizer::Impl::ensure_state(Group &gr, const std::vector<uint8_t> *active, cudaStream_t s) {
  bool added = false;
  for (size_t i = 0; i < gr.slots.size(); ++i) {
    if (gr.slot_state[i] || (active && !(*active)[size_t(gr.blocks[i])]) || gr.slot_floats[i] == 0) continue;
    refuse_capture(s);
    float *p = dalloc<float>(size_t(gr.slot_floats[i]), state_bytes);
    check(cudaMemsetAsync(p, 0, sizeof(float) * size_t(gr.slot_floats[i]), s), "cudaMemsetAsync");
    gr.slot_state[i] = p;
    gr.slots[i].s0 = p;
    gr.slots[i].s1 = gr.slot_s1[i] >= 0 ? p + gr.slot_s1[i] : nullptr;
    added = true;
  }
  if (!added) return;
  check(cudaMemcpyAsync(gr.d_slots, gr.slots.data(), sizeof(Slot) * gr.slots.size(), cudaMemcpyHostToDevice, s),
        "upload");
  check(cudaStreamSynchronize(s), "cudaStreamSynchronize"); // pageable source; first steps only
}

void DeviceOptimizer::Impl::fill_args(const Group &gr, StepArgs &a, void *const *w, const void *const *g,
                                      const int32_t *dt, float lr, const float *mult,
                                      const std::vector<uint8_t> &active, const float *lr_dev) const {
  a.nslots = int(gr.slots.size());
  a.lr_scale = lr_dev;
  for (size_t i = 0; i < gr.slots.size(); ++i) {
    const int p = gr.slots[i].param;
    a.w[i] = w[p];
    a.g[i] = g[p];
    a.lr[i] = lr_dev ? mult[p] : lr * mult[p];
    a.wbf16[i] = dt && dt[p] == SYMOC_BF16;
    a.gbf16[i] = a.wbf16[i];
    a.active[i] = active[size_t(gr.blocks[i])];
  }
}

void DeviceOptimizer::Impl::run_group(Group &gr, const StepArgs &a, cudaStream_t s) {
  const int nc = int(gr.chunks.size());
  const bool stats = gr.kind == Kind::Muon && ns_matrix && fuse == 2; // the stats pass checks
  if (!stats) launch_check(a, gr.d_chunks, nc, gr.d_slots, cnt, s);
  switch (gr.kind) {
  case Kind::Adam: launch_adam(a, gr.d_chunks, nc, gr.d_slots, cnt, gr.adam, s); break;
  case Kind::Sgd: launch_sgd(a, gr.d_chunks, nc, gr.d_slots, cnt, gr.sgd, s); break;
  case Kind::AdamMini: launch_adam_mini(a, gr.d_chunks, nc, gr.d_slots, cnt, gr.mini, s); break;
  case Kind::Muon: {
    if (ns_matrix) { // momentum here (or its stats); Newton-Schulz and the update after every group's
      if (stats) launch_muon_stats(a, gr.d_chunks, nc, gr.d_slots, cnt, gr.muon, gr.partial, s);
      else launch_muon_momentum_f32(a, gr.d_chunks, nc, gr.d_slots, cnt, gr.muon, gr.U, gr.partial, s);
      if (fuse >= 1)
        launch_muon_prep(a, gr.d_chunks, gr.d_slots, cnt, gr.muon, gr.d_first, gr.mats, gr.partial, gr.sumsq,
                         gr.targets, gr.sources, s);
      check(cudaGetLastError(), "kernel launch");
      return;
    }
    launch_muon_momentum(a, gr.d_chunks, nc, gr.d_slots, cnt, gr.muon, gr.X, gr.partial, s);
    launch_muon_normalize(gr.d_chunks, nc, gr.d_first, gr.muon, gr.X, gr.partial, gr.slots[0].n, s);
    uint16_t *O = nullptr;
    // cublasSetStream resets the handle's workspace to cuBLAS's pool (allocations, no graph
    // capture): the fixed one goes back after it, as Engine::bind does.
    check(cublasSetStream(blas, s), "cublasSetStream");
    check(cublasSetWorkspace(blas, blas_ws, blas_ws_bytes), "cublasSetWorkspace");
    check(newton_schulz_batched(blas, s, gr.X, gr.Y, gr.A, gr.B, gr.mats, gr.sub_rows, gr.muon.cols, 5, &O),
          "Newton-Schulz");
    launch_muon_apply(a, gr.d_chunks, nc, gr.d_slots, cnt, gr.muon, O, s);
    break;
  }
  case Kind::Matrix:
  case Kind::Host: break;
  }
  launch_finalize(a, gr.d_slots, cnt, true, s);
  check(cudaGetLastError(), "kernel launch");
}

// Matrix-library path: after every Muon group's momentum, one NewtonSchulzPlan run (all
// groups), then each group's update and counters.
void DeviceOptimizer::Impl::muon_finish(Group &gr, const StepArgs &a, cudaStream_t s) {
  const int nc = int(gr.chunks.size());
  if (fuse == 0) launch_muon_apply_f32(a, gr.d_chunks, nc, gr.d_slots, cnt, gr.muon, gr.U, s); // else done by the plan
  launch_finalize(a, gr.d_slots, cnt, true, s);
  check(cudaGetLastError(), "kernel launch");
}

// Makes the Newton-Schulz workspace at least `bytes` (first steps only: a step being captured
// never grows it, since the same pattern ran eagerly before). may_fail: an out-of-memory
// returns false instead of throwing.
bool DeviceOptimizer::Impl::ensure_ns_ws(size_t bytes, bool may_fail) {
  if (bytes <= ns_ws_bytes && ns_ws) return true;
  check(cudaDeviceSynchronize(), "cudaDeviceSynchronize"); // earlier steps may still use the old one
  cudaFree(ns_ws);
  ns_ws = nullptr, ns_ws_bytes = 0;
  graphs.clear(); // their nodes hold the old workspace
  const size_t want = std::max<size_t>(bytes, 256);
  const cudaError_t e = cudaMalloc(&ns_ws, want);
  if (e == cudaErrorMemoryAllocation && may_fail) {
    cudaGetLastError();
    ns_ws = nullptr;
    return false;
  }
  if (e != cudaSuccess) {
    cudaGetLastError();
    throw Error("cuda: cudaMalloc of the Newton-Schulz workspace (" + std::to_string(want >> 20) +
                " MiB): " + cudaGetErrorString(e) + "; SYMOC_CUDA_NS_WORKSPACE_MB=N runs it in slices of N MiB");
  }
  ns_ws_bytes = want;
  return true;
}

// A workspace of `bytes` did not fit (no SYMOC_CUDA_NS_WORKSPACE_MB): slices of half the free
// device memory from now on, said once on stderr.
void DeviceOptimizer::Impl::cap_to_free_memory(size_t bytes) {
  size_t free = 0, total = 0;
  check(cudaMemGetInfo(&free, &total), "cudaMemGetInfo");
  ns_ws_cap = std::max<size_t>(std::min(free / 2, bytes / 2), size_t(1) << 20);
  std::fprintf(stderr, "symoc: the Newton-Schulz workspace (%zu MiB) does not fit in device memory; running it in "
                       "slices of at most %zu MiB (SYMOC_CUDA_NS_WORKSPACE_MB sets this)\n",
               bytes >> 20, ns_ws_cap >> 20);
}

// One slice's plan: parts[i] lists the matrices of Muon group i it runs (may be empty).
DeviceOptimizer::Impl::NsSlice DeviceOptimizer::Impl::make_slice(const std::vector<std::vector<int32_t>> &parts) {
  NsSlice sl;
  std::vector<symoc::cuda::Shape> shapes;
  for (size_t i = 0; i < parts.size(); ++i) {
    if (parts[i].empty()) continue;
    const Group &gr = groups[size_t(muon_groups[i])];
    int32_t *d = dalloc<int32_t>(parts[i].size(), tables_bytes);
    check(cudaMemcpy(d, parts[i].data(), sizeof(int32_t) * parts[i].size(), cudaMemcpyHostToDevice), "upload");
    sl.members.emplace_back(i, d);
    sl.counts.push_back(int64_t(parts[i].size()));
    shapes.push_back(symoc::cuda::Shape{int64_t(parts[i].size()), gr.sub_rows, gr.muon.cols});
  }
  if (!shapes.empty()) {
    symoc::cuda::NsTuning tune = ns_tune; // not the environment now: a first step may come long after create_cuda
    tune.algorithms_from = ns_plan.get();
    sl.plan = std::make_unique<symoc::cuda::NewtonSchulzPlan>(*engine, shapes, symoc::cuda::PolarIteration::NewtonSchulz,
                                                              5, tune);
  }
  return sl;
}

// The sliced or subset plans of this step's active Muon matrices (made on the first step with
// the pattern), or null: the full plan runs (every Muon matrix active and its workspace within
// the cap, a fuse level without norms from the caller, or kMaxSubsetPlans patterns made).
DeviceOptimizer::Impl::SubsetNs *DeviceOptimizer::Impl::subset_plan(const std::vector<uint8_t> &active) {
  if (!ns_plan) return nullptr;
  const size_t full = ns_plan->workspace_bytes();
  if (fuse < 1) {
    ensure_ns_ws(full, false);
    return nullptr;
  }
  std::vector<uint8_t> &key = subset_key_scratch;
  key.clear();
  bool all = true;
  for (int gi : muon_groups) {
    const Group &gr = groups[size_t(gi)];
    const int64_t per = gr.slots[0].rows / gr.sub_rows;
    for (int b : gr.blocks) {
      const uint8_t a = active[size_t(b)] ? 1 : 0;
      all = all && a;
      key.insert(key.end(), size_t(per), a);
    }
  }
  for (SubsetNs &p : subset_ns)
    if (p.key == key) return &p;
  const bool full_fits = ns_ws_cap == 0 || full <= ns_ws_cap;
  if ((all || !subset_plans) && full_fits) {
    if (ensure_ns_ws(full, ns_ws_cap_auto)) return nullptr;
    cap_to_free_memory(full);
  }
  if (subset_ns.size() >= kMaxSubsetPlans) {
    ensure_ns_ws(full, false);
    return nullptr;
  }
  // The active matrices of each group, then k slices of them (k grows until every slice's
  // workspace is within the cap, or every slice holds one matrix per group).
  std::vector<std::vector<int32_t>> act(muon_groups.size());
  size_t off = 0, most = 0;
  double elems = 0, active_elems = 0; // the workspace grows with the matrices' elements
  for (size_t i = 0; i < muon_groups.size(); ++i) {
    const Group &gr = groups[size_t(muon_groups[i])];
    for (int64_t m = 0; m < gr.mats; ++m)
      if (key[off + size_t(m)]) act[i].push_back(int32_t(m));
    off += size_t(gr.mats);
    most = std::max(most, act[i].size());
    const double each = double(gr.sub_rows) * double(gr.muon.cols);
    elems += each * double(gr.mats), active_elems += each * double(act[i].size());
  }
  SubsetNs p;
  p.key = key;
  // First guess: the active share of the full workspace over the cap (a rank's subset needs
  // ~1/W of it: slicing it as the full step would cost it speed for nothing); raised below
  // until every slice fits.
  const double share = elems > 0 ? active_elems / elems : 1.0;
  size_t k = ns_ws_cap ? std::max<size_t>(1, size_t(std::ceil(double(full) * share / double(ns_ws_cap)))) : 1;
  try {
    find_slices(p, act, most, k);
  } catch (...) { // out of memory: nothing of this step ran; its tables go
    free_slices(p);
    throw;
  }
  subset_ns.push_back(std::move(p));
  return &subset_ns.back();
}

// Slices of the active matrices `act` (k to start with) until every slice's workspace is within
// the cap, or every slice holds one matrix per group; the workspace made for them.
void DeviceOptimizer::Impl::find_slices(SubsetNs &p, const std::vector<std::vector<int32_t>> &act, size_t most,
                                        size_t k) {
  for (;;) {
    k = std::max<size_t>(1, std::min(k, most));
    free_slices(p);
    size_t need = 0;
    for (size_t j = 0; j < k; ++j) {
      std::vector<std::vector<int32_t>> parts(act.size());
      for (size_t i = 0; i < act.size(); ++i) { // the j-th of k near-equal contiguous parts
        const size_t n = act[i].size(), lo = n * j / k, hi = n * (j + 1) / k;
        parts[i].assign(act[i].begin() + std::ptrdiff_t(lo), act[i].begin() + std::ptrdiff_t(hi));
      }
      NsSlice sl = make_slice(parts);
      if (!sl.plan) continue;
      need = std::max(need, sl.plan->workspace_bytes());
      p.slices.push_back(std::move(sl));
    }
    if (ns_ws_cap == 0 || need <= ns_ws_cap || k >= most) {
      if (ensure_ns_ws(need, ns_ws_cap_auto && k < most)) break;
      cap_to_free_memory(need); // the slices do not fit either: smaller ones
    }
    k = std::max(k + 1, size_t(double(k) * double(need) / double(ns_ws_cap) + 0.999));
  }
}

// The pinned host copy of parameter p's weight (slot p) or gradient (slot np + p) in its dtype.
void DeviceOptimizer::Impl::pin(size_t slot, int p, bool bf) {
  const size_t np = params.size();
  if (pin_raw.empty()) pin_raw.assign(2 * np, nullptr), pin_f32.assign(2 * np, nullptr), pin_bf16.assign(2 * np, 0);
  if (pin_raw[slot] && pin_bf16[slot] == uint8_t(bf)) return;
  const size_t n = size_t(params[size_t(p)].rows * params[size_t(p)].cols);
  if (pin_raw[slot] && pin_uploaded) check(cudaEventSynchronize(pin_uploaded), "cudaEventSynchronize"); // in use
  if (pin_f32[slot] && pin_f32[slot] != pin_raw[slot]) cudaFreeHost(pin_f32[slot]);
  if (pin_raw[slot]) cudaFreeHost(pin_raw[slot]);
  pin_raw[slot] = pin_f32[slot] = nullptr;
  check(cudaMallocHost(&pin_raw[slot], sizeof(float) * std::max<size_t>(n, 1)), "cudaMallocHost");
  pin_f32[slot] = static_cast<float *>(pin_raw[slot]);
  if (bf) {
    void *f = nullptr;
    check(cudaMallocHost(&f, sizeof(float) * std::max<size_t>(n, 1)), "cudaMallocHost");
    pin_f32[slot] = static_cast<float *>(f);
  }
  pin_bf16[slot] = uint8_t(bf);
}

// The host path's pinned copies of this step's host blocks, made before its first launch.
void DeviceOptimizer::Impl::reserve_host(const int32_t *dt, const std::vector<uint8_t> &active, cudaStream_t s) {
  bool any = false;
  for (int b : host_blocks) any = any || active[size_t(b)];
  if (!any || capturing(s)) return; // under capture host_path refuses it, naming the block
  const size_t np = params.size();
  for (int b : host_blocks)
    if (active[size_t(b)])
      for (int k = 0; k < blocks[size_t(b)].nparams; ++k) {
        const int p = blocks[size_t(b)].params[k];
        const bool bf = dt && dt[p] == SYMOC_BF16;
        pin(size_t(p), p, bf), pin(np + size_t(p), p, bf);
      }
}

// Blocks the device does not implement: stepped by the generated CPU code on pinned host
// copies (synchronizes the stream).
void DeviceOptimizer::Impl::host_path(void *const *w, const void *const *g, const int32_t *dt,
                                      const std::vector<uint8_t> &active, cudaStream_t s) {
  subset_scratch.clear();
  for (int b : host_blocks)
    if (active[size_t(b)]) subset_scratch.push_back(b);
  if (subset_scratch.empty()) return;
  if (capturing(s))
    throw Error(std::string("block of '") + params[size_t(blocks[size_t(subset_scratch[0])].params[0])].name +
                "' uses rule '" + blocks[size_t(subset_scratch[0])].kind +
                "', which runs on the host; a step with it cannot be captured in a CUDA graph");
  const size_t np = params.size();
  if (pin_uploaded) check(cudaEventSynchronize(pin_uploaded), "cudaEventSynchronize");
  std::vector<float *> hw(np, nullptr), hg(np, nullptr);
  auto stage = [&](size_t slot, int p, const void *src, bool bf) -> float * {
    const size_t n = size_t(params[size_t(p)].rows * params[size_t(p)].cols);
    pin(slot, p, bf); // made by reserve_host before the step's first launch
    check(cudaMemcpyAsync(pin_raw[slot], src, n * (bf ? 2 : 4), cudaMemcpyDeviceToHost, s), "cudaMemcpyAsync");
    return pin_f32[slot];
  };
  for (int b : subset_scratch)
    for (int k = 0; k < blocks[size_t(b)].nparams; ++k) {
      const int p = blocks[size_t(b)].params[k];
      const bool bf = dt && dt[p] == SYMOC_BF16;
      hw[size_t(p)] = stage(size_t(p), p, w[p], bf);
      hg[size_t(p)] = stage(np + size_t(p), p, g[p], bf);
    }
  check(cudaStreamSynchronize(s), "cudaStreamSynchronize");
  auto widen = [&](size_t slot, size_t n) {
    if (!pin_bf16[slot]) return;
    const uint16_t *r = static_cast<const uint16_t *>(pin_raw[slot]);
    for (size_t j = 0; j < n; ++j) {
      uint32_t u = uint32_t(r[j]) << 16;
      std::memcpy(&pin_f32[slot][j], &u, 4);
    }
  };
  for (size_t p = 0; p < np; ++p)
    if (hw[p]) {
      const size_t n = size_t(params[p].rows * params[p].cols);
      widen(p, n), widen(np + p, n);
    }
  host_step(host_ctx, subset_scratch.data(), int(subset_scratch.size()), hw.data(), hg.data());
  for (size_t p = 0; p < np; ++p)
    if (hw[p]) {
      const size_t n = size_t(params[p].rows * params[p].cols);
      if (pin_bf16[p]) { // round to nearest even, as __float2bfloat16_rn
        uint16_t *r = static_cast<uint16_t *>(pin_raw[p]);
        for (size_t j = 0; j < n; ++j) {
          uint32_t u;
          std::memcpy(&u, &pin_f32[p][j], 4);
          if ((u & 0x7f800000u) == 0x7f800000u) r[j] = uint16_t((u >> 16) | ((u & 0xffffu) ? 0x40u : 0u));
          else r[j] = uint16_t((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
        }
      }
      check(cudaMemcpyAsync(w[p], pin_raw[p], n * (pin_bf16[p] ? 2 : 4), cudaMemcpyHostToDevice, s), "cudaMemcpyAsync");
    }
  if (!pin_uploaded) check(cudaEventCreateWithFlags(&pin_uploaded, cudaEventDisableTiming), "cudaEventCreate");
  check(cudaEventRecord(pin_uploaded, s), "cudaEventRecord");
}

DeviceOptimizer::DeviceOptimizer(const ParamDesc *params, int nparams, const BlockDesc *blocks, int nblocks, int device,
                                 HostStepFn host_step, void *host_ctx)
    : impl_(new Impl), device_(device) {
  int count = 0;
  check(cudaGetDeviceCount(&count), "cudaGetDeviceCount");
  if (device < 0 || device >= count)
    throw Error("create_cuda: device " + std::to_string(device) + " does not exist (" + std::to_string(count) +
                " CUDA device(s))");
  DeviceGuard guard(device);
  Impl &m = *impl_;
  m.params.assign(params, params + nparams);
  m.blocks.assign(blocks, blocks + nblocks);
  m.host_step = host_step;
  m.host_ctx = host_ctx;
  m.build();
  m.args.resize(m.groups.size());
  if (!m.host_blocks.empty() && !host_step) throw Error("create_cuda: the plan has host-path blocks but no host step");
  size_t junk = 0;
  m.cnt.flag = dalloc<int32_t>(size_t(nblocks), junk);
  m.cnt.t = dalloc<int64_t>(size_t(nblocks), junk);
  m.cnt.skips = dalloc<int64_t>(size_t(nparams), junk);
  m.cnt.total = dalloc<int64_t>(1, junk);
  check(cudaMemset(m.cnt.flag, 0, sizeof(int32_t) * size_t(std::max(nblocks, 1))), "cudaMemset");
  check(cudaMemset(m.cnt.t, 0, sizeof(int64_t) * size_t(std::max(nblocks, 1))), "cudaMemset");
  check(cudaMemset(m.cnt.skips, 0, sizeof(int64_t) * size_t(std::max(nparams, 1))), "cudaMemset");
  check(cudaMemset(m.cnt.total, 0, sizeof(int64_t)), "cudaMemset");
  bool muon = false;
  for (const Group &g : m.groups) muon = muon || g.kind == Kind::Muon;
  m.ns_matrix = env_ns_path() != "own";
  m.fuse = int(env_whole("SYMOC_CUDA_FUSE", 2, 0, 2, "the fusion level (0: none, 1: per rule, 2: all)"));
  m.subset_plans = env_flag("SYMOC_CUDA_SUBSET_PLANS", true);
  m.overlap = env_flag("SYMOC_CUDA_OVERLAP", false);
  if (m.overlap) {
    check(cudaStreamCreateWithFlags(&m.side, cudaStreamNonBlocking), "cudaStreamCreate");
    check(cudaEventCreateWithFlags(&m.fork, cudaEventDisableTiming), "cudaEventCreate");
    check(cudaEventCreateWithFlags(&m.join, cudaEventDisableTiming), "cudaEventCreate");
  }
  std::vector<symoc::cuda::Shape> shapes;
  if (muon && m.ns_matrix)
    for (size_t gi = 0; gi < m.groups.size(); ++gi)
      if (m.groups[gi].kind == Kind::Muon) {
        m.muon_groups.push_back(int(gi));
        shapes.push_back(symoc::cuda::Shape{m.groups[gi].mats, m.groups[gi].sub_rows, m.groups[gi].muon.cols});
      }
  if ((muon && m.ns_matrix) || !m.matrix_blocks.empty()) m.engine = std::make_unique<symoc::cuda::Engine>(device);
  if (!m.matrix_blocks.empty()) {
    m.rules = std::make_unique<MatrixRules>(m.params.data(), m.blocks.data(), m.matrix_blocks, *m.engine, m.cnt);
  }
  if (!shapes.empty()) { // one Newton-Schulz plan for the Muon groups
    m.ns_tune = ns_tuning_from_env();
    m.ns_plan = std::make_unique<symoc::cuda::NewtonSchulzPlan>(*m.engine, shapes, symoc::cuda::PolarIteration::NewtonSchulz,
                                                                5, m.ns_tune);
    const int64_t mb = env_whole("SYMOC_CUDA_NS_WORKSPACE_MB", -1, 0, int64_t(1) << 40,
                                 "the Newton-Schulz workspace cap in MiB (0: no cap)");
    if (mb >= 0) m.ns_ws_cap = size_t(mb) << 20, m.ns_ws_cap_auto = false;
    m.polar_groups.resize(m.muon_groups.size());
  }
  if (muon && !m.ns_matrix) { // the own Newton-Schulz loop (SYMOC_CUDA_NS=own)
    check(cublasCreate(&m.blas), "cublasCreate");
    check(cudaMalloc(&m.blas_ws, m.blas_ws_bytes), "cudaMalloc");
    check(cublasSetWorkspace(m.blas, m.blas_ws, m.blas_ws_bytes), "cublasSetWorkspace");
  }
  check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
}

DeviceOptimizer::~DeviceOptimizer() {
  if (impl_) {
    DeviceGuard guard(device_);
    impl_.reset();
  }
}

void DeviceOptimizer::step(void *const *w, const void *const *g, const int32_t *dtypes, float lr, const float *mult,
                           const int32_t *subset, int nsubset, void *stream) {
  Impl &m = *impl_;
  DeviceGuard guard(device_);
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  const size_t nb = m.blocks.size();
  std::vector<uint8_t> &active = m.active_scratch;
  active.assign(nb, subset ? 0 : 1);
  if (subset)
    for (int i = 0; i < nsubset; ++i) {
      const int b = subset[i];
      if (b < 0 || size_t(b) >= nb) throw std::invalid_argument("step_cuda: block " + std::to_string(b) + " out of range");
      if (active[size_t(b)]) throw std::invalid_argument("step_cuda: block " + std::to_string(b) + " listed twice");
      active[size_t(b)] = 1;
    }
  for (size_t b = 0; b < nb; ++b) {
    if (!active[b]) continue;
    for (int k = 0; k < m.blocks[b].nparams; ++k) {
      const int p = m.blocks[b].params[k];
      if (!w[p] || !g[p])
        throw std::invalid_argument(std::string("step_cuda: NULL weight or gradient for '") + m.params[size_t(p)].name + "'");
      if (dtypes && dtypes[p] != 0 && dtypes[p] != SYMOC_BF16)
        throw std::invalid_argument(std::string("step_cuda: unknown dtype code ") + std::to_string(dtypes[p]) + " for '" +
                    m.params[size_t(p)].name + "'");
    }
  }
  // A step that repeats a recent one's tensors and blocks runs as a CUDA graph (step_graphs.h).
  const bool graphable = m.host_blocks.empty();
  StepGraphs::Key key;
  if (graphable && m.graphs.enabled()) {
    const size_t np = m.params.size();
    key.ptrs.assign(w, w + np);
    key.ptrs.insert(key.ptrs.end(), g, g + np);
    if (dtypes) key.dtypes.assign(dtypes, dtypes + np);
    key.mult.assign(mult, mult + np);
    if (subset) key.subset.assign(subset, subset + nsubset);
    else key.subset.assign(1, -1);
    const bool done = m.graphs.step(key, lr, s, [&](cudaStream_t cs, const float *lr_dev) {
      m.run(w, g, dtypes, lr, mult, active, cs, lr_dev);
    });
    if (done) return;
  }
  m.run(w, g, dtypes, lr, mult, active, s, nullptr);
  if (graphable) m.graphs.remember(std::move(key));
}

// One step's launches on s (lr_dev: see StepArgs::lr_scale).
void DeviceOptimizer::Impl::run(void *const *w, const void *const *g, const int32_t *dtypes, float lr,
                                const float *mult, const std::vector<uint8_t> &active, cudaStream_t s,
                                const float *lr_dev) {
  Impl &m = *this;
  // Everything a step allocates (a first step's tables and state, a new pattern's plans and
  // Newton-Schulz workspace) comes before its first launch, so an out-of-memory error leaves
  // every weight and state as it was (symoc.torch then frees torch's cached blocks and retries).
  bool any_muon = false, forked = false;
  for (Group &gr : m.groups) {
    if (!gr.any_active(active)) continue;
    any_muon = any_muon || gr.kind == Kind::Muon;
    m.prepare(gr, s);
    m.ensure_state(gr, &active, s);
  }
  if (m.rules) {
    m.rules->reserve(active, s);
    if (m.rules->ws_moved()) m.graphs.clear(); // their nodes hold the old workspace
  }
  const bool ns = any_muon && m.ns_matrix;
  SubsetNs *sub = ns ? m.subset_plan(active) : nullptr;
  if (ns && !sub)
    for (int gi : m.muon_groups) m.prepare(m.groups[size_t(gi)], s); // the full plan reads every group
  m.reserve_host(dtypes, active, s);
  for (Group &gr : m.groups) {
    if (!gr.any_active(active)) continue;
    StepArgs &a = m.args_of(gr);
    m.fill_args(gr, a, w, g, dtypes, lr, mult, active, lr_dev);
    const bool elementwise = gr.kind == Kind::Adam || gr.kind == Kind::Sgd || gr.kind == Kind::AdamMini;
    if (m.overlap && elementwise && !forked) {
      check(cudaEventRecord(m.fork, s), "cudaEventRecord");
      check(cudaStreamWaitEvent(m.side, m.fork, 0), "cudaStreamWaitEvent");
      forked = true;
    }
    m.run_group(gr, a, m.overlap && elementwise ? m.side : s);
  }
  // The matrix rules' inputs.
  if (m.rules) m.rules->begin(w, g, dtypes, lr, mult, active, s, lr_dev);
  if (ns) {
    if (sub) m.run_subset_ns(*sub, s);
    else m.run_full_ns(w, g, dtypes, lr, mult, active, s, lr_dev);
    for (int gi : m.muon_groups) {
      Group &gr = m.groups[size_t(gi)];
      if (gr.any_active(active)) m.muon_finish(gr, m.args_of(gr), s);
    }
  }
  if (m.rules) m.rules->finish(s);
  if (forked) {
    check(cudaEventRecord(m.join, m.side), "cudaEventRecord");
    check(cudaStreamWaitEvent(s, m.join, 0), "cudaStreamWaitEvent");
  }
  m.host_path(w, g, dtypes, active, s);
}

// One Newton-Schulz over every Muon group. Inactive
// groups hold zeros or stale finite values whose results are not applied; at fuse level 2
// (no U) they enter as skipped matrices.
void DeviceOptimizer::Impl::run_full_ns(void *const *w, const void *const *g, const int32_t *dtypes, float lr,
                                        const float *mult, const std::vector<uint8_t> &active, cudaStream_t s,
                                        const float *lr_dev) {
  polar_groups.resize(muon_groups.size());
  for (size_t i = 0; i < muon_groups.size(); ++i) {
    Group &gr = groups[size_t(muon_groups[i])]; // made by run() before its first launch
    symoc::cuda::Batch b(gr.U, gr.mats, gr.sub_rows, gr.muon.cols);
    polar_groups[i] = symoc::cuda::PolarGroup{b, b, gr.muon.scale};
    // Only a group that ran its momentum (or stats) and prep this step has fresh norms and
    // targets; at level 2 a group not stepped gets a prep over no active slot (all skipped).
    const bool stepped = gr.any_active(active);
    if (fuse == 2 && !stepped) {
      StepArgs &a = args_of(gr);
      fill_args(gr, a, w, g, dtypes, lr, mult, active, lr_dev);
      launch_muon_prep(a, gr.d_chunks, gr.d_slots, cnt, gr.muon, gr.d_first, gr.mats, gr.partial, gr.sumsq,
                       gr.targets, gr.sources, s);
    }
    if (fuse == 2 || (fuse == 1 && stepped)) {
      symoc::cuda::PolarGroup &pg = polar_groups[i];
      pg.in_sumsq = gr.sumsq, pg.targets = gr.targets;
      pg.targets_uniform = uniform_targets(gr, args_of(gr), pg.targets_bf16);
      pg.sources = gr.sources, pg.beta = gr.muon.beta, pg.nesterov = gr.muon.nesterov != 0;
    }
  }
  ns_plan->run(polar_groups.data(), polar_groups.size(), symoc::cuda::Workspace{ns_ws, ns_ws_bytes}, s);
}

// Whether the group's targets (muon_prep_kernel's, from these args) meet
// PolarGroup::targets_uniform: one lr multiplier and one dtype over every slot, and each
// sub-matrix's weights and rows 16-byte aligned (sub-matrices start at whole rows).
bool DeviceOptimizer::Impl::uniform_targets(const Group &gr, const StepArgs &a, bool &bf16) {
  bf16 = a.nslots > 0 && a.wbf16[0];
  for (int i = 0; i < a.nslots; ++i) {
    const size_t es = a.wbf16[i] ? 2 : 4;
    if (a.lr[i] != a.lr[0] || bool(a.wbf16[i]) != bf16 || reinterpret_cast<uintptr_t>(a.w[i]) % 16 != 0 ||
        size_t(gr.muon.cols) * es % 16 != 0)
      return false;
  }
  return a.nslots > 0;
}

// The subset or sliced plans' runs: only the active Muon matrices (a distributed rank's
// blocks), gathered by index from the groups' per-matrix norms, targets and sources.
void DeviceOptimizer::Impl::run_subset_ns(SubsetNs &sub, cudaStream_t s) {
  for (const NsSlice &sl : sub.slices) {
    polar_groups.clear();
    for (size_t k = 0; k < sl.members.size(); ++k) {
      Group &gr = groups[size_t(muon_groups[sl.members[k].first])];
      const symoc::cuda::Batch b(gr.U, sl.counts[k], gr.sub_rows, gr.muon.cols);
      symoc::cuda::PolarGroup pg{b, b, gr.muon.scale};
      pg.in_sumsq = gr.sumsq, pg.targets = gr.targets, pg.index = sl.members[k].second;
      pg.targets_uniform = uniform_targets(gr, args_of(gr), pg.targets_bf16);
      if (fuse == 2) pg.sources = gr.sources, pg.beta = gr.muon.beta, pg.nesterov = gr.muon.nesterov != 0;
      polar_groups.push_back(pg);
    }
    sl.plan->run(polar_groups.data(), polar_groups.size(), symoc::cuda::Workspace{ns_ws, ns_ws_bytes}, s);
  }
}

void DeviceOptimizer::export_to(State &st) const {
  const Impl &m = *impl_;
  DeviceGuard guard(device_);
  check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
  const size_t nb = m.blocks.size(), np = m.params.size();
  std::vector<int64_t> t(nb), skips(np);
  check(cudaMemcpy(t.data(), m.cnt.t, sizeof(int64_t) * nb, cudaMemcpyDeviceToHost), "download");
  check(cudaMemcpy(skips.data(), m.cnt.skips, sizeof(int64_t) * np, cudaMemcpyDeviceToHost), "download");
  if (m.rules) m.rules->export_to(st, t.data(), skips.data());
  for (const Group &gr : m.groups) {
    for (const Slot &sl : gr.slots) {
      const std::string name = m.params[size_t(sl.param)].name, pre = name + "/" + gr.tag + ".";
      if (skips[size_t(sl.param)] > 0) st.counter(name + "/nonfinite_skips") = skips[size_t(sl.param)];
      const int64_t tb = t[size_t(sl.block)];
      if (!gr.ready || tb == 0) continue;
      auto down = [&](const char *what, const float *src, std::initializer_list<int64_t> shape) {
        int64_t n = 1;
        for (int64_t d : shape) n *= d;
        check(cudaMemcpy(st.buffer(pre + what, shape), src, sizeof(float) * size_t(n), cudaMemcpyDeviceToHost),
              "download");
      };
      switch (gr.kind) {
      case Kind::Adam: down("m", sl.s0, {sl.rows, sl.cols}), down("v", sl.s1, {sl.rows, sl.cols}); break;
      case Kind::Sgd:
        if (!sl.s0) continue; // momentum 0: stateless on the CPU too
        down("momentum", sl.s0, {sl.rows, sl.cols});
        break;
      case Kind::AdamMini:
        down("m", sl.s0, {sl.rows, sl.cols}), down("v", sl.s1, {sl.rows / gr.mini.group_rows, 1});
        break;
      case Kind::Muon: down("momentum", sl.s0, {sl.rows, sl.cols}); break;
      case Kind::Matrix:
      case Kind::Host: break;
      }
      st.counter(pre + "t") = tb;
    }
  }
}

void DeviceOptimizer::import_from(const State &cst) {
  Impl &m = *impl_;
  DeviceGuard guard(device_);
  State &st = const_cast<State &>(cst); // buffer() of an existing buffer only looks it up
  check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
  const size_t nb = m.blocks.size(), np = m.params.size();
  std::vector<int64_t> t(nb, 0), skips(np, 0);
  for (Group &gr : m.groups) {
    for (const Slot &sl : gr.slots) {
      const std::string name = m.params[size_t(sl.param)].name, pre = name + "/" + gr.tag + ".";
      skips[size_t(sl.param)] = st.counter_value(name + "/nonfinite_skips");
      const bool present = (gr.kind == Kind::Sgd && gr.sgd.mom == 0.f) ? st.counter_value(pre + "t") > 0
                           : gr.kind == Kind::Sgd || gr.kind == Kind::Muon ? st.has_buffer(pre + "momentum")
                                                                           : st.has_buffer(pre + "m");
      t[size_t(sl.block)] = present ? st.counter_value(pre + "t") : 0;
    }
    bool any = false;
    for (const Slot &sl : gr.slots) any = any || t[size_t(sl.block)] > 0;
    if (!any && !gr.ready) continue;
    m.prepare(gr, nullptr);
    std::vector<uint8_t> loaded(m.blocks.size(), 0);
    for (const Slot &sl : gr.slots) loaded[size_t(sl.block)] = t[size_t(sl.block)] > 0;
    m.ensure_state(gr, &loaded, nullptr);
    for (size_t i = 0; i < gr.slots.size(); ++i)
      if (gr.slot_state[i]) check(cudaMemset(gr.slot_state[i], 0, sizeof(float) * size_t(gr.slot_floats[i])), "cudaMemset");
    for (const Slot &sl : gr.slots) {
      if (t[size_t(sl.block)] == 0) continue;
      const std::string pre = std::string(m.params[size_t(sl.param)].name) + "/" + gr.tag + ".";
      auto up = [&](const char *what, float *dst, std::initializer_list<int64_t> shape) {
        int64_t n = 1;
        for (int64_t d : shape) n *= d;
        const float *src = st.buffer(pre + what, shape); // throws on a shape mismatch
        check(cudaMemcpy(dst, src, sizeof(float) * size_t(n), cudaMemcpyHostToDevice), "upload");
      };
      switch (gr.kind) {
      case Kind::Adam: up("m", sl.s0, {sl.rows, sl.cols}), up("v", sl.s1, {sl.rows, sl.cols}); break;
      case Kind::Sgd:
        if (sl.s0) up("momentum", sl.s0, {sl.rows, sl.cols});
        break;
      case Kind::AdamMini: up("m", sl.s0, {sl.rows, sl.cols}), up("v", sl.s1, {sl.rows / gr.mini.group_rows, 1}); break;
      case Kind::Muon: up("momentum", sl.s0, {sl.rows, sl.cols}); break;
      case Kind::Matrix:
      case Kind::Host: break;
      }
    }
  }
  if (m.rules) {
    m.rules->import_from(st, t.data());
    for (int b : m.matrix_blocks)
      for (int k = 0; k < m.blocks[size_t(b)].nparams; ++k) {
        const int p = m.blocks[size_t(b)].params[k];
        skips[size_t(p)] = st.counter_value(std::string(m.params[size_t(p)].name) + "/nonfinite_skips");
      }
  }
  int64_t zero = 0;
  check(cudaMemcpy(m.cnt.t, t.data(), sizeof(int64_t) * nb, cudaMemcpyHostToDevice), "upload");
  check(cudaMemcpy(m.cnt.skips, skips.data(), sizeof(int64_t) * np, cudaMemcpyHostToDevice), "upload");
  check(cudaMemcpy(m.cnt.total, &zero, sizeof zero, cudaMemcpyHostToDevice), "upload");
  check(cudaMemset(m.cnt.flag, 0, sizeof(int32_t) * nb), "cudaMemset");
  // Legacy-stream memsets and uploads: complete before a step on a non-blocking stream.
  check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
  m.graphs.clear(); // buffers may have been allocated here: capture again
}

void DeviceOptimizer::zero() {
  Impl &m = *impl_;
  DeviceGuard guard(device_);
  check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
  for (Group &gr : m.groups)
    for (size_t i = 0; i < gr.slot_state.size(); ++i)
      if (gr.slot_state[i]) check(cudaMemset(gr.slot_state[i], 0, sizeof(float) * size_t(gr.slot_floats[i])), "cudaMemset");
  if (m.rules) m.rules->zero();
  check(cudaMemset(m.cnt.t, 0, sizeof(int64_t) * m.blocks.size()), "cudaMemset");
  check(cudaMemset(m.cnt.skips, 0, sizeof(int64_t) * m.params.size()), "cudaMemset");
  check(cudaMemset(m.cnt.flag, 0, sizeof(int32_t) * m.blocks.size()), "cudaMemset");
  check(cudaDeviceSynchronize(), "cudaDeviceSynchronize"); // as in import_from
  m.graphs.clear();
}

int64_t DeviceOptimizer::skipped() const {
  DeviceGuard guard(device_);
  check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
  int64_t v = 0;
  check(cudaMemcpy(&v, impl_->cnt.total, sizeof v, cudaMemcpyDeviceToHost), "download");
  return v;
}

int64_t DeviceOptimizer::bytes() const {
  return int64_t(impl_->state_bytes) + (impl_->rules ? impl_->rules->state_bytes() : 0);
}

int DeviceOptimizer::host_blocks() const { return int(impl_->host_blocks.size()); }

bool DeviceOptimizer::holds_param(const char *name) const {
  for (const Group &gr : impl_->groups)
    for (const Slot &sl : gr.slots)
      if (std::strcmp(impl_->params[size_t(sl.param)].name, name) == 0) return true;
  if (impl_->rules)
    for (size_t p = 0; p < impl_->params.size(); ++p)
      if (std::strcmp(impl_->params[p].name, name) == 0 && impl_->rules->holds_param(int(p))) return true;
  return false;
}

} // namespace symoc::rt::cuda
