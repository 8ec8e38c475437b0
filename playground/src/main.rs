//! `playground`: the operator at work on this machine, in one command. It starts a real
//! Kubernetes control plane (built from Go modules by `tools/k8s`), a process kubelet that runs
//! pods as real processes in memory cgroups, PostgreSQL and a Prometheus that discovers the pods,
//! installs the CRD and both charts with the real `helm`, prints the kubeconfig and what to try,
//! and stops everything on Ctrl-C.

mod binaries;
mod cluster;
mod drive;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

/// Runs the operator and the shortener on a local Kubernetes control plane until Ctrl-C.
#[derive(Parser)]
#[command(version, about)]
struct Config {
    #[command(subcommand)]
    traffic: Option<Traffic>,
    /// Where the `shortener` and `memory-operator` binaries are (default: beside this one,
    /// built with `cargo build` of the same profile when missing).
    #[arg(long, env = "PLAYGROUND_BIN_DIR")]
    bin_dir: Option<PathBuf>,
    /// Shortener replicas to start with.
    #[arg(long, default_value_t = 2)]
    replicas: u32,
}

/// Traffic for a running playground (in another terminal, with its KUBECONFIG exported).
#[derive(Subcommand)]
enum Traffic {
    /// A leak in one pod: distinct long links through it until it is evicted.
    Leak {
        /// The pod (default: the first Ready one by name).
        #[arg(long)]
        pod: Option<String>,
        /// How many links at most.
        #[arg(long, default_value_t = 100_000)]
        links: usize,
    },
    /// The same traffic through every Ready pod at once.
    Load {
        /// How many links per pod at most.
        #[arg(long, default_value_t = 30_000)]
        links: usize,
    },
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let config = Config::parse();
    if let Some(traffic) = config.traffic {
        let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
        return runtime.block_on(send(traffic));
    }
    let bins = binaries::locate(config.bin_dir.as_deref()).context("finding the binaries")?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let cluster = cluster::Playground::start(&bins, config.replicas).await?;
        println!("{}", cluster.guide());
        println!("playground ready");
        wait_for_stop().await;
        println!("stopping…");
        cluster.stop().await;
        println!("stopped");
        Ok(())
    })
}

async fn send(traffic: Traffic) -> anyhow::Result<()> {
    let targets = drive::targets().await?;
    match traffic {
        Traffic::Leak { pod, links } => {
            let target = match pod {
                Some(name) => targets
                    .into_iter()
                    .find(|t| t.pod == name)
                    .with_context(|| format!("no Ready pod {name}"))?,
                None => targets.into_iter().next().expect("at least one target"),
            };
            drive::drive(&target, links).await?;
        }
        Traffic::Load { links } => {
            let runs = targets.iter().map(|t| drive::drive(t, links));
            for result in futures::future::join_all(runs).await {
                result?;
            }
        }
    }
    Ok(())
}

/// Ctrl-C or SIGTERM.
async fn wait_for_stop() {
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let terminated = async {
        match terminate.as_mut() {
            Some(signal) => {
                signal.recv().await;
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminated => {}
    }
}
