"""Changes the op type of every node of one type (a fuzz_semantic op-swap case as a fixture).

usage: retype_node.py IN.onnx OUT.onnx FROM_OP TO_OP
"""
import sys

import onnx


def main(argv):
    src, dst, old, new = argv[1:5]
    model = onnx.load(src)
    hits = 0
    for n in model.graph.node:
        if n.op_type == old:
            n.op_type, hits = new, hits + 1
    if not hits:
        raise SystemExit("retype_node.py: no %s node in %s" % (old, src))
    onnx.save(model, dst)


if __name__ == "__main__":
    main(sys.argv)
