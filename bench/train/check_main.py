"""The main of the benchmark's CPU tests (test_schedule.py, test_workers.py): SKIP (exit 77)
without torch, else every check appends what it found wrong to one list; FAIL lists them."""
import time


def run_checks(checks, passed):
    """checks: functions of a problems list; passed: the PASS line's text. Returns the exit
    code (0 pass, 1 fail, 77 skip)."""
    try:
        import torch  # noqa: F401  (bench.Bench builds the tiny models)
    except ImportError:
        print("SKIP: torch is not importable")
        return 77
    problems = []
    t0 = time.time()
    for check in checks:
        check(problems)
    if problems:
        print("FAIL:\n  " + "\n  ".join(problems))
        return 1
    print("PASS: %s (%.1f s)" % (passed, time.time() - t0))
    return 0
