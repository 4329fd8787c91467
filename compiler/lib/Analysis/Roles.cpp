//===- Roles.cpp - What a parameter does, read from the graph -------------===//
//
// A parameter's role comes from the ops around its uses: which operand it is,
// and what the computation it feeds turns into a few ops later (a Softmax for
// attention scores, a gating product for SwiGLU, the graph output for a head).
// Views (Transpose, Reshape, Split, Slice, bias Add) are looked through.
// The last stage of the analysis: takes the parameters, the spaces and the
// claims; gives each parameter's block (shape, roles, spaces per axis).
//
//===----------------------------------------------------------------------===//

#include "symoc/Analysis/Stages.h"

#include "mlir/IR/BuiltinTypes.h"

#include <functional>

using namespace mlir;
using namespace symoc::graph;

namespace symoc {
namespace {

/// A parameter, possibly seen through views of it (a transposed weight).
bool isParam(Value v) {
  for (int depth = 0; depth < 4 && v; ++depth) {
    Operation *d = v.getDefiningOp();
    if (!d)
      return false;
    if (isa<ParamOp>(d))
      return true;
    if (!isa<TransposeOp, ReshapeOp, IdentityOp, CastOp, UnsqueezeOp, SqueezeOp>(d))
      return false;
    v = d->getOperand(0);
  }
  return false;
}

/// Ops that move or relabel data without computing on it.
bool isView(Operation *op) {
  return isa<TransposeOp, ReshapeOp, SqueezeOp, UnsqueezeOp, FlattenOp,
             IdentityOp, CastOp, SplitOp, SliceOp, ExpandOp, ConcatOp, DropoutOp>(op);
}

/// Ops that keep a value "the same activation" for role purposes: views, a
/// bias or residual add, scaling by a constant, masking, rotary mixing.
bool isPassThrough(Operation *op) {
  if (isView(op))
    return true;
  return isa<AddOp, SubOp, MulOp, DivOp, WhereOp, NegOp, RotaryOp>(op);
}

bool isNonlinearity(Operation *op) {
  return isa<ReluOp, LeakyReluOp, TanhOp, SigmoidOp, GeluOp, SiluOp, EluOp,
             SeluOp, CeluOp, SoftplusOp, ErfOp, MishOp, HardSwishOp, PReluOp>(op);
}

/// Values reachable from v through pass-through ops (bounded).
void forwardReach(Value v, int depth, std::set<Operation *> &seen,
                  const std::function<void(Operation *, unsigned)> &visit) {
  if (depth <= 0)
    return;
  for (OpOperand &use : v.getUses()) {
    Operation *u = use.getOwner();
    visit(u, use.getOperandNumber());
    if (seen.insert(u).second && (isPassThrough(u) || isNonlinearity(u)))
      for (Value r : u->getResults())
        forwardReach(r, depth - 1, seen, visit);
  }
}

/// True when `v` comes (backwards through pass-through ops) from an op of
/// kind OpTy.
template <typename Pred>
bool backwardFinds(Value v, int depth, Pred pred) {
  if (depth <= 0 || !v)
    return false;
  Operation *d = v.getDefiningOp();
  if (!d)
    return false;
  if (pred(d))
    return true;
  if (!isPassThrough(d))
    return false;
  for (Value in : d->getOperands())
    if (!isParam(in) && backwardFinds(in, depth - 1, pred))
      return true;
  return false;
}

/// The linear map (MatMul/Gemm with a weight) that v comes from, looking back
/// through pass-through ops and one nonlinearity; null if none.
Operation *linearSource(Value v, int depth) {
  if (depth <= 0 || !v)
    return nullptr;
  Operation *d = v.getDefiningOp();
  if (!d)
    return nullptr;
  if (isa<MatMulOp, GemmOp>(d) && isParam(d->getOperand(1)))
    return d;
  if (!isPassThrough(d) && !isNonlinearity(d))
    return nullptr;
  for (Value in : d->getOperands())
    if (!isParam(in))
      if (Operation *src = linearSource(in, depth - 1))
        return src;
  return nullptr;
}

/// A gating product: two activations from two different linear maps.
bool isGatingProduct(Operation *mul) {
  if (!isa<MulOp>(mul) || isParam(mul->getOperand(0)) || isParam(mul->getOperand(1)))
    return false;
  Operation *a = linearSource(mul->getOperand(0), 5);
  Operation *b = linearSource(mul->getOperand(1), 5);
  return a && b && a != b;
}

bool feedsSoftmax(Value v) {
  bool found = false;
  std::set<Operation *> seen;
  forwardReach(v, 6, seen, [&](Operation *u, unsigned) {
    found |= isa<SoftmaxOp, LogSoftmaxOp>(u);
  });
  return found;
}

bool fromSoftmax(Value v) {
  return backwardFinds(v, 6, [](Operation *d) { return isa<SoftmaxOp, LogSoftmaxOp>(d); });
}

/// The role of a linear map's output y = x W (+ b).
std::set<std::string> linearRoles(Operation *mm, const std::set<const void *> &outputs) {
  std::set<std::string> roles;
  Value y = mm->getResult(0);
  Value x = mm->getOperand(0);
  std::set<Operation *> seen;
  bool reachesOutput = false, nonlinear = false;
  forwardReach(y, 12, seen, [&](Operation *u, unsigned idx) {
    for (Value r : u->getResults())
      if (outputs.count(r.getAsOpaquePointer()) && isView(u) + isa<AddOp>(u))
        reachesOutput = true;
    if (isa<MatMulOp>(u) && !isParam(u->getOperand(0)) && !isParam(u->getOperand(1))) {
      // A product of two activations: attention scores or attention values.
      if (idx == 0 && feedsSoftmax(u->getResult(0)))
        roles.insert("attn_q");
      else if (idx == 1 && feedsSoftmax(u->getResult(0)))
        roles.insert("attn_k");
      else if (idx == 1 && fromSoftmax(u->getOperand(0)))
        roles.insert("attn_v");
    }
    if (isNonlinearity(u))
      nonlinear = true;
    if (isGatingProduct(u)) {
      // A gating product: the side through a nonlinearity is the gate.
      bool throughNonlinearity = backwardFinds(
          u->getOperand(idx), 4, [](Operation *d) { return isNonlinearity(d); });
      roles.insert(throughNonlinearity ? "swiglu_gate" : "swiglu_up");
    }
  });
  if (outputs.count(y.getAsOpaquePointer()))
    reachesOutput = true;
  if (reachesOutput && roles.empty())
    roles.insert("lm_head");
  // What feeds it.
  if (backwardFinds(x, 8, [](Operation *d) {
        return isa<MatMulOp>(d) && !isParam(d->getOperand(1)) && fromSoftmax(d->getOperand(0));
      }))
    roles.insert("attn_o");
  else if (backwardFinds(x, 2, [](Operation *d) { return isGatingProduct(d); }))
    roles.insert("swiglu_down");
  else if (backwardFinds(x, 4, [](Operation *d) { return isNonlinearity(d); }))
    roles.insert("mlp_out");
  if (roles.empty() && nonlinear)
    roles.insert("mlp_in");
  bool q = roles.count("attn_q"), k = roles.count("attn_k"), v = roles.count("attn_v");
  if (q + k + v > 1) {
    roles.erase("attn_q");
    roles.erase("attn_k");
    roles.erase("attn_v");
    roles.insert("attn_qkv");
  }
  if (roles.count("swiglu_gate") && roles.count("swiglu_up"))
    roles.erase("swiglu_up");
  if (roles.count("swiglu_gate") || roles.count("swiglu_up"))
    roles.erase("mlp_in");
  return roles;
}

} // namespace

/// Whether v's values depend on the values of a model input, through any op except those
/// that read only their operands' shapes (Shape, Size). Rows gathered by indices without
/// such a dependence (arange(T), constants) are fixed positions, not tokens.
bool carriesInputValues(Value v) {
  std::vector<Value> todo{v};
  std::set<const void *> seen;
  while (!todo.empty()) {
    Value x = todo.back();
    todo.pop_back();
    if (isa<BlockArgument>(x)) return true;
    Operation *d = x.getDefiningOp();
    if (!d || !seen.insert(d).second || isa<ShapeOp, SizeOp>(d)) continue;
    for (Value in : d->getOperands()) todo.push_back(in);
  }
  return false;
}

/// Operand `k` of a two-operand Einsum (no ellipsis) is a batch of matrices: its leading
/// labels all reach the output, and of its last two one is contracted with the other operand
/// and the other kept ("btd,ehd->bteh": per e, h x d).
bool einsumBatchedMatrix(Operation *op, unsigned k) {
  auto eq = op->getAttrOfType<StringAttr>("equation");
  if (!eq || op->getNumOperands() != 2)
    return false;
  std::string e;
  for (char c : eq.getValue().str())
    if (c != ' ')
      e += c;
  size_t arrow = e.find("->"), comma = e.find(',');
  if (arrow == std::string::npos || comma == std::string::npos || comma > arrow || e.find('.') != std::string::npos)
    return false;
  std::string in[2] = {e.substr(0, comma), e.substr(comma + 1, arrow - comma - 1)}, out = e.substr(arrow + 2);
  const std::string &mine = in[k], &other = in[1 - k];
  if (mine.size() < 3)
    return false;
  auto inOut = [&](char c) { return out.find(c) != std::string::npos; };
  for (size_t i = 0; i + 2 < mine.size(); ++i)
    if (!inOut(mine[i]))
      return false;
  char a = mine[mine.size() - 2], b = mine.back();
  auto contracted = [&](char c) { return !inOut(c) && other.find(c) != std::string::npos; };
  return a != b && ((inOut(a) && contracted(b)) || (inOut(b) && contracted(a)));
}

/// A rank-3 parameter read as a stack of matrices: its slices along axis 0 reach a batched
/// MatMul as an operand with axis 0 still a batch axis, directly (torch.bmm over the stack),
/// or an Einsum that batches over the leading labels, through a Transpose that keeps axis 0
/// first, or as whole slices selected by a Gather along axis 0 or a GatherND of one index per
/// tuple (transformers' batched_mm MoE experts); or one slice at a time, a Gather along axis 0
/// by a scalar index whose matrix is an operand of a MatMul or Gemm (JetMoE's ParallelExperts:
/// `F.linear(x_i, weight[i])` per expert).
bool readAsMatrixStack(ParamOp param) {
  if (cast<RankedTensorType>(param.getType()).getRank() != 3)
    return false;
  // `single`: v is one matrix of the stack, not a stack.
  std::function<bool(Value, int, bool)> walk = [&](Value v, int depth, bool single) {
    for (OpOperand &use : v.getUses()) {
      Operation *u = use.getOwner();
      if (use.getOperandNumber() > 1)
        continue;
      if (isa<MatMulOp>(u)) {
        auto t = dyn_cast<RankedTensorType>(v.getType());
        if (t && (t.getRank() >= 3 || (single && t.getRank() == 2)))
          return true;
        continue;
      }
      if (isa<GemmOp>(u)) {
        if (single)
          return true;
        continue;
      }
      if (isa<EinsumOp>(u)) {
        if (einsumBatchedMatrix(u, use.getOperandNumber()))
          return true;
        continue;
      }
      if (depth <= 0 || use.getOperandNumber() != 0)
        continue;
      auto intAttr = [&](StringRef name) {
        auto a = u->getAttrOfType<IntegerAttr>(name);
        return a ? a.getInt() : 0;
      };
      bool slices = isa<IdentityOp, CastOp>(u), one = single;
      if (isa<TransposeOp>(u)) {
        auto perm = u->getAttrOfType<ArrayAttr>("perm");
        auto first = perm && !perm.empty() ? dyn_cast<IntegerAttr>(perm[0]) : IntegerAttr();
        slices = single || (first && first.getInt() == 0); // a single matrix may be transposed
      }
      if (!single && isa<GatherOp>(u)) {
        auto idx = dyn_cast<RankedTensorType>(u->getOperand(1).getType());
        slices = idx && (intAttr("axis") == 0 || intAttr("axis") == -3);
        one = idx && idx.getRank() == 0;
      }
      if (!single && isa<GatherNDOp>(u)) {
        auto idx = dyn_cast<RankedTensorType>(u->getOperand(1).getType());
        slices = intAttr("batch_dims") == 0 && idx && idx.getRank() >= 1 && idx.getShape().back() == 1;
      }
      if (slices && walk(u->getResult(0), depth - 1, one))
        return true;
    }
    return false;
  };
  return walk(param.getResult(), 4, false);
}

std::set<std::string> inferRoles(ParamOp param, const std::set<const void *> &outputs) {
  std::set<std::string> roles;
  auto rank = cast<RankedTensorType>(param.getType()).getRank();
  // Uses, looking through views of the parameter itself (a transposed weight).
  std::vector<OpOperand *> uses;
  std::function<void(Value, int)> collect = [&](Value v, int depth) {
    for (OpOperand &use : v.getUses()) {
      Operation *u = use.getOwner();
      if (depth > 0 && isa<TransposeOp, ReshapeOp, IdentityOp, CastOp, UnsqueezeOp, SqueezeOp>(u))
        collect(u->getResult(0), depth - 1);
      else
        uses.push_back(&use);
    }
  };
  collect(param.getResult(), 3);
  for (OpOperand *use : uses) {
    Operation *u = use->getOwner();
    unsigned idx = use->getOperandNumber();
    if (isa<GatherOp>(u) && idx == 0) {
      // A table read at fixed rows (GPT-2's wpe at arange(T)) is a spelling of an added
      // positional table.
      roles.insert(carriesInputValues(u->getOperand(1)) ? "embedding" : "positional_embedding");
    } else if (isa<MatMulOp, GemmOp>(u) && idx == 1) {
      roles.insert("linear");
      for (const auto &r : linearRoles(u, outputs))
        roles.insert(r);
    } else if (isa<MatMulOp>(u) && idx == 0) {
      roles.insert("linear");
    } else if (isa<GemmOp>(u) && idx == 2) {
      roles.insert("bias");
    } else if (isa<ConvOp>(u) && idx == 1) {
      int64_t g = u->getAttrOfType<IntegerAttr>("group")
                      ? u->getAttrOfType<IntegerAttr>("group").getInt() : 1;
      auto shape = cast<RankedTensorType>(param.getType()).getShape();
      roles.insert(g > 1 && shape.size() > 1 && shape[1] == 1 ? "conv_depthwise" : "conv");
    } else if (isa<ConvOp>(u) && idx == 2) {
      roles.insert("bias");
    } else if (isa<BatchNormalizationOp>(u) && idx >= 3) {
      roles.insert("norm_statistics");
    } else if (isa<LayerNormalizationOp, BatchNormalizationOp, RMSNormalizationOp>(u)) {
      roles.insert(idx == 1 ? "norm_gain" : "norm_bias");
    } else if (isa<MulOp>(u) && rank == 1) {
      roles.insert("gain");
    } else if (isa<AddOp>(u) && rank == 1) {
      roles.insert("bias");
    } else if (isa<AddOp>(u) || isa<ConcatOp>(u)) {
      // Added to (or concatenated with) token or patch embeddings: positions.
      Value other = u->getOperand(1 - idx < u->getNumOperands() ? 1 - idx : 0);
      bool toEmbedding = backwardFinds(other, 6, [](Operation *d) {
        return (isa<GatherOp>(d) && isParam(d->getOperand(0))) || isa<ConvOp>(d);
      });
      roles.insert(toEmbedding || isa<ConcatOp>(u) ? "positional_embedding" : "bias");
    } else if (isa<PReluOp>(u)) {
      roles.insert("prelu_slope");
    } else {
      roles.insert("other");
    }
  }
  if (roles.count("embedding") && roles.count("lm_head"))
    roles.erase("linear");
  if (readAsMatrixStack(param)) {
    // Whole matrices gathered from a stack (experts by index) are not rows of a table.
    roles.erase("embedding");
    roles.erase("positional_embedding");
    roles.insert("matrix_stack");
  }
  return roles;
}

void addExpertRoles(std::vector<Block> &blocks, const std::vector<Claim> &claims,
                    const std::set<std::string> &selected) {
  auto find = [&](const std::string &name) -> Block * {
    for (Block &b : blocks)
      if (b.name == name)
        return &b;
    return nullptr;
  };
  for (const Claim &c : claims) {
    if (c.kind != "shift" || !c.output.empty() || c.members.empty() ||
        c.roles.empty() || c.roles[0] != "weight")
      continue; // a router's shift moves its weight (a bias-only shift names no router)
    Block *router = find(c.members[0].initializer);
    int64_t axis = c.members[0].axis;
    if (!router || axis < 0 || axis >= int64_t(router->axisSpaces.size()) ||
        router->axisSpaces[size_t(axis)].size() != 1)
      continue;
    const std::string &rows = router->axisSpaces[size_t(axis)][0];
    if (!selected.count(rows))
      continue;
    std::set<std::string> own;
    for (const Member &m : c.members)
      own.insert(m.initializer);
    for (Block &b : blocks) {
      if (own.count(b.name) || b.axisSpaces.empty() || b.axisSpaces[0].size() != 1 ||
          b.axisSpaces[0][0] != rows || b.role.find("moe_experts") != std::string::npos)
        continue;
      std::set<std::string> roles;
      for (size_t i = 0; i < b.role.size();) {
        size_t j = b.role.find('+', i);
        if (j == std::string::npos) j = b.role.size();
        if (j > i) roles.insert(b.role.substr(i, j - i));
        i = j + 1;
      }
      // Gathered by the router's positions: a table of experts, not of tokens.
      roles.erase("other");
      roles.erase("embedding");
      roles.insert("moe_experts");
      b.role.clear();
      for (const std::string &r : roles)
        b.role += (b.role.empty() ? "" : "+") + r;
    }
  }
}

namespace analysis {
namespace {

/// A parameter's block: shape, roles (a router: the weight of an in-graph
/// Softmax's logit shift) and the spaces of each axis.
Block blockOf(ClaimContext &cx, ParamOp p, const std::set<const void *> &outputPtrs) {
  Block blk;
  blk.name = p.getName().str();
  auto t = cast<RankedTensorType>(p.getType());
  blk.shape.assign(t.getShape().begin(), t.getShape().end());
  blk.fromConstant = p.getFromConstant();
  std::set<Operation *> users(p->getUsers().begin(), p->getUsers().end());
  blk.tied = users.size() > 1;
  std::set<std::string> roles = inferRoles(p, outputPtrs);
  for (const Claim &c : cx.result.claims)
    if (c.kind == "shift" && c.note.find("Softmax in the graph") != std::string::npos &&
        c.roles[0] == "weight" && c.members[0].initializer == blk.name)
      roles.insert("router");
  for (const auto &r : roles)
    blk.role += (blk.role.empty() ? "" : "+") + r;
  for (int64_t a = 0; a < int64_t(blk.shape.size()); ++a) {
    std::vector<std::string> sp;
    for (int n : cx.g.allNodes(p.getResult(), a)) {
      std::string id = cx.spaceOfRoot[cx.g.uf.find(n).first];
      if (sp.empty() || sp.back() != id)
        sp.push_back(id);
    }
    for (int n : cx.g.blockNodes(p.getResult(), a))
      sp.push_back("heads:" + cx.spaceOfRoot[cx.g.uf.find(n).first]);
    blk.axisSpaces.push_back(sp);
  }
  return blk;
}

/// Spaces whose coordinates are selected by position (the source of TopK
/// indices): only a router of such a space has experts.
std::set<std::string> selectedSpaces(ClaimContext &cx) {
  std::set<std::string> selected;
  for (const auto &rec : cx.g.positions)
    for (int n : cx.g.allNodes(rec.source.value, rec.source.axis)) {
      auto it = cx.spaceOfRoot.find(cx.g.uf.find(n).first);
      if (it != cx.spaceOfRoot.end())
        selected.insert(it->second);
    }
  return selected;
}

} // namespace

void buildBlocks(ClaimContext &cx, const std::vector<ParamOp> &params,
                 const std::vector<Output> &outputs) {
  std::set<const void *> outputPtrs;
  for (auto &[v, name] : outputs)
    outputPtrs.insert(v.getAsOpaquePointer());
  for (ParamOp p : params)
    cx.result.blocks.push_back(blockOf(cx, p, outputPtrs));
  addExpertRoles(cx.result.blocks, cx.result.claims, selectedSpaces(cx));
}

} // namespace analysis
} // namespace symoc
