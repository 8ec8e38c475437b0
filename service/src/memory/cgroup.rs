//! Finds the memory limit this process runs under, and reads it again as it changes.
//!
//! cgroup v2 `memory.max` first, then cgroup v1 `memory.limit_in_bytes`; the
//! parsing is pure so it is tested on fixtures, the file reads are thin.

use std::{
    fs,
    path::{Path, PathBuf},
};

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

/// The file holding this process's cgroup memory limit: found once, at start, and read again
/// at every memory sample, so that a limit changed in place (a pod resized without a restart)
/// is followed. One small read of a kernel file a sample.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimitFile {
    path: PathBuf,
    source: LimitSource,
}

impl LimitFile {
    /// The file of this process's cgroup that holds a limit now, if any, and that limit.
    pub fn find() -> Option<(LimitFile, u64)> {
        let membership = fs::read_to_string("/proc/self/cgroup").ok()?;
        candidates(&membership, Path::new("/sys/fs/cgroup"))
            .into_iter()
            .find_map(|file| file.read().map(|bytes| (file, bytes)))
    }

    /// The limit it holds now; `None` when unlimited or unreadable.
    pub fn read(&self) -> Option<u64> {
        parse_limit(&fs::read_to_string(&self.path).ok()?)
    }

    /// Which cgroup version it belongs to.
    pub fn source(&self) -> LimitSource {
        self.source
    }
}

/// The files that may hold the limit of a process of `membership` (its `/proc/self/cgroup`),
/// in the order they are tried: cgroup v2's `memory.max`, then v1's `memory.limit_in_bytes`.
fn candidates(membership: &str, root: &Path) -> Vec<LimitFile> {
    let mut files = Vec::new();
    if let Some(path) = v2_path(membership) {
        for base in [root.to_path_buf(), root.join("unified")] {
            files.push(LimitFile {
                path: base.join(path.trim_start_matches('/')).join("memory.max"),
                source: LimitSource::CgroupV2,
            });
        }
    }
    if let Some(path) = v1_memory_path(membership) {
        let memory = root.join("memory");
        // Inside a container the hierarchy is usually mounted at its own cgroup,
        // so the mount root holds the limit when the full path does not exist.
        for dir in [memory.join(path.trim_start_matches('/')), memory] {
            files.push(LimitFile {
                path: dir.join("memory.limit_in_bytes"),
                source: LimitSource::CgroupV1,
            });
        }
    }
    files
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
    fn the_limit_file_is_the_process_cgroup_then_the_mount_root() {
        let root = Path::new("/sys/fs/cgroup");
        let paths = |membership| {
            candidates(membership, root)
                .into_iter()
                .map(|file| (file.path.display().to_string(), file.source))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            paths("0::/kubepods/pod1/abc\n"),
            [
                (
                    "/sys/fs/cgroup/kubepods/pod1/abc/memory.max".to_owned(),
                    LimitSource::CgroupV2
                ),
                (
                    "/sys/fs/cgroup/unified/kubepods/pod1/abc/memory.max".to_owned(),
                    LimitSource::CgroupV2
                ),
            ]
        );
        assert_eq!(
            paths("4:memory:/pod/b7\n")[1],
            (
                "/sys/fs/cgroup/memory/memory.limit_in_bytes".to_owned(),
                LimitSource::CgroupV1
            )
        );
    }

    #[test]
    fn a_limit_file_is_read_again_at_every_call() {
        let dir = tempfile::tempdir().unwrap();
        let file = LimitFile {
            path: dir.path().join("memory.max"),
            source: LimitSource::CgroupV2,
        };
        assert_eq!(file.read(), None, "no file yet");
        fs::write(dir.path().join("memory.max"), "268435456\n").unwrap();
        assert_eq!(file.read(), Some(256 << 20));
        fs::write(dir.path().join("memory.max"), "402653184\n").unwrap();
        assert_eq!(file.read(), Some(384 << 20));
        fs::write(dir.path().join("memory.max"), "max\n").unwrap();
        assert_eq!(file.read(), None);
    }

    #[test]
    fn host_memory_is_readable_on_linux() {
        assert!(host_memory().is_some_and(|bytes| bytes > 0));
    }
}
