//! `memory-operator backtest` against a real Prometheus that has scraped a
//! pod going from comfortable to critical: the library's replay, then the
//! binary end to end.

use std::{
    io::{Read, Write},
    net::{Ipv4Addr, TcpListener, TcpStream},
    path::Path,
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::Duration,
};

use jiff::Timestamp;
use memory_engine::Action;
use memory_operator::{
    backtest::{Window, fetch, range_query, read_policy, replay, timeline},
    prometheus::Prometheus,
};
use memory_policy_api::reading::engine_policy;
use testkit::{PromServer, Target};

const LIMIT: u64 = 100 << 20;
/// Long enough for several 1 s scrapes before the usage jumps.
const COMFORTABLE_FOR: Duration = Duration::from_secs(3);
/// Longer than the policy's 2 s `for`, with scrapes to spare.
const CRITICAL_FOR: Duration = Duration::from_secs(6);

/// A policy on Deployment `web` in `shop` that acts after 2 s.
const POLICY: &str = "apiVersion: shortener.dev/v1alpha1
kind: MemoryPolicy
metadata: {name: web-memory, namespace: shop}
spec:
  targetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  interval: 1s
  thresholds: {for: 2s}
";

/// Serves `shortener_memory_resident_bytes` (as set) and `shortener_memory_limit_bytes`
/// from a thread until dropped.
struct Exporter {
    address: String,
    resident: Arc<AtomicU64>,
    stopped: Arc<AtomicBool>,
}

impl Exporter {
    fn start(resident: u64) -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let resident = Arc::new(AtomicU64::new(resident));
        let stopped = Arc::new(AtomicBool::new(false));
        let (value, stop) = (resident.clone(), stopped.clone());
        thread::spawn(move || {
            for mut stream in listener.incoming().flatten() {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let _ = stream.read(&mut [0u8; 4096]);
                let body = format!(
                    "shortener_memory_resident_bytes {}\nshortener_memory_limit_bytes {LIMIT}\n",
                    value.load(Ordering::Relaxed)
                );
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Exporter {
            address,
            resident,
            stopped,
        }
    }

    fn set_percent(&self, percent: u64) {
        self.resident
            .store(LIMIT * percent / 100, Ordering::Relaxed);
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.stopped.store(true, Ordering::Relaxed);
        // Wakes the accept loop so that it sees the flag.
        let _ = TcpStream::connect(&self.address);
    }
}

/// Prometheus has scraped pod `web-a` at 30% for a while, then at 97%;
/// returns when the usage jumped.
fn a_critical_spell() -> (PromServer, Exporter, Timestamp) {
    let exporter = Exporter::start(LIMIT * 30 / 100);
    let target = Target::new(
        exporter.address.clone(),
        [("pod", "web-a"), ("namespace", "shop")],
    );
    let prometheus = PromServer::start(&[target]).expect("a throwaway Prometheus");
    prometheus
        .wait_for_targets_up(1, Duration::from_secs(30))
        .expect("the exporter scraped");
    thread::sleep(COMFORTABLE_FOR);
    let jumped = Timestamp::now();
    exporter.set_percent(97);
    thread::sleep(CRITICAL_FOR);
    (prometheus, exporter, jumped)
}

#[test]
fn replaying_the_last_seconds_evicts_the_pod_once_it_was_critical_for_the_sustain() {
    let (prometheus, _exporter, jumped) = a_critical_spell();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("policy.yaml");
    std::fs::write(&file, POLICY).unwrap();
    let spec = read_policy(&file).unwrap().spec;

    let end = Timestamp::now();
    let window = Window::new(end - Duration::from_secs(10), end, Duration::from_secs(1)).unwrap();
    let query = range_query(&spec, "shop").unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let data = runtime
        .block_on(fetch(
            &Prometheus::at(&prometheus.url()).unwrap(),
            "default",
            &query,
            &window,
        ))
        .expect("an answer");
    let steps = replay(
        &engine_policy(&spec),
        &timeline(&query, &data, &window.times()),
    );

    let comfortable = steps
        .iter()
        .filter(|s| s.at < jumped && s.usage.get("web-a") == Some(&0.3));
    assert!(comfortable.count() >= 2, "{steps:#?}");
    let actions: Vec<_> = steps
        .iter()
        .filter_map(|s| Some((s.at, s.action.clone()?)))
        .collect();
    let [(at, action)] = actions.as_slice() else {
        panic!("expected one action, got {actions:?}");
    };
    assert_eq!(
        *action,
        Action::Evict {
            pods: vec!["web-a".into()]
        }
    );
    assert!(
        *at >= jumped + Duration::from_secs(2),
        "evicted at {at}, jumped at {jumped}"
    );
    let last = steps.last().unwrap();
    assert!(last.held_back.is_some() || last.critical_since.contains_key("web-a"));
}

#[test]
fn the_binary_prints_the_timeline_and_writes_the_chart() {
    let (prometheus, _exporter, _) = a_critical_spell();
    let dir = tempfile::tempdir().unwrap();
    let (file, chart) = (dir.path().join("policy.yaml"), dir.path().join("chart.svg"));
    std::fs::write(&file, POLICY).unwrap();

    let output = backtest(&file, &prometheus.url(), &chart);

    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.starts_with("Backtest of MemoryPolicy shop/web-memory (Deployment web)\n"),
        "{stdout}"
    );
    assert!(stdout.contains("pods      1 seen: web-a\n"), "{stdout}");
    assert!(
        stdout.contains("  NO DATA   "),
        "before the first scrape: {stdout}"
    );
    assert!(stdout.contains("  CRITICAL  web-a at 97.0%\n"), "{stdout}");
    assert!(
        stdout.contains("  EVICT     web-a (critical 97.0% for 2s)\n"),
        "{stdout}"
    );
    assert!(stdout.contains("actions   evict 1, "), "{stdout}");
    let svg = std::fs::read_to_string(&chart).expect("the chart");
    assert!(svg.starts_with("<svg") && svg.contains("web-a"), "{svg}");
    assert_eq!(svg.matches("<polyline").count(), 1);
    assert_eq!(svg.matches("class=\"action\"").count(), 1);
}

#[test]
fn the_binary_refuses_a_file_without_exactly_one_policy() {
    let dir = tempfile::tempdir().unwrap();
    let (file, chart) = (
        dir.path().join("policies.yaml"),
        dir.path().join("chart.svg"),
    );
    std::fs::write(&file, format!("{POLICY}---\n{POLICY}")).unwrap();

    let output = backtest(&file, "http://127.0.0.1:9", &chart);

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("expected exactly one MemoryPolicy document, found 2"),
        "{stderr}"
    );
    assert!(!chart.exists());
}

/// Runs `memory-operator backtest` over the last 30 s at a 1 s step.
fn backtest(policy: &Path, prometheus: &str, chart: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_memory-operator"))
        .args(["backtest", "--policy"])
        .arg(policy)
        .args(["--prometheus", prometheus])
        .args(["--start", "-30s", "--end", "now", "--step", "1s", "--svg"])
        .arg(chart)
        .output()
        .expect("the binary runs")
}
