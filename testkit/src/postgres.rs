//! Throwaway PostgreSQL servers, each run by a watchdog shell tied to the test process.

use std::{
    fs,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::OnceLock,
    time::Duration,
};

use crate::{
    Error, Result,
    watchdog::{Watchdog, discard, free_port},
};

/// Where Debian's postgresql-15 package installs the server binaries.
const BIN_DIR: &str = "/usr/lib/postgresql/15/bin";
/// A healthy start takes well under a second; this leaves room for a loaded CI machine.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Short enough that tests do not notice it, long enough not to spin.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// A PostgreSQL server owned by the test process.
#[derive(Debug)]
pub struct PgServer {
    dir: PathBuf,
    port: u16,
    /// `None` while stopped.
    watchdog: Option<Watchdog>,
}

impl PgServer {
    /// Runs initdb in a new temp dir and postgres on a free loopback port; returns once it is ready.
    pub fn start() -> Result<PgServer> {
        let temp = tempfile::Builder::new().prefix("testkit-pg-").tempdir();
        // Kept rather than auto-deleted: the watchdog must delete it even after this process dies.
        let dir = temp.map_err(Error::TempDir)?.keep();
        let mut server = PgServer {
            dir,
            port: 0,
            watchdog: None,
        };
        if running_as_root() {
            hand_to_postgres(&server.dir)?;
        }
        let flags = "--auth=trust -U postgres --encoding=UTF8 --locale=C --no-sync";
        let mut initdb = as_postgres(&bin("initdb"));
        initdb.arg("-D").arg(server.dir.join("data"));
        run(initdb.args(flags.split(' ')))?;
        // Chosen after the slow initdb, so little time passes before postgres binds it.
        server.port = free_port()?;
        server.launch()?;
        Ok(server)
    }

    /// URL of the `postgres` database as superuser `postgres` (loopback connections are trusted).
    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The loopback TCP port the server listens on, the same across restarts.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Creates a new empty database with a random name and returns its URL.
    pub fn create_database(&self) -> Result<String> {
        create_database_via(&self.admin_url())
    }

    /// Fast shutdown that keeps the data dir for [`PgServer::restart`]; a no-op when stopped.
    pub fn stop(&mut self) -> Result<()> {
        match self.watchdog.take() {
            Some(watchdog) => watchdog.stop_keeping_dir(),
            None => Ok(()),
        }
    }

    /// Starts again on the same port and data dir (stopping first if running) and waits until ready.
    pub fn restart(&mut self) -> Result<()> {
        self.stop()?;
        self.launch()
    }

    fn launch(&mut self) -> Result<()> {
        let dir = self.dir.display();
        let command = [
            bin("postgres"),
            format!("-D{dir}/data"),
            format!("-p{}", self.port),
            "-clisten_addresses=127.0.0.1".into(),
            format!("-cunix_socket_directories={dir}"),
            "-cfsync=off".into(),
            "-csynchronous_commit=off".into(),
            "-cfull_page_writes=off".into(),
            "-cmax_connections=200".into(),
            "-cshared_buffers=32MB".into(),
        ];
        self.watchdog = Some(Watchdog::spawn(
            as_postgres("/bin/sh"),
            &self.dir,
            &command,
        )?);
        self.wait_until_ready()
    }

    fn wait_until_ready(&mut self) -> Result<()> {
        let url = self.admin_url();
        let watchdog = self.watchdog.as_mut().expect("launched");
        watchdog.wait_until_ready((self.port, &self.dir), READY_TIMEOUT, POLL_INTERVAL, || {
            run(Command::new(bin("pg_isready")).args(["-d", &url, "-t", "1"])).is_ok()
        })
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        discard(self.watchdog.take(), &self.dir);
    }
}

/// A fresh database for one test: on `DATABASE_URL`'s server if set, else on a throwaway server
/// shared by the whole test binary.
pub fn fresh_database_url() -> Result<String> {
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => return create_database_via(&url),
        _ => {}
    }
    // Statics are never dropped; the watchdog stops and deletes this server when the binary exits.
    static SHARED: OnceLock<Result<PgServer, String>> = OnceLock::new();
    match SHARED.get_or_init(|| PgServer::start().map_err(|e| e.to_string())) {
        Ok(server) => server.create_database(),
        Err(message) => Err(Error::Shared(message.clone())),
    }
}

fn create_database_via(admin_url: &str) -> Result<String> {
    let name = format!("t_{:016x}", rand::random::<u64>());
    psql(admin_url, &format!("CREATE DATABASE {name}"))?;
    Ok(with_database(admin_url, &name))
}

/// Runs one SQL command and returns its unaligned, tuples-only output.
fn psql(url: &str, sql: &str) -> Result<String> {
    let flags = "--no-psqlrc --quiet --no-align --tuples-only --set=ON_ERROR_STOP=1";
    run(Command::new(bin("psql"))
        .args(flags.split(' '))
        .args(["-d", url, "-c", sql]))
}

/// `url` with its database name replaced by `name`, keeping credentials, host and query.
fn with_database(url: &str, name: &str) -> String {
    let host = url.find("://").map_or(0, |i| i + 3);
    let path = url[host..].find(['/', '?']).map_or(url.len(), |i| host + i);
    let query = url[path..].find('?').map_or(url.len(), |i| path + i);
    format!("{}/{name}{}", &url[..path], &url[query..])
}

/// Runs a command to completion; a failure carries the command line and its stderr.
fn run(command: &mut Command) -> Result<String> {
    let described = format!("{command:?}");
    let output = command.stdin(Stdio::null()).output();
    let output = output.map_err(|source| Error::Spawn(described.clone(), source))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
        return Err(Error::Command(described, output.status, stderr));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn bin(program: &str) -> String {
    format!("{BIN_DIR}/{program}")
}

/// initdb and postgres refuse to run as root, so as root they run as the `postgres` user.
fn as_postgres(program: &str) -> Command {
    if running_as_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--", program]);
        command
    } else {
        Command::new(program)
    }
}

fn running_as_root() -> bool {
    // /proc/self belongs to the process's effective uid, which is what initdb checks.
    fs::metadata("/proc/self").is_ok_and(|proc| proc.uid() == 0)
}

/// Gives `dir` to the `postgres` user so the server it runs as can write there.
fn hand_to_postgres(dir: &Path) -> Result<()> {
    let passwd = fs::read_to_string("/etc/passwd").map_err(|_| Error::NoPostgresUser)?;
    let ids = passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        (fields.next()? == "postgres").then_some(())?;
        Some((fields.nth(1)?.parse().ok()?, fields.next()?.parse().ok()?))
    });
    let (uid, gid) = ids.ok_or(Error::NoPostgresUser)?;
    let chowned = std::os::unix::fs::chown(dir, Some(uid), Some(gid));
    chowned.map_err(|source| Error::Chown(dir.to_owned(), source))
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, TcpStream};

    use super::*;

    fn accepts_connections(port: u16) -> bool {
        let address = (Ipv4Addr::LOCALHOST, port).into();
        TcpStream::connect_timeout(&address, Duration::from_secs(1)).is_ok()
    }

    fn select(url: &str, sql: &str) -> Result<String> {
        psql(url, sql).map(|output| output.trim().to_owned())
    }

    #[test]
    fn a_started_server_creates_a_distinct_working_database_each_time() -> Result<()> {
        let server = PgServer::start()?;
        let (first, second) = (server.create_database()?, server.create_database()?);
        assert_ne!(first, second);
        let prefix = format!("postgres://postgres@127.0.0.1:{}/t_", server.port());
        assert!(first.starts_with(&prefix), "{first} lacks {prefix}");
        assert_eq!(select(&first, "select 1")?, "1");
        let name = second.rsplit('/').next().unwrap_or_default();
        assert_eq!(select(&second, "select current_database()")?, name);
        Ok(())
    }

    #[test]
    fn data_survives_a_stop_and_a_restart_until_the_server_is_dropped() -> Result<()> {
        let mut server = PgServer::start()?;
        let (url, dir) = (server.create_database()?, server.dir.clone());
        select(
            &url,
            "create table kept (v int); insert into kept values (42)",
        )?;
        server.stop()?;
        server.stop()?;
        assert!(!accepts_connections(server.port()) && dir.join("data").exists());
        server.restart()?;
        assert_eq!(select(&url, "select v from kept")?, "42");
        server.stop()?;
        drop(server);
        assert!(!dir.exists());
        Ok(())
    }

    #[test]
    fn dropping_a_server_removes_its_data_dir_and_closes_its_port() -> Result<()> {
        let server = PgServer::start()?;
        let (dir, port) = (server.dir.clone(), server.port());
        assert!(dir.join("data").exists() && accepts_connections(port));
        drop(server);
        assert!(!dir.exists() && !accepts_connections(port));
        Ok(())
    }

    #[test]
    fn the_watchdog_alone_cleans_up_when_the_test_process_goes_away() -> Result<()> {
        let mut server = PgServer::start()?;
        let Watchdog { mut shell, stdin } = server.watchdog.take().expect("started");
        // What the kernel does when the process dies: close the pipe and run no Rust code.
        drop(stdin);
        let status = shell.wait().map_err(Error::Watchdog)?;
        assert!(status.success(), "watchdog exited with {status}");
        assert!(!server.dir.exists() && !accepts_connections(server.port()));
        Ok(())
    }

    #[test]
    fn fresh_database_urls_are_distinct_and_work() -> Result<()> {
        let (first, second) = (fresh_database_url()?, fresh_database_url()?);
        assert_ne!(first, second);
        assert_eq!(select(&first, "select 1")?, "1");
        assert_eq!(select(&second, "select 1")?, "1");
        Ok(())
    }

    #[test]
    fn with_database_swaps_only_the_database_name() {
        let url = "postgres://u:p@db:5433/app?sslmode=disable";
        let swapped = "postgres://u:p@db:5433/t_1?sslmode=disable";
        assert_eq!(with_database(url, "t_1"), swapped);
        assert_eq!(with_database("postgres://db", "t_1"), "postgres://db/t_1");
    }
}
