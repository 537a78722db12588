#!/usr/bin/env bash
# The tools the proxy and mesh benchmarks drive, from Debian: nginx (the reference proxy), wrk
# (closed-loop load), hey (open-loop load at a fixed rate), openssl (certificates for the nginx mTLS
# pair) and taskset (util-linux; CPU pinning). Idempotent: installs only what is missing.
#
#   bash scripts/bench-tools.sh install   installs the missing ones (as root: apt-get)
#   bash scripts/bench-tools.sh check     lists each tool with its path; exit 1 if one is missing
#   bash scripts/bench-tools.sh path TOOL prints the tool's path; exit 1 if it is missing
set -euo pipefail

# tool:Debian package (nginx lives in /usr/sbin, not always on a user's PATH).
TOOLS=(nginx:nginx wrk:wrk hey:hey openssl:openssl taskset:util-linux)

find_tool() {
  if command -v "$1" >/dev/null 2>&1; then command -v "$1"; return 0; fi
  for dir in /usr/sbin /usr/bin /usr/local/bin /usr/local/sbin; do
    if [ -x "$dir/$1" ]; then echo "$dir/$1"; return 0; fi
  done
  return 1
}

missing_packages() {
  local entry
  for entry in "${TOOLS[@]}"; do
    find_tool "${entry%%:*}" >/dev/null || echo "${entry#*:}"
  done
}

cmd="${1:-}"
case "$cmd" in
  install)
    mapfile -t packages < <(missing_packages)
    if [ "${#packages[@]}" -eq 0 ]; then
      echo "bench tools present: nginx wrk hey openssl taskset"
      exit 0
    fi
    if [ "$(id -u)" != "0" ]; then
      echo "missing: ${packages[*]}; this is not root: run 'sudo apt-get install -y ${packages[*]}' (Debian)" >&2
      exit 1
    fi
    echo "installing ${packages[*]} from Debian" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends "${packages[@]}" >&2
    # Debian's nginx package starts a system nginx on port 80; the benchmarks start their own.
    if command -v systemctl >/dev/null 2>&1; then systemctl stop nginx >/dev/null 2>&1 || true; fi
    mapfile -t still < <(missing_packages)
    if [ "${#still[@]}" -ne 0 ]; then
      echo "still missing after apt-get install: ${still[*]}" >&2
      exit 1
    fi
    echo "bench tools installed: ${packages[*]}"
    ;;
  check)
    status=0
    for entry in "${TOOLS[@]}"; do
      tool="${entry%%:*}"
      if bin="$(find_tool "$tool")"; then echo "$tool: $bin"; else echo "$tool: missing (Debian package ${entry#*:})"; status=1; fi
    done
    exit "$status"
    ;;
  path)
    find_tool "${2:?usage: bench-tools.sh path TOOL}"
    ;;
  *)
    echo "usage: bash scripts/bench-tools.sh install|check|path TOOL" >&2
    exit 2
    ;;
esac
