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
    fig, axes = plt.subplots(1, 2 * len(sets), figsize=(5 * len(sets) * 2, 4.2))
    for i, s in enumerate(sets):
        for j, cls in enumerate(("adamw", "muon")):
            ax = axes[2 * i + j]
            rows = [(k, v) for k, v in s["ms"].items() if (cls == "muon") == ("muon" in k.lower())]
            names = [k.replace(" + AdamW fused", " +\nAdamW fused").replace(" (graph)", "\n(graph)")
                     .replace(", own NS loop", ",\nown NS") for k, _ in rows]
            colors = ["tab:blue" if k.startswith("symoc") else "tab:gray" for k, _ in rows]
            ax.bar(range(len(rows)), [v for _, v in rows], color=colors)
            if cls == "muon":
                ax.axhline(s["ns_bound_ms"], color="tab:red", ls="--", lw=1, label="NS5 FLOP bound")
                ax.legend(fontsize=8)
            else:
                ax.axhline(s["adamw_bytes"] / d["copy_bw"] * 1e3, color="tab:red", ls="--", lw=1,
                           label="28 B/param at copy bandwidth")
                ax.legend(fontsize=8)
            ax.set_xticks(range(len(rows)))
            ax.set_xticklabels(names, fontsize=7)
            ax.set_ylabel("ms per step (median)")
            ax.set_title("%s: %s class" % (s["set"], "AdamW" if cls == "adamw" else "Muon"), fontsize=10)
    fig.suptitle("symoc CUDA backend vs torch, %s, torch %s" % (d["device"], d["torch"]), fontsize=11)
    fig.tight_layout()
    fig.savefig(sys.argv[2], dpi=110)


if __name__ == "__main__":
    main()
