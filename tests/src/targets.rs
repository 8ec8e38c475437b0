//! Keeps Prometheus scraping exactly the ready pods.
//!
//! A reload can fail on a loaded machine, and even one that took shows only after discovery's
//! next batch (about every 5 s). So each reload is checked against `/api/v1/targets` once that
//! has had time to happen, and made again until it took: a failed one at the next publish, one
//! that does not show with a config that differs (one target listed twice, scraped once), so
//! Prometheus cannot take it for the configuration it already has.

use std::{
    collections::BTreeSet,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use serde_json::Value;
use testkit::{PromServer, Target};
use tracing::{debug, warn};

/// Longer than discovery's 5 s batching, so a reload that took shows by then.
const CONFIRM_AFTER: Duration = Duration::from_secs(7);

/// What Prometheus was asked to scrape, and whether it does.
pub(crate) struct Targets {
    prometheus: Arc<Mutex<PromServer>>,
    url: String,
    http: reqwest::Client,
    /// The addresses of the last reload that Prometheus accepted.
    applied: Option<BTreeSet<String>>,
    reloaded_at: Instant,
    confirmed: bool,
    /// The last check found Prometheus scraping something else; one more and it reloads.
    mismatched: bool,
    reloads: u32,
}

impl Targets {
    pub(crate) fn new(
        prometheus: Arc<Mutex<PromServer>>,
        url: String,
        http: reqwest::Client,
    ) -> Self {
        Targets {
            prometheus,
            url,
            http,
            applied: None,
            reloaded_at: Instant::now(),
            confirmed: false,
            mismatched: false,
            reloads: 0,
        }
    }

    /// Moves Prometheus one step towards scraping `wanted`: a reload if they changed, a check
    /// (and another reload) if an earlier reload has not shown yet.
    pub(crate) async fn converge(&mut self, wanted: &[Target]) {
        let addresses: BTreeSet<String> = wanted.iter().map(|t| t.address.clone()).collect();
        if self.applied.as_ref() != Some(&addresses) {
            self.reload(wanted, addresses).await;
            return;
        }
        if self.confirmed || self.reloaded_at.elapsed() < CONFIRM_AFTER {
            return;
        }
        match self.active().await {
            // Stopped: it reads the file when it starts again.
            None => {}
            Some(active) if active == addresses => self.confirmed = true,
            // Once more to be sure: a Prometheus that just started has not synced yet.
            Some(_) if !self.mismatched => {
                self.mismatched = true;
                self.reloaded_at = Instant::now();
            }
            Some(active) => {
                warn!(?active, wanted = ?addresses, "Prometheus does not scrape the targets it was given; reloading again");
                self.reload(wanted, addresses).await;
            }
        }
    }

    async fn reload(&mut self, wanted: &[Target], addresses: BTreeSet<String>) {
        let mut config = wanted.to_vec();
        if self.reloads % 2 == 1
            && let Some(first) = wanted.first()
        {
            config.push(first.clone());
        }
        let prometheus = self.prometheus.clone();
        let reloaded = tokio::task::spawn_blocking(move || {
            prometheus
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .set_targets(&config)
        })
        .await;
        match reloaded {
            Ok(Ok(())) => {
                self.reloads += 1;
                self.applied = Some(addresses);
                self.reloaded_at = Instant::now();
                self.confirmed = false;
                self.mismatched = false;
            }
            // Tried again at the next publish.
            Ok(Err(error)) => debug!(%error, "Prometheus did not reload its targets"),
            // Cancelled: the runtime is shutting down with the test.
            Err(error) if error.is_cancelled() => {}
            Err(error) => warn!(%error, "the target reload panicked"),
        }
    }

    /// The addresses Prometheus scrapes now; `None` if it does not answer.
    async fn active(&self) -> Option<BTreeSet<String>> {
        let reply = self
            .http
            .get(format!("{}/api/v1/targets?state=active", self.url))
            .send()
            .await
            .ok()?;
        let body: Value = reply.json().await.ok()?;
        let targets = body["data"]["activeTargets"].as_array()?;
        Some(
            targets
                .iter()
                .filter_map(|t| t["discoveredLabels"]["__address__"].as_str())
                .map(str::to_owned)
                .collect(),
        )
    }
}
