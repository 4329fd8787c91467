#!/usr/bin/python3
"""Plots for docs/results.md from the CSVs the experiments wrote.

Usage: /usr/bin/python3 examples/plot_results.py teacher-student WORK/summary.csv OUT.png
       /usr/bin/python3 examples/plot_results.py llama OUT.png LABEL=FILE.csv[,FILE.csv...] ...
         (several files per label: seeds; the plot shows their mean and min..max band)
"""
import csv
import os
import sys

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def teacher_student(summary, out):
    work = os.path.dirname(os.path.abspath(summary))
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for row in read(summary):
        runs = read(os.path.join(work, row["csv"]))
        steps = [int(r["step"]) for r in runs]
        for ax, key in zip(axes, ("test_loss", "train_loss")):
            ax.semilogy(steps, [float(r[key]) for r in runs],
                        label="%s (lr %s)" % (row["policy"], row["best_lr"]))
    for ax, title in zip(axes, ("test loss", "train loss")):
        ax.set_xlabel("step (full batch)")
        ax.set_ylabel("MSE")
        ax.set_title("teacher-student tanh MLP 100-70-40: " + title)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print("wrote", out)


def llama(out, specs):
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for spec in specs:
        # LABEL=run.csv or LABEL=seed0.csv,seed1.csv,...: mean over seeds, band = min..max
        label, paths = spec.split("=", 1)
        runs = [read(p) for p in paths.split(",")]
        steps = [int(r["step"]) for r in runs[0]]
        vals = [[float(run[i]["val_loss"]) for run in runs] for i in range(len(steps))]
        mean = [sum(v) / len(v) for v in vals]
        line, = ax.plot(steps, mean, marker=".",
                        label=label + (" (mean of %d seeds)" % len(runs) if len(runs) > 1 else ""))
        if len(runs) > 1:
            ax.fill_between(steps, [min(v) for v in vals], [max(v) for v in vals],
                            color=line.get_color(), alpha=0.15)
    ax.set_xlabel("step (batch 16 x 128 bytes)")
    ax.set_ylabel("validation loss (nats / byte)")
    ax.set_title("char-level LLaMA (3.0 M params), Python 3.11 stdlib sources\n(step 0: 5.81 for all)")
    ax.set_ylim(1.3, 2.8)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print("wrote", out)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "teacher-student":
        teacher_student(sys.argv[2], sys.argv[3])
    elif len(sys.argv) >= 4 and sys.argv[1] == "llama":
        llama(sys.argv[2], sys.argv[3:])
    else:
        sys.exit(__doc__)
