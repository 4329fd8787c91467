//===- OpsetAdapter.cpp - Opset 18-24 models in their opset-17 form -------===//

#include "symoc/OpsetAdapter/OpsetAdapter.h"

#include "Rewrite.h"
#include "symoc/ModelIO/ModelIO.h"

#include <onnx/defs/schema.h>

#include <sstream>

namespace symoc {
namespace adapter {
namespace {

const Table &table() {
  static const Table t = [] {
    Table t;
    addTypesOnly(t);
    addReductions(t);
    addSplits(t);
    addAttributeChanges(t);
    addActivations(t);
    addNormalizations(t);
    addAttention(t);
    addRotary(t);
    return t;
  }();
  return t;
}

/// Marks, during adaptation, the nodes a rewrite wrote (the graph is read
/// again after shape inference when some rewrite had to wait).
constexpr const char *kDoneAttr = "__symoc_adapted";

bool defaultDomain(const onnx::NodeProto &n) {
  return n.domain().empty() || n.domain() == "ai.onnx";
}

/// The node's schema version in a model of `opset`: its newest version after
/// 17 that is <= opset, or 0 when the opset-17 schema applies.
int64_t versionAfter17(const std::string &op, int64_t opset) {
  const auto &v = versionsAfter17();
  auto it = v.find(op);
  int64_t best = 0;
  if (it != v.end())
    for (int64_t x : it->second)
      if (x <= opset && x > best)
        best = x;
  return best;
}

/// One pass over a graph (subgraphs included). A rewrite that fails is kept
/// for the next pass when `defer` is set: it may need the shape of a value
/// that an earlier rewrite of this pass produced, known only once shape
/// inference has run again.
class GraphRewriter {
public:
  GraphRewriter(Context &ctx, int64_t opset) : ctx(ctx), opset(opset) {}

  void run(onnx::GraphProto &g, bool defer) {
    std::vector<onnx::NodeProto> out;
    out.reserve(size_t(g.node_size()));
    for (auto &n : *g.mutable_node()) {
      for (auto &a : *n.mutable_attribute()) {
        if (a.has_g())
          run(*a.mutable_g(), defer);
        for (auto &sg : *a.mutable_graphs())
          run(sg, defer);
      }
      if (!defaultDomain(n) || attr(n, kDoneAttr)) {
        out.push_back(n);
        continue;
      }
      int64_t v = versionAfter17(n.op_type(), opset);
      if (v == 0) {
        if (!onnx::OpSchemaRegistry::Schema(n.op_type(), kNativeOpset, ""))
          ctx.fail(n, opset, "not an ONNX operator symoc knows (ONNX 1.12 and the opset "
                             "18-24 rewrites have no schema for it)");
        out.push_back(n);
        continue;
      }
      auto it = table().find({n.op_type(), v});
      if (it == table().end())
        ctx.fail(n, v, "symoc has no opset-17 form for this operator version; "
                       "export with an opset where the model avoids it");
      size_t mark = out.size();
      try {
        it->second(ctx, n, v, out);
      } catch (const Error &e) {
        if (!defer)
          throw;
        out.resize(mark);
        out.push_back(n); // as it is, for the next pass
        ++deferred;
        continue;
      }
      ++done;
      ++counts[n.op_type() + "-" + std::to_string(v)];
      // What a rewrite wrote is in opset-17 form: not looked at again.
      for (size_t k = mark; k < out.size(); ++k)
        setInt(out[k], kDoneAttr, 1);
    }
    google::protobuf::RepeatedPtrField<onnx::NodeProto> nodes;
    for (auto &n : out)
      *nodes.Add() = std::move(n);
    g.mutable_node()->Swap(&nodes);
  }

  std::map<std::string, int> counts;
  int done = 0, deferred = 0;

private:
  Context &ctx;
  int64_t opset;
};

void stripDoneMarks(onnx::GraphProto &g) {
  for (auto &n : *g.mutable_node()) {
    eraseAttr(n, kDoneAttr);
    for (auto &a : *n.mutable_attribute()) {
      if (a.has_g())
        stripDoneMarks(*a.mutable_g());
      for (auto &sg : *a.mutable_graphs())
        stripDoneMarks(sg);
    }
  }
}

/// Removes the value_info entries of non-initializers and returns them.
std::vector<onnx::ValueInfoProto> takeValueShapes(onnx::ModelProto &model) {
  auto &g = *model.mutable_graph();
  std::set<std::string> inits;
  for (const auto &t : g.initializer())
    inits.insert(t.name());
  google::protobuf::RepeatedPtrField<onnx::ValueInfoProto> kept;
  std::vector<onnx::ValueInfoProto> taken;
  for (const auto &vi : g.value_info())
    (inits.count(vi.name()) ? *kept.Add() : taken.emplace_back()) = vi;
  g.mutable_value_info()->Swap(&kept);
  return taken;
}

bool fullyStatic(const onnx::ValueInfoProto &vi) {
  if (!vi.type().has_tensor_type() || !vi.type().tensor_type().has_shape())
    return false;
  for (const auto &d : vi.type().tensor_type().shape().dim())
    if (!d.has_dim_value())
      return false;
  return true;
}

/// Gives back the exporter's shapes of values ONNX 1.12 could not infer
/// (shape arithmetic it cannot see through), and of nothing else; returns the
/// names given back.
std::set<std::string> restoreMissingShapes(onnx::ModelProto &model,
                                           const std::vector<onnx::ValueInfoProto> &hints,
                                           const std::set<std::string> &refused) {
  std::set<std::string> restored;
  auto &g = *model.mutable_graph();
  std::set<std::string> known;
  for (const auto &vi : g.value_info())
    if (fullyStatic(vi))
      known.insert(vi.name());
  std::set<std::string> produced;
  for (const auto &n : g.node())
    for (const auto &o : n.output())
      produced.insert(o);
  for (const auto &h : hints)
    if (!known.count(h.name()) && produced.count(h.name()) && fullyStatic(h) &&
        !refused.count(h.name())) {
      restored.insert(h.name());
      for (int i = 0; i < g.value_info_size(); ++i)
        if (g.value_info(i).name() == h.name()) {
          g.mutable_value_info()->SwapElements(i, g.value_info_size() - 1);
          g.mutable_value_info()->RemoveLast();
          break;
        }
      *g.add_value_info() = h;
    }
  return restored;
}

/// The outputs of the node ONNX shape inference names in `error`
/// ("... node name: N): ...").
std::set<std::string> outputsNamedIn(const onnx::ModelProto &model, const std::string &error) {
  std::set<std::string> out;
  size_t at = error.find("node name: ");
  if (at == std::string::npos)
    return out;
  at += 11;
  std::string node = error.substr(at, error.find(')', at) - at);
  for (const auto &n : model.graph().node())
    if (n.name() == node)
      out.insert(n.output().begin(), n.output().end());
  return out;
}

void removeValueInfo(onnx::ModelProto &model, const std::set<std::string> &names) {
  auto &g = *model.mutable_graph();
  google::protobuf::RepeatedPtrField<onnx::ValueInfoProto> kept;
  for (const auto &vi : g.value_info())
    if (!names.count(vi.name()))
      *kept.Add() = vi;
  g.mutable_value_info()->Swap(&kept);
}

/// Initializers and Constant-node outputs that some node reads (subgraphs' reads included by
/// name).
std::set<std::string> readStoredTensors(const onnx::GraphProto &g) {
  std::set<std::string> inits, read;
  for (const auto &t : g.initializer())
    inits.insert(t.name());
  // Constant nodes too: with --constant-params they are the weights.
  for (const auto &n : g.node())
    if (n.op_type() == "Constant" && (n.domain().empty() || n.domain() == "ai.onnx"))
      for (const auto &o : n.output())
        inits.insert(o);
  for (const auto &n : g.node())
    for (const auto &i : n.input())
      if (inits.count(i))
        read.insert(i);
  return read;
}

void setDefaultOpset(onnx::ModelProto &model, int64_t v) {
  for (auto &op : *model.mutable_opset_import())
    if (op.domain().empty() || op.domain() == "ai.onnx")
      op.set_version(v);
}

void recordConstants(onnx::ModelProto &model, const std::set<std::string> &names) {
  if (names.empty())
    return;
  std::string joined;
  for (const auto &n : names)
    joined += n + "\n";
  for (auto &kv : *model.mutable_metadata_props())
    if (kv.key() == kAdapterConstantsKey) {
      kv.set_value(kv.value() + joined);
      return;
    }
  auto *kv = model.add_metadata_props();
  kv->set_key(kAdapterConstantsKey);
  kv->set_value(joined);
}

} // namespace
} // namespace adapter

void adaptModel(onnx::ModelProto &model, const std::string &path, const ConstantFolder &fold,
                AdapterNotes &notes) {
  using namespace adapter;
  for (const auto &kv : model.metadata_props())
    if (kv.key() == kAdaptedKey)
      return; // adapted before (symoc verify adapts, then imports)
  int64_t opset = opsetVersion(model, "");
  if (opset < 0)
    fail(path, "model does not import the default ONNX domain");
  if (opset > kMaxOpset)
    fail(path, "opset " + std::to_string(opset) + " is newer than symoc reads (opsets " +
                   std::to_string(kMinOpset) + " to " + std::to_string(kMaxOpset) + ")");
  if (opset < kMinOpset)
    fail(path, "opset " + std::to_string(opset) + " is too old (symoc reads opsets " +
                   std::to_string(kMinOpset) + " to " + std::to_string(kMaxOpset) + ")");
  if (model.ir_version() > kMaxIrVersion)
    fail(path, "IR version " + std::to_string(model.ir_version()) +
                   " is newer than symoc reads (up to " + std::to_string(kMaxIrVersion) + ")");
  if (model.ir_version() > kNativeIrVersion)
    model.set_ir_version(kNativeIrVersion);

  // Axes, pads and split sizes computed by small constant subgraphs
  // (Reshape(Constant), Concat, Cast) become initializers first; a
  // SplitToSequence of a native-opset file needs the inferred shapes too.
  bool sequences = false;
  for (const auto &n : model.graph().node())
    sequences |= n.op_type() == "SplitToSequence";
  if (opset > kNativeOpset || sequences)
    fold(model, false);
  Context ctx(model, path);
  if (int rewritten = splitSequencesToSplit(ctx))
    notes.lines.push_back("rewrote " + std::to_string(rewritten) +
                          " SplitToSequence/SequenceAt groups as Split");
  ctx.index();
  if (opset > kNativeOpset) {
    // A rewrite that reads an initializer's values into a constant of its own (RotaryEmbedding's
    // caches into its tables, Resize-18's roi and scales) leaves the initializer unread: it is a
    // table the exporter computed, not a weight, and a claim on it would be vacuous in the
    // adapted graph but false for the model as written (GL on the cos / sin caches).
    const std::set<std::string> readBefore = readStoredTensors(model.graph());
    GraphRewriter rw(ctx, opset);
    // Rewrites that need shapes produced by other rewrites wait for shape
    // inference on the partly rewritten graph; the last pass reports what
    // still fails.
    for (int pass = 0;; ++pass) {
      rw.done = rw.deferred = 0;
      rw.run(*model.mutable_graph(), /*defer=*/pass < 8);
      if (!rw.deferred)
        break;
      fold(model, /*complete=*/true);
      ctx.index();
    }
    stripDoneMarks(*model.mutable_graph());
    const std::set<std::string> readAfter = readStoredTensors(model.graph());
    for (const auto &name : readBefore)
      if (!readAfter.count(name))
        ctx.constants.insert(name);
    setDefaultOpset(model, kNativeOpset);
    // The exporter's value_info shapes (kept until now: the rewrites read
    // ranks from them, and ONNX 1.12's data propagation crashes on Shape of a
    // value of unknown rank) came from schemas ONNX 1.12 does not have; where
    // its inference disagrees with one it stops, so they are left to ONNX 1.12
    // now (entries of initializers stay: they carry the metadata
    // ParameterNames.cpp reads).
    auto hints = takeValueShapes(model);
    fold(model, false);
    // A given-back shape that ONNX 1.12 then infers differently stops its
    // inference: such shapes are taken out again, one node at a time.
    std::set<std::string> refused;
    for (int round = 0; round < 16; ++round) {
      std::set<std::string> restored = restoreMissingShapes(model, hints, refused);
      if (restored.empty())
        break;
      onnx::ModelProto probe = model;
      std::string err = fold(probe, false);
      std::set<std::string> bad = outputsNamedIn(model, err);
      if (err.find("differ") == std::string::npos || bad.empty())
        break;
      refused.insert(bad.begin(), bad.end());
      removeValueInfo(model, restored);
    }
    std::ostringstream os;
    os << "read opset " << opset << " as opset " << kNativeOpset;
    if (!rw.counts.empty()) {
      os << ", rewriting";
      for (const auto &[k, c] : rw.counts)
        os << " " << k << " x" << c;
    }
    notes.lines.push_back(os.str());
    ctx.index();
  }
  recoverParameterNames(model, ctx, notes.lines);
  recordConstants(model, ctx.constants);
  auto *done = model.add_metadata_props();
  done->set_key(kAdaptedKey);
  done->set_value("1");
}

std::set<std::string> adapterConstants(const onnx::ModelProto &model) {
  std::set<std::string> out;
  for (const auto &kv : model.metadata_props())
    if (kv.key() == kAdapterConstantsKey) {
      std::istringstream is(kv.value());
      std::string line;
      while (std::getline(is, line))
        if (!line.empty())
          out.insert(line);
    }
  return out;
}

} // namespace symoc
