//===- Rewrite.h - What every opset rewrite shares (private) ----*- C++ -*-===//
//
// A rewrite sees one node and the graph around it (constants, inferred shapes)
// and appends its opset-17 replacement to `out`; it may add initializers. The
// table maps (op type, since-version) to a rewrite; Registry.cpp assembles it
// from the per-concern files.
//
//===----------------------------------------------------------------------===//
#ifndef SYMOC_LIB_OPSETADAPTER_REWRITE_H
#define SYMOC_LIB_OPSETADAPTER_REWRITE_H

#include "symoc/ModelIO/Attributes.h"
#include <onnx/onnx_pb.h>

#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace symoc {
namespace adapter {

class Context {
public:
  Context(onnx::ModelProto &model, const std::string &path);

  onnx::GraphProto &graph() { return graph_; }
  const std::string &path() const { return path_; }

  /// One line "PATH: node 'N' (Op-V): problem", thrown as symoc::Error.
  [[noreturn]] void fail(const onnx::NodeProto &n, int64_t version,
                         const std::string &problem) const;

  /// The value of a small integer constant (initializer or Constant node).
  std::optional<std::vector<int64_t>> ints(const std::string &name) const;
  /// The values of a floating point constant (initializer or Constant node, any size).
  std::optional<std::vector<double>> floats(const std::string &name) const;
  /// The value of a float scalar constant.
  std::optional<double> scalar(const std::string &name) const;
  /// Static shape from initializers, graph inputs and inferred value_info.
  std::optional<std::vector<int64_t>> shape(const std::string &name) const;
  /// The shape with -1 for each dim that is not a known value (rank known).
  std::optional<std::vector<int64_t>> partialShape(const std::string &name) const;
  /// The shape with every dim known but perhaps the first (-1 there): a batch
  /// left symbolic by the export, which rewrites that never read it allow.
  std::optional<std::vector<int64_t>> shapeButBatch(const std::string &name) const;
  std::optional<int64_t> rank(const std::string &name) const;
  /// Element type (TensorProto data type) when known, else FLOAT.
  int32_t elemType(const std::string &name) const;
  /// Element type when the graph states it (initializer, input, value_info).
  std::optional<int32_t> knownElemType(const std::string &name) const;

  /// A fresh value name derived from `hint`.
  std::string fresh(const std::string &hint);
  /// New int64 / floating point initializers (names fresh; dtype float, double,
  /// float16 or bfloat16); returns the name.
  std::string addInts(const std::vector<int64_t> &v, const std::vector<int64_t> &dims,
                      const std::string &hint);
  std::string addFloat(const std::vector<float> &v, const std::vector<int64_t> &dims,
                       const std::string &hint, int32_t dtype, bool constant);

  /// A node of the default domain appended to `out`; returns its output.
  onnx::NodeProto &node(std::vector<onnx::NodeProto> &out, const std::string &op,
                        const std::vector<std::string> &inputs,
                        const std::vector<std::string> &outputs, const std::string &name);
  std::string op1(std::vector<onnx::NodeProto> &out, const std::string &op,
                  const std::vector<std::string> &inputs, const std::string &name);

  /// Float initializers that are constants (reported to the importer).
  std::set<std::string> constants;

private:
  onnx::ModelProto &model_;
  onnx::GraphProto &graph_;
  std::string path_;
  std::map<std::string, const onnx::TensorProto *> inits_;
  std::map<std::string, const onnx::NodeProto *> constNodes_;
  std::map<std::string, const onnx::ValueInfoProto *> infos_;
  std::set<std::string> names_;
  int counter_ = 0;

  /// The tensor behind a constant (initializer or Constant node's `value`), or, for a
  /// Constant node given by `value_float(s)`, its values in `list`.
  const onnx::TensorProto *constTensor(const std::string &name,
                                       std::optional<std::vector<double>> &list) const;

public:
  void index(); // (re)reads initializers, Constant nodes and value_info
};

// Attribute writers (the readers, attr/attrInt/attrFloat/attrString, are
// symoc/ModelIO/Attributes.h's).
void eraseAttr(onnx::NodeProto &n, const std::string &name);
void setInt(onnx::NodeProto &n, const std::string &name, int64_t v);
void setInts(onnx::NodeProto &n, const std::string &name, const std::vector<int64_t> &v);
void setFloat(onnx::NodeProto &n, const std::string &name, float v);
void setString(onnx::NodeProto &n, const std::string &name, const std::string &v);
/// The node's name, or "Op #k" style fallback from its first output.
std::string nodeName(const onnx::NodeProto &n);
bool hasInput(const onnx::NodeProto &n, int k);

/// Rewrites `n` (of schema version `version`) into opset-17 nodes appended to
/// `out`. Returning without appending anything drops the node.
using Rewrite = std::function<void(Context &, const onnx::NodeProto &n, int64_t version,
                                   std::vector<onnx::NodeProto> &out)>;

/// (op type, since-version) -> rewrite.
using Table = std::map<std::pair<std::string, int64_t>, Rewrite>;

// Each concern registers its rewrites.
void addTypesOnly(Table &t);
void addReductions(Table &t);
void addSplits(Table &t);
void addAttributeChanges(Table &t);
void addActivations(Table &t);
void addNormalizations(Table &t);
void addAttention(Table &t);
void addRotary(Table &t);

/// The since-versions above 17 of every default-domain op that changed after
/// opset 17 (from ONNX's Changelog).
const std::map<std::string, std::vector<int64_t>> &versionsAfter17();

/// Rewrites SplitToSequence + SequenceAt pairs (what torch writes for
/// torch.split with optimize=False) into Split; returns how many.
int splitSequencesToSplit(Context &ctx);

/// Parameter names: see ParameterNames.cpp.
void recoverParameterNames(onnx::ModelProto &model, Context &ctx,
                           std::vector<std::string> &notes);

} // namespace adapter
} // namespace symoc

#endif // SYMOC_LIB_OPSETADAPTER_REWRITE_H
