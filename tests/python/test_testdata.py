#!/usr/bin/python3
"""The exported ONNX graphs compute what the torch modules compute.

For every fixture, run models/<fixture>.onnx with tests/python/onnx_numpy.py (an independent
NumPy evaluator, float64) on models/testdata/<fixture>/test_data_set_0/input_*.pb and
compare with output_0.pb (torch float32, training mode): relative error (Frobenius) < 1e-4.
Self-check: the same run with 1% elementwise noise on one initializer must differ by more
than 1e-4.
Exit 77 (skipped) when numpy or onnx is missing.
"""
import glob
import os
import sys

try:
    import numpy as np
    import onnx
    from onnx import numpy_helper
except ImportError as ex:
    print("skipped: %s" % ex)
    sys.exit(77)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import onnx_numpy  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODELS = os.path.join(ROOT, "models")
TOL = 1e-4


def load_pb(path):
    t = onnx.TensorProto()
    with open(path, "rb") as f:
        t.ParseFromString(f.read())
    return t.name, numpy_helper.to_array(t)


def rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def main():
    errors, n = [], 0
    for path in sorted(glob.glob(os.path.join(MODELS, "*.onnx"))):
        name = os.path.basename(path)[:-5]
        d = os.path.join(MODELS, "testdata", name, "test_data_set_0")
        ins = sorted(glob.glob(os.path.join(d, "input_*.pb")))
        if not ins:
            errors.append("%s: no test data in %s" % (name, d))
            continue
        model = onnx.load(path)
        feeds = dict(load_pb(p) for p in ins)
        _, want = load_pb(os.path.join(d, "output_0.pb"))
        try:
            got = onnx_numpy.run(model, feeds)[0]
        except NotImplementedError as ex:
            errors.append("%s: evaluator lacks %s" % (name, ex))
            continue
        e = rel(got, want)
        # self-check: a perturbed parameter is visible (initializers, or the named Constants)
        target = model.graph.initializer[0] if model.graph.initializer else next(
            nd.attribute[0].t for nd in model.graph.node if nd.name.startswith("const_"))
        # elementwise noise: a uniform scale would be absorbed by a following norm (resnet_cnn)
        arr = numpy_helper.to_array(target)
        arr = arr * (1 + 0.01 * np.random.default_rng(0).standard_normal(arr.shape))
        target.CopyFrom(numpy_helper.from_array(arr.astype(np.float32), target.name))
        e_bad = rel(onnx_numpy.run(model, feeds)[0], want)
        ok = e < TOL and e_bad > TOL
        print("%-22s output %s  rel err %.1e  (perturbed %s: %.1e)  %s" % (
            name, list(want.shape), e, target.name, e_bad, "ok" if ok else "FAIL"))
        if not e < TOL:
            errors.append("%s: ONNX output differs from torch by %.3g" % (name, e))
        if not e_bad > TOL:
            errors.append("%s: self-check: perturbing %s changed nothing (%.3g)"
                          % (name, target.name, e_bad))
        n += 1
    for e in errors:
        print("FAIL: " + e)
    print("%d fixtures evaluated: %s" % (n, "%d failure(s)" % len(errors) if errors else "ok"))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
