//! The probe: one `shortener` process started straight from the test, before the cluster, to
//! create the schema and to show what an idle pod weighs (the pods' limit is set from it). It
//! runs under a small watchdog shell that kills it as soon as its handle is dropped or the test
//! process dies, however it dies.

use std::{
    fs,
    io::{BufRead, BufReader},
    net::{Ipv4Addr, TcpListener},
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, Stdio},
    time::{Duration, Instant},
};

/// Starts the server in the background and prints its pid; then waits on stdin, which only
/// the test process holds: end of file (a dropped handle, a dead test process) kills it.
/// Arguments: $1 the log file, then the command.
const WATCHDOG: &str = r#"
log=$1
shift
"$@" </dev/null >>"$log" 2>&1 &
server=$!
echo "$server"
read -r _ || :
kill -KILL "$server" 2>/dev/null
wait "$server"
"#;

/// How long a fresh debug-build shortener may take to answer `/healthz` on a busy machine.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running shortener process, killed when dropped.
#[derive(Debug)]
pub struct Probe {
    port: u16,
    pid: u32,
    shell: Child,
    stdin: Option<ChildStdin>,
    log: PathBuf,
}

impl Probe {
    /// Starts `binary` on a free port with `env` (and nothing else from the test's environment
    /// but `PATH`); its output goes to `<log_dir>/probe.log`.
    pub fn spawn(
        binary: &Path,
        env: &[(String, String)],
        log_dir: &Path,
    ) -> std::io::Result<Probe> {
        let port = free_port()?;
        let log = log_dir.join("probe.log");
        let mut command = Command::new("/bin/sh");
        command
            .args(["-c", WATCHDOG, "pod-watchdog"])
            .arg(&log)
            .arg(binary)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "warn")
            .env("SHORTENER_LISTEN", format!("127.0.0.1:{port}"))
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            // Out of the terminal's process group: Ctrl-C stops the test process, and the
            // watchdog, seeing its stdin close, then stops the server.
            .process_group(0);
        let mut shell = command.spawn()?;
        let stdin = shell.stdin.take();
        let stdout = shell.stdout.take().expect("the watchdog's stdout is piped");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let pid = line.trim().parse().map_err(|_| {
            std::io::Error::other(format!("the watchdog printed no pid but {line:?}"))
        })?;
        Ok(Probe {
            port,
            pid,
            shell,
            stdin,
            log,
        })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Whether the server process is still running (not exited, not a zombie).
    pub fn is_running(&self) -> bool {
        fs::read_to_string(format!("/proc/{}/stat", self.pid))
            .ok()
            .and_then(|stat| {
                let state = stat.rsplit_once(')')?.1.trim_start().chars().next()?;
                Some(state != 'Z' && state != 'X')
            })
            .unwrap_or(false)
    }

    /// The server's resident set size, from `/proc`.
    pub fn resident_bytes(&self) -> Option<u64> {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid)).ok()?;
        let kib = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))?
            .split_whitespace()
            .next()?
            .parse::<u64>()
            .ok()?;
        Some(kib * 1024)
    }

    /// Waits until `/healthz` answers 200; fails with the pod's log if the process exits or
    /// the start takes too long.
    pub async fn wait_until_healthy(&self, client: &reqwest::Client) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        let url = format!("{}/healthz", self.base_url());
        loop {
            if let Ok(reply) = client.get(&url).send().await
                && reply.status().is_success()
            {
                return Ok(());
            }
            if !self.is_running() {
                return Err(format!("the probe exited during start-up:\n{}", self.log()));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "the probe was not healthy within {START_TIMEOUT:?}:\n{}",
                    self.log()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The probe's output so far (the last 4 kB), for failure messages.
    pub fn log(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let start = text.len().saturating_sub(4096);
        let start = (start..text.len())
            .find(|i| text.is_char_boundary(*i))
            .unwrap_or(text.len());
        text[start..].to_owned()
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        // End of file on its stdin makes the watchdog SIGKILL the server.
        drop(self.stdin.take());
        let _ = self.shell.wait();
    }
}

/// A free loopback port; released just before the server binds it.
fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}
