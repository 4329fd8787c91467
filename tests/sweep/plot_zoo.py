#!/usr/bin/env python3
"""The zoo sweep at a glance: one cell per model and export, coloured by what happened.

    python3 tests/sweep/plot_zoo.py ZOO.json OUT.png

ZOO.json: `zoo_sweep.py verify --json`. Rows are the models (Hugging Face first, then timm, in
catalogue order as the JSON sorts them), columns the three exports (compile, user, ts). A
cell is ok (every claim verified; the shade grows with the number of claims), refused (a
false claim), crashed, rejected (one-line error), insensitive (verify's control passed),
export failed, or not built. Prints the counts it drew; exits 1 when the JSON has none.
"""
import json
import math
import sys

VARIANTS = ("compile", "user", "ts")
COLORS = {"refused": "#d62728", "crashed": "#000000", "rejected": "#ff7f0e",
          "insensitive": "#bcbd22", "export failed": "#c7c7c7", "not built": "#f0f0f0"}


def cells(doc):
    """{model: {variant: (kind, claims)}} from the verify JSON."""
    out = {}
    for key, r in doc.get("results", {}).items():
        model, var = key.rsplit(".", 1)
        out.setdefault(model, {})[var] = (r["kind"], r.get("claims", 0))
    for key in doc.get("export_failed", {}):
        model, var = key.rsplit(".", 1)
        out.setdefault(model, {})[var] = ("export failed", 0)
    for model in doc.get("not_built", {}):
        out[model] = {v: ("not built", 0) for v in VARIANTS}
    return out


def main():
    if len(sys.argv) != 3:
        print(__doc__.strip().splitlines()[2].strip())
        return 2
    with open(sys.argv[1]) as f:
        doc = json.load(f)
    grid = cells(doc)
    if not grid:
        print("plot_zoo: no results in %s" % sys.argv[1])
        return 1
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch
    models = sorted(grid, key=lambda m: (not m.startswith("hf_"), m))
    half = (len(models) + 1) // 2
    fig, axes = plt.subplots(1, 2, figsize=(11, max(6, 0.16 * half + 1.5)))
    most = max([c for row in grid.values() for _, c in row.values()] + [1])
    counts = {}
    for ax, part in zip(axes, (models[:half], models[half:])):
        for y, m in enumerate(part):
            for x, v in enumerate(VARIANTS):
                kind, claims = grid[m].get(v, ("export failed", 0))
                counts[kind] = counts.get(kind, 0) + 1
                if kind == "ok":
                    # log shade: 1 claim light green, the most claims dark green
                    t = math.log1p(claims) / math.log1p(most)
                    color = (0.75 - 0.6 * t, 0.9 - 0.35 * t, 0.75 - 0.6 * t)
                else:
                    color = COLORS.get(kind, "#9467bd")
                ax.add_patch(plt.Rectangle((x, y), 0.95, 0.9, color=color))
        ax.set_xlim(0, len(VARIANTS))
        ax.set_ylim(len(part), 0)
        ax.set_xticks([i + 0.47 for i in range(len(VARIANTS))])
        ax.set_xticklabels(VARIANTS)
        ax.xaxis.tick_top()
        ax.set_yticks([i + 0.45 for i in range(len(part))])
        ax.set_yticklabels([m.replace("hf_", "HF ").replace("timm_", "timm ") for m in part], fontsize=5.5)
        ax.tick_params(length=0)
        for s in ax.spines.values():
            s.set_visible(False)
    legend = [Patch(color=(0.45, 0.72, 0.45), label="ok (darker: more claims)")] + \
             [Patch(color=c, label=k) for k, c in COLORS.items()]
    fig.legend(handles=legend, loc="lower center", ncol=4, fontsize=8, frameon=False)
    total = sum(counts.values())
    fig.suptitle("symoc verify over %d models x 3 exports: %s" % (
        len(models), ", ".join("%s %d" % (k, counts[k]) for k in sorted(counts))), fontsize=9)
    fig.tight_layout(rect=(0, 0.05, 1, 0.97))
    fig.savefig(sys.argv[2], dpi=130)
    print("plot_zoo: %d cells (%s) -> %s" % (total, ", ".join("%s %d" % kv for kv in sorted(counts.items())),
                                             sys.argv[2]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
