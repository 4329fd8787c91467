//===- Ops.h - Op kernels of the reference evaluator (private) ----------===//
#ifndef SYMOC_LIB_EVALUATOR_OPS_H
#define SYMOC_LIB_EVALUATOR_OPS_H

#include "symoc/Evaluator/Tensor.h"

#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace symoc {

/// What a kernel sees of one node: its inputs, attributes and opset.
class OpContext {
public:
  OpContext(const onnx::NodeProto &node, int64_t opset,
            const std::vector<const Tensor *> &inputs, const std::string &path);

  const onnx::NodeProto &node;
  int64_t opset;
  const std::string &modelPath;

  size_t numInputs() const { return inputs_.size(); }
  bool hasInput(size_t i) const { return i < inputs_.size() && inputs_[i]; }
  const Tensor &in(size_t i) const; // throws when absent
  size_t numOutputs() const { return size_t(node.output_size()); }
  /// True when output i exists and is named (optional outputs may be "").
  bool wantsOutput(size_t i) const {
    return int(i) < node.output_size() && !node.output(int(i)).empty();
  }

  const onnx::AttributeProto *attr(const std::string &name) const;
  bool hasAttr(const std::string &name) const { return attr(name) != nullptr; }
  int64_t attrInt(const std::string &name, int64_t dflt) const;
  double attrFloat(const std::string &name, double dflt) const;
  std::string attrString(const std::string &name, const std::string &dflt) const;
  std::vector<int64_t> attrInts(const std::string &name) const; // empty if absent
  std::vector<double> attrFloats(const std::string &name) const;

  /// "node 'name' (Op): msg".
  [[noreturn]] void fail(const std::string &msg) const;
  [[noreturn]] void unsupported(const std::string &msg) const;
  /// Normalizes a possibly negative axis against rank, or fails.
  int64_t axis(int64_t a, int64_t rank) const;

private:
  const std::vector<const Tensor *> &inputs_;
};

using Kernel = std::function<std::vector<Tensor>(OpContext &)>;

struct OpInfo {
  Kernel kernel;
  std::set<std::string> attrs; // attributes the kernel understands
  bool floatOnly = false;      // refuse non-float inputs at position 0
};

/// Registry filled by the register* functions below (one per source file).
std::map<std::string, OpInfo> &opRegistry();
void registerElementwiseOps(std::map<std::string, OpInfo> &r);
void registerShapeOps(std::map<std::string, OpInfo> &r);
void registerNNOps(std::map<std::string, OpInfo> &r);
void registerReduceOps(std::map<std::string, OpInfo> &r);
void registerExtraOps(std::map<std::string, OpInfo> &r);

// ---- helpers shared by kernels ----
/// Numpy multidirectional broadcast of shapes; fails via ctx.
std::vector<int64_t> broadcastShapes(const OpContext &ctx,
                                     const std::vector<std::vector<int64_t>> &shapes);
/// Strides of `in` viewed in the broadcast shape `out` (0 on broadcast axes).
std::vector<int64_t> broadcastStrides(const std::vector<int64_t> &in,
                                      const std::vector<int64_t> &out);
/// Applies f to broadcast elements of ins; result has dtype outType.
Tensor broadcastMap(const OpContext &ctx, const std::vector<const Tensor *> &ins,
                    DType outType,
                    const std::function<double(const double *)> &f);
/// Casts every element to t (integers truncate and wrap).
void castInPlace(Tensor &t, DType to);

} // namespace symoc

#endif
