#!/usr/bin/python3
"""Compare symoc's runtime against torch (torch.optim, and torch re-implementations of the
reference algorithms written here) and against the independent reference
<repo>/../shared/reference/optimizers.py when it exists.

Runs the C++ side through the symoc_rt_harness binary (raw float32 files).
Exit code 77 (ctest: skipped) when torch is not importable; the tests that need the shared
reference skip when <repo>/../shared is absent.
"""
import argparse
import math
import os
import subprocess
import sys
import tempfile
import unittest

try:
    import torch
except ImportError:  # Debian's python3-torch is not installed: skip, do not fail
    print("SKIP: torch is not importable from", sys.executable)
    sys.exit(77)

import numpy as np

HARNESS = None
REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SHARED_REF = os.path.join(REPO, "..", "shared", "reference")
ref = None
if os.path.isfile(os.path.join(SHARED_REF, "optimizers.py")):
    sys.path.insert(0, SHARED_REF)
    import optimizers as ref  # noqa: E402


def run_harness(rule, W0, grads, lr=1e-2, mode="weights", **opts):
    """Weights after each step (or directions), as a list of float32 tensors."""
    m, n = W0.shape
    with tempfile.TemporaryDirectory() as d:
        inp, out = os.path.join(d, "in.f32"), os.path.join(d, "out.f32")
        np.concatenate([W0.numpy().astype(np.float32).ravel()] +
                       [g.numpy().astype(np.float32).ravel() for g in grads]).tofile(inp)
        args = [HARNESS, rule, str(m), str(n), str(len(grads)), inp, out, f"lr={lr!r}", f"mode={mode}"]
        args += [f"{k}={v!r}" if isinstance(v, float) else f"{k}={v}" for k, v in opts.items()]
        subprocess.run(args, check=True)
        res = np.fromfile(out, dtype=np.float32).reshape(len(grads), m, n)
    return [torch.from_numpy(r.copy()) for r in res]


def rel(a, b):
    a, b = a.double(), b.double()
    return float((a - b).norm() / max(float(b.norm()), 1e-300))


def data(m, n, steps, seed):
    g = torch.Generator().manual_seed(seed)
    W0 = torch.randn(m, n, generator=g)
    grads = [torch.randn(m, n, generator=g) for _ in range(steps)]
    return W0, grads


class TorchOptim(unittest.TestCase):
    """Adam / AdamW / SGD against torch.optim itself (fp32)."""

    def compare(self, rule, make_opt, tol_w=1e-6, tol_dw=5e-6, **opts):
        W0, grads = data(37, 19, 12, 1)
        p = torch.nn.Parameter(W0.clone())
        opt = make_opt([p])
        ours = run_harness(rule, W0, grads, lr=opts.pop("lr"), **opts)
        for t, g in enumerate(grads):
            p.grad = g.clone()
            opt.step()
            # relative to the weights, and to the accumulated update (the stricter one)
            self.assertLess(rel(ours[t], p.data), tol_w, f"{rule} step {t + 1}")
            self.assertLess(rel(ours[t] - W0, p.data - W0), tol_dw, f"{rule} step {t + 1} (update)")

    def test_adam(self):
        self.compare("adam", lambda ps: torch.optim.Adam(ps, lr=3e-3, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.01),
                     lr=3e-3, beta1=0.9, beta2=0.99, eps=1e-8, wd=0.01)

    def test_adamw(self):
        self.compare("adamw", lambda ps: torch.optim.AdamW(ps, lr=3e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1),
                     lr=3e-3, wd=0.1)

    def test_sgd_nesterov(self):
        self.compare("sgd", lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
                     lr=0.05, momentum=0.9, nesterov=1, wd=1e-3)

    def test_sgd_dampening(self):
        self.compare("sgd", lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.8, dampening=0.3),
                     lr=0.05, momentum=0.8, dampening=0.3)


def ns5_torch(G, steps=5, eps=1e-7):
    """Muon's quintic Newton-Schulz, written from muon.py's description (fp32)."""
    a, b, c = 3.4445, -4.7750, 2.0315
    X = G / (G.norm() + eps)
    tr = X.size(0) > X.size(1)
    if tr:
        X = X.T
    for _ in range(steps):
        A = X @ X.T
        X = a * X + (b * A + c * A @ A) @ X
    return X.T if tr else X


class Muon(unittest.TestCase):
    def run_muon(self, m, n, nesterov):
        W0, grads = data(m, n, 6, 2)
        lr, wd, beta = 0.02, 0.01, 0.95
        ours = run_harness("muon", W0, grads, lr=lr, wd=wd, beta=beta, nesterov=int(nesterov))
        W, M = W0.clone(), torch.zeros(m, n)
        for t, g in enumerate(grads):
            M.lerp_(g, 1 - beta)
            u = g.lerp(M, beta) if nesterov else M.clone()
            d = ns5_torch(u) * max(1, m / n) ** 0.5
            W.mul_(1 - lr * wd).add_(d, alpha=-lr)
            self.assertLess(rel(ours[t] - W0, W - W0), 1e-5, f"muon {m}x{n} step {t + 1}")
        return W0, grads, ours

    def test_muon_wide_and_tall(self):
        for m, n in [(48, 80), (80, 48), (64, 64)]:
            for nesterov in (True, False):
                self.run_muon(m, n, nesterov)

    @unittest.skipIf(ref is None, "shared reference (../shared) not present")
    def test_muon_vs_shared_reference(self):
        m, n = 80, 48
        W0, grads = data(m, n, 4, 3)
        ours = run_harness("muon", W0, grads, mode="direction")
        M = torch.zeros(m, n)
        for t, g in enumerate(grads):
            d = ref.muon_direction(g.clone(), M)
            self.assertLess(rel(ours[t], d), 1e-5, f"step {t + 1}")


class NorMuon(unittest.TestCase):
    """Muon with neuron-wise normalization (NorMuon, Li et al. 2025) against a torch
    re-implementation written from the paper's algorithm: per line (row: norm_axis 0, column:
    1) an EMA of the mean square of the polar factor O, O divided by its root per line, the
    result rescaled to O's Frobenius norm, then Muon's scale."""

    def reference(self, W0, grads, lr, wd, beta, beta2, axis):
        m, n = W0.shape
        W, M = W0.clone(), torch.zeros(m, n)
        v = torch.zeros(m if axis == 0 else n, dtype=torch.float64)
        out = []
        for g in grads:
            M.lerp_(g, 1 - beta)
            O = ns5_torch(g.lerp(M, beta)).double()
            v = beta2 * v + (1 - beta2) * (O * O).mean(dim=1 - axis)
            s = 1.0 / (v.sqrt() + 1e-10)
            On = O * (s[:, None] if axis == 0 else s[None, :])
            On = On * (O.norm() / (On.norm() + 1e-10))
            W = W * (1 - lr * wd) - lr * (On * max(1, m / n) ** 0.5).float()
            out.append(W.clone())
        return out

    def test_rows_and_columns_with_state_reload(self):
        lr, wd, beta, beta2 = 0.02, 0.01, 0.95, 0.9
        for m, n in [(48, 80), (80, 48)]:
            for axis in (0, 1):
                W0, grads = data(m, n, 6, 4)
                ours = run_harness("muon", W0, grads, lr=lr, wd=wd, beta=beta, norm_beta2=beta2,
                                   norm_axis=axis, reload_at=3)
                want = self.reference(W0, grads, lr, wd, beta, beta2, axis)
                for t in range(len(grads)):
                    self.assertLess(rel(ours[t] - W0, want[t] - W0), 1e-5, f"{m}x{n} axis {axis} step {t + 1}")
                # the state file round trip is exact: the same run without the reload
                plain = run_harness("muon", W0, grads, lr=lr, wd=wd, beta=beta, norm_beta2=beta2, norm_axis=axis)
                for t in range(len(grads)):
                    self.assertTrue(torch.equal(ours[t], plain[t]), f"reload changed step {t + 1}")

    def test_normalization_differs_from_muon_and_balances_lines(self):
        W0, grads = data(64, 32, 3, 5)
        nor = run_harness("muon", W0, grads, mode="direction", norm_beta2=0.95, norm_axis=0)
        mu = run_harness("muon", W0, grads, mode="direction")
        self.assertGreater(rel(nor[0], mu[0]), 1e-3)
        # step 1: v = (1 - beta2) * mean row square, so every row of the direction has one norm
        r = nor[0].double().norm(dim=1)
        self.assertLess(float((r.max() - r.min()) / r.mean()), 1e-4)
        self.assertLess(abs(float(nor[0].norm() / mu[0].norm()) - 1), 1e-5)  # O's norm kept

    def test_off_is_muon_bit_for_bit(self):
        W0, grads = data(40, 24, 4, 6)
        a = run_harness("muon", W0, grads, lr=0.02, wd=0.01)
        b = run_harness("muon", W0, grads, lr=0.02, wd=0.01, norm_beta2=0.0, norm_axis=1)
        for t in range(len(grads)):
            self.assertTrue(torch.equal(a[t], b[t]), f"step {t + 1}")


def sym_pow64(S, p, eps):
    w, V = torch.linalg.eigh(S.double())
    w = w.clamp(min=0) + eps
    keep = w > 1e-12 * w.max()
    wp = torch.where(keep, w.clamp(min=1e-300) ** p, torch.zeros_like(w))
    return (V * wp) @ V.T


class Shampoo(unittest.TestCase):
    def reference(self, W0, grads, lr, eps, freq=1):
        W, L, R = W0.double().clone(), 0, 0
        out = []
        for t, g in enumerate(grads):
            g = g.double()
            L = L + g @ g.T
            R = R + g.T @ g
            if t % freq == 0:
                Lr, Rr = sym_pow64(L, -0.25, eps), sym_pow64(R, -0.25, eps)
            W = W - lr * (Lr @ g @ Rr)
            out.append(W.clone())
        return out

    def test_shampoo_eigh(self):
        for (m, n), freq in [((24, 16), 1), ((16, 24), 1), ((20, 20), 3)]:
            W0, grads = data(m, n, 6, 4)
            ours = run_harness("shampoo", W0, grads, lr=0.1, eps=1e-6, freq=freq)
            exp = self.reference(W0, grads, 0.1, 1e-6, freq)
            for t in range(len(grads)):
                # fp32 statistics: L, R of a square Gaussian gradient have condition ~1e4-1e5,
                # so fp32 rounding of L (1e-7 relative) moves its smallest eigenvalues ~1e-3
                self.assertLess(rel(ours[t] - W0, exp[t] - W0.double()), 1e-3, f"{m}x{n} freq {freq} step {t + 1}")

    def test_shampoo_coupled_newton(self):
        W0, grads = data(16, 12, 5, 5)
        ours = run_harness("shampoo", W0, grads, lr=0.1, eps=1e-3, root="newton")
        exp = self.reference(W0, grads, 0.1, 1e-3)
        for t in range(len(grads)):
            self.assertLess(rel(ours[t] - W0, exp[t] - W0.double()), 5e-3, f"step {t + 1}")

    @unittest.skipIf(ref is None, "shared reference (../shared) not present")
    def test_shampoo_vs_shared_reference(self):
        m, n = 12, 10
        W0, grads = data(m, n, 4, 6)
        ours = run_harness("shampoo", W0, grads, mode="direction", eps=1e-6)
        L, R = torch.zeros(m, m, dtype=torch.float64), torch.zeros(n, n, dtype=torch.float64)
        for t, g in enumerate(grads):
            d = ref.shampoo_direction(g.double(), L, R, eps=1e-6)
            self.assertLess(rel(ours[t], d), 2e-4, f"step {t + 1}")


class AdamMini(unittest.TestCase):
    @unittest.skipIf(ref is None, "shared reference (../shared) not present")
    def test_per_neuron_vs_shared_reference(self):
        m, n = 16, 24
        W0, grads = data(m, n, 6, 7)
        ours = run_harness("adam_mini", W0, grads, mode="direction")
        mm, v = torch.zeros(m, n, dtype=torch.float64), torch.zeros(m, 1, dtype=torch.float64)
        for t, g in enumerate(grads):
            d = ref.adam_mini_direction(g.double(), mm, v, t + 1)
            self.assertLess(rel(ours[t], d), 1e-6, f"step {t + 1}")

    def test_per_head_rule(self):
        # one second moment per head of 4 rows: mean of g^2 over the head's rows
        m, n, hr = 16, 8, 4
        W0, grads = data(m, n, 5, 8)
        ours = run_harness("adam_mini", W0, grads, mode="direction", group_rows=hr)
        mm, v = torch.zeros(m, n, dtype=torch.float64), torch.zeros(m // hr, dtype=torch.float64)
        for t, g in enumerate(grads):
            g = g.double()
            mm = 0.9 * mm + 0.1 * g
            v = 0.999 * v + 0.001 * (g * g).reshape(m // hr, hr * n).mean(1)
            vh = (v / (1 - 0.999 ** (t + 1))).repeat_interleave(hr)[:, None]
            d = (mm / (1 - 0.9 ** (t + 1))) / (vh.sqrt() + 1e-8)
            self.assertLess(rel(ours[t], d), 1e-6, f"step {t + 1}")


class PolarExpress(unittest.TestCase):
    def test_against_torch_algorithm(self):
        coeffs = [(8.28721201814563, -23.595886519098837, 17.300387312530933),
                  (4.107059111542203, -2.9478499167379106, 0.5448431082926601),
                  (3.9486908534822946, -2.908902115962949, 0.5518191394370137),
                  (3.3184196573706015, -2.488488024314874, 0.51004894012372),
                  (2.300652019954817, -1.6689039845747493, 0.4188073119525673),
                  (1.891301407787398, -1.2679958271945868, 0.37680408948524835),
                  (1.8750014808534479, -1.2500016453999487, 0.3750001645474248),
                  (1.875, -1.25, 0.375)]
        coeffs = [(a / 1.01, b / 1.01 ** 3, c / 1.01 ** 5) for a, b, c in coeffs[:-1]] + [coeffs[-1]]
        for m, n in [(32, 48), (48, 32)]:
            _, grads = data(m, n, 1, 9)
            X = grads[0].double()
            tr = m > n
            Y = X.T if tr else X
            Y = Y / (Y.norm() * 1.01 + 1e-7)
            for a, b, c in coeffs:
                A = Y @ Y.T
                Y = a * Y + (b * A + c * A @ A) @ Y
            exp = Y.T if tr else Y
            ours = run_harness("polar:pe", grads[0], grads)[0]
            self.assertLess(rel(ours, exp), 1e-4, f"{m}x{n}")


@unittest.skipIf(ref is None, "shared reference (../shared) not present")
class SharedReference(unittest.TestCase):
    """Single-step directions against /work/shared/reference/optimizers.py."""

    def test_symo_closed_forms(self):
        pairs = [(l, r) for l in ("1", "Z2", "S", "B", "O") for r in ("1", "Z2", "S", "B", "O")]
        for shape in [(6, 4), (4, 6)]:
            W0, grads = data(*shape, 1, 10)
            for l, r in pairs:
                try:
                    exp = ref.symo_direction(grads[0].double(), l, r)
                except (ValueError, KeyError):
                    continue  # pair the reference does not define
                ours = run_harness(f"symo:{l}x{r}", W0, grads, mode="direction")[0]
                self.assertLess(rel(ours, exp), 2e-4, f"{l} x {r} on {shape}")

    def test_lau_su_rules(self):
        kinds = {"row": "row", "col": "col", "centered_row": "centered_row",
                 "one_sided_spectral": "right_spectral", "left_spectral_centered": "left_spectral_centered",
                 "hybrid": "hybrid"}
        for shape in [(10, 6), (6, 10)]:
            W0, grads = data(*shape, 1, 11)
            for ours_kind, ref_kind in kinds.items():
                # beta = 0: the momentum is the gradient itself
                ours = run_harness(f"lausu:{ours_kind}", W0, grads, mode="direction", beta=0.0, eps=1e-8)[0]
                exp = ref.lau_su_direction(grads[0].double(), ref_kind, eps=1e-8)
                self.assertLess(rel(ours, exp), 2e-4, f"{ours_kind} on {shape}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--harness", required=True)
    args, rest = ap.parse_known_args()
    HARNESS = args.harness
    torch.set_num_threads(1)
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)
