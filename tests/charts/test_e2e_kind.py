"""The kind end-to-end workflow's own files (.github/workflows/e2e.yml runs
them only where there is a cluster): they must at least be valid and agree
with the charts."""

from __future__ import annotations

import yaml

from conftest import ROOT, SHORTENER_CHART, check_policies, env_of, render, validate_core

E2E = ROOT / "tests" / "e2e-kind"
WORKFLOW = ROOT / ".github" / "workflows" / "e2e.yml"


def e2e_values() -> dict:
    return yaml.safe_load((E2E / "shortener-values.yaml").read_text())


def test_the_e2e_manifests_are_valid_kubernetes_objects():
    for name in ("prometheus.yaml", "postgres.yaml", "load-job.yaml"):
        for doc in yaml.safe_load_all((E2E / name).read_text()):
            validate_core(doc)


def test_the_e2e_values_render_a_sound_policy_that_acts_below_the_services_own_marks(operator_bin, tmp_path):
    rendered = render(SHORTENER_CHART, e2e_values(), name="shortener", namespace="shortener")
    for doc in rendered.docs:
        if doc["kind"] != "MemoryPolicy":
            validate_core(doc)
    policy = rendered.one("MemoryPolicy")
    result = check_policies(operator_bin, [policy], tmp_path)
    assert result.returncode == 0, result.stderr
    env = env_of(rendered.one("Deployment")["spec"]["template"]["spec"]["containers"][0])
    assert policy["spec"]["thresholds"]["highWaterMark"] < float(env["SHORTENER_HIGH_WATER_MARK"]["value"])
    assert policy["spec"]["limits"]["limit"] == "48Mi"


def test_the_load_job_targets_the_service_the_chart_creates():
    service = render(SHORTENER_CHART, e2e_values(), name="shortener", namespace="shortener").one("Service")
    job = yaml.safe_load((E2E / "load-job.yaml").read_text())
    script = job["spec"]["template"]["spec"]["containers"][0]["args"][0]
    assert f'http://{service["metadata"]["name"]}.shortener.svc.cluster.local' in script
    assert service["spec"]["ports"][0]["port"] == 80


def test_the_workflow_loads_the_images_the_values_name():
    workflow = WORKFLOW.read_text()
    yaml.safe_load(workflow)
    image = e2e_values()["image"]
    assert f'{image["repository"]}:{image["tag"]}' in workflow
    assert "kind load docker-image shortener:e2e memory-operator:e2e" in workflow
    assert "--for=condition=HighMemory" in workflow
