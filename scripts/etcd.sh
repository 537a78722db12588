#!/usr/bin/env bash
# etcd for tests and CI: install Debian's etcd-server when etcd is missing, and start a throwaway
# etcd on free loopback ports in a temporary directory.
#
#   bash scripts/etcd.sh install          installs etcd-server (as root) unless `etcd` is on PATH
#   bash scripts/etcd.sh start [DIR]      starts etcd in the background with its data in DIR (default:
#                                         a new temp dir), waits until it is healthy, and prints
#                                           ETCD_URL=http://127.0.0.1:<port>
#                                           ETCD_PID=<pid>
#                                           ETCD_DIR=<dir>
#                                         (eval-able); the log is <dir>/etcd.log
#   bash scripts/etcd.sh stop PID [DIR]   stops that etcd and removes DIR
#   bash scripts/etcd.sh path             prints the etcd binary, exit 1 if there is none
set -euo pipefail
# shellcheck source=lib/debian-tool.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/debian-tool.sh"

find_etcd() {
  if command -v etcd >/dev/null 2>&1; then command -v etcd; return 0; fi
  for candidate in /usr/bin/etcd /usr/local/bin/etcd; do
    if [ -x "$candidate" ]; then echo "$candidate"; return 0; fi
  done
  return 1
}


cmd="${1:-}"
case "$cmd" in
  install)
    install_from_debian etcd etcd-server find_etcd 'put etcd on PATH' etcd
    ;;
  start)
    bin="$(find_etcd)" || { echo "etcd not found: run 'bash scripts/etcd.sh install' first" >&2; exit 1; }
    dir="${2:-$(mktemp -d -t wasmesh-etcd.XXXXXX)}"
    mkdir -p "$dir"
    client_port="$(free_port)"
    peer_port="$(free_port)"
    while [ "$peer_port" = "$client_port" ]; do peer_port="$(free_port)"; done
    url="http://127.0.0.1:${client_port}"
    # Debian's etcd 3.4 wants ETCD_UNSUPPORTED_ARCH on some architectures; harmless elsewhere.
    ETCD_UNSUPPORTED_ARCH="$(uname -m | sed 's/x86_64/amd64/;s/aarch64/arm64/')" \
    nohup "$bin" \
      --name wasmesh-test \
      --data-dir "$dir/data" \
      --listen-client-urls "$url" \
      --advertise-client-urls "$url" \
      --listen-peer-urls "http://127.0.0.1:${peer_port}" \
      --initial-advertise-peer-urls "http://127.0.0.1:${peer_port}" \
      --initial-cluster "wasmesh-test=http://127.0.0.1:${peer_port}" \
      --max-txn-ops 4096 \
      --max-request-bytes 8388608 \
      >"$dir/etcd.log" 2>&1 </dev/null &
    pid=$!
    for _ in $(seq 1 100); do
      if ! kill -0 "$pid" 2>/dev/null; then
        echo "etcd exited during startup; log follows" >&2
        cat "$dir/etcd.log" >&2
        exit 1
      fi
      if node -e 'fetch(process.argv[1]+"/health").then(r=>r.json()).then(j=>process.exit(j.health==="true"?0:1),()=>process.exit(1))' "$url" 2>/dev/null; then
        echo "ETCD_URL=$url"
        echo "ETCD_PID=$pid"
        echo "ETCD_DIR=$dir"
        exit 0
      fi
      sleep 0.1
    done
    echo "etcd did not become healthy within 10s; log follows" >&2
    cat "$dir/etcd.log" >&2
    kill "$pid" 2>/dev/null || true
    exit 1
    ;;
  stop)
    pid="${2:?usage: etcd.sh stop PID [DIR]}"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    if [ -n "${3:-}" ]; then rm -rf "$3"; fi
    ;;
  path)
    find_etcd
    ;;
  *)
    sed -n '2,13p' "$0" >&2
    exit 2
    ;;
esac
