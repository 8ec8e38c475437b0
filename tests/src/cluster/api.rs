//! What a test writes and reads through the fake API, as a user with kubectl would: policies,
//! their conditions and history, Events, and the requests the operator made.

use kube::{
    Api,
    api::{Patch, PatchParams},
};
use memory_operator::crd::MemoryPolicy;
use serde_json::{Value, json};

use super::Cluster;
use crate::{DEPLOYMENT, NS};

/// A status condition of a policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Condition {
    pub status: String,
    pub reason: String,
    pub message: String,
}

impl Cluster {
    /// Applies policy `name` on Deployment `web` with fast clocks, `overrides` merged in.
    pub fn apply_policy(&self, name: &str, overrides: Value) {
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
        testkit::merge_patch(&mut spec, &overrides);
        self.api.apply(json!({
            "apiVersion": "shortener.dev/v1alpha1", "kind": "MemoryPolicy",
            "metadata": {"name": name, "namespace": NS},
            "spec": spec
        }));
    }

    /// Merge-patches policy `name`'s spec, as `kubectl patch --type merge` would.
    pub async fn patch_policy(&self, name: &str, spec: Value) {
        let policies: Api<MemoryPolicy> = Api::namespaced(self.client.clone(), NS);
        policies
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({ "spec": spec })),
            )
            .await
            .unwrap_or_else(|e| panic!("patch policy {name}: {e}"));
    }

    /// The stored policy object.
    pub fn policy(&self, name: &str) -> Value {
        self.api
            .get("shortener.dev/v1alpha1", "MemoryPolicy", NS, name)
            .unwrap_or_else(|| panic!("policy {name} exists"))
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
        for change in self.api.history() {
            if change.kind != "MemoryPolicy" || change.name != name {
                continue;
            }
            if let Some(c) = condition_of(&change.object, type_)
                && seen.last() != Some(&c.status)
            {
                seen.push(c.status);
            }
        }
        seen
    }

    /// Events about objects of `kind` with `reason`, oldest first.
    pub fn events(&self, kind: &str, reason: &str) -> Vec<Value> {
        self.api
            .events_of(kind)
            .into_iter()
            .filter(|e| e["reason"] == reason)
            .collect()
    }

    /// The reasons of every Event about objects of `kind`, oldest first.
    pub fn event_reasons(&self, kind: &str) -> Vec<String> {
        self.api.event_reasons(kind)
    }

    /// The pods named in eviction requests so far, in order.
    pub fn eviction_requests(&self) -> Vec<String> {
        self.requests_to("POST", "/eviction")
            .iter()
            .filter_map(|path| path.split("/pods/").nth(1)?.split('/').next())
            .map(str::to_owned)
            .collect()
    }

    /// Paths of requests with `method` whose path contains `part`.
    pub fn requests_to(&self, method: &str, part: &str) -> Vec<String> {
        self.api.requests_to(method, part)
    }

    /// The Deployment's `spec.replicas`.
    pub fn replicas(&self) -> u64 {
        self.api
            .get("apps/v1", "Deployment", NS, DEPLOYMENT)
            .and_then(|d| d["spec"]["replicas"].as_u64())
            .unwrap_or(0)
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
