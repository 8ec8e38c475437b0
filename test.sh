#!/usr/bin/env bash
# The whole test suite, on a fresh Debian bookworm machine as on a developer's: installs what
# is missing, then runs `cargo test --workspace`. Arguments go to cargo test.
#
# - PostgreSQL 15 and Prometheus from Debian's packages (tests start throwaway servers);
# - the Go-built control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
#   kubectl, helm, and a Prometheus with Kubernetes discovery) from tools/k8s, built once per
#   go.sum into ~/.cache/memory-operator/k8s;
# - the chart tests' Python venv (tests/charts/run.sh makes it under target/).
set -euo pipefail
cd "$(dirname "$0")"

need_apt=()
[ -x /usr/lib/postgresql/15/bin/initdb ] || need_apt+=(postgresql-15)
[ -x /usr/bin/prometheus ] || need_apt+=(prometheus)
command -v runuser >/dev/null || need_apt+=(util-linux)
python3 -c 'import venv, ensurepip' 2>/dev/null || need_apt+=(python3-venv)
if [ "${#need_apt[@]}" -gt 0 ]; then
  sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  echo "== installing ${need_apt[*]}" >&2
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

echo "== control plane binaries (tools/k8s/build.sh)" >&2
KUBE_BIN_DIR="$(bash tools/k8s/build.sh)"
export KUBE_BIN_DIR

echo "== cargo test --workspace" >&2
exec cargo test --workspace --locked "$@"
