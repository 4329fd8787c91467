//===- Plan.cpp - Plan costs, JSON and text forms -------------------------===//

#include "symoc/Plan/Plan.h"

#include <fmt/core.h>

#include <algorithm>
#include <cmath>
#include <sstream>

namespace symoc::plan {

namespace {

std::string fmtNum(double v) {
  // Shortest round-trip text: hyper-parameters appear in generated code and plan.json.
  std::string s = fmt::format("{}", v);
  return s;
}

/// Number of isotypic components of a side (runtime/lib/symo.cpp, make_side).
int64_t comps(const std::string &g, int64_t n) {
  if (g == "Z2") return n;
  if (g == "S") return 2;
  if (g == "B" || g == "O") return 1;
  return 0;
}

std::string shapeText(const std::vector<int64_t> &shape) {
  if (shape.empty()) return "scalar";
  std::string s;
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? "x" : "") + std::to_string(shape[i]);
  return s;
}

std::string flopsText(double f) {
  if (f < 1e3) return fmt::format("{:.0f}", f);
  const char *unit[] = {"K", "M", "G", "T", "P"};
  int k = -1;
  while (f >= 1e3 && k < 4) f /= 1e3, ++k;
  return fmt::format("{:.1f}{}", f, unit[k]);
}

uint64_t fnv1a(const std::string &s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

} // namespace

std::string PieceGroup::text() const { return parts > 1 ? group + "/" + std::to_string(parts) : group; }

std::string piecesText(const std::vector<PieceGroup> &pieces) {
  if (pieces.empty()) return "1";
  std::string out;
  for (size_t i = 0; i < pieces.size();) {
    size_t j = i + 1;
    while (j < pieces.size() && pieces[j].text() == pieces[i].text() && pieces[j].extent == pieces[i].extent) ++j;
    const size_t k = j - i;
    out += (out.empty() ? "" : "|") + (k > 2 ? std::to_string(k) + "*" + pieces[i].text() : pieces[i].text());
    if (k == 2) out += "|" + pieces[i].text();
    i = j;
  }
  return out;
}

std::string Step::describe() const {
  std::string d;
  if (kind == "symo") d = "symo " + left + " x " + right;
  else if (kind == "symo_coupled") d = "symo-coupled " + left;
  else if (kind == "lausu") d = "lausu " + lausu;
  else if (kind == "muon" && get("norm_beta2", 0) > 0) d = get("norm_axis", 0) == 0 ? "muon norm-rows" : "muon norm-cols";
  else d = kind;
  if (!gauges.empty()) d += " + gauges";
  return d;
}

std::string Step::configKey() const {
  std::string k = kind + "|" + lausu + "|" + left + "|" + right;
  for (auto &[n, v] : hp) k += "|" + n + "=" + fmtNum(v);
  for (const auto *side : {&leftPieces, &rightPieces}) {
    k += "|p";
    for (const auto &p : *side) k += fmt::format(",{}:{}:{}:{}", p.offset, p.extent, p.group, p.parts);
  }
  return k;
}

std::string formatBytes(int64_t b) {
  if (b < 1024) return std::to_string(b) + " B";
  double v = double(b);
  const char *unit[] = {"KiB", "MiB", "GiB", "TiB"};
  int k = -1;
  while (v >= 1024 && k < 3) v /= 1024, ++k;
  return fmt::format("{:.1f} {}", v, unit[k]);
}

std::string cIdentifier(const std::string &s) {
  std::string r;
  for (char c : s) r += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
  if (r.empty() || std::isdigit(static_cast<unsigned char>(r[0]))) r = "_" + r;
  return r;
}

void estimateCost(const Plan &plan, Unit &u) {
  const Step &s = u.step;
  double bytes = 0, flops = 0;
  auto P = [&](int k) -> const Param & { return plan.params[size_t(u.params[size_t(k)])]; };
  if (s.kind == "symo_coupled") {
    // One-sided step on Z = shared x (sum of the members' other dims).
    int64_t shared = 0, total = 0;
    for (size_t k = 0; k < u.params.size(); ++k) {
      const Param &p = P(int(k));
      shared = u.axes[k] == 0 ? p.rows : p.cols;
      total += u.axes[k] == 0 ? p.cols : p.rows;
    }
    const double c = double(comps(s.left, shared)), t = double(total);
    bytes = c * t * t;
    flops = 4.0 * double(shared) * t * t + c * 10.0 * t * t * t;
  } else {
    for (size_t k = 0; k < u.params.size(); ++k) {
      const Param &p = P(int(k));
      const double n = double(p.numel()), m = double(p.rows), q = double(p.cols);
      const double lo = std::min(m, q), hi = std::max(m, q);
      if (s.kind == "adamw" || s.kind == "adam") {
        bytes += 2 * n, flops += 12 * n;
      } else if (s.kind == "sgd") {
        bytes += s.get("momentum", 0) != 0 ? n : 0, flops += 4 * n;
      } else if (s.kind == "adam_mini") {
        const double gr = std::max(1.0, s.get("group_rows", 1));
        bytes += n + std::ceil(m / gr), flops += 10 * n;
      } else if (s.kind == "muon") {
        bytes += n, flops += 5 * (4 * lo * lo * hi + 2 * lo * lo * lo) + 6 * n;
        if (s.get("norm_beta2", 0) > 0) bytes += s.get("norm_axis", 0) == 0 ? m : q, flops += 5 * n;
      } else if (s.kind == "shampoo") {
        const double maxd = s.get("max_precond_dim", 8192);
        const double freq = std::max(1.0, s.get("precondition_frequency", 1));
        if (m <= maxd) bytes += 2 * m * m, flops += 4 * m * m * q + 10 * m * m * m / freq;
        if (q <= maxd) bytes += 2 * q * q, flops += 4 * q * q * m + 10 * q * q * q / freq;
      } else if (s.kind == "lausu") {
        bytes += n;
        if (s.lausu == "row" || s.lausu == "col") flops += 6 * n;
        else if (s.lausu == "centered_row") flops += 8 * n;
        else if (s.lausu == "left_spectral_centered") flops += 4 * m * m * q + 10 * m * m * m;
        else flops += 4 * lo * lo * hi + 10 * lo * lo * lo + 4 * n;
      } else if (s.kind == "symo" && (!s.leftPieces.empty() || !s.rightPieces.empty())) {
        if (s.get("beta1", 0) > 0) bytes += n, flops += 6 * n;
        // Components (runs) of each side: Z2 one per coordinate, S two per run, B/O one.
        auto runs = [](const std::vector<PieceGroup> &v, int64_t &comps) {
          std::vector<std::pair<int64_t, bool>> r; // (length, split)
          comps = 0;
          for (const auto &x : v) {
            if (x.group == "Z2") {
              r.insert(r.end(), size_t(x.extent), {1, false});
              comps += x.extent;
              continue;
            }
            for (int64_t k = 0; k < x.parts; ++k) r.push_back({x.extent / x.parts, x.group == "S"});
            comps += x.parts * (x.group == "S" ? 2 : 1);
          }
          return r;
        };
        int64_t cl = 0, cr = 0;
        auto rl = runs(s.leftPieces, cl), rr = runs(s.rightPieces, cr);
        const bool single = s.get("beta2", 0.95) == 0;
        if (cl > 0 && cr > 0) {
          bytes += double(cl * cr), flops += 12 * n;
        } else {
          const bool left = cl > 0;
          const double other = left ? q : m; // the trivial side's length
          for (auto &[len, split] : left ? rl : rr) {
            const double l = double(len);
            if (single) { // (X X^T/d + eps)^{-1/2} X on the smaller side of each run
              const double a = std::min(l, other), b = std::max(l, other);
              const int ns = int(s.get("ns_steps", 0));
              flops += ns > 0 ? ns * (4 * a * a * b + 2 * a * a * a) // Muon's Newton-Schulz per run
                              : 4 * a * a * b + 10 * a * a * a;
              flops += split ? 4 * l * other : 0;
            } else { // an other x other matrix per component
              const double c = split ? 2 : 1;
              bytes += c * other * other;
              flops += 4 * l * other * other + c * 10 * other * other * other;
            }
          }
        }
      } else if (s.kind == "symo") {
        if (s.get("beta1", 0) > 0) bytes += n, flops += 4 * n;
        const double cl = double(comps(s.left, p.rows)), cr = double(comps(s.right, p.cols));
        if (cl > 0 && cr > 0) {
          bytes += cl * cr, flops += 12 * n;
        } else if (cl > 0) { // matrices on the (trivial) columns side
          bytes += cl * q * q, flops += 4 * m * q * q + cl * 10 * q * q * q;
        } else if (cr > 0) {
          bytes += cr * m * m, flops += 4 * q * m * m + cr * 10 * m * m * m;
        } else {
          bytes += n * n, flops += 4 * n * n + 10 * n * n * n;
        }
      }
      if (!s.gauges.empty()) flops += 6 * n;
    }
  }
  u.stateBytes = int64_t(bytes) * 4;
  u.flops = flops;
}

int64_t Plan::stateBytes() const {
  int64_t b = 0;
  for (auto &u : units) b += u.stateBytes;
  return b;
}

double Plan::flops() const {
  double f = 0;
  for (auto &u : units) f += u.flops;
  return f;
}

int64_t Plan::adamwBytes() const {
  int64_t b = 0;
  for (auto &p : params) b += 2 * p.numel() * 4;
  return b;
}

std::vector<int> Plan::unitOf() const {
  std::vector<int> of(params.size(), -1);
  for (size_t u = 0; u < units.size(); ++u)
    for (int p : units[u].params) of[size_t(p)] = int(u);
  return of;
}

void Plan::finalize() {
  for (auto &u : units) estimateCost(*this, u);
  // Identity of model + plan: parameter names, shapes and every unit's rule.
  std::string id = model;
  for (auto &p : params) id += "|" + p.name + ":" + shapeText(p.shape);
  for (auto &u : units) {
    id += "|u";
    for (int p : u.params) id += "," + std::to_string(p);
    for (int a : u.axes) id += ";" + std::to_string(a);
    id += u.step.configKey();
    for (auto &g : u.step.gauges) id += "|g" + g.kind + std::to_string(g.a) + std::to_string(g.b) + std::to_string(g.c);
  }
  fingerprint = fmt::format("symoc-plan-1:{}:{}:{:016x}", model, policy, fnv1a(id));
}

nlohmann::json toJson(const Plan &plan) {
  using nlohmann::json;
  json j;
  j["schema"] = "symoc.plan/1";
  j["model"] = plan.model;
  j["model_path"] = plan.modelPath;
  j["policy"] = plan.policy;
  j["fingerprint"] = plan.fingerprint;
  j["state_bytes"] = plan.stateBytes();
  j["adamw_state_bytes"] = plan.adamwBytes();
  j["flops_per_step"] = plan.flops();
  std::vector<int> unitOf = plan.unitOf();
  j["params"] = json::array();
  for (size_t i = 0; i < plan.params.size(); ++i) {
    const Param &p = plan.params[i];
    const Unit &u = plan.units[size_t(unitOf[i])];
    json g = {{"left", p.left}, {"right", p.right}};
    if (u.step.kind == "symo") g = {{"left", u.step.left}, {"right", u.step.right}};
    j["params"].push_back({{"index", i},
                           {"name", p.name},
                           {"shape", p.shape},
                           {"matrix", {p.rows, p.cols}},
                           {"class", p.cls},
                           {"role", p.role},
                           {"block", unitOf[i]},
                           {"claimed", {{"left", p.left}, {"right", p.right},
                                        {"left_claims", p.leftClaims}, {"right_claims", p.rightClaims},
                                        {"left_pieces", piecesText(p.leftPieces)},
                                        {"right_pieces", piecesText(p.rightPieces)}}},
                           {"group", g},
                           {"step", u.step.describe()}});
  }
  j["blocks"] = json::array();
  for (size_t k = 0; k < plan.units.size(); ++k) {
    const Unit &u = plan.units[k];
    json names = json::array();
    for (int p : u.params) names.push_back(plan.params[size_t(p)].name);
    json step = {{"kind", u.step.kind}, {"hyper", u.step.hp}};
    if (u.step.kind == "lausu") step["lausu"] = u.step.lausu;
    if (u.step.kind == "symo") step["groups"] = {u.step.left, u.step.right};
    if (!u.step.leftPieces.empty() || !u.step.rightPieces.empty()) {
      auto pj = [](const std::vector<PieceGroup> &v) {
        json a = json::array();
        for (const auto &p : v)
          a.push_back({{"offset", p.offset}, {"extent", p.extent}, {"group", p.group}, {"parts", p.parts},
                       {"claims", p.claims}});
        return a;
      };
      step["pieces"] = {{"left", pj(u.step.leftPieces)}, {"right", pj(u.step.rightPieces)}};
    }
    if (u.step.kind == "symo_coupled") {
      step["shared_group"] = u.step.left;
      step["axes"] = u.axes;
    }
    if (!u.step.gauges.empty()) {
      step["gauges"] = json::array();
      for (auto &g : u.step.gauges)
        step["gauges"].push_back({{"kind", g.kind}, {"a", g.a}, {"b", g.b}, {"c", g.c}, {"claim", g.claim}});
    }
    json ju = {{"id", k}, {"params", names}, {"step", step}, {"describe", u.step.describe()},
               {"state_bytes", u.stateBytes}, {"flops_per_step", u.flops}, {"source", u.source}};
    if (!u.note.empty()) ju["note"] = u.note;
    ju["claims"] = u.claims;
    ju["why"] = u.why;
    j["blocks"].push_back(ju);
  }
  j["notes"] = plan.notes;
  return j;
}

std::string formatPlan(const Plan &plan) {
  std::ostringstream os;
  os << "plan @" << plan.model << " {policy = \"" << plan.policy << "\", fingerprint = \""
     << plan.fingerprint << "\"}\n";
  for (size_t k = 0; k < plan.units.size(); ++k) {
    const Unit &u = plan.units[k];
    os << "  block " << k << " " << u.step.describe() << " {";
    bool first = true;
    for (auto &[n, v] : u.step.hp) {
      os << (first ? "" : ", ") << n << " = " << fmtNum(v);
      first = false;
    }
    os << "} state " << u.stateBytes << " flops " << fmt::format("{:.0f}", u.flops) << "\n";
    for (size_t i = 0; i < u.params.size(); ++i) {
      const Param &p = plan.params[size_t(u.params[i])];
      os << "    param \"" << p.name << "\" " << shapeText(p.shape) << " [" << p.cls << "] claimed "
         << p.left << " x " << p.right;
      auto cut = [](const std::vector<PieceGroup> &v) { return v.size() > 1 || (v.size() == 1 && v[0].parts > 1); };
      if (cut(p.leftPieces) || cut(p.rightPieces))
        os << " pieces " << piecesText(p.leftPieces) << " x " << piecesText(p.rightPieces);
      if (u.step.kind == "symo_coupled") os << " shared axis " << u.axes[i];
      os << "\n";
    }
    for (auto &g : u.step.gauges)
      os << "    gauge " << g.kind << " (" << g.a << ", " << g.b << ", " << g.c << ") from " << g.claim << "\n";
    if (!u.note.empty()) os << "    note: " << u.note << "\n";
    if (!u.why.empty()) {
      os << "    rule: " << u.why << " (claims: ";
      if (u.claims.empty()) os << "none";
      for (size_t i = 0; i < u.claims.size(); ++i) {
        if (i == 8) { os << ", ... " << u.claims.size() << " in all"; break; }
        os << (i ? ", " : "") << u.claims[i];
      }
      os << ")\n";
    }
  }
  for (auto &n : plan.notes) os << "  note: " << n << "\n";
  os << "}\n";
  return os.str();
}

std::string formatDryRun(const Plan &plan) {
  std::ostringstream os;
  std::vector<int> unitOf = plan.unitOf();
  size_t w = 5;
  for (auto &p : plan.params) w = std::max(w, p.name.size());
  os << fmt::format("{:<{}}  {:<10} {:<12} {:<24} {:>10} {:>10}\n", "block", w, "shape", "class", "step",
                    "state", "flops");
  for (size_t k = 0; k < plan.units.size(); ++k) {
    const Unit &u = plan.units[k];
    for (size_t i = 0; i < u.params.size(); ++i) {
      const Param &p = plan.params[size_t(u.params[i])];
      // A joint unit's cost is shown once, on its first member.
      std::string state = i == 0 ? formatBytes(u.stateBytes) : "(joint)";
      std::string fl = i == 0 ? flopsText(u.flops) : "";
      os << fmt::format("{:<{}}  {:<10} {:<12} {:<24} {:>10} {:>10}\n", p.name, w, shapeText(p.shape), p.cls,
                        u.step.describe(), state, fl);
    }
  }
  const int64_t s = plan.stateBytes(), a = plan.adamwBytes();
  os << fmt::format("\npolicy {}: {} parameters in {} blocks\n", plan.policy, plan.params.size(), plan.units.size());
  os << fmt::format("optimizer state: {} ({} bytes), AdamW: {} ({} bytes), ratio {:.3f}\n", formatBytes(s), s,
                    formatBytes(a), a, a ? double(s) / double(a) : 0.0);
  os << fmt::format("FLOPs per step (estimate): {}\n", flopsText(plan.flops()));
  for (auto &n : plan.notes) os << "note: " << n << "\n";
  return os.str();
}

} // namespace symoc::plan
