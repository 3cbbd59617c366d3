#!/bin/sh
# Valid accuracy and loss after one epoch (bs 1024, lr 0.2) over seeds, plain SGD and the
# MomentumLearner: the figures the README quotes. Usage: bench/seeds.sh [FIRST] [LAST] (default 0 19)
set -u
B=${BUILD:-build}
first=${1:-0}; last=${2:-19}
for mode in plain momentum; do
  flags=""; [ $mode = momentum ] && flags="--mom 0.85"
  for s in $(seq "$first" "$last"); do
    "$B/flexlearn" fit --seed "$s" --no-progress $flags 2>/dev/null | grep "'train': False" |
      sed "s/.*'accuracy': '\([0-9.]*\)', 'loss': '\([0-9.]*\)'.*/\1 \2/"
  done > "${TMPDIR:-/tmp}/fl_seeds.$$"
  n=$(wc -l < "${TMPDIR:-/tmp}/fl_seeds.$$")
  acc=$(cut -d' ' -f1 "${TMPDIR:-/tmp}/fl_seeds.$$" | sort -n | tr '\n' ' ')
  loss=$(cut -d' ' -f2 "${TMPDIR:-/tmp}/fl_seeds.$$" | sort -n | tr '\n' ' ')
  rm -f "${TMPDIR:-/tmp}/fl_seeds.$$"
  echo "$acc|$loss" | awk -F'|' -v m=$mode -v a="$first" -v b="$last" -v n="$n" '
    function med(s,   v, k) { k = split(s, v, " "); return k % 2 ? v[(k + 1) / 2] : (v[k / 2] + v[k / 2 + 1]) / 2 }
    { split($1, v, " ");
      printf "seeds: %s seeds %s-%s: valid accuracy median %.3f (%s-%s), loss median %.3f\n", m, a, b, med($1), v[1], v[n], med($2) }'
done
