#!/bin/sh
# flexlearn predict's throughput on the 10000 Fashion-MNIST test images (CPU) beside PyTorch's
# eager inference, in the same run: weights from a 1-epoch `flexlearn fit --save`, then for each
# thread count bench/bench_predict (what `flexlearn predict --data` runs: fl_get_preds, the
# validation path) and bench/torch_predict.py (the same weights, torch.no_grad, the same batch
# size, x.float()/255 per batch, class + softmax probability), median of BENCH_REPS runs after a
# warm-up. Also one whole `flexlearn predict` process (loading and first-call costs included).
# Ends with one line per thread count:
#   bench: predict bs=1024 threads=2 flexlearn_img_s=... pytorch_img_s=... speedup=... same_accuracy=yes
# Env: BENCH_BS (1024), BENCH_THREADS ("1 2"), BENCH_REPS (20), FLEXLEARN_DATA.
set -u
B=${BUILD:-build}
BS=${BENCH_BS:-1024}
THREADS=${BENCH_THREADS:-1 2}
REPS=${BENCH_REPS:-20}
PY=/usr/bin/python3
data=${FLEXLEARN_DATA:-/usr/share/datasets/fashion-mnist}
get() { echo "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
w=$tmp/w.safetensors
"$B/flexlearn" fit --no-progress --data "$data" --save "$w" > "$tmp/fit.txt" 2>&1 || { cat "$tmp/fit.txt"; exit 1; }
t0=$(date +%s%N)
"$B/flexlearn" predict --weights "$w" --data "$data" --bs "$BS" > "$tmp/cli.txt" 2>&1 || { cat "$tmp/cli.txt"; exit 1; }
t1=$(date +%s%N)
echo "bench: one flexlearn predict process: $(( (t1 - t0) / 1000000 )) ms wall, $(sed -n 's/^predicted //p' "$tmp/cli.txt"), $(tail -n 1 "$tmp/cli.txt")"
have_torch=0
$PY -c 'import torch' 2>/dev/null && have_torch=1
[ $have_torch = 1 ] || echo "bench: PyTorch is not installed (apt-get install python3-torch); flexlearn figures only"
if [ $have_torch = 1 ]; then   # the same for the peer: a whole python3 process, one pass (import torch included)
  t0=$(date +%s%N)
  q=$(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $PY bench/torch_predict.py --weights "$w" --data "$data" --bs "$BS" --reps 0 2>&1)
  t1=$(date +%s%N)
  echo "bench: one PyTorch peer process: $(( (t1 - t0) / 1000000 )) ms wall, the pass $(get "$q" ms) ms, accuracy $(get "$q" accuracy)"
fi
printf '%-5s %-3s | %12s %9s %9s %12s | %12s %9s %10s | %7s %7s %s\n' bs thr fl_img_s fl_ms fl_best fl_model_img_s torch_img_s torch_ms torch_best speedup best_sp accuracy
rows=""
for t in $THREADS; do
  f=$("$B/bench/bench_predict" --weights "$w" --data "$data" --bs "$BS" --threads "$t" --reps "$REPS" 2>&1)
  fl=$(echo "$f" | grep '^bench-predict:'); fm=$(echo "$f" | grep '^bench-predict-model:')
  [ -n "$fl" ] || { echo "bench: bench_predict failed: $f"; exit 1; }
  tq=""; ti=NA; tms=NA; tb=NA; ta=NA; sp=NA; bsp=NA; blas=NA
  if [ $have_torch = 1 ]; then
    # as bench.sh: OpenBLAS's own kernel choice (this machine's environment forces an older one)
    tq=$(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $PY bench/torch_predict.py --weights "$w" --data "$data" \
           --bs "$BS" --threads "$t" --reps "$REPS" 2>&1 | grep '^torch-predict:')
    ti=$(get "$tq" images_per_s); tms=$(get "$tq" ms); tb=$(get "$tq" best_ms); ta=$(get "$tq" accuracy); blas=$(get "$tq" blas)
    [ -n "$ti" ] && sp=$(awk -v a="$(get "$fl" images_per_s)" -v b="$ti" 'BEGIN{printf "%.2f", a/b}')
    [ -n "$tb" ] && bsp=$(awk -v a="$(get "$fl" best_ms)" -v b="$tb" 'BEGIN{printf "%.2f", b/a}')
  fi
  fa=$(get "$fl" accuracy)
  same=no; [ "$fa" = "$ta" ] && same=yes
  printf '%-5s %-3s | %12s %9s %9s %12s | %12s %9s %10s | %7s %7s %s/%s\n' "$BS" "$t" "$(get "$fl" images_per_s)" \
    "$(get "$fl" ms)" "$(get "$fl" best_ms)" "$(get "$fm" images_per_s)" "${ti:-NA}" "${tms:-NA}" "${tb:-NA}" "$sp" "$bsp" "$fa" "${ta:-NA}"
  rows="$rows
bench: predict bs=$BS threads=$t flexlearn_img_s=$(get "$fl" images_per_s) pytorch_img_s=${ti:-NA} speedup=$sp best_speedup=$bsp same_accuracy=$same pytorch_blas=${blas%%:*}"
done
echo "(images/s over the 10000 test images, median of $REPS runs; fl_model = fl_predict on batches already f32;"
echo " *_best = the fastest run in ms; speedup = flexlearn images/s / PyTorch images/s (medians), best_sp = of the"
echo " fastest runs (the least disturbed by other processes); accuracy flexlearn/PyTorch)"
echo "$rows" | sed '/^$/d'
