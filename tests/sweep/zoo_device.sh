#!/bin/bash
# The zoo sweep in one GPU-machine call (docs/testing.md, "Zoo sweep"): export the zoo with the
# machine's torch, transformers and timm, verify every file with a relocatable package's symoc,
# then (ZOO_FUZZ_N > 0) fuzz_semantic over the small exports with every core. Writes to $OUT:
# zoo.log, zoo.json, zoo_fail.tgz (small files of refused/crashed runs), fuzz.log and
# fuzz_keep.tgz (cases that found a problem).
#
#   here:  tools/package.sh /tmp/pkg && mkdir -p .dev-zoo && cp /tmp/pkg/symoc-*.tar.gz .dev-zoo/
#   there: tests/sweep/zoo_device.sh .dev-zoo/symoc-*.tar.gz     (device tool: carry .dev-zoo)
#
# Time limits (seconds): ZOO_EXPORT_S (400), ZOO_VERIFY_S (150), ZOO_FUZZ_S (280); ZOO_ONLY
# restricts the export to those catalogue names (zoo_sweep.py export --list); ZOO_FUZZ_N cases
# (0: no fuzz), seed ZOO_FUZZ_SEED.
set -u
PKG=${1:?usage: zoo_device.sh SYMOC_PACKAGE.tar.gz}
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/zoo-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
python3 -c "import torch, transformers, timm, onnx, onnxscript; print('torch', torch.__version__, 'transformers', transformers.__version__, 'timm', timm.__version__, 'onnx', onnx.__version__, 'onnxscript', onnxscript.__version__)" 2>&1 | tee "$OUT/zoo.log"
tar xzf "$PKG" -C /tmp
SYMOC=$(ls -d /tmp/symoc-*/bin/symoc | head -1)
ONLY=()
[ -n "${ZOO_ONLY:-}" ] && ONLY=(--only $ZOO_ONLY)
timeout "${ZOO_EXPORT_S:-400}" python3 tests/sweep/zoo_sweep.py export /tmp/zoo --jobs "$(( $(nproc) - 1 ))" \
  --timeout 240 "${ONLY[@]}" 2>&1 | tee -a "$OUT/zoo.log"
timeout "${ZOO_VERIFY_S:-150}" python3 tests/sweep/zoo_sweep.py verify /tmp/zoo --symoc "$SYMOC" --jobs "$(nproc)" \
  --timeout 140 --json "$OUT/zoo.json" --keep-failing /tmp/zfail 2>&1 | tee -a "$OUT/zoo.log"

# Node metadata (stack traces) is most of a small export's bytes: dropped from what travels.
strip_small() {  # SRC DST MAX_BYTES
  python3 - "$@" <<'PY'
import os, sys
import onnx
src, dst, cap = sys.argv[1], sys.argv[2], float(sys.argv[3])
os.makedirs(dst, exist_ok=True)
n = 0
for f in sorted(os.listdir(src)):
    if f.endswith('.onnx') and os.path.getsize(os.path.join(src, f)) < 40e6:
        m = onnx.load(os.path.join(src, f))
        for node in m.graph.node:
            del node.metadata_props[:]
        if m.ByteSize() < cap:
            onnx.save(m, os.path.join(dst, f)); n += 1
print(n, "files under", dst)
PY
}
if [ -d /tmp/zfail ]; then
  strip_small /tmp/zfail /tmp/zfail_small 4e6 && (cd /tmp && tar czf "$OUT/zoo_fail.tgz" zfail_small)
fi
if [ "${ZOO_FUZZ_N:-0}" -gt 0 ]; then
  strip_small /tmp/zoo /tmp/zoo_small 1.2e6
  timeout "${ZOO_FUZZ_S:-280}" python3 tests/sweep/fuzz_semantic.py --symoc "$SYMOC" --models /tmp/zoo_small \
    --mutations every --count "$ZOO_FUZZ_N" --seed "${ZOO_FUZZ_SEED:-2010}" --jobs "$(nproc)" --keep /tmp/fkeep \
    2>&1 | tee "$OUT/fuzz.log" | tail -40
  [ -d /tmp/fkeep ] && (cd /tmp && tar czf "$OUT/fuzz_keep.tgz" fkeep)
fi
ls -la "$OUT"
