#!/usr/bin/python3
"""bench/gpu/plot_shampoo_intervals.py: its fit t(f) = E / f + P recovers E and P from exact
points, parses the committed Shampoo rows of session 19 (three methods at f = 1, 10, 100),
reproduces each measured point within 3% and writes the picture. Exit 77 (skipped) without
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

RES = os.path.join(ROOT, "bench", "gpu", "results", "h200-2026-12-03-s19-d-bench-shampoo.json")


def main():
    fails = []
    e, p = ps.fit([1, 10, 100], [1000.0 / f + 25.0 for f in (1, 10, 100)])
    if abs(e - 1000) > 1e-9 or abs(p - 25) > 1e-9:
        fails.append("fit of exact points: E %r, P %r (expected 1000, 25)" % (e, p))
    import json
    ms = json.load(open(RES))["matrix"][0]["ms"]
    for key, _ in ps.METHODS:
        fs, ts = ps.series(ms, key)
        if fs != [1, 10, 100]:
            fails.append("%s: intervals %s" % (key, fs))
            continue
        e, p = ps.fit(fs, ts)
        worst = max(abs((e / f + p) / t - 1) for f, t in zip(fs, ts))
        if worst > 0.03:
            fails.append("%s: the fit misses a point by %.1f%%" % (key, 100 * worst))
    if importlib.util.find_spec("matplotlib") is None:
        print("matplotlib missing: picture skipped")
        return 77 if not fails else 1
    with tempfile.TemporaryDirectory() as t:
        png = os.path.join(t, "s.png")
        with redirect_stdout(io.StringIO()) as out:
            ps.main(["plot_shampoo_intervals.py", RES, png])
        if not os.path.getsize(png):
            fails.append("no picture")
        if out.getvalue().count("| symoc") != 2:
            fails.append("table rows: %r" % out.getvalue()[:300])
    for f in fails:
        print("FAIL " + f)
    print("plot_shampoo_intervals: %s" % ("OK" if not fails else "%d failure(s)" % len(fails)))
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
