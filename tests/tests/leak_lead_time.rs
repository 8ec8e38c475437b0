//! Scenario 15: how much earlier the prediction acts than the level rule, measured. The steady
//! leak of scenario 13 runs under dry run, so nothing is evicted and the pod goes on leaking past
//! critical: the operator reports the eviction the prediction calls for, then, later, the one
//! the critical rule calls for. The time between the two reports is the lead time. The service's
//! own water marks are set above the policy's critical, so that the service neither trims nor
//! stops caching on the way, which would bend the curve the critical rule waits for.

use std::time::Duration;

use e2e::steady_leak::{CRITICAL, PER_SECOND, SteadyLeak};
use jiff::Timestamp;
use serde_json::{Value, json};

/// What a prediction's report says, and a critical rule's.
const PREDICTED: &str = "leak suspected, projected to reach the limit";
const LEVEL: &str = "critical (>= 90%) for at least";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_prediction_reports_a_leak_well_before_the_critical_rule_would_act() {
    let leak = SteadyLeak::start(
        // Reports under dry run count against cooldown and budget as live actions would: the
        // prediction's repeated reports must not hold the critical rule's back.
        json!({"dryRun": true, "safety": {"cooldown": "1s", "maxRestartsPerHour": 100}}),
        &[("waterMarks.high", "97"), ("waterMarks.critical", "99")],
    )
    .await;
    let SteadyLeak { cluster, leaky, .. } = &leak;
    let reported = |what: &str| first_report(&cluster.policy("predict"), leaky, what);
    let followed = leak
        .leak_until(Duration::from_secs(150), || reported(LEVEL).is_some())
        .await;
    let ratios = cluster.usage_ratios(leaky, "5m").await;
    let (Some(predicted), Some(level)) = (reported(PREDICTED), reported(LEVEL)) else {
        panic!(
            "after {} links through {leaky}: {:#}; its usage: {ratios:?}",
            followed.redirected,
            cluster.policy("predict")["status"]["history"]
        );
    };
    let lead = level.duration_since(predicted).as_secs_f64();
    let at = |when: Timestamp| {
        let second = when.as_second() as f64;
        ratios
            .iter()
            .rev()
            .find(|(t, _)| *t <= second)
            .map_or(0.0, |(_, r)| *r)
    };
    eprintln!(
        "lead time: the prediction reported evicting {leaky} at {:.0} % of its limit, the \
         critical rule at {:.0} %, {lead:.0} s later ({PER_SECOND} redirects a second)",
        at(predicted) * 100.0,
        at(level) * 100.0
    );
    assert!(
        at(predicted) < CRITICAL,
        "predicted only at {:.2}",
        at(predicted)
    );
    assert!(lead >= 10.0, "only {lead:.0} s ahead");
    assert!(
        cluster.deletions().is_empty(),
        "dry run evicted {:?}",
        cluster.deletions()
    );
}

/// When the policy's history first reports evicting `pod` for a reason that says `what`.
fn first_report(policy: &Value, pod: &str, what: &str) -> Option<Timestamp> {
    policy["status"]["history"]
        .as_array()?
        .iter()
        .filter(|a| a["type"] == "RestartPod" && a["dryRun"] == true)
        .filter(|a| {
            a["pods"]
                .as_array()
                .is_some_and(|p| p.iter().any(|p| p == pod))
        })
        .filter(|a| a["reason"].as_str().is_some_and(|r| r.contains(what)))
        .filter_map(|a| a["time"].as_str()?.parse().ok())
        .min()
}
