#!/bin/sh
# make bench, the ResNet part: one epoch (train 60000 + valid 10000, bs 1024) of 13_resnet's
# ResNet with its recipe (AdamW + OneCycleLR at 2e-2, per batch) in `flexlearn fit --model resnet`
# beside the PyTorch peer bench/resnet_torch.py (the same model and recipe, channels_last, which
# measured about 2x faster than NCHW here), in the same run. Each side at 1 and 2 threads; the
# ratio is flexlearn's best over PyTorch's best. Times are the epoch's train + valid seconds
# (flexlearn: from its --log; the peer: its own clock), peak RSS of the whole process.
# Ends with:
#   bench: resnet bs=1024 flexlearn_s=... pytorch_s=... ratio=... flexlearn_peak_mb=... pytorch_peak_mb=... mem_ratio=...
# Env: BENCH_RESNET_THREADS ("1 2"), FLEXLEARN_DATA. Takes some 5-8 minutes on 2 cores.
set -u
B=${BUILD:-build}
THREADS=${BENCH_RESNET_THREADS:-1 2}
PY=/usr/bin/python3
data=${FLEXLEARN_DATA:-/usr/share/datasets/fashion-mnist}
get() { echo "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
best() { awk -v a="$1" -v b="$2" 'BEGIN{print (b == "" || a + 0 < b + 0) ? a : b}'; }
fl_s=""; fl_mb=""; t_s=""; t_mb=""
printf '%-8s %-3s | %9s %8s %6s\n' who thr epoch_s peak_mb acc
for t in $THREADS; do
  /usr/bin/time -f 'rss_kb=%M' -o "$tmp/time" "$B/flexlearn" fit --model resnet --opt adamw --sched onecycle --lr 2e-2 \
    --epochs 1 --threads "$t" --device cpu --no-progress --data "$data" --log "$tmp/log.jsonl" > "$tmp/out" 2>&1 ||
    { echo "bench: flexlearn fit --model resnet failed:"; cat "$tmp/out"; exit 1; }
  s=$(sed -n 's/.*"seconds": \([0-9.]*\).*/\1/p' "$tmp/log.jsonl" | awk '{s += $1} END {printf "%.2f", s}')
  mb=$(awk -F= '/rss_kb/ {printf "%.0f", $2 / 1024}' "$tmp/time")
  acc=$(tail -n 1 "$tmp/log.jsonl" | sed -n 's/.*"accuracy": \([0-9.]*\).*/\1/p')
  printf '%-8s %-3s | %9s %8s %6.3f\n' flexlearn "$t" "$s" "$mb" "$acc"
  [ "$(best "$s" "$fl_s")" = "$s" ] && fl_s=$s
  fl_mb=$mb
done
if ! $PY -c 'import torch' 2>/dev/null; then
  echo "bench: resnet: PyTorch is not installed (apt-get install python3-torch); flexlearn figures only"
  exit 0
fi
for t in $THREADS; do
  q=$(env -u OPENBLAS_CORETYPE $PY bench/resnet_torch.py --data "$data" --bs 1024 --lr 2e-2 --opt adamw --sched onecycle \
        --threads "$t" --epochs 1 2>&1 | grep '^resnet-torch:')
  s=$(get "$q" epoch_s); mb=$(get "$q" peak_rss_mb)
  [ -n "$s" ] || { echo "bench: the PyTorch resnet peer failed at $t threads"; continue; }
  printf '%-8s %-3s | %9s %8.0f %6s\n' pytorch "$t" "$s" "$mb" "$(get "$q" acc)"
  [ "$(best "$s" "$t_s")" = "$s" ] && t_s=$s
  t_mb=$mb
done
[ -n "$t_s" ] || exit 1
awk -v a="$fl_s" -v b="$t_s" -v m="$fl_mb" -v n="$t_mb" 'BEGIN {
  printf "bench: resnet bs=1024 flexlearn_s=%s pytorch_s=%s ratio=%.2f flexlearn_peak_mb=%s pytorch_peak_mb=%.0f mem_ratio=%.2f\n", a, b, a / b, m, n, m / n }'
