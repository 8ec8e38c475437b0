//! Memory cgroups for containers, where the machine lets root make them: cgroup v2 with the
//! memory controller enabled, else the cgroup v1 memory hierarchy. A container's cgroup holds
//! its `resources.limits.memory`, so the process reads its real limit and the kernel's OOM
//! killer is real. The container's shell reads the cgroup's OOM kills (`memory.events` in v2,
//! `memory.oom_control` in v1) when the process exits, then removes the cgroup.

use std::{
    fs, io,
    path::{Path, PathBuf},
};

/// The hierarchies tried, in order: (where, the file that sets the limit).
const HIERARCHIES: [(&str, &str); 3] = [
    ("/sys/fs/cgroup", "memory.max"),
    ("/sys/fs/cgroup/unified", "memory.max"),
    ("/sys/fs/cgroup/memory", "memory.limit_in_bytes"),
];

/// Where this kubelet makes its containers' cgroups.
#[derive(Clone, Debug)]
pub(crate) struct CgroupRoot {
    base: PathBuf,
    dir: PathBuf,
    limit_file: &'static str,
}

impl CgroupRoot {
    /// A directory of our own in the first writable memory hierarchy, or why there is none.
    pub(crate) fn find(name: &str) -> Result<CgroupRoot, String> {
        let mut tried = Vec::new();
        for (base, limit_file) in HIERARCHIES {
            let base = Path::new(base);
            let controlled = if limit_file == "memory.max" {
                fs::read_to_string(base.join("cgroup.subtree_control"))
                    .is_ok_and(|c| c.split_whitespace().any(|c| c == "memory"))
            } else {
                base.join(limit_file).exists()
            };
            if !controlled {
                tried.push(format!("{}: no memory controller", base.display()));
                continue;
            }
            let dir = base.join(name);
            match fs::create_dir_all(&dir) {
                Ok(()) => {
                    return Ok(CgroupRoot {
                        base: base.to_owned(),
                        dir,
                        limit_file,
                    });
                }
                Err(e) => tried.push(format!("{}: {e}", dir.display())),
            }
        }
        Err(tried.join("; "))
    }

    /// The hierarchy root's `cgroup.procs`: where a process goes to leave its cgroup (the root
    /// may hold processes in both versions).
    pub(crate) fn root_procs(&self) -> PathBuf {
        self.base.join("cgroup.procs")
    }

    /// A new cgroup `name` holding at most `limit` bytes (no limit when `None`).
    pub(crate) fn create(&self, name: &str, limit: Option<u64>) -> io::Result<PathBuf> {
        let dir = self.dir.join(name);
        fs::create_dir_all(&dir)?;
        if let Some(limit) = limit {
            self.set_limit(&dir, limit)?;
            if self.limit_file == "memory.max" {
                // No swap to fall back on: over the limit means the OOM killer, as in a pod.
                let _ = fs::write(dir.join("memory.swap.max"), "0");
            }
        }
        Ok(dir)
    }

    /// Sets the limit of the cgroup at `dir`, even while processes run in it.
    pub(crate) fn set_limit(&self, dir: &Path, limit: u64) -> io::Result<()> {
        fs::write(dir.join(self.limit_file), limit.to_string())
    }
}

/// A memory cgroup of a test's own, where the machine lets root make one: a process started in
/// it runs under its limit, which the test may change while the process runs, as the kubelet
/// does when it resizes a pod in place. Removed when dropped (its processes must be gone).
#[derive(Debug)]
pub struct MemoryCgroup {
    root: CgroupRoot,
    dir: PathBuf,
}

impl MemoryCgroup {
    /// A new cgroup `name` holding at most `limit` bytes, or why the machine allows none.
    pub fn create(name: &str, limit: u64) -> Result<MemoryCgroup, String> {
        let root = CgroupRoot::find("testkit")?;
        let dir = root
            .create(name, Some(limit))
            .map_err(|e| format!("{}: {e}", root.dir.join(name).display()))?;
        Ok(MemoryCgroup { root, dir })
    }

    /// Sets its limit to `limit` bytes.
    pub fn set_limit(&self, limit: u64) -> io::Result<()> {
        self.root.set_limit(&self.dir, limit)
    }

    /// The file a process's id is written to, to move it into the cgroup.
    pub fn procs(&self) -> PathBuf {
        self.dir.join("cgroup.procs")
    }
}

impl Drop for MemoryCgroup {
    fn drop(&mut self) {
        // The kernel refuses to remove a cgroup that still holds a process: a short wait for
        // one just killed to be reaped.
        for _ in 0..50 {
            if fs::remove_dir(&self.dir).is_ok() || !self.dir.exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}
