#!/usr/bin/env bash
# Cargo's runner for x86_64-pc-windows-gnu (CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER):
# runs a Windows executable under Wine, in the prefix .ci/windows.sh prepared, with Wine's
# debug output off and the ProcessPrng stub beside the executable (and beside guardnest.exe,
# one directory up from the test binaries in deps/, which the CLI tests start).
set -euo pipefail
exe=$1
shift
: "${WINEPREFIX:?WINEPREFIX is not set: run the Windows tests through .ci/windows.sh}"
: "${GUARDNEST_WINE_STUB:?GUARDNEST_WINE_STUB (the built bcryptprimitives.dll) is not set}"
export WINEPREFIX WINEDEBUG=-all
dir=$(dirname "$exe")
cp -u "$GUARDNEST_WINE_STUB" "$dir/bcryptprimitives.dll"
if [ "$(basename "$dir")" = deps ]; then
  cp -u "$GUARDNEST_WINE_STUB" "$dir/../bcryptprimitives.dll"
fi
# A test binary that printed nothing at all and failed never reached its main (libtest
# prints "running N tests" first): seen once in CI, logind.exe exiting 1 without a word, a
# start-up failure of Wine's. Such a run is tried once more, and said so loudly; a binary
# that printed anything is never run again, so a failing test still fails.
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for attempt in 1 2; do
  set +e
  "${GUARDNEST_WINE:-wine}" "$exe" "$@" | tee "$out"
  rc=${PIPESTATUS[0]}
  set -e
  if [ "$rc" = 0 ] || [ -s "$out" ] || [ "$attempt" = 2 ]; then
    exit "$rc"
  fi
  echo "!!! Wine ran $(basename "$exe") but it printed nothing and exited $rc (it never reached its main): running it once more" >&2
done
