#!/usr/bin/env bash
# The PAC engine comparison behind the choice of QuickJS (BENCHMARKS.md, "PAC evaluation"):
# a baseline binary, rquickjs and boa_engine, each a release build of its own (one at a
# time), with the same helper functions (crates/guardnest-core/src/pac_utils.js) and the
# same script (script.js). Prints build seconds, binary bytes, and µs per evaluation: cold
# (engine, helpers, script and one call) and warm (one call on a loaded script).
set -euo pipefail
cd "$(dirname "$0")"
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2}
for c in hello quick boa; do
  start=$(date +%s.%N)
  (cd "$c" && cargo build --release -q)
  end=$(date +%s.%N)
  echo "$c: build $(echo "$end - $start" | bc) s, binary $(stat -c %s "$c/target/release/$c") bytes"
  "./$c/target/release/$c"
done
