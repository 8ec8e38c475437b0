//! Create, read, replace, patch, apply, delete and list, with the API's answers.

use reqwest::StatusCode;
use serde_json::json;

use crate::support::{Api, POLICIES, policy};

#[tokio::test]
async fn objects_are_created_read_replaced_patched_and_deleted_as_in_the_api() {
    let api = Api::start().await;
    let (status, created) = api.call("POST", POLICIES, Some(policy("web", 60))).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(created["metadata"]["generation"], 1);
    let (status, again) = api.call("POST", POLICIES, Some(policy("web", 60))).await;
    assert_eq!(
        (status, &again["reason"]),
        (StatusCode::CONFLICT, &json!("AlreadyExists"))
    );

    let path = format!("{POLICIES}/web");
    let (status, fetched) = api.call("GET", &path, None).await;
    assert_eq!((status, &fetched), (StatusCode::OK, &created));

    let mut replacement = created.clone();
    replacement["spec"]["threshold"] = json!(70);
    let (status, replaced) = api.call("PUT", &path, Some(replacement.clone())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(replaced["metadata"]["generation"], 2);
    let (status, stale) = api.call("PUT", &path, Some(replacement)).await;
    assert_eq!(
        (status, &stale["reason"]),
        (StatusCode::CONFLICT, &json!("Conflict"))
    );

    let merge = json!({ "spec": { "threshold": 80 }, "status": { "phase": "Ignored" } });
    let (status, patched) = api
        .send("PATCH", &path, "application/merge-patch+json", Some(merge))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(patched["spec"]["threshold"], 80);
    assert_eq!(
        patched.get("status"),
        None,
        "the object's own path ignores status"
    );

    let status_patch = json!({ "status": { "phase": "Ready" } });
    let status_path = format!("{path}/status");
    let (_, with_status) = api
        .send(
            "PATCH",
            &status_path,
            "application/merge-patch+json",
            Some(status_patch),
        )
        .await;
    assert_eq!(with_status["status"]["phase"], "Ready");
    assert_eq!(
        with_status["metadata"]["generation"], 3,
        "status writes leave the generation"
    );

    let (status, deleted) = api.call("DELETE", &path, None).await;
    assert_eq!(
        (status, &deleted["metadata"]["name"]),
        (StatusCode::OK, &json!("web"))
    );
    let (status, missing) = api.call("GET", &path, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(missing["kind"], "Status");
    assert_eq!(missing["reason"], "NotFound");
    assert_eq!(missing["details"]["name"], "web");
}

#[tokio::test]
async fn server_side_apply_creates_then_merges_and_respects_resource_versions() {
    let api = Api::start().await;
    let path = format!("{POLICIES}/web?fieldManager=operator&force=true");
    let apply = "application/apply-patch+yaml";
    let (status, created) = api
        .send("PATCH", &path, apply, Some(policy("web", 60)))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = api
        .send(
            "PATCH",
            &path,
            apply,
            Some(json!({ "spec": { "extra": true } })),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "apply needs apiVersion and kind that match"
    );
    let mut update = policy("web", 75);
    update["metadata"]["resourceVersion"] = created["metadata"]["resourceVersion"].clone();
    let (status, applied) = api.send("PATCH", &path, apply, Some(update.clone())).await;
    assert_eq!(
        (status, &applied["spec"]["threshold"]),
        (StatusCode::OK, &json!(75))
    );
    let (status, stale) = api.send("PATCH", &path, apply, Some(update)).await;
    assert_eq!(
        (status, &stale["reason"]),
        (StatusCode::CONFLICT, &json!("Conflict"))
    );
    let (status, unsupported) = api
        .send(
            "PATCH",
            &path,
            "application/json-patch+json",
            Some(json!([])),
        )
        .await;
    assert_eq!(
        (status, &unsupported["reason"]),
        (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            &json!("UnsupportedMediaType")
        )
    );
}

#[tokio::test]
async fn lists_filter_by_labels_and_fields_and_carry_the_latest_version() {
    let api = Api::start().await;
    api.server.apply(policy("web", 60));
    let mut other = policy("db", 60);
    other["metadata"]["labels"] = json!({ "app": "db" });
    api.server.apply(other);
    let (_, list) = api
        .call("GET", &format!("{POLICIES}?labelSelector=app%3Dweb"), None)
        .await;
    assert_eq!(list["kind"], "MemoryPolicyList");
    assert_eq!(list["metadata"]["resourceVersion"], "2");
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!(list["items"][0]["metadata"]["name"], "web");
    let everywhere = "/apis/shortener.dev/v1alpha1/memorypolicies?fieldSelector=metadata.name%3Ddb";
    let (_, list) = api.call("GET", everywhere, None).await;
    assert_eq!(list["items"][0]["metadata"]["name"], "db");
}
