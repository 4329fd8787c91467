#!/bin/bash
# The CUDA runtime builds for GPUs before Hopper too (CMAKE_CUDA_ARCHITECTURES=80, an A100):
# the sources with inline PTX (sm_90-only instructions must be compiled out there) are compiled
# for sm_80. Host-only (no GPU): a compile check.
#   tests/gpu/older_arch_compile.sh NVCC SRC_DIR WORK_DIR
set -u
nvcc=$1 src=$2 work=$3
mkdir -p "$work"
files=$(grep -l 'asm volatile\|asm(' "$src"/runtime/cuda/lib/*.cu)
[ -n "$files" ] || { echo "no CUDA source with inline PTX: nothing to check"; exit 0; }
rc=0
for f in $files; do
  if "$nvcc" -std=c++17 -O0 -arch=sm_80 -I"$src/runtime/include" -I"$src/runtime/cuda/include" -c "$f" \
       -o "$work/$(basename "$f").sm80.o" > "$work/$(basename "$f").log" 2>&1; then
    echo "ok   sm_80 $(basename "$f")"
  else
    echo "FAIL sm_80 $(basename "$f"):"; grep -m3 -i error "$work/$(basename "$f").log"; rc=1
  fi
done
exit $rc
