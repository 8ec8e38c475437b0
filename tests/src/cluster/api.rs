//! What a test writes and reads through the API, as a user with kubectl would: policies,
//! their conditions and history, Events, and the requests the operator made (from the
//! apiserver's audit log).

use kube::{
    Api,
    api::{ApiResource, DynamicObject, Patch, PatchParams, PostParams},
};
use memory_policy_api::crd::MemoryPolicy;
use serde_json::{Value, json};
use testkit::AuditedRequest;

use super::{Cluster, OPERATOR_NAMESPACE, OPERATOR_RELEASE, blocking, install, record::lock};
use crate::{DEPLOYMENT, eventually};

/// The field manager of the tests' own writes.
const TESTS: &str = "e2e";
/// The operator's name on its Events (`reportingController`).
const REPORTER: &str = "memory-operator";

/// A status condition of a policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Condition {
    pub status: String,
    pub reason: String,
    pub message: String,
}

impl Cluster {
    /// Applies policy `name` on Deployment `web` with fast clocks, `overrides` merged in.
    pub async fn apply_policy(&self, name: &str, overrides: Value) {
        if let Some(refusal) = self.try_apply_policy(name, overrides).await {
            panic!("apply policy {name}: {refusal}");
        }
    }

    /// Policy `name` on Deployment `web` with fast clocks, `overrides` merged into its spec.
    pub fn policy_object(&self, name: &str, overrides: Value) -> Value {
        let mut spec = json!({
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": DEPLOYMENT},
            "interval": "1s",
            // Critical sits below the pods' own shedding mark (95), so a leaking pod stays
            // over it once its service stops caching.
            "thresholds": {"lowWaterMark": 60, "highWaterMark": 80, "critical": 90,
                "for": "2s", "staleAfter": "10s"},
            "scaling": {"minReplicas": 1, "maxReplicas": 5, "step": 1, "scaleInStabilization": "10m"},
            "safety": {"cooldown": "10m", "maxRestartsPerHour": 3, "maxUnavailable": 1}
        });
        json_patch::merge(&mut spec, &overrides);
        json!({
            "apiVersion": "shortener.dev/v1alpha1", "kind": "MemoryPolicy",
            "metadata": {"name": name, "namespace": self.namespace},
            "spec": spec
        })
    }

    /// Merge-patches policy `name`'s spec, as `kubectl patch --type merge` would.
    pub async fn patch_policy(&self, name: &str, spec: Value) {
        self.policies()
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({ "spec": spec })),
            )
            .await
            .unwrap_or_else(|e| panic!("patch policy {name}: {e}"));
    }

    /// Applies policy `name` as [`Self::apply_policy`] does, but returns the apiserver's
    /// refusal (its message) instead of panicking; `None` if it was stored.
    pub async fn try_apply_policy(&self, name: &str, overrides: Value) -> Option<String> {
        let policy = self.policy_object(name, overrides);
        match self
            .policies()
            .patch(
                name,
                &PatchParams::apply(TESTS).force(),
                &Patch::Apply(policy),
            )
            .await
        {
            Ok(_) => None,
            Err(kube::Error::Api(status)) => Some(status.message),
            Err(error) => panic!("apply policy {name}: {error}"),
        }
    }

    /// Stores policy `name` with `spec` as an older CRD would have, whose schema lacked what
    /// `relaxed` points at (a path under the spec's schema, such as `onCritical/enum` or
    /// `thresholds/x-kubernetes-validations`): the CRD is relaxed, the policy created, and the
    /// CRD from `crds/` applied again.
    pub async fn store_under_older_schema(&self, name: &str, relaxed: &str, spec: Value) {
        let plane = self.plane;
        let relaxed = relaxed.to_owned();
        blocking(move || plane.relax_crd("memorypolicies.shortener.dev", &relaxed))
            .await
            .expect("relaxing the CRD");
        let policy: DynamicObject =
            serde_json::from_value(self.policy_object(name, spec)).expect("a policy object");
        let api = self.policies();
        // The apiserver takes a moment to serve the relaxed schema.
        let mut stored = false;
        for _ in 0..50 {
            if api.create(&PostParams::default(), &policy).await.is_ok() {
                stored = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        assert!(stored, "policy {name} stored under the relaxed schema");
        blocking(move || install::crd(plane)).await;
    }

    fn policies(&self) -> Api<DynamicObject> {
        Api::namespaced_with(
            self.client.clone(),
            &self.namespace,
            &ApiResource::erase::<MemoryPolicy>(&()),
        )
    }

    /// The latest version of policy `name` the cluster showed; null if none yet.
    pub fn policy(&self, name: &str) -> Value {
        lock(&self.record).policy(name)
    }

    /// The pods policy `name`'s status lists as measured (in any state but `NoData`), sorted.
    pub fn measured_pods(&self, name: &str) -> Vec<String> {
        let policy = self.policy(name);
        let mut pods: Vec<String> = policy["status"]["pods"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["state"] != "NoData")
            .filter_map(|p| p["name"].as_str())
            .map(str::to_owned)
            .collect();
        pods.sort();
        pods
    }

    /// Every version of policy `name` the cluster showed, oldest first.
    pub fn policy_versions(&self, name: &str) -> Vec<Value> {
        lock(&self.record).policy_versions(name)
    }

    /// Condition `type_` of policy `name`, if set.
    pub fn condition(&self, name: &str, type_: &str) -> Option<Condition> {
        condition_of(&self.policy(name), type_)
    }

    /// Whether condition `type_` of policy `name` has `status` (`True`/`False`).
    pub fn condition_is(&self, name: &str, type_: &str, status: &str) -> bool {
        self.condition(name, type_)
            .is_some_and(|c| c.status == status)
    }

    /// Every status condition `type_` of policy `name` went through, in order, repeats folded.
    pub fn condition_history(&self, name: &str, type_: &str) -> Vec<String> {
        let mut seen: Vec<String> = Vec::new();
        for version in self.policy_versions(name) {
            if let Some(c) = condition_of(&version, type_)
                && seen.last() != Some(&c.status)
            {
                seen.push(c.status);
            }
        }
        seen
    }

    /// The operator's Events about objects of `kind`, oldest first.
    pub fn events_of(&self, kind: &str) -> Vec<Value> {
        lock(&self.record)
            .events()
            .into_iter()
            .filter(|e| e["reportingController"] == REPORTER && e["regarding"]["kind"] == kind)
            .collect()
    }

    /// The operator's Events about objects of `kind` with `reason`, oldest first.
    pub fn events(&self, kind: &str, reason: &str) -> Vec<Value> {
        self.events_of(kind)
            .into_iter()
            .filter(|e| e["reason"] == reason)
            .collect()
    }

    /// The reasons of the operator's Events about objects of `kind`, oldest first.
    pub fn event_reasons(&self, kind: &str) -> Vec<String> {
        self.events_of(kind)
            .iter()
            .filter_map(|e| e["reason"].as_str().map(str::to_owned))
            .collect()
    }

    /// The operator's requests in the test's namespace with `verb` on `resource`
    /// (`pods/eviction`, `deployments/scale`), oldest first.
    pub fn operator_did(&self, verb: &str, resource: &str) -> Vec<AuditedRequest> {
        let user = format!("system:serviceaccount:{OPERATOR_NAMESPACE}:{OPERATOR_RELEASE}");
        self.plane
            .requests_of(&user)
            .into_iter()
            .filter(|r| r.namespace == self.namespace && r.verb == verb && r.resource() == resource)
            .collect()
    }

    /// The pods the operator evicted so far, in order: its eviction requests the apiserver
    /// granted (one the disruption budget refuses, with 429, evicts nothing).
    pub fn evicted_pods(&self) -> Vec<String> {
        self.operator_did("create", "pods/eviction")
            .into_iter()
            .filter(|r| (200..300).contains(&r.code))
            .map(|r| r.name)
            .collect()
    }

    /// Every version of the Deployment the cluster showed, oldest first.
    pub fn deployment_versions(&self) -> Vec<Value> {
        lock(&self.record).deployment_versions(DEPLOYMENT)
    }

    /// The Deployment's `spec.replicas`, as last shown.
    pub fn replicas(&self) -> u64 {
        self.deployment_versions()
            .last()
            .and_then(|d| d["spec"]["replicas"].as_u64())
            .unwrap_or(0)
    }

    /// Waits until the operator's pod is Ready.
    pub(super) async fn wait_for_operator(&self) {
        let pods: Api<k8s_openapi::api::core::v1::Pod> =
            Api::namespaced(self.client.clone(), OPERATOR_NAMESPACE);
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(90);
        loop {
            let list = pods
                .list(&Default::default())
                .await
                .expect("list the operator's pods");
            if list.items.iter().any(|p| {
                p.metadata.deletion_timestamp.is_none()
                    && p.status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            }) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the operator's pod not Ready within 90 s: {:?}",
                list.items.iter().map(|p| &p.status).collect::<Vec<_>>()
            );
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }

    /// Stops the operator as a user would, scaling its Deployment to 0, and returns the exit
    /// code its process ended with once the kubelet has stopped it.
    pub async fn stop_operator(&self) -> i32 {
        let before = self.operator_exits().len();
        self.scale_operator(0).await;
        let mut code = None;
        eventually(
            "the operator stopped",
            std::time::Duration::from_secs(30),
            || {
                code = self.operator_exits().get(before).map(|e| e.code);
                code.is_some()
            },
        )
        .await;
        code.unwrap_or_default()
    }

    /// Starts the operator again (scales its Deployment to 1) and waits until it is Ready.
    pub async fn start_operator(&self) {
        self.scale_operator(1).await;
        self.wait_for_operator().await;
    }

    /// Every exit of the operator's container so far.
    pub fn operator_exits(&self) -> Vec<testkit::ContainerExit> {
        self.kubelet
            .exits()
            .into_iter()
            .filter(|e| e.namespace == OPERATOR_NAMESPACE)
            .collect()
    }

    async fn scale_operator(&self, replicas: u32) {
        let plane = self.plane;
        let replicas = format!("--replicas={replicas}");
        blocking(move || {
            plane.run_kubectl(&[
                "scale",
                "deployment",
                OPERATOR_RELEASE,
                "-n",
                OPERATOR_NAMESPACE,
                &replicas,
            ])
        })
        .await
        .expect("kubectl scale the operator");
    }
}

fn condition_of(policy: &Value, type_: &str) -> Option<Condition> {
    let c = policy["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)?;
    let text = |k: &str| c[k].as_str().unwrap_or_default().to_owned();
    Some(Condition {
        status: text("status"),
        reason: text("reason"),
        message: text("message"),
    })
}
