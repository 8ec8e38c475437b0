//! Two `memory-operator run` processes with leader election on the real Lease API, as the
//! chart's ServiceAccount: the standby takes over once the leader is killed, and what the
//! leader did is not done again.

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use serde_json::json;
use support::{Cluster, OPERATOR_NAMESPACE, eventually, process::OperatorProcess};

/// Short, so the test is quick; the standby retries every third of it.
const LEASE: Duration = Duration::from_secs(6);

async fn holder(leases: &Api<Lease>, name: &str) -> Option<String> {
    let lease = leases.get_opt(name).await.unwrap()?;
    lease.spec?.holder_identity
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standby_takes_over_after_the_leader_is_killed_and_acts_only_once() {
    let cluster = Cluster::without_operator(3, 1).await;
    let pods = cluster.pods().await;
    for pod in &pods {
        cluster.prometheus.set(pod, 30.0);
    }
    let lease = format!("lease-{}", cluster.namespace);
    let leases: Api<Lease> = Api::namespaced(cluster.client.clone(), OPERATOR_NAMESPACE);

    let start = |identity| {
        OperatorProcess::start(
            &cluster,
            identity,
            &lease,
            LEASE.as_secs(),
            Some(&cluster.namespace),
        )
    };
    let mut a = start("a");
    eventually("a leads", async || {
        holder(&leases, &lease).await.as_deref() == Some("a")
    })
    .await;
    let _b = start("b");
    // A third replica stands by, and stops at once on SIGTERM (a rollout or drain need not wait
    // out its grace period).
    let mut c = start("c");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(holder(&leases, &lease).await.as_deref(), Some("a"));
    assert!(
        c.terminate(Duration::from_secs(3)),
        "the standby did not stop on SIGTERM"
    );

    cluster.prometheus.set(&pods[0], 97.0);
    cluster
        .policy("guard", "web", json!({"safety": {"cooldown": "10m"}}))
        .await;
    eventually("the leader evicts the critical pod", async || {
        !cluster.pod_exists(&pods[0]).await
    })
    .await;

    a.kill();
    let killed = Instant::now();
    eventually("b leads", async || {
        holder(&leases, &lease).await.as_deref() == Some("b")
    })
    .await;
    let took = killed.elapsed();
    eprintln!("the standby took over {took:?} after the leader was killed (lease {LEASE:?})");
    assert!(
        took <= LEASE + LEASE / 3 + Duration::from_secs(1),
        "the standby took {took:?} to take over a {LEASE:?} lease"
    );

    // Another pod turns critical within the cooldown the leader's eviction started: the new
    // leader reads that eviction from the status and holds back.
    cluster.prometheus.set(&pods[1], 97.0);
    eventually("the new leader holds back (Throttled=True)", async || {
        cluster.condition_is("guard", "Throttled", "True").await
    })
    .await;
    let (_, _, message) = cluster.condition("guard", "Throttled").await.unwrap();
    assert!(message.contains("cooldown"), "{message}");
    assert!(cluster.pod_exists(&pods[1]).await);
    let evictions: Vec<_> = cluster
        .operator_did("create", "pods/eviction")
        .into_iter()
        .filter(|r| r.code == 201)
        .collect();
    assert_eq!(evictions.len(), 1, "{evictions:?}");
    let history = cluster.policy_object("guard").await["status"]["history"].clone();
    assert_eq!(history.as_array().map(Vec::len), Some(1), "{history}");
}
