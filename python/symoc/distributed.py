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

Dtypes: float32 parameters on the CPU; float32 or bfloat16 on CUDA, chosen per parameter
(each stepped in its own dtype with float32 state, as symoc.torch does). Layouts: in the
replicated layout a parameter in another axis order (`model.to(memory_format=
torch.channels_last)`, as CNN training runs) is stepped through a contiguous copy at its home,
broadcast in the logical order and written back by rows, so it keeps its axis order; the
sharded layout needs contiguous local shards.

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
from symoc.torch import (STEP_ROWS_SKIP, _LibraryBacked, _contiguous_pair, _dec, _tensor_problems,
                         load_library, unwrapped_names)

__all__ = ["DistributedSymocOptimizer", "RowShard", "lpt_assign", "split_rows", "split_items",
           "ddp_schedule",
           "plan_row_granules",
           "balance", "library_blocks",
           "read_state", "write_state", "merge_states", "select_state",
           "single_process_state_dict"]


# --------------------------------------------------------------------------- load balance
def lpt_assign(costs, world_size, groups=None):
    """Longest-processing-time-first: items by decreasing cost (ties: lower index first),
    each to the rank with the least load so far (ties: lower rank). With `groups` (a group id
    per item, or None), a rank takes at most one item of a group (the row pieces of one split
    block: one optimizer keeps one row range per parameter); a group must not have more items
    than ranks. Deterministic, so every rank computes the same assignment. Returns the rank
    of each item."""
    if world_size < 1:
        raise SymocError("lpt_assign: world_size must be >= 1, got %r" % (world_size,))
    order = sorted(range(len(costs)), key=lambda b: (-float(costs[b]), b))
    owner = [0] * len(costs)
    if groups is None:
        heap = [(0.0, r) for r in range(world_size)]
        for b in order:
            load, r = heapq.heappop(heap)
            owner[b] = r
            heapq.heappush(heap, (load + float(costs[b]), r))
        return owner
    load = [0.0] * world_size
    taken = {}
    for b in order:
        g = groups[b]
        used = taken.setdefault(g, set()) if g is not None else ()
        free = [r for r in range(world_size) if r not in used]
        if not free:
            raise SymocError("lpt_assign: group %r has more items than the %d ranks"
                             % (g, world_size))
        r = min(free, key=lambda q: (load[q], q))
        owner[b] = r
        load[r] += float(costs[b])
        if g is not None:
            used.add(r)
    return owner


def ddp_schedule(blocks, granules, rows, world_size, split=True):
    """The DDP schedule: (items, owner) with items as split_items gives them and owner the
    rank of each (LPT, at most one piece of a block per rank). With split=True the elementwise
    blocks are cut (split_items) when that lowers the busiest rank's cost, with "always"
    whenever split_items cuts them; otherwise, and without split, every block is one item
    (LPT over the blocks)."""
    whole = [(b, None, c) for b, (_, c) in enumerate(blocks)]
    owner = lpt_assign([c for _, _, c in whole], world_size)
    if not split or world_size == 1:
        return whole, owner
    items = split_items(blocks, granules, rows, world_size)
    if len(items) == len(whole):
        return whole, owner
    iowner = lpt_assign([c for _, _, c in items], world_size,
                        [b if rng is not None else None for b, rng, _ in items])
    peak = max(balance([c for _, _, c in whole], owner, world_size)[1])
    ipeak = max(balance([c for _, _, c in items], iowner, world_size)[1])
    return (items, iowner) if ipeak < peak or split == "always" else (whole, owner)


def plan_row_granules(plan):
    """The row granule of each block of a plan (plan.json / `symoc compile --emit json`), as
    the generated library's param_row_granule gives it for the block's parameter
    (EmitCpp.cpp rowGranule): 1 for a lone parameter stepped by adamw, adam or sgd without a
    gauge, adam_mini's group_rows when it divides the rows, else 0 (whole blocks only; always
    0 for a stack of matrices, class "stack"). For
    schedules computed without a library (bench/distributed); the CI test checks it against
    the libraries."""
    shapes = {p["name"]: p["shape"] for p in plan["params"]}
    stacks = {p["name"] for p in plan["params"] if p.get("class") == "stack"}
    out = []
    for b in plan["blocks"]:
        st = b["step"]
        g = 0
        if len(b["params"]) == 1 and not st.get("gauges") and b["params"][0] not in stacks:
            shape = shapes[b["params"][0]]
            rows = shape[0] if shape else 1
            if st["kind"] in ("adamw", "adam", "sgd"):
                g = 1
            elif st["kind"] == "adam_mini":
                gr = int(st.get("hyper", {}).get("group_rows", 1))
                g = gr if gr > 0 and rows % gr == 0 else 0
        out.append(g)
    return out


def split_rows(rows, granule, pieces):
    """[r0, r1) bounds of `pieces` near-equal row ranges of whole granules (fewer when there
    are fewer granules than pieces)."""
    units = rows // granule
    pieces = max(1, min(pieces, units))
    bounds = [(units * j // pieces) * granule for j in range(pieces + 1)]
    return [(a, b) for a, b in zip(bounds, bounds[1:]) if b > a]


def split_items(blocks, granules, rows, world_size, factor=4):
    """The DDP schedule's work items: every block whole, except that an elementwise block
    (one parameter with a row granule > 0) costing more than 1/(factor * W) of the total is
    cut into at most W row pieces of about that size, so LPT can balance it. blocks: [(param
    indices, cost)]; granules/rows: per parameter. Returns [(block, (param, r0, r1) or None,
    cost)] in block order."""
    total = sum(c for _, c in blocks)
    items = []
    for b, (ps, cost) in enumerate(blocks):
        k = 1
        if len(ps) == 1 and granules[ps[0]] > 0 and total > 0 and world_size > 1:
            k = min(world_size, int(math.ceil(cost * factor * world_size / total)))
        if k <= 1:
            items.append((b, None, cost))
            continue
        i = ps[0]
        parts = split_rows(rows[i], granules[i], k)
        if len(parts) == 1:
            items.append((b, None, cost))
            continue
        for r0, r1 in parts:
            items.append((b, (i, r0, r1), cost * (r1 - r0) / rows[i]))
    return items


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


_SHARD_ROWS = "/shard_rows"   # the library's per-range counter (step_rows), not merged


def merge_states(states, param_names, ranges=None):
    """Union of per-rank states (read_state triples of one fingerprint) into the single-process
    state. Per-parameter entries must come from one shard only; the optimizer-wide entries
    (__optimizer/...: lr, multipliers, step count) must agree. ranges[k] ({parameter: (r0,
    r1, rows)}) names the parameters shard k stepped by row range (step_rows): their buffers
    are concatenated along the first dimension in row order (the ranges must tile the rows)
    and their counters (step counts, skips) must agree."""
    if not states:
        raise SymocError("merge_states: no shards")
    fps = {s[0] for s in states}
    if len(fps) != 1:
        raise SymocError("merge_states: shards of different models/plans: %s" % sorted(fps))
    ranges = ranges or [{} for _ in states]
    names = sorted(param_names, key=len, reverse=True)
    buffers, counters, pieces, whole = {}, {}, {}, set()
    for idx, (_, bufs, cnts) in enumerate(states):
        for table, out, is_buf in ((bufs, buffers, True), (cnts, counters, False)):
            for k, v in table.items():
                owner = None if k.startswith(_GLOBAL_PREFIX) else _owner_param(k, names)
                if k.startswith(_GLOBAL_PREFIX):
                    if k in out and out[k] != v:
                        raise SymocError("merge_states: shard %d disagrees on %r with an earlier "
                                         "shard (written by different optimizers?)" % (idx, k))
                elif owner is None:
                    raise SymocError("merge_states: shard %d has state %r of no parameter of the "
                                     "plan" % (idx, k))
                elif owner in ranges[idx]:
                    if k in whole:
                        raise SymocError("merge_states: state %r is whole in one shard and a row "
                                         "range in another" % k)
                    if k.endswith(_SHARD_ROWS):
                        continue
                    if is_buf:
                        pieces.setdefault(k, []).append((ranges[idx][owner], v, idx))
                        continue
                    if k in out and out[k] != v:
                        raise SymocError("merge_states: the row shards of %r disagree on %r "
                                         "(%r, %r)" % (owner, k, out[k], v))
                elif k in out or k in pieces:
                    raise SymocError("merge_states: state %r is in two shards" % k)
                else:
                    whole.add(k)
                out[k] = v
    for k, parts in pieces.items():
        if k in buffers:
            raise SymocError("merge_states: state %r is whole in one shard and a row range in "
                             "another" % k)
        parts.sort(key=lambda p: p[0][0])
        at, rows = 0, parts[0][0][2]
        tail = parts[0][1][0][1:]
        for (r0, r1, _), (dims, _), idx in parts:
            if r0 != at or tuple(dims[1:]) != tuple(tail):
                raise SymocError("merge_states: the row shards of %r do not tile its rows (shard "
                                 "%d has rows [%d, %d) of shape %s after row %d)"
                                 % (k, idx, r0, r1, list(dims), at))
            at = r1
        if at != rows:
            raise SymocError("merge_states: the row shards of %r end at row %d of %d"
                             % (k, at, rows))
        buffers[k] = ((sum(d[0] for _, (d, _), _ in parts),) + tuple(tail),
                      b"".join(data for _, (_, data), _ in parts))
    return fps.pop(), buffers, counters


def select_state(state, param_names, keep, ranges=None):
    """The part of a state that belongs to the parameters in `keep` (plus the optimizer-wide
    entries). ranges ({parameter: (r0, r1, rows)}): parameters of `keep` stepped by row range,
    whose buffers are cut to those rows (first dimension scaled: adam_mini's group moments
    have rows / group_rows entries) and tagged with the library's shard_rows counter."""
    fp, bufs, cnts = state
    names = sorted(param_names, key=len, reverse=True)
    keep = set(keep)
    ranges = ranges or {}

    def mine(k):
        return k.startswith(_GLOBAL_PREFIX) or _owner_param(k, names) in keep

    out_b = {}
    out_c = {k: v for k, v in cnts.items() if mine(k) and not k.endswith(_SHARD_ROWS)}
    for k, (dims, data) in bufs.items():
        if not mine(k):
            continue
        owner = None if k.startswith(_GLOBAL_PREFIX) else _owner_param(k, names)
        if owner not in ranges:
            out_b[k] = (dims, data)
            continue
        r0, r1, rows = ranges[owner]
        d0 = dims[0] if dims else 1
        if (d0 * r0) % rows or (d0 * r1) % rows:
            raise SymocError("select_state: %r has %d rows of state for %d parameter rows; rows "
                             "[%d, %d) do not cut it" % (k, d0, rows, r0, r1))
        lo, hi = d0 * r0 // rows, d0 * r1 // rows
        row = 4 * (len(data) // 4 // d0 if d0 else 0)
        out_b[k] = ((hi - lo,) + tuple(dims[1:]), data[lo * row:hi * row])
        out_c[owner + _SHARD_ROWS] = r1 - r0
    return fp, out_b, out_c


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
                           for k, m in enumerate(metas)], names,
                          [_ranges_of(m) for m in metas])
    return {"state": {}, "param_groups": shards[0]["param_groups"],
            "symoc": {"fingerprint": merged[0], "policy": metas[0]["policy"],
                      "params": list(names), "blob": _u8(write_state(*merged))}}


def _ranges_of(meta):
    """{parameter: (r0, r1, rows)} of a state_dict's / checkpoint's row-range entries."""
    return {n: tuple(int(x) for x in v) for n, v in (meta.get("ranges") or {}).items()}


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
class DistributedSymocOptimizer(_LibraryBacked, torch.optim.Optimizer):
    """torch.optim.Optimizer that steps a symoc-generated optimizer across the ranks of a
    process group, each block on one home rank (see the module docstring).

    named_parameters: (initializer name, Parameter) pairs, the same on every rank (plain
        tensors replicated by DDP, or FSDP2 DTensors sharded on dim 0).
    library / build_dir: as for symoc.torch.SymocOptimizer (the same plan on every rank).
    lr: base learning rate (param_groups[0]["lr"], pushed to the library at every step).
    process_group: defaults to the world (DDP) or the parameters' mesh group (FSDP2).
    bucket_bytes: largest flat buffer of one broadcast (DDP).
    assignment: optional list, the home rank of each block (default: LPT on block_cost;
        given, no block is split).
    split: DDP: cut large elementwise blocks into row pieces on several ranks (ABI v3
        step_rows, CPU parameters) when that balances the ranks better (ddp_schedule);
        "always": whenever they are large enough; False: never.
    profile: synchronize CUDA around the library step so that last_step's times are device
        times (off by default: it would stall the host).
    schedule: DDP: "buckets" (default) steps a rank's blocks bucket by bucket, each bucket's
        broadcast posted after its step, so buckets travel while later ones are stepped;
        "one_call" steps all of them in one library call first, then posts every broadcast (no
        overlap, but on the GPU a rank's Muon matrices then run as one batched Newton-Schulz;
        at world 1 on an H200 this schedule takes 4.3 ms against the buckets' 10.2 on GPT-2
        small, 57 against 106 on LLaMA-1B, docs/benchmarks.md; the trade at world sizes > 1
        is not yet measured). The same values either way, but for CUDA matrix-rule plans (Symo,
        Shampoo, Lau-Su, NorMuon), whose groups a rank makes from the blocks of its first calls:
        one call per bucket batches fewer matrices per cuSOLVER/cuBLAS call (rounding-level
        differences, measured 1.2e-7; and less batching, so prefer "one_call" there).
    """

    def __init__(self, named_parameters, library=None, build_dir=None, lr=1e-3, name_map=None,
                 process_group=None, bucket_bytes=32 << 20, assignment=None, profile=False,
                 split=True, schedule="buckets"):
        if not dist.is_available() or not dist.is_initialized():
            raise SymocError("DistributedSymocOptimizer: torch.distributed is not initialized "
                             "(call dist.init_process_group first)")
        if (library is None) == (build_dir is None):
            raise SymocError("DistributedSymocOptimizer: pass exactly one of library= or "
                             "build_dir=")
        if schedule not in ("buckets", "one_call"):
            raise SymocError("DistributedSymocOptimizer: schedule must be 'buckets' or 'one_call', "
                             "got %r" % (schedule,))
        self._schedule = schedule
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
            if name_map is None:
                named = unwrapped_names(named, {n for n, _, _ in lib.params})
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
            raise SymocError("DistributedSymocOptimizer: construction failed on rank(s) %s: %s"
                             % (", ".join(str(r) for r, _ in bad),
                                "; ".join("rank %d: %s" % rm for rm in bad)))
        fps = [m[0] for m in everyone]
        if len(set(fps)) != 1:
            raise SymocError("DistributedSymocOptimizer: the ranks loaded different plans "
                             "(fingerprints differ), refusing to step them together: %s"
                             % "; ".join("rank %d: %s (policy %s)" % (r, m[0], m[1])
                                           for r, m in enumerate(everyone)))
        self._orig = ordered          # as given: Tensors, DTensors or RowShards
        super().__init__([p.local if isinstance(p, RowShard) else p for p in ordered],
                         dict(lr=float(lr)))
        self._lib = lib
        self._names = [n for n, _, _ in lib.params]
        n = len(self._names)
        self._cuda = self._device.type == "cuda"
        # Row ranges (ABI v3 step_rows) on CPU parameters: elementwise blocks are split (DDP)
        # or stepped in place on their shards (FSDP2).
        rows_ok = lib.step_rows is not None and not self._cuda
        self._granule = [int(lib.param_row_granule(i)) if rows_ok else 0 for i in range(n)]
        self._prows = [int(s[0]) if len(s) else 1 for _, s, _ in lib.params]
        self._row_numel = [int(math.prod(s[1:])) if len(s) else 1 for _, s, _ in lib.params]
        if assignment is not None and (len(assignment) != len(self._blocks) or
                                       any(not 0 <= r < self._world for r in assignment)):
            raise SymocError("DistributedSymocOptimizer: assignment must give a rank in "
                             "[0, %d) for each of the %d blocks" % (self._world,
                                                                    len(self._blocks)))
        if self._fsdp:
            self._exchange_rows(ordered)
        self._plan_items(assignment, split)
        self._steps = 0
        self._pushed_lr = float(lr)
        self._w = (ctypes.c_void_p * n)()
        self._g = (ctypes.c_void_p * n)()
        # Element type of each parameter for step_cuda (SymocDType; state is float32).
        self._dt = (ctypes.c_int32 * n)(*[1 if p.dtype == torch.bfloat16 else 0
                                          for p in self.param_groups[0]["params"]])
        self._dtypes = [p.dtype for p in self.param_groups[0]["params"]]
        self._esize = [p.element_size() for p in self.param_groups[0]["params"]]
        self._zero_grads = {}
        self._copies = {}      # parameter index -> contiguous (weight, gradient) for other layouts
        self._bucket_bytes = int(bucket_bytes)
        self.profile = bool(profile)
        self.last_step = {}
        self._flag_group = self._cpu_group()
        if self._fsdp:
            self._setup_sharded()
        else:
            self._setup_buckets()

    def _plan_items(self, assignment, split):
        """The schedule: work items (a whole block at its home rank, or rows of an
        elementwise parameter), their ranks and this rank's share.
          DDP (ddp_schedule): LPT over the blocks; with split=True (not with an explicit
            assignment), an elementwise block costing more than 1/(4 W) of the total is cut
            into at most W row pieces on distinct ranks when that lowers the busiest rank.
          FSDP2: an elementwise parameter sharded by rows on granule boundaries is stepped
            on every rank's own rows ("local"); the other blocks go to homes by LPT."""
        W, me = self._world, self._rank
        blocks = self._blocks
        local = set()
        if self._fsdp:
            for b, (ps, _) in enumerate(blocks):
                i = ps[0]
                if len(ps) != 1 or self._replicated[i] or self._granule[i] <= 0:
                    continue
                g, at, ok = self._granule[i], 0, True
                for r in range(W):
                    at += self._rows[r][i]
                    ok = ok and at % g == 0
                if ok:
                    local.add(b)
        if assignment is not None or self._fsdp:
            items = [(b, None, c) for b, (_, c) in enumerate(blocks) if b not in local]
            owner = [assignment[b] for b, _, _ in items] if assignment is not None else \
                lpt_assign([c for _, _, c in items], W)
        else:
            items, owner = ddp_schedule(blocks, self._granule, self._prows, W, split)
        self._owner = [-1] * len(blocks)        # home of each whole block; -1: split/local
        self._load = [0.0] * W
        self._all_ranges = [{} for _ in range(W)]   # {name: (r0, r1, rows)} per rank
        self._items = []                        # [(rank, block, (i, r0, r1) or None)]
        for (b, rng, c), r in zip(items, owner):
            self._items.append((r, b, rng))
            self._load[r] += c
            if rng is None:
                self._owner[b] = r
            else:
                i, r0, r1 = rng
                self._all_ranges[r][self._names[i]] = (r0, r1, self._prows[i])
        self._local = sorted(blocks[b][0][0] for b in local)   # params stepped on their shards
        for i in self._local:
            start = 0
            for r in range(W):
                k = self._rows[r][i]
                self._load[r] += self._blocks_cost_of(i) * k / max(1, self._prows[i])
                if k:
                    self._all_ranges[r][self._names[i]] = (start, start + k, self._prows[i])
                start += k
        self._my_blocks = [b for b, r in enumerate(self._owner) if r == me]
        self._my_pieces = [rng for r, b, rng in self._items if r == me and rng is not None]
        self._ranges = dict(self._all_ranges[me])
        self._home = [-1] * len(self._names)    # home rank of each parameter; -1: split/local
        for b, (ps, _) in enumerate(blocks):
            for i in ps:
                self._home[i] = self._owner[b]
        self._my_params = sorted(i for b in self._my_blocks for i in blocks[b][0])

    def _blocks_cost_of(self, i):
        return next(c for ps, c in self._blocks if i in ps)

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
                problems += _param_problems(name, p.local, p.local.shape, "parameter")
            else:  # replicated (DDP): another axis order steps through copies (_stage)
                problems += _param_problems(name, p, wanted[name], "parameter", dense_ok=True)
        # One tensor under two plan names would be stepped twice, by two rules.
        owner = {}
        for name, p in given.items():
            local = p.local if isinstance(p, RowShard) else p
            if name in wanted and not _is_dtensor(p) and local.numel():
                if local.data_ptr() in owner:
                    problems.append("%r and %r are the same tensor" % (owner[local.data_ptr()], name))
                owner.setdefault(local.data_ptr(), name)
        if problems:
            raise SymocError("%s (model %r, policy %r): %d parameter mismatch(es): %s"
                             % (lib.path, lib.model, lib.policy, len(problems),
                                "; ".join(problems)))
        return [given[n] for n, _, _ in lib.params]

    @staticmethod
    def _dtensor_problems(name, p, shape):
        out = []
        if tuple(p.shape) != tuple(shape):
            out.append("parameter %r: shape %s, the plan has %s" % (name, list(p.shape),
                                                                    list(shape)))
        out += _dtype_problems("parameter", name, p.dtype, p.device)
        if p.device_mesh.ndim != 1:
            out.append("parameter %r: a %d-D device mesh; only 1-D (FSDP2 fully_shard) meshes "
                       "are supported" % (name, p.device_mesh.ndim))
        pl = p.placements
        if len(pl) != 1 or not (pl[0].is_shard(0) or pl[0].is_replicate()):
            out.append("parameter %r: placements %s; only Shard(0) or Replicate() are supported"
                       % (name, pl))
        return out

    def _setup_buckets(self):
        """Flat broadcast buckets of work items: per rank, its items in plan order (a whole
        block, or the rows of a split one), cut at bucket_bytes (a larger item is a bucket of
        its own) and at dtype changes. The global order interleaves the ranks (each rank's
        first bucket, then each rank's second, ...) so that every rank's first broadcast
        starts early."""
        params = self.param_groups[0]["params"]
        per_rank = []
        for r in range(self._world):
            mine, cur, size, dt = [], [], 0, None
            for root, b, rng in self._items:
                if root != r:
                    continue
                if rng is None:
                    ents = [(i, 0, params[i].numel()) for i in self._blocks[b][0]]
                else:
                    i, r0, r1 = rng
                    ents = [(i, r0 * self._row_numel[i], (r1 - r0) * self._row_numel[i])]
                nb = sum(k * params[i].element_size() for i, _, k in ents)
                bdt = {params[i].dtype for i, _, _ in ents}
                if cur and (size + nb > self._bucket_bytes or bdt != {dt}):
                    mine.append(cur)
                    cur, size = [], 0
                cur.append((b, rng, ents))
                size += nb
                dt = next(iter(bdt)) if len(bdt) == 1 else None
            if cur:
                mine.append(cur)
            per_rank.append(mine)
        # [(root, blocks, pieces, entries (param, flat offset, numel), dtype, numel)]
        self._buckets = []
        for k in range(max((len(m) for m in per_rank), default=0)):
            for r in range(self._world):
                if k < len(per_rank[r]):
                    its = per_rank[r][k]
                    ents = sorted(e for _, _, es in its for e in es)
                    self._buckets.append((r, [b for b, rng, _ in its if rng is None],
                                          [rng for _, rng, _ in its if rng is not None], ents,
                                          params[ents[0][0]].dtype, sum(e[2] for e in ents)))
        self._flat = {}

    def _exchange_rows(self, params):
        """Row counts of every rank's shard of every parameter (one all_gather at
        construction; consecutive ranges in rank order)."""
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
        for i, p in enumerate(params):
            if not self._replicated[i] and sum(rows[:, i].tolist()) != p.shape[0]:
                raise SymocError("parameter %r: shard rows %s do not add up to %d"
                                 % (self._names[i], rows[:, i].tolist(), p.shape[0]))

    def _setup_sharded(self):
        """Full-size scratch for this rank's home parameters; the row range of this rank's
        shard of each parameter stepped in place."""
        params = self._orig
        self._full_w = {i: torch.empty(tuple(params[i].shape), dtype=params[i].dtype,
                                       device=self._device) for i in self._my_params}
        self._full_g = {i: torch.empty_like(self._full_w[i]) for i in self._my_params}
        me = self._rank
        self._my_pieces = []
        for i in self._local:
            r0 = sum(self._rows[r][i] for r in range(me))
            self._my_pieces.append((i, r0, r0 + self._rows[me][i]))

    # ---- properties (library, policy, fingerprint: _LibraryBacked)
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
        """(max/mean of the per-rank cost, per-rank cost sums): whole blocks at their homes,
        split blocks by their pieces' rows, FSDP2 local blocks by each rank's rows."""
        mean = sum(self._load) / self._world
        return (max(self._load) / mean if mean > 0 else 1.0), list(self._load)

    @property
    def row_ranges(self):
        """{parameter: (r0, r1, rows)} this rank steps by row range (step_rows)."""
        return dict(self._ranges)

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
    def _agree(self, error, phase, extra=None):
        """All ranks learn whether any rank failed (one all_reduce of a flag per rank); on a
        failure every rank raises SymocError naming the failed ranks and their errors.
        `extra` (ints, the same length on every rank) is summed over the ranks in the same
        all_reduce and returned."""
        on_device = getattr(self, "_flag_on_device", False)
        extra = list(extra or [])
        flags = torch.zeros(self._world + len(extra), dtype=torch.int32,
                            device=self._comm_device() if on_device else "cpu")
        if error is not None:
            flags[self._rank] = 1
        elif extra:
            flags[self._world:] = torch.tensor(extra, dtype=torch.int32)
        dist.all_reduce(flags, group=self._flag_group)
        got = flags.tolist()
        failed = [r for r, f in enumerate(got[:self._world]) if f]
        if not failed:
            return got[self._world:]
        msgs = [None] * self._world
        mine = None if error is None else "%s: %s" % (type(error).__name__, error)
        dist.all_gather_object(msgs, mine, group=self._flag_group)
        text = "; ".join("rank %d: %s" % (r, msgs[r]) for r in failed)
        raise SymocError("DistributedSymocOptimizer.step: failed on rank(s) %s of %d (%s); no "
                         "rank stepped: %s"
                         % (", ".join(map(str, failed)), self._world, phase, text)
                         if phase == "before the step" else
                         "DistributedSymocOptimizer.step: the library step failed on rank(s) %s "
                         "of %d; the other ranks' blocks were updated and shared, so the "
                         "replicas agree: %s" % (", ".join(map(str, failed)), self._world,
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
        # With the failure flags: per parameter stepped on its shards, the ranks whose rows
        # of its gradient are not finite (a NaN anywhere skips the parameter everywhere, as
        # the single process skips the whole parameter).
        bad = self._agree(err, "before the step",
                          [a[5] for a in self._piece_args] if self._fsdp and err is None
                          else [0] * (len(self._my_pieces) if self._fsdp else 0))
        if self._fsdp:
            self._piece_args = [a[:5] + (int(b > 0),) for a, b in zip(self._piece_args, bad)]
        # The collectives run even after a library failure (the failed rank sends its blocks
        # unchanged or as far as they got), so that every replica holds the same values.
        if self._fsdp:
            self._gather_home()
            t1 = time.perf_counter()
            failure = self._run(self._my_blocks, self._piece_args)
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
        self._staged = {}   # parameter index -> (weight, gradient) contiguous copies stepped
        for i, p in enumerate(params):
            name, shape, _ = self._lib.params[i]
            problems += _param_problems(name, p, shape, "parameter", self._device, dense_ok=True)
            if p.dtype != self._dtypes[i]:  # the broadcast buckets were cut for that dtype
                problems.append("parameter %r: dtype %s since construction, now %s (make the "
                                "optimizer after model.to(dtype))" % (name, self._dtypes[i], p.dtype))
            if self._home[i] != self._rank:
                self._w[i] = self._g[i] = None
                continue
            g = self._grad_or_zero(i, p.grad, p)
            problems += _param_problems(name, g, shape, "gradient", self._device, dense_ok=True)
            if not problems:
                w, g = self._stage(i, p, g)
                self._w[i] = w.data_ptr()
                self._g[i] = g.data_ptr()
        # Row pieces of split blocks: pointers into the full (replicated) tensors; the full
        # gradient is here, so its finiteness decides the skip as in the single process.
        self._piece_args = {}
        for i, r0, r1 in self._my_pieces:
            name, shape, _ = self._lib.params[i]
            p = params[i]
            g = self._grad_or_zero(i, p.grad, p)
            problems += _param_problems(name, g, shape, "gradient", self._device, dense_ok=True)
            if problems:
                continue
            w, g = self._stage(i, p, g)
            off = p.element_size() * r0 * self._row_numel[i]
            self._piece_args[(i, r0)] = (i, r0, r1, w.data_ptr() + off, g.data_ptr() + off,
                                         int(not bool(torch.isfinite(g).all())))
        if problems:
            raise SymocError("%s: cannot step: %s" % (self._lib.path, "; ".join(problems)))

    def _stage(self, i, p, g):
        """The weight and gradient the library steps: p and g themselves when contiguous;
        for another axis order (channels_last, as `model.to(memory_format=...)` leaves conv
        weights) contiguous copies in the logical order, kept one per parameter, which the
        broadcast sends and _unstage writes back (symoc.torch does the same)."""
        if p.is_contiguous() and g.is_contiguous():
            return p, g
        c = _contiguous_pair(self._copies, i, p)
        c[0].copy_(p.detach())
        c[1].copy_(g)
        self._staged[i] = c
        return c

    def _unstage(self, params):
        """Writes this rank's stepped rows of staged parameters back into them: whole blocks
        whole, pieces their rows only (the other rows arrive by broadcast)."""
        for i in self._staged:
            w = self._staged[i][0]
            if self._home[i] == self._rank:
                params[i].detach().copy_(w)
            for j, r0, r1 in self._my_pieces:
                if j == i:
                    params[i].detach()[r0:r1].copy_(w[r0:r1])

    def _run(self, blocks, pieces):
        """Steps `blocks` (whole, step_blocks) and `pieces` ((param, r0, r1, weight pointer,
        gradient pointer, skip): rows, step_rows) of this rank with the library; returns the
        exception or None."""
        api, n = self._lib.api, len(self._names)
        try:
            for i, r0, r1, w, g, skip in pieces:
                if r1 > r0:
                    self._check(self._lib.step_rows(self._opt, i, r0, r1, w, g,
                                                    STEP_ROWS_SKIP if skip else 0),
                                "step_rows(%r, rows [%d, %d))" % (self._names[i], r0, r1))
        except Exception as e:  # noqa: BLE001 - shared with every rank by _agree
            return e
        if not blocks:
            return None
        arr = (ctypes.c_int32 * max(1, len(blocks)))(*blocks)
        try:
            if self._cuda:
                stream = ctypes.c_void_p(torch.cuda.current_stream(self._device).cuda_stream)
                self._step_cuda(lambda: api.step_cuda(self._opt, self._w, self._g, self._dt, n, arr,
                                                      len(blocks), stream), "step_cuda(blocks)")
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
        if self._schedule == "one_call":  # every block and piece of this rank, then the broadcasts
            mine = [b for b in self._buckets if b[0] == self._rank]
            t = time.perf_counter()
            failure = self._run([x for b in mine for x in b[1]],
                                [self._piece_args[(i, r0)] for b in mine for i, r0, _ in b[2]])
            step_s = time.perf_counter() - t
        for k, (root, blocks, pieces, ents, dt, numel) in enumerate(self._buckets):
            if root == self._rank:
                if failure is None and self._schedule == "buckets":
                    t = time.perf_counter()
                    failure = self._run(blocks, [self._piece_args[(i, r0)]
                                                 for i, r0, _ in pieces])
                    step_s += time.perf_counter() - t
                parts = [(self._staged[i][0] if i in self._staged else params[i].detach())
                         .view(-1)[a:a + m] for i, a, m in ents]
                flat = torch.cat(parts) if len(parts) > 1 else parts[0]
                sent += flat.numel() * flat.element_size()
            else:
                flat = self._flat.get(k)
                if flat is None:
                    flat = self._flat[k] = torch.empty(numel, dtype=dt, device=self._device)
                received += flat.numel() * flat.element_size()
            works.append((dist.broadcast(flat, src=_global_rank(self._group, root),
                                         group=self._group, async_op=True), root, ents, flat))
        for work, root, ents, flat in works:
            work.wait()
            if root == self._rank:
                continue
            at = 0
            for i, a, m in ents:
                _write_rows(params[i].detach(), a, m, self._row_numel[i], flat[at:at + m])
                at += m
        if failure is None:
            self._unstage(params)
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
            if lw.dtype != self._dtypes[i] or lg.dtype != self._dtypes[i]:
                problems.append("%r: local shards of dtype %s/%s (weight/gradient), the "
                                "parameter was %s at construction"
                                % (name, lw.dtype, lg.dtype, self._dtypes[i]))
            if not lg.is_contiguous() or not lw.is_contiguous():
                problems.append("%r: local shards must be contiguous (another axis order, "
                                "channels_last, steps in the replicated DDP layout only)" % name)
            if lg.device != self._device or lw.device != self._device:
                problems.append("%r: local shards on %s/%s, expected %s"
                                % (name, lw.device, lg.device, self._device))
            self._local_w.append(lw)
            self._local_g.append(lg)
        if problems:
            raise SymocError("%s: cannot step: %s" % (self._lib.path, "; ".join(problems)))
        # Parameters stepped on their shards: this rank's rows in place; the last entry (this
        # shard's gradient is not finite) is summed over the ranks by _agree.
        self._piece_args = [(i, r0, r1, self._local_w[i].data_ptr(),
                             self._local_g[i].data_ptr(),
                             int(not bool(torch.isfinite(self._local_g[i]).all())))
                            for i, r0, r1 in self._my_pieces]

    def _shard_numel(self, r, i):
        if self._replicated[i]:
            return 0
        return self._rows[r][i] * self._row_numel[i]

    def _shard_bytes(self, r, i):
        return self._shard_numel(r, i) * self._esize[i]

    def _gather_home(self):
        """all_to_all_single: each rank's rows of every parameter (weight then gradient) go to
        the parameter's home rank; the home assembles full tensors. Replicated parameters
        (Replicate() placement) are complete everywhere and need no transfer. The exchange
        runs in bytes, so float32 and bfloat16 parameters travel in one collective."""
        me, W = self._rank, self._world
        dev = self._comm_device()
        send, in_splits = [], []
        for d in range(W):
            n = 0
            for i in range(len(self._names)):
                if self._home[i] == d and not self._replicated[i]:
                    send += [_bytes_of(self._local_w[i]), _bytes_of(self._local_g[i])]
                    n += 2 * self._shard_bytes(me, i)
            in_splits.append(n)
        out_splits = [sum(2 * self._shard_bytes(s, i) for i in self._my_params) for s in range(W)]
        inp = torch.cat(send) if send else torch.zeros(0, dtype=torch.uint8, device=dev)
        out = torch.empty(sum(out_splits), dtype=torch.uint8, device=dev)
        dist.all_to_all_single(out, inp.to(dev), out_splits, in_splits, group=self._group)
        self._bytes_in = sum(out_splits) - out_splits[me]
        self._bytes_out = sum(in_splits) - in_splits[me]
        at = 0
        offs = {i: 0 for i in self._my_params}
        for s in range(W):
            for i in self._my_params:
                k = self._shard_bytes(s, i)
                fw, fg = _bytes_of(self._full_w[i]), _bytes_of(self._full_g[i])
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
        """The reverse all_to_all_single (in bytes): each home sends the updated rows back to
        their shards; replicated parameters are broadcast from their home."""
        me, W = self._rank, self._world
        dev = self._comm_device()
        send, in_splits = [], []
        for d in range(W):
            for i in self._my_params:
                if self._replicated[i]:
                    continue
                start = sum(self._rows[s][i] for s in range(d)) * self._row_numel[i]
                send.append(_bytes_of(
                    self._full_w[i].view(-1)[start:start + self._shard_numel(d, i)]))
            in_splits.append(sum(self._shard_bytes(d, i) for i in self._my_params))
        out_splits = [sum(self._shard_bytes(me, i) for i in range(len(self._names))
                          if self._home[i] == s) for s in range(W)]
        inp = torch.cat(send) if send else torch.zeros(0, dtype=torch.uint8, device=dev)
        out = torch.empty(sum(out_splits), dtype=torch.uint8, device=dev)
        dist.all_to_all_single(out, inp.to(dev), out_splits, in_splits, group=self._group)
        at = 0
        for s in range(W):
            for i in range(len(self._names)):
                if self._home[i] != s or self._replicated[i]:
                    continue
                k = self._shard_bytes(me, i)
                _bytes_of(self._local_w[i]).copy_(out[at:at + k])
                at += k
        sent = sum(in_splits) - in_splits[me] + self._bytes_out
        received = sum(out_splits) - out_splits[me] + self._bytes_in
        for i in range(len(self._names)):
            if not self._replicated[i]:
                continue
            buf = self._full_w[i] if self._home[i] == me else self._local_w[i]
            dist.broadcast(buf, src=_global_rank(self._group, self._home[i]), group=self._group)
            if self._home[i] == me:
                self._local_w[i].copy_(buf)
                sent += buf.numel() * buf.element_size()
            else:
                received += buf.numel() * buf.element_size()
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
                               "ranges": {n: list(v) for n, v in self._ranges.items()},
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
        states, groups, ranges = [], None, []
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
            ranges.append(_ranges_of(meta))
            groups = groups or sd.get("param_groups")
        if len(shards) == 1 and "symoc_dist" in shards[0]:
            meta = shards[0]["symoc_dist"]
            if meta.get("world_size") != self._world or sorted(meta.get("blocks", [])) != \
                    sorted(self._my_blocks) or _ranges_of(meta) != self._ranges:
                if meta.get("world_size", 1) > 1:
                    raise SymocError(
                        "DistributedSymocOptimizer.load_state_dict: one shard of a run at world "
                        "size %s holds blocks %s and rows %s, this rank needs %s and %s: pass "
                        "the list of every rank's state_dict (or use load_checkpoint) to "
                        "re-shard" % (meta.get("world_size"), meta.get("blocks"),
                                      _ranges_of(meta), self._my_blocks, self._ranges))
        self._load_states(states, groups, ranges)

    def _load_states(self, states, groups, ranges=None):
        merged = merge_states(states, self._names, ranges)
        steps = int(merged[2].get("__optimizer/steps", 0))
        mine = select_state(merged, self._names,
                            [self._names[i] for i in self._my_params] + list(self._ranges),
                            self._ranges)
        self._load_bytes(write_state(*mine))
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
            meta = {"format": "symoc-distributed-checkpoint", "version": 2,
                    "fingerprint": self.fingerprint, "policy": self.policy,
                    "world_size": self._world, "assignment": self._owner,
                    "ranges": [{n: list(v) for n, v in rs.items()} for rs in self._all_ranges],
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
        ranges = meta.get("ranges") or [{} for _ in states]      # version 1: none
        self._load_states(states, meta.get("param_groups"),
                          [_ranges_of({"ranges": r}) for r in ranges])

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


def _bytes_of(t):
    """A contiguous tensor's bytes as a flat uint8 view (collectives of mixed dtypes)."""
    return t.reshape(-1).view(torch.uint8)


def _dtype_problems(what, name, dtype, device):
    """float32 anywhere, bfloat16 on CUDA (the CPU runtime steps float32 only)."""
    if dtype == torch.float32 or (dtype == torch.bfloat16 and device.type == "cuda"):
        return []
    return ["%s %r: dtype %s, must be torch.float32%s"
            % (what, name, dtype, " or torch.bfloat16" if device.type == "cuda" else
               " (bfloat16 steps on CUDA parameters)")]


def _write_rows(p, a, m, row_numel, src):
    """p's flat logical entries [a, a + m) (whole rows) = src: in place when p is
    contiguous, by its rows otherwise (channels_last keeps its axis order)."""
    if p.is_contiguous():
        p.view(-1)[a:a + m].copy_(src)
    else:
        r0, r1 = a // row_numel, (a + m) // row_numel
        p[r0:r1].copy_(src.view((r1 - r0,) + tuple(p.shape[1:])))


def _param_problems(name, t, shape, what, device=None, dense_ok=False):
    """symoc.torch's checks on the tensor's own device, CPU or CUDA (the CUDA entry points
    take CUDA tensors): float32 or, on CUDA, bfloat16; with `device`, also that the tensor
    is there. dense_ok: another axis order (channels_last) is fine (stepped through copies)."""
    out = _tensor_problems(name, t, shape, what, t.device if t.device.type == "cuda" else None,
                           dense_ok=dense_ok)
    if device is not None and t.device != device:
        out.append("%s %r: on %s, the other parameters are on %s" % (what, name, t.device, device))
    return out
