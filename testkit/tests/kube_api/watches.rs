//! Watch streams: replay, live writes, selectors, bookmarks, timeouts and expiry.

use serde_json::json;

use crate::support::{Api, POLICIES, policy};

#[tokio::test]
async fn a_watch_streams_writes_made_after_it_started() {
    let api = Api::start().await;
    api.server.apply(policy("web", 60));
    let (_, list) = api.call("GET", POLICIES, None).await;
    let rv = list["metadata"]["resourceVersion"].as_str().unwrap();
    let mut watch = api
        .watch(&format!(
            "{POLICIES}?watch=true&resourceVersion={rv}&allowWatchBookmarks=true"
        ))
        .await;

    api.call("POST", POLICIES, Some(policy("api", 50))).await;
    let added = watch.next_change().await;
    assert_eq!(added["type"], "ADDED");
    assert_eq!(added["object"]["metadata"]["name"], "api");

    let mut changed = api
        .server
        .get("shortener.dev/v1alpha1", "MemoryPolicy", "prod", "web")
        .unwrap();
    changed["spec"]["threshold"] = json!(90);
    api.server.apply(changed);
    let modified = watch.next_change().await;
    assert_eq!(
        (&modified["type"], &modified["object"]["spec"]["threshold"]),
        (&json!("MODIFIED"), &json!(90))
    );

    let bookmark = loop {
        let event = watch.next().await.unwrap();
        if event["type"] == "BOOKMARK" {
            break event;
        }
    };
    assert_eq!(bookmark["object"]["kind"], "MemoryPolicy");
    assert_eq!(bookmark["object"]["metadata"]["resourceVersion"], "3");
}

#[tokio::test]
async fn a_watch_from_zero_starts_with_the_current_state_and_honours_selectors() {
    let api = Api::start().await;
    api.server.apply(policy("web", 60));
    let mut watch = api
        .watch(&format!(
            "{POLICIES}?watch=1&resourceVersion=0&labelSelector=app%3Dweb"
        ))
        .await;
    assert_eq!(watch.next_change().await["type"], "ADDED");

    let mut relabelled = policy("web", 60);
    relabelled["metadata"]["labels"] = json!({ "app": "db" });
    api.server.apply(relabelled);
    let gone = watch.next_change().await;
    assert_eq!(
        gone["type"], "DELETED",
        "an object that stops matching leaves the watch"
    );
}

#[tokio::test]
async fn a_watch_ends_after_its_timeout() {
    let api = Api::start().await;
    let mut watch = api
        .watch(&format!("{POLICIES}?watch=true&timeoutSeconds=1"))
        .await;
    assert_eq!(watch.next().await, None);
}

#[tokio::test]
async fn a_watch_from_a_compacted_version_gets_410_expired() {
    let api = Api::start().await;
    api.server.apply(policy("web", 60));
    api.server.apply(policy("api", 60));
    api.server.compact();
    let mut watch = api
        .watch(&format!("{POLICIES}?watch=true&resourceVersion=1"))
        .await;
    let error = watch.next().await.unwrap();
    assert_eq!(error["type"], "ERROR");
    assert_eq!(
        (&error["object"]["code"], &error["object"]["reason"]),
        (&json!(410), &json!("Expired"))
    );
    assert_eq!(watch.next().await, None);
}

#[tokio::test]
async fn a_streaming_list_marks_the_end_of_the_initial_events() {
    let api = Api::start().await;
    api.server.apply(policy("web", 60));
    let query = "watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true";
    let mut watch = api.watch(&format!("{POLICIES}?{query}")).await;
    assert_eq!(watch.next().await.unwrap()["type"], "ADDED");
    let end = watch.next().await.unwrap();
    assert_eq!(end["type"], "BOOKMARK");
    let annotations = &end["object"]["metadata"]["annotations"];
    assert_eq!(annotations["k8s.io/initial-events-end"], "true");
}

#[tokio::test]
async fn dropping_the_server_ends_its_watches() {
    let api = Api::start().await;
    let mut watch = api.watch(&format!("{POLICIES}?watch=true")).await;
    drop(api);
    assert_eq!(watch.next().await, None);
}
