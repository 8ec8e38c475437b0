//! Command-line flags and their environment variables.

use std::{net::SocketAddr, num::NonZeroUsize, time::Duration};

use axum::http::StatusCode;
use clap::Parser;

use crate::{
    Error, Result,
    memory::policy::Watermarks,
    units::{ByteSize, parse_duration},
};

/// Shortener configuration: every flag can also be set through its environment variable.
#[derive(Clone, Debug, Parser)]
#[command(name = "shortener", version, about)]
pub struct Config {
    /// Address to serve HTTP on.
    #[arg(long, env = "SHORTENER_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,

    /// Threads that serve requests (default: one per CPU the process may use, cgroup quota
    /// included). One thread per core left to the service avoids trading the core between
    /// threads when a load generator or another process holds the rest.
    #[arg(long, env = "SHORTENER_WORKERS")]
    pub workers: Option<NonZeroUsize>,

    /// Database to use: `postgres://…` for PostgreSQL, `sqlite:PATH` for an embedded SQLite file.
    #[arg(long, env = "DATABASE_URL", default_value = "sqlite:shortener.db")]
    pub database_url: String,

    /// Base of the `short_url` returned for new links (default: taken from the request's Host).
    #[arg(long, env = "SHORTENER_BASE_URL")]
    pub base_url: Option<url::Url>,

    /// Bearer token for the admin endpoints; they are disabled when unset.
    #[arg(long, env = "SHORTENER_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    /// Memory limit to assume when no cgroup limit is found, such as `256MiB`.
    #[arg(long, env = "SHORTENER_MAX_MEMORY")]
    pub max_memory: Option<ByteSize>,

    /// Percent of the limit under which the cache is allowed to grow again after a trim.
    #[arg(long, env = "SHORTENER_LOW_WATER_MARK", default_value_t = 60.0)]
    pub low_water_mark: f64,

    /// Percent of the limit above which caches are shrunk and the allocator purged.
    #[arg(long, env = "SHORTENER_HIGH_WATER_MARK", default_value_t = 80.0)]
    pub high_water_mark: f64,

    /// Percent of the limit above which new links are refused and readiness fails.
    #[arg(long, env = "SHORTENER_CRITICAL_MARK", default_value_t = 95.0)]
    pub critical_mark: f64,

    /// How often the memory manager samples memory.
    #[arg(long, env = "SHORTENER_MONITOR_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    pub monitor_interval: Duration,

    /// Shortest time between two automatic trims, so that pressure cannot cause a trim storm.
    #[arg(long, env = "SHORTENER_MIN_TRIM_INTERVAL", default_value = "10s", value_parser = parse_duration)]
    pub min_trim_interval: Duration,

    /// Bytes the redirect cache may hold (default: an eighth of the memory limit, at most 256MiB).
    #[arg(long, env = "SHORTENER_CACHE_BUDGET")]
    pub cache_budget: Option<ByteSize>,

    /// How long a link nobody follows stays cached; its next hit costs one
    /// indexed lookup, and the memory of idle links returns soon after load drops.
    #[arg(long, env = "SHORTENER_CACHE_IDLE_TTL", default_value = "20s", value_parser = parse_duration)]
    pub cache_idle_ttl: Duration,

    /// How often buffered click counts are written to the database.
    #[arg(long, env = "SHORTENER_CLICK_FLUSH_INTERVAL", default_value = "2s", value_parser = parse_duration)]
    pub click_flush_interval: Duration,

    /// Status code of redirects: 301, 302, 307 or 308.
    #[arg(long, env = "SHORTENER_REDIRECT_STATUS", default_value_t = 302, value_parser = parse_redirect_status)]
    pub redirect_status: u16,

    /// Most database connections kept open (default: 8 on PostgreSQL; 2 on SQLite, which
    /// writes one transaction at a time and keeps a page cache in every connection).
    #[arg(long, env = "SHORTENER_DB_MAX_CONNECTIONS")]
    pub db_max_connections: Option<u32>,

    /// How long a request waits for a database connection before it answers 503.
    #[arg(long, env = "SHORTENER_DB_TIMEOUT", default_value = "2s", value_parser = parse_duration)]
    pub db_timeout: Duration,

    /// How long shutdown waits for open requests before it flushes clicks and exits anyway.
    #[arg(long, env = "SHORTENER_SHUTDOWN_GRACE", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,

    /// Serve a jemalloc heap profile at /debug/pprof/heap (admin token required).
    #[arg(long, env = "SHORTENER_PPROF", default_value_t = false)]
    pub pprof: bool,
}

impl Config {
    /// The configuration a library user gets without flags, with the given database.
    pub fn with_database(database_url: impl Into<String>) -> Self {
        let mut config = Config::parse_from(["shortener"]);
        config.database_url = database_url.into();
        config
    }

    /// Checks what clap cannot: the relations between settings.
    pub fn validate(&self) -> Result<()> {
        self.watermarks()?;
        if self.db_max_connections == Some(0) {
            return Err(Error::Config(
                "SHORTENER_DB_MAX_CONNECTIONS must be at least 1".into(),
            ));
        }
        Ok(())
    }

    /// The water marks as ratios of the memory limit.
    pub fn watermarks(&self) -> Result<Watermarks> {
        Watermarks::from_percent(
            self.low_water_mark,
            self.high_water_mark,
            self.critical_mark,
        )
        .map_err(Error::Config)
    }

    /// Memory samples after which an idle link leaves the cache (at least one).
    pub fn cache_idle_samples(&self) -> u32 {
        let samples = self
            .cache_idle_ttl
            .as_millis()
            .div_ceil(self.monitor_interval.as_millis().max(1));
        u32::try_from(samples).unwrap_or(u32::MAX).max(1)
    }

    /// The redirect status as an HTTP status code.
    pub fn redirect_status(&self) -> StatusCode {
        StatusCode::from_u16(self.redirect_status).unwrap_or(StatusCode::FOUND)
    }
}

fn parse_redirect_status(text: &str) -> Result<u16, String> {
    match text.trim() {
        "301" => Ok(301),
        "302" => Ok(302),
        "307" => Ok(307),
        "308" => Ok(308),
        other => Err(format!(
            "`{other}` is not a redirect status: use 301, 302, 307 or 308"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_work_without_any_flag() {
        let config = Config::parse_from(["shortener"]);
        assert_eq!(config.listen.port(), 8080);
        assert!(config.validate().is_ok());
        assert_eq!(config.redirect_status(), StatusCode::FOUND);
    }

    #[test]
    fn water_marks_out_of_order_are_refused_with_their_values() {
        let config = Config::parse_from([
            "shortener",
            "--low-water-mark",
            "85",
            "--high-water-mark",
            "80",
        ]);
        let message = config.validate().unwrap_err().to_string();
        assert!(message.contains("85"), "{message}");
    }

    #[test]
    fn the_cache_idle_time_is_counted_in_memory_samples() {
        let config = Config::parse_from([
            "shortener",
            "--cache-idle-ttl",
            "20s",
            "--monitor-interval",
            "3s",
        ]);
        assert_eq!(config.cache_idle_samples(), 7);
    }

    #[test]
    fn only_redirect_statuses_are_accepted() {
        assert!(Config::try_parse_from(["shortener", "--redirect-status", "200"]).is_err());
        let config = Config::parse_from(["shortener", "--redirect-status", "308"]);
        assert_eq!(config.redirect_status(), StatusCode::PERMANENT_REDIRECT);
    }
}
