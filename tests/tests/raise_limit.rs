//! Scenario 11: a limit raised in place. One pod's real traffic carries it over the high water
//! mark; the policy (`onHigh: RaiseLimit`) raises that pod's memory limit through its `resize`
//! subresource, the process kubelet writes the new limit to the running container's memory
//! cgroup, and the service, which reads its cgroup at every sample, reports the new limit and
//! a usage ratio back under high: the same process, the same pod, no restart, no eviction, and
//! the Deployment's template untouched.

use std::time::{Duration, Instant};

use e2e::{Cluster, MIB, eventually, over_high};
use memory_engine::size;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_over_high_gets_a_larger_limit_in_place_and_keeps_running() {
    let began = Instant::now();
    // Half the limit more: a pod at 83 % is at 55 % after one raise, under low (60 %).
    let step = |limit: u64| (limit / 2) & !1023;
    let Some(over_high::OverHigh {
        cluster,
        pods,
        hot,
        before,
        reached,
    }) = over_high::one_pod_over_high(|limit| {
        json!({
            "onHigh": "RaiseLimit",
            "limits": {"raise": {"step": kib(step(limit)), "max": kib(limit * 2)}},
            "safety": {"cooldown": "5s"}
        })
    })
    .await
    else {
        return;
    };
    let limit = cluster.limit_bytes;
    let raised = limit + step(limit);
    let uid = before["metadata"]["uid"].clone();
    eventually(
        "the raised limit applied by the kubelet",
        Duration::from_secs(30),
        || applied_limit(&cluster.pod(&hot)) == Some(size(raised)),
    )
    .await;

    // The same pod and process: no restart, no eviction, no crash.
    let after = cluster.pod(&hot);
    assert_eq!(after["metadata"]["uid"], uid, "the same pod");
    assert_eq!(after["status"]["containerStatuses"][0]["restartCount"], 0);
    assert_eq!(
        after["spec"]["containers"][0]["resources"]["limits"]["memory"],
        size(raised)
    );
    assert!(cluster.evicted_pods().is_empty());
    assert!(
        cluster.unexpected_exits().is_empty(),
        "{:?}",
        cluster.unexpected_exits()
    );
    // The service follows its cgroup: the new limit, and a ratio back under high.
    // The kernel keeps a cgroup's limit in whole pages.
    let in_pages = raised & !4095;
    let deadline = Instant::now() + Duration::from_secs(10);
    let stats = loop {
        let stats = cluster.memory_stats(&hot).await.unwrap_or_default();
        if stats["limit_bytes"] == in_pages {
            break stats;
        }
        assert!(
            Instant::now() < deadline,
            "the service still reports {stats}, not its new limit {in_pages}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let ratio = stats["usage_ratio"].as_f64().unwrap_or(1.0);
    assert!(ratio < 0.80, "usage ratio {ratio:.2} after the raise");
    // The operator's view: the pod's new limit, its usage under high, one raise, told.
    eventually(
        "the policy showing the new limit",
        Duration::from_secs(15),
        || {
            pod_shown(&cluster, "grow", &hot).is_some_and(|p| {
                p["limit"] == size(raised) && p["usageRatio"].as_f64().is_some_and(|r| r < 0.80)
            })
        },
    )
    .await;
    let history = cluster.policy("grow")["status"]["history"].clone();
    let raises: Vec<&Value> = history
        .as_array()
        .into_iter()
        .flatten()
        .filter(|h| h["type"] == "RaiseLimit")
        .collect();
    assert_eq!(raises.len(), 1, "{history}");
    assert_eq!(raises[0]["pods"], json!([hot]));
    let told = cluster.events("Pod", "LimitRaised");
    assert_eq!(told.len(), 1, "{told:?}");
    let note = told[0]["note"].as_str().unwrap_or_default();
    assert!(
        note.contains(&format!("from {} to {}", size(limit), size(raised))),
        "{note}"
    );
    assert_eq!(cluster.events("MemoryPolicy", "LimitRaised").len(), 1);
    // New pods still start at the template's limit: the template was never changed.
    let templates: Vec<Value> = cluster
        .deployment_versions()
        .iter()
        .map(|d| {
            d["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"].clone()
        })
        .collect();
    assert!(
        templates.iter().all(|t| *t == json!(kib(limit))),
        "{templates:?}"
    );
    let other = &cluster.pod(&pods[1])["spec"]["containers"][0]["resources"]["limits"]["memory"];
    assert_eq!(other, &json!(kib(limit)), "the other pod keeps its limit");
    eprintln!(
        "{hot} filled to {:.0} % of {} MiB, raised in place to {} MiB, now at {:.0} %; \
         scenario 11 took {:.1} s",
        reached * 100.0,
        limit / MIB,
        raised / MIB,
        ratio * 100.0,
        began.elapsed().as_secs_f64()
    );
}

/// Bytes as the whole kibibytes the chart's values write.
fn kib(bytes: u64) -> String {
    format!("{}Ki", bytes / 1024)
}

/// The memory limit the kubelet reports it applied to the pod's container.
fn applied_limit(pod: &Value) -> Option<String> {
    pod["status"]["containerStatuses"][0]["resources"]["limits"]["memory"]
        .as_str()
        .map(str::to_owned)
}

/// The policy's status entry for `pod`.
fn pod_shown(cluster: &Cluster, policy: &str, pod: &str) -> Option<Value> {
    cluster.policy(policy)["status"]["pods"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == pod)
        .cloned()
}
