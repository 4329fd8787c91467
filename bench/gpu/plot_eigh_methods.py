#!/usr/bin/env python3
"""The picture of batched against per-matrix eigensolves: ms per call against the batch, one
panel per precision and side, from `symoc_gpu_matrix_bench OUT.json --only eigh-methods`.

    python3 bench/gpu/plot_eigh_methods.py OUT.png TITLE BENCH.json
"""
import json
import re
import sys


def rows(path):
    """{(precision, n): {method: {batch: ms}}} from the bench's keys
    ("eigh fp32 3x768^2, batched ms"; older files without the precision are fp32)."""
    out = {}
    for k, v in json.load(open(path)).items():
        m = re.match(r"eigh (?:(fp32|fp64) )?(\d+)x(\d+)\^2(?: rank \d+)?, ([\w-]+) ms$", k)
        if not m or "rank" in k:
            continue
        prec, batch, n, method = m.group(1) or "fp32", int(m.group(2)), int(m.group(3)), m.group(4)
        out.setdefault((prec, n), {}).setdefault(method, {})[batch] = v
    return out


def main():
    png, title, path = sys.argv[1], sys.argv[2], sys.argv[3]
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    data = rows(path)
    keys = sorted(data, key=lambda k: (k[0], k[1]))
    fig, axes = plt.subplots(1, len(keys), figsize=(3.3 * len(keys), 3.4), squeeze=False)
    style = {"batched": ("tab:gray", "o-"), "per-matrix": ("tab:blue", "s-"), "auto": ("tab:red", "x--")}
    for ax, key in zip(axes[0], keys):
        for method, pts in sorted(data[key].items()):
            bs = sorted(pts)
            color, fmt = style.get(method, ("tab:green", ".-"))
            ax.plot(bs, [pts[b] for b in bs], fmt, color=color, label=method, markersize=4)
        ax.set_title("%s, n = %d" % key, fontsize=9)
        ax.set_xlabel("matrices in the call (batch)", fontsize=8)
        ax.set_ylabel("ms per call (median)", fontsize=8)
        ax.set_xscale("log", base=2)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(png, dpi=110)


if __name__ == "__main__":
    main()
