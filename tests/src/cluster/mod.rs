//! One test's whole world: a fresh database seeded with long links, a Prometheus, the fake
//! API holding the Deployment `web`, its pods and budget, the rig running the pods as
//! processes, and the operator's controller. Dropping it stops everything.

mod api;
mod pods;

pub use api::Condition;

use std::{
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use kube::runtime::events::Reporter;
use memory_operator::{
    controller::{self, Context},
    metrics::Metrics,
};
use serde_json::{Value, json};
use testkit::{FakeApiServer, PgServer, PromServer};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{
    ADMIN_TOKEN, DEPLOYMENT, MIB, NS, binary, eventually,
    fleet::{self, Fleet, SharedFleet, lock},
    load,
    pod::PodProcess,
    rig::{Rig, Template},
    targets::Targets,
};

/// How the cluster is set up.
#[derive(Clone, Debug)]
pub struct Options {
    /// Replicas of the Deployment at the start.
    pub pods: usize,
    /// Where an idle pod sits, in percent of the memory limit the pods get.
    pub idle_percent: u64,
    /// Links with ~2 KB targets seeded into the database.
    pub links: usize,
    /// Extra environment for every pod.
    pub env: Vec<(String, String)>,
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
            env: Vec::new(),
            own_database: false,
            // The slowest scenario takes about a minute on two loaded cores.
            time_limit: Duration::from_secs(240),
        }
    }
}

/// How the controller's `run` ended, once it has; errors as their message.
type Outcome = Arc<Mutex<Option<Result<(), String>>>>;

/// Everything one test runs; stops it all when dropped.
pub struct Cluster {
    pub api: FakeApiServer,
    pub database_url: String,
    /// The memory limit every pod runs with (`SHORTENER_MAX_MEMORY`).
    pub limit_bytes: u64,
    /// Resident bytes of an idle pod, measured before the cluster started.
    pub idle_bytes: u64,
    pub http: reqwest::Client,
    /// A Kubernetes client on the fake API, for writes a user would make with kubectl.
    pub client: kube::Client,
    pub metrics: Arc<Metrics>,
    prometheus: Arc<Mutex<PromServer>>,
    prometheus_url: String,
    database: Option<Arc<Mutex<PgServer>>>,
    fleet: SharedFleet,
    rig_stop: CancellationToken,
    operator_stop: CancellationToken,
    operator: Option<(JoinHandle<()>, Outcome)>,
    /// The pods' logs; deleted with the cluster.
    _logs: tempfile::TempDir,
    /// Dropped with the cluster, which calls off the time limit.
    _deadline: std::sync::mpsc::Sender<()>,
}

impl Cluster {
    /// Starts everything and waits until every pod is ready and scraped; the operator runs,
    /// but no policy exists yet.
    pub async fn start(options: Options) -> Cluster {
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
        let binary = blocking(|| binary::shortener().to_owned()).await;
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
        let mut env = pod_env(&database_url);
        env.extend(options.env.iter().cloned());

        // A probe pod creates the schema and shows what an idle pod weighs.
        let probe_env = with(&env, "SHORTENER_MAX_MEMORY", "1GiB");
        let probe = PodProcess::spawn(&binary, "probe", "", &probe_env, logs.path())
            .expect("start the probe pod");
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
        let limit_bytes = idle_bytes * 100 / options.idle_percent;
        let env = with(&env, "SHORTENER_MAX_MEMORY", &limit_bytes.to_string());

        let prometheus = blocking(|| PromServer::start(&[]))
            .await
            .expect("a throwaway Prometheus");
        let prometheus_url = prometheus.url();
        let prometheus = Arc::new(Mutex::new(prometheus));
        let api = FakeApiServer::start().await.expect("the fake API server");
        api.apply(deployment(options.pods, limit_bytes));
        api.apply(json!({
            "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": DEPLOYMENT, "namespace": NS},
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": DEPLOYMENT}}},
            "status": {"disruptionsAllowed": 0}
        }));
        let client = kube::Client::try_from(kube::Config::new(
            api.url().parse().expect("the fake API's URL"),
        ))
        .expect("a client for the rig");
        let fleet: SharedFleet = Arc::new(Mutex::new(Fleet::default()));
        let rig_stop = CancellationToken::new();
        tokio::spawn(fleet::record_deletions(
            api.clone(),
            fleet.clone(),
            rig_stop.clone(),
        ));
        let rig = Rig {
            api: api.clone(),
            client: client.clone(),
            fleet: fleet.clone(),
            template: Template {
                binary,
                env,
                limit_bytes,
                log_dir: logs.path().to_owned(),
            },
            http: http.clone(),
            targets: Targets::new(prometheus.clone(), prometheus_url.clone(), http.clone()),
        };
        tokio::spawn(rig.run(rig_stop.clone()));

        let mut cluster = Cluster {
            api,
            database_url,
            limit_bytes,
            idle_bytes,
            http,
            client,
            metrics: Arc::new(Metrics::default()),
            prometheus,
            prometheus_url,
            database,
            fleet,
            rig_stop,
            operator_stop: CancellationToken::new(),
            operator: None,
            _logs: logs,
            _deadline: deadline,
        };
        let pods = options.pods;
        eventually("every pod ready", Duration::from_secs(60), || {
            cluster.ready_pods().len() == pods
        })
        .await;
        cluster.wait_for_targets_up(pods).await;
        cluster.start_operator();
        cluster
    }

    /// Starts the operator's controller in this runtime (again, after [`Self::stop_operator`]).
    pub fn start_operator(&mut self) {
        let config = kube::Config::new(self.api.url().parse().expect("the fake API's URL"));
        let reporter = Reporter {
            controller: "memory-operator".into(),
            instance: Some("e2e".into()),
        };
        let ctx = Context::new(
            config,
            memory_operator::prometheus::Prometheus::new(self.prometheus_url.clone()),
            self.metrics.clone(),
            reporter,
        )
        .expect("a controller context");
        self.operator_stop = CancellationToken::new();
        let stop = self.operator_stop.clone();
        let outcome: Outcome = Arc::default();
        let slot = outcome.clone();
        let task = tokio::spawn(async move {
            let ended = controller::run(ctx, None, stop.cancelled_owned()).await;
            *slot.lock().unwrap_or_else(PoisonError::into_inner) =
                Some(ended.map_err(|e| e.to_string()));
        });
        self.operator = Some((task, outcome));
    }

    /// Stops the controller and says how it ended (`None` if it was not running).
    pub async fn stop_operator(&mut self) -> Option<Result<(), String>> {
        self.operator_stop.cancel();
        let (task, outcome) = self.operator.take()?;
        tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .expect("the controller stops within 30 s of being asked")
            .expect("the controller task does not panic");
        outcome
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// How the controller ended, if it already has by itself.
    pub fn operator_finished(&self) -> Option<Result<(), String>> {
        let (_, outcome) = self.operator.as_ref()?;
        outcome
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.operator_stop.cancel();
        self.rig_stop.cancel();
        let processes = lock(&self.fleet).take_all();
        if std::thread::panicking() {
            for process in &processes {
                eprintln!("--- log of {} ---\n{}", process.name(), process.log());
            }
            eprintln!("--- rig problems: {:?}", self.rig_problems());
            for policy in self
                .api
                .list("shortener.dev/v1alpha1", "MemoryPolicy", Some(NS))
            {
                eprintln!(
                    "--- status of policy {}: {:#}",
                    policy["metadata"]["name"], policy["status"]
                );
            }
            let events: Vec<String> = self
                .api
                .events_of("MemoryPolicy")
                .iter()
                .map(|e| format!("{} {}", e["reason"], e["note"]))
                .collect();
            eprintln!("--- Events about policies: {events:#?}");
        }
        // Dropping a process kills it.
        drop(processes);
    }
}

/// What every pod runs with, apart from its limit.
fn pod_env(database_url: &str) -> Vec<(String, String)> {
    [
        ("DATABASE_URL", database_url),
        ("SHORTENER_ADMIN_TOKEN", ADMIN_TOKEN),
        ("SHORTENER_MONITOR_INTERVAL", "200ms"),
        // The service's own trims would hide a leak from the operator: at most one an hour.
        ("SHORTENER_MIN_TRIM_INTERVAL", "1h"),
        ("SHORTENER_CACHE_BUDGET", "256MiB"),
        // Followed links stay cached (and resident) until the pod is replaced.
        ("SHORTENER_CACHE_IDLE_TTL", "1h"),
        ("SHORTENER_SHUTDOWN_GRACE", "2s"),
        ("SHORTENER_DB_MAX_CONNECTIONS", "4"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// `env` with `key` set to `value`.
fn with(env: &[(String, String)], key: &str, value: &str) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = env.iter().filter(|(k, _)| k != key).cloned().collect();
    env.push((key.to_owned(), value.to_owned()));
    env
}

/// Lets a fresh pod settle as it would under scraping, then reads its resident bytes.
async fn settle(probe: &PodProcess, http: &reqwest::Client) -> u64 {
    for _ in 0..5 {
        let _ = http
            .get(format!("{}/metrics", probe.base_url()))
            .send()
            .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let idle = probe.resident_bytes().expect("the probe pod is running");
    assert!(idle > MIB, "an idle pod of {idle} bytes is implausible");
    idle
}

/// The Deployment `web` as applied at the start; the rig fills in its status.
fn deployment(replicas: usize, limit_bytes: u64) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": DEPLOYMENT, "namespace": NS},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": DEPLOYMENT}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": {"app": DEPLOYMENT}},
                "spec": {"containers": [{"name": "app", "image": "shortener",
                    "resources": {"limits": {"memory": limit_bytes.to_string()}}}]}
            }
        }
    })
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

/// Runs blocking work (process starts, psql, Prometheus' own waits) off the async workers.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(work)
        .await
        .expect("blocking work does not panic")
}
