//! Scenario 13: a slow leak, predicted (see `e2e::steady_leak`): one pod's real resident memory
//! climbs steadily while its request rate stays flat, a leak as the operator sees it. A policy
//! that predicts growth evicts that pod before it reaches critical, saying when it would have
//! reached its limit, and touches no other pod.

use std::time::Duration;

use e2e::{
    eventually,
    steady_leak::{CRITICAL, PER_SECOND, SteadyLeak, pod_line},
};
use serde_json::json;

/// The policy's `for`, which the level rule would have waited over critical.
const SUSTAIN: f64 = 2.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_leak_is_evicted_before_it_reaches_critical_and_alone() {
    let leak = SteadyLeak::start(json!({}), &[]).await;
    let SteadyLeak {
        cluster,
        pods,
        leaky,
    } = &leak;
    let evicted = || cluster.deletions().iter().any(|d| d.pod == *leaky);
    let began = jiff::Timestamp::now();
    let followed = leak.leak_until(Duration::from_secs(150), evicted).await;
    eventually(
        &format!(
            "{leaky} evicted after {} links followed ({} failed)",
            followed.redirected, followed.failed
        ),
        Duration::from_secs(20),
        evicted,
    )
    .await;

    // Only that pod, once, by the operator's eviction, before it reached critical.
    assert_eq!(cluster.deletions().len(), 1, "{:?}", cluster.deletions());
    assert_eq!(cluster.evicted_pods(), std::slice::from_ref(leaky));
    let evictions = cluster.operator_did("create", "pods/eviction");
    let evicted_at = evictions[0].received.as_millisecond() as f64 / 1000.0;
    let ratios = cluster.usage_ratios(leaky, "5m").await;
    let before: Vec<(f64, f64)> = ratios
        .iter()
        .copied()
        .filter(|(at, _)| *at <= evicted_at)
        .collect();
    let peak = before.iter().map(|(_, r)| *r).fold(0.0, f64::max);
    assert!(
        peak < CRITICAL,
        "{leaky} reached {peak:.2} before the eviction: {before:?}"
    );

    // How long before the level rule would have acted: the pace of the last 20 s carried on
    // to critical, then the policy's `for`.
    let recent: Vec<(f64, f64)> = before
        .iter()
        .copied()
        .filter(|(at, _)| *at >= evicted_at - 20.0)
        .collect();
    let pace = slope(&recent);
    let lead = (CRITICAL - peak) / pace + SUSTAIN;
    eprintln!(
        "predicted leak: {} links followed through {leaky} at {PER_SECOND}/s; evicted at {:.0} % \
         of its limit, growing {:.2} % a second; the level rule would have acted about {lead:.1} s \
         later",
        followed.redirected,
        peak * 100.0,
        pace * 100.0
    );
    assert!(lead > SUSTAIN, "lead {lead:.1} s");

    // The status said so while it grew: growth, projection and suspicion on the pod, the
    // LeakSuspected condition naming it, the state word; never for the others.
    let versions = cluster.policy_versions("predict");
    let suspected = versions
        .iter()
        .find(|v| pod_line(v, leaky).is_some_and(|p| p["leakSuspected"] == true));
    let suspected = suspected.unwrap_or_else(|| panic!("{leaky} never suspected: {versions:#?}"));
    let line = pod_line(suspected, leaky).expect("listed");
    assert!(
        line["growthBytesPerMinute"].as_i64().is_some_and(|g| g > 0),
        "{line}"
    );
    assert!(line["projectedLimitAt"].is_string(), "{line}");
    assert_eq!(suspected["status"]["state"], "LeakSuspected");
    let condition = suspected["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "LeakSuspected"))
        .expect("a LeakSuspected condition");
    assert_eq!(condition["status"], "True");
    let message = condition["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with(&format!("{leaky} projected to reach its"))
            && message.contains("(request rate flat)"),
        "{message}"
    );
    for other in &pods[1..] {
        assert!(
            versions
                .iter()
                .all(|v| pod_line(v, other).is_none_or(|p| p["leakSuspected"] != true)),
            "{other} suspected"
        );
    }

    // The action says why, in its history entry and its Events.
    let policy = cluster.policy("predict");
    let last = &policy["status"]["lastAction"];
    assert_eq!(last["type"], "RestartPod", "{last}");
    assert_eq!(last["pods"], json!([leaky]), "{last}");
    let reason = last["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("leak suspected"), "{reason}");
    let on_policy = cluster.events("MemoryPolicy", "PodEvicted");
    assert_eq!(on_policy.len(), 1, "{on_policy:?}");
    let note = on_policy[0]["note"].as_str().unwrap_or_default();
    assert!(
        note.starts_with(&format!("evict {leaky}: "))
            && note.contains(&format!("{leaky} projected to reach its"))
            && note.contains("(request rate flat)"),
        "{note}"
    );
    assert!(
        cluster.unexpected_exits().is_empty(),
        "{:?}",
        cluster.unexpected_exits()
    );

    // Replayed by `backtest` over what Prometheus recorded, as a user tuning the policy would:
    // with a horizon half again as long, the timeline marks the leak and an eviction earlier
    // than the live one, and the chart shows where the pod was heading.
    let chart = tempfile::NamedTempFile::new().expect("a temporary file");
    let timeline = backtest(cluster, began, "90s", chart.path());
    assert!(
        timeline.contains(&format!("  LEAK      {leaky} projected to reach its")),
        "{timeline}"
    );
    let evict = timeline
        .lines()
        .find(|l| l.contains("  EVICT     "))
        .unwrap_or_else(|| panic!("no eviction in the replay: {timeline}"));
    assert!(
        evict.contains(&format!("{leaky} (")) && evict.contains("leak projected"),
        "{evict}"
    );
    let replayed_at: jiff::Timestamp = evict[..20].parse().expect("a timestamp");
    assert!(
        (replayed_at.as_second() as f64) < evicted_at,
        "{evict} is not before the live eviction at {evicted_at}"
    );
    let svg = std::fs::read_to_string(chart.path()).expect("the chart was written");
    assert!(svg.contains("class=\"projection\""), "{svg}");
    // `E2E_BACKTEST_SVG=docs/images/backtest-prediction.svg` keeps the chart (the README's).
    if let Ok(keep) = std::env::var("E2E_BACKTEST_SVG") {
        std::fs::write(&keep, &svg).expect("the chart can be kept");
    }
}

/// `memory-operator backtest` of policy `predict` with prediction horizon `horizon`, from 10 s
/// before the leak `began` (the pods at rest) until now, at the cluster Prometheus's 1 s scrape
/// interval, writing the chart to `chart`; the timeline.
fn backtest(
    cluster: &e2e::Cluster,
    began: jiff::Timestamp,
    horizon: &str,
    chart: &std::path::Path,
) -> String {
    let mut policy = tempfile::NamedTempFile::new().expect("a temporary file");
    let mut object = cluster.policy("predict");
    object["spec"]["prediction"]["horizon"] = json!(horizon);
    let spec = json!({
        "apiVersion": object["apiVersion"], "kind": object["kind"],
        "metadata": {"name": object["metadata"]["name"], "namespace": object["metadata"]["namespace"]},
        "spec": object["spec"],
    });
    std::io::Write::write_all(&mut policy, spec.to_string().as_bytes()).expect("written");
    let out = std::process::Command::new(&e2e::binary::binaries().operator)
        .args(["backtest", "--policy"])
        .arg(policy.path())
        .args(["--prometheus", cluster.prometheus_url()])
        .arg("--start")
        .arg((began - Duration::from_secs(10)).to_string())
        .args(["--end", "now", "--step", "1s", "--svg"])
        .arg(chart)
        .output()
        .expect("the operator binary runs");
    let timeline = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{timeline}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    timeline
}

/// The least-squares slope of `points`, per second.
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    let (mx, my) = points
        .iter()
        .fold((0.0, 0.0), |(x, y), p| (x + p.0 / n, y + p.1 / n));
    let (sxy, sxx) = points.iter().fold((0.0, 0.0), |(sxy, sxx), (x, y)| {
        (sxy + (x - mx) * (y - my), sxx + (x - mx) * (x - mx))
    });
    sxy / sxx
}
