//! Scenario 4: the restart storm guard. A pod that is over critical again right after each
//! restart is restarted at most `maxRestartsPerHour` times; then `Throttled=True` says why,
//! and the pod is left alone.

use std::time::{Duration, Instant};

use e2e::{Cluster, Options, eventually};
use serde_json::json;

const BUDGET: usize = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_that_bloats_after_every_restart_is_restarted_only_as_often_as_the_budget_allows() {
    let began = Instant::now();
    let cluster = Cluster::start(Options {
        pods: 1,
        ..Options::default()
    })
    .await;
    // Critical under where a fresh pod settles (45 %): every pod is over it from its start,
    // as a pod that bloats right after each restart would be.
    cluster
        .apply_policy(
            "guard",
            json!({
                "thresholds": {"lowWaterMark": 20, "highWaterMark": 30, "critical": 40},
                "onHigh": "AlertOnly",
                "safety": {"cooldown": "1s", "maxRestartsPerHour": BUDGET}
            }),
        )
        .await;
    eventually(
        "the restart budget used up",
        Duration::from_secs(60),
        || cluster.condition_is("guard", "Throttled", "True"),
    )
    .await;
    let throttled = cluster.condition("guard", "Throttled").unwrap();
    assert_eq!(
        throttled.message,
        format!(
            "restart budget exhausted: {BUDGET} restarts in the last hour (maxRestartsPerHour {BUDGET})"
        )
    );
    // The first pod and its replacement, in that order.
    let pods = cluster.pods_ever();
    assert_eq!(pods.len(), BUDGET + 1, "{pods:?}");
    assert_eq!(cluster.evicted_pods(), pods[..BUDGET]);

    // The pod that came last stays, over critical and throttled, however long it stays so.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        cluster.evicted_pods().len(),
        BUDGET,
        "no restart beyond the budget"
    );
    let last = &pods[BUDGET];
    assert!(cluster.pod_url(last).is_some(), "{last} serves");
    assert!(cluster.condition_is("guard", "Critical", "True"));
    assert!(cluster.condition_is("guard", "Throttled", "True"));
    let held = cluster.events("MemoryPolicy", "ActionHeldBack");
    assert!(!held.is_empty());
    let note = held.last().unwrap()["note"].as_str().unwrap_or_default();
    assert!(
        note.starts_with(&format!("held back evict {last}: restart budget exhausted")),
        "{note}"
    );
    let history = cluster.policy("guard")["status"]["history"].clone();
    let restarts: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["type"] == "RestartPod")
        .filter_map(|r| r["pods"][0].as_str())
        .collect();
    assert_eq!(restarts, pods[..BUDGET], "{history:#}");
    assert!(
        cluster.unexpected_exits().is_empty(),
        "{:?}",
        cluster.unexpected_exits()
    );
    eprintln!("scenario 4 took {:.1} s", began.elapsed().as_secs_f64());
}
