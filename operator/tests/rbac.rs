//! The chart's RBAC, judged by what the operator really does: the released binary runs with
//! leader election as the chart's ServiceAccount through every kind of action, and the
//! apiserver's audit log says which requests it made. A permission it needed and lacked shows
//! as a 403; one the chart grants that it never used is flagged too.

mod support;

use std::collections::BTreeSet;

use memory_operator::rbac::PERMISSIONS;
use serde_json::json;
use support::{Cluster, eventually, installed, operator_user, process::OperatorProcess};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_needs_every_permission_the_chart_grants_and_no_other() {
    let cluster = Cluster::without_operator(3, 1).await;
    for (name, replicas) in [("api", 2), ("roll", 1), ("sized", 1), ("grown", 1)] {
        cluster.deployment(name, replicas, false).await;
    }
    eventually("every pod running", async || {
        cluster.pods_of("api").await.len() == 2
            && cluster.pods_of("roll").await.len() == 1
            && cluster.pods_of("sized").await.len() == 1
            && cluster.pods_of("grown").await.len() == 1
    })
    .await;
    // Two critical pods: one is evicted, the other held back by cooldown, a notice that
    // repeats every interval.
    let web = cluster.pods().await;
    cluster.prometheus.set(&web[0], 97.0);
    cluster.prometheus.set(&web[1], 97.0);
    cluster.prometheus.set(&web[2], 30.0);
    for pod in cluster.pods_of("api").await {
        cluster.prometheus.set(&pod, 85.0);
    }
    cluster
        .prometheus
        .set(&cluster.pods_of("roll").await[0], 99.0);
    cluster
        .prometheus
        .set(&cluster.pods_of("sized").await[0], 30.0);
    cluster
        .prometheus
        .set(&cluster.pods_of("grown").await[0], 85.0);

    // Cluster-wide, as the chart runs it.
    let lease = format!("rbac-{}", cluster.namespace);
    let _operator = OperatorProcess::start(&cluster, "rbac", &lease, 3, None);
    cluster.policy("evict", "web", json!({})).await;
    cluster.policy("scale", "api", json!({})).await;
    cluster
        .policy("roll", "roll", json!({"onCritical": "RollingRestart"}))
        .await;
    cluster
        .policy(
            "limits",
            "sized",
            json!({"limits": {"container": "app", "request": "32Mi", "limit": "96Mi"}}),
        )
        .await;
    cluster
        .policy(
            "grown",
            "grown",
            json!({"onHigh": "RaiseLimit", "limits": {"raise": {"step": "32Mi", "max": "256Mi"}}}),
        )
        .await;
    eventually("every kind of action taken", async || {
        let reasons = cluster.event_reasons("MemoryPolicy").await;
        [
            "PodEvicted",
            "ScaledOut",
            "RollingRestartStarted",
            "LimitRaised",
        ]
        .iter()
        .all(|r| reasons.iter().any(|x| x == r))
            && cluster
                .event_reasons("Deployment")
                .await
                .iter()
                .any(|r| r == "LimitsEnforced")
    })
    .await;
    // A notice that repeats (the pods still critical, held back by cooldown) is folded into
    // its Event's series with a patch.
    eventually("a repeated Event patched", async || {
        installed()
            .plane
            .requests_of(&operator_user())
            .iter()
            .any(|r| r.resource == "events" && r.verb == "patch")
    })
    .await;

    let requests = installed().plane.requests_of(&operator_user());
    let refused: Vec<_> = requests.iter().filter(|r| r.code == 403).collect();
    assert!(refused.is_empty(), "the chart's RBAC refused: {refused:#?}");
    let used: BTreeSet<(String, String, String)> = requests
        .iter()
        .map(|r| (r.group.clone(), r.resource(), r.verb.clone()))
        .collect();
    let granted: BTreeSet<(String, String, String)> = PERMISSIONS
        .iter()
        .flat_map(|p| {
            p.verbs
                .iter()
                .map(|v| (p.group.to_owned(), p.resource.to_owned(), (*v).to_owned()))
        })
        .collect();
    let unused: Vec<_> = granted.difference(&used).collect();
    assert!(
        unused.is_empty(),
        "granted by the chart but never used: {unused:?}\nused: {used:?}"
    );
    let ungranted: Vec<_> = used.difference(&granted).collect();
    assert!(ungranted.is_empty(), "used without a grant: {ungranted:?}");
}
