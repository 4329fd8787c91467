// Workspace (no allocation after the first call), state file (round trip, corruption,
// version, fingerprint, shape mismatch), bit-exact resume and non-finite gradients, for
// every rule of the runtime.
#include "test_util.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <gtest/gtest.h>
#include <new>

// Count every heap allocation of the process, to check that steps after the first allocate
// nothing at all (not just nothing from the workspace).
static std::atomic<long> g_news{0};
void *operator new(size_t n) {
  ++g_news;
  if (void *p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void operator delete(void *p) noexcept { std::free(p); }
void operator delete(void *p, size_t) noexcept { std::free(p); }

using namespace symoc::rt;
using namespace symoc::rt::test;

namespace {

struct Scenario {
  std::string name;
  std::function<std::shared_ptr<Rule>()> make;
  std::vector<std::pair<int64_t, int64_t>> shapes; // one per param of a call
};

std::vector<Scenario> scenarios() {
  std::vector<Scenario> s;
  auto one = [&](std::string n, std::function<std::shared_ptr<Rule>()> f, int64_t r = 12, int64_t c = 8) {
    s.push_back({n, f, {{r, c}}});
  };
  one("sgd", [] { SGDConfig c; c.momentum = 0.9f; c.nesterov = true; c.weight_decay = 1e-2f; return std::make_shared<SGD>(c); });
  one("adam", [] { AdamConfig c; c.weight_decay = 1e-2f; return std::make_shared<Adam>(c); });
  one("adamw", [] { return std::make_shared<Adam>(adamw_config()); });
  one("adam_mini", [] { AdamMiniConfig c; c.group_rows = 4; return std::make_shared<AdamMini>(c); });
  one("muon_ns", [] { return std::make_shared<Muon>(); });
  one("muon_pe", [] { MuonConfig c; c.polar = polar_options(PolarMethod::PolarExpress); c.head_rows = 4; return std::make_shared<Muon>(c); });
  one("shampoo", [] { ShampooConfig c; c.precondition_frequency = 2; c.eps = 1e-4f; return std::make_shared<Shampoo>(c); });
  one("shampoo_newton", [] { ShampooConfig c; c.root = RootMethod::CoupledNewton; c.eps = 1e-4f; return std::make_shared<Shampoo>(c); });
  for (LauSuKind k : {LauSuKind::Polar, LauSuKind::Row, LauSuKind::Col, LauSuKind::CenteredRow, LauSuKind::Hybrid,
                      LauSuKind::OneSidedSpectral, LauSuKind::LeftSpectralCentered})
    one(std::string("lausu_") + to_string(k), [k] { return std::make_shared<LauSu>(k); });
  const Group gs[] = {Group::Trivial, Group::Z2, Group::S, Group::B};
  for (Group l : gs)
    for (Group r : gs) {
      if (l == Group::Trivial && r == Group::Trivial) continue;
      one(std::string("symo_") + to_string(l) + "x" + to_string(r), [l, r] {
        SymoConfig c; c.left = l; c.right = r; c.beta1 = 0.9f; return std::make_shared<Symo>(c);
      });
    }
  one("symo_1x1", [] { return std::make_shared<Symo>(SymoConfig{}); }, 4, 5);
  s.push_back({"symo_coupled", [] { return std::make_shared<SymoCoupled>(Group::B, std::vector<CoupledMember>{{0, 0}, {1, 1}}, SymoConfig{}); },
               {{10, 6}, {5, 10}}});
  s.push_back({"gauge_relu_adam", [] {
                 return std::make_shared<GaugeProjected>(std::make_shared<Adam>(),
                     std::vector<GaugeSpec>{{GaugeKind::ReluRescale, 0, 1, 2}});
               }, {{10, 6}, {10, 1}, {5, 10}}});
  s.push_back({"gauge_qk_muon", [] {
                 GaugeSpec g{GaugeKind::HeadRotationQK, 0, 1};
                 g.heads = 2;
                 return std::make_shared<GaugeProjected>(std::make_shared<Muon>(), std::vector<GaugeSpec>{g});
               }, {{8, 6}, {8, 6}}});
  return s;
}

const char *kNames[] = {"p0", "p1", "p2", "p3"}; // short: std::string keys stay in SSO

struct Trajectory {
  std::vector<std::vector<float>> W;
  std::vector<std::vector<std::vector<float>>> G; // [step][param]
};

Trajectory make_run(const Scenario &s, int steps, unsigned seed) {
  std::mt19937 rng(seed);
  Trajectory r;
  for (auto &sh : s.shapes) r.W.push_back(randn(rng, size_t(sh.first * sh.second)));
  for (int t = 0; t < steps; ++t) {
    r.G.emplace_back();
    for (auto &sh : s.shapes) r.G.back().push_back(randn(rng, size_t(sh.first * sh.second)));
  }
  return r;
}

void do_step(Context &ctx, State &st, Rule &rule, const Scenario &s, Trajectory &r, int t, float lr = 0.05f) {
  Param ps[4];
  for (size_t i = 0; i < s.shapes.size(); ++i)
    ps[i] = Param{kNames[i], r.W[i].data(), r.G[size_t(t)][i].data(), s.shapes[i].first, s.shapes[i].second};
  rule.step(ctx, st, ps, s.shapes.size(), lr);
}

std::string tmp_path(const std::string &tag) {
  const char *d = std::getenv("TMPDIR");
  return std::string(d ? d : "/tmp") + "/symoc_rt_" + tag + "_" + std::to_string(::getpid()) + ".state";
}

} // namespace

TEST(Workspace, NoAllocationAfterFirstStep) {
  for (auto &s : scenarios()) {
    Context ctx;
    State st("fp");
    auto rule = s.make();
    Trajectory r = make_run(s, 5, 1);
    do_step(ctx, st, *rule, s, r, 0);
    do_step(ctx, st, *rule, s, r, 1); // Shampoo's root refresh happens on odd steps too
    const size_t ws = ctx.workspace().allocation_count(), sa = st.allocation_count();
    const long heap = g_news.load();
    for (int t = 2; t < 5; ++t) do_step(ctx, st, *rule, s, r, t);
    EXPECT_EQ(ctx.workspace().allocation_count(), ws) << s.name;
    EXPECT_EQ(st.allocation_count(), sa) << s.name;
    EXPECT_EQ(g_news.load(), heap) << s.name << ": heap allocations in steps after the first";
    EXPECT_GT(ws, 0u) << s.name << ": the first step should have sized the workspace";
  }
}

TEST(Workspace, FramesNestAndReuseTheArena) {
  Workspace ws;
  {
    Workspace::Frame a(ws);
    float *x = a.floats(100);
    {
      Workspace::Frame b(ws);
      float *y = b.floats(1000);
      EXPECT_NE(x, y);
      y[999] = 1.f;
    }
    x[99] = 2.f;
  }
  const size_t n = ws.allocation_count();
  for (int k = 0; k < 3; ++k) {
    Workspace::Frame a(ws);
    a.floats(100);
    Workspace::Frame b(ws);
    b.floats(1000);
  }
  EXPECT_EQ(ws.allocation_count(), n);
  EXPECT_GE(ws.capacity_bytes(), 1100 * sizeof(float));
}

TEST(State, ResumeIsBitExactForEveryRule) {
  for (auto &s : scenarios()) {
    const int T = 6, cut = 3;
    Trajectory a = make_run(s, T, 2), b = make_run(s, T, 2);
    {
      Context ctx;
      State st("model+plan");
      auto rule = s.make();
      for (int t = 0; t < T; ++t) do_step(ctx, st, *rule, s, a, t);
    }
    const std::string path = tmp_path(s.name);
    {
      Context ctx;
      State st("model+plan");
      auto rule = s.make();
      for (int t = 0; t < cut; ++t) do_step(ctx, st, *rule, s, b, t);
      st.save(path);
    }
    {
      Context ctx;
      State st = State::load(path, "model+plan");
      auto rule = s.make();
      for (int t = cut; t < T; ++t) do_step(ctx, st, *rule, s, b, t);
    }
    std::remove(path.c_str());
    for (size_t i = 0; i < a.W.size(); ++i)
      EXPECT_EQ(std::memcmp(a.W[i].data(), b.W[i].data(), a.W[i].size() * sizeof(float)), 0) << s.name << " param " << i;
  }
}

namespace {
std::vector<unsigned char> slurp(const std::string &p) {
  std::ifstream f(p, std::ios::binary);
  return std::vector<unsigned char>((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}
void spit(const std::string &p, const std::vector<unsigned char> &b) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char *>(b.data()), std::streamsize(b.size()));
}
std::string load_error(const std::string &path, const std::string &fp) {
  try {
    State::load(path, fp);
  } catch (const Error &e) {
    return e.what();
  }
  return "";
}
} // namespace

TEST(State, FileFormatErrorsAreClear) {
  State st("fp-A");
  float *x = st.buffer("w/adam.m", {3, 2});
  for (int i = 0; i < 6; ++i) x[i] = float(i) + 0.5f;
  st.counter("w/adam.t") = 7;
  const std::string path = tmp_path("format");
  st.save(path);

  State back = State::load(path, "fp-A");
  EXPECT_EQ(back.fingerprint(), "fp-A");
  EXPECT_EQ(back.shape("w/adam.m"), (std::vector<int64_t>{3, 2}));
  EXPECT_EQ(std::memcmp(back.data("w/adam.m"), x, 6 * sizeof(float)), 0);
  EXPECT_EQ(back.counter_value("w/adam.t"), 7);

  auto bytes = slurp(path);
  EXPECT_EQ(std::memcmp(bytes.data(), kStateMagic, 8), 0);
  uint32_t crc;
  std::memcpy(&crc, bytes.data() + bytes.size() - 4, 4);
  EXPECT_EQ(crc, crc32(bytes.data(), bytes.size() - 4));
  EXPECT_EQ(crc32("123456789", 9), 0xCBF43926u); // the CRC-32 check value

  EXPECT_NE(load_error(path, "fp-B").find("written for model/plan 'fp-A'"), std::string::npos);

  auto bad = bytes;
  bad[bad.size() / 2] ^= 0x40;
  spit(path, bad);
  EXPECT_NE(load_error(path, "fp-A").find("checksum mismatch"), std::string::npos) << load_error(path, "fp-A");

  bad = bytes;
  bad[8] = 99; // version field, checksum recomputed so the version check is what fires
  crc = crc32(bad.data(), bad.size() - 4);
  std::memcpy(bad.data() + bad.size() - 4, &crc, 4);
  spit(path, bad);
  EXPECT_NE(load_error(path, "fp-A").find("version 99"), std::string::npos) << load_error(path, "fp-A");

  spit(path, std::vector<unsigned char>(bytes.begin(), bytes.begin() + 20));
  EXPECT_NE(load_error(path, "fp-A").find(path), std::string::npos);
  bad = bytes;
  bad[0] = 'X';
  spit(path, bad);
  EXPECT_NE(load_error(path, "fp-A").find("bad magic"), std::string::npos);
  std::remove(path.c_str());
  EXPECT_NE(load_error(path, "fp-A").find("cannot open"), std::string::npos);
}

TEST(State, StateOfAnotherModelGivesAClearError) {
  // Same parameter name, different shape (no fingerprint given on load).
  const std::string path = tmp_path("other");
  {
    State st;
    Context ctx;
    Adam rule;
    std::vector<float> W(12, 1.f), G(12, 0.5f);
    rule.step(ctx, st, Param{"fc1.weight", W.data(), G.data(), 3, 4}, 0.1f);
    st.save(path);
  }
  State st = State::load(path, "");
  Context ctx;
  Adam rule;
  std::vector<float> W(20, 1.f), G(20, 0.5f);
  try {
    rule.step(ctx, st, Param{"fc1.weight", W.data(), G.data(), 4, 5}, 0.1f);
    FAIL() << "expected a shape error";
  } catch (const Error &e) {
    EXPECT_NE(std::string(e.what()).find("'fc1.weight/adam.m' has shape 3x4 but the step needs 4x5"), std::string::npos)
        << e.what();
  }
  std::remove(path.c_str());
}

TEST(NonFinite, SkipLeavesWeightsAndStateUntouchedAndCounts) {
  for (auto &s : scenarios()) {
    Context ctx;
    State st;
    auto rule = s.make();
    Trajectory r = make_run(s, 3, 3);
    do_step(ctx, st, *rule, s, r, 0);
    r.G[1][0][3] = std::numeric_limits<float>::quiet_NaN();
    if (s.shapes.size() > 1) r.G[1][1][0] = std::numeric_limits<float>::infinity();
    auto W = r.W;
    std::vector<std::vector<float>> before;
    for (auto &n : st.buffer_names()) {
      const float *d = st.data(n);
      int64_t sz = 1;
      for (auto x : st.shape(n)) sz *= x;
      before.emplace_back(d, d + sz);
    }
    do_step(ctx, st, *rule, s, r, 1);
    EXPECT_EQ(W, r.W) << s.name;
    size_t k = 0;
    for (auto &n : st.buffer_names()) {
      const float *d = st.data(n);
      EXPECT_EQ(std::memcmp(d, before[k].data(), before[k].size() * sizeof(float)), 0) << s.name << " " << n;
      ++k;
    }
    EXPECT_EQ(st.counter_value("p0/nonfinite_skips"), 1) << s.name;
    EXPECT_GE(ctx.stats().skipped_nonfinite, 1) << s.name;
    do_step(ctx, st, *rule, s, r, 2); // and training goes on
    for (auto &w : r.W) EXPECT_TRUE(finite(w)) << s.name;
  }
}

TEST(NonFinite, ZeroAndThrowPolicies) {
  Context ctx;
  State st;
  Adam rule;
  std::vector<float> W(6, 1.f), G = {1.f, std::numeric_limits<float>::quiet_NaN(), 1.f, 1.f, 1.f, 1.f};
  rule.nonfinite = NonFinitePolicy::Zero;
  rule.step(ctx, st, Param{"w", W.data(), G.data(), 2, 3}, 0.1f);
  EXPECT_TRUE(finite(W));
  EXPECT_EQ(W[1], 1.f);  // zero gradient entry: no Adam move
  EXPECT_LT(W[0], 1.f);
  EXPECT_EQ(ctx.stats().zeroed_nonfinite, 1);
  for (int k = 0; k < st.shape("w/adam.v")[0] * 3; ++k) EXPECT_TRUE(std::isfinite(st.data("w/adam.v")[k]));
  rule.nonfinite = NonFinitePolicy::Throw;
  try {
    rule.step(ctx, st, Param{"w", W.data(), G.data(), 2, 3}, 0.1f);
    FAIL();
  } catch (const Error &e) {
    EXPECT_NE(std::string(e.what()).find("'w'"), std::string::npos);
  }
}

// One call on a batch of same-shape blocks equals one call per block (bitwise), and the
// blocks keep separate state.
TEST(Batch, BatchedCallEqualsSeparateCalls) {
  for (auto &s : scenarios()) {
    if (s.shapes.size() != 1) continue;
    const int64_t m = s.shapes[0].first, n = s.shapes[0].second;
    std::mt19937 rng(4);
    std::vector<std::vector<float>> Wa, Wb, G;
    for (int k = 0; k < 3; ++k) {
      Wa.push_back(randn(rng, size_t(m * n)));
      G.push_back(randn(rng, size_t(m * n)));
    }
    Wb = Wa;
    Context ctx;
    State sa, sb;
    auto ra = s.make(), rb = s.make();
    for (int t = 0; t < 2; ++t) {
      Param ps[3];
      for (int k = 0; k < 3; ++k) ps[k] = Param{kNames[k], Wa[size_t(k)].data(), G[size_t(k)].data(), m, n};
      ra->step(ctx, sa, ps, 3, 0.05f);
      for (int k = 0; k < 3; ++k) rb->step(ctx, sb, Param{kNames[k], Wb[size_t(k)].data(), G[size_t(k)].data(), m, n}, 0.05f);
    }
    EXPECT_EQ(Wa, Wb) << s.name;
    EXPECT_EQ(sa.buffer_names(), sb.buffer_names()) << s.name;
  }
}

TEST(Muon, ScaleRules) {
  const int64_t m = 12, n = 3;
  std::mt19937 rng(5);
  auto G = randn(rng, size_t(m * n));
  auto run = [&](MuonScale sc) {
    MuonConfig c;
    c.scale = sc;
    Muon rule(c);
    Context ctx;
    State st;
    std::vector<float> W(G.size());
    return direction(ctx, st, rule, "w", W, G, m, n);
  };
  auto none = run(MuonScale::None), ratio = run(MuonScale::MaxRatio), moon = run(MuonScale::Moonlight);
  for (size_t k = 0; k < G.size(); ++k) {
    EXPECT_NEAR(ratio[k], none[k] * 2.0f, 1e-6); // sqrt(12 / 3)
    EXPECT_NEAR(moon[k], none[k] * 0.2f * std::sqrt(12.f), 1e-6);
  }
}
