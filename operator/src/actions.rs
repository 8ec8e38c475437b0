//! Carries out the engine's decisions on the cluster: the scale subresource,
//! the Eviction API (PodDisruptionBudgets apply), the pod-template annotation
//! `kubectl rollout restart` sets, the container's memory resources in the template, and
//! a running pod's through its `resize` subresource.

use jiff::Timestamp;
use k8s_openapi::api::{apps::v1, core::v1::Pod};
use kube::{
    Api, Client,
    api::{EvictParams, Patch, PatchParams},
};
use serde_json::json;
use tracing::info;

use memory_engine::{Action, Outcome, Raise, size};

use crate::{
    adapt,
    watched::{Container, Deployment},
};

/// The annotation `kubectl rollout restart` sets on the pod template.
pub const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";

/// Applies `action` to `deployment` in `namespace`; evictions go through `evictions`;
/// `container` is the one whose memory the policy sizes (the first when `None`).
pub async fn apply(
    client: &Client,
    evictions: &Client,
    namespace: &str,
    deployment: &Deployment,
    container: Option<&str>,
    action: &Action,
    now: Timestamp,
) -> Outcome {
    let name = deployment.metadata.name.as_deref().unwrap_or_default();
    let deployments: Api<v1::Deployment> = Api::namespaced(client.clone(), namespace);
    match action {
        Action::ScaleTo { from, to } => {
            let patch = Patch::Merge(json!({ "spec": { "replicas": to } }));
            match deployments
                .patch_scale(name, &PatchParams::default(), &patch)
                .await
            {
                Ok(_) => {
                    info!(deployment = name, from, to, "scaled");
                    Outcome::Applied
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
                    Outcome::Applied
                }
                Err(error) => {
                    Outcome::Refused(format!("restarting {name} failed: {}", describe(&error)))
                }
            }
        }
        Action::SetLimits { request, limit } => {
            let Some(patch) = limits_patch(deployment, container, *request, *limit) else {
                return Outcome::Refused(format!(
                    "{name} has no container {} to size",
                    container.unwrap_or("at all")
                ));
            };
            match deployments
                .patch(name, &PatchParams::default(), &Patch::Strategic(patch))
                .await
            {
                Ok(_) => {
                    info!(deployment = name, "container memory resources set");
                    Outcome::Applied
                }
                Err(error) => Outcome::Refused(format!(
                    "setting the memory resources of {name} failed: {}",
                    describe(&error)
                )),
            }
        }
        Action::RaiseLimit { raises, .. } => {
            let Some(chosen) = target(deployment, container) else {
                return Outcome::Refused(format!(
                    "{name} has no container {} to resize",
                    container.unwrap_or("at all")
                ));
            };
            raise(client, namespace, &chosen.name, raises).await
        }
        Action::Alert { .. } => Outcome::Reported,
    }
}

/// Raises each pod's limit of `container` through its `resize` subresource (the pod template
/// is left as it is), every pod tried whatever the others' answer.
async fn raise(client: &Client, namespace: &str, container: &str, raises: &[Raise]) -> Outcome {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let mut refused = Vec::new();
    let mut why = Vec::new();
    for raise in raises {
        let patch = Patch::Strategic(resize_patch(container, raise));
        match api
            .patch_subresource("resize", &raise.pod, &PatchParams::default(), &patch)
            .await
        {
            Ok(_) => info!(
                pod = raise.pod,
                from = raise.from,
                to = raise.to,
                "memory limit raised in place"
            ),
            Err(error) => {
                // A 404 is the pod gone, or a cluster older than 1.33 without the subresource:
                // either way nothing was raised.
                why.push(format!(
                    "raising the memory limit of {} to {} failed: {}",
                    raise.pod,
                    size(raise.to),
                    describe(&error)
                ));
                refused.push(raise.pod.clone());
            }
        }
    }
    match (refused.len(), why.join("; ")) {
        (0, _) => Outcome::Applied,
        (n, why) if n == raises.len() => Outcome::Refused(why),
        (_, why) => Outcome::Partly { refused, why },
    }
}

/// The strategic merge patch of a pod's `resize` subresource that gives `container` the raised
/// limit (and request, when it moves with the limit); its other resources stay as they are.
fn resize_patch(container: &str, raise: &Raise) -> serde_json::Value {
    let mut resources = serde_json::Map::new();
    resources.insert("limits".into(), json!({ "memory": size(raise.to) }));
    if let Some(request) = raise.request {
        resources.insert("requests".into(), json!({ "memory": size(request) }));
    }
    json!({ "spec": { "containers": [ { "name": container, "resources": resources } ] } })
}

/// The container a policy sizes in the pod template.
fn target<'a>(deployment: &'a Deployment, container: Option<&str>) -> Option<&'a Container> {
    adapt::target(&deployment.spec.template.spec.containers, container)
}

/// Evicts pods one by one; stops at the first refusal (a PodDisruptionBudget
/// answers 429), since the rest would be refused for the same reason: the pods evicted before
/// it count as done.
async fn evict(client: &Client, namespace: &str, pods: &[String]) -> Outcome {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    for (done, pod) in pods.iter().enumerate() {
        let why = match api.evict(pod, &EvictParams::default()).await {
            Ok(_) => {
                info!(pod, "evicted");
                continue;
            }
            // Already gone: the goal is reached.
            Err(kube::Error::Api(status)) if status.code == 404 => continue,
            Err(kube::Error::Api(status)) if status.code == 429 => format!(
                "eviction of {pod} refused by a PodDisruptionBudget, will try later: {}",
                status.message
            ),
            Err(error) => format!("eviction of {pod} failed: {}", describe(&error)),
        };
        return match done {
            0 => Outcome::Refused(why),
            _ => Outcome::Partly {
                refused: pods[done..].to_vec(),
                why,
            },
        };
    }
    Outcome::Applied
}

fn describe(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => format!("{} ({})", status.message, status.code),
        other => other.to_string(),
    }
}

/// The strategic merge patch that sets the memory `request` and `limit` of `container` (the
/// first when `None`) in the pod template, or `None` when there is no such container. Only
/// that container's memory is named: the API server merges containers by name and resources
/// by key, so the rest of the template stays as it is. The resourceVersion read is sent, so a
/// concurrent change makes it fail with 409 instead of being overwritten.
fn limits_patch(
    deployment: &Deployment,
    container: Option<&str>,
    request: Option<u64>,
    limit: Option<u64>,
) -> Option<serde_json::Value> {
    let chosen = target(deployment, container)?;
    let mut resources = serde_json::Map::new();
    for (key, wanted) in [("requests", request), ("limits", limit)] {
        if let Some(bytes) = wanted {
            resources.insert(key.into(), json!({ "memory": size(bytes) }));
        }
    }
    Some(json!({
        "metadata": { "resourceVersion": deployment.metadata.resource_version },
        "spec": { "template": { "spec": { "containers": [
            { "name": chosen.name, "resources": resources }
        ] } } }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

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

    #[test]
    fn limits_are_patched_on_the_named_container_only() {
        let patch = limits_patch(
            &deployment("512Mi"),
            Some("sidecar"),
            Some(64 * MIB),
            Some(256 * MIB),
        )
        .unwrap();
        assert_eq!(patch["metadata"]["resourceVersion"], "7");
        assert_eq!(
            patch["spec"]["template"]["spec"]["containers"],
            json!([{"name": "sidecar", "resources": {
                "limits": {"memory": "256Mi"}, "requests": {"memory": "64Mi"}}}])
        );
    }

    #[test]
    fn an_unset_value_is_left_as_it_is() {
        let patch = limits_patch(&deployment("512Mi"), None, Some(64 * MIB), None).unwrap();
        assert_eq!(
            patch["spec"]["template"]["spec"]["containers"],
            json!([{"name": "app", "resources": {"requests": {"memory": "64Mi"}}}])
        );
    }

    #[test]
    fn a_resize_names_the_container_and_moves_the_request_only_when_asked() {
        let mut raise = Raise {
            pod: "web-a".into(),
            from: 96 * MIB,
            to: 160 * MIB,
            request: None,
        };
        assert_eq!(
            resize_patch("app", &raise),
            json!({"spec": {"containers": [{"name": "app", "resources": {
                "limits": {"memory": "160Mi"}}}]}})
        );
        raise.request = Some(160 * MIB);
        assert_eq!(
            resize_patch("app", &raise)["spec"]["containers"][0]["resources"]["requests"],
            json!({"memory": "160Mi"})
        );
    }

    #[test]
    fn an_unknown_container_has_no_patch() {
        assert_eq!(
            limits_patch(&deployment("512Mi"), Some("nope"), None, Some(MIB)),
            None
        );
    }
}
