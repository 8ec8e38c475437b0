//! Scenario 3: Prometheus goes away mid-run. While it is gone nothing is done, even by a
//! policy that would act if it could see, and the status says why; once it is back (with its
//! data), evaluation resumes and the evidence clock starts over from fresh samples.

use std::time::{Duration, Instant};

use e2e::{Cluster, Options, eventually};
use jiff::Timestamp;
use serde_json::json;

/// The `for` of the policy once it is made to act.
const SUSTAIN: f64 = 3.0;
/// Samples older than this do not count; the outage outlasts it, so no sample from before
/// the outage is still usable when Prometheus returns.
const STALE_AFTER: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_prometheus_nothing_is_done_and_evaluation_resumes_when_it_returns() {
    let began = Instant::now();
    let cluster = Cluster::start(Options {
        pods: 2,
        ..Options::default()
    })
    .await;
    let stale_after = format!("{}s", STALE_AFTER.as_secs());
    cluster
        .apply_policy("watch", json!({"thresholds": {"staleAfter": stale_after}}))
        .await;
    eventually("metrics available", Duration::from_secs(30), || {
        cluster.condition_is("watch", "MetricsAvailable", "True")
    })
    .await;

    cluster.stop_prometheus().await;
    let stopped = Instant::now();
    eventually("MetricsAvailable=False", Duration::from_secs(15), || {
        cluster.condition_is("watch", "MetricsAvailable", "False")
    })
    .await;
    let blind = cluster.condition("watch", "MetricsAvailable").unwrap();
    assert_eq!(blind.reason, "QueryFailed");
    let prometheus = format!("Prometheus at {} failed: ", cluster.prometheus_url());
    assert!(blind.message.starts_with(&prometheus), "{blind:?}");
    assert!(blind.message.contains("Connection refused"), "{blind:?}");
    let status = cluster.policy("watch")["status"].clone();
    assert_eq!(status["state"], "NoData");
    // Nothing measured, so no usage shown from before the outage.
    assert!(status["maxUsage"].is_null(), "{status:#}");
    assert!(
        status["pods"]
            .as_array()
            .into_iter()
            .flatten()
            .all(|p| p["state"] == "NoData"),
        "{status:#}"
    );

    // While blind, the marks drop under the idle pods (45 %): with data, this policy would
    // evict within seconds. Without, it must not.
    cluster
        .patch_policy(
            "watch",
            json!({"thresholds": {"lowWaterMark": 20, "highWaterMark": 30, "critical": 40,
                "for": format!("{SUSTAIN}s")}}),
        )
        .await;
    eventually("the new spec evaluated", Duration::from_secs(15), || {
        cluster.policy("watch")["status"]["observedGeneration"] == 2
    })
    .await;
    tokio::time::sleep(Duration::from_secs_f64(SUSTAIN + 2.0)).await;
    assert!(cluster.condition_is("watch", "MetricsAvailable", "False"));
    assert!(cluster.evicted_pods().is_empty());
    assert!(
        cluster
            .operator_did("patch", "deployments/scale")
            .is_empty()
    );
    assert!(cluster.events_of("Deployment").is_empty());
    assert!(cluster.condition_is("watch", "Critical", "False"));

    tokio::time::sleep(
        (stopped + STALE_AFTER + Duration::from_secs(1)).saturating_duration_since(Instant::now()),
    )
    .await;

    // Back, with the data it had: evaluation resumes, and acts only after `for` of fresh
    // evidence.
    cluster.restart_prometheus().await;
    let restarted_at = Timestamp::now();
    eventually("metrics available again", Duration::from_secs(30), || {
        cluster.condition_is("watch", "MetricsAvailable", "True")
    })
    .await;
    eventually(
        "an eviction on fresh evidence",
        Duration::from_secs(30),
        || !cluster.deletions().is_empty(),
    )
    .await;
    let waited = cluster.operator_did("create", "pods/eviction")[0]
        .received
        .duration_since(restarted_at)
        .as_secs_f64();
    eprintln!("Prometheus back: the first eviction came {waited:.1} s after its restart");
    assert!(
        waited >= SUSTAIN,
        "acted {waited:.1} s after Prometheus returned"
    );
    assert_eq!(
        cluster.condition_history("watch", "MetricsAvailable"),
        ["True", "False", "True"]
    );
    assert_eq!(cluster.evicted_pods().len(), 1);
    assert!(
        cluster.unexpected_exits().is_empty(),
        "{:?}",
        cluster.unexpected_exits()
    );
    eprintln!("scenario 3 took {:.1} s", began.elapsed().as_secs_f64());
}
