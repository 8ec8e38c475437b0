//! Finds the `shortener` binary of the profile the tests were built with, building it once
//! per test binary so a changed service is never tested through a stale executable.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
};

/// `target/<profile>/shortener`, built (or brought up to date) on first use.
pub fn shortener() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let profile_dir = profile_dir();
        let binary = profile_dir.join("shortener");
        build(&profile_dir);
        assert!(
            binary.is_file(),
            "cargo build -p shortener did not produce {}",
            binary.display()
        );
        binary
    })
}

/// `target/<profile>`: test executables live in its `deps` folder.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let deps = exe.parent().expect("the test executable's folder");
    deps.parent()
        .expect("target/<profile> above the deps folder")
        .to_owned()
}

fn build(profile_dir: &Path) {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root");
    let mut cargo = Command::new(env!("CARGO"));
    cargo.current_dir(workspace).args([
        "build",
        "--quiet",
        "-p",
        "shortener",
        "--bin",
        "shortener",
    ]);
    // Any other profile folder name is a custom profile of the same name.
    match profile_dir.file_name().and_then(|name| name.to_str()) {
        Some("debug") | None => {}
        Some("release") => {
            cargo.arg("--release");
        }
        Some(profile) => {
            cargo.args(["--profile", profile]);
        }
    }
    let status = cargo.status().expect("run cargo build -p shortener");
    assert!(
        status.success(),
        "cargo build -p shortener failed: {status}"
    );
}
