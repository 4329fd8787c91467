#!/usr/bin/python3
"""Gram Newton-Schulz computes the standard Newton-Schulz / Polar Express iteration.

The CUDA backend's Gram path (runtime/cuda/lib/gram_newton_schulz.cu) iterates on R = X X^T
and applies the accumulated polynomial Q to X once (plus a restart that re-forms X = Q X and
R = X X^T). This test runs the same schedule (per step P = cR^2 + bR + aI, Q = Q P, starting
from Q = P at the first step and after the restart, R = P (R P) only when a later step reads
it) in NumPy float64 and float32 against
the standard iteration X <- aX + (bA + cA^2)X, A = X X^T, with the coefficients read from
runtime/include/symoc/runtime/polar_coefficients.h (the table both runtimes use), on random
wide and tall matrices, with and without the restart:
  float64: relative Frobenius distance < 1e-10 (exact arithmetic up to rounding);
  float32: < 2e-4 (the standard iteration's own float32 rounding is of that order).
Self-checks (the comparison can fail): a Gram run with one coefficient changed by 1e-3, and
one that skips an R update, both differ by more than 1e-4.
Exit 77 (skipped) without numpy.
"""
import os
import re
import sys

try:
    import numpy as np
except ImportError as ex:
    print("skipped: %s" % ex)
    sys.exit(77)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HEADER = os.path.join(ROOT, "runtime", "include", "symoc", "runtime", "polar_coefficients.h")


def read_coefficients():
    text = open(HEADER).read()
    ns = tuple(float(v) for v in re.search(r"kNewtonSchulz5\{([^}]*)\}", text).group(1).split(","))
    table = re.search(r"k\[8\]\[3\] = \{(.*?)\};", text, re.S).group(1)
    rows = [tuple(float(v) for v in r.split(",")) for r in re.findall(r"\{([^{}]*)\}", table)]
    assert len(ns) == 3 and len(rows) == 8, "polar_coefficients.h: unexpected layout"
    return ns, rows


NS, PE = read_coefficients()


def coefficients(method, steps):
    if method == "newton_schulz":
        return [NS] * steps, 1.0
    out = []
    for s in range(steps):  # polar_express_step(s)
        i = min(s, 7)
        sf = 1.01 if i < 7 else 1.0
        a, b, c = PE[i]
        out.append((a / sf, b / sf ** 3, c / sf ** 5))
    return out, 1.01


def normalized_wide(G, mul, dtype):
    X = G.astype(dtype)
    if X.shape[0] > X.shape[1]:
        X = X.T
    return X / (np.linalg.norm(X) * mul + 1e-7)


def exact(x):
    return x


def standard(G, method, steps, dtype, rnd=exact):
    """The standard iteration; rnd rounds every stored result and every product's operands
    (exact: none; test_gram_stress.py passes 16-bit roundings)."""
    mm = lambda x, y: rnd(rnd(x) @ rnd(y))  # noqa: E731
    cs, mul = coefficients(method, steps)
    X = rnd(normalized_wide(G, mul, dtype))
    for a, b, c in cs:
        A = mm(X, X.T)
        X = rnd(a * X + mm(rnd(b * A + c * mm(A, A)), X))
    return X.T if G.shape[0] > G.shape[1] else X


def gram(G, method, steps, dtype, restart=2, perturb=None, skip_r_update_at=None, rnd=exact):
    """gram_newton_schulz.cu's schedule (rnd: as for standard)."""
    mm = lambda x, y: rnd(rnd(x) @ rnd(y))  # noqa: E731
    cs, mul = coefficients(method, steps)
    if perturb is not None:
        t, d = perturb
        a, b, c = cs[t]
        cs[t] = (a, b * (1 + d), c)
    X = rnd(normalized_wide(G, mul, dtype))
    eye = np.eye(X.shape[0], dtype=dtype)
    R = mm(X, X.T)
    Q = None
    restarts = lambda t: restart > 0 and t == restart and t < steps  # noqa: E731
    for t, (a, b, c) in enumerate(cs):
        if restarts(t):
            X = mm(Q, X)
            R = mm(X, X.T)
            Q = None
        P = rnd(c * mm(R, R) + b * R + a * eye)  # the step's polynomial; X' = P X
        Q = P if Q is None else mm(Q, P)
        if t + 1 < steps and not restarts(t + 1) and t != skip_r_update_at:
            W = mm(R, P)
            R = mm(P, W)
    X = mm(Q, X)
    return X.T if G.shape[0] > G.shape[1] else X


def rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def main():
    rng = np.random.default_rng(20261202)
    shapes = [(8, 20), (20, 8), (16, 64), (33, 100), (64, 256), (96, 200)]
    failures = 0
    worst = {}
    for method, steps in (("newton_schulz", 5), ("polar_express", 8), ("newton_schulz", 1), ("newton_schulz", 3)):
        for shape in shapes:
            for restart in (2, 0, 1):
                G = rng.standard_normal(shape) * 0.02
                for dtype, tol in ((np.float64, 1e-10), (np.float32, 2e-4)):
                    ref = standard(G, method, steps, dtype)
                    got = gram(G, method, steps, dtype, restart)
                    e = rel(got, ref)
                    key = (method, steps, np.dtype(dtype).name)
                    worst[key] = max(worst.get(key, 0.0), e)
                    if not (e < tol):
                        failures += 1
                        print("FAIL %s steps=%d %s restart=%d %s: %.3e >= %.0e" %
                              (method, steps, shape, restart, np.dtype(dtype).name, e, tol))
    for (method, steps, dt), e in sorted(worst.items()):
        print("gram vs standard %-13s %d steps %-7s worst relative distance %.3e" % (method, steps, dt, e))
    # Self-checks: the comparison sees a wrong coefficient and a skipped R update.
    G = rng.standard_normal((32, 128)) * 0.02
    ref = standard(G, "newton_schulz", 5, np.float64)
    for what, kw in (("coefficient b of step 1 changed by 1e-3", {"perturb": (1, 1e-3)}),
                     ("R update of step 0 skipped", {"skip_r_update_at": 0})):
        e = rel(gram(G, "newton_schulz", 5, np.float64, 2, **kw), ref)
        ok = e > 1e-4
        failures += not ok
        print("self-check (%s): distance %.3e %s" % (what, e, "detected" if ok else "NOT DETECTED: FAIL"))
    print("%d failures" % failures)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
