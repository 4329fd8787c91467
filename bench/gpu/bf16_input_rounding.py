#!/usr/bin/python3
"""Session 24's check of a cheaper Muon stats pass (docs/benchmarks.md, the 1.5x row): the stats
pass would write the update u as bf16 (2 bytes) for the pack to read instead of g and the
momentum (8), which rounds u to bf16 before the Newton-Schulz bank (fp16) is formed.

Emulated in NumPy: the quintic iteration (Muon's coefficients, 5 steps) in float64 on
  fp16:      fp16(u / ||u||)            (today's bank: one fp16 rounding of the input)
  bf16->fp16 fp16(bf16(u) / ||u||)      (the variant)
  bf16:      bf16(u / ||u||)            (torch's Muon input)
against the same iteration on u itself. Only the input's rounding differs, so the printed
relative distances are what each input format alone costs. Inputs 256 x 1024: Gaussian, and
a spectrum from 1 down to 1e-4.

    /usr/bin/python3 bench/gpu/bf16_input_rounding.py
"""
import numpy as np


def bf16(x):
    """Round-to-nearest-even to bfloat16, kept in float32."""
    b = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    r = ((b + np.uint32(0x7FFF) + ((b >> 16) & np.uint32(1))) & np.uint32(0xFFFF0000)).astype(np.uint32)
    return r.view(np.float32)


def ns5(x, steps=5):
    a, b, c = 3.4445, -4.7750, 2.0315
    x = x.astype(np.float64)
    x = x / np.linalg.norm(x)
    for _ in range(steps):
        A = x @ x.T
        x = a * x + (b * A + c * A @ A) @ x
    return x


def main():
    rng = np.random.default_rng(0)
    rows, cols = 256, 1024
    gauss = rng.standard_normal((rows, cols)).astype(np.float32)
    U, _ = np.linalg.qr(rng.standard_normal((rows, rows)))
    V, _ = np.linalg.qr(rng.standard_normal((cols, rows)))
    stress = ((U * np.logspace(0, -4, rows)) @ V.T).astype(np.float32)
    print("%-10s %12s %12s %12s" % ("input", "fp16", "bf16->fp16", "bf16"))
    for name, g in (("gaussian", gauss), ("1e-4 cond", stress)):
        ref = ns5(g)
        n = np.linalg.norm(g)
        dist = lambda y: np.linalg.norm(ns5(y) - ref) / np.linalg.norm(ref)  # noqa: E731
        print("%-10s %12.2e %12.2e %12.2e" % (
            name, dist((g / n).astype(np.float16).astype(np.float32)),
            dist((bf16(g) / n).astype(np.float16).astype(np.float32)), dist(bf16(g / n))))


if __name__ == "__main__":
    main()
