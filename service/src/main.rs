//! `shortener`: parse the configuration, start logging, serve until SIGTERM or SIGINT.
//!
//! Run on the embedded SQLite default with `cargo run --release -p shortener`.

use anyhow::Context;
use clap::Parser;
use shortener::{Config, Server, telemetry};
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tracing::info;

/// jemalloc reads its options before `main` (and is the whole process's `malloc`, SQLite
/// included). Sized for a small service, as measured with `bench/stress.sh`
/// (`docs/service-memory.md`): one arena, so that what a thread frees fills the gaps
/// another left; thread caches for sizes up to 8 KiB only and a few objects a size class, so
/// that what idle threads hold stays small (unbounded, they kept about 5 MiB after a stress
/// test; none at all cost a fifth of the redirect rate; 8 KiB is hyper's read buffer, which
/// each request allocates anew: from the arena it cost 2,000 instructions a redirect); a background thread that returns
/// freed pages within about a second. Heap profiling is compiled in but inactive until
/// `SHORTENER_PPROF` turns it on.
#[allow(unsafe_code)]
#[unsafe(export_name = "malloc_conf")]
pub static MALLOC_CONF: &[u8] = b"background_thread:true,narenas:1,tcache_max:8192,\
tcache_nslots_small_max:16,tcache_nslots_large:4,dirty_decay_ms:1000,muzzy_decay_ms:0,\
prof:true,prof_active:false,lg_prof_sample:19\0";

fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    telemetry::init();
    let mut runtime = match config.workers {
        // One worker: the main thread serves, without the work-stealing scheduler's queues
        // and wake-ups between threads (2 % of the instructions of a redirect).
        Some(workers) if workers.get() == 1 => tokio::runtime::Builder::new_current_thread(),
        workers => {
            let mut runtime = tokio::runtime::Builder::new_multi_thread();
            if let Some(workers) = workers {
                runtime.worker_threads(workers.get());
            }
            runtime
        }
    };
    runtime
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(run(config))
}

async fn run(config: Config) -> anyhow::Result<()> {
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
