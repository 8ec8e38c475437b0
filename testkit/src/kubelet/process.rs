//! One run of a container: its binary as a process under a small shell that puts it in its
//! memory cgroup, reports its pid and, once it exits, its exit status and the cgroup's OOM
//! kills, then removes the cgroup. If the test process dies, the shell's stdin closes and it
//! stops the container (SIGTERM, SIGKILL 10 s later), so nothing outlives the tests.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
};

use jiff::Timestamp;
use tokio::{
    io::{AsyncBufReadExt, BufReader, Lines},
    process::{Child, ChildStdout, Command},
};

/// Arguments: $1 the cgroup dir (or ""), $2 the root hierarchy's `cgroup.procs` (or ""), $3 the
/// log file, then the command.
const SCRIPT: &str = r#"
set -u
cg=$1; root_procs=$2; log=$3
shift 3
[ -z "$cg" ] || echo $$ > "$cg/cgroup.procs"
exec 3<&0 </dev/null
"$@" 3<&- >>"$log" 2>&1 &
child=$!
echo "pid $child"
{ read -r _ <&3 || :; kill -TERM "$child" 2>/dev/null; sleep 10; kill -KILL "$child" 2>/dev/null; } &
watcher=$!
wait "$child"
status=$?
kill "$watcher" 2>/dev/null
oom=0
if [ -n "$cg" ]; then
  oom=$(sed -n 's/^oom_kill //p' "$cg/memory.events" "$cg/memory.oom_control" 2>/dev/null | head -n 1)
  # Everything left in the cgroup (this shell, a stray child) moves out, so it can go.
  for p in $(cat "$cg/cgroup.procs" 2>/dev/null) $$; do echo "$p" > "$root_procs" 2>/dev/null; done
  rmdir "$cg" 2>/dev/null
fi
echo "exit $status oom ${oom:-0}"
"#;

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Exit {
    pub(crate) code: i32,
    pub(crate) oom_killed: bool,
    pub(crate) finished_at: Timestamp,
}

/// A running container process.
pub(crate) struct Run {
    pub(crate) pid: u32,
    pub(crate) started_at: Timestamp,
    shell: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

/// Where a run's process goes: its memory cgroup and the root's `cgroup.procs` to leave by.
pub(crate) struct Placement<'a> {
    pub(crate) cgroup: Option<(&'a Path, PathBuf)>,
    pub(crate) log: &'a Path,
}

impl Run {
    /// Starts `binary args` with exactly `env`.
    pub(crate) async fn start(
        binary: &Path,
        args: &[String],
        env: &[(String, String)],
        placement: Placement<'_>,
    ) -> std::io::Result<Run> {
        let (cgroup, root_procs) = match &placement.cgroup {
            Some((dir, procs)) => (dir.display().to_string(), procs.display().to_string()),
            None => (String::new(), String::new()),
        };
        let mut shell = Command::new("/bin/sh")
            .args(["-c", SCRIPT, "testkit-kubelet"])
            .args([cgroup, root_procs, placement.log.display().to_string()])
            .arg(binary)
            .args(args)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .kill_on_drop(false)
            .spawn()?;
        let stdout = shell.stdout.take().expect("piped");
        let mut lines = BufReader::new(stdout).lines();
        let first = lines.next_line().await?.unwrap_or_default();
        let pid = first
            .strip_prefix("pid ")
            .and_then(|p| p.trim().parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("the container shell said {first:?}")))?;
        Ok(Run {
            pid,
            started_at: Timestamp::now(),
            shell,
            lines,
        })
    }

    /// Sends `signal` (`TERM`, `KILL`) to the container process.
    pub(crate) fn signal(&self, signal: &str) {
        let _ = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid.to_string())
            .stderr(Stdio::null())
            .status();
    }

    /// Waits until the process has exited.
    pub(crate) async fn wait(&mut self) -> Exit {
        let mut exit = Exit {
            code: -1,
            oom_killed: false,
            finished_at: Timestamp::now(),
        };
        while let Ok(Some(line)) = self.lines.next_line().await {
            let words: Vec<&str> = line.split_whitespace().collect();
            if let ["exit", code, "oom", oom] = words[..] {
                exit.code = code.parse().unwrap_or(-1);
                exit.oom_killed = oom.parse::<u64>().unwrap_or(0) > 0;
            }
        }
        let _ = self.shell.wait().await;
        exit.finished_at = Timestamp::now();
        exit
    }
}
