#!/usr/bin/env bash
# Redis for tests, CI and the global rate-limit service: install Debian's redis-server when it is
# missing, and start a throwaway redis on a free loopback port in a temporary directory.
#
#   bash scripts/redis.sh install          installs redis-server (as root) unless `redis-server` is found
#   bash scripts/redis.sh start [DIR] [PORT]
#                                          starts redis in the background (no persistence, loopback
#                                          only, protected mode) with its files in DIR (default: a new
#                                          temp dir) on PORT (default: a free one), waits until it
#                                          answers PING, and prints
#                                            REDIS_URL=redis://127.0.0.1:<port>
#                                            REDIS_PID=<pid>
#                                            REDIS_DIR=<dir>
#                                          (eval-able); the log is <dir>/redis.log
#   bash scripts/redis.sh stop PID [DIR]   stops that redis and removes DIR
#   bash scripts/redis.sh path             prints the redis-server binary, exit 1 if there is none
set -euo pipefail
# shellcheck source=lib/debian-tool.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/debian-tool.sh"

find_redis() {
  if command -v redis-server >/dev/null 2>&1; then command -v redis-server; return 0; fi
  for candidate in /usr/bin/redis-server /usr/local/bin/redis-server /usr/sbin/redis-server; do
    if [ -x "$candidate" ]; then echo "$candidate"; return 0; fi
  done
  return 1
}


cmd="${1:-}"
case "$cmd" in
  install)
    install_from_debian redis-server redis-server find_redis 'put redis-server on PATH'
    ;;
  start)
    bin="$(find_redis)" || { echo "redis-server not found: run 'bash scripts/redis.sh install' first" >&2; exit 1; }
    dir="${2:-$(mktemp -d -t wasmesh-redis.XXXXXX)}"
    mkdir -p "$dir"
    port="${3:-$(free_port)}"
    nohup "$bin" \
      --bind 127.0.0.1 \
      --port "$port" \
      --protected-mode yes \
      --dir "$dir" \
      --save '' \
      --appendonly no \
      --daemonize no \
      --logfile "$dir/redis.log" \
      >/dev/null 2>&1 </dev/null &
    pid=$!
    for _ in $(seq 1 100); do
      if ! kill -0 "$pid" 2>/dev/null; then
        echo "redis exited during startup; log follows" >&2
        cat "$dir/redis.log" >&2 || true
        exit 1
      fi
      # PING in RESP over a plain socket: no redis-cli needed.
      if node -e 'const s=require("net").connect(+process.argv[1],"127.0.0.1");s.on("data",d=>process.exit(String(d).startsWith("+PONG")?0:1));s.on("error",()=>process.exit(1));s.write("PING\r\n")' "$port" 2>/dev/null; then
        echo "REDIS_URL=redis://127.0.0.1:${port}"
        echo "REDIS_PID=$pid"
        echo "REDIS_DIR=$dir"
        exit 0
      fi
      sleep 0.1
    done
    echo "redis did not answer PING within 10s; log follows" >&2
    cat "$dir/redis.log" >&2 || true
    kill "$pid" 2>/dev/null || true
    exit 1
    ;;
  stop)
    pid="${2:?usage: redis.sh stop PID [DIR]}"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    if [ -n "${3:-}" ]; then rm -rf "$3"; fi
    ;;
  path)
    find_redis
    ;;
  *)
    sed -n '2,16p' "$0" >&2
    exit 2
    ;;
esac
