//! Installing as the README tells a user to: the CRD from `crds/`, then both charts with the
//! real `helm install`.

use std::path::{Path, PathBuf};

use testkit::ControlPlane;

/// The operator chart's release and namespace: its ServiceAccount is the operator's identity.
pub const OPERATOR_RELEASE: &str = "memory-operator";
pub const OPERATOR_NAMESPACE: &str = "memory-operator";
/// The shortener chart's release; `fullnameOverride` names its Deployment `web`.
const SHORTENER_RELEASE: &str = "web";

/// The workspace root, where `crds/` and `charts/` are.
pub(crate) fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
}

/// The CRD, applied and Established.
pub(crate) fn crd(plane: &ControlPlane) {
    plane
        .apply_crd(&crd_file())
        .expect("the CRD is applied and Established");
}

/// `crds/memorypolicy.yaml`.
pub(crate) fn crd_file() -> PathBuf {
    repo_root().join("crds/memorypolicy.yaml")
}

/// The operator chart, one replica (with leader election, as the chart has it) querying
/// `prometheus_url`, listening on its pod's own address.
pub(crate) fn operator(plane: &ControlPlane, prometheus_url: &str) {
    helm_install(
        plane,
        OPERATOR_RELEASE,
        "charts/memory-operator",
        OPERATOR_NAMESPACE,
        &[
            "--create-namespace".to_owned(),
            set("replicaCount", "1"),
            set("prometheusUrl", prometheus_url),
            set("listenAddress", "$(POD_IP)"),
            // A stopped leader's successor takes the Lease over within seconds.
            set("extraEnv[0].name", "LEASE_DURATION"),
            set("extraEnv[0].value", "4s"),
        ],
    );
}

/// The shortener chart into `namespace` with `values` (`key=value`, later ones win).
pub(crate) fn shortener(plane: &ControlPlane, namespace: &str, values: &[(String, String)]) {
    let mut args = vec![set("fullnameOverride", crate::DEPLOYMENT)];
    args.extend(values.iter().map(|(key, value)| set(key, value)));
    helm_install(
        plane,
        SHORTENER_RELEASE,
        "charts/shortener",
        namespace,
        &args,
    );
}

/// `--set key=value`, with the commas Helm would split on escaped.
fn set(key: &str, value: &str) -> String {
    format!("--set={key}={}", value.replace(',', "\\,"))
}

fn helm_install(
    plane: &ControlPlane,
    release: &str,
    chart: &str,
    namespace: &str,
    args: &[String],
) {
    let chart = repo_root().join(chart);
    let out = plane
        .helm()
        .args(["install", release])
        .arg(&chart)
        .args(["--namespace", namespace])
        .args(args)
        .output()
        .expect("helm runs");
    assert!(
        out.status.success(),
        "helm install {release} {}: {}",
        chart.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}
