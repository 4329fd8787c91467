#!/usr/bin/python3
"""Policy benchmark (issue #7): the generated optimizer step of every policy against PyTorch
references on the same tensors, the machine's limits, roofline fractions, symoc's own cost
and step time against model width.

    /usr/bin/python3 bench/policy/run.py [--quick] [--out DIR]

runs everything on this machine: `prepare` (export the ONNX models with the fixtures' GPT2 /
Llama classes, `symoc compile --policy P` for every policy, symoc's own cost through
bench/compile), `measure` (build the runtime and every generated library, time them against
the references, interleaved, medians; machine limits) and `report` (results.md, results.json,
PNGs). The stages also run apart (symoc and the ONNX export need this machine's toolchain;
the timing can run on another one):

    run.py --stage prepare --bundle B            # sources + plans + compile cost into B
    run.py --stage measure --bundle B --out O    # on the timing machine (cmake, g++, OpenBLAS)
    run.py --stage report --out O [--merge O2 ...]

    run.py --check [--quick]                     # first-step agreement only (no timing)

--check compares the first step of the generated adamw and muon optimizers with
torch.optim.AdamW and a float32 torch Muon (muon.py) on the same tensors and exits 1 on
disagreement (ctest: bench.policy.first_step). Timings are benchmark figures, never asserted.
"""
import argparse
import concurrent.futures
import ctypes
import glob
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "python"))

POLICIES = ["adamw", "adam-mini", "muon", "shampoo", "lau-su", "symo", "symo-large"]
SCALING_POLICIES = ["adamw", "muon", "symo", "shampoo"]
WIDTHS = [256, 512, 1024, 2048]

# Models: (name, class, kwargs). Full sizes as issue #7 asks; --quick shrinks them.
FULL_MODELS = [
    ("gpt2_small", "GPT2", dict(vocab=50257, d=768, n_head=12, n_layer=12, n_pos=1024)),
    ("llama_small", "Llama", dict(vocab=32000, d=768, n_head=12, n_kv=4, d_ff=2048, n_layer=12)),
]
QUICK_MODELS = [
    ("gpt2_q", "GPT2", dict(vocab=512, d=64, n_head=4, n_layer=2, n_pos=64)),
    ("llama_q", "Llama", dict(vocab=512, d=64, n_head=4, n_kv=2, d_ff=128, n_layer=2)),
]


def scaling_models(quick):
    widths = [32, 64] if quick else WIDTHS
    vocab = 256 if quick else 1024   # small: the hidden matrices, not the embedding, grow
    return [("gpt2_d%d" % d, "GPT2", dict(vocab=vocab, d=d, n_head=max(1, d // 64), n_layer=1,
                                          n_pos=64 if quick else 1024)) for d in widths]


def log(*a):
    print(*a, flush=True)


# =========================================================================== prepare
def export_model(cls, kw, path):
    import torch
    sys.path.insert(0, os.path.join(ROOT, "models"))
    import export_fixtures as fx
    torch.manual_seed(0)
    if cls == "GPT2":
        model = fx.GPT2(t=fx.SEQ, **kw).train()
    else:
        model = fx.Llama(t=fx.SEQ, **kw).train()
    ids = torch.randint(0, kw["vocab"], (2, fx.SEQ))
    torch.onnx.export(model, (ids,), path, opset_version=14, export_params=True,
                      training=torch.onnx.TrainingMode.TRAINING, do_constant_folding=False,
                      input_names=["input_ids"], output_names=["logits"])


def prepare(args):
    os.makedirs(args.bundle, exist_ok=True)
    os.makedirs(args.work, exist_ok=True)
    manifest = {"models": [], "created": time.strftime("%Y-%m-%d %H:%M:%S"),
                "host": platform.node()}
    main_pols = ["adamw", "muon", "shampoo"] if args.check else POLICIES
    specs = [(n, c, k, "main", main_pols) for n, c, k in (QUICK_MODELS if args.quick else FULL_MODELS)]
    if not args.no_scaling:
        specs += [(n, c, k, "scaling", SCALING_POLICIES) for n, c, k in scaling_models(args.quick)]
    for name, cls, kw, group, policies in specs:
        onnx = os.path.join(args.work, name + ".onnx")
        if not os.path.exists(onnx):   # cached by name: the configs above are fixed
            log("export %s %s %s" % (name, cls, kw))
            export_model(cls, kw, onnx + ".tmp")
            os.replace(onnx + ".tmp", onnx)
        entry = {"name": name, "class": cls, "config": kw, "group": group, "params": 0,
                 "policies": {}}
        for pol in policies:
            out = os.path.join(args.bundle, name, pol)
            shutil.rmtree(out, ignore_errors=True)
            t0 = time.perf_counter()
            r = subprocess.run([args.symoc, "compile", onnx, "--policy", pol, "-o", out,
                                "--name", name], capture_output=True, text=True)
            dt = time.perf_counter() - t0
            if r.returncode != 0:
                log("symoc compile %s --policy %s failed: %s" % (name, pol, r.stderr.strip()))
                entry["policies"][pol] = {"error": r.stderr.strip().splitlines()[-1:]}
                continue
            os.remove(os.path.join(out, "CMakeLists.txt"))  # built by measure(), not cmake
            entry["policies"][pol] = {"dir": os.path.relpath(out, args.bundle),
                                      "compile_s": round(dt, 3)}
            with open(os.path.join(out, "plan.json")) as f:
                entry["params"] = sum(math.prod(p["shape"]) for p in json.load(f)["params"])
            log("  %-12s %-10s compiled in %.2f s" % (name, pol, dt))
        manifest["models"].append(entry)
    old = os.path.join(args.bundle, "manifest.json")
    if args.no_compile_cost and os.path.exists(old):
        with open(old) as f:
            cc = json.load(f).get("compile_cost")
        if cc:
            manifest["compile_cost"] = cc
    if not args.no_compile_cost:
        cost_work = os.path.join(args.work, "compile_cost")
        cmd = [sys.executable, os.path.join(ROOT, "bench", "compile", "bench_compile.py"),
               "--symoc", args.symoc, "--work", cost_work, "--runs", "1" if args.quick else "3"]
        if args.vit:
            cmd += ["--vit", args.vit]
        if args.quick:
            log("compile cost: skipped in --quick (GPT-2 small export takes minutes)")
        else:
            log("compile cost:", " ".join(cmd))
            subprocess.run(cmd, check=True)
            with open(os.path.join(cost_work, "bench_compile.json")) as f:
                manifest["compile_cost"] = json.load(f)
            manifest["compile_cost"]["host"] = platform.node()
            manifest["compile_cost"]["cpus"] = os.cpu_count()
    with open(os.path.join(args.bundle, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    log("bundle:", args.bundle)


# =========================================================================== build
def cmake_cache(build, key):
    with open(os.path.join(build, "CMakeCache.txt")) as f:
        for line in f:
            if line.startswith(key + ":"):
                return line.split("=", 1)[1].strip()
    return None


def build_runtime(args):
    """libsymoc_runtime.a and its link line: given, or built from runtime/ (no LLVM needed)."""
    if args.runtime_lib:
        return args.runtime_lib, args.link.split()
    b = os.path.join(args.work, "build-runtime")
    cfg = ["cmake", "-S", ROOT, "-B", b, "-G", "Ninja" if shutil.which("ninja") else "Unix Makefiles",
           "-DCMAKE_BUILD_TYPE=Release", "-DSYMOC_BUILD_COMPILER=OFF", "-DSYMOC_BUILD_TESTS=OFF"]
    subprocess.run(cfg, check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["cmake", "--build", b, "--target", "symoc_runtime", "-j", str(os.cpu_count())],
                   check=True, stdout=subprocess.DEVNULL)
    lib = glob.glob(os.path.join(b, "**", "libsymoc_runtime.a"), recursive=True)[0]
    link = [cmake_cache(b, "SYMOC_LAPACKE_LIB"), cmake_cache(b, "SYMOC_OPENBLAS_LIB"), "-fopenmp"]
    return lib, link


def build_libs(args, manifest):
    """g++ every generated optimizer into a shared library (parallel). Returns {dir: .so}."""
    rt, link = build_runtime(args)
    cxx = os.environ.get("CXX", "g++")
    jobs = []
    for m in manifest["models"]:
        for pol, e in m["policies"].items():
            if "dir" in e:
                jobs.append(os.path.join(args.bundle, e["dir"]))
    outdir = os.path.join(args.work, "libs")
    os.makedirs(outdir, exist_ok=True)

    def one(d):
        cpp = glob.glob(os.path.join(d, "*_optimizer.cpp"))[0]
        so = os.path.join(outdir, d.replace(os.sep, "_").strip("_") + ".so")
        if os.path.exists(so) and os.path.getmtime(so) > os.path.getmtime(cpp) and \
                os.path.getmtime(so) > os.path.getmtime(rt):
            return d, so
        cmd = [cxx, "-std=c++17", "-O2", "-fPIC", "-shared", "-fvisibility=hidden", "-I", d,
               "-I", os.path.join(ROOT, "runtime", "include"), cpp, rt,
               "-Wl,--exclude-libs,ALL", *link, "-o", so]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError("build of %s failed: %s" % (d, r.stderr[-2000:]))
        return d, so

    t0 = time.time()
    with concurrent.futures.ThreadPoolExecutor(max(1, os.cpu_count() or 1)) as ex:
        built = dict(ex.map(one, jobs))
    log("built %d optimizer libraries in %.1f s" % (len(built), time.time() - t0))
    return built


# =========================================================================== limits
def machine_limits(args, quick):
    so = os.path.join(args.work, "liblimits.so")
    src = os.path.join(HERE, "limits.c")
    if not os.path.exists(so) or os.path.getmtime(so) < os.path.getmtime(src):
        inc = [d for d in ("/usr/include/x86_64-linux-gnu", "/usr/include/openblas",
                           "/usr/include/aarch64-linux-gnu") if os.path.isdir(d)]
        cmd = [os.environ.get("CC", "cc"), "-O3", "-march=native", "-fopenmp", "-shared", "-fPIC",
               *["-I" + d for d in inc], src, "-lopenblas", "-o", so]
        subprocess.run(cmd, check=True)
    lib = ctypes.CDLL(so)
    lib.symoc_sgemm_gflops.restype = ctypes.c_double
    lib.symoc_triad_gbs.restype = ctypes.c_double
    n = 1024 if quick else 4096
    gflops = lib.symoc_sgemm_gflops(n, 3 if quick else 5)
    gbs = lib.symoc_triad_gbs(ctypes.c_long(1 << (22 if quick else 27)), 5 if quick else 10)
    lim = {"sgemm_gflops": round(gflops, 1), "sgemm_n": n, "triad_gbs": round(gbs, 1),
           "threads": lib.symoc_threads()}
    log("machine: %d threads, sgemm (OpenBLAS, n=%d) %.1f GFLOP/s, triad %.1f GB/s"
        % (lim["threads"], n, gflops, gbs))
    return lim


# =========================================================================== tensors, refs
def make_tensors(shapes, seed):
    import torch
    g = torch.Generator().manual_seed(seed)
    W = {n: (0.02 * torch.randn(s, generator=g)).contiguous() for n, s in shapes}
    G = {n: (0.01 * torch.randn(s, generator=g)).contiguous() for n, s in shapes}
    return W, G


class GenStep:
    """A generated optimizer through its C ABI: step() on given weight/grad tensors."""

    def __init__(self, so, lr):
        from symoc.torch import load_library
        self.lib = load_library(so)
        self.api = self.lib.api
        self.opt = self.api.create(ctypes.c_float(lr))
        if not self.opt:
            raise RuntimeError("create failed: %s" % self.api.last_error(None))
        self.names = [n for n, _, _ in self.lib.params]
        self.shapes = [(n, s) for n, s, _ in self.lib.params]

    def bind(self, W, G):
        n = len(self.names)
        self.W, self.G = W, G          # keep them alive
        self._w = (ctypes.c_void_p * n)(*[W[k].data_ptr() for k in self.names])
        self._g = (ctypes.c_void_p * n)(*[G[k].data_ptr() for k in self.names])
        self._n = n

    def step(self):
        rc = self.api.step(self.opt, self._w, self._g, self._n)
        if rc != 0:
            raise RuntimeError("step failed: %s" % self.api.last_error(self.opt))

    def state_bytes(self):
        return int(self.api.state_bytes(self.opt))

    def close(self):
        if self.opt:
            self.api.destroy(self.opt)
            self.opt = None


def plan_assignment(plan):
    """{param name: (kind, hyper)} from plan.json."""
    out = {}
    for b in plan["blocks"]:
        for p in b["params"]:
            out[p] = (b["step"]["kind"], b["step"].get("hyper", {}))
    return out


class TorchAdamW:
    """torch.optim.AdamW(foreach=True), one param group per distinct hyper-parameter set."""

    def __init__(self, params, lr):
        import torch
        groups = {}
        for p, h in params:
            key = (h.get("beta1", 0.9), h.get("beta2", 0.999), h.get("eps", 1e-8),
                   h.get("weight_decay", 0.01))
            groups.setdefault(key, []).append(p)
        self.opt = torch.optim.AdamW(
            [dict(params=ps, betas=(k[0], k[1]), eps=k[2], weight_decay=k[3])
             for k, ps in groups.items()], lr=lr, foreach=True) if groups else None

    def step(self):
        if self.opt:
            self.opt.step()


def zeropower_via_newtonschulz5(G, steps=5):
    """Keller Jordan's muon.py, in float32 (the reference runs bfloat16 on GPU)."""
    assert G.ndim >= 2
    a, b, c = (3.4445, -4.7750, 2.0315)
    X = G
    if G.size(-2) > G.size(-1):
        X = X.mT
    X = X / (X.norm(dim=(-2, -1), keepdim=True) + 1e-7)
    for _ in range(steps):
        A = X @ X.mT
        B = b * A + c * A @ A
        X = a * X + B @ X
    if G.size(-2) > G.size(-1):
        X = X.mT
    return X


class TorchMuon:
    """muon.py's SingleDeviceMuonWithAuxAdam on the plan's assignment: Muon (momentum 0.95,
    Nesterov, NS5, scale max(1, rows/cols)^0.5, decoupled decay) on the plan's Muon blocks,
    torch AdamW (foreach) with the plan's hyper-parameters on the others. The Nesterov lerp
    goes into a buffer instead of the gradient (muon.py lerps p.grad in place) so that every
    optimizer in the run sees the same gradients."""

    def __init__(self, tensors, assign, lr):
        import torch
        self.lr = lr
        self.muon = []
        other = []
        for name, (p, g) in tensors.items():
            kind, h = assign[name]
            if kind == "muon":
                self.muon.append((p, g, torch.zeros_like(p), torch.empty_like(p),
                                  h.get("beta", 0.95), bool(h.get("nesterov", 1)),
                                  h.get("weight_decay", 0.0)))
            else:
                other.append((p, h))
        self.adam = TorchAdamW(other, lr)

    def step(self):
        import torch
        with torch.no_grad():
            for p, g, mom, buf, beta, nest, wd in self.muon:
                mom.lerp_(g, 1 - beta)
                upd = torch.lerp(g, mom, beta, out=buf) if nest else mom
                if upd.ndim == 4:
                    upd = upd.view(len(upd), -1)
                upd = zeropower_via_newtonschulz5(upd, 5)
                upd = upd * max(1, g.size(-2) / g.size(-1)) ** 0.5 if upd.ndim == 2 else upd
                p.mul_(1 - self.lr * wd)
                p.add_(upd.reshape(p.shape), alpha=-self.lr)
        self.adam.step()


class TorchShampoo:
    """Eigh-based Shampoo with symoc's settings (docs/compile.md): L += G G^T, R += G^T G
    (beta2 = 1), roots (L + eps)^{-1/4}, (R + eps)^{-1/4} by a float64 eigh every step with
    the runtime's pseudo-inverse cut (eigenvalues <= 1e-7 max dropped), a side above
    max_precond_dim unpreconditioned; torch AdamW (foreach) on the other parameters."""

    def __init__(self, tensors, assign, lr):
        import torch
        self.lr = lr
        self.sh = []
        other = []
        for name, (p, g) in tensors.items():
            kind, h = assign[name]
            if kind == "shampoo" and p.ndim >= 2:
                g2 = g.view(g.shape[0], -1)
                m, k = g2.shape
                mx = h.get("max_precond_dim", 8192)
                L = torch.zeros(m, m) if m <= mx else None
                R = torch.zeros(k, k) if k <= mx else None
                self.sh.append((p, g2, L, R, h.get("eps", 1e-6), h.get("exponent", 4.0),
                                h.get("beta2", 1.0), h.get("weight_decay", 0.0)))
            else:
                other.append((p, h))
        self.adam = TorchAdamW(other, lr)

    @staticmethod
    def _root(A, eps, expo):
        import torch
        w, V = torch.linalg.eigh(A.double())
        w = w.clamp(min=0) + eps
        keep = w > 1e-7 * w.max()
        f = torch.where(keep, w.pow(-1.0 / expo), torch.zeros_like(w))
        return ((V * f) @ V.T).float()

    def step(self):
        import torch
        with torch.no_grad():
            for p, g, L, R, eps, expo, b2, wd in self.sh:
                D = g
                if L is not None:
                    L.mul_(b2).addmm_(g, g.T)
                    D = self._root(L, eps, expo) @ D
                if R is not None:
                    R.mul_(b2).addmm_(g.T, g)
                    D = D @ self._root(R, eps, expo)
                p.mul_(1 - self.lr * wd)
                p.add_(D.reshape(p.shape), alpha=-self.lr)
        self.adam.step()


def make_reference(policy, plan, W, G, lr):
    """The torch reference of a policy on tensors W (updated in place) and G, or None."""
    assign = plan_assignment(plan)
    tensors = {n: (W[n], G[n]) for n in W}
    for n, (p, g) in tensors.items():
        p.grad = g
    if policy == "adamw":
        return "torch AdamW (foreach)", TorchAdamW([(p, assign[n][1]) for n, (p, _) in tensors.items()], lr)
    if policy == "muon":
        return "torch Muon fp32 (muon.py)", TorchMuon(tensors, assign, lr)
    if policy == "shampoo":
        return "torch Shampoo (eigh fp64)", TorchShampoo(tensors, assign, lr)
    return None, None


def baseline_adamw(plan, W, G, lr):
    """torch AdamW (foreach) over every parameter (hyper-parameters by class, as symoc's
    adamw policy: decay 0.01 on matrices, 0 on the others)."""
    for n in W:
        W[n].grad = G[n]
    return TorchAdamW([(W[n], {"weight_decay": 0.01 if W[n].ndim >= 2 else 0.0}) for n in W], lr)


# =========================================================================== check
def first_step_check(libs, bundle, manifest, policies=("adamw", "muon", "shampoo"), lr=1e-2):
    """First step of generated adamw / muon / shampoo against the torch references."""
    import torch
    tol = {"adamw": 1e-5, "muon": 1e-4, "shampoo": 1e-3}
    ok = True
    rows = []
    for m in manifest["models"]:
        if m["group"] != "main":
            continue
        for pol in policies:
            e = m["policies"].get(pol, {})
            if "dir" not in e:
                continue
            d = os.path.join(bundle, e["dir"])
            with open(os.path.join(d, "plan.json")) as f:
                plan = json.load(f)
            gen = GenStep(libs[d], lr)
            W0, G = make_tensors(gen.shapes, seed=1)
            Wg = {k: v.clone() for k, v in W0.items()}
            Wr = {k: v.clone() for k, v in W0.items()}
            gen.bind(Wg, G)
            gen.step()
            gen.close()
            _, ref = make_reference(pol, plan, Wr, G, lr)
            ref.step()
            worst, worst_name = 0.0, ""
            for k in W0:
                dg = (Wg[k] - W0[k]).double()
                dr = (Wr[k] - W0[k]).double()
                err = float((dg - dr).norm() / max(float(dr.norm()), 1e-30))
                if err > worst:
                    worst, worst_name = err, k
            passed = worst < tol[pol] and all(torch.isfinite(Wg[k]).all() for k in Wg)
            ok &= passed
            rows.append({"model": m["name"], "policy": pol, "max_rel_err": worst,
                         "worst_param": worst_name, "tol": tol[pol], "ok": passed})
            log("first-step check %-12s %-8s max rel. error of the update %.2e (%s) tol %.0e: %s"
                % (m["name"], pol, worst, worst_name, tol[pol], "OK" if passed else "FAIL"))
    return ok, rows


# =========================================================================== measure
def est_flops_bytes(plan, shapes):
    """Per-block FLOPs (plan estimate) and minimal bytes moved: weights and gradients read,
    weights written, every state float read and written once."""
    size = {n: math.prod(s) for n, s in shapes}
    flops = bytes_ = 0.0
    blocks = []
    for b in plan["blocks"]:
        ent = sum(size[p] for p in b["params"])
        by = 4.0 * (3 * ent + 2 * b["state_bytes"] / 4.0)
        blocks.append((b["flops_per_step"], by))
        flops += b["flops_per_step"]
        bytes_ += by
    return flops, bytes_, blocks


def timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def measure_model(m, args, libs, limits, results, deadline):
    import torch
    lr = 1e-3
    shapes = None
    base = None
    rows = []
    policies = [p for p in m["policies"] if "dir" in m["policies"][p]]
    if args.policies:
        policies = [p for p in policies if p in args.policies]
    for pol in policies:
        d = os.path.join(args.bundle, m["policies"][pol]["dir"])
        with open(os.path.join(d, "plan.json")) as f:
            plan = json.load(f)
        row = {"model": m["name"], "group": m["group"], "params": m["params"], "policy": pol,
               "width": m["config"]["d"]}
        if time.time() > deadline:
            row["skipped"] = "time budget of the run spent"
            rows.append(row)
            results.append(row)
            log("  %-12s %-10s skipped (time budget)" % (m["name"], pol))
            continue
        # Skip what cannot finish: a pessimistic step estimate (plan FLOPs at 30% of the
        # sgemm rate, eigendecompositions run far below it) for the generated step and its
        # reference, warm-up and one repeat.
        est = plan["flops_per_step"] / (0.3 * limits["sgemm_gflops"] * 1e9)
        if est > args.max_step_est_s:
            row["skipped"] = "estimated %.0f s per step (plan FLOPs at 30%% of sgemm) > --max-step-est-s" % est
            rows.append(row)
            results.append(row)
            log("  %-12s %-10s skipped (%s)" % (m["name"], pol, row["skipped"]))
            continue
        if time.time() + 4 * est > deadline:
            row["skipped"] = "estimated %.0f s per step: over the run's time budget" % est
            rows.append(row)
            results.append(row)
            log("  %-12s %-10s skipped (%s)" % (m["name"], pol, row["skipped"]))
            continue
        gen = GenStep(libs[d], lr)
        if shapes is None:
            shapes = gen.shapes
            base = make_tensors(shapes, seed=0)
        W0, G = base
        Wg = {k: v.clone() for k, v in W0.items()}
        gen.bind(Wg, G)
        Wr = {k: v.clone() for k, v in W0.items()}
        ref_name, ref = make_reference(pol, plan, Wr, G, lr)
        flops, bytes_, blocks = est_flops_bytes(plan, shapes)
        bound = sum(max(f / (limits["sgemm_gflops"] * 1e9), b / (limits["triad_gbs"] * 1e9))
                    for f, b in blocks)
        t_flop = sum(f for f, _ in blocks) / (limits["sgemm_gflops"] * 1e9)
        t_byte = sum(b for _, b in blocks) / (limits["triad_gbs"] * 1e9)
        kind = "matrix" if t_flop > t_byte else "elementwise"
        # Warm-up (first step: state allocation, workspace growth), then interleaved repeats.
        tw_gen = timed(gen.step)
        tw_ref = timed(ref.step) if ref else 0.0
        per = max(tw_gen + tw_ref, 1e-6)
        reps = int(min(args.max_reps, max(1, args.item_s / per)))
        if per * args.min_reps <= args.item_s * 2:
            reps = max(reps, args.min_reps)
        if time.time() + reps * per > deadline:
            reps = max(1, int((deadline - time.time()) / per))
        tg, tr = [], []
        for _ in range(reps):
            time.sleep(0.02)
            tg.append(timed(gen.step))
            if ref:
                time.sleep(0.02)
                tr.append(timed(ref.step))
        state = gen.state_bytes()
        gen.close()
        med_g = statistics.median(tg)
        row.update({
            "ref": ref_name, "gen_ms": med_g * 1e3, "gen_ms_all": [round(t * 1e3, 3) for t in tg],
            "ref_ms": statistics.median(tr) * 1e3 if tr else None,
            "warmup_gen_ms": tw_gen * 1e3, "reps": reps, "kind": kind,
            "state_bytes": state, "plan_state_bytes": plan["state_bytes"],
            "adamw_state_bytes": plan["adamw_state_bytes"], "flops": flops, "bytes": bytes_,
            "bound_ms": bound * 1e3, "roofline_fraction": bound / med_g,
            "achieved_gflops": flops / med_g * 1e-9, "achieved_gbs": bytes_ / med_g * 1e-9})
        if row["ref_ms"]:
            row["ratio_ref"] = med_g * 1e3 / row["ref_ms"]
        rows.append(row)
        results.append(row)
        del Wg, Wr, ref
        log("  %-12s %-10s gen %9.2f ms  %s %s  state %.3fx  roofline %.0f%% (%s, %d reps)"
            % (m["name"], pol, row["gen_ms"],
               ("ref %9.2f ms" % row["ref_ms"]) if row["ref_ms"] else "ref        -   ",
               ("x%.2f" % row["ratio_ref"]) if row.get("ratio_ref") else "     ",
               state / plan["adamw_state_bytes"], 100 * row["roofline_fraction"], kind, reps))
        save_json(args, results)
    # The common baseline: torch AdamW (foreach) on the same tensors, timed in the same loop
    # as the generated adamw step (the adamw row's reference).
    ad = [r for r in rows if r["policy"] == "adamw" and r.get("ref_ms")]
    if not ad and shapes is not None and time.time() < deadline:
        W0, G = base
        Wb = {k: v.clone() for k, v in W0.items()}
        ref = baseline_adamw(None, Wb, G, lr)
        timed(ref.step)
        t = statistics.median(timed(ref.step) for _ in range(max(3, args.min_reps)))
        base_ms = t * 1e3
    else:
        base_ms = ad[0]["ref_ms"] if ad else None
    for r in rows:
        if "gen_ms" in r and base_ms:
            r["torch_adamw_ms"] = base_ms
            r["ratio_torch_adamw"] = r["gen_ms"] / base_ms
    save_json(args, results)


def save_json(args, results, limits=None):
    path = os.path.join(args.out, "results.json")
    data = {}
    if os.path.exists(path):
        with open(path) as f:
            data = json.load(f)
    data["rows"] = results
    if limits:
        data["limits"] = limits
    with open(path, "w") as f:
        json.dump(data, f, indent=1)


def measure(args):
    import torch
    with open(os.path.join(args.bundle, "manifest.json")) as f:
        manifest = json.load(f)
    os.makedirs(args.out, exist_ok=True)
    os.makedirs(args.work, exist_ok=True)
    nthreads = args.threads or os.cpu_count()
    torch.set_num_threads(nthreads)
    if args.models:
        manifest["models"] = [m for m in manifest["models"] if m["name"] in args.models
                              or m["group"] in args.models]
    libs = build_libs(args, manifest)
    limits = machine_limits(args, args.quick)
    limits.update({"torch": torch.__version__, "torch_threads": torch.get_num_threads(),
                   "cpu": cpu_name(), "cpus": os.cpu_count(), "host": platform.node(),
                   "date": time.strftime("%Y-%m-%d %H:%M:%S")})
    results = []
    path = os.path.join(args.out, "results.json")
    with open(path, "w") as f:
        json.dump({"limits": limits, "check": [],
                   "compile_cost": manifest.get("compile_cost"), "rows": []}, f, indent=1)
    for m in manifest["models"]:
        log("model %s (%s, %.1f M parameters)" % (m["name"], m["group"], m["params"] / 1e6))
        measure_model(m, args, libs, limits, results, time.time() + args.budget_s)
    # The check runs after the timings: its full-size torch Muon left the next AdamW timings
    # of the same process up to 1.6x slower (device runs of 2026-11-22).
    ok = True
    if not args.no_check:   # Shampoo's first step on the full models costs minutes: --quick only
        ok, check_rows = first_step_check(libs, args.bundle, manifest,
                                          ("adamw", "muon", "shampoo") if args.quick else ("adamw", "muon"))
        with open(path) as f:
            data = json.load(f)
        data["check"] = check_rows
        with open(path, "w") as f:
            json.dump(data, f, indent=1)
    log("results:", path)
    return ok


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


# =========================================================================== main
def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small models, few repeats")
    ap.add_argument("--check", action="store_true",
                    help="only the first-step agreement check (no timing); exit 1 on failure")
    ap.add_argument("--stage", choices=["all", "prepare", "measure", "report"], default="all")
    ap.add_argument("--out", default=os.path.join(ROOT, "out", "bench-policy"))
    ap.add_argument("--bundle", help="sources + plans folder (default OUT/bundle)")
    ap.add_argument("--work", help="scratch folder (default OUT/work)")
    ap.add_argument("--symoc", default=os.path.join(ROOT, "build", "bin", "symoc"))
    ap.add_argument("--runtime-lib", help="a built libsymoc_runtime.a (else built from runtime/)")
    ap.add_argument("--link", default="-llapacke -lopenblas -fopenmp")
    ap.add_argument("--vit", default="/tmp/tv/vit_b_16.onnx")
    ap.add_argument("--models", nargs="*", help="names or groups (main, scaling) to measure")
    ap.add_argument("--policies", nargs="*")
    ap.add_argument("--no-scaling", action="store_true")
    ap.add_argument("--no-compile-cost", action="store_true")
    ap.add_argument("--no-check", action="store_true", help="measure: no first-step check")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--item-s", type=float, default=20.0,
                    help="target seconds of timed repeats per (model, policy)")
    ap.add_argument("--min-reps", type=int, default=3)
    ap.add_argument("--max-reps", type=int, default=15)
    ap.add_argument("--budget-s", type=float, default=3600.0,
                    help="measure: per model, skip what would not finish within this many seconds")
    ap.add_argument("--max-step-est-s", type=float, default=1e9,
                    help="measure: skip a (model, policy) whose estimated step exceeds this")
    ap.add_argument("--merge", nargs="*", default=[], help="report: more results.json to merge")
    ap.add_argument("--name", default=None, help="report: machine name for the title")
    args = ap.parse_args()
    args.out = os.path.abspath(args.out)
    args.bundle = os.path.abspath(args.bundle or os.path.join(args.out, "bundle"))
    args.work = os.path.abspath(args.work or os.path.join(args.out, "work"))
    if args.quick:
        args.item_s, args.min_reps, args.max_reps = 1.0, 2, 5
    if args.check:
        try:
            import torch  # noqa: F401
        except ImportError:
            log("run.py --check: no torch in %s: nothing to compare against (skipped)" % sys.executable)
            return 77
        args.no_scaling = args.no_compile_cost = True
        args.quick = True
        prepare_checked(args)
        with open(os.path.join(args.bundle, "manifest.json")) as f:
            manifest = json.load(f)
        import torch
        torch.set_num_threads(args.threads or min(4, os.cpu_count()))
        libs = build_libs(args, manifest)
        ok, _ = first_step_check(libs, args.bundle, manifest)
        log("first-step check:", "OK" if ok else "FAILED")
        return 0 if ok else 1
    ok = True
    if args.stage in ("all", "prepare"):
        prepare_checked(args)
    if args.stage in ("all", "measure"):
        ok = measure(args)
    if args.stage in ("all", "report"):
        import report
        report.write(args.out, [os.path.join(args.out, "results.json")] + args.merge, args.name)
    return 0 if ok else 1


def prepare_checked(args):
    if not os.access(args.symoc, os.X_OK):
        sys.exit("run.py: %s: no symoc binary (build it, or pass --symoc)" % args.symoc)
    prepare(args)


if __name__ == "__main__":
    sys.path.insert(0, HERE)
    sys.exit(main())
