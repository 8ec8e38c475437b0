//! Finds the memory limit this process runs under.
//!
//! cgroup v2 `memory.max` first, then cgroup v1 `memory.limit_in_bytes`; the
//! parsing is pure so it is tested on fixtures, the file reads are thin.

use std::{fs, path::Path};

/// cgroup v1 reports "no limit" as a page-aligned `i64::MAX`; anything this
/// large (an exbibyte) cannot be a real container limit.
const UNLIMITED_THRESHOLD: u64 = 1 << 60;

/// Where the limit came from, reported in `/health` and memory stats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitSource {
    CgroupV2,
    CgroupV1,
    Configured,
    Host,
}

impl LimitSource {
    /// The word shown to users.
    pub fn as_str(self) -> &'static str {
        match self {
            LimitSource::CgroupV2 => "cgroup_v2",
            LimitSource::CgroupV1 => "cgroup_v1",
            LimitSource::Configured => "configured",
            LimitSource::Host => "host",
        }
    }
}

/// Reads the cgroup limit of this process, if any.
pub fn detect_limit() -> Option<(u64, LimitSource)> {
    let membership = fs::read_to_string("/proc/self/cgroup").ok()?;
    let root = Path::new("/sys/fs/cgroup");
    if let Some(path) = v2_path(&membership) {
        for base in [root.to_path_buf(), root.join("unified")] {
            let file = base.join(path.trim_start_matches('/')).join("memory.max");
            if let Some(limit) = read_limit(&file) {
                return Some((limit, LimitSource::CgroupV2));
            }
        }
    }
    if let Some(path) = v1_memory_path(&membership) {
        let memory = root.join("memory");
        // Inside a container the hierarchy is usually mounted at its own cgroup,
        // so the mount root holds the limit when the full path does not exist.
        for dir in [memory.join(path.trim_start_matches('/')), memory] {
            if let Some(limit) = read_limit(&dir.join("memory.limit_in_bytes")) {
                return Some((limit, LimitSource::CgroupV1));
            }
        }
    }
    None
}

/// Total memory of the host from `/proc/meminfo`, the limit of last resort.
pub fn host_memory() -> Option<u64> {
    let meminfo = fs::read_to_string("/proc/meminfo").ok()?;
    meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map(|kib| kib * 1024)
}

fn read_limit(file: &Path) -> Option<u64> {
    parse_limit(&fs::read_to_string(file).ok()?)
}

/// Parses `memory.max` or `memory.limit_in_bytes`; `None` means unlimited.
fn parse_limit(text: &str) -> Option<u64> {
    let text = text.trim();
    if text == "max" {
        return None;
    }
    text.parse::<u64>()
        .ok()
        .filter(|&limit| limit > 0 && limit < UNLIMITED_THRESHOLD)
}

/// The unified hierarchy's path: the `0::/path` line.
fn v2_path(membership: &str) -> Option<&str> {
    membership.lines().find_map(|line| line.strip_prefix("0::"))
}

/// The v1 memory controller's path: the `N:...memory...:/path` line.
fn v1_memory_path(membership: &str) -> Option<&str> {
    membership.lines().find_map(|line| {
        let mut fields = line.splitn(3, ':');
        let _id = fields.next()?;
        let controllers = fields.next()?;
        let path = fields.next()?;
        controllers
            .split(',')
            .any(|c| c == "memory")
            .then_some(path)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_and_huge_values_mean_no_limit() {
        assert_eq!(parse_limit("max\n"), None);
        assert_eq!(parse_limit("9223372036854771712\n"), None);
        assert_eq!(parse_limit("100663296\n"), Some(96 << 20));
    }

    #[test]
    fn v2_membership_is_the_unified_line() {
        let membership = "0::/kubepods/pod1/abc\n";
        assert_eq!(v2_path(membership), Some("/kubepods/pod1/abc"));
        assert_eq!(v1_memory_path(membership), None);
    }

    #[test]
    fn v1_membership_is_found_among_joined_controllers() {
        let membership = "5:cpu,cpuacct:/a\n4:memory:/process_api/b7\n0::/\n";
        assert_eq!(v1_memory_path(membership), Some("/process_api/b7"));
        let joined = "3:memory,hugetlb:/pod\n";
        assert_eq!(v1_memory_path(joined), Some("/pod"));
    }

    #[test]
    fn host_memory_is_readable_on_linux() {
        assert!(host_memory().is_some_and(|bytes| bytes > 0));
    }
}
