#!/usr/bin/env bash
# iptables for the injection tests: the init container's rules are run for real in a throwaway network
# namespace (orchestrator/test/inject-iptables.test.ts), which needs root, iptables and ip.
#
#   bash scripts/iptables.sh install   installs Debian's iptables and iproute2 (as root) when missing;
#                                      without root it says so and exits 0 (that test is then skipped)
set -euo pipefail

case "${1:-}" in
  install)
    if command -v iptables >/dev/null 2>&1 && command -v ip >/dev/null 2>&1; then
      echo "iptables present: $(command -v iptables) ($(iptables --version 2>/dev/null | head -n1))"
      exit 0
    fi
    if [ "$(id -u)" != "0" ]; then
      echo "iptables or ip is missing and this is not root: the kernel-level injection test will be skipped" >&2
      exit 0
    fi
    echo "installing iptables and iproute2 from Debian" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq iptables iproute2 >&2
    echo "iptables installed: $(command -v iptables)"
    ;;
  *)
    echo "usage: bash scripts/iptables.sh install" >&2
    exit 2
    ;;
esac
