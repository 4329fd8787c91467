#!/usr/bin/env python3
"""The opset 18-24 rewrites compute what the ONNX specs say.

Each case is a one-op model at opset 18..24 (built with Debian's onnx 1.12 helper,
opset_import set by hand), run by evaluator-run, which adapts it into its opset-17 form
exactly as symoc does, and compared with a NumPy formula written from the operator's
ONNX documentation (Changelog entries Gelu-20, Mish-18, Swish-24, RMSNormalization-23,
GroupNormalization-18/21, Attention-23, RotaryEmbedding-23, Split-18, Reduce*-18,
Pad-18, Pad-19's wrap, ScatterElements/ND-18's max and min, Resize-18/19's antialias and half_pixel_symmetric, DFT-20 against
numpy.fft).

Usage: test_opset_adapter.py EVALUATOR_RUN
"""
import math
import os
import subprocess
import sys
import tempfile

try:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper
except ImportError:
    sys.exit(77)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
from onnx_numpy import attention_ref, rotary_ref  # noqa: E402

F = TensorProto.FLOAT
RNG = np.random.default_rng(0)


def model(nodes, inputs, outputs, opset, inits=()):
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
                          [helper.make_tensor_value_info(n, F, None) for n in outputs],
                          initializer=list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 10
    return m


def run(tool, m, feeds):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "m.onnx")
        with open(path, "wb") as f:
            f.write(m.SerializeToString())
        files = []
        for i, x in enumerate(feeds):
            p = os.path.join(d, f"in{i}.pb")
            with open(p, "wb") as f:
                f.write(numpy_helper.from_array(x).SerializeToString())
            files.append(p)
        r = subprocess.run([tool, path, d] + files, capture_output=True, text=True)
        if r.returncode:
            raise RuntimeError(r.stderr.strip())
        outs = []
        for i in range(len(m.graph.output)):
            t = onnx.TensorProto()
            with open(os.path.join(d, f"output_{i}.pb"), "rb") as f:
                t.ParseFromString(f.read())
            outs.append(numpy_helper.to_array(t))
        return outs


def erf(x):
    return np.vectorize(math.erf)(x)


def keys(d, a=-0.75):
    d = np.abs(d)
    return np.where(d <= 1, ((a + 2) * d - (a + 3)) * d * d + 1,
                    np.where(d < 2, ((a * d - 5 * a) * d + 8 * a) * d - 4 * a, 0.0))


def resize_ref(x, out_shape, scales, mode, ctm, antialias, exclude):
    """Resize-19 (linear, cubic) from its spec, one axis at a time: output o reads input
    coordinate x_o (coordinate_transformation_mode); every input index j with
    |j - x_o| s < support contributes kernel((j - x_o) s), s = min(scale, 1) with antialias
    (the kernel stretched when downscaling) else 1; indices outside the input take the edge
    value (or weight 0 with exclude_outside); weights sum to 1."""
    y = x.astype(np.float64)
    support = 1.0 if mode == "linear" else 2.0
    kern = (lambda d: np.maximum(0.0, 1 - np.abs(d))) if mode == "linear" else keys
    for ax, (n_in, n_out, sc) in enumerate(zip(x.shape, out_shape, scales)):
        if n_in == n_out and sc == 1:
            continue
        o = np.arange(n_out, dtype=np.float64)
        if ctm == "half_pixel_symmetric":
            xo = n_in / 2 * (1 - n_out / (sc * n_in)) + (o + 0.5) / sc - 0.5
        else:
            xo = (o + 0.5) / sc - 0.5
        s = min(sc, 1.0) if antialias else 1.0
        W = np.zeros((n_out, n_in))
        for i, c in enumerate(xo):
            js = np.arange(int(np.floor(c - support / s)), int(np.ceil(c + support / s)) + 1)
            w = kern((js - c) * s)
            if exclude:
                w = np.where((js < 0) | (js >= n_in), 0.0, w)
            w = w / w.sum()
            np.add.at(W[i], np.clip(js, 0, n_in - 1), w)
        y = np.moveaxis(np.tensordot(W, np.moveaxis(y, ax, 0), axes=1), 0, ax)
    return y


def resize_cases():
    """Resize-18's antialias and Resize-19's half_pixel_symmetric (the opset-17 form keeps
    both attributes; the evaluator implements them) against resize_ref."""
    img = RNG.standard_normal((2, 3, 7, 9)).astype(np.float32)
    xi = [("X", F, list(img.shape))]
    for scales in ([1, 1, 0.6, 0.45], [1, 1, 1.7, 0.7], [1, 1, 0.25, 2.5]):
        out = [int(np.floor(n * np.float32(s))) for n, s in zip(img.shape, scales)]
        sc32 = np.array(scales, np.float32)
        for mode in ("linear", "cubic"):
            for aa, ctm, excl in ((1, "half_pixel", 0), (1, "half_pixel_symmetric", 1),
                                  (0, "half_pixel_symmetric", 0), (1, "half_pixel_symmetric", 0)):
                node = helper.make_node("Resize", ["X", "", "sc"], ["Y"], mode=mode, antialias=aa,
                                        coordinate_transformation_mode=ctm, exclude_outside=excl)
                want = resize_ref(img, out, sc32.astype(np.float64), mode, ctm, aa, excl)
                yield (f"Resize-19 {mode} antialias={aa} {ctm} exclude_outside={excl} scales "
                       f"{scales}", model([node], xi, ["Y"], 19,
                                          [numpy_helper.from_array(sc32, "sc")]), [img], [want])
    sizes = np.array([2, 3, 4, 3], np.int64)  # scales from sizes: the symmetric offset is 0
    node = helper.make_node("Resize", ["X", "", "", "sz"], ["Y"], mode="cubic", antialias=1)
    want = resize_ref(img, sizes, sizes / np.array(img.shape), "cubic", "half_pixel", 1, 0)
    yield ("Resize-18 cubic antialias sizes", model([node], xi, ["Y"], 18,
                                                    [numpy_helper.from_array(sizes, "sz")]),
           [img], [want])


def dft_cases():
    """DFT-20 (its axis input made DFT-17's attribute by the adapter) against numpy.fft:
    real and complex inputs, onesided, inverse, dft_length cutting and zero-padding, a
    middle axis of a 4-D input."""
    sig = RNG.standard_normal((2, 8, 3, 1)).astype(np.float32)
    cpx = RNG.standard_normal((2, 8, 3, 2)).astype(np.float32)
    z = cpx[..., 0].astype(np.float64) + 1j * cpx[..., 1]

    def ri(c):
        return np.stack([c.real, c.imag], -1)

    def dft(name, x, want, axis, **attrs):
        nodes = [helper.make_node("Constant", [], ["ax"], value=numpy_helper.from_array(
            np.array(axis, np.int64)))]
        ins = ["X", "", "ax"]
        if "length" in attrs:
            nodes.append(helper.make_node("Constant", [], ["n"], value=numpy_helper.from_array(
                np.array(attrs.pop("length"), np.int64))))
            ins = ["X", "n", "ax"]
        nodes.append(helper.make_node("DFT", ins, ["Y"], **attrs))
        return (name, model(nodes, [("X", F, list(x.shape))], ["Y"], 20), [x], [want])

    real = sig[..., 0].astype(np.float64)
    yield dft("DFT-20 real, axis -3", sig, ri(np.fft.fft(real, axis=1)), -3)
    yield dft("DFT-20 real onesided", sig, ri(np.fft.rfft(real, axis=1)), 1, onesided=1)
    yield dft("DFT-20 complex inverse", cpx, ri(np.fft.ifft(z, axis=1)), 1, inverse=1)
    yield dft("DFT-20 complex, dft_length 5 (cut)", cpx, ri(np.fft.fft(z, n=5, axis=1)), 1, length=5)
    yield dft("DFT-20 real onesided, dft_length 11 (zero-padded)", sig,
              ri(np.fft.rfft(real, n=11, axis=1)), 1, onesided=1, length=11)
    yield dft("DFT-20 complex, axis 2", cpx, ri(np.fft.fft(z, axis=2)), 2)
    # Powers of two take the radix-2 path: 50 samples zero-padded to 64, and 256 inverse.
    long = RNG.standard_normal((2, 50, 1)).astype(np.float32)
    yield dft("DFT-20 real onesided, 50 padded to 64 (radix 2)", long,
              ri(np.fft.rfft(long[..., 0].astype(np.float64), n=64, axis=1)), 1, onesided=1, length=64)
    c256 = RNG.standard_normal((1, 256, 2, 2)).astype(np.float32)
    yield dft("DFT-20 complex inverse, 256 (radix 2)", c256,
              ri(np.fft.ifft(c256[..., 0].astype(np.float64) + 1j * c256[..., 1], axis=1)), 1, inverse=1)


def cases():
    yield from resize_cases()
    x = RNG.standard_normal((2, 3, 8)).astype(np.float32)
    xi = [("X", F, list(x.shape))]
    yield ("Gelu-20 none", model([helper.make_node("Gelu", ["X"], ["Y"])], xi, ["Y"], 20),
           [x], [0.5 * x * (1 + erf(x / math.sqrt(2)))])
    t = np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3))
    yield ("Gelu-20 tanh",
           model([helper.make_node("Gelu", ["X"], ["Y"], approximate="tanh")], xi, ["Y"], 20),
           [x], [0.5 * x * (1 + t)])
    yield ("Mish-18", model([helper.make_node("Mish", ["X"], ["Y"])], xi, ["Y"], 18),
           [x], [x * np.tanh(np.log1p(np.exp(x)))])
    yield ("Swish-24 alpha", model([helper.make_node("Swish", ["X"], ["Y"], alpha=1.7)], xi,
                                   ["Y"], 24), [x], [x / (1 + np.exp(-1.7 * x))])
    g = RNG.standard_normal(8).astype(np.float32)
    ms = np.mean(x.astype(np.float64) ** 2, -1, keepdims=True)
    yield ("RMSNormalization-23", model(
        [helper.make_node("RMSNormalization", ["X", "g"], ["Y"], epsilon=1e-3)], xi, ["Y"], 23,
        [numpy_helper.from_array(g, "g")]), [x], [x / np.sqrt(ms + 1e-3) * g])
    g2 = RNG.standard_normal((3, 8)).astype(np.float32)
    ms2 = np.mean(x.astype(np.float64) ** 2, (1, 2), keepdims=True)
    yield ("RMSNormalization-23 axis 1", model(
        [helper.make_node("RMSNormalization", ["X", "g"], ["Y"], axis=1)], xi, ["Y"], 23,
        [numpy_helper.from_array(g2, "g")]), [x], [x / np.sqrt(ms2 + 1e-5) * g2])

    img = RNG.standard_normal((2, 6, 4, 5)).astype(np.float32)
    grp = img.reshape(2, 3, -1).astype(np.float64)
    normed = ((grp - grp.mean(-1, keepdims=True)) /
              np.sqrt(grp.var(-1, keepdims=True) + 1e-5)).reshape(img.shape)
    sc, bi = RNG.standard_normal(6).astype(np.float32), RNG.standard_normal(6).astype(np.float32)
    yield ("GroupNormalization-21", model(
        [helper.make_node("GroupNormalization", ["X", "s", "b"], ["Y"], num_groups=3)],
        [("X", F, list(img.shape))], ["Y"], 21,
        [numpy_helper.from_array(sc, "s"), numpy_helper.from_array(bi, "b")]), [img],
        [normed * sc[None, :, None, None] + bi[None, :, None, None]])
    sg, bg = sc[:3], bi[:3]
    yield ("GroupNormalization-18 (per group)", model(
        [helper.make_node("GroupNormalization", ["X", "s", "b"], ["Y"], num_groups=3)],
        [("X", F, list(img.shape))], ["Y"], 18,
        [numpy_helper.from_array(sg, "s"), numpy_helper.from_array(bg, "b")]), [img],
        [normed * np.repeat(sg, 2)[None, :, None, None] + np.repeat(bg, 2)[None, :, None, None]])

    q = RNG.standard_normal((2, 4, 5, 8)).astype(np.float32)
    k = RNG.standard_normal((2, 2, 5, 8)).astype(np.float32)
    v = RNG.standard_normal((2, 2, 5, 6)).astype(np.float32)
    qkv = [("Q", F, list(q.shape)), ("K", F, list(k.shape)), ("V", F, list(v.shape))]
    yield ("Attention-23 4-D GQA causal", model(
        [helper.make_node("Attention", ["Q", "K", "V"], ["Y"], is_causal=1)], qkv, ["Y"], 23),
        [q, k, v], [attention_ref(q, k, v, causal=True)])
    yield ("Attention-24 scale softcap", model(
        [helper.make_node("Attention", ["Q", "K", "V"], ["Y"], scale=0.3, softcap=2.0)], qkv,
        ["Y"], 24), [q, k, v], [attention_ref(q, k, v, scale=0.3, softcap=2.0)])
    mask = RNG.random((5, 5)) > 0.3
    mask[:, 0] = True
    yield ("Attention-23 bool mask", model(
        [helper.make_node("Attention", ["Q", "K", "V", "M"], ["Y"])],
        qkv + [("M", TensorProto.BOOL, [5, 5])], ["Y"], 23), [q, k, v, mask],
        [attention_ref(q, k, v, mask=mask)])
    q3 = q.transpose(0, 2, 1, 3).reshape(2, 5, 32)
    k3 = k.transpose(0, 2, 1, 3).reshape(2, 5, 16)
    v3 = v.transpose(0, 2, 1, 3).reshape(2, 5, 12)
    y4 = attention_ref(q, k, v, causal=True)
    yield ("Attention-23 3-D heads", model(
        [helper.make_node("Attention", ["Q", "K", "V"], ["Y"], is_causal=1, q_num_heads=4,
                          kv_num_heads=2)],
        [("Q", F, [2, 5, 32]), ("K", F, [2, 5, 16]), ("V", F, [2, 5, 12])], ["Y"], 23),
        [q3, k3, v3], [y4.transpose(0, 2, 1, 3).reshape(2, 5, 24)])

    xr = RNG.standard_normal((2, 3, 5, 8)).astype(np.float32)
    theta = RNG.standard_normal((10, 3))
    cos, sin = np.cos(theta).astype(np.float32), np.sin(theta).astype(np.float32)
    pos = np.array([[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]], dtype=np.int64)
    for inter in (0, 1):
        yield (f"RotaryEmbedding-23 interleaved={inter} partial", model(
            [helper.make_node("RotaryEmbedding", ["X", "c", "s", "p"], ["Y"], interleaved=inter,
                              rotary_embedding_dim=6)],
            [("X", F, list(xr.shape)), ("p", TensorProto.INT64, [2, 5])], ["Y"], 23,
            [numpy_helper.from_array(cos, "c"), numpy_helper.from_array(sin, "s")]),
            [xr, pos], [rotary_ref(xr, cos, sin, pos, inter, 6)])
    phase = RNG.standard_normal((10, 4))
    ctab, stab = np.cos(phase).astype(np.float32), np.sin(phase).astype(np.float32)
    for inter in (0, 1):  # constant position_ids: the tables are precomputed
        yield (f"RotaryEmbedding-23 interleaved={inter} constant tables", model(
            [helper.make_node("RotaryEmbedding", ["X", "c", "s", "p"], ["Y"], interleaved=inter)],
            [("X", F, list(xr.shape))], ["Y"], 23,
            [numpy_helper.from_array(ctab, "c"), numpy_helper.from_array(stab, "s"),
             numpy_helper.from_array(pos, "p")]), [xr],
            [rotary_ref(xr, ctab, stab, pos, inter, 8)])
    theta4 = RNG.standard_normal((10, 4))
    cos4, sin4 = np.cos(theta4).astype(np.float32), np.sin(theta4).astype(np.float32)
    x3 = xr.transpose(0, 2, 1, 3).reshape(2, 5, 24)
    ref = rotary_ref(xr, cos4, sin4, pos, 0, 8).transpose(0, 2, 1, 3).reshape(2, 5, 24)
    yield ("RotaryEmbedding-23 3-D", model(
        [helper.make_node("RotaryEmbedding", ["X", "c", "s", "p"], ["Y"], num_heads=3)],
        [("X", F, [2, 5, 24]), ("p", TensorProto.INT64, [2, 5])], ["Y"], 23,
        [numpy_helper.from_array(cos4, "c"), numpy_helper.from_array(sin4, "s")]),
        [x3, pos], [ref])

    s7 = RNG.standard_normal((2, 7)).astype(np.float32)
    yield ("Split-18 num_outputs uneven", model(
        [helper.make_node("Split", ["X"], ["A", "B", "C"], axis=1, num_outputs=3)],
        [("X", F, [2, 7])], ["A", "B", "C"], 18), [s7], [s7[:, :3], s7[:, 3:6], s7[:, 6:]])
    yield ("ReduceMean-18 axes from Reshape(Constant)", model(
        [helper.make_node("Constant", [], ["c"], value=numpy_helper.from_array(np.array(1, np.int64))),
         helper.make_node("Constant", [], ["m"], value=numpy_helper.from_array(np.array([-1], np.int64))),
         helper.make_node("Reshape", ["c", "m"], ["ax"]),
         helper.make_node("ReduceMean", ["X", "ax"], ["Y"], keepdims=0)], xi, ["Y"], 18),
        [x], [x.mean(1)])
    yield ("ReduceSumSquare-18 noop empty axes", model(
        [helper.make_node("ReduceSumSquare", ["X"], ["Y"], noop_with_empty_axes=1)], xi, ["Y"],
        18), [x], [x * x])
    yield ("ReduceMax-20 no axes", model(
        [helper.make_node("ReduceMax", ["X"], ["Y"], keepdims=0)], xi, ["Y"], 20), [x],
        [x.max()])
    yield ("Pad-18 axes", model(
        [helper.make_node("Constant", [], ["p"], value=numpy_helper.from_array(np.array([1, 2], np.int64))),
         helper.make_node("Constant", [], ["a"], value=numpy_helper.from_array(np.array([-1], np.int64))),
         helper.make_node("Pad", ["X", "p", "", "a"], ["Y"])], xi, ["Y"], 18), [x],
        [np.pad(x, [(0, 0), (0, 0), (1, 2)])])
    yield from dft_cases()
    # ScatterElements-18 max / min (kept on the node): message passing's max aggregation.
    feat = RNG.standard_normal((6, 4)).astype(np.float32)
    dst = np.array([0, 2, 1, 0, 2, 2], np.int64)
    for red, fn in (("max", np.maximum), ("min", np.minimum)):
        base = RNG.standard_normal((3, 4)).astype(np.float32)
        want = base.astype(np.float64).copy()
        for e in range(6):
            want[dst[e]] = fn(want[dst[e]], feat[e])
        yield (f"ScatterElements-18 reduction {red}", model(
            [helper.make_node("Constant", [], ["i"], value=numpy_helper.from_array(
                np.repeat(dst[:, None], 4, 1))),
             helper.make_node("ScatterElements", ["B", "i", "U"], ["Y"], axis=0, reduction=red)],
            [("B", F, [3, 4]), ("U", F, [6, 4])], ["Y"], 18), [base, feat], [want])
    nd_base = RNG.standard_normal((3, 4)).astype(np.float32)
    nd_want = nd_base.astype(np.float64).copy()
    for e in range(6):
        nd_want[dst[e]] = np.maximum(nd_want[dst[e]], feat[e])
    yield ("ScatterND-18 reduction max", model(
        [helper.make_node("Constant", [], ["i"], value=numpy_helper.from_array(dst[:, None])),
         helper.make_node("ScatterND", ["B", "i", "U"], ["Y"], reduction="max")],
        [("B", F, [3, 4]), ("U", F, [6, 4])], ["Y"], 18), [nd_base, feat], [nd_want])
    img = RNG.standard_normal((2, 3, 4, 5)).astype(np.float32)
    yield ("Pad-19 wrap (Slices and Concats)", model(
        [helper.make_node("Constant", [], ["p"], value=numpy_helper.from_array(
            np.array([0, 0, 2, 0, 0, 1, 4, 5], np.int64))),
         helper.make_node("Pad", ["X", "p"], ["Y"], mode="wrap")],
        [("X", F, list(img.shape))], ["Y"], 19), [img],
        [np.pad(img, [(0, 0), (0, 1), (2, 4), (0, 5)], mode="wrap")])
    yield ("Pad-19 wrap, axes input", model(
        [helper.make_node("Constant", [], ["p"], value=numpy_helper.from_array(np.array([3, 1], np.int64))),
         helper.make_node("Constant", [], ["a"], value=numpy_helper.from_array(np.array([-1], np.int64))),
         helper.make_node("Pad", ["X", "p", "", "a"], ["Y"], mode="wrap")], xi, ["Y"], 19), [x],
        [np.pad(x, [(0, 0), (0, 0), (3, 1)], mode="wrap")])
    yield ("SplitToSequence + SequenceAt", model(
        [helper.make_node("Constant", [], ["n"], value=numpy_helper.from_array(np.array(3, np.int64))),
         helper.make_node("SplitToSequence", ["X", "n"], ["seq"], axis=2),
         helper.make_node("Constant", [], ["i"], value=numpy_helper.from_array(np.array(2, np.int64))),
         helper.make_node("SequenceAt", ["seq", "i"], ["Y"])], xi, ["Y"], 20), [x], [x[:, :, 6:]])


MODERN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "models",
                      "modern")
IMAGE_MODELS = ("hf_vit", "timm_vit", "timm_convnext", "cnn_bn", "cnn_gn")


def modern_pairs(tool):
    """torch's dynamo export with optimize=True (weights folded into transposed val_N
    initializers, renamed back by the adapter; BatchNorm folded) and with optimize=False
    (every weight under its torch name) hold the same weights: their outputs agree."""
    bad = 0
    ids = (np.arange(16).reshape(2, 8) * 7 % 128).astype(np.int64)
    img = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    names = sorted(f[:-5] for f in os.listdir(MODERN) if f.endswith(".onnx") and
                   os.path.exists(os.path.join(MODERN, f[:-5] + "_noopt.onnx")))
    for name in names:
        feeds = [img] if name in IMAGE_MODELS else [ids]
        try:
            a = run(tool, onnx.load(os.path.join(MODERN, name + ".onnx")), feeds)[0]
            b = run(tool, onnx.load(os.path.join(MODERN, name + "_noopt.onnx")), feeds)[0]
        except RuntimeError as e:
            print(f"FAIL modern {name}: {e}")
            bad += 1
            continue
        err = float(np.max(np.abs(a - b)) / np.max(np.abs(b)))
        ok = a.shape == b.shape and err < 1e-5
        print(f"{'ok  ' if ok else 'FAIL'} modern {name} optimize=True vs False: rel err {err:.1e}")
        bad += not ok
    return bad


def main():
    tool = sys.argv[1]
    bad = modern_pairs(tool) if os.path.isdir(MODERN) else 0
    for name, m, feeds, want in cases():
        try:
            got = run(tool, m, feeds)
        except RuntimeError as e:
            print(f"FAIL {name}: {e}")
            bad += 1
            continue
        err = max(float(np.max(np.abs(g - w)) / (1e-12 + float(np.max(np.abs(w)))))
                  for g, w in zip(got, want))
        ok = all(g.shape == w.shape for g, w in zip(got, want)) and err < 1e-5
        print(f"{'ok  ' if ok else 'FAIL'} {name}: rel err {err:.1e}")
        bad += not ok
    print(f"{bad} failures")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
