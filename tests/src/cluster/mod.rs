//! One test's whole world on the real control plane (testkit's, one per test binary): a
//! namespace with the shortener chart installed by `helm install`, its pods run by the process
//! kubelet as real `shortener` processes in memory cgroups of their own, a database seeded with
//! long links, a Prometheus that discovers the pods through the apiserver, and the operator
//! chart's operator, run by the same kubelet with its chart's ServiceAccount token. A record of
//! what the cluster showed is kept for the test to read. Dropping it stops everything.

mod api;
mod install;
mod pods;
mod record;

pub use api::Condition;
pub use install::{OPERATOR_NAMESPACE, OPERATOR_RELEASE};
pub use record::Deletion;

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use kube::{
    Client,
    config::{KubeConfigOptions, Kubeconfig},
};
use testkit::{ControlPlane, KubeletConfig, PgServer, ProcessKubelet, PromServer};
use tokio_util::sync::CancellationToken;

use crate::{ADMIN_TOKEN, MIB, binary, eventually, load, probe::Probe};
use record::SharedRecord;

/// How the cluster is set up.
#[derive(Clone, Debug)]
pub struct Options {
    /// Replicas of the Deployment at the start.
    pub pods: usize,
    /// Where an idle pod sits, in percent of the memory limit the pods get.
    pub idle_percent: u64,
    /// Links with ~2 KB targets seeded into the database.
    pub links: usize,
    /// More values for the shortener chart (`key`, `value`), after the cluster's own.
    pub values: Vec<(String, String)>,
    /// A PostgreSQL server of the test's own, which it can stop and restart; otherwise a
    /// fresh database on the test binary's shared server.
    pub own_database: bool,
    /// The most the scenario may take, start-up included; past it the test process stops
    /// at once, and the watchdogs of its pods, PostgreSQL and Prometheus stop them.
    pub time_limit: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            pods: 3,
            // Well under the policies' lowWaterMark (60), so a fresh pod counts as comfortable.
            idle_percent: 45,
            links: 0,
            values: Vec::new(),
            own_database: false,
            // The slowest scenario takes about two minutes on two loaded cores.
            time_limit: Duration::from_secs(360),
        }
    }
}

/// Everything one test runs; stops it all when dropped.
pub struct Cluster {
    /// The namespace of the shortener, its policies and this test's reads.
    pub namespace: String,
    pub database_url: String,
    /// The memory limit of every pod (`resources.limits.memory`).
    pub limit_bytes: u64,
    /// Resident bytes of an idle pod, measured before the cluster started.
    pub idle_bytes: u64,
    pub http: reqwest::Client,
    /// An admin client, for writes a user would make with kubectl.
    pub client: Client,
    plane: &'static ControlPlane,
    kubelet: ProcessKubelet,
    prometheus: Arc<Mutex<PromServer>>,
    prometheus_url: String,
    database: Option<Arc<Mutex<PgServer>>>,
    record: SharedRecord,
    stop: CancellationToken,
    /// The pods' logs; deleted with the cluster.
    logs: tempfile::TempDir,
    /// Dropped with the cluster, which calls off the time limit.
    _deadline: std::sync::mpsc::Sender<()>,
}

impl Cluster {
    /// Starts everything and waits until every pod is ready and scraped and the operator runs;
    /// no policy exists yet. One per test binary: the operator chart is installed once.
    pub async fn start(options: Options) -> Cluster {
        static STARTED: AtomicBool = AtomicBool::new(false);
        assert!(
            !STARTED.swap(true, Ordering::SeqCst),
            "one Cluster per test binary: put each scenario in a file of its own"
        );
        let deadline = time_limit(options.time_limit);
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("e2e=warn")),
            )
            .with_test_writer()
            .try_init();
        let logs = tempfile::Builder::new()
            .prefix("e2e-")
            .tempdir()
            .expect("a temp dir for the pods' logs");
        let binaries = blocking(binary::binaries).await;
        let plane = blocking(|| ControlPlane::shared().expect("the control plane starts")).await;
        blocking(|| install::crd(plane)).await;
        let namespace = blocking(|| plane.create_namespace("e2e"))
            .await
            .expect("a namespace for the test");
        let client = admin(plane).await;
        let kubelet = ProcessKubelet::start(
            client.clone(),
            KubeletConfig {
                node: namespace.clone(),
                images: BTreeMap::from([
                    ("shortener".to_owned(), binaries.shortener.clone()),
                    ("memory-operator".to_owned(), binaries.operator.clone()),
                ]),
                restart_backoff: Duration::from_secs(1),
                dir: logs.path().to_owned(),
                api_server: Some((plane.server(), plane.ca_file().to_owned())),
            },
        )
        .await
        .expect("the process kubelet starts");
        if let Err(why) = kubelet.memory_cgroups() {
            eprintln!(
                "no memory cgroups here ({why}): pods get their limit as SHORTENER_MAX_MEMORY"
            );
        }

        let (database, database_url) = if options.own_database {
            let server = blocking(PgServer::start)
                .await
                .expect("a throwaway PostgreSQL server");
            let url = server.create_database().expect("a test database");
            (Some(Arc::new(Mutex::new(server))), url)
        } else {
            let url = blocking(testkit::fresh_database_url)
                .await
                .expect("a fresh test database");
            (None, url)
        };
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .expect("an HTTP client");

        // A probe creates the schema and shows what an idle pod weighs.
        let probe_env = [
            ("DATABASE_URL", database_url.as_str()),
            ("SHORTENER_MAX_MEMORY", "1GiB"),
            ("SHORTENER_MONITOR_INTERVAL", "200ms"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let probe =
            Probe::spawn(&binaries.shortener, &probe_env, logs.path()).expect("start the probe");
        probe
            .wait_until_healthy(&http)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        if options.links > 0 {
            let (url, links) = (database_url.clone(), options.links);
            blocking(move || load::seed_long_links(&url, links)).await;
        }
        let idle_bytes = settle(&probe, &http).await;
        drop(probe);
        // Whole kibibytes, as a quantity in the chart's values.
        let limit_bytes = (idle_bytes * 100 / options.idle_percent) & !1023;

        let prometheus = blocking({
            let namespace = namespace.clone();
            move || {
                let pods = plane
                    .pod_reader(&namespace, "prometheus")
                    .expect("a ServiceAccount for Prometheus");
                PromServer::discovering(&pods).expect("a Prometheus discovering the pods")
            }
        })
        .await;
        let prometheus_url = prometheus.url();
        let record = SharedRecord::default();
        let stop = CancellationToken::new();
        record::start(&client, &namespace, &record, &stop);
        {
            let prometheus_url = prometheus_url.clone();
            blocking(move || install::operator(plane, &prometheus_url)).await;
        }
        let values = shortener_values(&options, &database_url, limit_bytes);
        {
            let namespace = namespace.clone();
            blocking(move || install::shortener(plane, &namespace, &values)).await;
        }

        let cluster = Cluster {
            namespace,
            database_url,
            limit_bytes,
            idle_bytes,
            http,
            client,
            plane,
            kubelet,
            prometheus: Arc::new(Mutex::new(prometheus)),
            prometheus_url,
            database,
            record,
            stop,
            logs,
            _deadline: deadline,
        };
        let pods = options.pods;
        eventually("every pod ready", Duration::from_secs(90), || {
            cluster.ready_pods().len() == pods
        })
        .await;
        cluster.wait_for_targets_up(pods).await;
        cluster.wait_for_operator().await;
        cluster
    }

    /// The control plane, for what a test does with kubectl.
    pub fn plane(&self) -> &'static ControlPlane {
        self.plane
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop.cancel();
        if std::thread::panicking() {
            self.report();
        }
    }
}

/// The shortener chart's values: the pods' limit, the database, the admin token, fast memory
/// clocks and the service's own trims turned down, so that a leak is the operator's to deal
/// with; then the test's own.
fn shortener_values(
    options: &Options,
    database_url: &str,
    limit_bytes: u64,
) -> Vec<(String, String)> {
    let limit = format!("{}Ki", limit_bytes / 1024);
    let mut values: Vec<(String, String)> = [
        ("replicaCount", options.pods.to_string()),
        ("database.url", database_url.to_owned()),
        ("admin.token", ADMIN_TOKEN.to_owned()),
        // Pods share the machine's network: each listens on its own address.
        ("listenAddress", "$(POD_IP)".to_owned()),
        ("resources.limits.memory", limit.clone()),
        ("resources.requests.memory", limit),
        ("resources.requests.cpu", "10m".to_owned()),
        ("logLevel", "warn".to_owned()),
        ("terminationGracePeriodSeconds", "5".to_owned()),
        ("memory.monitorInterval", "200ms".to_owned()),
        // The service's own trims would hide a leak from the operator: at most one an hour.
        ("memory.minTrimInterval", "1h".to_owned()),
        ("env.SHORTENER_CACHE_BUDGET", "256MiB".to_owned()),
        // Followed links stay cached (and resident) until the pod is replaced.
        ("env.SHORTENER_CACHE_IDLE_TTL", "1h".to_owned()),
        ("env.SHORTENER_SHUTDOWN_GRACE", "2s".to_owned()),
        ("env.SHORTENER_DB_MAX_CONNECTIONS", "4".to_owned()),
        // The tests apply their own policies.
        ("memoryPolicy.enabled", "false".to_owned()),
        ("grafanaDashboard.enabled", "false".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    values.extend(options.values.iter().cloned());
    values
}

/// A client with the admin's rights.
async fn admin(plane: &ControlPlane) -> Client {
    let kubeconfig = Kubeconfig::read_from(plane.kubeconfig()).expect("a readable kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("a usable kubeconfig");
    Client::try_from(config).expect("an admin client")
}

/// Lets a fresh pod settle as it would under scraping, then reads its resident bytes.
async fn settle(probe: &Probe, http: &reqwest::Client) -> u64 {
    for _ in 0..5 {
        let _ = http
            .get(format!("{}/metrics", probe.base_url()))
            .send()
            .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let idle = probe.resident_bytes().expect("the probe is running");
    assert!(idle > MIB, "an idle pod of {idle} bytes is implausible");
    idle
}

/// Ends the test process if the returned sender is not dropped within `limit`: a scenario
/// stuck in an await that no `eventually` guards would otherwise hang the suite.
fn time_limit(limit: Duration) -> std::sync::mpsc::Sender<()> {
    let (sender, receiver) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = receiver.recv_timeout(limit) {
            eprintln!("the scenario did not finish within {limit:?}; stopping the test process");
            std::process::exit(101);
        }
    });
    sender
}

fn lock_prometheus(prometheus: &Mutex<PromServer>) -> std::sync::MutexGuard<'_, PromServer> {
    prometheus.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs blocking work (process starts, kubectl, helm, psql) off the async workers.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(work)
        .await
        .expect("blocking work does not panic")
}
