#!/usr/bin/env python3
"""Plot symoc_gpu_matrix_test's "gram stress" records: each Newton-Schulz configuration's
relative distance to the CPU fp32 iteration per ill-conditioned spectrum (the wide 768 x 3072
inputs), one panel per log (e.g. Newton-Schulz, and Polar Express from a log written before
the plan kept Polar Express off the Gram path). A configuration missing from a record was
non-finite there: drawn as a red cross at the top; values above 100 are drawn at 100, hatched.

    python3 tests/gpu/plot_gram_stress.py OUT.png "TITLE=LOG:METHOD" [...]
"""
import re
import sys

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

CONFIGS = ["standard bf16", "gram fp16 restart 2", "gram fp16 no restart", "gram bf16 restart 2",
           "gram bf16 no restart"]
COLORS = ["black", "tab:blue", "tab:orange", "tab:green", "tab:red"]
LINE = re.compile(r"^# gram stress (\S+) 768x3072 (.+?): (.*)$")


def records(path, method):
    out = []
    for ln in open(path):
        m = LINE.match(ln.strip())
        if not m or m.group(1) != method:
            continue
        vals = {}
        for c in CONFIGS:
            v = re.search(re.escape(c) + r" ([0-9.e+-]+)(?:\s|$)", m.group(3))
            vals[c] = float(v.group(1)) if v else None
        out.append((m.group(2), vals))
    return out


def main():
    out, panels = sys.argv[1], []
    for arg in sys.argv[2:]:
        title, rest = arg.split("=", 1)
        path, method = rest.rsplit(":", 1)
        panels.append((title, records(path, method)))
    fig, axes = plt.subplots(1, len(panels), figsize=(7.5 * len(panels), 4.8), squeeze=False)
    for ax, (title, recs) in zip(axes[0], panels):
        cap = 100.0
        ax.set_yscale("log")
        w = 0.8 / len(CONFIGS)
        for j, (c, col) in enumerate(zip(CONFIGS, COLORS)):
            xs = [i + (j - (len(CONFIGS) - 1) / 2) * w for i in range(len(recs))]
            ys = [r[c] for _, r in recs]
            for x, y in zip(xs, ys):
                if y is None:
                    ax.plot([x], [cap * 2], "x", color="red", markersize=7)
                else:
                    ax.bar([x], [min(y, cap)], width=w, color=col, hatch="//" if y > cap else None,
                           edgecolor="white" if y > cap else col)
        ax.set_ylim(1e-3, cap * 4)
        ax.set_xticks(range(len(recs)))
        ax.set_xticklabels([s for s, _ in recs], rotation=30, ha="right", fontsize=7)
        ax.set_ylabel("||out - fp32 iteration||_F / ||fp32 iteration||_F")
        ax.set_title(title + "  (x: non-finite; hatched: > 100)", fontsize=10)
        ax.legend(handles=[Patch(color=c, label=n) for n, c in zip(CONFIGS, COLORS)], fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print("wrote", out)


if __name__ == "__main__":
    main()
