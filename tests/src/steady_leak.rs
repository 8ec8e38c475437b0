//! The start the predicted-leak scenarios share: three pods, a policy `predict` that predicts
//! growth over 20 s and acts on a leak projected to reach its limit within a minute, and a
//! steady leak: the same number of redirects every second through one pod, each to a link it
//! has not cached yet, so its resident memory climbs while its request rate stays flat.

use std::time::Duration;

use serde_json::{Value, json};

use crate::{Cluster, Options, eventually, load};

/// More links than a leak can follow in the scenarios' time.
const LINKS: usize = 32_000;
/// Redirects a second through the leaking pod: each caches a ~2 KB target, so its memory
/// climbs about half a percent of its limit a second.
pub const PER_SECOND: usize = 120;
/// The policy's critical mark (`Cluster::policy_object`'s), which the prediction acts before.
pub const CRITICAL: f64 = 0.90;

/// A cluster with policy `predict` (its spec merged with `overrides`) and every pod measured.
pub struct SteadyLeak {
    pub cluster: Cluster,
    /// The pods at the start, oldest first.
    pub pods: Vec<String>,
    /// The pod that leaks, the first of them.
    pub leaky: String,
}

impl SteadyLeak {
    /// Starts the cluster, applies the policy and waits until every pod is measured with no
    /// leak suspected; `values` go to the shortener chart.
    pub async fn start(overrides: Value, values: &[(&str, &str)]) -> Self {
        let cluster = Cluster::start(Options {
            links: LINKS,
            values: values
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            ..Options::default()
        })
        .await;
        let mut spec =
            json!({"prediction": {"window": "20s", "horizon": "60s", "minGrowth": "256Ki/min"}});
        json_patch::merge(&mut spec, &overrides);
        cluster.apply_policy("predict", spec).await;
        let pods = cluster.ready_pod_names();
        eventually(
            "every pod measured with no leak suspected",
            Duration::from_secs(40),
            || {
                cluster.measured_pods("predict").len() == pods.len()
                    && cluster.condition_is("predict", "LeakSuspected", "False")
            },
        )
        .await;
        let leaky = pods[0].clone();
        SteadyLeak {
            cluster,
            pods,
            leaky,
        }
    }

    /// Leaks through the first pod at [`PER_SECOND`] for up to `limit`, until `done` holds.
    pub async fn leak_until(&self, limit: Duration, done: impl Fn() -> bool) -> load::Followed {
        let url = self
            .cluster
            .pod_url(&self.leaky)
            .expect("the leaking pod is ready");
        load::follow_steadily(
            &self.cluster.http,
            &url,
            0..LINKS,
            PER_SECOND,
            limit,
            || !done(),
        )
        .await
    }
}

/// `pod`'s line in a policy's `status.pods`.
pub fn pod_line<'a>(policy: &'a Value, pod: &str) -> Option<&'a Value> {
    policy["status"]["pods"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == pod)
}
