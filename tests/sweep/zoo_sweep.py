#!/usr/bin/env python3
"""Soundness sweep over a zoo of models no one on the team wrote, from today's exporters.

Builds small random-weight models from Hugging Face transformers configs (decoders, MoE,
encoders, encoder-decoders, vision) and from timm (no download: configs and
`pretrained=False`), exports each the ways users get them, and runs `symoc verify` on every
file: each claim the analysis makes is checked numerically. Needs torch >= 2.9 with the
dynamo exporter, transformers and timm (the GPU machine has them; CI does not).

    zoo_sweep.py export OUT_DIR [--jobs N] [--only NAME ...] [--list]
    zoo_sweep.py verify OUT_DIR --symoc BIN [--jobs N] [--json FILE] [--keep-failing DIR]

Export variants of each model (files NAME.VARIANT.onnx beside NAME.json, which lists the
torch parameter names and buffers):
  compile  symoc.torch.compile's dynamo export: its structural copy (distinct random values,
           dropout 0, training mode; eval mode where the training-mode trace fails and the
           model has no BatchNorm, since session 22), dynamo=True, optimize=False, names kept (since session
           20 symoc.torch.compile takes models with BatchNorm through `ts` first: dynamo writes
           their BatchNorms in inference mode)
  user     what `torch.onnx.export(model.eval(), args, f, dynamo=True)` gives by default
           (opset 18+, optimize=True: transposed weights folded into val_N initializers)
  ts       the TorchScript exporter (dynamo=False, opset 17, training mode), as symoc.torch's
           fallback
An export that fails is recorded (the exporter's first line), not an error of the sweep.

`verify` classifies each file: `ok` (exit 0, every claim passes, control fails), `refused`
(a claim the analysis made did not verify: a false claim, the sweep fails), `rejected`
(exit 1 with one `symoc: error:` line: an input symoc refuses), `insensitive` (the negative
control passed: the file's values hide a weight below verify's tolerance, so nothing is
vouched for), `crashed` (anything else: the
sweep fails). Prints one line per file and a summary, writes JSON with --json, copies the
files of refused/crashed runs to --keep-failing.
"""
import argparse
import concurrent.futures
import json
import os
import re
import shutil
import subprocess
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
SEQ, BATCH, VOCAB, IMG = 8, 2, 128, 32

# ------------------------------------------------------------------ the catalogue
# Hugging Face: (model_type, head, config overrides). Every config gets SMALL first (keys a
# config does not know are ignored by setattr only where the attribute exists).
SMALL = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
             n_embd=32, n_layer=2, n_head=4, n_inner=64, n_positions=64, d_model=32,
             encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
             decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, d_ff=64,
             ffn_dim=64, num_layers=2, num_heads=4, d_kv=8, n_ctx=64, seq_length=64,
             max_sequence_length=64, hidden_dim=64, embedding_size=32, ffn_hidden_size=64,
             num_local_experts=4, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32,
             shared_expert_intermediate_size=32, image_size=IMG, patch_size=8, num_channels=3,
             num_labels=10, type_vocab_size=2, pad_token_id=0, bos_token_id=1, eos_token_id=2,
             decoder_start_token_id=0, use_cache=False)
DEC = "causal"
HF = [
    # decoders
    ("llama", DEC, {}), ("mistral", DEC, dict(sliding_window=None)), ("qwen2", DEC, {}),
    ("qwen3", DEC, dict(head_dim=8)), ("gemma", DEC, dict(head_dim=8)), ("gemma2", DEC, dict(head_dim=8)),
    ("gemma3_text", DEC, dict(head_dim=8)), ("phi", DEC, {}), ("phi3", DEC, {}), ("olmo", DEC, {}),
    ("olmo2", DEC, {}), ("stablelm", DEC, {}), ("starcoder2", DEC, {}), ("falcon", DEC, {}),
    ("gpt_neox", DEC, {}), ("gptj", DEC, dict(rotary_dim=4)), ("gpt_bigcode", DEC, {}),
    ("codegen", DEC, dict(rotary_dim=4)), ("bloom", DEC, {}), ("opt", DEC, dict(word_embed_proj_dim=32)),
    ("persimmon", DEC, {}), ("cohere", DEC, {}), ("glm", DEC, {}), ("granite", DEC, {}),
    ("helium", DEC, dict(head_dim=8)), ("smollm3", DEC, {}), ("nemotron", DEC, {}), ("gpt2", DEC, {}),
    ("xglm", DEC, {}), ("biogpt", DEC, {}), ("ernie4_5", DEC, dict(head_dim=8)), ("mpt", DEC, dict(expansion_ratio=2)),
    # MoE decoders
    ("mixtral", DEC, {}), ("qwen2_moe", DEC, dict(decoder_sparse_step=1)), ("qwen3_moe", DEC, dict(head_dim=8)),
    ("olmoe", DEC, {}), ("granitemoe", DEC, {}), ("phimoe", DEC, {}),
    # (the model's own forward failed on this config: rotary widths disagreed. The config's
    # __init__ derives head_dim = qk_rope_head_dim and qk_head_dim = nope + rope, which the
    # attributes set afterwards left at 64 and 192 (session 23's reading); and MLA's keys have
    # a head per query head, which the shared attention code would repeat again for GQA
    # (num_key_value_heads < num_attention_heads; session 24))
    ("deepseek_v3", DEC, dict(q_lora_rank=16, kv_lora_rank=16, qk_rope_head_dim=4, qk_nope_head_dim=4,
                              head_dim=4, qk_head_dim=8,
                              v_head_dim=8, n_routed_experts=4, n_shared_experts=1, first_k_dense_replace=1,
                              n_group=1, topk_group=1, num_key_value_heads=4)),
    ("gpt_oss", DEC, dict(head_dim=8, num_local_experts=4, num_experts_per_tok=2)),
    ("dbrx", DEC, dict(ffn_config=dict(ffn_hidden_size=64, moe_num_experts=4, moe_top_k=2),
                       attn_config=dict(kv_n_heads=2, rope_theta=10000.0, clip_qkv=8.0))),
    ("jetmoe", DEC, dict(kv_channels=8, num_key_value_heads=4)),
    ("mamba", DEC, dict(state_size=4, expand=2, conv_kernel=2, time_step_rank=4)),
    ("rwkv", DEC, dict(attention_hidden_size=32, context_length=64)),
    ("llama4_text", DEC, dict(head_dim=8, num_local_experts=4, intermediate_size_mlp=64, interleave_moe_layer_step=1)),
    ("qwen3_next", DEC, dict(head_dim=8, linear_num_value_heads=4, linear_num_key_heads=2, linear_key_head_dim=8,
                             linear_value_head_dim=8, full_attention_interval=2)),
    ("exaone4", DEC, dict(head_dim=8, sliding_window=4)), ("seed_oss", DEC, dict(head_dim=8)),
    ("ministral", DEC, dict(head_dim=8)), ("hunyuan_v1_dense", DEC, dict(head_dim=8)),
    # encoders
    ("bert", "masked", {}), ("roberta", "masked", {}), ("distilbert", "masked", dict(dim=32)),
    ("albert", "masked", {}), ("electra", "masked", {}), ("deberta", "masked", {}),
    ("deberta-v2", "masked", {}), ("xlm-roberta", "masked", {}), ("mpnet", "masked", {}),
    ("megatron-bert", "masked", {}), ("modernbert", "masked", dict(global_attn_every_n_layers=1)),
    ("roformer", "masked", {}), ("squeezebert", "masked", {}),
    ("mobilebert", "masked", dict(intra_bottleneck_size=16, true_hidden_size=16, num_feedforward_networks=2)),
    ("funnel", "base", dict(block_sizes=[1, 1], block_repeats=[1, 1], d_head=8, d_inner=64)), ("rembert", "masked", dict(input_embedding_size=32, output_embedding_size=32)),
    # encoder-decoders
    ("t5", "seq2seq", {}), ("bart", "seq2seq", {}), ("mbart", "seq2seq", {}), ("pegasus", "seq2seq", {}),
    ("marian", "seq2seq", {}), ("blenderbot-small", "seq2seq", {}),
    # vision
    ("vit", "image", {}), ("deit", "image", {}), ("beit", "image", {}), ("dinov2", "image", {}),
    ("swin", "image", dict(embed_dim=16, depths=[1, 1], num_heads=[2, 4], window_size=2, patch_size=4)),
    ("swinv2", "image", dict(embed_dim=16, depths=[1, 1], num_heads=[2, 4], window_size=2, patch_size=4)),
    ("convnext", "image", dict(hidden_sizes=[8, 16, 32, 64], depths=[1, 1, 1, 1], patch_size=4)),
    ("convnextv2", "image", dict(hidden_sizes=[8, 16, 32, 64], depths=[1, 1, 1, 1], patch_size=4)),
    ("resnet", "image", dict(hidden_sizes=[8, 16, 32, 64], depths=[1, 1, 1, 1], embedding_size=8)),
    ("regnet", "image", dict(hidden_sizes=[8, 16, 32, 64], depths=[1, 1, 1, 1], embedding_size=8, groups_width=8)),
    # (patch_size 16: LeViT's stem is four stride-2 convolutions whatever the config says, and
    # its attention biases are sized image_size / patch_size)
    ("levit", "image", dict(hidden_sizes=[16, 32, 48], num_attention_heads=[1, 2, 3], depths=[1, 1, 1],
                            key_dim=[8, 8, 8], patch_size=16, down_ops=[["Subsample", 8, 16 // 8, 4, 2, 2],
                                                                       ["Subsample", 8, 32 // 8, 4, 2, 2]])),
    ("mobilevit", "image", dict(hidden_sizes=[16, 24, 32], neck_hidden_sizes=[8, 8, 16, 16, 24, 24, 32])),
    ("mobilenet_v2", "image", dict(depth_multiplier=0.25)),
    ("efficientnet", "image", dict(width_coefficient=0.25, depth_coefficient=0.2, hidden_dim=320)),
    ("poolformer", "image", dict(hidden_sizes=[8, 16, 32, 64], depths=[1, 1, 1, 1])),
    ("segformer", "image", dict(hidden_sizes=[8, 16, 32, 64], depths=[1, 1, 1, 1], decoder_hidden_size=32,
                                num_attention_heads=[1, 2, 4, 8])),
    ("pvt_v2", "image", dict(hidden_sizes=[8, 16, 32, 64], depths=[1, 1, 1, 1], num_attention_heads=[1, 2, 4, 8])),
    ("focalnet", "image", dict(embed_dim=16, depths=[1, 1], patch_size=4)),
    ("bit", "image", dict(hidden_sizes=[8, 16, 32, 64], depths=[1, 1, 1, 1], embedding_size=8, num_groups=4)),
    # (depth[i] > i: CvtStage indexes its stage's drop-path rates, one per layer, by the
    # stage number)
    ("cvt", "image", dict(embed_dim=[16, 32, 64], num_heads=[1, 2, 4], depth=[1, 2, 3])),
    ("data2vec-vision", "image", {}), ("hiera", "image", dict(embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 2, 4, 8], image_size=[64, 64])),
]
# timm: (name, kwargs). Small by construction; image IMG unless the model says otherwise.
TIMM = [
    ("resnet10t", {}), ("resnet18", {}), ("resnet26d", {}), ("mobilenetv3_small_050", {}),
    ("mobilenetv2_050", {}), ("efficientnet_b0", {}), ("ghostnet_050", {}), ("regnetx_002", {}),
    ("regnety_002", {}), ("convnext_atto", {}), ("convnextv2_atto", {}),
    ("vit_tiny_patch16_224", dict(img_size=IMG, patch_size=8)),
    ("deit_tiny_distilled_patch16_224", dict(img_size=IMG, patch_size=8)),
    ("mixer_s32_224", dict(img_size=64)), ("resmlp_12_224", dict(img_size=IMG)),
    ("poolformer_s12", {}), ("levit_128s", dict(img_size=64)), ("mobilevit_xxs", dict(img_size=64)),
    ("mobilevitv2_050", {}), ("edgenext_xx_small", {}), ("fastvit_t8", {}), ("efficientvit_b0", {}),
    ("tiny_vit_5m_224", {}), ("xcit_nano_12_p16_224", dict(img_size=IMG, patch_size=8)),
    ("eva02_tiny_patch14_224", dict(img_size=IMG, patch_size=8)), ("lcnet_050", {}),
    ("mnasnet_050", {}), ("hgnetv2_b0", {}), ("rexnet_100", {}), ("repvgg_a0", {}),
    ("ese_vovnet19b_slim", {}), ("densenet121", {}), ("mambaout_femto", {}),
    ("coat_lite_tiny", dict(img_size=64)), ("pit_ti_224", dict(img_size=64, base_dims=[8, 8, 8], depth=[1, 1, 1])),
    ("swin_tiny_patch4_window7_224", dict(img_size=64, window_size=2, embed_dim=32, depths=(1, 1, 1, 1),
                                          num_heads=(1, 2, 4, 8))),
    ("nf_resnet26", {}), ("resnetv2_50x1_bit", {}), ("convmixer_768_32", {}),
    ("resnest14d", {}), ("skresnet18", {}), ("seresnext26d_32x4d", {}), ("dla34", {}), ("cspdarknet53", {}),
    ("inception_v3", dict(input_side=139)), ("xception41", {}), ("mobileone_s0", {}), ("repghostnet_050", {}),
    ("efficientformer_l1", dict(input_side=224)), ("efficientformerv2_s0", dict(input_side=224)), ("twins_svt_small", dict(depths=(1, 1, 1, 1))),
    ("crossvit_tiny_240", dict(img_size=240, depth=((1, 1, 0),))), ("gcvit_xxtiny", dict(img_size=64)),
    ("davit_tiny", dict(depths=(1, 1, 1, 1))), ("nest_tiny", dict(img_size=64, patch_size=4)),
    ("deit3_small_patch16_224", dict(img_size=IMG, patch_size=8, depth=2)),
    ("vit_base_patch16_reg4_gap_256", dict(img_size=IMG, patch_size=8, depth=2)),
    ("vit_relpos_small_patch16_224", dict(img_size=IMG, patch_size=8, depth=2)),
    ("vit_base_patch16_rope_reg1_gap_256", dict(img_size=IMG, patch_size=8, depth=2, embed_dim=64, num_heads=4)),
    ("samvit_base_patch16", dict(img_size=64, patch_size=8, depth=2, embed_dim=64, num_heads=4, window_size=2,
                                 global_attn_indexes=(1,))),
    ("regnetz_b16", {}), ("hrnet_w18_small", {}), ("inception_next_atto", {}), ("starnet_s050", {}),
    ("maxvit_nano_rw_256", dict(img_size=64)), ("cait_xxs24_224", dict(img_size=IMG, patch_size=8, embed_dim=32, depth=2)),
    ("sebotnet33ts_256", dict(img_size=64)), ("selecsls42b", {}),
]


def catalogue():
    return [("hf_" + t.replace("-", "_"), ("hf",) + e) for e in HF for t in [e[0]]] + \
           [("timm_" + n, ("timm", n, kw)) for n, kw in TIMM]


def _hf_small_config(tf, model_type, over, construct):
    """The model type's config made small: SMALL's keys that the default config has (and
    head_dim 8 where it has one), then `over`. construct: as constructor arguments, so that
    what __init__ derives from them (DeepSeek-V3's head_dim from its rope width, DBRX's
    sub-configs from dicts) follows; else set one by one on the default config, keeping a
    default where an attribute refuses (a derived property, a validated field)."""
    cfg = tf.AutoConfig.for_model(model_type)
    small = {k: v for k, v in SMALL.items() if k not in over and hasattr(cfg, k)}
    if getattr(cfg, "head_dim", None) is not None and "head_dim" not in over:
        small["head_dim"] = 8
    if construct:
        cfg = tf.AutoConfig.for_model(model_type, **dict(small, **over))
    else:
        for k, v in small.items():
            try:
                setattr(cfg, k, v)
            except Exception:  # noqa: BLE001
                pass
        for k, v in over.items():
            setattr(cfg, k, v)
    for sub in ("text_config", "vision_config"):
        if getattr(cfg, sub, None) is not None:
            for k, v in SMALL.items():
                if hasattr(getattr(cfg, sub), k):
                    setattr(getattr(cfg, sub), k, v)
    return cfg


def _hf_build(model_type, head, over):
    import torch
    import transformers as tf
    auto = {"causal": tf.AutoModelForCausalLM, "masked": tf.AutoModelForMaskedLM,
            "seq2seq": tf.AutoModelForSeq2SeqLM, "image": tf.AutoModelForImageClassification,
            "base": tf.AutoModel}[head]
    first = None
    for construct in (True, False):   # constructor arguments first, attributes set after
        try:
            cfg = _hf_small_config(tf, model_type, over, construct)
            # A head with several classes (DeiT's with and without teacher) is picked by
            # config.architectures, which a fresh config lacks: take the first.
            cls = auto._model_mapping[type(cfg)]
            model = (cls[0] if isinstance(cls, (list, tuple)) else cls)._from_config(cfg)
            break
        except Exception as e:  # noqa: BLE001
            first = first or e
    else:
        raise first
    ids = torch.arange(BATCH * SEQ).reshape(BATCH, SEQ) * 7 % VOCAB + 3
    if head == "seq2seq":
        args = (ids, None, ids[:, :4])   # input_ids, attention_mask, decoder_input_ids
    elif head == "image":
        side = getattr(cfg, "image_size", IMG)
        side = side[0] if isinstance(side, (list, tuple)) else side
        args = (torch.randn(BATCH, 3, side, side, generator=torch.Generator().manual_seed(0)),)
    else:
        args = (ids,)
    return model, args


def _timm_build(name, kw):
    import torch
    import timm
    kw = dict(kw)
    side = kw.pop("input_side", kw.get("img_size", 64))   # input_side: the input only
    model = timm.create_model(name, pretrained=False, num_classes=10, **kw)
    return model, (torch.randn(BATCH, 3, side, side, generator=torch.Generator().manual_seed(0)),)


def _first_line(e):
    return "%s: %s" % (type(e).__name__, (str(e).strip().splitlines() or [""])[0][:300])


def export_one(name, spec, out):
    """Builds one model and exports its variants; returns its record (never raises)."""
    import warnings
    import torch
    sys.path.insert(0, os.path.join(REPO, "python"))
    from symoc import api
    torch.set_num_threads(1)
    rec = {"name": name, "variants": {}}
    t = time.time()
    try:
        torch.manual_seed(0)
        model, args = _hf_build(*spec[1:]) if spec[0] == "hf" else _timm_build(*spec[1:])
    except Exception as e:  # noqa: BLE001
        rec["build_error"] = _first_line(e)
        # where it was raised (a config this sweep gets wrong, or the library): the last frames
        rec["build_trace"] = traceback.format_exc().strip().splitlines()[-7:-1]
        return rec
    named = dict(model.named_parameters())
    rec["params"] = sorted(named)
    rec["numel"] = sum(p.numel() for p in named.values())
    rec["buffers"] = sorted(n for n, _ in model.named_buffers())
    # a tied parameter's other names -> the one named_parameters() gives
    rec["aliases"] = {n: names[0] for names in api._aliases(model).values() for n in names[1:]}
    modes = {}

    def bridge_dynamo(m, a, p):
        # symoc.torch.compile's dynamo order (api._dynamo_order): training mode, attention as
        # matmul and softmax, then the same in eval mode without BatchNorm; the first error raised
        c = api._structural_copy(m)
        first = None
        for fn, mode, what in api._dynamo_order(api._has_batch_norm(c)):
            try:
                fn(c, a, p)
            except Exception as e:  # noqa: BLE001
                first = first or e
                continue
            modes["compile"] = (mode, what)
            return
        raise first
    variants = [("compile", bridge_dynamo),
                ("user", lambda m, a, p: torch.onnx.export(m.eval(), a, p, dynamo=True, external_data=False)),
                ("ts", lambda m, a, p: api._export_torchscript(api._structural_copy(m), a, p))]
    for var, fn in variants:
        path = os.path.join(out, "%s.%s.onnx" % (name, var))
        t0 = time.time()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fn(model, args, path)
            if var != "user":
                inits = api.initializer_names(path)
                missing = [n for n in named if n not in inits]
                if missing and var == "compile":
                    api._rename_tied(path, model, missing, inits)
            rec["variants"][var] = {"file": os.path.basename(path), "bytes": os.path.getsize(path),
                                    "seconds": round(time.time() - t0, 2)}
            if var in modes:
                rec["variants"][var]["mode"], rec["variants"][var]["how"] = modes[var]
        except Exception as e:  # noqa: BLE001
            if os.path.exists(path):
                os.remove(path)
            err = {"error": _first_line(e)}
            if e.__cause__ is not None:  # torch.onnx wraps the exporter's own error
                err["cause"] = _first_line(e.__cause__)
            rec["variants"][var] = err
    rec["seconds"] = round(time.time() - t, 1)
    return rec


def _export_worker(argv):
    name, out = argv
    spec = dict(catalogue())[name]
    rec = export_one(name, spec, out)
    with open(os.path.join(out, name + ".json"), "w") as f:
        json.dump(rec, f, indent=1)


def cmd_export(a):
    os.makedirs(a.out, exist_ok=True)
    names = [n for n, _ in catalogue() if not a.only or n in a.only]
    if a.list:
        print("\n".join(names))
        return 0
    t = time.time()
    print("exporting %d models with %d jobs into %s" % (len(names), a.jobs, a.out), flush=True)

    def run(name):
        try:
            p = subprocess.run([sys.executable, os.path.abspath(__file__), "_export_one", name, a.out],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=a.timeout)
            tail = p.stdout.decode(errors="replace").strip().splitlines()[-1:] if p.returncode else []
            return name, p.returncode, tail
        except subprocess.TimeoutExpired:
            return name, "timeout", []
    done = 0
    with concurrent.futures.ThreadPoolExecutor(a.jobs) as ex:
        for name, rc, tail in ex.map(run, names):
            done += 1
            jpath = os.path.join(a.out, name + ".json")
            if rc != 0 or not os.path.exists(jpath):
                with open(jpath, "w") as f:
                    json.dump({"name": name, "build_error": "exporter process: %s %s" % (rc, tail)}, f)
            rec = json.load(open(jpath))
            vs = rec.get("variants", {})
            print("[%d/%d %4.0fs] %-34s %s" % (done, len(names), time.time() - t, name,
                  rec.get("build_error") or " ".join("%s:%s" % (k, "ok" if "file" in v else "FAILED")
                                                     for k, v in vs.items())), flush=True)
    return 0


# ------------------------------------------------------------------ verify
def _frozen(rec, var, path):
    """Frozen initializers: everything but the torch parameters (their names and aliases);
    the `user` variant gets no --frozen: a user running `symoc verify file.onnx` on it sees
    every initializer (folded val_N copies, buffers) as a parameter."""
    sys.path.insert(0, os.path.join(REPO, "python"))
    from symoc.onnx_scan import initializer_names
    params = set(rec.get("params", [])) | set(rec.get("aliases", {}))
    inits = initializer_names(path)
    if var == "user":
        return []
    return [n for n in inits if n not in params]


def verify_one(symoc, path, rec, var, timeout):
    args = [symoc, "verify", path, "--json", path + ".verify.json"]
    for n in _frozen(rec, var, path):
        args += ["--frozen", re.sub(r"([*?\[])", r"[\1]", n)]
    t = time.time()
    try:
        p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"kind": "crashed", "detail": "timeout %ds" % timeout, "seconds": timeout}
    out, err = p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")
    errl = [l for l in err.splitlines() if l.strip() and not l.startswith("symoc: note:")]
    res = {"seconds": round(time.time() - t, 2), "rc": p.returncode}
    m = re.search(r"verify: (\d+)/(\d+) claims pass", out)
    if m:
        res["passed"], res["claims"] = int(m.group(1)), int(m.group(2))
    res["fails"] = [l.strip() for l in out.splitlines() if l.startswith("FAIL")][:20]
    res["notes"] = sorted({re.sub(r"'[^']*'", "'…'", l) for l in err.splitlines() if l.startswith("symoc: note:")})[:20]
    if p.returncode == 0 and m and m.group(1) == m.group(2) and not errl:
        res["kind"] = "ok"
    elif res["fails"] or (m and m.group(1) != m.group(2)):
        res["kind"] = "refused"
    elif "negative control PASSED" in out:
        # the file's values hide a weight's effect below the tolerance (LayerScale at 1e-5):
        # verify refuses to vouch for anything, as it must
        res["kind"], res["detail"] = "insensitive", (re.findall(r"CONTROL-PASSED.*", out) or [""])[0][:300]
    elif p.returncode == 1 and len(errl) == 1 and errl[0].startswith("symoc: error:"):
        res["kind"], res["detail"] = "rejected", errl[0][:300]
    else:
        res["kind"], res["detail"] = "crashed", ("rc %d: " % p.returncode) + " | ".join(errl[-3:])[:400]
    return res


def cmd_verify(a):
    recs = [json.load(open(os.path.join(a.out, f))) for f in sorted(os.listdir(a.out))
            if f.endswith(".json") and not f.endswith(".verify.json")]
    jobs = [(r, var, os.path.join(a.out, v["file"])) for r in recs
            for var, v in sorted(r.get("variants", {}).items()) if "file" in v]
    print("verifying %d files with %d jobs" % (len(jobs), a.jobs), flush=True)
    t = time.time()
    results = {}
    with concurrent.futures.ThreadPoolExecutor(a.jobs) as ex:
        futs = {ex.submit(verify_one, a.symoc, p, r, var, a.timeout): (r["name"], var, p) for r, var, p in jobs}
        for i, fu in enumerate(concurrent.futures.as_completed(futs)):
            name, var, p = futs[fu]
            res = fu.result()
            results["%s.%s" % (name, var)] = res
            print("[%d/%d %4.0fs] %-44s %-8s %s %s" % (i + 1, len(jobs), time.time() - t, name + "." + var, res["kind"],
                  "%s/%s claims" % (res.get("passed", "?"), res.get("claims", "?")), res.get("detail", "")), flush=True)
            if res["kind"] in ("refused", "crashed"):
                for l in res["fails"][:5]:
                    print("      " + l)
                if a.keep_failing:
                    os.makedirs(a.keep_failing, exist_ok=True)
                    shutil.copy(p, a.keep_failing)
                    shutil.copy(os.path.join(a.out, name + ".json"), a.keep_failing)
    kinds = {}
    for r in results.values():
        kinds[r["kind"]] = kinds.get(r["kind"], 0) + 1
    build_fail = {r["name"]: r["build_error"] for r in recs if "build_error" in r}
    export_fail = {"%s.%s" % (r["name"], k): v["error"] for r in recs for k, v in r.get("variants", {}).items() if "error" in v}
    claims = sum(r.get("claims", 0) for r in results.values())
    print("models %d (not built %d); files %d (exports failed %d); %s; claims %d"
          % (len(recs), len(build_fail), len(results), len(export_fail),
             ", ".join("%s %d" % kv for kv in sorted(kinds.items())), claims))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"results": results, "not_built": build_fail, "export_failed": export_fail,
                       "kinds": kinds, "claims": claims}, f, indent=1, sort_keys=True)
    return 1 if kinds.get("refused") or kinds.get("crashed") else 0


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "_export_one":
        _export_worker(sys.argv[2:4])
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export")
    e.add_argument("out")
    e.add_argument("--jobs", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    e.add_argument("--only", nargs="*")
    e.add_argument("--list", action="store_true")
    e.add_argument("--timeout", type=int, default=300)
    v = sub.add_parser("verify")
    v.add_argument("out")
    v.add_argument("--symoc", required=True)
    v.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    v.add_argument("--json")
    v.add_argument("--keep-failing")
    v.add_argument("--timeout", type=int, default=300)
    a = ap.parse_args()
    return cmd_export(a) if a.cmd == "export" else cmd_verify(a)


if __name__ == "__main__":
    sys.exit(main())
