//! Operator benchmark: engine decisions per second, Prometheus queries per
//! evaluation for 1, 10 and 100 pods, and the `memory-operator run` process's
//! RSS, CPU and evaluation time per policy while it manages 500 policies
//! (1,000 Running pods) on testkit's real control plane, with a scripted
//! Prometheus that answers each query with the series its selector selects.
//!
//! Run through `bash bench/operator.sh`, which builds the release binary first. With
//! `BENCH_HOLD=1` the fleet stays up after the measurement, until Ctrl-C, for profiling.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use jiff::Timestamp;
use k8s_openapi::api::{apps::v1::Deployment, core::v1::Pod};
use kube::{
    Api, Client, ResourceExt,
    api::{ListParams, Patch, PatchParams},
    config::Kubeconfig,
    runtime::events::Reporter,
};
use memory_engine::{Memory, Policy, Sample, Workload};
use memory_operator::{context::Context, controller, metrics::Metrics, prometheus::Prometheus};
use memory_policy_api::{
    crd::{MemoryPolicy, MemoryPolicySpec},
    reading,
};
use serde_json::json;
use testkit::{ControlPlane, KubeletConfig, ProcessKubelet, ScriptedPrometheus};
use tokio_util::sync::CancellationToken;

const LIMIT: f64 = 64.0 * 1024.0 * 1024.0;

#[tokio::main]
async fn main() {
    let binary = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .expect("usage: bench <path to the memory-operator binary>");
    println!("| measurement | value |\n|---|---|");
    println!(
        "| engine decisions per second (10 pods) | {:.0} |",
        engine_rate()
    );
    let plane = Plane::start().await;
    for pods in [1, 10, 100] {
        let (queries, evaluations) = queries_per_evaluation(&plane, pods).await;
        println!(
            "| Prometheus queries per evaluation, {pods} pods | {:.2} ({queries} queries / {evaluations} evaluations) |",
            queries as f64 / evaluations as f64
        );
    }
    let fleet = five_hundred_policies(&plane, &binary).await;
    let (rss, peak, cpu) = (fleet.rss, fleet.peak, fleet.cpu);
    println!(
        "| 500 policies: policies evaluated within 60 s | {} |",
        fleet.evaluated
    );
    println!(
        "| 500 policies: evaluation time per policy, mean over 60 s | {:.2} ms ({} evaluations) |",
        fleet.evaluation_seconds / fleet.evaluations * 1000.0,
        fleet.evaluations
    );
    println!("| 500 policies: operator RSS, mean / peak | {rss:.1} MiB / {peak:.1} MiB |");
    println!("| 500 policies: operator CPU, mean over 60 s | {cpu:.1} % of one core |");
}

/// The engine's reading of a policy at every default.
fn policy() -> Policy {
    reading::engine_policy(&MemoryPolicySpec::for_deployment("web"))
}

/// Decisions per second over two seconds of a 10-pod fleet drifting upwards.
fn engine_rate() -> f64 {
    let policy = policy();
    let pods: Vec<String> = (0..10).map(|i| format!("web-{i}")).collect();
    let workload = Workload {
        replicas: 10,
        available_replicas: 10,
        rollout_in_progress: false,
        paused: false,
        pods: pods.clone(),
        unready: Vec::new(),
        restarted: Vec::new(),
        template: None,
        limits: Vec::new(),
    };
    let start = Timestamp::now();
    let mut memory = Memory::default();
    let mut count = 0u64;
    let began = Instant::now();
    while began.elapsed() < Duration::from_secs(2) {
        let now = start + jiff::SignedDuration::from_secs(count as i64 * 15);
        let samples: Vec<Sample> = pods
            .iter()
            .enumerate()
            .map(|(i, pod)| Sample {
                pod: pod.clone(),
                usage_ratio: 0.5 + ((count + i as u64) % 50) as f64 / 100.0,
                bytes: 1,
                limit_bytes: 2,
                at: now,
                requests: None,
            })
            .collect();
        let decision = memory_engine::decide(&policy, &samples, &workload, &memory, now);
        memory = decision.memory;
        count += 1;
    }
    count as f64 / began.elapsed().as_secs_f64()
}

/// The real control plane with the CRD, an admin client, and a process kubelet whose pods
/// run `sleep` (the operator only needs them Running: memory comes from the scripted
/// Prometheus).
struct Plane {
    plane: ControlPlane,
    client: Client,
    _kubelet: ProcessKubelet,
    _pods: tempfile::TempDir,
}

impl Plane {
    async fn start() -> Plane {
        let plane = tokio::task::spawn_blocking(|| {
            let plane = ControlPlane::start().expect("the control plane starts");
            let crd = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds/memorypolicy.yaml");
            plane.apply_crd(&crd).expect("the CRD is applied");
            plane
        })
        .await
        .unwrap();
        let kubeconfig = Kubeconfig::read_from(plane.kubeconfig()).unwrap();
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .unwrap();
        let client = Client::try_from(config).unwrap();
        let pods = tempfile::tempdir().unwrap();
        let kubelet = ProcessKubelet::start(
            client.clone(),
            KubeletConfig {
                node: "bench".into(),
                images: BTreeMap::from([("pause".to_owned(), PathBuf::from("/bin/sleep"))]),
                restart_backoff: Duration::from_secs(1),
                dir: pods.path().to_owned(),
                api_server: None,
            },
        )
        .await
        .unwrap();
        Plane {
            plane,
            client,
            _kubelet: kubelet,
            _pods: pods,
        }
    }

    /// A namespace with `deployments` Deployments of `pods` Running pods each, every pod at 30 %
    /// of its limit in `prometheus`, and a policy per Deployment evaluated every `interval`;
    /// returns once every pod runs.
    async fn fleet(
        &self,
        prometheus: &ScriptedPrometheus,
        deployments: usize,
        pods: usize,
        interval: &str,
    ) -> String {
        let namespace = self.plane.create_namespace("bench").unwrap();
        for i in 0..deployments {
            let app = format!("app-{i}");
            self.apply::<Deployment>(&namespace, json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": app},
                "spec": {"replicas": pods, "selector": {"matchLabels": {"app": app}},
                    "template": {"metadata": {"labels": {"app": app}},
                        "spec": {"containers": [{"name": "app", "image": "pause", "args": ["infinity"],
                            "resources": {"limits": {"memory": "64Mi"}}}]}}}
            }))
            .await;
            self.apply::<MemoryPolicy>(&namespace, json!({
                "apiVersion": "shortener.dev/v1alpha1", "kind": "MemoryPolicy",
                "metadata": {"name": app},
                "spec": {"targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": app},
                    "interval": interval}
            }))
            .await;
        }
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        let began = Instant::now();
        loop {
            let running: Vec<String> = api
                .list(&ListParams::default())
                .await
                .unwrap()
                .items
                .iter()
                .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
                .map(|p| p.name_any())
                .collect();
            if running.len() == deployments * pods {
                for pod in &running {
                    prometheus.set(&namespace, pod, LIMIT * 0.3, LIMIT);
                }
                eprintln!(
                    "{} pods running in {:.0} s",
                    running.len(),
                    began.elapsed().as_secs_f64()
                );
                return namespace;
            }
            assert!(
                began.elapsed() < Duration::from_secs(600),
                "{} of {} pods running after 10 minutes",
                running.len(),
                deployments * pods
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    async fn apply<K>(&self, namespace: &str, object: serde_json::Value)
    where
        K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        let name = object["metadata"]["name"].as_str().unwrap().to_owned();
        let api: Api<K> = Api::namespaced(self.client.clone(), namespace);
        api.patch(&name, &PatchParams::apply("bench"), &Patch::Apply(object))
            .await
            .unwrap_or_else(|e| panic!("applying {name}: {e}"));
    }

    /// Policies of `namespace` whose status says they were evaluated.
    async fn evaluated(&self, namespace: &str) -> usize {
        let api: Api<MemoryPolicy> = Api::namespaced(self.client.clone(), namespace);
        api.list(&ListParams::default())
            .await
            .map(|list| {
                list.items
                    .iter()
                    .filter(|p| {
                        p.status
                            .as_ref()
                            .is_some_and(|s| s.last_evaluation_time.is_some())
                    })
                    .count()
            })
            .unwrap_or(0)
    }
}

/// Runs the controller in-process on one policy over `pods` pods for five evaluations.
async fn queries_per_evaluation(plane: &Plane, pods: usize) -> (u64, u64) {
    let prometheus = ScriptedPrometheus::start().await.unwrap();
    let namespace = plane.fleet(&prometheus, 1, pods, "1s").await;
    let metrics = Arc::new(Metrics::default());
    let kubeconfig = Kubeconfig::read_from(plane.plane.kubeconfig()).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    let reporter = Reporter {
        controller: "bench".into(),
        instance: None,
    };
    let ctx = Context::new(
        config,
        Prometheus::at(&prometheus.url()).unwrap(),
        metrics.clone(),
        reporter,
    )
    .unwrap();
    let stop = CancellationToken::new();
    let run = {
        let stop = stop.clone();
        async move { controller::run(ctx, Some(&namespace), stop.cancelled_owned()).await }
    };
    let task = tokio::spawn(run);
    tokio::time::sleep(Duration::from_millis(5_500)).await;
    stop.cancel();
    let _ = task.await;
    let evaluations = metrics
        .encode()
        .lines()
        .filter(|l| l.starts_with("memory_operator_decisions_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    (prometheus.queries(), evaluations)
}

/// What the 500-policy run measured.
struct Fleet {
    /// RSS mean and peak, MiB.
    rss: f64,
    peak: f64,
    /// Percent of one core.
    cpu: f64,
    /// Policies whose status says they were evaluated.
    evaluated: usize,
    /// Evaluations in the 60 s, and the seconds they took, from the operator's own metrics.
    evaluations: f64,
    evaluation_seconds: f64,
}

/// Starts the real binary against 500 policies (2 pods each, interval 15 s) and
/// samples its RSS and CPU for 60 s once every policy has been evaluated.
async fn five_hundred_policies(plane: &Plane, binary: &PathBuf) -> Fleet {
    let prometheus = ScriptedPrometheus::start().await.unwrap();
    let namespace = plane.fleet(&prometheus, 500, 2, "15s").await;
    let listen = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap();
    let mut child = Command::new(binary)
        .args([
            "run",
            "--listen",
            &listen.to_string(),
            "--prometheus-url",
            &prometheus.url(),
            "--namespace",
            &namespace,
        ])
        .env("KUBECONFIG", plane.plane.kubeconfig())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("start memory-operator");
    let pid = child.id();
    let warm = Instant::now();
    while plane.evaluated(&namespace).await < 500 && warm.elapsed() < Duration::from_secs(120) {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!(
        "500 policies evaluated once in {:.0} s",
        warm.elapsed().as_secs_f64()
    );
    let (mut rss_sum, mut peak, mut samples) = (0.0, 0.0f64, 0.0);
    let reconciles_start = reconciles(listen).await;
    let cpu_start = cpu_seconds(pid);
    let began = Instant::now();
    while began.elapsed() < Duration::from_secs(60) {
        let rss = rss_mib(pid);
        rss_sum += rss;
        peak = peak.max(rss);
        samples += 1.0;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let cpu = (cpu_seconds(pid) - cpu_start) / began.elapsed().as_secs_f64() * 100.0;
    let reconciles_end = reconciles(listen).await;
    let count = plane.evaluated(&namespace).await;
    let _ = child.kill();
    let _ = child.wait();
    if std::env::var_os("BENCH_HOLD").is_some() {
        // Leaves the fleet up for profiling other builds against the same objects.
        eprintln!(
            "holding until Ctrl-C; run the operator with:\n  KUBECONFIG={} {} run --listen 127.0.0.1:0 --prometheus-url {} --namespace {namespace}",
            plane.plane.kubeconfig().display(),
            binary.display(),
            prometheus.url()
        );
        let _ = tokio::signal::ctrl_c().await;
    }
    Fleet {
        rss: rss_sum / samples,
        peak,
        cpu,
        evaluated: count,
        evaluations: reconciles_end.0 - reconciles_start.0,
        evaluation_seconds: reconciles_end.1 - reconciles_start.1,
    }
}

/// The operator's reconcile count and the seconds they took, from its `/metrics`.
async fn reconciles(listen: std::net::SocketAddr) -> (f64, f64) {
    let text = reqwest::get(format!("http://{listen}/metrics"))
        .await
        .and_then(|r| r.error_for_status())
        .expect("the operator's metrics")
        .text()
        .await
        .unwrap();
    let value = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("{name} in the operator's metrics"))
    };
    (
        value("memory_operator_reconcile_duration_seconds_count"),
        value("memory_operator_reconcile_duration_seconds_sum"),
    )
}

fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

/// utime + stime in seconds; Linux reports them in USER_HZ (100) ticks.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}
