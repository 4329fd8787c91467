"""Sets a float attribute of one named node (a fuzz_semantic attribute mutation as a fixture).

usage: set_attr.py IN.onnx OUT.onnx NODE ATTR VALUE
"""
import sys

import onnx
from onnx import helper


def main(argv):
    src, dst, node, attr, value = argv[1], argv[2], argv[3], argv[4], float(argv[5])
    model = onnx.load(src)
    hit = [n for n in model.graph.node if n.name == node]
    if not hit:
        raise SystemExit("set_attr.py: no node %r in %s" % (node, src))
    n = hit[0]
    keep = [a for a in n.attribute if a.name != attr]
    del n.attribute[:]
    n.attribute.extend(keep + [helper.make_attribute(attr, value)])
    onnx.save(model, dst)


if __name__ == "__main__":
    main(sys.argv)
