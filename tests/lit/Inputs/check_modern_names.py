#!/usr/bin/env python3
"""Every block of every plan of models/modern is a torch parameter name.

Usage: check_modern_names.py SYMOC MODERN_DIR
For each NAME*.onnx, `symoc compile --emit plan` lists the plan's parameters; each must
be a `param` line of NAME.params.txt (named_parameters() of the source module, written by
export_modern.py) or an `alias` of one (a tied weight under its other name) and none may be an exporter name (val_N). Prints one line per model and
exits 1 on any miss.
"""
import os
import re
import subprocess
import sys

VARIANT = re.compile(r"_(noopt|opset\d+|freshinit)$")


def main():
    symoc, d = sys.argv[1], sys.argv[2]
    bad = 0
    for f in sorted(os.listdir(d)):
        if not f.endswith(".onnx"):
            continue
        family = VARIANT.sub("", f[:-5])
        with open(os.path.join(d, family + ".params.txt")) as p:
            params = {line.split()[1] for line in p if line.startswith(("param ", "alias "))}
        r = subprocess.run([symoc, "compile", os.path.join(d, f), "--emit", "plan"],
                           capture_output=True, text=True)
        if r.returncode:
            print(f"FAIL {f}: {r.stderr.strip()[:200]}")
            bad += 1
            continue
        blocks = re.findall(r'param "([^"]+)"', r.stdout)
        wrong = [b for b in blocks if b not in params or b.startswith("val_")]
        print(f"{'ok  ' if blocks and not wrong else 'FAIL'} {f}: {len(blocks)} blocks"
              + (f", not torch parameters: {wrong[:5]}" if wrong else ""))
        bad += bool(wrong) or not blocks
    print(f"{bad} failures")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
