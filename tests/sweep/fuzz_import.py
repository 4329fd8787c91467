#!/usr/bin/python3
"""Mutation fuzzing of `symoc import`: corrupted copies of the committed fixtures.

Usage: fuzz_import.py --symoc PATH [--models DIR] [--count N] [--seed S] [--jobs J]
                      [--keep DIR]

Each case takes one fixture (models/*.onnx), overwrites 1, 2, 4 or 8 random bytes
with random values (random.Random(seed), so a run is reproducible for given fixture
bytes) and runs `symoc import` on it. Like import_sweep.py, every case must import
or be rejected with one `symoc: error: FILE: problem` line; a signal, another exit
status, a timeout or any other stderr is a crash. Prints the counts and each crash
(the corrupted file is kept under --keep, default a temporary folder that is
printed), and exits 1 when something crashed.
"""
import argparse
import collections
import concurrent.futures
import os
import random
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from import_sweep import classify  # noqa: E402  (same checks as the sweep)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--symoc", required=True)
    ap.add_argument("--models", default=os.path.join(REPO, "models"))
    ap.add_argument("--count", type=int, default=400)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=60)
    ap.add_argument("--keep", help="folder for the corrupted models that crashed")
    args = ap.parse_args()

    names = sorted(f for f in os.listdir(args.models) if f.endswith(".onnx"))
    if not names:
        print(f"fuzz_import: no .onnx under {args.models}; skipped")
        return 77
    sources = {n: open(os.path.join(args.models, n), "rb").read() for n in names}
    rng = random.Random(args.seed)
    work = tempfile.mkdtemp(prefix="symoc-fuzz-")
    keep = args.keep or work

    # Draw every case up front so the cases do not depend on scheduling.
    cases = []
    for i in range(args.count):
        name = rng.choice(names)
        data = bytearray(sources[name])
        flips = rng.choice([1, 2, 4, 8])
        for _ in range(flips):
            data[rng.randrange(len(data))] = rng.randrange(256)
        path = os.path.join(work, f"case{i:04d}-{name}")
        with open(path, "wb") as f:
            f.write(data)
        cases.append((path, f"{name} with {flips} byte(s) changed"))

    def run(case):
        path, what = case
        kind, detail = classify(args.symoc, path, args.timeout)
        if kind != "crashed":
            os.remove(path)
        return path, what, kind, detail

    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        results = list(pool.map(run, cases))

    kinds = collections.Counter(kind for _, _, kind, _ in results)
    print(f"fuzz_import: {args.count} corrupted fixtures (seed {args.seed}): "
          f"{kinds['imported']} imported, {kinds['rejected']} rejected, "
          f"{kinds['crashed']} crashed")
    crashed = [r for r in results if r[2] == "crashed"]
    if crashed:
        os.makedirs(keep, exist_ok=True)
        print(f"CRASHED (inputs kept in {keep}):")
        for path, what, _, detail in crashed:
            dest = os.path.join(keep, os.path.basename(path))
            if dest != path:
                os.replace(path, dest)
            print(f"  {dest} ({what}): {detail}")
        return 1
    os.rmdir(work) if not os.listdir(work) else None
    return 0


if __name__ == "__main__":
    sys.exit(main())
