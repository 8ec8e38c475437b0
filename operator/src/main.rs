//! `memory-operator`: `run` runs the controller, `crd` prints the
//! CustomResourceDefinition, `check` vets policy files before they reach a cluster.

use std::{
    io::IsTerminal,
    net::SocketAddr,
    path::PathBuf,
    process::ExitCode,
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use kube::{Client, CustomResourceExt, runtime::events::Reporter};
use memory_operator::{
    Error,
    context::Context as Shared,
    controller,
    leader::Elector,
    metrics::Metrics,
    prometheus::{Bounds, Prometheus, Sources},
    server::{Health, router},
};
use memory_policy_api::crd::MemoryPolicy;
use memory_policy_api::validate::check_documents;
use tokio_util::sync::CancellationToken;
use tracing::info;
use tracing_subscriber::{EnvFilter, prelude::*};

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc reads its options before `main`. A controller is small and mostly waits: one
/// arena, no thread caches, and a background thread that returns freed pages within about a
/// second keep its resident memory near what it uses. Thread caches held about 7 MiB at 500
/// policies (tokio moves tasks between threads, so one thread's cache fills with what
/// another allocated) and saved no measurable CPU at a few hundred allocations a second;
/// glibc's malloc kept a 500-policy operator at about 100 MiB.
#[allow(unsafe_code)]
#[unsafe(export_name = "malloc_conf")]
pub static MALLOC_CONF: &[u8] =
    b"background_thread:true,narenas:1,tcache:false,dirty_decay_ms:1000,muzzy_decay_ms:0\0";

/// Keeps URL-shortener Deployments healthy by memory policy.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controller against the cluster in the kubeconfig or the pod's service account.
    Run(RunArgs),
    /// Print the MemoryPolicy CustomResourceDefinition as YAML.
    Crd,
    /// Check a YAML file of `---`-separated MemoryPolicy documents; exits 1 if any is unsound.
    Check {
        /// The file to check.
        file: PathBuf,
    },
    /// Replay Prometheus history through a policy and print what it would have done.
    Backtest(memory_operator::backtest::Options),
    /// Print every permission the operator uses as JSON RBAC rules (what the Helm chart grants).
    Rbac,
}

/// Flags of `run`.
#[derive(Args)]
struct RunArgs {
    /// The metrics sources policies may name (spec.prometheus.source): a YAML file,
    /// `sources:` followed by a list of {name, url, timeout, bearerTokenFile, caFile,
    /// clientCertFile, clientKeyFile}. Without it, the one source is `default` at
    /// --prometheus-url.
    #[arg(long, env = "PROMETHEUS_SOURCES")]
    sources: Option<PathBuf>,
    /// The `default` source's URL, when --sources is not given.
    #[arg(
        long,
        env = "PROMETHEUS_URL",
        default_value = "http://prometheus.monitoring:9090"
    )]
    prometheus_url: String,
    /// The largest Prometheus answer read, in bytes; a larger one is refused
    /// (`MetricsAvailable=False`, reason AnswerTooLarge).
    #[arg(long, env = "PROMETHEUS_MAX_ANSWER_BYTES", default_value_t = Bounds::default().max_answer_bytes)]
    prometheus_max_answer_bytes: u64,
    /// The most series a Prometheus answer may hold; more are refused (reason TooManySeries).
    #[arg(long, env = "PROMETHEUS_MAX_SERIES", default_value_t = Bounds::default().max_series)]
    prometheus_max_series: usize,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, env = "OPERATOR_LISTEN", default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    /// Act only while holding the Lease, so that several replicas can run.
    #[arg(long, env = "LEADER_ELECTION", default_value_t = false)]
    leader_election: bool,
    /// Namespace of the Lease (the operator's own namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// Name of the Lease.
    #[arg(long, env = "LEASE_NAME", default_value = "memory-operator")]
    lease_name: String,
    /// This replica's identity in the Lease (the pod name).
    #[arg(long, env = "POD_NAME", default_value = "memory-operator")]
    identity: String,
    /// How long a Lease holds without renewal; a standby takes over this long after the
    /// leader stops renewing (`15s`, `1m`).
    #[arg(long, env = "LEASE_DURATION", default_value = "15s", value_parser = lease_duration)]
    lease_duration: Duration,
    /// Watch only this namespace's policies and Deployments (default: every namespace).
    #[arg(long, env = "WATCH_NAMESPACE")]
    namespace: Option<String>,
}

/// A lease duration in the CRD's duration syntax, at least a second.
fn lease_duration(text: &str) -> Result<Duration, String> {
    let duration: memory_policy_api::crd::Duration = text.parse().map_err(|e| format!("{e}"))?;
    let duration = Duration::from(duration);
    if duration < Duration::from_secs(1) {
        return Err(format!("{text} is shorter than 1s"));
    }
    Ok(duration)
}

fn main() -> anyhow::Result<ExitCode> {
    match Cli::parse().command {
        Command::Run(args) => {
            let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            runtime.block_on(run(args))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Crd => {
            let yaml =
                serde_yaml::to_string(&MemoryPolicy::crd()).context("serializing the CRD")?;
            print!("{yaml}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { file } => check(file),
        Command::Backtest(options) => backtest(options),
        Command::Rbac => rbac(),
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt::layer();
    if std::io::stdout().is_terminal() {
        tracing_subscriber::registry()
            .with(filter)
            .with(logs)
            .init();
    } else {
        tracing_subscriber::registry()
            .with(filter)
            .with(logs.json())
            .init();
    }
    let config = kube::Config::infer()
        .await
        .context("finding the Kubernetes API (in-cluster or kubeconfig)")?;
    let client = Client::try_from(config.clone()).context("creating the Kubernetes client")?;
    let metrics = Arc::new(Metrics::default());
    let health = Health {
        metrics: metrics.clone(),
        ready: Arc::default(),
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let shutdown = CancellationToken::new();
    tokio::spawn(
        axum::serve(listener, router(health.clone()))
            .with_graceful_shutdown(shutdown.clone().cancelled_owned())
            .into_future(),
    );
    tokio::spawn(stop_on_signal(shutdown.clone()));

    let reporter = Reporter {
        controller: "memory-operator".into(),
        instance: Some(args.identity.clone()),
    };
    let sources = match &args.sources {
        Some(file) => Sources::load(file)?,
        None => Sources::single(&args.prometheus_url)?,
    };
    let shared = Shared::new(
        config,
        Prometheus::new(sources).with_bounds(Bounds {
            max_answer_bytes: args.prometheus_max_answer_bytes,
            max_series: args.prometheus_max_series,
        }),
        metrics,
        reporter,
    )?;
    // Ready once the API server answers for MemoryPolicies: a standby replica
    // serves its endpoints and stands ready to lead, so it counts as ready too.
    controller::ensure_crd(&client, args.namespace.as_deref()).await?;
    health.ready.store(true, Ordering::Relaxed);
    // Futures are lazy: the controller starts only when awaited, which under
    // leader election happens only once this replica holds the Lease.
    let controller = controller::run(
        shared,
        args.namespace.as_deref(),
        shutdown.clone().cancelled_owned(),
    );
    if args.leader_election {
        let elector = Elector::new(
            client,
            &args.lease_namespace,
            &args.lease_name,
            &args.identity,
            args.lease_duration,
        );
        let (elected, leading) = tokio::sync::oneshot::channel();
        // A standby stops at once on SIGTERM; a leader stops through the controller's own
        // graceful shutdown.
        let stopping = shutdown.clone();
        let act_when_elected = async move {
            tokio::select! {
                elected = leading => match elected {
                    Ok(()) => controller.await,
                    Err(_) => Ok(()),
                },
                () = stopping.cancelled() => Ok(()),
            }
        };
        tokio::select! {
            _ = elector.lead(move || { let _ = elected.send(()); }) => {
                anyhow::bail!("lost leadership; exiting so that a fresh replica stands by")
            }
            result = act_when_elected => result.context("the controller failed")?,
        }
    } else {
        controller.await.context("the controller failed")?;
    }
    info!("stopped");
    Ok(())
}

async fn stop_on_signal(shutdown: CancellationToken) {
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(_) => return,
        };
    tokio::select! {
        _ = terminate.recv() => info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => info!("SIGINT received"),
    }
    shutdown.cancel();
}

fn check(file: PathBuf) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(&file).map_err(|source| Error::Io {
        path: file.clone(),
        source,
    })?;
    let results = check_documents(&text);
    if results.is_empty() {
        eprintln!("{}: no MemoryPolicy documents found", file.display());
        return Ok(ExitCode::FAILURE);
    }
    let mut sound = true;
    for result in results {
        match result {
            Ok(policy) => println!("ok: {}", policy.metadata.name.unwrap_or_default()),
            Err(problem) => {
                sound = false;
                eprintln!("{}: {problem}", file.display());
            }
        }
    }
    Ok(if sound {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn backtest(options: memory_operator::backtest::Options) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let backtest = runtime.block_on(memory_operator::backtest::run(&options))?;
    print!("{}", backtest.report());
    if let Some(path) = &options.svg {
        std::fs::write(path, backtest.svg())
            .with_context(|| format!("writing the chart to {}", path.display()))?;
        println!("chart     {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn rbac() -> anyhow::Result<ExitCode> {
    let rules: Vec<_> = memory_operator::rbac::PERMISSIONS
        .iter()
        .map(|p| {
            serde_json::json!({
                "apiGroups": [p.group],
                "resources": [p.resource],
                "verbs": p.verbs,
            })
        })
        .collect();
    let json = serde_json::to_string_pretty(&rules).context("serializing the permissions")?;
    println!("{json}");
    Ok(ExitCode::SUCCESS)
}
