#!/usr/bin/python3
"""Export GPT-2 written the way Hugging Face transformers writes it (not our fixture style).

Usage: /usr/bin/python3 models/hf_style/export.py [OUT_DIR]   (default: this folder)

The fixtures in models/ follow one house style (nn.Linear [out, in], non-trainable tensors
as plain attributes so they trace as Constant nodes). Real models do not. This module copies
the conventions of transformers' GPT2 (modeling_gpt2.py, read, not imported): Conv1D weights
stored [in, out] applied by torch.addmm on the flattened input, c_attn split by
Tensor.split, heads by view + permute, the causal mask and masked_bias as *registered
buffers* (so they export as initializers: a bool mask and a float scalar), scores divided by
a computed tensor, torch.where masking, gelu_new (the tanh form through Pow), tied LM head
by matmul with wte.weight^T. Writes gpt2_hf.onnx (opset 13, training mode, fixed seed).

It also writes llama_hf.onnx (opset 14), LLaMA as transformers 4.30 wrote it: rotary cos/sin
tables computed at construction and kept as registered buffers (initializers named
`*.rotary_emb.cos_cached` / `sin_cached`: pass `--frozen '*_cached'`), sliced to the sequence
length and gathered by position ids, rotate_half, repeat_kv by expand + reshape (GQA),
RMSNorm through a float32 Cast, pow, mean and rsqrt, SwiGLU, untied lm_head.
"""
import math
import os
import sys

import torch
import torch.nn as nn


class Conv1D(nn.Module):
    def __init__(self, nf, nx):
        super().__init__()
        self.nf = nf
        self.weight = nn.Parameter(torch.randn(nx, nf) * 0.2)
        self.bias = nn.Parameter(torch.randn(nf) * 0.1)

    def forward(self, x):
        size_out = x.size()[:-1] + (self.nf,)
        x = torch.addmm(self.bias, x.view(-1, x.size(-1)), self.weight)
        return x.view(size_out)


def gelu_new(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) *
                                       (x + 0.044715 * torch.pow(x, 3.0))))


class Attention(nn.Module):
    def __init__(self, d, n_head, t):
        super().__init__()
        self.n_head, self.d = n_head, d
        self.c_attn = Conv1D(3 * d, d)
        self.c_proj = Conv1D(d, d)
        self.register_buffer("bias", torch.tril(torch.ones(t, t, dtype=torch.bool)).view(1, 1, t, t))
        self.register_buffer("masked_bias", torch.tensor(-1e4))

    def split_heads(self, x):
        x = x.view(x.size()[:-1] + (self.n_head, self.d // self.n_head))
        return x.permute(0, 2, 1, 3)

    def forward(self, x):
        q, k, v = self.c_attn(x).split(self.d, dim=2)
        q, k, v = self.split_heads(q), self.split_heads(k), self.split_heads(v)
        w = torch.matmul(q, k.transpose(-1, -2)) / torch.full([], v.size(-1) ** 0.5)
        t = q.size(-2)
        w = torch.where(self.bias[:, :, :t, :t], w, self.masked_bias.to(w.dtype))
        w = nn.functional.softmax(w, dim=-1)
        a = torch.matmul(w, v).permute(0, 2, 1, 3).contiguous()
        return self.c_proj(a.view(a.size()[:-2] + (self.d,)))


class Block(nn.Module):
    def __init__(self, d, n_head, t):
        super().__init__()
        self.ln_1 = nn.LayerNorm(d)
        self.attn = Attention(d, n_head, t)
        self.ln_2 = nn.LayerNorm(d)
        self.c_fc = Conv1D(4 * d, d)
        self.c_proj = Conv1D(d, 4 * d)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.c_proj(gelu_new(self.c_fc(self.ln_2(x))))


class GPT2HF(nn.Module):
    def __init__(self, vocab=64, d=32, n_head=4, n_layer=2, t=8):
        super().__init__()
        self.wte = nn.Embedding(vocab, d)
        self.wpe = nn.Embedding(t, d)
        self.h = nn.ModuleList([Block(d, n_head, t) for _ in range(n_layer)])
        self.ln_f = nn.LayerNorm(d)

    def forward(self, input_ids):
        pos = torch.arange(input_ids.size(-1)).unsqueeze(0)
        x = self.wte(input_ids) + self.wpe(pos)
        for block in self.h:
            x = block(x)
        return torch.matmul(self.ln_f(x), self.wte.weight.t())


class LlamaRMSNorm(nn.Module):
    def __init__(self, d, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        dtype = x.dtype
        x = x.to(torch.float32)
        variance = x.pow(2).mean(-1, keepdim=True)
        x = x * torch.rsqrt(variance + self.eps)
        return self.weight * x.to(dtype)


class LlamaRotaryEmbedding(nn.Module):
    def __init__(self, dim, max_pos=16, base=10000):
        super().__init__()
        inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2).float() / dim))
        self.register_buffer("inv_freq", inv_freq)
        t = torch.arange(max_pos, dtype=inv_freq.dtype)
        freqs = torch.einsum("i,j->ij", t, inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        self.register_buffer("cos_cached", emb.cos()[None, None, :, :])
        self.register_buffer("sin_cached", emb.sin()[None, None, :, :])

    def forward(self, seq_len):
        return self.cos_cached[:, :, :seq_len, ...], self.sin_cached[:, :, :seq_len, ...]


def rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary_pos_emb(q, k, cos, sin, position_ids):
    cos = cos.squeeze(1).squeeze(0)[position_ids].unsqueeze(1)
    sin = sin.squeeze(1).squeeze(0)[position_ids].unsqueeze(1)
    return (q * cos) + (rotate_half(q) * sin), (k * cos) + (rotate_half(k) * sin)


def repeat_kv(x, n_rep):
    b, kv, t, dh = x.shape
    if n_rep == 1:
        return x
    return x[:, :, None, :, :].expand(b, kv, n_rep, t, dh).reshape(b, kv * n_rep, t, dh)


class LlamaAttention(nn.Module):
    def __init__(self, d, n_head, n_kv):
        super().__init__()
        self.n_head, self.n_kv, self.dh = n_head, n_kv, d // n_head
        self.q_proj = nn.Linear(d, n_head * self.dh, bias=False)
        self.k_proj = nn.Linear(d, n_kv * self.dh, bias=False)
        self.v_proj = nn.Linear(d, n_kv * self.dh, bias=False)
        self.o_proj = nn.Linear(n_head * self.dh, d, bias=False)
        self.rotary_emb = LlamaRotaryEmbedding(self.dh)

    def forward(self, x, mask, position_ids):
        b, t, _ = x.size()
        q = self.q_proj(x).view(b, t, self.n_head, self.dh).transpose(1, 2)
        k = self.k_proj(x).view(b, t, self.n_kv, self.dh).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.n_kv, self.dh).transpose(1, 2)
        cos, sin = self.rotary_emb(seq_len=t)
        q, k = apply_rotary_pos_emb(q, k, cos, sin, position_ids)
        k = repeat_kv(k, self.n_head // self.n_kv)
        v = repeat_kv(v, self.n_head // self.n_kv)
        w = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(self.dh) + mask
        w = nn.functional.softmax(w, dim=-1, dtype=torch.float32).to(q.dtype)
        a = torch.matmul(w, v).transpose(1, 2).reshape(b, t, self.n_head * self.dh)
        return self.o_proj(a)


class LlamaMLP(nn.Module):
    def __init__(self, d, d_ff):
        super().__init__()
        self.gate_proj = nn.Linear(d, d_ff, bias=False)
        self.up_proj = nn.Linear(d, d_ff, bias=False)
        self.down_proj = nn.Linear(d_ff, d, bias=False)

    def forward(self, x):
        return self.down_proj(nn.functional.silu(self.gate_proj(x)) * self.up_proj(x))


class LlamaDecoderLayer(nn.Module):
    def __init__(self, d, n_head, n_kv, d_ff):
        super().__init__()
        self.self_attn = LlamaAttention(d, n_head, n_kv)
        self.mlp = LlamaMLP(d, d_ff)
        self.input_layernorm = LlamaRMSNorm(d)
        self.post_attention_layernorm = LlamaRMSNorm(d)

    def forward(self, x, mask, position_ids):
        x = x + self.self_attn(self.input_layernorm(x), mask, position_ids)
        return x + self.mlp(self.post_attention_layernorm(x))


class LlamaHF(nn.Module):
    def __init__(self, vocab=64, d=32, n_head=4, n_kv=2, d_ff=64, n_layer=2):
        super().__init__()
        self.embed_tokens = nn.Embedding(vocab, d)
        self.layers = nn.ModuleList([LlamaDecoderLayer(d, n_head, n_kv, d_ff)
                                     for _ in range(n_layer)])
        self.norm = LlamaRMSNorm(d)
        self.lm_head = nn.Linear(d, vocab, bias=False)

    def forward(self, input_ids):
        b, t = input_ids.shape
        position_ids = torch.arange(t, dtype=torch.long).unsqueeze(0).view(-1, t)
        mask = torch.full((t, t), torch.finfo(torch.float32).min).triu(1)[None, None]
        x = self.embed_tokens(input_ids)
        for layer in self.layers:
            x = layer(x, mask, position_ids)
        return self.lm_head(self.norm(x))


def export(model, name, opset, out_dir):
    with torch.no_grad():   # norm gains and biases away from 1 and 0, as in the fixtures
        for pname, p in model.named_parameters():
            if "ln" in pname or "norm" in pname or pname.endswith("bias"):
                p.add_(0.2 * torch.randn_like(p))
    ids = torch.randint(0, 64, (2, 8), generator=torch.Generator().manual_seed(1))
    path = os.path.join(out_dir, name)
    torch.onnx.export(model, (ids,), path, opset_version=opset, export_params=True,
                      training=torch.onnx.TrainingMode.TRAINING, do_constant_folding=False,
                      input_names=["input_ids"], output_names=["logits"])
    print("%s  %d bytes" % (path, os.path.getsize(path)))


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    torch.manual_seed(0)
    export(GPT2HF(), "gpt2_hf.onnx", 13, out_dir)
    torch.manual_seed(1)
    export(LlamaHF(), "llama_hf.onnx", 14, out_dir)


if __name__ == "__main__":
    main()
