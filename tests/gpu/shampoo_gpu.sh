#!/bin/bash
# One GPU-machine call for Shampoo's Newton inverse roots (SYMOC_CUDA_ROOT=newton, branch
# shampoo, issue 12): build the runtime and every generated optimizer of gen/ (as
# matrix_rules_gpu.sh), run tests/gpu/test_gpu.py on the Shampoo libraries plus gpt2_adamw and
# gpt2_muon (the checks that need them) - newton.*, newton_nonfinite.*, newton_graph.* on
# gpt2_shampoo_newton, the existing agree/state/graph/nonfinite checks of gpt2_shampoo,
# gpt2_shampoo_f3, llama_shampoo - then bench/gpu/bench_gpu.py --matrix with
# SYMOC_BENCH_SHAMPOO=only: symoc shampoo with eigh roots, Newton roots (fp32), Newton roots
# (TF32), Newton roots (f64, f = 1) and the torch eigh Shampoo, f = 1 and 10, with the
# ratios and the roots' error against fp64 eigh ("root err" lines). At most 8 files in $OUT.
#
#   here:  tests/gpu/prepare.sh DEST /tmp/gpt2_small.onnx -        (docs/testing.md)
#   there: cd DEST && OUT=... tests/gpu/shampoo_gpu.sh [SECONDS]   (limit, default 560)
# Pass: "N of N checks passed" and no FAIL line; the bench table's newton rows present with
# their ratios, and the root errors printed (see docs/benchmarks.md, "Newton inverse roots").
set -u -o pipefail
cd "$(dirname "$0")/../.."
export OUT=${OUT:-/tmp/symoc-shampoo-out} SYMOC_MATRIX_RUN_DIR=/tmp/symoc-shampoo
export SYMOC_BENCH_SHAMPOO=only SYMOC_GPU_TEST_FILTER='shampoo|libgpt2_adamw_|libgpt2_muon_'
tests/gpu/matrix_rules_gpu.sh "${1:-560}"
rc=$?
R=$SYMOC_MATRIX_RUN_DIR
echo "---- summary"
grep -E "^PASS (newton|graph\.newton|agree\.gpt2_shampoo_newton)" $R/gpu_tests.log 2>/dev/null | tail -40
grep -E "root err|: [A-Za-z]+Error" $R/bench.log 2>/dev/null | head -20
exit $rc
