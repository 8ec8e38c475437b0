//! End-to-end tests of the whole loop on one machine, with real parts everywhere but the
//! Kubernetes API: a throwaway PostgreSQL, real `shortener` processes standing for the pods of
//! one Deployment, a real Prometheus scraping them every second, and memory-operator's real
//! controller running in-process against testkit's fake API server.
//!
//! Layout: `binary` finds (and builds once) the `shortener` executable; `pod` runs one as a
//! pod, killed when dropped; `rig` plays the kubelet and the Deployment, ReplicaSet and
//! disruption controllers over the `fleet` of pod processes, and `targets` keeps Prometheus
//! scraping exactly the ready pods; `load` seeds links and sends real traffic; `prometheus`
//! reads back what was scraped; `cluster` puts it all together for one test and stops
//! everything it started, even when the test fails. Each scenario is a file in `tests/`, so
//! cargo runs them one after another: each has the two cores to itself.

#![forbid(unsafe_code)]

pub mod binary;
mod cluster;
mod fleet;
pub mod load;
mod pod;
pub mod prometheus;
mod rig;
mod targets;

use std::time::Duration;

use tokio::time::Instant;

pub use cluster::{Cluster, Condition, Options};
pub use fleet::Deletion;

/// The namespace everything lives in.
pub const NS: &str = "shop";
/// The Deployment whose pods the shortener processes are.
pub const DEPLOYMENT: &str = "web";
/// Bearer token of the pods' admin endpoints.
pub const ADMIN_TOKEN: &str = "e2e-admin-token";
/// A mebibyte.
pub const MIB: u64 = 1 << 20;

/// Polls `check` every 100 ms until it holds; panics naming `what` after `timeout`.
pub async fn eventually(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
