#!/usr/bin/python3
"""Export torchvision models (random init, no downloads) to ONNX for larger-scale tests.

Usage: /usr/bin/python3 models/export_torchvision.py OUT_DIR [--size N] [MODEL ...]
       (default models: resnet18 vit_b_16 swin_t; --all: every model below)

Writes OUT_DIR/<model>.onnx (not committed: vit_b_16 is about 330 MB). Same export settings
as the fixtures (training mode, no constant folding, parameter names kept; see
models/README.md), opset 14, input [1, 3, N, N] (N = 224 unless --size; ViT, Swin and
AlexNet need 224), fixed seed 0. The CNNs beyond resnet18 are there for soundness sweeps: they bring
ops and patterns no fixture has (channel shuffle, squeeze-excitation gates, hardswish,
channels-last LayerNorm with layer scale, dense concatenation, inception branches). Dropout and stochastic
depth modules are replaced by nn.Identity so that training mode adds no Dropout node. Each model is exported on its
own: a failure is reported with its error and the others still run; the exit status is the
number of failed models (0 when all succeeded).
"""
import os
import sys
import time
import traceback

import torch
import torchvision


MODELS = {
    "resnet18": lambda: torchvision.models.resnet18(weights=None),
    "vit_b_16": lambda: torchvision.models.vit_b_16(weights=None, dropout=0.0,
                                                    attention_dropout=0.0),
    # swin_t fixes stochastic_depth_prob=0.2 itself: zeroed after construction below
    "swin_t": lambda: torchvision.models.swin_t(weights=None, dropout=0.0,
                                                attention_dropout=0.0),
}
DEFAULT = list(MODELS)
MODELS.update({
    "alexnet": lambda: torchvision.models.alexnet(weights=None, dropout=0.0),
    "squeezenet1_1": lambda: torchvision.models.squeezenet1_1(weights=None, dropout=0.0),
    "mobilenet_v2": lambda: torchvision.models.mobilenet_v2(weights=None, dropout=0.0),
    "mobilenet_v3_small": lambda: torchvision.models.mobilenet_v3_small(weights=None,
                                                                        dropout=0.0),
    "efficientnet_b0": lambda: torchvision.models.efficientnet_b0(weights=None,
                                                                  stochastic_depth_prob=0.0),
    "shufflenet_v2_x0_5": lambda: torchvision.models.shufflenet_v2_x0_5(weights=None),
    "densenet121": lambda: torchvision.models.densenet121(weights=None),
    "googlenet": lambda: torchvision.models.googlenet(weights=None, aux_logits=False,
                                                      init_weights=True, dropout=0.0),
    "regnet_y_400mf": lambda: torchvision.models.regnet_y_400mf(weights=None),
    "mnasnet0_5": lambda: torchvision.models.mnasnet0_5(weights=None, dropout=0.0),
    "convnext_tiny": lambda: torchvision.models.convnext_tiny(weights=None,
                                                              stochastic_depth_prob=0.0),
})


def no_randomness(model):
    """Training-mode export must not record Dropout or stochastic depth: both become
    nn.Identity (a Dropout with p = 0 would still appear as a Dropout node)."""
    from torchvision.ops import StochasticDepth
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, (StochasticDepth, torch.nn.Dropout)):
                setattr(parent, name, torch.nn.Identity())
    return model


class ZeroDropoutIsIdentity:
    """swin_t calls F.dropout(attn, p=0.0) with training=True inside a function, which
    exports as a Dropout node; while exporting, a p = 0 dropout returns its input."""

    def __enter__(self):
        import torch.nn.functional as F
        self.orig = F.dropout

        def dropout(x, p=0.5, training=True, inplace=False):
            return x if p == 0.0 else self.orig(x, p, training, inplace)
        F.dropout = dropout

    def __exit__(self, *exc):
        import torch.nn.functional as F
        F.dropout = self.orig


def no_zero_parameters(model):
    """Random init leaves some parameters at zero (vit_b_16's head): the model's
    output is then identically zero and no symmetry can be checked on it. Give
    every all-zero parameter small random values instead."""
    with torch.no_grad():
        for p in model.parameters():
            if p.numel() > 1 and not p.any():
                p.normal_(0.0, 0.02)
    return model


def export_one(name, out_dir, size=224):
    torch.manual_seed(0)
    model = no_zero_parameters(no_randomness(MODELS[name]())).train()
    x = torch.randn(1, 3, size, size)
    path = os.path.join(out_dir, name + ".onnx")
    with ZeroDropoutIsIdentity():
        torch.onnx.export(model, (x,), path, opset_version=14, export_params=True,
                          training=torch.onnx.TrainingMode.TRAINING, do_constant_folding=False,
                          keep_initializers_as_inputs=False, input_names=["image"],
                          output_names=["logits"])
    import onnx
    proto = onnx.load(path, load_external_data=False)
    inits = {i.name: list(i.dims) for i in proto.graph.initializer}
    missing = [n for n, p in model.named_parameters() if inits.get(n) != list(p.shape)]
    missing += ["Dropout node %s" % n.name for n in proto.graph.node if n.op_type == "Dropout"]
    n_params = sum(p.numel() for p in model.parameters())
    return path, os.path.getsize(path), n_params, len(proto.graph.node), missing


def main():
    if len(sys.argv) < 2 or sys.argv[1].startswith("-"):
        sys.exit("usage: export_torchvision.py OUT_DIR [--size N] [--all | %s]" %
                 " ".join(MODELS))
    out_dir, names, size = sys.argv[1], sys.argv[2:], 224
    if "--size" in names:
        i = names.index("--size")
        size = int(names[i + 1])
        del names[i:i + 2]
    if names == ["--all"]:
        names = list(MODELS)
    names = names or DEFAULT
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        sys.exit("export_torchvision.py: unknown model(s) %s; known: %s" % (unknown, list(MODELS)))
    os.makedirs(out_dir, exist_ok=True)
    print("torch %s, torchvision %s" % (torch.__version__, torchvision.__version__))
    failed = 0
    for name in names:
        t0 = time.time()
        try:
            path, nbytes, n_params, n_nodes, missing = export_one(name, out_dir, size)
        except Exception as ex:   # report and go on with the next model
            failed += 1
            last = traceback.format_exception_only(type(ex), ex)[-1].strip()
            print("%-9s FAILED after %.0f s: %s" % (name, time.time() - t0, last[:400]))
            continue
        status = "ok" if not missing else "PROBLEMS: %d (parameters not initializers with " \
            "their torch name/shape, Dropout nodes), e.g. %s" % (len(missing), missing[:3])
        print("%-9s %s  %.1f MB  %d params  %d nodes  %.0f s  %s" % (
            name, path, nbytes / 2 ** 20, n_params, n_nodes, time.time() - t0, status))
        failed += bool(missing)
    return failed


if __name__ == "__main__":
    sys.exit(main())
