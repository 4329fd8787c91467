#!/usr/bin/python3
"""The committed fixtures are what models/export_fixtures.py and models/make_expected.py
produce: regenerate both into a temporary folder and compare with models/.

  * every export passes export_fixtures.check (parameters are named initializers with the
    torch shapes, no Dropout, under 1 MB);
  * the regenerated expected/*.json equal the committed ones;
  * the regenerated .onnx files are byte-identical to the committed ones (only with torch
    1.13 and onnx 1.12, the versions they were exported with; otherwise that part is skipped);
  * exporting twice gives identical bytes (determinism);
  * the reference inputs/outputs in models/testdata are what a fresh export writes.
Exit 77 (skipped) when torch or onnx is missing.
"""
import os
import subprocess
import sys
import tempfile

try:
    import onnx
    import torch
except ImportError as ex:
    print("skipped: %s" % ex)
    sys.exit(77)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODELS = os.path.join(ROOT, "models")
sys.path.insert(0, MODELS)
import export_fixtures as ef  # noqa: E402


def same_tensor(committed, fresh, exact):
    """Inputs must be byte-identical; outputs are torch's float results, whose last bits
    depend on the CPU's kernels (AVX-512 vs AVX2, vendor), so they are compared to 1e-5."""
    if not os.path.exists(committed):
        return False
    a, b = open(committed, "rb").read(), open(fresh, "rb").read()
    if exact or a == b:
        return a == b
    import numpy as np
    from onnx import numpy_helper
    ta, tb = onnx.TensorProto(), onnx.TensorProto()
    ta.ParseFromString(a)
    tb.ParseFromString(b)
    x, y = numpy_helper.to_array(ta), numpy_helper.to_array(tb)
    return x.shape == y.shape and x.dtype == y.dtype and \
        np.allclose(x, y, rtol=1e-5, atol=1e-6 * max(1.0, float(np.abs(y).max(initial=0))))


def main():
    errors = []
    same_versions = torch.__version__.startswith("1.13") and onnx.__version__.startswith("1.12")
    with tempfile.TemporaryDirectory() as tmp:
        for name in sorted(ef.FIXTURES):
            model, proto = ef.export(name)
            for p in ef.check(name, model, proto):
                errors.append("%s: %s" % (name, p))
            data = proto.SerializeToString()
            ef.write_testdata(name, proto, *ef.export.io, os.path.join(tmp, "testdata"))
            if same_versions:
                for kind in ("input_0", "output_0"):
                    rel = os.path.join("testdata", name, "test_data_set_0", kind + ".pb")
                    if not same_tensor(os.path.join(MODELS, rel), os.path.join(tmp, rel),
                                       exact=(kind == "input_0")):
                        errors.append("%s: models/%s differs from a fresh export" % (name, rel))
            if ef.export(name)[1].SerializeToString() != data:
                errors.append("%s: two exports differ (not deterministic)" % name)
            path = os.path.join(MODELS, name + ".onnx")
            if not os.path.exists(path):
                errors.append("%s: %s is missing" % (name, path))
            elif same_versions:
                with open(path, "rb") as f:
                    if f.read() != data:
                        errors.append("%s: committed file differs from a fresh export; rerun "
                                      "models/export_fixtures.py" % name)
        out = os.path.join(tmp, "expected")
        r = subprocess.run([sys.executable, os.path.join(MODELS, "make_expected.py"), "--out", out],
                           capture_output=True, text=True)
        if r.returncode != 0:
            errors.append("make_expected.py failed: %s" % r.stderr.strip().splitlines()[-1:])
        else:
            for name in sorted(ef.FIXTURES):
                a = os.path.join(out, name + ".json")
                b = os.path.join(MODELS, "expected", name + ".json")
                if not os.path.exists(b) or open(a).read() != open(b).read():
                    errors.append("%s: models/expected/%s.json is not what make_expected.py "
                                  "writes; rerun it" % (name, name))
    for e in errors:
        print("FAIL: " + e)
    print("%d fixtures: exports checked%s, expected files compared: %s" % (
        len(ef.FIXTURES), " and byte-compared" if same_versions else
        " (byte comparison skipped: torch %s, onnx %s)" % (torch.__version__, onnx.__version__),
        "%d failure(s)" % len(errors) if errors else "ok"))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
