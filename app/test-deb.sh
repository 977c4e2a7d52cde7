#!/usr/bin/env bash
# Packaging test: builds the .deb with the Tauri bundler, installs it with dpkg, and checks
# that GuardNest is in the application menu, starts, and serves (through the installed
# app's proxy a blocked name gets 403). Runs in a throwaway HOME; needs root for dpkg.
#
#   app/test-deb.sh            (TAURI_CLI=/path/to/tauri to use an installed tauri-cli)
set -euo pipefail
cd "$(dirname "$0")/.."

tauri=${TAURI_CLI:-}
if [ -z "$tauri" ]; then
  cli=$(mktemp -d)
  npm install --no-save --no-audit --no-fund --prefix "$cli" @tauri-apps/cli@2.12.5 >/dev/null
  tauri="$cli/node_modules/.bin/tauri"
fi
(cd app/src-tauri && "$tauri" build --bundles deb)
deb=$(ls target/release/bundle/deb/*.deb | head -n1)
echo "built $deb"

dpkg -i "$deb" || { apt-get install -f -y -qq && dpkg -i "$deb"; }
test -x /usr/bin/guardnest-app
grep -q '^Name=GuardNest' /usr/share/applications/GuardNest.desktop
grep -q '^Exec=guardnest-app' /usr/share/applications/GuardNest.desktop
echo "installed: /usr/bin/guardnest-app and the GuardNest menu entry"

home=$(mktemp -d)
mkdir -p "$home/data/guardnest" "$home/run"
chmod 700 "$home/run"
printf '0.0.0.0 evil.test\n' > "$home/block.hosts"
cat > "$home/data/guardnest/config.toml" <<CONF
[proxy]
listen = "127.0.0.1:0"
[blocklist]
sources = ["$home/block.hosts"]
default_lists = false
CONF
log="$home/app.log"
env -i PATH="$PATH" HOME="$home" XDG_DATA_HOME="$home/data" XDG_CONFIG_HOME="$home/config" \
  XDG_RUNTIME_DIR="$home/run" GSETTINGS_BACKEND=dconf NO_AT_BRIDGE=1 RUST_LOG=info \
  dbus-run-session -- xvfb-run -a -s '-screen 0 1024x768x24' /usr/bin/guardnest-app 2>"$log" >/dev/null &
runner=$!
cleanup() { kill "$runner" 2>/dev/null || true; pkill -f /usr/bin/guardnest-app 2>/dev/null || true; }
trap cleanup EXIT

addr=
for _ in $(seq 1 600); do
  addr=$(sed -n 's/.*listening on \([0-9.:]*\).*/\1/p' "$log" | head -n1)
  [ -n "$addr" ] && break
  sleep 0.1
done
[ -n "$addr" ] || { echo "the installed app never started serving:"; cat "$log"; exit 1; }
code=$(curl -s -o /dev/null -w '%{http_connect}' -x "http://$addr" https://www.evil.test/ || true)
[ "$code" = 403 ] || { echo "expected 403 through the installed app, got $code"; exit 1; }
echo "deb: installed app serves on $addr and blocks (403)"
dpkg -r guard-nest >/dev/null
