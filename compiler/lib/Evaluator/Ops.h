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
  /// The one element of input i (a scalar or one-element tensor by the op's spec: `what` names
  /// it); fails otherwise.
  double scalar(size_t i, const char *what) const;
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

/// broadcastMap with f inlined (F: double(const double *args)). The output is
/// walked row by row along its last axis, each input with its own stride there
/// (0 when broadcast), so the per-element work is f and the cast only.
template <class F>
Tensor broadcastApply(const OpContext &ctx, const std::vector<const Tensor *> &ins,
                      DType outType, F &&f) {
  std::vector<std::vector<int64_t>> shapes;
  for (const Tensor *t : ins)
    shapes.push_back(t->dims);
  std::vector<int64_t> outDims = broadcastShapes(ctx, shapes);
  Tensor out = Tensor::zeros(outDims, outType);
  size_t k = ins.size(), rank = outDims.size();
  int64_t n = out.size();
  if (n == 0)
    return out;
  std::vector<std::vector<int64_t>> strides;
  for (const Tensor *t : ins)
    strides.push_back(broadcastStrides(t->dims, outDims));
  bool cast = !isFloatDType(outType);
  int64_t row = rank ? outDims[rank - 1] : 1;
  std::vector<int64_t> inner(k, 0), off(k, 0), idx(rank, 0);
  for (size_t j = 0; j < k; ++j)
    inner[j] = rank ? strides[j][rank - 1] : 0;
  std::vector<double> args(k);
  std::vector<const double *> base(k);
  for (size_t j = 0; j < k; ++j)
    base[j] = ins[j]->data.data();
  double *y = out.data.data();
  for (int64_t e = 0; e < n; e += row) {
    for (int64_t i = 0; i < row; ++i) {
      for (size_t j = 0; j < k; ++j)
        args[j] = base[j][off[j] + i * inner[j]];
      double v = f(args.data());
      y[e + i] = cast ? castValue(v, outType) : v;
    }
    // Odometer increment over the axes before the last, keeping input offsets in step.
    for (int64_t d = int64_t(rank) - 2; d >= 0; --d) {
      size_t ud = size_t(d);
      if (++idx[ud] < outDims[ud]) {
        for (size_t j = 0; j < k; ++j)
          off[j] += strides[j][ud];
        break;
      }
      for (size_t j = 0; j < k; ++j)
        off[j] -= strides[j][ud] * (outDims[ud] - 1);
      idx[ud] = 0;
    }
  }
  return out;
}
/// Casts every element to t (integers truncate and wrap).
void castInPlace(Tensor &t, DType to);

} // namespace symoc

#endif
