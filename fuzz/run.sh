#!/usr/bin/env bash
# Runs every fuzz target (or those named) for SECONDS each on a copy of the committed seed
# corpus and prints one summary line per target. Needs the nightly toolchain and cargo-fuzz.
#   fuzz/run.sh 600                  # the 10-minute campaign
#   fuzz/run.sh 5 domain list        # a smoke run
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:?usage: run.sh SECONDS [TARGET...]}; shift
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo +nightly fuzz list)
# A target that does not build fails the run with the compiler's message (it used to exit
# silently under set -e).
for t in "${targets[@]}"; do
  if ! out=$(cargo +nightly fuzz build -O "$t" 2>&1); then
    printf '%s\n' "$out" | grep -v '^ *Compiling ' >&2
    echo "fuzz: target $t does not build" >&2
    exit 1
  fi
done
mkdir -p logs
status=0
for t in "${targets[@]}"; do
  work=$(mktemp -d)
  cp corpus/"$t"/seed-* "$work"/
  log=logs/$t.log
  if cargo +nightly fuzz run -O "$t" "$work" -- -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 >"$log" 2>&1; then
    result=ok
  else
    result=CRASH; status=1
  fi
  execs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' || echo "?")
  rate=$(grep -oE 'exec/s: [0-9]+' "$log" | tail -1 | grep -oE '[0-9]+$' || echo "?")
  cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | grep -oE '[0-9]+$' || echo "?")
  printf '%-15s %s  %ss  executions %s  (%s/s)  coverage %s  corpus %s\n' "$t" "$result" "$seconds" "$execs" "$rate" "$cov" "$(ls "$work" | wc -l)"
  rm -rf "$work"
done
exit $status
