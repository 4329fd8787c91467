#!/bin/bash
# One GPU-machine call for issue 12's open speed targets (branch gpuperf): build the runtime
# and every generated optimizer of gen/, run every GPU check (tests/gpu/test_gpu.py, with
# aux.{tiled,direct}.<lib>: Symo's run plumbing against the first kernels), time symo against
# muon with SYMOC_CUDA_SYMO_AUX unset (tiled) / legacy / direct (bench_gpu.py --matrix, alone
# on the GPU, plus a torch.profiler kernel table), then Newton-Schulz end to end (the
# Muon agreement checks on the standard bf16 path (SYMOC_CUDA_NS=standard: Gram is the default since
# session 6), and the GPT-2 / LLaMA-1B sets ("symoc muon" = Gram, "standard NS") next to
# torch.optim.Muon). At most 8 files in $OUT; a short table last. Shampoo's Newton roots
# (SYMOC_CUDA_ROOT=newton): their checks run here with the others (newton.*, on prepare.sh's
# gpt2_shampoo_newton); their benchmark is tests/gpu/shampoo_gpu.sh (a call of its own).
#
#   here:  tests/gpu/prepare.sh DEST /tmp/gpt2_small.onnx /tmp/llama1b.onnx   (docs/testing.md)
#   there: cd DEST && OUT=... tests/gpu/perf_gpu.sh        (about 3-4 minutes on an H200)
set -u -o pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/symoc-perf-out}; mkdir -p "$OUT"
export OUT PYTHONUNBUFFERED=1 SYMOC_BENCH_SHAMPOO=0 SYMOC_BENCH_PROFILE=$OUT/profile.txt
t0=$(date +%s)
tests/gpu/matrix_rules_gpu.sh 170
echo "matrix_rules rc=$? after $(( $(date +%s) - t0 )) s"
B=/tmp/symoc-gpu-build/b
L=/tmp/symoc-debs/usr/lib/x86_64-linux-gnu
export LD_LIBRARY_PATH=$L:$L/openblas-pthread:${LD_LIBRARY_PATH:-}
lib() { find $B -name "lib$1_optimizer.so" | head -1; }
G=$OUT/gram.log
{
  echo "== SYMOC_CUDA_NS=standard: GPU checks"
  SYMOC_CUDA_NS=standard timeout 40 python3 tests/gpu/test_gpu.py $(lib gpt2_adamw) $(lib gpt2_muon) $(lib gpt2_auto) \
    $(lib gpt2_ddc_muon) $(lib llama_auto) $(lib llama_ddc_muon) 2>&1
  # The Muon checks under one switch of the backend: checks ENV=VALUE TITLE
  muon_checks() {
    echo "== $1 ($2): Muon checks, streams, graphs"
    env "$1" timeout 60 python3 tests/gpu/test_gpu.py $(lib gpt2_adamw) $(lib gpt2_muon) $(lib gpt2_auto) \
      $(lib llama_auto) 2>&1 | grep -E "^FAIL|checks passed|agree.*muon|torch_muon|stream|graph|nonfinite|subset"
  }
  muon_checks SYMOC_CUDA_NS_SYM=1 "symmetric products on every side"
  muon_checks SYMOC_CUDA_FUSE=0 "the plan's own norms, unpack to U, separate update"
  muon_checks SYMOC_CUDA_FUSE=1 "the momentum kernel writes U, the plan packs it"
  muon_checks SYMOC_CUDA_OVERLAP=1 "elementwise groups on a side stream"
  muon_checks SYMOC_CUDA_NS_STREAMS=1 "standard and Gram groups on one stream"
  muon_checks SYMOC_CUDA_NS_WRITE_THROUGH=0 "the Gram path's product into the bank and the unpack"
  echo "== bench --set (muon (Gram), standard NS, own loop, torch) after $(( $(date +%s) - t0 )) s"
  sets=(--set gpt2-small $(lib gpt2small_adamw) $(lib gpt2small_muon))
  [ -n "$(lib llama1b_muon)" ] && sets+=(--set llama-1b $(lib llama1b_adamw) $(lib llama1b_muon))
  timeout $(( 285 - ($(date +%s) - t0) )) python3 bench/gpu/bench_gpu.py --out /tmp/gramset --iters 20 "${sets[@]}" 2>&1 \
    | tail -40
  # the sets' JSON on one line (bench/gpu/plot.py reads it: grep '^SETS_JSON ' | cut -c11-)
  [ -f /tmp/gramset/bench_gpu.json ] && echo "SETS_JSON $(python3 -c 'import json; print(json.dumps(json.load(open("/tmp/gramset/bench_gpu.json"))))')"
} > $G 2>&1
echo "total $(( $(date +%s) - t0 )) s"
echo "---- summary"
grep -E "^FAIL|checks passed|aux\.|^PASS (newton|graph\.newton)" /tmp/symoc-matrix-rules/gpu_tests.log | tail -36
grep -E "checks passed|^FAIL|torch_muon|agree.gpt2_muon" $G | head -14
grep -E "^\| (symoc muon|torch Muon)|^\*\*" $G | head -24
[ -f $OUT/bench_gpu.md ] && tail -12 $OUT/bench_gpu.md
