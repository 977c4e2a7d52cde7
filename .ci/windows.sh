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

# Wine makes windows only on an X display, and a Windows session always has one: the
# end-of-session window (WM_ENDSESSION) is tested for real. Without a display of our own,
# the whole script runs again under Xvfb (installed by `cargo xtask test`).
if [ -z "${DISPLAY:-}" ] && [ -z "${GUARDNEST_WINDOWS_XVFB:-}" ] && command -v xvfb-run >/dev/null; then
  GUARDNEST_WINDOWS_XVFB=1 exec xvfb-run -a -s "-screen 0 1024x768x24" bash "$0" "$@"
fi
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
command -v python3 >/dev/null || need+=(python3)   # the end-to-end step's loopback upstream
command -v curl >/dev/null || need+=(curl)
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
export GUARDNEST_WINESERVER=$wineserver_bin
cleanup() {
  "$wineserver_bin" -k 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER="$root/.ci/windows/runner.sh"
# No debug info and no incremental state: the Windows build is linked by mingw's ld, for
# which DWARF is most of the work, and a CI build is built once.
export CARGO_PROFILE_DEV_DEBUG="${CARGO_PROFILE_DEV_DEBUG:-0}" CARGO_PROFILE_TEST_DEBUG="${CARGO_PROFILE_TEST_DEBUG:-0}"
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
failures=()
step_time() { echo "   ($(( $(date +%s) - $1 )) s)"; }

# --- 1. The test suite under Wine ---------------------------------------------------------
# Every test that runs on Linux runs here too, or is reported "ignored" with the precise
# Wine limit (a `platform limit:` reason); tests/windows.rs is the system proxy for real.
say "1. tests: cargo test --target $target -p guardnest-sysproxy -p guardnest-core -p guardnest-cli (Wine is the runner)"
t=$(date +%s)
log="$work/tests.log"
# tests/windows.rs writes the registry values before, during and after each step here.
export GUARDNEST_REGISTRY_LOG="$root/target/windows-registry.log"
mkdir -p "$root/target" && : >"$GUARDNEST_REGISTRY_LOG"
if ! cargo test --target "$target" --no-fail-fast -p guardnest-sysproxy -p guardnest-core -p guardnest-cli \
     -- --test-threads="${GUARDNEST_WINE_TEST_THREADS:-2}" 2>&1 | tee "$log"; then
  failures+=("the Windows test suite")
fi
step_time "$t"

# --- 2. guardnest.exe end to end, from Linux ----------------------------------------------
say "2. guardnest.exe run under Wine, driven from Linux (curl, the CLI, Ctrl-C)"
t=$(date +%s)
if ! bash .ci/windows/e2e.sh "$root/target/$target/debug/guardnest.exe" "$work/e2e"; then
  failures+=("guardnest.exe end to end (.ci/windows/e2e.sh)")
fi
step_time "$t"

# --- 3. clippy for Windows, the desktop app included --------------------------------------
# The OS layer, where the Windows code lives (the only crate that calls Windows): every
# warning fails, tests included. Core, CLI and the app: every warning fails too, except the
# workspace's newer stricter lints (Cargo.toml [workspace.lints]) that their code does not
# meet yet on any platform (the Linux build warns the same): not Windows findings.
say "3. cargo clippy --target $target -D warnings (sysproxy with its tests; core, cli and the desktop app)"
t=$(date +%s)
if ! cargo clippy -q --target "$target" -p guardnest-sysproxy --all-targets -- -D warnings; then
  failures+=("clippy for $target (guardnest-sysproxy)")
fi
not_yet=(-A clippy::redundant_closure_for_method_calls -A clippy::semicolon_if_nothing_returned
  -A clippy::needless_pass_by_value -A clippy::manual_let_else -A unused_qualifications -A missing_docs)
if ! cargo clippy -q --target "$target" -p guardnest-core -p guardnest-cli -p guardnest-app -- -D warnings "${not_yet[@]}"; then
  failures+=("clippy for $target (core, cli, app)")
fi
step_time "$t"

# --- 4. The NSIS installer -----------------------------------------------------------------
# Tried only with GUARDNEST_WINDOWS_NSIS=1: it is a release build of the app for Windows
# (several minutes), and offline it stops at the bundler's download (README, "Windows").
if [ -n "${GUARDNEST_WINDOWS_NSIS:-}" ]; then
  say "4. NSIS installer: tauri build --target $target --bundles nsis"
  t=$(date +%s)
  if [ ! -x /tmp/tauri/node_modules/.bin/tauri ]; then
    npm install --prefix /tmp/tauri @tauri-apps/cli@2 >/dev/null 2>&1 || echo "cannot install the Tauri CLI with npm"
  fi
  if (cd app/src-tauri && /tmp/tauri/node_modules/.bin/tauri build --target "$target" --bundles nsis); then
    ls -l "target/$target/release/bundle/nsis/"
  else
    failures+=("the NSIS installer (GUARDNEST_WINDOWS_NSIS=1)")
  fi
  step_time "$t"
else
  say "4. NSIS installer: not tried (GUARDNEST_WINDOWS_NSIS=1 tries it; see the README's Windows section)"
fi

# --- Summary ------------------------------------------------------------------------------
passed=$(grep -Ec '^test .* \.\.\. ok$' "$log" || true)
ignored=$(grep -Ec '^test .* \.\.\. ignored' "$log" || true)
failed=$(grep -Ec '^test .* \.\.\. FAILED' "$log" || true)
say "summary: Windows tests under Wine: $passed passed, $ignored ignored, $failed failed; $(( $(date +%s) - started )) s in all"
grep -E '^test .* \.\.\. ignored' "$log" | sed -E 's/^test ([^ ]+) +\.\.\. ignored[,]? ?/    ignored: \1: /' || true
grep -E '^test .* \.\.\. FAILED' "$log" | sed 's/^test /    FAILED: /' || true
echo "    registry values before/during/after: target/windows-registry.log"
if [ ${#failures[@]} -gt 0 ]; then
  printf 'FAILED: %s\n' "${failures[@]}"
  exit 1
fi
echo "windows: ok"
