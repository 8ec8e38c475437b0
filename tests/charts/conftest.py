"""Shared helpers for the chart tests: render a chart with the real Helm SDK,
validate manifests against Kubernetes' own schema, and run the operator binary.

Helm here is helm-python-sdk (Helm v4's Go SDK through a C library): lint,
render and values.schema.json validation are Helm's own, with no helm binary.
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHARTS = ROOT / "charts"
OPERATOR_CHART = CHARTS / "memory-operator"
SHORTENER_CHART = CHARTS / "shortener"
CRD_FILE = ROOT / "crds" / "memorypolicy.yaml"

# The Kubernetes version whose schema every core manifest must satisfy.
KUBE_VERSION = "1.32"

# API groups that Kubernetes itself serves, so kubernetes-validate has their schemas.
CORE_GROUPS = {"", "apps", "policy", "rbac.authorization.k8s.io", "networking.k8s.io",
               "apiextensions.k8s.io", "batch"}

# What the tests validated, for the summary printed at the end.
VALIDATED: collections.Counter[str] = collections.Counter()


def group_of(doc: dict) -> str:
    api_version = doc["apiVersion"]
    return api_version.split("/")[0] if "/" in api_version else ""


# Values each chart is rendered with; every scenario must lint, render, and
# yield only valid, hardened manifests.
OPERATOR_SCENARIOS: dict[str, dict] = {
    "defaults": {},
    "three replicas": {"replicaCount": 3},
    "one replica without leader election": {"replicaCount": 1, "leaderElection": {"enabled": False}},
    "serviceMonitor on": {"serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}}},
    "prometheusRule on (ignored)": {"prometheusRule": {"enabled": True}},
    "other resources": {"resources": {"requests": {"cpu": "10m", "memory": "16Mi"},
                                      "limits": {"cpu": "2", "memory": "1Gi"}}},
    "no PDB, existing service account": {"podDisruptionBudget": {"enabled": False},
                                         "serviceAccount": {"create": False, "name": "ops"}},
    "metrics sources with credentials": {"prometheusSources": [
        {"name": "default", "url": "https://prometheus.monitoring:9090", "timeout": "10s",
         "bearerToken": {"secret": "prometheus-reader", "key": "token"},
         "ca": {"configMap": "monitoring-ca", "key": "ca.crt"},
         "clientCert": {"secret": "operator-client-tls"}},
        {"name": "long-term", "url": "https://thanos.monitoring:10902",
         "serviceAccountToken": {"audience": "thanos", "expirationSeconds": 3600},
         "ca": {"secret": "thanos-ca"}},
        {"name": "a" * 63, "url": "http://prometheus.elsewhere:9090",
         "bearerToken": {"secret": "elsewhere"}},
    ]},
}

SHORTENER_SCENARIOS: dict[str, dict] = {
    "defaults": {},
    "ingress on": {"ingress": {"enabled": True, "className": "nginx",
                               "tls": [{"secretName": "shortener-tls", "hosts": ["s.example.com"]}],
                               "hosts": [{"host": "s.example.com", "paths": [{"path": "/", "pathType": "Prefix"}]}]}},
    "serviceMonitor on": {"serviceMonitor": {"enabled": True}},
    "podMonitor on": {"podMonitor": {"enabled": True}},
    "prometheusRule on": {"prometheusRule": {"enabled": True}},
    "existingSecret": {"database": {"existingSecret": "db", "existingSecretKey": "url"}},
    "admin token": {"admin": {"token": "s3cret"}},
    "policy disabled": {"memoryPolicy": {"enabled": False}},
    "five replicas": {"replicaCount": 5},
    "policy on a named metrics source": {"memoryPolicy": {"prometheusSource": "long-term"}},
    "other resources": {"resources": {"requests": {"cpu": "50m", "memory": "128Mi"},
                                      "limits": {"cpu": "2", "memory": "512Mi"}}},
    "limits raised in place": {"memoryPolicy": {"onHigh": "RaiseLimit",
                                                "raise": {"step": "64Mi", "max": "512Mi"}}},
    "raises that restart the container": {"resizePolicy": {"memory": "RestartContainer"},
                                          "memoryPolicy": {"onHigh": "RaiseLimit", "raise": {
                                              "step": "64Mi", "max": "1Gi", "allowRestart": True}}},
    "everything on": {"ingress": {"enabled": True}, "serviceMonitor": {"enabled": True},
                      "prometheusRule": {"enabled": True}, "admin": {"existingSecret": "admin"},
                      "baseUrl": "https://s.example.com", "env": {"SHORTENER_CACHE_BUDGET": "32MiB"}},
}


@dataclass
class Rendered:
    """One chart rendered with one set of values."""

    docs: list[dict]
    notes: str

    def kinds(self) -> list[str]:
        return sorted(doc["kind"] for doc in self.docs)

    def all(self, kind: str) -> list[dict]:
        return [doc for doc in self.docs if doc["kind"] == kind]

    def one(self, kind: str) -> dict:
        found = self.all(kind)
        assert len(found) == 1, f"expected one {kind}, found {len(found)}: {self.kinds()}"
        return found[0]

    def none(self, kind: str) -> None:
        assert not self.all(kind), f"expected no {kind}: {self.kinds()}"


def render(chart: Path, values: dict | None = None, *, name: str | None = None,
           namespace: str = "testing", kube_version: str | None = None) -> Rendered:
    """Renders like `helm install` would (values checked against values.schema.json),
    on a cluster of `kube_version` (such as "v1.26.0") when given, else Helm's default."""
    opts = {"name": name or chart.name, "namespace": namespace, "is_install": True}
    with helm.Chart.load(chart) as loaded:
        if kube_version is None:
            files = loaded.render(values or {}, **opts)
        else:
            # Chart.render does not pass the SDK's kube_version option on (helm-python-sdk
            # 0.2.2), so this calls the same native render with it.
            files = json.loads(helm._native.call_string(
                "helm_render", loaded._raw(), json.dumps(values or {}),
                json.dumps({**opts, "kube_version": kube_version})))
    docs, notes = [], ""
    for path, text in sorted(files.items()):
        if path.endswith("NOTES.txt"):
            notes = text
            continue
        docs.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return Rendered(docs, notes)


def render_error(chart: Path, values: dict) -> helm.HelmError:
    """The error Helm raises for values it refuses."""
    with pytest.raises(helm.HelmError) as caught:
        render(chart, values)
    return caught.value


def lint(chart: Path, values: dict | None = None) -> list[str]:
    """`helm lint --strict` findings of warning severity or worse (info is dropped)."""
    report = helm.lint(chart, values, strict=True, kube_version=f"v{KUBE_VERSION}.0")
    problems = {f'{m["path"]}: {m["error"].strip()}' for m in report["messages"] if m["severity"] >= 2}
    problems |= {e.strip() for e in report["errors"]}
    return sorted(problems)


def validate_core(doc: dict) -> None:
    """Validates against the Kubernetes schema in strict mode: unknown fields fail."""
    name = f'{doc["kind"]}/{doc["metadata"]["name"]}'
    try:
        kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        path = ".".join(str(p) for p in error.path)
        pytest.fail(f"{name} is not a valid {KUBE_VERSION} object at {path}: {error.message}")
    VALIDATED[doc["kind"]] += 1


def pod_specs(docs: list[dict]) -> list[tuple[str, dict]]:
    """Every pod template among the documents, named by its owner."""
    return [(f'{d["kind"]}/{d["metadata"]["name"]}', d["spec"]["template"]["spec"])
            for d in docs if d["kind"] in {"Deployment", "StatefulSet", "DaemonSet", "Job"}]


def env_of(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


def _newest_source() -> float:
    sources = [ROOT / "Cargo.lock", ROOT / "operator" / "Cargo.toml",
               *(ROOT / "operator" / "src").rglob("*.rs")]
    return max(p.stat().st_mtime for p in sources)


@pytest.fixture(scope="session")
def operator_bin() -> Path:
    """The memory-operator binary: $MEMORY_OPERATOR_BIN, else target/debug's when it
    is newer than the operator's sources, else built now with cargo."""
    if os.environ.get("MEMORY_OPERATOR_BIN"):
        return Path(os.environ["MEMORY_OPERATOR_BIN"])
    binary = ROOT / "target" / "debug" / "memory-operator"
    if not binary.exists() or binary.stat().st_mtime < _newest_source():
        subprocess.run(["cargo", "build", "--quiet", "--locked", "-p", "memory-operator"],
                       cwd=ROOT, check=True)
    return binary


@pytest.fixture(scope="session")
def operator_permissions(operator_bin: Path) -> list[dict]:
    """`memory-operator rbac`: the rules operator/src/rbac.rs lists."""
    out = subprocess.run([operator_bin, "rbac"], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def check_policies(operator_bin: Path, docs: list[dict], tmp_path: Path) -> subprocess.CompletedProcess:
    """Runs `memory-operator check` on the documents, as a user would on a file."""
    path = tmp_path / "policies.yaml"
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return subprocess.run([operator_bin, "check", path], capture_output=True, text=True)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if VALIDATED:
        kinds = ", ".join(f"{n} {k}" for k, n in sorted(VALIDATED.items()))
        terminalreporter.write_sep("-", "chart summary")
        terminalreporter.write_line(
            f"{sum(VALIDATED.values())} rendered manifests valid against Kubernetes "
            f"{KUBE_VERSION} (strict): {kinds}")
