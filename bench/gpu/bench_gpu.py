#!/usr/bin/env python3
"""Optimizer-step time of symoc's CUDA backend against PyTorch's optimizers, one GPU.

    python3 bench/gpu/bench_gpu.py --set NAME ADAMW_LIB MUON_LIB [--set ...] [--out DIR]

For each parameter set (a generated AdamW-policy and Muon-policy library of the same model)
the script makes fp32 parameters and gradients on the GPU and times, with CUDA events,
the median of --iters steps after --warmup steps:
  symoc adamw (eager, graph)   the AdamW-policy library: one fused kernel per configuration
                               ("eager": symoc.torch's step, which the backend replays as its
                               own CUDA graph from the second step on; "no auto graph": the
                               same with SYMOC_CUDA_GRAPH=0; "graph": torch.cuda.graph around it)
  torch AdamW fused (eager, graph)  torch.optim.AdamW(fused=True[, capturable=True])
  symoc adam-mini (eager, graph)   with --adam-mini NAME LIB: the Adam-mini-policy library of
                               the same set (one second moment per row group: 20 B per entry
                               of its blocks, p and m read and written, g read, against AdamW's
                               28; AdamW for the rest), against the same torch fused AdamW;
                               (CTA per group) with SYMOC_CUDA_MINI_CTA=1: the kernel before
                               session 33 (one CTA per group, not one warp)
  symoc muon (eager, graph)    the Muon-policy library: AdamW for vectors/embeddings, Muon
                               (batched Newton-Schulz per shape group: Gram Newton-Schulz, fp16
                               with one restart, for groups of aspect ratio >= 2, the default;
                               bf16 with fp32 accumulation for the rest) for the matrices
  symoc muon, dense products   the same with SYMOC_CUDA_NS_SYM=0 (no symmetric products; the
                               default computes the symmetric r x r products of sides >= 2048
                               as their upper part)
  symoc muon, unfused          the same with SYMOC_CUDA_FUSE=0 (the plan's own norm pass over U,
                               U written back in fp32 and a separate update pass; the default
                               takes the norms from a stats pass over g and the momentum, makes
                               the momentum step in the plan's pack and updates the weights in
                               its unpack)
  symoc muon, momentum kernel  the same with SYMOC_CUDA_FUSE=1 (session 11: a momentum kernel
                               writes U in fp32 with the norms' partial sums, the plan packs U)
  symoc muon, overlap          the same with SYMOC_CUDA_OVERLAP=1 (AdamW for the rest on a side
                               stream, concurrent with the Newton-Schulz GEMMs)
  symoc muon, one NS stream    the same with SYMOC_CUDA_NS_STREAMS=1 (the standard-iteration
                               groups after the Gram groups on the step's stream; by default,
                               since session 23, on a side stream beside them)
  symoc muon, no write-through the same with SYMOC_CUDA_NS_WRITE_THROUGH=0 (the Gram path's last
                               product into the bank, then the unpack into the weights)
  symoc muon, tuned GEMMs      the same with SYMOC_CUDA_GEMM_TUNE=1 (GEMM algorithms timed on
                               the first step)
  symoc muon, standard NS      the same with SYMOC_CUDA_NS=standard: the bf16 iteration for every
                               group (the default before the Gram path)
  symoc muon, Gram without restart  the same with SYMOC_CUDA_NS_GRAM_RESTART=0 (the Gram path
                               without re-forming X and R after step 2)
  torch Muon + AdamW           torch.optim.Muon on the same matrices + fused AdamW for the rest
and the same run's references: device-to-device copy bandwidth (bytes read + written), the
AdamW bytes per step (28 B per fp32 parameter: p, g, m, v read; p, m, v written), and the
Newton-Schulz-5 FLOP bound 5 (4 r^2 c + 2 r^3) per r x c matrix (r the smaller side) at
790 TFLOP/s (the H200's measured bf16 rate).

    --matrix NAME MUON_LIB SYMO_LIB AUTO_LIB SHAMPOO_LIB SHAMPOO_F10_LIB

times the matrix rules on one parameter set, all in this process (graph replays and eager):
  symoc symo, symoc auto   against symoc muon (graph) of the same set (issue #12: within 2x);
      also symo with SYMOC_CUDA_SYMO_AUX=legacy (the first packing kernels) and =direct
      (whole-row/column runs as views into the plan; the default packs by coalesced kernels) and
      with SYMOC_CUDA_SYMO_POLAR=ns (the runs' polar factors by bf16 Newton-Schulz, for plans
      that ask for the exact polar factor)
  symoc shampoo, f = 1 and f = 10   against a torch Shampoo on the same blocks with one
      batched torch.linalg.eigh per shape group every f steps (L += G G^T, R += G^T G by
      bmm, roots V diag((w + eps)^(-1/4)) V^T, D = L_root G R_root, fused AdamW for the
      rest); per-step time = median over cycles of f steps / f (issue #12: <= 0.5x)
  symoc shampoo (per-matrix eigh) f = 1 and f = 10   the same with SYMOC_CUDA_EIGH=per-matrix (one
      cuSOLVER Xsyevd per matrix instead of one XsyevBatched per group and side); (group roots)
      with SYMOC_CUDA_EIGH_BANKS=0 (each group's own eigensolve; the default: one per side
      size across groups); (batched eigh) / (tridiagonal eigh) SYMOC_CUDA_EIGH=batched /
      tridiagonal (cuSOLVER's XsyevBatched / symoc's own batched tridiagonal eigensolver)
  symoc shampoo (one block a column)   SYMOC_CUDA_SYTRD_CTA=1: the tridiagonal reduction's column
      steps on one block per matrix (before session 34; the default is a CTA cluster of up to 8)
  symoc shampoo (bisection grid)   SYMOC_CUDA_BISECT_GRID=1: the tridiagonal solver's bisection
      from a bracket of a shared geometric grid (opt-in, written in session 34, not yet measured)
  symoc shampoo (gemm grams)   SYMOC_CUDA_SYRK_MIN=0: the Grams G G^T, G^T G as one batched GEMM per
      group (both triangles; without a workspace the default forms sides >= 1024 by cublasSsyrk
      per matrix)
  symoc shampoo (sgemm products) / (tf32x3 products)   SYMOC_CUDA_FP32_GEMM=sgemm (plain SGEMM,
      the default from session 26's end to session 29) / tf32x3 (three TF32 passes where a
      workspace is at hand: the Grams, L_root G R_root, the roots' V diag V^T; the default
      since session 29, so the plain row equals it)
  (SYMOC_BENCH_SHAMPOO_VARIANTS=eigh,per-matrix eigh,...: only those Shampoo rows)
  (SYMOC_BENCH_SHAMPOO_F100=LIB: also f = 100, LIB compiled with precondition_frequency=100)
  symoc shampoo (newton roots) f = 1 and f = 10   the same blocks with SYMOC_CUDA_ROOT=newton
      (inverse roots by the coupled Newton iteration on fp32 GEMMs, InvRootPlan, its default
      budget of 16 steps), next to the eigh rows and the same torch reference; (newton roots,
      tf32) with TF32 tensor-core products, f = 1 and 10; (newton roots, f64) DGEMM and (newton
      roots, 8 steps) SYMOC_CUDA_ROOT_ITERS=8 (half the budget: time against accuracy), f = 1;
      (newton roots, f64 scaled, 12 steps) SYMOC_CUDA_ROOT_SCALED=1 SYMOC_CUDA_ROOT_ITERS=12
      (NewtonRootOptions::scaled, fp64 only: the accuracy of 16+ plain steps), f = 1 and 10.
      After each f = 1 run (eigh and Newton) the roots in the optimizer's state (L_root, R_root
      of the last step) are compared with the fp64 torch.linalg.eigh root of the state's L, R
      ((max(w, 0) + eps)^(-1/p), the torch reference's function): relative Frobenius error,
      median and max per factor size ("root err" lines), so a speedup never hides a wrong root.
Eigendecompositions in fp32 (the backend's default). Writes bench_gpu.json and bench_gpu.md.
SYMOC_BENCH_PROFILE=FILE appends torch.profiler's kernel table of 3 eager steps of symoc muon,
symo (default tiled, legacy, direct) to FILE; SYMOC_BENCH_SHAMPOO=0 leaves Shampoo out, =only
times Shampoo alone.
"""
import argparse
import contextlib
import ctypes
import json
import os
import re
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


def block_stepper(lib, opt, named):
    """step(blocks): one raw step_cuda call of `opt` (a SymocOptimizer of `lib` over `named`)
    stepping only the plan's `blocks` (None: every block), what symoc.distributed calls for a
    rank, ordered on torch's current stream. The plan's block ids: block_stepper.blocks."""
    api, n = lib.api, len(named)
    w = (ctypes.c_void_p * n)(*[p.data_ptr() for _, p in named])
    g = (ctypes.c_void_p * n)(*[p.grad.data_ptr() for _, p in named])

    def step(blocks=None):
        arr = None if blocks is None else (ctypes.c_int32 * len(blocks))(*blocks)
        rc = api.step_cuda(opt._opt, w, g, None, n, arr, 0 if blocks is None else len(blocks),
                           ctypes.c_void_p(torch.cuda.current_stream().cuda_stream))
        if rc != 0:
            raise RuntimeError("step_cuda rc %d" % rc)

    step.blocks = [b["id"] for b in json.loads(lib.plan_json)["blocks"]]
    return step


@contextlib.contextmanager
def environment(env):
    """The variables of `env` set for the optimizers made inside the block (the backend reads
    them at create_cuda), restored after."""
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                del os.environ[k]
            else:
                os.environ[k] = v


def time_variant(rows, label, lib_path, seed, a, env, eager=True, graph=True):
    """rows[label] (symoc.torch's step) and rows[label + " (graph)"] (torch.cuda.graph around it)
    for the library made under the environment `env` (read at create_cuda). --variants REGEX:
    only the labels it matches."""
    if a.variants and not re.search(a.variants, label):
        return
    with environment(env):
        named = params_of(load_library(lib_path), seed)
        opt = SymocOptimizer(named, library=lib_path, lr=1e-3)
    if eager:
        rows[label] = timed(opt.step, a.warmup, a.iters)
    if graph:
        rows[label + " (graph)"] = timed(graphed(opt.step, 1), a.warmup, a.iters)
    del opt, named
    torch.cuda.empty_cache()


def backend_mib(lib_path, seed, env):
    """Device memory (MiB) an optimizer's backend takes: the drop in free device memory from
    before it is made to after two steps (its state, tables and workspaces; the parameters and
    gradients exist before), under the environment `env` (read at create_cuda)."""
    named = params_of(load_library(lib_path), seed)
    torch.cuda.empty_cache()  # symoc.torch releases torch's cached blocks before a first step
    torch.cuda.synchronize()
    free0 = torch.cuda.mem_get_info()[0]
    with environment(env):
        opt = SymocOptimizer(named, library=lib_path, lr=1e-3)
    opt.step()
    opt.step()
    torch.cuda.synchronize()
    used = (free0 - torch.cuda.mem_get_info()[0]) / 2**20
    del opt, named
    torch.cuda.empty_cache()
    return used


def step_bytes(lib):
    """Bytes one step of `lib`'s elementwise blocks moves at the least: 28 per fp32 entry for
    AdamW (p, g, m, v read; p, m, v written), 20 for Adam-mini (its per-group v is negligible),
    and 28 for any other kind (only elementwise libraries are timed this way)."""
    kinds = hyper(lib)
    return sum((20 if kinds[n][0] == "adam_mini" else 28) * int(torch.Size(s).numel()) for n, s, _ in lib.params)


def bench_set(name, adamw_lib, muon_lib, a, mini_lib=None):
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
    time_variant(rows, "symoc adamw, no auto graph", adamw_lib, 1, a, {"SYMOC_CUDA_GRAPH": "0"}, graph=False)
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
    mini_bytes = None
    if mini_lib:
        lmini = load_library(mini_lib)
        named = params_of(lmini, 1)
        opt = SymocOptimizer(named, library=mini_lib, lr=1e-3)
        rows["symoc adam-mini"] = timed(opt.step, a.warmup, a.iters)
        rows["symoc adam-mini (graph)"] = timed(graphed(opt.step, 1), a.warmup, a.iters)
        mini_bytes = step_bytes(lmini)
        del opt, named
        torch.cuda.empty_cache()
        time_variant(rows, "symoc adam-mini, CTA per group", mini_lib, 1, a, {"SYMOC_CUDA_MINI_CTA": "1"})
    # --- Muon class
    named = params_of(lm, 2)
    hp = hyper(lm)
    muon_shapes = [tuple(p.shape) for n, p in named if hp[n][0] == "muon"]
    opt = SymocOptimizer(named, library=muon_lib, lr=1e-3)
    rows["symoc muon"] = timed(opt.step, a.warmup, a.iters)
    rows["symoc muon (graph)"] = timed(graphed(opt.step, 1), a.warmup, a.iters)
    del opt, named
    torch.cuda.empty_cache()
    # SYMOC_CUDA_GRAPH=0: every launch from the host; SYMOC_CUDA_NS_SYM=0: no symmetric products
    # (the default uses them on sides >= 2048); SYMOC_CUDA_NS=standard: the bf16 iteration for
    # every group (no Gram path); =own: the backend's own cuBLAS loop instead of gpumatrix's plan;
    # SYMOC_CUDA_FUSE=0: the unfused norm and update passes, =1: the momentum kernel writing U
    # (session 11; the default 2 makes the momentum step in the plan's pack);
    # SYMOC_CUDA_NS_WORKSPACE_MB=0: the Newton-Schulz workspace uncapped (default 2 GiB, session 13);
    # SYMOC_CUDA_OVERLAP=1: the side stream; SYMOC_CUDA_NS_STREAMS=1: the standard groups' Newton-
    # Schulz on the step's stream after the Gram groups' (two streams by default since session 23); SYMOC_CUDA_NS_GRAM_RESTART=0: the Gram path without
    # its restart after step 2; SYMOC_CUDA_NS_WRITE_THROUGH=0: the Gram path's last product into
    # the bank and the unpack (before session 23) instead of straight into the weights;
    # SYMOC_CUDA_GEMM_TUNE=1: the Newton-Schulz GEMMs' algorithms timed on the first step.
    time_variant(rows, "symoc muon, no auto graph", muon_lib, 2, a, {"SYMOC_CUDA_GRAPH": "0"}, graph=False)
    time_variant(rows, "symoc muon, dense products", muon_lib, 2, a, {"SYMOC_CUDA_NS_SYM": "0"})
    time_variant(rows, "symoc muon, unfused", muon_lib, 2, a, {"SYMOC_CUDA_FUSE": "0"})
    time_variant(rows, "symoc muon, momentum kernel", muon_lib, 2, a, {"SYMOC_CUDA_FUSE": "1"})
    time_variant(rows, "symoc muon, no workspace cap", muon_lib, 2, a, {"SYMOC_CUDA_NS_WORKSPACE_MB": "0"})
    time_variant(rows, "symoc muon, overlap", muon_lib, 2, a, {"SYMOC_CUDA_OVERLAP": "1"})
    time_variant(rows, "symoc muon, one NS stream", muon_lib, 2, a, {"SYMOC_CUDA_NS_STREAMS": "1"})
    time_variant(rows, "symoc muon, standard NS", muon_lib, 2, a, {"SYMOC_CUDA_NS": "standard"})
    time_variant(rows, "symoc muon, Gram without restart", muon_lib, 2, a,
                 {"SYMOC_CUDA_NS_GRAM_RESTART": "0"})
    time_variant(rows, "symoc muon, no write-through", muon_lib, 2, a, {"SYMOC_CUDA_NS_WRITE_THROUGH": "0"})
    time_variant(rows, "symoc muon, tuned GEMMs", muon_lib, 2, a, {"SYMOC_CUDA_GEMM_TUNE": "1"})
    time_variant(rows, "symoc muon, own NS loop", muon_lib, 2, a, {"SYMOC_CUDA_NS": "own"}, eager=False)
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
    # The backend's device memory: the default (no float32 U, the workspace capped at 2 GiB)
    # against no cap and SYMOC_CUDA_FUSE=1 (U kept).
    mib = {"symoc muon": backend_mib(muon_lib, 2, {}),
           "symoc muon, no workspace cap": backend_mib(muon_lib, 2, {"SYMOC_CUDA_NS_WORKSPACE_MB": "0"}),
           "symoc muon, momentum kernel": backend_mib(muon_lib, 2, {"SYMOC_CUDA_FUSE": "1"})}
    print("# %s backend device memory: %s" % (name, ", ".join("%s %.0f MiB" % kv for kv in mib.items())), flush=True)
    return {"set": name, "params": nparam, "matrices": len(muon_shapes), "ms": rows, "backend_mib": mib,
            "ns_flops": flops, "ns_bound_ms": flops / PEAK_BF16 * 1e3, "adamw_bytes": 28 * nparam,
            "adam_mini_bytes": mini_bytes}


def cycles(fn, period, warmup_cycles, ncycles):
    """Median per-step ms over cycles of `period` steps (a refresh every cycle)."""
    for _ in range(warmup_cycles * period):
        fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(ncycles):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        for _ in range(period):
            fn()
        b.record()
        b.synchronize()
        ts.append(a.elapsed_time(b) / period)
    return statistics.median(ts)


class TorchShampoo:
    """Shampoo (runtime/lib/optim.cpp's rule, no pseudo-inverse cut) with one batched
    torch.linalg.eigh per shape group and side at each refresh, plus fused AdamW."""

    def __init__(self, named, hp, lr, freq):
        self.lr, self.freq, self.t = lr, freq, 0
        groups = {}
        for n, p in named:
            if hp[n][0] == "shampoo":
                groups.setdefault(tuple(p.shape), []).append(p)
        self.groups = []
        for shape, ps in groups.items():
            m, k = shape[0], int(torch.Size(shape[1:]).numel())
            h = hp[next(n for n, p in named if p is ps[0])][1]
            dmax = h.get("max_precond_dim", 8192)
            g = {"ps": ps, "m": m, "k": k, "eps": h.get("eps", 1e-6), "p": h.get("exponent", 4),
                 "useL": m <= dmax, "useR": k <= dmax}
            B = len(ps)
            if g["useL"]:
                g["L"], g["Lr"] = torch.zeros(B, m, m, device=DEV), torch.zeros(B, m, m, device=DEV)
            if g["useR"]:
                g["R"], g["Rr"] = torch.zeros(B, k, k, device=DEV), torch.zeros(B, k, k, device=DEV)
            self.groups.append(g)
        rest = [(n, p) for n, p in named if hp[n][0] != "shampoo"]
        self.adamw = torch.optim.AdamW(adamw_groups(rest, hp), lr=lr, fused=True) if rest else None

    @staticmethod
    def root(A, eps, p):
        w, V = torch.linalg.eigh(A)
        return (V * (w.clamp(min=0) + eps).pow(-1.0 / p).unsqueeze(-2)) @ V.transpose(-1, -2)

    @torch.no_grad()
    def step(self):
        refresh = self.t % self.freq == 0
        self.t += 1
        for g in self.groups:
            G = torch.stack([p.grad.reshape(g["m"], g["k"]) for p in g["ps"]])
            D = G
            if g["useL"]:
                g["L"].baddbmm_(G, G.transpose(1, 2))
                if refresh:
                    g["Lr"].copy_(self.root(g["L"], g["eps"], g["p"]))
                D = torch.bmm(g["Lr"], D)
            if g["useR"]:
                g["R"].baddbmm_(G.transpose(1, 2), G)
                if refresh:
                    g["Rr"].copy_(self.root(g["R"], g["eps"], g["p"]))
                D = torch.bmm(D, g["Rr"])
            torch._foreach_add_([p.view(g["m"], g["k"]) for p in g["ps"]], list(D.unbind(0)), alpha=-self.lr)
        if self.adamw:
            self.adamw.step()


_ROOT_REFS = {}  # state buffer name -> (factor, its fp64 eigh root): every f = 1 run accumulates the same L, R


def root_errors(opt, lib):
    """{factor side n: [relative error of each root in the state vs the fp64 eigh root of its factor]}."""
    sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "gpu"))
    from test_gpu import parse_state  # noqa: E402 (the runtime's state file reader)
    bufs, _ = parse_state(opt.state_dict()["symoc"]["blob"])
    hp = hyper(lib)
    out = {}
    for name, (shape, vals) in bufs.items():
        for side in ("L", "R"):
            if not name.endswith("/shampoo." + side):
                continue
            param = name[:-len("/shampoo." + side)]
            h = hp[param][1]
            eps, p = h.get("eps", 1e-6), h.get("exponent", 4)
            A = vals.view(shape).to(DEV)
            got = bufs[name + "_root"][1].view(shape).to(DEV, torch.float64)
            cached = _ROOT_REFS.get(name)
            if cached is not None and torch.equal(cached[0], A):
                ref = cached[1]
            else:
                Ad = A.double()
                w, V = torch.linalg.eigh(0.5 * (Ad + Ad.T))
                ref = (V * (w.clamp(min=0) + eps).pow(-1.0 / p).unsqueeze(-2)) @ V.T
                _ROOT_REFS[name] = (A, ref)
            out.setdefault(shape[0], []).append(((got - ref).norm() / ref.norm()).item())
    torch.cuda.synchronize()
    return out


def newton_flops(lib, iters):
    """FLOPs of one refresh of every Shampoo root by InvRootPlan: per factor side n, iters steps of
    p/2 + 2 (even p) or p + 1 (odd p) n^3-products, 2 n^3 FLOPs each (the power iteration's
    GEMVs and the elementwise kernels left out)."""
    total = 0
    hp = hyper(lib)
    for n, s, _ in lib.params:
        k_, h = hp[n]
        if k_ != "shampoo" or len(s) < 2:
            continue
        m, k = s[0], int(torch.Size(s[1:]).numel())
        p = int(h.get("exponent", 4))
        per = p // 2 + 2 if p % 2 == 0 else p + 1
        for side in (m, k):
            if side <= h.get("max_precond_dim", 8192):
                total += iters * per * 2 * side ** 3
    return total


def summarize_errors(errs):
    return {str(n): {"median": statistics.median(v), "max": max(v), "count": len(v)} for n, v in sorted(errs.items())}


def attempt(rows, key, fn):
    """rows[key] = fn(), or None with the reason printed (a refused capture, a failed solver)."""
    try:
        rows[key] = fn()
    except Exception as e:  # noqa: BLE001 (the benchmark reports and goes on)
        rows[key] = None
        print("%s: %s: %s" % (key, type(e).__name__, str(e).splitlines()[0][:200] if str(e) else ""), flush=True)
    print("  %s: %s" % (key, "-" if rows[key] is None else "%.3f ms" % rows[key]), flush=True)
    torch.cuda.synchronize()


def profile_steps(step, label, path, steps=3):
    """Appends to path the device kernels of `steps` eager steps, by self device time (torch.profiler)."""
    from torch.profiler import ProfilerActivity, profile
    step()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            step()
        torch.cuda.synchronize()
    ka = prof.key_averages()
    for key in ("self_device_time_total", "self_cuda_time_total"):
        try:
            table = ka.table(sort_by=key, row_limit=18, max_name_column_width=70)
            break
        except Exception:  # noqa: BLE001 (the key's name changed between torch versions)
            table = None
    with open(path, "a") as f:
        f.write("== %s (%d eager steps)\n%s\n" % (label, steps, table))


# Shampoo in fp32 on both sides (SYMOC_CUDA_EIG=f32; torch's eigh in fp32); the same with other
# eigensolver routes and Newton roots (SYMOC_CUDA_ROOT=newton: fp32 GEMMs; newton-tf32; f64).
SHAMPOO_VARIANTS = (
    ("", {"SYMOC_CUDA_EIG": "f32"}),
    (" (per-matrix eigh)", {"SYMOC_CUDA_EIG": "f32", "SYMOC_CUDA_EIGH": "per-matrix"}),
    (" (batched eigh)", {"SYMOC_CUDA_EIG": "f32", "SYMOC_CUDA_EIGH": "batched"}),
    (" (tridiagonal eigh)", {"SYMOC_CUDA_EIG": "f32", "SYMOC_CUDA_EIGH": "tridiagonal"}),
    (" (group roots)", {"SYMOC_CUDA_EIG": "f32", "SYMOC_CUDA_EIGH_BANKS": "0"}),
    (" (gemm grams)", {"SYMOC_CUDA_EIG": "f32", "SYMOC_CUDA_SYRK_MIN": "0"}),
    (" (sgemm products)", {"SYMOC_CUDA_EIG": "f32", "SYMOC_CUDA_FP32_GEMM": "sgemm"}),
    (" (tf32x3 products)", {"SYMOC_CUDA_EIG": "f32", "SYMOC_CUDA_FP32_GEMM": "tf32x3"}),
    (" (per-product splits)", {"SYMOC_CUDA_EIG": "f32", "SYMOC_CUDA_SPLIT_OPERANDS": "0"}),
    (" (one block a column)", {"SYMOC_CUDA_EIG": "f32", "SYMOC_CUDA_SYTRD_CTA": "1"}),
    (" (bisection grid)", {"SYMOC_CUDA_EIG": "f32", "SYMOC_CUDA_BISECT_GRID": "1"}),
    (" (newton roots)", {"SYMOC_CUDA_ROOT": "newton", "SYMOC_CUDA_EIG": "f32"}),
    (" (newton roots, 8 steps)", {"SYMOC_CUDA_ROOT": "newton", "SYMOC_CUDA_EIG": "f32", "SYMOC_CUDA_ROOT_ITERS": "8"}),
    (" (newton roots, f64 scaled, 12 steps)", {"SYMOC_CUDA_ROOT": "newton", "SYMOC_CUDA_EIG": "f64",
                                               "SYMOC_CUDA_ROOT_SCALED": "1", "SYMOC_CUDA_ROOT_ITERS": "12"}),
    (" (newton roots, tf32)", {"SYMOC_CUDA_ROOT": "newton-tf32"}),
    (" (newton roots, f64)", {"SYMOC_CUDA_ROOT": "newton", "SYMOC_CUDA_EIG": "f64"}))


def bench_matrix(name, muon_lib, symo_lib, auto_lib, sh_lib, sh10_lib, a):
    rows = {}
    it = min(a.iters, 15)
    # env: what the optimizer is made with (SYMOC_CUDA_SYMO_AUX=legacy|direct: Symo's first
    # packing kernels / views into the plan, against the default coalesced packing;
    # SYMOC_CUDA_SYMO_POLAR=ns: Newton-Schulz for exact-polar Symo plans).
    runs = (("muon", muon_lib, {}), ("symo", symo_lib, {}),
            ("symo, legacy aux", symo_lib, {"SYMOC_CUDA_SYMO_AUX": "legacy"}),
            ("symo, direct aux", symo_lib, {"SYMOC_CUDA_SYMO_AUX": "direct"}), ("auto", auto_lib, {}),
            ("symo, NS polar", symo_lib, {"SYMOC_CUDA_SYMO_POLAR": "ns"}))
    prof = os.environ.get("SYMOC_BENCH_PROFILE")
    if os.environ.get("SYMOC_BENCH_SHAMPOO") == "only":
        runs = ()
    for tag, path, env in runs:
        lib = load_library(path)
        named = params_of(lib, 3)
        os.environ.update(env)
        opt = SymocOptimizer(named, library=path, lr=1e-3)
        for k in env:
            os.environ.pop(k, None)
        attempt(rows, "symoc %s" % tag, lambda: timed(opt.step, a.warmup, it))
        attempt(rows, "symoc %s (graph)" % tag, lambda: timed(graphed(opt.step, 1), a.warmup, it))
        if prof and tag in ("muon", "symo", "symo, legacy aux", "symo, direct aux"):
            attempt(rows, "profile %s" % tag, lambda: profile_steps(opt.step, "symoc " + tag, prof))
            rows.pop("profile %s" % tag, None)
        del opt, named
        torch.cuda.empty_cache()
    if os.environ.get("SYMOC_BENCH_SHAMPOO", "1") == "0":
        return {"matrix_set": name, "ms": rows}
    root_err = {}
    variants = SHAMPOO_VARIANTS
    # SYMOC_BENCH_SHAMPOO_VARIANTS: a comma list of the labels to run ("eigh" for the first,
    # e.g. "eigh,per-matrix eigh"); default all.
    only = os.environ.get("SYMOC_BENCH_SHAMPOO_VARIANTS")
    if only:
        keep = {w.strip() for w in only.split(",")}
        variants = tuple(v for v in variants if (v[0].strip(" ()") or "eigh") in keep)
    runs_f = [(1, sh_lib), (10, sh10_lib)]
    # SYMOC_BENCH_SHAMPOO_F100: a library with precondition_frequency=100 on the same blocks
    # (tests/gpu/prepare.sh's gpt2small_shampoo_f100): the f = 100 rows too.
    if os.environ.get("SYMOC_BENCH_SHAMPOO_F100"):
        runs_f.append((100, os.environ["SYMOC_BENCH_SHAMPOO_F100"]))
    for f, path in runs_f:
        lib = load_library(path)
        named = params_of(lib, 4)
        nc = max(3, it // max(f, 3))
        for label, env in variants:
            if f != 1 and label in (" (newton roots, f64)", " (newton roots, 8 steps)"):
                continue
            key = "symoc shampoo%s f=%d" % (label, f)
            # The variant's environment through its timed steps: the backend reads some of it
            # when it makes a group, on the first step (SYMOC_CUDA_EIGH), not at construction.
            try:
                with environment(env):
                    opt = SymocOptimizer(named, library=path, lr=1e-3)
                    attempt(rows, key, lambda: cycles(opt.step, f, 1, nc))
            except Exception as e:  # noqa: BLE001 (reported, the benchmark goes on)
                print("%s: %s" % (key, str(e).splitlines()[0][:200]), flush=True)
                rows[key] = None
                continue
            if f == 1 and rows.get(key) is not None:
                try:
                    root_err[key] = summarize_errors(root_errors(opt, lib))
                    print("  root err %s: %s" % (key, json.dumps(root_err[key])), flush=True)
                except Exception as e:  # noqa: BLE001
                    print("  root err %s: %s: %s" % (key, type(e).__name__, str(e).splitlines()[0][:200]), flush=True)
            del opt
            torch.cuda.empty_cache()
        _ROOT_REFS.clear()
        ref = TorchShampoo(named, hyper(lib), 1e-3, f)
        attempt(rows, "torch eigh Shampoo f=%d" % f, lambda: cycles(ref.step, f, 1, nc))
        del ref, named
        torch.cuda.empty_cache()
    lib = load_library(sh_lib)
    flops = {str(i): newton_flops(lib, i) for i in (16, 12, 8)}
    return {"matrix_set": name, "ms": rows, "root_err": root_err, "newton_flops": flops}


def markdown_matrix(r):
    ms = r["ms"]
    fmt = lambda v: "-" if v is None else "%.3f" % v  # noqa: E731
    rat = lambda v, ref: "-" if v is None or not ref else "%.2fx" % (v / ref)  # noqa: E731
    out = ["**%s, matrix rules** (Symo eigh fp32, Shampoo fp32 on both sides; per-step medians; '-': refused or "
           "failed, see the log)" % r["matrix_set"], "",
           "| step | ms | ratio | reference |", "| --- | --- | --- | --- |"]
    mu = ms.get("symoc muon (graph)") or ms.get("symoc muon")
    for k in ("symoc muon", "symoc muon (graph)", "symoc symo", "symoc symo (graph)", "symoc symo, legacy aux",
              "symoc symo, legacy aux (graph)", "symoc symo, direct aux", "symoc symo, direct aux (graph)",
              "symoc auto", "symoc auto (graph)", "symoc symo, NS polar", "symoc symo, NS polar (graph)"):
        if k in ms:
            out.append("| %s | %s | %s | symoc muon (graph) |" % (k, fmt(ms.get(k)), rat(ms.get(k), mu)))
    for f in (1, 10, 100):
        if "symoc shampoo f=%d" % f not in ms:
            continue
        t = ms.get("torch eigh Shampoo f=%d" % f)
        for label, _ in SHAMPOO_VARIANTS:
            key = "symoc shampoo%s f=%d" % (label, f)
            if key in ms:
                s_ = ms.get(key)
                out.append("| symoc shampoo%s, refresh every %d | %s | %s | torch eigh Shampoo f=%d |"
                           % (label, f, fmt(s_), rat(s_, t), f))
        out.append("| torch eigh Shampoo, refresh every %d | %s | 1.00x | |" % (f, fmt(t)))
    fl = r.get("newton_flops")
    if fl:
        out.append("")
        for label, it in ((" (newton roots)", "16"), (" (newton roots, 8 steps)", "8"), (" (newton roots, tf32)", "16"),
                          (" (newton roots, f64)", "16"), (" (newton roots, f64 scaled, 12 steps)", "12")):
            v = ms.get("symoc shampoo%s f=1" % label)
            if v:
                out.append("* symoc shampoo%s f=1: %.3g TFLOP of Newton products a refresh (%s steps), %.1f TFLOP/s "
                           "over the whole step" % (label, fl[it] / 1e12, it, fl[it] / (v * 1e-3) / 1e12))
    errs = r.get("root_err", {})
    if errs:
        out += ["", "Roots in the state after the f = 1 runs vs the fp64 eigh root of the state's factor "
                "(relative Frobenius error, median / max per factor side):", ""]
        for key, per in errs.items():
            out.append("* %s: %s" % (key, ", ".join("n = %s: %.2e / %.2e (%d)" % (n, v["median"], v["max"], v["count"])
                                                   for n, v in per.items())))
    return "\n".join(out) + "\n"


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
            if ("adamw" in k.lower() or "adam-mini" in k) and "muon" not in k.lower():
                ratio = v / ta
                nb = r.get("adam_mini_bytes") if "adam-mini" in k else r["adamw_bytes"]
                note = "%.2f TB/s effective on %.2f GB (%.0f%% of copy)" % (nb / (v * 1e-3) / 1e12, nb / 1e9,
                                                                           100 * nb / (v * 1e-3) / bw)
            else:
                ratio = v / tm
                note = "%.2fx the NS5 bound" % (v / r["ns_bound_ms"])
            out.append("| %s | %.3f | %.2fx | %s |" % (k, v, ratio, note))
        out.append("")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--set", nargs=3, action="append", metavar=("NAME", "ADAMW_LIB", "MUON_LIB"), default=[])
    ap.add_argument("--matrix", nargs=6, action="append", default=[],
                    metavar=("NAME", "MUON_LIB", "SYMO_LIB", "AUTO_LIB", "SHAMPOO_LIB", "SHAMPOO_F10_LIB"))
    ap.add_argument("--adam-mini", nargs=2, action="append", default=[], metavar=("NAME", "LIB"),
                    help="the Adam-mini-policy library of the --set named NAME (rows next to torch fused AdamW)")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--variants", default=None, metavar="REGEX",
                    help="only the symoc muon variant rows whose label matches (default: all)")
    ap.add_argument("--out", default=".")
    a = ap.parse_args()
    device = torch.cuda.get_device_name(0)
    bw = copy_bandwidth(3, 10)
    res = []
    minis = dict(a.adam_mini)
    for name, la, lm in a.set:
        res.append(bench_set(name, la, lm, a, minis.get(name)))
        print(json.dumps(res[-1]), flush=True)
    mres = []
    for args in a.matrix:
        mres.append(bench_matrix(*args, a))
        print(json.dumps(mres[-1]), flush=True)
    md = markdown(res, bw, device) + "\n" + "\n".join(markdown_matrix(r) for r in mres)
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "bench_gpu.json"), "w") as f:
        json.dump({"device": device, "torch": torch.__version__, "copy_bw": bw, "sets": res, "matrix": mres}, f,
                  indent=1)
    with open(os.path.join(a.out, "bench_gpu.md"), "w") as f:
        f.write(md + "\n")
    print(md)


if __name__ == "__main__":
    main()
