//! Scenario 2: load on every pod. The fleet's average crosses the high water mark; the
//! operator scales out by `step` up to `maxReplicas` and no further; when the load is gone
//! and memory comes back down, it scales back in, one step per `scaleInStabilization`, and
//! never flaps.

use std::time::{Duration, Instant};

use e2e::{Cluster, Options, eventually};
use serde_json::json;

/// Links each loaded pod can keep hot: more than enough for 85 % of its limit.
const LINKS: usize = 12_000;
/// The loaded pods' target: over the policy's high water mark (80), under their own.
const LOADED: f64 = 0.85;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_on_every_pod_scales_out_to_the_maximum_and_back_in_without_flapping() {
    let began = Instant::now();
    let values = [
        // The service trims its own cache only at 90 %: the operator, at 80 %, scales out first.
        ("waterMarks.high", "90"),
        // Links nobody follows for this long leave the cache: the memory of a load comes
        // back soon after it stops.
        ("env.SHORTENER_CACHE_IDLE_TTL", "15s"),
    ];
    let cluster = Cluster::start(Options {
        pods: 2,
        links: LINKS,
        values: values.map(|(k, v)| (k.to_owned(), v.to_owned())).to_vec(),
        ..Options::default()
    })
    .await;
    cluster.apply_policy(
        "grow",
        json!({
            // Critical above where the pods shed load (95): this scenario is about the fleet.
            "thresholds": {"critical": 97},
            "scaling": {"minReplicas": 2, "maxReplicas": 4, "step": 1, "scaleInStabilization": "8s"},
            "safety": {"cooldown": "3s"}
        }),
    )
    .await;
    eventually("both pods measured", Duration::from_secs(30), || {
        cluster.condition_is("grow", "MetricsAvailable", "True")
    })
    .await;

    // The load: both pods' caches fill with hot links.
    let pods = cluster.ready_pod_names();
    let ((a, _), (b, _)) = tokio::join!(
        cluster.fill(&pods[0], 0..LINKS, LOADED, Duration::from_secs(40)),
        cluster.fill(&pods[1], 0..LINKS, LOADED, Duration::from_secs(40)),
    );
    assert!(
        a >= LOADED && b >= LOADED,
        "loaded to only {a:.2} and {b:.2}"
    );
    let loaded = began.elapsed();
    eventually("scaled out to 4", Duration::from_secs(45), || {
        cluster.replicas() == 4
    })
    .await;
    let at_max = began.elapsed();
    // The load is over: its links go idle, leave the caches, and memory comes back down.
    eventually("scaled back in to 2", Duration::from_secs(90), || {
        cluster.replicas() == 2
    })
    .await;
    let back = began.elapsed();
    eprintln!(
        "scaling: loaded at {:.1} s, 4 replicas at {:.1} s, back to 2 at {:.1} s",
        loaded.as_secs_f64(),
        at_max.as_secs_f64(),
        back.as_secs_f64()
    );
    // Nothing more once at the minimum with every pod comfortable.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(replica_steps(&cluster), [2, 3, 4, 3, 2], "no flapping");

    // Every step in the status history, in order, each with its reason.
    let history = cluster.policy("grow")["status"]["history"].clone();
    let steps: Vec<String> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let reason = r["reason"].as_str().unwrap_or_default();
            let action = reason.rsplit("action: ").next().unwrap_or_default();
            format!("{} {action}", r["type"].as_str().unwrap_or_default())
        })
        .collect();
    assert_eq!(
        steps,
        [
            "ScaleOut scale from 2 to 3 replicas",
            "ScaleOut scale from 3 to 4 replicas",
            "ScaleIn scale from 4 to 3 replicas",
            "ScaleIn scale from 3 to 2 replicas",
        ],
        "{history:#}"
    );
    for record in history.as_array().unwrap() {
        let reason = record["reason"].as_str().unwrap_or_default();
        if record["type"] == "ScaleIn" {
            // "every pod below 60% (highest 49%) for 8s": the stabilization window held.
            let held: u64 = reason
                .split("every pod below 60% (highest ")
                .nth(1)
                .and_then(|rest| rest.split(") for ").nth(1))
                .and_then(|rest| rest.split('s').next())
                .and_then(|seconds| seconds.parse().ok())
                .unwrap_or_else(|| panic!("no stabilization window in {reason}"));
            assert!(held >= 8, "{reason}");
        }
    }

    // Beyond the maximum is held back and said so; so is a step that comes within the
    // cooldown of the one before (when the load keeps every pod high right after a step).
    let held = cluster.events("MemoryPolicy", "ActionHeldBack");
    assert!(
        held.iter().all(|e| {
            let note = e["note"].as_str().unwrap_or_default();
            note == "held back scale from 4 to 5 replicas: already at maxReplicas 4"
                || (note.starts_with("held back scale from ")
                    && note.contains(": cooldown: the last disruptive action (scale-out) was "))
        }),
        "{held:?}"
    );
    // One Event per step, each saying which step it was.
    assert_eq!(
        notes(&cluster, "ScaledOut"),
        ["scale from 2 to 3 replicas", "scale from 3 to 4 replicas"]
    );
    assert_eq!(
        notes(&cluster, "ScaledIn"),
        ["scale from 4 to 3 replicas", "scale from 3 to 2 replicas"]
    );
    assert_eq!(cluster.operator_did("patch", "deployments/scale").len(), 4);
    assert!(cluster.evicted_pods().is_empty());
    assert!(
        cluster.unexpected_exits().is_empty(),
        "{:?}",
        cluster.unexpected_exits()
    );
    eprintln!("scenario 2 took {:.1} s", began.elapsed().as_secs_f64());
}

/// The Deployment's `spec.replicas`, each value as long as it lasted.
fn replica_steps(cluster: &Cluster) -> Vec<u64> {
    cluster
        .deployment_versions()
        .iter()
        .filter_map(|d| d["spec"]["replicas"].as_u64())
        .fold(Vec::new(), |mut steps, replicas| {
            if steps.last() != Some(&replicas) {
                steps.push(replicas);
            }
            steps
        })
}

/// The notes of the Events with `reason` about the policy, up to their first colon, oldest
/// first; each must stand for one occurrence.
fn notes(cluster: &Cluster, reason: &str) -> Vec<String> {
    let mut events = cluster.events("MemoryPolicy", reason);
    events.sort_by_key(|e| e["eventTime"].as_str().unwrap_or_default().to_owned());
    events
        .iter()
        .map(|e| {
            assert!(e["series"].is_null(), "one Event per occurrence: {e}");
            let note = e["note"].as_str().unwrap_or_default();
            note.split(':').next().unwrap_or_default().to_owned()
        })
        .collect()
}
