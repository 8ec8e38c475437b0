//! Gathers what one evaluation looks at: the target Deployment, its live pods, and the
//! samples of one Prometheus query, mapped onto the engine's types.

use k8s_openapi::api::{apps::v1::Deployment, core::v1::Pod};
use kube::{Api, Client, ResourceExt, api::ListParams};
use memory_engine::{Sample, Workload};
use memory_policy_api::{crd::MemoryPolicy, reading};

use crate::{
    Error, Result, adapt,
    context::Context,
    prometheus::{build_query, samples_from},
};

/// What one evaluation looks at.
pub struct Observed {
    pub deployment: Deployment,
    pub workload: Workload,
    /// Empty when the query failed.
    pub samples: Vec<Sample>,
    /// Why there are no samples, when the query failed.
    pub metrics_error: Option<String>,
}

/// The policy's target, its pods and their samples; `None` when the Deployment does not exist.
pub async fn gather(ctx: &Context, policy: &MemoryPolicy) -> Result<Option<Observed>> {
    let namespace = policy.namespace().unwrap_or_default();
    let target = &policy.spec.target_ref.name;
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), &namespace);
    let Some(deployment) = deployments
        .get_opt(target)
        .await
        .map_err(Error::kube(format!(
            "reading Deployment {namespace}/{target}"
        )))?
    else {
        return Ok(None);
    };
    let pods = list_pods(&ctx.client, &namespace, &deployment).await?;
    let workload = adapt::workload(&deployment, &pods, reading::container(&policy.spec));
    let (samples, metrics_error) = read_samples(ctx, policy, &namespace, &pods, &workload).await;
    Ok(Some(Observed {
        deployment,
        workload,
        samples,
        metrics_error,
    }))
}

/// The Deployment's pods, by its label selector.
async fn list_pods(client: &Client, namespace: &str, deployment: &Deployment) -> Result<Vec<Pod>> {
    let selector = deployment
        .spec
        .selector
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let list = pods
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(Error::kube(format!(
            "listing the pods of {namespace}/{}",
            deployment.name_any()
        )))?;
    Ok(list.items)
}

/// One Prometheus query, mapped to the current pods; an error leaves no samples.
async fn read_samples(
    ctx: &Context,
    policy: &MemoryPolicy,
    namespace: &str,
    pods: &[Pod],
    workload: &Workload,
) -> (Vec<Sample>, Option<String>) {
    let query = match build_query(&policy.spec, namespace) {
        Ok(query) => query,
        Err(error) => return (Vec::new(), Some(error.to_string())),
    };
    match ctx.prometheus.query(&policy.spec, &query).await {
        Ok((data, took)) => {
            ctx.metrics.queried(Some(took.as_secs_f64()));
            let limits = adapt::pod_limits(pods, reading::container(&policy.spec));
            (samples_from(&query, &data, &workload.pods, &limits), None)
        }
        Err(error) => {
            ctx.metrics.queried(None);
            (Vec::new(), Some(error.to_string()))
        }
    }
}
