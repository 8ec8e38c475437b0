//! Scenario 12: a raise the Node cannot hold. The policy raises a pod over high by more memory
//! than the Node has; the kubelet answers `PodResizePending` with reason `Infeasible`, the
//! operator shows it on the pod's status line, and falls back to `onCritical` (an eviction)
//! as soon as the cooldown allows, saying why. The pod never reaches its limit.

use std::time::{Duration, Instant};

use e2e::{MIB, eventually, over_high};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raise_the_node_cannot_hold_falls_back_to_evicting_the_pod() {
    let began = Instant::now();
    // More than the Node's 256 GiB in one step.
    let Some(over_high::OverHigh {
        cluster,
        pods,
        hot,
        reached,
        ..
    }) = over_high::one_pod_over_high(|_| {
        json!({
            "onHigh": "RaiseLimit",
            "limits": {"raise": {"step": "300Gi", "max": "1Ti"}},
            "safety": {"cooldown": "5s"}
        })
    })
    .await
    else {
        return;
    };
    let evicted = || cluster.evicted_pods().contains(&hot);
    eventually(
        "the pod evicted after its resize failed",
        Duration::from_secs(40),
        evicted,
    )
    .await;

    // The resize was asked for and granted by the apiserver, then found infeasible.
    let resized = cluster.operator_did("patch", "pods/resize");
    assert_eq!(resized.len(), 1, "{resized:?}");
    assert_eq!(
        (resized[0].name.as_str(), resized[0].code),
        (hot.as_str(), 200)
    );
    let shown: Vec<String> = cluster
        .policy_versions("grow")
        .iter()
        .filter_map(|v| pod_line(v, &hot))
        .filter_map(|p| p["resize"].as_str().map(str::to_owned))
        .collect();
    assert!(
        shown
            .iter()
            .any(|r| r.starts_with("Infeasible to ")
                && r.contains("Node didn't have enough capacity")),
        "the policy showed the pending resize: {shown:?}"
    );
    // Then onCritical, saying why, and nothing else.
    let history = cluster.policy("grow")["status"]["history"].clone();
    let kinds: Vec<&str> = history
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|h| h["type"].as_str())
        .collect();
    assert_eq!(kinds, ["RaiseLimit", "RestartPod"], "{history}");
    let eviction = &history[1];
    assert_eq!(eviction["pods"], json!([hot]));
    let reason = eviction["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains(&format!("the resize of {hot} to "))
            && reason.contains("is infeasible")
            && reason.contains("falling back to onCritical (RestartPod)"),
        "{reason}"
    );
    let told = cluster.events("MemoryPolicy", "PodEvicted");
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(cluster.evicted_pods(), std::slice::from_ref(&hot));
    assert!(
        cluster.unexpected_exits().is_empty(),
        "no OOM kill: {:?}",
        cluster.unexpected_exits()
    );
    // The replacement starts at the template's limit.
    eventually("a replacement ready", Duration::from_secs(30), || {
        cluster.ready_pod_names().len() == 2 && !cluster.ready_pod_names().contains(&hot)
    })
    .await;
    let replacement = cluster
        .ready_pod_names()
        .into_iter()
        .find(|p| !pods.contains(p))
        .expect("a new pod");
    let limit =
        &cluster.pod(&replacement)["spec"]["containers"][0]["resources"]["limits"]["memory"];
    assert_eq!(limit, &json!(format!("{}Ki", cluster.limit_bytes / 1024)));
    eprintln!(
        "{hot} filled to {:.0} % of {} MiB, its 300Gi raise infeasible, evicted; scenario 12 took {:.1} s",
        reached * 100.0,
        cluster.limit_bytes / MIB,
        began.elapsed().as_secs_f64()
    );
}

/// The line of policy version `policy`'s status about `pod`.
fn pod_line(policy: &Value, pod: &str) -> Option<Value> {
    policy["status"]["pods"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == pod)
        .cloned()
}
