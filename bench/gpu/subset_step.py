#!/usr/bin/env python3
"""What a distributed rank's step costs: one generated optimizer's step_cuda over a subset of its
blocks (rank 0's share of W: every W-th block of the plan, or with --assign lpt the blocks
symoc.distributed gives it, longest-processing-time-first on their costs) against the full
step, on one GPU, same process, medians of CUDA-event timings (automatic graphs on, so both
replay their own graph after the second step).

    python3 bench/gpu/subset_step.py LIB [LIB ...] [--ranks 2 4 8] [--iters 20] [--assign stride|lpt]

A rank's share of the work is 1/W of the blocks; the printed ratio (subset / full) says how
much of the step's time scales with it (1.0: none). Each library runs twice: with the
backend's subset plans (the default since session 12: a rank's Muon matrices gathered into a
Newton-Schulz plan of their own) and with SYMOC_CUDA_SUBSET_PLANS=0 (every step runs the full
plan, the inactive matrices as zeros). `--modes` picks the runs; "whole groups" sets
SYMOC_CUDA_SUBSET_GROUPS=0 (the matrix rules make every same-shape group whole on a rank's
first step, as before session 15). Every row is a fresh optimizer that steps only its own
subset (so a rank makes only what it steps), with the backend's device memory beside the time
(the drop in free device memory from before the optimizer is made to after two steps).
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
        with bg.environment(env):
            opt = SymocOptimizer(named, library=path, lr=1e-3)
        step = bg.block_stepper(lib, opt, named)
        sel = None if W == 1 else rank0_blocks(lib, step.blocks, W, a.assign)
        step(sel)
        step(sel)
        torch.cuda.synchronize()
        mib = (free0 - torch.cuda.mem_get_info()[0]) / 2**20
        ms = bg.timed(functools.partial(step, sel), a.warmup, a.iters)
        rows["full" if W == 1 else "rank 0 of %d" % W] = {"ms": ms, "mib": mib}
        del opt, named, step
        gc.collect()  # the optimizer's device memory goes with the object, before the next row
        torch.cuda.empty_cache()
    return rows


MODES = {"subset plans": {}, "full plan": {"SYMOC_CUDA_SUBSET_PLANS": "0"},
         "whole groups": {"SYMOC_CUDA_SUBSET_GROUPS": "0"}}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("libs", nargs="+")
    ap.add_argument("--ranks", type=int, nargs="+", default=[2, 4, 8])
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--assign", choices=("stride", "lpt"), default="stride",
                    help="rank 0's blocks: every W-th (stride) or symoc.distributed's LPT share")
    ap.add_argument("--modes", nargs="+", default=["subset plans", "full plan"], choices=sorted(MODES))
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
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
