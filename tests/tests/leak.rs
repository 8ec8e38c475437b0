//! Scenario 1: a leak in one pod. Real traffic through one pod's address grows its real
//! resident memory past critical; the operator, reading what Prometheus scraped from the pods it
//! discovered, evicts that pod and no other, and its replacement starts small.

use std::time::{Duration, Instant};

use e2e::{Cluster, Options, eventually, prometheus::start_of_last_run_above};
use serde_json::json;

/// Enough ~2 KB links to carry a pod from idle (45 %) past critical (90 %), even after the
/// one trim its own memory manager makes on the way (at 80 %, down to 60 %): about 17,000
/// do it, and the rest are headroom, since following stops at the eviction.
const LINKS: usize = 32_000;
/// The policy's clocks (see `Cluster::apply_policy`): evaluated every second, acting on two
/// seconds over critical.
const INTERVAL: f64 = 1.0;
const SUSTAIN: f64 = 2.0;
const CRITICAL: f64 = 0.90;
const LOW: f64 = 0.60;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaking_pod_is_evicted_alone_and_its_replacement_starts_small() {
    let began = Instant::now();
    let cluster = Cluster::start(Options {
        links: LINKS,
        ..Options::default()
    })
    .await;
    cluster.apply_policy("guard", json!({})).await;
    eventually(
        "every pod measured and normal",
        Duration::from_secs(30),
        || measured_states(&cluster, "guard") == ["Normal"; 3],
    )
    .await;
    assert!(cluster.condition_is("guard", "Critical", "False"));

    // The leak: thousands of long links followed through the first pod only, until it is
    // evicted.
    let before = cluster.ready_pod_names();
    let leaky = before[0].clone();
    let evicted = || cluster.deletions().iter().any(|d| d.pod == leaky);
    let followed = cluster
        .leak_until(&leaky, LINKS, "the leaking pod evicted", evicted)
        .await;

    // Only that pod, once, by the operator's eviction.
    let deletions = cluster.deletions();
    assert_eq!(deletions.len(), 1, "{deletions:?}");
    let evictions = cluster.operator_did("create", "pods/eviction");
    assert_eq!(cluster.evicted_pods(), std::slice::from_ref(&leaky));

    // Timed against the scrapes the operator read: from the first sample of the run over
    // critical that it acted on, to the eviction request as the apiserver received it.
    let evicted_at = evictions[0].received.as_millisecond() as f64 / 1000.0;
    let ratios = cluster.usage_ratios(&leaky, "5m").await;
    let over = start_of_last_run_above(&ratios, CRITICAL, evicted_at)
        .unwrap_or_else(|| panic!("no scrape over critical before the eviction: {ratios:?}"));
    let latency = evicted_at - over;
    let peak = ratios.iter().map(|(_, r)| *r).fold(0.0, f64::max);
    eprintln!(
        "leak: {} links followed through {leaky} ({} failed), peak usage {:.0} % of {} MiB; \
         detection-to-eviction latency {latency:.2} s (bound {:.0} s)",
        followed.redirected,
        followed.failed,
        peak * 100.0,
        cluster.limit_bytes >> 20,
        SUSTAIN + 2.0 * INTERVAL,
    );
    // Never before `for` has passed; within `for` and two intervals (one for the scrape to be
    // read, one for the evaluation that finds `for` passed), plus a second of grace for a
    // loaded two-core machine.
    assert!(latency >= SUSTAIN - 0.1, "acted after only {latency:.2} s");
    assert!(
        latency <= SUSTAIN + 2.0 * INTERVAL + 1.0,
        "acted after {latency:.2} s"
    );

    // The replacement starts small and the operator sees it so; Critical clears.
    eventually(
        "the replacement measured with the two others",
        Duration::from_secs(30),
        || {
            let measured = cluster.measured_pods("guard");
            measured.len() == 3
                && !measured.contains(&leaky)
                && before[1..].iter().all(|p| measured.contains(p))
        },
    )
    .await;
    assert!(cluster.condition_is("guard", "Critical", "False"));
    let policy = cluster.policy("guard");
    let pods = policy["status"]["pods"].as_array().unwrap().clone();
    for pod in &pods {
        let ratio = pod["usageRatio"].as_f64().unwrap();
        assert!(ratio < LOW, "{} at {ratio} after the eviction", pod["name"]);
    }
    assert_eq!(
        cluster.condition_history("guard", "Critical"),
        ["False", "True", "False"]
    );
    let last = &policy["status"]["lastAction"];
    assert_eq!(last["type"], "RestartPod", "{last}");
    assert_eq!(last["pods"], json!([leaky]), "{last}");

    // One Event per action, on the policy and on the Deployment, and nothing refused.
    let on_policy = cluster.events("MemoryPolicy", "PodEvicted");
    assert_eq!(on_policy.len(), 1, "{on_policy:?}");
    let note = on_policy[0]["note"].as_str().unwrap_or_default();
    assert!(note.starts_with(&format!("evict {leaky}: ")), "{note}");
    assert_eq!(cluster.events("Deployment", "PodEvicted").len(), 1);
    assert_eq!(
        cluster.event_reasons("MemoryPolicy"),
        ["PodEvicted"],
        "no other Event about the policy"
    );
    assert_eq!(cluster.evicted_pods(), [leaky], "no second eviction");
    assert!(
        cluster.unexpected_exits().is_empty(),
        "{:?}",
        cluster.unexpected_exits()
    );
    eprintln!("scenario 1 took {:.1} s", began.elapsed().as_secs_f64());
}

/// The states of the pods the policy's status lists as measured.
fn measured_states(cluster: &Cluster, policy: &str) -> Vec<String> {
    let policy = cluster.policy(policy);
    policy["status"]["pods"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["state"].as_str())
        .filter(|state| *state != "NoData")
        .map(str::to_owned)
        .collect()
}
