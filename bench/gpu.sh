#!/usr/bin/env bash
# The GPU machine's check and benchmark in one go: build with CUDA, run the tests, run
# compute-sanitizer's memcheck on the CUDA tests, then time epochs of `flexlearn fit --device
# cuda` beside the PyTorch peer (bench/torch_peer.py) at several batch sizes.
#
#   bench/gpu.sh [DATA_DIR]        run from the repository root
#
#   DATA_DIR        the Fashion-MNIST IDX files (.gz or raw); default $FLEXLEARN_DATA, else
#                   data/fashion-mnist
#   FL_MAKE_FLAGS   extra make arguments (e.g. where libdnnl-dev / libcairo2-dev are missing:
#                   FL_MAKE_FLAGS="LDLIBS=..."), empty by default
#   BENCH_BS        batch sizes to time (default "1024 256 64")
#   BENCH_EPOCHS    epochs per timed run (default 3; the first is the warm-up)
#   GPU_BENCH_LOGS  where logs go (default $OUT/gpu-bench when $OUT is set, else /tmp/gpu-bench)
#   PYTHON          the Python with torch (default python3)
#   FL_BUILD        build directory (default build)
#
# Every step's failure is reported and the script goes on; it ends with a summary of the
# steps and lines `bench-gpu: bs=N flexlearn_ms=... pytorch_ms=... ratio=...` (ratio =
# flexlearn / pytorch: below 1 means flexlearn is faster). Epoch time = train + valid phase
# seconds of one epoch; the median over the epochs after the first (warm). Exit status: 0 when
# every step passed, 1 otherwise. Budget: about 8 minutes on an H100 (each step has a timeout).
set -u

DATA="${1:-${FLEXLEARN_DATA:-data/fashion-mnist}}"
FL_MAKE_FLAGS="${FL_MAKE_FLAGS:-}"
BENCH_BS="${BENCH_BS:-1024 256 64}"
BENCH_EPOCHS="${BENCH_EPOCHS:-3}"
PYTHON="${PYTHON:-python3}"
if [ -n "${OUT:-}" ]; then LOGS="${GPU_BENCH_LOGS:-$OUT/gpu-bench}"; else LOGS="${GPU_BENCH_LOGS:-/tmp/gpu-bench}"; fi
BUILD="${FL_BUILD:-build}"      # the build directory (make BUILD=...)
mkdir -p "$LOGS"
export FLEXLEARN_DATA="$DATA"

T_START=$(date +%s)
STEPS=()                       # "name: ok|FAIL|skip (detail)"
step() { STEPS+=("$1"); echo "== $1"; }
elapsed() { echo $(( $(date +%s) - T_START ))s; }
say() { echo "gpu.sh [$(elapsed)] $*"; }

# ---- 0. the machine ----
say "repo $(pwd), data $DATA, logs $LOGS"
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader 2>&1 | sed 's/^/gpu: /'
else
  echo "gpu: nvidia-smi not found"
fi
NVCC=$(command -v nvcc 2>/dev/null || true)
[ -z "$NVCC" ] && [ -x /usr/local/cuda/bin/nvcc ] && NVCC=/usr/local/cuda/bin/nvcc
echo "nvcc: ${NVCC:-none} $([ -n "$NVCC" ] && "$NVCC" --version | tail -n 2 | head -n 1)"
echo "cpu: $(nproc) cores; cc: $(${CC:-cc} --version 2>/dev/null | head -n 1)"

# ---- 1. dependencies (report only: the lead decides what to do) ----
CC_=${CC:-cc}
# shellcheck disable=SC2046
has_header() { printf '#include <%s>\n' "$1" | "$CC_" $(pkg-config --cflags cairo 2>/dev/null) -E -x c - >/dev/null 2>&1; }
has_lib() { ldconfig -p 2>/dev/null | grep -q "$1"; }
missing=""
for pair in "oneapi/dnnl/dnnl.h:libdnnl.so:libdnnl-dev" "zlib.h:libz.so:zlib1g-dev" "cairo.h:libcairo.so:libcairo2-dev"; do
  h=${pair%%:*}; rest=${pair#*:}; l=${rest%%:*}; pkg=${rest#*:}
  has_header "$h" || missing="$missing $pkg(header $h)"
  has_lib "$l" || missing="$missing $pkg(library $l)"
done
[ -n "$NVCC" ] || missing="$missing nvcc"
if [ -z "$missing" ]; then step "deps: ok"; else echo "deps missing:$missing"; fi
# Work around what is missing (the GPU machine has no package registry): the GPU path needs
# neither oneDNN nor cairo nor cJSON (DNNL=0: plain C GEMM for the CPU tests; CAIRO=0: no PNG
# plots; CJSON=0: no safetensors weights; PNG=0 / JPEG=0: predict reads no image files);
# zlib's headers can travel in data/include and link against the runtime libz.so.1.
auto=""
has_header oneapi/dnnl/dnnl.h && has_lib libdnnl.so || auto="$auto DNNL=0"
has_header cairo.h && has_lib libcairo.so || auto="$auto CAIRO=0"
has_header cjson/cJSON.h && has_lib libcjson.so || auto="$auto CJSON=0"
has_header png.h && has_lib libpng16.so || auto="$auto PNG=0"
has_header jpeglib.h && has_lib libjpeg.so || auto="$auto JPEG=0"
if ! has_header zlib.h && [ -f data/include/zlib.h ]; then auto="$auto EXTRA_CFLAGS=-I$(pwd)/data/include"; fi
has_lib 'libz.so ' || auto="$auto ZLIB=-l:libz.so.1"
FL_MAKE_FLAGS="$auto $FL_MAKE_FLAGS"
step "deps: build flags:${FL_MAKE_FLAGS:- none}"
TORCH_OK=0
if "$PYTHON" -c 'import torch, sys; print("torch", torch.__version__, "cuda", torch.cuda.is_available()); sys.exit(0 if torch.cuda.is_available() else 1)' 2>&1 | tee "$LOGS/torch.txt"; then
  TORCH_OK=1
else
  step "torch: FAIL (no PyTorch with CUDA: $(tail -n 1 "$LOGS/torch.txt"))"
fi
DATA_OK=1
for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
  [ -e "$DATA/$f" ] || [ -e "$DATA/$f.gz" ] || { DATA_OK=0; step "data: FAIL (${DATA}/${f}[.gz] missing)"; }
done

# ---- 2. build ----
say "make -j16 CUDA=1 BUILD=$BUILD all tests $FL_MAKE_FLAGS"
# shellcheck disable=SC2086
if timeout 300 make -k -j16 CUDA=1 BUILD="$BUILD" all tests $FL_MAKE_FLAGS >"$LOGS/make.txt" 2>&1; then
  step "build: ok ($(grep -ci 'warning' "$LOGS/make.txt") warning lines)"
else
  step "build: FAIL (rc=$?; see $LOGS/make.txt)"
  grep -iE 'error|undefined|No such file' "$LOGS/make.txt" | head -n 20
fi

# The CUDA backend is a plugin (libflexlearn_cuda.so) that the core loads when a GPU is there:
# the programs must not link the CUDA runtime or cuBLAS themselves, and the CLI must load it.
if [ ! -f "$BUILD/libflexlearn_cuda.so" ]; then
  step "plugin: FAIL ($BUILD/libflexlearn_cuda.so not built)"
elif ldd "$BUILD/flexlearn" 2>/dev/null | grep -qE 'libcudart|libcublas'; then
  step "plugin: FAIL ($BUILD/flexlearn links the CUDA libraries itself)"
elif [ -x "$BUILD/flexlearn" ] && [ $DATA_OK = 1 ]; then
  # the loader names each library it maps; the plugin must be among them
  if LD_DEBUG=files timeout 120 "$BUILD/flexlearn" fit --device cuda --epochs 1 --no-progress \
       --data "$DATA" >"$LOGS/plugin.txt" 2>&1 && grep -q 'file=.*libflexlearn_cuda.so' "$LOGS/plugin.txt"; then
    step "plugin: ok ($(grep -o 'file=[^ ]*libflexlearn_cuda.so' "$LOGS/plugin.txt" | head -n 1))"
  else
    step "plugin: FAIL (fit --device cuda; see $LOGS/plugin.txt)"; grep '^flexlearn' "$LOGS/plugin.txt" | tail -n 3
  fi
else
  step "plugin: skip (no CLI or no data)"
fi

# ---- 3. tests ----
if [ -x "$BUILD/tests/test_cuda" ]; then
  say "test_cuda"
  timeout 120 "$BUILD/tests/test_cuda" >"$LOGS/test_cuda.txt" 2>&1; rc=$?
  grep -v '^ok ' "$LOGS/test_cuda.txt" | tail -n 40
  line=$(grep '^tests: ' "$LOGS/test_cuda.txt" | tail -n 1)
  if [ $rc -eq 0 ] && ! grep -q 'skipped' <<<"${line/ 0 skipped/}"; then step "test_cuda: ok ($line)"
  elif [ $rc -eq 0 ]; then step "test_cuda: FAIL (skipped on a GPU machine? $line)"
  else step "test_cuda: FAIL (rc=$rc; $line)"; fi
else
  step "test_cuda: FAIL (not built)"
fi
if [ -x tools/run_tests.sh ] && ls "$BUILD"/tests/test_* >/dev/null 2>&1; then
  say "all tests (tools/run_tests.sh $BUILD)"
  timeout 240 tools/run_tests.sh "$BUILD" >"$LOGS/tests.txt" 2>&1; rc=$?
  grep -vE '^(ok |skip )' "$LOGS/tests.txt" | tail -n 30
  if [ $rc -eq 0 ]; then step "tests: ok ($(tail -n 1 "$LOGS/tests.txt"))"
  else step "tests: FAIL (rc=$rc; $(tail -n 1 "$LOGS/tests.txt"))"; fi
else
  step "tests: FAIL (no test binaries in $BUILD/tests)"
fi

# ---- 4. compute-sanitizer memcheck on the CUDA tests ----
CS=$(command -v compute-sanitizer 2>/dev/null || true)
for c in /usr/local/cuda/bin/compute-sanitizer /usr/local/cuda/compute-sanitizer/compute-sanitizer; do
  [ -z "$CS" ] && [ -x "$c" ] && CS=$c
done
if [ -z "$CS" ]; then
  step "memcheck: skip (no compute-sanitizer)"
elif [ ! -x "$BUILD/tests/test_cuda" ]; then
  step "memcheck: skip (test_cuda not built)"
else
  say "compute-sanitizer --tool memcheck $BUILD/tests/test_cuda"
  # API errors are not reported: test_out_of_memory and test_sticky_error fail calls on purpose.
  timeout 240 "$CS" --tool memcheck --report-api-errors no "$BUILD/tests/test_cuda" \
      >"$LOGS/memcheck.txt" 2>&1; rc=$?
  if ! grep -q 'ERROR SUMMARY' "$LOGS/memcheck.txt" && grep -qi 'option' "$LOGS/memcheck.txt"; then
    # an older tool without --report-api-errors
    timeout 240 "$CS" --tool memcheck "$BUILD/tests/test_cuda" >"$LOGS/memcheck.txt" 2>&1; rc=$?
  fi
  summary=$(grep 'ERROR SUMMARY' "$LOGS/memcheck.txt" | tail -n 1)
  grep -E '^=========' "$LOGS/memcheck.txt" | grep -v 'Program hit' | head -n 30
  if [ $rc -eq 0 ] && grep -q 'ERROR SUMMARY: 0 errors' <<<"$summary"; then step "memcheck: ok ($summary)"
  else step "memcheck: FAIL (rc=$rc; ${summary:-no summary}; see $LOGS/memcheck.txt)"; fi
fi

# ---- 5. epoch timings ----
# Median epoch time (ms) over the epochs after the first, from a JSON-lines log with records
# {epoch, train, seconds, ...} (train and valid phases are added per epoch). Also accepts one
# JSON document: a list of such records, or {"epochs": [...]}, or {"epoch_seconds": [...]}.
# Prints "MS ACC" (ACC: the last valid accuracy, or nan); nothing when unreadable.
median_ms() {
  "$PYTHON" - "$1" <<'PY' 2>/dev/null
import json, statistics, sys
text = open(sys.argv[1]).read()
recs = []
try:
    doc = json.loads(text)
    if isinstance(doc, dict) and "epoch_seconds" in doc:
        recs = [{"epoch": i, "seconds": s} for i, s in enumerate(doc["epoch_seconds"])]
    elif isinstance(doc, dict):
        recs = doc.get("epochs") or doc.get("log") or [doc]
    else:
        recs = doc
except ValueError:
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try: recs.append(json.loads(line))
            except ValueError: pass
per, acc = {}, float("nan")
for r in recs:
    if not isinstance(r, dict) or "seconds" not in r: continue
    e = r.get("epoch", 0)
    per[e] = per.get(e, 0.0) + float(r["seconds"])
    if not r.get("train", False) and "accuracy" in r: acc = float(r["accuracy"])
if not per: sys.exit(1)
ts = [per[e] for e in sorted(per)]
warm = ts[1:] if len(ts) > 1 else ts
print("%.2f %s" % (1000 * statistics.median(warm), acc))
PY
}

declare -A FL_MS PT_MS FL_ACC PT_ACC
CLI="$BUILD/flexlearn"
PEER=bench/torch_peer.py
for bs in $BENCH_BS; do
  FL_MS[$bs]=nan; PT_MS[$bs]=nan; FL_ACC[$bs]=nan; PT_ACC[$bs]=nan
  if [ -x "$CLI" ] && [ $DATA_OK = 1 ]; then
    say "flexlearn fit --device cuda --bs $bs --epochs $BENCH_EPOCHS"
    log="$LOGS/flexlearn_bs$bs.jsonl"; rm -f "$log"
    if timeout 150 "$CLI" fit --device cuda --bs "$bs" --epochs "$BENCH_EPOCHS" --no-progress \
         --data "$DATA" --log "$log" >"$LOGS/flexlearn_bs$bs.txt" 2>&1 && r=$(median_ms "$log"); then
      FL_MS[$bs]=${r% *}; FL_ACC[$bs]=${r#* }
      step "flexlearn bs=$bs: ok (${FL_MS[$bs]} ms/epoch)"
    else
      step "flexlearn bs=$bs: FAIL (see $LOGS/flexlearn_bs$bs.txt)"; tail -n 5 "$LOGS/flexlearn_bs$bs.txt"
    fi
  else
    step "flexlearn bs=$bs: skip (no $CLI or no data)"
  fi
  if [ -f "$PEER" ] && [ $TORCH_OK = 1 ] && [ $DATA_OK = 1 ]; then
    say "torch_peer.py --device cuda --bs $bs --epochs $BENCH_EPOCHS"
    log="$LOGS/torch_bs$bs.json"; rm -f "$log"
    if timeout 150 "$PYTHON" "$PEER" --bs "$bs" --epochs "$BENCH_EPOCHS" --device cuda \
         --json "$log" >"$LOGS/torch_bs$bs.txt" 2>&1 && r=$(median_ms "$log"); then
      PT_MS[$bs]=${r% *}; PT_ACC[$bs]=${r#* }
      step "pytorch bs=$bs: ok (${PT_MS[$bs]} ms/epoch)"
    else
      step "pytorch bs=$bs: FAIL (see $LOGS/torch_bs$bs.txt)"; tail -n 5 "$LOGS/torch_bs$bs.txt"
    fi
  else
    step "pytorch bs=$bs: skip (no $PEER, no torch with CUDA, or no data)"
  fi
done

# The core-API epoch benchmark on the GPU too, when it is built (bare loop vs Learner).
if [ -x "$BUILD/bench/bench_epoch" ] && [ $DATA_OK = 1 ]; then
  say "bench_epoch --device cuda --bs 1024"
  if timeout 120 "$BUILD/bench/bench_epoch" --bs 1024 --epochs 4 --device cuda --data "$DATA" \
       >"$LOGS/bench_epoch.txt" 2>&1; then
    step "bench_epoch cuda: ok"
  else
    step "bench_epoch cuda: FAIL (rc=$?; see $LOGS/bench_epoch.txt)"
  fi
  grep '^bench-epoch:' "$LOGS/bench_epoch.txt"
fi

# ---- 5b. where the time of a small-batch epoch goes (when Nsight Systems is there) ----
NSYS=$(command -v nsys 2>/dev/null || ls /usr/local/cuda/bin/nsys /opt/nvidia/nsight-systems/*/bin/nsys 2>/dev/null | head -n 1)
if [ -n "$NSYS" ] && [ -x "$CLI" ] && [ $DATA_OK = 1 ]; then
  say "nsys profile: fit --device cuda --bs 64 --epochs 2"
  timeout 120 "$NSYS" profile --stats=true --force-overwrite true -o "$LOGS/prof_bs64" \
    "$CLI" fit --device cuda --bs 64 --epochs 2 --no-progress --data "$DATA" >"$LOGS/nsys.txt" 2>&1
  grep -A 14 -E 'cuda_api_sum|cuda_gpu_kern_sum' "$LOGS/nsys.txt" | cut -c1-160 | head -n 40
  rm -f "$LOGS"/prof_bs64.nsys-rep "$LOGS"/prof_bs64.sqlite
fi

# ---- 6. summary ----
echo
echo "== summary ($(elapsed))"
fails=0
for s in "${STEPS[@]}"; do
  echo "  $s"
  case "$s" in *": FAIL"*) fails=$((fails + 1)) ;; esac
done
echo
printf '%-6s %14s %14s %8s %10s %10s\n' bs flexlearn_ms pytorch_ms ratio fl_acc pt_acc
ratio_of() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "nan" || b == "nan" || b + 0 == 0) print "nan"; else printf "%.3f", a / b }'; }
for bs in $BENCH_BS; do
  ratio=$(ratio_of "${FL_MS[$bs]}" "${PT_MS[$bs]}")
  printf '%-6s %14s %14s %8s %10s %10s\n' "$bs" "${FL_MS[$bs]}" "${PT_MS[$bs]}" "$ratio" \
    "${FL_ACC[$bs]}" "${PT_ACC[$bs]}"
done
for bs in $BENCH_BS; do
  ratio=$(ratio_of "${FL_MS[$bs]}" "${PT_MS[$bs]}")
  echo "bench-gpu: bs=$bs flexlearn_ms=${FL_MS[$bs]} pytorch_ms=${PT_MS[$bs]} ratio=$ratio"
done
echo "gpu.sh: $fails step(s) failed, $(elapsed)"
[ $fails -eq 0 ]
