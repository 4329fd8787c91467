#!/usr/bin/python3
"""bench/gpu/plot_shampoo_intervals.py: its fit t(f) = E / f + P recovers E and P from exact
points, parses the committed Shampoo rows of sessions 19, 25 and 26 (three methods each at f = 1, 10,
100), reproduces each measured point within 3% and writes the picture. Exit 77 (skipped) without
matplotlib."""
import importlib.util
import io
import os
import sys
import tempfile
from contextlib import redirect_stdout

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "bench", "gpu"))
import plot_shampoo_intervals as ps  # noqa: E402

RESULTS = os.path.join(ROOT, "bench", "gpu", "results")
# Each committed file and the methods it holds (the plot draws those present).
CASES = (("h200-2026-12-03-s19-d-bench-shampoo.json", ("symoc shampoo", "symoc shampoo (gemm grams)", "torch eigh Shampoo")),
         ("h200-2026-12-04-s25-f-bench-shampoo.json", ("symoc shampoo", "symoc shampoo (batched eigh)", "torch eigh Shampoo")),
         ("h200-2026-12-04-s26-k-bench-shampoo.json", ("symoc shampoo", "symoc shampoo (sgemm products)", "torch eigh Shampoo")))


def main():
    fails = []
    e, p = ps.fit([1, 10, 100], [1000.0 / f + 25.0 for f in (1, 10, 100)])
    if abs(e - 1000) > 1e-9 or abs(p - 25) > 1e-9:
        fails.append("fit of exact points: E %r, P %r (expected 1000, 25)" % (e, p))
    import json
    known = {k for k, _ in ps.METHODS}
    for name, keys in CASES:
        ms = json.load(open(os.path.join(RESULTS, name)))["matrix"][0]["ms"]
        for key in keys:
            if key not in known:
                fails.append("%s: %s is not one of the plot's methods" % (name, key))
            fs, ts = ps.series(ms, key)
            if fs != [1, 10, 100]:
                fails.append("%s: %s: intervals %s" % (name, key, fs))
                continue
            e, p = ps.fit(fs, ts)
            worst = max(abs((e / f + p) / t - 1) for f, t in zip(fs, ts))
            if worst > 0.03:
                fails.append("%s: %s: the fit misses a point by %.1f%%" % (name, key, 100 * worst))
    if importlib.util.find_spec("matplotlib") is None:
        print("matplotlib missing: picture skipped")
        return 77 if not fails else 1
    for name, keys in CASES:
        with tempfile.TemporaryDirectory() as t:
            png = os.path.join(t, "s.png")
            with redirect_stdout(io.StringIO()) as out:
                ps.main(["plot_shampoo_intervals.py", os.path.join(RESULTS, name), png])
            if not os.path.getsize(png):
                fails.append("%s: no picture" % name)
            if out.getvalue().count("| symoc") != 2:
                fails.append("%s: table rows: %r" % (name, out.getvalue()[:300]))
    for f in fails:
        print("FAIL " + f)
    print("plot_shampoo_intervals: %s" % ("OK" if not fails else "%d failure(s)" % len(fails)))
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
