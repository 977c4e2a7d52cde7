#!/usr/bin/env bash
# The Windows setup program's size and its silent install and uninstall times under Wine,
# for BENCHMARKS.md ("The Windows setup program").
#
#   bench/windows-setup.sh SETUP.exe [RUNS]      (default 5 runs)
#
# Each run: a fresh copy of the Wine prefix .ci/windows.sh caches (run that once first), the
# ProcessPrng stub in its system32 (Wine 8 lacks it), then `SETUP /S` timed until it exits,
# and `uninstall.exe /S` timed until its log says "done" (the uninstaller finishes in a copy
# of itself, after the one started has exited). Nothing runs in the prefix meanwhile.
# Prints the setup's size, the size of what it installs, and each run's times, then the median.
set -euo pipefail
setup=$(realpath "$1")
runs=${2:-5}
wine=/usr/lib/wine/wine64
[ -x "$wine" ] || wine=$(command -v wine)
cache=${GUARDNEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/guardnest}
template="$cache/wine-prefix-$("$wine" --version | tr -c 'a-zA-Z0-9.\n' _)"
stub="$cache/bcryptprimitives.dll"
[ -f "$template/.guardnest-ready" ] && [ -s "$stub" ] || { echo "run .ci/windows.sh once first (it caches the prefix and the stub)" >&2; exit 2; }
export WINEDEBUG=-all
work=$(mktemp -d /tmp/guardnest-setup-bench.XXXXXX)
cleanup() { [ -n "${WINEPREFIX:-}" ] && "${wine%/*}/wineserver" -k 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
now() { date +%s.%N; }
user=$(id -un)

printf 'setup: %s, %s bytes (%.1f MiB)\n' "$(basename "$setup")" "$(stat -c %s "$setup")" \
  "$(echo "$(stat -c %s "$setup") / 1048576" | bc -l)"
installs=()
uninstalls=()
for i in $(seq 1 "$runs"); do
  export WINEPREFIX="$work/prefix"
  rm -rf "$WINEPREFIX"
  cp -a "$template" "$WINEPREFIX"
  cp "$stub" "$WINEPREFIX/drive_c/windows/system32/bcryptprimitives.dll"
  "$wine" cmd /c ver >/dev/null 2>&1   # wineserver up and the prefix loaded, outside the timing
  dir="$WINEPREFIX/drive_c/users/$user/AppData/Local/Programs/GuardNest"
  t0=$(now)
  timeout 300 "$wine" "$setup" /S
  t1=$(now)
  [ -f "$dir/uninstall.exe" ] || { echo "run $i: nothing installed" >&2; exit 1; }
  [ "$i" = 1 ] && echo "installed: $(du -sk "$dir" | cut -f1) KiB in $(cd "$dir" && ls | tr '\n' ' ')"
  ulog="$WINEPREFIX/drive_c/users/$user/Temp/GuardNest-uninstall.log"
  t2=$(now)
  timeout 120 "$wine" "C:\\users\\$user\\AppData\\Local\\Programs\\GuardNest\\uninstall.exe" /S
  deadline=$(($(date +%s) + 120))
  until iconv -f UTF-16LE -t UTF-8 "$ulog" 2>/dev/null | grep -q '^done'; do
    [ "$(date +%s)" -lt "$deadline" ] || { echo "run $i: the uninstaller did not finish" >&2; exit 1; }
    sleep 0.05
  done
  t3=$(now)
  [ ! -e "$dir" ] || { echo "run $i: files left" >&2; exit 1; }
  installs+=("$(echo "$t1 - $t0" | bc -l)")
  uninstalls+=("$(echo "$t3 - $t2" | bc -l)")
  printf 'run %d: install %.2f s, uninstall %.2f s\n' "$i" "${installs[-1]}" "${uninstalls[-1]}"
  "${wine%/*}/wineserver" -k 2>/dev/null || true
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
printf 'median of %d: install %.2f s, uninstall %.2f s\n' "$runs" "$(median "${installs[@]}")" "$(median "${uninstalls[@]}")"
