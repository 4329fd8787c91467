#!/usr/bin/env bash
# Quick start: installs dependencies, builds symoc, and runs it on a bundled model.
#   tools/quickstart.sh [MODEL]     default models/gpt2.onnx; build folder $SYMOC_BUILD_DIR
#                                   (default build/), output folder $SYMOC_OUT (default out/)
# Writes the imported IR, the symmetry analysis (text, claims JSON, Graphviz picture), the
# numerical verification of every claim and the generated optimizer (sources and a built
# library), as far as this build's symoc has those subcommands, and prints where each went.
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

if has compile; then
  opt_dir=$out/${name}_optimizer
  "$symoc" compile "$model" -o "$opt_dir" > "$out/$name.compile.txt" 2>&1 ||
    { cat "$out/$name.compile.txt"; exit 1; }
  written+=("$opt_dir/  the generated optimizer: C++ sources, CMakeLists.txt, plan.json (symoc compile)")
  # Build it as a user would (add_subdirectory or a build of its own folder).
  cmake -S "$opt_dir" -B "$out/${name}_optimizer_build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    </dev/null >/dev/null
  cmake --build "$out/${name}_optimizer_build" -j "$jobs" </dev/null >/dev/null
  lib=$(ls "$out/${name}_optimizer_build"/lib*.so 2>/dev/null | head -1)
  written+=("${lib:-$out/${name}_optimizer_build}  the optimizer, built")
fi

# Train briefly with generated optimizers: the teacher-student tanh MLP of the Symo
# notebooks (examples/teacher_student), symo against AdamW, 100 full-batch steps each over a
# small learning-rate grid; then the test-loss curves as a picture.
train_log=""
if has compile && /usr/bin/python3 -c "import torch, onnx, matplotlib" 2>/dev/null; then
  ts=$out/teacher_student
  /usr/bin/python3 examples/teacher_student/run.py --symoc "$symoc" --policies symo,adamw \
    --steps 100 --seeds 1 --work "$ts" > "$out/teacher_student.txt" 2>&1 ||
    { cat "$out/teacher_student.txt"; exit 1; }
  /usr/bin/python3 examples/plot_results.py teacher-student "$ts/summary.csv" \
    "$out/teacher_student.png" >/dev/null
  written+=("$out/teacher_student.txt     training log: final test loss per policy and lr")
  written+=("$out/teacher_student.png     test and train loss vs step (the picture)")
  train_log=$out/teacher_student.txt
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
if [ -f "$out/$name.compile.txt" ]; then
  echo "optimizer: $(grep -m1 'policy' "$out/$name.compile.txt" | sed 's/^symoc: //')"
fi
if [ -n "$train_log" ]; then
  echo "training (teacher-student MLP, 100 steps, best lr per policy):"
  grep '^best' "$train_log" | sed 's/; seeds.*//; s/^best /  /'
  echo "loss curves: $out/teacher_student.png"
fi
