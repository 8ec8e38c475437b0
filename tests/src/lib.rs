//! End-to-end tests of the whole loop on one machine, with real parts everywhere: testkit's
//! real Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager,
//! kube-scheduler), both charts installed with the real `helm install`, the shortener's pods run
//! by testkit's process kubelet as real `shortener` processes in memory cgroups of their own, a
//! throwaway PostgreSQL, a real Prometheus discovering the pods through the apiserver, and the
//! operator's release binary run as the operator chart's pod with its ServiceAccount's token.
//!
//! Layout: `binary` finds (and builds once) the executables the kubelet runs; `probe` measures an
//! idle shortener before the cluster starts; `load` seeds links and sends real traffic;
//! `prometheus` reads back what was scraped; `cluster` puts it all together for one test, keeps
//! a record of what the cluster showed, and stops everything it started, even when the test
//! fails; `over_high` and `steady_leak` are starts that several scenarios share. Each scenario is a file in `tests/`, so cargo runs them one after another, each with
//! a control plane of its own and the two cores to itself.

#![forbid(unsafe_code)]

pub mod binary;
mod cluster;
pub mod load;
pub mod over_high;
mod probe;
pub mod prometheus;
pub mod steady_leak;

use std::time::Duration;

use tokio::time::Instant;

pub use cluster::{Cluster, Condition, Deletion, OPERATOR_NAMESPACE, Options};

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
