#!/bin/bash
# GPU tests and benchmark of the CUDA backend, on a machine with a CUDA GPU (no LLVM needed).
#
#   tests/gpu/run_gpu_tests.sh GEN_DIR OUT_DIR [DEBS_DIR] [--bench]
#
# GEN_DIR holds generated optimizer folders (`symoc compile ... --name NAME`, one folder per
# library; tests/gpu/prepare.sh writes them). The runtime (runtime/, with runtime/cuda) and
# every generated folder are built in one CMake project for sm_90, then tests/gpu/test_gpu.py
# runs on the gpt2_* libraries and, with --bench, bench/gpu/bench_gpu.py on gpt2small_* and
# llama1b_* (those present; SYMOC_BENCH=matrix: only the matrix rules' set). DEBS_DIR: Debian .debs of OpenBLAS/LAPACKE for a machine without them (dpkg -x
# into /tmp). Results (logs, JSON, Markdown) go to OUT_DIR.
set -u -o pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
GEN=$(realpath "$1"); OUT=$(realpath -m "$2"); shift 2
DEBS=""; BENCH=0
for a in "$@"; do
  if [ "$a" = "--bench" ]; then BENCH=1; else DEBS=$(realpath "$a"); fi
done
mkdir -p "$OUT"
BUILD=${SYMOC_GPU_BUILD:-/tmp/symoc-gpu-build}
EXTRA=()
if [ -n "$DEBS" ]; then
  X=/tmp/symoc-debs; mkdir -p $X
  for f in "$DEBS"/*.deb; do dpkg -x "$f" $X; done
  L=$X/usr/lib/x86_64-linux-gnu
  export LD_LIBRARY_PATH=$L:$L/openblas-pthread:${LD_LIBRARY_PATH:-}
  EXTRA=(-DSYMOC_OPENBLAS_LIB=$L/openblas-pthread/libopenblas.so -DSYMOC_LAPACKE_LIB=$L/liblapacke.so
         -DSYMOC_CBLAS_INCLUDE=$X/usr/include/x86_64-linux-gnu/openblas-pthread -DSYMOC_LAPACKE_INCLUDE=$X/usr/include)
fi
mkdir -p "$BUILD"
cat > "$BUILD/CMakeLists.txt" <<EOF
cmake_minimum_required(VERSION 3.20)
project(symoc_gpu_tests LANGUAGES C CXX)
add_subdirectory($ROOT/runtime symoc_runtime)
file(GLOB gens LIST_DIRECTORIES true $GEN/*)
foreach(d \${gens})
  if(EXISTS \${d}/CMakeLists.txt)
    get_filename_component(n \${d} NAME)
    add_subdirectory(\${d} gen_\${n})
  endif()
endforeach()
EOF
t0=$(date +%s)
cmake -S "$BUILD" -B "$BUILD/b" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 "${EXTRA[@]}" \
  > "$OUT/cmake.log" 2>&1 || { tail -30 "$OUT/cmake.log"; exit 1; }
cmake --build "$BUILD/b" -j"$(nproc)" > "$OUT/build.log" 2>&1 || { grep -m20 -B2 -A8 "error" "$OUT/build.log"; exit 1; }
echo "build: $(( $(date +%s) - t0 )) s"
# SYMOC_GPU_TEST_FILTER: an extended regex the checked libraries' paths must match (default: all).
libs=$(find "$BUILD/b" -name 'libgpt2_*_optimizer.so' -o -name 'libllama_*_optimizer.so' \
  -o -name 'libmixtral_*_optimizer.so' | sort |
  grep -E "${SYMOC_GPU_TEST_FILTER:-.}")
rc=0
python3 "$ROOT/tests/gpu/test_gpu.py" $libs --json "$OUT/gpu_tests.json" 2>&1 | tee "$OUT/gpu_tests.log" || rc=1
if [ $BENCH = 1 ]; then
  lib() { find "$BUILD/b" -name "lib$1_optimizer.so" | head -1; }
  # SYMOC_BENCH=matrix: only the matrix rules' comparison (symo/auto vs muon, Shampoo vs torch eigh).
  sets=()
  if [ "${SYMOC_BENCH:-all}" != matrix ]; then
    [ -n "$(lib gpt2small_muon)" ] && sets+=(--set gpt2-small "$(lib gpt2small_adamw)" "$(lib gpt2small_muon)")
    [ -n "$(lib gpt2small_adam_mini)" ] && sets+=(--adam-mini gpt2-small "$(lib gpt2small_adam_mini)")
    [ -n "$(lib llama1b_muon)" ] && sets+=(--set llama-1b "$(lib llama1b_adamw)" "$(lib llama1b_muon)")
  fi
  [ -n "$(lib gpt2small_symo)" ] && sets+=(--matrix gpt2-small "$(lib gpt2small_muon)" "$(lib gpt2small_symo)" \
    "$(lib gpt2small_auto)" "$(lib gpt2small_shampoo)" "$(lib gpt2small_shampoo_f10)")
  python3 "$ROOT/bench/gpu/bench_gpu.py" --out "$OUT" "${sets[@]}" 2>&1 | tee "$OUT/bench.log" || rc=1
fi
exit $rc
