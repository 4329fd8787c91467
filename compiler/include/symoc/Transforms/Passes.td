//===- Passes.td - symoc's transformation passes -----------*- tablegen -*-===//
//
// Normalization passes recompose the decomposed patterns that exporters write
// for ops ONNX 1.12 lacks or that torch 1.13 spells out (RMSNorm, LayerNorm,
// GELU, SiLU), so that the space analysis reasons on one op with one rule.
// Every rewrite is exact: the new op computes the same function for every
// input, which `symoc verify` checks against the original ONNX graph.
//
//===----------------------------------------------------------------------===//
#ifndef SYMOC_TRANSFORMS_PASSES
#define SYMOC_TRANSFORMS_PASSES

include "mlir/Pass/PassBase.td"

def FoldNoOpCasts : Pass<"symoc-fold-noop-casts", "mlir::ModuleOp"> {
  let summary = "Remove Casts to the type a value already has, and Identity";
  let description = [{
    Mixed-precision code casts around normalizations (x.to(float32) ...
    .to(dtype)); exported in float32 these Casts are the identity and would
    hide the patterns the recompose passes match. A Cast whose result type
    equals its operand's type, and every Identity with equal types, is
    replaced by its operand. Casts that change the type are kept.
  }];
  let dependentDialects = ["::symoc::graph::GraphDialect"];
}

def SplitFactorSelections : Pass<"symoc-split-factor-selections", "mlir::ModuleOp"> {
  let summary = "Rebuild constant selections along one factor of a split axis from slices of the unsplit axis";
  let description = [{
    R = Reshape(X) splits one axis of X into factors (f_0, .., f_{k-1}) and
    every use of R, through Transposes, takes a constant index or range along
    one factor j < k - 1 (Slice, Gather with constant indices, Split): timm's
    reshape(B, N, 3, H, d).permute(2, 0, 3, 1, 4).unbind(0), the (H, 3, d) and
    the grouped (KV, q_per_kv + 2, d) layouts of a fused qkv projection. Each
    selection is rebuilt from X: the contiguous blocks of X's axis it takes
    (one per index of the factors before j) sliced, concatenated and reshaped
    to the selection's factors, or, when only one axis is left after the
    factors before j, one Slice of the last axis of Reshape(X, (f_0 .. f_{j-1},
    f_j * P)); then the same Transposes. A Reshape consuming the selection is
    folded into the rebuilt one. The analysis then sees two-factor (H, d)
    splits. Anything else is left alone.
  }];
  let dependentDialects = ["::symoc::graph::GraphDialect"];
}

def CanonicalizeSlicedRotary : Pass<"symoc-canonicalize-sliced-rotary", "mlir::ModuleOp"> {
  let summary = "Rewrite rotary on sliced halves, Concat(x1*cos - x2*sin, x2*cos + x1*sin), into the rotate-half form";
  let description = [{
    x1, x2 are the two halves of one axis of x (Slices [0, h) and [h, 2h) or
    the two outputs of an even Split), joined back by a Concat along that axis
    of x1*c + s1 x2*s and x2*c + s2 x1*s, with the same c and the same s in
    both halves and s1 = -s2 (terms in any order, Sub or Add of Neg, Neg on
    either factor). This is x*cat(c, c) + g(x)*cat(s, s) with
    g(x) = Concat(s1 x2, s2 x1): written so, symoc-recompose-rotary turns it
    into graph.Rotary. Halves that do not cover the axis, tables that differ
    between the halves or equal signs are left alone.
  }];
  let dependentDialects = ["::symoc::graph::GraphDialect"];
}

def RecomposeRMSNorm : Pass<"symoc-recompose-rmsnorm", "mlir::ModuleOp"> {
  let summary = "Recompose x / sqrt(mean(x^2) + eps) [* gain] into graph.RMSNormalization";
  let description = [{
    Matches, over the last axis only and with keepdims = 1:
      x * Reciprocal(Sqrt(ReduceMean(x^2) + eps)),  x * (1 / Sqrt(...)),
      x / Sqrt(...),  x * Pow(ReduceMean(x^2) + eps, -0.5)
    optionally followed by a multiplication with a gain whose only axis is the
    normalized one. x^2 may be Pow(x, 2) or Mul(x, x). Intermediate values
    must have no other use and the same x must feed both sides.
  }];
  let dependentDialects = ["::symoc::graph::GraphDialect"];
}

def RecomposeLayerNorm : Pass<"symoc-recompose-layernorm", "mlir::ModuleOp"> {
  let summary = "Recompose the decomposed LayerNorm into graph.LayerNormalization";
  let description = [{
    d = x - ReduceMean(x); y = d / Sqrt(ReduceMean(d^2) + eps) [* gain] [+ bias],
    both means over the last axis only with keepdims = 1.
  }];
  let dependentDialects = ["::symoc::graph::GraphDialect"];
}

def RecomposeActivations : Pass<"symoc-recompose-activations", "mlir::ModuleOp"> {
  let summary = "Recompose GELU (erf and tanh forms) and x * sigmoid(x)";
  let description = [{
    x * 0.5 * (1 + erf(x / sqrt(2))) -> graph.Gelu;
    0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3))) -> graph.Gelu
    (approximate = "tanh"); x * sigmoid(x) -> graph.Silu. Constants must match
    within a relative tolerance of 1e-6, otherwise the pattern is left alone.
  }];
  let dependentDialects = ["::symoc::graph::GraphDialect"];
}

def RecomposeRotary : Pass<"symoc-recompose-rotary", "mlir::ModuleOp"> {
  let summary = "Recompose x * cos + g(x) * sin (rotary embedding) into graph.Rotary";
  let description = [{
    g is a signed permutation of one axis read off Slice/Neg/Concat: the
    rotate-half form Concat(Neg(x[.., d/2:]), x[.., :d/2]) or the interleaved
    form (GPT-J) Reshape(Concat(Unsqueeze(Neg(x[.., 1::2])), Unsqueeze(x[.., ::2]))).
    g must pair the channels (2-cycles with opposite signs) and the tables
    must be provably equal on both channels of every pair at every position
    (constants read from graph.constant values or, from `symoc analyze`, from
    the model; elementwise ops, selections along other axes and Slice/Concat
    along the channels followed), so that each pair sees a rotation-scaling
    [[c, -s], [s, c]].
    Anything else is left alone.
  }];
  let dependentDialects = ["::symoc::graph::GraphDialect"];
}

def Normalize : Pass<"symoc-normalize", "mlir::ModuleOp"> {
  let summary = "Run every canonicalization and recomposition pass in the analysis' order";
  let dependentDialects = ["::symoc::graph::GraphDialect"];
}

def AnnotateSpaces : Pass<"symoc-annotate-spaces", "mlir::ModuleOp"> {
  let summary = "Test pass: write the space analysis into the IR";
  let description = [{
    Runs symoc::analyzeSpaces and writes, on each graph.param, the attribute
    graph.spaces = ["s1", "s2,s3", ...] (the space of each axis; the pieces
    of a cut axis joined with ","), and on the module graph.space_groups =
    {s1 = "S x Scale+", ...}, for FileCheck. With claims-json=FILE it also
    writes the claims, so that claims found on a rewritten graph can be
    checked by `symoc verify` against the original ONNX model.
  }];
  let options = [
    Option<"loss", "loss", "std::string", /*default=*/"\"auto\"",
           "Loss assumed after the outputs: auto, cross-entropy, mse or none">,
    Option<"claimsJson", "claims-json", "std::string", /*default=*/"\"\"",
           "Also write the claims (docs/symmetry-schema.md) to this file, "
           "for `symoc verify MODEL --claims FILE`">
  ];
  let dependentDialects = ["::symoc::graph::GraphDialect"];
}

#endif // SYMOC_TRANSFORMS_PASSES
