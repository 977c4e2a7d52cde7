#!/usr/bin/env bash
# Renders every ```mermaid block in docs/*.md (and the README) to SVG with mermaid-cli and
# the machine's Chromium; a block with bad syntax fails the run, naming file and line.
# Needs: chromium (apt), npm. Installs @mermaid-js/mermaid-cli into a cache dir once.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cache=${MERMAID_CLI_DIR:-$HOME/.cache/guardnest-mermaid-cli}
chromium=$(command -v chromium || command -v chromium-browser || true)
[ -n "$chromium" ] || { echo "check-diagrams: chromium not found (apt-get install chromium)" >&2; exit 1; }
if [ ! -x "$cache/node_modules/.bin/mmdc" ]; then
  mkdir -p "$cache"
  (cd "$cache" && PUPPETEER_SKIP_DOWNLOAD=1 npm install --silent --no-audit --no-fund @mermaid-js/mermaid-cli@11 >/dev/null)
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
printf '{"executablePath":"%s","args":["--no-sandbox","--disable-gpu"]}\n' "$chromium" > "$work/puppeteer.json"

# Extract blocks: one .mmd per block, named after file and starting line.
n=0
for md in "$root"/docs/*.md "$root"/README.md; do
  awk -v out="$work" -v base="$(basename "$md" .md)" '
    /^```mermaid[[:space:]]*$/ { inblock = 1; start = NR; file = sprintf("%s/%s-L%d.mmd", out, base, start); next }
    /^```[[:space:]]*$/ && inblock { inblock = 0; close(file); next }
    inblock { print > file }
  ' "$md"
done
status=0
for mmd in "$work"/*.mmd; do
  [ -e "$mmd" ] || continue
  n=$((n + 1))
  name=$(basename "$mmd" .mmd)
  if ! "$cache/node_modules/.bin/mmdc" -q -p "$work/puppeteer.json" -i "$mmd" -o "$work/$name.svg" >"$work/$name.log" 2>&1; then
    echo "check-diagrams: $name: invalid mermaid" >&2
    sed -n '1,15p' "$work/$name.log" >&2
    status=1
  fi
done
echo "check-diagrams: $n diagrams checked"
exit $status
