#!/usr/bin/python3
"""Export symoc's small ONNX test fixtures with torch.onnx.export (Debian's torch 1.13).

Usage: /usr/bin/python3 models/export_fixtures.py [--out DIR] [--check-only] [NAME ...]

Deterministic (fixed seed per fixture) and idempotent: running it twice writes byte-identical
files. The torch modules are also imported by tests/python/test_ground_truth.py (build_model),
which rebuilds each fixture with the same seed and checks models/expected/<name>.json on it.

Every fixture is exported in training mode with constant folding off, so that
  * parameters keep their torch names as ONNX initializer names,
  * equal-valued parameters are not merged (torch's inference-mode export deduplicates them),
  * BatchNorm is exported as BatchNormalization(training_mode=1), not folded into the conv.
All dropout probabilities are 0. Non-trainable tensors (RoPE tables, masks, the adversarial
constants) are plain tensor attributes, not buffers, so they export as Constant nodes.
"""
import argparse
import copy
import hashlib
import io
import math
import os
import sys

import onnx
from onnx import helper, numpy_helper
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OPSET = 14
BATCH, SEQ = 2, 8


@torch.no_grad()
def randomize(module, gain_std=0.2, bias_std=0.2):
    """Give every norm gain and bias a random non-uniform value.

    Default inits (gains 1, biases 0) hide wrong claims (permuting a constant vector is a
    no-op) and let torch deduplicate equal initializers; random values avoid both."""
    for name, p in module.named_parameters():
        with torch.no_grad():
            leaf = name.rsplit(".", 1)[-1]
            owner = module.get_submodule(name.rsplit(".", 1)[0]) if "." in name else module
            if isinstance(owner, (nn.LayerNorm, nn.BatchNorm2d, RMSNorm)) and leaf == "weight":
                p.copy_(1.0 + gain_std * torch.randn_like(p))
            elif "bias" in leaf or isinstance(owner, (nn.LayerNorm, nn.BatchNorm2d)):
                p.copy_(bias_std * torch.randn_like(p))
    for m in module.modules():   # running statistics too, so that permuting them is visible
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(bias_std * torch.randn_like(m.running_mean))
            m.running_var.copy_(1.0 + bias_std * torch.rand_like(m.running_var))


# --------------------------------------------------------------------------- MLPs
class MLP(nn.Module):
    """fc1 -> act -> fc2 -> act -> fc3 (all with biases)."""

    def __init__(self, act, d_in=16, d_h=32, d_out=10):
        super().__init__()
        self.fc1 = nn.Linear(d_in, d_h)
        self.fc2 = nn.Linear(d_h, d_h)
        self.fc3 = nn.Linear(d_h, d_out)
        self.act = act

    def forward(self, x):
        return self.fc3(self.act(self.fc2(self.act(self.fc1(x)))))


def gelu_tanh_explicit(x):
    # GELU written out with Tanh: an odd function inside, a product with x outside.
    # Neither B(n) (Tanh is odd) nor Scale+ (x * f(x)) is a symmetry of the whole.
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


class ReluConstAdd(nn.Module):
    """fc1 -> relu -> + c (fixed constant vector) -> fc2 (no bias) -> relu -> fc3.

    c is a plain tensor attribute (exported as a Constant node, not trainable): permuting
    or scaling the first hidden space would need c permuted / scaled too, so neither holds.
    fc2 has no bias, so no affine reparametrization of fc2's bias can absorb the change."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(16, 32)
        self.fc2 = nn.Linear(32, 32, bias=False)
        self.fc3 = nn.Linear(32, 10)
        self.c = torch.randn(32)

    def forward(self, x):
        h = torch.relu(self.fc1(x)) + self.c.to(x.dtype)
        return self.fc3(torch.relu(self.fc2(h)))


class SliceHidden(nn.Module):
    """fc1 (32 units) -> relu -> keep units 4..27 -> fc2: only the 24 kept units are
    interchangeable; units 0..3 and 28..31 are dead (their fc1 rows never reach the output)."""

    LO, HI = 4, 28

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(16, 32)
        self.fc2 = nn.Linear(self.HI - self.LO, 10)

    def forward(self, x):
        h = torch.relu(self.fc1(x))
        return self.fc2(h[:, self.LO:self.HI])


class FixedGainRMS(nn.Module):
    """fc1 -> RMSNorm with a fixed (non-trainable) random gain -> fc2.

    The gain g is a plain tensor attribute: it exports as a Constant node feeding a Mul, so
    it is not an initializer. Without a trainable gain to absorb it, a permutation of the
    normalized space is not a symmetry (g would have to be permuted); sign flips still are."""

    def __init__(self, d=32, eps=1e-6):
        super().__init__()
        self.fc1 = nn.Linear(16, d)
        self.fc2 = nn.Linear(d, 10)
        self.g = 1.0 + 0.5 * torch.randn(d)
        self.eps = eps

    def forward(self, x):
        h = self.fc1(x)
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps) * self.g.to(x.dtype)
        return self.fc2(h)


# --------------------------------------------------------------------------- ResNet-style CNN
class BasicBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)

    def forward(self, x):
        h = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(h)) + x)


class ResNetCNN(nn.Module):
    """stem conv-bn-relu (3 -> 8 channels), two residual blocks of 8 channels, global average
    pool, fc (8 -> 10). All skip connections are identities: one 8-channel residual space."""

    def __init__(self, c=8, n_cls=10):
        super().__init__()
        self.conv0 = nn.Conv2d(3, c, 3, padding=1, bias=False)
        self.bn0 = nn.BatchNorm2d(c)
        self.layer1 = BasicBlock(c)
        self.layer2 = BasicBlock(c)
        self.fc = nn.Linear(c, n_cls)

    def forward(self, x):
        x = torch.relu(self.bn0(self.conv0(x)))
        x = self.layer2(self.layer1(x))
        return self.fc(x.mean(dim=(2, 3)))


# --------------------------------------------------------------------------- GPT-2
def causal_mask(t):
    return torch.triu(torch.ones(t, t, dtype=torch.bool), diagonal=1)


class GPT2Attention(nn.Module):
    def __init__(self, d, n_head, t):
        super().__init__()
        self.n_head, self.d = n_head, d
        self.c_attn = nn.Linear(d, 3 * d)   # fused QKV: rows [q; k; v], head-major inside each
        self.c_proj = nn.Linear(d, d)
        self.mask = causal_mask(t)

    def forward(self, x):
        b, t, _ = x.shape
        d = self.d
        h, dh = self.n_head, d // self.n_head
        q, k, v = self.c_attn(x).split(d, dim=2)
        q = q.view(b, t, h, dh).transpose(1, 2)
        k = k.view(b, t, h, dh).transpose(1, 2)
        v = v.view(b, t, h, dh).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(dh))
        att = att.masked_fill(self.mask[:t, :t], -1e9)
        y = F.softmax(att, dim=-1) @ v
        return self.c_proj(y.transpose(1, 2).contiguous().view(b, t, d))


class GPT2MLP(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.c_fc = nn.Linear(d, 4 * d)
        self.c_proj = nn.Linear(4 * d, d)

    def forward(self, x):
        return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))


class GPT2Block(nn.Module):
    def __init__(self, d, n_head, t):
        super().__init__()
        self.ln_1 = nn.LayerNorm(d)
        self.attn = GPT2Attention(d, n_head, t)
        self.ln_2 = nn.LayerNorm(d)
        self.mlp = GPT2MLP(d)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT2(nn.Module):
    """Pre-LN GPT-2: token + learned positional embedding, 2 blocks, ln_f, LM head tied to
    wte (the same Parameter: one initializer 'wte.weight' used by Gather and by MatMul).
    Linear layers use torch's [out, in] layout (HF GPT-2's Conv1D stores [in, out])."""

    def __init__(self, vocab=64, d=32, n_head=4, n_layer=2, t=SEQ, n_pos=16):
        super().__init__()
        self.wte = nn.Embedding(vocab, d)
        self.wpe = nn.Embedding(n_pos, d)
        self.h = nn.ModuleList([GPT2Block(d, n_head, t) for _ in range(n_layer)])
        self.ln_f = nn.LayerNorm(d)
        self.pos = torch.arange(t)

    def forward(self, idx):
        t = idx.shape[1]
        x = self.wte(idx) + self.wpe(self.pos[:t])
        for blk in self.h:
            x = blk(x)
        return F.linear(self.ln_f(x), self.wte.weight)   # tied LM head, no bias


# --------------------------------------------------------------------------- LLaMA
class RMSNorm(nn.Module):
    def __init__(self, d, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class LlamaAttention(nn.Module):
    """GQA: n_head query heads, n_kv key/value heads; query head h uses KV head h // n_rep
    (HF repeat_kv: expand + reshape). RoPE in rotate-half form pairs channel i with i + dh/2."""

    def __init__(self, d, n_head, n_kv, t, theta=10000.0):
        super().__init__()
        self.n_head, self.n_kv, self.dh = n_head, n_kv, d // n_head
        self.q_proj = nn.Linear(d, n_head * self.dh, bias=False)
        self.k_proj = nn.Linear(d, n_kv * self.dh, bias=False)
        self.v_proj = nn.Linear(d, n_kv * self.dh, bias=False)
        self.o_proj = nn.Linear(n_head * self.dh, d, bias=False)
        inv_freq = 1.0 / theta ** (torch.arange(0, self.dh, 2, dtype=torch.float64) / self.dh)
        freqs = torch.outer(torch.arange(t, dtype=torch.float64), inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        self.cos, self.sin = emb.cos().float(), emb.sin().float()   # Constant nodes
        self.mask = causal_mask(t)

    def forward(self, x):
        b, t, _ = x.shape
        h, kv, dh = self.n_head, self.n_kv, self.dh
        q = self.q_proj(x).view(b, t, h, dh).transpose(1, 2)
        k = self.k_proj(x).view(b, t, kv, dh).transpose(1, 2)
        v = self.v_proj(x).view(b, t, kv, dh).transpose(1, 2)
        cos, sin = self.cos[:t].to(x.dtype), self.sin[:t].to(x.dtype)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        rep = h // kv
        k = k[:, :, None].expand(b, kv, rep, t, dh).reshape(b, h, t, dh)
        v = v[:, :, None].expand(b, kv, rep, t, dh).reshape(b, h, t, dh)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(dh))
        att = att.masked_fill(self.mask[:t, :t], -1e9)
        y = F.softmax(att, dim=-1) @ v
        return self.o_proj(y.transpose(1, 2).contiguous().view(b, t, h * dh))


class LlamaMLP(nn.Module):
    def __init__(self, d, d_ff):
        super().__init__()
        self.gate_proj = nn.Linear(d, d_ff, bias=False)
        self.up_proj = nn.Linear(d, d_ff, bias=False)
        self.down_proj = nn.Linear(d_ff, d, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class LlamaLayer(nn.Module):
    def __init__(self, d, n_head, n_kv, d_ff, t):
        super().__init__()
        self.input_layernorm = RMSNorm(d)
        self.self_attn = LlamaAttention(d, n_head, n_kv, t)
        self.post_attention_layernorm = RMSNorm(d)
        self.mlp = LlamaMLP(d, d_ff)

    def forward(self, x):
        x = x + self.self_attn(self.input_layernorm(x))
        return x + self.mlp(self.post_attention_layernorm(x))


class Llama(nn.Module):
    """LLaMA-style decoder, HF parameter names; no biases; untied lm_head."""

    def __init__(self, vocab=64, d=32, n_head=4, n_kv=2, d_ff=64, n_layer=2, t=SEQ):
        super().__init__()
        self.embed_tokens = nn.Embedding(vocab, d)
        self.layers = nn.ModuleList([LlamaLayer(d, n_head, n_kv, d_ff, t) for _ in range(n_layer)])
        self.norm = RMSNorm(d)
        self.lm_head = nn.Linear(d, vocab, bias=False)

    def forward(self, idx):
        x = self.embed_tokens(idx)
        for layer in self.layers:
            x = layer(x)
        return self.lm_head(self.norm(x))


# --------------------------------------------------------------------------- nn.TransformerEncoder
class Encoder(nn.Module):
    """inp Linear (16 -> 32), nn.TransformerEncoder (2 post-LN layers, 4 heads, ReLU FF of 64,
    packed in_proj_weight), out Linear (32 -> 10). The Linear layers give the residual stream
    trainable producers and consumers, so it is not pinned by the model's input/output."""

    def __init__(self, d_in=16, d=32, n_head=4, d_ff=64, n_layer=2, n_out=10):
        super().__init__()
        self.inp = nn.Linear(d_in, d)
        layer = nn.TransformerEncoderLayer(d, n_head, d_ff, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, n_layer, enable_nested_tensor=False)
        for lyr in self.encoder.layers:
            # p = 0 already; Identity keeps training-mode export free of Dropout nodes
            lyr.dropout, lyr.dropout1, lyr.dropout2 = nn.Identity(), nn.Identity(), nn.Identity()
        self.out = nn.Linear(d, n_out)

    def forward(self, x):
        return self.out(self.encoder(self.inp(x)))


# --------------------------------------------------------------------------- MoE
class MoE(nn.Module):
    """inp Linear -> x; y = x + sum_{e in top2(softmax(router(x)))} p_e * expert_e(x); out Linear.

    Experts are ReLU MLPs stored stacked (w1 [E, H, d], b1 [E, H], w2 [E, d, H], b2 [E, d]),
    as fused MoE implementations do, so permuting experts is a permutation of axis 0. All
    experts are evaluated densely; the top-k gate is a scattered, renormalized weight matrix."""

    def __init__(self, d_in=16, d=32, n_exp=4, h=64, k=2, n_out=10):
        super().__init__()
        self.k = k
        self.inp = nn.Linear(d_in, d)
        self.router = nn.Linear(d, n_exp)
        self.experts = nn.Module()
        self.experts.w1 = nn.Parameter(torch.randn(n_exp, h, d) / math.sqrt(d))
        self.experts.b1 = nn.Parameter(0.1 * torch.randn(n_exp, h))
        self.experts.w2 = nn.Parameter(torch.randn(n_exp, d, h) / math.sqrt(h))
        self.experts.b2 = nn.Parameter(0.1 * torch.randn(n_exp, d))
        self.out = nn.Linear(d, n_out)

    def forward(self, x):
        x = self.inp(x)                                        # [b, t, d]
        probs = F.softmax(self.router(x), dim=-1)              # [b, t, E]
        top_p, top_i = probs.topk(self.k, dim=-1)
        top_p = top_p / top_p.sum(-1, keepdim=True)
        gate = torch.zeros_like(probs).scatter(-1, top_i, top_p)
        e = self.experts
        hid = torch.relu(torch.einsum("btd,ehd->bteh", x, e.w1) + e.b1)
        out = torch.einsum("bteh,edh->bted", hid, e.w2) + e.b2
        return self.out(x + torch.einsum("bte,bted->btd", gate, out))


class MoEMixtral(MoE):
    """The MoE above in Mixtral's routing order, with sparse dispatch.

    Top-k on the router logits, then a softmax over the k selected logits only (not over all
    experts); each token gathers the weights of its k experts from the stacked tensors
    (Gather along the expert axis) and mixes the k expert outputs. Same parameters as MoE."""

    def forward(self, x):
        x = self.inp(x)                                        # [b, t, d]
        top_l, top_i = self.router(x).topk(self.k, dim=-1)     # [b, t, k]
        w = F.softmax(top_l, dim=-1)
        e = self.experts
        hid = torch.relu(torch.einsum("btd,btkhd->btkh", x, e.w1[top_i]) + e.b1[top_i])
        out = torch.einsum("btkh,btkdh->btkd", hid, e.w2[top_i]) + e.b2[top_i]
        return self.out(x + torch.einsum("btk,btkd->btd", w, out))


# --------------------------------------------------------------------------- registry
def _floats(*shape):
    return lambda g: (torch.randn(*shape, generator=g),)


def _tokens(vocab):
    return lambda g: (torch.randint(0, vocab, (BATCH, SEQ), generator=g),)


# name -> (seed, builder, input maker, input names, output names)
BASE = {
    "mlp_relu": (1, lambda: MLP(nn.ReLU()), _floats(BATCH, 16), ["x"], ["y"]),
    "mlp_tanh": (2, lambda: MLP(nn.Tanh()), _floats(BATCH, 16), ["x"], ["y"]),
    "mlp_gelu": (3, lambda: MLP(nn.GELU()), _floats(BATCH, 16), ["x"], ["y"]),
    "resnet_cnn": (4, ResNetCNN, _floats(BATCH, 3, 8, 8), ["image"], ["logits"]),
    "gpt2": (5, GPT2, _tokens(64), ["input_ids"], ["logits"]),
    "llama": (6, Llama, _tokens(64), ["input_ids"], ["logits"]),
    "transformer_encoder": (7, Encoder, _floats(BATCH, SEQ, 16), ["x"], ["y"]),
    "moe": (8, MoE, _floats(BATCH, SEQ, 16), ["x"], ["y"]),
    "moe_mixtral": (13, MoEMixtral, _floats(BATCH, SEQ, 16), ["x"], ["y"]),
    "adv_relu_const_add": (9, ReluConstAdd, _floats(BATCH, 16), ["x"], ["y"]),
    "adv_gelu_scale": (10, lambda: MLP(gelu_tanh_explicit), _floats(BATCH, 16), ["x"], ["y"]),
    "adv_slice_hidden": (11, SliceHidden, _floats(BATCH, 16), ["x"], ["y"]),
    "adv_fixed_gain": (12, FixedGainRMS, _floats(BATCH, 16), ["x"], ["y"]),
}

# fixture file name -> (base model, opset, dynamic batch?, post-processing)
FIXTURES = {name: (name, DEFAULT_OPSET, False, None) for name in BASE}
FIXTURES.update({
    "mlp_relu_opset9": ("mlp_relu", 9, False, None),
    "mlp_relu_opset13": ("mlp_relu", 13, False, None),
    "mlp_relu_dynamic": ("mlp_relu", DEFAULT_OPSET, True, None),
    "gpt2_opset17": ("gpt2", 17, False, None),
    "mlp_tanh_constants": ("mlp_tanh", DEFAULT_OPSET, False, "constants"),
})


def base_of(fixture):
    return FIXTURES[fixture][0]


def build_model(base):
    """The torch module of a base model, with its fixed seed, plus example inputs."""
    seed, builder, inputs, _, _ = BASE[base]
    torch.manual_seed(seed)
    model = builder()
    randomize(model)
    g = torch.Generator().manual_seed(1000 + seed)
    return model, inputs(g)


def initializers_to_constants(model):
    """Move every initializer into a Constant node whose output keeps the initializer's name."""
    g = model.graph
    consts = [helper.make_node("Constant", [], [init.name], name="const_" + init.name,
                               value=copy.deepcopy(init)) for init in g.initializer]
    nodes = consts + list(g.node)
    del g.node[:]
    g.node.extend(nodes)
    del g.initializer[:]
    return model


def reference_io(fixture, model, args):
    """Inputs and torch outputs (float32, training mode) for an evaluator to reproduce.
    The dynamic-batch fixture gets a batch of 3, unlike the batch of 2 it was traced with."""
    if FIXTURES[fixture][2]:
        args = tuple(torch.cat([a, 0.5 * a[:1]]) for a in args)
    with torch.no_grad():
        out = copy.deepcopy(model).train()(*args)
    return args, (out,)


def write_testdata(fixture, proto, ins, outs, out_dir):
    """ONNX's test-data layout: <dir>/test_data_set_0/input_<i>.pb, output_<i>.pb."""
    d = os.path.join(out_dir, fixture, "test_data_set_0")
    os.makedirs(d, exist_ok=True)
    for kind, vals, infos in (("input", ins, proto.graph.input), ("output", outs, proto.graph.output)):
        for i, (v, info) in enumerate(zip(vals, infos)):
            t = numpy_helper.from_array(v.numpy(), info.name)
            with open(os.path.join(d, "%s_%d.pb" % (kind, i)), "wb") as f:
                f.write(t.SerializeToString())


def export(fixture):
    base, opset, dynamic, post = FIXTURES[fixture]
    _, _, _, in_names, out_names = BASE[base]
    model, args = build_model(base)
    model.train()   # training mode: see the module docstring
    export.io = reference_io(fixture, model, args)   # before export touches BN statistics
    buffers = {k: v.clone() for k, v in model.named_buffers()}
    buf = io.BytesIO()
    dyn = {n: {0: "batch"} for n in in_names + out_names} if dynamic else None
    torch.onnx.export(model, args, buf, opset_version=opset, export_params=True,
                      training=torch.onnx.TrainingMode.TRAINING, do_constant_folding=False,
                      keep_initializers_as_inputs=False, input_names=in_names,
                      output_names=out_names, dynamic_axes=dyn)
    proto = onnx.load_from_string(buf.getvalue())
    # Tracing in training mode ran one forward pass, which moved BatchNorm's running
    # statistics; store the values the module had before, as build_model() gives them.
    for init in proto.graph.initializer:
        if init.name in buffers:
            init.CopyFrom(numpy_helper.from_array(buffers[init.name].numpy(), init.name))
    if post == "constants":
        proto = initializers_to_constants(proto)
    proto.producer_name = "symoc/models/export_fixtures.py (torch %s)" % torch.__version__.split("+")[0]
    onnx.checker.check_model(proto)
    return model, proto


def check(fixture, model, proto):
    """Every trainable torch parameter is an initializer (or, for *_constants, a Constant
    output) with its torch name and shape; no Dropout with p > 0; file under 1 MB."""
    problems = []
    stored = {i.name: list(i.dims) for i in proto.graph.initializer}
    if FIXTURES[fixture][3] == "constants":
        stored = {n.output[0]: list(n.attribute[0].t.dims) for n in proto.graph.node
                  if n.op_type == "Constant" and n.name.startswith("const_")}
    for name, p in model.named_parameters():
        if name not in stored:
            problems.append("parameter %s is not an initializer" % name)
        elif stored[name] != list(p.shape):
            problems.append("parameter %s has shape %s in ONNX, %s in torch"
                            % (name, stored[name], list(p.shape)))
    for n in proto.graph.node:
        if n.op_type == "Dropout":

            problems.append("Dropout node %s present" % n.name)
    size = len(proto.SerializeToString())
    if size >= 1 << 20:
        problems.append("file is %d bytes" % size)
    return problems


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=HERE, help="output folder (default: models/); reference "
                    "inputs/outputs go to OUT/testdata/<fixture>/test_data_set_0/")
    ap.add_argument("names", nargs="*", help="fixtures to export (default: all)")
    a = ap.parse_args()
    names = a.names or sorted(FIXTURES)
    bad = [n for n in names if n not in FIXTURES]
    if bad:
        sys.exit("export_fixtures.py: unknown fixture(s) %s; known: %s" % (bad, sorted(FIXTURES)))
    failed = 0
    for name in names:
        model, proto = export(name)
        problems = check(name, model, proto)
        data = proto.SerializeToString()
        path = os.path.join(a.out, name + ".onnx")
        with open(path, "wb") as f:
            f.write(data)
        write_testdata(name, proto, *export.io, os.path.join(a.out, "testdata"))
        n_params = sum(p.numel() for p in model.parameters())
        print("%-22s opset %2d  %7d bytes  %6d params  %3d nodes  sha256 %s%s" % (
            name, proto.opset_import[0].version, len(data), n_params, len(proto.graph.node),
            hashlib.sha256(data).hexdigest()[:12], "" if not problems else "  PROBLEMS:"))
        for p in problems:
            print("    " + p)
        failed += bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
