//! The pods and the servers behind them: the processes, their memory as they and Prometheus
//! see it, load through one pod, and stopping and starting PostgreSQL and Prometheus.

use std::{sync::PoisonError, time::Duration};

use serde_json::Value;
use testkit::PgServer;

use super::{Cluster, blocking, lock_prometheus};
use crate::{
    ADMIN_TOKEN, eventually,
    fleet::{Deletion, lock},
    load, prometheus,
};

impl Cluster {
    /// Ready pods as (name, base URL), by name.
    pub fn ready_pods(&self) -> Vec<(String, String)> {
        lock(&self.fleet).ready()
    }

    /// The leak of scenarios 1 and 6: follows links `mem0` … through ready pod `pod` for up
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

    /// The base URL of a ready pod.
    pub fn pod_url(&self, pod: &str) -> Option<String> {
        self.ready_pods()
            .into_iter()
            .find(|(name, _)| name == pod)
            .map(|(_, url)| url)
    }

    /// A running pod's resident bytes, from `/proc`.
    pub fn resident_bytes(&self, pod: &str) -> Option<u64> {
        lock(&self.fleet).resident_bytes(pod)
    }

    /// Every pod deletion the rig saw.
    pub fn deletions(&self) -> Vec<Deletion> {
        lock(&self.fleet).deletions()
    }

    /// Anything that went wrong inside the rig; a sound run has none.
    pub fn rig_problems(&self) -> Vec<String> {
        lock(&self.fleet).problems()
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

    /// Follows links through `pod`, passes over `mem0` … `mem<links-1>`, until the pod's own
    /// usage ratio reaches `ratio` or `timeout` passes; returns the ratio reached.
    pub async fn fill(&self, pod: &str, links: usize, ratio: f64, timeout: Duration) -> f64 {
        /// Links followed between two looks at the pod's memory.
        const CHUNK: usize = 512;
        let url = self
            .pod_url(pod)
            .unwrap_or_else(|| panic!("{pod} is ready"));
        let deadline = tokio::time::Instant::now() + timeout;
        let mut start = 0;
        loop {
            let stats = self.memory_stats(pod).await;
            let usage = stats
                .as_ref()
                .and_then(|s| s["usage_ratio"].as_f64())
                .unwrap_or(0.0);
            if usage >= ratio || tokio::time::Instant::now() >= deadline {
                return usage;
            }
            let end = (start + CHUNK).min(links);
            load::follow_links(&self.http, &url, start..end, timeout, || true).await;
            start = if end >= links { 0 } else { end };
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

    /// Waits until Prometheus scrapes `count` targets successfully (it picks up new targets
    /// within about 5 s of a reload).
    pub async fn wait_for_targets_up(&self, count: usize) {
        let up = format!("{}/api/v1/query?query=sum(up)", self.prometheus_url);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let answer: Option<Value> = match self.http.get(&up).send().await {
                Ok(reply) => reply.json().await.ok(),
                Err(_) => None,
            };
            let scraped = answer
                .as_ref()
                .and_then(|a| {
                    a["data"]["result"][0]["value"][1]
                        .as_str()?
                        .parse::<f64>()
                        .ok()
                })
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

    /// Starts Prometheus again on the same port and data, with the current targets.
    pub async fn restart_prometheus(&self) {
        let prometheus = self.prometheus.clone();
        blocking(move || lock_prometheus(&prometheus).restart())
            .await
            .expect("Prometheus starts again");
    }
}
