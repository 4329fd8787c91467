"""Write a small grouped-query attention block as ONNX (onnx helper API, random weights).

Usage: make_gqa.py OUT.onnx [--heads H] [--kv KV] [--dim D] [--rope] [--seed S]

Shapes: input x [1, T=5, D]; q = x Wq [D, D] -> [1, H, T, d]; k, v = x Wk/Wv [D, KV*d]
-> [1, KV, T, d], repeated to H heads as transformers' repeat_kv does (Unsqueeze,
Expand, Reshape: query head h reads KV head h // (H/KV)); softmax(q k^T) v -> Wo [D, D].
With --rope, q and k get rotate-half RoPE (fixed cos/sin tables, the same for every head).
"""
import argparse
import numpy as np
import onnx
from onnx import helper, numpy_helper, TensorProto

ap = argparse.ArgumentParser()
ap.add_argument("out")
ap.add_argument("--heads", type=int, default=8)
ap.add_argument("--kv", type=int, default=2)
ap.add_argument("--dim", type=int, default=16)
ap.add_argument("--rope", action="store_true")
ap.add_argument("--seed", type=int, default=0)
a = ap.parse_args()
H, KV, D, T = a.heads, a.kv, a.dim, 5
d = D // H
rng = np.random.default_rng(a.seed)
inits, nodes = [], []


def init(name, arr):
    inits.append(numpy_helper.from_array(np.asarray(arr), name))
    return name


def node(op, ins, out, **kw):
    nodes.append(helper.make_node(op, ins, [out], **kw))
    return out


def ints(name, v):
    return init(name, np.array(v, dtype=np.int64))


wq = init("Wq", rng.standard_normal((D, D)).astype(np.float32) / np.sqrt(D))
wk = init("Wk", rng.standard_normal((D, KV * d)).astype(np.float32) / np.sqrt(D))
wv = init("Wv", rng.standard_normal((D, KV * d)).astype(np.float32) / np.sqrt(D))
wo = init("Wo", rng.standard_normal((D, D)).astype(np.float32) / np.sqrt(D))
q = node("MatMul", ["x", wq], "q")
k = node("MatMul", ["x", wk], "k")
v = node("MatMul", ["x", wv], "v")
q = node("Transpose", [node("Reshape", [q, ints("sq", [1, T, H, d])], "q4")], "qh", perm=[0, 2, 1, 3])
k = node("Transpose", [node("Reshape", [k, ints("skv", [1, T, KV, d])], "k4")], "kh", perm=[0, 2, 1, 3])
v = node("Transpose", [node("Reshape", [v, ints("skv2", [1, T, KV, d])], "v4")], "vh", perm=[0, 2, 1, 3])
if a.rope:
    pos = np.arange(T)[:, None] / (10000 ** (np.arange(0, d, 2) / d))[None, :]
    ang = np.concatenate([pos, pos], axis=-1).astype(np.float32)
    cos, sin = init("cos", np.cos(ang)), init("sin", np.sin(ang))
    half = d // 2

    def rope(x, p):
        x1 = node("Slice", [x, ints(p + "s0", [0]), ints(p + "e0", [half]), ints(p + "a0", [-1])], p + "x1")
        x2 = node("Slice", [x, ints(p + "s1", [half]), ints(p + "e1", [d]), ints(p + "a1", [-1])], p + "x2")
        rot = node("Concat", [node("Neg", [x2], p + "n"), x1], p + "rot", axis=-1)
        return node("Add", [node("Mul", [x, cos], p + "c"), node("Mul", [rot, sin], p + "s")], p + "r")

    q, k = rope(q, "rq"), rope(k, "rk")


def repeat(t, p):
    t = node("Unsqueeze", [t, ints(p + "ax", [2])], p + "u")
    t = node("Expand", [t, ints(p + "se", [1, KV, H // KV, T, d])], p + "e")
    return node("Reshape", [t, ints(p + "sr", [1, H, T, d])], p + "r")


k, v = repeat(k, "k"), repeat(v, "v")
s = node("MatMul", [q, node("Transpose", [k], "kt", perm=[0, 1, 3, 2])], "sc")
p = node("Softmax", [s], "p", axis=-1)
o = node("MatMul", [p, v], "o")
o = node("Reshape", [node("Transpose", [o], "ot", perm=[0, 2, 1, 3]), ints("so", [1, T, D])], "om")
node("MatMul", [o, wo], "y")
g = helper.make_graph(nodes, "gqa", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, T, D])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, T, D])], inits)
m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
m.ir_version = 8
onnx.checker.check_model(m)
onnx.save(m, a.out)
