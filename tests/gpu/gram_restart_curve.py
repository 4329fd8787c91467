#!/usr/bin/env python3
"""Does the Gram Newton-Schulz path need its restart? Training curves on one GPU (issue #12).

    python3 tests/gpu/gram_restart_curve.py --corpus corpus.bin --lib LLAMA25M_MUON_LIB
        [--steps 400] [--seeds 0 1] [--out DIR]

The 25 M-parameter char-LLaMA of tests/gpu/llama_char_gpu.py (d 512, FFN 1376: its MLP and
k/v matrices are wide enough, aspect >= 2, for the Gram path; the square q/o matrices take the
standard iteration) trained through symoc.torch with the muon policy (lr 0.02, AdamW blocks
at 3e-3, warm-up + cosine) for N steps, fp32 weights, TF32 off, under three settings of the
backend, read at create_cuda:
  restart 2   the default (SYMOC_CUDA_NS_GRAM_RESTART unset: X and R re-formed after step 2)
  no restart  SYMOC_CUDA_NS_GRAM_RESTART=0
  standard    SYMOC_CUDA_NS=standard (no Gram path: the bf16 iteration torch's Muon runs)
and each with every seed (model initialization and batches). Prints per setting and seed
the mean train loss of the last 10 % of steps and the validation loss, then the largest
difference between settings at a seed against the largest difference between seeds in a
setting (the noise floor). Writes DIR/gram_restart_curve.json. Exit 1 when a loss is not
finite.
"""
import argparse
import json
import math
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), "bench", "gpu"))
import llama_char_gpu as g  # noqa: E402  (examples/llama_char's model, batches, symoc_opt)
from bench_gpu import environment  # noqa: E402

SETTINGS = [("restart 2", {}), ("no restart", {"SYMOC_CUDA_NS_GRAM_RESTART": "0"}),
            ("standard", {"SYMOC_CUDA_NS": "standard"})]


def train(lib, env, seed, steps, train_data, val_data, bsz=32):
    dev = torch.device("cuda")
    config = g.LARGE
    model = g.build(config, seed, dev)
    with environment(env):  # read at create_cuda
        opt = g.symoc_opt(model, lib, "muon")
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    gen = torch.Generator().manual_seed(1000 + seed)
    losses = []
    for _ in range(steps):
        x, y = g.batch(train_data, gen, config, bsz, dev)
        opt.zero_grad(set_to_none=False)
        loss = g.loss_of(model, x, y, config["vocab"])
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    vg = torch.Generator().manual_seed(99)
    vals = []
    with torch.no_grad():
        for _ in range(8):
            x, y = g.batch(val_data, vg, config, bsz, dev)
            vals.append(g.loss_of(model, x, y, config["vocab"]).item())
    tail = losses[-max(1, steps // 10):]
    return dict(losses=losses, tail=sum(tail) / len(tail), val=sum(vals) / len(vals))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--lib", required=True, help="the 25M config's muon library")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    a = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    train_data, val_data, _ = g.ex.load_corpus(a.corpus)
    res = {}
    for name, env in SETTINGS:
        for seed in a.seeds:
            r = train(a.lib, env, seed, a.steps, train_data, val_data)
            res[(name, seed)] = r
            print("%-11s seed %d: last-10%% train loss %.4f, val loss %.4f" % (name, seed, r["tail"],
                                                                             r["val"]), flush=True)
    finite = all(math.isfinite(v) for r in res.values() for v in r["losses"] + [r["val"]])
    between_settings = {k: max(abs(res[(n, s)][k] - res[("restart 2", s)][k])
                               for n, _ in SETTINGS for s in a.seeds) for k in ("tail", "val")}
    between_seeds = {k: max(abs(res[(n, s)][k] - res[(n, a.seeds[0])][k])
                            for n, _ in SETTINGS for s in a.seeds) for k in ("tail", "val")}
    no_restart = {k: max(abs(res[("no restart", s)][k] - res[("restart 2", s)][k]) for s in a.seeds)
                  for k in ("tail", "val")}
    print("largest |no restart - restart 2| at a seed: train %.4f, val %.4f" % (no_restart["tail"],
                                                                               no_restart["val"]))
    print("largest |setting - restart 2| at a seed:    train %.4f, val %.4f"
          % (between_settings["tail"], between_settings["val"]))
    print("largest |seed - seed %d| in a setting:       train %.4f, val %.4f (noise floor)"
          % (a.seeds[0], between_seeds["tail"], between_seeds["val"]))
    print("all losses finite: %s" % finite)
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "gram_restart_curve.json"), "w") as f:
        json.dump({"device": torch.cuda.get_device_name(), "torch": torch.__version__,
                   "steps": a.steps, "config": g.LARGE,
                   "runs": [dict(setting=n, seed=s, **r) for (n, s), r in res.items()],
                   "no_restart_vs_restart2": no_restart, "settings_vs_restart2": between_settings,
                   "seeds_noise": between_seeds, "finite": finite}, f)
    return 0 if finite else 1


if __name__ == "__main__":
    sys.exit(main())
