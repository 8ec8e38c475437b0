//! The real kube-runtime controller on a real control plane, with only the chart's RBAC.

mod support;

use std::time::Duration;

use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use support::{Cluster, eventually, installed, pause, repo_root};
use testkit::{HostilePrometheus, Misbehaviour, ScriptedPrometheus};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_policy_gets_its_conditions() {
    let cluster = Cluster::start(2, 1).await;
    let pods = cluster.pods().await;
    cluster.prometheus.set(&pods[0], 30.0);
    cluster.prometheus.set(&pods[1], 40.0);
    cluster.policy("calm", "web", json!({})).await;
    eventually("Ready=True", async || {
        cluster.condition_is("calm", "Ready", "True").await
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
            cluster.condition_is("calm", type_, status).await,
            "{type_}: {:?}",
            cluster.condition("calm", type_).await
        );
    }
    let status = &cluster.policy_object("calm").await["status"];
    assert_eq!(status["observedGeneration"], 1);
    assert_eq!(status["replicas"], 2);
    assert_eq!(status["maxUsage"], 40.0);
    assert_eq!(status["state"], "Normal");
    assert_eq!(status["pods"][0]["name"], pods[1].as_str());
    assert!(cluster.operator_did("create", "pods/eviction").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_critical_pod_is_evicted_and_the_others_are_not() {
    let cluster = Cluster::start(2, 1).await;
    let pods = cluster.pods().await;
    cluster.prometheus.set(&pods[0], 97.0);
    cluster.prometheus.set(&pods[1], 30.0);
    cluster.policy("guard", "web", json!({})).await;
    eventually("the critical pod gone", async || {
        !cluster.pod_exists(&pods[0]).await
    })
    .await;
    let evictions = cluster.operator_did("create", "pods/eviction");
    assert_eq!(evictions.len(), 1, "{evictions:?}");
    assert_eq!(evictions[0].name, pods[0]);
    assert_eq!(evictions[0].code, 201);
    assert!(cluster.pod_exists(&pods[1]).await);
    eventually(
        "PodEvicted events on the policy and the Deployment",
        async || {
            cluster
                .event_reasons("MemoryPolicy")
                .await
                .contains(&"PodEvicted".to_owned())
                && cluster
                    .event_reasons("Deployment")
                    .await
                    .contains(&"PodEvicted".to_owned())
        },
    )
    .await;
    eventually("lastAction RestartPod", async || {
        cluster.policy_object("guard").await["status"]["lastAction"]["type"] == "RestartPod"
    })
    .await;
    let evicted = cluster.events_of("MemoryPolicy").await;
    let note = evicted
        .iter()
        .find(|e| e.reason.as_deref() == Some("PodEvicted"))
        .and_then(|e| e.note.clone())
        .unwrap_or_default();
    assert!(note.contains(&pods[0]), "{note}");
    // The ReplicaSet controller replaces the evicted pod.
    cluster.wait_until_settled(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn high_memory_scales_out_by_step() {
    let cluster = Cluster::start(2, 1).await;
    let pods = cluster.pods().await;
    cluster.prometheus.set(&pods[0], 85.0);
    cluster.prometheus.set(&pods[1], 88.0);
    cluster
        .policy("grow", "web", json!({"scaling": {"step": 2}}))
        .await;
    eventually("four pods running", async || {
        cluster.pods().await.len() == 4
    })
    .await;
    assert_eq!(cluster.deployment_object().await.spec.replicas, Some(4));
    assert_eq!(cluster.operator_did("patch", "deployments/scale").len(), 1);
    eventually("a ScaledOut event", async || {
        cluster
            .event_reasons("MemoryPolicy")
            .await
            .contains(&"ScaledOut".to_owned())
    })
    .await;
    eventually("HighMemory=True", async || {
        cluster.condition_is("grow", "HighMemory", "True").await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_goes_through_the_deployment_controller() {
    let cluster = Cluster::start(2, 1).await;
    let pods = cluster.pods().await;
    cluster.prometheus.set(&pods[0], 99.0);
    cluster.prometheus.set(&pods[1], 20.0);
    cluster
        .policy("roll", "web", json!({"onCritical": "RollingRestart"}))
        .await;
    eventually("a second ReplicaSet from the restart", async || {
        cluster.replica_sets().await.len() == 2
    })
    .await;
    let template = cluster.deployment_object().await.spec.template;
    let annotations = template.metadata.unwrap().annotations.unwrap_or_default();
    assert!(annotations.contains_key("kubectl.kubernetes.io/restartedAt"));
    // The Deployment controller replaces every pod, one at a time.
    eventually("every old pod replaced", async || {
        let now = cluster.pods().await;
        now.len() == 2 && !now.iter().any(|p| pods.contains(p))
    })
    .await;
    assert!(cluster.operator_did("create", "pods/eviction").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_deployment_is_never_restarted() {
    let cluster = Cluster::start(2, 1).await;
    cluster.deployment("web", 2, true).await;
    let pods = cluster.pods().await;
    cluster.prometheus.set(&pods[0], 99.0);
    cluster.prometheus.set(&pods[1], 20.0);
    cluster
        .policy("still", "web", json!({"onCritical": "RollingRestart"}))
        .await;
    eventually("Critical=True", async || {
        cluster.condition_is("still", "Critical", "True").await
    })
    .await;
    pause(Duration::from_secs(3)).await;
    let template = cluster.deployment_object().await.spec.template;
    let annotations = template.metadata.unwrap().annotations.unwrap_or_default();
    assert!(!annotations.contains_key("kubectl.kubernetes.io/restartedAt"));
    assert_eq!(cluster.replica_sets().await.len(), 1);
    assert!(cluster.operator_did("patch", "deployments").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_survives_another_writer() {
    let cluster = Cluster::start(1, 1).await;
    let pods = cluster.pods().await;
    cluster.prometheus.set(&pods[0], 30.0);
    cluster.policy("shared", "web", json!({})).await;
    eventually("Ready=True", async || {
        cluster.condition_is("shared", "Ready", "True").await
    })
    .await;
    // Another writer replaces the whole status, from what it read, for three seconds: each of
    // its writes that raced the operator's is refused with 409, each that did not clobbers
    // the operator's status.
    let policies = cluster.policies();
    let (mut written, mut conflicts) = (0, 0);
    let until = std::time::Instant::now() + Duration::from_secs(3);
    while std::time::Instant::now() < until {
        let mut object = policies.get_status("shared").await.unwrap();
        object.data["status"] = json!({"state": "Clobbered", "conditions": []});
        match policies
            .replace_status("shared", &PostParams::default(), &object)
            .await
        {
            Ok(_) => written += 1,
            Err(kube::Error::Api(e)) if e.code == 409 => conflicts += 1,
            Err(e) => panic!("the other writer failed: {e}"),
        }
        pause(Duration::from_millis(100)).await;
    }
    assert!(
        written > 0,
        "the other writer never wrote ({conflicts} conflicts)"
    );
    eventually("the operator's status restored", async || {
        let status = &cluster.policy_object("shared").await["status"];
        status["state"] == "Normal" && cluster.condition_is("shared", "Ready", "True").await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eviction_is_refused_while_the_budget_allows_none_and_done_once_it_does() {
    let cluster = Cluster::start(2, 2).await;
    let pods = cluster.pods().await;
    cluster.prometheus.set(&pods[0], 97.0);
    cluster.prometheus.set(&pods[1], 30.0);
    cluster.policy("blocked", "web", json!({})).await;
    eventually("an ActionFailed event", async || {
        cluster
            .event_reasons("MemoryPolicy")
            .await
            .contains(&"ActionFailed".to_owned())
    })
    .await;
    let event = cluster
        .events_of("MemoryPolicy")
        .await
        .into_iter()
        .find(|e| e.reason.as_deref() == Some("ActionFailed"))
        .unwrap();
    let note = event.note.unwrap_or_default();
    assert!(note.contains("PodDisruptionBudget"), "{note}");
    let refused = cluster.operator_did("create", "pods/eviction");
    assert!(
        !refused.is_empty() && refused.iter().all(|r| r.code == 429),
        "{refused:?}"
    );
    assert!(cluster.pod_exists(&pods[0]).await);
    // Refused evictions do not count: the controller keeps trying (no cooldown).
    eventually("another try", async || {
        cluster.operator_did("create", "pods/eviction").len() > refused.len()
    })
    .await;
    assert!(cluster.policy_object("blocked").await["status"]["lastAction"].is_null());

    // Once the disruption controller allows one disruption, the eviction goes through.
    let budgets: Api<PodDisruptionBudget> =
        Api::namespaced(cluster.client.clone(), &cluster.namespace);
    budgets
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"minAvailable": 1}})),
        )
        .await
        .unwrap();
    eventually("the critical pod evicted", async || {
        !cluster.pod_exists(&pods[0]).await
    })
    .await;
    let done: Vec<_> = cluster
        .operator_did("create", "pods/eviction")
        .into_iter()
        .filter(|r| r.code == 201)
        .collect();
    assert_eq!(done.len(), 1, "{done:?}");
    assert!(cluster.pod_exists(&pods[1]).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_whose_target_is_missing_is_not_ready_and_others_keep_working() {
    let cluster = Cluster::start(1, 1).await;
    let pods = cluster.pods().await;
    cluster.prometheus.set(&pods[0], 30.0);
    cluster.policy("ghost", "nowhere", json!({})).await;
    cluster.policy("fine", "web", json!({})).await;
    let (reason, message) = cluster.not_ready("ghost").await;
    assert_eq!(reason, "TargetNotFound");
    assert!(
        message.contains(&format!("{}/nowhere", cluster.namespace)),
        "{message}"
    );
    eventually("fine Ready=True", async || {
        cluster.condition_is("fine", "Ready", "True").await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_policy_says_which_field_is_wrong() {
    let cluster = Cluster::start(1, 1).await;
    // The schema cannot compare a request with a limit, so the apiserver stores this one.
    cluster
        .policy(
            "bad",
            "web",
            json!({"limits": {"request": "512Mi", "limit": "256Mi"}}),
        )
        .await;
    let (reason, message) = cluster.not_ready("bad").await;
    assert_eq!(reason, "InvalidPolicy");
    assert!(message.contains("spec.limits"), "{message}");
    // Re-checked every interval, but its status is written once: each write would wake the
    // policy's reconcile again.
    let writes = || {
        cluster
            .operator_did("patch", "memorypolicies/status")
            .into_iter()
            .filter(|r| r.name == "bad")
            .count()
    };
    pause(Duration::from_secs(1)).await;
    let before = writes();
    pause(Duration::from_secs(3)).await;
    assert_eq!(writes(), before, "an unchanged status was written again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_stored_under_an_older_schema_say_which_field_and_the_others_keep_working() {
    let plane = installed().plane;
    let cluster = Cluster::start(1, 1).await;
    let elsewhere = ScriptedPrometheus::start().await.unwrap();
    // An older CRD that did not yet restrict onCritical, nor refuse a Prometheus URL, stored
    // these policies; today's cannot read the first and will not query the second's server.
    // No other test of this binary relies on the apiserver refusing a policy.
    for rule in ["onCritical/enum", "prometheus/x-kubernetes-validations/0"] {
        plane
            .relax_crd("memorypolicies.shortener.dev", rule)
            .expect("relaxing the CRD");
    }
    let target = json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"});
    for (name, spec) in [
        (
            "explode",
            json!({"targetRef": target, "onCritical": "Explode"}),
        ),
        (
            "aimed",
            json!({"targetRef": target, "prometheus": {"url": elsewhere.url()}}),
        ),
    ] {
        eventually("the relaxed schema in force", async || {
            let object = serde_json::from_value(json!({
                "apiVersion": "shortener.dev/v1alpha1", "kind": "MemoryPolicy",
                "metadata": {"name": name, "namespace": cluster.namespace},
                "spec": spec,
            }))
            .unwrap();
            let api = cluster.policies();
            api.create(&PostParams::default(), &object).await.is_ok()
        })
        .await;
    }
    plane
        .apply_crd(&repo_root().join("crds/memorypolicy.yaml"))
        .expect("restoring the CRD");
    cluster.policy("sound", "web", json!({})).await;
    eventually(
        "explode and aimed Ready=False, sound Ready=True",
        async || {
            cluster.condition_is("explode", "Ready", "False").await
                && cluster.condition_is("aimed", "Ready", "False").await
                && cluster.condition_is("sound", "Ready", "True").await
        },
    )
    .await;
    let (_, reason, message) = cluster.condition("explode", "Ready").await.unwrap();
    assert_eq!(reason, "Unreadable");
    assert!(
        message.starts_with(
            "the operator cannot read this policy: spec.onCritical: unknown variant `Explode`"
        ),
        "{message}"
    );
    assert_eq!(
        cluster.policy_object("explode").await["status"]["state"],
        "Invalid"
    );
    let (_, reason, message) = cluster.condition("aimed", "Ready").await.unwrap();
    assert_eq!(reason, "InvalidPolicy");
    assert!(
        message.contains("name one in spec.prometheus.source"),
        "{message}"
    );
    assert_eq!(
        elsewhere.queries(),
        0,
        "the policy's server was never asked"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_metrics_never_act_and_say_why() {
    let cluster = Cluster::start(2, 1).await;
    cluster.policy("blind", "web", json!({})).await;
    eventually("MetricsAvailable=False", async || {
        cluster
            .condition_is("blind", "MetricsAvailable", "False")
            .await
    })
    .await;
    pause(Duration::from_secs(2)).await;
    assert!(cluster.operator_did("create", "pods/eviction").is_empty());
    assert!(
        cluster
            .operator_did("patch", "deployments/scale")
            .is_empty()
    );
    assert_eq!(
        cluster.policy_object("blind").await["status"]["state"],
        "NoData"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prometheus_that_trickles_its_answer_costs_its_own_policy_only() {
    let cluster = Cluster::without_operator(2, 1).await;
    for pod in cluster.pods().await {
        cluster.prometheus.set(&pod, 30.0);
    }
    let slow = HostilePrometheus::start(Misbehaviour::Trickle {
        every: Duration::from_millis(100),
    })
    .await
    .unwrap();
    cluster.start_operator_with(&[("slow", slow.url())]).await;
    cluster
        .policy(
            "slow",
            "web",
            json!({"prometheus": {"source": "slow", "timeout": "1s"}}),
        )
        .await;
    cluster.policy("served", "web", json!({})).await;
    eventually("slow: MetricsAvailable=False; served: True", async || {
        cluster
            .condition_is("slow", "MetricsAvailable", "False")
            .await
            && cluster
                .condition_is("served", "MetricsAvailable", "True")
                .await
    })
    .await;
    let (_, reason, message) = cluster.condition("slow", "MetricsAvailable").await.unwrap();
    assert_eq!(reason, "QueryTimedOut", "{message}");
    assert!(message.contains("did not answer within 1s"), "{message}");
    assert!(cluster.condition_is("slow", "Ready", "True").await);
    assert!(
        cluster
            .operator_did("patch", "deployments/scale")
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_query_that_reads_another_namespace_is_refused_and_never_sent() {
    let cluster = Cluster::start(2, 1).await;
    let query = r#"sum by (pod) (my_bytes{namespace="kube-system"})"#;
    cluster
        .policy(
            "nosy",
            "web",
            json!({"metric": {"source": "Custom", "query": query}}),
        )
        .await;
    let (reason, message) = cluster.not_ready("nosy").await;
    assert_eq!(reason, "InvalidPolicy");
    assert!(
        message.contains("spec.metric.query reads series of namespace kube-system"),
        "{message}"
    );
    assert_eq!(cluster.prometheus.queries(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_naming_a_source_the_operator_was_not_given_is_not_ready_and_queries_nothing() {
    let cluster = Cluster::start(2, 1).await;
    cluster
        .policy("lost", "web", json!({"prometheus": {"source": "team-b"}}))
        .await;
    let (reason, message) = cluster.not_ready("lost").await;
    assert_eq!(reason, "UnknownSource");
    assert!(message.contains("\"team-b\""), "{message}");
    assert!(message.contains("it knows: default"), "{message}");
    eventually("a Warning Event naming the unknown source", async || {
        cluster
            .event_reasons("MemoryPolicy")
            .await
            .contains(&"UnknownSource".to_owned())
    })
    .await;
    assert!(
        !cluster
            .event_reasons("MemoryPolicy")
            .await
            .contains(&"InvalidPolicy".to_owned())
    );
    assert_eq!(cluster.prometheus.queries(), 0);
    assert!(
        cluster
            .operator_did("patch", "deployments/scale")
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_evaluation_sends_one_query_whatever_the_pod_count() {
    let cluster = Cluster::start(20, 1).await;
    for pod in cluster.pods().await {
        cluster.prometheus.set(&pod, 30.0);
    }
    cluster.policy("many", "web", json!({})).await;
    eventually("three evaluations", async || {
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
    let cluster = Cluster::start(2, 1).await;
    let pods = cluster.pods().await;
    cluster.prometheus.set(&pods[0], 97.0);
    cluster.prometheus.set(&pods[1], 30.0);
    cluster
        .policy("rehearse", "web", json!({"dryRun": true}))
        .await;
    eventually("a DryRun event", async || {
        cluster
            .event_reasons("MemoryPolicy")
            .await
            .contains(&"DryRun".to_owned())
    })
    .await;
    assert!(cluster.operator_did("create", "pods/eviction").is_empty());
    assert!(cluster.condition_is("rehearse", "DryRun", "True").await);
    eventually("the dry-run record", async || {
        cluster.policy_object("rehearse").await["status"]["lastAction"]["dryRun"] == true
    })
    .await;
    assert_eq!(cluster.pods().await, pods);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_limits_are_enforced_on_the_container() {
    let cluster = Cluster::start(1, 1).await;
    let pods = cluster.pods().await;
    cluster.prometheus.set(&pods[0], 30.0);
    cluster
        .policy(
            "sized",
            "web",
            json!({"limits": {"container": "app", "request": "32Mi", "limit": "128Mi"}}),
        )
        .await;
    eventually("the new limit on the template", async || {
        let spec = cluster.deployment_object().await.spec;
        let resources =
            serde_json::to_value(&spec.template.spec.unwrap().containers[0].resources).unwrap();
        resources["limits"]["memory"] == "128Mi" && resources["requests"]["memory"] == "32Mi"
    })
    .await;
    // Only the memory is patched: the rest of the container stays as it was.
    let spec = cluster.deployment_object().await.spec;
    let container = &spec.template.spec.unwrap().containers[0];
    assert_eq!(container.image.as_deref(), Some("pause:test"));
    assert_eq!(container.args, Some(vec!["infinity".to_owned()]));
    eventually("a LimitsEnforced event", async || {
        cluster
            .event_reasons("Deployment")
            .await
            .contains(&"LimitsEnforced".to_owned())
    })
    .await;
    // The Deployment controller rolls the new limit out.
    eventually("a second ReplicaSet", async || {
        cluster.replica_sets().await.len() == 2
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_shows_the_operators_view_of_a_policy() {
    let plane = installed().plane;
    let cluster = Cluster::start(2, 1).await;
    let pods = cluster.pods().await;
    cluster.prometheus.set(&pods[0], 97.0);
    cluster.prometheus.set(&pods[1], 40.0);
    cluster.policy("shown", "web", json!({})).await;
    eventually("the eviction recorded", async || {
        cluster.policy_object("shown").await["status"]["lastAction"]["type"] == "RestartPod"
    })
    .await;
    let ns = cluster.namespace.as_str();

    let table = plane.run_kubectl(&["get", "mempol", "-n", ns]).unwrap();
    let mut lines = table.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap()
        .split("  ")
        .filter(|c| !c.is_empty())
        .map(str::trim)
        .collect();
    assert_eq!(
        header,
        [
            "NAME",
            "TARGET",
            "REPLICAS",
            "MAX USAGE",
            "STATE",
            "LAST ACTION",
            "AGE"
        ],
        "{table}"
    );
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    let status = &cluster.policy_object("shown").await["status"];
    assert_eq!(row[0], "shown");
    assert_eq!(row[1], "web");
    assert_eq!(row[2], status["replicas"].to_string(), "{table}");
    assert_eq!(row[3], status["maxUsage"].to_string(), "{table}");
    assert_eq!(row[4], status["state"].as_str().unwrap(), "{table}");
    assert_eq!(row[5], "RestartPod", "{table}");

    let explained = plane
        .run_kubectl(&["explain", "memorypolicy.spec.thresholds"])
        .unwrap();
    for field in [
        "lowWaterMark",
        "highWaterMark",
        "critical",
        "for",
        "staleAfter",
    ] {
        assert!(
            explained.contains(field),
            "{field} missing from:\n{explained}"
        );
    }
    assert!(
        explained.contains("Above this `onCritical` applies."),
        "{explained}"
    );

    let described = plane
        .run_kubectl(&["describe", "mempol", "shown", "-n", ns])
        .unwrap();
    for expected in [
        "Conditions:",
        "Ready",
        "MetricsAvailable",
        "Critical",
        "Events:",
        "PodEvicted",
        &pods[0],
    ] {
        assert!(
            described.contains(expected),
            "{expected} missing from:\n{described}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_over_high_is_raised_in_place_and_a_raise_the_apiserver_refuses_falls_back() {
    use k8s_openapi::api::{apps::v1::Deployment, core::v1::Pod};
    use kube::discovery::ApiResource;

    let cluster = Cluster::start(2, 1).await;
    // A Guaranteed pod (requests equal limits for CPU and memory): its request must move with
    // its limit, and a request over the Node's memory is refused by the apiserver itself.
    cluster
        .apply(
            ApiResource::erase::<Deployment>(&()),
            json!({
                "metadata": {"name": "sure"},
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": {"app": "sure"}},
                    "template": {
                        "metadata": {"labels": {"app": "sure"}},
                        "spec": {
                            "nodeSelector": {"kubernetes.io/hostname": cluster.namespace},
                            "terminationGracePeriodSeconds": 5,
                            "containers": [{"name": "app", "image": "pause:test", "args": ["infinity"],
                                "resources": {"limits": {"memory": "64Mi", "cpu": "100m"}}}]
                        }
                    }
                }
            }),
        )
        .await;
    eventually("the Guaranteed pod running", async || {
        cluster.pods_of("sure").await.len() == 1
    })
    .await;
    let pods = cluster.pods().await;
    let sure = cluster.pods_of("sure").await.remove(0);
    cluster.prometheus.set(&pods[0], 85.0);
    cluster.prometheus.set(&pods[1], 30.0);
    cluster.prometheus.set(&sure, 85.0);
    let raising = |step: &str| {
        json!({"onHigh": "RaiseLimit", "safety": {"cooldown": "1s"},
            "limits": {"raise": {"step": step, "max": "1Ti"}}})
    };
    cluster.policy("grow", "web", raising("32Mi")).await;
    cluster.policy("sure", "sure", raising("300Gi")).await;

    // Raised: the spec, what the kubelet applied, and the policy's view; the pod stays.
    let api: Api<Pod> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    eventually("the raised limit applied", async || {
        let pod = serde_json::to_value(api.get(&pods[0]).await.unwrap()).unwrap();
        pod["status"]["containerStatuses"][0]["resources"]["limits"]["memory"] == "96Mi"
    })
    .await;
    eventually("the new limit in the policy's status", async || {
        let status = &cluster.policy_object("grow").await["status"];
        status["pods"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|p| p["name"] == pods[0].as_str() && p["limit"] == "96Mi")
            && status["lastAction"]["type"] == "RaiseLimit"
    })
    .await;
    assert!(cluster.pod_exists(&pods[0]).await);
    let told: Vec<String> = cluster
        .events_of("Pod")
        .await
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("LimitRaised"))
        .filter_map(|e| e.note)
        .collect();
    assert!(
        told.iter()
            .any(|n| n.starts_with("memory limit raised in place from 64Mi to 96Mi")),
        "{told:?}"
    );

    // Refused by the apiserver (403: the request would exceed the Node's allocatable memory):
    // not tried again, the pod evicted instead, once.
    eventually("the refused pod evicted", async || {
        !cluster.pod_exists(&sure).await
    })
    .await;
    let resizes: Vec<_> = cluster
        .operator_did("patch", "pods/resize")
        .into_iter()
        .filter(|r| r.name == sure)
        .collect();
    assert_eq!(resizes.len(), 1, "{resizes:?}");
    assert_eq!(resizes[0].code, 403);
    let evicted: Vec<String> = cluster
        .operator_did("create", "pods/eviction")
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(evicted, std::slice::from_ref(&sure));
    let history = cluster.policy_object("sure").await["status"]["history"].clone();
    let reason = history[0]["reason"].as_str().unwrap_or_default();
    assert_eq!(history[0]["type"], "RestartPod", "{history}");
    assert!(
        reason.contains(&format!("the raise of {sure} was refused"))
            && reason.contains("falling back to onCritical (RestartPod)"),
        "{reason}"
    );
}
