#!/bin/sh
# make bench: the lesson's epoch in flexlearn beside PyTorch, measured in the same run.
# For bs 1024, 256, 64 on 1 and 2 threads: flexlearn's bare loop, its Learner (what
# `flexlearn fit` runs: TrainCB, MetricsCB, NaNCB, ProgressCB), the GEMM-only floor, and the
# PyTorch peer (bench/torch_peer.py, Debian's python3-torch). Epoch = train 60000 + valid 10000,
# median of the epochs after a warm-up one. Ends with one line per bs at 2 threads:
#   bench: bs=1024 threads=2 flexlearn_ms=... pytorch_ms=... ratio=...
# Env: BENCH_EPOCHS (default 5), BENCH_BS ("1024 256 64"), BENCH_THREADS ("1 2"), FLEXLEARN_DATA.
set -u
B=${BUILD:-build}
EPOCHS=${BENCH_EPOCHS:-5}
BSS=${BENCH_BS:-1024 256 64}
THREADS=${BENCH_THREADS:-1 2}
PY=/usr/bin/python3
have_torch=0
$PY -c 'import torch' 2>/dev/null && have_torch=1
[ $have_torch = 1 ] || echo "bench: PyTorch is not installed (apt-get install python3-torch); flexlearn figures only"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf '%-5s %-3s | %9s %9s %9s %8s %7s | %9s %8s %7s | %6s\n' bs thr fl_bare fl_learn fl_gemm fl_data fl_rss torch torch_dt t_rss ratio
for bs in $BSS; do
  for t in $THREADS; do
    f=$("$B/bench/bench_epoch" --bs "$bs" --threads "$t" --epochs "$EPOCHS" 2>&1 | grep '^bench-epoch:')
    [ -n "$f" ] || { echo "bench: bench_epoch failed for bs=$bs threads=$t"; continue; }
    get() { echo "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }
    bare=$(get "$f" bare_ms); learn=$(get "$f" learner_ms); gemm=$(get "$f" gemm_ms)
    dat=$(get "$f" data_s); rss=$(get "$f" peak_rss_mb)
    tm=NA; td=NA; tr=NA; ratio=NA
    if [ $have_torch = 1 ]; then
      # PyTorch at its best: OpenBLAS's own kernel choice (this machine's environment forces an
      # older one: OPENBLAS_CORETYPE), and at 2 threads the faster of BLAS pools of 2 and of 1.
      p=""; tm=""
      for bt in $( [ "$t" = 1 ] && echo 1 || echo "$t 1"); do
        q=$(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $PY bench/torch_peer.py --bs "$bs" --threads "$t" \
              --blas-threads "$bt" --epochs "$EPOCHS" 2>&1 | grep '^torch-peer:')
        m=$(get "$q" epoch_ms)
        if [ -n "$m" ] && { [ -z "$tm" ] || awk -v a="$m" -v b="$tm" 'BEGIN{exit !(a < b)}'; }; then p=$q; tm=$m; fi
      done
      tm=${tm:-NA}; td=$(get "$p" data_s); tr=$(get "$p" peak_rss_mb)
      [ -n "$tm" ] && ratio=$(awk -v a="$learn" -v b="$tm" 'BEGIN{printf "%.2f", a/b}')
    fi
    printf '%-5s %-3s | %9s %9s %9s %8s %7s | %9s %8s %7s | %6s\n' "$bs" "$t" "$bare" "$learn" "$gemm" "$dat" "$rss" "$tm" "$td" "$tr" "$ratio"
    echo "$bs $t $learn $bare $tm $ratio $rss $tr" >> "$tmp/rows"
  done
done
echo "(ms per epoch; fl_learn = the Learner as the CLI runs it; fl_gemm = its matrix products only;"
echo " *_data = loading Fashion-MNIST in seconds; *_rss = peak resident MB; ratio = fl_learn / torch)"
awk '$2 == 2 {printf "bench: bs=%s threads=2 flexlearn_ms=%s bare_ms=%s pytorch_ms=%s ratio=%s peak_mb=%s pytorch_peak_mb=%s\n", $1, $3, $4, $5, $6, $7, $8}' "$tmp/rows"
