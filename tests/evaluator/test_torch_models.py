#!/usr/bin/python3
"""The reference evaluator against torch on torchvision architectures.

Usage: test_torch_models.py EVALUATOR_RUN [--full] [names...]

Each model is built with random weights (fixed seed), exported to ONNX (float32
weights), and run twice: by torch in float64 (the same float32 weights, cast
exactly to double) and by `evaluator-run` (float64 computation). Both are then
float64 computations of nearly the same function: they agree to ~1e-12 except
where the export rounds a Python constant to float32 (attention scales: ~1e-9).
The test fails above a relative error of 1e-7 (a float32 evaluation would be
~1e-6 off). The default sizes are small variants
with the same op set as resnet18 / vit_b_16 / swin_t; --full uses the real
architectures at 224x224 (slow). Exits 77 (skip) when torch is missing.
"""
import os
import subprocess
import sys
import tempfile
import time

try:
    import numpy as np
    import onnx
    import torch
    import torchvision
    from onnx import numpy_helper
except ImportError as e:  # a user's machine without Debian's torch
    print("SKIP: %s" % e)
    sys.exit(77)


def small_models():
    tv = torchvision.models
    return {
        "resnet18": (lambda: tv.resnet18(num_classes=10), (2, 3, 32, 32), 14),
        "vit": (lambda: tv.VisionTransformer(image_size=32, patch_size=8, num_layers=2,
                                             num_heads=4, hidden_dim=64, mlp_dim=128,
                                             num_classes=10), (2, 3, 32, 32), 14),
        "swin": (lambda: tv.swin_transformer.SwinTransformer(
            patch_size=[4, 4], embed_dim=32, depths=[2, 2], num_heads=[2, 4],
            window_size=[4, 4], num_classes=10), (1, 3, 32, 32), 14),
        "mobilenet_v2": (lambda: tv.mobilenet_v2(num_classes=10), (1, 3, 32, 32), 14),
        # Recurrent layers (exported as ONNX LSTM / GRU / RNN, GRU with
        # linear_before_reset=1), bidirectional and stacked.
        "lstm": (lambda: Recurrent(torch.nn.LSTM), (5, 2, 6), 14),
        "gru": (lambda: Recurrent(torch.nn.GRU), (5, 2, 6), 14),
        "rnn": (lambda: Recurrent(torch.nn.RNN), (5, 2, 6), 14),
    }


class Recurrent(torch.nn.Module):
    def __init__(self, kind):
        super().__init__()
        self.rnn = kind(input_size=6, hidden_size=4, num_layers=2, bidirectional=True)
        self.head = torch.nn.Linear(8, 3)

    def forward(self, x):
        return self.head(self.rnn(x)[0])


def full_models():
    tv = torchvision.models
    return {
        "resnet18": (lambda: tv.resnet18(), (1, 3, 224, 224), 14),
        "vit_b_16": (lambda: tv.vit_b_16(), (1, 3, 224, 224), 14),
        "swin_t": (lambda: tv.swin_t(), (1, 3, 224, 224), 14),
    }


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    exe = sys.argv[1]
    args = sys.argv[2:]
    full = "--full" in args
    names = [a for a in args if not a.startswith("--")]
    models = full_models() if full else small_models()
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        for name, (make, shape, opset) in models.items():
            if names and name not in names:
                continue
            torch.manual_seed(0)
            model = make().eval()
            with torch.no_grad():  # zero-initialized heads would make y == 0
                for prm in model.parameters():
                    if not prm.abs().sum():
                        prm.normal_(0.0, 0.05)
            x = torch.randn(*shape)
            path = os.path.join(tmp, name + ".onnx")
            # Export with autograd on: under no_grad torch 1.13 takes the fused
            # attention fast path, which has no ONNX export.
            torch.onnx.export(model, (x,), path, opset_version=opset,
                              do_constant_folding=False, input_names=["x"],
                              output_names=["y"], training=torch.onnx.TrainingMode.PRESERVE)
            with torch.no_grad():
                ref = model.double()(x.double()).numpy()
            ops = sorted({n.op_type for n in onnx.load(path).graph.node})
            inp = os.path.join(tmp, name + "_x.pb")
            with open(inp, "wb") as f:
                f.write(numpy_helper.from_array(x.numpy(), "x").SerializeToString())
            t0 = time.time()
            res = subprocess.run([exe, path, tmp, inp], capture_output=True, text=True)
            dt = time.time() - t0
            if res.returncode != 0:
                print("FAIL %s: evaluator-run: %s" % (name, res.stderr.strip()))
                failures += 1
                continue
            y = numpy_helper.to_array(onnx.load_tensor(os.path.join(tmp, "output_0.pb")))
            rel = np.linalg.norm(y - ref) / np.linalg.norm(ref)
            ok = y.shape == ref.shape and rel <= 1e-7
            failures += not ok
            print("%s %-12s input %s  rel err vs torch float64 %.1e  evaluator %.1f s  ops: %s"
                  % ("PASS" if ok else "FAIL", name, list(shape), rel, dt, " ".join(ops)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
