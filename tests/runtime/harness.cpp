// symoc_rt_harness: runs one runtime rule on raw float32 files, for the Python comparisons
// against torch and the shared reference.
//
//   symoc_rt_harness RULE ROWS COLS STEPS IN OUT [key=value ...]
//
// IN holds W0 then STEPS gradients (ROWS*COLS float32 each, row-major). OUT receives, per
// step, the weights after the step (mode=weights, default) or the step's direction
// (mode=direction). RULE: sgd adam adamw adam_mini muon shampoo lausu:<kind>
// symo:<left>x<right> polar:<eig|ns|pe>. reload_at=K: before step K (0-based) the state is
// saved to OUT.state and replaced by what State::load reads back.
#include "symoc/runtime/runtime.h"

#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>

using namespace symoc::rt;

namespace {
std::map<std::string, std::string> opts;
double num(const std::string &k, double dflt) {
  auto it = opts.find(k);
  return it == opts.end() ? dflt : std::stod(it->second);
}
std::string str(const std::string &k, const std::string &dflt) {
  auto it = opts.find(k);
  return it == opts.end() ? dflt : it->second;
}
PolarMethod polar_method(const std::string &s) {
  if (s == "eig") return PolarMethod::Eig;
  if (s == "ns") return PolarMethod::NewtonSchulz;
  if (s == "pe") return PolarMethod::PolarExpress;
  throw Error("unknown polar method '" + s + "'");
}
LauSuKind lausu_kind(const std::string &s) {
  for (LauSuKind k : {LauSuKind::Polar, LauSuKind::Row, LauSuKind::Col, LauSuKind::CenteredRow, LauSuKind::Hybrid,
                      LauSuKind::OneSidedSpectral, LauSuKind::LeftSpectralCentered})
    if (s == to_string(k)) return k;
  throw Error("unknown Lau-Su kind '" + s + "'");
}

std::shared_ptr<Rule> make_rule(const std::string &spec) {
  if (spec == "sgd") {
    SGDConfig c;
    c.momentum = float(num("momentum", 0)), c.dampening = float(num("dampening", 0));
    c.weight_decay = float(num("wd", 0)), c.nesterov = num("nesterov", 0) != 0;
    return std::make_shared<SGD>(c);
  }
  if (spec == "adam" || spec == "adamw") {
    AdamConfig c;
    c.beta1 = float(num("beta1", 0.9)), c.beta2 = float(num("beta2", 0.999)), c.eps = float(num("eps", 1e-8));
    c.weight_decay = float(num("wd", 0)), c.decoupled = spec == "adamw";
    return std::make_shared<Adam>(c);
  }
  if (spec == "adam_mini") {
    AdamMiniConfig c;
    c.beta1 = float(num("beta1", 0.9)), c.beta2 = float(num("beta2", 0.999)), c.eps = float(num("eps", 1e-8));
    c.weight_decay = float(num("wd", 0)), c.group_rows = int64_t(num("group_rows", 1));
    return std::make_shared<AdamMini>(c);
  }
  if (spec == "muon") {
    MuonConfig c;
    c.beta = float(num("beta", 0.95)), c.weight_decay = float(num("wd", 0)), c.nesterov = num("nesterov", 1) != 0;
    c.polar = polar_options(polar_method(str("method", "ns")));
    c.polar.ns_steps = int(num("ns_steps", 5));
    c.norm_beta2 = float(num("norm_beta2", 0)), c.norm_axis = int(num("norm_axis", 0));
    c.norm_eps = float(num("norm_eps", 1e-10));
    return std::make_shared<Muon>(c);
  }
  if (spec == "shampoo") {
    ShampooConfig c;
    c.eps = float(num("eps", 1e-12)), c.exponent = int(num("exponent", 4));
    c.precondition_frequency = int(num("freq", 1)), c.weight_decay = float(num("wd", 0));
    c.root = str("root", "eig") == "newton" ? RootMethod::CoupledNewton : RootMethod::Eig;
    c.fn.rcond = num("rcond", 1e-12);
    return std::make_shared<Shampoo>(c);
  }
  if (spec.rfind("lausu:", 0) == 0) {
    LauSuConfig c;
    c.beta = float(num("beta", 0.95)), c.eps = float(num("eps", 1e-8)), c.weight_decay = float(num("wd", 0));
    c.polar.polar_rcond = num("rcond", 1e-12);
    c.polar.fn.rcond = num("rcond", 1e-12);
    return std::make_shared<LauSu>(lausu_kind(spec.substr(6)), c);
  }
  if (spec.rfind("symo:", 0) == 0) {
    auto x = spec.find('x', 5);
    if (x == std::string::npos) throw Error("symo spec must be symo:<left>x<right>");
    SymoConfig c;
    c.left = parse_group(spec.substr(5, x - 5)), c.right = parse_group(spec.substr(x + 1));
    c.eps = float(num("eps", 0)), c.beta2 = float(num("beta2", 0.95));
    c.fn.rcond = num("rcond", 1e-7);
    return std::make_shared<Symo>(c);
  }
  throw Error("unknown rule '" + spec + "'");
}
} // namespace

int main(int argc, char **argv) {
  if (argc < 7) {
    std::cerr << "usage: symoc_rt_harness RULE ROWS COLS STEPS IN OUT [key=value ...]\n";
    return 2;
  }
  try {
    const std::string spec = argv[1], in = argv[5], outp = argv[6];
    const int64_t m = std::stoll(argv[2]), n = std::stoll(argv[3]), steps = std::stoll(argv[4]);
    for (int i = 7; i < argc; ++i) {
      std::string kv = argv[i];
      auto eq = kv.find('=');
      if (eq == std::string::npos) throw Error(std::string("bad option '") + argv[i] + "' (expected key=value)");
      opts[kv.substr(0, eq)] = kv.substr(eq + 1);
    }
    const size_t sz = size_t(m * n);
    std::vector<float> data(sz * size_t(steps + 1));
    std::ifstream f(in, std::ios::binary);
    if (!f) throw Error(in + ": cannot open");
    f.read(reinterpret_cast<char *>(data.data()), std::streamsize(data.size() * sizeof(float)));
    if (size_t(f.gcount()) != data.size() * sizeof(float)) throw Error(in + ": expected " + std::to_string(data.size()) + " floats");
    std::vector<float> W(data.begin(), data.begin() + long(sz)), out, D(sz);
    Context ctx(ContextOptions{Device::CPU, int(num("threads", 0))});
    State st;
    const float lr = float(num("lr", 1e-2));
    const bool dir_mode = str("mode", "weights") == "direction";
    std::shared_ptr<Rule> rule;
    const bool polar_only = spec.rfind("polar:", 0) == 0;
    if (!polar_only) rule = make_rule(spec);
    const int64_t reload_at = int64_t(num("reload_at", -1));
    for (int64_t t = 0; t < steps; ++t) {
      if (t == reload_at) {
        st.save(outp + ".state");
        st = State::load(outp + ".state", "");
      }
      const float *G = data.data() + size_t(t + 1) * sz;
      if (polar_only) {
        PolarOptions o = polar_options(polar_method(spec.substr(6)));
        polar(ctx, MatView(const_cast<float *>(G), m, n), MatView(D.data(), m, n), o);
        out.insert(out.end(), D.begin(), D.end());
        continue;
      }
      Param p{"w", W.data(), G, m, n};
      if (dir_mode) {
        float *dp = D.data();
        rule->directions(ctx, st, &p, 1, &dp);
        out.insert(out.end(), D.begin(), D.end());
      } else {
        rule->step(ctx, st, p, lr);
        out.insert(out.end(), W.begin(), W.end());
      }
    }
    std::ofstream o(outp, std::ios::binary | std::ios::trunc);
    if (!o) throw Error(outp + ": cannot open for writing");
    o.write(reinterpret_cast<const char *>(out.data()), std::streamsize(out.size() * sizeof(float)));
    return 0;
  } catch (const std::exception &e) {
    std::cerr << "symoc_rt_harness: " << e.what() << "\n";
    return 1;
  }
}
