#!/bin/bash
# Writes what tests/gpu/run_gpu_tests.sh needs on a GPU machine into DEST (run here, where
# build/bin/symoc exists): the runtime and Python sources, the test and benchmark scripts,
# generated optimizers (gen/) and OpenBLAS/LAPACKE .debs (debs/).
#
#   tests/gpu/prepare.sh DEST [GPT2_SMALL.onnx|- [LLAMA1B.onnx|-]]
# The two large models are optional (bench only; '-' skips one): bench/compile/bench_compile.py's
# export_gpt2_small and bench/analyze/make_llama7b.py with d_model 2048, 16 layers, 32 heads,
# 8 KV heads, FFN 8192 (docs/testing.md, "GPU: the CUDA optimizer backend", shows the commands).
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DEST=$1; SYMOC=${SYMOC:-$ROOT/build/bin/symoc}
mkdir -p "$DEST/gen" "$DEST/debs" "$DEST/tests" "$DEST/bench"
rm -rf "$DEST/runtime" "$DEST/python" "$DEST/tests/gpu" "$DEST/bench/gpu" "$DEST/gen"/*
cp -r "$ROOT/runtime" "$ROOT/python" "$DEST/"
cp -r "$ROOT/tests/gpu" "$DEST/tests/"
cp -r "$ROOT/bench/gpu" "$DEST/bench/"
find "$DEST/python" -name __pycache__ -prune -exec rm -rf {} +
gen() { # NAME MODEL ARGS...
  local name=$1 model=$2; shift 2
  "$SYMOC" compile "$model" --name "$name" -o "$DEST/gen/$name" "$@" > /dev/null 2>&1
}
M=$ROOT/models/gpt2.onnx
# Lau-Su centres the head only on a shift claim, which the cross-entropy loss gives (session
# 35): with it, the library keeps the centered_row rule the GPU checks compare.
loss() { if [ "$1" = lau-su ]; then echo --loss cross-entropy; fi; }
for pol in adamw muon symo auto auto-norm shampoo lau-su adam-mini ddc-adam ddc-muon symo-coupled symo-large; do
  gen "gpt2_${pol//-/_}" "$M" --policy $pol $(loss $pol)
done
# The matrix rules on LLaMA's shapes too (per-head O|O pieces, SwiGLU gauges, Lau-Su col/centered_row).
for pol in symo auto auto-norm shampoo lau-su ddc-adam ddc-muon symo-coupled symo-large; do
  gen "llama_${pol//-/_}" "$ROOT/models/llama.onnx" --policy $pol $(loss $pol)
done
# Expert stacks (transformers' Mixtral, E x m x n experts): Muon on each expert's matrix, as
# Symo runs on the stack's (E m) x n view (muon; auto also projects the gauges elsewhere).
for pol in muon auto; do
  gen "mixtral_${pol}" "$ROOT/models/hf_moe/mixtral.onnx" --policy $pol
done
# Shampoo's refresh interval (roots every F-th step) on every Shampoo block: the hidden matrices
# and the tied embedding (its 768 side; bench_gpu.py's torch reference refreshes every root
# every F steps, so wte's at 1 made symoc's f = 10 / 100 rows pay one eigensolve every step).
every() {
  for m in attn.c_attn attn.c_proj mlp.c_fc mlp.c_proj; do echo --override "*$m.weight=shampoo,precondition_frequency=$1"; done
  echo --override "wte.weight=shampoo,precondition_frequency=$1"
}
set -f # the override globs are symoc's, not the shell's
gen gpt2_shampoo_f3 "$M" --policy shampoo $(every 3)
# Shampoo with eps = 10 on every Shampoo block (hidden matrices, wte, wpe): a root that fp32
# resolves and 16 Newton steps reach on the test gradients (kappa <= ~1e3 over 4 steps), for
# the SYMOC_CUDA_ROOT=newton checks (test_gpu.py newton.*).
eps10() {
  for m in '*attn.c_attn' '*attn.c_proj' '*mlp.c_fc' '*mlp.c_proj' wte wpe; do echo --override "$m.weight=shampoo,eps=10"; done
}
gen gpt2_shampoo_newton "$M" --policy shampoo $(eps10)
# Two-sided Symo (S x S, S x Z2: the pairs' closed form) and a host-path block (Symo 1 x 1,
# dense, stays on the host): agreement, and the capture refusal of the host path.
gen gpt2_symo_sxs "$M" --policy adamw --override 'h.0.mlp.c_fc.weight=symo:SxS' --override 'h.1.mlp.c_fc.weight=symo:SxZ2' \
  --override 'h.*.mlp.c_proj.weight=symo:SxS'
gen gpt2_symo_dense "$M" --policy adamw --override 'h.0.attn.c_proj.weight=symo:1x1'
gen gpt2_sgd "$M" --policy adamw --override '*=sgd,momentum=0.9,nesterov=1,weight_decay=0.01'
gen gpt2_sgd0 "$M" --policy adamw --override '*=sgd,momentum=0'
gen gpt2_adam "$M" --policy adamw --override '*=adam,weight_decay=0.01'
# Benchmark sets (either may be '-'): GPT-2 small for every step class, LLaMA-1B for AdamW/Muon.
if [ $# -ge 2 ] && [ "$2" != - ]; then
  for pol in adamw muon symo auto shampoo adam-mini; do gen "gpt2small_${pol//-/_}" "$2" --policy $pol; done
  gen gpt2small_shampoo_f10 "$2" --policy shampoo $(every 10)
  gen gpt2small_shampoo_f100 "$2" --policy shampoo $(every 100)
fi
if [ $# -ge 3 ] && [ "$3" != - ]; then
  # make_llama7b's weights are sparse zeros (never read), so no claim can be verified on it:
  # the benchmark needs only the plan (AdamW / Muon split by shape and role).
  for pol in adamw muon; do gen llama1b_$pol "$3" --policy $pol --no-verify; done
fi
set +f
(cd "$DEST/debs" && apt-get download libopenblas0-pthread libopenblas-dev libopenblas-pthread-dev liblapacke \
   liblapacke-dev libgfortran5 libtmglib3 libblas3 liblapack3 > /dev/null 2>&1) || echo "prepare: apt-get download failed"
echo "prepared $DEST"
