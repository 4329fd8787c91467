#!/usr/bin/python3
"""Wall time of `symoc analyze MODEL --verify` on models of realistic size.

Usage: verify_timing.py --symoc PATH [--out DIR] [--trials T] [--extra ARG ...] [MODEL ...]

MODEL: resnet18, vit_b_16 (torchvision, random init, exported with
models/export_torchvision.py's settings at 224 x 224), gpt2_124m (models/export_fixtures.py's
pre-LN GPT-2 with GPT-2 small's sizes: vocab 50257, d 768, 12 heads, 12 layers, tied head,
sequence 64), or a path to an .onnx file. Prints one line per model: claims, forwards run,
seconds, the verify summary. Not a CI test (minutes, needs torch and torchvision).
"""
import argparse
import contextlib
import io
import os
import re
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def export_gpt2_124m(out_dir, seq=64):
    path = os.path.join(out_dir, "gpt2_124m.onnx")
    if os.path.exists(path):
        return path
    import torch
    sys.path.insert(0, os.path.join(REPO, "models"))
    import export_fixtures as fx
    torch.manual_seed(0)
    model = fx.GPT2(vocab=50257, d=768, n_head=12, n_layer=12, t=seq, n_pos=1024)
    fx.randomize(model)
    model.train()
    idx = torch.randint(0, 50257, (1, seq))
    torch.onnx.export(model, (idx,), path, opset_version=14, export_params=True,
                      training=torch.onnx.TrainingMode.TRAINING, do_constant_folding=False,
                      input_names=["idx"], output_names=["logits"])
    return path


def export(name, out_dir):
    if name.endswith(".onnx"):
        return name
    if name == "gpt2_124m":
        return export_gpt2_124m(out_dir)
    path = os.path.join(out_dir, name + ".onnx")
    if not os.path.exists(path):
        sys.path.insert(0, os.path.join(REPO, "models"))
        import export_torchvision as tv
        with contextlib.redirect_stderr(io.StringIO()):
            tv.export_one(name, out_dir, 224)
    return path


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--symoc", required=True)
    ap.add_argument("--out", default="/tmp/symoc-verify-timing")
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--extra", action="append", default=[],
                    help="extra argument for symoc analyze (repeatable), e.g. --extra=--each")
    ap.add_argument("models", nargs="*", default=["resnet18", "gpt2_124m", "vit_b_16"])
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    for name in args.models:
        path = export(name, args.out)
        t0 = time.time()
        run = subprocess.run([args.symoc, "analyze", path, "--verify", "--trials",
                              str(args.trials)] + args.extra, capture_output=True, text=True)
        dt = time.time() - t0
        summary = re.search(r"^verify: .*$", run.stdout, re.M)
        forwards = re.search(r"^verify: \d+ forward.*$", run.stdout, re.M)
        print("%-12s exit %d  %7.1f s  %s%s" % (
            os.path.basename(path), run.returncode, dt,
            summary.group(0) if summary else run.stderr.strip()[-200:],
            ("  [" + forwards.group(0) + "]") if forwards else ""), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
