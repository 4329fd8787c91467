#!/usr/bin/env python3
"""Export small random-weight models of code no one here wrote, with today's exporter.

Needs torch >= 2.9 (dynamo exporter, onnxscript), transformers and timm: run it where
they are installed (the GPU machine), not under Debian's torch 1.13:

    python3 models/modern/export_modern.py OUT_DIR [NAME ...]

Every model is built from a config (no download), its parameters are randomized
(p += 0.05 N(0,1), BatchNorm statistics too, fixed seed) so that no two are equal, and it
is exported in eval mode twice with `torch.onnx.export(..., dynamo=True)`:

    NAME.onnx        the defaults (opset 20, optimize=True): transposed weights folded into
                     val_N initializers named only in value_info metadata, BatchNorm folded
    NAME_noopt.onnx  optimize=False: every parameter under its torch name

plus a few extra variants (opset 21 / 23, a fresh-init model whose equal initializers the
optimizer merges). NAME.params.txt lists `param NAME SHAPE` for every named_parameters()
entry, `alias NAME PARAM` for each tied name named_parameters() leaves out, and
`buffer NAME SHAPE` for every buffer of the source module; manifest.json says,
per file, the opset, IR version, the (op, since-version) pairs and the initializer names.
Each file must be < 1 MB; the script reports problems and exits non-zero on them.
"""
import json
import os
import sys
import time
import traceback

import torch

SEQ, BATCH, VOCAB, IMG = 8, 2, 128, 32


def randomize(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in model.named_parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g, dtype=torch.float32).to(p.dtype))
        for name, b in model.named_buffers():
            if not b.is_floating_point():
                continue
            if name.endswith("running_mean"):
                b.copy_(0.2 * torch.randn(b.shape, generator=g))
            elif name.endswith("running_var"):
                b.copy_(1 + 0.2 * torch.rand(b.shape, generator=g))
    return model


def ids():
    return (torch.arange(BATCH * SEQ).reshape(BATCH, SEQ) * 7 % VOCAB,)


def image():
    return (torch.randn(BATCH, 3, IMG, IMG, generator=torch.Generator().manual_seed(0)),)


# ---------------------------------------------------------------- Hugging Face


def hf_decoder(cls_name, cfg_name, **kw):
    def build():
        import transformers
        cfg = getattr(transformers, cfg_name)(**kw)
        cfg.use_cache = False
        return getattr(transformers, cls_name)(cfg), ids()
    return build


DEC = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
           num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)

HF = {
    "llama": hf_decoder("LlamaForCausalLM", "LlamaConfig", **DEC),
    "qwen3": hf_decoder("Qwen3ForCausalLM", "Qwen3Config", head_dim=8, **DEC),
    "mistral": hf_decoder("MistralForCausalLM", "MistralConfig", sliding_window=None, **DEC),
    "gemma3": hf_decoder("Gemma3ForCausalLM", "Gemma3TextConfig", head_dim=8,
                         sliding_window=16, **DEC),
    "phi3": hf_decoder("Phi3ForCausalLM", "Phi3Config", pad_token_id=0, **DEC),
    "olmo2": hf_decoder("Olmo2ForCausalLM", "Olmo2Config", pad_token_id=0, **DEC),
    "gpt2": hf_decoder("GPT2LMHeadModel", "GPT2Config", vocab_size=VOCAB, n_positions=32,
                       n_embd=32, n_layer=2, n_head=4),
    "gpt_neox": hf_decoder("GPTNeoXForCausalLM", "GPTNeoXConfig", vocab_size=VOCAB,
                           hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=4, max_position_embeddings=64,
                           rotary_pct=0.5),
}


def bert():
    import transformers
    cfg = transformers.BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2,
                                  num_attention_heads=4, intermediate_size=64,
                                  max_position_embeddings=32)
    return transformers.BertModel(cfg, add_pooling_layer=False), ids()


def hf_vit():
    import transformers
    cfg = transformers.ViTConfig(image_size=IMG, patch_size=8, num_channels=3, hidden_size=32,
                                 num_hidden_layers=2, num_attention_heads=4,
                                 intermediate_size=64, num_labels=10)
    return transformers.ViTForImageClassification(cfg), image()


# ---------------------------------------------------------------- timm


def timm_vit():
    import timm
    return timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=IMG,
                             patch_size=8, embed_dim=32, depth=2, num_heads=4,
                             num_classes=10), image()


def timm_convnext():
    import timm
    return timm.create_model("convnext_atto", pretrained=False, depths=(1, 1, 1, 1),
                             dims=(8, 16, 32, 64), num_classes=10), image()


# ---------------------------------------------------------------- small CNNs


class CnnBN(torch.nn.Module):
    """conv-BN-ReLU stem, one residual block, global mean, Linear."""

    def __init__(self):
        super().__init__()
        nn = torch.nn
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8),
                                  nn.ReLU())
        self.conv1 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        x = self.stem(x)
        y = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        x = torch.relu(x + y)
        return self.fc(x.mean(dim=(2, 3)))


class CnnGN(torch.nn.Module):
    """conv-GroupNorm-GELU, max pool, conv-GroupNorm-SiLU, Mish head."""

    def __init__(self):
        super().__init__()
        nn = torch.nn
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.gn1 = nn.GroupNorm(2, 8)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.gn2 = nn.GroupNorm(4, 16)
        self.fc1 = nn.Linear(16, 16)
        self.fc2 = nn.Linear(16, 10)

    def forward(self, x):
        x = torch.nn.functional.max_pool2d(torch.nn.functional.gelu(self.gn1(self.conv1(x))), 2)
        x = torch.nn.functional.silu(self.gn2(self.conv2(x)))
        x = x.mean(dim=(2, 3))
        return self.fc2(torch.nn.functional.mish(self.fc1(x)))


MODELS = dict(HF)
MODELS.update({"bert": bert, "hf_vit": hf_vit, "timm_vit": timm_vit,
               "timm_convnext": timm_convnext,
               "cnn_bn": lambda: (CnnBN(), image()), "cnn_gn": lambda: (CnnGN(), image())})

# name -> list of (file suffix, export kwargs, randomize)
VARIANTS = {name: [("", {}, True), ("_noopt", {"optimize": False}, True)] for name in MODELS}
VARIANTS["llama"].append(("_opset23", {"opset_version": 23}, True))
VARIANTS["cnn_gn"].append(("_opset21", {"opset_version": 21}, True))
VARIANTS["bert"].append(("_freshinit", {}, False))


def strip_node_metadata(path):
    """Node metadata (stack traces, name scopes) is most of a small model's bytes; it is
    dropped from files that would otherwise reach 1 MB (value_info metadata, which names
    folded parameters, stays)."""
    if os.path.getsize(path) < (1 << 20):
        return
    import onnx
    m = onnx.load(path)
    for n in m.graph.node:
        del n.metadata_props[:]
    onnx.save(m, path)


def inventory(path):
    import onnx
    m = onnx.load(path)
    opset = {o.domain or "": o.version for o in m.opset_import}
    ops = {}
    for n in m.graph.node:
        dom = n.domain or ""
        try:
            since = onnx.defs.get_schema(n.op_type, opset.get(dom, 1), dom).since_version
        except Exception:
            since = -1
        key = f"{n.op_type}-{since}"
        ops[key] = ops.get(key, 0) + 1
    meta = sum(len(vi.metadata_props) for vi in m.graph.value_info)
    return {"opset": opset, "ir_version": m.ir_version, "ops": ops,
            "initializers": [t.name for t in m.graph.initializer],
            "value_info_metadata": meta, "bytes": os.path.getsize(path)}


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "models/modern"
    only = set(sys.argv[2:])
    os.makedirs(out, exist_ok=True)
    manifest, problems = {}, []
    print(f"torch {torch.__version__}")
    for name, build in MODELS.items():
        if only and name not in only:
            continue
        try:
            torch.manual_seed(0)
            model, args = build()
        except Exception as e:  # a missing package (timm) or config change
            problems.append(f"{name}: cannot build: {type(e).__name__}: {e}")
            continue
        model.eval()
        with open(os.path.join(out, name + ".params.txt"), "w") as f:
            first = {}
            for n, p in model.named_parameters():
                f.write(f"param {n} {'x'.join(map(str, p.shape))}\n")
                first[id(p)] = n
            # Tied weights: torch.export keeps one of the names (GPT-2's lm_head.weight
            # for transformer.wte.weight), named_parameters() the other.
            for n, p in model.named_parameters(remove_duplicate=False):
                if first.get(id(p), n) != n:
                    f.write(f"alias {n} {first[id(p)]}\n")
            for n, b in model.named_buffers():
                f.write(f"buffer {n} {'x'.join(map(str, b.shape))}\n")
        fresh = {k: v.clone() for k, v in model.state_dict().items()}
        for suffix, kw, rand in VARIANTS[name]:
            model.load_state_dict(fresh)
            if rand:
                randomize(model, seed=sum(name.encode()))
            path = os.path.join(out, name + suffix + ".onnx")
            t = time.time()
            try:
                with torch.no_grad():
                    torch.onnx.export(model, args, path, dynamo=True, external_data=False,
                                      **kw)
                strip_node_metadata(path)
                inv = inventory(path)
                inv["seconds"] = round(time.time() - t, 1)
                inv["export"] = kw
                manifest[name + suffix] = inv
                if inv["bytes"] >= 1 << 20:
                    problems.append(f"{name}{suffix}: {inv['bytes']} bytes (>= 1 MB)")
                print(f"{name + suffix:24s} opset {inv['opset'].get('')} ir {inv['ir_version']} "
                      f"{inv['bytes']:7d} B {len(inv['initializers']):3d} inits "
                      f"{inv['seconds']:5.1f}s", flush=True)
            except Exception as e:
                problems.append(f"{name}{suffix}: export failed: {type(e).__name__}: "
                                f"{str(e)[:300]}")
                traceback.print_exc(limit=2)
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
    if problems:
        print("PROBLEMS:\n  " + "\n  ".join(problems))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
