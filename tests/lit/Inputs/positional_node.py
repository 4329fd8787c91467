"""Inserts one order-dependent node on a value of an ONNX model (a fuzz_semantic --mutations
positional case as a fixture); every later node that read VALUE reads its result instead.

usage: positional_node.py IN.onnx OUT.onnx VALUE AXIS KIND [K]
  KIND: roll (by K), reverse, gather-perm (the positions reversed in pairs: 1 0 3 2 ...),
        gather-dup (position K read twice, K + 1 dropped), cumsum, shift (one zero in front)
"""
import sys

import numpy as np
import onnx
from onnx import helper, numpy_helper
from onnx_splice import producer, splice, value_dims


def const(name, values):
    return helper.make_node("Constant", [], [name], name=name,
                            value=numpy_helper.from_array(np.asarray(values, dtype=np.int64), name))


def main(argv):
    src, dst, value, axis, kind = argv[1], argv[2], argv[3], int(argv[4]), argv[5]
    k = int(argv[6]) if len(argv) > 6 else 1
    model = onnx.load(src)
    g = model.graph
    at = producer(g, value, src, "positional_node.py")
    dims = value_dims(model, value, src, "positional_node.py")
    n = dims[axis]
    t = value + "__pos"
    nodes = []
    if kind == "roll":
        nodes += [const(t + "_a", [axis]), const(t + "_k", [k]), const(t + "_n", [n]), const(t + "_z", [0]),
                  helper.make_node("Slice", [value, t + "_k", t + "_n", t + "_a"], [t + "_hi"], name=t + "_hi"),
                  helper.make_node("Slice", [value, t + "_z", t + "_k", t + "_a"], [t + "_lo"], name=t + "_lo"),
                  helper.make_node("Concat", [t + "_hi", t + "_lo"], [t], name=t, axis=axis)]
    elif kind == "reverse":
        nodes += [const(t + "_a", [axis]), const(t + "_s", [-1]), const(t + "_e", [-(n + 1)]), const(t + "_st", [-1]),
                  helper.make_node("Slice", [value, t + "_s", t + "_e", t + "_a", t + "_st"], [t], name=t)]
    elif kind in ("gather-perm", "gather-dup"):
        idx = list(range(n))
        if kind == "gather-perm":
            for i in range(0, n - 1, 2):
                idx[i], idx[i + 1] = idx[i + 1], idx[i]
        else:
            idx[k + 1] = idx[k]
        nodes += [const(t + "_i", idx), helper.make_node("Gather", [value, t + "_i"], [t], name=t, axis=axis)]
    elif kind == "cumsum":
        nodes += [const(t + "_a", axis), helper.make_node("CumSum", [value, t + "_a"], [t], name=t)]
    elif kind == "shift":
        pads = [0] * (2 * len(dims))
        pads[axis] = 1
        nodes += [const(t + "_p", pads), helper.make_node("Pad", [value, t + "_p"], [t + "_pad"], name=t + "_pad"),
                  const(t + "_a", [axis]), const(t + "_z", [0]), const(t + "_n", [n]),
                  helper.make_node("Slice", [t + "_pad", t + "_z", t + "_n", t + "_a"], [t], name=t)]
    else:
        sys.exit(f"positional_node.py: unknown kind {kind}")
    splice(g, at, value, t, nodes)
    onnx.save(model, dst)


if __name__ == "__main__":
    main(sys.argv)
