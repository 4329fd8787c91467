#!/usr/bin/python3
"""Structure-aware fuzzing of `symoc analyze --verify`: semantic mutations of the fixtures.

Usage: fuzz_semantic.py --symoc PATH [--models DIR] [--count N] [--seed S] [--jobs J]
                        [--keep DIR] [--timeout T] [--fixtures a.onnx,b.onnx]
                        [--mutations classic|insert|all|positional|every]

Each case takes one fixture (models/*.onnx) and applies 1 to 3 mutations that keep the
file a valid protobuf but change what the graph computes: an op type swapped for another
of the same kind (unary, binary, reduction, softmax), an attribute changed (axis, perm,
keepdims, alpha, epsilon, ...), a node input rewired to an earlier value, an initializer's
dims changed (a row dropped or added), a node bypassed (its uses read its first input),
an integer constant changed (a Reshape target), the stored shapes (value_info) dropped;
with --mutations insert|all also a node inserted on a value (a unary op, or a binary op with
a per-channel, scalar or zero constant, or a full-shape one the same along random axes (a folded
broadcast; half the time one entry differs); insert_op); with --mutations positional|every a node
that depends on positions along an axis (CumSum, a roll, a reversal, a permuting or repeating
Gather, a zero-filled shift, a Transpose of equal axes, a Trilu, DepthToSpace then
SpaceToDepth; insert_positional).
Cases are drawn up front from random.Random(seed), so a run is reproducible for given
fixture bytes. Each case runs `symoc analyze CASE --verify --dim batch=3` (half of them
with --loss cross-entropy) and is classified:
  verified     exit 0, every emitted claim passed verify
  rejected     exit 1 with one `symoc: error: CASE: problem` line (import, analysis or
               the evaluator refused the graph)
  false-claim  verify FAILED an emitted claim (a claim that does not hold)
  crash        a signal, a timeout, another exit status
  blind        the negative control passed: verify says it cannot see a wrong transform
  unresolved   verify marked claims UNRESOLVED (they fail only within the rounding noise of a
               model that amplifies rounding past the tolerance; not used, not a problem)
               on this graph (counted, not a failure)
  unclear      exit 1 without the one-line error, or a message that leaks internals
               (std::, map::at, ...)
Prints the counts and every problem with its command line (the case file is kept under
--keep, default a temporary folder that is printed). Exits 1 when a crash, a false claim
or an unclear error was found.
"""
import argparse
import collections
import concurrent.futures
import copy
import os
import random
import re
import signal
import subprocess
import sys
import tempfile

try:
    import numpy as np
    import onnx
    from onnx import numpy_helper
except ImportError as ex:  # CI without the onnx package: skipped
    print("fuzz_semantic: skipped: %s" % ex)
    sys.exit(77)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The lit inputs' node splicing (one mechanism for both: nodes after a value's maker, its
# later readers rewired).
sys.path.insert(0, os.path.join(REPO, "tests", "lit", "Inputs"))
from onnx_splice import splice as _splice  # noqa: E402

UNARY = ["Relu", "Tanh", "Sigmoid", "Neg", "Abs", "Exp", "Identity", "Erf", "Softsign",
         "Sin", "Cos", "Sqrt", "Reciprocal", "LeakyRelu", "Elu", "Softplus", "Floor"]
BINARY = ["Add", "Sub", "Mul", "Div", "Max", "Min", "Pow"]
REDUCE = ["ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceL2", "ReduceProd"]
SOFTMAX = ["Softmax", "LogSoftmax", "Hardmax"]
CLASSES = [UNARY, BINARY, REDUCE, SOFTMAX]
LEAKS = ("std::", "map::at", "_M_", "basic_string", "vector::", "stoll", "stoi",
         "bad_alloc", "Assertion", "terminate called", "llvm::", "mlir::")


# --------------------------------------------------------------------------- mutations
def values_before(g, i):
    vals = [v.name for v in g.input] + [t.name for t in g.initializer]
    for n in g.node[:i]:
        vals += [o for o in n.output if o]
    return vals


def op_swap(m, rng):
    g = m.graph
    cands = [(i, cls) for i, n in enumerate(g.node) for cls in CLASSES if n.op_type in cls]
    if not cands:
        return None
    i, cls = rng.choice(cands)
    n = g.node[i]
    new = rng.choice([o for o in cls if o != n.op_type])
    old = n.op_type
    n.op_type = new
    if cls in (UNARY, BINARY):
        del n.attribute[:]
    return f"node {n.name or n.output[0]}: {old} -> {new}"


def clamp64(v):
    return max(min(v, 2**63 - 1), -2**63)


def attr_change(m, rng):
    g = m.graph
    cands = [(i, j) for i, n in enumerate(g.node) for j, a in enumerate(n.attribute)
             if a.type in (onnx.AttributeProto.INT, onnx.AttributeProto.INTS,
                           onnx.AttributeProto.FLOAT)]
    if not cands:
        return None
    i, j = rng.choice(cands)
    n, a = g.node[i], g.node[i].attribute[j]
    if a.type == onnx.AttributeProto.INT:
        old = a.i
        a.i = clamp64(rng.choice([old + 1, old - 1, -old, 0, 1, -1, 2]))
        return f"node {n.name or n.output[0]} ({n.op_type}): {a.name} {old} -> {a.i}"
    if a.type == onnx.AttributeProto.FLOAT:
        old = a.f
        a.f = old * rng.choice([0.0, -1.0, 10.0, 0.5, 1e6])
        return f"node {n.name or n.output[0]} ({n.op_type}): {a.name} {old} -> {a.f}"
    old = list(a.ints)
    new = list(old)
    what = rng.choice(["shuffle", "drop", "bump", "add"])
    if what == "shuffle" and len(new) > 1:
        rng.shuffle(new)
    elif what == "drop" and new:
        new.pop(rng.randrange(len(new)))
    elif what == "bump" and new:
        k = rng.randrange(len(new))
        new[k] = clamp64(new[k] + rng.choice([-1, 1]))  # INT64_MAX ends stay in range
    else:
        new.append(rng.choice([0, 1, -1]))
    del a.ints[:]
    a.ints.extend(new)
    return f"node {n.name or n.output[0]} ({n.op_type}): {a.name} {old} -> {new}"


def rewire(m, rng, shapes):
    """Mostly to a value of the same type and shape (so the graph still runs and claims
    are made and checked), sometimes to any earlier value."""
    g = m.graph
    cands = [(i, j) for i, n in enumerate(g.node) for j, x in enumerate(n.input)
             if x and n.op_type != "Constant"]
    if not cands:
        return None
    i, j = rng.choice(cands)
    vals = [v for v in values_before(g, i) if v != g.node[i].input[j]]
    same = [v for v in vals if shapes.get(v) is not None
            and shapes.get(v) == shapes.get(g.node[i].input[j])]
    if same and rng.random() < 0.75:
        vals = same
    if not vals:
        return None
    n = g.node[i]
    old = n.input[j]
    n.input[j] = rng.choice(vals)
    return f"node {n.name or n.output[0]} ({n.op_type}): input {j} {old} -> {n.input[j]}"


def init_dims(m, rng):
    g = m.graph
    cands = [k for k, t in enumerate(g.initializer)
             if t.data_type == onnx.TensorProto.FLOAT and len(t.dims) >= 1]
    if not cands:
        return None
    t = g.initializer[rng.choice(cands)]
    a = numpy_helper.to_array(t)
    axis = rng.randrange(a.ndim)
    if a.shape[axis] > 1 and rng.random() < 0.5:
        b = np.delete(a, a.shape[axis] - 1, axis=axis)
    else:
        pad = np.take(a, [0], axis=axis)
        b = np.concatenate([a, pad * 0.5], axis=axis)
    t.CopyFrom(numpy_helper.from_array(b.astype(a.dtype), t.name))
    return f"initializer {t.name}: {list(a.shape)} -> {list(b.shape)}"


def bypass(m, rng):
    g = m.graph
    outs = {o.name for o in g.output}
    cands = [i for i, n in enumerate(g.node)
             if n.input and n.input[0] and len(n.output) == 1 and n.output[0] not in outs
             and n.op_type != "Constant"]
    if not cands:
        return None
    i = rng.choice(cands)
    n = g.node[i]
    src, dst = n.input[0], n.output[0]
    for other in g.node:
        for k, x in enumerate(other.input):
            if x == dst:
                other.input[k] = src
    desc = f"node {n.name or dst} ({n.op_type}) bypassed"
    del g.node[i]
    return desc


def const_change(m, rng):
    g = m.graph
    cands = [("init", t) for t in g.initializer
             if t.data_type == onnx.TensorProto.INT64 and 0 < int(np.prod(t.dims or [1])) <= 8]
    for n in g.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value" and a.t.data_type == onnx.TensorProto.INT64 and \
                        0 < int(np.prod(a.t.dims or [1])) <= 8:
                    cands.append(("const", a.t))
    if not cands:
        return None
    _, t = rng.choice(cands)
    a = numpy_helper.to_array(t).copy()
    flat = a.reshape(-1)
    k = rng.randrange(flat.size)
    old = flat.tolist()
    what = rng.choice(["minus1", "double", "swap", "zero", "half"])
    if what == "minus1":
        flat[k] = -1
    elif what == "double":
        flat[k] *= 2
    elif what == "zero":
        flat[k] = 0
    elif what == "half":
        flat[k] //= 2
    elif flat.size > 1:
        j = rng.randrange(flat.size)
        flat[k], flat[j] = flat[j], flat[k]
    t.CopyFrom(numpy_helper.from_array(a, t.name))
    return f"int64 constant {t.name or '(Constant)'}: {old} -> {flat.tolist()}"


def drop_value_info(m, rng):
    if not m.graph.value_info:
        return None
    del m.graph.value_info[:]
    return "value_info dropped"


INSERT_BINARY = ["Add", "Sub", "Mul", "Div", "Max", "Min"]


def _float_values(g, shapes, extra=lambda dims: True):
    """(node index, value) for every float value with static positive dims that a later
    node may read (not a graph output, not a Constant's)."""
    outs = {o.name for o in g.output}
    return [(i, v) for i, n in enumerate(g.node) if n.op_type != "Constant" for v in n.output
            if v and v not in outs and shapes.get(v) and shapes[v][0] == onnx.TensorProto.FLOAT
            and shapes[v][1] and all(isinstance(d, int) and d > 0 for d in shapes[v][1])
            and extra(shapes[v][1])]


def insert_op(m, rng, shapes):
    """A new node on a float value V that later nodes then read instead of V: a unary op, or
    a binary op with a constant that is per channel (one value per entry of an axis, not all
    equal), a scalar, or zero (an additive identity that keeps no gauge fixed). The constant
    is a Constant node (fixed) or, sometimes, an initializer (a new parameter). Targets the
    rules' treatment of constants that break (or keep) a permutation, a scale or a sign."""
    g = m.graph
    cands = _float_values(g, shapes)
    if not cands:
        return None
    i, v = rng.choice(cands)
    dims = shapes[v][1]
    new_v = f"{v}__fz{rng.randrange(1 << 30)}"
    nodes = []
    if rng.random() < 0.35:
        op = rng.choice(UNARY)
        nodes.append(onnx.helper.make_node(op, [v], [new_v], name=new_v))
        desc = f"{op} inserted on {v}"
    else:
        op = rng.choice(INSERT_BINARY)
        shape_kind = rng.choice(["channel", "channel", "scalar", "zero", "expanded"])
        if shape_kind == "expanded" and (not all(isinstance(d, int) and d > 0 for d in dims)
                                         or int(np.prod(dims)) > (1 << 16)):
            shape_kind = "scalar"
        if shape_kind == "expanded":
            # A broadcast folded into the file: the value's whole shape, the same along a
            # random set of axes; half the time one entry differs (then along none).
            keep = [d if rng.random() < 0.5 else 1 for d in dims]
            vals = np.asarray([rng.uniform(0.5, 2.0) for _ in range(int(np.prod(keep or [1])))],
                              dtype=np.float32).reshape(keep)
            c = np.broadcast_to(vals, dims).astype(np.float32).copy()
            if c.size > 1 and rng.random() < 0.5:
                c.flat[rng.randrange(c.size)] *= 3.0
        elif shape_kind == "channel":
            axis = rng.randrange(len(dims))
            cshape = [1] * (len(dims) - axis)  # broadcast from the right: axis .. last
            cshape[0] = dims[axis]
            c = np.asarray([rng.uniform(0.5, 2.0) for _ in range(dims[axis])], dtype=np.float32)
            if c.size > 1:
                c[rng.randrange(c.size)] *= 3.0  # surely not uniform
            c = c.reshape(cshape)
        elif shape_kind == "scalar":
            c = np.asarray(rng.choice([0.5, 2.0, -1.0, 3.0]), dtype=np.float32)
        else:
            c = np.zeros([1], dtype=np.float32)
        cname = new_v + "_c"
        if rng.random() < 0.25:
            g.initializer.append(numpy_helper.from_array(c, cname))
            where = "initializer"
        else:
            nodes.append(onnx.helper.make_node("Constant", [], [cname], name=cname,
                                               value=numpy_helper.from_array(c, cname)))
            where = "Constant"
        ins = [v, cname] if rng.random() < 0.7 else [cname, v]
        nodes.append(onnx.helper.make_node(op, ins, [new_v], name=new_v))
        desc = f"{op} with a {shape_kind} {where} {list(c.shape)} inserted on {v}"
    _splice(g, i, v, new_v, nodes)
    return desc


def _int64_const(name, values):
    arr = np.asarray(values, dtype=np.int64)
    return onnx.helper.make_node("Constant", [], [name], name=name, value=numpy_helper.from_array(arr, name))


def insert_positional(m, rng, shapes):
    """A new node on a float value V that depends on positions along one axis: a cumulative sum,
    a fixed permutation (a roll, a reversal, a Gather with a permuted index), a Gather that
    repeats one position and drops another, a shift with a zero filled in (Pad, then Slice), or
    a Transpose of two axes of equal size. Later nodes read its result instead of V. Targets
    the rules that follow positions (a claimed permutation of hidden units must either follow
    a fixed permutation or stop at an order-dependent op)."""
    opset = [o.version for o in m.opset_import if o.domain in ("", "ai.onnx")]
    if not opset or opset[0] < 13:
        return None
    g = m.graph
    cands = _float_values(g, shapes, lambda dims: any(d >= 2 for d in dims))
    if not cands:
        return None
    i, v = rng.choice(cands)
    dims = list(shapes[v][1])
    axis = rng.choice([k for k, d in enumerate(dims) if d >= 2])
    n = dims[axis]
    tag = f"{v}__fp{rng.randrange(1 << 30)}"
    new_v = tag
    nodes = []
    kinds = ["cumsum", "roll", "reverse", "gather_perm", "gather_dup", "shift"]
    square = [(a, b) for a in range(len(dims)) for b in range(a + 1, len(dims)) if dims[a] == dims[b] >= 2]
    if square:
        kinds.append("transpose")
    if len(dims) >= 2:
        kinds.append("trilu")
    if len(dims) == 4 and dims[1] % 4 == 0:
        kinds.append("depth_space")
    kind = rng.choice(kinds)
    ax = [axis]
    if kind == "cumsum":
        nodes.append(_int64_const(tag + "_ax", axis))
        nodes.append(onnx.helper.make_node("CumSum", [v, tag + "_ax"], [new_v], name=new_v,
                                           exclusive=rng.randrange(2), reverse=rng.randrange(2)))
        desc = f"CumSum on axis {axis} of {v}"
    elif kind == "roll":
        k = rng.randrange(1, n)
        for nm, vals in (("_a", ax), ("_k", [k]), ("_n", [n]), ("_z", [0])):
            nodes.append(_int64_const(tag + nm, vals))
        nodes.append(onnx.helper.make_node("Slice", [v, tag + "_k", tag + "_n", tag + "_a"], [tag + "_hi"],
                                           name=tag + "_hi"))
        nodes.append(onnx.helper.make_node("Slice", [v, tag + "_z", tag + "_k", tag + "_a"], [tag + "_lo"],
                                           name=tag + "_lo"))
        nodes.append(onnx.helper.make_node("Concat", [tag + "_hi", tag + "_lo"], [new_v], name=new_v, axis=axis))
        desc = f"roll by {k} on axis {axis} of {v}"
    elif kind == "reverse":
        for nm, vals in (("_a", ax), ("_s", [-1]), ("_e", [-(n + 1)]), ("_st", [-1])):
            nodes.append(_int64_const(tag + nm, vals))
        nodes.append(onnx.helper.make_node("Slice", [v, tag + "_s", tag + "_e", tag + "_a", tag + "_st"], [new_v],
                                           name=new_v))
        desc = f"reversal of axis {axis} of {v}"
    elif kind in ("gather_perm", "gather_dup"):
        idx = list(range(n))
        if kind == "gather_perm":
            while idx == list(range(n)):
                rng.shuffle(idx)
        else:
            a, b = rng.sample(range(n), 2)
            idx[b] = idx[a]
        nodes.append(_int64_const(tag + "_i", idx))
        nodes.append(onnx.helper.make_node("Gather", [v, tag + "_i"], [new_v], name=new_v, axis=axis))
        desc = f"Gather ({'a permutation' if kind == 'gather_perm' else 'one position repeated'}) on axis {axis} of {v}"
    elif kind == "shift":
        pads = [0] * (2 * len(dims))
        pads[axis] = 1
        nodes.append(_int64_const(tag + "_p", pads))
        nodes.append(onnx.helper.make_node("Pad", [v, tag + "_p"], [tag + "_pad"], name=tag + "_pad"))
        for nm, vals in (("_a", ax), ("_z", [0]), ("_n", [n])):
            nodes.append(_int64_const(tag + nm, vals))
        nodes.append(onnx.helper.make_node("Slice", [tag + "_pad", tag + "_z", tag + "_n", tag + "_a"], [new_v],
                                           name=new_v))
        desc = f"shift by one (zero filled) on axis {axis} of {v}"
    elif kind == "trilu":
        k = rng.randrange(-1, 2)
        nodes.append(_int64_const(tag + "_k", k))
        nodes.append(onnx.helper.make_node("Trilu", [v, tag + "_k"], [new_v], name=new_v, upper=rng.randrange(2)))
        desc = f"Trilu (k {k}) on the last two axes of {v}"
    elif kind == "depth_space":
        # DepthToSpace then SpaceToDepth, block 2: the identity for DCR, a fixed permutation of
        # the channels for CRD.
        mode = rng.choice(["DCR", "CRD"])
        nodes.append(onnx.helper.make_node("DepthToSpace", [v], [tag + "_d2s"], name=tag + "_d2s", blocksize=2,
                                           mode=mode))
        nodes.append(onnx.helper.make_node("SpaceToDepth", [tag + "_d2s"], [new_v], name=new_v, blocksize=2))
        desc = f"DepthToSpace ({mode}) then SpaceToDepth on {v}"
    else:
        a, b = rng.choice(square)
        perm = list(range(len(dims)))
        perm[a], perm[b] = b, a
        nodes.append(onnx.helper.make_node("Transpose", [v], [new_v], name=new_v, perm=perm))
        desc = f"Transpose of axes {a} and {b} (size {dims[a]}) of {v}"
    _splice(g, i, v, new_v, nodes)
    return desc


# The original draw (fixed seeds of earlier campaigns stay reproducible); --mutations
# all / insert adds the insertion.
MUTATIONS = [op_swap, attr_change, rewire, init_dims, bypass, const_change, drop_value_info]
WEIGHTS = [3, 3, 4, 2, 3, 2, 1]
EXTRA = {"insert": (insert_op, 4)}
POSITIONAL = (insert_positional, 4)  # not in "all": its seeds keep their draw


def value_shapes(model):
    """(elem_type, dims) of every value ONNX's shape inference knows in the fixture."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 (a fixture ONNX cannot infer: no shape-aware rewiring)
        return {}
    shapes = {}
    g = inferred.graph
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        tt = vi.type.tensor_type
        if tt.HasField("shape"):
            shapes[vi.name] = (tt.elem_type, tuple(d.dim_value if d.HasField("dim_value")
                                                   else d.dim_param for d in tt.shape.dim))
    for t in g.initializer:
        shapes[t.name] = (t.data_type, tuple(t.dims))
    return shapes


def mutate(model, shapes, rng, kinds=(MUTATIONS, WEIGHTS)):
    m = copy.deepcopy(model)
    done = []
    for _ in range(rng.choice([1, 1, 2, 3])):
        for _attempt in range(8):
            f = rng.choices(*kinds)[0]
            d = f(m, rng, shapes) if f in (rewire, insert_op, insert_positional) else f(m, rng)
            if d:
                done.append(d)
                break
    return m, done


# --------------------------------------------------------------------------- classification
def classify(cmd, path, timeout):
    try:
        p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=timeout)
    except subprocess.TimeoutExpired:
        return "crash", f"timeout after {timeout} s"
    out = p.stdout.decode("utf-8", "replace")
    err = p.stderr.decode("utf-8", "replace")
    # Notes and the --json "wrote FILE" line are not errors.
    lines = [l for l in err.split("\n") if l and not l.startswith("symoc: note: ")
             and not l.startswith("symoc: wrote ")]
    if p.returncode < 0:
        try:
            name = signal.Signals(-p.returncode).name
        except ValueError:
            name = str(-p.returncode)
        return "crash", f"signal {name}: {lines[-1][:200] if lines else ''}"
    fails = [l for l in out.split("\n") if l.startswith("FAIL ")]
    if "CONTROL-PASSED(bad)" in out and not fails:
        # Reported as such (verify cannot see a wrong transform on this graph, e.g. its
        # outputs are dominated by huge values): not a false claim, not a crash.
        return "blind", next(l for l in out.split("\n") if l.startswith("CONTROL-PASSED"))[:200]
    if p.returncode == 0:
        if lines:
            return "unclear", f"exit 0 with stderr: {lines[0][:200]}"
        return "verified", ""
    if p.returncode == 1 and fails:
        return "false-claim", "; ".join(f[:160] for f in fails[:3])
    unresolved = [l for l in out.split("\n") if l.startswith("UNRESOLVED ")]
    if p.returncode == 1 and unresolved:
        return "unresolved", "; ".join(f[:160] for f in unresolved[:3])
    if p.returncode == 1:
        prefix = f"symoc: error: {path}: "
        if len(lines) == 1 and lines[0].startswith(prefix) and len(lines[0]) > len(prefix):
            msg = lines[0][len(prefix):]
            if any(x in msg for x in LEAKS):
                return "unclear", msg[:200]
            return "rejected", msg[:200]
        return "unclear", f"exit 1, stderr {len(lines)} line(s): {err[-300:]!r}"
    return "crash", f"exit {p.returncode}: {err[-300:]!r}"


def reason_key(detail):
    """A short key for counting rejection reasons."""
    return re.sub(r"'[^']*'|\"[^\"]*\"|\[[^\]]*\]|\d+", "_", detail)[:70]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--symoc", required=True)
    ap.add_argument("--models", default=os.path.join(REPO, "models"))
    ap.add_argument("--fixtures", help="comma-separated fixture file names (default: all)")
    ap.add_argument("--count", type=int, default=60)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=120)
    ap.add_argument("--keep", help="folder for the cases that found a problem")
    ap.add_argument("--verbose", action="store_true", help="print every case")
    ap.add_argument("--mutations", choices=["classic", "insert", "all", "positional", "every"],
                    default="classic",
                    help="classic: the original seven (default; earlier seeds reproduce), "
                         "insert: only new nodes on values, all: both, positional: only "
                         "order-dependent nodes on values (insert_positional), every: all three")
    args = ap.parse_args()
    kinds = (MUTATIONS, WEIGHTS)
    if args.mutations == "insert":
        kinds = ([insert_op], [1])
    elif args.mutations in ("all", "every"):
        kinds = (MUTATIONS + [f for f, _ in EXTRA.values()], WEIGHTS + [w for _, w in EXTRA.values()])
        if args.mutations == "every":
            kinds = (kinds[0] + [POSITIONAL[0]], kinds[1] + [POSITIONAL[1]])
    elif args.mutations == "positional":
        kinds = ([insert_positional], [1])

    names = sorted(f for f in os.listdir(args.models) if f.endswith(".onnx"))
    if args.fixtures:
        names = [n for n in names if n in args.fixtures.split(",")]
    if not names:
        print(f"fuzz_semantic: no .onnx under {args.models}; skipped")
        return 77
    sources = {n: onnx.load(os.path.join(args.models, n)) for n in names}
    shapes = {n: value_shapes(m) for n, m in sources.items()}
    rng = random.Random(args.seed)
    work = tempfile.mkdtemp(prefix="symoc-semfuzz-")
    keep = args.keep or work

    cases = []
    for i in range(args.count):
        name = rng.choice(names)
        m, what = mutate(sources[name], shapes[name], rng, kinds)
        path = os.path.join(work, f"case{i:05d}-{name}")
        onnx.save(m, path)
        extra = ["--loss", "cross-entropy"] if rng.random() < 0.5 else []
        cmd = [args.symoc, "analyze", path, "--verify", "--dim", "batch=3"] + extra
        cases.append((i, path, name, what, cmd))

    def run(case):
        i, path, name, what, cmd = case
        kind, detail = classify(cmd, path, args.timeout)
        return i, path, name, what, cmd, kind, detail

    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        results = list(pool.map(run, cases))

    kinds = collections.Counter(r[5] for r in results)
    problems = [r for r in results if r[5] in ("crash", "false-claim", "unclear")]
    if args.verbose:
        for i, path, name, what, cmd, kind, detail in results:
            print(f"  case {i} {name} [{'; '.join(what)}]: {kind} {detail}")
    reasons = collections.Counter(reason_key(r[6]) for r in results if r[5] == "rejected")
    print(f"fuzz_semantic: {args.count} mutated fixtures (seed {args.seed}): "
          f"{kinds['verified']} verified, {kinds['rejected']} rejected, "
          f"{kinds['false-claim']} false claims, {kinds['crash']} crashes, "
          f"{kinds['unclear']} unclear errors, {kinds['blind']} blind (control passed), "
          f"{kinds['unresolved']} unresolved (rounding-bound)")
    for key, n in reasons.most_common(8):
        print(f"  rejected x{n}: {key}")
    if problems:
        os.makedirs(keep, exist_ok=True)
        print(f"PROBLEMS (cases kept in {keep}):")
        for i, path, name, what, cmd, kind, detail in problems:
            dest = os.path.join(keep, os.path.basename(path))
            if dest != path:
                os.replace(path, dest)
            cmd = [dest if c == path else c for c in cmd]
            print(f"  {kind.upper()} case {i} ({name}: {'; '.join(what)})\n"
                  f"    {detail}\n    repro: {' '.join(cmd)}")
    for r in results:
        if r[5] not in ("crash", "false-claim", "unclear") and os.path.exists(r[1]):
            os.remove(r[1])
    if not args.keep and not os.listdir(work):
        os.rmdir(work)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
