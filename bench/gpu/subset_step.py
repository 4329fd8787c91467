#!/usr/bin/env python3
"""What a distributed rank's step costs: one generated optimizer's step_cuda over a subset of its
blocks (rank 0's share of W: every W-th block of the plan, or with --assign lpt the blocks
symoc.distributed gives it, longest-processing-time-first on their costs) against the full
step, on one GPU, same process, medians of CUDA-event timings (automatic graphs on, so both
replay their own graph after the second step).

    python3 bench/gpu/subset_step.py LIB [LIB ...] [--ranks 2 4 8] [--iters 20] [--assign stride|lpt]
    python3 bench/gpu/subset_step.py --plot OUT.png TITLE JSON [JSON ...]      (the picture)

A rank's share of the work is 1/W of the blocks; the printed ratio (subset / full) says how
much of the step's time scales with it (1.0: none). Each library runs twice: with the
backend's subset plans (the default since session 12: a rank's Muon matrices gathered into a
Newton-Schulz plan of their own) and with SYMOC_CUDA_SUBSET_PLANS=0 (every step runs the full
plan, the inactive matrices as zeros). `--modes` picks the runs; "whole groups" sets
SYMOC_CUDA_SUBSET_GROUPS=0 (the matrix rules make every same-shape group whole on a rank's
first step, as before session 15); "per-matrix eigh" / "batched eigh" set SYMOC_CUDA_EIGH (one
cuSOLVER Xsyevd per matrix / one XsyevBatched per group and side, where the default picks by
batch); "group roots" sets SYMOC_CUDA_EIGH_BANKS=0 (each Shampoo group solves its own roots;
the default banks them: one eigensolve per side size across groups). Every row is a fresh optimizer that steps only its own
subset (so a rank makes only what it steps), with the backend's device memory beside the time
(the drop in free device memory from before the optimizer is made to after two steps).
`--profile K` adds each row's kernel table (torch.profiler, the K kernels that take longest;
cuSOLVER's appear under their own names), to see what of a step does not shrink with its share.
"""
import argparse
import functools
import gc
import json
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench_gpu as bg  # noqa: E402
import profile_step  # noqa: E402
from symoc.distributed import library_blocks, lpt_assign  # noqa: E402
from symoc.torch import SymocOptimizer, load_library  # noqa: E402


def rank0_blocks(lib, blocks, world, assign):
    """Rank 0's blocks of `world`: every W-th block of the plan (stride), or what
    symoc.distributed gives it (lpt: longest-processing-time-first on the blocks' costs)."""
    if assign == "stride":
        return blocks[0::world]
    owner = lpt_assign([c for _, c in library_blocks(lib)], world)
    return [b for b, r in zip(blocks, owner) if r == 0]


def time_lib(path, env, a):
    lib = load_library(path)
    rows = {}
    for W in [1] + a.ranks:
        named = bg.params_of(lib, 3)
        torch.cuda.empty_cache()
        torch.cuda.synchronize()
        free0 = torch.cuda.mem_get_info()[0]
        # The whole row under the mode's environment: the backend reads some of it when it
        # makes a group, on the group's first step (SYMOC_CUDA_EIGH), not at construction.
        with bg.environment(env):
            opt = SymocOptimizer(named, library=path, lr=1e-3)
            step = bg.block_stepper(lib, opt, named)
            sel = None if W == 1 else rank0_blocks(lib, step.blocks, W, a.assign)
            step(sel)
            step(sel)
            torch.cuda.synchronize()
            mib = (free0 - torch.cuda.mem_get_info()[0]) / 2**20
            ms = bg.timed(functools.partial(step, sel), a.warmup, a.iters)
        row = rows["full" if W == 1 else "rank 0 of %d" % W] = {"ms": ms, "mib": mib}
        if a.profile:
            prof = profile_step.profile(functools.partial(step, sel), 1)
            row["profile"] = dict(prof, kernels=prof["kernels"][:a.profile])
        del opt, named, step
        gc.collect()  # the optimizer's device memory goes with the object, before the next row
        torch.cuda.empty_cache()
    return rows


MODES = {"subset plans": {}, "full plan": {"SYMOC_CUDA_SUBSET_PLANS": "0"},
         "whole groups": {"SYMOC_CUDA_SUBSET_GROUPS": "0"},
         "per-matrix eigh": {"SYMOC_CUDA_EIGH": "per-matrix"}, "batched eigh": {"SYMOC_CUDA_EIGH": "batched"},
         "group roots": {"SYMOC_CUDA_EIGH_BANKS": "0"}}


def plot(png_path, json_paths, title):
    """Per library: memory and time of the full step and of rank 0's step, one bar per mode."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = {}
    for jp in json_paths:
        for name, r in json.load(open(jp)).items():
            lib, mode = name.rsplit(", ", 1)
            rows.setdefault(lib.replace("lib", "", 1).replace("_optimizer.so", ""), {})[mode] = r
    libs = list(rows)
    fig, axes = plt.subplots(2, len(libs), figsize=(4.2 * len(libs), 6.4), squeeze=False)
    colors = {"whole groups": "tab:gray", "subset plans": "tab:blue", "full plan": "tab:orange",
              "per-matrix eigh": "tab:purple", "batched eigh": "tab:gray"}
    for col, lib in enumerate(libs):
        for row, (key, unit) in enumerate((("mib", "backend MiB"), ("ms", "ms per step (median)"))):
            ax = axes[row][col]
            modes = list(rows[lib])
            kinds = list(rows[lib][modes[0]])
            width = 0.8 / len(modes)
            for i, mode in enumerate(modes):
                ys = [rows[lib][mode][k][key] for k in kinds]
                xs = [j + (i - (len(modes) - 1) / 2) * width for j in range(len(kinds))]
                label = "per-rank groups (default)" if mode == "subset plans" else mode
                bars = ax.bar(xs, ys, width, color=colors.get(mode, "tab:green"), label=label)
                for b, y in zip(bars, ys):
                    ax.annotate("%.0f" % y if y >= 10 else "%.2f" % y, (b.get_x() + b.get_width() / 2, y),
                                ha="center", va="bottom", fontsize=7)
            ax.set_xticks(range(len(kinds)))
            ax.set_xticklabels(kinds, fontsize=8)
            ax.set_ylabel(unit, fontsize=8)
            if row == 0:
                ax.set_title(lib, fontsize=9)
                ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)


def main():
    if len(sys.argv) >= 4 and sys.argv[1] == "--plot":
        plot(sys.argv[2], sys.argv[4:], sys.argv[3])
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("libs", nargs="+")
    ap.add_argument("--ranks", type=int, nargs="+", default=[2, 4, 8])
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--assign", choices=("stride", "lpt"), default="stride",
                    help="rank 0's blocks: every W-th (stride) or symoc.distributed's LPT share")
    ap.add_argument("--modes", nargs="+", default=["subset plans", "full plan"], choices=sorted(MODES))
    ap.add_argument("--profile", type=int, default=0, metavar="K",
                    help="print each row's K longest kernels (torch.profiler, one step)")
    ap.add_argument("--json")
    a = ap.parse_args()
    out = {}
    for path in a.libs:
        for mode in a.modes:
            name = "%s, %s" % (os.path.basename(path), mode)
            out[name] = time_lib(path, MODES[mode], a)
            print("== %s" % name)
            rows = out[name]
            for k, v in rows.items():
                print("  %-14s %8.3f ms  %.2fx full  (ideal %.2fx)  %8.0f MiB  %.2fx full" % (
                    k, v["ms"], v["ms"] / rows["full"]["ms"], 1.0 if k == "full" else 1.0 / int(k.split()[-1]),
                    v["mib"], v["mib"] / max(rows["full"]["mib"], 1e-9)), flush=True)
                if "profile" in v:
                    p = v["profile"]
                    print("    kernels %.3f ms (GEMM %.3f, other %.3f), first to last %.3f ms" % (
                        p["kernel_ms"], p["gemm_ms"], p["other_ms"], p["first_to_last_ms"]))
                    for kr in p["kernels"]:
                        print("    %9.3f ms %5.1f x  %s" % (kr["ms"], kr["calls"], kr["name"][:110]))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
