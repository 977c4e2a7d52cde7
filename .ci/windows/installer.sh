#!/usr/bin/env bash
# The Windows setup program under Wine, as a user and an administrator would use it. Each
# case starts from a fresh copy of the cached Wine prefix in which the user already has
# proxy settings of their own, and compares the registry values GuardNest touches byte for
# byte (.ci/windows/regdump.c: type and every byte, as RegQueryValueExW returns them):
#
#   manual  a manual proxy (ProxyServer, ProxyOverride, the LAN connection record) that is a
#           real HTTP proxy of ours on loopback (user-proxy.py). Silent install: the files,
#           the Start-menu shortcut, the Apps & features key, the WebView2 note; the installed
#           guardnest.exe run --system-proxy from its installed path: a Linux curl gets a
#           tunnel and a 403; a Windows program that reads the proxy settings itself
#           (wininet-get.c, INTERNET_OPEN_TYPE_PRECONFIG) gets GuardNest's 403 for a listed
#           name. Silent uninstall while it runs: the values are back byte for byte, RunOnce
#           is gone, the program files are gone, the data dir is kept, and the same Windows
#           program goes through the user's own proxy again (which records it).
#   pac     an auto-config URL (AutoConfigURL and the record): the same install, run and
#           uninstall while running, byte for byte; a per-user WebView2 runtime planted in
#           the registry is found (no sentence).
#   empty   a profile with none of the values: the same, uninstalled with /REMOVEDATA (the
#           data dir goes too); a WebView2 `pv` of 0.0.0.0 still counts as missing.
#   killed  GuardNest killed (no handler runs) while it holds the proxy, then uninstalled:
#           the uninstaller's repair puts the values back byte for byte and removes RunOnce.
#   upgrade an older setup installed, GuardNest running, `stop --save-running` and
#           `start-again` (what the setup runs) checked byte for byte; then the newer setup
#           /S /STARTATLOGIN=1 over it while it runs: the proxy was the user's own while files
#           were replaced, GuardNest runs again from the same command line, the data dir is
#           kept, start-at-login is the app's own Run entry; the same setup again with
#           /STARTATLOGIN=0 removes it; then uninstalled.
#
# The window itself is not run (there is no WebView2 under Wine). Every wait polls a
# condition against a deadline. The transcript (the registry before, during and after each
# case, the upgrade's steps, the setup's own log) goes to $GUARDNEST_INSTALLER_LOG
# (.ci/windows.sh: target/windows-installer.log).
#
# Usage: installer.sh SETUP SETUP_FILES OLDER_SETUP OLDER_FILES WORKDIR, where *_FILES hold
# the guardnest.exe, guardnest-app.exe and WebView2Loader.dll each setup program carries;
# with GUARDNEST_WINE, GUARDNEST_WINE_STUB and GUARDNEST_WINE_TEMPLATE (the initialised
# prefix) set by .ci/windows.sh.
set -euo pipefail
export LC_ALL=C
setup=$(realpath "$1")
setup_files=$(realpath "$2")
older=$(realpath "$3")
older_files=$(realpath "$4")
work=$5
# The versions, from the names cargo xtask dist gives: GuardNest-<version>-x64-setup.exe.
version_of() { local v; v=$(basename "$1"); v=${v#GuardNest-}; printf '%s' "${v%-x64-setup.exe}"; }
new_version=$(version_of "$setup")
old_version=$(version_of "$older")
: "${GUARDNEST_WINE:?}" "${GUARDNEST_WINE_STUB:?}" "${GUARDNEST_WINE_TEMPLATE:?}"
here=$(cd "$(dirname "$0")" && pwd)
W=$GUARDNEST_WINE
wineserver_bin="${W%/*}/wineserver"
[ -x "$wineserver_bin" ] || wineserver_bin=wineserver
export WINEDEBUG=-all
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY no_proxy NO_PROXY
mkdir -p "$work"
work=$(realpath "$work")
transcript=${GUARDNEST_INSTALLER_LOG:-$work/installer.log}
: >"$transcript"
started=$(date +%s)

# --- Output --------------------------------------------------------------------------------
say() { printf '%s\n' "$*" | tee -a "$transcript"; }
ok() { say "ok: $*"; }
current=
fail() {
  say "INSTALLER TEST FAILED: $*"
  [ -n "$current" ] && say "test $current ... FAILED"
  for f in "${logs[@]}"; do
    [ -f "$f" ] || continue
    say "--- $f"
    # The setup's logs are UTF-16 (as Notepad reads them); GuardNest's are UTF-8.
    if [ "$(head -c2 "$f" | od -An -tx1 | tr -d ' ')" = fffe ]; then utf16 "$f"; else cat "$f"; fi \
      | tail -n 40 | sed 's/^/    /' | tee -a "$transcript"
  done
  exit 1
}
logs=()
# Polls COMMAND... every 0.2 s until it succeeds or SECONDS pass; fails with WHAT.
wait_until() {
  local seconds=$1 what=$2 deadline
  shift 2
  deadline=$(($(date +%s) + seconds))
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$deadline" ] || fail "$what (not after $seconds s)"
    sleep 0.2
  done
}
# Whether FILE has more than N lines containing TEXT (a condition for wait_until).
more_than() { [ "$(grep -cF -- "$2" "$1" 2>/dev/null || true)" -gt "$3" ]; }
winpath() { printf 'Z:%s' "${1//\//\\}"; }
utf16() { iconv -f UTF-16LE -t UTF-8 "$1" 2>/dev/null | sed 's/^\xef\xbb\xbf//; s/\r$//'; }

# --- Tools: the registry reader and the WinINet client, built with MinGW ------------------
tools=$work/tools
mkdir -p "$tools"
x86_64-w64-mingw32-gcc -O2 -municode -o "$tools/regdump.exe" "$here/regdump.c"
x86_64-w64-mingw32-gcc -O2 -municode -o "$tools/wininet-get.exe" "$here/wininet-get.c" -lwininet

IS='Software\Microsoft\Windows\CurrentVersion\Internet Settings'
PROXY_VALUES=("$IS\\ProxyEnable" "$IS\\ProxyServer" "$IS\\ProxyOverride" "$IS\\AutoConfigURL"
  "$IS\\Connections\\DefaultConnectionSettings")
RUNONCE='Software\Microsoft\Windows\CurrentVersion\RunOnce\org.guardnest.repair'
RUN='Software\Microsoft\Windows\CurrentVersion\Run\GuardNest'
UNINSTALL='Software\Microsoft\Windows\CurrentVersion\Uninstall\GuardNest'

regdump() { "$W" "$tools/regdump.exe" "$@" | tr -d '\r'; }
# Shows the proxy values (and the two login entries) as STAGE; leaves them in FILE.
show_registry() {
  local stage=$1 file=$2
  regdump "${PROXY_VALUES[@]}" >"$file" || fail "cannot read the registry"
  say "  registry $stage:"
  sed 's/^Software\\Microsoft\\Windows\\CurrentVersion\\/    /' "$file" | tee -a "$transcript"
  regdump "$RUNONCE" "$RUN" | sed 's/^Software\\Microsoft\\Windows\\CurrentVersion\\/    /' | tee -a "$transcript"
}
# The text of one value as regdump shows it: the string, or the DWORD in decimal.
reg_text() {
  local line
  line=$(regdump "$1")
  case "$line" in
    *"= (absent)") return 1 ;;
    *'("'*) line=${line#*(\"}; printf '%s' "${line%\")}" ;;
    *'('*')') line=${line##*(}; printf '%s' "${line%)}" ;;
  esac
}
absent() { [ "$(regdump "$1")" = "$1 = (absent)" ]; }

# --- Loopback servers on the Linux side ---------------------------------------------------
# The user's own proxy (a stand-in for a corporate one), and an upstream for tunnels.
python3 "$here/user-proxy.py" "$work/user-proxy.port" "$work/user-proxy.log" &
user_proxy=$!
up_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p "$work/www" && echo "hello from linux" >"$work/www/index.html"
python3 -m http.server --bind 127.0.0.1 --directory "$work/www" "$up_port" >/dev/null 2>&1 &
upstream=$!
guardnest=
cleanup() {
  [ -n "$guardnest" ] && kill -KILL "$guardnest" 2>/dev/null
  [ -n "${WINEPREFIX:-}" ] && "$wineserver_bin" -k 2>/dev/null
  kill "$user_proxy" "$upstream" 2>/dev/null
  true
}
trap cleanup EXIT
wait_until 10 "the user's proxy did not start" test -s "$work/user-proxy.port"
user_port=$(cat "$work/user-proxy.port")
: >"$work/user-proxy.log"
echo "0.0.0.0 evil.test" >"$work/block.hosts"
echo "0.0.0.0 added.test" >"$work/added.hosts"

# --- One case's prefix, user and data ------------------------------------------------------
# A fresh copy of the initialised prefix; the ProcessPrng stub goes into system32 (Wine 8
# has no bcryptprimitives.dll at all), so the installed files are exactly a user's.
new_prefix() {
  local name=$1
  [ -n "${WINEPREFIX:-}" ] && { "$wineserver_bin" -k 2>/dev/null || true; rm -rf "$WINEPREFIX"; }
  case_dir=$work/$name
  rm -rf "$case_dir" && mkdir -p "$case_dir"
  export WINEPREFIX=$case_dir/prefix
  cp -a "$GUARDNEST_WINE_TEMPLATE" "$WINEPREFIX"
  cp "$GUARDNEST_WINE_STUB" "$WINEPREFIX/drive_c/windows/system32/bcryptprimitives.dll"
  local user
  user=$(id -un)
  local_app="$WINEPREFIX/drive_c/users/$user/AppData/Local"
  local_app_win="C:\\users\\$user\\AppData\\Local"
  install_dir="$local_app/Programs/GuardNest"
  install_dir_win="$local_app_win\\Programs\\GuardNest"
  data_dir="$local_app/guardnest"
  start_menu="$WINEPREFIX/drive_c/users/$user/AppData/Roaming/Microsoft/Windows/Start Menu/Programs"
  temp_dir="$WINEPREFIX/drive_c/users/$user/Temp"
  gn_log="$case_dir/guardnest.log"
  logs=("$gn_log" "$install_dir/install.log" "$temp_dir/GuardNest-uninstall.log")
  say ""
  say "== case $name (prefix $WINEPREFIX)"
}

# The connection record Windows' Internet Options leaves (version 0x46, a counter, flags,
# proxy, bypass, auto-config URL, then the auto-detection state GuardNest must keep), hex.
record() {
  python3 - "$@" <<'EOF'
import struct, sys
counter, flags, proxy, bypass, url = int(sys.argv[1]), int(sys.argv[2]), *[s.encode() for s in sys.argv[3:6]]
b = struct.pack("<III", 0x46, counter, flags)
for s in (proxy, bypass, url):
    b += struct.pack("<I", len(s)) + s
b += bytes([1, 0, 0, 0, 0xC0, 0xA8, 0x01, 0x02, 0, 0, 0, 0])
print(b.hex())
EOF
}
reg_set() { "$W" reg add "HKCU\\$1" /v "$2" /t "$3" /d "$4" /f >/dev/null 2>&1 || fail "reg add $1\\$2"; }
reg_del() { "$W" reg delete "HKCU\\$1" /v "$2" /f >/dev/null 2>&1 || true; }
# The user's own settings: manual (through user-proxy.py), pac, or empty.
set_profile() {
  for v in ProxyEnable ProxyServer ProxyOverride AutoConfigURL; do reg_del "$IS" "$v"; done
  reg_del "$IS\\Connections" DefaultConnectionSettings
  case $1 in
    manual)
      reg_set "$IS" ProxyEnable REG_DWORD 1
      reg_set "$IS" ProxyServer REG_SZ "127.0.0.1:$user_port"
      reg_set "$IS" ProxyOverride REG_SZ "corp.example;<local>"
      reg_set "$IS\\Connections" DefaultConnectionSettings REG_BINARY \
        "$(record 41 3 "127.0.0.1:$user_port" "corp.example;<local>" "")"
      ;;
    pac)
      reg_set "$IS" ProxyEnable REG_DWORD 0
      reg_set "$IS" AutoConfigURL REG_SZ "http://wpad.corp.example/proxy.pac"
      reg_set "$IS\\Connections" DefaultConnectionSettings REG_BINARY \
        "$(record 12 5 "" "" "http://wpad.corp.example/proxy.pac")"
      ;;
    empty) ;;
  esac
}
# What the user has in the data dir: their allowlist, a list they added, the app's settings.
seed_data() {
  mkdir -p "$data_dir"
  printf '# Names you allowed in GuardNest, one per line.\nkept.example\n' >"$data_dir/allowlist.txt"
  printf '[{"location": "%s", "allow": false}]\n' "$(winpath "$work/added.hosts" | sed 's/\\/\\\\/g')" \
    >"$data_dir/user-lists.json"
  printf '{"listen": null, "start_at_login": false, "protection_off": false}\n' >"$data_dir/settings.json"
  (cd "$data_dir" && sha256sum allowlist.txt user-lists.json) >"$case_dir/data.sha256"
}
data_kept() {
  [ -d "$data_dir" ] || fail "the data dir $data_dir is gone"
  (cd "$data_dir" && sha256sum -c --quiet "$case_dir/data.sha256") || fail "the user's data changed"
  ok "the data dir is kept: $(cd "$data_dir" && ls | tr '\n' ' ')"
}

# --- Install, run, uninstall -------------------------------------------------------------
# Runs a setup program silently; the time it took goes to the transcript.
install() {
  local exe=$1
  shift
  local t0 t1
  t0=$(date +%s.%N)
  local code=0
  timeout 300 "$W" "$exe" /S "$@" >"$case_dir/setup.out" 2>&1 || code=$?
  [ "$code" = 0 ] || fail "$(basename "$exe") /S $* exited $code (124: still running after 300 s)"
  t1=$(date +%s.%N)
  say "  $(basename "$exe") /S $* took $(python3 -c "print(f'{$t1 - $t0:.1f}')") s; its log:"
  utf16 "$install_dir/install.log" | sed 's/^/    | /' | tee -a "$transcript"
}
# Checks the install of VERSION, whose files must be those in FILES; WEBVIEW2 says what the
# setup must have found: "missing" (Wine has none) or the version planted in the registry.
check_installed() {
  local version=$1 files_dir=$2 webview2=${3:-missing}
  local files
  files=$(cd "$install_dir" && ls | tr '\n' ' ')
  [ "$files" = "WebView2Loader.dll guardnest-app.exe guardnest.exe install.log uninstall.exe " ] \
    || fail "installed files: $files"
  for f in guardnest.exe guardnest-app.exe WebView2Loader.dll; do
    cmp -s "$install_dir/$f" "$files_dir/$f" || fail "the installed $f is not the one the setup carries"
  done
  ok "files in $install_dir_win: $files"
  local lnk="$start_menu/GuardNest.lnk"
  [ -f "$lnk" ] || fail "no Start-menu shortcut $lnk"
  python3 - "$lnk" "$install_dir_win\\guardnest-app.exe" <<'EOF' || fail "the shortcut does not start guardnest-app.exe"
import sys
data, target = open(sys.argv[1], "rb").read().lower(), sys.argv[2].lower()
sys.exit(0 if target.encode("utf-16-le") in data or target.encode() in data else 1)
EOF
  ok "Start-menu shortcut GuardNest.lnk -> $install_dir_win\\guardnest-app.exe"
  local k=$UNINSTALL q='"'
  regdump "$k\\DisplayName" "$k\\DisplayVersion" "$k\\Publisher" "$k\\DisplayIcon" "$k\\EstimatedSize" \
    "$k\\InstallLocation" "$k\\UninstallString" "$k\\QuietUninstallString" "$k\\NoModify" "$k\\NoRepair" \
    | sed 's/^.*\\Uninstall\\GuardNest\\/    /; s/, [0-9]* bytes:[0-9a-f ]*//' | tee -a "$transcript"
  [ "$(reg_text "$k\\DisplayName")" = GuardNest ] || fail "DisplayName"
  [ "$(reg_text "$k\\DisplayVersion")" = "$version" ] || fail "DisplayVersion is not $version"
  [ "$(reg_text "$k\\Publisher")" = GuardNest ] || fail "Publisher"
  [ "$(reg_text "$k\\DisplayIcon")" = "$install_dir_win\\guardnest-app.exe,0" ] || fail "DisplayIcon"
  [ "$(reg_text "$k\\InstallLocation")" = "$install_dir_win" ] || fail "InstallLocation"
  [ "$(reg_text "$k\\UninstallString")" = "$q$install_dir_win\\uninstall.exe$q" ] || fail "UninstallString"
  [ "$(reg_text "$k\\QuietUninstallString")" = "$q$install_dir_win\\uninstall.exe$q /S" ] || fail "QuietUninstallString"
  [ "$(reg_text "$k\\NoModify")" = 1 ] && [ "$(reg_text "$k\\NoRepair")" = 1 ] || fail "NoModify/NoRepair"
  local kb
  kb=$(reg_text "$k\\EstimatedSize")
  local du_kb
  du_kb=$(du -sk "$install_dir" | cut -f1)
  [ "$kb" -gt $((du_kb * 9 / 10)) ] && [ "$kb" -lt $((du_kb * 11 / 10 + 8)) ] \
    || fail "EstimatedSize $kb KB, but the folder holds $du_kb KB"
  ok "Apps & features entry HKCU\\$k: GuardNest $version, $kb KB, quiet uninstall ${q}...\\uninstall.exe$q /S"
  local sentence="GuardNest's window needs the Microsoft Edge WebView2 Runtime: install \"WebView2 Runtime\" from Microsoft (Evergreen Standalone Installer), then start GuardNest again."
  if [ "$webview2" = missing ]; then
    utf16 "$install_dir/install.log" | grep -qxF "$sentence" || fail "no WebView2 sentence in install.log"
    ok "no WebView2 runtime: the setup said so in one sentence (install.log) and installed anyway"
  else
    utf16 "$install_dir/install.log" | grep -qF "$sentence" && fail "the WebView2 sentence, with WebView2 $webview2 there"
    utf16 "$install_dir/install.log" | grep -qxF "WebView2 Runtime $webview2 found" || fail "WebView2 $webview2 not found"
    ok "WebView2 Runtime $webview2 (planted in the registry) found: no sentence"
  fi
}
# Plants what Microsoft's WebView2 installer leaves: the `pv` value of its client key.
plant_webview2() {
  "$W" reg add 'HKCU\Software\Microsoft\EdgeUpdate\Clients\{F3017226-FE2A-4295-8BDF-00C3A9A7E4C5}' \
    /v pv /d "$1" /f >/dev/null 2>&1 || fail "cannot plant WebView2's pv"
}

# Starts the installed guardnest.exe, from its installed path, as the system proxy, on the
# default data dir; waits until it holds the proxy.
start_guardnest() {
  : >>"$gn_log"
  local before
  before=$(grep -cF "system proxy set (windows)" "$gn_log" || true)
  "$W" "$install_dir_win\\guardnest.exe" run --system-proxy --listen 127.0.0.1:0 --control 127.0.0.1:0 \
    --no-default-lists --blocklist "$(winpath "$work/block.hosts")" --log-file "$(winpath "$gn_log")" \
    >>"$case_dir/guardnest.out" 2>&1 &
  guardnest=$!
  wait_until 60 "guardnest.exe never set the system proxy" more_than "$gn_log" "system proxy set (windows)" "$before"
  addr=$(grep -oE 'listening on [0-9.]+:[0-9]+' "$gn_log" | tail -n1 | cut -d' ' -f3)
  ok "the installed guardnest.exe (Linux pid $guardnest) is the system proxy, listening on $addr"
}
# Where the instance on the default data dir listens now (a restarted one binds anew).
listening() {
  "$W" "$install_dir_win\\guardnest.exe" status --json 2>/dev/null | tr -d '\r' \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["listen"])'
}
curl_checks() {
  local a=$1 body code
  body=$(curl -sS --max-time 20 --proxytunnel -x "http://$a" "http://127.0.0.1:$up_port/index.html") \
    || fail "no CONNECT tunnel through $a"
  [ "$body" = "hello from linux" ] || fail "the tunnel answered '$body'"
  code=$(curl -s --max-time 20 -o /dev/null -w '%{http_connect}' -x "http://$a" https://www.evil.test/ || true)
  [ "$code" = 403 ] || fail "CONNECT www.evil.test answered $code, not 403"
  code=$(curl -s --max-time 20 -o /dev/null -w '%{http_connect}' -x "http://$a" https://www.added.test/ || true)
  [ "$code" = 403 ] || fail "CONNECT www.added.test (the list the user added) answered $code, not 403"
  ok "Linux curl through $a: a tunnel to the loopback upstream; 403 for www.evil.test and for www.added.test (the user's added list)"
}
# A Windows program's own fetch, with the user's preconfigured settings.
wininet() {
  "$W" "$tools/wininet-get.exe" "$1" 2>/dev/null | tr -d '\r'
}
served_by_user_proxy() { wc -l <"$work/user-proxy.log" | tr -d ' '; }

# Uninstalls silently (QuietUninstallString), waiting for the uninstaller's copy in %TEMP%
# to finish: its log ends with "done", or says it removed nothing.
uninstall() {
  local t0 t1
  rm -f "$temp_dir/GuardNest-uninstall.log"
  t0=$(date +%s.%N)
  local code=0
  timeout 120 "$W" "$install_dir_win\\uninstall.exe" /S "$@" >"$case_dir/uninstall.out" 2>&1 || code=$?
  [ "$code" = 0 ] || fail "uninstall.exe /S $* exited $code"
  wait_until 120 "the uninstaller did not finish" \
    sh -c "iconv -f UTF-16LE -t UTF-8 '$temp_dir/GuardNest-uninstall.log' | grep -qE '^(done|.*nothing was removed)'"
  t1=$(date +%s.%N)
  say "  uninstall.exe /S $* took $(python3 -c "print(f'{$t1 - $t0:.1f}')") s; its log (%TEMP%\\GuardNest-uninstall.log):"
  utf16 "$temp_dir/GuardNest-uninstall.log" | sed 's/^/    | /' | tee -a "$transcript"
  utf16 "$temp_dir/GuardNest-uninstall.log" | grep -q '^done' || fail "the uninstaller removed nothing"
  none_running || fail "a GuardNest process still runs after the uninstall"
  ok "no guardnest.exe or guardnest-app.exe runs any more (Wine's process list)"
}
# After an uninstall: the proxy values as before, byte for byte, no login entries, no
# program files, no shortcut, no Apps & features entry.
check_uninstalled() {
  local before=$1
  show_registry "after the uninstall" "$case_dir/after.reg"
  diff -u "$before" "$case_dir/after.reg" | tee -a "$transcript" \
    || fail "the proxy settings are not back byte for byte"
  ok "the proxy settings are back byte for byte (${#PROXY_VALUES[@]} values)"
  absent "$RUNONCE" || fail "the RunOnce repair entry is still there"
  absent "$RUN" || fail "the start-at-login entry is still there"
  ok "no RunOnce repair entry, no start-at-login entry"
  [ ! -e "$install_dir" ] || fail "program files left: $(ls "$install_dir")"
  [ ! -e "$start_menu/GuardNest.lnk" ] || fail "the Start-menu shortcut is still there"
  regdump "$UNINSTALL\\DisplayName" | grep -q '(absent)$' || fail "the Apps & features entry is still there"
  ok "the program files, the shortcut and the Apps & features entry are gone"
}
# The GuardNest started by this script has exited (stopped by someone else), cleanly.
exited_cleanly() {
  local pid=$guardnest code=0
  wait_until 60 "guardnest.exe (pid $pid) is still running" sh -c "! kill -0 $pid"
  wait "$pid" || code=$?
  guardnest=
  [ "$code" = 0 ] || fail "guardnest.exe exited $code, not 0 (a clean stop)"
  ok "guardnest.exe (pid $pid) quit cleanly (exit 0)"
}

# How many guardnest.exe and guardnest-app.exe processes run in this prefix (Wine's own
# process list: every Windows process of this user).
guardnest_processes() {
  "$W" winedbg --command "info proc" 2>/dev/null | grep -cE "'guardnest(-app)?\.exe'" || true
}
none_running() { [ "$(guardnest_processes)" = 0 ]; }

# ===========================================================================================
# The cases (GUARDNEST_INSTALLER_CASES="manual pac empty killed upgrade" picks some)
# ===========================================================================================

# manual: a manual proxy of the user's own, a Windows program's traffic before, during, after.
case_manual() {
  new_prefix manual
  set_profile manual
  show_registry "before (the user's own: a manual proxy, user-proxy.py on 127.0.0.1:$user_port)" "$case_dir/before.reg"
  out=$(wininet http://www.evil.test/)
  say "  wininet-get http://www.evil.test/ before the install: $(echo "$out" | head -2 | tr '\n' ' ')"
  case "$out" in "status 200"*"served by the user's own proxy: GET http://www.evil.test"*) ;;
    *) fail "before the install, the Windows program did not go through the user's proxy: $out" ;; esac
  seen=$(served_by_user_proxy)
  ok "before: the Windows program (WinINet, preconfigured) went through the user's own proxy"
  seed_data
  install "$setup"
  check_installed "$new_version" "$setup_files"
  absent "$RUN" || fail "a start-at-login entry without /STARTATLOGIN=1"
  ok "start at login stays off without /STARTATLOGIN=1"
  start_guardnest
  show_registry "while the installed GuardNest is the system proxy" "$case_dir/during.reg"
  absent "$RUNONCE" && fail "no RunOnce repair entry while GuardNest holds the proxy"
  curl_checks "$addr"
  out=$(wininet http://www.evil.test/)
  say "  wininet-get http://www.evil.test/ while GuardNest is on: $(echo "$out" | head -1)"
  case "$out" in "status 403"*) ;; *) fail "the Windows program did not get GuardNest's 403: $out" ;; esac
  [ "$(served_by_user_proxy)" = "$seen" ] || fail "the user's proxy served a request while GuardNest was on"
  ok "while on: the Windows program got GuardNest's 403 for www.evil.test; the user's proxy saw nothing"
  uninstall
  exited_cleanly
  check_uninstalled "$case_dir/before.reg"
  data_kept
  out=$(wininet http://www.evil.test/)
  say "  wininet-get http://www.evil.test/ after the uninstall: $(echo "$out" | head -2 | tr '\n' ' ')"
  case "$out" in "status 200"*"served by the user's own proxy"*) ;;
    *) fail "after the uninstall, the Windows program did not go through the user's proxy: $out" ;; esac
  [ "$(served_by_user_proxy)" -gt "$seen" ] || fail "the user's proxy did not record the request"
  ok "after: the Windows program goes through the user's own proxy again (it recorded: $(tail -n1 "$work/user-proxy.log"))"

}

# pac, empty: install, run, uninstall while it runs (empty: with /REMOVEDATA).
case_profile() {
  local profile=$1
  new_prefix "$profile"
  set_profile "$profile"
  show_registry "before (the user's own: $profile)" "$case_dir/before.reg"
  seed_data
  # WebView2 as the setup looks for it: a per-user runtime (pac), or a `pv` of 0.0.0.0, what
  # an uninstalled runtime leaves (empty: still missing).
  local webview2=missing
  case $profile in
    pac) webview2=120.0.2210.91 && plant_webview2 "$webview2" ;;
    empty) plant_webview2 0.0.0.0 ;;
  esac
  install "$setup"
  check_installed "$new_version" "$setup_files" "$webview2"
  start_guardnest
  show_registry "while the installed GuardNest is the system proxy" "$case_dir/during.reg"
  curl_checks "$addr"
  if [ "$profile" = empty ]; then
    uninstall /REMOVEDATA
    exited_cleanly
    check_uninstalled "$case_dir/before.reg"
    [ ! -e "$data_dir" ] || fail "/REMOVEDATA left $data_dir"
    ok "/REMOVEDATA: the data dir is gone too"
  else
    uninstall
    exited_cleanly
    check_uninstalled "$case_dir/before.reg"
    data_kept
  fi
}

# killed: GuardNest killed while it holds the proxy, then uninstalled.
case_killed() {
  new_prefix killed
  set_profile manual
  show_registry "before (the user's own: a manual proxy)" "$case_dir/before.reg"
  seed_data
  install "$setup"
  start_guardnest
  show_registry "while the installed GuardNest is the system proxy" "$case_dir/during.reg"
  kill -KILL "$guardnest"
  wait "$guardnest" 2>/dev/null || true
  guardnest=
  show_registry "after GuardNest was killed (nothing restored it)" "$case_dir/killed.reg"
  cmp -s "$case_dir/during.reg" "$case_dir/killed.reg" || fail "the registry changed when GuardNest was killed"
  absent "$RUNONCE" && fail "no RunOnce repair entry after the kill"
  ok "killed: the proxy settings still point at the dead GuardNest; the RunOnce repair is registered"
  uninstall
  check_uninstalled "$case_dir/before.reg"
  data_kept
}

# upgrade: an older setup, GuardNest running, the newer setup over it.
case_upgrade() {
  new_prefix upgrade
  set_profile manual
  show_registry "before (the user's own: a manual proxy)" "$case_dir/before.reg"
  seed_data
  install "$older"
  check_installed "$old_version" "$older_files"
  start_guardnest
  first_addr=$addr
  show_registry "while the older install's GuardNest is the system proxy" "$case_dir/during.reg"
  curl_checks "$addr"

  say "  -- what the setup runs: guardnest stop --all --save-running FILE, then start-again FILE"
  out=$("$W" "$install_dir_win\\guardnest.exe" stop --all --save-running "$(winpath "$case_dir/running.txt")" 2>&1) \
    || fail "guardnest stop --all --save-running: $out"
  say "  guardnest stop said: $(echo "$out" | tr -d '\r' | tr '\n' ' ')"
  exited_cleanly
  show_registry "after guardnest stop" "$case_dir/stopped.reg"
  diff -u "$case_dir/before.reg" "$case_dir/stopped.reg" | tee -a "$transcript" \
    || fail "guardnest stop did not put the proxy settings back byte for byte"
  absent "$RUNONCE" || fail "the RunOnce repair outlived guardnest stop"
  ok "stop: the proxy settings are the user's own, byte for byte; no RunOnce"
  say "  saved command lines: $(tr -d '\r' <"$case_dir/running.txt" | tr '\n' ' ')"
  marks=$(grep -cF "system proxy set (windows)" "$gn_log" || true)
  # Into a file, not a pipe: the GuardNest it starts may hold on to its parent's output.
  timeout 60 "$W" "$install_dir_win\\guardnest.exe" start-again "$(winpath "$case_dir/running.txt")" \
    >"$case_dir/start-again.out" 2>&1 || fail "guardnest start-again: $(cat "$case_dir/start-again.out")"
  say "  guardnest start-again said: $(tr -d '\r' <"$case_dir/start-again.out" | tr '\n' ' ')"
  wait_until 60 "start-again did not start GuardNest as the system proxy again" \
    more_than "$gn_log" "system proxy set (windows)" "$marks"
  addr=$(listening) || fail "no GuardNest answers status after start-again"
  show_registry "after start-again" "$case_dir/again.reg"
  cmp -s "$case_dir/before.reg" "$case_dir/again.reg" && fail "start-again did not make GuardNest the system proxy"
  curl_checks "$addr"
  ok "start-again: GuardNest runs again from its command line (now on $addr), as the system proxy"

  say "  -- the newer setup over the older install, while GuardNest runs (/S /STARTATLOGIN=1)"
  marks=$(grep -cF "system proxy set (windows)" "$gn_log" || true)
  install "$setup" /STARTATLOGIN=1
  check_installed "$new_version" "$setup_files"
  log=$(utf16 "$install_dir/install.log")
  want="proxy settings with no GuardNest running: ProxyEnable=1 ProxyServer=127.0.0.1:$user_port AutoConfigURL="
  grep -qxF "$want" <<<"$log" || fail "while files were replaced the proxy was not the user's own (install.log)"
  ok "upgrade: GuardNest was stopped before the files were replaced; the proxy was the user's own meanwhile"
  grep -q 'start-again' <<<"$log" || fail "the setup did not start GuardNest again"
  wait_until 60 "GuardNest did not run again after the upgrade" \
    more_than "$gn_log" "system proxy set (windows)" "$marks"
  addr=$(listening) || fail "no GuardNest answers status after the upgrade"
  show_registry "after the upgrade (GuardNest started again)" "$case_dir/upgraded.reg"
  cmp -s "$case_dir/before.reg" "$case_dir/upgraded.reg" && fail "after the upgrade GuardNest is not the system proxy"
  curl_checks "$addr"
  ok "upgrade: $old_version -> $new_version; GuardNest runs again on $addr (was $first_addr), from the same command line"
  data_kept
  login=$(reg_text "$RUN" || true)
  say "  start at login (HKCU\\...\\Run\\GuardNest): ${login:-(absent)}"
  [ "$login" = "\"$install_dir_win\\guardnest-app.exe\" --hidden" ] \
    || fail "/STARTATLOGIN=1 did not set the app's start-at-login entry"
  python3 -c 'import json,sys; sys.exit(0 if json.load(open(sys.argv[1]))["start_at_login"] is True else 1)' \
    "$data_dir/settings.json" || fail "the app's settings.json does not say start_at_login: true"
  ok "/STARTATLOGIN=1: the app's own start-at-login entry, and its settings.json says so"

  say "  -- the same setup again, /S /STARTATLOGIN=0, while GuardNest runs"
  marks=$(grep -cF "system proxy set (windows)" "$gn_log" || true)
  install "$setup" /STARTATLOGIN=0
  check_installed "$new_version" "$setup_files"
  absent "$RUN" || fail "/STARTATLOGIN=0 left the start-at-login entry"
  python3 -c 'import json,sys; sys.exit(0 if json.load(open(sys.argv[1]))["start_at_login"] is False else 1)' \
    "$data_dir/settings.json" || fail "the app's settings.json does not say start_at_login: false"
  wait_until 60 "GuardNest did not run again after the reinstall" \
    more_than "$gn_log" "system proxy set (windows)" "$marks"
  ok "/STARTATLOGIN=0: the entry is gone and settings.json says so; GuardNest runs again"
  uninstall
  check_uninstalled "$case_dir/before.reg"
  data_kept
}

# Each case is reported as cargo test reports a test, so `cargo xtask test` counts them.
say "     Running .ci/windows/installer.sh (the setup program under Wine)"
for c in ${GUARDNEST_INSTALLER_CASES:-manual pac empty killed upgrade}; do
  current=$c
  case $c in
    manual) case_manual ;;
    pac | empty) case_profile "$c" ;;
    killed) case_killed ;;
    upgrade) case_upgrade ;;
    *) fail "no case $c" ;;
  esac
  say "test $c ... ok"
done

say ""
say "INSTALLER OK ($(( $(date +%s) - started )) s; setup $(du -h "$setup" | cut -f1), transcript $transcript)"
