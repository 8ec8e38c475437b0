"""What holds for both charts in every scenario: they lint, every core manifest
is a valid Kubernetes object, every pod is hardened, probed and bounded, and
values.schema.json refuses values of the wrong type."""

from __future__ import annotations

import pytest

from conftest import (CORE_GROUPS, OPERATOR_CHART, OPERATOR_SCENARIOS, SHORTENER_CHART,
                      SHORTENER_SCENARIOS, group_of, lint, pod_specs, render, render_error,
                      validate_core)

SCENARIOS = [pytest.param(OPERATOR_CHART, values, id=f"memory-operator: {name}")
             for name, values in OPERATOR_SCENARIOS.items()] + \
            [pytest.param(SHORTENER_CHART, values, id=f"shortener: {name}")
             for name, values in SHORTENER_SCENARIOS.items()]

CHARTS = [pytest.param(OPERATOR_CHART, id="memory-operator"),
          pytest.param(SHORTENER_CHART, id="shortener")]


@pytest.mark.parametrize("chart,values", SCENARIOS)
def test_the_chart_lints_clean_with_these_values(chart, values):
    assert lint(chart, values) == []


@pytest.mark.parametrize("chart,values", SCENARIOS)
def test_every_core_manifest_is_a_valid_kubernetes_object(chart, values):
    rendered = render(chart, values)
    core = [doc for doc in rendered.docs if group_of(doc) in CORE_GROUPS]
    assert core, "nothing to validate"
    for doc in core:
        validate_core(doc)


@pytest.mark.parametrize("chart,values", SCENARIOS)
def test_only_known_kinds_are_rendered_outside_the_core_schema(chart, values):
    # These have no schema in kubernetes-validate; their own tests check them.
    others = {(doc["apiVersion"], doc["kind"]) for doc in render(chart, values).docs
              if group_of(doc) not in CORE_GROUPS}
    assert others <= {("monitoring.coreos.com/v1", "ServiceMonitor"),
                      ("monitoring.coreos.com/v1", "PodMonitor"),
                      ("monitoring.coreos.com/v1", "PrometheusRule"),
                      ("shortener.dev/v1alpha1", "MemoryPolicy")}


@pytest.mark.parametrize("chart,values", SCENARIOS)
def test_every_pod_runs_non_root_read_only_without_privileges(chart, values):
    specs = pod_specs(render(chart, values).docs)
    assert specs
    for owner, spec in specs:
        pod = spec.get("securityContext", {})
        assert pod.get("runAsNonRoot") is True, owner
        assert pod.get("seccompProfile") == {"type": "RuntimeDefault"}, owner
        assert pod.get("runAsUser", 0) != 0, owner
        for container in spec["containers"] + spec.get("initContainers", []):
            where = f'{owner} container {container["name"]}'
            sc = container.get("securityContext", {})
            assert sc.get("allowPrivilegeEscalation") is False, where
            assert sc.get("readOnlyRootFilesystem") is True, where
            assert sc.get("privileged", False) is False, where
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], where
            assert not sc.get("capabilities", {}).get("add"), where
            assert sc.get("seccompProfile", pod.get("seccompProfile")) == {"type": "RuntimeDefault"}, where
            assert sc.get("runAsNonRoot", pod.get("runAsNonRoot")) is True, where


@pytest.mark.parametrize("chart,values", SCENARIOS)
def test_every_container_has_requests_limits_and_health_probes(chart, values):
    for owner, spec in pod_specs(render(chart, values).docs):
        for container in spec["containers"]:
            where = f'{owner} container {container["name"]}'
            resources = container.get("resources", {})
            assert {"cpu", "memory"} <= resources.get("requests", {}).keys(), where
            assert "memory" in resources.get("limits", {}), where
            assert container["livenessProbe"]["httpGet"]["path"] == "/healthz", where
            assert container["readinessProbe"]["httpGet"]["path"] in {"/readyz", "/healthz"}, where
            ports = {p["name"] for p in container["ports"]}
            for probe in ("livenessProbe", "readinessProbe"):
                assert container[probe]["httpGet"]["port"] in ports, where


@pytest.mark.parametrize("chart", CHARTS)
@pytest.mark.parametrize("values,where", [
    ({"replicaCount": "two"}, "/replicaCount"),
    ({"replicaCount": 0}, "/replicaCount"),
    ({"image": {"repository": "x", "tag": 5}}, "/image/tag"),
    ({"resources": "lots"}, "/resources"),
    ({"resources": {"limits": {"memory": "a lot"}}}, "/resources/limits/memory"),
    ({"serviceMonitor": {"enabled": "yes"}}, "/serviceMonitor/enabled"),
    ({"prometheusRule": {"enabled": 1}}, "/prometheusRule/enabled"),
    ({"replicaCont": 2}, "replicaCont"),
])
def test_values_of_the_wrong_type_are_refused_naming_the_key(chart, values, where):
    error = render_error(chart, values)
    assert error.code == -22, error  # HELM_VALUES: values.schema.json refused them
    assert where in str(error), str(error)


@pytest.mark.parametrize("chart", CHARTS)
def test_helm_lint_reports_a_bad_value_too(chart):
    assert any("/replicaCount" in problem for problem in lint(chart, {"replicaCount": "two"}))


@pytest.mark.parametrize("chart", CHARTS)
def test_the_strict_schema_check_catches_a_misspelt_field(chart):
    # Guards the guard: a typo in a manifest must fail validation.
    deployment = render(chart).one("Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFileSystem"] = True
    with pytest.raises(pytest.fail.Exception, match="readOnlyRootFileSystem"):
        validate_core(deployment)


@pytest.mark.parametrize("chart", CHARTS)
def test_every_object_is_labelled_for_the_release(chart):
    for doc in render(chart, name="demo").docs:
        labels = doc["metadata"].get("labels", {})
        assert labels.get("app.kubernetes.io/instance") == "demo", doc["kind"]
        assert labels.get("app.kubernetes.io/managed-by") == "Helm", doc["kind"]
