#!/usr/bin/python3
"""symoc's own cost: analyze and compile time and peak RSS on GPT-2 small and ViT-B/16.

Usage: /usr/bin/python3 bench/compile/bench_compile.py [--symoc build/bin/symoc]
           [--work /tmp/symoc-bench-compile] [--vit /tmp/tv/vit_b_16.onnx] [--runs 3]

GPT-2 small (12 layers, d 768, 12 heads, vocab 50257, 1024 positions, tied head; 124 M
parameters) is exported from models/export_fixtures.py's GPT2 class with Debian's torch;
ViT-B/16 is taken from models/export_torchvision.py's output when given. Prints a table of
medians and writes JSON next to it. A benchmark, not a test: the targets (issue #7: analyze
+ compile of GPT-2 small under 2 s) are reported, not asserted.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def export_gpt2_small(path):
    import torch
    sys.path.insert(0, os.path.join(ROOT, "models"))
    import export_fixtures as fx
    torch.manual_seed(0)
    model = fx.GPT2(vocab=50257, d=768, n_head=12, n_layer=12, t=fx.SEQ, n_pos=1024).train()
    ids = torch.randint(0, 50257, (2, fx.SEQ))
    torch.onnx.export(model, (ids,), path, opset_version=14, export_params=True,
                      training=torch.onnx.TrainingMode.TRAINING, do_constant_folding=False,
                      input_names=["input_ids"], output_names=["logits"])


def timed(cmd):
    """Wall seconds and peak RSS (MiB) of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return wall, max(peak, before) / 1024.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--symoc", default=os.path.join(ROOT, "build", "bin", "symoc"))
    ap.add_argument("--work", default="/tmp/symoc-bench-compile")
    ap.add_argument("--vit", default="/tmp/tv/vit_b_16.onnx")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    models = {}
    gpt2 = os.path.join(args.work, "gpt2_small.onnx")
    if not os.path.exists(gpt2):
        print("exporting GPT-2 small to", gpt2, flush=True)
        export_gpt2_small(gpt2)
    models["gpt2-small"] = gpt2
    if os.path.exists(args.vit):
        models["vit_b_16"] = args.vit
    rows = []
    for name, path in models.items():
        for step, cmd in (
                ("analyze", [args.symoc, "analyze", path]),
                ("compile (plan only)", [args.symoc, "compile", path, "--dry-run"]),
                ("compile (sources)", [args.symoc, "compile", path, "-o",
                                       os.path.join(args.work, name + "_optimizer")])):
            # Peak RSS of children is a running maximum: measure each command in its
            # own interpreter-level child to keep the figures apart.
            runs = []
            for _ in range(args.runs):
                out = subprocess.run(
                    [sys.executable, "-c",
                     "import sys, json; sys.path.insert(0, %r); import bench_compile as b; "
                     "print(json.dumps(b.timed(%r)))" % (HERE, cmd)],
                    check=True, capture_output=True, text=True)
                runs.append(json.loads(out.stdout))
            wall = statistics.median(r[0] for r in runs)
            rss = statistics.median(r[1] for r in runs)
            rows.append({"model": name, "step": step, "median_wall_s": round(wall, 3),
                         "median_peak_rss_mib": round(rss, 1), "runs": args.runs})
            print("%-11s %-20s %8.3f s %9.1f MiB" % (name, step, wall, rss), flush=True)
    total = sum(r["median_wall_s"] for r in rows
                if r["model"] == "gpt2-small" and r["step"] in ("analyze", "compile (sources)"))
    print("gpt2-small analyze + compile: %.3f s (target < 2 s: %s)"
          % (total, "met" if total < 2 else "missed"))
    with open(os.path.join(args.work, "bench_compile.json"), "w") as f:
        json.dump({"rows": rows, "gpt2_small_analyze_plus_compile_s": total}, f, indent=2)


if __name__ == "__main__":
    main()
