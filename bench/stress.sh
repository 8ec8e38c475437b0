#!/usr/bin/env bash
# The stress test of issue 12, as a new user would run it: the release shortener on SQLite
# with SHORTENER_MAX_MEMORY=96MiB; 20,000 links created with URLs of 30 to 230 bytes by 16
# concurrent clients; then `wrk -t1 -c64` random redirects, 10 s at a time, against the
# shortener and against nginx's `return 302` with the same wrk script on the same machine, in
# rounds that alternate which goes first; then 35 s idle and a manual trim. Prints one
# Markdown row: RSS idle, peak, 35 s after the load and after the trim (MiB, and the ratio to
# idle), each redirect run's req/s and p99, nginx's, the medians' ratio, and the verdict
# against the issue's targets.
#
#   bash bench/stress.sh LABEL
#   STRESS_THREADS=2 bash bench/stress.sh LABEL
#   STRESS_ENV="MALLOC_CONF=narenas:2 SHORTENER_DB_MAX_CONNECTIONS=8" bash bench/stress.sh LABEL
#   STRESS_CHHOTO=/path/to/chhoto-url bash bench/stress.sh chhoto-url
#
# STRESS_CHHOTO measures a chhoto-url binary (built outside this repository, from its
# checkout's backend/; it is run from the checkout, where its frontend/ is) instead of the
# shortener, under the same load: SQLite in WAL mode, 7-character random codes, 307 redirects;
# it has no trim, so that column and the verdict are left empty.
#
# How the rate and p99 are judged: STRESS_ROUNDS (3) rounds of one 10 s run of each server,
# the shortener first in odd rounds and nginx first in even ones, so that a drift of the
# machine's speed during the runs falls on both alike. The rate is the median of the
# shortener's runs over the median of nginx's, and the p99 the median of the shortener's
# runs' p99s (nginx's median p99 is printed beside it). On this machine two 10 s runs of
# one server a minute apart differ by up to 18 %, so a single run of either side, or the
# slower of two runs of one side against one run of the other, mostly measures that noise
# (docs/service-memory.md, "Judging the rate"). Three rounds keep the shortener's load
# (30 s) near the issue's 2 x 10 s, after which the memory targets are judged; with five
# rounds (50 s) the RSS after a trim was 1.15-1.20x idle in four -t2 runs of four.
#
# Each server gets one worker (nginx `worker_processes 1`, SHORTENER_WORKERS=1): with wrk on
# the other core, a second worker would only trade the server's core between two threads.
# STRESS_THREADS is wrk's -t (1); STRESS_ENV is added to the shortener's environment (jemalloc
# reads `MALLOC_CONF`); STRESS_LINKS (20000) and STRESS_AFTER (35 s) change the scenario. The
# shortener's /api/v1/memory/stats after the load and after the trim are written to
# $STRESS_OUT (default /tmp) as stats-LABEL.json and stats-trim-LABEL.json. Everything
# listens on 127.0.0.1 and is stopped, its files removed, on any exit.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
source bench/lib.sh
label=${1:?usage: bash bench/stress.sh LABEL}
threads=${STRESS_THREADS:-1}
rounds=${STRESS_ROUNDS:-3}
[[ $rounds =~ ^[1-9][0-9]*$ ]] || { echo "STRESS_ROUNDS is a number of rounds, 1 or more (got '$rounds')" >&2; exit 2; }
links=${STRESS_LINKS:-20000}
after=${STRESS_AFTER:-35}
out=${STRESS_OUT:-/tmp}
# The issue's targets.
readonly MAX_AFTER_RATIO=1.3 MAX_TRIM_RATIO=1.15 MAX_PEAK_MIB=48 MAX_P99_MS=4
min_nginx_ratio=0.8
((threads == 1)) || min_nginx_ratio=0.9
for tool in wrk nginx python3 curl; do
  command -v "$tool" >/dev/null || { echo "$tool is missing (apt-get install wrk nginx-light curl)" >&2; exit 1; }
done
peer=${STRESS_CHHOTO:-}
if [[ -z $peer ]]; then
  cargo build --release -q -p shortener
fi

dir=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

port=$(free_port)
if [[ -n $peer ]]; then
  key=stress-$RANDOM$RANDOM$RANDOM
  export STRESS_CHHOTO_KEY=$key
  (cd "$(dirname "$peer")/../../.." && exec env CHHOTO_LISTEN_ADDRESS=127.0.0.1 CHHOTO_LISTEN_PORT="$port" \
    CHHOTO_DB_URL="$dir/links.db" CHHOTO_API_KEY="$key" CHHOTO_SLUG_STYLE=UID CHHOTO_SLUG_LENGTH=7 \
    CHHOTO_REDIRECT_METHOD=TEMPORARY CHHOTO_SQLITE_USE_WAL_MODE=True RUST_LOG=warn "$peer") >"$dir/server.log" 2>&1 &
  ready=/api/version
else
  # shellcheck disable=SC2086 # STRESS_ENV is a list of NAME=value words
  env SHORTENER_WORKERS=1 ${STRESS_ENV:-} SHORTENER_LISTEN="127.0.0.1:$port" DATABASE_URL="sqlite:$dir/links.db" \
    SHORTENER_MAX_MEMORY=96MiB SHORTENER_ADMIN_TOKEN=stress RUST_LOG=warn target/release/shortener >"$dir/server.log" 2>&1 &
  ready=/healthz
fi
shortener=$!
pids+=("$shortener")
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port$ready" >/dev/null && break; sleep 0.1; done
curl -sf "http://127.0.0.1:$port$ready" >/dev/null || { cat "$dir/server.log" >&2; exit 1; }

nginx_port=$(free_port)
mkdir -p "$dir/nginx"
cat >"$dir/nginx/nginx.conf" <<EOC
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
EOC
nginx -c "$dir/nginx/nginx.conf" -g 'daemon off;' &
pids+=($!)

sleep 5
idle=$(rss_kib "$shortener")
(
  peak=0
  while kill -0 "$shortener" 2>/dev/null; do
    now=$(rss_kib "$shortener" 2>/dev/null || echo 0)
    [ "${now:-0}" -gt "$peak" ] && peak=$now && echo "$peak" >"$dir/peak"
    sleep 0.2
  done
) &
pids+=($!)

python3 bench/stress_create.py "$port" "$links" >"$dir/codes.txt"
# One wrk run of random codes against $1; sets RPS and P99 (ms).
redirects() {
  local result
  result=$(STRESS_CODES="$dir/codes.txt" wrk "-t$threads" -c64 -d10s --latency -s bench/stress_codes.lua "$1")
  RPS=$(awk '/Requests\/sec/ { printf "%.0f", $2 }' <<<"$result")
  P99=$(to_ms "$(awk '/ 99%/ { print $2 }' <<<"$result")")
}
ours=() ours_p99=() theirs=() theirs_p99=()
for ((round = 1; round <= rounds; round++)); do
  order=(shortener nginx)
  ((round % 2)) || order=(nginx shortener)
  for server in "${order[@]}"; do
    if [[ $server == shortener ]]; then
      redirects "http://127.0.0.1:$port/"
      ours+=("$RPS") ours_p99+=("$P99")
    else
      redirects "http://127.0.0.1:$nginx_port/"
      theirs+=("$RPS") theirs_p99+=("$P99")
    fi
  done
done
sleep "$after"
settled=$(rss_kib "$shortener")
if [[ -z $peer ]]; then
  admin=(-s -H "Authorization: Bearer stress")
  curl "${admin[@]}" "http://127.0.0.1:$port/api/v1/memory/stats" >"$out/stats-$label.json"
  curl "${admin[@]}" -X POST "http://127.0.0.1:$port/api/v1/memory/trim" >/dev/null
  sleep 2
  trimmed=$(rss_kib "$shortener")
  curl "${admin[@]}" "http://127.0.0.1:$port/api/v1/memory/stats" >"$out/stats-trim-$label.json"
fi
peak=$(cat "$dir/peak")

after_ratio=$(ratio "$settled" "$idle")
ours_median=$(median "${ours[@]}") theirs_median=$(median "${theirs[@]}")
nginx_ratio=$(ratio "$ours_median" "$theirs_median")
p99=$(median "${ours_p99[@]}") theirs_p99=$(median "${theirs_p99[@]}")
# runs_of RATES P99S MEDIAN_RPS MEDIAN_P99: "RPS (P99 ms)" for each run of one server, then its medians.
runs_of() {
  local -n rates=$1 p99s=$2
  local i text=""
  for i in "${!rates[@]}"; do text+="${text:+, }${rates[i]} (${p99s[i]})"; done
  echo "$text; median $3 ($4 ms)"
}
row="| $label | -t$threads | $(mib "$idle") | $(mib "$peak") | $(mib "$settled") (${after_ratio}x)"
runs="$(runs_of ours ours_p99 "$ours_median" "$p99") | $(runs_of theirs theirs_p99 "$theirs_median" "$theirs_p99") | ${nginx_ratio}x"
if [[ -n $peer ]]; then
  echo "$row | — | $runs | — |"
  exit 0
fi
trim_ratio=$(ratio "$trimmed" "$idle")
# The verdict compares the measured values, not the rounded ones printed.
failed=$(awk -v idle="$idle" -v settled="$settled" -v trimmed="$trimmed" -v peak="$peak" \
  -v ours="$ours_median" -v theirs="$theirs_median" -v p99="$p99" -v min_nginx="$min_nginx_ratio" \
  -v max_after="$MAX_AFTER_RATIO" -v max_trim="$MAX_TRIM_RATIO" -v max_peak="$MAX_PEAK_MIB" \
  -v max_p99="$MAX_P99_MS" 'BEGIN {
    if (settled / idle > max_after) f = f " after>" max_after "x"
    if (trimmed / idle > max_trim) f = f " trim>" max_trim "x"
    if (peak / 1024 > max_peak) f = f " peak>" max_peak "MiB"
    if (ours / theirs < min_nginx) f = f " redirect<" min_nginx "x-nginx"
    if (p99 > max_p99) f = f " p99>" max_p99 "ms"
    print f
  }')
echo "$row | $(mib "$trimmed") (${trim_ratio}x) | $runs | ${failed:+FAIL:}${failed:-PASS} |"
