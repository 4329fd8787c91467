#!/usr/bin/python3
"""Plots for docs/results.md from the CSVs the experiments wrote.

Usage: /usr/bin/python3 examples/plot_results.py teacher-student WORK/summary.csv OUT.png
       /usr/bin/python3 examples/plot_results.py llama OUT.png LABEL=FILE.csv [LABEL=FILE.csv ...]
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
        label, path = spec.split("=", 1)
        rows = read(path)
        ax.plot([int(r["step"]) for r in rows], [float(r["val_loss"]) for r in rows],
                marker=".", label=label)
    ax.set_xlabel("step (batch 16 x 128 bytes)")
    ax.set_ylabel("validation loss (nats / byte)")
    ax.set_title("char-level LLaMA (3.0 M params) on the Python stdlib sources")
    ax.set_ylim(top=3.2)
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
