#!/usr/bin/env bash
# roundtrip.sh SYMOC SYMO_OPT OUTDIR MODEL...
# For each model: `symoc import` must succeed; symo-opt must parse the IR and print it
# back unchanged (up to a final newline); the generic-form print must parse to the same
# IR (so every custom assembly format parses what it prints). Prints "ok NAME" or
# "FAIL NAME: why" per model and exits 1 if any failed.
symoc=$1 opt=$2 out=$3
shift 3
mkdir -p "$out"
status=0
for model in "$@"; do
  name=$(basename "$model" .onnx)
  ir=$out/$name.mlir
  if ! "$symoc" import "$model" -o "$ir" 2>"$out/$name.err"; then
    echo "FAIL $name: symoc import: $(head -1 "$out/$name.err")"; status=1; continue
  fi
  if ! "$opt" "$ir" -o "$out/$name.opt.mlir" 2>"$out/$name.err"; then
    echo "FAIL $name: symo-opt cannot parse: $(head -1 "$out/$name.err")"; status=1; continue
  fi
  if ! diff -B -q "$ir" "$out/$name.opt.mlir" >/dev/null; then
    echo "FAIL $name: symo-opt prints different IR"; status=1; continue
  fi
  if ! "$opt" --mlir-print-op-generic "$ir" | "$opt" -o "$out/$name.generic.mlir" ||
     ! diff -q "$out/$name.opt.mlir" "$out/$name.generic.mlir" >/dev/null; then
    echo "FAIL $name: generic form does not round-trip"; status=1; continue
  fi
  echo "ok $name"
done
exit $status
