//! The Helm charts, tested with the real Helm v4 SDK and the Kubernetes 1.32
//! schemas by pytest (`tests/charts/`): lint and render with several value
//! sets, strict schema validation, hardened pods, the chart's CRD equal to the
//! generated one and its RBAC equal to `memory-operator rbac`. Run here so
//! that `cargo test --workspace` is the whole suite.

use std::{path::Path, process::Command};

#[test]
fn the_helm_charts_lint_render_and_validate() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root");
    let output = Command::new("bash")
        .arg("tests/charts/run.sh")
        .current_dir(root)
        .env("MEMORY_OPERATOR_BIN", env!("CARGO_BIN_EXE_memory-operator"))
        .output()
        .expect("bash runs tests/charts/run.sh");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    println!("{text}");
    assert!(output.status.success(), "the chart tests failed:\n{text}");
}
