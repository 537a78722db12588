#!/usr/bin/env bash
# Prometheus for tests and CI: install Debian's prometheus (the server and promtool) when it is
# missing. Tests start their own throwaway Prometheus on a free loopback port with a config they
# write (proxy-host/test/support/prometheus.ts); the packaged system service is stopped.
#
#   bash scripts/prometheus.sh install    installs prometheus (as root) unless `prometheus` is found
#   bash scripts/prometheus.sh path       prints the prometheus binary, exit 1 if there is none
#   bash scripts/prometheus.sh promtool   prints the promtool binary, exit 1 if there is none
set -euo pipefail
# shellcheck source=lib/debian-tool.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/debian-tool.sh"

find_in() {
  local name=$1
  if command -v "$name" >/dev/null 2>&1; then command -v "$name"; return 0; fi
  for candidate in "/usr/bin/$name" "/usr/local/bin/$name" "/usr/sbin/$name"; do
    if [ -x "$candidate" ]; then echo "$candidate"; return 0; fi
  done
  return 1
}
find_prometheus() { find_in prometheus; }
find_promtool() { find_in promtool; }

cmd="${1:-}"
case "$cmd" in
  install)
    install_from_debian prometheus prometheus find_prometheus 'put prometheus and promtool on PATH'
    find_promtool >/dev/null || { echo "prometheus is installed but promtool is not on PATH" >&2; exit 1; }
    ;;
  path)
    find_prometheus
    ;;
  promtool)
    find_promtool
    ;;
  *)
    sed -n '2,9p' "$0" >&2
    exit 2
    ;;
esac
