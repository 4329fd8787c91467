"""Makes a value of an ONNX model cancel exactly: NEW = VALUE + (-VALUE) and the like; every
later node that read VALUE reads NEW (all zeros) instead.

usage: cancel_node.py IN.onnx OUT.onnx VALUE FORM
  FORM: add-neg (v + Neg(v)), add-mul (v + v * -1), sub-identity (v - Identity(v))
"""
import sys

import numpy as np
import onnx
from onnx import helper, numpy_helper
from onnx_splice import producer, splice


def main(argv):
    src, dst, value, form = argv[1:5]
    model = onnx.load(src)
    g = model.graph
    at = producer(g, value, src, "cancel_node.py")
    t = value + "__cancel"
    if form == "add-neg":
        nodes = [helper.make_node("Neg", [value], [t + "_n"], name=t + "_n"),
                 helper.make_node("Add", [value, t + "_n"], [t], name=t)]
    elif form == "add-mul":
        c = numpy_helper.from_array(np.asarray(-1.0, dtype=np.float32), t + "_c")
        nodes = [helper.make_node("Constant", [], [t + "_c"], name=t + "_c", value=c),
                 helper.make_node("Mul", [value, t + "_c"], [t + "_m"], name=t + "_m"),
                 helper.make_node("Add", [t + "_m", value], [t], name=t)]
    elif form == "sub-identity":
        nodes = [helper.make_node("Identity", [value], [t + "_i"], name=t + "_i"),
                 helper.make_node("Sub", [value, t + "_i"], [t], name=t)]
    else:
        sys.exit(f"cancel_node.py: unknown form {form}")
    splice(g, at, value, t, nodes)
    onnx.save(model, dst)


if __name__ == "__main__":
    main(sys.argv)
