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


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    torch.manual_seed(0)
    model = GPT2HF()
    with torch.no_grad():   # norm gains and biases away from 1 and 0, as in the fixtures
        for name, p in model.named_parameters():
            if name.startswith("ln") or ".ln_" in name:
                p.add_(0.2 * torch.randn_like(p))
    ids = torch.randint(0, 64, (2, 8), generator=torch.Generator().manual_seed(1))
    path = os.path.join(out_dir, "gpt2_hf.onnx")
    torch.onnx.export(model, (ids,), path, opset_version=13, export_params=True,
                      training=torch.onnx.TrainingMode.TRAINING, do_constant_folding=False,
                      input_names=["input_ids"], output_names=["logits"])
    print("%s  %d bytes" % (path, os.path.getsize(path)))


if __name__ == "__main__":
    main()
