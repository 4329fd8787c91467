#!/usr/bin/env python3
"""Shampoo's per-step time against its refresh interval, symoc and the torch eigh reference.

    python3 bench/gpu/plot_shampoo_intervals.py BENCH_GPU.json OUT.png

BENCH_GPU.json: bench_gpu.py's output with the Shampoo rows at f = 1, 10 and 100
(SYMOC_BENCH_SHAMPOO_F100). Each method's per-step time is fitted as t(f) = E / f + P (least
squares on the relative residuals): E what a refresh adds (the eigensolves), P a step without one (the factor
updates and the preconditioned product: fp32 GEMMs). Prints the fit (JSON after the table)
and draws the times and their ratio to the reference, with issue #12's 0.5x line.
"""
import json
import sys

METHODS = (("symoc shampoo", "symoc (that run's default)"),
           ("symoc shampoo (batched eigh)", "symoc, cuSOLVER XsyevBatched roots"),
           ("symoc shampoo (gemm grams)", "symoc, Grams by one GEMM"),
           ("symoc shampoo (sgemm products)", "symoc, plain SGEMM products"),
           ("symoc shampoo (tf32x3 products)", "symoc, three-pass TF32 products"),
           ("torch eigh Shampoo", "torch eigh reference"))


def series(ms, key):
    pts = sorted((int(k.rsplit("f=", 1)[1]), v) for k, v in ms.items()
                 if k.rsplit(" f=", 1)[0] == key and v is not None)
    return [f for f, _ in pts], [v for _, v in pts]


def fit(fs, ts):
    """E, P of t = E / f + P, least squares on the relative residuals (each point counts alike,
    the slow f = 1 row does not outweigh the fast ones)."""
    # Minimize sum ((E x + P - t) / t)^2, x = 1 / f: the 2 x 2 normal equations.
    w = [1.0 / (t * t) for t in ts]
    xs = [1.0 / f for f in fs]
    sxx = sum(wi * x * x for wi, x in zip(w, xs))
    sx = sum(wi * x for wi, x in zip(w, xs))
    s1 = sum(w)
    sxt = sum(wi * x * t for wi, x, t in zip(w, xs, ts))
    st = sum(wi * t for wi, t in zip(w, ts))
    det = sxx * s1 - sx * sx
    return (sxt * s1 - sx * st) / det, (sxx * st - sx * sxt) / det


def main(argv):
    if len(argv) != 3:
        sys.exit(__doc__.strip().splitlines()[2].strip())
    with open(argv[1]) as f:
        doc = json.load(f)
    ms = doc["matrix"][0]["ms"]
    rows, fits = [], {}
    ref_f, ref_t = series(ms, "torch eigh Shampoo")
    if len(ref_f) < 2:
        sys.exit("plot_shampoo_intervals.py: %s: fewer than two refresh intervals of the torch reference" % argv[1])
    for key, label in METHODS:
        fs, ts = series(ms, key)
        if len(fs) < 2:
            continue
        e, p = fit(fs, ts)
        fits[key] = {"refresh_ms": e, "step_ms": p, "f": fs, "ms": ts}
        rows.append((label, fs, ts, e, p))
    ref = dict(zip(ref_f, ref_t))
    print("| method | " + " | ".join("f = %d (ms, x torch)" % f for f in ref_f) + " | refresh E (ms) | step P (ms) |")
    print("| --- |" + " --- |" * (len(ref_f) + 2))
    for label, fs, ts, e, p in rows:
        cells = ["%.1f, %.2fx" % (t, t / ref[f]) if f in ref else "%.1f" % t for f, t in zip(fs, ts)]
        print("| %s | %s | %.0f | %.1f |" % (label, " | ".join(cells), e, p))
    print(json.dumps(fits))

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    for label, fs, ts, e, p in rows:
        a.plot(fs, ts, "o-", label="%s (E %.0f, P %.1f ms)" % (label, e, p))
        b.plot(fs, [t / ref[f] for f, t in zip(fs, ts) if f in ref], "o-", label=label)
    a.set_xscale("log"), a.set_yscale("log")
    a.set_xlabel("refresh interval f (steps)"), a.set_ylabel("ms per step (median)")
    a.set_title("GPT-2 small Shampoo blocks, %s" % doc.get("device", ""))
    a.legend(fontsize=7)
    b.axhline(0.5, color="gray", ls="--", label="issue #12 target (0.5x)")
    b.set_xscale("log"), b.set_ylim(0, 1.1)
    b.set_xlabel("refresh interval f (steps)"), b.set_ylabel("x torch eigh reference")
    b.set_title("t(f) = E / f + P: P is fp32 GEMMs on both sides")
    b.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(argv[2], dpi=110)
    print("wrote %s" % argv[2])


if __name__ == "__main__":
    main(sys.argv)
