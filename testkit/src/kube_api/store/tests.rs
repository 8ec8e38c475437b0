use serde_json::{Value, json};

use super::*;

fn policies() -> &'static ResourceType {
    ResourceType::by_kind("shortener.dev/v1alpha1", "MemoryPolicy").unwrap()
}

fn leases() -> &'static ResourceType {
    ResourceType::by_kind("coordination.k8s.io/v1", "Lease").unwrap()
}

fn policy(name: &str, threshold: u32) -> Value {
    json!({
        "apiVersion": "shortener.dev/v1alpha1",
        "kind": "MemoryPolicy",
        "metadata": { "name": name },
        "spec": { "threshold": threshold },
        "status": { "phase": "Ready" },
    })
}

fn rv_of(object: &Value) -> u64 {
    meta(object, "resourceVersion").unwrap().parse().unwrap()
}

#[test]
fn create_stamps_uid_time_generation_and_the_next_resource_version() {
    let mut store = Store::default();
    let first = store
        .create(policies(), "prod", policy("a", 60), Scope::Object)
        .unwrap();
    let second = store
        .create(policies(), "prod", policy("b", 60), Scope::Object)
        .unwrap();
    assert_eq!(first["metadata"]["generation"], 1);
    assert_eq!(first["metadata"]["namespace"], "prod");
    assert_eq!(meta(&first, "uid").unwrap().len(), 36);
    assert!(meta(&first, "creationTimestamp").unwrap().ends_with('Z'));
    assert_eq!((rv_of(&first), rv_of(&second)), (1, 2));
    assert_eq!(store.rv(), 2);
}

#[test]
fn clients_cannot_create_status_through_the_object_but_tests_can() {
    let mut store = Store::default();
    let by_client = store
        .create(policies(), "prod", policy("a", 60), Scope::Object)
        .unwrap();
    let by_test = store
        .create(policies(), "prod", policy("b", 60), Scope::Everything)
        .unwrap();
    assert_eq!(by_client.get("status"), None);
    assert_eq!(by_test["status"]["phase"], "Ready");
}

#[test]
fn creating_twice_is_already_exists_and_generate_name_makes_a_name() {
    let mut store = Store::default();
    store
        .create(policies(), "prod", policy("a", 60), Scope::Object)
        .unwrap();
    let again = store.create(policies(), "prod", policy("a", 60), Scope::Object);
    assert_eq!(again.unwrap_err().reason, "AlreadyExists");
    let generated = json!({ "metadata": { "generateName": "web-" }, "spec": {} });
    let created = store
        .create(policies(), "prod", generated, Scope::Object)
        .unwrap();
    assert!(meta(&created, "name").unwrap().starts_with("web-"));
    assert_eq!(meta(&created, "name").unwrap().len(), "web-".len() + 5);
}

#[test]
fn generation_moves_with_the_spec_and_only_with_the_spec() {
    let mut store = Store::default();
    store
        .create(policies(), "prod", policy("a", 60), Scope::Everything)
        .unwrap();
    let mut labelled = policy("a", 60);
    labelled["metadata"]["labels"] = json!({ "team": "web" });
    let labelled = store
        .update(policies(), "prod", "a", labelled, Scope::Object)
        .unwrap();
    assert_eq!(labelled["metadata"]["generation"], 1);
    let respecced = store
        .update(policies(), "prod", "a", policy("a", 70), Scope::Object)
        .unwrap();
    assert_eq!(respecced["metadata"]["generation"], 2);
    let mut status = respecced.clone();
    status["status"] = json!({ "phase": "Degraded" });
    let status = store
        .update(policies(), "prod", "a", status, Scope::Status)
        .unwrap();
    assert_eq!(status["metadata"]["generation"], 2);
    assert_eq!(status["status"]["phase"], "Degraded");
}

#[test]
fn object_writes_keep_the_stored_status_and_status_writes_keep_everything_else() {
    let mut store = Store::default();
    store
        .create(policies(), "prod", policy("a", 60), Scope::Everything)
        .unwrap();
    let mut sneaky = policy("a", 60);
    sneaky["status"] = json!({ "phase": "Hacked" });
    let kept = store
        .update(policies(), "prod", "a", sneaky, Scope::Object)
        .unwrap();
    assert_eq!(kept["status"]["phase"], "Ready");
    let mut status_only = policy("a", 99);
    status_only["status"] = json!({ "phase": "Degraded" });
    let written = store
        .update(policies(), "prod", "a", status_only, Scope::Status)
        .unwrap();
    assert_eq!(written["spec"]["threshold"], 60);
    assert_eq!(written["status"]["phase"], "Degraded");
}

#[test]
fn a_stale_resource_version_is_a_conflict() {
    let mut store = Store::default();
    let created = store
        .create(policies(), "prod", policy("a", 60), Scope::Object)
        .unwrap();
    store
        .update(policies(), "prod", "a", policy("a", 70), Scope::Object)
        .unwrap();
    let mut stale = policy("a", 80);
    stale["metadata"]["resourceVersion"] = created["metadata"]["resourceVersion"].clone();
    let failure = store
        .update(policies(), "prod", "a", stale, Scope::Object)
        .unwrap_err();
    assert_eq!((failure.code, failure.reason), (409, "Conflict"));
    assert_eq!(
        store.get(policies(), "prod", "a").unwrap()["spec"]["threshold"],
        70
    );
}

#[test]
fn a_write_that_changes_nothing_keeps_the_version_and_logs_nothing() {
    let mut store = Store::default();
    let created = store
        .create(policies(), "prod", policy("a", 60), Scope::Object)
        .unwrap();
    let same = store
        .update(policies(), "prod", "a", created.clone(), Scope::Object)
        .unwrap();
    assert_eq!(same, created);
    assert_eq!(store.rv(), 1);
    assert_eq!(store.history().count(), 1);
}

#[test]
fn clients_cannot_rewrite_server_owned_metadata() {
    let mut store = Store::default();
    let created = store
        .create(
            leases(),
            "prod",
            json!({ "metadata": { "name": "l" } }),
            Scope::Object,
        )
        .unwrap();
    let forged =
        json!({ "metadata": { "name": "l", "uid": "forged", "generation": 9 }, "spec": {} });
    let written = store
        .update(leases(), "prod", "l", forged, Scope::Object)
        .unwrap();
    assert_eq!(written["metadata"]["uid"], created["metadata"]["uid"]);
    assert_eq!(written["metadata"]["generation"], 2);
}

#[test]
fn finalizers_hold_a_deleted_object_until_the_last_one_goes() {
    let mut store = Store::default();
    let mut held = policy("a", 60);
    held["metadata"]["finalizers"] = json!(["shortener.dev/cleanup"]);
    store
        .create(policies(), "prod", held, Scope::Object)
        .unwrap();
    let marked = store.delete(policies(), "prod", "a", false).unwrap();
    assert!(meta(&marked, "deletionTimestamp").is_some());
    assert!(store.get(policies(), "prod", "a").is_some());
    let mut released = marked.clone();
    released["metadata"]["finalizers"] = json!([]);
    store
        .update(policies(), "prod", "a", released, Scope::Object)
        .unwrap();
    assert!(store.get(policies(), "prod", "a").is_none());
    let kinds: Vec<ChangeType> = store.history().map(|c| c.change_type).collect();
    assert_eq!(
        kinds,
        [ChangeType::Added, ChangeType::Modified, ChangeType::Deleted]
    );
}

#[test]
fn deletion_is_a_write_with_its_own_version() {
    let mut store = Store::default();
    store
        .create(policies(), "prod", policy("a", 60), Scope::Object)
        .unwrap();
    let deleted = store.delete(policies(), "prod", "a", false).unwrap();
    assert_eq!(rv_of(&deleted), 2);
    let missing = store.delete(policies(), "prod", "a", false).unwrap_err();
    assert_eq!(missing.code, 404);
}

#[test]
fn the_log_replays_after_a_version_until_compacted() {
    let mut store = Store::default();
    for name in ["a", "b", "c"] {
        store
            .create(policies(), "prod", policy(name, 60), Scope::Object)
            .unwrap();
    }
    let after_one: Vec<u64> = store
        .entries_after(1)
        .unwrap()
        .iter()
        .map(|e| e.rv)
        .collect();
    assert_eq!(after_one, [2, 3]);
    assert!(store.entries_after(3).unwrap().is_empty());
    store.compact();
    assert_eq!(store.entries_after(1).unwrap_err(), 3);
    assert!(store.entries_after(3).unwrap().is_empty());
}

#[test]
fn subscribers_hear_every_write() {
    let mut store = Store::default();
    let mut changes = store.subscribe();
    store
        .create(policies(), "prod", policy("a", 60), Scope::Object)
        .unwrap();
    let change = changes.try_recv().unwrap();
    assert_eq!(change.change_type, ChangeType::Added);
    assert_eq!(
        (
            change.kind.as_str(),
            change.namespace.as_str(),
            change.name.as_str()
        ),
        ("MemoryPolicy", "prod", "a")
    );
}
