#!/usr/bin/python3
"""tests/sweep/plot_zoo.py on the committed zoo results: the cells it draws are the JSON's
(every file classified, every failed export and unbuilt model), and the picture is written.
Exit 77 (skipped) without matplotlib."""
import importlib.util
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RESULTS = os.path.join(ROOT, "tests", "sweep", "results", "zoo-h200-2026-12-04.json")


def main():
    if importlib.util.find_spec("matplotlib") is None:
        print("matplotlib missing: skipped")
        return 77
    with open(RESULTS) as f:
        doc = json.load(f)
    kinds = {}
    for r in doc["results"].values():
        kinds[r["kind"]] = kinds.get(r["kind"], 0) + 1
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "zoo.png")
        p = subprocess.run([sys.executable, os.path.join(ROOT, "tests", "sweep", "plot_zoo.py"), RESULTS, out],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
        print(p.stdout.strip())
        assert p.returncode == 0, p.stdout
        assert os.path.getsize(out) > 10000, os.path.getsize(out)
    cells = len(doc["results"]) + len(doc["export_failed"]) + 3 * len(doc["not_built"])
    assert "%d cells" % cells in p.stdout, (cells, p.stdout)
    for k, n in kinds.items():
        assert "%s %d" % (k, n) in p.stdout, (k, n, p.stdout)
    print("PASS: %d cells" % cells)
    return 0


if __name__ == "__main__":
    sys.exit(main())
