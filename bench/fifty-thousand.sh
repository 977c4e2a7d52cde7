#!/usr/bin/env bash
# 50,000 idle tunnels open at once. One process may hold 20,000 descriptors on this machine
# (hard limit), so about 9,900 tunnels; this starts PROCS GuardNest processes and as many
# harness processes (`guardnest-bench proxy --only 4`), each holding PER tunnels for HOLD
# seconds, and samples every proxy's descriptors and RSS once a second to report the peak.
#
#   bench/fifty-thousand.sh            # PROCS=6 PER=8500 HOLD=15: 51,000 tunnels
#
# HOLD must stay under the proxies' idle_timeout (30 s), or they close the tunnels first.
set -euo pipefail
cd "$(dirname "$0")/.."

procs=${PROCS:-6}
per=${PER:-8500}
hold=${HOLD:-15}
cargo build --release -q -p guardnest-cli -p guardnest-bench

work=$(mktemp -d)
pids=()
harness=()
cleanup() {
  for p in "${harness[@]}" "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
ulimit -n "$(ulimit -Hn)"
echo "blocked.test" > "$work/blocked.txt"

for i in $(seq 1 "$procs"); do
  ./target/release/guardnest run --listen "127.0.0.1:$((13140 + i))" --blocklist "$work/blocked.txt" \
    --no-default-lists --data-dir "$work/gn$i" --log-level warn --control none &
  pids+=($!)
done
for i in $(seq 1 "$procs"); do
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$((13140 + i))") 2>/dev/null && break
    sleep 0.1
  done
done
sleep 1

rss_kib() { local t=0; for p in "${pids[@]}"; do t=$((t + $(awk '/^VmRSS/ {print $2}' "/proc/$p/status"))); done; echo "$t"; }
fds() { local t=0; for p in "${pids[@]}"; do t=$((t + $(ls "/proc/$p/fd" | wc -l))); done; echo "$t"; }

fds0=$(fds)
rss0=$(rss_kib)
for i in $(seq 1 "$procs"); do
  ./target/release/guardnest-bench proxy --only 4 --idle-tunnels "$per" --hold-secs "$hold" \
    --target "guardnest$i=127.0.0.1:$((13140 + i))@${pids[$((i - 1))]}" > "$work/harness$i.out" 2>&1 &
  harness+=($!)
done

peak=0
peak_rss=$rss0
running=1
while [ "$running" = 1 ]; do
  running=0
  for h in "${harness[@]}"; do kill -0 "$h" 2>/dev/null && running=1; done
  open=$(( ($(fds) - fds0) / 2 ))
  if [ "$open" -gt "$peak" ]; then peak=$open; peak_rss=$(rss_kib); fi
  sleep 1
done
for h in "${harness[@]}"; do wait "$h" || true; done
sleep 3
rss_after=$(rss_kib)

echo "# $procs GuardNest processes, $per idle tunnels asked of each (one harness process each)"
echo
echo "| tunnels open at once (peak) | proxies' RSS before KiB | at the peak KiB | KiB per tunnel | after close KiB |"
echo "|---:|---:|---:|---:|---:|"
awk -v n="$peak" -v a="$rss0" -v b="$peak_rss" -v c="$rss_after" \
  'BEGIN { printf "| %d | %d | %d | %.2f | %d |\n", n, a, b, (n > 0 ? (b - a) / n : 0), c }'
echo
echo "Each harness's own row (RSS delta of its proxy / its tunnels):"
echo
grep -h "^| guardnest" "$work"/harness*.out
