#!/usr/bin/python3
"""Char-level LLaMA comparison: compile the model for each policy, then train with each.

  # here (needs the symoc tool): export the model, write the corpus, generate the sources
  /usr/bin/python3 examples/llama_char/run.py prepare --symoc BUILD/bin/symoc [--work DIR]
  # anywhere with torch, cmake and a C++ compiler (CPU): build the libraries, then train
  # every run in parallel, T threads each
  PYTHON examples/llama_char/run.py train [--work DIR] [--python PY] [--threads T]
        [--steps N] [--only NAME,...] [--runs NAME:POLICY:LR[:AUX_LR] ...]

WORK defaults to out/llama_char. `prepare` writes WORK/llama_char.onnx, WORK/corpus.bin and
WORK/gen/<policy>/ (generated sources); `train` builds WORK/gen/<policy>/build/ and writes
WORK/runs/<name>.csv and WORK/runs/<name>.log.
"""
import argparse
import glob
import concurrent.futures as cf
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

POLICIES = ["adamw", "muon", "lau-su", "symo", "ddc-adam", "symo-mlp", "auto"]
# Variants: generated-library name -> (policy, overrides). symo-mlp averages the SwiGLU
# matrices over the hidden (688) space only (S x 1 / B x 1 / 1 x B) instead of the B x B
# (normalized SGD) and S x B that the symo policy picks for them.
VARIANTS = {
    "symo-mlp": ("symo", ["*.mlp.gate_proj.weight=symo:Sx1", "*.mlp.up_proj.weight=symo:Bx1",
                          "*.mlp.down_proj.weight=symo:1xB"]),
}
# name: (policy or "torch-adamw", lr, aux lr for the plan's adam(w) blocks, 0 = same lr).
# The learning rates are the best of the sweeps in docs/results.md. Those sweeps predate the
# Symo transformer recipe (symo now steps per piece with Muon's momentum and the Symo scale
# sqrt(d)): the symo entry is the old plan's lr, and auto has none yet (pass --runs).
# symo-mlp pins explicit whole-axis groups (symo:LxR), which keep the old EMA step.
RUNS = {
    "torch-adamw": ("torch-adamw", 2e-3, 0.0),
    "adamw": ("adamw", 2e-3, 0.0),
    "ddc-adam": ("ddc-adam", 2e-3, 0.0),
    "muon": ("muon", 0.02, 3e-3),
    "lau-su": ("lau-su", 0.02, 3e-3),
    "symo": ("symo", 2e-3, 0.0),
    "symo-mlp": ("symo-mlp", 4e-3, 0.0),
}


sys.path.insert(0, os.path.join(ROOT, "python"))
from symoc.build import build_library, compile_model  # noqa: E402


def prepare(args):
    work = os.path.abspath(args.work)
    train_py = os.path.join(HERE, "train.py")
    onnx_path = os.path.join(work, "llama_char.onnx")
    if not os.path.exists(onnx_path):
        subprocess.run([sys.executable, train_py, "export", onnx_path], check=True)
    if not os.path.exists(os.path.join(work, "corpus.bin")):
        subprocess.run([sys.executable, train_py, "corpus", os.path.join(work, "corpus.bin")],
                       check=True)
    for p in args.policies.split(","):
        out = os.path.join(work, "gen", p)
        policy, overrides = VARIANTS.get(p, (p, []))
        compile_model(args.symoc, onnx_path, out, policy, overrides, extra=["--name", "llama_char"])
        print("generated", p, flush=True)


def train(args):
    work = os.path.abspath(args.work)
    runs = dict(RUNS)
    for spec in args.runs or []:
        parts = spec.split(":")
        runs[parts[0]] = (parts[1], float(parts[2]), float(parts[3]) if len(parts) > 3 else 0.0)
    names = args.only.split(",") if args.only else list(runs)
    t_build = time.time()
    policies = sorted({runs[n][0] for n in names} - {"torch-adamw"})
    if args.no_build:   # libraries built by an earlier call
        libs = {}
        for p in policies:
            found = glob.glob(os.path.join(work, "gen", p, "build", "lib*_optimizer.so"))
            if not found:
                sys.exit("run.py: --no-build but %s has no built library (run once without "
                         "--no-build)" % os.path.join(work, "gen", p))
            libs[p] = found[0]
    else:
        with cf.ThreadPoolExecutor(max(1, args.jobs // 2)) as ex:   # built in parallel
            futs = {p: ex.submit(build_library, os.path.join(work, "gen", p), jobs=2,
                                 runtime_dir=os.path.join(ROOT, "runtime")) for p in policies}
            libs = {p: f.result() for p, f in futs.items()}
        print("built", ", ".join(policies), "in %.0f s" % (time.time() - t_build), flush=True)
    os.makedirs(os.path.join(work, "runs"), exist_ok=True)
    procs = []
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads),
               OPENBLAS_NUM_THREADS=str(args.threads), PYTHONUNBUFFERED="1")
    for name in names:
        policy, lr, aux = runs[name]
        if args.seed:
            name = "%s#s%d" % (name, args.seed)
        cmd = [args.python, os.path.join(HERE, "train.py"), "train", "--lr", repr(lr),
               "--seed", str(args.seed),
               "--steps", str(args.steps), "--eval-every", str(args.eval_every),
               "--threads", str(args.threads), "--corpus", os.path.join(work, "corpus.bin"),
               "--csv", os.path.join(work, "runs", name + ".csv")]
        if policy == "torch-adamw":
            cmd += ["--optimizer", "torch-adamw"]
        else:
            cmd += ["--optimizer", "symoc", "--library", libs[policy]]
            if aux:
                cmd += ["--aux-lr", repr(aux)]
        log = open(os.path.join(work, "runs", name + ".log"), "w")
        procs.append((name, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), log))
    t0 = time.time()
    for name, p, log in procs:
        rc = p.wait()
        log.close()
        with open(os.path.join(work, "runs", name + ".log")) as f:
            tail = f.read().strip().splitlines()[-1:]
        print("%-14s exit %d after %.0f s: %s" % (name, rc, time.time() - t0, tail), flush=True)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--symoc", required=True)
    p.add_argument("--work", default=os.path.join(ROOT, "out", "llama_char"))
    p.add_argument("--policies", default=",".join(POLICIES))
    t = sub.add_parser("train")
    t.add_argument("--work", default=os.path.join(ROOT, "out", "llama_char"))
    t.add_argument("--python", default=sys.executable)
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--steps", type=int, default=400)
    t.add_argument("--eval-every", type=int, default=50)
    t.add_argument("--only")
    t.add_argument("--seed", type=int, default=0, help="model init and batch order")
    t.add_argument("--no-build", action="store_true", help="use the libraries already built")
    t.add_argument("--jobs", type=int, default=2, help="parallel compile jobs for the libraries")
    t.add_argument("--runs", nargs="*", help="extra runs NAME:POLICY:LR[:AUX_LR]")
    args = ap.parse_args()
    prepare(args) if args.cmd == "prepare" else train(args)


if __name__ == "__main__":
    main()
