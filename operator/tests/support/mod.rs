//! Controller tests on a real control plane (testkit's [`ControlPlane`], one per test binary):
//! the CRD applied with kubectl, the chart's ServiceAccount and RBAC rendered by the real
//! `helm template` and applied, the operator running with a TokenRequest token of that
//! ServiceAccount and nothing more. Each test has a namespace of its own, a Deployment whose
//! pods the real controllers create and the real scheduler binds, a PodDisruptionBudget the
//! real disruption controller computes, and a scripted Prometheus answering the operator's
//! query. Each test's pods run on a Node of its own, as `sleep` processes under testkit's
//! process kubelet, which reports them Running and Ready and honours their deletion.
#![allow(dead_code)] // each test binary uses its own subset

mod cluster;
pub mod process;

pub use cluster::Cluster;

use std::{
    path::{Path, PathBuf},
    sync::OnceLock,
    time::{Duration, Instant},
};

use kube::{
    Client,
    config::{KubeConfigOptions, Kubeconfig},
};
use testkit::ControlPlane;

pub const MIB: u64 = 1 << 20;
/// The chart's release: its ServiceAccount is the operator's identity in every test.
pub const RELEASE: &str = "memory-operator";
pub const OPERATOR_NAMESPACE: &str = "memory-operator";
/// The field manager of the tests' own writes.
pub(crate) const TESTS: &str = "operator-tests";

/// What every test of a binary shares: the control plane with the CRD, the Node and the
/// chart's RBAC installed, and the operator's kubeconfig.
pub struct Installed {
    pub plane: &'static ControlPlane,
    /// Authenticates as the chart's ServiceAccount.
    pub operator_kubeconfig: PathBuf,
}

/// The workspace root, where `crds/` and `charts/` are.
pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
}

/// The control plane of this binary, with the CRD, the Node and the chart's RBAC in place.
pub fn installed() -> &'static Installed {
    static INSTALLED: OnceLock<Installed> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let plane = ControlPlane::shared().expect("the control plane starts");
        let crd = repo_root().join("crds/memorypolicy.yaml");
        plane
            .apply_crd(&crd)
            .expect("the CRD is applied and Established");
        let operator_kubeconfig = install_chart_rbac(plane);
        Installed {
            plane,
            operator_kubeconfig,
        }
    })
}

/// The chart's ServiceAccount, ClusterRole, Role and bindings, rendered by `helm template`
/// and applied; returns a kubeconfig holding a TokenRequest token of that ServiceAccount.
fn install_chart_rbac(plane: &ControlPlane) -> PathBuf {
    plane
        .run_kubectl(&["create", "namespace", OPERATOR_NAMESPACE])
        .expect("the operator's namespace");
    let chart = repo_root().join("charts/memory-operator");
    let rendered = plane
        .helm()
        .args(["template", RELEASE, chart.to_str().unwrap()])
        .args(["--namespace", OPERATOR_NAMESPACE])
        .args(["--show-only", "templates/serviceaccount.yaml"])
        .args(["--show-only", "templates/rbac.yaml"])
        .output()
        .expect("helm runs");
    assert!(
        rendered.status.success(),
        "helm template: {}",
        String::from_utf8_lossy(&rendered.stderr)
    );
    let manifests =
        std::env::temp_dir().join(format!("memory-operator-rbac-{}.yaml", std::process::id()));
    std::fs::write(&manifests, &rendered.stdout).expect("writing the rendered RBAC");
    plane
        .run_kubectl(&[
            "apply",
            "-n",
            OPERATOR_NAMESPACE,
            "-f",
            manifests.to_str().unwrap(),
        ])
        .expect("kubectl applies the chart's RBAC");
    let _ = std::fs::remove_file(&manifests);
    let token = plane
        .service_account_token(OPERATOR_NAMESPACE, RELEASE)
        .expect("a token for the chart's ServiceAccount");
    plane
        .kubeconfig_for("memory-operator", &token)
        .expect("the operator's kubeconfig")
}

/// A client configuration from a kubeconfig file.
pub async fn config_from(path: &Path) -> kube::Config {
    let kubeconfig = Kubeconfig::read_from(path).expect("a readable kubeconfig");
    kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("a usable kubeconfig")
}

/// A client with the admin's rights, for the tests' own reads and writes.
pub async fn admin() -> Client {
    let config = config_from(installed().plane.kubeconfig()).await;
    Client::try_from(config).expect("an admin client")
}

/// The username the apiserver gives the chart's ServiceAccount.
pub fn operator_user() -> String {
    format!("system:serviceaccount:{OPERATOR_NAMESPACE}:{RELEASE}")
}

/// Polls `check` until it holds, failing with `what` after 30 s.
pub async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits `duration` of controller time.
pub async fn pause(duration: Duration) {
    tokio::time::sleep(duration).await;
}
