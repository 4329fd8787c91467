#!/usr/bin/python3
"""Learning-rate grids and seeds for policy variants on the char-level LLaMA (issue 13).

  /usr/bin/python3 examples/llama_char/sweep.py --symoc build/bin/symoc \\
      --grid muon:0.01,0.02,0.04 --grid auto:0.01,0.02,0.04 [--seeds 0] [--steps 200] \\
      [--jobs 2] [--work out/llama_char]
  /usr/bin/python3 examples/llama_char/sweep.py --table      # table + JSON of what exists

Each variant (VARIANTS below: a policy, overrides, compile options, lr multipliers) is
compiled with `symoc compile` into WORK/sweep/gen/<variant>/, built, and trained with
train.py at every lr of its grid and every seed (runs already on disk are kept:
WORK/sweep/runs/<variant>@<lr>#s<seed>.csv). --table prints, per variant, the final
validation loss at each lr (seed 0), the best lr, and mean +- sd over the seeds run at that
lr; it writes WORK/sweep/summary.json. The data set, model, schedule (warm-up 5 % then
cosine to 0) and evaluation are train.py's. Needs run.py's `prepare` inputs
(WORK/llama_char.onnx, WORK/corpus.bin); they are made here when missing.
"""
import argparse
import concurrent.futures as cf
import csv
import glob
import json
import math
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "python"))
from symoc.build import build_library, compile_model  # noqa: E402

AUX_LR = 3e-3   # lr of the blocks a plan steps with adam(w) (embedding, head, gains), as for Muon
CE = ["--loss", "cross-entropy"]   # the logit-shift claim on the untied head
NS = "symo,muon_scale=1,ns_steps=5"   # the recipe with Muon's quintic and Muon's scale
ATT = ["*.q_proj.weight", "*.k_proj.weight", "*.v_proj.weight", "*.o_proj.weight",
       "*.gate_proj.weight"]

# name: (policy, overrides, extra compile args, lr multipliers GLOB=M applied after AUX_LR)
VARIANTS = {
    "muon": ("muon", [], [], []),
    "ddc-muon": ("ddc-muon", [], [], []),
    # auto as committed before this sweep: exact polar, per-KV-head V / per-KV-group O,
    # centred row-norm head (shift claim), Muon + SwiGLU gauge on up/down
    "auto-exact": ("auto", ["%s=symo,muon_scale=1" % g for g in ATT], CE, []),
    "auto-exact-adamhead": ("auto", ["%s=symo,muon_scale=1" % g for g in ATT] + ["lm_head.weight=adamw"], CE, []),
    # NS5 in place of the exact polar, head AdamW
    "auto-ns-adamhead": ("auto", ["%s=%s" % (g, NS) for g in ATT] + ["lm_head.weight=adamw"], CE, []),
    "auto-ns": ("auto", ["%s=%s" % (g, NS) for g in ATT], CE, []),
    # the policies as committed after this sweep (their defaults, no overrides)
    "auto2": ("auto", [], CE, []),
    "symo2": ("symo", [], [], []),
    # symo policy variants
    "symo": ("symo", [], [], []),
    "symo-ns": ("symo", ["*_proj.weight=symo,ns_steps=5"], [], []),
    "symo-ns-ms": ("symo", ["*_proj.weight=" + NS], [], []),
    "symo-ns-ms-head": ("symo", ["*_proj.weight=" + NS], ["--granularity", "head"], []),
    # single factors on top of Muon
    "muon-chead": ("muon", ["lm_head.weight=lau-su:centered_row,nesterov=1"], CE, ["lm_head.weight=2.4"]),
    "muon-rowemb": ("muon", ["embed_tokens.weight=lau-su:row,nesterov=1"], [], ["embed_tokens.weight=2.4"]),
    "muon-pervo": ("muon", ["*.v_proj.weight=" + NS, "*.o_proj.weight=" + NS], [], []),
}


def work_paths(work):
    return os.path.join(work, "sweep", "gen"), os.path.join(work, "sweep", "runs")


def prepare_inputs(work):
    onnx_path, corpus = os.path.join(work, "llama_char.onnx"), os.path.join(work, "corpus.bin")
    train_py = os.path.join(HERE, "train.py")
    os.makedirs(work, exist_ok=True)
    if not os.path.exists(onnx_path):
        subprocess.run([sys.executable, train_py, "export", onnx_path], check=True)
    if not os.path.exists(corpus):
        subprocess.run([sys.executable, train_py, "corpus", corpus], check=True)
    return onnx_path, corpus


def library(symoc, work, onnx_path, name):
    gen, _ = work_paths(work)
    out = os.path.join(gen, name)
    found = glob.glob(os.path.join(out, "build", "lib*_optimizer.so"))
    if found:
        return found[0]
    policy, overrides, extra, _ = VARIANTS[name]
    compile_model(symoc, onnx_path, out, policy, overrides, extra=["--name", "llama_char"] + extra)
    return build_library(out, jobs=2, runtime_dir=os.path.join(ROOT, "runtime"))


def run_name(name, lr, seed):
    return "%s@%g#s%d" % (name, lr, seed)


def final_loss(path):
    with open(path) as f:
        rows = list(csv.DictReader(f))
    return float(rows[-1]["val_loss"]), int(rows[-1]["step"]), rows


def train_one(args, work, corpus, lib, name, lr, seed):
    _, runs = work_paths(work)
    base = os.path.join(runs, run_name(name, lr, seed))
    cmd = [args.python, os.path.join(HERE, "train.py"), "train", "--optimizer", "symoc", "--library", lib,
           "--lr", repr(lr), "--aux-lr", repr(AUX_LR), "--seed", str(seed), "--steps", str(args.steps),
           "--eval-every", str(args.eval_every), "--threads", str(args.threads), "--corpus", corpus,
           "--csv", base + ".csv.tmp"]
    for m in VARIANTS[name][3]:
        cmd += ["--mult", m]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), OPENBLAS_NUM_THREADS=str(args.threads),
               PYTHONUNBUFFERED="1")
    t0 = time.time()
    with open(base + ".log", "w") as log:
        rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env).returncode
    if rc == 0 and os.path.exists(base + ".csv.tmp"):
        os.replace(base + ".csv.tmp", base + ".csv")
        v, step, _ = final_loss(base + ".csv")
        return "%-28s val@%d %.4f (%.0f s)" % (run_name(name, lr, seed), step, v, time.time() - t0)
    return "%-28s FAILED rc %d (see %s.log)" % (run_name(name, lr, seed), rc, base)


def table(work, steps):
    _, runs = work_paths(work)
    res = {}
    for path in sorted(glob.glob(os.path.join(runs, "*.csv"))):
        stem = os.path.basename(path)[:-4]
        name, rest = stem.split("@")
        lr, seed = rest.split("#s")
        v, step, rows = final_loss(path)
        if step != steps:
            continue
        res.setdefault(name, {}).setdefault(float(lr), {})[int(seed)] = {
            "final": v, "curve": [(int(r["step"]), float(r["val_loss"])) for r in rows]}
    out = {"steps": steps, "aux_lr": AUX_LR, "variants": {}}
    lines = ["| variant | policy, overrides, options | val@%d at each lr (seed 0) | best lr | seeds | mean +- sd |" % steps,
             "| --- | --- | --- | --- | --- | --- |"]
    order = [n for n in VARIANTS if n in res] + [n for n in res if n not in VARIANTS]
    for name in order:
        by_lr = res[name]
        s0 = {lr: d[0]["final"] for lr, d in by_lr.items() if 0 in d and math.isfinite(d[0]["final"])}
        if not s0:
            continue
        best = min(s0, key=s0.get)
        finals = [d["final"] for _, d in sorted(by_lr[best].items())]
        sd = statistics.stdev(finals) if len(finals) > 1 else float("nan")
        mean = statistics.mean(finals)
        pol, ov, ex, mult = VARIANTS.get(name, ("?", [], [], []))
        desc = " ".join([pol] + ["`%s`" % o for o in ov] + ex + ["x%s" % m for m in mult])
        grid = " / ".join(("**%.4f**" if lr == best else "%.4f") % s0[lr] + " (%g)" % lr for lr in sorted(s0))
        lines.append("| %s | %s | %s | %g | %s | %.4f +- %s |" % (
            name, desc, grid, best, ",".join(str(s) for s in sorted(by_lr[best])), mean,
            "%.4f" % sd if len(finals) > 1 else "-"))
        out["variants"][name] = {"policy": pol, "overrides": ov, "options": ex, "multipliers": mult,
                                 "grid_seed0": {repr(k): v for k, v in sorted(s0.items())}, "best_lr": best,
                                 "finals_at_best": finals, "mean": mean, "sd": sd if len(finals) > 1 else None,
                                 "curves": {repr(lr): {str(s): d["curve"] for s, d in ds.items()}
                                            for lr, ds in by_lr.items()}}
    print("\n".join(lines))
    with open(os.path.join(work, "sweep", "summary.json"), "w") as f:
        json.dump(out, f, indent=1)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--symoc", default=os.path.join(ROOT, "build", "bin", "symoc"))
    ap.add_argument("--work", default=os.path.join(ROOT, "out", "llama_char"))
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--grid", action="append", default=[], help="VARIANT:LR,LR,...")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--eval-every", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--jobs", type=int, default=2, help="runs at once")
    ap.add_argument("--table", action="store_true", help="only print the table of the runs on disk")
    args = ap.parse_args()
    work = os.path.abspath(args.work)
    if not args.table:
        onnx_path, corpus = prepare_inputs(work)
        os.makedirs(work_paths(work)[1], exist_ok=True)
        jobs = []
        for spec in args.grid:
            name, lrs = spec.split(":")
            if name not in VARIANTS:
                sys.exit("sweep.py: unknown variant %s (one of %s)" % (name, ", ".join(VARIANTS)))
            lib = library(args.symoc, work, onnx_path, name)
            for seed in [int(s) for s in args.seeds.split(",")]:
                for lr in [float(x) for x in lrs.split(",")]:
                    if not os.path.exists(os.path.join(work_paths(work)[1], run_name(name, lr, seed) + ".csv")):
                        jobs.append((lib, name, lr, seed))
        print("%d runs, %d at once" % (len(jobs), args.jobs), flush=True)
        with cf.ThreadPoolExecutor(args.jobs) as ex:
            for line in ex.map(lambda j: train_one(args, work, corpus, *j), jobs):
                print(line, flush=True)
    table(work, args.steps)


if __name__ == "__main__":
    main()
