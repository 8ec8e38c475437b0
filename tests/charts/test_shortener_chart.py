"""The shortener chart: the service's Deployment and its database Secret, the
MemoryPolicy templated from values, and the monitoring that mirrors the water
marks (alerts checked by promtool, the dashboard by its JSON)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import helm_python as helm
import jsonschema
import pytest
import yaml

from conftest import CRD_FILE, SHORTENER_CHART, check_policies, env_of, render, render_error

POD = "shortener-5d9c7b8f4-abcde"  # what a pod of release "shortener" is called


def container_of(rendered):
    spec = rendered.one("Deployment")["spec"]["template"]["spec"]
    assert [c["name"] for c in spec["containers"]] == ["shortener"]
    return spec["containers"][0]


# --- the Deployment ---------------------------------------------------------

def test_the_database_url_comes_from_the_charts_own_secret_by_default():
    rendered = render(SHORTENER_CHART, {"database": {"url": "postgres://u:p@db:5432/links"}}, name="shortener")
    secret = rendered.one("Secret")
    assert secret["stringData"] == {"database-url": "postgres://u:p@db:5432/links"}
    ref = env_of(container_of(rendered))["DATABASE_URL"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": secret["metadata"]["name"], "key": "database-url"}


def test_an_existing_secret_is_used_and_none_is_created():
    rendered = render(SHORTENER_CHART, {"database": {"existingSecret": "db", "existingSecretKey": "url"}})
    rendered.none("Secret")
    ref = env_of(container_of(rendered))["DATABASE_URL"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "db", "key": "url"}


def test_without_any_database_the_chart_says_what_to_set():
    with pytest.raises(helm.HelmError, match="database.url"):
        render(SHORTENER_CHART, {"database": {"url": ""}})


def test_the_admin_token_is_only_set_when_given():
    assert "SHORTENER_ADMIN_TOKEN" not in env_of(container_of(render(SHORTENER_CHART)))
    own = render(SHORTENER_CHART, {"admin": {"token": "s3cret"}}, name="shortener")
    assert own.one("Secret")["stringData"]["admin-token"] == "s3cret"
    assert env_of(container_of(own))["SHORTENER_ADMIN_TOKEN"]["valueFrom"]["secretKeyRef"] == \
        {"name": "shortener", "key": "admin-token"}
    theirs = render(SHORTENER_CHART, {"admin": {"existingSecret": "adm", "token": "ignored"}})
    assert "admin-token" not in theirs.one("Secret")["stringData"]
    assert env_of(container_of(theirs))["SHORTENER_ADMIN_TOKEN"]["valueFrom"]["secretKeyRef"] == \
        {"name": "adm", "key": "admin-token"}


def test_the_water_marks_reach_the_service_and_no_max_memory_is_set():
    env = env_of(container_of(render(SHORTENER_CHART, {"waterMarks": {"low": 50, "high": 70, "critical": 90}})))
    assert (env["SHORTENER_LOW_WATER_MARK"]["value"], env["SHORTENER_HIGH_WATER_MARK"]["value"],
            env["SHORTENER_CRITICAL_MARK"]["value"]) == ("50", "70", "90")
    assert "SHORTENER_MAX_MEMORY" not in env  # the cgroup limit is read
    assert env["SHORTENER_LISTEN"]["value"] == "0.0.0.0:8080"


def test_the_listen_address_can_be_the_pods_own():
    env = env_of(container_of(render(SHORTENER_CHART, {"listenAddress": "$(POD_IP)"})))
    assert env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    assert env["SHORTENER_LISTEN"]["value"] == "$(POD_IP):8080"
    names = list(env)
    assert names.index("POD_IP") < names.index("SHORTENER_LISTEN")  # $(POD_IP) expands only if defined first


def test_water_marks_out_of_order_are_refused_with_their_values():
    with pytest.raises(helm.HelmError, match=r"low \(80\) < high \(70\)"):
        render(SHORTENER_CHART, {"waterMarks": {"low": 80, "high": 70, "critical": 90}})


def test_env_cannot_define_again_what_the_chart_sets():
    with pytest.raises(helm.HelmError, match=r"env.SHORTENER_HIGH_WATER_MARK is set by the chart from waterMarks.high; set that instead"):
        render(SHORTENER_CHART, {"env": {"SHORTENER_HIGH_WATER_MARK": "90"}})
    with pytest.raises(helm.HelmError, match=r"env.DATABASE_URL is set by the chart from database"):
        render(SHORTENER_CHART, {"env": {"DATABASE_URL": "postgres://elsewhere/db"}})


def test_a_memory_limit_is_required():
    # null removes a default in Helm's merge of values.
    with pytest.raises(helm.HelmError, match="memory"):
        render(SHORTENER_CHART, {"resources": {"limits": {"memory": None}}})


def test_extra_settings_become_environment_variables():
    env = env_of(container_of(render(SHORTENER_CHART, {"env": {"SHORTENER_CACHE_BUDGET": "32MiB",
                                                              "SHORTENER_DB_MAX_CONNECTIONS": 4},
                                                      "baseUrl": "https://s.example.com"})))
    assert env["SHORTENER_CACHE_BUDGET"]["value"] == "32MiB"
    assert env["SHORTENER_DB_MAX_CONNECTIONS"]["value"] == "4"
    assert env["SHORTENER_BASE_URL"]["value"] == "https://s.example.com"


def test_replica_count_image_and_resources_come_from_values():
    resources = {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"cpu": "2", "memory": "512Mi"}}
    rendered = render(SHORTENER_CHART, {"replicaCount": 5, "resources": resources,
                                        "image": {"repository": "registry.example/shortener", "tag": "9.9"}})
    assert rendered.one("Deployment")["spec"]["replicas"] == 5
    container = container_of(rendered)
    assert container["image"] == "registry.example/shortener:9.9"
    assert container["resources"] == resources


def test_a_memory_resize_needs_no_restart_by_default_as_the_service_rereads_its_limit():
    assert container_of(render(SHORTENER_CHART))["resizePolicy"] == \
        [{"resourceName": "memory", "restartPolicy": "NotRequired"}]
    restarting = container_of(render(SHORTENER_CHART, {"resizePolicy": {"memory": "RestartContainer"}}))
    assert restarting["resizePolicy"] == [{"resourceName": "memory", "restartPolicy": "RestartContainer"}]


def test_no_resize_policy_is_rendered_for_a_cluster_older_than_the_field():
    assert "resizePolicy" not in container_of(render(SHORTENER_CHART, kube_version="v1.26.0"))
    assert "resizePolicy" in container_of(render(SHORTENER_CHART, kube_version="v1.27.0"))


@pytest.mark.parametrize("resize_policy", [{"memory": "Never"}, {"memory": "notrequired"}, {"memory": None}])
def test_a_resize_policy_kubernetes_does_not_know_is_refused(resize_policy):
    error = render_error(SHORTENER_CHART, {"resizePolicy": resize_policy})
    assert error.code == -22, error  # HELM_VALUES: values.schema.json refused them
    assert "/resizePolicy" in str(error), str(error)


def test_readiness_follows_readyz_so_a_shedding_pod_leaves_the_service():
    container = container_of(render(SHORTENER_CHART))
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]


def test_the_service_and_the_disruption_budget_select_the_pods():
    rendered = render(SHORTENER_CHART)
    pod_labels = rendered.one("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert rendered.one("Service")["spec"]["selector"].items() <= pod_labels.items()
    assert rendered.one("Service")["spec"]["ports"][0]["targetPort"] == "http"
    assert rendered.one("PodDisruptionBudget")["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()


def test_the_ingress_routes_to_the_service_only_when_enabled():
    render(SHORTENER_CHART).none("Ingress")
    rendered = render(SHORTENER_CHART, {"ingress": {"enabled": True, "className": "nginx",
                                                    "hosts": [{"host": "s.example.com",
                                                               "paths": [{"path": "/", "pathType": "Prefix"}]}],
                                                    "tls": [{"secretName": "tls", "hosts": ["s.example.com"]}]}})
    ingress = rendered.one("Ingress")
    service = rendered.one("Service")
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["spec"]["tls"] == [{"secretName": "tls", "hosts": ["s.example.com"]}]
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": service["metadata"]["name"], "port": {"name": "http"}}


# --- the MemoryPolicy -------------------------------------------------------

def test_the_policy_is_on_by_default_with_seed_like_thresholds_and_targets_the_deployment():
    rendered = render(SHORTENER_CHART, name="shortener", namespace="web")
    policy = rendered.one("MemoryPolicy")
    deployment = rendered.one("Deployment")
    assert policy["apiVersion"] == "shortener.dev/v1alpha1"
    assert policy["metadata"]["namespace"] == "web"
    assert policy["spec"]["targetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                           "name": deployment["metadata"]["name"]}
    assert policy["spec"]["thresholds"] == {"lowWaterMark": 60, "highWaterMark": 80, "critical": 95,
                                            "for": "1m", "staleAfter": "45s"}
    assert (policy["spec"]["onHigh"], policy["spec"]["onCritical"]) == ("ScaleOut", "RestartPod")


def test_the_policys_limits_mirror_the_containers_so_helm_and_the_operator_agree():
    rendered = render(SHORTENER_CHART, {"resources": {"requests": {"cpu": "1", "memory": "100Mi"},
                                                      "limits": {"memory": "300Mi"}}})
    assert rendered.one("MemoryPolicy")["spec"]["limits"] == {"container": "shortener",
                                                              "request": "100Mi", "limit": "300Mi"}
    assert container_of(rendered)["name"] == "shortener"


def test_the_policy_passes_memory_operator_check(operator_bin, tmp_path):
    policies = [render(SHORTENER_CHART, values).one("MemoryPolicy") for values in (
        {},
        {"waterMarks": {"low": 40, "high": 70, "critical": 90}},
        {"memoryPolicy": {"onHigh": "AlertOnly", "onCritical": "RollingRestart", "dryRun": True,
                          "prometheusSource": "long-term",
                          "thresholds": {"lowWaterMark": 30, "highWaterMark": 50, "critical": 85, "for": "30s"},
                          "scaling": {"minReplicas": 3, "maxReplicas": 6, "step": 2}}},
        {"memoryPolicy": {"metricSource": "Custom", "query": "container_memory_working_set_bytes"}},
    )]
    result = check_policies(operator_bin, policies, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("ok: ") == len(policies)


def test_memory_operator_check_refuses_a_policy_the_chart_could_not_catch(operator_bin, tmp_path):
    # Guards the guard: `check` must fail on an unsound policy.
    policy = render(SHORTENER_CHART).one("MemoryPolicy")
    policy["spec"]["scaling"]["minReplicas"] = 20
    result = check_policies(operator_bin, [policy], tmp_path)
    assert result.returncode == 1
    assert "minReplicas" in result.stderr


def test_the_policy_satisfies_the_crds_schema():
    crd = yaml.safe_load(CRD_FILE.read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for values in ({}, {"memoryPolicy": {"thresholds": {"highWaterMark": 75}, "dryRun": True,
                                         "prometheusSource": "long-term"}},
                   {"memoryPolicy": {"onHigh": "RaiseLimit", "raise": {"step": "64Mi", "max": "512Mi"}}}):
        policy = render(SHORTENER_CHART, values).one("MemoryPolicy")
        jsonschema.validate(policy, schema)


def test_the_policy_names_its_metrics_source_when_given_and_otherwise_takes_the_operators_default():
    assert "prometheus" not in render(SHORTENER_CHART).one("MemoryPolicy")["spec"]
    named = render(SHORTENER_CHART, {"memoryPolicy": {"prometheusSource": "long-term"}}).one("MemoryPolicy")
    assert named["spec"]["prometheus"] == {"source": "long-term"}
    digits = render(SHORTENER_CHART, {"memoryPolicy": {"prometheusSource": "42"}}).one("MemoryPolicy")
    assert digits["spec"]["prometheus"] == {"source": "42"}  # a string, as the CRD wants


@pytest.mark.parametrize("values,where", [
    ({"prometheusSource": "Long_Term"}, "/memoryPolicy/prometheusSource"),
    ({"prometheusSource": "a" * 64}, "/memoryPolicy/prometheusSource"),
    ({"prometheusUrl": "http://prom.example:9090"}, "prometheusUrl"),
])
def test_a_source_that_is_no_dns_label_or_a_leftover_url_is_refused(values, where):
    error = render_error(SHORTENER_CHART, {"memoryPolicy": values})
    assert error.code == -22, error  # HELM_VALUES: values.schema.json refused them
    assert where in str(error), str(error)


def test_the_policys_own_thresholds_override_the_water_marks():
    spec = render(SHORTENER_CHART, {"memoryPolicy": {"thresholds": {"highWaterMark": 70, "for": "2m"},
                                                     "scaling": {"minReplicas": 1}}}).one("MemoryPolicy")["spec"]
    assert spec["thresholds"]["highWaterMark"] == 70
    assert spec["thresholds"]["lowWaterMark"] == 60
    assert spec["thresholds"]["for"] == "2m"
    assert spec["scaling"]["minReplicas"] == 1


def test_the_policy_never_scales_in_below_the_replica_count_by_default():
    assert render(SHORTENER_CHART, {"replicaCount": 4}).one("MemoryPolicy")["spec"]["scaling"]["minReplicas"] == 4


RAISE = {"onHigh": "RaiseLimit", "raise": {"step": "64Mi", "max": "512Mi"}}


def test_raise_limit_renders_the_raise_with_its_defaults_and_memory_operator_check_accepts_it(
        operator_bin, tmp_path):
    default = render(SHORTENER_CHART, {"memoryPolicy": RAISE}).one("MemoryPolicy")
    assert default["spec"]["onHigh"] == "RaiseLimit"
    assert default["spec"]["limits"]["raise"] == {"step": "64Mi", "max": "512Mi",
                                                  "allowRestart": False, "timeout": "1m"}
    assert default["spec"]["limits"]["limit"] == "256Mi"  # new pods still start here
    restarting = render(SHORTENER_CHART, {
        "resizePolicy": {"memory": "RestartContainer"},
        "memoryPolicy": {"onHigh": "RaiseLimit", "raise": {"step": "32Mi", "max": "1Gi",
                                                            "allowRestart": True, "timeout": "90s"}},
    }).one("MemoryPolicy")
    assert restarting["spec"]["limits"]["raise"] == {"step": "32Mi", "max": "1Gi",
                                                     "allowRestart": True, "timeout": "90s"}
    result = check_policies(operator_bin, [default, restarting], tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("ok: ") == 2


@pytest.mark.parametrize("raise_values,missing", [
    ({"max": "512Mi"}, "memoryPolicy.raise.step is required with memoryPolicy.onHigh RaiseLimit"),
    ({"step": "64Mi"}, "memoryPolicy.raise.max is required with memoryPolicy.onHigh RaiseLimit"),
    ({"step": "64Mi", "max": ""}, "memoryPolicy.raise.max is required with memoryPolicy.onHigh RaiseLimit"),
])
def test_raise_limit_without_a_step_or_a_max_is_refused_saying_which(raise_values, missing):
    with pytest.raises(helm.HelmError, match=re.escape(missing)):
        render(SHORTENER_CHART, {"memoryPolicy": {"onHigh": "RaiseLimit", "raise": raise_values}})


@pytest.mark.parametrize("on_high", ["ScaleOut", "AlertOnly"])
def test_raise_values_are_left_out_of_a_policy_that_does_not_raise(on_high, operator_bin, tmp_path):
    policy = render(SHORTENER_CHART, {"memoryPolicy": {**RAISE, "onHigh": on_high}}).one("MemoryPolicy")
    assert "raise" not in policy["spec"]["limits"]
    result = check_policies(operator_bin, [policy], tmp_path)  # it refuses a raise without RaiseLimit
    assert result.returncode == 0, result.stderr


def test_prediction_is_off_by_default_and_renders_its_section_when_enabled(operator_bin, tmp_path):
    default = render(SHORTENER_CHART, {}).one("MemoryPolicy")
    assert "prediction" not in default["spec"]
    on = render(SHORTENER_CHART, {"memoryPolicy": {"prediction": {"enabled": True}}}).one("MemoryPolicy")
    assert on["spec"]["prediction"] == {"window": "10m", "horizon": "15m", "minGrowth": "1Mi/min"}
    tuned = render(SHORTENER_CHART, {"memoryPolicy": {"prediction": {
        "enabled": True, "window": "20m", "horizon": "1h", "minGrowth": "512Ki/min"}}}).one("MemoryPolicy")
    assert tuned["spec"]["prediction"] == {"window": "20m", "horizon": "1h", "minGrowth": "512Ki/min"}
    result = check_policies(operator_bin, [on, tuned], tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("ok: ") == 2


def test_a_prediction_window_within_stale_after_is_refused_by_check(operator_bin, tmp_path):
    policy = render(SHORTENER_CHART, {"memoryPolicy": {"prediction": {"enabled": True, "window": "30s"}}}).one("MemoryPolicy")
    result = check_policies(operator_bin, [policy], tmp_path)
    assert result.returncode != 0
    assert "spec.prediction.window must be longer than thresholds.staleAfter" in result.stdout + result.stderr


def test_raise_limit_on_a_container_that_restarts_to_resize_needs_allow_restart():
    values = {"resizePolicy": {"memory": "RestartContainer"}, "memoryPolicy": RAISE}
    with pytest.raises(helm.HelmError, match=r"set memoryPolicy.raise.allowRestart=true, or resizePolicy.memory=NotRequired"):
        render(SHORTENER_CHART, values)


@pytest.mark.parametrize("values,where", [
    ({"onHigh": "RaiseMemory"}, "/memoryPolicy/onHigh"),
    ({"raise": {"step": "a bit"}}, "/memoryPolicy/raise/step"),
    ({"prediction": {"minGrowth": "1Mi"}}, "/memoryPolicy/prediction/minGrowth"),
    ({"prediction": {"minGrowth": "0Mi/min"}}, "/memoryPolicy/prediction/minGrowth"),
    ({"prediction": {"window": "ten minutes"}}, "/memoryPolicy/prediction/window"),
    ({"prediction": {"enable": True}}, "enable"),
    ({"raise": {"max": 536870912}}, "/memoryPolicy/raise/max"),
    ({"raise": {"allowRestart": "yes"}}, "/memoryPolicy/raise/allowRestart"),
    ({"raise": {"timeout": "soon"}}, "/memoryPolicy/raise/timeout"),
    ({"raise": {"stepSize": "64Mi"}}, "stepSize"),
])
def test_malformed_policy_values_are_refused_naming_the_key(values, where):
    error = render_error(SHORTENER_CHART, {"memoryPolicy": values})
    assert error.code == -22, error  # HELM_VALUES: values.schema.json refused them
    assert where in str(error), str(error)


def test_a_disabled_policy_is_not_rendered():
    render(SHORTENER_CHART, {"memoryPolicy": {"enabled": False}}).none("MemoryPolicy")


# --- monitoring -------------------------------------------------------------

def test_monitors_scrape_the_metrics_port_and_only_when_asked():
    default = render(SHORTENER_CHART)
    default.none("ServiceMonitor")
    default.none("PodMonitor")
    rendered = render(SHORTENER_CHART, {"serviceMonitor": {"enabled": True, "labels": {"release": "kps"}}})
    monitor = rendered.one("ServiceMonitor")
    service = rendered.one("Service")
    assert monitor["metadata"]["labels"]["release"] == "kps"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    rendered = render(SHORTENER_CHART, {"podMonitor": {"enabled": True}})
    monitor = rendered.one("PodMonitor")
    pod_labels = rendered.one("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert monitor["spec"]["podMetricsEndpoints"][0]["port"] in {p["name"] for p in container_of(rendered)["ports"]}


def test_two_monitors_at_once_are_refused():
    with pytest.raises(helm.HelmError, match="not both"):
        render(SHORTENER_CHART, {"serviceMonitor": {"enabled": True}, "podMonitor": {"enabled": True}})


def prometheus_rule(values=None):
    rendered = render(SHORTENER_CHART, {"prometheusRule": {"enabled": True}, **(values or {})},
                      name="shortener", namespace="web")
    rule = rendered.one("PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    return rule


def test_the_alerts_mirror_the_water_marks():
    render(SHORTENER_CHART).none("PrometheusRule")
    rules = {r["alert"]: r for g in prometheus_rule({"waterMarks": {"low": 50, "high": 75, "critical": 90}})
             ["spec"]["groups"] for r in g["rules"]}
    assert set(rules) == {"ShortenerMemoryHigh", "ShortenerMemoryCritical", "ShortenerTrimStorm",
                          "ShortenerMemoryGrowth"}
    assert rules["ShortenerMemoryHigh"]["expr"].endswith("> 0.75")
    assert rules["ShortenerMemoryHigh"]["for"] == "5m"
    assert rules["ShortenerMemoryCritical"]["expr"].endswith("> 0.9")
    assert "rate(shortener_memory_trims_total{" in rules["ShortenerTrimStorm"]["expr"]
    assert "predict_linear(shortener_memory_resident_bytes{" in rules["ShortenerMemoryGrowth"]["expr"]
    assert "[30m], 3600) > on (namespace, pod) shortener_memory_limit_bytes{" in rules["ShortenerMemoryGrowth"]["expr"]
    # Prometheus's own templates survive Helm's.
    assert "{{ $labels.pod }}" in rules["ShortenerMemoryHigh"]["annotations"]["summary"]
    assert {r["labels"]["severity"] for r in rules.values()} == {"warning", "critical"}


promtool = pytest.mark.skipif(shutil.which("promtool") is None,
                              reason="promtool not installed (Debian: apt-get install prometheus)")


@promtool
def test_promtool_accepts_the_rules(tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": prometheus_rule()["spec"]["groups"]}))
    result = subprocess.run(["promtool", "check", "rules", rules], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@promtool
def test_the_alerts_fire_on_pressure_and_stay_quiet_otherwise(tmp_path):
    groups = prometheus_rule()["spec"]["groups"]
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}))
    described = {r["alert"]: r["annotations"]["description"] for g in groups for r in g["rules"]}
    hot, calm = POD, "shortener-5d9c7b8f4-zzzzz"

    def series(metric, pod, values, **labels):
        extra = "".join(f', {k}="{v}"' for k, v in labels.items())
        return {"series": f'{metric}{{namespace="web", pod="{pod}"{extra}}}', "values": values}

    def alert(name, severity, summary):
        return {"exp_labels": {"severity": severity, "namespace": "web", "pod": hot},
                "exp_annotations": {"summary": summary, "description": described[name]}}

    tests = {"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": [
        {"name": "high usage for five minutes warns",
         "interval": "1m",
         "input_series": [series("shortener_memory_usage_ratio", hot, "0.85x20"),
                          series("shortener_memory_usage_ratio", calm, "0.5x20")],
         "alert_rule_test": [
             {"eval_time": "3m", "alertname": "ShortenerMemoryHigh", "exp_alerts": []},
             {"eval_time": "10m", "alertname": "ShortenerMemoryHigh", "exp_alerts": [
                 alert("ShortenerMemoryHigh", "warning", f"{hot} uses 85% of its memory limit")]},
             {"eval_time": "10m", "alertname": "ShortenerMemoryCritical", "exp_alerts": []}]},
        {"name": "critical usage pages",
         "interval": "1m",
         "input_series": [series("shortener_memory_usage_ratio", hot, "0.97x10")],
         "alert_rule_test": [
             {"eval_time": "5m", "alertname": "ShortenerMemoryCritical", "exp_alerts": [
                 alert("ShortenerMemoryCritical", "critical",
                       f"{hot} uses 97% of its memory limit and sheds load")]}]},
        {"name": "a trim storm warns, occasional trims do not",
         "interval": "1m",
         "input_series": [series("shortener_memory_trims_total", hot, "0+5x40", reason="high_water"),
                          series("shortener_memory_trims_total", calm, "0+1x40", reason="high_water")],
         "alert_rule_test": [
             {"eval_time": "25m", "alertname": "ShortenerTrimStorm", "exp_alerts": [
                 alert("ShortenerTrimStorm", "warning", f"{hot} trims 5 times a minute")]}]},
        {"name": "steady growth towards the limit warns, a flat line does not",
         "interval": "1m",
         "input_series": [series("shortener_memory_resident_bytes", hot, "50000000+3000000x90"),
                          series("shortener_memory_limit_bytes", hot, "268435456x90"),
                          series("shortener_memory_resident_bytes", calm, "200000000x90"),
                          series("shortener_memory_limit_bytes", calm, "268435456x90")],
         "alert_rule_test": [
             {"eval_time": "20m", "alertname": "ShortenerMemoryGrowth", "exp_alerts": []},
             {"eval_time": "60m", "alertname": "ShortenerMemoryGrowth", "exp_alerts": [
                 alert("ShortenerMemoryGrowth", "warning",
                       f"{hot} is on course to hit its memory limit within an hour")]}]},
    ]}
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests, sort_keys=False))
    result = subprocess.run(["promtool", "test", "rules", "tests.yaml"], cwd=tmp_path,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def dashboard_json(values=None) -> str:
    config_map = render(SHORTENER_CHART, values, name="shortener", namespace="web").one("ConfigMap")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    return config_map["data"]["shortener.json"]


def dashboard(values=None) -> dict:
    return json.loads(dashboard_json(values))


def test_the_dashboard_plots_usage_against_the_water_marks():
    board = dashboard({"waterMarks": {"low": 50, "high": 75, "critical": 90}})
    usage = next(p for p in board["panels"] if "water marks" in p["title"])
    assert "shortener_memory_usage_ratio" in usage["targets"][0]["expr"]
    steps = usage["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert [s["value"] for s in steps] == [None, 0.5, 0.75, 0.9]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["namespace"]["current"]["value"] == "web"


def test_the_dashboard_shows_trims_shedding_and_operator_actions():
    exprs = " ".join(t["expr"] for p in dashboard()["panels"] for t in p["targets"])
    for metric in ("shortener_memory_trims_total", "shortener_load_shed_total", "shortener_memory_shedding",
                   "memory_operator_actions_total", "shortener_memory_resident_bytes",
                   "shortener_memory_limit_bytes"):
        assert metric in exprs, metric
    assert not re.search(r"@[A-Z_]+@", dashboard_json()), "a placeholder was left unreplaced"


def test_the_dashboard_can_be_left_out():
    render(SHORTENER_CHART, {"grafanaDashboard": {"enabled": False}}).none("ConfigMap")


def test_the_notes_say_how_to_try_it_and_watch_the_policy():
    notes = render(SHORTENER_CHART, name="shortener", namespace="web").notes
    for text in ("port-forward svc/shortener", "/api/v1/links", "kubectl -n web get mempol shortener",
                 "memory-operator backtest", "serviceMonitor.enabled=true"):
        assert text in notes, text
    without_policy = render(SHORTENER_CHART, {"memoryPolicy": {"enabled": False}}).notes
    assert "get mempol" not in without_policy
    assert "memoryPolicy.enabled=false" in without_policy
