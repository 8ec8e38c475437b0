//! The operator's watches across an apiserver restart: every watch breaks, the resource
//! versions it had seen are gone from the new apiserver's watch cache and from etcd's
//! compacted history (410 Gone), and the operator lists again and carries on. The restart is
//! this binary's own, so it has no other test.

mod support;

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use kube::api::{WatchEvent, WatchParams};
use serde_json::json;
use support::{Cluster, eventually, installed};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_lists_again_and_resumes_after_its_watch_expires() {
    let plane = installed().plane;
    let cluster = Cluster::start(1, 1).await;
    let pod = cluster.pods().await.remove(0);
    cluster.prometheus.set(&pod, 30.0);
    cluster.policy("calm", "web", json!({})).await;
    eventually("Ready=True", async || {
        cluster.condition_is("calm", "Ready", "True").await
    })
    .await;
    let lists = || {
        cluster
            .operator_did("list", "memorypolicies")
            .into_iter()
            .filter(|r| r.code == 200)
            .count()
    };
    let listed = lists();
    let seen = cluster.policies().get("calm").await.unwrap();
    let seen = seen.metadata.resource_version.unwrap();
    // The operator's status writes move the policy on; the apiserver compacts etcd every 2 s.
    tokio::time::sleep(Duration::from_secs(5)).await;
    plane.restart_apiserver().expect("the apiserver restarts");

    eventually(
        "a watch from an old resource version answered 410 Gone",
        async || {
            let Ok(stream) = cluster
                .policies()
                .watch(&WatchParams::default().timeout(5), &seen)
                .await
            else {
                return false;
            };
            let first = stream.boxed().try_next().await;
            matches!(first, Ok(Some(WatchEvent::Error(e))) if e.code == 410)
        },
    )
    .await;
    eventually("the operator lists the policies again", async || {
        lists() > listed
    })
    .await;
    cluster
        .policy("calm", "web", json!({"thresholds": {"critical": 96}}))
        .await;
    eventually("the change seen (observedGeneration 2)", async || {
        cluster.policy_object("calm").await["status"]["observedGeneration"] == 2
    })
    .await;
}
