//! Scenario 6: the leak of scenario 1 under a `dryRun: true` policy. Nothing is evicted;
//! the status and the Events say what would have happened.

use std::time::{Duration, Instant};

use e2e::{Cluster, Options, eventually};
use serde_json::json;

/// As in scenario 1: enough ~2 KB links to carry a pod past critical, with headroom.
const LINKS: usize = 32_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_policy_reports_the_eviction_it_would_make_and_evicts_nothing() {
    let began = Instant::now();
    let cluster = Cluster::start(Options {
        links: LINKS,
        ..Options::default()
    })
    .await;
    cluster
        .apply_policy("rehearse", json!({"dryRun": true}))
        .await;
    eventually("the policy evaluated", Duration::from_secs(30), || {
        cluster.condition_is("rehearse", "MetricsAvailable", "True")
    })
    .await;
    assert!(cluster.condition_is("rehearse", "DryRun", "True"));

    let leaky = cluster.ready_pod_names()[0].clone();
    let reported = || !cluster.events("MemoryPolicy", "DryRun").is_empty();
    let followed = cluster
        .leak_until(&leaky, LINKS, "a DryRun event", reported)
        .await;

    // Past the time a live policy would have acted again: still nothing happens.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(cluster.evicted_pods().is_empty());
    assert!(cluster.deletions().is_empty());
    assert!(
        !cluster.pod(&leaky).is_null(),
        "the leaking pod is still there"
    );
    assert!(cluster.events_of("Deployment").is_empty());

    // What it would have done: one report, in the Events and in the status.
    let reports = cluster.events("MemoryPolicy", "DryRun");
    assert_eq!(reports.len(), 1, "{reports:?}");
    let note = reports[0]["note"].as_str().unwrap_or_default();
    assert!(
        note.starts_with(&format!("dry run: would evict {leaky}: ")),
        "{note}"
    );
    assert!(
        note.contains(&format!("critical (>= 90%) for at least 2s: {leaky}")),
        "{note}"
    );
    let status = &cluster.policy("rehearse")["status"];
    let last = &status["lastAction"];
    assert_eq!(last["type"], "RestartPod", "{last}");
    assert_eq!(last["dryRun"], true, "{last}");
    assert_eq!(last["pods"], json!([leaky]), "{last}");
    assert_eq!(status["desiredReplicas"], 3, "{status}");
    let critical = cluster.condition("rehearse", "Critical").unwrap();
    assert_eq!(critical.status, "True");
    assert!(critical.message.contains(&leaky), "{critical:?}");
    let dry = cluster.condition("rehearse", "DryRun").unwrap();
    assert_eq!(
        (dry.status.as_str(), dry.message.as_str()),
        ("True", "actions are only reported")
    );
    // Cooldown paces reports as it would paces actions, and says so.
    let throttled = cluster.condition("rehearse", "Throttled").unwrap();
    assert_eq!(throttled.status, "True", "{throttled:?}");
    assert!(
        throttled.message.starts_with(
            "cooldown: the last disruptive action (eviction, only reported under dry run) was "
        ),
        "{throttled:?}"
    );
    for reason in cluster.event_reasons("MemoryPolicy") {
        assert!(
            ["DryRun", "ActionHeldBack"].contains(&reason.as_str()),
            "{reason}"
        );
    }
    assert!(
        cluster.unexpected_exits().is_empty(),
        "{:?}",
        cluster.unexpected_exits()
    );
    eprintln!(
        "scenario 6: {} links followed; took {:.1} s",
        followed.redirected,
        began.elapsed().as_secs_f64()
    );
}
