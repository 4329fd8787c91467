#!/bin/bash
# GPU tests and microbenchmark of the batched matrix kernels (runtime/cuda).
#   tests/gpu/run_matrix_tests.sh build [DIR]   compile (needs nvcc, OpenBLAS/LAPACKE; no GPU)
#   tests/gpu/run_matrix_tests.sh run   [DIR]   run on a GPU machine from a build DIR
#   tests/gpu/run_matrix_tests.sh all   [DIR]   both
# DIR defaults to build-gpu. `build` copies the non-system shared libraries the binaries need
# into DIR/lib so that DIR runs on a GPU machine without OpenBLAS. Results go to $OUT (or
# DIR/results): test.log, bench.log, bench.json, torch_bench.json, spread.txt. Exit status:
# non-zero when a check fails.
set -u -o pipefail
mode=${1:-all}
here=$(cd "$(dirname "$0")/../.." && pwd)
dir=${2:-$here/build-gpu}
NVCC=${NVCC:-/usr/local/cuda/bin/nvcc}
ARCH="-gencode=arch=compute_90,code=sm_90"

# True when $2 is missing or older than $1 or any runtime / cuda header.
stale() {
  [ ! -e "$2" ] && return 0
  [ "$1" -nt "$2" ] && return 0
  for h in "$here"/runtime/include/symoc/runtime/*.h "$here"/runtime/cuda/include/symoc/cuda/*.h \
    "$here"/runtime/cuda/lib/*.cuh "$here"/tests/gpu/*.h; do
    [ "$h" -nt "$2" ] && return 0
  done
  return 1
}

build() {
  mkdir -p "$dir/obj" "$dir/lib" || return 1
  local inc="-I$here/runtime/include -I$here/runtime/cuda/include"
  local blas_inc
  blas_inc=$(dirname "$(find /usr/include -name cblas.h | head -1)")
  echo "== build into $dir"
  for f in "$here"/runtime/lib/*.cpp; do
    stale "$f" "$dir/obj/rt_$(basename "$f" .cpp).o" || continue
    g++ -std=c++17 -O2 -fopenmp -fno-math-errno -fPIC $inc -I"$blas_inc" -c "$f" -o "$dir/obj/rt_$(basename "$f" .cpp).o" || return 1
  done
  for f in "$here"/runtime/cuda/lib/*.cu; do
    stale "$f" "$dir/obj/cu_$(basename "$f" .cu).o" || continue
    "$NVCC" -std=c++17 -O2 $ARCH $inc -Xcompiler -Wall -c "$f" -o "$dir/obj/cu_$(basename "$f" .cu).o" || return 1
  done
  for t in matrix_test matrix_bench; do
    stale "$here/tests/gpu/$t.cpp" "$dir/obj/$t.o" || continue
    "$NVCC" -std=c++17 -O2 $ARCH $inc -I"$blas_inc" -x cu -c "$here/tests/gpu/$t.cpp" -o "$dir/obj/$t.o" || return 1
  done
  # LAPACKE statically: its LAPACK calls then resolve in OpenBLAS (no reference LAPACK to carry)
  local libs="-lcublas -lcublasLt -lcusolver $(find /usr/lib -name liblapacke.a | head -1) -lopenblas -lgfortran -Xcompiler -fopenmp"
  "$NVCC" $ARCH -o "$dir/symoc_gpu_matrix_test" "$dir/obj/matrix_test.o" "$dir"/obj/cu_*.o "$dir"/obj/rt_*.o $libs || return 1
  "$NVCC" $ARCH -o "$dir/symoc_gpu_matrix_bench" "$dir/obj/matrix_bench.o" "$dir"/obj/cu_*.o "$dir"/obj/rt_*.o $libs || return 1
  strip "$dir/symoc_gpu_matrix_test" "$dir/symoc_gpu_matrix_bench"
  cp "$here/tests/gpu/torch_reference.py" "$dir/"
  # Shared libraries a bare CUDA machine may lack (OpenBLAS, LAPACKE, gfortran, OpenMP).
  ldd "$dir/symoc_gpu_matrix_test" | awk '/=> \// {print $3}' |
    grep -E '/lib(openblas|lapacke?|blas|tmglib|gfortran|quadmath|gomp)\.' | while read -r l; do cp -L "$l" "$dir/lib/" && strip --strip-unneeded "$dir/lib/$(basename "$l")"; done
  ls "$dir/lib"
}

run() {
  local out=${OUT:-$dir/results}
  mkdir -p "$out"
  export LD_LIBRARY_PATH="$dir/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
  nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv,noheader || true
  if ldd "$dir/symoc_gpu_matrix_test" | grep -q "not found"; then
    # CUDA libraries from the Python wheels when the toolkit's lib64 lacks them
    for d in $(python3 -c 'import nvidia,os;p=nvidia.__path__[0];print(" ".join(os.path.join(p,x,"lib") for x in os.listdir(p)))' 2>/dev/null); do
      export LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$d"
    done
    ldd "$dir/symoc_gpu_matrix_test" | grep "not found"
  fi
  echo "== torch spread (bf16 Muon vs fp32 on the test shapes)"
  python3 "$dir/torch_reference.py" spread "$out/spread.txt" 2>&1 | tee "$out/spread.log" || echo "torch spread failed"
  echo "== correctness"
  "$dir/symoc_gpu_matrix_test" "$out/spread.txt" 2>&1 | tee "$out/test.log"
  local rc=${PIPESTATUS[0]}
  echo "== benchmark"
  "$dir/symoc_gpu_matrix_bench" "$out/bench.json" 2>&1 | tee "$out/bench.log" || rc=1
  python3 "$dir/torch_reference.py" bench "$out/torch_bench.json" 2>&1 | tee "$out/torch.log" || echo "torch bench failed"
  echo "== summary"
  grep -E "FAIL|checks," "$out/test.log" || true
  grep -E "^(# )?(gram|standard sym|symmetric gemm|ns tuned|ns fused|ns concurrent) " "$out/test.log" || true
  grep -E "Gram" "$out/spread.log" 2>/dev/null || true
  grep -E "^BENCH|^#" "$out/bench.log" || true
  grep -E "^TORCH" "$out/torch.log" || true
  python3 - "$out" <<'PY' || true
import json, sys, os
o = sys.argv[1]
b = json.load(open(os.path.join(o, "bench.json")))
t = json.load(open(os.path.join(o, "torch_bench.json")))
ours = min(b["gpt2 ns5 banks+lt ms"], b["gpt2 ns5 banks+lt cuda-graph ms"])
print(f"GPT-2 NS5: symoc {ours:.3f} ms | bound {b['gpt2 ns5 FLOP bound at measured rate ms']:.3f} ms "
      f"({ours / b['gpt2 ns5 FLOP bound at measured rate ms']:.2f}x) | torch batched "
      f"{t['torch batched ns5 (stack+bf16+unstack) ms']:.3f} ms ({ours / t['torch batched ns5 (stack+bf16+unstack) ms']:.2f}x)"
      + (f" | torch.optim.Muon {t['torch.optim.Muon step (48 matrices) ms']:.3f} ms" if 'torch.optim.Muon step (48 matrices) ms' in t else ""))
tm = {"set gpt2": t.get("torch.optim.Muon step (48 matrices) ms"),
      "set llama1b": t.get("torch.optim.Muon step (llama1b 112 matrices) ms")}
for st in ("set gpt2", "set llama1b"):
    if f"{st} standard ms" not in b:
        continue
    bound = b[f"{st} NS5 FLOP bound at measured rate ms"]
    print(f"{st} NS5 bound {bound:.3f} ms (at 790 TFLOP/s {b[st + ' NS5 FLOP bound at 790 TFLOP/s ms']:.3f})"
          + (f", torch.optim.Muon step {tm[st]:.3f} ms" if tm[st] else ""))
    for v in ("standard", "standard sym", "gram fp16 restart2", "gram fp16 restart2 sym", "gram bf16 restart2",
              "gram fp16 no-restart", "standard tuned", "gram fp16 restart2 tuned", "gram fp16 restart2 sym tuned"):
        if f"{st} {v} ms" not in b:
            continue
        e, g = b[f"{st} {v} ms"], b[f"{st} {v} cuda-graph ms"]
        best = min(e, g)
        print(f"  {v:24s} eager {e:8.3f} graph {g:8.3f} ms | {best / bound:.2f}x bound"
              + (f" | {best / tm[st]:.2f}x torch Muon" if tm[st] else ""))
for k in ("1024x32x32 float32", "24x768x768 float32", "24x768x768 float64"):
    n = k.replace("float", "fp").split()
    ours_k = f"sym_pow -1/4 {n[0]} {n[1]} ms"
    tk = f"torch eigh inverse root {k} ms"
    if ours_k in b and tk in t:
        print(f"inverse 4th root {k}: symoc {b[ours_k]:.3f} ms | torch eigh {t[tk]:.3f} ms ({b[ours_k] / t[tk]:.2f}x)")
PY
  return $rc
}

case $mode in
build) build ;;
run) run ;;
all) build && run ;;
*) echo "usage: $0 build|run|all [DIR]" >&2; exit 2 ;;
esac
