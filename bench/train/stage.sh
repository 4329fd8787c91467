#!/usr/bin/env bash
# Stage the training benchmark for the GPU machine (issue #13, item 3): one folder that
# bench/train/run.sh builds and runs there, with nothing to fetch.
#
#   bench/train/stage.sh DEST [PACKAGE.tar.gz]
#
# Needs (here): /usr/bin/python3 with Debian's torch 1.13 (ONNX export), the symoc tool
# ($SYMOC, default build/bin/symoc) and the relocatable package of tools/package.sh (its
# OpenBLAS/LAPACKE and headers are what the generated code links against there): the
# argument, else $SYMOC_PACKAGE, else the newest build-package/dist/symoc-*.tar.gz.
# Writes into DEST (repository layout): bench/train/, runtime/, python/ (sources), pkg/ (the
# package), corpus/ (train.bin.xz, val.bin.xz, manifest.json, files.tsv), gen/MODEL_POLICY/
# (`symoc compile` of the llama and gpt2 models for auto, symo, muon, auto-norm and symo-whole
# (`--policy symo --granularity whole`); $TRAINBENCH_POLICIES
# changes the list). The corpus and the ONNX exports are cached in $TRAINBENCH_CACHE
# (default build/trainbench): the corpus takes minutes to build and compress, each compile
# about a minute (two run at a time). Prints DEST's size last (it must stay under 64 MiB with
# whatever else travels).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DEST=${1:?usage: bench/train/stage.sh DEST [PACKAGE.tar.gz]}
SYMOC=${SYMOC:-$ROOT/build/bin/symoc}
PY=${PYTHON:-/usr/bin/python3}
CACHE=${TRAINBENCH_CACHE:-$ROOT/build/trainbench}
POLICIES=${TRAINBENCH_POLICIES:-auto symo muon auto-norm symo-whole}
MODELS="llama gpt2"
die() { echo "stage.sh: error: $*" >&2; exit 1; }

PKG=${2:-${SYMOC_PACKAGE:-$(ls -t "$ROOT"/build-package/dist/symoc-*.tar.gz 2>/dev/null | head -1)}}
[ -n "$PKG" ] && [ -f "$PKG" ] || die "no package tarball (pass one, set SYMOC_PACKAGE, or run tools/package.sh)"
[ -x "$SYMOC" ] || die "no symoc at $SYMOC (build it, or set SYMOC)"
$PY -c 'import torch, onnx' 2>/dev/null || die "$PY cannot import torch and onnx (Debian's python3-torch, python3-onnx)"

mkdir -p "$DEST" "$CACHE"
DEST=$(cd "$DEST" && pwd)
t0=$(date +%s)

# 1. corpus (cached; the manifest's sha256 is checked by corpus.py check)
if ! [ -f "$CACHE/corpus/train.bin.xz" ] || ! $PY "$ROOT/bench/train/corpus.py" check "$CACHE/corpus" > /dev/null 2>&1; then
  rm -rf "$CACHE/corpus"
  $PY "$ROOT/bench/train/corpus.py" build "$CACHE/corpus" --xz
fi

# 2. sources
rm -rf "$DEST"/{bench,runtime,python,pkg,corpus,gen}
mkdir -p "$DEST"/{bench,pkg,corpus,gen}
cp -r "$ROOT/runtime" "$ROOT/python" "$DEST/"
cp -r "$ROOT/bench/train" "$DEST/bench/"
cp "$PKG" "$DEST/pkg/"
cp "$CACHE/corpus"/{train.bin.xz,val.bin.xz,manifest.json,files.tsv} "$DEST/corpus/"
find "$DEST" -name __pycache__ -prune -exec rm -rf {} +
# the commit staged (results.json records it; report.py shows it per call)
{ git -C "$ROOT" rev-parse --short=12 HEAD 2>/dev/null | tr -d '\n'
  [ -n "$(git -C "$ROOT" status --porcelain -- runtime python bench/train compiler 2>/dev/null)" ] && printf '+dirty'
  echo; } > "$DEST/STAGE_INFO"

# 3. ONNX exports (torch 1.13, math attention) and the generated optimizers
for m in $MODELS; do
  if ! [ -f "$CACHE/$m.onnx" ] || [ "$ROOT/bench/train/models.py" -nt "$CACHE/$m.onnx" ]; then
    (cd "$ROOT/bench/train" && $PY -W ignore -c "import models, sys; print(sys.argv[1], models.export_onnx(sys.argv[1], sys.argv[2]), 'parameters')" "$m" "$CACHE/$m.onnx")
  fi
done
jobs_file=$(mktemp)
for m in $MODELS; do for p in $POLICIES; do echo "$m $p"; done; done > "$jobs_file"
export SYMOC CACHE DEST PY ROOT
# shellcheck disable=SC2016
xargs -P "${TRAINBENCH_JOBS:-2}" -L 1 bash -c '
  m=$0 p=$1
  s=$(date +%s)
  args=$("$PY" "$ROOT/bench/train/bench.py" compile-args "$p") || exit 255   # bench.py COMPILE_ARGS
  # shellcheck disable=SC2086
  if "$SYMOC" compile "$CACHE/$m.onnx" $args --name "${m}_$p" -o "$DEST/gen/${m}_$p" \
       > "$CACHE/compile_${m}_$p.log" 2>&1; then
    echo "compiled $m/$p in $(( $(date +%s) - s )) s"
  else
    echo "stage.sh: symoc compile $m --policy $p failed:" >&2; tail -5 "$CACHE/compile_${m}_$p.log" >&2
    exit 255
  fi' < "$jobs_file"
rm -f "$jobs_file"
rm -rf "$DEST"/gen/*/build
echo "staged $DEST in $(( $(date +%s) - t0 )) s: $(du -sh --apparent-size "$DEST" | cut -f1) ($(ls "$DEST/gen" | tr '\n' ' '))"
echo "there: cd DEST && bash bench/train/run.sh   (results in \$OUT, else DEST/out)"
