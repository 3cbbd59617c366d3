#!/bin/sh
# Installs what a fresh Debian machine lacks for flexlearn (only when missing), via apt-get.
#   build:  gcc make pkg-config
#   libdnnl-dev      oneDNN: the CPU matrix products (fastest measured here, same bits on 1 and 2 threads)
#   zlib1g-dev       zlib: reads the gzipped IDX files
#   libcairo2-dev    cairo: PNG plots (loss curves, LR finder)
#   libcjson-dev     cJSON: parses the JSON header of safetensors weight files
#   libpng-dev libjpeg62-turbo-dev  libpng and libjpeg-turbo: the PNG / JPEG images flexlearn predict reads
#   dataset-fashion-mnist  the data, in /usr/share/datasets/fashion-mnist
#   python3-torch python3-numpy  PyTorch, only for fixtures and the benchmark's peer loop
#   python3-pil      Pillow, only for the test that images are made grey as PIL's convert('L')
#   time             /usr/bin/time: peak memory of the ResNet benchmark (make bench)
#   libopenblas0-openmp  OpenBLAS for that torch (else the reference BLAS: 20x slower); its OpenMP
#                    build shares torch's thread pool (the pthread build measured 0-25 % slower)
#   clang libclang-rt-14-dev  clang and its libFuzzer, only for make fuzz (FL_SETUP_FUZZ=1)
set -e
pkgs="gcc make libdnnl-dev zlib1g-dev libcairo2-dev libcjson-dev libpng-dev libjpeg62-turbo-dev dataset-fashion-mnist"
[ "${FL_SETUP_TORCH:-0}" = 1 ] && pkgs="$pkgs python3-torch python3-numpy python3-pil libopenblas0-openmp time"
[ "${FL_SETUP_FUZZ:-0}" = 1 ] && pkgs="$pkgs clang libclang-rt-14-dev"   # make fuzz only
missing=""
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "setup: installing$missing"
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
