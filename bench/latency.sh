#!/usr/bin/env bash
# Detection-to-action latency of the leak scenario (tests/tests/leak.rs) on the real control
# plane: from the first scrape of the run over critical that the operator acted on to its
# eviction request as the apiserver received it, over RUNS runs (default 5) of the real
# scenario. Prints min/median/max beside the bound the policy promises (`for` + 2 intervals)
# and the figure measured on the retired fake API server, and appends them, with every run,
# to docs/benchmarks.md.
#   bash bench/latency.sh            # RUNS=10 bash bench/latency.sh for more
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/runs.sh
results="${BENCH_RESULTS:-docs/benchmarks.md}"
runs="${RUNS:-5}"
cargo test -p e2e --test leak --no-run --quiet
latencies=()
for run in $(seq 1 "$runs"); do
  latency=$(run_scenario leak 's/.*detection-to-eviction latency \([0-9.]*\) s.*/\1/p') || {
    echo "run $run failed" >&2
    exit 1
  }
  echo "run $run: $latency s"
  latencies+=("$latency")
done
summary=$(UNIT=" s" min_median_max "${latencies[@]}")
table="| runs | min | median | max |
|---|---|---|---|
$summary

bound (\`for\` + 2 intervals): 4.00 s; on the fake API server (2026-11, before it was retired): median 2.50 s"
echo "$table"
# Read before the results file is touched, which would itself count as a change.
commit="$(commit_label)"
{
  echo
  echo "## Detection-to-action latency, $(date -u '+%Y-%m-%d %H:%M UTC'), commit $commit"
  echo
  echo "- machine: nproc $(nproc), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
  echo "- command: \`bash bench/latency.sh\` (scenario 1 of the e2e suite on testkit's real control plane, debug build as the suite runs: both charts installed with helm, real shortener pods under the process kubelet in memory cgroups, PostgreSQL, Prometheus discovering the pods and scraping every 1 s, the operator as its chart's pod; policy interval 1 s, \`for\` 2 s, so the bound is \`for\` + 2 intervals = 4 s)"
  echo "- runs: ${latencies[*]} (seconds)"
  echo
  echo "$table"
} >> "$results"
echo "==> appended to $results"
