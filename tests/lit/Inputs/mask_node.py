"""Multiplies a value of an ONNX model by a constant 0/1 mask along one axis (entry 0 masked):
NEW = Mul(VALUE, mask), the mask of shape 1 x .. x n x .. x 1 with n the axis' size; every
later node that read VALUE reads NEW instead (a padding mask written as a constant).

usage: mask_node.py IN.onnx OUT.onnx VALUE AXIS
"""
import sys

import numpy as np
import onnx
from onnx import helper, numpy_helper
from onnx_splice import producer, splice, value_dims


def main(argv):
    src, dst, value, axis = argv[1], argv[2], argv[3], int(argv[4])
    model = onnx.load(src)
    g = model.graph
    at = producer(g, value, src, "mask_node.py")
    dims = value_dims(model, value, src, "mask_node.py")
    if not dims or dims[axis] <= 0:
        raise SystemExit("mask_node.py: no static size for axis %d of %r in %s" % (axis, value, src))
    shape = [1] * len(dims)
    shape[axis] = dims[axis]
    mask = np.ones(shape, np.float32)
    mask.reshape(-1)[0] = 0.0
    new = value + "__masked"
    nodes = [helper.make_node("Constant", [], [new + "_m"], name=new + "_m", value=numpy_helper.from_array(mask, new + "_m")),
             helper.make_node("Mul", [value, new + "_m"], [new], name=new)]
    splice(g, at, value, new, nodes)
    onnx.save(model, dst)


if __name__ == "__main__":
    main(sys.argv)
