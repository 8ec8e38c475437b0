//! Where the Go-built control plane binaries are: `KUBE_BIN_DIR` when set, else whatever
//! `tools/k8s/build.sh` prints (it builds them once per `go.sum` and reuses them after).

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::OnceLock,
};

use crate::{Error, Result};

/// Every binary the control plane and the tests run.
pub(crate) const NAMES: [&str; 7] = [
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
    "helm",
    "prometheus",
];

/// The script that builds the binaries, beside the Go module that pins their versions.
fn build_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools/k8s/build.sh")
}

/// The directory holding every binary of [`NAMES`], built on first use in this process.
pub(crate) fn dir() -> Result<&'static Path> {
    static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let found = DIR.get_or_init(|| locate().map_err(|e| e.to_string()));
    match found {
        Ok(dir) => Ok(dir),
        Err(message) => Err(Error::Binaries(message.clone())),
    }
}

fn locate() -> Result<PathBuf> {
    let dir = match std::env::var_os("KUBE_BIN_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => build()?,
    };
    let missing: Vec<&str> = NAMES
        .into_iter()
        .filter(|name| !dir.join(name).is_file())
        .collect();
    if missing.is_empty() {
        Ok(dir)
    } else {
        Err(Error::Binaries(format!(
            "{} has no {}; run tools/k8s/build.sh (or unset KUBE_BIN_DIR)",
            dir.display(),
            missing.join(", ")
        )))
    }
}

/// Runs the build script, its progress shown on the test's stderr.
fn build() -> Result<PathBuf> {
    let script = build_script();
    let line = format!("bash {}", script.display());
    let out = Command::new("bash")
        .arg(&script)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| Error::Spawn(line.clone(), e))?;
    if !out.status.success() {
        return Err(Error::Command(line, out.status, String::new()));
    }
    let printed = String::from_utf8_lossy(&out.stdout);
    Ok(PathBuf::from(printed.trim()))
}
