#!/usr/bin/env bash
# Builds the test control plane (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl), helm and Prometheus (Debian's is built without Kubernetes
# service discovery) from the Go modules pinned in go.mod/go.sum,
# once per go.sum: the binaries land in a cache directory keyed by its hash, and
# a later run with the same go.sum reuses them.
#
# Prints the bin directory on stdout (progress goes to stderr), so callers can do
#   KUBE_BIN="$(tools/k8s/build.sh)"
#
# Environment:
#   K8S_CACHE_DIR  where keyed builds live (default ~/.cache/memory-operator/k8s)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache_root="${K8S_CACHE_DIR:-${HOME}/.cache/memory-operator/k8s}"
key="$(sha256sum "${here}/go.sum" | cut -c1-16)"
bin="${cache_root}/${key}/bin"
tools=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl helm prometheus)

complete() {
    local t
    for t in "${tools[@]}"; do [[ -x "${bin}/${t}" ]] || return 1; done
}

if complete; then
    echo "${bin}"
    exit 0
fi

# Go's build and module caches for this build take about 8 GB and are of no use once the
# binaries are here (the next build is for another go.sum): they live beside the staging
# directory and go when the build succeeds.
work="${cache_root}/${key}/work"
export GOCACHE="${work}/gocache" GOMODCACHE="${work}/gomod"

# The versions come from go.mod, so /version and `helm version` tell the truth.
module_version() {
    (cd "${here}" && go list -m -f '{{.Version}}' "$1")
}
kube_version="$(module_version k8s.io/kubernetes)"
helm_version="$(module_version helm.sh/helm/v4)"
# Prometheus 3.x is published as module v0.3XX.Y for release 3.XX.Y.
prometheus_module="$(module_version github.com/prometheus/prometheus)"
prometheus_version="3.$(( $(echo "${prometheus_module}" | cut -d. -f2) - 300 )).$(echo "${prometheus_module}" | cut -d. -f3)"
kube_minor="$(echo "${kube_version}" | cut -d. -f2)"
build_date="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
version_pkg=k8s.io/component-base/version
kube_ldflags="-s -w \
 -X ${version_pkg}.gitVersion=${kube_version} \
 -X ${version_pkg}.gitMajor=1 \
 -X ${version_pkg}.gitMinor=${kube_minor} \
 -X ${version_pkg}.gitTreeState=clean \
 -X ${version_pkg}.buildDate=${build_date}"
helm_ldflags="-s -w -X helm.sh/helm/v4/internal/version.version=${helm_version} \
 -X helm.sh/helm/v4/internal/version.gitTreeState=clean"
prometheus_ldflags="-s -w -X github.com/prometheus/common/version.Version=${prometheus_version} \
 -X github.com/prometheus/common/version.BuildDate=${build_date}"

staging="${cache_root}/${key}/staging"
rm -rf "${staging}"
mkdir -p "${staging}"
start=$(date +%s)
echo "building Kubernetes ${kube_version}, etcd, helm ${helm_version} and Prometheus ${prometheus_version} into ${bin} (cold: about 10 minutes on 2 cores)" >&2

cd "${here}"
export CGO_ENABLED=0
go build -trimpath -ldflags "${kube_ldflags}" -o "${staging}/" \
    k8s.io/kubernetes/cmd/kube-apiserver \
    k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler \
    k8s.io/kubernetes/cmd/kubectl
go build -trimpath -ldflags "-s -w" -o "${staging}/etcd" go.etcd.io/etcd/server/v3
go build -trimpath -ldflags "${helm_ldflags}" -o "${staging}/helm" helm.sh/helm/v4/cmd/helm
go build -trimpath -ldflags "${prometheus_ldflags}" -o "${staging}/prometheus" \
    github.com/prometheus/prometheus/cmd/prometheus

rm -rf "${bin}"
mv "${staging}" "${bin}"
chmod -R u+w "${work}"
rm -rf "${work}"
echo "built in $(( $(date +%s) - start )) s:" >&2
(cd "${bin}" && ls -l "${tools[@]}" >&2)
echo "${bin}"
