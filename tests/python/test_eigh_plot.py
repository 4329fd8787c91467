#!/usr/bin/python3
"""bench/gpu/plot_eigh_methods.py reads what `symoc_gpu_matrix_bench OUT --only eigh-methods`
writes: the committed results of session 16 (call D's keys carry the precision, call C's do
not and have rank-deficient rows, which the picture leaves out) parse into their panels, and
the picture is written. Exit 77 (skipped) without matplotlib."""
import importlib.util
import os
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "bench", "gpu"))
import plot_eigh_methods as pe  # noqa: E402

RES = os.path.join(ROOT, "bench", "gpu", "results")


def main():
    if importlib.util.find_spec("matplotlib") is None:
        print("matplotlib missing: skipped")
        return 77
    fails = []
    d = pe.rows(os.path.join(RES, "h200-2026-12-03-s16-d-eigh-methods.json"))
    want = {("fp32", 768): [3, 6, 12, 60], ("fp32", 2304): [3, 6, 12], ("fp32", 3072): [3, 6, 12, 24],
            ("fp64", 768): [3, 12], ("fp64", 3072): [3, 12]}
    if sorted(d) != sorted(want):
        fails.append("call D panels %s, expected %s" % (sorted(d), sorted(want)))
    for key, batches in want.items():
        for m in ("batched", "per-matrix", "auto"):
            got = sorted(d.get(key, {}).get(m, {}))
            if got != batches:
                fails.append("%s %s: batches %s, expected %s" % (key, m, got, batches))
    c = pe.rows(os.path.join(RES, "h200-2026-12-03-s16-c-eigh-methods.json"))
    if sorted(c) != [("fp32", 768), ("fp32", 2304), ("fp32", 3072)]:
        fails.append("call C panels %s (no precision in its keys: fp32; rank rows left out)" % sorted(c))
    elif sorted(c[("fp32", 3072)]["batched"]) != [1, 3, 6, 8, 12]:
        fails.append("call C 3072 batches %s" % sorted(c[("fp32", 3072)]["batched"]))
    with tempfile.TemporaryDirectory() as t:
        png = os.path.join(t, "eigh.png")
        sys.argv = ["plot_eigh_methods.py", png, "title", os.path.join(RES, "h200-2026-12-03-s16-d-eigh-methods.json")]
        pe.main()
        if not os.path.getsize(png) > 10000:
            fails.append("picture not written")
    for f in fails:
        print("FAIL", f)
    print("%d failures" % len(fails))
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
