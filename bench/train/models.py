"""The training benchmark's two byte-level language models (issue #13, item 3).

* `Llama`: LLaMA-style decoder: RMSNorm, GQA attention with RoPE (rotate-half), SwiGLU MLP,
  untied LM head, no biases. HF parameter names (embed_tokens, layers.N.self_attn.q_proj, ...).
* `GPT2`: GPT-2-style decoder: pre-LN LayerNorm, fused c_attn (rows [q; k; v]), tanh-GELU MLP,
  learned positions, LM head tied to wte (one Parameter), biases everywhere.

The same classes are exported to ONNX for `symoc compile` (Debian's torch 1.13, attention
written out: matmul, mask, softmax) and trained on the GPU (torch >= 2.0: the same function
through F.scaled_dot_product_attention, causal). Parameter names, shapes and the function are
identical in both modes, so the generated optimizer's plan matches the trained module.
Mode: `attention="math"` or `"sdpa"` (default: sdpa when torch has it).
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

# Benchmark sizes (>= 30 M parameters each; vocabulary = the 256 byte values).
CONFIGS = {
    # Wide and shallow: on the GPU a step of these models is bound by kernel launches (one
    # process's CPU), so 5 layers of d 768 cost about half of 10 layers of d 512 per step
    # for the same parameter count (bench/README.md has the measurements).
    "llama": dict(vocab=256, d=768, n_head=12, n_kv=4, d_ff=2048, n_layer=5, t=256),
    "gpt2": dict(vocab=256, d=768, n_head=12, n_layer=5, t=256),
    # The CPU smoke test's sizes.
    "llama-tiny": dict(vocab=256, d=64, n_head=4, n_kv=2, d_ff=128, n_layer=2, t=32),
    "gpt2-tiny": dict(vocab=256, d=64, n_head=4, n_layer=2, t=32),
}


def family(name):
    return name.split("-")[0]


def has_sdpa():
    return hasattr(F, "scaled_dot_product_attention")


def _attend(q, k, v, mode):
    """Causal attention over [b, h, t, dh] tensors."""
    if mode == "sdpa":
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    t, dh = q.shape[-2], q.shape[-1]
    att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(dh))
    mask = torch.triu(torch.ones(t, t, dtype=torch.bool, device=q.device), diagonal=1)
    att = att.masked_fill(mask, -1e9)
    return F.softmax(att, dim=-1) @ v


class RMSNorm(nn.Module):
    def __init__(self, d, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def _rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class LlamaAttention(nn.Module):
    def __init__(self, d, n_head, n_kv, t, theta=10000.0):
        super().__init__()
        self.n_head, self.n_kv, self.dh = n_head, n_kv, d // n_head
        self.q_proj = nn.Linear(d, n_head * self.dh, bias=False)
        self.k_proj = nn.Linear(d, n_kv * self.dh, bias=False)
        self.v_proj = nn.Linear(d, n_kv * self.dh, bias=False)
        self.o_proj = nn.Linear(n_head * self.dh, d, bias=False)
        inv = 1.0 / theta ** (torch.arange(0, self.dh, 2, dtype=torch.float64) / self.dh)
        f = torch.outer(torch.arange(t, dtype=torch.float64), inv)
        emb = torch.cat((f, f), dim=-1)
        # Plain attributes (not buffers): Constant nodes in the ONNX graph, not parameters.
        self.cos, self.sin = emb.cos().float(), emb.sin().float()
        self.mode = "math"

    def _tables(self, t, device, dtype):
        """RoPE tables on x's device and dtype. Outside ONNX tracing they are copied once
        per (t, device, dtype): a copy from host memory at every forward would stall the
        CUDA stream twice per layer."""
        if torch.jit.is_tracing() or device.type == "cpu":
            return (self.cos[:t].to(device=device, dtype=dtype),
                    self.sin[:t].to(device=device, dtype=dtype))
        cache = self.__dict__.setdefault("_rope_cache", {})
        key = (t, str(device), dtype)
        if key not in cache:
            cache[key] = (self.cos[:t].to(device=device, dtype=dtype),
                          self.sin[:t].to(device=device, dtype=dtype))
        return cache[key]

    def forward(self, x):
        b, t, _ = x.shape
        h, kv, dh = self.n_head, self.n_kv, self.dh
        q = self.q_proj(x).view(b, t, h, dh).transpose(1, 2)
        k = self.k_proj(x).view(b, t, kv, dh).transpose(1, 2)
        v = self.v_proj(x).view(b, t, kv, dh).transpose(1, 2)
        cos, sin = self._tables(t, x.device, q.dtype)
        q = q * cos + _rotate_half(q) * sin
        k = k * cos + _rotate_half(k) * sin
        rep = h // kv
        k = k[:, :, None].expand(b, kv, rep, t, dh).reshape(b, h, t, dh)
        v = v[:, :, None].expand(b, kv, rep, t, dh).reshape(b, h, t, dh)
        y = _attend(q, k, v, self.mode)
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
    def __init__(self, vocab, d, n_head, n_kv, d_ff, n_layer, t):
        super().__init__()
        self.embed_tokens = nn.Embedding(vocab, d)
        self.layers = nn.ModuleList([LlamaLayer(d, n_head, n_kv, d_ff, t)
                                     for _ in range(n_layer)])
        self.norm = RMSNorm(d)
        self.lm_head = nn.Linear(d, vocab, bias=False)
        _init(self, n_layer, ("o_proj", "down_proj"))

    def forward(self, idx):
        x = self.embed_tokens(idx)
        for layer in self.layers:
            x = layer(x)
        return self.lm_head(self.norm(x))


class GPT2Attention(nn.Module):
    def __init__(self, d, n_head):
        super().__init__()
        self.n_head, self.d = n_head, d
        self.c_attn = nn.Linear(d, 3 * d)
        self.c_proj = nn.Linear(d, d)
        self.mode = "math"

    def forward(self, x):
        b, t, d = x.shape
        h, dh = self.n_head, d // self.n_head
        q, k, v = self.c_attn(x).split(d, dim=2)
        q = q.view(b, t, h, dh).transpose(1, 2)
        k = k.view(b, t, h, dh).transpose(1, 2)
        v = v.view(b, t, h, dh).transpose(1, 2)
        y = _attend(q, k, v, self.mode)
        return self.c_proj(y.transpose(1, 2).contiguous().view(b, t, d))


class GPT2Block(nn.Module):
    def __init__(self, d, n_head):
        super().__init__()
        self.ln_1 = nn.LayerNorm(d)
        self.attn = GPT2Attention(d, n_head)
        self.ln_2 = nn.LayerNorm(d)
        self.mlp = nn.Module()
        self.mlp.c_fc = nn.Linear(d, 4 * d)
        self.mlp.c_proj = nn.Linear(4 * d, d)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        h = self.ln_2(x)
        return x + self.mlp.c_proj(F.gelu(self.mlp.c_fc(h), approximate="tanh"))


class GPT2(nn.Module):
    def __init__(self, vocab, d, n_head, n_layer, t):
        super().__init__()
        self.wte = nn.Embedding(vocab, d)
        self.wpe = nn.Embedding(t, d)
        self.h = nn.ModuleList([GPT2Block(d, n_head) for _ in range(n_layer)])
        self.ln_f = nn.LayerNorm(d)
        _init(self, n_layer, ("c_proj",))

    def forward(self, idx):
        t = idx.shape[1]
        pos = torch.arange(t, device=idx.device)
        x = self.wte(idx) + self.wpe(pos)
        for blk in self.h:
            x = blk(x)
        return F.linear(self.ln_f(x), self.wte.weight)   # tied LM head, no bias


@torch.no_grad()
def _init(model, n_layer, residual_out):
    """GPT-2's initialization: N(0, 0.02) matrices and embeddings, zero biases, unit gains,
    residual output projections N(0, 0.02 / sqrt(2 n_layer))."""
    for name, p in model.named_parameters():
        if p.dim() >= 2:
            std = 0.02
            if any(("." + r + ".") in ("." + name) for r in residual_out):
                std = 0.02 / math.sqrt(2 * n_layer)
            p.normal_(0.0, std)
        elif name.endswith("bias"):
            p.zero_()
        else:
            p.fill_(1.0)


def build(name, seed=0, attention=None):
    """The model `name` (a key of CONFIGS) with seed-determined weights, attention mode set."""
    cfg = dict(CONFIGS[name])
    torch.manual_seed(seed)
    m = Llama(**cfg) if family(name) == "llama" else GPT2(**{k: v for k, v in cfg.items()
                                                            if k not in ("n_kv", "d_ff")})
    set_attention(m, attention or ("sdpa" if has_sdpa() else "math"))
    return m


def set_attention(model, mode):
    if mode not in ("math", "sdpa"):
        raise ValueError("attention mode must be 'math' or 'sdpa', got %r" % (mode,))
    if mode == "sdpa" and not has_sdpa():
        raise ValueError("attention 'sdpa' needs torch >= 2.0 (this is torch %s)"
                         % torch.__version__)
    for m in model.modules():
        if hasattr(m, "mode") and isinstance(m, (LlamaAttention, GPT2Attention)):
            m.mode = mode


def num_params(model):
    return sum(p.numel() for p in model.parameters())


def export_onnx(name, path):
    """Export `name` (math attention, training mode, no constant folding: parameters keep
    their torch names as initializer names) for `symoc compile`; opset 14."""
    m = build(name, 0, attention="math")
    t = CONFIGS[name]["t"]
    x = torch.randint(0, CONFIGS[name]["vocab"], (2, t))
    torch.onnx.export(m, (x,), path, opset_version=14,
                      training=torch.onnx.TrainingMode.TRAINING, do_constant_folding=False,
                      input_names=["input_ids"], output_names=["logits"])
    return num_params(m)


def hidden_matrix(name, p):
    """Muon's README rule: >= 2-D parameters of the body (not the embeddings or the head)."""
    leaf = name.split(".")[0]
    return p.dim() >= 2 and leaf not in ("embed_tokens", "lm_head", "wte", "wpe")
