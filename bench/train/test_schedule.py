#!/usr/bin/env python3
"""bench.py's scheduling over one or several GPU calls and report.py's merge (no GPU, seconds).

1. order: with a fake job runner (threads that sleep instead of training), every grid run is
   submitted before any seed run, and seed runs go pair by pair (references first), so a
   pair's seeds run side by side (run 3 of 2026-12-02 started torch AdamW's grid at 458 s of
   530 because seed runs had priority, and cut its seeds at step 400).
2. --best-from + the budget: a seeds-only call takes each pair's lr from an earlier file's
   grid (no grid run here), a pair without one is recorded and not run, and a seed run whose
   estimated length (ms/step of --timing-from) exceeds what is left of --budget-s is not
   started, recorded as 'would not finish', and marked WILL NOT FIT by the plan beforehand;
   --skip-finished runs only the seeds not finished in the earlier file.
3. --best-from refuses a file of another protocol with one line.
4. --refine (a pair's K best grid lrs rerun for --refine-steps at seed 0; the pair's lr is
   the best of those by final val): with a fake whose 20-step grid prefers lr 0.04 and whose
   40-step runs prefer 0.02, the seeds run at the refinement's 0.02; exactly the grid's K best
   are refined (K = 1, 2, 3 over 2- and 3-point grids); refinement runs follow every grid run
   and precede their pair's seed runs, at seed 0 and the seed runs' evaluation, and are never
   recorded as seed runs; a tie keeps the grid's order, a diverged run loses. --best-from: a
   refined lr beats a later file's grid-only one (bench.py and report.py), a call of
   --phases refine refines a file's grid, --skip-finished reuses a file's finished
   refinement run (and its value decides), a pair refined there is not refined again; a
   refinement run past the budget is not started and leaves the pair without a lr;
   --plan-only counts the refinement runs (0, 6, 12 for K = 0, 1, 2) and places them between
   a pair's grid and seeds; report.py's lr column shows both stages and the one that chose.
5. report.py merges two calls' files: a finished run beats a truncated one whatever the file
   order, a later file's finished run replaces an earlier truncated one, every number says
   its file, faults are counted per policy; files of another protocol are refused with one
   line (the CLI, exit status 1).
"""
import concurrent.futures as cf
import contextlib
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import check_main  # noqa: E402  (this folder, after the path)


class FakeRunner:
    """An executor for Bench.phase_train: K threads; a run 'trains' for steps x ms_per_step
    of sleep and returns a finished record with a final val that depends on lr."""

    def __init__(self, k, ms_per_step=1.0, value=None):
        self.ex = cf.ThreadPoolExecutor(k)
        self.ms = ms_per_step
        self.calls = []
        self.specs = []
        self.lock = threading.Lock()
        # best lr of every grid: the one nearest 0.02
        self.value = value or (lambda s: 2.0 + abs(s["lr"] - 0.02))

    def submit(self, fn, s):
        with self.lock:
            self.calls.append((s["phase"], s["model"], s["policy"], s["seed"], s["lr"]))
            self.specs.append(dict(s))
        return self.ex.submit(self.fake, s)

    def fake(self, s):
        import bench
        time.sleep(s["steps"] * self.ms / 1000.0)
        v = self.value(s)
        status = "ok" if v == v else "diverged"
        return dict(bench.spec_public(s), kind="train", status=status, final_val=v, last_val=v,
                    steps_done=s["steps"], train_s=0.01, ms_per_step=self.ms,
                    curve=[[0, None, 3.0, 0.0], [s["steps"], 3.0, v, 0.01]])


def short_long(s):
    """A grid that misleads, as on the H200: at the grid's 20 steps the lr nearest 0.04 is
    best, at the refinement's 40 steps the one nearest 0.02 (symoc-auto's grid 0.01, 0.02,
    0.04: the grid ranks 0.04, 0.02, 0.01; the refinement picks 0.02)."""
    return 2.0 + abs(s["lr"] - 0.04) if s["phase"] == "grid" else 1.0 + abs(s["lr"] - 0.02)


def bench_args(tmp, *extra):
    import bench
    a = bench.run_parser().parse_args(
        ["run", "--stage", tmp, "--out", os.path.join(tmp, "out"), "--device", "cpu",
         "--models", "llama-tiny", "gpt2-tiny", "--policies", "symoc-auto", "muon", "adamw",
         "--grid", "adamw=0.001,0.002", "--grid", "muon=0.01,0.02",
         "--grid", "symoc-auto=0.01,0.02,0.04", "--seeds", "3", "--steps", "40",
         "--grid-steps", "20", "--batch", "4", "--budget-s", "120", "--run-overhead-s", "0",
         *extra])
    bench.parse_grids(a)
    bench.normalize_phases(a)
    return a


def quiet(fn, *args):
    with contextlib.redirect_stdout(io.StringIO()) as out:
        r = fn(*args)
    return r, out.getvalue()


def check_order(problems):
    import bench
    with tempfile.TemporaryDirectory() as tmp:
        b = bench.Bench(bench_args(tmp, "--phases", "grid", "seeds"))
        ex = FakeRunner(2)
        quiet(b.phase_train, 2, ex)
    calls = ex.calls
    phases = [c[0] for c in calls]
    n_grid = 2 * (2 + 2 + 3)
    if phases.count("grid") != n_grid or phases.count("seeds") != 2 * 3 * 3:
        problems.append("order: %d grid and %d seed runs submitted, want %d and 18"
                        % (phases.count("grid"), phases.count("seeds"), n_grid))
        return
    if "grid" in phases[phases.index("seeds"):]:
        problems.append("order: a seed run was submitted before the last grid run: %s"
                        % [c[:2] for c in calls])
    pairs = [(c[1], c[2]) for c in calls if c[0] == "seeds"]
    want = [(m, p) for m in ("llama-tiny", "gpt2-tiny") for p in ("adamw", "muon", "symoc-auto")
            for _ in range(3)]
    if pairs != want:
        problems.append("order: seed runs not pair by pair, references first: %s" % pairs)
    lrs = {(c[1], c[2]): c[4] for c in calls if c[0] == "seeds"}
    if lrs.get(("llama-tiny", "muon")) != 0.02 or lrs.get(("gpt2-tiny", "symoc-auto")) != 0.02:
        problems.append("order: seed runs not at the grid's best lr: %s" % lrs)


def check_only(problems):
    """--only MODEL:POLICY runs just those pairs (grid and seeds), in the usual order; a pair
    outside --models x --policies is refused with one line."""
    import bench
    with tempfile.TemporaryDirectory() as tmp:
        b = bench.Bench(bench_args(tmp, "--phases", "grid", "seeds", "--only", "gpt2-tiny:muon",
                                   "llama-tiny:symoc-auto"))
        ex = FakeRunner(2)
        quiet(b.phase_train, 2, ex)
    got = sorted({(c[1], c[2]) for c in ex.calls})
    if got != [("gpt2-tiny", "muon"), ("llama-tiny", "symoc-auto")]:
        problems.append("--only: ran pairs %s, want gpt2-tiny:muon and llama-tiny:symoc-auto" % got)
    phases = [c[0] for c in ex.calls]
    if phases.count("grid") != 2 + 3 or phases.count("seeds") != 2 * 3:
        problems.append("--only: %d grid and %d seed runs, want 5 and 6"
                        % (phases.count("grid"), phases.count("seeds")))
    with tempfile.TemporaryDirectory() as tmp:
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            try:
                bench.main(["run", "--stage", tmp, "--device", "cpu", "--plan-only", "--models",
                            "llama-tiny", "--policies", "muon", "--only", "gpt2-tiny:muon"])
                code = 0
            except SystemExit as e:
                code = e.code
    if not (isinstance(code, str) and "--only gpt2-tiny:muon" in code):
        problems.append("--only outside --models x --policies not refused: %r" % (code,))


def write_results(path, date, runs=(), grid=(), timing=(), best=None, faults=(), batch=4,
                  refine=(),
                  train_sha="a" * 64, concurrency=2, models=("llama-tiny",),
                  policies=("adamw", "muon"), phases=("time", "grid", "seeds")):
    import models as models_mod
    import torch
    # the protocol of bench_args() on this machine (--best-from checks it)
    meta = dict(torch=torch.__version__, device="cpu", date=date, models=list(models),
                policies=list(policies), batch=batch, grid_steps=20, steps=40, seeds=3,
                eval_every=100, grid_eval_every=50, val_batches=4, final_val_batches=32,
                warmup_frac=0.05, aux_ratio=0.1,
                amp="bf16 autocast (forward/backward), fp32 parameters", concurrency=concurrency,
                elapsed_s=100.0, call=dict(phases=list(phases)),
                corpus=dict(files=1, packages=1, total_bytes=10,
                            train=dict(bytes=8, sha256=train_sha),
                            val=dict(bytes=2, sha256="b" * 64)),
                sizes={m: dict(config=models_mod.CONFIGS[m], params=1000, tokens_per_step=64)
                       for m in models})
    res = dict(meta=meta, timing=list(timing), timing_batches=[], calibration=[],
               grid=list(grid), best_lr=best or {}, runs=list(runs), skipped=[],
               **({"refine": list(refine)} if refine else {}),
               faults=list(faults))
    with open(path, "w") as f:
        json.dump(res, f)
    return path


def run_rec(m, p, seed, final, status="ok", steps=40, lr=0.02, ms=10.0, phase="seeds"):
    done = steps if status == "ok" else steps // 2
    return dict(kind="train", model=m, policy=p, lr=lr, seed=seed, steps=steps, phase=phase,
                status=status, final_val=final, last_val=final + 0.05, steps_done=done,
                train_s=done * ms / 1000, ms_per_step=ms,
                curve=[[s, 3.0, 3.0 - (3.0 - final - 0.05) * s / steps, s * ms / 1000]
                       for s in range(0, done + 1, 20)])


def check_best_from(problems):
    import bench
    m = "llama-tiny"
    with tempfile.TemporaryDirectory() as tmp:
        prev = write_results(
            os.path.join(tmp, "call1.json"), "2026-12-03 01:00 UTC",
            timing=[dict(model=m, policy=p, status="ok", step_ms=ms, opt_ms=1.0)
                    for p, ms in (("adamw", 1.0), ("muon", 500.0))],
            grid=[run_rec(m, "adamw", 0, 2.5, lr=0.002, steps=20, ms=2.0, phase="grid"),
                  run_rec(m, "muon", 0, 2.4, lr=0.04, steps=20, ms=1000.0, phase="grid")],
            best={m + "/adamw": dict(lr=0.002, val=2.5, edge=True, grid={"0.002": 2.5}),
                  m + "/muon": dict(lr=0.04, val=2.4, edge=False, grid={"0.04": 2.4})},
            runs=[run_rec(m, "adamw", 1, 1.0, lr=0.002),
                  run_rec(m, "adamw", 2, 1.0, lr=0.002, status="truncated")],
            policies=("adamw", "muon", "symoc-auto"))
        a = bench_args(tmp, "--phases", "seeds", "--models", m, "--best-from", prev,
                       "--budget-s", "15")
        b = bench.Bench(a)
        ex = FakeRunner(2)
        _, log = quiet(b.phase_train, 2, ex)
        res = b.res
        # the plan alone, as --plan-only prints it
        _, plan = quiet(bench.cmd_run, bench_args(tmp, "--phases", "seeds", "--models", m,
                                                  "--best-from", prev, "--budget-s", "15",
                                                  "--plan-only", "--concurrency", "2"))
        # --skip-finished: seed 1 finished in call1.json, seed 2 was truncated there
        resumed = FakeRunner(2)
        quiet(bench.Bench(bench_args(tmp, "--phases", "seeds", "--models", m, "--policies",
                                     "adamw", "--best-from", prev, "--skip-finished"))
              .phase_train, 2, resumed)
        other = write_results(os.path.join(tmp, "other.json"), "2026-12-03 01:30 UTC", batch=8,
                              best={m + "/adamw": dict(lr=0.002)})
        try:
            quiet(bench.Bench, bench_args(tmp, "--phases", "seeds", "--models", m,
                                          "--best-from", other))
            refused = None
        except SystemExit as e:
            refused = str(e)
    if any(c[0] == "grid" for c in ex.calls):
        problems.append("best-from: grid runs submitted: %s" % ex.calls)
    adamw = [c for c in ex.calls if c[2] == "adamw"]
    if sorted(c[3] for c in adamw) != [1, 2, 3] or any(c[4] != 0.002 for c in adamw):
        problems.append("best-from: adamw seeds %s, want seeds 1-3 at lr 0.002" % adamw)
    if sorted(c[3] for c in resumed.calls) != [2, 3]:
        problems.append("--skip-finished: seeds %s run again, want 2 and 3"
                        % [c[3] for c in resumed.calls])
    if any(c[2] == "muon" for c in ex.calls):
        problems.append("best-from: muon seeds started though estimated 40 s > 15 s left")
    why = [s["reason"] for s in res["skipped"] if s["policy"] == "muon"]
    if len(why) != 3 or not all(w.startswith("would not finish: estimated 40 s") for w in why):
        problems.append("best-from: muon skips %s" % why)
    auto = res["best_lr"].get(m + "/symoc-auto") or {}
    if auto.get("lr") is not None or "no best lr" not in auto.get("reason", ""):
        problems.append("best-from: symoc-auto without a best lr: %s" % auto)
    if res["best_lr"].get(m + "/adamw", {}).get("source") != "call1.json":
        problems.append("best-from: adamw's lr does not name its file: %s" % res["best_lr"])
    if not re.search(r"llama-tiny muon +seeds 3 x 40 steps: none runs; NOT RUN: seed 1 WILL "
                     r"NOT FIT \(est. end 40 s\)", plan) or "3 of 6 runs WILL NOT FIT" not in plan:
        problems.append("plan-only: muon's seeds not marked WILL NOT FIT:\n%s" % plan)
    if "will not fit" not in log.lower():
        problems.append("phase_train's log has no WILL NOT FIT line")
    if not refused or "batch 8 differs from this run's 4" not in refused or "\n" in refused:
        problems.append("best-from of another protocol: %r" % refused)


def pair_calls(ex, phase, m, p):
    return [c for c in ex.calls if c[0] == phase and c[1] == m and c[2] == p]


def seed_lrs(ex, m, p):
    return sorted({c[4] for c in pair_calls(ex, "seeds", m, p)})


def check_refine(problems):
    """One call of grid, refinement and seeds: the refinement's lr wins over the grid's, K
    limits the runs, ties keep the grid's order, a diverged run loses, refinement runs are not
    seed runs."""
    import bench
    auto = "symoc-auto"
    with tempfile.TemporaryDirectory() as tmp:
        a = bench_args(tmp, "--phases", "train", "--refine", "--refine-steps", "30")
        b = bench.Bench(a)
        ex = FakeRunner(2, value=short_long)
        _, log = quiet(b.phase_train, 2, ex)
        res = b.res
        one = {}
        for name, argv, value in (
                ("k1", ["--refine", "1"], short_long),
                ("k3", ["--refine", "3", "--policies", "adamw", "muon"], short_long),
                ("tie", ["--refine", "2", "--policies", auto],
                 lambda s: 2.0 + abs(s["lr"] - 0.04) if s["phase"] == "grid" else 1.0),
                ("diverged", ["--refine", "2", "--policies", auto],
                 lambda s: float("nan") if s["phase"] == "refine" and s["lr"] == 0.04
                 else short_long(s))):
            bb = bench.Bench(bench_args(tmp, "--phases", "grid", "refine", "seeds", "--models",
                                        "llama-tiny", *argv))
            e = FakeRunner(2, value=value)
            quiet(bb.phase_train, 2, e)
            one[name] = (e, bb.res)
    if a.phases != ["grid", "refine", "seeds"] or a.refine != 2 or a.refine_steps != 30:
        problems.append("refine: --phases train --refine: phases %s, K %s, steps %s"
                        % (a.phases, a.refine, a.refine_steps))
    phases = [c[0] for c in ex.calls]
    if "refine" not in phases or "grid" in phases[phases.index("refine"):]:
        problems.append("refine: a refinement run was submitted before the last grid run")
    want_cands = {"adamw": [0.001, 0.002], "muon": [0.01, 0.02], auto: [0.02, 0.04]}
    for m in ("llama-tiny", "gpt2-tiny"):
        for p, cands in want_cands.items():
            got = sorted(c[4] for c in pair_calls(ex, "refine", m, p))
            if got != cands:
                problems.append("refine: %s/%s refined lrs %s, want the grid's 2 best %s"
                                % (m, p, got, cands))
            first_seed = min(i for i, c in enumerate(ex.calls)
                             if c[0] == "seeds" and c[1:3] == (m, p))
            if any(i > first_seed for i, c in enumerate(ex.calls)
                   if c[0] == "refine" and c[1:3] == (m, p)):
                problems.append("refine: %s/%s seed run before its refinement ended" % (m, p))
        e = res["best_lr"].get(m + "/" + auto, {})
        if seed_lrs(ex, m, auto) != [0.02] or e.get("stage") != "refine" or \
                e.get("grid_lr") != 0.04 or e.get("refine_steps") != 30 or \
                sorted(e.get("refine") or {}) != ["0.02", "0.04"]:
            problems.append("refine: %s/%s seeds at %s, entry %s; want lr 0.02 chosen by the "
                            "30-step refinement over the grid's 0.04"
                            % (m, auto, seed_lrs(ex, m, auto), e))
    specs = [s for s in ex.specs if s["phase"] == "refine"]
    if any((s["seed"], s["steps"], s["eval_every"]) != (0, 30, a.eval_every) for s in specs):
        problems.append("refine: runs not at seed 0, 30 steps, val every %d: %s"
                        % (a.eval_every, {(s["seed"], s["steps"], s["eval_every"])
                                          for s in specs}))
    if len(res["refine"]) != 12 or len(res["runs"]) != 18 or \
            any(r["phase"] != "seeds" or r["seed"] == 0 for r in res["runs"]):
        problems.append("refine: %d refinement records, %d seed records (want 12 and 18, no "
                        "seed 0 among the seeds)" % (len(res["refine"]), len(res["runs"])))
    if not re.search(r"best llama-tiny/symoc-auto: lr 0.02 \(final val 1.0000, 30-step "
                     r"refinement of 0.04: 1.0200, 0.02: 1.0000; the grid chose 0.04\)", log):
        problems.append("refine: the log does not say which lr the refinement chose:\n%s"
                        % "\n".join(l for l in log.split("\n") if "best" in l))
    e1, _ = one["k1"]
    if [c[4] for c in pair_calls(e1, "refine", "llama-tiny", auto)] != [0.04] or \
            len([c for c in e1.calls if c[0] == "refine"]) != 3 or \
            seed_lrs(e1, "llama-tiny", auto) != [0.04]:
        problems.append("refine K=1: refined %s, seeds at %s; want 0.04 only (1 run per pair)"
                        % ([c[4] for c in pair_calls(e1, "refine", "llama-tiny", auto)],
                           seed_lrs(e1, "llama-tiny", auto)))
    e3, _ = one["k3"]
    if len([c for c in e3.calls if c[0] == "refine"]) != 4:
        problems.append("refine K=3 over 2-point grids: %d runs, want 4"
                        % len([c for c in e3.calls if c[0] == "refine"]))
    # the tie goes to the grid's best (0.04); the diverged 0.04 (nan, listed first) loses
    for name, want in (("tie", 0.04), ("diverged", 0.02)):
        e, r = one[name]
        entry = r["best_lr"].get("llama-tiny/" + auto, {})
        if seed_lrs(e, "llama-tiny", auto) != [want] or entry.get("lr") != want or \
                entry.get("stage") != "refine":
            problems.append("refine %s: seeds at %s, entry %s; want %g" % (
                name, seed_lrs(e, "llama-tiny", auto), entry, want))


def refine_files(tmp, slow=False):
    """Earlier calls' files for llama-tiny/symoc-auto: ref.json (01:00, a 40-step refinement
    chose 0.02 over the grid's 0.04), grid.json (02:00, the grid's 0.04 only, an entry of
    the format before refinement), part.json (02:30, refinement cut: 0.04 finished at 0.5,
    0.02 truncated)."""
    m, p = "llama-tiny", "symoc-auto"
    ms = 1000.0 if slow else 1.0
    gv = {0.01: 2.03, 0.02: 2.02, 0.04: 2.0}
    grid = [run_rec(m, p, 0, v, lr=lr, steps=20, ms=ms, phase="grid") for lr, v in gv.items()]
    for r in grid:
        r["last_val"] = r["final_val"]
    gdict = {str(lr): v for lr, v in gv.items()}
    pol = ("adamw", "muon", p)
    ref = write_results(
        os.path.join(tmp, "ref.json"), "2026-12-03 01:00 UTC", grid=grid, policies=pol,
        best={m + "/" + p: dict(lr=0.02, val=1.0, edge=False, stage="refine", refine_steps=40,
                                refine_k=2, grid=gdict, grid_lr=0.04, grid_val=2.0,
                                refine={"0.04": 1.02, "0.02": 1.0})},
        refine=[run_rec(m, p, 0, 1.02, lr=0.04, phase="refine"),
                run_rec(m, p, 0, 1.0, lr=0.02, phase="refine")])
    grid_only = write_results(
        os.path.join(tmp, "grid.json"), "2026-12-03 02:00 UTC", grid=grid, policies=pol,
        best={m + "/" + p: dict(lr=0.04, val=2.0, edge=True, grid=gdict)})
    part = write_results(
        os.path.join(tmp, "part.json"), "2026-12-03 02:30 UTC", grid=grid, policies=pol,
        best={m + "/" + p: dict(lr=None, reason="refinement incomplete (lr 0.02: truncated "
                                "at step 20)", stage="refine", refine_steps=40, grid=gdict)},
        refine=[run_rec(m, p, 0, 0.5, lr=0.04, phase="refine"),
                run_rec(m, p, 0, 0.9, lr=0.02, phase="refine", status="truncated")])
    return ref, grid_only, part


def check_refine_best_from(problems):
    """--best-from with refinement data: a refined lr beats a later grid-only one; a call of
    --phases refine refines the files' grid; --skip-finished reuses a finished refinement
    run; a pair already refined is not refined again; report.py merges likewise."""
    import bench
    import report
    m, p = "llama-tiny", "symoc-auto"
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        ref, grid_only, part = refine_files(tmp)
        for name, argv in (
                ("seeds", ["--phases", "seeds", "--best-from", grid_only, ref]),
                ("refine", ["--phases", "refine", "seeds", "--refine-steps", "40",
                            "--best-from", grid_only]),
                ("resume", ["--phases", "refine", "seeds", "--refine-steps", "40",
                            "--best-from", part, "--skip-finished"]),
                ("again", ["--phases", "refine", "seeds", "--refine-steps", "40",
                           "--best-from", part]),
                ("known", ["--phases", "refine", "seeds", "--refine-steps", "40",
                           "--best-from", ref, grid_only])):
            b = bench.Bench(bench_args(tmp, "--models", m, "--policies", p, *argv))
            ex = FakeRunner(2, value=short_long)
            quiet(b.phase_train, 2, ex)
            out[name] = (ex, b.res["best_lr"].get(m + "/" + p, {}))
        merged = report.load_results([ref, grid_only])
        md = report.render(merged)
        three = report.load_results([part, grid_only, ref])
        old = report.render(report.load_results([grid_only]))
    want = {"seeds": ([], 0.02), "refine": ([0.02, 0.04], 0.02), "resume": ([0.02], 0.04),
            "again": ([0.02, 0.04], 0.02), "known": ([], 0.02)}
    for name, (cands, lr) in want.items():
        ex, entry = out[name]
        got = sorted(c[4] for c in ex.calls if c[0] == "refine")
        if got != cands or seed_lrs(ex, m, p) != [lr] or any(c[0] == "grid" for c in ex.calls):
            problems.append("refine --best-from (%s): refinement runs %s, seeds at %s, grid %d "
                            "runs; want %s, %g, none" % (name, got, seed_lrs(ex, m, p), len(
                                [c for c in ex.calls if c[0] == "grid"]), cands, lr))
    if out["seeds"][1].get("source") != "ref.json":
        problems.append("refine --best-from: the refined lr does not name ref.json: %s"
                        % out["seeds"][1])
    if out["resume"][1].get("refine_src") != {"0.04": "part.json"} or \
            out["resume"][1].get("refine") != {"0.04": 0.5, "0.02": 1.0}:
        problems.append("refine --skip-finished: entry %s" % out["resume"][1])
    # refinement runs merge like grid runs: a finished run beats a later truncated one, among
    # finished ones the later file wins (part.json's 0.04)
    got = sorted((r["lr"], r["status"], r["src"]) for r in three["refine"])
    if got != [(0.02, "ok", "ref.json"), (0.04, "ok", "part.json")]:
        problems.append("report merge of refinement runs: %s" % got)
    if three["best_lr"].get(m + "/" + p, {}).get("lr") != 0.02:
        problems.append("report merge: a later lr-less entry replaced a refined lr: %s"
                        % three["best_lr"].get(m + "/" + p))
    b = merged["best_lr"].get(m + "/" + p, {})
    if b.get("lr") != 0.02 or b.get("stage") != "refine":
        problems.append("report merge: best %s, want the refined 0.02 over the later grid's"
                        % b)
    for want_s in ("**0.02** (grid: 0.01: 2.030, 0.02: 2.020, 0.04: 2.000; 40-step: 0.02: "
                   "1.0000, 0.04: 1.0200; chosen by the 40-step refinement, the grid's was "
                   "0.04)", "refine AA", "- Refinement: after its grid, each pair's 2 best"):
        if want_s not in md:
            problems.append("report: lacks %r" % want_s)
    if "**0.04** edge (grid: 0.01: 2.030, 0.02: 2.020, 0.04: 2.000; chosen by the 20-step " \
            "grid)" not in old or "Refinement" in old:
        problems.append("report of a file without refinement: %s"
                        % [l for l in old.split("\n") if "symoc auto" in l])


def check_refine_budget(problems):
    """A refinement run estimated past the budget is not started and leaves its pair without
    a lr (no seed runs at the grid's); --plan-only counts refinement runs and puts them
    between a pair's grid and its seeds."""
    import bench
    m, p = "llama-tiny", "symoc-auto"
    with tempfile.TemporaryDirectory() as tmp:
        _, grid_only, _ = refine_files(tmp, slow=True)
        b = bench.Bench(bench_args(tmp, "--models", m, "--policies", p, "--phases", "refine",
                                   "seeds", "--refine-steps", "40", "--best-from", grid_only,
                                   "--budget-s", "15"))
        ex = FakeRunner(2)
        _, log = quiet(b.phase_train, 2, ex)
        _, plan = quiet(bench.cmd_run, bench_args(
            tmp, "--models", m, "--policies", p, "--phases", "refine", "seeds",
            "--refine-steps", "40", "--best-from", grid_only, "--budget-s", "15",
            "--plan-only", "--concurrency", "2"))
        timing = write_results(
            os.path.join(tmp, "timing.json"), "2026-12-03 03:00 UTC",
            models=("llama-tiny", "gpt2-tiny"), policies=("adamw", "muon", p),
            timing=[dict(model=mm, policy=pp, status="ok", step_ms=10.0, opt_ms=1.0)
                    for mm in ("llama-tiny", "gpt2-tiny") for pp in ("adamw", "muon", p)],
            # two pairs' shared figures (a grid's, a seed run's): the others' = alone x their
            # contention (3x)
            grid=[run_rec("gpt2-tiny", "adamw", 0, 2.5, lr=0.002, steps=20, ms=30.0,
                          phase="grid")], runs=[run_rec("gpt2-tiny", "muon", 1, 1.0, ms=30.0)])
        plans = {}
        for k in ("0", "1", "2"):
            argv = ["--phases", "train", "--timing-from", timing, "--concurrency", "2",
                    "--budget-s", "1000"] + (["--refine", k] if k != "0" else [])
            _, text = quiet(bench.cmd_run, bench_args(tmp, "--plan-only", *argv))
            bb = bench.Bench(bench_args(tmp, *argv, "--plan-only"))
            rows = bb.simulate(bb.train_jobs(), 2, 0.0)
            plans[k] = (text, rows)
    entry = b.res["best_lr"].get(m + "/" + p, {})
    if ex.calls or entry.get("lr") is not None or \
            "refinement incomplete (lr 0.04: would not finish" not in entry.get("reason", ""):
        problems.append("refine budget: runs %s, entry %s; want none run and no lr"
                        % (ex.calls, entry))
    if len([s for s in b.res["skipped"] if s["phase"] == "refine"]) != 2:
        problems.append("refine budget: skipped %s" % b.res["skipped"])
    if not re.search(r"llama-tiny symoc-auto +refine 2 x 40 steps: none runs; NOT RUN: lr 0.04 "
                     r"WILL NOT FIT \(est. end 40 s\), lr 0.02 WILL NOT FIT", plan) or \
            not re.search(r"symoc-auto +seeds 3 x 40 steps: none runs; NOT RUN: seed 1 NO LR",
                          plan):
        problems.append("refine plan-only: refinement not marked WILL NOT FIT, seeds not "
                        "NO LR:\n%s" % plan)
    counts = {"0": "runs: 14 grid (20 steps), 18 seeds (40 steps)",
              "1": "runs: 14 grid (20 steps), 6 refine (40 steps), 18 seeds (40 steps)",
              "2": "runs: 14 grid (20 steps), 12 refine (40 steps), 18 seeds (40 steps)"}
    for k, want in counts.items():
        text, rows = plans[k]
        if want not in text:
            problems.append("plan-only --refine %s: no %r in\n%s" % (k, want, text))
        for mm in ("llama-tiny", "gpt2-tiny"):
            for pp in ("adamw", "muon", p):
                by = {ph: [r for r in rows if (r["s"]["model"], r["s"]["policy"],
                                               r["s"]["phase"]) == (mm, pp, ph)]
                      for ph in ("grid", "refine", "seeds")}
                ends = max(r["end"] for r in by["grid"])
                if by["refine"]:
                    if min(r["start"] for r in by["refine"]) < ends:
                        problems.append("plan --refine %s: %s/%s refined before its grid "
                                        "ended" % (k, mm, pp))
                    ends = max(r["end"] for r in by["refine"])
                if min(r["start"] for r in by["seeds"]) < ends:
                    problems.append("plan --refine %s: %s/%s seeds before its grid and "
                                    "refinement ended" % (k, mm, pp))
    if "llama-tiny/muon 30 ms (alone x 3.0 (contention of --timing-from))" not in plans["2"][0]:
        problems.append("plan-only: step times not scaled by the --timing-from contention:\n%s"
                        % plans["2"][0])
    est = [float(re.search(r"estimate: the last run ends at (\d+) s", plans[k][0]).group(1))
           for k in ("0", "2")]
    if not est[1] > est[0]:
        problems.append("plan-only: the refinement adds no time: %s" % est)


def check_merge(problems):
    import report
    m = "llama-tiny"
    with tempfile.TemporaryDirectory() as tmp:
        a = write_results(
            os.path.join(tmp, "call1.json"), "2026-12-03 01:00 UTC",
            timing=[dict(model=m, policy=p, status="ok", step_ms=10.0, opt_ms=1.0)
                    for p in ("adamw", "muon")],
            grid=[run_rec(m, p, 0, 2.5, lr=lr, steps=20, phase="grid")
                  for p, lr in (("adamw", 0.002), ("muon", 0.02))],
            best={m + "/adamw": dict(lr=0.002, val=2.5, edge=False, grid={"0.002": 2.5}),
                  m + "/muon": dict(lr=0.02, val=2.5, edge=False, grid={"0.02": 2.5})},
            runs=[run_rec(m, "adamw", 1, 1.00), run_rec(m, "adamw", 2, 1.02),
                  run_rec(m, "adamw", 3, 1.04), run_rec(m, "muon", 1, 0.90),
                  run_rec(m, "muon", 2, 0.5, status="truncated"), run_rec(m, "muon", 3, 0.94)],
            faults=[dict(kind="train", model=m, policy="muon", lr=0.02, seed=2, phase="seeds",
                         step=7, attempt=1, retried=True, reason="SymocError: /tmp/b/libx_muon_"
                         "optimizer.so: step_cuda() failed: CUBLAS_STATUS_EXECUTION_FAILED\nmore")])
        b = write_results(
            os.path.join(tmp, "call2.json"), "2026-12-03 02:00 UTC", phases=("seeds",),
            runs=[run_rec(m, "muon", 2, 0.92), run_rec(m, "adamw", 3, 0.3, status="truncated")],
            faults=[dict(kind="train", model=m, policy="muon", lr=0.02, seed=2, phase="seeds",
                         step=9, attempt=1, retried=True,
                         reason="AcceleratorError: CUDA error: unspecified launch failure")])
        c = write_results(os.path.join(tmp, "call3.json"), "2026-12-03 03:00 UTC",
                          train_sha="c" * 64, runs=[run_rec(m, "muon", 2, 0.91)])
        merged = report.load_results([b, a])           # order on the command line: no matter
        md = report.render(merged)
        cli = subprocess.run([sys.executable, os.path.join(HERE, "report.py"), a, b, c],
                             capture_output=True, text=True)
        one = subprocess.run([sys.executable, os.path.join(HERE, "report.py"), a, b, "--md",
                              os.path.join(tmp, "m.md")], capture_output=True, text=True)
    runs = {(r["policy"], r["seed"]): r for r in merged["runs"]}
    if runs[("muon", 2)]["status"] != "ok" or runs[("muon", 2)]["src"] != "call2.json":
        problems.append("merge: muon seed 2 should be call2's finished run: %s"
                        % {k: runs[("muon", 2)].get(k) for k in ("status", "src")})
    if runs[("adamw", 3)]["status"] != "ok" or runs[("adamw", 3)]["src"] != "call1.json":
        problems.append("merge: a later truncated run replaced a finished one: %s"
                        % {k: runs[("adamw", 3)].get(k) for k in ("status", "src")})
    an = report.analyse(merged)[m]["rows"]
    if an["muon"]["n_final"] != 3 or abs(an["muon"]["final"] - (0.90 + 0.92 + 0.94) / 3) > 1e-9:
        problems.append("merge: muon final %s over %s seeds, want 0.92 over 3"
                        % (an["muon"]["final"], an["muon"]["n_final"]))
    for want in ("| torch Muon + AdamW |", "time A, grid A, seeds ABA", "**A** `call1.json`",
                 "**B** `call2.json`", "phases seeds", "| llama-tiny/muon | 2 (2) |",
                 "SymocError: step_cuda() failed: CUBLAS_STATUS_EXECUTION_FAILED"):
        if want not in md:
            problems.append("merge: report lacks %r" % want)
    if "0.3000" in md or "libx_muon" in md:
        problems.append("merge: report shows a truncated run's number or a library path")
    err = cli.stderr.strip()
    if cli.returncode == 0 or "\n" in err or not err.startswith("report.py: error: call3.json: "
                                                                 "corpus_train_sha256"):
        problems.append("merge of another protocol: exit %d, %r" % (cli.returncode, err))
    why = report.config_conflict(dict(plans={"m/symoc-auto": "aaa", "m/symoc-symo": "1"}),
                                 dict(plans={"m/symoc-auto": "bbb"}))
    if not why or why != ("plan of m/symoc-auto aaa", "bbb"):
        problems.append("merge: two builds of one generated optimizer not told apart: %s" % (why,))
    if one.returncode != 0:
        problems.append("report.py A B: exit %d: %s" % (one.returncode, one.stderr[-300:]))


def main():
    return check_main.run_checks(
        (check_order, check_only, check_best_from, check_refine, check_refine_best_from,
         check_refine_budget, check_merge),
        "grid runs before seed runs, seeds pair by pair; --best-from, runs that would not finish "
        "not started and planned as WILL NOT FIT, another protocol refused; --refine: the "
        "refinement's lr wins, K runs per pair, ties, divergence, --best-from, --skip-finished, "
        "budget, plan-only counts; --only's pairs; report merge (finished beats truncated, file per number, "
        "faults per policy, conflicting config refused)")


if __name__ == "__main__":
    sys.exit(main())
