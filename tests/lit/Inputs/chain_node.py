"""Inserts a chain of N unary nodes on a value of an ONNX model (NEW = OP(OP(...OP(VALUE))));
every later node that read VALUE reads the chain's end instead.

usage: chain_node.py IN.onnx OUT.onnx VALUE OP N
"""
import sys

import onnx
from onnx import helper
from onnx_splice import producer, splice


def main(argv):
    src, dst, value, op, count = argv[1], argv[2], argv[3], argv[4], int(argv[5])
    model = onnx.load(src)
    g = model.graph
    at = producer(g, value, src, "chain_node.py")
    nodes, cur = [], value
    for k in range(count):
        nxt = f"{value}__chain{k}"
        nodes.append(helper.make_node(op, [cur], [nxt], name=nxt))
        cur = nxt
    splice(g, at, value, cur, nodes)
    onnx.save(model, dst)


if __name__ == "__main__":
    main(sys.argv)
