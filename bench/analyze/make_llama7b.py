#!/usr/bin/python3
"""Writes a LLaMA-7B-shaped ONNX graph whose weights are external data that is never written.

Usage: /usr/bin/python3 bench/analyze/make_llama7b.py OUT.onnx [--layers 32] [--seq 16]

The graph, built with the onnx helper API (no torch, a few seconds): token embedding
(vocab 32000, d_model 4096), 32 decoder layers of RMSNorm -> grouped-query attention
(32 query heads, 8 key/value heads, head size 128, rotary position embedding,
causal mask, softmax) -> residual add -> RMSNorm -> SwiGLU MLP (11008) -> residual
add, then a final RMSNorm and the output projection to the vocabulary; batch 1,
--seq tokens, opset 17. Weight matrices are stored [in, out] and applied with
MatMul. About 6.0 G float32 parameters (24 GB).

Every trainable weight is an initializer with data_location EXTERNAL in one file,
OUT_weights.bin next to the model, at consecutive offsets. That file is created
sparse (truncated to its full size: no disk used, reads give zeros) so that the
locations are valid, and made unreadable (mode 000): see bench_analyze.py for how
"never opened" is checked. RoPE cos/sin tables and the causal mask are inline
Constant nodes, reshape targets inline int64 initializers.
"""
import argparse
import math
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

VOCAB, D, HEADS, KV_HEADS, FFN = 32000, 4096, 32, 8, 11008
HEAD = D // HEADS


class Builder:
    def __init__(self, data_name):
        self.nodes, self.inits, self.offset, self.data_name = [], [], 0, data_name
        self.count = 0

    def name(self, base):
        self.count += 1
        return f"{base}_{self.count}"

    def node(self, op, inputs, out=None, **attrs):
        out = out or self.name(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [out], name=out + "_node", **attrs))
        return out

    def weight(self, name, dims):
        """A float32 initializer whose bytes are in the external file."""
        t = TensorProto()
        t.name, t.data_type = name, TensorProto.FLOAT
        t.dims.extend(dims)
        t.data_location = TensorProto.EXTERNAL
        length = 4 * int(np.prod(dims))
        for k, v in (("location", self.data_name), ("offset", str(self.offset)),
                     ("length", str(length))):
            e = t.external_data.add()
            e.key, e.value = k, v
        self.offset += length
        self.inits.append(t)
        return name

    def ints(self, values):
        name = self.name("shape")
        self.inits.append(numpy_helper.from_array(np.array(values, dtype=np.int64), name))
        return name

    def const(self, array):
        name = self.name("const")
        self.nodes.append(helper.make_node(
            "Constant", [], [name], name=name + "_node",
            value=numpy_helper.from_array(array.astype(np.float32), name + "_value")))
        return name


def rms_norm(b, x, prefix):
    sq = b.node("Pow", [x, b.const(np.array(2.0))])
    ms = b.node("ReduceMean", [sq], axes=[-1], keepdims=1)
    rms = b.node("Sqrt", [b.node("Add", [ms, b.const(np.array(1e-6))])])
    return b.node("Mul", [b.node("Div", [x, rms]), b.weight(prefix + ".weight", [D])])


def rotate(b, x, cos, sin):
    """x * cos + rotate_half(x) * sin on the last axis (size HEAD)."""
    half = HEAD // 2
    x1 = b.node("Slice", [x, b.ints([0]), b.ints([half]), b.ints([-1])])
    x2 = b.node("Slice", [x, b.ints([half]), b.ints([HEAD]), b.ints([-1])])
    rot = b.node("Concat", [b.node("Neg", [x2]), x1], axis=-1)
    return b.node("Add", [b.node("Mul", [x, cos]), b.node("Mul", [rot, sin])])


def layer(b, x, i, seq, cos, sin, mask):
    p = f"layers.{i}"
    h = rms_norm(b, x, p + ".input_layernorm")
    q = b.node("MatMul", [h, b.weight(p + ".self_attn.q_proj.weight", [D, D])])
    k = b.node("MatMul", [h, b.weight(p + ".self_attn.k_proj.weight", [D, KV_HEADS * HEAD])])
    v = b.node("MatMul", [h, b.weight(p + ".self_attn.v_proj.weight", [D, KV_HEADS * HEAD])])
    q = b.node("Transpose", [b.node("Reshape", [q, b.ints([1, seq, HEADS, HEAD])])],
               perm=[0, 2, 1, 3])
    k = b.node("Transpose", [b.node("Reshape", [k, b.ints([1, seq, KV_HEADS, HEAD])])],
               perm=[0, 2, 1, 3])
    v = b.node("Transpose", [b.node("Reshape", [v, b.ints([1, seq, KV_HEADS, HEAD])])],
               perm=[0, 2, 1, 3])
    q, k = rotate(b, q, cos, sin), rotate(b, k, cos, sin)

    def repeat_kv(t):  # [1, KV, S, HEAD] -> [1, HEADS, S, HEAD]
        t = b.node("Unsqueeze", [t, b.ints([2])])
        t = b.node("Expand", [t, b.ints([1, KV_HEADS, HEADS // KV_HEADS, seq, HEAD])])
        return b.node("Reshape", [t, b.ints([1, HEADS, seq, HEAD])])

    k, v = repeat_kv(k), repeat_kv(v)
    s = b.node("MatMul", [q, b.node("Transpose", [k], perm=[0, 1, 3, 2])])
    s = b.node("Add", [b.node("Mul", [s, b.const(np.array(1 / math.sqrt(HEAD)))]), mask])
    a = b.node("MatMul", [b.node("Softmax", [s], axis=-1), v])
    a = b.node("Reshape", [b.node("Transpose", [a], perm=[0, 2, 1, 3]), b.ints([1, seq, D])])
    x = b.node("Add", [x, b.node("MatMul", [a, b.weight(p + ".self_attn.o_proj.weight", [D, D])])])
    h = rms_norm(b, x, p + ".post_attention_layernorm")
    g = b.node("MatMul", [h, b.weight(p + ".mlp.gate_proj.weight", [D, FFN])])
    u = b.node("MatMul", [h, b.weight(p + ".mlp.up_proj.weight", [D, FFN])])
    m = b.node("Mul", [b.node("Mul", [g, b.node("Sigmoid", [g])]), u])
    return b.node("Add", [x, b.node("MatMul", [m, b.weight(p + ".mlp.down_proj.weight", [FFN, D])])])


def build(out, layers, seq):
    data_name = os.path.splitext(os.path.basename(out))[0] + "_weights.bin"
    b = Builder(data_name)
    pos = np.arange(seq)[:, None] / (10000 ** (np.arange(0, HEAD, 2) / HEAD))[None, :]
    ang = np.concatenate([pos, pos], axis=-1)  # [S, HEAD]
    cos, sin = b.const(np.cos(ang)), b.const(np.sin(ang))
    mask = b.const(np.triu(np.full((seq, seq), -1e9), 1))
    x = b.node("Gather", [b.weight("embed_tokens.weight", [VOCAB, D]), "input_ids"], axis=0)
    for i in range(layers):
        x = layer(b, x, i, seq, cos, sin, mask)
    x = rms_norm(b, x, "norm")
    b.node("MatMul", [x, b.weight("lm_head.weight", [D, VOCAB])], out="logits")
    graph = helper.make_graph(
        b.nodes, "llama7b",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, [1, seq])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, seq, VOCAB])],
        initializer=b.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="bench/analyze/make_llama7b.py")
    onnx.save_model(model, out)
    data = os.path.join(os.path.dirname(os.path.abspath(out)), data_name)
    if os.path.exists(data):
        os.chmod(data, 0o600)
    with open(data, "wb") as f:
        f.truncate(b.offset)  # sparse
    os.chmod(data, 0)
    params = sum(int(np.prod(t.dims)) for t in b.inits if t.data_location == TensorProto.EXTERNAL)
    return {"model": out, "weights": data, "weight_bytes": b.offset, "parameters": params,
            "nodes": len(b.nodes), "layers": layers}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--layers", type=int, default=32)
    ap.add_argument("--seq", type=int, default=16)
    args = ap.parse_args()
    info = build(args.out, args.layers, args.seq)
    print(f"make_llama7b: {info['model']}: {info['nodes']} nodes, {info['parameters']:,} "
          f"parameters, weights {info['weight_bytes'] / 2**30:.1f} GiB in {info['weights']} "
          "(sparse, mode 000)")


if __name__ == "__main__":
    main()
