//! Two `memory-operator run` processes with leader election on the real Lease API, as the
//! chart's ServiceAccount: the standby takes over once the leader is killed, and what the
//! leader did is not done again.

mod support;

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use serde_json::json;
use support::{Cluster, OPERATOR_NAMESPACE, eventually, installed};

/// Short, so the test is quick; the standby retries every third of it.
const LEASE: Duration = Duration::from_secs(6);

/// An operator process, killed when dropped.
struct Operator(Child);

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn operator(identity: &str, lease: &str, cluster: &Cluster) -> Operator {
    let child = Command::new(env!("CARGO_BIN_EXE_memory-operator"))
        .arg("run")
        .env("KUBECONFIG", &installed().operator_kubeconfig)
        .env("PROMETHEUS_URL", cluster.prometheus.url())
        .env("OPERATOR_LISTEN", "127.0.0.1:0")
        .env("LEADER_ELECTION", "true")
        .env("POD_NAMESPACE", OPERATOR_NAMESPACE)
        .env("LEASE_NAME", lease)
        .env("LEASE_DURATION", format!("{}s", LEASE.as_secs()))
        .env("POD_NAME", identity)
        .env("WATCH_NAMESPACE", &cluster.namespace)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("memory-operator starts");
    Operator(child)
}

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

    let mut a = operator("a", &lease, &cluster);
    eventually("a leads", async || {
        holder(&leases, &lease).await.as_deref() == Some("a")
    })
    .await;
    let _b = operator("b", &lease, &cluster);

    cluster.prometheus.set(&pods[0], 97.0);
    cluster
        .policy("guard", "web", json!({"safety": {"cooldown": "10m"}}))
        .await;
    eventually("the leader evicts the critical pod", async || {
        !cluster.pod_exists(&pods[0]).await
    })
    .await;

    a.0.kill().expect("killing the leader");
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
