#!/usr/bin/env python3
"""Where one optimizer step's GPU time goes, on one GPU.

    python3 bench/gpu/profile_step.py LIB [LIB ...] [--steps 3] [--sustain-s 3] [--json OUT]

For each generated library (a symoc.torch optimizer on bench_gpu.py's random fp32 parameters
and gradients): the step's event-timed median (backend graphs on, and SYMOC_CUDA_GRAPH=0),
torch.profiler's kernel table of --steps eager steps (SYMOC_CUDA_GRAPH=0, so every kernel is
its own record) with the GEMM kernels (cuBLAS/cuBLASLt: names with gemm, nvjet, xmma or
cutlass) summed apart from the rest and the idle time between kernels, and the SM clock,
power and throttle reasons nvidia-smi samples every 100 ms while the step runs back to back for
--sustain-s seconds (a GPU that slows down under a long GEMM load shows it there, not in a
short GEMM timing).
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench_gpu as bg  # noqa: E402

GEMM = re.compile(r"gemm|nvjet|xmma|cutlass", re.I)


def make_opt(lib_path, env):
    with bg.environment(env):
        named = bg.params_of(bg.load_library(lib_path), 2)
        return named, bg.SymocOptimizer(named, library=lib_path, lr=1e-3)


def sample_smi(fn, seconds):
    """Runs fn() back to back for `seconds` while nvidia-smi samples; returns the samples."""
    q = "clocks.sm,power.draw,temperature.gpu,clocks_throttle_reasons.active"
    try:
        p = subprocess.Popen(["nvidia-smi", "--query-gpu=" + q, "--format=csv,noheader,nounits", "-lms", "100"],
                             stdout=subprocess.PIPE, text=True)
    except OSError as e:
        print("# nvidia-smi unavailable: %s" % e)
        fn()
        return []
    t0 = time.time()
    n = 0
    while time.time() - t0 < seconds:
        fn()
        n += 1
        if n % 4 == 0:
            torch.cuda.synchronize()
    torch.cuda.synchronize()
    p.terminate()
    out, _ = p.communicate()
    rows = []
    for line in out.splitlines():
        f = [x.strip() for x in line.split(",")]
        try:
            rows.append({"sm_mhz": float(f[0]), "power_w": float(f[1]), "temp_c": float(f[2]), "throttle": f[3]})
        except (ValueError, IndexError):
            pass
    return rows


def profile(step, steps):
    """torch.profiler's CUDA kernels of `steps` calls of step(): per-step ms, GEMMs apart."""
    from torch.profiler import ProfilerActivity, profile as tprof
    torch.cuda.synchronize()
    with tprof(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            step()
        torch.cuda.synchronize()
    kernels = {}
    spans = []
    for e in prof.events():
        if e.device_type != torch.autograd.DeviceType.CUDA:
            continue
        k = kernels.setdefault(e.name, [0, 0.0])
        k[0] += 1
        k[1] += (e.time_range.end - e.time_range.start) / 1e3  # us -> ms
        spans.append((e.time_range.start, e.time_range.end))
    busy = sum(v[1] for v in kernels.values()) / steps
    gemm = sum(v[1] for n, v in kernels.items() if GEMM.search(n)) / steps
    wall = (max(b for _, b in spans) - min(a for a, _ in spans)) / 1e3 / steps if spans else 0.0
    table = sorted(((v[1] / steps, v[0] / steps, n) for n, v in kernels.items()), reverse=True)
    return {"kernel_ms": busy, "gemm_ms": gemm, "other_ms": busy - gemm, "first_to_last_ms": wall,
            "kernels": [{"ms": ms, "calls": c, "name": n} for ms, c, n in table[:30]]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("libs", nargs="+")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--sustain-s", type=float, default=3.0)
    ap.add_argument("--json")
    a = ap.parse_args()
    print("# device %s, torch %s" % (torch.cuda.get_device_name(0), torch.__version__))
    idle = sample_smi(lambda: time.sleep(0.05), 0.6)
    if idle:
        print("# idle: SM %.0f MHz, %.0f W" % (statistics.median(r["sm_mhz"] for r in idle),
                                                statistics.median(r["power_w"] for r in idle)))
    out = {}
    for lib in a.libs:
        name = os.path.basename(lib)
        named, opt = make_opt(lib, {})
        step_ms = bg.timed(opt.step, 3, 10)
        smi = sample_smi(opt.step, a.sustain_s)
        del opt
        named, opt = make_opt(lib, {"SYMOC_CUDA_GRAPH": "0"})
        eager_ms = bg.timed(opt.step, 3, 10)
        prof = profile(opt.step, a.steps)
        del opt, named
        torch.cuda.empty_cache()
        r = {"step_ms": step_ms, "step_no_graph_ms": eager_ms, **prof}
        if smi:
            r["sustained"] = {"sm_mhz_median": statistics.median(x["sm_mhz"] for x in smi),
                              "sm_mhz_min": min(x["sm_mhz"] for x in smi),
                              "power_w_median": statistics.median(x["power_w"] for x in smi),
                              "temp_c_max": max(x["temp_c"] for x in smi),
                              "throttle_reasons": sorted({x["throttle"] for x in smi}), "samples": len(smi)}
        out[name] = r
        print("== %s: step %.2f ms (graphs), %.2f ms (SYMOC_CUDA_GRAPH=0); per step: kernels %.2f ms = GEMM %.2f + "
              "other %.2f; first-to-last kernel %.2f ms" % (name, step_ms, eager_ms, r["kernel_ms"], r["gemm_ms"],
                                                          r["other_ms"], r["first_to_last_ms"]))
        if smi:
            s = r["sustained"]
            print("   sustained %.1f s: SM %.0f MHz median (min %.0f), %.0f W, max %.0f C, throttle reasons %s" % (
                a.sustain_s, s["sm_mhz_median"], s["sm_mhz_min"], s["power_w_median"], s["temp_c_max"],
                s["throttle_reasons"]))
        for k in r["kernels"][:20]:
            print("   %8.3f ms %5.1f x  %s" % (k["ms"], k["calls"], k["name"][:110]))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
