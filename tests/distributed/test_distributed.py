#!/usr/bin/python3
"""symoc.distributed.DistributedSymocOptimizer over gloo on CPU (issue #15).

Usage: test_distributed.py --symoc BIN --runtime-lib LIB.a --link "-l..." [--cxx g++] --work DIR

Compiles the fixture models (llama, gpt2, resnet_cnn) for every policy, and llama with
adam_mini row groups of 4 and 8 rows (EXTRA) (g++ against the build's runtime, as
tests/compile does), then runs world sizes 1, 2 and 3 with
torch.multiprocessing.spawn and checks on every rank:
  * equality: 3 distributed steps (lr changed before the third; default 32 MiB or 4 KiB
    broadcast buckets) leave every parameter
    bit-identical to a single-process SymocOptimizer stepped on the same gradients in the
    same process, for every (model, policy);
  * channels_last: the CNN's conv weights in NHWC order (replicated layout) step as the
    contiguous ones do, bit for bit, and stay channels_last; sharded shards in that order are
    refused at construction;
  * sharded layout (RowShard: row ranges per rank as FSDP2's Shard(0), empty ones included):
    the same, each block gathered at its home rank and its rows sent back;
  * state: every rank holds state only for its blocks, and the ranks' state bytes add up
    to the single-process optimizer's;
  * checkpoints: state saved at world size 2 after 2 steps (save_checkpoint, and the
    ranks' state_dict()s) resumes at world size 3 (and 1) bit-exactly against 4
    uninterrupted single-process steps; so do a single-process SymocOptimizer state_dict
    loaded by the distributed optimizer and the shards merged for a SymocOptimizer;
  * faults: a rank whose step() raises (a wrong gradient, a closure that throws) makes every
    rank raise SymocError naming it, nothing is stepped, and the next step is exact; a NaN
    gradient skips its block at its home as in the single process;
    ranks constructed with different plans (fingerprints) or a parameter missing on one
    rank all refuse at construction.
Before that, in this process, the ABI v2 block entries of every library: the blocks partition
the parameters and are plan.json's blocks, block_cost is plan FLOPs + 12 bytes per entry + twice
the state bytes (what bench/distributed computes from plan.json), costs are positive, bad block lists are refused without effect, stepping the
odd blocks then the even ones equals step() bit for bit, and creates state only for the
blocks stepped.
Exit 77 (ctest: skipped) without torch or torch.distributed's gloo backend.
"""
import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import traceback

try:
    import torch
    import torch.distributed as dist
    import torch.multiprocessing as mp
except ImportError:
    print("SKIP: torch is not importable")
    sys.exit(77)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "python"))

POLICIES = ["symo", "symo-large", "symo-coupled", "muon", "shampoo", "lau-su", "adam-mini",
            "adamw", "ddc-adam", "ddc-muon", "auto", "auto-norm"]
MODELS = ["llama", "gpt2", "resnet_cnn"]
# transformers' Mixtral: its experts are stacks of matrices (E x m x n), stepped whole.
STACKS = [("hf_moe/mixtral", p) for p in ("adamw", "muon", "adam-mini")]
CKPT = [("llama", "symo"), ("llama", "adam-mini"), ("gpt2", "shampoo"),
        ("llama", "symo-coupled"), ("resnet_cnn", "muon")]
# Checkpoints of the sharded layout (elementwise parameters stepped on their shards).
CKPT_SHARDED = [("llama", "adamw"), ("gpt2", "adam-mini"), ("llama", "symo")]
STEPS, LR = 3, 1e-2
# Extra llama libraries: (policy, symoc compile options). adam_mini with row groups of 4 and
# 8 rows (param_row_granule > 1: row ranges on group boundaries; FSDP2's 22-row shards at
# W = 3 are off them, so those parameters go to a home rank).
EXTRA = {"adamw+mini-groups": ("adamw", ["--override", "embed_tokens.weight=adam_mini,group_rows=4",
                                         "--override",
                                         "layers.0.mlp.down_proj.weight=adam_mini,group_rows=8"])}


# --------------------------------------------------------------------------- building
def build(args, model, policy):
    out = os.path.join(args.work, "%s_%s" % (model.replace("/", "_"), policy))
    shutil.rmtree(out, ignore_errors=True)
    pol, opts = EXTRA.get(policy, (policy, []))
    r = subprocess.run([args.symoc, "compile", os.path.join(ROOT, "models", model + ".onnx"),
                        "--policy", pol, "-o", out] + opts, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit("symoc compile %s --policy %s failed:\n%s" % (model, policy, r.stderr))
    cpp = [f for f in os.listdir(out) if f.endswith("_optimizer.cpp")][0]
    lib = os.path.join(out, "lib" + cpp[:-4] + ".so")
    cxx = ([shutil.which("ccache")] if shutil.which("ccache") else []) + [args.cxx]
    obj = lib[:-3] + ".o"
    # Compile and link separately: ccache caches the compile only.
    cc = cxx + ["-std=c++17", "-O1", "-fPIC", "-Wall", "-Wextra", "-Werror", "-fvisibility=hidden",
                "-I", out, "-I", os.path.join(ROOT, "runtime", "include"), "-c",
                os.path.join(out, cpp), "-o", obj]
    ld = [args.cxx, "-shared", obj, args.runtime_lib, "-Wl,--exclude-libs,ALL",
          *args.link.split(), "-o", lib]
    cmd = " ".join(map(shlex.quote, cc)) + " && " + " ".join(map(shlex.quote, ld))
    return subprocess.Popen(cmd, shell=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True), lib


def check_policy_list(symoc):
    """Every policy symoc knows is tested here: its 'unknown policy' error lists them."""
    r = subprocess.run([symoc, "compile", os.path.join(ROOT, "models", "mlp_relu.onnx"),
                        "--policy", "?", "-o", os.devnull], capture_output=True, text=True)
    m = re.search(r"one of ([^)]*)\)", r.stderr)
    if not m:
        raise SystemExit("cannot read the policy list from symoc's error: %r" % r.stderr)
    known = [p.strip() for p in m.group(1).split(",")]
    missing = sorted(set(known) - set(POLICIES))
    if missing:
        raise SystemExit("policies not covered by the distributed test: %s" % ", ".join(missing))


def build_all(args):
    check_policy_list(args.symoc)
    jobs, libs = [], {}
    for m, p in [(m, p) for m in MODELS for p in POLICIES] + [("llama", p) for p in EXTRA] + STACKS:
        jobs.append(((m, p),) + build(args, m, p))
        while sum(j[1].poll() is None for j in jobs) >= 2:
            time.sleep(0.05)
    for key, proc, lib in jobs:
        out, _ = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit("generated code for %s does not compile:\n%s" % (key, out[-3000:]))
        libs[key] = lib
    return libs


# --------------------------------------------------------------------------- helpers
def make_params(lib, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(n, torch.nn.Parameter(torch.randn(s, generator=g) * 0.5)) for n, s, _ in lib.params]


def set_grads(named, step):
    g = torch.Generator().manual_seed(1000 + step)
    for _, p in named:
        p.grad = torch.randn(p.shape, generator=g)


def clone(named):
    return [(n, torch.nn.Parameter(p.detach().clone())) for n, p in named]


def same_bits(a, b):
    return a.shape == b.shape and torch.equal(a.detach().view(torch.int32),
                                              b.detach().view(torch.int32))


def assert_equal(tag, got, want):
    for (n, p), (_, q) in zip(got, want):
        if not same_bits(p, q):
            d = (p.detach() - q.detach()).abs().max().item()
            raise AssertionError("%s: parameter %r differs from the single-process step "
                                 "(max abs diff %g)" % (tag, n, d))


def ref_steps(lib_path, named, steps):
    from symoc.torch import SymocOptimizer
    opt = SymocOptimizer(named, library=lib_path, lr=LR)
    for s in range(steps):
        if s == 2:
            opt.param_groups[0]["lr"] = LR * 0.5
        set_grads(named, s)
        opt.step()
    return opt


def expect_error(fn, *needles):
    from symoc.build import SymocError
    try:
        fn()
    except SymocError as e:
        msg = str(e)
        for n in needles:
            if n not in msg:
                raise AssertionError("error %r does not mention %r" % (msg, n))
        return msg
    raise AssertionError("expected SymocError mentioning %s, nothing raised" % (needles,))


# --------------------------------------------------------------------------- checks
def check_equality(libs, rank, world):
    from symoc.distributed import DistributedSymocOptimizer, read_state
    from symoc.torch import load_library
    pieces = 0
    for k, ((model, policy), path) in enumerate(sorted(libs.items())):
        tag = "%s/%s at world size %d, rank %d" % (model, policy, world, rank)
        lib = load_library(path)
        named = make_params(lib)
        ref = clone(named)
        # Every other library with 4 KiB buckets: many buckets per rank, interleaved; block
        # splitting off, when it balances better (the default) and whenever possible (always
        # for the adamw libraries, whose elementwise blocks are all splittable); every fourth
        # (4 KiB buckets) with schedule="one_call": a rank's blocks and pieces in one call.
        opt = DistributedSymocOptimizer(named, library=path, lr=LR,
                                        bucket_bytes=(32 << 20) if k % 2 else 4096,
                                        split="always" if policy == "adamw" else
                                        (False, True, "always")[k % 3],
                                        schedule="one_call" if k % 4 == 0 else "buckets")
        pieces += len(opt.row_ranges)
        for s in range(STEPS):
            if s == 2:
                opt.param_groups[0]["lr"] = LR * 0.5
            set_grads(named, s)
            opt.step()
        ropt = ref_steps(path, ref, STEPS)
        assert_equal(tag, named, ref)
        total = torch.tensor([opt.state_bytes], dtype=torch.int64)
        dist.all_reduce(total)
        if total.item() != ropt.state_bytes:
            raise AssertionError("%s: state bytes of the ranks add up to %d, single process %d"
                                 % (tag, total.item(), ropt.state_bytes))
        mine = {lib.params[i][0] for b in opt.my_blocks for i in opt._blocks[b][0]} | \
            set(opt.row_ranges)
        _, bufs, _ = read_state(opt.state_dict()["symoc_dist"]["blob"].numpy().tobytes())
        for k in bufs:
            if not k.startswith("__optimizer/") and k.split("/")[0] not in mine and \
                    not any(k.startswith(n + "/") for n in mine):
                raise AssertionError("%s: rank holds state %r of another rank's block" % (tag, k))
        for name, (r0, r1, rows) in opt.row_ranges.items():
            d = bufs.get(name + "/adamw.m") or bufs.get(name + "/adam_mini.m")
            if d is not None and d[0][0] != r1 - r0:
                raise AssertionError("%s: state of %r rows [%d, %d) has %d rows"
                                     % (tag, name, r0, r1, d[0][0]))
    # Splitting must have happened somewhere (AdamW's embeddings, ...).
    total = torch.tensor([pieces])
    dist.all_reduce(total)
    if world > 1 and total.item() == 0:
        raise AssertionError("world size %d: no block was split over the ranks" % world)
    return total.item()


def rows_of(n, rank, world):
    """FSDP2's Shard(0) split: chunks of ceil(n / world) rows, the last ones short or empty."""
    c = -(-n // world)
    return min(n, rank * c), min(n, (rank + 1) * c)


def shard(full, rank, world):
    """This rank's RowShards (FSDP2's Shard(0) split) of full parameters; 0-d ones
    replicated. Returns (given, rows) with rows[k] = (r0, r1) or None."""
    from symoc.distributed import RowShard
    given, rows = [], []
    for n, p in full:
        if p.dim() == 0:
            given.append((n, torch.nn.Parameter(p.detach().clone())))
            rows.append(None)
        else:
            a, b = rows_of(p.shape[0], rank, world)
            given.append((n, RowShard(torch.nn.Parameter(p.detach()[a:b].clone()), p.shape)))
            rows.append((a, b))
    return given, rows


def shard_grads(given, full, rows):
    for (n, p), (_, q), r in zip(given, full, rows):
        t = p if r is None else p.local
        t.grad = q.grad.clone() if r is None else q.grad[r[0]:r[1]].clone()


def assert_rows_equal(tag, given, want, rows):
    for (n, p), (_, q), r in zip(given, want, rows):
        got = p if r is None else p.local
        w = q.detach() if r is None else q.detach()[r[0]:r[1]]
        if not same_bits(got, w):
            d = (got.detach() - w).abs().max().item() if got.numel() else 0.0
            raise AssertionError("%s: rows %s of %r differ from the single-process step (max "
                                 "abs diff %g)" % (tag, r, n, d))


def check_sharded(libs, rank, world):
    """The sharded (FSDP-style) path through RowShard: each rank holds a row range of every
    parameter (0-d ones replicated); elementwise parameters are stepped on the shards, the
    others gathered at their home. After 3 steps, and a 4th whose gradient has a NaN in rank
    0's rows of one parameter stepped on the shards (skipped on every rank, as the single
    process skips it), the rows equal the single-process step's; the ranks' state adds up
    to the single process's."""
    from symoc.distributed import DistributedSymocOptimizer
    from symoc.torch import load_library
    local = 0
    for (model, policy), path in sorted(libs.items()):
        tag = "sharded %s/%s at world size %d, rank %d" % (model, policy, world, rank)
        full = make_params(load_library(path))
        ref = clone(full)
        given, rows = shard(full, rank, world)
        opt = DistributedSymocOptimizer(given, library=path, lr=LR)
        local += len(opt._local)
        for s in range(STEPS):
            if s == 2:
                opt.param_groups[0]["lr"] = LR * 0.5
            set_grads(full, s)
            shard_grads(given, full, rows)
            opt.step()
        ropt = ref_steps(path, ref, STEPS)
        assert_rows_equal(tag, given, ref, rows)
        total = torch.tensor([opt.state_bytes], dtype=torch.int64)
        dist.all_reduce(total)
        if total.item() != ropt.state_bytes:
            raise AssertionError("%s: state bytes of the ranks add up to %d, single process %d"
                                 % (tag, total.item(), ropt.state_bytes))
        if opt._local:
            i = max(opt._local, key=lambda i: full[i][1].shape[0])     # rows on every rank
            for named in (full, ref):
                set_grads(named, 3)
                named[i][1].grad.view(-1)[0] = float("nan")
            shard_grads(given, full, rows)
            opt.step()
            ropt.step()
            assert_rows_equal(tag + ", NaN in rank 0's rows", given, ref, rows)
    return local


def to_channels_last(named):
    """As model.to(memory_format=torch.channels_last): 4-D weights (and their gradients)
    in NHWC order."""
    for _, p in named:
        if p.dim() == 4:
            p.data = p.data.contiguous(memory_format=torch.channels_last)
            if p.grad is not None:
                p.grad = p.grad.contiguous(memory_format=torch.channels_last)


def check_channels_last(libs, rank, world):
    """The CNN's conv weights in channels_last, replicated (DDP) layout: whole blocks, row
    pieces of split blocks (adamw: split always) and both schedules give bit for bit the
    single-process step of contiguous weights, and the weights keep channels_last; the sharded
    layout refuses channels_last shards at construction, naming them. Returns the number of
    channels_last parameters stepped."""
    from symoc.distributed import DistributedSymocOptimizer, RowShard
    from symoc.torch import load_library
    stepped = 0
    for k, policy in enumerate(("muon", "adamw", "symo", "shampoo", "lau-su", "adam-mini")):
        path = libs[("resnet_cnn", policy)]
        tag = "channels_last resnet_cnn/%s at world size %d, rank %d" % (policy, world, rank)
        named = make_params(load_library(path))
        ref = clone(named)
        to_channels_last(named)
        last = [n for n, p in named if p.dim() == 4]
        if not last:
            raise AssertionError("%s: the fixture has no 4-D weights" % tag)
        opt = DistributedSymocOptimizer(named, library=path, lr=LR, bucket_bytes=4096,
                                        split="always" if policy in ("adamw", "adam-mini") else
                                        k % 2 == 0,
                                        schedule="one_call" if k % 2 else "buckets")
        for s in range(STEPS):
            if s == 2:
                opt.param_groups[0]["lr"] = LR * 0.5
            set_grads(named, s)
            to_channels_last(named)
            opt.step()
        ref_steps(path, ref, STEPS)
        assert_equal(tag, named, ref)
        if policy == "adamw":  # row pieces of channels_last weights were stepped somewhere
            cut = torch.tensor([sum(1 for n in opt.row_ranges if n in last)])
            dist.all_reduce(cut)
            if world > 1 and cut.item() == 0:
                raise AssertionError("%s: no channels_last weight was split into rows" % tag)
        for n, p in named:
            if p.dim() == 4 and not p.is_contiguous(memory_format=torch.channels_last):
                raise AssertionError("%s: %r lost its channels_last order" % (tag, n))
        stepped += len(last)
    # Sharded: a channels_last local shard is refused at construction, naming the parameter.
    path = libs[("resnet_cnn", "adamw")]
    full = make_params(load_library(path))
    given, rows = shard(full, rank, world)
    i = next(j for j, (_, p) in enumerate(full) if p.dim() == 4 and rows[j][1] > rows[j][0])
    loc = given[i][1].local
    loc.data = loc.data.contiguous(memory_format=torch.channels_last)
    if loc.is_contiguous():
        raise AssertionError("the fixture's shard of %r is contiguous in both orders" % full[i][0])
    expect_error(lambda: DistributedSymocOptimizer(given, library=path, lr=LR), full[i][0],
                 "not contiguous")
    return stepped


def check_sharded_fault(libs, rank, world):
    """A wrong gradient on one rank's shard of a parameter stepped on the shards: every rank
    raises naming it, nothing moves, and the next step is exact. Then step_rows failing in
    the library on one rank: every rank raises naming it (no hang)."""
    from symoc.distributed import DistributedSymocOptimizer
    from symoc.torch import load_library
    path = libs[("llama", "adamw")]
    full = make_params(load_library(path))
    ref = clone(full)
    given, rows = shard(full, rank, world)
    opt = DistributedSymocOptimizer(given, library=path, lr=LR)
    bad = world - 1
    i = max(opt._local, key=lambda i: full[i][1].shape[0])     # rows on every rank
    set_grads(full, 0)
    shard_grads(given, full, rows)
    before = [(p if r is None else p.local).detach().clone() for (_, p), r in zip(given, rows)]
    if rank == bad:
        given[i][1].local.grad = torch.randn(*given[i][1].local.shape, 2)[..., 0]
    expect_error(opt.step, "rank(s) %d of %d" % (bad, world), "contiguous", "no rank stepped")
    for ((n, p), r), b in zip(zip(given, rows), before):
        if not same_bits(p if r is None else p.local, b):
            raise AssertionError("sharded fault: %r changed although the step failed" % n)
    for s in range(STEPS):
        if s == 2:
            opt.param_groups[0]["lr"] = LR * 0.5
        set_grads(full, s)
        shard_grads(given, full, rows)
        opt.step()
    ref_steps(path, ref, STEPS)
    assert_rows_equal("sharded, after a fault (rank %d)" % rank, given, ref, rows)

    # The library's step_rows failing on one rank (SYMOC_ERR_INTERNAL): every rank raises
    # after the collectives, naming it.
    class FailingRows:
        def __init__(self, lib):
            self._inner = lib

        def __getattr__(self, k):
            return getattr(self._inner, k)

        def step_rows(self, *args):
            return 5

    lib = opt._lib
    if rank == bad:
        opt._lib = FailingRows(lib)
    set_grads(full, 0)
    shard_grads(given, full, rows)
    expect_error(opt.step, "library step failed on rank(s) %d of %d" % (bad, world))
    opt._lib = lib


def check_checkpoint_save(libs, rank, world, work):
    from symoc.distributed import DistributedSymocOptimizer
    from symoc.torch import load_library
    for model, policy in CKPT:
        path = libs[(model, policy)]
        named = make_params(load_library(path))
        # Split pieces (row-range state) in the DDP checkpoint; resumed with the default.
        opt = DistributedSymocOptimizer(named, library=path, lr=LR, split="always")
        for s in range(2):
            set_grads(named, s)
            opt.step()
        d = os.path.join(work, "ckpt_%s_%s" % (model, policy))
        opt.save_checkpoint(d)
        torch.save(opt.state_dict(), os.path.join(d, "sd-%d.pt" % rank))
        dist.barrier()
    for model, policy in CKPT_SHARDED:
        path = libs[(model, policy)]
        full = make_params(load_library(path))
        given, rows = shard(full, rank, world)
        opt = DistributedSymocOptimizer(given, library=path, lr=LR)
        for s in range(2):
            set_grads(full, s)
            shard_grads(given, full, rows)
            opt.step()
        d = os.path.join(work, "ckpt_sharded_%s_%s" % (model, policy))
        opt.save_checkpoint(d)
        torch.save(opt.state_dict(), os.path.join(d, "sd-%d.pt" % rank))
        dist.barrier()


def resume_and_check(tag, path, start, want, rank, world, load, sharded):
    """Loads a checkpoint (load(opt)) into a fresh optimizer over a copy of `start` in the
    DDP or the sharded layout, steps 2 and 3, and compares with `want` (4 steps)."""
    from symoc.distributed import DistributedSymocOptimizer
    full = clone(start)
    given, rows = shard(full, rank, world) if sharded else (full, [None] * len(full))
    opt = DistributedSymocOptimizer(given, library=path, lr=LR * 7)
    load(opt)
    for s in range(2, 4):
        if s == 2:
            opt.param_groups[0]["lr"] = LR * 0.5
        set_grads(full, s)
        if sharded:
            shard_grads(given, full, rows)
        opt.step()
    assert_rows_equal(tag, given, want, rows)
    if opt.steps_taken != 4:
        raise AssertionError("%s: resumed optimizer counts %d steps, not 4"
                             % (tag, opt.steps_taken))


def check_checkpoint_resume_sharded(libs, rank, world, work, saved_world):
    """Sharded-layout checkpoints (row-range state of the elementwise parameters) saved at
    world size 2 resume at `world` in the sharded and in the DDP layout, and merge for a
    single-process SymocOptimizer, bit-exactly against 4 uninterrupted steps."""
    from symoc.distributed import single_process_state_dict
    from symoc.torch import SymocOptimizer, load_library
    for model, policy in CKPT_SHARDED:
        path = libs[(model, policy)]
        start = make_params(load_library(path))
        want = clone(start)
        ref_steps(path, start, 2)
        ref_steps(path, want, 4)
        d = os.path.join(work, "ckpt_sharded_%s_%s" % (model, policy))
        shards = [torch.load(os.path.join(d, "sd-%d.pt" % r)) for r in range(saved_world)]
        for sharded in (True, False):
            for how, load in (("load_checkpoint", lambda o: o.load_checkpoint(d)),
                              ("state_dicts", lambda o: o.load_state_dict(shards))):
                resume_and_check("%s/%s sharded at world size %d, resumed at %d %s by %s "
                                 "(rank %d)" % (model, policy, saved_world, world,
                                                "sharded" if sharded else "replicated", how,
                                                rank), path, start, want, rank, world, load,
                                 sharded)
        named = clone(start)
        sopt = SymocOptimizer(named, library=path, lr=LR)
        sopt.load_state_dict(single_process_state_dict(shards))
        for s in range(2, 4):
            if s == 2:
                sopt.param_groups[0]["lr"] = LR * 0.5
            set_grads(named, s)
            sopt.step()
        assert_equal("%s/%s sharded shards merged for SymocOptimizer (rank %d)"
                     % (model, policy, rank), named, want)


def check_checkpoint_resume(libs, rank, world, work, saved_world):
    from symoc.distributed import DistributedSymocOptimizer
    from symoc.torch import load_library
    for model, policy in CKPT:
        path = libs[(model, policy)]
        lib = load_library(path)
        start = make_params(lib)
        want = clone(start)
        ref_steps(path, start, 2)                    # the weights the saving run reached
        ref_steps(path, want, 4)                     # uninterrupted: 4 single-process steps
        d = os.path.join(work, "ckpt_%s_%s" % (model, policy))
        shards = [torch.load(os.path.join(d, "sd-%d.pt" % r)) for r in range(saved_world)]
        single = ref_steps(path, clone(make_params(lib)), 2).state_dict()
        for how in ("load_checkpoint", "state_dicts", "single-process state_dict"):
            named = clone(start)
            opt = DistributedSymocOptimizer(named, library=path, lr=LR * 7)
            if how == "load_checkpoint":
                opt.load_checkpoint(d)
            elif how == "state_dicts":
                opt.load_state_dict(shards)
            else:
                opt.load_state_dict(single)
            for s in range(2, 4):
                if s == 2:
                    opt.param_groups[0]["lr"] = LR * 0.5
                set_grads(named, s)
                opt.step()
            assert_equal("%s/%s saved at world size %d, resumed at %d by %s (rank %d)"
                         % (model, policy, saved_world, world, how, rank), named, want)
            if opt.steps_taken != 4:
                raise AssertionError("resumed optimizer counts %d steps, not 4" % opt.steps_taken)
        # The DDP checkpoint (split blocks' row state included) into the sharded layout.
        resume_and_check("%s/%s saved at world size %d, resumed sharded at %d (rank %d)"
                         % (model, policy, saved_world, world, rank), path, start, want, rank,
                         world, lambda o: o.load_checkpoint(d), True)
        # The shards merged for a single-process SymocOptimizer.
        from symoc.distributed import single_process_state_dict
        from symoc.torch import SymocOptimizer
        named = clone(start)
        sopt = SymocOptimizer(named, library=path, lr=LR)
        sopt.load_state_dict(single_process_state_dict(shards))
        for s in range(2, 4):
            if s == 2:
                sopt.param_groups[0]["lr"] = LR * 0.5
            set_grads(named, s)
            sopt.step()
        assert_equal("%s/%s shards of world size %d merged for SymocOptimizer (rank %d)"
                     % (model, policy, saved_world, rank), named, want)
        if saved_world > 1:
            # One rank's shard alone cannot give this rank's blocks.
            opt = DistributedSymocOptimizer(clone(start), library=path, lr=LR)
            if world != saved_world:
                expect_error(lambda: opt.load_state_dict(
                    torch.load(os.path.join(d, "sd-%d.pt" % 0))), "re-shard")


def check_faults(libs, rank, world):
    from symoc.distributed import DistributedSymocOptimizer
    from symoc.torch import load_library
    path = libs[("llama", "symo")]
    lib = load_library(path)
    named = make_params(lib)
    ref = clone(named)
    opt = DistributedSymocOptimizer(named, library=path, lr=LR)
    before = [p.detach().clone() for _, p in named]
    bad = world - 1
    set_grads(named, 0)
    # A non-contiguous gradient, on one rank only, for a parameter that rank steps.
    k = next(i for i in range(len(named)) if opt._home[i] == bad)
    if rank == bad:
        named[k][1].grad = torch.randn(*named[k][1].shape, 2)[..., 0]
    expect_error(opt.step, "rank(s) %d of %d" % (bad, world), "gradient", "no rank stepped")
    for (n, p), b in zip(named, before):
        if not same_bits(p, b):
            raise AssertionError("fault: parameter %r changed although the step failed" % n)
    if opt.steps_taken != 0:
        raise AssertionError("fault: the library stepped (%d) although the step failed"
                             % opt.steps_taken)

    def closure():
        if rank == 0:
            raise ValueError("loss is not finite (test)")
        return torch.tensor(1.0)

    set_grads(named, 0)
    expect_error(lambda: opt.step(closure), "rank(s) 0 of", "ValueError", "loss is not finite")
    # Afterwards the optimizer still works, exactly.
    for s in range(STEPS):
        if s == 2:
            opt.param_groups[0]["lr"] = LR * 0.5
        set_grads(named, s)
        opt.step()
    ropt = ref_steps(path, ref, STEPS)
    assert_equal("after faults (rank %d)" % rank, named, ref)
    # A non-finite gradient (the same on every rank, as DDP averages): its block is skipped
    # at its home, as in the single process.
    for opt_, params_ in ((opt, named), (ropt, ref)):
        set_grads(params_, 7)
        params_[k][1].grad[0] = float("nan")
        opt_.step()
    assert_equal("NaN gradient (rank %d)" % rank, named, ref)
    skipped = torch.tensor([opt.steps_skipped])
    dist.all_reduce(skipped)
    if skipped.item() != ropt.steps_skipped or skipped.item() == 0:
        raise AssertionError("skipped blocks: %d over the ranks, %d in the single process"
                             % (skipped.item(), ropt.steps_skipped))

    # Different plans on different ranks: refused at construction on every rank.
    other = libs[("llama", "muon")]
    expect_error(lambda: DistributedSymocOptimizer(make_params(lib), library=path if rank == 0
                                                   else other, lr=LR),
                 "fingerprints differ", "rank 0", "rank 1")
    # A parameter missing on one rank: refused on every rank, naming it.
    ps = make_params(lib)
    if rank == bad:
        ps = ps[1:]
    expect_error(lambda: DistributedSymocOptimizer(ps, library=path, lr=LR),
                 "rank(s) %d" % bad, "missing")
    # bfloat16 CPU parameters (the CPU runtime steps float32; bfloat16 needs CUDA): refused,
    # naming the parameter.
    ps = [(n, torch.nn.Parameter(p.detach().to(torch.bfloat16))) for n, p in make_params(lib)]
    expect_error(lambda: DistributedSymocOptimizer(ps, library=path, lr=LR),
                 "dtype torch.bfloat16, must be torch.float32", ps[0][0])
    # A parameter whose dtype changed after construction (the broadcast buckets were cut for
    # the old one): refused on every rank, naming it.
    ps = make_params(lib)
    opt3 = DistributedSymocOptimizer(ps, library=path, lr=LR)
    set_grads(ps, 0)
    ps[0][1].data = ps[0][1].data.double()
    ps[0][1].grad = None
    expect_error(opt3.step, "rank(s) 0", "%r: dtype torch.float32 since construction, now "
                 "torch.float64" % ps[0][0])
    # An unknown DDP schedule: refused before any collective (the same on every rank).
    expect_error(lambda: DistributedSymocOptimizer(make_params(lib), library=path, lr=LR,
                                                   schedule="eager"),
                 "schedule", "'eager'")


def check_abi(libs):
    """The ABI v2 block entries of every library: blocks partition the parameters, costs are
    positive, bad block lists are refused untouched, stepping all blocks equals step() and
    stepping a subset moves (and creates state for) exactly those blocks."""
    import ctypes
    from symoc.distributed import library_blocks, read_state
    from symoc.torch import load_library
    for (model, policy), path in sorted(libs.items()):
        tag = "%s/%s" % (model, policy)
        lib = load_library(path)
        api, n = lib.api, len(lib.params)
        blocks = library_blocks(lib)
        seen = sorted(i for ps, _ in blocks for i in ps)
        if seen != list(range(n)):
            raise AssertionError("%s: blocks do not partition the parameters: %s" % (tag, seen))
        if any(not c > 0 for _, c in blocks):
            raise AssertionError("%s: a block cost is not positive: %s" % (tag, blocks))
        nb = len(blocks)
        # The blocks are plan.json's, in order; cost = FLOPs + bytes moved (docs/distributed.md).
        import json
        with open(os.path.join(os.path.dirname(path), "plan.json")) as f:
            plan = json.load(f)
        numel = {q["name"]: int(torch.tensor(q["shape"]).prod().item()) if q["shape"] else 1
                 for q in plan["params"]}
        if [[lib.params[i][0] for i in ps] for ps, _ in blocks] != \
                [b["params"] for b in plan["blocks"]]:
            raise AssertionError("%s: ABI blocks are not plan.json's blocks" % tag)
        for (ps, cost), b in zip(blocks, plan["blocks"]):
            want = b["flops_per_step"] + 12.0 * sum(numel[q] for q in b["params"]) + \
                2.0 * b["state_bytes"]
            if abs(cost - want) > 1e-9 * want:
                raise AssertionError("%s: block_cost %r, plan.json gives %r" % (tag, cost, want))
        if api.block_params(nb, None, 0) != -1 or api.block_cost(-1) != -1.0:
            raise AssertionError("%s: out-of-range block not refused" % tag)

        def arrays(ts):
            return (ctypes.c_void_p * n)(*[t.data_ptr() for t in ts])

        def blist(bs):
            return (ctypes.c_int32 * max(1, len(bs)))(*bs), len(bs)

        gen = torch.Generator().manual_seed(3)
        W0 = [torch.randn(s, generator=gen) for _, s, _ in lib.params]
        G = [torch.randn(s, generator=gen) for _, s, _ in lib.params]
        full = [w.clone() for w in W0]
        o1 = api.create(ctypes.c_float(LR))
        assert api.step(o1, arrays(full), arrays(G), n) == 0
        part = [w.clone() for w in W0]
        o2 = api.create(ctypes.c_float(LR))
        for bad in ([0, 0], [nb], [-1]):
            arr, k = blist(bad)
            if api.step_blocks(o2, arrays(part), arrays(G), n, arr, k) == 0:
                raise AssertionError("%s: step_blocks(%s) accepted" % (tag, bad))
        if any(not torch.equal(a, b) for a, b in zip(part, W0)) or api.steps_taken(o2) != 0:
            raise AssertionError("%s: a refused step_blocks changed something" % tag)
        odd = [b for b in range(nb) if b % 2]
        arr, k = blist(list(reversed(odd)))
        assert api.step_blocks(o2, arrays(part), arrays(G), n, arr, k) == 0, \
            lib.api.last_error(o2)
        stepped = {i for b in odd for i in blocks[b][0]}
        for i in range(n):
            want = full[i] if i in stepped else W0[i]
            if not same_bits(part[i], want):
                raise AssertionError("%s: step_blocks(odd blocks) gave the wrong %s for %r"
                                     % (tag, "update" if i in stepped else "untouched value",
                                        lib.params[i][0]))
        with tempfile.TemporaryDirectory() as d:
            assert api.save(o2, os.path.join(d, "s").encode()) == 0
            _, bufs, _ = read_state(open(os.path.join(d, "s"), "rb").read())
        names = {lib.params[i][0] for i in stepped}
        for key in bufs:
            if not key.startswith("__optimizer/") and not any(key.startswith(m + "/")
                                                              for m in names):
                raise AssertionError("%s: state %r for a block that was not stepped" % (tag, key))
        arr, k = blist([b for b in range(nb) if not b % 2])
        assert api.step_blocks(o2, arrays(part), arrays(G), n, arr, k) == 0
        for i in range(n):
            if not same_bits(part[i], full[i]):
                raise AssertionError("%s: odd then even blocks differ from step() for %r"
                                     % (tag, lib.params[i][0]))
        api.destroy(o1)
        api.destroy(o2)


def check_rows_abi(libs):
    """ABI v3 step_rows of every library: param_row_granule matches plan_row_granules (the
    plan.json mirror the benchmark uses) and is > 0 only for lone elementwise parameters;
    stepping every elementwise parameter as two or three row ranges, each range with its own
    optimizer object, for 3 steps (lr changed before the third) equals step() bit for bit,
    and the ranges' state merged by merge_states is the single-process state byte for byte;
    bad calls are refused without effect (a matrix rule's parameter, a range off the
    granule, another row count than the state's, unknown flags); SYMOC_STEP_ROWS_SKIP
    leaves the rows untouched and counts the skip as step() does."""
    import ctypes
    import json
    from symoc.distributed import merge_states, plan_row_granules, read_state
    from symoc.torch import load_library
    elementwise = {"adamw", "adam", "sgd", "adam_mini"}
    tested, largest = 0, 0
    for (model, policy), path in sorted(libs.items()):
        tag = "%s/%s" % (model, policy)
        lib = load_library(path)
        api, n = lib.api, len(lib.params)
        if lib.abi_version != 3 or lib.step_rows is None:
            raise AssertionError("%s: ABI version %d without step_rows" % (tag, lib.abi_version))
        with open(os.path.join(os.path.dirname(path), "plan.json")) as f:
            plan = json.load(f)
        gran = [int(lib.param_row_granule(i)) for i in range(n)]
        index = {nm: i for i, (nm, _, _) in enumerate(lib.params)}
        want = [0] * n
        for b, g in zip(plan["blocks"], plan_row_granules(plan)):
            for q in b["params"]:
                want[index[q]] = g
            if g and (len(b["params"]) != 1 or b["step"]["kind"] not in elementwise):
                raise AssertionError("%s: granule %d for block %s (%s)" % (tag, g, b["params"],
                                                                          b["step"]["kind"]))
        if gran != want or lib.param_row_granule(n) != -1:
            raise AssertionError("%s: param_row_granule %s, plan.json gives %s" % (tag, gran, want))

        def arrays(ts):
            return (ctypes.c_void_p * n)(*[t.data_ptr() for t in ts])

        gen = torch.Generator().manual_seed(5)
        W0 = [torch.randn(s, generator=gen) for _, s, _ in lib.params]
        Gs = [[torch.randn(s, generator=gen) for _, s, _ in lib.params] for _ in range(STEPS)]
        full = [w.clone() for w in W0]
        o1 = api.create(ctypes.c_float(LR))
        for s_, G in enumerate(Gs):
            if s_ == 2:
                api.set_lr(o1, ctypes.c_float(LR * 0.5))
            assert api.step(o1, arrays(full), arrays(G), n) == 0
        with tempfile.TemporaryDirectory() as d:
            assert api.save(o1, os.path.join(d, "s").encode()) == 0
            ref_state = read_state(open(os.path.join(d, "s"), "rb").read())
        for i in range(n):
            name, shape, rule = lib.params[i]
            rows = shape[0] if shape else 1
            rn = W0[i].numel() // rows
            w = W0[i].clone()
            if gran[i] <= 0:
                o = api.create(ctypes.c_float(LR))
                if lib.step_rows(o, i, 0, rows, w.data_ptr(), Gs[0][i].data_ptr(), 0) != 1 or \
                        not torch.equal(w, W0[i]) or api.state_bytes(o) != 0:
                    raise AssertionError("%s: step_rows of %r (%s) not refused untouched"
                                         % (tag, name, rule))
                api.destroy(o)
                continue
            g = gran[i]
            largest = max(largest, g)
            units = rows // g
            cuts = sorted({0, (units // 3) * g, (2 * units // 3) * g, rows})
            opts = [api.create(ctypes.c_float(LR)) for _ in cuts[:-1]]
            for s_, G in enumerate(Gs):
                for o, a, b in zip(opts, cuts, cuts[1:]):
                    if s_ == 2:
                        api.set_lr(o, ctypes.c_float(LR * 0.5))
                    rc = lib.step_rows(o, i, a, b, w.data_ptr() + 4 * a * rn,
                                       G[i].data_ptr() + 4 * a * rn, 0)
                    if rc != 0:
                        raise AssertionError("%s: step_rows(%r, %d, %d): %s"
                                             % (tag, name, a, b, api.last_error(o)))
            if not same_bits(w, full[i]):
                raise AssertionError("%s: %r stepped as rows %s differs from step()"
                                     % (tag, name, cuts))
            states, ranges = [], []
            with tempfile.TemporaryDirectory() as d:
                for k, (o, a, b) in enumerate(zip(opts, cuts, cuts[1:])):
                    assert api.save(o, os.path.join(d, str(k)).encode()) == 0
                    states.append(read_state(open(os.path.join(d, str(k)), "rb").read()))
                    ranges.append({name: (a, b, rows)})
            _, bufs, cnts = merge_states(states, [q for q, _, _ in lib.params], ranges)
            mine = lambda t: {k: v for k, v in t.items() if k.startswith(name + "/")}
            if mine(bufs) != mine(ref_state[1]) or mine(cnts) != mine(ref_state[2]):
                raise AssertionError("%s: merged row-range state of %r is not step()'s: %s vs %s"
                                     % (tag, name, sorted(mine(bufs)), sorted(mine(ref_state[1]))))
            # Refusals, each without effect.
            o, a, b = opts[-1], cuts[-2], cuts[-1]
            before, sb = w.clone(), api.state_bytes(o)
            bad = [(0, rows, 0, 4)] if b - a != rows else []     # another row count
            bad += [(a, b, 2, 1), (-g, b, 0, 1), (a, rows + g, 0, 1)]
            if g > 1:
                bad.append((a + 1, b, 0, 1))
            for r0, r1, fl, code in bad:
                rc = lib.step_rows(o, i, r0, r1, w.data_ptr(), Gs[0][i].data_ptr(), fl)
                if rc != code or not same_bits(w, before) or api.state_bytes(o) != sb:
                    raise AssertionError("%s: step_rows(%r, %d, %d, flags %d) gave %d (want %d) "
                                         "or changed something" % (tag, name, r0, r1, fl, rc,
                                                                   code))
            skipped = api.steps_skipped(o)
            assert lib.step_rows(o, i, a, b, w.data_ptr() + 4 * a * rn,
                                 Gs[0][i].data_ptr() + 4 * a * rn, 1) == 0
            if not same_bits(w, before) or api.steps_skipped(o) != skipped + 1:
                raise AssertionError("%s: SYMOC_STEP_ROWS_SKIP stepped %r or did not count it"
                                     % (tag, name))
            for o in opts:
                api.destroy(o)
            tested += 1
        api.destroy(o1)
    if tested == 0 or largest < 2:
        raise AssertionError("step_rows untested on %s (largest granule %d)"
                             % ("any parameter" if not tested else "row groups", largest))
    return tested


V2_SHIM = r"""
#include <dlfcn.h>
#include <stddef.h>
#include <stdlib.h>
#include "symoc/runtime/optimizer_api.h"
/* A library of ABI version 2: the table of the library named by $SYMOC_V2_INNER, cut
 * before the version 3 fields. */
const SymocOptimizerApi *symoc_optimizer_api(void) {
  static SymocOptimizerApi t;
  void *h = dlopen(getenv("SYMOC_V2_INNER"), RTLD_NOW | RTLD_LOCAL);
  if (!h) return NULL;
  const SymocOptimizerApi *(*f)(void) =
      (const SymocOptimizerApi *(*)(void))dlsym(h, "symoc_optimizer_api");
  t = *f();
  t.abi_version = 2;
  t.struct_size = (unsigned)offsetof(SymocOptimizerApi, param_row_granule);
  t.param_row_granule = NULL;
  t.step_rows = NULL;
  return &t;
}
"""


def check_v2_library(args, libs):
    """A library of ABI version 2 (a shim presenting a real table cut before the v3 fields)
    still loads: symoc.torch reports version 2 and no step_rows, SymocOptimizer steps it
    like the v3 library, and DistributedSymocOptimizer (world size 1) steps every block whole."""
    from symoc.torch import SymocOptimizer, load_library
    inner = libs[("llama", "adamw")]
    d = os.path.join(args.work, "v2shim")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "shim.c"), "w") as f:
        f.write(V2_SHIM)
    shim = os.path.join(d, "libv2shim.so")
    r = subprocess.run(["cc", "-shared", "-fPIC", "-I", os.path.join(ROOT, "runtime", "include"),
                        os.path.join(d, "shim.c"), "-o", shim, "-ldl"], capture_output=True,
                       text=True)
    if r.returncode != 0:
        raise AssertionError("v2 shim does not compile: %s" % r.stderr)
    os.environ["SYMOC_V2_INNER"] = inner
    old = load_library(shim)
    if old.abi_version != 2 or old.step_rows is not None or old.param_row_granule is not None:
        raise AssertionError("v2 library: version %d, step_rows %r" % (old.abi_version,
                                                                     old.step_rows))
    a = make_params(old)
    b = clone(a)
    ref_steps(shim, a, STEPS)
    ref_steps(inner, b, STEPS)
    assert_equal("ABI v2 library through symoc.torch", a, b)
    return shim


def worker(rank, world, init_file, libs, work, phase, saved_world, result_dir):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method="file://" + init_file, rank=rank,
                            world_size=world, timeout=__import__("datetime").timedelta(seconds=60))
    try:
        t0 = time.time()
        pieces = check_equality(libs, rank, world)
        local = check_sharded(libs, rank, world)
        last = check_channels_last(libs, rank, world)
        t1 = time.time()
        if phase == "save":
            check_checkpoint_save(libs, rank, world, work)
        elif phase == "resume":
            check_checkpoint_resume(libs, rank, world, work, saved_world)
            check_checkpoint_resume_sharded(libs, rank, world, work, saved_world)
        t2 = time.time()
        if world > 1:
            check_faults(libs, rank, world)
            check_sharded_fault(libs, rank, world)
        t3 = time.time()
        with open(os.path.join(result_dir, "rank%d" % rank), "w") as f:
            f.write("ok equality %.1fs (%d split pieces over the ranks, %d parameters stepped on "
                    "their shards, %d channels_last) checkpoint %.1fs faults %.1fs\n"
                    % (t1 - t0, pieces, local, last, t2 - t1, t3 - t2))
    except Exception:
        with open(os.path.join(result_dir, "rank%d" % rank), "w") as f:
            f.write("FAIL\n" + traceback.format_exc())
        raise
    finally:
        dist.destroy_process_group()


def run_world(world, libs, work, phase, saved_world=0):
    result_dir = tempfile.mkdtemp(prefix="w%d-" % world, dir=work)
    init_file = os.path.join(result_dir, "init")
    t = time.time()
    try:
        mp.spawn(worker, args=(world, init_file, libs, work, phase, saved_world, result_dir),
                 nprocs=world, join=True)
        ok = True
    except Exception:  # noqa: BLE001 - the ranks' own reports follow
        ok = False
    for r in range(world):
        p = os.path.join(result_dir, "rank%d" % r)
        text = open(p).read() if os.path.exists(p) else "FAIL (no report)\n"
        print("world %d rank %d: %s" % (world, r, text.rstrip()))
        ok = ok and text.startswith("ok")
    print("world size %d (%s): %s in %.1fs" % (world, phase, "PASS" if ok else "FAIL",
                                                time.time() - t))
    return ok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--symoc", required=True)
    ap.add_argument("--runtime-lib", required=True)
    ap.add_argument("--link", default="")
    ap.add_argument("--cxx", default="g++")
    ap.add_argument("--work", required=True)
    args = ap.parse_args()
    if not dist.is_available() or not dist.is_gloo_available():
        print("SKIP: torch.distributed with gloo is not available")
        return 77
    os.makedirs(args.work, exist_ok=True)
    # One thread per process (set before any library loads OpenMP/OpenBLAS): ranks share 2 cores.
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    t = time.time()
    libs = build_all(args)
    print("built %d libraries in %.1fs" % (len(libs), time.time() - t))
    try:
        check_abi(libs)
        print("ABI block entries of %d libraries: PASS" % len(libs))
        print("ABI step_rows: %d elementwise parameters: PASS" % check_rows_abi(libs))
        libs[("llama", "abi-v2")] = check_v2_library(args, libs)
        print("ABI version 2 library (no step_rows) loads and steps: PASS")
        abi_ok = True
    except Exception:  # noqa: BLE001
        traceback.print_exc()
        print("ABI block entries: FAIL")
        abi_ok = False
    # World size 1 resumes the world-size-2 checkpoint too (merging every shard).
    results = [run_world(2, libs, args.work, "save"),
               run_world(3, libs, args.work, "resume", saved_world=2),
               run_world(1, libs, args.work, "resume", saved_world=2)]
    results.append(abi_ok)
    passed = sum(results)
    print("%d passed, %d failed" % (passed, len(results) - passed))
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
