#!/usr/bin/python3
"""Export a tiny BERT-style masked-LM head with a tied decoder (torch 1.13).

Usage: make_bert_mlm.py OUT.onnx

input_ids [2, 5] (vocab 16) -> word embedding E [16, 8] + position embedding -> LayerNorm ->
one Linear 8->8 + GELU (the encoder, reduced) -> the MLM head as transformers' BertLMPredictionHead
writes it: transform (Linear 8->8, GELU, LayerNorm), then decoder = Linear(8, 16) whose weight
IS E (tied) and whose bias is a separate parameter `cls.bias` added after the matmul.
Training mode, opset 14, constant folding off (models/README.md); biases random so no two
parameters are equal.
"""
import sys

import torch
import torch.nn as nn

V, D, T = 16, 8, 5


class BertMLM(nn.Module):
    def __init__(self):
        super().__init__()
        self.word = nn.Embedding(V, D)
        self.pos = nn.Embedding(T, D)
        self.ln = nn.LayerNorm(D)
        self.enc = nn.Linear(D, D)
        self.transform = nn.Linear(D, D)
        self.tln = nn.LayerNorm(D)
        self.decoder = nn.Linear(D, V, bias=False)
        self.decoder.weight = self.word.weight  # tied
        self.bias = nn.Parameter(0.2 * torch.randn(V))
        self.positions = torch.arange(T)

    def forward(self, ids):
        h = self.ln(self.word(ids) + self.pos(self.positions))
        h = torch.nn.functional.gelu(self.enc(h))
        h = self.tln(torch.nn.functional.gelu(self.transform(h)))
        return self.decoder(h) + self.bias


torch.manual_seed(0)
m = BertMLM()
with torch.no_grad():
    for p in (m.ln.bias, m.tln.bias, m.enc.bias, m.transform.bias):
        p.copy_(0.2 * torch.randn_like(p))
    for p in (m.ln.weight, m.tln.weight):
        p.copy_(1 + 0.2 * torch.randn_like(p))
torch.onnx.export(m, (torch.randint(0, V, (2, T)),), sys.argv[1], opset_version=14,
                  training=torch.onnx.TrainingMode.TRAINING, do_constant_folding=False,
                  export_params=True, keep_initializers_as_inputs=False,
                  input_names=["input_ids"], output_names=["logits"])
