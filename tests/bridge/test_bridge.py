#!/usr/bin/python3
"""Tests of symoc.torch.SymocOptimizer on models/mlp_tanh.onnx (fc1 16->32, fc2 32->32,
fc3 32->10, with biases; tanh).

Usage: test_bridge.py --symoc PATH/TO/symoc --work DIR [-k NAME]

Compiles the model with `symoc compile` for the policies the tests need (into DIR/<policy>),
builds each generated library with cmake, and checks:
  * parameters: names/shapes/order of the library match the torch module's;
  * one bridge step equals the generated step called directly through the C ABI (ctypes on
    numpy copies), bit for bit, and the adamw policy equals torch.optim.AdamW;
  * lr changes (param_groups, a torch scheduler) reach the C side: with plain SGD the
    update is exactly -lr * grad at each step's lr;
  * a mismatched parameter list gives one error listing every problem;
  * state_dict() -> torch.save -> torch.load -> load_state_dict() resumes bit-exactly;
  * a NaN gradient skips its block (weights unchanged) and is counted in steps_skipped;
  * the loss falls over 20 steps on a tiny regression problem.
Exit 77 (ctest: skipped) when torch is not importable.
"""
import argparse
import ctypes
import io
import os
import sys
import traceback

try:
    import torch
except ImportError:
    print("SKIP: torch is not importable")
    sys.exit(77)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "python"))
sys.path.insert(0, os.path.join(ROOT, "models"))
from symoc.build import compile_model  # noqa: E402
from symoc.torch import SymocError, SymocOptimizer, build_library, load_library  # noqa: E402
from export_fixtures import build_model  # noqa: E402

MODEL = os.path.join(ROOT, "models", "mlp_tanh.onnx")
ARGS = None
_libs = {}


def library(policy, *overrides):
    """Path of the generated library for `policy` (compiled and built once per run)."""
    key = (policy,) + overrides
    if key not in _libs:
        tag = policy + "".join("_" + o.replace("*", "all").replace("=", "-").replace(",", "_")
                               for o in overrides)
        out = os.path.join(ARGS.work, tag)
        compile_model(ARGS.symoc, MODEL, out, policy, overrides)
        _libs[key] = build_library(out)
    return _libs[key]


def fresh_model():
    model, _ = build_model("mlp_tanh")
    return model


def set_grads(model, seed):
    g = torch.Generator().manual_seed(seed)
    for p in model.parameters():
        p.grad = torch.randn(p.shape, generator=g)


def snapshot(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def bits_equal(a, b):
    return a.shape == b.shape and torch.equal(a.view(torch.int32), b.view(torch.int32))


# --------------------------------------------------------------------------- tests
def test_parameters_match():
    lib = load_library(library("symo"))
    model = fresh_model()
    opt = SymocOptimizer(model.named_parameters(), library=lib.path, lr=0.01)
    torch_params = {n: tuple(p.shape) for n, p in model.named_parameters()}
    lib_params = {n: s for n, s, _ in lib.params}
    assert torch_params == lib_params, (torch_params, lib_params)
    # The optimizer's param list is in plan order and is the module's tensors themselves.
    by_name = dict(model.named_parameters())
    for p, (n, _, _) in zip(opt.param_groups[0]["params"], lib.params):
        assert p is by_name[n], n
    assert opt.policy == "symo" and lib.model, (opt.policy, lib.model)
    assert all(r for r in opt.param_rules().values())


def _direct_abi_step(lib_path, lr, weights, grads):
    """The generated step called directly through the C ABI on numpy arrays."""
    lib = load_library(lib_path)
    api = lib.api
    h = api.create(ctypes.c_float(lr))
    assert h, api.last_error(None)
    try:
        n = len(lib.params)
        w = (ctypes.c_void_p * n)(*[a.ctypes.data for a in weights])
        g = (ctypes.c_void_p * n)(*[a.ctypes.data for a in grads])
        assert api.step(h, w, g, n) == 0, api.last_error(h)
    finally:
        api.destroy(h)


def test_step_equals_direct_abi_call():
    for policy in ("symo", "muon", "adamw"):
        path = library(policy)
        lib = load_library(path)
        model = fresh_model()
        set_grads(model, 1)
        ws = [dict(model.named_parameters())[n].detach().numpy().copy() for n, _, _ in lib.params]
        gs = [dict(model.named_parameters())[n].grad.numpy().copy() for n, _, _ in lib.params]
        opt = SymocOptimizer(model.named_parameters(), library=path, lr=0.02)
        opt.step()
        _direct_abi_step(path, 0.02, ws, gs)
        after = dict(model.named_parameters())
        for (n, _, _), w in zip(lib.params, ws):
            assert bits_equal(after[n].detach(), torch.from_numpy(w)), (policy, n)
        # The step moved every parameter (a vacuous comparison would not notice a no-op).
        before = fresh_model()
        for n, p in before.named_parameters():
            assert not torch.equal(p.detach(), after[n].detach()), (policy, n, "did not move")


def test_adamw_policy_equals_torch_adamw():
    path = library("adamw")
    lib = load_library(path)
    rules = {n: r for n, _, r in lib.params}
    assert all("adam" in r for r in rules.values()), rules
    a, b = fresh_model(), fresh_model()
    opt = SymocOptimizer(a.named_parameters(), library=path, lr=3e-3)
    # The plan's adamw: torch defaults, weight decay 0.01 on matrices and 0 on vectors.
    mats = [p for p in b.parameters() if p.dim() >= 2]
    vecs = [p for p in b.parameters() if p.dim() < 2]
    ref = torch.optim.AdamW([{"params": mats, "weight_decay": 0.01},
                             {"params": vecs, "weight_decay": 0.0}], lr=3e-3)
    for s in range(5):
        set_grads(a, 10 + s)
        set_grads(b, 10 + s)
        opt.step()
        ref.step()
    pb = dict(b.named_parameters())
    start = dict(fresh_model().named_parameters())
    for n, p in a.named_parameters():
        upd_a = (p - start[n]).detach().double()
        upd_b = (pb[n] - start[n]).detach().double()
        rel = ((upd_a - upd_b).norm() / upd_b.norm()).item()
        assert rel < 1e-5, (n, rel)


def test_lr_changes_propagate():
    # Plain gradient descent: W <- W - lr * g exactly (momentum 0), so every step's update
    # reveals the lr the library used.
    path = library("adamw", "*=sgd,momentum=0")
    lib = load_library(path)
    assert all(r.startswith("sgd") for _, _, r in lib.params), [r for _, _, r in lib.params]
    model = fresh_model()
    opt = SymocOptimizer(model.named_parameters(), library=path, lr=0.5)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.1)
    lrs = []
    for s in range(3):
        set_grads(model, 20 + s)
        before = snapshot(model)
        lr = opt.param_groups[0]["lr"]
        lrs.append(lr)
        opt.step()
        assert abs(lib.api.get_lr(opt._opt) - lr) <= 1e-7 * lr, (lib.api.get_lr(opt._opt), lr)
        for n, p in model.named_parameters():
            expect = before[n] - torch.tensor(lr, dtype=torch.float32) * p.grad
            assert torch.allclose(p.detach(), expect, rtol=0, atol=1e-6), (s, n)
        sched.step()
    assert [round(x, 6) for x in lrs] == [0.5, 0.05, 0.005], lrs
    # Setting the group's lr by hand works too.
    opt.param_groups[0]["lr"] = 0.25
    set_grads(model, 30)
    before = snapshot(model)
    opt.step()
    n, p = next(iter(model.named_parameters()))
    assert torch.allclose(p.detach(), before[n] - 0.25 * p.grad, rtol=0, atol=1e-6)
    # Block multipliers scale one block's step.
    opt.set_block_multiplier("fc1.*", 0.0)
    set_grads(model, 31)
    before = snapshot(model)
    opt.step()
    assert torch.equal(model.fc1.weight.detach(), before["fc1.weight"])
    assert not torch.equal(model.fc2.weight.detach(), before["fc2.weight"])
    try:
        opt.set_block_multiplier("no_such_param", 1.0)
        raise AssertionError("an unknown block name was accepted")
    except SymocError as e:
        assert "no_such_param" in str(e), str(e)


def test_mismatched_parameters_error():
    path = library("symo")
    model = fresh_model()
    named = [(n, p) for n, p in model.named_parameters() if n != "fc3.bias"]   # missing
    named.append(("extra.weight", torch.nn.Parameter(torch.zeros(3, 3))))    # extra
    named = [(n, torch.nn.Parameter(torch.zeros(5, 16)) if n == "fc1.weight" else p)
             for n, p in named]                                              # shape
    named = [(n, torch.nn.Parameter(p.detach().double()) if n == "fc2.bias" else p)
             for n, p in named]                                              # dtype
    named = [(n, torch.nn.Parameter(torch.cat([p.detach(), p.detach()])[::2]) if n == "fc2.weight" else p)
             for n, p in named]                                              # layout with gaps
    named = [(n, torch.nn.Parameter(p.detach().bfloat16()) if n == "fc1.bias" else p)
             for n, p in named]                                              # bf16 on the CPU
    try:
        SymocOptimizer(named, library=path, lr=0.01)
        raise AssertionError("a mismatched parameter list was accepted")
    except SymocError as e:
        msg = str(e)
    for needle in ("missing: 'fc3.bias'", "extra: 'extra.weight'", "'fc1.weight': shape [5, 16]",
                   "'fc2.bias': dtype torch.float64", "'fc2.weight': not contiguous",
                   "'fc1.bias': dtype torch.bfloat16, must be torch.float32 (bfloat16 steps on "
                   "CUDA parameters)", "6 parameter mismatch"):
        assert needle in msg, (needle, msg)
    assert "\n" not in msg, msg  # one line, the problems joined by "; "
    # A gradient with gaps is refused at step time, before anything moves (one dense in
    # another axis order, a transpose, is stepped through a contiguous copy: docs/torch.md).
    opt = SymocOptimizer(model.named_parameters(), library=path, lr=0.01)
    set_grads(model, 3)
    model.fc1.weight.grad = torch.randn(64, 16)[::2]
    before = snapshot(model)
    try:
        opt.step()
        raise AssertionError("a non-contiguous gradient was accepted")
    except SymocError as e:
        assert "gradient 'fc1.weight': not contiguous" in str(e), str(e)
    for n, p in model.named_parameters():
        assert torch.equal(p.detach(), before[n]), n


def test_one_tensor_under_two_names_is_refused():
    # Stepped twice by two rules otherwise (a session-35 audit); fc1.bias and fc2.bias are
    # both [32] in mlp_tanh.
    named = dict(fresh_model().named_parameters())
    named["fc2.bias"] = named["fc1.bias"]
    try:
        SymocOptimizer(list(named.items()), library=library("adamw"), lr=0.01)
        raise AssertionError("one tensor under two names was accepted")
    except SymocError as e:
        assert "'fc1.bias' and 'fc2.bias' are the same tensor" in str(e), str(e)


def test_truncated_library_is_an_error_not_a_crash():
    # An interrupted build or a cache copied in part: dlopen maps the segments the headers
    # name and the process died with SIGBUS (a session-35 audit); now one SymocError.
    path = library("adamw")
    data = open(path, "rb").read()
    for part in (2, 3):
        cut = os.path.join(ARGS.work, "libcut%d_optimizer.so" % part)
        with open(cut, "wb") as f:
            f.write(data[:len(data) // part])
        try:
            SymocOptimizer(fresh_model().named_parameters(), library=cut, lr=0.01)
            raise AssertionError("a truncated library was loaded")
        except SymocError as e:
            assert "truncated or corrupt optimizer library" in str(e) and "\n" not in str(e), str(e)


def test_state_dict_round_trip_bit_exact():
    for policy in ("symo", "shampoo"):
        path = library(policy)
        a = fresh_model()
        opt_a = SymocOptimizer(a.named_parameters(), library=path, lr=0.01)
        for s in range(3):
            set_grads(a, 40 + s)
            opt_a.step()
        buf = io.BytesIO()
        torch.save({"model": a.state_dict(), "opt": opt_a.state_dict()}, buf)
        assert opt_a.state_bytes > 0
        buf.seek(0)
        # weights_only (the default from torch 2.6): the checkpoint holds only tensors and
        # plain containers. torch 1.13's weights-only loader cannot read floats at all.
        newer = int(torch.__version__.split(".")[0]) >= 2
        ck = torch.load(buf, **({"weights_only": True} if newer else {}))
        assert ck["opt"]["symoc"]["blob"].dtype == torch.uint8
        b = fresh_model()
        b.load_state_dict(ck["model"])
        opt_b = SymocOptimizer(b.named_parameters(), library=path, lr=0.5)  # lr restored by load
        opt_b.load_state_dict(ck["opt"])
        assert opt_b.param_groups[0]["lr"] == opt_a.param_groups[0]["lr"]
        assert opt_b.steps_taken == opt_a.steps_taken == 3
        for s in range(3):
            set_grads(a, 50 + s)
            set_grads(b, 50 + s)
            opt_a.step()
            opt_b.step()
        pb = dict(b.named_parameters())
        for n, p in a.named_parameters():
            assert bits_equal(p.detach(), pb[n].detach()), (policy, n)
        # ... and resuming without the optimizer state differs (the state matters).
        c = fresh_model()
        c.load_state_dict(ck["model"])
        opt_c = SymocOptimizer(c.named_parameters(), library=path, lr=0.01)
        for s in range(3):
            set_grads(c, 50 + s)
            opt_c.step()
        assert not all(bits_equal(p.detach(), dict(c.named_parameters())[n].detach())
                       for n, p in a.named_parameters()), policy
    # A state from another plan is refused with a message naming both.
    other = SymocOptimizer(fresh_model().named_parameters(), library=library("muon"), lr=0.01)
    try:
        other.load_state_dict(opt_a.state_dict())
        raise AssertionError("a state of another plan was accepted")
    except SymocError as e:
        assert "policy 'shampoo'" in str(e) and "policy 'muon'" in str(e), str(e)


def test_nan_gradient_skipped_and_counted():
    path = library("symo")
    model = fresh_model()
    opt = SymocOptimizer(model.named_parameters(), library=path, lr=0.01)
    set_grads(model, 60)
    model.fc2.weight.grad[3, 4] = float("nan")
    before = snapshot(model)
    opt.step()
    assert opt.steps_skipped >= 1, opt.steps_skipped
    assert torch.equal(model.fc2.weight.detach(), before["fc2.weight"])
    assert not torch.equal(model.fc3.weight.detach(), before["fc3.weight"])
    for n, p in model.named_parameters():
        assert torch.isfinite(p).all(), n


def test_loss_falls_on_tiny_problem():
    torch.manual_seed(7)
    x = torch.randn(64, 16)
    teacher = fresh_model()
    with torch.no_grad():
        for p in teacher.parameters():
            p.add_(0.3 * torch.randn_like(p))
        y = teacher(x)
    for policy in ("symo", "adamw"):
        model = fresh_model()
        opt = SymocOptimizer(model.named_parameters(), library=library(policy), lr=0.01)
        losses = []
        for _ in range(21):
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(model(x), y)
            losses.append(loss.item())
            loss.backward()
            opt.step()
        assert losses[-1] < 0.5 * losses[0], (policy, losses[0], losses[-1])


def test_cuda_step_out_of_memory_retry():
    """The CUDA step's host logic (symoc.torch._LibraryBacked._step_cuda; the GPU check
    oom_step runs it for real): torch's cached blocks are released before an optimizer's first
    step only, an out-of-memory status is retried once after releasing them, any other error
    is raised at once with the library's message, and a second out-of-memory is raised."""
    from symoc.torch import _LibraryBacked

    class Api:
        def __init__(self, outcomes):
            self.outcomes, self.calls, self.msg = list(outcomes), 0, b""

        def last_error(self, opt):
            return self.msg

        def step(self):
            self.calls += 1
            rc, self.msg = self.outcomes.pop(0)
            return rc

    class Lib:
        path = "fake.so"

    released = []
    saved = torch.cuda.empty_cache
    torch.cuda.empty_cache = lambda: released.append(1)
    oom = (1, b"step_cuda: cuda: cudaMalloc: out of memory")
    try:
        def run(outcomes, steps=1):
            opt = _LibraryBacked()
            opt._lib, opt._opt = Lib(), None
            opt._lib.api = api = Api(outcomes)
            del released[:]
            err = None
            try:
                for _ in range(steps):
                    opt._step_cuda(api.step, "step_cuda()")
            except SymocError as e:
                err = str(e)
            return api.calls, len(released), err

        assert run([(0, b""), (0, b"")], steps=2) == (2, 1, None)  # released before the first only
        assert run([oom, (0, b"")]) == (2, 2, None)                # retried once, after releasing
        calls, rel, err = run([oom, oom])                          # still short: raised
        assert (calls, rel) == (2, 2) and "out of memory" in err and "fake.so" in err, err
        calls, rel, err = run([(1, b"step_cuda: NULL weight or gradient for 'w'")])
        assert (calls, rel) == (1, 1) and "NULL weight" in err, err  # other errors: no retry
        calls, rel, err = run([(0, b""), oom, (0, b"")], steps=2)
        assert (calls, rel, err) == (3, 2, None)                   # a later step's retry
    finally:
        torch.cuda.empty_cache = saved


TESTS = [v for k, v in sorted(globals().items()) if k.startswith("test_")]


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--symoc", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("-k", default="")
    ARGS = ap.parse_args()
    os.makedirs(ARGS.work, exist_ok=True)
    failed = 0
    ran = 0
    for t in TESTS:
        if ARGS.k not in t.__name__:
            continue
        ran += 1
        try:
            t()
            print("PASS", t.__name__, flush=True)
        except Exception:
            failed += 1
            print("FAIL", t.__name__, flush=True)
            traceback.print_exc()
    print("%d tests, %d failed" % (ran, failed))
    return 1 if failed or not ran else 0


if __name__ == "__main__":
    sys.exit(main())
