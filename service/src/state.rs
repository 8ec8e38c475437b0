//! The state every handler shares, built once from the configuration.

use std::{sync::Arc, time::Duration};

use axum::http::StatusCode;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::{
    Config, Result,
    cache::{self, RedirectCache},
    clicks::{self, ClickBuffer},
    memory::{ManagerSettings, MemoryLimit, MemoryManager, allocator},
    metrics::Metrics,
    store::Store,
};

/// Settings the handlers read.
#[derive(Clone, Debug)]
pub struct Settings {
    pub base_url: Option<String>,
    pub admin_token: Option<String>,
    pub redirect_status: StatusCode,
    /// Seconds a shed client should wait: one memory sample away.
    pub retry_after_secs: u64,
    pub pprof: bool,
}

/// Shared by all handlers and background tasks.
pub struct AppState {
    pub store: Store,
    pub cache: RedirectCache,
    /// Clicks of links no longer cached; a cached link counts its own.
    pub clicks: Arc<ClickBuffer>,
    pub memory: Arc<MemoryManager>,
    pub metrics: Arc<Metrics>,
    pub settings: Settings,
}

impl AppState {
    /// Connects to the database and sets up the cache and memory manager.
    pub async fn build(config: &Config) -> Result<Arc<AppState>> {
        config.validate()?;
        let store = Store::connect(
            &config.database_url,
            config.db_max_connections,
            config.db_timeout,
        )
        .await?;
        let (limit, limit_file) = MemoryLimit::detect(config.max_memory);
        let budget = config
            .cache_budget
            .map_or_else(|| cache::budget_for_limit(limit.bytes), |size| size.0);
        info!(
            limit_bytes = limit.bytes,
            limit_source = limit.source.as_str(),
            cache_budget_bytes = budget,
            "memory limit found"
        );
        let cache = RedirectCache::new(budget);
        let metrics = Arc::new(Metrics::default());
        let settings = ManagerSettings {
            marks: config.watermarks()?,
            min_trim_interval: config.min_trim_interval,
            cache_idle_samples: config.cache_idle_samples(),
            cache_follows_limit: config.cache_budget.is_none(),
        };
        let mut memory = MemoryManager::new(limit, settings, cache.clone(), metrics.clone());
        if let Some(file) = limit_file {
            memory = memory.following_limit(Box::new(move || file.read()));
        }
        let memory = Arc::new(memory);
        if config.pprof {
            allocator::enable_profiling().await?;
            info!("heap profiling on: /debug/pprof/heap");
        }
        Ok(Arc::new(AppState {
            store,
            cache,
            clicks: Arc::default(),
            memory,
            metrics,
            settings: Settings {
                base_url: config
                    .base_url
                    .as_ref()
                    .map(|url| url.as_str().trim_end_matches('/').to_owned()),
                admin_token: config.admin_token.clone().filter(|t| !t.is_empty()),
                redirect_status: config.redirect_status(),
                retry_after_secs: config.monitor_interval.as_secs().max(1),
                pprof: config.pprof,
            },
        }))
    }

    /// Writes the clicks counted by cached links and held in the buffer; returns the links
    /// written. On failure the counts are kept in the buffer for the next try.
    pub async fn flush_clicks(&self) -> Result<usize> {
        let mut counts = self.clicks.take();
        self.cache.take_clicks(&mut counts);
        clicks::flush(counts, &self.clicks, &self.store, &self.metrics).await
    }

    /// Clicks on `code` not yet written.
    pub fn pending_clicks(&self, code: &str) -> u64 {
        self.clicks.pending(code) + self.cache.pending_clicks(code)
    }

    /// Links with clicks not yet written (a link counted both in its entry and in the
    /// buffer, after an eviction, is counted twice).
    pub fn links_with_pending_clicks(&self) -> usize {
        self.clicks.len() + self.cache.clicked()
    }

    /// Writes the pending click counts every `interval`, and once more when `shutdown` is
    /// cancelled.
    pub async fn flush_clicks_every(
        self: Arc<Self>,
        interval: Duration,
        shutdown: CancellationToken,
    ) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let stopping = tokio::select! {
                _ = ticker.tick() => false,
                _ = shutdown.cancelled() => true,
            };
            match self.flush_clicks().await {
                Ok(links) => debug!(links, "click counts flushed; waiting for the next interval"),
                Err(error) => {
                    warn!(%error, pending = self.links_with_pending_clicks(), "click flush failed; counts kept for the next try")
                }
            }
            if stopping {
                break;
            }
        }
    }
}
