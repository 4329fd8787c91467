#!/usr/bin/env python3
"""Small opset 18-24 models for tests/lit/Opset (built with Debian's onnx 1.12 helper;
the opset_import is set by hand, ONNX 1.12 does not know these op versions).

Usage: make_opset_models.py KIND OUT.onnx
  gelu20       x -> fc1 -> Gelu-20 -> fc2                    (MatMul + Add)
  rms23        x -> fc1 -> RMSNormalization-23 (no gain) -> fc2
  gn21         conv1 -> GroupNormalization-21 (2 groups) -> Relu -> conv2
  gn18_dyn     conv1 -> GroupNormalization-18 (2 groups, one scale/bias per group) -> Tanh
               -> conv2, the batch a symbolic "batch"
  attn23       x -> q/k/v proj -> [B,H,S,D] -> Attention-23 (4 query heads, 2 KV heads,
               causal) -> o proj
  attn23_3d    the same with 3-D Q/K/V (q_num_heads / kv_num_heads attributes)
  rope23       attn23 with RotaryEmbedding-23 on q and k (constant caches and positions)
  attn23_dyn   attn23_3d with 3-D RotaryEmbedding-23 (num_heads) on q and k, the batch a
               symbolic "batch" (torch's dynamic batch), positions [1, S]
  attn23_dynseq  attn23_dyn with the sequence length symbolic too
  attn23_einsum  attn23_3d with the projections written as Einsum (ONNX 1.12 infers only
               its rank: Q, K and V get their shapes from symoc's shape functions)
  folded       what torch's dynamo exporter writes with optimize=True: fc.weight stored
               transposed as val_3 named only in value_info metadata folded_from; a float
               mask val_9 made by the exporter; a norm gain folded through Unsqueeze
  folded_nometa  folded without the folded_from metadata (onnxscript < 0.5.3): val_3's
               name cannot be recovered
  folded_add   adversarial: val_3 folded from a name but added (not a MatMul weight),
               so it must stay a constant
  unknown_op   an op no opset knows at opset 20
  reduce_dyn   ReduceMean-18 whose axes are a graph input
  pad_wrap     Pad-19 mode wrap by more than the axis's size
  attn_past    Attention-23 with past_key / past_value
  ir13         a valid opset-20 model with IR version 13
"""
import sys

import numpy as np
from onnx import TensorProto, ValueInfoProto, helper, numpy_helper

F = TensorProto.FLOAT
RNG = np.random.default_rng(7)


def w(name, *shape):
    return numpy_helper.from_array((0.3 * RNG.standard_normal(shape)).astype(np.float32), name)


def ints(name, v):
    return numpy_helper.from_array(np.array(v, dtype=np.int64), name)


def model(nodes, inputs, outputs, inits, opset, ir=10, value_info=()):
    g = helper.make_graph(nodes, "g", inputs, outputs, initializer=inits,
                          value_info=list(value_info))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = ir
    return m


def tensor(name, shape, t=F):
    return helper.make_tensor_value_info(name, t, shape)


def with_metadata(name, props):
    """A ValueInfoProto carrying metadata_props (field 4, IR 10), which onnx 1.12's
    proto does not have: appended as raw wire bytes."""
    vi = ValueInfoProto()
    vi.name = name
    raw = vi.SerializeToString()
    for k, v in props.items():
        entry = b"\x0a" + varint(len(k)) + k.encode() + b"\x12" + varint(len(v)) + v.encode()
        raw += b"\x22" + varint(len(entry)) + entry
    out = ValueInfoProto()
    out.ParseFromString(raw)
    return out


def varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        out += bytes([b | (0x80 if n else 0)])
        if not n:
            return out


def mlp(act_nodes, opset, extra_inits=()):
    nodes = [helper.make_node("MatMul", ["x", "fc1.weight"], ["h0"]),
             helper.make_node("Add", ["h0", "fc1.bias"], ["h"])] + act_nodes + [
             helper.make_node("MatMul", ["a", "fc2.weight"], ["y"])]
    inits = [w("fc1.weight", 8, 16), w("fc1.bias", 16), w("fc2.weight", 16, 4)] + list(extra_inits)
    return model(nodes, [tensor("x", [2, 8])], [tensor("y", [2, 4])], inits, opset)


def attention(kind):
    b, s, d, hq, hkv, hd = 2, 6, 16, 4, 2, 4
    nodes = [helper.make_node("MatMul", ["x", f"{p}.weight"], [p]) for p in ("q", "k", "v")]
    if kind == "attn23_einsum":
        nodes = [helper.make_node("Einsum", ["x", f"{p}.weight"], [p], equation="bsd,de->bse")
                 for p in ("q", "k", "v")]
        kind = "attn23_3d"
    inits = [w("q.weight", d, hq * hd), w("k.weight", d, hkv * hd), w("v.weight", d, hkv * hd),
             w("o.weight", hq * hd, d)]
    if kind in ("attn23_dyn", "attn23_dynseq"):
        theta = np.outer(np.arange(s), 1.0 / 10000 ** (np.arange(0, hd, 2) / hd))
        inits += [numpy_helper.from_array(np.cos(theta).astype(np.float32), "cos_cache"),
                  numpy_helper.from_array(np.sin(theta).astype(np.float32), "sin_cache"),
                  ints("pos", [list(range(s))])]
        for p, h in (("q", hq), ("k", hkv)):
            nodes.append(helper.make_node("RotaryEmbedding", [p, "cos_cache", "sin_cache", "pos"],
                                          [p + "_rot"], num_heads=h))
        nodes.append(helper.make_node("Attention", ["q_rot", "k_rot", "v"], ["att"], is_causal=1,
                                      q_num_heads=hq, kv_num_heads=hkv))
        nodes.append(helper.make_node("MatMul", ["att", "o.weight"], ["y"]))
        shape = ["batch", "seq" if kind == "attn23_dynseq" else s, d]
        return model(nodes, [tensor("x", shape)], [tensor("y", shape)], inits, 23)
    if kind == "attn23_3d":
        nodes.append(helper.make_node("Attention", ["q", "k", "v"], ["att"], is_causal=1,
                                      q_num_heads=hq, kv_num_heads=hkv))
    else:
        inits += [ints("shq", [b, s, hq, hd]), ints("shkv", [b, s, hkv, hd]),
                  ints("shout", [b, s, hq * hd])]
        for p, sh in (("q", "shq"), ("k", "shkv"), ("v", "shkv")):
            nodes += [helper.make_node("Reshape", [p, sh], [p + "_r"]),
                      helper.make_node("Transpose", [p + "_r"], [p + "_h"], perm=[0, 2, 1, 3])]
        q, k = "q_h", "k_h"
        if kind == "rope23":
            theta = np.outer(np.arange(s), 1.0 / 10000 ** (np.arange(0, hd, 2) / hd))
            inits += [numpy_helper.from_array(np.cos(theta).astype(np.float32), "cos_cache"),
                      numpy_helper.from_array(np.sin(theta).astype(np.float32), "sin_cache"),
                      ints("pos", [list(range(s))] * b)]
            nodes += [helper.make_node("RotaryEmbedding", [x, "cos_cache", "sin_cache", "pos"],
                                       [x + "_rot"]) for x in (q, k)]
            q, k = q + "_rot", k + "_rot"
        nodes += [helper.make_node("Attention", [q, k, "v_h"], ["att_h"], is_causal=1),
                  helper.make_node("Transpose", ["att_h"], ["att_t"], perm=[0, 2, 1, 3]),
                  helper.make_node("Reshape", ["att_t", "shout"], ["att"])]
    nodes.append(helper.make_node("MatMul", ["att", "o.weight"], ["y"]))
    return model(nodes, [tensor("x", [b, s, d])], [tensor("y", [b, s, d])], inits, 23)


def folded(adversarial):
    # x[2,3,8] -> gain * x -> Linear(8->4) as MatMul with the transposed weight -> + mask
    nodes = [helper.make_node("Mul", ["x", "val_1"], ["g"]),
             helper.make_node("MatMul" if not adversarial else "Add",
                              ["g", "val_3"] if not adversarial else ["g", "val_3"], ["h"])]
    inits = [numpy_helper.from_array((1 + 0.2 * RNG.standard_normal((1, 1, 8))).astype(np.float32), "val_1")]
    if adversarial:
        inits.append(w("val_3", 2, 3, 8))
        out_shape = [2, 3, 8]
    else:
        inits.append(w("val_3", 8, 4))
        out_shape = [2, 3, 4]
    nodes.append(helper.make_node("Add", ["h", "val_9"], ["y"]))
    inits.append(numpy_helper.from_array(np.triu(np.full(out_shape[-2:], -1e4, np.float32), 1)
                                         if not adversarial else
                                         np.zeros(out_shape[-2:], np.float32) - 1, "val_9"))
    vi = [with_metadata("val_1", {"pkg.onnxscript.optimizer.folded_from": "['norm.weight']"}),
          with_metadata("val_3", {"pkg.onnxscript.optimizer.folded_from": "['fc.weight']"}),
          with_metadata("val_9", {"pkg.onnxscript.optimizer.folded_from":
                                  "['arange', 'triu', 'val_7']"})]
    return model(nodes, [tensor("x", [2, 3, 8])], [tensor("y", out_shape)], inits, 20,
                 value_info=vi)


def main():
    kind, out = sys.argv[1], sys.argv[2]
    x8 = [tensor("x", [2, 3, 8])]
    if kind == "gelu20":
        m = mlp([helper.make_node("Gelu", ["h"], ["a"])], 20)
    elif kind == "rms23":
        m = mlp([helper.make_node("RMSNormalization", ["h"], ["a"], epsilon=1e-6)], 23)
    elif kind == "gn21":
        nodes = [helper.make_node("Conv", ["x", "conv1.weight"], ["c"], pads=[1, 1, 1, 1]),
                 helper.make_node("GroupNormalization", ["c", "gn.weight", "gn.bias"], ["n"],
                                  num_groups=2),
                 helper.make_node("Relu", ["n"], ["r"]),
                 helper.make_node("Conv", ["r", "conv2.weight"], ["y"])]
        m = model(nodes, [tensor("x", [2, 3, 5, 5])], [tensor("y", [2, 4, 5, 5])],
                  [w("conv1.weight", 8, 3, 3, 3), w("gn.weight", 8), w("gn.bias", 8),
                   w("conv2.weight", 4, 8, 1, 1)], 21)
    elif kind == "gn18_dyn":
        nodes = [helper.make_node("Conv", ["x", "conv1.weight"], ["c"], pads=[1, 1, 1, 1]),
                 helper.make_node("GroupNormalization", ["c", "gn.weight", "gn.bias"], ["n"],
                                  num_groups=2),
                 helper.make_node("Tanh", ["n"], ["r"]),
                 helper.make_node("Conv", ["r", "conv2.weight"], ["y"])]
        m = model(nodes, [tensor("x", ["batch", 3, 5, 5])], [tensor("y", ["batch", 4, 5, 5])],
                  [w("conv1.weight", 8, 3, 3, 3), w("gn.weight", 2), w("gn.bias", 2),
                   w("conv2.weight", 4, 8, 1, 1)], 18)
    elif kind in ("attn23", "attn23_3d", "rope23", "attn23_dyn", "attn23_dynseq", "attn23_einsum"):
        m = attention(kind)
    elif kind in ("folded", "folded_add"):
        m = folded(kind == "folded_add")
    elif kind == "folded_nometa":
        m = folded(False)
        keep = [vi for vi in m.graph.value_info if vi.name != "val_3"]
        kind_md = with_metadata("norm.weight.unused", {
            "pkg.torch.export.graph_signature.InputSpec.kind": "PARAMETER"})
        del m.graph.value_info[:]
        m.graph.value_info.extend(keep + [kind_md])
    elif kind == "unknown_op":
        m = model([helper.make_node("Frobnicate", ["x"], ["y"])], x8, [tensor("y", None)], [], 20)
    elif kind == "reduce_dyn":
        m = model([helper.make_node("ReduceMean", ["x", "axes"], ["y"])],
                  x8 + [tensor("axes", [1], TensorProto.INT64)], [tensor("y", None)], [], 18)
    elif kind == "pad_wrap":
        m = model([helper.make_node("Pad", ["x", "pads"], ["y"], mode="wrap")], x8,
                  [tensor("y", None)], [ints("pads", [0, 0, 9, 0, 0, 1])], 19)
    elif kind == "attn_past":
        m = model([helper.make_node("Attention", ["x", "x", "x", "", "pk", "pv"], ["y"],
                                    q_num_heads=2, kv_num_heads=2)],
                  x8 + [tensor("pk", [2, 2, 1, 4]), tensor("pv", [2, 2, 1, 4])],
                  [tensor("y", None)], [], 23)
    elif kind == "ir13":
        m = mlp([helper.make_node("Relu", ["h"], ["a"])], 20)
        m.ir_version = 13
    else:
        sys.exit(f"unknown kind {kind}")
    with open(out, "wb") as f:
        f.write(m.SerializeToString())


if __name__ == "__main__":
    main()
