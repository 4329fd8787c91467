//===- SpaceAnalysis.cpp - The analysis: its stages in order --------------===//
//
// Takes an imported module; gives the AnalysisResult (spaces, claims, blocks,
// barriers) by running the stages declared in symoc/Analysis/Stages.h. Anything
// not understood fixes the axes it touches: a claim is only made when every op
// on the space allows it.
//
//===----------------------------------------------------------------------===//

#include "symoc/Analysis/SpaceAnalysis.h"
#include "symoc/Analysis/Stages.h"

using namespace mlir;
using namespace symoc::graph;
using namespace symoc::analysis;

namespace symoc {
namespace {

/// The model's outputs with their names, in order.
std::vector<Output> modelOutputs(func::FuncOp fn) {
  std::vector<Output> outputs;
  fn.walk([&](func::ReturnOp ret) {
    for (unsigned i = 0; i < ret.getNumOperands(); ++i) {
      auto name = fn.getResultAttrOfType<StringAttr>(i, "graph.name");
      outputs.push_back({ret.getOperand(i), name ? name.str() : ""});
    }
  });
  return outputs;
}

} // namespace

AnalysisResult analyzeSpaces(ModuleOp module, const AnalysisOptions &opts) {
  AnalysisResult result;
  if (auto loc = dyn_cast<FileLineColLoc>(module.getLoc()))
    result.model = loc.getFilename().str();
  func::FuncOp fn;
  module.walk([&](func::FuncOp f) { if (!fn) fn = f; });
  if (!fn)
    return result;
  std::vector<Operation *> ops;
  fn.walk([&](Operation *op) { ops.push_back(op); });
  std::vector<ParamOp> params;
  fn.walk([&](ParamOp p) { params.push_back(p); });

  SpaceGraph g = buildSpaces(fn, ops, propagateCuts(ops), result.barriers);
  std::vector<Output> outputs = modelOutputs(fn);
  result.lossAssumed = describeLoss(opts.loss, outputs);
  Classes classes = classify(g, params);
  Flows flows = solveFlows(g);

  ClaimContext cx{result, g, classes, flows, {}, 0};
  claimSpaces(cx, params);
  claimUniformScales(cx, params);
  claimShifts(cx, outputs, opts.loss);
  buildBlocks(cx, params, outputs);
  return result;
}

} // namespace symoc
