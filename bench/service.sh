#!/usr/bin/env bash
# Benchmarks the shortener on this machine and appends the results to docs/benchmarks.md.
#
# Usage: bash bench/service.sh
#   BENCH_DURATION=15s  length of each measured wrk run
#   BENCH_RUNS=3        runs per measurement; the table shows their median
#   BENCH_THREADS=2 BENCH_CONNECTIONS=64   wrk -t / -c
#   BENCH_WARMUP=5s     untimed pass over every code before the redirect runs
#   BENCH_LINKS=20000   links seeded into PostgreSQL for the redirect runs
#   BENCH_SETTLE=5      seconds between seeding and the idle RSS reading
#   BENCH_AFTER_LOAD=30 seconds between the last load and the final RSS reading
#   BENCH_RESULTS=docs/benchmarks.md   where the results are appended
#   BENCH_STRESS_RUNS=3 runs of the stress case (bench/stress.sh: SQLite, links created by 16
#                       clients, random redirects, then idle) with wrk -t1 and again with -t2;
#                       0 skips it
#   BENCH_CHHOTO=/path/to/chhoto-url  a chhoto-url binary (built outside this repository from
#                       its checkout's backend/): the stress case is run once against it too,
#                       with each wrk thread count, in the same table
#   DATABASE_URL=postgres://...        use this server (a fresh database in it)
#                                      instead of a throwaway PostgreSQL cluster
# Quick smoke run that leaves docs/ alone:
#   BENCH_DURATION=2s BENCH_RUNS=1 BENCH_RESULTS=/tmp/bench.md bash bench/service.sh
#
# Everything listens on 127.0.0.1 only. Everything the script starts (nginx, the shortener,
# PostgreSQL, the RSS sampler) is stopped and its temp files removed on any exit.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly ROOT
readonly BENCH_DIR="$ROOT/bench"
# shellcheck source=bench/lib.sh
source "$BENCH_DIR/lib.sh"

readonly DURATION=${BENCH_DURATION:-15s}
readonly RUNS=${BENCH_RUNS:-3}
readonly THREADS=${BENCH_THREADS:-2}
readonly CONNECTIONS=${BENCH_CONNECTIONS:-64}
readonly WARMUP=${BENCH_WARMUP:-5s}
readonly LINKS=${BENCH_LINKS:-20000}
readonly SETTLE=${BENCH_SETTLE:-5}
readonly AFTER_LOAD=${BENCH_AFTER_LOAD:-30}
readonly STRESS_RUNS=${BENCH_STRESS_RUNS:-3}
RESULTS=${BENCH_RESULTS:-$ROOT/docs/benchmarks.md}
readonly RESULTS

readonly BIN="$ROOT/target/release/shortener"
readonly PG_BIN=${BENCH_PG_BIN:-/usr/lib/postgresql/15/bin}
readonly NGINX=${BENCH_NGINX:-/usr/sbin/nginx}
# The memory limit the shortener is told about: this machine has no cgroup limit.
readonly MAX_MEMORY=96MiB
# chhoto-url's redirect throughput quoted in the issue (measured elsewhere, so indicative only).
readonly CHHOTO_REFERENCE=18600
# Targets from the issue.
readonly TARGET_NGINX_RATIO=0.7
readonly TARGET_CHHOTO_RATIO=2.0
readonly TARGET_P99_MS=5
readonly TARGET_RSS_IDLE_MIB=12
readonly TARGET_RSS_PEAK_MIB=64
readonly TARGET_RSS_AFTER_RATIO=1.5
# A stuck start-up should fail the run, not hang it.
readonly READY_TIMEOUT_S=60
readonly RSS_SAMPLE_INTERVAL=0.2

say() { printf '==> %s\n' "$*"; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

if ! [[ $RUNS =~ ^[1-9][0-9]*$ ]]; then die "BENCH_RUNS must be a positive integer, not '$RUNS'"; fi
if ! [[ $LINKS =~ ^[1-9][0-9]*$ ]] || ((LINKS > 999999)); then
    die "BENCH_LINKS must be between 1 and 999999, not '$LINKS'"
fi
if ! [[ $STRESS_RUNS =~ ^[0-9]+$ ]]; then die "BENCH_STRESS_RUNS must be a whole number, not '$STRESS_RUNS'"; fi
if ! [[ $SETTLE =~ ^[0-9]+$ && $AFTER_LOAD =~ ^[0-9]+$ ]]; then
    die "BENCH_SETTLE and BENCH_AFTER_LOAD are whole seconds"
fi

# ---------------------------------------------------------------- clean-up

TMP=""
PG_DIR=""
PG_RUNNER_PID=""
NGINX_PID=""
SHORTENER_PID=""
SAMPLER_PID=""
# Set when DATABASE_URL is used: the database created here, dropped on exit.
ADMIN_URL=""
BENCH_DB=""

# Sends a signal and waits up to $3 seconds for the process to go, then kills it.
stop_pid() {
    local pid=$1 signal=$2 wait_s=$3 i
    [[ -n $pid ]] || return 0
    kill "-$signal" "$pid" 2>/dev/null || return 0
    for ((i = 0; i < wait_s * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    stop_pid "$SAMPLER_PID" TERM 2
    stop_pid "$SHORTENER_PID" TERM 15
    stop_pid "$NGINX_PID" TERM 5
    if [[ -n $BENCH_DB ]]; then
        psql_run "$ADMIN_URL" "DROP DATABASE IF EXISTS $BENCH_DB" >/dev/null 2>&1 ||
            warn "could not drop database $BENCH_DB; drop it by hand"
    fi
    if [[ -n $PG_DIR ]]; then
        # runuser does not pass SIGINT on, so the postmaster gets it directly: fast shutdown.
        if [[ -s $PG_DIR/data/postmaster.pid ]]; then
            kill -INT "$(head -n 1 "$PG_DIR/data/postmaster.pid")" 2>/dev/null || true
        fi
        stop_pid "$PG_RUNNER_PID" INT 20
        rm -rf "$PG_DIR"
    fi
    [[ -z $TMP ]] || rm -rf "$TMP"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- helpers

psql_run() {
    psql --no-psqlrc --quiet --no-align --tuples-only --set=ON_ERROR_STOP=1 -d "$1" -c "$2"
}

# Polls $1 until it answers; fails after READY_TIMEOUT_S or as soon as process $2 exits,
# showing the logs (the remaining arguments) of the program $3.
wait_http() {
    local url=$1 pid=$2 what=$3 i why=""
    shift 3
    for ((i = 0; i < READY_TIMEOUT_S * 10; i++)); do
        if curl -s -o /dev/null --max-time 1 "$url"; then return 0; fi
        if ! kill -0 "$pid" 2>/dev/null; then
            why="$what exited during start-up"
            break
        fi
        sleep 0.1
    done
    for log in "$@"; do
        [[ ! -s $log ]] || tail -n 30 "$log" >&2
    done
    die "${why:-$what did not answer $url within ${READY_TIMEOUT_S}s}"
}


# What the shortener's /metrics says it holds, to explain an RSS reading.
memory_figures() {
    curl -s --max-time 5 "$SHORTENER_URL/metrics" | awk '
        $1 == "shortener_cache_entries" { links = $2 }
        $1 == "shortener_cache_bytes" { cache = $2 }
        $1 == "shortener_allocator_allocated_bytes" { allocated = $2 }
        $1 == "shortener_allocator_resident_bytes" { resident = $2 }
        function m(b) { return b == "" ? "n/a" : sprintf("%.1f MiB", b / 1048576) }
        END {
            printf "cache %s links (%s), heap allocated %s, allocator resident %s",
                links == "" ? "n/a" : links, m(cache), m(allocated), m(resident)
        }' || true
}

median() {
    printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
        if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2
    }'
}

# "PASS" or "FAIL" for `value op target`, op one of >= < <=.
verdict() {
    awk -v v="$1" -v op="$2" -v t="$3" 'BEGIN {
        ok = (op == ">=") ? v >= t : (op == "<") ? v < t : v <= t
        print (v == "nan" ? "FAIL" : ok ? "PASS" : "FAIL")
    }'
}

# wrk's common flags; the measured runs add -d, the warm-up its own duration.
wrk_flags() { printf '%s\n' "-t$THREADS" "-c$CONNECTIONS" "-d$1" --latency; }

# Runs wrk once and sets RPS, P99_MS, BAD (non-2xx/3xx) and SOCKET_ERRORS from its output.
# Arguments: a label, the duration, then wrk's remaining arguments.
run_wrk() {
    local label=$1 duration=$2 out
    shift 2
    out="$TMP/wrk-$label.txt"
    local flags
    mapfile -t flags < <(wrk_flags "$duration")
    wrk "${flags[@]}" "$@" >"$out" 2>&1 || {
        cat "$out" >&2
        die "wrk failed ($label)"
    }
    RPS=$(awk '/^Requests\/sec:/ { print $2 }' "$out")
    P99_MS=$(awk '$1 == "99%" { print $2 }' "$out")
    BAD=$(awk '/Non-2xx or 3xx responses:/ { print $NF }' "$out")
    SOCKET_ERRORS=$(awk '/Socket errors:/ { gsub(/,/, ""); print $4 + $6 + $8 + $10 }' "$out")
    REQUESTS=$(awk '/ requests in / { print $1 }' "$out")
    if [[ -z $RPS || -z $P99_MS ]]; then
        cat "$out" >&2
        die "could not read Requests/sec and the 99% latency from wrk's output ($label)"
    fi
    P99_MS=$(to_ms "$P99_MS")
    BAD=${BAD:-0}
    SOCKET_ERRORS=${SOCKET_ERRORS:-0}
    printf '    %-10s %10.0f req/s  p99 %8.3f ms  non-2xx/3xx %s  socket errors %s\n' \
        "$label" "$RPS" "$P99_MS" "$BAD" "$SOCKET_ERRORS"
}

with_database() {
    local url=$1 name=$2 scheme rest authority query=""
    scheme=${url%%://*}
    rest=${url#*://}
    authority=${rest%%[/?]*}
    if [[ $rest == *\?* ]]; then query="?${rest#*\?}"; fi
    printf '%s://%s/%s%s' "$scheme" "$authority" "$name" "$query"
}

# ---------------------------------------------------------------- prerequisites

missing=()
command -v wrk >/dev/null || missing+=("wrk (apt-get install wrk)")
[[ -x $NGINX ]] || missing+=("$NGINX (apt-get install nginx-light, or set BENCH_NGINX)")
command -v curl >/dev/null || missing+=("curl (apt-get install curl)")
command -v python3 >/dev/null || missing+=("python3 (apt-get install python3)")
command -v psql >/dev/null || missing+=("psql (apt-get install postgresql-client)")
if [[ -z ${DATABASE_URL:-} ]]; then
    for tool in initdb postgres pg_isready; do
        [[ -x $PG_BIN/$tool ]] ||
            missing+=("$PG_BIN/$tool (apt-get install postgresql-15, set BENCH_PG_BIN, or set DATABASE_URL)")
    done
fi
if ((${#missing[@]})); then
    printf 'missing: %s\n' "${missing[@]}" >&2
    exit 1
fi

if [[ ! -x $BIN ]]; then
    if pgrep -f "cargo build --release" >/dev/null; then
        say "waiting for the cargo build --release already running"
        while pgrep -f "cargo build --release" >/dev/null; do sleep 2; done
    fi
    if [[ ! -x $BIN ]]; then
        command -v cargo >/dev/null || die "$BIN is missing and cargo is not installed"
        say "building $BIN"
        (cd "$ROOT" && cargo build --release -p shortener)
    fi
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/bench-service.XXXXXX")

# ---------------------------------------------------------------- PostgreSQL

if [[ -n ${DATABASE_URL:-} ]]; then
    ADMIN_URL=$DATABASE_URL
    BENCH_DB="bench_$(date +%s)_$RANDOM"
    say "creating database $BENCH_DB on DATABASE_URL's server"
    psql_run "$ADMIN_URL" "CREATE DATABASE $BENCH_DB" >/dev/null
    DB_URL=$(with_database "$ADMIN_URL" "$BENCH_DB")
    PG_NOTE="DATABASE_URL's server, fresh database; its own fsync/synchronous_commit settings: $(
        psql_run "$DB_URL" "SELECT current_setting('fsync') || '/' || current_setting('synchronous_commit')"
    )"
else
    PG_DIR=$(mktemp -d "${TMPDIR:-/tmp}/bench-pg.XXXXXX")
    as_postgres=()
    if ((EUID == 0)); then
        # initdb and postgres refuse to run as root.
        chown postgres:postgres "$PG_DIR"
        as_postgres=(runuser -u postgres --)
    fi
    say "starting a throwaway PostgreSQL cluster in $PG_DIR"
    "${as_postgres[@]}" "$PG_BIN/initdb" -D "$PG_DIR/data" --auth=trust -U postgres \
        --encoding=UTF8 --locale=C >"$TMP/initdb.log" 2>&1 || {
        cat "$TMP/initdb.log" >&2
        die "initdb failed"
    }
    PG_PORT=$(free_port)
    # fsync and synchronous_commit stay on (the defaults) so create req/s is an honest number.
    "${as_postgres[@]}" "$PG_BIN/postgres" -D "$PG_DIR/data" -p "$PG_PORT" \
        -c listen_addresses=127.0.0.1 -c unix_socket_directories="$PG_DIR" \
        -c max_connections=200 >"$TMP/postgres.log" 2>&1 &
    PG_RUNNER_PID=$!
    ADMIN_URL="postgres://postgres@127.0.0.1:$PG_PORT/postgres"
    for ((i = 0; ; i++)); do
        if "$PG_BIN/pg_isready" -q -d "$ADMIN_URL" -t 1; then break; fi
        if ! kill -0 "$PG_RUNNER_PID" 2>/dev/null || ((i >= READY_TIMEOUT_S * 10)); then
            cat "$TMP/postgres.log" >&2
            die "PostgreSQL did not start"
        fi
        sleep 0.1
    done
    psql_run "$ADMIN_URL" "CREATE DATABASE bench" >/dev/null
    DB_URL="postgres://postgres@127.0.0.1:$PG_PORT/bench"
    PG_NOTE="throwaway cluster, $(psql_run "$ADMIN_URL" "SHOW server_version" | awk '{ print $1 }'), fsync=on, synchronous_commit=on, data on $(df --output=fstype "$PG_DIR" | tail -n 1)"
fi

# ---------------------------------------------------------------- nginx

NGINX_DIR="$TMP/nginx"
mkdir -p "$NGINX_DIR"
NGINX_PORT=$(free_port)
nginx_user=""
if ((EUID == 0)); then nginx_user="user root;"; fi
cat >"$NGINX_DIR/nginx.conf" <<EOF
daemon off;
$nginx_user
worker_processes auto;
error_log $NGINX_DIR/error.log warn;
pid $NGINX_DIR/nginx.pid;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path $NGINX_DIR/client_body;
    proxy_temp_path $NGINX_DIR/proxy;
    fastcgi_temp_path $NGINX_DIR/fastcgi;
    uwsgi_temp_path $NGINX_DIR/uwsgi;
    scgi_temp_path $NGINX_DIR/scgi;
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location / { return 302 https://example.com/target; }
    }
}
EOF
say "starting nginx on 127.0.0.1:$NGINX_PORT"
"$NGINX" -p "$NGINX_DIR" -e "$NGINX_DIR/error.log" -c "$NGINX_DIR/nginx.conf" \
    >"$NGINX_DIR/stdout.log" 2>&1 &
NGINX_PID=$!
wait_http "http://127.0.0.1:$NGINX_PORT/" "$NGINX_PID" nginx "$NGINX_DIR/stdout.log" "$NGINX_DIR/error.log"

# ---------------------------------------------------------------- shortener

SHORTENER_PORT=$(free_port)
SHORTENER_URL="http://127.0.0.1:$SHORTENER_PORT"
say "starting the shortener on $SHORTENER_URL (SHORTENER_MAX_MEMORY=$MAX_MEMORY)"
SHORTENER_LISTEN="127.0.0.1:$SHORTENER_PORT" SHORTENER_MAX_MEMORY="$MAX_MEMORY" \
    DATABASE_URL="$DB_URL" RUST_LOG=warn "$BIN" >"$TMP/shortener.log" 2>&1 &
SHORTENER_PID=$!
wait_http "$SHORTENER_URL/healthz" "$SHORTENER_PID" shortener "$TMP/shortener.log"

say "seeding $LINKS links (b000001 .. b$(printf '%06d' "$LINKS"))"
psql_run "$DB_URL" "INSERT INTO links (code, url, created_at, expires_at)
    SELECT 'b' || lpad(i::text, 6, '0'), 'https://example.com/page/' || i,
           (extract(epoch FROM now()) * 1000)::bigint, NULL
    FROM generate_series(1, $LINKS) AS i; ANALYZE links" >/dev/null

# Both servers must redirect the codes the Lua script asks for, or the numbers mean nothing.
for url in "$SHORTENER_URL/b000001" "http://127.0.0.1:$NGINX_PORT/b000001"; do
    status=$(curl -s -o /dev/null -w '%{http_code}' "$url")
    [[ $status == 302 ]] || die "GET $url answered $status, not 302"
done
location=$(curl -s -o /dev/null -w '%{redirect_url}' "$SHORTENER_URL/b$(printf '%06d' "$LINKS")")
[[ $location == "https://example.com/page/$LINKS" ]] || die "the last seeded code redirects to '$location'"

say "settling for ${SETTLE}s before the idle RSS reading"
sleep "$SETTLE"
RSS_IDLE=$(rss_kib "$SHORTENER_PID")
MEMORY_IDLE=$(memory_figures)

# Samples the shortener's RSS for the whole load phase; the peak is read from the file.
(
    while kill -0 "$SHORTENER_PID" 2>/dev/null; do
        rss_kib "$SHORTENER_PID" 2>/dev/null || true
        sleep "$RSS_SAMPLE_INTERVAL"
    done
) >"$TMP/rss.txt" &
SAMPLER_PID=$!

# ---------------------------------------------------------------- load

# Compilers running beside the benchmark skew every number; say so rather than hide it.
other_load() {
    local compilers
    compilers=$(pgrep -c -x rustc || true)
    printf 'load average %s' "$(cut -d ' ' -f 1-3 /proc/loadavg)"
    if ((compilers > 0)); then printf ', %s rustc process(es) running' "$compilers"; fi
}
LOAD_BEFORE=$(other_load)

RANDOM_LUA="$BENCH_DIR/random_code.lua"
CREATE_LUA="$BENCH_DIR/create.lua"

say "warm-up (untimed): ${WARMUP} walking all $LINKS codes in order"
run_wrk warm-up "$WARMUP" -s "$RANDOM_LUA" "$SHORTENER_URL/" -- "$LINKS" seq "$THREADS"
WARM_REQUESTS=$REQUESTS
if ((WARM_REQUESTS >= LINKS)); then
    WARM_NOTE="cache warmed first: ${WARMUP} untimed pass, $WARM_REQUESTS requests over all $LINKS codes"
else
    WARM_NOTE="cache only partly warmed: the ${WARMUP} pass made $WARM_REQUESTS requests for $LINKS codes"
    warn "$WARM_NOTE"
fi

# nginx and the shortener take turns so that both see the same machine noise.
nginx_rps=() redirect_rps=() redirect_p99=() healthz_rps=() create_rps=()
redirect_bad=0 nginx_bad=0 create_bad=0 socket_errors=0
say "redirects: nginx ceiling and shortener, $RUNS x $DURATION each, random codes"
for ((run = 1; run <= RUNS; run++)); do
    run_wrk "nginx-$run" "$DURATION" -s "$RANDOM_LUA" "http://127.0.0.1:$NGINX_PORT/" -- "$LINKS"
    nginx_rps+=("$RPS")
    nginx_bad=$((nginx_bad + BAD))
    socket_errors=$((socket_errors + SOCKET_ERRORS))
    run_wrk "redirect-$run" "$DURATION" -s "$RANDOM_LUA" "$SHORTENER_URL/" -- "$LINKS"
    redirect_rps+=("$RPS")
    redirect_p99+=("$P99_MS")
    redirect_bad=$((redirect_bad + BAD))
    socket_errors=$((socket_errors + SOCKET_ERRORS))
done

say "healthz: $RUNS x $DURATION"
for ((run = 1; run <= RUNS; run++)); do
    run_wrk "healthz-$run" "$DURATION" "$SHORTENER_URL/healthz"
    healthz_rps+=("$RPS")
    socket_errors=$((socket_errors + SOCKET_ERRORS))
done

say "create: $RUNS x $DURATION, POST /api/v1/links on PostgreSQL"
for ((run = 1; run <= RUNS; run++)); do
    run_wrk "create-$run" "$DURATION" -s "$CREATE_LUA" "$SHORTENER_URL/" -- "$run-$RANDOM$RANDOM"
    create_rps+=("$RPS")
    create_bad=$((create_bad + BAD))
    socket_errors=$((socket_errors + SOCKET_ERRORS))
done

LOAD_AFTER=$(other_load)
stop_pid "$SAMPLER_PID" TERM 2
SAMPLER_PID=""
stop_pid "$NGINX_PID" QUIT 5
NGINX_PID=""
RSS_PEAK=$(sort -n "$TMP/rss.txt" | tail -n 1)
RSS_SAMPLES=$(wc -l <"$TMP/rss.txt")
kill -0 "$SHORTENER_PID" 2>/dev/null || die "the shortener died during the load"

say "waiting ${AFTER_LOAD}s after the last load for the final RSS reading"
sleep "$AFTER_LOAD"
RSS_AFTER=$(rss_kib "$SHORTENER_PID")
MEMORY_AFTER=$(memory_figures)

# ---------------------------------------------------------------- report

NGINX_RPS=$(median "${nginx_rps[@]}")
REDIRECT_RPS=$(median "${redirect_rps[@]}")
REDIRECT_P99=$(median "${redirect_p99[@]}")
HEALTHZ_RPS=$(median "${healthz_rps[@]}")
CREATE_RPS=$(median "${create_rps[@]}")
NGINX_RATIO=$(awk -v a="$REDIRECT_RPS" -v b="$NGINX_RPS" 'BEGIN { printf "%.2f", a / b }')
CHHOTO_RATIO=$(awk -v a="$REDIRECT_RPS" -v b="$CHHOTO_REFERENCE" 'BEGIN { printf "%.2f", a / b }')
AFTER_RATIO=$(awk -v a="$RSS_AFTER" -v b="$RSS_IDLE" 'BEGIN { printf "%.2f", a / b }')
RSS_IDLE_MIB=$(mib "$RSS_IDLE")
RSS_PEAK_MIB=$(mib "$RSS_PEAK")
RSS_AFTER_MIB=$(mib "$RSS_AFTER")
int() { printf '%.0f' "$1"; }

TABLE=$(
    printf '| measurement | value | target |\n|---|---|---|\n'
    printf '| nginx 302 ceiling req/s | %s | — |\n' "$(int "$NGINX_RPS")"
    printf '| shortener redirect req/s | %s | — |\n' "$(int "$REDIRECT_RPS")"
    printf '| redirect / nginx ratio | %s | >= %s %s |\n' "$NGINX_RATIO" "$TARGET_NGINX_RATIO" \
        "$(verdict "$NGINX_RATIO" '>=' "$TARGET_NGINX_RATIO")"
    printf '| redirect / chhoto-url 18.6k req/s | %s | >= %s %s |\n' "$CHHOTO_RATIO" \
        "$TARGET_CHHOTO_RATIO" "$(verdict "$CHHOTO_RATIO" '>=' "$TARGET_CHHOTO_RATIO")"
    printf '| redirect p99 | %s ms | < %s ms %s |\n' "$REDIRECT_P99" "$TARGET_P99_MS" \
        "$(verdict "$REDIRECT_P99" '<' "$TARGET_P99_MS")"
    printf '| create req/s (PostgreSQL) | %s (non-2xx/3xx: %s) | — |\n' "$(int "$CREATE_RPS")" "$create_bad"
    printf '| healthz req/s | %s | — |\n' "$(int "$HEALTHZ_RPS")"
    printf '| RSS idle | %s MiB | <= %s MiB %s |\n' "$RSS_IDLE_MIB" "$TARGET_RSS_IDLE_MIB" \
        "$(verdict "$RSS_IDLE_MIB" '<=' "$TARGET_RSS_IDLE_MIB")"
    printf '| RSS peak under load | %s MiB | <= %s MiB %s |\n' "$RSS_PEAK_MIB" "$TARGET_RSS_PEAK_MIB" \
        "$(verdict "$RSS_PEAK_MIB" '<=' "$TARGET_RSS_PEAK_MIB")"
    printf '| RSS %s s after load | %s MiB (%sx idle) | <= %sx idle %s |\n' "$AFTER_LOAD" \
        "$RSS_AFTER_MIB" "$AFTER_RATIO" "$TARGET_RSS_AFTER_RATIO" \
        "$(verdict "$AFTER_RATIO" '<=' "$TARGET_RSS_AFTER_RATIO")"
)

# The command as it was run, with the settings that were overridden (credentials hidden).
command_line=""
for var in BENCH_DURATION BENCH_RUNS BENCH_THREADS BENCH_CONNECTIONS BENCH_WARMUP BENCH_LINKS \
    BENCH_SETTLE BENCH_AFTER_LOAD BENCH_STRESS_RUNS BENCH_CHHOTO BENCH_RESULTS BENCH_PG_BIN BENCH_NGINX DATABASE_URL; do
    if [[ -n ${!var:-} ]]; then
        value=${!var}
        [[ $var != DATABASE_URL ]] || value=$(sed -E 's#://([^:/@]+):[^@]*@#://\1:***@#' <<<"$value")
        command_line+="$var=$value "
    fi
done
command_line+="bash bench/service.sh"
commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n $(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null) ]]; then
    commit+=" (with uncommitted changes)"
fi
cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
mem=$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576; exit }' /proc/meminfo)
mapfile -t flags < <(wrk_flags "$DURATION")

# The backticks are Markdown code spans, not command substitutions.
# shellcheck disable=SC2016
NOTES=$(
    printf -- '- date: %s\n' "$(date -u '+%Y-%m-%d %H:%M UTC')"
    printf -- '- machine: nproc %s, %s, %s RAM, Linux %s\n' "$(nproc)" "${cpu:-unknown CPU}" "$mem" "$(uname -r)"
    printf -- '- commit: %s\n' "$commit"
    printf -- '- machine load: %s before the load; %s after it\n' "$LOAD_BEFORE" "$LOAD_AFTER"
    printf -- '- command: `%s`\n' "$command_line"
    printf -- '- wrk on 127.0.0.1: `wrk %s`, median of %s run(s); redirects and nginx use `bench/random_code.lua` (random codes among %s)\n' \
        "${flags[*]}" "$RUNS" "$LINKS"
    printf -- '- %s\n' "$WARM_NOTE"
    printf -- '- PostgreSQL: %s\n' "$PG_NOTE"
    printf -- '- shortener: SHORTENER_MAX_MEMORY=%s, RUST_LOG=warn; RSS sampled every %ss (%s samples) over the load\n' \
        "$MAX_MEMORY" "$RSS_SAMPLE_INTERVAL" "$RSS_SAMPLES"
    printf -- '- memory at idle: %s; %s s after load: %s\n' "$MEMORY_IDLE" "$AFTER_LOAD" "$MEMORY_AFTER"
    printf -- '- runs: nginx %s; redirect %s (p99 ms %s); healthz %s; create %s\n' \
        "${nginx_rps[*]}" "${redirect_rps[*]}" "${redirect_p99[*]}" "${healthz_rps[*]}" "${create_rps[*]}"
    printf -- '- non-2xx/3xx responses: redirect %s, nginx %s, create %s; socket errors %s\n' \
        "$redirect_bad" "$nginx_bad" "$create_bad" "$socket_errors"
)

echo
echo "$NOTES"
echo
echo "$TABLE"

if [[ "$LOAD_BEFORE $LOAD_AFTER" == *rustc* ]]; then
    warn "the Rust compiler was running during the benchmark: the numbers are skewed"
fi
if ((redirect_bad > 0 || nginx_bad > 0)); then
    warn "some redirect requests were not answered 302: the redirect numbers are suspect"
fi
if [[ -s $TMP/shortener.log ]]; then
    warn "the shortener logged $(wc -l <"$TMP/shortener.log") line(s) at warn or above; the last ones:"
    tail -n 5 "$TMP/shortener.log" >&2
fi

# ---------------------------------------------------------------- stress case

# The load of issue 12 on the embedded default, after the PostgreSQL service above is stopped:
# each run is a fresh process, so the rows are independent.
STRESS_TABLE=""
if ((STRESS_RUNS > 0)); then
    stop_pid "$SHORTENER_PID" TERM 15
    SHORTENER_PID=""
    STRESS_TABLE=$(
        echo '| run | wrk | RSS idle MiB | peak | 35 s after | after a trim | redirect req/s (p99 ms), each run; median | nginx, same wrk script | median / nginx median | verdict |'
        echo '|---|---|---|---|---|---|---|---|---|---|'
        for threads in 1 2; do
            for ((run = 1; run <= STRESS_RUNS; run++)); do
                say "stress case: wrk -t$threads, run $run of $STRESS_RUNS" >&2
                STRESS_THREADS=$threads STRESS_OUT=$TMP bash "$BENCH_DIR/stress.sh" "$run" || exit 1
            done
            if [[ -n ${BENCH_CHHOTO:-} ]]; then
                say "stress case: chhoto-url, wrk -t$threads" >&2
                STRESS_THREADS=$threads STRESS_CHHOTO=$BENCH_CHHOTO bash "$BENCH_DIR/stress.sh" chhoto-url || exit 1
            fi
        done
    ) || die "the stress case failed (its output is above)"
    echo
    echo "$STRESS_TABLE"
fi

if [[ ! -s $RESULTS ]]; then
    mkdir -p "$(dirname "$RESULTS")"
    cat >"$RESULTS" <<'EOF'
# Benchmarks

Results of `bench/service.sh`, newest last. Each run appends its date, machine, commit,
command and table; compare runs only on the same machine.
EOF
fi
{
    printf '\n## %s, commit %s\n\n' "$(date -u '+%Y-%m-%d %H:%M UTC')" "$commit"
    echo "$NOTES"
    echo
    echo "$TABLE"
    if [[ -n $STRESS_TABLE ]]; then
        printf '\nStress case (`bench/stress.sh`: SQLite, SHORTENER_MAX_MEMORY=96MiB, 20,000 links with URLs of 30-230 bytes created by 16 clients, `wrk -c64` random redirects, 3 rounds of 10 s against the shortener and 10 s against nginx `return 302` with the same script, alternating which goes first, one worker each; 35 s idle; a manual trim). Targets: after <= 1.3x idle, after a trim <= 1.15x, peak <= 48 MiB, redirect >= 0.8x nginx with -t1 and >= 0.9x with -t2 (medians), p99 <= 4 ms (median of the runs).\n\n'
        echo "$STRESS_TABLE"
    fi
} >>"$RESULTS"
say "appended to $RESULTS"
