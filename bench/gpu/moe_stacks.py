#!/usr/bin/env python3
"""MoE expert stacks on the GPU: symoc's Muon on each expert matrix against torch's own.

transformers >= 5 keeps each MoE layer's experts as two stacked tensors (E x m x n). symoc's
plan steps such a stack as Muon on each of its E matrices (docs/compile.md, "Stacks of
matrices"), which the CUDA backend runs as one bf16 Newton-Schulz batch per shape. This script
builds a model of stacked experts (dense mixing, so every expert gets a gradient), compiles it
with symoc.torch.compile from the relocatable package (policy muon) and times, in one process on
the same parameters and gradients (medians of CUDA-event timings):

  symoc      the compiled optimizer's step (the backend's CUDA graph after the first steps)
  torch Muon torch.optim.Muon over the same matrices as separate 2-D parameters (the way to run
             it on stacks: it takes 2-D parameters only) + fused AdamW for the routers
  batched    the same step written in torch, batched per stack (lerp momentum, bf16 NS5 by
             baddbmm on the whole stack, muon.py's scale), the issue's "batched by shape" reference
  bound      the NS5 FLOP bound at 790 TFLOP/s (bf16), symmetric products not counted

    python3 bench/gpu/moe_stacks.py --package symoc-*.tar.gz --out DIR [--layers 4 --experts 32
        --hidden 1024 --inter 1024 --tokens 16]
Writes DIR/moe_stacks.json and prints a table.
"""
import argparse
import json
import os
import sys
import tarfile
import tempfile
import time

import torch
import torch.nn as nn

DEV = torch.device("cuda", 0)
PEAK_BF16 = 790e12


class StackedMoE(nn.Module):
    """Layers of E experts kept as stacks up [E, I, H] and down [E, H, I], mixed densely by a
    softmax router (every expert sees every token: all stacks get gradients)."""

    def __init__(self, layers, experts, hidden, inter):
        super().__init__()
        self.routers = nn.ModuleList(nn.Linear(hidden, experts, bias=False) for _ in range(layers))
        self.up = nn.ParameterList(nn.Parameter(0.02 * torch.randn(experts, inter, hidden)) for _ in range(layers))
        self.down = nn.ParameterList(nn.Parameter(0.02 * torch.randn(experts, hidden, inter)) for _ in range(layers))

    def forward(self, x):                                            # x: T x H
        for r, up, down in zip(self.routers, self.up, self.down):
            w = torch.softmax(r(x), dim=-1)                          # T x E
            a = torch.relu(torch.matmul(x.unsqueeze(0), up.transpose(1, 2)))   # E x T x I
            y = torch.matmul(a, down.transpose(1, 2))                # E x T x H
            x = x + (y * w.t().unsqueeze(-1)).sum(0)
        return x


def ns5_batched(G, steps=5, eps=1e-7):
    """muon.py's quintic on a batch of matrices in bf16 (baddbmm), wide orientation."""
    a, b, c = 3.4445, -4.7750, 2.0315
    X = G.bfloat16()
    tall = X.size(-2) > X.size(-1)
    if tall:
        X = X.transpose(-2, -1)
    X = X / X.norm(dim=(-2, -1), keepdim=True).clamp(min=eps)
    for _ in range(steps):
        A = X @ X.transpose(-2, -1)
        B = torch.baddbmm(A, A, A, beta=b, alpha=c)
        X = torch.baddbmm(X, B, X, beta=a)
    return X.transpose(-2, -1) if tall else X


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--package", required=True)
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--experts", type=int, default=32)
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--inter", type=int, default=1024)
    ap.add_argument("--tokens", type=int, default=16)
    ap.add_argument("--iters", type=int, default=30)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    d = tempfile.mkdtemp(prefix="symoc-pkg-")
    with tarfile.open(a.package) as t:
        t.extractall(d)
    pkg = os.path.join(d, next(n for n in os.listdir(d) if n.startswith("symoc-")))
    sys.path.insert(0, os.path.join(pkg, "python"))
    import symoc.torch
    sys.path.insert(1, os.path.dirname(os.path.abspath(__file__)))
    from bench_gpu import timed  # CUDA-event medians, as every GPU benchmark here

    torch.manual_seed(0)
    model = StackedMoE(a.layers, a.experts, a.hidden, a.inter).to(DEV)
    x = torch.randn(a.tokens, a.hidden, device=DEV)
    nparam = sum(p.numel() for p in model.parameters())
    print("StackedMoE: %d layers x %d experts, hidden %d, inter %d: %.1f M parameters"
          % (a.layers, a.experts, a.hidden, a.inter, nparam / 1e6), flush=True)
    t = time.perf_counter()
    opt = symoc.torch.compile(model, (x,), policy="muon", lr=0.02, cache_dir=os.path.join(d, "cache"))
    t_compile = time.perf_counter() - t
    rules = opt.param_rules()
    stacks = sorted({r for n, r in rules.items() if n.startswith(("up.", "down."))})
    print("compiled in %.1f s (%s); stack rules %s" % (t_compile, opt.symoc_info["times"], stacks), flush=True)

    g = torch.Generator(device=DEV).manual_seed(1)
    for p in model.parameters():
        p.grad = 1e-3 * torch.randn(p.shape, device=DEV, generator=g)
    res = {"config": vars(a), "params_millions": nparam / 1e6, "compile_s": t_compile, "stack_rules": stacks,
           "device": torch.cuda.get_device_name(0), "torch": torch.__version__}
    res["symoc_ms"] = timed(opt.step, 5, a.iters)

    # torch.optim.Muon over each expert matrix as its own 2-D parameter (+ fused AdamW for routers).
    mats = [nn.Parameter(s[e].detach().clone()) for s in list(model.up) + list(model.down) for e in range(s.shape[0])]
    for m_ in mats:
        m_.grad = 1e-3 * torch.randn(m_.shape, device=DEV, generator=g)
    routers = [p for r in model.routers for p in r.parameters()]
    tm = torch.optim.Muon(mats, lr=0.02, weight_decay=0.01, momentum=0.95, nesterov=True)
    ta = torch.optim.AdamW(routers, lr=0.02, betas=(0.9, 0.95), weight_decay=0.01, fused=True)

    def torch_muon():
        tm.step()
        ta.step()
    res["torch_muon_ms"] = timed(torch_muon, 3, max(5, a.iters // 3))

    # The same step batched per stack in torch.
    stk = [s.detach().clone() for s in list(model.up) + list(model.down)]
    grads = [1e-3 * torch.randn(s.shape, device=DEV, generator=g) for s in stk]
    moms = [torch.zeros_like(s) for s in stk]

    def batched():
        for W, G, M in zip(stk, grads, moms):
            M.lerp_(G, 0.05)
            U = G.lerp(M, 0.95)
            D = ns5_batched(U)
            W.mul_(1 - 0.02 * 0.01).add_(D.to(W.dtype), alpha=-0.02 * max(1.0, W.size(-2) / W.size(-1)) ** 0.5)
        ta.step()
    res["torch_batched_ms"] = timed(batched, 3, a.iters)
    ta_all = torch.optim.AdamW(list(model.parameters()), lr=1e-3, fused=True)
    res["torch_adamw_fused_ms"] = timed(ta_all.step, 3, a.iters)

    flops = 0
    for s in stk:
        m_, n_ = min(s.shape[-2:]), max(s.shape[-2:])
        flops += s.shape[0] * 5 * (4 * m_ * m_ * n_ + 2 * m_ ** 3)
    res["ns_bound_ms"] = flops / PEAK_BF16 * 1e3
    for k in ("torch_muon_ms", "torch_batched_ms", "ns_bound_ms", "torch_adamw_fused_ms"):
        res["symoc_over_" + k[:-3]] = res["symoc_ms"] / res[k]
    with open(os.path.join(a.out, "moe_stacks.json"), "w") as f:
        json.dump(res, f, indent=1)
    print("\n| step (%.1f M parameters, %d stacks of %d) | ms | symoc x |" % (nparam / 1e6, len(stk), a.experts))
    print("| --- | --- | --- |")
    for k, label in (("symoc_ms", "symoc muon (Muon on each expert matrix)"),
                     ("torch_muon_ms", "torch.optim.Muon over the %d matrices + fused AdamW" % len(mats)),
                     ("torch_batched_ms", "torch, batched per stack (bf16 NS5, baddbmm)"),
                     ("ns_bound_ms", "NS5 FLOP bound at 790 TFLOP/s"),
                     ("torch_adamw_fused_ms", "torch AdamW fused, every parameter")):
        print("| %s | %.3f | %s |" % (label, res[k], "" if k == "symoc_ms" else "%.2fx" % res["symoc_over_" + k[:-3]]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
