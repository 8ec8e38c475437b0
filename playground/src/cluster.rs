//! Bringing the playground up, in the order a user would on a cluster: control plane and node,
//! database and monitoring, the CRD from `crds/`, then both charts with `helm install`.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use k8s_openapi::api::core::v1::Pod;
use kube::{
    Api, Client,
    api::ListParams,
    config::{KubeConfigOptions, Kubeconfig},
};
use testkit::{ControlPlane, KubeletConfig, PgServer, ProcessKubelet, PromServer};

use crate::binaries::Binaries;

/// The namespace of the shortener and its policy.
pub const APP_NAMESPACE: &str = "shop";
const OPERATOR_NAMESPACE: &str = "memory-operator";
const MONITORING_NAMESPACE: &str = "monitoring";
/// Pods that have not turned Ready by then point at a problem worth showing.
const READY_TIMEOUT: Duration = Duration::from_secs(180);
/// The policy's clocks, quick enough to watch: evaluated every 5 s, acting on 15 s over a mark,
/// scaling back in after 2 minutes under the low water mark.
const POLICY: &[(&str, &str)] = &[
    ("memoryPolicy.interval", "5s"),
    ("memoryPolicy.thresholds.for", "15s"),
    ("memoryPolicy.thresholds.staleAfter", "30s"),
    ("memoryPolicy.scaling.maxReplicas", "4"),
    ("memoryPolicy.scaling.scaleInStabilization", "2m"),
    ("memoryPolicy.safety.cooldown", "1m"),
];

/// How the shortener runs here: its cache may hold more than the limit and keeps every link,
/// and it trims once an hour at most, so the cache grows like a leak.
const LEAKY: &[(&str, &str)] = &[
    ("SHORTENER_CACHE_BUDGET", "256MiB"),
    ("SHORTENER_CACHE_IDLE_TTL", "1h"),
];

/// Everything the playground started; dropped in reverse order.
pub struct Playground {
    kubelet: ProcessKubelet,
    prometheus: PromServer,
    database: Option<PgServer>,
    plane: ControlPlane,
    started_in: Duration,
}

impl Playground {
    /// Starts everything and returns once the shortener's and the operator's pods are Ready.
    pub async fn start(binaries: &Binaries, replicas: u32) -> anyhow::Result<Playground> {
        let began = Instant::now();
        println!(
            "starting the control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler)"
        );
        let plane = blocking(ControlPlane::start)
            .await
            .context("starting the control plane")?;
        let client = client(plane.kubeconfig()).await?;
        let logs = plane.kubeconfig().with_file_name("pod-logs");
        let kubelet = ProcessKubelet::start(
            client.clone(),
            KubeletConfig {
                node: "playground".into(),
                images: BTreeMap::from([
                    ("shortener".to_owned(), binaries.shortener.clone()),
                    ("memory-operator".to_owned(), binaries.operator.clone()),
                ]),
                restart_backoff: Duration::from_secs(2),
                dir: logs,
                api_server: Some((plane.server(), plane.ca_file().to_owned())),
            },
        )
        .await
        .context("starting the process kubelet")?;
        if let Err(why) = kubelet.memory_cgroups() {
            println!(
                "note: no memory cgroups here ({why}); pods get their limit as SHORTENER_MAX_MEMORY"
            );
        }

        let (database, database_url) = match blocking(PgServer::start).await {
            Ok(server) => {
                let url = server.create_database().context("creating the database")?;
                println!("started PostgreSQL");
                (Some(server), url)
            }
            Err(why) => {
                // The pods share this machine's filesystem, so one SQLite file is one database.
                let file = plane.kubeconfig().with_file_name("shortener.db");
                println!(
                    "no PostgreSQL here ({why}); the pods share the SQLite database {}",
                    file.display()
                );
                (None, format!("sqlite:{}", file.display()))
            }
        };

        println!("starting Prometheus, discovering pods through the apiserver");
        let prometheus = start_prometheus(&plane).context("starting Prometheus")?;

        println!("installing the CRD and both charts with helm");
        let root = repo_root();
        plane.apply_crd(&root.join("crds/memorypolicy.yaml"))?;
        let prometheus_url = format!("prometheusUrl={}", prometheus.url());
        helm(
            &plane,
            &[
                "install",
                "memory-operator",
                &path(&root.join("charts/memory-operator")),
                "--namespace",
                OPERATOR_NAMESPACE,
                "--create-namespace",
                "--set",
                &prometheus_url,
                "--set",
                "listenAddress=$(POD_IP)",
            ],
        )?;
        kubectl(&plane, &["create", "namespace", APP_NAMESPACE])?;
        let literal = format!("--from-literal=database-url={database_url}");
        kubectl(
            &plane,
            &[
                "create",
                "secret",
                "generic",
                "shortener-db",
                "-n",
                APP_NAMESPACE,
                &literal,
            ],
        )?;
        let mut shortener = vec![
            "install".to_owned(),
            "shortener".to_owned(),
            path(&root.join("charts/shortener")),
            "--namespace".to_owned(),
            APP_NAMESPACE.to_owned(),
        ];
        let mut set = |value: String| shortener.extend(["--set".to_owned(), value]);
        set("database.existingSecret=shortener-db".into());
        set("listenAddress=$(POD_IP)".into());
        set(format!("replicaCount={replicas}"));
        set("resources.limits.memory=64Mi".into());
        set("resources.requests.memory=32Mi".into());
        // The shortener's own defences turned down (a cache as large as the limit, never swept,
        // one trim an hour), so that following many long links is a leak the operator has to
        // deal with.
        for (variable, value) in LEAKY {
            set(format!("env.{variable}={value}"));
        }
        set("memory.minTrimInterval=1h".into());
        for (key, value) in POLICY {
            set(format!("{key}={value}"));
        }
        let shortener: Vec<&str> = shortener.iter().map(String::as_str).collect();
        helm(&plane, &shortener)?;

        wait_ready(&client, APP_NAMESPACE, replicas as usize).await?;
        wait_ready(&client, OPERATOR_NAMESPACE, 2).await?;
        Ok(Playground {
            kubelet,
            prometheus,
            database,
            plane,
            started_in: began.elapsed(),
        })
    }

    /// What to do next, with this playground's paths and addresses.
    pub fn guide(&self) -> String {
        let kubeconfig = self.plane.kubeconfig().display();
        let kubectl = self.plane.binary("kubectl");
        let kubectl = kubectl.display();
        format!(
            "\nThe playground is up (in {:.0} s): Kubernetes, the shortener (namespace {APP_NAMESPACE}) and the \
             operator (namespace {OPERATOR_NAMESPACE}).\n\n\
             export KUBECONFIG={kubeconfig}\n\
             alias kubectl={kubectl}\n\
             kubectl get mempol -n {APP_NAMESPACE} -w            # Target, Replicas, Max Usage, State, Last Action\n\
             kubectl describe mempol shortener -n {APP_NAMESPACE}  # conditions and Events\n\
             kubectl get pods -n {APP_NAMESPACE} -o wide          # each pod has an address of its own (127.1.x.y)\n\n\
             Prometheus: {prometheus}  (try shortener_memory_usage_ratio)\n\n\
             A leak in one pod: its redirect cache grows with every distinct long link it serves (the\n\
             playground turns the shortener's own trimming down, so it cannot cure this itself).\n\
             cargo run --release -p playground -- leak        # into the first pod, until it is evicted\n\
             Once it stays over critical (95 % of 64Mi) for 15 s, the operator evicts that pod and no other.\n\n\
             Load on every pod:\n\
             cargo run --release -p playground -- load\n\
             Above the high water mark (80 %) for 15 s the operator scales out, and back in after 2 minutes\n\
             under the low water mark (60 %).\n\n\
             Pod logs: {logs}\n\
             Ctrl-C stops everything.",
            self.started_in.as_secs_f64(),
            prometheus = self.prometheus.url(),
            logs = self
                .kubelet
                .log_path(APP_NAMESPACE, "POD", "shortener", 0)
                .display(),
        )
    }

    /// Stops the pods (SIGTERM, grace), then Prometheus, PostgreSQL and the control plane.
    pub async fn stop(self) {
        let Playground {
            kubelet,
            prometheus,
            database,
            plane,
            ..
        } = self;
        kubelet.stop().await;
        drop(prometheus);
        drop(database);
        drop(plane);
    }
}

/// A Prometheus with a ServiceAccount that may read pods, as a cluster's has.
fn start_prometheus(plane: &ControlPlane) -> anyhow::Result<PromServer> {
    kubectl(plane, &["create", "namespace", MONITORING_NAMESPACE])?;
    let pods = plane.pod_reader(MONITORING_NAMESPACE, "prometheus")?;
    Ok(PromServer::discovering(&pods)?)
}

/// Waits until `count` pods of `namespace` are Ready.
async fn wait_ready(client: &Client, namespace: &str, count: usize) -> anyhow::Result<()> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let list = pods.list(&ListParams::default()).await?;
        let ready = list
            .items
            .iter()
            .filter(|p| {
                p.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            })
            .count();
        if ready >= count {
            return Ok(());
        }
        if Instant::now() > deadline {
            let states: Vec<_> = list
                .items
                .iter()
                .map(|p| serde_json::to_string(&p.status).unwrap_or_default())
                .collect();
            bail!(
                "{ready} of {count} pods Ready in {namespace} after {READY_TIMEOUT:?}: {states:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn client(kubeconfig: &Path) -> anyhow::Result<Client> {
    let kubeconfig = Kubeconfig::read_from(kubeconfig)?;
    let config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(config)?)
}

fn kubectl(plane: &ControlPlane, args: &[&str]) -> anyhow::Result<String> {
    Ok(plane.run_kubectl(args)?)
}

fn helm(plane: &ControlPlane, args: &[&str]) -> anyhow::Result<()> {
    let out = plane.helm().args(args).output().context("running helm")?;
    if !out.status.success() {
        bail!(
            "helm {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Runs blocking start-up work off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> testkit::Result<T> + Send + 'static,
) -> testkit::Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .expect("the start-up task does not panic")
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_owned()
}

fn path(path: &Path) -> String {
    path.display().to_string()
}
