//! Runs a server in the background under a shell tied to the test process, so
//! the server never outlives the tests, however the test process ends.

use std::{
    fs,
    io::Write,
    net::{Ipv4Addr, TcpListener},
    os::unix::process::CommandExt,
    path::Path,
    process::{Child, ChildStdin, Command, ExitStatus, Stdio},
    thread,
    time::{Duration, Instant},
};

use crate::{Error, Result};

/// Runs the server in the background and holds the read end of a pipe whose write end only the
/// test process has. Whenever that end closes (drop, panic, SIGKILL) `read` returns and the
/// watcher stops the server (SIGINT, which PostgreSQL and Prometheus both take as "shut down
/// cleanly now"; a second signal after 2 s, which kube-controller-manager needs to stop; SIGKILL after 10 s)
/// and deletes the whole dir, unless the test process wrote `keep` first. If the
/// server exits on its own, the shell exits with its status so start-up failures show at once.
/// Arguments: $1 the dir (the server's output goes to `server.log` there), then the command.
const SCRIPT: &str = r#"
set -u
dir=$1
shift
exec 3<&0 </dev/null >>"$dir/server.log" 2>&1
"$@" 3<&- &
server=$!
{
  cmd=
  read -r cmd <&3 || :
  kill -INT "$server" 2>/dev/null
  waited=0
  while kill -0 "$server" 2>/dev/null; do
    waited=$((waited + 1))
    [ "$waited" -eq 40 ] && kill -TERM "$server" 2>/dev/null
    [ "$waited" -eq 200 ] && kill -KILL "$server" 2>/dev/null
    sleep 0.05
  done
  [ "$cmd" = keep ] || rm -rf "$dir"
} &
watcher=$!
wait "$server" && wait "$watcher"
"#;

/// A server process under its watchdog shell.
#[derive(Debug)]
pub(crate) struct Watchdog {
    pub(crate) shell: Child,
    pub(crate) stdin: ChildStdin,
}

impl Watchdog {
    /// Starts `command` under the watchdog; `sh` is how to run `/bin/sh` (directly, or as
    /// another user).
    pub(crate) fn spawn(mut sh: Command, dir: &Path, command: &[String]) -> Result<Watchdog> {
        sh.args(["-c", SCRIPT, "testkit-watchdog"])
            .arg(dir)
            .args(command)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Out of the terminal's process group, so Ctrl-C kills only the test process and
            // the watchdog survives long enough to clean up after it.
            .process_group(0);
        let mut shell = sh.spawn().map_err(Error::Watchdog)?;
        let stdin = shell.stdin.take().expect("the watchdog's stdin is piped");
        Ok(Watchdog { shell, stdin })
    }

    /// The shell's exit status if the server has already exited.
    pub(crate) fn exited(&mut self) -> Result<Option<ExitStatus>> {
        self.shell.try_wait().map_err(Error::Watchdog)
    }

    /// Polls `ready` every `poll` until it holds; fails with the server's
    /// port and log when the server exits first or `timeout` passes.
    pub(crate) fn wait_until_ready(
        &mut self,
        (port, dir): (u16, &Path),
        timeout: Duration,
        poll: Duration,
        mut ready: impl FnMut() -> bool,
    ) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited()? {
                let why = format!("the server exited with {status}");
                return Err(Error::NotStarted(port, why, server_log(dir)));
            }
            if ready() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let why = format!("not ready within {timeout:?}");
                return Err(Error::NotStarted(port, why, server_log(dir)));
            }
            tracing::debug!(port, "waiting for a test server to start");
            thread::sleep(poll);
        }
    }

    /// Stops the server and waits, keeping its dir for a restart.
    pub(crate) fn stop_keeping_dir(mut self) -> Result<()> {
        // A failed write means the watchdog has already finished; waiting below is still right.
        let _ = self.stdin.write_all(b"keep\n");
        drop(self.stdin);
        self.shell.wait().map_err(Error::Watchdog)?;
        Ok(())
    }

    /// Stops the server, deletes its dir and waits: plain EOF, exactly what the watchdog sees
    /// when the test process dies.
    pub(crate) fn stop_and_delete(mut self) {
        drop(self.stdin);
        let _ = self.shell.wait();
    }
}

/// Stops a server (if running) and removes its dir, for `Drop`: a stopped
/// server has no watchdog left to delete the dir.
pub(crate) fn discard(watchdog: Option<Watchdog>, dir: &Path) {
    if let Some(watchdog) = watchdog {
        watchdog.stop_and_delete();
    }
    let _ = fs::remove_dir_all(dir);
}

/// The server's output so far, for error messages.
fn server_log(dir: &Path) -> String {
    let path = dir.join("server.log");
    fs::read_to_string(&path)
        .unwrap_or_else(|e| format!("(could not read {}: {e})", path.display()))
}

/// The OS hands out an unused port; it is released just before the server binds it.
pub(crate) fn free_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(Error::Port)?;
    Ok(listener.local_addr().map_err(Error::Port)?.port())
}
