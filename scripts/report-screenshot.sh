#!/usr/bin/env bash
# Renders a drift report in headless Chromium and saves a screenshot, to look at it as a user
# would. Runs the demo (small) into a scratch directory, then screenshots its last report.
#
#   scripts/report-screenshot.sh [OUTPUT.png]     (default docs/report.png)
#
# Needs Debian's chromium (apt-get install chromium). Fails if the page does not render.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-docs/report.png}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/driftline/target}"
command -v chromium >/dev/null || { echo "chromium is not installed: apt-get install chromium" >&2; exit 1; }
cargo build --release -q -p driftline
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
"$CARGO_TARGET_DIR/release/driftline" demo --data-dir "$scratch" --predictions 30000 | tee "$scratch/demo.txt" | grep -E "day [0-9]|report"
report="$(sed -n 's/.*report of the last run: //p' "$scratch/demo.txt")"
[ -f "$report" ] || { echo "the demo printed no report" >&2; exit 1; }
timeout 120 chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1200,2000 \
  --screenshot="$PWD/$out" "file://$report" 2>/dev/null
# A blank page compresses to a few kilobytes; a rendered report with charts is far larger.
size=$(stat -c %s "$out")
[ "$size" -gt 50000 ] || { echo "the screenshot is only $size bytes: the page did not render" >&2; exit 1; }
echo "screenshot: $out ($size bytes)"
