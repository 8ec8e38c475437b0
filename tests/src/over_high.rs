//! The start the raise-in-place scenarios share: two pods in memory cgroups of their own, a
//! policy `grow` that raises limits in place, and the first pod filled by real traffic to over
//! the high water mark and under critical.

use std::time::Duration;

use serde_json::Value;

use crate::{Cluster, Options};

/// Links to follow: enough to carry a pod from idle (45 %) past high (80 %) twice over, since
/// the service's own memory manager trims once on the way.
const LINKS: usize = 32_000;
/// Filled up to here: over high (80 %), under critical (90 %).
pub const FILL_TO: f64 = 0.83;

/// A cluster with one pod filled over high under policy `grow`.
pub struct OverHigh {
    pub cluster: Cluster,
    /// The pods as they were before the fill, oldest first.
    pub pods: Vec<String>,
    /// The pod filled, the first of them.
    pub hot: String,
    /// Its pod object before the fill.
    pub before: Value,
    /// The usage ratio the fill reached.
    pub reached: f64,
}

/// Starts the cluster, applies policy `grow` with the spec `policy` gives for the pods' memory
/// limit, and fills the first pod over high; `None` where the machine has no memory cgroups
/// (so no limit to resize in place), which the scenario reports as skipped.
pub async fn one_pod_over_high(policy: impl FnOnce(u64) -> Value) -> Option<OverHigh> {
    let cluster = Cluster::start(Options {
        pods: 2,
        links: LINKS,
        ..Options::default()
    })
    .await;
    if let Err(why) = cluster.memory_cgroups() {
        eprintln!("SKIPPED: no memory cgroups here ({why}), so no limit to resize in place");
        return None;
    }
    cluster
        .apply_policy("grow", policy(cluster.limit_bytes))
        .await;
    let pods = cluster.ready_pod_names();
    let hot = pods[0].clone();
    let before = cluster.pod(&hot);
    let (reached, _) = cluster
        .fill(&hot, 0..LINKS, FILL_TO, Duration::from_secs(90))
        .await;
    assert!(reached >= FILL_TO, "{hot} filled to only {reached:.2}");
    Some(OverHigh {
        cluster,
        pods,
        hot,
        before,
        reached,
    })
}
