#!/usr/bin/env bash
# Installs every build and test dependency of symoc on Debian bookworm. Idempotent: a
# machine that already has everything costs one dpkg query and no apt call.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config git
  llvm-19-dev llvm-19-tools libmlir-19-dev mlir-19-tools
  libonnx-dev protobuf-compiler libprotobuf-dev
  libfmt-dev libgtest-dev libgmock-dev libbenchmark-dev
  libopenblas-dev liblapacke-dev
  nlohmann-json3-dev libcli11-dev pybind11-dev
  python3 python3-numpy python3-torch python3-torchvision python3-onnx python3-matplotlib
  libonnx-testdata graphviz
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi

echo "install-deps: installing ${#missing[@]} packages: ${missing[*]}"
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "install-deps: done"
