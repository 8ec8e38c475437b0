//! Test-only support shared by the integration tests of the workspace's crates.
//!
//! [`PgServer`] is a throwaway PostgreSQL 15 server in a temp dir, driven synchronously with
//! `std::process`, so any test can use it with or without an async runtime. Each server runs
//! under a small watchdog shell that stops it and deletes its files as soon as the test process
//! goes away, however it goes away. [`fresh_database_url`] is the one call most tests need.
//!
//! [`PromServer`] is a throwaway Prometheus scraping given targets; [`ScriptedPrometheus`] answers
//! queries with series a test sets; [`HostilePrometheus`] answers at length, slowly, with a
//! redirect elsewhere or with many series; [`TlsProxy`] puts HTTPS with bearer-token auth, and
//! optionally client certificates, in front of any of them, as managed Prometheus services have.
//! [`SchemaCheck`] says what an apiserver would about an object under a CRD's schema.
//! [`ControlPlane`] is a real Kubernetes control plane (etcd,
//! kube-apiserver, kube-controller-manager, kube-scheduler) built from Go modules under
//! `tools/k8s/`, one per test binary, each test in a namespace of its own, with its audit log
//! read back as [`AuditedRequest`]s; [`ProcessKubelet`] runs the pods bound to its Node as real
//! processes, in memory cgroups where the machine allows; [`MemoryCgroup`] is one such cgroup
//! for a test's own process, whose limit the test changes while it runs.

#![forbid(unsafe_code)]

mod control_plane;
mod hostile_prometheus;
mod kubelet;
mod loopback;
mod postgres;
mod prometheus;
mod schema_check;
mod scripted_prometheus;
mod tls_proxy;
mod watchdog;

use std::{io, path::PathBuf, process::ExitStatus};

pub use control_plane::{AuditedRequest, ControlPlane};
pub use hostile_prometheus::{HostilePrometheus, Misbehaviour};
pub use kubelet::{ContainerExit, KubeletConfig, MemoryCgroup, ProcessKubelet};
pub use postgres::{PgServer, fresh_database_url};
pub use prometheus::{KubernetesPods, PromServer, Target};
pub use schema_check::SchemaCheck;
pub use scripted_prometheus::ScriptedPrometheus;
pub use tls_proxy::TlsProxy;

/// Cases per fuzzing property: `FUZZ_CASES` when set, so CI or a developer can fuzz longer
/// than a routine `cargo test`, else `default`.
///
/// # Panics
/// When `FUZZ_CASES` is set but is not a whole number: silently fuzzing the default would
/// pass off a short run as a long one.
pub fn fuzz_cases(default: u32) -> u32 {
    match std::env::var("FUZZ_CASES") {
        Ok(text) => text
            .parse()
            .unwrap_or_else(|_| panic!("FUZZ_CASES={text:?} is not a whole number of cases")),
        Err(_) => default,
    }
}

/// Everything that can go wrong while providing a test database.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No temp dir for the server's files.
    #[error("could not create a temp dir for a test server: {0}")]
    TempDir(#[source] io::Error),
    /// No free loopback port.
    #[error("could not reserve a free loopback port: {0}")]
    Port(#[source] io::Error),
    /// Running as root, but there is no `postgres` user to run the server as.
    #[error("could not read the `postgres` user's uid/gid from /etc/passwd")]
    NoPostgresUser,
    /// The temp dir could not be handed to the `postgres` user.
    #[error("could not give {path} to the postgres user: {1}", path = .0.display())]
    Chown(PathBuf, #[source] io::Error),
    /// A command (as its command line) could not be started.
    #[error("could not run {0}: {1}")]
    Spawn(String, #[source] io::Error),
    /// A command (as its command line) failed with this status and stderr.
    #[error("{0} failed ({1}): {2}")]
    Command(String, ExitStatus, String),
    /// A server on this port did not start, for this reason; with the server's log.
    #[error("the server on port {0} did not start: {1}; its log:\n{2}")]
    NotStarted(u16, String, String),
    /// The watchdog shell could not be started or waited for.
    #[error("could not run or wait for the watchdog shell: {0}")]
    Watchdog(#[source] io::Error),
    /// A file could not be written.
    #[error("could not write {path}: {1}", path = .0.display())]
    Write(PathBuf, #[source] io::Error),
    /// Prometheus answered, or failed to answer, in an unexpected way.
    #[error("Prometheus: {0}")]
    Prometheus(String),
    /// Keys or certificates for the control plane could not be made.
    #[error("could not make the control plane's certificates: {0}")]
    Pki(String),
    /// The process kubelet could not register or run.
    #[error("the process kubelet: {0}")]
    Kubelet(String),
    /// The Go-built control plane binaries could not be found or built.
    #[error("the control plane binaries: {0}")]
    Binaries(String),
    /// The TLS proxy's keys, certificates or TLS configuration could not be made.
    #[error("the TLS proxy: {0}")]
    Tls(String),
    /// A shared test server (PostgreSQL, the control plane) failed to start, once for all tests.
    #[error("the shared test server could not start: {0}")]
    Shared(String),
}

/// `Result` with this crate's [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
