#!/usr/bin/env bash
# Operator benchmark: builds the release binary and the bench example, runs it,
# prints the table and appends it (with date, machine and commit) to docs/benchmarks.md.
#   bash bench/operator.sh
set -euo pipefail
cd "$(dirname "$0")/.."
results="${BENCH_RESULTS:-docs/benchmarks.md}"
cargo build --release -p memory-operator --bin memory-operator --example bench
KUBE_BIN_DIR="${KUBE_BIN_DIR:-$(bash tools/k8s/build.sh)}"
export KUBE_BIN_DIR
table=$(target/release/examples/bench target/release/memory-operator)
echo "$table"
# Read before the results file is touched, which would itself count as a change.
commit="$(git rev-parse --short HEAD)$(git diff --quiet || echo ' (with uncommitted changes)')"
{
  echo
  echo "## Operator, $(date -u '+%Y-%m-%d %H:%M UTC'), commit $commit"
  echo
  echo "- machine: nproc $(nproc), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
  echo "- command: \`bash bench/operator.sh\` (testkit's real control plane with the CRD, 500 Deployments of 2 Running pods each under the process kubelet, a scripted Prometheus in the bench process answering each selector with the series it selects; the operator is the real release binary, \`memory-operator run\`, with the admin kubeconfig; RSS, CPU and evaluation time over the 60 s after every policy was evaluated once)"
  echo
  echo "$table"
} >> "$results"
echo "==> appended to $results"
