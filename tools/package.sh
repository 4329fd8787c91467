#!/bin/bash
# Build the relocatable symoc package: one tarball that runs `symoc` and `symoc.torch` on a
# Linux x86-64 machine without LLVM/MLIR, ONNX, protobuf, fmt, OpenBLAS or LAPACKE.
#
#   tools/package.sh [OUT_DIR]          # build (slow: a static LLVM link) and check
#   tools/package.sh --check TARBALL    # only check a tarball (unpack, ldd, run symoc)
#
# Layout of symoc-VERSION-linux-ARCH/:
#   bin/symoc       LLVM and MLIR linked statically (Debian's libLLVM*.a, libMLIR*.a);
#                   DT_RPATH $ORIGIN/../lib, so libonnx's own dependencies resolve there too
#   lib/            the remaining shared libraries (onnx, protobuf, fmt, ...) and OpenBLAS +
#                   LAPACKE (+ libgfortran) with their dev symlinks, for building optimizers
#   include/        cblas.h, lapacke.h and what they include
#   runtime/        the optimizer runtime's sources (generated code builds against them)
#   python/symoc/   the Python package (symoc.torch.compile finds ../../bin/symoc)
#   SYMOC_PACKAGE   marker read by symoc.api (version, commit, build date)
# Only glibc (libc, libm, libdl, librt, libpthread, the loader), libstdc++, libgcc_s and libgomp
# are taken from the target system; --check fails when anything else would be.
#
# Environment: SYMOC_PACKAGE_BUILD (build folder, default build-package/), SYMOC_JOBS.
# Not part of CI (the static link takes minutes); docs/testing.md has the last result.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SYSTEM_LIBS='^(linux-vdso|ld-linux|libc\.so|libm\.so|libdl\.so|librt\.so|libpthread\.so|libstdc\+\+\.so|libgcc_s\.so|libgomp\.so)'

die() { echo "package.sh: error: $*" >&2; exit 1; }

# check TARBALL: unpack into a temp dir, check every ELF's dependencies, run symoc there.
check() {
  local tarball=$1 tmp dir bad=0 f
  [ -f "$tarball" ] || die "$tarball: no such file"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' RETURN
  tar -C "$tmp" -xzf "$tarball"
  dir=$(echo "$tmp"/symoc-*)
  [ -x "$dir/bin/symoc" ] || die "$tarball: no bin/symoc inside"
  # bin/symoc finds everything through its DT_RPATH; a library in lib/ is loaded by symoc or
  # by a generated optimizer whose DT_RPATH names lib/ (glibc searches the loaders' RPATHs),
  # which LD_LIBRARY_PATH stands in for here.
  for f in "$dir"/bin/* "$dir"/lib/*.so*; do
    [ -L "$f" ] && continue
    local env_=(env -i)
    case "$f" in "$dir"/lib/*) env_+=("LD_LIBRARY_PATH=$dir/lib") ;; esac
    while read -r soname _ path _; do
      if [ "$path" = "not" ]; then echo "  $f: $soname not found"; bad=1; continue; fi
      case "$path" in "$dir"/*) continue ;; esac
      if ! [[ $soname =~ $SYSTEM_LIBS ]]; then
        echo "  $(basename "$f"): $soname comes from the system ($path)"; bad=1
      fi
    done < <("${env_[@]}" ldd "$f" | awk '/=>/ {print $1, $2, $3, $4}')
  done
  readelf -d "$dir/bin/symoc" | grep -q 'RPATH.*\$ORIGIN/../lib' ||
    { echo "  bin/symoc: no DT_RPATH \$ORIGIN/../lib"; bad=1; }
  if readelf -d "$dir/bin/symoc" | grep -q 'NEEDED.*lib\(LLVM\|MLIR\)'; then
    echo "  bin/symoc: still needs a shared LLVM/MLIR library"; bad=1
  fi
  [ $bad = 0 ] || die "$tarball: dependencies outside the package (above)"
  # Run it with nothing of the build on PATH or LD_LIBRARY_PATH, from another folder.
  (cd "$tmp" && env -i PATH=/usr/bin:/bin "$dir/bin/symoc" analyze "$ROOT/models/mlp_relu.onnx" \
     --verify > "$tmp/analyze.txt" 2>&1) || { cat "$tmp/analyze.txt"; die "symoc analyze failed"; }
  grep -q "claims pass" "$tmp/analyze.txt" || { cat "$tmp/analyze.txt"; die "no verify summary"; }
  echo "package.sh: $(basename "$tarball"): $(du -k "$tarball" | cut -f1) KiB; ELF dependencies" \
       "inside the package or glibc/libstdc++/libgcc/libgomp; symoc analyze --verify ran:" \
       "$(grep 'claims pass' "$tmp/analyze.txt")"
}

if [ "${1:-}" = "--check" ]; then
  [ $# = 2 ] || die "usage: tools/package.sh --check TARBALL"
  check "$2"
  exit 0
fi

BUILD=${SYMOC_PACKAGE_BUILD:-$ROOT/build-package}
OUT=${1:-$BUILD/dist}
JOBS=${SYMOC_JOBS:-$(nproc)}
VERSION=$(sed -n 's/^project(symoc VERSION \([0-9.]*\).*/\1/p' "$ROOT/CMakeLists.txt")
NAME=symoc-$VERSION-linux-$(uname -m)
STAGE=$BUILD/stage/$NAME

cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DSYMOC_BUILD_TESTS=OFF \
  -DSYMOC_STATIC_LLVM=ON -DCMAKE_BUILD_WITH_INSTALL_RPATH=ON '-DCMAKE_INSTALL_RPATH=$ORIGIN/../lib' \
  '-DCMAKE_EXE_LINKER_FLAGS=-Wl,--disable-new-dtags -Wl,--as-needed' > "$BUILD.configure.log" 2>&1 ||
  { tail -20 "$BUILD.configure.log"; die "configure failed"; }
cmake --build "$BUILD" -j "$JOBS" --target symoc

rm -rf "$STAGE"
mkdir -p "$STAGE"/{bin,lib,include,python} "$OUT"
cp "$BUILD/bin/symoc" "$STAGE/bin/"
strip --strip-unneeded "$STAGE/bin/symoc"

# bundle FILE: copy the shared libraries FILE needs (all of them, transitively, as ldd lists
# them) into lib/ under their sonames, except the system's own (SYSTEM_LIBS).
bundle() {
  local soname path
  while read -r soname path; do
    [[ $soname =~ $SYSTEM_LIBS ]] && continue
    [ -e "$STAGE/lib/$soname" ] || cp -L "$path" "$STAGE/lib/$soname"
  done < <(ldd "$1" | awk '/=> \// {print $1, $3}')
}
bundle "$STAGE/bin/symoc"

# OpenBLAS + LAPACKE for building generated optimizers (the runtime's find_library/find_path
# look under CMAKE_PREFIX_PATH=<package>, which symoc.api passes).
LIBDIR=/usr/lib/$(gcc -print-multiarch)
for lib in libopenblas.so liblapacke.so; do
  real=$(readlink -f "$LIBDIR/$lib") || die "$LIBDIR/$lib missing (apt-get install libopenblas-dev liblapacke-dev)"
  soname=$(objdump -p "$real" | awk '/SONAME/ {print $2}')
  cp -L "$real" "$STAGE/lib/$soname"
  ln -sf "$soname" "$STAGE/lib/$lib"
  bundle "$real"
done
cblas=$(readlink -f "/usr/include/$(gcc -print-multiarch)/cblas.h")
cp "$(dirname "$cblas")"/*.h "$STAGE/include/"
cp /usr/include/lapack.h /usr/include/lapacke*.h "$STAGE/include/"
chmod 644 "$STAGE"/lib/*.so.* 2>/dev/null || true

cp -r "$ROOT/runtime" "$STAGE/runtime"
cp -r "$ROOT/python/symoc" "$STAGE/python/symoc"
find "$STAGE/python" -name __pycache__ -prune -exec rm -rf {} +
cp "$ROOT/tests/gpu/torchapi_gpu.py" "$STAGE/" 2>/dev/null || true
{
  echo "symoc $VERSION"
  echo "commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "built $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(. /etc/os-release && echo "$PRETTY_NAME")"
} > "$STAGE/SYMOC_PACKAGE"
cat > "$STAGE/README.txt" <<'EOF'
symoc, relocatable: unpack anywhere, then
  bin/symoc analyze MODEL.onnx --verify
  bin/symoc compile MODEL.onnx --policy auto -o OUT --runtime-dir "$PWD/runtime"
  cmake -S OUT -B OUT/build -DCMAKE_PREFIX_PATH="$PWD" -DCMAKE_SHARED_LINKER_FLAGS=-Wl,--disable-new-dtags
From Python (needs a C++17 compiler, cmake and OpenMP for building optimizers):
  PYTHONPATH=$PWD/python python3 -c 'import symoc.torch; help(symoc.torch.compile)'
EOF

TARBALL=$OUT/$NAME.tar.gz
tar -C "$BUILD/stage" -czf "$TARBALL" "$NAME"
echo "package.sh: wrote $TARBALL ($(du -h "$TARBALL" | cut -f1)); contents:"
du -sh "$STAGE"/{bin,lib,include,runtime,python} | sed 's/^/  /'
check "$TARBALL"
