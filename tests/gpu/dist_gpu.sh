#!/usr/bin/env bash
# FSDP2 (fully_shard) against DDP for symoc.distributed, on the GPU machine (torch >= 2.4).
#
# Here (symoc built):   tests/gpu/dist_gpu.sh --prepare OUT      (symoc compile of the fixtures)
# There:                tests/gpu/dist_gpu.sh OUT/*/             (cmake build + the runs)
#                       tests/gpu/dist_gpu.sh LIB.so...           (libraries built already)
#
# The second form builds every folder written by `symoc compile` with cmake against runtime/
# (OpenBLAS and LAPACKE must be findable), then runs tests/gpu/test_fsdp2.py: gloo on CPU
# parameters at world sizes 2 and 3 (FSDP2 == DDP == single process, bit for bit), and, when
# the libraries have the CUDA entry points (create_cuda/step_cuda), NCCL on CUDA parameters
# with one rank per GPU (float32 and bfloat16) and gloo with 2 ranks on GPU 0 (float32,
# bfloat16, and both mixed). Prints PASS/FAIL per library with the largest absolute difference,
# then one summary line per run. Exit status: 0 when every run that ran passed.
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PY=${PYTHON:-python3}

if [ "${1:-}" = "--prepare" ]; then
  out=${2:?usage: dist_gpu.sh --prepare OUT}
  SYMOC=${SYMOC:-$ROOT/build/bin/symoc}
  for m in llama gpt2 resnet_cnn; do
    for p in symo symo-coupled muon shampoo adam-mini adamw; do
      "$SYMOC" compile "$ROOT/models/$m.onnx" --policy "$p" -o "$out/${m}_$p" >/dev/null || exit 1
    done
  done
  echo "wrote $(ls "$out" | wc -l) folders under $out"
  exit 0
fi

[ $# -ge 1 ] || { echo "usage: dist_gpu.sh GEN_DIR... | --prepare OUT" >&2; exit 2; }
libs=()
for d in "$@"; do
  case "$d" in *.so) libs+=(--library "$(realpath "$d")"); continue ;; esac   # built already
  lib=$(cd "$ROOT" && $PY -c "import sys; sys.path.insert(0, 'python')
from symoc.build import build_library
print(build_library(sys.argv[1], runtime_dir='runtime'))" "$d") || { echo "FAIL: build of $d"; exit 1; }
  libs+=(--library "$lib")
done
status=0
summary=()
for w in 2 3; do
  $PY "$ROOT/tests/gpu/test_fsdp2.py" "${libs[@]}" --backend gloo --world $w | tee /tmp/dist_gpu_gloo$w.txt
  rc=${PIPESTATUS[0]}
  [ $rc -eq 0 ] || [ $rc -eq 77 ] || status=1
  summary+=("gloo world $w: $(tail -1 /tmp/dist_gpu_gloo$w.txt)")
done
ngpu=$($PY -c "import torch; print(torch.cuda.device_count() if torch.cuda.is_available() else 0)")
has_cuda=$(cd "$ROOT" && $PY -c "import sys; sys.path.insert(0, 'python')
from symoc.torch import load_library
print(int(bool(load_library(sys.argv[1]).api.step_cuda)))" "${libs[1]}")
if [ "$ngpu" -ge 1 ] && [ "$has_cuda" = 1 ]; then
  for dt in fp32 bf16; do
    $PY "$ROOT/tests/gpu/test_fsdp2.py" "${libs[@]}" --backend nccl --world "$ngpu" --dtype $dt | tee /tmp/dist_gpu_nccl_$dt.txt
    [ ${PIPESTATUS[0]} -eq 0 ] || status=1
    summary+=("nccl world $ngpu $dt: $(tail -1 /tmp/dist_gpu_nccl_$dt.txt)")
  done
  # Several ranks on one GPU (gloo carries CUDA tensors): world 2 with every dtype layout.
  for dt in fp32 bf16 mixed; do
    $PY "$ROOT/tests/gpu/test_fsdp2.py" "${libs[@]}" --backend gloo --device cuda --world 2 --dtype $dt | tee /tmp/dist_gpu_gloo_cuda_$dt.txt
    [ ${PIPESTATUS[0]} -eq 0 ] || status=1
    summary+=("gloo on cuda world 2 $dt: $(tail -1 /tmp/dist_gpu_gloo_cuda_$dt.txt)")
  done
else
  summary+=("nccl: not run (GPUs: $ngpu, library CUDA entry points: $has_cuda)")
fi
printf '%s\n' "${summary[@]}"
exit $status
