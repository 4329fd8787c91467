//===- Heads.cpp - Claims on spaces of head blocks ------------------------===//
//
// Takes a class of block nodes (runs of H blocks of d coordinates, one per
// member axis); gives its space and either a head permutation claim (blocks of
// one size) or a head-group permutation with strided members (a key/value head
// with the query heads that read it).
//
//===----------------------------------------------------------------------===//

#include "symoc/Analysis/Stages.h"

#include <fmt/core.h>

using namespace mlir;
using namespace symoc::graph;

namespace symoc {
namespace analysis {
namespace {

const Run &runOf(const SpaceGraph &g, int n) {
  return g.table.axes[g.nodes[n].axisIdx].runs[g.nodes[n].run];
}

/// Blocks of different sizes, as many in every member, permuted together: a
/// permutation of the block index, one strided member per coordinate of a
/// block. A plain member (`plain`: a parameter axis indexed by the block index
/// itself, such as a per-head bias table's head axis or the channels of a
/// convolution whose output is flattened into a linear layer's input) is a
/// block of one coordinate: one member of stride 1.
void claimHeadGroups(ClaimContext &cx, const std::vector<int> &blocks,
                     const std::vector<int> &plain, int64_t count, Space &s) {
  s.fixed = false;
  s.group = fmt::format("S groups ({})", count);
  Claim c;
  c.id = cx.newClaimId();
  c.kind = "linear";
  c.group = "S";
  c.n = count;
  c.space = s.id;
  for (int n : blocks) {
    const Run &r = runOf(cx.g, n);
    for (int64_t k = 0; k < r.size; ++k) {
      Member m = cx.memberOf(n, false);
      m.offset = r.start + k;
      m.extent = r.count;
      m.stride = r.size;
      c.members.push_back(m);
    }
  }
  for (int n : plain)
    c.members.push_back(cx.memberOf(n, false));
  c.note = plain.empty() ? "permutation of head groups (blocks of different sizes), one member "
                           "per coordinate of a block"
                         : "permutation of blocks (heads, groups of channels) with the axes "
                           "they index, one member per coordinate of a block";
  // The space is the block index (n = count): its members are the strided
  // ones, not the runs (a run spans a whole axis that is not the space).
  s.members = c.members;
  s.claimIds.push_back(c.id);
  cx.result.claims.push_back(std::move(c));
}

} // namespace

void claimHeadSpace(ClaimContext &cx, int root, const std::vector<int> &blocks,
                    const std::vector<int> &plain, Space &s) {
  // A head axis: permuting it permutes blocks of every member.
  Run r0 = runOf(cx.g, blocks[0]);
  bool uniform = plain.empty();
  for (int n : blocks) {
    const Run &r = runOf(cx.g, n);
    uniform &= r.count == r0.count && r.size == r0.size;
    s.members.push_back(cx.memberOf(n, false));
  }
  s.size = r0.count;
  unsigned bits = cx.classes.mask.at(root);
  // Blocks of different sizes, as many in every member (a key/value head with
  // the query heads that read it), and plain members of as many coordinates
  // (an axis indexed by the block index: blocks of one coordinate).
  bool sameCount = true;
  for (int n : blocks)
    sameCount &= runOf(cx.g, n).count == r0.count;
  for (int n : plain)
    sameCount &= cx.g.nodes[n].len == r0.count;
  // Every run of blocks in the class, not only the parameters', must have as many blocks:
  // the class is one permutation of the block index. A run of another count joined to it
  // means a node stands for more than a plain permutation (a batch-merged head axis's
  // coordinate q*H + k is head k for every q, I_r (x) P_H): fuzz_graphs, session 31, found
  // such a head axis (the channels of a rank-3 GroupNorm export) claimed as S of all of them.
  for (int n = 0; n < int(cx.g.nodes.size()); ++n)
    if (cx.g.nodes[n].run >= 0 && cx.g.uf.find(n).first == root && runOf(cx.g, n).count != r0.count) {
      sameCount = uniform = false;
      break;
    }
  // The heads move by permutations only where the class allows them (a class of pair
  // rotations alone, kPairs, does not: a rotation that pairs whole heads; a session-35 audit).
  const bool permutes = (bits & kPerm) != 0;
  if (!uniform && sameCount && permutes && r0.count >= 2) {
    claimHeadGroups(cx, blocks, plain, r0.count, s);
    return;
  }
  s.fixed = !permutes || !uniform || r0.count < 2;
  auto why = cx.classes.why.find(root);
  s.fixedBy = why != cx.classes.why.end() ? why->second
              : uniform ? "" : "head blocks of different sizes";
  s.group = s.fixed ? "1" : fmt::format("S heads ({}x{})", r0.count, r0.size);
  if (s.fixed)
    return;
  Claim c;
  c.id = cx.newClaimId();
  c.kind = "linear";
  c.group = "heads";
  c.heads = r0.count;
  c.headDim = r0.size;
  c.n = r0.count * r0.size;
  c.space = s.id;
  c.members = s.members;
  c.note = "permutation of attention heads (or of whole channel blocks)";
  s.claimIds.push_back(c.id);
  cx.result.claims.push_back(std::move(c));
}

} // namespace analysis
} // namespace symoc
