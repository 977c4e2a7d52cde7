#!/usr/bin/env bash
# macOS, compiled from Linux: clippy -D warnings for aarch64-apple-darwin on every crate that
# runs on macOS (the OS layer with its tests, the core, the CLI, the desktop app). Nothing is
# linked or run: there is no macOS here (README, "What runs where").
#
# The C dependencies, aws-lc-sys (rustls' crypto, through reqwest) and rquickjs-sys (QuickJS,
# the core's PAC engine; it ships its bindings for this target), need a C compiler with
# macOS's libc headers; Apple's SDK cannot be had here, so zig's clang, which ships those
# headers, compiles them (`ziglang` from PyPI, installed with pip when missing). Every other
# dependency of these crates is Rust.
#
# Exits non-zero on any failure; with CI=true a missing tool is a failure too.
set -euo pipefail
cd "$(dirname "$0")/.."
target=aarch64-apple-darwin
ci=false
case "${CI:-}" in "" | 0 | false) ;; *) ci=true ;; esac
unavailable() {
  echo "!!! macOS CHECK NOT RUN: $*" >&2
  if $ci; then exit 1; fi
  echo "SKIPPED: $*"
  exit 0
}

rustup target add "$target" >/dev/null 2>&1 || rustup target list --installed | grep -qx "$target" \
  || unavailable "cannot add the rust target $target"
if ! python3 -m ziglang version >/dev/null 2>&1; then
  echo "== macos: installing zig (the C compiler for aws-lc-sys) with pip: ziglang"
  python3 -m pip install --quiet ziglang >/dev/null 2>&1 || python3 -m pip install --quiet --break-system-packages ziglang \
    || unavailable "cannot install ziglang with pip"
fi
export CC_aarch64_apple_darwin="$PWD/.ci/macos/cc" AR_aarch64_apple_darwin="$PWD/.ci/macos/ar"
echo "== macos: zig $(python3 -m ziglang version) as the C compiler for $target"

started=$(date +%s)
failures=()
echo "== macos: cargo clippy --target $target -p guardnest-sysproxy --all-targets -D warnings"
cargo clippy -q --locked --target "$target" -p guardnest-sysproxy --all-targets -- -D warnings \
  || failures+=("guardnest-sysproxy")
echo "== macos: cargo clippy --target $target -p guardnest-core -p guardnest-cli -p guardnest-app -D warnings"
cargo clippy -q --locked --target "$target" -p guardnest-core -p guardnest-cli -p guardnest-app -- -D warnings \
  2> >(grep -v '^warning: aws-lc-sys@' >&2) || failures+=("guardnest-core, guardnest-cli, guardnest-app")
echo "== macos: $(( $(date +%s) - started )) s"
if [ ${#failures[@]} -gt 0 ]; then
  printf 'FAILED: clippy for %s: %s\n' "$target" "${failures[@]}"
  exit 1
fi
echo "macos: ok (compiled, not run)"
