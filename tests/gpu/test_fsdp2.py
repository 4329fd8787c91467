#!/usr/bin/env python3
"""FSDP2 (fully_shard, DTensor Shard(0)) against DDP for DistributedSymocOptimizer (issue #15).

Usage: test_fsdp2.py --library LIB.so [--library ...] --backend gloo|nccl --world N
                    [--device cpu|cuda] [--dtype fp32|bf16|mixed]

Needs torch >= 2.4. Spawns N ranks. On each, for each library: a module holding the plan's
parameters (random, the same on every rank) is sharded with fully_shard on a 1-D mesh; the
same parameters are also kept replicated (the DDP layout). Both get the same gradients
(distribute_tensor(Shard(0)) of one full gradient for FSDP2, the full gradient for DDP), and
3 steps (lr halved before the third) are taken by a DistributedSymocOptimizer on each
layout, then a 4th whose gradient has a NaN in rank 0's rows of a parameter that FSDP2 steps
on its shards (elementwise rules, ABI v3 step_rows on CPU parameters; skipped everywhere).
The FSDP2 ranks' state_dict()s are then loaded into a fresh DDP-layout
optimizer (re-sharded) and merged into a fresh single-process SymocOptimizer, and a 5th step
is taken by all. Checks: the FSDP2 parameters (full_tensor()) equal the DDP ones bit for bit
and the single-process and restored optimizers' too (on CUDA, for plans with blocks of the
matrix rules, those within 1e-6 relative: a rank batches its own blocks of those rules).
Rank 0 prints one line per library with the largest absolute difference, and
'N passed, M failed'. gloo runs on CPU parameters
(or, with --device cuda, on CUDA parameters, every rank on GPU 0: several ranks on one GPU);
nccl on CUDA parameters (one GPU per rank; the library needs the CUDA entry points).
On CUDA step 4's NaN goes into a parameter stepped whole at its home (none is stepped on its
shards there). --dtype (CUDA only): bf16 makes every parameter and gradient
bfloat16, mixed every second one (the others float32), so the DDP buckets change dtype and
FSDP2's byte exchange carries both.
"""
import argparse
import datetime
import os
import sys
import tempfile
import traceback

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "python"))

STEPS, LR = 3, 1e-2


def fsdp_api():
    try:
        from torch.distributed.fsdp import fully_shard
    except ImportError:
        from torch.distributed._composable.fsdp import fully_shard
    try:
        from torch.distributed.tensor import Shard, distribute_tensor
    except ImportError:
        from torch.distributed._tensor import Shard, distribute_tensor
    from torch.distributed.device_mesh import init_device_mesh
    return fully_shard, Shard, distribute_tensor, init_device_mesh


class Holder(torch.nn.Module):
    def __init__(self, tensors):
        super().__init__()
        for k, t in enumerate(tensors):
            self.register_parameter("p%d" % k, torch.nn.Parameter(t.clone()))


def bits_equal(a, b):
    view = torch.int16 if a.dtype == torch.bfloat16 else torch.int32
    return a.shape == b.shape and a.dtype == b.dtype and \
        torch.equal(a.contiguous().view(view), b.contiguous().view(view))


def full_of(p, world):
    """The full tensor of a DTensor parameter on the CPU: its shards gathered as objects (not
    DTensor.full_tensor(), whose all_gather segfaults in torch 2.11 under gloo with CUDA
    tensors, session 14)."""
    local = p.to_local().detach().cpu()
    if not p.placements[0].is_shard(0):
        return local
    parts = [None] * world
    dist.all_gather_object(parts, local)
    return torch.cat(parts)


def has_split_groups(lib):
    """Whether the plan has blocks of the CUDA matrix rules, whose groups a rank makes for its
    own blocks (runtime/README.md, "The matrix rules on a rank"): Symo, Shampoo, Lau-Su, and
    Muon with gauges, joint parameters or NorMuon's normalization."""
    import json

    def rules(b):
        st = b["step"]
        if st["kind"] in ("symo", "symo_coupled", "shampoo", "lausu"):
            return True
        return st["kind"] == "muon" and (len(b["params"]) > 1 or st.get("gauges") or
                                         st.get("hyper", {}).get("norm_beta2", 0) > 0)
    return any(rules(b) for b in json.loads(lib.plan_json)["blocks"])


def dtype_of(k, dtype):
    if dtype == "bf16" or (dtype == "mixed" and k % 2 == 0):
        return torch.bfloat16
    return torch.float32


def one_library(path, rank, world, device, mesh, dtype="fp32"):
    """3 steps (lr halved before the third) on FSDP2, DDP and one process; a 4th whose
    gradient has a NaN in the first rows of a parameter stepped on its shards, or else in the
    first parameter (every layout skips that parameter); the FSDP2 ranks' state_dicts
    re-sharded into a fresh DDP-layout optimizer and merged into a fresh single-process one,
    then a 5th step on all."""
    from symoc.distributed import DistributedSymocOptimizer, single_process_state_dict
    from symoc.torch import SymocOptimizer, load_library
    fully_shard, Shard, distribute_tensor, _ = fsdp_api()
    lib = load_library(path)
    gen = torch.Generator().manual_seed(0)
    init = [(torch.randn(s, generator=gen) * 0.5).to(dtype_of(k, dtype))
            for k, (_, s, _) in enumerate(lib.params)]
    names = [n for n, _, _ in lib.params]
    grads = [[torch.randn(s, generator=gen).to(dtype_of(k, dtype))
              for k, (_, s, _) in enumerate(lib.params)] for _ in range(STEPS + 2)]

    holder = Holder([t.to(device) for t in init])
    fully_shard(holder, mesh=mesh)
    sharded = [getattr(holder, "p%d" % k) for k in range(len(init))]
    fsdp = DistributedSymocOptimizer(list(zip(names, sharded)), library=path, lr=LR)
    ddp_params = [torch.nn.Parameter(t.clone().to(device)) for t in init]
    # split="always": the DDP layout steps its large elementwise blocks as row pieces.
    ddp = DistributedSymocOptimizer(list(zip(names, ddp_params)), library=path, lr=LR,
                                    split="always")
    single_params = [torch.nn.Parameter(t.clone().to(device)) for t in init]
    single = SymocOptimizer(list(zip(names, single_params)), library=path, lr=LR)
    # A NaN in step 4's gradient of a parameter stepped on its shards (rank 0's rows), or
    # else (CUDA: none is) of the first parameter, stepped whole at its home.
    nan_param = fsdp._local[0] if fsdp._local else 0
    grads[STEPS][nan_param].view(-1)[0] = float("nan")
    opts = [(fsdp, sharded, True), (ddp, ddp_params, False), (single, single_params, False)]

    def step(s, which):
        for opt, params, dt in which:
            if s == 2:
                opt.param_groups[0]["lr"] = LR * 0.5
            for k, g in enumerate(grads[s]):
                params[k].grad = distribute_tensor(g.to(device), mesh, [Shard(0)]) if dt \
                    else g.clone().to(device)
            opt.step()

    for s in range(STEPS + 1):
        step(s, opts)
    # Checkpoint of the FSDP2 run (row-range state of the shards) re-sharded into a fresh
    # DDP-layout optimizer and merged into a fresh single-process one.
    shards = [None] * world
    dist.all_gather_object(shards, fsdp.state_dict())
    r_ddp_params = [torch.nn.Parameter(p.detach().clone()) for p in ddp_params]
    r_ddp = DistributedSymocOptimizer(list(zip(names, r_ddp_params)), library=path,
                                      lr=LR * 3)
    r_ddp.load_state_dict(shards)
    r_single_params = [torch.nn.Parameter(p.detach().clone()) for p in single_params]
    r_single = SymocOptimizer(list(zip(names, r_single_params)), library=path, lr=LR * 3)
    r_single.load_state_dict(single_process_state_dict(shards))
    opts += [(r_ddp, r_ddp_params, False), (r_single, r_single_params, False)]
    restored = 2
    step(STEPS + 1, opts)
    worst_ddp = worst_single = 0.0
    worst_name = "-"  # the parameter where FSDP2 and DDP differ most (a failure's first clue)
    identical = True
    # On CUDA a rank makes the matrix rules' groups for its own blocks only (fewer matrices per
    # batched cuBLAS/cuSOLVER call, other rounding): the layouts that step different
    # sets of blocks per call agree within 1e-6 there, FSDP2 and DDP (the same rank split)
    # bitwise when DDP steps them in one call.
    tol = 1e-6 if device.type == "cuda" and has_split_groups(lib) else 0.0
    # DDP's "buckets" schedule steps a rank's blocks one call per bucket, and a rank's groups are
    # made from the blocks of its first calls; with several buckets here (mixed dtypes cut one at
    # every change of dtype) they batch other matrices than FSDP2's one call: within tol too.
    ddp_calls = sum(1 for b in ddp._buckets if b[0] == rank and b[1])
    tol_ddp = tol if ddp_calls > 1 else 0.0
    for k in range(len(init)):
        a = full_of(sharded[k], world)
        b = ddp_params[k].detach().cpu()
        d_ddp = (a.float() - b.float()).abs().max().item() if a.numel() else 0.0
        if d_ddp > worst_ddp:
            worst_ddp, worst_name = d_ddp, "%s (%s)" % (names[k], str(a.dtype).replace("torch.", ""))
        identical = identical and (bits_equal(a, b) or (
            tol_ddp > 0 and d_ddp <= tol_ddp * max(b.float().abs().max().item(), 1e-30)))
        for opt, params, dt in opts[2:]:
            c = params[k].detach().cpu()
            d = (a.float() - c.float()).abs().max().item() if a.numel() else 0.0
            worst_single = max(worst_single, d)
            identical = identical and (bits_equal(a, c) or (
                tol > 0 and d <= tol * max(c.float().abs().max().item(), 1e-30)))
    skipped = torch.tensor([fsdp.steps_skipped, ddp.steps_skipped], device=device)
    dist.all_reduce(skipped)
    if skipped.min().item() == 0 or single.steps_skipped == 0:
        identical = False       # the NaN step must have been skipped somewhere, in every layout
    info = "%d params on their shards, %d split pieces here, %d restored, %s, skips %s/%d%s" % (
        len(fsdp._local), len(ddp.row_ranges), restored, dtype, skipped.tolist(),
        single.steps_skipped, "" if worst_ddp == 0 else "; fsdp2 vs ddp worst at %s (%d DDP calls here)"
        % (worst_name, ddp_calls))
    return identical, worst_ddp, worst_single, \
        fsdp.last_step.get("bytes_sent", 0), ddp.last_step.get("bytes_sent", 0), info


def worker(rank, world, backend, libs, init_file, out_file, device_type="cpu", dtype="fp32"):
    _, _, _, init_device_mesh = fsdp_api()
    dist.init_process_group(backend, init_method="file://" + init_file, rank=rank,
                            world_size=world, timeout=datetime.timedelta(seconds=120))
    if backend == "nccl":
        torch.cuda.set_device(rank)
        device = torch.device("cuda", rank)
    elif device_type == "cuda":     # gloo, every rank on GPU 0
        torch.cuda.set_device(0)
        device = torch.device("cuda", 0)
    else:
        device = torch.device("cpu")
    mesh = init_device_mesh(device.type, (world,))
    lines, ok_all = [], True
    for path in libs:
        try:
            ok, d_ddp, d_single, b_fsdp, b_ddp, info = one_library(path, rank, world, device,
                                                                   mesh, dtype)
            lines.append("%s %-40s fsdp2 vs ddp max|diff| %.3g%s  bytes sent fsdp2 %d ddp %d; %s"
                         % ("PASS" if ok else "FAIL", os.path.basename(os.path.dirname(path)),
                            d_ddp, "" if d_single is None else
                            ", vs single process/restored %.3g" % d_single, b_fsdp, b_ddp, info))
        except Exception:  # noqa: BLE001
            ok = False
            lines.append("FAIL %s\n%s" % (path, traceback.format_exc()))
        ok_all = ok_all and ok
    flags = torch.tensor([0 if ok_all else 1], device=device)
    dist.all_reduce(flags)
    if rank == 0:
        with open(out_file, "w") as f:
            f.write("\n".join(lines) + "\n")
            f.write("ranks failing: %d\n" % flags.item())
    dist.destroy_process_group()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--library", action="append", required=True)
    ap.add_argument("--backend", choices=["gloo", "nccl"], default="gloo")
    ap.add_argument("--world", type=int, default=2)
    ap.add_argument("--device", choices=["cpu", "cuda"], default=None,
                    help="default: cpu for gloo, cuda for nccl")
    ap.add_argument("--dtype", choices=["fp32", "bf16", "mixed"], default="fp32")
    args = ap.parse_args()
    device = args.device or ("cuda" if args.backend == "nccl" else "cpu")
    if args.backend == "nccl" and device != "cuda":
        ap.error("nccl needs --device cuda")
    if args.dtype != "fp32" and device != "cuda":
        ap.error("--dtype %s needs CUDA parameters (the CPU runtime steps float32)" % args.dtype)
    major, minor = (int(x) for x in torch.__version__.split(".")[:2])
    if (major, minor) < (2, 4):
        print("SKIP: FSDP2 needs torch >= 2.4, this is %s" % torch.__version__)
        return 77
    d = tempfile.mkdtemp(prefix="fsdp2-")
    out = os.path.join(d, "result")
    mp.spawn(worker, args=(args.world, args.backend, [os.path.abspath(p) for p in args.library],
                           os.path.join(d, "init"), out, device, args.dtype),
             nprocs=args.world, join=True)
    text = open(out).read()
    print("FSDP2 vs DDP, backend %s on %s, %s, world size %d, torch %s:"
          % (args.backend, device, args.dtype, args.world, torch.__version__))
    print(text, end="")
    failed = sum(1 for l in text.splitlines() if l.startswith("FAIL"))
    passed = sum(1 for l in text.splitlines() if l.startswith("PASS"))
    print("%d passed, %d failed" % (passed, failed))
    return 0 if failed == 0 and passed == len(args.library) else 1


if __name__ == "__main__":
    sys.exit(main())
