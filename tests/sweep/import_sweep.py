#!/usr/bin/python3
"""Runs `symoc import` over every model of ONNX's test data and checks that none crashes.

Usage: import_sweep.py --symoc PATH [--jobs N] [--data DIR] [--timeout S] [--verbose]

Each model (DIR/{node,pytorch-converted,pytorch-operator,simple}/*/model.onnx) must either
  - import: exit 0, stderr empty or only `symoc: note: ...` lines, or
  - be rejected: exit 1 with exactly one stderr line `symoc: error: MODEL: problem`.
Anything else is a crash: a signal, another exit status, a timeout, or stderr of any other
form (a stack trace, a protobuf/ONNX library message, several lines). Prints the counts
(imported / rejected by reason / crashed) and exits 1 when something crashed, 77 when the
test data is not installed (ctest reports a skip).
"""
import argparse
import collections
import concurrent.futures
import os
import re
import signal
import subprocess
import sys
import time

SUITES = ("node", "pytorch-converted", "pytorch-operator", "simple")
DEFAULT_DATA = "/usr/share/libonnx-testdata/data"


def models(data):
    found = []
    for suite in SUITES:
        root = os.path.join(data, suite)
        if not os.path.isdir(root):
            continue
        for case in sorted(os.listdir(root)):
            path = os.path.join(root, case, "model.onnx")
            if os.path.isfile(path):
                found.append(path)
    return found


def reason_of(message):
    """Groups error messages: names in quotes and numbers vary between models."""
    m = re.sub(r"'[^']*'", "'…'", message)
    m = re.sub(r"\b\d+\b", "N", m)
    return m[:140]


def classify(symoc, path, timeout):
    """Returns (kind, detail): kind is imported, rejected or crashed."""
    try:
        p = subprocess.run([symoc, "import", path, "-o", os.devnull],
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "crashed", f"timeout after {timeout} s"
    err = p.stderr.decode("utf-8", "replace")
    # Lines as a terminal shows them: a name with other control bytes in it (possible
    # in a corrupted file) does not make the message two lines.
    lines = err.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if p.returncode < 0:
        try:
            name = signal.Signals(-p.returncode).name
        except ValueError:
            name = str(-p.returncode)
        return "crashed", f"signal {name}: {lines[-1] if lines else ''}"
    if p.returncode == 0:
        bad = [l for l in lines if not l.startswith("symoc: note: ")]
        if bad:
            return "crashed", f"exit 0 with unexpected stderr: {bad[0][:200]}"
        return "imported", ""
    if p.returncode == 1:
        prefix = f"symoc: error: {path}: "
        if len(lines) == 1 and lines[0].startswith(prefix) and len(lines[0]) > len(prefix):
            return "rejected", reason_of(lines[0][len(prefix):])
        return "crashed", f"exit 1 with malformed stderr ({len(lines)} lines): {err[:300]!r}"
    return "crashed", f"exit {p.returncode}: {err[:300]!r}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--symoc", required=True)
    ap.add_argument("--data", default=DEFAULT_DATA)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=60)
    ap.add_argument("--verbose", action="store_true", help="list every rejected model")
    args = ap.parse_args()

    if not os.path.isdir(args.data):
        print(f"import_sweep: {args.data} not found (package libonnx-testdata); skipped")
        return 77
    if not os.access(args.symoc, os.X_OK):
        print(f"import_sweep: {args.symoc} is not an executable")
        return 2
    paths = models(args.data)
    if not paths:
        print(f"import_sweep: no */model.onnx under {args.data}; skipped")
        return 77

    start = time.time()
    results = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = {pool.submit(classify, args.symoc, p, args.timeout): p for p in paths}
        for f in concurrent.futures.as_completed(futures):
            results[futures[f]] = f.result()
    elapsed = time.time() - start

    kinds = collections.Counter(kind for kind, _ in results.values())
    by_suite = collections.defaultdict(collections.Counter)
    reasons = collections.Counter()
    crashes = []
    for path, (kind, detail) in sorted(results.items()):
        suite = os.path.basename(os.path.dirname(os.path.dirname(path)))
        by_suite[suite][kind] += 1
        if kind == "rejected":
            reasons[detail] += 1
            if args.verbose:
                print(f"rejected {path}: {detail}")
        elif kind == "crashed":
            crashes.append((path, detail))

    print(f"import_sweep: {len(paths)} models in {elapsed:.1f} s with {args.jobs} jobs: "
          f"{kinds['imported']} imported, {kinds['rejected']} rejected, "
          f"{kinds['crashed']} crashed")
    for suite in SUITES:
        c = by_suite.get(suite)
        if c:
            print(f"  {suite:18s} imported {c['imported']:4d}  rejected {c['rejected']:4d}"
                  f"  crashed {c['crashed']:4d}")
    if reasons:
        print("rejected, by reason:")
        for reason, n in reasons.most_common():
            print(f"  {n:5d}  {reason}")
    if crashes:
        print("CRASHED:")
        for path, detail in crashes:
            print(f"  {path}: {detail}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
