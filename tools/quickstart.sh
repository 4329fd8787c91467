#!/usr/bin/env bash
# Quick start: installs dependencies, builds symoc, and runs it on a bundled model.
#   tools/quickstart.sh [MODEL]     default models/gpt2.onnx; build folder $SYMOC_BUILD_DIR
#                                   (default build/), output folder $SYMOC_OUT (default out/)
# Writes the imported IR, the symmetry analysis (text, claims JSON, Graphviz picture) and
# the numerical verification of every claim, and prints where each went.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
build_dir=${SYMOC_BUILD_DIR:-build}
out=${SYMOC_OUT:-out}
jobs=${SYMOC_JOBS:-$(nproc)}
model=${1:-models/gpt2.onnx}
name=$(basename "$model")
name=${name%.*}

tools/install-deps.sh </dev/null
cmake -S "$repo" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release </dev/null >/dev/null
cmake --build "$build_dir" -j "$jobs" --target symoc symo-opt </dev/null
symoc=$build_dir/bin/symoc
mkdir -p "$out"

has() { "$symoc" --help | grep -qE "^  $1 "; }
written=()

"$symoc" import "$model" -o "$out/$name.mlir"
written+=("$out/$name.mlir          graph-dialect IR (symoc import)")

if has analyze; then
  "$symoc" analyze "$model" --json "$out/$name.claims.json" --dot "$out/$name.dot" \
    > "$out/$name.analysis.txt"
  written+=("$out/$name.analysis.txt  spaces, groups and claims (symoc analyze)")
  written+=("$out/$name.claims.json   claims document, docs/symmetry-schema.md")
  written+=("$out/$name.dot           parameters and spaces (Graphviz)")
  if command -v dot >/dev/null; then
    dot -Tsvg "$out/$name.dot" -o "$out/$name.svg"
    written+=("$out/$name.svg           the same picture, rendered")
  fi
fi

if has verify; then
  "$symoc" verify "$model" --json "$out/$name.verify.json" > "$out/$name.verify.txt"
  written+=("$out/$name.verify.txt    each claim checked numerically (symoc verify)")
  written+=("$out/$name.verify.json   the same as JSON")
fi

if [ -f "$out/$name.analysis.txt" ]; then
  echo
  sed -n '/^claims:/,$p' "$out/$name.analysis.txt"
fi
echo
echo "quickstart: symoc ran on $model; output:"
printf '  %s\n' "${written[@]}"
if [ -f "$out/$name.verify.txt" ]; then
  echo "verification: $(tail -1 "$out/$name.verify.txt")"
fi
