//! Finds the `shortener` and `memory-operator` executables of the profile the tests were built
//! with, building them once per test binary so a changed service or operator is never tested
//! through a stale executable.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
};

/// The executables the process kubelet runs for the charts' images.
#[derive(Debug)]
pub struct Binaries {
    pub shortener: PathBuf,
    pub operator: PathBuf,
}

/// `target/<profile>/{shortener,memory-operator}`, built (or brought up to date) on first use.
pub fn binaries() -> &'static Binaries {
    static BINARIES: OnceLock<Binaries> = OnceLock::new();
    BINARIES.get_or_init(|| {
        let profile_dir = profile_dir();
        build(&profile_dir);
        let binaries = Binaries {
            shortener: profile_dir.join("shortener"),
            operator: profile_dir.join("memory-operator"),
        };
        for binary in [&binaries.shortener, &binaries.operator] {
            assert!(
                binary.is_file(),
                "cargo build did not produce {}",
                binary.display()
            );
        }
        binaries
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
        "-p",
        "memory-operator",
        "--bin",
        "memory-operator",
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
    let status = cargo.status().expect("run cargo build");
    assert!(
        status.success(),
        "cargo build of the shortener and the operator failed: {status}"
    );
}
