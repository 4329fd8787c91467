//===- OpsetAdapter.h - Opset 18-24 models in their opset-17 form -*- C++ -*-===//
//
// symoc is built on ONNX 1.12, whose schemas (shape inference) end at opset 17,
// while today's exporters write opset 18 to 24 (torch's dynamo exporter: 20).
// The adapter rewrites such a model in memory, before shape inference, into the
// form ONNX 1.12 and symoc's rules understand: every node whose schema changed
// after opset 17 is looked up by (op type, since-version) in a table of
// rewrites (one file per concern in compiler/lib/OpsetAdapter); ops new after
// 17 are spelled with opset-17 ops in the patterns the recomposition passes
// turn back into graph.Gelu, graph.RMSNormalization, graph.Rotary, ... so the
// existing rules apply. A node the table does not know, or a rewrite whose
// condition does not hold (axes computed at run time, an attribute value
// without an opset-17 equivalent) is one error naming op, version and node.
//
// It also recovers torch parameter names from what torch's exporter leaves in
// value_info metadata (see ParameterNames.cpp) and says, as notes, what the
// file no longer separates.
//
//===----------------------------------------------------------------------===//
#ifndef SYMOC_OPSETADAPTER_OPSETADAPTER_H
#define SYMOC_OPSETADAPTER_OPSETADAPTER_H

#include <onnx/onnx_pb.h>

#include <functional>
#include <set>
#include <string>
#include <vector>

namespace symoc {

/// Default-domain opsets and IR versions symoc reads.
constexpr int64_t kMinOpset = 7, kMaxOpset = 24, kNativeOpset = 17;
constexpr int64_t kMaxIrVersion = 12, kNativeIrVersion = 8;

/// The model metadata key under which the adapter lists (one per line) the
/// float initializers that are constants, not parameters (masks and tables the
/// exporter computed, buffers, tensors it made up). The importer never trains
/// them.
inline constexpr const char *kAdapterConstantsKey = "symoc.adapter.constants";

/// Marks a model adaptModel has rewritten (it returns at once on such a model).
inline constexpr const char *kAdaptedKey = "symoc.adapter.done";

struct AdapterNotes {
  std::vector<std::string> lines;
};

/// Runs ONNX shape inference and folds constant integer subgraphs
/// (Reshape(Constant), Concat, Cast, ...) into initializers; supplied by the
/// importer (its shape folding). With `complete`, also symoc's own shape
/// functions where ONNX 1.12's inference stops (a rank-only Einsum), as the
/// importer does after adapting: asked for between the passes that wait for
/// shapes, when every node but those waiting is in its opset-17 form.
/// Returns shape inference's error text, or "".
using ConstantFolder = std::function<std::string(onnx::ModelProto &, bool complete)>;

/// Rewrites `model` (opset 7..24, IR <= 12) in place into its opset-17 form and
/// recovers parameter names. A model already at opset <= 17 without exporter
/// metadata is left as it is, so calling this twice is harmless. Throws
/// symoc::Error ("PATH: problem") for what cannot be rewritten.
void adaptModel(onnx::ModelProto &model, const std::string &path,
                const ConstantFolder &fold, AdapterNotes &notes);

/// The constants listed under kAdapterConstantsKey.
std::set<std::string> adapterConstants(const onnx::ModelProto &model);

} // namespace symoc

#endif // SYMOC_OPSETADAPTER_OPSETADAPTER_H
