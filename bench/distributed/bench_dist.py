#!/usr/bin/env python3
"""Distributed stepping of symoc plans (issue #15): load balance, bytes and step time per rank.

Two modes.

simulate (default; no GPU, no torch.distributed): compiles GPT-2-small-shaped (12 layers,
d 768, vocab 50257; the fixtures' GPT2 class exported with torch) and LLaMA-1B-shaped
(16 layers, d 2048, 32 heads / 8 KV heads, SwiGLU 8192, vocab 128256, untied head: the
LLaMA-3.2-1B shapes, an onnx-helper graph whose weights are never written) models with
`symoc compile --emit json` for the given policies, and for world sizes 2..8 prints per rank:
the LPT assignment's cost (block_cost = plan FLOPs + bytes moved, as the generated library
reports it), the estimated step time (a roofline: max(FLOPs / --tflops, bytes / --gbps) per
block, summed), the bytes each rank broadcasts and receives per step (DDP layout) and its
optimizer state; then max/mean balance for LPT over whole blocks, for LPT with the elementwise
blocks split by rows (ddp_schedule, the DDP schedule of DistributedSymocOptimizer, split=True:
a block of more than 1/(4 W) of the total cut into at most W row pieces when that lowers the
busiest rank) and for round-robin by size
(DeepSpeed's split) side by side.

    /usr/bin/python3 bench/distributed/bench_dist.py --symoc build/bin/symoc [--policies muon symo]

real (torchrun, NCCL on GPUs or gloo on CPUs; issue #16): builds nothing; --library is a
built generated library of the model. Every rank makes random parameters of the plan's
shapes, times DistributedSymocOptimizer.step() (median of --reps after --warmup) and, as
the reference, torch.optim.Muon on the 2-D parameters plus torch.optim.AdamW on the others
stepping every parameter redundantly on every rank (what DDP + a stock optimizer does), and
prints per-rank step time, bytes sent/received, state bytes and the balance.

    torchrun --nproc-per-node 8 bench/distributed/bench_dist.py real --library LIB.so

The reference uses the plan's split (its "muon" parameters to torch.optim.Muon, the rest to
AdamW), so compare with a library compiled with --policy muon. To get one for the GPT-2-small
or LLaMA-1B shapes: run simulate with --work DIR here (it keeps DIR/gpt2_small.onnx and
DIR/llama_1b.onnx), `symoc compile DIR/llama_1b.onnx --policy muon -o OUT`, carry OUT and
build it there with symoc.build.build_library(OUT, runtime_dir="runtime").
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "python"))

LLAMA_1B = dict(VOCAB=128256, D=2048, HEADS=32, KV_HEADS=8, FFN=8192, layers=16)
GPT2_SMALL = dict(vocab=50257, d=768, n_head=12, n_layer=12, n_pos=1024)


# --------------------------------------------------------------------------- models
def make_llama_1b(path):
    """LLaMA-3.2-1B shapes through bench/analyze/make_llama7b.py's builder (weights never
    written: a sparse external-data file)."""
    sys.path.insert(0, os.path.join(ROOT, "bench", "analyze"))
    import make_llama7b as mk
    for k in ("VOCAB", "D", "HEADS", "KV_HEADS", "FFN"):
        setattr(mk, k, LLAMA_1B[k])
    mk.HEAD = mk.D // mk.HEADS
    info = mk.build(path, LLAMA_1B["layers"], 16)
    os.chmod(info["weights"], 0o600)       # symoc may read the (all-zero) weights
    return path


def make_gpt2_small(path):
    import torch
    sys.path.insert(0, os.path.join(ROOT, "models"))
    import export_fixtures as fx
    torch.manual_seed(0)
    model = fx.GPT2(t=fx.SEQ, **GPT2_SMALL).train()
    ids = torch.randint(0, GPT2_SMALL["vocab"], (2, fx.SEQ))
    torch.onnx.export(model, (ids,), path, opset_version=14, export_params=True,
                      training=torch.onnx.TrainingMode.TRAINING, do_constant_folding=False,
                      input_names=["input_ids"], output_names=["logits"])
    return path


def plan_of(symoc, model, policy, verify=True):
    """The plan (JSON). verify=False for the LLaMA-1B shapes, whose weights are never written
    (all zero): symoc compile cannot check claims on them, and only the plan's blocks and
    costs are used here."""
    r = subprocess.run([symoc, "compile", model, "--policy", policy, "--emit", "json"] +
                       ([] if verify else ["--no-verify"]), capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit("symoc compile %s --policy %s: %s" % (model, policy, r.stderr.strip()))
    return json.loads(r.stdout)


# --------------------------------------------------------------------------- costs
def block_table(plan):
    """[(cost, flops, bytes moved, state bytes, param bytes)] per plan block; cost is the
    generated library's block_cost (EmitCpp.cpp blockCost: FLOPs + 12 bytes per weight entry
    + twice the state bytes)."""
    numel = {p["name"]: _prod(p["shape"]) for p in plan["params"]}
    out = []
    for b in plan["blocks"]:
        n = sum(numel[p] for p in b["params"])
        moved = 12.0 * n + 2.0 * b["state_bytes"]
        out.append((b["flops_per_step"] + moved, b["flops_per_step"], moved, b["state_bytes"],
                    4 * n))
    return out


def _prod(s):
    r = 1
    for d in s:
        r *= d
    return r


def round_robin_by_size(sizes, world):
    """DeepSpeed/modded-nanogpt style: blocks sorted by size, dealt round-robin."""
    order = sorted(range(len(sizes)), key=lambda b: (-sizes[b], b))
    owner = [0] * len(sizes)
    for k, b in enumerate(order):
        owner[b] = k % world
    return owner


def simulate(args):
    from symoc.distributed import balance, ddp_schedule, lpt_assign, plan_row_granules
    work = args.work or tempfile.mkdtemp(prefix="bench-dist-")
    os.makedirs(work, exist_ok=True)
    models = []
    if "gpt2_small" in args.models:
        p = os.path.join(work, "gpt2_small.onnx")
        if not os.path.exists(p):
            make_gpt2_small(p)
        models.append(("gpt2_small", p))
    if "llama_1b" in args.models:
        p = os.path.join(work, "llama_1b.onnx")
        if not os.path.exists(p):
            make_llama_1b(p)
        models.append(("llama_1b", p))
    rows = []
    for name, path in models:
        for policy in args.policies:
            plan = plan_of(args.symoc, path, policy, verify=name != "llama_1b")
            blocks = block_table(plan)
            costs = [b[0] for b in blocks]
            # Block splitting (DDP schedule): elementwise blocks (plan_row_granules, = the
            # library's param_row_granule) cut into row pieces; one pseudo-parameter per block.
            gran = plan_row_granules(plan)
            shapes = {q["name"]: q["shape"] for q in plan["params"]}
            brows = [(shapes[b["params"][0]] or [1])[0] for b in plan["blocks"]]
            est = [max(b[1] / (args.tflops * 1e12), b[2] / (args.gbps * 1e9)) for b in blocks]
            total_bytes = sum(b[4] for b in blocks)
            print("\n## %s, policy %s: %d parameters (%.1f M), %d blocks, single-process est. "
                  "step %.2f ms, state %.1f MiB" % (
                      name, policy, len(plan["params"]), total_bytes / 4e6, len(blocks),
                      1e3 * sum(est), sum(b[3] for b in blocks) / 2**20))
            for world in args.worlds:
                owner = lpt_assign(costs, world)
                lpt, load = balance(costs, owner, world)
                rr, _ = balance(costs, round_robin_by_size([b[4] for b in blocks], world), world)
                items, iowner = ddp_schedule([((b,), c) for b, c in enumerate(costs)], gran,
                                             brows, world)
                split, _ = balance([c for _, _, c in items], iowner, world)
                nsplit = len({b for b, rng, _ in items if rng is not None})
                # Estimated time of an item: its block's, scaled by its share of the rows.
                iest = [est[b] * (1.0 if rng is None else (rng[2] - rng[1]) / brows[b])
                        for b, rng, _ in items]
                t_blocks = max(sum(e for e, r in zip(est, owner) if r == k) for k in range(world))
                t_split = max(sum(e for e, r in zip(iest, iowner) if r == k)
                              for k in range(world))
                print("world %d: LPT max/mean %.3f, with %d elementwise blocks split %.3f "
                      "(round-robin by size %.3f); est. step %.2f ms, split %.2f ms = %.2fx "
                      "faster than one rank" % (world, lpt, nsplit, split, rr, 1e3 * t_blocks,
                                                1e3 * t_split, sum(est) / t_split))
                print("  per rank, split schedule:")
                print("  rank  items  cost share  est. step ms  sent MiB  received MiB  state MiB")
                for k in range(world):
                    mine = [(b, 1.0 if rng is None else (rng[2] - rng[1]) / brows[b], c)
                            for (b, rng, c), r in zip(items, iowner) if r == k]
                    sent = sum(blocks[b][4] * f for b, f, _ in mine)
                    print("  %4d  %5d  %9.1f%%  %12.2f  %8.1f  %12.1f  %9.1f" % (
                        k, len(mine), 100 * sum(c for _, _, c in mine) / sum(costs),
                        1e3 * sum(est[b] * f for b, f, _ in mine), sent / 2**20,
                        (total_bytes - sent) / 2**20,
                        sum(blocks[b][3] * f for b, f, _ in mine) / 2**20))
                rows.append(dict(model=name, policy=policy, world=world, lpt=lpt,
                                 lpt_split=split, split_blocks=nsplit, round_robin=rr,
                                 blocks=len(blocks)))
    print("\n## Load balance (max/mean block cost per rank; 1.000 is perfect): LPT over whole "
          "blocks -> LPT with elementwise blocks split by rows (round-robin by size)")
    print("| model | policy | blocks | " + " | ".join("W=%d" % w for w in args.worlds)
          + " |")
    print("|---|---|---|" + "---|" * len(args.worlds))
    keys = sorted({(r["model"], r["policy"]) for r in rows}, key=lambda k: (k[0], k[1]))
    for m, p in keys:
        rs = {r["world"]: r for r in rows if r["model"] == m and r["policy"] == p}
        print("| %s | %s | %d | %s |" % (m, p, next(iter(rs.values()))["blocks"], " | ".join(
            "%.3f -> %.3f (%.3f)" % (rs[w]["lpt"], rs[w]["lpt_split"], rs[w]["round_robin"])
            for w in args.worlds)))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


# --------------------------------------------------------------------------- real
def real(args):
    import torch
    import torch.distributed as dist
    from symoc.distributed import DistributedSymocOptimizer
    from symoc.torch import load_library
    backend = "nccl" if args.device == "cuda" else "gloo"
    dist.init_process_group(backend)
    rank, world = dist.get_rank(), dist.get_world_size()
    if args.device == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", rank)))
        dev = torch.device("cuda", torch.cuda.current_device())
    else:
        dev = torch.device("cpu")
    lib = load_library(args.library)
    gen = torch.Generator().manual_seed(0)
    params = [torch.nn.Parameter((torch.randn(s, generator=gen) * 0.02).to(dev))
              for _, s, _ in lib.params]
    for p in params:
        p.grad = (torch.randn(p.shape, generator=gen) * 1e-3).to(dev)
    opt = DistributedSymocOptimizer(list(zip([n for n, _, _ in lib.params], params)),
                                    library=args.library, lr=1e-3)

    def timed(step):
        ts = []
        for k in range(args.warmup + args.reps):
            if dev.type == "cuda":
                torch.cuda.synchronize()
            dist.barrier()
            t = time.perf_counter()
            step()
            if dev.type == "cuda":
                torch.cuda.synchronize()
            if k >= args.warmup:
                ts.append(time.perf_counter() - t)
        return statistics.median(ts)

    t_symoc = timed(opt.step)
    stats = dict(opt.last_step)
    ref = None
    if hasattr(torch.optim, "Muon"):
        # The plan's split: its Muon blocks to torch.optim.Muon, everything else to AdamW.
        is_muon = [r.startswith("muon") and p.dim() == 2 for (_, _, r), p in zip(lib.params, params)]
        mats = [p for p, m in zip(params, is_muon) if m]
        rest = [p for p, m in zip(params, is_muon) if not m]
        muon = torch.optim.Muon(mats, lr=1e-3) if mats else None
        adamw = torch.optim.AdamW(rest, lr=1e-3, foreach=True) if rest else None

        def ref_step():
            if muon:
                muon.step()
            if adamw:
                adamw.step()
        ref = timed(ref_step)
    lb, load = opt.load_balance()
    row = torch.tensor([t_symoc, ref or float("nan"), stats.get("bytes_sent", 0),
                        stats.get("bytes_received", 0), opt.state_bytes,
                        load[rank]], dtype=torch.float64, device=dev)
    rows = [torch.zeros_like(row) for _ in range(world)]
    dist.all_gather(rows, row)
    if rank == 0:
        print("model %s, policy %s, %s x %d, %d blocks, LPT balance max/mean %.3f"
              % (lib.model, lib.policy, backend, world, len(opt.block_costs()), lb))
        print("rank  symoc step ms  Muon+AdamW (redundant) ms  ratio  sent MiB  received MiB  "
              "state MiB  cost share")
        for k, r in enumerate(rows):
            r = r.tolist()
            print("%4d  %13.2f  %25.2f  %5.2f  %8.1f  %12.1f  %9.1f  %9.1f%%" % (
                k, 1e3 * r[0], 1e3 * r[1], r[1] / r[0], r[2] / 2**20, r[3] / 2**20,
                r[4] / 2**20, 100 * r[5] / sum(load)))
    dist.destroy_process_group()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", nargs="?", default="simulate", choices=["simulate", "real"])
    ap.add_argument("--symoc", default=os.path.join(ROOT, "build", "bin", "symoc"))
    ap.add_argument("--models", nargs="+", default=["gpt2_small", "llama_1b"])
    ap.add_argument("--policies", nargs="+", default=["muon", "symo", "adamw"])
    ap.add_argument("--worlds", nargs="+", type=int, default=[2, 3, 4, 6, 8])
    ap.add_argument("--tflops", type=float, default=400.0,
                    help="matrix rate for the estimate (default: H200 bf16-ish, 400 TFLOP/s)")
    ap.add_argument("--gbps", type=float, default=4000.0,
                    help="memory bandwidth for the estimate (default 4000 GB/s)")
    ap.add_argument("--work", help="folder for the exported models (kept between runs)")
    ap.add_argument("--json", help="write the balance rows here")
    ap.add_argument("--library", help="real: the built generated library")
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--reps", type=int, default=10)
    args = ap.parse_args()
    if args.mode == "real":
        if not args.library:
            raise SystemExit("real mode needs --library")
        return real(args)
    return simulate(args)


if __name__ == "__main__":
    sys.exit(main())
