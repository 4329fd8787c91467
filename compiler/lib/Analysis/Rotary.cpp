//===- Rotary.cpp - Claims on a rotary space (channel pairs) --------------===//
//
// Takes a class with a channel pairing (a rotary map reached it), its group
// bits and the flow kernels; gives the pair claims ("rope": rotations and/or
// positive scalings inside each pair, or pair sign flips / scalings from the
// flows) and the space's group summary.
//
//===----------------------------------------------------------------------===//

#include "symoc/Analysis/Stages.h"

#include <fmt/core.h>

#include <cstdlib>

using namespace symoc::graph;

namespace symoc {
namespace analysis {
namespace {

/// "pairs i, i+4" (rotate-half), "pairs 2i, 2i+1" (interleaved) or the list.
std::string pairText(const std::vector<std::pair<int64_t, int64_t>> &pairs, int64_t n) {
  bool half = int64_t(pairs.size()) * 2 == n, adjacent = half;
  for (size_t k = 0; k < pairs.size(); ++k) {
    half &= pairs[k] == std::make_pair(int64_t(k), int64_t(k) + n / 2);
    adjacent &= pairs[k] == std::make_pair(2 * int64_t(k), 2 * int64_t(k) + 1);
  }
  if (half) return fmt::format("pairs i, i+{}", n / 2);
  if (adjacent) return "pairs 2i, 2i+1";
  std::string s = "pairs";
  for (size_t k = 0; k < pairs.size() && k < 6; ++k)
    s += fmt::format(" ({},{})", pairs[k].first, pairs[k].second);
  if (pairs.size() > 6) s += fmt::format(" ... ({} pairs)", pairs.size());
  return s;
}

} // namespace

// The pair group the bits give (rotations and/or positive scalings inside
// each pair, the identity on channels in no pair), and from the flows, when
// the bits do not already give them, pair sign flips or pair scalings on the
// members of a kernel vector inside the space: a kernel vector allows any
// diagonal sign (scale) that every other op passes; the rotary map needs the
// same one on both channels of a pair, which is such a diagonal.
void claimRotarySpace(ClaimContext &cx, int root, unsigned bits, const Pairing &pairSet,
                      Space &s, const std::set<int> &pset) {
  std::vector<std::pair<int64_t, int64_t>> pairs(pairSet.begin(), pairSet.end());
  std::string desc = pairText(pairs, s.size);
  auto add = [&](const std::string &rotation, bool scale, std::vector<Member> members,
                 const std::string &note) {
    Claim c;
    c.id = cx.newClaimId();
    c.kind = "linear";
    c.group = "rope";
    c.n = s.size;
    c.space = s.id;
    c.members = std::move(members);
    c.pairs = pairs;
    c.rotation = rotation;
    c.pairScale = scale;
    c.note = note;
    s.claimIds.push_back(c.id);
    cx.result.claims.push_back(std::move(c));
  };
  bool rot = bits & kPairRotation, scale = bits & kPairScale;
  bool flowSign = false, flowScale = false;
  if (rot || scale)
    add(rot ? "SO2" : "none", scale, s.members,
        std::string(rot && scale ? "rotation-scaling" : rot ? "rotation" : "positive scaling") +
            " of each channel pair (" + desc + ") commutes with the rotary map");
  auto inside = [&](const std::map<int, int64_t> &vec) {
    for (auto [n, v] : vec)
      if (cx.g.uf.find(n).first != root) return false;
    return cx.g.uf.find(vec.begin()->first).first == root;
  };
  if (!rot)
    for (auto &vec : cx.flows.sign) {
      if (vec.empty() || !inside(vec)) continue;
      std::vector<Member> members;
      for (auto [n, v] : vec)
        if (pset.count(n)) members.push_back(cx.memberOf(n, false));
      if (members.empty()) continue;
      flowSign = true;
      add("sign", false, members, "sign flip of whole channel pairs (" + desc + ")");
    }
  if (!scale)
    for (auto &vec : cx.flows.scale) {
      if (vec.empty() || !inside(vec)) continue;
      bool unit = true;
      std::vector<Member> members;
      for (auto [n, v] : vec) {
        if (std::llabs(v) != 1) unit = false;
        if (pset.count(n)) members.push_back(cx.memberOf(n, v < 0));
      }
      if (!unit || members.empty()) continue;
      flowScale = true;
      add("none", true, members, "one positive factor per channel pair (" + desc + "), a gauge");
    }
  std::string k = std::to_string(pairs.size());
  std::vector<std::string> parts;
  if (rot) parts.push_back("SO(2)^" + k);
  else if (flowSign) parts.push_back("Z2^" + k);
  if (scale || flowScale) parts.push_back("Scale+^" + k);
  if (parts.empty()) {
    s.fixed = true;
    s.group = "1";
    if (s.fixedBy.empty()) s.fixedBy = "rotary map: no pair generator survives";
    return;
  }
  s.group.clear();
  for (const auto &p : parts) s.group += (s.group.empty() ? "" : " x ") + p;
  s.group += " (" + desc + ")";
}

} // namespace analysis
} // namespace symoc
