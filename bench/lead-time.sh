#!/usr/bin/env bash
# Lead time of growth prediction on the real control plane (tests/tests/leak_lead_time.rs): a
# pod leaking steadily at a flat request rate under a dry-run policy that predicts growth; the
# time from the prediction's report of the eviction to the critical rule's, over RUNS runs
# (default 5) of the real scenario. Prints min/median/max and appends them, with every run, to
# docs/benchmarks.md.
#   bash bench/lead-time.sh          # RUNS=10 bash bench/lead-time.sh for more
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/runs.sh
results="${BENCH_RESULTS:-docs/benchmarks.md}"
runs="${RUNS:-5}"
cargo test -p e2e --test leak_lead_time --no-run --quiet
leads=()
at=()
for run in $(seq 1 "$runs"); do
  line=$(run_scenario leak_lead_time 's/.*lead time: \(.*\)/\1/p') || {
    echo "run $run failed" >&2
    exit 1
  }
  lead=$(echo "$line" | sed -n 's/.*, \([0-9.]*\) s later.*/\1/p')
  percent=$(echo "$line" | sed -n 's/.*evicting [^ ]* at \([0-9]*\) %.*/\1/p')
  echo "run $run: $line"
  leads+=("$lead")
  at+=("$percent")
done
summary=$(UNIT=" s" min_median_max "${leads[@]}")
table="| runs | min | median | max |
|---|---|---|---|
$summary"
echo "$table"
commit="$(commit_label)"
{
  echo
  echo "## Lead time of growth prediction, $(date -u '+%Y-%m-%d %H:%M UTC'), commit $commit"
  echo
  echo "- machine: nproc $(nproc), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
  echo "- command: \`bash bench/lead-time.sh\` (scenario 15 of the e2e suite on testkit's real control plane: a real shortener pod following 120 new links a second, so its memory climbs about half a percent of its 44 MiB limit a second at a flat request rate; policy \`prediction: {window: 20s, horizon: 60s, minGrowth: 256Ki/min}\`, critical 90 %, \`for\` 2 s, interval 1 s, dry run, so the pod leaks on past critical; the service's own water marks at 97/99 % so that it neither trims nor stops caching on the way)"
  echo "- lead time = the critical rule's report of the eviction minus the prediction's, from the policy's history: ${leads[*]} (seconds); usage at the prediction's report: ${at[*]} (%)"
  echo
  echo "$table"
} >> "$results"
echo "==> appended to $results"
