//! MemoryPolicies, pods and Deployments as the operator's watch caches hold them: only the
//! fields an evaluation reads, decoded straight from the API server's JSON. Every other field
//! is skipped as it is read and never allocated; the k8s-openapi types, even with their
//! unread fields emptied, spend kilobytes per object on fields that are always empty (a
//! container alone is over 2 kB), and untyped policies (`DynamicObject`) about 12 kB each:
//! at 500 policies over 1,000 pods that was most of the operator's heap.

use std::borrow::Cow;

use k8s_openapi::{
    NamespaceResourceScope,
    api::core::v1::ContainerStateTerminated,
    apimachinery::pkg::{
        api::resource::Quantity,
        apis::meta::v1::{LabelSelector, ObjectMeta, Time},
    },
};
use memory_policy_api::crd::{MemoryPolicy, MemoryPolicySpec, MemoryPolicyStatus};
use serde::{Deserialize, Deserializer};
use tracing::warn;

/// Implements `kube::Resource` for a cached view of a kind, so that watching it asks the
/// API server for that kind.
macro_rules! view_of {
    ($view:ty, $kind:ty) => {
        impl kube::Resource for $view {
            type DynamicType = ();
            type Scope = NamespaceResourceScope;

            fn kind(kind: &()) -> Cow<'_, str> {
                <$kind as kube::Resource>::kind(kind)
            }
            fn group(kind: &()) -> Cow<'_, str> {
                <$kind as kube::Resource>::group(kind)
            }
            fn version(kind: &()) -> Cow<'_, str> {
                <$kind as kube::Resource>::version(kind)
            }
            fn plural(kind: &()) -> Cow<'_, str> {
                <$kind as kube::Resource>::plural(kind)
            }
            fn meta(&self) -> &ObjectMeta {
                &self.metadata
            }
            fn meta_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }
        }
    };
}

view_of!(Policy, MemoryPolicy);
view_of!(Pod, k8s_openapi::api::core::v1::Pod);
view_of!(Deployment, k8s_openapi::api::apps::v1::Deployment);

/// A MemoryPolicy, read once as it arrives: its spec, or what makes the spec unreadable (with
/// the path of the field at fault), so that one policy the operator cannot read (stored under
/// an older schema, say) is reported on its own status instead of failing every list and
/// watch, and with them every other policy.
#[derive(Clone, Debug, Deserialize)]
pub struct Policy {
    pub metadata: ObjectMeta,
    #[serde(default = "no_spec", deserialize_with = "read_spec")]
    pub spec: Result<MemoryPolicySpec, String>,
    /// The stored status; one this operator cannot read (one an older version wrote, say) is
    /// dropped with a warning rather than keeping the policy from being evaluated: the next
    /// status write replaces it.
    #[serde(default, deserialize_with = "read_status")]
    pub status: Option<MemoryPolicyStatus>,
}

impl Policy {
    /// The typed policy, when its spec could be read.
    pub fn read(&self) -> Result<MemoryPolicy, &str> {
        let spec = self.spec.as_ref().map_err(String::as_str)?;
        let mut policy = MemoryPolicy::new(
            self.metadata.name.as_deref().unwrap_or_default(),
            spec.clone(),
        );
        policy.metadata = self.metadata.clone();
        policy.status = self.status.clone();
        Ok(policy)
    }
}

fn no_spec() -> Result<MemoryPolicySpec, String> {
    Err("spec: missing".to_owned())
}

fn read_spec<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Result<MemoryPolicySpec, String>, D::Error> {
    let value = serde_json::Value::deserialize(deserializer)?;
    Ok(read_part(&value, "spec"))
}

fn read_status<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<MemoryPolicyStatus>, D::Error> {
    let value = serde_json::Value::deserialize(deserializer)?;
    if value.is_null() {
        return Ok(None);
    }
    Ok(read_part(&value, "status")
        .inspect_err(|problem| warn!(%problem, "ignoring an unreadable status"))
        .ok())
}

/// `value` as a `T`, or what makes it unreadable, with the path of the field at fault.
fn read_part<T: serde::de::DeserializeOwned>(
    value: &serde_json::Value,
    part: &str,
) -> Result<T, String> {
    serde_path_to_error::deserialize(value).map_err(|error| {
        let path = match error.path().to_string() {
            root if root == "." => part.to_owned(),
            path => format!("{part}.{path}"),
        };
        format!("{path}: {}", error.into_inner())
    })
}

/// A pod: its containers' memory resources, phase, conditions and restarts.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Pod {
    pub metadata: ObjectMeta,
    #[serde(default, deserialize_with = "null_as_default")]
    pub spec: PodSpec,
    #[serde(default, deserialize_with = "null_as_default")]
    pub status: PodStatus,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct PodSpec {
    #[serde(default, deserialize_with = "null_as_default")]
    pub containers: Vec<Container>,
}

/// A container's name, memory resources and how it takes a resize.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    pub name: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub resources: Resources,
    #[serde(default, deserialize_with = "null_as_default")]
    pub resize_policy: Vec<ResizePolicy>,
}

/// What a change of one resource does to a running container.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResizePolicy {
    #[serde(default, deserialize_with = "null_as_default")]
    pub resource_name: String,
    /// `NotRequired` (the default) or `RestartContainer`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub restart_policy: String,
}

impl Container {
    /// A change of its memory restarts it.
    pub fn restarts_on_memory_resize(&self) -> bool {
        self.resize_policy
            .iter()
            .any(|p| p.resource_name == "memory" && p.restart_policy == "RestartContainer")
    }
}

/// The memory of a container's `resources` (CPU and the rest are not read).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Resources {
    #[serde(default, deserialize_with = "null_as_default")]
    pub requests: Memory,
    #[serde(default, deserialize_with = "null_as_default")]
    pub limits: Memory,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct Memory {
    pub memory: Option<Quantity>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStatus {
    pub phase: Option<String>,
    /// `Guaranteed`, `Burstable` or `BestEffort`.
    pub qos_class: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub conditions: Vec<Condition>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub container_statuses: Vec<ContainerStatus>,
}

/// A condition of a pod or a Deployment.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type", default, deserialize_with = "null_as_default")]
    pub type_: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub status: String,
    pub reason: Option<String>,
    pub message: Option<String>,
    pub last_transition_time: Option<Time>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStatus {
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub restart_count: i32,
    /// The resources the container runs with, as the kubelet applied them (Kubernetes 1.33
    /// and later): after a resize in place they differ from the spec's until it is done.
    pub resources: Option<Resources>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub last_state: LastState,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct LastState {
    pub terminated: Option<ContainerStateTerminated>,
}

/// A Deployment: replicas, pause, selector, the pod template's containers, and the rollout's
/// progress.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Deployment {
    pub metadata: ObjectMeta,
    #[serde(default, deserialize_with = "null_as_default")]
    pub spec: DeploymentSpec,
    #[serde(default, deserialize_with = "null_as_default")]
    pub status: DeploymentStatus,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct DeploymentSpec {
    pub replicas: Option<i32>,
    pub paused: Option<bool>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub selector: LabelSelector,
    #[serde(default, deserialize_with = "null_as_default")]
    pub template: PodTemplate,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct PodTemplate {
    #[serde(default, deserialize_with = "null_as_default")]
    pub spec: PodSpec,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentStatus {
    pub observed_generation: Option<i64>,
    pub replicas: Option<i32>,
    pub updated_replicas: Option<i32>,
    pub available_replicas: Option<i32>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub conditions: Vec<Condition>,
}

/// A field the API server left out or sent as `null` reads as its default: one object that
/// fails to decode would fail the whole list, and with it every evaluation.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// What no evaluation reads of an object's metadata: field ownership (larger than the rest of
/// a pod), annotations and owners.
pub fn slim(metadata: &mut ObjectMeta) {
    metadata.managed_fields = None;
    metadata.annotations = None;
    metadata.owner_references = None;
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1 as core;
    use kube::Resource;
    use serde_json::json;

    use super::*;

    #[test]
    fn a_view_asks_the_api_server_for_its_kind() {
        assert_eq!(
            Pod::url_path(&(), Some("shop")),
            core::Pod::url_path(&(), Some("shop"))
        );
        assert_eq!(Pod::api_version(&()), "v1");
        assert_eq!(
            Deployment::url_path(&(), Some("shop")),
            "/apis/apps/v1/namespaces/shop/deployments"
        );
        assert_eq!(Deployment::kind(&()), "Deployment");
    }

    fn policy(spec: serde_json::Value) -> serde_json::Value {
        json!({
            "apiVersion": "shortener.dev/v1alpha1",
            "kind": "MemoryPolicy",
            "metadata": {"name": "guard", "namespace": "shop", "uid": "u1"},
            "spec": spec,
        })
    }

    fn read(value: serde_json::Value) -> Result<MemoryPolicy, String> {
        let policy: Policy = serde_json::from_value(value).unwrap();
        policy.read().map_err(str::to_owned)
    }

    #[test]
    fn a_readable_policy_is_read_whole() {
        let policy = read(policy(json!({
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "thresholds": {"critical": 97},
        })))
        .unwrap();
        assert_eq!(policy.spec.target_ref.name, "web");
        assert_eq!(policy.spec.thresholds.critical, 97);
        assert_eq!(policy.metadata.uid.as_deref(), Some("u1"));
        assert_eq!(
            Policy::url_path(&(), Some("shop")),
            MemoryPolicy::url_path(&(), Some("shop"))
        );
    }

    #[test]
    fn an_unreadable_policy_is_reported_by_the_path_of_the_field_at_fault() {
        let problem = read(policy(json!({
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "onCritical": "Explode",
        })))
        .unwrap_err();
        assert!(
            problem.starts_with("spec.onCritical: unknown variant `Explode`, expected one of"),
            "{problem}"
        );
        let problem = read(policy(json!({
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "thresholds": {"critical": "very"},
        })))
        .unwrap_err();
        assert!(
            problem.starts_with("spec.thresholds.critical: invalid type"),
            "{problem}"
        );
        let problem = read(policy(json!(null))).unwrap_err();
        assert!(problem.starts_with("spec: invalid type: null"), "{problem}");
        let mut missing = policy(json!({}));
        missing.as_object_mut().unwrap().remove("spec");
        assert_eq!(read(missing).unwrap_err(), "spec: missing");
    }

    #[test]
    fn an_unreadable_status_is_dropped_and_the_policy_still_read() {
        let mut value = policy(json!({
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
        }));
        value["status"] = json!({"history": "not a list"});
        let policy = read(value).unwrap();
        assert_eq!(policy.status, None);
        assert_eq!(policy.spec.target_ref.name, "web");
    }

    #[test]
    fn a_full_pod_reads_into_what_an_evaluation_needs() {
        let pod: Pod = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web-a", "namespace": "shop", "labels": {"app": "web"}},
            "spec": {"volumes": [{"name": "v", "emptyDir": {}}], "containers": [{
                "name": "app", "image": "shortener", "args": ["serve"],
                "env": [{"name": "A", "value": "1"}],
                "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}},
                "resources": {"limits": {"memory": "64Mi", "cpu": "1"}, "requests": {"cpu": "100m"}}
            }]},
            "status": {"phase": "Running", "podIP": "127.1.0.2",
                "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": null}],
                "containerStatuses": [{"name": "app", "image": "shortener", "imageID": "",
                    "ready": true, "restartCount": 2,
                    "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]}
        }))
        .unwrap();
        let container = &pod.spec.containers[0];
        assert_eq!(container.name, "app");
        assert_eq!(
            container.resources.limits.memory,
            Some(Quantity("64Mi".into()))
        );
        assert_eq!(container.resources.requests.memory, None);
        assert_eq!(pod.status.phase.as_deref(), Some("Running"));
        assert_eq!(pod.status.conditions[0].type_, "Ready");
        let status = &pod.status.container_statuses[0];
        assert_eq!(status.restart_count, 2);
        let terminated = status.last_state.terminated.as_ref().unwrap();
        assert_eq!(
            (terminated.exit_code, terminated.reason.as_deref()),
            (137, Some("OOMKilled"))
        );
    }

    #[test]
    fn a_pod_just_created_has_no_spec_or_status_to_read() {
        let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "web-a"}})).unwrap();
        assert!(pod.spec.containers.is_empty());
        assert_eq!(pod.status.phase, None);
        let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "web-a"},
            "spec": {"containers": null}, "status": {"conditions": null, "containerStatuses": null}}))
        .unwrap();
        assert!(pod.spec.containers.is_empty() && pod.status.conditions.is_empty());
    }
}
