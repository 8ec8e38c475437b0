//! A cluster for controller tests: the fake API server from testkit holding a
//! Deployment, its pods and a PodDisruptionBudget, a scripted Prometheus
//! answering the operator's one query, and the real controller running.
#![allow(dead_code)] // each test binary uses its own subset

use std::{
    future::Future,
    sync::Arc,
    time::{Duration, Instant},
};

use kube::runtime::events::Reporter;
use memory_operator::{
    controller::{self, Context},
    metrics::Metrics,
    prometheus::Prometheus,
};
use serde_json::{Value, json};
use testkit::{FakeApiServer, ScriptedPrometheus};
use tokio_util::sync::CancellationToken;

pub const NS: &str = "shop";
pub const MIB: u64 = 1 << 20;

/// Usage per pod in percent of a 64 MiB limit, through the scripted Prometheus.
#[derive(Clone)]
pub struct Usage(ScriptedPrometheus);

impl Usage {
    pub fn set(&self, pod: &str, percent: f64) {
        let limit = (64 * MIB) as f64;
        self.0.set(NS, pod, limit * percent / 100.0, limit);
    }

    pub fn clear(&self) {
        self.0.clear();
    }

    pub fn queries(&self) -> u64 {
        self.0.queries()
    }
}

/// The fake cluster with the controller running until dropped.
pub struct Cluster {
    pub api: FakeApiServer,
    pub prometheus: Usage,
    pub metrics: Arc<Metrics>,
    stop: CancellationToken,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Cluster {
    /// A Deployment `web` with `pods` (each 64Mi limit, labels app=web), a PDB
    /// allowing `disruptions`, and the CRD served; the controller is started.
    pub async fn start(pods: &[&str], disruptions: u32) -> Cluster {
        let api = FakeApiServer::start().await.expect("fake API server");
        let scripted = ScriptedPrometheus::start()
            .await
            .expect("scripted Prometheus");
        let prometheus_url = scripted.url();
        let prometheus = Usage(scripted);
        let cluster = Cluster {
            api,
            prometheus,
            metrics: Arc::new(Metrics::default()),
            stop: CancellationToken::new(),
        };
        cluster.deployment("web", pods.len() as i32, false);
        for pod in pods {
            cluster.pod(pod);
        }
        cluster.api.apply(json!({
            "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": "web", "namespace": NS},
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": "web"}}},
            "status": {"disruptionsAllowed": disruptions}
        }));
        let config = kube::Config::new(cluster.api.url().parse().unwrap());
        let reporter = Reporter {
            controller: "memory-operator".into(),
            instance: Some("test".into()),
        };
        let ctx = Context::new(
            config,
            Prometheus::new(prometheus_url),
            cluster.metrics.clone(),
            reporter,
        )
        .expect("a controller context");
        let stop = cluster.stop.clone();
        tokio::spawn(async move {
            controller::run(ctx, stop.cancelled_owned())
                .await
                .expect("the controller runs");
        });
        cluster
    }

    pub fn deployment(&self, name: &str, replicas: i32, paused: bool) {
        self.api.apply(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": NS},
            "spec": {
                "replicas": replicas, "paused": paused,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {"containers": [{"name": "app", "image": "shortener",
                        "resources": {"limits": {"memory": "64Mi"}}}]}
                }
            },
            "status": {"observedGeneration": 1, "replicas": replicas, "updatedReplicas": replicas,
                "availableReplicas": replicas, "readyReplicas": replicas}
        }));
    }

    pub fn pod(&self, name: &str) {
        self.api.apply(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": NS, "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "app", "image": "shortener",
                "resources": {"limits": {"memory": "64Mi"}}}]},
            "status": {"phase": "Running"}
        }));
    }

    /// Applies a policy `name` on `target` with fast clocks plus `extra` spec fields.
    pub fn policy(&self, name: &str, target: &str, extra: Value) {
        let mut spec = json!({
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
            "interval": "1s",
            "thresholds": {"lowWaterMark": 60, "highWaterMark": 80, "critical": 95, "for": "1s", "staleAfter": "30s"},
            "scaling": {"minReplicas": 1, "maxReplicas": 4, "step": 1, "scaleInStabilization": "10m"},
            "safety": {"cooldown": "5m", "maxRestartsPerHour": 3, "maxUnavailable": 1}
        });
        testkit::merge_patch(&mut spec, &extra);
        self.api.apply(json!({
            "apiVersion": "shortener.dev/v1alpha1", "kind": "MemoryPolicy",
            "metadata": {"name": name, "namespace": NS},
            "spec": spec
        }));
    }

    pub fn policy_object(&self, name: &str) -> Value {
        self.api
            .get("shortener.dev/v1alpha1", "MemoryPolicy", NS, name)
            .expect("the policy exists")
    }

    /// The condition `type_` of policy `name`, as (status, reason, message).
    pub fn condition(&self, name: &str, type_: &str) -> Option<(String, String, String)> {
        let policy = self.policy_object(name);
        let conditions = policy["status"]["conditions"].as_array()?.clone();
        let c = conditions.into_iter().find(|c| c["type"] == type_)?;
        let text = |k: &str| c[k].as_str().unwrap_or_default().to_owned();
        Some((text("status"), text("reason"), text("message")))
    }

    /// Requests whose method is `method` and whose path contains `part`.
    pub fn requests_to(&self, method: &str, part: &str) -> Vec<String> {
        self.api.requests_to(method, part)
    }

    /// Event reasons about objects of `kind`.
    pub fn event_reasons(&self, kind: &str) -> Vec<String> {
        self.api.event_reasons(kind)
    }
}

/// Polls `check` until it holds, failing with `what` after 15 s.
pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits `duration` of controller time.
pub fn pause(duration: Duration) -> impl Future<Output = ()> {
    tokio::time::sleep(duration)
}
