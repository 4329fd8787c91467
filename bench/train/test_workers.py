#!/usr/bin/env python3
"""bench.py's fault isolation (issue 12, run 1 of 2026-12-02: a CUDA fault poisoned its worker
process and every run queued behind it failed): no GPU needed.

1. WorkerPool replaces a worker after a job that ended in an error: a job that 'poisons' its
   process (as a faulted CUDA context does: every later call there fails) costs no later job;
   a worker that dies is reported as status 'died' and replaced.
2. is_fault: the error texts of run 1 are faults, a run's own errors are not.
3. Bench.phase_train with an executor whose first attempt of one grid run faults: the fault is
   recorded (model, policy, lr, step, text), the run is retried once and its retry counts;
   report.render lists the fault.
4. The same for a refinement run (--refine 2): retried once, its retry decides the pair's lr.
"""
import concurrent.futures as cf
import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import check_main  # noqa: E402  (this folder, after the path)

_POISONED = []   # per process: set by poison(), as a sticky CUDA error would be


def poison():
    _POISONED.append(1)
    return dict(status="error", reason="AcceleratorError: CUDA error: unspecified launch failure")


def work(i):
    if _POISONED:
        return dict(status="error", reason="AcceleratorError: CUDA error: unspecified launch "
                                           "failure (inherited)")
    return dict(status="ok", value=i * i, pid=os.getpid())


def die():
    os._exit(3)


def check_pool(problems):
    import bench
    with bench.WorkerPool(1) as ex:   # one worker: every job lands on the same process slot
        r0 = ex.submit(work, 1).result()
        bad = ex.submit(poison).result()
        after = [ex.submit(work, i).result() for i in range(2, 5)]
        dead = bench.job_result(ex.submit(die), dict(kind="train", model="m", policy="p"))
        last = ex.submit(work, 7).result()
        replaced = ex.replaced
    if bad.get("status") != "error":
        problems.append("poison job: %s" % bad)
    if any(r.get("status") != "ok" for r in after):
        problems.append("jobs after a poisoned worker failed: %s" % after)
    if after and after[0].get("pid") == r0.get("pid"):
        problems.append("the worker that ran the poisoned job was reused (pid %s)" % r0.get("pid"))
    if dead.get("status") != "died" or "exit code 3" not in dead.get("reason", ""):
        problems.append("a dying worker: %s" % dead)
    if last.get("status") != "ok" or last.get("value") != 49:
        problems.append("job after a dead worker: %s" % last)
    if replaced != 2:
        problems.append("workers replaced: %d, want 2" % replaced)


def check_is_fault(problems):
    import bench
    faults = [
        "SymocError: /tmp/b/libllama_auto_optimizer.so: step_cuda() failed: step_cuda: cuda: "
        "kernel launch: unspecified launch failure",
        "AcceleratorError: CUDA error: unspecified launch failure\nSearch for ...",
        "SymocError: x.so: step_cuda() failed: step_cuda: cuda cublasLtMatmul (newton_schulz): "
        "CUBLAS_STATUS_EXECUTION_FAILED",
        "worker process ended (exit code -11) before its job returned",
    ]
    not_faults = ["no generated library for gpt2/symoc-auto",
                  "SymocError: x.so: 2 parameter mismatch(es)", "ValueError: unknown policy 'x'"]
    for t in faults:
        if not bench.is_fault(dict(status="error", reason=t)):
            problems.append("is_fault missed: %r" % t[:80])
    for t in not_faults:
        if bench.is_fault(dict(status="error", reason=t)):
            problems.append("is_fault on a run's own error: %r" % t)


class ScriptedEx:
    """An executor whose first attempt of the run of phase fault_phase with lr == fault_lr
    faults at step 7."""

    def __init__(self, fault_lr, fault_phase="grid"):
        self.fault_lr, self.fault_phase, self.calls = fault_lr, fault_phase, []

    def submit(self, fn, s):
        import bench
        self.calls.append((s["phase"], s["lr"], s.get("attempt", 1)))
        f = cf.Future()
        if s["lr"] == self.fault_lr and s.get("attempt", 1) == 1 and \
                s["phase"] == self.fault_phase:
            f.set_result(dict(bench.spec_public(s), kind="train", status="error", step=7,
                              reason="AcceleratorError: CUDA error: unspecified launch failure"))
        else:
            v = 2.0 + s["lr"]
            f.set_result(dict(bench.spec_public(s), kind="train", status="ok", final_val=v,
                              last_val=v, steps_done=s["steps"], train_s=0.1, ms_per_step=1.0,
                              curve=[[0, None, 3.0, 0.0], [s["steps"], 3.0, v, 0.1]]))
        return f


def check_retry(problems):
    import bench
    import report
    with tempfile.TemporaryDirectory() as tmp:
        a = bench.run_parser().parse_args(
            ["run", "--stage", tmp, "--out", os.path.join(tmp, "out"), "--device", "cpu",
             "--models", "llama-tiny", "--policies", "adamw", "--grid", "adamw=0.001,0.002",
             "--seeds", "1", "--steps", "4", "--grid-steps", "2", "--budget-s", "60"])
        bench.parse_grids(a)
        b = bench.Bench(a)
        ex = ScriptedEx(0.002)
        b.phase_train(2, ex)
        res = b.res
        md = report.render(res, plots_dir=None)
    f = res["faults"]
    if len(f) != 1 or not f[0]["retried"] or f[0]["step"] != 7 or f[0]["lr"] != 0.002 or \
            f[0]["model"] != "llama-tiny" or "unspecified launch failure" not in f[0]["reason"]:
        problems.append("faults recorded: %s" % f)
    if sorted(ex.calls) != sorted([("grid", 0.001, 1), ("grid", 0.002, 1), ("grid", 0.002, 2),
                                   ("seeds", 0.001, 1)]):
        problems.append("submitted runs: %s" % ex.calls)
    if [r["status"] for r in res["grid"]] != ["ok", "ok"] or len(res["runs"]) != 1:
        problems.append("grid %s, runs %d" % ([r["status"] for r in res["grid"]], len(res["runs"])))
    if "Device faults" not in md or "lr 0.002" not in md:
        problems.append("report does not list the fault")


def check_retry_refine(problems):
    """A refinement run that faults is retried once like a grid run; its retry decides the
    pair's lr (the fake's val is 2 + lr: 0.001 wins)."""
    import bench
    import report
    with tempfile.TemporaryDirectory() as tmp:
        a = bench.run_parser().parse_args(
            ["run", "--stage", tmp, "--out", os.path.join(tmp, "out"), "--device", "cpu",
             "--models", "llama-tiny", "--policies", "adamw", "--grid", "adamw=0.001,0.002",
             "--seeds", "1", "--steps", "4", "--grid-steps", "2", "--budget-s", "60",
             "--phases", "train", "--refine", "2"])
        bench.parse_grids(a)
        b = bench.Bench(a)
        ex = ScriptedEx(0.001, "refine")
        b.phase_train(2, ex)
        res = b.res
        md = report.render(res, plots_dir=None)
    f = res["faults"]
    if len(f) != 1 or not f[0]["retried"] or f[0]["phase"] != "refine" or f[0]["lr"] != 0.001:
        problems.append("refine fault recorded: %s" % f)
    if sorted(ex.calls) != sorted([("grid", 0.001, 1), ("grid", 0.002, 1), ("refine", 0.001, 1),
                                   ("refine", 0.001, 2), ("refine", 0.002, 1),
                                   ("seeds", 0.001, 1)]):
        problems.append("refine retry: submitted runs %s" % ex.calls)
    e = res["best_lr"].get("llama-tiny/adamw", {})
    if e.get("stage") != "refine" or e.get("lr") != 0.001 or len(res["refine"]) != 2:
        problems.append("refine retry: entry %s, %d refinement records" % (e, len(res["refine"])))
    if "refine lr 0.001 seed 0 @ 7" not in md:
        problems.append("report does not list the refinement run's fault")


def main():
    return check_main.run_checks(
        (check_is_fault, check_pool, check_retry, check_retry_refine),
        "worker replacement after a fault and a death, is_fault, one retry recorded (a grid "
        "run's and a refinement run's)")


if __name__ == "__main__":
    sys.exit(main())
