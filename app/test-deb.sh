#!/usr/bin/env bash
# Packaging test: builds the .deb with the Tauri bundler, installs it with dpkg, and checks
# that GuardNest is in the application menu, starts, and serves (through the installed
# app's proxy a blocked name gets 403). Runs in a throwaway HOME; needs root for dpkg.
# Then, as a throwaway user with GNOME proxy settings of their own: `dpkg -r` while the app
# holds the system proxy, and again after the app was killed holding it, leaves that user's
# settings exactly as they were and no login entry pointing at the removed program.
#
#   app/test-deb.sh            (TAURI_CLI=/path/to/tauri to use an installed tauri-cli;
#                               GUARDNEST_DEB=FILE to test a .deb already built)
set -euo pipefail
cd "$(dirname "$0")/.."

deb=${GUARDNEST_DEB:-}
if [ -z "$deb" ]; then
  tauri=${TAURI_CLI:-}
  if [ -z "$tauri" ]; then
    cli=$(mktemp -d)
    npm install --no-save --no-audit --no-fund --prefix "$cli" @tauri-apps/cli@2.12.5 >/dev/null
    tauri="$cli/node_modules/.bin/tauri"
  fi
  (cd app/src-tauri && "$tauri" build --bundles deb)
  deb=$(ls target/release/bundle/deb/*.deb | head -n1)
  echo "built $deb"
fi

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
test -x /usr/bin/guardnest
/usr/bin/guardnest --version
kill "$runner" 2>/dev/null || true
wait "$runner" 2>/dev/null || true

# --- Uninstalling never leaves anyone offline --------------------------------------------
user="gntest$$"
useradd -m -s /bin/sh "$user"
uhome=$(getent passwd "$user" | cut -d: -f6)
urun=$(mktemp -d /tmp/gnrun.XXXXXX)
chown "$user" "$urun"
chmod 700 "$urun"
trap 'cleanup; pkill -KILL -u "$user" 2>/dev/null || true; userdel -r "$user" 2>/dev/null || true; rm -rf "$urun"' EXIT
as_user() {
  runuser -u "$user" -- env -i PATH="$PATH" HOME="$uhome" XDG_RUNTIME_DIR="$urun" XDG_CURRENT_DESKTOP=GNOME \
    GSETTINGS_BACKEND=dconf NO_AT_BRIDGE=1 RUST_LOG=info "$@"
}
keys="org.gnome.system.proxy mode;org.gnome.system.proxy ignore-hosts;org.gnome.system.proxy.http host;org.gnome.system.proxy.http port;org.gnome.system.proxy.https host;org.gnome.system.proxy.https port"
settings() {
  as_user dbus-run-session -- sh -c "$(echo "$keys" | tr ';' '\n' | sed 's/^/gsettings get /' | paste -sd';')" 2>/dev/null
}
as_user dbus-run-session -- sh -c "gsettings set org.gnome.system.proxy.http host 'corp-proxy.example'; \
  gsettings set org.gnome.system.proxy.http port 8123; \
  gsettings set org.gnome.system.proxy ignore-hosts \"['corp.example', 'localhost']\"; \
  gsettings set org.gnome.system.proxy mode 'manual'" 2>/dev/null
before=$(settings)
echo "the user's own settings: $(echo "$before" | paste -sd' ')"
udata="$uhome/.local/share/guardnest"
as_user mkdir -p "$udata"
printf '0.0.0.0 evil.test\n' > "$uhome/block.hosts"
cat > "$udata/config.toml" <<CONF
[proxy]
listen = "127.0.0.1:0"
[control]
listen = "127.0.0.1:0"
[blocklist]
sources = ["$uhome/block.hosts"]
default_lists = false
CONF
chown -R "$user" "$udata" "$uhome/block.hosts"

# Starts the installed app as the user, in a desktop session, until it holds the system proxy.
start_app() {
  : > "$uhome/app.log"
  chown "$user" "$uhome/app.log"
  as_user dbus-run-session -- xvfb-run -a -s '-screen 0 1024x768x24' /usr/bin/guardnest-app \
    2>>"$uhome/app.log" >/dev/null &
  for _ in $(seq 1 600); do
    grep -q 'system proxy set' "$uhome/app.log" && break
    sleep 0.1
  done
  grep -q 'system proxy set' "$uhome/app.log" || { echo "the app never set the system proxy:"; cat "$uhome/app.log"; exit 1; }
  [ "$(settings)" != "$before" ] || { echo "the system proxy did not change"; exit 1; }
}
app_pid() {
  for proc in /proc/[0-9]*; do
    if [ "$(readlink "$proc/exe" 2>/dev/null)" = /usr/bin/guardnest-app ]; then echo "${proc#/proc/}"; fi
  done
}
check_after_remove() {
  [ ! -e /usr/bin/guardnest-app ] || { echo "the program is still installed"; exit 1; }
  [ -z "$(app_pid)" ] || { echo "the app still runs after dpkg -r"; exit 1; }
  after=$(settings)
  [ "$after" = "$before" ] || { echo "the user's settings were not put back ($1):"; echo "before: $before"; echo "after:  $after"; exit 1; }
  for e in org.guardnest.repair.desktop GuardNest.desktop; do
    [ ! -e "$uhome/.config/autostart/$e" ] || { echo "a login entry for the removed program is left ($1): $e"; exit 1; }
  done
  echo "deb: $1: dpkg -r put the user's settings back exactly and left no login entry"
}

# Case 1: removed while the app runs and holds the system proxy.
start_app
dpkg -r guard-nest
check_after_remove "removed while running"

# Case 2: the app was killed holding the system proxy (its login repair entry is there),
# then the package is removed.
dpkg -i "$deb" >/dev/null
start_app
as_user dbus-run-session -- /usr/bin/guardnest-app start-at-login on --data-dir "$udata" 2>/dev/null
pid=$(app_pid)
kill -KILL $pid
for _ in $(seq 1 100); do [ -z "$(app_pid)" ] && break; sleep 0.1; done
[ -f "$uhome/.config/autostart/org.guardnest.repair.desktop" ] || { echo "no login repair entry after the kill"; exit 1; }
[ "$(settings)" != "$before" ] || { echo "the kill left nothing to repair"; exit 1; }
dpkg -r guard-nest
check_after_remove "removed after the app was killed holding the proxy"
