//! A rollout driven by the operator: `onCritical: RollingRestart` stamps the pod template, and
//! the real Deployment controller replaces the pods one at a time, the new one ready before an
//! old one goes; nothing else disruptive happens while the rollout runs, and the restart
//! budget stops a second one.

use std::time::{Duration, Instant};

use e2e::{Cluster, Options, eventually};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_replaces_every_pod_one_at_a_time_and_only_once() {
    let began = Instant::now();
    let cluster = Cluster::start(Options {
        pods: 2,
        ..Options::default()
    })
    .await;
    // Critical under where a fresh pod settles (45 %): every pod is over it, the new ones too.
    cluster
        .apply_policy(
            "roll",
            json!({
                "thresholds": {"lowWaterMark": 20, "highWaterMark": 30, "critical": 40},
                "onHigh": "AlertOnly",
                "onCritical": "RollingRestart",
                "safety": {"cooldown": "1s", "maxRestartsPerHour": 1}
            }),
        )
        .await;
    let first = cluster.ready_pod_names();
    eventually("both pods replaced", Duration::from_secs(60), || {
        let pods = cluster.ready_pod_names();
        pods.len() == 2 && pods.iter().all(|p| !first.contains(p))
    })
    .await;
    eventually(
        "the second restart held back",
        Duration::from_secs(30),
        || cluster.condition_is("roll", "Throttled", "True"),
    )
    .await;
    let throttled = cluster.condition("roll", "Throttled").unwrap();
    assert!(
        throttled
            .message
            .starts_with("restart budget exhausted: 1 restarts"),
        "{throttled:?}"
    );

    // One at a time: from the moment the template changed, never fewer ready pods than
    // replicas, never more than one extra pod.
    let statuses: Vec<_> = cluster
        .deployment_versions()
        .into_iter()
        .skip_while(|d| {
            d["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"]
                .is_null()
        })
        .collect();
    assert!(!statuses.is_empty(), "the template was never stamped");
    for deployment in &statuses {
        let status = &deployment["status"];
        assert!(status["readyReplicas"].as_u64() >= Some(2), "{status}");
        assert!(status["replicas"].as_u64() <= Some(3), "{status}");
    }
    let deletions = cluster.deletions();
    let mut replaced: Vec<String> = deletions.iter().map(|d| d.pod.clone()).collect();
    replaced.sort();
    let mut first = first;
    first.sort();
    assert_eq!(replaced, first);
    assert!(cluster.evicted_pods().is_empty(), "rolled, not evicted");
    let patches = cluster.operator_did("patch", "deployments");
    assert_eq!(patches.len(), 1, "one rolling restart: {patches:?}");
    assert_eq!(
        cluster.events("Deployment", "RollingRestartStarted").len(),
        1
    );
    assert!(
        cluster.unexpected_exits().is_empty(),
        "{:?}",
        cluster.unexpected_exits()
    );
    eprintln!(
        "rolling restart took {:.1} s",
        began.elapsed().as_secs_f64()
    );
}
