#!/usr/bin/python3
"""Which part of the `symo` plan costs loss on the benchmark's LLaMA (issue 13)? CPU ablation.

    /usr/bin/python3 bench/train/diag_symo.py --corpus DIR [--model llama|gpt2] VARIANT@LR [VARIANT@LR ...]
        [--steps 250] [--jobs 2] [--seed 0] [--work /tmp/symodiag] [--width 1]

The benchmark's `Llama` (models.py) at a small size with the benchmark model's head structure
(12 query heads, 4 KV heads: 3 query heads per KV group), trained on the benchmark corpus
(DIR/{train,val}.bin, bench/train/corpus.py) on the CPU, 1 torch thread per run. Each variant
is a `symoc compile` plan (policy + overrides + options, VARIANTS below) linked against the
runtime (as bench.py smoke does) and run through symoc.torch; AdamW-stepped blocks get
lr x 0.1 (bench.py's --aux-ratio). Schedule: warm-up 5 % + cosine (bench.py's). Prints one
line per run: variant, lr, val loss at the end (VAL_BATCHES fixed batches) and at half-way.
"""
import argparse
import concurrent.futures as cf
import glob
import json
import math
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "python"))

CFGS = {"llama": dict(vocab=256, d=192, n_head=12, n_kv=4, d_ff=512, n_layer=2, t=128),
        "gpt2": dict(vocab=256, d=192, n_head=12, n_layer=2, t=128)}
BATCH, VAL_BATCHES, AUX = 8, 16, 0.1
NS = "symo,muon_scale=1,ns_steps=5"
V, O = "*.v_proj.weight", "*.o_proj.weight"

# name: (policy, overrides, extra compile args, {param glob: lr multiplier})
VARIANTS = {
    "muon": ("muon", [], [], {}),
    "symo": ("symo", [], [], {}),
    "symo-head": ("symo", [], ["--granularity", "head"], {}),
    # symo with whole-matrix Muon on V and O (the rest as symo)
    "symo-vo-muon": ("symo", [V + "=muon", O + "=muon"], [], {}),
    "symo-v-muon": ("symo", [V + "=muon"], [], {}),
    "symo-o-muon": ("symo", [O + "=muon"], [], {}),
    # Muon with only V per KV head / only O per KV group (the recipe's runs)
    "muon-v": ("muon", [V + "=" + NS], [], {}),
    "muon-o": ("muon", [O + "=" + NS], [], {}),
    "muon-vo": ("muon", [V + "=" + NS, O + "=" + NS], [], {}),
    # O per KV group with its per-run scale max(1, rows/cols)^1/2 undone (x 1/2 here: 192 x 48 runs)
    "muon-o-half": ("muon", [O + "=" + NS], [], {O: 0.5}),
    "symo-o-half": ("symo", [], [], {O: 0.5}),
    # at head-pair with 3 query heads per KV group the O pieces are single heads (192 x 16 runs,
    # per-run scale sqrt(12)); x 1/sqrt(12) gives the whole matrix's scale (1) back
    "symo-o-unscaled": ("symo", [], [], {O: 12 ** -0.5}),
    "muon-o-unscaled": ("muon", [O + "=" + NS], [], {O: 12 ** -0.5}),
    "symo-whole": ("symo", [], ["--granularity", "whole"], {}),
    # auto as screened in sessions 6-7 (AdamW embeddings): `--embedding adamw` pinned since
    # row embeddings became auto's default (session 8), so these variants keep their meaning
    "auto": ("auto", [], ["--embedding", "adamw"], {}),
    "auto-norm": ("auto-norm", [], ["--embedding", "adamw"], {}),
    # auto with the AdamW embedding / head at 3x the auxiliary lr (LLaMA names)
    # auto is Muon + NorMuon's line normalization since session 7; auto-plain the earlier rule
    "auto-plain": ("auto", [], ["--line-norm", "off", "--embedding", "adamw"], {}),
    "auto-emb3": ("auto", [], ["--embedding", "adamw"], {"embed_tokens.weight": 3.0}),
    "muon-emb3": ("muon", [], [], {"embed_tokens.weight": 3.0}),
    # the embedding row-normalized (Lau-Su `row`: each row of the momentum to unit norm), its
    # lr x sqrt(d) x {0.1, 0.3}: per-entry update RMS then matches AdamW at 1x / 3x the aux lr
    # (d of --width 1; with --width use auto-embrow, whose plan reads d from the model)
    "auto-embrow1": ("auto", ["embed_tokens.weight=lau-su:row"], [], {"embed_tokens.weight": 0.1 * CFGS["llama"]["d"] ** 0.5}),
    "auto-embrow3": ("auto", ["embed_tokens.weight=lau-su:row"], [], {"embed_tokens.weight": 0.3 * CFGS["llama"]["d"] ** 0.5}),
    # the same rule from the plan (`--embedding row`: lr_scale 0.3 sqrt(d) in the plan); on
    # GPT-2 it steps the untied position table wpe (the tied wte keeps AdamW)
    "auto-embrow": ("auto", [], ["--embedding", "row"], {}),
    "auto-head3": ("auto", [], ["--embedding", "adamw"], {"lm_head.weight": 3.0}),
    # Muon before Muon's README setup (issue 13, session 6): overridden blocks keep their
    # rule's defaults, AdamW betas (0.9, 0.999) and no decay on Muon blocks or vectors
    "muon-old": ("muon", ["*=adamw", "*_proj.weight=muon"], [], {}),
    "g-muon-old": ("muon", ["*=adamw", "*.c_attn.weight=muon", "*.c_proj.weight=muon",
                            "*.c_fc.weight=muon"], [], {}),
    "symo-matrix": ("symo", [], ["--granularity", "matrix"], {}),
    # O per KV group (192 x 48 runs, per-run scale 2) at the whole matrix's scale (x 1/2)
    "symo-matrix-o-unscaled": ("symo", [], ["--granularity", "matrix"], {O: 0.5}),
    # GPT-2 (--model gpt2): the recipe's blocks one at a time on top of Muon
    "g-muon-cattn": ("muon", ["*.attn.c_attn.weight=" + NS], [], {}),
    "g-muon-cproj": ("muon", ["*.attn.c_proj.weight=" + NS], [], {}),
    # attn c_proj per head pair (192 x 32 runs, per-run scale sqrt(6)) at the whole matrix's scale
    "g-muon-cproj-unscaled": ("muon", ["*.attn.c_proj.weight=" + NS], [], {"*.attn.c_proj.weight": 6 ** -0.5}),
    "g-muon-mlpS": ("muon", ["*.mlp.c_proj.weight=" + NS], [], {}),
    "g-symo-cproj-muon": ("symo", ["*.attn.c_proj.weight=muon"], [], {}),
    "g-symo-cproj-unscaled": ("symo", [], [], {"*.attn.c_proj.weight": 6 ** -0.5}),
    # symo with Muon on the blocks it steps as one whole-matrix run (q, k, gate, up, down):
    # the runtime's whole-matrix recipe step against Muon's
    "symo-rest-muon": ("symo", ["*.q_proj.weight=muon", "*.k_proj.weight=muon",
                                "*.gate_proj.weight=muon", "*.up_proj.weight=muon",
                                "*.down_proj.weight=muon"], [], {}),
}


def lib_for(args, name):
    import models
    gen = os.path.join(args.work, "gen", args.model, name)
    so = os.path.join(args.work, "lib_%s_%s.so" % (args.model, name.replace("-", "_")))
    if os.path.exists(so):
        return so
    onnx_path = os.path.join(args.work, "%s_diag.onnx" % args.model)
    if not os.path.exists(onnx_path):
        models.CONFIGS[args.model + "-diag"] = CFGS[args.model]
        models.export_onnx(args.model + "-diag", onnx_path)
    policy, ov, extra, _ = VARIANTS[name]
    cmd = [args.symoc, "compile", onnx_path, "--policy", policy, "--name", "llama_diag",
           "-o", gen] + extra
    for o in ov:
        cmd += ["--override", o]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    subprocess.run(cmd[:2] + [onnx_path, "--policy", policy, "--emit", "plan"] + cmd[9:],
                   check=True, stdout=open(os.path.join(args.work, "plan_%s_%s.txt" % (args.model, name)), "w"),
                   stderr=subprocess.DEVNULL)
    cpp = glob.glob(os.path.join(gen, "*_optimizer.cpp"))[0]
    subprocess.run(["g++", "-std=c++17", "-O2", "-fPIC", "-shared", "-fvisibility=hidden",
                    "-I", gen, "-I", os.path.join(ROOT, "runtime", "include"), cpp,
                    args.runtime_lib, "-Wl,--exclude-libs,ALL", *args.link.split(), "-o", so],
                   check=True)
    return so


def train(args, name, lr, lib):
    import fnmatch
    import torch
    import torch.nn.functional as F
    import models
    import corpus as corpus_mod
    from symoc.torch import SymocOptimizer
    torch.set_num_threads(1)
    data = {s: torch.frombuffer(bytearray(corpus_mod.load_split(args.corpus, s)),
                                dtype=torch.uint8) for s in ("train", "val")}
    torch.manual_seed(args.seed)
    cfg = CFGS[args.model]
    model = models.Llama(**cfg) if args.model == "llama" else models.GPT2(**cfg)
    models.set_attention(model, "math")
    named = list(model.named_parameters())
    opt = SymocOptimizer(named, library=lib, lr=lr)
    mult = VARIANTS[name][3]
    for pname, rule in opt.param_rules().items():
        m = AUX if rule.startswith("adam") else 1.0
        for pat, f in mult.items():
            if fnmatch.fnmatch(pname, pat):
                m *= f
        if m != 1.0:
            opt.set_block_multiplier(pname, m)
    t = cfg["t"]
    g = torch.Generator().manual_seed(1000 + args.seed)
    gv = torch.Generator().manual_seed(99)
    vstarts = torch.randint(0, len(data["val"]) - t - 1, (VAL_BATCHES, BATCH), generator=gv)

    def batch(d, starts):
        w = d[starts[:, None] + torch.arange(t + 1)[None, :]].long()
        return w[:, :-1], w[:, 1:]

    def loss_of(x, y):
        return F.cross_entropy(model(x).reshape(-1, cfg["vocab"]), y.reshape(-1))

    def evaluate():
        with torch.no_grad():
            return sum(loss_of(*batch(data["val"], r)).item() for r in vstarts) / VAL_BATCHES

    warm = max(1, round(args.steps * 0.05))
    curve = []
    t0 = time.time()
    for s in range(args.steps):
        f = min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * s / args.steps))
        for grp in opt.param_groups:
            grp["lr"] = lr * f
        x, y = batch(data["train"], torch.randint(0, len(data["train"]) - t - 1, (BATCH,),
                                                  generator=g))
        opt.zero_grad()
        loss = loss_of(x, y)
        loss.backward()
        opt.step()
        if not math.isfinite(loss.item()):
            break
        if s + 1 == args.steps // 2:
            curve.append((s + 1, evaluate()))
    curve.append((args.steps, evaluate()))
    return dict(model=args.model, variant=name, lr=lr, seed=args.seed, steps=args.steps, curve=curve,
                final=curve[-1][1], seconds=time.time() - t0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+", help="VARIANT@LR")
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--symoc", default=os.path.join(ROOT, "build", "bin", "symoc"))
    ap.add_argument("--runtime-lib", default=os.path.join(ROOT, "build", "runtime",
                                                          "libsymoc_runtime.a"))
    ap.add_argument("--link", default="-llapacke -lopenblas -fopenmp")
    ap.add_argument("--work", default="/tmp/symodiag")
    ap.add_argument("--steps", type=int, default=250)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", choices=sorted(CFGS), default="llama")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--width", type=int, default=1,
                    help="d and d_ff x this (heads kept: head size x this); use its own --work")
    args = ap.parse_args()
    for k in ("d", "d_ff"):
        if k in CFGS[args.model]:
            CFGS[args.model][k] *= args.width
    os.environ.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    os.makedirs(args.work, exist_ok=True)
    runs = [(r.split("@")[0], float(r.split("@")[1])) for r in args.runs]
    for n, _ in runs:
        if n not in VARIANTS:
            sys.exit("diag_symo.py: unknown variant %s" % n)
    libs = {n: lib_for(args, n) for n in dict.fromkeys(n for n, _ in runs)}
    out = os.path.join(args.work, "results.jsonl")
    with cf.ProcessPoolExecutor(args.jobs) as ex:
        futs = [ex.submit(train, args, n, lr, libs[n]) for n, lr in runs]
        for fu in futs:
            r = fu.result()
            with open(out, "a") as f:
                f.write(json.dumps(r) + "\n")
            print("%-5s %-16s lr %-6g seed %d  val@%d %.4f  val@%d %.4f  (%.0f s)" % (
                r["model"], r["variant"], r["lr"], r["seed"], r["curve"][0][0], r["curve"][0][1],
                r["steps"], r["final"], r["seconds"]), flush=True)


if __name__ == "__main__":
    main()
