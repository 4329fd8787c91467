#!/usr/bin/python3
"""Times `symoc import` on torchvision models: vit_b_16 (86.6 M parameters, 330 MB),
and resnet18, swin_t when present.

Usage: /usr/bin/python3 bench/import/bench_import.py [--symoc PATH] [--model PATH ...]
                          [--models-dir DIR] [--work DIR] [--runs N] [--external]
                          [--json FILE] [--check]

Models: --model (repeatable), else vit_b_16, resnet18 and swin_t from --models-dir
(default /tmp/tv, where `models/export_torchvision.py /tmp/tv` writes them); vit_b_16
is exported into --work (default <repo>/build/bench-models, ignored by git) when it is
in neither place. Each model is imported --runs times (default 5) with
`symoc import MODEL -o /dev/null`; each run's wall time, CPU time and peak resident
memory (ru_maxrss of that child, from wait4) are printed, then a table of medians
(wall, CPU) and the largest peak RSS against the targets (< 2 s, < 300 MiB), and the
same as JSON (also written to --json FILE). The import reads weights shape-only
(ModelIO defers payloads: see compiler/include/symoc/ModelIO/ModelIO.h), so neither
figure should grow with the weight bytes. With --external each model is also saved
once with its weights as external data (a file next to it) and timed the same way.
With --check the exit status is 1 when a target is missed. Not a ctest test: the
timings depend on the machine.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TARGET_SECONDS = 2.0
TARGET_MB = 300.0
DEFAULT_MODELS = ["vit_b_16", "resnet18", "swin_t"]


def default_symoc():
    build = os.environ.get("SYMOC_BUILD_DIR", os.path.join(REPO, "build"))
    return os.path.join(build if os.path.isabs(build) else os.path.join(REPO, build),
                        "bin", "symoc")


def export_vit(work):
    path = os.path.join(work, "vit_b_16.onnx")
    if os.path.isfile(path):
        return path
    os.makedirs(work, exist_ok=True)
    print(f"bench_import: exporting vit_b_16 to {path} (random weights, ~15 s)...",
          flush=True)
    script = os.path.join(REPO, "models", "export_torchvision.py")
    r = subprocess.run(["/usr/bin/python3", script, work, "vit_b_16"])
    if r.returncode != 0 or not os.path.isfile(path):
        sys.exit("bench_import: export failed (needs Debian's python3-torch and "
                 "python3-torchvision for /usr/bin/python3)")
    return path


def external_copy(model):
    """MODEL with its weights moved to MODEL_ext.data (written once)."""
    stem = os.path.splitext(model)[0]
    out, data = stem + "_ext.onnx", os.path.basename(stem) + "_ext.data"
    if not os.path.isfile(out):
        print(f"bench_import: writing {out} with external data {data}...", flush=True)
        code = ("import onnx, sys; m = onnx.load(sys.argv[1]); "
                "onnx.save_model(m, sys.argv[2], save_as_external_data=True, "
                "all_tensors_to_one_file=True, location=sys.argv[3], size_threshold=1024)")
        subprocess.run(["/usr/bin/python3", "-c", code, model, out, data], check=True)
    return out


def run_once(argv, what="bench_import", preexec_fn=None):
    """Wall seconds, CPU seconds (user + system) and peak RSS (MiB) of one command."""
    start = time.perf_counter()
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, preexec_fn=preexec_fn)
    err = p.stderr.read()
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        sys.exit(f"{what}: {' '.join(argv)} failed ({code}): "
                 f"{err.decode(errors='replace').strip()}")
    cpu = usage.ru_utime + usage.ru_stime
    return wall, cpu, usage.ru_maxrss / 1024.0  # Linux reports KiB: MiB


def measure(label, argv, runs, target_s, target_mb, what, preexec_fn=None):
    """Runs argv `runs` times; prints each run; returns a result dict."""
    print(f"{what}: {label}: {' '.join(argv)}, {runs} runs", flush=True)
    walls, cpus, rss = [], [], []
    for i in range(runs):
        w, c, m = run_once(argv, what, preexec_fn)
        walls.append(w)
        cpus.append(c)
        rss.append(m)
        print(f"  run {i + 1}: {w:.3f} s wall, {c:.3f} s CPU, peak RSS {m:.1f} MiB",
              flush=True)
    r = {"name": label, "runs": runs,
         "median_wall_s": round(statistics.median(walls), 4),
         "median_cpu_s": round(statistics.median(cpus), 4),
         "peak_rss_mib": round(max(rss), 1),
         "target_wall_s": target_s, "target_rss_mib": target_mb}
    r["ok"] = r["median_wall_s"] < target_s and r["peak_rss_mib"] < target_mb
    return r


def print_table(title, results):
    print(f"\n{title}")
    head = f"{'model':<28} {'size MiB':>9} {'wall s':>8} {'CPU s':>8} {'RSS MiB':>8}  target"
    print(head)
    print("-" * len(head))
    for r in results:
        size = r.get("file_mib")
        # On a busy machine wall time includes waiting for a core; CPU time does not.
        print(f"{r['name']:<28} {size if size is not None else '':>9} "
              f"{r['median_wall_s']:>8.3f} {r['median_cpu_s']:>8.3f} "
              f"{r['peak_rss_mib']:>8.1f}  < {r['target_wall_s']:g} s, "
              f"< {r['target_rss_mib']:g} MiB: {'ok' if r['ok'] else 'MISSED'}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--symoc", default=default_symoc())
    ap.add_argument("--model", action="append", help="time this model (repeatable)")
    ap.add_argument("--models-dir", default="/tmp/tv")
    ap.add_argument("--work", default=os.path.join(REPO, "build", "bench-models"))
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--external", action="store_true",
                    help="also time a copy of each model with external data")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = ap.parse_args()

    if not os.access(args.symoc, os.X_OK):
        sys.exit(f"bench_import: {args.symoc} not found: build it first "
                 "(cmake --build build --target symoc) or pass --symoc")
    models = args.model
    if not models:
        models = []
        for name in DEFAULT_MODELS:
            for d in (args.models_dir, args.work):
                p = os.path.join(d, name + ".onnx")
                if os.path.isfile(p):
                    models.append(p)
                    break
            else:
                if name == "vit_b_16":
                    models.append(export_vit(args.work))
    if args.external:
        models = [x for m in models for x in (m, external_copy(m))]
    results = []
    for m in models:
        r = measure(os.path.basename(m), [args.symoc, "import", m, "-o", os.devnull],
                    args.runs, TARGET_SECONDS, TARGET_MB, "bench_import")
        r["file_mib"] = round(os.path.getsize(m) / 2**20, 1)
        r["path"] = m
        results.append(r)
    print_table(f"symoc import (median of {args.runs} runs; peak RSS is the largest)",
                results)
    doc = {"benchmark": "symoc import", "symoc": args.symoc, "results": results}
    print(json.dumps(doc, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=2)
    ok = all(r["ok"] for r in results)
    return 0 if ok or not args.check else 1


if __name__ == "__main__":
    sys.exit(main())
