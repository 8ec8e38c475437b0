//! Scale and eviction, and the failures a test can inject.

use reqwest::{StatusCode, header};
use serde_json::json;
use testkit::ChangeType;

use crate::support::{Api, DEPLOYMENTS, PODS, deployment, running_pod};

#[tokio::test]
async fn scaling_writes_the_deployment_and_tells_subscribers() {
    let api = Api::start().await;
    api.server.apply(deployment(3));
    let mut changes = api.server.subscribe();
    let path = format!("{DEPLOYMENTS}/web/scale");
    let (_, scale) = api.call("GET", &path, None).await;
    assert_eq!(
        (&scale["spec"]["replicas"], &scale["status"]["selector"]),
        (&json!(3), &json!("app=web"))
    );
    let patch = json!({ "spec": { "replicas": 2 } });
    let (status, scale) = api
        .send("PATCH", &path, "application/merge-patch+json", Some(patch))
        .await;
    assert_eq!(
        (status, &scale["spec"]["replicas"]),
        (StatusCode::OK, &json!(2))
    );
    let change = changes.recv().await.unwrap();
    assert_eq!(
        (change.change_type, change.kind.as_str()),
        (ChangeType::Modified, "Deployment")
    );
    assert_eq!(change.object["spec"]["replicas"], 2);
    assert_eq!(change.object["metadata"]["generation"], 2);
}

#[tokio::test]
async fn evictions_respect_the_pod_disruption_budget() {
    let api = Api::start().await;
    api.server.apply(running_pod("web-1"));
    api.server.apply(running_pod("web-2"));
    api.server.apply(json!({
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": { "name": "web", "namespace": "prod" },
        "spec": { "selector": { "matchLabels": { "app": "web" } } },
        "status": { "disruptionsAllowed": 1 },
    }));
    let eviction = |name: &str| json!({ "apiVersion": "policy/v1", "kind": "Eviction", "metadata": { "name": name } });
    let (status, body) = api
        .call(
            "POST",
            &format!("{PODS}/web-1/eviction"),
            Some(eviction("web-1")),
        )
        .await;
    assert_eq!(
        (status, &body["status"]),
        (StatusCode::CREATED, &json!("Success"))
    );
    assert_eq!(api.server.get("v1", "Pod", "prod", "web-1"), None);

    let (status, body) = api
        .call(
            "POST",
            &format!("{PODS}/web-2/eviction"),
            Some(eviction("web-2")),
        )
        .await;
    assert_eq!(
        (status, &body["reason"]),
        (StatusCode::TOO_MANY_REQUESTS, &json!("TooManyRequests"))
    );
    assert!(api.server.get("v1", "Pod", "prod", "web-2").is_some());
    let (status, _) = api
        .call(
            "POST",
            &format!("{PODS}/gone/eviction"),
            Some(eviction("gone")),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn injected_failures_hit_the_next_matching_requests_only() {
    let api = Api::start().await;
    api.server.apply(deployment(3));
    api.server.fail_next("PATCH", "/deployments/web", 429, 1);
    api.server.fail_next("get", "/deployments/web", 500, 2);
    let path = format!("{DEPLOYMENTS}/web");
    let patch = json!({ "spec": { "replicas": 4 } });
    let response = api
        .client
        .patch(api.url(&path))
        .header(header::CONTENT_TYPE, "application/merge-patch+json")
        .body(patch.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()[header::RETRY_AFTER], "1");
    let (status, body) = api.call("GET", &path, None).await;
    assert_eq!(
        (status, &body["reason"]),
        (StatusCode::INTERNAL_SERVER_ERROR, &json!("InternalError"))
    );
    assert_eq!(
        api.call("GET", &path, None).await.0,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(api.call("GET", &path, None).await.0, StatusCode::OK);
}

#[tokio::test]
async fn every_request_is_logged_and_unknown_paths_are_404_statuses() {
    let api = Api::start().await;
    let (status, body) = api
        .call("GET", "/api/v1/namespaces/prod/secrets", None)
        .await;
    assert_eq!(
        (status, &body["kind"], &body["code"]),
        (StatusCode::NOT_FOUND, &json!("Status"), &json!(404))
    );
    let (status, body) = api
        .call("POST", &format!("{DEPLOYMENTS}/web"), Some(deployment(1)))
        .await;
    assert_eq!(
        (status, &body["reason"]),
        (StatusCode::METHOD_NOT_ALLOWED, &json!("MethodNotAllowed"))
    );
    let requests = api.server.requests();
    assert_eq!(
        requests,
        [
            (
                "GET".to_owned(),
                "/api/v1/namespaces/prod/secrets".to_owned()
            ),
            ("POST".to_owned(), format!("{DEPLOYMENTS}/web")),
        ]
    );
}
