#!/usr/bin/python3
"""Study for the next step on Muon's stats pass (docs/benchmarks.md, "Latest (session 23)"):
can the Gram path normalize by the trace of its own Gram matrix instead of a norm computed
before the pack?

Emulated in NumPy with every product in fp16 (tests/python/test_gram_newton_schulz.py's
`gram` schedule and rounding, restart after step 2), on 256 x 1024 inputs (aspect 4):
  current: X0 = fp16(u / ||u||) (the norm from a pass before the pack), R = X0 X0^T;
  trace:   X~ = fp16(s u) for a power of two s with s ||u|| in [1, 64) (no norm known),
           tr = ||X~||^2 from the values the pack wrote, R = fp16((X~ X~^T) / tr) with the
           scale applied to the fp32 product before rounding (cuBLASLt's per-row alpha
           vector), and the restart's X = Q X~ likewise scaled by 1 / sqrt(tr).
Printed per input: the relative distance of each from the float32 standard iteration (torch's
Muon is the bf16 one), with s ||u|| near 1 (today's scale, where ~4% of a Gaussian's entries
are fp16 subnormals) and near 2^8, and whether s ||u|| from 2^8 to 2^12 gives the same bits
(exact power-of-two scaling once no entry is subnormal: then s need not be reproducible).

    /usr/bin/python3 bench/gpu/gram_trace_norm.py
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "python"))
import test_gram_newton_schulz as g  # noqa: E402
import test_gram_stress as st  # noqa: E402


def gram_trace(G, s, steps=5, restart=2):
    rnd = st.fp16
    mm = lambda x, y: rnd(rnd(x) @ rnd(y))  # noqa: E731
    cs, _ = g.coefficients("newton_schulz", steps)
    W = G.T if G.shape[0] > G.shape[1] else G
    X = rnd(np.float32(s) * W.astype(np.float32))
    eye = np.eye(X.shape[0], dtype=np.float32)
    # tr = ||X~||_F^2 = tr(X~ X~^T), summed by the pack from the values it wrote; the Gram
    # GEMM's fp32 result is scaled by 1 / tr before it is rounded (cuBLASLt's alpha vector)
    tr = np.float32(np.sum(X.astype(np.float64) ** 2))
    R = rnd((rnd(X) @ rnd(X.T)) / tr)
    inv = np.float32(1.0 / np.sqrt(np.float64(tr)))
    Q = None
    restarts = lambda t: restart > 0 and t == restart and t < steps  # noqa: E731
    for t, (a, b, c) in enumerate(cs):
        if restarts(t):
            X = rnd((rnd(Q) @ rnd(X)) * inv)   # X1 = Q X0 = (Q X~) / sqrt(tr), scaled in fp32
            inv = np.float32(1.0)
            R = mm(X, X.T)
            Q = None
        P = rnd(c * mm(R, R) + b * R + a * eye)
        Q = P if Q is None else mm(Q, P)
        if t + 1 < steps and not restarts(t + 1):
            Wm = mm(R, P)
            R = mm(P, Wm)
    X = rnd((rnd(Q) @ rnd(X)) * inv)
    return X.T if G.shape[0] > G.shape[1] else X


def main():
    r, k = 256, 1024
    rng = np.random.default_rng(20261204)
    inputs = [("gaussian", rng.standard_normal((r, k)) * 0.02),
              ("gaussian tall", rng.standard_normal((k, r)) * 1e-3)]
    for name, spec in (("logspace(0,-3)", np.logspace(0, -3, r)), ("power law", 1.0 / np.arange(1, r + 1)),
                       ("rank 10 + zeros", np.r_[np.logspace(0, -1, 10), np.zeros(r - 10)])):
        inputs.append((name, st.with_spectrum(spec, k, rng) * 0.05))
    print("%-18s %10s %10s %12s %12s  %s" % ("input", "bf16 std", "current", "trace s|u|=1",
                                            "trace s|u|=2^8", "bits equal for s|u| = 2^8 .. 2^12"))
    for name, G in inputs:
        G = G.astype(np.float32)
        ref = g.standard(G, "newton_schulz", 5, np.float32)
        std = g.standard(G, "newton_schulz", 5, np.float32, rnd=st.bf16)
        cur = g.gram(G, "newton_schulz", 5, np.float32, 2, rnd=st.fp16)
        norm = float(np.linalg.norm(G.astype(np.float64)))
        e0 = int(np.floor(np.log2(1.0 / norm)))
        low = gram_trace(G, 2.0 ** e0)                                  # s ||u|| in [1, 2)
        high = [gram_trace(G, 2.0 ** (e0 + j)) for j in range(8, 13)]    # [2^8, 2^13)
        same = all(np.array_equal(high[0], o) for o in high[1:])
        print("%-18s %10.3e %10.3e %12.3e %12.3e  %s" % (name, g.rel(std, ref), g.rel(cur, ref), g.rel(low, ref),
                                                      g.rel(high[0], ref), same))


if __name__ == "__main__":
    main()
