//===- Evaluator.h - Reference float64 evaluator for ONNX graphs -*- C++ -*-===//
//
// Runs an ONNX graph on the CPU in float64, with the model's real weights. It is
// the ground truth that `symoc verify` uses to check a claimed symmetry: the
// model is run with the original and with transformed initializers and the
// outputs compared. Correctness before speed; every op is checked against the
// ONNX node conformance data (tests/evaluator). Ops, attributes and element
// types it does not implement are refused with UnsupportedError, never guessed.
//
//===----------------------------------------------------------------------===//
#ifndef SYMOC_EVALUATOR_EVALUATOR_H
#define SYMOC_EVALUATOR_EVALUATOR_H

#include "symoc/Evaluator/Tensor.h"

#include <onnx/onnx_pb.h>

#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

namespace symoc {

/// Every value computed by one run, so that runs with a few weights changed
/// recompute only what depends on them (Evaluator::rerun).
struct EvalCache {
  std::map<std::string, Tensor> inputs;
  std::map<std::string, Tensor> values; // node outputs
  size_t bytes() const;
};

/// The model passed to the constructor must outlive the Evaluator.
class Evaluator {
public:
  /// Reads every initializer (inline or external data, resolved relative to
  /// modelPath) and Constant node. Throws symoc::Error for unreadable weights,
  /// UnsupportedError when a node's op is not implemented.
  Evaluator(const onnx::ModelProto &model, std::string modelPath);
  /// The graph of `model` with the weights of `weights`, shared, not read or
  /// copied again: `model` may omit its initializers (e.g. verify's copy of the
  /// model with every normalization's epsilon set to 0). `weights` must
  /// outlive this Evaluator.
  Evaluator(const onnx::ModelProto &model, std::string modelPath, const Evaluator &weights);
  Evaluator(const Evaluator &) = delete; // inits_ may point into this object
  Evaluator &operator=(const Evaluator &) = delete;

  /// Runs the graph. `inputs` maps graph input names to values (every
  /// non-initializer input is required). `initializerOverrides` replaces
  /// initializers or Constant node outputs by name (same shape): this is how
  /// verify substitutes transformed weights. Returns every graph output.
  std::map<std::string, Tensor>
  run(const std::map<std::string, Tensor> &inputs,
      const std::map<std::string, Tensor> &initializerOverrides = {}) const;

  /// run() that keeps every intermediate value (memory: all activations).
  EvalCache runAndKeep(const std::map<std::string, Tensor> &inputs) const;
  /// Same result as run(base.inputs, overrides), recomputing only the nodes
  /// downstream of the overridden names.
  std::map<std::string, Tensor>
  rerun(const EvalCache &base,
        const std::map<std::string, Tensor> &initializerOverrides) const;

  /// Initializers and Constant-node values by name, as loaded.
  const std::map<std::string, Tensor> &initializers() const { return *inits_; }
  /// Graph inputs that are not initializers, in graph order.
  const std::vector<const onnx::ValueInfoProto *> &graphInputs() const {
    return inputs_;
  }
  const onnx::ModelProto &model() const { return model_; }
  const std::string &modelPath() const { return path_; }
  /// The model's default-domain opset.
  int64_t opset() const { return opset_; }

  /// Op types the evaluator implements (default ONNX domain).
  static const std::set<std::string> &supportedOps();

private:
  std::map<std::string, Tensor> execute(const std::map<std::string, Tensor> &inputs,
                                        const std::map<std::string, Tensor> &overrides,
                                        const EvalCache *base, EvalCache *keep) const;

  const onnx::ModelProto &model_;
  std::string path_;
  int64_t opset_ = 0;
  std::map<std::string, Tensor> ownInits_;
  const std::map<std::string, Tensor> *inits_ = &ownInits_;
  std::set<std::string> constantOutputs_; // names produced by Constant nodes
  std::vector<const onnx::ValueInfoProto *> inputs_;
};

/// Runs one node on explicit inputs (missing optional inputs: nullptr).
/// Exposed for unit tests. Throws EvalError / UnsupportedError.
std::vector<Tensor> runNode(const onnx::NodeProto &node, int64_t opset,
                            const std::vector<const Tensor *> &inputs,
                            const std::string &modelPath = "");

} // namespace symoc

#endif // SYMOC_EVALUATOR_EVALUATOR_H
