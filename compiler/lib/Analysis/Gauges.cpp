//===- Gauges.cpp - Sign and scale gauges from the flow kernels -----------===//
//
// Takes a space and the flow kernels; gives its Z2 and Scale+ claims (kernel
// vectors whose support is inside the space) and, for the whole model, the
// uniform scale claims on whole tensors that a LayerNorm / RMSNorm absorbs.
//
//===----------------------------------------------------------------------===//

#include "symoc/Analysis/Stages.h"

#include <cstdlib>

using namespace mlir;
using namespace symoc::graph;

namespace symoc {
namespace analysis {
namespace {

/// Sign gauges inside the space; returns how many, and sets `fullSign` when
/// one flips every member.
int claimSignGauges(ClaimContext &cx, int root, Space &s, const std::set<int> &pset,
                    bool &fullSign) {
  int signClaims = 0;
  for (auto &vec : cx.flows.sign) {
    int r0 = cx.g.uf.find(vec.begin()->first).first;
    if (r0 != root) continue;
    bool inside = true;
    std::vector<Member> members;
    for (auto [n, v] : vec) {
      if (cx.g.uf.find(n).first != root) { inside = false; break; }
      if (pset.count(n)) members.push_back(cx.memberOf(n, false));
    }
    if (!inside || members.empty()) continue;
    if (members.size() == s.members.size()) fullSign = true;
    ++signClaims;
    cx.addLinear(s, "Z2", members, "sign flips of the space's coordinates");
  }
  return signClaims;
}

/// Exact and approximate scale gauges inside the space; true when an exact
/// one was claimed.
bool claimScaleGauges(ClaimContext &cx, int root, Space &s, const std::set<int> &pset) {
  // A kernel vector inside this space with unit exponents: its parameter
  // members (empty when it is not one).
  auto scaleMembers = [&](const std::map<int, int64_t> &vec) {
    std::vector<Member> members;
    if (cx.g.uf.find(vec.begin()->first).first != root) return members;
    for (auto [n, v] : vec) {
      if (cx.g.uf.find(n).first != root || std::llabs(v) != 1) return std::vector<Member>{};
      if (pset.count(n)) members.push_back(cx.memberOf(n, v < 0));
    }
    return members;
  };
  bool hasScale = false;
  for (auto &vec : cx.flows.scale) {
    std::vector<Member> members = scaleMembers(vec);
    if (members.empty()) continue;
    hasScale = true;
    cx.addLinear(s, "Scale+", members, "positive rescaling (a gauge)");
  }
  for (auto &[vec, why] : cx.flows.approxScale) {
    std::vector<Member> members = scaleMembers(vec);
    if (members.empty()) continue;
    cx.addLinear(s, "Scale+", members, "positive rescaling absorbed by " + why +
                                           " (approximate: exact only without epsilon)");
    cx.result.claims.back().exact = false;
  }
  return hasScale;
}

} // namespace

void claimGaugesInSpace(ClaimContext &cx, int root, unsigned bits, Space &s,
                        const std::set<int> &pset) {
  bool fullSign = false, hasScale = false;
  int signClaims = 0;
  if (!(bits & kRotation))
    signClaims = claimSignGauges(cx, root, s, pset, fullSign);
  if (!(bits & kShear))
    hasScale = claimScaleGauges(cx, root, s, pset);
  std::string summary = s.group;
  if (summary == "S") {
    if (fullSign) summary = "B";
    else if (signClaims) summary = "S x Z2";
  }
  if (hasScale) summary += " x Scale+";
  s.group = summary;
}

// Uniform scale gauges (a LayerNorm/RMSNorm absorbs one factor shared by its
// whole input): whole tensors times c^{+-1}. Claimed only when every node of
// the vector is a whole parameter axis piece (no heads, no blocks) and each
// tensor's exponents add up to the same sign.
void claimUniformScales(ClaimContext &cx, const std::vector<ParamOp> &paramOrder) {
  std::map<std::string, ParamOp> params;
  for (ParamOp p : paramOrder)
    params[p.getName().str()] = p;
  const auto &nodes = cx.g.nodes;
  const auto &table = cx.g.table;
  for (auto &[vec, why] : cx.flows.uniformScale) {
    std::map<std::string, std::map<int64_t, std::pair<int64_t, int64_t>>> cover; // init -> axis -> (exp, length)
    std::map<std::string, int64_t> power;
    bool ok = true;
    for (auto [n, v] : vec) {
      const Node &nd = nodes[n];
      const AxisInfo &A = table.axes[nd.axisIdx];
      if (!definedByParam(A.value)) continue; // an intermediate value
      if (nd.head >= 0 || nd.run >= 0) { ok = false; break; }
      std::string name = A.value.getDefiningOp<ParamOp>().getName().str();
      auto &slot = cover[name][A.axis];
      if (slot.second > 0 && slot.first != v) { ok = false; break; }
      slot.first = v;
      slot.second += nd.len;
    }
    int sign = 0;
    std::vector<Member> members;
    for (auto &[name, axes] : cover) {
      if (!ok) break;
      int64_t sum = 0;
      for (auto &[axis, ec] : axes) {
        if (ec.second != cast<RankedTensorType>(params[name].getType()).getDimSize(axis)) {
          ok = false;
          break;
        }
        sum += ec.first;
      }
      if (!ok || sum == 0) continue;
      if (std::llabs(sum) != 1 || (sign && sign != int(sum))) { ok = false; break; }
      sign = int(sum);
      Member m;
      m.initializer = name;
      members.push_back(m);
    }
    if (!ok || members.empty()) continue;
    Claim c;
    c.id = cx.newClaimId();
    c.kind = "scale";
    c.group = "scale";
    c.exact = false;
    c.members = std::move(members);
    c.roles.assign(c.members.size(), "tensor");
    c.note = "one positive factor on these whole tensors, absorbed by " + why +
             " (approximate: exact only without epsilon)";
    cx.result.claims.push_back(std::move(c));
  }
}

} // namespace analysis
} // namespace symoc
