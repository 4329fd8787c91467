#!/usr/bin/python3
"""Export one small grouped-query attention block per spelling of key/value head repetition.

Usage: make_kv_repeat.py OUT_DIR [SPELLING ...]   (torch 1.13: Debian's /usr/bin/python3)

4 query heads of 4 channels over 2 key/value heads (x [2, 5, 16]; q/k/v/o Linear without
bias); k and v are repeated to 4 heads by SPELLING, then softmax(q k^T / 2) v -> o.
Spellings (which query head reads which KV head):
  ri            k.repeat_interleave(2, dim=1)                h -> h // 2
                (torch 1.13: Split -> Unsqueeze -> Expand -> Reshape -> Concat)
  ri_tensor     k.repeat_interleave(torch.tensor([2, 2]), dim=1)       h -> h // 2
  repeat_kv     k[:, :, None].expand(..).reshape(..) (transformers)     h -> h // 2
  expand_inter  k[:, None].expand(..).reshape(..)                       h -> h % 2
  tile          k.repeat(1, 2, 1, 1) (Tile)                            h -> h % 2
  cat           torch.cat([k, k], 1)                                    h -> h % 2
  cat_inter     torch.cat of per-head slices, each twice                h -> h // 2
  gather        k[:, torch.arange(4) // 2] (Gather over head indices)  h -> h // 2
  gather_mod    k[:, torch.arange(4) % 2]                               h -> h % 2
  index_select  k.index_select(1, torch.arange(4) // 2)                 h -> h // 2
Exported in training mode, opset 14, constant folding off (models/README.md).
"""
import os
import sys

import torch
import torch.nn as nn

H, KV, D, T = 4, 2, 16, 5
d, R = D // H, H // KV
SPELLINGS = ["ri", "ri_tensor", "repeat_kv", "expand_inter", "tile", "cat", "cat_inter",
             "gather", "gather_mod", "index_select"]


def repeat(x, mode):
    b, kv, t, dd = x.shape
    if mode == "ri":
        return x.repeat_interleave(R, dim=1)
    if mode == "ri_tensor":
        return x.repeat_interleave(torch.tensor([R] * KV), dim=1)
    if mode == "repeat_kv":
        return x[:, :, None].expand(b, kv, R, t, dd).reshape(b, kv * R, t, dd)
    if mode == "expand_inter":
        return x[:, None].expand(b, R, kv, t, dd).reshape(b, R * kv, t, dd)
    if mode == "tile":
        return x.repeat(1, R, 1, 1)
    if mode == "cat":
        return torch.cat([x] * R, dim=1)
    if mode == "cat_inter":
        return torch.cat([x[:, i:i + 1] for i in range(KV) for _ in range(R)], dim=1)
    if mode == "gather":
        return x[:, torch.arange(H) // R]
    if mode == "gather_mod":
        return x[:, torch.arange(H) % KV]
    if mode == "index_select":
        return x.index_select(1, torch.arange(H) // R)
    raise SystemExit("unknown spelling %s" % mode)


class Attention(nn.Module):
    def __init__(self, mode):
        super().__init__()
        self.mode = mode
        self.q = nn.Linear(D, D, bias=False)
        self.k = nn.Linear(D, KV * d, bias=False)
        self.v = nn.Linear(D, KV * d, bias=False)
        self.o = nn.Linear(D, D, bias=False)

    def forward(self, x):
        B = x.shape[0]
        q = self.q(x).view(B, T, H, d).transpose(1, 2)
        k = self.k(x).view(B, T, KV, d).transpose(1, 2)
        v = self.v(x).view(B, T, KV, d).transpose(1, 2)
        k, v = repeat(k, self.mode), repeat(v, self.mode)
        a = torch.softmax(q @ k.transpose(-1, -2) / d ** 0.5, -1)
        return self.o((a @ v).transpose(1, 2).reshape(B, T, D))


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    for mode in sys.argv[2:] or SPELLINGS:
        torch.manual_seed(0)
        torch.onnx.export(Attention(mode), (torch.randn(2, T, D),),
                          os.path.join(out, "kv_%s.onnx" % mode), opset_version=14,
                          training=torch.onnx.TrainingMode.TRAINING,
                          do_constant_folding=False, export_params=True,
                          keep_initializers_as_inputs=False)


main()
