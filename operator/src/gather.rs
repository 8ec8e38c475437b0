//! Gathers what one evaluation looks at: the target Deployment and its live pods from the
//! operator's watch caches, and the samples of one Prometheus query, mapped onto the
//! engine's types. An evaluation asks the API server nothing: at 500 policies, a GET and a
//! LIST each per evaluation were most of the operator's work.

use std::sync::Arc;

use futures::Stream;
use kube::{
    Api, Client, ResourceExt,
    core::{Selector, SelectorExt},
    runtime::{
        WatchStreamExt,
        reflector::{self, ObjectRef, Store},
        watcher,
    },
};
use memory_engine::{Sample, Workload};
use memory_policy_api::{crd::MemoryPolicy, reading};

use crate::{
    Error, Result, adapt,
    context::Context,
    prometheus::{build_query, samples_from},
    watched::{self, Deployment, Pod},
};

/// What one evaluation looks at.
pub struct Observed {
    pub deployment: Arc<Deployment>,
    pub workload: Workload,
    /// Empty when the query failed.
    pub samples: Vec<Sample>,
    /// Why there are no samples, when the query failed.
    pub metrics_failure: Option<MetricsFailure>,
}

/// A query that failed: its `MetricsAvailable=False` reason and what happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricsFailure {
    pub reason: &'static str,
    pub message: String,
}

impl From<Error> for MetricsFailure {
    fn from(error: Error) -> Self {
        MetricsFailure {
            reason: error.metrics_reason(),
            message: error.to_string(),
        }
    }
}

/// The watch caches of Deployments and pods (of one namespace, or of all), kept small: they
/// hold [`watched`] views, and drop the metadata no evaluation reads as each object arrives.
#[derive(Clone)]
pub struct Cluster {
    deployments: Store<Deployment>,
    pods: Store<Pod>,
}

impl Cluster {
    /// The caches, and the watch streams that fill them, which the caller polls.
    pub fn watch(
        client: &Client,
        namespace: Option<&str>,
    ) -> (
        Self,
        impl Stream<Item = Result<Deployment, watcher::Error>> + Send + 'static,
        impl Stream<Item = Result<Pod, watcher::Error>> + Send + 'static,
    ) {
        let (deployments, deployment_writer) = reflector::store();
        let (pods, pod_writer) = reflector::store();
        let deployment_changes = watcher(api(client, namespace), watcher::Config::default())
            .default_backoff()
            .modify(|deployment: &mut Deployment| watched::slim(&mut deployment.metadata))
            .reflect(deployment_writer)
            .touched_objects();
        let pod_changes = watcher(api(client, namespace), watcher::Config::default())
            .default_backoff()
            .modify(|pod: &mut Pod| watched::slim(&mut pod.metadata))
            .reflect(pod_writer)
            .touched_objects();
        (Self { deployments, pods }, deployment_changes, pod_changes)
    }

    /// Waits until both caches hold a first full list (while their streams are polled).
    pub async fn ready(&self) {
        // Only a dropped writer ends the wait early, and the streams own the writers.
        let _ = self.deployments.wait_until_ready().await;
        let _ = self.pods.wait_until_ready().await;
    }

    /// A cached Deployment.
    fn deployment(&self, namespace: &str, name: &str) -> Option<Arc<Deployment>> {
        self.deployments
            .get(&ObjectRef::new(name).within(namespace))
    }

    /// The cached pods of `namespace` that `deployment`'s selector matches.
    fn pods_of(&self, namespace: &str, deployment: &Deployment) -> Vec<Arc<Pod>> {
        // A selector the API server accepted always converts; one that did not selects none.
        let Ok(selector) = Selector::try_from(deployment.spec.selector.clone()) else {
            return Vec::new();
        };
        self.pods.state_filter(|pod| {
            pod.metadata.namespace.as_deref() == Some(namespace) && selector.matches(pod.labels())
        })
    }
}

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    }
}

/// The policy's target, its pods and their samples; `None` when the Deployment does not exist.
pub async fn gather(
    ctx: &Context,
    cluster: &Cluster,
    policy: &MemoryPolicy,
) -> Result<Option<Observed>> {
    let namespace = policy.namespace().unwrap_or_default();
    let Some(deployment) = cluster.deployment(&namespace, &policy.spec.target_ref.name) else {
        return Ok(None);
    };
    let pods = cluster.pods_of(&namespace, &deployment);
    let workload = adapt::workload(&deployment, &pods, reading::container(&policy.spec));
    let (samples, metrics_failure) = read_samples(ctx, policy, &namespace, &workload).await;
    Ok(Some(Observed {
        deployment,
        workload,
        samples,
        metrics_failure,
    }))
}

/// One Prometheus query, mapped to the current pods; an error leaves no samples.
async fn read_samples(
    ctx: &Context,
    policy: &MemoryPolicy,
    namespace: &str,
    workload: &Workload,
) -> (Vec<Sample>, Option<MetricsFailure>) {
    let query = match build_query(&policy.spec, namespace, &workload.pods) {
        Ok(query) => query,
        Err(error) => return (Vec::new(), Some(error.into())),
    };
    match ctx.prometheus.query(&policy.spec, &query).await {
        Ok((data, took)) => {
            ctx.metrics.queried(Some(took.as_secs_f64()));
            let limits = adapt::running_limits(workload);
            (samples_from(&query, &data, &workload.pods, &limits), None)
        }
        Err(error) => {
            ctx.metrics.queried(None);
            (Vec::new(), Some(error.into()))
        }
    }
}

#[cfg(test)]
mod tests {
    use kube::runtime::watcher::Event;
    use serde_json::json;

    use super::*;

    fn pod(namespace: &str, name: &str, app: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": namespace, "labels": {"app": app},
                "annotations": {"note": "big"}},
            "spec": {"containers": [{"name": "app", "env": [{"name": "A", "value": "1"}],
                "resources": {"limits": {"memory": "64Mi"}}}]}
        }))
        .unwrap()
    }

    #[test]
    fn a_deployments_pods_are_those_its_selector_matches_in_its_namespace() {
        let (pods, mut writer) = reflector::store();
        for mut pod in [
            pod("shop", "web-a", "web"),
            pod("shop", "web-b", "web"),
            pod("shop", "db-a", "db"),
            pod("other", "web-c", "web"),
        ] {
            watched::slim(&mut pod.metadata);
            writer.apply_watcher_event(&Event::Apply(pod));
        }
        let (deployments, _) = reflector::store();
        let cluster = Cluster { deployments, pods };
        let deployment: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"selector": {"matchExpressions": [
                {"key": "app", "operator": "In", "values": ["web"]}
            ]}, "template": {}}
        }))
        .unwrap();
        let mut names: Vec<String> = cluster
            .pods_of("shop", &deployment)
            .iter()
            .map(|p| p.name_any())
            .collect();
        names.sort();
        assert_eq!(names, ["web-a", "web-b"]);

        let cached = &cluster.pods_of("shop", &deployment)[0];
        assert_eq!(cached.metadata.annotations, None);
        let limit = &cached.spec.containers[0].resources.limits.memory;
        assert!(limit.is_some(), "limits are kept");
    }
}
