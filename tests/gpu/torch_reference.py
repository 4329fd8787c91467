"""Torch references for the GPU matrix tests (tests/gpu/run_matrix_tests.sh).

spread OUT.txt   the relative distance of torch's bf16 Muon iteration (muon.py's
                 zeropower_via_newtonschulz5, and Polar Express in the same form) from the
                 same iteration in fp32, per test shape, on Gaussian inputs: the accuracy
                 that symoc's bf16 Newton-Schulz must match. Lines "rows cols method spread".
bench OUT.json   GPT-2-small's 48 hidden matrices: batched torch NS5 in bf16 (torch.stack by
                 shape + batched matmul, as issue 12's reference), torch.optim.Muon's step,
                 torch's bf16 matmul rate, and batched torch.linalg.eigh inverse roots.
"""
import json
import time
import sys

import torch

NS = (3.4445, -4.7750, 2.0315)
PE = [(8.28721201814563, -23.595886519098837, 17.300387312530933),
      (4.107059111542203, -2.9478499167379106, 0.5448431082926601),
      (3.9486908534822946, -2.908902115962949, 0.5518191394370137),
      (3.3184196573706015, -2.488488024314874, 0.51004894012372),
      (2.300652019954817, -1.6689039845747493, 0.4188073119525673),
      (1.891301407787398, -1.2679958271945868, 0.37680408948524835),
      (1.8750014808534479, -1.2500016453999487, 0.3750001645474248),
      (1.875, -1.25, 0.375)]


def coefs(method, steps):
    if method == "newton_schulz":
        return [NS] * steps, 1.0
    out = []
    for s in range(steps):
        i = min(s, 7)
        sf = 1.01 if i < 7 else 1.0
        a, b, c = PE[i]
        out.append((a / sf, b / sf**3, c / sf**5))
    return out, 1.01


def iterate(G, method, steps, dtype):
    """muon.py's iteration on a batch [B, m, n] in dtype (transposed when tall)."""
    cs, mul = coefs(method, steps)
    X = G.to(dtype)
    tall = G.size(-2) > G.size(-1)
    if tall:
        X = X.mT
    X = X / (X.norm(dim=(-2, -1), keepdim=True) * mul + 1e-7)
    for a, b, c in cs:
        A = X @ X.mT
        B = b * A + c * A @ A
        X = a * X + B @ X
    if tall:
        X = X.mT
    return X


def iterate_gram(G, method, steps, dtype, restart=2):
    """Gram Newton-Schulz (runtime/cuda/lib/gram_newton_schulz.cu's schedule) in dtype."""
    cs, mul = coefs(method, steps)
    X = G.float()
    tall = G.size(-2) > G.size(-1)
    if tall:
        X = X.mT
    X = (X / (X.norm(dim=(-2, -1), keepdim=True) * mul + 1e-7)).to(dtype)
    eye = torch.eye(X.size(-2), device=X.device, dtype=dtype)
    R, Q = X @ X.mT, None
    for t, (a, b, c) in enumerate(cs):
        if restart and t == restart:
            X = Q @ X
            R, Q = X @ X.mT, None
        Z = c * (R @ R) + b * R
        Q = Z + a * eye if Q is None else Q @ Z + a * Q
        if t + 1 < steps and not (restart and t + 1 == restart):
            W = R @ Z + a * R
            R = Z @ W + a * W
    X = Q @ X
    if tall:
        X = X.mT
    return X


def spread(path):
    torch.backends.cuda.matmul.allow_tf32 = False
    shapes = [(96, 200), (200, 96), (128, 128), (37, 101), (768, 3072), (3072, 768)]
    g = torch.Generator(device="cuda").manual_seed(1234)
    with open(path, "w") as f:
        for method, steps in (("newton_schulz", 5), ("polar_express", 8)):
            for r, c in shapes:
                worst = 0.0
                for _ in range(3):
                    G = 0.02 * torch.randn(3, r, c, device="cuda", generator=g)
                    x16 = iterate(G, method, steps, torch.bfloat16).float()
                    x32 = iterate(G, method, steps, torch.float32)
                    e = ((x16 - x32).norm(dim=(-2, -1)) / x32.norm(dim=(-2, -1))).max().item()
                    worst = max(worst, e)
                f.write(f"{r} {c} {method} {worst:.6e}\n")
                print(f"spread {method:14s} {r}x{c}: torch bf16 vs fp32 {worst:.3e}")
                if r == c:
                    continue
                # The same for Gram Newton-Schulz in torch (fp16 / bf16, restart 2), for the record.
                for dt in (torch.float16, torch.bfloat16):
                    worst_g = 0.0
                    for _ in range(3):
                        G = 0.02 * torch.randn(3, r, c, device="cuda", generator=g)
                        xg = iterate_gram(G, method, steps, dt).float()
                        x32 = iterate(G, method, steps, torch.float32)
                        e = ((xg - x32).norm(dim=(-2, -1)) / x32.norm(dim=(-2, -1))).max().item()
                        worst_g = max(worst_g, e)
                    print(f"spread {method:14s} {r}x{c}: torch Gram {str(dt)[6:]} vs fp32 standard {worst_g:.3e}")


def timed(fn, warm=5, reps=50):
    for _ in range(warm):
        fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(reps):
        a = torch.cuda.Event(enable_timing=True)
        b = torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        ts.append(a.elapsed_time(b))
    ts.sort()
    return ts[len(ts) // 2]


def bench(path):
    res = {}
    dev = "cuda"
    N = 8192
    A = torch.rand(N, N, device=dev, dtype=torch.bfloat16) * 2 - 1
    B = torch.rand(N, N, device=dev, dtype=torch.bfloat16) * 2 - 1
    t = timed(lambda: A @ B, 3, 10)
    res["torch bf16 matmul 8192^3 TFLOP/s"] = 2 * N**3 / (t * 1e-3) / 1e12
    del A, B
    shapes = [(768, 2304), (768, 768), (768, 3072), (3072, 768)]
    grads = [0.01 * (torch.rand(r, c, device=dev) * 2 - 1) for r, c in shapes for _ in range(12)]
    outs = [torch.empty_like(x) for x in grads]

    def torch_batched():
        # group by shape, stack, bf16 NS5 (tall as .mT), unstack into fp32 outputs
        for k in range(4):
            gs = grads[12 * k:12 * k + 12]
            X = iterate(torch.stack(gs), "newton_schulz", 5, torch.bfloat16)
            r, c = shapes[k]
            X = X * max(1.0, r / c) ** 0.5
            torch._foreach_copy_(outs[12 * k:12 * k + 12], list(X.unbind(0)))

    res["torch batched ns5 (stack+bf16+unstack) ms"] = timed(torch_batched)
    stacked = [torch.stack(grads[12 * k:12 * k + 12]) for k in range(4)]
    res["torch batched ns5 (NS only) ms"] = timed(
        lambda: [iterate(x, "newton_schulz", 5, torch.bfloat16) for x in stacked])
    if hasattr(torch.optim, "Muon"):
        params = [torch.nn.Parameter(torch.rand(r, c, device=dev)) for r, c in shapes for _ in range(12)]
        for p, g in zip(params, grads):
            p.grad = g.clone()
        opt = torch.optim.Muon(params, lr=1e-3)
        res["torch.optim.Muon step (48 matrices) ms"] = timed(opt.step, 3, 20)
        del opt, params
        # LLaMA-1B-shaped set (matrix_bench's "set llama1b"): 112 matrices.
        lshapes = [(2048, 2048)] * 2 + [(512, 2048)] * 2 + [(8192, 2048)] * 2 + [(2048, 8192)]
        params = [torch.nn.Parameter(torch.rand(r, c, device=dev)) for r, c in lshapes for _ in range(16)]
        for p in params:
            p.grad = 0.01 * (torch.rand_like(p) * 2 - 1)
        opt = torch.optim.Muon(params, lr=1e-3)
        res["torch.optim.Muon step (llama1b 112 matrices) ms"] = timed(opt.step, 2, 10)
        del opt, params
    for n, batch, dt in ((32, 1024, torch.float32), (768, 24, torch.float32), (768, 24, torch.float64)):
        G = torch.rand(batch, n, 2 * n, device=dev, dtype=dt)
        S = G @ G.mT / (2 * n)

        def root():
            w, V = torch.linalg.eigh(S)
            return (V * (w.clamp_min(0) + 1e-6).pow(-0.25).unsqueeze(-2)) @ V.mT

        res[f"torch eigh inverse root {batch}x{n}x{n} {str(dt)[6:]} ms"] = timed(root, 1, 5)
    # Shampoo's eigensolves alone (matrix_bench's "eigh fp32 ..."): one batched call, and the
    # batch split over K threads with a stream each.
    import threading
    for n, batch in ((768, 24), (2304, 8), (3072, 8)):
        G = torch.rand(batch, n, 2 * n, device=dev)
        S = G @ G.mT / (2 * n)
        del G
        for K in (1, 4):
            streams = [torch.cuda.Stream() for _ in range(K)]

            def part(k):
                with torch.cuda.stream(streams[k]):
                    torch.linalg.eigh(S[k * batch // K:(k + 1) * batch // K])

            def run():
                if K == 1:
                    part(0)
                else:
                    th = [threading.Thread(target=part, args=(k,)) for k in range(K)]
                    for t in th:
                        t.start()
                    for t in th:
                        t.join()
                torch.cuda.synchronize()

            run()
            ts = []
            for _ in range(3):
                t0 = time.perf_counter()
                run()
                ts.append((time.perf_counter() - t0) * 1e3)
            res[f"torch eigh fp32 {batch}x{n}^2, {K} streams/threads ms"] = sorted(ts)[1]
    for k, v in res.items():
        print(f"TORCH {k:52s} {v:12.4f}")
    with open(path, "w") as f:
        json.dump(res, f, indent=1)


if __name__ == "__main__":
    {"spread": spread, "bench": bench}[sys.argv[1]](sys.argv[2])
