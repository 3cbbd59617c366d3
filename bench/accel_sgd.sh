#!/bin/sh
# 12_accel_sgd's optimiser runs on 11_initializing's model (--model cnn_bn), beside the eval
# accuracies the notebook printed (../shared/reference/miniai-09_learner.md), median of 3 seeds.
# Each run is one `flexlearn fit` (bs 1024, inputs normalised as (x - 0.28) / 0.35, the plain
# Learner as the notebook's TrainLearner); the last validation accuracy is taken.
# Ends with one line per run:
#   bench: accel_sgd run=momentum median=0.876 notebook=0.876 diff=+0.000 within=yes
# and `bench: accel_sgd onecycle5 median=... target=0.90 met=yes|no`.
# The notebook's AdamW + EpochSchedCB(cosine, T_max=3) row is not run: the CLI steps schedules
# per batch (its BatchSchedCB row is). Env: ACCEL_SEEDS ("1 2 3"), FLEXLEARN_DATA, BUILD.
set -u
B=${BUILD:-build}
SEEDS=${ACCEL_SEEDS:-1 2 3}
data=${FLEXLEARN_DATA:-/usr/share/datasets/fashion-mnist}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# name | notebook's final eval accuracy | epochs | flexlearn flags
runs="sgd|0.852|3|--opt sgd --lr 0.4
momentum|0.876|3|--opt momentum --lr 1.5
rmsprop|0.853|3|--opt rmsprop --lr 3e-3
adam|0.871|3|--opt adam --lr 6e-3
adamw_cosine|0.883|3|--opt adamw --sched cosine --lr 2e-2
onecycle5|0.906|5|--opt adamw --sched onecycle --lr 6e-2"

median() { tr ' ' '\n' | sed '/^$/d' | sort -n | awk '{v[NR]=$1} END {if (NR == 0) print "NA"; else if (NR % 2) print v[(NR+1)/2]; else printf "%.4f\n", (v[NR/2]+v[NR/2+1])/2}'; }

printf '%-13s %-6s %-24s %-7s %-8s %-7s %s\n' run lr "accuracy per seed" median notebook diff "s/epoch"
out=""
echo "$runs" | while IFS='|' read -r name nb ep flags; do
  accs=""; secs=""
  for s in $SEEDS; do
    t0=$(date +%s%N)
    # shellcheck disable=SC2086
    if ! "$B/flexlearn" fit --model cnn_bn --data "$data" --epochs "$ep" --seed "$s" --no-progress $flags \
         > "$tmp/o.txt" 2>&1; then
      echo "bench: accel_sgd $name seed $s failed:"; tail -n 3 "$tmp/o.txt"; exit 1
    fi
    t1=$(date +%s%N)
    a=$(grep "'train': False" "$tmp/o.txt" | tail -n 1 | sed -n "s/.*'accuracy': '\([0-9.]*\)'.*/\1/p")
    accs="$accs $a"
    secs="$secs $(awk -v a="$t0" -v b="$t1" -v e="$ep" 'BEGIN{printf "%.1f", (b-a)/1e9/e}')"
  done
  m=$(echo "$accs" | median)
  d=$(awk -v a="$m" -v b="$nb" 'BEGIN{printf "%+.3f", a-b}')
  lr=$(echo "$flags" | sed -n 's/.*--lr \([^ ]*\).*/\1/p')
  printf '%-13s %-6s %-24s %-7s %-8s %-7s %s\n' "$name" "$lr" "$accs" "$m" "$nb" "$d" "$(echo "$secs" | median)"
  echo "$name $m $nb $d" >> "$tmp/rows"
done || exit 1
echo "(cnn_bn, bs 1024, $(echo "$SEEDS" | wc -w) seeds; diff = median - notebook; s/epoch = median wall time per epoch, data loading included)"
while read -r name m nb d; do
  if [ "$name" = onecycle5 ]; then
    met=$(awk -v a="$m" 'BEGIN{print (a >= 0.90) ? "yes" : "no"}')
    echo "bench: accel_sgd onecycle5 median=$m notebook=$nb target=0.90 met=$met"
  else
    w=$(awk -v a="$d" 'BEGIN{print (a <= 0.01 && a >= -0.01) ? "yes" : "no"}')
    echo "bench: accel_sgd run=$name median=$m notebook=$nb diff=$d within=$w"
  fi
done < "$tmp/rows"
