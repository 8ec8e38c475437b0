//! Pods and Deployments as the operator's watch caches hold them: only the fields an
//! evaluation reads, decoded straight from the API server's JSON. Every other field is
//! skipped as it is read and never allocated; the k8s-openapi types, even with their unread
//! fields emptied, spend kilobytes per object on fields that are always empty (a container
//! alone is over 2 kB), which at 1,000 pods and 500 Deployments was most of the operator's
//! heap.

use std::borrow::Cow;

use k8s_openapi::{
    NamespaceResourceScope,
    api::core::v1::ContainerStateTerminated,
    apimachinery::pkg::{
        api::resource::Quantity,
        apis::meta::v1::{LabelSelector, ObjectMeta},
    },
};
use serde::{Deserialize, Deserializer};

/// Implements `kube::Resource` for a cached view of a k8s-openapi kind, so that watching it
/// asks the API server for that kind.
macro_rules! view_of {
    ($view:ty, $kind:ty) => {
        impl kube::Resource for $view {
            type DynamicType = ();
            type Scope = NamespaceResourceScope;

            fn kind(_: &()) -> Cow<'_, str> {
                <$kind as k8s_openapi::Resource>::KIND.into()
            }
            fn group(_: &()) -> Cow<'_, str> {
                <$kind as k8s_openapi::Resource>::GROUP.into()
            }
            fn version(_: &()) -> Cow<'_, str> {
                <$kind as k8s_openapi::Resource>::VERSION.into()
            }
            fn plural(_: &()) -> Cow<'_, str> {
                <$kind as k8s_openapi::Resource>::URL_PATH_SEGMENT.into()
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

view_of!(Pod, k8s_openapi::api::core::v1::Pod);
view_of!(Deployment, k8s_openapi::api::apps::v1::Deployment);

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

/// A container's name and memory resources.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Container {
    pub name: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub resources: Resources,
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
    #[serde(default, deserialize_with = "null_as_default")]
    pub conditions: Vec<Condition>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub container_statuses: Vec<ContainerStatus>,
}

/// A condition of a pod or a Deployment.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Condition {
    #[serde(rename = "type", default, deserialize_with = "null_as_default")]
    pub type_: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub status: String,
    pub reason: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStatus {
    #[serde(default, deserialize_with = "null_as_default")]
    pub restart_count: i32,
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
