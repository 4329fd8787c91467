//===- Splits.cpp - Split-18 num_outputs; SplitToSequence -> Split --------===//

#include "Rewrite.h"

#include <map>

namespace symoc {
namespace adapter {
namespace {

int64_t axisOf(const onnx::NodeProto &n, int64_t rank) {
  int64_t a = attrInt(n, "axis", 0);
  return a < 0 ? a + rank : a;
}

/// Split-18 with num_outputs: chunks of ceil(d / k), the last one smaller.
/// Split-13 without a split input splits evenly, which is the same when the
/// dimension is divisible; with a known dimension the sizes are spelled out.
void split(Context &ctx, const onnx::NodeProto &node, int64_t v,
           std::vector<onnx::NodeProto> &out) {
  onnx::NodeProto n = node;
  auto *k = attr(n, "num_outputs");
  if (!k) {
    out.push_back(std::move(n));
    return;
  }
  int64_t parts = k->i();
  eraseAttr(n, "num_outputs");
  if (parts <= 0 || parts != n.output_size())
    ctx.fail(n, v, "num_outputs=" + std::to_string(parts) + " but the node has " +
                       std::to_string(n.output_size()) + " outputs");
  auto shape = ctx.shape(n.input(0));
  if (shape) {
    const int64_t rank = int64_t(shape->size()), axis = axisOf(n, rank);
    if (axis < 0 || axis >= rank)
      ctx.fail(n, v, "axis " + std::to_string(attrInt(n, "axis", 0)) + " is out of range for an input of rank " +
                         std::to_string(rank));
    int64_t d = (*shape)[size_t(axis)];
    int64_t chunk = (d + parts - 1) / parts;
    std::vector<int64_t> sizes;
    for (int64_t i = 0, left = d; i < parts; ++i, left -= chunk)
      sizes.push_back(std::max<int64_t>(0, std::min(chunk, left)));
    while (n.input_size() < 2)
      n.add_input("");
    n.set_input(1, ctx.addInts(sizes, {parts}, "split"));
  }
  out.push_back(std::move(n));
}

} // namespace

void addSplits(Table &t) { t[{"Split", 18}] = split; }

/// torch.split with optimize=False: SplitToSequence(x, chunk size or sizes)
/// read back element by element with SequenceAt(seq, constant index). When
/// every use of the sequence is such a SequenceAt, it is one Split whose
/// outputs the SequenceAt nodes become (Identity).
int splitSequencesToSplit(Context &ctx) {
  auto &g = ctx.graph();
  std::map<std::string, std::vector<int>> users;
  for (int i = 0; i < g.node_size(); ++i)
    for (const auto &in : g.node(i).input())
      users[in].push_back(i);
  std::set<std::string> outputs;
  for (const auto &o : g.output())
    outputs.insert(o.name());
  std::map<int, std::vector<onnx::NodeProto>> replace; // node index -> nodes
  std::set<int> dropped;
  int count = 0;
  for (int i = 0; i < g.node_size(); ++i) {
    const auto &n = g.node(i);
    if (n.op_type() != "SplitToSequence" || n.output_size() != 1 ||
        outputs.count(n.output(0)))
      continue;
    // The axis's size matters only for chunks; other dims may be unknown.
    auto shape = ctx.partialShape(n.input(0));
    if (!shape)
      continue;
    int64_t rank = int64_t(shape->size()), axis = axisOf(n, rank);
    if (axis < 0 || axis >= rank)
      continue;
    int64_t d = (*shape)[size_t(axis)];
    bool keepdims = attrInt(n, "keepdims", 1) != 0, dynamicSizes = false;
    std::vector<int64_t> sizes;
    if (!hasInput(n, 1)) {
      if (d < 0)
        continue;
      sizes.assign(size_t(d), 1);
    } else if (auto s = ctx.ints(n.input(1)); s && ctx.shape(n.input(1)) &&
                                              ctx.shape(n.input(1))->empty()) {
      int64_t c = (*s)[0];
      if (c <= 0 || d < 0)
        continue;
      for (int64_t left = d; left > 0; left -= c)
        sizes.push_back(std::min(c, left));
      keepdims = true;
    } else if (s) {
      sizes = *s;
      keepdims = true;
    } else if (auto ss = ctx.shape(n.input(1)); ss && ss->size() == 1 && (*ss)[0] > 0) {
      // Sizes computed from data (torch.split by tokens per expert): a Split
      // with a runtime `split` input, one output per size.
      dynamicSizes = true;
      sizes.assign(size_t((*ss)[0]), -1);
      keepdims = true;
    } else {
      continue;
    }
    bool ok = true;
    std::vector<std::pair<int, int64_t>> reads; // SequenceAt node, index
    for (int u : users[n.output(0)]) {
      const auto &at = g.node(u);
      auto idx = at.op_type() == "SequenceAt" && at.input(0) == n.output(0)
                     ? ctx.ints(at.input(1))
                     : std::nullopt;
      if (!idx || idx->size() != 1) {
        ok = false;
        break;
      }
      int64_t k = (*idx)[0] < 0 ? (*idx)[0] + int64_t(sizes.size()) : (*idx)[0];
      if (k < 0 || k >= int64_t(sizes.size())) {
        ok = false;
        break;
      }
      reads.push_back({u, k});
    }
    if (!ok || reads.empty())
      continue;
    std::vector<onnx::NodeProto> nodes;
    std::vector<std::string> parts;
    for (size_t k = 0; k < sizes.size(); ++k)
      parts.push_back(ctx.fresh("split"));
    auto &s = ctx.node(nodes, "Split",
                       {n.input(0), dynamicSizes
                                        ? n.input(1)
                                        : ctx.addInts(sizes, {int64_t(sizes.size())}, "sizes")},
                       parts, nodeName(n));
    setInt(s, "axis", axis);
    replace[i] = nodes;
    for (auto [u, k] : reads) {
      std::vector<onnx::NodeProto> r;
      const auto &at = g.node(u);
      if (keepdims) {
        ctx.node(r, "Identity", {parts[size_t(k)]}, {at.output(0)}, nodeName(at));
      } else {
        ctx.node(r, "Squeeze", {parts[size_t(k)], ctx.addInts({axis}, {1}, "axes")},
                 {at.output(0)}, nodeName(at));
      }
      replace[u] = r;
    }
    ++count;
  }
  if (!count)
    return 0;
  google::protobuf::RepeatedPtrField<onnx::NodeProto> nodes;
  for (int i = 0; i < g.node_size(); ++i) {
    auto it = replace.find(i);
    if (it == replace.end()) {
      *nodes.Add() = g.node(i);
      continue;
    }
    for (auto &r : it->second)
      *nodes.Add() = r;
  }
  g.mutable_node()->Swap(&nodes);
  return count;
}

} // namespace adapter
} // namespace symoc
