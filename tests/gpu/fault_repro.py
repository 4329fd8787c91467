#!/usr/bin/env python3
"""Issue 12's concurrent-fault hunt: the pieces tests/gpu/fault_repro.sh runs on the GPU
machine (see there). Three commands:

  fault_repro.py unit --stage DIR [--libs M/P ...] [--steps N]
      symoc's step alone (no model forward/backward): each library's SymocOptimizer on
      CUDA parameters of the plan's shapes with random gradients, N steps, synchronized;
      small enough to run under compute-sanitizer (memcheck, racecheck, synccheck, initcheck).
  fault_repro.py one --stage DIR --model M --policy P [--steps N] [--batch B] [--json F]
      one training run in this process through bench/train/bench.py's train_run (the
      benchmark's own loop, bf16 autocast); prints and writes {status, step, t_fault, error}.
  fault_repro.py stress --stage DIR --mix M/P:N,... [--steps N] [--seconds S] --out DIR
      N fresh processes of `one` at once (torch-only runs as controls: a fault in a process
      that never loaded symoc is not symoc's), then a table: process, run, status, step of
      the fault, seconds after the start of the stress, error.
DIR is a staged folder (bench/train/stage.sh) with libs.json written by the build.
"""
import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "bench", "train"))
sys.path.insert(0, os.path.join(ROOT, "python"))


def _libs(stage):
    path = os.path.join(stage, "libs.json")
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        return json.load(f)


def cmd_unit(a):
    import torch
    from symoc.torch import SymocOptimizer, load_library
    libs = _libs(a.stage)
    names = a.libs or sorted(libs)
    dev = torch.device("cuda")
    torch.manual_seed(0)
    rc = 0
    for key in names:
        t0 = time.time()
        try:
            lib = load_library(libs[key])
            params = [(n, torch.nn.Parameter(torch.randn(*s, device=dev) * 0.02))
                      for n, s, _ in lib.params]
            opt = SymocOptimizer(params, library=libs[key], lr=0.02)
            for _ in range(a.steps):
                for _, p in params:
                    p.grad = torch.randn_like(p)
                opt.step()
            torch.cuda.synchronize()
            finite = all(bool(torch.isfinite(p).all()) for _, p in params)
            print("unit %-18s %d steps: %s (%.1f s)" % (key, a.steps, "ok" if finite else
                                                       "NON-FINITE weights", time.time() - t0),
                  flush=True)
            rc |= 0 if finite else 1
        except Exception as e:  # report and go on: the sanitizer's own report is the point
            print("unit %-18s error: %s: %s" % (key, type(e).__name__, str(e)[:300]), flush=True)
            rc = 1
    return rc


def _spec(a):
    import bench
    d = bench.run_parser().parse_args(["run", "--stage", a.stage])
    import models
    return dict(kind="train", phase="repro", corpus=os.path.join(a.stage, "corpus"),
                device=a.device, libs=_libs(a.stage), batch=a.batch, amp=a.device == "cuda",
                aux_ratio=d.aux_ratio, warmup_frac=d.warmup_frac, val_batches=1,
                final_val_batches=1, seed=a.seed, lr=a.lr if a.lr else bench.GRIDS[a.policy][1], model=a.model, policy=a.policy,
                t=models.CONFIGS[a.model]["t"], steps=a.steps,
                eval_every=min(50, a.steps),  # the --seconds cap is checked at evaluations
                deadline=(time.time() + a.seconds) if a.seconds else None, progress=False)


def cmd_one(a):
    import bench
    spec = _spec(a)
    t0 = time.time()
    r = bench.run_job(spec)
    out = dict(model=a.model, policy=a.policy, status=r.get("status"), step=r.get("step"),
               steps_done=r.get("steps_done"), t_end=time.time(), t_start=t0,
               error=r.get("reason"), ms_per_step=r.get("ms_per_step"))
    print(json.dumps(out), flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f)
    return 0 if out["status"] in ("ok", "truncated") else 1


def cmd_stress(a):
    os.makedirs(a.out, exist_ok=True)
    jobs = []
    for item in a.mix.split(","):
        run, _, n = item.partition(":")
        model, policy = run.split("/")
        jobs += [(model, policy)] * int(n or 1)
    t0 = time.time()
    procs = []
    for i, (m, p) in enumerate(jobs):
        js = os.path.join(a.out, "stress_%02d.json" % i)
        if os.path.exists(js):
            os.remove(js)
        cmd = [sys.executable, os.path.abspath(__file__), "one", "--stage", a.stage, "--model", m,
               "--policy", p, "--steps", str(a.steps), "--batch", str(a.batch),
               "--seed", str(i), "--json", js, "--device", a.device] + (["--seconds", str(a.seconds)] if a.seconds else [])
        log = open(os.path.join(a.out, "stress_%02d.log" % i), "w")
        procs.append((i, m, p, js, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), log))
    rows = []
    for i, m, p, js, pr, log in procs:
        rc = pr.wait()
        log.close()
        r = json.load(open(js)) if os.path.exists(js) else dict(status="died", error="exit %d" % rc)
        # a fault: an error (a CUDA error is raised as one) or a process that died
        t_fault = r.get("t_end", time.time()) - t0 if r.get("status") in ("error", "died") else None
        rows.append(dict(r, proc=i, model=m, policy=p, rc=rc, t_fault=t_fault))
    with open(os.path.join(a.out, "stress.json"), "w") as f:
        json.dump(rows, f, indent=1)
    print("| proc | run | status | steps | fault at step | fault at s | error |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print("| %d | %s/%s | %s | %s | %s | %s | %s |" % (
            r["proc"], r["model"], r["policy"], r.get("status"), r.get("steps_done"),
            r.get("step") if r.get("t_fault") is not None else "",
            "%.1f" % r["t_fault"] if r.get("t_fault") is not None else "",
            (r.get("error") or "").split("\n")[0][:90]))
    bad = [r for r in rows if r.get("t_fault") is not None]
    ctl = [r for r in bad if not r["policy"].startswith("symoc")]
    print("stress: %d processes, %d faulted (%d of them torch-only controls), %.0f s" % (
        len(rows), len(bad), len(ctl), time.time() - t0))
    return 1 if bad else 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    u = sub.add_parser("unit")
    u.add_argument("--stage", required=True)
    u.add_argument("--libs", nargs="*")
    u.add_argument("--steps", type=int, default=3)
    for name in ("one", "stress"):
        o = sub.add_parser(name)
        o.add_argument("--stage", required=True)
        o.add_argument("--steps", type=int, default=300)
        o.add_argument("--batch", type=int, default=32)
        o.add_argument("--seconds", type=float, default=0, help="stop a run after this (0: no cap)")
        o.add_argument("--device", default="cuda", help="cuda (cpu: to try the script here)")
        if name == "one":
            o.add_argument("--model", required=True)
            o.add_argument("--policy", required=True)
            o.add_argument("--lr", type=float, help="default: the second point of the policy's grid")
            o.add_argument("--seed", type=int, default=0)
            o.add_argument("--json")
        else:
            o.add_argument("--mix", required=True, help="MODEL/POLICY:N,...")
            o.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    return {"unit": cmd_unit, "one": cmd_one, "stress": cmd_stress}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
