#!/usr/bin/env bash
# Issue 12's concurrent-fault hunt on the GPU machine, one call (1x H200): in the training
# benchmark's run 1 (16 concurrent processes) several processes died at once with
# 'unspecified launch failure' / CUBLAS_STATUS_EXECUTION_FAILED; run 2 (8 processes) did not.
#
# Here (build/bin/symoc, the package tarball of tools/package.sh; ~1 min, ~33 MB):
#   tests/gpu/fault_repro.sh --stage DEST PACKAGE.tar.gz
#     = bench/train/stage.sh DEST (llama and gpt2 under auto and symo; corpus; sources)
#       plus tests/gpu/fault_repro.{sh,py} into DEST/tests/gpu
# There, from DEST (the run tool: carry DEST, `cd DEST && bash tests/gpu/fault_repro.sh`):
#   bash tests/gpu/fault_repro.sh [OUT]          (OUT defaults to $OUT, else ./out)
#     1. build   bench/train/run.sh's build (runtime with CUDA, sm_90, + the generated
#                optimizers against the package), TRAINBENCH_BUILD_ONLY=1
#     2. memcheck: compute-sanitizer (when present and the device is supported; gVisor
#                machines refuse it) on `fault_repro.py unit`: every library's optimizer step
#                alone, REPRO_SAN_STEPS steps (default 2), every kernel (cuBLAS's too)
#     3. stress  REPRO_MIX (default 16) fresh processes training at once for REPRO_STEPS
#                steps (default 300) or REPRO_SECONDS (default 100), whichever ends first:
#                llama/gpt2 x symo/auto, with torch AdamW / Muon runs as controls; GPU core
#                dumps on a kernel exception (REPRO_COREDUMP=1, default) read back with
#                cuda-gdb, and the kernel log's NVRM Xid lines of the stress
#     4. memcheck-train: memcheck on symoc's own kernels (--kernel-name kns=symoc) inside
#                REPRO_SAN_TRAIN_STEPS (40) real training steps of llama/symo (batch 8)
#     5. initcheck, racecheck, synccheck on symoc's kernels in the unit steps
# Each step runs under its own limit cut to what is left of REPRO_BUDGET_S (default 280 s);
# REPRO_ONLY="build stress" runs only the named steps. OUT gets build.log, memcheck.log,
# memcheck-train.log, checks.log (initcheck, racecheck, synccheck), stress.json,
# stress_tails.txt (faulted processes' tails, Xid lines, core dump readings), summary.txt.
# A table is printed last. Exit 1 when any step failed or any process faulted.
#
# Validation after the fixes of branch gpufault (the lead's call; ~5 min of device time):
#   here:  tests/gpu/fault_repro.sh --stage /work/main/.dev-repro PKG.tar.gz
#   run:   carry [".dev-repro"], timeout_s 300,
#          command: cd .dev-repro && REPRO_BUDGET_S=285 bash tests/gpu/fault_repro.sh
#   pass:  every sanitizer row says "0 errors" (or "not run: ..."), stress: 0 faulted.
#   a fault: stress_tails.txt says which kernel (core dump) or which Xid (kernel log) it was.
#   A/B:   SYMOC_CUDA_NS_LT=0 (no cuBLASLt in the Newton-Schulz plans) is inherited by every
#          process; REPRO_MIX=llama/muon:8,llama/adamw:8 runs torch alone.
set -u -o pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)

if [ "${1:-}" = "--stage" ]; then
  DEST=${2:?usage: fault_repro.sh --stage DEST PACKAGE.tar.gz}; PKG=${3:?package tarball}
  TRAINBENCH_POLICIES=${TRAINBENCH_POLICIES:-auto symo} bash "$ROOT/bench/train/stage.sh" "$DEST" "$PKG" || exit 1
  mkdir -p "$DEST/tests/gpu"
  cp "$ROOT/tests/gpu/fault_repro.sh" "$ROOT/tests/gpu/fault_repro.py" "$DEST/tests/gpu/"
  echo "staged for fault_repro.sh: $(du -sh --apparent-size "$DEST" | cut -f1)"
  exit 0
fi

OUT=$(realpath -m "${1:-${OUT:-$ROOT/out}}"); mkdir -p "$OUT"
PY=${PYTHON:-python3}
cd "$ROOT"
export PYTHONUNBUFFERED=1
DEADLINE=$(( $(date +%s) + ${REPRO_BUDGET_S:-280} ))
declare -A RC SECS NOTE
ORDER=()
step() { # NAME LIMIT_S LOG CMD...   (rc, seconds, last line kept)
  local name=$1 limit=$2 log=$3; shift 3
  if [ -n "${REPRO_ONLY:-}" ] && [[ " $REPRO_ONLY " != *" ${name%%.*} "* ]]; then return 0; fi
  local left=$(( DEADLINE - $(date +%s) ))
  [ "$limit" -gt "$left" ] && limit=$left
  ORDER+=("$name")
  if [ "$limit" -lt 10 ]; then RC[$name]=124; SECS[$name]=0; NOTE[$name]="not run: budget spent"; return 0; fi
  echo "== $name (limit ${limit} s)"
  local t0=$(date +%s)
  timeout -k 5 "$limit" "$@" >> "$log" 2>&1
  RC[$name]=$?
  SECS[$name]=$(( $(date +%s) - t0 ))
  NOTE[$name]=$(grep -v '^\s*$' "$log" | tail -1 | cut -c1-110)
}

{ date -u; uname -r; nvidia-smi --query-gpu=name,driver_version,memory.total,compute_mode --format=csv,noheader
  nvidia-smi -q 2>/dev/null | grep -iE "MPS|Compute Mode|Xid|Retired|Remapp|Pending" | head -8; } > "$OUT/build.log" 2>&1

# 1. build (and the corpus decompressed once, not by every process)
step build 120 "$OUT/build.log" env OUT=/tmp/fault_repro_build TRAINBENCH_BUILD_ONLY=1 bash bench/train/run.sh
cat /tmp/fault_repro_build/build.log >> "$OUT/build.log" 2>/dev/null
PKG=$(echo /tmp/symoc-trainbench-pkg/symoc-*)   # unpacked by run.sh: OpenBLAS/LAPACKE
export LD_LIBRARY_PATH=$PKG/lib:${LD_LIBRARY_PATH:-}
if ls corpus/*.bin.xz > /dev/null 2>&1 && ! [ -f corpus/train.bin ]; then
  for f in corpus/*.bin.xz; do xz -dkf "$f"; done
fi

# 2-4. compute-sanitizer (memcheck on everything the optimizer step launches, cuBLAS included;
# the other tools and the training run on symoc's own kernels only, --kernel-name kns=symoc:
# torch's and cuBLAS's kernels then run uninstrumented at full speed)
SAN=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null | head -1)
san() { # NAME LOG LIMIT TOOL [SANITIZER OPTIONS...] -- COMMAND...   (LOG in OUT, appended)
  local name=$1 log="$OUT/$2.log" lim=$3 tool=$4; shift 4
  local opts=()
  while [ "$1" != "--" ]; do opts+=("$1"); shift; done; shift
  if [ -n "${REPRO_ONLY:-}" ] && [[ " $REPRO_ONLY " != *" $name "* ]]; then return 0; fi
  if [ -z "$SAN" ]; then
    ORDER+=("$name"); RC[$name]=0; SECS[$name]=0; NOTE[$name]="not run: no compute-sanitizer (PATH, /usr/local/cuda/bin)"
    return 0
  fi
  step "$name" "$lim" "$log" "$SAN" --tool "$tool" "${opts[@]}" --error-exitcode 99 --print-limit 20 \
    --target-processes all "$@"
  [ -f "$log" ] || return 0
  if grep -q "Device not supported\|error 999\|Unable to find injection" "$log"; then
    NOTE[$name]="not run: $(grep -m1 -o 'Device not supported\|error 999\|Unable to find injection.*' "$log") (gVisor?)"
    RC[$name]=0
  else
    local s; s=$(grep -E "ERROR SUMMARY|RACECHECK SUMMARY" "$log" | tail -1)
    [ -n "$s" ] && NOTE[$name]="$s; $(grep -c '^unit .*ok\|"status": "ok"' "$log") run(s) ok"
  fi
}
UNIT=($PY tests/gpu/fault_repro.py unit --stage . --steps "${REPRO_SAN_STEPS:-2}")
san memcheck memcheck 50 memcheck --leak-check no -- "${UNIT[@]}"

# 5. the concurrent stress (fresh processes; torch-only controls). A kernel exception in a
# process writes a GPU core dump (CUDA_ENABLE_COREDUMP_ON_EXCEPTION, small: no memory
# contents) that cuda-gdb reads back: the faulting kernel and the exception. A context the
# driver kills without one (a context-switch timeout, Xid 109, under time-slicing of 16
# contexts) leaves no dump but an NVRM Xid line in the kernel log (read here when readable).
# skip_abort: the process goes on to report its CUDA error (the table keeps the text).
MIX=${REPRO_MIX:-llama/symoc-symo:4,llama/symoc-auto:3,gpt2/symoc-symo:3,gpt2/symoc-auto:3,llama/muon:1,gpt2/muon:1,llama/adamw:1}
procs=$(echo "$MIX" | tr ',' '\n' | awk -F: '{n+=($2==""?1:$2)} END {print n}')
if [ -n "${REPRO_PROCS:-}" ] && [ "$REPRO_PROCS" != "$procs" ]; then
  echo "fault_repro.sh: REPRO_PROCS=$REPRO_PROCS but REPRO_MIX has $procs processes; set REPRO_MIX"; fi
CORES=/tmp/fault_repro_cores; rm -rf $CORES; mkdir -p $CORES
xid_before=$(dmesg 2>/dev/null | grep -c "NVRM: Xid")
left=$(( DEADLINE - $(date +%s) - 40 ))
secs=${REPRO_SECONDS:-100}; [ "$secs" -gt "$left" ] && secs=$left
if [ "${REPRO_COREDUMP:-1}" = 1 ]; then
  step stress $(( secs + 40 )) "$OUT/summary.txt" env CUDA_ENABLE_COREDUMP_ON_EXCEPTION=1 \
    CUDA_ENABLE_CPU_COREDUMP_ON_EXCEPTION=0 CUDA_ENABLE_LIGHTWEIGHT_COREDUMP=1 \
    CUDA_COREDUMP_GENERATION_FLAGS=skip_nonrelocated_elf_images,skip_global_memory,skip_shared_memory,skip_local_memory,skip_abort \
    CUDA_COREDUMP_FILE="$CORES/core_%p.nvcudmp" \
    $PY tests/gpu/fault_repro.py stress --stage . --mix "$MIX" --steps "${REPRO_STEPS:-300}" --seconds "$secs" \
    --out /tmp/fault_repro_stress
else
  step stress $(( secs + 40 )) "$OUT/summary.txt" $PY tests/gpu/fault_repro.py stress --stage . --mix "$MIX" \
    --steps "${REPRO_STEPS:-300}" --seconds "$secs" --out /tmp/fault_repro_stress
fi
cp /tmp/fault_repro_stress/stress.json "$OUT/" 2>/dev/null
{
  for f in /tmp/fault_repro_stress/stress_*.log; do
    [ -f "$f" ] || continue
    if ! grep -q '"status": "ok"\|"status": "truncated"' "$f"; then echo "=== $f"; tail -25 "$f"; fi
  done
  xids=$(dmesg 2>/dev/null | grep "NVRM: Xid" | tail -n +$(( xid_before + 1 )))
  [ -n "$xids" ] && { echo "=== NVRM Xid lines during the stress"; echo "$xids" | tail -20; }
  for c in $CORES/core_*; do
    [ -f "$c" ] || continue
    echo "=== GPU core dump $c"
    timeout 60 cuda-gdb -batch -ex "target cudacore $c" -ex "info cuda kernels" -ex "bt 8" 2>&1 | grep -v '^\s*$' | head -40
  done
} > "$OUT/stress_tails.txt" 2>&1
[ -s "$OUT/stress_tails.txt" ] || rm -f "$OUT/stress_tails.txt"
if [ -n "${RC[stress]:-}" ]; then
  n_core=$(ls $CORES 2>/dev/null | wc -l)
  n_xid=$(( $(dmesg 2>/dev/null | grep -c "NVRM: Xid") - xid_before ))
  dmesg > /dev/null 2>&1 || n_xid="? (dmesg not readable)"
  NOTE[stress]="${NOTE[stress]}; GPU core dumps: $n_core; new Xid lines: $n_xid"
fi

# 6. symoc's kernels checked inside real training steps, then the other tools on the unit
san memcheck-train memcheck-train 60 memcheck --leak-check no --kernel-name kns=symoc -- \
  $PY tests/gpu/fault_repro.py one --stage . --model llama --policy symoc-symo --steps "${REPRO_SAN_TRAIN_STEPS:-40}" --batch 8
san initcheck checks 30 initcheck --kernel-name kns=symoc -- "${UNIT[@]}"
san racecheck checks 40 racecheck --kernel-name kns=symoc -- "${UNIT[@]}"
san synccheck checks 30 synccheck --kernel-name kns=symoc -- "${UNIT[@]}"

# summary (the stress table, then one row per step)
fail=0
for n in "${ORDER[@]}"; do [ "${RC[$n]}" = 0 ] || fail=1; done
{
  echo
  grep -A40 '^| proc' "$OUT/summary.txt" 2>/dev/null
  echo
  echo "| step | rc | s | note |"
  echo "| --- | --- | --- | --- |"
  for n in "${ORDER[@]}"; do echo "| $n | ${RC[$n]} | ${SECS[$n]} | ${NOTE[$n]} |"; done
  echo
  echo "machine: $(uname -r), $(nvidia-smi --query-gpu=name,driver_version,compute_mode --format=csv,noheader 2>&1 | head -1)"
} > /tmp/fault_repro_summary.txt
cat /tmp/fault_repro_summary.txt | tee -a "$OUT/summary.txt"
exit $fail
