#!/usr/bin/python3
"""Times `symoc import` on torchvision's vit_b_16 (86.6 M parameters, 330 MB, 1451 nodes).

Usage: /usr/bin/python3 bench/import/bench_import.py [--symoc PATH] [--model PATH]
                                     [--work DIR] [--runs N] [--external] [--check]

Exports vit_b_16 with random weights through models/export_torchvision.py into
--work (default <repo>/build/bench-models, ignored by git) unless the file is
already there or --model names another model, then runs `symoc import MODEL -o
/dev/null` --runs times (default 5) and prints each run's wall time and peak
resident memory (ru_maxrss of that child, from wait4), then the median wall time
and the largest peak RSS against the targets: < 2 s and < 300 MiB. The import
reads weights shape-only, so neither should grow with the 330 MB of weights.
With --external the same model is also saved with its weights as external data
(one file next to it, written once with onnx) and timed the same way: that
separates the cost of holding the weight bytes from the rest of the import.
With --check the exit status is 1 when a target is missed. Not a ctest test:
the timings depend on the machine.
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TARGET_SECONDS = 2.0
TARGET_MB = 300.0


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


def run_once(symoc, model):
    """Wall seconds, CPU seconds (user + system) and peak RSS (MiB) of one import."""
    start = time.perf_counter()
    p = subprocess.Popen([symoc, "import", model, "-o", os.devnull],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE)
    err = p.stderr.read()
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - start
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        sys.exit(f"bench_import: symoc import failed ({p.returncode}): "
                 f"{err.decode(errors='replace').strip()}")
    cpu = usage.ru_utime + usage.ru_stime
    return wall, cpu, usage.ru_maxrss / 1024.0  # Linux reports KiB: MiB


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--symoc", default=default_symoc())
    ap.add_argument("--model", help="time this model instead of vit_b_16")
    ap.add_argument("--work", default=os.path.join(REPO, "build", "bench-models"))
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--external", action="store_true",
                    help="also time a copy of the model with external data")
    ap.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = ap.parse_args()

    if not os.access(args.symoc, os.X_OK):
        sys.exit(f"bench_import: {args.symoc} not found: build it first "
                 "(cmake --build build --target symoc) or pass --symoc")
    model = args.model or export_vit(args.work)
    models = [model] + ([external_copy(model)] if args.external else [])
    ok = True
    for m in models:
        ok = bench(args.symoc, m, args.runs) and ok
    return 0 if ok or not args.check else 1


def bench(symoc, model, runs):
    size_mb = os.path.getsize(model) / 2**20
    print(f"bench_import: {symoc} import {model} ({size_mb:.1f} MiB), {runs} runs")
    walls, cpus, rss = [], [], []
    for i in range(runs):
        w, c, m = run_once(symoc, model)
        walls.append(w)
        cpus.append(c)
        rss.append(m)
        print(f"  run {i + 1}: {w:.3f} s wall, {c:.3f} s CPU, peak RSS {m:.1f} MiB")
    wall, peak = statistics.median(walls), max(rss)
    # On a busy machine wall time includes waiting for a core; CPU time does not.
    print(f"median CPU time {statistics.median(cpus):.3f} s")
    ok_t, ok_m = wall < TARGET_SECONDS, peak < TARGET_MB
    print(f"median wall time {wall:.3f} s (target < {TARGET_SECONDS:.0f} s: "
          f"{'ok' if ok_t else 'MISSED'}); peak RSS {peak:.1f} MiB "
          f"(target < {TARGET_MB:.0f} MiB: {'ok' if ok_m else 'MISSED'})")
    return ok_t and ok_m


if __name__ == "__main__":
    sys.exit(main())
