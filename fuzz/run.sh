#!/bin/sh
# Runs each libFuzzer harness given for $FUZZ_TIME seconds (default 60), one after the other, on
# one process, from its corpus in BUILD/corpus/NAME (kept between runs; seeded by fuzz/seeds.sh),
# with a 1 GB RSS cap, a 64 MB cap on any single malloc (a reader bounded by its input never
# comes near it), and a 10 s cap on any one input. Fails (exit 1) on any finding: crash,
# sanitizer report, broken invariant, leak, timeout, out-of-memory; the input that caused it is
# saved as BUILD/artifacts/NAME-crash-<sha1> (etc.) and its path printed.
# Usage: fuzz/run.sh BUILD HARNESS...   (make fuzz)
set -u
build=${1:?usage: fuzz/run.sh BUILD HARNESS...}
shift
time=${FUZZ_TIME:-60}
here=$(cd "$(dirname "$0")" && pwd)
"$here/seeds.sh" "$build/seeds"
mkdir -p "$build/artifacts" "$build/logs"
failed=""
for h in "$@"; do
  name=$(basename "$h")
  mkdir -p "$build/corpus/$name" "$build/seeds/$name"
  log="$build/logs/$name.log"
  echo "fuzz: $name for ${time}s (log: $log)"
  "$h" -max_total_time="$time" -rss_limit_mb=1024 -malloc_limit_mb=64 -timeout=10 \
       -print_final_stats=1 -artifact_prefix="$build/artifacts/$name-" \
       "$build/corpus/$name" "$build/seeds/$name" > "$log" 2>&1
  rc=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  last=$(grep -E '^#[0-9]+' "$log" | tail -n 1)
  echo "fuzz: $name: exit $rc, ${runs:-?} inputs; $last"
  if [ $rc -ne 0 ]; then
    failed="$failed $name"
    grep -E 'ERROR|SUMMARY|invariant broken|Test unit written|artifact' "$log" | head -n 20
  fi
done
if [ -n "$failed" ]; then echo "fuzz: FAILED:$failed"; exit 1; fi
echo "fuzz: no findings"
