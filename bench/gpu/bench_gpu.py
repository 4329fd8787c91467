#!/usr/bin/env python3
"""Optimizer-step time of symoc's CUDA backend against PyTorch's optimizers, one GPU.

    python3 bench/gpu/bench_gpu.py --set NAME ADAMW_LIB MUON_LIB [--set ...] [--out DIR]

For each parameter set (a generated AdamW-policy and Muon-policy library of the same model)
the script makes fp32 parameters and gradients on the GPU and times, with CUDA events,
the median of --iters steps after --warmup steps:
  symoc adamw (eager, graph)   the AdamW-policy library: one fused kernel per configuration
  torch AdamW fused (eager, graph)  torch.optim.AdamW(fused=True[, capturable=True])
  symoc muon (eager, graph)    the Muon-policy library: AdamW for vectors/embeddings, Muon
                               (batched bf16 Newton-Schulz per shape group) for the matrices
  symoc muon, Gram NS          the same with SYMOC_CUDA_NS=gram: Gram Newton-Schulz (fp16, one
                               restart) for the groups of aspect ratio >= 2
  torch Muon + AdamW           torch.optim.Muon on the same matrices + fused AdamW for the rest
and the same run's references: device-to-device copy bandwidth (bytes read + written), the
AdamW bytes per step (28 B per fp32 parameter: p, g, m, v read; p, m, v written), and the
Newton-Schulz-5 FLOP bound 5 (4 r^2 c + 2 r^3) per r x c matrix (r the smaller side) at
790 TFLOP/s (the H200's measured bf16 rate). Writes bench_gpu.json and bench_gpu.md.
"""
import argparse
import json
import os
import statistics
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "python"))
from symoc.torch import SymocOptimizer, load_library  # noqa: E402

DEV = torch.device("cuda", 0)
PEAK_BF16 = 790e12


def timed(fn, warmup, iters):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(iters):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        ts.append(a.elapsed_time(b))
    return statistics.median(ts)


def graphed(step, warmup):
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(max(1, warmup)):
            step()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        step()
    return g.replay


def params_of(lib, seed):
    g = torch.Generator(device=DEV).manual_seed(seed)
    ps = []
    for n, s, _ in lib.params:
        p = torch.nn.Parameter(torch.randn(s, device=DEV, generator=g) * 0.02)
        p.grad = torch.randn(s, device=DEV, generator=g) * 1e-3
        ps.append((n, p))
    return ps


def copy_bandwidth(warmup, iters):
    x = torch.empty(1 << 28, device=DEV)
    y = torch.empty_like(x)
    t = timed(lambda: y.copy_(x), warmup, iters)
    return 2 * x.numel() * 4 / (t * 1e-3)


def hyper(lib):
    plan = json.loads(lib.plan_json)
    return {n: (b["step"]["kind"], b["step"].get("hyper", {})) for b in plan["blocks"] for n in b["params"]}


def adamw_groups(named, hp):
    groups = {}
    for n, p in named:
        h = hp[n][1]
        key = (h.get("beta1", 0.9), h.get("beta2", 0.999), h.get("eps", 1e-8), h.get("weight_decay", 0.0))
        groups.setdefault(key, []).append(p)
    return [{"params": v, "betas": (k[0], k[1]), "eps": k[2], "weight_decay": k[3]} for k, v in groups.items()]


def bench_set(name, adamw_lib, muon_lib, a):
    rows = {}
    la, lm = load_library(adamw_lib), load_library(muon_lib)
    nparam = sum(p.numel() for _, p in params_of(la, 0)) if False else sum(
        int(torch.Size(s).numel()) for _, s, _ in la.params)
    # --- AdamW class
    named = params_of(la, 1)
    opt = SymocOptimizer(named, library=adamw_lib, lr=1e-3)
    rows["symoc adamw"] = timed(opt.step, a.warmup, a.iters)
    rows["symoc adamw (graph)"] = timed(graphed(opt.step, 1), a.warmup, a.iters)
    del opt, named
    named = params_of(la, 1)
    hp = hyper(la)
    topt = torch.optim.AdamW(adamw_groups(named, hp), lr=1e-3, fused=True)
    rows["torch AdamW fused"] = timed(topt.step, a.warmup, a.iters)
    del topt
    topt = torch.optim.AdamW(adamw_groups(named, hp), lr=torch.tensor(1e-3, device=DEV), fused=True,
                             capturable=True)
    rows["torch AdamW fused (graph)"] = timed(graphed(topt.step, 3), a.warmup, a.iters)
    del topt, named
    torch.cuda.empty_cache()
    # --- Muon class
    named = params_of(lm, 2)
    hp = hyper(lm)
    muon_shapes = [tuple(p.shape) for n, p in named if hp[n][0] == "muon"]
    opt = SymocOptimizer(named, library=muon_lib, lr=1e-3)
    rows["symoc muon"] = timed(opt.step, a.warmup, a.iters)
    rows["symoc muon (graph)"] = timed(graphed(opt.step, 1), a.warmup, a.iters)
    del opt, named
    torch.cuda.empty_cache()
    # The same with Gram Newton-Schulz for the groups of aspect ratio >= 2 (SYMOC_CUDA_NS=gram).
    os.environ["SYMOC_CUDA_NS"] = "gram"
    named = params_of(lm, 2)
    opt = SymocOptimizer(named, library=muon_lib, lr=1e-3)
    del os.environ["SYMOC_CUDA_NS"]
    rows["symoc muon, Gram NS"] = timed(opt.step, a.warmup, a.iters)
    rows["symoc muon, Gram NS (graph)"] = timed(graphed(opt.step, 1), a.warmup, a.iters)
    del opt, named
    torch.cuda.empty_cache()
    # The same with the backend's own cuBLAS Newton-Schulz loop instead of gpumatrix's plan.
    os.environ["SYMOC_CUDA_NS"] = "own"
    named = params_of(lm, 2)
    opt = SymocOptimizer(named, library=muon_lib, lr=1e-3)
    del os.environ["SYMOC_CUDA_NS"]
    rows["symoc muon, own NS loop (graph)"] = timed(graphed(opt.step, 1), a.warmup, a.iters)
    del opt, named
    torch.cuda.empty_cache()
    named = params_of(lm, 2)
    mu = [p for n, p in named if hp[n][0] == "muon"]
    h0 = next(h for k, h in hp.values() if k == "muon")
    topts = [torch.optim.Muon(mu, lr=1e-3, weight_decay=h0.get("weight_decay", 0.0), momentum=h0.get("beta", 0.95),
                              nesterov=bool(h0.get("nesterov", 1))),
             torch.optim.AdamW(adamw_groups([(n, p) for n, p in named if hp[n][0] != "muon"], hp), lr=1e-3,
                               fused=True)]
    rows["torch Muon + AdamW fused"] = timed(lambda: [o.step() for o in topts], a.warmup, max(5, a.iters // 3))
    del topts, named, mu
    torch.cuda.empty_cache()
    flops = sum(5 * (4 * min(r, c) ** 2 * max(r, c) + 2 * min(r, c) ** 3) for r, c in muon_shapes)
    return {"set": name, "params": nparam, "matrices": len(muon_shapes), "ms": rows,
            "ns_flops": flops, "ns_bound_ms": flops / PEAK_BF16 * 1e3, "adamw_bytes": 28 * nparam}


def markdown(res, bw, device):
    out = ["Device: %s, torch %s; medians of CUDA-event timings; copy bandwidth %.2f TB/s (read + write)."
           % (device, torch.__version__, bw / 1e12), ""]
    for r in res:
        ms = r["ms"]
        out.append("**%s** (%.1fM parameters, %d Muon matrices; NS5 FLOP bound %.2f ms at 790 TFLOP/s; "
                   "AdamW moves %.2f GB)" % (r["set"], r["params"] / 1e6, r["matrices"], r["ns_bound_ms"],
                                             r["adamw_bytes"] / 1e9))
        out.append("")
        out.append("| step | ms | vs torch | note |")
        out.append("| --- | --- | --- | --- |")
        ta, tm = ms["torch AdamW fused"], ms["torch Muon + AdamW fused"]
        for k, v in ms.items():
            if "adamw" in k.lower() and "muon" not in k.lower():
                ratio = v / ta
                note = "%.2f TB/s effective (%.0f%% of copy)" % (r["adamw_bytes"] / (v * 1e-3) / 1e12,
                                                                 100 * r["adamw_bytes"] / (v * 1e-3) / bw)
            else:
                ratio = v / tm
                note = "%.2fx the NS5 bound" % (v / r["ns_bound_ms"])
            out.append("| %s | %.3f | %.2fx | %s |" % (k, v, ratio, note))
        out.append("")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--set", nargs=3, action="append", metavar=("NAME", "ADAMW_LIB", "MUON_LIB"), required=True)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--out", default=".")
    a = ap.parse_args()
    device = torch.cuda.get_device_name(0)
    bw = copy_bandwidth(3, 10)
    res = []
    for name, la, lm in a.set:
        res.append(bench_set(name, la, lm, a))
        print(json.dumps(res[-1]), flush=True)
    md = markdown(res, bw, device)
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "bench_gpu.json"), "w") as f:
        json.dump({"device": device, "torch": torch.__version__, "copy_bw": bw, "sets": res}, f, indent=1)
    with open(os.path.join(a.out, "bench_gpu.md"), "w") as f:
        f.write(md + "\n")
    print(md)


if __name__ == "__main__":
    main()
