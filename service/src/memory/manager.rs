//! The memory manager: samples memory every interval, trims caches and the
//! allocator above the high water mark, and sheds load above critical.

use std::{
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{
    LimitSource, MemoryLimit, MemorySnapshot, allocator,
    policy::{self, Activity, Decision, ManagerState, Pressure, TrimReason, Usage, Watermarks},
    process, sqlite,
};
use crate::{
    cache::{self, RedirectCache},
    metrics::Metrics,
};

/// Reads the resident set size; replaced in tests to script memory pressure.
pub type ResidentProbe = Box<dyn Fn() -> u64 + Send + Sync>;

/// Reads the memory limit again (`None`: nothing new to say); replaced in tests to script a
/// resize.
pub type LimitProbe = Box<dyn Fn() -> Option<u64> + Send + Sync>;

/// What a trim did.
#[derive(Clone, Debug, Serialize)]
pub struct TrimReport {
    pub reason: &'static str,
    pub cache_freed_bytes: u64,
    /// Pages SQLite had cached and let go of.
    pub sqlite_freed_bytes: u64,
    pub resident_before_bytes: u64,
    pub resident_after_bytes: u64,
}

/// How the manager behaves.
#[derive(Clone, Copy, Debug)]
pub struct ManagerSettings {
    pub marks: Watermarks,
    pub min_trim_interval: Duration,
    /// Samples after which a link nobody followed leaves the cache.
    pub cache_idle_samples: u32,
    /// The cache's budget is its default share of the limit (not configured), so it changes
    /// with the limit.
    pub cache_follows_limit: bool,
}

/// Keeps the process under its water marks.
pub struct MemoryManager {
    /// The limit in force: read again at every sample when `limit_probe` can.
    limit_bytes: AtomicU64,
    limit_source: LimitSource,
    limit_probe: Option<LimitProbe>,
    settings: ManagerSettings,
    resident: ResidentProbe,
    cache: RedirectCache,
    metrics: Arc<Metrics>,
    state: Mutex<ManagerState>,
    shedding: AtomicBool,
}

impl MemoryManager {
    /// A manager reading this process's resident set size.
    pub fn new(
        limit: MemoryLimit,
        settings: ManagerSettings,
        cache: RedirectCache,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self::with_probe(
            limit,
            settings,
            cache,
            metrics,
            Box::new(process::resident_bytes),
        )
    }

    /// A manager reading resident bytes from `resident`.
    pub fn with_probe(
        limit: MemoryLimit,
        settings: ManagerSettings,
        cache: RedirectCache,
        metrics: Arc<Metrics>,
        resident: ResidentProbe,
    ) -> Self {
        MemoryManager {
            limit_bytes: AtomicU64::new(limit.bytes),
            limit_source: limit.source,
            limit_probe: None,
            settings,
            resident,
            cache,
            metrics,
            state: Mutex::default(),
            shedding: AtomicBool::new(false),
        }
    }

    /// Reads the limit again from `probe` at every sample, as it changes: a container's limit
    /// raised or lowered in place, without a restart.
    pub fn following_limit(self, probe: LimitProbe) -> Self {
        MemoryManager {
            limit_probe: Some(probe),
            ..self
        }
    }

    /// Whether new work is being refused because memory is critical.
    pub fn is_shedding(&self) -> bool {
        self.shedding.load(Ordering::Relaxed)
    }

    /// The limit in force.
    pub fn limit(&self) -> MemoryLimit {
        MemoryLimit {
            bytes: self.limit_bytes.load(Ordering::Relaxed),
            source: self.limit_source,
        }
    }

    /// Resident bytes against the limit, now.
    pub fn usage(&self) -> Usage {
        Usage {
            resident: (self.resident)(),
            limit: self.limit().bytes,
        }
    }

    /// Takes a changed limit into account: the water marks, the metrics and, when it is a
    /// share of the limit, the cache's budget follow it.
    fn follow_limit(&self) {
        let Some(bytes) = self.limit_probe.as_ref().and_then(|probe| probe()) else {
            return;
        };
        let before = self.limit_bytes.swap(bytes, Ordering::Relaxed);
        if before == bytes {
            return;
        }
        let budget = self.settings.cache_follows_limit.then(|| {
            let budget = cache::budget_for_limit(bytes);
            self.cache.set_budget(budget);
            budget
        });
        info!(
            before_bytes = before,
            limit_bytes = bytes,
            cache_budget_bytes = budget.unwrap_or_else(|| self.cache.budget()),
            "memory limit changed"
        );
    }

    /// Sweeps idle links out of the cache, samples memory, applies the policy
    /// and publishes the figures.
    pub fn tick(&self, now: Instant) -> Decision {
        self.follow_limit();
        let swept = self.cache.sweep(self.settings.cache_idle_samples);
        if swept > 0 {
            debug!(bytes = swept, "idle links left the cache");
        }
        let usage = self.usage();
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let answered = self.metrics.answered();
        let activity = state
            .last_sample
            .replace((now, answered))
            .map(|(at, before)| Activity {
                requests: answered.saturating_sub(before),
                elapsed: now.saturating_duration_since(at),
                cache_swept: swept > 0,
            });
        let decision = policy::decide(
            usage,
            self.settings.marks,
            *state,
            self.settings.min_trim_interval,
            now,
        );
        if let Some((reason, bytes)) = decision.trim {
            let report = self.trim(reason, bytes);
            info!(
                reason = report.reason,
                usage_ratio = usage.ratio(),
                cache_freed_bytes = report.cache_freed_bytes,
                resident_after_bytes = report.resident_after_bytes,
                "memory trimmed"
            );
            state.last_trim = Some(now);
        } else if activity.is_some_and(|activity| policy::settle(activity, state.busy)) {
            let report = self.trim(TrimReason::Idle, 0);
            info!(
                sqlite_freed_bytes = report.sqlite_freed_bytes,
                resident_before_bytes = report.resident_before_bytes,
                resident_after_bytes = report.resident_after_bytes,
                "load dropped: memory given back"
            );
        }
        if let Some(activity) = activity {
            state.busy = !activity.is_quiet();
        }
        if decision.shed != state.shedding {
            if decision.shed {
                warn!(
                    usage_ratio = usage.ratio(),
                    "memory critical: refusing new links and failing readiness"
                );
            } else {
                info!(
                    usage_ratio = usage.ratio(),
                    "memory back under the high water mark: accepting work again"
                );
            }
        }
        state.shedding = decision.shed;
        self.shedding.store(decision.shed, Ordering::Relaxed);
        self.cache.set_admitting(!decision.shed);
        drop(state);
        self.metrics.record_memory(&self.snapshot());
        decision
    }

    /// Trims on an operator's request: shrinks the cache to bring usage under
    /// the low water mark (or empties it) and purges the allocator.
    pub fn trim_now(&self, clear_cache: bool) -> TrimReport {
        if clear_cache {
            let before = (self.resident)();
            let freed = self.cache.clear();
            self.finish_trim(TrimReason::Manual, before, freed)
        } else {
            let excess = self.usage().excess_over(self.settings.marks.low);
            self.trim(TrimReason::Manual, excess)
        }
    }

    fn trim(&self, reason: TrimReason, bytes: u64) -> TrimReport {
        let before = (self.resident)();
        let freed = self.cache.shrink_by(bytes);
        self.finish_trim(reason, before, freed)
    }

    fn finish_trim(&self, reason: TrimReason, before: u64, freed: u64) -> TrimReport {
        // SQLite's cached pages go back to the allocator first, so the purge returns them too.
        let sqlite_freed = sqlite::release();
        if let Err(error) = allocator::flush_thread_cache() {
            warn!(%error, "allocator thread cache flush failed");
        }
        if let Err(error) = allocator::purge() {
            warn!(%error, "allocator purge failed");
        }
        self.metrics.record_trim(reason);
        TrimReport {
            reason: reason.as_str(),
            cache_freed_bytes: freed,
            sqlite_freed_bytes: sqlite_freed,
            resident_before_bytes: before,
            resident_after_bytes: (self.resident)(),
        }
    }

    /// Everything known about memory now.
    pub fn snapshot(&self) -> MemorySnapshot {
        let usage = self.usage();
        let ratio = usage.ratio();
        let pressure = if ratio >= self.settings.marks.critical {
            Pressure::Critical
        } else if ratio >= self.settings.marks.high {
            Pressure::High
        } else {
            Pressure::Normal
        };
        MemorySnapshot {
            resident_bytes: usage.resident,
            limit_bytes: usage.limit,
            limit_source: self.limit_source.as_str(),
            usage_ratio: ratio,
            pressure: pressure.as_str(),
            shedding: self.is_shedding(),
            allocator: allocator::stats().unwrap_or_default(),
            sqlite: sqlite::stats(),
            cache_entries: self.cache.entries(),
            cache_bytes: self.cache.bytes(),
            cache_budget_bytes: self.cache.budget(),
        }
    }

    /// Samples every `interval` until `shutdown` is cancelled.
    pub async fn run(self: Arc<Self>, interval: Duration, shutdown: CancellationToken) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = ticker.tick() => {
                    let decision = self.tick(Instant::now());
                    debug!(pressure = decision.pressure.as_str(), "memory sampled; waiting for the next interval");
                }
                _ = shutdown.cancelled() => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;
    use crate::cache::CachedLink;

    const MIB: u64 = 1 << 20;

    /// A manager over a 100 MiB limit whose resident size the test sets.
    fn scripted() -> (MemoryManager, Arc<AtomicU64>, RedirectCache) {
        let resident = Arc::new(AtomicU64::new(10 * MIB));
        let probe = resident.clone();
        let cache = RedirectCache::new(8 * MIB);
        for i in 0..10_000 {
            cache.insert(Arc::new(CachedLink::new(
                format!("code{i}").into(),
                HeaderValue::from_static("https://example.com/a/page"),
                None,
                &Arc::default(),
            )));
        }
        let manager = MemoryManager::with_probe(
            MemoryLimit {
                bytes: 100 * MIB,
                source: LimitSource::Configured,
            },
            ManagerSettings {
                marks: Watermarks::from_percent(60.0, 80.0, 95.0).unwrap(),
                min_trim_interval: Duration::from_secs(10),
                cache_idle_samples: 1_000,
                cache_follows_limit: true,
            },
            cache.clone(),
            Arc::new(Metrics::default()),
            Box::new(move || probe.load(Ordering::Relaxed)),
        );
        (manager, resident, cache)
    }

    #[test]
    fn critical_memory_sheds_trims_and_recovers_under_the_high_water_mark() {
        let (manager, resident, cache) = scripted();
        let start = Instant::now();
        manager.tick(start);
        let full = cache.bytes();
        assert!(full > MIB && !manager.is_shedding());

        resident.store(97 * MIB, Ordering::Relaxed);
        let decision = manager.tick(start + Duration::from_secs(5));
        assert!(decision.shed && manager.is_shedding());
        assert!(cache.bytes() < full, "the cache was not shrunk");
        cache.insert(Arc::new(CachedLink::new(
            "new".into(),
            HeaderValue::from_static("https://example.com/"),
            None,
            &Arc::default(),
        )));
        assert!(
            cache.get("new").is_none(),
            "cache admitted entries while shedding"
        );

        resident.store(85 * MIB, Ordering::Relaxed);
        assert!(manager.tick(start + Duration::from_secs(10)).shed);

        resident.store(70 * MIB, Ordering::Relaxed);
        assert!(!manager.tick(start + Duration::from_secs(15)).shed);
        assert!(!manager.is_shedding());
        let text = manager.metrics.encode();
        assert!(text.contains(r#"shortener_memory_trims_total{reason="critical"} 1"#));
        assert!(text.contains("shortener_memory_usage_ratio 0.7"), "{text}");
    }

    #[test]
    fn a_limit_changed_in_place_moves_the_marks_the_metrics_and_the_cache_budget() {
        let (manager, resident, cache) = scripted();
        let limit = Arc::new(AtomicU64::new(100 * MIB));
        let manager = manager.following_limit(Box::new({
            let limit = limit.clone();
            move || Some(limit.load(Ordering::Relaxed))
        }));
        let start = Instant::now();
        resident.store(85 * MIB, Ordering::Relaxed);
        assert_eq!(manager.tick(start).pressure, Pressure::High);

        // Raised to 200 MiB: the same 85 MiB is now under the low water mark.
        limit.store(200 * MIB, Ordering::Relaxed);
        let decision = manager.tick(start + Duration::from_secs(5));
        assert_eq!(decision.pressure, Pressure::Normal);
        assert_eq!(manager.limit().bytes, 200 * MIB);
        assert_eq!(manager.limit().source, LimitSource::Configured);
        assert_eq!(cache.budget(), 25 * MIB, "an eighth of the new limit");
        let text = manager.metrics.encode();
        assert!(
            text.contains(&format!("shortener_memory_limit_bytes {}", 200 * MIB)),
            "{text}"
        );
        assert!(
            text.contains("shortener_memory_usage_ratio 0.425"),
            "{text}"
        );

        // A probe with nothing to say keeps the limit as it was.
        let quiet = MemoryManager {
            limit_probe: Some(Box::new(|| None)),
            ..manager
        };
        quiet.tick(start + Duration::from_secs(10));
        assert_eq!(quiet.limit().bytes, 200 * MIB);
    }

    #[test]
    fn a_configured_cache_budget_stays_when_the_limit_changes() {
        let (manager, _, cache) = scripted();
        let mut settings = manager.settings;
        settings.cache_follows_limit = false;
        let manager = MemoryManager {
            settings,
            ..manager
        }
        .following_limit(Box::new(|| Some(300 * MIB)));
        manager.tick(Instant::now());
        assert_eq!(manager.limit().bytes, 300 * MIB);
        assert_eq!(cache.budget(), 8 * MIB);
    }

    #[test]
    fn links_nobody_follows_leave_the_cache_after_the_idle_samples() {
        let (manager, _, cache) = scripted();
        let mut settings = manager.settings;
        settings.cache_idle_samples = 2;
        let manager = MemoryManager {
            settings,
            ..manager
        };
        let start = Instant::now();
        manager.tick(start);
        assert_eq!(cache.entries(), 10_000);
        manager.tick(start + Duration::from_secs(5));
        assert_eq!(cache.entries(), 0);
    }

    #[test]
    fn a_manual_trim_can_empty_the_cache() {
        let (manager, _, cache) = scripted();
        let report = manager.trim_now(true);
        assert!(report.cache_freed_bytes > 0);
        assert_eq!(cache.entries(), 0);
        assert_eq!(report.reason, "manual");
    }
}
