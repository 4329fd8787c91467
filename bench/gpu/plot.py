#!/usr/bin/env python3
"""PNG of bench_gpu.json (bench_gpu.py's output): step ms per parameter set, symoc vs torch.

    python3 bench/gpu/plot.py bench_gpu.json OUT.png
"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    d = json.load(open(sys.argv[1]))
    sets = d["sets"]
    # One row per set, AdamW and Muon classes side by side; horizontal bars so that the
    # variants' names stay readable.
    fig, axes = plt.subplots(len(sets), 2, figsize=(13, 3.6 * len(sets)), squeeze=False)
    for i, s in enumerate(sets):
        for j, cls in enumerate(("adamw", "muon")):
            ax = axes[i][j]
            rows = [(k, v) for k, v in s["ms"].items() if (cls == "muon") == ("muon" in k.lower())]
            colors = ["tab:blue" if k.startswith("symoc") else "tab:gray" for k, _ in rows]
            y = list(range(len(rows)))[::-1]
            ax.barh(y, [v for _, v in rows], color=colors)
            for yy, (_, v) in zip(y, rows):
                ax.text(v, yy, " %.2f" % v, va="center", fontsize=7)
            if cls == "muon":
                ax.axvline(s["ns_bound_ms"], color="tab:red", ls="--", lw=1, label="NS5 FLOP bound")
            else:
                ax.axvline(s["adamw_bytes"] / d["copy_bw"] * 1e3, color="tab:red", ls="--", lw=1,
                           label="28 B/param at copy bandwidth")
            ax.legend(fontsize=8, loc="best")
            ax.set_yticks(y)
            ax.set_yticklabels([k for k, _ in rows], fontsize=8)
            ax.set_xlabel("ms per step (median)")
            ax.set_xlim(0, 1.15 * max(v for _, v in rows))
            ax.set_title("%s: %s class" % (s["set"], "AdamW" if cls == "adamw" else "Muon"), fontsize=10)
    fig.suptitle("symoc CUDA backend vs torch, %s, torch %s" % (d["device"], d["torch"]), fontsize=11)
    fig.tight_layout()
    fig.savefig(sys.argv[2], dpi=110)


if __name__ == "__main__":
    main()
