//! The `/scale` subresource of Deployments and the `/eviction` subresource of Pods.

use serde_json::{Value, json};

use super::{
    object::{meta, now},
    registry::ResourceType,
    selector::LabelSelector,
    status::{Failure, success},
    store::{Scope, Store},
};

/// The `autoscaling/v1` `Scale` view of a Deployment.
pub(crate) fn scale_of(deployment: &Value) -> Value {
    let match_labels = deployment["spec"]["selector"]["matchLabels"].as_object();
    let mut terms: Vec<String> = match_labels
        .into_iter()
        .flatten()
        .map(|(key, value)| format!("{key}={}", value.as_str().unwrap_or_default()))
        .collect();
    terms.sort();
    let metadata = &deployment["metadata"];
    json!({
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": {
            "name": metadata["name"],
            "namespace": metadata["namespace"],
            "resourceVersion": metadata["resourceVersion"],
            "uid": metadata["uid"],
            "creationTimestamp": metadata["creationTimestamp"],
        },
        "spec": { "replicas": deployment["spec"]["replicas"].as_i64().unwrap_or(0) },
        "status": {
            "replicas": deployment["status"]["replicas"].as_i64().unwrap_or(0),
            "selector": terms.join(","),
        },
    })
}

pub(crate) fn scale_of_stored(
    store: &Store,
    rt: &'static ResourceType,
    namespace: &str,
    name: &str,
) -> Result<Value, Failure> {
    let deployment = store
        .get(rt, namespace, name)
        .ok_or_else(|| Failure::not_found(rt, name))?;
    Ok(scale_of(deployment))
}

/// Sets the Deployment's `spec.replicas` from a desired `Scale` (a write to the Deployment:
/// new generation, `MODIFIED`); a stale `resourceVersion` in it is a conflict.
pub(crate) fn set_scale(
    store: &mut Store,
    rt: &'static ResourceType,
    namespace: &str,
    name: &str,
    scale: Value,
) -> Result<Value, Failure> {
    let mut deployment = store
        .get(rt, namespace, name)
        .ok_or_else(|| Failure::not_found(rt, name))?
        .clone();
    if meta(&scale, "resourceVersion")
        .is_some_and(|rv| Some(rv) != meta(&deployment, "resourceVersion"))
    {
        return Err(Failure::conflict(rt, name));
    }
    let replicas = scale["spec"]["replicas"]
        .as_i64()
        .filter(|r| *r >= 0)
        .ok_or_else(|| {
            let found = &scale["spec"]["replicas"];
            let problem = format!(
                "spec.replicas: Invalid value: {found}: must be greater than or equal to 0"
            );
            Failure::invalid(rt, name, &problem)
        })?;
    deployment["spec"]["replicas"] = json!(replicas);
    let written = store.update(rt, namespace, name, deployment, Scope::Object)?;
    Ok(scale_of(&written))
}

/// Evicts a pod as the API does: refused with 429 while the one PodDisruptionBudget that
/// selects it allows no disruption; otherwise that budget's `disruptionsAllowed` drops by one
/// and the pod is deleted. Answers the `Status` of a successful eviction.
pub(crate) fn evict(
    store: &mut Store,
    namespace: &str,
    name: &str,
    eviction: &Value,
) -> Result<Value, Failure> {
    let pods = ResourceType::by_kind("v1", "Pod").expect("pods are served");
    let budgets =
        ResourceType::by_kind("policy/v1", "PodDisruptionBudget").expect("PDBs are served");
    if let Some(named) = meta(eviction, "name")
        && named != name
    {
        let message =
            format!("name in URL does not match name in Eviction object: {name} != {named}");
        return Err(Failure::bad_request(message));
    }
    let options = eviction
        .get("deleteOptions")
        .or_else(|| eviction.get("delete_options"));
    if options.is_some_and(|o| o["dryRun"].as_array().is_some_and(|d| !d.is_empty())) {
        return Err(Failure::bad_request(
            "dryRun is not supported by the fake API server",
        ));
    }
    let pod = store
        .get(pods, namespace, name)
        .ok_or_else(|| Failure::not_found(pods, name))?;
    if !ignores_budgets(pod) {
        let selecting: Vec<Value> = store
            .list(budgets, Some(namespace))
            .filter(|pdb| selects(pdb, pod))
            .cloned()
            .collect();
        match &selecting[..] {
            [] => {}
            [budget] => take_disruption(store, budgets, budget, name)?,
            _ => {
                let message = "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.";
                return Err(Failure::internal(message));
            }
        }
    }
    store.delete(pods, namespace, name, false)?;
    Ok(success(201))
}

/// Pods that are not running yet, finished, or already going skip their budget.
fn ignores_budgets(pod: &Value) -> bool {
    let phase = pod["status"]["phase"].as_str();
    matches!(phase, Some("Pending" | "Succeeded" | "Failed"))
        || meta(pod, "deletionTimestamp").is_some()
}

/// Whether the budget's selector picks the pod; a budget without a selector picks nothing.
fn selects(budget: &Value, pod: &Value) -> bool {
    let selector = budget["spec"].get("selector").filter(|s| !s.is_null());
    selector
        .and_then(|s| LabelSelector::from_object(s).ok())
        .is_some_and(|s| s.matches(pod))
}

fn take_disruption(
    store: &mut Store,
    budgets: &'static ResourceType,
    budget: &Value,
    pod: &str,
) -> Result<(), Failure> {
    let status = &budget["status"];
    let allowed = status["disruptionsAllowed"].as_i64().unwrap_or(0);
    let budget_name = meta(budget, "name").unwrap_or_default();
    if allowed <= 0 {
        let cause = format!(
            "The disruption budget {budget_name} needs {} healthy pods and has {} currently",
            status["desiredHealthy"].as_i64().unwrap_or(0),
            status["currentHealthy"].as_i64().unwrap_or(0),
        );
        let message = "Cannot evict pod as it would violate the pod's disruption budget.";
        let details = json!({ "causes": [{ "reason": "DisruptionBudget", "message": cause }] });
        return Err(Failure::too_many_requests(message).with_details(details));
    }
    let mut taken = budget.clone();
    taken["status"]["disruptionsAllowed"] = json!(allowed - 1);
    taken["status"]["disruptedPods"][pod] = json!(now());
    let namespace = meta(budget, "namespace").unwrap_or_default();
    store.update(budgets, namespace, budget_name, taken, Scope::Status)?;
    Ok(())
}

#[cfg(test)]
mod tests;
