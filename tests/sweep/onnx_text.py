"""ONNX textual syntax (what onnx.parser reads) for a small model: onnx 1.12 has the parser
but not onnx.printer. Handles what tests/sweep/fuzz_graphs.py generates: float/int64/bool
tensors, initializers in the graph signature, Constant nodes, int/float/ints/floats/string/
tensor attributes. to_text(model) -> str; `python3 onnx_text.py MODEL.onnx` prints it."""
import sys

import numpy as np
import onnx
from onnx import helper, numpy_helper

TYPES = {1: "float", 7: "int64", 9: "bool", 6: "int32", 11: "double"}


def _num(v, dt):
    if dt == 9:
        return "1" if v else "0"
    if dt in (1, 11):
        return repr(float(v))
    return str(int(v))


def _tensor(t, with_name=False):
    a = numpy_helper.to_array(t)
    dt = TYPES[t.data_type]
    dims = "" if a.ndim == 0 else "[" + ", ".join(str(d) for d in a.shape) + "]"
    vals = ",".join(_num(v, t.data_type) for v in a.reshape(-1))
    return f"{dt}{dims} {t.name + ' = ' if with_name else ''}{{{vals}}}"


def _attr(a):
    v = helper.get_attribute_value(a)
    if a.type == onnx.AttributeProto.TENSOR:
        return f"{a.name} = {_tensor(v)}"
    if a.type == onnx.AttributeProto.STRING:
        return f'{a.name} = "{v.decode()}"'
    if a.type == onnx.AttributeProto.INTS:
        return f"{a.name} = [{', '.join(str(x) for x in v)}]"
    if a.type == onnx.AttributeProto.FLOATS:
        return f"{a.name} = [{', '.join(repr(float(x)) for x in v)}]"
    if a.type == onnx.AttributeProto.FLOAT:
        return f"{a.name} = {float(v)!r}"
    return f"{a.name} = {v}"


def _vi(v):
    tt = v.type.tensor_type
    if not tt.HasField("shape"):
        return f"{TYPES[tt.elem_type]} {v.name}"
    dims = ", ".join(d.dim_param if d.dim_param else str(d.dim_value) for d in tt.shape.dim)
    return f"{TYPES[tt.elem_type]}[{dims}] {v.name}"


def to_text(model):
    opset = ", ".join(f'"{o.domain}" : {o.version}' for o in model.opset_import)
    g = model.graph
    lines = [f"<ir_version: {model.ir_version}, opset_import: [{opset}]>"]
    sig = f"{g.name or 'g'} ({', '.join(_vi(v) for v in g.input)}) => " \
          f"({', '.join(_vi(v) for v in g.output)})"
    if g.initializer:
        inits = ",\n  ".join(_tensor(t, True) for t in g.initializer)
        sig += f"\n  <{inits}>"
    lines.append(sig + " {")
    for n in g.node:
        attrs = f" <{', '.join(_attr(a) for a in n.attribute)}>" if n.attribute else ""
        lines.append(f"  {', '.join(n.output)} = {n.op_type}{attrs} ({', '.join(n.input)})")
    lines.append("}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(to_text(onnx.load(sys.argv[1])))
