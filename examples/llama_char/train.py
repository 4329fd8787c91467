#!/usr/bin/python3
"""Character-level LLaMA-style language model on the Python standard library's sources.

Usage:
  /usr/bin/python3 examples/llama_char/train.py export OUT.onnx
  /usr/bin/python3 examples/llama_char/train.py train --optimizer torch-adamw|symoc
        [--library LIB] [--lr LR] [--steps N] [--csv FILE] [--threads T]

Model: models/export_fixtures.py's Llama (RMSNorm, SwiGLU, RoPE rotate-half, GQA, untied
head) scaled to d 256, 4 layers, 8 query heads / 4 KV heads of 32, SwiGLU 688, context 128,
vocabulary = the 256 byte values (about 3.2 M parameters).
Data: every /usr/lib/python3.11/**/*.py file in sorted path order, concatenated (files
separated by a NUL byte); the first 90 % of the bytes are the training split, the rest
validation. Batches are random windows (fixed seed); validation is the mean loss on a fixed
set of windows. One run is a few minutes on 2 CPU cores.

`train --optimizer symoc --library out/<policy>/build/libllama_char_optimizer.so` steps with
a symoc-generated optimizer through symoc.torch; `torch-adamw` is torch.optim.AdamW.
"""
import argparse
import csv
import glob
import math
import os
import sys
import time

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "models"))
sys.path.insert(0, os.path.join(ROOT, "python"))
from export_fixtures import Llama  # noqa: E402

CONFIG = dict(vocab=256, d=256, n_head=8, n_kv=4, d_ff=688, n_layer=4, t=128)
BATCH = 16
VAL_WINDOWS = 64
CORPUS_GLOB = "/usr/lib/python3.11/**/*.py"


def build_model(seed=0):
    torch.manual_seed(seed)
    return Llama(**CONFIG)


def corpus_bytes():
    files = sorted(glob.glob(CORPUS_GLOB, recursive=True))
    if not files:
        sys.exit("train.py: no files match %s (the corpus is the Python 3.11 standard "
                 "library's sources; elsewhere pass --corpus FILE written by `train.py corpus`)"
                 % CORPUS_GLOB)
    return b"\0".join(open(f, "rb").read() for f in files), len(files)


def load_corpus(path=None):
    if path:
        with open(path, "rb") as f:
            data, nfiles = f.read(), -1
    else:
        data, nfiles = corpus_bytes()
    t = torch.frombuffer(bytearray(data), dtype=torch.uint8).long()
    cut = int(0.9 * len(t))
    return t[:cut], t[cut:], nfiles


def windows(data, starts, t):
    idx = starts[:, None] + torch.arange(t + 1)[None, :]
    w = data[idx]
    return w[:, :-1], w[:, 1:]


@torch.no_grad()
def evaluate(model, val, starts):
    model.eval()
    losses = []
    for i in range(0, len(starts), BATCH):
        x, y = windows(val, starts[i:i + BATCH], CONFIG["t"])
        logits = model(x)
        losses.append(F.cross_entropy(logits.reshape(-1, CONFIG["vocab"]), y.reshape(-1)).item())
    model.train()
    return sum(losses) / len(losses)


def export(path):
    model = build_model()
    x = torch.randint(0, CONFIG["vocab"], (2, CONFIG["t"]))
    torch.onnx.export(model, (x,), path, opset_version=14,
                      training=torch.onnx.TrainingMode.TRAINING, do_constant_folding=False,
                      export_params=True, keep_initializers_as_inputs=False,
                      input_names=["input_ids"], output_names=["logits"])
    n = sum(p.numel() for p in model.parameters())
    print("wrote %s (%d parameters)" % (path, n))


def train(args):
    torch.set_num_threads(args.threads)
    train_data, val_data, nfiles = load_corpus(args.corpus)
    model = build_model(args.seed)
    nparams = sum(p.numel() for p in model.parameters())
    if args.optimizer == "torch-adamw":
        # The same hyper-parameters as symoc's adamw step (torch's defaults; decay 0.01 on
        # matrices, none on norm gains), so the two curves are directly comparable.
        mats = [p for p in model.parameters() if p.dim() >= 2]
        vecs = [p for p in model.parameters() if p.dim() < 2]
        opt = torch.optim.AdamW([{"params": mats, "weight_decay": 0.01},
                                 {"params": vecs, "weight_decay": 0.0}], lr=args.lr)
        label = "torch-adamw"
    else:
        from symoc.torch import SymocOptimizer
        opt = SymocOptimizer(model.named_parameters(), library=args.library, lr=args.lr)
        label = "symoc-" + opt.policy
        if args.aux_lr:
            # Blocks the plan steps with Adam(W) (embeddings, head, norms under muon/lau-su)
            # get their own lr, as Muon is normally run: multiplier = aux_lr / lr.
            for name, rule in opt.param_rules().items():
                if rule.startswith("adam"):
                    opt.set_block_multiplier(name, args.aux_lr / args.lr)
        for spec in args.mult or []:   # per-block lr multipliers: GLOB=M (after --aux-lr)
            glob_, m = spec.rsplit("=", 1)
            opt.set_block_multiplier(glob_, float(m))
        print("# rules: " + ", ".join(sorted(set(opt.param_rules().values()))), flush=True)
    # Warm-up then cosine decay, the same schedule for every optimizer.
    warm = max(1, args.steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(s, args.steps) / args.steps)))
    g = torch.Generator().manual_seed(1234)
    val_starts = torch.randint(0, len(val_data) - CONFIG["t"] - 1, (VAL_WINDOWS,), generator=g)
    g_train = torch.Generator().manual_seed(4321 + args.seed)
    rows = []
    t0 = time.time()
    source = args.corpus if args.corpus else "%d files" % nfiles
    print("# %s lr %g: %d params, corpus %s, train %d / val %d bytes"
          % (label, args.lr, nparams, source, len(train_data), len(val_data)), flush=True)
    for step in range(args.steps + 1):
        if step % args.eval_every == 0 or step == args.steps:
            v = evaluate(model, val_data, val_starts)
            rows.append((step, v, time.time() - t0))
            print("step %4d  val %.4f  (%.0f s)" % (step, v, time.time() - t0), flush=True)
            if not math.isfinite(v):
                break
        if step == args.steps:
            break
        starts = torch.randint(0, len(train_data) - CONFIG["t"] - 1, (BATCH,), generator=g_train)
        x, y = windows(train_data, starts, CONFIG["t"])
        opt.zero_grad(set_to_none=False)
        loss = F.cross_entropy(model(x).reshape(-1, CONFIG["vocab"]), y.reshape(-1))
        loss.backward()
        opt.step()
        sched.step()
    if hasattr(opt, "steps_skipped") and opt.steps_skipped:
        print("# %d blocks skipped for non-finite gradients" % opt.steps_skipped)
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["step", "val_loss", "seconds"])
            w.writerows(rows)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export")
    e.add_argument("out")
    c = sub.add_parser("corpus", help="write the concatenated corpus to a file")
    c.add_argument("out")
    t = sub.add_parser("train")
    t.add_argument("--optimizer", choices=["torch-adamw", "symoc"], required=True)
    t.add_argument("--library")
    t.add_argument("--lr", type=float, default=3e-3)
    t.add_argument("--steps", type=int, default=300)
    t.add_argument("--eval-every", type=int, default=25)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--csv")
    t.add_argument("--corpus", help="corpus file from `train.py corpus` (default: read the sources)")
    t.add_argument("--aux-lr", type=float, default=0.0,
                   help="lr of the blocks a symoc plan steps with adam/adamw (0: same lr)")
    t.add_argument("--mult", action="append",
                   help="GLOB=M: lr multiplier M for the blocks matching GLOB (repeatable)")
    args = ap.parse_args()
    if args.cmd == "export":
        export(args.out)
    elif args.cmd == "corpus":
        data, n = corpus_bytes()
        with open(args.out, "wb") as f:
            f.write(data)
        print("wrote %s: %d files, %d bytes" % (args.out, n, len(data)))
    else:
        if args.optimizer == "symoc" and not args.library:
            ap.error("--optimizer symoc needs --library")
        train(args)


if __name__ == "__main__":
    main()
