#!/usr/bin/env bash
# guardnest.exe end to end under Wine, driven from Linux: the real Windows binary serves
# Linux clients on loopback (Wine uses the host's sockets). Checks, each failing loudly:
#   - curl gets a working CONNECT tunnel to a loopback upstream, and 403 for a listed name;
#   - `guardnest.exe status`, `disable` and `enable` work through the control API;
#   - Ctrl-C (Wine turns the SIGINT sent to the process into CTRL_C_EVENT) drains, and the
#     process exits 0.
# Usage: e2e.sh GUARDNEST_EXE WORKDIR, with WINEPREFIX and GUARDNEST_WINE set (.ci/windows.sh).
set -euo pipefail
exe=$1
work=$2
: "${WINEPREFIX:?}" "${GUARDNEST_WINE:?}"
export WINEDEBUG=-all
mkdir -p "$work"
cp -u "${GUARDNEST_WINE_STUB:?}" "$(dirname "$exe")/bcryptprimitives.dll"

fail() {
  echo "E2E FAILED: $*" >&2
  [ -f "$work/guardnest.log" ] && sed 's/^/    guardnest: /' "$work/guardnest.log" >&2
  exit 1
}
winpath() { printf 'Z:%s' "${1//\//\\}"; }
# Waits (bounded) until FILE contains PATTERN; prints the first matching line.
wait_for() {
  local file=$1 pattern=$2 i
  for i in $(seq 1 300); do
    if grep -q -- "$pattern" "$file" 2>/dev/null; then
      grep -m1 -- "$pattern" "$file"
      return 0
    fi
    sleep 0.1
  done
  fail "no line matching '$pattern' in $file after 30 s"
}
gn() { "$GUARDNEST_WINE" "$exe" "$@" --data-dir "$(winpath "$work/data")" 2>&1; }

echo "0.0.0.0 evil.test" >"$work/block.hosts"

# A loopback upstream on the Linux side.
up_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p "$work/www" && echo "hello from linux" >"$work/www/index.html"
python3 -m http.server --bind 127.0.0.1 --directory "$work/www" "$up_port" >/dev/null 2>&1 &
upstream=$!
guardnest=
cleanup() {
  kill "$upstream" 2>/dev/null || true
  [ -n "$guardnest" ] && kill -KILL "$guardnest" 2>/dev/null || true
}
trap cleanup EXIT

"$GUARDNEST_WINE" "$exe" run --listen 127.0.0.1:0 --control 127.0.0.1:0 --no-default-lists \
  --data-dir "$(winpath "$work/data")" --blocklist "$(winpath "$work/block.hosts")" >"$work/guardnest.log" 2>&1 &
guardnest=$!
addr=$(wait_for "$work/guardnest.log" "listening on " | sed 's/.*listening on //' | tr -d '\r ')
wait_for "$work/guardnest.log" "control API on " >/dev/null
echo "guardnest.exe (Linux pid $guardnest) listens on $addr; upstream 127.0.0.1:$up_port"

tunnel() {
  curl -sS --max-time 20 --proxytunnel -x "http://$1" "http://127.0.0.1:$up_port/index.html"
}
body=$(tunnel "$addr") || fail "no CONNECT tunnel through $addr"
[ "$body" = "hello from linux" ] || fail "tunnel answered '$body'"
echo "ok: curl --proxytunnel through guardnest.exe reached the Linux upstream"

code=$(curl -s --max-time 20 -o /dev/null -w '%{http_connect}' -x "http://$addr" https://www.evil.test/ || true)
[ "$code" = 403 ] || fail "CONNECT www.evil.test answered $code, not 403"
echo "ok: CONNECT www.evil.test:443 -> 403"

out=$(gn status) || fail "status: $out"
case "$out" in "running on $addr"*) ;; *) fail "status said: $out" ;; esac
echo "ok: guardnest.exe status: $(echo "$out" | head -1)"

out=$(gn disable) || fail "disable: $out"
[ "$(echo "$out" | tr -d '\r')" = disabled ] || fail "disable said: $out"
if curl -s --max-time 5 --proxytunnel -x "http://$addr" "http://127.0.0.1:$up_port/" >/dev/null 2>&1; then
  fail "still serving on $addr after disable"
fi
out=$(gn status || true)
case "$out" in "not listening"* | stopped*) ;; *) fail "status after disable said: $out" ;; esac
echo "ok: guardnest.exe disable: the listener is closed; status: $(echo "$out" | head -1)"

out=$(gn enable) || fail "enable: $out"
case "$out" in "enabled: listening on "*) ;; *) fail "enable said: $out" ;; esac
addr=$(echo "$out" | sed 's/enabled: listening on //' | tr -d '\r ')
body=$(tunnel "$addr") || fail "no tunnel after enable on $addr"
[ "$body" = "hello from linux" ] || fail "tunnel after enable answered '$body'"
echo "ok: guardnest.exe enable: serving again on $addr"

kill -INT "$guardnest"
code=0
wait "$guardnest" || code=$?
guardnest=
[ "$code" = 0 ] || fail "exit code $code after Ctrl-C (SIGINT)"
grep -q "shutdown requested" "$work/guardnest.log" || fail "no 'shutdown requested' after Ctrl-C"
grep -q "proxy stopped" "$work/guardnest.log" || fail "did not drain ('proxy stopped') after Ctrl-C"
[ ! -e "$work/data/control.json" ] || fail "control.json left behind after a clean stop"
echo "ok: Ctrl-C (SIGINT -> CTRL_C_EVENT) drained, removed control.json and exited 0"

# --- The whole Wine session killed (a power cut) while GuardNest holds the system proxy ----
# Wine restarts its PID numbering with a new wineserver, so the next guardnest.exe may get
# the very PID of the one that died: liveness must come from the start time and the lock.
settings='HKCU\Software\Microsoft\Windows\CurrentVersion\Internet Settings'
reg_now() { "$GUARDNEST_WINE" reg query "$settings" 2>/dev/null | tr -d '\r' | grep -E 'Proxy|AutoConfigURL' | sort; }
"$GUARDNEST_WINE" reg add "$settings" /v ProxyServer /t REG_SZ /d corp-proxy.example:8123 /f >/dev/null 2>&1
"$GUARDNEST_WINE" reg add "$settings" /v ProxyEnable /t REG_DWORD /d 1 /f >/dev/null 2>&1
"$GUARDNEST_WINE" reg add "$settings" /v ProxyOverride /t REG_SZ /d "corp.example;<local>" /f >/dev/null 2>&1
before=$(reg_now)
start_sp() { # data dir, log, extra args
  "$GUARDNEST_WINE" "$exe" run --listen 127.0.0.1:0 --control 127.0.0.1:0 --no-default-lists \
    --data-dir "$(winpath "$1")" --blocklist "$(winpath "$work/block.hosts")" "${@:3}" >"$2" 2>&1 &
  guardnest=$!
}
start_sp "$work/data-crash" "$work/crash1.log" --system-proxy
wait_for "$work/crash1.log" "system proxy set" >/dev/null
during=$(reg_now)
[ "$during" != "$before" ] || fail "the system proxy did not change"
pid1=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["pid"])' "$work/data-crash/control.json")
"${GUARDNEST_WINESERVER:-wineserver}" -k 2>/dev/null || true
wait "$guardnest" 2>/dev/null || true
guardnest=
[ "$(reg_now)" = "$during" ] || fail "the killed session's settings changed by themselves"
start_sp "$work/data-crash" "$work/crash2.log"
wait_for "$work/crash2.log" "repaired a crashed session" >/dev/null
wait_for "$work/crash2.log" "control API on" >/dev/null
pid2=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["pid"])' "$work/data-crash/control.json")
after=$(reg_now)
[ "$after" = "$before" ] || fail "after the next start the settings are not the user's: $after"
echo "ok: Wine session killed holding the system proxy (Windows PID $pid1); the next guardnest.exe (Windows PID $pid2$([ "$pid1" = "$pid2" ] && echo ', the same PID')) repaired it: $(echo "$after" | tr '\n' ' ')"
out=$("$GUARDNEST_WINE" "$exe" stop --data-dir "$(winpath "$work/data-crash")" 2>&1) || fail "stop: $out"
code=0
wait "$guardnest" || code=$?
guardnest=
[ "$code" = 0 ] || fail "the GuardNest asked to stop through its control API exited $code: $out"
[ "$(reg_now)" = "$before" ] || fail "stop left the settings changed: $(reg_now)"
echo "ok: guardnest.exe stop (the control API's quit): it stopped cleanly: $(echo "$out" | tr -d '\r' | tr '\n' ' ')"

# --- guardnest.exe stop --all: every GuardNest of the user, found by its session window ----
start_sp "$work/data-other" "$work/other.log" --system-proxy
wait_for "$work/other.log" "system proxy set" >/dev/null
out=$("$GUARDNEST_WINE" "$exe" stop --all --data-dir "$(winpath "$work/data-none")" 2>&1) || fail "stop --all: $out"
code=0
wait "$guardnest" || code=$?
guardnest=
[ "$code" = 0 ] || fail "the GuardNest asked to stop by its session window exited $code: $out"
[ "$(reg_now)" = "$before" ] || fail "stop --all did not put the settings back: $(reg_now)"
echo "ok: guardnest.exe stop --all (WM_CLOSE to the other GuardNest's session window): it stopped cleanly, settings back: $(echo "$out" | tr -d '\r' | tr '\n' ' ')"
echo "E2E OK"
