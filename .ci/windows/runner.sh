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
exec "${GUARDNEST_WINE:-wine}" "$exe" "$@"
