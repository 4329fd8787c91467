#!/usr/bin/env python3
"""What the Newton-Schulz workspace cap costs and saves: one generated Muon optimizer's step
under SYMOC_CUDA_NS_WORKSPACE_MB (the plan run in slices of every group's matrices, bit for bit
the uncapped step), on one GPU, every row in one process, medians of CUDA-event timings
(automatic graphs on).

    python3 bench/gpu/ns_workspace.py LIB [LIB ...] [--caps 0 2048 1024 512 256] [--rank-of 8]
                                      [--json OUT.json]
    python3 bench/gpu/ns_workspace.py --plot OUT.json OUT.png      (here: the picture)

Per library and cap: the backend's device memory (the drop in free device memory from before
the optimizer is made to after two steps: state, tables, workspaces) and the step's ms, for a
full step and for a distributed rank's step (rank 0 of --rank-of: every W-th block, as
symoc.distributed gives it; the workspace is allocated for the plans a rank runs, so it pays
for its own matrices only). Cap 0: no cap; the default is 2048 (runtime/README.md).
"""
import argparse
import json
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench_gpu as bg  # noqa: E402
from symoc.torch import SymocOptimizer, load_library  # noqa: E402


def measure(path, cap, sel_every, a):
    lib = load_library(path)
    named = bg.params_of(lib, 3)
    torch.cuda.empty_cache()  # symoc.torch releases torch's cached blocks before a first step
    torch.cuda.synchronize()
    free0 = torch.cuda.mem_get_info()[0]
    with bg.environment({"SYMOC_CUDA_NS_WORKSPACE_MB": str(cap)}):
        opt = SymocOptimizer(named, library=path, lr=1e-3)
    stepper = bg.block_stepper(lib, opt, named)
    sel = None if sel_every == 1 else stepper.blocks[0::sel_every]

    def step():
        stepper(sel)

    step()
    step()
    torch.cuda.synchronize()
    mib = (free0 - torch.cuda.mem_get_info()[0]) / 2**20
    ms = bg.timed(step, a.warmup, a.iters)
    del opt, named
    torch.cuda.empty_cache()
    return mib, ms


def plot(json_path, png_path):
    """Backend memory against step time, one line per library and step kind, a point per cap."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    d = json.load(open(json_path))
    libs = list(dict.fromkeys(r["lib"] for r in d["rows"]))
    fig, axes = plt.subplots(1, len(libs), figsize=(6.2 * len(libs), 4.2), squeeze=False)
    for ax, lib in zip(axes[0], libs):
        rows = [r for r in d["rows"] if r["lib"] == lib]
        for kind, color in (("full", "tab:blue"), ("rank", "tab:orange")):
            xs = [r[kind + "_mib"] for r in rows]
            ys = [r[kind + "_ms"] for r in rows]
            ax.plot(xs, ys, "o-", color=color, label="full step" if kind == "full" else "rank 0 of %s (subset step)" % d.get("rank_of", "W"))
            for r, x, y in zip(rows, xs, ys):
                ax.annotate(str(r["cap_mib"] or "no cap"), (x, y), fontsize=7, xytext=(3, 3),
                            textcoords="offset points")
        ax.set_xlabel("backend device memory (MiB)")
        ax.set_ylabel("ms per step (median)")
        ax.set_title("%s: Newton-Schulz workspace cap (MiB)" % lib, fontsize=10)
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=8)
    fig.suptitle("%s, torch %s" % (d["device"], d["torch"]), fontsize=9)
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "--plot":
        plot(sys.argv[2], sys.argv[3])
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("libs", nargs="+")
    ap.add_argument("--caps", type=int, nargs="+", default=[0, 2048, 1024, 512, 256])
    ap.add_argument("--rank-of", type=int, default=8)
    ap.add_argument("--iters", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--json")
    a = ap.parse_args()
    out = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "rank_of": a.rank_of, "rows": []}
    print("| library | cap (MiB) | full step: backend MiB | ms | x uncapped | rank 0 of %d: backend MiB | ms |"
          % a.rank_of)
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for path in a.libs:
        name = os.path.basename(path).replace("lib", "", 1).replace("_optimizer.so", "")
        base = None
        for cap in a.caps:
            mib, ms = measure(path, cap, 1, a)
            rmib, rms = measure(path, cap, a.rank_of, a)
            base = base or ms
            out["rows"].append({"lib": name, "cap_mib": cap, "full_mib": mib, "full_ms": ms,
                                "rank_mib": rmib, "rank_ms": rms})
            print("| %s | %s | %.0f | %.3f | %.3f | %.0f | %.3f |" % (name, cap or "none", mib, ms, ms / base, rmib, rms),
                  flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
