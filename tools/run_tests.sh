#!/bin/sh
# Runs every test binary in $1/tests and prints one closing line: "N passed, N failed, N skipped".
# Each test binary prints its own "ok"/"FAIL"/"skip" lines and a last line "tests: P passed, F failed, S skipped".
dir=${1:-build}
export ASAN_OPTIONS="${ASAN_OPTIONS:-protect_shadow_gap=0:detect_leaks=1:abort_on_error=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
export LSAN_OPTIONS="${LSAN_OPTIONS:-suppressions=$(pwd)/tools/lsan.supp}"
export FLEXLEARN_CLI="$dir/flexlearn"
P=0; F=0; S=0; bad=""
for t in "$dir"/tests/test_*; do
  [ -x "$t" ] || continue
  out=$("$t" 2>&1); rc=$?
  echo "$out" | grep -v '^ok ' | grep -v '^tests: '
  line=$(echo "$out" | grep '^tests: ' | tail -n 1)
  p=$(echo "$line" | sed -n 's/^tests: \([0-9]*\) passed.*/\1/p'); p=${p:-0}
  f=$(echo "$line" | sed -n 's/.* \([0-9]*\) failed.*/\1/p'); f=${f:-0}
  s=$(echo "$line" | sed -n 's/.* \([0-9]*\) skipped.*/\1/p'); s=${s:-0}
  if [ $rc -ne 0 ] && [ "$f" = 0 ]; then f=1; fi
  [ $rc -ne 0 ] && bad="$bad $(basename $t)(rc=$rc)"
  echo "$(basename $t): $p passed, $f failed, $s skipped"
  P=$((P+p)); F=$((F+f)); S=$((S+s))
done
[ -n "$bad" ] && echo "failing:$bad"
echo "$P passed, $F failed, $S skipped"
[ $F -eq 0 ]
