"""Shared by the lit inputs that put nodes on a value of an ONNX model (insert_node.py,
positional_node.py, chain_node.py, mask_node.py, shift_node.py)."""
import sys

import onnx


def producer(g, value, src, tool):
    """Index of the one node making `value`; exits naming the file otherwise."""
    at = [i for i, n in enumerate(g.node) if value in n.output]
    if len(at) != 1:
        sys.exit(f"{tool}: {src}: expected one node making {value}, found {len(at)}")
    return at[0]


def splice(g, at, value, new, nodes):
    """Puts `nodes` right after node `at` (the maker of `value`); every later node that read
    `value` reads `new` instead."""
    for n in g.node[at + 1:]:
        for k, x in enumerate(n.input):
            if x == value:
                n.input[k] = new
    for k, n in enumerate(nodes):
        g.node.insert(at + 1 + k, n)


def value_dims(model, value, src, tool):
    """The dims ONNX shape inference gives `value` (0 for a dimension it leaves unknown);
    exits naming the file when it gives no rank."""
    g = onnx.shape_inference.infer_shapes(model).graph
    for vi in list(g.value_info) + list(g.output) + list(model.graph.input):
        if vi.name == value and vi.type.tensor_type.HasField("shape"):
            return [d.dim_value for d in vi.type.tensor_type.shape.dim]
    sys.exit(f"{tool}: {src}: no rank known for {value}")
