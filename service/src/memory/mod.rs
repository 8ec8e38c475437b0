//! Memory accounting and the manager that keeps the process under its water marks.

pub mod allocator;
pub mod cgroup;
pub mod manager;
pub mod policy;
pub mod process;
pub mod sqlite;

use serde::Serialize;

use crate::units::ByteSize;
pub use allocator::AllocatorStats;
pub use cgroup::{LimitFile, LimitSource};
pub use manager::{ManagerSettings, MemoryManager, TrimReport};
pub use sqlite::SqliteMemory;

/// The memory limit in force and where it came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryLimit {
    pub bytes: u64,
    pub source: LimitSource,
}

impl MemoryLimit {
    /// The cgroup limit if there is one, else the configured one, else the host's memory; with
    /// the cgroup's file, to be read again at every sample.
    pub fn detect(configured: Option<ByteSize>) -> (MemoryLimit, Option<cgroup::LimitFile>) {
        if let Some((file, bytes)) = cgroup::LimitFile::find() {
            let source = file.source();
            return (MemoryLimit { bytes, source }, Some(file));
        }
        let limit = match configured {
            Some(ByteSize(bytes)) => MemoryLimit {
                bytes,
                source: LimitSource::Configured,
            },
            None => MemoryLimit {
                bytes: cgroup::host_memory().unwrap_or(0),
                source: LimitSource::Host,
            },
        };
        (limit, None)
    }
}

/// Everything known about memory at one moment, as served by the stats endpoint.
#[derive(Clone, Debug, Serialize)]
pub struct MemorySnapshot {
    pub resident_bytes: u64,
    pub limit_bytes: u64,
    pub limit_source: &'static str,
    pub usage_ratio: f64,
    pub pressure: &'static str,
    pub shedding: bool,
    pub allocator: AllocatorStats,
    /// SQLite's share of the allocator's figures.
    pub sqlite: SqliteMemory,
    pub cache_entries: u64,
    pub cache_bytes: u64,
    pub cache_budget_bytes: u64,
}
