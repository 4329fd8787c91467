#!/usr/bin/python3
"""Small fixtures in the spelling of today's torch exporter on Hugging Face GPT-2.

Usage: /usr/bin/python3 models/export_hf_sdpa.py   (Debian's torch 1.13; deterministic)

Two spellings together made the analysis lose every head (docs/analysis.md, "Batch axes
merged with the heads"):
  * HF Conv1D: x.view(-1, D) @ W + b, then .view(B, T, 3D): a [B, T, D] -> [B*T, D]
    flatten, after which the batch axis B indexes the sequence axis T;
  * the exporter's scaled_dot_product_attention: k^T as [B, H, T, d] -> [B*H, T, d] ->
    transpose -> [B, H, d, T] (the batch axis merged with the heads).
Fixtures (1 block, D = 16, 4 heads of 4, B = 2, T = 6):
  hf_sdpa.onnx                  the pattern alone: heads and per-head GL must be found
  adv_hf_sdpa_headbias.onnx     a fixed per-head bias [H, T, T] on the scores (ALiBi-like):
                                the head permutation breaks (per-head GL still holds)
  adv_hf_sdpa_posbias.onnx      a trainable [T, T] bias on the scores: the sequence axis
                                reaches a parameter, so the batch axis' index on it counts
                                and the head axis stays ambiguous (no head claims; sound)
"""
import os
import sys

import onnx
import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from export_fixtures import write_testdata  # noqa: E402
B, T, D, H = 2, 6, 16, 4


class Conv1D(nn.Module):
    """transformers.pytorch_utils.Conv1D: weight [in, out], x.view(-1, in) then addmm."""

    def __init__(self, nin, nout):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(nin, nout) * 0.3)
        self.bias = nn.Parameter(torch.randn(nout) * 0.3)

    def forward(self, x):
        size_out = x.size()[:-1] + (self.weight.size(1),)
        x = torch.addmm(self.bias, x.view(-1, x.size(-1)), self.weight)
        return x.view(size_out)


class Block(nn.Module):
    def __init__(self, variant):
        super().__init__()
        self.variant = variant
        self.ln = nn.LayerNorm(D)
        with torch.no_grad():
            self.ln.weight.add_(torch.randn(D) * 0.2)
            self.ln.bias.add_(torch.randn(D) * 0.2)
        self.c_attn = Conv1D(D, 3 * D)
        self.c_proj = Conv1D(D, D)
        if variant == "posbias":
            self.pos_bias = nn.Parameter(torch.randn(T, T) * 0.3)
        if variant == "headbias":
            self.head_bias = torch.arange(H, dtype=torch.float32).view(H, 1, 1) * \
                torch.randn(1, T, T)

    def heads(self, x):
        return x.view(B, T, H, D // H).transpose(1, 2)

    def forward(self, x):
        q, k, v = self.c_attn(self.ln(x)).split(D, dim=2)
        q, k, v = self.heads(q), self.heads(k), self.heads(v)
        # torch 2.x's decomposition of scaled_dot_product_attention's k^T.
        kt = k.reshape(B * H, T, D // H).transpose(1, 2).reshape(B, H, D // H, T)
        s = (q * (D // H) ** -0.25) @ (kt * (D // H) ** -0.25)
        if self.variant == "posbias":
            s = s + self.pos_bias
        if self.variant == "headbias":
            s = s + self.head_bias
        a = torch.softmax(s, dim=-1) @ v
        return x + self.c_proj(a.transpose(1, 2).reshape(B, T, D))


def main():
    for name, variant in [("hf_sdpa", "plain"), ("adv_hf_sdpa_headbias", "headbias"),
                          ("adv_hf_sdpa_posbias", "posbias")]:
        torch.manual_seed(0)
        model = Block(variant).train()
        path = os.path.join(HERE, name + ".onnx")
        x = torch.randn(B, T, D)
        torch.onnx.export(model, (x,), path, input_names=["x"],
                          output_names=["y"], opset_version=14, do_constant_folding=False,
                          training=torch.onnx.TrainingMode.TRAINING)
        with torch.no_grad():
            y = model(x)
        # The input and torch's output, for tests/python/test_testdata.py.
        write_testdata(name, onnx.load(path), (x,), (y,), os.path.join(HERE, "testdata"))
        print("wrote", os.path.normpath(path))


if __name__ == "__main__":
    main()
