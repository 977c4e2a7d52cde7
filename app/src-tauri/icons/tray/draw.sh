#!/bin/sh
# Draws the tray's icons, one per state, as 64x64 PNGs with real pixels (ImageMagick's
# /usr/bin/convert): a shield in the state's colour with its sign. tray.rs embeds them.
#   on            green, a check mark: blocking
#   paused        amber, two bars: paused, back on by itself
#   off           grey, a bar: protection off (or another GuardNest runs)
#   unprotected   red, an exclamation mark: running, but nothing is blocked
set -eu
cd "$(dirname "$0")"
C=/usr/bin/convert
SHIELD="path 'M32 3 L58 12 L56 37 L32 61 L8 37 L6 12 Z'"
shield() { $C -size 64x64 xc:none -fill "$1" -stroke '#ffffff' -strokewidth 2 -draw "$SHIELD" "$2"; }
shield '#1f6f4a' on.png
$C on.png -fill none -stroke '#ffffff' -strokewidth 7 -draw "stroke-linecap round stroke-linejoin round polyline 19,32 29,42 46,22" on.png
shield '#b07800' paused.png
$C paused.png -fill '#ffffff' -stroke none -draw "rectangle 22,19 28,45" -draw "rectangle 36,19 42,45" paused.png
shield '#6b7570' off.png
$C off.png -fill '#ffffff' -stroke none -draw "rectangle 18,29 46,35" off.png
shield '#b3261e' unprotected.png
$C unprotected.png -fill '#ffffff' -stroke none -draw "rectangle 29,14 35,38" -draw "rectangle 29,43 35,49" unprotected.png
# No metadata that changes from run to run (the PNGs are committed).
for f in on paused off unprotected; do $C "$f.png" -strip -define png:exclude-chunks=date,time "PNG32:$f.png"; done
