//! The two binaries the playground runs as pods: the shortener and the operator.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, bail};

/// Where the pods' binaries are.
pub struct Binaries {
    pub shortener: PathBuf,
    pub operator: PathBuf,
}

/// The binaries in `dir`, or beside this executable; built with cargo, in this executable's
/// profile, when they are not there yet.
pub fn locate(dir: Option<&Path>) -> anyhow::Result<Binaries> {
    let dir = match dir {
        Some(dir) => dir.to_owned(),
        None => std::env::current_exe()
            .context("finding this executable")?
            .parent()
            .context("this executable's directory")?
            .to_owned(),
    };
    let binaries = Binaries {
        shortener: dir.join("shortener"),
        operator: dir.join("memory-operator"),
    };
    if !binaries.shortener.is_file() || !binaries.operator.is_file() {
        build(&dir)?;
    }
    for path in [&binaries.shortener, &binaries.operator] {
        if !path.is_file() {
            bail!(
                "{} is missing; build it with `cargo build --release -p shortener -p memory-operator`",
                path.display()
            );
        }
    }
    Ok(binaries)
}

fn build(dir: &Path) -> anyhow::Result<()> {
    let release = dir.file_name().is_some_and(|name| name == "release");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command.args(["build", "-p", "shortener", "-p", "memory-operator"]);
    if release {
        command.arg("--release");
    }
    println!("building the shortener and the operator ({command:?})");
    let status = command.status().context("running cargo build")?;
    if !status.success() {
        bail!("cargo build of the shortener and the operator failed ({status})");
    }
    Ok(())
}
