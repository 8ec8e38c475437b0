//! The real kube-runtime controller against the fake API server.

mod support;

use std::time::Duration;

use serde_json::json;
use support::{Cluster, NS, eventually, pause};

fn is(c: Option<(String, String, String)>, status: &str) -> bool {
    c.is_some_and(|(s, _, _)| s == status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_policy_gets_its_conditions() {
    let cluster = Cluster::start(&["web-a", "web-b"], 1).await;
    cluster.prometheus.set("web-a", 30.0);
    cluster.prometheus.set("web-b", 40.0);
    cluster.policy("calm", "web", json!({}));
    eventually("Ready=True", || {
        is(cluster.condition("calm", "Ready"), "True")
    })
    .await;
    for (type_, status) in [
        ("MetricsAvailable", "True"),
        ("HighMemory", "False"),
        ("Critical", "False"),
        ("Throttled", "False"),
        ("DryRun", "False"),
    ] {
        assert!(
            is(cluster.condition("calm", type_), status),
            "{type_}: {:?}",
            cluster.condition("calm", type_)
        );
    }
    let status = &cluster.policy_object("calm")["status"];
    assert_eq!(status["observedGeneration"], 1);
    assert_eq!(status["replicas"], 2);
    assert_eq!(status["maxUsage"], 40.0);
    assert_eq!(status["state"], "Normal");
    assert_eq!(status["pods"][0]["name"], "web-b");
    assert!(cluster.requests_to("POST", "/eviction").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_critical_pod_is_evicted_and_the_others_are_not() {
    let cluster = Cluster::start(&["web-a", "web-b"], 1).await;
    cluster.prometheus.set("web-a", 97.0);
    cluster.prometheus.set("web-b", 30.0);
    cluster.policy("guard", "web", json!({}));
    eventually("an eviction", || {
        !cluster.requests_to("POST", "/eviction").is_empty()
    })
    .await;
    let evictions = cluster.requests_to("POST", "/eviction");
    assert_eq!(evictions.len(), 1, "{evictions:?}");
    assert!(evictions[0].starts_with(&format!("/api/v1/namespaces/{NS}/pods/web-a/eviction")));
    assert!(
        cluster.api.get("v1", "Pod", NS, "web-a").is_none(),
        "web-a was evicted"
    );
    assert!(cluster.api.get("v1", "Pod", NS, "web-b").is_some());
    eventually("a PodEvicted event", || {
        cluster
            .event_reasons("MemoryPolicy")
            .contains(&"PodEvicted".to_owned())
    })
    .await;
    assert!(
        cluster
            .event_reasons("Deployment")
            .contains(&"PodEvicted".to_owned())
    );
    eventually("lastAction RestartPod", || {
        cluster.policy_object("guard")["status"]["lastAction"]["type"] == "RestartPod"
    })
    .await;
    assert!(is(cluster.condition("guard", "Critical"), "True"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn high_memory_scales_out_by_step() {
    let cluster = Cluster::start(&["web-a", "web-b"], 1).await;
    cluster.prometheus.set("web-a", 85.0);
    cluster.prometheus.set("web-b", 88.0);
    cluster.policy("grow", "web", json!({"scaling": {"step": 2}}));
    eventually("a scale to 4", || {
        cluster
            .api
            .get("apps/v1", "Deployment", NS, "web")
            .is_some_and(|d| d["spec"]["replicas"] == 4)
    })
    .await;
    assert_eq!(
        cluster.requests_to("PATCH", "/deployments/web/scale").len(),
        1
    );
    eventually("a ScaledOut event", || {
        cluster
            .event_reasons("MemoryPolicy")
            .contains(&"ScaledOut".to_owned())
    })
    .await;
    eventually("HighMemory=True", || {
        is(cluster.condition("grow", "HighMemory"), "True")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_sets_the_annotation() {
    let cluster = Cluster::start(&["web-a", "web-b"], 1).await;
    cluster.prometheus.set("web-a", 99.0);
    cluster.prometheus.set("web-b", 20.0);
    cluster.policy("roll", "web", json!({"onCritical": "RollingRestart"}));
    eventually("the restartedAt annotation", || {
        cluster.api.get("apps/v1", "Deployment", NS, "web").is_some_and(|d| {
            d["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"].is_string()
        })
    })
    .await;
    assert!(cluster.requests_to("POST", "/eviction").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflict_on_the_status_write_is_retried() {
    let cluster = Cluster::start(&["web-a"], 1).await;
    cluster.prometheus.set("web-a", 30.0);
    cluster
        .api
        .fail_next("PATCH", "/memorypolicies/retry/status", 409, 2);
    cluster.policy("retry", "web", json!({}));
    eventually("Ready=True after the conflicts", || {
        is(cluster.condition("retry", "Ready"), "True")
    })
    .await;
    assert!(
        cluster
            .metrics
            .encode()
            .contains(r#"memory_operator_reconcile_errors_total{kind="kube"} 2"#)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eviction_refused_by_the_disruption_budget_is_reported_and_not_counted() {
    let cluster = Cluster::start(&["web-a", "web-b"], 0).await;
    cluster.prometheus.set("web-a", 97.0);
    cluster.prometheus.set("web-b", 30.0);
    cluster.policy("blocked", "web", json!({}));
    eventually("an ActionFailed event", || {
        cluster
            .event_reasons("MemoryPolicy")
            .contains(&"ActionFailed".to_owned())
    })
    .await;
    let note = cluster
        .api
        .events_of("MemoryPolicy")
        .into_iter()
        .find(|e| e["reason"] == "ActionFailed")
        .unwrap()["note"]
        .clone();
    assert!(
        note.as_str().unwrap().contains("PodDisruptionBudget"),
        "{note}"
    );
    assert!(cluster.api.get("v1", "Pod", NS, "web-a").is_some());
    // Refused evictions do not count: the controller keeps trying (no cooldown).
    let tried = cluster.requests_to("POST", "/eviction").len();
    eventually("another try", || {
        cluster.requests_to("POST", "/eviction").len() > tried
    })
    .await;
    assert!(cluster.policy_object("blocked")["status"]["lastAction"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_whose_target_is_missing_is_not_ready_and_others_keep_working() {
    let cluster = Cluster::start(&["web-a"], 1).await;
    cluster.prometheus.set("web-a", 30.0);
    cluster.policy("ghost", "nowhere", json!({}));
    cluster.policy("fine", "web", json!({}));
    eventually("ghost Ready=False", || {
        is(cluster.condition("ghost", "Ready"), "False")
    })
    .await;
    let (_, reason, message) = cluster.condition("ghost", "Ready").unwrap();
    assert_eq!(reason, "TargetNotFound");
    assert!(message.contains("shop/nowhere"), "{message}");
    eventually("fine Ready=True", || {
        is(cluster.condition("fine", "Ready"), "True")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_policy_says_which_field_is_wrong() {
    let cluster = Cluster::start(&["web-a"], 1).await;
    cluster.policy(
        "bad",
        "web",
        json!({"thresholds": {"lowWaterMark": 80, "highWaterMark": 60}}),
    );
    eventually("bad Ready=False", || {
        is(cluster.condition("bad", "Ready"), "False")
    })
    .await;
    let (_, reason, message) = cluster.condition("bad", "Ready").unwrap();
    assert_eq!(reason, "InvalidPolicy");
    assert!(
        message.contains("spec.thresholds.lowWaterMark (80) must be below highWaterMark (60)"),
        "{message}"
    );
    // Re-checked every interval, but its status is written once: each write would wake the
    // policy's reconcile again.
    let writes = || {
        cluster
            .requests_to("PATCH", "/memorypolicies/bad/status")
            .len()
    };
    let before = writes();
    pause(Duration::from_secs(3)).await;
    assert_eq!(writes(), before, "an unchanged status was written again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_policy_says_which_field_and_the_others_keep_working() {
    let cluster = Cluster::start(&["web-a"], 1).await;
    cluster.policy("explode", "web", json!({"onCritical": "Explode"}));
    cluster.policy("sound", "web", json!({}));
    eventually("explode Ready=False and sound Ready=True", || {
        is(cluster.condition("explode", "Ready"), "False")
            && is(cluster.condition("sound", "Ready"), "True")
    })
    .await;
    let (_, reason, message) = cluster.condition("explode", "Ready").unwrap();
    assert_eq!(reason, "Unreadable");
    assert!(
        message.starts_with(
            "the operator cannot read this policy: spec.onCritical: unknown variant `Explode`"
        ),
        "{message}"
    );
    assert_eq!(
        cluster.policy_object("explode")["status"]["state"],
        "Invalid"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_metrics_never_act_and_say_why() {
    let cluster = Cluster::start(&["web-a", "web-b"], 1).await;
    cluster.policy("blind", "web", json!({}));
    eventually("MetricsAvailable=False", || {
        is(cluster.condition("blind", "MetricsAvailable"), "False")
    })
    .await;
    pause(Duration::from_secs(2)).await;
    assert!(cluster.requests_to("POST", "/eviction").is_empty());
    assert!(cluster.requests_to("PATCH", "/scale").is_empty());
    assert_eq!(cluster.policy_object("blind")["status"]["state"], "NoData");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_evaluation_sends_one_query_whatever_the_pod_count() {
    let pods: Vec<String> = (0..20).map(|i| format!("web-{i}")).collect();
    let names: Vec<&str> = pods.iter().map(String::as_str).collect();
    let cluster = Cluster::start(&names, 1).await;
    for pod in &names {
        cluster.prometheus.set(pod, 30.0);
    }
    cluster.policy("many", "web", json!({}));
    eventually("three evaluations", || {
        cluster
            .metrics
            .encode()
            .contains("memory_operator_decisions_total{kind=\"none\"} 3")
    })
    .await;
    let text = cluster.metrics.encode();
    let queries = cluster.prometheus.queries();
    assert!(
        (3..=4).contains(&queries),
        "{queries} queries for 3 evaluations\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_reports_what_it_would_do_and_changes_nothing() {
    let cluster = Cluster::start(&["web-a", "web-b"], 1).await;
    cluster.prometheus.set("web-a", 97.0);
    cluster.prometheus.set("web-b", 30.0);
    cluster.policy("rehearse", "web", json!({"dryRun": true}));
    eventually("a DryRun event", || {
        cluster
            .event_reasons("MemoryPolicy")
            .contains(&"DryRun".to_owned())
    })
    .await;
    assert!(cluster.requests_to("POST", "/eviction").is_empty());
    assert!(is(cluster.condition("rehearse", "DryRun"), "True"));
    eventually("the dry-run record", || {
        cluster.policy_object("rehearse")["status"]["lastAction"]["dryRun"] == true
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_limits_are_enforced_on_the_container() {
    let cluster = Cluster::start(&["web-a"], 1).await;
    cluster.prometheus.set("web-a", 30.0);
    cluster.policy(
        "sized",
        "web",
        json!({"limits": {"container": "app", "request": "32Mi", "limit": "128Mi"}}),
    );
    eventually("the new limit on the template", || {
        cluster
            .api
            .get("apps/v1", "Deployment", NS, "web")
            .is_some_and(|d| {
                let resources = &d["spec"]["template"]["spec"]["containers"][0]["resources"];
                resources["limits"]["memory"] == "128Mi"
                    && resources["requests"]["memory"] == "32Mi"
            })
    })
    .await;
    eventually("a LimitsEnforced event", || {
        cluster
            .event_reasons("Deployment")
            .contains(&"LimitsEnforced".to_owned())
    })
    .await;
}

#[tokio::test]
async fn start_up_fails_fast_when_the_crd_is_not_installed() {
    let api = testkit::FakeApiServer::start().await.unwrap();
    api.fail_next("GET", "/memorypolicies", 404, 1);
    let config = kube::Config::new(api.url().parse().unwrap());
    let reporter = kube::runtime::events::Reporter {
        controller: "memory-operator".into(),
        instance: None,
    };
    let metrics = std::sync::Arc::new(memory_operator::metrics::Metrics::default());
    let prometheus = memory_operator::prometheus::Prometheus::new("http://127.0.0.1:9");
    let ctx =
        memory_operator::controller::Context::new(config, prometheus, metrics, reporter).unwrap();
    let error = memory_operator::controller::run(ctx, std::future::pending())
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("is the CRD installed?"),
        "{error}"
    );
}
