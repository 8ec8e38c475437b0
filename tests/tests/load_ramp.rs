//! Scenario 14: load, not a leak. Every pod serves a rising number of redirects a second, each to
//! a link it has not cached yet, so every pod's real memory climbs with its request rate. A
//! policy that predicts growth sees the pods grow and projects when they would reach their
//! limit, but suspects no leak: the fleet scales out, and no pod is evicted.

use std::time::Duration;

use e2e::{Cluster, Options, eventually, load};
use serde_json::{Value, json};

/// More links than the ramp can follow.
const LINKS: usize = 32_000;
/// The ramp: redirects a second through each pod, stage by stage, until the fleet scales out.
const RATES: [usize; 7] = [20, 40, 60, 80, 100, 120, 140];
/// How long each stage of the ramp lasts.
const STAGE: Duration = Duration::from_secs(8);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_ramp_on_every_pod_scales_out_and_evicts_nothing() {
    let cluster = Cluster::start(Options {
        links: LINKS,
        ..Options::default()
    })
    .await;
    cluster
        .apply_policy(
            "predict",
            json!({
                "prediction": {"window": "20s", "horizon": "60s", "minGrowth": "256Ki/min"},
                "thresholds": {"lowWaterMark": 50, "highWaterMark": 65, "critical": 90},
            }),
        )
        .await;
    let pods = cluster.ready_pod_names();
    eventually("every pod measured", Duration::from_secs(40), || {
        cluster.measured_pods("predict").len() == pods.len()
            && cluster.condition_is("predict", "LeakSuspected", "False")
    })
    .await;

    let scaled = || cluster.replicas() > pods.len() as u64;
    let ramps = pods.iter().map(|pod| {
        let url = cluster.pod_url(pod).expect("the pod is ready");
        let cluster = &cluster;
        async move {
            let mut next = 0;
            let mut followed = load::Followed::default();
            for rate in RATES {
                if scaled() {
                    break;
                }
                let links = next..next + rate * STAGE.as_secs() as usize;
                next = links.end;
                let stage =
                    load::follow_steadily(&cluster.http, &url, links, rate, STAGE, || !scaled())
                        .await;
                followed.redirected += stage.redirected;
                followed.failed += stage.failed;
            }
            followed
        }
    });
    let followed = futures::future::join_all(ramps).await;
    eventually(
        &format!("a scale-out after the ramp ({followed:?} followed through each pod)"),
        Duration::from_secs(20),
        scaled,
    )
    .await;

    // Scaled out, and nothing evicted, restarted or suspected. The operator writes its status
    // after the scale it made, so the history may show it a moment after the Deployment does.
    let acted = || {
        let policy = cluster.policy("predict");
        policy["status"]["history"]
            .as_array()
            .is_some_and(|h| !h.is_empty())
    };
    eventually(
        "the scale-out in the policy's history",
        Duration::from_secs(10),
        acted,
    )
    .await;
    let policy = cluster.policy("predict");
    let history = policy["status"]["history"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let kinds: Vec<&str> = history.iter().filter_map(|a| a["type"].as_str()).collect();
    assert_eq!(kinds, ["ScaleOut"], "{history:#?}");
    assert!(cluster.deletions().is_empty(), "{:?}", cluster.deletions());
    assert!(cluster.evicted_pods().is_empty());
    let versions = cluster.policy_versions("predict");
    for version in &versions {
        for line in version["status"]["pods"].as_array().into_iter().flatten() {
            assert_ne!(line["leakSuspected"], true, "{line}");
        }
        assert_ne!(version["status"]["state"], "LeakSuspected");
    }
    assert!(cluster.condition_is("predict", "LeakSuspected", "False"));

    // The prediction saw the growth: some pod was projected to reach its limit.
    let projected = versions
        .iter()
        .flat_map(|v| v["status"]["pods"].as_array().cloned().unwrap_or_default())
        .filter(|line: &Value| line["projectedLimitAt"].is_string())
        .count();
    assert!(
        projected > 0,
        "no projection in {} versions",
        versions.len()
    );
    eprintln!(
        "load ramp: {followed:?} followed through each of {} pods; scaled out with {projected} \
         projected pod lines shown and no leak suspected",
        pods.len()
    );
    assert!(
        cluster.unexpected_exits().is_empty(),
        "{:?}",
        cluster.unexpected_exits()
    );
}
