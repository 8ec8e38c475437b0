//! Prometheus metrics: names are `shortener_<thing>_<unit>` and documented in the README.

use std::{
    fmt::{self, Write as _},
    sync::{
        OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{SystemTime, UNIX_EPOCH},
};

use prometheus_client::{
    collector::Collector,
    encoding::{
        DescriptorEncoder, EncodeLabelSet, EncodeLabelValue, EncodeMetric, LabelValueEncoder,
        text::encode,
    },
    metrics::{
        counter::{ConstCounter, Counter},
        family::Family,
        gauge::{ConstGauge, Gauge},
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};
use strum::VariantArray;

use crate::{
    memory::{MemorySnapshot, policy::TrimReason, process},
    store::PoolStats,
};

/// The routes, as the `route` label of the HTTP metrics.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, strum::VariantArray)]
pub enum Route {
    Redirect,
    CreateLink,
    GetLink,
    DeleteLink,
    Healthz,
    Readyz,
    Health,
    Metrics,
    MemoryStats,
    MemoryTrim,
    HeapProfile,
    Unmatched,
}

impl Route {
    /// The route for an axum matched path.
    pub fn from_matched(path: Option<&str>, method: &axum::http::Method) -> Route {
        use axum::http::Method;
        match (path, method) {
            (Some("/{code}"), _) => Route::Redirect,
            (Some("/api/v1/links"), _) => Route::CreateLink,
            (Some("/api/v1/links/{code}"), m) if m == Method::DELETE => Route::DeleteLink,
            (Some("/api/v1/links/{code}"), _) => Route::GetLink,
            (Some("/healthz"), _) => Route::Healthz,
            (Some("/readyz"), _) => Route::Readyz,
            (Some("/health"), _) => Route::Health,
            (Some("/metrics"), _) => Route::Metrics,
            (Some("/api/v1/memory/stats"), _) => Route::MemoryStats,
            (Some("/api/v1/memory/trim"), _) => Route::MemoryTrim,
            (Some("/debug/pprof/heap"), _) => Route::HeapProfile,
            _ => Route::Unmatched,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Route::Redirect => "redirect",
            Route::CreateLink => "create_link",
            Route::GetLink => "get_link",
            Route::DeleteLink => "delete_link",
            Route::Healthz => "healthz",
            Route::Readyz => "readyz",
            Route::Health => "health",
            Route::Metrics => "metrics",
            Route::MemoryStats => "memory_stats",
            Route::MemoryTrim => "memory_trim",
            Route::HeapProfile => "heap_profile",
            Route::Unmatched => "unmatched",
        }
    }
}

impl EncodeLabelValue for Route {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> fmt::Result {
        encoder.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    route: Route,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: Route,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

type U64Gauge = Gauge<u64, AtomicU64>;

fn latency_histogram() -> Histogram {
    // 50 µs to about 1.6 s: redirects from cache take tens of microseconds,
    // creates on a busy database take tens of milliseconds.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

/// Every metric the service exports.
pub struct Metrics {
    registry: Registry,
    http_requests: Family<HttpLabels, Counter>,
    http_duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
    /// Each route's histogram of `http_duration`, by `Route as usize`: found once, not
    /// looked up by label on every request.
    route_durations: Vec<Histogram>,
    /// Each route's counter for the first status it answered, by `Route as usize`: a
    /// route nearly always answers alike (a redirect with the redirect status), and that
    /// counter is then not found by hashing its labels on every request.
    usual_answers: Vec<OnceLock<(u16, Counter)>>,
    answered: AtomicU64,
    resident: U64Gauge,
    limit: U64Gauge,
    usage_ratio: Gauge<f64, AtomicU64>,
    allocator: [U64Gauge; 6],
    sqlite: U64Gauge,
    cache_entries: U64Gauge,
    cache_bytes: U64Gauge,
    cache_budget: U64Gauge,
    shedding: U64Gauge,
    trims: Family<ReasonLabels, Counter>,
    load_shed: Counter,
    db_connections: Family<StateLabels, U64Gauge>,
    db_max_connections: U64Gauge,
    clicks_pending: U64Gauge,
    click_flush_failures: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut metrics = Metrics {
            registry: Registry::default(),
            http_requests: Family::default(),
            http_duration: Family::new_with_constructor(latency_histogram),
            route_durations: Vec::new(),
            usual_answers: Route::VARIANTS.iter().map(|_| OnceLock::new()).collect(),
            answered: AtomicU64::new(0),
            resident: Gauge::default(),
            limit: Gauge::default(),
            usage_ratio: Gauge::default(),
            allocator: Default::default(),
            sqlite: Gauge::default(),
            cache_entries: Gauge::default(),
            cache_bytes: Gauge::default(),
            cache_budget: Gauge::default(),
            shedding: Gauge::default(),
            trims: Family::default(),
            load_shed: Counter::default(),
            db_connections: Family::default(),
            db_max_connections: Gauge::default(),
            clicks_pending: Gauge::default(),
            click_flush_failures: Counter::default(),
        };
        metrics.register();
        metrics
    }
}

impl Metrics {
    fn register(&mut self) {
        self.route_durations = Route::VARIANTS
            .iter()
            .map(|&route| {
                self.http_duration
                    .get_or_create(&RouteLabels { route })
                    .clone()
            })
            .collect();
        self.registry
            .register_collector(Box::new(ProcessCollector::default()));
        let r = self.registry.sub_registry_with_prefix("shortener");
        r.register(
            "http_requests",
            "HTTP requests answered, by route and status",
            self.http_requests.clone(),
        );
        r.register(
            "http_request_duration_seconds",
            "Time to answer HTTP requests, by route",
            self.http_duration.clone(),
        );
        r.register(
            "memory_resident_bytes",
            "Resident set size of the process",
            self.resident.clone(),
        );
        r.register(
            "memory_limit_bytes",
            "Memory limit in force (cgroup, else configured, else host memory)",
            self.limit.clone(),
        );
        r.register(
            "memory_usage_ratio",
            "Resident bytes over the memory limit, 0 to 1",
            self.usage_ratio.clone(),
        );
        let allocator_help = [
            ("allocated", "Bytes allocated by the application"),
            (
                "active",
                "Bytes in pages the allocator holds for live allocations",
            ),
            (
                "resident",
                "Bytes the allocator holds in physically resident pages",
            ),
            ("mapped", "Bytes in chunks the allocator has mapped"),
            (
                "retained",
                "Bytes of virtual memory kept mapped for reuse but not resident",
            ),
            ("metadata", "Bytes of allocator metadata"),
        ];
        for ((name, help), gauge) in allocator_help.into_iter().zip(&self.allocator) {
            r.register(format!("allocator_{name}_bytes"), help, gauge.clone());
        }
        r.register(
            "memory_sqlite_bytes",
            "Bytes SQLite holds (page caches, statements, schemas), part of the allocator's",
            self.sqlite.clone(),
        );
        r.register(
            "cache_entries",
            "Links in the redirect cache",
            self.cache_entries.clone(),
        );
        r.register(
            "cache_bytes",
            "Bytes held by the redirect cache",
            self.cache_bytes.clone(),
        );
        r.register(
            "cache_budget_bytes",
            "Most bytes the redirect cache may hold",
            self.cache_budget.clone(),
        );
        r.register(
            "memory_shedding",
            "1 while new links are refused because memory is critical",
            self.shedding.clone(),
        );
        r.register(
            "memory_trims",
            "Cache shrinks and allocator purges, by reason",
            self.trims.clone(),
        );
        r.register(
            "load_shed",
            "Requests refused with 503 because memory was critical",
            self.load_shed.clone(),
        );
        r.register(
            "db_pool_connections",
            "Database connections by state (idle or in_use)",
            self.db_connections.clone(),
        );
        r.register(
            "db_pool_max_connections",
            "Most database connections the pool opens",
            self.db_max_connections.clone(),
        );
        r.register(
            "clicks_pending",
            "Links with click counts not yet written to the database",
            self.clicks_pending.clone(),
        );
        r.register(
            "click_flush_failures",
            "Click flushes that failed and were kept for the next try",
            self.click_flush_failures.clone(),
        );
    }

    /// Requests answered since the process started, for the memory manager to tell load
    /// from quiet.
    pub fn answered(&self) -> u64 {
        self.answered.load(Ordering::Relaxed)
    }

    /// Counts one answered request.
    pub fn observe_request(&self, route: Route, status: u16, seconds: f64) {
        self.answered.fetch_add(1, Ordering::Relaxed);
        let labels = HttpLabels { route, status };
        let (usual, counter) = self.usual_answers[route as usize]
            .get_or_init(|| (status, self.http_requests.get_or_create(&labels).clone()));
        if *usual == status {
            counter.inc();
        } else {
            self.http_requests.get_or_create(&labels).inc();
        }
        self.route_durations[route as usize].observe(seconds);
    }

    /// Publishes a memory sample.
    pub fn record_memory(&self, snapshot: &MemorySnapshot) {
        self.resident.set(snapshot.resident_bytes);
        self.limit.set(snapshot.limit_bytes);
        self.usage_ratio.set(snapshot.usage_ratio);
        let a = snapshot.allocator;
        let values = [
            a.allocated,
            a.active,
            a.resident,
            a.mapped,
            a.retained,
            a.metadata,
        ];
        for (gauge, value) in self.allocator.iter().zip(values) {
            gauge.set(value);
        }
        self.sqlite.set(snapshot.sqlite.used);
        self.cache_entries.set(snapshot.cache_entries);
        self.cache_bytes.set(snapshot.cache_bytes);
        self.cache_budget.set(snapshot.cache_budget_bytes);
        self.shedding.set(u64::from(snapshot.shedding));
    }

    /// Counts a trim.
    pub fn record_trim(&self, reason: TrimReason) {
        self.trims
            .get_or_create(&ReasonLabels {
                reason: reason.as_str(),
            })
            .inc();
    }

    /// Counts a request refused under memory pressure.
    pub fn record_shed(&self) {
        self.load_shed.inc();
    }

    /// Publishes pool figures.
    pub fn record_pool(&self, pool: PoolStats) {
        let idle = u64::from(pool.idle);
        let in_use = u64::from(pool.open).saturating_sub(idle);
        self.db_connections
            .get_or_create(&StateLabels { state: "idle" })
            .set(idle);
        self.db_connections
            .get_or_create(&StateLabels { state: "in_use" })
            .set(in_use);
        self.db_max_connections.set(u64::from(pool.max));
    }

    /// Publishes how many links have unwritten clicks.
    pub fn record_clicks_pending(&self, links: usize) {
        self.clicks_pending.set(links as u64);
    }

    /// Counts a failed click flush.
    pub fn record_flush_failure(&self) {
        self.click_flush_failures.inc();
    }

    /// The text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut text = String::with_capacity(16 * 1024);
        // Writing into a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}

/// The standard `process_*` metrics, read from /proc at each scrape.
#[derive(Debug)]
struct ProcessCollector {
    start_time: f64,
}

impl Default for ProcessCollector {
    fn default() -> Self {
        let start_time = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        ProcessCollector { start_time }
    }
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let stats = process::stats();
        let cpu = ConstCounter::new(stats.cpu_seconds);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "User and system CPU time spent, in seconds",
            None,
            cpu.metric_type(),
        )?)?;
        let gauges = [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                stats.resident_bytes as f64,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes",
                stats.virtual_bytes as f64,
            ),
            (
                "process_open_fds",
                "Open file descriptors",
                stats.open_fds as f64,
            ),
            ("process_threads", "OS threads", stats.threads as f64),
            (
                "process_start_time_seconds",
                "Start time of the process since the Unix epoch, in seconds",
                self.start_time,
            ),
        ];
        for (name, help, value) in gauges {
            let gauge = ConstGauge::new(value);
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_by_route_and_status() {
        let metrics = Metrics::default();
        metrics.observe_request(Route::Redirect, 302, 0.0001);
        metrics.observe_request(Route::Redirect, 404, 0.0001);
        metrics.observe_request(Route::Redirect, 302, 0.0001);
        metrics.observe_request(Route::GetLink, 302, 0.0001);
        let text = metrics.encode();
        for (labels, count) in [
            (r#"route="redirect",status="302""#, 2),
            (r#"route="redirect",status="404""#, 1),
            (r#"route="get_link",status="302""#, 1),
        ] {
            let line = format!("shortener_http_requests_total{{{labels}}} {count}\n");
            assert!(text.contains(&line), "no `{line}` in\n{text}");
        }
        assert!(text.contains("shortener_http_request_duration_seconds_bucket"));
    }

    #[test]
    fn process_metrics_are_exported_without_prefix() {
        let text = Metrics::default().encode();
        assert!(text.contains("\nprocess_resident_memory_bytes "), "{text}");
        assert!(text.contains("\nprocess_cpu_seconds_total "), "{text}");
    }

    #[test]
    fn trims_are_labelled_by_reason() {
        let metrics = Metrics::default();
        metrics.record_trim(TrimReason::Critical);
        assert!(
            metrics
                .encode()
                .contains(r#"shortener_memory_trims_total{reason="critical"} 1"#)
        );
    }

    #[test]
    fn matched_paths_map_to_routes() {
        use axum::http::Method;
        assert_eq!(
            Route::from_matched(Some("/{code}"), &Method::GET),
            Route::Redirect
        );
        assert_eq!(
            Route::from_matched(Some("/api/v1/links/{code}"), &Method::DELETE),
            Route::DeleteLink
        );
        assert_eq!(Route::from_matched(None, &Method::GET), Route::Unmatched);
    }
}
