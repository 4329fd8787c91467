#!/usr/bin/python3
"""Writes small ONNX models, valid or broken in one chosen way, for the lit tests.

Usage: make_model.py KIND OUT.onnx

KIND is one of:
  valid              x[2,4] -> Gemm(W[3,4], b[3]) -> y, W and b inline
  undefined-value    a node reads a value that nothing defines
  unknown-domain     the model imports (and a node uses) the domain "com.example"
  opset18            default-domain opset 18 (newer than ONNX 1.12 knows; adapted)
  opset25            default-domain opset 25 (newer than symoc reads)
  ext-absolute       W's external data location is an absolute path (/etc/passwd)
  ext-dotdot         W's external data location is ../W.bin
  ext-missing        W's external data location is W.bin, which is not written
  ext-ok             W's external data in W.bin next to the model (written too)
  ext-short          W.bin is written but shorter than offset + length
  raw-short          Reshape's int64 shape initializer has 3 raw bytes for 2 elements
  huge-dims          Reshape's int64 shape initializer has dims [2^32, 2^32] (the
                     element count overflows int64) and no data
  div-overflow       Reshape's shape is INT64_MIN / -1 (int64 Div that overflows)
  newline-op         an unknown op whose op_type holds a newline ("Bad\nOp") after Gemm
Binary inputs are made here rather than committed so that the test shows what they are.
"""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def gemm_model(opset=17, domain_extra=None):
    w = numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(3, 4), "W")
    b = numpy_helper.from_array(np.ones(3, dtype=np.float32), "b")
    node = helper.make_node("Gemm", ["x", "W", "b"], ["y"], name="fc", transB=1)
    graph = helper.make_graph(
        [node], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
        initializer=[w, b])
    opsets = [helper.make_opsetid("", opset)]
    if domain_extra:
        opsets.append(helper.make_opsetid(domain_extra, 1))
    return helper.make_model(graph, opset_imports=opsets, producer_name="make_model.py")


def externalize(model, location, write_bytes=None):
    """Moves W's bytes to `location` (recorded as given; optionally writes a file)."""
    w = model.graph.initializer[0]
    data = w.raw_data
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    for k, v in (("location", location), ("offset", "0"), ("length", str(len(data)))):
        e = w.external_data.add()
        e.key, e.value = k, v
    return data


def main():
    kind, out = sys.argv[1], sys.argv[2]
    out_dir = os.path.dirname(os.path.abspath(out))
    m = gemm_model()
    if kind == "valid":
        pass
    elif kind == "undefined-value":
        m.graph.node[0].input[0] = "nowhere"
    elif kind == "unknown-domain":
        m = gemm_model(domain_extra="com.example")
        m.graph.node.append(helper.make_node("Frobnicate", ["y"], ["z"], domain="com.example"))
    elif kind == "opset18":
        m = gemm_model(opset=18)
    elif kind == "opset25":
        m = gemm_model(opset=25)
    elif kind == "ext-absolute":
        externalize(m, "/etc/passwd")
    elif kind == "ext-dotdot":
        data = externalize(m, "../W.bin")
    elif kind == "ext-missing":
        externalize(m, "W.bin")
    elif kind in ("ext-ok", "ext-short"):
        data = externalize(m, "W.bin")
        with open(os.path.join(out_dir, "W.bin"), "wb") as f:
            f.write(data if kind == "ext-ok" else data[:10])
    elif kind == "newline-op":
        m.graph.node.append(helper.make_node("Bad\nOp", ["y"], ["z"], name="bad"))
        m.graph.output[0].name = "z"
    elif kind in ("raw-short", "huge-dims", "div-overflow"):
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
        nodes = [helper.make_node("Reshape", ["x", "s"], ["y"], name="reshape")]
        if kind == "raw-short":
            s = TensorProto(name="s", data_type=TensorProto.INT64, dims=[2])
            s.raw_data = b"\x01\x02\x03"
            inits = [s]
        elif kind == "huge-dims":
            inits = [TensorProto(name="s", data_type=TensorProto.INT64, dims=[2**32, 2**32])]
        else:
            inits = [numpy_helper.from_array(np.array([-2**63], dtype=np.int64), "a"),
                     numpy_helper.from_array(np.array([-1], dtype=np.int64), "b")]
            nodes.insert(0, helper.make_node("Div", ["a", "b"], ["s"], name="div"))
        m = helper.make_model(helper.make_graph(nodes, "g", [x], [y], initializer=inits),
                              opset_imports=[helper.make_opsetid("", 17)])
    else:
        sys.exit(f"make_model.py: unknown kind {kind}")
    # Written as bytes: onnx.save would try to resolve the external data.
    with open(out, "wb") as f:
        f.write(m.SerializeToString())


if __name__ == "__main__":
    main()
