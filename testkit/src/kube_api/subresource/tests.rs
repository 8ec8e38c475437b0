use serde_json::{Value, json};

use super::*;
use crate::kube_api::ChangeType;

fn kind(api_version: &str, kind: &str) -> &'static ResourceType {
    ResourceType::by_kind(api_version, kind).unwrap()
}

fn deployments() -> &'static ResourceType {
    kind("apps/v1", "Deployment")
}

fn pods() -> &'static ResourceType {
    kind("v1", "Pod")
}

fn budgets() -> &'static ResourceType {
    kind("policy/v1", "PodDisruptionBudget")
}

fn deployment(replicas: i64) -> Value {
    json!({
        "metadata": { "name": "web" },
        "spec": { "replicas": replicas, "selector": { "matchLabels": { "tier": "front", "app": "web" } } },
        "status": { "replicas": 3 },
    })
}

fn pod(name: &str, phase: &str) -> Value {
    json!({ "metadata": { "name": name, "labels": { "app": "web" } }, "status": { "phase": phase } })
}

fn budget(name: &str, allowed: i64) -> Value {
    json!({
        "metadata": { "name": name },
        "spec": { "selector": { "matchLabels": { "app": "web" } } },
        "status": { "disruptionsAllowed": allowed, "desiredHealthy": 2, "currentHealthy": 2 },
    })
}

/// A store with a running pod `web-1` and the given budgets, all in `prod`.
fn store_with(budget_list: &[Value]) -> Store {
    let mut store = Store::default();
    store
        .create(pods(), "prod", pod("web-1", "Running"), Scope::Everything)
        .unwrap();
    for b in budget_list {
        store
            .create(budgets(), "prod", b.clone(), Scope::Everything)
            .unwrap();
    }
    store
}

#[test]
fn scale_shows_replicas_and_the_selector_as_a_string() {
    let mut store = Store::default();
    store
        .create(deployments(), "prod", deployment(3), Scope::Everything)
        .unwrap();
    let scale = scale_of_stored(&store, deployments(), "prod", "web").unwrap();
    assert_eq!(scale["kind"], "Scale");
    assert_eq!(scale["apiVersion"], "autoscaling/v1");
    assert_eq!(scale["metadata"]["resourceVersion"], "1");
    assert_eq!(scale["spec"]["replicas"], 3);
    assert_eq!(
        scale["status"],
        json!({ "replicas": 3, "selector": "app=web,tier=front" })
    );
}

#[test]
fn setting_the_scale_changes_the_deployment_spec_and_generation() {
    let mut store = Store::default();
    store
        .create(deployments(), "prod", deployment(3), Scope::Everything)
        .unwrap();
    let scale = set_scale(
        &mut store,
        deployments(),
        "prod",
        "web",
        json!({ "spec": { "replicas": 5 } }),
    )
    .unwrap();
    assert_eq!(scale["spec"]["replicas"], 5);
    let stored = store.get(deployments(), "prod", "web").unwrap();
    assert_eq!(stored["spec"]["replicas"], 5);
    assert_eq!(stored["metadata"]["generation"], 2);
    assert_eq!(
        store.history().last().unwrap().change_type,
        ChangeType::Modified
    );
}

#[test]
fn a_scale_with_a_stale_version_or_negative_replicas_is_refused() {
    let mut store = Store::default();
    store
        .create(deployments(), "prod", deployment(3), Scope::Everything)
        .unwrap();
    let stale = json!({ "metadata": { "resourceVersion": "0" }, "spec": { "replicas": 5 } });
    let conflict = set_scale(&mut store, deployments(), "prod", "web", stale).unwrap_err();
    assert_eq!(conflict.reason, "Conflict");
    let negative = json!({ "spec": { "replicas": -1 } });
    let invalid = set_scale(&mut store, deployments(), "prod", "web", negative).unwrap_err();
    assert_eq!((invalid.code, invalid.reason), (422, "Invalid"));
}

#[test]
fn eviction_spends_one_allowed_disruption_and_deletes_the_pod() {
    let mut store = store_with(&[budget("web", 1)]);
    let done = evict(
        &mut store,
        "prod",
        "web-1",
        &json!({ "metadata": { "name": "web-1" } }),
    )
    .unwrap();
    assert_eq!(done["status"], "Success");
    assert!(store.get(pods(), "prod", "web-1").is_none());
    let pdb = store.get(budgets(), "prod", "web").unwrap();
    assert_eq!(pdb["status"]["disruptionsAllowed"], 0);
    assert!(pdb["status"]["disruptedPods"]["web-1"].is_string());
}

#[test]
fn eviction_that_would_break_the_budget_is_refused_with_429() {
    for allowed in [json!(0), Value::Null] {
        let mut exhausted = budget("web", 0);
        exhausted["status"]["disruptionsAllowed"] = allowed;
        let mut store = store_with(&[exhausted]);
        let failure = evict(&mut store, "prod", "web-1", &json!({})).unwrap_err();
        assert_eq!((failure.code, failure.reason), (429, "TooManyRequests"));
        assert!(
            failure.message.contains("disruption budget"),
            "{}",
            failure.message
        );
        let cause = &failure.body()["details"]["causes"][0];
        assert_eq!(cause["reason"], "DisruptionBudget");
        assert!(store.get(pods(), "prod", "web-1").is_some());
    }
}

#[test]
fn budgets_that_do_not_select_the_pod_do_not_matter() {
    let mut other = budget("db", 0);
    other["spec"]["selector"] = json!({ "matchLabels": { "app": "db" } });
    let mut no_selector = budget("none", 0);
    no_selector["spec"] = json!({});
    let mut store = store_with(&[other, no_selector]);
    evict(&mut store, "prod", "web-1", &json!({})).unwrap();
    assert!(store.get(pods(), "prod", "web-1").is_none());
}

#[test]
fn budgets_in_other_namespaces_do_not_matter() {
    let mut store = store_with(&[]);
    store
        .create(budgets(), "staging", budget("web", 0), Scope::Everything)
        .unwrap();
    evict(&mut store, "prod", "web-1", &json!({})).unwrap();
    assert!(store.get(pods(), "prod", "web-1").is_none());
}

#[test]
fn pending_pods_skip_their_budget() {
    let mut store = store_with(&[budget("web", 0)]);
    store
        .create(pods(), "prod", pod("web-2", "Pending"), Scope::Everything)
        .unwrap();
    evict(&mut store, "prod", "web-2", &json!({})).unwrap();
    assert!(store.get(pods(), "prod", "web-2").is_none());
}

#[test]
fn two_budgets_for_one_pod_is_an_error_as_in_the_api() {
    let mut store = store_with(&[budget("a", 1), budget("b", 1)]);
    let failure = evict(&mut store, "prod", "web-1", &json!({})).unwrap_err();
    assert_eq!(failure.code, 500);
    assert!(store.get(pods(), "prod", "web-1").is_some());
}

#[test]
fn evicting_a_missing_pod_is_not_found() {
    let mut store = store_with(&[]);
    let failure = evict(&mut store, "prod", "nope", &json!({})).unwrap_err();
    assert_eq!((failure.code, failure.reason), (404, "NotFound"));
}
