#!/usr/bin/env bash
# The README's picture of a report page: the digits example end to end (its validate writes report.html), then
# the page as headless Chromium renders it, into docs/report.png. Needs scripts/setup.sh first.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="${1:-$(mktemp -d /tmp/digits-report.XXXXXX)}"
bash "$root/examples/digits/run.sh" "$work"
mkdir -p "$root/docs"
python3 "$root/scripts/screenshot.py" "$work/multiclass/report.html" "$root/docs/report.png"
