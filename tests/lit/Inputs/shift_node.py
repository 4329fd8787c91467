"""Shifts a value of an ONNX model by one along an axis, the vacated entry zero filled (a
fuzz_semantic shift mutation as a fixture): NEW = Slice(Pad(VALUE, 1 before on AXIS), 0 .. n)
along AXIS, or with `edge` the vacated entry a copy of its neighbour (Pad mode edge); every
later node that read VALUE reads NEW instead.

usage: shift_node.py IN.onnx OUT.onnx VALUE AXIS [constant|edge]
"""
import sys

import numpy as np
import onnx
from onnx import helper, numpy_helper
from onnx_splice import producer, splice, value_dims


def main(argv):
    src, dst, value, axis = argv[1], argv[2], argv[3], int(argv[4])
    mode = argv[5] if len(argv) > 5 else "constant"
    model = onnx.load(src)
    g = model.graph
    at = producer(g, value, src, "shift_node.py")
    rank = len(value_dims(model, value, src, "shift_node.py"))
    pads = [0] * (2 * rank)
    pads[axis] = 1
    new = value + "__shifted"

    def const(name, arr):
        return helper.make_node("Constant", [], [name], name=name, value=numpy_helper.from_array(arr, name))
    nodes = [const(new + "_p", np.array(pads, np.int64)),
             helper.make_node("Pad", [value, new + "_p"], [new + "_pad"], name=new + "_pad", mode=mode),
             const(new + "_z", np.array([0], np.int64)), const(new + "_n", np.array([-1], np.int64)),
             const(new + "_a", np.array([axis], np.int64)),
             helper.make_node("Slice", [new + "_pad", new + "_z", new + "_n", new + "_a"], [new], name=new)]
    splice(g, at, value, new, nodes)
    onnx.save(model, dst)


if __name__ == "__main__":
    main(sys.argv)
