//! Operator benchmark: engine decisions per second, Prometheus queries per
//! evaluation for 1, 10 and 100 pods, and the `memory-operator run` process's
//! RSS and CPU while it manages 500 policies against the fake API server.
//!
//! Run through `bash bench/operator.sh`, which builds the release binary first.

use std::{
    path::PathBuf,
    process::{Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use jiff::Timestamp;
use kube::runtime::events::Reporter;
use memory_operator::{
    controller::{self, Context},
    decide::{self, CriticalAction, HighAction, Memory, Policy, Sample, Workload},
    metrics::Metrics,
    prometheus::Prometheus,
};
use serde_json::json;
use testkit::{FakeApiServer, ScriptedPrometheus};
use tokio_util::sync::CancellationToken;

const NS: &str = "bench";
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
    for pods in [1, 10, 100] {
        let (queries, evaluations) = queries_per_evaluation(pods).await;
        println!(
            "| Prometheus queries per evaluation, {pods} pods | {:.2} ({queries} queries / {evaluations} evaluations) |",
            queries as f64 / evaluations as f64
        );
    }
    let (rss, peak, cpu, evaluated) = five_hundred_policies(&binary).await;
    println!("| 500 policies: policies evaluated within 60 s | {evaluated} |");
    println!("| 500 policies: operator RSS, mean / peak | {rss:.1} MiB / {peak:.1} MiB |");
    println!("| 500 policies: operator CPU, mean over 60 s | {cpu:.1} % of one core |");
}

fn policy() -> Policy {
    Policy {
        low: 0.6,
        high: 0.8,
        critical: 0.95,
        sustain: Duration::from_secs(60),
        stale_after: Duration::from_secs(45),
        on_high: HighAction::ScaleOut,
        on_critical: CriticalAction::RestartPod,
        min_replicas: 1,
        max_replicas: 10,
        step: 1,
        scale_in_stabilization: Duration::from_secs(600),
        cooldown: Duration::from_secs(300),
        max_restarts_per_hour: 3,
        max_unavailable: 1,
        dry_run: false,
        suspend: false,
    }
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
            })
            .collect();
        let decision = decide::decide(&policy, &samples, &workload, &memory, now);
        memory = decision.memory;
        count += 1;
    }
    count as f64 / began.elapsed().as_secs_f64()
}

fn deployment(api: &FakeApiServer, name: &str, pods: usize) {
    api.apply(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"replicas": pods, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "app"}]}}},
        "status": {"observedGeneration": 1, "replicas": pods, "updatedReplicas": pods, "availableReplicas": pods}
    }));
}

fn pod(api: &FakeApiServer, prometheus: &ScriptedPrometheus, app: &str, name: &str) {
    api.apply(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "labels": {"app": app}},
        "spec": {"containers": [{"name": "app"}]},
        "status": {"phase": "Running"}
    }));
    prometheus.set(NS, name, LIMIT * 0.3, LIMIT);
}

fn memory_policy(api: &FakeApiServer, name: &str, target: &str, interval: &str) {
    api.apply(json!({
        "apiVersion": "shortener.dev/v1alpha1", "kind": "MemoryPolicy",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target}, "interval": interval}
    }));
}

/// Runs the controller in-process on one policy over `pods` pods for five evaluations.
async fn queries_per_evaluation(pods: usize) -> (u64, u64) {
    let api = FakeApiServer::start().await.unwrap();
    let prometheus = ScriptedPrometheus::start().await.unwrap();
    deployment(&api, "web", pods);
    for i in 0..pods {
        pod(&api, &prometheus, "web", &format!("web-{i}"));
    }
    memory_policy(&api, "web", "web", "1s");
    let metrics = Arc::new(Metrics::default());
    let config = kube::Config::new(api.url().parse().unwrap());
    let reporter = Reporter {
        controller: "bench".into(),
        instance: None,
    };
    let ctx = Context::new(
        config,
        Prometheus::new(prometheus.url()),
        metrics.clone(),
        reporter,
    )
    .unwrap();
    let stop = CancellationToken::new();
    tokio::spawn(controller::run(ctx, None, stop.clone().cancelled_owned()));
    tokio::time::sleep(Duration::from_millis(5_500)).await;
    stop.cancel();
    let evaluations = metrics
        .encode()
        .lines()
        .filter(|l| l.starts_with("memory_operator_decisions_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    (prometheus.queries(), evaluations)
}

/// Starts the real binary against 500 policies (2 pods each, interval 15 s) and
/// samples its RSS and CPU for 60 s once every policy has been evaluated.
async fn five_hundred_policies(binary: &PathBuf) -> (f64, f64, f64, usize) {
    let api = FakeApiServer::start().await.unwrap();
    let prometheus = ScriptedPrometheus::start().await.unwrap();
    for i in 0..500 {
        let app = format!("app-{i}");
        deployment(&api, &app, 2);
        pod(&api, &prometheus, &app, &format!("{app}-a"));
        pod(&api, &prometheus, &app, &format!("{app}-b"));
        memory_policy(&api, &app, &app, "15s");
    }
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: fake, cluster: {{server: '{}'}}}}]\nusers: [{{name: fake, user: {{}}}}]\ncontexts: [{{name: fake, context: {{cluster: fake, user: fake}}}}]\ncurrent-context: fake\n",
            api.url()
        ),
    )
    .unwrap();
    let mut child = Command::new(binary)
        .args([
            "run",
            "--listen",
            "127.0.0.1:0",
            "--prometheus-url",
            &prometheus.url(),
        ])
        .env("KUBECONFIG", &kubeconfig)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("start memory-operator");
    let pid = child.id();
    let evaluated = || {
        api.list("shortener.dev/v1alpha1", "MemoryPolicy", Some(NS))
            .iter()
            .filter(|p| p["status"]["lastEvaluationTime"].is_string())
            .count()
    };
    let warm = Instant::now();
    while evaluated() < 500 && warm.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (mut rss_sum, mut peak, mut samples) = (0.0, 0.0f64, 0.0);
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
    let count = evaluated();
    let _ = child.kill();
    let _ = child.wait();
    (rss_sum / samples, peak, cpu, count)
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
