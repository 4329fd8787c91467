"""Inserts one node on a value of an ONNX model (a fuzz_semantic --mutations insert case as
a fixture): NEW = OP(VALUE) or OP(VALUE, c) with c a scalar Constant node; every later node
that read VALUE reads NEW instead.

usage: insert_node.py IN.onnx OUT.onnx VALUE OP [SCALAR]
"""
import sys

import numpy as np
import onnx
from onnx import helper, numpy_helper
from onnx_splice import producer, splice


def main(argv):
    src, dst, value, op = argv[1], argv[2], argv[3], argv[4]
    model = onnx.load(src)
    g = model.graph
    at = producer(g, value, src, "insert_node.py")
    new = value + "__inserted"
    nodes, inputs = [], [value]
    if len(argv) > 5:
        c = numpy_helper.from_array(np.asarray(float(argv[5]), dtype=np.float32), new + "_c")
        nodes.append(helper.make_node("Constant", [], [new + "_c"], name=new + "_c", value=c))
        inputs.append(new + "_c")
    nodes.append(helper.make_node(op, inputs, [new], name=new))
    splice(g, at, value, new, nodes)
    onnx.save(model, dst)


if __name__ == "__main__":
    main(sys.argv)
