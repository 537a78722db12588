#!/usr/bin/env bash
# Chromium for the console's browser tests: install Debian's chromium when no Chromium or Chrome is
# found. The tests drive it with puppeteer-core (headless, loopback only).
#
#   bash scripts/chromium.sh install      installs chromium (as root) unless one is found
#   bash scripts/chromium.sh path         prints the browser binary, exit 1 if there is none
set -euo pipefail
# shellcheck source=lib/debian-tool.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/debian-tool.sh"

find_chromium() {
  if [ -n "${CHROMIUM_PATH:-}" ] && [ -x "$CHROMIUM_PATH" ]; then echo "$CHROMIUM_PATH"; return 0; fi
  for name in chromium chromium-browser google-chrome-stable google-chrome; do
    if command -v "$name" >/dev/null 2>&1; then command -v "$name"; return 0; fi
  done
  for candidate in /usr/bin/chromium /usr/lib/chromium/chromium /usr/bin/chromium-browser; do
    if [ -x "$candidate" ]; then echo "$candidate"; return 0; fi
  done
  return 1
}

cmd="${1:-}"
case "$cmd" in
  install)
    install_from_debian chromium chromium find_chromium 'set CHROMIUM_PATH'
    ;;
  path)
    find_chromium
    ;;
  *)
    sed -n '2,7p' "$0" >&2
    exit 2
    ;;
esac
