#!/usr/bin/env python3
"""Plot tests/gpu/llama_char_gpu.py's loss curves: GPU vs CPU train loss per step and their
difference, one column per policy.

    python3 tests/gpu/plot_curves.py OUT.png adamw=curve_adamw.csv muon=curve_muon.csv
"""
import csv
import sys

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    out, runs = sys.argv[1], [a.split("=", 1) for a in sys.argv[2:]]
    fig, ax = plt.subplots(2, len(runs), figsize=(5 * len(runs), 6), squeeze=False,
                           sharex=True, gridspec_kw=dict(height_ratios=[3, 1]))
    for j, (name, path) in enumerate(runs):
        rows = list(csv.DictReader(open(path)))
        s = [int(r["step"]) for r in rows]
        g = [float(r["train_loss_gpu"]) for r in rows]
        c = [float(r["train_loss_cpu"]) for r in rows]
        ax[0][j].plot(s, c, label="CPU", lw=2.5, alpha=0.6)
        ax[0][j].plot(s, g, label="GPU (H200)", lw=1)
        ax[0][j].set_title("symoc %s: train loss" % name)
        ax[0][j].legend()
        ax[1][j].plot(s, [a - b for a, b in zip(g, c)], lw=1, color="k")
        ax[1][j].set_ylabel("GPU - CPU")
        ax[1][j].set_xlabel("step")
    fig.tight_layout()
    fig.savefig(out, dpi=90)


if __name__ == "__main__":
    main()
