//! A test's own corner of the control plane: a namespace, a Deployment `web` with Running pods
//! and a PodDisruptionBudget, a scripted Prometheus, the operator watching that namespace, and
//! the reads the tests make of what it did.

use std::{collections::BTreeMap, path::PathBuf, sync::Arc, time::Duration};

use k8s_openapi::api::{
    apps::v1::{Deployment, ReplicaSet},
    core::v1::Pod,
    events::v1::Event,
    policy::v1::PodDisruptionBudget,
};
use kube::{
    Api, Client,
    api::{ApiResource, DynamicObject, ListParams, Patch, PatchParams},
    runtime::events::Reporter,
};
use memory_operator::{
    context::Context,
    controller,
    metrics::Metrics,
    prometheus::{Prometheus, SourceConfig, Sources},
};
use memory_policy_api::crd::MemoryPolicy;
use serde_json::{Value, json};
use testkit::{AuditedRequest, KubeletConfig, ProcessKubelet, ScriptedPrometheus};
use tokio_util::sync::CancellationToken;

use super::{MIB, TESTS, admin, config_from, eventually, installed, operator_user};

/// Usage per pod in percent of a 64 MiB limit, through the scripted Prometheus.
#[derive(Clone)]
pub struct Usage {
    scripted: ScriptedPrometheus,
    namespace: String,
}

impl Usage {
    pub fn set(&self, pod: &str, percent: f64) {
        let limit = (64 * MIB) as f64;
        self.scripted
            .set(&self.namespace, pod, limit * percent / 100.0, limit);
    }

    pub fn clear(&self) {
        self.scripted.clear();
    }

    pub fn queries(&self) -> u64 {
        self.scripted.queries()
    }

    pub fn url(&self) -> String {
        self.scripted.url()
    }
}

/// A Deployment `web` in a namespace of its own, its pods Running, a PodDisruptionBudget
/// computed by the real disruption controller, and the operator watching that namespace
/// until dropped.
pub struct Cluster {
    pub namespace: String,
    pub client: Client,
    pub prometheus: Usage,
    pub metrics: Arc<Metrics>,
    stop: CancellationToken,
    _kubelet: ProcessKubelet,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Cluster {
    /// `replicas` pods of `web` (64Mi limit each, labels app=web), all Running and Ready, and a
    /// PodDisruptionBudget with `minAvailable: min_available`; the controller is started.
    pub async fn start(replicas: i32, min_available: i32) -> Cluster {
        let cluster = Cluster::without_operator(replicas, min_available).await;
        cluster.start_operator().await;
        cluster
    }

    /// As [`Cluster::start`], but no operator runs.
    pub async fn without_operator(replicas: i32, min_available: i32) -> Cluster {
        let installed = installed();
        let namespace = installed
            .plane
            .create_namespace("op")
            .expect("a namespace for the test");
        let client = admin().await;
        let stop = CancellationToken::new();
        // The test's own node, named for its namespace: every pod of the test runs `sleep`, as
        // a pause container would (the tests steer memory through the scripted Prometheus).
        let kubelet = ProcessKubelet::start(
            client.clone(),
            KubeletConfig {
                node: namespace.clone(),
                images: BTreeMap::from([("pause".to_owned(), PathBuf::from("/bin/sleep"))]),
                restart_backoff: Duration::from_secs(1),
                dir: std::env::temp_dir().join("memory-operator-test-pods"),
                api_server: None,
            },
        )
        .await
        .expect("the process kubelet starts");
        let scripted = ScriptedPrometheus::start()
            .await
            .expect("scripted Prometheus");
        let cluster = Cluster {
            prometheus: Usage {
                scripted,
                namespace: namespace.clone(),
            },
            namespace,
            client,
            metrics: Arc::new(Metrics::default()),
            stop,
            _kubelet: kubelet,
        };
        cluster.deployment("web", replicas, false).await;
        cluster
            .apply(
                ApiResource::erase::<PodDisruptionBudget>(&()),
                json!({
                    "metadata": {"name": "web"},
                    "spec": {"minAvailable": min_available, "selector": {"matchLabels": {"app": "web"}}}
                }),
            )
            .await;
        cluster.wait_until_settled(replicas).await;
        cluster
    }

    /// Runs the controller in this process as the chart's ServiceAccount, watching only this
    /// test's namespace, with one metrics source: `default`, the scripted Prometheus.
    pub async fn start_operator(&self) {
        self.start_operator_with(&[]).await;
    }

    /// As [`Cluster::start_operator`], with more metrics sources: (name, URL).
    pub async fn start_operator_with(&self, sources: &[(&str, String)]) {
        let sources: Vec<SourceConfig> = std::iter::once(("default", self.prometheus.url()))
            .chain(sources.iter().map(|(name, url)| (*name, url.clone())))
            .map(|(name, url)| {
                serde_json::from_value(json!({"name": name, "url": url})).expect("a source")
            })
            .collect();
        let config = config_from(&installed().operator_kubeconfig).await;
        let reporter = Reporter {
            controller: "memory-operator".into(),
            instance: Some("test".into()),
        };
        let ctx = Context::new(
            config,
            Prometheus::new(Sources::new(&sources).expect("the sources")),
            self.metrics.clone(),
            reporter,
        )
        .expect("a controller context");
        let (stop, namespace) = (self.stop.clone(), self.namespace.clone());
        tokio::spawn(async move {
            controller::run(ctx, Some(&namespace), stop.cancelled_owned())
                .await
                .expect("the controller runs");
        });
    }

    /// Waits until `web` has `replicas` Running pods, every one available, and the
    /// PodDisruptionBudget has been computed for them.
    pub async fn wait_until_settled(&self, replicas: i32) {
        eventually(
            "the Deployment available and the budget computed",
            async || {
                let deployment = self.deployment_object().await;
                let status = deployment.status.unwrap_or_default();
                let pdb: Api<PodDisruptionBudget> =
                    Api::namespaced(self.client.clone(), &self.namespace);
                let pdb = pdb.get("web").await.unwrap();
                let budget = pdb.status.unwrap_or_default();
                status.available_replicas == Some(replicas)
                    && status.updated_replicas == Some(replicas)
                    && self.pods().await.len() == replicas as usize
                    && budget.observed_generation == pdb.metadata.generation
                    && budget.current_healthy == Some(replicas)
            },
        )
        .await;
    }

    /// Server-side applies `object`, of the kind `resource` names, in the test's namespace.
    pub async fn apply(&self, resource: ApiResource, mut object: Value) {
        let name = object["metadata"]["name"].as_str().unwrap().to_owned();
        object["apiVersion"] = json!(resource.api_version);
        object["kind"] = json!(resource.kind);
        object["metadata"]["namespace"] = json!(self.namespace);
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &self.namespace, &resource);
        api.patch(
            &name,
            &PatchParams::apply(TESTS).force(),
            &Patch::Apply(object),
        )
        .await
        .unwrap_or_else(|e| panic!("applying {} {name}: {e}", resource.kind));
    }

    pub async fn deployment(&self, name: &str, replicas: i32, paused: bool) {
        self.apply(
            ApiResource::erase::<Deployment>(&()),
            json!({
                "metadata": {"name": name},
                "spec": {
                    "replicas": replicas, "paused": paused,
                    "selector": {"matchLabels": {"app": name}},
                    "template": {
                        "metadata": {"labels": {"app": name}},
                        "spec": {
                            "nodeSelector": {"kubernetes.io/hostname": self.namespace},
                            "terminationGracePeriodSeconds": 5,
                            "containers": [{"name": "app", "image": "pause:test", "args": ["infinity"],
                                "resources": {"limits": {"memory": "64Mi"}}}]
                        }
                    }
                }
            }),
        )
        .await;
    }

    pub async fn deployment_object(&self) -> Deployment {
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), &self.namespace);
        api.get("web").await.expect("Deployment web")
    }

    /// The names of the Running pods of `web` that are not being deleted, sorted.
    pub async fn pods(&self) -> Vec<String> {
        self.pods_of("web").await
    }

    /// The names of the Running pods of Deployment `app` that are not being deleted, sorted.
    pub async fn pods_of(&self, app: &str) -> Vec<String> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        let list = api
            .list(&ListParams::default().labels(&format!("app={app}")))
            .await
            .expect("listing pods");
        let mut names: Vec<String> = list
            .items
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .filter_map(|p| p.metadata.name)
            .collect();
        names.sort();
        names
    }

    pub async fn pod_exists(&self, name: &str) -> bool {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        api.get_opt(name).await.expect("reading a pod").is_some()
    }

    pub async fn replica_sets(&self) -> Vec<ReplicaSet> {
        let api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), &self.namespace);
        api.list(&ListParams::default())
            .await
            .expect("listing ReplicaSets")
            .items
    }

    /// Applies a policy `name` on `target` with fast clocks plus `extra` spec fields.
    pub async fn policy(&self, name: &str, target: &str, extra: Value) {
        let mut spec = json!({
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
            "interval": "1s",
            "thresholds": {"lowWaterMark": 60, "highWaterMark": 80, "critical": 95, "for": "1s", "staleAfter": "30s"},
            "scaling": {"minReplicas": 1, "maxReplicas": 4, "step": 1, "scaleInStabilization": "10m"},
            "safety": {"cooldown": "5m", "maxRestartsPerHour": 3, "maxUnavailable": 1}
        });
        json_patch::merge(&mut spec, &extra);
        self.apply(
            ApiResource::erase::<MemoryPolicy>(&()),
            json!({"metadata": {"name": name}, "spec": spec}),
        )
        .await;
    }

    pub fn policies(&self) -> Api<DynamicObject> {
        Api::namespaced_with(
            self.client.clone(),
            &self.namespace,
            &ApiResource::erase::<MemoryPolicy>(&()),
        )
    }

    pub async fn policy_object(&self, name: &str) -> Value {
        let object = self.policies().get(name).await.expect("the policy exists");
        serde_json::to_value(object).unwrap()
    }

    /// The condition `type_` of policy `name`, as (status, reason, message).
    pub async fn condition(&self, name: &str, type_: &str) -> Option<(String, String, String)> {
        let policy = self.policy_object(name).await;
        let conditions = policy["status"]["conditions"].as_array()?.clone();
        let c = conditions.into_iter().find(|c| c["type"] == type_)?;
        let text = |k: &str| c[k].as_str().unwrap_or_default().to_owned();
        Some((text("status"), text("reason"), text("message")))
    }

    /// Once policy `name` is `Ready=False`: its (reason, message).
    pub async fn not_ready(&self, name: &str) -> (String, String) {
        eventually(&format!("{name} Ready=False"), async || {
            self.condition_is(name, "Ready", "False").await
        })
        .await;
        let (_, reason, message) = self.condition(name, "Ready").await.unwrap();
        (reason, message)
    }

    pub async fn condition_is(&self, name: &str, type_: &str, status: &str) -> bool {
        self.condition(name, type_)
            .await
            .is_some_and(|(s, _, _)| s == status)
    }

    /// The Events in the test's namespace about objects of `kind`.
    pub async fn events_of(&self, kind: &str) -> Vec<Event> {
        let api: Api<Event> = Api::namespaced(self.client.clone(), &self.namespace);
        api.list(&ListParams::default())
            .await
            .expect("listing Events")
            .items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.kind.as_deref()) == Some(kind))
            .collect()
    }

    /// The reasons of the Events about objects of `kind`.
    pub async fn event_reasons(&self, kind: &str) -> Vec<String> {
        self.events_of(kind)
            .await
            .into_iter()
            .filter_map(|e| e.reason)
            .collect()
    }

    /// The operator's requests in this namespace, from the apiserver's audit log.
    pub fn operator_requests(&self) -> Vec<AuditedRequest> {
        installed()
            .plane
            .requests_of(&operator_user())
            .into_iter()
            .filter(|r| r.namespace == self.namespace)
            .collect()
    }

    /// The operator's requests in this namespace with `verb` on `resource` (`pods/eviction`).
    pub fn operator_did(&self, verb: &str, resource: &str) -> Vec<AuditedRequest> {
        self.operator_requests()
            .into_iter()
            .filter(|r| r.verb == verb && r.resource() == resource)
            .collect()
    }
}
