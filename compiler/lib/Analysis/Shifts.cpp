//===- Shifts.cpp - Logit shifts: the loss and the Softmaxes --------------===//
//
// Takes the model outputs, the assumed loss and the Softmaxes the rules
// recorded; gives the loss description and a shift claim for every trainable
// weight or bias that adds a constant to logits a Softmax (or the loss) ignores.
//
//===----------------------------------------------------------------------===//

#include "symoc/Analysis/Stages.h"

using namespace mlir;
using namespace symoc::graph;

namespace symoc {
namespace analysis {
namespace {

bool singleUse(Value v) { return v.hasOneUse(); }

/// True when the op (Softmax, LogSoftmax, TopK) works over the last axis of
/// operand 0 (`dflt`: its axis when the attribute is absent).
bool overLastAxis(Operation *op, int64_t dflt) {
  int64_t r = rankOfValue(op->getOperand(0));
  auto a = op->getAttrOfType<IntegerAttr>("axis");
  int64_t ax = a ? a.getInt() : dflt;
  return (ax < 0 ? ax + r : ax) == r - 1;
}

/// Ops whose result does not change when a constant is added along the last
/// axis of operand 0: Softmax/LogSoftmax over that axis, and TopK over it
/// (same positions, values shifted) when its values only reach such ops.
/// `outputOk`: a model output is such a use too (the cross-entropy loss over
/// it does not see the shift); otherwise an output changes, so it is not.
bool shiftInvariantUses(Value v, bool outputOk = false) {
  if (v.use_empty()) return false;
  for (OpOperand &u : v.getUses()) {
    Operation *o = u.getOwner();
    if (outputOk && isa<func::ReturnOp>(o)) continue;
    if (u.getOperandNumber() != 0) return false;
    if (isa<SoftmaxOp, LogSoftmaxOp>(o)) {
      int64_t opset = 17;
      for (Operation *p = o; p; p = p->getParentOp())
        if (auto i = p->getAttrOfType<IntegerAttr>("graph.opset")) { opset = i.getInt(); break; }
      if (!overLastAxis(o, opset < 13 ? 1 : -1)) return false;
    } else if (isa<TopKOp>(o)) {
      auto sorted = o->getAttrOfType<IntegerAttr>("sorted");
      if (!overLastAxis(o, -1) || (sorted && sorted.getInt() == 0) ||
          !shiftInvariantUses(o->getResult(0)))
        return false;
    } else {
      return false;
    }
  }
  return true;
}

/// The trainable parameters that shift the logits: the weight of the linear
/// map that makes them (its output axis `wAxis`) and a bias added after it.
struct ShiftedMap {
  Value w, bias;
  int64_t wAxis = -1;
};

/// A bias added along the last axis (rank 1, no other use) shifts every
/// logit by the same constant: a shift on its own, whatever produced the
/// other addend (a tied head's matmul, BERT's decoder bias). Steps `v` back to
/// that addend. False when the Add's bias is not such a parameter.
bool takeBias(Value &v, ShiftedMap &m, bool &preShared) {
  auto add = v.getDefiningOp<AddOp>();
  if (!add)
    return true;
  Value a = add.getOperand(0), c = add.getOperand(1);
  if (definedByParam(a)) std::swap(a, c);
  if (!definedByParam(c) || rankOfValue(c) != 1 || !singleUse(c)) return false;
  m.bias = c;
  v = a;
  preShared = !singleUse(a);
  return true;
}

/// The weight of the MatMul / Gemm that makes `v` (and a Gemm's C as the bias).
void takeWeight(Value v, ShiftedMap &m) {
  if (auto mm = v.getDefiningOp<MatMulOp>()) {
    if (rankOfValue(mm.getOperand(1)) == 2) {
      m.w = mm.getOperand(1);
      m.wAxis = 1;
    }
  } else if (auto gemm = v.getDefiningOp<GemmOp>()) {
    // A Gemm whose B is not 2-D is malformed (a barrier): no weight to shift.
    if (rankOfValue(gemm.getOperand(1)) == 2)
      m.w = gemm.getOperand(1);
    m.wAxis = gemm->getAttrOfType<IntegerAttr>("transB") &&
                      gemm->getAttrOfType<IntegerAttr>("transB").getInt()
                  ? 0 : 1;
    if (gemm.getNumOperands() > 2 && !isa<NoneType>(gemm.getOperand(2).getType())) {
      Value c = gemm.getOperand(2);
      if (m.bias || !definedByParam(c) || rankOfValue(c) != 1 || !singleUse(c))
        m.w = Value(); // C is not a shiftable bias: the weight alone would not do
      else
        m.bias = c;
    }
  }
}

/// A transposed weight (torch exports nn.Linear on 3-D input this way) is
/// followed to the parameter; any other view drops the weight.
void lookThroughTranspose(ShiftedMap &m) {
  if (!m.w)
    return;
  auto tr = m.w.getDefiningOp<TransposeOp>();
  if (!tr)
    return;
  auto perm = tr->getAttrOfType<ArrayAttr>("perm");
  bool swap = !perm || (perm.size() == 2 && cast<IntegerAttr>(perm[0]).getInt() == 1 &&
                        cast<IntegerAttr>(perm[1]).getInt() == 0);
  if (swap && singleUse(m.w) && rankOfValue(tr->getOperand(0)) == 2) {
    m.w = tr->getOperand(0);
    m.wAxis = 1 - m.wAxis;
  } else {
    m.w = Value();
  }
}

/// The weight and bias that shift the logits `v`; false when there is none.
/// The weight shifts too only when nothing else reads the map's output or it.
bool findShiftedMap(Value v, ShiftedMap &m) {
  bool preShared = false;
  if (!takeBias(v, m, preShared))
    return false;
  takeWeight(v, m);
  lookThroughTranspose(m);
  if (m.w && (preShared || !definedByParam(m.w) || !singleUse(m.w)))
    m.w = Value();
  return m.w || m.bias;
}

Claim shiftClaim(ClaimContext &cx, const ShiftedMap &m) {
  Claim c;
  c.id = cx.newClaimId();
  c.kind = "shift";
  c.group = "shift";
  if (m.w) {
    Member mw;
    mw.initializer = m.w.getDefiningOp<ParamOp>().getName().str();
    mw.axis = m.wAxis;
    c.members.push_back(mw);
    c.roles.push_back("weight");
  }
  if (m.bias) {
    Member mb;
    mb.initializer = m.bias.getDefiningOp<ParamOp>().getName().str();
    mb.axis = 0;
    c.members.push_back(mb);
    c.roles.push_back("bias");
  }
  return c;
}

} // namespace

std::string describeLoss(LossKind loss, const std::vector<Output> &outputs) {
  bool endsInSoftmax = false;
  for (auto &[v, name] : outputs)
    if (v.getDefiningOp<SoftmaxOp>() || v.getDefiningOp<LogSoftmaxOp>())
      endsInSoftmax = true;
  switch (loss) {
  case LossKind::Auto:
    return endsInSoftmax ? "graph ends in Softmax/LogSoftmax" : "none (outputs fixed)";
  case LossKind::CrossEntropy:
    return "cross-entropy over the last axis of each output";
  case LossKind::MSE: return "mse (outputs fixed)";
  case LossKind::None: return "none (outputs fixed)";
  }
  return "";
}

void claimShifts(ClaimContext &cx, const std::vector<Output> &outputs, LossKind loss) {
  // A Softmax over the output axis of a trainable linear map; under the
  // cross-entropy loss, every output.
  std::vector<std::pair<Value, int64_t>> softmaxes = cx.g.softmaxes;
  std::map<const void *, std::string> outputName;
  for (auto &[v, name] : outputs) outputName[v.getAsOpaquePointer()] = name;
  if (loss == LossKind::CrossEntropy)
    for (auto &[v, name] : outputs)
      if (rankOfValue(v) >= 1) softmaxes.push_back({v, -1});
  std::set<const void *> shiftedLogits;
  for (auto [logits, axisIn] : softmaxes) {
    int64_t r = rankOfValue(logits);
    int64_t axis = axisIn < 0 ? axisIn + r : axisIn;
    if (axis != r - 1) continue;
    bool isOutput = outputName.count(logits.getAsOpaquePointer());
    Value v = logits;
    bool throughTopK = false;
    if (isOutput) {
      // The logits are a model output: only the cross-entropy loss over it ignores the
      // shift, and every other reader of them must too (a Softmax in the graph over an
      // output read raw, under no loss or mse, is no symmetry: fuzz_graphs, session 31).
      if (loss != LossKind::CrossEntropy || !shiftInvariantUses(v, /*outputOk=*/true) ||
          !shiftedLogits.insert(v.getAsOpaquePointer()).second)
        continue;
    } else {
      // Top-k before the Softmax (Mixtral order): the logits are TopK's input.
      if (auto tk = v.getDefiningOp<TopKOp>())
        if (tk->getNumResults() == 2 && v == tk->getResult(0)) {
          v = tk->getOperand(0);
          throughTopK = true;
        }
      if (!shiftInvariantUses(v) || !shiftedLogits.insert(v.getAsOpaquePointer()).second)
        continue;
    }
    ShiftedMap m;
    if (!findShiftedMap(v, m))
      continue;
    Claim c = shiftClaim(cx, m);
    if (isOutput && loss == LossKind::CrossEntropy) {
      c.output = outputName[logits.getAsOpaquePointer()];
      c.outputAxis = -1;
      c.note = "logit shift under the cross-entropy loss";
    } else {
      c.note = throughTopK ? "shift of the logits of a TopK, then Softmax in the graph"
                           : "shift of the logits of a Softmax in the graph";
    }
    cx.result.claims.push_back(c);
  }
}

} // namespace analysis
} // namespace symoc
