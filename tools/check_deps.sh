#!/bin/sh
# Checks, before anything is compiled, that the libraries this build needs are installed, and
# names the Debian package of each one that is missing (make deps installs them all).
#   env: CC, DNNL (1: oneDNN), CAIRO (1: cairo), CJSON (1: cJSON), PNG (1: libpng), JPEG (1: libjpeg), CUDA (1: the CUDA plugin), NVCC
# Exit 0 when everything is there; otherwise one line per missing piece on stderr, exit 1.
CC=${CC:-cc}
missing=""
hint=""
need() {   # need HEADER PACKAGE [ALTERNATIVE]
  if ! printf '#include <%s>\n' "$1" | $CC $EXTRA -E -x c - -o /dev/null 2>/dev/null; then
    echo "flexlearn: missing $1: install the Debian package $2${3:+ (or build without it: $3)}" >&2
    missing="$missing $2"
  fi
}
command -v "$CC" >/dev/null 2>&1 || { echo "flexlearn: no C compiler '$CC': install the Debian package gcc" >&2; exit 1; }
EXTRA=""
need zlib.h zlib1g-dev
[ "${CJSON:-1}" = 1 ] && need cjson/cJSON.h libcjson-dev "make CJSON=0, no safetensors weights"
[ "${DNNL:-1}" = 1 ] && need oneapi/dnnl/dnnl.h libdnnl-dev "make DNNL=0, a plain C GEMM, much slower"
[ "${PNG:-1}" = 1 ] && need png.h libpng-dev "make PNG=0, predict reads no PNG images"
[ "${JPEG:-1}" = 1 ] && need jpeglib.h libjpeg62-turbo-dev "make JPEG=0, predict reads no JPEG images"
if [ "${CAIRO:-1}" = 1 ]; then
  if ! command -v pkg-config >/dev/null 2>&1; then
    echo "flexlearn: missing pkg-config (finds cairo): install the Debian package pkg-config" >&2
    missing="$missing pkg-config"
  else
    EXTRA=$(pkg-config --cflags cairo 2>/dev/null)
    need cairo.h libcairo2-dev "make CAIRO=0, no PNG plots"
    EXTRA=""
  fi
fi
if [ "${CUDA:-0}" = 1 ] && [ ! -x "${NVCC:-}" ] && ! command -v "${NVCC:-nvcc}" >/dev/null 2>&1; then
  echo "flexlearn: CUDA=1 but nvcc is not found: install the CUDA toolkit, or build with make CUDA=0" >&2
  missing="$missing cuda-toolkit"
fi
[ -z "$missing" ] && exit 0
echo "flexlearn: run 'make deps' to install what is missing (apt-get install$missing)" >&2
exit 1
