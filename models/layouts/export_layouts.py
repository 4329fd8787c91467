#!/usr/bin/python3
"""Export the fixtures of reshapes that merge channels with positions (session 28).

Usage: /usr/bin/python3 models/layouts/export_layouts.py [OUT_DIR]   (default: this folder)

torch 1.13's exporter (TorchScript, opset 17, training mode, no constant folding), seed per
model, gains and biases random so that a wrong permutation of them is visible:

  cnn_flatten    LeNet-style: conv(3->8) ReLU conv(8->6) ReLU, flatten [2, 6*4*4] -> fc1(96->16)
                 ReLU fc2(16->10): the channels flattened with the pixels (outermost).
  conv1d_flatten the same with Conv1d over a length-5 signal (two axes merged).
  cnn_groupnorm  conv(3->8) GroupNorm(2, 8) ReLU conv(8->8) GroupNorm(1, 8) ReLU, mean over
                 pixels, fc(8->10): torch's GroupNorm export (Reshape [N, G, -1],
                 InstanceNormalization with constant ones / zeros, Reshape back, Mul, Add).
  swin_merge     timm's Swin patch merging: x[1, 4, 4, 3] -> Linear(3->8) GELU,
                 reshape(B, 2, 2, 2, 2, C).permute(0, 1, 3, 4, 2, 5).flatten(3) -> [1, 2, 2, 32],
                 LayerNorm(32), Linear(32->16, no bias), GELU, mean, Linear(16->5): the channels
                 innermost of the merged axis.
  cnn_pixelshuffle  conv(3->16) ReLU pixel_shuffle(2) (DepthToSpace, mode CRD) conv(4->8) ReLU
                 pixel_unshuffle(2) (Reshape, Transpose, Reshape: channels outermost) conv(32->8, 1x1)
                 ReLU, mean, fc(8->10): the super-resolution / space-to-depth forms.
  relbias_attention  T5-style attention: x[2, 6, 16], q/k/v/o Linear (2 heads of 8, no bias), a
                 learned relative-position bias Embedding(8 buckets, 2 heads) gathered at constant
                 bucket indices, permuted to [1, H, T, T] and added to the scores; ReLU, Linear(16->3).
                 Not a merge with positions: the head axis of a per-head parameter table, one
                 column per head (a plain member of the head permutation).
  cosine_flip    Swin-v2-style cosine attention (q and k normalized over the head dimension,
                 so each head's coordinates can flip sign together in q and k) with q's heads
                 reversed (torch.flip: a Slice with step -1 on the head axis): q's head h meets
                 k's head H-1-h (session 29, a fuzz case on transformers' Swin-v2: per-head sign
                 flips were related head h to head h through the reversal).
"""
import os
import sys

import torch
import torch.nn as nn


def randomize(module, seed):
    g = torch.Generator().manual_seed(seed + 1)
    for name, p in module.named_parameters():
        if name.endswith("bias"):
            p.data = 0.2 * torch.randn(p.shape, generator=g)
        elif p.dim() == 1:  # norm gains
            p.data = 1 + 0.2 * torch.randn(p.shape, generator=g)


class CnnFlatten(nn.Module):
    """Two convolutions (Conv2d or Conv1d), the channels flattened with `pixels` positions
    before a two-layer MLP."""

    def __init__(self, conv=nn.Conv2d, pixels=4 * 4):
        super().__init__()
        self.conv1 = conv(3, 8, 3, padding=1)
        self.conv2 = conv(8, 6, 3, padding=1)
        self.fc1 = nn.Linear(6 * pixels, 16)
        self.fc2 = nn.Linear(16, 10)

    def forward(self, x):
        x = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return self.fc2(torch.relu(self.fc1(torch.flatten(x, 1))))


class CnnGroupNorm(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.gn1 = nn.GroupNorm(2, 8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.gn2 = nn.GroupNorm(1, 8)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        x = torch.relu(self.gn1(self.conv1(x)))
        x = torch.relu(self.gn2(self.conv2(x)))
        return self.fc(x.mean((2, 3)))


class SwinMerge(nn.Module):
    def __init__(self, c=8):
        super().__init__()
        self.embed = nn.Linear(3, c)
        self.norm = nn.LayerNorm(4 * c)
        self.reduction = nn.Linear(4 * c, 2 * c, bias=False)
        self.head = nn.Linear(2 * c, 5)

    def forward(self, x):
        x = nn.functional.gelu(self.embed(x))
        b, h, w, c = x.shape
        x = x.reshape(b, h // 2, 2, w // 2, 2, c).permute(0, 1, 3, 4, 2, 5).flatten(3)
        x = nn.functional.gelu(self.reduction(self.norm(x)))
        return self.head(x.mean((1, 2)))


class CnnPixelShuffle(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 8, 3, padding=1)
        self.conv3 = nn.Conv2d(32, 8, 1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        x = nn.functional.pixel_shuffle(torch.relu(self.conv1(x)), 2)
        x = nn.functional.pixel_unshuffle(torch.relu(self.conv2(x)), 2)
        return self.fc(torch.relu(self.conv3(x)).mean((2, 3)))


class RelBiasAttention(nn.Module):
    def __init__(self, d=16, h=2, t=6, buckets=8):
        super().__init__()
        self.h, self.dh = h, d // h
        self.q = nn.Linear(d, d, bias=False)
        self.k = nn.Linear(d, d, bias=False)
        self.v = nn.Linear(d, d, bias=False)
        self.o = nn.Linear(d, d, bias=False)
        self.rel = nn.Embedding(buckets, h)
        pos = torch.arange(t)
        # a plain tensor attribute: traced as a Constant node, not an initializer
        self.buckets = (pos[None, :] - pos[:, None]).clamp(-buckets // 2, buckets // 2 - 1) + buckets // 2
        self.out = nn.Linear(d, 3)

    def forward(self, x):
        b, t, d = x.shape
        split = lambda y: y.view(b, t, self.h, self.dh).transpose(1, 2)
        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        bias = self.rel(self.buckets).permute(2, 0, 1)[None]
        a = torch.softmax(q @ k.transpose(-1, -2) + bias, -1)
        y = (a @ v).transpose(1, 2).reshape(b, t, d)
        return self.out(torch.relu(self.o(y)))


class CosineFlip(nn.Module):
    def __init__(self, d=16, h=4, t=5):
        super().__init__()
        self.h, self.dh = h, d // h
        self.q = nn.Linear(d, d)
        self.k = nn.Linear(d, d)
        self.v = nn.Linear(d, d)
        self.o = nn.Linear(d, d)
        self.out = nn.Linear(d, 3)

    def forward(self, x):
        b, t, d = x.shape
        split = lambda y: y.view(b, t, self.h, self.dh).transpose(1, 2)
        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        q = torch.flip(q, dims=[1])
        q, k = nn.functional.normalize(q, dim=-1), nn.functional.normalize(k, dim=-1)
        a = torch.softmax(4.0 * (q @ k.transpose(-1, -2)), -1)
        y = (a @ v).transpose(1, 2).reshape(b, t, d)
        return self.out(torch.relu(self.o(y)))


MODELS = {
    "cnn_flatten": (2801, CnnFlatten, (2, 3, 4, 4)),
    "conv1d_flatten": (2802, lambda: CnnFlatten(nn.Conv1d, 5), (2, 3, 5)),
    "cnn_groupnorm": (2803, CnnGroupNorm, (2, 3, 4, 4)),
    "swin_merge": (2804, SwinMerge, (1, 4, 4, 3)),
    "relbias_attention": (2805, RelBiasAttention, (2, 6, 16)),
    "cnn_pixelshuffle": (2806, CnnPixelShuffle, (2, 3, 4, 4)),
    "cosine_flip": (2901, CosineFlip, (2, 5, 16)),
}


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    for name, (seed, cls, shape) in MODELS.items():
        torch.manual_seed(seed)
        m = cls()
        randomize(m, seed)
        x = torch.randn(shape, generator=torch.Generator().manual_seed(seed + 2))
        path = os.path.join(out, name + ".onnx")
        torch.onnx.export(m, (x,), path, opset_version=17, training=torch.onnx.TrainingMode.TRAINING,
                          do_constant_folding=False, input_names=["x"], output_names=["y"])
        print("%-18s %6d bytes" % (name, os.path.getsize(path)))


if __name__ == "__main__":
    main()
