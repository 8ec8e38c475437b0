//! Runs a server in the background under a shell tied to the test process, so
//! the server never outlives the tests, however the test process ends.

use std::{
    fs,
    io::Write,
    net::{Ipv4Addr, TcpListener},
    os::unix::process::CommandExt,
    path::Path,
    process::{Child, ChildStdin, Command, ExitStatus, Stdio},
};

use crate::{Error, Result};

/// Runs the server in the background and holds the read end of a pipe whose write end only the
/// test process has. Whenever that end closes (drop, panic, SIGKILL) `read` returns and the
/// watcher stops the server (SIGINT, which PostgreSQL and Prometheus both take as "shut down
/// cleanly now") and deletes the whole dir, unless the test process wrote `keep` first. If the
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
  while kill -0 "$server" 2>/dev/null; do sleep 0.05; done
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

/// The server's output so far, for error messages.
pub(crate) fn server_log(dir: &Path) -> String {
    let path = dir.join("server.log");
    fs::read_to_string(&path)
        .unwrap_or_else(|e| format!("(could not read {}: {e})", path.display()))
}

/// The OS hands out an unused port; it is released just before the server binds it.
pub(crate) fn free_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(Error::Port)?;
    Ok(listener.local_addr().map_err(Error::Port)?.port())
}
