//===- Report.cpp - The analysis as JSON, text and Graphviz ---------------===//

#include "symoc/Analysis/SpaceAnalysis.h"

#include <fmt/core.h>

#include <sstream>

namespace symoc {

static nlohmann::json memberJson(const Member &m) {
  return {{"initializer", m.initializer}, {"axis", m.axis}, {"offset", m.offset},
          {"extent", m.extent},           {"stride", m.stride},
          {"variance", m.in ? "in" : "out"}};
}

nlohmann::json toJson(const AnalysisResult &r) {
  nlohmann::json j;
  j["schema"] = "symoc.symmetry/2";
  j["model"] = r.model;
  j["loss"] = r.lossAssumed;
  j["spaces"] = nlohmann::json::array();
  for (const Space &s : r.spaces) {
    nlohmann::json js{{"id", s.id}, {"size", s.size}, {"group", s.group},
                      {"claims", s.claimIds}};
    if (s.fixed && !s.fixedBy.empty())
      js["fixed_by"] = s.fixedBy;
    js["members"] = nlohmann::json::array();
    for (const Member &m : s.members)
      js["members"].push_back(memberJson(m));
    j["spaces"].push_back(js);
  }
  j["blocks"] = nlohmann::json::array();
  for (const Block &b : r.blocks)
    j["blocks"].push_back({{"name", b.name}, {"shape", b.shape}, {"role", b.role},
                           {"tied", b.tied}, {"from_constant", b.fromConstant},
                           {"axis_spaces", b.axisSpaces}});
  j["claims"] = nlohmann::json::array();
  for (const Claim &c : r.claims) {
    nlohmann::json jc{{"id", c.id}, {"kind", c.kind}, {"exact", c.exact},
                      {"note", c.note}};
    jc["members"] = nlohmann::json::array();
    if (c.kind == "linear") {
      jc["group"] = {{"name", c.group}};
      if (c.group == "heads")
        jc["group"] = {{"name", "heads"}, {"heads", c.heads}, {"head_dim", c.headDim},
                       {"outer", "S"}, {"inner", "1"}};
      if (c.group == "rope") {
        nlohmann::json pairs = nlohmann::json::array();
        for (auto [i, k] : c.pairs)
          pairs.push_back({i, k});
        jc["group"] = {{"name", "rope"}, {"pairs", pairs}, {"rotation", c.rotation},
                       {"scale", c.pairScale}};
      }
      jc["n"] = c.n;
      jc["space"] = c.space;
      for (const Member &m : c.members)
        jc["members"].push_back(memberJson(m));
    } else {
      for (size_t k = 0; k < c.members.size(); ++k)
        jc["members"].push_back({{"initializer", c.members[k].initializer},
                                 {"axis", c.members[k].axis},
                                 {"role", c.roles[k]}});
      if (!c.output.empty()) {
        jc["output"] = c.output;
        jc["output_axis"] = c.outputAxis;
      }
    }
    j["claims"].push_back(jc);
  }
  j["barriers"] = nlohmann::json::array();
  for (const Barrier &b : r.barriers)
    j["barriers"].push_back(
        {{"node", b.node}, {"op_type", b.opType}, {"reason", b.reason}, {"hint", b.hint}});
  return j;
}

// Coordinates offset + k * stride, k < extent, as a Python slice.
static std::string memberText(const Member &m) {
  if (m.stride != 1)
    return fmt::format("{}:{}[{}:{}:{}]{}", m.initializer, m.axis, m.offset,
                       m.offset + (m.extent - 1) * m.stride + 1, m.stride, m.in ? "^-T" : "");
  return fmt::format("{}:{}[{}:{}]{}", m.initializer, m.axis, m.offset,
                     m.offset + m.extent, m.in ? "^-T" : "");
}

std::string formatReport(const AnalysisResult &r) {
  std::ostringstream os;
  os << "model: " << r.model << "\nloss: " << r.lossAssumed << "\n\n";
  os << fmt::format("{:<5} {:>6}  {:<16} {}\n", "space", "size", "group", "members");
  // Per-head spaces come in runs that differ only in offsets: print the first
  // of each run and count the rest.
  auto signature = [](const Space &s) {
    std::string sig = s.group + "|" + std::to_string(s.size) + "|" + s.fixedBy;
    for (const Member &m : s.members)
      sig += "|" + m.initializer + ":" + std::to_string(m.axis) + (m.in ? "i" : "o");
    return sig;
  };
  for (size_t i = 0; i < r.spaces.size();) {
    const Space &s = r.spaces[i];
    size_t j = i + 1;
    while (j < r.spaces.size() && signature(r.spaces[j]) == signature(s))
      ++j;
    std::string members;
    for (size_t k = 0; k < s.members.size(); ++k) {
      if (k == 4) { members += fmt::format(" (+{} more)", s.members.size() - 4); break; }
      members += (k ? ", " : "") + memberText(s.members[k]);
    }
    os << fmt::format("{:<5} {:>6}  {:<16} {}\n", s.id, s.size, s.group, members);
    if (j - i > 1)
      os << fmt::format("{:<5} {:>6}  {:<16} ... and {} more like it ({} to {}), one per piece\n",
                        "", "", "", j - i - 1, r.spaces[i + 1].id, r.spaces[j - 1].id);
    if (s.fixed && !s.fixedBy.empty())
      os << fmt::format("{:<5} {:>6}  {:<16} fixed by: {}\n", "", "", "", s.fixedBy);
    i = j;
  }
  os << "\n" << fmt::format("{:<40} {:<12} {:<22} {}\n", "block", "shape", "role", "spaces per axis");
  for (const Block &b : r.blocks) {
    std::string shape, spaces;
    for (size_t k = 0; k < b.shape.size(); ++k)
      shape += (k ? "x" : "") + std::to_string(b.shape[k]);
    for (size_t a = 0; a < b.axisSpaces.size(); ++a) {
      spaces += a ? " | " : "";
      for (size_t k = 0; k < b.axisSpaces[a].size(); ++k)
        spaces += (k ? "," : "") + b.axisSpaces[a][k];
    }
    os << fmt::format("{:<40} {:<12} {:<22} {}\n", b.name, shape,
                      b.role + (b.tied ? " (tied)" : ""), spaces);
  }
  os << "\nclaims:\n";
  for (size_t i = 0; i < r.claims.size(); ++i) {
    const Claim &c = r.claims[i];
    if (c.kind == "linear") {
      size_t j = i + 1;
      while (j < r.claims.size() && r.claims[j].kind == "linear" &&
             r.claims[j].group == c.group && r.claims[j].n == c.n &&
             r.claims[j].members.size() == c.members.size() &&
             r.claims[j].note == c.note && c.group == "GL")
        ++j;
      if (j - i > 2) {
        os << fmt::format("  {}..{} {:<7} on {}..{} (n={}): {} member(s) each; {}\n",
                          c.id, r.claims[j - 1].id, c.group, c.space,
                          r.claims[j - 1].space, c.n, c.members.size(), c.note);
        i = j - 1;
        continue;
      }
      os << fmt::format("  {:<4} {:<7} on {} (n={}): {} member(s); {}\n", c.id,
                        c.group, c.space, c.n, c.members.size(), c.note);
    } else {
      std::string m;
      for (size_t k = 0; k < c.members.size(); ++k)
        m += (k ? ", " : "") + c.members[k].initializer + " (" + c.roles[k] + ")";
      os << fmt::format("  {:<4} {:<7} {}; {}\n", c.id, c.kind, m, c.note);
    }
  }
  if (!r.barriers.empty()) {
    os << "\nbarriers (every axis they touch is fixed, no rescaling passes through):\n";
    for (const Barrier &b : r.barriers)
      os << fmt::format("  {} {}: {} (hint: {})\n", b.opType, b.node, b.reason, b.hint);
  }
  return os.str();
}

std::string formatDot(const AnalysisResult &r) {
  static const char *colors[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728",
                                 "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                                 "#bcbd22", "#17becf"};
  std::ostringstream os;
  os << "digraph symmetry {\n  rankdir=LR;\n  node [fontname=\"Helvetica\"];\n";
  for (size_t k = 0; k < r.spaces.size(); ++k) {
    const Space &s = r.spaces[k];
    const char *col = s.fixed ? "#cccccc" : colors[k % 10];
    os << fmt::format("  \"{}\" [shape=ellipse, style=filled, fillcolor=\"{}\", "
                      "label=\"{}\\n{} ({})\"];\n",
                      s.id, col, s.id, s.group, s.size);
  }
  for (const Block &b : r.blocks) {
    os << fmt::format("  \"{}\" [shape=box, label=\"{}\\n{}\"];\n", b.name, b.name, b.role);
    for (size_t a = 0; a < b.axisSpaces.size(); ++a)
      for (const auto &sp : b.axisSpaces[a]) {
        size_t idx = 0;
        for (size_t k = 0; k < r.spaces.size(); ++k)
          if (r.spaces[k].id == sp) idx = k;
        const char *col = r.spaces[idx].fixed ? "#cccccc" : colors[idx % 10];
        os << fmt::format("  \"{}\" -> \"{}\" [color=\"{}\", label=\"axis {}\"];\n",
                          b.name, sp, col, a);
      }
  }
  os << "}\n";
  return os.str();
}

} // namespace symoc
