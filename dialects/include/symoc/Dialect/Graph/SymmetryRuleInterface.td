#ifndef SYMOC_GRAPH_SYMMETRYRULEINTERFACE
#define SYMOC_GRAPH_SYMMETRYRULEINTERFACE

include "mlir/IR/OpBase.td"

// The Toy Ch-4 pattern: the space analysis calls one method per op, and each op
// family says which axes it ties together and which group it allows on them.
def SymmetryRuleOpInterface : OpInterface<"SymmetryRule"> {
  let cppNamespace = "::symoc::graph";
  let description = [{
    Describes how an op constrains the weight-space symmetry groups of the axes
    it touches: which (value, axis) pairs must transform together, which group
    the op is equivariant under on them, and how scales and signs flow through
    it. An op without this interface is a barrier: every axis it touches is
    fixed (group 1).
  }];
  let methods = [
    InterfaceMethod<"Records the op's constraints into the builder.",
      "void", "applySymmetryRule", (ins "::symoc::graph::SpaceBuilder &":$builder)>,
  ];
}

#endif
