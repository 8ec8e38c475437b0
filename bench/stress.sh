#!/usr/bin/env bash
# The stress test of issue 12, as a new user would run it: the release shortener on SQLite
# with SHORTENER_MAX_MEMORY=96MiB; 20,000 links created with URLs of 30 to 230 bytes by 16
# concurrent clients; then `wrk -t1 -c64` random redirects for 2 x 10 s, with nginx's
# `return 302` measured in between on the same machine; then 35 s idle and a manual trim.
# Prints one Markdown row: RSS idle, peak, 35 s after the load and after the trim (MiB, and
# the ratio to idle), each redirect run's req/s and p99, nginx's req/s.
#
#   bash bench/stress.sh LABEL
#   STRESS_ENV="MALLOC_CONF=narenas:1 SHORTENER_DB_MAX_CONNECTIONS=2" bash bench/stress.sh LABEL
#
# STRESS_ENV is added to the shortener's environment (jemalloc reads `MALLOC_CONF`); STRESS_LINKS (20000) and STRESS_AFTER (35 s) change the
# scenario. The allocator figures of /api/v1/memory/stats after the load and after the trim
# are written to $STRESS_OUT (default /tmp) as stats-LABEL.json and stats-trim-LABEL.json.
# Everything listens on 127.0.0.1 and is stopped, its files removed, on any exit.
set -euo pipefail
cd "$(dirname "$0")/.."
label=${1:?usage: bash bench/stress.sh LABEL}
links=${STRESS_LINKS:-20000}
after=${STRESS_AFTER:-35}
out=${STRESS_OUT:-/tmp}
for tool in wrk nginx python3 curl; do
  command -v "$tool" >/dev/null || { echo "$tool is missing (apt-get install wrk nginx curl)" >&2; exit 1; }
done
cargo build --release -q -p shortener
bin=target/release/shortener

dir=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
rss() { awk '/^VmRSS/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

port=$(free_port)
# shellcheck disable=SC2086 # STRESS_ENV is a list of NAME=value words
env ${STRESS_ENV:-} SHORTENER_LISTEN="127.0.0.1:$port" DATABASE_URL="sqlite:$dir/links.db" \
  SHORTENER_MAX_MEMORY=96MiB SHORTENER_ADMIN_TOKEN=stress RUST_LOG=warn "$bin" >"$dir/shortener.log" 2>&1 &
shortener=$!
pids+=("$shortener")
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
curl -sf "http://127.0.0.1:$port/healthz" >/dev/null || { cat "$dir/shortener.log" >&2; exit 1; }

nginx_port=$(free_port)
mkdir -p "$dir/nginx"
cat >"$dir/nginx/nginx.conf" <<EOF
worker_processes 1;
pid $dir/nginx/nginx.pid;
error_log $dir/nginx/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $dir/nginx; proxy_temp_path $dir/nginx; fastcgi_temp_path $dir/nginx;
  uwsgi_temp_path $dir/nginx; scgi_temp_path $dir/nginx;
  server { listen 127.0.0.1:$nginx_port; location / { return 302 https://example.com/; } }
}
EOF
nginx -c "$dir/nginx/nginx.conf" -g 'daemon off;' &
pids+=($!)

sleep 5
idle=$(rss "$shortener")
(
  peak=0
  while kill -0 "$shortener" 2>/dev/null; do
    now=$(awk '/^VmRSS/ { print $2 }' "/proc/$shortener/status" 2>/dev/null || echo 0)
    [ "${now:-0}" -gt "$peak" ] && peak=$now && echo "$peak" >"$dir/peak"
    sleep 0.2
  done
) &
pids+=($!)

python3 bench/stress_create.py "$port" "$links" >"$dir/codes.txt"
redirects() {
  local result
  result=$(STRESS_CODES="$dir/codes.txt" wrk -t1 -c64 -d10s --latency -s bench/stress_codes.lua "$1")
  awk '/Requests\/sec/ { rps = $2 } / 99%/ { p99 = $2 } END { printf "%.0f (p99 %s)", rps, p99 }' <<<"$result"
}
first=$(redirects "http://127.0.0.1:$port/")
nginx=$(redirects "http://127.0.0.1:$nginx_port/")
second=$(redirects "http://127.0.0.1:$port/")
sleep "$after"
settled=$(rss "$shortener")
admin=(-s -H "Authorization: Bearer stress")
curl "${admin[@]}" "http://127.0.0.1:$port/api/v1/memory/stats" >"$out/stats-$label.json"
curl "${admin[@]}" -X POST "http://127.0.0.1:$port/api/v1/memory/trim" >/dev/null
sleep 2
trimmed=$(rss "$shortener")
curl "${admin[@]}" "http://127.0.0.1:$port/api/v1/memory/stats" >"$out/stats-trim-$label.json"
peak=$(awk '{ printf "%.1f", $1 / 1024 }' "$dir/peak")
echo "| $label | $idle | $peak | $settled ($(ratio "$settled" "$idle")x) | $trimmed ($(ratio "$trimmed" "$idle")x) | $first, $second | $nginx |"
