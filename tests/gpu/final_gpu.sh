#!/usr/bin/env bash
# The GPU machine's end-to-end checks in one call (issues #12, #11, #15); no LLVM, ONNX,
# protobuf, OpenBLAS or LAPACKE needed there: the relocatable package (tools/package.sh)
# carries symoc, OpenBLAS/LAPACKE and the runtime.
#
# Here (build/bin/symoc and a package tarball made):
#   tests/gpu/final_gpu.sh --stage DEST PACKAGE.tar.gz
#     copies the sources the checks need into DEST (repository layout), the package, the
#     example's corpus, and generates the optimizers: the char-level LLaMA (examples/llama_char,
#     3.0 M parameters) and a 23.5 M-parameter config of it under adamw and muon, and the
#     llama/gpt2 fixtures under muon, adamw, symo for the distributed checks.
# There, from DEST:
#   tests/gpu/final_gpu.sh [OUT]        (OUT defaults to $OUT, else ./out)
#     0. builds the runtime (CUDA backend on when nvidia-smi sees a GPU) and every generated
#        optimizer in one CMake project against the package's OpenBLAS/LAPACKE
#     1. tests/gpu/llama_char_gpu.py: GPU vs CPU loss curves (same seed) and whole training
#        step ms of symoc adamw/muon vs torch AdamW fused and torch.optim.Muon
#     2. tests/gpu/torchapi_gpu.py --package: transformers LLaMA and timm ViT through
#        symoc.torch.compile on CUDA, GPT-2 124M compile time, the package's symoc analyze
#     3. tests/gpu/dist_gpu.sh on the built fixture libraries: FSDP2 vs DDP vs one process,
#        gloo at world 2 and 3, NCCL with one rank per GPU
# Each step runs under its own time limit, and a failure does not stop the next; logs and
# JSON go to OUT; a summary table is printed last. Exit 1 when any step failed.
# FINAL_STEPS (space-separated step names, e.g. "build dist") runs only those steps.
set -u -o pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)

if [ "${1:-}" = "--stage" ]; then
  DEST=${2:?usage: final_gpu.sh --stage DEST PACKAGE.tar.gz}; TARBALL=${3:?package tarball}
  SYMOC=${SYMOC:-$ROOT/build/bin/symoc}; PY=${PYTHON:-/usr/bin/python3}
  [ -x "$SYMOC" ] || { echo "final_gpu.sh: no symoc at $SYMOC (set SYMOC)" >&2; exit 1; }
  set -e
  mkdir -p "$DEST"/{w/gen,pkg,tests,examples,models}
  rm -rf "$DEST"/{runtime,python,tests/gpu,examples/llama_char,pkg/*}
  cp -r "$ROOT/runtime" "$ROOT/python" "$DEST/"
  cp -r "$ROOT/tests/gpu" "$DEST/tests/"
  cp -r "$ROOT/examples/llama_char" "$DEST/examples/"
  cp "$ROOT/models/export_fixtures.py" "$DEST/models/"
  cp "$TARBALL" "$DEST/pkg/"
  find "$DEST" -name __pycache__ -prune -exec rm -rf {} +
  W=$DEST/w
  [ -f "$W/corpus.bin" ] || $PY "$ROOT/examples/llama_char/train.py" corpus "$W/corpus.bin"
  tmp=$(mktemp -d)
  $PY "$ROOT/examples/llama_char/train.py" export "$tmp/char.onnx" > /dev/null
  $PY - "$tmp/l25.onnx" "$ROOT/tests/gpu" <<'EOF'
import sys, torch
sys.path.insert(0, sys.argv[2])
import llama_char_gpu as g
torch.manual_seed(0)
m = g.ex.Llama(**g.LARGE)
torch.onnx.export(m, (torch.randint(0, 256, (2, g.LARGE["t"])),), sys.argv[1], opset_version=14,
                  training=torch.onnx.TrainingMode.TRAINING, do_constant_folding=False,
                  input_names=["input_ids"], output_names=["logits"])
EOF
  rm -rf "$W"/gen/*
  for p in adamw muon; do
    "$SYMOC" compile "$tmp/char.onnx" --policy $p --name llama_char_$p -o "$W/gen/llama_char_$p" > /dev/null 2>&1
    "$SYMOC" compile "$tmp/l25.onnx" --policy $p --name llama25m_$p -o "$W/gen/llama25m_$p" > /dev/null 2>&1
  done
  for m in llama gpt2; do for p in muon adamw symo; do
    "$SYMOC" compile "$ROOT/models/$m.onnx" --policy $p --name dist_${m}_$p -o "$W/gen/dist_${m}_$p" > /dev/null 2>&1
  done; done
  rm -rf "$tmp"
  echo "staged $DEST ($(du -sh "$DEST" | cut -f1)): $(ls "$W/gen" | tr '\n' ' ')"
  exit 0
fi

OUT=$(realpath -m "${1:-${OUT:-$ROOT/out}}"); mkdir -p "$OUT"
PY=${PYTHON:-python3}
cd "$ROOT"
declare -A RC SECS NOTE
ORDER=()
# The whole script stays within FINAL_BUDGET_S (default 500 s): each step's limit is cut to
# what is left, so the summary is always printed.
DEADLINE=$(( $(date +%s) + ${FINAL_BUDGET_S:-500} ))
run_step() { # NAME LIMIT_S CMD...   (output to OUT/NAME.log; rc, seconds, last line kept)
  local name=$1 limit=$2; shift 2
  # FINAL_STEPS="build dist" runs only the named steps (default: all).
  if [ -n "${FINAL_STEPS:-}" ] && [[ " $FINAL_STEPS " != *" $name "* ]]; then return 0; fi
  local left=$(( DEADLINE - $(date +%s) ))
  [ $limit -le $left ] || limit=$left
  [ $limit -ge 5 ] || limit=5
  ORDER+=("$name")
  local t0=$(date +%s)
  echo "=== $name (limit $limit s): $*"
  timeout --kill-after=10 "$limit" "$@" > "$OUT/$name.log" 2>&1
  RC[$name]=$?
  SECS[$name]=$(( $(date +%s) - t0 ))
  NOTE[$name]=$(grep -v '^\s*$' "$OUT/$name.log" | tail -1 | cut -c1-150)
  tail -40 "$OUT/$name.log"
}

TARBALL=$(ls "$ROOT"/pkg/symoc-*.tar.gz | head -1)
PKGDIR=/tmp/symoc-final-pkg
rm -rf $PKGDIR && mkdir -p $PKGDIR && tar -C $PKGDIR -xzf "$TARBALL"
PKG=$(echo $PKGDIR/symoc-*)
export LD_LIBRARY_PATH=$PKG/lib:${LD_LIBRARY_PATH:-}
GPU=0; nvidia-smi -L > "$OUT/nvidia-smi.txt" 2>&1 && GPU=1
{ date -u; nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null
  $PY -c "import torch; print('torch', torch.__version__)"; cat "$PKG/SYMOC_PACKAGE"; } > "$OUT/env.txt"
cat "$OUT/env.txt"

build() {
  local B=/tmp/symoc-final-build
  mkdir -p $B
  cat > $B/CMakeLists.txt <<EOF
cmake_minimum_required(VERSION 3.20)
project(symoc_final LANGUAGES C CXX)
add_subdirectory($ROOT/runtime symoc_runtime)
file(GLOB gens LIST_DIRECTORIES true $ROOT/w/gen/*)
foreach(d \${gens})
  get_filename_component(n \${d} NAME)
  add_subdirectory(\${d} gen_\${n})
endforeach()
EOF
  local cuda=OFF; [ $GPU = 1 ] && cuda=ON
  cmake -S $B -B $B/b -G Ninja -DCMAKE_BUILD_TYPE=Release -DSYMOC_CUDA=$cuda \
    -DCMAKE_CUDA_ARCHITECTURES=90 -DCMAKE_PREFIX_PATH="$PKG" \
    -DCMAKE_SHARED_LINKER_FLAGS=-Wl,--disable-new-dtags &&
  cmake --build $B/b -j"$(nproc)" && ls $B/b/gen_*/lib*_optimizer.so
}
lib() { ls /tmp/symoc-final-build/b/gen_$1/lib$1_optimizer.so 2>/dev/null || echo "missing-$1.so"; }

export ROOT PKG GPU
export -f build
run_step build 240 bash -c build
run_step e2e 150 $PY tests/gpu/llama_char_gpu.py --corpus w/corpus.bin --out "$OUT/e2e" \
  --steps "${E2E_STEPS:-200}" --lib adamw="$(lib llama_char_adamw)" --lib muon="$(lib llama_char_muon)" \
  --lib25 adamw="$(lib llama25m_adamw)" --lib25 muon="$(lib llama25m_muon)"
run_step torchapi 270 $PY tests/gpu/torchapi_gpu.py --package "$TARBALL" --out "$OUT/torchapi"
run_step dist 180 env PYTHON=$PY tests/gpu/dist_gpu.sh $(for m in llama gpt2; do for p in muon adamw symo; do
  lib dist_${m}_$p; done; done)
cp /tmp/dist_gpu_*.txt "$OUT/" 2>/dev/null

status=0
{
  echo
  echo "| step | exit | seconds | last line |"
  echo "| --- | --- | --- | --- |"
  for n in "${ORDER[@]}"; do
    [ "${RC[$n]}" = 0 ] || status=1
    echo "| $n | ${RC[$n]} | ${SECS[$n]} | ${NOTE[$n]//|//} |"
  done
} | tee "$OUT/summary.md"
for f in "$OUT/e2e.log" "$OUT/torchapi.log"; do
  [ -f "$f" ] && sed -n '/^| /p; /^case /,$p' "$f" | tail -25
done
# What comes back from the GPU machine is a few files: everything in one archive, plus the
# summary and the two JSON results beside it.
tar -czf /tmp/final_gpu_results.tgz -C "$OUT" . 2>/dev/null &&
  find "$OUT" -mindepth 1 -maxdepth 1 ! -name summary.md -exec rm -rf {} + &&
  mv /tmp/final_gpu_results.tgz "$OUT/results.tgz"
exit $status
