//===- GraphOps.td - The symoc graph dialect ---------------*- tablegen -*-===//
//
// ONNX graphs as imported by symoc: curated ops for the ONNX ops that carry a
// symmetry rule or shape arithmetic, one generic op for everything else, and
// shape-only parameters (no weight bytes in the IR).
//
//===----------------------------------------------------------------------===//
#ifndef SYMOC_GRAPH_OPS
#define SYMOC_GRAPH_OPS

include "mlir/IR/OpBase.td"
include "mlir/IR/AttrTypeBase.td"
include "mlir/Interfaces/SideEffectInterfaces.td"
include "symoc/Dialect/Graph/SymmetryRuleInterface.td"

def Graph_Dialect : Dialect {
  let name = "graph";
  let cppNamespace = "::symoc::graph";
  let summary = "ONNX graphs with shape-only parameters, for symmetry analysis";
  let description = [{
    Ops keep ONNX's names and attributes (ONNX attributes are stored as op
    attributes under their ONNX names). Operands and results are tensors; an
    absent optional ONNX input is the result of `graph.none`.
  }];
}

class Graph_Op<string mnemonic, list<Trait> traits = []>
    : Op<Graph_Dialect, mnemonic, traits>;

//===----------------------------------------------------------------------===//
// Values that are not computed: parameters, small constants, absent inputs.
//===----------------------------------------------------------------------===//

def Graph_ParamOp : Graph_Op<"param", [Pure]> {
  let summary = "a trainable parameter (an ONNX initializer), shape only";
  let description = [{
    `name` is the initializer's name. The result type carries dims and dtype;
    the bytes stay in the model file. `location` is the external-data file when
    there is one; `from_constant` marks weights that the exporter stored as a
    float Constant node instead of an initializer.
  }];
  let arguments = (ins StrAttr:$name, OptionalAttr<StrAttr>:$location,
                   UnitAttr:$from_constant);
  let results = (outs AnyTensor:$result);
  let assemblyFormat = "$name attr-dict `:` type($result)";
}

def Graph_ConstantOp : Graph_Op<"constant", [Pure]> {
  let summary = "a constant whose value matters to the analysis or is fixed";
  let description = [{
    Small integer tensors (shapes, axes, indices) and small float scalars are
    read into `value`. Larger fixed tensors (masks, rotary tables, frozen
    buffers) keep only their shape: `value` is absent and `name` says where
    they come from.
  }];
  let arguments = (ins OptionalAttr<ElementsAttr>:$value, OptionalAttr<StrAttr>:$name);
  let results = (outs AnyTensor:$result);
  let assemblyFormat = "(`value` $value^)? attr-dict `:` type($result)";
}

def Graph_NoneOp : Graph_Op<"none", [Pure]> {
  let summary = "an absent optional input";
  let results = (outs NoneType:$result);
  let assemblyFormat = "attr-dict";
}

//===----------------------------------------------------------------------===//
// ONNX ops. Every curated op has the same signature: ONNX inputs in order,
// ONNX outputs in order, ONNX attributes as op attributes.
//===----------------------------------------------------------------------===//

class Graph_OnnxOp<string name, list<Trait> traits = []>
    : Graph_Op<name, !listconcat(traits, [
        DeclareOpInterfaceMethods<SymmetryRuleOpInterface>])> {
  let summary = "ONNX " # name;
  let arguments = (ins Variadic<AnyType>:$inputs);
  let results = (outs Variadic<AnyType>:$outputs);
  let assemblyFormat = "$inputs attr-dict `:` functional-type($inputs, $outputs)";
  let extraClassDeclaration = [{
    static constexpr ::llvm::StringLiteral onnxName() { return "}] # name # [{"; }
  }];
}

// Elementwise ops whose rule only depends on how the scalar function behaves
// under sign flips and positive scaling (see ElementwiseRules.cpp).
foreach name = ["Relu", "LeakyRelu", "PRelu", "Tanh", "Sigmoid", "Erf",
                "Softplus", "Exp", "Log", "Cos", "Sin", "Sqrt", "Reciprocal",
                "Neg", "Abs", "Pow", "Identity", "Dropout", "Cast", "Clip",
                "HardSigmoid", "Gelu", "Elu", "Selu", "Celu", "Softsign",
                "Atan", "Asin", "Sinh", "Tan", "Mish", "HardSwish", "Not",
                "Floor", "Ceil", "Round", "Sign", "IsNaN", "Silu"] in
  def Graph_ # name # Op : Graph_OnnxOp<name, [Pure]>;

// Broadcasting binary (and n-ary) elementwise ops.
foreach name = ["Add", "Sub", "Mul", "Div", "Where", "Equal", "Less",
                "Greater", "LessOrEqual", "GreaterOrEqual", "And", "Or",
                "Min", "Max", "Mod", "Sum", "Mean"] in
  def Graph_ # name # Op : Graph_OnnxOp<name, [Pure]>;

// Linear algebra.
foreach name = ["Gemm", "MatMul", "Einsum", "Conv", "ConvTranspose"] in
  def Graph_ # name # Op : Graph_OnnxOp<name, [Pure]>;

// Normalizations and reductions over an axis.
foreach name = ["Softmax", "LogSoftmax", "LayerNormalization",
                "BatchNormalization", "InstanceNormalization",
                "GroupNormalization", "RMSNormalization", "ReduceMean", "ReduceSum", "ReduceMax",
                "ReduceMin", "ReduceProd", "ReduceL2", "ReduceSumSquare",
                "ArgMax", "ArgMin", "TopK", "CumSum"] in
  def Graph_ # name # Op : Graph_OnnxOp<name, [Pure]>;

// Data movement and shape arithmetic.
foreach name = ["Reshape", "Transpose", "Split", "Slice", "Concat", "Gather",
                "GatherElements", "GatherND", "ScatterND", "Squeeze", "Unsqueeze",
                "Expand", "Flatten", "Tile", "Shape", "Size",
                "ConstantOfShape", "Range", "Trilu", "Pad", "ScatterElements", "OneHot",
                "DepthToSpace", "SpaceToDepth"] in
  def Graph_ # name # Op : Graph_OnnxOp<name, [Pure]>;

// Pooling, resampling and the discrete Fourier transform (linear along one axis).
foreach name = ["MaxPool", "AveragePool", "GlobalAveragePool",
                "GlobalMaxPool", "Resize", "DFT"] in
  def Graph_ # name # Op : Graph_OnnxOp<name, [Pure]>;

//===----------------------------------------------------------------------===//
// Ops that recomposition passes build (not ONNX ops; never imported).
//===----------------------------------------------------------------------===//

def Graph_RotaryOp : Graph_Op<"Rotary", [Pure,
    DeclareOpInterfaceMethods<SymmetryRuleOpInterface>]> {
  let summary = "a rotary position map: x * cos + g(x) * sin";
  let description = [{
    Built by `symoc-recompose-rotary` from the decomposed rotary embedding:
      y[.., k, ..] = x[.., k, ..] * cos[k] + sign[k] * x[.., source[k], ..] * sin[k]
    along `axis` (the channel axis of `input`; `cos` and `sin` broadcast to the
    result numpy-style). `source` and `sign` spell the signed permutation g
    (rotate-half: source = (i + d/2) mod d, sign = -1 on the first half).
    `pairs` (flattened [i0, j0, i1, j1, ..]) lists the channel pairs on which
    the pass checked, on the constant tables, that the map is a rotation-
    scaling [[c, -s], [s, c]] at every position (cos[i] = cos[j], sin[i] =
    sin[j] with opposite signs); the op is only built when every channel is
    in such a pair. Its symmetry rule claims the commutant of those maps.
  }];
  let arguments = (ins AnyTensor:$input, AnyTensor:$cos, AnyTensor:$sin,
                   I64Attr:$axis, DenseI64ArrayAttr:$source,
                   DenseI64ArrayAttr:$sign, DenseI64ArrayAttr:$pairs);
  let results = (outs AnyTensor:$output);
  let assemblyFormat = [{
    $input `,` $cos `,` $sin attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Everything else: a barrier to the analysis.
//===----------------------------------------------------------------------===//

def Graph_GenericOp : Graph_Op<"onnx"> {
  let summary = "an ONNX op without a curated definition";
  let description = [{
    Carries the ONNX op_type, domain, the opset version it was imported under
    and its attributes in `attrs`. The space analysis treats it as a barrier.
  }];
  let arguments = (ins Variadic<AnyType>:$inputs, StrAttr:$op_type,
                   StrAttr:$domain, I64Attr:$version,
                   DictionaryAttr:$attrs);
  let results = (outs Variadic<AnyType>:$outputs);
  let assemblyFormat = [{
    $op_type `(` $inputs `)` attr-dict `:` functional-type($inputs, $outputs)
  }];
}

#endif // SYMOC_GRAPH_OPS
