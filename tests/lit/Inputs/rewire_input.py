"""Rewires one input of one node of an ONNX model (a fuzz case as a fixture).

usage: rewire_input.py IN.onnx OUT.onnx NODE_NAME INPUT_INDEX NEW_VALUE_NAME
"""
import sys

import onnx


def main(argv):
    src, dst, node_name, index, value = argv[1], argv[2], argv[3], int(argv[4]), argv[5]
    model = onnx.load(src)
    nodes = [n for n in model.graph.node if n.name == node_name]
    if len(nodes) != 1:
        sys.exit(f"rewire_input.py: {src}: expected one node named {node_name}, found {len(nodes)}")
    nodes[0].input[index] = value
    onnx.save(model, dst)


if __name__ == "__main__":
    main(sys.argv)
