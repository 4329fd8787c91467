//===- EmitCpp.cpp - C++ optimizer source from a plan ---------------------===//
//
// The generated code only passes a Context, a State, Param descriptors and rule
// configurations to the runtime. Readable names: the parameter enum and the comments
// carry the initializer names; rule objects are named after their rule and groups.
//
//===----------------------------------------------------------------------===//

#include "symoc/Emit/EmitCpp.h"
#include "symoc/ModelIO/ModelIO.h"

#include <fmt/core.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

namespace symoc::emit {

using plan::Param;
using plan::Plan;
using plan::Step;
using plan::Unit;

namespace {

std::string floatLit(double v) {
  std::string s = fmt::format("{}", float(v));
  if (s.find_first_of(".en") == std::string::npos) s += ".0";
  return s + "f";
}

std::string strLit(const std::string &s) {
  std::string r = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') r += '\\', r += char(c);
    else if (c == '\n') r += "\\n";
    else if (c < 32 || c >= 127) r += fmt::format("\\{:03o}", c);
    else r += char(c);
  }
  return r + "\"";
}

/// A long string as adjacent literals, 100 characters per line.
std::string longLit(const std::string &s, const std::string &indent) {
  std::string r;
  for (size_t i = 0; i < s.size(); i += 100) r += (i ? "\n" + indent : "") + strLit(s.substr(i, 100));
  return r.empty() ? "\"\"" : r;
}

/// Comments must not be closed, continued or ended by a name: every control byte goes (a
/// carriage return ends a // comment for the compiler, so the rest of an ONNX name became
/// code that ran when the library loaded; a session-35 audit).
std::string commentSafe(std::string s) {
  for (size_t p; (p = s.find("*/")) != std::string::npos;) s.replace(p, 2, "* /");
  for (auto &c : s)
    if (c == '\\' || (unsigned char)c < 32 || c == 127) c = '_';
  return s;
}

std::string groupEnum(const std::string &g) {
  if (g == "Z2") return "Group::Z2";
  if (g == "S") return "Group::S";
  if (g == "B") return "Group::B";
  if (g == "O") return "Group::O";
  return "Group::Trivial";
}

std::string lausuEnum(const std::string &k) {
  static const std::map<std::string, std::string> m = {
      {"polar", "Polar"}, {"row", "Row"}, {"col", "Col"}, {"centered_row", "CenteredRow"}, {"hybrid", "Hybrid"},
      {"one_sided_spectral", "OneSidedSpectral"}, {"left_spectral_centered", "LeftSpectralCentered"}};
  return "LauSuKind::" + m.at(k);
}

std::string gaugeEnum(const std::string &k) {
  if (k == "logit_shift") return "GaugeKind::LogitShift";
  if (k == "swiglu_rescale") return "GaugeKind::SwiGLURescale";
  if (k == "row_rescale") return "GaugeKind::RowScale";
  return "GaugeKind::ReluRescale";
}

/// Statements that build the rule of `s` into a std::unique_ptr<Rule> / shared_ptr.
std::string ruleExpr(const Step &s, const Unit &u, bool shared) {
  std::ostringstream o;
  const char *mk = shared ? "std::make_shared" : "std::make_unique";
  auto f = [&](const char *k, double d) { return floatLit(s.get(k, d)); };
  if (s.kind == "adamw" || s.kind == "adam") {
    o << "AdamConfig c;\nc.beta1 = " << f("beta1", 0.9) << ";\nc.beta2 = " << f("beta2", 0.999)
      << ";\nc.eps = " << f("eps", 1e-8) << ";\nc.weight_decay = " << f("weight_decay", 0)
      << ";\nc.decoupled = " << (s.kind == "adamw" ? "true" : "false") << ";\nreturn " << mk << "<Adam>(c);";
  } else if (s.kind == "sgd") {
    o << "SGDConfig c;\nc.momentum = " << f("momentum", 0.9) << ";\nc.dampening = " << f("dampening", 0)
      << ";\nc.weight_decay = " << f("weight_decay", 0) << ";\nc.nesterov = "
      << (s.get("nesterov", 0) != 0 ? "true" : "false") << ";\nreturn " << mk << "<SGD>(c);";
  } else if (s.kind == "adam_mini") {
    o << "AdamMiniConfig c;\nc.beta1 = " << f("beta1", 0.9) << ";\nc.beta2 = " << f("beta2", 0.999)
      << ";\nc.eps = " << f("eps", 1e-8) << ";\nc.weight_decay = " << f("weight_decay", 0)
      << ";\nc.group_rows = " << int64_t(s.get("group_rows", 1)) << ";\nreturn " << mk << "<AdamMini>(c);";
  } else if (s.kind == "muon") {
    o << "MuonConfig c;\nc.beta = " << f("beta", 0.95) << ";\nc.weight_decay = " << f("weight_decay", 0)
      << ";\nc.nesterov = " << (s.get("nesterov", 1) != 0 ? "true" : "false") << ";\n";
    if (s.get("norm_beta2", 0) > 0) // NorMuon's per-line normalization on the axis the claims allow
      o << "c.norm_beta2 = " << f("norm_beta2", 0) << ";\nc.norm_axis = " << int(s.get("norm_axis", 0))
        << ";\nc.norm_eps = " << f("norm_eps", 1e-10) << ";\n";
    o << "return " << mk << "<Muon>(c);";
  } else if (s.kind == "shampoo") {
    o << "ShampooConfig c;\nc.eps = " << f("eps", 1e-6) << ";\nc.beta2 = " << f("beta2", 1)
      << ";\nc.weight_decay = " << f("weight_decay", 0) << ";\nc.exponent = " << int(s.get("exponent", 4))
      << ";\nc.precondition_frequency = " << int(s.get("precondition_frequency", 1))
      << ";\nc.max_precond_dim = " << int64_t(s.get("max_precond_dim", 8192)) << ";\nreturn " << mk
      << "<Shampoo>(c);";
  } else if (s.kind == "lausu") {
    o << "LauSuConfig c;\nc.beta = " << f("beta", 0.95) << ";\nc.eps = " << f("eps", 1e-8)
      << ";\nc.nesterov = " << (s.get("nesterov", 0) != 0 ? "true" : "false") << ";\nc.weight_decay = "
      << f("weight_decay", 0) << ";\nreturn " << mk << "<LauSu>(" << lausuEnum(s.lausu) << ", c);";
  } else if (s.kind == "symo" || s.kind == "symo_coupled") {
    o << "SymoConfig c;\n";
    if (s.kind == "symo" && s.leftPieces.empty() && s.rightPieces.empty())
      o << "c.left = " << groupEnum(s.left) << ";\nc.right = " << groupEnum(s.right) << ";\n";
    // Pieces: {offset, extent, group, parts}; each run its own component (block-diagonal).
    auto pieces = [&](const char *side, const std::vector<plan::PieceGroup> &v) {
      if (v.empty()) return;
      o << "c." << side << "_pieces = {";
      for (size_t k = 0; k < v.size(); ++k)
        o << (k ? ", " : "") << "{" << v[k].offset << ", " << v[k].extent << ", " << groupEnum(v[k].group) << ", "
          << v[k].parts << "}";
      o << "};\n";
    };
    pieces("left", s.leftPieces);
    pieces("right", s.rightPieces);
    if (s.get("muon_momentum", 0) != 0)
      o << "c.muon_momentum = true;\nc.nesterov = " << (s.get("nesterov", 0) != 0 ? "true" : "false") << ";\n";
    if (s.get("muon_scale", 0) != 0) o << "c.muon_scale = true;\n";
    if (s.get("ns_steps", 0) != 0) o << "c.ns_steps = " << int(s.get("ns_steps", 0)) << ";\n";
    o << "c.beta1 = " << f("beta1", 0) << ";\nc.beta2 = " << f("beta2", 0.95) << ";\nc.eps = "
      << f("eps", 1e-8) << ";\nc.weight_decay = " << f("weight_decay", 0) << ";\nc.max_dense = "
      << int64_t(s.get("max_dense", 4096)) << ";\n";
    if (s.kind == "symo") {
      o << "return " << mk << "<Symo>(c);";
    } else {
      o << "std::vector<CoupledMember> members = {";
      for (size_t k = 0; k < u.params.size(); ++k) o << (k ? ", " : "") << "{" << k << ", " << u.axes[k] << "}";
      o << "};\nreturn " << mk << "<SymoCoupled>(" << groupEnum(s.left) << ", members, c);";
    }
  } else {
    throw Error("emit: unknown step kind '" + s.kind + "'");
  }
  return o.str();
}

/// Prefixes every line of `text` with `pad`.
std::string indent(const std::string &text, const std::string &pad) {
  std::string r = pad;
  for (char c : text) {
    r += c;
    if (c == '\n') r += pad;
  }
  return r;
}

struct Call {
  std::vector<int> params; // plan parameter indices, in call order
  int rule = -1;           // index into rules
  std::string comment;
};

struct RuleObj {
  std::string name, body, describe;
  std::vector<std::string> users;
};

/// A block's relative step cost for load balancing (ABI block_cost): the plan's FLOP
/// estimate plus the bytes one step moves (weights and gradients read, weights written, every
/// state float read and written once), as in bench/policy's roofline.
double blockCost(const Plan &plan, const Unit &u) {
  double numel = 0;
  for (int p : u.params) numel += double(plan.params[size_t(p)].numel());
  return u.flops + 3.0 * 4.0 * numel + 2.0 * double(u.stateBytes);
}

/// The ABI's blocks are the plan's units, in plan order: parameter lists (CSR) and costs.
void emitBlockTables(std::ostream &s, const Plan &plan) {
  s << "// ---- blocks (ABI v2): the plan's units; cost = FLOPs + bytes moved per step ----\n"
    << "constexpr int kNumBlocks = " << plan.units.size() << ";\n"
    << "const int32_t kBlockStart[kNumBlocks + 1] = {";
  size_t at = 0;
  for (size_t b = 0; b <= plan.units.size(); ++b) {
    s << (b ? (b % 16 ? ", " : ",\n    ") : "") << at;
    if (b < plan.units.size()) at += plan.units[b].params.size();
  }
  s << "};\nconst int32_t kBlockParams[" << std::max<size_t>(at, 1) << "] = {";
  size_t k = 0;
  for (const Unit &u : plan.units)
    for (int p : u.params) s << (k ? (k % 16 ? ", " : ",\n    ") : "") << p, ++k;
  if (!k) s << "0";
  s << "};\nconst double kBlockCost[" << std::max<size_t>(plan.units.size(), 1) << "] = {";
  for (size_t b = 0; b < plan.units.size(); ++b)
    s << (b ? (b % 6 ? ", " : ",\n    ") : "") << fmt::format("{:.17g}", blockCost(plan, plan.units[b]));
  if (plan.units.empty()) s << "0";
  s << "};\n\n";
}

/// The plan's blocks (units) as data for the CUDA backend (symoc/cuda/device_optimizer.h):
/// rule kind, hyper-parameters and parameter indices, one entry per unit; the device
/// optimizer groups and batches them itself. Only compiled with SYMOC_WITH_CUDA.
std::string emitBlockTable(const Plan &plan) {
  std::ostringstream o, hps, rows, gauges, pieces, axes;
  size_t np = 0, nh = 0, maxp = 1, ng = 0, npc = 0, nax = 0;
  for (size_t b = 0; b < plan.units.size(); ++b) {
    const Unit &u = plan.units[b];
    const Step &st = u.step;
    std::string variant = st.kind == "lausu" ? st.lausu : st.kind == "symo" ? st.left + " x " + st.right
                          : st.kind == "symo_coupled"                    ? st.left
                                                                         : "";
    // Gauges and Symo pieces as data too, so the device can run them (one table each).
    const size_t g0 = ng, l0 = npc, a0 = nax;
    for (int a : u.axes) axes << (nax ? ", " : "") << a, ++nax;
    for (const plan::Gauge &g : st.gauges)
      gauges << "    {" << strLit(g.kind) << ", " << g.a << ", " << g.b << ", " << g.c << "},\n", ++ng;
    for (const auto *side : {&st.leftPieces, &st.rightPieces})
      for (const plan::PieceGroup &pg : *side)
        pieces << "    {" << pg.offset << ", " << pg.extent << ", " << strLit(pg.group) << ", " << pg.parts << "},\n", ++npc;
    rows << "    {" << strLit(st.kind) << ", " << strLit(variant) << ", kBlockHp + " << nh << ", " << st.hp.size()
         << ", kBlockParams + " << np << ", " << u.params.size() << ", " << st.gauges.size() << ", kBlockGauges + " << g0
         << ", kBlockPieces + " << l0 << ", " << st.leftPieces.size() << ", kBlockPieces + "
         << l0 + st.leftPieces.size() << ", " << st.rightPieces.size() << ", kBlockAxes + " << a0 << "}, // "
         << commentSafe(plan.params[size_t(u.params[0])].name) << "\n";
    np += u.params.size();
    for (const auto &[k, v] : st.hp) hps << "    {" << strLit(k) << ", " << fmt::format("{}", v) << "},\n", ++nh;
    maxp = std::max(maxp, u.params.size());
  }
  o << "#ifdef SYMOC_WITH_CUDA\n#include \"symoc/cuda/device_optimizer.h\"\n\nnamespace {\n\n"
    << "// The plan's blocks for the CUDA backend: rule, hyper-parameters, parameters (one per unit).\n"
    // kNumBlocks and kBlockParams are the ABI's block tables (emitBlockTables): same units, same order.
    << "constexpr int kMaxBlockParams = " << maxp << ";\n"
    << "const symoc::rt::cuda::HyperParam kBlockHp[] = {\n" << hps.str() << "    {\"\", 0.0}};\n"
    << "const symoc::rt::cuda::GaugeDesc kBlockGauges[] = {\n" << gauges.str() << "    {\"\", -1, -1, -1}};\n"
    << "const symoc::rt::cuda::PieceDesc kBlockPieces[] = {\n" << pieces.str() << "    {0, 0, \"\", 0}};\n"
    << "const int kBlockAxes[] = {" << axes.str() << (nax ? ", " : "") << "-1}; // symo_coupled: each member's shared axis\n"
    << "const symoc::rt::cuda::BlockDesc kBlocks[kNumBlocks] = {\n" << rows.str() << "};\n\n"
    << "} // namespace\n#endif // SYMOC_WITH_CUDA\n\n";
  return o.str();
}

/// create_cuda / step_cuda / is_cuda over symoc::rt::cuda::DeviceOptimizer; blocks the device
/// does not implement are stepped by this file's CPU rules (cuda_host_step).
std::string emitCudaApi(const Plan &plan) {
  std::ostringstream o;
  o << "#ifdef SYMOC_WITH_CUDA\n"
    << R"CPP(// Steps the listed blocks with the CPU rules on host copies (DeviceOptimizer's host path).
void cuda_host_step(void *ctx, const int32_t *blocks, int nb, float *const *w, const float *const *g) {
  SymocOptimizer &o = *static_cast<SymocOptimizer *>(ctx);
  for (int k = 0; k < nb; ++k) {
    const symoc::rt::cuda::BlockDesc &d = kBlocks[blocks[k]];
    Param ps[kMaxBlockParams];
    int ix[kMaxBlockParams];
    for (int i = 0; i < d.nparams; ++i) {
      ix[i] = d.params[i];
      ps[i] = Param{kParams[ix[i]].name, w[ix[i]], g[ix[i]], kParams[ix[i]].rows, kParams[ix[i]].cols};
    }
    run(o, unit_rule(o, blocks[k]), ps, ix, size_t(d.nparams));
  }
}

SymocOptimizer *api_create_cuda(float lr, int device) {
  SymocOptimizer *o = api_create(lr);
  if (!o) return nullptr;
  try {
    symoc::rt::cuda::ParamDesc pd[kNumParams];
    for (int i = 0; i < kNumParams; ++i) pd[i] = {kParams[i].name, kParams[i].rows, kParams[i].cols};
    o->dev = std::make_unique<symoc::rt::cuda::DeviceOptimizer>(pd, kNumParams, kBlocks, kNumBlocks, device,
                                                                &cuda_host_step, o);
    return o;
  } catch (const std::exception &e) {
    delete o;
    fail(nullptr, SYMOC_ERR_INTERNAL, std::string("create_cuda: ") + e.what());
  } catch (...) {
    delete o;
    fail(nullptr, SYMOC_ERR_INTERNAL, "create_cuda: unknown error");
  }
  return nullptr;
}

int api_step_cuda(SymocOptimizer *o, void *const *w, const void *const *g, const int32_t *dtypes, int n,
                  const int32_t *blocks, int nblocks, void *stream) {
  if (!o) return fail(nullptr, SYMOC_ERR_ARGUMENT, "step_cuda: optimizer is NULL");
  if (!o->dev) return fail(o, SYMOC_ERR_ARGUMENT, "step_cuda: this optimizer was made by create(); use step");
  if (n != kNumParams)
    return fail(o, SYMOC_ERR_SHAPE, "step_cuda: got " + std::to_string(n) + " parameters, the plan has " +
                                        std::to_string(kNumParams));
  if (!w || !g) return fail(o, SYMOC_ERR_ARGUMENT, "step_cuda: weights or gradients array is NULL");
  if (blocks && nblocks < 0) return fail(o, SYMOC_ERR_ARGUMENT, "step_cuda: negative block count");
  try {
    o->dev->step(w, g, dtypes, o->lr, o->mult, blocks, nblocks, stream);
    ++o->steps;
    return SYMOC_OK;
  } catch (const std::invalid_argument &e) {
    return fail(o, SYMOC_ERR_ARGUMENT, e.what());
  } catch (const std::exception &e) {
    return fail(o, SYMOC_ERR_INTERNAL, std::string("step_cuda: ") + e.what());
  } catch (...) {
    return fail(o, SYMOC_ERR_INTERNAL, "step_cuda: unknown error");
  }
}

int api_is_cuda(const SymocOptimizer *o) { return o && o->dev ? 1 : 0; }
#endif // SYMOC_WITH_CUDA

)CPP";
  (void)plan;
  return o.str();
}

/// The row granule of a parameter for step_rows (ABI v3): > 0 when its unit is elementwise
/// (the parameter alone, no gauge, a rule whose update of an entry depends only on that
/// entry's or its row group's gradient and state), 0 otherwise.
int64_t rowGranule(const Plan &plan, const Unit &u) {
  if (u.params.size() != 1 || !u.step.gauges.empty()) return 0;
  // Row ranges count the first dimension of the tensor (callers shard it so): a stack of
  // matrices seen as (E m) x n has other rows, and is stepped whole.
  if (plan.params[size_t(u.params[0])].stack > 0) return 0;
  const std::string &k = u.step.kind;
  if (k == "adamw" || k == "adam" || k == "sgd") return 1;
  if (k == "adam_mini") {
    const int64_t gr = int64_t(u.step.get("group_rows", 1));
    const int64_t rows = plan.params[size_t(u.params[0])].rows;
    return gr > 0 && rows % gr == 0 ? gr : 0; // a bad grouping fails whole, as step() does
  }
  return 0;
}

/// unit_rule (the rule object of each block, shared by step_rows and the CUDA host path)
/// and step_rows / param_row_granule (ABI v3).
std::string emitRowApi(const Plan &plan, const std::vector<RuleObj> &rules, const std::vector<int> &unitRule) {
  std::ostringstream o;
  const std::vector<int> unitOf = plan.unitOf();
  o << "// The CPU rule object of each block.\n"
    << "Rule &unit_rule(SymocOptimizer &o, int b) {\n  switch (b) {\n";
  for (size_t b = 0; b < unitRule.size(); ++b)
    o << "  case " << b << ": return *o." << rules[size_t(unitRule[b])].name << ";\n";
  o << "  }\n  throw Error(\"block \" + std::to_string(b) + \" out of range\");\n}\n\n"
    << "// ---- row ranges (ABI v3): the block of each parameter, its row granule (0: whole only) ----\n"
    << "const int32_t kUnitOf[" << std::max<size_t>(unitOf.size(), 1) << "] = {";
  for (size_t i = 0; i < unitOf.size(); ++i) o << (i ? (i % 16 ? ", " : ",\n    ") : "") << unitOf[i];
  if (unitOf.empty()) o << "0";
  o << "};\nconst int64_t kRowGranule[" << std::max<size_t>(unitOf.size(), 1) << "] = {";
  for (size_t i = 0; i < unitOf.size(); ++i)
    o << (i ? (i % 16 ? ", " : ",\n    ") : "") << rowGranule(plan, plan.units[size_t(unitOf[i])]);
  if (unitOf.empty()) o << "0";
  o << "};\n\n"
    << R"CPP(int64_t api_param_row_granule(int i) { return i >= 0 && i < kNumParams ? kRowGranule[i] : -1; }

// True when the state holds a buffer or counter of parameter i (keys "<name>/...").
bool has_param_state(const SymocOptimizer &o, int i) {
  const std::string prefix = std::string(kParams[i].name) + "/";
  for (const std::string &b : o.state.buffer_names())
    if (b.compare(0, prefix.size(), prefix) == 0) return true;
  return false;
}

int api_step_rows(SymocOptimizer *o, int i, int64_t r0, int64_t r1, float *w, const float *g, int flags) {
  if (!o) return fail(nullptr, SYMOC_ERR_ARGUMENT, "step_rows: optimizer is NULL");
#ifdef SYMOC_WITH_CUDA
  if (o->dev) return fail(o, SYMOC_ERR_ARGUMENT, "step_rows: this optimizer was made by create_cuda (row ranges are stepped on the CPU only)");
#endif
  if (i < 0 || i >= kNumParams)
    return fail(o, SYMOC_ERR_ARGUMENT, "step_rows: parameter " + std::to_string(i) + " out of range (the plan has " +
                                           std::to_string(kNumParams) + ")");
  const ParamInfo &p = kParams[i];
  const int64_t gran = kRowGranule[i];
  if (gran <= 0)
    return fail(o, SYMOC_ERR_ARGUMENT, std::string("step_rows: parameter '") + p.name + "' (" + p.rule +
                                           ") is not stepped elementwise; its block needs the whole parameter");
  if (r0 < 0 || r1 < r0 || r1 > p.rows || r0 % gran || r1 % gran)
    return fail(o, SYMOC_ERR_ARGUMENT, std::string("step_rows: rows [") + std::to_string(r0) + ", " + std::to_string(r1) +
                                           ") of '" + p.name + "' (" + std::to_string(p.rows) +
                                           " rows): not a range of whole row groups of " + std::to_string(gran));
  if (flags & ~int(SYMOC_STEP_ROWS_SKIP))
    return fail(o, SYMOC_ERR_ARGUMENT, "step_rows: unknown flags " + std::to_string(flags));
  if (r0 == r1) return SYMOC_OK;
  if (!w || !g) return fail(o, SYMOC_ERR_ARGUMENT, std::string("step_rows: NULL weight or gradient for '") + p.name + "'");
  try {
    const int64_t n = r1 - r0;
    const std::string rows_key = std::string(p.name) + "/shard_rows";
    int64_t have = o->state.counter_value(rows_key);
    if (!have && has_param_state(*o, i)) have = p.rows; // stepped whole, or loaded whole
    if (have && have != n)
      return fail(o, SYMOC_ERR_STATE, std::string("step_rows: '") + p.name + "' has state for " + std::to_string(have) +
                                          " rows, the range has " + std::to_string(n) +
                                          " (one optimizer steps one row count per parameter)");
    o->state.counter(rows_key) = n;
    if (flags & SYMOC_STEP_ROWS_SKIP) { // as Rule::step skips a block with a non-finite gradient
      ++o->state.counter(Key(p.name, "/nonfinite_skips"));
      ++o->ctx.stats().skipped_nonfinite;
      return SYMOC_OK;
    }
    Param q{p.name, w, g, n, p.cols};
    unit_rule(*o, kUnitOf[i]).step(o->ctx, o->state, &q, 1, o->lr * o->mult[i]);
    return SYMOC_OK;
  } catch (const std::exception &e) {
    return fail(o, SYMOC_ERR_INTERNAL, std::string("step_rows: ") + e.what());
  } catch (...) {
    return fail(o, SYMOC_ERR_INTERNAL, "step_rows: unknown error");
  }
}

)CPP";
  return o.str();
}

} // namespace

EmittedFiles emitOptimizer(const Plan &plan) {
  EmittedFiles out;
  const std::string M = plan.model;                 // e.g. llama
  const std::string lib = M + "_optimizer";         // target and file stem
  std::string guard = lib;
  for (auto &c : guard) c = char(std::toupper(static_cast<unsigned char>(c)));
  const size_t n = plan.params.size();
  std::vector<int> unitOf = plan.unitOf();

  // Enumerator names: model prefix + sanitized initializer name, made unique.
  std::vector<std::string> enumName(n);
  std::set<std::string> used;
  for (size_t i = 0; i < n; ++i) {
    std::string base = M + "_" + plan::cIdentifier(plan.params[i].name), e = base;
    for (int k = 2; used.count(e); ++k) e = base + "_" + std::to_string(k);
    used.insert(e);
    enumName[i] = e;
  }

  // Rules: one object per distinct configuration of single-block units; one per joint unit.
  std::vector<RuleObj> rules;
  std::map<std::string, int> ruleOfKey;
  std::set<std::string> ruleNames;
  auto uniqueName = [&](std::string base) {
    base = plan::cIdentifier(base);
    std::string nm = base;
    for (int k = 2; ruleNames.count(nm); ++k) nm = base + "_" + std::to_string(k);
    ruleNames.insert(nm);
    return nm;
  };
  auto baseName = [](const Step &s) {
    if (s.kind == "symo" && (!s.leftPieces.empty() || !s.rightPieces.empty()))
      return "symo_" + (s.leftPieces.empty() ? std::string("cols_") : std::string("rows_")) +
             plan::piecesText(s.leftPieces.empty() ? s.rightPieces : s.leftPieces);
    if (s.kind == "symo") return "symo_" + s.left + "x" + s.right;
    if (s.kind == "lausu") return "lausu_" + s.lausu;
    if (s.kind == "adamw" && s.get("weight_decay", 0) == 0) return std::string("adamw_no_decay");
    return s.kind;
  };
  std::vector<Call> calls;
  std::map<std::string, int> callOfBatch; // (rule, rows, cols) -> call
  std::vector<int> unitRule;              // rule object of each unit (CUDA host path)
  for (const Unit &u : plan.units) {
    const bool joint = u.params.size() > 1 || !u.step.gauges.empty() || u.step.kind == "symo_coupled";
    if (joint) {
      RuleObj r;
      r.name = uniqueName((u.step.kind == "symo_coupled" ? "coupled_" : "gauged_") + plan.params[size_t(u.params[0])].name);
      r.describe = u.step.describe();
      if (u.step.gauges.empty()) {
        r.body = ruleExpr(u.step, u, false);
      } else {
        std::ostringstream o;
        o << "// The base rule, then the gauge tangents removed from its direction.\n";
        o << "auto base = [] {\n" << indent(ruleExpr(u.step, u, true), "  ") << "\n}();\n";
        o << "std::vector<GaugeSpec> gauges = {";
        for (size_t k = 0; k < u.step.gauges.size(); ++k) {
          const plan::Gauge &g = u.step.gauges[k];
          o << (k ? ",\n                                   " : "") << "{" << gaugeEnum(g.kind) << ", " << g.a << ", "
            << g.b << ", " << g.c << ", 0}";
        }
        o << "};\nreturn std::make_unique<GaugeProjected>(base, gauges);";
        r.body = o.str();
      }
      for (int p : u.params) r.users.push_back(plan.params[size_t(p)].name);
      rules.push_back(r);
      unitRule.push_back(int(rules.size() - 1));
      Call c;
      c.params = u.params;
      c.rule = int(rules.size() - 1);
      c.comment = u.step.describe() + (u.note.empty() ? "" : " (" + u.note + ")");
      calls.push_back(c);
      continue;
    }
    const Param &p = plan.params[size_t(u.params[0])];
    const std::string key = u.step.configKey();
    int ri;
    if (auto it = ruleOfKey.find(key); it != ruleOfKey.end()) {
      ri = it->second;
    } else {
      RuleObj r;
      r.name = uniqueName(baseName(u.step));
      r.describe = u.step.describe();
      r.body = ruleExpr(u.step, u, false);
      rules.push_back(r);
      ri = ruleOfKey[key] = int(rules.size() - 1);
    }
    rules[size_t(ri)].users.push_back(p.name);
    unitRule.push_back(ri);
    const std::string bkey = std::to_string(ri) + "|" + std::to_string(p.rows) + "x" + std::to_string(p.cols);
    if (auto it = callOfBatch.find(bkey); it != callOfBatch.end()) {
      calls[size_t(it->second)].params.push_back(u.params[0]);
    } else {
      Call c;
      c.params = {u.params[0]};
      c.rule = ri;
      c.comment = u.step.describe() + fmt::format(", {}x{}", p.rows, p.cols);
      callOfBatch[bkey] = int(calls.size());
      calls.push_back(c);
    }
  }

  // ------------------------------------------------------------------ header
  std::ostringstream h;
  h << "/* " << lib << ".h: generated by `symoc compile` from " << commentSafe(plan.modelPath) << " (policy "
    << plan.policy << "). Do not edit.\n"
    << " *\n"
    << " * The optimizer behind the C ABI of symoc/runtime/optimizer_api.h:\n"
    << " *   const SymocOptimizerApi *api = " << M << "_optimizer_api();\n"
    << " *   SymocOptimizer *opt = api->create(1e-3f);\n"
    << " *   api->step(opt, weights, grads, " << guard << "_NUM_PARAMS);  // pointers in the order below\n"
    << " * Plan fingerprint: " << plan.fingerprint << "\n"
    << " */\n"
    << "#ifndef " << guard << "_H\n#define " << guard << "_H\n\n"
    << "#include \"symoc/runtime/optimizer_api.h\"\n\n"
    << "#if defined(_WIN32)\n#define " << guard << "_EXPORT __declspec(dllexport)\n#else\n#define " << guard
    << "_EXPORT __attribute__((visibility(\"default\")))\n#endif\n\n"
    << "#ifdef __cplusplus\nextern \"C\" {\n#endif\n\n"
    << "/* Parameters in step() order: index, initializer, shape, rule. */\n"
    << "enum " << lib << "_param {\n";
  for (size_t i = 0; i < n; ++i) {
    const Param &p = plan.params[i];
    std::string shape;
    for (size_t k = 0; k < p.shape.size(); ++k) shape += (k ? "x" : "") + std::to_string(p.shape[k]);
    h << "  " << enumName[i] << " = " << i << ", /* " << commentSafe(p.name) << " " << (shape.empty() ? "scalar" : shape)
      << ": " << plan.units[size_t(unitOf[i])].step.describe() << " */\n";
  }
  h << "  " << guard << "_NUM_PARAMS = " << n << "\n};\n\n"
    << "/* This model's table (the same as symoc_optimizer_api(), which is left out when\n"
    << " * " << guard << "_NO_GENERIC_API is defined, so several models can be linked together). */\n"
    << guard << "_EXPORT const SymocOptimizerApi *" << M << "_optimizer_api(void);\n"
    << "#ifndef " << guard << "_NO_GENERIC_API\n"
    << guard << "_EXPORT const SymocOptimizerApi *symoc_optimizer_api(void);\n#endif\n\n"
    << "#ifdef __cplusplus\n} /* extern \"C\" */\n#endif\n\n#endif /* " << guard << "_H */\n";
  out.header = h.str();

  // ------------------------------------------------------------------ source
  std::ostringstream s;
  s << "// " << lib << ".cpp: generated by `symoc compile` from " << commentSafe(plan.modelPath) << " (policy "
    << plan.policy << "). Do not edit.\n"
    << "// " << n << " parameters, " << plan.units.size() << " blocks, " << calls.size() << " runtime calls per step.\n"
    << "// Optimizer state after the first step: " << plan::formatBytes(plan.stateBytes()) << " (AdamW: "
    << plan::formatBytes(plan.adamwBytes()) << ").\n"
    << "#include \"" << lib << ".h\"\n\n"
    << "#include \"symoc/runtime/runtime.h\"\n\n"
    << "#include <cmath>\n#include <cstring>\n#include <exception>\n#include <fnmatch.h>\n#include <limits>\n"
    << "#include <memory>\n#include <new>\n#include <string>\n#include <vector>\n\n"
    << "using namespace symoc::rt;\n\n"
    << "namespace {\n\n"
    << "constexpr int kNumParams = " << n << ";\n"
    << "const char kFingerprint[] = " << strLit(plan.fingerprint) << ";\n"
    << "const char kPlanJson[] =\n    " << longLit(plan::toJson(plan).dump(), "    ") << ";\n\n"
    << "struct ParamInfo {\n  const char *name;\n  int rank;\n  int64_t dims[SYMOC_OPTIMIZER_MAX_RANK];\n"
    << "  int64_t rows, cols; // the matrix the rule sees\n  const char *rule;\n"
    << "  float lr_scale;     // the plan's rate relative to lr (step option lr_scale; 1 by default)\n};\n\n"
    << "const ParamInfo kParams[kNumParams] = {\n";
  for (size_t i = 0; i < n; ++i) {
    const Param &p = plan.params[i];
    if (p.shape.size() > 8) throw Error("emit: parameter '" + p.name + "' has more than 8 dimensions");
    std::string dims;
    for (size_t k = 0; k < p.shape.size(); ++k) dims += (k ? ", " : "") + std::to_string(p.shape[k]);
    s << "    {" << strLit(p.name) << ", " << p.shape.size() << ", {" << (dims.empty() ? "0" : dims) << "}, " << p.rows
      << ", " << p.cols << ", " << strLit(plan.units[size_t(unitOf[i])].step.describe()) << ", "
      << floatLit(plan.units[size_t(unitOf[i])].step.get("lr_scale", 1.0)) << "},\n";
  }
  s << "};\n\n";
  emitBlockTables(s, plan);
  // Rule factories.
  s << "// ---- rules: one object per distinct rule of the plan ----\n";
  for (const RuleObj &r : rules) {
    s << "\n// " << commentSafe(r.describe) << ": ";
    for (size_t k = 0; k < r.users.size(); ++k) {
      if (k == 6) {
        s << " and " << r.users.size() - 6 << " more";
        break;
      }
      s << (k ? ", " : "") << commentSafe(r.users[k]);
    }
    s << "\nstd::unique_ptr<Rule> make_" << r.name << "() {\n" << indent(r.body, "  ") << "\n}\n";
  }
  s << "\n} // namespace\n\n" << emitBlockTable(plan);
  s << "// The object behind the ABI's opaque handle.\n"
    << "struct SymocOptimizer {\n"
    << "  Context ctx;\n  State state{kFingerprint};\n  float lr = 0.f;\n  float mult[kNumParams];\n"
    << "  int64_t steps = 0;\n  int64_t skipped_base = 0; // ctx.stats().skipped_nonfinite at create/load\n"
    << "  std::string error;\n";
  for (const RuleObj &r : rules) s << "  std::unique_ptr<Rule> " << r.name << " = make_" << r.name << "();\n";
  s << "#ifdef SYMOC_WITH_CUDA\n  std::unique_ptr<symoc::rt::cuda::DeviceOptimizer> dev; // create_cuda: the device state\n#endif\n";
  s << "};\n\n"
    << "namespace {\n\n"
    << "thread_local std::string g_error; // create() failures and errors without an optimizer\n\n"
    << "int fail(const SymocOptimizer *o, int code, const std::string &msg) {\n"
    << "  try {\n    if (o) const_cast<SymocOptimizer *>(o)->error = msg;\n    else g_error = msg;\n"
    << "  } catch (...) {\n  }\n  return code;\n}\n\n"
    << "// One runtime call; the learning rate carries each parameter's multiplier. Equal\n"
    << "// multipliers (the usual case) make it a single batched call.\n"
    << "void run(SymocOptimizer &o, Rule &rule, Param *ps, const int *ix, size_t count) {\n"
    << "  const float m0 = o.mult[ix[0]];\n  bool same = true;\n"
    << "  for (size_t i = 1; i < count; ++i) same = same && o.mult[ix[i]] == m0;\n"
    << "  if (same) return rule.step(o.ctx, o.state, ps, count, o.lr * m0);\n"
    << "  if (!rule.coupled()) {\n"
    << "    for (size_t i = 0; i < count; ++i) rule.step(o.ctx, o.state, ps[i], o.lr * o.mult[ix[i]]);\n"
    << "    return;\n  }\n"
    << "  // A joint step with different multipliers: the runtime's step() with per-parameter rates.\n"
    << "  for (size_t i = 0; i < count; ++i)\n"
    << "    if (!all_finite(ps[i].g, size_t(ps[i].size()))) {\n"
    << "      o.ctx.stats().skipped_nonfinite += int64_t(count);\n      return;\n    }\n"
    << "  Workspace::Frame f(o.ctx.workspace());\n  float **D = f.array<float *>(count);\n"
    << "  for (size_t i = 0; i < count; ++i) D[i] = f.floats(size_t(ps[i].size()));\n"
    << "  rule.directions(o.ctx, o.state, ps, count, D);\n"
    << "  const float wd = rule.decoupled_weight_decay();\n"
    << "  for (size_t i = 0; i < count; ++i) {\n    const float lr = o.lr * o.mult[ix[i]], decay = 1.f - lr * wd;\n"
    << "    for (int64_t j = 0; j < ps[i].size(); ++j) ps[i].w[j] = ps[i].w[j] * decay - lr * D[i][j];\n  }\n}\n\n";

  // The step: step() and step_blocks() share it; `sel` marks the parameters of the blocks
  // to step (all of them for step()). Each call keeps its selected parameters, in call order,
  // so a block is stepped by the same rule object with the same arithmetic either way.
  s << "template <size_t N>\n"
    << "void run_selected(SymocOptimizer &o, Rule &rule, const Param *p, const int (&ix)[N], const bool *sel) {\n"
    << "  Param ps[N];\n  int sx[N];\n  size_t k = 0;\n"
    << "  for (size_t i = 0; i < N; ++i)\n"
    << "    if (sel[ix[i]]) ps[k] = p[ix[i]], sx[k++] = ix[i];\n"
    << "  if (k) run(o, rule, ps, sx, k);\n}\n\n"
    << "int step_selected(SymocOptimizer *o, float *const *w, const float *const *g, int n, const bool *sel,\n"
    << "                  const char *what) {\n"
    << "#ifdef SYMOC_WITH_CUDA\n"
    << "  if (o->dev) return fail(o, SYMOC_ERR_ARGUMENT, std::string(what) + \": this optimizer was made by create_cuda; use step_cuda\");\n"
    << "#endif\n"
    << "  if (n != kNumParams)\n"
    << "    return fail(o, SYMOC_ERR_SHAPE, std::string(what) + \": got \" + std::to_string(n) + \" parameters, the plan of " << M
    << " has \" +\n                                     std::to_string(kNumParams));\n"
    << "  if (!w || !g) return fail(o, SYMOC_ERR_ARGUMENT, std::string(what) + \": weights or gradients array is NULL\");\n"
    << "  for (int i = 0; i < kNumParams; ++i)\n"
    << "    if (sel[i] && (!w[i] || !g[i]))\n"
    << "      return fail(o, SYMOC_ERR_ARGUMENT, std::string(what) + \": NULL weight or gradient for '\" + kParams[i].name +\n"
    << "                                             \"' (parameter \" + std::to_string(i) + \")\");\n"
    << "  try {\n"
    << "    Param p[kNumParams];\n"
    << "    for (int i = 0; i < kNumParams; ++i)\n"
    << "      if (sel[i]) p[i] = Param{kParams[i].name, w[i], g[i], kParams[i].rows, kParams[i].cols};\n";
  for (const Call &c : calls) {
    // The enumerators name the blocks; the comment says the rule (and a joint unit's note).
    s << "    { // " << commentSafe(c.comment);
    if (c.params.size() > 1) s << " (" << c.params.size() << " blocks)";
    const bool wrap = c.params.size() > 2;
    const std::string sep = wrap ? ",\n          " : ", ";
    s << "\n      const int ix[] = {" << (wrap ? "\n          " : "");
    for (size_t k = 0; k < c.params.size(); ++k) s << (k ? sep : "") << enumName[size_t(c.params[k])];
    s << "};\n      run_selected(*o, *o->" << rules[size_t(c.rule)].name << ", p, ix, sel);\n    }\n";
  }
  s << "    ++o->steps;\n    return SYMOC_OK;\n"
    << "  } catch (const std::exception &e) {\n"
    << "    return fail(o, SYMOC_ERR_INTERNAL, std::string(what) + \": \" + e.what());\n"
    << "  } catch (...) {\n    return fail(o, SYMOC_ERR_INTERNAL, std::string(what) + \": unknown error\");\n  }\n}\n\n"
    << "int api_step(SymocOptimizer *o, float *const *w, const float *const *g, int n) {\n"
    << "  if (!o) return fail(nullptr, SYMOC_ERR_ARGUMENT, \"step: optimizer is NULL\");\n"
    << "  bool sel[kNumParams];\n  for (bool &b : sel) b = true;\n"
    << "  return step_selected(o, w, g, n, sel, \"step\");\n}\n\n";

  // The rest of the ABI.
  s << R"CPP(bool good_lr(float lr) { return std::isfinite(lr) && lr > 0.f; }

SymocOptimizer *api_create(float lr) {
  if (!good_lr(lr)) {
    fail(nullptr, SYMOC_ERR_ARGUMENT, "create: learning rate must be finite and > 0");
    return nullptr;
  }
  try {
    auto *o = new SymocOptimizer();
    o->lr = lr;
    for (int i = 0; i < kNumParams; ++i) o->mult[i] = kParams[i].lr_scale;
    return o;
  } catch (const std::exception &e) {
    fail(nullptr, SYMOC_ERR_INTERNAL, std::string("create: ") + e.what());
  } catch (...) {
    fail(nullptr, SYMOC_ERR_INTERNAL, "create: unknown error");
  }
  return nullptr;
}

void api_destroy(SymocOptimizer *o) { delete o; }

int api_num_params(void) { return kNumParams; }

const char *api_param_name(int i) { return i >= 0 && i < kNumParams ? kParams[i].name : nullptr; }

const char *api_param_rule(int i) { return i >= 0 && i < kNumParams ? kParams[i].rule : nullptr; }

int api_param_shape(int i, int64_t *dims, int *rank) {
  if (i < 0 || i >= kNumParams)
    return fail(nullptr, SYMOC_ERR_ARGUMENT, "param_shape: index " + std::to_string(i) + " out of range");
  if (!rank) return fail(nullptr, SYMOC_ERR_ARGUMENT, "param_shape: rank is NULL");
  *rank = kParams[i].rank;
  if (dims)
    for (int k = 0; k < kParams[i].rank; ++k) dims[k] = kParams[i].dims[k];
  return SYMOC_OK;
}

int api_zero_state(SymocOptimizer *o) {
  if (!o) return fail(nullptr, SYMOC_ERR_ARGUMENT, "zero_state: optimizer is NULL");
  try {
    o->state = State(kFingerprint);
    o->steps = 0;
#ifdef SYMOC_WITH_CUDA
    if (o->dev) o->dev->zero();
#endif
    return SYMOC_OK;
  } catch (const std::exception &e) {
    return fail(o, SYMOC_ERR_INTERNAL, std::string("zero_state: ") + e.what());
  }
}

int api_set_lr(SymocOptimizer *o, float lr) {
  if (!o) return fail(nullptr, SYMOC_ERR_ARGUMENT, "set_lr: optimizer is NULL");
  if (!good_lr(lr)) return fail(o, SYMOC_ERR_ARGUMENT, "set_lr: learning rate must be finite and > 0");
  o->lr = lr;
  return SYMOC_OK;
}

float api_get_lr(const SymocOptimizer *o) { return o ? o->lr : std::numeric_limits<float>::quiet_NaN(); }

int api_set_block_multiplier(SymocOptimizer *o, const char *name, float m) {
  if (!o) return fail(nullptr, SYMOC_ERR_ARGUMENT, "set_block_multiplier: optimizer is NULL");
  if (!name) return fail(o, SYMOC_ERR_ARGUMENT, "set_block_multiplier: name is NULL");
  if (!std::isfinite(m) || m < 0.f)
    return fail(o, SYMOC_ERR_ARGUMENT, "set_block_multiplier: multiplier must be finite and >= 0");
  int matched = 0;
  for (int i = 0; i < kNumParams; ++i)
    if (std::strcmp(name, kParams[i].name) == 0 || fnmatch(name, kParams[i].name, 0) == 0) {
      o->mult[i] = m * kParams[i].lr_scale; // relative to the plan's rate
      ++matched;
    }
  if (!matched)
    return fail(o, SYMOC_ERR_ARGUMENT, std::string("set_block_multiplier: '") + name + "' matches no parameter");
  return SYMOC_OK;
}

// Hyper-state kept in the state file next to the rules' buffers.
const char kLrKey[] = "__optimizer/lr", kMultKey[] = "__optimizer/multipliers", kStepsKey[] = "__optimizer/steps";

int api_save(const SymocOptimizer *co, const char *path) {
  if (!co) return fail(nullptr, SYMOC_ERR_ARGUMENT, "save: optimizer is NULL");
  if (!path) return fail(co, SYMOC_ERR_ARGUMENT, "save: path is NULL");
  auto *o = const_cast<SymocOptimizer *>(co); // only the bookkeeping entries change
  try {
    o->state.buffer(kLrKey, {1})[0] = o->lr;
    std::memcpy(o->state.buffer(kMultKey, {kNumParams}), o->mult, sizeof o->mult);
    o->state.counter(kStepsKey) = o->steps;
#ifdef SYMOC_WITH_CUDA
    if (o->dev) o->dev->export_to(o->state); // device buffers under the CPU rules' names
#endif
    o->state.save(path);
    return SYMOC_OK;
  } catch (const std::exception &e) {
    return fail(o, SYMOC_ERR_IO, std::string("save: ") + e.what());
  }
}

int api_load(SymocOptimizer *o, const char *path) {
  if (!o) return fail(nullptr, SYMOC_ERR_ARGUMENT, "load: optimizer is NULL");
  if (!path) return fail(o, SYMOC_ERR_ARGUMENT, "load: path is NULL");
  try {
    State st = State::load(path, kFingerprint);
    if (!st.has_buffer(kLrKey) || !st.has_buffer(kMultKey) || st.shape(kLrKey) != std::vector<int64_t>{1} ||
        st.shape(kMultKey) != std::vector<int64_t>{kNumParams})
      return fail(o, SYMOC_ERR_STATE, std::string("load: ") + path + ": not written by this optimizer's save()");
    const float lr = st.data(kLrKey)[0];
    if (!good_lr(lr)) return fail(o, SYMOC_ERR_STATE, std::string("load: ") + path + ": invalid learning rate");
#ifdef SYMOC_WITH_CUDA
    if (o->dev) o->dev->import_from(st);
#endif
    std::memcpy(o->mult, st.data(kMultKey), sizeof o->mult);
    o->lr = lr;
    o->steps = st.counter_value(kStepsKey);
    o->state = std::move(st);
    o->skipped_base = o->ctx.stats().skipped_nonfinite;
    return SYMOC_OK;
  } catch (const std::exception &e) {
    const std::string msg = e.what();
    const bool io = msg.find("cannot open") != std::string::npos;
    return fail(o, io ? SYMOC_ERR_IO : SYMOC_ERR_STATE, "load: " + msg);
  }
}

const char *api_last_error(const SymocOptimizer *o) { return o ? o->error.c_str() : g_error.c_str(); }

int64_t api_steps_skipped(const SymocOptimizer *o) {
  if (!o) return -1;
  int64_t dev = 0;
#ifdef SYMOC_WITH_CUDA
  try {
    if (o->dev) dev = o->dev->skipped(); // counted on the device, read here
  } catch (const std::exception &e) {
    fail(o, SYMOC_ERR_INTERNAL, std::string("steps_skipped: ") + e.what());
    return -1;
  }
#endif
  return o->ctx.stats().skipped_nonfinite - o->skipped_base + dev;
}

int64_t api_steps_taken(const SymocOptimizer *o) { return o ? o->steps : -1; }

int64_t api_state_bytes(const SymocOptimizer *o) {
  if (!o) return -1;
#ifdef SYMOC_WITH_CUDA
  if (o->dev) { // device state, plus host buffers of the blocks stepped on the host
    int64_t b = o->dev->bytes();
    for (int i = 0; i < kNumParams; ++i)
      if (!o->dev->holds_param(kParams[i].name))
        for (const std::string &nm : o->state.buffer_names())
          if (nm.size() > std::strlen(kParams[i].name) && nm.compare(0, std::strlen(kParams[i].name), kParams[i].name) == 0 &&
              nm[std::strlen(kParams[i].name)] == '/') {
            int64_t k = 1;
            for (int64_t d : o->state.shape(nm)) k *= d;
            b += 4 * k;
          }
    return b;
  }
#endif
  return int64_t(o->state.bytes());
}

int api_num_blocks(void) { return kNumBlocks; }

int api_block_params(int b, int32_t *params, int cap) {
  if (b < 0 || b >= kNumBlocks) {
    fail(nullptr, SYMOC_ERR_ARGUMENT, "block_params: block " + std::to_string(b) + " out of range");
    return -1;
  }
  const int count = kBlockStart[b + 1] - kBlockStart[b];
  for (int k = 0; params && k < count && k < cap; ++k) params[k] = kBlockParams[kBlockStart[b] + k];
  return count;
}

double api_block_cost(int b) { return b >= 0 && b < kNumBlocks ? kBlockCost[b] : -1.0; }

int api_step_blocks(SymocOptimizer *o, float *const *w, const float *const *g, int n, const int32_t *blocks,
                    int nblocks) {
  if (!o) return fail(nullptr, SYMOC_ERR_ARGUMENT, "step_blocks: optimizer is NULL");
  if (nblocks < 0 || (nblocks > 0 && !blocks))
    return fail(o, SYMOC_ERR_ARGUMENT, "step_blocks: negative block count or NULL block list");
  bool sel[kNumParams] = {};
  bool seen[kNumBlocks + 1] = {};
  for (int k = 0; k < nblocks; ++k) {
    const int b = blocks[k];
    if (b < 0 || b >= kNumBlocks)
      return fail(o, SYMOC_ERR_ARGUMENT, "step_blocks: block " + std::to_string(b) + " out of range (the plan has " +
                                             std::to_string(kNumBlocks) + ")");
    if (seen[b]) return fail(o, SYMOC_ERR_ARGUMENT, "step_blocks: block " + std::to_string(b) + " listed twice");
    seen[b] = true;
    for (int j = kBlockStart[b]; j < kBlockStart[b + 1]; ++j) sel[kBlockParams[j]] = true;
  }
  return step_selected(o, w, g, n, sel, "step_blocks");
}

)CPP";
  s << emitRowApi(plan, rules, unitRule) << emitCudaApi(plan);
  s << "const SymocOptimizerApi kApi = {\n"
    << "    SYMOC_OPTIMIZER_ABI_VERSION,\n    uint32_t(sizeof(SymocOptimizerApi)),\n    " << strLit(M) << ",\n    "
    << strLit(plan.policy) << ",\n    kFingerprint,\n    kPlanJson,\n"
    << "    &api_create,\n    &api_destroy,\n    &api_num_params,\n    &api_param_name,\n    &api_param_shape,\n"
    << "    &api_step,\n    &api_zero_state,\n    &api_set_lr,\n    &api_get_lr,\n    &api_set_block_multiplier,\n"
    << "    &api_save,\n    &api_load,\n    &api_last_error,\n    &api_steps_skipped,\n    &api_steps_taken,\n"
    << "    &api_param_rule,\n    &api_state_bytes,\n"
    // ABI v2: blocks (plan units), then the CUDA entries (with SYMOC_WITH_CUDA).
    << "    &api_num_blocks,\n    &api_block_params,\n    &api_block_cost,\n    &api_step_blocks,\n"
    << "#ifdef SYMOC_WITH_CUDA\n    &api_create_cuda,\n    &api_step_cuda,\n    &api_is_cuda,\n#else\n"
    << "    nullptr, // create_cuda\n    nullptr, // step_cuda\n    nullptr, // is_cuda\n#endif\n"
    // ABI v3: row ranges of elementwise blocks.
    << "    &api_param_row_granule,\n    &api_step_rows,\n};\n\n"
    << "} // namespace\n\n"
    << "extern \"C\" const SymocOptimizerApi *" << M << "_optimizer_api(void) { return &kApi; }\n"
    << "#ifndef " << guard << "_NO_GENERIC_API\n"
    << "extern \"C\" const SymocOptimizerApi *symoc_optimizer_api(void) { return &kApi; }\n#endif\n";
  out.source = s.str();

  // --------------------------------------------------------------- CMakeLists
  std::ostringstream c;
  c << "# Generated by `symoc compile` (" << plan.model << ", policy " << plan.policy << "). In a C++ project:\n"
    << "#   add_subdirectory(<this folder>)\n"
    << "#   target_link_libraries(app " << lib << ")\n"
    << "# The runtime is built from symoc's runtime/ sources: SYMOC_RUNTIME_DIR (a cache variable)\n"
    << "# points there unless the project already has a symoc_runtime target.\n"
    << "cmake_minimum_required(VERSION 3.16)\n"
    << "if(CMAKE_SOURCE_DIR STREQUAL CMAKE_CURRENT_SOURCE_DIR)\n"
    << "  project(" << lib << " LANGUAGES C CXX)\nendif()\n\n"
    << "@RUNTIME_DEFAULT@"
    << "if(NOT TARGET symoc_runtime)\n"
    << "  if(NOT EXISTS \"${SYMOC_RUNTIME_DIR}/include/symoc/runtime/optimizer_api.h\")\n"
    << "    message(FATAL_ERROR \"" << lib << ": set SYMOC_RUNTIME_DIR to symoc's runtime/ source folder \"\n"
    << "                        \"(got '${SYMOC_RUNTIME_DIR}')\")\n  endif()\n"
    << "  add_subdirectory(${SYMOC_RUNTIME_DIR} ${CMAKE_CURRENT_BINARY_DIR}/symoc_runtime)\nendif()\n\n"
    << "option(" << guard << "_WERROR \"build the generated optimizer with -Werror\" OFF)\n"
    << "add_library(" << lib << " SHARED " << lib << ".cpp)\n"
    << "target_include_directories(" << lib << " PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}\n"
    << "  $<TARGET_PROPERTY:symoc_runtime,INTERFACE_INCLUDE_DIRECTORIES>)\n"
    << "target_link_libraries(" << lib << " PRIVATE symoc_runtime)\n"
    << "# The CUDA entry points (create_cuda, step_cuda) where the runtime was built with CUDA.\n"
    << "if(TARGET symoc_runtime_cuda)\n"
    << "  target_link_libraries(" << lib << " PRIVATE symoc_runtime_cuda)\n"
    << "  target_compile_definitions(" << lib << " PRIVATE SYMOC_WITH_CUDA=1)\nendif()\n"
    << "target_compile_features(" << lib << " PRIVATE cxx_std_17)\n"
    << "target_compile_options(" << lib << " PRIVATE -Wall -Wextra $<$<BOOL:${" << guard << "_WERROR}>:-Werror>)\n"
    << "# Only the two API functions are exported; the runtime stays private to this library.\n"
    << "set_target_properties(" << lib << " PROPERTIES CXX_VISIBILITY_PRESET hidden VISIBILITY_INLINES_HIDDEN ON)\n"
    << "if(CMAKE_SYSTEM_NAME STREQUAL \"Linux\")\n"
    << "  target_link_options(" << lib << " PRIVATE -Wl,--exclude-libs,ALL)\nendif()\n";
  out.cmake = c.str();
  out.planJson = plan::toJson(plan).dump(2) + "\n";
  return out;
}

EmittedFiles writeOptimizer(const Plan &plan, const std::string &dir, const std::string &runtimeDir) {
  EmittedFiles f = emitOptimizer(plan);
  std::string def;
  if (!runtimeDir.empty())
    def = "set(SYMOC_RUNTIME_DIR \"" + runtimeDir + "\" CACHE PATH \"symoc runtime/ source folder\")\n\n";
  else
    def = "set(SYMOC_RUNTIME_DIR \"\" CACHE PATH \"symoc runtime/ source folder\")\n\n";
  f.cmake.replace(f.cmake.find("@RUNTIME_DEFAULT@"), 17, def);
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw Error(dir + ": cannot create the output folder: " + ec.message());
  const std::string lib = plan.model + "_optimizer";
  auto write = [&](const std::string &name, const std::string &text) {
    std::string path = (std::filesystem::path(dir) / name).string();
    std::ofstream o(path);
    if (!o) throw Error(path + ": cannot write");
    o << text;
    if (!o) throw Error(path + ": write failed");
    f.written.push_back(path);
  };
  write(lib + ".h", f.header);
  write(lib + ".cpp", f.source);
  write("CMakeLists.txt", f.cmake);
  write("plan.json", f.planJson);
  return f;
}

} // namespace symoc::emit
