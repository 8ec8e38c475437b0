//! Scenario 7: bad policies beside a sound one. Thresholds out of order are refused by the
//! apiserver (the CRD's rules) with a message naming the fault; a missing target is
//! `Ready=False` saying so, while the sound policy keeps being served. Policies that today's
//! CRD refuses can still be stored from before a schema change, as they are here: thresholds
//! out of order are `Ready=False` with the operator's own message, and a policy the operator
//! cannot even read (`onCritical: Explode`) is `Ready=False` naming the field; neither stops
//! the other policies nor a restart of the operator.

use std::time::{Duration, Instant};

use e2e::{Cluster, Options, eventually};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_policies_are_not_ready_and_say_why_while_a_sound_one_keeps_working() {
    let began = Instant::now();
    let cluster = Cluster::start(Options {
        pods: 1,
        ..Options::default()
    })
    .await;
    cluster.apply_policy("sound", json!({})).await;
    let inverted = json!({"thresholds": {"lowWaterMark": 80, "highWaterMark": 60}});
    let refused = cluster.try_apply_policy("inverted", inverted.clone()).await;
    assert_eq!(
        refused.as_deref(),
        Some(
            "MemoryPolicy.shortener.dev \"inverted\" is invalid: spec.thresholds: Invalid value: \
             thresholds.lowWaterMark must be below highWaterMark"
        )
    );
    cluster
        .store_under_older_schema("inverted", "thresholds/x-kubernetes-validations", inverted)
        .await;
    cluster
        .apply_policy("ghost", json!({"targetRef": {"name": "nowhere"}}))
        .await;
    eventually("every policy evaluated", Duration::from_secs(30), || {
        ["sound", "inverted", "ghost"]
            .iter()
            .all(|name| cluster.condition(name, "Ready").is_some())
            && cluster.condition_is("sound", "MetricsAvailable", "True")
    })
    .await;

    let sound = cluster.condition("sound", "Ready").unwrap();
    assert_eq!(
        (sound.status.as_str(), sound.reason.as_str()),
        ("True", "Evaluated")
    );
    let inverted = cluster.condition("inverted", "Ready").unwrap();
    assert_eq!(
        (inverted.status.as_str(), inverted.reason.as_str()),
        ("False", "InvalidPolicy")
    );
    assert!(
        inverted
            .message
            .contains("spec.thresholds.lowWaterMark (80) must be below highWaterMark (60)"),
        "{inverted:?}"
    );
    assert_eq!(cluster.policy("inverted")["status"]["state"], "Invalid");
    let invalid = cluster.events("MemoryPolicy", "InvalidPolicy");
    assert!(
        !invalid.is_empty() && invalid.iter().all(|e| e["regarding"]["name"] == "inverted"),
        "{invalid:?}"
    );
    let ghost = cluster.condition("ghost", "Ready").unwrap();
    assert_eq!(
        (ghost.status.as_str(), ghost.reason.as_str(), &ghost.message),
        (
            "False",
            "TargetNotFound",
            &format!("Deployment {}/nowhere not found", cluster.namespace)
        )
    );
    assert_eq!(cluster.policy("ghost")["status"]["state"], "TargetMissing");

    // An unreadable policy while the operator runs: Ready=False naming the field, and every
    // other policy keeps being evaluated.
    cluster
        .store_under_older_schema(
            "explode",
            "onCritical/enum",
            json!({"onCritical": "Explode"}),
        )
        .await;
    eventually(
        "the unreadable policy reported",
        Duration::from_secs(15),
        || cluster.condition_is("explode", "Ready", "False"),
    )
    .await;
    assert_unreadable_is_reported(&cluster);
    let before = evaluated_at(&cluster, "sound");
    eventually(
        "the sound policy evaluated again",
        Duration::from_secs(15),
        || evaluated_at(&cluster, "sound") > before,
    )
    .await;
    assert!(cluster.condition_is("sound", "Ready", "True"));
    assert!(cluster.condition_is("inverted", "Ready", "False"));

    // An operator (re)started while it exists starts all the same and serves the others.
    let code = cluster.stop_operator().await;
    assert_eq!(code, 0, "the operator exits cleanly on SIGTERM");
    let before = evaluated_at(&cluster, "sound");
    cluster.start_operator().await;
    eventually(
        "the sound policy served by the restarted operator",
        Duration::from_secs(15),
        || evaluated_at(&cluster, "sound") > before,
    )
    .await;
    let exits = cluster.operator_exits();
    assert!(
        exits.len() == 1 && exits[0].stopped,
        "the operator only stopped when asked: {exits:?}"
    );
    assert_unreadable_is_reported(&cluster);
    assert!(cluster.condition_is("sound", "Ready", "True"));
    assert!(cluster.evicted_pods().is_empty());
    eprintln!("scenario 7 took {:.1} s", began.elapsed().as_secs_f64());
}

fn assert_unreadable_is_reported(cluster: &Cluster) {
    let ready = cluster.condition("explode", "Ready").unwrap();
    assert_eq!(ready.reason, "Unreadable", "{ready:?}");
    assert!(
        ready.message.starts_with(
            "the operator cannot read this policy: spec.onCritical: unknown variant `Explode`, \
             expected one of "
        ),
        "{ready:?}"
    );
    assert_eq!(cluster.policy("explode")["status"]["state"], "Invalid");
}

/// The policy's `status.lastEvaluationTime` (RFC 3339, so it sorts as text).
fn evaluated_at(cluster: &Cluster, name: &str) -> String {
    cluster.policy(name)["status"]["lastEvaluationTime"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}
