#!/usr/bin/env python3
"""symoc.distributed's DDP step on one GPU (world 1, NCCL): DistributedSymocOptimizer.step()
steps its blocks bucket by bucket (step_cuda with each bucket's blocks, then the bucket's
broadcast), so before session 12 every bucket holding a Muon block ran the Newton-Schulz plan
over all Muon matrices. Times step() with the backend's subset plans (the default) and with
SYMOC_CUDA_SUBSET_PLANS=0 (the full plan per call), against symoc.torch's single-process step
of the same library, same process, medians of CUDA-event timings; and schedule="one_call" (the
rank's blocks in one call before the broadcasts; first timed in session 13: GPT-2 small 4.27
ms against the buckets' 10.22, docs/benchmarks.md).

    python3 bench/gpu/ddp_step.py LIB [LIB ...] [--iters 10]
"""
import argparse
import os
import sys
import tempfile

import torch
import torch.distributed as dist

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench_gpu as bg  # noqa: E402
from symoc.distributed import DistributedSymocOptimizer  # noqa: E402
from symoc.torch import SymocOptimizer, load_library  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("libs", nargs="+")
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    a = ap.parse_args()
    init = tempfile.mktemp()
    dist.init_process_group("nccl", init_method="file://" + init, rank=0, world_size=1)
    for path in a.libs:
        lib = load_library(path)
        named = bg.params_of(lib, 4)
        rows = {}
        opt = SymocOptimizer(named, library=path, lr=1e-3)
        rows["symoc.torch step (one call)"] = bg.timed(opt.step, a.warmup, a.iters)
        del opt
        for label, env, sched in (("DDP step, subset plans", {}, "buckets"),
                                  ("DDP step, one call (schedule)", {}, "one_call"),
                                  ("DDP step, full plan per call", {"SYMOC_CUDA_SUBSET_PLANS": "0"}, "buckets")):
            with bg.environment(env):
                d = DistributedSymocOptimizer(named, library=path, lr=1e-3, schedule=sched)
            rows[label] = bg.timed(d.step, a.warmup, a.iters)
            nb = len(d._buckets)
            del d
            torch.cuda.empty_cache()
        print("== %s (world 1, %d buckets of <= 32 MiB)" % (os.path.basename(path), nb))
        for k, v in rows.items():
            print("  %-32s %9.3f ms" % (k, v))
        del named
        torch.cuda.empty_cache()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
