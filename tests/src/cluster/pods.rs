//! The pods and the servers behind them: which pods serve and where, their memory as they and
//! Prometheus see it, load through one pod, how their containers ended, and stopping and
//! starting PostgreSQL and Prometheus.

use std::{ops::Range, sync::PoisonError, time::Duration};

use serde_json::Value;
use testkit::{ContainerExit, PgServer};

use super::{Cluster, blocking, lock_prometheus, record::lock};
use crate::{ADMIN_TOKEN, Deletion, eventually, load, prometheus};

/// The port the chart's container serves on.
const PORT: u16 = 8080;

impl Cluster {
    /// Ready pods as (name, base URL), in the order they were created.
    pub fn ready_pods(&self) -> Vec<(String, String)> {
        lock(&self.record)
            .live_pods()
            .iter()
            .filter(|pod| is_ready(pod))
            .filter_map(|pod| {
                let name = pod["metadata"]["name"].as_str()?;
                let ip = pod["status"]["podIP"].as_str()?;
                Some((name.to_owned(), format!("http://{ip}:{PORT}")))
            })
            .collect()
    }

    /// The names of the ready pods, in the order they were created.
    pub fn ready_pod_names(&self) -> Vec<String> {
        self.ready_pods()
            .into_iter()
            .map(|(name, _)| name)
            .collect()
    }

    /// The names of every pod the Deployment ever had, in the order they were created.
    pub fn pods_ever(&self) -> Vec<String> {
        lock(&self.record).pod_names()
    }

    /// A pod as the cluster last showed it (null if never seen).
    pub fn pod(&self, name: &str) -> Value {
        lock(&self.record)
            .live_pods()
            .into_iter()
            .find(|pod| pod["metadata"]["name"] == name)
            .unwrap_or_default()
    }

    /// The base URL of a ready pod.
    pub fn pod_url(&self, pod: &str) -> Option<String> {
        self.ready_pods()
            .into_iter()
            .find(|(name, _)| name == pod)
            .map(|(_, url)| url)
    }

    /// Every pod seen terminating, in order.
    pub fn deletions(&self) -> Vec<Deletion> {
        lock(&self.record).deletions()
    }

    /// Whether the pods run in memory cgroups of their own (so the kernel's OOM killer is
    /// real), and if not, why.
    pub fn memory_cgroups(&self) -> Result<(), String> {
        self.kubelet.memory_cgroups()
    }

    /// The exits of the shortener's containers that nobody asked for (crashes, OOM kills);
    /// a sound run has none.
    pub fn unexpected_exits(&self) -> Vec<ContainerExit> {
        self.kubelet
            .exits()
            .into_iter()
            .filter(|e| e.namespace == self.namespace && !e.stopped)
            .collect()
    }

    /// The leak of the leak scenarios: follows links `mem0` … through ready pod `pod` for up
    /// to 90 s, until `done` holds, then gives `done` 20 s more to hold; a failure says
    /// `what` was awaited and how far the leak got.
    pub async fn leak_until(
        &self,
        pod: &str,
        links: usize,
        what: &str,
        done: impl Fn() -> bool,
    ) -> load::Followed {
        let url = self
            .pod_url(pod)
            .unwrap_or_else(|| panic!("{pod} is ready"));
        let followed =
            load::follow_links(&self.http, &url, 0..links, Duration::from_secs(90), || {
                !done()
            })
            .await;
        let waiting_for = format!(
            "{what} after {} links followed through {pod} ({} failed)",
            followed.redirected, followed.failed
        );
        eventually(&waiting_for, Duration::from_secs(20), done).await;
        followed
    }

    /// The pod's `/api/v1/memory/stats`.
    pub async fn memory_stats(&self, pod: &str) -> Option<Value> {
        let url = self.pod_url(pod)?;
        let reply = self
            .http
            .get(format!("{url}/api/v1/memory/stats"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .ok()?;
        reply.json().await.ok()
    }

    /// Follows links `mem<i>` for `i` in `links` through `pod` (passing over them again from
    /// the start when they run out) until the pod's own usage ratio reaches `ratio` or
    /// `timeout` passes; returns the ratio reached and the next link it would have followed.
    pub async fn fill(
        &self,
        pod: &str,
        links: Range<usize>,
        ratio: f64,
        timeout: Duration,
    ) -> (f64, usize) {
        /// Links followed between two looks at the pod's memory.
        const CHUNK: usize = 512;
        let url = self
            .pod_url(pod)
            .unwrap_or_else(|| panic!("{pod} is ready"));
        let deadline = tokio::time::Instant::now() + timeout;
        let mut start = links.start;
        loop {
            let stats = self.memory_stats(pod).await;
            let usage = stats
                .as_ref()
                .and_then(|s| s["usage_ratio"].as_f64())
                .unwrap_or(0.0);
            if usage >= ratio || tokio::time::Instant::now() >= deadline {
                return (usage, start);
            }
            let end = (start + CHUNK).min(links.end);
            load::follow_links(&self.http, &url, start..end, timeout, || true).await;
            start = if end >= links.end { links.start } else { end };
        }
    }

    /// The Prometheus base URL.
    pub fn prometheus_url(&self) -> &str {
        &self.prometheus_url
    }

    /// A pod's usage ratio at every scrape of the last `window` (such as `5m`), oldest first.
    pub async fn usage_ratios(&self, pod: &str, window: &str) -> Vec<prometheus::Point> {
        prometheus::usage_ratios(&self.http, &self.prometheus_url, pod, window).await
    }

    /// Waits until Prometheus scrapes `count` pods of the namespace successfully (discovery
    /// hands new pods over in batches, about every 5 s).
    pub(super) async fn wait_for_targets_up(&self, count: usize) {
        let query = format!("sum(up{{namespace=\"{}\"}})", self.namespace);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let scraped = prometheus::instant_value(&self.http, &self.prometheus_url, &query)
                .await
                .unwrap_or(0.0);
            if scraped >= count as f64 {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                let url = format!("{}/api/v1/targets", self.prometheus_url);
                let targets = match self.http.get(url).send().await {
                    Ok(reply) => reply.text().await.unwrap_or_default(),
                    Err(error) => error.to_string(),
                };
                panic!("{scraped} of {count} pods scraped after 60 s; targets: {targets}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Stops the test's own PostgreSQL server (see [`Options::own_database`]), keeping its data.
    pub async fn stop_database(&self) {
        self.on_database(PgServer::stop)
            .await
            .expect("PostgreSQL stops");
    }

    /// Starts the test's own PostgreSQL server again, on the same port and data.
    pub async fn restart_database(&self) {
        self.on_database(PgServer::restart)
            .await
            .expect("PostgreSQL starts again");
    }

    async fn on_database(
        &self,
        work: fn(&mut PgServer) -> testkit::Result<()>,
    ) -> testkit::Result<()> {
        let database = self
            .database
            .clone()
            .expect("a cluster with its own database");
        blocking(move || work(&mut database.lock().unwrap_or_else(PoisonError::into_inner))).await
    }

    /// Stops Prometheus, keeping its data.
    pub async fn stop_prometheus(&self) {
        let prometheus = self.prometheus.clone();
        blocking(move || lock_prometheus(&prometheus).stop())
            .await
            .expect("Prometheus stops");
    }

    /// Starts Prometheus again on the same port and data; it discovers the pods afresh.
    pub async fn restart_prometheus(&self) {
        let prometheus = self.prometheus.clone();
        blocking(move || lock_prometheus(&prometheus).restart())
            .await
            .expect("Prometheus starts again");
    }

    /// What a failed test needs to be understood: the pods' logs, how their containers
    /// ended, the policies' status and the operator's Events and log.
    pub(super) fn report(&self) {
        let record = lock(&self.record);
        for pod in record.pod_names() {
            let path = self.kubelet.log_path(&self.namespace, &pod, "shortener", 0);
            eprintln!("--- log of {pod} ---\n{}", tail(&path));
        }
        for exit in self.kubelet.exits() {
            eprintln!("--- container exit: {exit:?}");
        }
        for version in record.events() {
            eprintln!(
                "--- Event {} {}: {}",
                version["regarding"]["kind"], version["reason"], version["note"]
            );
        }
        for name in record.policy_names() {
            eprintln!(
                "--- status of policy {name}: {:#}",
                record.policy(&name)["status"]
            );
        }
        drop(record);
        if let Ok(entries) = std::fs::read_dir(self.logs.path()) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with(super::OPERATOR_NAMESPACE) {
                    eprintln!("--- operator log {name} ---\n{}", tail(&entry.path()));
                }
            }
        }
    }
}

/// The pod's `Ready` condition is `True`.
fn is_ready(pod: &Value) -> bool {
    pod["status"]["conditions"].as_array().is_some_and(|c| {
        c.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

/// The last 4 kB of a log file.
fn tail(path: &std::path::Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let start = text.len().saturating_sub(4096);
    let start = (start..text.len())
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(text.len());
    text[start..].to_owned()
}
