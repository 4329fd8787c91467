"""Distributed stepping of a symoc-generated optimizer through torch.distributed.

    import torch.distributed as dist
    from symoc.distributed import DistributedSymocOptimizer
    dist.init_process_group("nccl")            # or "gloo" for CPU parameters
    model = DDP(model)                         # or fully_shard(model) (torch >= 2.4)
    opt = DistributedSymocOptimizer(model.module.named_parameters(), library=LIB, lr=1e-3)
    loss.backward(); opt.step()

Every rank loads the same generated library (the plan's fingerprint is checked across ranks at
construction). The plan's blocks (ABI v2: num_blocks/block_params/block_cost, one block = one
plan unit: a parameter or parameters stepped jointly) are assigned to ranks by LPT on
block_cost; a rank keeps optimizer state only for its blocks and steps only them
(step_blocks, or step_cuda with the blocks subset for CUDA parameters), so the optimizer
memory is divided by the world size. The math is the single-process step's: every block is
stepped by the same generated code on the same full gradient, so the updates are
bit-identical at every world size.

Two layouts, chosen from the parameters:
  * replicated (DDP): gradients arrive averaged; after the step each rank broadcasts the
    updated parameters of its blocks in flat buckets (async, all posted at once, unpacked as
    they complete).
  * sharded (FSDP2 `fully_shard`, DTensor parameters Shard(0) on a 1-D mesh): one
    all_to_all_single brings each block's weight and gradient rows to its home rank, the home
    steps the full block, a second all_to_all_single returns the updated rows to the shards.

Faults: a rank whose step() raises (bad gradient, a closure that throws, a library error)
makes every rank raise SymocError naming it: an all_reduce of per-rank failure flags runs
before any weight is touched (and again after the library step), so no rank waits forever in
a collective that another rank skipped.

Checkpoints: state_dict() is this rank's shard: the runtime's state file (runtime/README.md,
"State file format") holding only this rank's blocks. Shards of any world size merge into
the single-process state and re-split by block (state keys start with the parameter name),
so load_state_dict() / load_checkpoint() accept checkpoints written at another world size,
and a single-process SymocOptimizer state_dict. docs/distributed.md has the details.
"""
import ctypes
import heapq
import json
import math
import os
import struct
import tempfile
import time
import zlib

import torch
import torch.distributed as dist

from symoc.build import SymocError, build_library
from symoc.torch import _dec, _tensor_problems, load_library

__all__ = ["DistributedSymocOptimizer", "RowShard", "lpt_assign", "balance", "library_blocks",
           "read_state", "write_state", "merge_states", "select_state",
           "single_process_state_dict"]


# --------------------------------------------------------------------------- load balance
def lpt_assign(costs, world_size):
    """Longest-processing-time-first: blocks by decreasing cost (ties: lower index first),
    each to the rank with the least load so far (ties: lower rank). Deterministic, so every
    rank computes the same assignment. Returns the rank of each block."""
    if world_size < 1:
        raise SymocError("lpt_assign: world_size must be >= 1, got %r" % (world_size,))
    order = sorted(range(len(costs)), key=lambda b: (-float(costs[b]), b))
    heap = [(0.0, r) for r in range(world_size)]
    owner = [0] * len(costs)
    for b in order:
        load, r = heapq.heappop(heap)
        owner[b] = r
        heapq.heappush(heap, (load + float(costs[b]), r))
    return owner


def balance(costs, owner, world_size):
    """max/mean of the per-rank cost sums (1.0 = perfect)."""
    load = [0.0] * world_size
    for c, r in zip(costs, owner):
        load[r] += float(c)
    mean = sum(load) / world_size
    return (max(load) / mean if mean > 0 else 1.0), load


def library_blocks(lib):
    """[(parameter indices, cost)] of a loaded Library, from the ABI v2 block entries."""
    api = lib.api
    if not api.num_blocks or not api.block_params or not api.block_cost or not api.step_blocks:
        raise SymocError("%s: the library has no block entry points (ABI v2 num_blocks/"
                         "block_params/block_cost/step_blocks are NULL): regenerate it with "
                         "this symoc" % lib.path)
    out = []
    cap = max(1, len(lib.params))
    buf = (ctypes.c_int32 * cap)()
    for b in range(api.num_blocks()):
        k = api.block_params(b, buf, cap)
        if k < 0:
            raise SymocError("%s: block_params(%d) failed" % (lib.path, b))
        out.append((tuple(buf[i] for i in range(k)), float(api.block_cost(b))))
    return out


# --------------------------------------------------------------------------- state files
_MAGIC = b"SYMOCST\0"
_VERSION = 1


def read_state(blob, what="state"):
    """Parses the runtime's state file (bytes) -> (fingerprint, buffers, counters):
    buffers {name: (dims tuple, raw float32 bytes)}, counters {name: int}."""
    blob = bytes(blob)
    if len(blob) < 8 + 4 + 4 + 4 + 8 + 8 + 4 or blob[:8] != _MAGIC:
        raise SymocError("%s: not a symoc state file" % what)
    if struct.unpack_from("<I", blob, len(blob) - 4)[0] != zlib.crc32(blob[:-4]) & 0xFFFFFFFF:
        raise SymocError("%s: checksum mismatch (corrupt state file)" % what)
    pos = 8
    version, _flags = struct.unpack_from("<II", blob, pos)
    pos += 8
    if version != _VERSION:
        raise SymocError("%s: state file version %d, this reader knows %d" % (what, version, _VERSION))

    def string():
        nonlocal pos
        (n,) = struct.unpack_from("<I", blob, pos)
        s = blob[pos + 4:pos + 4 + n].decode("utf-8")
        pos += 4 + n
        return s

    fingerprint = string()
    nbuf, ncnt = struct.unpack_from("<QQ", blob, pos)
    pos += 16
    buffers, counters = {}, {}
    try:
        for _ in range(nbuf):
            name = string()
            (ndim,) = struct.unpack_from("<I", blob, pos)
            dims = struct.unpack_from("<%dq" % ndim, blob, pos + 4)
            pos += 4 + 8 * ndim
            (count,) = struct.unpack_from("<Q", blob, pos)
            pos += 8
            buffers[name] = (tuple(dims), blob[pos:pos + 4 * count])
            pos += 4 * count
        for _ in range(ncnt):
            name = string()
            (counters[name],) = struct.unpack_from("<q", blob, pos)
            pos += 8
    except struct.error:
        raise SymocError("%s: truncated state file" % what) from None
    if pos != len(blob) - 4:
        raise SymocError("%s: truncated state file or trailing bytes" % what)
    return fingerprint, buffers, counters


def write_state(fingerprint, buffers, counters):
    """The runtime's state file (bytes) for read_state()'s triple; names in sorted order as
    State::save writes them."""
    def string(s):
        b = s.encode("utf-8")
        return struct.pack("<I", len(b)) + b

    parts = [_MAGIC, struct.pack("<II", _VERSION, 0), string(fingerprint),
             struct.pack("<QQ", len(buffers), len(counters))]
    for name in sorted(buffers):
        dims, data = buffers[name]
        parts += [string(name), struct.pack("<I%dq" % len(dims), len(dims), *dims),
                  struct.pack("<Q", len(data) // 4), bytes(data)]
    for name in sorted(counters):
        parts += [string(name), struct.pack("<q", counters[name])]
    body = b"".join(parts)
    return body + struct.pack("<I", zlib.crc32(body) & 0xFFFFFFFF)


_GLOBAL_PREFIX = "__optimizer/"


def _owner_param(key, names_by_len):
    """The parameter a state key belongs to: keys are '<parameter>/<rest>'."""
    for n in names_by_len:
        if key.startswith(n) and key[len(n):len(n) + 1] == "/":
            return n
    return None


def merge_states(states, param_names):
    """Union of per-rank states (read_state triples of one fingerprint) into the single-process
    state. Per-parameter entries must come from one shard only; the optimizer-wide entries
    (__optimizer/...: lr, multipliers, step count) must agree."""
    if not states:
        raise SymocError("merge_states: no shards")
    fps = {s[0] for s in states}
    if len(fps) != 1:
        raise SymocError("merge_states: shards of different models/plans: %s" % sorted(fps))
    names = sorted(param_names, key=len, reverse=True)
    buffers, counters = {}, {}
    for idx, (_, bufs, cnts) in enumerate(states):
        for table, out in ((bufs, buffers), (cnts, counters)):
            for k, v in table.items():
                if k.startswith(_GLOBAL_PREFIX):
                    if k in out and out[k] != v:
                        raise SymocError("merge_states: shard %d disagrees on %r with an earlier "
                                         "shard (written by different optimizers?)" % (idx, k))
                elif _owner_param(k, names) is None:
                    raise SymocError("merge_states: shard %d has state %r of no parameter of the "
                                     "plan" % (idx, k))
                elif k in out:
                    raise SymocError("merge_states: state %r is in two shards" % k)
                out[k] = v
    return fps.pop(), buffers, counters


def select_state(state, param_names, keep):
    """The part of a state that belongs to the parameters in `keep` (plus the optimizer-wide
    entries)."""
    fp, bufs, cnts = state
    names = sorted(param_names, key=len, reverse=True)
    keep = set(keep)

    def mine(k):
        return k.startswith(_GLOBAL_PREFIX) or _owner_param(k, names) in keep

    return (fp, {k: v for k, v in bufs.items() if mine(k)},
            {k: v for k, v in cnts.items() if mine(k)})


def single_process_state_dict(shards):
    """The state_dict()s of every rank of a distributed run (any world size) merged into one
    that symoc.torch.SymocOptimizer.load_state_dict accepts."""
    metas = [sd.get("symoc_dist") if isinstance(sd, dict) else None for sd in shards]
    if not metas or any(not isinstance(m, dict) for m in metas):
        raise SymocError("single_process_state_dict: expected the list of every rank's "
                         "DistributedSymocOptimizer.state_dict()")
    if len({m["world_size"] for m in metas}) != 1 or len(metas) != metas[0]["world_size"]:
        raise SymocError("single_process_state_dict: %d shards of world size(s) %s"
                         % (len(metas), sorted({m["world_size"] for m in metas})))
    names = metas[0]["params"]
    merged = merge_states([read_state(_blob_bytes(m["blob"]), "shard %d" % k)
                           for k, m in enumerate(metas)], names)
    return {"state": {}, "param_groups": shards[0]["param_groups"],
            "symoc": {"fingerprint": merged[0], "policy": metas[0]["policy"],
                      "params": list(names), "blob": _u8(write_state(*merged))}}


# --------------------------------------------------------------------------- helpers
class RowShard:
    """A parameter split by rows over the ranks without DTensor (own ZeRO-3 layouts; the CPU
    tests under torch < 2.4): `local` (a contiguous Parameter, its .grad the matching rows of
    the gradient) holds this rank's rows of a tensor of `shape`; ranks hold consecutive row
    ranges in rank order (any sizes, empty allowed), as FSDP2's Shard(0) does."""

    def __init__(self, local, shape):
        self.local = local
        self.shape = torch.Size(shape)
        self.dtype = local.dtype
        self.device = local.device

    def dim(self):
        return len(self.shape)


def _is_sharded(t):
    return isinstance(t, RowShard) or _is_dtensor(t)


def _is_dtensor(t):
    try:
        from torch.distributed.tensor import DTensor  # torch >= 2.5
    except ImportError:
        try:
            from torch.distributed._tensor import DTensor  # torch 2.4
        except ImportError:
            return False
    return isinstance(t, DTensor)


def _global_rank(group, r):
    if group is None or group is dist.group.WORLD:
        return r
    if hasattr(dist, "get_global_rank"):
        return dist.get_global_rank(group, r)
    from torch.distributed import distributed_c10d as c10d
    return c10d._get_global_rank(group, r)


def _u8(blob):
    return torch.frombuffer(bytearray(blob), dtype=torch.uint8) if blob else \
        torch.zeros(0, dtype=torch.uint8)


def _blob_bytes(t):
    if isinstance(t, torch.Tensor) and t.dtype == torch.uint8 and t.dim() == 1:
        return t.cpu().contiguous().numpy().tobytes()
    if isinstance(t, (bytes, bytearray)):
        return bytes(t)
    raise SymocError("DistributedSymocOptimizer: state blob is not a uint8 tensor")


# --------------------------------------------------------------------------- the optimizer
class DistributedSymocOptimizer(torch.optim.Optimizer):
    """torch.optim.Optimizer that steps a symoc-generated optimizer across the ranks of a
    process group, each block on one home rank (see the module docstring).

    named_parameters: (initializer name, Parameter) pairs, the same on every rank (plain
        tensors replicated by DDP, or FSDP2 DTensors sharded on dim 0).
    library / build_dir: as for symoc.torch.SymocOptimizer (the same plan on every rank).
    lr: base learning rate (param_groups[0]["lr"], pushed to the library at every step).
    process_group: defaults to the world (DDP) or the parameters' mesh group (FSDP2).
    bucket_bytes: largest flat buffer of one broadcast (DDP).
    assignment: optional list, the home rank of each block (default: LPT on block_cost).
    profile: synchronize CUDA around the library step so that last_step's times are device
        times (off by default: it would stall the host).
    """

    def __init__(self, named_parameters, library=None, build_dir=None, lr=1e-3, name_map=None,
                 process_group=None, bucket_bytes=32 << 20, assignment=None, profile=False):
        if not dist.is_available() or not dist.is_initialized():
            raise SymocError("DistributedSymocOptimizer: torch.distributed is not initialized "
                             "(call dist.init_process_group first)")
        if (library is None) == (build_dir is None):
            raise SymocError("DistributedSymocOptimizer: pass exactly one of library= or "
                             "build_dir=")
        if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
            raise SymocError("DistributedSymocOptimizer: lr must be a finite number > 0, got %r"
                             % (lr,))
        named = list(named_parameters)
        if name_map is not None:
            named = [(name_map(n), p) for n, p in named]
        self._fsdp = any(_is_sharded(p) for _, p in named)
        if process_group is None and any(_is_dtensor(p) for _, p in named):
            process_group = next(p for _, p in named if _is_dtensor(p)).device_mesh.get_group()
        self._group = process_group
        self._rank = dist.get_rank(process_group)
        self._world = dist.get_world_size(process_group)
        # Everything that can fail locally happens before the first collective, and the
        # outcome is exchanged with the fingerprints: every rank raises, none waits.
        problem, lib, ordered = None, None, None
        try:
            if library is None:
                library = build_library(build_dir)
            lib = load_library(library)
            self._blocks = library_blocks(lib)
            ordered = self._match(lib, named)
            self._device = ordered[0].device if ordered else torch.device("cpu")
            devs = sorted({str(p.device) for p in ordered})
            if len(devs) > 1:
                raise SymocError("parameters on several devices: %s" % ", ".join(devs))
            self._lib = lib
            self._opt = self._create(lib, lr)
        except Exception as e:  # noqa: BLE001 - reported to every rank below
            problem = "%s: %s" % (type(e).__name__, e)
        mine = (lib.fingerprint if lib else None, lib.policy if lib else None, problem)
        everyone = [None] * self._world
        dist.all_gather_object(everyone, mine, group=process_group)
        bad = [(r, m[2]) for r, m in enumerate(everyone) if m[2]]
        if bad:
            raise SymocError("DistributedSymocOptimizer: construction failed on rank(s) %s:\n  %s"
                             % (", ".join(str(r) for r, _ in bad),
                                "\n  ".join("rank %d: %s" % rm for rm in bad)))
        fps = [m[0] for m in everyone]
        if len(set(fps)) != 1:
            raise SymocError("DistributedSymocOptimizer: the ranks loaded different plans "
                             "(fingerprints differ), refusing to step them together:\n  %s"
                             % "\n  ".join("rank %d: %s (policy %s)" % (r, m[0], m[1])
                                           for r, m in enumerate(everyone)))
        self._orig = ordered          # as given: Tensors, DTensors or RowShards
        super().__init__([p.local if isinstance(p, RowShard) else p for p in ordered],
                         dict(lr=float(lr)))
        self._lib = lib
        self._names = [n for n, _, _ in lib.params]
        costs = [c for _, c in self._blocks]
        if assignment is None:
            assignment = lpt_assign(costs, self._world)
        elif len(assignment) != len(costs) or any(not 0 <= r < self._world for r in assignment):
            raise SymocError("DistributedSymocOptimizer: assignment must give a rank in "
                             "[0, %d) for each of the %d blocks" % (self._world, len(costs)))
        self._owner = list(assignment)
        self._my_blocks = [b for b, r in enumerate(self._owner) if r == self._rank]
        self._home = [0] * len(self._names)         # home rank of each parameter
        for b, (ps, _) in enumerate(self._blocks):
            for i in ps:
                self._home[i] = self._owner[b]
        self._my_params = sorted(i for b in self._my_blocks for i in self._blocks[b][0])
        self._cuda = self._device.type == "cuda"
        self._steps = 0
        self._pushed_lr = float(lr)
        n = len(self._names)
        self._w = (ctypes.c_void_p * n)()
        self._g = (ctypes.c_void_p * n)()
        self._zero_grads = {}
        self._bucket_bytes = int(bucket_bytes)
        self.profile = bool(profile)
        self.last_step = {}
        self._flag_group = self._cpu_group()
        if self._fsdp:
            self._setup_sharded()
        else:
            self._setup_buckets()

    # ---- construction helpers
    def _create(self, lib, lr):
        api = lib.api
        if self._device.type == "cuda":
            if not api.create_cuda or not api.step_cuda:
                raise SymocError("%s: CUDA parameters, but the library was built without CUDA "
                                 "(create_cuda/step_cuda are NULL)" % lib.path)
            opt = api.create_cuda(ctypes.c_float(lr), self._device.index or 0)
        else:
            opt = api.create(ctypes.c_float(lr))
        if not opt:
            raise SymocError("%s: create(lr=%g) failed: %s"
                             % (lib.path, lr, _dec(api.last_error(None))))
        return opt

    def _match(self, lib, named):
        given, problems = {}, []
        for name, p in named:
            if name in given:
                problems.append("parameter %r given twice" % name)
            given[name] = p
        wanted = {n: s for n, s, _ in lib.params}
        for name, shape, _ in lib.params:
            if name not in given:
                problems.append("missing: %r (shape %s)" % (name, list(shape)))
        for name, p in given.items():
            if name not in wanted:
                problems.append("extra: %r is not a parameter of the plan" % name)
            elif _is_dtensor(p):
                problems += self._dtensor_problems(name, p, wanted[name])
            elif isinstance(p, RowShard):
                if tuple(p.shape) != tuple(wanted[name]) or not p.shape:
                    problems.append("parameter %r: RowShard of shape %s, the plan has %s"
                                    % (name, list(p.shape), list(wanted[name])))
                elif tuple(p.local.shape[1:]) != tuple(p.shape[1:]) or \
                        p.local.shape[0] > p.shape[0]:
                    problems.append("parameter %r: local rows of shape %s do not fit %s"
                                    % (name, list(p.local.shape), list(p.shape)))
                problems += [m for m in _param_problems(name, p.local, p.local.shape, "parameter")]
            else:
                problems += _param_problems(name, p, wanted[name], "parameter")
        if problems:
            raise SymocError("%s (model %r, policy %r): %d parameter mismatch(es):\n  %s"
                             % (lib.path, lib.model, lib.policy, len(problems),
                                "\n  ".join(problems)))
        return [given[n] for n, _, _ in lib.params]

    @staticmethod
    def _dtensor_problems(name, p, shape):
        out = []
        if tuple(p.shape) != tuple(shape):
            out.append("parameter %r: shape %s, the plan has %s" % (name, list(p.shape),
                                                                    list(shape)))
        if p.dtype != torch.float32:
            out.append("parameter %r: dtype %s, must be torch.float32" % (name, p.dtype))
        if p.device_mesh.ndim != 1:
            out.append("parameter %r: a %d-D device mesh; only 1-D (FSDP2 fully_shard) meshes "
                       "are supported" % (name, p.device_mesh.ndim))
        pl = p.placements
        if len(pl) != 1 or not (pl[0].is_shard(0) or pl[0].is_replicate()):
            out.append("parameter %r: placements %s; only Shard(0) or Replicate() are supported"
                       % (name, pl))
        return out

    def _setup_buckets(self):
        """Flat broadcast buckets of whole blocks: per home rank, its blocks in plan order,
        cut at bucket_bytes (a larger block is a bucket of its own) and at dtype changes.
        The global order interleaves the ranks (each rank's first bucket, then each rank's
        second, ...) so that every rank's first broadcast starts early."""
        params = self.param_groups[0]["params"]
        per_rank = []
        for r in range(self._world):
            mine, cur, size, dt = [], [], 0, None
            for b in range(len(self._blocks)):
                if self._owner[b] != r:
                    continue
                ps = self._blocks[b][0]
                nb = sum(params[i].numel() * params[i].element_size() for i in ps)
                bdt = {params[i].dtype for i in ps}
                if cur and (size + nb > self._bucket_bytes or bdt != {dt}):
                    mine.append(cur)
                    cur, size = [], 0
                cur.append(b)
                size += nb
                dt = next(iter(bdt)) if len(bdt) == 1 else None
            if cur:
                mine.append(cur)
            per_rank.append(mine)
        self._buckets = []   # [(root, blocks, param indices, dtype, numel)] in broadcast order
        for k in range(max((len(m) for m in per_rank), default=0)):
            for r in range(self._world):
                if k < len(per_rank[r]):
                    blocks = per_rank[r][k]
                    idx = sorted(i for b in blocks for i in self._blocks[b][0])
                    self._buckets.append((r, blocks, idx, params[idx[0]].dtype,
                                          sum(params[i].numel() for i in idx)))
        self._flat = {}

    def _setup_sharded(self):
        """Row ranges of every rank's shard of every parameter (one all_gather at
        construction) and full-size scratch for this rank's home parameters."""
        params = self._orig
        replicated = torch.tensor([1 if _is_replicated(p) else 0 for p in params],
                                  dtype=torch.int64)
        local_rows = torch.tensor([0 if rep else _local(p).shape[0]
                                   for p, rep in zip(params, replicated.tolist())],
                                  dtype=torch.int64)
        dev = self._device if self._device.type == "cuda" else torch.device("cpu")
        rows = [torch.zeros_like(local_rows, device=dev) for _ in range(self._world)]
        dist.all_gather(rows, local_rows.to(dev), group=self._group)
        rows = torch.stack([r.cpu() for r in rows])                       # [world, nparams]
        self._rows = rows.tolist()
        self._replicated = replicated.tolist()
        self._row_numel = [int(math.prod(p.shape[1:])) if len(p.shape) else 1 for p in params]
        for i, p in enumerate(params):
            if not self._replicated[i] and sum(rows[:, i].tolist()) != p.shape[0]:
                raise SymocError("parameter %r: shard rows %s do not add up to %d"
                                 % (self._names[i], rows[:, i].tolist(), p.shape[0]))
        self._full_w = {i: torch.empty(tuple(params[i].shape), dtype=torch.float32,
                                       device=self._device) for i in self._my_params}
        self._full_g = {i: torch.empty_like(self._full_w[i]) for i in self._my_params}

    # ---- properties
    @property
    def library(self):
        return self._lib

    @property
    def fingerprint(self):
        return self._lib.fingerprint

    @property
    def policy(self):
        return self._lib.policy

    @property
    def rank(self):
        return self._rank

    @property
    def world_size(self):
        return self._world

    @property
    def assignment(self):
        """Home rank of each block (plan order)."""
        return list(self._owner)

    @property
    def my_blocks(self):
        return list(self._my_blocks)

    def block_costs(self):
        return [c for _, c in self._blocks]

    def load_balance(self):
        """(max/mean of the per-rank block cost, per-rank cost sums)."""
        return balance(self.block_costs(), self._owner, self._world)

    @property
    def state_bytes(self):
        """Bytes of optimizer state held by this rank (its blocks only)."""
        return int(self._lib.api.state_bytes(self._opt))

    @property
    def steps_taken(self):
        """Completed distributed steps (the library counts its step_blocks calls, several per
        step; this count is the one saved as __optimizer/steps)."""
        return self._steps

    @property
    def steps_skipped(self):
        """Blocks of this rank skipped for a non-finite gradient (sum over ranks for the
        total)."""
        return int(self._lib.api.steps_skipped(self._opt))

    def _check(self, rc, what):
        if rc != 0:
            raise SymocError("%s: %s failed: %s"
                             % (self._lib.path, what, _dec(self._lib.api.last_error(self._opt))))

    def set_block_multiplier(self, name, m):
        """As SymocOptimizer.set_block_multiplier; call it on every rank alike."""
        self._check(self._lib.api.set_block_multiplier(self._opt, name.encode(), float(m)),
                    "set_block_multiplier(%r, %g)" % (name, m))

    def zero_state(self):
        self._check(self._lib.api.zero_state(self._opt), "zero_state()")

    def _push_lr(self):
        if len(self.param_groups) != 1:
            raise SymocError("DistributedSymocOptimizer: exactly one param group is supported")
        lr = self.param_groups[0]["lr"]
        if lr != self._pushed_lr:
            if not (math.isfinite(lr) and lr > 0):
                raise SymocError("DistributedSymocOptimizer: lr must be finite and > 0, got %r"
                                 % (lr,))
            self._check(self._lib.api.set_lr(self._opt, float(lr)), "set_lr(%g)" % lr)
            self._pushed_lr = lr

    # ---- fault agreement
    def _agree(self, error, phase):
        """All ranks learn whether any rank failed (one all_reduce of a flag per rank); on a
        failure every rank raises SymocError naming the failed ranks and their errors."""
        on_device = getattr(self, "_flag_on_device", False)
        flags = torch.zeros(self._world, dtype=torch.int32,
                            device=self._comm_device() if on_device else "cpu")
        if error is not None:
            flags[self._rank] = 1
        dist.all_reduce(flags, group=self._flag_group)
        failed = [r for r, f in enumerate(flags.tolist()) if f]
        if not failed:
            return
        msgs = [None] * self._world
        mine = None if error is None else "%s: %s" % (type(error).__name__, error)
        dist.all_gather_object(msgs, mine, group=self._flag_group)
        text = "\n  ".join("rank %d: %s" % (r, msgs[r]) for r in failed)
        raise SymocError("DistributedSymocOptimizer.step: failed on rank(s) %s of %d (%s); no "
                         "rank stepped:\n  %s"
                         % (", ".join(map(str, failed)), self._world, phase, text)
                         if phase == "before the step" else
                         "DistributedSymocOptimizer.step: the library step failed on rank(s) %s "
                         "of %d; the other ranks' blocks were updated and shared, so the "
                         "replicas agree:\n  %s" % (", ".join(map(str, failed)), self._world,
                                                    text)) from error

    def _cpu_group(self):
        """The failure flags travel over gloo on the CPU even when the parameters use NCCL:
        a flag on the GPU would make the host wait for all queued GPU work at every step."""
        if self._device.type != "cuda":
            return self._group
        try:
            ranks = None if self._group in (None, dist.group.WORLD) else \
                [_global_rank(self._group, r) for r in range(self._world)]
            return dist.new_group(ranks=ranks, backend="gloo")
        except Exception:  # noqa: BLE001 - gloo missing: flags on the parameters' group
            self._flag_on_device = True
            return self._group

    def _comm_device(self):
        return self._device if self._device.type == "cuda" else torch.device("cpu")

    # ---- stepping
    @torch.no_grad()
    def step(self, closure=None):
        t0 = time.perf_counter()
        loss, err = None, None
        try:
            if closure is not None:
                with torch.enable_grad():
                    loss = closure()
            self._push_lr()
            if self._fsdp:
                self._bind_sharded()
            else:
                self._bind_replicated()
        except Exception as e:  # noqa: BLE001 - shared with every rank by _agree
            err = e
        self._agree(err, "before the step")
        # The collectives run even after a library failure (the failed rank sends its blocks
        # unchanged or as far as they got), so that every replica holds the same values.
        if self._fsdp:
            self._gather_home()
            t1 = time.perf_counter()
            failure = self._run_blocks(self._my_blocks)
            self._step_s = time.perf_counter() - t1
            sent, received = self._scatter_home()
        else:
            failure, sent, received = self._step_and_broadcast()
        self.last_step = {"step_s": self._step_s, "total_s": time.perf_counter() - t0,
                          "bytes_sent": sent, "bytes_received": received}
        self._agree(failure, "in the library step")
        self._steps += 1
        return loss

    def _grad_or_zero(self, i, g, like):
        if g is None:
            # As SymocOptimizer: an unused parameter gets a zero gradient.
            z = self._zero_grads.get(i)
            if z is None or z.shape != like.shape or z.device != like.device:
                z = self._zero_grads[i] = torch.zeros_like(like)
            return z
        return g

    def _bind_replicated(self):
        params = self.param_groups[0]["params"]
        problems = []
        for i, p in enumerate(params):
            name, shape, _ = self._lib.params[i]
            problems += _param_problems(name, p, shape, "parameter", self._device)
            if self._home[i] != self._rank:
                self._w[i] = self._g[i] = None
                continue
            g = self._grad_or_zero(i, p.grad, p)
            problems += _param_problems(name, g, shape, "gradient", self._device)
            self._w[i] = p.data_ptr()
            self._g[i] = g.data_ptr()
        if problems:
            raise SymocError("%s: cannot step:\n  %s" % (self._lib.path, "\n  ".join(problems)))

    def _run_blocks(self, blocks):
        """Steps `blocks` (of this rank) with the library; returns the exception or None."""
        api, n = self._lib.api, len(self._names)
        arr = (ctypes.c_int32 * max(1, len(blocks)))(*blocks)
        try:
            if self._cuda:
                stream = torch.cuda.current_stream(self._device).cuda_stream
                self._check(api.step_cuda(self._opt, self._w, self._g, None, n, arr,
                                          len(blocks), ctypes.c_void_p(stream)),
                            "step_cuda(blocks)")
                if self.profile:
                    torch.cuda.current_stream(self._device).synchronize()
            else:
                self._check(api.step_blocks(self._opt, self._w, self._g, n, arr, len(blocks)),
                            "step_blocks()")
        except Exception as e:  # noqa: BLE001 - shared with every rank by _agree
            return e
        return None

    def _step_and_broadcast(self):
        """Buckets in their global order: the home steps the bucket's blocks, then posts its
        broadcast (async); the other ranks post theirs at once. A rank's later blocks are
        therefore stepped while its earlier buckets travel. All are unpacked at the end.
        After a library failure this rank steps nothing more but still posts every
        broadcast, so that the collectives match."""
        params = self.param_groups[0]["params"]
        works = []
        sent = received = 0
        failure, step_s = None, 0.0
        for k, (root, blocks, idx, dt, numel) in enumerate(self._buckets):
            if root == self._rank:
                if failure is None:
                    t = time.perf_counter()
                    failure = self._run_blocks(blocks)
                    step_s += time.perf_counter() - t
                flat = torch.cat([params[i].detach().reshape(-1) for i in idx]) if len(idx) > 1 \
                    else params[idx[0]].detach().reshape(-1)
                sent += flat.numel() * flat.element_size()
            else:
                flat = self._flat.get(k)
                if flat is None:
                    flat = self._flat[k] = torch.empty(numel, dtype=dt, device=self._device)
                received += flat.numel() * flat.element_size()
            works.append((dist.broadcast(flat, src=_global_rank(self._group, root),
                                         group=self._group, async_op=True), root, idx, flat))
        for work, root, idx, flat in works:
            work.wait()
            if root == self._rank:
                continue
            at = 0
            for i in idx:
                p = params[i]
                p.detach().view(-1).copy_(flat[at:at + p.numel()])
                at += p.numel()
        self._step_s = step_s
        return failure, sent, received

    # ---- FSDP2 (sharded) path
    def _bind_sharded(self):
        problems = []
        self._local_w, self._local_g = [], []
        for i, p in enumerate(self._orig):
            name = self._names[i]
            lw = _local(p)
            g = lw.grad if isinstance(p, RowShard) else p.grad
            lg = _local(g) if g is not None else self._grad_or_zero(i, None, lw)
            if tuple(lg.shape) != tuple(lw.shape):
                problems.append("gradient %r: local shard shape %s, the parameter's is %s"
                                % (name, list(lg.shape), list(lw.shape)))
            if lg.dtype != torch.float32 or lw.dtype != torch.float32:
                problems.append("%r: local shards must be float32" % name)
            if not lg.is_contiguous() or not lw.is_contiguous():
                problems.append("%r: local shards must be contiguous" % name)
            if lg.device != self._device or lw.device != self._device:
                problems.append("%r: local shards on %s/%s, expected %s"
                                % (name, lw.device, lg.device, self._device))
            self._local_w.append(lw)
            self._local_g.append(lg)
        if problems:
            raise SymocError("%s: cannot step:\n  %s" % (self._lib.path, "\n  ".join(problems)))

    def _shard_numel(self, r, i):
        if self._replicated[i]:
            return 0
        return self._rows[r][i] * self._row_numel[i]

    def _gather_home(self):
        """all_to_all_single: each rank's rows of every parameter (weight then gradient) go to
        the parameter's home rank; the home assembles full tensors. Replicated parameters
        (Replicate() placement) are complete everywhere and need no transfer."""
        me, W = self._rank, self._world
        dev = self._comm_device()
        send, in_splits = [], []
        for d in range(W):
            n = 0
            for i in range(len(self._names)):
                if self._home[i] == d and not self._replicated[i]:
                    send += [self._local_w[i].reshape(-1), self._local_g[i].reshape(-1)]
                    n += 2 * self._shard_numel(me, i)
            in_splits.append(n)
        out_splits = [sum(2 * self._shard_numel(s, i) for i in self._my_params) for s in range(W)]
        inp = torch.cat(send) if send else torch.zeros(0, dtype=torch.float32, device=dev)
        out = torch.empty(sum(out_splits), dtype=torch.float32, device=dev)
        dist.all_to_all_single(out, inp.to(dev), out_splits, in_splits, group=self._group)
        self._bytes_in = 4 * (sum(out_splits) - out_splits[me])
        self._bytes_out = 4 * (sum(in_splits) - in_splits[me])
        at = 0
        offs = {i: 0 for i in self._my_params}
        for s in range(W):
            for i in self._my_params:
                k = self._shard_numel(s, i)
                fw, fg = self._full_w[i].view(-1), self._full_g[i].view(-1)
                o = offs[i]
                fw[o:o + k].copy_(out[at:at + k])
                fg[o:o + k].copy_(out[at + k:at + 2 * k])
                offs[i] = o + k
                at += 2 * k
        n = len(self._names)
        for i in range(n):
            self._w[i] = self._g[i] = None
        for i in self._my_params:
            if self._replicated[i]:
                self._full_w[i].copy_(self._local_w[i])
                self._full_g[i].copy_(self._local_g[i])
            self._w[i] = self._full_w[i].data_ptr()
            self._g[i] = self._full_g[i].data_ptr()

    def _scatter_home(self):
        """The reverse all_to_all_single: each home sends the updated rows back to their
        shards; replicated parameters are broadcast from their home."""
        me, W = self._rank, self._world
        dev = self._comm_device()
        send, in_splits = [], []
        for d in range(W):
            for i in self._my_params:
                if self._replicated[i]:
                    continue
                start = sum(self._rows[s][i] for s in range(d)) * self._row_numel[i]
                send.append(self._full_w[i].view(-1)[start:start + self._shard_numel(d, i)])
            in_splits.append(sum(self._shard_numel(d, i) for i in self._my_params))
        out_splits = [sum(self._shard_numel(me, i) for i in range(len(self._names))
                          if self._home[i] == s) for s in range(W)]
        inp = torch.cat(send) if send else torch.zeros(0, dtype=torch.float32, device=dev)
        out = torch.empty(sum(out_splits), dtype=torch.float32, device=dev)
        dist.all_to_all_single(out, inp.to(dev), out_splits, in_splits, group=self._group)
        at = 0
        for s in range(W):
            for i in range(len(self._names)):
                if self._home[i] != s or self._replicated[i]:
                    continue
                k = self._shard_numel(me, i)
                self._local_w[i].view(-1).copy_(out[at:at + k])
                at += k
        sent = 4 * (sum(in_splits) - in_splits[me]) + self._bytes_out
        received = 4 * (sum(out_splits) - out_splits[me]) + self._bytes_in
        for i in range(len(self._names)):
            if not self._replicated[i]:
                continue
            buf = self._full_w[i] if self._home[i] == me else self._local_w[i]
            dist.broadcast(buf, src=_global_rank(self._group, self._home[i]), group=self._group)
            if self._home[i] == me:
                self._local_w[i].copy_(buf)
                sent += buf.numel() * 4
            else:
                received += buf.numel() * 4
        return sent, received

    # ---- checkpoints
    def _save_blob(self):
        with tempfile.TemporaryDirectory(prefix="symoc-") as d:
            path = os.path.join(d, "optimizer.state")
            self._push_lr()
            self._check(self._lib.api.save(self._opt, path.encode()), "save()")
            with open(path, "rb") as f:
                fp, bufs, cnts = read_state(f.read(), path)
        cnts["__optimizer/steps"] = self._steps
        return write_state(fp, bufs, cnts)

    def state_dict(self):
        """This rank's shard: {'state': {}, 'param_groups': [...], 'symoc_dist': {fingerprint,
        policy, world_size, rank, blocks, params, blob}}; the blob is the runtime's state file
        with this rank's blocks only."""
        groups = [{k: v for k, v in g.items() if k != "params"} for g in self.param_groups]
        for g in groups:
            g["params"] = list(range(len(self._names)))
        return {"state": {}, "param_groups": groups,
                "symoc_dist": {"fingerprint": self.fingerprint, "policy": self.policy,
                               "world_size": self._world, "rank": self._rank,
                               "blocks": list(self._my_blocks), "params": list(self._names),
                               "blob": _u8(self._save_blob())}}

    def load_state_dict(self, state_dict):
        """Accepts this class's state_dict() of a rank at the same world size and assignment,
        a list (or {'shards': list}) of the state_dict()s of every rank of a run at any world
        size, or a single-process SymocOptimizer state_dict(). Keeps this rank's blocks."""
        shards = state_dict.get("shards") if isinstance(state_dict, dict) and \
            "shards" in state_dict else state_dict
        if isinstance(shards, dict):
            shards = [shards]
        if not isinstance(shards, (list, tuple)) or not shards:
            raise SymocError("DistributedSymocOptimizer.load_state_dict: expected a state_dict, "
                             "or the list of every rank's state_dict")
        states, groups = [], None
        for k, sd in enumerate(shards):
            meta = sd.get("symoc_dist") or sd.get("symoc") if isinstance(sd, dict) else None
            if not isinstance(meta, dict) or "blob" not in meta:
                raise SymocError("DistributedSymocOptimizer.load_state_dict: shard %d is not a "
                                 "symoc state_dict" % k)
            if meta.get("fingerprint") != self.fingerprint:
                raise SymocError("DistributedSymocOptimizer.load_state_dict: shard %d was written "
                                 "for model/plan %r (policy %r), this optimizer is %r (policy %r)"
                                 % (k, meta.get("fingerprint"), meta.get("policy"),
                                    self.fingerprint, self.policy))
            states.append(read_state(_blob_bytes(meta["blob"]), "shard %d" % k))
            groups = groups or sd.get("param_groups")
        if len(shards) == 1 and "symoc_dist" in shards[0]:
            meta = shards[0]["symoc_dist"]
            if meta.get("world_size") != self._world or sorted(meta.get("blocks", [])) != \
                    sorted(self._my_blocks):
                if meta.get("world_size", 1) > 1:
                    raise SymocError(
                        "DistributedSymocOptimizer.load_state_dict: one shard of a run at world "
                        "size %s holds blocks %s, this rank needs %s: pass the list of every "
                        "rank's state_dict (or use load_checkpoint) to re-shard"
                        % (meta.get("world_size"), meta.get("blocks"), self._my_blocks))
        self._load_states(states, groups)

    def _load_states(self, states, groups):
        merged = merge_states(states, self._names)
        steps = int(merged[2].get("__optimizer/steps", 0))
        mine = select_state(merged, self._names, [self._names[i] for i in self._my_params])
        with tempfile.TemporaryDirectory(prefix="symoc-") as d:
            path = os.path.join(d, "optimizer.state")
            with open(path, "wb") as f:
                f.write(write_state(*mine))
            self._check(self._lib.api.load(self._opt, path.encode()), "load()")
        self._steps = steps
        for g, saved in zip(self.param_groups, groups or []):
            for k, v in saved.items():
                if k != "params":
                    g[k] = v
        self._pushed_lr = float(self._lib.api.get_lr(self._opt))
        self._push_lr()

    def save_checkpoint(self, directory):
        """Collective. Every rank writes DIR/shard-<rank>-of-<world>.symocst (the runtime's state
        file format, this rank's blocks); rank 0 writes DIR/optimizer.json (fingerprint, policy,
        world size, param_groups, the block assignment)."""
        os.makedirs(directory, exist_ok=True)
        blob = self._save_blob()
        path = os.path.join(directory, "shard-%d-of-%d.symocst" % (self._rank, self._world))
        with open(path + ".tmp", "wb") as f:
            f.write(blob)
        os.replace(path + ".tmp", path)
        if self._rank == 0:
            groups = [{k: v for k, v in g.items() if k != "params"} for g in self.param_groups]
            meta = {"format": "symoc-distributed-checkpoint", "version": 1,
                    "fingerprint": self.fingerprint, "policy": self.policy,
                    "world_size": self._world, "assignment": self._owner,
                    "params": self._names, "param_groups": groups}
            with open(os.path.join(directory, "optimizer.json.tmp"), "w") as f:
                json.dump(meta, f, indent=1)
            os.replace(os.path.join(directory, "optimizer.json.tmp"),
                       os.path.join(directory, "optimizer.json"))
        dist.barrier(group=self._group)

    def load_checkpoint(self, directory):
        """Loads a save_checkpoint() folder written at any world size (every rank reads all
        shards and keeps its blocks). Not collective."""
        try:
            with open(os.path.join(directory, "optimizer.json")) as f:
                meta = json.load(f)
        except (OSError, ValueError) as e:
            raise SymocError("%s: not a symoc distributed checkpoint: %s" % (directory, e)) \
                from None
        if meta.get("fingerprint") != self.fingerprint:
            raise SymocError("%s: checkpoint of model/plan %r (policy %r), this optimizer is %r "
                             "(policy %r)" % (directory, meta.get("fingerprint"),
                                              meta.get("policy"), self.fingerprint, self.policy))
        states = []
        for r in range(int(meta["world_size"])):
            path = os.path.join(directory, "shard-%d-of-%d.symocst" % (r, meta["world_size"]))
            try:
                with open(path, "rb") as f:
                    states.append(read_state(f.read(), path))
            except OSError as e:
                raise SymocError("%s: missing shard: %s" % (path, e)) from None
        self._load_states(states, meta.get("param_groups"))

    def __del__(self):
        opt = getattr(self, "_opt", None)
        if opt:
            self._lib.api.destroy(opt)
            self._opt = None

    def __repr__(self):
        return "DistributedSymocOptimizer(model=%r, policy=%r, rank=%d/%d, blocks=%d/%d)" % (
            self._lib.model, self._lib.policy, self._rank, self._world, len(self._my_blocks),
            len(self._blocks))


def _local(t):
    if isinstance(t, RowShard):
        return t.local
    return t.to_local() if _is_dtensor(t) else t


def _is_replicated(p):
    """Complete on every rank: a plain tensor, a Replicate() DTensor."""
    if _is_dtensor(p):
        return not p.placements[0].is_shard(0)
    return not isinstance(p, RowShard)


def _param_problems(name, t, shape, what, device=None):
    """symoc.torch's checks, with CUDA tensors allowed (the CUDA entry points take them)."""
    out = []
    for msg in _tensor_problems(name, t, shape, what):
        if "must be on the CPU" in msg and t.device.type == "cuda":
            continue
        out.append(msg)
    if device is not None and t.device != device:
        out.append("%s %r: on %s, the other parameters are on %s" % (what, name, t.device, device))
    return out
