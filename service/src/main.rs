//! `shortener`: parse the configuration, start logging, serve until SIGTERM or SIGINT.
//!
//! Run on the embedded SQLite default with `cargo run --release -p shortener`.

use anyhow::Context;
use clap::Parser;
use shortener::{Config, Server, telemetry};
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tracing::info;

/// jemalloc reads its options before `main`: background threads return freed
/// pages within about a second (`dirty_decay_ms`), and heap profiling is
/// compiled in but inactive until `SHORTENER_PPROF` turns it on.
#[allow(unsafe_code)]
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static MALLOC_CONF: &[u8] =
    b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0,prof:true,prof_active:false,lg_prof_sample:19\0";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    telemetry::init();
    let server = Server::bind(config)
        .await
        .context("cannot start the shortener")?;
    let shutdown = CancellationToken::new();
    let mut terminate = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let trigger = shutdown.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = terminate.recv() => info!("SIGTERM received"),
            _ = tokio::signal::ctrl_c() => info!("SIGINT received"),
        }
        trigger.cancel();
    });
    server
        .serve(shutdown)
        .await
        .context("the shortener stopped with an error")
}
