#!/usr/bin/env bash
# The training benchmark on the GPU machine, from a folder made by bench/train/stage.sh:
#
#   bash bench/train/run.sh [bench.py run options...]      (results in $OUT, else ./out)
#
# 1. unpacks pkg/symoc-*.tar.gz (OpenBLAS/LAPACKE for the generated code), builds runtime/
#    (CUDA backend, sm_90) and every gen/MODEL_POLICY library in one CMake project, and
#    writes libs.json;
# 2. bench/train/bench.py run (time, grid, [refine,] seeds; options after run.sh's own defaults, so
#    they override them; TRAINBENCH_BUDGET_S bounds the benchmark phases, default 450 s);
#    (TRAINBENCH_BUILD_ONLY=1 stops after step 1)
# 3. bench/train/report.py: OUT/results.md (the docs/results.md section) and the plots
#    (with $TRAINBENCH_MERGE's earlier results.json files merged in, when set).
# OUT gets: results.json, results.md, train_llama.png, train_gpt2.png, build.log (with the
# machine's description), bench.log. The results table is printed last.
set -u -o pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=$(realpath -m "${OUT:-$ROOT/out}"); mkdir -p "$OUT"
PY=${PYTHON:-python3}
cd "$ROOT"
t0=$(date +%s)
export PYTHONUNBUFFERED=1

TARBALL=$(ls "$ROOT"/pkg/symoc-*.tar.gz | head -1)
PKGDIR=/tmp/symoc-trainbench-pkg
rm -rf $PKGDIR && mkdir -p $PKGDIR && tar -C $PKGDIR -xzf "$TARBALL"
PKG=$(echo $PKGDIR/symoc-*)
export LD_LIBRARY_PATH=$PKG/lib:${LD_LIBRARY_PATH:-}
{ date -u; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  $PY -c "import torch; print('torch', torch.__version__, 'Muon' if hasattr(torch.optim, 'Muon') else 'no Muon')"
  cat "$PKG/SYMOC_PACKAGE"; echo "cores: $(nproc)"; } 2>&1 | tee "$OUT/build.log"

B=/tmp/symoc-trainbench-build
mkdir -p $B
cat > $B/CMakeLists.txt <<EOF
cmake_minimum_required(VERSION 3.20)
project(symoc_trainbench LANGUAGES C CXX)
add_subdirectory($ROOT/runtime symoc_runtime)
file(GLOB gens LIST_DIRECTORIES true $ROOT/gen/*)
foreach(d \${gens})
  get_filename_component(n \${d} NAME)
  add_subdirectory(\${d} gen_\${n})
endforeach()
EOF
cuda=OFF; nvidia-smi -L > /dev/null 2>&1 && cuda=ON
if ! { cmake -S $B -B $B/b -G Ninja -DCMAKE_BUILD_TYPE=Release -DSYMOC_CUDA=$cuda \
         -DCMAKE_CUDA_ARCHITECTURES=90 -DCMAKE_PREFIX_PATH="$PKG" \
         -DCMAKE_SHARED_LINKER_FLAGS=-Wl,--disable-new-dtags &&
       cmake --build $B/b -j"$(nproc)"; } >> "$OUT/build.log" 2>&1; then
  tail -30 "$OUT/build.log"; echo "run.sh: build failed ($OUT/build.log)"; exit 1
fi
echo "built runtime + $(ls $B/b/gen_*/lib*_optimizer.so | wc -l) optimizers in $(( $(date +%s) - t0 )) s"
$PY - "$B/b" > "$ROOT/libs.json" <<'EOF'
import glob, json, os, sys
libs = {}
for so in sorted(glob.glob(os.path.join(sys.argv[1], "gen_*", "lib*_optimizer.so"))):
    name = os.path.basename(os.path.dirname(so))[4:]          # gen_MODEL_POLICY
    model, policy = name.split("_", 1)
    policy = policy.replace("_", "-")                          # auto_norm: symoc-auto-norm
    libs["%s/symoc-%s" % (model, policy)] = so
print(json.dumps(libs, indent=1))
EOF
# TRAINBENCH_BUILD_ONLY=1: stop here (tests/gpu/fault_repro.sh builds through this script).
[ -n "${TRAINBENCH_BUILD_ONLY:-}" ] && exit 0

$PY bench/train/bench.py run --stage "$ROOT" --out "$OUT" \
  --budget-s "${TRAINBENCH_BUDGET_S:-450}" "$@" 2>&1 | tee "$OUT/bench.log"
rc=${PIPESTATUS[0]}
# TRAINBENCH_MERGE="prior/call1.json ...": the report merges this call's results with earlier
# calls' (a protocol split over several calls, bench/README.md)
# shellcheck disable=SC2086
$PY bench/train/report.py "$OUT/results.json" ${TRAINBENCH_MERGE:-} --md "$OUT/results.md" --plots "$OUT" \
  > /dev/null 2> "$OUT/report.err" || { cat "$OUT/report.err"; rc=1; }
[ -s "$OUT/report.err" ] || rm -f "$OUT/report.err"
rm -f "$OUT/progress.log"   # the same lines are in bench.log
grep -E "^\[ *[0-9.]+ s\] +(time |calibrate|concurrency|  [a-z0-9-]+: |best |estimate: |skip )|NOT RUN" "$OUT/bench.log"
echo "run.sh: $(( $(date +%s) - t0 )) s in all, exit $rc"
sed -n '/^| policy/,/^$/p; /^### /p; /^- \*\*/p' "$OUT/results.md" 2>/dev/null
exit $rc
