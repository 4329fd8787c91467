"""Writes the per-model records tests/sweep/zoo_sweep.py's export step leaves beside the files
(NAME.json: torch parameter names, buffers, variants), for committed models standing in for
an export. Usage: zoo_records.py BERT_PARAMS_TXT ZOO_DIR"""
import json
import os
import sys

params_txt, zoo = sys.argv[1], sys.argv[2]
params, buffers = [], []
for line in open(params_txt):
    kind, name = line.split()[:2]
    (params if kind == "param" else buffers if kind == "buffer" else []).append(name)
with open(os.path.join(zoo, "bert.json"), "w") as f:
    json.dump({"name": "bert", "params": params, "buffers": buffers, "aliases": {},
               "variants": {"compile": {"file": "bert.compile.onnx"},
                            "ts": {"error": "UnsupportedOperatorError: (a failed export)"}}}, f)
with open(os.path.join(zoo, "mlp.json"), "w") as f:
    json.dump({"name": "mlp", "params": [], "buffers": [], "aliases": {},
               "variants": {"user": {"file": "mlp.user.onnx"}}}, f)
