#!/usr/bin/python3
"""Export a small Swin window-attention model (torchvision's own blocks) for the shape tests.

Usage: /usr/bin/python3 models/export_swin_window.py [OUT_DIR]

Writes swin_window.onnx (static input [1, 6, 6, 3]; default OUT_DIR models/) and
swin_window_dynamic.onnx (H and W symbolic; default OUT_DIR tests/lit/Analysis/Inputs/, an
adversarial input of the lit tests, kept out of models/ whose fixtures all run with fixed
dims). The model: Linear(3 -> 16) patch embedding, two torchvision SwinTransformerBlocks
(2 heads of 8, window 4x4; the first unshifted, the second shifted by 2), LayerNorm, mean
over positions, Linear(16 -> 5). A 6x6 map is padded to 8x8 (F.pad with pads computed from
H % window), the shifted block rolls it (Slice + Concat) and builds its attention mask by
slice assignment (ScatterND): the ops whose shapes ONNX 1.12's inference loses in swin_t.
Exported like export_torchvision.py (training mode, opset 14, no constant folding, no
Dropout node), seed 0, norm gains and biases random so that wrong claims are visible. The
static export's input and torch output go to models/testdata/swin_window/ (ONNX's
test-data layout, as export_fixtures.py writes them) for the evaluator's check.
"""
import os
import sys

import torch
import torch.nn as nn
from torchvision.models.swin_transformer import SwinTransformerBlock

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from export_fixtures import write_testdata  # noqa: E402
from export_torchvision import ZeroDropoutIsIdentity, no_randomness  # noqa: E402


class SwinWindow(nn.Module):
    def __init__(self, dim=16, heads=2, window=4):
        super().__init__()
        self.embed = nn.Linear(3, dim)
        self.blocks = nn.Sequential(
            SwinTransformerBlock(dim, heads, [window, window], [0, 0]),
            SwinTransformerBlock(dim, heads, [window, window], [window // 2, window // 2]))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, 5)

    def forward(self, x):                       # x: [B, H, W, 3]
        h = self.norm(self.blocks(self.embed(x)))
        return self.head(h.mean(dim=(1, 2)))


def build():
    torch.manual_seed(0)
    model = no_randomness(SwinWindow()).train()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.copy_(1.0 + 0.2 * torch.randn_like(m.weight))
                m.bias.copy_(0.2 * torch.randn_like(m.bias))
    return model, torch.randn(1, 6, 6, 3)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    dirs = [sys.argv[1]] * 2 if len(sys.argv) > 1 else [
        here, os.path.join(here, "..", "tests", "lit", "Analysis", "Inputs")]
    model, x = build()
    for out_dir, name, dynamic in ((dirs[0], "swin_window", None),
                                   (dirs[1], "swin_window_dynamic", {"x": {1: "H", 2: "W"}})):
        path = os.path.normpath(os.path.join(out_dir, name + ".onnx"))
        with ZeroDropoutIsIdentity():
            torch.onnx.export(model, (x,), path, opset_version=14, export_params=True,
                              training=torch.onnx.TrainingMode.TRAINING,
                              do_constant_folding=False, keep_initializers_as_inputs=False,
                              input_names=["x"], output_names=["y"], dynamic_axes=dynamic)
        print("%s  %.1f KB" % (path, os.path.getsize(path) / 1024))
        if dynamic is None:
            import onnx
            with torch.no_grad():
                out = model(x)
            write_testdata(name, onnx.load(path, load_external_data=False), (x,), (out,),
                           os.path.join(out_dir, "testdata"))


if __name__ == "__main__":
    main()
