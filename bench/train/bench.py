#!/usr/bin/env python3
"""Training benchmark (issue #13, item 3): byte-level LLaMA- and GPT-2-style models trained
with torch AdamW, torch Muon + AdamW and symoc's generated optimizers; lr grid, then seeds.

    python3 bench/train/bench.py run --stage DIR --out OUT [options]     (the GPU run)
    /usr/bin/python3 bench/train/bench.py smoke --symoc BIN --runtime-lib LIB --link FLAGS
        --work DIR                                                      (ctest, CPU, tiny)

`run` reads DIR/corpus/{train,val}.bin[.xz] and DIR/libs.json ({"MODEL/POLICY": .so}) and
writes OUT/results.json (rewritten after every finished run, so a cut-off run still leaves
what finished), OUT/progress.log; then `report.py` makes the markdown and the plots.

Phases of `run` (bench/README.md has the protocol and its reasons):
  1. time: each (model, policy) alone on the GPU, whole training step and optimizer step
     (CUDA events, median of --time-iters after warm-up);
  2. calibrate (only with --concurrency auto): aggregate training throughput with K
     concurrent processes for each K of --calibrate-k; the K of the highest throughput
     (a larger K only when it gains >= 5 %) is used;
  3. grid: each (model, policy, lr of its grid) for --grid-steps, seed 0; best lr = lowest
     last val;
  4. refine (with --refine K > 0): each (model, policy)'s K best grid lrs for --refine-steps
     (default --steps), seed 0; its lr is then the one of the lowest final val (a tie: the
     grid's order); every candidate must finish, else the pair has no lr in this call;
  5. seeds: each (model, policy) at its best lr (refinement's, else grid's) for --steps with
     seeds 1..--seeds. A refinement run is never a seed run (seed 0 is the tuning seed, and
     the best of K is biased low).
Phases 3-5 share one pool of K worker processes on the one GPU and one priority queue:
every grid run before any other run, then pair by pair (model by model, the references AdamW
and Muon first) the refinement runs and then the seed runs, so a pair's runs run side by side
and finish as a set. A
worker whose run ended in an error is replaced by a fresh process (a CUDA fault poisons its
process), and a run lost to a device fault is retried once; faults are recorded in
results.json ("faults") and the report. --budget-s bounds the whole run: before the runs the
log shows the estimated schedule and which runs will not fit; a run estimated to end past the
budget is not started (--allow-truncated: started and cut there, "truncated"), and a running
one stops there. A protocol too long for one call is split: `--phases time grid` in one call,
`--phases [refine] seeds --best-from CALL1/results.json [--models ..] [--policies ..]` in the
next ones, `--plan-only` to see a call's schedule first; report.py merges the calls' results.
"""
import argparse
import concurrent.futures as cf
import json
import math
import multiprocessing as mp
import os
import queue
import re
import statistics
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "python"))
from report import lr_rank  # noqa: E402  (best_lr entries: --best-from ranks as report merges)

TORCH_POLICIES = ("adamw", "muon")
SYMOC_POLICIES = ("symoc-auto", "symoc-symo", "symoc-muon", "symoc-auto-norm", "symoc-symo-whole",
                  "symoc-auto-plain", "symoc-auto-embrow", "symoc-symo-pair")
# `symoc compile` arguments of a bench policy that is not just `--policy NAME` (stage.sh reads
# them through `bench.py compile-args NAME`).
# The names of earlier runs stay their plans when a default changes (auto's embedding rule
# and symo's granularity since session 8).
COMPILE_ARGS = {"symo-whole": ["--policy", "symo", "--granularity", "whole"],
                # auto of session 7 (run 5: NorMuon's normalization, AdamW embeddings)
                "auto-norm": ["--policy", "auto-norm", "--embedding", "adamw"],
                # auto before session 7 (no NorMuon normalization)
                "auto-plain": ["--policy", "auto", "--line-norm", "off", "--embedding", "adamw"],
                # auto with row-normalized untied embeddings (Lau-Su row, lr x 0.3 sqrt(d))
                "auto-embrow": ["--policy", "auto", "--embedding", "row"],
                # symo whose fused-axis role pieces (GPT-2's Q, K, V) step per head pair
                "symo-pair": ["--policy", "symo", "--granularity", "whole-head-pair"]}
POLICIES = TORCH_POLICIES + SYMOC_POLICIES
# lr grids (factor 2 apart). Muon-type policies (torch Muon, symoc muon/auto/symo: their
# hidden matrices step at Muon's update scale) share a grid; their AdamW-stepped blocks
# (embeddings, head, gains, biases) get lr * --aux-ratio.
GRIDS = {
    "adamw": [7.5e-4, 1.5e-3, 3e-3, 6e-3],
    "muon": [0.01, 0.02, 0.04, 0.08],
    "symoc-auto": [0.01, 0.02, 0.04, 0.08],
    "symoc-symo": [0.01, 0.02, 0.04, 0.08],
    "symoc-muon": [0.01, 0.02, 0.04, 0.08],
    "symoc-auto-norm": [0.01, 0.02, 0.04, 0.08],  # auto + NorMuon's per-line normalization
    # symo with whole-axis sides over per-head output-projection / KV-head runs (issue 13,
    # docs/results.md: the CPU ablation)
    "symoc-symo-whole": [0.01, 0.02, 0.04, 0.08],
    "symoc-auto-plain": [0.01, 0.02, 0.04, 0.08],
    "symoc-auto-embrow": [0.01, 0.02, 0.04, 0.08],
    "symoc-symo-pair": [0.01, 0.02, 0.04, 0.08],
}
BETAS = (0.9, 0.95)          # Muon's README, for its AdamW group and our AdamW reference
WEIGHT_DECAY = 0.01          # likewise


# a pair's stages: grid (short, every lr), refine (its K best, long), seeds (at the chosen lr)
PHASE_ORDER = {"grid": 0, "refine": 1, "seeds": 2}
RESULTS_LIST = {"grid": "grid", "refine": "refine", "seeds": "runs"}   # results.json lists


class Skip(Exception):
    """A run that cannot exist here (e.g. torch.optim.Muon on torch < 2.9)."""


# =========================================================================== worker side
_W = {}


def _worker_init(threads):
    import torch
    torch.set_num_threads(threads)
    _W["threads"] = threads


def _data(spec):
    import torch
    import corpus as corpus_mod
    key = (spec["corpus"], spec["device"])
    if _W.get("data_key") != key:
        dev = torch.device(spec["device"])
        out = []
        for split in ("train", "val"):
            b = corpus_mod.load_split(spec["corpus"], split)
            out.append(torch.frombuffer(bytearray(b), dtype=torch.uint8).to(dev))
        _W["data"], _W["data_key"] = out, key
    return _W["data"]


def _batch(data, starts, t):
    import torch
    idx = starts[:, None] + torch.arange(t + 1, device=data.device)[None, :]
    w = data[idx].long()
    return w[:, :-1], w[:, 1:]


def make_optimizers(policy, model, lr, spec):
    """[torch.optim.Optimizer] for `policy`; every param group gets 'base_lr'."""
    import torch
    cuda = next(model.parameters()).is_cuda
    fused = dict(fused=True) if cuda else {}
    aux = lr * spec["aux_ratio"]
    named = list(model.named_parameters())
    if policy == "adamw":
        mats = [p for _, p in named if p.dim() >= 2]
        vecs = [p for _, p in named if p.dim() < 2]
        opts = [torch.optim.AdamW([dict(params=mats, weight_decay=WEIGHT_DECAY),
                                   dict(params=vecs, weight_decay=0.0)],
                                  lr=lr, betas=BETAS, **fused)]
    elif policy == "muon":
        if not hasattr(torch.optim, "Muon"):
            raise Skip("torch.optim.Muon does not exist in torch %s (added in 2.9): the "
                       "'muon' reference is skipped" % torch.__version__)
        import models
        hidden = [p for n, p in named if models.hidden_matrix(n, p)]
        ids = {id(p) for p in hidden}
        rest = [p for _, p in named if id(p) not in ids]
        # Muon's README: Muon on the body's >= 2-D weights, AdamW on gains, biases, head and
        # embeddings (betas (0.9, 0.95), decay 0.01 on both).
        opts = [torch.optim.Muon(hidden, lr=lr, weight_decay=WEIGHT_DECAY, momentum=0.95,
                                 nesterov=True),
                torch.optim.AdamW(rest, lr=aux, betas=BETAS, weight_decay=WEIGHT_DECAY,
                                  **fused)]
    elif policy in SYMOC_POLICIES:
        from symoc.torch import SymocOptimizer
        lib = spec["libs"].get("%s/%s" % (spec["model"], policy))
        if not lib:
            raise Skip("no generated library for %s/%s" % (spec["model"], policy))
        opt = SymocOptimizer(named, library=lib, lr=lr)
        for name, rule in opt.param_rules().items():
            if rule.startswith("adam"):
                opt.set_block_multiplier(name, spec["aux_ratio"])
        opts = [opt]
    else:
        raise ValueError("unknown policy %r" % policy)
    for o in opts:
        for g in o.param_groups:
            g["base_lr"] = g["lr"]
    return opts


def _lr_factor(s, steps, warmup_frac):
    warm = max(1, int(round(steps * warmup_frac)))
    return min(1.0, (s + 1) / warm) * 0.5 * (1.0 + math.cos(math.pi * min(s, steps) / steps))


def _setup(spec):
    import torch
    import models
    dev = torch.device(spec["device"])
    train, val = _data(spec)
    model = models.build(spec["model"], spec["seed"]).to(dev)
    opts = make_optimizers(spec["policy"], model, spec["lr"], spec)
    return torch, model, opts, train, val, dev


def _forward_loss(torch, model, x, y, amp):
    import torch.nn.functional as F
    if amp:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = model(x)
    else:
        logits = model(x)
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1))


def _zero(opts):
    for o in opts:
        # symoc: keep the gradient buffers (its bridge then skips re-checking the tensors)
        o.zero_grad(set_to_none=type(o).__name__ != "SymocOptimizer")


def train_run(spec):
    """One training run; returns its record (curve, final val, times)."""
    t_setup = time.time()
    try:
        torch, model, opts, train, val, dev = _setup(spec)
    except Skip as e:
        return dict(spec_public(spec), status="skipped", reason=str(e))
    t = spec["t"]
    bsz, steps, amp = spec["batch"], spec["steps"], spec["amp"]
    cuda = dev.type == "cuda"
    # Training batches: windows drawn by a generator on the device (no host round trip per
    # step), seeded by the run's seed: every policy sees the same batches for a seed.
    g = torch.Generator(device=dev).manual_seed(1000 + spec["seed"])
    gv = torch.Generator().manual_seed(99)
    val_starts = torch.randint(0, len(val) - t - 1, (spec["val_batches"], bsz), generator=gv)
    final_starts = torch.randint(0, len(val) - t - 1, (spec["final_val_batches"], bsz),
                                 generator=gv)

    def evaluate(starts):
        with torch.no_grad():
            tot = 0.0
            for row in starts:
                x, y = _batch(val, row.to(dev), t)
                tot += _forward_loss(torch, model, x, y, amp).item()
        return tot / len(starts)

    def sync():
        if cuda:
            torch.cuda.synchronize(dev)

    curve = []
    acc = torch.zeros((), device=dev)
    acc_n = 0
    train_s = 0.0
    status = "ok"
    deadline = spec.get("deadline") or float("inf")
    sync()
    t0 = time.time()
    setup_s = t0 - t_setup
    for s in range(steps + 1):
        if s % spec["eval_every"] == 0 or s == steps:
            sync()
            train_s += time.time() - t0
            tl = (acc.item() / acc_n) if acc_n else None
            v = evaluate(val_starts)
            curve.append([s, tl, v, round(train_s, 3)])
            acc.zero_()
            acc_n = 0
            if spec.get("progress"):
                print("  [%s %s lr %g seed %d] step %d val %.4f (%.1f s)"
                      % (spec["model"], spec["policy"], spec["lr"], spec["seed"], s, v, train_s),
                      flush=True)
            if not math.isfinite(v):
                status = "diverged"
                break
            if time.time() > deadline and s < steps:
                status = "truncated"
                break
            t0 = time.time()
        if s == steps:
            break
        spec["_step"] = s  # run_job reports the step a fault happened at
        f = _lr_factor(s, steps, spec["warmup_frac"])
        for o in opts:
            for grp in o.param_groups:
                grp["lr"] = grp["base_lr"] * f
        x, y = _batch(train, torch.randint(0, len(train) - t - 1, (bsz,), generator=g,
                                           device=dev), t)
        _zero(opts)
        loss = _forward_loss(torch, model, x, y, amp)
        loss.backward()
        for o in opts:
            o.step()
        acc += loss.detach()
        acc_n += 1
    final = evaluate(final_starts) if status != "diverged" else float("nan")
    skipped = sum(getattr(o, "steps_skipped", 0) for o in opts)
    return dict(spec_public(spec), status=status, curve=curve, final_val=final,
                last_val=curve[-1][2], steps_done=curve[-1][0], train_s=round(train_s, 3),
                setup_s=round(setup_s, 2), blocks_skipped=skipped,
                ms_per_step=round(1000 * train_s / max(1, curve[-1][0]), 3))


def time_run(spec):
    """Whole training step and optimizer step alone, CUDA events, medians (GPU alone)."""
    try:
        torch, model, opts, train, val, dev = _setup(spec)
    except Skip as e:
        return dict(spec_public(spec), status="skipped", reason=str(e))
    t, bsz = spec["t"], spec["batch"]
    g = torch.Generator().manual_seed(7)
    xs = [_batch(train, torch.randint(0, len(train) - t - 1, (bsz,), generator=g).to(dev), t)
          for _ in range(4)]
    n_warm, n = spec["time_warmup"], spec["time_iters"]
    cuda = dev.type == "cuda"
    step_ms, opt_ms = [], []
    t_end = time.time() + spec["time_cap_s"]   # a slow (host-path) policy: fewer samples
    t_begin = time.time()
    i = 0
    while i < n_warm + n:
        if i >= n_warm + 2 and time.time() > t_end:
            break
        if i < n_warm and i >= 1 and time.time() - t_begin > spec["time_cap_s"] / 2:
            i = n_warm          # a slow policy: one warm-up step is enough
        x, y = xs[i % len(xs)]
        if cuda:
            e = [torch.cuda.Event(enable_timing=True) for _ in range(3)]
            e[0].record()
        else:
            c0 = time.perf_counter()
        _zero(opts)
        _forward_loss(torch, model, x, y, spec["amp"]).backward()
        if cuda:
            e[1].record()
        else:
            c1 = time.perf_counter()
        for o in opts:
            o.step()
        if cuda:
            e[2].record()
            torch.cuda.synchronize(dev)
            a, b = e[0].elapsed_time(e[2]), e[1].elapsed_time(e[2])
        else:
            c2 = time.perf_counter()
            a, b = 1000 * (c2 - c0), 1000 * (c2 - c1)
        if i >= n_warm:
            step_ms.append(a)
            opt_ms.append(b)
        i += 1
    mem = torch.cuda.max_memory_allocated(dev) / 2**30 if cuda else None
    return dict(spec_public(spec), status="ok", batch=bsz, samples=len(step_ms),
                step_ms=round(statistics.median(step_ms), 3),
                opt_ms=round(statistics.median(opt_ms), 3),
                step_ms_p90=round(sorted(step_ms)[int(0.9 * (len(step_ms) - 1))], 3),
                max_mem_gib=round(mem, 2) if mem is not None else None)


def throughput_run(spec):
    """Steps/s of one process while K-1 others run the same (started together at start_at)."""
    try:
        torch, model, opts, train, val, dev = _setup(spec)
    except Skip as e:
        return dict(spec_public(spec), status="skipped", reason=str(e))
    t, bsz = spec["t"], spec["batch"]
    g = torch.Generator().manual_seed(11)

    def step():
        x, y = _batch(train, torch.randint(0, len(train) - t - 1, (bsz,), generator=g).to(dev), t)
        _zero(opts)
        _forward_loss(torch, model, x, y, spec["amp"]).backward()
        for o in opts:
            o.step()

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
    for _ in range(3):
        step()
    sync()
    late = time.time() - spec["start_at"]
    while time.time() < spec["start_at"]:
        time.sleep(0.005)
    t0 = time.time()
    n = 0
    while time.time() - t0 < spec["seconds"]:
        for _ in range(5):
            step()
        sync()
        n += 5
    return dict(spec_public(spec), status="ok", steps=n, seconds=round(time.time() - t0, 3),
                late_s=round(late, 2))


def run_job(spec):
    try:
        return dict(kind=spec["kind"], **{"train": train_run, "time": time_run,
                                          "throughput": throughput_run}[spec["kind"]](spec))
    except Exception as e:  # one failing run must not stop the benchmark
        import traceback
        return dict(spec_public(spec), kind=spec["kind"], status="error", step=spec.get("_step"),
                    reason="%s: %s" % (type(e).__name__, str(e)[:500]),
                    trace=traceback.format_exc()[-1500:])


def spec_public(spec):
    return {k: spec[k] for k in ("model", "policy", "lr", "seed", "steps", "phase")
            if k in spec}


# A device fault (CUDA's sticky errors and cuBLAS / cuSOLVER's reports of them), as opposed to
# an error of the run itself (a bad spec, a missing library): worth one retry in a fresh process.
FAULT_RE = re.compile(r"CUDA error|cuda[^:]*: .*(launch failure|illegal|misaligned|ECC|"
                      r"unspecified|exception)|CUBLAS_STATUS_(EXECUTION_FAILED|INTERNAL_ERROR)|"
                      r"CUSOLVER_STATUS_(EXECUTION_FAILED|INTERNAL_ERROR)|AcceleratorError|"
                      r"worker process", re.I)


def is_fault(r):
    return r.get("status") in ("error", "died") and bool(FAULT_RE.search(r.get("reason") or ""))


class WorkerDied(Exception):
    """A worker process ended without returning its job's result."""


def _worker_main(conn, initializer, initargs):
    if initializer:
        initializer(*initargs)
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        if job is None:
            return
        fn, args = job
        try:
            out = ("ok", fn(*args))
        except BaseException as e:  # noqa: B902 - reported to the parent, which decides
            out = ("exc", "%s: %s" % (type(e).__name__, e))
        conn.send(out)


class WorkerPool:
    """`workers` spawned worker processes running submitted jobs in order (submit() returns a
    concurrent.futures.Future). A worker whose job ended with status 'error' (or raised, or
    whose process died) is replaced by a fresh process before its next job: a CUDA fault
    poisons its whole process, every later CUDA call there fails, and run 1 of 2026-12-02
    (bench/train/results/h200-2026-12-02-run1.log) lost every run queued behind three faults
    in concurrent.futures.ProcessPoolExecutor's reused workers. Healthy workers are kept
    (a fresh process per run costs an interpreter, torch and the corpus each time)."""

    def __init__(self, workers, initializer=None, initargs=()):
        self._ctx = mp.get_context("spawn")
        self._init = (initializer, initargs)
        self._q = queue.Queue()
        self.replaced = 0
        self._threads = [threading.Thread(target=self._loop, daemon=True)
                         for _ in range(max(1, workers))]
        for t in self._threads:
            t.start()

    def submit(self, fn, *args):
        f = cf.Future()
        self._q.put((f, fn, args))
        return f

    def _start(self):
        parent, child = self._ctx.Pipe()
        p = self._ctx.Process(target=_worker_main, args=(child,) + self._init, daemon=True)
        p.start()
        child.close()
        return p, parent

    @staticmethod
    def _stop(p, conn, graceful=True):
        try:
            if graceful:
                conn.send(None)
        except (OSError, ValueError):
            pass
        p.join(10 if graceful else 0)
        if p.is_alive():
            p.terminate()
            p.join(5)
        conn.close()

    def _loop(self):
        p = conn = None
        while True:
            job = self._q.get()
            if job is None:
                break
            f, fn, args = job
            if not f.set_running_or_notify_cancel():
                continue
            if p is None:
                p, conn = self._start()
            try:
                conn.send((fn, args))
                kind, val = conn.recv()
            except (EOFError, OSError):
                p.join(5)
                f.set_exception(WorkerDied("worker process ended (exit code %s) before its "
                                           "job returned" % p.exitcode))
                self._stop(p, conn, graceful=False)
                p = conn = None
                self.replaced += 1
                continue
            bad = kind == "exc" or (isinstance(val, dict) and val.get("status") == "error")
            if kind == "exc":
                f.set_exception(RuntimeError(val))
            else:
                f.set_result(val)
            if bad:   # possibly a poisoned CUDA context: never reuse this process
                self._stop(p, conn, graceful=False)
                p = conn = None
                self.replaced += 1
        if p is not None:
            self._stop(p, conn)

    def shutdown(self, wait=True):
        for _ in self._threads:
            self._q.put(None)
        if wait:
            for t in self._threads:
                t.join()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.shutdown()
        return False


def job_result(f, spec):
    """The run record of a finished future; a dead worker or a raising job become an error
    record (status 'died' / 'error') naming the run."""
    try:
        return f.result()
    except WorkerDied as e:
        return dict(spec_public(spec), kind=spec["kind"], status="died", reason=str(e))
    except Exception as e:
        return dict(spec_public(spec), kind=spec["kind"], status="error",
                    reason="%s: %s" % (type(e).__name__, str(e)[:500]))


# =========================================================================== scheduler
class Bench:
    def __init__(self, a):
        normalize_phases(a)
        self.a = a
        self.t_start = time.time()
        self.deadline = self.t_start + a.budget_s
        self.log_f = None
        if not a.plan_only:
            os.makedirs(a.out, exist_ok=True)
            self.log_f = open(os.path.join(a.out, "progress.log"), "a")
        libs_json = os.path.join(a.stage, "libs.json")
        self.libs = json.load(open(libs_json)) if os.path.isfile(libs_json) else {}
        man = os.path.join(a.stage, "corpus", "manifest.json")
        self.res = dict(meta=self.meta(man), timing=[], timing_batches=[], calibration=[],
                        grid=[], refine=[], best_lr={},
                        runs=[], skipped=[], faults=[])
        self.waiting = {}        # (model, policy) -> the stage ("grid", "refine") it waits on
        self.refine_state = {}   # (model, policy) -> its refinement: candidates, reused runs
        self.load_sources()

    def load_sources(self):
        """--best-from: each (model, policy)'s best lr from earlier calls' grids (a later file
        wins; files of another protocol are refused). --timing-from (default: the --best-from
        files): step times alone and shared, for the estimate of a call without a time phase
        and before this call's first runs end."""
        import report
        a = self.a
        mine = report.protocol_config(self.res["meta"])
        def by_date(paths):     # a later call's figures win, as in report.py's merge
            loaded = [(p, report.load_json(p, "bench.py")) for p in paths or []]
            return sorted(loaded, key=lambda pr: pr[1]["meta"].get("date") or "")
        self.best_from = {}
        self.finished = set()   # (model, policy, seed, lr, steps) finished in a --best-from file
        self.src_grid_pts = {}  # (model, policy) -> {lr: last val} of the files' finished grids
        self.src_refine = {}    # (model, policy) -> {lr: finished refinement run at our steps}
        for path, res in by_date(a.best_from):
            why = report.config_conflict(report.protocol_config(res["meta"]), mine,
                                         ignore=("steps", "eval_every", "final_val_batches",
                                                 "device", "torch") if a.plan_only else
                                         ("steps", "eval_every", "final_val_batches"))
            if why:
                sys.exit("bench.py: error: --best-from %s: %s differs from this run's %s "
                         "(another protocol)" % (path, why[0], why[1]))
            label = os.path.basename(path)
            for key, e in (res.get("best_lr") or {}).items():
                # a lr chosen by a refinement beats a grid's; among equals the later file
                if e.get("lr") is not None and (key not in self.best_from or
                                                lr_rank(e) >= lr_rank(self.best_from[key])):
                    self.best_from[key] = dict(e, source=e.get("source") or label)
                pts = {float(lr): v for lr, v in (e.get("grid") or {}).items() if _finite(v)}
                if pts:
                    self.src_grid_pts.setdefault(tuple(key.split("/", 1)), {}).update(pts)
            for r in res.get("grid") or []:
                if r.get("status") == "ok" and _finite(r.get("last_val")):
                    self.src_grid_pts.setdefault((r["model"], r["policy"]), {})[r["lr"]] = \
                        r["last_val"]
            for r in res.get("runs") or []:
                if r.get("status") in ("ok", "diverged"):
                    self.finished.add((r.get("model"), r.get("policy"), r.get("seed"),
                                       r.get("lr"), r.get("steps")))
            # refinement runs of this call's spec (steps, evaluation) that finished there
            same_eval = (res["meta"].get("eval_every"), res["meta"].get("final_val_batches")) \
                == (a.eval_every, a.final_val_batches)
            for r in res.get("refine") or []:
                if r.get("status") in ("ok", "diverged") and r.get("steps") == a.refine_steps \
                        and same_eval:
                    self.src_refine.setdefault((r["model"], r["policy"]), {})[r["lr"]] = \
                        dict(r, src=label)
        self.src_alone, self.src_shared, self.src_grid = {}, {}, {}
        for path, res in by_date(a.timing_from if a.timing_from is not None else a.best_from):
            meta, label = res["meta"], os.path.basename(path)
            if meta.get("batch") != a.batch:
                continue            # other step shapes: their times say nothing here
            cfgs = {m: s.get("config") for m, s in (meta.get("sizes") or {}).items()}
            same = lambda m: m in a.models and cfgs.get(m) == models_config(m)  # noqa: E731
            for r in res.get("timing") or []:
                if r.get("status") == "ok" and same(r.get("model")):
                    self.src_alone[(r["model"], r["policy"])] = r["step_ms"]
            shared = {}
            for r in (res.get("grid") or []) + (res.get("refine") or []) + \
                    (res.get("runs") or []):
                if r.get("status") in ("ok", "truncated") and r.get("ms_per_step") and \
                        same(r.get("model")):
                    # a refinement run is a seed run's length and mix: its figure counts so
                    phase = "seeds" if r.get("phase") == "refine" else r.get("phase")
                    shared.setdefault((r["model"], r["policy"]), {}).setdefault(
                        phase, []).append(r["ms_per_step"])
            k_src = meta.get("concurrency") or 1
            for key, by in shared.items():
                if by.get("seeds"):
                    self.src_shared[key] = (statistics.median(by["seeds"]), k_src, label)
                if by.get("grid"):
                    self.src_grid[key] = (statistics.median(by["grid"]), k_src, label)

    def meta(self, man):
        import torch
        import models
        a = self.a
        cuda = torch.cuda.is_available()
        sizes = {}
        for m in a.models:
            cfg = models.CONFIGS[m]
            sizes[m] = dict(config=cfg, params=models.num_params(models.build(m, 0)),
                            tokens_per_step=a.batch * cfg["t"])
        corpus = json.load(open(man)) if os.path.isfile(man) else None
        if corpus:
            corpus = {k: corpus[k] for k in ("sources", "rule", "files", "packages", "train",
                                             "val", "total_bytes")}
        meta = dict(torch=torch.__version__, device=torch.cuda.get_device_name(0) if cuda
                    else "cpu", date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                    models=a.models, policies=a.policies, sizes=sizes, batch=a.batch,
                    grid_steps=a.grid_steps, steps=a.steps, seeds=a.seeds,
                    refine=a.refine, refine_steps=a.refine_steps if a.refine else None,
                    eval_every=a.eval_every, grid_eval_every=a.grid_eval_every,
                    val_batches=a.val_batches, final_val_batches=a.final_val_batches,
                    warmup_frac=a.warmup_frac, aux_ratio=a.aux_ratio,
                    amp="bf16 autocast (forward/backward), fp32 parameters" if a.amp else "fp32",
                    grids={p: self.grid(p) for p in a.policies}, corpus=corpus,
                    libs={k: os.path.basename(v) for k, v in self.libs.items()})
        # what report.py checks before merging the results of several calls: the protocol and
        # each generated optimizer (sha256 of its plan and sources in the stage folder)
        import report
        meta["plans"] = self.plan_fingerprints()
        info = os.path.join(a.stage, "STAGE_INFO")
        if os.path.isfile(info):
            meta["symoc_commit"] = open(info).read().split("\n")[0].strip()
        meta["config"] = report.protocol_config(meta)
        meta["call"] = dict(phases=a.phases, seed_ids=self.seed_ids(), budget_s=a.budget_s,
                            refine=a.refine, refine_steps=a.refine_steps,
                            best_from=[os.path.basename(f) for f in a.best_from or []],
                            argv=sys.argv[1:])
        return meta

    def plan_fingerprints(self):
        """{"MODEL/POLICY": sha256[:16] of stage/gen/MODEL_POLICY's plan.json and generated
        sources} for the symoc policies staged (stage.sh's layout; none in the smoke test)."""
        import hashlib
        import glob
        out = {}
        for m in self.a.models:
            for p in self.a.policies:
                d = os.path.join(self.a.stage, "gen", "%s_%s" % (m, p[len("symoc-"):]))
                if p not in SYMOC_POLICIES or not os.path.isdir(d):
                    continue
                h = hashlib.sha256()
                for f in sorted(glob.glob(os.path.join(d, "plan.json")) +
                                glob.glob(os.path.join(d, "*.cpp")) +
                                glob.glob(os.path.join(d, "*.h"))):
                    h.update(os.path.basename(f).encode() + b"\0")
                    h.update(open(f, "rb").read())
                out["%s/%s" % (m, p)] = h.hexdigest()[:16]
        return out

    def grid(self, p):
        g = self.a.grid.get(p) if self.a.grid else None
        return g or GRIDS[p]

    def log(self, msg):
        line = "[%6.1f s] %s" % (time.time() - self.t_start, msg)
        print(line, flush=True)
        if self.log_f:
            self.log_f.write(line + "\n")
            self.log_f.flush()

    def save(self):
        self.res["meta"]["elapsed_s"] = round(time.time() - self.t_start, 1)
        tmp = os.path.join(self.a.out, "results.json.tmp")
        with open(tmp, "w") as f:
            json.dump(self.res, f)
        os.replace(tmp, os.path.join(self.a.out, "results.json"))

    def spec(self, **kw):
        a = self.a
        s = dict(corpus=os.path.join(a.stage, "corpus"), device=a.device, libs=self.libs,
                 batch=a.batch, amp=a.amp, aux_ratio=a.aux_ratio, warmup_frac=a.warmup_frac,
                 val_batches=a.val_batches, final_val_batches=a.final_val_batches,
                 time_warmup=a.time_warmup, time_iters=a.time_iters, time_cap_s=a.time_cap_s,
                 seed=0, lr=None,
                 progress=a.verbose)
        s.update(kw)
        import models
        s["t"] = models.CONFIGS[s["model"]]["t"]
        if s["lr"] is None:
            s["lr"] = self.grid(s["policy"])[len(self.grid(s["policy"])) // 2 - 1]
        return s

    def pool(self, k):
        """K worker processes (spawned: CUDA). torch runs one CPU thread per worker (its CPU
        side only launches kernels); OpenBLAS, which symoc's host-side rules use, gets an
        equal share of the cores."""
        blas = max(1, (os.cpu_count() or 2) // max(1, k))
        os.environ["OMP_NUM_THREADS"] = str(blas)
        os.environ["OPENBLAS_NUM_THREADS"] = str(blas)
        return WorkerPool(k, initializer=_worker_init, initargs=(1,))

    def fault(self, s, r, retry):
        """Records a faulted run (results.json 'faults', the report) and whether it is retried."""
        rec = dict(spec_public(s), kind=s["kind"], step=r.get("step"), status=r.get("status"),
                   reason=(r.get("reason") or "")[:500], attempt=s.get("attempt", 1),
                   retried=retry, at_s=round(time.time() - self.t_start, 1))
        self.res["faults"].append(rec)
        self.log("FAULT %s %s lr %g seed %d %s at step %s: %s%s" % (
            s["model"], s["policy"], s["lr"], s["seed"], s.get("phase", s["kind"]), rec["step"],
            rec["reason"].split("\n")[0][:200], "; retrying once in a fresh process" if retry
            else ""))

    def run_sync(self, ex, s):
        """One job, waited for; a fault is recorded and retried once (fresh process)."""
        r = job_result(ex.submit(run_job, s), s)
        if is_fault(r):
            self.fault(s, r, retry=True)
            s = dict(s, attempt=2)
            r = job_result(ex.submit(run_job, s), s)
            if is_fault(r):
                self.fault(s, r, retry=False)
        return r

    # ---- phase 1: step times alone on the GPU
    def phase_time(self, ex):
        """One job at a time on the pool of phase train (its other workers idle)."""
        self.log("phase time: %d (model, policy) pairs, alone on the device"
                 % (len(self.a.models) * len(self.a.policies)))
        for m in self.a.models:
            for p in [p for p in self.a.policies if self.wanted(m, p)]:
                r = self.run_sync(ex, self.spec(kind="time", model=m, policy=p, phase="time"))
                self.res["timing"].append(r)
                self.log("time %-5s %-11s %s" % (m, p, _fmt_time(r)))
        for bsz in self.a.time_batches:   # other batch sizes, references only (sizing)
            for m in self.a.models:
                for p in [p for p in TORCH_POLICIES if p in self.a.policies]:
                    r = self.run_sync(ex, self.spec(kind="time", model=m, policy=p, batch=bsz,
                                                    phase="time-batch"))
                    self.res["timing_batches"].append(r)
                    self.log("time %-5s %-11s batch %d: %s" % (m, p, bsz, _fmt_time(r)))
        self.save()

    def ms(self, m, p):
        """Step time alone (ms): this call's time phase, else the --timing-from files'."""
        for r in self.res["timing"]:
            if r.get("model") == m and r.get("policy") == p and r.get("status") == "ok":
                return r["step_ms"]
        return self.src_alone.get((m, p))

    # ---- phase 2: how many concurrent runs
    def phase_calibrate(self):
        best_k, best_rate = 1, 0.0
        m, p = self.a.models[0], "adamw"
        for k in self.a.calibrate_k:
            start_at = time.time() + self.a.calibrate_start_s
            with self.pool(k) as ex:
                ss = [self.spec(kind="throughput", model=m, policy=p, phase="calibrate",
                                start_at=start_at, seconds=self.a.calibrate_s) for _ in range(k)]
                fs = [ex.submit(run_job, sp) for sp in ss]
                rs = [job_result(f, sp) for f, sp in zip(fs, ss)]
                for sp, r in zip(ss, rs):
                    if is_fault(r):   # not retried: the measurement needs all k at once
                        self.fault(sp, r, retry=False)
            ok = [r for r in rs if r.get("status") == "ok"]
            rate = sum(r["steps"] / r["seconds"] for r in ok)
            late = max((r["late_s"] for r in ok), default=0)
            self.res["calibration"].append(dict(k=k, model=m, policy=p, steps_per_s=round(rate, 2),
                                                per_run=[r.get("steps") for r in rs],
                                                late_s=late, errors=[r.get("reason") for r in rs
                                                                     if r.get("status") != "ok"]))
            self.log("calibrate K=%d: %.1f steps/s in all (%s)%s" % (
                k, rate, ", ".join(str(r.get("steps")) for r in rs),
                "  WARNING: a process was %.1f s late to start" % late if late > 0 else ""))
            if rate > best_rate * 1.05:
                best_k, best_rate = k, rate
        self.save()
        return best_k

    # ---- phases 3 + 4
    def pairs(self):
        """(model, policy) in schedule order: model by model (a model's table needs all its
        policies), the references first (every target is theirs), the optional symoc muon
        last, the rest in --policies order."""
        a = self.a
        rank = {p: i for i, p in enumerate(a.policies)}
        key = lambda p: (p != "adamw", p != "muon", p == "symoc-muon", rank[p])  # noqa: E731
        return [(m, p) for m in a.models for p in sorted(a.policies, key=key) if self.wanted(m, p)]

    def wanted(self, m, p):
        """--only's filter (every pair without it)."""
        return not self.a.only or "%s:%s" % (m, p) in self.a.only

    def priority(self, s):
        """Queue order: every grid run before any other run (a pair's refinement and seed runs
        need its grid, and a grid started late starves its pair: run 3 of 2026-12-02 started
        torch AdamW's grid at 458 s of 530 and cut its seed runs at step 400); then pair by
        pair (self.pairs()), a pair's refinement runs before its seed runs, so a pair's runs
        run side by side and finish as a set."""
        order = {mp: i for i, mp in enumerate(self.pairs())}
        return (s["phase"] != "grid", order.get((s["model"], s["policy"]), len(order)),
                PHASE_ORDER[s["phase"]], s["seed"], s.get("cand", 0), s["lr"] or 0.0)

    def train_jobs(self):
        """This call's runs that can be known now: the grid runs, the refinement runs of pairs
        whose grid is in the --best-from files, the seed runs of pairs whose lr is known there.
        A pair whose grid (or refinement) runs here waits on it (self.waiting): its next
        stage's runs are added when it ends (end_grid, end_refine)."""
        a = self.a
        jobs = []
        self.waiting = {}
        for m, p in self.pairs():
            key = "%s/%s" % (m, p)
            known = self.best_from.get(key)
            if known is not None:
                self.res["best_lr"][key] = known
            if known is None and "grid" in a.phases:
                jobs += [self.spec(kind="train", model=m, policy=p, lr=lr, seed=0,
                                   steps=a.grid_steps, eval_every=a.grid_eval_every,
                                   phase="grid") for lr in self.grid(p)]
                self.waiting[(m, p)] = "grid"
            elif "refine" in a.phases and (known is None and self.src_grid_pts.get((m, p)) or
                                           known is not None and
                                           not self.refined_in_files(m, p, known)):
                # the files' grid (a pair whose refinement there was cut has a grid, no lr)
                pts = self.src_grid_pts.get((m, p)) or {known["lr"]: known.get("val") or 0.0}
                if known is None:
                    best = rank_grid(pts)[0]
                    known = dict(lr=best, val=pts[best], stage="grid",
                                 edge=best in (min(pts), max(pts)),
                                 grid={str(lr): v for lr, v in pts.items()})
                jobs += self.start_refine(m, p, pts, known)
            elif known is not None and "seeds" in a.phases:
                jobs += self.seed_jobs(m, p, known["lr"])
            elif "seeds" in a.phases or "refine" in a.phases:
                self.res["best_lr"][key] = dict(lr=None, reason="no grid in this call and no "
                                                "best lr in --best-from")
        return jobs

    def refined_in_files(self, m, p, known):
        """Whether the --best-from files' lr of (m, p) was chosen by a refinement of this
        call's horizon that ran every candidate this call would run."""
        if known.get("stage") != "refine" or known.get("refine_steps") != self.a.refine_steps:
            return False
        cands = rank_grid(self.src_grid_pts.get((m, p)) or {})[:self.a.refine]
        done = {float(lr) for lr in (known.get("refine") or {})}
        return all(lr in done for lr in cands)

    def seed_specs(self, m, p, lr):
        a = self.a
        return [self.spec(kind="train", model=m, policy=p, lr=lr, seed=sd, steps=a.steps,
                          eval_every=a.eval_every, phase="seeds") for sd in self.seed_ids()]

    def seed_ids(self):
        return self.a.seed_ids or list(range(1, self.a.seeds + 1))

    def seed_jobs(self, m, p, lr):
        """(m, p)'s seed runs at lr, less those finished in the --best-from files
        (--skip-finished) and those that cannot finish in --max-run-s. A refinement run is
        never one of them: it ran at seed 0, the tuning seed, and was chosen as the best of
        K, so its final val is biased low (bench/README.md)."""
        a = self.a
        out = []
        for s in self.seed_specs(m, p, lr):
            if a.skip_finished and (m, p, s["seed"], s["lr"], s["steps"]) in self.finished:
                self.log("skip %s %s lr %g seed %d: finished in a --best-from file"
                         % (m, p, s["lr"], s["seed"]))
            elif self.fits(s):
                out.append(s)
        return out

    def phase_train(self, k, ex):
        a = self.a
        self.res["meta"]["concurrency"] = k
        pending = [s for s in self.train_jobs() if self.fits(s)]
        running = {}
        n_done = 0
        count = lambda ph: sum(s["phase"] == ph for s in pending)  # noqa: E731
        self.log("phase train: %d grid runs (%d steps), %s%d seed runs (%d steps) known now, "
                 "%d at a time" % (count("grid"), a.grid_steps, "%d refinement runs (%d steps, "
                                   "the grid's %d best lrs), " % (count("refine"),
                                                                  a.refine_steps, a.refine)
                                   if "refine" in a.phases else "", count("seeds"), a.steps, k))
        if 0 in self.seed_ids() and ("grid" in a.phases or "refine" in a.phases):
            self.log("note: seed 0 is the tuning seed (grid and refinement runs): its seed runs "
                     "are run anew and are not independent of the lr they run at")
        self.log_plan(self.simulate(pending, k, time.time() - self.t_start), k)
        while True:
            pending.sort(key=self.priority)
            while pending and len(running) < k:
                s = pending.pop(0)
                why = self.no_start(s, k)
                if why:
                    self.res["skipped"].append(dict(spec_public(s), reason=why))
                    self.log("skip %s %s lr %g seed %d %s: %s" % (
                        s["model"], s["policy"], s["lr"], s["seed"], s["phase"], why))
                    continue
                s["deadline"] = self.deadline
                running[ex.submit(run_job, s)] = s
            if running:
                done, _ = cf.wait(list(running), return_when=cf.FIRST_COMPLETED)
                for f in done:
                    s = running.pop(f)
                    r = job_result(f, s)
                    if is_fault(r):
                        retry = s.get("attempt", 1) == 1
                        self.fault(s, r, retry)
                        if retry:   # at its place in the queue, in a fresh process (WorkerPool)
                            pending.append(dict(s, attempt=2))
                            continue
                    n_done += 1
                    self.log("done %-5s %-11s lr %-7g seed %d %-6s: %s" % (
                        s["model"], s["policy"], s["lr"], s["seed"], s["phase"], _fmt_run(r)))
                    self.res[RESULTS_LIST[s["phase"]]].append(r)
            # a pair whose grid or refinement ended (some runs perhaps skipped or lost): its
            # next stage
            for key, stage in list(self.waiting.items()):
                if any((sp["model"], sp["policy"]) == key and sp["phase"] == stage
                       for sp in list(running.values()) + pending):
                    continue
                del self.waiting[key]
                pending += self.end_grid(*key) if stage == "grid" else self.end_refine(*key)
            self.save()
            if not pending and not running:
                break
        self.log("phase train: %d runs finished%s" % (n_done, ", %d fault(s) (%d retried)" % (
            len(self.res["faults"]), sum(1 for x in self.res["faults"] if x["retried"]))
            if self.res["faults"] else ""))

    def end_grid(self, m, p):
        """(m, p)'s grid ended: its best lr by last val (best_lr, stage 'grid'); then the
        runs of its refinement, else of its seeds."""
        a = self.a
        pts = [r for r in self.res["grid"] if r.get("model") == m and r.get("policy") == p]
        fin = {r["lr"]: r["last_val"] for r in pts
               if r.get("status") == "ok" and _finite(r.get("last_val"))}
        key = "%s/%s" % (m, p)
        if not fin:
            why = sorted({r.get("reason", r.get("status", "?")) for r in pts} |
                         {sk["reason"].split(" (")[0] for sk in self.res["skipped"]
                          if sk.get("model") == m and sk.get("policy") == p})
            self.res["best_lr"][key] = dict(lr=None, reason="no grid run finished: %s" % (
                "; ".join(why) or "none"))
            self.log("best %s: none (%s)" % (key, self.res["best_lr"][key]["reason"]))
            return []
        best = rank_grid(fin)[0]
        edge = best in (min(fin), max(fin))
        entry = dict(lr=best, val=fin[best], edge=edge, stage="grid",
                     grid={str(r["lr"]): r["last_val"] for r in pts if "last_val" in r})
        self.res["best_lr"][key] = entry
        self.log("best %s: lr %g (val %.4f, %d-step grid)%s" % (
            key, best, fin[best], a.grid_steps, "  [at the grid's edge]" if edge else ""))
        if "refine" in a.phases:
            return self.start_refine(m, p, fin, entry)
        return self.seed_jobs(m, p, best) if "seeds" in a.phases else []

    def start_refine(self, m, p, pts, entry):
        """The refinement runs of (m, p): its K best grid lrs (pts: {lr: last val}) for
        --refine-steps at seed 0, less those finished in the --best-from files
        (--skip-finished); when none is left to run, the refinement ends now."""
        a = self.a
        cands = rank_grid(pts)[:a.refine]
        reused = {}
        for lr in cands:
            r = self.src_refine.get((m, p), {}).get(lr)
            if a.skip_finished and r is not None:
                reused[lr] = r
                self.log("skip %s %s lr %g refine: finished in %s" % (m, p, lr, r["src"]))
        self.refine_state[(m, p)] = dict(cands=cands, grid_pts=dict(pts), entry=entry,
                                         reused=reused)
        jobs = [self.spec(kind="train", model=m, policy=p, lr=lr, seed=0, steps=a.refine_steps,
                          eval_every=a.eval_every, phase="refine", cand=i + 1)
                for i, lr in enumerate(cands) if lr not in reused]
        jobs = [j for j in jobs if self.fits(j)]
        self.log("refine %s/%s: lr %s (the grid's %d best) for %d steps" % (
            m, p, ", ".join("%g" % lr for lr in cands), len(cands), a.refine_steps))
        if jobs:
            self.waiting[(m, p)] = "refine"
            return jobs
        return self.end_refine(m, p)

    def end_refine(self, m, p):
        """(m, p)'s refinement ended: its lr is the candidate of the lowest final val (a tie:
        the grid's order) when every candidate finished (best_lr, stage 'refine'); a
        candidate not finished (skipped, truncated, lost) leaves the pair without a lr, and
        without seed runs here (a later call with --phases refine --skip-finished completes
        it)."""
        a = self.a
        st = self.refine_state[(m, p)]
        cands = st["cands"]
        runs = dict(st["reused"])
        mine = [r for r in self.res["refine"] if (r.get("model"), r.get("policy")) == (m, p)
                and r.get("lr") in cands and r.get("steps") == a.refine_steps]
        for r in mine:
            if r.get("status") in ("ok", "diverged"):
                runs[r["lr"]] = r
        vals = {lr: r.get("final_val") for lr, r in runs.items()}
        key = "%s/%s" % (m, p)
        g = st["entry"]
        base = dict(stage="refine", refine_steps=a.refine_steps, refine_k=a.refine,
                    candidates=cands, grid=g.get("grid") or {str(lr): v for lr, v in
                                                             st["grid_pts"].items()},
                    grid_lr=g.get("lr"), grid_val=g.get("val"),
                    refine={str(lr): vals[lr] for lr in cands if lr in vals},
                    refine_src={str(lr): r["src"] for lr, r in st["reused"].items()})
        missing = [lr for lr in cands if lr not in runs]
        ok = [lr for lr in cands if lr in runs and _finite(vals[lr])]
        if missing:
            why = []
            for lr in missing:
                recs = [r for r in mine if r.get("lr") == lr]
                sk = [x["reason"] for x in self.res["skipped"] if x.get("phase") == "refine"
                      and (x.get("model"), x.get("policy"), x.get("lr")) == (m, p, lr)]
                why.append("lr %g: %s" % (lr, ("%s at step %s" % (recs[-1]["status"],
                                                                   recs[-1].get("steps_done"))
                                               if recs else sk[-1].split(" (")[0] if sk
                                               else "not run")))
            entry = dict(base, lr=None, reason="refinement incomplete (%s)" % "; ".join(why))
        elif not ok:
            entry = dict(base, lr=None, reason="every refinement run diverged (lr %s): the "
                         "grid needs lower lrs" % ", ".join("%g" % lr for lr in cands))
        else:
            rank = {lr: i for i, lr in enumerate(cands)}
            best = min(ok, key=lambda lr: (vals[lr], rank[lr]))
            grid_lrs = sorted(st["grid_pts"])
            entry = dict(base, lr=best, val=vals[best],
                         edge=best in (grid_lrs[0], grid_lrs[-1]))
        self.res["best_lr"][key] = entry
        if entry["lr"] is None:
            self.log("best %s: none (%s)" % (key, entry["reason"]))
            return []
        self.log("best %s: lr %g (final val %.4f, %d-step refinement of %s; %s)%s" % (
            key, entry["lr"], entry["val"], a.refine_steps,
            ", ".join("%g: %.4f" % (lr, vals[lr]) for lr in cands),
            "the grid chose %g" % g["lr"] if g.get("lr") != entry["lr"] else
            "the grid's choice too", "  [at the grid's edge]" if entry["edge"] else ""))
        return self.seed_jobs(m, p, entry["lr"]) if "seeds" in a.phases else []

    # ---- the estimate: how long each run takes at K concurrent runs
    def shared_ms(self, m, p, k):
        """(ms per step of (m, p) among K concurrent runs, where the figure comes from):
        seed runs first, grid runs second (the grids of a call's first minutes ran beside
        fewer or lighter runs: run 3's symoc auto took 81 ms/step in its grid, 118 in its
        seed runs): this call's, else the --timing-from files' scaled by K / their
        concurrency (time slicing; pessimistic: 16 runs gave 1.26x the steps/s of 8 on the
        H200); else the step alone x the contention those files show (median over their
        pairs of shared / alone), else x --contention."""
        def mine(recs):
            return [r["ms_per_step"] for r in recs if r.get("model") == m and
                    r.get("policy") == p and r.get("ms_per_step") and
                    r.get("status") in ("ok", "truncated")]
        for own, src in ((mine(self.res["runs"]), self.src_shared.get((m, p))),
                         (mine(self.res["grid"]), self.src_grid.get((m, p)))):
            if own:
                return statistics.median(own), "this call"
            if src:
                ms, k_src, label = src
                return ms * k / k_src, "%s at %d" % (label, k_src)
        alone = self.ms(m, p)
        if alone is None:
            return None, "no step time"
        ratios = [ms * k / k_src / self.ms(mm, pp) for (mm, pp), (ms, k_src, _)
                  in {**self.src_grid, **self.src_shared}.items() if self.ms(mm, pp)]
        if ratios:
            c = statistics.median(ratios)
            return alone * c, "alone x %.1f (contention of --timing-from)" % c
        return alone * self.a.contention, "alone x --contention %.1f" % self.a.contention

    def est_run_s(self, s, k):
        ms, _ = self.shared_ms(s["model"], s["policy"], k)
        if ms is None:
            return None
        return ms * s["steps"] / 1000.0 + self.a.run_overhead_s

    def no_start(self, s, k):
        """Why run s must not start now (None: start it)."""
        left = self.deadline - time.time()
        if left < self.a.min_start_s:
            return "budget: --budget-s reached"
        est = self.est_run_s(s, k)
        if est is not None and est > left and not self.a.allow_truncated:
            return ("would not finish: estimated %.0f s > %.0f s left of --budget-s "
                    "(--allow-truncated starts it anyway)" % (est, left))
        return None

    def simulate(self, jobs, k, t0):
        """The schedule phase_train will follow, with the estimated run lengths: the same
        queue order, K slots, a pair's refinement runs after the last run of its grid here
        (at its best lrs, unknown yet: 'grid #i'), its seed runs after its grid and
        refinement (at the lr they choose, unknown yet), runs that would end past --budget-s
        not started. [dict(s, start, end, fate)], fate: 'fits', 'will not fit', 'budget',
        'no grid' (all its grid runs left out), 'no lr' (a refinement run left out),
        'no estimate' (no step time: counted as 0 s)."""
        import heapq
        a = self.a
        pending = list(jobs)
        for (m, p), stage in self.waiting.items():   # runs that wait on this call's stages
            if stage == "grid" and "refine" in a.phases:
                pending += [dict(self.spec(kind="train", model=m, policy=p, seed=0,
                                           steps=a.refine_steps, eval_every=a.eval_every,
                                           phase="refine"), lr=None, cand=i + 1)
                            for i in range(min(a.refine, len(self.grid(p))))]
            if "seeds" in a.phases:
                pending += [dict(s, lr=None) for s in self.seed_specs(m, p, None)]
        left, ran, total = {}, {}, {}
        for s in pending:
            kk = (s["model"], s["policy"], s["phase"])
            left[kk] = left.get(kk, 0) + 1
            total[kk] = total.get(kk, 0) + 1

        def earlier(s):
            return [(s["model"], s["policy"], ph) for ph, i in PHASE_ORDER.items()
                    if i < PHASE_ORDER[s["phase"]]]

        def lost(s):    # an earlier stage of the pair here that will not give it a lr
            for kk in earlier(s):
                if kk in total and ran.get(kk, 0) < (1 if kk[2] == "grid" else total[kk]):
                    return "no grid" if kk[2] == "grid" else "no lr"
            return None
        budget = self.a.budget_s
        t, running, plan, seq = t0, [], [], 0
        while pending or running:
            pending.sort(key=self.priority)
            while len(running) < k:
                s = next((x for x in pending
                          if not any(left.get(kk, 0) for kk in earlier(x))), None)
                if s is None:
                    break
                pending.remove(s)
                kk = (s["model"], s["policy"], s["phase"])
                est = self.est_run_s(s, k)
                row = dict(s=s, start=t, end=t + (est or 0.0), est=est)
                if lost(s):
                    row["fate"] = lost(s)
                elif budget - t < a.min_start_s:
                    row["fate"] = "budget"
                elif est is not None and t + est > budget and not a.allow_truncated:
                    row["fate"] = "will not fit"
                else:
                    row["fate"] = ("no estimate" if est is None else
                                   "truncated" if t + est > budget else "fits")
                plan.append(row)
                if row["fate"] in ("fits", "truncated", "no estimate"):
                    seq += 1
                    heapq.heappush(running, (row["end"], seq, s))
                    ran[kk] = ran.get(kk, 0) + 1
                else:
                    left[kk] -= 1
            if not running:
                break
            t, _, s = heapq.heappop(running)
            left[(s["model"], s["policy"], s["phase"])] -= 1
        return plan

    def log_plan(self, plan, k, every=False):
        """The estimate, before the runs: per pair when its grid, its refinement and its seed
        runs end, the runs that will not fit the budget, the estimated end."""
        if not plan:
            self.log("plan: nothing to run")
            return
        a = self.a
        srcs = {}
        for row in plan:
            s = row["s"]
            ms, src = self.shared_ms(s["model"], s["policy"], k)
            srcs[(s["model"], s["policy"])] = "%s/%s %s ms (%s)" % (
                s["model"], s["policy"], "%.0f" % ms if ms else "?", src)
        self.log("plan: %d concurrent runs, --budget-s %.0f, ms/step shared: %s" % (
            k, a.budget_s, "; ".join(srcs.values())))

        def lr_of(s):
            return ("%g" % s["lr"] if s["lr"] is not None else
                    "grid #%d" % s["cand"] if s.get("cand") else "best")
        if every:
            for row in plan:
                s = row["s"]
                self.log("  %-6s %-5s %-15s lr %-9s seed %d %5d steps  %6.0f .. %6.0f s  %s" % (
                    s["phase"], s["model"], s["policy"], lr_of(s), s["seed"], s["steps"],
                    row["start"], row["end"], row["fate"]))
        for (m, p) in self.pairs():
            for phase in PHASE_ORDER:
                rows = [r for r in plan if (r["s"]["model"], r["s"]["policy"]) == (m, p)
                        and r["s"]["phase"] == phase]
                if not rows:
                    continue
                ok = [r for r in rows if r["fate"] in ("fits", "no estimate")]
                bad = [r for r in rows if r not in ok]
                self.log("  %-5s %-15s %-5s %d x %d steps: %s%s" % (
                    m, p, phase, len(rows), rows[0]["s"]["steps"],
                    "ends at %.0f s" % max(r["end"] for r in ok) if ok else "none runs",
                    "; NOT RUN: %s" % ", ".join(
                        "%s %s (%s%s)" % ("seed %d" % r["s"]["seed"] if phase == "seeds" else
                                          "lr %s" % lr_of(r["s"]), r["fate"].upper(),
                                          "est. end %.0f s" % r["end"], "")
                        for r in bad) if bad else ""))
        ran = [r for r in plan if r["fate"] in ("fits", "truncated", "no estimate")]
        end = max((r["end"] for r in ran), default=0.0)
        left_out = [r for r in plan if r not in ran]
        self.res["meta"]["estimate_s"] = round(end, 1)
        self.log("runs: %s" % ", ".join(
            "%d %s (%d steps)" % (n, ph, steps) for ph, steps in
            (("grid", a.grid_steps), ("refine", a.refine_steps), ("seeds", a.steps))
            for n in [sum(r["s"]["phase"] == ph for r in plan)] if n))
        self.log("estimate: the last run ends at %.0f s of --budget-s %.0f; %s" % (
            end, a.budget_s, "every run fits" if not left_out and end <= a.budget_s else
            "%d of %d runs WILL NOT FIT (not started; split the protocol over calls: "
            "bench/README.md)" % (len(left_out), len(plan)) if left_out else
            "runs past the budget will be truncated"))

    def fits(self, s):
        """False (and recorded) when the measured step time says the run cannot finish in
        --max-run-s (a policy still on a slow path)."""
        ms = self.ms(s["model"], s["policy"])
        if ms is None or self.a.max_run_s <= 0:
            return True
        est = ms * s["steps"] / 1000.0 * self.a.contention
        if est <= self.a.max_run_s:
            return True
        self.res["skipped"].append(dict(spec_public(s), reason="estimated %.0f s (%.1f ms/step "
                                        "alone x %d steps x contention %.1f) > --max-run-s %.0f"
                                        % (est, ms, s["steps"], self.a.contention,
                                           self.a.max_run_s)))
        self.log("skip %s %s lr %g seed %d: estimated %.0f s > %.0f s" % (
            s["model"], s["policy"], s["lr"], s["seed"], est, self.a.max_run_s))
        return False


def _finite(x):
    return isinstance(x, (int, float)) and math.isfinite(x)


def rank_grid(pts):
    """A grid's lrs, best first: by last val, a tie by the smaller lr (the grid's order)."""
    return [lr for lr, _ in sorted(pts.items(), key=lambda kv: (kv[1], kv[0]))]


def models_config(m):
    import models
    return models.CONFIGS[m]


def _fmt_time(r):
    if r.get("status") != "ok":
        return "%s: %s" % (r.get("status"), r.get("reason", "")[:200])
    return "step %.2f ms (optimizer %.2f ms), p90 %.2f, %.1f GiB" % (
        r["step_ms"], r["opt_ms"], r["step_ms_p90"], r["max_mem_gib"] or 0)


def _fmt_run(r):
    if r.get("status") not in ("ok", "truncated", "diverged"):
        return "%s: %s" % (r.get("status"), r.get("reason", "")[:300])
    return "%s, val %.4f at step %d (final %.4f), %.1f s train, %.2f ms/step" % (
        r["status"], r["last_val"], r["steps_done"], r["final_val"], r["train_s"],
        r["ms_per_step"])


def parse_grids(a):
    if isinstance(a.grid, dict):
        return
    grids = {}
    for item in a.grid or []:
        p, _, lrs = item.partition("=")
        if p not in POLICIES or not lrs:
            sys.exit("bench.py: error: --grid %s: want POLICY=LR,LR,... with POLICY in %s"
                     % (item, ", ".join(POLICIES)))
        grids[p] = [float(x) for x in lrs.split(",")]
    a.grid = grids


DEFAULT_REFINE_K = 2


def normalize_phases(a):
    """a.phases in run order (train = grid + seeds, + refine when --refine K > 0); a.refine
    and a.refine_steps resolved (refine: K, 0 = off; refine_steps: --steps by default)."""
    ph = list(a.phases)
    k = getattr(a, "refine", None)
    if k is not None and k < 0:
        sys.exit("bench.py: error: --refine %d: want K >= 0" % k)
    if "refine" in ph and k == 0:
        sys.exit("bench.py: error: --phases refine with --refine 0: want --refine K > 0")
    if k is None:
        k = DEFAULT_REFINE_K if "refine" in ph else 0
    a.refine = k
    if "train" in ph:
        ph += ["grid", "seeds"] + (["refine"] if k > 0 else [])
    a.phases = [p for p in ("time", "calibrate", "grid", "refine", "seeds") if p in ph]
    if getattr(a, "refine_steps", None) is None:
        a.refine_steps = a.steps
    if a.refine_steps <= 0:
        sys.exit("bench.py: error: --refine-steps %d: want N > 0" % a.refine_steps)


def cmd_plan(a, b):
    """--plan-only: the schedule with the step times of --timing-from; nothing runs."""
    k = max(1, a.concurrency)
    t0 = 0.0
    if "time" in a.phases:
        t0 = len(a.models) * len(a.policies) * (a.time_cap_s + 4.0)
        b.log("time phase: about %.0f s (%d pairs x (--time-cap-s %.0f + 4 s))" % (
            t0, len(a.models) * len(a.policies), a.time_cap_s))
    b.res["meta"]["concurrency"] = k
    b.log_plan(b.simulate(b.train_jobs(), k, t0), k, every=True)
    return 0


def cmd_run(a):
    parse_grids(a)
    normalize_phases(a)
    b = Bench(a)
    if a.plan_only:
        return cmd_plan(a, b)
    b.log("training benchmark: models %s, policies %s, device %s, torch %s" % (
        ",".join(a.models), ",".join(a.policies), b.res["meta"]["device"],
        b.res["meta"]["torch"]))
    for m, s in b.res["meta"]["sizes"].items():
        b.log("  %s: %.2f M parameters, %d tokens/step (batch %d x %d)" % (
            m, s["params"] / 1e6, s["tokens_per_step"], a.batch, s["config"]["t"]))
    # time first (the numbers that size a run), then calibrate, then train; without
    # calibration one pool of --concurrency workers serves both time and train.
    calibrate = "calibrate" in a.phases or a.concurrency == 0
    k = max(1, a.concurrency)
    ex = b.pool(1 if calibrate else k)
    try:
        if "time" in a.phases:
            b.phase_time(ex)
        if calibrate:
            ex.shutdown()
            k = max(1, b.phase_calibrate() if a.calibrate_k else 1)
            b.log("concurrency: %d" % k)
            ex = b.pool(k)
        if "grid" in a.phases or "seeds" in a.phases:
            b.phase_train(k, ex)
    finally:
        ex.shutdown()
    b.save()
    b.log("results: %s" % os.path.join(a.out, "results.json"))
    return 0


# =========================================================================== smoke (ctest)
def cmd_smoke(a):
    """CPU, tiny models, torch 1.13 or later: export + symoc compile + link one policy per
    model, then a few steps of every policy through the same worker code as `run`."""
    try:
        import torch  # noqa: F401
    except ImportError:
        print("SKIP: torch is not importable")
        return 77
    import subprocess
    import glob
    import models
    os.makedirs(a.work, exist_ok=True)
    import shutil
    shutil.rmtree(os.path.join(a.work, "out"), ignore_errors=True)
    t0 = time.time()
    # a small corpus: a few of its sources (the real one is 70 MB)
    cdir = os.path.join(a.work, "corpus")
    os.makedirs(cdir, exist_ok=True)
    blob = b"\0".join(open(os.path.join(HERE, f), "rb").read()
                      for f in ("models.py", "corpus.py", "bench.py"))
    cut = int(0.8 * len(blob))
    for split, part in (("train", blob[:cut]), ("val", blob[cut:])):
        with open(os.path.join(cdir, split + ".bin"), "wb") as f:
            f.write(part)
    libs = {}
    policy = a.policy
    for m in ("llama-tiny", "gpt2-tiny"):
        onnx_path = os.path.join(a.work, m + ".onnx")
        models.export_onnx(m, onnx_path)
        gen = os.path.join(a.work, "gen_%s_%s" % (m, policy))
        plan_policy = policy[len("symoc-"):]  # symoc-auto-norm: --policy auto-norm
        name = "%s_%s" % (m.replace("-", "_"), plan_policy.replace("-", "_"))
        subprocess.run([a.symoc, "compile", onnx_path,
                        *COMPILE_ARGS.get(plan_policy, ["--policy", plan_policy]),
                        "--name", name, "-o", gen], check=True, stdout=subprocess.DEVNULL)
        cpp = glob.glob(os.path.join(gen, "*_optimizer.cpp"))[0]
        so = os.path.join(a.work, "lib%s_optimizer.so" % name)
        subprocess.run([os.environ.get("CXX", "g++"), "-std=c++17", "-O1", "-fPIC", "-shared",
                        "-fvisibility=hidden", "-I", gen, "-I",
                        os.path.join(ROOT, "runtime", "include"), cpp, a.runtime_lib,
                        "-Wl,--exclude-libs,ALL", *a.link.split(), "-o", so], check=True)
        libs["%s/%s" % (m, policy)] = so
    print("smoke: exported, compiled and linked in %.1f s" % (time.time() - t0), flush=True)
    with open(os.path.join(a.work, "libs.json"), "w") as f:
        json.dump(libs, f)
    args = run_parser().parse_args(
        ["run", "--stage", a.work, "--out", os.path.join(a.work, "out"), "--device", "cpu",
         "--models", "llama-tiny", "gpt2-tiny", "--policies", "adamw", "muon", policy,
         "--batch", "4", "--grid-steps", "3", "--steps", "6", "--seeds", "1",
         "--eval-every", "3", "--grid-eval-every", "3", "--val-batches", "2",
         "--final-val-batches", "2", "--concurrency", "2", "--time-iters", "2",
         "--time-warmup", "1", "--budget-s", "300", "--no-amp", "--phases", "time", "train",
         "--refine", "2", "--grid", "adamw=1e-3,3e-3", "--grid", "muon=0.01,0.02",
         "--grid", "%s=0.01,0.02" % policy])
    cmd_run(args)
    res = json.load(open(os.path.join(a.work, "out", "results.json")))
    problems = []
    muon_exists = hasattr(torch.optim, "Muon")
    for m in ("llama-tiny", "gpt2-tiny"):
        for p in ("adamw", "muon", policy):
            rs = [r for r in res["runs"] if r["model"] == m and r["policy"] == p]
            gs = [r for r in res["grid"] if r["model"] == m and r["policy"] == p]
            if p == "muon" and not muon_exists:
                if not gs or any(r["status"] != "skipped" or "does not exist" not in r["reason"]
                                 for r in gs):
                    problems.append("%s/%s: expected 'skipped: torch.optim.Muon does not "
                                    "exist', got %s" % (m, p, [r.get("status") for r in gs]))
                continue
            fs = [r for r in res["refine"] if r["model"] == m and r["policy"] == p]
            if len(gs) != 2 or len(rs) != 1 or len(fs) != 2:
                problems.append("%s/%s: %d grid runs, %d refinement runs and %d seed runs (want "
                                "2, 2 and 1): %s" % (m, p, len(gs), len(fs), len(rs),
                                                     [r.get("reason") for r in gs + fs + rs
                                                      if r.get("reason")]))
                continue
            # the lr of the seed run: the refinement run of the lowest final val
            best = res["best_lr"]["%s/%s" % (m, p)]
            want = min(fs, key=lambda r: r["final_val"])["lr"]
            if best.get("stage") != "refine" or best["lr"] != want or rs[0]["lr"] != want or \
                    any(r["steps"] != 6 or r["seed"] != 0 or r["status"] != "ok" for r in fs):
                problems.append("%s/%s: refinement %s, best %s, seed run at lr %g" % (
                    m, p, [(r["lr"], r["seed"], r["steps"], r["status"], r["final_val"])
                           for r in fs], best, rs[0]["lr"]))
            r = rs[0]
            steps = [c[0] for c in r["curve"]]
            if r["status"] != "ok" or steps != [0, 3, 6] or not math.isfinite(r["final_val"]):
                problems.append("%s/%s: status %s, eval steps %s, final %s (%s)" % (
                    m, p, r["status"], steps, r.get("final_val"), r.get("reason")))
            elif not r["curve"][-1][2] < r["curve"][0][2]:
                problems.append("%s/%s: val loss did not fall in 6 steps: %s"
                                % (m, p, [c[2] for c in r["curve"]]))
    times = [r for r in res["timing"] if r["status"] == "ok"]
    if len(times) != 4 + (2 if muon_exists else 0):
        problems.append("timing: %d ok rows" % len(times))
    # the report renders from these results
    import report
    md = report.render(res, plots_dir=None)
    if "| policy |" not in md:
        problems.append("report: no table rendered")
    if "chosen by the 6-step refinement" not in md or "6-step: " not in md:
        problems.append("report: the lr column does not show the refinement")
    # a second call of a split protocol: seed 2 of llama-tiny at the first call's best lrs
    # (no grid, no time phase), then one report of both calls
    out2 = os.path.join(a.work, "out2")
    shutil.rmtree(out2, ignore_errors=True)
    first = os.path.join(a.work, "out", "results.json")
    args2 = run_parser().parse_args(
        ["run", "--stage", a.work, "--out", out2, "--device", "cpu", "--models", "llama-tiny",
         "--policies", "adamw", policy, "--batch", "4", "--grid-steps", "3", "--steps", "6",
         "--seeds", "1", "--seed-ids", "2", "--eval-every", "3", "--grid-eval-every", "3",
         "--val-batches", "2", "--final-val-batches", "2", "--concurrency", "2",
         "--budget-s", "300", "--no-amp", "--phases", "seeds", "--best-from", first])
    cmd_run(args2)
    res2 = json.load(open(os.path.join(out2, "results.json")))
    merged = report.load_results([first, os.path.join(out2, "results.json")])
    for p in ("adamw", policy):
        lr1 = res["best_lr"]["llama-tiny/%s" % p]["lr"]
        got = [(r["policy"], r["seed"], r["lr"], r["status"]) for r in res2["runs"]]
        if res2["grid"] or (p, 2, lr1, "ok") not in got:
            problems.append("second call %s: grid %d runs, seed runs %s (want seed 2 at %g)"
                            % (p, len(res2["grid"]), got, lr1))
        row = report.analyse(merged)["llama-tiny"]["rows"][p]
        if row["n_final"] != 2:
            problems.append("merged report %s: %d finished seeds, want 2" % (p, row["n_final"]))
    if "seeds AB" not in report.render(merged):
        problems.append("merged report: no 'seeds AB' in the from column")
    print("smoke: %.1f s in all" % (time.time() - t0))
    if problems:
        print("FAIL:\n  " + "\n  ".join(problems))
        return 1
    print("PASS: %d grid runs, %d refinement runs, %d seed runs, %d timings%s" % (
        len(res["grid"]), len(res["refine"]), len(res["runs"]), len(times),
        "" if muon_exists else "; torch.optim.Muon does not exist in torch %s: skipped"
        % torch.__version__))
    return 0


# =========================================================================== CLI
def run_parser():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--stage", required=True, help="folder with corpus/ and libs.json")
    r.add_argument("--out", default=os.environ.get("OUT", "out"))
    r.add_argument("--device", default="cuda")
    r.add_argument("--models", nargs="+", default=["llama", "gpt2"])
    r.add_argument("--policies", nargs="+", default=list(POLICIES), choices=POLICIES)
    r.add_argument("--only", nargs="+", metavar="MODEL:POLICY",
                   help="run only these (model, policy) pairs of --models x --policies (a call "
                        "for one policy on one model, beside another's pairs)")
    r.add_argument("--phases", nargs="+", default=["time", "train"],
                   choices=["time", "calibrate", "train", "grid", "refine", "seeds"],
                   help="train = grid + seeds (+ refine with --refine K > 0); a call of a "
                        "split protocol runs e.g. 'time grid', then 'refine seeds' with "
                        "--best-from")
    r.add_argument("--refine", type=int, nargs="?", const=2, default=None, metavar="K",
                   help="after a pair's grid, run its K best grid lrs (K alone: 2) for "
                        "--refine-steps at seed 0; the pair's lr is then the best of those by "
                        "final val (tie: the grid's order). Default 0 (off); --phases refine "
                        "alone means K = 2")
    r.add_argument("--refine-steps", type=int, metavar="N",
                   help="steps of a refinement run (default: --steps, the seed runs' horizon)")
    r.add_argument("--best-from", nargs="+", metavar="RESULTS.json",
                   help="take each (model, policy)'s best lr from these earlier calls (a lr "
                        "chosen by a refinement beats a grid's; then a later file wins) "
                        "instead of running its grid (and refinement) here")
    r.add_argument("--timing-from", nargs="*", metavar="RESULTS.json",
                   help="step times (alone and shared) for the estimate; default: the "
                        "--best-from files")
    r.add_argument("--plan-only", action="store_true",
                   help="print the schedule, the estimated end and the runs that will not "
                        "fit --budget-s (step times from --timing-from), run nothing")
    r.add_argument("--skip-finished", action="store_true",
                   help="resume: seed runs and refinement runs finished in the --best-from "
                        "files (same model, policy, seed, lr and steps) are not run again")
    r.add_argument("--seed-ids", type=int, nargs="+",
                   help="the seeds of this call (default 1..--seeds)")
    r.add_argument("--allow-truncated", action="store_true",
                   help="start a run even when it is estimated to end past --budget-s "
                        "(it is cut there, 'truncated'); default: not started")
    r.add_argument("--run-overhead-s", type=float, default=6.0,
                   help="per run, for the estimate: process, corpus, model, evaluations "
                        "(run 3: 4-7 s)")
    r.add_argument("--batch", type=int, default=32)
    r.add_argument("--grid-steps", type=int, default=200)
    r.add_argument("--steps", type=int, default=2000)
    r.add_argument("--seeds", type=int, default=3)
    r.add_argument("--eval-every", type=int, default=100)
    r.add_argument("--grid-eval-every", type=int, default=50)
    r.add_argument("--val-batches", type=int, default=4, help="fixed batches per curve point")
    r.add_argument("--final-val-batches", type=int, default=32)
    r.add_argument("--warmup-frac", type=float, default=0.05)
    r.add_argument("--aux-ratio", type=float, default=0.1,
                   help="lr of AdamW-stepped blocks of Muon-type policies = lr * this")
    r.add_argument("--grid", action="append", metavar="POLICY=LR,LR,...",
                   help="replace a policy's lr grid")
    r.add_argument("--concurrency", type=int, default=16,
                   help="concurrent runs on the GPU (0: calibrate; 16 measured best of 1, 8, "
                        "16 on the H200)")
    r.add_argument("--speedup", type=float, default=4.0,
                   help="throughput gain of --concurrency runs over one, for the estimate "
                        "(measured: 4.3 at 16)")
    r.add_argument("--calibrate-k", type=int, nargs="*", default=[1, 4, 8, 12])
    r.add_argument("--calibrate-s", type=float, default=8.0)
    r.add_argument("--calibrate-start-s", type=float, default=25.0)
    r.add_argument("--time-warmup", type=int, default=5)
    r.add_argument("--time-iters", type=int, default=20)
    r.add_argument("--time-cap-s", type=float, default=10.0,
                   help="stop timing a (model, policy) after this (at least 2 samples)")
    r.add_argument("--time-batches", type=int, nargs="*", default=[],
                   help="also time the torch references at these batch sizes")
    r.add_argument("--budget-s", type=float, default=450.0)
    r.add_argument("--min-start-s", type=float, default=5.0,
                   help="no run starts when less than this is left of the budget")
    r.add_argument("--max-run-s", type=float, default=600.0,
                   help="skip runs whose measured step time says they would take longer")
    r.add_argument("--contention", type=float, default=3.0,
                   help="slow-down of a run among --concurrency others (for --max-run-s)")
    r.add_argument("--no-amp", dest="amp", action="store_false")
    r.add_argument("--verbose", action="store_true", help="print every curve point")
    s = sub.add_parser("smoke")
    s.add_argument("--symoc", required=True)
    s.add_argument("--runtime-lib", required=True)
    s.add_argument("--link", default="")
    s.add_argument("--work", required=True)
    s.add_argument("--policy", default="symoc-auto", choices=SYMOC_POLICIES)
    c = sub.add_parser("compile-args", help="the `symoc compile` arguments of a policy (stage.sh)")
    c.add_argument("policy", help="a symoc policy without the 'symoc-' prefix, e.g. auto-embrow")
    return ap


def main(argv=None):
    a = run_parser().parse_args(argv)
    if a.cmd == "smoke":
        return cmd_smoke(a)
    if a.cmd == "compile-args":
        if "symoc-" + a.policy not in SYMOC_POLICIES:
            sys.exit("bench.py: error: unknown symoc policy %r (one of %s)"
                     % (a.policy, ", ".join(p[6:] for p in SYMOC_POLICIES)))
        print(" ".join(COMPILE_ARGS.get(a.policy, ["--policy", a.policy])))
        return 0
    bad = [x for x in a.only or [] if x.count(":") != 1 or x.split(":")[0] not in a.models
           or x.split(":")[1] not in a.policies]
    if bad:
        sys.exit("bench.py: error: --only %s: not a MODEL:POLICY pair of --models x --policies"
                 % " ".join(bad))
    if a.device == "cuda" and not a.plan_only:
        import torch
        if not torch.cuda.is_available():
            sys.exit("bench.py: error: --device cuda but torch %s sees no CUDA device"
                     % torch.__version__)
    return cmd_run(a)


if __name__ == "__main__":
    sys.exit(main())
