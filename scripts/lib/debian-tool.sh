# Shared by scripts/etcd.sh, redis.sh and chromium.sh (sourced, not run): a free loopback port, and
# installing a Debian package when its binary is missing.

free_port() {
  node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{process.stdout.write(String(s.address().port)+"\n");s.close()})'
}

# install_from_debian LABEL PACKAGE FIND_FUNCTION HINT [SERVICE]: prints where the binary is when FIND_FUNCTION
# finds it; otherwise, as root, installs PACKAGE (no recommends) and finds it again; not root, says how
# (HINT: what else the user may do) and fails. SERVICE (default PACKAGE): the system service to stop.
install_from_debian() {
  local label=$1 package=$2 find=$3 hint=$4 service=${5:-$2} bin
  if bin="$("$find")"; then
    echo "$label present: $bin ($("$bin" --version 2>/dev/null | head -n1))"
    return 0
  fi
  if [ "$(id -u)" != "0" ]; then
    echo "$label is missing and this is not root: install it with 'apt-get install -y $package' (Debian) or $hint" >&2
    return 1
  fi
  echo "installing $package from Debian" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends "$package" >&2
  # Packages that enable a system service: tests start their own, so stop it if it started.
  if command -v systemctl >/dev/null 2>&1; then systemctl stop "$service" >/dev/null 2>&1 || true; fi
  if command -v service >/dev/null 2>&1; then service "$service" stop >/dev/null 2>&1 || true; fi
  bin="$("$find")" || { echo "$package installed, but no $label binary found" >&2; return 1; }
  echo "$label installed: $bin"
}
