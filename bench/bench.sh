#!/bin/sh
# make bench: the lesson's epoch in flexlearn beside PyTorch, measured in the same run.
# For bs 1024, 256, 64 on 1 and 2 threads: flexlearn's bare loop, its Learner (what
# `flexlearn fit` runs: TrainCB, MetricsCB, NaNCB, ProgressCB), the GEMM-only floor, and the
# PyTorch peer (bench/torch_peer.py, Debian's python3-torch). Epoch = train 60000 + valid 10000,
# median of the epochs after a warm-up one. Ends with one line per bs at 2 threads:
#   bench: bs=1024 threads=2 flexlearn_ms=... pytorch_ms=... ratio=... pytorch_blas=openblas
# A ratio is only printed against PyTorch at its best: the peer reports which BLAS library its
# torch calls (Debian's torch uses whatever the libblas.so.3 alternative points to), and on the
# reference BLAS (libblas3, ~5 GFLOP/s: 20x slower epochs) or an unknown one the bench skips the
# peer, prints ratio=NA and says how to fix it, and exits 1 after the flexlearn figures. The
# peer's time is the fastest of its BLAS settings (t_blas: OpenBLAS build and pool size).
# Env: BENCH_EPOCHS (default 5), BENCH_BS ("1024 256 64"), BENCH_THREADS ("1 2"), FLEXLEARN_DATA.
set -u
B=${BUILD:-build}
EPOCHS=${BENCH_EPOCHS:-5}
BSS=${BENCH_BS:-1024 256 64}
THREADS=${BENCH_THREADS:-1 2}
PY=/usr/bin/python3
get() { echo "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }
have_torch=0
$PY -c 'import torch' 2>/dev/null && have_torch=1
[ $have_torch = 1 ] || echo "bench: PyTorch is not installed (apt-get install python3-torch); flexlearn figures only"
# Which BLAS the peer's torch calls (the same environment as the timed runs below).
blas_kind=NA; blas_ok=0; omp_dir=""
if [ $have_torch = 1 ]; then
  q=$(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $PY bench/torch_peer.py --probe --threads 2 2>&1 | grep '^torch-peer:')
  blas=$(get "$q" blas); blas_kind=${blas%%:*}; blas_kind=${blas_kind:-unknown}
  echo "bench: pytorch blas=${blas:-unknown} core=$(get "$q" blas_core) sgemm_gflops=$(get "$q" sgemm_gflops) (1024^3) sgemm_mlp_gflops=$(get "$q" sgemm_mlp_gflops) (1024x784x50), 2 threads"
  case $blas_kind in openblas|mkl|blis) blas_ok=1 ;; esac
  for d in /usr/lib/*/openblas-openmp; do
    bp=${blas#*:}; [ -e "$d/libblas.so.3" ] && [ "$bp" = "${bp#"$d"/}" ] && omp_dir=$d
  done
  [ $blas_ok = 1 ] || omp_dir=""   # no peer runs at all
  [ -n "$omp_dir" ] && echo "bench: the peer also tries OpenBLAS's OpenMP build ($omp_dir) through LD_LIBRARY_PATH"
  if [ $blas_ok = 0 ]; then
    echo "bench: NO RATIO: PyTorch here calls the ${blas_kind} BLAS (${blas#*:}), not an optimised one, so"
    echo "bench: it runs far below its best (Debian's reference BLAS: ~5 GFLOP/s) and a ratio would flatter"
    echo "bench: flexlearn. Fix: apt-get install libopenblas0-openmp (FL_SETUP_TORCH=1 tools/setup.sh, run by"
    echo "bench: make bench, does it), and check update-alternatives --display libblas.so.3-x86_64-linux-gnu"
    echo "bench: points to an openblas-* build. The PyTorch peer is skipped: ratio=NA."
  fi
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf '%-5s %-3s | %9s %9s %9s %8s %7s | %9s %8s %7s %-10s | %6s\n' bs thr fl_bare fl_learn fl_gemm fl_data fl_rss torch torch_dt t_rss t_blas ratio
for bs in $BSS; do
  for t in $THREADS; do
    f=$("$B/bench/bench_epoch" --bs "$bs" --threads "$t" --epochs "$EPOCHS" 2>&1 | grep '^bench-epoch:')
    [ -n "$f" ] || { echo "bench: bench_epoch failed for bs=$bs threads=$t"; continue; }
    bare=$(get "$f" bare_ms); learn=$(get "$f" learner_ms); gemm=$(get "$f" gemm_ms)
    dat=$(get "$f" data_s); rss=$(get "$f" peak_rss_mb)
    tm=NA; td=NA; tr=NA; tb=NA; ratio=NA
    if [ $blas_ok = 1 ]; then
      # PyTorch at its best: OpenBLAS's own kernel choice (this machine's environment forces an
      # older one: OPENBLAS_CORETYPE), the fastest of: the libblas.so.3 alternative with a BLAS
      # pool of $t and (at 2 threads) of 1, and OpenBLAS's OpenMP build where it is installed
      # but not the alternative (it shares torch's libgomp pool; its size is torch's threads).
      p=""; tm=""
      for c in "default:$t" $( [ "$t" = 1 ] || echo default:1 ) ${omp_dir:+omp:$t}; do
        ld=${LD_LIBRARY_PATH:-}; [ "${c%:*}" = omp ] && ld="$omp_dir${ld:+:$ld}"
        q=$(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE LD_LIBRARY_PATH="$ld" $PY bench/torch_peer.py --bs "$bs" \
              --threads "$t" --blas-threads "${c#*:}" --epochs "$EPOCHS" 2>&1 | grep '^torch-peer:')
        m=$(get "$q" epoch_ms)
        if [ -n "$m" ] && { [ -z "$tm" ] || awk -v a="$m" -v b="$tm" 'BEGIN{exit !(a < b)}'; }; then p=$q; tm=$m; fi
      done
      tm=${tm:-NA}; td=$(get "$p" data_s); tr=$(get "$p" peak_rss_mb)
      pk=$(get "$p" blas); tb=$(basename "$(dirname "${pk#*:}")" | sed 's/^openblas-//')/$(get "$p" blas_threads); pk=${pk%%:*}
      case $pk in
        openblas|mkl|blis) ratio=$(awk -v a="$learn" -v b="$tm" 'BEGIN{printf "%.2f", a/b}') ;;
        "") echo "bench: the PyTorch peer failed for bs=$bs threads=$t" ;;
        *) echo "bench: the peer for bs=$bs threads=$t ran on the $pk BLAS: no ratio"; blas_ok=0 ;;
      esac
    fi
    printf '%-5s %-3s | %9s %9s %9s %8s %7s | %9s %8s %7s %-10s | %6s\n' "$bs" "$t" "$bare" "$learn" "$gemm" "$dat" "$rss" "$tm" "$td" "$tr" "$tb" "$ratio"
    echo "$bs $t $learn $bare $tm $ratio $rss $tr" >> "$tmp/rows"
  done
done
echo "(ms per epoch; fl_learn = the Learner as the CLI runs it; fl_gemm = its matrix products only;"
echo " *_data = loading Fashion-MNIST in seconds; *_rss = peak resident MB; t_blas = the peer's fastest"
echo " BLAS build/pool (pthread, openmp: OpenBLAS's; /N its OPENBLAS_NUM_THREADS); ratio = fl_learn / torch)"
awk -v k="$blas_kind" '$2 == 2 {printf "bench: bs=%s threads=2 flexlearn_ms=%s bare_ms=%s pytorch_ms=%s ratio=%s peak_mb=%s pytorch_peak_mb=%s pytorch_blas=%s\n", $1, $3, $4, $5, $6, $7, $8, k}' "$tmp/rows"
if [ $have_torch = 1 ] && [ $blas_ok = 0 ]; then
  echo "bench: FAILED: no ratio against PyTorch on the ${blas_kind} BLAS (apt-get install libopenblas0-openmp)"
  exit 1
fi
