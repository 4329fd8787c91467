#!/usr/bin/python3
"""Independent check of `symoc analyze --json` claims on a small ONNX-text model.

Usage: apply_claims.py MODEL.onnxtxt CLAIMS.json

Reads the claims document the way an external tool would (docs/symmetry-schema.md:
members with initializer/axis/offset/extent/stride/variance, groups S, Z2, O, GL,
Scale+ and rope with its pairs/rotation/scale), draws three random elements per linear
claim (never the identity), applies it to the initializers with numpy and runs the model with a tiny numpy
interpreter (MatMul, Slice, Neg, Concat, Mul, Add, Sub, Transpose, Softmax, Unsqueeze,
Reshape, Constant, Tanh, Cast, Gather, Cos, Sin, Pow, ReduceMean,
Relu, Sigmoid): no symoc code involved. Prints one
line per claim, "ok ID err" or "BAD ID err", and exits 1 if any claim changes the
output (relative error > 1e-9).
"""
import json
import sys

import numpy as np
import onnx
import onnx.parser
from onnx import numpy_helper


def run(model, inits, inputs):
    env = dict(inits)
    env.update(inputs)
    for n in model.graph.node:
        a = {x.name: onnx.helper.get_attribute_value(x) for x in n.attribute}
        i = [env[x] if x else None for x in n.input]
        op = n.op_type
        if op == "Constant":
            out = numpy_helper.to_array(a["value"]).astype(np.float64) \
                if a["value"].data_type == 1 else numpy_helper.to_array(a["value"])
        elif op == "MatMul": out = i[0] @ i[1]
        elif op in ("Mul", "Add", "Sub", "Div"):
            out = {"Mul": np.multiply, "Add": np.add, "Sub": np.subtract, "Div": np.divide}[op](i[0], i[1])
        elif op == "Neg": out = -i[0]
        elif op in ("Tanh", "Cos", "Sin", "Sqrt"): out = getattr(np, op.lower())(i[0])
        elif op == "Pow": out = np.power(i[0], i[1])
        elif op == "Relu": out = np.maximum(i[0], 0)
        elif op == "Sigmoid": out = 1 / (1 + np.exp(-i[0]))
        elif op == "ReduceMean": out = i[0].mean(axis=tuple(a["axes"]), keepdims=bool(a.get("keepdims", 1)))
        elif op == "Cast": out = i[0].astype(np.float64 if a["to"] == 1 else np.int64)
        elif op == "Transpose": out = np.transpose(i[0], a["perm"])
        elif op == "Concat": out = np.concatenate(i, axis=a["axis"])
        elif op == "Unsqueeze": out = np.expand_dims(i[0], tuple(int(x) for x in i[1]))
        elif op == "Reshape": out = i[0].reshape(tuple(int(x) for x in i[1]))
        elif op == "Gather": out = np.take(i[0], i[1], axis=a.get("axis", 0))
        elif op == "Slice":
            sl = [slice(None)] * i[0].ndim
            steps = i[4] if len(i) > 4 else [1]
            sl[int(i[3][0])] = slice(int(i[1][0]), int(min(i[2][0], 2**62)), int(steps[0]))
            out = i[0][tuple(sl)]
        elif op == "Softmax":
            e = np.exp(i[0] - i[0].max(axis=a["axis"], keepdims=True))
            out = e / e.sum(axis=a["axis"], keepdims=True)
        else:
            sys.exit("apply_claims.py: op %s not supported" % op)
        env[n.output[0]] = out
    return [env[o.name] for o in model.graph.output]


def element(group, n, rng):
    """A random element that is not the identity (a vacuous check otherwise)."""
    for _ in range(100):
        a = draw(group, n, rng)
        if not np.allclose(a, np.eye(n)):
            return a
    return a


def draw(group, n, rng):
    name = group["name"]
    if name == "S": return np.eye(n)[rng.permutation(n)]
    if name == "Z2": return np.diag(rng.choice([-1.0, 1.0], n))
    if name == "Scale+": return np.diag(np.exp(rng.uniform(-0.5, 0.5, n)))
    if name in ("O", "GL"):
        q, _ = np.linalg.qr(rng.standard_normal((n, n)))
        return q if name == "O" else q @ np.diag(np.exp(rng.uniform(-0.5, 0.5, n)))
    if name == "rope":
        m = np.eye(n)
        for i, j in group["pairs"]:
            r = np.exp(rng.uniform(-0.5, 0.5)) if group.get("scale", True) else 1.0
            rot = group.get("rotation", "SO2")
            t = rng.uniform(0, 2 * np.pi) if rot == "SO2" else (np.pi * rng.integers(2) if rot == "sign" else 0.0)
            m[i, i], m[i, j], m[j, i], m[j, j] = r * np.cos(t), -r * np.sin(t), r * np.sin(t), r * np.cos(t)
        return m
    sys.exit("apply_claims.py: group %s not supported" % name)


def apply(t, mem, a):
    m = np.linalg.inv(a).T if mem["variance"] == "in" else a
    idx = [mem["offset"] + k * mem["stride"] for k in range(mem["extent"])]
    sub = np.moveaxis(np.take(t, idx, axis=mem["axis"]), mem["axis"], 0)
    new = np.tensordot(m, sub, axes=1)
    t = np.moveaxis(t, mem["axis"], 0).copy()
    t[idx] = new
    return np.moveaxis(t, 0, mem["axis"])


def main():
    model = onnx.parser.parse_model(open(sys.argv[1]).read())
    claims = json.load(open(sys.argv[2]))["claims"]
    inits = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in model.graph.initializer}
    rng = np.random.default_rng(0)
    inputs = {}
    for v in model.graph.input:
        if v.name in inits: continue
        shape = [d.dim_value for d in v.type.tensor_type.shape.dim]
        inputs[v.name] = rng.integers(0, 6, shape) if v.type.tensor_type.elem_type == 7 \
            else rng.standard_normal(shape)
    base = run(model, inits, inputs)
    bad = 0
    for c in claims:
        if c["kind"] != "linear": continue
        err = 0.0
        for _ in range(3):  # three elements: one may lie in a subgroup that holds
            p = {k: v.copy() for k, v in inits.items()}
            a = element(c["group"], c["n"], rng)
            for mem in c["members"]:
                p[mem["initializer"]] = apply(p[mem["initializer"]], mem, a)
            out = run(model, p, inputs)
            err = max([err] + [np.abs(x - y).max() / max(np.abs(y).max(), 1e-30)
                               for x, y in zip(out, base)])
        ok = err <= 1e-9
        bad += not ok
        print("%s %s %.1e" % ("ok" if ok else "BAD", c["id"], err))
    sys.exit(1 if bad else 0)


main()
