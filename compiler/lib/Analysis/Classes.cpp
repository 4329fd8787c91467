//===- Classes.cpp - The group each class of axes allows ------------------===//
//
// Takes the SpaceGraph; gives Classes: per union-find class the generators
// every restriction on it allows (the meet), what fixed it, its channel
// pairing when a rotary map reached it, and its parameter nodes.
//
//===----------------------------------------------------------------------===//

#include "symoc/Analysis/Stages.h"

using namespace mlir;
using namespace symoc::graph;

namespace symoc {
namespace analysis {
namespace {

/// A class that a pair restriction reached (a rotary map's channels) has a
/// pairing: the meet of two pairings keeps the common pairs (channels in
/// differing pairs get the identity, a subgroup), and its group is the pair
/// generators that every restriction allows (pairBitsOf).
void meetRestrictions(SpaceGraph &g, Classes &cl) {
  auto &mask = cl.mask;
  auto &why = cl.why;
  auto &pairing = cl.pairing;
  auto effective = [&](int root) -> unsigned {
    if (pairing.count(root))
      return pairing[root].empty() ? kNone : (mask[root] & kPairs);
    return normalizeGroup(mask[root] & kAll);
  };
  for (size_t i = 0; i < g.nodes.size(); ++i)
    mask[g.uf.find(int(i)).first] = kAll | kPairs;
  for (const Restriction &r : g.restrictions) {
    int root = g.uf.find(r.node).first;
    unsigned before = effective(root);
    if (r.hasPairs) {
      Pairing p(r.pairs.begin(), r.pairs.end());
      if (!pairing.count(root)) {
        pairing[root] = p;
      } else {
        Pairing common;
        for (const auto &q : pairing[root])
          if (p.count(q)) common.insert(q);
        pairing[root] = common;
      }
      mask[root] &= r.bits & kPairs;
    } else {
      mask[root] &= r.bits | pairBitsOf(r.bits);
    }
    if (effective(root) == kNone && before != kNone)
      why[root] = r.why;
  }
  for (auto &[root, bits] : mask)
    bits = effective(root);
}

/// Parameter nodes per class, laying out the parameters' axes that no rule
/// touched (they get the full group: nothing restricts them).
void collectParamNodes(SpaceGraph &g, const std::vector<ParamOp> &params, Classes &cl) {
  for (ParamOp p : params)
    for (int64_t a = 0, r = rankOfValue(p.getResult()); a < r; ++a) {
      for (int n : g.allNodes(p.getResult(), a))
        cl.paramNodes[g.uf.find(n).first].push_back(n);
      for (int n : g.blockNodes(p.getResult(), a))
        cl.paramNodes[g.uf.find(n).first].push_back(n);
    }
  // Nodes created late (params never touched) need masks too.
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    int root = g.uf.find(int(i)).first;
    if (!cl.mask.count(root)) cl.mask[root] = normalizeGroup(kAll);
  }
}

} // namespace

Classes classify(SpaceGraph &g, const std::vector<ParamOp> &params) {
  Classes cl;
  meetRestrictions(g, cl);
  collectParamNodes(g, params, cl);
  return cl;
}

} // namespace analysis
} // namespace symoc
