#!/usr/bin/python3
"""Independent check of `symoc analyze --json` claims on an ONNX model (binary or text).

Usage: apply_claims.py MODEL(.onnx|.onnxtxt) CLAIMS.json [--trials N] [--quiet]

Reads the claims document the way an external tool would (docs/symmetry-schema.md):
linear claims (members with initializer/axis/offset/extent/stride/variance; groups S, B,
Z2, O, GL, Scale+, heads, rope), whole-tensor `scale` claims and `shift` claims (compared
after a softmax over the output axis when the claim names an output). It draws random
elements (never the identity), applies them to the initializers with numpy and runs the
model with its own numpy interpreter (this file plus tests/python/onnx_numpy.py, both
written from the ONNX operator specification): no symoc code is involved.

Tolerances: an exact claim must keep every output to a relative error of 1e-9 (float64).
A claim with "exact": false is run on a copy of the model whose LayerNormalization,
BatchNormalization and InstanceNormalization nodes, and written-out epsilons (an
Add(ReduceMean(..), c <= 1e-3) read only by Sqrt or Pow), have epsilon 0, to 1e-9; when that
does not hold (a normalization written out keeps its epsilon) it is judged at the model's
epsilon to 1e-3. Prints one line per claim, "ok ID err" or "BAD ID err", and exits 1 if
any claim fails.
"""
import argparse
import json
import math
import os
import sys

import numpy as np
import onnx
import onnx.parser
from onnx import helper, numpy_helper

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "..", "..", "python"))
import onnx_numpy  # noqa: E402

TOL_EXACT, TOL_APPROX = 1e-9, 1e-3


# ------------------------------------------------------------------ interpreter
def _axes_arg(node_attrs, ins, opset, k=1):
    if "axes" in node_attrs:
        return list(node_attrs["axes"])
    if len(ins) > k and ins[k] is not None:
        return [int(v) for v in np.asarray(ins[k]).reshape(-1)]
    return None


def _reduce(fn, x, axes, keep):
    axes = tuple(range(x.ndim)) if axes is None else tuple(int(a) % x.ndim for a in axes)
    return fn(x, axis=axes, keepdims=keep)


def _node(node, ins, a, opset):
    """The ops onnx_numpy does not know (or knows only in part)."""
    op = node.op_type
    x = ins[0] if ins else None
    unary = {"Cos": np.cos, "Sin": np.sin, "Exp": np.exp, "Log": np.log, "Abs": np.abs,
             "Reciprocal": lambda v: 1.0 / v, "Floor": np.floor, "Ceil": np.ceil,
             "Sign": np.sign, "Softsign": lambda v: v / (1 + np.abs(v)),
             "Softplus": lambda v: np.log1p(np.exp(v)), "Identity": lambda v: v,
             "Not": np.logical_not, "Round": np.round, "Atan": np.arctan, "Asin": np.arcsin,
             "Sinh": np.sinh, "Tan": np.tan, "Neg": np.negative,
             "Mish": lambda v: v * np.tanh(np.log1p(np.exp(v))),
             "HardSwish": lambda v: v * np.clip(v / 6.0 + 0.5, 0.0, 1.0)}
    if op in unary:
        return [unary[op](x)]
    if op == "Gelu":
        return [0.5 * x * (1 + onnx_numpy._erf(x / math.sqrt(2)))]
    if op == "RMSNormalization":  # opset 23: over the axes from `axis` on, times the scale
        ax = a.get("axis", -1) % x.ndim
        ms = np.mean(x * x, axis=tuple(range(ax, x.ndim)), keepdims=True)
        return [x / np.sqrt(ms + a.get("epsilon", 1e-5)) * ins[1]]
    if op == "GroupNormalization":  # scale and bias per group before opset 21, per channel since
        gr, shp = a["num_groups"], x.shape
        t = x.reshape(shp[0], gr, -1)
        mu = t.mean(-1, keepdims=True)
        var = ((t - mu) ** 2).mean(-1, keepdims=True)
        y = ((t - mu) / np.sqrt(var + a.get("epsilon", 1e-5))).reshape(shp)
        sc, bi = ins[1], ins[2]
        if opset < 21:
            sc, bi = np.repeat(sc, shp[1] // gr), np.repeat(bi, shp[1] // gr)
        tail = (1,) * (len(shp) - 2)
        return [y * sc.reshape((-1,) + tail) + bi.reshape((-1,) + tail)]
    if op == "Attention":  # opsets 23/24, Y only; 3-D inputs split into heads
        q, k, v = ins[:3]
        mask = ins[3] if len(ins) > 3 and ins[3] is not None else None
        if len(node.output) > 1 and any(node.output[1:]) or len(ins) > 4 and any(
                t is not None for t in ins[4:]):
            raise NotImplementedError("Attention with a KV cache or extra outputs")
        three = q.ndim == 3
        if three:
            hq, hk = a["q_num_heads"], a["kv_num_heads"]
            split = lambda t, h: t.reshape(t.shape[0], t.shape[1], h, -1).transpose(0, 2, 1, 3)
            q, k, v = split(q, hq), split(k, hk), split(v, hk)
        y = onnx_numpy.attention_ref(q, k, v, a.get("scale"), bool(a.get("is_causal", 0)),
                                     mask, a.get("softcap", 0.0))
        if three:
            y = y.transpose(0, 2, 1, 3).reshape(y.shape[0], y.shape[2], -1)
        return [y]
    if op == "RotaryEmbedding":  # opset 23: caches [P, rd/2] with position ids
        if len(ins) < 4 or ins[3] is None:
            raise NotImplementedError("RotaryEmbedding without position_ids")
        three, shp = x.ndim == 3, x.shape
        t = x.reshape(shp[0], shp[1], a["num_heads"], -1).transpose(0, 2, 1, 3) if three else x
        rd = a.get("rotary_embedding_dim", 0) or t.shape[-1]
        y = onnx_numpy.rotary_ref(t, ins[1], ins[2], ins[3].astype(np.int64),
                                  bool(a.get("interleaved", 0)), rd)
        return [y.transpose(0, 2, 1, 3).reshape(shp) if three else y]
    if op == "Dropout":  # at inference: the identity (and an all-true mask)
        return [x, np.ones(x.shape, bool)]
    if op == "PRelu":
        return [np.where(x >= 0, x, ins[1] * x)]
    if op == "HardSigmoid":
        return [np.clip(a.get("alpha", 0.2) * x + a.get("beta", 0.5), 0.0, 1.0)]
    if op in ("Elu", "Celu", "Selu"):
        al = a.get("alpha", {"Elu": 1.0, "Celu": 1.0, "Selu": 1.67326319217681884765625}[op])
        if op == "Celu":
            return [np.maximum(0.0, x) + np.minimum(0.0, al * (np.exp(x / al) - 1.0))]
        y = np.where(x >= 0, x, al * (np.exp(x) - 1.0))
        return [y * a.get("gamma", 1.05070102214813232421875) if op == "Selu" else y]
    if op == "ThresholdedRelu":
        return [np.where(x > a.get("alpha", 1.0), x, 0.0)]
    if op == "LeakyRelu":
        return [np.where(x >= 0, x, a.get("alpha", 0.01) * x)]
    if op in ("Min", "Max", "Sum", "Mean"):
        f = {"Min": np.minimum, "Max": np.maximum, "Sum": np.add, "Mean": np.add}[op]
        out = ins[0]
        for y in ins[1:]:
            out = f(out, y)
        return [out / len(ins) if op == "Mean" else out]
    if op in ("Less", "Greater", "LessOrEqual", "GreaterOrEqual", "And", "Or"):
        f = {"Less": np.less, "Greater": np.greater, "LessOrEqual": np.less_equal,
             "GreaterOrEqual": np.greater_equal, "And": np.logical_and, "Or": np.logical_or}[op]
        return [f(x, ins[1])]
    if op == "Squeeze":
        axes = _axes_arg(a, ins, opset)
        return [np.squeeze(x, axis=None if axes is None else tuple(int(v) % x.ndim for v in axes))]
    if op == "Flatten":
        ax = a.get("axis", 1) % (x.ndim + 1) if x.ndim else 0
        return [x.reshape(int(np.prod(x.shape[:ax], dtype=np.int64)), -1)]
    if op == "Tile":
        return [np.tile(x, tuple(int(v) for v in ins[1]))]
    if op == "Range":
        return [np.arange(ins[0], ins[1], ins[2]).astype(np.asarray(ins[0]).dtype)]
    if op == "Trilu":
        k = int(ins[1]) if len(ins) > 1 and ins[1] is not None else 0
        return [np.triu(x, k) if a.get("upper", 1) else np.tril(x, k)]
    if op in ("ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd",
              "ReduceL2", "ReduceSumSquare", "ReduceLogSumExp"):
        axes = _axes_arg(a, ins, opset)
        keep = bool(a.get("keepdims", 1))
        if not axes and a.get("noop_with_empty_axes", 0):  # absent or empty: the identity
            return [x]
        if axes == []:
            axes = None
        fn = {"ReduceMean": np.mean, "ReduceSum": np.sum, "ReduceMax": np.max,
              "ReduceMin": np.min, "ReduceProd": np.prod,
              "ReduceL2": lambda v, axis, keepdims: np.sqrt(np.sum(v * v, axis=axis, keepdims=keepdims)),
              "ReduceSumSquare": lambda v, axis, keepdims: np.sum(v * v, axis=axis, keepdims=keepdims),
              "ReduceLogSumExp": lambda v, axis, keepdims: np.log(np.sum(np.exp(v), axis=axis,
                                                                        keepdims=keepdims))}[op]
        return [_reduce(fn, x, axes, keep)]
    if op in ("Softmax", "LogSoftmax"):
        ax = a.get("axis", 1 if opset < 13 else -1)
        if opset < 13:
            shp = x.shape
            x2 = x.reshape(int(np.prod(shp[:ax % x.ndim])), -1)
            y = onnx_numpy._softmax(x2, -1).reshape(shp)
        else:
            y = onnx_numpy._softmax(x, ax)
        return [np.log(y) if op == "LogSoftmax" else y]
    if op in ("GlobalAveragePool", "GlobalMaxPool"):
        f = np.mean if op == "GlobalAveragePool" else np.max
        return [f(x, axis=tuple(range(2, x.ndim)), keepdims=True)]
    if op in ("MaxPool", "AveragePool"):
        k = a["kernel_shape"]
        st = a.get("strides", [1] * len(k))
        pads = a.get("pads", [0] * (2 * len(k)))
        if len(k) != 2:
            raise NotImplementedError("pooling rank")
        fill = -np.inf if op == "MaxPool" else 0.0
        xp = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])), constant_values=fill)
        oh = (xp.shape[2] - k[0]) // st[0] + 1
        ow = (xp.shape[3] - k[1]) // st[1] + 1
        win = np.stack([xp[:, :, i:i + st[0] * oh:st[0], j:j + st[1] * ow:st[1]]
                        for i in range(k[0]) for j in range(k[1])], 0)
        if op == "MaxPool":
            return [win.max(0)]
        if a.get("count_include_pad", 0) or not any(pads):
            return [win.mean(0)]
        ones = np.pad(np.ones(x.shape[2:]), ((pads[0], pads[2]), (pads[1], pads[3])))
        cnt = np.stack([ones[i:i + st[0] * oh:st[0], j:j + st[1] * ow:st[1]]
                        for i in range(k[0]) for j in range(k[1])], 0).sum(0)
        return [win.sum(0) / cnt]
    if op == "Conv" and (a.get("group", 1) != 1):
        g = a["group"]
        xs = np.split(x, g, axis=1)
        ws = np.split(ins[1], g, axis=0)
        a2 = dict(a)
        a2["group"] = 1
        ys = [onnx_numpy._conv(xi, wi, None, a2) for xi, wi in zip(xs, ws)]
        y = np.concatenate(ys, axis=1)
        return [y + ins[2].reshape(1, -1, 1, 1) if len(ins) > 2 and ins[2] is not None else y]
    if op == "InstanceNormalization":
        axes = tuple(range(2, x.ndim))
        mu = x.mean(axis=axes, keepdims=True)
        var = x.var(axis=axes, keepdims=True)
        shape = (1, -1) + (1,) * (x.ndim - 2)
        y = (x - mu) / np.sqrt(var + a.get("epsilon", 1e-5))
        return [y * ins[1].reshape(shape) + ins[2].reshape(shape)]
    if op == "Unsqueeze" and opset >= 13:
        axes = [int(v) for v in ins[1]]
        r = x.ndim + len(axes)
        out = x
        for ax in sorted(v % r for v in axes):
            out = np.expand_dims(out, ax)
        return [out]
    if op == "Split":
        ax = a.get("axis", 0)
        sizes = ins[1] if len(ins) > 1 and ins[1] is not None else a.get("split")
        if sizes is None:
            n = len(node.output)
            sizes = [x.shape[ax] // n] * n
        return np.split(x, np.cumsum(sizes)[:-1], axis=ax)
    if op == "Expand":
        return [x * np.ones(tuple(int(v) for v in ins[1]), x.dtype)]
    return None


def run(model, params, feeds):
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    env = {}
    for t in model.graph.initializer:
        env[t.name] = onnx_numpy._f(numpy_helper.to_array(t))
    env.update(params)
    env.update(feeds)
    for node in model.graph.node:
        if node.op_type == "Constant" and node.output[0] in params:
            continue
        ins = [env[n] if n else None for n in node.input]
        a = {x.name: helper.get_attribute_value(x) for x in node.attribute}
        outs = _node(node, ins, a, opset)
        if outs is None:
            while ins and ins[-1] is None:
                ins.pop()
            outs = onnx_numpy._node(node.op_type, ins, a, opset)
        for name, v in zip(node.output, outs):
            if name:
                env[name] = np.asarray(v)
    return [env[o.name] for o in model.graph.output]


def without_epsilon(model):
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for n in m.graph.node:
        if n.op_type in ("LayerNormalization", "BatchNormalization", "InstanceNormalization",
                         "GroupNormalization", "RMSNormalization"):
            for at in n.attribute:
                if at.name == "epsilon":
                    at.f = 0.0
            if not any(at.name == "epsilon" for at in n.attribute):
                n.attribute.append(helper.make_attribute("epsilon", 0.0))
    # A written-out epsilon (docs/symmetry-schema.md, Tolerances): Add(ReduceMean(..), c),
    # c one number in [0, 1e-3] (a Constant node or an initializer), read only by Sqrt or
    # Pow, becomes the mean alone (c set to 0 for this Add: a copy, so others keep theirs).
    made = {o: n for n in m.graph.node for o in n.output}
    inits = {t.name: t for t in m.graph.initializer}
    readers = {}
    for n in m.graph.node:
        for x in n.input:
            readers.setdefault(x, []).append(n)
    outs = {o.name for o in m.graph.output}

    def small(name):
        if name in inits:
            a = numpy_helper.to_array(inits[name])
        elif name in made and made[name].op_type == "Constant":
            at = [x for x in made[name].attribute if x.name == "value"]
            if not at:
                return False
            a = numpy_helper.to_array(at[0].t)
        else:
            return False
        return np.issubdtype(a.dtype, np.floating) and a.size == 1 and 0 <= float(a.reshape(-1)[0]) <= 1e-3

    for n in list(m.graph.node):
        if n.op_type != "Add" or len(n.input) != 2 or n.output[0] in outs:
            continue
        rd = readers.get(n.output[0], [])
        if not rd or any(r.op_type not in ("Sqrt", "Pow") for r in rd):
            continue
        for k in (0, 1):
            mean, c = n.input[k], n.input[1 - k]
            if mean in made and made[mean].op_type == "ReduceMean" and small(c):
                zero = c + "__eps0"
                m.graph.initializer.append(numpy_helper.from_array(np.zeros((), np.float32), zero))
                n.input[1 - k] = zero
                break
    return m


# ------------------------------------------------------------------ group elements
def rand_orth(n, rng):
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    return q * np.sign(np.diag(r))


def draw_once(group, n, rng):
    name = group["name"]
    if name == "S":
        return np.eye(n)[rng.permutation(n)]
    if name == "B":
        return np.eye(n)[rng.permutation(n)] * rng.choice([-1.0, 1.0], n)[:, None]
    if name == "Z2":
        return np.diag(rng.choice([-1.0, 1.0], n))
    if name == "Scale+":
        return np.diag(np.exp(rng.uniform(-0.5, 0.5, n)))
    if name == "O":
        return rand_orth(n, rng)
    if name == "GL":
        return rand_orth(n, rng) @ np.diag(np.exp(rng.uniform(-0.5, 0.5, n))) @ rand_orth(n, rng)
    if name == "rope":
        m = np.eye(n)
        for i, j in group["pairs"]:
            r = np.exp(rng.uniform(-0.5, 0.5)) if group.get("scale", True) else 1.0
            rot = group.get("rotation", "SO2")
            t = rng.uniform(0, 2 * np.pi) if rot == "SO2" else (
                np.pi * rng.integers(2) if rot == "sign" else 0.0)
            m[i, i], m[i, j], m[j, i], m[j, j] = (r * np.cos(t), -r * np.sin(t),
                                                  r * np.sin(t), r * np.cos(t))
        return m
    if name == "heads":
        h, dh = group["heads"], group["head_dim"]
        if h * dh != n:
            raise ValueError("heads %d x head_dim %d != n %d" % (h, dh, n))
        outer = np.eye(h)[rng.permutation(h)] if group.get("outer", "S") == "S" else np.eye(h)
        inner = group.get("inner", "1")
        bd = np.zeros((n, n))
        for k in range(h):
            blk = np.eye(dh) if inner == "1" else draw_once(
                dict(group, name=inner), dh, rng)
            bd[k * dh:(k + 1) * dh, k * dh:(k + 1) * dh] = blk
        return np.kron(outer, np.eye(dh)) @ bd
    raise ValueError("group %s not supported" % name)


def element(group, n, rng):
    for _ in range(100):
        a = draw_once(group, n, rng)
        if not np.allclose(a, np.eye(n)):
            return a
    return a


def apply_member(t, mem, a):
    var = mem.get("variance", "out")
    m = np.linalg.inv(a).T if var == "in" else (np.abs(a) if var == "abs" else a)
    stride = mem.get("stride", 1)
    idx = [mem["offset"] + k * stride for k in range(mem["extent"])]
    ax = mem["axis"]
    sub = np.moveaxis(np.take(t, idx, axis=ax), ax, 0)
    if np.all(np.count_nonzero(m, axis=1) == 1):
        # A signed permutation or a diagonal (S, B, Z2, Scale+) entry by entry: a matrix
        # product would add +0 terms and turn -0 into +0, which a division by an exactly
        # zero weight tells apart (fuzz_graphs seed 3301 case 528).
        cols = np.argmax(m != 0, axis=1)
        coef = m[np.arange(len(cols)), cols]
        new = sub[cols] * coef.reshape((-1,) + (1,) * (sub.ndim - 1))
    else:
        new = np.tensordot(m, sub, axes=1)
    t = np.moveaxis(t, ax, 0).copy()
    t[idx] = new
    return np.moveaxis(t, 0, ax)


def transform(params, claim, rng):
    p = dict(params)
    kind = claim["kind"]
    if kind == "linear":
        a = element(claim["group"], claim["n"], rng)
        for mem in claim["members"]:
            p[mem["initializer"]] = apply_member(p[mem["initializer"]], mem, a)
    elif kind == "scale":
        c = float(np.exp(rng.choice([-1, 1]) * rng.uniform(0.25, 0.7)))
        for mem in claim["members"]:
            p[mem["initializer"]] = p[mem["initializer"]] * c
    elif kind == "shift":
        v, c = None, rng.standard_normal()
        for mem in claim["members"]:
            t = p[mem["initializer"]]
            if mem["role"] == "bias":
                p[mem["initializer"]] = t + c
            else:
                if v is None:
                    shape = list(t.shape)
                    del shape[mem["axis"]]
                    v = rng.standard_normal(shape)
                p[mem["initializer"]] = t + np.expand_dims(v, mem["axis"])
    else:
        raise ValueError("claim kind %s not supported" % kind)
    return p


def noise(params, claim, rng, rel):
    """The claim's member tensors with independent relative noise of size rel and no symmetry:
    how far rounding-sized changes where the claim acts move the outputs (--noise-control)."""
    p = dict(params)
    for name in {m["initializer"] for m in claim.get("members", [])}:
        t = p[name]
        if np.issubdtype(np.asarray(t).dtype, np.floating):
            p[name] = t * (1 + rel * rng.standard_normal(np.shape(t)))
    return p


def rel_err(outs, base, claim, names, floor=0.0):
    """Largest relative error over the outputs, each relative to its own largest entry;
    with floor > 0 that denominator is at least floor x the largest entry of any float
    output, or floor when that is below 1 (the inputs are standard normal): an output that
    is zero up to rounding (a sum that cancels, a zero weight) is not judged on its own
    rounding noise."""
    err = 0.0
    top = max([float(np.abs(y).max()) for y in base
               if np.issubdtype(np.asarray(y).dtype, np.floating) and np.size(y)] or [0.0])
    for x, y, name in zip(outs, base, names):
        if not np.issubdtype(np.asarray(y).dtype, np.floating):
            err = max(err, 0.0 if np.array_equal(x, y) else np.inf)
            continue
        if claim["kind"] == "shift" and claim.get("output") in (None, name) and \
                claim.get("output") is not None:
            ax = claim.get("output_axis", -1)
            x, y = onnx_numpy._softmax(x, ax), onnx_numpy._softmax(y, ax)
        e = float(np.abs(x - y).max() / max(np.abs(y).max(), floor * max(top, 1.0), 1e-30))
        err = max(err, np.inf if np.isnan(e) else e)  # max(err, nan) would keep err: NaN is a failure
    return err


def load(path):
    if path.endswith(".onnxtxt"):
        return onnx.parser.parse_model(open(path).read())
    return onnx.load(path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("claims")
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--quiet", action="store_true", help="print only failures and a summary")
    ap.add_argument("--floor", type=float, default=0.0,
                    help="relative-error denominator at least FLOOR x max(1, the largest output "
                         "entry) (default 0: each output on its own scale)")
    ap.add_argument("--noise-control", action="store_true",
                    help="after a BAD line, the same error for relative noise of 1e-13 on the "
                         "claim's member tensors (no symmetry): 'noise E' tells a graph that "
                         "amplifies rounding (an output that is exactly zero by cancellation, a "
                         "normalization of a constant row) from a claim that does not hold")
    args = ap.parse_args()
    model = load(args.model)
    doc = json.load(open(args.claims))
    params = {t.name: numpy_helper.to_array(t).astype(np.float64)
              if np.issubdtype(numpy_helper.to_array(t).dtype, np.floating)
              else numpy_helper.to_array(t) for t in model.graph.initializer}
    for n in model.graph.node:  # weights stored as Constant nodes
        if n.op_type == "Constant":
            for at in n.attribute:
                if at.name == "value" and at.t.data_type in (1, 10, 11):
                    params.setdefault(n.output[0], numpy_helper.to_array(at.t).astype(np.float64))
    rng = np.random.default_rng(0)
    feeds = {}
    for v in model.graph.input:
        if v.name in params:
            continue
        shape = [d.dim_value if d.dim_value > 0 else 2 for d in v.type.tensor_type.shape.dim]
        et = v.type.tensor_type.elem_type
        feeds[v.name] = rng.integers(0, 4, shape) if et in (6, 7) else rng.standard_normal(shape)
    names = [o.name for o in model.graph.output]
    models = {"model": model}
    base = {"model": run(model, params, feeds)}
    bad = 0
    for c in doc["claims"]:
        approx = not c.get("exact", True)
        group = c.get("group", {"name": c["kind"]})
        group = group if isinstance(group, dict) else {"name": group}
        c = dict(c, group=group)
        errs = {}
        for where in (["eps0", "model"] if approx else ["model"]):
            if where not in models:
                models[where] = without_epsilon(model)
                base[where] = run(models[where], params, feeds)
            err = 0.0
            for _ in range(args.trials):
                p = transform(params, c, rng)
                err = max(err, rel_err(run(models[where], p, feeds), base[where], c, names,
                                       args.floor))
            errs[where] = err
            if where == "eps0" and err <= TOL_EXACT:
                break
        ok = errs.get("eps0", errs.get("model")) <= TOL_EXACT or \
            (approx and errs.get("model", np.inf) <= TOL_APPROX)
        bad += not ok
        err = min(errs.values())
        extra = ""
        if not ok and args.noise_control and c["kind"] != "shift":
            where = "eps0" if "eps0" in errs else "model"
            e_noise = max(rel_err(run(models[where], noise(params, c, rng, 1e-13), feeds), base[where], c, names,
                                  args.floor) for _ in range(args.trials))
            extra = " noise %.1e" % e_noise
        if not ok or not args.quiet:
            print("%s %s %.1e%s" % ("ok" if ok else "BAD", c["id"], err, extra))
    print("apply_claims: %d/%d claims hold" % (len(doc["claims"]) - bad, len(doc["claims"])))
    sys.exit(1 if bad else 0)


main()
