#!/usr/bin/env python3
"""End to end on a GPU (issue #12): examples/llama_char trained through symoc.torch on CUDA.

    python3 tests/gpu/llama_char_gpu.py --corpus corpus.bin --lib adamw=LIB --lib muon=LIB
        [--lib25 adamw=LIB --lib25 muon=LIB] [--steps 300] [--out DIR] [--cpu-threads 8]

1. curve: for each policy (adamw lr 2e-3; muon lr 0.02 with adam(w) blocks at 3e-3, the
   example's best settings), N training steps with seed 0 on the GPU (fp32, TF32 off) and the
   same N steps on the CPU (a subprocess started first, running alongside); the same initial
   weights, batches and lr schedule (warm-up + cosine, as train.py). Reports the largest
   |train loss GPU - CPU| over the steps and the final validation losses. Tolerance:
   every step within 0.05 nats and the final validation loss within 1 % (fp32 elementwise
   rules are bit-identical to the CPU; Muon's Newton-Schulz is bf16 on the GPU and fp32 on
   the CPU, and fp32 GEMMs differ in summation order, so the curves drift apart slowly).
2. time: whole training step (zero_grad + forward + loss + backward + optimizer step),
   median of CUDA-event timings after warm-up (symoc: zero_grad(set_to_none=False), so
   its bridge takes the fast path; torch: its default set_to_none=True), for symoc adamw, symoc
   muon (each also with SYMOC_CUDA_GRAPH=0, and muon with set_to_none=True; every symoc row
   counts the backend's automatic-graph captures from SYMOC_CUDA_GRAPH=log), torch AdamW
   (fused=True) and torch.optim.Muon (hidden matrices) + AdamW fused (embedding, head,
   norms, as torch's Muon documentation says), on the example's config (3.0 M parameters,
   batch 16 x 128) and, with --lib25, a 25 M-parameter config of the same model (d 512,
   8 layers, FFN 1376, batch 32 x 256).
Writes DIR/llama_char_gpu.json (+ per-step CSVs) and prints tables last. Exit 1 when a
curve check failed.
"""
import argparse
import csv
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "examples", "llama_char"))
sys.path.insert(0, os.path.join(ROOT, "python"))
import train as ex  # noqa: E402  examples/llama_char/train.py

SMALL = dict(ex.CONFIG)
LARGE = dict(vocab=256, d=512, n_head=8, n_kv=4, d_ff=1376, n_layer=8, t=256)
POLICY_LR = {"adamw": (2e-3, 0.0), "muon": (0.02, 3e-3)}
TOL_STEP, TOL_VAL = 0.05, 0.01


def build(config, seed, dev):
    torch.manual_seed(seed)
    model = ex.Llama(**config)
    model.to(dev)
    for m in model.modules():   # RoPE tables and the causal mask are plain attributes
        for a in ("cos", "sin", "mask"):
            if isinstance(getattr(m, a, None), torch.Tensor):
                setattr(m, a, getattr(m, a).to(dev))
    return model


def symoc_opt(model, lib, policy):
    from symoc.torch import SymocOptimizer
    lr, aux = POLICY_LR[policy]
    opt = SymocOptimizer(model.named_parameters(), library=lib, lr=lr)
    if aux:
        for name, rule in opt.param_rules().items():
            if rule.startswith("adam"):
                opt.set_block_multiplier(name, aux / lr)
    return opt


def symoc_opt_graph(model, lib, policy, mode="log"):
    """symoc_opt with SYMOC_CUDA_GRAPH=mode (read at create_cuda): "log" (the default
    behaviour, plus one stderr line per capture, counted by time_steps), or "0" (the backend's
    automatic CUDA graphs off: every step launches its kernels from the host)."""
    os.environ["SYMOC_CUDA_GRAPH"] = mode
    try:
        return symoc_opt(model, lib, policy)
    finally:
        del os.environ["SYMOC_CUDA_GRAPH"]


def batch(data, g, config, bsz, dev):
    starts = torch.randint(0, len(data) - config["t"] - 1, (bsz,), generator=g)
    x, y = ex.windows(data, starts, config["t"])
    return x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)


def loss_of(model, x, y, vocab):
    return F.cross_entropy(model(x).reshape(-1, vocab), y.reshape(-1))


def curve(args, policy, lib, dev):
    """N steps of train.py's loop on DEV; per-step train loss and final val loss."""
    torch.set_num_threads(args.cpu_threads)
    train_data, val_data, _ = ex.load_corpus(args.corpus)
    model = build(SMALL, 0, dev)
    opt = symoc_opt(model, lib, policy)
    steps = args.steps
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    g = torch.Generator().manual_seed(1234)
    val_starts = torch.randint(0, len(val_data) - SMALL["t"] - 1, (ex.VAL_WINDOWS,), generator=g)
    g_train = torch.Generator().manual_seed(4321)
    losses = []
    t0 = time.time()
    for _ in range(steps):
        x, y = batch(train_data, g_train, SMALL, ex.BATCH, dev)
        opt.zero_grad(set_to_none=False)
        loss = loss_of(model, x, y, SMALL["vocab"])
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    with torch.no_grad():
        vals = []
        for i in range(0, len(val_starts), ex.BATCH):
            x, y = ex.windows(val_data, val_starts[i:i + ex.BATCH], SMALL["t"])
            vals.append(loss_of(model, x.to(dev), y.to(dev), SMALL["vocab"]).item())
    return dict(losses=losses, val=sum(vals) / len(vals), seconds=round(time.time() - t0, 1),
                rules=sorted(set(opt.param_rules().values())))


def time_steps(config, bsz, make_opt, warmup, iters, data, to_none=None):
    dev = torch.device("cuda")
    model = build(config, 0, dev)
    opt = make_opt(model)
    # symoc: gradients kept between steps (its bridge then skips the per-tensor checks: same
    # pointers as the step before); torch: its default, gradients freed (set_to_none).
    if to_none is None:
        to_none = type(opt).__name__ != "SymocOptimizer"
    g = torch.Generator().manual_seed(7)
    xs = [batch(data, g, config, bsz, dev) for _ in range(4)]
    ev = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
          for _ in range(iters)]
    # The runtime's stderr (fd 2) into a file while stepping: SYMOC_CUDA_GRAPH=log's capture
    # lines say whether the automatic graphs replayed (other lines are passed on after).
    log = tempfile.TemporaryFile(mode="w+")
    sys.stderr.flush()
    saved = os.dup(2)
    os.dup2(log.fileno(), 2)
    try:
        for i in range(warmup + iters):
            x, y = xs[i % len(xs)]
            if i >= warmup:
                ev[i - warmup][0].record()
            opt.zero_grad(set_to_none=to_none)
            loss_of(model, x, y, config["vocab"]).backward()
            opt.step()
            if i >= warmup:
                ev[i - warmup][1].record()
        torch.cuda.synchronize()
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
    log.seek(0)
    lines = log.read().splitlines()
    log.close()
    captures = sum("step captured in a CUDA graph" in ln for ln in lines)
    for ln in lines:
        if not ln.startswith("symoc: "):
            print(ln, file=sys.stderr)
    ms = [a.elapsed_time(b) for a, b in ev]
    last = loss_of(model, *xs[0], config["vocab"]).item()
    return statistics.median(ms), last, captures


def torch_adamw(model):
    mats = [p for p in model.parameters() if p.dim() >= 2]
    vecs = [p for p in model.parameters() if p.dim() < 2]
    return torch.optim.AdamW([{"params": mats, "weight_decay": 0.01},
                              {"params": vecs, "weight_decay": 0.0}], lr=2e-3, fused=True)


class Combined(torch.optim.Optimizer):
    """torch.optim.Muon on the hidden matrices + AdamW(fused) on the rest, stepped together."""

    def __init__(self, opts):
        self.opts = opts
        self.param_groups = [g for o in opts for g in o.param_groups]
        self.defaults, self.state = {}, {}

    def zero_grad(self, set_to_none=True):
        for o in self.opts:
            o.zero_grad(set_to_none=set_to_none)

    def step(self, closure=None):
        for o in self.opts:
            o.step()


def torch_muon(model):
    hidden = [p for n, p in model.named_parameters()
              if p.dim() == 2 and not n.startswith(("embed_tokens", "lm_head"))]
    ids = {id(p) for p in hidden}
    rest = [p for p in model.parameters() if id(p) not in ids]
    return Combined([torch.optim.Muon(hidden, lr=0.02, weight_decay=0.01, momentum=0.95,
                                      nesterov=True),
                     torch.optim.AdamW(rest, lr=3e-3, weight_decay=0.0, fused=True)])


def timing(args, libs, config, bsz, label, data):
    rows = []
    cases = [("symoc adamw", lambda m: symoc_opt_graph(m, libs["adamw"], "adamw")),
             ("symoc muon", lambda m: symoc_opt_graph(m, libs["muon"], "muon")),
             ("symoc adamw, no auto graph", lambda m: symoc_opt_graph(m, libs["adamw"], "adamw", "0")),
             ("symoc muon, no auto graph", lambda m: symoc_opt_graph(m, libs["muon"], "muon", "0")),
             # torch's default zero_grad: new gradient tensors every step (the caching allocator
             # usually hands back the same blocks, so the automatic graphs still replay; the
             # row's graph_captures says how many keys were captured)
             ("symoc muon, set_to_none", lambda m: symoc_opt_graph(m, libs["muon"], "muon"), True),
             ("torch AdamW fused", torch_adamw),
             ("torch Muon + AdamW fused", torch_muon)]
    n = sum(p.numel() for p in ex.Llama(**config).parameters())
    for name, mk, *to_none in cases:
        try:
            ms, last, captures = time_steps(config, bsz, mk, args.warmup, args.iters, data, *to_none)
            rows.append(dict(config=label, params=n, batch=bsz, step=name, ms=round(ms, 3),
                             loss_after=round(last, 3), graph_captures=captures))
        except Exception as e:  # one failure must not hide the other rows
            rows.append(dict(config=label, params=n, batch=bsz, step=name, ms=None,
                             error="%s: %s" % (type(e).__name__, str(e)[:300])))
        print(json.dumps(rows[-1]), flush=True)
    ref = next((r["ms"] for r in rows if r["step"] == "torch AdamW fused"), None)
    for r in rows:
        r["vs_torch_adamw"] = round(r["ms"] / ref, 3) if r["ms"] and ref else None
    return rows


def parse_libs(items):
    out = {}
    for it in items or []:
        k, v = it.split("=", 1)
        out[k] = v
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--lib", action="append", help="POLICY=LIB for the example's config")
    ap.add_argument("--lib25", action="append", help="POLICY=LIB for the 25M config")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--cpu-threads", type=int, default=8)
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    ap.add_argument("--only", choices=["curve", "time"])
    ap.add_argument("--cpu-curve", metavar="POLICY", help=argparse.SUPPRESS)  # the subprocess
    a = ap.parse_args()
    libs = parse_libs(a.lib)
    if a.cpu_curve:
        r = curve(a, a.cpu_curve, libs[a.cpu_curve], torch.device("cpu"))
        json.dump(r, open(os.path.join(a.out, "curve_cpu_%s.json" % a.cpu_curve), "w"))
        return 0
    os.makedirs(a.out, exist_ok=True)
    cuda = torch.cuda.is_available()
    print("torch %s, device %s" % (torch.__version__,
          torch.cuda.get_device_name(0) if cuda else "cpu only"), flush=True)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    result = dict(torch=torch.__version__, device=torch.cuda.get_device_name(0) if cuda else None,
                  steps=a.steps, tol_step=TOL_STEP, tol_val=TOL_VAL, curves={}, timing=[])
    ok = True
    if a.only in (None, "curve"):
        policies = [p for p in ("adamw", "muon") if p in libs]
        env = dict(os.environ, OMP_NUM_THREADS=str(a.cpu_threads),
                   OPENBLAS_NUM_THREADS=str(a.cpu_threads))
        procs = {p: subprocess.Popen([sys.executable, os.path.abspath(__file__), "--corpus",
                                      a.corpus, "--lib", "%s=%s" % (p, libs[p]), "--steps",
                                      str(a.steps), "--cpu-threads", str(a.cpu_threads),
                                      "--out", a.out, "--cpu-curve", p], env=env)
                 for p in policies}
        dev = torch.device("cuda" if cuda else "cpu")
        for p in policies:
            try:
                gpu = curve(a, p, libs[p], dev)
                procs[p].wait()
                cpu = json.load(open(os.path.join(a.out, "curve_cpu_%s.json" % p)))
                diffs = [abs(x - y) for x, y in zip(gpu["losses"], cpu["losses"])]
                worst = max(range(len(diffs)), key=diffs.__getitem__)
                rel_val = abs(gpu["val"] - cpu["val"]) / cpu["val"]
                passed = (len(diffs) == a.steps and diffs[worst] <= TOL_STEP
                          and rel_val <= TOL_VAL and all(map(math.isfinite, gpu["losses"])))
                ok &= passed
                c = dict(ok=passed, device=str(dev), max_abs_diff=round(diffs[worst], 5),
                         at_step=worst + 1, mean_abs_diff=round(sum(diffs) / len(diffs), 5),
                         first_loss=round(gpu["losses"][0], 4),
                         last_loss_gpu=round(gpu["losses"][-1], 4),
                         last_loss_cpu=round(cpu["losses"][-1], 4),
                         val_gpu=round(gpu["val"], 4), val_cpu=round(cpu["val"], 4),
                         val_rel_diff=round(rel_val, 5), gpu_s=gpu["seconds"],
                         cpu_s=cpu["seconds"], rules=gpu["rules"])
                with open(os.path.join(a.out, "curve_%s.csv" % p), "w", newline="") as f:
                    w = csv.writer(f)
                    w.writerow(["step", "train_loss_gpu", "train_loss_cpu"])
                    w.writerows((i + 1, x, y) for i, (x, y) in
                                enumerate(zip(gpu["losses"], cpu["losses"])))
            except Exception as e:
                ok = False
                c = dict(ok=False, error="%s: %s" % (type(e).__name__, str(e)[:400]))
            result["curves"][p] = c
            print("curve %s: %s" % (p, json.dumps(c)), flush=True)
    if a.only in (None, "time") and cuda:
        train_data, _, _ = ex.load_corpus(a.corpus)
        result["timing"] += timing(a, libs, SMALL, ex.BATCH, "example (3.0M)", train_data)
        if a.lib25:
            result["timing"] += timing(a, parse_libs(a.lib25), LARGE, 32, "25M", train_data)
    with open(os.path.join(a.out, "llama_char_gpu.json"), "w") as f:
        json.dump(result, f, indent=1)
    print("\n| policy | max abs train-loss diff (step) | mean | val GPU | val CPU | rel | ok |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for p, c in result["curves"].items():
        if "error" in c:
            print("| %s | error: %s | | | | | no |" % (p, c["error"][:200]))
        else:
            print("| %s | %.4f (%d) | %.4f | %.4f | %.4f | %.4f | %s |" % (
                p, c["max_abs_diff"], c["at_step"], c["mean_abs_diff"], c["val_gpu"],
                c["val_cpu"], c["val_rel_diff"], "yes" if c["ok"] else "NO"))
    print("\n| config | step | ms (median) | vs torch AdamW fused | graph captures |")
    print("| --- | --- | --- | --- | --- |")
    for r in result["timing"]:
        print("| %s, batch %d | %s | %s | %s | %s |" % (
            r["config"], r["batch"], r["step"], r["ms"] if r["ms"] is not None else
            "error: " + r.get("error", "")[:150], r["vs_torch_adamw"],
            r["graph_captures"] if r["step"].startswith("symoc") and "graph_captures" in r else ""))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
