"""The memory-operator chart: the CRD it ships, the permissions it grants, and
the Deployment that runs two replicas under leader election."""

from __future__ import annotations

import helm_python as helm
import pytest
import yaml

from conftest import CRD_FILE, OPERATOR_CHART, env_of, render, render_error, validate_core


def operator_container(rendered):
    return rendered.one("Deployment")["spec"]["template"]["spec"]["containers"][0]


def test_the_chart_ships_the_crd_byte_for_byte():
    shipped = OPERATOR_CHART / "crds" / CRD_FILE.name
    assert shipped.read_bytes() == CRD_FILE.read_bytes(), \
        "charts/memory-operator/crds/ drifted: cp crds/memorypolicy.yaml charts/memory-operator/crds/"
    with helm.Chart.load(OPERATOR_CHART) as chart:
        crds = chart.crds
    assert [c["filename"] for c in crds] == [f"memory-operator/crds/{CRD_FILE.name}"]
    assert crds[0]["data"].encode() == CRD_FILE.read_bytes()


def test_the_crd_is_a_valid_kubernetes_object_with_the_mempol_short_name():
    crd = yaml.safe_load(CRD_FILE.read_text())
    validate_core(crd)
    assert "mempol" in crd["spec"]["names"]["shortNames"]


def test_the_granted_rules_are_exactly_the_operators_permissions(operator_permissions):
    rendered = render(OPERATOR_CHART)
    cluster_rules = rendered.one("ClusterRole")["rules"]
    namespaced_rules = rendered.one("Role")["rules"]
    granted = cluster_rules + namespaced_rules
    key = lambda rule: (rule["apiGroups"], rule["resources"], rule["verbs"])  # noqa: E731
    assert sorted(map(key, granted)) == sorted(map(key, operator_permissions))
    assert len(granted) == len(operator_permissions), "a rule is granted twice"


def test_nothing_is_granted_with_a_wildcard():
    rendered = render(OPERATOR_CHART)
    for rule in rendered.one("ClusterRole")["rules"] + rendered.one("Role")["rules"]:
        for field in ("apiGroups", "resources", "verbs"):
            assert not any("*" in item for item in rule[field]), rule


def test_only_the_lease_is_namespaced_to_the_operators_own_namespace():
    rendered = render(OPERATOR_CHART, namespace="ops")
    role = rendered.one("Role")
    assert role["metadata"]["namespace"] == "ops"
    assert [r["resources"] for r in role["rules"]] == [["leases"]]
    assert not any("leases" in r["resources"] for r in rendered.one("ClusterRole")["rules"])


def test_the_bindings_give_the_roles_to_the_pods_service_account():
    rendered = render(OPERATOR_CHART, namespace="ops")
    account = rendered.one("ServiceAccount")["metadata"]["name"]
    assert rendered.one("Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == account
    for kind, role_kind in (("ClusterRoleBinding", "ClusterRole"), ("RoleBinding", "Role")):
        binding = rendered.one(kind)
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind,
                                      "name": rendered.one(role_kind)["metadata"]["name"]}
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account, "namespace": "ops"}]


def test_an_existing_service_account_is_used_as_is():
    rendered = render(OPERATOR_CHART, {"serviceAccount": {"create": False, "name": "ops"}})
    rendered.none("ServiceAccount")
    assert rendered.one("Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "ops"
    assert rendered.one("ClusterRoleBinding")["subjects"][0]["name"] == "ops"


def test_two_replicas_run_with_leader_election_and_know_who_they_are():
    rendered = render(OPERATOR_CHART, name="memory-operator", namespace="ops")
    assert rendered.one("Deployment")["spec"]["replicas"] == 2
    container = operator_container(rendered)
    assert container["args"] == ["run"]
    env = env_of(container)
    assert env["LEADER_ELECTION"]["value"] == "true"
    assert env["LEASE_NAME"]["value"] == "memory-operator"
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["POD_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}


def test_the_answer_limits_reach_the_operator():
    env = env_of(operator_container(render(OPERATOR_CHART)))
    assert env["PROMETHEUS_MAX_ANSWER_BYTES"]["value"] == "8388608"
    assert env["PROMETHEUS_MAX_SERIES"]["value"] == "10000"
    limits = {"prometheusLimits": {"maxAnswerBytes": 1048576, "maxSeries": 500}}
    env = env_of(operator_container(render(OPERATOR_CHART, limits)))
    assert env["PROMETHEUS_MAX_ANSWER_BYTES"]["value"] == "1048576"
    assert env["PROMETHEUS_MAX_SERIES"]["value"] == "500"
    with pytest.raises(helm.HelmError, match="maxSeries"):
        render(OPERATOR_CHART, {"prometheusLimits": {"maxAnswerBytes": 1048576, "maxSeries": 0}})


SECURED = {"name": "default", "url": "https://prometheus.monitoring:9090", "timeout": "10s",
           "bearerToken": {"secret": "prometheus-reader", "key": "reader-token"},
           "ca": {"configMap": "monitoring-ca", "key": "bundle.pem"},
           "clientCert": {"secret": "operator-client-tls"}}
THANOS = {"name": "long-term", "url": "https://thanos.monitoring:10902",
          "serviceAccountToken": {"audience": "thanos"}}


def sources_of(rendered) -> list[dict]:
    """The operator's sources.yaml, read back from the ConfigMap the Deployment mounts."""
    config_map = rendered.one("ConfigMap")
    pod = rendered.one("Deployment")["spec"]["template"]["spec"]
    mounted = {v["name"]: v for v in pod["volumes"]}
    config = next(m for m in operator_container(rendered)["volumeMounts"]
                  if mounted[m["name"]].get("configMap", {}).get("name") == config_map["metadata"]["name"])
    assert env_of(operator_container(rendered))["PROMETHEUS_SOURCES"]["value"] == \
        f'{config["mountPath"]}/sources.yaml'
    return yaml.safe_load(config_map["data"]["sources.yaml"])["sources"]


def projected_files(rendered) -> dict[str, dict]:
    """Each file a projected volume puts in the container, by its path, with where it comes from."""
    volumes = {v["name"]: v for v in rendered.one("Deployment")["spec"]["template"]["spec"]["volumes"]}
    files = {}
    for mount in operator_container(rendered)["volumeMounts"]:
        assert mount["readOnly"] is True, mount
        for source in volumes[mount["name"]].get("projected", {}).get("sources", []):
            (kind, projection), = source.items()
            for item in projection.get("items", [projection]):
                files[f'{mount["mountPath"]}/{item["path"]}'] = {kind: projection.get("name", projection),
                                                                 "key": item.get("key")}
    return files


def test_by_default_the_operator_takes_prometheus_url_from_its_environment_and_mounts_nothing():
    rendered = render(OPERATOR_CHART, {"prometheusUrl": "http://prom.example:9090"})
    rendered.none("ConfigMap")
    env = env_of(operator_container(rendered))
    assert env["PROMETHEUS_URL"]["value"] == "http://prom.example:9090"
    assert "PROMETHEUS_SOURCES" not in env
    pod = rendered.one("Deployment")["spec"]["template"]
    assert "volumes" not in pod["spec"]
    assert "volumeMounts" not in operator_container(rendered)
    assert "checksum/sources" not in pod["metadata"].get("annotations", {})


def test_given_sources_the_operator_reads_them_from_a_mounted_config_map_instead_of_prometheus_url():
    plain = {"name": "default", "url": "http://prom.example:9090"}
    rendered = render(OPERATOR_CHART, {"prometheusSources": [plain]}, name="memory-operator")
    assert rendered.one("ConfigMap")["metadata"]["name"] == "memory-operator-sources"
    assert sources_of(rendered) == [plain]
    env = env_of(operator_container(rendered))
    assert env["PROMETHEUS_SOURCES"]["value"] == "/etc/memory-operator/config/sources.yaml"
    assert "PROMETHEUS_URL" not in env
    assert projected_files(rendered) == {}


def test_a_source_with_a_token_a_ca_and_a_client_certificate_reads_them_from_a_read_only_volume():
    rendered = render(OPERATOR_CHART, {"prometheusSources": [SECURED]})
    directory = "/etc/memory-operator/sources/default"
    assert sources_of(rendered) == [{
        "name": "default", "url": "https://prometheus.monitoring:9090", "timeout": "10s",
        "bearerTokenFile": f"{directory}/token", "caFile": f"{directory}/ca.crt",
        "clientCertFile": f"{directory}/tls.crt", "clientKeyFile": f"{directory}/tls.key"}]
    assert projected_files(rendered) == {
        f"{directory}/token": {"secret": "prometheus-reader", "key": "reader-token"},
        f"{directory}/ca.crt": {"configMap": "monitoring-ca", "key": "bundle.pem"},
        f"{directory}/tls.crt": {"secret": "operator-client-tls", "key": "tls.crt"},
        f"{directory}/tls.key": {"secret": "operator-client-tls", "key": "tls.key"}}


def test_keys_default_to_token_and_ca_crt_and_a_ca_may_come_from_a_secret():
    source = {"name": "default", "url": "https://p:9090", "bearerToken": {"secret": "reader"},
              "ca": {"secret": "monitoring-ca"}}
    files = projected_files(render(OPERATOR_CHART, {"prometheusSources": [source]}))
    assert files == {"/etc/memory-operator/sources/default/token": {"secret": "reader", "key": "token"},
                     "/etc/memory-operator/sources/default/ca.crt": {"secret": "monitoring-ca", "key": "ca.crt"}}


def test_a_service_account_token_is_projected_for_the_sources_audience():
    rendered = render(OPERATOR_CHART, {"prometheusSources": [SECURED, THANOS]})
    sources = {s["name"]: s for s in sources_of(rendered)}
    assert sources["long-term"] == {"name": "long-term", "url": "https://thanos.monitoring:10902",
                                    "bearerTokenFile": "/etc/memory-operator/sources/long-term/token"}
    token = projected_files(rendered)["/etc/memory-operator/sources/long-term/token"]
    assert token == {"serviceAccountToken": {"audience": "thanos", "expirationSeconds": 3600, "path": "token"},
                     "key": None}


def test_every_file_sources_yaml_names_is_mounted():
    sources = {"prometheusSources": [SECURED, THANOS, {"name": "plain", "url": "http://p:9090"}]}
    rendered = render(OPERATOR_CHART, sources)
    named = {path for source in sources_of(rendered) for field, path in source.items() if field.endswith("File")}
    assert named == set(projected_files(rendered))


def test_the_pods_restart_when_a_source_changes_and_keep_their_own_annotations():
    def annotations(values):
        return render(OPERATOR_CHART, values).one("Deployment")["spec"]["template"]["metadata"].get("annotations")
    secured = annotations({"prometheusSources": [SECURED]})["checksum/sources"]
    assert annotations({"prometheusSources": [SECURED]})["checksum/sources"] == secured
    assert annotations({"prometheusSources": [{**SECURED, "timeout": "5s"}]})["checksum/sources"] != secured
    assert annotations({"prometheusSources": [SECURED, THANOS]})["checksum/sources"] != secured
    own = {"prometheus.io/scrape": "true"}
    assert annotations({"prometheusSources": [SECURED], "podAnnotations": own}) == \
        {"checksum/sources": secured, **own}
    assert annotations({}) is None
    assert annotations({"podAnnotations": own}) == own


@pytest.mark.parametrize("source,where", [
    ({"name": "Default", "url": "http://p:9090"}, "/prometheusSources/0/name"),
    ({"name": "a" * 64, "url": "http://p:9090"}, "/prometheusSources/0/name"),
    ({"name": "default", "url": "prometheus:9090"}, "/prometheusSources/0/url"),
    ({"name": "default", "url": "ftp://p:9090"}, "/prometheusSources/0/url"),
    ({"name": "default", "url": "http://p:9090", "timeout": "10"}, "/prometheusSources/0/timeout"),
    ({"name": "default", "url": "http://p:9090", "insecure": True}, "insecure"),
    ({"name": "default", "url": "http://p:9090", "bearerToken": {"secret": "s", "file": "/t"}}, "file"),
    ({"name": "default", "url": "http://p:9090", "ca": {"key": "ca.crt"}}, "/prometheusSources/0/ca"),
    ({"name": "default", "url": "http://p:9090", "clientCert": {}}, "/prometheusSources/0/clientCert"),
    ({"name": "default", "url": "http://p:9090", "serviceAccountToken": {"expirationSeconds": 3600}},
     "/prometheusSources/0/serviceAccountToken"),
    ({"url": "http://p:9090"}, "name"),
])
def test_the_schema_refuses_a_malformed_source_naming_the_key(source, where):
    error = render_error(OPERATOR_CHART, {"prometheusSources": [source]})
    assert error.code == -22, error  # HELM_VALUES: values.schema.json refused them
    assert where in str(error), str(error)


def test_two_sources_of_one_name_are_refused():
    with pytest.raises(helm.HelmError, match=r'prometheusSources\[1\] \(default\): the name "default" is taken '
                                             r"by prometheusSources\[0\]"):
        render(OPERATOR_CHART, {"prometheusSources": [SECURED, {"name": "default", "url": "http://p:9090"}]})


def test_a_source_with_both_a_bearer_token_and_a_service_account_token_is_refused():
    both = {**SECURED, "serviceAccountToken": {"audience": "prometheus"}}
    with pytest.raises(helm.HelmError, match=r"prometheusSources\[0\] \(default\): bearerToken and "
                                             r"serviceAccountToken both set"):
        render(OPERATOR_CHART, {"prometheusSources": [both]})


def test_a_ca_from_both_a_config_map_and_a_secret_is_refused():
    both = {**SECURED, "ca": {"configMap": "monitoring-ca", "secret": "monitoring-ca"}}
    with pytest.raises(helm.HelmError, match=r"ca names both a configMap and a secret"):
        render(OPERATOR_CHART, {"prometheusSources": [both]})


def test_a_long_source_name_still_makes_a_valid_volume_name():
    names = ["a" * 63, "a" * 62 + "b"]
    rendered = render(OPERATOR_CHART, {"prometheusSources": [
        {"name": name, "url": "http://p:9090", "bearerToken": {"secret": "reader"}} for name in names]})
    volumes = [v["name"] for v in rendered.one("Deployment")["spec"]["template"]["spec"]["volumes"]]
    assert len(set(volumes)) == 3
    assert all(len(v) <= 63 for v in volumes), volumes
    validate_core(rendered.one("Deployment"))


def test_the_listen_address_serves_the_probed_and_scraped_port():
    rendered = render(OPERATOR_CHART, {"port": 9443})
    container = operator_container(rendered)
    assert env_of(container)["OPERATOR_LISTEN"]["value"] == "0.0.0.0:9443"
    ours = env_of(operator_container(render(OPERATOR_CHART, {"listenAddress": "$(POD_IP)"})))
    assert ours["OPERATOR_LISTEN"]["value"] == "$(POD_IP):8080"
    assert list(ours).index("POD_IP") < list(ours).index("OPERATOR_LISTEN")
    assert container["ports"] == [{"name": "metrics", "containerPort": 9443, "protocol": "TCP"}]
    service = rendered.one("Service")
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"


def test_readiness_probes_readyz_which_standby_replicas_also_pass():
    # The operator's /readyz is ready once the API server answers for
    # MemoryPolicies, leading or standing by, so rollouts and drains proceed.
    elected = operator_container(render(OPERATOR_CHART))
    assert elected["readinessProbe"]["httpGet"]["path"] == "/readyz"
    single = operator_container(render(OPERATOR_CHART, {"replicaCount": 1, "leaderElection": {"enabled": False}}))
    assert single["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert env_of(single)["LEADER_ELECTION"]["value"] == "false"
    chosen = operator_container(render(OPERATOR_CHART, {"probes": {"readinessPath": "/healthz"}}))
    assert chosen["readinessProbe"]["httpGet"]["path"] == "/healthz"


def test_several_replicas_without_leader_election_are_refused():
    with pytest.raises(helm.HelmError, match="leaderElection"):
        render(OPERATOR_CHART, {"replicaCount": 2, "leaderElection": {"enabled": False}})


def test_replica_count_image_and_resources_come_from_values():
    resources = {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"cpu": "2", "memory": "1Gi"}}
    rendered = render(OPERATOR_CHART, {"replicaCount": 3, "resources": resources,
                                       "image": {"repository": "registry.example/memory-operator", "tag": "1.2.3"}})
    assert rendered.one("Deployment")["spec"]["replicas"] == 3
    container = operator_container(rendered)
    assert container["image"] == "registry.example/memory-operator:1.2.3"
    assert container["resources"] == resources


def test_the_image_tag_defaults_to_the_app_version():
    with helm.Chart.load(OPERATOR_CHART) as chart:
        app_version = chart.metadata["appVersion"]
    assert operator_container(render(OPERATOR_CHART))["image"] == f"memory-operator:{app_version}"


def test_the_disruption_budget_covers_the_operators_pods():
    rendered = render(OPERATOR_CHART)
    pdb = rendered.one("PodDisruptionBudget")
    pod_labels = rendered.one("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    render(OPERATOR_CHART, {"podDisruptionBudget": {"enabled": False}}).none("PodDisruptionBudget")


def test_the_service_monitor_scrapes_the_metrics_service_and_only_when_asked():
    render(OPERATOR_CHART).none("ServiceMonitor")
    rendered = render(OPERATOR_CHART, {"serviceMonitor": {"enabled": True, "interval": "15s",
                                                          "labels": {"release": "prometheus"}}},
                      namespace="ops")
    monitor = rendered.one("ServiceMonitor")
    service = rendered.one("Service")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["ops"]}
    assert monitor["spec"]["endpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "15s",
                                             "scrapeTimeout": "10s"}]
    assert monitor["spec"]["endpoints"][0]["port"] in {p["name"] for p in service["spec"]["ports"]}


def test_prometheus_rule_is_accepted_and_changes_nothing():
    assert render(OPERATOR_CHART, {"prometheusRule": {"enabled": True}}).docs == render(OPERATOR_CHART).docs


def test_the_notes_say_what_to_do_next():
    notes = render(OPERATOR_CHART, namespace="ops").notes
    for step in ("kubectl apply -f crds/", "memory-operator check", "memory-operator backtest",
                 "kubectl apply -f my-policy.yaml", "kubectl get mempol", "kubectl describe mempol",
                 "get lease memory-operator"):
        assert step in notes, step
    assert "this release defines one, from prometheusUrl" in notes
    assert "default: http://prometheus.monitoring:9090" in notes
    assert "every policy must name its source" not in notes


def test_the_notes_list_the_sources_and_warn_when_none_is_default():
    notes = render(OPERATOR_CHART, {"prometheusSources": [THANOS]}).notes
    assert "from prometheusSources:\n     long-term: https://thanos.monitoring:10902\n" in notes
    assert "prometheusUrl" not in notes
    assert 'None is named "default": every policy must name its source.' in notes


def test_the_network_policy_lets_the_operator_reach_dns_the_api_server_and_prometheus_only():
    render(OPERATOR_CHART).none("NetworkPolicy")
    api_server = [{"ipBlock": {"cidr": "10.0.0.1/32"}}]
    prometheus = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    rendered = render(OPERATOR_CHART, {"networkPolicy": {
        "enabled": True, "apiServer": {"to": api_server}, "prometheus": {"to": prometheus}}})
    policy = rendered.one("NetworkPolicy")["spec"]
    selector = rendered.one("Deployment")["spec"]["selector"]["matchLabels"]
    assert policy["podSelector"]["matchLabels"] == selector
    assert policy["policyTypes"] == ["Egress"]
    dns, to_api_server, to_prometheus = policy["egress"]
    assert {p["protocol"] for p in dns["ports"]} == {"UDP", "TCP"}
    assert to_api_server == {"to": api_server, "ports": [{"port": 443, "protocol": "TCP"},
                                                          {"port": 6443, "protocol": "TCP"}]}
    assert to_prometheus == {"to": prometheus, "ports": [{"port": 9090, "protocol": "TCP"}]}
    without_dns = render(OPERATOR_CHART, {"networkPolicy": {
        "enabled": True, "dns": False, "apiServer": {"to": api_server}, "prometheus": {"to": prometheus}}})
    assert len(without_dns.one("NetworkPolicy")["spec"]["egress"]) == 2


def test_a_network_policy_without_peers_is_refused_rather_than_open():
    with pytest.raises(helm.HelmError, match="networkPolicy.apiServer.to is required"):
        render(OPERATOR_CHART, {"networkPolicy": {"enabled": True}})
    with pytest.raises(helm.HelmError, match="networkPolicy.prometheus.to is required"):
        render(OPERATOR_CHART, {"networkPolicy": {
            "enabled": True, "apiServer": {"to": [{"ipBlock": {"cidr": "10.0.0.1/32"}}]}}})
