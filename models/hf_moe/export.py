#!/usr/bin/env python3
"""Export tiny Hugging Face MoE decoders the way transformers >= 5 runs them (needs torch >= 2.9
with the dynamo exporter and transformers >= 5; the GPU machine has both, CI does not).

Usage: python3 models/hf_moe/export.py [OUT_DIR] [NAME ...]   (default: this folder, every model)

Mixtral, Qwen2-MoE (with its shared expert), OLMoE and JetMoE (session 22: experts of its MLP
and of its attention, tokens split by per-expert counts at run time, each expert's matrix read
as weight[i]; no selectable backend), 2 layers, hidden 32, 4 experts, top-2,
parameters perturbed by 0.05 N(0, 1) (fixed seed), input ids (2, 8), training mode (dropout 0),
exported as symoc.torch.compile does (optimize=False: every parameter keeps its initializer under
its torch name). Their experts
run through transformers' selectable backend; its default, grouped_mm, does not translate to
ONNX, so each model is switched to experts_implementation="batched_mm" (the same function: a
Gather of the selected experts' weights and torch.bmm), as symoc.torch.compile does for its
export copy. Writes mixtral.onnx, qwen2_moe.onnx, olmoe.onnx (torch.onnx.export, dynamo=True).
Session 19: transformers 5.17, torch 2.11 (the committed files).
"""
import os
import sys

import torch
import transformers

DEC = dict(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
           num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64, attention_dropout=0.0)
MODELS = [("mixtral", "MixtralForCausalLM", "MixtralConfig", dict(num_local_experts=4, num_experts_per_tok=2)),
          ("qwen2_moe", "Qwen2MoeForCausalLM", "Qwen2MoeConfig",
           dict(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32, shared_expert_intermediate_size=32,
                decoder_sparse_step=1)),
          ("olmoe", "OlmoeForCausalLM", "OlmoeConfig", dict(num_experts=4, num_experts_per_tok=2, pad_token_id=0)),
          ("jetmoe", "JetMoeForCausalLM", "JetMoeConfig",
           dict(num_local_experts=4, num_experts_per_tok=2, kv_channels=8, num_key_value_heads=4))]


def main(out, only=()):
    torch.manual_seed(0)
    for name, cls, cfgcls, kw in MODELS:
        cfg = getattr(transformers, cfgcls)(**dict(DEC, **kw))
        cfg.use_cache = False
        m = getattr(transformers, cls)(cfg).train()
        with torch.no_grad():
            for p in m.parameters():
                p.add_(0.05 * torch.randn_like(p))
        if only and name not in only:
            continue   # built and perturbed all the same: the others' draws stay as in a full run
        if hasattr(m, "set_experts_implementation"):
            m.set_experts_implementation("batched_mm")
        ids = (torch.arange(16).reshape(2, 8) * 7 % 128,)
        torch.onnx.export(m, ids, os.path.join(out, name + ".onnx"), dynamo=True, optimize=False,
                          external_data=False)
        print(name, os.path.getsize(os.path.join(out, name + ".onnx")), "bytes", flush=True)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__)), sys.argv[2:])
