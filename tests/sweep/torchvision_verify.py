#!/usr/bin/python3
"""Soundness on models no one on the team wrote: torchvision CNNs, verified claim by claim.

Usage: torchvision_verify.py --symoc PATH [--size N] [--trials T] [--keep DIR] [MODEL ...]

Exports each model with models/export_torchvision.py's settings (random init, training
mode, opset 14, input [1, 3, N, N], default N = 64) and runs
`symoc analyze MODEL --verify --trials T`. Each model must: exit 0, make at least one
claim, pass every claim ("verify: K/K claims pass") and see its negative control fail.
The default models bring patterns the fixtures lack: channel shuffle (Reshape/Transpose
of channels), squeeze-excitation gates (Sigmoid/Hardsigmoid times features), hardswish,
depthwise and grouped convolutions, fire-module concatenation, inverted residuals.
Prints one line per model (claims, seconds) and exits 1 on any failure, 77 when torch or
torchvision is missing.
"""
import argparse
import contextlib
import io
import os
import re
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT = ["squeezenet1_1", "shufflenet_v2_x0_5", "mobilenet_v3_small", "mnasnet0_5",
           "efficientnet_b0", "regnet_y_400mf"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--symoc", required=True)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--trials", type=int, default=1)
    ap.add_argument("--keep", help="export into this folder and keep the models")
    ap.add_argument("models", nargs="*", default=DEFAULT)
    args = ap.parse_args()
    try:
        import torch  # noqa: F401
        import torchvision  # noqa: F401
    except ImportError as ex:
        print("skipped: %s" % ex)
        return 77
    sys.path.insert(0, os.path.join(REPO, "models"))
    import export_torchvision as tv
    unknown = [m for m in args.models if m not in tv.MODELS]
    if unknown:
        print("unknown model(s) %s; known: %s" % (unknown, sorted(tv.MODELS)))
        return 1
    out_dir = args.keep or tempfile.mkdtemp(prefix="symoc-tv-")
    os.makedirs(out_dir, exist_ok=True)
    failures = 0
    for name in args.models:
        t0 = time.time()
        with contextlib.redirect_stderr(io.StringIO()):   # torch's export warnings
            path, _, n_params, n_nodes, missing = tv.export_one(name, out_dir, args.size)
        t_export = time.time() - t0
        if missing:
            print("FAIL %s: export problems %s" % (name, missing[:3]))
            failures += 1
            continue
        t0 = time.time()
        run = subprocess.run([args.symoc, "analyze", path, "--verify", "--trials",
                              str(args.trials)], capture_output=True, text=True)
        t_verify = time.time() - t0
        summary = re.search(r"verify: (\d+)/(\d+) claims pass.*", run.stdout)
        problems = []
        if run.returncode != 0:
            problems.append("exit %d: %s" % (run.returncode, run.stderr.strip()[-300:]))
        if not summary:
            problems.append("no verify summary")
        else:
            passed, total = int(summary.group(1)), int(summary.group(2))
            if total == 0:
                problems.append("no claims (the analysis found nothing to check)")
            if passed != total:
                problems.append("%d of %d claims FAIL" % (total - passed, total))
            if "negative control fails as it must: OK" not in summary.group(0):
                problems.append("negative control did not fail")
        for line in run.stdout.splitlines():
            if line.startswith("FAIL") or "CONTROL-PASSED" in line:
                problems.append(line.strip()[:200])
        status = "ok" if not problems else "FAIL"
        print("%-4s %-20s %7d params %4d nodes  export %5.1f s  verify %5.1f s  %s" % (
            status, name, n_params, n_nodes, t_export, t_verify,
            summary.group(0) if summary else ""))
        for p in problems:
            print("     " + p)
        failures += bool(problems)
        if not args.keep:
            os.remove(path)
    print("%d of %d models verified" % (len(args.models) - failures, len(args.models)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
