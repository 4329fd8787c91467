//===- PlanOps.td - The symoc plan dialect ------------------*- tablegen -*-===//
//
// An optimizer plan as IR: the trained parameters (shape only) and, per runtime call
// (a block, or blocks stepped jointly), the rule, the groups it averages over, its
// hyper-parameters and its cost. `symoc compile --emit mlir` prints it; the emitter
// reads the same information from symoc::plan::Plan.
//
//===----------------------------------------------------------------------===//
#ifndef SYMOC_PLAN_OPS
#define SYMOC_PLAN_OPS

include "mlir/IR/OpBase.td"
include "mlir/IR/SymbolInterfaces.td"

def Plan_Dialect : Dialect {
  let name = "plan";
  let cppNamespace = "::symoc::planir";
  let summary = "optimizer plans: one step rule per parameter block";
}

class Plan_Op<string mnemonic, list<Trait> traits = []>
    : Op<Plan_Dialect, mnemonic, traits>;

def Plan_OptimizerOp : Plan_Op<"optimizer",
    [Symbol, SingleBlock, NoTerminator, IsolatedFromAbove]> {
  let summary = "the optimizer of one model under one policy";
  let arguments = (ins SymbolNameAttr:$sym_name, StrAttr:$policy, StrAttr:$fingerprint,
                   I64Attr:$state_bytes, I64Attr:$adamw_state_bytes);
  let regions = (region SizedRegion<1>:$body);
  let assemblyFormat = "$sym_name attr-dict-with-keyword $body";
}

def Plan_ParamOp : Plan_Op<"param"> {
  let summary = "a trained parameter (ONNX initializer), shape only";
  let description = [{
    `cls` is what the policies saw (embedding, hidden, swiglu_up, vector, ...);
    `left` / `right` are the compact groups the claims generate on its rows / columns.
  }];
  let arguments = (ins StrAttr:$name, StrAttr:$cls, StrAttr:$left, StrAttr:$right);
  let results = (outs AnyTensor:$result);
  let assemblyFormat = "$name attr-dict `:` type($result)";
}

def Plan_StepOp : Plan_Op<"step"> {
  let summary = "one runtime call: a rule applied to one block or to blocks stepped jointly";
  let description = [{
    `kind` is the runtime rule (adamw, muon, symo, symo_coupled, lausu, ...);
    `groups` the Symo group pair (or the shared group); `hyper` its hyper-parameters;
    `gauges` the projected gauges ("kind(a, b, c)" over the operand positions).
  }];
  let arguments = (ins Variadic<AnyTensor>:$params, StrAttr:$kind, ArrayAttr:$groups,
                   DictionaryAttr:$hyper, ArrayAttr:$gauges, I64Attr:$state_bytes,
                   F64Attr:$flops, StrAttr:$source);
  let assemblyFormat = "$kind `(` $params `)` attr-dict `:` type($params)";
}

#endif
