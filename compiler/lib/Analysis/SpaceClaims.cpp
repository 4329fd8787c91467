//===- SpaceClaims.cpp - Spaces and the claims on each --------------------===//
//
// Takes Classes and Flows; gives the result's spaces (every class with a
// parameter member, in parameter order) and their claims: heads (Heads.cpp),
// channel pairs (Rotary.cpp), else GL / O / S with the gauges inside the
// space (Gauges.cpp).
//
//===----------------------------------------------------------------------===//

#include "symoc/Analysis/Stages.h"

using namespace mlir;
using namespace symoc::graph;

namespace symoc {
namespace analysis {

Member ClaimContext::memberOf(int node, bool in) const {
  const Node &n = g.nodes[node];
  const AxisInfo &A = g.table.axes[n.axisIdx];
  Member m;
  m.initializer = A.value.getDefiningOp<ParamOp>().getName().str();
  m.axis = A.axis;
  m.offset = n.start; // a block node's start/len span its whole run
  m.extent = n.len;
  m.in = in;
  return m;
}

void ClaimContext::addLinear(Space &s, const std::string &group, std::vector<Member> members,
                             const std::string &note) {
  Claim c;
  c.id = newClaimId();
  c.kind = "linear";
  c.group = group;
  c.n = s.size;
  c.space = s.id;
  c.members = std::move(members);
  c.note = note;
  s.claimIds.push_back(c.id);
  result.claims.push_back(std::move(c));
}

namespace {

std::string groupName(unsigned bits) {
  if (bits == kNone) return "1";
  if ((bits & kAll) == kAll) return "GL";
  if (bits & kRotation) return "O";
  return "S";
}

/// The classes with parameter members, in parameter order.
std::vector<int> rootsInOrder(SpaceGraph &g, const std::vector<ParamOp> &params) {
  std::vector<int> roots;
  std::set<int> seenRoots;
  for (ParamOp p : params)
    for (int64_t a = 0, r = rankOfValue(p.getResult()); a < r; ++a) {
      std::vector<int> ns = g.allNodes(p.getResult(), a);
      for (int n : g.blockNodes(p.getResult(), a))
        ns.push_back(n);
      for (int n : ns) {
        int root = g.uf.find(n).first;
        if (seenRoots.insert(root).second)
          roots.push_back(root);
      }
    }
  return roots;
}

/// A space of plain coordinates (`pn`: its parameter nodes): fixed, or a
/// rotary space, or GL / O / S with its gauges.
void claimPlainSpace(ClaimContext &cx, int root, const std::vector<int> &pn, bool indexed,
                     Space &s) {
  SpaceGraph &g = cx.g;
  const Classes &cl = cx.classes;
  s.size = g.nodes[pn.front()].len;
  unsigned bits = cl.mask.at(root);
  auto pairing = cl.pairing.find(root);
  // A rotary space without pair generators may still get pair sign flips
  // or scalings from the flows (claimRotarySpace decides).
  bool paired = pairing != cl.pairing.end() && !pairing->second.empty();
  s.fixed = (bits == kNone && !paired) || s.size < 1;
  auto why = cl.why.find(root);
  s.fixedBy = why != cl.why.end() ? why->second : "";
  // Orientation: most members are "out".
  int outs = 0;
  for (int n : pn) outs += g.uf.find(n).second == 0;
  int flip = outs * 2 >= int(pn.size()) ? 0 : 1;
  for (int n : pn)
    s.members.push_back(cx.memberOf(n, (g.uf.find(n).second ^ flip) == 1));
  if (indexed && !s.fixed) {
    // Per-head pieces of a parameter with its own head axis: the schema has
    // no member form for them yet, so nothing is claimed.
    s.fixed = true;
    s.fixedBy = "per-head parameter layout not expressible";
  }
  if (s.fixed || s.size < 2) {
    s.group = "1";
    return;
  }
  std::set<int> pset(pn.begin(), pn.end());
  if (pairing != cl.pairing.end()) {
    claimRotarySpace(cx, root, bits, pairing->second, s, pset);
    return;
  }
  if (bits & kShear) {
    cx.addLinear(s, "GL", s.members, "every op on this space is linear");
  } else if (bits & kRotation) {
    cx.addLinear(s, "O", s.members, "every op on this space is orthogonally equivariant");
  } else {
    cx.addLinear(s, "S", s.members, "permutation of the space's coordinates");
  }
  s.group = groupName(bits);
  claimGaugesInSpace(cx, root, bits, s, pset);
}

} // namespace

void claimSpaces(ClaimContext &cx, const std::vector<ParamOp> &params) {
  static const std::vector<int> none;
  for (int root : rootsInOrder(cx.g, params)) {
    Space s;
    s.id = "s" + std::to_string(cx.result.spaces.size() + 1);
    cx.spaceOfRoot[root] = s.id;
    auto it = cx.classes.paramNodes.find(root);
    const std::vector<int> &allPn = it != cx.classes.paramNodes.end() ? it->second : none;
    std::vector<int> pn, blocks;
    bool indexed = false;
    for (int n : allPn) {
      if (cx.g.nodes[n].run >= 0) blocks.push_back(n);
      else pn.push_back(n);
      indexed |= cx.g.nodes[n].head >= 0;
    }
    if (!blocks.empty())
      claimHeadSpace(cx, root, blocks, pn, s);
    else
      claimPlainSpace(cx, root, pn, indexed, s);
    cx.result.spaces.push_back(s);
  }
}

} // namespace analysis
} // namespace symoc
