//! Carries out the engine's decisions on the cluster: the scale subresource,
//! the Eviction API (PodDisruptionBudgets apply), and the pod-template
//! annotation `kubectl rollout restart` sets.

use jiff::Timestamp;
use k8s_openapi::api::{apps::v1::Deployment, core::v1::Pod};
use kube::{
    Api, Client,
    api::{EvictParams, Patch, PatchParams},
};
use serde_json::json;
use tracing::info;

use crate::decide::Action;

/// The annotation `kubectl rollout restart` sets on the pod template.
pub const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";

/// How an action ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Done as decided.
    Done,
    /// Nothing to change on the cluster (an alert).
    Reported,
    /// The cluster refused; the reason says why, and nothing (more) was done.
    Refused(String),
}

/// Applies `action` to `deployment` in `namespace`; evictions go through `evictions`.
pub async fn apply(
    client: &Client,
    evictions: &Client,
    namespace: &str,
    deployment: &Deployment,
    action: &Action,
    now: Timestamp,
) -> Outcome {
    let name = deployment.metadata.name.as_deref().unwrap_or_default();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    match action {
        Action::ScaleTo { from, to } => {
            let patch = Patch::Merge(json!({ "spec": { "replicas": to } }));
            match deployments
                .patch_scale(name, &PatchParams::default(), &patch)
                .await
            {
                Ok(_) => {
                    info!(deployment = name, from, to, "scaled");
                    Outcome::Done
                }
                Err(error) => Outcome::Refused(format!(
                    "scaling {name} to {to} failed: {}",
                    describe(&error)
                )),
            }
        }
        Action::Evict { pods } => evict(evictions, namespace, pods).await,
        Action::RollingRestart => {
            if deployment.spec.paused == Some(true) {
                return Outcome::Refused(format!(
                    "{name} is paused; a rolling restart would never start"
                ));
            }
            let patch = Patch::Merge(json!({
                "spec": { "template": { "metadata": { "annotations": { RESTARTED_AT: now.to_string() } } } }
            }));
            match deployments
                .patch(name, &PatchParams::default(), &patch)
                .await
            {
                Ok(_) => {
                    info!(deployment = name, "rolling restart started");
                    Outcome::Done
                }
                Err(error) => {
                    Outcome::Refused(format!("restarting {name} failed: {}", describe(&error)))
                }
            }
        }
        Action::Alert { .. } => Outcome::Reported,
    }
}

/// Evicts pods one by one; stops at the first refusal (a PodDisruptionBudget
/// answers 429), since the rest would be refused for the same reason.
async fn evict(client: &Client, namespace: &str, pods: &[String]) -> Outcome {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    for pod in pods {
        match api.evict(pod, &EvictParams::default()).await {
            Ok(_) => info!(pod, "evicted"),
            // Already gone: the goal is reached.
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(kube::Error::Api(status)) if status.code == 429 => {
                return Outcome::Refused(format!(
                    "eviction of {pod} refused by a PodDisruptionBudget, will try later: {}",
                    status.message
                ));
            }
            Err(error) => {
                return Outcome::Refused(format!("eviction of {pod} failed: {}", describe(&error)));
            }
        }
    }
    Outcome::Done
}

fn describe(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => format!("{} ({})", status.message, status.code),
        other => other.to_string(),
    }
}

/// The merge patch that brings the target container's memory request and
/// limit to `limits`, or `None` when they already match. The whole container
/// list is sent (a merge patch replaces lists) with the resourceVersion read,
/// so a concurrent change makes it fail with 409 instead of being overwritten.
pub fn limits_patch(
    deployment: &Deployment,
    limits: &crate::crd::Limits,
) -> Option<serde_json::Value> {
    let template = deployment.spec.template.spec.as_ref()?;
    let mut containers = template.containers.clone();
    let index = match &limits.container {
        Some(name) => containers.iter().position(|c| &c.name == name)?,
        None => 0,
    };
    let container = containers.get_mut(index)?;
    let resources = container.resources.get_or_insert_with(Default::default);
    let mut changed = false;
    for (wanted, current) in [
        (
            &limits.request,
            resources.requests.get_or_insert_with(Default::default),
        ),
        (
            &limits.limit,
            resources.limits.get_or_insert_with(Default::default),
        ),
    ] {
        if let Some(quantity) = wanted
            && current.get("memory") != Some(quantity)
        {
            current.insert("memory".into(), quantity.clone());
            changed = true;
        }
    }
    changed.then(|| {
        json!({
            "metadata": { "resourceVersion": deployment.metadata.resource_version },
            "spec": { "template": { "spec": { "containers": containers } } }
        })
    })
}

/// Applies a patch from [`limits_patch`].
pub async fn enforce_limits(
    client: &Client,
    namespace: &str,
    name: &str,
    patch: serde_json::Value,
) -> Outcome {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    match deployments
        .patch(name, &PatchParams::default(), &Patch::Merge(patch))
        .await
    {
        Ok(_) => {
            info!(deployment = name, "container memory limits enforced");
            Outcome::Done
        }
        Err(error) => Outcome::Refused(format!(
            "setting the memory limits of {name} failed: {}",
            describe(&error)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(limit: &str) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "resourceVersion": "7"},
            "spec": {"selector": {}, "template": {"spec": {"containers": [
                {"name": "app", "resources": {"limits": {"memory": limit}}},
                {"name": "sidecar"}
            ]}}}
        }))
        .unwrap()
    }

    fn limits(yaml: &str) -> crate::crd::Limits {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn matching_limits_need_no_patch() {
        assert_eq!(
            limits_patch(&deployment("256Mi"), &limits("{limit: 256Mi}")),
            None
        );
    }

    #[test]
    fn a_different_limit_is_patched_on_the_named_container_only() {
        let patch = limits_patch(
            &deployment("512Mi"),
            &limits("{container: app, request: 64Mi, limit: 256Mi}"),
        )
        .unwrap();
        assert_eq!(patch["metadata"]["resourceVersion"], "7");
        let containers = &patch["spec"]["template"]["spec"]["containers"];
        assert_eq!(containers[0]["resources"]["limits"]["memory"], "256Mi");
        assert_eq!(containers[0]["resources"]["requests"]["memory"], "64Mi");
        assert_eq!(containers[1]["name"], "sidecar");
        assert!(containers[1].get("resources").is_none() || containers[1]["resources"].is_null());
    }

    #[test]
    fn an_unknown_container_is_left_alone() {
        assert_eq!(
            limits_patch(
                &deployment("512Mi"),
                &limits("{container: nope, limit: 256Mi}")
            ),
            None
        );
    }
}
