//! Scenario 8: the OOM kill the operator exists to prevent. The pods run with the service's own
//! defences off (its memory manager looks once an hour, so its cache never stops growing), in
//! memory cgroups whose limit is the chart's `resources.limits.memory`. A steady leak into one
//! pod under a suspended policy ends in a real OOM kill by the kernel, which the kubelet
//! reports (`OOMKilled`, exit 137, a restart) and the policy's status shows. Then, with the
//! policy live, the same leak into another pod is evicted before any OOM kill.

use std::time::{Duration, Instant};

use e2e::{Cluster, Options, eventually};
use serde_json::{Value, json};

/// Links to follow: enough for a pod to go from idle past its limit, twice over.
const LINKS: usize = 40_000;
/// Filled fast up to here, in parts of the limit…
const FAST_UNTIL: f64 = 0.75;
/// …then leaked at this many links a second: about 1 % of the limit a second, so that the
/// last tenth before the limit takes longer than the policy needs to act (`for` and two
/// intervals, 4 s).
const STEADY_PER_SECOND: usize = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leak_ends_in_a_real_oom_kill_when_suspended_and_in_an_eviction_before_it_when_live() {
    let began = Instant::now();
    let cluster = Cluster::start(Options {
        pods: 2,
        links: LINKS,
        // The service's own memory manager looks once an hour: nothing in the pod stops its
        // cache from growing, as in a service that leaks.
        values: vec![("memory.monitorInterval".into(), "1h".into())],
        ..Options::default()
    })
    .await;
    if let Err(why) = cluster.memory_cgroups() {
        eprintln!("SKIPPED: no memory cgroups here ({why}), so no kernel OOM killer to meet");
        return;
    }
    cluster
        .apply_policy(
            "guard",
            json!({"suspend": true, "onHigh": "AlertOnly", "safety": {"cooldown": "1s"}}),
        )
        .await;
    eventually("both pods measured", Duration::from_secs(30), || {
        measured(&cluster, "guard") == 2
    })
    .await;
    let pods = cluster.ready_pod_names();

    // Suspended: the leak runs into the limit, and the kernel kills the process.
    let first = &pods[0];
    let oom_killed = |pod: &str| {
        cluster
            .unexpected_exits()
            .iter()
            .any(|e| e.pod == pod && e.oom_killed)
    };
    let (reached, leaked) = leak(&cluster, first, || !oom_killed(first)).await;
    eventually("the kernel's OOM kill", Duration::from_secs(30), || {
        oom_killed(first)
    })
    .await;
    let exits = cluster.unexpected_exits();
    assert_eq!(exits.len(), 1, "{exits:?}");
    assert_eq!(
        (exits[0].code, exits[0].oom_killed),
        (137, true),
        "{exits:?}"
    );
    // The kubelet reports it, restarts the container, and the operator's status shows it.
    eventually(
        "the OOM kill in the pod's and the policy's status",
        Duration::from_secs(30),
        || {
            let container = &cluster.pod(first)["status"]["containerStatuses"][0];
            container["lastState"]["terminated"]["reason"] == "OOMKilled"
                && container["restartCount"] == 1
                && restarts_shown(&cluster, "guard", first)["lastReason"] == "OOMKilled"
        },
    )
    .await;
    let shown = restarts_shown(&cluster, "guard", first);
    assert_eq!(shown["count"], 1, "{shown}");
    assert_eq!(shown["lastExitCode"], 137, "{shown}");
    assert!(shown["lastFinishedAt"].is_string(), "{shown}");
    assert!(
        cluster
            .condition_history("guard", "Critical")
            .contains(&"True".to_owned()),
        "the operator saw the pod critical before the kill"
    );
    assert!(cluster.evicted_pods().is_empty(), "suspended: no eviction");
    eprintln!(
        "suspended: {leaked} links followed through {first}, up to {:.0} % of {} MiB, then \
         OOM-killed (exit 137) at {:.1} s",
        reached * 100.0,
        cluster.limit_bytes >> 20,
        began.elapsed().as_secs_f64()
    );

    // Live: the same leak into the other pod is evicted before it reaches the limit.
    cluster
        .patch_policy("guard", json!({"suspend": false}))
        .await;
    let second = &pods[1];
    let evicted = || cluster.evicted_pods().iter().any(|p| p == second);
    let (_, leaked) = leak(&cluster, second, || !evicted()).await;
    eventually("the leaking pod evicted", Duration::from_secs(20), evicted).await;
    assert!(!oom_killed(second), "evicted before any OOM kill");
    assert_eq!(cluster.unexpected_exits().len(), 1, "only the first kill");
    assert_eq!(cluster.evicted_pods(), std::slice::from_ref(second));
    let ratios = cluster.usage_ratios(second, "5m").await;
    let peak = ratios.iter().map(|(_, r)| *r).fold(0.0, f64::max);
    eprintln!(
        "live: {leaked} links followed through {second}, evicted at a peak of {:.0} %; \
         scenario 8 took {:.1} s",
        peak * 100.0,
        began.elapsed().as_secs_f64()
    );
}

/// Fills `pod` fast to [`FAST_UNTIL`] of its limit, then leaks steadily while `going` holds;
/// returns the highest usage the pod reported and the links followed.
async fn leak(cluster: &Cluster, pod: &str, going: impl Fn() -> bool) -> (f64, usize) {
    let (reached, next) = cluster
        .fill(pod, 0..LINKS, FAST_UNTIL, Duration::from_secs(60))
        .await;
    assert!(reached >= FAST_UNTIL, "{pod} filled to only {reached:.2}");
    let url = cluster.pod_url(pod).expect("the pod serves");
    let followed = e2e::load::follow_steadily(
        &cluster.http,
        &url,
        next..LINKS,
        STEADY_PER_SECOND,
        Duration::from_secs(120),
        going,
    )
    .await;
    let peak = cluster
        .usage_ratios(pod, "5m")
        .await
        .iter()
        .map(|(_, r)| *r)
        .fold(reached, f64::max);
    (peak, next + followed.redirected)
}

/// Pods the policy's status lists as measured.
fn measured(cluster: &Cluster, policy: &str) -> usize {
    cluster.policy(policy)["status"]["pods"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["state"] != "NoData")
        .count()
}

/// What the policy's status shows of `pod`'s restarts (null if nothing).
fn restarts_shown(cluster: &Cluster, policy: &str, pod: &str) -> Value {
    cluster.policy(policy)["status"]["pods"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == pod)
        .map(|p| p["restarts"].clone())
        .unwrap_or_default()
}
