#!/usr/bin/python3
"""Export small attention models in spellings of fused qkv projections and rotary embeddings
that symoc's canonicalization passes map onto existing rules, plus adversarial variants.

Usage: /usr/bin/python3 models/spellings/export_spellings.py [--out DIR] [NAME ...]

Debian's torch 1.13 (no timm, no transformers: the modules below reproduce the spellings
line for line). Conventions of models/export_fixtures.py: training-mode export, constant
folding off, opset 14, fixed seed per model, biases and norm gains random, no Dropout, rotary
tables plain tensor attributes (Constant nodes). Deterministic: a rerun writes identical files.

Fused qkv (x [2, 9, 32] -> 2 pre-norm blocks -> norm -> head Linear(32 -> 10)):
  fused_timm        timm's ViT Attention: qkv(x).reshape(B, N, 3, H, hd).permute(2, 0, 3, 1, 4),
                    q, k, v = qkv.unbind(0), q * scale @ k^T, softmax, @ v, transpose(1, 2),
                    reshape(B, N, C), proj; timm's Block and Mlp (GELU). 4 heads of 8.
  fused_h3d         (H, 3, d) layout (BLOOM): qkv.view(B, N, H, 3, hd); q, k, v = qkv[..., i, :].
  fused_gqa         grouped layout (InternLM2): wqkv -> (B, N, KV, g + 2, hd); q = [..., :g, :]
                    merged to (B, N, KV * g, hd); k = [..., -2, :], v = [..., -1, :]; K/V
                    repeated by transformers' repeat_kv. 4 query heads of 8 over 2 KV heads.
Adversarial (must get no wrong claim):
  adv_fused_interleave  (H, 3, d) data permuted as if (3, H, d): with H = 3 (x [2, 9, 24]) the
                        code runs, and
                        "q, k, v" are heads 0, 1, 2 of the fused output, each with its three
                        slots taken as heads.
  adv_fused_mixheads    timm's reshape with permute(3, 0, 2, 1, 4): unbind selects along the
                        head factor (H = 3), and each "q, k, v" has the q/k/v slots as heads.
  adv_fused_index       k = qkv[i] with i a model input (a non-constant index).
  adv_fused_reorder     k, v = qkv[[2, 1]] (indices not a contiguous ascending range).
  adv_fused_merge       the factor axis merged back with the channels:
                        reshape(B, N, 3, H, hd).transpose(2, 3).reshape(B, N, H, 3 hd), sliced.
Rotary on sliced halves (x [2, 6, 32], q/k/v/o Linear, 4 heads of 8, causal mask, RoPE on
q and k with half tables cos/sin [6, 4], theta 100):
  rope_sliced       cat(x1 * cos - x2 * sin, x2 * cos + x1 * sin), x1, x2 = x[..., :4], x[..., 4:]
  rope_chunk        the same with x1, x2 = x.chunk(2, -1) (Split) and the other rotation sense
                    and term orders: cat(cos * x1 + x2 * sin, -(x1 * sin) + x2 * cos)
Adversarial rotary (not a rotation of each pair, or not what the rewrite assumes):
  adv_rope_swapped  cos and sin swapped in the second half: cat(x1 c - x2 s, x2 s + x1 c)
  adv_rope_sign     equal signs: cat(x1 c - x2 s, x2 c - x1 s)
  adv_rope_cover    halves [0, 3) and [4, 7) that do not cover the 8 channels
  adv_rope_tables   another table in the second half: cat(x1 c - x2 s, x2 c' + x1 s)
  adv_rope_halves   halves swapped in the Concat: cat(x2 c + x1 s, x1 c - x2 s)
Gathered tables (ids, pos_ids, mask [2, 6] int64 inputs; five Embedding(., 8) summed, a head):
  adv_gather_rows   tok at ids + 1 and pos_mask at cumsum(mask) (a model input's values reach
                    the indices: token embeddings), pos at arange(T) and typ at zeros_like(ids)
                    (shape only: fixed rows, positional), pos_in at pos_ids (an input: the graph
                    cannot tell positions given as an input from tokens: embedding)
"""
import argparse
import hashlib
import io
import math
import os
import sys

import onnx
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
OPSET = 14


@torch.no_grad()
def randomize(module):
    """Random biases and norm gains (defaults 0 and 1 hide wrong permutations)."""
    for name, p in module.named_parameters():
        leaf = name.rsplit(".", 1)[-1]
        owner = module.get_submodule(name.rsplit(".", 1)[0]) if "." in name else module
        if isinstance(owner, nn.LayerNorm) and leaf == "weight":
            p.copy_(1.0 + 0.2 * torch.randn_like(p))
        elif leaf == "bias":
            p.copy_(0.2 * torch.randn_like(p))


# ------------------------------------------------------------------ fused qkv
class TimmAttention(nn.Module):
    """timm.layers.Attention (fused_attn False: torch 1.13 has no scaled_dot_product_attention),
    qkv_bias=True, no qk_norm."""

    def __init__(self, dim, num_heads, layout="timm"):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.layout = layout
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.q_norm = nn.Identity()
        self.k_norm = nn.Identity()
        self.proj = nn.Linear(dim, dim)

    def split(self, x, index):
        B, N, C = x.shape
        H, hd = self.num_heads, self.head_dim
        qkv = self.qkv(x)
        if self.layout == "timm":
            qkv = qkv.reshape(B, N, 3, H, hd).permute(2, 0, 3, 1, 4)
            return qkv.unbind(0)
        if self.layout == "h3d":   # BLOOM: view(.., H, 3, hd), fused_qkv[..., i, :]
            qkv = qkv.view(B, N, H, 3, hd)
            return [qkv[..., i, :].transpose(1, 2) for i in range(3)]
        if self.layout == "interleave":   # (H, 3, hd) data taken as (3, H, hd): needs H == 3
            qkv = qkv.reshape(B, N, H, 3, hd).permute(2, 0, 3, 1, 4)
            return qkv.unbind(0)
        if self.layout == "mixheads":   # unbind over the heads: "q, k, v" are heads 0, 1, 2
            qkv = qkv.reshape(B, N, 3, H, hd).permute(3, 0, 2, 1, 4)
            return qkv.unbind(0)
        if self.layout == "index":
            qkv = qkv.reshape(B, N, 3, H, hd).permute(2, 0, 3, 1, 4)
            return qkv[0], qkv[index], qkv[2]
        if self.layout == "reorder":
            qkv = qkv.reshape(B, N, 3, H, hd).permute(2, 0, 3, 1, 4)
            k, v = qkv[[2, 1]].unbind(0)
            return qkv[0], k, v
        if self.layout == "merge":
            qkv = qkv.reshape(B, N, 3, H, hd).transpose(2, 3).reshape(B, N, H, 3 * hd)
            return [qkv[..., i * hd:(i + 1) * hd].transpose(1, 2) for i in range(3)]
        raise ValueError(self.layout)

    def forward(self, x, index=None):
        B, N, C = x.shape
        q, k, v = self.split(x, index)
        q, k = self.q_norm(q), self.k_norm(k)
        q = q * self.scale
        attn = q @ k.transpose(-2, -1)
        attn = attn.softmax(dim=-1)
        x = attn @ v
        x = x.transpose(1, 2).reshape(B, N, C)
        x = self.proj(x)
        return x


def repeat_kv(hidden_states, n_rep):
    """transformers' repeat_kv."""
    batch, num_key_value_heads, slen, head_dim = hidden_states.shape
    if n_rep == 1:
        return hidden_states
    hidden_states = hidden_states[:, :, None, :, :].expand(batch, num_key_value_heads, n_rep,
                                                           slen, head_dim)
    return hidden_states.reshape(batch, num_key_value_heads * n_rep, slen, head_dim)


class GroupedFusedAttention(nn.Module):
    """InternLM2's attention without rotary: wqkv packs, per KV head, its g query heads,
    then its key and value head; einops' rearrange written as reshape."""

    def __init__(self, dim, num_heads, num_kv):
        super().__init__()
        self.num_heads, self.num_key_value_heads = num_heads, num_kv
        self.num_key_value_groups = num_heads // num_kv
        self.head_dim = dim // num_heads
        self.wqkv = nn.Linear(dim, (num_heads + 2 * num_kv) * self.head_dim, bias=False)
        self.wo = nn.Linear(num_heads * self.head_dim, dim, bias=False)

    def forward(self, hidden_states, index=None):
        bsz, q_len, _ = hidden_states.size()
        gs = 2 + self.num_key_value_groups
        qkv_states = self.wqkv(hidden_states)
        # rearrange(qkv, "b q (h gs d) -> b q h gs d", gs=gs, d=head_dim)
        qkv_states = qkv_states.reshape(bsz, q_len, -1, gs, self.head_dim)
        query_states = qkv_states[..., : self.num_key_value_groups, :]
        # rearrange(q, "b q h gs d -> b q (h gs) d")
        query_states = query_states.reshape(bsz, q_len, -1, self.head_dim)
        key_states = qkv_states[..., -2, :]
        value_states = qkv_states[..., -1, :]
        query_states = query_states.transpose(1, 2)
        key_states = key_states.transpose(1, 2)
        value_states = value_states.transpose(1, 2)
        key_states = repeat_kv(key_states, self.num_key_value_groups)
        value_states = repeat_kv(value_states, self.num_key_value_groups)
        attn_weights = torch.matmul(query_states, key_states.transpose(2, 3)) / math.sqrt(
            self.head_dim)
        attn_weights = nn.functional.softmax(attn_weights, dim=-1, dtype=torch.float32)
        attn_output = torch.matmul(attn_weights, value_states)
        attn_output = attn_output.transpose(1, 2).reshape(bsz, q_len, -1)
        return self.wo(attn_output)


class Mlp(nn.Module):
    """timm.layers.Mlp: fc1, GELU, fc2."""

    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """timm's pre-norm Block: x + attn(norm1(x)), x + mlp(norm2(x))."""

    def __init__(self, dim, attn):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = attn
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, 4 * dim)

    def forward(self, x, index=None):
        x = x + self.attn(self.norm1(x), index)
        x = x + self.mlp(self.norm2(x))
        return x


class FusedModel(nn.Module):
    def __init__(self, make_attn, dim=32, depth=2, classes=10):
        super().__init__()
        self.blocks = nn.ModuleList([Block(dim, make_attn()) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, classes)

    def forward(self, x, index=None):
        for blk in self.blocks:
            x = blk(x, index)
        return self.head(self.norm(x))


# ------------------------------------------------------------------ rotary on halves
class RopeAttention(nn.Module):
    def __init__(self, dim, heads, seq, spelling):
        super().__init__()
        self.h, self.d = heads, dim // heads
        self.spelling = spelling
        self.q_proj = nn.Linear(dim, dim, bias=False)
        self.k_proj = nn.Linear(dim, dim, bias=False)
        self.v_proj = nn.Linear(dim, dim, bias=False)
        self.o_proj = nn.Linear(dim, dim, bias=False)
        half = self.d // 2
        inv = 1.0 / (100.0 ** (torch.arange(half, dtype=torch.float32) / half))
        freqs = torch.outer(torch.arange(seq, dtype=torch.float32), inv)   # [seq, d/2]
        self.cos, self.sin = freqs.cos(), freqs.sin()
        self.cos2 = (2 * freqs).cos()
        self.mask = torch.full((seq, seq), float("-inf")).triu(1)

    def rope(self, x):
        c, s, half, sp = self.cos, self.sin, self.d // 2, self.spelling
        if sp == "chunk":
            x1, x2 = x.chunk(2, dim=-1)
            return torch.cat([c * x1 + x2 * s, -(x1 * s) + x2 * c], dim=-1)
        x1, x2 = x[..., :half], x[..., half:]
        if sp == "sliced":
            return torch.cat([x1 * c - x2 * s, x2 * c + x1 * s], dim=-1)
        if sp == "swapped":
            return torch.cat([x1 * c - x2 * s, x2 * s + x1 * c], dim=-1)
        if sp == "sign":
            return torch.cat([x1 * c - x2 * s, x2 * c - x1 * s], dim=-1)
        if sp == "tables":
            return torch.cat([x1 * c - x2 * s, x2 * self.cos2 + x1 * s], dim=-1)
        if sp == "halves":
            return torch.cat([x2 * c + x1 * s, x1 * c - x2 * s], dim=-1)
        if sp == "cover":
            a, b = x[..., :half - 1], x[..., half:2 * half - 1]
            c, s = c[:, :half - 1], s[:, :half - 1]
            return torch.cat([a * c - b * s, x[..., half - 1:half], b * c + a * s,
                              x[..., 2 * half - 1:]], dim=-1)
        raise ValueError(sp)

    def forward(self, x):
        B, T, C = x.shape
        q = self.q_proj(x).view(B, T, self.h, self.d).transpose(1, 2)
        k = self.k_proj(x).view(B, T, self.h, self.d).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.h, self.d).transpose(1, 2)
        q, k = self.rope(q), self.rope(k)
        a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(self.d) + self.mask, dim=-1)
        return self.o_proj((a @ v).transpose(1, 2).reshape(B, T, C))


class RopeModel(nn.Module):
    def __init__(self, spelling, dim=32, heads=4, seq=6):
        super().__init__()
        self.inp = nn.Linear(dim, dim)
        self.attn = RopeAttention(dim, heads, seq, spelling)
        self.out = nn.Linear(dim, 10)

    def forward(self, x):
        h = self.inp(x)
        return self.out(h + self.attn(h))


# ------------------------------------------------------------------ table
class GatherRows(nn.Module):
    """Five tables read by Gather: which ones are token embeddings (indices that carry a model
    input's values) and which are read at fixed rows (a spelling of an added positional table)."""

    def __init__(self, vocab=16, dim=8, seq=6):
        super().__init__()
        self.tok = nn.Embedding(vocab, dim)         # ids + 1: an input's values -> embedding
        self.pos = nn.Embedding(seq, dim)           # arange(T) from ids' shape -> positional
        self.typ = nn.Embedding(2, dim)             # zeros_like(ids): shape only -> positional
        self.pos_in = nn.Embedding(seq, dim)        # position ids given as an input -> embedding
        self.pos_mask = nn.Embedding(seq + 1, dim)  # cumsum(mask), an input's values -> embedding
        self.head = nn.Linear(dim, vocab)

    def forward(self, ids, pos_ids, mask):
        h = (self.tok(ids + 1) + self.pos(torch.arange(ids.shape[1])) + self.typ(torch.zeros_like(ids))
             + self.pos_in(pos_ids) + self.pos_mask(torch.cumsum(mask, 1)))
        return self.head(h)


def gather_inputs():
    g = torch.Generator().manual_seed(3)
    return (torch.randint(0, 15, (2, 6), generator=g), torch.arange(6).repeat(2, 1),
            torch.ones(2, 6, dtype=torch.int64))


def fused(layout, heads=4, dim=32):
    return lambda: FusedModel(lambda: TimmAttention(dim, heads, layout), dim=dim)


def x_tokens(n=9, dim=32):
    return (torch.randn(2, n, dim, generator=torch.Generator().manual_seed(1)),)


MODELS = {
    # name: (seed, builder, example inputs, input names)
    "fused_timm": (21, fused("timm"), x_tokens(), ["x"]),
    "fused_h3d": (22, fused("h3d"), x_tokens(), ["x"]),
    "fused_gqa": (23, lambda: FusedModel(lambda: GroupedFusedAttention(32, 4, 2)), x_tokens(),
                  ["x"]),
    "adv_fused_interleave": (24, fused("interleave", heads=3, dim=24), x_tokens(dim=24), ["x"]),
    "adv_fused_mixheads": (28, fused("mixheads", heads=3, dim=24), x_tokens(dim=24), ["x"]),
    "adv_fused_index": (25, fused("index"), x_tokens() + (torch.tensor(1),), ["x", "i"]),
    "adv_fused_reorder": (26, fused("reorder"), x_tokens(), ["x"]),
    "adv_fused_merge": (27, fused("merge"), x_tokens(), ["x"]),
    "rope_sliced": (31, lambda: RopeModel("sliced"), x_tokens(6), ["x"]),
    "rope_chunk": (32, lambda: RopeModel("chunk"), x_tokens(6), ["x"]),
    "adv_rope_swapped": (33, lambda: RopeModel("swapped"), x_tokens(6), ["x"]),
    "adv_rope_sign": (34, lambda: RopeModel("sign"), x_tokens(6), ["x"]),
    "adv_rope_cover": (35, lambda: RopeModel("cover"), x_tokens(6), ["x"]),
    "adv_rope_tables": (36, lambda: RopeModel("tables"), x_tokens(6), ["x"]),
    "adv_rope_halves": (37, lambda: RopeModel("halves"), x_tokens(6), ["x"]),
    "adv_gather_rows": (41, GatherRows, gather_inputs(), ["ids", "pos_ids", "mask"]),
}


def export(name):
    seed, build, args, in_names = MODELS[name]
    torch.manual_seed(seed)
    model = build()
    randomize(model)
    model.train()
    buf = io.BytesIO()
    torch.onnx.export(model, args, buf, opset_version=OPSET, export_params=True,
                      training=torch.onnx.TrainingMode.TRAINING, do_constant_folding=False,
                      keep_initializers_as_inputs=False, input_names=in_names,
                      output_names=["y"])
    proto = onnx.load_from_string(buf.getvalue())
    proto.producer_name = "symoc/models/spellings/export_spellings.py (torch %s)" % (
        torch.__version__.split("+")[0])
    onnx.checker.check_model(proto)
    stored = {i.name for i in proto.graph.initializer}
    problems = ["parameter %s is not an initializer" % n
                for n, _ in model.named_parameters() if n not in stored]
    return model, proto, problems


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=HERE)
    ap.add_argument("names", nargs="*")
    a = ap.parse_args()
    names = a.names or list(MODELS)
    bad = [n for n in names if n not in MODELS]
    if bad:
        sys.exit("export_spellings.py: unknown model(s) %s; known: %s" % (bad, list(MODELS)))
    failed = 0
    for name in names:
        model, proto, problems = export(name)
        data = proto.SerializeToString()
        with open(os.path.join(a.out, name + ".onnx"), "wb") as f:
            f.write(data)
        print("%-22s %7d bytes  %3d nodes  sha256 %s%s" % (
            name, len(data), len(proto.graph.node), hashlib.sha256(data).hexdigest()[:12],
            "  PROBLEMS: " + "; ".join(problems) if problems else ""))
        failed += bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
