#!/usr/bin/env bash
# Compares operator builds side by side on one fleet: starts the operator benchmark's 500
# policies over 1,000 pods once (BENCH_HOLD=1), then runs each given `memory-operator` binary
# against it in turn and prints RSS (mean and peak, sampled every 0.5 s) and CPU over 60 s
# after a 30 s warm-up, one row per binary.
#   bash bench/operator-compare.sh OLD_BINARY NEW_BINARY [...]
# Build an older commit's binary with, say:
#   git worktree add /tmp/old <commit> && (cd /tmp/old && cargo build --release -p memory-operator)
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { echo "usage: $0 BINARY [BINARY...]" >&2; exit 2; }
for binary in "$@"; do [ -x "$binary" ] || { echo "$binary is not an executable" >&2; exit 2; }; done
cargo build --release -p memory-operator --example bench
KUBE_BIN_DIR="${KUBE_BIN_DIR:-$(bash tools/k8s/build.sh)}"
export KUBE_BIN_DIR

log=$(mktemp)
BENCH_HOLD=1 target/release/examples/bench "$1" >/dev/null 2>"$log" &
bench=$!
trap 'kill -INT $bench 2>/dev/null; wait $bench 2>/dev/null; rm -f "$log"' EXIT
until grep -q "holding until Ctrl-C" "$log"; do
  kill -0 $bench 2>/dev/null || { cat "$log" >&2; exit 1; }
  sleep 2
done
line=$(grep -A1 "holding until Ctrl-C" "$log" | tail -1)
kubeconfig=$(sed -E 's/.*KUBECONFIG=([^ ]+).*/\1/' <<<"$line")
prometheus=$(sed -E 's/.*--prometheus-url ([^ ]+).*/\1/' <<<"$line")
namespace=$(sed -E 's/.*--namespace ([^ ]+).*/\1/' <<<"$line")

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
echo "| binary | RSS mean / peak | CPU over 60 s |"
echo "|---|---|---|"
for binary in "$@"; do
  KUBECONFIG=$kubeconfig RUST_LOG=warn "$binary" run --listen 127.0.0.1:0 \
    --prometheus-url "$prometheus" --namespace "$namespace" >/dev/null 2>&1 &
  pid=$!
  sleep 30
  start_ticks=$(ticks $pid) start=$(date +%s.%N) sum=0 count=0 peak=0
  for _ in $(seq 120); do
    rss=$(awk '/^VmRSS/{print $2}' "/proc/$pid/status")
    sum=$((sum + rss)) count=$((count + 1))
    [ "$rss" -gt "$peak" ] && peak=$rss
    sleep 0.5
  done
  cpu=$(echo "scale=2; ($(ticks $pid) - $start_ticks) / ($(date +%s.%N) - $start)" | bc)
  kill -TERM $pid; wait $pid 2>/dev/null || true
  printf '| %s | %.1f MiB / %.1f MiB | %s %% |\n' "$binary" \
    "$(echo "$sum / $count / 1024" | bc -l)" "$(echo "$peak / 1024" | bc -l)" "$cpu"
done
