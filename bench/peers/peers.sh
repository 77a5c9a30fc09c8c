#!/usr/bin/env bash
# The bench's peers: Debian's nginx (a TLS proxy_cache) and Caddy (a TLS +
# HTTP/3 file_server), installed when missing and run in the foreground
# from a scratch directory (Debian's packages never start on install here).
#
#   peers.sh install               install nginx and caddy when missing (apt-get)
#   peers.sh nginx CONF DIR        exec nginx with CONF, prefix DIR, no daemon
#   peers.sh caddy CADDYFILE DIR   exec caddy with CADDYFILE, HOME and XDG dirs in DIR
#
# `outpost bench` renders nginx.conf / Caddyfile from this directory into its
# scratch directory and starts the peers through this script, so the peer's
# PID is the script's (exec). Run a peer by hand the same way, e.g.
#   bash bench/peers/peers.sh nginx /tmp/outpost-bench/hit-throughput/nginx/nginx.conf \
#        /tmp/outpost-bench/hit-throughput/nginx
set -euo pipefail

case "${1:-}" in
install)
    missing=()
    command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
    command -v caddy >/dev/null 2>&1 || missing+=(caddy)
    if [ ${#missing[@]} -eq 0 ]; then
        echo "peers: nginx and caddy are installed"
        exit 0
    fi
    sudo=()
    if [ "$(id -u)" != 0 ]; then
        command -v sudo >/dev/null 2>&1 || { echo "peers: need root (or sudo) to install ${missing[*]}" >&2; exit 1; }
        sudo=(sudo -n)
    fi
    echo "peers: installing ${missing[*]} (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    echo "peers: installed ${missing[*]}"
    ;;
nginx)
    conf=$2 dir=$3
    mkdir -p "$dir/tmp" "$dir/cache"
    PATH="$PATH:/usr/sbin"
    exec nginx -p "$dir" -c "$conf" -e "$dir/error.log" -g 'daemon off;'
    ;;
caddy)
    conf=$2 dir=$3
    mkdir -p "$dir/home" "$dir/data" "$dir/config"
    export HOME="$dir/home" XDG_DATA_HOME="$dir/data" XDG_CONFIG_HOME="$dir/config"
    exec caddy run --config "$conf" --adapter caddyfile
    ;;
*)
    echo "usage: $0 install | nginx CONF DIR | caddy CADDYFILE DIR" >&2
    exit 2
    ;;
esac
