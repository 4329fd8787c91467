#!/bin/bash
# One GPU-machine call for the matrix rules of the CUDA backend (issue 12): build the runtime
# and every generated optimizer of DEST/gen (tests/gpu/prepare.sh), run tests/gpu/test_gpu.py
# (all GPU checks, the existing ones included) and bench/gpu/bench_gpu.py --matrix, and leave
# at most 8 files in $OUT (the tool's limit): the logs, the JSON results, and all.tgz.
#   cd DEST && tests/gpu/matrix_rules_gpu.sh [SECONDS]   (the run's time limit, default 400)
# SYMOC_MATRIX_RUN_DIR (default /tmp/symoc-matrix-rules) is the scratch folder; the test and
# bench filters of run_gpu_tests.sh / bench_gpu.py (SYMOC_GPU_TEST_FILTER, SYMOC_BENCH_SHAMPOO)
# pass through (tests/gpu/shampoo_gpu.sh sets them).
set -u -o pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/symoc-matrix-out}
LIMIT=${1:-400}
R=${SYMOC_MATRIX_RUN_DIR:-/tmp/symoc-matrix-rules}; rm -rf $R; mkdir -p $R "$OUT"
export PYTHONUNBUFFERED=1 SYMOC_BENCH=matrix
t0=$(date +%s)
nvidia-smi --query-gpu=name,driver_version,clocks.sm --format=csv,noheader 2>&1 | tee $R/device.txt
timeout $((LIMIT - 10)) tests/gpu/run_gpu_tests.sh gen $R debs --bench > $R/run.log 2>&1
rc=$?
echo "run_gpu_tests rc=$rc after $(( $(date +%s) - t0 )) s" | tee -a $R/run.log
tar czf "$OUT/all.tgz" -C $R . 2>/dev/null
for f in run.log gpu_tests.json bench_gpu.json bench_gpu.md bench.log; do [ -f $R/$f ] && cp $R/$f "$OUT/"; done
grep -m30 -B2 -A12 "error" $R/build.log > "$OUT/build_errors.txt" 2>/dev/null || true
grep -E "^FAIL|checks passed" $R/gpu_tests.log 2>/dev/null | tail -40
[ -f $R/bench_gpu.md ] && tail -20 $R/bench_gpu.md
exit $rc
