#!/bin/bash
# tools/package.sh --check must refuse a package whose bin/symoc takes libraries from the
# system: here the normal build's symoc (linked against Debian's libLLVM.so, no RPATH) in an
# otherwise empty package. The accepting path needs the real package (tools/package.sh, slow,
# not in CI; docs/torch.md has its last result).
set -u
SYMOC=$1
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/symoc-fake/bin" "$tmp/symoc-fake/lib"
cp "$SYMOC" "$tmp/symoc-fake/bin/symoc"
tar -C "$tmp" -czf "$tmp/fake.tar.gz" symoc-fake
if out=$("$ROOT/tools/package.sh" --check "$tmp/fake.tar.gz" 2>&1); then
  echo "FAIL: --check accepted a symoc linked against system libraries:"; echo "$out"; exit 1
fi
echo "$out"
status=0
for want in "libLLVM.so.19.1 comes from the system" "no DT_RPATH" \
            "still needs a shared LLVM/MLIR library" "dependencies outside the package"; do
  if ! grep -qF "$want" <<< "$out"; then echo "FAIL: no '$want' in the output"; status=1; fi
done
tail -1 <<< "$out" | grep -q '^package.sh: error: ' || { echo "FAIL: last line is not the error"; status=1; }
[ $status = 0 ] && echo "PASS: --check refuses it and says why"
exit $status
