"""A small NumPy evaluator for the ONNX ops that models/*.onnx use (onnx 1.12 has no reference
evaluator and onnxruntime is not installed). Written from the ONNX operator specification,
for the opsets the fixtures use (9, 13, 14, 17); it is a test oracle, not a general runtime:
an op or attribute it does not know raises NotImplementedError naming it.

run(model, feeds, overrides) -> list of output arrays. Float tensors are computed in float64.
"""
import math

import numpy as np
from onnx import numpy_helper, helper

try:
    from scipy.special import erf as _erf
except ImportError:   # vectorized math.erf
    _erf = np.vectorize(math.erf, otypes=[np.float64])

DTYPES = {1: np.float64, 2: np.uint8, 3: np.int8, 4: np.uint16, 5: np.int16, 6: np.int32,
          7: np.int64, 9: np.bool_, 11: np.float64, 12: np.uint32, 13: np.uint64}


def _f(x):
    return x.astype(np.float64) if np.issubdtype(x.dtype, np.floating) else x


def _attrs(node):
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def attention_ref(q, k, v, scale=None, causal=False, mask=None, softcap=0.0):
    """Attention-23/24 from its spec on 4-D [B, H, S, D] inputs: K and V repeated over the
    query heads of their group (GQA), softcap before the causal mask (top-left aligned) and
    the attention mask (bool: True attends; float: added)."""
    hq, hk = q.shape[1], k.shape[1]
    k = np.repeat(k, hq // hk, axis=1)
    v = np.repeat(v, hq // hk, axis=1)
    s = q @ k.transpose(0, 1, 3, 2) * (scale if scale else 1 / math.sqrt(q.shape[-1]))
    if softcap:
        s = softcap * np.tanh(s / softcap)
    if causal:
        s = s + np.triu(np.full(s.shape[-2:], -np.inf), 1)
    if mask is not None:
        s = s + (np.where(mask, 0, -np.inf) if mask.dtype == bool else mask)
    return _softmax(s, -1) @ v


def rotary_ref(x, cos, sin, pos, interleaved, rd):
    """RotaryEmbedding-23 from its spec on x [B, H, S, D]: the first rd channels rotated
    (halves, or interleaved pairs), the caches [P, rd/2] gathered at pos [B, S]."""
    c, s = cos[pos][:, None], sin[pos][:, None]
    xr, rest = x[..., :rd], x[..., rd:]
    if interleaved:
        x1, x2 = xr[..., 0::2], xr[..., 1::2]
        out = np.stack([x1 * c - x2 * s, x2 * c + x1 * s], -1).reshape(xr.shape)
    else:
        x1, x2 = xr[..., :rd // 2], xr[..., rd // 2:]
        out = np.concatenate([x1 * c - x2 * s, x2 * c + x1 * s], -1)
    return np.concatenate([out, rest], -1)


def _conv(x, w, b, a):
    if a.get("group", 1) != 1 or any(d != 1 for d in a.get("dilations", [1, 1])):
        raise NotImplementedError("Conv with group or dilation")
    kh, kw = w.shape[2:]
    pt, pl, pb, pr = a.get("pads", [0, 0, 0, 0])
    sh, sw = a.get("strides", [1, 1])
    x = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    n, c, h, wd = x.shape
    oh, ow = (h - kh) // sh + 1, (wd - kw) // sw + 1
    cols = np.empty((n, c, kh, kw, oh, ow), x.dtype)
    for i in range(kh):
        for j in range(kw):
            cols[:, :, i, j] = x[:, :, i:i + sh * oh:sh, j:j + sw * ow:sw]
    y = np.einsum("nckloq,fckl->nfoq", cols, w)
    return y + b.reshape(1, -1, 1, 1) if b is not None else y


def _slice(x, starts, ends, axes=None, steps=None):
    axes = range(len(starts)) if axes is None else axes
    steps = [1] * len(starts) if steps is None else steps
    sl = [slice(None)] * x.ndim
    for s, e, ax, st in zip(starts, ends, axes, steps):
        sl[int(ax)] = slice(int(s), int(min(e, np.iinfo(np.int64).max)), int(st))
    return x[tuple(sl)]


def _node(op, ins, a, opset):
    x = ins[0] if ins else None
    if op in ("Add", "Sub", "Mul", "Div", "Pow", "Equal"):
        f = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide,
             "Pow": np.power, "Equal": np.equal}[op]
        if op == "Div" and not np.issubdtype(x.dtype, np.floating):
            # Integer Div truncates toward zero (ONNX's reference, onnxruntime), not floor.
            q = np.abs(x) // np.abs(ins[1])
            return [(np.sign(x) * np.sign(ins[1]) * q).astype(np.result_type(x, ins[1]))]
        return [f(x, ins[1])]
    unary = {"Relu": lambda v: np.maximum(v, 0), "Tanh": np.tanh, "Sqrt": np.sqrt,
             "Neg": np.negative, "Sigmoid": lambda v: 1 / (1 + np.exp(-v)), "Erf": _erf}
    if op in unary:
        return [unary[op](x)]
    if op == "Constant":
        return [_f(numpy_helper.to_array(a["value"]))]
    if op == "ConstantOfShape":
        v = _f(numpy_helper.to_array(a["value"])) if "value" in a else np.zeros(1)
        return [np.full(tuple(x), v.reshape(-1)[0], v.dtype)]
    if op == "Cast":
        return [x.astype(DTYPES[a["to"]])]
    if op == "Shape":
        return [np.array(x.shape, np.int64)]
    if op == "Gemm":
        A = x.T if a.get("transA") else x
        B = ins[1].T if a.get("transB") else ins[1]
        y = a.get("alpha", 1.0) * A @ B
        return [y + a.get("beta", 1.0) * ins[2] if len(ins) > 2 else y]
    if op == "MatMul":
        return [np.matmul(x, ins[1])]
    if op == "Transpose":
        return [np.transpose(x, a.get("perm"))]
    if op == "Reshape":
        shape = [x.shape[i] if s == 0 else s for i, s in enumerate(ins[1])]
        return [x.reshape(shape)]
    if op == "Unsqueeze":
        axes = a["axes"] if opset < 13 else ins[1]
        out = x
        for ax in sorted(int(v) % (x.ndim + len(axes)) for v in axes):
            out = np.expand_dims(out, ax)
        return [out]
    if op == "Concat":
        return [np.concatenate(ins, axis=a["axis"])]
    if op == "Split":
        sizes = ins[1] if len(ins) > 1 else a.get("split")
        return np.split(x, np.cumsum(sizes)[:-1], axis=a.get("axis", 0))
    if op == "Slice":
        return [_slice(x, *[v for v in ins[1:]])]
    if op == "Gather":
        return [np.take(x, ins[1], axis=a.get("axis", 0))]
    if op == "GatherElements":
        return [np.take_along_axis(x, ins[1].astype(np.int64), axis=a.get("axis", 0))]
    if op == "Expand":
        return [x * np.ones(tuple(ins[1]), x.dtype)]
    if op == "Where":
        return [np.where(x, ins[1], ins[2])]
    if op == "Softmax":
        if opset < 13:
            raise NotImplementedError("Softmax before opset 13")
        return [_softmax(x, a.get("axis", -1))]
    if op == "ReduceMean":
        return [x.mean(axis=tuple(a["axes"]), keepdims=bool(a.get("keepdims", 1)))]
    if op == "CumSum":
        ax = int(np.asarray(ins[1]).reshape(-1)[0])
        v = np.flip(x, ax) if a.get("reverse", 0) else x
        c = np.cumsum(v, axis=ax)
        if a.get("exclusive", 0):
            c = c - v
        return [np.flip(c, ax) if a.get("reverse", 0) else c]
    if op == "ReduceL2":
        # Axes: an attribute before opset 18, an optional input since.
        axes = a.get("axes") if opset < 18 else (ins[1] if len(ins) > 1 else None)
        axes = tuple(int(v) for v in axes) if axes is not None and len(axes) else None
        return [np.sqrt((x * x).sum(axis=axes, keepdims=bool(a.get("keepdims", 1))))]
    if op == "Clip":
        # Bounds: attributes before opset 11, optional inputs since (absent: no bound).
        lo = a.get("min") if opset < 11 else (ins[1] if len(ins) > 1 else None)
        hi = a.get("max") if opset < 11 else (ins[2] if len(ins) > 2 else None)
        y = x if lo is None or np.size(lo) == 0 else np.maximum(x, lo)
        return [y if hi is None or np.size(hi) == 0 else np.minimum(y, hi)]
    if op == "ReduceSum":
        axes = tuple(ins[1]) if len(ins) > 1 and ins[1] is not None else None
        if not axes and a.get("noop_with_empty_axes", 0):  # absent or empty: the identity
            return [x]
        axes = axes or None  # absent or empty: every axis
        return [x.sum(axis=axes, keepdims=bool(a.get("keepdims", 1)))]
    if op == "LayerNormalization":
        ax = a.get("axis", -1)
        axes = tuple(range(ax % x.ndim, x.ndim))
        mu = x.mean(axis=axes, keepdims=True)
        var = ((x - mu) ** 2).mean(axis=axes, keepdims=True)
        y = (x - mu) / np.sqrt(var + a.get("epsilon", 1e-5)) * ins[1]
        return [y + ins[2] if len(ins) > 2 else y]
    if op == "BatchNormalization":
        scale, bias, mean, var = ins[1:5]
        shape = (1, -1) + (1,) * (x.ndim - 2)
        if a.get("training_mode", 0):
            axes = (0,) + tuple(range(2, x.ndim))
            mean, var = x.mean(axis=axes), x.var(axis=axes)
        y = (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + a.get("epsilon", 1e-5))
        return [y * scale.reshape(shape) + bias.reshape(shape), mean, var]
    if op == "Conv":
        return [_conv(x, ins[1], ins[2] if len(ins) > 2 else None, a)]
    if op == "Einsum":
        return [np.einsum(a["equation"].decode() if isinstance(a["equation"], bytes)
                          else a["equation"], *ins)]
    if op == "TopK":
        k, ax = int(ins[1][0]), a.get("axis", -1)
        order = np.argsort(-x if a.get("largest", 1) else x, axis=ax, kind="stable")
        idx = np.take(order, np.arange(k), axis=ax)
        if not a.get("sorted", 1):
            # The order of the selected entries is unspecified: list them by position (a
            # legal order that exposes a claim relying on the sorted one).
            idx = np.sort(idx, axis=ax)
        return [np.take_along_axis(x, idx, axis=ax), idx.astype(np.int64)]
    if op in ("ArgMax", "ArgMin"):
        # The first extreme entry along the axis, or the last with select_last_index.
        ax = a.get("axis", 0) % x.ndim
        y = -x if op == "ArgMax" else x
        if a.get("select_last_index", 0):
            y = np.flip(y, axis=ax)
            idx = x.shape[ax] - 1 - np.argmin(y, axis=ax)
        else:
            idx = np.argmin(y, axis=ax)
        idx = idx.astype(np.int64)
        return [np.expand_dims(idx, ax) if a.get("keepdims", 1) else idx]
    if op == "OneHot":
        # A new axis `axis` of size depth: values[1] where the index (negative: counted from
        # the end) is the coordinate, values[0] elsewhere.
        depth = int(np.asarray(ins[1]).reshape(-1)[0])
        idx = np.asarray(x).astype(np.int64)
        idx = np.where(idx < 0, idx + depth, idx)
        ax = a.get("axis", -1) % (idx.ndim + 1)
        shape = [1] * (idx.ndim + 1)
        shape[ax] = depth
        hot = np.expand_dims(idx, ax) == np.arange(depth).reshape(shape)
        off, on = np.asarray(ins[2]).reshape(-1)[:2]
        return [np.where(hot, on, off)]
    if op == "ScatterElements":
        # Entry by entry of the updates, in row-major order (later writes win under "none");
        # a negative index counts from the end of the axis.
        red = a.get("reduction", b"none")
        red = red.decode() if isinstance(red, bytes) else red
        comb = {"none": lambda o, u: u, "add": np.add, "mul": np.multiply,
                "max": np.maximum, "min": np.minimum}[red]
        out, idx, upd = x.copy(), np.asarray(ins[1]).astype(np.int64), ins[2]
        ax = a.get("axis", 0) % x.ndim
        for i in np.ndindex(*upd.shape):
            t = list(i)
            j = int(idx[i])
            t[ax] = j + x.shape[ax] if j < 0 else j
            t = tuple(t)
            out[t] = comb(out[t], upd[i])
        return [out]
    if op == "Mod":
        # fmod = 0: the result takes the divisor's sign (integers only); 1: the dividend's.
        return [np.fmod(x, ins[1]) if a.get("fmod", 0) else np.mod(x, ins[1])]
    if op == "Not":
        return [np.logical_not(x)]
    if op == "Identity":
        return [x]
    if op == "Range":
        return [np.arange(x, ins[1], ins[2]).astype(x.dtype)]
    if op == "Pad":
        pads = list(ins[1]) if opset >= 11 else list(a["pads"])
        r = x.ndim
        if any(p < 0 for p in pads):
            raise NotImplementedError("Pad with negative pads")
        width = [(int(pads[i]), int(pads[i + r])) for i in range(r)]
        mode = a.get("mode", b"constant")
        mode = mode.decode() if isinstance(mode, bytes) else mode
        if mode == "constant":
            v = ins[2] if len(ins) > 2 and ins[2] is not None else a.get("value", 0.0)
            return [np.pad(x, width, constant_values=np.asarray(v).reshape(-1)[0]
                           if np.size(v) else 0)]
        return [np.pad(x, width, mode={"edge": "edge", "reflect": "reflect"}[mode])]
    if op == "ScatterND":
        if a.get("reduction", b"none") not in (b"none", "none"):
            raise NotImplementedError("ScatterND with a reduction")
        out, idx, upd = x.copy(), ins[1], ins[2]
        k = idx.shape[-1]
        flat_idx = idx.reshape(-1, k)
        flat_upd = upd.reshape((-1,) + x.shape[k:])
        for i in range(flat_idx.shape[0]):
            out[tuple(int(v) for v in flat_idx[i])] = flat_upd[i]
        return [out]
    if op == "GatherND":  # ONNX GatherND, batch_dims 0: each index tuple picks a slice
        if a.get("batch_dims", 0):
            raise NotImplementedError("GatherND with batch_dims")
        idx = ins[1].astype(np.int64)
        k = idx.shape[-1]
        flat = idx.reshape(-1, k)
        out = np.stack([x[tuple(int(v) for v in row)] for row in flat])
        return [out.reshape(idx.shape[:-1] + x.shape[k:])]
    if op == "Hardmax":  # 1 at the first largest entry along `axis` (opset >= 13), else 0
        if opset < 13:
            raise NotImplementedError("Hardmax before opset 13")
        ax = a.get("axis", -1) % x.ndim
        y = np.zeros_like(x)
        np.put_along_axis(y, np.expand_dims(np.argmax(x, axis=ax), ax), 1.0, axis=ax)
        return [y]
    if op == "LpNormalization":  # x / ||x||_p along `axis` (p 1 or 2), no epsilon
        ax, p = a.get("axis", -1) % x.ndim, a.get("p", 2)
        n = np.abs(x).sum(axis=ax, keepdims=True) if p == 1 else np.sqrt((x * x).sum(axis=ax, keepdims=True))
        return [x / n]
    if op == "MeanVarianceNormalization":  # the spec's function: (x - E x) / (sqrt(E x^2 - (E x)^2) + 1e-9)
        axes = tuple(int(v) % x.ndim for v in a.get("axes", [0, 2, 3]))
        m = x.mean(axis=axes, keepdims=True)
        var = (x * x).mean(axis=axes, keepdims=True) - m * m
        return [(x - m) / (np.sqrt(var) + 1e-9)]
    raise NotImplementedError("op %s" % op)


def run(model, feeds, overrides=None):
    """Evaluate the graph. overrides: name -> array replacing an initializer or the output
    of a Constant node (used to apply symmetry transforms to the parameters)."""
    overrides = overrides or {}
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    env = {i.name: _f(numpy_helper.to_array(i)) for i in model.graph.initializer}
    env.update({k: _f(np.asarray(v)) for k, v in overrides.items()})
    env.update({k: _f(np.asarray(v)) for k, v in feeds.items()})
    for node in model.graph.node:
        if node.op_type == "Constant" and node.output[0] in overrides:
            continue
        ins = [env[n] if n else None for n in node.input]
        while ins and ins[-1] is None:
            ins.pop()
        outs = _node(node.op_type, ins, _attrs(node), opset)
        for name, v in zip(node.output, outs):
            if name:
                env[name] = np.asarray(v)
    return [env[o.name] for o in model.graph.output]
