#!/usr/bin/env bash
# Starts GuardNest, tinyproxy, Squid and Privoxy on loopback with minimal comparable configs
# (CONNECT to any port allowed, "blocked.test" blocked, no caching, no disk logging), and the
# floor proxy (crates/guardnest-bench/src/bin/floor-proxy.rs: the least a proxy can do, so
# the kernel's share of each figure shows), runs guardnest-bench proxy against all of them in
# one run, then stops them.
#
#   bench/run-anchors.sh [--quick] [more guardnest-bench proxy flags]
#   bench/run-anchors.sh --before OLD_GUARDNEST [--quick] [flags]
#
# With --before, it compares two builds instead: this tree's guardnest and OLD_GUARDNEST
# (a release binary built from an earlier commit), each started twice, measured in the
# order after-a, before-a, after-b, before-b within every scenario of one run. The a/b
# difference of the same build is the run-to-run noise a before/after difference must
# exceed to count. The anchors are not started in this mode.
#
# Needs: tinyproxy, squid, privoxy (apt-get install -y tinyproxy squid privoxy).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--before" ]; then
  old=${2:?usage: run-anchors.sh --before OLD_GUARDNEST [flags]}
  shift 2
  [ -x "$old" ] || { echo "not an executable: $old" >&2; exit 1; }
  cargo build --release -q -p guardnest-cli -p guardnest-bench
  work=$(mktemp -d)
  pids=()
  cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
  trap cleanup EXIT
  ulimit -n "$(ulimit -Hn)"
  echo "blocked.test" > "$work/blocked.txt"
  targets=()
  port=13141
  for run in a b; do
    for build in after before; do
      bin=./target/release/guardnest
      [ "$build" = before ] && bin=$old
      "$bin" run --listen 127.0.0.1:$port --blocklist "$work/blocked.txt" --no-default-lists \
        --data-dir "$work/$build-$run" --log-level warn --control none &
      pids+=($!)
      targets+=(--target "$build-$run=127.0.0.1:$port@$!")
      port=$((port + 1))
    done
  done
  for p in 13141 13142 13143 13144; do
    for _ in $(seq 1 100); do
      (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null && break
      sleep 0.1
    done
  done
  echo "before: $old ($("$old" --version 2>/dev/null || echo '?'))"
  echo "after:  ./target/release/guardnest ($(git describe --always --dirty 2>/dev/null || echo '?'))"
  ./target/release/guardnest-bench proxy "${targets[@]}" "$@"
  exit 0
fi

for bin in tinyproxy squid privoxy; do
  command -v "$bin" >/dev/null || PATH="$PATH:/usr/sbin"
  command -v "$bin" >/dev/null || { echo "missing $bin: apt-get install -y tinyproxy squid privoxy" >&2; exit 1; }
done
cargo build --release -q -p guardnest-cli -p guardnest-bench

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
ulimit -n "$(ulimit -Hn)"

echo "blocked.test" > "$work/blocked.txt"

# GuardNest
./target/release/guardnest run --listen 127.0.0.1:13131 --blocklist "$work/blocked.txt" \
  --no-default-lists --data-dir "$work/gn" --log-level warn --control none &
pids+=($!); gn=$!

# tinyproxy: no ConnectPort lines = CONNECT to any port; filter blocks the test name.
printf '^blocked\\.test$\n' > "$work/tinyproxy.filter"
cat > "$work/tinyproxy.conf" <<CONF
Port 13128
Listen 127.0.0.1
Timeout 600
MaxClients 20000
Allow 127.0.0.1
Filter "$work/tinyproxy.filter"
FilterExtended On
LogLevel Critical
DisableViaHeader Yes
CONF
tinyproxy -d -c "$work/tinyproxy.conf" >/dev/null 2>&1 &
pids+=($!); tp=$!

# Squid: memory-only, no cache, no access log.
mkdir -p "$work/squid"
cat > "$work/squid.conf" <<CONF
http_port 127.0.0.1:13129
acl blocked dstdomain .blocked.test
http_access deny blocked
http_access allow localhost
http_access deny all
cache deny all
cache_mem 0 MB
access_log none
cache_log /dev/null
cache_store_log none
pid_filename none
coredump_dir $work/squid
max_filedescriptors 20000
shutdown_lifetime 0 seconds
via off
forwarded_for transparent
CONF
squid -N -f "$work/squid.conf" >/dev/null 2>&1 &
pids+=($!); sq=$!

# Privoxy: block the test name, keep-alive on, no log file.
cat > "$work/privoxy.action" <<CONF
{ +block{benchmark block} }
.blocked.test
CONF
cat > "$work/privoxy.conf" <<CONF
confdir /etc/privoxy
listen-address 127.0.0.1:13130
actionsfile $work/privoxy.action
toggle 1
enable-remote-toggle 0
enable-edit-actions 0
max-client-connections 20000
keep-alive-timeout 300
socket-timeout 300
CONF
privoxy --no-daemon "$work/privoxy.conf" >/dev/null 2>&1 &
pids+=($!); pv=$!

# GuardNest again with the portable copy path instead of splice(2), for throughput only.
printf '[proxy]\nsplice = false\n' > "$work/copy.toml"
./target/release/guardnest run --config "$work/copy.toml" --listen 127.0.0.1:13133 --blocklist "$work/blocked.txt" \
  --no-default-lists --data-dir "$work/gn-copy" --log-level warn --control none &
pids+=($!); gc=$!

# The floor: no limits, no hygiene, for comparison only.
./target/release/floor-proxy 127.0.0.1:13132 &
pids+=($!); fl=$!

# Wait until every port answers.
for port in 13128 13129 13130 13131 13132 13133; do
  for _ in $(seq 1 100); do
    (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break
    sleep 0.1
  done
done

./target/release/guardnest-bench proxy \
  --target "guardnest=127.0.0.1:13131@$gn" \
  --target "tinyproxy=127.0.0.1:13128@$tp" \
  --target "squid=127.0.0.1:13129@$sq" \
  --target "privoxy=127.0.0.1:13130@$pv" \
  --target "floor=127.0.0.1:13132@$fl" \
  "$@"

# Throughput with splice(2) and with the portable path, side by side.
if [[ " $* " != *" --only "* ]]; then
  echo
  echo "# GuardNest: splice(2) against the portable copy path"
  ./target/release/guardnest-bench proxy --only 1 \
    --target "guardnest=127.0.0.1:13131@$gn" \
    --target "guardnest-copy=127.0.0.1:13133@$gc" \
    "$@" | sed -n '/^## 1/,$p'
fi
