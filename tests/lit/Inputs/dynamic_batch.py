"""Makes axis 0 of every graph input and output a named dynamic dimension ('batch') and
drops the stored shapes, as an exporter with dynamic axes writes a model.

usage: dynamic_batch.py IN.onnx OUT.onnx
"""
import sys

import onnx


def main(argv):
    model = onnx.load(argv[1])
    for vi in list(model.graph.input) + list(model.graph.output):
        dims = vi.type.tensor_type.shape.dim
        if dims:
            dims[0].ClearField("dim_value")
            dims[0].dim_param = "batch"
    del model.graph.value_info[:]
    onnx.save(model, argv[2])


if __name__ == "__main__":
    main(sys.argv)
