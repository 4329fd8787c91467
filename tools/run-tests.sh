#!/usr/bin/env bash
# Builds everything and runs every test: what CI runs (.ci/run) on a fresh clone.
#   tools/run-tests.sh            build folder: $SYMOC_BUILD_DIR, default build/
# Installs missing dependencies (tools/install-deps.sh, Debian bookworm, non-interactive),
# configures with CMake + Ninja (ccache is used when installed), builds all targets, then
# runs `ctest --output-on-failure`. The exit status is non-zero when any step or any test
# fails; ctest's summary ("N% tests passed, M tests failed out of K") is the last thing
# printed before ctest's list of failures.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
# ccache keys on paths: relative to the checkout, so a fresh clone reuses objects.
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$repo}
build_dir=${SYMOC_BUILD_DIR:-build}
jobs=${SYMOC_JOBS:-$(nproc)}
start=$(date +%s)

echo "== run-tests: dependencies"
tools/install-deps.sh </dev/null

echo "== run-tests: configure $build_dir"
cmake -S "$repo" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release </dev/null

echo "== run-tests: build ($jobs jobs)"
cmake --build "$build_dir" -j "$jobs" </dev/null
if command -v ccache >/dev/null; then
  ccache --show-stats 2>/dev/null | grep -iE 'hits|misses' | head -3 || true
fi
echo "== run-tests: built in $(( $(date +%s) - start )) s; running ctest"

cd "$build_dir"
# Tests set their own TIMEOUTs; this bounds any test that does not.
exec ctest --output-on-failure -j "$jobs" --timeout 1200 </dev/null
